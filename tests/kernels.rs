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

#[derive(Debug)]
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
    build_with(c, Activation::GeluTanh)
}

/// [`build`] with the gate's activation.
fn build_with(c: &Case, act: Activation) -> glufuse::Graph {
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
    let a = b.unary("act", act.unary(), g);
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
    let runs = PassManager::standard().run(&mut fused).unwrap();
    assert_eq!(fused.summary().fused, 1, "{c:?}: {}", glufuse::passes::fusion_report(&runs).unwrap().to_text(false));
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
        // The unfused `[N, K]` weights, read in place behind their transposes.
        "matmul-gemv-nk",
        "matmul-gemm",
    ] {
        assert!(kinds.contains(want), "kernel {want} never ran: {kinds:?}");
    }
    if gpu.target().subgroup_size.is_some() {
        assert!(kinds.contains("fused-gate-up-gemv-nk+subgroups"), "no subgroup reduction ran: {kinds:?}");
    }
}

/// The `[K, N]` decode GEMV split over k where its grid is small (K ≥ 512, few columns):
/// partial sums, then a second kernel adding them up with the epilogue. K a multiple of the
/// split or not (2048 in 8, 2000 in 7), partial column and row tiles (72 columns in tiles of
/// 32 or 64, 12 rows in tiles of 8), f32 and f16 weights (f16 fused over 12 rows loads 8
/// bytes), biases and a merged gate_up weight; `[N, K]` weights of the same shape (not
/// split: 8 columns per workgroup) beside them. The choice says why.
#[cfg(feature = "gpu")]
#[test]
fn split_k_gemvs_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let mut cases = vec![];
    for dtype in [DType::F32, DType::F16] {
        cases.push(Case { rows: 1, h: 2048, i: 72, layout: Layout::Kn, dtype, bias: true, merged: false });
        cases.push(Case { rows: 12, h: 2000, i: 72, layout: Layout::Kn, dtype, bias: false, merged: true });
    }
    cases.push(Case { rows: 12, h: 2000, i: 72, layout: Layout::Nk, dtype: DType::F16, bias: true, merged: false });
    let mut kinds = std::collections::BTreeSet::new();
    let n: usize = cases.iter().map(|c| check(&gpu, c, &gpu.target(), &mut kinds)).sum();
    eprintln!("{n} runs; kernels: {kinds:?}");
    for want in ["matmul-gemv-kn", "matmul-split-sum", "fused-gate-up-gemv-kn", "fused-gate-up-split-sum"] {
        assert!(kinds.contains(want), "kernel {want} never ran: {kinds:?}");
    }
    // The choice, as the manifest shows it: split where the grid is small, not otherwise.
    let choice = |c: &Case| -> Vec<String> {
        let mut g = build(c);
        PassManager::standard().run(&mut g).unwrap();
        let ks = glufuse::codegen::generate(&g, &Default::default(), &Target::default()).unwrap();
        ks.iter().filter_map(|k| k.source().choice.as_ref().map(|c| c.to_string())).collect()
    };
    let split = Case { rows: 1, h: 2000, i: 72, layout: Layout::Kn, dtype: DType::F16, bias: true, merged: false };
    let got = choice(&split);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("gemv-kn split-k 7: ") && got[0].contains("split K=2000 in 7"), "{got:?}");
    assert!(got[1].starts_with("gemv-kn split-k 7 sum: "), "{got:?}");
    // K = 896 reaches 3 parts of 256, fewer than worth a second dispatch.
    for c in [Case { h: 896, ..split }, Case { i: 8192, ..split }] {
        let got = choice(&c);
        assert!(got.len() == 1 && got[0].starts_with("gemv-kn: "), "{c:?}: {got:?}");
    }
}

