//! `glufuse run GRAPH [--input NAME=F.npy].. [--dim NAME=N].. [--output [NAME=]F.npy]..
//! [--unfused] [--check] [--tune] [--matmul-precision f16|f32]`: runs a graph on the GPU
//! through a [`Session`] (compiled for the device's target under the precision asked for),
//! inputs and outputs of any dtype by name; `--check` compares every output with the
//! interpreter on the original graph (floats within tolerance, integers and booleans
//! exactly) and fails past it.

use crate::args::{PrecisionArg, RunArgs};
use crate::io::{conditions, gather_inputs, output_plan, print_outputs, write_outputs};
use crate::out::outln;
use crate::progress::step;
use glufuse::codegen::proj::gemm_tiled::CANDIDATES;
use glufuse::interp::{check_tolerance, compare};
use glufuse::passes::PassManager;
use glufuse::runtime::{Gpu, Session};
use glufuse::shape::Bindings;
use glufuse::tensor::Tensor;
use glufuse::{Error, Graph, Result};
use std::collections::HashMap;
use std::path::PathBuf;

/// Runs the command. Errors about the graph after loading it (a node the passes or codegen
/// refused, a GPU limit, a failed check) name the graph file ([`crate::about_graph`]);
/// opening the adapter concerns the machine, so its errors (no adapter, a bad
/// `WGPU_BACKEND`) do not.
pub fn run(a: RunArgs) -> Result<()> {
    let about = |e| crate::about_graph(e, &a.graph);
    // (An `If` on an input given as one boolean loads as the branch it picks.)
    let fixed = conditions(&a.io.inputs);
    let original = crate::progress::load_with(&a.graph, &fixed).map_err(about)?;
    let mut g = original.clone();
    if !a.unfused {
        PassManager::standard().run(&mut g).map_err(about)?;
    }
    let plan = output_plan(&g, &a.io.outputs).map_err(about)?;
    let (inputs, b) = gather_inputs(&g, &a.io, &fixed).map_err(about)?;
    let gpu = Gpu::new()?;
    on_gpu(&a, &gpu, &original, g, &plan, &inputs, b).map_err(about)
}

/// The part of [`run`] on the opened adapter.
fn on_gpu(
    a: &RunArgs,
    gpu: &Gpu,
    original: &Graph,
    g: Graph,
    plan: &[(usize, PathBuf)],
    inputs: &HashMap<String, Tensor>,
    b: Bindings,
) -> Result<()> {
    let precision = PrecisionArg::resolve(a.matmul_precision);
    let target = glufuse::codegen::Target { matmul_precision: precision, ..gpu.target() };
    let mut session = step("uploading the weights", || Session::with_target(gpu, g, target))?;
    let b = session.bind(inputs, &b)?;
    let tuned =
        if a.tune { step("timing the GEMM tilings (--tune)", || session.tune_gemms(&b, &CANDIDATES))? } else { vec![] };
    let exe = step("compiling the kernels", || session.executable(&b))?;
    let dispatches = exe.dispatch_count();
    let outs = step("running on the GPU", || exe.run(inputs))?;
    let g = session.graph();
    outln!("adapter: {}", gpu.describe());
    if a.tune && gpu.is_software() {
        outln!(
            "tuning on a software adapter: {} round of one dispatch per tiling (its timings say little about a GPU)",
            glufuse::codegen::tune::SOFTWARE_ROUNDS
        );
    }
    for t in &tuned {
        let times: Vec<String> = t.timings.iter().map(|(tl, us)| format!("{tl}: {us:.1} µs")).collect();
        let how = if times.is_empty() { "as the same shape before".to_string() } else { times.join(", ") };
        outln!("tuned {}: {} ({how})", t.kernel, t.chosen);
    }
    outln!("graph: {} ({}), {dispatches} dispatches", a.graph.display(), if a.unfused { "unfused" } else { "fused" });
    print_outputs(g, &outs);
    if a.check {
        let want =
            step("checking against the CPU interpreter (--check)", || glufuse::interp::run_with(original, inputs, &b))?;
        // f16 products allowed for f32 weights: errors up to the README's bound (about 1e-3
        // of the sum of |x·w| over k; f16 graphs' tolerance). Integers and booleans compare
        // exactly whatever the tolerance (`compare`).
        let tol = match precision {
            glufuse::codegen::MatmulPrecision::F16 => check_tolerance(original).max(2e-3),
            _ => check_tolerance(original),
        };
        for (i, (got, want)) in outs.iter().zip(&want).enumerate() {
            let (abs, rel) = compare(got, want);
            let name = g.output_name(i);
            if got.dtype().is_float() {
                outln!("  check {name}: max abs err {abs:.3e}, rel {rel:.3e} (tolerance {tol:e})");
            } else {
                outln!("  check {name}: {} (exact)", if rel == 0.0 { "equal" } else { "DIFFERENT" });
            }
            if rel > tol {
                return Err(Error::Job(format!(
                    "GPU output '{name}' differs from the interpreter: rel err {rel:.3e} > {tol:e}"
                )));
            }
        }
    }
    write_outputs(&outs, plan)
}
