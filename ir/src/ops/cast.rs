//! `Cast`: conversion to another element type, between every pair of f32, f16, i64, i32 and
//! bool, following ONNX: float to integer truncates toward zero (saturating at the integer's
//! range, NaN to 0), i64 to i32 keeps the low 32 bits, anything to bool is `!= 0` (NaN is
//! true), bool to a number is 0 or 1, anything to f16 rounds to the nearest f16.

use super::{arity, out, read_attrs, to_json, Attrs};
use crate::op::Op;
use crate::tensor::{round_f16, Data, Tensor};
use crate::types::{DType, TensorType};
use serde::Deserialize;

/// The name of [`Op::Cast`].
pub const NAME: &str = "Cast";

/// Type of a cast: the input's shape in the target dtype.
pub(crate) fn infer(to: DType, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(NAME, ins, 1)?;
    Ok(vec![TensorType::new(to, ins[0].shape.clone())])
}

/// The values of `t` cast to `to`.
pub fn cast_data(t: &Tensor, to: DType) -> Data {
    let int = |v: i64| super::wrap(to, v);
    match (&t.data, to) {
        (Data::F32(v), DType::F32) => Data::F32(v.clone()),
        (Data::F32(v), DType::F16) => {
            let mut v = v.clone();
            round_f16(&mut v);
            Data::F32(v)
        }
        // `as` truncates toward zero, saturates, and takes NaN to 0.
        (Data::F32(v), DType::I64) => Data::I64(v.iter().map(|&x| x as i64).collect()),
        (Data::F32(v), DType::I32) => Data::I64(v.iter().map(|&x| x as i32 as i64).collect()),
        (Data::F32(v), DType::Bool) => Data::Bool(v.iter().map(|&x| x != 0.0).collect()),
        (Data::I64(v), DType::F32) => Data::F32(v.iter().map(|&x| x as f32).collect()),
        (Data::I64(v), DType::F16) => {
            let mut v: Vec<f32> = v.iter().map(|&x| x as f32).collect();
            round_f16(&mut v);
            Data::F32(v)
        }
        (Data::I64(v), DType::I64 | DType::I32) => Data::I64(v.iter().map(|&x| int(x)).collect()),
        (Data::I64(v), DType::Bool) => Data::Bool(v.iter().map(|&x| x != 0).collect()),
        (Data::Bool(v), DType::F32 | DType::F16) => Data::F32(v.iter().map(|&x| x as u8 as f32).collect()),
        (Data::Bool(v), DType::I64 | DType::I32) => Data::I64(v.iter().map(|&x| x as i64).collect()),
        (Data::Bool(v), DType::Bool) => Data::Bool(v.clone()),
    }
}

/// Evaluates a cast.
pub(crate) fn eval(to: DType, ins: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    let ty = TensorType::new(to, vec![]);
    Ok(vec![out(&ty, &ins[0].shape, cast_data(ins[0], to))])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_casts_as_onnx_says() {
        let f = Tensor::new(vec![6], vec![2.7, -2.7, 0.0, f32::NAN, 3e9, 65519.0]).unwrap();
        assert_eq!(cast_data(&f, DType::I64), Data::I64(vec![2, -2, 0, 0, 3_000_000_000, 65519]));
        assert_eq!(cast_data(&f, DType::I32), Data::I64(vec![2, -2, 0, 0, i32::MAX as i64, 65519]));
        assert_eq!(cast_data(&f, DType::Bool), Data::Bool(vec![true, true, false, true, true, true]));
        let Data::F32(h) = cast_data(&f, DType::F16) else { panic!() };
        assert_eq!(h[0], half::f16::from_f32(2.7).to_f32());
        assert!(h[4].is_infinite() && h[5] == 65504.0);
        let i = Tensor::i64(vec![3], vec![-1, 1 << 33, 3]).unwrap();
        assert_eq!(cast_data(&i, DType::I32), Data::I64(vec![-1, 0, 3]));
        assert_eq!(cast_data(&i, DType::F32), Data::F32(vec![-1.0, 8589934592.0, 3.0]));
        assert_eq!(cast_data(&i, DType::Bool), Data::Bool(vec![true, true, true]));
        let b = Tensor::bool(vec![2], vec![true, false]).unwrap();
        assert_eq!(cast_data(&b, DType::F16), Data::F32(vec![1.0, 0.0]));
        assert_eq!(cast_data(&b, DType::I32), Data::I64(vec![1, 0]));
        assert_eq!(cast_data(&b, DType::Bool), Data::Bool(vec![true, false]));
    }
}
