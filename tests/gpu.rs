//! Codegen and the GPU runtime: every kernel of every test graph validates in naga; the GPU
//! output of each graph, original and fused, matches the interpreter; representative WGSL is
//! pinned by snapshots so kernel changes are reviewed. Without the `gpu` feature the tests
//! that run kernels are not built; naga validation and the snapshots need no GPU.
#![cfg_attr(not(feature = "gpu"), allow(unused_imports))]

mod common;

use glufuse::codegen::{generate, manifest, MatmulPrecision, Target};
use glufuse::interp;
use glufuse::ir::{DType, Layout};
use glufuse::passes::PassManager;
#[cfg(feature = "gpu")]
use glufuse::runtime::Executable;

#[test]
fn every_kernel_validates_in_naga() {
    for (name, path) in common::graph_files() {
        let g = glufuse::files::load_graph(&path).unwrap();
        let mut f = g.clone();
        PassManager::standard().run(&mut f).unwrap();
        for graph in [&g, &f] {
            let ks = generate(graph, &common::bindings(), &Target::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            let launches = graph.summary().launches + extra_split_kernels(graph) - weights_read_in_place(graph);
            assert_eq!(ks.len(), launches, "{name}");
        }
    }
}

/// Transposes of float weights that the projections read in place (`codegen::nk_weight`):
/// the summary counts each as a launch, codegen gives them none. (A transpose of a 4-bit
/// weight the summary does not count: `Graph::launches_kernel`.)
fn weights_read_in_place(g: &glufuse::Graph) -> usize {
    g.g.node_indices()
        .filter(|&n| glufuse::codegen::nk_weight(g, glufuse::ir::Value::of(n)).is_some() && g.launches_kernel(n))
        .count()
}

/// A Split launches one kernel per output; the summary counts it once.
fn extra_split_kernels(g: &glufuse::Graph) -> usize {
    g.g.node_indices()
        .filter_map(|n| match &g.node(n).op {
            glufuse::ir::Op::Split { sizes, .. } => Some(sizes.len() - 1),
            _ => None,
        })
        .sum()
}

/// The subset sweep (a software adapter) takes the graphs that between them reach every
/// kernel family: the decoders, f16, symbolic batch, each activation, merged and `[N,K]`
/// weights, the batched GEMM, biases, broadcasting and a mixed-layout transpose.
#[cfg(feature = "gpu")]
#[test]
fn gpu_matches_interpreter_on_every_graph_fused_and_unfused() {
    let Some(gpu) = common::gpu() else { return };
    let sweep = common::sweep(&gpu, "gpu_matches_interpreter_on_every_graph_fused_and_unfused");
    let subset = [
        "decoder_3_layers_nk",
        "f16_symbolic_batch",
        "geglu_erf_op",
        "geglu_tanh_op",
        "merged_slices_nk",
        "merged_split",
        "nofuse_broadcast_up",
        "nofuse_mixed_layouts",
        "reglu_batched_3d",
        "swiglu_bias",
        "swiglu_silu_op",
    ];
    let graphs = common::graph_files();
    for s in subset {
        assert!(graphs.iter().any(|(n, _)| n == s), "the subset names {s}, which tests/graphs lacks");
    }
    let graphs = graphs.into_iter().filter(|(name, _)| sweep == common::Sweep::Full || subset.contains(&name.as_str()));
    for (name, path) in graphs {
        let original = glufuse::files::load_graph(&path).unwrap();
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap();
        let b = common::bindings();
        let inputs = interp::seeded_inputs(&original, &b, 5).unwrap();
        let want = interp::run(&original, &inputs).unwrap();
        let tol = glufuse::interp::check_tolerance(&original);
        let mut dispatches = vec![];
        for (label, g) in [("unfused", &original), ("fused", &fused)] {
            let exe = Executable::new(&gpu, g, &b).unwrap_or_else(|e| panic!("{name} {label}: {e}"));
            dispatches.push(exe.dispatch_count());
            let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{name} {label}: {e}"));
            for (x, y) in got.iter().zip(&want) {
                assert_eq!(x.shape(), y.shape());
                let (abs, rel) = glufuse::interp::compare(x, y);
                assert!(rel <= tol, "{name} {label}: GPU vs interpreter rel {rel:e} (abs {abs:e}) > {tol:e}");
            }
        }
        let (d_orig, d_fused) = (dispatches[0], dispatches[1]);
        if fused.summary().fused > 0 {
            assert!(d_fused < d_orig, "{name}: fusion must save dispatches ({d_fused} vs {d_orig})");
        }
    }
}

#[test]
fn wgsl_snapshots_of_representative_kernels() {
    let pick_for = |graph: &str, node: &str, b: &glufuse::shape::Bindings, t: &Target| -> String {
        let mut g =
            glufuse::files::load_graph(&common::root().join("tests/graphs").join(format!("{graph}.json"))).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        let ks = generate(&g, b, t).unwrap();
        let k = ks.iter().find(|k| k.source().name == node).unwrap_or_else(|| panic!("{graph}: no kernel {node}"));
        format!("// kind: {}, workgroups: {:?}\n{}", k.source().kind, k.source().workgroups, k.source().wgsl)
    };
    let pick = |graph: &str, node: &str| pick_for(graph, node, &common::bindings(), &Target::default());
    insta::assert_snapshot!("wgsl_fused_silu_kn", pick("swiglu_mul_sigmoid", "mul"));
    insta::assert_snapshot!("wgsl_fused_silu_nk_merged", pick("merged_slices_nk", "mul"));
    insta::assert_snapshot!("wgsl_fused_silu_bias", pick("swiglu_bias", "mul"));
    insta::assert_snapshot!("wgsl_fused_silu_f16", pick("f16_symbolic_batch", "mul"));
    insta::assert_snapshot!("wgsl_fused_gelu_erf", pick("geglu_erf_expanded", "mul"));
    insta::assert_snapshot!("wgsl_matmul_kn", pick("nofuse_shared_gate", "gate_proj"));
    insta::assert_snapshot!("wgsl_program_broadcast", pick("nofuse_broadcast_up", "mul"));
    insta::assert_snapshot!("wgsl_program_rows", pick("elementwise_chains_f16", "soft"));
    insta::assert_snapshot!("wgsl_program_rotary_cache", pick("elementwise_rotary", "k_cache"));
    insta::assert_snapshot!("wgsl_attention_gqa", pick("attention_gqa", "attn.t"));
    // A weight's transpose runs only where something else than a projection reads it (here,
    // the graph's output): the projections read the weight in place (`codegen::nk_weight`).
    let transpose = {
        let path = common::root().join("tests/graphs/nofuse_mixed_layouts.json");
        let mut g = glufuse::files::load_graph(&path).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        let t = g.resolve("up_proj.weight_t").unwrap();
        g.add_output(t, None);
        let ks = generate(&g, &common::bindings(), &Target::default()).unwrap();
        let k = ks.iter().find(|k| k.source().name == "up_proj.weight_t").unwrap().source();
        format!("// kind: {}, workgroups: {:?}\n{}", k.kind, k.workgroups, k.wgsl)
    };
    insta::assert_snapshot!("wgsl_transpose", transpose);
    // As generated for an H100: 48 KiB of workgroup memory, subgroups of 32; prefill at 160
    // rows for the GEMM (the default tiling, 8x8x8).
    let h100 = h100();
    let prefill = prefill();
    insta::assert_snapshot!("wgsl_fused_gemm", pick_for("reglu_batched_3d", "mul", &prefill, &h100));
    insta::assert_snapshot!(
        "wgsl_fused_gemv_nk_subgroups",
        pick_for("merged_slices_nk", "mul", &common::bindings(), &h100)
    );
    // Subgroup reductions: the [K, N] GEMV's k-lanes by shuffles within each subgroup (its
    // threads numbered by subgroup), a row program's sums by subgroup, then across them.
    insta::assert_snapshot!(
        "wgsl_fused_gemv_kn_subgroups",
        pick_for("swiglu_mul_sigmoid", "mul", &common::bindings(), &h100)
    );
    insta::assert_snapshot!(
        "wgsl_program_rows_subgroups",
        pick_for("elementwise_chains_f16", "soft", &common::bindings(), &h100)
    );
    // Cooperative matrices as an H100 offers them, on the benchmark's gate/up graph (H=64):
    // at I=4224 (66 column tiles of 64: enough that 128-row tiles are picked) f16 weights at
    // 160 rows (a 128-row tiling, [K,N], partial row tiles) and f32 weights under matmul
    // precision f16 (converted while staging; [N,K]); at I=96, the tilings that few tiles
    // take: eight subgroups on 128×64 tiles at 160 rows (partial row tiles), 64×64 ones at
    // 64 rows; and the emulated form of the unfused graph's plain projection at 20 rows (a
    // 16-row tiling, partial row and k tiles).
    let coop = h100_coop();
    let ffn = |i, dtype, layout, rows, fuse: bool, node: &str, t: &Target| -> String {
        let mut g = glufuse::synth::ffn_graph(64, i, rows, dtype, layout).unwrap();
        if fuse {
            PassManager::standard().run(&mut g).unwrap();
        }
        let ks = generate(&g, &Default::default(), t).unwrap();
        let k = ks.iter().find(|k| k.source().name == node).unwrap_or_else(|| panic!("no kernel {node}"));
        format!("// kind: {}, workgroups: {:?}\n{}", k.source().kind, k.source().workgroups, k.source().wgsl)
    };
    let f16_products = Target { matmul_precision: MatmulPrecision::F16, ..coop.clone() };
    let emulated = Target { coop_emulate: true, ..coop.clone() };
    insta::assert_snapshot!("wgsl_fused_coop_f16_kn", ffn(4224, DType::F16, Layout::Kn, 160, true, "mul", &coop));
    insta::assert_snapshot!(
        "wgsl_fused_coop_f32_nk",
        ffn(4224, DType::F32, Layout::Nk, 160, true, "mul", &f16_products)
    );
    insta::assert_snapshot!(
        "wgsl_fused_coop_f16_kn_eight_subgroups",
        ffn(96, DType::F16, Layout::Kn, 160, true, "mul", &coop)
    );
    insta::assert_snapshot!("wgsl_fused_coop_f16_kn_64rows", ffn(96, DType::F16, Layout::Kn, 64, true, "mul", &coop));
    insta::assert_snapshot!(
        "wgsl_matmul_coop_f16_emulated",
        ffn(96, DType::F16, Layout::Kn, 20, false, "gate_proj", &emulated)
    );
}

use common::{h100, h100_coop};

/// Dims that make the test graphs' projections prefill GEMMs (160 rows).
fn prefill() -> glufuse::shape::Bindings {
    [("batch".to_string(), 4usize), ("seq".to_string(), 40)].into()
}

/// `glufuse wgsl`'s manifest gives each kernel the workgroup size its WGSL declares (the
/// tiled GEMM runs 16·NY threads, the others 256), and names graph values in its bindings:
/// every kernel of every test graph, fused and not, decode and prefill, for portable WebGPU
/// and for an H100.
#[test]
fn manifest_workgroup_sizes_are_the_wgsl_ones() {
    let mut seen: std::collections::BTreeMap<String, std::collections::BTreeSet<u64>> = Default::default();
    for (name, path) in common::graph_files() {
        let g = glufuse::files::load_graph(&path).unwrap();
        let mut f = g.clone();
        PassManager::standard().run(&mut f).unwrap();
        for graph in [&g, &f] {
            for b in [common::bindings(), prefill()] {
                let f16_products = Target { matmul_precision: MatmulPrecision::F16, ..h100_coop() };
                for t in [Target::default(), h100(), h100_coop(), f16_products] {
                    let ks = generate(graph, &b, &t).unwrap();
                    let m = manifest(graph, &ks);
                    let entries = m["kernels"].as_array().unwrap();
                    assert_eq!(entries.len(), ks.len(), "{name}");
                    for (e, k) in entries.iter().zip(&ks) {
                        let s = k.source();
                        let decls: Vec<&str> = s.wgsl.split("@workgroup_size(").skip(1).collect();
                        assert_eq!(decls.len(), 1, "{name} {}: one entry point", s.name);
                        let dims = decls[0].split(')').next().unwrap();
                        let threads: u64 = dims.split(',').map(|d| d.trim().parse::<u64>().unwrap()).product();
                        assert_eq!(e["workgroup_size"], threads, "{name} {} ({})", s.name, s.kind);
                        for bd in e["bindings"].as_array().unwrap() {
                            let v = bd["value"].as_str().unwrap();
                            assert!(graph.resolve(v).is_some(), "{name} {}: binds {v:?}", s.name);
                        }
                        seen.entry(s.kind.to_string()).or_default().insert(threads);
                    }
                }
            }
        }
    }
    // The default tiling of the prefill GEMM is 8x8x8: 128 threads, where the rest use 256;
    // the fused cooperative-matrix GEMM takes eight subgroups of 32 on the 128×64 tiles of
    // the prefill binding (160 rows), the plain one four.
    let threads = |kind: &str| seen.get(kind).map(|t| t.iter().copied().collect::<Vec<_>>());
    assert_eq!(threads("fused-gate-up-gemm"), Some(vec![128]), "{seen:?}");
    assert_eq!(threads("fused-gate-up-coop"), Some(vec![256]), "{seen:?}");
    assert_eq!(threads("matmul-coop"), Some(vec![128]), "{seen:?}");
    assert_eq!(threads("fused-gate-up-gemv-kn"), Some(vec![256]), "{seen:?}");
}

#[test]
fn too_large_for_the_device_is_a_clear_error() {
    let g = glufuse::files::load_graph(&common::root().join("tests/graphs/swiglu_silu_op.json")).unwrap();
    let tiny = Target { max_binding_bytes: 64, ..Target::default() };
    let e = generate(&g, &common::bindings(), &tiny).unwrap_err().to_string();
    assert!(e.contains("more than this device binds in one buffer"), "{e}");
    assert_eq!(glufuse::Error::Gpu(e).exit_code(), 1);
}

/// A grouped-query attention graph as exporters spell it (keys and values expanded from `kv`
/// heads to `heads`, scores scaled and masked, softmax, times V, heads moved back beside the
/// sequence), with `keys` keys of width `e` and `seq` queries.
#[cfg(feature = "gpu")]
fn attention_graph(heads: usize, kv: usize, keys: usize, e: usize, seq: usize) -> glufuse::Graph {
    attention_graph_with(heads, kv, keys, e, seq, false)
}

/// [`attention_graph`], its probabilities' NaNs made zeros where `nan_zero` (as PyTorch's
/// `scaled_dot_product_attention` exports: a row every key of which the mask hides is zeros).
#[cfg(feature = "gpu")]
fn attention_graph_with(heads: usize, kv: usize, keys: usize, e: usize, seq: usize, nan_zero: bool) -> glufuse::Graph {
    let rep = heads / kv;
    let (zeroing, probs) = if nan_zero {
        let nodes = r#"{"name": "probs.nan", "op": "IsNaN", "inputs": ["probs"]},
        {"name": "zero", "op": "Constant", "value": [0.0], "type": {"dtype": "f32", "shape": []}},
        {"name": "probs.z", "op": "Where", "inputs": ["probs.nan", "zero", "probs"]},"#;
        (nodes, "probs.z")
    } else {
        ("", "probs")
    };
    let scale = 1.0 / (e as f64).sqrt();
    let text = format!(
        r#"{{"format": "glufuse.graph/1", "nodes": [
        {{"name": "q", "op": "Input", "type": {{"dtype": "f32", "shape": [1, {heads}, {seq}, {e}]}}}},
        {{"name": "k", "op": "Input", "type": {{"dtype": "f32", "shape": [1, {kv}, {keys}, {e}]}}}},
        {{"name": "v", "op": "Input", "type": {{"dtype": "f32", "shape": [1, {kv}, {keys}, {e}]}}}},
        {{"name": "mask", "op": "Input", "type": {{"dtype": "f32", "shape": [1, 1, {seq}, {keys}]}}}},
        {{"name": "k.u", "op": "Reshape", "shape": [1, {kv}, 1, {keys}, {e}], "inputs": ["k"]}},
        {{"name": "k.x", "op": "Expand", "shape": [1, {kv}, {rep}, {keys}, {e}], "inputs": ["k.u"]}},
        {{"name": "k.h", "op": "Reshape", "shape": [1, {heads}, -1, {e}], "inputs": ["k.x"]}},
        {{"name": "k.t", "op": "Transpose", "perm": [0, 1, 3, 2], "inputs": ["k.h"]}},
        {{"name": "scores", "op": "MatMul", "inputs": ["q", "k.t"]}},
        {{"name": "scale", "op": "Constant", "value": [{scale}], "type": {{"dtype": "f32", "shape": []}}}},
        {{"name": "scaled", "op": "Mul", "inputs": ["scores", "scale"]}},
        {{"name": "masked", "op": "Add", "inputs": ["scaled", "mask"]}},
        {{"name": "probs", "op": "Softmax", "axis": -1, "inputs": ["masked"]}},
        {zeroing}
        {{"name": "v.u", "op": "Reshape", "shape": [1, {kv}, 1, {keys}, {e}], "inputs": ["v"]}},
        {{"name": "v.x", "op": "Expand", "shape": [1, {kv}, {rep}, {keys}, {e}], "inputs": ["v.u"]}},
        {{"name": "v.h", "op": "Reshape", "shape": [1, {heads}, -1, {e}], "inputs": ["v.x"]}},
        {{"name": "attn", "op": "MatMul", "inputs": ["{probs}", "v.h"]}},
        {{"name": "attn.t", "op": "Transpose", "perm": [0, 2, 1, 3], "inputs": ["attn"]}}
        ], "outputs": ["attn.t"]}}"#
    );
    glufuse::json::from_str(&text).unwrap()
}

