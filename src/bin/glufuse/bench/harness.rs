//! The benchmark harness of `glufuse bench`: times the fused gated unit against the unfused graph (two projections,
//! SiLU, product: four dispatches) on the GPU, with a plain copy kernel as the bandwidth
//! yardstick.
//!
//! Timing uses wgpu timestamp queries around one compute pass holding `reps` back-to-back
//! repetitions of the graph's dispatches; the time per repetition is the median over
//! `samples` submissions, after [`WARM_UP`] of running the graph (the GPU's clocks fall after
//! a second without work: see there). Without `TIMESTAMP_QUERY` it falls back to wall-clock
//! time around submit-and-wait (and says so).
//!
//! By default the fused and the unfused graph of every configuration each run in a child
//! process of their own, on a fresh device; `--in-process` keeps everything in one process.
//! Both give the same figures since the warm-up: the "slowdown after another graph's buffers
//! were freed" once seen on an H100 (161 µs fresh, 329 µs in process) was the SM clock
//! falling while the process built the next graph. A child reports its figures to its parent
//! as JSON ([`Measured`]).

use glufuse::codegen::proj::gemm_tiled::CANDIDATES;
use glufuse::codegen::tune::Tuned;
use glufuse::codegen::{copy_kernel, validate, Kernel, MatmulPrecision, Q4Unpack, Target, Tiles};
use glufuse::ir::Layout;
use glufuse::passes::PassManager;
use glufuse::runtime::{median, time, time_series, timed_pass, Executable, Gpu, WARM_UP};
use glufuse::synth::{ffn_graph_of, WeightType};
use glufuse::{Error, Graph, Result};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// (H, I) pairs.
    pub shapes: Vec<(u64, u64)>,
    /// Rows of x.
    pub rows: Vec<u64>,
    /// Weight (and activation) element types.
    pub dtypes: Vec<WeightType>,
    /// Weight layout.
    pub layout: Layout,
    /// Repetitions recorded back to back in one submission.
    pub reps: usize,
    /// Submissions; the median is reported.
    pub samples: usize,
    /// Which graphs to time.
    pub part: Part,
    /// Forces the prefill GEMM's tiling.
    pub gemm_tiles: Option<Tiles>,
    /// Times the GEMM candidates on the device first and keeps the fastest
    /// ([`Executable::tune_gemms`]).
    pub tune: bool,
    /// Which products may be f16 ([`Target::matmul_precision`]).
    pub matmul_precision: MatmulPrecision,
    /// How the 4-bit kernels unpack ([`Target::q4_unpack`]).
    pub q4_unpack: Q4Unpack,
    /// Forces the 4-bit decode GEMV's features per lane group ([`Target::q4_cols`]).
    pub q4_cols: Option<usize>,
}

/// Which of a configuration's two graphs a run times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The fused and the unfused graph.
    Both,
    /// Only the fused graph (the unfused time is reported as 0).
    Fused,
    /// Only the unfused graph (the fused time is reported as 0).
    Unfused,
}

/// One row of the table.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct BenchRow {
    /// Hidden size.
    pub h: u64,
    /// Intermediate size.
    pub i: u64,
    /// Rows of x.
    pub m: u64,
    /// Element type.
    pub dtype: String,
    /// Fused time per run, µs.
    pub fused_us: f64,
    /// Unfused time per run, µs.
    pub unfused_us: f64,
    /// Dispatches per run, fused and unfused.
    pub dispatches: (usize, usize),
    /// The fused kernel's kind.
    pub kernel: String,
    /// The fused graph's projection kernel choice and its reason.
    #[serde(default)]
    pub fused_choice: String,
    /// The unfused graph's projection kernels (without the reasons).
    #[serde(default)]
    pub unfused_choice: String,
}

