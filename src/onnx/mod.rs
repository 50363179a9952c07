//! The ONNX loader: `.onnx` files (opset 13 and up) decoded with `prost` into the IR.
//!
//! Ops PyTorch's exporters emit for FFNs map onto IR ops (`MatMul`, `Gemm`, elementwise ops,
//! `Transpose`, `Reshape`, `Split`, `Slice`, `Concat`, `Cast`, `Constant`). Shape arithmetic
//! whose inputs are known (`Shape` of a static tensor, `Gather`, `Unsqueeze`, `Concat`, `Div`,
//! ... over constants) is folded at load time, so `Reshape` targets and `Slice` bounds become
//! attributes. Every other op becomes an `Opaque` node with the output types the model
//! declares, so whole decoder graphs load, fuse and dump.
//!
//! Initializer data comes from `raw_data`, the typed fields, or external files (a relative
//! `location` under the model's folder only). Every size is checked against the bytes that
//! back it before anything is allocated for it.
//!
//! `proto.rs` is generated from the vendored `onnx.proto` by `prost-build` 0.14
//! (`prost_build::Config::new().out_dir(..).compile_protos(&["src/onnx/onnx.proto"], ..)`,
//! with `protoc` installed); it is committed so that building glufuse needs no `protoc`.

mod proto;

use crate::ir::*;
use crate::{Error, Graph, Result};
use prost::Message;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// Elements an initializer may hold (2^32): more is refused before anything is allocated.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;

/// A tensor whose values are known at load time.
#[derive(Clone, Debug)]
struct Known {
    dtype: DType,
    dims: Vec<usize>,
    vals: Vec<f64>,
}

impl Known {
    fn ints(&self) -> Vec<i64> {
        self.vals.iter().map(|&v| v as i64).collect()
    }
    fn scalar(vals: Vec<f64>, dtype: DType, dims: Vec<usize>) -> Self {
        Known { dtype, dims, vals }
    }
}

fn dtype_of(code: i32) -> std::result::Result<DType, String> {
    Ok(match code {
        1 => DType::F32,
        10 => DType::F16,
        // Integers and booleans are modelled as i64 (shape arithmetic, indices, masks).
        2..=7 | 9 | 12 | 13 => DType::I64,
        // Other floats pass through opaque ops only; f32 stands in for them.
        11 | 16 => DType::F32,
        c => return Err(format!("element type {c} is not supported")),
    })
}

fn elem_size(code: i32) -> u64 {
    match code {
        1 | 6 | 12 => 4,
        10 | 16 | 4 | 5 => 2,
        7 | 11 | 13 => 8,
        _ => 1,
    }
}

/// Loads an ONNX model. `path` names the file in errors and anchors external data.
pub fn load(path: &Path, bytes: &[u8]) -> Result<Graph> {
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| Error::input(format!("not a valid ONNX model (protobuf decoding failed: {e})")).in_file(path))?;
    Loader::new(path).model(model).map_err(|e| e.in_file(path))
}

struct Loader<'p> {
    dir: &'p Path,
    g: Graph,
    /// ONNX value name → IR value.
    vals: HashMap<String, Value>,
    /// ONNX value name → known contents.
    known: HashMap<String, Known>,
    /// Declared types of values (value_info, inputs, outputs).
    declared: HashMap<String, TensorType>,
}

impl<'p> Loader<'p> {
    fn new(path: &'p Path) -> Self {
        Loader {
            dir: path.parent().unwrap_or(Path::new(".")),
            g: Graph::new(),
            vals: HashMap::new(),
            known: HashMap::new(),
            declared: HashMap::new(),
        }
    }

