//! The graph IR: element types, shapes with symbolic dims, operators, and the [`Graph`]
//! itself, a `petgraph` `StableDiGraph` whose node indices survive rewrites.
//!
//! A node produces one or more output values (only `Split` and `Opaque` produce several).
//! Edges run from producer to consumer and carry which output they read and which input slot
//! of the consumer they fill, so a node's inputs are its incoming edges ordered by slot.

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// 64-bit signed integer (shape arithmetic only; not executable on the GPU).
    I64,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::I64 => 8,
        }
    }

    /// Whether the dtype is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I64 => "i64",
        })
    }
}

/// One dimension of a shape: a known size or a named symbol (`batch`, `seq`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A known size.
    Fixed(u64),
    /// A size known only at run time, named.
    Sym(String),
}

impl Dim {
    /// The size, when known.
    pub fn fixed(&self) -> Option<u64> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => s.serialize_u64(*n),
            Dim::Sym(name) => s.serialize_str(name),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            I(i64),
            S(String),
            Other(serde_json::Value),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dim::Fixed(n)),
            Raw::I(i) => Err(serde::de::Error::custom(format!("dimension {i} is negative"))),
            Raw::Other(v) => Err(serde::de::Error::custom(format!(
                "dimension {v} is neither a non-negative integer nor a symbol name"
            ))),
            Raw::S(s) if is_symbol(&s) => Ok(Dim::Sym(s)),
            Raw::S(s) => Err(serde::de::Error::custom(format!(
                "dimension {s:?} is neither a non-negative integer nor a symbol name"
            ))),
        }
    }
}

fn is_symbol(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A shape: a list of dims, outermost first.
pub type Shape = Vec<Dim>;

/// Builds a shape of known sizes.
pub fn shape_of(dims: &[u64]) -> Shape {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// The type of one value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type.
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType { dtype, shape }
    }

    /// Number of elements when every dim is known.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, d| d.fixed().and_then(|n| acc.checked_mul(n)))
    }

    /// Size in bytes when every dim is known.
    pub fn bytes(&self) -> Option<u64> {
        self.numel().and_then(|n| n.checked_mul(self.dtype.size()))
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// How a weight's values are given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum WeightInit {
    /// Shape only: the values are supplied elsewhere (or filled with zeros to run).
    None,
    /// Values given inline, row-major.
    Data(Vec<f32>),
    /// Uniform values in `[-scale, scale)` from a seeded generator (reproducible).
    Random {
        /// Generator seed.
        seed: u64,
        /// Half-width of the uniform range.
        scale: f32,
    },
}

/// Elementwise ops with one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// `√x`
    Sqrt,
    /// The error function.
    Erf,
    /// Hyperbolic tangent.
    Tanh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `max(x, 0)`
    Relu,
    /// `x · sigmoid(x)`
    Silu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// Exact GELU, `x · Φ(x)` through erf.
    GeluErf,
}

/// Elementwise ops with two operands (numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b`
    Div,
    /// `a ^ b`
    Pow,
}

/// The activation applied to the gate projection of a gated linear unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU (SwiGLU).
    Silu,
    /// GELU, tanh approximation (GeGLU as in Gemma).
    GeluTanh,
    /// GELU, exact through erf.
    GeluErf,
    /// ReLU (ReGLU).
    Relu,
}

impl Activation {
    /// Every activation, in a stable order.
    pub const ALL: [Activation; 4] = [Activation::Silu, Activation::GeluTanh, Activation::GeluErf, Activation::Relu];

    /// The unary op computing this activation.
    pub fn unary(self) -> UnaryOp {
        match self {
            Activation::Silu => UnaryOp::Silu,
            Activation::GeluTanh => UnaryOp::GeluTanh,
            Activation::GeluErf => UnaryOp::GeluErf,
            Activation::Relu => UnaryOp::Relu,
        }
    }

    /// Short lowercase name (`silu`, `gelu_tanh`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::GeluErf => "gelu_erf",
            Activation::Relu => "relu",
        }
    }
}

/// How a 2-D weight of a projection `x · W` is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[K, N]`: as ONNX `MatMul` takes it.
    Kn,
    /// `[N, K]`: PyTorch `Linear` layout, used through a transpose.
    Nk,
}

/// The attributes of a fused gated-linear-unit node.
///
/// Inputs, in order: `x [.., H]`, `w_gate`, `w_up`, then `b_gate` if `gate_bias`, then `b_up`
/// if `up_bias`. The output is `act(x·Wg[:, go..go+I] + bg[go..]) * (x·Wu[:, uo..uo+I] +
/// bu[uo..])` with `I` the last dim of the output, `go`/`uo` the column offsets (non-zero
/// only when one merged gate_up weight is read in two halves; `w_gate` and `w_up` are then the
/// same node).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusedGateUp {
    /// Activation on the gate projection.
    pub activation: Activation,
    /// Layout of both weights.
    pub layout: Layout,
    /// Whether a gate bias input is present.
    #[serde(default)]
    pub gate_bias: bool,
    /// Whether an up bias input is present.
    #[serde(default)]
    pub up_bias: bool,
    /// First output feature of the gate half within `w_gate` (and `b_gate`).
    #[serde(default)]
    pub gate_offset: u64,
    /// First output feature of the up half within `w_up` (and `b_up`).
    #[serde(default)]
    pub up_offset: u64,
    /// Names of the model nodes this node replaced.
    #[serde(default)]
    pub replaced: Vec<String>,
}

