//! glufuse: finds the gated linear units of transformer FFNs (`act(x·W_gate) · (x·W_up)`)
//! in model graphs by equality saturation, rewrites each into one `FusedGateUp` node,
//! generates WGSL for every kernel, validates it with naga and runs it through wgpu.
//!
//! The stages, and the modules that hold them:
//! - [`ir`]: the graph (`petgraph` `StableDiGraph`), ops, types; [`builder`] to write one;
//!   [`verify`] to check one; [`json`] (and [`onnx`]) to load and save one; [`dump`] to show it.
//! - [`interp`]: the CPU reference interpreter, the oracle for everything else.
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

pub mod bench;
pub mod builder;
pub mod cli;
#[path = "../codegen/mod.rs"]
pub mod codegen;
pub mod dump;
mod error;
pub mod files;
pub mod graph;
pub mod interp;
pub mod ir;
pub mod json;
pub mod onnx;
pub mod op;
pub mod ops;
pub mod runtime;
pub mod shape;
pub mod synth;
pub mod tensor;
pub mod types;
pub mod verify;

#[path = "../passes/mod.rs"]
pub mod passes;

pub use error::{Error, Result};
pub use ir::Graph;
