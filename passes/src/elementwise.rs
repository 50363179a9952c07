//! Elementwise fusion: merges connected elementwise ops (unary and binary ops, comparisons
//! and logic, `Where`, casts, expands) and the one-element constants they read into one
//! `Elementwise` node per group, so that a chain of them takes one kernel launch and writes
//! one value instead of one launch and one intermediate per op. A whole model's masks, norm
//! tails, rotary products and residual adds are such chains.
//!
//! The rules:
//! - A node joins the group of its readers when all of them are in that one group and it is
//!   not a graph output. So nothing is computed twice, and a group's output is the node whose
//!   readers are outside it (or that is a graph output).
//! - A member of a smaller shape than the group's output (an RMS norm's `1/√(mean + ε)` per
//!   row, a mask per position broadcast over heads) is recomputed for every output element it
//!   broadcasts to: a few arithmetic operations, against a launch and a round trip through
//!   memory.
//! - Constants of one element are inlined as literals; a constant only the group read is
//!   removed with it.
//! - Each step of the program is the op it replaces on the same dtypes, so f16 rounding
//!   happens exactly where the graph casts to f16, and the interpreter computes the fused
//!   graph bit for bit as the original.
//! - Row steps: a reduction over the last axis (kept) and a softmax along it join a group
//!   whose output has their operand's shape, so that one workgroup per row of the output
//!   reduces the row and then writes it (an RMS norm: `x·x`, its mean, and the tail that
//!   scales `x`, in one kernel; attention scores: scale, mask and softmax in one). A softmax
//!   may start a group; a reduction may not (its output is not a row). No layout member may
//!   read a row step's value (it would move it to another row).
//! - Layout ops join too (transpose, slice, concat, and a reshape between two members): a
//!   program reads its operands at the coordinates they move each element from, so a rotary
//!   embedding's `rotate_half` (two slices, a negation, a concat) and the transposes around it
//!   are reads of the projection's output, and a KV cache's concat writes the new keys as it
//!   computes them. A reshape of a value computed outside the group stays a view the program
//!   reads, and so does a reshape that no member reads (it ends no group: the row steps of
//!   a norm ending in `view(-1, d)` join the norm's). A `Split` whose parts a program reads
//!   becomes a `Slice` a part first, so that its parts join their readers' groups too (a split
//!   with a part that is a graph output stays).
//! - A compute op read outside its group too (a residual sum that the next norm reads, and the
//!   next residual) joins the group of its first reader whose output has its shape as an
//!   extra output: the kernel writes it beside the group's output, once. Where such outputs
//!   would make two groups need each other, the pass groups without them.
//! - A group that saves no launch (one op, or one op and views) stays as it is.
//!
//! Every node keeps its name: a group's node takes its output's name and lists the names of
//! the nodes it replaced.

use super::{Pass, PassReport};
use glufuse_ir::petgraph::Direction;
use glufuse_ir::shape::norm_axis;
use glufuse_ir::Result;
use glufuse_ir::*;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// One group merged into a node.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    /// The node's name (its output's, kept).
    pub node: String,
    /// The names of the nodes it replaced, in topological order, then the constants it inlined
    /// that nothing else read.
    pub replaced: Vec<String>,
    /// The ops merged (one per replaced op node), by name.
    pub ops: Vec<String>,
    /// How many inputs the node reads.
    pub inputs: usize,
    /// The members it also writes (read outside it), by name: its outputs 1...
    pub also: Vec<String>,
}

/// What the pass merged.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ElementwiseReport {
    /// The groups merged, in topological order of their outputs.
    pub groups: Vec<Group>,
    /// Kernel launches a run takes before the pass.
    pub launches_before: usize,
    /// Kernel launches a run takes after it.
    pub launches_after: usize,
}

impl ElementwiseReport {
    /// The report for people: one line, then one per group when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let ops: usize = self.groups.iter().map(|g| g.ops.len()).sum();
        let mut s = format!(
            "elementwise: {} group(s) of {ops} ops merged, kernel launches {} -> {}\n",
            self.groups.len(),
            self.launches_before,
            self.launches_after
        );
        if detail {
            for g in &self.groups {
                let also =
                    if g.also.is_empty() { String::new() } else { format!(", also writes {}", g.also.join(", ")) };
                s.push_str(&format!("  {} ({} input(s){also}): {}\n", g.node, g.inputs, g.ops.join(" ")));
            }
        }
        s
    }
}

