//! `glufuse bench MODEL [--input NAME=F.npy].. [--dim NAME=N].. [--reps N] [--samples N]
//! [--json F] [--same-process]`: a user's own graph on the GPU, fused and unfused.
//!
//! For each part (the graph after the passes, and as given), in a child process of its own
//! unless `--same-process`: the graph is loaded, a [`Session`] made (weights uploaded), the
//! executable for the binding built, and then
//!
//! - **GPU time per call**: every dispatch of a call recorded `reps` times back to back in one
//!   compute pass, timestamps around it, median over `samples` submissions after a warm-up;
//! - **per kernel family** ([`glufuse::codegen::KernelKind::family`]): a timestamp between
//!   consecutive dispatches of one call, median over `samples` calls, summed by family with
//!   the dispatch counts;
//! - **call latency**: what a library user sees, the wall clock of [`Session::run_timed`]
//!   (the inputs bound, checked and uploaded, every dispatch, every output read back), median
//!   over the calls, split into bind / upload / encode / submit+wait / readback;
//! - what making it cost (load, passes, weights up, executable built, first call) and the
//!   buffers and bind groups created (none after the first call).
//!
//! Inputs not given are made up from the graph's dtypes and shapes under the `--dim` binding
//! (unbound dims are 1): token ids (an integer input that indexes a weight's rows through a
//! `Gather`) uniform over the table's rows, other integer inputs (masks) all ones, booleans
//! true, floats seeded as `run` seeds them.

use super::harness::child_command;
use crate::out::{out, outln};
use glufuse::codegen::{MatmulPrecision, Target};
use glufuse::files::{load_graph_with, write_atomic};
use glufuse::ir::{DType, Op, Value};
use glufuse::passes::PassManager;
use glufuse::runtime::{median, profile_dispatches, time_series, CallTimes, Created, Gpu, Session, WARM_UP};
use glufuse::shape::{concrete, Bindings};
use glufuse::tensor::{Data, Tensor};
use glufuse::{Error, Graph, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to measure.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// The graph file.
    pub graph: PathBuf,
    /// `NAME=F.npy` inputs given.
    pub inputs: Vec<String>,
    /// `NAME=N` dims given.
    pub dims: Vec<String>,
    /// Seed of the inputs made up.
    pub seed: u64,
    /// Calls per submission of the GPU timing.
    pub reps: usize,
    /// Submissions (and profiled calls, and timed calls through the session).
    pub samples: usize,
    /// Which products may be f16 ([`Target::matmul_precision`]).
    pub matmul_precision: MatmulPrecision,
    /// Patterns of the dispatches left out of the GPU time per call ([`leaves_out`]).
    pub leave_out: Vec<String>,
    /// Patterns of the dispatches also timed alone ([`AloneTime`]).
    pub alone: Vec<String>,
    /// How many of the dispatches before each of those to time it after
    /// ([`AloneTime::after_us`]; 0: none).
    pub alone_after: usize,
}

/// Dispatches in a chain a dispatch is timed alone in (`--alone`).
const ALONE_CHAIN: usize = 32;

/// One dispatch timed alone and in the model (`bench MODEL --alone PATTERN`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AloneTime {
    /// Its kernel.
    pub kernel: String,
    /// Its kind.
    pub kind: String,
    /// What it costs the model, µs: the GPU time per call less that of the call without it
    /// (median against median: within their noise, it may even come out negative).
    pub in_model_us: f64,
    /// µs a dispatch of it alone: [`ALONE_CHAIN`] of it back to back on the model's buffers
    /// (each waiting for the one before, as in the model), median of the samples.
    pub alone_us: f64,
    /// How many of the dispatches before it in the model [`Self::after_us`] ran it after
    /// (`--alone-after N`, fewer where the call has fewer before it; 0: not asked).
    #[serde(default)]
    pub after: usize,
    /// µs it costs after those: [`ALONE_CHAIN`] cycles of them and it, less as many of them
    /// alone, per cycle. Against [`Self::alone_us`], what the kernels before it leave it (the
    /// caches they fill, data and code).
    #[serde(default)]
    pub after_us: Option<f64>,
}

