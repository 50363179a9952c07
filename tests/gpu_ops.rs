//! Every op family on the GPU against the CPU interpreter, on small graphs built for the
//! purpose: every dtype each op takes, broadcasting, negative axes, keepdims, steps, masks,
//! empty dims; and what the kernels check at run time (an index out of range, an integer
//! division by zero, an i64 past 32 bits), which must come back as an error naming the node,
//! never as data. Floats within 1e-5 of the interpreter's largest value, integers and
//! booleans exactly.
// The whole file runs kernels: nothing to build without the `gpu` feature.
#![cfg(feature = "gpu")]

mod common;

use glufuse::builder::GraphBuilder;
use glufuse::interp;
use glufuse::ir::*;
use glufuse::runtime::{Executable, Gpu, Session};
use glufuse::tensor::Tensor;
use std::collections::HashMap;

fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), v.to_vec()).unwrap()
}

fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
    Tensor::i64(shape.to_vec(), v.to_vec()).unwrap()
}

fn bools(shape: &[usize], v: &[bool]) -> Tensor {
    Tensor::bool(shape.to_vec(), v.to_vec()).unwrap()
}

/// Seeded values in [-2, 2).
fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::random(shape.to_vec(), seed, 2.0)
}

/// The type of a tensor, known dims.
fn ty(t: &Tensor) -> TensorType {
    TensorType::new(t.dtype(), t.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect())
}

/// A builder with one input per tensor (named `x0`, `x1`, ..), and the inputs' map.
fn inputs(ts: &[Tensor]) -> (GraphBuilder, Vec<Value>, HashMap<String, Tensor>) {
    let mut b = GraphBuilder::new();
    let mut vs = vec![];
    let mut m = HashMap::new();
    for (k, t) in ts.iter().enumerate() {
        let name = format!("x{k}");
        vs.push(b.node(&name, Op::Input, &[], vec![ty(t)])[0]);
        m.insert(name, t.clone());
    }
    (b, vs, m)
}