/// The pass.
#[derive(Default)]
pub struct FuseElementwise;

impl Pass for FuseElementwise {
    fn name(&self) -> &'static str {
        "fuse-elementwise"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        Ok(PassReport::Elementwise(fuse(g)?))
    }
}

/// Whether node `n` can be a step of a program.
fn member(g: &Graph, n: NodeIndex) -> bool {
    node_step(g, n, &[0, 0, 0]).is_some()
}

/// The step of a constant of one element (a known shape of ones), if `n` is one.
fn scalar_step(g: &Graph, n: NodeIndex) -> Option<Step> {
    let node = g.node(n);
    let Op::Constant(c) = &node.op else { return None };
    let ty = &node.outputs[0];
    let shape: Vec<u64> = ty.shape.iter().map(|d| d.fixed()).collect::<Option<_>>()?;
    if c.len() != 1 || shape.iter().any(|&d| d != 1) {
        return None;
    }
    let value = match c {
        ConstValues::Float(v) => Scalar::Float(v[0]),
        ConstValues::Int(v) => Scalar::Int(v[0]),
        ConstValues::Bool(v) => Scalar::Bool(v[0]),
    };
    Some(Step::Const { dtype: ty.dtype, shape, value })
}

/// The step of node `n` over steps `args`; `None` for a node that is no step of a program:
/// ops of other families, a reduction of integers, over other axes or not keeping the axis,
/// a softmax along another axis.
fn node_step(g: &Graph, n: NodeIndex, args: &[usize]) -> Option<Step> {
    let node = g.node(n);
    let op = &node.op;
    let operand = || g.inputs(n).first().map(|&v| g.ty(v).clone());
    let last = |axis: i64| {
        operand().is_some_and(|t| t.dtype.is_float() && norm_axis(axis, t.rank()) == Some(t.rank().wrapping_sub(1)))
    };
    Some(match op {
        Op::Unary(u) => Step::Unary { op: *u, x: args[0] },
        Op::Binary(b) => Step::Binary { op: *b, a: args[0], b: args[1] },
        Op::Where => Step::Where { cond: args[0], x: args[1], y: args[2] },
        Op::Cast { to } => Step::Cast { to: *to, x: args[0] },
        Op::Expand { shape } => Step::Expand { shape: shape.clone(), x: args[0] },
        Op::Reduce { op, axes, keepdims: true } if axes.len() == 1 && last(axes[0]) => {
            Step::Reduce { op: *op, x: args[0] }
        }
        Op::Softmax { axis } if last(*axis) => Step::Softmax { x: args[0] },
        // A transpose of a 4-bit weight is a view the projections read packed: no step.
        Op::Transpose { .. } if !g.launches_kernel(n) => return None,
        Op::Transpose { perm } => Step::Transpose { perm: perm.clone(), x: args[0] },
        Op::Slice { axis, start, len, step } => {
            Step::Slice { axis: *axis, start: start.clone(), len: len.clone(), step: *step, x: args[0] }
        }
        Op::Concat { axis } => Step::Concat { axis: *axis, xs: args.to_vec() },
        Op::Reshape { shape } => Step::Reshape { shape: shape.clone(), x: args[0] },
        // A range is computed from its coordinate where its readers need it.
        Op::Range { .. } => Step::source(op)?,
        // A product over k of one, `[.., M, 1] · [.., 1, N]`, is the broadcast product of
        // its operands (a rotary embedding's frequencies times its positions).
        Op::MatMul if outer_product(g, n) => Step::Binary { op: BinaryOp::Mul, a: args[0], b: args[1] },
        Op::Input
        | Op::Weight(_)
        | Op::QuantWeight(_)
        | Op::Constant(_)
        | Op::SymConstant(_)
        | Op::MatMul
        | Op::Reduce { .. }
        | Op::Softmax { .. }
        | Op::CumSum { .. }
        | Op::TopK { .. }
        | Op::LayerNorm { .. }
        | Op::Gather { .. }
        | Op::GatherND { .. }
        | Op::ScatterND
        | Op::ScatterElements { .. }
        | Op::Split { .. }
        | Op::FusedGateUp(_)
        | Op::Elementwise(_)
        | Op::Attention(_)
        | Op::Opaque { .. } => return None,
    })
}