/// Whether `--leave-out` pattern `p` matches a kernel named `name` of kind `kind`: `p`
/// against `NAME|KIND`, each `&`-joined part contained in it (or, after a `!`, not).
pub fn leaves_out(p: &str, name: &str, kind: &str) -> bool {
    let tag = format!("{name}|{kind}");
    !p.is_empty()
        && p.split('&').all(|q| match q.strip_prefix('!') {
            Some(q) => !tag.contains(q),
            None => tag.contains(q),
        })
}

/// Time and dispatches of one kernel family.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FamilyTime {
    /// The family.
    pub family: String,
    /// Its dispatches per call.
    pub dispatches: usize,
    /// Its time per call, µs (the sum of its dispatches' medians); `None` without
    /// timestamps inside passes.
    pub us: Option<f64>,
}

/// One dispatch of a call and its time.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SlowDispatch {
    /// The kernel (its node).
    pub kernel: String,
    /// Its kind.
    pub kind: String,
    /// Its time, µs (median; timestamps around it).
    pub us: f64,
}

/// The wall-clock latency of calls through a [`Session`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CallLatency {
    /// Calls timed (after the first).
    pub calls: usize,
    /// Median wall clock per call, µs.
    pub median_us: f64,
    /// Fastest call, µs.
    pub min_us: f64,
    /// The median of each part of a call.
    pub parts: CallTimes,
    /// Encoding time per dispatch, µs: the median encode (the first command buffer's, which
    /// holds the first [`glufuse::runtime::FIRST_SUBMIT`] dispatches) over its dispatches.
    pub encode_per_dispatch_us: f64,
}

/// What building the part cost, in seconds (first call in ms).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Setup {
    /// Loading the graph file.
    pub load_s: f64,
    /// The passes (0 for the unfused part).
    pub passes_s: f64,
    /// Uploading weights and constants (making the session).
    pub weights_s: f64,
    /// Building the executable for the binding: code generation, validation, pipelines.
    pub build_s: f64,
    /// The first call, ms.
    pub first_call_ms: f64,
    /// Pipelines compiled.
    pub pipelines: usize,
    /// Buffers and bind groups created up to the end of the first call.
    pub created_first: Created,
    /// Buffers and bind groups created by all the calls after it (0 and 0: nothing made per
    /// call).
    pub created_per_call: Created,
}

/// What one part (fused or unfused) measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PartReport {
    /// `fused` or `unfused`.
    pub part: String,
    /// The adapter.
    pub device: String,
    /// Whether the GPU times come from timestamps (else the wall clock).
    pub timestamps: bool,
    /// Nodes of the graph run.
    pub nodes: usize,
    /// Fused gated units in it.
    pub fused_units: usize,
    /// Dispatches per call.
    pub dispatches: usize,
    /// Dispatches left out of the GPU time per call (`--leave-out`; 0: none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub left_out: usize,
    /// GPU time per call, µs: the median.
    pub gpu_us: f64,
    /// Every sample, µs per call, in the order taken.
    pub gpu_samples_us: Vec<f64>,
    /// Per family, most time first.
    pub families: Vec<FamilyTime>,
    /// The sum of the per-dispatch times, µs (`None` without timestamps inside passes). More
    /// than `gpu_us`: the timestamps between dispatches cost time of their own.
    pub profiled_us: Option<f64>,
    /// The slowest dispatches, slowest first.
    pub slowest: Vec<SlowDispatch>,
    /// Every dispatch in the order recorded (empty without timestamps inside passes).
    #[serde(default)]
    pub dispatch_us: Vec<SlowDispatch>,
    /// The dispatches `--alone` matched, alone and in the model (empty: none asked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alone: Vec<AloneTime>,
    /// Calls through the session.
    pub call: CallLatency,
    /// What it cost to get there.
    pub setup: Setup,
}

