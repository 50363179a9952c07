//! [`verify`], the whole-graph check run after loading and after every pass: acyclic, one
//! producer per input slot, and every node's declared output types equal to what its op
//! infers from its inputs ([`crate::Op::infer`]: arity, dtypes, shapes). Every error names the node.

use crate::{Error, Result};
use crate::{Graph, TensorType};

/// Checks the whole graph. Every error names the node that is wrong.
pub fn verify(g: &Graph) -> Result<()> {
    let order = g.topo_order()?;
    for &n in &order {
        let node = g.node(n);
        let ins = g.inputs(n);
        for (slot, v) in ins.iter().enumerate() {
            let edges =
                g.g.edges_directed(n, petgraph::Direction::Incoming).filter(|e| e.weight().slot == slot).count();
            if edges != 1 {
                return Err(Error::graph(&node.name, format!("input slot {slot} has {edges} producers")));
            }
            if v.output >= g.node(v.node).outputs.len() {
                return Err(Error::graph(&node.name, format!("input {slot} reads a missing output")));
            }
        }
        let tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
        let inferred = node.op.infer(&tys, &node.outputs).map_err(|m| Error::graph(&node.name, m))?;
        if inferred != node.outputs {
            let show = |ts: &[TensorType]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
            return Err(Error::graph(
                &node.name,
                format!("declares output type {} but its inputs give {}", show(&node.outputs), show(&inferred)),
            ));
        }
    }
    if g.outputs.is_empty() && !g.is_empty() {
        return Err(Error::input("the graph has no outputs"));
    }
    for o in &g.outputs {
        if g.g.node_weight(o.node).is_none_or(|n| o.output >= n.outputs.len()) {
            return Err(Error::input("a graph output refers to a missing value"));
        }
    }
    Ok(())
}
