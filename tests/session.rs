//! The runtime as a library user calls it repeatedly: a [`Session`] on a KV-cache decode step,
//! fed its own present keys and values as the next step's past, uploads its weights once,
//! keeps an executable per binding, and recompiles only the kernels whose WGSL a new past
//! length changes; an [`Executable`] refuses inputs of another shape than it was compiled
//! for, and runs on after a failed run; bad inputs are errors naming the input.
// The whole file runs kernels: nothing to build without the `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use glufuse::files::{load_graph, read_npy};
use glufuse::interp;
use glufuse::ir::{DType, Dim, TensorType};
use glufuse::passes::PassManager;
use glufuse::runtime::{Executable, Session};
use glufuse::tensor::Tensor;
use glufuse::Graph;
use std::collections::HashMap;

fn models() -> std::path::PathBuf {
    common::root().join("tests/data/models")
}

/// The fused KV-cache step of the Llama export.
fn kvstep() -> Graph {
    let mut g = load_graph(&models().join("llama_kvstep.onnx")).unwrap();
    PassManager::standard().run(&mut g).unwrap();
    g
}

/// The inputs of reference set `tag` of `llama_kvstep`.
fn reference_inputs(g: &Graph, tag: &str) -> HashMap<String, Tensor> {
    model_inputs(g, "llama_kvstep", tag)
}

/// The inputs of reference set `tag` of `model` (in tests/data/models).
fn model_inputs(g: &Graph, model: &str, tag: &str) -> HashMap<String, Tensor> {
    g.input_nodes()
        .into_iter()
        .map(|n| {
            let node = g.node(n);
            let p = models().join(format!("{model}.{tag}.{}.npy", node.name));
            (node.name.clone(), read_npy(&p, &node.outputs[0]).unwrap())
        })
        .collect()
}

/// A tensor's elements as bits (floats by their bit patterns), to compare exactly.
fn bits(t: &Tensor) -> Vec<u64> {
    match t.data() {
        glufuse::tensor::Data::F32(v) => v.iter().map(|x| x.to_bits() as u64).collect(),
        glufuse::tensor::Data::I64(v) => v.iter().map(|&x| x as u64).collect(),
        glufuse::tensor::Data::Bool(v) => v.iter().map(|&x| x as u64).collect(),
    }
}

fn ids(v: &[i64]) -> Tensor {
    Tensor::i64(vec![1, v.len()], v.to_vec()).unwrap()
}

/// Binding `b` (the Llama KV step's) with a past of `p` positions and one new token.
fn past_binding(b: &glufuse::shape::Bindings, p: usize) -> glufuse::shape::Bindings {
    let mut b = b.clone();
    b.insert("past".into(), p);
    b.insert("all".into(), p + 1);
    b
}

/// The GPU's outputs must match the interpreter's on the same inputs.
fn agree(g: &Graph, ins: &HashMap<String, Tensor>, got: &[Tensor]) {
    let want = interp::run(g, ins).unwrap();
    for (i, (x, y)) in got.iter().zip(&want).enumerate() {
        let (_, rel) = interp::compare(x, y);
        assert!(rel <= 1e-4, "output {}: rel {rel:e}", g.output_name(i));
    }
}

#[test]
fn a_decode_loop_reuses_weights_executables_and_pipelines() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    // Step 1: onnxruntime's reference set (past 9, one new token).
    let mut ins = reference_inputs(&g, "past9");
    let mut out = s.run(&ins).unwrap();
    let ty = TensorType::new(DType::F32, vec![Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(128)]);
    let want = read_npy(&models().join("llama_kvstep.past9.out.logits.npy"), &ty).unwrap();
    assert!(interp::compare(&out[0], &want).1 <= 1e-4, "step 1 against onnxruntime");
    let b1 = s.bind(&ins, &Default::default()).unwrap();
    let exe = s.executable(&b1).unwrap();
    let kernels = exe.kernels().len();
    // The kernels whose sizes can involve the past length: those binding a value whose type
    // has a dim naming `past` or `all` (= past + new; in the session's fused graph).
    let fused = s.graph().clone();
    let exe = s.executable(&b1).unwrap();
    let symbolic = exe
        .kernels()
        .iter()
        .filter(|k| {
            k.source().bindings.iter().any(|bd| {
                fused.ty(bd.value).shape.iter().any(|d| {
                    let d = d.to_string();
                    d.contains("past") || d.contains("all")
                })
            })
        })
        .count();
    assert!(symbolic * 2 < kernels, "{symbolic} of {kernels} kernels have sizes involving the past");
    // Steps 2..4: each step's present keys and values are the next step's past (10, 11, 12).
    for (step, token) in [(2, 17), (3, 5), (4, 99)] {
        for (i, t) in out.iter().enumerate() {
            if let Some(layer) = g.output_name(i).strip_prefix("present_") {
                ins.insert(format!("past_{layer}"), t.clone());
            }
        }
        let past = ins["past_0_k"].shape()[2];
        ins.insert("input_ids".into(), ids(&[token]));
        ins.insert("attention_mask".into(), ids(&vec![1; past + 1]));
        let before = gpu.pipeline_counts();
        let next = s.run(&ins).unwrap();
        agree(&g, &ins, &next);
        assert_eq!(next[1].shape(), &[1, 2, past + 1, 8], "step {step}: present grows by one");
        let compiled = gpu.pipeline_counts().compiled - before.compiled;
        eprintln!("step {step}: past {past}: {compiled} of {kernels} kernels compiled");
        assert!(
            compiled > 0 && compiled <= symbolic,
            "step {step}: a new past length recompiles only the kernels whose sizes involve it: {compiled} of {kernels} ({symbolic} with symbolic sizes)"
        );
        // The same binding again: nothing compiled, the same executable, the same bits.
        let kept = s.executables();
        assert_eq!(s.run(&ins).unwrap(), next, "step {step}: a repeated call");
        assert_eq!(s.executables(), kept);
        assert_eq!(gpu.pipeline_counts().compiled - before.compiled, compiled);
        out = next;
    }
    assert_eq!(s.executables(), 4, "one executable per past length");
    // Past the capacity, the least recently used go.
    s.set_capacity(2);
    assert_eq!(s.executables(), 2);
}

