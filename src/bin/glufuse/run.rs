//! `glufuse run GRAPH [--input NAME=F.npy].. [--output [NAME=]F.npy].. [--unfused] [--check]
//! [--tune] [--matmul-precision f16|f32]`: runs a graph on the GPU; `--check` compares with
//! the interpreter on the original graph and fails past tolerance.

use crate::args::{PrecisionArg, RunArgs};
use crate::io::{gather_inputs, output_plan, print_outputs, write_outputs};
use crate::out::outln;
use glufuse::codegen::proj::gemm_tiled::CANDIDATES;
use glufuse::files::load_graph;
use glufuse::interp::{check_tolerance, compare};
use glufuse::passes::PassManager;
use glufuse::runtime::{Executable, Gpu};
use glufuse::{Error, Result};

/// Runs the command.
pub fn run(a: RunArgs) -> Result<()> {
    let original = load_graph(&a.graph)?;
    let mut g = original.clone();
    if !a.unfused {
        PassManager::standard().run(&mut g)?;
    }
    let plan = output_plan(&g, &a.io.outputs)?;
    let (inputs, b) = gather_inputs(&g, &a.io)?;
    let gpu = Gpu::new()?;
    let precision = PrecisionArg::resolve(a.matmul_precision);
    let target = glufuse::codegen::Target { matmul_precision: precision, ..gpu.target() };
    let mut exe = Executable::with_target(&gpu, &g, &b, &target)?;
    let tuned = if a.tune { exe.tune_gemms(&g, &b, &target, &CANDIDATES)? } else { vec![] };
    let outs = exe.run(&inputs)?;
    outln!("adapter: {}", gpu.describe());
    for t in &tuned {
        let times: Vec<String> = t.timings.iter().map(|(tl, us)| format!("{tl}: {us:.1} µs")).collect();
        let how = if times.is_empty() { "as the same shape before".to_string() } else { times.join(", ") };
        outln!("tuned {}: {} ({how})", t.kernel, t.chosen);
    }
    outln!(
        "graph: {} ({}), {} dispatches",
        a.graph.display(),
        if a.unfused { "unfused" } else { "fused" },
        exe.dispatch_count()
    );
    print_outputs(&g, &outs);
    if a.check {
        let want = glufuse::interp::run(&original, &inputs)?;
        // f16 products allowed for f32 weights: errors up to the README's bound (about 1e-3
        // of the sum of |x·w| over k; f16 graphs' tolerance).
        let tol = match precision {
            glufuse::codegen::MatmulPrecision::F16 => check_tolerance(&original).max(2e-3),
            _ => check_tolerance(&original),
        };
        for ((v, got), want) in g.outputs.iter().zip(&outs).zip(&want) {
            let (abs, rel) = compare(got, want);
            outln!("  check {}: max abs err {abs:.3e}, rel {rel:.3e} (tolerance {tol:e})", g.value_name(*v));
            if rel > tol {
                return Err(Error::Job(format!(
                    "GPU output '{}' differs from the interpreter: rel err {rel:.3e} > {tol:e}",
                    g.value_name(*v)
                )));
            }
        }
    }
    write_outputs(&outs, &plan)
}
