//! The command line as users meet it: each command on the test graphs, exit codes, and bad
//! inputs that must give a clear error naming the node or file, exit code 2, no output file
//! and no panic.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

fn glufuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_glufuse")).args(args).output().expect("runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn graph(name: &str) -> String {
    common::root().join("tests/graphs").join(format!("{name}.json")).to_string_lossy().into_owned()
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn every_bad_input_fails_cleanly_with_a_reviewed_message() {
    let dir = common::root().join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10);
    let out_dir = tmp();
    for f in files {
        let stem = f.file_stem().unwrap().to_string_lossy().into_owned();
        let out = out_dir.path().join(format!("{stem}.out.json"));
        let o = glufuse(&["fuse", f.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{stem}: exit code; stderr: {err}");
        assert!(!out.exists(), "{stem}: an output file was written");
        assert!(!err.contains("panicked"), "{stem}: {err}");
        assert!(err.contains(f.file_name().unwrap().to_str().unwrap()), "{stem}: error must name the file: {err}");
        let msg = err.replace(dir.to_str().unwrap(), "tests/bad");
        insta::assert_snapshot!(format!("bad__{stem}"), msg);
    }
}

#[test]
fn a_failed_fuse_leaves_an_existing_output_untouched() {
    let d = tmp();
    let out = d.path().join("out.json");
    std::fs::write(&out, "precious").unwrap();
    let bad = common::root().join("tests/bad/cycle.json");
    let o = glufuse(&["fuse", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious");
}

#[test]
fn missing_file_and_usage_errors_exit_2() {
    let o = glufuse(&["show", "/no/such/file.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("/no/such/file.json"));
    assert_eq!(glufuse(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(glufuse(&["fuse"]).status.code(), Some(2));
}

#[test]
fn fuse_writes_graph_and_dumps() {
    let d = tmp();
    let (out, before, after) = (d.path().join("f.json"), d.path().join("b.dot"), d.path().join("a.dot"));
    let o = glufuse(&[
        "fuse",
        &graph("decoder_2_layers"),
        "-o",
        out.to_str().unwrap(),
        "--before",
        before.to_str().unwrap(),
        "--after",
        after.to_str().unwrap(),
        "--format",
        "dot",
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let fused = glufuse::files::load_graph(&out).unwrap();
    assert_eq!(fused.summary().fused, 2);
    assert!(std::fs::read_to_string(&before).unwrap().starts_with("digraph"));
    let a = std::fs::read_to_string(&after).unwrap();
    assert!(a.contains("FusedGateUp(silu, kn)"), "{a}");
}

/// `fuse --data-file always` writes a model's weights beside the JSON graph, which loads back
/// (from any working folder) as the graph written inline does and runs alike; a data file
/// that is gone, cut short or named with a folder is refused, exit 2, naming it.
#[test]
fn fuse_keeps_weights_in_a_data_file_that_reads_back() {
    let d = tmp();
    let m = model("qwen2_f16_dynseq.onnx");
    let (a, b) = (d.path().join("a.json"), d.path().join("b.json"));
    for (out, mode) in [(&a, "always"), (&b, "never")] {
        let o = glufuse(&["fuse", &m, "-o", out.to_str().unwrap(), "--data-file", mode]);
        assert!(o.status.success(), "{mode}: {:?}", text(&o));
    }
    let data = d.path().join("a.json.data");
    let (ta, tb) = (std::fs::read_to_string(&a).unwrap(), std::fs::read_to_string(&b).unwrap());
    assert!(ta.contains(r#""data_at": "#) && !ta.contains(r#""data": ["#), "{ta}");
    assert!(ta.contains(&format!(r#""bytes": {}"#, std::fs::metadata(&data).unwrap().len())));
    assert!(tb.contains(r#""data": ["#) && !d.path().join("b.json.data").exists());
    let (ga, gb) = (glufuse::files::load_graph(&a).unwrap(), glufuse::files::load_graph(&b).unwrap());
    assert_eq!(glufuse::json::to_string(&ga).unwrap(), glufuse::json::to_string(&gb).unwrap());
    // The data file is found beside the JSON file, not in the working folder.
    let elsewhere = tmp();
    let mut args = vec!["interp".to_string(), a.to_str().unwrap().to_string()];
    args.extend(model_inputs("qwen2_f16_dynseq", "b1s5", &["input_ids", "attention_mask"]));
    let o = Command::new(env!("CARGO_BIN_EXE_glufuse")).args(&args).current_dir(elsewhere.path()).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    args[1] = b.to_str().unwrap().to_string();
    assert_eq!(text(&glufuse(&args.iter().map(String::as_str).collect::<Vec<_>>())).0, out);
    // Refusals: the file cut short, gone, or named with a folder.
    let bytes = std::fs::read(&data).unwrap();
    let interp = |g: &std::path::Path| glufuse(&["interp", g.to_str().unwrap(), "--dim", "batch=1", "--dim", "seq=2"]);
    std::fs::write(&data, &bytes[..bytes.len() - 2]).unwrap();
    let o = interp(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("the data file \"a.json.data\" holds"), "{}", text(&o).1);
    std::fs::remove_file(&data).unwrap();
    let o = interp(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains(data.to_str().unwrap()), "{}", text(&o).1);
    std::fs::write(&a, ta.replace(r#""name": "a.json.data""#, r#""name": "../a.json.data""#)).unwrap();
    let o = interp(&a);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("must be named by a file name alone"), "{}", text(&o).1);
}

#[test]
fn fuse_explain_and_json_report() {
    let o = glufuse(&["fuse", &graph("nofuse_shared_gate"), "--explain"]);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(out.contains("rejected mul (silu): 'gate_proj' is also used by 'side'"), "{out}");
    let o = glufuse(&["fuse", &graph("merged_split"), "--report", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["fused"], 1);
    assert_eq!(v["candidates"][0]["outcome"], "fused");
    assert_eq!(v["candidates"][0]["merged"], true);
    assert_eq!(v["stop_reason"], "saturated");
}

#[test]
fn show_formats() {
    for (fmt, start) in [("text", "%x:"), ("json", "{"), ("dot", "digraph"), ("mermaid", "flowchart TD")] {
        let o = glufuse(&["show", &graph("swiglu_bias"), "--format", fmt]);
        assert!(o.status.success());
        assert!(text(&o).0.starts_with(start), "{fmt}");
    }
}

#[test]
fn synth_then_fuse_and_interp() {
    let d = tmp();
    let p = d.path().join("s.json");
    let o = glufuse(&[
        "synth",
        "--layers",
        "3",
        "--hidden",
        "16",
        "--intermediate",
        "40",
        "--batch",
        "2",
        "-o",
        p.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = glufuse(&["fuse", p.to_str().unwrap(), "--explain"]);
    assert!(text(&o).0.contains("3 candidate(s), 3 fused"));
    let o = glufuse(&["interp", p.to_str().unwrap()]);
    assert!(o.status.success());
    assert!(text(&o).0.contains("layers.2.mlp_residual: shape [2, 16]"), "{:?}", text(&o));
    // Opaque attention loads and fuses, but cannot be interpreted: a clear job error.
    let q = d.path().join("o.json");
    assert!(glufuse(&["synth", "--layers", "2", "--opaque", "-o", q.to_str().unwrap()]).status.success());
    let o = glufuse(&["fuse", q.to_str().unwrap(), "--explain"]);
    assert!(text(&o).0.contains("2 fused"));
    let o = glufuse(&["interp", q.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("opaque op 'RMSNorm' cannot be executed"), "{:?}", text(&o));
}

#[test]
fn interp_reads_and_writes_npy() {
    let d = tmp();
    let x = d.path().join("x.npy");
    let t = glufuse::tensor::Tensor::new(vec![3, 8], (0..24).map(|i| i as f32 / 24.0).collect()).unwrap();
    glufuse::files::write_npy(&x, &t).unwrap();
    let out = d.path().join("y.npy");
    let spec = format!("x={}", x.display());
    let o = glufuse(&["interp", &graph("swiglu_silu_op"), "--input", &spec, "--output", out.to_str().unwrap()]);
    assert!(o.status.success(), "{:?}", text(&o));
    let ty = glufuse::ir::TensorType::new(glufuse::ir::DType::F32, glufuse::ir::shape_of(&[3, 8]));
    assert_eq!(glufuse::files::read_npy(&out, &ty).unwrap().shape(), &[3, 8]);
    // Wrong shape: exit 2 naming the file.
    let wrong = d.path().join("w.npy");
    glufuse::files::write_npy(&wrong, &glufuse::tensor::Tensor::new(vec![2, 8], vec![0.0; 16]).unwrap()).unwrap();
    let o = glufuse(&["interp", &graph("swiglu_silu_op"), "--input", &format!("x={}", wrong.display())]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("w.npy"), "{:?}", text(&o));
}

/// Inputs left out beside given ones hold seeded values, and the command says which: a KV
/// step run without its past keys and values names them on standard error (its outputs look
/// like any others); a prompt's empty past holds nothing to make up, and nothing is said.
#[test]
fn made_up_inputs_beside_given_ones_are_named() {
    let dir = common::root().join("tests/data/optimum");
    let given = |tag: &str| -> Vec<String> {
        ["input_ids", "attention_mask", "position_ids"]
            .iter()
            .flat_map(|n| {
                ["--input".to_string(), format!("{n}={}", dir.join(format!("o_llama.{tag}.{n}.npy")).display())]
            })
            .collect()
    };
    let model = dir.join("o_llama.onnx").to_string_lossy().into_owned();
    let run = |tag: &str| {
        let mut args = vec!["interp".to_string(), model.clone()];
        args.extend(given(tag));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = glufuse(&args);
        assert!(o.status.success(), "{:?}", text(&o));
        text(&o).1
    };
    let step = run("s1");
    assert!(
        step.contains(
            "note: 4 graph input(s) not given hold seeded random values (seed 7): 'past_key_values.0.key' [1, 2, 6, 8]"
        ),
        "{step}"
    );
    let prompt = run("p1");
    assert!(!prompt.contains("note:"), "{prompt}");
}

/// A merged decoder (an `If` on the graph input `use_cache_branch`) runs from the command line
/// with that input given as one boolean: the graph loads as the branch it picks, and the
/// outputs are onnxruntime's; left out, the run is refused naming it.
#[test]
fn a_merged_decoder_runs_the_branch_its_condition_picks() {
    let dir = common::root().join("tests/data/optimum");
    let d = tmp();
    let logits = d.path().join("logits.npy");
    for (tag, shape) in [("m1", [1u64, 3, 128]), ("m2", [2, 1, 128])] {
        // Every input of the set, `use_cache_branch` last.
        let mut inputs = vec![];
        for e in std::fs::read_dir(&dir).unwrap() {
            let f = e.unwrap().file_name().into_string().unwrap();
            let Some(input) = f.strip_prefix(&format!("o_t5_merged.{tag}.")).and_then(|r| r.strip_suffix(".npy"))
            else {
                continue;
            };
            if !input.starts_with("out.") {
                inputs.push((input != "use_cache_branch", format!("{input}={}", dir.join(&f).display())));
            }
        }
        inputs.sort();
        inputs.reverse();
        let model = dir.join("o_t5_merged.onnx").to_string_lossy().into_owned();
        let out = format!("logits={}", logits.display());
        let args = |n: usize| -> Vec<String> {
            let mut a = vec!["interp".to_string(), model.clone(), "--output".to_string(), out.clone()];
            a.extend(inputs[..n].iter().flat_map(|(_, i)| ["--input".to_string(), i.clone()]));
            a
        };
        let all = args(inputs.len());
        let o = glufuse(&all.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{tag}: {:?}", text(&o));
        let ty = glufuse::ir::TensorType::new(glufuse::ir::DType::F32, glufuse::ir::shape_of(&shape));
        let want = glufuse::files::read_npy(&dir.join(format!("o_t5_merged.{tag}.out.logits.npy")), &ty).unwrap();
        let got = glufuse::files::read_npy(&logits, &ty).unwrap();
        let (_, rel) = glufuse::interp::compare(&got, &want);
        assert!(rel < 1e-4, "{tag}: {rel}");
        // Without the condition: refused, naming it; under a name the graph does not have
        // (a typo): refused, naming that.
        let without = args(inputs.len() - 1);
        let o = glufuse(&without.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(2), "{tag}: {:?}", text(&o));
        assert!(text(&o).1.contains("'use_cache_branch' is missing"), "{:?}", text(&o));
        let mut typo = without.clone();
        let cond = &inputs.last().unwrap().1;
        typo.extend(["--input".to_string(), cond.replacen("use_cache_branch=", "use_cache_brunch=", 1)]);
        let o = glufuse(&typo.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(2), "{tag}: {:?}", text(&o));
        assert!(text(&o).1.contains("the graph has no input 'use_cache_brunch'"), "{:?}", text(&o));
    }
}

#[test]
fn default_job_runs() {
    let o = glufuse(&[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    // The bundled export: its two gated FFNs fuse, the interpreter matches onnxruntime, and so
    // does the GPU (where there is one), fused and not.
    assert!(out.contains("bundled default model, tests/data/models/llama_dynseq.onnx"), "{out}");
    assert!(out.contains("2 candidate(s), 2 fused"), "{out}");
    // (Its weights held as [N, K] by the weights-nk pass: its x is the norm's program.)
    assert!(out.contains("FusedGateUp(silu, nk)"), "{out}");
    assert!(out.contains("original vs onnxruntime: max abs err"), "{out}");
    assert!(out.contains("fused vs original:"), "{out}");
    #[cfg(feature = "gpu")]
    if common::gpu().is_some() {
        assert_eq!(out.matches("vs onnxruntime: max abs err").count(), 3, "{out}");
        assert!(out.contains("  fused   :  26 kernels"), "{out}");
        assert!(out.contains("merge projections: 6 products into 2"), "{out}");
    }
}

#[test]
fn missing_adapter_is_a_clear_job_failure_and_interp_still_works() {
    let g = graph("swiglu_silu_op");
    let o = Command::new(env!("CARGO_BIN_EXE_glufuse"))
        .args(["run", &g, "--check"])
        .env("WGPU_ADAPTER_NAME", "no-such-adapter-anywhere")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert!(!err.contains("panicked"), "{err}");
    if cfg!(feature = "gpu") {
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains("GPU: no adapter's name contains"), "{err}");
    } else {
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("built without GPU support"), "{err}");
    }
    let o = glufuse(&["interp", &g]);
    assert!(o.status.success());
}

#[test]
fn argument_errors_are_clear_and_exit_2() {
    let g = graph("swiglu_silu_op");
    let mut msgs = String::new();
    for args in [
        vec!["interp", g.as_str(), "--dim", "batch"],
        vec!["interp", g.as_str(), "--dim", "batch=lots"],
        vec!["interp", g.as_str(), "--input", "x"],
        vec!["interp", g.as_str(), "--input", "nope=x.npy"],
        vec!["bench", "--shapes", "4096"],
        vec!["bench", "--part", "fused"],
        vec!["bench", "--gemm-tiles", "6x16"],
        vec!["synth", "--layers", "0", "-o", "/nonexistent/never-written.json"],
    ] {
        let o = glufuse(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        if !cfg!(feature = "gpu") && args[0] == "bench" {
            assert!(err.contains("`glufuse bench` needs the GPU, but this glufuse was built without"), "{err}");
            continue;
        }
        msgs.push_str(&format!("$ glufuse {}\n{}", args[..].join(" ").replace(&g, "GRAPH"), err));
    }
    // Without the `gpu` feature, `bench` only says that it needs it (checked above).
    let name = if cfg!(feature = "gpu") { "cli_argument_errors" } else { "cli_argument_errors_without_gpu" };
    insta::assert_snapshot!(name, msgs);
}

/// `wgsl --device` writes what `run` executes on this adapter: with subgroups, the `[N,K]`
/// GEMV sums with `subgroupAdd`; the portable default never uses them.
#[cfg(feature = "gpu")]
#[test]
fn wgsl_for_the_device_uses_its_subgroups() {
    let Some(gpu) = common::gpu() else { return };
    let g = graph("swiglu_nk_transpose");
    let fused_kernel = |extra: &[&str]| -> String {
        let out = tmp();
        let mut args =
            vec!["wgsl", g.as_str(), "-o", out.path().to_str().unwrap(), "--dim", "batch=2", "--dim", "seq=3"];
        args.extend_from_slice(extra);
        let o = glufuse(&args);
        assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
        let mut texts = String::new();
        for e in std::fs::read_dir(out.path()).unwrap() {
            texts.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
        texts
    };
    assert!(!fused_kernel(&[]).contains("subgroupAdd"));
    let on_device = fused_kernel(&["--device"]);
    assert_eq!(on_device.contains("subgroupAdd"), gpu.target().subgroup_size.is_some(), "{on_device}");
}

#[cfg(feature = "gpu")]
#[test]
fn run_tune_reports_each_gemm_and_still_checks() {
    let Some(gpu) = common::gpu() else { return };
    let d = tmp();
    let p = d.path().join("prefill.json");
    let args = ["synth", "--layers", "1", "--hidden", "64", "--intermediate", "176", "--batch", "40", "-o"];
    let o = glufuse(&[&args[..], &[p.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{:?}", text(&o));
    let o = glufuse(&["run", p.to_str().unwrap(), "--tune", "--check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    // A software adapter's timings say little about a GPU: one round of one dispatch there.
    let note = "tuning on a software adapter: 1 round of one dispatch per tiling";
    assert_eq!(out.contains(note), gpu.is_software(), "{out}");
    let tuned: Vec<&str> = out.lines().filter(|l| l.starts_with("tuned ")).collect();
    // q, k, v, o, the fused gate/up and the down projection; the attention ones share a shape.
    assert_eq!(tuned.len(), 6, "{out}");
    assert!(tuned.iter().any(|l| l.starts_with("tuned layers.0.mlp.mul: ") && l.contains("8x8x8: ")), "{out}");
    assert_eq!(tuned.iter().filter(|l| l.ends_with("(as the same shape before)")).count(), 3, "{out}");
    assert!(out.contains("check layers.0.mlp_residual"), "{out}");
}

/// `bench` times each graph in a child process that reports its figures as JSON: the table
/// carries the device, its cooperative matrices, the copy yardstick and the row the children
/// measured with the kernels chosen (and why), and `--json` the same row.
#[cfg(feature = "gpu")]
#[test]
fn bench_assembles_the_table_from_its_children() {
    if common::gpu().is_none() {
        return;
    }
    let d = tmp();
    let j = d.path().join("rows.json");
    let args = ["bench", "--shapes", "16x32", "--rows", "1", "--dtypes", "f32", "--reps", "1", "--samples", "1"];
    let o = glufuse(&[&args[..], &["--json", j.to_str().unwrap()]].concat());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("device: "), "{out}");
    assert!(out.contains("fused and unfused graphs each in a fresh process"), "{out}");
    let copy: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("copy kernel (")?.split("): ").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no copy figure: {out}"));
    assert!(copy.is_finite() && copy >= 0.0, "{out}");
    let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("| 16×32 |")).collect();
    assert_eq!(rows.len(), 1, "{out}");
    let cells: Vec<&str> =
        rows[0].strip_prefix("| ").and_then(|r| r.strip_suffix(" |")).unwrap().split(" | ").collect();
    assert_eq!(cells.len(), 12, "{out}");
    assert_eq!(cells[..3], ["16×32", "1", "f32"], "{out}");
    // The fused kernel, its choice with the reason, the unfused graph's projection kernels.
    assert_eq!(cells[9], "fused-gate-up-gemv-kn", "{out}");
    assert!(cells[10].starts_with("gemv-kn: M=1 ≤ 32") && cells[10].contains("; not coop: "), "{out}");
    assert_eq!(cells[11], "gemv-kn", "{out}");
    assert!(out.contains("\ncooperative matrices: "), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    let r = &v[0];
    assert_eq!((r["h"].as_u64(), r["i"].as_u64(), r["m"].as_u64()), (Some(16), Some(32), Some(1)), "{v}");
    assert!(r["fused_us"].as_f64().unwrap() > 0.0 && r["unfused_us"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(r["dispatches"], serde_json::json!([1, 4]), "{v}");
    assert_eq!((r["fused_choice"].as_str(), r["unfused_choice"].as_str()), (Some(cells[10]), Some(cells[11])), "{v}");
}

/// `bench MODEL` times a whole graph fused and unfused, each in a child process, with inputs
/// made up where none are given (token ids within the embedding's rows, masks all ones):
/// the header says how, the table has a row per kernel family with its dispatches, and
/// `--json` holds both parts (no buffer made per call). `--same-process` gives the same
/// rows from one process.
#[cfg(feature = "gpu")]
#[test]
fn bench_model_times_a_whole_graph_fused_and_unfused() {
    let Some((d, m)) = kvstep_bench() else { return };
    for same in [false, true] {
        let j = d.path().join("model.json");
        let mut args = vec!["bench", m.as_str(), "--reps", "1", "--samples", "1"];
        args.extend(KVSTEP_DIMS);
        args.extend(["--json", j.to_str().unwrap()]);
        if same {
            args.push("--same-process");
        }
        let o = glufuse(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{err}");
        assert!(out.starts_with(&format!("model: {m}\nbinding: all=5, new=1, past=4\n")), "{out}");
        assert!(
            out.contains(
                "inputs: input_ids: token ids, uniform in 0..128 (seed 7); attention_mask: all ones; 4 float input(s)"
            ),
            "{out}"
        );
        let process = if same { "in this one process" } else { "each in a fresh process" };
        assert!(out.contains(process), "{out}");
        assert!(out.lines().any(|l| l.starts_with("device: ")), "{out}");
        for row in [
            "| **GPU time per call, µs** |",
            "| dispatches |",
            "| gemv µs (dispatches, share) |",
            "| **call latency (Session::run, wall), µs** |",
            "| buffers / bind groups made per call | 0 | 0 |",
        ] {
            assert!(out.contains(row), "no row {row:?}: {out}");
        }
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
        let parts = v["parts"].as_array().unwrap();
        assert_eq!(parts.iter().map(|p| p["part"].as_str().unwrap()).collect::<Vec<_>>(), ["fused", "unfused"], "{v}");
        let (f, u) = (&parts[0], &parts[1]);
        assert_eq!((f["fused_units"].as_u64(), u["fused_units"].as_u64()), (Some(2), Some(0)), "{v}");
        // Each fused unit replaces two projections, an activation and a product (or more).
        assert!(u["dispatches"].as_u64().unwrap() >= f["dispatches"].as_u64().unwrap() + 2 * 3, "{v}");
        for p in parts {
            assert!(p["gpu_us"].as_f64().unwrap() > 0.0 && p["call"]["median_us"].as_f64().unwrap() > 0.0, "{p}");
            let fams = p["families"].as_array().unwrap();
            let n: u64 = fams.iter().map(|f| f["dispatches"].as_u64().unwrap()).sum();
            assert_eq!(n, p["dispatches"].as_u64().unwrap(), "{p}");
            assert_eq!(p["setup"]["created_per_call"], serde_json::json!({"buffers": 0, "bind_groups": 0}), "{p}");
        }
    }
}

/// `bench MODEL --leave-out PATTERN` leaves the dispatches a pattern matches (by `NAME|KIND`,
/// `&` for all of, `!` for not) out of the GPU time, says so above the table and in a row, and
/// counts them in the JSON: here as many as the kernels `glufuse wgsl --device` lists that
/// the patterns match.
#[cfg(feature = "gpu")]
#[test]
fn bench_model_leaves_dispatches_out_of_the_gpu_time() {
    let Some((d, m)) = kvstep_bench() else { return };
    let dims = KVSTEP_DIMS;
    let w = d.path().join("wgsl");
    let mut args = vec!["wgsl", m.as_str(), "--device", "-o", w.to_str().unwrap()];
    args.extend(dims);
    assert_eq!(glufuse(&args).status.code(), Some(0));
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(w.join("manifest.json")).unwrap()).unwrap();
    let tags: Vec<String> = manifest["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            let file = k["file"].as_str().unwrap();
            let name = file.split_once('_').unwrap().1.strip_suffix(".wgsl").unwrap();
            format!("{name}|{}", k["kind"].as_str().unwrap())
        })
        .collect();
    let patterns = ["|attention", "|elementwise-program&!present", "no kernel is named so|"];
    let matches = |p: &str, tag: &str| {
        p.split('&').all(|q| q.strip_prefix('!').map_or_else(|| tag.contains(q), |q| !tag.contains(q)))
    };
    let want = tags.iter().filter(|t| patterns.iter().any(|p| matches(p, t))).count();
    assert!(want > 0 && want < tags.len(), "{tags:?}");
    let j = d.path().join("left.json");
    let mut args = vec!["bench", m.as_str(), "--in-process", "--part", "fused", "--reps", "1", "--samples", "1"];
    args.extend(dims);
    for p in patterns {
        args.extend(["--leave-out", p]);
    }
    args.extend(["--json", j.to_str().unwrap()]);
    let o = glufuse(&args);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let said =
        format!("left out of the GPU time per call (--leave-out): the dispatches matching {}", patterns.join(", "));
    assert!(out.contains(&said), "{out}");
    assert!(out.contains(&format!("| dispatches left out of the GPU time | {want} |")), "{out}");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    assert_eq!(v["leave_out"], serde_json::json!(patterns), "{v}");
    assert_eq!(v["parts"][0]["left_out"].as_u64(), Some(want as u64), "{v}");
    assert_eq!(v["parts"][0]["dispatches"].as_u64(), Some(tags.len() as u64), "{v}");
    // Without MODEL there is nothing to leave out.
    let o = glufuse(&["bench", "--leave-out", "|attention"]);
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
}

/// `bench MODEL --alone PATTERN` times each dispatch a pattern matches alone, in a chain on
/// the model's buffers, beside what it costs the model: a table row and a JSON entry for each,
/// in the kernels' order, as many as the patterns match (here the attention and the row
/// programs but the present keys' and values'), every time positive; none without the flag.
#[cfg(feature = "gpu")]
#[test]
fn bench_model_times_dispatches_alone() {
    let Some((d, m)) = kvstep_bench() else { return };
    let dims = KVSTEP_DIMS;
    let run = |extra: &[&str], json: &std::path::Path| {
        let mut args = vec!["bench", m.as_str(), "--in-process", "--part", "fused", "--reps", "1", "--samples", "1"];
        args.extend(dims);
        args.extend(extra);
        args.extend(["--json", json.to_str().unwrap()]);
        let o = glufuse(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{err}");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
        (out, v)
    };
    let (out, v) = run(
        &["--alone", "|attention", "--alone", "|elementwise-program&!present", "--alone-after", "2"],
        &d.path().join("a.json"),
    );
    let part = &v["parts"][0];
    let kinds: Vec<(String, String)> = part["dispatch_us"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["kernel"].as_str().unwrap().to_string(), k["kind"].as_str().unwrap().to_string()))
        .collect();
    let want: Vec<&(String, String)> = kinds
        .iter()
        .filter(|(n, k)| k == "attention" || (k == "elementwise-program" && !n.contains("present")))
        .collect();
    let alone = part["alone"].as_array().unwrap();
    assert!(!want.is_empty() && want.len() < kinds.len(), "{kinds:?}");
    assert_eq!(alone.len(), want.len(), "{alone:?}");
    for (a, (name, kind)) in alone.iter().zip(&want) {
        assert_eq!((a["kernel"].as_str().unwrap(), a["kind"].as_str().unwrap()), (name.as_str(), kind.as_str()));
        assert!(a["alone_us"].as_f64().unwrap() > 0.0, "{a}");
        assert!(a["in_model_us"].as_f64().is_some(), "{a}");
        // Timed after the two dispatches before it, or as many as the call has.
        let index = kinds.iter().position(|k| k.0 == *name).unwrap();
        assert_eq!(a["after"].as_u64(), Some(index.min(2) as u64), "{a}");
        assert_eq!(a["after_us"].as_f64().is_some_and(f64::is_finite), index > 0, "{a}");
        assert!(out.contains(&format!("| {name} | {kind} | ")), "{out}");
    }
    assert!(
        out.contains("dispatches alone (--alone), fused") && out.contains("| in the model | alone | after |"),
        "{out}"
    );
    let (out, v) = run(&[], &d.path().join("b.json"));
    assert!(v["parts"][0].get("alone").is_none() && !out.contains("--alone"), "{out}");
    // Without --alone, --alone-after has nothing to time: refused.
    let o = glufuse(&["bench", m.as_str(), "--in-process", "--part", "fused", "--alone-after", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
}

/// The bench tests' model, `llama_kvstep.onnx`, and a scratch folder; `None` without an adapter.
#[cfg(feature = "gpu")]
fn kvstep_bench() -> Option<(tempfile::TempDir, String)> {
    common::gpu()?;
    Some((tmp(), model("llama_kvstep.onnx")))
}

/// The sizes the bench tests bind `llama_kvstep.onnx`'s symbols to.
#[cfg(feature = "gpu")]
const KVSTEP_DIMS: [&str; 6] = ["--dim", "past=4", "--dim", "new=1", "--dim", "all=5"];

fn model(name: &str) -> String {
    common::root().join("tests/data/models").join(name).to_string_lossy().into_owned()
}

/// `--input NAME=FILE` for every input of a reference set of tests/data/models.
fn model_inputs(m: &str, tag: &str, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .flat_map(|n| ["--input".to_string(), format!("{n}={}", model(&format!("{m}.{tag}.{n}.npy")))])
        .collect()
}

const KV_INPUTS: [&str; 6] = ["input_ids", "attention_mask", "past_0_k", "past_0_v", "past_1_k", "past_1_v"];

#[test]
fn interp_runs_a_kv_cache_step_with_named_inputs_and_outputs() {
    let d = tmp();
    let (first, present, logits) = (d.path().join("first.npy"), d.path().join("p.npy"), d.path().join("l.npy"));
    let mut args = vec!["interp".to_string(), model("llama_kvstep.onnx")];
    args.extend(model_inputs("llama_kvstep", "past4n3", &KV_INPUTS));
    for o in [
        first.to_str().unwrap().to_string(),
        format!("present_1_v={}", present.display()),
        format!("logits={}", logits.display()),
    ] {
        args.extend(["--output".to_string(), o]);
    }
    let o = glufuse(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // Every output is summarised by its name, past + new = 7 rows of the cache.
    assert!(out.contains("  logits: shape [1, 3, 128] f32"), "{out}");
    assert!(out.contains("  present_1_v: shape [1, 2, 7, 8] f32"), "{out}");
    let f32ty = |s: &[u64]| glufuse::ir::TensorType::new(glufuse::ir::DType::F32, glufuse::ir::shape_of(s));
    for (file, want, shape) in [
        (&first, "logits", &[1u64, 3, 128][..]),
        (&logits, "logits", &[1, 3, 128]),
        (&present, "present_1_v", &[1, 2, 7, 8]),
    ] {
        let got = glufuse::files::read_npy(file, &f32ty(shape)).unwrap();
        let reference = model(&format!("llama_kvstep.past4n3.out.{want}.npy"));
        let want = glufuse::files::read_npy(std::path::Path::new(&reference), &f32ty(shape)).unwrap();
        let (_, rel) = glufuse::interp::compare(&got, &want);
        assert!(rel < 1e-4, "{}: rel {rel:e}", file.display());
    }
}

/// stderr without what the Vulkan loader says there on a machine without `XDG_RUNTIME_DIR`.
fn glufuse_lines(err: &str) -> String {
    err.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).map(|l| format!("{l}\n")).collect()
}

/// The messages of `glufuse CMD` (interp or run) on bad inputs to whole models, each exit 2.
fn bad_model_input_messages(cmd: &str) -> String {
    let d = tmp();
    let npy = |name: &str, t: glufuse::tensor::Tensor| {
        let p = d.path().join(name);
        glufuse::files::write_npy(&p, &t).unwrap();
        p.to_string_lossy().into_owned()
    };
    let ids = |v: Vec<i64>| glufuse::tensor::Tensor::i64(vec![1, v.len()], v).unwrap();
    let ok_ids = npy("ids.npy", ids(vec![1, 2, 3]));
    let oov = npy("oov.npy", ids(vec![1, 2, 128]));
    let neg = npy("neg.npy", ids(vec![-129, 2, 3]));
    let floats = npy("f.npy", glufuse::tensor::Tensor::new(vec![1, 3], vec![1.0; 3]).unwrap());
    let rank3 = npy("r3.npy", glufuse::tensor::Tensor::i64(vec![1, 1, 3], vec![1; 3]).unwrap());
    let mask3 = npy("m3.npy", ids(vec![1, 1, 1]));
    let mask5 = npy("m5.npy", ids(vec![1, 1, 1, 1, 1]));
    let bools = npy("b.npy", glufuse::tensor::Tensor::bool(vec![1, 3], vec![true; 3]).unwrap());
    let dynseq = model("llama_dynseq.onnx");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("token id past the vocabulary", vec![format!("input_ids={oov}"), format!("attention_mask={mask3}")]),
        ("negative token id past the vocabulary", vec![format!("input_ids={neg}"), format!("attention_mask={mask3}")]),
        ("float token ids", vec![format!("input_ids={floats}"), format!("attention_mask={mask3}")]),
        ("bool mask", vec![format!("input_ids={ok_ids}"), format!("attention_mask={bools}")]),
        ("ids of rank 3", vec![format!("input_ids={rank3}"), format!("attention_mask={mask3}")]),
        ("seq 3 and 5", vec![format!("input_ids={ok_ids}"), format!("attention_mask={mask5}")]),
        ("a missing input", vec![format!("input_ids={ok_ids}")]),
        ("an input the graph does not have", vec![format!("input_id={ok_ids}"), format!("attention_mask={mask3}")]),
        ("an input given twice", vec![format!("input_ids={ok_ids}"), format!("input_ids={ok_ids}")]),
    ];
    let mut msgs = String::new();
    for (what, inputs) in cases {
        let mut args = vec![cmd.to_string(), dynseq.clone()];
        for i in inputs {
            args.extend(["--input".to_string(), i]);
        }
        let o = glufuse(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = glufuse_lines(&text(&o).1);
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        msgs.push_str(&format!(
            "{what}:\n  {}",
            err.replace(d.path().to_str().unwrap(), "TMP").replace(&dynseq, "MODEL")
        ));
    }
    // A KV-cache step whose mask (all = 7) is shorter than past + new (4 + 5), and an output
    // the graph does not have.
    let kv = model("llama_kvstep.onnx");
    let mut args = vec![cmd.to_string(), kv.clone()];
    args.extend(model_inputs("llama_kvstep", "past4n3", &KV_INPUTS[1..]));
    args.extend(["--input".to_string(), format!("input_ids={}", npy("ids5.npy", ids(vec![1; 5])))]);
    let o = glufuse(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2));
    msgs.push_str(&format!("a mask shorter than past + new:\n  {}", glufuse_lines(&text(&o).1).replace(&kv, "MODEL")));
    let mut args = vec![
        cmd.to_string(),
        kv.clone(),
        "--output".to_string(),
        format!("present={}", d.path().join("p.npy").display()),
    ];
    args.extend(model_inputs("llama_kvstep", "past4n3", &KV_INPUTS));
    let o = glufuse(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(2));
    assert!(!d.path().join("p.npy").exists());
    msgs.push_str(&format!(
        "an output the graph does not have:\n  {}",
        glufuse_lines(&text(&o).1).replace(d.path().to_str().unwrap(), "TMP")
    ));
    msgs
}

#[test]
fn bad_model_inputs_exit_2_naming_the_input() {
    insta::assert_snapshot!("interp_bad_model_inputs", bad_model_input_messages("interp"));
}

/// `run` checks its inputs as `interp` does (the same messages), but for what only the GPU's
/// gathers see (a token id past the vocabulary, a mask shorter than past + new): their range
/// checks name the node, the index, the valid range and the input.
#[cfg(feature = "gpu")]
#[test]
fn run_refuses_bad_model_inputs_naming_the_input() {
    if common::gpu().is_none() {
        return;
    }
    let run = bad_model_input_messages("run");
    let interp = bad_model_input_messages("interp");
    let differing: Vec<(&str, &str)> = run.lines().zip(interp.lines()).filter(|(a, b)| a != b).collect();
    assert_eq!(differing.len(), 3, "only the messages of the GPU checks differ: {differing:#?}");
    insta::assert_snapshot!("run_bad_model_inputs", run);
}

/// `run` on whole models: inputs of any dtype by name, named outputs written, every output
/// checked against the interpreter (`--check`) and, here, against onnxruntime's.
#[cfg(feature = "gpu")]
#[test]
fn run_checks_whole_models_and_writes_named_outputs() {
    if common::gpu().is_none() {
        return;
    }
    let d = tmp();
    for (m, tag, inputs, outputs) in [
        ("llama_kvstep", "past4n3", &KV_INPUTS[..], &["logits", "present_0_k", "present_1_v"][..]),
        ("gemma2_f16_kvstep", "past9", &KV_INPUTS[..], &["present_1_k"][..]),
        ("t5_dynseq", "b2s11", &KV_INPUTS[..2], &["hidden"][..]),
    ] {
        let mut args = vec!["run".to_string(), model(&format!("{m}.onnx")), "--check".to_string()];
        args.extend(model_inputs(m, tag, inputs));
        for o in outputs {
            args.extend(["--output".to_string(), format!("{o}={}", d.path().join(format!("{m}.{o}.npy")).display())]);
        }
        let o = glufuse(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{m}: {err}");
        assert!(out.contains("(fused)"), "{out}");
        for o in outputs {
            assert!(out.contains(&format!("  check {o}: max abs err")), "{m}: {out}");
            let dtype = if m.contains("f16") { glufuse::ir::DType::F16 } else { glufuse::ir::DType::F32 };
            let want_path = model(&format!("{m}.{tag}.out.{o}.npy"));
            let bytes = std::fs::read(&want_path).unwrap();
            let want_shape = npy_shape(&bytes);
            let ty = glufuse::ir::TensorType::new(dtype, glufuse::ir::shape_of(&want_shape));
            let want = glufuse::files::parse_npy(&bytes, &ty).unwrap();
            let got = glufuse::files::read_npy(&d.path().join(format!("{m}.{o}.npy")), &ty).unwrap();
            let (_, rel) = glufuse::interp::compare(&got, &want);
            let tol = if m.contains("f16") { 2e-2 } else { 1e-4 };
            assert!(rel <= tol, "{m} {o}: rel {rel:e} against onnxruntime");
        }
    }
}

/// The shape a `.npy` header gives.
#[cfg(feature = "gpu")]
fn npy_shape(bytes: &[u8]) -> Vec<u64> {
    let header = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]);
    let inside = header.split_once("'shape': (").unwrap().1.split_once(')').unwrap().0;
    inside.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.parse().unwrap()).collect()
}

/// The graph format is read from the content, the extension only a hint: an ONNX model named
/// `.json` and a JSON graph named `.onnx` load; a file that is neither says what it looks
/// like (snapshot), exit 2.
#[test]
fn graph_format_is_sniffed_from_the_content() {
    let d = tmp();
    let onnx_as_json = d.path().join("model.json");
    std::fs::copy(common::root().join("tests/data/onnx/llama_mlp_ts.onnx"), &onnx_as_json).unwrap();
    let json_as_onnx = d.path().join("graph.onnx");
    std::fs::copy(graph("swiglu_bias"), &json_as_onnx).unwrap();
    for (p, fused) in [(&onnx_as_json, 1), (&json_as_onnx, 1)] {
        let o = glufuse(&["fuse", p.to_str().unwrap(), "--explain"]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{}: {err}", p.display());
        assert!(out.contains(&format!("{fused} fused")), "{}: {out}", p.display());
    }
    let npy = glufuse::files::npy_bytes(&glufuse::tensor::Tensor::new(vec![2], vec![1.0, 2.0]).unwrap()).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.json", vec![]),
        ("array.json", b"[1, 2, 3]\n".to_vec()),
        ("notes.onnx", b"this is not a model\nat all\n".to_vec()),
        ("weights.onnx", npy),
        ("checkpoint.json", b"PK\x03\x04\x14\x00\x00\x00".to_vec()),
        ("pickle.onnx", vec![0x80, 0x04, 0x95, 0x10, 0, 0]),
        ("noise.bin", vec![0xff, 0x00, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef, 0x01]),
    ];
    let mut msgs = String::new();
    for (name, bytes) in cases {
        let p = d.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        let o = glufuse(&["show", p.to_str().unwrap()]);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(name), "the error names the file: {err}");
        msgs.push_str(&err.replace(d.path().to_str().unwrap(), "TMP"));
    }
    // Binary content named .onnx that opens like no model goes to the ONNX reader, whose
    // error says what is wrong with it.
    let p = d.path().join("truncated.onnx");
    std::fs::write(&p, [0xff, 0x00, 0x13]).unwrap();
    let o = glufuse(&["show", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    msgs.push_str(&text(&o).1.replace(d.path().to_str().unwrap(), "TMP"));
    insta::assert_snapshot!("sniffed_graph_formats", msgs);
}

/// A file that cannot be written is named as the user gave it, never as the temporary file
/// the atomic write went through; exit 1.
#[test]
fn write_errors_name_the_destination() {
    let out = "/nonexistent-glufuse-dir/sub/out.json";
    let o = glufuse(&["fuse", &graph("swiglu_bias"), "-o", out]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err, format!("error: cannot write {out}: No such file or directory (os error 2)\n"));
    assert!(!err.contains(".tmp"), "{err}");
}

/// `wgsl -o DIR` owns DIR: a second run replaces the first one's kernels (no stale file
/// beside the new manifest); a folder with anything else in it is refused, untouched.
#[test]
fn wgsl_owns_its_output_folder() {
    let d = tmp();
    let out = d.path().join("kernels");
    let listing = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    };
    let run = |g: &str, extra: &[&str]| {
        let mut args = vec!["wgsl", g, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        glufuse(&args)
    };
    let decoder = graph("decoder_2_layers");
    assert_eq!(run(&decoder, &["--unfused"]).status.code(), Some(0));
    let first = listing(&out);
    let small = graph("swiglu_silu_op");
    let o = run(&small, &[]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let second = listing(&out);
    let fresh = d.path().join("fresh");
    let o = glufuse(&["wgsl", &small, "-o", fresh.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(second, listing(&fresh), "what a fresh folder gets; the decoder's {} files are gone", first.len());
    assert!(first.len() > second.len() + 10, "{first:?}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kernels"].as_array().unwrap().len(), second.len() - 1);
    // A folder of the user's: refused, nothing touched.
    let mine = d.path().join("mine");
    std::fs::create_dir(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "keep me").unwrap();
    std::fs::write(mine.join("001_old.wgsl"), "// an earlier kernel").unwrap();
    let o = glufuse(&["wgsl", &small, "-o", mine.to_str().unwrap()]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("notes.txt") && err.contains("give a new or empty folder"), "{err}");
    assert_eq!(listing(&mine), ["001_old.wgsl", "notes.txt"]);
    assert_eq!(std::fs::read_to_string(mine.join("notes.txt")).unwrap(), "keep me");
}

/// `show --format json` writes each array of data on one line: a whole model's JSON is a
/// line per node field, not per value, and loads back to the same graph.
#[test]
fn json_of_a_model_keeps_data_on_one_line() {
    let m = model("shared_llama_dynseq_dynamo.onnx");
    let o = glufuse(&["show", &m, "--format", "json"]);
    assert!(o.status.success());
    let json = String::from_utf8(o.stdout).unwrap();
    let g = glufuse::load(&m).unwrap();
    let lines = json.lines().count();
    assert!(lines < 12 * g.g.node_count(), "{lines} lines for {} nodes", g.g.node_count());
    let back = glufuse::json::from_str(&json).unwrap();
    assert_eq!(glufuse::json::to_string(&back).unwrap(), json);
    assert_eq!(back.to_string(), g.to_string());
}

/// What the progress bars draw goes to a terminal only: through a pipe, a command's stderr
/// holds nothing but its errors.
#[test]
fn progress_is_not_drawn_into_pipes() {
    for args in [vec!["show", &graph("decoder_2_layers")[..]], vec!["interp", &graph("decoder_2_layers")[..]]] {
        let o = glufuse(&args);
        assert!(o.status.success());
        assert_eq!(text(&o).1, "", "{args:?}");
    }
}

/// `--gemm-tiles`'s help gives one default.
#[test]
fn gemm_tiles_help_gives_one_default() {
    let o = glufuse(&["bench", "--help"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("a bare RTxBK means NY=16") && out.contains("Without this option the tiling is 8x8x8"),
        "{out}"
    );
    assert!(!out.contains("16 if left out"), "{out}");
}

/// An unknown `WGPU_BACKEND` is an error naming the valid ones (wgpu alone would quietly use
/// no backend), and finding no adapter says how to get a driver; both exit 1.
#[cfg(feature = "gpu")]
#[test]
fn backend_choice_and_a_missing_driver_are_explained() {
    let g = graph("swiglu_silu_op");
    let o = Command::new(env!("CARGO_BIN_EXE_glufuse"))
        .args(["run", &g])
        .env("WGPU_BACKEND", "vulkan,bogus")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "error: GPU: WGPU_BACKEND=\"vulkan,bogus\": \"bogus\" is not a backend; give one or more of vulkan, metal, \
         dx12, gl (comma-separated), or leave WGPU_BACKEND unset for all\n"
    );
    // No Vulkan driver to be found: the message names the backend tried and the packages.
    let o = Command::new(env!("CARGO_BIN_EXE_glufuse"))
        .args(["run", &g])
        .env("WGPU_BACKEND", "vulkan")
        .env("VK_ICD_FILENAMES", "/nonexistent/icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/icd.json")
        .output()
        .unwrap();
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: GPU: no GPU adapter found (backends tried: Vulkan)."), "{err}");
    assert!(err.contains("apt-get install mesa-vulkan-drivers") && err.contains("WGPU_BACKEND"), "{err}");
}

/// Mesa's drivers complain when XDG_RUNTIME_DIR is unset; the binary gives them a folder, so
/// a GPU command's stderr stays clean.
#[cfg(feature = "gpu")]
#[test]
fn gpu_commands_print_no_driver_noise() {
    if common::gpu().is_none() {
        return;
    }
    // Opening the adapter is what makes the drivers speak (`wgsl --device` opens it and,
    // unlike `run`, compiles nothing).
    let d = tmp();
    let out = d.path().join("k");
    let o = Command::new(env!("CARGO_BIN_EXE_glufuse"))
        .args(["wgsl", &graph("swiglu_silu_op"), "-o", out.to_str().unwrap(), "--device"])
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert_eq!(err, "", "stderr of a successful GPU command");
}

/// `bench` prints the table's header before its first row, as rows are measured: a run
/// stopped after the first row has a table with a header.
#[cfg(feature = "gpu")]
#[test]
fn bench_prints_its_header_before_the_first_row() {
    use std::io::BufRead;
    if common::gpu().is_none() {
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_glufuse"))
        .args(["bench", "--shapes", "16x32", "--rows", "1,2,3", "--dtypes", "f32", "--reps", "1", "--samples", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut seen = vec![];
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let row = line.starts_with("| 16×32 |");
        seen.push(line);
        if row {
            break;
        }
    }
    // Stopped after the first row: the rest is never measured.
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.first().is_some_and(|l| l.starts_with("device: ")), "{seen:?}");
    assert!(seen.iter().any(|l| l.starts_with("| H×I | M |")), "{seen:?}");
    assert!(seen.last().is_some_and(|l| l.starts_with("| 16×32 | 1 |")), "{seen:?}");
}

/// Built without the `gpu` feature, the commands that need a GPU say so (exit 2), and the
/// default job does everything else.
#[cfg(not(feature = "gpu"))]
#[test]
fn without_the_gpu_feature_gpu_commands_say_so() {
    let g = graph("swiglu_silu_op");
    let d = tmp();
    let out = d.path().join("k");
    for (args, what) in [
        (vec!["run", &g[..]], "glufuse run"),
        (vec!["bench", "--shapes", "16x32", "--rows", "1"], "glufuse bench"),
        (vec!["wgsl", &g[..], "-o", out.to_str().unwrap(), "--device"], "glufuse wgsl --device"),
    ] {
        let o = glufuse(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err,
            format!(
                "error: `{what}` needs the GPU, but this glufuse was built without GPU support (cargo feature `gpu` \
                 off); build it with the default features (`cargo install glufuse`)\n"
            )
        );
    }
    let o = glufuse(&[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("this glufuse was built without GPU support"), "{out}");
}

/// Makes a FIFO (named pipe) at `p`.
#[cfg(unix)]
fn mkfifo(p: &std::path::Path) {
    assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
}

/// Reading takes regular files only: a FIFO (which blocked forever), a device (`/dev/zero`
/// filled memory) or a directory is refused before it is opened for reading, exit 2.
#[cfg(unix)]
#[test]
fn special_files_are_refused_before_they_are_read() {
    let d = tmp();
    let fifo = d.path().join("model.json");
    mkfifo(&fifo);
    let g = graph("swiglu_silu_op");
    for (args, want) in [
        (vec!["show", fifo.to_str().unwrap()], "cannot read: it is a FIFO (named pipe), not a regular file"),
        (vec!["show", "/dev/zero"], "/dev/zero: cannot read: it is a character device, not a regular file"),
        (vec!["fuse", d.path().to_str().unwrap()], "cannot read: it is a directory, not a regular file"),
        (
            vec!["interp", g.as_str(), "--input", "x=/dev/zero"],
            "graph input 'x': /dev/zero: cannot read: it is a character device",
        ),
    ] {
        let o = glufuse(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// The device nodes `-o` is tried on: copies of /dev/null and /dev/full made in `dir` where
/// this user may make devices, else the real ones (which only root could replace).
#[cfg(unix)]
fn devices(dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let made = |name: &str, minor: &str| {
        let p = dir.join(name);
        let ok = Command::new("mknod").arg(&p).args(["c", "1", minor]).status().is_ok_and(|s| s.success());
        ok.then_some(p)
    };
    match (made("null", "3"), made("full", "7")) {
        (Some(n), Some(f)) => (n, f),
        _ => ("/dev/null".into(), "/dev/full".into()),
    }
}

/// `-o` writes a regular file atomically, keeping a replaced file's permissions (a new one
/// gets 0666 less the umask, not tempfile's 0600), replaces what a symbolic link points to,
/// and writes straight through to a character device or a FIFO, never replacing it:
/// `/dev/null` works, `/dev/full` is a clean write error (exit 1), `-` is standard output.
#[cfg(unix)]
#[test]
fn outputs_are_atomic_files_or_written_straight_through_to_devices_and_fifos() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let d = tmp();
    let g = graph("swiglu_silu_op");
    let fuse_to = |out: &std::path::Path| glufuse(&["fuse", &g, "-o", out.to_str().unwrap()]);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // A new file: the mode any new file gets here.
    let probe = d.path().join("probe");
    std::fs::write(&probe, "").unwrap();
    let new = d.path().join("new.json");
    assert!(fuse_to(&new).status.success());
    assert_eq!(mode(&new), mode(&probe));
    // A replaced file keeps its mode.
    let kept = d.path().join("kept.json");
    std::fs::write(&kept, "old").unwrap();
    std::fs::set_permissions(&kept, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(fuse_to(&kept).status.success());
    assert_eq!(mode(&kept), 0o640);
    assert!(std::fs::read_to_string(&kept).unwrap().starts_with('{'));
    // A link: its target is replaced, the link stays.
    let link = d.path().join("link.json");
    std::os::unix::fs::symlink("kept.json", &link).unwrap();
    std::fs::write(&kept, "old").unwrap();
    assert!(fuse_to(&link).status.success());
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert!(std::fs::read_to_string(&kept).unwrap().starts_with('{'));
    // Devices.
    let (null, full) = devices(d.path());
    let o = fuse_to(&null);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = fuse_to(&full);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("cannot write {}: No space left on device", full.display())), "{err}");
    for p in [&null, &full] {
        assert!(std::fs::metadata(p).unwrap().file_type().is_char_device(), "{} was replaced", p.display());
    }
    // A FIFO: written through to its reader.
    let fifo = d.path().join("out.fifo");
    mkfifo(&fifo);
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    assert!(fuse_to(&fifo).status.success());
    assert!(reader.join().unwrap().contains("\"format\": \"glufuse.graph/1\""));
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    // Standard output.
    let o = glufuse(&["fuse", &g, "-o", "-"]);
    assert!(o.status.success());
    assert!(text(&o).0.starts_with("{\n  \"format\": \"glufuse.graph/1\""), "{:?}", text(&o));
    // A directory is no file to write.
    let o = fuse_to(d.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("it is a directory"), "{:?}", text(&o));
}

/// A reader that goes away (`| head -1`) ends the printing quietly: exit 0, no panic, for
/// every command that prints.
#[test]
fn a_closed_stdout_ends_quietly() {
    let g = graph("swiglu_silu_op");
    let model = common::root().join("tests/data/onnx/llama_model_dynamo.onnx");
    #[cfg_attr(not(feature = "gpu"), allow(unused_mut))]
    let mut runs = vec![
        vec!["show", model.to_str().unwrap(), "--format", "json"],
        vec!["fuse", model.to_str().unwrap()],
        vec!["interp", g.as_str()],
        vec!["bench-pass", "--layers", "1,2", "--reps", "1"],
    ];
    #[cfg(feature = "gpu")]
    if common::gpu().is_some() {
        runs.push(vec!["run", g.as_str()]);
        let bench = ["bench", "--shapes", "16x32", "--rows", "1", "--dtypes", "f32", "--reps", "1", "--samples", "1"];
        runs.push([&bench[..], &["--in-process"]].concat());
    }
    for args in runs {
        let mut child = Command::new(env!("CARGO_BIN_EXE_glufuse"))
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader goes away before anything is written.
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {err}");
        // (lavapipe complains of XDG_RUNTIME_DIR on its own.)
        let ours = err.lines().filter(|l| !l.contains("XDG_RUNTIME_DIR")).collect::<Vec<_>>().join("\n");
        assert!(!ours.contains("panicked") && !ours.contains("error"), "{args:?}: {err}");
    }
    // Any other failure to write standard output is an error.
    #[cfg(target_os = "linux")]
    {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_glufuse")).args(["show", &g]).stdout(full).output().unwrap();
        assert_eq!(o.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&o.stderr).contains("cannot write standard output"));
    }
}

/// Degenerate asks: an output of a graph that has none, sizes whose product overflows, a
/// budget that does not parse or that a run exceeds: exit 2 with a message, never a panic.
#[test]
fn degenerate_runs_and_budgets_are_clear_errors() {
    let d = tmp();
    let empty = d.path().join("empty.json");
    std::fs::write(&empty, r#"{"format": "glufuse.graph/1", "nodes": [], "outputs": []}"#).unwrap();
    let out = d.path().join("o.npy");
    let sym = graph("reglu_batched_3d");
    // K = 0 and M = 0 products: WGSL for them validates (no division by zero in the writers,
    // no `/ 0u` in the kernels), and a run of them succeeds.
    let zero = d.path().join("zero.json");
    std::fs::write(
        &zero,
        r#"{"format": "glufuse.graph/1", "nodes": [
            {"name": "x", "op": "Input", "type": {"dtype": "f32", "shape": ["m", 0]}},
            {"name": "w", "op": "Weight", "type": {"dtype": "f32", "shape": [0, 8]}},
            {"name": "h", "op": "MatMul", "inputs": ["x", "w"]},
            {"name": "s", "op": "Split", "axis": 1, "sizes": [0, 8], "inputs": ["h"]},
            {"name": "y", "op": "Relu", "inputs": ["s:1"]}], "outputs": ["y", "s:0"]}"#,
    )
    .unwrap();
    for m in ["0", "1", "40"] {
        let o = glufuse(&[
            "wgsl",
            zero.to_str().unwrap(),
            "-o",
            d.path().join(m).to_str().unwrap(),
            "--dim",
            &format!("m={m}"),
        ]);
        assert!(o.status.success(), "m={m}: {:?}", text(&o));
        let o = glufuse(&["interp", zero.to_str().unwrap(), "--dim", &format!("m={m}")]);
        assert!(o.status.success(), "m={m}: {:?}", text(&o));
    }
    #[cfg(feature = "gpu")]
    if common::gpu().is_some() {
        let o = glufuse(&["run", zero.to_str().unwrap(), "--dim", "m=3", "--check"]);
        assert!(o.status.success(), "{:?}", text(&o));
        assert!(text(&o).0.contains("y: shape [3, 8] f32 mean 0.000000"), "{:?}", text(&o));
        let o = glufuse(&["run", empty.to_str().unwrap(), "--output", out.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    }
    let kdir = d.path().join("kernels").to_string_lossy().into_owned();
    let mut msgs = String::new();
    for (env, args) in [
        (None, vec!["interp", empty.to_str().unwrap(), "--output", out.to_str().unwrap()]),
        (None, vec!["interp", sym.as_str(), "--dim", "batch=4294967296", "--dim", "seq=4294967296"]),
        (None, vec!["interp", sym.as_str(), "--dim", "batch=100000", "--dim", "seq=100000"]),
        (None, vec!["wgsl", sym.as_str(), "-o", kdir.as_str(), "--dim", "batch=4294967296", "--dim", "seq=4294967296"]),
        (Some("lots"), vec!["interp", sym.as_str()]),
        (Some("4KiB"), vec!["interp", sym.as_str(), "--dim", "batch=64", "--dim", "seq=64"]),
    ] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_glufuse"));
        c.args(&args);
        if let Some(v) = env {
            c.env("GLUFUSE_MAX_TENSOR_BYTES", v);
        }
        let o = c.output().unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(!out.exists());
        let shown = args.join(" ").replace(&sym, "GRAPH").replace(d.path().to_str().unwrap(), "TMP");
        let env = env.map_or(String::new(), |v| format!("GLUFUSE_MAX_TENSOR_BYTES={v} "));
        let err = err.replace(&sym, "GRAPH").replace(d.path().to_str().unwrap(), "TMP");
        msgs.push_str(&format!("$ {env}glufuse {shown}\n{err}"));
    }
    insta::assert_snapshot!("degenerate_runs_and_budgets", msgs);
}

/// `GLUFUSE_GPU_TIMEOUT` (the longest a wait for the GPU may take) that is not a number of
/// seconds greater than 0 is refused before anything runs, naming the variable, with exit 2:
/// the default job included, which would otherwise report the device as missing and go on.
/// A good value, or an empty one (unset), changes nothing.
#[cfg(feature = "gpu")]
#[test]
fn a_gpu_timeout_that_is_not_seconds_is_refused() {
    let g = graph("decoder_2_layers");
    for v in ["soon", "0", "-3", "inf"] {
        for args in [vec![], vec!["show", g.as_str()]] {
            let o =
                Command::new(env!("CARGO_BIN_EXE_glufuse")).args(&args).env("GLUFUSE_GPU_TIMEOUT", v).output().unwrap();
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{v:?} {args:?}: {out}{err}");
            assert!(out.is_empty(), "{v:?} {args:?}: {out}");
            assert!(
                err.contains(&format!("GLUFUSE_GPU_TIMEOUT='{v}'")) && err.contains("seconds greater than 0"),
                "{v:?} {args:?}: {err}"
            );
        }
    }
    let o = Command::new(env!("CARGO_BIN_EXE_glufuse"))
        .args(["show", &g])
        .env("GLUFUSE_GPU_TIMEOUT", "2.5")
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(o.stdout, glufuse(&["show", &g]).stdout);
}

/// `GLUFUSE_COOP_TILES` (tilings of the cooperative-matrix GEMM by kind of projection) that
/// does not parse is refused before anything runs, naming the variable and what is wrong,
/// with exit 2; an empty one, or a good one, changes nothing on a graph without them.
#[cfg(feature = "gpu")]
#[test]
fn cooperative_tilings_that_do_not_parse_are_refused() {
    let g = graph("decoder_2_layers");
    let with = |v: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_glufuse")).args(args).env("GLUFUSE_COOP_TILES", v).output().unwrap()
    };
    for (v, why) in [("fused", "not CLASS=TILE"), ("wide=64x64x32w2x2s1", "not a class"), ("long=64x64", "long:")] {
        for args in [vec![], vec!["show", g.as_str()]] {
            let o = with(v, &args);
            let (out, err) = text(&o);
            assert_eq!(o.status.code(), Some(2), "{v:?} {args:?}: {out}{err}");
            assert!(out.is_empty(), "{v:?} {args:?}: {out}");
            assert!(err.contains(&format!("GLUFUSE_COOP_TILES='{v}'")) && err.contains(why), "{v:?}: {err}");
        }
    }
    for v in ["", "fused=128x64x64w4x2s1"] {
        let o = with(v, &["show", &g]);
        assert!(o.status.success(), "{v:?}: {:?}", text(&o));
        assert_eq!(o.stdout, glufuse(&["show", &g]).stdout);
    }
    // A benchmark says which tilings it ran under, so that its numbers can be reproduced.
    if common::gpu().is_some() {
        let model = common::root().join("tests/data/models/llama_dynseq.onnx");
        let model = model.to_str().unwrap();
        let bench = ["bench", model, "--dim", "batch=1", "--dim", "seq=5", "--reps", "1", "--samples", "1"];
        let args = [&bench[..], &["--part", "fused", "--in-process"]].concat();
        for v in ["", " short=32x32x128w2x2s1 "] {
            let o = with(v, &args);
            let (out, err) = text(&o);
            assert!(o.status.success(), "{v:?}: {out}{err}");
            let line = "cooperative tilings (GLUFUSE_COOP_TILES): short=32x32x128w2x2s1\n";
            assert_eq!(out.contains(line), !v.is_empty(), "{v:?}: {out}");
        }
    }
}

/// `GLUFUSE_ATTENTION_CHUNKS` (the key chunks of every decode-shaped attention) that is not a
/// whole number from 1 to 4096 is refused before anything runs, naming the variable, with exit
/// 2; a good one is taken, and a benchmark run under it says so and runs a combining kernel
/// a layer more than one without a split.
#[cfg(feature = "gpu")]
#[test]
fn attention_chunks_that_do_not_parse_are_refused() {
    let g = graph("decoder_2_layers");
    let with = |v: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_glufuse")).args(args).env("GLUFUSE_ATTENTION_CHUNKS", v).output().unwrap()
    };
    for v in ["0", "two", "-3", "4097", "1.5"] {
        let o = with(v, &["show", &g]);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{v:?}: {out}{err}");
        assert!(out.is_empty(), "{v:?}: {out}");
        assert!(err.contains(&format!("GLUFUSE_ATTENTION_CHUNKS='{v}'")) && err.contains("from 1 to 4096"), "{err}");
    }
    for v in ["", " 3 "] {
        let o = with(v, &["show", &g]);
        assert!(o.status.success(), "{v:?}: {:?}", text(&o));
    }
    if common::gpu().is_some() {
        let model = common::root().join("tests/data/models/llama_kvstep.onnx");
        let model = model.to_str().unwrap();
        let dims = ["--dim", "past=20", "--dim", "new=1", "--dim", "all=21"];
        let bench =
            [&["bench", model][..], &dims, &["--reps", "1", "--samples", "1", "--part", "fused", "--in-process"]];
        // (The dispatch counts: split, each of the 2 layers' attentions takes a combining
        // kernel more than in one workgroup a row.)
        let dispatches = |v: &str| {
            let o = with(v, &bench.concat());
            let (out, err) = text(&o);
            assert!(o.status.success(), "{out}{err}");
            let line = format!("attention key chunks (GLUFUSE_ATTENTION_CHUNKS): {v}\n");
            assert!(out.contains(&line), "{out}");
            let row = out.lines().find(|l| l.starts_with("| dispatches |")).unwrap_or_else(|| panic!("{out}"));
            row.split('|').nth(2).and_then(|n| n.trim().parse::<usize>().ok()).unwrap_or_else(|| panic!("{row}"))
        };
        assert_eq!(dispatches("3"), dispatches("1") + 2, "a combining kernel a layer");
    }
}

/// `glufuse --help` lists every environment variable glufuse reads: each `GLUFUSE_*` and
/// `WGPU_*` name the sources spell as a string of its own (what `std::env::var` and the
/// limits' table are given).
#[test]
fn help_lists_every_environment_variable() {
    fn walk(d: &std::path::Path, names: &mut std::collections::BTreeSet<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, names);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("\"GLUFUSE_").chain(text.match_indices("\"WGPU_")) {
                    let rest = &text[i + 1..];
                    let len = rest.find(|c: char| !(c.is_ascii_uppercase() || c == '_')).unwrap_or(rest.len());
                    if rest[len..].starts_with('"') {
                        names.insert(rest[..len].to_string());
                    }
                }
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for d in ["src", "ir/src", "codegen/src", "passes/src"] {
        walk(&common::root().join(d), &mut names);
    }
    for must in ["GLUFUSE_GPU_TIMEOUT", "GLUFUSE_COOP_TILES", "GLUFUSE_MAX_RANK", "WGPU_BACKEND"] {
        assert!(names.contains(must), "the scan missed {must}: {names:?}");
    }
    let help = text(&glufuse(&["--help"])).0;
    let missing: Vec<&String> = names.iter().filter(|n| !help.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "not in --help: {missing:?}\n{help}");
}