/// Everything `bench MODEL` measured (what `--json` writes).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelReport {
    /// The graph file.
    pub graph: String,
    /// The binding of the symbolic dims.
    pub binding: Vec<(String, usize)>,
    /// How each input was made.
    pub inputs: Vec<String>,
    /// Calls per submission of the GPU timing.
    pub reps: usize,
    /// Submissions, profiled calls and session calls.
    pub samples: usize,
    /// Where the parts ran.
    pub process: String,
    /// Which matrix products may be f16.
    #[serde(default)]
    pub matmul_precision: String,
    /// The cooperative-matrix tilings `GLUFUSE_COOP_TILES` set (empty: the picks).
    #[serde(default)]
    pub coop_tiles: String,
    /// The key chunks `GLUFUSE_ATTENTION_CHUNKS` forced (empty: the picks).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub attention_chunks: String,
    /// The `--leave-out` patterns (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leave_out: Vec<String>,
    /// The fused part, then the unfused one.
    pub parts: Vec<PartReport>,
}

/// `GLUFUSE_COOP_TILES` as the parts ran under it (children inherit it), trimmed; empty where
/// unset.
fn coop_tiles_set() -> String {
    std::env::var("GLUFUSE_COOP_TILES").map(|v| v.trim().to_string()).unwrap_or_default()
}

/// `GLUFUSE_ATTENTION_CHUNKS` as the parts ran under it, trimmed; empty where unset.
fn attention_chunks_set() -> String {
    std::env::var("GLUFUSE_ATTENTION_CHUNKS").map(|v| v.trim().to_string()).unwrap_or_default()
}

/// Whether a count is 0 (left out of the JSON).
fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// How many of the slowest dispatches the report lists.
const SLOWEST: usize = 12;
/// Calls through the session before the timed ones.
const WARM_CALLS: usize = 3;

/// The rows of the table an integer input indexes, if it reaches a `Gather`'s indices
/// (through casts and reshapes) whose data is a weight or constant.
fn indexed_rows(g: &Graph, v: Value, b: &Bindings) -> Option<usize> {
    for (user, slot) in g.users(v) {
        let node = g.node(user);
        match &node.op {
            Op::Gather { axis } if slot == 1 => {
                let data = g.inputs(user)[0];
                if matches!(g.node(data.node).op, Op::Weight(_) | Op::Constant(_)) {
                    let dims = concrete(&g.ty(data).shape, b).ok()?;
                    let a = if *axis < 0 { dims.len() as i64 + axis } else { *axis };
                    return dims.get(a as usize).copied();
                }
            }
            Op::Cast { .. } | Op::Reshape { .. } => {
                if let Some(r) = indexed_rows(g, Value::of(user), b) {
                    return Some(r);
                }
            }
            _ => {}
        }
    }
    None
}

/// A splitmix64 step.
fn mix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The inputs of a run: those given as files, the others made up (see the module docs); the
/// binding; and a line per input saying how it was made.
pub fn inputs(g: &Graph, o: &ModelOptions) -> Result<(HashMap<String, Tensor>, Bindings, Vec<String>)> {
    let given = crate::io::parse_dims(&o.dims)?;
    let mut files = vec![];
    for spec in &o.inputs {
        let (name, file) =
            spec.split_once('=').ok_or_else(|| Error::input(format!("--input {spec:?} must be NAME=FILE.npy")))?;
        // (An `If`'s condition the graph was loaded with is no longer one of its inputs.)
        if g.find(name).is_none() && crate::io::conditions(std::slice::from_ref(spec)).contains_key(name) {
            continue;
        }
        files.push((name.to_string(), PathBuf::from(file)));
    }
    let (mut ins, mut b) = glufuse::files::read_inputs(g, &files, &given)?;
    for n in g.input_nodes() {
        for d in &g.node(n).outputs[0].shape {
            for s in d.symbols() {
                b.entry(s).or_insert(1);
            }
        }
    }
    let mut how = vec![];
    let mut floats = 0;
    for (i, n) in g.input_nodes().into_iter().enumerate() {
        let node = g.node(n);
        let name = node.name.clone();
        if ins.contains_key(&name) {
            how.push(format!(
                "{name}: from {}",
                files.iter().find(|f| f.0 == name).map_or(String::new(), |f| f.1.display().to_string())
            ));
            continue;
        }
        let ty = &node.outputs[0];
        let shape = concrete(&ty.shape, &b).map_err(|m| Error::graph(&name, m))?;
        let count: usize = shape.iter().product();
        let t = match ty.dtype {
            d if d.is_float() => {
                floats += 1;
                glufuse::interp::seeded_input(g, i, &b, o.seed)?
            }
            DType::Bool => {
                how.push(format!("{name}: all true"));
                Tensor::from_data(DType::Bool, shape, Data::Bool(vec![true; count]))?
            }
            d => match indexed_rows(g, Value::of(n), &b) {
                Some(rows) if rows > 0 => {
                    how.push(format!("{name}: token ids, uniform in 0..{rows} (seed {})", o.seed));
                    let mut s = o.seed.wrapping_add(i as u64);
                    let v = (0..count).map(|_| (mix(&mut s) % rows as u64) as i64).collect();
                    Tensor::from_data(d, shape, Data::I64(v))?
                }
                _ => {
                    how.push(format!("{name}: all ones"));
                    Tensor::from_data(d, shape, Data::I64(vec![1; count]))?
                }
            },
        };
        ins.insert(name, t);
    }
    if floats > 0 {
        how.push(format!("{floats} float input(s): seeded random values (seed {})", o.seed));
    }
    Ok((ins, b, how))
}

