//! `glufuse` with no command: the bundled default job. A synthetic Llama-style decoder is
//! fused; layer 0 before and after and the fusion report are printed; the fused graph is
//! checked against the original on the CPU interpreter; then both run on the GPU (when there
//! is one) through WGSL validated by naga, against the interpreter.

use crate::fuse::summary_line;
use glufuse::interp::{self, compare};
use glufuse::passes::{fusion_report, PassManager};
use glufuse::shape::Bindings;
use glufuse::synth::{self, SynthOptions};
use glufuse::tensor::Tensor;
use glufuse::{Error, Graph, Result};
use std::collections::HashMap;

/// The lines of a text dump that belong to layer 0, indented.
fn layer0(text: &str) -> String {
    text.lines().filter(|l| l.starts_with("%layers.0.")).map(|l| format!("  {l}\n")).collect()
}

/// Runs the default job.
pub fn run() -> Result<()> {
    let o = SynthOptions::default();
    let mut g = synth::default_model();
    println!(
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
    println!("\n== layer 0 before the passes ==\n{}", layer0(&before));
    println!("== layer 0 after ==\n{}", layer0(&glufuse::dump::text(&g)?));
    if let Some(r) = fusion_report(&runs) {
        println!("== fusion report ==\n{}", r.to_text(true));
    }
    println!("{}\n", summary_line(&runs));
    // The oracle: the fused graph computes what the original did.
    let b = Bindings::new();
    let inputs = interp::seeded_inputs(&original, &b, 7)?;
    let want = interp::run(&original, &inputs)?;
    let got = interp::run(&g, &inputs)?;
    let (abs, rel) = compare(&got[0], &want[0]);
    println!("CPU interpreter, fused vs original: max abs err {abs:.3e}, rel {rel:.3e}");
    if rel > 1e-4 {
        return Err(Error::Job(format!("the fused graph differs from the original (rel err {rel:.3e})")));
    }
    gpu_part(&original, &g, &inputs, &want)
}

/// The GPU: both graphs, through WGSL validated by naga, against the interpreter.
#[cfg(feature = "gpu")]
fn gpu_part(original: &Graph, fused: &Graph, inputs: &HashMap<String, Tensor>, want: &[Tensor]) -> Result<()> {
    let b = Bindings::new();
    let gpu = match glufuse::runtime::Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("\nGPU: none available ({e}); skipped the GPU run. Everything above ran on the CPU.");
            return Ok(());
        }
    };
    println!("\nGPU: {}", gpu.describe());
    for (label, graph) in [("original", original), ("fused", fused)] {
        let exe = glufuse::runtime::Executable::new(&gpu, graph, &b)?;
        let outs = exe.run(inputs)?;
        let (abs, rel) = compare(&outs[0], &want[0]);
        println!(
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

/// Without the `gpu` feature: says so.
#[cfg(not(feature = "gpu"))]
fn gpu_part(_: &Graph, _: &Graph, _: &HashMap<String, Tensor>, _: &[Tensor]) -> Result<()> {
    println!("\nGPU: this glufuse was built without GPU support (cargo feature `gpu` off); skipped the GPU run.");
    Ok(())
}
