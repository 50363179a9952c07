//! The command line. `glufuse` alone runs the bundled default job; subcommands show, fuse,
//! synthesise, interpret, generate WGSL for and run graphs. Exit codes: 0 success, 1 the job
//! failed, 2 bad input or usage. Errors go to stderr; output files are written atomically
//! and only once everything they depend on has succeeded.

use crate::dump::{render, Format};
use crate::files::{load_graph, write_atomic};
use crate::interp::{self, check_tolerance, compare};
use crate::ir::*;
use crate::passes::{fusion_report, PassManager, PassRun};
use crate::shape::Bindings;
use crate::synth::{self, SynthOptions};
use crate::tensor::Tensor;
use crate::{Error, Graph, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Finds gated FFNs in model graphs by equality saturation, fuses them, and runs them as WGSL.
#[derive(Parser)]
#[command(name = "glufuse", version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// Output formats of `show` and the before/after dumps ([`Format`] as an argument).
#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    /// One line per node.
    Text,
    /// The `glufuse.graph/1` JSON format.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
            FormatArg::Dot => Format::Dot,
            FormatArg::Mermaid => Format::Mermaid,
        }
    }
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ReportFormat {
    Json,
    Text,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print a graph.
    Show {
        /// Graph file (.json or .onnx).
        graph: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: FormatArg,
    },
    /// Run the pass pipeline (fusion, dead-node elimination) and write the result.
    Fuse {
        /// Graph file (.json or .onnx).
        graph: PathBuf,
        /// Write the fused graph here as JSON.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Write a dump of the graph before the passes here.
        #[arg(long)]
        before: Option<PathBuf>,
        /// Write a dump of the graph after the passes here.
        #[arg(long)]
        after: Option<PathBuf>,
        /// Format of the before/after dumps (and of stdout when no -o is given).
        #[arg(long, value_enum, default_value = "text")]
        format: FormatArg,
        /// Print the fusion report for people.
        #[arg(long)]
        explain: bool,
        /// Print the fusion report for tools.
        #[arg(long, value_enum)]
        report: Option<ReportFormat>,
    },
    /// Write a synthetic Llama-style decoder graph.
    Synth {
        /// Decoder layers.
        #[arg(long, default_value_t = 2)]
        layers: usize,
        /// Hidden size H.
        #[arg(long, default_value_t = 64)]
        hidden: u64,
        /// FFN intermediate size I.
        #[arg(long, default_value_t = 176)]
        intermediate: u64,
        /// Rows of x; omitted, the graph takes a symbolic `batch`.
        #[arg(long)]
        batch: Option<u64>,
        /// Element type.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: DTypeArg,
        /// FFN weight layout: kn (ONNX MatMul) or nk (PyTorch Linear, through a Transpose).
        #[arg(long, value_enum, default_value = "kn")]
        layout: LayoutArg,
        /// Opaque attention and norms, as in a real model (the graph then cannot run).
        #[arg(long)]
        opaque: bool,
        /// Output file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run a graph on the CPU reference interpreter and print output summaries.
    Interp {
        /// Graph file (.json or .onnx).
        graph: PathBuf,
        #[command(flatten)]
        io: RunInputs,
    },
    /// Write one WGSL file per kernel of the (fused) graph, plus manifest.json.
    Wgsl {
        /// Graph file (.json or .onnx).
        graph: PathBuf,
        /// Output folder (created if missing).
        #[arg(short, long)]
        output: PathBuf,
        /// Generate for the graph as given, without the passes.
        #[arg(long)]
        unfused: bool,
        /// Size of a symbolic dim, as NAME=N (repeatable; unbound dims default to 1).
        #[arg(long = "dim", value_name = "NAME=N")]
        dims: Vec<String>,
        /// Generate for this machine's GPU adapter (its limits and subgroups: what `run`
        /// executes there) instead of for portable WebGPU defaults.
        #[arg(long)]
        device: bool,
    },
    /// Run a graph on the GPU (after the passes, unless --unfused).
    Run {
        /// Graph file (.json or .onnx).
        graph: PathBuf,
        #[command(flatten)]
        io: RunInputs,
        /// Run the graph as given, without the passes.
        #[arg(long)]
        unfused: bool,
        /// Compare against the CPU interpreter on the original graph; fail past tolerance.
        #[arg(long)]
        check: bool,
        /// Time each prefill GEMM under the candidate tilings on this GPU first and keep the
        /// fastest (about 20 dispatches per tiling and shape; results are bit-identical).
        #[arg(long)]
        tune: bool,
    },
    /// Time fused against unfused gate/up kernels on the GPU (timestamp queries).
    Bench {
        /// Shapes as HxI, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "896x4864,2048x11008,4096x14336")]
        shapes: Vec<String>,
        /// Rows of x (tokens), comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16,128,512")]
        rows: Vec<u64>,
        /// Weight element types, comma-separated.
        #[arg(long, value_delimiter = ',', value_enum, default_value = "f32,f16")]
        dtypes: Vec<DTypeArg>,
        /// Weight layout.
        #[arg(long, value_enum, default_value = "kn")]
        layout: LayoutArg,
        /// Repetitions recorded back to back per submission.
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Submissions per measurement (the median is reported).
        #[arg(long, default_value_t = 5)]
        samples: usize,
        /// Also write the rows as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Measure every configuration in this process instead of a fresh one each.
        #[arg(long)]
        in_process: bool,
        /// Time only the fused or only the unfused graph (the other is reported as 0).
        #[arg(long, value_enum, default_value = "both")]
        part: PartArg,
        /// Force the prefill GEMM's tiling as RTxBK[xNY]: rows of x per thread (4 or 8), k
        /// per step (8 or 16) and threads along the rows (8 or 16; 16 if left out). Default:
        /// 8x8x8.
        #[arg(long, value_name = "RTxBK[xNY]")]
        gemm_tiles: Option<String>,
        /// Time each prefill GEMM under the candidate tilings first and keep the fastest (as
        /// `run --tune`), in the fused and the unfused graph alike.
        #[arg(long, conflicts_with = "gemm_tiles")]
        tune: bool,
    },
    /// Time the fusion pass on synthetic decoder graphs.
    BenchPass {
        /// Layer counts to time.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
        layers: Vec<usize>,
        /// Repetitions per size (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

#[derive(Clone, Copy, ValueEnum, Debug)]
enum DTypeArg {
    F32,
    F16,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PartArg {
    Both,
    Fused,
    Unfused,
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutArg {
    Kn,
    Nk,
}

/// How inputs are given to `interp` and `run`.
#[derive(clap::Args, Clone)]
struct RunInputs {
    /// An input from a .npy file, as NAME=FILE (repeatable). Inputs not given are seeded.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    inputs: Vec<String>,
    /// Size of a symbolic dim, as NAME=N (repeatable; unbound dims default to 1).
    #[arg(long = "dim", value_name = "NAME=N")]
    dims: Vec<String>,
    /// Seed of generated inputs.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Write the first output as .npy here.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.cmd {
        None => default_job(),
        Some(Cmd::Show { graph, format }) => {
            let g = load_graph(&graph)?;
            print!("{}", render(&g, format.into())?);
            Ok(())
        }
        Some(Cmd::Fuse { graph, output, before, after, format, explain, report }) => {
            let format = Format::from(format);
            let mut g = load_graph(&graph)?;
            let before_text = render(&g, format)?;
            let mut pm = PassManager::standard();
            pm.verify_each = true;
            let runs = pm.run(&mut g)?;
            let after_text = render(&g, format)?;
            // Everything is computed; now write, each file atomically.
            let mut writes: Vec<(&Path, Vec<u8>)> = vec![];
            if let Some(p) = &output {
                writes.push((p, crate::json::to_string(&g)?.into_bytes()));
            }
            if let Some(p) = &before {
                writes.push((p, before_text.into_bytes()));
            }
            if let Some(p) = &after {
                writes.push((p, after_text.clone().into_bytes()));
            }
            for (p, b) in writes {
                write_atomic(p, &b)?;
            }
            let rep = fusion_report(&runs).cloned().unwrap_or_default();
            match report {
                Some(ReportFormat::Json) => {
                    println!("{}", serde_json::to_string_pretty(&rep).map_err(|e| Error::Internal(e.to_string()))?)
                }
                Some(ReportFormat::Text) => print!("{}", rep.to_text(true)),
                None if explain => print!("{}", rep.to_text(true)),
                None if output.is_none() && after.is_none() => print!("{after_text}"),
                None => {
                    eprintln!("{}", summary_line(&runs));
                }
            }
            Ok(())
        }
        Some(Cmd::Synth { layers, hidden, intermediate, batch, dtype, layout, opaque, output }) => {
            let o = SynthOptions {
                layers,
                hidden,
                intermediate,
                batch,
                dtype: match dtype {
                    DTypeArg::F32 => DType::F32,
                    DTypeArg::F16 => DType::F16,
                },
                executable: !opaque,
                layout: match layout {
                    LayoutArg::Kn => Layout::Kn,
                    LayoutArg::Nk => Layout::Nk,
                },
            };
            let g = synth::llama(&o)?;
            write_atomic(&output, crate::json::to_string(&g)?.as_bytes())?;
            eprintln!("wrote {}: {}", output.display(), g.summary());
            Ok(())
        }
        Some(Cmd::Interp { graph, io }) => {
            let g = load_graph(&graph)?;
            let (inputs, _) = gather_inputs(&g, &io)?;
            let outs = interp::run(&g, &inputs)?;
            print_outputs(&g, &outs);
            if let Some(p) = &io.output {
                crate::files::write_npy(p, &outs[0])?;
            }
            Ok(())
        }
        Some(Cmd::BenchPass { layers, reps }) => bench_pass(&layers, reps),
        Some(Cmd::Bench { shapes, rows, dtypes, layout, reps, samples, json, in_process, part, gemm_tiles, tune }) => {
            let gemm_tiles = gemm_tiles
                .map(|t| t.parse::<crate::codegen::gemm::Tiles>())
                .transpose()
                .map_err(|e| Error::input(format!("--gemm-tiles: {e}")))?;
            let parsed = shapes
                .iter()
                .map(|s| {
                    crate::bench::parse_shape(s).ok_or_else(|| Error::input(format!("--shapes: {s:?} is not HxI")))
                })
                .collect::<Result<Vec<_>>>()?;
            let o = crate::bench::BenchOptions {
                shapes: parsed,
                rows,
                dtypes: dtypes
                    .iter()
                    .map(|d| match d {
                        DTypeArg::F32 => DType::F32,
                        DTypeArg::F16 => DType::F16,
                    })
                    .collect(),
                layout: match layout {
                    LayoutArg::Kn => Layout::Kn,
                    LayoutArg::Nk => Layout::Nk,
                },
                reps,
                samples,
                part: match part {
                    PartArg::Both => crate::bench::Part::Both,
                    PartArg::Fused => crate::bench::Part::Fused,
                    PartArg::Unfused => crate::bench::Part::Unfused,
                },
                gemm_tiles,
                tune,
            };
            if !in_process && part != PartArg::Both {
                return Err(Error::input(
                    "--part fused|unfused needs --in-process (the isolated run times both parts)",
                ));
            }
            let (table, rows) = if in_process {
                let gpu = crate::runtime::Gpu::new()?;
                eprintln!("benchmarking on {}", gpu.describe());
                crate::bench::run(&gpu, &o, |line| eprint!("{line}"))?
            } else {
                crate::bench::run_isolated(&o, |line| eprint!("{line}"))?
            };
            println!("{table}");
            if let Some(p) = json {
                let j = serde_json::to_string_pretty(&rows).map_err(|e| Error::Internal(e.to_string()))?;
                write_atomic(&p, j.as_bytes())?;
            }
            Ok(())
        }
        Some(Cmd::Wgsl { graph, output, unfused, dims, device }) => {
            let mut g = load_graph(&graph)?;
            if !unfused {
                PassManager::standard().run(&mut g)?;
            }
            let io = RunInputs { inputs: vec![], dims, seed: 0, output: None };
            let (_, b) = gather_inputs(&g, &io)?;
            let target = if device { crate::runtime::Gpu::new()?.target() } else { crate::codegen::Target::default() };
            let kernels = crate::codegen::generate(&g, &b, &target)?;
            // Everything is generated and validated before the first file is written.
            std::fs::create_dir_all(&output).map_err(|e| Error::Write { path: output.clone(), msg: e.to_string() })?;
            for (i, k) in kernels.iter().enumerate() {
                write_atomic(&output.join(crate::codegen::file_name(i, &k.source().name)), k.source().wgsl.as_bytes())?;
            }
            let manifest = serde_json::to_string_pretty(&crate::codegen::manifest(&kernels))
                .map_err(|e| Error::Internal(e.to_string()))?;
            write_atomic(&output.join("manifest.json"), manifest.as_bytes())?;
            println!("wrote {} kernels to {}", kernels.len(), output.display());
            Ok(())
        }
        Some(Cmd::Run { graph, io, unfused, check, tune }) => {
            let original = load_graph(&graph)?;
            let mut g = original.clone();
            if !unfused {
                PassManager::standard().run(&mut g)?;
            }
            let (inputs, b) = gather_inputs(&g, &io)?;
            let gpu = crate::runtime::Gpu::new()?;
            let target = gpu.target();
            let mut exe = crate::runtime::Executable::with_target(&gpu, &g, &b, &target)?;
            let tuned = if tune { exe.tune_gemms(&g, &b, &target, &crate::codegen::gemm::CANDIDATES)? } else { vec![] };
            let outs = exe.run(&inputs)?;
            println!("adapter: {}", gpu.describe());
            for t in &tuned {
                let times: Vec<String> = t.timings.iter().map(|(tl, us)| format!("{tl}: {us:.1} µs")).collect();
                let how = if times.is_empty() { "as the same shape before".to_string() } else { times.join(", ") };
                println!("tuned {}: {} ({how})", t.kernel, t.chosen);
            }
            println!(
                "graph: {} ({}), {} dispatches",
                graph.display(),
                if unfused { "unfused" } else { "fused" },
                exe.dispatch_count()
            );
            print_outputs(&g, &outs);
            if check {
                let want = interp::run(&original, &inputs)?;
                let tol = check_tolerance(&original);
                for ((v, got), want) in g.outputs.iter().zip(&outs).zip(&want) {
                    let (abs, rel) = compare(got, want);
                    println!("  check {}: max abs err {abs:.3e}, rel {rel:.3e} (tolerance {tol:e})", g.value_name(*v));
                    if rel > tol {
                        return Err(Error::Job(format!(
                            "GPU output '{}' differs from the interpreter: rel err {rel:.3e} > {tol:e}",
                            g.value_name(*v)
                        )));
                    }
                }
            }
            if let Some(p) = &io.output {
                crate::files::write_npy(p, &outs[0])?;
            }
            Ok(())
        }
    }
}

fn summary_line(runs: &[PassRun]) -> String {
    match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => format!("before: {}\nafter:  {}", a.before, b.after),
        _ => String::new(),
    }
}

/// Inputs for a run: those given as .npy files, the rest seeded; and the dim bindings.
fn gather_inputs(g: &Graph, io: &RunInputs) -> Result<(HashMap<String, Tensor>, Bindings)> {
    let mut b = Bindings::new();
    for d in &io.dims {
        let (k, v) = d.split_once('=').ok_or_else(|| Error::input(format!("--dim {d:?} must be NAME=N")))?;
        let n: usize = v.parse().map_err(|_| Error::input(format!("--dim {d:?}: {v:?} is not a size")))?;
        b.insert(k.to_string(), n);
    }
    let mut given = HashMap::new();
    for spec in &io.inputs {
        let (name, file) =
            spec.split_once('=').ok_or_else(|| Error::input(format!("--input {spec:?} must be NAME=FILE.npy")))?;
        let n = g
            .find(name)
            .filter(|&n| matches!(g.node(n).op, Op::Input))
            .ok_or_else(|| Error::input(format!("--input {name:?}: the graph has no input of that name")))?;
        let t = crate::files::read_npy(Path::new(file), &g.node(n).outputs[0])?;
        crate::shape::bind(&g.node(n).outputs[0], t.shape(), &mut b)
            .map_err(|m| Error::input(format!("--input {name}: {m}")).in_file(Path::new(file)))?;
        given.insert(name.to_string(), t);
    }
    // Unbound symbols default to 1.
    for n in g.input_nodes() {
        for d in &g.node(n).outputs[0].shape {
            if let Dim::Sym(s) = d {
                b.entry(s.clone()).or_insert(1);
            }
        }
    }
    let mut inputs = interp::seeded_inputs(g, &b, io.seed)?;
    inputs.extend(given);
    Ok((inputs, b))
}

fn stats(t: &Tensor) -> String {
    let d = t.data();
    let n = d.len().max(1) as f64;
    let mean = (0..d.len()).map(|i| d.get_f64(i)).sum::<f64>() / n;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..d.len() {
        lo = lo.min(d.get_f64(i));
        hi = hi.max(d.get_f64(i));
    }
    let head: Vec<String> = (0..d.len().min(4)).map(|i| format!("{:.5}", d.get_f64(i))).collect();
    format!("shape {:?} mean {mean:.6} min {lo:.5} max {hi:.5} first [{}]", t.shape(), head.join(", "))
}

fn print_outputs(g: &Graph, outs: &[Tensor]) {
    for (v, t) in g.outputs.iter().zip(outs) {
        println!("  {}: {}", g.value_name(*v), stats(t));
    }
}

fn layer0(text: &str) -> String {
    text.lines().filter(|l| l.starts_with("%layers.0.")).map(|l| format!("  {l}\n")).collect()
}

fn default_job() -> Result<()> {
    let o = SynthOptions::default();
    let mut g = synth::default_model();
    println!(
        "glufuse: bundled default model, a synthetic Llama-style decoder ({} layers, H={}, I={}, {} rows, f32)",
        o.layers,
        o.hidden,
        o.intermediate,
        o.batch.unwrap_or(1)
    );
    let original = g.clone();
    let before = crate::dump::text(&g)?;
    let mut pm = PassManager::standard();
    pm.verify_each = true;
    let runs = pm.run(&mut g)?;
    println!("\n== layer 0 before the passes ==\n{}", layer0(&before));
    println!("== layer 0 after ==\n{}", layer0(&crate::dump::text(&g)?));
    if let Some(r) = fusion_report(&runs) {
        println!("== fusion report ==\n{}", r.to_text(true));
    }
    println!("{}\n", summary_line(&runs));
    // The oracle: the fused graph computes what the original did.
    let b = Bindings::new();
    let inputs = interp::seeded_inputs(&original, &b, 7)?;
    let want = interp::run(&original, &inputs)?;
    let got = interp::run(&g, &inputs)?;
    let (abs, rel) = compare(&got[0], &want[0]);
    println!("CPU interpreter, fused vs original: max abs err {abs:.3e}, rel {rel:.3e}");
    if rel > 1e-4 {
        return Err(Error::Job(format!("the fused graph differs from the original (rel err {rel:.3e})")));
    }
    // The GPU: both graphs, through WGSL validated by naga, against the interpreter.
    let gpu = match crate::runtime::Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => {
            println!("\nGPU: none available ({e}); skipped the GPU run. Everything above ran on the CPU.");
            return Ok(());
        }
    };
    println!("\nGPU: {}", gpu.describe());
    for (label, graph) in [("original", &original), ("fused", &g)] {
        let exe = crate::runtime::Executable::new(&gpu, graph, &b)?;
        let outs = exe.run(&inputs)?;
        let (abs, rel) = compare(&outs[0], &want[0]);
        println!(
            "  {label:8}: {:3} kernels (WGSL validated by naga), {:3} dispatches per run; vs interpreter: max abs err {abs:.3e}, rel {rel:.3e}",
            exe.kernels().len(),
            exe.dispatch_count()
        );
        if rel > 1e-4 {
            return Err(Error::Job(format!(
                "the GPU run of the {label} graph differs from the interpreter (rel {rel:.3e})"
            )));
        }
    }
    Ok(())
}

fn bench_pass(layers: &[usize], reps: usize) -> Result<()> {
    println!(
        "| layers | graph nodes | e-graph nodes | e-classes | iterations | fused | fuse time (median of {reps}) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for &l in layers {
        let base = synth::llama(&SynthOptions { layers: l, executable: false, ..Default::default() })?;
        let mut times = vec![];
        let mut last = None;
        for _ in 0..reps.max(1) {
            let mut g = base.clone();
            let t = std::time::Instant::now();
            let rep = crate::passes::fusion::fuse(&mut g, &Default::default())?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            last = Some(rep);
        }
        times.sort_by(f64::total_cmp);
        let rep = last.expect("reps >= 1");
        println!(
            "| {l} | {} | {} | {} | {} | {} | {:.2} ms |",
            base.len(),
            rep.egraph_nodes,
            rep.egraph_classes,
            rep.iterations,
            rep.fused,
            times[times.len() / 2]
        );
    }
    Ok(())
}
