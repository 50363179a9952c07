//! The op families evaluated on small tensors: each op's type inference and evaluation
//! together, edge cases included (negative axes, keepdims, empty reductions, negative and
//! out-of-range indices, negative steps, huge bounds, masks), with values worked out by hand
//! or, where noted, checked against onnxruntime.

use glufuse_ir::shape::Bindings;
use glufuse_ir::*;

/// The type of a concrete tensor.
fn ty(t: &Tensor) -> TensorType {
    TensorType::new(t.dtype(), t.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect())
}

/// Infers `op` on the inputs' types and evaluates it: every output.
fn eval_all(op: &Op, ins: &[&Tensor]) -> Result<Vec<Tensor>, String> {
    let tys: Vec<TensorType> = ins.iter().map(|t| ty(t)).collect();
    let refs: Vec<&TensorType> = tys.iter().collect();
    let outs = op.infer(&refs, &[])?;
    let shapes: Vec<Vec<usize>> =
        outs.iter().map(|t| t.shape.iter().map(|d| d.eval(&Bindings::new()).unwrap()).collect()).collect();
    op.eval(ins, &outs, &shapes, &Bindings::new())
}

fn eval(op: &Op, ins: &[&Tensor]) -> Result<Tensor, String> {
    eval_all(op, ins).map(|mut v| v.remove(0))
}

fn f(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
}

fn i(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::i64(shape.to_vec(), v.to_vec()).unwrap()
}

fn close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() <= 1e-6 * b.abs().max(1.0), "{got:?} vs {want:?}");
    }
}

#[test]
fn reductions_over_axes_with_and_without_keepdims() {
    let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
    let r = |op, axes: &[i64], keepdims| Op::Reduce { op, axes: axes.to_vec(), keepdims };
    let m = eval(&r(ReduceOp::Mean, &[-1], true), &[&x]).unwrap();
    assert_eq!(m.shape(), &[2, 1]);
    close(m.as_f32().unwrap(), &[2., 5.]);
    let s = eval(&r(ReduceOp::Sum, &[0], false), &[&x]).unwrap();
    assert_eq!(s.shape(), &[3]);
    close(s.as_f32().unwrap(), &[5., 7., 9.]);
    let all = eval(&r(ReduceOp::Max, &[], false), &[&x]).unwrap();
    assert_eq!(all.shape(), &[] as &[usize]);
    close(all.as_f32().unwrap(), &[6.]);
    let both = eval(&r(ReduceOp::Sum, &[1, -2], true), &[&x]).unwrap();
    assert_eq!(both.shape(), &[1, 1]);
    close(both.as_f32().unwrap(), &[21.]);
    // Integers: sums and maxima, exactly.
    let n = i(&[2, 2], &[5, -7, 3, 2]);
    assert_eq!(eval(&r(ReduceOp::Max, &[1], false), &[&n]).unwrap().as_i64().unwrap(), &[5, 3]);
    assert_eq!(eval(&r(ReduceOp::Sum, &[0], false), &[&n]).unwrap().as_i64().unwrap(), &[8, -5]);
    // Empty reductions: sum 0, max -inf, mean NaN.
    let e = f(&[2, 0], &[]);
    close(eval(&r(ReduceOp::Sum, &[1], false), &[&e]).unwrap().as_f32().unwrap(), &[0., 0.]);
    assert!(eval(&r(ReduceOp::Max, &[1], false), &[&e])
        .unwrap()
        .as_f32()
        .unwrap()
        .iter()
        .all(|x| *x == f32::NEG_INFINITY));
    assert!(eval(&r(ReduceOp::Mean, &[1], false), &[&e]).unwrap().as_f32().unwrap().iter().all(|x| x.is_nan()));
    // Errors.
    assert_eq!(eval(&r(ReduceOp::Mean, &[2], true), &[&x]).unwrap_err(), "axis 2 out of range for rank 2");
    assert_eq!(eval(&r(ReduceOp::Sum, &[1, -1], true), &[&x]).unwrap_err(), "axes [1, -1] name an axis twice");
    assert_eq!(
        eval(&r(ReduceOp::Mean, &[0], true), &[&n]).unwrap_err(),
        "ReduceMean needs floating-point inputs, got i64"
    );
}

