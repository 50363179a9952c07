//! The [`Graph`] itself: a `petgraph` `StableDiGraph` whose node indices survive rewrites.
//!
//! A node produces one or more output values (only `Split` and `Opaque` produce several).
//! Edges run from producer to consumer and carry which output they read and which input slot
//! of the consumer they fill, so a node's inputs are its incoming edges ordered by slot.

use crate::op::Op;
use crate::types::TensorType;
use crate::Error;
use petgraph::stable_graph::StableDiGraph;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

pub use petgraph::stable_graph::NodeIndex;

/// One node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The node's name in the model; unique in a graph and kept through every pass.
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// The type of each output value.
    pub outputs: Vec<TensorType>,
}

/// An edge: which output of the producer is read into which input slot of the consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Edge {
    /// Output index on the producer.
    pub output: usize,
    /// Input slot on the consumer.
    pub slot: usize,
}

/// A value: one output of one node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value {
    /// Producing node.
    pub node: NodeIndex,
    /// Which of its outputs.
    pub output: usize,
}

impl Value {
    /// The first (often only) output of a node.
    pub fn of(node: NodeIndex) -> Self {
        Value { node, output: 0 }
    }
}

/// A model graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// The nodes and edges.
    pub g: StableDiGraph<Node, Edge>,
    /// The values the graph returns, in order.
    pub outputs: Vec<Value>,
    /// The model's names of the outputs, where they differ from the values' names (an ONNX
    /// output `logits` is the value of node `node_mul_870`); see [`Graph::output_name`].
    output_names: Vec<Option<String>>,
    names: HashMap<String, NodeIndex>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node reading `inputs` (in slot order). Fails if the name is taken or an input
    /// refers to a missing node or output.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        inputs: &[Value],
        outputs: Vec<TensorType>,
    ) -> Result<NodeIndex, Error> {
        let name = name.into();
        if self.names.contains_key(&name) {
            return Err(Error::graph(&name, "a node with this name already exists"));
        }
        if let Some(m) = self.collision(&name, outputs.len(), None) {
            return Err(Error::graph(&name, m));
        }
        for (slot, v) in inputs.iter().enumerate() {
            let Some(p) = self.g.node_weight(v.node) else {
                return Err(Error::graph(&name, format!("input {slot} refers to a removed node")));
            };
            if v.output >= p.outputs.len() {
                return Err(Error::graph(
                    &name,
                    format!("input {slot} reads output {} of '{}', which has {}", v.output, p.name, p.outputs.len()),
                ));
            }
        }
        let idx = self.g.add_node(Node { name: name.clone(), op, outputs });
        for (slot, v) in inputs.iter().enumerate() {
            self.g.add_edge(v.node, idx, Edge { output: v.output, slot });
        }
        self.names.insert(name, idx);
        Ok(idx)
    }

    /// Removes a node and its edges.
    pub fn remove_node(&mut self, n: NodeIndex) -> Option<Node> {
        let node = self.g.remove_node(n)?;
        self.names.remove(&node.name);
        let keep: Vec<bool> = self.outputs.iter().map(|v| v.node != n).collect();
        let mut k = keep.iter();
        self.outputs.retain(|_| *k.next().expect("one flag per output"));
        let mut i = 0;
        self.output_names.retain(|_| {
            i += 1;
            keep.get(i - 1).copied().unwrap_or(true)
        });
        Some(node)
    }

    /// Renames a node; fails if the new name is taken.
    pub fn rename(&mut self, n: NodeIndex, new: impl Into<String>) -> Result<(), Error> {
        let new = new.into();
        if self.names.contains_key(&new) {
            return Err(Error::graph(&new, "a node with this name already exists"));
        }
        if let Some(m) = self.collision(&new, self.g[n].outputs.len(), Some(n)) {
            return Err(Error::graph(&new, m));
        }
        // A graph output of the node keeps its name: the value's old one becomes its own.
        self.output_names.resize(self.outputs.len(), None);
        for i in 0..self.outputs.len() {
            if self.outputs[i].node == n && self.output_names[i].is_none() {
                self.output_names[i] = Some(self.value_name(self.outputs[i]));
            }
        }
        let old = std::mem::replace(&mut self.g[n].name, new.clone());
        self.names.remove(&old);
        self.names.insert(new, n);
        // (And a name that is the value's again is no longer one of its own.)
        for i in 0..self.outputs.len() {
            if self.outputs[i].node == n && self.output_names[i].as_deref() == Some(&self.value_name(self.outputs[i])) {
                self.output_names[i] = None;
            }
        }
        Ok(())
    }

    /// Whether a node named `name` with `outputs` outputs would make a value reference
    /// ambiguous ([`Graph::value_name`]): a node named `s:1` beside a node `s` of two or more
    /// outputs, both written `s:1`. The reason, naming the other node; `None` if the name is
    /// free of that (`this`: the node being renamed, which does not collide with itself).
    pub fn collision(&self, name: &str, outputs: usize, this: Option<NodeIndex>) -> Option<String> {
        if outputs > 1 {
            for k in 0..outputs {
                let r = format!("{name}:{k}");
                if let Some(&other) = self.names.get(&r) {
                    if Some(other) != this {
                        return Some(format!(
                            "output {k} of this node is written '{r}', which is the name of another node; rename one of them"
                        ));
                    }
                }
            }
        }
        let (base, k) = name.rsplit_once(':')?;
        let k: usize = k.parse().ok().filter(|k: &usize| k.to_string() == name[base.len() + 1..])?;
        let &other = self.names.get(base)?;
        (Some(other) != this && k < self.g[other].outputs.len() && self.g[other].outputs.len() > 1)
            .then(|| format!("this name is how output {k} of node '{base}' is written; rename one of them"))
    }

    /// The node with this name.
    pub fn find(&self, name: &str) -> Option<NodeIndex> {
        self.names.get(name).copied()
    }

    /// A node by index. Panics on a removed index (a bug in the caller, never input).
    pub fn node(&self, n: NodeIndex) -> &Node {
        &self.g[n]
    }

    /// The type of a value.
    pub fn ty(&self, v: Value) -> &TensorType {
        &self.g[v.node].outputs[v.output]
    }

    /// The inputs of a node, in slot order.
    pub fn inputs(&self, n: NodeIndex) -> Vec<Value> {
        let mut es: Vec<_> = self
            .g
            .edges_directed(n, Direction::Incoming)
            .map(|e| (e.weight().slot, Value { node: e.source(), output: e.weight().output }))
            .collect();
        es.sort_by_key(|(s, _)| *s);
        es.into_iter().map(|(_, v)| v).collect()
    }

    /// Every (consumer, slot) that reads value `v`.
    pub fn users(&self, v: Value) -> Vec<(NodeIndex, usize)> {
        let mut us: Vec<_> = self
            .g
            .edges_directed(v.node, Direction::Outgoing)
            .filter(|e| e.weight().output == v.output)
            .map(|e| (e.target(), e.weight().slot))
            .collect();
        us.sort();
        us
    }

    /// Appends a graph output, with the name the model gives it (`None`: its value's name).
    pub fn add_output(&mut self, v: Value, name: Option<String>) {
        self.output_names.resize(self.outputs.len(), None);
        self.outputs.push(v);
        self.output_names.push(name.filter(|n| *n != self.value_name(v)));
    }

    /// The name of output `i`: the model's name for it (an ONNX graph output's name), or its
    /// value's name ([`Graph::value_name`]).
    pub fn output_name(&self, i: usize) -> String {
        match self.output_names.get(i).cloned().flatten() {
            Some(n) => n,
            None => self.outputs.get(i).map(|&v| self.value_name(v)).unwrap_or_default(),
        }
    }

    /// Gives output `i` the name `name` (kept as its value's name where it is that).
    pub fn name_output(&mut self, i: usize, name: String) {
        self.output_names.resize(self.outputs.len(), None);
        if let Some(&v) = self.outputs.get(i) {
            self.output_names[i] = Some(name).filter(|n| *n != self.value_name(v));
        }
    }

    /// The index of the output named `name` ([`Graph::output_name`]).
    pub fn find_output(&self, name: &str) -> Option<usize> {
        (0..self.outputs.len()).find(|&i| self.output_name(i) == name)
    }

    /// Whether output `i` has a name of its own (not its value's).
    pub fn output_renamed(&self, i: usize) -> bool {
        self.output_names.get(i).is_some_and(|n| n.is_some())
    }

    /// Whether `v` is one of the graph's outputs.
    pub fn is_output(&self, v: Value) -> bool {
        self.outputs.contains(&v)
    }

    /// Makes every reader of `old` (and the graph's output list) read `new` instead.
    pub fn replace_uses(&mut self, old: Value, new: Value) {
        let edges: Vec<_> = self
            .g
            .edges_directed(old.node, Direction::Outgoing)
            .filter(|e| e.weight().output == old.output)
            .map(|e| (e.id(), e.target(), e.weight().slot))
            .collect();
        for (id, target, slot) in edges {
            self.g.remove_edge(id);
            self.g.add_edge(new.node, target, Edge { output: new.output, slot });
        }
        // A graph output keeps its name: the one it had (its old value's, where it had none
        // of its own) becomes its own where the new value is named otherwise.
        let old_name = self.value_name(old);
        let new_name = self.value_name(new);
        self.output_names.resize(self.outputs.len(), None);
        for (o, name) in self.outputs.iter_mut().zip(&mut self.output_names) {
            if *o == old {
                *o = new;
                let kept = name.take().unwrap_or_else(|| old_name.clone());
                *name = Some(kept).filter(|n| *n != new_name);
            }
        }
    }

    /// Node indices in a topological order (producers first), ties broken by index so the
    /// order is stable. Fails naming a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>, Error> {
        let mut indeg: HashMap<NodeIndex, usize> = HashMap::new();
        for n in self.g.node_indices() {
            indeg.insert(n, self.g.edges_directed(n, Direction::Incoming).count());
        }
        let mut ready: std::collections::BTreeSet<NodeIndex> =
            indeg.iter().filter(|(_, &d)| d == 0).map(|(&n, _)| n).collect();
        let mut order = Vec::with_capacity(indeg.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.g.edges_directed(n, Direction::Outgoing) {
                let d = indeg.get_mut(&e.target()).expect("edge target is a node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != indeg.len() {
            let mut stuck: Vec<_> = indeg.iter().filter(|(_, &d)| d > 0).map(|(&n, _)| n).collect();
            stuck.sort();
            let name = &self.g[stuck[0]].name;
            return Err(Error::graph(name, "the graph has a cycle through this node"));
        }
        Ok(order)
    }

    /// Number of live nodes.
    pub fn len(&self) -> usize {
        self.g.node_count()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.g.node_count() == 0
    }

    /// Names of the graph's inputs, in topological order.
    pub fn input_nodes(&self) -> Vec<NodeIndex> {
        let order = self.topo_order().unwrap_or_else(|_| self.g.node_indices().collect());
        order.into_iter().filter(|&n| matches!(self.g[n].op, Op::Input)).collect()
    }

    /// How the graph refers to a value by name: `node` for output 0 of a single-output node,
    /// `node:k` otherwise.
    pub fn value_name(&self, v: Value) -> String {
        let node = &self.g[v.node];
        if node.outputs.len() == 1 {
            node.name.clone()
        } else {
            format!("{}:{}", node.name, v.output)
        }
    }

    /// Resolves a value reference written as `node` or `node:k`.
    pub fn resolve(&self, reference: &str) -> Option<Value> {
        if let Some(n) = self.find(reference) {
            return Some(Value::of(n));
        }
        let (name, k) = reference.rsplit_once(':')?;
        let n = self.find(name)?;
        let output: usize = k.parse().ok()?;
        (output < self.g[n].outputs.len()).then_some(Value { node: n, output })
    }

    /// Whether running node `n` takes a kernel launch: [`Op::launches_kernel`], except for a
    /// 2-D `Transpose` of a 4-bit weight, which the projections read packed (a view), and a
    /// value its readers read in place ([`Graph::read_in_place`]).
    pub fn launches_kernel(&self, n: NodeIndex) -> bool {
        let node = &self.g[n];
        let quant_view = matches!(&node.op, Op::Transpose { perm } if perm == &[1, 0])
            && self.inputs(n).first().is_some_and(|v| matches!(self.g[v.node].op, Op::QuantWeight(_)));
        node.op.launches_kernel() && !quant_view && self.read_in_place(Value::of(n)).is_none()
    }

    /// The value whose buffer stands for `v` where no kernel computes `v` and its readers read
    /// that value in place: the weight of a transpose the projections read as `[N, K]`
    /// ([`Graph::nk_weight`]), the table of a gather the batched products index
    /// ([`Graph::gathered_rows`]), the value a sum of squares squares as it reads
    /// ([`Graph::squared_in_place`]), or the rows an expand repeats for the gated units that
    /// read each row where it lies ([`Graph::repeated_rows`]).
    pub fn read_in_place(&self, v: Value) -> Option<Value> {
        self.nk_weight(v)
            .or_else(|| self.gathered_rows(v).map(|(table, _)| table))
            .or_else(|| self.squared_in_place(v))
            .or_else(|| self.repeated_rows(v).map(|_| self.inputs(v.node)[0]))
    }

    /// How many times `Expand` value `v` repeats each row of its input where the gated units
    /// reading it read each row where it lies instead of `v` being computed: the input is
    /// `[T, 1, K]`, `v` is `[T, k, K]` (k known), no graph output, and every reader is a
    /// `Reshape` to `[T·k, K]`, no graph output, every reader of which is a `FusedGateUp`
    /// with a matrix per row of x taking it as x (so that its row `p` is the input's row
    /// `p / k`: [`Graph::rows_repeated`]). This is a mixture of experts' x, each token's row
    /// once for each of its experts (`repeat_interleave`): computed, an expand kernel a layer.
    pub fn repeated_rows(&self, v: Value) -> Option<usize> {
        if !matches!(self.g[v.node].op, Op::Expand { .. }) || v.output != 0 || self.is_output(v) {
            return None;
        }
        let (src, out) = (self.ty(*self.inputs(v.node).first()?), self.ty(v));
        let k = out.shape.get(1)?.fixed()? as usize;
        let fits = src.rank() == 3
            && out.rank() == 3
            && src.shape[1] == crate::Dim::Fixed(1)
            && src.shape[0] == out.shape[0]
            && src.shape[2] == out.shape[2];
        let users = self.users(v);
        let rows = users.iter().all(|&(r, _)| {
            let view = Value::of(r);
            let readers = self.users(view);
            matches!(self.g[r].op, Op::Reshape { .. })
                && self.ty(view).rank() == 2
                && self.ty(view).shape[1] == out.shape[2]
                && !self.is_output(view)
                && !readers.is_empty()
                && readers.iter().all(|&(u, slot)| {
                    matches!(self.g[u].op, Op::FusedGateUp(_))
                        && slot == 0
                        && self.inputs(u).get(1).is_some_and(|w| self.ty(*w).rank() == 3)
                })
        });
        (fits && rows && !users.is_empty()).then_some(k)
    }

    /// How many consecutive rows of `x` (a gated unit's x) are one row of the value its buffer
    /// holds: `k` where `x` reshapes an expand read in place ([`Graph::repeated_rows`]), else 1.
    pub fn rows_repeated(&self, x: Value) -> usize {
        match self.g[x.node].op {
            Op::Reshape { .. } => self.inputs(x.node).first().and_then(|&e| self.repeated_rows(e)).unwrap_or(1),
            _ => 1,
        }
    }

    /// The value whose squares a sum or mean reads in place instead of `v` being computed: `v`
    /// is `Pow(x, 2)` (the exponent a constant of one element) or `Mul(x, x)`, of floats, of
    /// x's type, no graph output, `x` no weight (stored in other words), and every reader is a
    /// `ReduceSum` or `ReduceMean`, which squares `x`'s elements as it reads them. A norm's
    /// mean of squares whose tail the attention took (Qwen3's per-head query and key norms)
    /// took a kernel and a buffer for the squares.
    pub fn squared_in_place(&self, v: Value) -> Option<Value> {
        use crate::{BinaryOp, ConstValues, ReduceOp};
        let ins = self.inputs(v.node);
        let x = *ins.first()?;
        let square = match &self.g[v.node].op {
            Op::Binary(BinaryOp::Pow) => matches!(
                &self.g[ins.get(1)?.node].op,
                Op::Constant(ConstValues::Float(c)) if c.len() == 1 && c[0] == 2.0
            ),
            Op::Binary(BinaryOp::Mul) => ins.get(1) == Some(&x),
            _ => false,
        };
        let users = self.users(v);
        let reduced =
            users.iter().all(|&(u, _)| matches!(self.g[u].op, Op::Reduce { op: ReduceOp::Sum | ReduceOp::Mean, .. }));
        let stored_alike = !matches!(self.g[x.node].op, Op::Weight(_) | Op::QuantWeight(_));
        (square
            && reduced
            && stored_alike
            && !users.is_empty()
            && v.output == 0
            && !self.is_output(v)
            && self.ty(v).dtype.is_float()
            && self.ty(v) == self.ty(x))
        .then_some(x)
    }

    /// The table and the indices of a gather that the batched products read in place instead
    /// of the gather being computed: `v` picks whole slabs of a table of rank 3 or more along
    /// its first axis (`Gather` on axis 0, or `GatherND` with no batch dims and index tuples
    /// of one element), is no graph output, and every reader is a `MatMul` that the batched
    /// kernel runs (`v` as its second operand, or as its first beside a second of rank other
    /// than 2) or a `FusedGateUp` taking it as its weights (a matrix per row of x). This is a mixture of experts' expert weights picked per token
    /// (`gate_up_proj[expert_ids]`, Hugging Face's `batched_mm`): computed, the gather copies
    /// every token's expert matrices, more bytes than the product reads.
    pub fn gathered_rows(&self, v: Value) -> Option<(Value, Value)> {
        let ins = self.inputs(v.node);
        let (table, idx) = (*ins.first()?, *ins.get(1)?);
        let rank = self.ty(table).rank();
        let op = &self.g[v.node].op;
        let slabs = if let Op::Gather { axis } = op {
            crate::shape::norm_axis(*axis, rank) == Some(0)
        } else {
            matches!(op, Op::GatherND { batch_dims: 0 })
                && self.ty(idx).rank() >= 2
                && self.ty(idx).shape.last().and_then(|d| d.fixed()) == Some(1)
        };
        if !slabs || rank < 3 || v.output != 0 || self.is_output(v) {
            return None;
        }
        let users = self.users(v);
        let batched = users.iter().all(|&(u, slot)| {
            let operands = self.inputs(u);
            match self.g[u].op {
                Op::MatMul => slot == 1 || operands.get(1).is_some_and(|w| self.ty(*w).rank() != 2),
                // A gated unit's weights, a matrix per row of x.
                Op::FusedGateUp(_) => (slot == 1 || slot == 2) && rank == 3,
                _ => false,
            }
        });
        (!users.is_empty() && batched).then_some((table, idx))
    }

    /// The source a 2-D `Transpose` value `v` reads where the projections read that source in
    /// place as an `[N, K]` weight instead of the transpose being computed: `v` transposes a
    /// 2-D `Weight`, `QuantWeight` or `Constant`, is no graph output, and every reader is a
    /// `MatMul` taking it as its second operand with an x of rank 2 or more.
    pub fn nk_weight(&self, v: Value) -> Option<Value> {
        let Op::Transpose { perm } = &self.g[v.node].op else { return None };
        let w = *self.inputs(v.node).first()?;
        let source = matches!(self.g[w.node].op, Op::Weight(_) | Op::QuantWeight(_) | Op::Constant(_));
        if perm.as_slice() != [1, 0] || !source || self.ty(w).rank() != 2 || self.is_output(v) {
            return None;
        }
        let users = self.users(v);
        let projections = users.iter().all(|&(u, slot)| {
            slot == 1 && matches!(self.g[u].op, Op::MatMul) && self.ty(self.inputs(u)[0]).rank() >= 2
        });
        (!users.is_empty() && projections).then_some(w)
    }

    /// Counts of nodes by kind and the number of kernel launches a run takes.
    pub fn summary(&self) -> GraphSummary {
        let mut s = GraphSummary::default();
        for n in self.g.node_indices() {
            let node = &self.g[n];
            s.nodes += 1;
            if self.launches_kernel(n) {
                s.launches += 1;
            }
            if matches!(node.op, Op::FusedGateUp(_)) {
                s.fused += 1;
            }
            if matches!(node.op, Op::Opaque { .. }) {
                s.opaque += 1;
            }
        }
        s
    }
}

