//! Elementwise ops of two operands ([`BinaryOp`]) with numpy broadcasting.

use super::{arity, float, Attrs};
use crate::op::Op;
use crate::shape::broadcast;
use crate::tensor::{broadcast_index, Tensor};
use crate::types::TensorType;
use serde::{Deserialize, Serialize};

/// Elementwise ops with two operands (numpy broadcasting).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a · b`
    Mul,
    /// `a / b`
    Div,
    /// `a ^ b`
    Pow,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 5] = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div, BinaryOp::Pow];

    /// The op's name as the JSON format and the dumps spell it.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "Add",
            BinaryOp::Sub => "Sub",
            BinaryOp::Mul => "Mul",
            BinaryOp::Div => "Div",
            BinaryOp::Pow => "Pow",
        }
    }

    /// The op applied to one pair of values.
    pub fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
        }
    }
}

/// Type of a binary op's output: the operands' shapes broadcast; both of one floating-point
/// dtype.
pub(crate) fn infer(op: BinaryOp, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(op.name(), ins, 2)?;
    float(op.name(), ins[0])?;
    if ins[0].dtype != ins[1].dtype {
        return Err(format!("operand dtypes differ: {} vs {}", ins[0].dtype, ins[1].dtype));
    }
    Ok(vec![TensorType::new(ins[0].dtype, broadcast(&ins[0].shape, &ins[1].shape)?)])
}

/// Applies `op` to every pair of broadcast elements.
pub(crate) fn eval(op: BinaryOp, ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let ia = broadcast_index(&shapes[0], &ins[0].shape);
    let ib = broadcast_index(&shapes[0], &ins[1].shape);
    let data = ia.iter().zip(&ib).map(|(&i, &j)| op.apply(ins[0].data[i], ins[1].data[j])).collect();
    Ok(vec![Tensor { shape: shapes[0].clone(), data }])
}

/// Reads a binary op named `name` (no attributes; other fields are not read); `None` if
/// `name` is not one.
pub(crate) fn from_json(name: &str, _: &mut Attrs) -> Option<Result<Op, String>> {
    BinaryOp::ALL.into_iter().find(|b| b.name() == name).map(|b| Ok(Op::Binary(b)))
}
