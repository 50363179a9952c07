//! `glufuse run GRAPH [--input NAME=F.npy].. [--output [NAME=]F.npy].. [--unfused] [--check]
//! [--tune]`: runs a graph on the GPU; `--check` compares with the interpreter on the
//! original graph and fails past tolerance.

use crate::args::RunArgs;
use crate::io::{gather_inputs, output_plan, print_outputs, write_outputs};
use crate::progress::step;
use glufuse::codegen::proj::gemm_tiled::CANDIDATES;
use glufuse::interp::{check_tolerance, compare};
use glufuse::passes::PassManager;
use glufuse::runtime::{Executable, Gpu};
use glufuse::{Error, Result};

/// Runs the command.
pub fn run(a: RunArgs) -> Result<()> {
    let original = crate::progress::load(&a.graph)?;
    let mut g = original.clone();
    if !a.unfused {
        PassManager::standard().run(&mut g)?;
    }
    let plan = output_plan(&g, &a.io.outputs)?;
    let (inputs, b) = gather_inputs(&g, &a.io)?;
    let gpu = Gpu::new()?;
    let target = gpu.target();
    let mut exe =
        step("compiling the kernels and uploading the weights", || Executable::with_target(&gpu, &g, &b, &target))?;
    let tuned = if a.tune {
        step("timing the GEMM tilings (--tune)", || exe.tune_gemms(&g, &b, &target, &CANDIDATES))?
    } else {
        vec![]
    };
    let outs = step("running on the GPU", || exe.run(&inputs))?;
    println!("adapter: {}", gpu.describe());
    if a.tune && gpu.is_software() {
        println!(
            "tuning on a software adapter: {} round of one dispatch per tiling (its timings say little about a GPU)",
            glufuse::codegen::tune::SOFTWARE_ROUNDS
        );
    }
    for t in &tuned {
        let times: Vec<String> = t.timings.iter().map(|(tl, us)| format!("{tl}: {us:.1} µs")).collect();
        let how = if times.is_empty() { "as the same shape before".to_string() } else { times.join(", ") };
        println!("tuned {}: {} ({how})", t.kernel, t.chosen);
    }
    println!(
        "graph: {} ({}), {} dispatches",
        a.graph.display(),
        if a.unfused { "unfused" } else { "fused" },
        exe.dispatch_count()
    );
    print_outputs(&g, &outs);
    if a.check {
        let want = step("checking against the CPU interpreter (--check)", || glufuse::interp::run(&original, &inputs))?;
        let tol = check_tolerance(&original);
        for ((v, got), want) in g.outputs.iter().zip(&outs).zip(&want) {
            let (abs, rel) = compare(got, want);
            println!("  check {}: max abs err {abs:.3e}, rel {rel:.3e} (tolerance {tol:e})", g.value_name(*v));
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
