//! The ONNX loader: `.onnx` files (opset 13 and up) decoded with `prost` into the IR.
//!
//! Every op whole-model exports use maps onto IR ops (`lower.rs`): matrix products,
//! elementwise arithmetic, comparisons and logic, `Where`, reductions, `Softmax`,
//! `LayerNormalization`, `Gather`/`GatherND`, `Range`, `CumSum`, the layout ops and `Cast`,
//! on floats, integers and booleans. Values known at load time (`known.rs`) are tracked
//! through shape arithmetic, symbolic dims included: `Shape` of a `[1, new]` value is `[1,
//! new]`, and `Concat`, `Gather`, `Add` and the rest carry `past + new` into the `Reshape`,
//! `Expand`, `Slice` and `Range` attributes that need it; a known value a run needs as data
//! becomes a constant (a symbolic one evaluated under the run's binding). Anything else
//! becomes an `Opaque` node with the output types the model declares, so any graph loads,
//! fuses and dumps; an op whose output shape would depend on tensor data is an error naming
//! the node.
//!
//! Declared types (`value_info`, outputs) are checked against inference where they say
//! something: a `dim_param` such as `past + new` is read as a dim expression (equal to an
//! inferred `new + past`), a dim with neither value nor parameter (or a declared 0) is
//! unknown and inferred, and a symbol that no graph input has is not checked.
//!
//! Initializer data comes from `raw_data`, the typed fields, or external files (a relative
//! `location` under the model's folder only). Every size is checked against the bytes that
//! back it before anything is allocated for it.
//!
//! `proto.rs` is generated from the vendored `onnx.proto` by `prost-build` 0.14
//! (`prost_build::Config::new().out_dir(..).compile_protos(&["src/onnx/onnx.proto"], ..)`,
//! with `protoc` installed); it is committed so that building glufuse needs no `protoc`.

mod known;
mod lower;
mod proto;
mod quant;

use crate::ir::*;
use crate::{Error, Graph, Result};
use known::{KVals, Known};
use lower::{dtype_of, Attrs, Env, Src};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Elements an initializer may hold (2^32): more is refused before anything is allocated.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;

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

/// A type the model declares: the dtype, and each dim when it says something about it.
#[derive(Clone, Debug)]
struct Decl {
    dtype: DType,
    dims: Option<Vec<Option<Dim>>>,
}

impl Decl {
    /// The declared type, unknown dims given symbols named after `value`.
    fn full(&self, value: &str) -> TensorType {
        let base = sanitize(value);
        let dims = self.dims.as_deref().unwrap_or(&[]);
        let shape = dims.iter().enumerate().map(|(i, d)| d.clone().unwrap_or_else(|| Dim::sym(format!("{base}_d{i}"))));
        TensorType::new(self.dtype, shape.collect())
    }

    fn show(&self) -> String {
        let dims = match &self.dims {
            None => "?".to_string(),
            Some(d) => d.iter().map(|d| d.as_ref().map_or("?".into(), |d| d.to_string())).collect::<Vec<_>>().join(","),
        };
        format!("{}[{dims}]", self.dtype)
    }
}

/// A symbol name from any text: non-identifier characters become `_`.
fn sanitize(p: &str) -> String {
    let clean: String = p.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    if clean.starts_with(|c: char| c.is_ascii_digit()) || clean.is_empty() {
        format!("d_{clean}")
    } else {
        clean
    }
}

/// A produced value: in the graph, or known at load time.
enum Got {
    V(Value),
    K(Known),
    /// A known value of the model, by ONNX name.
    KIn(String),
}

struct Loader<'p> {
    dir: &'p Path,
    g: Graph,
    /// ONNX value name -> IR value.
    vals: HashMap<String, Value>,
    /// ONNX value name -> known contents.
    known: HashMap<String, Known>,
    /// Declared types of values (value_info, inputs, outputs).
    declared: HashMap<String, Decl>,
    /// Symbols of the graph inputs' dims: declared dims over other symbols are not checked.
    input_syms: BTreeSet<String>,
    /// Outputs no node produces in the IR (an op's unmodelled extra output), and why.
    missing: HashMap<String, String>,
    /// 4-bit (`INT4`/`UINT4`) initializers, packed: read only through `DequantizeLinear`.
    packed: HashMap<String, quant::Packed4>,
    /// The quantized weight of each `MatMulNBits` packed weight (with its scales and zero
    /// points), so that nodes sharing one share the weight.
    quant_weights: HashMap<String, Value>,
}