/// Runs `g` on the GPU and on the interpreter; every output must agree (floats within 1e-5
/// of the largest value, integers and booleans exactly). Returns the GPU's outputs.
fn agree(gpu: &Gpu, g: &Graph, ins: &HashMap<String, Tensor>, what: &str) -> Vec<Tensor> {
    let want = interp::run(g, ins).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let mut s = Session::new(gpu, g.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = s.run(ins).unwrap_or_else(|e| panic!("{what}: GPU: {e}"));
    assert_eq!(got.len(), want.len());
    for (k, (x, y)) in got.iter().zip(&want).enumerate() {
        assert_eq!(x.dtype(), y.dtype(), "{what}: output {k} dtype");
        assert_eq!(x.shape(), y.shape(), "{what}: output {k} shape");
        let (abs, rel) = interp::compare(x, y);
        assert!(
            rel <= 1e-5,
            "{what}: output {k}: GPU {:?}\nvs interpreter {:?}\n(abs {abs:e}, rel {rel:e})",
            x.data(),
            y.data()
        );
    }
    got
}

/// Runs `g` on the GPU and on the interpreter; every output within `tol` of the largest
/// value (relative). Returns the session (to run again) and the GPU's outputs.
fn agree_within<'a>(
    gpu: &'a Gpu,
    g: &Graph,
    ins: &HashMap<String, Tensor>,
    tol: f64,
    what: &str,
) -> (Session<'a>, Vec<Tensor>) {
    let want = interp::run(g, ins).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let mut s = Session::new(gpu, g.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = s.run(ins).unwrap_or_else(|e| panic!("{what}: GPU: {e}"));
    for (x, y) in got.iter().zip(&want) {
        assert_eq!(x.shape(), y.shape(), "{what}");
        let (abs, rel) = interp::compare(x, y);
        assert!(rel <= tol, "{what}: GPU vs interpreter rel {rel:e} (abs {abs:e})");
    }
    (s, got)
}

/// One op applied to tensors: GPU against interpreter.
fn op_agrees(gpu: &Gpu, op: Op, ts: &[Tensor]) -> Tensor {
    let (mut b, vs, m) = inputs(ts);
    let what = format!("{} on {:?}", op.label(), ts.iter().map(|t| ty(t).to_string()).collect::<Vec<_>>());
    let y = b.node("y", op, &vs, vec![])[0];
    let g = b.finish(&[y]).unwrap_or_else(|e| panic!("{what}: {e}"));
    agree(gpu, &g, &m, &what).remove(0)
}

/// The interpreter's error for one op on tensors (inputs `x0`, `x1`, .., the node `y`).
fn interp_error(op: Op, ts: &[Tensor]) -> String {
    let (mut b, vs, m) = inputs(ts);
    let y = b.node("y", op, &vs, vec![])[0];
    let g = b.finish(&[y]).unwrap();
    interp::run(&g, &m).expect_err("the interpreter must fail").to_string()
}

/// The GPU's error for one op on tensors (whether the interpreter fails too is the caller's to
/// check: an i64 result past 32 bits is an error on the GPU only).
fn op_fails(gpu: &Gpu, op: Op, ts: &[Tensor]) -> glufuse::Error {
    let (mut b, vs, m) = inputs(ts);
    let y = b.node("y", op, &vs, vec![])[0];
    let g = b.finish(&[y]).unwrap();
    let mut s = Session::new(gpu, g).unwrap();
    s.run(&m).expect_err("the GPU run must fail")
}

#[test]
fn unary_ops_on_every_dtype_they_take() {
    let Some(gpu) = common::gpu() else { return };
    let x = f32s(&[2, 5], &[-2.5, -1.0, -0.3, 0.0, 0.4, 1.0, 2.7, 30.0, -30.0, 1000.0]);
    let pos = f32s(&[6], &[0.01, 0.5, 1.0, 2.0, 10.0, 1e4]);
    for u in UnaryOp::ALL {
        match u {
            UnaryOp::Not => {
                let y = op_agrees(&gpu, Op::Unary(u), &[bools(&[3], &[true, false, true])]);
                assert_eq!(y.as_bool().unwrap(), &[false, true, false]);
            }
            UnaryOp::Sqrt | UnaryOp::Log => {
                op_agrees(&gpu, Op::Unary(u), std::slice::from_ref(&pos));
            }
            UnaryOp::IsNaN => {
                let y = op_agrees(&gpu, Op::Unary(u), &[f32s(&[3], &[1.0, f32::NAN, f32::INFINITY])]);
                assert_eq!(y.as_bool().unwrap(), &[false, true, false]);
            }
            UnaryOp::IsInf | UnaryOp::IsPosInf | UnaryOp::IsNegInf => {
                let x = f32s(&[5], &[1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -3.4e38]);
                let y = op_agrees(&gpu, Op::Unary(u), &[x]);
                let (pos, neg) = (u != UnaryOp::IsNegInf, u != UnaryOp::IsPosInf);
                assert_eq!(y.as_bool().unwrap(), &[false, false, pos, neg, false], "{u:?}");
                let h = Tensor::f16(vec![3], vec![f32::INFINITY, 65504.0, f32::NEG_INFINITY]).unwrap();
                let y = op_agrees(&gpu, Op::Unary(u), &[h]);
                assert_eq!(y.as_bool().unwrap(), &[pos, false, neg], "{u:?} of f16");
            }
            UnaryOp::Neg | UnaryOp::Abs => {
                op_agrees(&gpu, Op::Unary(u), std::slice::from_ref(&x));
                op_agrees(&gpu, Op::Unary(u), &[i64s(&[4], &[-7, 0, 3, -2147483647])]);
                let y = op_agrees(&gpu, Op::Unary(u), &[Tensor::i32(vec![3], vec![-5, 6, i32::MIN as i64]).unwrap()]);
                assert_eq!(y.dtype(), DType::I32);
            }
            _ => {
                op_agrees(&gpu, Op::Unary(u), std::slice::from_ref(&x));
            }
        }
    }
    // The trigonometric and hyperbolic ops and their inverses at their domains' edges and
    // far out: NaN outside the domain, ±∞ where the function is, no overflow on the way.
    let edges = f32s(
        &[12],
        &[-1.0, 1.0, 0.999, -0.999, 1e-6, 89.0, -89.2, 1e20, -1e20, f32::NAN, f32::INFINITY, f32::NEG_INFINITY],
    );
    use UnaryOp::{Acos, Acosh, Asin, Asinh, Atan, Atanh, Cosh, Sinh, Tan};
    for u in [Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh, Atanh] {
        op_agrees(&gpu, Op::Unary(u), std::slice::from_ref(&edges));
    }
    // (The tangent reduces its argument as the sine does: within 1e4 or so.)
    op_agrees(&gpu, Op::Unary(Tan), &[f32s(&[6], &[1.5, -1.57, 100.0, -1000.5, f32::NAN, f32::INFINITY])]);
    // Rotary embeddings take sines of positions times frequencies: far from 0 too.
    let far = f32s(&[4], &[100.0, 1000.5, -4096.25, 30000.0]);
    for u in [UnaryOp::Sin, UnaryOp::Cos] {
        op_agrees(&gpu, Op::Unary(u), std::slice::from_ref(&far));
    }
}

#[test]
fn binary_ops_broadcast_on_every_dtype_they_take() {
    let Some(gpu) = common::gpu() else { return };
    let a = rand(&[2, 1, 3], 1);
    let b = rand(&[4, 1], 2);
    let ia = i64s(&[2, 1, 3], &[7, -7, 0, 5, 100, -3]);
    let ib = i64s(&[4, 1], &[2, -3, 1, 7]);
    let ja = Tensor::i32(vec![3], vec![2147483647, -9, 12]).unwrap();
    let jb = Tensor::i32(vec![1], vec![4]).unwrap();
    for op in BinaryOp::ALL {
        match op.kind() {
            glufuse::ir::ops::binary::BinaryKind::Logic => {
                let p = bools(&[2, 1], &[true, false]);
                let q = bools(&[3], &[true, false, true]);
                op_agrees(&gpu, Op::Binary(op), &[p, q]);
            }
            _ => {
                // (Mod takes integers only: floats take FMod.)
                if op != BinaryOp::Mod {
                    op_agrees(&gpu, Op::Binary(op), &[a.clone(), b.clone()]);
                }
                if op != BinaryOp::Pow {
                    op_agrees(&gpu, Op::Binary(op), &[ia.clone(), ib.clone()]);
                    // i32 wraps at 32 bits, as the interpreter's i32 does.
                    op_agrees(&gpu, Op::Binary(op), &[ja.clone(), jb.clone()]);
                }
            }
        }
    }
    // Integer division truncates toward zero; Mod takes the divisor's sign, FMod the
    // dividend's (as ONNX's Mod with fmod 0 and 1), of floats too; a zero divisor fails.
    let (n, d) = (i64s(&[4], &[7, -7, 7, -7]), i64s(&[4], &[2, 2, -2, -2]));
    let q = op_agrees(&gpu, Op::Binary(BinaryOp::Div), &[n.clone(), d]);
    assert_eq!(q.as_i64().unwrap(), &[3, -3, -3, 3]);
    let d = i64s(&[4], &[3, 3, -3, -3]);
    let r = op_agrees(&gpu, Op::Binary(BinaryOp::Mod), &[n.clone(), d.clone()]);
    assert_eq!(r.as_i64().unwrap(), &[1, 2, -2, -1]);
    let r = op_agrees(&gpu, Op::Binary(BinaryOp::FMod), &[n.clone(), d]);
    assert_eq!(r.as_i64().unwrap(), &[1, -1, 1, -1]);
    let r =
        op_agrees(&gpu, Op::Binary(BinaryOp::FMod), &[f32s(&[3], &[7.5, -7.5, 2.0]), f32s(&[3], &[2.0, 2.0, -0.75])]);
    assert_eq!(r.as_f32().unwrap(), &[1.5, -1.5, 0.5]);
    for op in [BinaryOp::Mod, BinaryOp::FMod] {
        let e = op_fails(&gpu, Op::Binary(op), &[n.clone(), i64s(&[4], &[1, 0, 1, 1])]).to_string();
        assert!(e.contains("integer division by zero"), "{op:?}: {e}");
    }
    // Max and Min give NaN where either side is NaN; Equal on booleans.
    let n = f32s(&[3], &[f32::NAN, 1.0, -1.0]);
    let m = f32s(&[3], &[0.0, f32::NAN, 2.0]);
    let y = op_agrees(&gpu, Op::Binary(BinaryOp::Max), &[n.clone(), m.clone()]);
    assert!(y.as_f32().unwrap()[0].is_nan() && y.as_f32().unwrap()[1].is_nan());
    op_agrees(&gpu, Op::Binary(BinaryOp::Min), &[n, m]);
    let e = op_agrees(&gpu, Op::Binary(BinaryOp::Equal), &[bools(&[2], &[true, false]), bools(&[1], &[false])]);
    assert_eq!(e.as_bool().unwrap(), &[false, true]);
}

#[test]
fn where_broadcasts_condition_and_both_sides_of_any_dtype() {
    let Some(gpu) = common::gpu() else { return };
    let c = bools(&[2, 1], &[true, false]);
    let y = op_agrees(&gpu, Op::Where, &[c.clone(), rand(&[3], 3), f32s(&[], &[-3.4e38])]);
    assert_eq!(y.as_f32().unwrap()[3], -3.4e38);
    op_agrees(&gpu, Op::Where, &[c.clone(), i64s(&[1, 3], &[1, 2, 3]), i64s(&[2, 1], &[-1, -2])]);
    op_agrees(&gpu, Op::Where, &[c, bools(&[3], &[true, true, false]), bools(&[], &[false])]);
}

#[test]
fn casts_between_every_pair_of_dtypes() {
    let Some(gpu) = common::gpu() else { return };
    let from: Vec<Tensor> = vec![
        f32s(&[7], &[2.7, -2.7, 0.0, f32::NAN, 65519.0, -1e9, 0.1]),
        Tensor::f16(vec![3], vec![2.5, -0.1, 0.0]).unwrap(),
        i64s(&[4], &[-1, 0, 3, 2_000_000_000]),
        Tensor::i32(vec![3], vec![-1, 0, 16_777_217]).unwrap(),
        bools(&[2], &[true, false]),
    ];
    for x in &from {
        for to in DType::ALL {
            op_agrees(&gpu, Op::Cast { to }, std::slice::from_ref(x));
        }
    }
}

/// A cast to f16 rounds to the nearest f16, ties to even, overflowing to infinity, bit for bit
/// as the interpreter (and PyTorch and onnxruntime) round: read back through a cast to f32, so
/// that the rounding is the kernel's, not the readback's. On the H100 the pack/unpack pair that
/// did the rounding was folded away by the driver, and casts to f16 rounded nothing (a value
/// within the f16 tolerances of `--check`, so no test saw it).
#[test]
fn casts_to_f16_round_to_nearest_even_bit_for_bit() {
    let Some(gpu) = common::gpu() else { return };
    let mut v: Vec<f32> = vec![
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        1e9,
        f32::MAX,
        1e-10,
        f32::MIN_POSITIVE,
    ];
    // Ties and near-ties at every f16 exponent, normal and subnormal, either sign.
    for e in -26..16 {
        let scale = 2f32.powi(e);
        for k in 0..8 {
            for frac in [0.5f32, 0.4999, 0.5001, 0.25, 0.75] {
                let x = (1.0 + (k as f32 * 128.0 + frac) / 1024.0) * scale;
                v.push(x);
                v.push(-x);
            }
        }
    }
    // Random bit patterns around the f16 range.
    let mut z = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..2000 {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        let bits = (z as u32 & 0x807f_ffff) | ((95 + (z >> 40) as u32 % 55) << 23);
        v.push(f32::from_bits(bits));
    }
    let x = f32s(&[v.len()], &v);
    let (mut b, vs, m) = inputs(std::slice::from_ref(&x));
    let h = b.node("h", Op::Cast { to: DType::F16 }, &vs, vec![])[0];
    let y = b.node("y", Op::Cast { to: DType::F32 }, &[h], vec![])[0];
    let g = b.finish(&[y]).unwrap();
    let want = interp::run(&g, &m).unwrap().remove(0);
    let got = Session::new(&gpu, g).unwrap().run(&m).unwrap().remove(0);
    let (want, got) = (want.as_f32().unwrap(), got.as_f32().unwrap());
    for ((x, w), g) in v.iter().zip(want).zip(got) {
        let same = (w.is_nan() && g.is_nan()) || w.to_bits() == g.to_bits();
        assert!(same, "f16 of {x:e} ({:#010x}): GPU {g:e}, interpreter {w:e}", x.to_bits());
    }
}

#[test]
fn layout_ops_move_values_of_every_dtype() {
    let Some(gpu) = common::gpu() else { return };
    let xs = [rand(&[2, 3, 4], 4), i64s(&[2, 3, 1], &[1, -2, 3, -4, 5, -6]), bools(&[3, 1], &[true, false, true])];
    for x in &xs {
        let r = x.shape().len();
        let perm: Vec<usize> = (0..r).rev().collect();
        op_agrees(&gpu, Op::Transpose { perm }, std::slice::from_ref(x));
        let mut shape: Vec<Dim> = x.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect();
        let last = shape.len() - 1;
        shape[last] = Dim::Fixed(5);
        shape.insert(0, Dim::Fixed(2));
        let want = if x.shape()[last] == 1 { Some(()) } else { None };
        if want.is_some() {
            op_agrees(&gpu, Op::Expand { shape }, std::slice::from_ref(x));
        }
        // Slices with steps of 1, 2 and -1, and negative axes.
        let d = x.shape()[0] as u64;
        for (start, len, step) in [(0, d, 1), (1, d - 1, 1), (0, d.div_ceil(2), 2), (d - 1, d, -1)] {
            let op = Op::Slice { axis: -(r as i64), start: Dim::Fixed(start), len: Dim::Fixed(len), step };
            op_agrees(&gpu, op, std::slice::from_ref(x));
        }
        op_agrees(&gpu, Op::Concat { axis: 0 }, &[x.clone(), x.clone()]);
        let sizes = vec![Dim::Fixed(1), Dim::Fixed(x.shape()[0] as u64 - 1)];
        let (mut b, vs, m) = inputs(std::slice::from_ref(x));
        let parts = b.node("y", Op::Split { axis: 0, sizes }, &vs, vec![]);
        let g = b.finish(&parts).unwrap();
        agree(&gpu, &g, &m, "split");
    }
    // Expand of a 3-D float to a bigger rank, through a column.
    op_agrees(&gpu, Op::Expand { shape: shape_of(&[2, 3, 4]) }, &[rand(&[3, 1], 5)]);
}

#[test]
fn reshape_is_a_view_without_a_kernel() {
    let Some(gpu) = common::gpu() else { return };
    let (mut b, vs, m) = inputs(&[rand(&[2, 6], 6)]);
    let r = b.node("r", Op::Reshape { shape: vec![DimExpr::constant(3), DimExpr::constant(-1)] }, &vs, vec![])[0];
    let e = b.node("e", Op::Unary(UnaryOp::Exp), &[r], vec![])[0];
    let g = b.finish(&[e, r]).unwrap();
    agree(&gpu, &g, &m, "reshape");
    let exe = Executable::new(&gpu, &g, &Default::default()).unwrap();
    assert_eq!(exe.dispatch_count(), 1, "the reshape takes no dispatch");
}

#[test]
fn gather_and_gather_nd_with_negative_indices_on_any_axis() {
    let Some(gpu) = common::gpu() else { return };
    let table = rand(&[5, 3], 7);
    let ids = i64s(&[2, 2], &[0, 4, -1, 2]);
    let y = op_agrees(&gpu, Op::Gather { axis: 0 }, &[table.clone(), ids.clone()]);
    assert_eq!(y.shape(), &[2, 2, 3]);
    op_agrees(&gpu, Op::Gather { axis: -1 }, &[table, i64s(&[2], &[-3, 2])]);
    op_agrees(&gpu, Op::Gather { axis: 1 }, &[i64s(&[2, 3], &[1, 2, 3, 4, 5, 6]), i64s(&[], &[-1])]);
    op_agrees(
        &gpu,
        Op::Gather { axis: 0 },
        &[bools(&[3], &[true, false, true]), Tensor::i32(vec![2], vec![2, 1]).unwrap()],
    );
    let data = rand(&[2, 3, 4], 8);
    op_agrees(&gpu, Op::GatherND { batch_dims: 0 }, &[data.clone(), i64s(&[2, 2], &[0, 1, 1, -1])]);
    op_agrees(&gpu, Op::GatherND { batch_dims: 1 }, &[data.clone(), i64s(&[2, 1], &[2, -3])]);
    op_agrees(&gpu, Op::GatherND { batch_dims: 0 }, &[data, i64s(&[1, 3], &[1, 2, 3])]);
}

#[test]
fn scatter_nd_and_scatter_elements_on_every_dtype() {
    let Some(gpu) = common::gpu() else { return };
    // Rows of a cache-like [1, 2, 5, 4] tensor, one position negative; then single elements.
    let cache = rand(&[1, 2, 5, 4], 40);
    let rows = i64s(&[1, 2, 2, 3], &[0, 0, 1, 0, 0, -1, 0, 1, 1, 0, 1, 4]);
    let y = op_agrees(&gpu, Op::ScatterND, &[cache.clone(), rows.clone(), rand(&[1, 2, 2, 4], 41)]);
    assert_ne!(y, cache, "the rows were written");
    let elems = i64s(&[3, 4], &[0, 1, 4, 3, 0, 0, -5, -4, 0, -1, 2, 0]);
    op_agrees(&gpu, Op::ScatterND, &[cache.clone(), elems, rand(&[3], 42)]);
    // Integers (i64 at i32's ends, i32), booleans, f16.
    let ints = i64s(&[3, 2], &[1, 2, 3, 4, 5, 6]);
    let y = op_agrees(&gpu, Op::ScatterND, &[ints.clone(), i64s(&[1, 1], &[-2]), i64s(&[1, 2], &[i32::MIN as i64, 9])]);
    assert_eq!(y.as_i64().unwrap(), &[1, 2, i32::MIN as i64, 9, 5, 6]);
    let i32s = |v: &[i64]| Tensor::i32(vec![v.len()], v.to_vec()).unwrap();
    op_agrees(&gpu, Op::ScatterND, &[i32s(&[1, 2, 3]), i64s(&[1, 1], &[0]), i32s(&[i32::MAX as i64])]);
    op_agrees(&gpu, Op::ScatterND, &[bools(&[2, 2], &[true; 4]), i64s(&[1, 1], &[1]), bools(&[1, 2], &[false, true])]);
    let h = |v: &[f32]| Tensor::f16(vec![v.len()], v.to_vec()).unwrap();
    op_agrees(&gpu, Op::ScatterND, &[h(&[1.0, 2.0, 3.0]), i64s(&[2, 1], &[2, 0]), h(&[65504.0, -6e-8])]);
    // ScatterElements on each axis, negative indices, int32 indices, indices shorter than the
    // data on another axis.
    let x = rand(&[3, 4], 43);
    let idx = i64s(&[2, 4], &[2, 0, -1, 1, 0, -2, 0, 2]);
    op_agrees(&gpu, Op::ScatterElements { axis: 0 }, &[x.clone(), idx, rand(&[2, 4], 44)]);
    let idx = Tensor::i32(vec![3, 2], vec![3, 0, -1, -4, 1, 2]).unwrap();
    op_agrees(&gpu, Op::ScatterElements { axis: 1 }, &[x.clone(), idx, rand(&[3, 2], 45)]);
    let idx = i64s(&[2, 3], &[0, -1, 2, 3, 1, -4]);
    let y =
        op_agrees(&gpu, Op::ScatterElements { axis: -1 }, &[x.clone(), idx, f32s(&[2, 3], &[1., 2., 3., 4., 5., 6.])]);
    let (xv, yv) = (x.as_f32().unwrap(), y.as_f32().unwrap());
    assert_eq!(&yv[..8], &[1., xv[1], 3., 2., 6., 5., xv[6], 4.], "row 2 untouched: {yv:?}");
    assert_eq!(&yv[8..], &xv[8..]);
    op_agrees(&gpu, Op::ScatterElements { axis: 0 }, &[ints, i64s(&[1, 2], &[2, -3]), i64s(&[1, 2], &[-1, -2])]);
    op_agrees(
        &gpu,
        Op::ScatterElements { axis: 0 },
        &[bools(&[3], &[false; 3]), i64s(&[2], &[2, 0]), bools(&[2], &[true, true])],
    );
    // Data from a packed f16 weight, and a scatter over more than one workgroup of updates.
    let mut b = GraphBuilder::new();
    let w = b.weight("table", DType::F16, &[300, 2], 1.0);
    let ids = b.input("ids", DType::I64, vec![Dim::Fixed(300), Dim::Fixed(1)]);
    let upd = b.input("upd", DType::F16, vec![Dim::Fixed(300), Dim::Fixed(2)]);
    let y = b.node("write", Op::ScatterND, &[w, ids, upd], vec![])[0];
    let g = b.finish(&[y]).unwrap();
    let perm: Vec<i64> = (0..300).map(|k| (k * 7) % 300 - 150).collect();
    let vals: Vec<f32> = (0..600).map(|k| k as f32 - 300.0).collect();
    let m = HashMap::from([
        ("ids".to_string(), i64s(&[300, 1], &perm)),
        ("upd".to_string(), Tensor::f16(vec![300, 2], vals).unwrap()),
    ]);
    agree(&gpu, &g, &m, "ScatterND over a packed f16 weight");
}

/// A scatter's index out of range or two writes to one place are errors naming the node, on
/// the interpreter and the GPU (whichever of the two writes the GPU ran first), never data;
/// the next good run is not poisoned; a scatter into empty data still checks its indices.
#[test]
fn scatter_errors_are_errors_not_data() {
    let Some(gpu) = common::gpu() else { return };
    let mut b = GraphBuilder::new();
    let cache = b.input("cache", DType::F32, vec![Dim::Fixed(1), Dim::Fixed(2), Dim::sym("max"), Dim::Fixed(4)]);
    let pos = b.input("pos", DType::I64, vec![Dim::Fixed(1), Dim::Fixed(2), Dim::sym("new"), Dim::Fixed(3)]);
    let new = b.input("new_kv", DType::F32, vec![Dim::Fixed(1), Dim::Fixed(2), Dim::sym("new"), Dim::Fixed(4)]);
    let y = b.node("cache_write", Op::ScatterND, &[cache, pos, new], vec![])[0];
    let g = b.finish(&[y]).unwrap();
    let mut s = Session::new(&gpu, g.clone()).unwrap();
    let run = |s: &mut Session, at: &[i64]| {
        let idx: Vec<i64> = (0..2).flat_map(|h| at.iter().flat_map(move |&p| [0, h, p])).collect();
        let ins = HashMap::from([
            ("cache".to_string(), rand(&[1, 2, 6, 4], 50)),
            ("pos".to_string(), i64s(&[1, 2, at.len(), 3], &idx)),
            ("new_kv".to_string(), rand(&[1, 2, at.len(), 4], 51)),
        ]);
        (s.run(&ins), interp::run(&g, &ins))
    };
    let (gpu_e, cpu_e) = run(&mut s, &[2, 6]);
    let gpu_e = gpu_e.unwrap_err();
    assert_eq!(
        gpu_e.to_string(),
        "node 'cache_write': index 6 is out of range for 6 elements along axis 2 (position 2 of an index tuple) (the indices come from input 'pos', the data from input 'cache'); valid: -6 to 5"
    );
    assert_eq!(gpu_e.exit_code(), 2);
    let cpu_e = cpu_e.unwrap_err().to_string();
    assert!(cpu_e.starts_with("node 'cache_write': index 6 (index tuple 1, position 2) is out of range"), "{cpu_e}");
    // 3 and -3 name one row of a cache of 6.
    let (gpu_e, cpu_e) = run(&mut s, &[1, 3, -3]);
    let gpu_e = gpu_e.unwrap_err().to_string();
    // Two pairs (one per head) write one row each: the GPU names either.
    assert!(gpu_e.starts_with("node 'cache_write': index tuple "), "{gpu_e}");
    let tail = ", 3], as another index tuple does: ScatterND (reduction 'none') writes each place once, or the result would depend on the order";
    assert!(gpu_e.contains(" of the indices writes data[0, ") && gpu_e.ends_with(tail), "{gpu_e}");
    let cpu_e = cpu_e.unwrap_err().to_string();
    assert!(
        cpu_e.starts_with(
            "node 'cache_write': index tuple 2 of the indices writes data[0, 0, 3], as index tuple 1 does"
        ),
        "{cpu_e}"
    );
    // The next good run, of another length, agrees with the interpreter, and so does the run
    // after it on the same executable (whose flags the copy cleared again).
    for _ in 0..2 {
        let (got, want) = run(&mut s, &[-1, 0, 4]);
        assert_eq!(got.unwrap(), want.unwrap());
    }
    // ScatterElements: a duplicate among many (across workgroups), an index out of range.
    let mut idx: Vec<i64> = (0..600).collect();
    idx[599] = 17;
    let ins = [rand(&[600], 52), i64s(&[600], &idx), rand(&[600], 53)];
    let e = op_fails(&gpu, Op::ScatterElements { axis: 0 }, &ins).to_string();
    let tail = " of the indices writes data[17], as another element does: ScatterElements (reduction 'none') writes each place once, or the result would depend on the order";
    assert!(e.starts_with("node 'y': element 17 ") || e.starts_with("node 'y': element 599 "), "{e}");
    assert!(e.ends_with(tail), "{e}");
    let cpu = interp_error(Op::ScatterElements { axis: 0 }, &ins);
    assert!(cpu.starts_with("node 'y': element 599 of the indices writes data[17], as element 17 does"), "{cpu}");
    let ins = [rand(&[2, 3], 54), i64s(&[1, 1], &[-4]), rand(&[1, 1], 55)];
    assert!(interp_error(Op::ScatterElements { axis: 1 }, &ins).contains("index -4 (element 0 of the indices, axis 1)"));
    let e = op_fails(&gpu, Op::ScatterElements { axis: 1 }, &ins);
    assert_eq!(
        e.to_string(),
        "node 'y': index -4 is out of range for 3 elements along axis 1 (the indices come from input 'x1', the data from input 'x0'); valid: -3 to 2"
    );
    // Empty data, updates to write: every index is out of range; no updates: the data.
    let ins = [f32s(&[0, 2], &[]), i64s(&[1, 1], &[0]), f32s(&[1, 2], &[1., 2.])];
    assert!(interp_error(Op::ScatterND, &ins).contains("out of range for a dim of size 0"));
    let e = op_fails(&gpu, Op::ScatterND, &ins);
    assert!(e.to_string().contains("index 0 is out of range for 0 elements along axis 0 ("), "{e}");
    assert!(e.to_string().ends_with("; the axis is empty"), "{e}");
    let y = op_agrees(&gpu, Op::ScatterND, &[f32s(&[2, 2], &[1., 2., 3., 4.]), i64s(&[0, 1], &[]), f32s(&[0, 2], &[])]);
    assert_eq!(y.as_f32().unwrap(), &[1., 2., 3., 4.]);
}

/// A scatter whose data is a graph input that nothing else reads writes in place: one kernel,
/// no copy of the data (its indices and updates computed, not inputs: they may not share the
/// inputs' buffer with the data). Call after call on one executable, each with its own data
/// and positions, the results are the interpreter's (a call never sees an earlier call's
/// writes: the inputs go up again before each run); two updates of one place are still an
/// error, and the next call is right again (the flags are zeroed before every run).
#[test]
fn a_scatter_into_an_input_nothing_else_reads_writes_in_place() {
    let Some(gpu) = common::gpu() else { return };
    let g = glufuse::json::from_str(
        r#"{"format": "glufuse.graph/1", "nodes": [
  {"name": "cache", "op": "Input", "type": {"dtype": "f32", "shape": [5, 3]}},
  {"name": "pos", "op": "Input", "type": {"dtype": "i64", "shape": [2, 1]}},
  {"name": "new", "op": "Input", "type": {"dtype": "f32", "shape": [2, 3]}},
  {"name": "pos.n", "op": "Neg", "inputs": ["pos"]},
  {"name": "pos.nn", "op": "Neg", "inputs": ["pos.n"]},
  {"name": "new.n", "op": "Neg", "inputs": ["new"]},
  {"name": "present", "op": "ScatterND", "inputs": ["cache", "pos.nn", "new.n"]}],
  "outputs": ["present"]}"#,
    )
    .unwrap();
    let n = g.find("present").unwrap();
    assert!(glufuse::codegen::scatter_in_place(&g, n));
    let b = glufuse::ir::shape::Bindings::default();
    let exe = Executable::new(&gpu, &g, &b).unwrap();
    let kinds: Vec<_> = exe.kernels().iter().map(|k| k.source().kind).collect();
    assert!(!kinds.contains(&glufuse::codegen::KernelKind::Copy), "{kinds:?}");
    for (call, (p, seed)) in
        [(vec![0i64, 2], 1u64), (vec![1, -1], 2), (vec![3, 3], 3), (vec![4, 0], 4)].into_iter().enumerate()
    {
        let ins: HashMap<String, Tensor> =
            [("cache", rand(&[5, 3], seed)), ("pos", i64s(&[2, 1], &p)), ("new", rand(&[2, 3], seed + 10))]
                .into_iter()
                .map(|(k, t)| (k.to_string(), t))
                .collect();
        match interp::run(&g, &ins) {
            Ok(want) => {
                let got = exe.run(&ins).unwrap_or_else(|e| panic!("call {call}: {e}"));
                assert_eq!(got[0].as_f32().unwrap(), want[0].as_f32().unwrap(), "call {call}");
            }
            Err(e) => {
                assert!(e.to_string().contains("writes each place once"), "call {call}: {e}");
                let gpu_e = exe.run(&ins).expect_err("two updates of one place on the GPU too").to_string();
                assert!(gpu_e.contains("writes each place once"), "call {call}: {gpu_e}");
            }
        }
    }
}

