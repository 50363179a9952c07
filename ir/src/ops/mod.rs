//! The ops by family, one file each: its attribute types, type and shape inference,
//! interpreter evaluation, dump label and JSON attributes. [`crate::op::Op`] is the op list
//! and dispatches to these files.
//!
//! - [`source`]: graph inputs, weights, constants, symbolic-dim constants;
//! - [`quant`]: 4-bit quantized weights (a source whose value is the dequantized matrix);
//! - [`unary`]: elementwise ops of one operand, the activations among them;
//! - [`binary`]: elementwise ops of two operands, with numpy broadcasting (arithmetic,
//!   comparisons, logic, max/min), and the ternary `Where`;
//! - [`matmul`]: the matrix product;
//! - [`reduce`]: reductions, softmax, cumulative sums, top-K selection;
//! - [`norm`]: layer normalisation;
//! - [`index`]: gathers, scatters and ranges;
//! - [`fused`]: the fused gated unit `act(x·W_gate) · (x·W_up)`;
//! - [`elementwise`]: programs of several elementwise ops in one node (what the elementwise
//!   fusion makes);
//! - [`attention`]: a softmax attention `softmax(Q·Kᵀ)·V` in one node (what the attention
//!   fusion makes);
//! - [`layout`]: ops that move elements without computing (transpose, reshape, expand,
//!   split, slice, concat);
//! - [`cast`]: element type conversion;
//! - [`opaque`]: ops glufuse does not model.
//!
//! Evaluation computes floats in f32 (f16 values too; only inputs, weights and casts round to
//! f16), accumulates reductions and products in f64, and wraps integer arithmetic at the
//! width of its dtype as ONNX runtimes do.

pub mod attention;
pub mod binary;
pub mod cast;
pub mod elementwise;
pub mod fused;
pub mod index;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod opaque;
pub mod quant;
pub mod reduce;
pub mod source;
pub mod unary;

use crate::shape::norm_axis;
use crate::tensor::{Data, Tensor};
use crate::types::{DType, TensorType};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as J};

/// The JSON fields of one node that describe its op's attributes (all but `name`, `op`,
/// `inputs`, `type` and `outputs`).
pub type Attrs = Map<String, J>;

/// Checks that an op named `name` has `n` inputs.
pub(crate) fn arity(name: &str, ins: &[&TensorType], n: usize) -> Result<(), String> {
    if ins.len() == n {
        Ok(())
    } else {
        Err(format!("{name} takes {n} input(s), got {}", ins.len()))
    }
}

/// Checks that an input of the op named `name` is floating-point.
pub(crate) fn float(name: &str, t: &TensorType) -> Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("{name} needs floating-point inputs, got {}", t.dtype))
    }
}

/// The one output type a node of the op named `name` declares.
pub(crate) fn one_declared(name: &str, declared: &[TensorType]) -> Result<TensorType, String> {
    match declared {
        [t] => Ok(t.clone()),
        _ => Err(format!("{name} declares {} output types, expected 1", declared.len())),
    }
}

/// Reads the attributes of the op named `name` as `T`, taking them out of `a`.
pub(crate) fn read_attrs<T: DeserializeOwned>(name: &str, a: &mut Attrs) -> Result<T, String> {
    serde_json::from_value(J::Object(std::mem::take(a))).map_err(|e| format!("bad attributes for {name}: {e}"))
}

/// Serialises a value made of plain data (attributes) into JSON.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> J {
    serde_json::to_value(v).expect("attributes are plain data")
}

/// Checks that an input of the op named `name` is an integer tensor.
pub(crate) fn int(name: &str, what: &str, t: &TensorType) -> Result<(), String> {
    if t.dtype.is_int() {
        Ok(())
    } else {
        Err(format!("{name} needs integer {what}, got {}", t.dtype))
    }
}

/// An axis of a tensor of rank `r`, normalised, or the error naming it.
pub(crate) fn axis_of(axis: i64, r: usize) -> Result<usize, String> {
    norm_axis(axis, r).ok_or_else(|| format!("axis {axis} out of range for rank {r}"))
}

/// An output tensor of type `ty`'s dtype (the representation must hold it: a bug otherwise).
pub(crate) fn out(ty: &TensorType, shape: &[usize], data: Data) -> Tensor {
    debug_assert!(data.holds(ty.dtype), "{:?} cannot hold {}", data, ty.dtype);
    debug_assert_eq!(shape.iter().product::<usize>(), data.len());
    Tensor { shape: shape.to_vec(), dtype: ty.dtype, data }
}

/// An integer result wrapped to the width of `dtype` (i32 values wrap as an i32 would).
pub(crate) fn wrap(dtype: DType, v: i64) -> i64 {
    match dtype {
        DType::I32 => v as i32 as i64,
        DType::I64 | DType::F32 | DType::F16 | DType::Bool => v,
    }
}
