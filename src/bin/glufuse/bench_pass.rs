//! `glufuse bench-pass [--layers 1,8,32,128] [--reps N]`: times the fusion pass on
//! synthetic decoder graphs (opaque attention and norms) and prints a Markdown table.

use crate::args::BenchPassArgs;
use crate::out::outln;
use glufuse::synth::{self, SynthOptions};
use glufuse::Result;

/// Runs the command.
pub fn run(a: BenchPassArgs) -> Result<()> {
    let (layers, reps) = (&a.layers, a.reps);
    outln!("| layers | graph nodes | e-graph nodes | e-classes | iterations | fused | fuse time (median of {reps}) |");
    outln!("| --- | --- | --- | --- | --- | --- | --- |");
    for &l in layers {
        // Nothing more to time once the reader of the table has gone.
        if crate::out::closed() {
            break;
        }
        let base = synth::llama(&SynthOptions { layers: l, executable: false, ..Default::default() })?;
        let mut times = vec![];
        let mut last = None;
        for _ in 0..reps.max(1) {
            let mut g = base.clone();
            let t = std::time::Instant::now();
            let rep = glufuse::passes::fusion::fuse(&mut g, &Default::default())?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            last = Some(rep);
        }
        times.sort_by(f64::total_cmp);
        let rep = last.expect("reps >= 1");
        outln!(
            "| {l} | {} | {} | {} | {} | {} | {:.2} ms |",
            base.len(),
            rep.egraph_nodes,
            rep.egraph_classes,
            rep.iterations,
            rep.fused,
            times[times.len() / 2]
        );
    }
    Ok(())
}