impl Env for Loader<'_> {
    fn type_of(&self, name: &str) -> Option<TensorType> {
        if let Some(k) = self.known.get(name) {
            return Some(k.ty());
        }
        self.vals.get(name).map(|v| self.g.ty(*v).clone())
    }
    fn known(&self, name: &str) -> Option<&Known> {
        self.known.get(name)
    }
}

impl<'p> Loader<'p> {
    fn new(path: &'p Path) -> Self {
        Loader {
            dir: path.parent().unwrap_or(Path::new(".")),
            g: Graph::new(),
            vals: HashMap::new(),
            known: HashMap::new(),
            declared: HashMap::new(),
            input_syms: BTreeSet::new(),
            missing: HashMap::new(),
            packed: HashMap::new(),
            quant_weights: HashMap::new(),
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
            if matches!(t.data_type, Some(quant::INT4 | quant::UINT4)) {
                let p =
                    quant::decode_packed4(t, self.dir).map_err(|m| Error::graph(&name, format!("initializer: {m}")))?;
                self.missing.insert(
                    name.clone(),
                    "it is a 4-bit (INT4/UINT4) initializer, which glufuse reads only through DequantizeLinear".into(),
                );
                self.packed.insert(name, p);
                continue;
            }
            let mut k =
                decode_tensor(t, Some(self.dir)).map_err(|m| Error::graph(&name, format!("initializer: {m}")))?;
            k.init = true;
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
                .map(|d| d.full(&name))
                .ok_or_else(|| Error::graph(&name, "graph input without a tensor type"))?;
            for d in &ty.shape {
                self.input_syms.extend(d.symbols());
            }
            let n = self.g.add_node(name.clone(), Op::Input, &[], vec![ty])?;
            self.vals.insert(name, Value::of(n));
        }
        for (i, node) in graph.node.iter().enumerate() {
            self.node(i, node)?;
        }
        for o in &graph.output {
            let name = o.name.clone().unwrap_or_default();
            let v = self.value(&name, &name).map_err(|m| Error::input(format!("graph output '{name}': {m}")))?;
            self.g.add_output(v, Some(name));
        }
        // Nodes built only for their shape (a `Shape` of them folded to dims) compute nothing
        // a run needs.
        crate::passes::dce::eliminate(&mut self.g);
        crate::verify::verify(&self.g)?;
        Ok(self.g)
    }

    /// The IR value of an ONNX value, materialising a known tensor as a node (named `node`)
    /// on first use.
    fn value(&mut self, name: &str, node: &str) -> std::result::Result<Value, String> {
        if let Some(v) = self.vals.get(name) {
            return Ok(*v);
        }
        if let Some(why) = self.missing.get(name) {
            return Err(format!("value '{name}' is read, but {why}"));
        }
        let k = self.known.get(name).ok_or_else(|| format!("value '{name}' is not produced by any earlier node"))?;
        let v = self.materialise(node, k.to_op(), k.ty())?;
        // A weight is held by its node from now on, not twice.
        if self.known.get(name).is_some_and(|k| k.init && k.numel() > known::FOLD_LIMIT) {
            self.known.remove(name);
        }
        self.vals.insert(name.to_string(), v);
        Ok(v)
    }