#[cfg(feature = "gpu")]
#[test]
fn fused_attention_matches_the_interpreter_across_sizes() {
    // (Code generation only: checked whatever adapter there is.)
    // As generated for an H100 (48 KiB of workgroup memory), the decode attention of a
    // Qwen2-0.5B-sized model (14 heads over 2, 129 keys of 64) stages its K.
    let mut qwen = attention_graph(14, 2, 129, 64, 1);
    PassManager::standard().run(&mut qwen).unwrap();
    let ks = generate(&qwen, &glufuse::shape::Bindings::default(), &h100()).unwrap();
    assert!(ks[0].source().wgsl.contains("var<workgroup> kst"), "an H100's decode attention stages K");
    // Its 128-token prefill computes two queries a workgroup, their reductions by subgroup
    // shuffles side by side (validated by naga in `generate`).
    let mut prefill = attention_graph(14, 2, 128, 64, 128);
    PassManager::standard().run(&mut prefill).unwrap();
    let ks = generate(&prefill, &glufuse::shape::Bindings::default(), &h100()).unwrap();
    let wgsl = &ks[0].source().wgsl;
    assert!(wgsl.contains("let rq1 = ") && !wgsl.contains("let rq2 = "), "two queries a workgroup");
    assert!(wgsl.contains("red[128u + sg_id] = sgv_"), "the second query's subgroup sums");
    // Its P·V: two threads a column of V, each taking 32 of the tile's keys an iteration
    // (keys u, u + 2, .., u + 62), their loads in flight together.
    assert!(wgsl.contains("while (u + 62u < n)") && wgsl.contains("u = u + 64u;"), "32 keys an iteration");
    assert_eq!(ks[0].source().workgroups, [896, 1, 1]);
    let Some(gpu) = common::gpu() else { return };
    // (heads, kv heads, keys, width, queries, K and V loaded up front, K through workgroup
    // memory within 16 KiB of it, query rows a workgroup computes): one tile of keys and
    // several (the workgroup holds 256), partial tiles, widths that split V's columns over 1
    // to 32 thread groups and dot products written out 16, 8 or 2 terms per iteration; the
    // up-front loads of few rows (decode), K staged where it fits and each thread's row of K
    // where it does not, and the loops of many rows (160) or of a wide head (256 + 33 values
    // a thread); a prefill of Qwen2-0.5B's heads (1792 rows, 2 to a workgroup).
    let cases = [
        (4, 2, 5, 8, 1, true, true, 1),
        (14, 2, 129, 64, 1, true, false, 1),
        (4, 1, 300, 64, 3, false, false, 1),
        (2, 2, 513, 80, 2, false, false, 1),
        (2, 1, 257, 72, 1, false, false, 1),
        (3, 3, 33, 256, 2, false, false, 1),
        (2, 1, 40, 6, 4, true, true, 1),
        (8, 2, 100, 32, 20, false, false, 1),
        (4, 1, 48, 64, 1, true, true, 1),
        (14, 2, 128, 64, 128, false, false, 2),
    ];
    // The default target (16 KiB of workgroup memory), whose choices the table states, then
    // the adapter's own, then the adapter's with 2, 4 and 8 query rows to a workgroup forced
    // (where there are as many queries and their scores fit its workgroup memory; a last
    // group partial where they do not divide the queries). Every row in one workgroup: the
    // split over keys is `split_attention_matches_the_interpreter`'s.
    let whole = Target { attention_chunks: Some(1), ..Target::default() };
    let mut targets = vec![(whole, None), (Target { attention_chunks: Some(1), ..gpu.target() }, None)];
    for q in [2, 4, 8] {
        targets.push((Target { attention_rows: Some(q), attention_chunks: Some(1), ..gpu.target() }, Some(q)));
    }
    let mut grouped = std::collections::BTreeSet::new();
    for (pass, (target, forced)) in targets.into_iter().enumerate() {
        for (heads, kv, keys, e, seq, up_front, staged, rows) in cases {
            if forced.is_some_and(|q| q > seq) {
                continue;
            }
            let label = format!(
                "heads {heads}/{kv}, keys {keys}, width {e}, queries {seq}, {} B of workgroup memory, rows {forced:?}",
                target.max_workgroup_storage_bytes
            );
            let original = attention_graph(heads, kv, keys, e, seq);
            let mut fused = original.clone();
            PassManager::standard().run(&mut fused).unwrap();
            let b = glufuse::shape::Bindings::default();
            let kernels = generate(&fused, &b, &target).unwrap_or_else(|e| panic!("{label}: {e}"));
            let kinds: Vec<String> = kernels.iter().map(|k| k.source().kind.to_string()).collect();
            assert_eq!(kinds, ["attention"], "{label}: one fused attention kernel");
            // (The up-front loads name their clamped key `jk`, staged K `kst`; the queries
            // of a workgroup's rows past its first are `rq1`, `rq2`, ..)
            let wgsl = &kernels[0].source().wgsl;
            let group = (1..=8).take_while(|m| *m == 1 || wgsl.contains(&format!("let rq{} = ", m - 1))).count();
            if pass == 0 {
                assert_eq!(wgsl.contains("let jk = min(lid"), up_front, "{label}: loads up front");
                assert_eq!(wgsl.contains("var<workgroup> kst"), staged, "{label}: K through workgroup memory");
                assert_eq!(group, rows, "{label}: query rows per workgroup");
            }
            if let Some(q) = forced {
                assert!(group == q || group == 1, "{label}: {group} rows per workgroup");
                if group == q {
                    grouped.insert(q);
                }
            }
            let inputs = interp::seeded_inputs(&original, &b, 11).unwrap();
            let want = interp::run(&original, &inputs).unwrap();
            let exe = Executable::with_target(&gpu, &fused, &b, &target).unwrap_or_else(|e| panic!("{label}: {e}"));
            let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{label}: {e}"));
            let (abs, rel) = interp::compare(&got[0], &want[0]);
            assert!(rel <= 1e-5, "{label}: GPU vs interpreter rel {rel:e} (abs {abs:e})");
        }
    }
    assert_eq!(grouped.into_iter().collect::<Vec<_>>(), [2, 4, 8], "every forced grouping ran");
}

