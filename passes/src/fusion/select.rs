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
use glufuse_ir::*;
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Which operand of a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    /// The input `x`.
    X,
    /// The gate weight.
    GateWeight,
    /// The up weight.
    UpWeight,
    /// The gate bias.
    GateBias,
    /// The up bias.
    UpBias,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::X => "x",
            Part::GateWeight => "the gate weight",
            Part::UpWeight => "the up weight",
            Part::GateBias => "the gate bias",
            Part::UpBias => "the up bias",
        })
    }
}

/// Who else reads a value the candidate would otherwise consume.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// A node outside the candidate, by name.
    Node(String),
    /// The graph's output list.
    GraphOutput,
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reader::Node(n) => write!(f, "'{n}'"),
            Reader::GraphOutput => f.write_str("a graph output"),
        }
    }
}

/// Why a candidate was left as it was. Values are named as the graph names them; `None`
/// where the e-graph holds a rewritten expression and no graph value. [`fmt::Display`] gives
/// the report's text; in JSON a report carries both the text (`"reason"`) and this value
/// (`"rejection"`, externally tagged in snake case: `{"shared": {"nodes": [...]}}`,
/// `"unknown_width"`), which is what reads back.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    /// The activated operand is not a projection `x·W (+ b)`.
    GateNotProjection {
        /// The operand.
        operand: Option<String>,
    },
    /// The other operand is not a projection: there is no gate to fuse with.
    UpNotProjection {
        /// The operand.
        operand: Option<String>,
    },
    /// The gate and up projections read different inputs.
    DifferentInputs {
        /// What the gate projection reads.
        gate: Option<String>,
        /// What the up projection reads.
        up: Option<String>,
    },
    /// The gate and up projections give different types (shape or dtype).
    TypesDiffer {
        /// The gate projection's type, if known.
        gate: Option<TensorType>,
        /// The up projection's type, if known.
        up: Option<TensorType>,
    },
    /// An operand the fused node would read is not a value of the graph.
    NotAValue(Part),
    /// The gate and up weights are laid out differently; one kernel reads one layout.
    MixedLayouts {
        /// The gate weight.
        gate: String,
        /// Its layout.
        gate_layout: Layout,
        /// The up weight.
        up: String,
        /// Its layout.
        up_layout: Layout,
    },
    /// The gate and up weights are stored in different formats (one 4-bit, the other float,
    /// or 4-bit in different block sizes): one kernel reads one weight format.
    MixedPrecision {
        /// The gate weight.
        gate: String,
        /// Its format (`f16`, `4-bit, block 32`).
        gate_format: String,
        /// The up weight.
        up: String,
        /// Its format.
        up_format: String,
    },
    /// A bias is read from another feature than its weight.
    BiasOffset {
        /// Which bias.
        bias: Part,
        /// First feature read from the bias.
        bias_offset: u64,
        /// First feature read from the weight.
        weight_offset: u64,
    },
    /// x and the weights differ in dtype.
    DtypesDiffer {
        /// x's dtype.
        x: DType,
        /// The weights'.
        weights: DType,
    },
    /// The output's last dim is not a known size.
    UnknownWidth,
    /// Intermediates of the candidate are also read elsewhere: fusing would compute them
    /// twice and read their weights again.
    Shared {
        /// Each shared node and who else reads it.
        nodes: Vec<(String, Vec<Reader>)>,
    },
    /// Fusing would not lower the cost (by the change given, when it was worked out).
    NoGain {
        /// The change in cost, in bytes-moved equivalents.
        change: Option<f64>,
    },
    /// The candidate's class holds no gated product (an e-graph invariant, broken).
    NotGated,
    /// The resolved node is not a fused one (an e-graph invariant, broken).
    NotFused,
    /// The fused node carries no activation (an e-graph invariant, broken).
    NoActivation,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = |v: &Option<String>| v.as_ref().map_or("a rewritten expression".into(), |n| format!("'{n}'"));
        let ty = |t: &Option<TensorType>| t.as_ref().map_or("?".into(), |t| t.to_string());
        match self {
            Rejection::GateNotProjection { operand } => {
                write!(f, "the activated operand {} is not a projection x·W (+ b)", name(operand))
            }
            Rejection::UpNotProjection { operand } => {
                write!(f, "the other operand {} is not a projection x·W (+ b): no gate to fuse with", name(operand))
            }
            Rejection::DifferentInputs { gate, up } => write!(
                f,
                "the gate projection reads {} but the up projection reads {}: they need the same input",
                name(gate),
                name(up)
            ),
            Rejection::TypesDiffer { gate, up } => {
                write!(f, "the gate projection gives {} but the up projection gives {}", ty(gate), ty(up))
            }
            Rejection::NotAValue(p) => write!(f, "{p} is not a value of the graph"),
            Rejection::MixedLayouts { gate, gate_layout, up, up_layout } => write!(
                f,
                "the gate weight '{gate}' is {gate_layout:?} but the up weight '{up}' is {up_layout:?}: one kernel reads one layout"
            ),
            Rejection::MixedPrecision { gate, gate_format, up, up_format } => write!(
                f,
                "the gate weight '{gate}' is {gate_format} but the up weight '{up}' is {up_format}: one kernel reads one weight format"
            ),
            Rejection::BiasOffset { bias, bias_offset, weight_offset } => {
                write!(f, "{bias} is read from feature {bias_offset} but the weight from {weight_offset}")
            }
            Rejection::DtypesDiffer { x, weights } => write!(f, "x is {x} but the weights are {weights}"),
            Rejection::UnknownWidth => f.write_str("the output width is not known"),
            Rejection::Shared { nodes } => {
                let parts: Vec<String> = nodes
                    .iter()
                    .map(|(n, who)| {
                        let who: Vec<String> = who.iter().map(|r| r.to_string()).collect();
                        format!("'{n}' is also used by {}", who.join(", "))
                    })
                    .collect();
                write!(f, "{}; fusing would compute it twice and read its weight again", parts.join("; "))
            }
            Rejection::NoGain { change: Some(c) } => write!(f, "fusing would not lower the cost (change {c:+.0})"),
            Rejection::NoGain { change: None } => f.write_str("fusing would not lower the cost"),
            Rejection::NotGated => f.write_str("not a gated product"),
            Rejection::NotFused => f.write_str("not a fused node"),
            Rejection::NoActivation => f.write_str("no activation tag"),
        }
    }
}

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
pub fn resolve(eg: &GluGraph, cm: &ClassMap, root: Value, fgu: &Glu, g: &Graph) -> Result<Plan, Rejection> {
    let Glu::Fgu([a, x, wg, bg, wu, bu]) = fgu else {
        return Err(Rejection::NotFused);
    };
    let activation = eg[*a]
        .nodes
        .iter()
        .find_map(|n| if let Glu::Act(t) = n { Some(t.0) } else { None })
        .ok_or(Rejection::NoActivation)?;
    let x = cm.value(eg, *x).ok_or(Rejection::NotAValue(Part::X))?;
    let w_gate = resolve_weight(eg, cm, *wg).ok_or(Rejection::NotAValue(Part::GateWeight))?;
    let w_up = resolve_weight(eg, cm, *wu).ok_or(Rejection::NotAValue(Part::UpWeight))?;
    let b_gate = resolve_bias(eg, cm, *bg).map_err(|_| Rejection::NotAValue(Part::GateBias))?;
    let b_up = resolve_bias(eg, cm, *bu).map_err(|_| Rejection::NotAValue(Part::UpBias))?;
    if w_gate.layout != w_up.layout {
        return Err(Rejection::MixedLayouts {
            gate: g.value_name(w_gate.value),
            gate_layout: w_gate.layout,
            up: g.value_name(w_up.value),
            up_layout: w_up.layout,
        });
    }
    let (gf, uf) = (weight_format(g, &w_gate), weight_format(g, &w_up));
    if gf != uf {
        return Err(Rejection::MixedPrecision {
            gate: g.value_name(w_gate.value),
            gate_format: gf,
            up: g.value_name(w_up.value),
            up_format: uf,
        });
    }
    for (w, b, bias) in [(&w_gate, &b_gate, Part::GateBias), (&w_up, &b_up, Part::UpBias)] {
        if let Some(b) = b {
            if b.offset != w.offset {
                return Err(Rejection::BiasOffset { bias, bias_offset: b.offset, weight_offset: w.offset });
            }
        }
    }
    let out = g.ty(root);
    if out.dtype != g.ty(w_gate.value).dtype {
        return Err(Rejection::DtypesDiffer { x: out.dtype, weights: g.ty(w_gate.value).dtype });
    }
    let width = out.shape.last().and_then(Dim::fixed).ok_or(Rejection::UnknownWidth)?;
    Ok(Plan { root, activation, x, w_gate, w_up, b_gate, b_up, width })
}

