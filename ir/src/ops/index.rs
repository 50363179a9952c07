//! Indexing: `Gather` (rows of `data` along an axis by integer indices: embeddings),
//! `GatherND` (ONNX's, as exports use it for masks), their mirror images `ScatterND` (a
//! static KV cache's `index_copy_`) and `ScatterElements` (`scatter_`), and `Range` (an
//! arithmetic sequence whose length may be a dim expression). Negative indices count from the
//! end; an index out of range is an error naming it, never a read or write out of bounds. A
//! scatter (ONNX's reduction `none`) that would write one place twice is an error too: its
//! result would depend on the order of the writes.

use super::source::{expr_from_json, expr_json};
use super::{arity, axis_of, int, out, read_attrs, Attrs};
use crate::dim::DimExpr;
use crate::op::Op;
use crate::shape::{fmt_shape, Bindings};
use crate::tensor::{Data, Tensor};
use crate::types::{DType, Dim, TensorType};
use serde::Deserialize;
use serde_json::{json, Value as J};

/// The name of [`Op::Gather`].
pub const GATHER: &str = "Gather";
/// The name of [`Op::GatherND`].
pub const GATHER_ND: &str = "GatherND";
/// The name of [`Op::ScatterND`].
pub const SCATTER_ND: &str = "ScatterND";
/// The name of [`Op::ScatterElements`].
pub const SCATTER_ELEMENTS: &str = "ScatterElements";
/// The name of [`Op::Range`].
pub const RANGE: &str = "Range";

/// Type of a gather: `data.shape[..axis] + indices.shape + data.shape[axis + 1..]`.
pub(crate) fn infer_gather(axis: i64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(GATHER, ins, 2)?;
    let (data, idx) = (ins[0], ins[1]);
    int(GATHER, "indices", idx)?;
    let ax = axis_of(axis, data.rank())?;
    let mut shape = data.shape[..ax].to_vec();
    shape.extend(idx.shape.iter().cloned());
    shape.extend(data.shape[ax + 1..].iter().cloned());
    Ok(vec![TensorType::new(data.dtype, shape)])
}

/// An index normalised against a dim of size `d` (negative counts from the end); the error
/// names the index and where it was found.
fn norm_index(i: i64, d: usize, at: &dyn Fn() -> String) -> Result<usize, String> {
    let j = if i < 0 { i.checked_add(d as i64) } else { Some(i) };
    match j {
        Some(j) if (0..d as i64).contains(&j) => Ok(j as usize),
        _ => Err(format!("index {i} ({}) is out of range for a dim of size {d}", at())),
    }
}

