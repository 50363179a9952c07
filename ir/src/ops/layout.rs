//! Ops that move elements without computing: `Transpose`, `Reshape` (a view: the data does
//! not move), `Expand`, `Split`, `Slice` and `Concat`, on tensors of any dtype. Sizes may be
//! symbolic: a concat of a `past` cache with `new` keys has `past + new` rows.

use super::source::{expr_from_json, expr_json};
use super::{arity, axis_of, out, read_attrs, Attrs};
use crate::dim::DimExpr;
use crate::op::Op;
use crate::shape::{broadcast, fmt_shape, reshape_dims, Bindings};
use crate::tensor::{broadcast_index, strides, Data, Tensor};
use crate::types::{Dim, TensorType};
use serde::Deserialize;
use serde_json::{json, Value as J};

/// The name of [`Op::Transpose`].
pub const TRANSPOSE: &str = "Transpose";
/// The name of [`Op::Reshape`].
pub const RESHAPE: &str = "Reshape";
/// The name of [`Op::Expand`].
pub const EXPAND: &str = "Expand";
/// The name of [`Op::Split`].
pub const SPLIT: &str = "Split";
/// The name of [`Op::Slice`].
pub const SLICE: &str = "Slice";
/// The name of [`Op::Concat`].
pub const CONCAT: &str = "Concat";

/// Type of a transpose: the input's dims permuted.
pub(crate) fn infer_transpose(perm: &[usize], ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(TRANSPOSE, ins, 1)?;
    let r = ins[0].rank();
    let mut seen = vec![false; r];
    if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
        return Err(format!("perm {perm:?} is not a permutation of {r} axes"));
    }
    Ok(vec![TensorType::new(ins[0].dtype, perm.iter().map(|&p| ins[0].shape[p].clone()).collect())])
}

/// Type of a reshape, by ONNX rules over possibly symbolic dims.
pub(crate) fn infer_reshape(shape: &[DimExpr], ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(RESHAPE, ins, 1)?;
    Ok(vec![TensorType::new(ins[0].dtype, reshape_dims(&ins[0].shape, shape)?)])
}

/// Type of an expand: the input's shape and `shape` broadcast.
pub(crate) fn infer_expand(shape: &[Dim], ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(EXPAND, ins, 1)?;
    Ok(vec![TensorType::new(ins[0].dtype, broadcast(&ins[0].shape, shape)?)])
}

/// Types of a split: one per part, the axis cut into the given sizes (which must add up to
/// it, as expressions when symbolic).
pub(crate) fn infer_split(axis: i64, sizes: &[Dim], ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(SPLIT, ins, 1)?;
    let t = ins[0];
    let ax = axis_of(axis, t.rank())?;
    if sizes.is_empty() {
        return Err("Split needs at least one part".into());
    }
    let total = sizes.iter().try_fold(DimExpr::constant(0), |acc, d| acc.add(&d.expr()))?;
    if total != t.shape[ax].expr() {
        let shown: Vec<String> = sizes.iter().map(|d| d.to_string()).collect();
        return Err(format!(
            "split sizes [{}] sum to {total} but axis {ax} has size {}",
            shown.join(", "),
            t.shape[ax]
        ));
    }
    Ok(sizes
        .iter()
        .map(|s| {
            let mut shape = t.shape.clone();
            shape[ax] = s.clone();
            TensorType::new(t.dtype, shape)
        })
        .collect())
}

/// Checks that `len` indices from `start` in steps of `step` fit an axis of size `dim`.
fn slice_fits(start: usize, len: usize, step: i64, dim: usize) -> Result<(), String> {
    if len == 0 {
        return Ok(());
    }
    let last = (start as i128) + (len as i128 - 1) * step as i128;
    if start >= dim || last < 0 || last >= dim as i128 {
        return Err(format!(
            "slice of {len} elements from index {start} in steps of {step} does not fit an axis of size {dim}"
        ));
    }
    Ok(())
}

