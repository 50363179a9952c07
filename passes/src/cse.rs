//! Common-subexpression elimination: a node that computes what an earlier node computes (the
//! same op with the same attributes, on the same input values in the same slots, with the same
//! output types) is dropped, its readers reading the earlier node instead.
//!
//! Exporters repeat work per layer that depends only on the graph's inputs: onnxruntime-genai's
//! `GroupQueryAttention`, lowered, computes every layer's positions and their rotary cosines
//! and sines (each a kernel launch) from the same `seqlens_k` and caches. Every IR op is a pure
//! function of its inputs, so one computation serves all. Inputs and weights are left alone
//! (each is its own value, and a weight's data is not compared), and so are constants of more
//! than [`MAX_CONSTANT`] elements and opaque ops (which glufuse does not know to be pure). The kept node is the first in
//! topological order and keeps its name; the report names each node dropped beside it. A
//! graph output computed by a dropped node keeps its name.
//!
//! A clamp of integers whose operand's range already lies within its bound computes its
//! operand, and is dropped for it the same way: a `Max(x, c)` where x is at least c, a
//! `Min(x, c)` where x is at most c. The ranges come from what the values are known to hold:
//! a `TopK`'s indices lie in its axis, a constant's values are known, and views and
//! broadcasts keep their input's. A mixture of experts clamps its router's `TopK` indices to
//! the experts (`clamp(0, E - 1)`), a kernel a layer that changes nothing.

use super::{Pass, PassReport};
use glufuse_ir::shape::norm_axis;
use glufuse_ir::{BinaryOp, ConstValues, Graph, NodeIndex, Op, Result, Value};
use std::collections::HashMap;

/// Most elements of a constant the pass compares with others (a lowering's scalars and
/// shapes: one of each serves every reader, and what reads them can then be one too).
pub const MAX_CONSTANT: usize = 64;

/// One node dropped for an earlier one that computes the same.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Merged {
    /// The node kept.
    pub node: String,
    /// The node dropped.
    pub dropped: String,
}

/// What the pass dropped.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CseReport {
    /// The nodes dropped, in topological order.
    pub merged: Vec<Merged>,
}

impl CseReport {
    /// The report for people: one line, then one per node dropped when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let mut s = format!("common subexpressions: {} node(s) computed once\n", self.merged.len());
        if detail {
            for m in &self.merged {
                s.push_str(&format!("  {}: computed by {}\n", m.dropped, m.node));
            }
        }
        s
    }
}

/// Drops nodes that compute what an earlier node computes (see the module documentation).
pub struct EliminateCommonSubexpressions;

impl Pass for EliminateCommonSubexpressions {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        Ok(PassReport::Cse(eliminate(g)?))
    }
}

/// Drops repeated computations; returns what it dropped.
pub fn eliminate(g: &mut Graph) -> Result<CseReport> {
    let mut report = CseReport::default();
    // What each node computes, written out: the op (attributes included), the input values
    // by slot (already redirected to the nodes kept) and the output types.
    let mut seen: HashMap<String, NodeIndex> = HashMap::new();
    // The least and greatest integer each value holds, where known.
    let mut ranges: HashMap<Value, (i64, i64)> = HashMap::new();
    for n in g.topo_order()? {
        if let Some(x) = clamp_of_nothing(g, n, &ranges) {
            let dropped = g.node(n).name.clone();
            g.replace_uses(Value::of(n), x);
            g.remove_node(n);
            report.merged.push(Merged { node: g.node(x.node).name.clone(), dropped });
            continue;
        }
        if let Some(r) = range_of(g, n, &ranges) {
            ranges.insert(Value::of(n), r);
        }
        let indices = Value { node: n, output: 1 };
        if let Some(r) = topk_indices(g, indices) {
            ranges.insert(indices, r);
        }
        let node = g.node(n);
        let skip = match &node.op {
            Op::Input | Op::Weight(_) | Op::QuantWeight(_) | Op::Opaque { .. } => true,
            Op::Constant(v) => v.len() > MAX_CONSTANT,
            Op::SymConstant(v) => v.len() > MAX_CONSTANT,
            _ => false,
        };
        if skip {
            continue;
        }
        let key = format!("{:?}|{:?}|{:?}", node.op, g.inputs(n), node.outputs);
        let Some(&kept) = seen.get(&key) else {
            seen.insert(key, n);
            continue;
        };
        for k in 0..node.outputs.len() {
            g.replace_uses(Value { node: n, output: k }, Value { node: kept, output: k });
        }
        let dropped = g.node(n).name.clone();
        g.remove_node(n);
        report.merged.push(Merged { node: g.node(kept).name.clone(), dropped });
    }
    Ok(report)
}