/// A decode-shaped attention split over its keys (flash-decoding: a workgroup a chunk of a
/// row's keys, then a kernel combining the chunks) computes what the interpreter does: past
/// 192 keys by default, in as many chunks as forced, and in more where a chunk would hold
/// too many keys to load up front; chunks every key of which a mask of `-inf` hides count
/// nothing.
#[cfg(feature = "gpu")]
#[test]
fn split_attention_matches_the_interpreter() {
    // (heads, kv heads, keys, width, queries, chunks forced, chunks expected (1: no split),
    // keys from the start that the mask hides with -inf, NaN probabilities made zeros: a row
    // every key of which is hidden is then zeros.) The last: 4000 chunks' weights would not fit
    // the combining kernel's 16 KiB of workgroup memory, so one workgroup takes the row.
    let cases = [
        (14, 2, 129, 64, 1, None, 1, 0, false),
        (14, 2, 192, 64, 1, None, 1, 0, false),
        (14, 2, 193, 64, 1, None, 2, 0, false),
        (14, 2, 257, 64, 1, None, 2, 0, false),
        (4, 1, 1000, 64, 1, None, 7, 0, true),
        (3, 3, 300, 64, 1, Some(1), 1, 0, false),
        (4, 2, 300, 8, 2, Some(3), 3, 0, false),
        (2, 1, 300, 128, 1, Some(2), 10, 0, false),
        (4, 2, 10, 16, 1, Some(4), 4, 0, false),
        (4, 2, 300, 64, 1, Some(3), 3, 200, false),
        (2, 1, 40, 8, 3, Some(4), 4, 25, true),
        (4, 2, 300, 64, 1, Some(3), 3, 300, true),
        (2, 1, 8000, 8, 1, Some(4096), 1, 0, false),
    ];
    // (Code generation first, whatever the adapter: the chunks the target's limits give.)
    for (heads, kv, keys, e, seq, forced, chunks, _, nan_zero) in cases {
        let mut g = attention_graph_with(heads, kv, keys, e, seq, nan_zero);
        PassManager::standard().run(&mut g).unwrap();
        let target = Target { attention_chunks: forced, ..Target::default() };
        let ks = generate(&g, &glufuse::shape::Bindings::default(), &target).unwrap();
        let label = format!("heads {heads}/{kv}, keys {keys}, width {e}, queries {seq}, forced {forced:?}");
        let names: Vec<&str> = ks.iter().map(|k| k.source().name.as_str()).collect();
        if chunks == 1 {
            assert_eq!(names.len(), 1, "{label}: one kernel ({names:?})");
            continue;
        }
        assert!(names.len() == 2 && names[1].ends_with(".combine"), "{label}: the combining kernel ({names:?})");
        let combine = &ks[1].source().wgsl;
        assert!(combine.contains(&format!("var<workgroup> cw: array<f32, {chunks}>;")), "{label}: {chunks} chunks");
        assert_eq!(ks[0].source().workgroups[0] as usize, heads * seq * chunks, "{label}: a workgroup a chunk");
    }
    let Some(gpu) = common::gpu() else { return };
    for (heads, kv, keys, e, seq, forced, _, hidden, nan_zero) in cases {
        let label =
            format!("heads {heads}/{kv}, keys {keys}, width {e}, queries {seq}, forced {forced:?}, hidden {hidden}");
        let original = attention_graph_with(heads, kv, keys, e, seq, nan_zero);
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap();
        let b = glufuse::shape::Bindings::default();
        let mut inputs = interp::seeded_inputs(&original, &b, 5).unwrap();
        if hidden > 0 {
            let mask: Vec<f32> =
                (0..seq * keys).map(|i| if i % keys < hidden { f32::NEG_INFINITY } else { 0.0 }).collect();
            inputs.insert("mask".into(), glufuse::ir::Tensor::new(vec![1, 1, seq, keys], mask).unwrap());
        }
        let want = interp::run(&original, &inputs).unwrap();
        if hidden == keys {
            assert!(want[0].as_f32().unwrap().iter().all(|&x| x == 0.0), "{label}: the interpreter's rows are zeros");
        }
        let target = Target { attention_chunks: forced, ..gpu.target() };
        let exe = Executable::with_target(&gpu, &fused, &b, &target).unwrap_or_else(|e| panic!("{label}: {e}"));
        let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{label}: {e}"));
        let (abs, rel) = interp::compare(&got[0], &want[0]);
        assert!(rel <= 1e-5, "{label}: GPU vs interpreter rel {rel:e} (abs {abs:e})");
    }
}

