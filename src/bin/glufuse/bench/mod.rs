//! `glufuse bench [--shapes HxI,..] [--rows ..] [--dtypes ..] [--layout ..] [--gemm-tiles ..
//! | --tune]`: fused against unfused gate/up kernels on the GPU, each graph in a fresh
//! process unless `--in-process` (see [`harness`]).

pub mod harness;

use crate::args::{BenchArgs, PartArg};
use crate::progress;
use glufuse::codegen::Tiles;
use glufuse::files::write_atomic;
use glufuse::runtime::Gpu;
use glufuse::synth::parse_shape;
use glufuse::{Error, Result};
use harness::{BenchOptions, Part};
use indicatif::ProgressBar;
use std::io::Write;

/// Runs the command.
pub fn run(a: BenchArgs) -> Result<()> {
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
    };
    if !a.in_process && a.part != PartArg::Both {
        return Err(Error::input("--part fused|unfused needs --in-process (the isolated run times both parts)"));
    }
    // The table goes to stdout as it is measured (header first), above a progress bar.
    let configs = (o.shapes.len() * o.dtypes.len() * o.rows.len()) as u64;
    let steps = if a.in_process { configs } else { 2 * configs };
    let pb = if a.child_report.is_some() { ProgressBar::hidden() } else { progress::bar(steps, "benchmarking") };
    let emit = |text: &str| {
        pb.suspend(|| {
            print!("{text}");
            let _ = std::io::stdout().flush();
        })
    };
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