    fn materialise(&mut self, name: &str, op: Op, ty: TensorType) -> std::result::Result<Value, String> {
        let n = self.g.add_node(self.unique(name), op, &[], vec![ty]).map_err(|e| e.to_string())?;
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
        let attrs = Attrs(n.attribute.iter().map(|a| (a.name.as_deref().unwrap_or(""), a)).collect());
        let default_domain = matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx"));
        if let Some(v) = self.quant_node(&label, n, &attrs, default_domain).map_err(err)? {
            let o = out0.clone();
            self.check_declared(&o, &self.g.ty(v).clone()).map_err(err)?;
            self.vals.insert(o, v);
            return Ok(());
        }
        let lowered = if default_domain { lower::lower(self, n, &attrs).map_err(err)? } else { None };
        let Some(low) = lowered else {
            let name = self.unique(&label);
            let produced = self.opaque(&name, &op_type, n).map_err(err)?;
            for (o, v) in n.output.iter().zip(produced) {
                if !o.is_empty() {
                    self.vals.insert(o.clone(), v);
                }
            }
            return Ok(());
        };
        let results = self.run_steps(&label, n, &low.steps).map_err(err)?;
        for (k, o) in n.output.iter().enumerate() {
            if o.is_empty() {
                continue;
            }
            let got = match low.outs.get(k).cloned().flatten() {
                None => {
                    self.missing
                        .insert(o.clone(), format!("glufuse does not model output {k} of {op_type} node '{label}'"));
                    continue;
                }
                Some(Src::In(j)) => {
                    let from = n.input.get(j).cloned().unwrap_or_default();
                    match self.known.get(&from) {
                        Some(kn) => Got::K(kn.clone()),
                        None => Got::V(self.value(&from, &from).map_err(err)?),
                    }
                }
                Some(Src::Known(_, kn)) => Got::K(kn),
                Some(Src::Step(s, j)) => match &results[s][j] {
                    Got::V(v) => Got::V(*v),
                    Got::K(kn) => Got::K(kn.clone()),
                    Got::KIn(nm) => Got::K(self.known[nm].clone()),
                },
            };
            let ty = match &got {
                Got::V(v) => self.g.ty(*v).clone(),
                Got::K(kn) => kn.ty(),
                Got::KIn(nm) => self.known[nm].ty(),
            };
            self.check_declared(o, &ty).map_err(err)?;
            match got {
                Got::V(v) => {
                    self.vals.insert(o.clone(), v);
                }
                Got::K(kn) => {
                    self.known.insert(o.clone(), kn);
                }
                Got::KIn(_) => unreachable!("resolved above"),
            }
        }
        Ok(())
    }