/// Outputs of 4 MiB and more are read back into freshly advised memory (huge pages where
/// the OS has them): f32 squares are the interpreter's exactly, f16 ones within its tolerance
/// and rounded to f16 (what f16 holds), in outputs of 5.2 MB beside a small one.
#[cfg(feature = "gpu")]
#[test]
fn large_outputs_read_back_into_fresh_memory() {
    let Some(gpu) = common::gpu() else { return };
    for dtype in ["f32", "f16"] {
        let text = format!(
            r#"{{"format": "glufuse.graph/1", "nodes": [
            {{"name": "x", "op": "Input", "type": {{"dtype": "{dtype}", "shape": [1300, 1000]}}}},
            {{"name": "y", "op": "Mul", "inputs": ["x", "x"]}},
            {{"name": "z", "op": "ReduceSum", "axes": [1], "keepdims": true, "inputs": ["x"]}}
            ], "outputs": ["y", "z"]}}"#
        );
        let g = glufuse::json::from_str(&text).unwrap();
        let b = glufuse::shape::Bindings::default();
        let inputs = interp::seeded_inputs(&g, &b, 3).unwrap();
        let want = interp::run(&g, &inputs).unwrap();
        let exe = Executable::new(&gpu, &g, &b).unwrap();
        for round in 0..2 {
            let got = exe.run(&inputs).unwrap();
            let tol = interp::check_tolerance(&g);
            for (i, what) in ["the large output", "the small output"].iter().enumerate() {
                assert_eq!(got[i].shape(), want[i].shape());
                let (_, rel) = interp::compare(&got[i], &want[i]);
                assert!(rel <= tol, "{dtype}, call {round}: {what}, rel {rel:e} > {tol:e}");
            }
            let v = got[0].as_f32().unwrap();
            if dtype == "f16" {
                let off = v.iter().filter(|&&x| half::f16::from_f32(x).to_f32() != x).count();
                assert_eq!(off, 0, "call {round}: f16 values read back that f16 does not hold");
            } else {
                assert_eq!(got[0], want[0], "call {round}: f32 squares are the interpreter's, exactly");
            }
        }
    }
}

