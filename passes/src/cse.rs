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

use super::{Pass, PassReport};
use glufuse_ir::{Graph, NodeIndex, Op, Result, Value};
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
    for n in g.topo_order()? {
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
}