#[test]
fn an_index_out_of_range_is_an_error_naming_node_index_and_input() {
    let Some(gpu) = common::gpu() else { return };
    let mut b = GraphBuilder::new();
    let ids = b.input("input_ids", DType::I64, vec![Dim::Fixed(1), Dim::sym("seq")]);
    let table = b.weight("embed", DType::F32, &[128, 4], 1.0);
    let y = b.node("embedding", Op::Gather { axis: 0 }, &[table, ids], vec![])[0];
    let g = b.finish(&[y]).unwrap();
    let mut s = Session::new(&gpu, g).unwrap();
    let run = |s: &mut Session, v: &[i64]| s.run(&[("input_ids".to_string(), i64s(&[1, v.len()], v))].into());
    let e = run(&mut s, &[3, 130, 5]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 'embedding': index 130 is out of range for 128 rows (input 'input_ids'); valid: -128 to 127"
    );
    assert_eq!(e.exit_code(), 2);
    let e = run(&mut s, &[-129]).unwrap_err().to_string();
    assert!(e.contains("index -129 is out of range for 128 rows"), "{e}");
    // The next good run is not poisoned by the last one's error.
    assert_eq!(run(&mut s, &[-128, 127]).unwrap()[0].shape(), &[1, 2, 4]);
    // GatherND names the position of the tuple.
    let e = op_fails(&gpu, Op::GatherND { batch_dims: 0 }, &[rand(&[2, 3], 1), i64s(&[1, 2], &[1, 3])]);
    assert_eq!(
        e.to_string(),
        "node 'y': index 3 is out of range for 3 elements along axis 1 (position 1 of an index tuple) (the indices come from input 'x1', the data from input 'x0'); valid: -3 to 2"
    );
}

