//! ONNX's `TopK` as ops glufuse already has: K rounds, each taking one element of every lane
//! along the axis (largest first, or smallest first with `largest = 0`), as onnxruntime
//! orders them: ties by index, NaN above every number (first when largest, last when
//! smallest), `-0.0` equal to `0.0`. A round reduces the lane's largest among the elements
//! not yet taken (of the mirrored values for the smallest: `mirror` reverses the order),
//! marks the elements equal to it (or, where NaN comes first and the lane has NaN left,
//! those), takes the first of them by the reduction of the negated indices `ArgMax` uses,
//! and reads its value back exactly (a reduction over the one taken element), so `-0.0` and
//! NaN keep their bits. The rounds' values and indices are concatenated along the axis:
//! sorted whatever `sorted` asks (an order it allows).
//!
//! K must be known at load time, at least 1 and at most the axis's size, which must be known
//! too; at most [`MAX_K`] rounds, each a handful of nodes (four reductions), so a large K is
//! refused rather than unrolled into thousands of nodes.

use super::*;

/// The largest K lowered.
pub(super) const MAX_K: i64 = 64;

/// Lowers a `TopK` node: its values and indices (int64).
pub(super) fn top_k(c: &mut Ctx, attrs: &Attrs) -> Result<Vec<Option<Src>>, String> {
    let t = c.ty(0)?;
    if t.dtype == DType::Bool || t.rank() == 0 {
        return Err(format!("TopK needs numbers of rank 1 or more, got {t}"));
    }
    let a = ax(attrs.int("axis").unwrap_or(-1), t.rank())?;
    let k = match c.ints(1, "K")?.as_slice() {
        [k] => *k,
        v => return Err(format!("K must hold one number, got {v:?}")),
    };
    let n = t.shape[a]
        .fixed()
        .ok_or_else(|| format!("the axis ({a}) of {t} must have a size known at load time to take K of it"))?;
    if k < 1 || k as u64 > n {
        return Err(format!("K = {k}, but K must be from 1 to the axis's size, {n}"));
    }
    if k > MAX_K {
        return Err(format!("K = {k} is more than the {MAX_K} glufuse lowers (TopK becomes K rounds of reductions)"));
    }
    let largest = attrs.int("largest").unwrap_or(1) != 0;
    let (dtype, float) = (t.dtype, t.dtype.is_float());
    let known = |name: &str, dtype: DType, v: f64| Src::Known(name.into(), scalar(dtype, v));
    // Below every value a lane holds: masks out what is not a candidate. (For integers the
    // most negative int32, the least the GPU holds; a candidate equal to it still counts,
    // as candidates are marked apart from their values.)
    let low = || known("lowest", dtype, if float { f64::NEG_INFINITY } else { i32::MIN as f64 });
    let key = if largest { Src::In(0) } else { mirror(c, "mirrored", Src::In(0), dtype) };
    let nan = float.then(|| c.step("nan", Op::Unary(UnaryOp::IsNaN), vec![Src::In(0)]));
    let number = nan.clone().map(|m| c.step("number", Op::Unary(UnaryOp::Not), vec![m]));
    // The indices along the axis, shaped to broadcast over the dims after it, and negated
    // (the first of several is the largest negated index).
    let idx = lane_positions(c, "indices", DimExpr::constant(n as i64), t.rank() - 1 - a);
    let neg = c.step("neg_indices", Op::Unary(UnaryOp::Neg), vec![idx]);
    let axes = vec![a as i64];
    let reduce = |c: &mut Ctx, name: &str, v: Src| {
        c.step(name, Op::Reduce { op: ReduceOp::Max, axes: axes.clone(), keepdims: true }, vec![v])
    };
    let both = |c: &mut Ctx, name: &str, x: Option<Src>, y: Option<Src>| match (x, y) {
        (Some(x), Some(y)) => Some(c.step(name, Op::Binary(BinaryOp::And), vec![x, y])),
        (x, y) => x.or(y),
    };
    let (mut values, mut negated) = (vec![], vec![]);
    let mut taken: Option<Src> = None;
    for round in 0..k {
        let name = |s: &str| format!("{round}.{s}");
        let free = taken.clone().map(|t| c.step(&name("free"), Op::Unary(UnaryOp::Not), vec![t]));
        // The numbers not yet taken (every element, in the first round of integers).
        let valid = both(c, &name("valid"), free.clone(), number.clone());
        let masked = match &valid {
            Some(v) => c.step(&name("masked"), Op::Where, vec![v.clone(), key.clone(), low()]),
            None => key.clone(),
        };
        let top = reduce(c, &name("top"), masked);
        let equal = c.step(&name("equal"), Op::Binary(BinaryOp::Equal), vec![key.clone(), top]);
        let mut hit = both(c, &name("hit"), valid.clone(), Some(equal)).expect("an operand");
        if let Some(nan) = &nan {
            // NaN not yet taken: first while a lane has any where the largest come first,
            // else only once a lane has no number left.
            let nans = both(c, &name("nans"), free.clone(), Some(nan.clone())).expect("an operand");
            let first = if largest { nans.clone() } else { valid.clone().expect("floats have `number`") };
            let flag = c.step(
                &name("flag"),
                Op::Where,
                vec![first, known("one", DType::F32, 1.0), known("zero", DType::F32, 0.0)],
            );
            let any = reduce(c, &name("any"), flag);
            let any =
                c.step(&name("any.bool"), Op::Binary(BinaryOp::Greater), vec![any, known("half", DType::F32, 0.5)]);
            let (yes, no) = if largest { (nans, hit) } else { (hit, nans) };
            hit = c.step(&name("hit.nan"), Op::Where, vec![any, yes, no]);
        }
        // (The negated index: compared with the negated positions here, negated back once for
        // all rounds at the end.)
        let found = first_hit_negated(c, &name(""), hit, neg.clone(), axes.clone(), true);
        let pick = c.step(&name("pick"), Op::Binary(BinaryOp::Equal), vec![neg.clone(), found.clone()]);
        let one = c.step(&name("picked"), Op::Where, vec![pick.clone(), Src::In(0), low()]);
        values.push(reduce(c, &name("value"), one));
        negated.push(found);
        taken = Some(match taken {
            Some(t) => c.step(&name("taken"), Op::Binary(BinaryOp::Or), vec![t, pick]),
            None => pick,
        });
    }
    let mut join = |what: &str, mut v: Vec<Src>| match v.len() {
        1 => v.pop().expect("one"),
        _ => c.step(what, Op::Concat { axis: a as i64 }, v),
    };
    let values = join("values", values);
    let negated = join("indices.negated", negated);
    let index_values = c.step("indices.all", Op::Unary(UnaryOp::Neg), vec![negated]);
    Ok(vec![Some(values), Some(index_values)])
}