#[test]
fn softmax_is_stable_and_handles_masked_rows_as_onnxruntime_does() {
    let min = -3.402_823_5e38f32;
    // onnxruntime 1.30 (opset 18) gives [[0.26894143, 0, 0.7310586], [1/3, 1/3, 1/3]] and
    // [[nan, nan, nan], [0.5, 0, 0.5]] for these.
    let x = f(&[2, 3], &[1., min, 2., min, min, min]);
    let y = eval(&Op::Softmax { axis: -1 }, &[&x]).unwrap();
    close(y.as_f32().unwrap(), &[0.268_941_43, 0.0, 0.731_058_6, 1. / 3., 1. / 3., 1. / 3.]);
    let x = f(&[2, 3], &[f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NEG_INFINITY, 0., f32::NEG_INFINITY, 0.]);
    let y = eval(&Op::Softmax { axis: 1 }, &[&x]).unwrap();
    let y = y.as_f32().unwrap();
    assert!(y[..3].iter().all(|v| v.is_nan()));
    close(&y[3..], &[0.5, 0.0, 0.5]);
    // Large values do not overflow; axis 0 works too.
    let x = f(&[2, 2], &[1000., 0., 1000., 0.]);
    close(eval(&Op::Softmax { axis: 0 }, &[&x]).unwrap().as_f32().unwrap(), &[0.5, 0.5, 0.5, 0.5]);
    close(eval(&Op::Softmax { axis: -1 }, &[&x]).unwrap().as_f32().unwrap(), &[1., 0., 1., 0.]);
}

#[test]
fn cumsum_inclusive_exclusive_and_reverse() {
    let x = i(&[2, 3], &[1, 2, 3, 4, 5, 6]);
    let c = |exclusive, reverse| Op::CumSum { axis: -1, exclusive, reverse };
    assert_eq!(eval(&c(false, false), &[&x]).unwrap().as_i64().unwrap(), &[1, 3, 6, 4, 9, 15]);
    assert_eq!(eval(&c(true, false), &[&x]).unwrap().as_i64().unwrap(), &[0, 1, 3, 0, 4, 9]);
    assert_eq!(eval(&c(false, true), &[&x]).unwrap().as_i64().unwrap(), &[6, 5, 3, 15, 11, 6]);
    assert_eq!(eval(&c(true, true), &[&x]).unwrap().as_i64().unwrap(), &[5, 3, 0, 11, 6, 0]);
    let xf = f(&[2, 2], &[1., 2., 3., 4.]);
    close(
        eval(&Op::CumSum { axis: 0, exclusive: false, reverse: false }, &[&xf]).unwrap().as_f32().unwrap(),
        &[1., 2., 4., 6.],
    );
}

#[test]
fn top_k_orders_ties_by_index_and_nan_above_every_number() {
    let nan = f32::NAN;
    let x = f(&[2, 4], &[1.0, 3.0, nan, 3.0, -0.0, 0.0, -1.0, 0.0]);
    let top = |k, largest| eval_all(&Op::TopK { axis: -1, k, largest }, &[&x]).unwrap();
    let v = top(3, true);
    assert_eq!(v[0].shape(), [2, 3]);
    assert_eq!(v[1].as_i64().unwrap(), &[2, 1, 3, 0, 1, 3]);
    let bits: Vec<u32> = v[0].as_f32().unwrap().iter().map(|f| f.to_bits()).collect();
    assert!(f32::from_bits(bits[0]).is_nan());
    assert_eq!(
        &bits[1..],
        &[3.0f32.to_bits(), 3.0f32.to_bits(), (-0.0f32).to_bits(), 0.0f32.to_bits(), 0.0f32.to_bits()]
    );
    // The smallest first: NaN last.
    assert_eq!(top(4, false)[1].as_i64().unwrap(), &[0, 1, 3, 2, 2, 0, 1, 3]);
    // Along the first axis, and integers.
    let n = i(&[3, 2], &[5, -1, 5, 7, 9, -1]);
    let y = eval_all(&Op::TopK { axis: 0, k: 2, largest: true }, &[&n]).unwrap();
    assert_eq!(y[0].as_i64().unwrap(), &[9, 7, 5, -1]);
    assert_eq!(y[1].as_i64().unwrap(), &[2, 1, 0, 0]);
    // K outside 1..=the axis's size, and booleans, are refused.
    let ty = TensorType::new(DType::F32, vec![Dim::Fixed(2), Dim::Fixed(4)]);
    for k in [0, 5] {
        let e = Op::TopK { axis: 1, k, largest: true }.infer(&[&ty], &[]).unwrap_err();
        assert!(e.contains(&format!("k = {k}")), "{e}");
    }
    let flags = TensorType::new(DType::Bool, vec![Dim::Fixed(4)]);
    assert!(Op::TopK { axis: 0, k: 1, largest: true }.infer(&[&flags], &[]).unwrap_err().contains("bool"));
    // Over a symbolic axis K is checked when the size is bound.
    let sym = TensorType::new(DType::F32, vec![Dim::sym("m")]);
    let outs = Op::TopK { axis: 0, k: 3, largest: true }.infer(&[&sym], &[]).unwrap();
    assert_eq!(outs[1], TensorType::new(DType::I64, vec![Dim::Fixed(3)]));
    let e = Op::TopK { axis: 0, k: 3, largest: true }
        .eval(&[&f(&[2], &[1.0, 2.0])], &outs, &[vec![3], vec![3]], &Bindings::new())
        .unwrap_err();
    assert!(e.contains("k = 3") && e.contains("2"), "{e}");
}