/// The copy yardstick: GB/s moved (read + written) by a vec4 copy of `bytes` bytes.
fn copy_bandwidth(gpu: &Gpu, bytes: u64, reps: usize, samples: usize) -> Result<f64> {
    let n4 = (bytes / 16).max(1);
    let t = gpu.target();
    let k = validate(copy_kernel(n4, &t)?, t.caps)?;
    let workgroups = k.source().workgroups;
    let dev = &gpu.device;
    let mk = || {
        dev.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: n4 * 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        })
    };
    let (a, b) = (mk(), mk());
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("copy"),
        source: wgpu::ShaderSource::Wgsl(k.source().wgsl.as_str().into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("copy"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: None,
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: a.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: b.as_entire_binding() },
        ],
    });
    let (us, _) = time(gpu, reps, samples, |enc, reps, ts| {
        let mut pass = timed_pass(enc, "copy", ts);
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &group, &[]);
        for _ in 0..reps {
            pass.dispatch_workgroups(workgroups[0], workgroups[1], 1);
        }
    })?;
    Ok(2.0 * (n4 * 16) as f64 / (us * 1e3))
}

/// What one run of the benchmark measured: the device, the copy yardstick and a row per
/// configuration. A child process of [`run_isolated`] writes it to its parent as JSON.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    /// The adapter, as [`Gpu::describe`] gives it.
    pub device: String,
    /// Its cooperative-matrix configurations, as [`Gpu::describe_coop`] gives them.
    #[serde(default)]
    pub coop: String,
    /// Whether times come from timestamp queries (else the wall clock).
    pub timestamps: bool,
    /// Size of the copy kernel's buffers, MiB.
    pub copy_mib: u64,
    /// What the copy kernel moved, GB/s (read + written).
    pub copy_gbs: f64,
    /// One row per configuration.
    pub rows: Vec<BenchRow>,
}

/// The table's column heads.
const TABLE_HEAD: &str = "| H×I | M | dtype | fused µs | unfused µs | unfused/fused | weight GB/s | TFLOP/s | of copy BW | fused kernel | fused choice | unfused projections |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
/// How a run in one process says where it ran, and what [`run_isolated`] says instead.
const IN_PROCESS: &str = "all in one process";
const ISOLATED: &str = "fused and unfused graphs each in a fresh process";

/// The table's header: device, timing method (and `process`, where the graphs were timed) and
/// the copy yardstick, then the column heads.
fn header(m: &Measured, o: &BenchOptions, process: &str) -> String {
    let tiles = match (o.tune, o.gemm_tiles) {
        (true, _) => {
            "GEMM tiling: each shape timed at load under every candidate, the faster kept (in the kernel column)\n"
                .to_string()
        }
        (false, Some(t)) => format!("GEMM tiling: {t} (forced)\n"),
        (false, None) => String::new(),
    };
    format!(
        "device: {}\ncooperative matrices: {}; matmul precision: {}\ntiming: {}, {} repetitions per submission, median of {} submissions, {process}\n{tiles}copy kernel ({} MiB): {:.0} GB/s (read + written)\n\n{TABLE_HEAD}",
        m.device,
        m.coop,
        o.matmul_precision,
        if m.timestamps { "timestamp queries" } else { "wall clock (no TIMESTAMP_QUERY)" },
        o.reps,
        o.samples,
        m.copy_mib,
        m.copy_gbs,
    )
}

/// One row of the table, against the copy yardstick `copy` (GB/s). The weight bytes are as
/// stored (4-bit: packed elements and scales).
fn line(r: &BenchRow, dtype: WeightType, copy: f64) -> String {
    let wbytes = 2.0 * dtype.weight_bytes(r.h, r.i);
    let gbs = wbytes / (r.fused_us * 1e3);
    let tflops = 2.0 * (r.m * r.h * 2 * r.i) as f64 / (r.fused_us * 1e6);
    format!(
        "| {}×{} | {} | {dtype} | {:.1} | {:.1} | {:.2}x | {gbs:.0} | {tflops:.2} | {:.0}% | {} | {} | {} |\n",
        r.h,
        r.i,
        r.m,
        r.fused_us,
        r.unfused_us,
        r.unfused_us / r.fused_us,
        100.0 * gbs / copy,
        r.kernel,
        r.fused_choice,
        r.unfused_choice
    )
}

