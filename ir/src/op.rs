//! The op list: [`Op`], every operator of the IR, and the one place that dispatches each op's
//! behaviour to its family's file under [`crate::ops`]: its name, type inference, evaluation,
//! dump label and JSON attributes. Every `match` on an op here is exhaustive, so a new op does
//! not compile until each of these is written for it.

use crate::ops::fused::FusedGateUp;
use crate::ops::source::WeightInit;
use crate::ops::unary::UnaryOp;
use crate::ops::{self, binary::BinaryOp, cast, fused, layout, matmul, opaque, source, unary, Attrs};
use crate::shape::check_size;
use crate::tensor::Tensor;
use crate::types::{DType, TensorType};
use std::collections::BTreeMap;

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
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input => source::INPUT,
            Op::Weight(_) => source::WEIGHT,
            Op::Constant(_) => source::CONSTANT,
            Op::MatMul => matmul::NAME,
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Transpose { .. } => layout::TRANSPOSE,
            Op::Reshape { .. } => layout::RESHAPE,
            Op::Split { .. } => layout::SPLIT,
            Op::Slice { .. } => layout::SLICE,
            Op::Concat { .. } => layout::CONCAT,
            Op::Cast { .. } => cast::NAME,
            Op::FusedGateUp(_) => fused::NAME,
            Op::Opaque { .. } => opaque::NAME,
        }
    }

    /// Whether the node holds values rather than computing them (inputs, weights, constants).
    pub fn is_source(&self) -> bool {
        match self {
            Op::Input | Op::Weight(_) | Op::Constant(_) => true,
            Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Opaque { .. } => false,
        }
    }

    /// Whether running this node takes a kernel launch (at least one, for an opaque op): every
    /// op but the sources and `Reshape`, a view of its input.
    pub fn launches_kernel(&self) -> bool {
        match self {
            Op::Input | Op::Weight(_) | Op::Constant(_) | Op::Reshape { .. } => false,
            Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Transpose { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Opaque { .. } => true,
        }
    }

    /// Infers the output types of this op applied to inputs of types `ins`. `declared` are
    /// the types the node declares; they are the answer for sources and opaque ops, and
    /// ignored otherwise. Every output must stay within [`crate::shape::MAX_ELEMENTS`].
    pub fn infer(&self, ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let out = match self {
            Op::Input => source::infer_input(ins, declared)?,
            Op::Weight(init) => source::infer_weight(init, ins, declared)?,
            Op::Constant(v) => source::infer_constant(v, ins, declared)?,
            Op::MatMul => matmul::infer(ins)?,
            Op::Unary(u) => unary::infer(*u, ins)?,
            Op::Binary(b) => ops::binary::infer(*b, ins)?,
            Op::Transpose { perm } => layout::infer_transpose(perm, ins)?,
            Op::Reshape { shape } => layout::infer_reshape(shape, ins)?,
            Op::Split { axis, sizes } => layout::infer_split(*axis, sizes, ins)?,
            Op::Slice { axis, start, end } => layout::infer_slice(*axis, *start, *end, ins)?,
            Op::Concat { axis } => layout::infer_concat(*axis, ins)?,
            Op::Cast { to } => cast::infer(*to, ins)?,
            Op::FusedGateUp(f) => fused::infer(f, ins, declared)?,
            Op::Opaque { .. } => opaque::infer(declared)?,
        };
        for t in &out {
            check_size(t)?;
        }
        Ok(out)
    }

    /// Evaluates the op on the CPU: `ins` are its inputs' values, `outs` its output types and
    /// `shapes` their concrete shapes. Graph inputs are fed by the caller, not evaluated.
    pub fn eval(&self, ins: &[&Tensor], outs: &[TensorType], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
        match self {
            Op::Input => source::eval_input(),
            Op::Weight(_) | Op::Constant(_) => Ok(vec![crate::tensor::held_values(self, &outs[0])]),
            Op::MatMul => matmul::eval(ins, shapes),
            Op::Unary(u) => unary::eval(*u, ins, shapes),
            Op::Binary(b) => ops::binary::eval(*b, ins, shapes),
            Op::Transpose { perm } => layout::eval_transpose(perm, ins),
            Op::Reshape { .. } => layout::eval_reshape(ins, shapes),
            Op::Split { axis, sizes } => layout::eval_split(*axis, sizes, ins),
            Op::Slice { axis, start, end } => layout::eval_slice(*axis, *start, *end, ins),
            Op::Concat { axis } => layout::eval_concat(*axis, ins, shapes),
            Op::Cast { to } => cast::eval(*to, ins, shapes),
            Op::FusedGateUp(f) => fused::eval(f, ins, shapes),
            Op::Opaque { op_type, .. } => opaque::eval(op_type),
        }
    }

    /// The values the op holds for an output of the (known) `shape`, row-major and before
    /// any f16 rounding: a weight's or a constant's; `None` for every op that computes its
    /// values or is fed them.
    pub fn held_values(&self, shape: &[usize]) -> Option<Vec<f32>> {
        match self {
            Op::Weight(init) => Some(source::weight_data(init, shape)),
            Op::Constant(v) => Some(source::constant_data(v)),
            Op::Input
            | Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Opaque { .. } => None,
        }
    }

    /// The op and its attributes, compactly (`Transpose(perm=[1, 0])`, `FusedGateUp(silu,
    /// kn)`), for the dumps.
    pub fn label(&self) -> String {
        match self {
            Op::Input | Op::MatMul | Op::Binary(_) => self.name().into(),
            Op::Weight(init) => source::label_weight(init),
            Op::Constant(v) => source::label_constant(v),
            Op::Unary(u) => unary::label(*u),
            Op::Transpose { perm } => layout::label_transpose(perm),
            Op::Reshape { shape } => layout::label_reshape(shape),
            Op::Split { axis, sizes } => layout::label_split(*axis, sizes),
            Op::Slice { axis, start, end } => layout::label_slice(*axis, *start, *end),
            Op::Concat { axis } => layout::label_concat(*axis),
            Op::Cast { to } => cast::label(*to),
            Op::FusedGateUp(f) => fused::label(f),
            Op::Opaque { op_type, .. } => opaque::label(op_type),
        }
    }

    /// Writes the op's attributes as JSON fields into `m` (the `op` field itself is the
    /// caller's).
    pub fn write_attrs(&self, m: &mut Attrs) {
        match self {
            Op::Input | Op::MatMul | Op::Binary(_) => {}
            Op::Weight(init) => source::write_weight(init, m),
            Op::Constant(v) => source::write_constant(v, m),
            Op::Unary(u) => unary::write_attrs(*u, m),
            Op::Transpose { perm } => layout::write_transpose(perm, m),
            Op::Reshape { shape } => layout::write_reshape(shape, m),
            Op::Split { axis, sizes } => layout::write_split(*axis, sizes, m),
            Op::Slice { axis, start, end } => layout::write_slice(*axis, *start, *end, m),
            Op::Concat { axis } => layout::write_concat(*axis, m),
            Op::Cast { to } => cast::write_attrs(*to, m),
            Op::FusedGateUp(f) => fused::write_attrs(f, m),
            Op::Opaque { op_type, attrs } => opaque::write_attrs(op_type, attrs, m),
        }
    }

    /// Reads the op named `name` from its JSON attribute fields `a` (taken out of it when
    /// read). `None` when no op has this name; an error when the attributes are wrong.
    pub fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
        source::from_json(name, a)
            .or_else(|| matmul::from_json(name, a))
            .or_else(|| unary::from_json(name, a))
            .or_else(|| ops::binary::from_json(name, a))
            .or_else(|| layout::from_json(name, a))
            .or_else(|| cast::from_json(name, a))
            .or_else(|| fused::from_json(name, a))
            .or_else(|| opaque::from_json(name, a))
    }
}
