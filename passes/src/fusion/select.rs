//! Choosing what to fuse: candidates from the saturated e-graph, their resolution back to
//! graph values, and a DAG-aware cost model in kernel launches and bytes moved.
//!
//! A candidate is a product `act(g) · u` of the graph (a class holding a `glu` node and an
//! original `Mul`). It is fusable when its class also holds an `fgu` node whose operands
//! resolve to graph values (x, weights, biases) with one layout. It is fused when doing so
//! lowers the cost of the whole graph, counted with sharing: a node still needed by another
//! consumer is paid for once. On top of the cost, a hard rule: a candidate any of whose
//! intermediates (projections, activation, transposes) is still needed elsewhere is left
//! alone, since fusing it would compute that intermediate twice and read its weight again.
//! Candidates are tried greedily in graph order.

use super::lang::{bytes_of, Glu, GluGraph};
use egg::Id;
use glufuse_ir::NodeIndex;
use glufuse_ir::*;
use std::collections::{HashMap, HashSet};

/// The cost of one kernel launch in bytes-moved equivalents: a dispatch recorded in a shared
/// command encoder costs about half a microsecond, what a GPU moves 1 MiB in.
pub const LAUNCH_COST: f64 = 1024.0 * 1024.0;

/// A weight (or bias) as the fused node reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operand {
    /// The graph value.
    pub value: Value,
    /// Its layout (weights) — `Kn` for biases.
    pub layout: Layout,
    /// First output feature read.
    pub offset: u64,
}

/// A fusable candidate, resolved to graph values.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The `Mul` the fused node replaces (and whose name it takes).
    pub root: Value,
    /// The activation.
    pub activation: Activation,
    /// `x`.
    pub x: Value,
    /// Gate weight.
    pub w_gate: Operand,
    /// Up weight.
    pub w_up: Operand,
    /// Gate bias.
    pub b_gate: Option<Operand>,
    /// Up bias.
    pub b_up: Option<Operand>,
    /// Intermediate size I (output features).
    pub width: u64,
}

impl Plan {
    /// Every value the fused node reads.
    pub fn operands(&self) -> Vec<Value> {
        let mut v = vec![self.x, self.w_gate.value, self.w_up.value];
        v.extend(self.b_gate.map(|b| b.value));
        v.extend(self.b_up.map(|b| b.value));
        v
    }
}

/// Maps classes back to graph values.
pub struct ClassMap {
    /// Values of each canonical class, in topological order of their nodes.
    pub values: HashMap<Id, Vec<Value>>,
}

impl ClassMap {
    /// Builds the map from the lowering's value → class table.
    pub fn new(eg: &GluGraph, class_of: &HashMap<Value, Id>, order: &[NodeIndex]) -> Self {
        let pos: HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut values: HashMap<Id, Vec<Value>> = HashMap::new();
        for (&v, &c) in class_of {
            values.entry(eg.find(c)).or_default().push(v);
        }
        for vs in values.values_mut() {
            vs.sort_by_key(|v| (pos[&v.node], v.output));
        }
        ClassMap { values }
    }

    /// The first graph value of a class.
    pub fn value(&self, eg: &GluGraph, c: Id) -> Option<Value> {
        self.values.get(&eg.find(c)).and_then(|v| v.first().copied())
    }
}

fn konst(eg: &GluGraph, c: Id) -> Option<u64> {
    eg[c].data.konst.filter(|k| *k >= 0.0 && k.fract() == 0.0).map(|k| k as u64)
}

/// Resolves a weight descriptor class: `cols(d, s, e)`, `t(W)` or a plain 2-D value.
fn resolve_weight(eg: &GluGraph, cm: &ClassMap, c: Id) -> Option<Operand> {
    let class = &eg[c];
    for n in &class.nodes {
        if let Glu::Cols([d, s, _]) = n {
            if let (Some(mut op), Some(s)) = (resolve_weight(eg, cm, *d), konst(eg, *s)) {
                op.offset += s;
                return Some(op);
            }
        }
    }
    for n in &class.nodes {
        if let Glu::T(w) = n {
            if let Some(v) = cm.value(eg, *w) {
                return Some(Operand { value: v, layout: Layout::Nk, offset: 0 });
            }
        }
    }
    cm.value(eg, c).map(|value| Operand { value, layout: Layout::Kn, offset: 0 })
}

