//! ONNX models as PyTorch exports them (tests/data/onnx, copied from the shared set with their
//! onnxruntime references): each loads, fuses as many FFNs as it has, and runs on the GPU,
//! fused and unfused, matching onnxruntime. Hostile files fail cleanly.

mod common;

use glufuse::files::{load_graph, read_npy};
use glufuse::passes::{fusion_report, PassManager};
use glufuse::tensor::Tensor;
use glufuse::Graph;
use std::collections::HashMap;
use std::path::PathBuf;

fn data(f: &str) -> PathBuf {
    common::root().join("tests/data/onnx").join(f)
}

/// Gated FFNs in each model (from tests/data/onnx/README.md).
const MODELS: &[(&str, usize)] = &[
    ("llama_mlp_dynamo", 1),
    ("llama_mlp_ts", 1),
    ("phi3_mlp_dynamo", 1),
    ("gemma_mlp_dynamo", 1),
    ("glu_gelu_erf_dynamo", 1),
    ("glu_silu_bias_dynamo", 1),
    ("gpt2_mlp_ts", 0),
    ("llama_model_dynamo", 2),
];

#[test]
fn every_model_loads_and_fuses_as_its_readme_says() {
    for (m, want) in MODELS {
        let mut g = load_graph(&data(&format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{m}: {e}"));
        let mut pm = PassManager::standard();
        pm.verify_each = true;
        let runs = pm.run(&mut g).unwrap();
        let rep = fusion_report(&runs).unwrap();
        assert_eq!(rep.fused, *want, "{m}\n{}", rep.to_text(false));
        assert_eq!(rep.rejected, 0, "{m}\n{}", rep.to_text(false));
    }
}

#[test]
fn whole_llama_model_loads_fuses_and_dumps() {
    let original = load_graph(&data("llama_model_dynamo.onnx")).unwrap();
    assert_eq!(original.summary().opaque, 0, "attention, norms and RoPE are modelled");
    let mut g = original.clone();
    let runs = PassManager::standard().run(&mut g).unwrap();
    let rep = fusion_report(&runs).unwrap();
    insta::assert_snapshot!("onnx_llama_model_report", rep.to_text(false));
    for f in [glufuse::dump::Format::Text, glufuse::dump::Format::Dot, glufuse::dump::Format::Json] {
        assert!(!glufuse::dump::render(&g, f).unwrap().is_empty());
    }
    // JSON of the fused model reads back to the same graph.
    let j = glufuse::json::to_string(&g).unwrap();
    assert_eq!(glufuse::json::to_string(&glufuse::json::from_str(&j).unwrap()).unwrap(), j);
    // It runs, fused and not, as onnxruntime does.
    let ids_ty = original.node(original.find("input_ids").unwrap()).outputs[0].clone();
    let ids = read_npy(&data("ref/llama_model_dynamo.input_ids.npy"), &ids_ty).unwrap();
    let want = read_npy(&data("ref/llama_model_dynamo.out.npy"), original.ty(original.outputs[0])).unwrap();
    let inputs: HashMap<_, _> = [("input_ids".to_string(), ids)].into_iter().collect();
    for graph in [&original, &g] {
        let got = glufuse::interp::run(graph, &inputs).unwrap();
        let (_, rel) = glufuse::interp::compare(&got[0], &want);
        assert!(rel < 1e-4, "rel {rel:e}");
    }
    // Without its input, a clear error naming it.
    let e = glufuse::interp::run(&g, &HashMap::new()).unwrap_err().to_string();
    assert_eq!(e, "node 'input_ids': no value was given for this graph input");
}

#[test]
fn mlp_models_match_onnxruntime_on_cpu_and_gpu() {
    #[cfg(feature = "gpu")]
    let gpu = common::gpu();
    for (m, _) in MODELS.iter().filter(|(m, _)| m.contains("mlp")) {
        let original = load_graph(&data(&format!("{m}.onnx"))).unwrap();
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap();
        let xn = original.input_nodes()[0];
        let x = read_npy(&data(&format!("ref/{m}.x.npy")), &original.node(xn).outputs[0]).unwrap();
        let out_ty = original.ty(original.outputs[0]).clone();
        let want = read_npy(&data(&format!("ref/{m}.out.npy")), &out_ty).unwrap();
        let inputs: HashMap<_, _> = [(original.node(xn).name.clone(), x)].into_iter().collect();
        for (label, g) in [("unfused", &original), ("fused", &fused)] {
            let cpu = glufuse::interp::run(g, &inputs).unwrap();
            let (_, rel) = glufuse::interp::compare(&cpu[0], &want);
            assert!(rel < 1e-4, "{m} {label} interpreter vs onnxruntime: rel {rel:e}");
            #[cfg(feature = "gpu")]
            if let Some(gpu) = &gpu {
                let exe = glufuse::runtime::Executable::new(gpu, g, &Default::default()).unwrap();
                let out = exe.run(&inputs).unwrap();
                let (_, rel) = glufuse::interp::compare(&out[0], &want);
                assert!(rel < 1e-4, "{m} {label} GPU vs onnxruntime: rel {rel:e}");
            }
        }
    }
}

/// A `Constant` whose value is external data (as optimum writes a large model's rotary
/// frequencies) loads from the model's folder and computes what the same weights as an
/// initializer do.
#[test]
fn a_constant_in_external_data_loads() {
    let dir = common::root().join("tests/data/onnx_extra");
    let x = Tensor::new(vec![1, 4], vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let run = |f: &str| {
        let g = load_graph(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        glufuse::interp::run(&g, &HashMap::from([("x".to_string(), x.clone())])).unwrap().remove(0)
    };
    let want = run("external_ok.onnx");
    assert_eq!(want.as_f32().unwrap(), &[5.0, 6.25]);
    assert_eq!(run("external_constant.onnx").as_f32(), want.as_f32());
}

#[test]
fn external_data_and_typed_fields_load() {
    let dir = common::root().join("tests/data/onnx_extra");
    let want: Vec<f32> = (0..8).map(|i| i as f32 / 8.0).collect();
    for f in ["external_ok.onnx", "typed_fields.onnx"] {
        let g = load_graph(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        let w = g.find("w").unwrap();
        match &g.node(w).op {
            glufuse::ir::Op::Weight(glufuse::ir::WeightInit::Data(d)) => assert_eq!(d, &want, "{f}"),
            op => panic!("{f}: w is {op:?}"),
        }
    }
}

#[test]
fn hostile_files_fail_cleanly() {
    let dir = common::root().join("tests/bad_onnx");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    files.sort();
    assert!(files.len() >= 10);
    let mut msgs = String::new();
    for f in files {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_glufuse"))
            .args(["show", f.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).replace(dir.to_str().unwrap(), "tests/bad_onnx");
        assert_eq!(o.status.code(), Some(2), "{}: {err}", f.display());
        assert!(!err.contains("panicked"), "{err}");
        msgs.push_str(&err);
    }
    insta::assert_snapshot!("onnx_hostile_files", msgs);
}

#[test]
fn npy_of_wrong_dtype_or_shape_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let model = data("llama_mlp_dynamo.onnx");
    let f64_file = d.path().join("x64.npy");
    npyz::to_file_1d(&f64_file, vec![0.0f64; 512]).unwrap();
    let wrong_shape = d.path().join("xs.npy");
    glufuse::files::write_npy(&wrong_shape, &glufuse::tensor::Tensor::new(vec![2, 64], vec![0.0; 128]).unwrap())
        .unwrap();
    let garbage = d.path().join("g.npy");
    std::fs::write(&garbage, b"\x93NUMPY garbage").unwrap();
    for (f, needle) in [(&f64_file, "dtype '<f8'"), (&wrong_shape, "does not fit"), (&garbage, "not a valid .npy")] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_glufuse"))
            .args(["interp", model.to_str().unwrap(), "--input", &format!("x={}", f.display())])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(needle) && err.contains(f.file_name().unwrap().to_str().unwrap()), "{err}");
    }
}

#[test]
fn torchscript_chunk_shape_arithmetic_is_folded_and_fused() {
    let path = common::root().join("tests/data/onnx_extra/phi3_chunk_shape_arith.onnx");
    let original = load_graph(&path).unwrap();
    // Shape -> Gather -> Div -> Unsqueeze folded away: the Slices have constant bounds.
    let slices: Vec<_> =
        original.g.node_indices().filter(|&n| matches!(original.node(n).op, glufuse::ir::Op::Slice { .. })).collect();
    assert_eq!(slices.len(), 2);
    assert_eq!(original.summary().opaque, 0);
    let mut fused = original.clone();
    let runs = PassManager::standard().run(&mut fused).unwrap();
    let rep = fusion_report(&runs).unwrap();
    assert_eq!(rep.fused, 1, "{}", rep.to_text(false));
    assert!(matches!(&rep.candidates[0].outcome, glufuse::passes::fusion::Outcome::Fused { merged: true, .. }));
    assert!(common::rel_diff(&original, &fused, 2) < 1e-5);
}

#[test]
fn odd_dim_params_load_as_expressions_or_plain_symbols() {
    // "past + new" is an expression (the output declares it as "new + past": equal); "batch
    // size", "2*" and "(a" are no expressions and become sanitised symbols; a dim with
    // neither value nor parameter gets a symbol of its own.
    let g = load_graph(&common::root().join("tests/data/onnx_extra/odd_dim_params.onnx")).unwrap();
    let x = g.node(g.find("x").unwrap());
    assert_eq!(x.outputs[0].to_string(), "f32[batch_size,new + past,d_2_,x_d3,_a]");
    assert_eq!(x.outputs[0].shape[1], glufuse::ir::Dim::parse("past + new").unwrap());
    assert_eq!(g.output_name(0), "y");
}

/// Builders for models made in the tests, with the protobuf types the loader decodes.
mod build {
    use glufuse::onnx::proto::*;
    use prost::Message;

    pub fn f32_value(name: &str, dims: &[i64]) -> ValueInfoProto {
        let dim = dims
            .iter()
            .map(|&d| tensor_shape_proto::Dimension {
                value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                ..Default::default()
            })
            .collect();
        let t = type_proto::Tensor { elem_type: Some(1), shape: Some(TensorShapeProto { dim }) };
        ValueInfoProto {
            name: Some(name.into()),
            r#type: Some(TypeProto { value: Some(type_proto::Value::TensorType(t)), ..Default::default() }),
            ..Default::default()
        }
    }

    pub fn node(op: &str, name: &str, ins: &[&str], outs: &[&str]) -> NodeProto {
        NodeProto {
            op_type: Some(op.into()),
            name: Some(name.into()),
            input: ins.iter().map(|s| s.to_string()).collect(),
            output: outs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    pub fn model(nodes: Vec<NodeProto>, inputs: Vec<ValueInfoProto>, outputs: Vec<ValueInfoProto>) -> Vec<u8> {
        let graph = GraphProto { node: nodes, input: inputs, output: outputs, ..Default::default() };
        ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(18) }],
            graph: Some(graph),
            ..Default::default()
        }
        .encode_to_vec()
    }
}

#[test]
fn forty_thousand_nodes_of_one_name_load_in_linear_time_with_unique_names() {
    let n = 40_000;
    let names: Vec<String> = (0..=n).map(|i| format!("v{i}")).collect();
    let nodes = (0..n).map(|i| build::node("Relu", "same", &[&names[i]], &[&names[i + 1]])).collect();
    let bytes = build::model(nodes, vec![build::f32_value("v0", &[2])], vec![build::f32_value(&names[n], &[2])]);
    let t = std::time::Instant::now();
    let g = glufuse::onnx::load(std::path::Path::new("same.onnx"), &bytes).unwrap();
    // Each base name remembers the suffix it reached (this took minutes: every name tried
    // same_1, same_2, ... from the start).
    eprintln!("{n} nodes named 'same': loaded in {:?}", t.elapsed());
    assert_eq!(g.len(), n + 1);
    assert!(g.find("same").is_some() && g.find(&format!("same_{}", n - 1)).is_some());
}

#[test]
fn a_node_named_like_a_split_output_is_renamed_and_round_trips() {
    let nodes = vec![
        build::node("Split", "s", &["x", "sizes"], &["a", "b"]),
        build::node("Relu", "s:1", &["a"], &["c"]),
        build::node("Add", "add", &["c", "b"], &["y"]),
    ];
    let bytes = {
        use glufuse::onnx::proto::*;
        use prost::Message;
        let sizes = TensorProto {
            name: Some("sizes".into()),
            data_type: Some(7),
            dims: vec![2],
            int64_data: vec![2, 2],
            ..Default::default()
        };
        let mut m = ModelProto::decode(
            build::model(nodes, vec![build::f32_value("x", &[4])], vec![build::f32_value("y", &[2])]).as_slice(),
        )
        .unwrap();
        m.graph.as_mut().unwrap().initializer.push(sizes);
        m.encode_to_vec()
    };
    let g = glufuse::onnx::load(std::path::Path::new("split.onnx"), &bytes).unwrap();
    // The Relu is not 's:1', which is how the Split's second output is written.
    let relu = g.g.node_indices().find(|&n| g.node(n).op.name() == "Relu").unwrap();
    assert_ne!(g.node(relu).name, "s:1");
    let text = glufuse::json::to_string(&g).unwrap();
    let back = glufuse::json::from_str(&text).unwrap();
    assert_eq!(glufuse::json::to_string(&back).unwrap(), text);
    let x = glufuse::tensor::Tensor::new(vec![4], vec![-1.0, 2.0, 3.0, 4.0]).unwrap();
    let inputs: HashMap<_, _> = [("x".to_string(), x)].into();
    let (a, b) = (glufuse::interp::run(&g, &inputs).unwrap(), glufuse::interp::run(&back, &inputs).unwrap());
    assert_eq!(a, b);
    // relu([-1, 2]) + [3, 4]
    assert_eq!(a[0].as_f32().unwrap(), &[3.0, 6.0]);
}

#[test]
fn the_graph_budget_refuses_initializers_before_decoding_them() {
    use glufuse::ir::limits::{self, Budget};
    let small = Budget { max_graph_bytes: 1000, ..Budget::DEFAULT };
    let e = limits::with(small, || load_graph(&data("llama_mlp_ts.onnx"))).unwrap_err().to_string();
    assert!(e.contains("more than the per-graph budget of 1000 bytes (GLUFUSE_MAX_GRAPH_BYTES raises it)"), "{e}");
    let small = Budget { max_tensor_bytes: 1000, ..Budget::DEFAULT };
    let e = limits::with(small, || load_graph(&data("llama_mlp_ts.onnx"))).unwrap_err().to_string();
    assert!(e.contains("more than the per-tensor budget of 1000 bytes"), "{e}");
    // 4-bit initializers count too, at their packed size: this model's floats take 6016
    // bytes (the largest 1536), each of its three 4-bit weights 5632 packed (44 KiB as the f32 its
    // DequantizeLinear gives, which the per-tensor budget must hold).
    let q4 = common::root().join("tests/data/q4/bias_qdq_a32.onnx");
    let fits = Budget { max_graph_bytes: 24000, max_tensor_bytes: 48000, ..Budget::DEFAULT };
    if let Err(e) = limits::with(fits, || load_graph(&q4)) {
        panic!("{e}");
    }
    let small = Budget { max_graph_bytes: 10000, ..Budget::DEFAULT };
    let e = limits::with(small, || load_graph(&q4)).unwrap_err().to_string();
    assert!(e.contains("more than the per-graph budget of 9.8 KiB"), "{e}");
    let small = Budget { max_tensor_bytes: 4000, ..Budget::DEFAULT };
    let e = limits::with(small, || load_graph(&q4)).unwrap_err().to_string();
    assert!(
        e.contains("val_0_DQ_Q4")
            && e.contains("a 4-bit tensor of dims [64, 176] takes 5.5 KiB, more than the per-tensor budget"),
        "{e}"
    );
}

/// External data must be a regular file that stays inside the model's folder after symbolic
/// links are followed; a FIFO (which blocked the open), a directory, a link out of the folder
/// and a 16 GiB file past the per-tensor budget are refused, naming the external file.
#[cfg(unix)]
#[test]
fn external_data_is_a_regular_file_inside_the_models_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    let extra = common::root().join("tests/data/onnx_extra");
    let model = folder.join("m.onnx");
    std::fs::copy(extra.join("external_data_bin.onnx"), &model).unwrap();
    let data = folder.join("data.bin");
    let w: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let load = || load_graph(&model).map(|_| ()).map_err(|e| e.to_string());
    // A link to a file outside the folder.
    std::fs::write(tmp.path().join("secret.bin"), &w).unwrap();
    std::os::unix::fs::symlink("../secret.bin", &data).unwrap();
    let e = load().unwrap_err();
    assert!(e.contains("data.bin") && e.contains("outside the model's folder"), "{e}");
    // A link that stays inside loads.
    std::fs::remove_file(&data).unwrap();
    std::fs::write(folder.join("real.bin"), &w).unwrap();
    std::os::unix::fs::symlink("real.bin", &data).unwrap();
    load().unwrap();
    // A directory, a FIFO.
    std::fs::remove_file(&data).unwrap();
    std::fs::create_dir(&data).unwrap();
    let e = load().unwrap_err();
    assert!(e.contains("external data file") && e.contains("data.bin: cannot read: it is a directory"), "{e}");
    std::fs::remove_dir(&data).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&data).status().unwrap();
    assert!(made.success());
    let e = load().unwrap_err();
    assert!(e.contains("data.bin: cannot read: it is a FIFO (named pipe), not a regular file"), "{e}");
    // 16 GiB (sparse) for dims that need 16 GiB: the budget refuses it before anything is read.
    let big = folder.join("big.onnx");
    std::fs::copy(extra.join("external_16g.onnx"), &big).unwrap();
    std::fs::File::create(folder.join("big.bin")).unwrap().set_len(16 << 30).unwrap();
    let e = load_graph(&big).unwrap_err().to_string();
    assert!(e.contains("f32[65536, 65536] takes 16 GiB, more than the per-tensor budget of 8 GiB"), "{e}");
}