/// Whether `MatMul` node `n` multiplies float operands of rank 2 or more over a k of one
/// (`[.., M, 1] · [.., 1, N]`): each element of its result is one product, the broadcast
/// `Mul`'s (batch dims broadcast alike).
fn outer_product(g: &Graph, n: NodeIndex) -> bool {
    let ins = g.inputs(n);
    let [a, b] = ins[..] else { return false };
    let (ta, tb) = (g.ty(a), g.ty(b));
    ta.dtype.is_float()
        && ta.dtype == tb.dtype
        && ta.rank() >= 2
        && tb.rank() >= 2
        && ta.shape[ta.rank() - 1] == Dim::Fixed(1)
        && tb.shape[tb.rank() - 2] == Dim::Fixed(1)
}

/// Merges every group of connected elementwise ops of `g` into one node and reports them.
pub fn fuse(g: &mut Graph) -> Result<ElementwiseReport> {
    let launches_before = g.summary().launches;
    split_to_slices(g)?;
    let order = g.topo_order()?;
    // Extra outputs can, through readers outside their group, make two groups need each
    // other: then group without them.
    let (mut root_of, mut also) = grouping(g, &order, true);
    if !acyclic(g, &order, &root_of) {
        (root_of, also) = grouping(g, &order, false);
    }
    // A reshape is a view where it reads a value computed outside its group: the program
    // reads that view as an input rather than moving its elements.
    for &n in &order {
        if matches!(g.node(n).op, Op::Reshape { .. }) && root_of.contains_key(&n) {
            let src = g.inputs(n)[0].node;
            if root_of.get(&src) != root_of.get(&n) {
                root_of.remove(&n);
            }
        }
    }
    let mut groups: BTreeMap<NodeIndex, Vec<NodeIndex>> = BTreeMap::new();
    for &n in &order {
        if let Some(&r) = root_of.get(&n) {
            groups.entry(r).or_default().push(n);
        }
    }
    // Groups that save a launch, in the order of their outputs.
    let pos: HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let launches = |ms: &[NodeIndex]| ms.iter().filter(|&&m| g.node(m).op.launches_kernel()).count();
    let mut roots: Vec<NodeIndex> =
        groups.iter().filter(|(&r, ms)| launches(ms) > 1 && root_of.contains_key(&r)).map(|(&r, _)| r).collect();
    roots.sort_by_key(|r| pos[r]);
    let mut report = ElementwiseReport { launches_before, ..Default::default() };
    for root in roots {
        report.groups.push(merge(g, root, &groups[&root], &also)?);
    }
    report.launches_after = g.summary().launches;
    Ok(report)
}

/// Each `Split` whose parts a program reads becomes one `Slice` a part (the first named as the
/// split, the others `NAME.J`), so that the parts join their readers' programs as slices of
/// the operand (a split kernel wrote each part for the program to read back: a mixture of
/// experts' gate and up halves). A part that is a graph output keeps the split as it is.
fn split_to_slices(g: &mut Graph) -> Result<()> {
    for n in g.topo_order()? {
        let Op::Split { axis, sizes } = g.node(n).op.clone() else { continue };
        let parts: Vec<Value> = (0..sizes.len()).map(|output| Value { node: n, output }).collect();
        let read_by_program = parts.iter().any(|&v| g.users(v).iter().any(|&(u, _)| member(g, u)));
        if !read_by_program || parts.iter().any(|&v| g.is_output(v)) {
            continue;
        }
        let (name, x) = (g.node(n).name.clone(), g.inputs(n)[0]);
        let mut start = Dim::Fixed(0);
        let mut slices = vec![];
        for (j, len) in sizes.iter().enumerate() {
            let op = Op::Slice { axis, start: start.clone(), len: len.clone(), step: 1 };
            let ty = g.ty(parts[j]).clone();
            let slice = g.add_node(format!("{name}.{j}"), op, &[x], vec![ty])?;
            g.replace_uses(parts[j], Value::of(slice));
            start = start.add(len).map_err(|m| Error::graph(&name, m))?;
            slices.push(slice);
        }
        g.remove_node(n);
        // The first part keeps the split's name (the program that takes it lists it).
        if let Some(&first) = slices.first() {
            g.rename(first, name)?;
        }
    }
    Ok(())
}