#[test]
fn an_executable_refuses_inputs_of_another_shape_and_the_session_names_bad_inputs() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let ins = reference_inputs(&g, "past4n3");
    let b = Session::new(&gpu, g.clone()).unwrap().bind(&ins, &Default::default()).unwrap();
    let exe = Executable::new(&gpu, &g, &b).unwrap();
    let first = exe.run(&ins).unwrap();
    let mut other = ins.clone();
    other.insert("input_ids".into(), ids(&[1, 2]));
    let e = exe.run(&other).unwrap_err().to_string();
    assert_eq!(e, "node 'input_ids': the value given has shape [1, 2], but this executable was compiled for [1, 3]");
    // A run whose gather finds a token id past the vocabulary fails; the runs around it reuse
    // the same staging and readback buffers and are unaffected.
    let mut oov = ins.clone();
    oov.insert("input_ids".into(), ids(&[1, 128, 2]));
    let e = exe.run(&oov).unwrap_err().to_string();
    assert!(e.contains("index 128 is out of range for 128 rows (input 'input_ids')"), "{e}");
    assert_eq!(exe.run(&ins).unwrap(), first, "a run after a failed one");
    let mut s = Session::new(&gpu, g).unwrap();
    let mut missing = ins.clone();
    missing.remove("past_1_v");
    assert_eq!(s.run(&missing).unwrap_err().to_string(), "node 'past_1_v': no value was given for this graph input");
    let mut unknown = ins.clone();
    unknown.insert("past".into(), ids(&[1]));
    let e = s.run(&unknown).unwrap_err().to_string();
    assert!(e.starts_with("the graph has no input 'past'; its inputs are: input_ids, attention_mask, past_0_k"), "{e}");
    let mut wrong = ins.clone();
    wrong.insert("input_ids".into(), Tensor::i32(vec![1, 3], vec![1, 2, 3]).unwrap());
    let e = s.run(&wrong).unwrap_err().to_string();
    assert_eq!(e, "node 'input_ids': the graph input is i64 but the value given is i32");
    let mut short = ins.clone();
    short.insert("past_0_v".into(), Tensor::zeros(DType::F32, vec![1, 2, 5, 8]));
    let e = s.run(&short).unwrap_err().to_string();
    assert!(e.contains("'past' is 4 in input 'past_0_k' but 5 here"), "{e}");
}

/// A call on a binding the session has run before creates nothing: no buffer (the inputs go
/// up through the executable's own staging buffer, kept mapped between calls), no bind group,
/// no pipeline; and an error between calls (a bad input) leaves the next call working.
#[test]
fn repeated_calls_create_no_buffers_bind_groups_or_pipelines() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let ins = reference_inputs(&g, "past9");
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    let first = s.run(&ins).unwrap();
    let (created, compiled) = (gpu.created(), gpu.pipeline_counts().compiled);
    assert!(created.buffers > 0 && created.bind_groups > 0, "{created:?}");
    let mut bad = ins.clone();
    bad.insert("input_ids".into(), ids(&[1_000_000]));
    assert!(s.run(&bad).unwrap_err().to_string().contains("out of range"));
    for _ in 0..3 {
        let (out, t) = s.run_timed(&ins, &Default::default()).unwrap();
        assert_eq!(out, first, "the same inputs give the same bits");
        let parts = [t.bind_us, t.upload_us, t.encode_us, t.submit_wait_us, t.readback_us];
        assert!(parts.iter().all(|&p| p >= 0.0) && t.submit_wait_us > 0.0, "{t:?}");
    }
    assert!(s.warm_up(&ins, &Default::default(), std::time::Duration::from_millis(5)).unwrap() >= 1);
    assert_eq!(gpu.created(), created, "buffers and bind groups made by repeated calls");
    assert_eq!(gpu.pipeline_counts().compiled, compiled, "pipelines compiled by repeated calls");
}

/// A session prepares the past lengths a generation loop will reach (`Session::prepare`, its
/// bindings from the inputs' shapes: `Session::bind_shapes`): their executables are built
/// beforehand, several at a time, and the loop's calls then compile and create nothing, and
/// give the bits of a session that builds each executable on its first call. Bindings no
/// call would have are refused before anything is built.
#[test]
fn prepared_past_lengths_build_nothing_when_the_loop_reaches_them() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let mut ins = reference_inputs(&g, "past9");
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    // The session to compare with, on a device of its own (what it creates is not counted).
    let other = common::gpu().expect("a second device");
    let mut plain = Session::new(&other, g.clone()).unwrap();
    let b9 = s.bind(&ins, &Default::default()).unwrap();
    assert_eq!((b9["past"], b9["all"]), (9, 10), "{b9:?}");
    // A binding from the inputs' shapes alone is the one their tensors make, checked alike.
    let shapes: HashMap<String, Vec<usize>> = ins.iter().map(|(k, t)| (k.clone(), t.shape().to_vec())).collect();
    assert_eq!(s.bind_shapes(&shapes, &Default::default()).unwrap(), b9);
    let mut bad = shapes.clone();
    bad.get_mut("past_1_v").unwrap()[2] = 8;
    let e = s.bind_shapes(&bad, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("past_1_v") && e.contains("'past'"), "{e}");
    bad = shapes.clone();
    bad.remove("past_0_k");
    let e = s.bind_shapes(&bad, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("past_0_k") && e.contains("no value"), "{e}");
    bad = shapes.clone();
    bad.insert("position_ids".into(), vec![1, 1]);
    let e = s.bind_shapes(&bad, &Default::default()).unwrap_err().to_string();
    assert!(e.contains("no input 'position_ids'"), "{e}");
    let at = |p: usize| past_binding(&b9, p);
    // Refused before anything is built: an input's symbol unbound, a symbol the graph does
    // not have, more new bindings than the session keeps.
    let mut unbound = at(9);
    unbound.remove("past");
    let e = s.prepare(&[at(10), unbound]).unwrap_err().to_string();
    assert!(e.contains("'past' unbound"), "{e}");
    let mut extra = at(9);
    extra.insert("bogus".into(), 3);
    let e = s.prepare(&[extra]).unwrap_err().to_string();
    assert!(e.contains("'bogus'"), "{e}");
    s.set_capacity(3);
    let e = s.prepare(&[at(9), at(10), at(11), at(12)]).unwrap_err().to_string();
    assert!(e.contains("4 bindings to prepare") && e.contains("keeps (3)"), "{e}");
    assert_eq!(s.executables(), 0, "nothing built on a refusal");
    // Past 9 to 12 prepared (one given twice): four executables.
    s.set_capacity(8);
    s.prepare(&[at(9), at(10), at(10), at(11), at(12)]).unwrap();
    assert_eq!(s.executables(), 4);
    let (created, compiled) = (gpu.created(), gpu.pipeline_counts().compiled);
    // The loop: each step's presents the next step's past; nothing built, the same bits.
    for (step, token) in [(0, 0), (1, 17), (2, 5), (3, 99)] {
        if step > 0 {
            ins.insert("input_ids".into(), ids(&[token]));
            ins.insert("attention_mask".into(), ids(&vec![1; 10 + step]));
        }
        let got = s.run(&ins).unwrap();
        let want = plain.run(&ins).unwrap();
        for (i, (x, y)) in got.iter().zip(&want).enumerate() {
            assert_eq!(bits(x), bits(y), "step {step}: output {}", g.output_name(i));
        }
        for (i, t) in got.iter().enumerate() {
            if let Some(layer) = g.output_name(i).strip_prefix("present_") {
                ins.insert(format!("past_{layer}"), t.clone());
            }
        }
    }
    assert_eq!(gpu.pipeline_counts().compiled, compiled, "pipelines compiled by the prepared loop");
    let now = gpu.created();
    assert_eq!((now.buffers, now.bind_groups), (created.buffers, created.bind_groups), "made by the prepared loop");
    assert_eq!(s.executables(), 4);
    // A session keeping three (past 10 to 12 now): two kept and two new are refused, though
    // only two are new; two kept and one new evict past 10, not those asked for.
    s.set_capacity(3);
    let before = gpu.created();
    let e = s.prepare(&[at(11), at(12), at(13), at(14)]).unwrap_err().to_string();
    assert!(e.contains("4 bindings to prepare") && e.contains("keeps (3)"), "{e}");
    s.prepare(&[at(11), at(12), at(13)]).unwrap();
    assert_eq!(s.executables(), 3);
    let built = gpu.created();
    assert!(built.buffers > before.buffers, "past 13 built");
    s.prepare(&[at(11), at(12), at(13)]).unwrap();
    assert_eq!(gpu.created().buffers, built.buffers, "past 11 to 13 kept");
    // A length past what the device binds fails to build: its error, and the one built
    // before it in order kept.
    let e = s.prepare(&[at(14), at(1 << 26)]).unwrap_err().to_string();
    assert!(e.contains("more than this device binds"), "{e}");
    let kept = gpu.created();
    s.prepare(&[at(14)]).unwrap();
    assert_eq!(gpu.created().buffers, kept.buffers, "past 14 kept");
}

