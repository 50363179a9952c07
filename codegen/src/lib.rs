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
//!
//! Workgroup memory: a kernel writes every `var<workgroup>` cell it reads before it reads it
//! (behind a `workgroupBarrier`), so that nothing depends on its initial contents. The
//! runtime relies on it to skip wgpu's zero-fill on GL, whose GLSL makes Mesa's llvmpipe
//! compile a kernel ten times slower.

#![warn(missing_docs)]
// Alignment tests read `n % 4 == 0`, as the WGSL they choose between does; clippy asks for
// `is_multiple_of` since the MSRV passed 1.87.
#![allow(clippy::manual_is_multiple_of)]

mod elementwise;
mod layout;
pub mod proj;
mod select;
pub mod tune;
mod wgsl;

pub use layout::copy_kernel;
/// The naga this crate validates with ([`Target::caps`] is naga's), re-exported so that
/// users name the same version.
pub use naga;
pub use proj::gemm_tiled::Tiles;
pub use select::node_kernels;

use glufuse_ir::shape::{concrete, Bindings};
use glufuse_ir::*;
use glufuse_ir::{Error, Graph, Result};
use std::fmt;

/// What kind of kernel a [`KernelSource`] is. [`fmt::Display`] gives the name the manifest
/// and the benchmark print (`elementwise`, `fused-gate-up-gemv-kn`, `matmul-gemm`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelKind {
    /// A unary or binary elementwise op.
    Elementwise,
    /// A cast.
    Cast,
    /// A transpose.
    Transpose,
    /// A slice (or one output of a split).
    Slice,
    /// A concat.
    Concat,
    /// A `MatMul` with a right operand of rank above 2.
    BatchedMatmul,
    /// A projection: `x·W` (a `MatMul` with a 2-D weight) or, `fused`, the gated unit.
    Projection {
        /// The fused gated unit rather than a plain `x·W`.
        fused: bool,
        /// Which projection kernel.
        kernel: ProjKernel,
    },
    /// A plain copy of a buffer (the benchmark's bandwidth yardstick).
    Copy,
}

/// The projection kernels ([`proj`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProjKernel {
    /// The scalar template, for a weight layout.
    Scalar(Layout),
    /// A decode GEMV, for a weight layout.
    Gemv(Layout),
    /// The prefill GEMM for unaligned shapes.
    GemmUnaligned,
    /// The tiled prefill GEMM (its tiling can be tuned: [`tune`]).
    GemmTiled,
}

impl KernelKind {
    /// Whether the kernel is the tiled prefill GEMM, whose tiling [`tune`] chooses.
    pub fn is_tiled_gemm(self) -> bool {
        matches!(self, KernelKind::Projection { kernel: ProjKernel::GemmTiled, .. })
    }
}

impl fmt::Display for KernelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = |l: &Layout| match l {
            Layout::Kn => "kn",
            Layout::Nk => "nk",
        };
        match self {
            KernelKind::Elementwise => f.write_str("elementwise"),
            KernelKind::Cast => f.write_str("cast"),
            KernelKind::Transpose => f.write_str("transpose"),
            KernelKind::Slice => f.write_str("slice"),
            KernelKind::Concat => f.write_str("concat"),
            KernelKind::BatchedMatmul => f.write_str("batched-matmul"),
            KernelKind::Copy => f.write_str("copy"),
            KernelKind::Projection { fused, kernel } => {
                f.write_str(if *fused { "fused-gate-up" } else { "matmul" })?;
                match kernel {
                    ProjKernel::Scalar(l) => write!(f, "-{}", layout(l)),
                    ProjKernel::Gemv(l) => write!(f, "-gemv-{}", layout(l)),
                    ProjKernel::GemmUnaligned => f.write_str("-gemm-unaligned"),
                    ProjKernel::GemmTiled => f.write_str("-gemm"),
                }
            }
        }
    }
}

/// One buffer a kernel binds, in binding order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The graph value bound.
    pub value: Value,
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
    /// What kind of kernel it is.
    pub kind: KernelKind,
    /// The WGSL module.
    pub wgsl: String,
    /// Buffers, in binding order (inputs, then the output).
    pub bindings: Vec<Binding>,
    /// Workgroups to dispatch (x, y, z).
    pub workgroups: [u32; 3],
    /// Threads per workgroup: the product of the WGSL's `@workgroup_size`.
    pub workgroup_size: u32,
}

/// A validated kernel, ready for the runtime.
#[derive(Clone, Debug)]
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

/// The manifest of `glufuse wgsl`: each kernel's file, kind, bindings (values named as `g`
/// names them) and dispatch size. `kernels` must have been generated for `g`.
pub fn manifest(g: &Graph, kernels: &[Kernel]) -> serde_json::Value {
    let ks: Vec<serde_json::Value> = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let s = k.source();
            serde_json::json!({
                "file": file_name(i, &s.name),
                "node": s.name,
                "kind": s.kind.to_string(),
                "bindings": s.bindings.iter().map(|b| serde_json::json!({
                    "value": g.value_name(b.value),
                    "write": b.write,
                    "packed_f16": b.packed_f16,
                })).collect::<Vec<_>>(),
                "workgroups": s.workgroups,
                "workgroup_size": s.workgroup_size,
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