/// A projection of `rows` rows, `k` long, into `n` columns, every tensor of `dtype`, then with
/// `norm` what follows a down projection in a decoder (the residual added and an RMS norm: a
/// row program), else a residual of two batches broadcast against it and the sum squared, the
/// sum an output too (a program without row steps and with two outputs). With `also_output`
/// the projection's output is a graph output as well.
fn split_then(rows: usize, k: usize, n: usize, dtype: &str, norm: bool, also_output: bool) -> glufuse::Graph {
    let (res, tail, outs) = if norm {
        (
            format!("[{rows}, {n}]"),
            format!(
                r#"{{"name": "sq", "op": "Mul", "inputs": ["h", "h"]}},
        {{"name": "ms", "op": "ReduceMean", "axes": [-1], "keepdims": true, "inputs": ["sq"]}},
        {{"name": "eps", "op": "Constant", "value": [1e-6], "type": {{"dtype": "{dtype}", "shape": []}}}},
        {{"name": "mse", "op": "Add", "inputs": ["ms", "eps"]}},
        {{"name": "rms", "op": "Sqrt", "inputs": ["mse"]}},
        {{"name": "hn", "op": "Div", "inputs": ["h", "rms"]}},
        {{"name": "gain", "op": "Weight", "init": {{"random": {{"seed": 2, "scale": 1.0}}}},
          "type": {{"dtype": "{dtype}", "shape": [{n}]}}}},
        {{"name": "out", "op": "Mul", "inputs": ["hn", "gain"]}}"#
            ),
            r#""out""#,
        )
    } else {
        (format!("[2, {rows}, {n}]"), r#"{"name": "out", "op": "Mul", "inputs": ["h", "h"]}"#.into(), r#""out", "h""#)
    };
    let outputs = if also_output { format!("[{outs}, \"y\"]") } else { format!("[{outs}]") };
    let text = format!(
        r#"{{"format": "glufuse.graph/1", "nodes": [
        {{"name": "x", "op": "Input", "type": {{"dtype": "{dtype}", "shape": [{rows}, {k}]}}}},
        {{"name": "res", "op": "Input", "type": {{"dtype": "{dtype}", "shape": {res}}}}},
        {{"name": "w", "op": "Weight", "init": {{"random": {{"seed": 1, "scale": 0.02}}}},
          "type": {{"dtype": "{dtype}", "shape": [{k}, {n}]}}}},
        {{"name": "y", "op": "MatMul", "inputs": ["x", "w"]}},
        {{"name": "h", "op": "Add", "inputs": ["res", "y"]}},
        {tail}
        ], "outputs": {outputs}}}"#
    );
    glufuse::json::from_str(&text).unwrap()
}

/// The kinds of a graph's kernels as generated for `t`, and how many bind the scratch buffer.
fn kinds_and_scratch(g: &glufuse::Graph, b: &glufuse::shape::Bindings, t: &Target) -> (Vec<String>, usize) {
    let ks = generate(g, b, t).unwrap();
    let kinds = ks.iter().map(|k| k.source().kind.to_string()).collect();
    (kinds, ks.iter().filter(|k| k.source().scratch_bytes > 0).count())
}