/// A session's executables call through one staging and one readback buffer, fitted to the
/// largest: four past lengths prepared make four executables' buffers less three pairs, and
/// a call of the longest, then of the shortest, makes none and gives the bits of executables
/// with buffers of their own.
#[test]
fn a_sessions_executables_share_their_staging_and_readback_buffers() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let ins = reference_inputs(&g, "past9");
    let b9 = Session::new(&gpu, g.clone()).unwrap().bind(&ins, &Default::default()).unwrap();
    let at = |p: usize| past_binding(&b9, p);
    let made = |lengths: &[usize]| {
        let mut s = Session::new(&gpu, g.clone()).unwrap();
        let before = gpu.created().buffers;
        s.prepare(&lengths.iter().map(|&p| at(p)).collect::<Vec<_>>()).unwrap();
        (gpu.created().buffers - before, s)
    };
    let (one, _) = made(&[20]);
    let (four, mut s) = made(&[20, 21, 22, 23]);
    assert_eq!(four, 4 * (one - 2) + 2, "one prepared: {one} buffers");
    // Calls of the longest and the shortest: nothing made, the bits of standalone executables.
    for past in [23, 20] {
        let mut x = ins.clone();
        for name in ins.keys() {
            if name.starts_with("past_") {
                x.insert(name.clone(), Tensor::random(vec![1, 2, past, 8], past as u64, 1.0));
            }
        }
        x.insert("attention_mask".into(), ids(&vec![1; past + 1]));
        let before = gpu.created().buffers;
        let got = s.run(&x).unwrap();
        assert_eq!(gpu.created().buffers, before, "past {past}: the session's call made none");
        let own = Executable::new(&gpu, s.graph(), &at(past)).unwrap().run(&x).unwrap();
        for (a, b) in got.iter().zip(&own) {
            assert_eq!(bits(a), bits(b), "past {past}");
        }
    }
}

/// A session compiles every executable for its own target: with f16 products allowed
/// (`run --matmul-precision f16`) and cooperative matrices (emulated here, as on CI's
/// lavapipe), a prefill binding's fused projection runs on the cooperative-matrix GEMM,
/// within the f16 tolerance of the interpreter, while a decode binding of the same session
/// keeps the GEMV and a default session on the same graph (f32 weights: f32 products) never
/// takes the cooperative-matrix GEMM. The device's pipeline cache is keyed by the kernels'
/// code, without the choice comment: a kernel whose choice is worded otherwise reuses the
/// pipeline.
#[test]
fn a_session_honours_its_targets_precision_and_cooperative_matrices() {
    use glufuse::builder::{GraphBuilder, SiluSpelling};
    use glufuse::codegen::{MatmulPrecision, Target};
    use glufuse::shape::Bindings;
    let Some(gpu) = common::gpu() else { return };
    if !gpu.target().caps.contains(naga::valid::Capabilities::SHADER_FLOAT16) {
        eprintln!("SKIPPED: the adapter has no f16 in shaders ({})", gpu.describe());
        return;
    }
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, vec![Dim::Sym("tokens".into()), Dim::Fixed(64)]);
    let wg = b.weight("gate.weight", DType::F32, &[64, 176], 0.1);
    let wu = b.weight("up.weight", DType::F32, &[64, 176], 0.1);
    let gate = b.matmul("gate", x, wg);
    let up = b.matmul("up", x, wu);
    let act = b.silu("act.", gate, SiluSpelling::MulSigmoid);
    let y = b.mul("mul", act, up);
    let mut g = b.finish(&[y]).unwrap();
    PassManager::standard().run(&mut g).unwrap();
    let inputs = |tokens: usize| {
        let b: Bindings = [("tokens".to_string(), tokens)].into_iter().collect();
        interp::seeded_inputs(&g, &b, 7).unwrap()
    };
    let choices = |s: &mut Session, ins: &HashMap<String, Tensor>| -> Vec<String> {
        let b = s.bind(ins, &Default::default()).unwrap();
        let exe = s.executable(&b).unwrap();
        exe.kernels().iter().filter_map(|k| k.source().choice.as_ref().map(|c| c.kernel.clone())).collect()
    };
    let target = Target { matmul_precision: MatmulPrecision::F16, coop_emulate: true, ..gpu.target() };
    let mut s = Session::with_target(&gpu, g.clone(), target).unwrap();
    let (decode, prefill) = (inputs(1), inputs(20));
    let out = s.run(&prefill).unwrap();
    let c = choices(&mut s, &prefill);
    assert!(c.len() == 1 && c[0].starts_with("coop "), "prefill under f16 products: {c:?}");
    let want = interp::run(&g, &prefill).unwrap();
    let (_, rel) = interp::compare(&out[0], &want[0]);
    assert!(rel <= 2e-3, "cooperative-matrix GEMM within the f16 tolerance: rel {rel:e}");
    agree(&g, &decode, &s.run(&decode).unwrap());
    let c = choices(&mut s, &decode);
    assert!(c.len() == 1 && c[0].starts_with("gemv"), "decode: {c:?}");
    // The default target: f32 weights ask for f32 products.
    let mut plain = Session::new(&gpu, g.clone()).unwrap();
    agree(&g, &prefill, &plain.run(&prefill).unwrap());
    let c = choices(&mut plain, &prefill);
    assert!(c.len() == 1 && !c[0].starts_with("coop"), "f32 weights, default precision: {c:?}");
    // The same code under another choice comment: the cached pipeline.
    let b = s.bind(&prefill, &Default::default()).unwrap();
    let mut k = s.executable(&b).unwrap().kernels()[0].source().clone();
    k.wgsl = format!("// choice: {} (worded otherwise): a test\n{}", c[0], k.code());
    let before = gpu.pipeline_counts();
    gpu.pipeline(&k).unwrap();
    let after = gpu.pipeline_counts();
    assert_eq!((after.compiled, after.reused), (before.compiled, before.reused + 1));
}