/// The least and greatest integer node `n`'s first output holds, where known from its inputs'
/// (`ranges`): an integer constant, a view or broadcast of a known range, a `Max` or `Min` of
/// two. (A `TopK`'s indices, its second output: [`topk_indices`].)
fn range_of(g: &Graph, n: NodeIndex, ranges: &HashMap<Value, (i64, i64)>) -> Option<(i64, i64)> {
    let ins = g.inputs(n);
    let input = |i: usize| ins.get(i).and_then(|v| ranges.get(v)).copied();
    match &g.node(n).op {
        Op::Constant(ConstValues::Int(v)) => Some((*v.iter().min()?, *v.iter().max()?)),
        Op::Reshape { .. } | Op::Expand { .. } | Op::Transpose { .. } | Op::Slice { .. } => input(0),
        Op::Binary(BinaryOp::Max) => Some((input(0)?.0.max(input(1)?.0), input(0)?.1.max(input(1)?.1))),
        Op::Binary(BinaryOp::Min) => Some((input(0)?.0.min(input(1)?.0), input(0)?.1.min(input(1)?.1))),
        _ => None,
    }
}

/// The value `Max` or `Min` node `n` computes where that is one of its operands unchanged:
/// integers, the operand of `n`'s type, and its range (`ranges`) within the other operand's
/// bound.
fn clamp_of_nothing(g: &Graph, n: NodeIndex, ranges: &HashMap<Value, (i64, i64)>) -> Option<Value> {
    let max = match g.node(n).op {
        Op::Binary(BinaryOp::Max) => true,
        Op::Binary(BinaryOp::Min) => false,
        _ => return None,
    };
    let ins = g.inputs(n);
    let out = &g.node(n).outputs[0];
    if !out.dtype.is_int() {
        return None;
    }
    for (x, c) in [(ins[0], ins[1]), (ins[1], ins[0])] {
        let (Some(&(lo, hi)), Some(&(clo, chi))) = (ranges.get(&x), ranges.get(&c)) else { continue };
        let within = if max { lo >= chi } else { hi <= clo };
        if within && g.ty(x) == out {
            return Some(x);
        }
    }
    None
}

