//! `glufuse` with no command: the bundled default job. A synthetic Llama-style decoder is
//! fused; layer 0 before and after and the fusion report are printed; the fused graph is
//! checked against the original on the CPU interpreter; then both run on the GPU (when there
//! is one) through WGSL validated by naga, against the interpreter.

use crate::fuse::summary_line;
use crate::out::outln;
use glufuse::interp::{self, compare};
use glufuse::passes::{fusion_report, PassManager};
use glufuse::shape::Bindings;
use glufuse::synth::{self, SynthOptions};
use glufuse::{Error, Result};

/// The lines of a text dump that belong to layer 0, indented.
fn layer0(text: &str) -> String {
    text.lines().filter(|l| l.starts_with("%layers.0.")).map(|l| format!("  {l}\n")).collect()
}

/// Runs the default job.
pub fn run() -> Result<()> {
    let o = SynthOptions::default();
    let mut g = synth::default_model();
    outln!(
        "glufuse: bundled default model, a synthetic Llama-style decoder ({} layers, H={}, I={}, {} rows, f32)",
        o.layers,
        o.hidden,
        o.intermediate,
        o.batch.unwrap_or(1)
    );
    let original = g.clone();
    let before = glufuse::dump::text(&g)?;
    let mut pm = PassManager::standard();
    pm.verify_each = true;
    let runs = pm.run(&mut g)?;
    outln!("\n== layer 0 before the passes ==\n{}", layer0(&before));
    outln!("== layer 0 after ==\n{}", layer0(&glufuse::dump::text(&g)?));
    if let Some(r) = fusion_report(&runs) {
        outln!("== fusion report ==\n{}", r.to_text(true));
    }
    outln!("{}\n", summary_line(&runs));
    // The oracle: the fused graph computes what the original did.
    let b = Bindings::new();
    let inputs = interp::seeded_inputs(&original, &b, 7)?;
    let want = interp::run(&original, &inputs)?;
    let got = interp::run(&g, &inputs)?;
    let (abs, rel) = compare(&got[0], &want[0]);
    outln!("CPU interpreter, fused vs original: max abs err {abs:.3e}, rel {rel:.3e}");
    if rel > 1e-4 {
        return Err(Error::Job(format!("the fused graph differs from the original (rel err {rel:.3e})")));
    }
    // The GPU: both graphs, through WGSL validated by naga, against the interpreter.
    let gpu = match glufuse::runtime::Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            outln!("\nGPU: none available ({e}); skipped the GPU run. Everything above ran on the CPU.");
            return Ok(());
        }
    };
    outln!("\nGPU: {}", gpu.describe());
    for (label, graph) in [("original", &original), ("fused", &g)] {
        let exe = glufuse::runtime::Executable::new(&gpu, graph, &b)?;
        let outs = exe.run(&inputs)?;
        let (abs, rel) = compare(&outs[0], &want[0]);
        outln!(
            "  {label:8}: {:3} kernels (WGSL validated by naga), {:3} dispatches per run; vs interpreter: max abs err {abs:.3e}, rel {rel:.3e}",
            exe.kernels().len(),
            exe.dispatch_count()
        );
        if rel > 1e-4 {
            return Err(Error::Job(format!(
                "the GPU run of the {label} graph differs from the interpreter (rel {rel:.3e})"
            )));
        }
    }
    Ok(())
}