/// The aligned prefill GEMM split over k where its grid is small: each part's partial sums,
/// then the split-sum kernel adding them up with the epilogue. Parts chosen by the rule (no
/// wave known: 128 workgroups, a grid of fewer than a third of them splits; K = 2048 in 16
/// parts of 16 steps of 8, K = 360 in 2) and forced
/// (2, 3 and 5 parts, some of steps that do not divide evenly: the last part shorter), fused and plain, both
/// layouts, f32 and f16 weights, biases and a merged gate_up weight, partial row and column
/// tiles. The choice says why; a grid that fills half the wave, or a k too short for two
/// parts, stays whole.
#[cfg(feature = "gpu")]
#[test]
fn split_k_gemms_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let sweep = common::sweep(&gpu, "split_k_gemms_match_the_interpreter");
    let mut cases = vec![];
    for layout in [Layout::Kn, Layout::Nk] {
        for dtype in [DType::F32, DType::F16] {
            cases.push(Case { rows: 40, h: 2048, i: 72, layout, dtype, bias: true, merged: false });
            cases.push(Case { rows: 70, h: 360, i: 132, layout, dtype, bias: false, merged: true });
        }
    }
    let mut kinds = std::collections::BTreeSet::new();
    let mut n = 0;
    for (j, split) in [None, Some(2), Some(3), Some(5)].into_iter().enumerate() {
        let target = Target { gemm_split: split, coop_matrix: vec![], ..gpu.target() };
        for (k, c) in cases.iter().enumerate() {
            // Subset: each forced split takes a layout and dtype of its own.
            if split.is_none() || sweep == Sweep::Full || k / 2 == j % 4 {
                n += check(&gpu, c, &target, &mut kinds);
            }
        }
    }
    eprintln!("{n} runs; kernels: {kinds:?}");
    for want in ["matmul-gemm", "matmul-split-sum", "fused-gate-up-gemm", "fused-gate-up-split-sum"] {
        assert!(kinds.contains(want), "kernel {want} never ran: {kinds:?}");
    }
    let choice = |c: &Case, target: &Target| -> Vec<String> {
        let mut g = build(c);
        PassManager::standard().run(&mut g).unwrap();
        let ks = glufuse::codegen::generate(&g, &Default::default(), target).unwrap();
        ks.iter().filter_map(|k| k.source().choice.as_ref().map(|c| c.to_string())).collect()
    };
    let c = Case { rows: 40, h: 2048, i: 72, layout: Layout::Nk, dtype: DType::F32, bias: true, merged: false };
    let got = choice(&c, &Target::default());
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].starts_with("gemm 8x8x8 split-k 16: ") && got[0].contains("split K=2048 in 16"), "{got:?}");
    assert!(got[1].starts_with("gemm 8x8x8 split-k 16 sum: "), "{got:?}");
    // 360 of k: 45 steps, 12 a part where 4 are forced (the last 9).
    let forced = Target { gemm_split: Some(4), ..Target::default() };
    let got = choice(&Case { h: 360, ..c }, &forced);
    assert!(got[0].contains("split K=360 in 4 (forced)"), "{got:?}");
    // K = 240 (30 steps) is too short for two parts of 16 steps; 112 workgroups (7 × 16)
    // are more than a third of 128.
    for c in [Case { h: 240, ..c }, Case { rows: 400, i: 2048, ..c }] {
        let got = choice(&c, &Target::default());
        assert!(got.len() == 1 && got[0].starts_with("gemm 8x8x8: "), "{c:?}: {got:?}");
    }
}

/// The `[K, N]` decode GEMV on grids too small for 8 column groups per workgroup: 4, 2 and 1
/// groups (64 to 256 lanes along k, never more than K), a K not a multiple of the lanes, 5
/// rows, f16 and a merged weight; and a K too long for that (more than 32 rows a lane), which keeps 8 groups and is
/// split instead. Each matches the interpreter, and its grid is the one the rule gives.
#[cfg(feature = "gpu")]
#[test]
fn small_grid_gemvs_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let f32_one = Case { rows: 1, h: 64, i: 2048, layout: Layout::Kn, dtype: DType::F32, bias: true, merged: false };
    // (case, workgroups of the GEMV): the fused kernel's columns are its gate's (N = I).
    let cases = [
        // 512 f32 groups of 4 columns: 4 per workgroup.
        (Case { ..f32_one }, 128),
        // 256 groups: 2 per workgroup (128 lanes along k = 128).
        (Case { h: 128, i: 1024, ..f32_one }, 128),
        // K = 96 allows no more than 64 lanes: 4 groups, 64 workgroups.
        (Case { h: 96, i: 1024, ..f32_one }, 64),
        // f16 (8 columns a group), 5 rows, K = 300 over 256 lanes, merged gate_up: 1 group.
        (Case { rows: 5, h: 300, i: 1024, dtype: DType::F16, bias: false, merged: true, ..f32_one }, 128),
        // K = 8200 would be 33 rows a lane with 1 group: 8 groups (2 workgroups), split in 32.
        (Case { h: 8200, i: 72, dtype: DType::F16, ..f32_one }, 2 * 32),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (c, want) in &cases {
        check(&gpu, c, &gpu.target(), &mut kinds);
        let mut g = build(c);
        PassManager::standard().run(&mut g).unwrap();
        let ks = glufuse::codegen::generate(&g, &Default::default(), &Target::default()).unwrap();
        let gemv = ks.iter().find(|k| k.source().kind.to_string().starts_with("fused-gate-up-gemv-kn")).unwrap();
        let w = gemv.source().workgroups;
        assert_eq!(w[0] * w[1] * w[2], *want, "{c:?}: {:?}", gemv.source().choice);
    }
}

