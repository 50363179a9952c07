//! Dead-node elimination: removes every node no graph output depends on. Graph inputs are
//! kept even when unused, since callers feed them by name.

use super::{Pass, PassReport};
use glufuse_ir::petgraph::Direction;
use glufuse_ir::Result;
use glufuse_ir::{Graph, Op};

/// What was removed.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DceReport {
    /// Names of the removed nodes, in index order.
    pub removed: Vec<String>,
}

/// Removes nodes that no output depends on.
pub struct DeadNodeElimination;

impl Pass for DeadNodeElimination {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        Ok(PassReport::Dce(DceReport { removed: eliminate(g) }))
    }
}

/// Removes dead nodes and returns their names.
pub fn eliminate(g: &mut Graph) -> Vec<String> {
    let mut live = std::collections::HashSet::new();
    let mut stack: Vec<_> = g.outputs.iter().map(|v| v.node).collect();
    while let Some(n) = stack.pop() {
        if live.insert(n) {
            stack.extend(g.g.neighbors_directed(n, Direction::Incoming));
        }
    }
    let mut dead: Vec<_> =
        g.g.node_indices().filter(|n| !live.contains(n) && !matches!(g.node(*n).op, Op::Input)).collect();
    dead.sort();
    dead.into_iter().filter_map(|n| g.remove_node(n)).map(|n| n.name).collect()
}
