//! `glufuse wgsl GRAPH -o DIR [--unfused] [--dim NAME=N].. [--device]`: one `.wgsl` file per
//! kernel plus `manifest.json`, for portable WebGPU limits or this machine's adapter.

use crate::args::WgslArgs;
use crate::io::bindings;
use crate::out::outln;
use glufuse::codegen::{file_name, generate, manifest, Target};
use glufuse::files::{load_graph, write_atomic};
use glufuse::passes::PassManager;
use glufuse::runtime::Gpu;
use glufuse::{Error, Result};

/// Runs the command.
pub fn run(a: WgslArgs) -> Result<()> {
    let mut g = load_graph(&a.graph)?;
    if !a.unfused {
        PassManager::standard().run(&mut g)?;
    }
    let b = bindings(&g, &a.dims)?;
    let target = if a.device { Gpu::new()?.target() } else { Target::default() };
    let kernels = generate(&g, &b, &target)?;
    // Everything is generated and validated before the first file is written.
    let out = &a.output;
    std::fs::create_dir_all(out).map_err(|e| Error::Write { path: out.clone(), msg: e.to_string() })?;
    for (i, k) in kernels.iter().enumerate() {
        write_atomic(&out.join(file_name(i, &k.source().name)), k.source().wgsl.as_bytes())?;
    }
    let manifest = serde_json::to_string_pretty(&manifest(&g, &kernels)).map_err(|e| Error::Internal(e.to_string()))?;
    write_atomic(&out.join("manifest.json"), manifest.as_bytes())?;
    outln!("wrote {} kernels to {}", kernels.len(), out.display());
    Ok(())
}