/// A projection split over k whose one reader is a program: the program adds the parts up
/// where it reads them and the split-sum kernel is not generated (a dispatch fewer), with the
/// same numbers out, bit for bit, as with the split-sum kernel (kept where the projection's
/// output has another reader: here, being a graph output).
#[test]
fn a_program_reading_a_split_projection_adds_its_parts_up() {
    let b = glufuse::shape::Bindings::default();
    let fused = |mut g: glufuse::Graph| {
        PassManager::standard().run(&mut g).unwrap();
        g
    };
    // The decode GEMV, `[K, N]`, split for its few columns; and the cooperative-matrix GEMM
    // and the tiled f32 GEMM of a Qwen2-0.5B-sized down projection at 128 rows, split for
    // their few tiles.
    for (rows, k, n, dtype, t, gemm) in [
        (4, 4096, 32, "f32", common::h100(), "matmul-gemv-kn"),
        (128, 4864, 896, "f16", common::h100_coop(), "matmul-coop"),
        (128, 4864, 896, "f32", common::h100(), "matmul-gemm"),
    ] {
        for norm in [true, false] {
            let at = format!("{rows}x{k}x{n}, norm {norm}");
            let (kinds, scratch) = kinds_and_scratch(&fused(split_then(rows, k, n, dtype, norm, true)), &b, &t);
            assert_eq!(kinds, [gemm, "matmul-split-sum", "elementwise-program"], "{at}, two readers");
            assert_eq!(scratch, 2, "{at}: the split GEMM and its sum");
            let (kinds, scratch) = kinds_and_scratch(&fused(split_then(rows, k, n, dtype, norm, false)), &b, &t);
            assert_eq!(kinds, [gemm, "elementwise-program"], "{at}, one reader");
            assert_eq!(scratch, 2, "{at}: the split GEMM and the program reading its parts");
        }
    }
    #[cfg(feature = "gpu")]
    {
        let Some(gpu) = common::gpu() else { return };
        let bits = |t: &glufuse::ir::Tensor| t.as_f32().unwrap().iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // The split GEMV and the split tiled GEMM (f32 and f16 weights; no cooperative
        // matrices) on the adapter as it is; the cooperative-matrix GEMM emulated (where
        // the adapter has f16 in shaders), forced to split in two.
        let tiled = Target { coop_matrix: vec![], ..gpu.target() };
        let mut runs = vec![(4, 4096, 32, "f32", gpu.target()), (40, 2048, 96, "f32", tiled.clone())];
        if gpu.target().caps.contains(naga::valid::Capabilities::SHADER_FLOAT16) {
            runs.push((40, 2048, 96, "f16", tiled));
        }
        if gpu.target().caps.contains(naga::valid::Capabilities::SHADER_FLOAT16) {
            let coop = Target {
                coop_emulate: true,
                coop_split: Some(2),
                matmul_precision: MatmulPrecision::F16,
                ..gpu.target()
            };
            runs.push((20, 256, 64, "f16", coop));
        }
        for ((rows, k, n, dtype, t), norm) in runs.into_iter().flat_map(|r| [(r.clone(), true), (r, false)]) {
            let at = format!("{dtype} norm {norm}");
            let one = fused(split_then(rows, k, n, dtype, norm, false));
            let two = fused(split_then(rows, k, n, dtype, norm, true));
            let inputs = interp::seeded_inputs(&one, &b, 3).unwrap();
            let want = interp::run(&one, &inputs).unwrap();
            let tol = glufuse::interp::check_tolerance(&one);
            let e1 = Executable::with_target(&gpu, &one, &b, &t).unwrap();
            let e2 = Executable::with_target(&gpu, &two, &b, &t).unwrap();
            let split =
                e1.kernels().iter().any(|k| k.source().choice.as_ref().is_some_and(|c| c.kernel.contains("split")));
            assert!(split, "{at}: the projection split");
            assert_eq!(e1.dispatch_count() + 1, e2.dispatch_count(), "{at}: the split-sum kernel left out");
            let (got1, got2) = (e1.run(&inputs).unwrap(), e2.run(&inputs).unwrap());
            assert_eq!(got1.len(), want.len());
            for (o, (g1, w)) in got1.iter().zip(&want).enumerate() {
                let (_, rel) = glufuse::interp::compare(g1, w);
                assert!(rel <= tol, "{at}, output {o}: GPU vs interpreter: rel {rel:e}");
                let same = format!("{at}, output {o}: the parts added up as the split sum adds them");
                assert_eq!(bits(g1), bits(&got2[o]), "{same}");
            }
        }
    }
}

/// [`attention_graph`] with K computed first (a bias added: a program of its own, which the
/// attention does not recompute per row), and that program's output a graph output too where
/// `k_output`.
#[cfg(feature = "gpu")]
fn biased_keys_graph(heads: usize, kv: usize, keys: usize, e: usize, seq: usize, k_output: bool) -> glufuse::Graph {
    let text = glufuse::json::to_string(&attention_graph(heads, kv, keys, e, seq)).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let nodes = v["nodes"].as_array_mut().unwrap();
    let at = nodes.iter().position(|n| n["name"] == "k.u").unwrap();
    let bias = serde_json::json!({"name": "k.bias", "op": "Input", "type": {"dtype": "f32", "shape": [e]}});
    let add = serde_json::json!({"name": "k.b", "op": "Add", "inputs": ["k", "k.bias"]});
    nodes.insert(at, add);
    nodes.insert(at, bias);
    nodes[at + 2]["inputs"] = serde_json::json!(["k.b"]);
    if k_output {
        v["outputs"].as_array_mut().unwrap().push(serde_json::json!("k.t"));
    }
    glufuse::json::from_str(&v.to_string()).unwrap()
}

/// Where K is a program of its own that expands grouped-query heads and moves the positions
/// last (as eager exports spell it after the rotary embedding), that program writes each KV
/// head's keys once and the attention reads them through the expand: the same numbers out,
/// a program `heads / kv` times smaller. (With K an output too, the attention computes it and
/// writes it beside its own output; without grouped heads there is nothing to narrow.)
#[cfg(feature = "gpu")]
#[test]
fn grouped_keys_are_written_once_per_kv_head() {
    use glufuse::ir::{Op, Step};
    let Some(gpu) = common::gpu() else { return };
    let b = glufuse::shape::Bindings::default();
    for (heads, kv, keys, e, seq) in [(4, 2, 5, 8, 5), (14, 2, 40, 64, 40), (6, 3, 17, 16, 17), (2, 2, 9, 8, 9)] {
        for k_output in [false, true] {
            let label = format!("heads {heads}/{kv}, keys {keys}, width {e}, K an output {k_output}");
            let original = biased_keys_graph(heads, kv, keys, e, seq, k_output);
            let mut fused = original.clone();
            let runs = PassManager::standard().run(&mut fused).unwrap();
            let report = glufuse::passes::attention_report(&runs).unwrap();
            let nodes: Vec<_> = fused.g.node_indices().collect();
            let att = nodes.iter().find(|&&n| matches!(fused.node(n).op, Op::Attention(_)));
            let Op::Attention(a) = &fused.node(*att.unwrap_or_else(|| panic!("{label}: no attention"))).op else {
                unreachable!()
            };
            let program = nodes.iter().find(|&&n| matches!(fused.node(n).op, Op::Elementwise(_)));
            if !k_output {
                let program = program.unwrap_or_else(|| panic!("{label}: K's program"));
                let written: u64 = fused.node(*program).outputs[0].shape.iter().map(|d| d.fixed().unwrap()).product();
                let narrowed = heads > kv;
                let expands = a.kt.iter().any(|s| matches!(s, Step::Expand { .. }));
                assert_eq!(expands, narrowed, "{label}: Kᵀ read through the expand");
                assert_eq!(report.fused[0].keys_per_kv_head, narrowed, "{label}: the pass's report says so");
                let per_head = (keys * e) as u64;
                assert_eq!(written, per_head * if narrowed { kv } else { heads } as u64, "{label}: K's program writes");
            }
            let inputs = interp::seeded_inputs(&original, &b, 5).unwrap();
            let want = interp::run(&original, &inputs).unwrap();
            let got = Executable::new(&gpu, &fused, &b).unwrap().run(&inputs).unwrap();
            assert_eq!(got.len(), want.len());
            for (o, (x, y)) in got.iter().zip(&want).enumerate() {
                let (_, rel) = glufuse::interp::compare(x, y);
                assert!(rel <= 1e-4, "{label}, output {o}: GPU vs interpreter rel {rel:e}");
            }
            let again = interp::run(&fused, &inputs).unwrap();
            for (o, (x, y)) in again.iter().zip(&want).enumerate() {
                let (_, rel) = glufuse::interp::compare(x, y);
                assert!(rel <= 1e-5, "{label}, output {o}: the interpreter on the fused graph, rel {rel:e}");
            }
        }
    }
}