/// Type of a slice: `len` elements of the axis; checked against the axis when all is known
/// (symbolic bounds are checked when a run binds them).
pub(crate) fn infer_slice(
    axis: i64,
    start: &Dim,
    len: &Dim,
    step: i64,
    ins: &[&TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(SLICE, ins, 1)?;
    let t = ins[0];
    let ax = axis_of(axis, t.rank())?;
    if step == 0 {
        return Err("slice step must not be 0".into());
    }
    if let (Some(s), Some(l), Some(d)) = (start.fixed(), len.fixed(), t.shape[ax].fixed()) {
        slice_fits(s as usize, l as usize, step, d as usize).map_err(|m| format!("{m} (axis {ax})"))?;
    }
    let mut shape = t.shape.clone();
    shape[ax] = len.clone();
    Ok(vec![TensorType::new(t.dtype, shape)])
}

/// Type of a concat: the inputs agree outside the axis, whose sizes add up (as expressions
/// when symbolic).
pub(crate) fn infer_concat(axis: i64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    if ins.is_empty() {
        return Err("Concat needs at least one input".into());
    }
    let t0 = ins[0];
    let ax = axis_of(axis, t0.rank())?;
    let mut total = DimExpr::constant(0);
    for t in ins {
        if t.dtype != t0.dtype || t.rank() != t0.rank() {
            return Err(format!("inputs {t0} and {t} cannot be concatenated"));
        }
        for (i, (a, b)) in t.shape.iter().zip(&t0.shape).enumerate() {
            if i != ax && a != b {
                return Err(format!("inputs {t0} and {t} differ outside axis {ax}"));
            }
        }
        total = total.add(&t.shape[ax].expr())?;
    }
    let mut shape = t0.shape.clone();
    shape[ax] = Dim::from_expr(total)?;
    Ok(vec![TensorType::new(t0.dtype, shape)])
}

/// Generic axis permutation.
pub fn transpose(t: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let is = strides(&t.shape);
    let os = strides(&shape);
    let idx = (0..t.numel()).map(|i| {
        let mut j = 0;
        for (d, &p) in perm.iter().enumerate() {
            j += ((i / os[d]) % shape[d]) * is[p];
        }
        j
    });
    let data = t.data.gather(idx);
    Tensor { shape, dtype: t.dtype, data }
}

/// `len` elements of `axis` from `start` in steps of `step`; the caller has checked that
/// they fit.
pub fn slice(t: &Tensor, axis: usize, start: usize, len: usize, step: i64) -> Tensor {
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let d = t.shape[axis];
    let idx = (0..outer).flat_map(move |o| {
        (0..len).flat_map(move |i| {
            let at = (start as i64 + i as i64 * step) as usize;
            (0..inner).map(move |r| (o * d + at) * inner + r)
        })
    });
    let data = t.data.gather(idx);
    let mut shape = t.shape.clone();
    shape[axis] = len;
    Tensor { shape, dtype: t.dtype, data }
}

/// Evaluates a transpose.
pub(crate) fn eval_transpose(perm: &[usize], ins: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    Ok(vec![transpose(ins[0], perm)])
}

/// Evaluates a reshape: the same data under the output shape.
pub(crate) fn eval_reshape(ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let t = ins[0].clone();
    if t.numel() != shapes[0].iter().product::<usize>() {
        return Err(format!("cannot view {} elements as shape {:?}", t.numel(), shapes[0]));
    }
    Ok(vec![Tensor { shape: shapes[0].clone(), dtype: t.dtype, data: t.data }])
}

/// Evaluates an expand: the input broadcast to the output shape.
pub(crate) fn eval_expand(ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let t = ins[0];
    let idx = broadcast_index(&shapes[0], &t.shape);
    Ok(vec![Tensor { shape: shapes[0].clone(), dtype: t.dtype, data: t.data.gather(idx.into_iter()) }])
}

/// Evaluates a split: consecutive slices of the axis, of the output sizes.
pub(crate) fn eval_split(axis: i64, ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let ax = axis_of(axis, ins[0].shape.len())?;
    let total: usize = shapes.iter().map(|s| s[ax]).sum();
    if total != ins[0].shape[ax] {
        return Err(format!("split sizes sum to {total} but the axis has {}", ins[0].shape[ax]));
    }
    let mut start = 0;
    Ok(shapes
        .iter()
        .map(|s| {
            let t = slice(ins[0], ax, start, s[ax], 1);
            start += s[ax];
            t
        })
        .collect())
}

/// Evaluates a slice, its start under the run's binding; fails when it does not fit.
pub(crate) fn eval_slice(
    axis: i64,
    start: &Dim,
    step: i64,
    ins: &[&Tensor],
    shapes: &[Vec<usize>],
    b: &Bindings,
) -> Result<Vec<Tensor>, String> {
    let ax = axis_of(axis, ins[0].shape.len())?;
    let s = start.eval(b)?;
    let len = shapes[0][ax];
    slice_fits(s, len, step, ins[0].shape[ax]).map_err(|m| format!("{m} (axis {ax})"))?;
    Ok(vec![slice(ins[0], ax, s, len, step)])
}

/// Evaluates a concat: for each outer index, each input's block in turn.
pub(crate) fn eval_concat(axis: i64, ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let ax = axis_of(axis, shapes[0].len())?;
    let outer: usize = shapes[0][..ax].iter().product();
    // (input, offset) of every output element, in order.
    let mut idx: Vec<(usize, usize)> = Vec::with_capacity(shapes[0].iter().product());
    for o in 0..outer {
        for (k, t) in ins.iter().enumerate() {
            let chunk: usize = t.shape[ax..].iter().product();
            idx.extend((o * chunk..(o + 1) * chunk).map(|j| (k, j)));
        }
    }
    if idx.len() != shapes[0].iter().product::<usize>() {
        return Err(format!(
            "the inputs hold {} elements but the output shape {:?} needs another count",
            idx.len(),
            shapes[0]
        ));
    }
    let data = match &ins[0].data {
        Data::F32(_) => Data::F32(
            idx.iter().map(|&(k, j)| ins[k].as_f32().map(|v| v[j])).collect::<Option<_>>().ok_or("mixed dtypes")?,
        ),
        Data::I64(_) => Data::I64(
            idx.iter().map(|&(k, j)| ins[k].as_i64().map(|v| v[j])).collect::<Option<_>>().ok_or("mixed dtypes")?,
        ),
        Data::Bool(_) => Data::Bool(
            idx.iter().map(|&(k, j)| ins[k].as_bool().map(|v| v[j])).collect::<Option<_>>().ok_or("mixed dtypes")?,
        ),
    };
    let ty = TensorType::new(ins[0].dtype, vec![]);
    Ok(vec![out(&ty, &shapes[0], data)])
}

/// Dump label of a transpose.
pub(crate) fn label_transpose(perm: &[usize]) -> String {
    format!("{TRANSPOSE}(perm={perm:?})")
}

/// Dump label of a reshape: `Reshape([0, -1, 8])`, `Reshape([batch, seq, 4, 8])`.
pub(crate) fn label_reshape(shape: &[DimExpr]) -> String {
    let s: Vec<String> = shape.iter().map(|e| e.to_string()).collect();
    format!("{RESHAPE}([{}])", s.join(", "))
}

/// Dump label of an expand: `Expand([batch,1,seq,seq])`.
pub(crate) fn label_expand(shape: &[Dim]) -> String {
    format!("{EXPAND}({})", fmt_shape(shape))
}

/// Dump label of a split.
pub(crate) fn label_split(axis: i64, sizes: &[Dim]) -> String {
    let s: Vec<String> = sizes.iter().map(|d| d.to_string()).collect();
    format!("{SPLIT}(axis={axis}, sizes=[{}])", s.join(", "))
}

/// Dump label of a slice: `Slice(axis=-1, 0..4)`, or with a step, `Slice(axis=0, 7, len=8,
/// step=-1)`.
pub(crate) fn label_slice(axis: i64, start: &Dim, len: &Dim, step: i64) -> String {
    match (step, start.add(len)) {
        (1, Ok(end)) => format!("{SLICE}(axis={axis}, {start}..{end})"),
        _ => format!("{SLICE}(axis={axis}, {start}, len={len}, step={step})"),
    }
}

/// Dump label of a concat.
pub(crate) fn label_concat(axis: i64) -> String {
    format!("{CONCAT}(axis={axis})")
}

/// JSON attributes of a transpose: `perm`.
pub(crate) fn write_transpose(perm: &[usize], m: &mut Attrs) {
    m.insert("perm".into(), json!(perm));
}

/// JSON attributes of a reshape: `shape`, integers and expression texts.
pub(crate) fn write_reshape(shape: &[DimExpr], m: &mut Attrs) {
    m.insert("shape".into(), J::Array(shape.iter().map(expr_json).collect()));
}

/// JSON attributes of an expand: `shape`.
pub(crate) fn write_expand(shape: &[Dim], m: &mut Attrs) {
    m.insert("shape".into(), json!(shape));
}

/// JSON attributes of a split: `axis`, `sizes`.
pub(crate) fn write_split(axis: i64, sizes: &[Dim], m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("sizes".into(), json!(sizes));
}

/// JSON attributes of a slice: `axis`, `start`, `end` for a step of 1 (the form every
/// version reads); `axis`, `start`, `len`, `step` otherwise.
pub(crate) fn write_slice(axis: i64, start: &Dim, len: &Dim, step: i64, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("start".into(), json!(start));
    match (step, start.add(len)) {
        (1, Ok(end)) => {
            m.insert("end".into(), json!(end));
        }
        _ => {
            m.insert("len".into(), json!(len));
            m.insert("step".into(), json!(step));
        }
    }
}

/// JSON attributes of a concat: `axis`.
pub(crate) fn write_concat(axis: i64, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
}

/// Reads a layout op named `name` from its JSON attributes; `None` if `name` is not one.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TransposeAttrs {
        perm: Vec<usize>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ReshapeAttrs {
        shape: Vec<J>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExpandAttrs {
        shape: Vec<Dim>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SplitAttrs {
        axis: i64,
        sizes: Vec<Dim>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SliceAttrs {
        axis: i64,
        start: Dim,
        #[serde(default)]
        end: Option<Dim>,
        #[serde(default)]
        len: Option<Dim>,
        #[serde(default)]
        step: Option<i64>,
    }
    let slice = |s: SliceAttrs| -> Result<Op, String> {
        let len = match (s.end, s.len, s.step) {
            (Some(end), None, None | Some(1)) => Dim::from_expr(end.expr().sub(&s.start.expr())?)
                .map_err(|_| format!("bad attributes for {SLICE}: end {end} comes before start {}", s.start))?,
            (None, Some(len), _) => len,
            _ => return Err(format!("bad attributes for {SLICE}: give `end` (a step of 1) or `len` and `step`")),
        };
        Ok(Op::Slice { axis: s.axis, start: s.start, len, step: s.step.unwrap_or(1) })
    };
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConcatAttrs {
        axis: i64,
    }
    Some(match name {
        TRANSPOSE => read_attrs::<TransposeAttrs>(name, a).map(|t| Op::Transpose { perm: t.perm }),
        RESHAPE => read_attrs::<ReshapeAttrs>(name, a).and_then(|r| {
            let shape = r.shape.iter().map(expr_from_json).collect::<Result<_, _>>();
            shape.map(|shape| Op::Reshape { shape }).map_err(|m| format!("bad attributes for {RESHAPE}: {m}"))
        }),
        EXPAND => read_attrs::<ExpandAttrs>(name, a).map(|e| Op::Expand { shape: e.shape }),
        SPLIT => read_attrs::<SplitAttrs>(name, a).map(|s| Op::Split { axis: s.axis, sizes: s.sizes }),
        SLICE => read_attrs::<SliceAttrs>(name, a).and_then(slice),
        CONCAT => read_attrs::<ConcatAttrs>(name, a).map(|c| Op::Concat { axis: c.axis }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_slice() {
        let t = Tensor::new(vec![2, 3], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        assert_eq!(transpose(&t, &[1, 0]).as_f32().unwrap(), &[0., 3., 1., 4., 2., 5.]);
        assert_eq!(slice(&t, 1, 1, 2, 1).as_f32().unwrap(), &[1., 2., 4., 5.]);
        assert_eq!(slice(&t, 1, 2, 3, -1).as_f32().unwrap(), &[2., 1., 0., 5., 4., 3.]);
        assert_eq!(slice(&t, 1, 0, 2, 2).as_f32().unwrap(), &[0., 2., 3., 5.]);
        let b = Tensor::bool(vec![2, 2], vec![true, false, false, false]).unwrap();
        assert_eq!(transpose(&b, &[1, 0]).as_bool().unwrap(), &[true, false, false, false]);
    }

    #[test]
    fn slice_json_keeps_the_old_form_for_unit_steps() {
        for (op, text) in [
            (
                Op::Slice { axis: -1, start: Dim::Fixed(2), len: Dim::Fixed(3), step: 1 },
                r#"{"axis":-1,"start":2,"end":5}"#,
            ),
            (
                Op::Slice { axis: 2, start: Dim::sym("past"), len: Dim::sym("new"), step: 1 },
                r#"{"axis":2,"start":"past","end":"new + past"}"#,
            ),
            (
                Op::Slice { axis: 0, start: Dim::Fixed(7), len: Dim::Fixed(8), step: -1 },
                r#"{"axis":0,"start":7,"len":8,"step":-1}"#,
            ),
        ] {
            let mut m = Attrs::new();
            op.write_attrs(&mut m);
            assert_eq!(serde_json::to_string(&m).unwrap(), text);
            assert_eq!(Op::from_json(SLICE, &mut m, &[]), Some(Ok(op)));
        }
        let mut m: Attrs = serde_json::from_str(r#"{"axis":0,"start":5,"end":2}"#).unwrap();
        assert_eq!(
            from_json(SLICE, &mut m).unwrap().unwrap_err(),
            "bad attributes for Slice: end 2 comes before start 5"
        );
    }
}
