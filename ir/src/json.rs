//! The `glufuse.graph/1` JSON format: reading (strict: unknown versions, ops and fields are
//! errors naming the node) and writing (nodes in topological order, round-trips exactly).
//!
//! ```json
//! {"format": "glufuse.graph/1",
//!  "nodes": [
//!    {"name": "x", "op": "Input", "type": {"dtype": "f32", "shape": ["batch", 64]}},
//!    {"name": "w", "op": "Weight", "type": {"dtype": "f32", "shape": [64, 176]},
//!     "init": {"random": {"seed": 1, "scale": 0.125}}},
//!    {"name": "h", "op": "MatMul", "inputs": ["x", "w"]}],
//!  "outputs": ["h"]}
//! ```
//! `type` (or `outputs` for multi-output nodes) is required on inputs, weights, constants and
//! opaque ops, optional elsewhere (inferred, and checked when given). Inputs refer to nodes by
//! name, `name:k` for output k of a multi-output node. An optional top-level `output_names`
//! gives the graph's outputs names of their own (an ONNX model's `logits`), in order.
//!
//! A model's weights need not be written out as numbers (a 0.5B-parameter model's would take
//! gigabytes of text): a top-level `"data_file": {"name": "fused.json.data", "bytes": N}`
//! names a file beside the JSON file holding them, and a weight's `"init": {"data_at": O}`
//! says that its values start at byte `O` of it, as many as its shape holds, little-endian in
//! its dtype (f32: 4 bytes, f16: 2). [`write_data`] and [`write_with_data_file`] write the two;
//! [`from_str_with`] reads them back, the data file through a callback (the caller finds and
//! reads the file: `glufuse::files` takes it from the JSON file's folder).

use crate::{Error, Result};
use crate::{Graph, Op, TensorType, WeightInit};
use serde_json::{json, Map, Value as J};
use std::collections::HashMap;

/// The format tag this version reads and writes.
pub const FORMAT: &str = "glufuse.graph/1";

/// Writes a graph as a JSON value, nodes in topological order.
pub fn to_json(g: &Graph) -> Result<J> {
    let mut nodes = vec![];
    for n in g.topo_order()? {
        nodes.push(node_json(g, n, Values::Json));
    }
    Ok(top_json(g, nodes))
}

/// The string a node's JSON holds in place of its weight's values where [`write`] streams
/// them ([`node_json`] with `stream`): no value a graph can hold (a weight's `data` is a list
/// of numbers).
const STREAMED: &str = "\u{0}glufuse: the weight's values, streamed\u{0}";

/// How [`node_json`] writes a weight's values.
#[derive(Clone, Copy)]
enum Values {
    /// As the op holds them ([`to_json`]).
    Json,
    /// As [`STREAMED`], for [`write`] to stream.
    Streamed,
    /// As their place in the data file, `{"data_at": offset}`.
    At(u64),
}

/// Node `n` as JSON, a weight's inline values as `values` says.
fn node_json(g: &Graph, n: crate::NodeIndex, values: Values) -> J {
    let node = g.node(n);
    let mut m = Map::new();
    m.insert("name".into(), J::from(node.name.clone()));
    m.insert("op".into(), J::from(node.op.name()));
    match (&node.op, values) {
        (Op::Weight(WeightInit::Data(_)), Values::Streamed) => {
            m.insert("init".into(), json!({"data": STREAMED}));
        }
        (Op::Weight(WeightInit::Data(_)), Values::At(at)) => {
            m.insert("init".into(), json!({ "data_at": at }));
        }
        (op, _) => op.write_attrs(&mut m),
    }
    let ins = g.inputs(n);
    if !ins.is_empty() {
        m.insert("inputs".into(), J::from(ins.iter().map(|&v| g.value_name(v)).collect::<Vec<_>>()));
    }
    if node.outputs.len() == 1 {
        m.insert("type".into(), serde_json::to_value(&node.outputs[0]).expect("serializable"));
    } else {
        m.insert("outputs".into(), serde_json::to_value(&node.outputs).expect("serializable"));
    }
    J::Object(m)
}

/// The top-level object around `nodes`.
fn top_json(g: &Graph, nodes: Vec<J>) -> J {
    let outputs: Vec<String> = g.outputs.iter().map(|&v| g.value_name(v)).collect();
    let mut top = json!({"format": FORMAT, "nodes": nodes, "outputs": outputs});
    if (0..g.outputs.len()).any(|i| g.output_renamed(i)) {
        let names: Vec<String> = (0..g.outputs.len()).map(|i| g.output_name(i)).collect();
        top["output_names"] = json!(names);
    }
    top
}