/// The `[N, K]` decode GEMV with more than 32 lanes an output (small grids, long rows:
/// `nk_lanes`): 128 lanes (f32, K = 2048; f16, K = 4096, 3 rows), 64 with a K that is no
/// multiple of them (f32, K = 1200). Each matches the interpreter on this adapter, its grid is
/// the one the rule gives, and as generated for an H100 (the lanes of an output in four
/// subgroups, summed across them in workgroup memory) it validates.
#[cfg(feature = "gpu")]
#[test]
fn nk_gemvs_with_more_lanes_match_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let one = Case { rows: 1, h: 2048, i: 64, layout: Layout::Nk, dtype: DType::F32, bias: true, merged: false };
    // (case, lanes an output): 256 / lanes outputs a workgroup.
    let cases = [
        (Case { ..one }, 128),
        (Case { rows: 3, h: 4096, dtype: DType::F16, bias: false, ..one }, 128),
        (Case { h: 1200, i: 40, ..one }, 64),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    for (c, lanes) in &cases {
        check(&gpu, c, &gpu.target(), &mut kinds);
        let mut g = build(c);
        PassManager::standard().run(&mut g).unwrap();
        for t in [Target::default(), common::h100()] {
            let ks = glufuse::codegen::generate(&g, &Default::default(), &t).unwrap();
            let gemv = ks.iter().find(|k| k.source().kind.to_string().starts_with("fused-gate-up-gemv-nk")).unwrap();
            let w = gemv.source().workgroups;
            assert_eq!(u64::from(w[0]), c.i.div_ceil(256 / lanes), "{c:?}");
            assert!(gemv
                .source()
                .wgsl
                .contains(&format!("let lane = {}", if t.subgroup_size.is_some() { "vid" } else { "lid" })));
            assert!(gemv.source().wgsl.contains(&format!("% {lanes}u;")), "{c:?}");
        }
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

/// f16's unit roundoff (round to nearest, 11 significant bits).
const U16: f64 = 1.0 / 2048.0;
/// Half the spacing of f16's subnormals: the rounding error of a value below its normal range.
const ETA16: f64 = 1.0 / (1u64 << 25) as f64;
/// The largest slope of SiLU, GELU (tanh and erf) and ReLU.
const ACT_SLOPE: f64 = 1.13;

/// The value of one projection sum `Σ_k x_k·w_k` (f64) and the README's bound on its error
/// with f16 products and f32 sums: every x_k and w_k rounded to f16 (error ≤ 2^-11·|v| +
/// 2^-25), their product exact in f32, K sums each within 2^-23 relative (round-to-nearest
/// f32 is 2^-24; tensor cores may truncate).
fn f16_product(x: &[f32], w: impl Fn(usize) -> f32) -> (f64, f64) {
    let k = x.len() as f64;
    let gamma = k * 2f64.powi(-23) / (1.0 - k * 2f64.powi(-23));
    let (mut value, mut rounding, mut magnitude) = (0.0, 0.0, 0.0);
    for (i, &xi) in x.iter().enumerate() {
        let (xa, wa) = ((xi as f64).abs(), (w(i) as f64).abs());
        value += xi as f64 * w(i) as f64;
        let e = (U16 * xa + ETA16) * ((1.0 + U16) * wa + ETA16) + xa * (U16 * wa + ETA16);
        rounding += e;
        magnitude += xa * wa + e;
    }
    (value, rounding + gamma * magnitude)
}

/// Checks a GPU output of a [`build_with`] graph against the interpreter's, element by
/// element, within the bound stated in the README for f16 products with f32 sums: each
/// projection within [`f16_product`]'s bound (B_g, B_u), carried through the epilogue as
/// `L·B_g·(|u| + B_u) + |act(g)|·B_u` (L: [`ACT_SLOPE`]), plus f32 rounding of the epilogue
/// (1e-5 of the magnitudes it combines). Returns the largest error as a fraction of its bound.
fn check_f16_bound(g: &glufuse::Graph, c: &Case, act: Activation, x: &[f32], got: &[f32], want: &[f32]) -> f64 {
    let weight = |name: &str| {
        let t = glufuse::tensor::weight_values(g.node(g.resolve(name).unwrap().node));
        t.as_f32().unwrap().to_vec()
    };
    let (h, i) = (c.h as usize, c.i as usize);
    let (wg, wu, go, uo, n_total) = if c.merged {
        let w = weight("gate_up.w");
        (w.clone(), w, 0, i, 2 * i)
    } else {
        (weight("gate.w"), weight("up.w"), 0, 0, i)
    };
    let at = |w: &[f32], k: usize, col: usize| match c.layout {
        Layout::Kn => w[k * n_total + col],
        Layout::Nk => w[col * h + k],
    };
    let (bg, bu) = if c.bias { (weight("gate.b"), weight("up.b")) } else { (vec![0.0; i], vec![0.0; i]) };
    let mut worst = 0.0f64;
    for r in 0..c.rows as usize {
        let xr = &x[r * h..(r + 1) * h];
        for j in 0..i {
            let (gv, gb) = f16_product(xr, |k| at(&wg, k, go + j));
            let (uv, ub) = f16_product(xr, |k| at(&wu, k, uo + j));
            let (gv, uv) = (gv + bg[j] as f64, uv + bu[j] as f64);
            let ag = act.apply(gv as f32) as f64;
            let slack =
                1e-5 * ACT_SLOPE * (gv.abs() + bg[j].abs() as f64 + 1.0) * (uv.abs() + bu[j].abs() as f64 + 1.0);
            let bound = ACT_SLOPE * gb * (uv.abs() + ub) + ag.abs() * ub + slack;
            let e = (got[r * i + j] as f64 - want[r * i + j] as f64).abs();
            worst = worst.max(e / bound);
        }
    }
    worst
}

/// One target [`coop_gemm_matches_the_interpreter_within_the_f16_bound`] runs the cases under.
#[cfg(feature = "gpu")]
struct Run {
    /// What the failures name.
    label: &'static str,
    target: Target,
    /// Every case at both shapes and both graphs (else a share of them, in turn).
    full: bool,
    /// The unfused graph's plain projections only (a tiling whose fused kernels, staging twice
    /// the weights, pass the workgroup memory).
    plain_only: bool,
    /// `[N, K]` weights only (a tiling whose `[K, N]` staging passes the workgroup memory).
    nk_only: bool,
    /// The other shape of the two at each combination than the other tilings take.
    other_shape: bool,
}

#[cfg(feature = "gpu")]
impl Run {
    /// A run of a share of the cases.
    fn some(label: &'static str, target: Target) -> Run {
        Run { label, target, full: false, plain_only: false, nk_only: false, other_shape: false }
    }

    /// A run of every case.
    fn every(label: &'static str, target: Target) -> Run {
        Run { full: true, ..Run::some(label, target) }
    }
}

/// The cooperative-matrix GEMM against the interpreter, within the README's bound for f16
/// products with f32 sums, element by element: plain (the unfused graph's projections) and
/// fused, both layouts, f16 weights and f32 weights (matmul precision f16), every
/// activation, biases, merged weights, partial row, column and k tiles at 128-row and 16-row
/// tilings, one- and two-stage pipelines, k in one slice or two, four or eight subgroups.
///
/// With its matrix operations emulated (what CI's lavapipe runs: the kernels' staging,
/// indexing, pipeline and epilogue), over a reduced set, since lavapipe takes seconds to
/// compile each kernel: every (layout, weight storage, bias or merged) combination once, the
/// two shapes alternating, the unfused graph for each storage of its plain projections, and
/// a two-stage tiling once, k split in two parts (added up by a second kernel) for a third of
/// them. Where the device offers cooperative matrices, also on them,
/// every combination at both shapes, fused and unfused, under the tilings it picks and a
/// forced two-stage one.
#[cfg(feature = "gpu")]
#[test]
fn coop_gemm_matches_the_interpreter_within_the_f16_bound() {
    use glufuse::codegen::{CoopMatrix, CoopTile, MatmulPrecision};
    let Some(gpu) = common::gpu() else { return };
    let base = gpu.target();
    if !base.caps.contains(naga::valid::Capabilities::SHADER_FLOAT16) {
        eprintln!("SKIPPED: the adapter has no f16 in shaders ({})", gpu.describe());
        return;
    }
    eprintln!("cooperative matrices: {}", gpu.describe_coop());
    let f16 = Target { matmul_precision: MatmulPrecision::F16, ..base.clone() };
    let two_stage = Some("64x64x16w2x2".parse::<CoopTile>().unwrap());
    let sliced = Some("64x64x16w2x2k2s1".parse::<CoopTile>().unwrap());
    // Eight subgroups, four along the rows (the prefill's fused 128x64x64w4x2s1, on k steps
    // of 32 so that it fits lavapipe's 32 KiB).
    let eight = Some("128x64x32w4x2s1".parse::<CoopTile>().unwrap());
    let long = Some("32x64x64w2x2k2s1".parse::<CoopTile>().unwrap());
    // (The same on k steps of 32, which lavapipe's 32 KiB fits.)
    let long_small = Some("32x64x32w2x2k2s1".parse::<CoopTile>().unwrap());
    let emulated = Target { coop_emulate: true, ..f16.clone() };
    let mut targets = vec![
        Run::some("emulated", emulated.clone()),
        Run::some("emulated, split-k", Target { coop_split: Some(2), ..emulated.clone() }),
        Run::some("emulated, two stages", Target { coop_tiles: two_stage, ..emulated.clone() }),
        Run {
            other_shape: true,
            ..Run::some("emulated, two slices of k", Target { coop_tiles: sliced, ..emulated.clone() })
        },
        Run::some("emulated, eight subgroups", Target { coop_tiles: eight, ..emulated.clone() }),
        // (Eight subgroups in two stages, on k steps of 16 so that lavapipe fits them.)
        Run::some(
            "emulated, eight subgroups, two stages",
            Target { coop_tiles: Some("64x64x16w4x2".parse::<CoopTile>().unwrap()), ..emulated.clone() },
        ),
        // (The prefill's split down projection, 32×64 tiles with k in two slices, on k steps
        // of 32: in two parts where k has eight steps; `[N, K]` weights, as the exports hold
        // them.)
        Run {
            plain_only: true,
            nk_only: true,
            ..Run::some(
                "emulated, plain only, [N, K] only, 32x64, two slices of k, split-k",
                Target { coop_tiles: long_small, coop_split: Some(2), ..emulated },
            )
        },
    ];
    if base.coop_matrix.contains(&CoopMatrix::F16_F32_16) {
        targets.push(Run::every("native", f16.clone()));
        targets.push(Run::every("native, split-k", Target { coop_split: Some(2), ..f16.clone() }));
        targets.push(Run::every("native, two stages", Target { coop_tiles: two_stage, ..f16.clone() }));
        targets.push(Run {
            other_shape: true,
            ..Run::every("native, two slices of k", Target { coop_tiles: sliced, ..f16.clone() })
        });
        targets.push(Run::every("native, eight subgroups", Target { coop_tiles: eight, ..f16.clone() }));
        let long_split = Target { coop_tiles: long, coop_split: Some(2), ..f16.clone() };
        targets.push(Run {
            plain_only: true,
            ..Run::every("native, plain only, 32x64, two slices of k, split-k", long_split)
        });
        // (Eight subgroups in two stages, as a plain projection with few 128-row tiles but
        // many 64-row ones takes them, 64x64x64w4x2, on k steps of 32 so that the fused
        // kernels fit too.)
        let eight_two = Some("64x64x32w4x2".parse::<CoopTile>().unwrap());
        targets.push(Run::every("native, eight subgroups, two stages", Target { coop_tiles: eight_two, ..f16 }));
    }
    // Partial row, column and k tiles at 128-row tilings (k steps of 32 or 16) and at 16-row
    // ones (k steps of 64 or 128).
    let shapes = [(150u64, 40u64, 200u64), (20, 136, 96)];
    // Split in two: 4 or 2 steps of k (a partial one last) at each tiling.
    let split_shapes = [(150u64, 120u64, 200u64), (20, 248, 96)];
    let mut kinds = std::collections::BTreeSet::new();
    let mut tilings = std::collections::BTreeSet::new();
    let (mut runs, mut worst, mut n) = (0, 0.0f64, 0usize);
    for Run { label, target, full, plain_only, nk_only, other_shape } in &targets {
        let mut combo = 0;
        for layout in [Layout::Kn, Layout::Nk] {
            for dtype in [DType::F16, DType::F32] {
                for (bias, merged) in [(false, false), (true, false), (false, true)] {
                    combo += 1;
                    if layout == Layout::Kn && *nk_only {
                        continue;
                    }
                    if !full && target.coop_tiles.is_some() && combo % 6 != 1 {
                        continue;
                    }
                    if !full && target.coop_split.is_some() && target.coop_tiles.is_none() && combo % 3 != 0 {
                        continue;
                    }
                    let shapes = if target.coop_split.is_some() { split_shapes } else { shapes };
                    // (The sliced tiling on the other shape than the two-stage one: 150 rows,
                    // whose loads go two steps ahead.)
                    let shift = usize::from(*other_shape);
                    let picked: Vec<_> = if *full { shapes.to_vec() } else { vec![shapes[(combo + shift) % 2]] };
                    for (rows, h, i) in picked {
                        let c = Case { rows, h, i, layout, dtype, bias, merged };
                        let act = Activation::ALL[n % 4];
                        n += 1;
                        let original = build_with(&c, act);
                        let mut fused = original.clone();
                        PassManager::standard().run(&mut fused).unwrap();
                        assert_eq!(fused.summary().fused, 1);
                        let inputs = interp::seeded_inputs(&original, &Default::default(), 11).unwrap();
                        let want = interp::run(&original, &inputs).unwrap();
                        // The unfused graph's projections are plain [K,N] GEMMs: packed f16
                        // weights (Kn f16), f32 (Kn f32) or f16 values stored as f32 (Nk f16,
                        // behind the Transpose).
                        // (A tiling for plain projections only: the fused ones stage twice
                        // the weights, past the workgroup memory.)
                        let mut graphs = if *plain_only { vec![] } else { vec![("fused", &fused)] };
                        let plain = !bias && !merged && (layout == Layout::Kn || dtype == DType::F16);
                        if *full || (plain && (target.coop_tiles.is_none() || *plain_only)) {
                            graphs.push(("unfused", &original));
                        }
                        for (part, g) in graphs {
                            let what = format!("{label} {part} {c:?} {act:?}");
                            let exe = Executable::with_target(&gpu, g, &Default::default(), target)
                                .unwrap_or_else(|e| panic!("{what}: {e}"));
                            for k in exe.kernels() {
                                kinds.insert(k.source().kind.to_string());
                                if let Some(ch) = &k.source().choice {
                                    assert!(ch.kernel.starts_with("coop "), "{what}: {ch}");
                                    tilings.insert(ch.kernel.clone());
                                }
                            }
                            let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{what}: {e}"));
                            let f32s = |t: &Tensor| t.as_f32().unwrap().to_vec();
                            let x = f32s(&inputs["x"]);
                            let ratio = check_f16_bound(&original, &c, act, &x, &f32s(&got[0]), &f32s(&want[0]));
                            assert!(ratio <= 1.0, "{what}: an error {ratio:.2}× its bound");
                            worst = worst.max(ratio);
                            runs += 1;
                        }
                    }
                }
            }
        }
    }
    eprintln!("{runs} runs, largest error {worst:.3} of its bound; kernels {kinds:?}; tilings {tilings:?}");
    for want in ["fused-gate-up-coop", "matmul-coop"] {
        assert!(kinds.contains(want), "{want} never ran: {kinds:?}");
    }
    assert!(tilings.iter().any(|t| t.starts_with("coop 16x")) && tilings.iter().any(|t| t.contains("x16w2x2")));
    assert!(tilings.iter().any(|t| t.starts_with("coop 128x64x32w4x2s1")), "{tilings:?}");
    assert!(tilings.iter().any(|t| t.starts_with("coop 64x64x16w4x2")), "{tilings:?}");
    assert!(tilings.iter().any(|t| t == "coop 32x64x32w2x2k2s1 split-k 2"), "{tilings:?}");
    // (The unfused graph's plain projections at 150 rows: 32×32 tiles, k steps of 128.)
    assert!(tilings.contains("coop 32x32x128w2x2s1"), "{tilings:?}");
    // The forced split ran, and its
    // partial sums were added up by the split-sum kernel.
    assert!(tilings.iter().any(|t| t.ends_with("split-k 2")), "{tilings:?}");
    assert!(tilings.iter().any(|t| t.ends_with("split-k 2 sum")), "{tilings:?}");
}

/// A norm read by a decode projection: `s = h + x·W0`, `n = norm(s)`, `y = n·W1` (or a fused
/// gate/up of `n`), outputs `y` and the residual sum `s`. `layer` picks a layer norm (two
/// rounds of reductions: the variance reads the mean) over an RMS norm (one), both spelled
/// in ops as exporters write them. With `n_too`, `n` is a graph output
/// as well.
#[cfg(feature = "gpu")]
fn norm_proj(rows: u64, k: u64, n: u64, dtype: DType, fused: bool, layer: bool, n_too: bool) -> glufuse::Graph {
    use glufuse::ir::{BinaryOp, Op, ReduceOp, UnaryOp};
    let mut b = GraphBuilder::new();
    let x = b.input("x", dtype, shape_of(&[rows, 16]));
    let h = b.input("h", dtype, shape_of(&[rows, k]));
    let w0 = b.weight("w0", dtype, &[16, k], 0.3);
    // A computed operand (its buffer reusable once its last reader ran), as the attention
    // output projection is in a model.
    let a = b.matmul("attn_out", x, w0);
    let s = b.add("residual", h, a);
    let scale = b.weight("norm.w", dtype, &[k], 1.0);
    let mean = || Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true };
    let eps = b.scalar("eps", dtype, 1e-5);
    let normed = if layer {
        // As exporters spell a layer norm in ops: the variance reads the mean (two rounds).
        let mu = b.node("mu", mean(), &[s], vec![])[0];
        let d = b.binary("centre", BinaryOp::Sub, s, mu);
        let d2 = b.mul("d2", d, d);
        let var = b.node("var", mean(), &[d2], vec![])[0];
        let ve = b.add("var_eps", var, eps);
        let r = b.unary("std", UnaryOp::Sqrt, ve);
        let n1 = b.binary("normalise", BinaryOp::Div, d, r);
        let scaled = b.mul("scaled", n1, scale);
        let bias = b.weight("norm.b", dtype, &[k], 0.3);
        b.add("norm", scaled, bias)
    } else {
        let sq = b.mul("sq", s, s);
        let ms = b.node("mean", mean(), &[sq], vec![])[0];
        let ve = b.add("var_eps", ms, eps);
        let r = b.unary("rsqrt_sqrt", UnaryOp::Sqrt, ve);
        let inv = b.unary("rsqrt", UnaryOp::Reciprocal, r);
        let n1 = b.binary("normalise", BinaryOp::Mul, s, inv);
        b.mul("norm", n1, scale)
    };
    let y = if fused {
        let wg = b.weight("gate.w", dtype, &[k, n], 0.3);
        let wu = b.weight("up.w", dtype, &[k, n], 0.3);
        let g = b.matmul("gate", normed, wg);
        let u = b.matmul("up", normed, wu);
        let act = b.unary("act", UnaryOp::Silu, g);
        b.mul("mul", act, u)
    } else {
        let w1 = b.weight("w1", dtype, &[k, n], 0.3);
        b.matmul("proj", normed, w1)
    };
    let outs = if n_too { vec![y, s, normed] } else { vec![y, s] };
    b.finish(&outs).unwrap()
}

/// A row program (RMS or layer norm after a residual addition) whose only reader is a `[K, N]`
/// decode GEMV (weights given by seed, which the `weights-nk` pass leaves `[K, N]`; the
/// `[N, K]` GEMV's prologue: [`norms_fold_into_the_nk_gemvs_after_them`]) is computed in that
/// GEMV's prologue: one kernel fewer, every output as the
/// interpreter computes it (the projection's and the residual sum the first workgroup
/// writes), over 1 and 3 rows, K a multiple of 256 or not, N below K (the projection's output
/// may not take the buffer of the program's input, which it still reads), f32 and f16,
/// plain and fused projections, 4 rows. Not folded: the normed value also a graph output, 5
/// rows (past `PROLOGUE_MAX_ROWS`), 40 rows (a GEMM), and a GEMV split over k.
#[cfg(feature = "gpu")]
#[test]
fn norms_fold_into_the_decode_gemv_after_them() {
    let Some(gpu) = common::gpu() else { return };
    let folded_in = |g: &glufuse::Graph| -> (usize, usize) {
        let ks = glufuse::codegen::generate(g, &Default::default(), &gpu.target()).unwrap();
        let pro =
            ks.iter().filter(|k| k.source().choice.as_ref().is_some_and(|c| c.reason.contains("prologue"))).count();
        (pro, ks.len())
    };
    // (rows, K, N, dtype, fused, layer norm, normed also an output, folds)
    let cases = [
        (1u64, 64u64, 32u64, DType::F32, false, false, false, true),
        (3, 300, 96, DType::F32, true, false, false, true),
        (1, 512, 1024, DType::F16, true, true, false, true),
        (3, 96, 40, DType::F16, false, true, false, true),
        (1, 64, 32, DType::F32, false, false, true, false),
        // 4 rows, the most that fold; 5 do not (the GEMV's code grows with its rows).
        (4, 64, 32, DType::F32, true, false, false, true),
        (5, 64, 32, DType::F32, false, false, false, false),
        // 40 rows: a GEMM, which takes no prologue.
        (40, 64, 32, DType::F32, false, false, false, false),
        (1, 8200, 72, DType::F16, false, false, false, false),
    ];
    for (rows, k, n, dtype, fused, layer, n_too, folds) in cases {
        let what = format!("rows={rows} K={k} N={n} {dtype} fused={fused} layer={layer} n_too={n_too}");
        let original = norm_proj(rows, k, n, dtype, fused, layer, n_too);
        let mut g = original.clone();
        PassManager::standard().run(&mut g).unwrap();
        let (pro, kernels) = folded_in(&g);
        assert_eq!(pro, usize::from(folds), "{what}: {kernels} kernels");
        let inputs = interp::seeded_inputs(&original, &Default::default(), 5).unwrap();
        let want = interp::run(&original, &inputs).unwrap();
        let tol = glufuse::interp::check_tolerance(&original);
        let got = Executable::new(&gpu, &g, &Default::default()).unwrap().run(&inputs).unwrap();
        for (o, (gv, wv)) in got.iter().zip(&want).enumerate() {
            let (abs, rel) = glufuse::interp::compare(gv, wv);
            assert!(rel <= tol, "{what}: output {o}: rel {rel:e} abs {abs:e}");
        }
    }
}

/// Values that differ in every position (a misplaced element changes the result).
fn ramp(n: u64, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 * 0.37).sin() * scale).collect()
}