#[test]
fn layer_norm_with_and_without_scale_and_bias() {
    let x = f(&[2, 2], &[1., 3., 10., 10.]);
    let ln = |scale, bias| Op::LayerNorm { axis: -1, epsilon: 0.0, scale, bias };
    // Row 1: mean 2, var 1 -> [-1, 1]; row 2: constant -> 0/sqrt(eps): eps 0 gives NaN, so
    // use a small epsilon there.
    let y = eval(&ln(false, false), &[&f(&[1, 2], &[1., 3.])]).unwrap();
    close(y.as_f32().unwrap(), &[-1., 1.]);
    let op = Op::LayerNorm { axis: 1, epsilon: 1e-5, scale: true, bias: true };
    let (s, b) = (f(&[2], &[2., 3.]), f(&[2], &[0.5, -0.5]));
    let y = eval(&op, &[&x, &s, &b]).unwrap();
    let k = 1.0 / (1.0f64 + 1e-5).sqrt() as f32;
    close(y.as_f32().unwrap(), &[-2. * k + 0.5, 3. * k - 0.5, 0.5, -0.5]);
    // Over two axes, scale broadcast from [1, 2].
    let x3 = f(&[1, 2, 2], &[0., 2., 4., 6.]);
    let op = Op::LayerNorm { axis: -2, epsilon: 0.0, scale: true, bias: false };
    let y = eval(&op, &[&x3, &f(&[1, 2], &[1., 10.])]).unwrap();
    let sd = 5.0f32.sqrt();
    close(y.as_f32().unwrap(), &[-3. / sd, -10. / sd, 1. / sd, 30. / sd]);
    let e = eval(&Op::LayerNorm { axis: -1, epsilon: 1e-5, scale: true, bias: false }, &[&x, &f(&[3], &[1., 1., 1.])]);
    assert_eq!(e.unwrap_err(), "scale [3] does not broadcast to the normalised dims [2]");
    assert!(eval(&ln(true, true), &[&x]).unwrap_err().contains("takes 3 input(s), got 1"));
}

#[test]
fn gather_any_axis_negative_indices_and_out_of_range() {
    let table = f(&[3, 2], &[0., 1., 10., 11., 20., 21.]);
    let ids = i(&[2, 2], &[2, 0, -1, 1]);
    let y = eval(&Op::Gather { axis: 0 }, &[&table, &ids]).unwrap();
    assert_eq!(y.shape(), &[2, 2, 2]);
    close(y.as_f32().unwrap(), &[20., 21., 0., 1., 20., 21., 10., 11.]);
    let cols = eval(&Op::Gather { axis: -1 }, &[&table, &i(&[], &[1])]).unwrap();
    assert_eq!(cols.shape(), &[3]);
    close(cols.as_f32().unwrap(), &[1., 11., 21.]);
    let e = eval(&Op::Gather { axis: 0 }, &[&table, &i(&[3], &[0, 3, 1])]).unwrap_err();
    assert_eq!(e, "index 3 (element 1 of the indices, axis 0) is out of range for a dim of size 3");
    let e = eval(&Op::Gather { axis: 0 }, &[&table, &i(&[1], &[-4])]).unwrap_err();
    assert!(e.starts_with("index -4 "), "{e}");
    let e = eval(&Op::Gather { axis: 0 }, &[&table, &table]).unwrap_err();
    assert_eq!(e, "Gather needs integer indices, got f32");
    // Gathering integers and booleans.
    let b = Tensor::bool(vec![3], vec![true, false, true]).unwrap();
    assert_eq!(eval(&Op::Gather { axis: 0 }, &[&b, &i(&[2], &[1, 2])]).unwrap().as_bool().unwrap(), &[false, true]);
}