/// Writes a graph as JSON text (ending in a newline): indented like `serde_json`'s pretty
/// printer, except that an array of numbers, strings, booleans or nulls (a shape, a list of
/// inputs, a weight's or constant's data) is written on one line, so that a model's weights
/// take one line each instead of one line per value. Reads back exactly ([`from_str`]).
pub fn to_string(g: &Graph) -> Result<String> {
    let mut out = vec![];
    write(g, &mut out)?;
    String::from_utf8(out).map_err(|e| Error::Internal(e.to_string()))
}

/// Writes [`to_string`]'s text to `w`, one node at a time and each weight's values straight
/// from the graph: writing a model takes about the memory of one node's JSON beside the graph
/// (a 0.5B-parameter model's took 9.8 GB more as one JSON value). An error of `w` is an
/// [`Error::Write`] with an empty path, for the caller to name its destination.
pub fn write(g: &Graph, w: &mut dyn std::io::Write) -> Result<()> {
    write_nodes(g, w, None)
}

/// [`write()`], every inline weight's values left to the data file `name` that [`write_data`]
/// writes for `g` (a weight's `init` is `{"data_at": offset}`; the top level names the file
/// and its length). The caller writes the two files side by side.
pub fn write_with_data_file(g: &Graph, w: &mut dyn std::io::Write, name: &str) -> Result<()> {
    write_nodes(g, w, Some(name))
}

/// The inline weights of `g` in the order [`write_data`] writes them, each with its offset in
/// the data file, and the file's length.
fn data_layout(g: &Graph) -> Result<(Vec<(crate::NodeIndex, u64)>, u64)> {
    let mut at = 0u64;
    let mut out = vec![];
    for n in g.topo_order()? {
        if let Op::Weight(WeightInit::Data(d)) = &g.node(n).op {
            out.push((n, at));
            at += d.len() as u64 * data_elem_bytes(g.node(n).outputs[0].dtype) as u64;
        }
    }
    Ok((out, at))
}

/// Bytes a value of a weight of `dtype` takes in a data file: 2 for f16, else 4 (f32; a
/// weight of another dtype fails verification).
fn data_elem_bytes(dtype: crate::DType) -> usize {
    if dtype == crate::DType::F16 {
        2
    } else {
        4
    }
}

/// The bytes [`write_data`] writes for `g`: every inline weight's values in its dtype.
pub fn data_bytes(g: &Graph) -> Result<u64> {
    Ok(data_layout(g)?.1)
}

/// Writes the data file of [`write_with_data_file`]: every inline weight's values, in the
/// order of the graph's nodes, little-endian, f16 weights as halves (their values rounded to
/// f16, as every use of an f16 weight rounds them), f32 ones as they are; returns the bytes
/// written. An error of `w` is an [`Error::Write`] with an empty path, for the caller to name
/// its destination.
pub fn write_data(g: &Graph, w: &mut dyn std::io::Write) -> Result<u64> {
    use half::slice::HalfFloatSliceExt;
    let (layout, total) = data_layout(g)?;
    let mut out = Sink { w, err: None };
    let mut bytes = vec![];
    for (n, _) in layout {
        let Op::Weight(WeightInit::Data(d)) = &g.node(n).op else { unreachable!("data_layout lists inline weights") };
        for chunk in d.chunks(1 << 16) {
            bytes.clear();
            if g.node(n).outputs[0].dtype == crate::DType::F16 {
                let mut h = vec![half::f16::ZERO; chunk.len()];
                h.convert_from_f32_slice(chunk);
                bytes.extend(h.iter().flat_map(|x| x.to_le_bytes()));
            } else {
                bytes.extend(chunk.iter().flat_map(|x| x.to_le_bytes()));
            }
            out.push_bytes(&bytes);
        }
    }
    out.finish()?;
    Ok(total)
}

/// [`write()`] or [`write_with_data_file`].
fn write_nodes(g: &Graph, w: &mut dyn std::io::Write, data_file: Option<&str>) -> Result<()> {
    let order = g.topo_order()?;
    // The top level as `to_json` makes it, its nodes written in the place of an empty list.
    let J::Object(mut top) = top_json(g, vec![]) else { unreachable!("top_json makes an object") };
    let mut at: HashMap<crate::NodeIndex, u64> = HashMap::new();
    if let Some(name) = data_file {
        let (layout, bytes) = data_layout(g)?;
        at.extend(layout);
        top.insert("data_file".into(), json!({ "name": name, "bytes": bytes }));
    }
    let mut out = Sink { w, err: None };
    out.push("{\n");
    for (i, (k, x)) in top.iter().enumerate() {
        out.push("  ");
        out.push(&text(&J::String(k.clone()))?);
        out.push(": ");
        if k == "nodes" && !order.is_empty() {
            out.push("[\n");
            for (j, &n) in order.iter().enumerate() {
                out.push("    ");
                let data = match &g.node(n).op {
                    Op::Weight(WeightInit::Data(d)) => Some(d.as_slice()),
                    _ => None,
                };
                let values = at.get(&n).map_or(Values::Streamed, |&o| Values::At(o));
                write_compact(&node_json(g, n, values), 2, &mut out, data)?;
                out.push(if j + 1 < order.len() { ",\n" } else { "\n" });
            }
            out.push("  ]");
        } else {
            write_compact(x, 1, &mut out, None)?;
        }
        out.push(if i + 1 < top.len() { ",\n" } else { "\n" });
    }
    out.push("}\n");
    out.finish()
}

