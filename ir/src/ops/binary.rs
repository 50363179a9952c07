//! Elementwise ops of two operands ([`BinaryOp`]) with numpy broadcasting: arithmetic (on
//! floats and integers; `Pow` on floats), `Max`/`Min`, comparisons (any two operands of one
//! dtype, giving booleans) and logic (booleans); and the ternary `Where`.

use super::{arity, out, Attrs};
use crate::op::Op;
use crate::shape::broadcast;
use crate::tensor::{broadcast_index, Data, Tensor};
use crate::types::{DType, TensorType};
use serde::{Deserialize, Serialize};

/// The name of [`Op::Where`].
pub const WHERE: &str = "Where";

/// Elementwise ops with two operands (numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b` (integers: truncated toward zero; a zero divisor is an error)
    Div,
    /// `a ^ b` (floats)
    Pow,
    /// The larger (NaN if either is NaN).
    Max,
    /// The smaller (NaN if either is NaN).
    Min,
    /// `a == b`
    Equal,
    /// `a < b`
    Less,
    /// `a <= b`
    LessOrEqual,
    /// `a > b`
    Greater,
    /// `a >= b`
    GreaterOrEqual,
    /// `a && b` (booleans)
    And,
    /// `a || b` (booleans)
    Or,
    /// The remainder of `a / b` with the sign of the divisor, `a - b·⌊a/b⌋` (integers: ONNX's
    /// `Mod`; a zero divisor is an error)
    Mod,
    /// The remainder of `a / b` with the sign of the dividend, `a - b·trunc(a/b)` (ONNX's
    /// `Mod` with `fmod = 1`; integers: a zero divisor is an error; floats: NaN)
    FMod,
}

