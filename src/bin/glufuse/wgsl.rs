//! `glufuse wgsl GRAPH -o DIR [--unfused] [--dim NAME=N].. [--device] [--matmul-precision
//! f16|f32]`: one `.wgsl` file per kernel plus `manifest.json`, for portable WebGPU limits or
//! this machine's adapter; prints each projection's kernel choice and its reason. The
//! command owns DIR: it writes into a new or empty folder, or replaces an earlier output of
//! its own; it refuses a folder holding anything else.

use crate::args::{PrecisionArg, WgslArgs};
use crate::io::bindings;
use crate::out::outln;
use glufuse::codegen::{file_name, generate, manifest, Target};
use glufuse::files::write_atomic;
use glufuse::passes::PassManager;
use glufuse::{Error, Result};
use std::path::Path;

/// Runs the command. Errors about the graph after loading it name the graph file
/// ([`crate::about_graph`]); opening the adapter for `--device` concerns the machine, so its
/// errors do not.
pub fn run(a: WgslArgs) -> Result<()> {
    let about = |e| crate::about_graph(e, &a.graph);
    let mut g = crate::progress::load(&a.graph).map_err(about)?;
    if !a.unfused {
        PassManager::standard().run(&mut g).map_err(about)?;
    }
    let b = bindings(&g, &a.dims).map_err(about)?;
    let target = if a.device { device_target()? } else { Target::default() };
    let target = Target { matmul_precision: PrecisionArg::resolve(a.matmul_precision), ..target };
    let kernels = generate(&g, &b, &target).map_err(about)?;
    // Everything is generated and validated before the first file is written.
    let out = &a.output;
    prepare_folder(out)?;
    for (i, k) in kernels.iter().enumerate() {
        write_atomic(&out.join(file_name(i, &k.source().name)), k.source().wgsl.as_bytes())?;
    }
    let manifest = serde_json::to_string_pretty(&manifest(&g, &kernels)).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&out.join("manifest.json"), manifest.as_bytes())?;
    for k in &kernels {
        if let Some(c) = &k.source().choice {
            outln!("{}: {c}", k.source().name);
        }
    }
    outln!("wrote {} kernels to {}", kernels.len(), out.display());
    Ok(())
}

/// Whether a file name is one `glufuse wgsl` writes: `manifest.json` or `NNN_name.wgsl`.
fn ours(name: &str) -> bool {
    let kernel = name
        .strip_suffix(".wgsl")
        .and_then(|n| n.split_once('_'))
        .is_some_and(|(num, _)| num.len() >= 3 && num.bytes().all(|c| c.is_ascii_digit()));
    name == "manifest.json" || kernel
}

/// Makes `out` ready for this run's files: a folder that does not exist is created; one that
/// holds only an earlier output of this command (see [`ours`]) is emptied of it, so that no
/// stale kernel sits beside the new manifest; any other content (or a file in the way) is
/// refused with exit code 2 and nothing is touched.
fn prepare_folder(out: &Path) -> Result<()> {
    let werr = |e: std::io::Error| Error::Write { path: out.to_path_buf(), msg: e.to_string() };
    if !out.exists() {
        return std::fs::create_dir_all(out).map_err(werr);
    }
    if !out.is_dir() {
        return Err(Error::input(format!("-o {}: not a folder", out.display())));
    }
    let mut old = vec![];
    let mut foreign = vec![];
    for e in std::fs::read_dir(out).map_err(werr)? {
        let e = e.map_err(werr)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if ours(&name) && e.file_type().map_err(werr)?.is_file() {
            old.push(e.path());
        } else {
            foreign.push(name);
        }
    }
    if !foreign.is_empty() {
        foreign.sort();
        let shown: Vec<&str> = foreign.iter().take(3).map(String::as_str).collect();
        return Err(Error::input(format!(
            "-o {}: the folder holds files that are not an earlier `glufuse wgsl` output ({}{}); \
             give a new or empty folder",
            out.display(),
            shown.join(", "),
            if foreign.len() > 3 { format!(" and {} more", foreign.len() - 3) } else { String::new() }
        )));
    }
    for p in old {
        std::fs::remove_file(&p).map_err(|e| Error::Write { path: p.clone(), msg: e.to_string() })?;
    }
    Ok(())
}

/// The code generation target of this machine's adapter.
#[cfg(feature = "gpu")]
fn device_target() -> Result<Target> {
    let gpu = glufuse::runtime::Gpu::new()?;
    outln!("adapter: {}; cooperative matrices: {}", gpu.describe(), gpu.describe_coop());
    Ok(gpu.target())
}

#[cfg(not(feature = "gpu"))]
fn device_target() -> Result<Target> {
    Err(crate::without_gpu("wgsl --device"))
}
