//! ONNX's `OneHot(indices, depth, values)` as ops glufuse already has: the indices gain a dim
//! of `depth` at `axis`; where a position along it equals the index (a negative index counted
//! from the end), `values[1]`, elsewhere `values[0]`: a comparison of the indices, reshaped to broadcast, with the
//! positions, and a `Where`. An index outside `[-depth, depth)` gives `values[0]` throughout,
//! as the specification says. The depth must be known at load time (it is the new dim); the
//! two values may be computed.

use super::*;

/// Lowers a `OneHot` node.
pub(super) fn one_hot(c: &mut Ctx, attrs: &Attrs) -> Result<Src, String> {
    let (t, vt) = (c.ty(0)?, c.ty(2)?);
    if t.dtype == DType::Bool {
        return Err(format!("the indices must be numbers, got {t}"));
    }
    if vt.rank() != 1 || vt.shape[0].fixed() != Some(2) {
        return Err(format!("the values (input 2) must be [off, on], got {vt}"));
    }
    let depth = match c.ints(1, "depth")?.as_slice() {
        [d] if *d >= 1 => *d,
        v => return Err(format!("the depth must be one number of at least 1, got {v:?}")),
    };
    let r = t.rank() + 1;
    let a = crate::shape::norm_axis(attrs.int("axis").unwrap_or(-1), r)
        .ok_or_else(|| format!("axis {} out of range for the output's rank {r}", attrs.int("axis").unwrap_or(-1)))?;
    let idx = if t.dtype == DType::I64 {
        Src::In(0)
    } else {
        // (Floats truncated toward zero, as a cast does.)
        c.step("indices.i64", Op::Cast { to: DType::I64 }, vec![Src::In(0)])
    };
    let int = |name: &str, v: i64| Src::Known(name.into(), scalar(DType::I64, v as f64));
    let negative = c.step("negative", Op::Binary(BinaryOp::Less), vec![idx.clone(), int("zero", 0)]);
    let wrapped = c.step("from_end", Op::Binary(BinaryOp::Add), vec![idx.clone(), int("depth", depth)]);
    let idx = c.step("wrapped", Op::Where, vec![negative, wrapped, idx]);
    // The indices with a dim of 1 at the axis, and the positions along it, shaped to broadcast.
    let mut shape: Vec<DimExpr> = t.shape.iter().map(Dim::expr).collect();
    shape.insert(a, DimExpr::constant(1));
    let idx = c.step("indices.lane", Op::Reshape { shape }, vec![idx]);
    let mut at = c.step("positions", indices(DimExpr::constant(depth)), vec![]);
    let after = r - 1 - a;
    if after > 0 {
        let shape = std::iter::once(-1).chain(std::iter::repeat_n(1, after)).map(DimExpr::constant).collect();
        at = c.step("positions.lane", Op::Reshape { shape }, vec![at]);
    }
    let hot = c.step("hot", Op::Binary(BinaryOp::Equal), vec![idx, at]);
    let off = c.step("off", Op::Gather { axis: 0 }, vec![Src::In(2), int("off_at", 0)]);
    let on = c.step("on", Op::Gather { axis: 0 }, vec![Src::In(2), int("on_at", 1)]);
    Ok(c.step("", Op::Where, vec![hot, on, off]))
}
