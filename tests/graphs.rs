//! The passes on every graph of `tests/graphs/`: the number of gated-FFN fusions each must
//! get, snapshots of the graph before and after and of the reports (the elementwise fusion's
//! where it merged something), and the interpreter's word that the fused graph computes what
//! the original did.

mod common;

use glufuse::dump::{render, Format};
use glufuse::passes::{attention_report, cse_report, elementwise_report, fusion_report, PassManager};
use glufuse::verify::verify;

/// Fusions expected in each test graph.
const EXPECTED: &[(&str, usize)] = &[
    ("attention_gqa", 0),
    ("decoder_2_layers", 2),
    ("decoder_3_layers_nk", 3),
    ("elementwise_chains", 0),
    ("elementwise_chains_f16", 0),
    ("elementwise_norm_view", 0),
    ("elementwise_rotary", 0),
    ("elementwise_split", 0),
    ("f16_symbolic_batch", 1),
    ("geglu_erf_expanded", 1),
    ("geglu_erf_op", 1),
    ("geglu_tanh_cube_consts_left", 1),
    ("geglu_tanh_cube_half_first", 1),
    ("geglu_tanh_op", 1),
    ("geglu_tanh_pow_half_last", 1),
    ("merged_slices_nk", 1),
    ("merged_split", 1),
    ("merged_split_gate_second", 1),
    ("moe_experts_batched_mm", 1),
    ("nofuse_broadcast_up", 0),
    ("nofuse_different_inputs", 0),
    ("nofuse_gate_is_output", 0),
    ("nofuse_gelu_mlp_no_gate", 0),
    ("nofuse_mixed_layouts", 0),
    ("nofuse_mixed_q4", 0),
    ("nofuse_shared_gate", 0),
    ("q4_swiglu_nk", 1),
    ("reglu_batched_3d", 1),
    ("reglu_op", 1),
    ("swiglu_act_on_right", 1),
    ("swiglu_bias", 1),
    ("swiglu_div_exp", 1),
    ("swiglu_mul_recip", 1),
    ("swiglu_mul_sigmoid", 1),
    ("swiglu_nk_transpose", 1),
    ("swiglu_sigmoid_mul", 1),
    ("swiglu_silu_op", 1),
];

#[test]
fn every_graph_has_an_expectation() {
    let files: Vec<String> = common::graph_files().into_iter().map(|(n, _)| n).collect();
    let listed: Vec<String> = EXPECTED.iter().map(|(n, _)| n.to_string()).collect();
    assert_eq!(files, listed, "tests/graphs and EXPECTED must list the same graphs");
}

#[test]
fn fusion_counts_snapshots_and_equivalence() {
    for (name, path) in common::graph_files() {
        let want = EXPECTED.iter().find(|(n, _)| *n == name).map(|(_, k)| *k).expect("listed");
        let original = glufuse::files::load_graph(&path).expect("loads");
        let mut g = original.clone();
        let mut pm = PassManager::standard();
        pm.verify_each = true;
        let runs = pm.run(&mut g).unwrap_or_else(|e| panic!("{name}: {e}"));
        verify(&g).expect("fused graph verifies");
        let rep = fusion_report(&runs).expect("fusion ran");
        assert_eq!(rep.fused, want, "{name}: fused count\n{}", rep.to_text(false));
        assert_eq!(g.summary().fused, want, "{name}: FusedGateUp nodes in the graph");
        // Every original name survives or is listed as replaced by a fused node.
        let mut replaced = std::collections::HashSet::new();
        for n in g.g.node_indices() {
            match &g.node(n).op {
                glufuse::ir::Op::FusedGateUp(f) => replaced.extend(f.replaced.iter().cloned()),
                glufuse::ir::Op::Elementwise(p) => replaced.extend(p.replaced.iter().cloned()),
                glufuse::ir::Op::Attention(a) => replaced.extend(a.replaced.iter().cloned()),
                _ => {}
            }
        }
        // (Or computed by another node: the common-subexpression elimination's report.)
        if let Some(c) = cse_report(&runs) {
            replaced.extend(c.merged.iter().map(|m| m.dropped.clone()));
        }
        for n in original.g.node_indices() {
            let nm = &original.node(n).name;
            assert!(g.find(nm).is_some() || replaced.contains(nm), "{name}: node '{nm}' vanished");
        }
        let diff = common::rel_diff(&original, &g, 11);
        let tol = if name.starts_with("f16") { 2e-3 } else { 1e-5 };
        assert!(diff <= tol, "{name}: fused output differs from the original by {diff:e}");
        // What the elementwise and attention fusions merged, where they merged something.
        let mut ew = elementwise_report(&runs).filter(|e| !e.groups.is_empty()).map(|e| e.to_text(true));
        if let Some(a) = attention_report(&runs).filter(|a| !a.fused.is_empty()) {
            ew = Some(format!("{}{}", ew.unwrap_or_default(), a.to_text(true)));
        }
        let snap = format!(
            "== before ==\n{}\n== after ==\n{}\n== report ==\n{}{}",
            render(&original, Format::Text).unwrap(),
            render(&g, Format::Text).unwrap(),
            rep.to_text(false),
            ew.unwrap_or_default()
        );
        insta::assert_snapshot!(format!("fusion__{name}"), snap);
    }
}

