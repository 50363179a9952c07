//! `glufuse wgsl GRAPH -o DIR [--unfused] [--dim NAME=N].. [--device] [--matmul-precision
//! f16|f32]`: one `.wgsl` file per kernel plus `manifest.json`, for portable WebGPU limits or
//! this machine's adapter; prints each projection's kernel choice and its reason.

use crate::args::{PrecisionArg, WgslArgs};
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
    let target = if a.device {
        let gpu = Gpu::new()?;
        outln!("adapter: {}; cooperative matrices: {}", gpu.describe(), gpu.describe_coop());
        gpu.target()
    } else {
        Target::default()
    };
    let target = Target { matmul_precision: PrecisionArg::resolve(a.matmul_precision), ..target };
    let kernels = generate(&g, &b, &target)?;
    // Everything is generated and validated before the first file is written.
    let out = &a.output;
    std::fs::create_dir_all(out).map_err(|e| Error::Write { path: out.clone(), msg: e.to_string() })?;
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
