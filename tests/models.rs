//! Whole decoder models as deployments export them (tests/data/models: 12 architectures,
//! static, dynamic-shape, KV-cache step and static-cache step, f16 variants; two more from
//! ../shared copied in as `shared_*`; ten other configs of the architectures as `v_*`; and
//! tests/data/more_models: 16 more architectures, `m_*`; tests/data/optimum: 11 exported by
//! optimum-onnx, `o_*`): each
//! loads, its gated FFNs
//! fuse (one per layer, GPT-2 none), and the CPU
//! interpreter matches onnxruntime's outputs for every reference input set, before and after
//! fusion (1e-4 relative to the largest value; f16 models 2e-2); and so does the GPU, fused and
//! unfused.

mod common;

use glufuse::files::{load_graph, read_npy};
use glufuse::passes::{fusion_report, PassManager};
#[cfg(feature = "gpu")]
use glufuse::runtime::Session;
use glufuse::tensor::Tensor;
use glufuse::Graph;
use std::collections::HashMap;
use std::path::PathBuf;

fn dir() -> PathBuf {
    common::root().join("tests/data/models")
}

/// The folder of the architectures beyond the twelve (`export.py more`: `m_*`).
fn more_dir() -> PathBuf {
    common::root().join("tests/data/more_models")
}

/// The folder of the optimum-onnx exports (`export_optimum.py`: `o_*`).
fn optimum_dir() -> PathBuf {
    common::root().join("tests/data/optimum")
}

/// The folder a model's files are in, by its name.
fn dir_of(model: &str) -> PathBuf {
    if model.starts_with("m_") {
        more_dir()
    } else if model.starts_with("o_") {
        optimum_dir()
    } else if model.starts_with("g_") {
        genai_dir()
    } else {
        dir()
    }
}

/// Reference sets of the 126 models: 15 static (one set each), 16 dynamic-shape and 15 KV-cache
/// steps of the tiny configs, 10 of each of the other configs (`v_*`), two sets each (one for
/// the shared KV step); 10 static-cache steps (`*_staticstep`: every architecture with a
/// cache but the four with sliding windows, which did not export; positions 0, 5 and 15),
/// three each; 5 dynamic-shape and 5 KV-cache steps exported with Hugging Face's default
/// attention (`a_*_sdpa_op18_*`, `export.py attn`), two each; 10 dynamic-shape and 10
/// KV-cache steps made by PyTorch's TorchScript exporter, eager and default attention
/// (`l_*`, `export.py legacy`), two each; the same five at opset 23 with eager and with
/// default attention (`a_*_{eager,sdpa}_op23_*`: its `RMSNormalization`, `RotaryEmbedding`
/// and `Attention`), two sets for each KV step, and for the dynamic-shape exports the one
/// batch onnxruntime 1.30 runs (GPT-2, which has no rotary embedding, two).
const REFERENCE_SETS: usize = 15 + 2 * (16 + 10) + 2 * (15 + 10) - 1 + 3 * 10 + 2 * 10 + 2 * 20 + 2 * (2 * 5 + 6);

/// Every model file of tests/data/models, by name (without `.onnx`).
fn models() -> Vec<String> {
    models_in(&dir())
}

/// Every model file of a folder, by name (without `.onnx`).
fn models_in(d: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".onnx").map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The reference tags of a model (`NAME.TAG.INPUT.npy`).
fn tags(model: &str) -> Vec<String> {
    let prefix = format!("{model}.");
    let mut t: Vec<String> = std::fs::read_dir(dir_of(model))
        .unwrap()
        .filter_map(|e| {
            let f = e.ok()?.file_name().into_string().ok()?;
            let rest = f.strip_prefix(&prefix)?;
            let (tag, _) = rest.split_once('.')?;
            Some(tag.to_string())
        })
        .collect();
    t.sort();
    t.dedup();
    t
}

/// Reads the inputs of one reference set.
fn inputs(g: &Graph, model: &str, tag: &str) -> HashMap<String, Tensor> {
    g.input_nodes()
        .into_iter()
        .map(|n| {
            let node = g.node(n);
            let p = dir_of(model).join(format!("{model}.{tag}.{}.npy", node.name));
            (node.name.clone(), read_npy(&p, &node.outputs[0]).unwrap_or_else(|e| panic!("{e}")))
        })
        .collect()
}

/// The binding of graph `g`'s symbolic dims by the shapes of its inputs `ins`.
fn bindings(g: &Graph, ins: &HashMap<String, Tensor>) -> glufuse::Result<glufuse::shape::Bindings> {
    let list: Vec<(&str, &glufuse::ir::TensorType, &[usize])> = g
        .input_nodes()
        .into_iter()
        .map(|n| {
            let node = g.node(n);
            (node.name.as_str(), &node.outputs[0], ins[&node.name].shape())
        })
        .collect();
    let mut b = glufuse::shape::Bindings::new();
    glufuse::shape::bind_inputs(&list, &mut b)?;
    Ok(b)
}

/// Compares every output with onnxruntime's; returns the worst relative error.
fn check(g: &Graph, outs: &[Tensor], model: &str, tag: &str, label: &str) -> f64 {
    let tol = if model.contains("f16") { 2e-2 } else { 1e-4 };
    let mut worst = 0.0f64;
    for (i, (v, got)) in g.outputs.iter().zip(outs).enumerate() {
        let name = g.output_name(i);
        let p = dir_of(model).join(format!("{model}.{tag}.out.{name}.npy"));
        // Read as the shape the run gave: a different shape in the file is an error.
        let shape = got.shape().iter().map(|&d| glufuse::ir::Dim::Fixed(d as u64)).collect();
        let ty = glufuse::ir::TensorType::new(g.ty(*v).dtype, shape);
        let want = read_npy(&p, &ty).unwrap_or_else(|e| panic!("{model} {tag} {label}: output {name}: {e}"));
        let (abs, rel) = glufuse::interp::compare(got, &want);
        assert!(rel <= tol, "{model} {tag} {label}: output {name}: max abs err {abs:e}, rel {rel:e} > {tol:e}");
        worst = worst.max(rel);
    }
    worst
}

