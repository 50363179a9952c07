//! The projection kernels over their whole space: both weight layouts, f32 and f16 weights,
//! decode and prefill row counts, biases, merged gate_up weights, aligned and unaligned
//! sizes. Each fused graph and its unfused original run on the GPU against the interpreter.
//!
//! On a software adapter the sweeps run a representative subset (`common::sweep`): every
//! kernel kind, layout, dtype and tiling parameter once, not every combination. Without the
//! `gpu` feature only the tests that need no GPU are built.
#![cfg_attr(not(feature = "gpu"), allow(unused_imports, dead_code))]

mod common;

use common::Sweep;

use glufuse::builder::GraphBuilder;
use glufuse::codegen::Target;
use glufuse::codegen::Tiles;
use glufuse::interp;
use glufuse::ir::*;
use glufuse::passes::PassManager;
#[cfg(feature = "gpu")]
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

/// Runs a case's graph, unfused and fused, against the interpreter under `target`; returns
/// the number of GPU runs and records the kernel kinds that ran.
#[cfg(feature = "gpu")]
fn check(
    gpu: &glufuse::runtime::Gpu,
    c: &Case,
    target: &glufuse::codegen::Target,
    kinds: &mut std::collections::BTreeSet<String>,
) -> usize {
    let original = build(c);
    let mut fused = original.clone();
    PassManager::standard().run(&mut fused).unwrap();
    assert_eq!(fused.summary().fused, 1);
    let inputs = interp::seeded_inputs(&original, &Default::default(), 3).unwrap();
    let want = interp::run(&original, &inputs).unwrap();
    let tol = glufuse::interp::check_tolerance(&original);
    let mut runs = 0;
    for (label, g) in [("unfused", &original), ("fused", &fused)] {
        let exe = Executable::with_target(gpu, g, &Default::default(), target).unwrap();
        for k in exe.kernels() {
            let src = k.source();
            let sg = if src.wgsl.contains("subgroupAdd") { "+subgroups" } else { "" };
            kinds.insert(format!("{}{sg}", src.kind));
        }
        let got = exe.run(&inputs).unwrap();
        let (abs, rel) = glufuse::interp::compare(&got[0], &want[0]);
        let what = format!(
            "{label} rows={} h={} i={} {:?} {} bias={} merged={} tiles={:?}",
            c.rows, c.h, c.i, c.layout, c.dtype, c.bias, c.merged, target.gemm_tiles
        );
        assert!(rel <= tol, "{what}: rel {rel:e} abs {abs:e}");
        runs += 1;
    }
    runs
}