/// What [`measure`] returns: the part's figures, the binding (sorted) and how each input was
/// made.
pub struct Measured {
    /// The figures.
    pub report: PartReport,
    /// The binding of the symbolic dims, by name.
    pub binding: Vec<(String, usize)>,
    /// How each input was made.
    pub inputs: Vec<String>,
}

/// Measures one part in this process.
pub fn measure(gpu: &Gpu, o: &ModelOptions, fused: bool) -> Result<Measured> {
    let secs = |t: Instant| t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut g = load_graph_with(&o.graph, &crate::io::conditions(&o.inputs))?;
    let load_s = secs(t);
    let t = Instant::now();
    if fused {
        PassManager::standard().run(&mut g)?;
    }
    let passes_s = if fused { secs(t) } else { 0.0 };
    let (ins, b, how) = inputs(&g, o)?;
    let nodes = g.len();
    let fused_units = g.topo_order()?.iter().filter(|&&n| matches!(g.node(n).op, Op::FusedGateUp(_))).count();
    let compiled0 = gpu.pipeline_counts().compiled;
    let t = Instant::now();
    let target = Target { matmul_precision: o.matmul_precision, ..gpu.target() };
    let mut session = Session::with_target(gpu, g, target)?;
    let weights_s = secs(t);
    let b = session.bind(&ins, &b)?;
    let t = Instant::now();
    session.executable(&b)?;
    let build_s = secs(t);
    let t = Instant::now();
    session.run_with(&ins, &b)?;
    let first_call_ms = secs(t) * 1e3;
    let created_first = gpu.created();
    let pipelines = gpu.pipeline_counts().compiled - compiled0;

    // GPU time per call, then per dispatch, over the inputs the first call uploaded.
    let exe = session.executable(&b)?;
    let dispatches = exe.dispatch_count();
    let kinds: Vec<&'static str> = exe.kernels().iter().map(|k| k.source().kind.family()).collect();
    let names: Vec<(String, String)> =
        exe.kernels().iter().map(|k| (k.source().name.clone(), k.source().kind.to_string())).collect();
    let left: Vec<bool> = names.iter().map(|(n, k)| o.leave_out.iter().any(|p| leaves_out(p, n, k))).collect();
    let keep = |i: usize| !left[i];
    let (gpu_samples_us, timestamps) =
        time_series(gpu, o.reps.max(1), o.samples, WARM_UP, |enc, reps, ts| exe.record_keeping(enc, reps, ts, &keep))?;
    let per = profile_dispatches(gpu, exe, o.samples)?;
    let mut families: Vec<FamilyTime> = vec![];
    for (i, f) in kinds.iter().enumerate() {
        let row = match families.iter_mut().position(|r| r.family == *f) {
            Some(p) => &mut families[p],
            None => {
                families.push(FamilyTime { family: f.to_string(), dispatches: 0, us: per.as_ref().map(|_| 0.0) });
                families.last_mut().expect("just pushed")
            }
        };
        row.dispatches += 1;
        if let (Some(us), Some(p)) = (row.us.as_mut(), per.as_ref()) {
            *us += p[i];
        }
    }
    families.sort_by(|a, b| b.us.unwrap_or(0.0).total_cmp(&a.us.unwrap_or(0.0)).then(b.dispatches.cmp(&a.dispatches)));
    let profiled_us = per.as_ref().map(|p| p.iter().sum());
    let dispatch_us: Vec<SlowDispatch> = per
        .iter()
        .flatten()
        .zip(&names)
        .map(|(&us, (kernel, kind))| SlowDispatch { kernel: kernel.clone(), kind: kind.clone(), us })
        .collect();
    let mut slowest = dispatch_us.clone();
    slowest.sort_by(|a, b| b.us.total_cmp(&a.us));
    slowest.truncate(SLOWEST);
    let mut alone = vec![];
    for (i, (kernel, kind)) in names.iter().enumerate() {
        if !o.alone.iter().any(|p| leaves_out(p, kernel, kind)) {
            continue;
        }
        let without = |j: usize| j != i && keep(j);
        let (t, _) = time_series(gpu, o.reps.max(1), o.samples, WARM_UP, |enc, reps, ts| {
            exe.record_keeping(enc, reps, ts, &without)
        })?;
        let cycle = |ids: &[usize]| -> Result<f64> {
            let (chain, _) = time_series(gpu, o.reps.max(1), o.samples, WARM_UP, |enc, reps, ts| {
                exe.record_repeated(enc, ids, reps * ALONE_CHAIN, ts)
            })?;
            Ok(median(&chain) / ALONE_CHAIN as f64)
        };
        let before: Vec<usize> = (i.saturating_sub(o.alone_after)..i).collect();
        let after_us =
            if before.is_empty() { None } else { Some(cycle(&[&before[..], &[i]].concat())? - cycle(&before)?) };
        alone.push(AloneTime {
            kernel: kernel.clone(),
            kind: kind.clone(),
            in_model_us: median(&gpu_samples_us) - median(&t),
            alone_us: cycle(&[i])?,
            after: before.len(),
            after_us,
        });
    }

    // Calls as a library user makes them.
    for _ in 0..WARM_CALLS {
        session.run_with(&ins, &b)?;
    }
    let calls = o.samples.max(5) * 2;
    let mut walls = vec![];
    let mut parts = vec![];
    for _ in 0..calls {
        let t = Instant::now();
        let (_, p) = session.run_timed(&ins, &b)?;
        walls.push(secs(t) * 1e6);
        parts.push(p);
    }
    let created_all = gpu.created();
    let med = |f: fn(&CallTimes) -> f64| median(&parts.iter().map(f).collect::<Vec<_>>());
    let parts_med = CallTimes {
        bind_us: med(|p| p.bind_us),
        upload_us: med(|p| p.upload_us),
        encode_us: med(|p| p.encode_us),
        submit_wait_us: med(|p| p.submit_wait_us),
        readback_us: med(|p| p.readback_us),
    };
    let call = CallLatency {
        calls,
        median_us: median(&walls),
        min_us: walls.iter().copied().fold(f64::INFINITY, f64::min),
        parts: parts_med,
        encode_per_dispatch_us: parts_med.encode_us / dispatches.clamp(1, glufuse::runtime::FIRST_SUBMIT) as f64,
    };
    let binding: Vec<(String, usize)> = {
        let mut v: Vec<(String, usize)> = b.iter().map(|(k, &v)| (k.clone(), v)).collect();
        v.sort();
        v
    };
    let report = PartReport {
        part: if fused { "fused" } else { "unfused" }.to_string(),
        device: gpu.describe(),
        timestamps,
        nodes,
        fused_units,
        dispatches,
        left_out: left.iter().filter(|&&l| l).count(),
        gpu_us: median(&gpu_samples_us),
        gpu_samples_us,
        families,
        profiled_us,
        slowest,
        dispatch_us,
        alone,
        call,
        setup: Setup {
            load_s,
            passes_s,
            weights_s,
            build_s,
            first_call_ms,
            pipelines,
            created_first,
            created_per_call: Created {
                buffers: created_all.buffers - created_first.buffers,
                bind_groups: created_all.bind_groups - created_first.bind_groups,
            },
        },
    };
    Ok(Measured { report, binding, inputs: how })
}

