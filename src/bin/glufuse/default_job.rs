//! `glufuse` with no command: the bundled default job, end to end on a real export. A whole
//! Llama decoder as PyTorch's dynamo exporter wrote it for deployment (dynamic batch and
//! sequence, an attention mask, RMSNorm, rotary embeddings, grouped-query attention; tiny
//! random weights), bundled into the binary with one of its onnxruntime reference input sets:
//! layer 0 before and after the passes, the fusion report, the fused graph checked against
//! the original on the CPU interpreter and both against onnxruntime's output; then both
//! graphs on the GPU (when there is one), through WGSL validated by naga, against the
//! interpreter and onnxruntime, and a second call of the fused one to show what a call costs
//! once its session has compiled it.

use crate::fuse::summary_line;
use crate::out::{out, outln};
use glufuse::interp::compare;
use glufuse::ir::{DType, Dim, TensorType};
use glufuse::passes::{
    attention_report, cse_report, elementwise_report, fusion_report, layout_report, merge_report, siblings_report,
    PassManager,
};
#[cfg(feature = "gpu")]
use glufuse::runtime::{Gpu, Session};
use glufuse::tensor::Tensor;
use glufuse::{Error, Graph, Result};
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

/// Where the bundled model comes from (its name in messages).
const MODEL: &str = "tests/data/models/llama_dynseq.onnx";
const MODEL_BYTES: &[u8] = include_bytes!("../../../tests/data/models/llama_dynseq.onnx");
const INPUT_IDS: &[u8] = include_bytes!("../../../tests/data/models/llama_dynseq.b2s11.input_ids.npy");
const ATTENTION_MASK: &[u8] = include_bytes!("../../../tests/data/models/llama_dynseq.b2s11.attention_mask.npy");
const LOGITS: &[u8] = include_bytes!("../../../tests/data/models/llama_dynseq.b2s11.out.logits.npy");

/// Relative tolerance against the interpreter and onnxruntime (f32 model).
const TOL: f64 = 1e-4;

/// The lines of a text dump from layer 0's input norm up to layer 1's: a Llama layer holds
/// two RMSNorms (each starting with a `Pow`), so layer 0 runs from the first `Pow` to the
/// third. The whole dump when the graph has fewer.
fn layer0(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let pows: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains("= Pow ")).collect();
    let (from, to) = match pows.as_slice() {
        [a, _, c, ..] => (*a, *c),
        _ => (0, lines.len()),
    };
    let part = &lines[from..to];
    // A dump lists a weight where the topological order puts it: after fusion, later layers'
    // weights can land inside layer 0's lines. Keep the weights layer 0 reads.
    let read_here = |l: &str| {
        let name = l.split(':').next().unwrap_or(l);
        part.iter().any(|m| {
            !m.starts_with(name)
                && (m.contains(&format!("{name},")) || m.ends_with(name) || m.contains(&format!("{name} ")))
        })
    };
    part.iter().filter(|l| !l.contains("= Weight(") || read_here(l)).map(|l| format!("  {l}\n")).collect()
}

/// A bundled `.npy` as a tensor of `dtype` and the shape the file says.
fn npy(bytes: &[u8], dtype: DType, shape: &[u64]) -> Result<Tensor> {
    glufuse::files::parse_npy(bytes, &TensorType::new(dtype, shape.iter().map(|&d| Dim::Fixed(d)).collect()))
}

/// Checks one result against a reference; fails the job past [`TOL`].
fn against(what: &str, got: &Tensor, want: &Tensor) -> Result<String> {
    let (abs, rel) = compare(got, want);
    if rel > TOL {
        return Err(Error::Job(format!("{what}: relative error {rel:.3e} > {TOL:e}")));
    }
    Ok(format!("max abs err {abs:.3e}, rel {rel:.3e}"))
}