/// A decoder layer's projections, weights given as values (which the `weights-nk` pass
/// holds as `[N, K]`), over rows of `k`: `s = h + x`, q/k/v projections (`nq`, `nkv`, `nkv`
/// wide, biased; the merge pass makes them one) of `rms(s)`, `s2 = s + v·Wo` (standing in
/// for the attention and its output projection, which orders the next norm after q/k/v),
/// a SwiGLU FFN (intermediate `i`; fused) of `rms(s2)` and its down projection. Outputs: q,
/// k, v, the FFN's and `s2` (which the FFN's GEMV writes from its prologue).
fn nk_layer(rows: u64, k: u64, nq: u64, nkv: u64, i: u64, dtype: DType) -> glufuse::Graph {
    let mut b = GraphBuilder::new();
    let rms = |b: &mut GraphBuilder, p: &str, s: Value| {
        let mean = Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true };
        let sq = b.mul(&format!("{p}.sq"), s, s);
        let ms = b.node(&format!("{p}.mean"), mean, &[sq], vec![])[0];
        let eps = b.scalar(&format!("{p}.eps"), dtype, 1e-5);
        let ve = b.add(&format!("{p}.var_eps"), ms, eps);
        let r = b.unary(&format!("{p}.sqrt"), UnaryOp::Sqrt, ve);
        let inv = b.unary(&format!("{p}.rsqrt"), UnaryOp::Reciprocal, r);
        let n = b.mul(&format!("{p}.normalise"), s, inv);
        let scale = b.weight_data(&format!("{p}.w"), dtype, &[k], ramp(k, 1.0));
        b.mul(p, n, scale)
    };
    let x = b.input("x", dtype, shape_of(&[rows, k]));
    let h = b.input("h", dtype, shape_of(&[rows, k]));
    let s = b.add("s", h, x);
    let n1 = rms(&mut b, "norm1", s);
    let mut outs = vec![];
    for (j, (p, w)) in [("q", nq), ("k", nkv), ("v", nkv)].into_iter().enumerate() {
        let wt = b.weight_data(&format!("{p}.w"), dtype, &[k, w], ramp(k * w, 0.2 + 0.1 * j as f32));
        let bias = b.weight_data(&format!("{p}.b"), dtype, &[w], ramp(w, 0.1));
        let y = b.matmul(p, n1, wt);
        outs.push(b.add(&format!("{p}.biased"), y, bias));
    }
    let wo = b.weight_data("o.w", dtype, &[nkv, k], ramp(nkv * k, 0.2));
    let o = b.matmul("o", outs[2], wo);
    let s2 = b.add("s2", s, o);
    let n2 = rms(&mut b, "norm2", s2);
    let wg = b.weight_data("gate.w", dtype, &[k, i], ramp(k * i, 0.3));
    let wu = b.weight_data("up.w", dtype, &[k, i], ramp(k * i, -0.3));
    let wd = b.weight_data("down.w", dtype, &[i, k], ramp(i * k, 0.2));
    let g = b.matmul("gate", n2, wg);
    let u = b.matmul("up", n2, wu);
    let act = b.unary("act", UnaryOp::Silu, g);
    let m = b.mul("mul", act, u);
    outs.push(b.matmul("down", m, wd));
    outs.push(s2);
    b.finish(&outs).unwrap()
}

