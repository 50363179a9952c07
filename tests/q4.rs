//! 4-bit weights (tests/data/q4, made by onnxruntime's own quantizer, and two from the shared
//! set copied in as `shared_*`): every model loads, fuses as its float original does (one
//! gated FFN each, GPT-2's MLP none), and its outputs match onnxruntime's CPU references within
//! 1e-3 of the largest value, on the interpreter and on the GPU, fused and unfused, for each
//! reference input (`t1`: one token, `t7`: seven).
// The GPU half of the file (the kernel sweeps) is not built without the `gpu` feature.
#![cfg_attr(not(feature = "gpu"), allow(dead_code, unused_imports))]

mod common;

use glufuse::builder::GraphBuilder;
use glufuse::files::{load_graph, read_npy};
use glufuse::ir::Tensor;
use glufuse::ir::{shape_of, Activation, DType, Layout, Op, QuantWeight, TensorType, Value};
use glufuse::passes::{fusion_report, PassManager};
use glufuse::Graph;
use std::collections::HashMap;
use std::path::PathBuf;

/// Largest error allowed, relative to the largest value of the reference.
const TOL: f64 = 1e-3;

fn dir() -> PathBuf {
    common::root().join("tests/data/q4")
}

/// Every model, by stem.
fn models() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Gated FFNs a model has: GPT-2's MLP none, every other one.
fn ffns(m: &str) -> usize {
    if m.starts_with("gpt2") {
        0
    } else {
        1
    }
}

/// The reference sets of a model: (tag, input, expected output). The `DequantizeLinear` (QDQ)
/// models are checked against `.exact.npy`: onnxruntime with its graph optimizations off, as
/// the ONNX spec defines the ops (its default session rewrites them into `MatMulNBits` at
/// accuracy level 4, which quantizes the activations to int8: 0.5-2.4% off the exact product;
/// `exact_refs.py` in the folder says more).
fn references(m: &str, g: &Graph) -> Vec<(String, Tensor, Tensor)> {
    let xt = g.node(g.input_nodes()[0]).outputs[0].clone();
    let ot = g.ty(g.outputs[0]).clone();
    let read = |f: String, ty| read_npy(&dir().join(&f), ty).unwrap_or_else(|e| panic!("{f}: {e}"));
    let tags: Vec<Option<&str>> = if m.starts_with("shared_") { vec![None] } else { vec![Some("t1"), Some("t7")] };
    tags.into_iter()
        .map(|t| {
            let stem = t.map_or(m.to_string(), |t| format!("{m}.{t}"));
            let out = match (m.contains("qdq"), t) {
                (true, _) => format!("{stem}.exact.npy"),
                (false, Some(_)) => format!("{stem}.out.out.npy"),
                (false, None) => format!("{stem}.out.npy"),
            };
            (t.unwrap_or("ref").to_string(), read(format!("{stem}.x.npy"), &xt), read(out, &ot))
        })
        .collect()
}

fn fused(g: &Graph) -> (Graph, glufuse::passes::fusion::FusionReport) {
    let mut f = g.clone();
    let mut pm = PassManager::standard();
    pm.verify_each = true;
    let runs = pm.run(&mut f).unwrap();
    let rep = fusion_report(&runs).unwrap().clone();
    (f, rep)
}

#[test]
fn every_q4_model_loads_and_fuses_as_its_float_original() {
    let ms = models();
    assert_eq!(ms.len(), 50, "48 models of tests/data/q4 and 2 shared ones");
    for m in &ms {
        let g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{m}: {e}"));
        assert_eq!(g.summary().opaque, 0, "{m}: nothing opaque");
        let quant = g
            .topo_order()
            .unwrap()
            .into_iter()
            .filter(|&n| matches!(g.node(n).op, glufuse::ir::Op::QuantWeight(_)))
            .count();
        let want = if m.starts_with("merged") || m.starts_with("gpt2") { 2 } else { 3 };
        assert_eq!(quant, want, "{m}: its quantized weights");
        let (_, rep) = fused(&g);
        assert_eq!(rep.fused, ffns(m), "{m}\n{}", rep.to_text(false));
        assert_eq!(rep.rejected, 0, "{m}\n{}", rep.to_text(false));
    }
}