/// How a weight is stored, as far as the fused kernel cares: its dtype for a float weight; for
/// a 4-bit one ([`QuantWeight`]) its block size, whether the blocks run along k (the reduced
/// dim) and the scales' dtype.
fn weight_format(g: &Graph, w: &Operand) -> String {
    let ty = g.ty(w.value);
    match &g.node(w.value.node).op {
        Op::QuantWeight(q) => {
            // The reduced dim k is axis 0 of a [K, N] weight, axis 1 of an [N, K] one.
            let k_axis = if w.layout == Layout::Kn { 0 } else { 1 };
            let along = if q.axis == k_axis { "" } else { ", blocks along n" };
            format!("4-bit, block {}{along}, {} scales", q.block, ty.dtype)
        }
        _ => ty.dtype.to_string(),
    }
}

/// Explains why a candidate's class holds no `fgu` node.
pub fn diagnose(eg: &GluGraph, cm: &ClassMap, glu: &Glu, g: &Graph) -> Rejection {
    let Glu::Glu([_, gc, uc]) = glu else {
        return Rejection::NotGated;
    };
    let name = |c: Id| cm.value(eg, c).map(|v| g.value_name(v));
    let lins = |c: Id| -> Vec<[Id; 3]> {
        eg[c].nodes.iter().filter_map(|n| if let Glu::Lin(l) = n { Some(*l) } else { None }).collect()
    };
    let (gl, ul) = (lins(*gc), lins(*uc));
    if gl.is_empty() {
        return Rejection::GateNotProjection { operand: name(*gc) };
    }
    if ul.is_empty() {
        return Rejection::UpNotProjection { operand: name(*uc) };
    }
    if !gl.iter().any(|a| ul.iter().any(|b| eg.find(a[0]) == eg.find(b[0]))) {
        return Rejection::DifferentInputs { gate: name(gl[0][0]), up: name(ul[0][0]) };
    }
    Rejection::TypesDiffer { gate: eg[*gc].data.ty.clone(), up: eg[*uc].data.ty.clone() }
}

