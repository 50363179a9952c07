//! glufuse-codegen: WGSL code generation, one compute kernel per executable node (per
//! output, for `Split`) with every size baked in as a constant, and the naga validation step.
//! It builds on glufuse-ir only; the runtime executes what it returns.
//!
//! A [`Kernel`] can only be made by [`validate`]: it parses the WGSL with naga and validates
//! the module with the capabilities of the device it will run on, so an unvalidated module
//! cannot reach the runtime. A module that fails is a codegen bug; the error carries the WGSL
//! source and naga's rendered diagnostic.
//!
//! Laid out by kernel family: `wgsl.rs` (the writer's shared pieces), `elementwise.rs`
//! (unary, binary, cast; the activations' WGSL), `layout.rs` (index mapping), [`proj`] (the
//! projections: scalar template, GEMVs, unaligned and tiled GEMMs, batched matmul), and
//! `select.rs`, where the kernel of every node is chosen ([`node_kernels`]).
//!
//! Storage: every value lives in an `array<f32>`, except f16 weights, which are uploaded as
//! packed pairs in an `array<u32>` and widened with `unpack2x16float` (core WGSL: no device
//! feature needed). Math is f32 throughout; projections accumulate in f32.

mod elementwise;
mod layout;
pub mod proj;
mod select;
mod wgsl;

pub use proj::gemm_tiled::Tiles;
pub use select::node_kernels;
pub use wgsl::{grid, WORKGROUP};

use glufuse_ir::shape::{concrete, Bindings};
use glufuse_ir::*;
use glufuse_ir::{Error, Graph, Result};

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
    pub gemm_tiles: Option<Tiles>,
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
