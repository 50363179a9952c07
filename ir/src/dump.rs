//! Human- and tool-readable dumps of a graph: an indented text listing, Graphviz DOT and
//! Mermaid flowcharts. Output is deterministic (topological order, ties by index).

use crate::Result;
use crate::{Graph, Node, Op};
use std::fmt::Write;

/// Output formats of `show` and the before/after dumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One line per node.
    Text,
    /// The `glufuse.graph/1` JSON format.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// Renders a graph in the given format.
pub fn render(g: &Graph, f: Format) -> Result<String> {
    match f {
        Format::Text => text(g),
        Format::Json => crate::json::to_string(g),
        Format::Dot => dot(g),
        Format::Mermaid => mermaid(g),
    }
}

fn types(node: &Node) -> String {
    node.outputs.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
}

/// One line per node: `%name: type = Op(attrs) %in1, %in2`.
pub fn text(g: &Graph) -> Result<String> {
    let mut s = String::new();
    for n in g.topo_order()? {
        let node = g.node(n);
        let ins: Vec<String> = g.inputs(n).iter().map(|&v| format!("%{}", g.value_name(v))).collect();
        let _ = write!(s, "%{}: {} = {}", node.name, types(node), node.op.label());
        if !ins.is_empty() {
            let _ = write!(s, " {}", ins.join(", "));
        }
        if let Op::FusedGateUp(f) = &node.op {
            if !f.replaced.is_empty() {
                let _ = write!(s, "  # replaced {}", f.replaced.join(", "));
            }
        }
        s.push('\n');
    }
    let outs: Vec<String> = (0..g.outputs.len())
        .map(|i| {
            let v = format!("%{}", g.value_name(g.outputs[i]));
            if g.output_renamed(i) {
                format!("{}={v}", g.output_name(i))
            } else {
                v
            }
        })
        .collect();
    let _ = writeln!(s, "outputs: {}", outs.join(", "));
    let _ = writeln!(s, "# {}", g.summary());
    Ok(s)
}

/// The text dump ([`text`]): `println!("{graph}")` lists the graph one node a line. A graph
/// with a cycle (which the verifier refuses) shows as a line saying so.
impl std::fmt::Display for Graph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match text(self) {
            Ok(t) => f.write_str(&t),
            Err(e) => writeln!(f, "# the graph cannot be listed: {e}"),
        }
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Graphviz DOT; fused nodes are filled, sources are drawn as boxes.
pub fn dot(g: &Graph) -> Result<String> {
    let order = g.topo_order()?;
    let id: std::collections::HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut s = String::from("digraph glufuse {\n  rankdir=TB;\n  node [shape=ellipse, fontname=\"monospace\"];\n");
    for &n in &order {
        let node = g.node(n);
        let style = if matches!(node.op, Op::FusedGateUp(_)) {
            ", style=filled, fillcolor=\"#ffd27f\""
        } else if node.op.is_source() {
            ", shape=box"
        } else if matches!(node.op, Op::Opaque { .. }) {
            ", style=dashed"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "  n{} [label=\"{}\\n{}\\n{}\"{}];",
            id[&n],
            esc(&node.name),
            esc(&node.op.label()),
            types(node),
            style
        );
    }
    for &n in &order {
        for (slot, v) in g.inputs(n).iter().enumerate() {
            let label = if g.node(v.node).outputs.len() > 1 {
                format!(" [label=\"{}:{slot}\"]", v.output)
            } else {
                String::new()
            };
            let _ = writeln!(s, "  n{} -> n{}{};", id[&v.node], id[&n], label);
        }
    }
    s.push_str("}\n");
    Ok(s)
}

/// A Mermaid flowchart (`flowchart TD`).
pub fn mermaid(g: &Graph) -> Result<String> {
    let order = g.topo_order()?;
    let id: std::collections::HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut s = String::from("flowchart TD\n");
    for &n in &order {
        let node = g.node(n);
        let label = format!("{}<br/>{}<br/>{}", node.name, node.op.label(), types(node)).replace('"', "#quot;");
        let (l, r) = if node.op.is_source() {
            ("[", "]")
        } else if matches!(node.op, Op::FusedGateUp(_)) {
            ("[[", "]]")
        } else {
            ("(", ")")
        };
        let _ = writeln!(s, "  n{}{l}\"{label}\"{r}", id[&n]);
    }
    for &n in &order {
        for v in g.inputs(n) {
            let _ = writeln!(s, "  n{} --> n{}", id[&v.node], id[&n]);
        }
    }
    Ok(s)
}