#[test]
fn q4_models_match_onnxruntime_on_the_interpreter() {
    let mut worst = (0.0f64, String::new());
    for m in models() {
        let g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        let (f, _) = fused(&g);
        let name = g.node(g.input_nodes()[0]).name.clone();
        for (tag, x, want) in references(&m, &g) {
            let inputs: HashMap<_, _> = [(name.clone(), x)].into_iter().collect();
            for (label, graph) in [("unfused", &g), ("fused", &f)] {
                let got = glufuse::interp::run(graph, &inputs).unwrap();
                let (_, rel) = glufuse::interp::compare(&got[0], &want);
                assert!(rel < TOL, "{m} {tag} {label}: rel {rel:e}");
                if rel > worst.0 {
                    worst = (rel, format!("{m} {tag} {label}"));
                }
            }
        }
    }
    eprintln!("worst interpreter error against onnxruntime: {:e} ({})", worst.0, worst.1);
}

#[test]
fn q4_graphs_round_trip_through_json_and_dump_their_packing() {
    for m in ["llama_nbits_a32", "llama_qdq_s16", "merged_nbits_s32", "geglu_tanh_f16_qdq_a32"] {
        let g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        let (f, _) = fused(&g);
        for graph in [&g, &f] {
            let j = glufuse::json::to_string(graph).unwrap();
            let back = glufuse::json::from_str(&j).unwrap();
            assert_eq!(glufuse::json::to_string(&back).unwrap(), j, "{m}");
        }
        let text = glufuse::dump::render(&g, glufuse::dump::Format::Text).unwrap();
        assert!(text.contains("QuantWeight("), "{m}: {text}");
    }
    let g = load_graph(&dir().join("llama_qdq_a32.onnx")).unwrap();
    let text = glufuse::dump::render(&g, glufuse::dump::Format::Text).unwrap();
    assert!(text.contains("QuantWeight(uint4, block 32, asym)"), "{text}");
    let g = load_graph(&dir().join("llama_qdq_s32.onnx")).unwrap();
    let text = glufuse::dump::render(&g, glufuse::dump::Format::Text).unwrap();
    assert!(text.contains("QuantWeight(int4, block 32, sym)"), "{text}");
}

#[cfg(feature = "gpu")]
#[test]
fn q4_models_match_onnxruntime_on_the_gpu() {
    let Some(gpu) = common::gpu() else { return };
    // The subset (a software adapter): the models at sorted positions 4i and 4i + 3, for
    // most architectures their MatMulNBits asymmetric and QDQ symmetric models (llama's:
    // blocks of 64 and 128 of each), so every architecture, both encodings and both kinds of
    // zero point still run, each with one of its reference sets taken in turn (1 row, then
    // 7). The interpreter test checks them all, q4_kernels_match_the_interpreter every block
    // size on the GPU.
    let sweep = common::sweep(&gpu, "q4_models_match_onnxruntime_on_the_gpu");
    let mut worst = (0.0f64, String::new());
    let mut kinds = std::collections::BTreeSet::new();
    for (mi, m) in models().into_iter().enumerate() {
        if sweep == common::Sweep::Subset && mi % 4 != 0 && mi % 4 != 3 {
            continue;
        }
        let g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        let (f, _) = fused(&g);
        let name = g.node(g.input_nodes()[0]).name.clone();
        let mut refs = references(&m, &g);
        if sweep == common::Sweep::Subset {
            refs = vec![refs.swap_remove(mi % refs.len())];
        }
        for (label, graph) in [("unfused", &g), ("fused", &f)] {
            for (tag, x, want) in refs.clone() {
                let inputs: HashMap<_, _> = [(name.clone(), x)].into_iter().collect();
                let b = glufuse::interp::bind_graph_inputs(graph, &inputs, &Default::default()).unwrap();
                let exe = glufuse::runtime::Executable::new(&gpu, graph, &b)
                    .unwrap_or_else(|e| panic!("{m} {tag} {label}: {e}"));
                for k in exe.kernels() {
                    kinds.insert(k.source().kind.to_string());
                }
                let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{m} {tag} {label}: {e}"));
                let (_, rel) = glufuse::interp::compare(&got[0], &want);
                assert!(rel < TOL, "{m} {tag} {label} GPU vs onnxruntime: rel {rel:e}");
                if rel > worst.0 {
                    worst = (rel, format!("{m} {tag} {label}"));
                }
            }
        }
    }
    eprintln!("worst GPU error against onnxruntime: {:e} ({}); kernels {kinds:?}", worst.0, worst.1);
    for k in ["fused-gate-up-gemv-q4", "matmul-gemv-q4"] {
        assert!(kinds.contains(k), "{k} never ran: {kinds:?}");
    }
}

