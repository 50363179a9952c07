//! Static KV-cache updates on their cache's own layout. PyTorch's exporter spells a static
//! cache's `index_copy_(a, positions, new)` as `Transpose` (axis `a` of the cache first) →
//! `ScatterND` (tuples of one index, along that leading axis) → the inverse `Transpose` (the
//! present cache). Run as written, that moves the whole cache twice besides the scatter: two
//! dispatches and two cache-sized copies a cache, every step.
//!
//! The pass writes each such chain as one `ScatterElements` along `a` on the cache itself:
//! the updates transposed back (a `Transpose` of the small update, which the elementwise
//! fusion takes into the program computing it), the positions broadcast to the updates'
//! shape (a `Reshape` and an `Expand`, shared by the scatters of one set of positions and one
//! shape). The `ScatterElements` takes the inverse transpose's name and place, so the present
//! cache keeps its node, its name and its readers.
//!
//! What it matches: a `ScatterND` whose indices are `[N, 1]` (one position an update),
//! whose data is a `Transpose` of a value by a permutation `p` that nothing else reads and
//! that is no graph output, and whose output only a `Transpose` by the inverse of `p` reads
//! (and no graph output names). What it keeps: the result, bit for bit (either writes each
//! update at its place), and the run-time errors (a position out of range, two updates of
//! one place), now named for the present cache's node.

use super::{free_name, Pass, PassReport};
use glufuse_ir::dim::DimExpr;
use glufuse_ir::Result;
use glufuse_ir::*;
use std::collections::HashMap;

/// What the pass did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScatterReport {
    /// The present caches now written by one `ScatterElements` each, by their (kept) names.
    pub rewritten: Vec<String>,
}

impl ScatterReport {
    /// The report for people: one line, then one per cache when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let mut s = format!("scatters along an axis: {} transposed ScatterND chains\n", self.rewritten.len());
        if detail {
            for n in &self.rewritten {
                s.push_str(&format!("  {n}\n"));
            }
        }
        s
    }
}

/// Writes each `Transpose → ScatterND → inverse Transpose` chain as one `ScatterElements`
/// (see the module documentation).
pub struct ScatterAlongAxis;

impl Pass for ScatterAlongAxis {
    fn name(&self) -> &'static str {
        "scatter-axis"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        let mut report = ScatterReport::default();
        // The broadcast positions made so far, by (indices, shape): one per set of positions.
        let mut positions: HashMap<(Value, Vec<Dim>, usize), Value> = HashMap::new();
        for n in g.topo_order()? {
            // (A node of an earlier chain, removed with it.)
            if g.g.node_weight(n).is_none() {
                continue;
            }
            if let Some(chain) = matched(g, n) {
                report.rewritten.push(rewrite(g, chain, &mut positions)?);
            }
        }
        Ok(PassReport::Scatter(report))
    }
}

/// A matched chain: the cache `x`, the axis, the positions `[N, 1]`, the updates (in the
/// transposed layout), the permutation back, and the inverse transpose's node.
struct Chain {
    x: Value,
    axis: usize,
    idx: Value,
    upd: Value,
    back: Vec<usize>,
    last: NodeIndex,
}

/// The chain through `ScatterND` node `n`, if it has the shape the module documentation
/// gives.
fn matched(g: &Graph, n: NodeIndex) -> Option<Chain> {
    if g.node(n).op != Op::ScatterND {
        return None;
    }
    let [d, idx, upd] = g.inputs(n)[..] else { return None };
    let it = g.ty(idx);
    if it.rank() != 2 || it.shape[1].fixed() != Some(1) {
        return None;
    }
    let Op::Transpose { perm } = &g.node(d.node).op else { return None };
    if d.output != 0 || g.is_output(d) || g.users(d) != [(n, 0)] {
        return None;
    }
    let out = Value::of(n);
    if g.is_output(out) {
        return None;
    }
    let [(last, 0)] = g.users(out)[..] else { return None };
    let Op::Transpose { perm: back } = &g.node(last).op else { return None };
    let inverse = perm.iter().enumerate().all(|(i, &p)| back.get(p) == Some(&i)) && back.len() == perm.len();
    if !inverse || perm.is_empty() {
        return None;
    }
    Some(Chain { x: g.inputs(d.node)[0], axis: perm[0], idx, upd, back: back.clone(), last })
}