#[test]
fn gather_nd_with_and_without_batch_dims() {
    // The mask pattern of the exports: data [batch, seq], index pairs (b, s).
    let mask = Tensor::bool(vec![2, 3], vec![true, true, false, false, true, true]).unwrap();
    let idx = i(&[2, 2, 2], &[0, 2, 1, 0, 1, 1, -1, -1]);
    let y = eval(&Op::GatherND { batch_dims: 0 }, &[&mask, &idx]).unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(y.as_bool().unwrap(), &[false, false, true, true]);
    // Partial tuples pick rows.
    let data = f(&[2, 2], &[1., 2., 3., 4.]);
    let y = eval(&Op::GatherND { batch_dims: 0 }, &[&data, &i(&[2, 1], &[1, 0])]).unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    close(y.as_f32().unwrap(), &[3., 4., 1., 2.]);
    // One batch dim: each batch indexes its own slice.
    let data = f(&[2, 2, 2], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let y = eval(&Op::GatherND { batch_dims: 1 }, &[&data, &i(&[2, 1], &[1, 0])]).unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    close(y.as_f32().unwrap(), &[2., 3., 4., 5.]);
    let e = eval(&Op::GatherND { batch_dims: 0 }, &[&mask, &i(&[1, 2], &[2, 0])]).unwrap_err();
    assert_eq!(e, "index 2 (index tuple 0, position 0) is out of range for a dim of size 2");
}

#[test]
fn scatter_nd_rows_elements_negative_indices_and_errors() {
    // Rows of a [2, 3, 2] tensor at (batch, position) pairs, one negative.
    let data = f(&[2, 3, 2], &[0., 1., 2., 3., 4., 5., 6., 7., 8., 9., 10., 11.]);
    let rows = i(&[2, 2], &[0, 2, 1, -3]);
    let upd = f(&[2, 2], &[-1., -2., -3., -4.]);
    let y = eval(&Op::ScatterND, &[&data, &rows, &upd]).unwrap();
    assert_eq!(y.shape(), &[2, 3, 2]);
    close(y.as_f32().unwrap(), &[0., 1., 2., 3., -1., -2., -3., -4., 8., 9., 10., 11.]);
    // Tuples as long as the rank pick single elements; integers and booleans too.
    let n = i(&[2, 2], &[1, 2, 3, 4]);
    let y = eval(&Op::ScatterND, &[&n, &i(&[2, 2], &[1, -1, 0, 0]), &i(&[2], &[-7, 9])]).unwrap();
    assert_eq!(y.as_i64().unwrap(), &[9, 2, 3, -7]);
    let b = Tensor::bool(vec![3], vec![false, false, false]).unwrap();
    let t = Tensor::bool(vec![1], vec![true]).unwrap();
    assert_eq!(eval(&Op::ScatterND, &[&b, &i(&[1, 1], &[-2]), &t]).unwrap().as_bool().unwrap(), &[false, true, false]);
    // No tuples: the data.
    let y = eval(&Op::ScatterND, &[&data, &i(&[0, 2], &[]), &f(&[0, 2], &[])]).unwrap();
    assert_eq!(y, data);
    // Out of range, duplicated (-3 is 0), and types that do not fit.
    let e = eval(&Op::ScatterND, &[&data, &i(&[2, 2], &[0, 1, 1, 3]), &upd]).unwrap_err();
    assert_eq!(e, "index 3 (index tuple 1, position 1) is out of range for a dim of size 3");
    let e = eval(&Op::ScatterND, &[&data, &i(&[2, 2], &[1, 0, 1, -3]), &upd]).unwrap_err();
    assert_eq!(
        e,
        "index tuple 1 of the indices writes data[1, 0], as index tuple 0 does: ScatterND (reduction 'none') writes each place once, or the result would depend on the order"
    );
    let e = eval(&Op::ScatterND, &[&data, &rows, &f(&[2, 3], &[0.; 6])]).unwrap_err();
    assert_eq!(e, "updates [2,3] do not fit indices [2,2] into data [2,3,2]: they must be [2,2]");
    let e = eval(&Op::ScatterND, &[&data, &i(&[1, 4], &[0, 0, 0, 0]), &f(&[1], &[0.])]).unwrap_err();
    assert!(e.contains("index tuples of 4 do not fit data [2,3,2]"), "{e}");
    let e = eval(&Op::ScatterND, &[&data, &rows, &i(&[2, 2], &[0; 4])]).unwrap_err();
    assert_eq!(e, "ScatterND writes i64 updates into f32 data: they must be of one dtype");
    let e = eval(&Op::ScatterND, &[&data, &upd, &upd]).unwrap_err();
    assert_eq!(e, "ScatterND needs integer indices, got f32");
}

#[test]
fn scatter_elements_on_any_axis_and_errors() {
    let data = f(&[2, 3], &[0., 1., 2., 3., 4., 5.]);
    // Axis 1: row r's updates go to the columns its indices name.
    let idx = i(&[2, 2], &[2, -3, 0, 1]);
    let upd = f(&[2, 2], &[10., 11., 12., 13.]);
    let y = eval(&Op::ScatterElements { axis: 1 }, &[&data, &idx, &upd]).unwrap();
    close(y.as_f32().unwrap(), &[11., 1., 10., 12., 13., 5.]);
    let y = eval(&Op::ScatterElements { axis: -1 }, &[&data, &idx, &upd]).unwrap();
    close(y.as_f32().unwrap(), &[11., 1., 10., 12., 13., 5.]);
    // Axis 0, indices shorter than the data along axis 1: column c's updates go to rows.
    let y = eval(&Op::ScatterElements { axis: 0 }, &[&data, &i(&[1, 2], &[1, -2]), &f(&[1, 2], &[7., 8.])]).unwrap();
    close(y.as_f32().unwrap(), &[0., 8., 2., 7., 4., 5.]);
    let ints = i(&[3], &[1, 2, 3]);
    let y = eval(&Op::ScatterElements { axis: 0 }, &[&ints, &i(&[2], &[-1, 0]), &i(&[2], &[30, 10])]).unwrap();
    assert_eq!(y.as_i64().unwrap(), &[10, 2, 30]);
    let e = eval(&Op::ScatterElements { axis: 1 }, &[&data, &i(&[2, 2], &[0, 3, 0, 1]), &upd]).unwrap_err();
    assert_eq!(e, "index 3 (element 1 of the indices, axis 1) is out of range for a dim of size 3");
    let e = eval(&Op::ScatterElements { axis: 1 }, &[&data, &i(&[2, 2], &[0, 1, 2, -1]), &upd]).unwrap_err();
    assert_eq!(
        e,
        "element 3 of the indices writes data[1, 2], as element 2 does: ScatterElements (reduction 'none') writes each place once, or the result would depend on the order"
    );
    let e = eval(&Op::ScatterElements { axis: 1 }, &[&data, &idx, &f(&[2, 1], &[0., 0.])]).unwrap_err();
    assert_eq!(e, "updates [2,1] and indices [2,2] must have one shape");
    let long = i(&[3, 1], &[0, 0, 0]);
    let e = eval(&Op::ScatterElements { axis: 1 }, &[&data, &long, &f(&[3, 1], &[0.; 3])]).unwrap_err();
    assert_eq!(e, "indices [3,1] do not fit data [2,3]: the same rank, and no longer on any axis but 1");
    let e = eval(&Op::ScatterElements { axis: 2 }, &[&data, &idx, &upd]).unwrap_err();
    assert_eq!(e, "axis 2 out of range for rank 2");
}

#[test]
fn scatters_keep_symbolic_dims() {
    let d = |dims: &[&str]| -> Vec<Dim> {
        dims.iter().map(|s| s.parse::<u64>().map(Dim::Fixed).unwrap_or_else(|_| Dim::sym(*s))).collect()
    };
    let cache = TensorType::new(DType::F16, d(&["1", "2", "max", "8"]));
    let idx = TensorType::new(DType::I64, d(&["1", "2", "new", "3"]));
    let upd = TensorType::new(DType::F16, d(&["1", "2", "new", "8"]));
    assert_eq!(Op::ScatterND.infer(&[&cache, &idx, &upd], &[]).unwrap(), vec![cache.clone()]);
    let wrong = TensorType::new(DType::F16, d(&["1", "2", "past", "8"]));
    let e = Op::ScatterND.infer(&[&cache, &idx, &wrong], &[]).unwrap_err();
    assert_eq!(
        e,
        "updates [1,2,past,8] do not fit indices [1,2,new,3] into data [1,2,max,8]: they must be [1,2,new,8]"
    );
    // ScatterElements: a symbolic axis is indexed by any length; another must match.
    let x = TensorType::new(DType::I64, d(&["rows", "max"]));
    let i2 = TensorType::new(DType::I64, d(&["rows", "new"]));
    assert_eq!(Op::ScatterElements { axis: 1 }.infer(&[&x, &i2, &i2], &[]).unwrap(), vec![x.clone()]);
    assert!(Op::ScatterElements { axis: 0 }.infer(&[&x, &i2, &i2], &[]).is_err());
}

#[test]
fn range_lengths_and_values() {
    let r = |s: i64, l: i64, d: i64| Op::Range {
        start: DimExpr::constant(s),
        limit: DimExpr::constant(l),
        delta: d,
        dtype: DType::I64,
    };
    assert_eq!(eval(&r(0, 5, 1), &[]).unwrap().as_i64().unwrap(), &[0, 1, 2, 3, 4]);
    assert_eq!(eval(&r(10, 4, -3), &[]).unwrap().as_i64().unwrap(), &[10, 7]);
    assert_eq!(eval(&r(1, 8, 3), &[]).unwrap().as_i64().unwrap(), &[1, 4, 7]);
    assert_eq!(eval(&r(5, 0, 1), &[]).unwrap().numel(), 0);
    assert_eq!(eval(&r(0, 5, 0), &[]).unwrap_err(), "Range delta must not be 0");
    // Symbolic: `past .. past + new`, evaluated under the binding.
    let op = Op::Range {
        start: DimExpr::sym("past"),
        limit: DimExpr::parse("past + new").unwrap(),
        delta: 1,
        dtype: DType::I32,
    };
    let out = op.infer(&[], &[]).unwrap();
    assert_eq!(out[0].shape, vec![Dim::sym("new")]);
    let b: Bindings = [("past".to_string(), 9), ("new".to_string(), 3)].into();
    let y = op.eval(&[], &out, &[vec![3]], &b).unwrap().remove(0);
    assert_eq!((y.dtype(), y.as_i64().unwrap()), (DType::I32, &[9i64, 10, 11][..]));
}

#[test]
fn slices_with_steps_and_symbolic_starts() {
    let x = f(&[2, 4], &[0., 1., 2., 3., 4., 5., 6., 7.]);
    let s = |start: u64, len: u64, step| Op::Slice { axis: -1, start: Dim::Fixed(start), len: Dim::Fixed(len), step };
    close(eval(&s(1, 2, 1), &[&x]).unwrap().as_f32().unwrap(), &[1., 2., 5., 6.]);
    close(eval(&s(3, 4, -1), &[&x]).unwrap().as_f32().unwrap(), &[3., 2., 1., 0., 7., 6., 5., 4.]);
    close(eval(&s(0, 2, 2), &[&x]).unwrap().as_f32().unwrap(), &[0., 2., 4., 6.]);
    close(eval(&s(3, 2, -2), &[&x]).unwrap().as_f32().unwrap(), &[3., 1., 7., 5.]);
    assert_eq!(eval(&s(4, 0, 1), &[&x]).unwrap().shape(), &[2, 0]);
    let e = eval(&s(2, 3, 1), &[&x]).unwrap_err();
    assert_eq!(e, "slice of 3 elements from index 2 in steps of 1 does not fit an axis of size 4 (axis 1)");
    assert!(eval(&s(0, 3, -1), &[&x]).is_err());
    // `past .. past + new` of a [past + new] cache, checked when bound.
    let op = Op::Slice { axis: 0, start: Dim::sym("past"), len: Dim::sym("new"), step: 1 };
    let cache = TensorType::new(DType::F32, vec![Dim::parse("past + new").unwrap()]);
    let out = op.infer(&[&cache], &[]).unwrap();
    assert_eq!(out[0].shape, vec![Dim::sym("new")]);
    let t = f(&[5], &[0., 1., 2., 3., 4.]);
    let b: Bindings = [("past".to_string(), 3), ("new".to_string(), 2)].into();
    close(op.eval(&[&t], &out, &[vec![2]], &b).unwrap()[0].as_f32().unwrap(), &[3., 4.]);
    let bad: Bindings = [("past".to_string(), 4), ("new".to_string(), 2)].into();
    assert!(op.eval(&[&t], &out, &[vec![2]], &bad).unwrap_err().contains("does not fit"));
}

#[test]
fn concat_of_symbolic_lengths_and_expand() {
    let past = TensorType::new(DType::F32, vec![Dim::Fixed(1), Dim::sym("past"), Dim::Fixed(8)]);
    let new = TensorType::new(DType::F32, vec![Dim::Fixed(1), Dim::sym("new"), Dim::Fixed(8)]);
    let out = Op::Concat { axis: -2 }.infer(&[&past, &new], &[]).unwrap();
    assert_eq!(out[0].shape[1], Dim::parse("new + past").unwrap());
    assert_eq!(out[0].to_string(), "f32[1,new + past,8]");
    let x = f(&[2, 1], &[1., 2.]);
    let y = eval(&Op::Expand { shape: vec![Dim::Fixed(3), Dim::Fixed(1), Dim::Fixed(2)] }, &[&x]).unwrap();
    assert_eq!(y.shape(), &[3, 2, 2]);
    close(y.as_f32().unwrap(), &[1., 1., 2., 2., 1., 1., 2., 2., 1., 1., 2., 2.]);
    let e = eval(&Op::Expand { shape: vec![Dim::Fixed(3), Dim::Fixed(1)] }, &[&x]).unwrap_err();
    assert!(e.contains("do not broadcast"), "{e}");
    // Integer concat.
    let c = eval(&Op::Concat { axis: 0 }, &[&i(&[1], &[1]), &i(&[2], &[2, 3])]).unwrap();
    assert_eq!(c.as_i64().unwrap(), &[1, 2, 3]);
}

#[test]
fn unary_ops_on_floats_integers_and_booleans() {
    let x = f(&[4], &[-1.5, 0.0, 2.0, f32::NAN]);
    let u = |op| Op::Unary(op);
    close(&eval(&u(UnaryOp::Floor), &[&x]).unwrap().as_f32().unwrap()[..3], &[-2., 0., 2.]);
    close(&eval(&u(UnaryOp::Ceil), &[&x]).unwrap().as_f32().unwrap()[..3], &[-1., 0., 2.]);
    close(&eval(&u(UnaryOp::Reciprocal), &[&x]).unwrap().as_f32().unwrap()[..1], &[-1. / 1.5]);
    close(eval(&u(UnaryOp::Softplus), &[&f(&[2], &[0., 100.])]).unwrap().as_f32().unwrap(), &[2f32.ln(), 100.]);
    assert_eq!(eval(&u(UnaryOp::IsNaN), &[&x]).unwrap().as_bool().unwrap(), &[false, false, false, true]);
    assert_eq!(eval(&u(UnaryOp::Abs), &[&i(&[2], &[-3, 4])]).unwrap().as_i64().unwrap(), &[3, 4]);
    assert_eq!(eval(&u(UnaryOp::Neg), &[&i(&[1], &[i64::MIN])]).unwrap().as_i64().unwrap(), &[i64::MIN]);
    let b = Tensor::bool(vec![2], vec![true, false]).unwrap();
    assert_eq!(eval(&u(UnaryOp::Not), &[&b]).unwrap().as_bool().unwrap(), &[false, true]);
    assert_eq!(eval(&u(UnaryOp::Not), &[&x]).unwrap_err(), "Not needs bool inputs, got f32");
    assert_eq!(eval(&u(UnaryOp::Sin), &[&b]).unwrap_err(), "Sin needs floating-point inputs, got bool");
}

#[test]
fn sym_constants_evaluate_under_the_binding() {
    let op = Op::SymConstant(vec![DimExpr::constant(1), DimExpr::parse("past + new").unwrap()]);
    let t = TensorType::new(DType::I64, vec![Dim::Fixed(2)]);
    assert_eq!(op.infer(&[], std::slice::from_ref(&t)).unwrap(), vec![t.clone()]);
    let b: Bindings = [("past".to_string(), 9), ("new".to_string(), 3)].into();
    let y = op.eval(&[], std::slice::from_ref(&t), &[vec![2]], &b).unwrap().remove(0);
    assert_eq!(y.as_i64().unwrap(), &[1, 12]);
    let e = op.eval(&[], std::slice::from_ref(&t), &[vec![2]], &Bindings::new()).unwrap_err();
    assert_eq!(e, "symbolic dim 'new' has no size");
    assert_eq!(op.label(), "SymConstant([1, new + past])");
    let f32t = TensorType::new(DType::F32, vec![Dim::Fixed(2)]);
    assert_eq!(op.infer(&[], &[f32t]).unwrap_err(), "SymConstant needs integer values, got f32");
}

/// Zero-size tensors are valid tensors: every op takes them without a panic and gives the
/// zero-size (or, for an empty reduction or inner product, the defined) result.
#[test]
fn zero_size_tensors_through_every_family() {
    let empty = f(&[0, 4], &[]);
    let k0 = f(&[2, 0], &[]);
    let shape = |op: &Op, ins: &[&Tensor]| eval(op, ins).unwrap().shape().to_vec();
    assert_eq!(shape(&Op::Unary(UnaryOp::Silu), &[&empty]), [0, 4]);
    assert_eq!(shape(&Op::Binary(BinaryOp::Add), &[&empty, &f(&[4], &[1.; 4])]), [0, 4]);
    assert_eq!(shape(&Op::MatMul, &[&empty, &f(&[4, 3], &[1.; 12])]), [0, 3]);
    // K = 0: an empty sum is 0, for the product and the fused unit alike (SiLU(0) * 0 = 0).
    let p = eval(&Op::MatMul, &[&k0, &f(&[0, 3], &[])]).unwrap();
    assert_eq!((p.shape(), p.as_f32().unwrap()), (&[2usize, 3][..], &[0.0f32; 6][..]));
    let fused = FusedGateUp {
        activation: Activation::Silu,
        layout: Layout::Kn,
        gate_bias: false,
        up_bias: false,
        gate_offset: 0,
        up_offset: 0,
        replaced: vec![],
    };
    let w = f(&[0, 3], &[]);
    let y = eval(&Op::FusedGateUp(fused.clone()), &[&k0, &w, &w]).unwrap();
    assert_eq!((y.shape(), y.as_f32().unwrap()), (&[2usize, 3][..], &[0.0f32; 6][..]));
    assert_eq!(shape(&Op::FusedGateUp(fused), &[&empty, &f(&[4, 3], &[0.; 12]), &f(&[4, 3], &[0.; 12])]), [0, 3]);
    // Layout: zero-size parts and slices.
    let parts = eval_all(&Op::Split { axis: 1, sizes: vec![Dim::Fixed(0), Dim::Fixed(4)] }, &[&empty]).unwrap();
    assert_eq!((parts[0].shape(), parts[1].shape()), (&[0usize, 0][..], &[0usize, 4][..]));
    let x = f(&[2, 4], &[1.; 8]);
    let parts = eval_all(&Op::Split { axis: 1, sizes: vec![Dim::Fixed(4), Dim::Fixed(0)] }, &[&x]).unwrap();
    assert_eq!((parts[0].as_f32().unwrap(), parts[1].shape()), (&[1.0f32; 8][..], &[2usize, 0][..]));
    let sl = Op::Slice { axis: 1, start: Dim::Fixed(2), len: Dim::Fixed(0), step: 1 };
    assert_eq!(shape(&sl, &[&x]), [2, 0]);
    assert_eq!(shape(&Op::Concat { axis: 0 }, &[&empty, &x]), [2, 4]);
    assert_eq!(shape(&Op::Transpose { perm: vec![1, 0] }, &[&empty]), [4, 0]);
    // A 0 in a reshape target copies the input's dim (ONNX), here the zero one.
    let to = vec![DimExpr::constant(0), DimExpr::constant(2), DimExpr::constant(2)];
    assert_eq!(shape(&Op::Reshape { shape: to }, &[&empty]), [0, 2, 2]);
    assert_eq!(shape(&Op::Cast { to: DType::I64 }, &[&empty]), [0, 4]);
    // Reductions over an empty axis: a sum is 0, a mean NaN (0/0), a maximum -inf.
    let r = |op| Op::Reduce { op, axes: vec![1], keepdims: false };
    assert_eq!(eval(&r(ReduceOp::Sum), &[&k0]).unwrap().as_f32().unwrap(), &[0.0, 0.0]);
    assert!(eval(&r(ReduceOp::Mean), &[&k0]).unwrap().as_f32().unwrap().iter().all(|v| v.is_nan()));
    assert_eq!(eval(&r(ReduceOp::Max), &[&k0]).unwrap().as_f32().unwrap(), &[f32::NEG_INFINITY; 2]);
    assert_eq!(shape(&Op::Softmax { axis: -1 }, &[&k0]), [2, 0]);
    assert_eq!(shape(&Op::Softmax { axis: 0 }, &[&empty]), [0, 4]);
    assert_eq!(shape(&Op::CumSum { axis: 0, exclusive: false, reverse: true }, &[&empty]), [0, 4]);
    let ln = Op::LayerNorm { axis: -1, epsilon: 1e-5, scale: false, bias: false };
    assert_eq!(shape(&ln, &[&empty]), [0, 4]);
    assert_eq!(shape(&ln, &[&k0]), [2, 0]);
    // Index: no ids gather nothing; an id into an empty table is out of range.
    assert_eq!(shape(&Op::Gather { axis: 0 }, &[&x, &i(&[0], &[])]), [0, 4]);
    assert!(eval(&Op::Gather { axis: 0 }, &[&empty, &i(&[1], &[0])]).unwrap_err().contains("out of range"));
    let range = Op::Range { start: DimExpr::constant(3), limit: DimExpr::constant(3), delta: 1, dtype: DType::I64 };
    assert_eq!(shape(&range, &[]), [0]);
}

/// A gated unit whose weights hold a matrix per row of x (a mixture of experts' pairs): row
/// `p` of x against matrix `p`, worked out by hand; and what such weights refuse: another
/// count of matrices than rows, x of rank 3, a 2-D weight beside a 3-D one, biases.
#[test]
fn a_gated_unit_with_a_matrix_per_row() {
    let unit = |layout, bias| {
        Op::FusedGateUp(FusedGateUp {
            activation: Activation::Relu,
            layout,
            gate_bias: bias,
            up_bias: bias,
            gate_offset: 0,
            up_offset: 0,
            replaced: vec![],
        })
    };
    // Two rows of x (K = 2), each its own [N = 2, K = 2] gate and up matrices.
    let x = f(&[2, 2], &[1., 2., 3., -1.]);
    let wg = f(&[2, 2, 2], &[1., 0., 0., 1., /* row 1 */ -1., 0., 1., 1.]);
    let wu = f(&[2, 2, 2], &[1., 1., 2., 0., /* row 1 */ 0., 1., 1., 0.]);
    let y = eval(&unit(Layout::Nk, false), &[&x, &wg, &wu]).unwrap();
    assert_eq!(y.shape(), &[2, 2]);
    // Row 0: gate (1, 2), up (3, 2) → (3, 4); row 1: gate (-3 → 0, 2), up (-1, 3) → (0, 6).
    close(y.as_f32().unwrap(), &[3., 4., 0., 6.]);
    // [K, N] matrices: the same values transposed per row.
    let kn = |w: &Tensor| {
        let v = w.as_f32().unwrap();
        let t: Vec<f32> = (0..8).map(|i| v[(i / 4) * 4 + (i % 2) * 2 + (i / 2) % 2]).collect();
        f(&[2, 2, 2], &t)
    };
    let y = eval(&unit(Layout::Kn, false), &[&x, &kn(&wg), &kn(&wu)]).unwrap();
    close(y.as_f32().unwrap(), &[3., 4., 0., 6.]);
    let err = |ins: &[&Tensor], op: Op| eval(&op, ins).unwrap_err();
    let three = f(&[3, 2, 2], &[0.; 12]);
    assert!(err(&[&x, &three, &three], unit(Layout::Nk, false)).contains("x must be [3, H]"));
    let x3 = f(&[1, 2, 2], &[0.; 4]);
    assert!(err(&[&x3, &wg, &wu], unit(Layout::Nk, false)).contains("a matrix per row of x"));
    let w2 = f(&[2, 2], &[0.; 4]);
    assert!(err(&[&x, &wg, &w2], unit(Layout::Nk, false)).contains("up weight must be 2-D (or 3-D"));
    let b = f(&[2], &[0.; 2]);
    assert!(err(&[&x, &wg, &wu, &b, &b], unit(Layout::Nk, true)).contains("take no biases"));
}