/// What kind of binary op: which operands it takes and what it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryKind {
    /// Numbers to numbers of the same dtype.
    Arith,
    /// Two operands of one dtype to booleans.
    Compare,
    /// Booleans to booleans.
    Logic,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 16] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
        BinaryOp::Equal,
        BinaryOp::Less,
        BinaryOp::LessOrEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterOrEqual,
        BinaryOp::And,
        BinaryOp::Or,
        BinaryOp::Mod,
        BinaryOp::FMod,
    ];

    /// The op's name as the JSON format and the dumps spell it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
            BinaryOp::Max => "Max",
            BinaryOp::Min => "Min",
            BinaryOp::Equal => "Equal",
            BinaryOp::Less => "Less",
            BinaryOp::LessOrEqual => "LessOrEqual",
            BinaryOp::Greater => "Greater",
            BinaryOp::GreaterOrEqual => "GreaterOrEqual",
            BinaryOp::And => "And",
            BinaryOp::Or => "Or",
            BinaryOp::Mod => "Mod",
            BinaryOp::FMod => "FMod",
        }
    }

    /// Which kind of op it is.
    pub fn kind(self) -> BinaryKind {
        match self {
            BinaryOp::Add
            | BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Div
            | BinaryOp::Pow
            | BinaryOp::Max
            | BinaryOp::Min
            | BinaryOp::Mod
            | BinaryOp::FMod => BinaryKind::Arith,
            BinaryOp::Equal | BinaryOp::Less | BinaryOp::LessOrEqual | BinaryOp::Greater | BinaryOp::GreaterOrEqual => {
                BinaryKind::Compare
            }
            BinaryOp::And | BinaryOp::Or => BinaryKind::Logic,
        }
    }

    /// The dtype of the result for operands of `dtype`, or why the op does not take them.
    pub fn out_dtype(self, dtype: DType) -> Result<DType, String> {
        let (ok, want) = match (self, self.kind()) {
            (BinaryOp::Pow, _) => (dtype.is_float(), "floating-point"),
            (BinaryOp::Mod, _) if dtype.is_float() => {
                return Err(format!(
                    "Mod needs integer inputs, got {dtype} (floats take FMod: ONNX's Mod with fmod = 1)"
                ))
            }
            (BinaryOp::Mod, _) => (dtype.is_int(), "integer"),
            (_, BinaryKind::Arith) => (dtype.is_float() || dtype.is_int(), "numeric"),
            (BinaryOp::Equal, _) => (true, ""),
            (_, BinaryKind::Compare) => (dtype != DType::Bool, "numeric"),
            (_, BinaryKind::Logic) => (dtype == DType::Bool, "bool"),
        };
        if !ok {
            return Err(format!("{} needs {want} inputs, got {dtype}", self.name()));
        }
        Ok(match self.kind() {
            BinaryKind::Arith => dtype,
            BinaryKind::Compare | BinaryKind::Logic => DType::Bool,
        })
    }

    /// The op applied to one pair of values held as f32 (booleans as 0 and 1, as the GPU
    /// holds them).
    pub fn apply(self, a: f32, b: f32) -> f32 {
        let t = |c: bool| c as u8 as f32;
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Max if a.is_nan() || b.is_nan() => f32::NAN,
            BinaryOp::Max => a.max(b),
            BinaryOp::Min if a.is_nan() || b.is_nan() => f32::NAN,
            BinaryOp::Min => a.min(b),
            BinaryOp::Equal => t(a == b),
            BinaryOp::Less => t(a < b),
            BinaryOp::LessOrEqual => t(a <= b),
            BinaryOp::Greater => t(a > b),
            BinaryOp::GreaterOrEqual => t(a >= b),
            BinaryOp::And => t(a != 0.0 && b != 0.0),
            BinaryOp::Or => t(a != 0.0 || b != 0.0),
            BinaryOp::Mod => a - b * (a / b).floor(),
            BinaryOp::FMod => a % b,
        }
    }

    /// The op applied to one pair of integers of `dtype` (arithmetic wraps at its width);
    /// `None` for a division by zero.
    pub fn apply_int(self, a: i64, b: i64, dtype: DType) -> Option<i64> {
        let w = |v: i64| super::wrap(dtype, v);
        let t = |c: bool| c as i64;
        Some(match self {
            BinaryOp::Add => w(a.wrapping_add(b)),
            BinaryOp::Sub => w(a.wrapping_sub(b)),
            BinaryOp::Mul => w(a.wrapping_mul(b)),
            BinaryOp::Div if b == 0 => return None,
            BinaryOp::Div => w(a.wrapping_div(b)),
            BinaryOp::Pow => w(a.wrapping_pow(u32::try_from(b).ok()?)),
            BinaryOp::Max => a.max(b),
            BinaryOp::Min => a.min(b),
            BinaryOp::Equal => t(a == b),
            BinaryOp::Less => t(a < b),
            BinaryOp::LessOrEqual => t(a <= b),
            BinaryOp::Greater => t(a > b),
            BinaryOp::GreaterOrEqual => t(a >= b),
            BinaryOp::And => t(a != 0 && b != 0),
            BinaryOp::Or => t(a != 0 || b != 0),
            BinaryOp::Mod | BinaryOp::FMod if b == 0 => return None,
            BinaryOp::Mod => {
                let r = a.wrapping_rem(b);
                if r != 0 && (r < 0) != (b < 0) {
                    r + b
                } else {
                    r
                }
            }
            BinaryOp::FMod => a.wrapping_rem(b),
        })
    }
}

/// Type of a binary op's output: the operands' shapes broadcast; both of one dtype the op
/// takes.
pub(crate) fn infer(op: BinaryOp, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(op.name(), ins, 2)?;
    if ins[0].dtype != ins[1].dtype {
        return Err(format!("operand dtypes differ: {} vs {}", ins[0].dtype, ins[1].dtype));
    }
    let dtype = op.out_dtype(ins[0].dtype)?;
    Ok(vec![TensorType::new(dtype, broadcast(&ins[0].shape, &ins[1].shape)?)])
}

