//! glufuse: finds the gated linear units of transformer FFNs (`act(x·W_gate) · (x·W_up)`)
//! in model graphs by equality saturation, rewrites each into one `FusedGateUp` node,
//! generates WGSL for every kernel, validates it with naga and runs it through wgpu.
//!
//! The stages, and the modules that hold them:
//! - [`ir`] (the crate `glufuse-ir`): the graph (`petgraph` `StableDiGraph`), ops, types;
//!   [`builder`] to write one; [`verify`] to check one; [`load`] (and [`json`], [`onnx`],
//!   [`files`]) to read and write one; [`dump`] (or `Display`) to show it; [`interp`], the
//!   CPU reference interpreter and the oracle for everything else.
//! - [`passes`]: the pass manager, dead-node elimination and the fusion pass.
//! - [`codegen`]: WGSL per kernel, validated by naga; `runtime`: the wgpu executor.
//!
//! # Cargo features
//! - `gpu` (on by default): the wgpu runtime (`glufuse::runtime`) and the re-exported
//!   `glufuse::wgpu`. Without it (`default-features = false`) everything else builds, WGSL
//!   generation and naga validation included, and wgpu is not compiled.
//!
//! The crates whose types appear in the API are re-exported so that you need not match their
//! versions by hand: [`naga`] (codegen's `Target::caps`), `wgpu` (the runtime's `Gpu`), and
//! `petgraph` (as [`ir::petgraph`]).
//!
//! ```
//! use glufuse::{synth, passes::PassManager};
//! let mut g = synth::llama(&synth::SynthOptions { layers: 2, ..Default::default() }).unwrap();
//! let runs = PassManager::standard().run(&mut g).unwrap();
//! assert_eq!(passes::fusion_report(&runs).unwrap().fused, 2);
//! # use glufuse::passes;
//! ```

#![warn(missing_docs)]

pub use glufuse_codegen as codegen;
pub use glufuse_ir as ir;
pub use glufuse_ir::{builder, dump, interp, json, limits, shape, tensor, verify, Error, Graph, Result};
pub use glufuse_passes as passes;

/// The naga that codegen validates with (`codegen::Target::caps` is naga's).
pub use glufuse_codegen::naga;
/// The wgpu the runtime runs on ([`runtime::Gpu`] holds its device and queue).
#[cfg(feature = "gpu")]
pub use wgpu;

pub mod files;
pub mod onnx;
#[cfg(feature = "gpu")]
pub mod runtime;
pub mod synth;

/// Loads a graph from a file, verified: glufuse's JSON format or an ONNX model, told apart by
/// the file's content (the extension is only a hint). Errors name the file and, where it is
/// one node's fault, the node. [`files::load_graph`] under a shorter name.
///
/// ```no_run
/// let g = glufuse::load("model.onnx")?;
/// println!("{g}");
/// # Ok::<(), glufuse::Error>(())
/// ```
pub fn load(path: impl AsRef<std::path::Path>) -> Result<Graph> {
    files::load_graph(path.as_ref())
}

/// [`load`] with graph inputs fixed to values (by name): an ONNX `If` whose condition is one
/// of them loads as the branch its value picks, and that input is no longer the graph's
/// (optimum's merged decoders: `use_cache_branch`; [`onnx::load_with`]).
pub fn load_with(
    path: impl AsRef<std::path::Path>,
    fixed: &std::collections::HashMap<String, tensor::Tensor>,
) -> Result<Graph> {
    files::load_graph_with(path.as_ref(), fixed)
}

/// The README's examples, compiled and run as doctests so that they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