/// Times the fused and the unfused graph of every configuration each in a child process of
/// its own (`glufuse bench --in-process --part fused|unfused` with one shape, one dtype, one
/// row count, reporting its figures as JSON). The table goes to `emit` as it is measured: the
/// header (from the first child's figures) before the first row, then a line per row;
/// `step` is called after each child.
pub fn run_isolated(o: &BenchOptions, mut emit: impl FnMut(&str), mut step: impl FnMut()) -> Result<Vec<BenchRow>> {
    let child = |args: Vec<String>| child_command(&args);
    let common = |shape: String, m: u64, dtype: WeightType, part: &str, report: &std::path::Path| -> Vec<String> {
        vec![
            "bench".into(),
            "--in-process".into(),
            "--part".into(),
            part.into(),
            "--shapes".into(),
            shape,
            "--rows".into(),
            m.to_string(),
            "--dtypes".into(),
            dtype.to_string(),
            "--layout".into(),
            format!("{:?}", o.layout).to_lowercase(),
            "--reps".into(),
            o.reps.to_string(),
            "--samples".into(),
            o.samples.to_string(),
            "--child-report".into(),
            report.display().to_string(),
        ]
        .into_iter()
        .chain(o.gemm_tiles.map(|t| format!("--gemm-tiles={t}")))
        .chain(o.tune.then(|| "--tune".to_string()))
        .chain(match o.matmul_precision {
            MatmulPrecision::AsWeights => None,
            MatmulPrecision::F32 => Some("--matmul-precision=f32".to_string()),
            MatmulPrecision::F16 => Some("--matmul-precision=f16".to_string()),
        })
        .chain([format!("--q4-unpack={}", o.q4_unpack)])
        .chain(o.q4_cols.map(|r| format!("--q4-cols={r}")))
        .collect::<Vec<String>>()
    };
    let tmp = tempfile::tempdir().map_err(|e| Error::Job(format!("temporary folder: {e}")))?;
    let mut rows = vec![];
    let mut head = false;
    for &(h, i) in &o.shapes {
        for &dtype in &o.dtypes {
            for &m in &o.rows {
                let report = tmp.path().join("child.json");
                let part = |which: &str| -> Result<(Measured, BenchRow)> {
                    child(common(format!("{h}x{i}"), m, dtype, which, &report))?;
                    let bytes = std::fs::read(&report).map_err(|e| Error::Job(e.to_string()))?;
                    let mut got: Measured = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::Job(format!("benchmark child wrote bad JSON: {e}")))?;
                    let row = got.rows.pop().ok_or_else(|| Error::Job("benchmark child wrote no row".into()))?;
                    Ok((got, row))
                };
                let (fused, mut r) = part("fused")?;
                step();
                if !head {
                    emit(&header(&fused, o, ISOLATED));
                    head = true;
                }
                let (_, u) = part("unfused")?;
                step();
                r.unfused_us = u.unfused_us;
                r.dispatches.1 = u.dispatches.1;
                r.unfused_choice = u.unfused_choice;
                emit(&line(&r, dtype, fused.copy_gbs));
                rows.push(r);
            }
        }
    }
    Ok(rows)
}

