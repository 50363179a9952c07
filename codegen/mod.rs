//! WGSL code generation: one compute kernel per executable node (per output, for `Split`),
//! with every size baked in as a constant, and the naga validation step.
//!
//! A [`Kernel`] can only be made by [`validate`]: it parses the WGSL with naga and validates
//! the module with the capabilities of the device it will run on, so an unvalidated module
//! cannot reach the runtime. A module that fails is a codegen bug; the error carries the WGSL
//! source and naga's rendered diagnostic.
//!
//! Storage: every value lives in an `array<f32>`, except f16 weights, which are uploaded as
//! packed pairs in an `array<u32>` and widened with `unpack2x16float` (core WGSL: no device
//! feature needed). Math is f32 throughout; projections accumulate in f32.

mod elementwise;
pub mod fast;
pub mod gemm;
mod proj;

use crate::ir::*;
use crate::shape::{concrete, Bindings};
use crate::{Error, Graph, Result};
use std::fmt::Write;

/// Threads per workgroup of every kernel.
pub const WORKGROUP: u32 = 256;

/// One buffer a kernel binds, in binding order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Binding {
    /// The graph value (as `node` or `node:k`).
    pub value: String,
    /// Written by the kernel.
    pub write: bool,
    /// Stored as packed f16 pairs.
    pub packed_f16: bool,
}

/// A kernel before validation.
#[derive(Clone, Debug)]
pub struct KernelSource {
    /// The node (and output) it computes.
    pub name: String,
    /// What kind of kernel it is (`elementwise`, `gemv-kn`, `fused-gate-up-nk`, ...).
    pub kind: String,
    /// The WGSL module.
    pub wgsl: String,
    /// Buffers, in binding order (inputs, then the output).
    pub bindings: Vec<Binding>,
    /// Workgroups to dispatch (x, y, z).
    pub workgroups: [u32; 3],
}

/// A validated kernel, ready for the runtime.
#[derive(Debug)]
pub struct Kernel {
    src: KernelSource,
}

impl Kernel {
    /// The source it was validated from.
    pub fn source(&self) -> &KernelSource {
        &self.src
    }
}

/// Error of a module that naga rejects (a glufuse bug).
#[derive(Debug, thiserror::Error)]
#[error("kernel '{name}' fails naga validation (a glufuse bug):\n{diagnostic}\n--- WGSL ---\n{wgsl}")]
pub struct ValidationError {
    /// The kernel.
    pub name: String,
    /// naga's rendered diagnostic.
    pub diagnostic: String,
    /// The source.
    pub wgsl: String,
}

/// Parses and validates a kernel with naga under the given capabilities.
pub fn validate(src: KernelSource, caps: naga::valid::Capabilities) -> Result<Kernel> {
    let fail = |diagnostic: String| {
        Error::Internal(ValidationError { name: src.name.clone(), diagnostic, wgsl: src.wgsl.clone() }.to_string())
    };
    let module = naga::front::wgsl::parse_str(&src.wgsl).map_err(|e| fail(e.emit_to_string(&src.wgsl)))?;
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    if caps.contains(naga::valid::Capabilities::SUBGROUP) {
        validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(
            naga::valid::SubgroupOperationSet::BASIC | naga::valid::SubgroupOperationSet::ARITHMETIC,
        );
    }
    validator.validate(&module).map_err(|e| fail(e.emit_to_string(&src.wgsl)))?;
    Ok(Kernel { src })
}

/// Whether a value is stored on the GPU as packed f16 (f16 weights only).
pub fn packed_f16(g: &Graph, v: Value) -> bool {
    let n = g.node(v.node);
    matches!(n.op, Op::Weight(_)) && n.outputs[v.output].dtype == DType::F16
}

/// Concrete dims of a value.
pub fn dims(g: &Graph, v: Value, b: &Bindings) -> Result<Vec<usize>> {
    concrete(&g.ty(v).shape, b).map_err(|m| Error::graph(&g.node(v.node).name, m))
}