/// Evaluates a gather.
pub(crate) fn eval_gather(
    axis: i64,
    ins: &[&Tensor],
    ty: &TensorType,
    shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, String> {
    let (data, idx) = (ins[0], ins[1]);
    let ids = idx.as_i64().ok_or("indices are not integers (a glufuse bug)")?;
    let ax = axis_of(axis, data.shape.len())?;
    let d = data.shape[ax];
    let outer: usize = data.shape[..ax].iter().product();
    let inner: usize = data.shape[ax + 1..].iter().product();
    let rows = ids
        .iter()
        .enumerate()
        .map(|(k, &i)| norm_index(i, d, &|| format!("element {k} of the indices, axis {ax}")))
        .collect::<Result<Vec<_>, _>>()?;
    let picks =
        (0..outer).flat_map(|o| rows.iter().flat_map(move |&r| (0..inner).map(move |x| (o * d + r) * inner + x)));
    Ok(vec![out(ty, &shapes[0], data.data.gather(picks))])
}

/// Type of a `GatherND`: `indices.shape[..-1] + data.shape[batch_dims + k..]`, with `k` the
/// (known) last dim of `indices`, the first `batch_dims` dims shared.
pub(crate) fn infer_gather_nd(batch_dims: u64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(GATHER_ND, ins, 2)?;
    let (data, idx) = (ins[0], ins[1]);
    int(GATHER_ND, "indices", idx)?;
    let b = batch_dims as usize;
    let Some(k) = idx.shape.last().and_then(Dim::fixed) else {
        return Err(format!("the last dim of the indices {} must be known", fmt_shape(&idx.shape)));
    };
    let k = k as usize;
    if idx.rank() < b + 1 || data.rank() < b + k || k == 0 && data.rank() == b {
        return Err(format!(
            "indices {} do not fit data {} with {b} batch dims",
            fmt_shape(&idx.shape),
            fmt_shape(&data.shape)
        ));
    }
    if data.shape[..b] != idx.shape[..b] {
        return Err(format!(
            "data {} and indices {} differ in their {b} batch dims",
            fmt_shape(&data.shape),
            fmt_shape(&idx.shape)
        ));
    }
    let mut shape = idx.shape[..idx.rank() - 1].to_vec();
    shape.extend(data.shape[b + k..].iter().cloned());
    Ok(vec![TensorType::new(data.dtype, shape)])
}

/// Evaluates a `GatherND`.
pub(crate) fn eval_gather_nd(
    batch_dims: u64,
    ins: &[&Tensor],
    ty: &TensorType,
    shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, String> {
    let (data, idx) = (ins[0], ins[1]);
    let ids = idx.as_i64().ok_or("indices are not integers (a glufuse bug)")?;
    let b = batch_dims as usize;
    let k = *idx.shape.last().expect("rank checked");
    let batch: usize = data.shape[..b].iter().product();
    let slice: usize = data.shape[b + k..].iter().product();
    let per_batch_data: usize = data.shape[b..].iter().product();
    let tuples: usize = idx.shape[..idx.shape.len() - 1].iter().product();
    let tuples_per_batch = tuples.checked_div(batch).unwrap_or(0);
    let strides = crate::tensor::strides(&data.shape[b..b + k]);
    let mut starts = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = (t / tuples_per_batch.max(1)) * per_batch_data;
        for (j, &st) in strides.iter().enumerate() {
            let i = ids[t * k + j];
            let at = || format!("index tuple {t}, position {j}");
            off += norm_index(i, data.shape[b + j], &at)? * st * slice;
        }
        starts.push(off);
    }
    let picks = starts.into_iter().flat_map(|s| s..s + slice);
    Ok(vec![out(ty, &shapes[0], data.data.gather(picks))])
}

/// Checks that a scatter's updates have the data's dtype.
fn same_dtype(name: &str, data: &TensorType, updates: &TensorType) -> Result<(), String> {
    if data.dtype == updates.dtype {
        Ok(())
    } else {
        Err(format!("{name} writes {} updates into {} data: they must be of one dtype", updates.dtype, data.dtype))
    }
}

/// Type of a `ScatterND`: the data's. The indices `[.., k]` hold tuples of `k` (known, 1 to
/// the data's rank) indices into the data's first `k` dims; the updates must be shaped
/// `indices.shape[..-1] + data.shape[k..]`, one slice per tuple.
pub(crate) fn infer_scatter_nd(ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(SCATTER_ND, ins, 3)?;
    let (data, idx, upd) = (ins[0], ins[1], ins[2]);
    int(SCATTER_ND, "indices", idx)?;
    same_dtype(SCATTER_ND, data, upd)?;
    let Some(k) = idx.shape.last().and_then(Dim::fixed) else {
        return Err(format!("the last dim of the indices {} must be known", fmt_shape(&idx.shape)));
    };
    let k = k as usize;
    if k == 0 || k > data.rank() {
        return Err(format!(
            "index tuples of {k} do not fit data {}: the last dim of the indices must be from 1 to its rank",
            fmt_shape(&data.shape)
        ));
    }
    let mut want = idx.shape[..idx.rank() - 1].to_vec();
    want.extend(data.shape[k..].iter().cloned());
    if upd.shape != want {
        return Err(format!(
            "updates {} do not fit indices {} into data {}: they must be {}",
            fmt_shape(&upd.shape),
            fmt_shape(&idx.shape),
            fmt_shape(&data.shape),
            fmt_shape(&want)
        ));
    }
    Ok(vec![data.clone()])
}

/// `data[c0, c1, ..]` for the coordinates `c`, as the errors write a place.
fn place(c: &[usize]) -> String {
    let c: Vec<String> = c.iter().map(|x| x.to_string()).collect();
    format!("data[{}]", c.join(", "))
}

/// The coordinates of row-major element `i` of a tensor of dims `dims`.
fn coords(mut i: usize, dims: &[usize]) -> Vec<usize> {
    let mut c = vec![0; dims.len()];
    for (a, &d) in dims.iter().enumerate().rev() {
        if d > 0 {
            c[a] = i % d;
            i /= d;
        }
    }
    c
}

/// Copies `n` values of `src` from `from` into `dst` at `at` (one representation: the
/// dtypes were checked at inference).
fn put(dst: &mut Data, at: usize, src: &Data, from: usize, n: usize) -> Result<(), String> {
    match (dst, src) {
        (Data::F32(d), Data::F32(s)) => d[at..at + n].copy_from_slice(&s[from..from + n]),
        (Data::I64(d), Data::I64(s)) => d[at..at + n].copy_from_slice(&s[from..from + n]),
        (Data::Bool(d), Data::Bool(s)) => d[at..at + n].copy_from_slice(&s[from..from + n]),
        _ => return Err("the updates are not of the data's dtype (a glufuse bug)".into()),
    }
    Ok(())
}

/// Evaluates a `ScatterND`: the data, each tuple's slice replaced by its updates. A tuple
/// out of range, or two tuples naming one slice, is an error.
pub(crate) fn eval_scatter_nd(ins: &[&Tensor], ty: &TensorType, shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let (data, idx, upd) = (ins[0], ins[1], ins[2]);
    let ids = idx.as_i64().ok_or("indices are not integers (a glufuse bug)")?;
    let k = *idx.shape.last().expect("rank checked");
    let slice: usize = data.shape[k..].iter().product();
    let tuples: usize = idx.shape[..idx.shape.len() - 1].iter().product();
    let strides = crate::tensor::strides(&data.shape[..k]);
    let mut first: Vec<Option<usize>> = vec![None; data.shape[..k].iter().product()];
    let mut v = data.data.clone();
    for t in 0..tuples {
        let mut dst = 0;
        for (j, &st) in strides.iter().enumerate() {
            let at = || format!("index tuple {t}, position {j}");
            dst += norm_index(ids[t * k + j], data.shape[j], &at)? * st;
        }
        if let Some(t0) = first[dst].replace(t) {
            return Err(format!(
                "index tuple {t} of the indices writes {}, as index tuple {t0} does: ScatterND (reduction 'none') writes each place once, or the result would depend on the order",
                place(&coords(dst, &data.shape[..k]))
            ));
        }
        put(&mut v, dst * slice, &upd.data, t * slice, slice)?;
    }
    Ok(vec![out(ty, &shapes[0], v)])
}

/// Type of a `ScatterElements` along `axis`: the data's. Indices and updates have one shape,
/// of the data's rank, no longer than the data's on every other axis.
pub(crate) fn infer_scatter_elements(axis: i64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(SCATTER_ELEMENTS, ins, 3)?;
    let (data, idx, upd) = (ins[0], ins[1], ins[2]);
    int(SCATTER_ELEMENTS, "indices", idx)?;
    same_dtype(SCATTER_ELEMENTS, data, upd)?;
    let ax = axis_of(axis, data.rank())?;
    if upd.shape != idx.shape {
        return Err(format!(
            "updates {} and indices {} must have one shape",
            fmt_shape(&upd.shape),
            fmt_shape(&idx.shape)
        ));
    }
    let fits = |(a, (i, d)): (usize, (&Dim, &Dim))| {
        a == ax || i == d || matches!((i.fixed(), d.fixed()), (Some(i), Some(d)) if i <= d)
    };
    if idx.rank() != data.rank() || !idx.shape.iter().zip(&data.shape).enumerate().all(fits) {
        return Err(format!(
            "indices {} do not fit data {}: the same rank, and no longer on any axis but {ax}",
            fmt_shape(&idx.shape),
            fmt_shape(&data.shape)
        ));
    }
    Ok(vec![data.clone()])
}

/// Evaluates a `ScatterElements` along `axis`: the data, element `c` of the updates written
/// at `c` with its coordinate along the axis replaced by the index at `c`. An index out of
/// range, or two indices naming one element, is an error.
pub(crate) fn eval_scatter_elements(
    axis: i64,
    ins: &[&Tensor],
    ty: &TensorType,
    shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, String> {
    let (data, idx, upd) = (ins[0], ins[1], ins[2]);
    let ids = idx.as_i64().ok_or("indices are not integers (a glufuse bug)")?;
    let ax = axis_of(axis, data.shape.len())?;
    let strides = crate::tensor::strides(&data.shape);
    let mut first: Vec<Option<usize>> = vec![None; data.numel()];
    let mut v = data.data.clone();
    for (e, &i) in ids.iter().enumerate() {
        let mut c = coords(e, &idx.shape);
        c[ax] = norm_index(i, data.shape[ax], &|| format!("element {e} of the indices, axis {ax}"))?;
        let dst: usize = c.iter().zip(&strides).map(|(x, s)| x * s).sum();
        if let Some(e0) = first[dst].replace(e) {
            return Err(format!(
                "element {e} of the indices writes {}, as element {e0} does: ScatterElements (reduction 'none') writes each place once, or the result would depend on the order",
                place(&c)
            ));
        }
        put(&mut v, dst, &upd.data, e, 1)?;
    }
    Ok(vec![out(ty, &shapes[0], v)])
}

/// The length of `start, start + delta, ..` below `limit` (above it for a negative delta):
/// `ceil((limit - start) / delta)`, 0 when that is a negative constant.
pub fn range_len(start: &DimExpr, limit: &DimExpr, delta: i64) -> Result<Dim, String> {
    if delta == 0 {
        return Err("Range delta must not be 0".into());
    }
    let span = if delta > 0 { limit.sub(start)? } else { start.sub(limit)? };
    let d = delta.checked_abs().ok_or("Range delta is too large")?;
    let len = span.add(&DimExpr::constant(d - 1))?.floor_div(d)?;
    match len.as_const() {
        Some(c) if c < 0 => Ok(Dim::Fixed(0)),
        _ => Dim::from_expr(len),
    }
}

/// Type of a range: one dim, its length.
pub(crate) fn infer_range(
    start: &DimExpr,
    limit: &DimExpr,
    delta: i64,
    dtype: DType,
    ins: &[&TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(RANGE, ins, 0)?;
    if !dtype.is_int() {
        return Err(format!("{RANGE} makes i64 or i32 values, not {dtype}"));
    }
    Ok(vec![TensorType::new(dtype, vec![range_len(start, limit, delta)?])])
}

/// Evaluates a range under the run's binding.
pub(crate) fn eval_range(
    start: &DimExpr,
    delta: i64,
    ty: &TensorType,
    shapes: &[Vec<usize>],
    b: &Bindings,
) -> Result<Vec<Tensor>, String> {
    let s = start.eval(&|n| b.get(n).and_then(|&v| i64::try_from(v).ok()))?;
    let n = shapes[0][0];
    let mut v = Vec::with_capacity(n);
    for i in 0..n as i64 {
        let x = i.checked_mul(delta).and_then(|d| s.checked_add(d)).ok_or("range values overflow")?;
        if ty.dtype == DType::I32 && i32::try_from(x).is_err() {
            return Err(format!("range value {x} does not fit an i32"));
        }
        v.push(x);
    }
    Ok(vec![out(ty, &shapes[0], Data::I64(v))])
}

/// Dump label of a gather.
pub(crate) fn label_gather(axis: i64) -> String {
    format!("{GATHER}(axis={axis})")
}

/// Dump label of a `GatherND`.
pub(crate) fn label_gather_nd(batch_dims: u64) -> String {
    format!("{GATHER_ND}(batch_dims={batch_dims})")
}

/// Dump label of a `ScatterElements`.
pub(crate) fn label_scatter_elements(axis: i64) -> String {
    format!("{SCATTER_ELEMENTS}(axis={axis})")
}

/// Dump label of a range: `Range(0..new + past, step 1, i64)`.
pub(crate) fn label_range(start: &DimExpr, limit: &DimExpr, delta: i64, dtype: DType) -> String {
    format!("{RANGE}({start}..{limit}, step {delta}, {dtype})")
}

/// JSON attributes of a gather: `axis`.
pub(crate) fn write_gather(axis: i64, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
}

/// JSON attributes of a `GatherND`: `batch_dims`.
pub(crate) fn write_gather_nd(batch_dims: u64, m: &mut Attrs) {
    m.insert("batch_dims".into(), json!(batch_dims));
}

/// JSON attributes of a `ScatterElements`: `axis`.
pub(crate) fn write_scatter_elements(axis: i64, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
}

/// JSON attributes of a range: `start`, `limit` (integers or expression texts), `delta`,
/// `dtype`.
pub(crate) fn write_range(start: &DimExpr, limit: &DimExpr, delta: i64, dtype: DType, m: &mut Attrs) {
    m.insert("start".into(), expr_json(start));
    m.insert("limit".into(), expr_json(limit));
    m.insert("delta".into(), json!(delta));
    m.insert("dtype".into(), json!(dtype));
}

/// Reads a gather, `GatherND`, scatter or range from its JSON attributes; `None` for another
/// name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GatherAttrs {
        #[serde(default)]
        axis: i64,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GatherNdAttrs {
        #[serde(default)]
        batch_dims: u64,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoAttrs {}
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ScatterElementsAttrs {
        #[serde(default)]
        axis: i64,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RangeAttrs {
        start: J,
        limit: J,
        delta: i64,
        dtype: DType,
    }
    Some(match name {
        GATHER => read_attrs::<GatherAttrs>(name, a).map(|g| Op::Gather { axis: g.axis }),
        GATHER_ND => read_attrs::<GatherNdAttrs>(name, a).map(|g| Op::GatherND { batch_dims: g.batch_dims }),
        SCATTER_ND => read_attrs::<NoAttrs>(name, a).map(|_| Op::ScatterND),
        SCATTER_ELEMENTS => read_attrs::<ScatterElementsAttrs>(name, a).map(|s| Op::ScatterElements { axis: s.axis }),
        RANGE => read_attrs::<RangeAttrs>(name, a).and_then(|r| {
            let e = |m: String| format!("bad attributes for {RANGE}: {m}");
            Ok(Op::Range {
                start: expr_from_json(&r.start).map_err(e)?,
                limit: expr_from_json(&r.limit).map_err(e)?,
                delta: r.delta,
                dtype: r.dtype,
            })
        }),
        _ => return None,
    })
}