#[test]
fn integer_errors_are_errors_not_wrapped_values() {
    let Some(gpu) = common::gpu() else { return };
    let e = op_fails(&gpu, Op::Binary(BinaryOp::Div), &[i64s(&[2], &[4, 5]), i64s(&[2], &[1, 0])]);
    assert_eq!(e.to_string(), "node 'y': integer division by zero (output element 1)");
    let big = i64s(&[1], &[2_000_000_000]);
    let e = op_fails(&gpu, Op::Binary(BinaryOp::Add), &[big.clone(), big.clone()]).to_string();
    assert!(e.contains("node 'y': an i64 result (output element 0) does not fit the 32 bits"), "{e}");
    let e = op_fails(&gpu, Op::Binary(BinaryOp::Mul), &[big.clone(), i64s(&[1], &[-3])]).to_string();
    assert!(e.contains("does not fit the 32 bits"), "{e}");
    let e = op_fails(&gpu, Op::Cast { to: DType::I64 }, &[f32s(&[2], &[1.0, 3e9])]).to_string();
    assert!(e.contains("output element 1"), "{e}");
    // An infinity saturates (T5 casts log(0) and discards it); i32 wraps as the interpreter's.
    op_fails(&gpu, Op::Reduce { op: ReduceOp::Sum, axes: vec![], keepdims: false }, &[i64s(&[2], &[2147483647, 1])]);
    let y = op_agrees(
        &gpu,
        Op::Binary(BinaryOp::Add),
        &[Tensor::i32(vec![1], vec![2147483647]).unwrap(), Tensor::i32(vec![1], vec![1]).unwrap()],
    );
    assert_eq!(y.as_i64().unwrap(), &[-2147483648]);
    // An input value that does not fit 32 bits is refused, naming the input.
    let (mut b, vs, _) = inputs(std::slice::from_ref(&big));
    let y = b.node("y", Op::Unary(UnaryOp::Neg), &vs, vec![])[0];
    let mut s = Session::new(&gpu, b.finish(&[y]).unwrap()).unwrap();
    let e = s.run(&[("x0".to_string(), i64s(&[1], &[1 << 40]))].into()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "node 'x0': element 0 is 1099511627776, outside the 32-bit range the GPU holds i64 values in"
    );
}

#[test]
fn ranges_of_either_sign_and_integer_type() {
    let Some(gpu) = common::gpu() else { return };
    for (start, limit, delta, dtype) in [(0, 7, 1, DType::I64), (10, -3, -4, DType::I32), (5, 5, 1, DType::I64)] {
        let op = Op::Range { start: DimExpr::constant(start), limit: DimExpr::constant(limit), delta, dtype };
        op_agrees(&gpu, op, &[]);
    }
}

#[test]
fn reductions_over_any_axes_with_keepdims_and_empty_axes() {
    let Some(gpu) = common::gpu() else { return };
    let x = rand(&[3, 4, 5], 9);
    for op in ReduceOp::ALL {
        for axes in [vec![-1], vec![0], vec![1], vec![0, 2], vec![]] {
            for keepdims in [true, false] {
                op_agrees(&gpu, Op::Reduce { op, axes: axes.clone(), keepdims }, std::slice::from_ref(&x));
            }
        }
    }
    for op in [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Prod] {
        op_agrees(&gpu, Op::Reduce { op, axes: vec![1], keepdims: false }, &[i64s(&[2, 3], &[1, -5, 3, 7, 0, -2])]);
    }
    // An int64 product past 32 bits is an error on the GPU (which holds them in 32), naming
    // the node; the interpreter's product is exact.
    let big = i64s(&[1, 3], &[70000, 70000, 1]);
    let e = op_fails(&gpu, Op::Reduce { op: ReduceOp::Prod, axes: vec![1], keepdims: false }, &[big]).to_string();
    assert!(e.contains("'y'") && e.contains("32"), "{e}");
    // A long row: 256 threads stride over it.
    op_agrees(&gpu, Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true }, &[rand(&[2, 3001], 10)]);
    // Short runs over many outputs (a thread each, several workgroups): a middle axis (a
    // mixture of experts' sum over each token's experts), leading axes, the longest run a
    // thread walks and the shortest a workgroup takes.
    for (shape, axes) in [(vec![300, 2, 40], vec![1]), (vec![2, 3, 700], vec![0, 1]), (vec![600, 16], vec![-1])] {
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            op_agrees(&gpu, Op::Reduce { op, axes: axes.clone(), keepdims: false }, &[rand(&shape, 15)]);
        }
    }
    op_agrees(&gpu, Op::Reduce { op: ReduceOp::Sum, axes: vec![1], keepdims: true }, &[rand(&[40, 17, 3], 16)]);
    // Over an empty axis: sum 0, max -inf, mean NaN, product 1 (ONNX), on a result that is not
    // empty.
    for op in ReduceOp::ALL {
        op_agrees(&gpu, Op::Reduce { op, axes: vec![1], keepdims: false }, &[f32s(&[2, 0], &[])]);
    }
}

/// The squares a sum or a mean reads (`Pow(x, 2)`, `x·x`: a norm's mean of squares whose
/// tail the attention took) take no kernel: the reduction squares `x` as it reads it, over
/// rows long and short; the same squares with another reader, a cube, a maximum of squares
/// and squares that are a graph output are computed. All match the interpreter.
#[test]
fn squares_a_sum_or_mean_reads_take_no_kernel() {
    use glufuse::codegen::{generate, KernelKind, Target};
    let Some(gpu) = common::gpu() else { return };
    // (shape, exponent or None for x·x, reduction, the squares read elsewhere too, an output)
    let cases = [
        (vec![3, 5, 64], Some(2.0), ReduceOp::Mean, false, false, true),
        (vec![300, 8], None, ReduceOp::Sum, false, false, true),
        (vec![2, 3001], Some(2.0), ReduceOp::Sum, false, false, true),
        (vec![3, 64], Some(2.0), ReduceOp::Mean, true, false, false),
        (vec![3, 64], Some(3.0), ReduceOp::Mean, false, false, false),
        (vec![3, 64], Some(2.0), ReduceOp::Max, false, false, false),
        (vec![3, 64], None, ReduceOp::Mean, false, true, false),
    ];
    for (shape, exponent, op, other, output, in_place) in cases {
        let what = format!("{shape:?} {exponent:?} {op:?}, read elsewhere: {other}, an output: {output}");
        let x = rand(&shape, 17);
        let (mut b, vs, m) = inputs(std::slice::from_ref(&x));
        let sq = match exponent {
            Some(e) => {
                let c = b.scalar("two", DType::F32, e);
                b.binary("sq", BinaryOp::Pow, vs[0], c)
            }
            None => b.binary("sq", BinaryOp::Mul, vs[0], vs[0]),
        };
        let y = b.node("y", Op::Reduce { op, axes: vec![-1], keepdims: true }, &[sq], vec![])[0];
        let mut outs = vec![y];
        if other {
            outs.push(b.binary("z", BinaryOp::Add, sq, vs[0]));
        }
        if output {
            outs.push(sq);
        }
        let g = b.finish(&outs).unwrap_or_else(|e| panic!("{what}: {e}"));
        agree(&gpu, &g, &m, &what);
        let ks = generate(&g, &Default::default(), &Target::default()).unwrap();
        let squares = ks.iter().filter(|k| k.source().name == "sq").count();
        assert_eq!(squares, usize::from(!in_place), "{what}");
        let red = ks.iter().find(|k| k.source().name == "y").unwrap().source();
        assert_eq!(red.kind, KernelKind::Reduce, "{what}");
        assert_eq!(red.wgsl.contains("sq_("), in_place, "{what}");
        assert_eq!(g.launches_kernel(sq.node), !in_place, "{what}");
    }
}