/// The header: what was measured and how.
fn header(r: &ModelReport, device: Option<&str>) -> String {
    let binding: Vec<String> = r.binding.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut s = format!(
        "model: {}\nbinding: {}\ninputs: {}\n",
        r.graph,
        if binding.is_empty() { "(no symbolic dims)".to_string() } else { binding.join(", ") },
        r.inputs.join("; ")
    );
    s += &format!("matmul precision: {}\n", r.matmul_precision);
    if !r.coop_tiles.is_empty() {
        s += &format!("cooperative tilings (GLUFUSE_COOP_TILES): {}\n", r.coop_tiles);
    }
    if !r.attention_chunks.is_empty() {
        s += &format!("attention key chunks (GLUFUSE_ATTENTION_CHUNKS): {}\n", r.attention_chunks);
    }
    if !r.leave_out.is_empty() {
        s += &format!(
            "left out of the GPU time per call (--leave-out): the dispatches matching {} (their outputs are then wrong: \
             a measure of what they cost; the other figures run every dispatch)\n",
            r.leave_out.join(", ")
        );
    }
    if let Some(d) = device {
        s += &format!("device: {d}\n");
    }
    s += &format!(
        "timing: GPU time = timestamps around {} calls recorded back to back in one pass, median of {} submissions after {} ms of warm-up; per family = a timestamp between dispatches, median of {} calls (the timestamps add time of their own: compare the shares); call latency = wall clock of Session::run (inputs bound and uploaded, every output read back), median of the calls; {}\n\n",
        r.reps,
        r.samples,
        WARM_UP.as_millis(),
        r.samples,
        r.process
    );
    s
}