#[cfg(feature = "gpu")]
#[test]
fn projection_kernels_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let sweep = common::sweep(&gpu, "projection_kernels_match_the_interpreter");
    // Aligned sizes reach the vector GEMVs (1 and 5 rows) and the aligned GEMM (12 to 260
    // rows); unaligned ones the scalar template and the scalar-load GEMM.
    // The subset (a software adapter) keeps, for each layout and dtype (block b) and each
    // bias/merge variant (j), the sizes k with k % 3 == (b + j) % 3, and one of the four
    // special cases: every size, variant, layout and dtype still meets, and every kernel
    // kind listed below still runs (the test checks it).
    let subset = sweep == Sweep::Subset;
    let mut cases = vec![];
    let mut b = 0;
    for layout in [Layout::Kn, Layout::Nk] {
        for dtype in [DType::F32, DType::F16] {
            for (j, (bias, merged)) in [(false, false), (true, false), (false, true)].into_iter().enumerate() {
                let sizes = [(1u64, 64u64, 96u64), (3, 64, 96), (5, 64, 96), (12, 64, 96), (40, 64, 96), (3, 20, 36)];
                for (k, (rows, h, i)) in sizes.into_iter().enumerate() {
                    if !subset || k % 3 == (b + j) % 3 {
                        cases.push(Case { rows, h, i, layout, dtype, bias, merged });
                    }
                }
            }
            let special = [
                Case { rows: 70, h: 20, i: 36, layout, dtype, bias: true, merged: false },
                Case { rows: 260, h: 24, i: 72, layout, dtype, bias: false, merged: true },
                // K or (for [K, N]) N not a multiple of 4: the scalar-load GEMM.
                Case { rows: 40, h: 22, i: 36, layout, dtype, bias: true, merged: false },
                Case { rows: 40, h: 64, i: 30, layout, dtype, bias: false, merged: true },
            ];
            cases.extend(special.into_iter().enumerate().filter(|(k, _)| !subset || *k == b).map(|(_, c)| c));
            b += 1;
        }
    }
    let mut kinds = std::collections::BTreeSet::new();
    let mut n: usize = cases.iter().map(|c| check(&gpu, c, &gpu.target(), &mut kinds)).sum();
    // The decode GEMVs again with reductions in workgroup memory only, as on a device
    // without subgroups (on one without, that is what just ran).
    if gpu.target().subgroup_size.is_some() {
        let plain = Target { subgroup_size: None, ..gpu.target() };
        n += cases.iter().filter(|c| c.rows <= 32).map(|c| check(&gpu, c, &plain, &mut kinds)).sum::<usize>();
    }
    eprintln!("{n} runs; kernels: {kinds:?}");
    for want in [
        "fused-gate-up-gemv-kn",
        "fused-gate-up-gemv-nk",
        "fused-gate-up-gemm",
        "fused-gate-up-gemm-unaligned",
        "matmul-gemm-unaligned",
        "fused-gate-up-kn",
        "fused-gate-up-nk",
        "matmul-gemv-kn",
        "matmul-gemm",
    ] {
        assert!(kinds.contains(want), "kernel {want} never ran: {kinds:?}");
    }
    if gpu.target().subgroup_size.is_some() {
        assert!(kinds.contains("fused-gate-up-gemv-nk+subgroups"), "no subgroup reduction ran: {kinds:?}");
    }
}

/// The aligned prefill GEMM under every tiling it has: partial k steps, partial row and
/// column tiles, both layouts, f16 weights, biases and merged weights. The subset sweep
/// takes every tiling with one case each, the cases taking turns, so that each tiling
/// parameter, layout, dtype, bias, merge and size meets the GEMM.
#[cfg(feature = "gpu")]
#[test]
fn gemm_tilings_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let sweep = common::sweep(&gpu, "gemm_tilings_match_the_interpreter");
    let mut kinds = std::collections::BTreeSet::new();
    let mut n = 0;
    let tilings =
        [4, 8].into_iter().flat_map(|rt| [8, 16].into_iter().flat_map(move |bk| [8, 16].map(|ny| (rt, bk, ny))));
    let mut cases = vec![];
    for layout in [Layout::Kn, Layout::Nk] {
        for dtype in [DType::F32, DType::F16] {
            for (bias, merged) in [(false, false), (true, false), (false, true)] {
                for (rows, h, i) in [(150u64, 36u64, 200u64), (20, 200, 132)] {
                    cases.push(Case { rows, h, i, layout, dtype, bias, merged });
                }
            }
        }
    }
    for (t, (rt, bk, ny)) in tilings.enumerate() {
        let target = Target { gemm_tiles: Some(Tiles { rt, bk, ny }), ..gpu.target() };
        for (k, c) in cases.iter().enumerate() {
            // Subset: tiling t takes cases t, t + 8, t + 16 (of 24).
            if sweep == Sweep::Full || k % 8 == t {
                n += check(&gpu, c, &target, &mut kinds);
            }
        }
    }
    eprintln!("{n} runs; kernels: {kinds:?}");
    assert!(kinds.contains("fused-gate-up-gemm") && kinds.contains("matmul-gemm"), "{kinds:?}");
}