#[test]
fn softmax_is_stable_on_masks_and_long_rows_along_any_axis() {
    let Some(gpu) = common::gpu() else { return };
    for axis in [-1, 0, 1] {
        op_agrees(&gpu, Op::Softmax { axis }, &[rand(&[3, 4, 5], 11)]);
    }
    // -3.4e38 masks: a partly masked row, a fully masked row (uniform, as onnxruntime), and
    // a row of -inf (NaN, as onnxruntime).
    let m = -3.4e38f32;
    let inf = f32::NEG_INFINITY;
    let y = op_agrees(&gpu, Op::Softmax { axis: -1 }, &[f32s(&[3, 3], &[1.0, m, 2.0, m, m, m, inf, inf, inf])]);
    let v = y.as_f32().unwrap();
    assert_eq!(v[1], 0.0);
    assert!((v[3] - 1.0 / 3.0).abs() < 1e-7 && v[6].is_nan());
    // A vocabulary-sized row.
    op_agrees(&gpu, Op::Softmax { axis: -1 }, &[rand(&[2, 5000], 12)]);
}

#[test]
fn cumsum_forward_reverse_exclusive_on_floats_and_ints() {
    let Some(gpu) = common::gpu() else { return };
    for exclusive in [false, true] {
        for reverse in [false, true] {
            for axis in [-1, 0] {
                op_agrees(&gpu, Op::CumSum { axis, exclusive, reverse }, &[rand(&[3, 7], 13)]);
            }
            op_agrees(&gpu, Op::CumSum { axis: 1, exclusive, reverse }, &[i64s(&[2, 3], &[1, 1, 0, 0, 1, 1])]);
            // Longer than one chunk of 256 threads.
            op_agrees(&gpu, Op::CumSum { axis: -1, exclusive, reverse }, &[rand(&[2, 600], 14)]);
        }
    }
}

/// Every output of `g` on the GPU bit for bit as on the interpreter (`-0.0` and NaN too).
fn same_bits(gpu: &Gpu, g: &Graph, ins: &HashMap<String, Tensor>, what: &str) -> Vec<Tensor> {
    let want = interp::run(g, ins).unwrap_or_else(|e| panic!("{what}: interpreter: {e}"));
    let got = Session::new(gpu, g.clone()).and_then(|mut s| s.run(ins)).unwrap_or_else(|e| panic!("{what}: GPU: {e}"));
    for (k, (x, y)) in got.iter().zip(&want).enumerate() {
        assert_eq!((x.dtype(), x.shape()), (y.dtype(), y.shape()), "{what}: output {k}");
        let bits = |t: &Tensor| match t.data() {
            Data::F32(v) => v.iter().map(|f| f.to_bits() as i64).collect::<Vec<_>>(),
            Data::I64(v) => v.clone(),
            Data::Bool(v) => v.iter().map(|&b| b as i64).collect(),
        };
        assert_eq!(bits(x), bits(y), "{what}: output {k}");
    }
    got
}

/// Top-K selections on the GPU: the interpreter's values and indices bit for bit, along the
/// last axis and an inner one, on lanes longer than a workgroup (each thread several
/// elements), with few distinct values (ties by index), NaN, `-0.0` beside `0.0`, infinities,
/// f16 and int64 (the lowest int32 among them), K from 1 to the whole lane; every value the
/// input's element at its index; an axis of a size bound at run time, and K past it an error
/// naming the node.
#[test]
fn top_k_matches_the_interpreter_bit_for_bit_on_ties_nan_and_long_lanes() {
    let Some(gpu) = common::gpu() else { return };
    let levels = [0.0, -0.0, 1.5, -1.5, 3.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.25];
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let floats = |n: usize, next: &mut dyn FnMut() -> u64| -> Vec<f32> {
        (0..n).map(|_| levels[(next() % levels.len() as u64) as usize]).collect()
    };
    let f = floats(3 * 1000, &mut next);
    let x = f32s(&[3, 1000], &f);
    let h = Tensor::f16(vec![700, 3], floats(2100, &mut next)).unwrap();
    let ints: Vec<i64> = (0..2 * 300).map(|_| [i32::MIN as i64, -3, 0, 5, 7][(next() % 5) as usize]).collect();
    let i = i64s(&[2, 300], &ints);
    let cases: [(&Tensor, i64, &[usize]); 3] =
        [(&x, -1, &[1, 7, 64, 1000]), (&h, 0, &[1, 33, 700]), (&i, 1, &[2, 300])];
    for (t, axis, ks) in cases {
        for &k in ks {
            for largest in [true, false] {
                let op = Op::TopK { axis, k, largest };
                let what = format!("{} on {}", op.label(), ty(t));
                let (mut b, vs, m) = inputs(std::slice::from_ref(t));
                let outs = b.node("y", op, &vs, vec![]);
                let g = b.finish(&outs).unwrap();
                let got = same_bits(&gpu, &g, &m, &what);
                // Each value is the input's element at its index, along the axis.
                let (shape, ax) = (t.shape(), if axis < 0 { t.shape().len() - 1 } else { axis as usize });
                let inner: usize = shape[ax + 1..].iter().product();
                let idx = got[1].as_i64().unwrap();
                for (j, &at) in idx.iter().enumerate() {
                    let (outer, r) = (j / (k * inner), j % inner);
                    let src = outer * shape[ax] * inner + at as usize * inner + r;
                    match (t.data(), got[0].data()) {
                        (Data::F32(a), Data::F32(v)) => assert_eq!(a[src].to_bits(), v[j].to_bits(), "{what}: {j}"),
                        (Data::I64(a), Data::I64(v)) => assert_eq!(a[src], v[j], "{what}: {j}"),
                        _ => panic!("{what}: dtypes"),
                    }
                }
            }
        }
    }
    // An axis bound at run time: K up to its size runs, K past it is an error naming the node.
    let mut b = GraphBuilder::new();
    let input = b.node("x0", Op::Input, &[], vec![TensorType::new(DType::F32, vec![Dim::Fixed(2), Dim::sym("m")])])[0];
    let outs = b.node("pick", Op::TopK { axis: 1, k: 5, largest: true }, &[input], vec![]);
    let g = b.finish(&outs).unwrap();
    let five = HashMap::from([("x0".to_string(), rand(&[2, 5], 21))]);
    same_bits(&gpu, &g, &five, "TopK over a symbolic axis");
    let four = HashMap::from([("x0".to_string(), rand(&[2, 4], 22))]);
    let e = Session::new(&gpu, g.clone()).and_then(|mut s| s.run(&four)).expect_err("K = 5 of 4").to_string();
    assert!(e.contains("pick") && e.contains("k = 5") && e.contains("4"), "{e}");
    let e = interp::run(&g, &four).expect_err("K = 5 of 4").to_string();
    assert!(e.contains("pick") && e.contains("k = 5"), "{e}");
}

#[test]
fn layer_norm_with_and_without_scale_and_bias() {
    let Some(gpu) = common::gpu() else { return };
    let x = rand(&[3, 2, 8], 15);
    let ln = |axis, scale, bias| Op::LayerNorm { axis, epsilon: 1e-5, scale, bias };
    op_agrees(&gpu, ln(-1, true, true), &[x.clone(), rand(&[8], 16), rand(&[8], 17)]);
    op_agrees(&gpu, ln(-1, false, false), std::slice::from_ref(&x));
    op_agrees(&gpu, ln(1, true, false), &[x.clone(), rand(&[1, 8], 18)]);
    op_agrees(&gpu, ln(-1, true, false), &[rand(&[2, 700], 19), rand(&[700], 20)]);
}

#[test]
fn empty_dims_give_empty_results_without_a_dispatch() {
    let Some(gpu) = common::gpu() else { return };
    let (mut b, vs, m) = inputs(&[f32s(&[0, 4], &[]), rand(&[2, 4], 21)]);
    let e = b.node("e", Op::Unary(UnaryOp::Exp), &[vs[0]], vec![])[0];
    let c = b.node("c", Op::Concat { axis: 0 }, &[e, vs[1]], vec![])[0];
    let s = b.node("s", Op::Softmax { axis: 0 }, &[e], vec![])[0];
    let g = b.finish(&[c, s]).unwrap();
    let out = agree(&gpu, &g, &m, "empty");
    assert_eq!(out[1].shape(), &[0, 4]);
    assert_eq!(Executable::new(&gpu, &g, &Default::default()).unwrap().dispatch_count(), 1, "only the concat");
}

#[test]
fn batched_matmul_over_symbolic_dims() {
    let Some(gpu) = common::gpu() else { return };
    let mut b = GraphBuilder::new();
    let q = b.input("q", DType::F32, vec![Dim::Fixed(1), Dim::Fixed(2), Dim::sym("new"), Dim::Fixed(4)]);
    let k =
        b.input("k", DType::F32, vec![Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(4), Dim::parse("past + new").unwrap()]);
    let s = b.matmul("scores", q, k);
    let g = b.finish(&[s]).unwrap();
    for (new, past) in [(1, 3), (3, 0)] {
        let m =
            [("q".to_string(), rand(&[1, 2, new, 4], 22)), ("k".to_string(), rand(&[1, 2, 4, past + new], 23))].into();
        agree(&gpu, &g, &m, "batched matmul");
    }
}

/// A batched matrix times a vector per batch with k of 64 or more (lanes along k per output
/// element: a workgroup each where they are few, 32 lanes where there are 8192 or more),
/// batch dims broadcast either way: matches the interpreter.
#[test]
fn long_batched_matrix_vector_products_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    for (a, x) in
        [(vec![2, 3, 100], vec![2, 100, 1]), (vec![1, 9000, 64], vec![1, 64, 1]), (vec![1, 5, 70], vec![4, 70, 1])]
    {
        let what = format!("{a:?} · {x:?}");
        let (mut b, vs, m) = inputs(&[rand(&a, 31), rand(&x, 32)]);
        let y = b.matmul("bmm", vs[0], vs[1]);
        let g = b.finish(&[y]).unwrap();
        agree(&gpu, &g, &m, &what);
    }
    // f16 weight matrices (packed two halves to a word): k even (read a word at a time) over
    // one step of the lanes' loads, two and a part, and odd (a half at a time).
    for (a, x) in [
        (vec![3, 9000, 130], vec![3, 130, 1]),
        (vec![2, 4, 2600], vec![2, 2600, 1]),
        (vec![1, 5, 3001], vec![1, 3001, 1]),
    ] {
        let what = format!("f16 {a:?} · {x:?}");
        let (mut b, vs, m) = inputs(&[rand(&x, 33)]);
        let w = b.weight("w", DType::F16, &a.iter().map(|&d| d as u64).collect::<Vec<_>>(), 1.0);
        let x16 = b.node("x16", Op::Cast { to: DType::F16 }, &[vs[0]], vec![])[0];
        let y = b.matmul("bmm", w, x16);
        let g = b.finish(&[y]).unwrap();
        // (f16 products: within f16's rounding of the interpreter's.)
        agree_within(&gpu, &g, &m, 2e-3, &what);
    }
}