/// Splits `groups` workgroups over x and y so that neither exceeds `max_per_dim`.
pub fn grid(groups: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = max_per_dim.max(1) as u64;
    if groups <= max {
        return Ok([groups.max(1) as u32, 1, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::Gpu(format!("{groups} workgroups exceed the device's 2-D dispatch limit")));
    }
    Ok([max as u32, y as u32, 1])
}

/// The header every kernel starts with: bindings, then the entry point's signature. `body`
/// sees `gid` (linear workgroup index) and `lid` (thread index in the workgroup).
pub(crate) fn module(bindings: &[(String, bool, bool)], workgroup: u32, prelude: &str, body: &str) -> String {
    module_with(bindings, workgroup, prelude, body, "")
}

/// [`module`] with extra entry-point parameters (`extra` starts with `, `), e.g. subgroup
/// builtins.
pub(crate) fn module_with(
    bindings: &[(String, bool, bool)],
    workgroup: u32,
    prelude: &str,
    body: &str,
    extra: &str,
) -> String {
    let mut s = String::new();
    for (i, (name, write, packed)) in bindings.iter().enumerate() {
        let access = if *write { "read_write" } else { "read" };
        let elem = if *packed { "u32" } else { "f32" };
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, {access}> {name}: array<{elem}>;");
    }
    s.push_str(prelude);
    let _ = write!(
        s,
        "\n@compute @workgroup_size({workgroup})\nfn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32{extra}) {{\n    let gid = wg.x + wg.y * nwg.x;\n{body}}}\n"
    );
    s
}

/// WGSL for the activations and helpers kernels share.
pub(crate) const MATH: &str = r#"
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu_(x: f32) -> f32 { return x / (1.0 + exp(-x)); }
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
fn erf_(x: f32) -> f32 {
    // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return select(-y, y, x >= 0.0);
}
fn gelu_tanh_(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn gelu_erf_(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }
fn relu_(x: f32) -> f32 { return max(x, 0.0); }
fn round_f16_(x: f32) -> f32 { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }
"#;

/// The WGSL call applying an activation to `x`.
pub(crate) fn act_call(a: Activation, x: &str) -> String {
    format!("{}_({x})", a.name())
}

/// Options of code generation: the device's limits and capabilities.
#[derive(Clone, Debug)]
pub struct Target {
    /// naga capabilities of the device.
    pub caps: naga::valid::Capabilities,
    /// Largest workgroup count per dispatch dimension.
    pub max_workgroups_per_dim: u32,
    /// Largest storage buffer binding in bytes.
    pub max_binding_bytes: u64,
    /// Workgroup memory one kernel may declare, in bytes.
    pub max_workgroup_storage_bytes: u32,
    /// Forces the tiling of the aligned prefill GEMM (tests, tuning); `None` picks per shape.
    pub gemm_tiles: Option<gemm::Tiles>,
    /// The subgroup size, where the device has subgroup operations in compute shaders and
    /// runs every subgroup at this one size; `None` keeps reductions in workgroup memory.
    pub subgroup_size: Option<u32>,
}

impl Default for Target {
    /// WebGPU's default limits and core capabilities (`pack2x16float` and kin included).
    fn default() -> Self {
        Target {
            caps: naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32,
            max_workgroups_per_dim: 65535,
            max_binding_bytes: 128 << 20,
            max_workgroup_storage_bytes: 16384,
            gemm_tiles: None,
            subgroup_size: None,
        }
    }
}

/// Bytes a value occupies on the GPU.
pub fn gpu_bytes(g: &Graph, v: Value, b: &Bindings) -> Result<u64> {
    let n: u64 = dims(g, v, b)?.iter().map(|&d| d as u64).product();
    Ok(if packed_f16(g, v) { n.div_ceil(2) * 4 } else { n * 4 })
}

/// Generates (unvalidated) kernels for one node; empty for sources and views (`Reshape`).
pub fn node_kernels(
    g: &Graph,
    n: petgraph::stable_graph::NodeIndex,
    b: &Bindings,
    t: &Target,
) -> Result<Vec<KernelSource>> {
    let node = g.node(n);
    let too_big = |v: Value| -> Result<()> {
        let bytes = gpu_bytes(g, v, b)?;
        let elems: u64 = dims(g, v, b)?.iter().map(|&d| d as u64).product();
        if bytes > t.max_binding_bytes || elems > u32::MAX as u64 {
            return Err(Error::Gpu(format!(
                "value '{}' needs {bytes} bytes, more than this device binds in one buffer ({} bytes)",
                g.value_name(v),
                t.max_binding_bytes
            )));
        }
        Ok(())
    };
    for v in g.inputs(n) {
        too_big(v)?;
    }
    for k in 0..node.outputs.len() {
        too_big(Value { node: n, output: k })?;
    }
    // Every value on the GPU is an f32 array so far: integer and boolean values (token ids,
    // positions, masks) have no kernels yet.
    let tys = g.inputs(n).into_iter().map(|v| g.ty(v).clone()).chain(node.outputs.iter().cloned());
    if let Some(t) = tys.into_iter().find(|t| !t.dtype.is_float()) {
        return Err(no_kernel_yet(node, &format!("on {} values", t.dtype)));
    }
    match &node.op {
        Op::Input | Op::Weight(_) | Op::Constant(_) | Op::Reshape { .. } => Ok(vec![]),
        Op::Opaque { op_type, .. } => Err(Error::graph(
            &node.name,
            format!("opaque op '{op_type}' cannot run on the GPU: glufuse has no kernel for it"),
        )),
        Op::MatMul => {
            let ins = g.inputs(n);
            if g.ty(ins[1]).rank() == 2 {
                Ok(vec![proj::matmul(g, n, b, t)?])
            } else {
                Ok(vec![elementwise::batched_matmul(g, n, b, t)?])
            }
        }
        Op::FusedGateUp(_) => Ok(vec![proj::fused(g, n, b, t)?]),
        Op::Unary(_) | Op::Binary(_) | Op::Cast { .. } | Op::Transpose { .. } | Op::Concat { .. } => {
            elementwise::kernels(g, n, b, t)
        }
        Op::Slice { .. } | Op::Split { .. } => elementwise::kernels(g, n, b, t),
        Op::SymConstant(_)
        | Op::Where
        | Op::Reduce { .. }
        | Op::Softmax { .. }
        | Op::CumSum { .. }
        | Op::LayerNorm { .. }
        | Op::Gather { .. }
        | Op::GatherND { .. }
        | Op::Range { .. }
        | Op::Expand { .. } => Err(no_kernel_yet(node, "")),
    }
}

/// The error for a node no kernel is written for yet.
fn no_kernel_yet(node: &Node, what: &str) -> Error {
    let what = if what.is_empty() { String::new() } else { format!(" {what}") };
    Error::graph(&node.name, format!("no GPU kernel yet for {}{what} (the CPU interpreter runs it)", node.op.name()))
}

/// Generates and validates every kernel of a graph, in execution order.
pub fn generate(g: &Graph, b: &Bindings, t: &Target) -> Result<Vec<Kernel>> {
    let mut out = vec![];
    for n in g.topo_order()? {
        for k in node_kernels(g, n, b, t)? {
            out.push(validate(k, t.caps)?);
        }
    }
    Ok(out)
}

/// The manifest of `glufuse wgsl`: each kernel's file, bindings and dispatch size.
pub fn manifest(kernels: &[Kernel]) -> serde_json::Value {
    let ks: Vec<serde_json::Value> = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let s = k.source();
            serde_json::json!({
                "file": file_name(i, &s.name),
                "node": s.name,
                "kind": s.kind,
                "bindings": s.bindings,
                "workgroups": s.workgroups,
                "workgroup_size": WORKGROUP,
            })
        })
        .collect();
    serde_json::json!({ "kernels": ks })
}

/// The file name of kernel `i` in `glufuse wgsl` output.
pub fn file_name(i: usize, name: &str) -> String {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '_' }).collect();
    format!("{i:03}_{clean}.wgsl")
}
