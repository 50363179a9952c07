//! Helpers shared by the integration tests.
#![allow(dead_code)]

use glufuse::interp;
use glufuse::shape::Bindings;
use glufuse::Graph;
use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `tests/graphs/*.json`, sorted by name, as (stem, path).
pub fn graph_files() -> Vec<(String, PathBuf)> {
    let mut v: Vec<_> = std::fs::read_dir(root().join("tests/graphs"))
        .expect("tests/graphs exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    v.sort();
    v
}

/// Dims bound for graphs with symbolic sizes.
pub fn bindings() -> Bindings {
    [("batch".to_string(), 2usize), ("seq".to_string(), 3usize)].into_iter().collect()
}

/// Runs two graphs on the same seeded inputs and returns the max error relative to the
/// reference's largest magnitude, over all outputs.
pub fn rel_diff(reference: &Graph, other: &Graph, seed: u64) -> f64 {
    let inputs = interp::seeded_inputs(reference, &bindings(), seed).expect("inputs");
    let a = interp::run(reference, &inputs).expect("reference runs");
    let b = interp::run(other, &inputs).expect("other runs");
    assert_eq!(a.len(), b.len(), "output counts differ");
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.shape(), y.shape(), "output shapes differ");
        worst = worst.max(glufuse::interp::compare(y, x).1);
    }
    worst
}

/// Whether `REQUIRE_GPU=1` (CI): a missing adapter fails a GPU test, and sweeps run in full.
pub fn gpu_required() -> bool {
    std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU, or `None` with a message saying why the test skips. Under `REQUIRE_GPU=1` (CI)
/// a missing adapter fails the test instead. Without the `gpu` feature there is none.
#[cfg(feature = "gpu")]
pub fn gpu() -> Option<glufuse::runtime::Gpu> {
    quiet_runtime_dir();
    match glufuse::runtime::Gpu::new() {
        Ok(g) => Some(g),
        Err(e) if gpu_required() => {
            panic!("REQUIRE_GPU=1 but no GPU adapter is available: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: no GPU adapter ({e}); set REQUIRE_GPU=1 to make this a failure");
            None
        }
    }
}

/// Mesa's drivers print `error: XDG_RUNTIME_DIR is invalid or not set in the environment`
/// when that variable is unset (containers, CI). As the binary does for itself, the test
/// process gives them a folder of its own (under cargo's `target/tmp`), once, before the
/// first adapter is opened; commands the tests run inherit it.
#[cfg(feature = "gpu")]
fn quiet_runtime_dir() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir()) {
            return;
        }
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-runtime");
        if std::fs::create_dir_all(&dir).is_ok() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
            }
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    });
}

/// How much of a GPU sweep a test runs on this adapter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Every case.
    Full,
    /// A representative subset: every kernel kind and code path once, not every size,
    /// dtype and tiling combined with every other.
    Subset,
}

/// The one rule that sizes the GPU sweeps (tests/kernels.rs, tests/gpu.rs, tests/models.rs,
/// tests/q4.rs): a hardware adapter runs them in full; a software one (lavapipe,
/// llvmpipe, SwiftShader, WARP: every pipeline an LLVM compile, every dispatch CPU time) runs
/// a representative subset, unless `REQUIRE_GPU=1` (CI, on lavapipe) or
/// `GLUFUSE_FULL_TESTS=1` asks for everything. Prints which it chose and why, once per test
/// (shown by `cargo test -- --nocapture`).
#[cfg(feature = "gpu")]
pub fn sweep(gpu: &glufuse::runtime::Gpu, test: &str) -> Sweep {
    let full_asked = std::env::var("GLUFUSE_FULL_TESTS").is_ok_and(|v| v == "1");
    let (sweep, why) = if gpu_required() {
        (Sweep::Full, "REQUIRE_GPU=1".to_string())
    } else if full_asked {
        (Sweep::Full, "GLUFUSE_FULL_TESTS=1".to_string())
    } else if gpu.is_software() {
        (Sweep::Subset, "software adapter; GLUFUSE_FULL_TESTS=1 runs all".to_string())
    } else {
        (Sweep::Full, "hardware adapter".to_string())
    };
    eprintln!("{test}: {} sweep on {} ({why})", if sweep == Sweep::Full { "full" } else { "subset" }, gpu.describe());
    sweep
}

/// Code generation options as for an H100: 48 KiB of workgroup memory, subgroups of 32 (the
/// subgroup reductions that a software adapter without one fixed subgroup size never runs).
pub fn h100() -> glufuse::codegen::Target {
    use glufuse::codegen::Target;
    Target {
        caps: Target::default().caps | naga::valid::Capabilities::SUBGROUP,
        max_workgroup_storage_bytes: 49152,
        subgroup_size: Some(32),
        ..Target::default()
    }
}

/// [`h100`] with the cooperative matrices an H100 offers (16×16×16 f16×f16→f32) and f16.
pub fn h100_coop() -> glufuse::codegen::Target {
    use glufuse::codegen::{CoopMatrix, Target};
    use naga::valid::Capabilities;
    let t = h100();
    Target {
        caps: t.caps | Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16,
        coop_matrix: vec![CoopMatrix::F16_F32_16],
        ..t
    }
}

/// The adapter's target with its cooperative-matrix GEMMs emulated and f16 products allowed
/// (what a software adapter runs them as), or `None` with a message saying the test skips
/// where the adapter has no f16 in shaders.
#[cfg(feature = "gpu")]
pub fn emulated_coop(gpu: &glufuse::runtime::Gpu) -> Option<glufuse::codegen::Target> {
    use glufuse::codegen::{MatmulPrecision, Target};
    if !gpu.target().caps.contains(naga::valid::Capabilities::SHADER_FLOAT16) {
        eprintln!("SKIPPED: the adapter has no f16 in shaders ({})", gpu.describe());
        return None;
    }
    Some(Target { coop_emulate: true, matmul_precision: MatmulPrecision::F16, ..gpu.target() })
}