/// The rows: one per figure, a column per part, and unfused/fused.
fn table(r: &ModelReport) -> String {
    let (f, u) = (r.parts.iter().find(|p| p.part == "fused"), r.parts.iter().find(|p| p.part == "unfused"));
    let mut s = String::from("| | fused | unfused | unfused/fused |\n| --- | --- | --- | --- |\n");
    let row = |s: &mut String, what: &str, get: &dyn Fn(&PartReport) -> Option<f64>, prec: usize, ratio: bool| {
        let a = f.and_then(get);
        let b = u.and_then(get);
        let cell = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.prec$}"));
        let q = match (a, b) {
            (Some(a), Some(b)) if ratio && a > 0.0 => format!("{:.2}x", b / a),
            _ => String::new(),
        };
        s.push_str(&format!("| {what} | {} | {} | {q} |\n", cell(a), cell(b)));
    };
    row(&mut s, "**GPU time per call, µs**", &|p| Some(p.gpu_us), 1, true);
    row(&mut s, "dispatches", &|p| Some(p.dispatches as f64), 0, true);
    if !r.leave_out.is_empty() {
        row(&mut s, "dispatches left out of the GPU time", &|p| Some(p.left_out as f64), 0, false);
    }
    row(&mut s, "fused gated units", &|p| Some(p.fused_units as f64), 0, false);
    let mut fams: Vec<String> = vec![];
    for p in [f, u].into_iter().flatten() {
        for x in &p.families {
            if !fams.contains(&x.family) {
                fams.push(x.family.clone());
            }
        }
    }
    for fam in &fams {
        let cell = |p: Option<&PartReport>| {
            let share = |us: f64| p.and_then(|p| p.profiled_us).filter(|&t| t > 0.0).map_or(0.0, |t| 100.0 * us / t);
            p.and_then(|p| p.families.iter().find(|x| &x.family == fam)).map_or("–".to_string(), |x| match x.us {
                Some(us) => format!("{us:.1} ({}, {:.0}%)", x.dispatches, share(us)),
                None => format!("({})", x.dispatches),
            })
        };
        let us =
            |p: Option<&PartReport>| p.and_then(|p| p.families.iter().find(|x| &x.family == fam)).and_then(|x| x.us);
        let q = match (us(f), us(u)) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
            _ => String::new(),
        };
        s.push_str(&format!("| {fam} µs (dispatches, share) | {} | {} | {q} |\n", cell(f), cell(u)));
    }
    row(&mut s, "sum of per-dispatch times, µs", &|p| p.profiled_us, 1, true);
    row(&mut s, "**call latency (Session::run, wall), µs**", &|p| Some(p.call.median_us), 1, true);
    row(&mut s, "  fastest call, µs", &|p| Some(p.call.min_us), 1, true);
    row(&mut s, "  bind + find executable, µs", &|p| Some(p.call.parts.bind_us), 1, false);
    row(&mut s, "  check + upload inputs, µs", &|p| Some(p.call.parts.upload_us), 1, false);
    row(&mut s, "  encode (first command buffer), µs", &|p| Some(p.call.parts.encode_us), 1, false);
    row(&mut s, "  encode per dispatch (first buffer), µs", &|p| Some(p.call.encode_per_dispatch_us), 1, false);
    row(&mut s, "  submit + wait, µs", &|p| Some(p.call.parts.submit_wait_us), 1, false);
    row(&mut s, "  readback, µs", &|p| Some(p.call.parts.readback_us), 1, false);
    row(&mut s, "setup: load, s", &|p| Some(p.setup.load_s), 2, false);
    row(&mut s, "setup: passes, s", &|p| Some(p.setup.passes_s), 2, false);
    row(&mut s, "setup: weights up, s", &|p| Some(p.setup.weights_s), 2, false);
    row(&mut s, "setup: executable (codegen, pipelines), s", &|p| Some(p.setup.build_s), 2, false);
    row(&mut s, "setup: pipelines compiled", &|p| Some(p.setup.pipelines as f64), 0, false);
    row(&mut s, "setup: first call, ms", &|p| Some(p.setup.first_call_ms), 1, false);
    row(
        &mut s,
        "buffers / bind groups made per call",
        &|p| Some((p.setup.created_per_call.buffers + p.setup.created_per_call.bind_groups) as f64),
        0,
        false,
    );
    for p in [f, u].into_iter().flatten().filter(|p| !p.alone.is_empty()) {
        let after = p.alone.iter().map(|a| a.after).max().unwrap_or(0);
        // A column for the time after the dispatches before it, where asked.
        let (head, column, rule) = match after {
            0 => (String::new(), "", ""),
            n => (format!(", and after the (up to) {n} dispatches before it ({ALONE_CHAIN} cycles of them and it, less them alone)"), " after |", " --- |"),
        };
        s.push_str(&format!(
            "\ndispatches alone (--alone), {}: what each costs the model (the GPU time per call less the call without it), alone ({ALONE_CHAIN} of it back to back on the model's buffers){head}, µs\n\n| kernel | kind | in the model | alone |{column}\n| --- | --- | --- | --- |{rule}\n",
            p.part
        ));
        for a in &p.alone {
            let cell = match (after, a.after_us) {
                (0, _) => String::new(),
                (_, Some(us)) => format!(" {us:.1} |"),
                (_, None) => " – |".to_string(),
            };
            s.push_str(&format!("| {} | {} | {:.1} | {:.1} |{cell}\n", a.kernel, a.kind, a.in_model_us, a.alone_us));
        }
    }
    for p in [f, u].into_iter().flatten() {
        if p.slowest.is_empty() {
            continue;
        }
        s.push_str(&format!("\nslowest dispatches, {}: ", p.part));
        let l: Vec<String> = p.slowest.iter().map(|d| format!("{} ({}) {:.1} µs", d.kernel, d.kind, d.us)).collect();
        s.push_str(&l.join("; "));
        s.push('\n');
    }
    s
}

