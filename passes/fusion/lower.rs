//! Lowering: the petgraph DAG into the e-graph, one class per graph value, with a root
//! `outputs` node over every graph output.

use super::lang::{Const, Glu, GluGraph, TypeAnalysis};
use crate::ir::*;
use crate::shape::norm_axis;
use crate::Result;
use egg::{Id, Symbol};
use std::collections::HashMap;

/// The e-graph of a graph, and how its classes map back.
pub struct Lowered {
    /// The e-graph.
    pub egraph: GluGraph,
    /// The class of each graph value.
    pub class_of: HashMap<Value, Id>,
    /// The root class (the `outputs` node).
    pub root: Id,
    /// Node indices in topological order.
    pub order: Vec<petgraph::stable_graph::NodeIndex>,
}

fn leaf(eg: &mut GluGraph, v: Value, ty: &TensorType) -> Id {
    let sym = Symbol::from(format!("v{}_{}", v.node.index(), v.output));
    eg.analysis.leaf_types.insert(sym, ty.clone());
    eg.add(Glu::Leaf(sym))
}

/// Whether the node is a scalar constant the rules may match by value.
pub fn scalar_value(node: &Node) -> Option<f64> {
    if node.outputs[0].numel() != Some(1) {
        return None;
    }
    match &node.op {
        Op::Constant(v) => v.first().copied(),
        Op::Weight(WeightInit::Data(d)) => d.first().map(|&x| x as f64),
        _ => None,
    }
}

/// Lowers `g` into a fresh e-graph.
pub fn lower(g: &Graph) -> Result<Lowered> {
    let order = g.topo_order()?;
    let mut eg = GluGraph::new(TypeAnalysis::default());
    let mut class_of: HashMap<Value, Id> = HashMap::new();
    for &n in &order {
        let node = g.node(n);
        let ins: Vec<Id> = g.inputs(n).iter().map(|v| class_of[v]).collect();
        let v0 = Value::of(n);
        let rank = |i: usize| g.ty(g.inputs(n)[i]).rank();
        let num = |eg: &mut GluGraph, x: u64| eg.add(Glu::Num(Const::new(x as f64)));
        let id = match &node.op {
            _ if scalar_value(node).is_some() => eg.add(Glu::Num(Const::new(scalar_value(node).expect("checked")))),
            Op::MatMul => eg.add(Glu::MatMul([ins[0], ins[1]])),
            Op::Unary(u) => {
                let a = ins[0];
                eg.add(match u {
                    UnaryOp::Neg => Glu::Neg(a),
                    UnaryOp::Exp => Glu::Exp(a),
                    UnaryOp::Sqrt => Glu::Sqrt(a),
                    UnaryOp::Erf => Glu::Erf(a),
                    UnaryOp::Tanh => Glu::Tanh(a),
                    UnaryOp::Sigmoid => Glu::Sigmoid(a),
                    UnaryOp::Relu => Glu::Relu(a),
                    UnaryOp::Silu => Glu::Silu(a),
                    UnaryOp::GeluTanh => Glu::GeluTanh(a),
                    UnaryOp::GeluErf => Glu::GeluErf(a),
                })
            }
            Op::Binary(b) => {
                let ab = [ins[0], ins[1]];
                eg.add(match b {
                    BinaryOp::Add => Glu::Add(ab),
                    BinaryOp::Sub => Glu::Sub(ab),
                    BinaryOp::Mul => Glu::Mul(ab),
                    BinaryOp::Div => Glu::Div(ab),
                    BinaryOp::Pow => Glu::Pow(ab),
                })
            }
            Op::Transpose { perm } if perm == &[1, 0] => eg.add(Glu::T(ins[0])),
            Op::Slice { axis, start, end } if norm_axis(*axis, rank(0)) == Some(rank(0) - 1) => {
                let (s, e) = (num(&mut eg, *start), num(&mut eg, *end));
                eg.add(Glu::Slice([ins[0], s, e]))
            }
            Op::Split { axis, sizes } if norm_axis(*axis, rank(0)) == Some(rank(0) - 1) => {
                let mut start = 0;
                for (k, &sz) in sizes.iter().enumerate() {
                    let (s, e) = (num(&mut eg, start), num(&mut eg, start + sz));
                    start += sz;
                    let id = eg.add(Glu::Slice([ins[0], s, e]));
                    class_of.insert(Value { node: n, output: k }, id);
                }
                continue;
            }
            _ => {
                for (k, t) in node.outputs.iter().enumerate() {
                    let v = Value { node: n, output: k };
                    let id = leaf(&mut eg, v, t);
                    class_of.insert(v, id);
                }
                continue;
            }
        };
        class_of.insert(v0, id);
    }
    let outs: Vec<Id> = g.outputs.iter().map(|v| class_of[v]).collect();
    let root = eg.add(Glu::Outputs(outs.into_boxed_slice()));
    eg.rebuild();
    Ok(Lowered { egraph: eg, class_of, root, order })
}