/// Where [`write_compact`] writes: the first error of the writer is kept and reported at the
/// end ([`Sink::finish`]), the writes after it skipped.
struct Sink<'a> {
    w: &'a mut dyn std::io::Write,
    err: Option<std::io::Error>,
}

impl Sink<'_> {
    fn push(&mut self, s: &str) {
        self.push_bytes(s.as_bytes());
    }

    fn push_bytes(&mut self, b: &[u8]) {
        if self.err.is_none() {
            if let Err(e) = self.w.write_all(b) {
                self.err = Some(e);
            }
        }
    }

    /// The writer's first error, as an [`Error::Write`] without a path (the caller's to give).
    fn finish(self) -> Result<()> {
        match self.err {
            Some(e) => Err(Error::Write { path: Default::default(), msg: e.to_string() }),
            None => Ok(()),
        }
    }
}

/// One JSON value as text.
fn text(v: &J) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))
}

/// Writes `v` at indentation `depth` (two spaces a level) as [`to_string`] lays it out; the
/// string [`STREAMED`] stands for the values `data` (as a weight's are written: each widened
/// to f64).
fn write_compact(v: &J, depth: usize, out: &mut Sink, data: Option<&[f32]>) -> Result<()> {
    let scalar = |v: &J| !matches!(v, J::Array(_) | J::Object(_));
    let pad = |d: usize| "  ".repeat(d);
    match v {
        J::String(s) if s == STREAMED => {
            let d = data.ok_or_else(|| Error::Internal("a weight's values to stream are missing".into()))?;
            out.push("[");
            // Each value as `to_json` writes it, into one buffer used again.
            let mut buf = vec![];
            for (i, &x) in d.iter().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                buf.clear();
                serde_json::to_writer(&mut buf, &crate::ops::source::float_to_json(x as f64))
                    .map_err(|e| Error::Internal(e.to_string()))?;
                out.push_bytes(&buf);
            }
            out.push("]");
        }
        J::Array(a) if a.is_empty() => out.push("[]"),
        J::Object(m) if m.is_empty() => out.push("{}"),
        J::Array(a) if a.iter().all(scalar) => {
            out.push("[");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(", ");
                }
                out.push(&text(x)?);
            }
            out.push("]");
        }
        J::Array(a) => {
            out.push("[\n");
            for (i, x) in a.iter().enumerate() {
                out.push(&pad(depth + 1));
                write_compact(x, depth + 1, out, data)?;
                out.push(if i + 1 < a.len() { ",\n" } else { "\n" });
            }
            out.push(&pad(depth));
            out.push("]");
        }
        J::Object(m) => {
            out.push("{\n");
            for (i, (k, x)) in m.iter().enumerate() {
                out.push(&pad(depth + 1));
                out.push(&text(&J::String(k.clone()))?);
                out.push(": ");
                write_compact(x, depth + 1, out, data)?;
                out.push(if i + 1 < m.len() { ",\n" } else { "\n" });
            }
            out.push(&pad(depth));
            out.push("}");
        }
        _ => out.push(&text(v)?),
    }
    Ok(())
}

/// Reads a graph from JSON text and verifies it. A graph whose weights are in a data file
/// ([`from_str_with`]) is refused: the text alone does not say where to find it.
pub fn from_str(text: &str) -> Result<Graph> {
    from_str_with(text, &mut |name| {
        Err(Error::input(format!(
            "the graph keeps its weights' values in the data file {name:?}, which is read from the folder of the \
             JSON file: load the graph from its file"
        )))
    })
}

