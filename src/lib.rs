//! glufuse: finds the gated linear units of transformer FFNs (`act(x·W_gate) · (x·W_up)`)
//! in model graphs by equality saturation, rewrites each into one `FusedGateUp` node,
//! generates WGSL for every kernel, validates it with naga and runs it through wgpu.
//!
//! The stages, and the modules that hold them:
//! - [`ir`] (the crate `glufuse-ir`): the graph (`petgraph` `StableDiGraph`), ops, types;
//!   [`builder`] to write one; [`verify`] to check one; [`json`] (and [`onnx`]) to load and
//!   save one; [`dump`] to show it; [`interp`], the CPU reference interpreter and the oracle
//!   for everything else.
//! - [`passes`]: the pass manager, dead-node elimination and the fusion pass.
//! - [`codegen`]: WGSL per kernel, validated by naga; [`runtime`]: the wgpu executor.
//!
//! ```
//! use glufuse::{synth, passes::PassManager};
//! let mut g = synth::llama(&synth::SynthOptions { layers: 2, ..Default::default() }).unwrap();
//! let runs = PassManager::standard().run(&mut g).unwrap();
//! assert_eq!(passes::fusion_report(&runs).unwrap().fused, 2);
//! # use glufuse::passes;
//! ```

pub use glufuse_codegen as codegen;
pub use glufuse_ir as ir;
pub use glufuse_ir::{builder, dump, interp, json, limits, shape, tensor, verify, Error, Graph, Result};
pub use glufuse_passes as passes;

pub mod files;
pub mod onnx;
pub mod runtime;
pub mod synth;