/// An operator.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input, fed at run time.
    Input,
    /// A weight (initializer).
    Weight(WeightInit),
    /// A small constant tensor, values row-major (integers held exactly up to 2^53).
    Constant(Vec<f64>),
    /// Matrix product with numpy semantics: `[.., M, K] · [K, N]`.
    MatMul,
    /// Elementwise op with one operand.
    Unary(UnaryOp),
    /// Elementwise op with two operands.
    Binary(BinaryOp),
    /// Axis permutation.
    Transpose {
        /// `out.shape[i] = in.shape[perm[i]]`.
        perm: Vec<usize>,
    },
    /// Reinterpret with another shape (ONNX rules: 0 copies the input dim, -1 is inferred).
    Reshape {
        /// Target shape.
        shape: Vec<i64>,
    },
    /// Split one axis into consecutive parts, one output per part.
    Split {
        /// Axis (negative counts from the end).
        axis: i64,
        /// Size of each part.
        sizes: Vec<u64>,
    },
    /// Take `start..end` of one axis.
    Slice {
        /// Axis (negative counts from the end).
        axis: i64,
        /// First index.
        start: u64,
        /// One past the last index.
        end: u64,
    },
    /// Join the inputs along one axis.
    Concat {
        /// Axis (negative counts from the end).
        axis: i64,
    },
    /// Convert to another element type.
    Cast {
        /// Target type.
        to: DType,
    },
    /// `act(x·W_gate) * (x·W_up)` in one kernel.
    FusedGateUp(FusedGateUp),
    /// An operator glufuse does not model: carried through every pass untouched.
    Opaque {
        /// The operator's name in the source model (`Attention`, `RMSNorm`, ...).
        op_type: String,
        /// Its attributes, as given.
        attrs: BTreeMap<String, serde_json::Value>,
    },
}

impl Op {
    /// The operator's name as the JSON format and the dumps spell it.
    pub fn kind(&self) -> &str {
        match self {
            Op::Input => "Input",
            Op::Weight(_) => "Weight",
            Op::Constant(_) => "Constant",
            Op::MatMul => "MatMul",
            Op::Unary(u) => match u {
                UnaryOp::Neg => "Neg",
                UnaryOp::Exp => "Exp",
                UnaryOp::Sqrt => "Sqrt",
                UnaryOp::Erf => "Erf",
                UnaryOp::Tanh => "Tanh",
                UnaryOp::Sigmoid => "Sigmoid",
                UnaryOp::Relu => "Relu",
                UnaryOp::Silu => "Silu",
                UnaryOp::GeluTanh | UnaryOp::GeluErf => "Gelu",
            },
            Op::Binary(b) => match b {
                BinaryOp::Add => "Add",
                BinaryOp::Sub => "Sub",
                BinaryOp::Mul => "Mul",
                BinaryOp::Div => "Div",
                BinaryOp::Pow => "Pow",
            },
            Op::Transpose { .. } => "Transpose",
            Op::Reshape { .. } => "Reshape",
            Op::Split { .. } => "Split",
            Op::Slice { .. } => "Slice",
            Op::Concat { .. } => "Concat",
            Op::Cast { .. } => "Cast",
            Op::FusedGateUp(_) => "FusedGateUp",
            Op::Opaque { .. } => "Opaque",
        }
    }

    /// Whether the node holds values rather than computing them (inputs, weights, constants).
    pub fn is_source(&self) -> bool {
        matches!(self, Op::Input | Op::Weight(_) | Op::Constant(_))
    }

    /// Whether running this node takes a kernel launch (at least one, for an opaque op).
    pub fn launches_kernel(&self) -> bool {
        !matches!(self, Op::Input | Op::Weight(_) | Op::Constant(_) | Op::Reshape { .. })
    }
}

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
    ) -> Result<NodeIndex, crate::Error> {
        let name = name.into();
        if self.names.contains_key(&name) {
            return Err(crate::Error::graph(&name, "a node with this name already exists"));
        }
        for (slot, v) in inputs.iter().enumerate() {
            let Some(p) = self.g.node_weight(v.node) else {
                return Err(crate::Error::graph(&name, format!("input {slot} refers to a removed node")));
            };
            if v.output >= p.outputs.len() {
                return Err(crate::Error::graph(
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
        self.outputs.retain(|v| v.node != n);
        Some(node)
    }

    /// Renames a node; fails if the new name is taken.
    pub fn rename(&mut self, n: NodeIndex, new: impl Into<String>) -> Result<(), crate::Error> {
        let new = new.into();
        if self.names.contains_key(&new) {
            return Err(crate::Error::graph(&new, "a node with this name already exists"));
        }
        let old = std::mem::replace(&mut self.g[n].name, new.clone());
        self.names.remove(&old);
        self.names.insert(new, n);
        Ok(())
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
        for o in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Node indices in a topological order (producers first), ties broken by index so the
    /// order is stable. Fails naming a node on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeIndex>, crate::Error> {
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
            return Err(crate::Error::graph(name, "the graph has a cycle through this node"));
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

    /// Counts of nodes by kind and the number of kernel launches a run takes.
    pub fn summary(&self) -> GraphSummary {
        let mut s = GraphSummary::default();
        for n in self.g.node_indices() {
            let node = &self.g[n];
            s.nodes += 1;
            if node.op.launches_kernel() {
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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
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