/// The device's pipeline cache keeps the most recently used pipelines up to its capacity
/// (a decode loop compiles new kernels at every past length): past it the least recently used
/// are dropped, an executable still runs on the pipelines it holds, and one built again
/// compiles what was dropped.
#[test]
fn the_pipeline_cache_keeps_the_most_recently_used() {
    let Some(gpu) = common::gpu() else { return };
    gpu.set_pipeline_capacity(2);
    let graph = |h: u64| {
        let mut g = glufuse::synth::ffn_graph(h, 2 * h, 1, DType::F32, glufuse::ir::Layout::Kn).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        g
    };
    let (g1, g2, g3) = (graph(16), graph(32), graph(48));
    let b = Default::default();
    let e1 = Executable::new(&gpu, &g1, &b).unwrap();
    // g1's distinct kernel codes (the cache's keys).
    let k1 = e1.kernels().iter().map(|k| k.source().code().to_string()).collect::<std::collections::HashSet<_>>().len();
    let _e2 = Executable::new(&gpu, &g2, &b).unwrap();
    let _e3 = Executable::new(&gpu, &g3, &b).unwrap();
    let counts = gpu.pipeline_counts();
    assert!(gpu.cached_pipelines() <= 2, "{} cached", gpu.cached_pipelines());
    assert_eq!(counts.evicted, counts.compiled - gpu.cached_pipelines(), "{counts:?}");
    assert!(counts.evicted >= k1, "{counts:?}: g1's {k1} kernels were the least recently used");
    // The first executable still runs, and right.
    let ins = interp::seeded_inputs(&g1, &b, 3).unwrap();
    let (got, want) = (e1.run(&ins).unwrap(), interp::run(&g1, &ins).unwrap());
    assert!(interp::compare(&got[0], &want[0]).1 <= 1e-5);
    // Built again, it compiles its kernels again.
    let _again = Executable::new(&gpu, &g1, &b).unwrap();
    assert_eq!(gpu.pipeline_counts().compiled, counts.compiled + k1);
}

/// Pipelines asked for together ([`glufuse::runtime::Gpu::pipelines`], as an executable's
/// build asks) are compiled several at a time: each distinct code once, the counts as if
/// asked for one by one, and each kernel's pipeline in order. A kernel that does not compile
/// is the error, and the pipelines compiled beside it are kept.
#[test]
fn pipelines_asked_for_together_compile_each_code_once() {
    let Some(gpu) = common::gpu() else { return };
    let mut g = glufuse::synth::ffn_graph(16, 40, 1, DType::F32, glufuse::ir::Layout::Kn).unwrap();
    PassManager::standard().run(&mut g).unwrap();
    let e = Executable::new(&gpu, &g, &Default::default()).unwrap();
    let base = e.kernels()[0].source().clone();
    // Variants of one kernel: another code each (a comment at the end), all valid.
    let variant = |n: usize| {
        let mut k = base.clone();
        k.name = format!("variant {n}");
        k.wgsl.push_str(&format!("\n// variant {n}\n"));
        k
    };
    let (a, b) = (variant(1), variant(2));
    let before = gpu.pipeline_counts();
    let got = gpu.pipelines(&[&a, &b, &a, &b, &a]).unwrap();
    assert_eq!(got.len(), 5);
    let after = gpu.pipeline_counts();
    assert_eq!((after.compiled, after.reused), (before.compiled + 2, before.reused + 3), "{after:?}");
    // Each its code's pipeline: the same one for the same code (what the cache holds).
    assert!(got[0] == got[2] && got[2] == got[4] && got[1] == got[3] && got[0] != got[1]);
    assert!(gpu.pipeline(&a).unwrap() == got[0]);
    // One that does not compile, between two new ones: its error; the other two kept.
    let mut broken = variant(3);
    broken.name = "the broken one".into();
    broken.wgsl = broken.wgsl.replace("fn main(", "fn main(((");
    let (c, d) = (variant(4), variant(5));
    let err = gpu.pipelines(&[&c, &broken, &d]).unwrap_err().to_string();
    assert!(err.contains("the broken one"), "{err}");
    let compiled = gpu.pipeline_counts().compiled;
    assert_eq!(compiled, after.compiled + 2, "the two that compiled");
    gpu.pipelines(&[&d, &c]).unwrap();
    assert_eq!(gpu.pipeline_counts().compiled, compiled, "kept from the batch that failed");
}

