//! Reductions along axes ([`ReduceOp`]: mean, sum, max, product), `Softmax` along one axis
//! (numerically stable: the maximum is subtracted before exponentiating), `CumSum`
//! (exclusive, reverse) and `TopK` (the K first elements of each lane in onnxruntime's order,
//! with their indices). Floats accumulate in f64; integers wrap at their width.
//!
//! Empty reductions follow ONNX: a sum of nothing is 0, a product 1, a maximum of nothing the
//! lowest value of the dtype (-inf for floats), a mean of nothing NaN.

use super::{arity, axis_of, float, out, read_attrs, wrap, Attrs};
use crate::op::Op;
use crate::tensor::{strides, Data, Tensor};
use crate::types::{DType, Dim, TensorType};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The name of [`Op::Softmax`].
pub const SOFTMAX: &str = "Softmax";
/// The name of [`Op::CumSum`].
pub const CUMSUM: &str = "CumSum";
/// The name of [`Op::TopK`].
pub const TOPK: &str = "TopK";

/// A reduction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    /// The mean (floats).
    Mean,
    /// The sum.
    Sum,
    /// The maximum.
    Max,
    /// The product.
    Prod,
}

impl ReduceOp {
    /// Every reduction.
    pub const ALL: [ReduceOp; 4] = [ReduceOp::Mean, ReduceOp::Sum, ReduceOp::Max, ReduceOp::Prod];

    /// The op's name as the JSON format and the dumps spell it.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Mean => "ReduceMean",
            ReduceOp::Sum => "ReduceSum",
            ReduceOp::Max => "ReduceMax",
            ReduceOp::Prod => "ReduceProd",
        }
    }
}

/// The reduced axes, normalised, sorted and without repeats (every axis when `axes` is
/// empty).
fn reduced_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, String> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut v = axes.iter().map(|&a| axis_of(a, rank)).collect::<Result<Vec<_>, _>>()?;
    v.sort_unstable();
    if v.windows(2).any(|w| w[0] == w[1]) {
        return Err(format!("axes {axes:?} name an axis twice"));
    }
    Ok(v)
}

/// Type of a reduction: the reduced axes dropped, or kept with size 1.
pub(crate) fn infer_reduce(
    op: ReduceOp,
    axes: &[i64],
    keepdims: bool,
    ins: &[&TensorType],
) -> Result<Vec<TensorType>, String> {
    arity(op.name(), ins, 1)?;
    let t = ins[0];
    match op {
        ReduceOp::Mean => float(op.name(), t)?,
        ReduceOp::Sum | ReduceOp::Max | ReduceOp::Prod if t.dtype == DType::Bool => {
            return Err(format!("{} needs numeric inputs, got bool", op.name()))
        }
        ReduceOp::Sum | ReduceOp::Max | ReduceOp::Prod => {}
    }
    let red = reduced_axes(axes, t.rank())?;
    let shape = t
        .shape
        .iter()
        .enumerate()
        .filter_map(|(i, d)| match (red.contains(&i), keepdims) {
            (false, _) => Some(d.clone()),
            (true, true) => Some(Dim::Fixed(1)),
            (true, false) => None,
        })
        .collect();
    Ok(vec![TensorType::new(t.dtype, shape)])
}

/// For each input element, the index of the output element it reduces into.
fn reduce_targets(shape: &[usize], red: &[usize]) -> Vec<usize> {
    let kept: Vec<usize> = (0..shape.len()).map(|i| if red.contains(&i) { 1 } else { shape[i] }).collect();
    let (is, ks) = (strides(shape), strides(&kept));
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let mut j = 0;
            for d in 0..shape.len() {
                if !red.contains(&d) {
                    j += ((i / is[d]) % shape[d]) * ks[d];
                }
            }
            j
        })
        .collect()
}

