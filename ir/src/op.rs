//! The op list: [`Op`], every operator of the IR, and the one place that dispatches each op's
//! behaviour to its family's file under [`crate::ops`]: its name, type inference, evaluation,
//! dump label and JSON attributes. Every `match` on an op here is exhaustive, so a new op does
//! not compile until each of these is written for it.

use crate::dim::DimExpr;
use crate::ops::attention::Attention;
use crate::ops::elementwise::ElementwiseProgram;
use crate::ops::fused::FusedGateUp;
use crate::ops::quant::QuantWeight;
use crate::ops::reduce::ReduceOp;
use crate::ops::source::{ConstValues, WeightInit};
use crate::ops::unary::UnaryOp;
use crate::ops::Attrs;
use crate::ops::{
    self, attention, binary::BinaryOp, cast, elementwise, fused, index, layout, matmul, norm, opaque, quant, reduce,
    source, unary,
};
use crate::shape::{check_size, Bindings};
use crate::tensor::{Data, Tensor};
use crate::types::{DType, Dim, TensorType};
use std::collections::BTreeMap;

/// An operator.
///
/// Families (one file each under [`crate::ops`]): sources (`Input`, `Weight`, `Constant`,
/// `SymConstant`; `QuantWeight` in a file of its own); elementwise `Unary`, `Binary` and `Where`; `MatMul`; reductions (`Reduce`,
/// `Softmax`, `CumSum`, `TopK`); `LayerNorm`; indexing (`Gather`, `GatherND`, `ScatterND`,
/// `ScatterElements`, `Range`); layout
/// (`Transpose`, `Reshape`, `Expand`, `Split`, `Slice`, `Concat`); `Cast`; `FusedGateUp`;
/// `Elementwise` programs; `Attention`; `Opaque`.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input, fed at run time.
    Input,
    /// A weight (initializer): floating-point values.
    Weight(WeightInit),
    /// A 4-bit quantized weight: blocks of packed integers with scales (and zero points),
    /// whose value is the dequantized 2-D matrix ([`crate::ops::quant`]).
    QuantWeight(QuantWeight),
    /// A small constant tensor of any dtype, values row-major.
    Constant(ConstValues),
    /// An integer tensor (i64 or i32) whose values are dim expressions (`past + new`),
    /// evaluated under the run's binding of the symbols: what `Shape` of a symbolic value
    /// gives, where a run needs it as data.
    SymConstant(Vec<DimExpr>),
    /// Matrix product with numpy semantics: `[.., M, K] · [.., K, N]`.
    MatMul,
    /// Elementwise op with one operand.
    Unary(UnaryOp),
    /// Elementwise op with two operands (numpy broadcasting): arithmetic, comparisons (to
    /// bool), logic (on bool).
    Binary(BinaryOp),
    /// `cond ? x : y` elementwise, the three broadcast together; inputs `cond` (bool), `x`,
    /// `y`.
    Where,
    /// A reduction over `axes` (every axis when empty).
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// Axes (negative count from the end); empty reduces every axis.
        axes: Vec<i64>,
        /// Whether reduced axes stay, with size 1.
        keepdims: bool,
    },
    /// Softmax along one axis (numerically stable: the maximum is subtracted first).
    Softmax {
        /// Axis (negative counts from the end).
        axis: i64,
    },
    /// Running sum along one axis.
    CumSum {
        /// Axis (negative counts from the end).
        axis: i64,
        /// Each output excludes its own element.
        exclusive: bool,
        /// Sums from the end of the axis.
        reverse: bool,
    },
    /// The `k` largest (or smallest) elements of every lane along one axis, in order, and
    /// their indices along it (int64): ties by index, NaN above every number (first among
    /// the largest, last among the smallest), as onnxruntime orders them. Outputs `values`,
    /// `indices`, the input's shape with `k` along the axis.
    TopK {
        /// Axis (negative counts from the end).
        axis: i64,
        /// How many elements each lane gives (1 to the axis's size).
        k: usize,
        /// The largest first (else the smallest first).
        largest: bool,
    },
    /// Layer normalisation over the axes from `axis` on: `(x - mean) / sqrt(var + eps)`,
    /// times `scale` and plus `bias` when present. Inputs: `x`, then `scale` if `scale`, then
    /// `bias` if `bias`.
    LayerNorm {
        /// First normalised axis (negative counts from the end).
        axis: i64,
        /// Added to the variance.
        epsilon: f32,
        /// Whether a scale input is present.
        scale: bool,
        /// Whether a bias input is present.
        bias: bool,
    },
    /// `data` indexed along `axis` by an integer tensor (negative indices count from the end;
    /// an index out of range is an error). Inputs `data`, `indices`.
    Gather {
        /// Axis of `data` (negative counts from the end).
        axis: i64,
    },
    /// ONNX `GatherND`: slices of `data` picked by the index tuples in the last dim of
    /// `indices`. Inputs `data`, `indices`.
    GatherND {
        /// Leading dims shared by `data` and `indices`.
        batch_dims: u64,
    },
    /// ONNX `ScatterND` (reduction `none`): a copy of `data` whose slices picked by the index
    /// tuples in the last dim of `indices` are replaced by `updates` (an index out of range,
    /// or two tuples naming one slice, is an error). Inputs `data`, `indices`, `updates`.
    ScatterND,
    /// ONNX `ScatterElements` (reduction `none`): a copy of `data` with each element of
    /// `updates` written where its coordinates, that along `axis` replaced by the index at
    /// the same coordinates, point (an index out of range, or two naming one element, is an
    /// error). Inputs `data`, `indices`, `updates` (of the indices' shape).
    ScatterElements {
        /// Axis of `data` the indices index (negative counts from the end).
        axis: i64,
    },
    /// `start, start + delta, ..` up to `limit` (excluded): an integer tensor whose length is
    /// a dim expression.
    Range {
        /// First value.
        start: DimExpr,
        /// Bound, excluded.
        limit: DimExpr,
        /// Step (not zero).
        delta: i64,
        /// Element type (i64 or i32).
        dtype: DType,
    },
    /// Axis permutation.
    Transpose {
        /// `out.shape[i] = in.shape[perm[i]]`.
        perm: Vec<usize>,
    },
    /// Reinterpret with another shape (a view). ONNX rules: an entry `0` copies the input
    /// dim, `-1` is inferred; other entries are sizes or dim expressions.
    Reshape {
        /// Target shape.
        shape: Vec<DimExpr>,
    },
    /// Broadcast to a shape (numpy rules between the input's shape and `shape`).
    Expand {
        /// The shape broadcast to.
        shape: Vec<Dim>,
    },
    /// Split one axis into consecutive parts, one output per part.
    Split {
        /// Axis (negative counts from the end).
        axis: i64,
        /// Size of each part.
        sizes: Vec<Dim>,
    },
    /// Take `len` elements of one axis, from `start` in steps of `step`: output element `i`
    /// reads input index `start + i * step` (a negative step walks backwards).
    Slice {
        /// Axis (negative counts from the end).
        axis: i64,
        /// First index read.
        start: Dim,
        /// Elements taken.
        len: Dim,
        /// Distance between the indices read (not zero).
        step: i64,
    },
    /// Join the inputs along one axis.
    Concat {
        /// Axis (negative counts from the end).
        axis: i64,
    },
    /// Convert to another element type (ONNX rules: float to integer truncates toward zero,
    /// anything to bool is `!= 0`).
    Cast {
        /// Target type.
        to: DType,
    },
    /// `act(x·W_gate) * (x·W_up)` in one kernel.
    FusedGateUp(FusedGateUp),
    /// A program of elementwise ops (unary, binary, `Where`, casts, expands, scalar
    /// constants), moves (transposes, slices, concats, reshapes) and row reductions, in one
    /// kernel: what the elementwise fusion merges chains into.
    Elementwise(ElementwiseProgram),
    /// `P·V` with `P` a row program (a softmax and its scale, mask or cap) of the scores
    /// `Q·Kᵀ`, Q, Kᵀ and V read through programs of their own: one kernel per attention.
    Attention(Attention),
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
            Op::QuantWeight(_) => quant::NAME,
            Op::Constant(_) => source::CONSTANT,
            Op::SymConstant(_) => source::SYM_CONSTANT,
            Op::MatMul => matmul::NAME,
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Where => ops::binary::WHERE,
            Op::Reduce { op, .. } => op.name(),
            Op::Softmax { .. } => reduce::SOFTMAX,
            Op::CumSum { .. } => reduce::CUMSUM,
            Op::TopK { .. } => reduce::TOPK,
            Op::LayerNorm { .. } => norm::NAME,
            Op::Gather { .. } => index::GATHER,
            Op::GatherND { .. } => index::GATHER_ND,
            Op::ScatterND => index::SCATTER_ND,
            Op::ScatterElements { .. } => index::SCATTER_ELEMENTS,
            Op::Range { .. } => index::RANGE,
            Op::Transpose { .. } => layout::TRANSPOSE,
            Op::Reshape { .. } => layout::RESHAPE,
            Op::Expand { .. } => layout::EXPAND,
            Op::Split { .. } => layout::SPLIT,
            Op::Slice { .. } => layout::SLICE,
            Op::Concat { .. } => layout::CONCAT,
            Op::Cast { .. } => cast::NAME,
            Op::FusedGateUp(_) => fused::NAME,
            Op::Elementwise(_) => elementwise::NAME,
            Op::Attention(_) => attention::NAME,
            Op::Opaque { .. } => opaque::NAME,
        }
    }

    /// Whether the node holds values rather than computing them from inputs (inputs,
    /// weights, constants, symbolic constants).
    pub fn is_source(&self) -> bool {
        match self {
            Op::Input | Op::Weight(_) | Op::QuantWeight(_) | Op::Constant(_) | Op::SymConstant(_) => true,
            Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
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
            | Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Expand { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Elementwise(_)
            | Op::Attention(_)
            | Op::Opaque { .. } => false,
        }
    }

    /// Whether running this node takes a kernel launch (at least one, for an opaque op): every
    /// op but the sources and `Reshape`, a view of its input.
    pub fn launches_kernel(&self) -> bool {
        match self {
            Op::Input
            | Op::Weight(_)
            | Op::QuantWeight(_)
            | Op::Constant(_)
            | Op::SymConstant(_)
            | Op::Reshape { .. } => false,
            Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
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
            | Op::Transpose { .. }
            | Op::Expand { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Elementwise(_)
            | Op::Attention(_)
            | Op::Opaque { .. } => true,
        }
    }

    /// Infers the output types of this op applied to inputs of types `ins`. `declared` are
    /// the types the node declares; they are the answer for sources and opaque ops, and
    /// ignored otherwise. Every output must stay within the budget ([`crate::limits`]).
    pub fn infer(&self, ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
        let out = match self {
            Op::Input => source::infer_input(ins, declared)?,
            Op::Weight(init) => source::infer_weight(init, ins, declared)?,
            Op::QuantWeight(q) => quant::infer(q, ins, declared)?,
            Op::Constant(v) => source::infer_constant(v, ins, declared)?,
            Op::SymConstant(v) => source::infer_sym_constant(v, ins, declared)?,
            Op::MatMul => matmul::infer(ins)?,
            Op::Unary(u) => unary::infer(*u, ins)?,
            Op::Binary(b) => ops::binary::infer(*b, ins)?,
            Op::Where => ops::binary::infer_where(ins)?,
            Op::Reduce { op, axes, keepdims } => reduce::infer_reduce(*op, axes, *keepdims, ins)?,
            Op::Softmax { axis } => reduce::infer_softmax(*axis, ins)?,
            Op::CumSum { axis, .. } => reduce::infer_cumsum(*axis, ins)?,
            Op::TopK { axis, k, .. } => reduce::infer_top_k(*axis, *k, ins)?,
            Op::LayerNorm { axis, epsilon, scale, bias } => norm::infer(*axis, *epsilon, *scale, *bias, ins)?,
            Op::Gather { axis } => index::infer_gather(*axis, ins)?,
            Op::GatherND { batch_dims } => index::infer_gather_nd(*batch_dims, ins)?,
            Op::ScatterND => index::infer_scatter_nd(ins)?,
            Op::ScatterElements { axis } => index::infer_scatter_elements(*axis, ins)?,
            Op::Range { start, limit, delta, dtype } => index::infer_range(start, limit, *delta, *dtype, ins)?,
            Op::Transpose { perm } => layout::infer_transpose(perm, ins)?,
            Op::Reshape { shape } => layout::infer_reshape(shape, ins)?,
            Op::Expand { shape } => layout::infer_expand(shape, ins)?,
            Op::Split { axis, sizes } => layout::infer_split(*axis, sizes, ins)?,
            Op::Slice { axis, start, len, step } => layout::infer_slice(*axis, start, len, *step, ins)?,
            Op::Concat { axis } => layout::infer_concat(*axis, ins)?,
            Op::Cast { to } => cast::infer(*to, ins)?,
            Op::FusedGateUp(f) => fused::infer(f, ins, declared)?,
            Op::Elementwise(p) => elementwise::infer(p, ins)?,
            Op::Attention(a) => attention::infer(a, ins)?,
            Op::Opaque { .. } => opaque::infer(declared)?,
        };
        for t in &out {
            check_size(t)?;
        }
        Ok(out)
    }

    /// Evaluates the op on the CPU: `ins` are its inputs' values, `outs` its output types,
    /// `shapes` their concrete shapes and `b` the run's binding of the symbols. Graph inputs
    /// are fed by the caller, not evaluated.
    pub fn eval(
        &self,
        ins: &[&Tensor],
        outs: &[TensorType],
        shapes: &[Vec<usize>],
        b: &Bindings,
    ) -> Result<Vec<Tensor>, String> {
        match self {
            Op::Input => source::eval_input(),
            Op::Weight(_) | Op::QuantWeight(_) | Op::Constant(_) => {
                Ok(vec![crate::tensor::held_values(self, &outs[0])])
            }
            Op::SymConstant(v) => source::eval_sym_constant(v, &outs[0], &shapes[0], b),
            Op::MatMul => matmul::eval(ins, &outs[0], shapes),
            Op::Unary(u) => unary::eval(*u, ins, &outs[0], shapes),
            Op::Binary(op) => ops::binary::eval(*op, ins, &outs[0], shapes),
            Op::Where => ops::binary::eval_where(ins, &outs[0], shapes),
            Op::Reduce { op, axes, keepdims } => reduce::eval_reduce(*op, axes, *keepdims, ins, &outs[0], shapes),
            Op::Softmax { axis } => reduce::eval_softmax(*axis, ins, &outs[0]),
            Op::CumSum { axis, exclusive, reverse } => reduce::eval_cumsum(*axis, *exclusive, *reverse, ins, &outs[0]),
            Op::TopK { axis, k, largest } => reduce::eval_top_k(*axis, *k, *largest, ins, outs),
            Op::LayerNorm { axis, epsilon, scale, bias } => norm::eval(*axis, *epsilon, *scale, *bias, ins, &outs[0]),
            Op::Gather { axis } => index::eval_gather(*axis, ins, &outs[0], shapes),
            Op::GatherND { batch_dims } => index::eval_gather_nd(*batch_dims, ins, &outs[0], shapes),
            Op::ScatterND => index::eval_scatter_nd(ins, &outs[0], shapes),
            Op::ScatterElements { axis } => index::eval_scatter_elements(*axis, ins, &outs[0], shapes),
            Op::Range { start, delta, .. } => index::eval_range(start, *delta, &outs[0], shapes, b),
            Op::Transpose { perm } => layout::eval_transpose(perm, ins),
            Op::Reshape { .. } => layout::eval_reshape(ins, shapes),
            Op::Expand { .. } => layout::eval_expand(ins, shapes),
            Op::Split { axis, .. } => layout::eval_split(*axis, ins, shapes),
            Op::Slice { axis, start, step, .. } => layout::eval_slice(*axis, start, *step, ins, shapes, b),
            Op::Concat { axis } => layout::eval_concat(*axis, ins, shapes),
            Op::Cast { to } => cast::eval(*to, ins),
            Op::FusedGateUp(f) => fused::eval(f, ins, &outs[0], shapes),
            Op::Elementwise(p) => elementwise::eval(p, ins, shapes, b),
            Op::Attention(a) => attention::eval(a, ins, b),
            Op::Opaque { op_type, .. } => opaque::eval(op_type),
        }
    }

    /// The values the op holds for an output of `dtype` and the (known) `shape`, row-major
    /// and before any f16 rounding: a weight's or a constant's; `None` for every op that
    /// computes its values, is fed them, or (`SymConstant`) holds them only under a binding.
    pub fn held_values(&self, dtype: DType, shape: &[usize]) -> Option<Data> {
        match self {
            Op::Weight(init) => Some(Data::F32(source::weight_data(init, shape))),
            Op::QuantWeight(q) => Some(Data::F32(quant::values(q, shape))),
            Op::Constant(v) => Some(source::constant_data(v, dtype)),
            Op::Input
            | Op::SymConstant(_)
            | Op::MatMul
            | Op::Unary(_)
            | Op::Binary(_)
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
            | Op::Transpose { .. }
            | Op::Reshape { .. }
            | Op::Expand { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Cast { .. }
            | Op::FusedGateUp(_)
            | Op::Elementwise(_)
            | Op::Attention(_)
            | Op::Opaque { .. } => None,
        }
    }

    /// The op and its attributes, compactly (`Transpose(perm=[1, 0])`, `FusedGateUp(silu,
    /// kn)`), for the dumps.
    pub fn label(&self) -> String {
        match self {
            Op::Input | Op::MatMul | Op::Binary(_) | Op::Where => self.name().into(),
            Op::Weight(init) => source::label_weight(init),
            Op::QuantWeight(q) => quant::label(q),
            Op::Constant(v) => source::label_constant(v),
            Op::SymConstant(v) => source::label_sym_constant(v),
            Op::Unary(u) => unary::label(*u),
            Op::Reduce { op, axes, keepdims } => reduce::label_reduce(*op, axes, *keepdims),
            Op::Softmax { axis } => reduce::label_softmax(*axis),
            Op::CumSum { axis, exclusive, reverse } => reduce::label_cumsum(*axis, *exclusive, *reverse),
            Op::TopK { axis, k, largest } => reduce::label_top_k(*axis, *k, *largest),
            Op::LayerNorm { axis, epsilon, scale, bias } => norm::label(*axis, *epsilon, *scale, *bias),
            Op::Gather { axis } => index::label_gather(*axis),
            Op::GatherND { batch_dims } => index::label_gather_nd(*batch_dims),
            Op::ScatterND => self.name().into(),
            Op::ScatterElements { axis } => index::label_scatter_elements(*axis),
            Op::Range { start, limit, delta, dtype } => index::label_range(start, limit, *delta, *dtype),
            Op::Transpose { perm } => layout::label_transpose(perm),
            Op::Reshape { shape } => layout::label_reshape(shape),
            Op::Expand { shape } => layout::label_expand(shape),
            Op::Split { axis, sizes } => layout::label_split(*axis, sizes),
            Op::Slice { axis, start, len, step } => layout::label_slice(*axis, start, len, *step),
            Op::Concat { axis } => layout::label_concat(*axis),
            Op::Cast { to } => cast::label(*to),
            Op::FusedGateUp(f) => fused::label(f),
            Op::Elementwise(p) => elementwise::label(p),
            Op::Attention(a) => attention::label(a),
            Op::Opaque { op_type, .. } => opaque::label(op_type),
        }
    }

    /// Writes the op's attributes as JSON fields into `m` (the `op` field itself is the
    /// caller's).
    pub fn write_attrs(&self, m: &mut Attrs) {
        match self {
            Op::Input | Op::MatMul | Op::Binary(_) | Op::Where => {}
            Op::Weight(init) => source::write_weight(init, m),
            Op::QuantWeight(q) => quant::write_attrs(q, m),
            Op::Constant(v) => source::write_constant(v, m),
            Op::SymConstant(v) => source::write_sym_constant(v, m),
            Op::Unary(u) => unary::write_attrs(*u, m),
            Op::Reduce { axes, keepdims, .. } => reduce::write_reduce(axes, *keepdims, m),
            Op::Softmax { axis } => reduce::write_softmax(*axis, m),
            Op::CumSum { axis, exclusive, reverse } => reduce::write_cumsum(*axis, *exclusive, *reverse, m),
            Op::TopK { axis, k, largest } => reduce::write_top_k(*axis, *k, *largest, m),
            Op::LayerNorm { axis, epsilon, scale, bias } => norm::write_attrs(*axis, *epsilon, *scale, *bias, m),
            Op::Gather { axis } => index::write_gather(*axis, m),
            Op::GatherND { batch_dims } => index::write_gather_nd(*batch_dims, m),
            Op::ScatterND => {}
            Op::ScatterElements { axis } => index::write_scatter_elements(*axis, m),
            Op::Range { start, limit, delta, dtype } => index::write_range(start, limit, *delta, *dtype, m),
            Op::Transpose { perm } => layout::write_transpose(perm, m),
            Op::Reshape { shape } => layout::write_reshape(shape, m),
            Op::Expand { shape } => layout::write_expand(shape, m),
            Op::Split { axis, sizes } => layout::write_split(*axis, sizes, m),
            Op::Slice { axis, start, len, step } => layout::write_slice(*axis, start, len, *step, m),
            Op::Concat { axis } => layout::write_concat(*axis, m),
            Op::Cast { to } => cast::write_attrs(*to, m),
            Op::FusedGateUp(f) => fused::write_attrs(f, m),
            Op::Elementwise(p) => elementwise::write_attrs(p, m),
            Op::Attention(a) => attention::write_attrs(a, m),
            Op::Opaque { op_type, attrs } => opaque::write_attrs(op_type, attrs, m),
        }
    }

    /// Reads the op named `name` from its JSON attribute fields `a` (taken out of it when
    /// read); `declared` are the output types the node declares (a constant's values are read
    /// in its declared dtype). `None` when no op has this name; an error when the attributes
    /// are wrong.
    pub fn from_json(name: &str, a: &mut Attrs, declared: &[TensorType]) -> Option<Result<Op, String>> {
        source::from_json(name, a, declared)
            .or_else(|| quant::from_json(name, a))
            .or_else(|| matmul::from_json(name, a))
            .or_else(|| unary::from_json(name, a))
            .or_else(|| ops::binary::from_json(name, a))
            .or_else(|| reduce::from_json(name, a))
            .or_else(|| norm::from_json(name, a))
            .or_else(|| index::from_json(name, a))
            .or_else(|| layout::from_json(name, a))
            .or_else(|| cast::from_json(name, a))
            .or_else(|| fused::from_json(name, a))
            .or_else(|| elementwise::from_json(name, a))
            .or_else(|| attention::from_json(name, a))
            .or_else(|| opaque::from_json(name, a))
    }
}