/// Inputs and outputs of every dtype, many and large enough in all that a call converts them
/// on several threads and stages them while it records the run on another (a decode step's KV
/// cache and its present keys and values), and few enough that it converts them in order and
/// stages them first: each output is the interpreter's, bit for bit
/// (f16: the product rounded to f16, as the readback rounds it), at both sizes and twice at
/// the large one (a call reuses the bytes of the last).
#[test]
fn many_inputs_and_outputs_of_every_dtype_go_up_and_come_back_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let node = |name: &str, op: &str, ins: &[&str], dtype: &str| {
        let inputs: Vec<String> = ins.iter().map(|s| format!("\"{s}\"")).collect();
        let ins = if ins.is_empty() { String::new() } else { format!(", \"inputs\": [{}]", inputs.join(", ")) };
        format!(
            "{{\"name\": \"{name}\", \"op\": \"{op}\"{ins}, \"type\": {{\"dtype\": \"{dtype}\", \"shape\": [\"n\"]}}}}"
        )
    };
    let nodes = [
        node("a", "Input", &[], "f32"),
        node("b", "Input", &[], "f32"),
        node("h", "Input", &[], "f16"),
        node("k", "Input", &[], "f16"),
        node("i", "Input", &[], "i64"),
        node("j", "Input", &[], "i64"),
        node("m", "Input", &[], "bool"),
        node("sum", "Add", &["a", "b"], "f32"),
        node("prod", "Mul", &["h", "k"], "f16"),
        node("diff", "Sub", &["i", "j"], "i64"),
        node("not", "Not", &["m"], "bool"),
    ];
    let json = format!(
        "{{\"format\": \"glufuse.graph/1\", \"nodes\": [{}], \"outputs\": [\"sum\", \"prod\", \"diff\", \"not\"]}}",
        nodes.join(", ")
    );
    let g = glufuse::json::from_str(&json).unwrap();
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    // 7 inputs of 70000 values (490000 words) and 4 outputs (280000); then 7 × 100.
    for (n, seed) in [(70_000usize, 1u64), (70_000, 2), (100, 3)] {
        let f = |k: u64| Tensor::random(vec![n], seed * 10 + k, 4.0);
        let half = |t: Tensor| Tensor::f16(vec![n], t.as_f32().unwrap().to_vec()).unwrap();
        let ints = |k: i64| {
            Tensor::i64(vec![n], (0..n as i64).map(|x| (x * 7919 + k * seed as i64) % 100_003 - 50_000).collect())
                .unwrap()
        };
        let inputs: HashMap<String, Tensor> = [
            ("a", f(1)),
            ("b", f(2)),
            ("h", half(f(3))),
            ("k", half(f(4))),
            ("i", ints(5)),
            ("j", ints(6)),
            ("m", Tensor::bool(vec![n], (0..n).map(|x| (x * 31 + seed as usize) % 3 == 0).collect()).unwrap()),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect();
        let got = s.run(&inputs).unwrap();
        let want = interp::run(&g, &inputs).unwrap();
        assert_eq!(got.len(), 4);
        for (k, (x, y)) in got.iter().zip(&want).enumerate() {
            let y = if k == 1 { Tensor::f16(vec![n], y.as_f32().unwrap().to_vec()).unwrap() } else { y.clone() };
            assert_eq!(x.dtype(), y.dtype(), "output {k}, n = {n}");
            let (bx, by) = (bits(x), bits(&y));
            let first = bx.iter().zip(&by).position(|(p, q)| p != q);
            assert_eq!(first, None, "output {k}, n = {n}: first differing element");
            assert_eq!(bx.len(), n);
        }
    }
}

/// The graph inputs share one buffer, each at an aligned offset, and go up in one copy; the
/// outputs no kernel reads share another and come back in one copy. Inputs of a few bytes
/// (whose neighbours then start past padding), an empty one, one that is itself a graph
/// output and one read by two kernels; outputs of odd sizes, an empty one, one that a kernel
/// reads (which keeps its own buffer), one that is a view of another output, one listed twice:
/// all come back as the interpreter has them, at several sizes of the same executable's
/// symbol and after calls with other values.
#[test]
fn inputs_and_outputs_of_odd_sizes_share_buffers_and_come_back_exactly() {
    let Some(gpu) = common::gpu() else { return };
    let json = r#"{"format": "glufuse.graph/1", "nodes": [
  {"name": "a", "op": "Input", "type": {"dtype": "f32", "shape": ["n"]}},
  {"name": "e", "op": "Input", "type": {"dtype": "f32", "shape": [0]}},
  {"name": "c", "op": "Input", "type": {"dtype": "f32", "shape": [3]}},
  {"name": "i", "op": "Input", "type": {"dtype": "i64", "shape": ["n"]}},
  {"name": "b", "op": "Input", "type": {"dtype": "f32", "shape": ["n"]}},
  {"name": "sum", "op": "Add", "inputs": ["a", "b"], "type": {"dtype": "f32", "shape": ["n"]}},
  {"name": "cc", "op": "Mul", "inputs": ["c", "c"], "type": {"dtype": "f32", "shape": [3]}},
  {"name": "ee", "op": "Add", "inputs": ["e", "e"], "type": {"dtype": "f32", "shape": [0]}},
  {"name": "ii", "op": "Sub", "inputs": ["i", "i"], "type": {"dtype": "i64", "shape": ["n"]}},
  {"name": "ab", "op": "Mul", "inputs": ["b", "a"], "type": {"dtype": "f32", "shape": ["n"]}},
  {"name": "s2", "op": "Mul", "inputs": ["sum", "a"], "type": {"dtype": "f32", "shape": ["n"]}},
  {"name": "abr", "op": "Reshape", "shape": [1, -1], "inputs": ["ab"]}],
  "outputs": ["sum", "c", "cc", "ee", "ii", "ab", "s2", "abr", "cc"]}"#;
    let g = glufuse::json::from_str(json).unwrap();
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    for (n, seed) in [(1usize, 1u64), (5, 2), (5, 3), (67, 4), (0, 5)] {
        let inputs: HashMap<String, Tensor> = [
            ("a", Tensor::random(vec![n], seed * 10 + 1, 3.0)),
            ("e", Tensor::f32(vec![0], vec![]).unwrap()),
            ("c", Tensor::random(vec![3], seed * 10 + 2, 3.0)),
            ("i", Tensor::i64(vec![n], (0..n as i64).map(|x| x * 1_000_003 - seed as i64).collect()).unwrap()),
            ("b", Tensor::random(vec![n], seed * 10 + 3, 3.0)),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect();
        let got = s.run(&inputs).unwrap();
        let want = interp::run(&g, &inputs).unwrap();
        assert_eq!(got.len(), 9);
        for (k, (x, y)) in got.iter().zip(&want).enumerate() {
            assert_eq!((x.shape(), x.dtype()), (y.shape(), y.dtype()), "output {k}, n = {n}");
            assert_eq!(bits(x), bits(y), "output {k}, n = {n}");
        }
        // The input that is an output comes back as given.
        assert_eq!(got[1].as_f32().unwrap(), inputs["c"].as_f32().unwrap());
    }
}