#[test]
fn every_model_matches_onnxruntime_fused_and_unfused() {
    let t0 = std::time::Instant::now();
    let mut seen = 0;
    for m in models() {
        let path = dir().join(format!("{m}.onnx"));
        let original = load_graph(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut fused = original.clone();
        let mut pm = PassManager::standard();
        pm.verify_each = true;
        let runs = pm.run(&mut fused).unwrap_or_else(|e| panic!("{m}: {e}"));
        let rep = fusion_report(&runs).unwrap();
        // One gated FFN a layer: two layers, three in `v_qwen2_mha`; GPT-2 has none.
        let want = match m.as_str() {
            m if m.contains("gpt2") => 0,
            m if m.starts_with("v_qwen2_mha") => 3,
            _ => 2,
        };
        assert_eq!(rep.fused, want, "{m}: {}", rep.to_text(false));
        assert_eq!(rep.rejected, 0, "{m}: {}", rep.to_text(false));
        assert_eq!(original.summary().opaque, 0, "{m}: every op is modelled");
        // The JSON format holds every op, dtype and dim expression: both graphs read back (for
        // a few models that between them use every op; weights make it slow for all).
        let json_checked = [
            "llama_kvstep",
            "gemma2_f16_kvstep",
            "phi3_dynseq",
            "t5_dynseq",
            "gpt2_kvstep",
            "gemma3_static",
            "l_llama_sdpa_kvstep",
        ];
        for g in [&original, &fused].into_iter().filter(|_| json_checked.contains(&m.as_str())) {
            let j = glufuse::json::to_string(g).unwrap();
            let back = glufuse::json::from_str(&j).unwrap_or_else(|e| panic!("{m}: {e}"));
            assert_eq!(glufuse::json::to_string(&back).unwrap(), j, "{m}: JSON round trip");
        }
        let tags = tags(&m);
        assert!(!tags.is_empty(), "{m} has reference inputs");
        for tag in tags {
            let ins = inputs(&original, &m, &tag);
            let a = glufuse::interp::run(&original, &ins).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
            let b = glufuse::interp::run(&fused, &ins).unwrap_or_else(|e| panic!("{m} {tag} fused: {e}"));
            let ra = check(&original, &a, &m, &tag, "unfused");
            let rb = check(&fused, &b, &m, &tag, "fused");
            // f16 models round at their casts, which a fused unit computes past.
            let same = if m.contains("f16") { 2e-3 } else { 1e-5 };
            for (x, y) in a.iter().zip(&b) {
                let (_, rel) = glufuse::interp::compare(x, y);
                assert!(rel <= same, "{m} {tag}: fused and unfused differ by {rel:e}");
            }
            eprintln!("{m:24} {tag:8} rel err unfused {ra:.1e} fused {rb:.1e}");
            seen += 1;
        }
    }
    assert_eq!(seen, REFERENCE_SETS, "reference sets");
    eprintln!("{seen} reference sets in {:.1} s", t0.elapsed().as_secs_f64());
}

/// Reference sets of `more_dir`: 16 architectures, 5 mixtures of experts and f16 twins of two
/// (OPT, BLOOM), a dynamic-shape export (batch 1 of 5 tokens, and batch 2 of 11 with left
/// padding) and a KV-cache step (past 9 and 1 new token, past 4 and 3) of each.
const MORE_REFERENCE_SETS: usize = (16 + 5 + 2) * 4;

/// The architectures beyond the twelve (tests/data/more_models, `export.py more`): OPT
/// (positions counted from the mask), BLOOM (ALiBi), Falcon, GPT-NeoX (parallel blocks,
/// partial rotary embedding), GPT-J (interleaved rotary), GPTBigCode (one KV head), CodeGen,
/// Phi, Cohere, OLMo 2, Nemotron and Persimmon (squared ReLU), GPT-Neo (local attention
/// layers), XGLM (sinusoidal positions), SmolLM3 (a layer without rotary embedding) and GLM
/// (merged gate/up weights), the mixtures of experts Mixtral, Qwen2-MoE (a shared expert
/// beside the routed ones), Qwen3-MoE, OLMoE and GraniteMoE (their expert weights picked per
/// token and read in place: `expert_weights_are_read_in_place_not_gathered`), and OPT and BLOOM
/// in f16: each loads with every op modelled, its gated FFNs fuse (Cohere, OLMo 2, SmolLM3,
/// GLM have one a layer; the mixtures of experts their routed experts' gated unit a layer, a
/// matrix per token-expert pair, and Qwen2-MoE its shared expert's as well; the others none),
/// and the interpreter and the
/// GPU, fused and unfused, match onnxruntime for every reference set (on a software adapter
/// without `REQUIRE_GPU`, one set a model on the GPU). OPT's and BLOOM's KV-cache steps load
/// only because the loader solves their mask's length for the cache's (`onnx::load`).
#[test]
fn more_architectures_match_onnxruntime_fused_and_unfused() {
    // Two layers: a gated FFN a layer; Qwen2-MoE's shared expert and its routed experts'.
    let mut gated = vec![("m_cohere_", 2), ("m_olmo2_", 2), ("m_smollm3_", 2), ("m_glm_", 2), ("m_qwen2_moe_", 4)];
    gated.extend(["m_mixtral_", "m_qwen3_moe_", "m_olmoe_", "m_granitemoe_"].map(|m| (m, 2)));
    let seen = match_folder("more_architectures_match_onnxruntime_fused_and_unfused", &more_dir(), &gated);
    assert_eq!(seen, MORE_REFERENCE_SETS, "reference sets");
}

/// The mixtures of experts pick each token's expert weights (`gate_up_proj[expert_ids]` and
/// `down_proj[expert_ids]`, a `GatherND` each, then batched products): those gathers take no
/// kernel and no buffer, the products reading the tables in place (the values are
/// `more_architectures_match_onnxruntime_fused_and_unfused`'s to check). Four a model (two
/// layers).
#[test]
fn expert_weights_are_read_in_place_not_gathered() {
    use glufuse::codegen::{generate, Target};
    for arch in ["mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "granitemoe"] {
        for (form, tag) in [("dynseq", "b2s11"), ("kvstep", "past4n3")] {
            let m = format!("m_{arch}_{form}");
            let mut g = load_graph(&more_dir().join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
            PassManager::standard().run(&mut g).unwrap_or_else(|e| panic!("{m}: {e}"));
            let picked: Vec<_> = g
                .topo_order()
                .unwrap()
                .into_iter()
                .filter(|&n| g.gathered_rows(glufuse::ir::Value::of(n)).is_some())
                .collect();
            assert_eq!(picked.len(), 4, "{m}: the experts' gathers read in place");
            let b = bindings(&g, &inputs(&g, &m, tag)).unwrap();
            let ks = generate(&g, &b, &Target::default()).unwrap_or_else(|e| panic!("{m}: {e}"));
            for &n in &picked {
                let (table, _) = g.gathered_rows(glufuse::ir::Value::of(n)).unwrap();
                let name = &g.node(n).name;
                assert!(ks.iter().all(|k| k.source().name != *name), "{m}: '{name}' has a kernel");
                let readers = ks.iter().filter(|k| k.source().bindings.iter().any(|bd| bd.value == table)).count();
                assert!(readers >= 1, "{m}: no kernel binds the table of '{name}'");
            }
        }
    }
}

/// Reference sets of `optimum_dir`: 9 decoders, three prompts (past length 0) and three steps
/// after a past each (`p3` and `s3` with 20 and 17 new tokens: the attention writes its present
/// keys and values first); T5's encoder and decoder step, two each.
const OPTIMUM_REFERENCE_SETS: usize = 9 * 6 + 2 * 2;

/// Decoders exported by optimum-onnx (tests/data/optimum, `export_optimum.py`), as most ONNX
/// language models on the Hugging Face Hub were made: one graph for the prompt and every step
/// after it, whose past keys and values have length 0 for the prompt; `position_ids` an
/// input; dims declared as expressions (`past_sequence_length + sequence_length`); GPT-J's
/// rotary tables tiled `batch_size` times (a `Tile` by a dim); Cohere's `repeat_interleave` a
/// `NonZero` of a mask built from constants (folded at load). Llama, Qwen2, Gemma 2, Phi-3,
/// Granite and Cohere have a gated FFN a layer, GPT-2, GPT-J and OPT none; T5's encoder and
/// decoder step (its relative position bias sliced by `-seq`) a gated GELU a layer. On the GPU the prompts'
/// kernels are specialised to the empty cache and declare buffers they never read, which
/// their bind groups still bind (the failure this test was written for: wgpu refused the
/// fused prompts' bind groups).
#[test]
fn optimum_exports_match_onnxruntime_fused_and_unfused() {
    let gated = ["o_llama", "o_qwen2", "o_gemma2", "o_phi3", "o_granite", "o_cohere", "o_t5_"].map(|m| (m, 2));
    let seen = match_folder("optimum_exports_match_onnxruntime_fused_and_unfused", &optimum_dir(), &gated);
    assert_eq!(seen, OPTIMUM_REFERENCE_SETS, "reference sets");
}

/// The folder of the onnxruntime-genai builds (`export_genai.py`: `g_*`).
fn genai_dir() -> PathBuf {
    common::root().join("tests/data/genai")
}

/// Decoders built by onnxruntime-genai's model builder (tests/data/genai, `export_genai.py`),
/// as the ONNX models published for onnxruntime-genai are made: `GroupQueryAttention` with
/// q, k and v packed in one input and the rotary embedding inside it, the caches' width a
/// symbol (`kv_cache_dim`, declared the heads' width at load), skip RMS norms, constants
/// declared scalars where they are `[1]`; the int4 build's projections `MatMulNBits`; the f16
/// build (the builder's CUDA one) f16 throughout; the DirectML build's rotary embedding a
/// `com.microsoft::RotaryEmbedding` before the attention; the LongRoPE build's rotary tables picked by
/// an `If` on the length (a `Where` of its constant branches). Each
/// has a gated FFN a layer, fused; every set (a prompt, a step after a past of 5, three tokens
/// after a past of 4, a batch of two prompts) matches onnxruntime on the interpreter and the
/// GPU, fused and unfused.
#[test]
fn genai_builds_match_onnxruntime_fused_and_unfused() {
    let seen = match_folder("genai_builds_match_onnxruntime_fused_and_unfused", &genai_dir(), &[("g_", 2)]);
    assert_eq!(seen, GENAI_REFERENCE_SETS, "reference sets");
}

/// `GroupQueryAttention` models only the batch rows whose keys are the whole past and the new
/// tokens: a run whose attention mask has a 0 (a padded row: `seqlens_k` one short) fails,
/// on the interpreter and the GPU, fused and unfused, naming the check, instead of giving
/// what onnxruntime would not; a cache whose width is not the heads' (the model declares it
/// `kv_cache_dim`) is refused naming the input; what is not modelled is refused at load,
/// naming the attribute.
#[test]
fn genai_runs_with_padding_or_a_wrong_cache_are_refused() {
    let m = "g_llama_fp32";
    let path = genai_dir().join(format!("{m}.onnx"));
    let g = load_graph(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut fused = g.clone();
    PassManager::standard().run(&mut fused).unwrap();
    let mut ins = inputs(&g, m, "s1");
    let mask = ins["attention_mask"].clone();
    let mut padded = mask.as_i64().unwrap().to_vec();
    padded[0] = 0;
    ins.insert("attention_mask".into(), Tensor::i64(mask.shape().to_vec(), padded).unwrap());
    let check = "GroupQueryAttention.check_seqlens_k_is_past_plus_new_minus_1";
    for (label, graph) in [("unfused", &g), ("fused", &fused)] {
        let e = glufuse::interp::run(graph, &ins).unwrap_err().to_string();
        assert!(e.contains(check), "{label}: {e}");
        #[cfg(feature = "gpu")]
        if let Some(gpu) = common::gpu() {
            let mut s = Session::new(&gpu, graph.clone()).unwrap();
            let e = s.run(&ins).unwrap_err().to_string();
            assert!(e.contains(check), "GPU {label}: {e}");
        }
    }
    // A cache of width 8 where the heads are 16 wide.
    let mut ins = inputs(&g, m, "s1");
    let key = "past_key_values.0.key";
    let shape = [1, 1, 5, 8];
    ins.insert(key.into(), Tensor::f32(shape.to_vec(), vec![0.5; 40]).unwrap());
    let e = bindings(&g, &ins).unwrap_err().to_string();
    assert!(e.contains(key), "{e}");
    // Attributes and inputs not modelled: the load error of the model with its first
    // GroupQueryAttention node edited.
    use glufuse::onnx::proto::{AttributeProto, ModelProto, NodeProto};
    use prost::Message;
    let bytes = std::fs::read(&path).unwrap();
    let refused = |edit: &dyn Fn(&mut NodeProto)| -> String {
        let mut model = ModelProto::decode(bytes.as_slice()).unwrap();
        let nodes = &mut model.graph.as_mut().unwrap().node;
        edit(nodes.iter_mut().find(|n| n.op_type.as_deref() == Some("GroupQueryAttention")).unwrap());
        glufuse::onnx::load(&path, &model.encode_to_vec()).unwrap_err().to_string()
    };
    for (attr, value, says) in [("local_window_size", 2, "sliding window"), ("smooth_softmax", 1, "smooth softmax")] {
        let e =
            refused(
                &|node: &mut NodeProto| match node.attribute.iter_mut().find(|a| a.name.as_deref() == Some(attr)) {
                    Some(a) => a.i = Some(value),
                    None => node.attribute.push(AttributeProto {
                        name: Some(attr.into()),
                        r#type: Some(2),
                        i: Some(value),
                        ..Default::default()
                    }),
                },
            );
        assert!(e.contains("GroupQueryAttention") && e.contains(attr) && e.contains(says), "{attr}: {e}");
    }
    // position_ids (input 9).
    let e = refused(&|node: &mut NodeProto| {
        node.input.resize(12, String::new());
        node.input[9] = "input_ids".into();
    });
    assert!(e.contains("GroupQueryAttention") && e.contains("position_ids input is not supported"), "{e}");
}

/// Reference sets of `genai_dir`: ten builds, four sets each.
const GENAI_REFERENCE_SETS: usize = 10 * 4;

/// A KV-step graph's attention over many query rows (a 20-token prompt through optimum's
/// graph) takes two kernels, the present keys and values first, so that no query row
/// computes the new keys' rotary embedding again, the first also copying the present keys
/// with their positions last into the scratch buffer (`kts`), which the rows read K from; a
/// decode step (one new token) takes one, with no copy. (That the outputs are right:
/// `optimum_exports_match_onnxruntime_fused_and_unfused`, sets `p3` and `s3`.)
#[test]
fn a_prompt_through_a_kv_step_graph_writes_its_present_keys_first() {
    let m = "o_llama";
    let g = load_graph(&optimum_dir().join(format!("{m}.onnx"))).unwrap();
    let mut fused = g.clone();
    PassManager::standard().run(&mut fused).unwrap();
    for (tag, split) in [("p3", true), ("s3", true), ("s1", false), ("p1", false)] {
        let b = bindings(&g, &inputs(&g, m, tag)).unwrap();
        let ks = glufuse::codegen::generate(&fused, &b, &common::h100()).unwrap();
        let present = ks.iter().filter(|k| k.source().name.ends_with(".present")).count();
        let attention = ks.iter().filter(|k| k.source().kind == glufuse::codegen::KernelKind::Attention).count();
        assert_eq!(attention, 2, "{tag}: one attention a layer");
        assert_eq!(present, if split { 2 } else { 0 }, "{tag}");
        for k in &ks {
            let src = k.source();
            let copies = src.wgsl.contains("var<storage, read_write> kts");
            let reads = src.wgsl.contains("var<storage, read> kts");
            let is_present = src.name.ends_with(".present");
            let is_rows = src.kind == glufuse::codegen::KernelKind::Attention;
            assert_eq!(copies, split && is_present, "{tag} {}", src.name);
            assert_eq!(reads, split && is_rows, "{tag} {}", src.name);
            assert_eq!(src.scratch_bytes > 0, split && (is_present || is_rows), "{tag} {}", src.name);
        }
    }
}

/// optimum's merged decoder (`decoder_model_merged.onnx`: T5's prompt and step in one graph,
/// behind an `If` on the input `use_cache_branch`) loads, with that input fixed, as the branch
/// its value picks (`glufuse::load_with`): the input is no longer the graph's, every op is
/// modelled, the gated FFNs fuse, and the interpreter and the GPU, fused and unfused, match
/// onnxruntime on the prompt branch (`m1`) and the step branch (`m2`). Loaded as it is, the
/// `If` stays opaque and a run names it.
#[test]
#[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
fn merged_decoders_load_the_branch_their_condition_picks() {
    let m = "o_t5_merged";
    let path = optimum_dir().join(format!("{m}.onnx"));
    let whole = load_graph(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(whole.summary().opaque, 1, "the If stays opaque");
    let e = glufuse::interp::run(&whole, &inputs(&whole, m, "m2")).unwrap_err().to_string();
    assert!(e.contains("'If'"), "{e}");
    #[cfg(feature = "gpu")]
    let gpu = common::gpu();
    let mut seen = 0;
    for tag in tags(m) {
        let cond = optimum_dir().join(format!("{m}.{tag}.use_cache_branch.npy"));
        let ty = glufuse::ir::TensorType::new(glufuse::ir::DType::Bool, glufuse::ir::shape_of(&[1]));
        let c = read_npy(&cond, &ty).unwrap();
        let fixed = HashMap::from([("use_cache_branch".to_string(), c)]);
        let original = glufuse::load_with(&path, &fixed).unwrap_or_else(|e| panic!("{e}"));
        assert!(original.find("use_cache_branch").is_none(), "{tag}: the condition is no longer an input");
        assert_eq!(original.summary().opaque, 0, "{tag}: every op is modelled");
        let mut fused = original.clone();
        let runs = PassManager::standard().run(&mut fused).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
        assert_eq!(fusion_report(&runs).unwrap().fused, 2, "{tag}");
        let ins = inputs(&original, m, &tag);
        let a = glufuse::interp::run(&original, &ins).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
        let b = glufuse::interp::run(&fused, &ins).unwrap_or_else(|e| panic!("{m} {tag} fused: {e}"));
        check(&original, &a, m, &tag, "unfused");
        check(&fused, &b, m, &tag, "fused");
        #[cfg(feature = "gpu")]
        if let Some(gpu) = &gpu {
            for (label, g) in [("unfused", &original), ("fused", &fused)] {
                let mut s = Session::new(gpu, g.clone()).unwrap_or_else(|e| panic!("{m} {tag} {label}: {e}"));
                let got = s.run(&ins).unwrap_or_else(|e| panic!("{m} {tag} GPU {label}: {e}"));
                let rel = check(s.graph(), &got, m, &tag, &format!("GPU {label}"));
                eprintln!("{m:24} {tag:8} GPU {label:7} rel err {rel:.1e}");
            }
        }
        seen += 1;
    }
    assert_eq!(seen, 2, "reference sets");
}

/// Every model of `folder`: it loads with every op modelled, its gated FFNs fuse (as many as
/// `gated` gives for the first prefix of its name there, none for the others), and the interpreter
/// and the GPU, fused and unfused, match onnxruntime for every reference set (on a software
/// adapter without `REQUIRE_GPU`, one set a model on the GPU). Returns the sets seen.
#[cfg_attr(not(feature = "gpu"), allow(unused_variables))]
fn match_folder(test: &str, folder: &std::path::Path, gated: &[(&str, usize)]) -> usize {
    #[cfg(feature = "gpu")]
    let gpu = common::gpu();
    #[cfg(feature = "gpu")]
    let sweep = gpu.as_ref().map(|g| common::sweep(g, test));
    let mut seen = 0;
    // (A merged decoder loads once per value of its condition: `merged_decoders_load_the_branch_their_condition_picks`.)
    let models: Vec<String> = models_in(folder).into_iter().filter(|m| !m.ends_with("_merged")).collect();
    for (mi, m) in models.iter().enumerate() {
        let original = load_graph(&folder.join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let mut fused = original.clone();
        let mut pm = PassManager::standard();
        pm.verify_each = true;
        let runs = pm.run(&mut fused).unwrap_or_else(|e| panic!("{m}: {e}"));
        let rep = fusion_report(&runs).unwrap();
        let want = gated.iter().find(|(g, _)| m.starts_with(g)).map_or(0, |(_, n)| *n);
        assert_eq!(rep.fused, want, "{m}: {}", rep.to_text(false));
        assert_eq!(original.summary().opaque, 0, "{m}: every op is modelled");
        #[cfg(feature = "gpu")]
        let mut sessions = gpu.as_ref().map(|gpu| {
            [("unfused", &original), ("fused", &fused)]
                .map(|(label, g)| (label, Session::new(gpu, g.clone()).unwrap_or_else(|e| panic!("{m} {label}: {e}"))))
        });
        let tags = tags(m);
        assert!(!tags.is_empty(), "{m} has reference inputs");
        for (ti, tag) in tags.iter().enumerate() {
            let ins = inputs(&original, m, tag);
            let a = glufuse::interp::run(&original, &ins).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
            let b = glufuse::interp::run(&fused, &ins).unwrap_or_else(|e| panic!("{m} {tag} fused: {e}"));
            check(&original, &a, m, tag, "unfused");
            check(&fused, &b, m, tag, "fused");
            #[cfg(feature = "gpu")]
            if let Some(sessions) =
                sessions.as_mut().filter(|_| sweep == Some(common::Sweep::Full) || ti == mi % tags.len())
            {
                for (label, s) in sessions.iter_mut() {
                    let got = s.run(&ins).unwrap_or_else(|e| panic!("{m} {tag} GPU {label}: {e}"));
                    let rel = check(s.graph(), &got, m, tag, &format!("GPU {label}"));
                    eprintln!("{m:24} {tag:8} GPU {label:7} rel err {rel:.1e}");
                }
            }
            seen += 1;
        }
    }
    seen
}

/// A KV-cache step whose mask the exporter declared with a length of its own (`all`), where
/// the model needs it to be the cache's and the new tokens' (`past + new`: OPT counts the
/// positions from it): the loader declares the mask so, and a run refuses a mask of another
/// length, naming it, before anything runs.
#[test]
fn a_mask_longer_or_shorter_than_the_cache_is_refused() {
    let m = "m_opt_kvstep";
    let g = load_graph(&more_dir().join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
    let mask = g.input_nodes().into_iter().find(|&n| g.node(n).name == "attention_mask").unwrap();
    assert_eq!(g.node(mask).outputs[0].to_string(), "i64[1,new + past]");
    let mut ins = inputs(&g, m, "past9");
    assert!(bindings(&g, &ins).is_ok());
    for len in [9, 11] {
        let t =
            Tensor::from_data(glufuse::ir::DType::I64, vec![1, len], glufuse::tensor::Data::I64(vec![1; len])).unwrap();
        ins.insert("attention_mask".into(), t);
        let e = bindings(&g, &ins).unwrap_err().to_string();
        assert!(e.contains("attention_mask") && e.contains("new + past is 10"), "{len}: {e}");
        let e = glufuse::interp::run(&g, &ins).unwrap_err().to_string();
        assert!(e.contains("attention_mask"), "{len}: {e}");
    }
}

/// Every kernel of every model (and of `more_dir`'s, `optimum_dir`'s and `genai_dir`'s), fused, at the sizes of each of its reference sets, as
/// generated for an H100 (subgroup reductions and cooperative matrices, which a software
/// adapter never takes) validates in naga; every model has a reduction done by subgroup
/// shuffles (its norms, in row programs or in a GEMV's prologue).
#[test]
fn every_model_generates_for_an_h100() {
    let optimum = models_in(&optimum_dir()).into_iter().filter(|m| !m.ends_with("_merged"));
    let genai = models_in(&genai_dir());
    for m in models().into_iter().chain(models_in(&more_dir())).chain(optimum).chain(genai) {
        let g = load_graph(&dir_of(&m).join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let mut fused = g.clone();
        PassManager::standard().run(&mut fused).unwrap_or_else(|e| panic!("{m}: {e}"));
        for tag in tags(&m) {
            let ins = inputs(&g, &m, &tag);
            let b = bindings(&g, &ins).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
            for t in [common::h100(), common::h100_coop()] {
                let ks = glufuse::codegen::generate(&fused, &b, &t).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
                let shuffles = ks.iter().filter(|k| k.source().wgsl.contains("subgroupShuffleXor")).count();
                assert!(shuffles > 0, "{m} {tag}: no reduction by subgroups");
            }
        }
    }
}

/// Every model and reference set on the GPU, fused and unfused, against onnxruntime's
/// outputs (the tolerance of the interpreter's test), through one [`Session`] per graph (so
/// the tags of a model share its uploaded weights) on one device (so the models share the
/// pipelines of equal WGSL).
/// One export per architecture (gemma, gemma2, gemma2_f16, ..., t5), its kind (`dynseq`,
/// `kvstep`, `static`, `staticstep`) taken in turn over the architectures, where it has that
/// kind: every architecture, every kind and both dtypes still meet. The GPU test's subset.
#[cfg(feature = "gpu")]
fn representative(models: &[String]) -> Vec<String> {
    const KINDS: [&str; 4] = ["dynseq", "kvstep", "static", "staticstep"];
    let arch = |m: &str| KINDS.iter().find_map(|k| m.split_once(&format!("_{k}"))).map_or(m, |(a, _)| a).to_string();
    let mut archs: Vec<String> = models.iter().map(|m| arch(m)).collect();
    archs.sort();
    archs.dedup();
    archs
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let of: Vec<&String> = models.iter().filter(|m| arch(m) == *a).collect();
            of.iter().find(|m| m.contains(KINDS[i % KINDS.len()])).unwrap_or(&of[0]).to_string()
        })
        .collect()
}

#[cfg(feature = "gpu")]
#[test]
fn every_model_matches_onnxruntime_on_the_gpu_fused_and_unfused() {
    let Some(gpu) = common::gpu() else { return };
    // The subset (a software adapter): one export per architecture ([`representative`]),
    // with one of its reference sets (taken in turn); every export and set runs on the
    // interpreter above. On GL's llvmpipe, where each kernel's compile is most of the cost,
    // the full sweep alone took 4 minutes.
    let sweep = common::sweep(&gpu, "every_model_matches_onnxruntime_on_the_gpu_fused_and_unfused");
    let t0 = std::time::Instant::now();
    let mut seen = 0;
    // The worst relative error against onnxruntime, f32 and f16 models.
    let mut worst = [0.0f64; 2];
    let models = if sweep == common::Sweep::Full { models() } else { representative(&models()) };
    for (mi, m) in models.iter().enumerate() {
        let original = load_graph(&dir().join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap_or_else(|e| panic!("{m}: {e}"));
        let mut sessions = [("unfused", &original), ("fused", &fused)]
            .map(|(label, g)| (label, Session::new(&gpu, g.clone()).unwrap_or_else(|e| panic!("{m} {label}: {e}"))));
        let mut tags = tags(m);
        if sweep == common::Sweep::Subset {
            tags = vec![tags.swap_remove(mi % tags.len())];
        }
        for tag in tags {
            let ins = inputs(&original, m, &tag);
            let mut outs = vec![];
            for (label, s) in &mut sessions {
                let got = s.run(&ins).unwrap_or_else(|e| panic!("{m} {tag} GPU {label}: {e}"));
                let rel = check(s.graph(), &got, m, &tag, &format!("GPU {label}"));
                let w = &mut worst[m.contains("f16") as usize];
                *w = w.max(rel);
                eprintln!("{m:24} {tag:8} GPU {label:7} rel err {rel:.1e}");
                outs.push(got);
            }
            // No weight is transposed per call: a projection reads a transposed weight in place,
            // in the `[N, K]` layout (`codegen::nk_weight`; these exports fold the transpose of
            // their tied tables into a copy, the 151936-row Qwen2 export does not).
            for (label, s) in &mut sessions {
                let b = s.bind(&ins, &Default::default()).unwrap();
                let g = s.graph().clone();
                let exe = s.executable(&b).unwrap();
                for k in exe.kernels() {
                    let src = k.source();
                    let weight = |v: glufuse::ir::Value| matches!(g.node(v.node).op, glufuse::ir::Op::Weight(_));
                    let transposes_weight =
                        src.kind == glufuse::codegen::KernelKind::Transpose && weight(src.bindings[0].value);
                    assert!(!transposes_weight, "{m} {label}: '{}' transposes a weight on every call", src.name);
                }
            }
            let same = if m.contains("f16") { 2e-3 } else { 1e-5 };
            for (x, y) in outs[0].iter().zip(&outs[1]) {
                let (_, rel) = glufuse::interp::compare(x, y);
                assert!(rel <= same, "{m} {tag}: on the GPU, fused and unfused differ by {rel:e}");
            }
            seen += 1;
        }
    }
    let want = if sweep == common::Sweep::Full { REFERENCE_SETS } else { models.len() };
    assert_eq!(seen, want, "reference sets");
    let p = gpu.pipeline_counts();
    eprintln!(
        "{seen} reference sets on the GPU in {:.1} s; {} pipelines compiled, {} reused; worst rel err f32 {:.1e}, f16 {:.1e}",
        t0.elapsed().as_secs_f64(),
        p.compiled,
        p.reused,
        worst[0],
        worst[1]
    );
}

/// Every KV-step export's attention split over its keys (three chunks forced, each a workgroup,
/// then a kernel combining them: what a decode step past 192 keys takes by default) matches
/// onnxruntime: masks, soft-capping, sliding windows, biases and f16 probabilities rounded per
/// chunk included. (GPT-2 with `reorder_and_upcast_attn` has no fused attention to split.)
#[cfg(feature = "gpu")]
#[test]
fn kv_steps_split_over_their_keys_match_onnxruntime() {
    let Some(gpu) = common::gpu() else { return };
    let sweep = common::sweep(&gpu, "kv_steps_split_over_their_keys_match_onnxruntime");
    let all: Vec<String> = models().into_iter().filter(|m| m.contains("kvstep")).collect();
    let models = if sweep == common::Sweep::Full { all.clone() } else { representative(&all) };
    let target = glufuse::codegen::Target { attention_chunks: Some(3), ..gpu.target() };
    let mut split = 0;
    for m in &models {
        let original = load_graph(&dir().join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap_or_else(|e| panic!("{m}: {e}"));
        let tag = tags(m).pop().expect("a reference set");
        let ins = inputs(&original, m, &tag);
        let mut s = Session::with_target(&gpu, fused, target.clone()).unwrap_or_else(|e| panic!("{m}: {e}"));
        let got = s.run(&ins).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
        let rel = check(s.graph(), &got, m, &tag, "GPU split");
        let b = s.bind(&ins, &Default::default()).unwrap();
        let combines =
            s.executable(&b).unwrap().kernels().iter().filter(|k| k.source().name.ends_with(".combine")).count();
        eprintln!("{m:28} {tag:8} {combines} split attentions, rel err {rel:.1e}");
        assert_eq!(combines == 0, m.starts_with("v_gpt2_upcast"), "{m}: {combines} split attentions");
        split += 1;
    }
    assert_eq!(split, models.len());
}

/// A decode step over a long past writes its present keys and values with several elements a
/// thread of the attention's side workgroups (4200 past positions of Llama's 2 KV heads of 8:
/// 263 workgroups at one element, so 2 a thread), and every output is the interpreter's.
#[cfg(feature = "gpu")]
#[test]
fn a_long_past_is_copied_several_elements_a_thread() {
    let Some(gpu) = common::gpu() else { return };
    let m = "llama_kvstep";
    let original = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
    let mut fused = original.clone();
    PassManager::standard().run(&mut fused).unwrap();
    let past = 4200;
    let b: glufuse::shape::Bindings =
        [("past", past), ("new", 1), ("all", past + 1)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    // (Seeded caches; a token id and a mask of ones.)
    let mut ins: HashMap<String, Tensor> = HashMap::new();
    for (i, n) in original.input_nodes().into_iter().enumerate() {
        let name = original.node(n).name.clone();
        let t = match name.as_str() {
            "input_ids" => Tensor::i64(vec![1, 1], vec![7]).unwrap(),
            "attention_mask" => Tensor::i64(vec![1, past + 1], vec![1; past + 1]).unwrap(),
            _ => glufuse::interp::seeded_input(&original, i, &b, 3).unwrap(),
        };
        ins.insert(name, t);
    }
    let want = glufuse::interp::run(&original, &ins).unwrap();
    let mut s = Session::new(&gpu, fused).unwrap();
    let got = s.run(&ins).unwrap();
    let b = s.bind(&ins, &Default::default()).unwrap();
    let exe = s.executable(&b).unwrap();
    let looped = exe.kernels().iter().filter(|k| k.source().wgsl.contains("for (var e = 0u; e < 2u;")).count();
    assert_eq!(looped, 2, "both layers' attentions write two elements a thread");
    for (i, (x, y)) in got.iter().zip(&want).enumerate() {
        let (abs, rel) = glufuse::interp::compare(x, y);
        assert!(rel <= 1e-5, "output {}: GPU vs interpreter rel {rel:e} (abs {abs:e})", s.graph().output_name(i));
    }
}

/// The query's bias and rotary embedding fold into the attention's Q program (the kernel
/// computes the query once per row), and in a decode step every norm folds into the GEMV
/// that reads it: Qwen2's KV-cache step (2 layers) has no program of its own for either, and
/// its kernels are its graph's launches less the five norms (two per layer and the final one).
#[test]
fn rotary_queries_and_norms_take_no_kernels_of_their_own() {
    use glufuse::ir::{Op, Step};
    let mut g = load_graph(&dir().join("qwen2_kvstep.onnx")).unwrap();
    PassManager::standard().run(&mut g).unwrap();
    let mut attentions = 0;
    for n in g.g.node_indices() {
        if let Op::Attention(a) = &g.node(n).op {
            attentions += 1;
            // Rotate-half: a negated half concatenated before the other.
            assert!(a.q.iter().any(|s| matches!(s, Step::Concat { .. })), "{}: {:?}", g.node(n).name, a.q);
            assert!(a.q.iter().any(|s| matches!(s, Step::Unary { .. })), "{}: {:?}", g.node(n).name, a.q);
        }
    }
    assert_eq!(attentions, 2);
    let launches = g.summary().launches;
    let b: glufuse::ir::shape::Bindings =
        [("new".to_string(), 1), ("past".to_string(), 9), ("all".to_string(), 10)].into_iter().collect();
    let kernels = glufuse::codegen::generate(&g, &b, &Default::default()).unwrap();
    let folded = kernels
        .iter()
        .filter(|k| k.source().choice.as_ref().is_some_and(|c| c.reason.contains("in its prologue")))
        .count();
    assert_eq!(folded, 5, "norms folded into GEMVs");
    assert_eq!(kernels.len(), launches - folded, "{launches} launches");
}

/// A KV-cache step's present keys and values (the past cache with the new keys appended) are
/// written by the attention that reads them, not by programs of their own: in every KV-step
/// export the passes leave each `present` output to an attention node, and the attention's
/// K and V read the past cache and the new keys where they are. Except GPT-2 with
/// `reorder_and_upcast_attn`, whose attention is not fused: it multiplies queries and keys as
/// 3-D products over batch and heads merged (`baddbmm`), which the attention pass does not
/// match (the graph runs correctly, op by op: the other tests).
#[test]
fn present_keys_and_values_are_written_by_the_attention() {
    use glufuse::ir::Op;
    for m in models().iter().filter(|m| m.contains("kvstep") && !m.starts_with("v_gpt2_upcast")) {
        let mut g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        let present: Vec<(String, glufuse::ir::Value)> = (0..g.outputs.len())
            .map(|i| (g.output_name(i), g.outputs[i]))
            .filter(|(name, _)| name.contains("present"))
            .collect();
        assert!(!present.is_empty(), "{m}: no present outputs");
        for (name, v) in present {
            let node = g.node(v.node);
            assert!(
                matches!(node.op, Op::Attention(_)) && v.output >= 1,
                "{m}: present output '{name}' comes from '{}' ({})",
                node.name,
                node.op.name()
            );
        }
    }
}

/// Hugging Face's default attention (`sdpa`: PyTorch's `scaled_dot_product_attention`) is
/// exported otherwise than the eager one: the scale's square root multiplies Q and K each, K is
/// transposed as a 3-D tensor, and fully masked rows' NaNs become zeros. After the passes such
/// an export runs as many kernels as the eager export of the same model: the attention reads
/// K through its scale, and writes the present keys itself.
#[test]
fn default_attention_exports_take_as_many_kernels_as_eager_ones() {
    let launches = |m: &str| {
        let mut g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        let attentions =
            g.topo_order().unwrap().into_iter().filter(|&n| matches!(g.node(n).op, glufuse::ir::Op::Attention(_)));
        (g.summary().launches, attentions.count())
    };
    let sdpa: Vec<String> = models().into_iter().filter(|m| m.contains("_sdpa_op18_")).collect();
    assert_eq!(sdpa.len(), 10);
    for m in sdpa {
        let eager = m.trim_start_matches("a_").replace("_sdpa_op18", "");
        let (got, want) = (launches(&m), launches(&eager));
        assert_eq!(got, want, "{m} against {eager}: (kernel launches, attentions)");
        assert!(got.1 > 0 || m.contains("gpt2"), "{m}: no attention fused");
    }
}

/// The output projection after each attention reads its weight as `[N, K]` (the weights-nk
/// pass: a transpose at load, read in place), as the q/k/v, gate/up and down projections do,
/// in a KV step and in a dynamic-shape export.
#[test]
fn output_projections_read_their_weights_as_nk() {
    use glufuse::ir::Op;
    for m in ["qwen2_kvstep", "llama_dynseq"] {
        let mut g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        PassManager::standard().run(&mut g).unwrap();
        let attentions: Vec<_> = g.g.node_indices().filter(|&n| matches!(g.node(n).op, Op::Attention(_))).collect();
        assert_eq!(attentions.len(), 2, "{m}: two layers");
        for a in attentions {
            // The attention's reader, through the reshape that puts the heads side by side.
            let mut x = a;
            loop {
                let users = g.users(glufuse::ir::Value::of(x));
                assert_eq!(users.len(), 1, "{m}: one reader after '{}'", g.node(x).name);
                let r = users[0].0;
                if matches!(g.node(r).op, Op::MatMul) {
                    let w = g.inputs(r)[1];
                    assert!(
                        matches!(&g.node(w.node).op, Op::Transpose { perm } if perm == &[1, 0]),
                        "{m}: '{}' reads its weight as {}",
                        g.node(r).name,
                        g.node(w.node).op.name()
                    );
                    break;
                }
                assert!(matches!(g.node(r).op, Op::Reshape { .. }), "{m}: {} after the attention", g.node(r).op.name());
                x = r;
            }
        }
    }
}

/// Each static-cache step's cache updates, exported as `Transpose → ScatterND → Transpose`,
/// run as one `ScatterElements` on the cache's own layout (the `scatter-axis` pass): none of
/// the chains is left, one scatter per cache (two layers, keys and values), named as the
/// present output it writes. (That they compute what onnxruntime does is the tests above.)
#[test]
fn static_cache_updates_scatter_along_the_caches_axis() {
    let statics: Vec<String> = models().into_iter().filter(|m| m.ends_with("_staticstep")).collect();
    assert_eq!(statics.len(), 10);
    for m in statics {
        let mut g = load_graph(&dir().join(format!("{m}.onnx"))).unwrap();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let rep = glufuse::passes::scatter_report(&runs).unwrap();
        assert_eq!(rep.rewritten.len(), 4, "{m}: {rep:?}");
        let ops: Vec<&glufuse::ir::Op> = g.g.node_indices().map(|n| &g.node(n).op).collect();
        assert!(!ops.iter().any(|op| matches!(op, glufuse::ir::Op::ScatterND)), "{m}: a ScatterND is left");
        let scatters = ops.iter().filter(|op| matches!(op, glufuse::ir::Op::ScatterElements { .. })).count();
        assert_eq!(scatters, 4, "{m}");
        for (i, v) in g.outputs.iter().enumerate().filter(|(i, _)| g.output_name(*i).starts_with("present_")) {
            let op = &g.node(v.node).op;
            assert!(matches!(op, glufuse::ir::Op::ScatterElements { axis: 2 }), "{m}: output {i} is {op:?}");
        }
    }
}

/// In an f16 prefill on cooperative matrices, the activations only those GEMMs read as x
/// (the norms' outputs, the gated units') are stored as packed f16, halving the GEMMs' loads
/// of them ([`glufuse::codegen::packed_activation`]), and so are the logits an LM head
/// writes as a graph output (halving the bytes read back): their writers and readers bind
/// them as such, the outputs still match onnxruntime's, and they are bit for bit those of the
/// same graph with every such activation also a graph output (which keeps it f32). The GEMMs
/// are emulated (a software adapter has no cooperative matrices): every adapter with f16 runs
/// them.
#[cfg(feature = "gpu")]
#[test]
fn activations_only_cooperative_gemms_read_are_stored_as_packed_f16() {
    use glufuse::codegen::{packed_activation, KernelKind, ProjKernel};
    use glufuse::runtime::Executable;
    let Some(gpu) = common::gpu() else { return };
    let Some(t) = common::emulated_coop(&gpu) else { return };
    let bits = |x: &Tensor| x.as_f32().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    let mut checked = 0;
    for m in models().into_iter().filter(|m| m.contains("f16") && m.contains("dynseq")) {
        let original = load_graph(&dir().join(format!("{m}.onnx"))).unwrap_or_else(|e| panic!("{e}"));
        let mut fused = original.clone();
        PassManager::standard().run(&mut fused).unwrap_or_else(|e| panic!("{m}: {e}"));
        for tag in tags(&m) {
            let ins = inputs(&original, &m, &tag);
            let b = bindings(&original, &ins).unwrap();
            let rows: usize = ins["input_ids"].shape().iter().product();
            let packed: Vec<glufuse::ir::Value> = fused
                .g
                .node_indices()
                .map(glufuse::ir::Value::of)
                .filter(|&v| packed_activation(&fused, v, &b, &t).unwrap())
                .collect();
            let exe = Executable::with_target(&gpu, &fused, &b, &t).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
            // Each packed value bound packed by its writer and by every reader, nothing else.
            let mut seen = std::collections::HashMap::new();
            for k in exe.kernels() {
                let src = k.source();
                for bd in src.bindings.iter().filter(|bd| bd.packed_f16) {
                    let weight = matches!(fused.node(bd.value.node).op, glufuse::ir::Op::Weight(_));
                    assert!(weight || packed.contains(&bd.value), "{m} {tag}: '{}' binds a packed value", src.name);
                    if !weight {
                        let coop = KernelKind::Projection { fused: false, kernel: ProjKernel::Coop };
                        let coop_fused = KernelKind::Projection { fused: true, kernel: ProjKernel::Coop };
                        if !bd.write {
                            assert!(src.kind == coop || src.kind == coop_fused, "{m} {tag}: '{}' reads it", src.name);
                        }
                        *seen.entry((bd.value, bd.write)).or_insert(0) += 1;
                    }
                }
            }
            for &v in &packed {
                assert_eq!(seen.get(&(v, true)), Some(&1), "{m} {tag}: '{}' written packed", fused.value_name(v));
                // (A graph output packed is one no kernel reads.)
                let read = seen.contains_key(&(v, false));
                assert_eq!(read, !fused.is_output(v), "{m} {tag}: '{}' read packed", fused.value_name(v));
            }
            // Past 8 rows the GEMMs are cooperative: every norm's output and gated unit packed,
            // and every graph output an LM head writes (not Gemma 2's: a tanh caps its logits).
            assert_eq!(!packed.is_empty(), rows > 8, "{m} {tag}: {} rows, {} packed", rows, packed.len());
            let projected = |v: &glufuse::ir::Value| {
                matches!(fused.node(v.node).op, glufuse::ir::Op::MatMul | glufuse::ir::Op::FusedGateUp(_))
            };
            let heads = fused.outputs.iter().filter(|v| projected(v)).count();
            let packed_outputs = packed.iter().filter(|v| fused.is_output(**v)).count();
            assert_eq!(packed_outputs, if rows > 8 { heads } else { 0 }, "{m} {tag}: graph outputs packed");
            assert_eq!(heads, usize::from(!m.contains("gemma2")), "{m}: LM heads writing a graph output");
            let got = exe.run(&ins).unwrap_or_else(|e| panic!("{m} {tag}: {e}"));
            check(&fused, &got, &m, &tag, "GPU, cooperative GEMMs emulated");
            // The same activations kept f32 (each also a graph output): the same bits out.
            let mut kept = fused.clone();
            for &v in packed.iter().filter(|v| !fused.is_output(**v)) {
                kept.add_output(v, None);
            }
            let plain = Executable::with_target(&gpu, &kept, &b, &t).unwrap();
            assert!(plain.kernels().iter().all(|k| k.source().bindings.iter().all(|bd| !bd.packed_f16
                || matches!(kept.node(bd.value.node).op, glufuse::ir::Op::Weight(_))
                || fused.is_output(bd.value))));
            let want = plain.run(&ins).unwrap();
            for (o, x) in got.iter().enumerate() {
                assert_eq!(bits(x), bits(&want[o]), "{m} {tag}: output {o}, packed against f32");
            }
            eprintln!("{m:20} {tag:6}: {} values packed", packed.len());
            checked += usize::from(rows > 8);
        }
    }
    assert!(checked >= 3, "{checked} prefills with packed activations");
}