/// A `Constant` node too large to fold is held as a weight (its f32 values, moved), not as a
/// constant's f64 values: a large tensor is never widened or held twice.
#[test]
fn a_large_constant_is_held_as_a_weight() {
    use glufuse::onnx::proto::*;
    let value = TensorProto { data_type: Some(1), dims: vec![5000], float_data: vec![0.5; 5000], ..Default::default() };
    let attr = AttributeProto { name: Some("value".into()), t: Some(value), r#type: Some(4), ..Default::default() };
    let mut c = build::node("Constant", "table", &[], &["table"]);
    c.attribute.push(attr);
    let nodes = vec![c, build::node("Add", "add", &["x", "table"], &["y"])];
    let bytes = build::model(nodes, vec![build::f32_value("x", &[5000])], vec![build::f32_value("y", &[5000])]);
    let g = glufuse::onnx::load(std::path::Path::new("c.onnx"), &bytes).unwrap();
    match &g.node(g.find("table").unwrap()).op {
        glufuse::ir::Op::Weight(glufuse::ir::WeightInit::Data(d)) => assert_eq!(d.len(), 5000),
        op => panic!("the constant is held as {}", op.label()),
    }
}

/// Loads `tests/data/onnx_extra/{stem}.onnx` with the inputs and onnxruntime's outputs its
/// script saved beside it (`{stem}.INPUT.npy`, `{stem}.out.OUTPUT.npy` for each of `outs`, the
/// graph's outputs in order), runs it on the interpreter and, where there is an adapter, on
/// the GPU, unfused and after the standard passes, and checks every output with
/// `same(got, onnxruntime's, what)`. Returns the graph as loaded and after the passes.
fn matches_onnxruntime(stem: &str, outs: &[&str], same: impl Fn(&Tensor, &Tensor, &str)) -> (Graph, Graph) {
    let original = load_graph(&common::root().join(format!("tests/data/onnx_extra/{stem}.onnx"))).unwrap();
    graph_matches_onnxruntime(stem, original, outs, same)
}

/// [`matches_onnxruntime`] of every output, under the graph's own names for them.
fn outputs_match_onnxruntime(stem: &str, same: impl Fn(&Tensor, &Tensor, &str)) -> (Graph, Graph) {
    let original = load_graph(&common::root().join(format!("tests/data/onnx_extra/{stem}.onnx"))).unwrap();
    let names: Vec<String> = (0..original.outputs.len()).map(|k| original.output_name(k)).collect();
    let outs: Vec<&str> = names.iter().map(String::as_str).collect();
    graph_matches_onnxruntime(stem, original, &outs, same)
}

/// [`matches_onnxruntime`] of the graph `original`, loaded from `{stem}.onnx`.
fn graph_matches_onnxruntime(
    stem: &str,
    original: Graph,
    outs: &[&str],
    same: impl Fn(&Tensor, &Tensor, &str),
) -> (Graph, Graph) {
    let dir = common::root().join("tests/data/onnx_extra");
    let mut fused = original.clone();
    PassManager::standard().run(&mut fused).unwrap();
    let mut inputs = HashMap::new();
    for n in original.input_nodes() {
        let name = original.node(n).name.clone();
        let t = read_npy(&dir.join(format!("{stem}.{name}.npy")), &original.node(n).outputs[0]).unwrap();
        inputs.insert(name, t);
    }
    // Each output read as the file holds it: a dim that is an expression of the inputs'
    // symbols (a present cache's `past + new`) becomes a free symbol here, and the
    // comparisons check the shapes.
    let want: Vec<Tensor> = outs
        .iter()
        .enumerate()
        .map(|(k, o)| {
            let mut ty = original.ty(original.outputs[k]).clone();
            for (i, d) in ty.shape.iter_mut().enumerate() {
                if d.fixed().is_none() {
                    *d = glufuse::ir::Dim::Sym(format!("out{k}_{i}"));
                }
            }
            read_npy(&dir.join(format!("{stem}.out.{o}.npy")), &ty).unwrap()
        })
        .collect();
    // The passes keep the graph's outputs under the model's names.
    for k in 0..outs.len() {
        assert_eq!(fused.output_name(k), original.output_name(k), "{stem}: output {k} renamed by the passes");
    }
    #[cfg(feature = "gpu")]
    let gpu = common::gpu();
    for (label, g) in [("unfused", &original), ("fused", &fused)] {
        let cpu = glufuse::interp::run(g, &inputs).unwrap();
        for (k, o) in outs.iter().enumerate() {
            same(&cpu[k], &want[k], &format!("{stem} {o}, {label}, interpreter"));
        }
        #[cfg(feature = "gpu")]
        if let Some(gpu) = &gpu {
            let mut s = glufuse::runtime::Session::new(gpu, g.clone()).unwrap();
            let got = s.run(&inputs).unwrap();
            for (k, o) in outs.iter().enumerate() {
                same(&got[k], &want[k], &format!("{stem} {o}, {label}, GPU"));
            }
        }
    }
    (original, fused)
}

/// The stems of the seeded random graphs `{prefix}NN` of `tests/data/onnx_extra`
/// (`make_random_graphs.py`: `random_`, `random_int_`, `random_attn_`), in order.
fn random_stems(prefix: &str) -> Vec<String> {
    let dir = common::root().join("tests/data/onnx_extra");
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".onnx").map(str::to_string))
        .filter(|s| s.strip_prefix(prefix).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
        .collect();
    stems.sort();
    stems
}

