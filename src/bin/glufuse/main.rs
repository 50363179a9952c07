//! The `glufuse` command line. `glufuse` alone runs the bundled default job; subcommands
//! show, fuse, synthesise, interpret, generate WGSL for, run and benchmark graphs, one file
//! each. Exit codes: 0 success, 1 the job failed, 2 bad input or usage. Errors go to stderr;
//! output files are written atomically and only once everything they depend on has
//! succeeded. A closed standard output (`| head`) ends the printing quietly (`out.rs`). The library (`glufuse`) does the work; this binary owns the arguments (clap),
//! the printing and the benchmark harness.

mod args;
mod bench;
mod bench_pass;
mod default_job;
mod fuse;
mod interp;
mod io;
mod out;
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
    // The budget from GLUFUSE_MAX_*, checked once here so that a value that is not a size is
    // an error rather than a default.
    match glufuse::ir::limits::Budget::from_env() {
        Ok(b) => glufuse::ir::limits::set_global(b),
        Err(m) => {
            out::errln!("error: {m}");
            return 2;
        }
    }
    let code = match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            out::errln!("error: {e}");
            e.exit_code()
        }
    };
    match out::finish() {
        Some(e) if code == 0 => {
            out::errln!("error: cannot write standard output: {e}");
            1
        }
        _ => code,
    }
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.cmd {
        None => default_job::run(),
        Some(Cmd::Show(a)) => show::run(a),
        Some(Cmd::Fuse(a)) => {
            let f = a.graph.clone();
            fuse::run(a).map_err(|e| about_graph(e, &f))
        }
        Some(Cmd::Synth(a)) => synth::run(a),
        Some(Cmd::Interp(a)) => {
            let f = a.graph.clone();
            interp::run(a).map_err(|e| about_graph(e, &f))
        }
        Some(Cmd::Wgsl(a)) => {
            let f = a.graph.clone();
            wgsl::run(a).map_err(|e| about_graph(e, &f))
        }
        Some(Cmd::Run(a)) => {
            let f = a.graph.clone();
            run::run(a).map_err(|e| about_graph(e, &f))
        }
        Some(Cmd::Bench(a)) => bench::run(a),
        Some(Cmd::BenchProbe(a)) => bench::probe::run(&a.cases, a.case.as_deref(), a.reps, a.samples),
        Some(Cmd::BenchPass(a)) => bench_pass::run(a),
    }
}

/// Names the graph file in an error about the graph that came after loading it (a node the
/// passes, the interpreter or codegen refused, a GPU limit, a failed check); errors about
/// arguments and other files say what they concern already.
fn about_graph(e: glufuse::Error, graph: &std::path::Path) -> glufuse::Error {
    use glufuse::Error;
    match e {
        e @ (Error::Graph { .. } | Error::Gpu(_) | Error::Job(_)) => e.in_file(graph),
        e => e,
    }
}