/// Applies `op` to every pair of broadcast elements.
pub(crate) fn eval(
    op: BinaryOp,
    ins: &[&Tensor],
    ty: &TensorType,
    shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, String> {
    let shape = &shapes[0];
    let ia = broadcast_index(shape, &ins[0].shape);
    let ib = broadcast_index(shape, &ins[1].shape);
    let pairs = ia.iter().zip(&ib);
    let data = match (&ins[0].data, &ins[1].data, op.kind()) {
        (Data::F32(a), Data::F32(b), BinaryKind::Arith) => {
            Data::F32(pairs.map(|(&i, &j)| op.apply(a[i], b[j])).collect())
        }
        (Data::F32(a), Data::F32(b), BinaryKind::Compare) => {
            Data::Bool(pairs.map(|(&i, &j)| op.apply(a[i], b[j]) != 0.0).collect())
        }
        (Data::I64(a), Data::I64(b), kind) => {
            let dtype = ins[0].dtype;
            let mut v = Vec::with_capacity(ia.len());
            for (&i, &j) in pairs {
                v.push(op.apply_int(a[i], b[j], dtype).ok_or_else(|| {
                    if op == BinaryOp::Pow {
                        format!("integer exponent {} is out of range", b[j])
                    } else {
                        format!("integer division by zero (dividend {})", a[i])
                    }
                })?);
            }
            match kind {
                BinaryKind::Arith => Data::I64(v),
                BinaryKind::Compare | BinaryKind::Logic => Data::Bool(v.into_iter().map(|x| x != 0).collect()),
            }
        }
        (Data::Bool(a), Data::Bool(b), _) => Data::Bool(
            pairs
                // Logic, or `Equal` of booleans (the only other op inference lets through).
                .map(|(&i, &j)| op.apply_int(a[i] as i64, b[j] as i64, DType::I64) == Some(1))
                .collect(),
        ),
        _ => {
            return Err(format!(
                "{} cannot be evaluated on {} and {} (a glufuse bug: inference allowed it)",
                op.name(),
                ins[0].dtype,
                ins[1].dtype
            ))
        }
    };
    Ok(vec![out(ty, shape, data)])
}

/// Type of a `Where`: a bool condition, two operands of one dtype, all three broadcast.
pub(crate) fn infer_where(ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(WHERE, ins, 3)?;
    if ins[0].dtype != DType::Bool {
        return Err(format!("{WHERE} needs a bool condition, got {}", ins[0].dtype));
    }
    if ins[1].dtype != ins[2].dtype {
        return Err(format!("operand dtypes differ: {} vs {}", ins[1].dtype, ins[2].dtype));
    }
    let shape = broadcast(&broadcast(&ins[0].shape, &ins[1].shape)?, &ins[2].shape)?;
    Ok(vec![TensorType::new(ins[1].dtype, shape)])
}

/// Evaluates a `Where`.
pub(crate) fn eval_where(ins: &[&Tensor], ty: &TensorType, shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let shape = &shapes[0];
    let cond = ins[0].as_bool().ok_or("the condition is not bool (a glufuse bug)")?;
    let ic = broadcast_index(shape, &ins[0].shape);
    let ix = broadcast_index(shape, &ins[1].shape);
    let iy = broadcast_index(shape, &ins[2].shape);
    let pick = (0..ic.len()).map(|k| (cond[ic[k]], ix[k], iy[k]));
    let data = match (&ins[1].data, &ins[2].data) {
        (Data::F32(x), Data::F32(y)) => Data::F32(pick.map(|(c, i, j)| if c { x[i] } else { y[j] }).collect()),
        (Data::I64(x), Data::I64(y)) => Data::I64(pick.map(|(c, i, j)| if c { x[i] } else { y[j] }).collect()),
        (Data::Bool(x), Data::Bool(y)) => Data::Bool(pick.map(|(c, i, j)| if c { x[i] } else { y[j] }).collect()),
        _ => return Err("operands of different kinds (a glufuse bug: inference allowed it)".into()),
    };
    Ok(vec![out(ty, shape, data)])
}

/// Reads a binary op named `name`, or `Where` (no attributes; other fields are not read);
/// `None` if `name` is neither.
pub(crate) fn from_json(name: &str, _: &mut Attrs) -> Option<Result<Op, String>> {
    if name == WHERE {
        return Some(Ok(Op::Where));
    }
    BinaryOp::ALL.into_iter().find(|b| b.name() == name).map(|b| Ok(Op::Binary(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape_of;

    fn run(op: &Op, ins: &[&Tensor]) -> Result<Tensor, String> {
        let tys: Vec<TensorType> = ins
            .iter()
            .map(|t| TensorType::new(t.dtype(), shape_of(&t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>())))
            .collect();
        let refs: Vec<&TensorType> = tys.iter().collect();
        let outs = op.infer(&refs, &[])?;
        let shapes: Vec<Vec<usize>> =
            outs.iter().map(|t| t.shape.iter().map(|d| d.fixed().unwrap() as usize).collect()).collect();
        Ok(op.eval(ins, &outs, &shapes, &Default::default())?.remove(0))
    }

    #[test]
    fn integer_arithmetic_wraps_at_its_width_and_divides_toward_zero() {
        let a = Tensor::i64(vec![3], vec![7, -7, i64::MAX]).unwrap();
        let b = Tensor::i64(vec![3], vec![2, 2, 1]).unwrap();
        assert_eq!(run(&Op::Binary(BinaryOp::Div), &[&a, &b]).unwrap().as_i64().unwrap(), &[3, -3, i64::MAX]);
        assert_eq!(run(&Op::Binary(BinaryOp::Add), &[&a, &b]).unwrap().as_i64().unwrap(), &[9, -5, i64::MIN]);
        let a32 = Tensor::i32(vec![1], vec![i32::MAX as i64]).unwrap();
        let one = Tensor::i32(vec![1], vec![1]).unwrap();
        assert_eq!(run(&Op::Binary(BinaryOp::Add), &[&a32, &one]).unwrap().as_i64().unwrap(), &[i32::MIN as i64]);
        let z = Tensor::i64(vec![1], vec![0]).unwrap();
        let e = run(&Op::Binary(BinaryOp::Div), &[&a, &Tensor::i64(vec![3], vec![1, 0, 1]).unwrap()]).unwrap_err();
        assert_eq!(e, "integer division by zero (dividend -7)");
        assert!(run(&Op::Binary(BinaryOp::Pow), &[&z, &z]).unwrap_err().contains("Pow needs floating-point inputs"));
    }

    #[test]
    fn comparisons_give_booleans_and_logic_takes_them() {
        let a = Tensor::i64(vec![3, 1], vec![0, 1, 2]).unwrap();
        let b = Tensor::i64(vec![1, 3], vec![0, 1, 2]).unwrap();
        let le = run(&Op::Binary(BinaryOp::LessOrEqual), &[&b, &a]).unwrap();
        assert_eq!(le.dtype(), DType::Bool);
        assert_eq!(le.shape(), &[3, 3]);
        assert_eq!(le.as_bool().unwrap(), &[true, false, false, true, true, false, true, true, true]);
        let gt = run(&Op::Binary(BinaryOp::Greater), &[&b, &a]).unwrap();
        let and = run(&Op::Binary(BinaryOp::And), &[&le, &gt]).unwrap();
        assert!(and.as_bool().unwrap().iter().all(|x| !x));
        let or = run(&Op::Binary(BinaryOp::Or), &[&le, &gt]).unwrap();
        assert!(or.as_bool().unwrap().iter().all(|&x| x));
        let e = run(&Op::Binary(BinaryOp::And), &[&a, &a]).unwrap_err();
        assert_eq!(e, "And needs bool inputs, got i64");
        let f = Tensor::new(vec![2], vec![1.0, f32::NAN]).unwrap();
        let eq = run(&Op::Binary(BinaryOp::Equal), &[&f, &f]).unwrap();
        assert_eq!(eq.as_bool().unwrap(), &[true, false]);
        let mx = run(&Op::Binary(BinaryOp::Max), &[&f, &Tensor::new(vec![1], vec![3.0]).unwrap()]).unwrap();
        assert_eq!(mx.as_f32().unwrap()[0], 3.0);
        assert!(mx.as_f32().unwrap()[1].is_nan());
        assert!(run(&Op::Binary(BinaryOp::Less), &[&le, &le]).unwrap_err().contains("numeric"));
    }

    #[test]
    fn where_broadcasts_all_three() {
        let c = Tensor::bool(vec![2, 1], vec![true, false]).unwrap();
        let x = Tensor::new(vec![3], vec![1.0, 2.0, 3.0]).unwrap();
        let y = Tensor::new(vec![], vec![-3.4e38]).unwrap();
        let w = run(&Op::Where, &[&c, &x, &y]).unwrap();
        assert_eq!(w.shape(), &[2, 3]);
        assert_eq!(w.as_f32().unwrap(), &[1.0, 2.0, 3.0, -3.4e38, -3.4e38, -3.4e38]);
        let e = run(&Op::Where, &[&x, &x, &x]).unwrap_err();
        assert_eq!(e, "Where needs a bool condition, got f32");
        let i = Tensor::i64(vec![1], vec![1]).unwrap();
        assert_eq!(run(&Op::Where, &[&c, &x, &i]).unwrap_err(), "operand dtypes differ: f32 vs i64");
    }
}