/// Counts that describe a graph at a glance.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct GraphSummary {
    /// Live nodes.
    pub nodes: usize,
    /// Kernel launches one run takes (GPU-executable ops other than views).
    pub launches: usize,
    /// `FusedGateUp` nodes.
    pub fused: usize,
    /// Opaque nodes.
    pub opaque: usize,
}

impl fmt::Display for GraphSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes, {} kernel launches, {} FusedGateUp, {} opaque",
            self.nodes, self.launches, self.fused, self.opaque
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{shape_of, DType, UnaryOp};

    /// A graph output keeps the model's name when its node is renamed (a pass marking a node
    /// `.unfused`) or when another value replaces it (a fusion), and a name of its own stays.
    #[test]
    fn outputs_keep_their_names_through_renames_and_replacements() {
        let mut g = Graph::new();
        let ty = TensorType::new(DType::F32, shape_of(&[2]));
        let x = Value::of(g.add_node("x", Op::Input, &[], vec![ty.clone()]).unwrap());
        let a = g.add_node("a", Op::Unary(UnaryOp::Neg), &[x], vec![ty.clone()]).unwrap();
        let b = g.add_node("b", Op::Unary(UnaryOp::Abs), &[x], vec![ty.clone()]).unwrap();
        g.add_output(Value::of(a), None);
        g.add_output(Value::of(b), Some("logits".into()));
        g.rename(a, "a.unfused").unwrap();
        assert_eq!(g.output_name(0), "a");
        assert_eq!(g.find_output("a"), Some(0));
        let c = g.add_node("c", Op::Unary(UnaryOp::Relu), &[x], vec![ty.clone()]).unwrap();
        g.replace_uses(Value::of(a), Value::of(c));
        assert_eq!(g.outputs[0], Value::of(c));
        assert_eq!(g.output_name(0), "a");
        let d = g.add_node("d", Op::Unary(UnaryOp::Relu), &[x], vec![ty]).unwrap();
        g.replace_uses(Value::of(b), Value::of(d));
        assert_eq!(g.output_name(1), "logits");
        // A value that already bears the output's name leaves it with none of its own.
        let e = g.add_node("e", Op::Unary(UnaryOp::Neg), &[x], vec![g.ty(x).clone()]).unwrap();
        g.rename(e, "a").unwrap();
        g.replace_uses(Value::of(c), Value::of(e));
        assert_eq!(g.output_name(0), "a");
        assert!(!g.output_renamed(0));
        // Renamed away and back: the name is the value's again, not one of its own.
        g.rename(e, "e").unwrap();
        assert!(g.output_renamed(0));
        g.rename(e, "a").unwrap();
        assert_eq!(g.output_name(0), "a");
        assert!(!g.output_renamed(0));
    }
}