    /// A node of a 4-bit weight (`com.microsoft::MatMulNBits`, or `DequantizeLinear` of a
    /// 4-bit initializer) as IR nodes: the value of its output; `None` for any other node.
    fn quant_node(
        &mut self,
        label: &str,
        n: &proto::NodeProto,
        attrs: &Attrs,
        default_domain: bool,
    ) -> std::result::Result<Option<Value>, String> {
        let op = n.op_type.as_deref().unwrap_or("");
        if op == "MatMulNBits" && n.domain.as_deref() == Some("com.microsoft") {
            return quant::matmul_nbits(self, label, n, attrs).map(Some);
        }
        let data = n.input.first().and_then(|i| self.packed.get(i)).cloned();
        match data {
            Some(p) if op == "DequantizeLinear" && default_domain => {
                quant::dequantize_linear(self, n, attrs, &p).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Runs a lowering: each step folded when its inputs are known and it can be, built into
    /// the graph otherwise.
    fn run_steps(
        &mut self,
        label: &str,
        n: &proto::NodeProto,
        steps: &[lower::Step],
    ) -> std::result::Result<Vec<Vec<Got>>, String> {
        let mut results: Vec<Vec<Got>> = vec![];
        for (si, step) in steps.iter().enumerate() {
            let last = si + 1 == steps.len();
            let node_name =
                if last || step.suffix.is_empty() { label.to_string() } else { format!("{label}.{}", step.suffix) };
            // Resolve the inputs.
            let mut ins: Vec<Got> = vec![];
            for src in &step.ins {
                ins.push(match src {
                    Src::In(j) => {
                        let nm =
                            n.input.get(*j).filter(|s| !s.is_empty()).ok_or_else(|| format!("input {j} is missing"))?;
                        if self.known.contains_key(nm) {
                            Got::KIn(nm.clone())
                        } else {
                            Got::V(self.value(nm, nm)?)
                        }
                    }
                    Src::Known(_, k) => Got::K(k.clone()),
                    Src::Step(s, o) => match &results[*s][*o] {
                        Got::V(v) => Got::V(*v),
                        Got::K(k) => Got::K(k.clone()),
                        Got::KIn(nm) => Got::KIn(nm.clone()),
                    },
                });
            }
            // Fold when every input is known.
            let knowns: Option<Vec<&Known>> = ins
                .iter()
                .map(|g| match g {
                    Got::K(k) => Some(k),
                    Got::KIn(nm) => self.known.get(nm),
                    Got::V(_) => None,
                })
                .collect();
            if let Some(ks) = knowns {
                if let Some(outs) = known::fold(&step.op, &ks, &[])? {
                    results.push(outs.into_iter().map(Got::K).collect());
                    continue;
                }
            }
            // Build: known inputs become nodes first.
            let mut vals = vec![];
            for (k, (g, src)) in ins.into_iter().zip(&step.ins).enumerate() {
                vals.push(match g {
                    Got::V(v) => v,
                    Got::KIn(nm) => self.value(&nm, &nm)?,
                    Got::K(kn) => {
                        let suffix = match src {
                            Src::Known(s, _) => s.clone(),
                            Src::Step(s, _) if !steps[*s].suffix.is_empty() => steps[*s].suffix.clone(),
                            _ => format!("in{k}"),
                        };
                        self.materialise(&format!("{label}.{suffix}"), kn.to_op(), kn.ty())?
                    }
                });
            }
            let tys: Vec<&TensorType> = vals.iter().map(|&v| self.g.ty(v)).collect();
            let outs = step.op.infer(&tys, &[])?;
            let count = outs.len();
            let idx =
                self.g.add_node(self.unique(&node_name), step.op.clone(), &vals, outs).map_err(|e| e.to_string())?;
            results.push((0..count).map(|o| Got::V(Value { node: idx, output: o })).collect());
        }
        Ok(results)
    }

    /// Checks a produced type against the declared one, where the declaration says
    /// something: its dtype, its rank, and each dim given as a number or as an expression
    /// over the graph inputs' symbols.
    fn check_declared(&self, name: &str, got: &TensorType) -> std::result::Result<(), String> {
        let Some(d) = self.declared.get(name) else { return Ok(()) };
        let bad = || format!("the model declares '{name}' as {} but its inputs give {got}", d.show());
        if d.dtype != got.dtype {
            return Err(bad());
        }
        let Some(dims) = &d.dims else { return Ok(()) };
        if dims.len() != got.rank() {
            return Err(bad());
        }
        for (want, have) in dims.iter().zip(&got.shape) {
            if let Some(w) = want {
                if w.symbols().iter().all(|s| self.input_syms.contains(s)) && w != have {
                    return Err(bad());
                }
            }
        }
        Ok(())
    }

    fn opaque(&mut self, name: &str, op_type: &str, n: &proto::NodeProto) -> std::result::Result<Vec<Value>, String> {
        let mut ins = vec![];
        for s in n.input.iter().filter(|s| !s.is_empty()) {
            ins.push(self.value(s, s)?);
        }
        let mut outs = vec![];
        for o in &n.output {
            outs.push(self.declared.get(o).map(|d| d.full(o)).ok_or_else(|| {
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

fn value_type(vi: &proto::ValueInfoProto) -> Option<std::result::Result<Decl, String>> {
    let t = vi.r#type.as_ref()?;
    let proto::type_proto::Value::TensorType(tt) = t.value.as_ref()? else { return None };
    // A 4-bit value's declaration says nothing glufuse checks (only initializers are 4-bit).
    if matches!(tt.elem_type, Some(quant::INT4 | quant::UINT4)) {
        return None;
    }
    let dtype = match dtype_of(tt.elem_type.unwrap_or(0)) {
        Ok(d) => d,
        Err(e) => return Some(Err(e)),
    };
    let Some(shape) = tt.shape.as_ref() else { return Some(Ok(Decl { dtype, dims: None })) };
    let mut dims = vec![];
    for d in &shape.dim {
        use proto::tensor_shape_proto::dimension::Value as V;
        dims.push(match &d.value {
            // A declared 0 is how some exporters say "unknown": never trusted.
            Some(V::DimValue(0)) | None => None,
            Some(V::DimValue(v)) if *v > 0 => Some(Dim::Fixed(*v as u64)),
            Some(V::DimValue(v)) => return Some(Err(format!("dim {v} is negative"))),
            // `past + new` is an expression; text that is not one is a symbol of its own.
            Some(V::DimParam(p)) => match Dim::parse(p) {
                Ok(d) => Some(d),
                Err(_) => Some(Dim::Sym(sanitize(p))),
            },
        });
    }
    Some(Ok(Decl { dtype, dims: Some(dims) }))
}

/// Decodes a tensor (an initializer, a `Constant`'s value), checking its size against the
/// bytes that back it before allocating; `dir` anchors external data (none for attributes).
fn decode_tensor(t: &proto::TensorProto, dir: Option<&Path>) -> std::result::Result<Known, String> {
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
        let dir = dir.ok_or("external data is allowed for initializers only")?;
        external = external_data(dir, t, want_bytes)?;
        Some(&external)
    } else {
        t.raw_data.as_deref()
    };
    let vals = if let Some(raw) = raw {
        if raw.len() as u64 != want_bytes {
            return Err(format!("holds {} bytes of data but dims {:?} need {want_bytes}", raw.len(), t.dims));
        }
        fn le<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
            raw.chunks_exact(N).map(|c| c.try_into().expect("exact chunks"))
        }
        match code {
            1 => KVals::Float(le::<4>(raw).map(f32::from_le_bytes).collect()),
            10 => KVals::Float(le::<2>(raw).map(|b| half::f16::from_le_bytes(b).to_f32()).collect()),
            16 => KVals::Float(le::<2>(raw).map(|b| half::bf16::from_le_bytes(b).to_f32()).collect()),
            11 => KVals::Float(le::<8>(raw).map(|b| f64::from_le_bytes(b) as f32).collect()),
            7 => KVals::Int(le::<8>(raw).map(i64::from_le_bytes).collect()),
            13 => KVals::Int(le::<8>(raw).map(|b| u64::from_le_bytes(b) as i64).collect()),
            6 => KVals::Int(le::<4>(raw).map(|b| i32::from_le_bytes(b) as i64).collect()),
            12 => KVals::Int(le::<4>(raw).map(|b| u32::from_le_bytes(b) as i64).collect()),
            4 => KVals::Int(le::<2>(raw).map(|b| u16::from_le_bytes(b) as i64).collect()),
            5 => KVals::Int(le::<2>(raw).map(|b| i16::from_le_bytes(b) as i64).collect()),
            3 => KVals::Int(raw.iter().map(|&b| b as i8 as i64).collect()),
            9 => KVals::Bool(raw.iter().map(|&b| b != 0).collect()),
            _ => KVals::Int(raw.iter().map(|&b| b as i64).collect()),
        }
    } else {
        let half_bits = |x: &i32| {
            let bits = *x as u16;
            if code == 10 {
                half::f16::from_bits(bits).to_f32()
            } else {
                half::bf16::from_bits(bits).to_f32()
            }
        };
        let typed = match code {
            1 => KVals::Float(t.float_data.clone()),
            11 => KVals::Float(t.double_data.iter().map(|&x| x as f32).collect()),
            7 => KVals::Int(t.int64_data.clone()),
            13 => KVals::Int(t.uint64_data.iter().map(|&x| x as i64).collect()),
            10 | 16 => KVals::Float(t.int32_data.iter().map(half_bits).collect()),
            9 => KVals::Bool(t.int32_data.iter().map(|&x| x != 0).collect()),
            _ => KVals::Int(t.int32_data.iter().map(|&x| x as i64).collect()),
        };
        let len = match &typed {
            KVals::Float(v) => v.len(),
            KVals::Int(v) => v.len(),
            KVals::Bool(v) => v.len(),
            KVals::Sym(v) => v.len(),
        };
        if len as u64 != n {
            return Err(format!("holds {len} values but dims {:?} need {n}", t.dims));
        }
        typed
    };
    // An i32 tensor holds i32 values; an f16 one f16 values (decoded exactly).
    Ok(Known::new(dtype, dims, vals))
}

/// Reads external data: `location` relative to the model's folder, no `..`, no absolute path;
/// `offset`/`length` checked against the file.
fn external_data(dir: &Path, t: &proto::TensorProto, want: u64) -> std::result::Result<Vec<u8>, String> {
    let mut loc = None;
    let (mut offset, mut length) = (0u64, None);
    for kv in &t.external_data {
        let v = kv.value.clone().unwrap_or_default();
        match kv.key.as_deref() {
            Some("location") => loc = Some(v),
            Some("offset") => offset = v.parse().map_err(|_| format!("external data offset {v:?} is not a number"))?,
            Some("length") => {
                length = Some(v.parse::<u64>().map_err(|_| format!("external data length {v:?} is not a number"))?)
            }
            _ => {}
        }
    }
    let loc = loc.ok_or("external data without a location")?;
    let rel = Path::new(&loc);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("external data location {loc:?} must be a plain relative path inside the model's folder"));
    }
    let full = dir.join(rel);
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
