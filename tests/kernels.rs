//! The projection kernels over their whole space: both weight layouts, f32 and f16 weights,
//! decode and prefill row counts, biases, merged gate_up weights, aligned and unaligned
//! sizes. Each fused graph and its unfused original run on the GPU against the interpreter.

mod common;

use glufuse::builder::GraphBuilder;
use glufuse::interp;
use glufuse::ir::*;
use glufuse::passes::PassManager;
use glufuse::runtime::Executable;

struct Case {
    rows: u64,
    h: u64,
    i: u64,
    layout: Layout,
    dtype: DType,
    bias: bool,
    merged: bool,
}

fn build(c: &Case) -> glufuse::Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", c.dtype, shape_of(&[c.rows, c.h]));
    let proj = |b: &mut GraphBuilder, name: &str, n: u64| -> Value {
        match c.layout {
            Layout::Kn => {
                let w = b.weight(&format!("{name}.w"), c.dtype, &[c.h, n], 0.3);
                b.matmul(name, x, w)
            }
            Layout::Nk => {
                let w = b.weight(&format!("{name}.w"), c.dtype, &[n, c.h], 0.3);
                let t = b.transpose(&format!("{name}.t"), w, &[1, 0]);
                b.matmul(name, x, t)
            }
        }
    };
    let (mut g, mut u) = if c.merged {
        let gu = proj(&mut b, "gate_up", 2 * c.i);
        let parts = b.split("chunk", gu, -1, &[c.i, c.i]);
        (parts[0], parts[1])
    } else {
        (proj(&mut b, "gate", c.i), proj(&mut b, "up", c.i))
    };
    if c.bias {
        let bg = b.weight("gate.b", c.dtype, &[c.i], 0.3);
        let bu = b.weight("up.b", c.dtype, &[c.i], 0.3);
        g = b.add("gate.bias", g, bg);
        u = b.add("up.bias", u, bu);
    }
    let a = b.unary("act", UnaryOp::GeluTanh, g);
    let m = b.mul("mul", a, u);
    b.finish(&[m]).unwrap()
}

#[test]
fn projection_kernels_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    // Aligned sizes reach the vector GEMVs (1 and 5 rows) and the GEMM (9 and 70 rows);
    // unaligned ones the scalar template and the GEMM's edges.
    let mut cases = vec![];
    for layout in [Layout::Kn, Layout::Nk] {
        for dtype in [DType::F32, DType::F16] {
            for (bias, merged) in [(false, false), (true, false), (false, true)] {
                for (rows, h, i) in [(1u64, 64u64, 96u64), (5, 64, 96), (12, 64, 96), (40, 64, 96), (3, 20, 36)] {
                    cases.push(Case { rows, h, i, layout, dtype, bias, merged });
                }
            }
            cases.push(Case { rows: 70, h: 20, i: 36, layout, dtype, bias: true, merged: false });
            cases.push(Case { rows: 260, h: 24, i: 72, layout, dtype, bias: false, merged: true });
        }
    }
    let mut kinds = std::collections::BTreeSet::new();
    let mut n = 0;
    for c in cases {
        let original = build(&c);
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap();
        assert_eq!(fused.summary().fused, 1);
        let inputs = interp::seeded_inputs(&original, &Default::default(), 3).unwrap();
        let want = interp::run(&original, &inputs).unwrap();
        let tol = glufuse::interp::check_tolerance(&original);
        for (label, g) in [("unfused", &original), ("fused", &fused)] {
            let exe = Executable::new(&gpu, g, &Default::default()).unwrap();
            for k in exe.kernels() {
                kinds.insert(k.source().kind.clone());
            }
            let got = exe.run(&inputs).unwrap();
            let (abs, rel) = glufuse::interp::compare(&got[0], &want[0]);
            let what = format!(
                "{label} rows={} h={} i={} {:?} {} bias={} merged={}",
                c.rows, c.h, c.i, c.layout, c.dtype, c.bias, c.merged
            );
            assert!(rel <= tol, "{what}: rel {rel:e} abs {abs:e}");
            n += 1;
        }
    }
    eprintln!("{n} runs; kernels: {kinds:?}");
    for want in [
        "fused-gate-up-gemv-kn",
        "fused-gate-up-gemv-nk",
        "fused-gate-up-gemm",
        "fused-gate-up-kn",
        "fused-gate-up-nk",
        "matmul-gemv-kn",
        "matmul-gemm",
    ] {
        assert!(kinds.contains(want), "kernel {want} never ran: {kinds:?}");
    }
}

/// The index-mapping and batched kernels no test graph reaches: batched matmul with a
/// broadcast batch, Concat, Slice on an inner axis, Cast to f16 and back, Reshape as a view.
#[test]
fn batched_matmul_concat_slice_cast_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let mut b = GraphBuilder::new();
    let a = b.input("a", DType::F32, shape_of(&[2, 3, 4]));
    let w = b.input("w", DType::F32, shape_of(&[1, 4, 5]));
    let m = b.matmul("bmm", a, w); // [2,3,5], batch broadcast
    let s = b.slice("inner", m, 1, 1, 3); // [2,2,5]
    let c = b.node("cat", Op::Concat { axis: 1 }, &[m, s], vec![])[0]; // [2,5,5]
    let h = b.node("to_f16", Op::Cast { to: DType::F16 }, &[c], vec![])[0];
    let f = b.node("to_f32", Op::Cast { to: DType::F32 }, &[h], vec![])[0];
    let r = b.node("flat", Op::Reshape { shape: vec![0, -1] }, &[f], vec![])[0]; // [2,25]
    let y = b.unary("act", UnaryOp::Tanh, r);
    let g = b.finish(&[y]).unwrap();
    let inputs = interp::seeded_inputs(&g, &Default::default(), 9).unwrap();
    let want = interp::run(&g, &inputs).unwrap();
    let exe = Executable::new(&gpu, &g, &Default::default()).unwrap();
    let kinds: Vec<String> = exe.kernels().iter().map(|k| k.source().kind.clone()).collect();
    for k in ["batched-matmul", "slice", "concat", "cast"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not generated: {kinds:?}");
    }
    let got = exe.run(&inputs).unwrap();
    assert_eq!(got[0].shape, vec![2, 25]);
    let (abs, rel) = glufuse::interp::compare(&got[0], &want[0]);
    assert!(rel <= 2e-3, "rel {rel:e} abs {abs:e}");
}
