//! `Cast`: conversion to another element type. Values are held as f32 on the host, so a cast
//! to f16 rounds them and a cast to f32 keeps them.

use super::{arity, read_attrs, to_json, Attrs};
use crate::op::Op;
use crate::tensor::{round_f16, Tensor};
use crate::types::{DType, TensorType};
use serde::Deserialize;

/// The name of [`Op::Cast`].
pub const NAME: &str = "Cast";

/// Type of a cast: the input's shape in the target dtype.
pub(crate) fn infer(to: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(NAME, ins, 1)?;
    Ok(vec![TensorType::new(to, ins[0].shape.clone())])
}

/// Evaluates a cast.
pub(crate) fn eval(to: DType, ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let mut data = ins[0].data.clone();
    if to == DType::F16 {
        round_f16(&mut data);
    }
    Ok(vec![Tensor { shape: shapes[0].clone(), data }])
}

/// Dump label: `Cast(f16)`.
pub(crate) fn label(to: DType) -> String {
    format!("{NAME}({to})")
}

/// JSON attributes: `to`.
pub(crate) fn write_attrs(to: DType, m: &mut Attrs) {
    m.insert("to".into(), to_json(&to));
}

/// Reads a `Cast` from its JSON attributes; `None` for another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CastAttrs {
        to: DType,
    }
    (name == NAME).then(|| read_attrs::<CastAttrs>(name, a).map(|c| Op::Cast { to: c.to }))
}