#[cfg(feature = "gpu")]
#[test]
fn run_check_on_q4_models_from_the_cli() {
    if common::gpu().is_none() {
        return;
    }
    for m in ["llama_nbits_a32", "merged_qdq_s32"] {
        for extra in [&[][..], &["--unfused"][..]] {
            let o = std::process::Command::new(env!("CARGO_BIN_EXE_glufuse"))
                .arg("run")
                .arg(dir().join(format!("{m}.onnx")))
                .arg("--input")
                .arg(format!("x={}", dir().join(format!("{m}.t7.x.npy")).display()))
                .arg("--check")
                .args(extra)
                .output()
                .unwrap();
            let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            assert!(o.status.success(), "{m} {extra:?}: {out}");
            assert!(out.contains("check out: max abs err"), "{out}");
        }
    }
}

/// One configuration of the kernel sweep: x `[rows, k]`, gate and up of `n` features.
#[derive(Clone, Copy, Debug)]
struct Case {
    rows: u64,
    k: u64,
    n: u64,
    layout: Layout,
    block: u64,
    signed: bool,
    asym: bool,
    f16: bool,
    bias: bool,
    merged: bool,
}

/// A 4-bit weight of seeded values in ±0.5, quantized as the case says, blocked along k.
fn qweight(b: &mut GraphBuilder, name: &str, c: &Case, n: u64, seed: u64) -> Value {
    let (rows, cols, axis) = match c.layout {
        Layout::Kn => (c.k, n, 0),
        Layout::Nk => (n, c.k, 1),
    };
    let vals = Tensor::random(vec![(rows * cols) as usize], seed, 0.5);
    let q = QuantWeight::quantize(vals.as_f32().unwrap(), rows, cols, c.block, axis, c.signed, !c.asym, c.f16).unwrap();
    let dtype = if c.f16 { DType::F16 } else { DType::F32 };
    let w = b.node(name, Op::QuantWeight(q), &[], vec![TensorType::new(dtype, shape_of(&[rows, cols]))])[0];
    match c.layout {
        Layout::Kn => w,
        Layout::Nk => b.transpose(&format!("{name}.t"), w, &[1, 0]),
    }
}

fn build(c: &Case, act: Activation) -> Graph {
    let mut b = GraphBuilder::new();
    let dtype = if c.f16 { DType::F16 } else { DType::F32 };
    let x = b.input("x", dtype, shape_of(&[c.rows, c.k]));
    let (mut g, mut u) = if c.merged {
        let w = qweight(&mut b, "gate_up.w", c, 2 * c.n, 1);
        let gu = b.matmul("gate_up", x, w);
        let parts = b.split("chunk", gu, -1, &[c.n, c.n]);
        (parts[0], parts[1])
    } else {
        let (wg, wu) = (qweight(&mut b, "gate.w", c, c.n, 1), qweight(&mut b, "up.w", c, c.n, 2));
        (b.matmul("gate", x, wg), b.matmul("up", x, wu))
    };
    if c.bias {
        let bg = b.weight("gate.b", dtype, &[c.n], 0.3);
        let bu = b.weight("up.b", dtype, &[c.n], 0.3);
        g = b.add("gate.bias", g, bg);
        u = b.add("up.bias", u, bu);
    }
    let a = b.unary("act", act.unary(), g);
    let m = b.mul("mul", a, u);
    b.finish(&[m]).unwrap()
}