/// The index-mapping and batched kernels no test graph reaches: batched matmul with a
/// broadcast batch, Concat, Slice on an inner axis, Cast to f16 and back, Reshape as a view.
#[cfg(feature = "gpu")]
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
    let r = b.node("flat", Op::Reshape { shape: vec![DimExpr::constant(0), DimExpr::constant(-1)] }, &[f], vec![])[0]; // [2,25]
    let y = b.unary("act", UnaryOp::Tanh, r);
    let g = b.finish(&[y]).unwrap();
    let inputs = interp::seeded_inputs(&g, &Default::default(), 9).unwrap();
    let want = interp::run(&g, &inputs).unwrap();
    let exe = Executable::new(&gpu, &g, &Default::default()).unwrap();
    let kinds: Vec<String> = exe.kernels().iter().map(|k| k.source().kind.to_string()).collect();
    for k in ["batched-matmul", "slice", "concat", "cast"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not generated: {kinds:?}");
    }
    let got = exe.run(&inputs).unwrap();
    assert_eq!(got[0].shape(), &[2, 25]);
    let (abs, rel) = glufuse::interp::compare(&got[0], &want[0]);
    assert!(rel <= 2e-3, "rel {rel:e} abs {abs:e}");
}

/// A forced GEMM tiling the device cannot hold, or one glufuse does not have, is an error
/// naming the kernel or the tiling, not a failed pipeline.
#[test]
fn impossible_gemm_tilings_are_errors() {
    let c = Case { rows: 40, h: 64, i: 96, layout: Layout::Kn, dtype: DType::F32, bias: false, merged: false };
    let g = build(&c);
    let small = Target {
        gemm_tiles: Some(Tiles { rt: 8, bk: 16, ny: 16 }),
        max_workgroup_storage_bytes: 16384,
        ..Target::default()
    };
    let e = glufuse::codegen::generate(&g, &Default::default(), &small).unwrap_err().to_string();
    assert!(e.contains("'gate'") && e.contains("32768 bytes of workgroup memory"), "{e}");
    let odd = Target { gemm_tiles: Some(Tiles { rt: 6, bk: 16, ny: 16 }), ..Target::default() };
    let e = glufuse::codegen::generate(&g, &Default::default(), &odd).unwrap_err().to_string();
    assert!(e.contains("GEMM tiling 6x16 is not one glufuse has"), "{e}");
    let parsed: Result<Tiles, _> = "8x16x12".parse();
    assert!(parsed.unwrap_err().to_string().contains("\"8x16x12\" is not one glufuse has"));
    assert_eq!("8x16x8".parse::<Tiles>().unwrap(), Tiles { rt: 8, bk: 16, ny: 8 });
    assert_eq!("4x8".parse::<Tiles>().unwrap().to_string(), "4x8");
}

/// The default tiling fits WebGPU's 16 KiB of workgroup memory, so every device gets it;
/// a forced tiling wins.
#[test]
fn default_gemm_tiling_fits_every_webgpu_device() {
    use glufuse::codegen::proj::gemm_tiled::{tiles, DEFAULT};
    assert_eq!(tiles(&Target::default()), DEFAULT);
    assert_eq!(DEFAULT, Tiles { rt: 8, bk: 8, ny: 8 });
    assert!(DEFAULT.storage_bytes() <= Target::default().max_workgroup_storage_bytes as usize);
    let forced = Target {
        gemm_tiles: Some(Tiles { rt: 4, bk: 8, ny: 16 }),
        max_workgroup_storage_bytes: 49152,
        ..Target::default()
    };
    assert_eq!(tiles(&forced), Tiles { rt: 4, bk: 8, ny: 16 });
}

