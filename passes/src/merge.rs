//! Merging sibling projections: the `MatMul`s that read the same `x` through weights of their
//! own (the q, k and v projections of an attention layer) become one `MatMul` through the
//! weights side by side, and each original output a `Slice` of its columns. A decode step
//! spends most of its time in dispatches, not in arithmetic (about 9 µs a dependent dispatch
//! on an H100 over Vulkan, whatever its size: `benches/results/h100-2026-11-26c-gemv-ab.md`),
//! so three GEMVs over one x cost three times what one over the three weights does. The
//! slices cost no dispatch of their own where the elementwise fusion folds them into the
//! programs that read them (the biases, the rotary embedding), which is why this pass runs
//! before it, and after the gated-FFN fusion, whose gate and up projections it leaves alone.
//!
//! The rules: every sibling's weight is a `Weight` node holding its values (`[K, Nᵢ]`, every
//! dim known, one dtype, the same `K`), the products have one dtype and none is a graph
//! output (its name is kept by the slice that replaces it, which is not an output's name to
//! give). The merged weight is a new node; the originals are removed as soon as nothing else
//! reads them. Each slice takes the name of the product it replaces, so the
//! names a user knows still name the same values.

use super::{free_name, Pass, PassReport};
use glufuse_ir::ops::source::WeightInit;
use glufuse_ir::Result;
use glufuse_ir::*;
use std::collections::BTreeMap;

/// One group of sibling projections merged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Merged {
    /// The merged product's name.
    pub node: String,
    /// The products it replaced (now slices of it), in column order.
    pub replaced: Vec<String>,
}

/// What the pass merged.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergeReport {
    /// The groups merged, in the order of their shared input.
    pub merged: Vec<Merged>,
}

impl MergeReport {
    /// The report for people: one line, then one per group when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let n: usize = self.merged.iter().map(|m| m.replaced.len()).sum();
        let mut s = format!("merge projections: {} products into {}\n", n, self.merged.len());
        if detail {
            for m in &self.merged {
                s.push_str(&format!("  {}: {}\n", m.node, m.replaced.join(", ")));
            }
        }
        s
    }
}

/// Merges sibling projections (see the module documentation).
pub struct MergeProjections;

impl Pass for MergeProjections {
    fn name(&self) -> &'static str {
        "merge-projections"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        let mut report = MergeReport::default();
        // Candidate products by the value they read as x, in topological order.
        let mut groups: BTreeMap<(usize, usize), Vec<NodeIndex>> = BTreeMap::new();
        let order = g.topo_order()?;
        let rank: std::collections::HashMap<NodeIndex, usize> =
            order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        for &n in &order {
            if let Some(x) = candidate(g, n) {
                groups.entry((rank[&x.node], x.output)).or_default().push(n);
            }
        }
        for siblings in groups.into_values() {
            // One K and one dtype per group: split by them, keeping the order.
            let mut by_kind: Vec<((usize, DType, DType), Vec<NodeIndex>)> = vec![];
            for n in siblings {
                let w = g.inputs(n)[1];
                let key = (weight_dims(g, w)[0], g.ty(w).dtype, g.ty(Value::of(n)).dtype);
                match by_kind.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, v)) => v.push(n),
                    None => by_kind.push((key, vec![n])),
                }
            }
            for (_, ns) in by_kind.into_iter().filter(|(_, ns)| ns.len() >= 2) {
                report.merged.push(merge(g, &ns)?);
            }
        }
        Ok(PassReport::Merge(report))
    }
}

/// The x a product reads, where it is a candidate: a `MatMul` through a `Weight` holding
/// `[K, N]` values with every dim known, not a graph output.
fn candidate(g: &Graph, n: NodeIndex) -> Option<Value> {
    if !matches!(g.node(n).op, Op::MatMul) || g.is_output(Value::of(n)) {
        return None;
    }
    let ins = g.inputs(n);
    let (x, w) = (ins[0], ins[1]);
    if !matches!(g.node(w.node).op, Op::Weight(WeightInit::Data(_))) {
        return None;
    }
    let wt = g.ty(w);
    let known = |t: &TensorType| t.shape.iter().all(|d| matches!(d, Dim::Fixed(_)));
    if wt.rank() != 2 || !known(wt) || g.ty(x).rank() < 2 {
        return None;
    }
    Some(x)
}

/// The dims of a candidate's weight.
fn weight_dims(g: &Graph, w: Value) -> Vec<usize> {
    g.ty(w)
        .shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(k) => *k as usize,
            _ => unreachable!("a candidate's weight has known dims"),
        })
        .collect()
}