/// Resolves a bias class: `nobias` (Ok(None)), `cols(b, s, e)` or a plain 1-D value.
fn resolve_bias(eg: &GluGraph, cm: &ClassMap, c: Id) -> Result<Option<Operand>, ()> {
    if eg[c].nodes.iter().any(|n| matches!(n, Glu::NoBias)) {
        return Ok(None);
    }
    for n in &eg[c].nodes {
        if let Glu::Cols([b, s, _]) = n {
            if let (Ok(Some(mut op)), Some(s)) = (resolve_bias(eg, cm, *b), konst(eg, *s)) {
                op.offset += s;
                return Ok(Some(op));
            }
        }
    }
    cm.value(eg, c).map(|value| Some(Operand { value, layout: Layout::Kn, offset: 0 })).ok_or(())
}

/// Resolves an `fgu` node to a plan, or says why it cannot be built.
pub fn resolve(eg: &GluGraph, cm: &ClassMap, root: Value, fgu: &Glu, g: &Graph) -> Result<Plan, String> {
    let Glu::Fgu([a, x, wg, bg, wu, bu]) = fgu else {
        return Err("not a fused node".into());
    };
    let activation = eg[*a]
        .nodes
        .iter()
        .find_map(|n| if let Glu::Act(t) = n { Some(t.0) } else { None })
        .ok_or("no activation tag")?;
    let x = cm.value(eg, *x).ok_or("x is not a value of the graph")?;
    let w_gate = resolve_weight(eg, cm, *wg).ok_or("the gate weight is not a value of the graph")?;
    let w_up = resolve_weight(eg, cm, *wu).ok_or("the up weight is not a value of the graph")?;
    let b_gate = resolve_bias(eg, cm, *bg).map_err(|_| "the gate bias is not a value of the graph")?;
    let b_up = resolve_bias(eg, cm, *bu).map_err(|_| "the up bias is not a value of the graph")?;
    if w_gate.layout != w_up.layout {
        return Err(format!(
            "the gate weight '{}' is {:?} but the up weight '{}' is {:?}: one kernel reads one layout",
            g.value_name(w_gate.value),
            w_gate.layout,
            g.value_name(w_up.value),
            w_up.layout
        ));
    }
    for (w, b, side) in [(&w_gate, &b_gate, "gate"), (&w_up, &b_up, "up")] {
        if let Some(b) = b {
            if b.offset != w.offset {
                return Err(format!(
                    "the {side} bias is read from feature {} but the weight from {}",
                    b.offset, w.offset
                ));
            }
        }
    }
    let out = g.ty(root);
    if out.dtype != g.ty(w_gate.value).dtype {
        return Err(format!("x is {} but the weights are {}", out.dtype, g.ty(w_gate.value).dtype));
    }
    let width = out.shape.last().and_then(Dim::fixed).ok_or("the output width is not known")?;
    Ok(Plan { root, activation, x, w_gate, w_up, b_gate, b_up, width })
}

/// Explains why a candidate's class holds no `fgu` node.
pub fn diagnose(eg: &GluGraph, cm: &ClassMap, glu: &Glu, g: &Graph) -> String {
    let Glu::Glu([_, gc, uc]) = glu else {
        return "not a gated product".into();
    };
    let name = |c: Id| {
        cm.value(eg, c).map(|v| format!("'{}'", g.value_name(v))).unwrap_or_else(|| "a rewritten expression".into())
    };
    let lins = |c: Id| -> Vec<[Id; 3]> {
        eg[c].nodes.iter().filter_map(|n| if let Glu::Lin(l) = n { Some(*l) } else { None }).collect()
    };
    let (gl, ul) = (lins(*gc), lins(*uc));
    if gl.is_empty() {
        return format!("the activated operand {} is not a projection x·W (+ b)", name(*gc));
    }
    if ul.is_empty() {
        return format!("the other operand {} is not a projection x·W (+ b): no gate to fuse with", name(*uc));
    }
    if !gl.iter().any(|a| ul.iter().any(|b| eg.find(a[0]) == eg.find(b[0]))) {
        return format!(
            "the gate projection reads {} but the up projection reads {}: they need the same input",
            name(gl[0][0]),
            name(ul[0][0])
        );
    }
    let t = |c: Id| eg[c].data.ty.as_ref().map_or("?".into(), |t| t.to_string());
    format!("the gate projection gives {} but the up projection gives {}", t(*gc), t(*uc))
}

/// Bytes of a value (symbolic dims as 1).
fn vbytes(g: &Graph, v: Value) -> f64 {
    bytes_of(g.ty(v))
}

/// Cost of running one graph node.
fn node_cost(g: &Graph, n: NodeIndex) -> f64 {
    let node = g.node(n);
    if !node.op.launches_kernel() {
        return 0.0;
    }
    let ins: f64 = g.inputs(n).iter().map(|&v| vbytes(g, v)).sum();
    let outs: f64 = node.outputs.iter().map(bytes_of).sum();
    LAUNCH_COST + ins + outs
}

