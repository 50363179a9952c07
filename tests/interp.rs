//! The CPU interpreter against values computed by hand.

use glufuse::builder::GraphBuilder;
use glufuse::interp::run;
use glufuse::ir::*;
use glufuse::tensor::Tensor;
use std::collections::HashMap;

fn silu_kn() -> FusedGateUp {
    FusedGateUp {
        activation: Activation::Silu,
        layout: Layout::Kn,
        gate_bias: false,
        up_bias: false,
        gate_offset: 0,
        up_offset: 0,
        replaced: vec![],
    }
}

fn inputs(x: Tensor) -> HashMap<String, Tensor> {
    [("x".to_string(), x)].into_iter().collect()
}

/// The seed's own case: H=4, I=2, x=[1,2,3,4], all-ones weights: each output is
/// SiLU(10)·10 = 10/(1+e^-10)·10 ≈ 99.9955.
#[test]
fn fused_gate_up_seed_case() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, shape_of(&[1, 4]));
    let wg = b.weight_data("wg", DType::F32, &[4, 2], vec![1.0; 8]);
    let wu = b.weight_data("wu", DType::F32, &[4, 2], vec![1.0; 8]);
    let y = b.node("f", Op::FusedGateUp(silu_kn()), &[x, wg, wu], vec![])[0];
    let g = b.finish(&[y]).unwrap();
    let out = run(&g, &inputs(Tensor::new(vec![1, 4], vec![1., 2., 3., 4.]).unwrap())).unwrap();
    assert_eq!(out[0].shape(), &[1, 2]);
    for v in out[0].as_f32().unwrap() {
        assert!((*v as f64 - 99.99546).abs() < 1e-4, "{v} != 99.99546");
    }
}

#[test]
fn fused_size_mismatch_is_an_error_not_a_panic() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, shape_of(&[1, 4]));
    let wg = b.weight_data("wg", DType::F32, &[3, 2], vec![1.0; 6]);
    let wu = b.weight_data("wu", DType::F32, &[3, 2], vec![1.0; 6]);
    let y = b.node("f", Op::FusedGateUp(silu_kn()), &[x, wg, wu], vec![])[0];
    let err = b.finish(&[y]).unwrap_err().to_string();
    assert!(err.contains("node 'f'") && err.contains("hidden size mismatch"), "{err}");
}

#[test]
fn matmul_broadcast_and_elementwise_by_hand() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, shape_of(&[2, 1, 2]));
    let w = b.weight_data("w", DType::F32, &[2, 3], vec![1., 2., 3., 4., 5., 6.]);
    let m = b.matmul("m", x, w); // [2,1,3]
    let bias = b.weight_data("b", DType::F32, &[3], vec![0.5, -0.5, 1.0]);
    let a = b.add("a", m, bias);
    let r = b.unary("r", UnaryOp::Relu, a);
    let t = b.transpose("t", r, &[2, 1, 0]); // [3,1,2]
    let g = b.finish(&[t]).unwrap();
    let x = Tensor::new(vec![2, 1, 2], vec![1., -1., 0., 2.]).unwrap();
    let out = &run(&g, &inputs(x)).unwrap()[0];
    // row0: [1,-1]·W = [-3,-3,-3] + b = [-2.5,-3.5,-2] → relu 0s; row1: [0,2]·W = [8,10,12] + b = [8.5,9.5,13]
    assert_eq!(out.shape(), &[3, 1, 2]);
    assert_eq!(out.as_f32().unwrap(), &[0.0, 8.5, 0.0, 9.5, 0.0, 13.0]);
}

#[test]
fn activations_by_hand() {
    use glufuse::ir::ops::unary::scalar::*;
    assert!((silu(1.0) - 0.7310586).abs() < 1e-6);
    assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-6);
    assert!((gelu_erf(1.0) - 0.8413447).abs() < 1e-6);
    assert_eq!(relu(-2.0), 0.0);
}

#[test]
fn split_concat_reshape_cast() {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, shape_of(&[2, 4]));
    let parts = b.split("s", x, -1, &[1, 3]);
    let c = b.node("c", Op::Concat { axis: 1 }, &[parts[1], parts[0]], vec![])[0];
    let r = b.node("r", Op::Reshape { shape: vec![DimExpr::constant(4), DimExpr::constant(-1)] }, &[c], vec![])[0];
    let h = b.node("h", Op::Cast { to: DType::F16 }, &[r], vec![])[0];
    let g = b.finish(&[h]).unwrap();
    let x = Tensor::new(vec![2, 4], vec![1., 2., 3., 4., 5., 6., 7., 1.0001]).unwrap();
    let out = &run(&g, &inputs(x)).unwrap()[0];
    assert_eq!(out.shape(), &[4, 2]);
    assert_eq!(out.dtype(), DType::F16);
    // 1.0001 rounds to 1.0 in f16.
    assert_eq!(out.as_f32().unwrap(), &[2., 3., 4., 1., 6., 7., 1., 5.]);
}