/// Tuning times each aligned GEMM shape once under every candidate tiling, keeps the fastest,
/// reuses the choice for kernels of the same shape, and changes no bit of the result.
#[cfg(feature = "gpu")]
#[test]
fn tuned_gemms_keep_the_fastest_and_the_same_bits() {
    use glufuse::codegen::proj::gemm_tiled::CANDIDATES;
    use glufuse::synth::{llama, SynthOptions};
    let Some(gpu) = common::gpu() else { return };
    let opts = SynthOptions { layers: 2, hidden: 64, intermediate: 176, batch: Some(40), ..Default::default() };
    let original = llama(&opts).unwrap();
    let mut g = original.clone();
    PassManager::standard().run(&mut g).unwrap();
    let b = glufuse::shape::Bindings::new();
    let inputs = interp::seeded_inputs(&original, &b, 5).unwrap();
    let target = gpu.target();
    let mut exe = Executable::with_target(&gpu, &g, &b, &target).unwrap();
    let before = exe.run(&inputs).unwrap();
    let tuned = exe.tune_gemms(&g, &b, &target, &CANDIDATES).unwrap();
    // Per layer four attention projections (one shape: 40×64 by 64×64), the fused gate/up
    // GEMM and the down projection: three shapes, each timed once.
    let names: Vec<&str> = tuned.iter().map(|t| t.kernel.as_str()).collect();
    assert_eq!(tuned.len(), 12, "{names:?}");
    assert_eq!(tuned.iter().filter(|t| !t.timings.is_empty()).count(), 3, "{tuned:?}");
    let shape = |name: &str| match name.rsplit('.').next() {
        Some(last @ ("mul" | "down_proj")) => last.to_string(),
        _ => "attention".to_string(),
    };
    let mut chosen = std::collections::HashMap::new();
    for t in &tuned {
        assert!(CANDIDATES.contains(&t.chosen), "{t:?}");
        if !t.timings.is_empty() {
            assert_eq!(t.timings.len(), CANDIDATES.len(), "{t:?}");
            let fastest = t.timings.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
            assert_eq!(t.chosen, fastest, "{t:?}");
            assert!(chosen.insert(shape(&t.kernel), t.chosen).is_none(), "a shape timed twice: {tuned:?}");
        } else {
            assert_eq!(
                chosen.get(&shape(&t.kernel)),
                Some(&t.chosen),
                "a shape timed before keeps its choice: {tuned:?}"
            );
        }
    }
    let after = exe.run(&inputs).unwrap();
    assert_eq!(before.len(), after.len());
    for (x, y) in before.iter().zip(&after) {
        assert!(
            x.as_f32().unwrap().iter().zip(y.as_f32().unwrap()).all(|(a, b)| a.to_bits() == b.to_bits()),
            "tuning changed the output"
        );
    }
    // Forcing each candidate in turn gives those same bits.
    for &t in &CANDIDATES {
        let forced = Target { gemm_tiles: Some(t), ..target.clone() };
        let got = Executable::with_target(&gpu, &g, &b, &forced).unwrap().run(&inputs).unwrap();
        assert!(same_bits(&got[0], &before[0]), "{t}");
    }
    // Candidates that exclude the tiling the executable was built with: every GEMM is
    // replaced, whichever wins, and the replaced executable still gives those bits.
    let others = [Tiles { rt: 8, bk: 16, ny: 16 }, Tiles { rt: 4, bk: 8, ny: 8 }];
    let mut exe = Executable::with_target(&gpu, &g, &b, &target).unwrap();
    let built: Vec<String> = exe.kernels().iter().map(|k| k.source().wgsl.clone()).collect();
    let tuned = exe.tune_gemms(&g, &b, &target, &others).unwrap();
    assert_eq!(tuned.len(), 12);
    let replaced = exe.kernels().iter().zip(&built).filter(|(k, w)| k.source().wgsl != **w).count();
    assert_eq!(replaced, 12, "{tuned:?}");
    let got = exe.run(&inputs).unwrap();
    assert!(same_bits(&got[0], &before[0]), "{tuned:?}");
    let want = interp::run(&original, &inputs).unwrap();
    let (_, rel) = interp::compare(&after[0], &want[0]);
    assert!(rel <= 1e-4, "rel {rel:e}");
}

/// Whether two f32 tensors hold the same bits.
#[cfg(feature = "gpu")]
fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    let (x, y) = (a.as_f32().unwrap(), b.as_f32().unwrap());
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits())
}