/// Runs `bench MODEL`: each part in a child process (or all here, `same_process`; or one
/// part here, as a child writing `child_report`).
pub fn run(
    o: &ModelOptions,
    same_process: bool,
    part: Option<bool>,
    child_report: Option<&Path>,
    json: Option<&Path>,
) -> Result<()> {
    if let Some(fused) = part {
        let gpu = Gpu::new()?;
        let Measured { report: p, binding, inputs: how } = measure(&gpu, o, fused)?;
        let r = ModelReport {
            graph: o.graph.display().to_string(),
            binding,
            inputs: how,
            reps: o.reps,
            samples: o.samples,
            process: "one part in this process".into(),
            matmul_precision: o.matmul_precision.to_string(),
            coop_tiles: coop_tiles_set(),
            attention_chunks: attention_chunks_set(),
            leave_out: o.leave_out.clone(),
            parts: vec![p],
        };
        if child_report.is_none() {
            out!("{}", header(&r, Some(&r.parts[0].device)));
        }
        return finish(&r, child_report.or(json), child_report.is_none());
    }
    let mut r = ModelReport {
        graph: o.graph.display().to_string(),
        binding: vec![],
        inputs: vec![],
        reps: o.reps,
        samples: o.samples,
        process: if same_process {
            "fused, then unfused, in this one process (the fused session dropped first)".into()
        } else {
            "fused and unfused each in a fresh process".into()
        },
        parts: vec![],
        matmul_precision: o.matmul_precision.to_string(),
        coop_tiles: coop_tiles_set(),
        attention_chunks: attention_chunks_set(),
        leave_out: o.leave_out.clone(),
    };
    {
        let g = load_graph_with(&o.graph, &crate::io::conditions(&o.inputs))?;
        let (_, b, how) = inputs(&g, o)?;
        let mut v: Vec<(String, usize)> = b.iter().map(|(k, &v)| (k.clone(), v)).collect();
        v.sort();
        r.binding = v;
        r.inputs = how;
    }
    out!("{}", header(&r, None));
    if same_process {
        let gpu = Gpu::new()?;
        outln!("device: {}", gpu.describe());
        for fused in [true, false] {
            r.parts.push(measure(&gpu, o, fused)?.report);
        }
    } else {
        let tmp = tempfile::tempdir().map_err(|e| Error::Job(format!("temporary folder: {e}")))?;
        for fused in [true, false] {
            let report = tmp.path().join("part.json");
            let mut args: Vec<String> = vec![
                "bench".into(),
                o.graph.display().to_string(),
                "--in-process".into(),
                "--part".into(),
                if fused { "fused" } else { "unfused" }.into(),
                "--reps".into(),
                o.reps.to_string(),
                "--samples".into(),
                o.samples.to_string(),
                "--seed".into(),
                o.seed.to_string(),
                "--child-report".into(),
                report.display().to_string(),
            ];
            for i in &o.inputs {
                args.extend(["--input".to_string(), i.clone()]);
            }
            match o.matmul_precision {
                MatmulPrecision::AsWeights => {}
                MatmulPrecision::F32 => args.push("--matmul-precision=f32".into()),
                MatmulPrecision::F16 => args.push("--matmul-precision=f16".into()),
            }
            for d in &o.dims {
                args.extend(["--dim".to_string(), d.clone()]);
            }
            for p in &o.leave_out {
                args.extend(["--leave-out".to_string(), p.clone()]);
            }
            for p in &o.alone {
                args.extend(["--alone".to_string(), p.clone()]);
            }
            if o.alone_after > 0 {
                args.extend(["--alone-after".to_string(), o.alone_after.to_string()]);
            }
            child_command(&args)?;
            let bytes = std::fs::read(&report).map_err(|e| Error::Job(format!("benchmark child's report: {e}")))?;
            let mut got: ModelReport = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Job(format!("benchmark child wrote bad JSON: {e}")))?;
            let p = got.parts.pop().ok_or_else(|| Error::Job("benchmark child wrote no part".into()))?;
            if fused {
                outln!("device: {}", p.device);
            }
            r.parts.push(p);
        }
    }
    outln!();
    finish(&r, json, true)
}

/// Prints the table (when `print`) and writes the report as JSON to `json`.
fn finish(r: &ModelReport, json: Option<&Path>, print: bool) -> Result<()> {
    if print {
        out!("{}", table(r));
    }
    if let Some(p) = json {
        let j = serde_json::to_string_pretty(r).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(p, j.as_bytes())?;
    }
    Ok(())
}