/// Runs the default job.
pub fn run() -> Result<()> {
    let original = glufuse::onnx::load(Path::new(MODEL), MODEL_BYTES)?;
    let inputs: HashMap<String, Tensor> = [
        ("input_ids".to_string(), npy(INPUT_IDS, DType::I64, &[2, 11])?),
        ("attention_mask".to_string(), npy(ATTENTION_MASK, DType::I64, &[2, 11])?),
    ]
    .into();
    let reference = npy(LOGITS, DType::F32, &[2, 11, 128])?;
    outln!("glufuse: bundled default model, {MODEL}");
    outln!("  a Llama decoder exported for deployment by PyTorch's dynamo exporter (2 layers, hidden 32,");
    outln!("  4 heads and 2 KV heads of 8, intermediate 96, vocabulary 128; RMSNorm, rotary embeddings,");
    outln!("  dynamic batch and sequence); inputs input_ids and attention_mask [2, 11], the second row");
    outln!("  left-padded by 3 tokens; onnxruntime's logits for them bundled beside");
    let mut g = original.clone();
    let before = glufuse::dump::text(&g)?;
    let mut pm = PassManager::standard();
    pm.verify_each = true;
    let runs = pm.run(&mut g)?;
    outln!("\n== layer 0 before the passes ==\n{}", layer0(&before));
    outln!("== layer 0 after ==\n{}", layer0(&glufuse::dump::text(&g)?));
    if let Some(r) = fusion_report(&runs) {
        outln!("== fusion report ==\n{}", r.to_text(true));
    }
    if let Some(r) = cse_report(&runs).filter(|c| !c.merged.is_empty()) {
        out!("{}", r.to_text(false));
    }
    if let Some(r) = merge_report(&runs) {
        out!("{}", r.to_text(false));
    }
    if let Some(r) = layout_report(&runs) {
        out!("{}", r.to_text(false));
    }
    if let Some(r) = elementwise_report(&runs) {
        out!("{}", r.to_text(false));
    }
    if let Some(r) = attention_report(&runs) {
        out!("{}", r.to_text(false));
    }
    if let Some(r) = siblings_report(&runs) {
        outln!("{}", r.to_text(false));
    }
    outln!("{}\n", summary_line(&runs));
    // The oracle: the fused graph computes what the original did, and both what onnxruntime did.
    let t = Instant::now();
    let want = glufuse::interp::run(&original, &inputs)?.remove(0);
    let fused = glufuse::interp::run(&g, &inputs)?.remove(0);
    outln!("CPU interpreter ({:.1} s for both graphs):", t.elapsed().as_secs_f64());
    outln!("  original vs onnxruntime: {}", against("the interpreter differs from onnxruntime", &want, &reference)?);
    outln!("  fused vs original:       {}", against("the fused graph differs from the original", &fused, &want)?);
    gpu_part(&original, &g, &inputs, &want, &reference)
}

/// The GPU: both graphs, through WGSL validated by naga, against the interpreter and
/// onnxruntime.
#[cfg(feature = "gpu")]
fn gpu_part(
    original: &Graph,
    g: &Graph,
    inputs: &HashMap<String, Tensor>,
    want: &Tensor,
    reference: &Tensor,
) -> Result<()> {
    let gpu = match Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            outln!("\nGPU: none available ({e}); skipped the GPU run. Everything above ran on the CPU.");
            return Ok(());
        }
    };
    outln!("\nGPU: {}", gpu.describe());
    for (label, graph) in [("original", original), ("fused", g)] {
        gpu_run(&gpu, label, graph, inputs, want, reference)?;
    }
    Ok(())
}

/// Without the `gpu` feature: says so.
#[cfg(not(feature = "gpu"))]
fn gpu_part(_: &Graph, _: &Graph, _: &HashMap<String, Tensor>, _: &Tensor, _: &Tensor) -> Result<()> {
    outln!("\nGPU: this glufuse was built without GPU support (cargo feature `gpu` off); skipped the GPU run.");
    Ok(())
}

/// Runs one graph on the GPU twice through a session and checks it against the interpreter
/// and onnxruntime: the first call compiles, the second is what a call costs.
#[cfg(feature = "gpu")]
fn gpu_run(
    gpu: &Gpu,
    label: &str,
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
    want: &Tensor,
    reference: &Tensor,
) -> Result<()> {
    let t = Instant::now();
    let mut s = Session::new(gpu, graph.clone())?;
    let out = s.run(inputs)?.remove(0);
    let first = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = s.run(inputs)?.remove(0);
    let second = t.elapsed().as_secs_f64();
    if again != out {
        return Err(Error::Job(format!("the {label} graph gave another result on its second call")));
    }
    let b = s.bind(inputs, &Default::default())?;
    let exe = s.executable(&b)?;
    outln!(
        "  {label:8}: {:3} kernels (WGSL validated by naga), {:3} dispatches per call; first call {:.0} ms (compiling), next {:.1} ms",
        exe.kernels().len(),
        exe.dispatch_count(),
        first * 1e3,
        second * 1e3
    );
    outln!("            vs interpreter: {}", against(&format!("the GPU run of the {label} graph"), &out, want)?);
    outln!("            vs onnxruntime: {}", against(&format!("the GPU run of the {label} graph"), &out, reference)?);
    Ok(())
}
