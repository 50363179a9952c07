//! Ops that move elements without computing: `Transpose`, `Reshape` (a view: the data does
//! not move), `Split`, `Slice` and `Concat`.

use super::{arity, read_attrs, Attrs};
use crate::op::Op;
use crate::shape::{norm_axis, reshape_dims};
use crate::tensor::{strides, Tensor};
use crate::types::{Dim, TensorType};
use serde::Deserialize;
use serde_json::json;

/// The name of [`Op::Transpose`].
pub const TRANSPOSE: &str = "Transpose";
/// The name of [`Op::Reshape`].
pub const RESHAPE: &str = "Reshape";
/// The name of [`Op::Split`].
pub const SPLIT: &str = "Split";
/// The name of [`Op::Slice`].
pub const SLICE: &str = "Slice";
/// The name of [`Op::Concat`].
pub const CONCAT: &str = "Concat";

/// An axis of a tensor of rank `r`, normalised, or the error naming it.
fn axis_of(axis: i64, r: usize) -> Result<usize, String> {
    norm_axis(axis, r).ok_or_else(|| format!("axis {axis} out of range for rank {r}"))
}

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
pub(crate) fn infer_reshape(shape: &[i64], ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(RESHAPE, ins, 1)?;
    Ok(vec![TensorType::new(ins[0].dtype, reshape_dims(&ins[0].shape, shape)?)])
}

/// Types of a split: one per part, the axis (of known size) cut into the given sizes.
pub(crate) fn infer_split(axis: i64, sizes: &[u64], ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(SPLIT, ins, 1)?;
    let t = ins[0];
    let ax = axis_of(axis, t.rank())?;
    if sizes.is_empty() {
        return Err("Split needs at least one part".into());
    }
    let total: u64 = sizes.iter().sum();
    match &t.shape[ax] {
        Dim::Fixed(n) if *n == total => {}
        d => return Err(format!("split sizes {sizes:?} sum to {total} but axis {ax} has size {d}")),
    }
    Ok(sizes
        .iter()
        .map(|&s| {
            let mut shape = t.shape.clone();
            shape[ax] = Dim::Fixed(s);
            TensorType::new(t.dtype, shape)
        })
        .collect())
}

/// Type of a slice: `start..end` of an axis of known size.
pub(crate) fn infer_slice(axis: i64, start: u64, end: u64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(SLICE, ins, 1)?;
    let t = ins[0];
    let ax = axis_of(axis, t.rank())?;
    match &t.shape[ax] {
        Dim::Fixed(n) if start <= end && end <= *n => {}
        d => return Err(format!("slice {start}..{end} does not fit axis {ax} of size {d}")),
    }
    let mut shape = t.shape.clone();
    shape[ax] = Dim::Fixed(end - start);
    Ok(vec![TensorType::new(t.dtype, shape)])
}

/// Type of a concat: the inputs agree outside the axis, whose known sizes add up.
pub(crate) fn infer_concat(axis: i64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    if ins.is_empty() {
        return Err("Concat needs at least one input".into());
    }
    let t0 = ins[0];
    let ax = axis_of(axis, t0.rank())?;
    let mut total = 0u64;
    for t in ins {
        if t.dtype != t0.dtype || t.rank() != t0.rank() {
            return Err(format!("inputs {t0} and {t} cannot be concatenated"));
        }
        for (i, (a, b)) in t.shape.iter().zip(&t0.shape).enumerate() {
            if i != ax && a != b {
                return Err(format!("inputs {t0} and {t} differ outside axis {ax}"));
            }
        }
        total += t.shape[ax].fixed().ok_or("concat axis must have known sizes")?;
    }
    let mut shape = t0.shape.clone();
    shape[ax] = Dim::Fixed(total);
    Ok(vec![TensorType::new(t0.dtype, shape)])
}

/// Generic axis permutation.
pub fn transpose(t: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let is = strides(&t.shape);
    let os = strides(&shape);
    let data = (0..t.numel())
        .map(|i| {
            let mut j = 0;
            for (d, &p) in perm.iter().enumerate() {
                j += ((i / os[d]) % shape[d]) * is[p];
            }
            t.data[j]
        })
        .collect();
    Tensor { shape, data }
}

