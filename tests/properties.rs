//! Property test of the fusion pass over random graphs: gated FFNs in every spelling the
//! builder knows, with and without biases, in both layouts, merged or not, next to decoys
//! (projections of different inputs, ungated activations, products of non-projections),
//! intermediates read elsewhere and graph outputs in the middle, at random sizes.
//!
//! For every graph: the pass succeeds, the result verifies, the interpreter gives the same
//! outputs, no weight is read by more nodes than before, and every gated FFN whose
//! intermediates nobody else reads is fused.
//!
//! CI runs `PROPTEST_CASES` cases (default 256 here); a dedicated run uses thousands:
//! `PROPTEST_CASES=5000 cargo test --release --test properties`.

mod common;

use glufuse::builder::{GraphBuilder, SiluSpelling};
use glufuse::ir::*;
use glufuse::passes::{fusion_report, PassManager};
use proptest::prelude::*;

#[derive(Clone, Debug)]
struct Block {
    /// 0..4: SiLU spellings, 4: GELU-tanh op, 5: GELU-erf op, 6: ReLU.
    act: u8,
    bias: bool,
    nk: bool,
    merged: bool,
    act_right: bool,
    /// 0: a real gated FFN; 1: up reads another input; 2: the gate is also read elsewhere;
    /// 3: the activation is a graph output; 4: no gate (activation · constant-free tanh).
    kind: u8,
}

fn block() -> impl Strategy<Value = Block> {
    (0u8..7, any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>(), prop_oneof![4 => Just(0u8), 1 => 1u8..5])
        .prop_map(|(act, bias, nk, merged, act_right, kind)| Block { act, bias, nk, merged, act_right, kind })
}

/// Builds a graph of blocks chained through residual adds; returns it and how many blocks
/// must fuse.
fn build(h: u64, i: u64, rows: u64, blocks: &[Block]) -> (glufuse::Graph, usize) {
    let mut b = GraphBuilder::new();
    let x0 = b.input("x", DType::F32, shape_of(&[rows, h]));
    let side = b.input("side", DType::F32, shape_of(&[rows, h]));
    let mut x = x0;
    let mut outputs = vec![];
    let mut want = 0;
    let mut extra = vec![];
    for (n, blk) in blocks.iter().enumerate() {
        let p = format!("b{n}.");
        let scale = 1.0 / (h as f32).sqrt();
        let proj = |b: &mut GraphBuilder, name: &str, src: Value, width: u64| -> Value {
            if blk.nk {
                let w = b.weight(&format!("{name}.w"), DType::F32, &[width, h], scale);
                let t = b.transpose(&format!("{name}.t"), w, &[1, 0]);
                b.matmul(name, src, t)
            } else {
                let w = b.weight(&format!("{name}.w"), DType::F32, &[h, width], scale);
                b.matmul(name, src, w)
            }
        };
        let up_src = if blk.kind == 1 { side } else { x };
        let merged = blk.merged && blk.kind != 1;
        let (mut g, mut u) = if merged {
            // One Linear(bias=True) of width 2I, then chunk: the bias is added before the split.
            let mut gu = proj(&mut b, &format!("{p}gate_up"), x, 2 * i);
            if blk.bias {
                let bgu = b.weight(&format!("{p}gate_up.b"), DType::F32, &[2 * i], 0.5);
                gu = b.add(&format!("{p}gate_up.bias"), gu, bgu);
            }
            let parts = b.split(&format!("{p}chunk"), gu, -1, &[i, i]);
            (parts[0], parts[1])
        } else {
            (proj(&mut b, &format!("{p}gate"), x, i), proj(&mut b, &format!("{p}up"), up_src, i))
        };
        if blk.bias && !merged {
            let bg = b.weight(&format!("{p}gate.b"), DType::F32, &[i], 0.5);
            let bu = b.weight(&format!("{p}up.b"), DType::F32, &[i], 0.5);
            g = b.add(&format!("{p}gate.bias"), g, bg);
            u = b.add(&format!("{p}up.bias"), u, bu);
        }
        let a = match blk.act {
            0 => b.silu(&format!("{p}act."), g, SiluSpelling::Op),
            1 => b.silu(&format!("{p}act."), g, SiluSpelling::MulSigmoid),
            2 => b.silu(&format!("{p}act."), g, SiluSpelling::SigmoidMul),
            3 => b.silu(&format!("{p}act."), g, SiluSpelling::DivExp),
            4 => b.unary(&format!("{p}act"), UnaryOp::GeluTanh, g),
            5 => b.unary(&format!("{p}act"), UnaryOp::GeluErf, g),
            _ => b.unary(&format!("{p}act"), UnaryOp::Relu, g),
        };
        let prod = if blk.kind == 4 {
            // Not a gate: the activation times a non-projection.
            let t = b.unary(&format!("{p}decoy"), UnaryOp::Tanh, u);
            b.mul(&format!("{p}mul"), a, t)
        } else if blk.act_right {
            b.mul(&format!("{p}mul"), u, a)
        } else {
            b.mul(&format!("{p}mul"), a, u)
        };
        match blk.kind {
            0 => want += 1,
            2 => {
                let s = b.unary(&format!("{p}gate_reader"), UnaryOp::Tanh, g);
                extra.push(s);
            }
            3 => outputs.push(a),
            _ => {}
        }
        let wd = b.weight(&format!("{p}down.w"), DType::F32, &[i, h], 1.0 / (i as f32).sqrt());
        let down = b.matmul(&format!("{p}down"), prod, wd);
        x = b.add(&format!("{p}residual"), x, down);
    }
    let mut out = x;
    for (k, e) in extra.into_iter().enumerate() {
        // The extra readers reach the output through a projection and an add.
        let w = b.weight(&format!("extra{k}.w"), DType::F32, &[i, h], 0.1);
        let m = b.matmul(&format!("extra{k}"), e, w);
        out = b.add(&format!("extra{k}.add"), out, m);
    }
    outputs.insert(0, out);
    (b.finish(&outputs).expect("generated graphs are valid"), want)
}

/// How many nodes read each weight.
fn weight_reads(g: &glufuse::Graph) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for n in g.g.node_indices() {
        if matches!(g.node(n).op, Op::Weight(_)) {
            let mut readers: Vec<_> = g.users(Value::of(n)).into_iter().map(|(u, _)| u).collect();
            readers.sort();
            readers.dedup();
            m.insert(g.node(n).name.clone(), readers.len());
        }
    }
    m
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn fusion_keeps_results_and_weight_traffic(
        h in 2u64..12,
        i in 1u64..10,
        rows in 1u64..4,
        blocks in prop::collection::vec(block(), 1..4),
        seed in 0u64..1000,
    ) {
        let (original, want) = build(h, i, rows, &blocks);
        let mut fused = original.clone();
        let mut pm = PassManager::standard();
        pm.verify_each = true;
        let runs = pm.run(&mut fused).expect("the pass never fails on a valid graph");
        glufuse::verify::verify(&fused).expect("the fused graph verifies");
        let rep = fusion_report(&runs).expect("fusion ran");
        prop_assert_eq!(rep.fused, want, "{}", rep.to_text(false));
        let diff = common::rel_diff(&original, &fused, seed);
        prop_assert!(diff <= 1e-5, "outputs differ by {:e}", diff);
        let (before, after) = (weight_reads(&original), weight_reads(&fused));
        for (w, n) in &after {
            prop_assert!(n <= before.get(w).unwrap_or(&0), "weight {} read {} times, was {:?}", w, n, before.get(w));
        }
    }
}