/// Bytes of a value (symbolic dims as 1).
fn vbytes(g: &Graph, v: Value) -> f64 {
    bytes_of(g.ty(v))
}

/// Cost of running one graph node.
fn node_cost(g: &Graph, n: NodeIndex) -> f64 {
    let node = g.node(n);
    if !g.launches_kernel(n) {
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
pub fn shared_reason(g: &Graph, p: &Plan, still: &HashSet<NodeIndex>) -> Rejection {
    let reg = region(g, p);
    let inside: HashSet<NodeIndex> = reg.iter().copied().collect();
    let mut nodes = vec![];
    for &n in &reg {
        if n == p.root.node || !still.contains(&n) || !g.launches_kernel(n) {
            continue;
        }
        let node = g.node(n);
        let mut who: Vec<Reader> = vec![];
        for k in 0..node.outputs.len() {
            let v = Value { node: n, output: k };
            if g.is_output(v) {
                who.push(Reader::GraphOutput);
            }
            for (u, _) in g.users(v) {
                if !inside.contains(&u) {
                    who.push(Reader::Node(g.node(u).name.clone()));
                }
            }
        }
        if !who.is_empty() {
            // In the order of their text, each once.
            who.sort_by_cached_key(|r| r.to_string());
            who.dedup();
            nodes.push((node.name.clone(), who));
        }
    }
    if nodes.is_empty() {
        Rejection::NoGain { change: None }
    } else {
        Rejection::Shared { nodes }
    }
}