/// Evaluates a reduction.
pub(crate) fn eval_reduce(
    op: ReduceOp,
    axes: &[i64],
    _keepdims: bool,
    ins: &[&Tensor],
    ty: &TensorType,
    shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, String> {
    let t = ins[0];
    let red = reduced_axes(axes, t.shape.len())?;
    let to = reduce_targets(&t.shape, &red);
    let m: usize = shapes[0].iter().product();
    let count: usize = red.iter().map(|&a| t.shape[a]).product();
    let data = match &t.data {
        Data::F32(v) => {
            let init = match op {
                ReduceOp::Max => f64::NEG_INFINITY,
                ReduceOp::Prod => 1.0,
                ReduceOp::Mean | ReduceOp::Sum => 0.0,
            };
            let mut acc = vec![init; m];
            for (x, &j) in v.iter().zip(&to) {
                let x = *x as f64;
                acc[j] = match op {
                    ReduceOp::Mean | ReduceOp::Sum => acc[j] + x,
                    ReduceOp::Prod => acc[j] * x,
                    ReduceOp::Max if x.is_nan() || acc[j].is_nan() => f64::NAN,
                    ReduceOp::Max => acc[j].max(x),
                };
            }
            if op == ReduceOp::Mean {
                acc.iter_mut().for_each(|a| *a /= count as f64);
            }
            Data::F32(acc.into_iter().map(|a| a as f32).collect())
        }
        Data::I64(v) => {
            let init = match op {
                ReduceOp::Max if t.dtype == DType::I32 => i32::MIN as i64,
                ReduceOp::Max => i64::MIN,
                ReduceOp::Prod => 1,
                ReduceOp::Sum | ReduceOp::Mean => 0,
            };
            let mut acc = vec![init; m];
            for (&x, &j) in v.iter().zip(&to) {
                acc[j] = match op {
                    ReduceOp::Max => acc[j].max(x),
                    ReduceOp::Sum | ReduceOp::Mean => wrap(t.dtype, acc[j].wrapping_add(x)),
                    ReduceOp::Prod => wrap(t.dtype, acc[j].wrapping_mul(x)),
                };
            }
            if op == ReduceOp::Mean {
                return Err("ReduceMean of integers (a glufuse bug: inference refuses it)".into());
            }
            Data::I64(acc)
        }
        Data::Bool(_) => return Err(format!("{} of booleans (a glufuse bug: inference refuses it)", op.name())),
    };
    Ok(vec![out(ty, &shapes[0], data)])
}

/// Type of a softmax: its input's (floating-point).
pub(crate) fn infer_softmax(axis: i64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(SOFTMAX, ins, 1)?;
    float(SOFTMAX, ins[0])?;
    axis_of(axis, ins[0].rank())?;
    Ok(vec![ins[0].clone()])
}

/// The lanes along `axis`: for each, its first element's index; the stride between elements.
fn lanes(shape: &[usize], axis: usize) -> (Vec<usize>, usize) {
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let d = shape[axis];
    let starts = (0..outer).flat_map(|o| (0..inner).map(move |r| o * d * inner + r)).collect();
    (starts, inner)
}

/// Evaluates a softmax: per lane, `exp(x - max) / sum`, the sum in f64. A lane of equal
/// values (every one masked with the same large negative number) comes out uniform, as in
/// onnxruntime; a lane of `-inf` comes out NaN, as there.
pub(crate) fn eval_softmax(axis: i64, ins: &[&Tensor], ty: &TensorType) -> Result<Vec<Tensor>, String> {
    let t = ins[0];
    let x = t.floats()?;
    let ax = axis_of(axis, t.shape.len())?;
    let d = t.shape[ax];
    let (starts, stride) = lanes(&t.shape, ax);
    let mut y = vec![0.0f32; x.len()];
    for s in starts {
        let at = |i: usize| s + i * stride;
        let max = (0..d).map(|i| x[at(i)]).fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0f64;
        for i in 0..d {
            let e = ((x[at(i)] - max) as f64).exp();
            y[at(i)] = e as f32;
            sum += e;
        }
        for i in 0..d {
            y[at(i)] = ((y[at(i)] as f64) / sum) as f32;
        }
    }
    Ok(vec![out(ty, &t.shape, Data::F32(y))])
}

/// Type of a cumulative sum: its input's (numeric).
pub(crate) fn infer_cumsum(axis: i64, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(CUMSUM, ins, 1)?;
    if ins[0].dtype == DType::Bool {
        return Err(format!("{CUMSUM} needs numeric inputs, got bool"));
    }
    axis_of(axis, ins[0].rank())?;
    Ok(vec![ins[0].clone()])
}

/// Evaluates a cumulative sum along `axis` (floats summed in f64).
pub(crate) fn eval_cumsum(
    axis: i64,
    exclusive: bool,
    reverse: bool,
    ins: &[&Tensor],
    ty: &TensorType,
) -> Result<Vec<Tensor>, String> {
    let t = ins[0];
    let ax = axis_of(axis, t.shape.len())?;
    let d = t.shape[ax];
    let (starts, stride) = lanes(&t.shape, ax);
    let order: Vec<usize> = if reverse { (0..d).rev().collect() } else { (0..d).collect() };
    let data = match &t.data {
        Data::F32(x) => {
            let mut y = vec![0.0f32; x.len()];
            for s in starts {
                let mut acc = 0.0f64;
                for &i in &order {
                    let j = s + i * stride;
                    if exclusive {
                        y[j] = acc as f32;
                        acc += x[j] as f64;
                    } else {
                        acc += x[j] as f64;
                        y[j] = acc as f32;
                    }
                }
            }
            Data::F32(y)
        }
        Data::I64(x) => {
            let mut y = vec![0i64; x.len()];
            for s in starts {
                let mut acc = 0i64;
                for &i in &order {
                    let j = s + i * stride;
                    let next = wrap(t.dtype, acc.wrapping_add(x[j]));
                    y[j] = if exclusive { acc } else { next };
                    acc = next;
                }
            }
            Data::I64(y)
        }
        Data::Bool(_) => return Err(format!("{CUMSUM} of booleans (a glufuse bug: inference refuses it)")),
    };
    Ok(vec![out(ty, &t.shape, data)])
}

/// Types of a top-K selection: the values (the input's dtype) and their indices (int64), the
/// input's shape with `k` along the axis. `k` must be at least 1 and, where the axis's size
/// is known, at most that (else it is checked when the size is bound).
pub(crate) fn infer_top_k(axis: i64, k: usize, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(TOPK, ins, 1)?;
    let t = ins[0];
    if t.dtype == DType::Bool {
        return Err(format!("{TOPK} needs numeric inputs, got bool"));
    }
    let ax = axis_of(axis, t.rank())?;
    if let Some(n) = t.shape[ax].fixed() {
        if k == 0 || k as u64 > n {
            return Err(format!("k = {k}, but k must be from 1 to the axis's size, {n}"));
        }
    } else if k == 0 {
        return Err("k = 0, but k must be at least 1".into());
    }
    let mut shape = t.shape.clone();
    shape[ax] = Dim::Fixed(k as u64);
    Ok(vec![TensorType::new(t.dtype, shape.clone()), TensorType::new(DType::I64, shape)])
}

/// The order a top-K selection takes floats in: `Less` where `a` comes before `b` (the
/// larger first with `largest`, else the smaller), NaN first among the largest and last
/// among the smallest, `-0.0` equal to `0.0` (equal values keep their order along the axis).
fn top_k_order(a: f32, b: f32, largest: bool) -> std::cmp::Ordering {
    use std::cmp::Ordering::{Equal, Greater, Less};
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => {
            if largest {
                Less
            } else {
                Greater
            }
        }
        (false, true) => {
            if largest {
                Greater
            } else {
                Less
            }
        }
        (false, false) if largest => b.partial_cmp(&a).unwrap_or(Equal),
        (false, false) => a.partial_cmp(&b).unwrap_or(Equal),
    }
}

