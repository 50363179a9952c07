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
//! (unary, binary, `Where`, cast; the activations' WGSL), `program.rs` (elementwise programs:
//! those ops strung together, per element or per row with reductions), `layout.rs` (index mapping:
//! transpose, expand, slice, split, concat), `index.rs` (gather, GatherND, range), `reduce.rs`
//! (reductions, softmax, cumulative sums), `norm.rs` (layer normalisation), [`proj`] (the
//! projections: scalar template, GEMVs, unaligned and tiled GEMMs, batched matmul), and
//! `select.rs`, where the kernel of every node is chosen ([`node_kernels`]).
//!
//! # GPU representation
//!
//! Every element is one 32-bit word:
//!
//! | dtype | WGSL storage | notes |
//! | --- | --- | --- |
//! | `f32` | `array<f32>` | |
//! | `f16` | `array<f32>`; weights `array<u32>` | weights packed two to a word, widened with `unpack2x16float` (core WGSL, no device feature); activations are f32 rounded to f16 where the graph casts to f16, as the interpreter holds them |
//! | `i64`, `i32` | `array<i32>` | converted on upload and readback by the runtime, with a checked error for a value outside i32's range; constants checked when the executable is made |
//! | `bool` | `array<u32>` | 0 or 1 |
//!
//! Float math is f32 throughout (projections and reductions accumulate in f32, where the
//! interpreter uses f64). **Integer arithmetic in kernels is 32-bit**: on i32 values it wraps
//! at 32 bits as the interpreter does; on i64 values an add, subtract, multiply, negation,
//! sum or finite float-to-integer cast whose result would not fit 32 bits is a run-time error
//! (see below), never a silently wrapped value. An infinite float cast to i64 saturates to
//! i32's range (the interpreter to i64's): T5's relative position buckets cast `log(0)` and
//! discard it with a `Where`.
//!
//! # Run-time checks
//!
//! What a kernel can only know from the data it reads — an index outside its axis (`Gather`,
//! `GatherND`), an integer division by zero, an i64 result past 32 bits — is checked in the
//! kernel: the bad element is never read (the kernel writes 0 instead) and the first failure
//! is recorded in the kernel's error words (binding `err`, after its other bindings). Each
//! [`KernelSource`] lists its [`Check`]s; the runtime reads the words back with the outputs
//! and turns a recorded failure into an error naming the node, the value and the valid range
//! ([`Check::error`]), in place of the outputs.
//!
//! Sizes are baked into the WGSL as constants, so two nodes of the same shape (the layers of
//! a model) get the same text: the runtime caches pipelines by it.

mod elementwise;
mod index;
mod layout;
mod norm;
mod program;
pub mod proj;
mod reduce;
mod select;
pub mod tune;
mod wgsl;

pub use layout::copy_kernel;
pub use proj::gemm_tiled::Tiles;
pub use select::node_kernels;
pub use wgsl::ERROR_WORDS;

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
    /// An elementwise program: several elementwise ops in one kernel.
    Program,
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
    /// `Where`.
    Where,
    /// An expand (broadcast).
    Expand,
    /// A gather or GatherND.
    Gather,
    /// A range.
    Range,
    /// A reduction (mean, sum, max) over axes, one workgroup per output.
    Reduce,
    /// A softmax, one workgroup per lane.
    Softmax,
    /// A cumulative sum, one workgroup per lane.
    CumSum,
    /// A layer normalisation, one workgroup per row.
    LayerNorm,
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
            KernelKind::Program => f.write_str("elementwise-program"),
            KernelKind::Cast => f.write_str("cast"),
            KernelKind::Transpose => f.write_str("transpose"),
            KernelKind::Slice => f.write_str("slice"),
            KernelKind::Concat => f.write_str("concat"),
            KernelKind::BatchedMatmul => f.write_str("batched-matmul"),
            KernelKind::Copy => f.write_str("copy"),
            KernelKind::Where => f.write_str("where"),
            KernelKind::Expand => f.write_str("expand"),
            KernelKind::Gather => f.write_str("gather"),
            KernelKind::Range => f.write_str("range"),
            KernelKind::Reduce => f.write_str("reduce"),
            KernelKind::Softmax => f.write_str("softmax"),
            KernelKind::CumSum => f.write_str("cumsum"),
            KernelKind::LayerNorm => f.write_str("layer-norm"),
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
    /// What the kernel checks at run time, by site (site `k + 1` in its error words is
    /// `checks[k]`). Non-empty means the kernel binds its error words after `bindings`.
    pub checks: Vec<Check>,
}

/// A condition a kernel checks at run time (see the crate documentation).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Check {
    /// The node checked, by its model name.
    pub node: String,
    /// What is checked.
    pub kind: CheckKind,
}

/// What a [`Check`] checks.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// An index read from data lies within an axis (negative indices counting from its end).
    Index {
        /// The axis' size.
        size: usize,
        /// What the axis holds, in words (`rows`, `elements along axis 1`).
        what: String,
        /// The graph input the indices come from (through casts and views), if any.
        indices_from: Option<String>,
        /// The graph input the data indexed come from (through casts and views), if any: an
        /// index past a mask's end is the mask's fault.
        data_from: Option<String>,
    },
    /// An integer divisor is not zero.
    DivisionByZero,
    /// An i64 result fits the 32 bits the GPU computes integers in.
    Overflow,
}

impl Check {
    /// The error of this check failing on `value` at output element `at`: an index out of
    /// range or a division by zero is bad input (naming the node and, where the indices come
    /// from one, the graph input); an i64 result past 32 bits is a limit of the GPU.
    pub fn error(&self, value: i32, at: u32) -> Error {
        match &self.kind {
            CheckKind::Index { size, what, indices_from, data_from } => {
                let from = match (indices_from, data_from) {
                    (Some(i), None) => format!(" (input '{i}')"),
                    (None, Some(d)) => format!(" (the data come from input '{d}')"),
                    (Some(i), Some(d)) => format!(" (the indices come from input '{i}', the data from input '{d}')"),
                    (None, None) => String::new(),
                };
                let valid = if *size == 0 {
                    "the axis is empty".to_string()
                } else {
                    format!("valid: {} to {}", -(*size as i64), size - 1)
                };
                Error::graph(
                    &self.node,
                    format!("index {value} is out of range for {size} {what}{from}; {valid}"),
                )
            }
            CheckKind::DivisionByZero => {
                Error::graph(&self.node, format!("integer division by zero (output element {at})"))
            }
            CheckKind::Overflow => Error::Gpu(format!(
                "node '{}': an i64 result (output element {at}) does not fit the 32 bits the GPU computes integers in (it wrapped to {value}); the CPU interpreter computes it in 64 bits",
                self.node
            )),
        }
    }
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
                "checks": s.checks.len(),
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
