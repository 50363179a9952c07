//! glufuse-ir: the bottom layer of glufuse, on which the passes, the code generator and the
//! runtime all build, and which depends on none of them.
//!
//! - the graph IR: element types and shapes ([`types`]) with symbolic dim expressions
//!   ([`dim`]), the op list ([`op`]) with one file per op family ([`ops`]), and the
//!   [`Graph`] over petgraph ([`graph`]);
//! - building ([`builder`]), checking ([`verify`]), reading and writing ([`json`]) and
//!   showing ([`dump`]) a graph;
//! - the tensor and shape utilities every stage shares ([`tensor`], [`shape`]), and the
//!   resource budget every allocation is checked against first ([`limits`]);
//! - the CPU reference interpreter ([`interp`]), the oracle for everything else;
//! - the one [`Error`] type, with the CLI's exit codes.
//!
//! The core types are re-exported here, so `use glufuse_ir::*` (or `glufuse::ir::*`) brings
//! the IR into scope.

#![warn(missing_docs)]
// Parity and alignment tests read `n % 2 == 0` as the formats they decode are specified;
// clippy asks for `is_multiple_of` since the MSRV passed 1.87.
#![allow(clippy::manual_is_multiple_of)]

pub mod builder;
pub mod dim;
pub mod dump;
mod error;
pub mod graph;
pub mod interp;
pub mod json;
pub mod limits;
pub mod op;
pub mod ops;
pub mod shape;
pub mod tensor;
pub mod types;
pub mod verify;

pub use dim::DimExpr;
pub use error::{Error, Result};
pub use graph::{Edge, Graph, GraphSummary, Node, NodeIndex, Value};
pub use op::Op;
pub use ops::attention::Attention;
pub use ops::binary::BinaryOp;
pub use ops::elementwise::{ElementwiseProgram, Scalar, Step};
pub use ops::fused::{Activation, FusedGateUp, Layout};
pub use ops::quant::QuantWeight;
pub use ops::reduce::ReduceOp;
pub use ops::source::{ConstValues, WeightInit};
pub use ops::unary::UnaryOp;
/// The graph library the IR is built on, re-exported so that users name the same version.
pub use petgraph;
pub use tensor::{Data, Tensor};
pub use types::{shape_of, DType, Dim, Shape, TensorType};