/// A decode loop over a static-cache export (`llama_staticstep`: Hugging Face's StaticCache
/// of 16 positions, the new keys and values written by `ScatterND` at `cache_position`): every
/// step has the same shapes, so one executable serves them all and nothing is compiled after
/// the first step. Each step matches the interpreter, the first onnxruntime; each step's
/// present caches equal its past but at the step's position.
#[test]
fn a_static_cache_loop_keeps_one_executable_and_compiles_nothing_after_the_first_step() {
    let Some(gpu) = common::gpu() else { return };
    let mut g = load_graph(&models().join("llama_staticstep.onnx")).unwrap();
    PassManager::standard().run(&mut g).unwrap();
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    let mut ins = model_inputs(&g, "llama_staticstep", "pos0");
    let mut out = s.run(&ins).unwrap();
    let ty = TensorType::new(DType::F32, vec![Dim::Fixed(1), Dim::Fixed(1), Dim::Fixed(128)]);
    let want = read_npy(&models().join("llama_staticstep.pos0.out.logits.npy"), &ty).unwrap();
    assert!(interp::compare(&out[0], &want).1 <= 1e-4, "step at position 0 against onnxruntime");
    let compiled = gpu.pipeline_counts().compiled;
    for (pos, token) in [(1usize, 17i64), (2, 5), (3, 99), (4, 3), (5, 64)] {
        for (i, t) in out.iter().enumerate() {
            if let Some(layer) = g.output_name(i).strip_prefix("present_") {
                ins.insert(format!("past_{layer}"), t.clone());
            }
        }
        ins.insert("input_ids".into(), ids(&[token]));
        ins.insert("cache_position".into(), Tensor::i64(vec![1], vec![pos as i64]).unwrap());
        ins.insert("attention_mask".into(), ids(&(0..16).map(|q| i64::from(q <= pos)).collect::<Vec<_>>()));
        let next = s.run(&ins).unwrap();
        agree(&g, &ins, &next);
        // present_0_k [1, 2, 16, 8]: the past but at `pos`, where the new key went.
        let (past, present) = (ins["past_0_k"].as_f32().unwrap(), next[1].as_f32().unwrap());
        assert_eq!(next[1].shape(), &[1, 2, 16, 8]);
        for (e, (a, b)) in past.iter().zip(present).enumerate() {
            let q = (e / 8) % 16;
            if q != pos {
                assert_eq!(a.to_bits(), b.to_bits(), "position {pos}: element {e} (row {q}) changed");
            }
        }
        // (The past holds zeros from the position on: nothing was written there yet.)
        let row = |h: usize| &present[(h * 16 + pos) * 8..(h * 16 + pos + 1) * 8];
        assert!((0..2).all(|h| row(h).iter().any(|&x| x != 0.0)), "position {pos}: the new keys written");
        assert_eq!(s.executables(), 1, "position {pos}: one executable for every position");
        assert_eq!(gpu.pipeline_counts().compiled, compiled, "position {pos}: nothing compiled");
        out = next;
    }
}

/// A wait for the GPU past the device's limit ([`Gpu::set_wait_timeout`],
/// `GLUFUSE_GPU_TIMEOUT`) is an error saying what was waited for and where the limit is set,
/// never a process that waits for ever; once the work is done, a new session on the same
/// device runs and gives the first run's bits.
#[test]
fn a_wait_past_the_devices_limit_is_an_error() {
    let Some(gpu) = common::gpu() else { return };
    // x·w at 1024³: longer than a zero wait on any device (a millisecond or more on the H100,
    // most of a second on lavapipe), its submission polled straight after it is made.
    let text = r#"{"format": "glufuse.graph/1", "nodes": [
        {"name": "x", "op": "Input", "type": {"dtype": "f32", "shape": [1024, 1024]}},
        {"name": "w", "op": "Input", "type": {"dtype": "f32", "shape": [1024, 1024]}},
        {"name": "y", "op": "MatMul", "inputs": ["x", "w"]}], "outputs": ["y"]}"#;
    let g: Graph = glufuse::json::from_str(text).unwrap();
    let ins: HashMap<String, Tensor> =
        [("x", 1), ("w", 2)].map(|(n, seed)| (n.to_string(), Tensor::random(vec![1024, 1024], seed, 1.0))).into();
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    let first = s.run(&ins).unwrap();
    gpu.set_wait_timeout(std::time::Duration::ZERO);
    let e = s.run(&ins).expect_err("a zero wait returned the results").to_string();
    assert!(
        e.contains("running the graph") && e.contains("did not finish within 0 s") && e.contains("GLUFUSE_GPU_TIMEOUT"),
        "{e}"
    );
    gpu.set_wait_timeout(glufuse::runtime::WAIT_TIMEOUT);
    gpu.wait("the run that timed out").unwrap();
    let again = Session::new(&gpu, g).unwrap().run(&ins).unwrap();
    assert_eq!(bits(&again[0]), bits(&first[0]));
}

/// The inputs of the step after one on `ins`, but for the caches: other token ids of the
/// same shape (within every test model's vocabulary), the attention mask longer by the new
/// tokens where the caches grow (a dynamic cache) or as it was (a static one, whose mask is
/// the cache's length), the positions moved on by the new tokens.
fn next_step_inputs(ins: &HashMap<String, Tensor>, step: i64) -> HashMap<String, Tensor> {
    let new = ins["input_ids"].shape()[1];
    let mut next = ins.clone();
    let shift = |t: &Tensor, by: i64| {
        let v: Vec<i64> = t.as_i64().unwrap().iter().map(|x| x + by).collect();
        Tensor::i64(t.shape().to_vec(), v).unwrap()
    };
    let old = ins["input_ids"].as_i64().unwrap();
    let ids: Vec<i64> = old.iter().enumerate().map(|(i, &x)| (x * 31 + 7 * step + i as i64) % 50 + 1).collect();
    next.insert("input_ids".into(), Tensor::i64(vec![1, new], ids).unwrap());
    if !ins.contains_key("cache_position") {
        let mut mask = ins["attention_mask"].as_i64().unwrap().to_vec();
        mask.extend(std::iter::repeat_n(1, new));
        next.insert("attention_mask".into(), Tensor::i64(vec![1, mask.len()], mask).unwrap());
    }
    for name in ["cache_position", "position_ids"] {
        if let Some(t) = ins.get(name) {
            next.insert(name.into(), shift(t, new as i64));
        }
    }
    next
}

