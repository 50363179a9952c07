//! ONNX's `TopK` as glufuse's own [`Op::TopK`]: the values and indices of each lane's K first
//! elements in onnxruntime's order (largest first, or smallest first with `largest = 0`; ties
//! by index; NaN above every number: first when largest, last when smallest; `-0.0` equal to
//! `0.0`), always sorted (an order `sorted = 0` allows too). One kernel takes all K of a lane.
//!
//! K must be known at load time, at least 1 and at most the axis's size (checked here where
//! that size is known, else when it is bound at run time).

use super::*;

/// Lowers a `TopK` node: its values and indices (int64).
pub(super) fn top_k(c: &mut Ctx, attrs: &Attrs) -> Result<Vec<Option<Src>>, String> {
    let t = c.ty(0)?;
    if t.dtype == DType::Bool || t.rank() == 0 {
        return Err(format!("TopK needs numbers of rank 1 or more, got {t}"));
    }
    let axis = attrs.int("axis").unwrap_or(-1);
    let a = ax(axis, t.rank())?;
    let k = match c.ints(1, "K")?.as_slice() {
        [k] => *k,
        v => return Err(format!("K must hold one number, got {v:?}")),
    };
    let too_many = t.shape[a].fixed().filter(|&n| k > 0 && k as u64 > n);
    if k < 1 || too_many.is_some() {
        let n = t.shape[a].fixed().map_or(format!("{}", t.shape[a]), |n| n.to_string());
        return Err(format!("K = {k}, but K must be from 1 to the axis's size, {n}"));
    }
    let largest = attrs.int("largest").unwrap_or(1) != 0;
    Ok(c.step_outputs("", Op::TopK { axis: a as i64, k: k as usize, largest }, vec![Src::In(0)], 2))
}