/// A tied embedding (Qwen2, Gemma): the table `[V, K]` is read by the `Gather` and, through
/// a `Transpose`, by the LM head's `MatMul`. The projection reads the table in place in the
/// `[N, K]` layout: no transpose kernel (it ran on every call), no buffer for the transposed
/// table; the logits match the interpreter for the decode GEMV, the GEMMs, unaligned K,
/// f16 and f32 tables and x of rank 3. A transpose with another reader still runs.
#[test]
fn a_tied_embedding_is_read_in_place_by_the_lm_head() {
    use glufuse::codegen::{generate, manifest, KernelKind, Target};
    let Some(gpu) = common::gpu() else { return };
    for dtype in [DType::F32, DType::F16] {
        for (lead, rows, k) in [(1, 1, 32), (1, 3, 30), (2, 6, 32), (1, 12, 32), (1, 12, 30)] {
            for also_output in [false, true] {
                let what = format!("{dtype:?} ids [{lead}, {rows}], K={k}, transpose an output: {also_output}");
                let vocab = 40;
                let mut b = GraphBuilder::new();
                let ids = b.input("ids", DType::I64, shape_of(&[lead, rows]));
                let emb = b.weight("emb", dtype, &[vocab, k], 1.0);
                let h = b.node("embed", Op::Gather { axis: 0 }, &[emb, ids], vec![])[0];
                let h = b.unary("act", UnaryOp::Tanh, h);
                let t = b.transpose("emb_t", emb, &[1, 0]);
                let logits = b.matmul("lm_head", h, t);
                let outs = if also_output { vec![logits, t] } else { vec![logits] };
                let g = b.finish(&outs).unwrap();
                let n = (lead * rows) as usize;
                let ids_t =
                    i64s(&[lead as usize, rows as usize], &(0..n as i64).map(|i| (i * 7) % 40).collect::<Vec<_>>());
                let m = HashMap::from([("ids".to_string(), ids_t)]);
                agree_within(&gpu, &g, &m, if dtype == DType::F16 { 2e-3 } else { 1e-5 }, &what);
                let ks = generate(&g, &Default::default(), &Target::default()).unwrap();
                let transposes = ks.iter().filter(|k| k.source().kind == KernelKind::Transpose).count();
                assert_eq!(transposes, also_output as usize, "{what}: {}", manifest(&g, &ks));
                let head = ks.iter().find(|k| k.source().name == "lm_head").unwrap().source();
                let bound: Vec<String> = head.bindings.iter().map(|b| g.value_name(b.value)).collect();
                let want_w = if also_output { "emb_t" } else { "emb" };
                assert_eq!(bound[1], want_w, "{what}: {}", manifest(&g, &ks));
                let choice = head.choice.as_ref().unwrap().to_string();
                assert_eq!(choice.contains("read in place as [N,K]"), !also_output, "{what}: {choice}");
            }
        }
    }
}

/// A mixture of experts' weights picked per token (Hugging Face's `batched_mm`:
/// `gate_up_proj[expert_ids]`, then a batched product): the batched product reads the
/// table in place at the slab each index names, so the gather takes no kernel and no buffer
/// (the copy it made was every token's expert matrices). `Gather` and `GatherND` forms, the
/// gathered operand first or second, a table of rank 4 (a batch dim inside each slab), f32
/// and f16 tables, negative indices, rows of k short and long (a thread, a workgroup or 32
/// lanes per output element): all match the interpreter. A gather that is also a graph
/// output still runs. An index out of range is an error naming the gather and the input,
/// and the next run is not poisoned by it.
#[test]
fn expert_weights_picked_per_token_are_read_in_place() {
    use glufuse::codegen::{generate, manifest, KernelKind, Target};
    let Some(gpu) = common::gpu() else { return };
    let (e, s) = (3, 4);
    let ids_t = i64s(&[s], &[2, 0, -1, 1]);
    for dtype in [DType::F32, DType::F16] {
        // (form, table dims, x dims, gathered operand first, the gather also an output)
        let forms = [
            ("Gather", vec![e, 6, 5], vec![s as u64, 5, 1], true, false),
            ("GatherND", vec![e, 6, 5], vec![s as u64, 5, 1], true, false),
            ("Gather", vec![e, 5, 6], vec![s as u64, 1, 5], false, false),
            ("Gather", vec![e, 2, 5, 6], vec![s as u64, 2, 3, 5], false, false),
            ("Gather", vec![e, 6, 5], vec![s as u64, 5, 1], true, true),
            // k of 64 or more: a workgroup per output element, or 32 lanes each where there
            // are 8192 or more of them.
            ("Gather", vec![e, 6, 100], vec![s as u64, 100, 1], true, false),
            ("GatherND", vec![e, 2, 7, 300], vec![s as u64, 2, 300, 1], true, false),
            ("Gather", vec![e, 2100, 64], vec![s as u64, 64, 1], true, false),
        ];
        for (form, td, xd, first, output) in forms {
            let what = format!("{dtype:?} {form} of {td:?}, x {xd:?}, gathered first: {first}, an output: {output}");
            let mut b = GraphBuilder::new();
            let ids = b.input("ids", DType::I64, shape_of(&[s as u64]));
            let x = b.input("x", DType::F32, shape_of(&xd));
            let x = b.node("x16", Op::Cast { to: dtype }, &[x], vec![])[0];
            let table = b.weight("experts", dtype, &td, 1.0);
            let picked = if form == "Gather" {
                b.node("pick", Op::Gather { axis: 0 }, &[table, ids], vec![])[0]
            } else {
                let tuples = b.node(
                    "tuples",
                    Op::Reshape { shape: vec![DimExpr::constant(s as i64), DimExpr::constant(1)] },
                    &[ids],
                    vec![],
                )[0];
                b.node("pick", Op::GatherND { batch_dims: 0 }, &[table, tuples], vec![])[0]
            };
            let y = if first { b.matmul("bmm", picked, x) } else { b.matmul("bmm", x, picked) };
            let g = b.finish(&if output { vec![y, picked] } else { vec![y] }).unwrap_or_else(|e| panic!("{what}: {e}"));
            let m = HashMap::from([
                ("ids".to_string(), ids_t.clone()),
                ("x".to_string(), rand(&xd.iter().map(|&d| d as usize).collect::<Vec<_>>(), 5)),
            ]);
            let (mut sess, got) = agree_within(&gpu, &g, &m, if dtype == DType::F16 { 2e-3 } else { 1e-5 }, &what);
            let ks = generate(&g, &Default::default(), &Target::default()).unwrap();
            let gathers = ks.iter().filter(|k| k.source().kind == KernelKind::Gather).count();
            assert_eq!(gathers, output as usize, "{what}: {}", manifest(&g, &ks));
            let bmm = ks.iter().find(|k| k.source().name == "bmm").unwrap().source();
            let bound: Vec<String> = bmm.bindings.iter().map(|b| g.value_name(b.value)).collect();
            let table_bound = bound.iter().any(|v| v == "experts");
            assert_eq!(table_bound, !output, "{what}: {bound:?}");
            // k of 64 or more: lanes along k, summed by subgroups where the device has them
            // (generated and validated for an H100's options; by a tree here).
            if first && xd[xd.len() - 2] >= 64 {
                let elements = td[td.len() - 2] * xd[..xd.len() - 2].iter().product::<u64>();
                let lanes = if elements < 8192 { 256 } else { 32 };
                for (t, sg) in [(Target::default(), false), (common::h100(), true)] {
                    let ks = generate(&g, &Default::default(), &t).unwrap();
                    let wgsl = &ks.iter().find(|k| k.source().name == "bmm").unwrap().source().wgsl;
                    // Four units a lane a step, a word of two halves where the table is f16.
                    assert!(wgsl.contains(&format!("u0 += {}u", 4 * lanes)), "{what}: {wgsl}");
                    assert_eq!(wgsl.contains("(ra0 >> 1u)"), dtype == DType::F16, "{what}: {wgsl}");
                    assert_eq!(wgsl.contains("subgroup"), sg, "{what}: {wgsl}");
                }
            }
            // An index out of range: an error naming the gather and the input, exit 2.
            let mut bad = m.clone();
            bad.insert("ids".into(), i64s(&[s], &[0, 1, 3, 2]));
            let err = sess.run(&bad).expect_err(&what);
            let text = err.to_string();
            assert!(
                text.starts_with("node 'pick': index 3 is out of range for 3 elements along axis 0"),
                "{what}: {text}"
            );
            assert!(text.contains("input 'ids'"), "{what}: {text}");
            assert_eq!(err.exit_code(), 2, "{what}");
            let again = sess.run(&m).unwrap_or_else(|e| panic!("{what}: after the error: {e}"));
            assert_eq!(interp::compare(&again[0], &got[0]).0, 0.0, "{what}: the run after the error");
        }
    }
}