/// A generation loop whose caches stay on the GPU (`Session::step` with
/// `Feedback::caches`) gives, step by step, the bits of the loop that reads every present
/// cache back and uploads it as the next past (`Session::run`), and the caches it keeps are
/// that loop's last present ones: dynamic caches (several new tokens a step, f32 and f16,
/// eager and sdpa exports, optimum's names) and static ones (the present written in place
/// of the past).
#[test]
fn fed_back_caches_give_the_bits_of_the_loop_through_the_host() {
    let Some(gpu) = common::gpu() else { return };
    let root = common::root().join("tests/data");
    let cases = [
        ("models/llama_kvstep", "past4n3"),
        ("models/llama_f16_kvstep", "past9"),
        ("models/gpt2_kvstep", "past4n3"),
        ("models/l_phi3_sdpa_kvstep", "past9"),
        ("models/qwen2_f16_staticstep", "pos5"),
        ("models/olmo_staticstep", "pos0"),
        ("optimum/o_llama", "p1"),
    ];
    for (model, tag) in cases {
        let mut g = load_graph(&root.join(format!("{model}.onnx"))).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        let feedback = glufuse::runtime::Feedback::caches(&g).unwrap();
        let pairs: Vec<(String, String)> = feedback.pairs().map(|(o, i)| (o.to_string(), i.to_string())).collect();
        assert_eq!(pairs.len(), g.outputs.len() - 1, "{model}: every output but the logits is a cache");
        let mut ins: HashMap<String, Tensor> = g
            .input_nodes()
            .into_iter()
            .map(|n| {
                let node = g.node(n);
                let p = root.join(format!("{model}.{tag}.{}.npy", node.name));
                (node.name.clone(), read_npy(&p, &node.outputs[0]).unwrap())
            })
            .collect();
        let mut host = Session::new(&gpu, g.clone()).unwrap();
        let mut fed = Session::new(&gpu, g.clone()).unwrap();
        let mut fed_ins = ins.clone();
        for step in 0..4 {
            let want = host.run(&ins).unwrap();
            let got = fed.step(&fed_ins, &Default::default(), &feedback).unwrap();
            assert_eq!(got.len(), 1, "{model}: only the logits come back");
            assert_eq!(bits(&got[0]), bits(&want[0]), "{model}: step {step}: logits");
            assert_eq!(got[0].shape(), want[0].shape());
            // The next step: the host loop gives the present caches as the past, the fed loop
            // gives none of them.
            ins = next_step_inputs(&ins, step);
            for (j, (out, inp)) in (1..).zip(&pairs) {
                assert_eq!(&g.output_name(j), out);
                ins.insert(inp.clone(), want[j].clone());
            }
            fed_ins = ins.clone();
            fed_ins.retain(|k, _| !pairs.iter().any(|(_, i)| i == k));
        }
        for (_, inp) in &pairs {
            let kept = fed.fed_value(inp).unwrap();
            assert_eq!(kept.shape(), ins[inp].shape(), "{model}: {inp}");
            assert_eq!(bits(&kept), bits(&ins[inp]), "{model}: the cache kept for {inp}");
        }
        eprintln!("{model}: 4 steps, {} caches fed back", pairs.len());
    }
}

/// A fed step's failures: a fed input neither given nor kept is an error naming it; a step
/// that fails on the GPU (a token id out of range) keeps the caches the step before kept, so
/// the step run again with good inputs gives the host loop's bits; giving the fed inputs
/// again starts over; a steady loop over a static cache makes no buffer after its first
/// steps; a feedback made for another graph is refused.
#[test]
fn a_failed_fed_step_keeps_its_caches_and_a_given_cache_starts_over() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let feedback = glufuse::runtime::Feedback::caches(&g).unwrap();
    let first = reference_inputs(&g, "past9");
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    let only = |ins: &HashMap<String, Tensor>| -> HashMap<String, Tensor> {
        ins.iter().filter(|(k, _)| !k.starts_with("past_")).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let err = s.step(&only(&first), &Default::default(), &feedback).unwrap_err().to_string();
    assert!(err.contains("past_") && err.contains("no step has kept one"), "{err}");
    assert!(s.fed_value("past_0_k").is_err());
    // The host loop's two steps.
    let mut host = Session::new(&gpu, g.clone()).unwrap();
    let out1 = host.run(&first).unwrap();
    let mut second = next_step_inputs(&first, 1);
    for (j, t) in out1.iter().enumerate().skip(1) {
        second.insert(g.output_name(j).replace("present_", "past_"), t.clone());
    }
    let out2 = host.run(&second).unwrap();
    let got1 = s.step(&first, &Default::default(), &feedback).unwrap();
    assert_eq!(bits(&got1[0]), bits(&out1[0]));
    let mut bad = only(&second);
    bad.insert("input_ids".into(), ids(&[1_000_000]));
    let err = s.step(&bad, &Default::default(), &feedback).unwrap_err().to_string();
    assert!(err.contains("out of range"), "{err}");
    assert_eq!(bits(&s.fed_value("past_1_v").unwrap()), bits(&out1[4]), "the failed step kept nothing");
    let got2 = s.step(&only(&second), &Default::default(), &feedback).unwrap();
    assert_eq!(bits(&got2[0]), bits(&out2[0]), "the step after a failed one");
    // The first inputs again, caches and all: the first step's bits.
    let again = s.step(&first, &Default::default(), &feedback).unwrap();
    assert_eq!(bits(&again[0]), bits(&out1[0]), "given caches start over");
    s.forget_fed();
    assert!(s.step(&only(&second), &Default::default(), &feedback).is_err(), "forgotten caches are not fed");
    // Another graph's feedback.
    let mut other = load_graph(&models().join("llama_staticstep.onnx")).unwrap();
    PassManager::standard().run(&mut other).unwrap();
    let wrong = glufuse::runtime::Feedback::new(&other, &[("present_0_k", "past_0_k"), ("logits", "past_0_v")]);
    let err = wrong.unwrap_err().to_string();
    assert!(err.contains("past_0_v") && err.contains("rank"), "{err}");
    // A static cache: after two steps (their buffers made), steps make no buffer.
    let static_fb = glufuse::runtime::Feedback::caches(&other).unwrap();
    let mut st = Session::new(&gpu, other.clone()).unwrap();
    let mut ins = model_inputs(&other, "llama_staticstep", "pos0");
    for step in 0..5 {
        if step == 2 {
            let created = gpu.created();
            for step in 2..5 {
                ins = next_step_inputs(&ins, step);
                st.step(&ins, &Default::default(), &static_fb).unwrap();
            }
            assert_eq!(gpu.created(), created, "buffers or bind groups made by steady steps");
            break;
        }
        st.step(&ins, &Default::default(), &static_fb).unwrap();
        ins = next_step_inputs(&ins, step);
        ins.retain(|k, _| !k.starts_with("past_"));
    }
    // A feedback of optimum's names, made for its export, on the Llama step's session.
    let mut o = load_graph(&common::root().join("tests/data/optimum/o_llama.onnx")).unwrap();
    PassManager::standard().run(&mut o).unwrap();
    let theirs = glufuse::runtime::Feedback::caches(&o).unwrap();
    let err = s.step(&first, &Default::default(), &theirs).unwrap_err().to_string();
    assert!(err.contains("present.0.key") && err.contains("another graph"), "{err}");
}

