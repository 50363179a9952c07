//! 4-bit weights (tests/data/q4, made by onnxruntime's own quantizer, and two from the shared
//! set copied in as `shared_*`): every model loads, fuses as its float original does (one
//! gated FFN each, GPT-2's MLP none), and its outputs match onnxruntime's CPU references within
//! 1e-3 of the largest value, on the interpreter and on the GPU, fused and unfused, for each
//! reference input (`t1`: one token, `t7`: seven).

mod common;

use glufuse::files::{load_graph, read_npy};
use glufuse::ir::Tensor;
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