/// The 4-bit kernels against the interpreter over shapes (K not a multiple of the block or
/// of 4, odd N), rows 1/2/7/16/40/130, block sizes 16..256, signed and unsigned, symmetric
/// and asymmetric, f16 and f32 scales, biases, merged gate_up, both layouts, fused and
/// unfused; the decode GEMV with and without subgroups, both unpackings and 1, 2 or 4
/// features per lane group; the cooperative-matrix GEMM emulated (f16 products: 3e-3).
#[cfg(feature = "gpu")]
#[test]
fn q4_kernels_match_the_interpreter() {
    use glufuse::codegen::{MatmulPrecision, Q4Unpack, Target};
    let Some(gpu) = common::gpu() else { return };
    let shapes = [(1u64, 64u64, 48u64), (2, 72, 37), (7, 50, 48), (16, 96, 40), (40, 300, 24), (130, 64, 33)];
    let blocks = [16u64, 32, 64, 128, 256];
    let mut cases = vec![];
    let mut i = 0usize;
    for &(rows, k, n) in &shapes {
        for layout in [Layout::Kn, Layout::Nk] {
            for variant in 0..3 {
                i += 1;
                cases.push(Case {
                    rows,
                    k,
                    n,
                    layout,
                    block: blocks[i % blocks.len()],
                    signed: i % 3 == 0,
                    asym: i % 2 == 1,
                    f16: i % 4 >= 2,
                    bias: variant == 1,
                    merged: variant == 2,
                });
            }
        }
    }
    let base = gpu.target();
    let mut targets = vec![
        ("default", base.clone()),
        ("no subgroups", Target { subgroup_size: None, ..base.clone() }),
        ("convert", Target { q4_unpack: Q4Unpack::Convert, q4_cols: Some(2), ..base.clone() }),
        ("4 per group", Target { q4_cols: Some(4), ..base.clone() }),
    ];
    if base.coop_matrix.contains(&glufuse::codegen::CoopMatrix::F16_F32_16) {
        // Natively (f32 scales too: f16 products allowed).
        targets.push(("coop native", Target { matmul_precision: MatmulPrecision::F16, ..base.clone() }));
    }
    if base.caps.contains(naga::valid::Capabilities::SHADER_FLOAT16) {
        targets.push((
            "coop emulated",
            Target { coop_emulate: true, matmul_precision: MatmulPrecision::F16, ..base.clone() },
        ));
    }
    // On a software adapter (lavapipe in CI) every case runs under the default target, the
    // variants on a few: a sweep of 234 runs took it 8 minutes. (The runtime's classification,
    // which knows GL's llvmpipe too, though it calls itself no CPU.)
    let soft = gpu.is_software();
    let mut kinds = std::collections::BTreeSet::new();
    let (mut runs, mut worst) = (0, 0.0f64);
    for (label, target) in &targets {
        let started = std::time::Instant::now();
        let mut picked = 0;
        for (ci, c) in cases.iter().enumerate() {
            // The decode variants only where they apply, the GEMMs past 8 rows; the emulated
            // GEMM is slow.
            let decode_only = matches!(*label, "no subgroups" | "convert" | "4 per group");
            if decode_only && c.rows > 8 || label.starts_with("coop") && c.rows <= 8 {
                continue;
            }
            let budget = match (*label, soft) {
                ("default", _) | (_, false) => usize::MAX,
                ("coop emulated", true) => 2,
                (_, true) => 4,
            };
            if picked >= budget || *label == "coop emulated" && !soft && ci % 2 == 1 {
                continue;
            }
            picked += 1;
            let act = Activation::ALL[ci % 4];
            let original = build(c, act);
            let (fused, rep) = fused(&original);
            assert_eq!(rep.fused, 1, "{c:?}");
            let inputs = glufuse::interp::seeded_inputs(&original, &Default::default(), 5).unwrap();
            let want = glufuse::interp::run(&original, &inputs).unwrap();
            let coop = label.starts_with("coop");
            let tol = if coop || c.f16 { 3e-3 } else { 1e-5 };
            // The variants' unfused graphs differ from the default's in the projections only.
            let graphs: &[(&str, &Graph)] = if *label == "default" || !soft {
                &[("unfused", &original), ("fused", &fused)]
            } else {
                &[("fused", &fused)]
            };
            for &(part, g) in graphs {
                let what = format!("{label} {part} {c:?} {act:?}");
                let exe = glufuse::runtime::Executable::with_target(&gpu, g, &Default::default(), target)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                for k in exe.kernels() {
                    kinds.insert(k.source().kind.to_string());
                }
                let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
                let (_, rel) = glufuse::interp::compare(&got[0], &want[0]);
                assert!(rel <= tol, "{what}: rel {rel:e}");
                worst = worst.max(rel);
                runs += 1;
            }
        }
        eprintln!("{label}: {picked} cases in {:.1} s", started.elapsed().as_secs_f64());
    }
    eprintln!("{runs} runs, worst {worst:e}; kernels {kinds:?}");
    for k in ["fused-gate-up-gemv-q4", "matmul-gemv-q4", "fused-gate-up-gemm-q4", "matmul-gemm-q4"] {
        assert!(kinds.contains(k), "{k} never ran: {kinds:?}");
    }
    if targets.iter().any(|t| t.0.starts_with("coop")) {
        assert!(kinds.contains("fused-gate-up-coop"), "the 4-bit cooperative-matrix GEMM never ran: {kinds:?}");
    }
}