/// Evaluates a top-K selection: each lane's elements sorted stably by [`top_k_order`] (or
/// by integer value), the first `k` of them and their indices.
pub(crate) fn eval_top_k(
    axis: i64,
    k: usize,
    largest: bool,
    ins: &[&Tensor],
    outs: &[TensorType],
) -> Result<Vec<Tensor>, String> {
    let t = ins[0];
    let ax = axis_of(axis, t.shape.len())?;
    let d = t.shape[ax];
    if k == 0 || k > d {
        return Err(format!("k = {k}, but k must be from 1 to the axis's size, {d}"));
    }
    let (starts, stride) = lanes(&t.shape, ax);
    let mut shape = t.shape.clone();
    shape[ax] = k;
    // Output element r of the lane starting at input element s.
    let at_out = |s: usize, r: usize| (s / (d * stride)) * k * stride + r * stride + s % stride;
    let mut picked = vec![0usize; starts.len() * k];
    let mut indices = vec![0i64; starts.len() * k];
    let mut order: Vec<usize> = Vec::with_capacity(d);
    for &s in &starts {
        order.clear();
        order.extend(0..d);
        match &t.data {
            Data::F32(x) => order.sort_by(|&i, &j| top_k_order(x[s + i * stride], x[s + j * stride], largest)),
            Data::I64(x) if largest => order.sort_by(|&i, &j| x[s + j * stride].cmp(&x[s + i * stride])),
            Data::I64(x) => order.sort_by(|&i, &j| x[s + i * stride].cmp(&x[s + j * stride])),
            Data::Bool(_) => return Err(format!("{TOPK} of booleans (a glufuse bug: inference refuses it)")),
        }
        for (r, &i) in order[..k].iter().enumerate() {
            picked[at_out(s, r)] = s + i * stride;
            indices[at_out(s, r)] = i as i64;
        }
    }
    let values = t.data.gather(picked.into_iter());
    Ok(vec![out(&outs[0], &shape, values), out(&outs[1], &shape, Data::I64(indices))])
}

