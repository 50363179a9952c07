//! The `glufuse` command line. `glufuse` alone runs the bundled default job; subcommands
//! show, fuse, synthesise, interpret, generate WGSL for, run and benchmark graphs, one file
//! each. Exit codes: 0 success, 1 the job failed, 2 bad input or usage. Errors go to stderr;
//! output files are written atomically and only once everything they depend on has
//! succeeded. The library (`glufuse`) does the work; this binary owns the arguments (clap),
//! the printing and the benchmark harness.

mod args;
mod bench;
mod bench_pass;
mod default_job;
mod fuse;
mod interp;
mod io;
mod run;
mod show;
mod synth;
mod wgsl;

use args::{Cli, Cmd};
use clap::Parser;
use glufuse::Result;

fn main() {
    std::process::exit(exit_code());
}

/// Runs the command line and returns the process exit code.
fn exit_code() -> i32 {
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
        None => default_job::run(),
        Some(Cmd::Show(a)) => show::run(a),
        Some(Cmd::Fuse(a)) => fuse::run(a),
        Some(Cmd::Synth(a)) => synth::run(a),
        Some(Cmd::Interp(a)) => interp::run(a),
        Some(Cmd::Wgsl(a)) => wgsl::run(a),
        Some(Cmd::Run(a)) => run::run(a),
        Some(Cmd::Bench(a)) => bench::run(a),
        Some(Cmd::BenchProbe(a)) => bench::probe::run(&a.cases, a.case.as_deref(), a.reps, a.samples),
        Some(Cmd::BenchPass(a)) => bench_pass::run(a),
    }
}