/// [`from_str`] of a graph that may keep its weights' values in a data file (the module's
/// documentation): `read_data(name)` returns the file's bytes, called once where the text
/// names one. The file must be as long as the text says; each weight's values must lie
/// within it. Errors name the weight or the file.
pub fn from_str_with(text: &str, read_data: &mut dyn FnMut(&str) -> Result<Vec<u8>>) -> Result<Graph> {
    let root: J = serde_json::from_str(text).map_err(|e| Error::input(format!("malformed JSON: {e}")))?;
    let J::Object(mut top) = root else {
        return Err(Error::input("the top level must be a JSON object"));
    };
    match top.remove("format") {
        Some(J::String(f)) if f == FORMAT => {}
        Some(J::String(f)) => {
            return Err(Error::input(format!("unsupported format {f:?}; this glufuse reads {FORMAT:?}")))
        }
        _ => return Err(Error::input(format!("missing \"format\": \"{FORMAT}\""))),
    }
    let Some(J::Array(nodes)) = top.remove("nodes") else {
        return Err(Error::input("missing \"nodes\" array"));
    };
    let outputs = match top.remove("outputs") {
        Some(J::Array(o)) => o,
        None => vec![],
        Some(_) => return Err(Error::input("\"outputs\" must be an array of value names")),
    };
    let output_names: Option<Vec<String>> = match top.remove("output_names") {
        None => None,
        Some(v) => {
            Some(serde_json::from_value(v).map_err(|_| Error::input("\"output_names\" must be an array of names"))?)
        }
    };
    if output_names.as_ref().is_some_and(|n| n.len() != outputs.len()) {
        return Err(Error::input("\"output_names\" must name every output, in order"));
    }
    let data: Option<(String, Vec<u8>)> = match top.remove("data_file") {
        None => None,
        Some(v) => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct DataFile {
                name: String,
                bytes: u64,
            }
            let f: DataFile = serde_json::from_value(v).map_err(|e| {
                Error::input(format!("\"data_file\" must be {{\"name\": FILE, \"bytes\": LENGTH}}: {e}"))
            })?;
            let bytes = read_data(&f.name)?;
            if bytes.len() as u64 != f.bytes {
                return Err(Error::input(format!(
                    "the data file {:?} holds {} bytes where the graph says {}: it is not this graph's, or it was cut short",
                    f.name,
                    bytes.len(),
                    f.bytes
                )));
            }
            Some((f.name, bytes))
        }
    };
    if let Some(k) = top.keys().next() {
        return Err(Error::input(format!("unknown top-level field {k:?}")));
    }
    // Parse every record first so that references can be checked for dangling names and
    // cycles before anything is built.
    struct Rec {
        name: String,
        op: Op,
        inputs: Vec<String>,
        declared: Vec<TensorType>,
    }
    let mut recs: Vec<Rec> = Vec::with_capacity(nodes.len());
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, node) in nodes.into_iter().enumerate() {
        let J::Object(mut m) = node else {
            return Err(Error::input(format!("node #{i} is not a JSON object")));
        };
        let name = match m.remove("name") {
            Some(J::String(s)) if !s.is_empty() => s,
            _ => return Err(Error::input(format!("node #{i} has no \"name\" string"))),
        };
        let err = |msg: String| Error::graph(&name, msg);
        let inputs: Vec<String> = match m.remove("inputs") {
            None => vec![],
            Some(v) => {
                serde_json::from_value(v).map_err(|e| err(format!("\"inputs\" must be a list of names: {e}")))?
            }
        };
        let ty: Option<TensorType> = match m.remove("type") {
            None => None,
            Some(v) => Some(serde_json::from_value(v).map_err(|e| err(format!("bad \"type\": {e}")))?),
        };
        let outs: Option<Vec<TensorType>> = match m.remove("outputs") {
            None => None,
            Some(v) => Some(serde_json::from_value(v).map_err(|e| err(format!("bad \"outputs\": {e}")))?),
        };
        let declared = match (ty, outs) {
            (Some(_), Some(_)) => return Err(err("give \"type\" or \"outputs\", not both".into())),
            (Some(t), None) => vec![t],
            (None, Some(o)) => o,
            (None, None) => vec![],
        };
        // What is left are the op and its attributes; the op name says which attributes.
        let op_name = match m.remove("op") {
            Some(J::String(s)) => s,
            None => return Err(err("missing \"op\"".into())),
            Some(v) => return Err(err(format!("\"op\" must be a string naming an op, not {v}"))),
        };
        // A weight's values in the data file: read as its declared type says.
        let data_at = match m.get("init") {
            Some(J::Object(init)) if op_name == crate::ops::source::WEIGHT && init.contains_key("data_at") => {
                let Some(J::Object(mut init)) = m.remove("init") else { unreachable!("just seen") };
                let at = init.remove("data_at").and_then(|v| v.as_u64());
                match (at, init.keys().next()) {
                    (Some(at), None) => Some(at),
                    (None, _) => return Err(err("\"data_at\" must be a byte offset into the data file".into())),
                    (_, Some(k)) => return Err(err(format!("unknown field {k:?} beside \"data_at\""))),
                }
            }
            _ => None,
        };
        let mut op = Op::from_json(&op_name, &mut m, &declared)
            .ok_or_else(|| err(format!("unknown op {op_name:?}")))?
            .map_err(err)?;
        if let Some(at) = data_at {
            let (file, bytes) = data.as_ref().ok_or_else(|| {
                err("its values are \"data_at\" a data file, but the graph names no \"data_file\"".into())
            })?;
            op = Op::Weight(WeightInit::Data(
                values_at(bytes, at, &declared).map_err(|m| err(format!("data file {file:?}: {m}")))?,
            ));
        }
        if index.insert(name.clone(), i).is_some() {
            return Err(err("a node with this name already exists".into()));
        }
        recs.push(Rec { name, op, inputs, declared });
    }
    let producer = |r: &str| -> Option<usize> {
        index.get(r).copied().or_else(|| r.rsplit_once(':').and_then(|(n, _)| index.get(n).copied()))
    };
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(recs.len());
    for rec in &recs {
        let mut d = vec![];
        for r in &rec.inputs {
            d.push(
                producer(r)
                    .ok_or_else(|| Error::graph(&rec.name, format!("input {r:?} names no node in the graph")))?,
            );
        }
        deps.push(d);
    }
    let order = topo_records(&deps).map_err(|cycle| {
        let names: Vec<&str> = cycle.iter().map(|&i| recs[i].name.as_str()).collect();
        Error::graph(&recs[cycle[0]].name, format!("the graph has a cycle: {}", names.join(" -> ")))
    })?;
    let mut g = Graph::new();
    let mut recs: Vec<Option<Rec>> = recs.into_iter().map(Some).collect();
    for i in order {
        let Rec { name, op, inputs, declared } = recs[i].take().expect("each record is built once");
        let err = |msg: String| Error::graph(&name, msg);
        let mut vals = vec![];
        for r in &inputs {
            vals.push(g.resolve(r).ok_or_else(|| err(format!("input {r:?} names no output of that node")))?);
        }
        let tys: Vec<&TensorType> = vals.iter().map(|&v| g.ty(v)).collect();
        let inferred = op.infer(&tys, &declared).map_err(err)?;
        if !declared.is_empty() && declared != inferred {
            let show = |ts: &[TensorType]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
            return Err(err(format!("declares type {} but its inputs give {}", show(&declared), show(&inferred))));
        }
        g.add_node(name, op, &vals, inferred)?;
    }
    for (i, o) in outputs.into_iter().enumerate() {
        let J::String(r) = o else {
            return Err(Error::input("\"outputs\" must hold value names"));
        };
        let v = g.resolve(&r).ok_or_else(|| Error::input(format!("graph output {r:?} names no node")))?;
        g.add_output(v, output_names.as_ref().map(|n| n[i].clone()));
    }
    crate::verify::verify(&g)?;
    Ok(g)
}

