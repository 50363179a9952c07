//! The `glufuse` command line. `glufuse` alone runs the bundled default job; subcommands
//! show, fuse, synthesise, interpret, generate WGSL for, run and benchmark graphs, one file
//! each. Exit codes: 0 success, 1 the job failed, 2 bad input or usage. Errors go to stderr;
//! output files are written atomically and only once everything they depend on has
//! succeeded. A closed standard output (`| head`) ends the printing quietly (`out.rs`). The library (`glufuse`) does the work; this binary owns the arguments (clap),
//! the printing and the benchmark harness.

mod args;
#[cfg(feature = "gpu")]
mod bench;
mod bench_pass;
mod default_job;
mod fuse;
mod interp;
mod io;
mod out;
mod progress;
#[cfg(feature = "gpu")]
mod run;
mod show;
mod synth;
mod wgsl;

use args::{Cli, Cmd};
use clap::Parser;
use glufuse::Result;

fn main() {
    let code = {
        // Removed when it goes out of scope, before the exit (which runs no destructors).
        let _runtime_dir = quiet_runtime_dir();
        exit_code()
    };
    std::process::exit(code);
}

/// Mesa's Vulkan and EGL drivers print `error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment` when that variable is unset (a container, a CI job, `sudo`), though they work
/// without it. Where it is unset or names no folder, it is set to a private temporary folder
/// for this process, before any GPU code runs; the folder goes when the process ends.
fn quiet_runtime_dir() -> Option<tempfile::TempDir> {
    if !cfg!(all(unix, feature = "gpu")) {
        return None;
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
        return None;
    }
    let dir = tempfile::Builder::new().prefix("glufuse-runtime-").tempdir().ok()?;
    // Single-threaded here: nothing else reads the environment yet.
    std::env::set_var("XDG_RUNTIME_DIR", dir.path());
    Some(dir)
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
    // The GPU's wait limit and tiling overrides, checked here for the same reason (the default job would
    // otherwise report it as no GPU at all).
    #[cfg(feature = "gpu")]
    if let Err(m) = glufuse::runtime::wait_timeout_from_env()
        .and(glufuse::runtime::coop_tiles_from_env().map(|_| ()))
        .and(glufuse::runtime::attention_chunks_from_env().map(|_| ()))
    {
        out::errln!("error: {m}");
        return 2;
    }
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
        // wgsl and run name the graph file themselves, except in errors about the adapter.
        Some(Cmd::Wgsl(a)) => wgsl::run(a),
        #[cfg(feature = "gpu")]
        Some(Cmd::Run(a)) => run::run(a),
        #[cfg(feature = "gpu")]
        Some(Cmd::Bench(a)) => bench::run(*a),
        #[cfg(not(feature = "gpu"))]
        Some(Cmd::Run(_)) => Err(without_gpu("run")),
        #[cfg(not(feature = "gpu"))]
        Some(Cmd::Bench(_)) => Err(without_gpu("bench")),
        #[cfg(feature = "gpu")]
        Some(Cmd::BenchProbe(a)) => bench::probe::run(&a.cases, a.case.as_deref(), a.reps, a.samples),
        #[cfg(not(feature = "gpu"))]
        Some(Cmd::BenchProbe(_)) => Err(without_gpu("bench-probe")),
        Some(Cmd::BenchPass(a)) => bench_pass::run(a),
    }
}

/// The error of a command that needs the GPU in a binary built without it (exit code 2).
#[cfg(not(feature = "gpu"))]
pub fn without_gpu(command: &str) -> glufuse::Error {
    glufuse::Error::input(format!(
        "`glufuse {command}` needs the GPU, but this glufuse was built without GPU support (cargo feature \
         `gpu` off); build it with the default features (`cargo install glufuse`)"
    ))
}

/// Names the graph file in an error about the graph that came after loading it (a node the
/// passes, the interpreter or codegen refused, a GPU limit, a failed check); errors about
/// arguments and other files say what they concern already, and errors about the adapter
/// (no adapter, a bad `WGPU_BACKEND`) concern the machine, not the graph: `run` and `wgsl`
/// open it outside of this.
fn about_graph(e: glufuse::Error, graph: &std::path::Path) -> glufuse::Error {
    use glufuse::Error;
    match e {
        e @ (Error::Graph { .. } | Error::Gpu(_) | Error::Job(_)) => e.in_file(graph),
        e => e,
    }
}
