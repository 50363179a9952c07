//! `Opaque`: an op glufuse does not model (attention, norms, ...), carried through every pass
//! untouched with the output types the model declares. It cannot be evaluated or run.

use super::{read_attrs, Attrs};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use serde::Deserialize;
use serde_json::{json, Value as J};
use std::collections::BTreeMap;

/// The name of [`Op::Opaque`].
pub const NAME: &str = "Opaque";

/// Types of an opaque op: the ones it declares (at least one).
pub(crate) fn infer(declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
    if declared.is_empty() {
        return Err("an opaque op must declare its output types".into());
    }
    Ok(declared.to_vec())
}

/// An opaque op cannot be evaluated.
pub(crate) fn eval(op_type: &str) -> Result<Vec<Tensor>, String> {
    Err(format!("opaque op '{op_type}' cannot be executed"))
}

/// Dump label: `Opaque(RMSNorm)`.
pub(crate) fn label(op_type: &str) -> String {
    format!("{NAME}({op_type})")
}

/// JSON attributes: `op_type`, and `attrs` when there are any.
pub(crate) fn write_attrs(op_type: &str, attrs: &BTreeMap<String, J>, m: &mut Attrs) {
    m.insert("op_type".into(), json!(op_type));
    if !attrs.is_empty() {
        m.insert("attrs".into(), json!(attrs));
    }
}

/// Reads an `Opaque` from its JSON attributes; `None` for another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct OpaqueAttrs {
        op_type: String,
        #[serde(default)]
        attrs: BTreeMap<String, J>,
    }
    (name == NAME)
        .then(|| read_attrs::<OpaqueAttrs>(name, a).map(|o| Op::Opaque { op_type: o.op_type, attrs: o.attrs }))
}
