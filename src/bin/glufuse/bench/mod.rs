//! `glufuse bench [--shapes HxI,..] [--rows ..] [--dtypes ..] [--layout ..] [--gemm-tiles ..
//! | --tune] [--matmul-precision f16|f32]`: fused against unfused gate/up kernels on the GPU,
//! each graph in a fresh process unless `--in-process` (see [`harness`]), with each graph's
//! projection kernel choice; `glufuse bench MODEL ..`: a whole graph of the user's, fused
//! against unfused ([`model`]); `glufuse bench-probe`: the long-lived-process experiment
//! ([`probe`]).

pub mod harness;
pub mod model;
pub mod probe;

use crate::args::{BenchArgs, PartArg, PrecisionArg};
use crate::out::out;
use crate::progress;
use glufuse::codegen::Tiles;
use glufuse::files::write_atomic;
use glufuse::runtime::Gpu;
use glufuse::synth::parse_shape;
use glufuse::{Error, Result};
use harness::{BenchOptions, Part};
use indicatif::ProgressBar;

/// Runs the command.
pub fn run(a: BenchArgs) -> Result<()> {
    if let Some(graph) = &a.model {
        let o = model::ModelOptions {
            graph: graph.clone(),
            inputs: a.inputs.clone(),
            dims: a.dims.clone(),
            seed: a.seed,
            reps: a.reps,
            samples: a.samples,
            matmul_precision: PrecisionArg::resolve(a.matmul_precision),
            leave_out: a.leave_out.clone(),
            alone: a.alone.clone(),
            alone_after: a.alone_after,
        };
        let part = match a.part {
            PartArg::Both => None,
            PartArg::Fused => Some(true),
            PartArg::Unfused => Some(false),
        };
        if part.is_some() && !a.in_process {
            return Err(Error::input("--part fused|unfused needs --in-process (the isolated run times both parts)"));
        }
        return model::run(&o, a.in_process, part, a.child_report.as_deref(), a.json.as_deref());
    }
    let gemm_tiles =
        a.gemm_tiles.map(|t| t.parse::<Tiles>()).transpose().map_err(|e| Error::input(format!("--gemm-tiles: {e}")))?;
    let shapes = a
        .shapes
        .iter()
        .map(|s| parse_shape(s).ok_or_else(|| Error::input(format!("--shapes: {s:?} is not HxI"))))
        .collect::<Result<Vec<_>>>()?;
    let o = BenchOptions {
        shapes,
        rows: a.rows,
        dtypes: a.dtypes.iter().map(|&d| d.into()).collect(),
        layout: a.layout.into(),
        reps: a.reps,
        samples: a.samples,
        part: match a.part {
            PartArg::Both => Part::Both,
            PartArg::Fused => Part::Fused,
            PartArg::Unfused => Part::Unfused,
        },
        gemm_tiles,
        tune: a.tune,
        matmul_precision: PrecisionArg::resolve(a.matmul_precision),
        q4_unpack: a.q4_unpack.parse().map_err(|e: Error| Error::input(format!("--q4-unpack: {e}")))?,
        q4_cols: match a.q4_cols {
            None | Some(1 | 2 | 4) => a.q4_cols,
            Some(r) => return Err(Error::input(format!("--q4-cols {r}: 1, 2 or 4"))),
        },
    };
    if !a.in_process && a.part != PartArg::Both {
        return Err(Error::input("--part fused|unfused needs --in-process (the isolated run times both parts)"));
    }
    // The table goes to stdout as it is measured (header first), above a progress bar.
    let configs = (o.shapes.len() * o.dtypes.len() * o.rows.len()) as u64;
    let steps = if a.in_process { configs } else { 2 * configs };
    let pb = if a.child_report.is_some() { ProgressBar::hidden() } else { progress::bar(steps, "benchmarking") };
    let emit = |text: &str| pb.suspend(|| out!("{text}"));
    let rows = if a.in_process {
        let gpu = progress::step("opening the GPU", Gpu::new)?;
        let m = harness::run(&gpu, &o, emit, || pb.inc(1))?;
        if let Some(p) = &a.child_report {
            let j = serde_json::to_string(&m).map_err(|e| Error::Internal(e.to_string()))?;
            write_atomic(p, j.as_bytes())?;
        }
        m.rows
    } else {
        harness::run_isolated(&o, emit, || pb.inc(1))?
    };
    pb.finish_and_clear();
    if let Some(p) = a.json {
        let j = serde_json::to_string_pretty(&rows).map_err(|e| Error::Internal(e.to_string()))?;
        write_atomic(&p, j.as_bytes())?;
    }
    Ok(())
}
