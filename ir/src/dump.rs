//! Human- and tool-readable dumps of a graph: an indented text listing, Graphviz DOT and
//! Mermaid flowcharts. Output is deterministic (topological order, ties by index).

use crate::Result;
use crate::{Graph, Node, Op};
use std::borrow::Cow;
use std::fmt::Write;

/// A name as the dumps and error messages show it: control characters (a newline, a NUL)
/// escaped as Rust writes them (`\n`, `\0`, `\u{1b}`), so that a name cannot forge a line of a dump
/// or break its syntax. Other names are shown as they are.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

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
        let ins: Vec<String> = g.inputs(n).iter().map(|&v| format!("%{}", printable(&g.value_name(v)))).collect();
        let _ = write!(s, "%{}: {} = {}", printable(&node.name), types(node), printable(&node.op.label()));
        if !ins.is_empty() {
            let _ = write!(s, " {}", ins.join(", "));
        }
        if let Op::FusedGateUp(f) = &node.op {
            if !f.replaced.is_empty() {
                let _ = write!(s, "  # replaced {}", printable(&f.replaced.join(", ")));
            }
        }
        s.push('\n');
    }
    let outs: Vec<String> = (0..g.outputs.len())
        .map(|i| {
            let v = format!("%{}", printable(&g.value_name(g.outputs[i])));
            if g.output_renamed(i) {
                format!("{}={v}", printable(&g.output_name(i)))
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

/// Text inside a DOT string: control characters escaped ([`printable`]), then backslashes and
/// quotes.
fn esc(s: &str) -> String {
    printable(s).replace('\\', "\\\\").replace('"', "\\\"")
}

/// Text inside a Mermaid string: control characters escaped ([`printable`]); quotes and angle
/// brackets as Mermaid's entity codes (the label is rendered as HTML).
fn mermaid_esc(s: &str) -> String {
    printable(s).replace('"', "#quot;").replace('<', "#lt;").replace('>', "#gt;")
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
        let label = format!("{}<br/>{}<br/>{}", mermaid_esc(&node.name), mermaid_esc(&node.op.label()), types(node));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{shape_of, DType, TensorType};

    #[test]
    fn names_cannot_forge_lines_or_break_the_syntax_of_a_dump() {
        let mut g = Graph::new();
        let ty = TensorType::new(DType::F32, shape_of(&[1]));
        let x = g.add_node("x\n%evil: f32[1] = Input\0", Op::Input, &[], vec![ty.clone()]).unwrap();
        let y =
            g.add_node("y\"]; n9[\"<b>z", Op::Unary(crate::UnaryOp::Neg), &[crate::Value::of(x)], vec![ty]).unwrap();
        g.add_output(crate::Value::of(y), Some("out\r\n".into()));
        let t = text(&g).unwrap();
        assert_eq!(t.lines().count(), 4, "{t}");
        assert!(t.starts_with("%x\\n%evil: f32[1] = Input\\0: f32[1] = Input\n"), "{t}");
        assert!(t.contains("outputs: out\\r\\n=%y"), "{t}");
        let d = dot(&g).unwrap();
        assert!(!d.contains('\0') && d.contains(r#"label="y\"]; n9[\"<b>z\nNeg"#), "{d}");
        let m = mermaid(&g).unwrap();
        assert_eq!(m.lines().count(), 4, "{m}");
        assert!(m.contains(r#"n1("y#quot;]; n9[#quot;#lt;b#gt;z<br/>Neg<br/>f32[1]")"#), "{m}");
        let e = crate::Error::graph("a\nb", "bad").to_string();
        assert_eq!(e, "node 'a\\nb': bad");
    }
}