/// Feedbacks are checked against their graph: the outputs and inputs named (the lists of
/// those the graph has in the error), their dtypes, ranks and fixed sizes, pairs named twice,
/// and graphs without present caches.
#[test]
fn feedbacks_name_what_does_not_fit() {
    use glufuse::runtime::Feedback;
    let g = kvstep();
    let err = |pairs: &[(&str, &str)]| Feedback::new(&g, pairs).unwrap_err().to_string();
    let e = err(&[("present_9_k", "past_0_k")]);
    assert!(e.contains("no output 'present_9_k'") && e.contains("present_0_k"), "{e}");
    let e = err(&[("present_0_k", "past_9")]);
    assert!(e.contains("no input 'past_9'") && e.contains("input_ids"), "{e}");
    let e = err(&[("logits", "input_ids")]);
    assert!(e.contains("input_ids") && e.contains("i64") && e.contains("f32"), "{e}");
    let e = err(&[("present_0_k", "past_0_k"), ("present_0_v", "past_0_k")]);
    assert!(e.contains("twice"), "{e}");
    let e = err(&[("present_0_k", "past_0_k"), ("present_0_k", "past_0_v")]);
    assert!(e.contains("twice"), "{e}");
    assert!(err(&[]).contains("at least one"));
    let pairs: Vec<(String, String)> =
        Feedback::caches(&g).unwrap().pairs().map(|(o, i)| (o.into(), i.into())).collect();
    assert_eq!(pairs.len(), 4);
    assert!(pairs.iter().all(|(o, i)| o.replace("present_", "past_") == *i), "{pairs:?}");
    let mut o = load_graph(&common::root().join("tests/data/optimum/o_qwen2.onnx")).unwrap();
    PassManager::standard().run(&mut o).unwrap();
    let pairs: Vec<(String, String)> =
        Feedback::caches(&o).unwrap().pairs().map(|(o, i)| (o.into(), i.into())).collect();
    assert!(pairs.iter().any(|(o, i)| o == "present.0.key" && i == "past_key_values.0.key"), "{pairs:?}");
    let mut d = load_graph(&models().join("llama_dynseq.onnx")).unwrap();
    PassManager::standard().run(&mut d).unwrap();
    let e = Feedback::caches(&d).unwrap_err().to_string();
    assert!(e.contains("present"), "{e}");
}

/// A feedback of some caches only (the keys; the values go through the host): the step
/// returns the outputs not fed back in order (the logits, then the values), the values given
/// between the fed keys are not overwritten, and the bits are the loop through the host's.
#[test]
fn a_partial_feedback_keeps_some_caches_and_returns_the_others() {
    let Some(gpu) = common::gpu() else { return };
    let g = kvstep();
    let keys: Vec<(String, String)> = (0..g.outputs.len())
        .map(|j| g.output_name(j))
        .filter(|o| o.starts_with("present_") && o.ends_with("_k"))
        .map(|o| (o.clone(), o.replace("present_", "past_")))
        .collect();
    assert_eq!(keys.len(), 2);
    let refs: Vec<(&str, &str)> = keys.iter().map(|(o, i)| (o.as_str(), i.as_str())).collect();
    let feedback = glufuse::runtime::Feedback::new(&g, &refs).unwrap();
    let mut ins = reference_inputs(&g, "past9");
    let mut fed_ins = ins.clone();
    let mut host = Session::new(&gpu, g.clone()).unwrap();
    let mut fed = Session::new(&gpu, g.clone()).unwrap();
    for step in 0..3 {
        let want = host.run(&ins).unwrap();
        let got = fed.step(&fed_ins, &Default::default(), &feedback).unwrap();
        let returned: Vec<usize> = (0..g.outputs.len()).filter(|&j| !feedback.feeds_output(j)).collect();
        assert_eq!(got.len(), returned.len());
        for (t, &j) in got.iter().zip(&returned) {
            assert_eq!(bits(t), bits(&want[j]), "step {step}: output {}", g.output_name(j));
        }
        ins = next_step_inputs(&ins, step);
        for (j, t) in want.iter().enumerate().skip(1) {
            ins.insert(g.output_name(j).replace("present_", "past_"), t.clone());
        }
        fed_ins = ins.clone();
        fed_ins.retain(|k, _| !keys.iter().any(|(_, i)| i == k));
    }
}

/// An f16 output the GPU stores as packed f16 (a row program's that no node reads) cannot be
/// fed back: its words are two values each, no input's. The step is refused naming it, and
/// nothing is kept.
#[test]
fn a_packed_f16_output_is_not_fed_back() {
    let Some(gpu) = common::gpu() else { return };
    let text = r#"{"format": "glufuse.graph/1", "nodes": [
        {"name": "x", "op": "Input", "type": {"dtype": "f16", "shape": [2, 64]}},
        {"name": "sq", "op": "Mul", "inputs": ["x", "x"]},
        {"name": "ms", "op": "ReduceMean", "axes": [-1], "keepdims": true, "inputs": ["sq"]},
        {"name": "y", "op": "Div", "inputs": ["x", "ms"]}], "outputs": ["y"]}"#;
    let mut g: Graph = glufuse::json::from_str(text).unwrap();
    PassManager::standard().run(&mut g).unwrap();
    let feedback = glufuse::runtime::Feedback::new(&g, &[("y", "x")]).unwrap();
    let ins: HashMap<String, Tensor> = [("x".to_string(), Tensor::f16(vec![2, 64], vec![0.5; 128]).unwrap())].into();
    let mut s = Session::new(&gpu, g).unwrap();
    let err = s.step(&ins, &Default::default(), &feedback).unwrap_err().to_string();
    assert!(err.contains("'y'") && err.contains("packed f16"), "{err}");
    assert!(s.fed_value("x").is_err(), "nothing kept");
    // The same graph through the host runs.
    assert_eq!(s.run(&ins).unwrap()[0].shape(), &[2, 64]);
}
