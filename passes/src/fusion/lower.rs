//! Lowering: the petgraph DAG into the e-graph, one class per graph value, with a root
//! `outputs` node over every graph output.

use super::lang::{self, Const, Glu, GluGraph, TypeAnalysis};
use egg::{Id, Symbol};
use glufuse_ir::shape::norm_axis;
use glufuse_ir::Result;
use glufuse_ir::*;
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
    pub order: Vec<NodeIndex>,
}

fn leaf(eg: &mut GluGraph, v: Value, ty: &TensorType) -> Id {
    let sym = Symbol::from(format!("v{}_{}", v.node.index(), v.output));
    eg.analysis.leaf_types.insert(sym, ty.clone());
    eg.add(Glu::Leaf(sym))
}

/// Whether the node is a floating-point scalar constant the rules may match by value.
pub fn scalar_value(node: &Node) -> Option<f64> {
    if node.outputs[0].numel() != Some(1) || !node.outputs[0].dtype.is_float() {
        return None;
    }
    // A constant, or a weight given inline; any other op holds no known value.
    if let Op::Constant(v) = &node.op {
        return v.get_f64(0);
    }
    if let Op::Weight(WeightInit::Data(d)) = &node.op {
        return d.first().map(|&x| x as f64);
    }
    None
}

/// Where `Reshape` node `n` is a product of a matrix per row of x, spelled as a batched
/// `MatMul` of the matrices with x's rows as columns, `reshape(W · reshape(x, [P, K, 1]),
/// [P, N])` with `W` of `[P, N, K]` and `x` of `[P, K]` (a mixture of experts' products in
/// Hugging Face's `batched_mm`: each token-expert pair's expert matrix times the pair's row):
/// `x` and `W`. That is `x·Wᵀ` row by row, which the language writes `lin(x, t(W), nobias)`.
fn per_row_product(g: &Graph, n: NodeIndex) -> Option<(Value, Value)> {
    let m = g.inputs(n)[0];
    if !matches!(g.node(m.node).op, Op::MatMul) {
        return None;
    }
    let [w, col] = g.inputs(m.node)[..] else { return None };
    if !matches!(g.node(col.node).op, Op::Reshape { .. }) {
        return None;
    }
    let x = g.inputs(col.node)[0];
    let (wt, ct, xt, mt, rt) = (g.ty(w), g.ty(col), g.ty(x), g.ty(m), g.ty(Value::of(n)));
    let one = Dim::Fixed(1);
    let fits = wt.rank() == 3
        && xt.rank() == 2
        && ct.shape == [xt.shape[0].clone(), xt.shape[1].clone(), one.clone()]
        && wt.shape[0] == xt.shape[0]
        && wt.shape[2] == xt.shape[1]
        && mt.shape == [wt.shape[0].clone(), wt.shape[1].clone(), one]
        && rt.shape == [wt.shape[0].clone(), wt.shape[1].clone()];
    fits.then_some((x, w))
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
        let is_last_axis = |axis: i64| norm_axis(axis, rank(0)) == Some(rank(0) - 1);
        // Scalar constants are matched by value.
        let konst = scalar_value(node);
        // Only floating-point computations can be part of a gated unit; integer and boolean
        // values (positions, masks) are leaves.
        let float = node.outputs.iter().all(|t| t.dtype.is_float());
        let fixed_sizes = |sizes: &[Dim]| sizes.iter().map(Dim::fixed).collect::<Option<Vec<u64>>>();
        let id = match &node.op {
            _ if konst.is_some() => konst.map(|c| eg.add(Glu::Num(Const::new(c)))),
            _ if !float => None,
            Op::MatMul => Some(eg.add(Glu::MatMul([ins[0], ins[1]]))),
            Op::Reshape { .. } => per_row_product(g, n).map(|(x, w)| {
                let w = eg.add(Glu::T(class_of[&w]));
                let nobias = eg.add(Glu::NoBias);
                eg.add(Glu::Lin([class_of[&x], w, nobias]))
            }),
            Op::Unary(u) => lang::unary(*u, ins[0]).map(|e| eg.add(e)),
            Op::Binary(b) => lang::binary(*b, [ins[0], ins[1]]).map(|e| eg.add(e)),
            Op::Transpose { perm } => (perm == &[1, 0]).then(|| eg.add(Glu::T(ins[0]))),
            Op::Slice { axis, start: Dim::Fixed(start), len: Dim::Fixed(len), step: 1 } if is_last_axis(*axis) => {
                let (s, e) = (num(&mut eg, *start), num(&mut eg, start + len));
                Some(eg.add(Glu::Slice([ins[0], s, e])))
            }
            Op::Split { axis, sizes } if is_last_axis(*axis) && fixed_sizes(sizes).is_some() => {
                let mut start = 0;
                for (k, sz) in fixed_sizes(sizes).expect("checked").into_iter().enumerate() {
                    let (s, e) = (num(&mut eg, start), num(&mut eg, start + sz));
                    start += sz;
                    let id = eg.add(Glu::Slice([ins[0], s, e]));
                    class_of.insert(Value { node: n, output: k }, id);
                }
                continue;
            }
            // Values the pass does not look into: leaves.
            Op::Slice { .. }
            | Op::Split { .. }
            | Op::Input
            | Op::Weight(_)
            | Op::QuantWeight(_)
            | Op::Constant(_)
            | Op::SymConstant(_)
            | Op::Where
            | Op::Reduce { .. }
            | Op::Softmax { .. }
            | Op::CumSum { .. }
            | Op::TopK { .. }
            | Op::LayerNorm { .. }
            | Op::Gather { .. }
            | Op::GatherND { .. }
            | Op::ScatterND
            | Op::ScatterElements { .. }
            | Op::Range { .. }
            | Op::Expand { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Elementwise(_)
            | Op::Attention(_)
            | Op::Opaque { .. } => None,
        };
        let Some(id) = id else {
            for (k, t) in node.outputs.iter().enumerate() {
                let v = Value { node: n, output: k };
                let id = leaf(&mut eg, v, t);
                class_of.insert(v, id);
            }
            continue;
        };
        class_of.insert(v0, id);
    }
    let outs: Vec<Id> = g.outputs.iter().map(|v| class_of[v]).collect();
    let root = eg.add(Glu::Outputs(outs.into_boxed_slice()));
    eg.rebuild();
    Ok(Lowered { egraph: eg, class_of, root, order })
}