/// The values of a weight of type `declared` (one, of known dims) at byte `at` of a data file
/// holding `bytes`.
fn values_at(bytes: &[u8], at: u64, declared: &[TensorType]) -> std::result::Result<Vec<f32>, String> {
    let [t] = declared else { return Err("a weight read from the data file needs its \"type\"".into()) };
    let n = t.numel().ok_or_else(|| format!("a weight read from it needs known dims, not {t}"))?;
    if !t.dtype.is_float() {
        return Err(format!("weights must be f32 or f16, not {}", t.dtype));
    }
    let size = data_elem_bytes(t.dtype) as u64;
    let end =
        n.checked_mul(size).and_then(|b| b.checked_add(at)).filter(|&e| e <= bytes.len() as u64).ok_or_else(|| {
            format!("the weight's {n} values from byte {at} lie past its end ({} bytes)", bytes.len())
        })?;
    let raw = &bytes[at as usize..end as usize];
    let mut v = Vec::with_capacity(n as usize);
    if size == 2 {
        crate::tensor::halves_into(raw, false, &mut v);
    } else {
        v.extend(raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    }
    Ok(v)
}

/// Orders records so that producers come first (ties by file order). On a cycle, returns the
/// records on it, in order.
fn topo_records(deps: &[Vec<usize>]) -> std::result::Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut users: Vec<Vec<usize>> = vec![vec![]; n];
    let mut indeg = vec![0usize; n];
    for (i, d) in deps.iter().enumerate() {
        for &p in d {
            users[p].push(i);
            indeg[i] += 1;
        }
    }
    let mut ready: std::collections::BTreeSet<usize> = (0..n).filter(|&i| indeg[i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            indeg[u] -= 1;
            if indeg[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Walk producers among the stuck records until one repeats: that loop is a cycle.
    let mut at = (0..n).find(|&i| indeg[i] > 0).expect("some record is stuck");
    let mut path = vec![];
    loop {
        if let Some(pos) = path.iter().position(|&p| p == at) {
            let mut cycle: Vec<usize> = path[pos..].to_vec();
            cycle.reverse();
            cycle.push(cycle[0]);
            return Err(cycle);
        }
        path.push(at);
        at = *deps[at].iter().find(|&&p| indeg[p] > 0).expect("a stuck record has a stuck producer");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A graph with inline weights (values JSON writes widened to f64, the largest f32, a
    /// NaN) and a random one, a constant and a renamed output.
    fn weights_graph() -> Graph {
        let mut b = crate::builder::GraphBuilder::new();
        let x = b.input("x", crate::DType::F32, crate::shape_of(&[1, 2]));
        let w = b.weight_data("w", crate::DType::F32, &[2, 2], vec![0.1, 1e-7, 3.402_823_5e38, f32::NAN]);
        let r = b.weight("r", crate::DType::F32, &[2, 3], 0.5);
        let h = b.matmul("h", x, w);
        let y = b.matmul("y", h, r);
        let mut g = b.finish(&[y]).unwrap();
        g.name_output(0, "logits".into());
        g
    }

    /// The text of `to_json`'s value laid out as before streaming: the reference.
    fn unstreamed(g: &Graph) -> String {
        let mut v = vec![];
        let mut sink = Sink { w: &mut v, err: None };
        write_compact(&to_json(g).unwrap(), 0, &mut sink, None).unwrap();
        sink.push("\n");
        sink.finish().unwrap();
        String::from_utf8(v).unwrap()
    }

    /// [`weights_graph`] with an f16 weight (a subnormal, an infinity, a value that is no
    /// f16 until rounded) and an empty one beside its f32 ones.
    fn mixed_weights_graph() -> Graph {
        let mut b = crate::builder::GraphBuilder::new();
        let x = b.input("x", crate::DType::F32, crate::shape_of(&[1, 2]));
        let w = b.weight_data("w", crate::DType::F32, &[2, 2], vec![0.1, 1e-7, 3.402_823_5e38, f32::NAN]);
        let h = b.weight_data("h", crate::DType::F16, &[2, 3], vec![0.1, -6e-8, f32::INFINITY, 65504.0, -0.0, 2.5]);
        let e = b.weight_data("e", crate::DType::F32, &[0, 2], vec![]);
        let r = b.weight("r", crate::DType::F32, &[2, 2], 0.5);
        let y = b.matmul("y", x, w);
        let z = b.matmul("z", y, r);
        b.finish(&[z, h, e]).unwrap()
    }

    /// Writes `g` with a data file named `name`: the JSON text and the file's bytes.
    fn with_data_file(g: &Graph, name: &str) -> (String, Vec<u8>) {
        let (mut text, mut data) = (vec![], vec![]);
        write_with_data_file(g, &mut text, name).unwrap();
        let n = write_data(g, &mut data).unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(n, data_bytes(g).unwrap());
        (String::from_utf8(text).unwrap(), data)
    }

    #[test]
    fn weights_in_a_data_file_read_back_as_written_inline() {
        let g = mixed_weights_graph();
        let (text, data) = with_data_file(&g, "g.json.data");
        // Each value once, in its dtype: 4 + 0 f32 values, 6 halves (the random weight stays a seed).
        assert_eq!(data.len(), 4 * 4 + 6 * 2);
        assert!(text.contains(r#""data_at": 16"#) && !text.contains("0.1"), "{text}");
        let mut asked = vec![];
        let back = from_str_with(&text, &mut |name| {
            asked.push(name.to_string());
            Ok(data.clone())
        })
        .unwrap();
        assert_eq!(asked, ["g.json.data"]);
        // The same graph, but for the f16 weight's values, which the file holds as halves: as
        // every use of them rounds them (the interpreter, the GPU's upload).
        let mut rounded = g.clone();
        let hn = rounded.find("h").unwrap();
        let Op::Weight(WeightInit::Data(hv)) = &mut rounded.g[hn].op else { panic!("h holds values") };
        crate::tensor::round_f16(hv);
        assert_ne!(to_string(&rounded).unwrap(), to_string(&g).unwrap());
        assert_eq!(to_string(&back).unwrap(), to_string(&rounded).unwrap());
        // A graph without inline weights names no data file and writes none.
        let mut plain = crate::builder::GraphBuilder::new();
        let x = plain.input("x", crate::DType::F32, crate::shape_of(&[1, 2]));
        let r = plain.weight("r", crate::DType::F32, &[2, 2], 0.5);
        let y = plain.matmul("y", x, r);
        let plain = plain.finish(&[y]).unwrap();
        assert_eq!(data_bytes(&plain).unwrap(), 0);
    }

    #[test]
    fn a_data_file_that_does_not_fit_the_graph_is_refused_naming_it() {
        let g = mixed_weights_graph();
        let (text, data) = with_data_file(&g, "g.json.data");
        let read = |text: &str, bytes: Vec<u8>| {
            from_str_with(text, &mut |_| Ok(bytes.clone())).map(|_| ()).unwrap_err().to_string()
        };
        assert_eq!(
            read(&text, data[..20].to_vec()),
            "the data file \"g.json.data\" holds 20 bytes where the graph says 28: it is not this graph's, or it was cut short"
        );
        // A weight whose values would run past the end (the length in the text made to match).
        let late = text.replace(r#""data_at": 16"#, r#""data_at": 20"#);
        assert_eq!(
            read(&late, data.clone()),
            "node 'h': data file \"g.json.data\": the weight's 6 values from byte 20 lie past its end (28 bytes)"
        );
        let bad = text.replace(r#""data_at": 16"#, r#""data_at": -1"#);
        assert_eq!(read(&bad, data.clone()), "node 'h': \"data_at\" must be a byte offset into the data file");
        let extra = text.replace(r#""data_at": 16"#, r#""data_at": 16, "data": [1]"#);
        assert_eq!(read(&extra, data.clone()), "node 'h': unknown field \"data\" beside \"data_at\"");
        // Values at a data file the graph does not name.
        let i = text.find(",\n  \"data_file\"").unwrap();
        let unnamed = format!("{}\n}}\n", &text[..i]);
        assert_eq!(
            read(&unnamed, data.clone()),
            "node 'w': its values are \"data_at\" a data file, but the graph names no \"data_file\""
        );
        // The reader's own error (the file is missing) comes through; text alone cannot be read.
        let e = from_str_with(&text, &mut |_| Err(Error::input("no such file"))).unwrap_err();
        assert_eq!(e.to_string(), "no such file");
        assert!(from_str(&text).unwrap_err().to_string().contains("the data file \"g.json.data\""));
        let malformed = text.replace(r#""bytes": 28"#, r#""bytes": "28""#);
        assert!(read(&malformed, data).starts_with("\"data_file\" must be"));
    }

    #[test]
    fn streamed_weights_are_written_as_the_json_value_holds_them() {
        let g = weights_graph();
        let text = to_string(&g).unwrap();
        assert_eq!(text, unstreamed(&g));
        assert!(
            text.contains(r#""data": [0.10000000149011612, 1.0000000116860974e-7, 3.4028234663852886e+38, "nan"]"#),
            "{text}"
        );
        assert_eq!(to_string(&from_str(&text).unwrap()).unwrap(), text);
    }

    /// A writer that fails after `left` bytes.
    struct Full {
        left: usize,
    }

    impl std::io::Write for Full {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.left < b.len() {
                return Err(std::io::Error::other("no space left"));
            }
            self.left -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_writer_that_fails_is_a_write_error() {
        for left in [0, 10, 200] {
            let e = write(&weights_graph(), &mut Full { left }).unwrap_err();
            assert!(matches!(&e, Error::Write { msg, .. } if msg == "no space left"), "{left}: {e:?}");
        }
    }

    fn error_of(node: &str) -> String {
        let text = format!(
            r#"{{"format": "{FORMAT}", "nodes": [{{"name": "x", "op": "Input", "type": {{"dtype": "f32", "shape": [2, 4]}}}}, {node}]}}"#
        );
        from_str(&text).unwrap_err().to_string()
    }

    #[test]
    fn an_unknown_op_is_told_from_a_bad_attribute_of_a_known_one() {
        assert_eq!(
            error_of(r#"{"name": "y", "op": "Frobnicate", "inputs": ["x"]}"#),
            "node 'y': unknown op \"Frobnicate\""
        );
        // An unknown variant inside a known op's attributes is that op's bad attribute.
        let e =
            error_of(r#"{"name": "w", "op": "Weight", "type": {"dtype": "f32", "shape": [2]}, "init": {"rand": 1}}"#);
        assert!(e.starts_with("node 'w': bad attributes for Weight: unknown variant `rand`"), "{e}");
        let e = error_of(r#"{"name": "t", "op": "Transpose", "inputs": ["x"], "prem": [1, 0]}"#);
        assert_eq!(e, "node 't': bad attributes for Transpose: unknown field `prem`, expected `perm`");
        assert_eq!(error_of(r#"{"name": "y", "inputs": ["x"]}"#), "node 'y': missing \"op\"");
    }

    /// A weight's data is one line however long, arrays of objects and objects are indented,
    /// and the text reads back to the same graph and the same text; the one-value-a-line
    /// layout of earlier versions still loads.
    #[test]
    fn data_arrays_take_one_line_and_round_trip() {
        let mut b = crate::builder::GraphBuilder::new();
        let x = b.input("x", crate::DType::F32, crate::shape_of(&[2, 3]));
        let data: Vec<f32> = (0..12).map(|i| i as f32 * 0.1 - f32::MIN_POSITIVE).collect();
        let w = b.weight_data("w", crate::DType::F32, &[3, 4], data);
        let y = b.matmul("y", x, w);
        let g = b.finish(&[y]).unwrap();
        let text = to_string(&g).unwrap();
        let data_line = text.lines().find(|l| l.contains("\"data\"")).unwrap_or_else(|| panic!("{text}"));
        assert!(data_line.trim_start().starts_with("\"data\": [") && data_line.ends_with(']'), "{text}");
        assert_eq!(data_line.matches(',').count(), 11, "all 12 values on the data line: {text}");
        assert!(text.contains("\"shape\": [2, 3]"), "{text}");
        assert!(text.starts_with("{\n  \"format\": \"glufuse.graph/1\",\n  \"nodes\": [\n    {\n"), "{text}");
        assert!(text.len() < 900, "{} bytes: {text}", text.len());
        let back = from_str(&text).unwrap();
        assert_eq!(to_string(&back).unwrap(), text);
        let old = serde_json::to_string_pretty(&to_json(&g).unwrap()).unwrap();
        assert!(old.lines().count() > text.lines().count() + 12, "{old}");
        assert_eq!(to_string(&from_str(&old).unwrap()).unwrap(), text);
    }

    fn graph(nodes: &str, outputs: &str) -> String {
        format!(r#"{{"format": "{FORMAT}", "nodes": [{nodes}], "outputs": [{outputs}]}}"#)
    }

    #[test]
    fn non_finite_values_are_written_as_strings_and_literals_past_the_range_are_errors() {
        let text = graph(
            r#"{"name": "w", "op": "Weight", "type": {"dtype": "f32", "shape": [3]}, "init": {"data": [1.5, "-inf", "nan"]}},
               {"name": "c", "op": "Constant", "type": {"dtype": "f32", "shape": [2]}, "value": ["inf", -2]},
               {"name": "y", "op": "Mul", "inputs": ["w", "w"]}"#,
            r#""y", "c""#,
        );
        let g = from_str(&text).unwrap();
        let out = to_string(&g).unwrap();
        assert!(out.contains(r#""-inf""#) && out.contains(r#""nan""#) && out.contains(r#""inf""#), "{out}");
        assert_eq!(to_string(&from_str(&out).unwrap()).unwrap(), out, "round trip");
        let c = crate::interp::run(&g, &Default::default()).unwrap();
        assert_eq!(c[1].as_f32().unwrap(), &[f32::INFINITY, -2.0]);
        // A number past the dtype's range is an error naming the node, never infinity.
        let bad = |node: &str| from_str(&graph(node, r#""w""#)).unwrap_err().to_string();
        let e =
            bad(r#"{"name": "w", "op": "Weight", "type": {"dtype": "f32", "shape": [1]}, "init": {"data": [1e39]}}"#);
        assert_eq!(e, "node 'w': bad attributes for Weight: data value 1e39 is out of the range of f32");
        let e = bad(r#"{"name": "w", "op": "Constant", "type": {"dtype": "f16", "shape": [2]}, "value": [1, 70000]}"#);
        assert_eq!(e, "node 'w': value 7e4 is out of the range of f16");
        let e =
            bad(r#"{"name": "w", "op": "Constant", "type": {"dtype": "f32", "shape": [1]}, "value": ["infinity"]}"#);
        assert!(e.contains(r#"constant value "infinity" is not a number"#), "{e}");
    }

    #[test]
    fn a_node_reading_100k_values_loads_and_verifies() {
        let n = 100_000;
        let refs = vec![r#""x""#; n].join(",");
        let text = graph(
            &format!(
                r#"{{"name": "x", "op": "Input", "type": {{"dtype": "f32", "shape": [1]}}}},
                   {{"name": "c", "op": "Concat", "axis": 0, "inputs": [{refs}]}}"#
            ),
            r#""c""#,
        );
        let t = std::time::Instant::now();
        let g = from_str(&text).unwrap();
        crate::verify::verify(&g).unwrap();
        // Verification counts each node's input slots in one pass (it was quadratic).
        eprintln!("100k fan-in: loaded and verified twice in {:?}", t.elapsed());
        assert_eq!(g.inputs(g.find("c").unwrap()).len(), n);
        assert_eq!(g.ty(g.outputs[0]).shape, crate::shape_of(&[n as u64]));
    }

    #[test]
    fn a_name_that_reads_as_another_nodes_output_is_refused_naming_both() {
        let split = r#"{"name": "x", "op": "Input", "type": {"dtype": "f32", "shape": [4]}},
                       {"name": "s", "op": "Split", "axis": 0, "sizes": [2, 2], "inputs": ["x"]}"#;
        let e =
            from_str(&graph(&format!(r#"{split}, {{"name": "s:1", "op": "Relu", "inputs": ["s:0"]}}"#), r#""s:1""#))
                .unwrap_err()
                .to_string();
        assert_eq!(e, "node 's:1': this name is how output 1 of node 's' is written; rename one of them");
        // Names with colons that are no output's reference load as before.
        let ok = format!(
            r#"{split}, {{"name": "s:2", "op": "Relu", "inputs": ["s:0"]}}, {{"name": "onnx::Relu_1", "op": "Relu", "inputs": ["s:2"]}}"#
        );
        let g = from_str(&graph(&ok, r#""onnx::Relu_1", "s:1""#)).unwrap();
        assert_eq!(to_string(&from_str(&to_string(&g).unwrap()).unwrap()).unwrap(), to_string(&g).unwrap());
    }
}
