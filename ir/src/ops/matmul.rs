//! The matrix product with numpy semantics, `[.., M, K] · [.., K, N]`, batch dims broadcast.
//! (The fused gated unit, two products in one op, is [`super::fused`].)

use super::{arity, float, out, Attrs};
use crate::op::Op;
use crate::shape::broadcast;
use crate::tensor::{broadcast_index, Data, Tensor};
use crate::types::TensorType;

/// The name of [`Op::MatMul`].
pub const NAME: &str = "MatMul";

/// Type of the product: batch dims broadcast, then `M` and `N`.
pub(crate) fn infer(ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(NAME, ins, 2)?;
    let (a, b) = (ins[0], ins[1]);
    float(NAME, a)?;
    if a.dtype != b.dtype {
        return Err(format!("operand dtypes differ: {} vs {}", a.dtype, b.dtype));
    }
    if a.rank() < 2 || b.rank() < 2 {
        return Err(format!("{NAME} needs operands of rank 2 or more, got {a} and {b}"));
    }
    let (ka, kb) = (&a.shape[a.rank() - 1], &b.shape[b.rank() - 2]);
    if ka != kb {
        return Err(format!("inner dims disagree: {a} · {b} ({ka} vs {kb})"));
    }
    let mut shape = broadcast(&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2])?;
    shape.push(a.shape[a.rank() - 2].clone());
    shape.push(b.shape[b.rank() - 1].clone());
    Ok(vec![TensorType::new(a.dtype, shape)])
}

/// Evaluates the product.
pub(crate) fn eval(ins: &[&Tensor], ty: &TensorType, shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let data = matmul(ins[0], ins[1], &shapes[0])?;
    Ok(vec![out(ty, &shapes[0], Data::F32(data))])
}

/// Numpy matmul of `[.., M, K]` by `[.., K, N]` (batch dims broadcast), f64 accumulation;
/// the values of the `out_shape` result.
pub fn matmul(a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Result<Vec<f32>, String> {
    let (ad, bd) = (a.floats()?, b.floats()?);
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    let batch_out = &out_shape[..out_shape.len() - 2];
    let nb: usize = batch_out.iter().product();
    let ia = broadcast_index(batch_out, &a.shape[..ra - 2]);
    let ib = broadcast_index(batch_out, &b.shape[..rb - 2]);
    let mut data = vec![0.0f32; nb * m * n];
    for bi in 0..nb {
        let (ao, bo) = (ia[bi] * m * k, ib[bi] * k * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += ad[ao + i * k + p] as f64 * bd[bo + p * n + j] as f64;
                }
                data[bi * m * n + i * n + j] = acc as f32;
            }
        }
    }
    Ok(data)
}

/// Reads a `MatMul` (no attributes; other fields are not read); `None` for another name.
pub(crate) fn from_json(name: &str, _: &mut Attrs) -> Option<Result<Op, String>> {
    (name == NAME).then_some(Ok(Op::MatMul))
}