/// Replaces the chain's inverse transpose with a `ScatterElements` of its name; returns the
/// name.
fn rewrite(g: &mut Graph, c: Chain, positions: &mut HashMap<(Value, Vec<Dim>, usize), Value>) -> Result<String> {
    let name = g.node(c.last).name.clone();
    let infer = |g: &Graph, op: &Op, ins: &[Value]| -> Result<Vec<TensorType>> {
        let tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
        op.infer(&tys, &[]).map_err(|m| Error::Internal(format!("scatter-axis on '{name}': {m}")))
    };
    // The updates in the cache's layout.
    let op = Op::Transpose { perm: c.back.clone() };
    let tys = infer(g, &op, &[c.upd])?;
    let upd = Value::of(g.add_node(free_name(g, &format!("{name}.updates")), op, &[c.upd], tys)?);
    // The positions `[N, 1]` along the axis, broadcast to the updates' shape.
    let shape = g.ty(upd).shape.clone();
    let key = (c.idx, shape.clone(), c.axis);
    let idx = match positions.get(&key) {
        Some(&v) => v,
        None => {
            let rank = shape.len();
            let dims = (0..rank).map(|a| DimExpr::constant(if a == c.axis { -1 } else { 1 })).collect();
            let op = Op::Reshape { shape: dims };
            let tys = infer(g, &op, &[c.idx])?;
            let r = Value::of(g.add_node(free_name(g, &format!("{name}.positions")), op, &[c.idx], tys)?);
            let op = Op::Expand { shape: shape.clone() };
            let tys = infer(g, &op, &[r])?;
            let e = Value::of(g.add_node(free_name(g, &format!("{name}.positions.b")), op, &[r], tys)?);
            positions.insert(key, e);
            e
        }
    };
    let op = Op::ScatterElements { axis: c.axis as i64 };
    let ins = [c.x, idx, upd];
    let tys = infer(g, &op, &ins)?;
    if tys.first() != Some(g.ty(Value::of(c.last))) {
        return Err(Error::Internal(format!("scatter-axis on '{name}': the scatter's type differs from the cache's")));
    }
    let tmp = free_name(g, &format!("{name}.scatter"));
    let s = g.add_node(tmp, op, &ins, tys)?;
    g.replace_uses(Value::of(c.last), Value::of(s));
    // The inverse transpose, the ScatterND and the first transpose have no reader now.
    let scatter_nd = g.inputs(c.last)[0].node;
    let first = g.inputs(scatter_nd)[0].node;
    for dead in [c.last, scatter_nd, first] {
        g.remove_node(dead);
    }
    g.rename(s, name.clone())?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glufuse_ir::interp;
    use glufuse_ir::tensor::Tensor;

    /// A cache `x [2, 3, 4]` updated along axis 2 as the exporter spells it: transposed by
    /// `first`, scattered by `positions [N, k]` (k = `tuple`), transposed by `back`; `extra`
    /// makes another node read the transposed cache too.
    fn chain(first: &str, back: &str, tuple: usize, extra: bool) -> Graph {
        let (n, k) = (1, tuple);
        let upd = if k == 1 { "[1, 2, 3]" } else { "[1, 3]" };
        let reader = if extra {
            r#", {"name": "peek", "op": "Neg", "inputs": ["t"], "type": {"dtype": "f32", "shape": [4, 2, 3]}}"#
        } else {
            ""
        };
        let outs = if extra { r#"["y", "peek"]"# } else { r#"["y"]"# };
        let text = format!(
            r#"{{"format": "glufuse.graph/1", "nodes": [
  {{"name": "x", "op": "Input", "type": {{"dtype": "f32", "shape": [2, 3, 4]}}}},
  {{"name": "pos", "op": "Input", "type": {{"dtype": "i64", "shape": [{n}, {k}]}}}},
  {{"name": "u", "op": "Input", "type": {{"dtype": "f32", "shape": {upd}}}}},
  {{"name": "t", "op": "Transpose", "perm": {first}, "inputs": ["x"]}},
  {{"name": "s", "op": "ScatterND", "inputs": ["t", "pos", "u"]}},
  {{"name": "y", "op": "Transpose", "perm": {back}, "inputs": ["s"]}}{reader}],
  "outputs": {outs}}}"#
        );
        glufuse_ir::json::from_str(&text).unwrap()
    }

    fn inputs(pos: Vec<i64>, k: usize) -> HashMap<String, Tensor> {
        let upd = if k == 1 { vec![1, 2, 3] } else { vec![1, 3] };
        [
            ("x", Tensor::random(vec![2, 3, 4], 1, 2.0)),
            ("pos", Tensor::i64(vec![1, k], pos).unwrap()),
            ("u", Tensor::random(upd, 2, 2.0)),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect()
    }

    /// The exporter's chain becomes one `ScatterElements` along axis 2 named as the present
    /// cache, and computes the same bits at every position (a negative one too); a position
    /// out of range is still an error, now naming `y`.
    #[test]
    fn a_transposed_scatter_becomes_one_scatter_along_the_axis() {
        let original = chain("[2, 0, 1]", "[1, 2, 0]", 1, false);
        let mut g = original.clone();
        let PassReport::Scatter(r) = ScatterAlongAxis.run(&mut g).unwrap() else { panic!("its report") };
        assert_eq!(r.rewritten, ["y"]);
        glufuse_ir::verify::verify(&g).unwrap();
        let y = g.find("y").unwrap();
        assert_eq!(g.node(y).op, Op::ScatterElements { axis: 2 });
        assert!(g.g.node_indices().all(|n| g.node(n).op != Op::ScatterND), "the ScatterND is gone");
        assert_eq!(g.output_name(0), "y");
        for p in [0i64, 2, 3, -1] {
            let ins = inputs(vec![p], 1);
            let (a, b) = (interp::run(&original, &ins).unwrap(), interp::run(&g, &ins).unwrap());
            assert_eq!(a[0].shape(), b[0].shape());
            let bits = |t: &Tensor| t.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&a[0]), bits(&b[0]), "position {p}");
        }
        let e = interp::run(&g, &inputs(vec![4], 1)).unwrap_err().to_string();
        assert!(e.contains("'y'") && e.contains("out of range"), "{e}");
    }

    /// Chains the rewrite would change the meaning of, or that it does not cover, stay as
    /// they are: the second transpose not the first's inverse, tuples of two indices, the
    /// transposed cache read by another node too.
    #[test]
    fn other_chains_are_left_alone() {
        for (g, why) in [
            (chain("[2, 0, 1]", "[2, 0, 1]", 1, false), "not the inverse"),
            (chain("[2, 0, 1]", "[1, 2, 0]", 2, false), "tuples of two"),
            (chain("[2, 0, 1]", "[1, 2, 0]", 1, true), "another reader"),
        ] {
            let mut h = g.clone();
            let PassReport::Scatter(r) = ScatterAlongAxis.run(&mut h).unwrap() else { panic!("its report") };
            assert!(r.rewritten.is_empty(), "{why}: {r:?}");
            assert_eq!(glufuse_ir::json::to_string(&h).unwrap(), glufuse_ir::json::to_string(&g).unwrap(), "{why}");
        }
    }
}
