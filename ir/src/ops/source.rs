//! Sources: graph inputs (fed at run time), weights and constants (values held in the graph).
//! Their type is the one they declare; they take no inputs.

use super::{arity, one_declared, read_attrs, to_json, Attrs};
use crate::op::Op;
use crate::shape::{check_size, fmt_shape};
use crate::tensor::Tensor;
use crate::types::TensorType;
use serde::{Deserialize, Serialize};

/// The name of [`Op::Input`].
pub const INPUT: &str = "Input";
/// The name of [`Op::Weight`].
pub const WEIGHT: &str = "Weight";
/// The name of [`Op::Constant`].
pub const CONSTANT: &str = "Constant";

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

/// Type of an input: the one it declares.
pub(crate) fn infer_input(ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
    arity(INPUT, ins, 0)?;
    Ok(vec![one_declared(INPUT, declared)?])
}

/// Type of a weight: the one it declares, floating-point with known dims, backed by as many
/// values as it holds.
pub(crate) fn infer_weight(
    init: &WeightInit,
    ins: &[&TensorType],
    declared: &[TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(WEIGHT, ins, 0)?;
    let t = one_declared(WEIGHT, declared)?;
    if !t.dtype.is_float() {
        return Err(format!("weights must be f32 or f16, not {}", t.dtype));
    }
    let Some(n) = t.numel() else {
        return Err(format!("weight shape {} must have known dims", fmt_shape(&t.shape)));
    };
    check_size(&t)?;
    if let WeightInit::Data(d) = init {
        if d.len() as u64 != n {
            return Err(format!("inline data has {} values but shape {} holds {n}", d.len(), fmt_shape(&t.shape)));
        }
    }
    if let WeightInit::Random { scale, .. } = init {
        if !scale.is_finite() || *scale < 0.0 {
            return Err(format!("random fill scale {scale} must be finite and non-negative"));
        }
    }
    Ok(vec![t])
}

/// Type of a constant: the one it declares, with known dims and one value per element.
pub(crate) fn infer_constant(
    v: &[f64],
    ins: &[&TensorType],
    declared: &[TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(CONSTANT, ins, 0)?;
    let t = one_declared(CONSTANT, declared)?;
    let Some(n) = t.numel() else {
        return Err("constant shape must have known dims".into());
    };
    if v.len() as u64 != n {
        return Err(format!("constant has {} values but shape {} holds {n}", v.len(), fmt_shape(&t.shape)));
    }
    Ok(vec![t])
}

/// The values a weight holds, row-major, for its (known) shape: shape-only weights hold zeros.
pub fn weight_data(init: &WeightInit, shape: &[usize]) -> Vec<f32> {
    match init {
        WeightInit::None => vec![0.0; shape.iter().product()],
        WeightInit::Data(d) => d.clone(),
        WeightInit::Random { seed, scale } => Tensor::random(shape.to_vec(), *seed, *scale).data,
    }
}

/// The values a constant holds, as f32.
pub fn constant_data(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Evaluating an input: its value is fed by the caller, never computed.
pub(crate) fn eval_input() -> Result<Vec<Tensor>, String> {
    Err("a graph input is fed by the caller, not evaluated (a glufuse bug)".into())
}

/// Dump label of a weight (`Weight`, `Weight(data)`, `Weight(random seed=.. scale=..)`).
pub(crate) fn label_weight(init: &WeightInit) -> String {
    match init {
        WeightInit::None => WEIGHT.into(),
        WeightInit::Data(_) => format!("{WEIGHT}(data)"),
        WeightInit::Random { seed, scale } => format!("{WEIGHT}(random seed={seed} scale={scale})"),
    }
}

/// Dump label of a constant: its values when there are at most four.
pub(crate) fn label_constant(v: &[f64]) -> String {
    if v.len() <= 4 {
        format!("{CONSTANT}({v:?})")
    } else {
        format!("{CONSTANT}({} values)", v.len())
    }
}

/// JSON attributes of a weight: `init`, unless it holds no values.
pub(crate) fn write_weight(init: &WeightInit, m: &mut Attrs) {
    if *init != WeightInit::None {
        m.insert("init".into(), to_json(init));
    }
}

/// JSON attributes of a constant: `value`.
pub(crate) fn write_constant(v: &[f64], m: &mut Attrs) {
    m.insert("value".into(), to_json(&v));
}

/// Reads a source op named `name` from its JSON attributes; `None` if `name` is not one.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WeightAttrs {
        #[serde(default)]
        init: Option<WeightInit>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConstantAttrs {
        value: Vec<f64>,
    }
    Some(match name {
        INPUT => Ok(Op::Input),
        WEIGHT => read_attrs::<WeightAttrs>(name, a).map(|w| Op::Weight(w.init.unwrap_or(WeightInit::None))),
        CONSTANT => read_attrs::<ConstantAttrs>(name, a).map(|c| Op::Constant(c.value)),
        _ => return None,
    })
}