/// Dump label of a top-K selection: `TopK(axis=-1, k=2)` (`smallest` where it is that).
pub(crate) fn label_top_k(axis: i64, k: usize, largest: bool) -> String {
    let low = if largest { "" } else { ", smallest" };
    format!("{TOPK}(axis={axis}, k={k}{low})")
}

/// JSON attributes of a top-K selection: `axis`, `k`, `largest`.
pub(crate) fn write_top_k(axis: i64, k: usize, largest: bool, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("k".into(), json!(k));
    m.insert("largest".into(), json!(largest));
}

/// Dump label of a reduction: `ReduceMean(axes=[-1], keepdims)`.
pub(crate) fn label_reduce(op: ReduceOp, axes: &[i64], keepdims: bool) -> String {
    let keep = if keepdims { ", keepdims" } else { "" };
    if axes.is_empty() {
        format!("{}(all axes{keep})", op.name())
    } else {
        format!("{}(axes={axes:?}{keep})", op.name())
    }
}

/// Dump label of a softmax.
pub(crate) fn label_softmax(axis: i64) -> String {
    format!("{SOFTMAX}(axis={axis})")
}

/// Dump label of a cumulative sum.
pub(crate) fn label_cumsum(axis: i64, exclusive: bool, reverse: bool) -> String {
    let mut s = format!("{CUMSUM}(axis={axis}");
    if exclusive {
        s.push_str(", exclusive");
    }
    if reverse {
        s.push_str(", reverse");
    }
    s + ")"
}

/// JSON attributes of a reduction: `axes`, `keepdims`.
pub(crate) fn write_reduce(axes: &[i64], keepdims: bool, m: &mut Attrs) {
    m.insert("axes".into(), json!(axes));
    m.insert("keepdims".into(), json!(keepdims));
}

/// JSON attributes of a softmax: `axis`.
pub(crate) fn write_softmax(axis: i64, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
}

/// JSON attributes of a cumulative sum: `axis`, `exclusive`, `reverse`.
pub(crate) fn write_cumsum(axis: i64, exclusive: bool, reverse: bool, m: &mut Attrs) {
    m.insert("axis".into(), json!(axis));
    m.insert("exclusive".into(), json!(exclusive));
    m.insert("reverse".into(), json!(reverse));
}

/// Reads a reduction, softmax or cumulative sum from its JSON attributes; `None` for
/// another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ReduceAttrs {
        #[serde(default)]
        axes: Vec<i64>,
        #[serde(default = "yes")]
        keepdims: bool,
    }
    fn yes() -> bool {
        true
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SoftmaxAttrs {
        #[serde(default = "last")]
        axis: i64,
    }
    fn last() -> i64 {
        -1
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CumSumAttrs {
        axis: i64,
        #[serde(default)]
        exclusive: bool,
        #[serde(default)]
        reverse: bool,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TopKAttrs {
        #[serde(default = "last")]
        axis: i64,
        k: usize,
        #[serde(default = "yes")]
        largest: bool,
    }
    if let Some(op) = ReduceOp::ALL.into_iter().find(|r| r.name() == name) {
        return Some(read_attrs::<ReduceAttrs>(name, a).map(|r| Op::Reduce { op, axes: r.axes, keepdims: r.keepdims }));
    }
    Some(match name {
        SOFTMAX => read_attrs::<SoftmaxAttrs>(name, a).map(|s| Op::Softmax { axis: s.axis }),
        CUMSUM => read_attrs::<CumSumAttrs>(name, a).map(|c| Op::CumSum {
            axis: c.axis,
            exclusive: c.exclusive,
            reverse: c.reverse,
        }),
        TOPK => read_attrs::<TopKAttrs>(name, a).map(|t| Op::TopK { axis: t.axis, k: t.k, largest: t.largest }),
        _ => return None,
    })
}