/// The range of a `TopK`'s indices (output 1): `0 ..= size - 1` of its axis, where known.
fn topk_indices(g: &Graph, v: Value) -> Option<(i64, i64)> {
    let Op::TopK { axis, .. } = g.node(v.node).op else { return None };
    let x = g.ty(*g.inputs(v.node).first()?);
    let size = x.shape.get(norm_axis(axis, x.rank())?)?.fixed()? as i64;
    (v.output == 1 && size > 0).then_some((0, size - 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glufuse_ir::builder::GraphBuilder;
    use glufuse_ir::{interp, shape_of, DType, Tensor, UnaryOp};

    #[test]
    fn a_repeated_computation_is_done_once_and_outputs_keep_their_names() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[2, 3]));
        let y = b.input("y", DType::F32, shape_of(&[2, 3]));
        let a1 = b.unary("a1", UnaryOp::Exp, x);
        let a2 = b.unary("a2", UnaryOp::Exp, x);
        // Another op, or the same op of another value: not the same computation.
        let t = b.add("t", x, x);
        let e = b.unary("e", UnaryOp::Exp, y);
        // Equal once a1 and a2 are one.
        let s1 = b.add("s1", a1, t);
        let s2 = b.add("s2", a2, t);
        // Two weights of the same values: each its own value, and so are the products through them.
        let data = vec![0.5, -0.25, 1.0, 2.0, -1.5, 0.75];
        let w1 = b.weight_data("w1", DType::F32, &[3, 2], data.clone());
        let w2 = b.weight_data("w2", DType::F32, &[3, 2], data);
        let (m1, m2) = (b.matmul("m1", x, w1), b.matmul("m2", x, w2));
        let mut g = b.finish(&[s1, s2, e, m1, m2]).unwrap();
        let t6 = |v: Vec<f32>| Tensor::f32(vec![2, 3], v).unwrap();
        let ins = [("x".to_string(), t6(vec![0.5, -1.0, 2.0, 0.0, 1.5, -0.25])), ("y".to_string(), t6(vec![1.0; 6]))]
            .into_iter()
            .collect();
        let before = interp::run(&g, &ins).unwrap();
        let r = eliminate(&mut g).unwrap();
        let pairs: Vec<(&str, &str)> = r.merged.iter().map(|m| (m.node.as_str(), m.dropped.as_str())).collect();
        assert_eq!(pairs, [("a1", "a2"), ("s1", "s2")]);
        assert!(g.find("a2").is_none() && g.find("s2").is_none() && g.find("e").is_some());
        assert!(["w1", "w2", "m1", "m2"].iter().all(|n| g.find(n).is_some()));
        // The second output is s1's value, still called s2.
        assert_eq!(g.outputs[0], g.outputs[1]);
        assert_eq!(g.output_name(1), "s2");
        glufuse_ir::verify::verify(&g).unwrap();
        assert_eq!(interp::run(&g, &ins).unwrap(), before);
    }

    /// A clamp its operand's range already satisfies is dropped for its operand: a `TopK`'s
    /// indices over 4 elements, through a reshape, clamped to `0 ..= 3` (either operand order);
    /// clamps that can change a value (to at most 2, to at least 1) and a clamp of floats stay.
    #[test]
    fn a_clamp_of_topk_indices_to_their_axis_is_dropped_for_them() {
        use glufuse_ir::{BinaryOp, Op};
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[2, 4]));
        let topk = b.node("topk", Op::TopK { axis: -1, k: 2, largest: true }, &[x], vec![]);
        let flat = b.node("flat", Op::Reshape { shape: vec![glufuse_ir::DimExpr::constant(4)] }, &[topk[1]], vec![]);
        let (zero, one, two, three) = (
            b.scalar("zero", DType::I64, 0.0),
            b.scalar("one", DType::I64, 1.0),
            b.scalar("two", DType::I64, 2.0),
            b.scalar("three", DType::I64, 3.0),
        );
        let lo = b.binary("lo", BinaryOp::Max, flat[0], zero);
        let hi = b.binary("hi", BinaryOp::Min, three, lo);
        let at_most_2 = b.binary("at_most_2", BinaryOp::Min, flat[0], two);
        let at_least_1 = b.binary("at_least_1", BinaryOp::Max, flat[0], one);
        let fzero = b.scalar("fzero", DType::F32, -5.0);
        let floats = b.binary("floats", BinaryOp::Max, topk[0], fzero);
        let mut g = b.finish(&[hi, at_most_2, at_least_1, floats]).unwrap();
        let xs = Tensor::f32(vec![2, 4], vec![0.5, -1.0, 2.0, 0.0, 1.5, -0.25, 3.0, 1.0]).unwrap();
        let ins = [("x".to_string(), xs)].into_iter().collect();
        let before = interp::run(&g, &ins).unwrap();
        let r = eliminate(&mut g).unwrap();
        let pairs: Vec<(&str, &str)> = r.merged.iter().map(|m| (m.node.as_str(), m.dropped.as_str())).collect();
        assert_eq!(pairs, [("flat", "lo"), ("flat", "hi")]);
        assert!(["at_most_2", "at_least_1", "floats"].iter().all(|n| g.find(n).is_some()));
        glufuse_ir::verify::verify(&g).unwrap();
        assert_eq!(interp::run(&g, &ins).unwrap(), before);
    }
}