/// An f16 feed-forward block of odd sizes: an RMS norm of x `[rows, h]` (a gain), a SwiGLU of
/// width `i`, the down projection back to `h`.
#[cfg(feature = "gpu")]
fn norm_ffn_f16(rows: usize, h: usize, i: usize) -> glufuse::Graph {
    let w = |name: &str, seed: u32, shape: String| {
        format!(
            r#"{{"name": "{name}", "op": "Weight", "init": {{"random": {{"seed": {seed}, "scale": 0.1}}}}, "type": {{"dtype": "f16", "shape": {shape}}}}}"#
        )
    };
    let text = format!(
        r#"{{"format": "glufuse.graph/1", "nodes": [
        {{"name": "x", "op": "Input", "type": {{"dtype": "f16", "shape": [{rows}, {h}]}}}},
        {{"name": "sq", "op": "Mul", "inputs": ["x", "x"]}},
        {{"name": "ms", "op": "ReduceMean", "axes": [-1], "keepdims": true, "inputs": ["sq"]}},
        {{"name": "eps", "op": "Constant", "value": [1e-6], "type": {{"dtype": "f16", "shape": []}}}},
        {{"name": "mse", "op": "Add", "inputs": ["ms", "eps"]}},
        {{"name": "rms", "op": "Sqrt", "inputs": ["mse"]}},
        {{"name": "hn", "op": "Div", "inputs": ["x", "rms"]}},
        {gain},
        {{"name": "xn", "op": "Mul", "inputs": ["hn", "gain"]}},
        {wg}, {wu}, {wd},
        {{"name": "g", "op": "MatMul", "inputs": ["xn", "wg"]}},
        {{"name": "u", "op": "MatMul", "inputs": ["xn", "wu"]}},
        {{"name": "sg", "op": "Sigmoid", "inputs": ["g"]}},
        {{"name": "a", "op": "Mul", "inputs": ["g", "sg"]}},
        {{"name": "m", "op": "Mul", "inputs": ["a", "u"]}},
        {{"name": "d", "op": "MatMul", "inputs": ["m", "wd"]}}
        ], "outputs": ["d"]}}"#,
        gain = w("gain", 1, format!("[{h}]")),
        wg = w("wg", 2, format!("[{h}, {i}]")),
        wu = w("wu", 3, format!("[{h}, {i}]")),
        wd = w("wd", 4, format!("[{i}, {h}]")),
    );
    glufuse::json::from_str(&text).unwrap()
}

/// `y = x·w` then an RMS norm of y: the norm becomes a row program, y's one reader.
#[cfg(feature = "gpu")]
fn proj_then_norm_f16(rows: usize, k: usize, n: usize) -> glufuse::Graph {
    let text = format!(
        r#"{{"format": "glufuse.graph/1", "nodes": [
        {{"name": "x", "op": "Input", "type": {{"dtype": "f16", "shape": [{rows}, {k}]}}}},
        {{"name": "w", "op": "Weight", "init": {{"random": {{"seed": 5, "scale": 0.1}}}}, "type": {{"dtype": "f16", "shape": [{k}, {n}]}}}},
        {{"name": "y", "op": "MatMul", "inputs": ["x", "w"]}},
        {{"name": "sq", "op": "Mul", "inputs": ["y", "y"]}},
        {{"name": "ms", "op": "ReduceMean", "axes": [-1], "keepdims": true, "inputs": ["sq"]}},
        {{"name": "eps", "op": "Constant", "value": [1e-6], "type": {{"dtype": "f16", "shape": []}}}},
        {{"name": "mse", "op": "Add", "inputs": ["ms", "eps"]}},
        {{"name": "rms", "op": "Sqrt", "inputs": ["mse"]}},
        {{"name": "out", "op": "Div", "inputs": ["y", "rms"]}}
        ], "outputs": ["out"]}}"#
    );
    glufuse::json::from_str(&text).unwrap()
}

/// A plain projection whose one reader is a row program, its tiles the few 32×32 ones, is
/// split in two parts of k that the program adds up where it reads them
/// ([`glufuse::codegen::proj::coop::reader_adds_parts`]): no split-sum kernel, and the
/// output matches the interpreter, at partial row and column tiles and a partial last k
/// step; with y also a graph output the projection stays whole. The GEMMs are emulated.
#[cfg(feature = "gpu")]
#[test]
fn a_projection_split_for_the_row_program_reading_it_matches_the_interpreter() {
    let Some(gpu) = common::gpu() else { return };
    let Some(t) = common::emulated_coop(&gpu) else { return };
    let b = glufuse::shape::Bindings::default();
    for (rows, k, n) in [(40, 256, 96), (33, 232, 40)] {
        let at = format!("{rows} rows, k {k}, n {n}");
        let original = proj_then_norm_f16(rows, k, n);
        let inputs = interp::seeded_inputs(&original, &b, 11).unwrap();
        let want = interp::run(&original, &inputs).unwrap();
        let mut g = original.clone();
        PassManager::standard().run(&mut g).unwrap();
        let mut kept = g.clone();
        kept.add_output(glufuse::ir::Value::of(kept.find("y").unwrap()), None);
        for (graph, split) in [(&g, true), (&kept, false)] {
            let exe = Executable::with_target(&gpu, graph, &b, &t).unwrap_or_else(|e| panic!("{at}: {e}"));
            let kinds: Vec<String> = exe.kernels().iter().map(|k| k.source().kind.to_string()).collect();
            let reasons: Vec<String> =
                exe.kernels().iter().filter_map(|k| k.source().choice.as_ref().map(|c| c.to_string())).collect();
            let by_reader = reasons.iter().any(|r| r.contains("split-k 2") && r.contains("adds the parts up"));
            assert_eq!(by_reader, split, "{at}, split {split}: {reasons:?}");
            assert!(!kinds.iter().any(|k| k.contains("split-sum")), "{at}: {kinds:?}");
            let got = exe.run(&inputs).unwrap_or_else(|e| panic!("{at}: {e}"));
            let (_, rel) = glufuse::interp::compare(&got[0], &want[0]);
            assert!(rel <= glufuse::interp::check_tolerance(&original), "{at}, split {split}: rel {rel:e}");
        }
    }
}

/// Packed f16 activations at sizes that fill no tile (rows, k and columns all partial): the
/// norm's output and the gated unit's are packed (and the down projection's, the graph's
/// output), the outputs match the interpreter and are bit for bit those of the same graph
/// with both activations kept f32 (graph outputs too). The cooperative GEMMs are emulated.
#[cfg(feature = "gpu")]
#[test]
fn packed_activations_fill_partial_tiles() {
    use glufuse::codegen::packed_activation;
    use glufuse::ir::Value;
    let Some(gpu) = common::gpu() else { return };
    let Some(t) = common::emulated_coop(&gpu) else { return };
    let b = glufuse::shape::Bindings::default();
    let bits = |x: &glufuse::ir::Tensor| x.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    for (rows, h, i) in [(20, 104, 40), (33, 56, 24), (40, 64, 96)] {
        let at = format!("{rows} rows, h {h}, i {i}");
        let original = norm_ffn_f16(rows, h, i);
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap();
        assert_eq!(fused.summary().fused, 1, "{at}: the SwiGLU fused");
        let packed: Vec<Value> =
            fused.g.node_indices().map(Value::of).filter(|&v| packed_activation(&fused, v, &b, &t).unwrap()).collect();
        assert_eq!(packed.len(), 3, "{at}: the norm's output, the gated unit's and the graph's");
        assert_eq!(packed.iter().filter(|v| fused.is_output(**v)).count(), 1, "{at}: the graph's output");
        let inputs = interp::seeded_inputs(&original, &b, 11).unwrap();
        let want = interp::run(&original, &inputs).unwrap();
        let got = Executable::with_target(&gpu, &fused, &b, &t).unwrap().run(&inputs).unwrap();
        let (_, rel) = glufuse::interp::compare(&got[0], &want[0]);
        assert!(rel <= glufuse::interp::check_tolerance(&original), "{at}: rel {rel:e}");
        let mut kept = fused.clone();
        for &v in packed.iter().filter(|v| !fused.is_output(**v)) {
            kept.add_output(v, None);
        }
        let plain = Executable::with_target(&gpu, &kept, &b, &t).unwrap().run(&inputs).unwrap();
        assert_eq!(bits(&got[0]), bits(&plain[0]), "{at}: packed against f32");
    }
}