/// Each member's group (by its output node), consumers first: a node joins the one group of
/// its readers; with `extras`, a node computed in a group's shape and read outside it too
/// joins the group of its first reader of that shape as an extra output. Also returns the
/// extra outputs.
fn grouping(g: &Graph, order: &[NodeIndex], extras: bool) -> (HashMap<NodeIndex, NodeIndex>, HashSet<NodeIndex>) {
    let mut root_of: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut also = HashSet::new();
    for &n in order.iter().rev() {
        let node = g.node(n);
        if !member(g, n) || node.outputs.len() != 1 {
            continue;
        }
        let v = Value::of(n);
        let readers: BTreeSet<Option<NodeIndex>> = g.users(v).iter().map(|(u, _)| root_of.get(u).copied()).collect();
        let joined = match readers.into_iter().collect::<Vec<_>>()[..] {
            [Some(r)] if !g.is_output(v) => Some(r),
            _ => None,
        };
        let root = match (&node.op, joined) {
            // A row step reduces rows of its group's output: it joins a group whose output has
            // its operand's shape, where nothing moves its values to other rows (no layout
            // member reads it); only a softmax (whose output has that shape) starts one.
            (Op::Reduce { .. } | Op::Softmax { .. }, j) => {
                let operand = &g.ty(g.inputs(n)[0]).shape;
                match j {
                    Some(r) if g.ty(Value::of(r)).shape == *operand && !moved_after(g, n, &root_of) => r,
                    _ if matches!(node.op, Op::Softmax { .. }) => n,
                    _ => continue,
                }
            }
            (_, Some(r)) => r,
            // A reshape no program reads stays a view of its operand, which then ends its
            // group: so a row step before it joins (a norm whose output is `view(-1, d)`).
            (Op::Reshape { .. }, None) => continue,
            (Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast { .. }, None) if extras => {
                let shaped = g.users(v).iter().filter_map(|(u, _)| root_of.get(u).copied()).find(|&r| {
                    g.ty(Value::of(r)).shape == g.ty(v).shape && !matches!(g.node(r).op, Op::Reshape { .. })
                });
                match shaped {
                    Some(r) => {
                        also.insert(n);
                        r
                    }
                    None => n,
                }
            }
            (_, None) => n,
        };
        root_of.insert(n, root);
    }
    (root_of, also)
}

/// Whether the groups, each taken as one node, still form a DAG.
fn acyclic(g: &Graph, order: &[NodeIndex], root_of: &HashMap<NodeIndex, NodeIndex>) -> bool {
    let unit = |n: NodeIndex| *root_of.get(&n).unwrap_or(&n);
    let mut edges: HashMap<NodeIndex, HashSet<NodeIndex>> = HashMap::new();
    let mut indeg: HashMap<NodeIndex, usize> = order.iter().map(|&n| (unit(n), 0)).collect();
    for &n in order {
        for v in g.inputs(n) {
            let (a, b) = (unit(v.node), unit(n));
            if a != b && edges.entry(a).or_default().insert(b) {
                *indeg.get_mut(&b).expect("every unit counted") += 1;
            }
        }
    }
    let mut ready: Vec<NodeIndex> = indeg.iter().filter(|(_, &d)| d == 0).map(|(&u, _)| u).collect();
    let mut seen = 0;
    while let Some(u) = ready.pop() {
        seen += 1;
        for &w in edges.get(&u).into_iter().flatten() {
            let d = indeg.get_mut(&w).expect("every unit counted");
            *d -= 1;
            if *d == 0 {
                ready.push(w);
            }
        }
    }
    seen == indeg.len()
}

