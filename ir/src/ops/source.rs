//! Sources: graph inputs (fed at run time), weights and constants (values held in the graph),
//! and symbolic constants (integers whose values are dim expressions, evaluated under the
//! run's binding). Their type is the one they declare; they take no inputs.

use super::{arity, one_declared, out, read_attrs, to_json, Attrs};
use crate::dim::DimExpr;
use crate::op::Op;
use crate::shape::{check_size, fmt_shape, Bindings};
use crate::tensor::{Data, Tensor};
use crate::types::{DType, TensorType};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

/// The name of [`Op::Input`].
pub const INPUT: &str = "Input";
/// The name of [`Op::Weight`].
pub const WEIGHT: &str = "Weight";
/// The name of [`Op::Constant`].
pub const CONSTANT: &str = "Constant";
/// The name of [`Op::SymConstant`].
pub const SYM_CONSTANT: &str = "SymConstant";

/// The values of a constant, row-major, in the representation of its dtype: floats as
/// written (f64, rounded to the dtype when read), integers exactly, booleans.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstValues {
    /// Values of an f32 or f16 constant.
    Float(Vec<f64>),
    /// Values of an i64 or i32 constant.
    Int(Vec<i64>),
    /// Values of a bool constant.
    Bool(Vec<bool>),
}