    fn model(mut self, m: proto::ModelProto) -> Result<Graph> {
        let opset = m
            .opset_import
            .iter()
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .and_then(|o| o.version);
        match opset {
            Some(v) if v >= 13 => {}
            Some(v) => return Err(Error::input(format!("opset {v} is older than 13, the oldest glufuse reads"))),
            None => return Err(Error::input("the model imports no default-domain opset")),
        }
        let graph = m.graph.ok_or_else(|| Error::input("the model has no graph"))?;
        for vi in graph.value_info.iter().chain(&graph.input).chain(&graph.output) {
            if let (Some(name), Some(t)) = (&vi.name, value_type(vi)) {
                self.declared.insert(name.clone(), t.map_err(|m| Error::graph(name, m))?);
            }
        }
        for t in &graph.initializer {
            let name = t.name.clone().unwrap_or_default();
            let k = self.tensor(t).map_err(|m| Error::graph(&name, format!("initializer: {m}")))?;
            self.known.insert(name, k);
        }
        for vi in &graph.input {
            let name = vi.name.clone().unwrap_or_default();
            if self.known.contains_key(&name) {
                continue;
            }
            let ty = self
                .declared
                .get(&name)
                .cloned()
                .ok_or_else(|| Error::graph(&name, "graph input without a tensor type"))?;
            let n = self.g.add_node(name.clone(), Op::Input, &[], vec![ty])?;
            self.vals.insert(name, Value::of(n));
        }
        for (i, node) in graph.node.iter().enumerate() {
            self.node(i, node)?;
        }
        for o in &graph.output {
            let name = o.name.clone().unwrap_or_default();
            let v = self.value(&name).map_err(|m| Error::input(format!("graph output '{name}': {m}")))?;
            self.g.outputs.push(v);
        }
        crate::verify::verify(&self.g)?;
        Ok(self.g)
    }

    /// Decodes an initializer or a Constant's tensor, checking sizes before allocating.
    fn tensor(&self, t: &proto::TensorProto) -> std::result::Result<Known, String> {
        let code = t.data_type.unwrap_or(0);
        let dtype = dtype_of(code)?;
        let mut n: u64 = 1;
        for &d in &t.dims {
            if d < 0 {
                return Err(format!("dim {d} is negative"));
            }
            n = n
                .checked_mul(d as u64)
                .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
                .ok_or_else(|| format!("dims {:?} hold more than {MAX_TENSOR_ELEMENTS} elements", t.dims))?;
        }
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        let want_bytes = n * elem_size(code);
        let external;
        let raw: Option<&[u8]> = if t.data_location == Some(1) {
            external = self.external(t, want_bytes)?;
            Some(&external)
        } else {
            t.raw_data.as_deref()
        };
        let vals: Vec<f64> = if let Some(raw) = raw {
            if raw.len() as u64 != want_bytes {
                return Err(format!("holds {} bytes of data but dims {:?} need {want_bytes}", raw.len(), t.dims));
            }
            match code {
                1 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
                10 => raw
                    .chunks_exact(2)
                    .map(|c| half::f16::from_le_bytes(c.try_into().expect("2 bytes")).to_f64())
                    .collect(),
                16 => raw
                    .chunks_exact(2)
                    .map(|c| half::bf16::from_le_bytes(c.try_into().expect("2 bytes")).to_f64())
                    .collect(),
                11 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
                7 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect(),
                13 => raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect(),
                6 => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
                12 => raw.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
                4 => raw.chunks_exact(2).map(|c| u16::from_le_bytes(c.try_into().expect("2 bytes")) as f64).collect(),
                5 => raw.chunks_exact(2).map(|c| i16::from_le_bytes(c.try_into().expect("2 bytes")) as f64).collect(),
                3 => raw.iter().map(|&b| b as i8 as f64).collect(),
                _ => raw.iter().map(|&b| b as f64).collect(),
            }
        } else {
            let typed: Vec<f64> = match code {
                1 => t.float_data.iter().map(|&x| x as f64).collect(),
                11 => t.double_data.clone(),
                7 => t.int64_data.iter().map(|&x| x as f64).collect(),
                13 => t.uint64_data.iter().map(|&x| x as f64).collect(),
                10 | 16 => t
                    .int32_data
                    .iter()
                    .map(|&x| {
                        let bits = x as u16;
                        if code == 10 {
                            half::f16::from_bits(bits).to_f64()
                        } else {
                            half::bf16::from_bits(bits).to_f64()
                        }
                    })
                    .collect(),
                _ => t.int32_data.iter().map(|&x| x as f64).collect(),
            };
            if typed.len() as u64 != n {
                return Err(format!("holds {} values but dims {:?} need {n}", typed.len(), t.dims));
            }
            typed
        };
        Ok(Known { dtype, dims, vals })
    }

