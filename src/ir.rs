//! The graph IR in one import: element types and shapes ([`crate::types`]), the op list
//! ([`crate::op`]) and each family's attribute types ([`crate::ops`]), and the [`Graph`]
//! ([`crate::graph`]).

pub use crate::graph::{Edge, Graph, GraphSummary, Node, NodeIndex, Value};
pub use crate::op::Op;
pub use crate::ops::binary::BinaryOp;
pub use crate::ops::fused::{Activation, FusedGateUp, Layout};
pub use crate::ops::source::WeightInit;
pub use crate::ops::unary::UnaryOp;
pub use crate::types::{shape_of, DType, Dim, Shape, TensorType};