/// Seeded random graphs of the ops exporters emit around transformer blocks
/// (`tests/data/onnx_extra/make_random_graphs.py`: projections, gated FFNs, broadcasting,
/// softmax and log-softmax, reductions, layer norms, views, slices, gathers, where, cumulative
/// sums, 1-D matrix products) give onnxruntime's outputs within 1e-4 of the largest value, on
/// the interpreter and the GPU, unfused and fused, under the model's output names. A sweep of
/// 300 such graphs found `LogSoftmax` and 1-D `MatMul` operands refused, and outputs renamed
/// by the passes (a fused graph's `--output NAME=` then failed).
#[test]
fn random_graphs_match_onnxruntime() {
    let stems = random_stems("random_");
    assert_eq!(stems.len(), 40);
    // (What the set exercises, counted where it reaches an output: gated FFNs fused, and the
    // lowerings of `LogSoftmax` and of 1-D `MatMul` operands.)
    let (mut fused_ffns, mut log_softmax, mut one_d) = (0, 0, 0);
    for stem in &stems {
        let (g, f) = outputs_match_onnxruntime(stem, |got, want, what| close(got, want, what, 1e-4));
        fused_ffns += f.summary().fused;
        let named =
            |end: &[&str]| g.topo_order().unwrap().iter().any(|&n| end.iter().any(|e| g.node(n).name.ends_with(e)));
        log_softmax += usize::from(named(&[".log"]));
        one_d += usize::from(named(&[".row", ".column"]));
    }
    assert!(
        fused_ffns >= 5 && log_softmax >= 2 && one_d >= 3,
        "{fused_ffns} gated FFNs fused, {log_softmax} graphs with log-softmaxes, {one_d} with 1-D products"
    );
}