/// A prompt's expert products (at least two pairs per expert) are grouped by expert: each
/// workgroup lists the pairs that picked its expert and multiplies them out as GEMM tiles, so
/// the table is read once per expert. Pairs spread and skewed (every pair on one expert, more
/// pairs than a tile or a window of indices holds, so that tiles and leftovers cross
/// windows), column tiles of 32, 64 and 128 (whole and partial), partial k steps, negative
/// indices, x broadcast over the pairs of a token, f32 and f16 tables, and k that is not
/// whole 16-byte units (the matrix-times-vector kernel instead): all match the interpreter. An
/// index out of range is an error naming the gather and the input, and the next run is not
/// poisoned by it.
#[test]
fn a_prompts_expert_products_are_grouped_by_expert() {
    use glufuse::codegen::{generate, manifest, KernelKind, Target};
    let Some(gpu) = common::gpu() else { return };
    // (experts, N, K, tokens, experts per token, whether x is one row per token, ids)
    type Ids = fn(usize) -> i64;
    let spread: Ids = |i| i as i64 % 4 - 4;
    let skewed: Ids = |i| if i % 9 == 0 { 0 } else { 1 };
    let seven: Ids = |i| if i % 5 == 0 { 6 } else { -1 };
    let eight: Ids = |i| (i * 5 % 8) as i64;
    let cases: [(usize, usize, usize, usize, usize, bool, Ids); 8] = [
        (4, 64, 64, 8, 1, false, spread),
        (3, 70, 200, 40, 1, false, skewed),
        (2, 130, 104, 300, 2, true, skewed),
        (8, 64, 45, 20, 1, false, seven),
        (2, 64, 64, 25, 2, true, |i| i as i64 % 2 - 2),
        (2, 96, 36, 260, 1, false, |_| 1),
        (8, 4096, 64, 40, 2, true, eight),
        (8, 2088, 72, 24, 1, false, eight),
    ];
    for dtype in [DType::F32, DType::F16] {
        for (e, n, k, tokens, per, shared_x, ids) in cases {
            let what = format!("{dtype:?} {e} experts of [{n}, {k}], {tokens} tokens x {per}, x shared: {shared_x}");
            let pairs = tokens * per;
            let ids_t = Tensor::i64(vec![tokens, per], (0..pairs).map(ids).collect()).unwrap();
            let xd = if shared_x { vec![tokens, 1, k, 1] } else { vec![tokens, per, k, 1] };
            let mut b = GraphBuilder::new();
            let ids_v = b.input("ids", DType::I64, shape_of(&[tokens as u64, per as u64]));
            let x = b.input("x", DType::F32, shape_of(&xd.iter().map(|&d| d as u64).collect::<Vec<_>>()));
            let x = b.node("x16", Op::Cast { to: dtype }, &[x], vec![])[0];
            let table = b.weight("experts", dtype, &[e as u64, n as u64, k as u64], 1.0);
            let picked = b.node("pick", Op::Gather { axis: 0 }, &[table, ids_v], vec![])[0];
            let y = b.matmul("bmm", picked, x);
            let g = b.finish(&[y]).unwrap_or_else(|err| panic!("{what}: {err}"));
            let m = HashMap::from([("ids".to_string(), ids_t), ("x".to_string(), rand(&xd, 7))]);
            let (mut sess, got) = agree_within(&gpu, &g, &m, if dtype == DType::F16 { 2e-3 } else { 1e-5 }, &what);
            let ks = generate(&g, &Default::default(), &Target::default()).unwrap();
            // Grouped where k is whole 16-byte units of the table.
            let grouped = k % if dtype == DType::F16 { 8 } else { 4 } == 0;
            let kind = if grouped { KernelKind::GroupedMatmul } else { KernelKind::BatchedMatmul };
            let bmm = ks.iter().find(|k| k.source().name == "bmm").unwrap().source();
            assert_eq!(bmm.kind, kind, "{what}: {}", manifest(&g, &ks));
            // Column tiles as wide as still give 256 workgroups.
            if grouped {
                let bn = [128, 64, 32].into_iter().find(|&bn| n.div_ceil(bn) * e >= 256).unwrap_or(32);
                let choice = bmm.choice.as_ref().unwrap().kernel.clone();
                assert!(choice.starts_with("grouped ") && choice.contains(&format!("x{bn}x")), "{what}: {choice}");
            }
            assert!(!ks.iter().any(|k| k.source().kind == KernelKind::Gather), "{what}");
            // An index out of range: an error naming the gather and the input.
            let mut bad = m.clone();
            let mut v: Vec<i64> = (0..pairs).map(ids).collect();
            v[pairs - 1] = e as i64;
            bad.insert("ids".into(), Tensor::i64(vec![tokens, per], v).unwrap());
            let err = sess.run(&bad).expect_err(&what);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("node 'pick': index {e} is out of range for {e} elements along axis 0")),
                "{what}: {text}"
            );
            assert!(text.contains("input 'ids'"), "{what}: {text}");
            let again = sess.run(&m).unwrap_or_else(|err| panic!("{what}: after the error: {err}"));
            assert_eq!(interp::compare(&again[0], &got[0]).0, 0.0, "{what}: the run after the error");
        }
    }
    // A decode step's pairs (fewer than two per expert) keep the matrix-times-vector kernel.
    let mut b = GraphBuilder::new();
    let ids_v = b.input("ids", DType::I64, shape_of(&[1, 2]));
    let x = b.input("x", DType::F32, shape_of(&[1, 1, 64, 1]));
    let table = b.weight("experts", DType::F32, &[8, 64, 64], 1.0);
    let picked = b.node("pick", Op::Gather { axis: 0 }, &[table, ids_v], vec![])[0];
    let y = b.matmul("bmm", picked, x);
    let g = b.finish(&[y]).unwrap();
    let ks = generate(&g, &Default::default(), &Target::default()).unwrap();
    assert_eq!(ks.iter().find(|k| k.source().name == "bmm").unwrap().source().kind, KernelKind::BatchedMatmul);
}

/// A mixture of experts' gated unit as Hugging Face's `batched_mm` experts write it (each
/// pair's `[2I, K]` expert matrix gathered from a table, times the pair's row of x as a
/// column, split into gate and up, the activation of the gate times the up) fuses into one
/// `FusedGateUp` with a matrix per pair, which reads the table in place: grouped by expert
/// where the pairs are at least two an expert, gate and up merged and k whole 16-byte units
/// (each thread an output's gate and up column), else lanes along k per output (a workgroup
/// each where the outputs are few, 32 where many). f32 and f16 tables, outputs past the last
/// whole tile, spread and skewed routing over more pairs than a window of indices, SiLU as
/// `x·σ(x)`, exact GELU and ReLU, gate and up in two tables (`Gather` and `GatherND`), x a row
/// a pair or a row a token expanded to its pairs (read in place, no expand kernel): the fused
/// graph matches the unfused one on the interpreter and the GPU. An index out of range
/// is an error naming the gather and the input, and the run after it is right.
#[test]
fn a_mixture_of_experts_gated_unit_fuses_and_reads_the_table_in_place() {
    use glufuse::codegen::{generate, manifest, KernelKind, Target};
    let Some(gpu) = common::gpu() else { return };
    type Ids = fn(usize) -> i64;
    let spread: Ids = |i| (i * 5 % 8) as i64 % 4;
    let skewed: Ids = |i| if i % 9 == 0 { 0 } else { -1 };
    // (experts, I, K, pairs, experts a token (x a row a token, repeated for its pairs: an
    // expand the kernels read in place), routing, activation, gate and up in two tables)
    type Case = (usize, usize, usize, usize, usize, Ids, UnaryOp, bool);
    let cases: [Case; 9] = [
        (8, 48, 64, 2, 1, spread, UnaryOp::Silu, false),
        (4, 3000, 64, 6, 2, spread, UnaryOp::Silu, false),
        (4, 48, 64, 44, 1, skewed, UnaryOp::Silu, false),
        (2, 70, 104, 300, 2, spread, UnaryOp::Silu, false),
        (3, 40, 36, 30, 3, spread, UnaryOp::GeluErf, false),
        (4, 200, 64, 24, 1, skewed, UnaryOp::Relu, false),
        (4, 24, 64, 40, 4, spread, UnaryOp::Silu, true),
        (4, 24, 40, 3, 1, skewed, UnaryOp::GeluErf, true),
        (8, 64, 64, 64, 8, spread, UnaryOp::Silu, false),
    ];
    for dtype in [DType::F32, DType::F16] {
        for (e, i, k, pairs, per, ids, act, two) in cases {
            let what = format!(
                "{dtype:?} {e} experts, I {i}, K {k}, {pairs} pairs, {per} a token, {act:?}, two tables: {two}"
            );
            let c = |d: usize| DimExpr::constant(d as i64);
            let mut b = GraphBuilder::new();
            let ids_v = b.input("ids", DType::I64, shape_of(&[pairs as u64, 1]));
            let tokens = pairs / per;
            // x of the table's dtype as given (a cast before the expand would make them one
            // program, which the unit does not read in place).
            let mut x = b.input("x", dtype, shape_of(&[tokens as u64, k as u64]));
            if per > 1 {
                let rows = b.node("x.rows", Op::Reshape { shape: vec![c(tokens), c(1), c(k)] }, &[x], vec![])[0];
                let rep = b.node("x.rep", Op::Expand { shape: shape_of(&[1, per as u64, 1]) }, &[rows], vec![])[0];
                x = b.node("x.pairs", Op::Reshape { shape: vec![c(pairs), c(k)] }, &[rep], vec![])[0];
            }
            let col = b.node("col", Op::Reshape { shape: vec![c(pairs), c(k), c(1)] }, &[x], vec![])[0];
            // One product of 2I rows split in two, or two products of I rows.
            let (gate, up) = if two {
                let flat = b.node("flat", Op::Reshape { shape: vec![c(pairs)] }, &[ids_v], vec![])[0];
                let mut half = |name: &str, scale: f32| {
                    let table = b.weight(&format!("{name}_table"), dtype, &[e as u64, i as u64, k as u64], scale);
                    let picked = b.node(&format!("pick_{name}"), Op::Gather { axis: 0 }, &[table, flat], vec![])[0];
                    let prod = b.matmul(&format!("bmm_{name}"), picked, col);
                    b.node(name, Op::Reshape { shape: vec![c(pairs), c(i)] }, &[prod], vec![])[0]
                };
                (half("gate", 1.0), half("up", 0.5))
            } else {
                let table = b.weight("table", dtype, &[e as u64, 2 * i as u64, k as u64], 1.0);
                let picked = b.node("pick", Op::GatherND { batch_dims: 0 }, &[table, ids_v], vec![])[0];
                let prod = b.matmul("bmm", picked, col);
                let sq = b.node("sq", Op::Reshape { shape: vec![c(pairs), c(2 * i)] }, &[prod], vec![])[0];
                let parts = b.split("halves", sq, 1, &[i as u64, i as u64]);
                (parts[0], parts[1])
            };
            let a = if act == UnaryOp::Silu {
                let sg = b.unary("sig", UnaryOp::Sigmoid, gate);
                b.mul("silu", gate, sg)
            } else {
                b.unary("act", act, gate)
            };
            let y = b.mul("y", a, up);
            let original = b.finish(&[y]).unwrap_or_else(|err| panic!("{what}: {err}"));
            let mut fused = original.clone();
            glufuse::passes::PassManager::standard().run(&mut fused).unwrap();
            assert_eq!(fused.summary().fused, 1, "{what}: {}", glufuse::ir::dump::text(&fused).unwrap());
            let mut v: Vec<i64> = (0..pairs).map(ids).map(|d| d.rem_euclid(e as i64)).collect();
            let m = HashMap::from([
                ("ids".to_string(), Tensor::i64(vec![pairs, 1], v.clone()).unwrap()),
                ("x".to_string(), Tensor::random(vec![tokens, k], 9, 2.0)),
            ]);
            let m = if dtype == DType::F16 {
                let mut m = m;
                let x = m["x"].as_f32().unwrap().to_vec();
                m.insert("x".into(), Tensor::f16(vec![tokens, k], x).unwrap());
                m
            } else {
                m
            };
            let tol = if dtype == DType::F16 { 2e-3 } else { 1e-5 };
            let want = interp::run(&original, &m).unwrap();
            let mine = interp::run(&fused, &m).unwrap();
            let (_, rel) = interp::compare(&mine[0], &want[0]);
            assert!(rel <= tol, "{what}: fused interpreter vs unfused: rel {rel:e}");
            let (mut sess, got) = agree_within(&gpu, &fused, &m, tol, &what);
            let (_, rel) = interp::compare(&got[0], &want[0]);
            assert!(rel <= tol, "{what}: fused GPU vs unfused interpreter: rel {rel:e}");
            // Grouped where the pairs are two an expert, one table and k whole 16-byte units.
            let ks = generate(&fused, &Default::default(), &Target::default()).unwrap();
            let v16 = if dtype == DType::F16 { 8 } else { 4 };
            let grouped = !two && pairs >= 2 * e && k % v16 == 0;
            let kind = if grouped { KernelKind::FusedExpertsGrouped } else { KernelKind::FusedExperts };
            let unit = ks.iter().find(|k| k.source().name == "y").unwrap().source();
            assert_eq!(unit.kind, kind, "{what}: {}", manifest(&fused, &ks));
            // Generated and validated for an H100's options too: the lane kernel's sums by
            // subgroups where an output takes 32 lanes (8192 rows or more, two an output).
            let h = generate(&fused, &Default::default(), &common::h100()).unwrap_or_else(|e| panic!("{what}: {e}"));
            let wgsl = &h.iter().find(|k| k.source().name == "y").unwrap().source().wgsl;
            let by_subgroups = !grouped && 2 * pairs * i >= 8192;
            assert_eq!(wgsl.contains("subgroupAdd(accg)"), by_subgroups, "{what}: {wgsl}");
            // The gathers and the expand take no kernel: the unit reads the table and x in place.
            let copies = [KernelKind::Gather, KernelKind::Expand];
            let copy = ks.iter().map(|k| k.source()).any(|k| copies.contains(&k.kind) || k.name == "x.rep");
            assert!(!copy, "{what}: {}", manifest(&fused, &ks));
            // An index out of range: an error naming the gather and the input.
            v[pairs - 1] = e as i64;
            let mut bad = m.clone();
            bad.insert("ids".into(), Tensor::i64(vec![pairs, 1], v).unwrap());
            let err = sess.run(&bad).expect_err(&what);
            let text = err.to_string();
            let named = |gather: &str| text.starts_with(&format!("node '{gather}': index {e} is out of range"));
            assert!(if two { named("pick_gate") || named("pick_up") } else { named("pick") }, "{what}: {text}");
            assert!(text.contains("input 'ids'"), "{what}: {text}");
            let again = sess.run(&m).unwrap_or_else(|err| panic!("{what}: after the error: {err}"));
            assert_eq!(interp::compare(&again[0], &got[0]).0, 0.0, "{what}: the run after the error");
        }
    }
}