impl ConstValues {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            ConstValues::Float(v) => v.len(),
            ConstValues::Int(v) => v.len(),
            ConstValues::Bool(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as f64 (booleans as 0 and 1).
    pub fn get_f64(&self, i: usize) -> Option<f64> {
        match self {
            ConstValues::Float(v) => v.get(i).copied(),
            ConstValues::Int(v) => v.get(i).map(|&x| x as f64),
            ConstValues::Bool(v) => v.get(i).map(|&x| x as u8 as f64),
        }
    }

    /// Whether these values can be a constant of `dtype`.
    pub fn holds(&self, dtype: DType) -> bool {
        match self {
            ConstValues::Float(_) => dtype.is_float(),
            ConstValues::Int(_) => dtype.is_int(),
            ConstValues::Bool(_) => dtype == DType::Bool,
        }
    }
}

/// How a weight's values are given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum WeightInit {
    /// Shape only: the values are supplied elsewhere (or filled with zeros to run).
    None,
    /// Values given inline, row-major. In JSON, numbers; the non-finite values, which JSON
    /// has no numbers for, as the strings `"inf"`, `"-inf"` and `"nan"`; a number past the
    /// range of f32 is an error, never infinity.
    Data(#[serde(with = "float_list")] Vec<f32>),
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
    check_size(&t)?;
    let Some(n) = t.numel() else {
        return Err(format!("weight shape {} must have known dims", fmt_shape(&t.shape)));
    };
    if let WeightInit::Data(d) = init {
        if d.len() as u64 != n {
            return Err(format!("inline data has {} values but shape {} holds {n}", d.len(), fmt_shape(&t.shape)));
        }
        // (An f32 value always fits f32: only f16 weights are checked, on the f32s as held.)
        if t.dtype == DType::F16 {
            if let Some(x) = first_past_f16(d) {
                return Err(format!("value {x:e} is out of the range of f16"));
            }
        }
    }
    if let WeightInit::Random { scale, .. } = init {
        if !scale.is_finite() || *scale < 0.0 {
            return Err(format!("random fill scale {scale} must be finite and non-negative"));
        }
    }
    Ok(vec![t])
}

/// Type of a constant: the one it declares, with known dims, one value per element, values
/// of its dtype's kind (an i32 constant's within i32's range).
pub(crate) fn infer_constant(
    v: &ConstValues,
    ins: &[&TensorType],
    declared: &[TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(CONSTANT, ins, 0)?;
    let t = one_declared(CONSTANT, declared)?;
    check_size(&t)?;
    let Some(n) = t.numel() else {
        return Err("constant shape must have known dims".into());
    };
    if v.len() as u64 != n {
        return Err(format!("constant has {} values but shape {} holds {n}", v.len(), fmt_shape(&t.shape)));
    }
    if !v.holds(t.dtype) {
        return Err(format!("a {} constant cannot hold {}", t.dtype, kind(v)));
    }
    if let ConstValues::Float(xs) = v {
        check_range(xs.iter().copied(), t.dtype)?;
    }
    if let (ConstValues::Int(xs), DType::I32) = (v, t.dtype) {
        if let Some(x) = xs.iter().find(|&&x| i32::try_from(x).is_err()) {
            return Err(format!("value {x} does not fit an i32"));
        }
    }
    Ok(vec![t])
}

/// The least magnitude that rounds to infinity in f16 (to nearest, ties to even: halfway
/// between the largest finite f16, 65504, and 65536).
const F16_OVERFLOW: f64 = 65520.0;

/// The first finite value of `d` that f16 cannot hold ([`F16_OVERFLOW`]). Each block is
/// scanned whole, on the bits and without a branch a value, so that the compiler can take
/// several values an instruction: the scan runs at about the speed memory gives it.
fn first_past_f16(d: &[f32]) -> Option<f32> {
    const LIMIT: u32 = (F16_OVERFLOW as f32).to_bits();
    const INF: u32 = f32::INFINITY.to_bits();
    let past = |x: &f32| {
        let m = x.to_bits() & 0x7fff_ffff;
        (LIMIT..INF).contains(&m)
    };
    let block = d.chunks(4096).find(|b| b.iter().fold(false, |any, x| any | past(x)))?;
    block.iter().copied().find(past)
}

/// The least magnitude that rounds to infinity in f32: halfway between `f32::MAX` and 2¹²⁸.
const F32_OVERFLOW: f64 = 340282356779733661637539395458142568448.0; // 2^128 - 2^103

/// Checks that every finite value is finite in `dtype` (a float literal past f32's or f16's
/// range would otherwise become infinity without a word). A comparison a value (a model's
/// weights are checked each time their types are inferred: converting each value to f16 and
/// back took 1.8 s of the 5.8 that `glufuse wgsl` spent on a Qwen2-0.5B-sized f16 export).
pub fn check_range(vals: impl Iterator<Item = f64>, dtype: DType) -> Result<(), String> {
    let limit = if dtype == DType::F16 { F16_OVERFLOW } else { F32_OVERFLOW };
    for x in vals {
        if x.is_finite() && x.abs() >= limit {
            return Err(format!("value {x:e} is out of the range of {dtype}"));
        }
    }
    Ok(())
}

/// A float as JSON: a number, or for the values JSON has no number for, `"inf"`, `"-inf"` or
/// `"nan"`.
pub fn float_to_json(x: f64) -> J {
    match x {
        x if x.is_nan() => J::from("nan"),
        x if x == f64::INFINITY => J::from("inf"),
        x if x == f64::NEG_INFINITY => J::from("-inf"),
        x => J::from(x),
    }
}

/// A float from JSON: a number, or one of the strings [`float_to_json`] writes.
pub fn float_from_json(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => match s.as_str() {
            "nan" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// Serde for a weight's inline values: numbers, the non-finite ones as strings, and no number
/// past f32's range.
mod float_list {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value as J;

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        if v.iter().all(|x| x.is_finite()) {
            return v.serialize(s);
        }
        let js: Vec<J> = v.iter().map(|&x| super::float_to_json(x as f64)).collect();
        js.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let js = Vec::<J>::deserialize(d)?;
        js.iter()
            .map(|v| {
                let x = super::float_from_json(v).ok_or_else(|| {
                    D::Error::custom(format!("data value {v} is not a number (nor \"inf\", \"-inf\" or \"nan\")"))
                })?;
                let y = x as f32;
                if x.is_finite() && y.is_infinite() {
                    return Err(D::Error::custom(format!("data value {x:e} is out of the range of f32")));
                }
                Ok(y)
            })
            .collect()
    }
}

fn kind(v: &ConstValues) -> &'static str {
    match v {
        ConstValues::Float(_) => "floating-point values",
        ConstValues::Int(_) => "integer values",
        ConstValues::Bool(_) => "booleans",
    }
}

/// Type of a symbolic constant: the one it declares, integer, with known dims and one value
/// per element.
pub(crate) fn infer_sym_constant(
    v: &[DimExpr],
    ins: &[&TensorType],
    declared: &[TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(SYM_CONSTANT, ins, 0)?;
    let t = one_declared(SYM_CONSTANT, declared)?;
    super::int(SYM_CONSTANT, "values", &t)?;
    check_size(&t)?;
    let Some(n) = t.numel() else {
        return Err("symbolic constant shape must have known dims".into());
    };
    if v.len() as u64 != n {
        return Err(format!("symbolic constant has {} values but shape {} holds {n}", v.len(), fmt_shape(&t.shape)));
    }
    Ok(vec![t])
}

/// The values of a symbolic constant under a binding, checked to fit its dtype.
pub fn sym_constant_values(v: &[DimExpr], dtype: DType, b: &Bindings) -> Result<Vec<i64>, String> {
    v.iter()
        .map(|e| {
            let x = e.eval(&|s| b.get(s).and_then(|&v| i64::try_from(v).ok()))?;
            if dtype == DType::I32 && i32::try_from(x).is_err() {
                return Err(format!("{e} is {x}, which does not fit an i32"));
            }
            Ok(x)
        })
        .collect()
}

/// Evaluates a symbolic constant under the run's binding.
pub(crate) fn eval_sym_constant(
    v: &[DimExpr],
    ty: &TensorType,
    shape: &[usize],
    b: &Bindings,
) -> Result<Vec<Tensor>, String> {
    Ok(vec![out(ty, shape, Data::I64(sym_constant_values(v, ty.dtype, b)?))])
}

/// The values a weight holds, row-major, for its (known) shape: shape-only weights hold zeros.
pub fn weight_data(init: &WeightInit, shape: &[usize]) -> Vec<f32> {
    match init {
        WeightInit::None => vec![0.0; shape.iter().product()],
        WeightInit::Data(d) => d.clone(),
        WeightInit::Random { seed, scale } => match Tensor::random(shape.to_vec(), *seed, *scale).into_data() {
            Data::F32(v) => v,
            Data::I64(_) | Data::Bool(_) => unreachable!("random tensors are f32"),
        },
    }
}

/// The values a constant holds, in the representation of `dtype` (floats as f32, before any
/// f16 rounding).
pub fn constant_data(v: &ConstValues, dtype: DType) -> Data {
    match v {
        ConstValues::Float(x) if dtype.is_float() => Data::F32(x.iter().map(|&x| x as f32).collect()),
        ConstValues::Int(x) if dtype.is_int() => Data::I64(x.clone()),
        ConstValues::Bool(x) if dtype == DType::Bool => Data::Bool(x.clone()),
        // Type inference refuses a constant whose values are not of its dtype.
        _ => Data::zeros(dtype, v.len()),
    }
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

/// Dump label of a constant: its values when there are at most four (integers as
/// integers).
pub(crate) fn label_constant(v: &ConstValues) -> String {
    if v.len() > 4 {
        return format!("{CONSTANT}({} values)", v.len());
    }
    match v {
        ConstValues::Float(x) => format!("{CONSTANT}({x:?})"),
        ConstValues::Int(x) => format!("{CONSTANT}({x:?})"),
        ConstValues::Bool(x) => format!("{CONSTANT}({x:?})"),
    }
}

/// Dump label of a symbolic constant: its values when there are at most four.
pub(crate) fn label_sym_constant(v: &[DimExpr]) -> String {
    if v.len() > 4 {
        return format!("{SYM_CONSTANT}({} values)", v.len());
    }
    let vs: Vec<String> = v.iter().map(|e| e.to_string()).collect();
    format!("{SYM_CONSTANT}([{}])", vs.join(", "))
}

/// A dim expression as JSON: an integer for a constant, else its text.
pub(crate) fn expr_json(e: &DimExpr) -> J {
    match e.as_const() {
        Some(c) => J::from(c),
        None => J::from(e.to_string()),
    }
}

/// A dim expression from JSON: an integer or the text of an expression.
pub(crate) fn expr_from_json(v: &J) -> Result<DimExpr, String> {
    match v {
        J::Number(n) => n.as_i64().map(DimExpr::constant).ok_or_else(|| format!("{n} is not an integer")),
        J::String(s) => DimExpr::parse(s),
        v => Err(format!("{v} is neither an integer nor a dim expression")),
    }
}

/// JSON attributes of a weight: `init`, unless it holds no values.
pub(crate) fn write_weight(init: &WeightInit, m: &mut Attrs) {
    if *init != WeightInit::None {
        m.insert("init".into(), to_json(init));
    }
}

/// JSON attributes of a constant: `value`, a list of numbers (or booleans).
pub(crate) fn write_constant(v: &ConstValues, m: &mut Attrs) {
    let j = match v {
        ConstValues::Float(x) => J::Array(x.iter().map(|&x| float_to_json(x)).collect()),
        ConstValues::Int(x) => to_json(x),
        ConstValues::Bool(x) => to_json(x),
    };
    m.insert("value".into(), j);
}

/// JSON attributes of a symbolic constant: `value`, integers and expression texts.
pub(crate) fn write_sym_constant(v: &[DimExpr], m: &mut Attrs) {
    m.insert("value".into(), J::Array(v.iter().map(expr_json).collect()));
}

/// Reads a constant's values in the dtype it declares (floats when it declares none, which
/// type inference then refuses): integers may be written `-1` or `-1.0` (as older files did).
fn constant_values(vals: Vec<J>, declared: &[TensorType]) -> Result<ConstValues, String> {
    let dtype = declared.first().map_or(DType::F32, |t| t.dtype);
    let bad = |v: &J, what: &str| format!("constant value {v} is not {what} (the constant is {dtype})");
    match dtype {
        DType::F32 | DType::F16 => vals
            .iter()
            .map(|v| float_from_json(v).ok_or_else(|| bad(v, "a number (nor \"inf\", \"-inf\" or \"nan\")")))
            .collect::<Result<_, _>>()
            .map(ConstValues::Float),
        DType::I64 | DType::I32 => vals
            .iter()
            .map(|v| match (v.as_i64(), v.as_f64()) {
                (Some(i), _) => Ok(i),
                (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 => Ok(f as i64),
                _ => Err(bad(v, "an integer")),
            })
            .collect::<Result<_, _>>()
            .map(ConstValues::Int),
        DType::Bool => vals
            .iter()
            .map(|v| v.as_bool().ok_or_else(|| bad(v, "true or false")))
            .collect::<Result<_, _>>()
            .map(ConstValues::Bool),
    }
}

/// Reads a source op named `name` from its JSON attributes (a constant's values in its
/// declared dtype); `None` if `name` is not one.
pub(crate) fn from_json(name: &str, a: &mut Attrs, declared: &[TensorType]) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct WeightAttrs {
        #[serde(default)]
        init: Option<WeightInit>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConstantAttrs {
        value: Vec<J>,
    }
    Some(match name {
        INPUT => Ok(Op::Input),
        WEIGHT => read_attrs::<WeightAttrs>(name, a).map(|w| Op::Weight(w.init.unwrap_or(WeightInit::None))),
        CONSTANT => read_attrs::<ConstantAttrs>(name, a)
            .and_then(|c| constant_values(c.value, declared).map_err(|m| format!("bad attributes for {name}: {m}")))
            .map(Op::Constant),
        SYM_CONSTANT => read_attrs::<ConstantAttrs>(name, a).and_then(|c| {
            c.value
                .iter()
                .map(expr_from_json)
                .collect::<Result<_, _>>()
                .map(Op::SymConstant)
                .map_err(|m| format!("bad attributes for {name}: {m}"))
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The thresholds agree with the conversions they stand for, on both sides of each
    /// boundary, and weights are held to the same bound as literals.
    #[test]
    fn range_checks_agree_with_rounding_to_the_dtype() {
        let f16_edge = [65504.0, 65519.0, 65519.996, 65520.0, 65520.004, 65536.0, 1e9];
        let f32_edge = [f32::MAX as f64, F32_OVERFLOW - 2f64.powi(80), F32_OVERFLOW, F32_OVERFLOW * 1.0001, 1e300];
        for (dtype, edge) in [(DType::F16, &f16_edge[..]), (DType::F32, &f32_edge[..])] {
            for &m in edge {
                for x in [m, -m] {
                    let inf = match dtype {
                        DType::F16 => half::f16::from_f64(x).is_infinite(),
                        _ => (x as f32).is_infinite(),
                    };
                    assert_eq!(check_range([x].into_iter(), dtype).is_err(), inf, "{x:e} as {dtype}");
                }
            }
            for x in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0] {
                assert!(check_range([x].into_iter(), dtype).is_ok(), "{x} as {dtype}");
            }
        }
        let t = TensorType::new(DType::F16, vec![crate::Dim::Fixed(3)]);
        let weight = |v: Vec<f32>| infer_weight(&WeightInit::Data(v), &[], std::slice::from_ref(&t));
        assert!(weight(vec![1.0, -65519.0, f32::INFINITY]).is_ok());
        assert!(weight(vec![f32::NAN, -f32::NAN, f32::NEG_INFINITY]).is_ok());
        let mut long = vec![0.5; 10_000];
        long[9_000] = 65520.0;
        long[9_001] = 1e30;
        assert_eq!(first_past_f16(&long), Some(65520.0));
        long[9_000] = 65519.99;
        assert_eq!(first_past_f16(&long), Some(1e30));
        assert_eq!(weight(vec![1.0, -65520.0, 2.0]).unwrap_err(), "value -6.552e4 is out of the range of f16");
    }
}