/// The decode shapes [`nk_layer`] is tried at: (rows, K, q width, k/v width, I, dtype). At
/// K = 2048 the `[N, K]` GEMVs give an output 64 lanes (`nk_lanes`), two subgroups of 32.
const NK_LAYERS: [(u64, u64, u64, u64, u64, DType); 4] = [
    (1, 264, 64, 32, 200, DType::F32),
    (1, 264, 64, 32, 200, DType::F16),
    (3, 264, 64, 32, 200, DType::F32),
    (1, 2048, 64, 16, 72, DType::F16),
];

/// The kernel choices of a fused [`nk_layer`]: (`gemv-nk` computing a norm in its prologue,
/// other `gemv-nk`, `gemv-kn`). Expected: the q/k/v and gate/up GEMVs, the down projection,
/// and the output projection (its x is no norm's: it keeps `[K, N]`).
fn nk_choices(ks: &[glufuse::codegen::Kernel]) -> (usize, usize, usize) {
    let chosen = |k: &&glufuse::codegen::Kernel, kernel: &str, pro: bool| {
        k.source().choice.as_ref().is_some_and(|c| c.kernel == kernel && c.reason.contains("prologue") == pro)
    };
    let count = |kernel: &str, pro: bool| ks.iter().filter(|k| chosen(k, kernel, pro)).count();
    (count("gemv-nk", true), count("gemv-nk", false), count("gemv-kn", true) + count("gemv-kn", false))
}

