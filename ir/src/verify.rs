//! [`verify`], the whole-graph check run after loading and after every pass: acyclic, one
//! producer per input slot, every node's declared output types equal to what its op infers
//! from its inputs ([`crate::Op::infer`]: arity, dtypes, shapes, the per-tensor budget), and
//! the weights and constants together within the per-graph budget ([`crate::limits`]). Every
//! error names the node. Linear in the size of the graph.

use crate::{Error, Result};
use crate::{Graph, TensorType};

/// Checks the whole graph. Every error names the node that is wrong.
pub fn verify(g: &Graph) -> Result<()> {
    let order = g.topo_order()?;
    for &n in &order {
        let node = g.node(n);
        let ins = g.inputs(n);
        // Producers per input slot, counted in one pass over the incoming edges (a node may
        // read 100k values).
        let mut producers = vec![0usize; ins.len()];
        for e in g.g.edges_directed(n, petgraph::Direction::Incoming) {
            match producers.get_mut(e.weight().slot) {
                Some(c) => *c += 1,
                None => {
                    return Err(Error::graph(
                        &node.name,
                        format!("input slot {} is past its {} inputs", e.weight().slot, ins.len()),
                    ))
                }
            }
        }
        for (slot, v) in ins.iter().enumerate() {
            if producers[slot] != 1 {
                return Err(Error::graph(&node.name, format!("input slot {slot} has {} producers", producers[slot])));
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
    graph_bytes(g)?;
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

/// The bytes of all weights and constants of the graph (each in its dtype), checked against
/// the per-graph budget ([`crate::limits`]).
pub fn graph_bytes(g: &Graph) -> Result<u64> {
    let mut total: u64 = 0;
    for n in g.g.node_indices() {
        let node = g.node(n);
        if matches!(node.op, crate::Op::Weight(_) | crate::Op::Constant(_) | crate::Op::SymConstant(_)) {
            let bytes = node.outputs[0].bytes().ok_or_else(|| Error::graph(&node.name, "its size overflows"))?;
            total = total.saturating_add(bytes);
        }
    }
    crate::limits::current().check_graph_bytes(total).map_err(Error::input)?;
    Ok(total)
}