/// `t[.., start..end, ..]` along `axis`.
pub fn slice(t: &Tensor, axis: usize, start: usize, end: usize) -> Tensor {
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let d = t.shape[axis];
    let mut data = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        data.extend_from_slice(&t.data[(o * d + start) * inner..(o * d + end) * inner]);
    }
    let mut shape = t.shape.clone();
    shape[axis] = end - start;
    Tensor { shape, data }
}

/// Evaluates a transpose.
pub(crate) fn eval_transpose(perm: &[usize], ins: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    Ok(vec![transpose(ins[0], perm)])
}

/// Evaluates a reshape: the same data under the output shape.
pub(crate) fn eval_reshape(ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    Ok(vec![Tensor { shape: shapes[0].clone(), data: ins[0].data.clone() }])
}

/// Evaluates a split: consecutive slices of the axis.
pub(crate) fn eval_split(axis: i64, sizes: &[u64], ins: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    let ax = axis_of(axis, ins[0].shape.len())?;
    let mut start = 0;
    Ok(sizes
        .iter()
        .map(|&s| {
            let t = slice(ins[0], ax, start, start + s as usize);
            start += s as usize;
            t
        })
        .collect())
}

/// Evaluates a slice.
pub(crate) fn eval_slice(axis: i64, start: u64, end: u64, ins: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    let ax = axis_of(axis, ins[0].shape.len())?;
    Ok(vec![slice(ins[0], ax, start as usize, end as usize)])
}

/// Evaluates a concat: for each outer index, each input's block in turn.
pub(crate) fn eval_concat(axis: i64, ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    let ax = axis_of(axis, shapes[0].len())?;
    let outer: usize = shapes[0][..ax].iter().product();
    let mut data = Vec::with_capacity(shapes[0].iter().product());
    for o in 0..outer {
        for t in ins {
            let chunk: usize = t.shape[ax..].iter().product();
            data.extend_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
        }
    }
    Ok(vec![Tensor { shape: shapes[0].clone(), data }])
}

/// Dump label of a transpose.
pub(crate) fn label_transpose(perm: &[usize]) -> String {
    format!("{TRANSPOSE}(perm={perm:?})")
}

/// Dump label of a reshape.
pub(crate) fn label_reshape(shape: &[i64]) -> String {
    format!("{RESHAPE}({shape:?})")
}

/// Dump label of a split.
pub(crate) fn label_split(axis: i64, sizes: &[u64]) -> String {
    format!("{SPLIT}(axis={axis}, sizes={sizes:?})")
}

/// Dump label of a slice.
pub(crate) fn label_slice(axis: i64, start: u64, end: u64) -> String {
    format!("{SLICE}(axis={axis}, {start}..{end})")
}

/// Dump label of a concat.
pub(crate) fn label_concat(axis: i64) -> String {
    format!("{CONCAT}(axis={axis})")
}

/// JSON attributes of a transpose: `perm`.
pub(crate) fn write_transpose(perm: &[usize], m: &mut Attrs) {
    m.insert("perm".into(), json!(perm));
}

/// JSON attributes of a reshape: `shape`.
pub(crate) fn write_reshape(shape: &[i64], m: &mut Attrs) {
    m.insert("shape".into(), json!(shape));
}

/// JSON attributes of a split: `axis`, `sizes`.
pub(crate) fn write_split(axis: i64, sizes: &[u64], m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("sizes".into(), json!(sizes));
}

/// JSON attributes of a slice: `axis`, `start`, `end`.
pub(crate) fn write_slice(axis: i64, start: u64, end: u64, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("start".into(), json!(start));
    m.insert("end".into(), json!(end));
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
        shape: Vec<i64>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SplitAttrs {
        axis: i64,
        sizes: Vec<u64>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SliceAttrs {
        axis: i64,
        start: u64,
        end: u64,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConcatAttrs {
        axis: i64,
    }
    Some(match name {
        TRANSPOSE => read_attrs::<TransposeAttrs>(name, a).map(|t| Op::Transpose { perm: t.perm }),
        RESHAPE => read_attrs::<ReshapeAttrs>(name, a).map(|r| Op::Reshape { shape: r.shape }),
        SPLIT => read_attrs::<SplitAttrs>(name, a).map(|s| Op::Split { axis: s.axis, sizes: s.sizes }),
        SLICE => read_attrs::<SliceAttrs>(name, a).map(|s| Op::Slice { axis: s.axis, start: s.start, end: s.end }),
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
        assert_eq!(transpose(&t, &[1, 0]).data, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(slice(&t, 1, 1, 3).data, vec![1., 2., 4., 5.]);
    }
}