/// How many kernels compute x into workgroup memory (an `[N, K]` GEMV's prologue).
fn staged(ks: &[glufuse::codegen::Kernel]) -> usize {
    ks.iter().filter(|k| k.source().wgsl.contains("var<workgroup> xs:")).count()
}

/// `t` with too little workgroup memory for an `[N, K]` GEMV to stage x (1 KiB: its
/// prologue's reductions alone take that), so that the norms keep their own kernels.
fn unstaged(t: &Target) -> Target {
    Target { max_workgroup_storage_bytes: 1024, ..t.clone() }
}

/// The norms before the merged q/k/v projection and the fused gate/up, whose weights the
/// `weights-nk` pass holds as `[N, K]`, are computed in the `[N, K]` GEMVs' prologues, which
/// validate for an H100 (its subgroups: the lanes summed by `subgroupAdd`, the norm's
/// reductions by shuffles), x staged in workgroup memory; where x would not fit there, the
/// norms are kernels of their own and the GEMVs read x.
#[test]
fn nk_prologues_generate_for_an_h100() {
    for (rows, k, nq, nkv, i, dtype) in NK_LAYERS {
        let what = format!("rows={rows} K={k} I={i} {dtype}");
        let mut g = nk_layer(rows, k, nq, nkv, i, dtype);
        PassManager::standard().run(&mut g).unwrap();
        for (t, stages) in [(common::h100(), 2), (common::h100_coop(), 2), (unstaged(&common::h100()), 0)] {
            let ks = glufuse::codegen::generate(&g, &Default::default(), &t).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(nk_choices(&ks), if stages == 2 { (2, 1, 1) } else { (0, 3, 1) }, "{what}");
            assert_eq!(staged(&ks), stages, "{what}");
            for k in ks.iter().filter(|k| k.source().choice.as_ref().is_some_and(|c| c.kernel == "gemv-nk")) {
                let w = &k.source().wgsl;
                assert!(w.contains("subgroupAdd") && w.contains("sg_id"), "{what}: {w}");
            }
        }
    }
}