/// Whether a layout member (transpose, slice, concat, reshape) of the group of `n`'s readers
/// reads `n`'s value, directly or through other members.
fn moved_after(g: &Graph, n: NodeIndex, root_of: &HashMap<NodeIndex, NodeIndex>) -> bool {
    let mut stack: Vec<NodeIndex> = g.users(Value::of(n)).iter().map(|(u, _)| *u).collect();
    let mut seen = HashSet::new();
    while let Some(m) = stack.pop() {
        if !seen.insert(m) || !root_of.contains_key(&m) {
            continue;
        }
        let op = &g.node(m).op;
        if matches!(op, Op::Transpose { .. } | Op::Slice { .. } | Op::Concat { .. } | Op::Reshape { .. }) {
            return true;
        }
        if root_of.get(&m) != Some(&m) {
            stack.extend(g.users(Value::of(m)).iter().map(|(u, _)| *u));
        }
    }
    false
}

/// Replaces the members `ms` of one group (in topological order, its output `root` last) by
/// one `Elementwise` node of the root's name.
fn merge(g: &mut Graph, root: NodeIndex, ms: &[NodeIndex], also: &HashSet<NodeIndex>) -> Result<Group> {
    debug_assert_eq!(ms.last(), Some(&root));
    let mut steps: Vec<Step> = vec![];
    let mut step_of: HashMap<Value, usize> = HashMap::new();
    let mut inputs: Vec<Value> = vec![];
    let mut consts: Vec<NodeIndex> = vec![];
    for &m in ms {
        let mut args = vec![];
        for v in g.inputs(m) {
            let k = match step_of.get(&v) {
                Some(&k) => k,
                None => {
                    let step = match scalar_step(g, v.node) {
                        Some(s) => {
                            consts.push(v.node);
                            s
                        }
                        None => {
                            inputs.push(v);
                            Step::Input(inputs.len() - 1)
                        }
                    };
                    steps.push(step);
                    step_of.insert(v, steps.len() - 1);
                    steps.len() - 1
                }
            };
            args.push(k);
        }
        steps.push(node_step(g, m, &args).expect("a member is a step"));
        step_of.insert(Value::of(m), steps.len() - 1);
    }
    let name = g.node(root).name.clone();
    let ty = g.ty(Value::of(root)).clone();
    let ops: Vec<String> = ms.iter().map(|&m| g.node(m).op.label()).collect();
    let mut replaced: Vec<String> = ms.iter().map(|&m| g.node(m).name.clone()).collect();
    g.rename(root, format!("{name}.unfused"))?;
    // Members read outside the group too are written as outputs 1...
    let extra: Vec<NodeIndex> = ms.iter().copied().filter(|m| *m != root && also.contains(m)).collect();
    let mut tys = vec![ty];
    tys.extend(extra.iter().map(|&m| g.ty(Value::of(m)).clone()));
    let also_steps = extra.iter().map(|&m| step_of[&Value::of(m)]).collect();
    let program = ElementwiseProgram { steps, also: also_steps, replaced: vec![] };
    let new = g.add_node(name.clone(), Op::Elementwise(program), &inputs, tys)?;
    g.replace_uses(Value::of(root), Value { node: new, output: 0 });
    for (k, &m) in extra.iter().enumerate() {
        g.replace_uses(Value::of(m), Value { node: new, output: k + 1 });
    }
    let also_names: Vec<String> = extra.iter().map(|&m| g.node(m).name.clone()).collect();
    for &m in ms.iter().rev() {
        g.remove_node(m);
    }
    // Constants that only the group read go with it.
    let mut seen = HashSet::new();
    for c in consts {
        let unread = g.g.neighbors_directed(c, Direction::Outgoing).next().is_none();
        if seen.insert(c) && unread && !g.outputs.iter().any(|v| v.node == c) {
            replaced.push(g.node(c).name.clone());
            g.remove_node(c);
        }
    }
    if let Op::Elementwise(p) = &mut g.g[new].op {
        p.replaced = replaced.clone();
    }
    Ok(Group { node: name, replaced, ops, inputs: inputs.len(), also: also_names })
}