/// Merges the products `ns` (siblings of one x, one K, one dtype) into one.
fn merge(g: &mut Graph, ns: &[NodeIndex]) -> Result<Merged> {
    let x = g.inputs(ns[0])[0];
    let k = weight_dims(g, g.inputs(ns[0])[1])[0];
    let wdtype = g.ty(g.inputs(ns[0])[1]).dtype;
    let widths: Vec<usize> = ns.iter().map(|&n| weight_dims(g, g.inputs(n)[1])[1]).collect();
    let total: usize = widths.iter().sum();
    // The weights side by side, row by row.
    let mut data = Vec::with_capacity(k * total);
    let values: Vec<&[f32]> = ns
        .iter()
        .map(|&n| match &g.node(g.inputs(n)[1].node).op {
            Op::Weight(WeightInit::Data(v)) => v.as_slice(),
            _ => unreachable!("a candidate's weight holds its values"),
        })
        .collect();
    for r in 0..k {
        for (v, &w) in values.iter().zip(&widths) {
            data.extend_from_slice(&v[r * w..(r + 1) * w]);
        }
    }
    let names: Vec<String> = ns.iter().map(|&n| g.node(n).name.clone()).collect();
    let base = format!("{}.merged", names[0]);
    let wname = free_name(g, &format!("{base}.weight"));
    let wt = TensorType::new(wdtype, vec![Dim::Fixed(k as u64), Dim::Fixed(total as u64)]);
    let wn = g.add_node(wname, Op::Weight(WeightInit::Data(data)), &[], vec![wt])?;
    let mut out_ty = g.ty(Value::of(ns[0])).clone();
    *out_ty.shape.last_mut().expect("a product has a last dim") = Dim::Fixed(total as u64);
    let name = free_name(g, &base);
    let m = g.add_node(name.clone(), Op::MatMul, &[x, Value::of(wn)], vec![out_ty])?;
    let weights: Vec<NodeIndex> = ns.iter().map(|&n| g.inputs(n)[1].node).collect();
    let mut start = 0;
    for (&n, &w) in ns.iter().zip(&widths) {
        let op = Op::Slice { axis: -1, start: Dim::Fixed(start as u64), len: Dim::Fixed(w as u64), step: 1 };
        let tmp = free_name(g, &format!("{}.slice", g.node(n).name));
        let s = g.add_node(tmp, op, &[Value::of(m)], g.node(n).outputs.clone())?;
        g.replace_uses(Value::of(n), Value::of(s));
        let old = g.remove_node(n).expect("a sibling is in the graph");
        g.rename(s, old.name)?;
        start += w;
    }
    // The original weights go now where nothing else reads them, so that a model's weights
    // are held twice for one group at a time, not until dead-node elimination.
    for w in weights {
        if g.g.node_weight(w).is_some() && g.users(Value::of(w)).is_empty() && !g.is_output(Value::of(w)) {
            g.remove_node(w);
        }
    }
    Ok(Merged { node: name, replaced: names })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use glufuse_ir::builder::GraphBuilder;
    use glufuse_ir::{interp, shape_of};

    /// Values `0, 1, ..` scaled, so that a misplaced column changes the result.
    fn ramp(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin() * s).collect()
    }

    /// x `[2, tokens, 8]` through q (8×8), k and v (8×4 each; f16 `k2` beside them) with a
    /// bias on q; `out` is a product itself (kept); `r` goes through a random weight.
    fn graph() -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Fixed(2), Dim::sym("tokens"), Dim::Fixed(8)]);
        let wq = b.weight_data("wq", DType::F32, &[8, 8], ramp(64, 0.5));
        let wk = b.weight_data("wk", DType::F32, &[8, 4], ramp(32, 0.7));
        let wv = b.weight_data("wv", DType::F32, &[8, 4], ramp(32, -0.3));
        let wo = b.weight_data("wo", DType::F32, &[8, 3], ramp(24, 0.2));
        let wr = b.weight("wr", DType::F32, &[8, 2], 0.5);
        let q = b.matmul("q", x, wq);
        let bq = b.weight_data("bq", DType::F32, &[8], ramp(8, 1.0));
        let qb = b.add("q.bias", q, bq);
        let k = b.matmul("k", x, wk);
        let v = b.matmul("v", x, wv);
        let out = b.matmul("out", x, wo);
        let r = b.matmul("r", x, wr);
        let kv = b.mul("kv", k, v);
        b.finish(&[qb, kv, out, r]).unwrap()
    }

    #[test]
    fn siblings_become_one_product_and_slices_named_as_before() {
        let original = graph();
        let mut g = original.clone();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let rep = crate::merge_report(&runs).unwrap();
        assert_eq!(rep.merged.len(), 1, "{rep:?}");
        assert_eq!(rep.merged[0].replaced, ["q", "k", "v"], "the graph output and the random weight stay out");
        let m = g.find(&rep.merged[0].node).unwrap();
        assert!(matches!(g.node(m).op, Op::MatMul));
        assert_eq!(g.ty(Value::of(m)).shape, vec![Dim::Fixed(2), Dim::sym("tokens"), Dim::Fixed(16)]);
        for name in ["out", "r"] {
            assert!(matches!(g.node(g.find(name).unwrap()).op, Op::MatMul), "{name} is not merged");
        }
        for name in ["wq", "wk", "wv"] {
            assert!(g.find(name).is_none(), "{name}: read by nothing now, removed");
        }
        let b: glufuse_ir::shape::Bindings = [("tokens".to_string(), 3usize)].into_iter().collect();
        let inputs = interp::seeded_inputs(&original, &b, 9).unwrap();
        assert_eq!(
            interp::run(&g, &inputs).unwrap(),
            interp::run(&original, &inputs).unwrap(),
            "the same values, exactly"
        );
    }

    #[test]
    fn a_product_through_a_computed_weight_stays_apart() {
        // The second weight is a transpose (an [N, K] weight read in place): not held values.
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F16, shape_of(&[1, 4]));
        let w1 = b.weight_data("w1", DType::F16, &[4, 2], ramp(8, 1.0));
        let w2 = b.weight_data("w2", DType::F16, &[2, 4], ramp(8, 2.0));
        let t = b.transpose("w2.t", w2, &[1, 0]);
        let a = b.matmul("a", x, w1);
        let c = b.matmul("c", x, t);
        let s = b.add("s", a, c);
        let mut g = b.finish(&[s]).unwrap();
        let before = glufuse_ir::dump::text(&g).unwrap();
        match MergeProjections.run(&mut g).unwrap() {
            PassReport::Merge(r) => assert!(r.merged.is_empty(), "{r:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(glufuse_ir::dump::text(&g).unwrap(), before);
    }
}
