//! The ops by family, one file each: its attribute types, type and shape inference,
//! interpreter evaluation, dump label and JSON attributes. [`crate::op::Op`] is the op list
//! and dispatches to these files.
//!
//! - [`source`]: graph inputs, weights, constants;
//! - [`unary`]: elementwise ops of one operand, the activations among them;
//! - [`binary`]: elementwise ops of two operands, with numpy broadcasting;
//! - [`matmul`]: the matrix product;
//! - [`fused`]: the fused gated unit `act(x·W_gate) · (x·W_up)`;
//! - [`layout`]: ops that move elements without computing (transpose, reshape, split, slice,
//!   concat);
//! - [`cast`]: element type conversion;
//! - [`opaque`]: ops glufuse does not model.

pub mod binary;
pub mod cast;
pub mod fused;
pub mod layout;
pub mod matmul;
pub mod opaque;
pub mod source;
pub mod unary;

use crate::types::TensorType;
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