    /// Reads external data: `location` relative to the model's folder, no `..`, no absolute
    /// path; `offset`/`length` checked against the file.
    fn external(&self, t: &proto::TensorProto, want: u64) -> std::result::Result<Vec<u8>, String> {
        let mut loc = None;
        let (mut offset, mut length) = (0u64, None);
        for kv in &t.external_data {
            let v = kv.value.clone().unwrap_or_default();
            match kv.key.as_deref() {
                Some("location") => loc = Some(v),
                Some("offset") => {
                    offset = v.parse().map_err(|_| format!("external data offset {v:?} is not a number"))?
                }
                Some("length") => {
                    length = Some(v.parse::<u64>().map_err(|_| format!("external data length {v:?} is not a number"))?)
                }
                _ => {}
            }
        }
        let loc = loc.ok_or("external data without a location")?;
        let rel = Path::new(&loc);
        if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(format!(
                "external data location {loc:?} must be a plain relative path inside the model's folder"
            ));
        }
        let full = self.dir.join(rel);
        let mut f = std::fs::File::open(&full).map_err(|e| format!("external data file {}: {e}", full.display()))?;
        let size = f.metadata().map_err(|e| e.to_string())?.len();
        let len = length.unwrap_or(want);
        if len != want || offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(format!(
                "external data {loc:?} at offset {offset} length {len} does not fit: the file holds {size} bytes and the dims need {want}"
            ));
        }
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(offset)).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    }

    /// The IR value of an ONNX value, materialising a known tensor as a node on first use.
    fn value(&mut self, name: &str) -> std::result::Result<Value, String> {
        if let Some(v) = self.vals.get(name) {
            return Ok(*v);
        }
        let k = self
            .known
            .get(name)
            .cloned()
            .ok_or_else(|| format!("value '{name}' is not produced by any earlier node"))?;
        let ty = TensorType::new(k.dtype, k.dims.iter().map(|&d| Dim::Fixed(d as u64)).collect());
        let op = if k.dtype.is_float() && k.vals.len() > 1 {
            Op::Weight(WeightInit::Data(k.vals.iter().map(|&x| x as f32).collect()))
        } else {
            Op::Constant(if k.dtype.is_float() {
                ConstValues::Float(k.vals.clone())
            } else {
                ConstValues::Int(k.vals.iter().map(|&v| v as i64).collect())
            })
        };
        let n = self.g.add_node(self.unique(name), op, &[], vec![ty]).map_err(|e| e.to_string())?;
        self.vals.insert(name.to_string(), Value::of(n));
        Ok(Value::of(n))
    }

    fn unique(&self, base: &str) -> String {
        let base = if base.is_empty() { "node" } else { base };
        if self.g.find(base).is_none() {
            return base.to_string();
        }
        (1..).map(|i| format!("{base}_{i}")).find(|n| self.g.find(n).is_none()).expect("some suffix is free")
    }

    fn node(&mut self, i: usize, n: &proto::NodeProto) -> Result<()> {
        let op_type = n.op_type.clone().unwrap_or_default();
        let out0 = n.output.first().cloned().unwrap_or_default();
        let label = match &n.name {
            Some(s) if !s.is_empty() => s.clone(),
            _ if !out0.is_empty() => out0.clone(),
            _ => format!("{op_type}_{i}"),
        };
        let err = |m: String| Error::graph(&label, format!("{op_type}: {m}"));
        let attrs: HashMap<&str, &proto::AttributeProto> =
            n.attribute.iter().map(|a| (a.name.as_deref().unwrap_or(""), a)).collect();
        let default_domain = matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx"));
        // 1. Fold what can be folded.
        if default_domain {
            if let Some(outs) = self.fold(&op_type, n, &attrs).map_err(err)? {
                for (name, k) in n.output.iter().zip(outs) {
                    self.known.insert(name.clone(), k);
                }
                return Ok(());
            }
        }
        // 2. Map onto IR ops.
        let name = self.unique(&label);
        let mapped = if default_domain { self.map(&name, &op_type, n, &attrs).map_err(err)? } else { None };
        let produced: Vec<Value> = match mapped {
            Some(v) => v,
            None => self.opaque(&name, &op_type, n).map_err(err)?,
        };
        for (o, v) in n.output.iter().zip(produced) {
            if !o.is_empty() {
                self.vals.insert(o.clone(), v);
            }
        }
        Ok(())
    }

    fn known_of(&self, name: &str) -> Option<&Known> {
        if name.is_empty() {
            return None;
        }
        self.known.get(name)
    }

    /// Constant folding of shape arithmetic. Returns the known outputs, or None.
    fn fold(
        &self,
        op: &str,
        n: &proto::NodeProto,
        attrs: &HashMap<&str, &proto::AttributeProto>,
    ) -> std::result::Result<Option<Vec<Known>>, String> {
        let ins: Vec<Option<&Known>> = n.input.iter().map(|s| self.known_of(s)).collect();
        let all = !ins.is_empty() && ins.iter().all(|k| k.is_some());
        let int_attr = |k: &str| attrs.get(k).and_then(|a| a.i);
        let k = |i: usize| ins[i].expect("checked");
        let out = match op {
            "Constant" => {
                let a = attrs.iter().next().ok_or("Constant without a value")?.1;
                if let Some(t) = &a.t {
                    self.tensor(t)?
                } else if let Some(f) = a.f {
                    Known::scalar(vec![f as f64], DType::F32, vec![])
                } else if let Some(i) = a.i {
                    Known::scalar(vec![i as f64], DType::I64, vec![])
                } else if !a.ints.is_empty() {
                    Known::scalar(a.ints.iter().map(|&x| x as f64).collect(), DType::I64, vec![a.ints.len()])
                } else if !a.floats.is_empty() {
                    Known::scalar(a.floats.iter().map(|&x| x as f64).collect(), DType::F32, vec![a.floats.len()])
                } else {
                    return Err("unsupported Constant attribute".into());
                }
            }
            "Shape" => {
                let src = n.input.first().ok_or("Shape needs an input")?;
                let dims: Option<Vec<u64>> = match (self.known_of(src), self.vals.get(src)) {
                    (Some(k), _) => Some(k.dims.iter().map(|&d| d as u64).collect()),
                    (None, Some(v)) => self.g.ty(*v).shape.iter().map(Dim::fixed).collect(),
                    _ => None,
                };
                let Some(dims) = dims else { return Ok(None) };
                let r = dims.len() as i64;
                let clampi = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
                let s = clampi(int_attr("start").unwrap_or(0));
                let e = clampi(int_attr("end").unwrap_or(r));
                let v: Vec<f64> = dims[s..e.max(s)].iter().map(|&d| d as f64).collect();
                let len = v.len();
                Known::scalar(v, DType::I64, vec![len])
            }
            _ if !all => return Ok(None),
            "Identity" => k(0).clone(),
            "Cast" => {
                let to = dtype_of(int_attr("to").unwrap_or(1) as i32)?;
                let mut c = k(0).clone();
                if to == DType::I64 {
                    c.vals.iter_mut().for_each(|v| *v = v.trunc());
                }
                c.dtype = to;
                c
            }
            "Gather" => {
                let (data, idx) = (k(0), k(1));
                let axis = int_attr("axis").unwrap_or(0);
                if data.dims.len() != 1 || axis != 0 {
                    return Ok(None);
                }
                let len = data.vals.len() as i64;
                let mut v = vec![];
                for i in idx.ints() {
                    let j = if i < 0 { i + len } else { i };
                    v.push(*data.vals.get(j as usize).ok_or("Gather index out of range")?);
                }
                Known { dtype: data.dtype, dims: idx.dims.clone(), vals: v }
            }
            "Unsqueeze" | "Squeeze" => {
                let mut c = k(0).clone();
                let axes: Vec<i64> = match (ins.get(1).copied().flatten(), attrs.get("axes")) {
                    (Some(a), _) => a.ints(),
                    (None, Some(a)) => a.ints.clone(),
                    _ => vec![],
                };
                if op == "Unsqueeze" {
                    let r = (c.dims.len() + axes.len()) as i64;
                    let mut ax: Vec<usize> = axes.iter().map(|&a| (if a < 0 { a + r } else { a }) as usize).collect();
                    ax.sort();
                    for a in ax {
                        if a > c.dims.len() {
                            return Err("Unsqueeze axis out of range".into());
                        }
                        c.dims.insert(a, 1);
                    }
                } else if axes.is_empty() {
                    c.dims.retain(|&d| d != 1);
                } else {
                    let r = c.dims.len() as i64;
                    let drop: HashSet<usize> = axes.iter().map(|&a| (if a < 0 { a + r } else { a }) as usize).collect();
                    c.dims = c.dims.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, &d)| d).collect();
                }
                c
            }
            "Concat" => {
                if ins.iter().any(|x| x.expect("all").dims.len() != 1) {
                    return Ok(None);
                }
                let vals: Vec<f64> = ins.iter().flat_map(|x| x.expect("all").vals.clone()).collect();
                let len = vals.len();
                Known { dtype: k(0).dtype, dims: vec![len], vals }
            }
            "Add" | "Sub" | "Mul" | "Div" if k(0).vals.len() <= 64 && k(1).vals.len() <= 64 => {
                let (a, b) = (k(0), k(1));
                let (big, small) = if a.vals.len() >= b.vals.len() { (a, b) } else { (b, a) };
                if small.vals.len() != 1 && small.vals.len() != big.vals.len() {
                    return Ok(None);
                }
                let at = |x: &Known, i: usize| if x.vals.len() == 1 { x.vals[0] } else { x.vals[i] };
                let int = a.dtype == DType::I64;
                let vals = (0..big.vals.len())
                    .map(|i| {
                        let (x, y) = (at(a, i), at(b, i));
                        match op {
                            "Add" => x + y,
                            "Sub" => x - y,
                            "Mul" => x * y,
                            _ if int => (x / y).floor(),
                            _ => x / y,
                        }
                    })
                    .collect();
                Known { dtype: a.dtype, dims: big.dims.clone(), vals }
            }
            "Slice" if k(0).dims.len() == 1 => {
                let d = k(0);
                let len = d.vals.len() as i64;
                let (s, e) = (k(1).ints()[0], k(2).ints()[0]);
                let step = ins.get(4).copied().flatten().map_or(1, |s| s.ints()[0]);
                if step != 1 {
                    return Ok(None);
                }
                let c = |x: i64| (if x < 0 { x + len } else { x }).clamp(0, len) as usize;
                let vals = d.vals[c(s)..c(e).max(c(s))].to_vec();
                let l = vals.len();
                Known { dtype: d.dtype, dims: vec![l], vals }
            }
            _ => return Ok(None),
        };
        Ok(Some(vec![out]))
    }

    /// Maps an op onto IR ops; None leaves it opaque.
    fn map(
        &mut self,
        name: &str,
        op: &str,
        n: &proto::NodeProto,
        attrs: &HashMap<&str, &proto::AttributeProto>,
    ) -> std::result::Result<Option<Vec<Value>>, String> {
        let int_attr = |k: &str| attrs.get(k).and_then(|a| a.i);
        let input = |s: &mut Self, i: usize| -> std::result::Result<Value, String> {
            let nm = n.input.get(i).filter(|s| !s.is_empty()).ok_or_else(|| format!("input {i} is missing"))?;
            s.value(nm)
        };
        let add = |s: &mut Self, nm: &str, op: Op, ins: &[Value]| -> std::result::Result<Vec<Value>, String> {
            let tys: Vec<&TensorType> = ins.iter().map(|&v| s.g.ty(v)).collect();
            let outs = op.infer(&tys, &[])?;
            let k = outs.len();
            let idx = s.g.add_node(s.unique(nm), op, ins, outs).map_err(|e| e.to_string())?;
            Ok((0..k).map(|o| Value { node: idx, output: o }).collect())
        };
        let float_in = |s: &Self, i: usize| {
            n.input.get(i).and_then(|x| s.vals.get(x)).is_some_and(|v| s.g.ty(*v).dtype.is_float())
        };
        let unary = |u| Some(Op::Unary(u));
        let simple = match op {
            "Neg" => unary(UnaryOp::Neg),
            "Exp" => unary(UnaryOp::Exp),
            "Sqrt" => unary(UnaryOp::Sqrt),
            "Erf" => unary(UnaryOp::Erf),
            "Tanh" => unary(UnaryOp::Tanh),
            "Sigmoid" => unary(UnaryOp::Sigmoid),
            "Relu" => unary(UnaryOp::Relu),
            "Gelu" => match attrs.get("approximate").and_then(|a| a.s.as_deref()) {
                Some(b"tanh") => unary(UnaryOp::GeluTanh),
                _ => unary(UnaryOp::GeluErf),
            },
            _ => None,
        };
        if let Some(op) = simple {
            if !float_in(self, 0) && self.known_of(&n.input[0]).is_none() {
                return Ok(None);
            }
            let a = input(self, 0)?;
            return add(self, name, op, &[a]).map(Some);
        }
        Ok(Some(match op {
            "MatMul" => {
                let (a, b) = (input(self, 0)?, input(self, 1)?);
                if self.g.ty(a).rank() < 2 || self.g.ty(b).rank() < 2 {
                    return Ok(None);
                }
                add(self, name, Op::MatMul, &[a, b])?
            }
            "Add" | "Sub" | "Mul" | "Div" | "Pow" => {
                let bop = match op {
                    "Add" => BinaryOp::Add,
                    "Sub" => BinaryOp::Sub,
                    "Mul" => BinaryOp::Mul,
                    "Div" => BinaryOp::Div,
                    _ => BinaryOp::Pow,
                };
                // A known operand of another type (Pow's integer exponent) takes the other's.
                let other_float =
                    [0, 1].map(|i| n.input.get(i).and_then(|x| self.vals.get(x)).map(|v| self.g.ty(*v).dtype));
                let mut ins = vec![];
                for i in 0..2 {
                    let nm = n.input.get(i).cloned().unwrap_or_default();
                    let want = other_float[1 - i].filter(|d| d.is_float());
                    match (self.known_of(&nm).cloned(), want) {
                        (Some(mut k), Some(d)) if k.dtype != d && !self.vals.contains_key(&nm) => {
                            k.dtype = d;
                            let alias = format!("{nm}.{d}");
                            self.known.insert(alias.clone(), k);
                            ins.push(self.value(&alias)?);
                        }
                        _ => ins.push(self.value(&nm)?),
                    }
                }
                if !self.g.ty(ins[0]).dtype.is_float() {
                    return Ok(None);
                }
                add(self, name, Op::Binary(bop), &ins)?
            }
            "Gemm" => {
                let (mut a, mut b) = (input(self, 0)?, input(self, 1)?);
                if self.g.ty(a).rank() != 2 || self.g.ty(b).rank() != 2 {
                    return Err("Gemm needs 2-D operands".into());
                }
                if int_attr("transA") == Some(1) {
                    a = add(self, &format!("{name}.transA"), Op::Transpose { perm: vec![1, 0] }, &[a])?[0];
                }
                if int_attr("transB") == Some(1) {
                    b = add(self, &format!("{name}.transB"), Op::Transpose { perm: vec![1, 0] }, &[b])?[0];
                }
                let alpha = attrs.get("alpha").and_then(|x| x.f).unwrap_or(1.0);
                let beta = attrs.get("beta").and_then(|x| x.f).unwrap_or(1.0);
                let has_c = n.input.get(2).is_some_and(|s| !s.is_empty());
                let mm_name = if alpha == 1.0 && !has_c { name.to_string() } else { format!("{name}.matmul") };
                let mut y = add(self, &mm_name, Op::MatMul, &[a, b])?[0];
                let dt = self.g.ty(y).dtype;
                if alpha != 1.0 {
                    self.known.insert(format!("{name}.alpha"), Known::scalar(vec![alpha as f64], dt, vec![]));
                    let c = self.value(&format!("{name}.alpha"))?;
                    let nm = if has_c { format!("{name}.scaled") } else { name.to_string() };
                    y = add(self, &nm, Op::Binary(BinaryOp::Mul), &[y, c])?[0];
                }
                if has_c {
                    let mut c = input(self, 2)?;
                    if beta != 1.0 {
                        self.known.insert(format!("{name}.beta"), Known::scalar(vec![beta as f64], dt, vec![]));
                        let bc = self.value(&format!("{name}.beta"))?;
                        c = add(self, &format!("{name}.beta_c"), Op::Binary(BinaryOp::Mul), &[c, bc])?[0];
                    }
                    y = add(self, name, Op::Binary(BinaryOp::Add), &[y, c])?[0];
                }
                vec![y]
            }
            "Transpose" => {
                let a = input(self, 0)?;
                let r = self.g.ty(a).rank();
                let perm: Vec<usize> = match attrs.get("perm") {
                    Some(p) => p.ints.iter().map(|&x| x as usize).collect(),
                    None => (0..r).rev().collect(),
                };
                add(self, name, Op::Transpose { perm }, &[a])?
            }
            "Reshape" => {
                let Some(shape) = n.input.get(1).and_then(|s| self.known_of(s)).map(Known::ints) else {
                    return Ok(None);
                };
                if int_attr("allowzero") == Some(1) && shape.contains(&0) {
                    return Ok(None);
                }
                let a = input(self, 0)?;
                add(self, name, Op::Reshape { shape: shape.into_iter().map(DimExpr::constant).collect() }, &[a])?
            }
            "Split" => {
                let a = input(self, 0)?;
                let axis = int_attr("axis").unwrap_or(0);
                let Some(ax) = crate::shape::norm_axis(axis, self.g.ty(a).rank()) else {
                    return Err(format!("axis {axis} out of range"));
                };
                let Some(total) = self.g.ty(a).shape[ax].fixed() else { return Ok(None) };
                let sizes: Vec<u64> = match n.input.get(1).filter(|s| !s.is_empty()) {
                    Some(s) => match self.known_of(s) {
                        Some(k) => k.ints().iter().map(|&x| x as u64).collect(),
                        None => return Ok(None),
                    },
                    None => {
                        let parts = int_attr("num_outputs").map_or(n.output.len() as u64, |x| x as u64).max(1);
                        let each = total.div_ceil(parts);
                        (0..parts).map(|i| each.min(total.saturating_sub(i * each))).collect()
                    }
                };
                add(self, name, Op::Split { axis, sizes: sizes.into_iter().map(Dim::Fixed).collect() }, &[a])?
            }
            "Slice" => {
                let ks: Vec<Option<Vec<i64>>> = (1..5)
                    .map(|i| n.input.get(i).filter(|s| !s.is_empty()).map(|s| self.known_of(s).map(Known::ints)))
                    .map(|o| o.flatten())
                    .collect();
                let (Some(starts), Some(ends)) = (ks[0].clone(), ks[1].clone()) else { return Ok(None) };
                let a = input(self, 0)?;
                let r = self.g.ty(a).rank();
                let axes = ks[2].clone().unwrap_or_else(|| (0..starts.len() as i64).collect());
                if ks[3].as_ref().is_some_and(|s| s.iter().any(|&x| x != 1)) {
                    return Ok(None);
                }
                let mut v = a;
                for (j, ((&s, &e), &ax)) in starts.iter().zip(&ends).zip(&axes).enumerate() {
                    let Some(axn) = crate::shape::norm_axis(ax, r) else {
                        return Err(format!("axis {ax} out of range"));
                    };
                    let Some(d) = self.g.ty(v).shape[axn].fixed() else { return Ok(None) };
                    let d = d as i64;
                    let c = |x: i64| (if x < 0 { x + d } else { x }).clamp(0, d) as u64;
                    let (s, e) = (c(s), c(e).max(c(s)));
                    let nm = if j + 1 == starts.len() { name.to_string() } else { format!("{name}.{j}") };
                    let op = Op::Slice { axis: ax, start: Dim::Fixed(s), len: Dim::Fixed(e - s), step: 1 };
                    v = add(self, &nm, op, &[v])?[0];
                }
                vec![v]
            }
            "Concat" => {
                let mut ins = vec![];
                for i in 0..n.input.len() {
                    ins.push(input(self, i)?);
                }
                if ins.iter().any(|&v| !self.g.ty(v).dtype.is_float()) {
                    return Ok(None);
                }
                add(self, name, Op::Concat { axis: int_attr("axis").unwrap_or(0) }, &ins)?
            }
            "Cast" => {
                let to = dtype_of(int_attr("to").unwrap_or(1) as i32)?;
                let a = input(self, 0)?;
                if !to.is_float() || !self.g.ty(a).dtype.is_float() {
                    return Ok(None);
                }
                add(self, name, Op::Cast { to }, &[a])?
            }
            "Identity" => vec![input(self, 0)?],
            _ => return Ok(None),
        }))
    }

    fn opaque(&mut self, name: &str, op_type: &str, n: &proto::NodeProto) -> std::result::Result<Vec<Value>, String> {
        let mut ins = vec![];
        for s in n.input.iter().filter(|s| !s.is_empty()) {
            ins.push(self.value(s)?);
        }
        let mut outs = vec![];
        for o in &n.output {
            outs.push(self.declared.get(o).cloned().ok_or_else(|| {
                format!("glufuse does not model {op_type} and the model declares no type for its output '{o}' (export with shape inference)")
            })?);
        }
        let mut attrs = BTreeMap::new();
        for a in &n.attribute {
            let v = if let Some(i) = a.i {
                serde_json::json!(i)
            } else if let Some(f) = a.f {
                serde_json::json!(f)
            } else if let Some(s) = &a.s {
                serde_json::json!(String::from_utf8_lossy(s))
            } else if !a.ints.is_empty() {
                serde_json::json!(a.ints)
            } else if !a.floats.is_empty() {
                serde_json::json!(a.floats)
            } else {
                serde_json::json!("<tensor or graph>")
            };
            attrs.insert(a.name.clone().unwrap_or_default(), v);
        }
        let op = Op::Opaque { op_type: op_type.to_string(), attrs };
        let k = outs.len();
        let idx = self.g.add_node(name, op, &ins, outs).map_err(|e| e.to_string())?;
        Ok((0..k).map(|o| Value { node: idx, output: o }).collect())
    }
}

fn value_type(vi: &proto::ValueInfoProto) -> Option<std::result::Result<TensorType, String>> {
    let t = vi.r#type.as_ref()?;
    let proto::type_proto::Value::TensorType(tt) = t.value.as_ref()? else { return None };
    let dtype = match dtype_of(tt.elem_type.unwrap_or(0)) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    let shape = tt.shape.as_ref()?;
    let mut dims = vec![];
    for (i, d) in shape.dim.iter().enumerate() {
        use proto::tensor_shape_proto::dimension::Value as V;
        dims.push(match &d.value {
            Some(V::DimValue(v)) if *v >= 0 => Dim::Fixed(*v as u64),
            Some(V::DimValue(v)) => return Some(Err(format!("dim {v} is negative"))),
            Some(V::DimParam(p)) => {
                let clean: String = p.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                Dim::Sym(if clean.starts_with(|c: char| c.is_ascii_digit()) || clean.is_empty() {
                    format!("d_{clean}")
                } else {
                    clean
                })
            }
            None => Dim::Sym(format!("unk{i}")),
        });
    }
    Some(Ok(TensorType::new(dtype, dims)))
}