/// An f16 graph output that no kernel reads, written by an unsplit cooperative GEMM or a row
/// program, is stored as packed f16 ([`glufuse::codegen::packed_activation`]) and read back
/// bit for bit as the same value kept f32 (read by another node too) reads back after the
/// host's rounding: ties to even, overflow to infinity, subnormals, signed zeros. A row
/// program's output packs only where its rows are of even length. Both ways of packing:
/// rounded on the bits, and the device's own conversion where the runtime found that it
/// rounds so (`Gpu::pack_f16_rounds`). The GEMMs are emulated.
#[cfg(feature = "gpu")]
#[test]
fn graph_outputs_stored_as_packed_f16_read_back_as_the_host_rounds() {
    let Some(gpu) = common::gpu() else { return };
    let Some(t) = common::emulated_coop(&gpu) else { return };
    eprintln!("{}: the device's f16 packing rounds as the host's: {}", gpu.describe(), gpu.pack_f16_rounds());
    for rounds in [false, true].into_iter().filter(|&r| !r || gpu.pack_f16_rounds()) {
        packed_graph_outputs(&gpu, &glufuse::codegen::Target { pack_f16_rounds: rounds, ..t.clone() });
    }
}

/// [`graph_outputs_stored_as_packed_f16_read_back_as_the_host_rounds`] under target `t`.
#[cfg(feature = "gpu")]
fn packed_graph_outputs(gpu: &glufuse::runtime::Gpu, t: &glufuse::codegen::Target) {
    use glufuse::ir::{Tensor, Value};
    let t = t.clone();
    let exact = if t.pack_f16_rounds { "the device's conversion" } else { "rounded on the bits" };
    let b = glufuse::shape::Bindings::default();
    let bits = |x: &Tensor| x.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    // y = x·w over 24 rows, k 16, 32 columns whose scales run from 1e-8 to 1e4: sums that
    // are f16 subnormals or round to 0, normal ones, and ones past 65504.
    let (rows, k, n) = (24usize, 16usize, 32usize);
    let scales = [1e-8f32, 3e-7, 2e-5, 1e-3, 0.3, 7.0, 900.0, 1e4];
    let w: Vec<String> = (0..k * n)
        .map(|e| {
            let (kk, j) = (e / n, e % n);
            let v = scales[j % scales.len()] * (((kk * 7 + j * 3) % 11) as f32 - 5.0) / 4.0;
            format!("{}", half::f16::from_f32(v).to_f32())
        })
        .collect();
    // A graph of input x `[rows, cols]` and `nodes` (JSON, one of them "y"), after the
    // passes, y its output; with `reader`, y also read by another node (then kept f32 and
    // rounded by the host).
    let graph = |cols: usize, nodes: &str, reader: bool| -> glufuse::Graph {
        let (neg, outs) = if reader {
            (r#", {"name": "z", "op": "Neg", "inputs": ["y"]}"#, r#"["y", "z"]"#)
        } else {
            ("", r#"["y"]"#)
        };
        let text = format!(
            r#"{{"format": "glufuse.graph/1", "nodes": [
            {{"name": "x", "op": "Input", "type": {{"dtype": "f16", "shape": [{rows}, {cols}]}}}},
            {nodes}{neg}], "outputs": {outs}}}"#
        );
        let mut g: glufuse::Graph = glufuse::json::from_str(&text).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        g
    };
    let matmul = |reader: bool| {
        let nodes = format!(
            r#"{{"name": "w", "op": "Weight", "type": {{"dtype": "f16", "shape": [{k}, {n}]}}, "init": {{"data": [{}]}}}},
            {{"name": "y", "op": "MatMul", "inputs": ["x", "w"]}}"#,
            w.join(", ")
        );
        graph(k, &nodes, reader)
    };
    let xs: Vec<f32> = (0..rows * k).map(|e| (((e * 5) % 13) as f32 - 6.0) * ((e % 3) as f32 + 1.0) / 2.0).collect();
    let inputs: std::collections::HashMap<String, Tensor> =
        [("x".to_string(), Tensor::f16(vec![rows, k], xs).unwrap())].into();
    let packed_y = |g: &glufuse::Graph, exe: &Executable| {
        let y: Value = g.outputs[0];
        exe.kernels().iter().any(|kr| kr.source().bindings.iter().any(|bd| bd.value == y && bd.write && bd.packed_f16))
    };
    let (g, kept) = (matmul(false), matmul(true));
    let (exe, plain) =
        (Executable::with_target(gpu, &g, &b, &t).unwrap(), Executable::with_target(gpu, &kept, &b, &t).unwrap());
    assert!(packed_y(&g, &exe) && !packed_y(&kept, &plain), "{exact}: y packed only where no node reads it");
    let code = exe.kernels().iter().map(|k| k.source().wgsl.clone()).collect::<String>();
    assert_eq!(code.contains("pack_f16_("), !t.pack_f16_rounds, "{exact}");
    let (got, want) = (exe.run(&inputs).unwrap(), plain.run(&inputs).unwrap());
    assert_eq!(bits(&got[0]), bits(&want[0]), "{exact}: packed against the host's rounding");
    let y = got[0].as_f32().unwrap();
    assert!(y.iter().any(|v| v.is_infinite()), "some sums past 65504");
    assert!(y.iter().any(|&v| v != 0.0 && v.abs() < 6.1e-5), "some f16 subnormals");
    assert!(y.iter().any(|&v| v.abs() > 1.0 && v.is_finite()), "some normal values");
    // A row program's output: packed where its rows are of even length.
    for (h, even) in [(64usize, true), (63, false)] {
        let norm = |reader: bool| {
            let nodes = r#"{"name": "sq", "op": "Mul", "inputs": ["x", "x"]},
                {"name": "ms", "op": "ReduceMean", "axes": [-1], "keepdims": true, "inputs": ["sq"]},
                {"name": "y", "op": "Div", "inputs": ["x", "ms"]}"#;
            graph(h, nodes, reader)
        };
        let (g, kept) = (norm(false), norm(true));
        let inputs = interp::seeded_inputs(&g, &b, 5).unwrap();
        let (exe, plain) =
            (Executable::with_target(gpu, &g, &b, &t).unwrap(), Executable::with_target(gpu, &kept, &b, &t).unwrap());
        assert_eq!(packed_y(&g, &exe), even, "rows of {h}");
        assert!(!packed_y(&kept, &plain), "rows of {h}, read by another node");
        let (got, want) = (exe.run(&inputs).unwrap(), plain.run(&inputs).unwrap());
        assert_eq!(bits(&got[0]), bits(&want[0]), "{exact}, rows of {h}: packed against the host's rounding");
    }
}
