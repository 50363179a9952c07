//! ONNX's `OneHot(indices, depth, values)` and `Hardmax` as ops glufuse already has.
//!
//! `OneHot`: the indices gain a dim of `depth` at `axis`; where a position along it equals the
//! index (a negative index counted from the end), `values[1]`, elsewhere `values[0]`: a
//! comparison of the indices, reshaped to broadcast, with the positions, and a `Where`. An
//! index outside `[-depth, depth)` gives `values[0]` throughout, as the specification says.
//! The depth must be known at load time (it is the new dim); the two values may be computed.
//!
//! `Hardmax(x)`: 1 at the first largest element of each lane along `axis`, 0 elsewhere; a lane
//! holding NaN is all 0 (the lane's largest, NaN, equals nothing), as onnxruntime gives it
//! along the last axis (along another, its answer depends on where the NaN falls).

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
    let a = ax(attrs.int("axis").unwrap_or(-1), r).map_err(|e| format!("{e} (the output's)"))?;
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
    let at = lane_positions(c, "positions", DimExpr::constant(depth), r - 1 - a);
    let hot = c.step("hot", Op::Binary(BinaryOp::Equal), vec![idx, at]);
    let off = c.step("off", Op::Gather { axis: 0 }, vec![Src::In(2), int("off_at", 0)]);
    let on = c.step("on", Op::Gather { axis: 0 }, vec![Src::In(2), int("on_at", 1)]);
    Ok(c.step("", Op::Where, vec![hot, on, off]))
}

/// Lowers a `Hardmax` node.
pub(super) fn hardmax(c: &mut Ctx, attrs: &Attrs) -> Result<Src, String> {
    let t = c.ty(0)?;
    if !t.dtype.is_float() || t.rank() == 0 {
        return Err(format!("Hardmax needs floats of rank 1 or more, got {t}"));
    }
    let a = ax(attrs.int("axis").unwrap_or(-1), t.rank())?;
    let axes = vec![a as i64];
    let reduce = |c: &mut Ctx, name: &str, v: Src| {
        c.step(name, Op::Reduce { op: ReduceOp::Max, axes: axes.clone(), keepdims: true }, vec![v])
    };
    // (NaN propagates through the reduction: then no element equals the lane's largest.)
    let top = reduce(c, "top", Src::In(0));
    let hit = c.step("hit", Op::Binary(BinaryOp::Equal), vec![Src::In(0), top]);
    let at = lane_positions(c, "positions", t.shape[a].expr(), t.rank() - 1 - a);
    let neg = c.step("neg_positions", Op::Unary(UnaryOp::Neg), vec![at.clone()]);
    let found = first_hit_negated(c, "", hit, neg, axes.clone(), true);
    let first = c.step("first", Op::Unary(UnaryOp::Neg), vec![found]);
    let hot = c.step("hot", Op::Binary(BinaryOp::Equal), vec![at, first]);
    let one = Src::Known("one".into(), scalar(t.dtype, 1.0));
    let zero = Src::Known("zero".into(), scalar(t.dtype, 0.0));
    Ok(c.step("", Op::Where, vec![hot, one, zero]))
}