/// [`nk_layer`] at decode sizes on the GPU, fused (the norms in the `[N, K]` GEMVs'
/// prologues, x staged in workgroup memory, the residual sum written from the FFN's; or,
/// where x would not fit there, the norms in kernels of their own), against the interpreter.
#[cfg(feature = "gpu")]
#[test]
fn norms_fold_into_the_nk_gemvs_after_them() {
    let Some(gpu) = common::gpu() else { return };
    for (rows, k, nq, nkv, i, dtype) in NK_LAYERS {
        let original = nk_layer(rows, k, nq, nkv, i, dtype);
        let mut g = original.clone();
        PassManager::standard().run(&mut g).unwrap();
        let inputs = interp::seeded_inputs(&original, &Default::default(), 5).unwrap();
        let want = interp::run(&original, &inputs).unwrap();
        let tol = glufuse::interp::check_tolerance(&original);
        for (t, stages) in [(gpu.target(), 2), (unstaged(&gpu.target()), 0)] {
            let what = format!("rows={rows} K={k} I={i} {dtype} staged={stages}");
            let ks = glufuse::codegen::generate(&g, &Default::default(), &t).unwrap();
            assert_eq!(nk_choices(&ks), if stages == 2 { (2, 1, 1) } else { (0, 3, 1) }, "{what}");
            assert_eq!(staged(&ks), stages, "{what}");
            let got = Executable::with_target(&gpu, &g, &Default::default(), &t).unwrap().run(&inputs).unwrap();
            assert_eq!(got.len(), 5);
            for (o, (gv, wv)) in got.iter().zip(&want).enumerate() {
                let (abs, rel) = glufuse::interp::compare(gv, wv);
                assert!(rel <= tol, "{what}: output {o}: rel {rel:e} abs {abs:e}");
            }
        }
    }
}