/// Seeded random integer graphs (`make_random_graphs.py --ints`: int64 values, some near the
/// 32-bit limits, through the integer ops of masks and shape arithmetic: division and both
/// `Mod`s by either sign, comparisons and logic cast back, reductions, arg-max/min with either
/// tie rule, gathers, slices, round trips through floats) give onnxruntime's outputs exactly,
/// on the interpreter and the GPU, unfused and fused.
#[test]
fn random_integer_graphs_match_onnxruntime() {
    let stems = random_stems("random_int_");
    assert_eq!(stems.len(), 35);
    for stem in &stems {
        outputs_match_onnxruntime(stem, same_bits);
    }
}

/// Seeded random attention blocks (`make_random_graphs.py --attention`: grouped-query heads,
/// the scale as a product or a quotient, causal masks added or selected, padding masks from an
/// input, soft caps) give onnxruntime's outputs within 1e-4 of the largest value, on the
/// interpreter and the GPU, unfused and fused; the attention fusion takes every one of more
/// than one token.
#[test]
fn random_attention_blocks_match_onnxruntime() {
    let stems = random_stems("random_attn_");
    assert_eq!(stems.len(), 16);
    let mut fused = 0;
    for stem in &stems {
        let (g, f) = outputs_match_onnxruntime(stem, |got, want, what| close(got, want, what, 1e-4));
        let tokens = g.ty(g.outputs[0]).shape[1].fixed().unwrap();
        let attentions =
            f.topo_order().unwrap().iter().filter(|&&n| matches!(f.node(n).op, glufuse::ir::Op::Attention(_))).count();
        assert!(tokens == 1 || attentions == 1, "{stem}: {attentions} attentions fused");
        fused += attentions;
    }
    assert!(fused >= 12, "{fused} of 16 attentions fused");
}