/// Cost of a fused node: one launch, x, the weight halves it reads, biases, the output.
fn plan_cost(g: &Graph, p: &Plan) -> f64 {
    let part = |o: &Operand| {
        let t = g.ty(o.value);
        let k = match t.rank() {
            2 => t.shape[if o.layout == Layout::Kn { 0 } else { 1 }].fixed().unwrap_or(1) as f64,
            _ => 1.0,
        };
        k * p.width as f64 * t.dtype.size() as f64
    };
    let biases: f64 = p.b_gate.iter().chain(p.b_up.iter()).map(part).sum();
    LAUNCH_COST + vbytes(g, p.x) + part(&p.w_gate) + part(&p.w_up) + biases + vbytes(g, p.root)
}

/// The effect of applying a plan, worked out on its region alone (so that trying every
/// candidate stays linear in the graph): which region nodes it frees, which it leaves
/// computed because something outside still reads them, and the change in cost.
pub struct Effect {
    /// Region nodes no longer computed once the plan is applied (the root included).
    pub freed: Vec<NodeIndex>,
    /// Region nodes still computed for other readers.
    pub still: HashSet<NodeIndex>,
    /// Cost after minus cost before (negative: cheaper).
    pub delta: f64,
}

/// Evaluates a plan given the nodes already freed by accepted plans and the values those
/// plans' fused nodes read.
pub fn effect(g: &Graph, p: &Plan, freed_before: &HashSet<NodeIndex>, read_by_fused: &HashSet<Value>) -> Effect {
    let reg = region(g, p);
    let mut freed: HashSet<NodeIndex> = HashSet::from([p.root.node]);
    // Consumers before producers: walk until nothing more frees up.
    loop {
        let mut changed = false;
        for &n in reg.iter().rev() {
            if freed.contains(&n) {
                continue;
            }
            let outs = g.node(n).outputs.len();
            let needed = (0..outs).map(|k| Value { node: n, output: k }).any(|v| {
                g.is_output(v)
                    || read_by_fused.contains(&v)
                    || g.users(v).iter().any(|(u, _)| !freed.contains(u) && !freed_before.contains(u))
            });
            if !needed {
                freed.insert(n);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let still: HashSet<NodeIndex> = reg.iter().copied().filter(|n| !freed.contains(n)).collect();
    let saved: f64 = freed.iter().map(|&n| node_cost(g, n)).sum();
    let mut freed: Vec<NodeIndex> = freed.into_iter().collect();
    freed.sort();
    Effect { freed, still, delta: plan_cost(g, p) - saved }
}

/// The nodes between a plan's root and its operands (the root and constants included).
pub fn region(g: &Graph, p: &Plan) -> Vec<NodeIndex> {
    let stop: HashSet<NodeIndex> = p.operands().iter().map(|v| v.node).collect();
    let mut seen = HashSet::new();
    let mut stack = vec![p.root.node];
    while let Some(n) = stack.pop() {
        if stop.contains(&n) || !seen.insert(n) {
            continue;
        }
        stack.extend(g.inputs(n).iter().map(|v| v.node));
    }
    // Scalar constants the activation reads belong to the region; inputs and weights never.
    let mut r: Vec<_> =
        seen.into_iter().filter(|n| matches!(g.node(*n).op, Op::Constant(_)) || !g.node(*n).op.is_source()).collect();
    r.sort();
    r
}

/// Why fusing a plan did not pay: the region nodes that would still be computed, and who
/// else needs them.
pub fn shared_reason(g: &Graph, p: &Plan, still: &HashSet<NodeIndex>) -> String {
    let reg = region(g, p);
    let inside: HashSet<NodeIndex> = reg.iter().copied().collect();
    let mut parts = vec![];
    for &n in &reg {
        if n == p.root.node || !still.contains(&n) || !g.node(n).op.launches_kernel() {
            continue;
        }
        let node = g.node(n);
        let mut who: Vec<String> = vec![];
        for k in 0..node.outputs.len() {
            let v = Value { node: n, output: k };
            if g.is_output(v) {
                who.push("a graph output".into());
            }
            for (u, _) in g.users(v) {
                if !inside.contains(&u) {
                    who.push(format!("'{}'", g.node(u).name));
                }
            }
        }
        if !who.is_empty() {
            who.sort();
            who.dedup();
            parts.push(format!("'{}' is also used by {}", node.name, who.join(", ")));
        }
    }
    if parts.is_empty() {
        "fusing would not lower the cost".into()
    } else {
        format!("{}; fusing would compute it twice and read its weight again", parts.join("; "))
    }
}