fn shape_of(dims: &[u64]) -> Vec<Dim> {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// Degenerate but valid graphs run as the interpreter runs them: products over K = 0 give
/// zeros (plus the bias), a `[0, K]` input gives an empty result, zero-size split parts and
/// slices are empty, reductions over an empty axis give their empty values (sum 0, mean NaN,
/// max -inf), no ids gather nothing; and a graph of no nodes runs to no outputs.
#[test]
fn degenerate_graphs_run_as_on_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let fused = |bias: bool| {
        Op::FusedGateUp(FusedGateUp {
            activation: Activation::Silu,
            layout: Layout::Kn,
            gate_bias: bias,
            up_bias: bias,
            gate_offset: 0,
            up_offset: 0,
            replaced: vec![],
        })
    };
    // K = 0 where the GEMV (one row, aligned), a GEMM (40 rows) or the scalar kernel (3
    // columns) would be chosen, and M = 0.
    for (rows, k, n) in [(1, 0, 8), (40, 0, 8), (1, 0, 3), (0, 4, 8)] {
        let (x, w) = (rand(&[rows, k], 30), rand(&[k, n], 31));
        let y = op_agrees(&gpu, Op::MatMul, &[x.clone(), w.clone()]);
        assert_eq!(y.shape(), &[rows, n]);
        let y = op_agrees(&gpu, fused(false), &[x.clone(), w.clone(), w.clone()]);
        assert!(y.as_f32().unwrap().iter().all(|&v| v == 0.0 || k > 0));
        let bias = rand(&[n], 32);
        op_agrees(&gpu, fused(true), &[x, w.clone(), w, bias.clone(), bias]);
    }
    // Zero-size split parts and slices, next to non-empty ones.
    let x = rand(&[2, 4], 33);
    let (mut b, vs, m) = inputs(std::slice::from_ref(&x));
    let parts = b.split("s", vs[0], 1, &[0, 4, 0]);
    let sl = b.slice("sl", vs[0], 1, 2, 2);
    let e = b.node("e", Op::Unary(UnaryOp::Exp), &[parts[0]], vec![])[0];
    let c = b.node("c", Op::Concat { axis: 1 }, &[parts[0], parts[1], sl], vec![])[0];
    let g = b.finish(&[parts[0], parts[1], parts[2], e, c]).unwrap();
    let out = agree(&gpu, &g, &m, "zero-size parts");
    assert_eq!(
        (out[0].shape(), out[1].shape(), out[4].shape()),
        (&[2usize, 0][..], &[2usize, 4][..], &[2usize, 4][..])
    );
    // Reductions over an empty axis, softmax and layer norm of empty rows, no ids.
    let k0 = f32s(&[3, 0], &[]);
    for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
        let y = op_agrees(&gpu, Op::Reduce { op, axes: vec![1], keepdims: true }, std::slice::from_ref(&k0));
        assert_eq!(y.shape(), &[3, 1]);
    }
    op_agrees(&gpu, Op::Softmax { axis: -1 }, std::slice::from_ref(&k0));
    op_agrees(&gpu, Op::LayerNorm { axis: -1, epsilon: 1e-5, scale: false, bias: false }, std::slice::from_ref(&k0));
    op_agrees(&gpu, Op::CumSum { axis: 1, exclusive: false, reverse: false }, std::slice::from_ref(&k0));
    op_agrees(&gpu, Op::Gather { axis: 0 }, &[x, i64s(&[0, 2], &[])]);
    // No nodes at all.
    let g = GraphBuilder::new().finish(&[]).unwrap();
    assert!(Session::new(&gpu, g).unwrap().run(&HashMap::new()).unwrap().is_empty());
}

/// Devices opened by many threads at once each run a graph: `Gpu::new` opens one at a time.
/// On the H100 machine (Vulkan and EGL drivers), 16 test threads opening devices together
/// hung before any test finished; with the lock they do not.
#[test]
fn devices_open_from_many_threads_at_once() {
    if common::gpu().is_none() {
        return;
    }
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            std::thread::spawn(move || {
                let gpu = Gpu::new().unwrap_or_else(|e| panic!("thread {i}: {e}"));
                op_agrees(&gpu, Op::Unary(UnaryOp::Exp), &[rand(&[4, 8], 40 + i)])
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("a thread panicked").shape(), &[4, 8]);
    }
}

/// A rotary embedding's angles as exporters spell them: positions from a `Range` over
/// symbolic dims (`past .. past + new`), cast, and multiplied by the frequencies through a
/// `MatMul` over k of one. The pass makes both steps of programs (the range computed from
/// its coordinate, the product a broadcast `Mul`): no range or matmul kernel is left, and the
/// GPU agrees with the interpreter on the original graph at two bindings.
#[test]
fn ranges_and_outer_products_run_inside_programs() {
    let Some(gpu) = common::gpu() else { return };
    let text = r#"{"format": "glufuse.graph/1", "nodes": [
        {"name": "cache", "op": "Input", "type": {"dtype": "f32", "shape": [1, "past", 8]}},
        {"name": "x", "op": "Input", "type": {"dtype": "f32", "shape": [1, "new", 8]}},
        {"name": "pos", "op": "Range", "start": "past", "limit": "past + new", "delta": 1, "dtype": "i64"},
        {"name": "posf", "op": "Cast", "to": "f32", "inputs": ["pos"]},
        {"name": "pos3", "op": "Reshape", "shape": [1, 1, -1], "inputs": ["posf"]},
        {"name": "inv", "op": "Constant", "value": [1.0, 0.1, 0.01, 0.001], "type": {"dtype": "f32", "shape": [1, 4, 1]}},
        {"name": "freqs", "op": "MatMul", "inputs": ["inv", "pos3"]},
        {"name": "ft", "op": "Transpose", "perm": [0, 2, 1], "inputs": ["freqs"]},
        {"name": "emb", "op": "Concat", "axis": -1, "inputs": ["ft", "ft"]},
        {"name": "cos", "op": "Cos", "inputs": ["emb"]},
        {"name": "sin", "op": "Sin", "inputs": ["emb"]},
        {"name": "xc", "op": "Mul", "inputs": ["x", "cos"]},
        {"name": "xs", "op": "Mul", "inputs": ["x", "sin"]},
        {"name": "y", "op": "Add", "inputs": ["xc", "xs"]},
        {"name": "all", "op": "Concat", "axis": 1, "inputs": ["cache", "x"]}
        ], "outputs": ["y", "all"]}"#;
    let g = glufuse::json::from_str(text).unwrap();
    let mut fused = g.clone();
    glufuse::passes::PassManager::standard().run(&mut fused).unwrap();
    let left: Vec<String> = fused
        .topo_order()
        .unwrap()
        .into_iter()
        .map(|n| fused.node(n).op.name().to_string())
        .filter(|o| o == "Range" || o == "MatMul")
        .collect();
    assert!(left.is_empty(), "{left:?} left as nodes of their own");
    // The fused graph, its range steps included, goes through the JSON format unchanged.
    let text2 = glufuse::json::to_string(&fused).unwrap();
    assert!(text2.contains("\"range\""), "a range step in the fused graph's JSON");
    assert_eq!(glufuse::json::to_string(&glufuse::json::from_str(&text2).unwrap()).unwrap(), text2);
    for (past, new) in [(5, 3), (300, 1)] {
        let what = format!("past {past}, new {new}");
        let ins: HashMap<String, Tensor> =
            [("cache".to_string(), rand(&[1, past, 8], 3)), ("x".to_string(), rand(&[1, new, 8], 4))].into();
        let want = interp::run(&g, &ins).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut s = Session::new(&gpu, fused.clone()).unwrap();
        let got = s.run(&ins).unwrap_or_else(|e| panic!("{what}: {e}"));
        for (k, (x, y)) in got.iter().zip(&want).enumerate() {
            assert_eq!(x.shape(), y.shape(), "{what}: output {k}");
            let (abs, rel) = interp::compare(x, y);
            assert!(rel <= 1e-5, "{what}: output {k}: rel {rel:e} (abs {abs:e})");
        }
    }
    // A range inside a program whose values do not fit 32 bits is refused before any run.
    let text = r#"{"format": "glufuse.graph/1", "nodes": [
        {"name": "pos", "op": "Range", "start": 3000000000, "limit": 3000000004, "delta": 1, "dtype": "i64"},
        {"name": "posf", "op": "Cast", "to": "f32", "inputs": ["pos"]}
        ], "outputs": ["posf"]}"#;
    let mut g = glufuse::json::from_str(text).unwrap();
    glufuse::passes::PassManager::standard().run(&mut g).unwrap();
    let e = Session::new(&gpu, g).unwrap().run(&HashMap::new()).unwrap_err().to_string();
    assert!(e.contains("range values 3000000000 to 3000000003 do not fit the 32 bits"), "{e}");
}