/// Random attention blocks whose queries and keys take a rotary embedding (and the keys' projection
/// a bias, in most), as eager exports spell them (`make_random_graphs.py --attention --rope`):
/// onnxruntime's outputs within 1e-4, and where the query heads share KV heads, the keys'
/// program written once per KV head, the attention reading it through the expand.
#[test]
fn random_rope_attention_blocks_match_onnxruntime() {
    use glufuse::ir::{Op, Step};
    let stems = random_stems("random_rope_");
    assert_eq!(stems.len(), 24);
    let mut narrowed = 0;
    for stem in &stems {
        let (_, f) = outputs_match_onnxruntime(stem, |got, want, what| close(got, want, what, 1e-4));
        for n in f.topo_order().unwrap() {
            let Op::Attention(a) = &f.node(n).op else { continue };
            let from_program = a.kt.first().is_some_and(|s| match s {
                Step::Input(i) => matches!(f.node(f.inputs(n)[*i].node).op, Op::Elementwise(_)),
                _ => false,
            });
            if from_program && a.kt.iter().any(|s| matches!(s, Step::Expand { .. })) {
                narrowed += 1;
            }
        }
    }
    assert!(narrowed >= 8, "{narrowed} attentions read grouped keys through the expand");
}

/// Two tensors are the same, floats bit for bit, NaNs where the other has NaNs.
fn same_bits(got: &Tensor, want: &Tensor, what: &str) {
    use glufuse::tensor::Data;
    match (got.data(), want.data()) {
        (Data::F32(a), Data::F32(b)) => {
            let ok = got.shape() == want.shape()
                && a.iter().zip(b).all(|(x, y)| (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits());
            assert!(ok, "{what}: {a:?} vs onnxruntime's {b:?}");
        }
        _ => assert_eq!(got, want, "{what}"),
    }
}

/// Two tensors of one shape within `tol` of the largest value, relative.
fn close(got: &Tensor, want: &Tensor, what: &str, tol: f64) {
    let (_, rel) = glufuse::interp::compare(got, want);
    assert!(got.shape() == want.shape() && rel <= tol, "{what}: {rel:e} relative to onnxruntime");
}

/// ONNX's `Mod` (integers with the divisor's sign; `fmod = 1`: the dividend's, of integers
/// and floats, exactly as C's fmod even far past 2^24 quotients) and `IsInf` (either sign, +
/// only, − only) on a symbolic length give onnxruntime's outputs, bit for bit, NaNs where it
/// gives them (`tests/data/onnx_extra/make_mod_isinf.py`).
#[test]
fn mod_and_isinf_match_onnxruntime() {
    let outs = ["mod_int", "fmod_int", "fmod_float", "inf", "pos_inf", "neg_inf"];
    matches_onnxruntime("mod_isinf", &outs, same_bits);
}

/// ONNX's `Tan`, `Asin`, `Acos`, `Atan`, `Sinh`, `Cosh`, `Asinh`, `Acosh` and `Atanh` (the
/// domains' edges, NaN outside them, ±∞ where the functions are, values far out without
/// overflow on the way; f16 too) give onnxruntime's outputs within 1e-5 of the largest value
/// (f16 outputs 1e-3), NaNs and infinities where it gives them (`tests/data/onnx_extra/make_trig.py`).
#[test]
fn trigonometric_and_hyperbolic_ops_match_onnxruntime() {
    let outs = ["tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "sinh_half", "atan_half"];
    // (An f16 output within an f16 step: onnxruntime rounds its own way.)
    matches_onnxruntime("trig", &outs, |got, want, what| {
        close(got, want, what, if what.contains("half") { 1e-3 } else { 1e-5 })
    });
}

/// onnxruntime's contrib ops that its transformer optimizer writes into fused models
/// (`SkipLayerNormalization` with and without beta and bias, and its sum output;
/// `SkipSimplifiedLayerNormalization` and its sum; `FastGelu`, `BiasGelu`, `Gelu`,
/// `QuickGelu` with two alphas; `SimplifiedLayerNormalization`; a skip norm of f16) give
/// onnxruntime's outputs within 1e-5 of the largest value (f16 2e-3), on the interpreter and
/// the GPU, fused and unfused (`tests/data/onnx_extra/make_contrib.py`).
#[test]
fn onnxruntime_contrib_ops_match_onnxruntime() {
    let outs = [
        "sln",
        "sln_sum",
        "sln_plain",
        "ssln",
        "ssln_sum",
        "rms",
        "fast_gelu_bias",
        "fast_gelu",
        "bias_gelu",
        "gelu",
        "quick_gelu",
        "quick_gelu_1",
        "sln_half",
    ];
    matches_onnxruntime("contrib", &outs, |got, want, what| {
        close(got, want, what, if what.contains("half") { 2e-3 } else { 1e-5 })
    });
}

/// onnxruntime's `GroupQueryAttention` (onnxruntime-genai's attention): q, k and v packed
/// and apart; the rotary embedding in halves, interleaved and over part of each head; none,
/// with a soft cap, a scale and an added `attention_bias`; a prompt
/// without a past, three tokens after a past of 4 and a batch of two steps: the outputs and
/// the present keys and values give onnxruntime's within 1e-5 of the largest value, on the
/// interpreter and the GPU, fused and unfused (`tests/data/onnx_extra/make_gqa.py`); each
/// attention is one node after the passes.
#[test]
fn group_query_attention_matches_onnxruntime() {
    let (_, fused) = outputs_match_onnxruntime("gqa", |got, want, what| close(got, want, what, 1e-5));
    let attention = fused.g.node_indices().filter(|&n| matches!(fused.node(n).op, glufuse::ir::Op::Attention(_)));
    assert_eq!(attention.count(), 6);
}

/// onnxruntime's `RotaryEmbedding` (domain `com.microsoft`: onnxruntime-genai's DirectML
/// builds rotate q and k with it): 3-D inputs at positions per row, from one start,
/// interleaved, over part of each head, and a 4-D `[batch, heads, length, head]` input give
/// onnxruntime's outputs within 1e-5 of the largest value, on the interpreter and the GPU,
/// fused and unfused (`tests/data/onnx_extra/make_rotary_ms.py`).
#[test]
fn onnxruntime_rotary_embedding_matches_onnxruntime() {
    outputs_match_onnxruntime("rotary_ms", |got, want, what| close(got, want, what, 1e-5));
    // A scale of the positions and packed batching are refused, naming the node and what.
    use glufuse::onnx::proto::{AttributeProto, ModelProto};
    use prost::Message;
    let path = common::root().join("tests/data/onnx_extra/rotary_ms.onnx");
    let bytes = std::fs::read(&path).unwrap();
    for attr in [
        AttributeProto { name: Some("scale".into()), r#type: Some(1), f: Some(2.0), ..Default::default() },
        AttributeProto { name: Some("is_packed_batching".into()), r#type: Some(2), i: Some(1), ..Default::default() },
    ] {
        let mut m = ModelProto::decode(bytes.as_slice()).unwrap();
        let name = attr.name.clone().unwrap();
        m.graph.as_mut().unwrap().node[0].attribute.push(attr);
        let e = glufuse::onnx::load(&path, &m.encode_to_vec()).unwrap_err().to_string();
        let what = if name == "scale" { "scale of the positions" } else { "is_packed_batching" };
        assert!(e.contains("node 'rows'") && e.contains(what), "{name}: {e}");
    }
}

/// An `If` on a condition computed at run time whose branches are constants (as
/// onnxruntime-genai's LongRoPE builds pick their rotary tables) is a `Where` of them: the
/// then branch taken by one, the else branch by the other, both outputs of one, each as
/// onnxruntime gives it (`tests/data/onnx_extra/make_if_constants.py`); branches of two shapes
/// are refused (`tests/bad_onnx/if_constants_of_two_shapes.onnx`).
#[test]
fn if_of_constants_on_a_run_time_condition_matches_onnxruntime() {
    let (g, _) =
        matches_onnxruntime("if_constants", &["y0", "y1", "y2"], |got, want, what| close(got, want, what, 0.0));
    let wheres = g.g.node_indices().filter(|&n| matches!(g.node(n).op, glufuse::ir::Op::Where)).count();
    assert_eq!(wheres, 3);
}

/// Opset 11 (older exports on the Hub): the softmax family as opsets 11 and 12 define it (the
/// input viewed as 2-D at `axis`, default 1: Softmax along axis 1 of a rank-3 tensor and with
/// no axis, along the last axis; LogSoftmax and Hardmax along the last) and a tiny Llama the
/// TorchScript exporter wrote at opset 11 (attribute axes on Squeeze, Unsqueeze, Split and the
/// reductions) give onnxruntime's outputs, on the interpreter and the GPU, fused and unfused
/// (`tests/data/onnx_extra/make_legacy.py`); the Llama's gated FFNs fuse.
#[test]
fn opset_11_softmax_and_models_match_onnxruntime() {
    let outs = ["sm_axis1", "sm_default", "sm_last", "lsm_last", "hm_last"];
    matches_onnxruntime("legacy_softmax", &outs, |got, want, what| close(got, want, what, 1e-6));
    let (_, fused) = matches_onnxruntime("legacy_llama", &["logits"], |got, want, what| close(got, want, what, 1e-5));
    assert_eq!(fused.summary().fused, 2);
}

/// ONNX's `ReduceProd` (the last axis kept, multiplied with x after it: one program after the
/// passes; the first axis dropped; every axis; a symbolic length; int64, exact) gives
/// onnxruntime's outputs within 1e-5 of the largest value (`tests/data/onnx_extra/make_reduce_prod.py`).
#[test]
fn reduce_prod_matches_onnxruntime() {
    let (_, fused) = matches_onnxruntime("reduce_prod", &["scaled", "p_first", "p_all", "p_int"], |got, want, what| {
        close(got, want, what, 1e-5)
    });
    // The kept product and the multiplication are one program.
    let in_program = fused.topo_order().unwrap().into_iter().any(|n| match &fused.node(n).op {
        glufuse::ir::Op::Elementwise(p) => {
            p.steps.iter().any(|s| matches!(s, glufuse::ir::Step::Reduce { op: glufuse::ir::ReduceOp::Prod, .. }))
        }
        _ => false,
    });
    assert!(in_program, "no program computes a product");
}

/// ONNX's `Trilu` (upper and lower, diagonals 0, ±1 and 2, floats and int64, on symbolic
/// dims), lowered to ranges, a comparison and a `Where` (one program after the passes), gives
/// onnxruntime's outputs exactly (`tests/data/onnx_extra/make_trilu.py`).
#[test]
fn trilu_matches_onnxruntime() {
    let outs = ["triu_k1", "tril_km1", "tril_k2", "triu_int"];
    matches_onnxruntime("trilu", &outs, same_bits);
}

/// ONNX's `ArgMax` and `ArgMin` (lowered to a reduction of the indices where a lane's value is
/// its largest: first and last index, either axis and sign, kept and dropped dims, a symbolic
/// dim, ties, -0.0 beside 0.0, ±inf, NaN passed over and a lane of NaN only, int64 with the
/// most negative int32) and `ReduceMin` of int64 (the one's complement of the largest one's
/// complement) give onnxruntime's outputs exactly (`tests/data/onnx_extra/make_argmax.py`).
#[test]
fn argmax_and_argmin_match_onnxruntime() {
    let outs = [
        "max_rows",
        "max_rows_last",
        "max_cols",
        "max_cols_last",
        "min_rows",
        "min_rows_last",
        "max_3d",
        "max_int",
        "max_int_last",
        "min_int",
        "min_int_last",
        "rmin_int",
        "rmin_int_cols",
    ];
    matches_onnxruntime("argmax", &outs, same_bits);
}

/// ONNX's `TopK` (glufuse's `TopK`, one kernel a node: largest and smallest first, K from 1
/// to the whole axis, the last axis and earlier ones beside a symbolic dim, ties by index,
/// -0.0 beside 0.0, ±inf, NaN first among the largest and last among the smallest, int64 with
/// the most negative int32, f16, lanes of a symbolic size longer than a workgroup with K = 100)
/// gives onnxruntime's values and indices exactly (`tests/data/onnx_extra/make_topk.py`).
#[test]
fn topk_matches_onnxruntime() {
    let outs = [
        "top3",
        "top3_i",
        "all6",
        "all6_i",
        "low2",
        "low2_i",
        "low6",
        "low6_i",
        "mid",
        "mid_i",
        "first",
        "first_i",
        "int_top",
        "int_top_i",
        "int_low",
        "int_low_i",
        "half",
        "half_i",
        "long",
        "long_i",
        "long_low",
        "long_low_i",
    ];
    matches_onnxruntime("topk", &outs, same_bits);
}

/// ONNX's `OneHot` (lowered to a comparison of the indices with the positions along the new
/// dim and a `Where`: the last, first and a middle axis, negative indices counted from the
/// end, indices out of range giving the off value, a symbolic dim, int32 indices and depth,
/// f32 and int64 values, values computed from an input) and `Hardmax` (the first largest of a
/// lane one-hot: either axis, ties, -0.0 beside 0.0, -inf, a lane with NaN all zeros, f16) give
/// onnxruntime's outputs exactly (its `Hardmax` of a lane with NaN is all zeros along the last
/// axis, and along another 1 or 0 by where the NaN falls, so that case is tested on the last) (`tests/data/onnx_extra/make_one_hot.py`).
#[test]
fn one_hot_and_hardmax_match_onnxruntime() {
    let outs = ["last", "first", "middle", "int32", "computed", "hard_last", "hard_first", "hard_half"];
    matches_onnxruntime("one_hot", &outs, same_bits);
}

/// Opset 23's `RotaryEmbedding` (halves and interleaved, the whole head and its first 4, 4-D
/// and 3-D inputs, caches read at `position_ids`), `RMSNormalization` (the last axis and from
/// axis 1, f32 and f16 with an f32 stash) and `Attention` (grouped-query heads, a boolean mask
/// hiding a row everywhere, the default scale; a float mask, a scale and a soft cap; no mask;
/// causal, with a boolean mask besides; 3-D inputs after past keys and values, causal, and
/// the present keys and values),
/// lowered to existing ops, give onnxruntime's outputs within 1e-6 of the largest (f16: 2e-3)
/// (`tests/data/onnx_extra/make_rope_rms.py`).
#[test]
fn opset_23_rotary_embedding_rms_normalization_and_attention_match_onnxruntime() {
    let outs = [
        "rope_half",
        "rope_inter",
        "rope_part_pos",
        "rope_3d",
        "rms_last",
        "rms_axis1",
        "rms_f16",
        "attn_gqa_bool",
        "attn_cap_float",
        "attn_nomask",
        "attn_causal",
        "attn3_y",
        "attn3_pk",
        "attn3_pv",
    ];
    matches_onnxruntime("rope_rms", &outs, |got, want, what| {
        close(got, want, what, if what.starts_with("rope_rms rms_f16") { 2e-3 } else { 1e-6 })
    });
}

/// ONNX's `Einsum` (lowered to sums, transposes, broadcast products and batched `MatMul`s: a
/// matrix product over a symbolic row count, batched ones, an attention's scores and values,
/// an outer product, an ellipsis broadcast between operands, a transpose, a row sum, a full
/// contraction to a scalar, the implicit output, three operands, two labels summed at once, an
/// elementwise product, f16; and 24 random equations of two or three operands) gives
/// onnxruntime's outputs within 1e-5 of the largest (f16: 2e-3), and ellipses of different
/// ranks NumPy's (`tests/data/onnx_extra/make_einsum.py`).
#[test]
fn einsum_matches_onnxruntime() {
    let outs = [
        "matmul",
        "batched",
        "scores",
        "values",
        "outer",
        "ellipsis",
        "transpose",
        "rowsum",
        "dot",
        "implicit",
        "bilinear",
        "two_summed",
        "elementwise",
        "half",
    ]
    .map(String::from)
    .into_iter()
    .chain((0..24).map(|r| format!("random{r}")))
    .collect::<Vec<_>>();
    let outs: Vec<&str> = outs.iter().map(String::as_str).collect();
    matches_onnxruntime("einsum", &outs, |got, want, what| {
        close(got, want, what, if what.starts_with("einsum half") { 2e-3 } else { 1e-5 })
    });
    // Ellipses of different ranks, broadcast right-aligned as the specification has it:
    // onnxruntime refuses the graph, so the expected outputs are NumPy's.
    matches_onnxruntime("einsum_ranks", &["ranks", "ranks_implicit"], |got, want, what| close(got, want, what, 1e-5));
}

/// ONNX's `GatherElements` (lowered to a `GatherND` of each output position's coordinates, the
/// axis's from the indices: axis 0 with negative indices, the last axis over a symbolic dim,
/// a middle axis given as -2, indices narrower than the data, int64 and f16 data, int32
/// indices) gives onnxruntime's outputs exactly (`tests/data/onnx_extra/make_gather_elements.py`).
#[test]
fn gather_elements_matches_onnxruntime() {
    let outs = ["rows", "last", "middle", "int", "half", "int32_indices"];
    matches_onnxruntime("gather_elements", &outs, same_bits);
}

/// ONNX's parametric activations (`LeakyRelu`, `PRelu`, `Elu`, `Selu`, `Celu`,
/// `ThresholdedRelu`, `HardSigmoid`, `HardSwish`, `Softsign`, `Mish`) and the reductions of a
/// sum or a maximum (`ReduceSumSquare`, `ReduceL1`, `ReduceL2`, `ReduceLogSum`,
/// `ReduceLogSumExp`: axes kept and dropped, all of them, `noop_with_empty_axes`, int64 sums,
/// large values under the log of a sum of exponentials), lowered to comparisons, `Where`s,
/// exponentials and sums, give onnxruntime's outputs within 1e-5 of the largest (integers
/// exactly) (`tests/data/onnx_extra/make_activations.py`).
#[test]
fn activations_and_reductions_match_onnxruntime() {
    let outs = [
        "leaky",
        "leaky_alpha",
        "prelu",
        "elu",
        "selu",
        "celu",
        "thresholded",
        "hard_sigmoid",
        "hard_swish",
        "softsign",
        "mish",
        "sum_square",
        "l1",
        "l2",
        "l2_all",
        "log_sum",
        "log_sum_exp",
        "log_sum_exp_keep",
        "l2_noop",
        "sum_square_int",
        "l1_int",
    ];
    matches_onnxruntime("activations", &outs, |got, want, what| {
        if got.dtype() == glufuse::ir::DType::I64 {
            same_bits(got, want, what)
        } else {
            close(got, want, what, 1e-5)
        }
    });
}

/// ONNX's `Pad` in constant mode (lowered to broadcasts of the value concatenated before and
/// after each padded axis: every axis, one through `axes`, a symbolic dim, the default zero
/// and a given value, f32 and int64) and in edge, reflect and wrap modes (gathers at clamped,
/// reflected and wrapped positions: a symbolic dim, pads up to the size, int64) gives
/// onnxruntime's outputs exactly (`tests/data/onnx_extra/make_pad.py`).
#[test]
fn pad_matches_onnxruntime() {
    let outs = ["all_zero", "all_value", "last_axis", "int", "edge", "reflect", "wrap", "edge_int"];
    matches_onnxruntime("pad", &outs, same_bits);
}

/// ONNX's `ScatterND` (the rows of a KV-cache-like `[1, 2, S, 8]` tensor written at
/// positions given as an input, S and the new length symbolic; single elements, tuples as long
/// as the data's rank; negative indices; int64 values at i32's ends; f16 with subnormals and
/// ±65504; a symbolic shape rewritten at load time for a `ConstantOfShape`) and
/// `ScatterElements` (axes 0, 1 and -1, indices shorter than the data on another axis, int32
/// indices, NaN and infinities, int64, f16) give onnxruntime's outputs, bit for bit, on the
/// interpreter and the GPU, unfused and fused (`tests/data/onnx_extra/make_scatter.py`).
#[test]
fn scatter_nd_and_scatter_elements_match_onnxruntime() {
    let outs = ["kv", "elems", "nd_int", "nd_f16", "el_axis0", "el_axis1", "el_last", "el_int", "el_f16", "shape_fold"];
    matches_onnxruntime("scatter", &outs, same_bits);
}

/// The scatters round-trip through the JSON format (ScatterND with no attributes,
/// ScatterElements with its axis), and an attribute neither has is refused.
#[test]
fn scatters_round_trip_through_json() {
    let g = load_graph(&common::root().join("tests/data/onnx_extra/scatter.onnx")).unwrap();
    let text = glufuse::json::to_string(&g).unwrap();
    let el_last = "\"el_last\",\n      \"op\": \"ScatterElements\",\n      \"axis\": -1,\n      \"inputs\": [\"x\", \"idx_last\", \"upd_last\"]";
    assert!(text.contains(el_last), "{text}");
    let back = glufuse::json::from_str(&text).unwrap();
    assert_eq!(glufuse::json::to_string(&back).unwrap(), text);
    for (op, attr) in [("ScatterND", r#", "axis": 0"#), ("ScatterElements", r#", "reduction": "add""#)] {
        let bad = format!(
            r#"{{"format": "glufuse.graph/1", "nodes": [
  {{"name": "d", "op": "Input", "type": {{"dtype": "f32", "shape": [2]}}}},
  {{"name": "i", "op": "Input", "type": {{"dtype": "i64", "shape": [1, 1]}}}},
  {{"name": "u", "op": "Input", "type": {{"dtype": "f32", "shape": [1]}}}},
  {{"name": "y", "op": "{op}", "inputs": ["d", "i", "u"]{attr}}}], "outputs": ["y"]}}"#
        );
        let e = glufuse::json::from_str(&bad).unwrap_err().to_string();
        assert!(e.contains(&format!("bad attributes for {op}: unknown field")), "{e}");
    }
}

/// ONNX's `ReduceMin` (lowered to the negated maximum of the negated values: one axis kept
/// or dropped, all axes, −∞ included), `Xor` (booleans that differ, broadcast), `Sign`
/// (lowered to two comparisons and two `Where`s: floats with zeros and NaN, int64), `Round`
/// (halves to even) and `Tile` (lowered to a view, a broadcast and a view: a symbolic dim,
/// int64) give onnxruntime's outputs, bit for bit (`tests/data/onnx_extra/make_more_ops.py`).
#[test]
fn more_ops_match_onnxruntime() {
    let outs = ["min_rows", "min_cols", "min_all", "xor", "sign", "sign_int", "round", "tile", "tile_int"];
    matches_onnxruntime("more_ops", &outs, same_bits);
}