#[test]
fn json_round_trips_exactly() {
    for (name, path) in common::graph_files() {
        let text = std::fs::read_to_string(&path).unwrap();
        let g = glufuse::json::from_str(&text).unwrap();
        assert_eq!(glufuse::json::to_string(&g).unwrap(), text, "{name}: re-serialised text differs");
        // And the fused graph round-trips too.
        let mut f = g.clone();
        PassManager::standard().run(&mut f).unwrap();
        let once = glufuse::json::to_string(&f).unwrap();
        let again = glufuse::json::to_string(&glufuse::json::from_str(&once).unwrap()).unwrap();
        assert_eq!(once, again, "{name}: fused graph does not round-trip");
    }
}

#[test]
fn dot_and_mermaid_snapshots() {
    let path = common::root().join("tests/graphs/swiglu_nk_transpose.json");
    let mut g = glufuse::files::load_graph(&path).unwrap();
    insta::assert_snapshot!("dot_before", render(&g, Format::Dot).unwrap());
    PassManager::standard().run(&mut g).unwrap();
    insta::assert_snapshot!("dot_after", render(&g, Format::Dot).unwrap());
    insta::assert_snapshot!("mermaid_after", render(&g, Format::Mermaid).unwrap());
}

#[test]
fn fusion_is_deterministic() {
    let path = common::root().join("tests/graphs/decoder_3_layers_nk.json");
    let run = || {
        let mut g = glufuse::files::load_graph(&path).unwrap();
        let runs = PassManager::standard().run(&mut g).unwrap();
        (glufuse::json::to_string(&g).unwrap(), fusion_report(&runs).unwrap().to_text(false))
    };
    assert_eq!(run(), run());
}

/// The pass reports of every test graph (fusions, rejections of every kind these graphs
/// give, dead-node removals) read back from their JSON as the same values, and their JSON
/// keeps the texts people read (`"reason"`, `"stop_reason"`).
#[test]
fn pass_reports_round_trip_through_json() {
    let mut reasons = 0;
    for (name, path) in common::graph_files() {
        let mut g = glufuse::load(&path).unwrap();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let json = serde_json::to_string(&runs).unwrap();
        let back: Vec<glufuse::passes::PassRun> =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}\n{json}"));
        assert_eq!(back, runs, "{name}");
        assert_eq!(serde_json::to_string(&back).unwrap(), json, "{name}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let fusion = v.as_array().unwrap().iter().find(|r| r["report"]["pass"] == "fusion").expect("the fusion ran");
        assert_eq!(fusion["report"]["stop_reason"], "saturated", "{name}");
        for c in fusion["report"]["candidates"].as_array().unwrap() {
            if c["outcome"] == "rejected" {
                let text = c["reason"].as_str().unwrap();
                let r: glufuse::passes::fusion::select::Rejection =
                    serde_json::from_value(c["rejection"].clone()).unwrap();
                assert_eq!(r.to_string(), text, "{name}");
                reasons += 1;
            }
        }
    }
    assert!(reasons >= 5, "the must-not graphs give rejections: {reasons}");
}

/// `Display` for a graph is its text dump.
#[test]
fn a_graph_displays_as_its_text_dump() {
    let g = glufuse::load(common::root().join("tests/graphs/swiglu_bias.json")).unwrap();
    let shown = g.to_string();
    assert_eq!(shown, render(&g, Format::Text).unwrap());
    assert!(shown.starts_with("%x: f32[3,8] = Input\n"), "{shown}");
}

/// Integer constants print as integers (`Constant([-1])`, never `-1.0`), floats keep their
/// point, booleans print as words; and the JSON of each reads back as the same values.
#[test]
fn constants_print_in_their_own_type() {
    use glufuse::builder::GraphBuilder;
    use glufuse::ir::{shape_of, ConstValues, DType, Op, TensorType};
    let mut b = GraphBuilder::new();
    let mut consts = vec![];
    for (name, values, dtype) in [
        ("ints", ConstValues::Int(vec![-1, 4, 1 << 40]), DType::I64),
        ("small", ConstValues::Int(vec![-7, 0, 3]), DType::I32),
        ("floats", ConstValues::Float(vec![-1.0, 0.5, 3.0]), DType::F32),
        ("flags", ConstValues::Bool(vec![true, false, true]), DType::Bool),
    ] {
        consts.push(b.node(name, Op::Constant(values), &[], vec![TensorType::new(dtype, shape_of(&[3]))])[0]);
    }
    let g = b.finish(&consts).unwrap();
    let shown = g.to_string();
    for line in [
        "%ints: i64[3] = Constant([-1, 4, 1099511627776])",
        "%small: i32[3] = Constant([-7, 0, 3])",
        "%floats: f32[3] = Constant([-1.0, 0.5, 3.0])",
        "%flags: bool[3] = Constant([true, false, true])",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line} in\n{shown}");
    }
    let back = glufuse::json::from_str(&glufuse::json::to_string(&g).unwrap()).unwrap();
    assert_eq!(back.to_string(), shown);
}