/// Runs this program again with `args` (a benchmark child, on a fresh device) and waits for
/// it; a failure carries its stderr.
pub fn child_command(args: &[String]) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| Error::Job(format!("cannot find this program to re-run it: {e}")))?;
    let out = std::process::Command::new(&exe)
        .args(args)
        .output()
        .map_err(|e| Error::Job(format!("cannot run a benchmark child: {e}")))?;
    if !out.status.success() {
        return Err(Error::Job(format!(
            "benchmark child {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The distinct kernel choices of a graph's kernels, joined by `; `: with their reasons, or
/// only the kernels chosen.
fn choices(kernels: &[Kernel], reasons: bool) -> String {
    let mut all: Vec<String> = vec![];
    for c in kernels.iter().filter_map(|k| k.source().choice.as_ref()) {
        let c = if reasons { c.to_string() } else { c.kernel.clone() };
        if !all.contains(&c) {
            all.push(c);
        }
    }
    all.join("; ")
}

/// Runs the benchmark in this process and returns what it measured. The table goes to `emit`
/// as it is measured: the header (once the copy yardstick is timed), then a line per
/// configuration; `step` is called after each.
pub fn run(gpu: &Gpu, o: &BenchOptions, mut emit: impl FnMut(&str), mut step: impl FnMut()) -> Result<Measured> {
    let copy_bytes = (256u64 << 20).min(gpu.target().max_binding_bytes);
    let copy = copy_bandwidth(gpu, copy_bytes, o.reps.max(1), o.samples)?;
    let ts = gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
    let target = Target {
        gemm_tiles: o.gemm_tiles,
        matmul_precision: o.matmul_precision,
        q4_unpack: o.q4_unpack,
        q4_cols: o.q4_cols,
        ..gpu.target()
    };
    let mut measured = Measured {
        device: gpu.describe(),
        coop: gpu.describe_coop(),
        timestamps: ts,
        copy_mib: copy_bytes >> 20,
        copy_gbs: copy,
        rows: vec![],
    };
    emit(&header(&measured, o, IN_PROCESS));
    for &(h, i) in &o.shapes {
        for &dtype in &o.dtypes {
            for &m in &o.rows {
                let original = ffn_graph_of(h, i, m, dtype, o.layout)?;
                let mut fused = original.clone();
                PassManager::standard().run(&mut fused)?;
                let b = Default::default();
                let build = |g: &Graph| -> Result<(Executable, Vec<Tuned>)> {
                    let mut exe = Executable::with_target(gpu, g, &b, &target)?;
                    let tuned = if o.tune { exe.tune_gemms(g, &b, &target, &CANDIDATES)? } else { vec![] };
                    Ok((exe, tuned))
                };
                let (fu, fd, kind, fused_choice) = if o.part == Part::Unfused {
                    (0.0, 0, String::new(), String::new())
                } else {
                    let (exe, tuned) = build(&fused)?;
                    let mut kind =
                        exe.kernels().iter().map(|k| k.source().kind.to_string()).collect::<Vec<_>>().join("+");
                    if let Some(t) = tuned.first() {
                        kind = format!("{kind} ({})", t.chosen);
                    }
                    let (t, _) =
                        time_series(gpu, o.reps, o.samples, WARM_UP, |enc, reps, ts| exe.record(enc, reps, ts))?;
                    (median(&t), exe.dispatch_count(), kind, choices(exe.kernels(), true))
                };
                let (uu, ud, unfused_choice) = if o.part == Part::Fused {
                    (0.0, 0, String::new())
                } else {
                    let (exe, _) = build(&original)?;
                    let (t, _) =
                        time_series(gpu, o.reps, o.samples, WARM_UP, |enc, reps, ts| exe.record(enc, reps, ts))?;
                    (median(&t), exe.dispatch_count(), choices(exe.kernels(), false))
                };
                let row = BenchRow {
                    h,
                    i,
                    m,
                    dtype: dtype.to_string(),
                    fused_us: fu,
                    unfused_us: uu,
                    dispatches: (fd, ud),
                    kernel: kind,
                    fused_choice,
                    unfused_choice,
                };
                emit(&line(&row, dtype, copy));
                step();
                measured.rows.push(row);
            }
        }
    }
    Ok(measured)
}
