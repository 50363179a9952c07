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
//! transpose, expand, slice, split, concat), `index.rs` (gather, GatherND, the scatters,
//! range), `reduce.rs`
//! (reductions, softmax, cumulative sums), `norm.rs` (layer normalisation), [`proj`] (the
//! projections: scalar template, GEMVs, unaligned and tiled GEMMs, batched matmul), and
//! `select.rs`, where the kernel of every node is chosen ([`node_kernels`]).
//!
//! One node, one kernel, with one exception: [`generate`] folds a row program (a norm, with
//! the residual addition before it) into the `[K, N]` decode GEMV that is its only reader,
//! which computes the program's row reductions before its main loop and its values as it
//! reads x (`program::Prologue`); the program's node then has no kernel, the GEMV's choice
//! says so, and the runtime keeps the program's inputs alive until the GEMV ran.
//!
//! # GPU representation
//!
//! Every element is one 32-bit word:
//!
//! | dtype | WGSL storage | notes |
//! | --- | --- | --- |
//! | `f32` | `array<f32>` | |
//! | `f16` | `array<f32>`; weights `array<u32>` | weights packed two to a word, widened with `unpack2x16float` (core WGSL, no device feature); activations are f32 rounded to f16 where the graph casts to f16 (on the bits, ties to even: `round_f16_`), as the interpreter holds them, but for those only cooperative-matrix GEMMs read, as x, and for graph outputs no node reads (written by a row program or an unsplit cooperative GEMM), packed as weights are ([`packed_activation`]) |
//! | `i64`, `i32` | `array<i32>` | converted on upload and readback by the runtime, with a checked error for a value outside i32's range; constants checked when they are uploaded with the weights |
//! | `bool` | `array<u32>` | 0 or 1 |
//!
//! Float math is f32 throughout (projections and reductions accumulate in f32, where the
//! interpreter uses f64), except on cooperative matrices ([`proj::coop`]): there the products
//! are of f16 values (x and the weights rounded to f16 while staging), still summed in f32,
//! which the [`MatmulPrecision`] of the [`Target`] allows (by default for f16 weights only). **Integer arithmetic in kernels is 32-bit**: on i32 values it wraps
//! at 32 bits as the interpreter does; on i64 values an add, subtract, multiply, negation,
//! sum or finite float-to-integer cast whose result would not fit 32 bits is a run-time error
//! (see below), never a silently wrapped value. An infinite float cast to i64 saturates to
//! i32's range (the interpreter to i64's): T5's relative position buckets cast `log(0)` and
//! discard it with a `Where`.
//!
//! # Run-time checks
//!
//! What a kernel can only know from the data it reads — an index outside its axis (`Gather`,
//! `GatherND`, the scatters), two updates of a scatter naming one place, an integer division
//! by zero, an i64 result past 32 bits — is checked in the kernel: the bad element is never
//! read (the kernel writes 0 instead; a scatter writes nothing there) and the first failure
//! is recorded in the kernel's error words (binding `err`, after its other bindings). Each
//! [`KernelSource`] lists its [`Check`]s; the runtime reads the words back with the outputs
//! and turns a recorded failure into an error naming the node, the value and the valid range
//! ([`Check::error`]), in place of the outputs.
//!
//! Sizes are baked into the WGSL as constants, so two nodes of the same shape (the layers of
//! a model) get the same code: the runtime caches pipelines by it ([`KernelSource::code`]: the
//! WGSL without the choice comment, which changes nothing the device runs).
//!
//! Every projection kernel carries its [`Choice`]: which kernel, and why (what the target
//! offers, the shape, the precision), as data in [`KernelSource::choice`], in the manifest and
//! as the first line of its WGSL ([`KernelSource::code`] is the WGSL without it).
//!
//! # Workgroup memory
//!
//! A kernel writes every `var<workgroup>` cell it reads before it reads it (behind a
//! `workgroupBarrier`), so that nothing depends on its initial contents. The runtime relies
//! on it to skip wgpu's zero-fill on GL, whose GLSL makes Mesa's llvmpipe compile a kernel
//! ten times slower.

#![warn(missing_docs)]
// Alignment tests read `n % 4 == 0`, as the WGSL they choose between does; clippy asks for
// `is_multiple_of` since the MSRV passed 1.87.
#![allow(clippy::manual_is_multiple_of)]

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

pub use index::scatter_in_place;
pub use layout::copy_kernel;
/// The naga this crate validates with ([`Target::caps`] is naga's), re-exported so that
/// users name the same version.
pub use naga;
pub use proj::coop::{CoopClass, CoopTile};
pub use proj::gemm_tiled::Tiles;
pub use proj::q4::Q4Unpack;
pub use select::{node_kernels, packed_activation};
pub use wgsl::ERROR_WORDS;
pub use wgsl::{round_f16_in_place, PACK_PROBE, ROUND_F16_WORKGROUP};

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
    /// A fused attention: scores, softmax and the weighted sum of values in one kernel.
    Attention,
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
    /// A mixture of experts' batched `MatMul` for many pairs, grouped by expert.
    GroupedMatmul,
    /// A `FusedGateUp` with a matrix per row of x (a mixture of experts' gated unit), lanes
    /// along k per output.
    FusedExperts,
    /// A `FusedGateUp` with a matrix per row of x for many pairs, grouped by expert.
    FusedExpertsGrouped,
    /// A projection: `x·W` (a `MatMul` with a 2-D weight) or, `fused`, the gated unit.
    Projection {
        /// The fused gated unit rather than a plain `x·W`.
        fused: bool,
        /// Which projection kernel.
        kernel: ProjKernel,
    },
    /// A plain copy of a buffer (the benchmark's bandwidth yardstick; a scatter's first
    /// kernel, which also clears its flags).
    Copy,
    /// `Where`.
    Where,
    /// An expand (broadcast).
    Expand,
    /// A gather or GatherND.
    Gather,
    /// A scatter's second kernel (ScatterND, ScatterElements): the updates written over the
    /// copy of the data that a [`KernelKind::Copy`] made.
    Scatter,
    /// A range.
    Range,
    /// A reduction (mean, sum, max) over axes, one workgroup per output.
    Reduce,
    /// A softmax, one workgroup per lane.
    Softmax,
    /// A cumulative sum, one workgroup per lane.
    CumSum,
    /// A top-K selection (values and indices), one workgroup per lane.
    TopK,
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
    /// The prefill GEMM on cooperative matrices ([`proj::coop`]).
    Coop,
    /// The second pass of a split-K GEMV: adds up the partial sums, applies the epilogue.
    SplitSum,
    /// The decode GEMV over 4-bit weights ([`proj::q4`]).
    GemvQ4,
    /// The prefill GEMM over 4-bit weights without cooperative matrices ([`proj::q4`]).
    GemmQ4,
}

impl KernelKind {
    /// Whether the kernel is the tiled prefill GEMM, whose tiling [`tune`] chooses.
    pub fn is_tiled_gemm(self) -> bool {
        matches!(self, KernelKind::Projection { kernel: ProjKernel::GemmTiled, .. })
    }

    /// The family `glufuse bench MODEL` sums the kernel's time under: `gemv` (decode
    /// projections, fused or not, split-K sums included), `gemm` (prefill projections), `coop-gemm` (prefill
    /// projections on cooperative matrices), `proj-scalar` (the
    /// projections' scalar template), `matmul` (batched: attention's
    /// products, a mixture of experts', its fused gated units included), `elementwise` (unary, binary, `Where`, casts), `norm` (reductions and layer
    /// normalisation), `topk` (top-K selections), `softmax`, `program` (elementwise programs: merged chains, norms,
    /// rotary embeddings, KV-cache writes), `attention` (fused attentions), `gather` (gathers,
    /// scatters and ranges), `layout` (transpose, slice, concat, expand, copies).
    pub fn family(self) -> &'static str {
        match self {
            KernelKind::Projection {
                kernel: ProjKernel::Gemv(_) | ProjKernel::SplitSum | ProjKernel::GemvQ4, ..
            } => "gemv",
            KernelKind::Projection { kernel: ProjKernel::Scalar(_), .. } => "proj-scalar",
            KernelKind::Projection {
                kernel: ProjKernel::GemmUnaligned | ProjKernel::GemmTiled | ProjKernel::GemmQ4,
                ..
            } => "gemm",
            KernelKind::Projection { kernel: ProjKernel::Coop, .. } => "coop-gemm",
            KernelKind::BatchedMatmul
            | KernelKind::GroupedMatmul
            | KernelKind::FusedExperts
            | KernelKind::FusedExpertsGrouped => "matmul",
            KernelKind::Elementwise | KernelKind::Cast | KernelKind::Where => "elementwise",
            KernelKind::Reduce | KernelKind::CumSum | KernelKind::LayerNorm => "norm",
            KernelKind::Softmax => "softmax",
            KernelKind::TopK => "topk",
            KernelKind::Program => "program",
            KernelKind::Attention => "attention",
            KernelKind::Gather | KernelKind::Scatter | KernelKind::Range => "gather",
            KernelKind::Transpose | KernelKind::Slice | KernelKind::Concat | KernelKind::Expand | KernelKind::Copy => {
                "layout"
            }
        }
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
            KernelKind::Attention => f.write_str("attention"),
            KernelKind::Cast => f.write_str("cast"),
            KernelKind::Transpose => f.write_str("transpose"),
            KernelKind::Slice => f.write_str("slice"),
            KernelKind::Concat => f.write_str("concat"),
            KernelKind::BatchedMatmul => f.write_str("batched-matmul"),
            KernelKind::GroupedMatmul => f.write_str("grouped-matmul"),
            KernelKind::FusedExperts => f.write_str("fused-gate-up-experts"),
            KernelKind::FusedExpertsGrouped => f.write_str("fused-gate-up-grouped"),
            KernelKind::Copy => f.write_str("copy"),
            KernelKind::Where => f.write_str("where"),
            KernelKind::Expand => f.write_str("expand"),
            KernelKind::Gather => f.write_str("gather"),
            KernelKind::Scatter => f.write_str("scatter"),
            KernelKind::Range => f.write_str("range"),
            KernelKind::Reduce => f.write_str("reduce"),
            KernelKind::Softmax => f.write_str("softmax"),
            KernelKind::CumSum => f.write_str("cumsum"),
            KernelKind::TopK => f.write_str("topk"),
            KernelKind::LayerNorm => f.write_str("layer-norm"),
            KernelKind::Projection { fused, kernel } => {
                f.write_str(if *fused { "fused-gate-up" } else { "matmul" })?;
                match kernel {
                    ProjKernel::Scalar(l) => write!(f, "-{}", layout(l)),
                    ProjKernel::Gemv(l) => write!(f, "-gemv-{}", layout(l)),
                    ProjKernel::GemmUnaligned => f.write_str("-gemm-unaligned"),
                    ProjKernel::GemmTiled => f.write_str("-gemm"),
                    ProjKernel::Coop => f.write_str("-coop"),
                    ProjKernel::SplitSum => f.write_str("-split-sum"),
                    ProjKernel::GemvQ4 => f.write_str("-gemv-q4"),
                    ProjKernel::GemmQ4 => f.write_str("-gemm-q4"),
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

/// Why a node got its kernel: the kernel (with its tiling, where it has one) and the reason.
/// [`fmt::Display`] gives `kernel: reason`, as the manifest and the benchmark print it, e.g.
/// `coop 128x128x32w2x4s1: adapter has 16x16x16 f16×f16→f32, f16 weights, M=512`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The kernel chosen (`coop 128x128x32w2x4s1`, `gemm 8x8x8`, `gemv-kn`, ...).
    pub kernel: String,
    /// Why it, and why not the faster kernels it was preferred to.
    pub reason: String,
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kernel, self.reason)
    }
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
    /// Which kernel was chosen for the node and why (projections; `None` where there is no
    /// choice to make).
    pub choice: Option<Choice>,
    /// Bytes of the scratch buffer the kernel binds after `bindings` (and before its error
    /// words), 0 for none: the partial sums of a split-K GEMV, written by its first kernel
    /// and read by its second ([`ProjKernel::SplitSum`]) or, in its place, by the one program
    /// reading the projection's output (a plain `MatMul`'s, where that program is the next
    /// kernel: see [`generate`]); or an attention's present keys with their positions last,
    /// written by its present-keys kernel and read by its rows kernel, the next one
    /// (`program::attention_kernels`). One buffer, of the largest size any kernel asks, serves
    /// every kernel of an executable (they run one after another).
    pub scratch_bytes: u64,
    /// Words of flags the kernel counts with atomics, bound after `bindings` (and the
    /// scratch buffer, if any) as `flag` and before its error words, 0 for none: a scatter's
    /// one flag per place, which tells two updates of one place apart. Each such kernel has a
    /// region of its own in the executable's flags buffer, which the runtime zeroes before
    /// every run.
    pub flag_words: u64,
}

impl KernelSource {
    /// The WGSL without the choice comment on its first line: the code the device compiles,
    /// to compare kernels whose choices are worded differently (a tiling chosen by default,
    /// forced or tuned).
    pub fn code(&self) -> &str {
        self.wgsl.strip_prefix("// choice: ").and_then(|r| r.split_once('\n')).map_or(&self.wgsl, |(_, code)| code)
    }

    /// The kernel with `c` as its choice: as data, and as the first line of its WGSL (in place
    /// of an earlier choice's).
    pub(crate) fn with_choice(mut self, c: Choice) -> KernelSource {
        self.wgsl = format!("// choice: {c}\n{}", self.code());
        self.choice = Some(c);
        self
    }
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
    /// A scatter writes each place once (ONNX's reduction `none`: two writes to one place
    /// would leave a result that depends on their order): the failing value is the flat index
    /// of the place among `dims`, the element the index (tuple) of the updates.
    Duplicate {
        /// The op (`ScatterND`, `ScatterElements`).
        op: String,
        /// What one index of the updates is, in words (`index tuple`, `element`).
        what: String,
        /// The dims the places are counted in: the data's first `k` for a `ScatterND` of
        /// tuples of `k`, all of them for a `ScatterElements`.
        dims: Vec<usize>,
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
            CheckKind::Duplicate { op, what, dims } => {
                let mut i = value as u32 as usize;
                let mut c = vec![0; dims.len()];
                for (a, &d) in dims.iter().enumerate().rev() {
                    if d > 0 {
                        c[a] = i % d;
                        i /= d;
                    }
                }
                let c: Vec<String> = c.iter().map(|x| x.to_string()).collect();
                Error::graph(
                    &self.node,
                    format!(
                        "{what} {at} of the indices writes data[{}], as another {what} does: {op} (reduction 'none') writes each place once, or the result would depend on the order",
                        c.join(", ")
                    ),
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
    check(&src, caps)?;
    Ok(Kernel { src })
}

/// [`validate`] on a borrowed kernel: the module parsed and validated, nothing kept.
fn check(src: &KernelSource, caps: naga::valid::Capabilities) -> Result<()> {
    let fail = |diagnostic: String| {
        Error::Internal(ValidationError { name: src.name.clone(), diagnostic, wgsl: src.wgsl.clone() }.to_string())
    };
    let module = naga::front::wgsl::parse_str(&src.wgsl).map_err(|e| fail(e.emit_to_string(&src.wgsl)))?;
    let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
    if caps.contains(naga::valid::Capabilities::SUBGROUP) {
        validator.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(
            naga::valid::SubgroupOperationSet::BASIC
                | naga::valid::SubgroupOperationSet::ARITHMETIC
                | naga::valid::SubgroupOperationSet::SHUFFLE,
        );
    }
    validator.validate(&module).map_err(|e| fail(e.emit_to_string(&src.wgsl)))?;
    Ok(())
}

/// Whether a value is stored on the GPU as packed f16 (f16 weights only).
pub fn packed_f16(g: &Graph, v: Value) -> bool {
    let n = g.node(v.node);
    matches!(n.op, Op::Weight(_)) && n.outputs[v.output].dtype == DType::F16
}

/// The `[N, K]` weight that a transposed-weight value stands for, where the projections
/// reading it bind the weight itself (in the `[N, K]` layout) and the transpose takes no
/// kernel and no buffer: `v` is a 2-D `Transpose` (perm `[1, 0]`) of a weight or constant,
/// not a graph output, read only as the weight (input 1) of `MatMul`s whose x has rank 2 or
/// more. A 4-bit weight behind such a transpose is read packed this way (it has no float
/// values on the GPU). This is the tied LM head (`MatMul(h, Transpose(embedding))`, the table also read by
/// the `Gather`): without it the table was transposed into a scratch buffer on every call.
pub fn nk_weight(g: &Graph, v: Value) -> Option<Value> {
    g.nk_weight(v)
}

/// Concrete dims of a value.
pub fn dims(g: &Graph, v: Value, b: &Bindings) -> Result<Vec<usize>> {
    let ty = g.ty(v);
    // Checked against the budget (an element count that overflows says so), so that every
    // size computed from these dims fits.
    let shape =
        concrete(&ty.shape, b).and_then(|s| glufuse_ir::limits::current().check_tensor(ty.dtype, &s).map(|()| s));
    shape.map_err(|m| Error::graph(&g.node(v.node).name, m))
}

/// Which products a projection may compute in f16. Either way the sums are f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MatmulPrecision {
    /// As the weights ask: f16 products for f16 weights (their values are f16 already; x is
    /// rounded to f16), f32 products for f32 weights.
    #[default]
    AsWeights,
    /// f32 products everywhere (f16 weights are widened to f32).
    F32,
    /// f16 products allowed for f32 weights too: x and the weights rounded to f16 (relative
    /// error 2^-11 each), multiplied exactly and summed in f32; the error bound is in the
    /// README ("Precision").
    F16,
}

impl fmt::Display for MatmulPrecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatmulPrecision::AsWeights => "as the weights",
            MatmulPrecision::F32 => "f32",
            MatmulPrecision::F16 => "f16",
        })
    }
}

/// An element type of a cooperative matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoopScalar {
    /// 16-bit float.
    F16,
    /// 32-bit float.
    F32,
    /// 32-bit signed integer.
    I32,
    /// 32-bit unsigned integer.
    U32,
}

/// A cooperative-matrix configuration a device offers: `C (M×N) += A (M×K) · B (K×N)`, A and
/// B of one element type, C and the result of another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopMatrix {
    /// Rows of A and C.
    pub m: u32,
    /// Columns of B and C.
    pub n: u32,
    /// Columns of A, rows of B.
    pub k: u32,
    /// Element type of A and B.
    pub ab: CoopScalar,
    /// Element type of C and the result.
    pub cr: CoopScalar,
}

impl CoopMatrix {
    /// The configuration glufuse's cooperative-matrix GEMM uses: 16×16×16, f16×f16→f32.
    pub const F16_F32_16: CoopMatrix = CoopMatrix { m: 16, n: 16, k: 16, ab: CoopScalar::F16, cr: CoopScalar::F32 };
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
    /// How many workgroups of the default tiled GEMM the device runs at once (compute units ×
    /// workgroups per unit), where known: wgpu reports no compute-unit count, so the runtime
    /// knows it only for the GPUs glufuse was measured on. The tiled GEMM's wave model uses
    /// it ([`proj::gemm_tiled::pick`]); `None` keeps the default tiling.
    pub gemm_wave: Option<u32>,
    /// The subgroup size, where the device has subgroup operations in compute shaders and
    /// runs every subgroup at this one size; `None` keeps reductions in workgroup memory.
    pub subgroup_size: Option<u32>,
    /// The cooperative-matrix configurations the device offers (empty: none). The
    /// cooperative-matrix GEMM needs [`CoopMatrix::F16_F32_16`], subgroups of 32 and
    /// naga's `COOPERATIVE_MATRIX` and `SHADER_FLOAT16` capabilities in `caps`.
    pub coop_matrix: Vec<CoopMatrix>,
    /// Writes the cooperative-matrix GEMM with its matrix operations emulated in plain WGSL
    /// (each lane computes its 8 cells of every 16×16 product) and chooses it as if the device offered 16×16×16
    /// f16×f16→f32: its staging, indexing and epilogue then run on any device with f16
    /// (tests, on lavapipe; slow, for small sizes).
    pub coop_emulate: bool,
    /// Forces the tiling of the cooperative-matrix GEMM (tests); `None` picks per shape.
    pub coop_tiles: Option<CoopTile>,
    /// Tilings of the cooperative-matrix GEMM by kind of projection (tuning; the runtime
    /// reads them from `GLUFUSE_COOP_TILES`): each used for its class where it fits the
    /// shape, else the default pick (the choice says so; a forced [`Target::coop_tiles`]
    /// that does not fit is refused instead); the other classes pick per shape.
    pub coop_class_tiles: Vec<(proj::coop::CoopClass, CoopTile)>,
    /// Which products may be f16 (the cooperative-matrix GEMM's).
    pub matmul_precision: MatmulPrecision,
    /// How the 4-bit kernels unpack their elements ([`proj::q4::Q4Unpack`]).
    pub q4_unpack: proj::q4::Q4Unpack,
    /// Forces the output features per 32 lanes of the 4-bit decode GEMV (1, 2 or 4; tuning);
    /// `None` picks per shape ([`proj::q4::gemv_cols`]).
    pub q4_cols: Option<usize>,
    /// Forces the parts of k a cooperative-matrix GEMM splits into (tests, tuning; used where
    /// it divides the GEMM's k steps, else no split); `None` picks per shape
    /// ([`proj::coop::split`]).
    pub coop_split: Option<usize>,
    /// Forces the parts of k the aligned prefill GEMM splits into (tests, tuning; at most one
    /// a step of k); `None` picks per shape ([`proj::gemm_tiled::split`]).
    pub gemm_split: Option<usize>,
    /// Forces the query rows an attention workgroup computes together (tests, tuning; used
    /// where it divides the queries and the scores of that many rows fit workgroup memory,
    /// else 1); `None` picks per shape.
    pub attention_rows: Option<usize>,
    /// Forces the chunks a decode-shaped attention splits each row's keys into, a workgroup a
    /// chunk and a second kernel combining them (tests, tuning): 1 for none, else at least
    /// that many (more where a chunk would have too many keys to load them up front), where
    /// the row's scores end in one softmax; `None` picks per shape.
    pub attention_chunks: Option<usize>,
    /// The device's `pack2x16float` rounds to the nearest f16, ties to even, past 65504 to
    /// infinity, and keeps NaN a NaN, as the host rounds f16 (the runtime tries it on the
    /// device: [`PACK_PROBE`]): a graph output stored as packed f16 then takes it,
    /// else the rounding on the bits ([`crate::packed_activation`]).
    pub pack_f16_rounds: bool,
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
            gemm_wave: None,
            subgroup_size: None,
            coop_matrix: vec![],
            coop_emulate: false,
            coop_tiles: None,
            coop_class_tiles: vec![],
            matmul_precision: MatmulPrecision::AsWeights,
            q4_unpack: proj::q4::Q4Unpack::Magic,
            q4_cols: None,
            coop_split: None,
            gemm_split: None,
            attention_rows: None,
            attention_chunks: None,
            pack_f16_rounds: false,
        }
    }
}

/// The words a source node is uploaded as, where codegen decides them: a 4-bit weight's
/// packed layout ([`proj::q4::upload_words`]); `None` for every other node (the runtime
/// uploads their values one word each).
pub fn source_words(node: &Node) -> Result<Option<Vec<u32>>> {
    let Op::QuantWeight(q) = &node.op else { return Ok(None) };
    let t = &node.outputs[0];
    let rc: Vec<usize> = t.shape.iter().filter_map(|d| d.fixed()).map(|d| d as usize).collect();
    let [rows, cols] = rc[..] else {
        return Err(Error::graph(&node.name, "a 4-bit weight must be 2-D with known dims"));
    };
    proj::q4::upload_words(q, rows, cols, t.dtype).map(Some)
}

/// Bytes a value occupies on the GPU, but for one stored as packed f16 after all
/// ([`packed_activation`], which depends on the target): that one takes half, as the runtime
/// sizes it.
pub fn gpu_bytes(g: &Graph, v: Value, b: &Bindings) -> Result<u64> {
    if let Op::QuantWeight(q) = &g.node(v.node).op {
        let d = dims(g, v, b)?;
        return Ok(proj::q4::Q4Layout::of(q, d[0], d[1], g.ty(v).dtype)?.bytes());
    }
    if let (Op::Transpose { .. }, Some((w, _))) = (&g.node(v.node).op, proj::quant_operand(g, v)) {
        return gpu_bytes(g, w, b);
    }
    let n: u64 = dims(g, v, b)?.iter().map(|&d| d as u64).product();
    Ok(if packed_f16(g, v) { n.div_ceil(2) * 4 } else { n * 4 })
}

/// Generates and validates every kernel of a graph, in execution order. Two kernels a node
/// would have are computed by another's instead: a row program that a decode GEMV computes in
/// its prologue, and the split-sum kernel of a `MatMul` split over k whose one reader is a
/// program run right after it, which adds the parts up where it reads them (the same sums
/// in the same order, a dispatch fewer: on an H100 the Qwen2-0.5B-sized f16 prefill's down
/// projections, 2502–2516 → 2436–2448 µs, `benches/results/h100-2026-11-27n-parts.md`).
pub fn generate(g: &Graph, b: &Bindings, t: &Target) -> Result<Vec<Kernel>> {
    let order = g.topo_order()?;
    let pos: std::collections::HashMap<NodeIndex, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    // Row programs that the decode GEMV after them computes in its prologue: no kernel of
    // their own.
    let mut folds = std::collections::HashMap::new();
    for &n in &order {
        if let Some(p) = select::prologue_for(g, n, &pos, b, t)? {
            folds.insert(n, p);
        }
    }
    let folded: std::collections::HashSet<NodeIndex> = folds.values().map(|p| p.node).collect();
    // Each node's kernels on its own, several nodes at a time on rayon's pool (the layers'
    // attentions are most of a KV step's codegen); then, in order, what depends on the
    // kernels before: the first error in order is the error.
    let nodes: Vec<NodeIndex> = order.iter().copied().filter(|n| !folded.contains(n)).collect();
    let made: Vec<Result<Vec<KernelSource>>> = {
        use rayon::prelude::*;
        nodes.par_iter().map(|&n| select::node_kernels_with(g, n, b, t, folds.get(&n))).collect()
    };
    let mut out: Vec<KernelSource> = vec![];
    // A split projection's split-sum kernel, held back while the next kernel may be the one
    // program reading its output, which then adds the parts up itself ([`parts_reader`]).
    let mut held: Option<(NodeIndex, KernelSource, program::PartsRead)> = None;
    for (n, made) in nodes.into_iter().zip(made) {
        let reads_parts = held.as_ref().is_some_and(|(reader, _, _)| *reader == n);
        let mut ks = if let (true, Op::Elementwise(p)) = (reads_parts, &g.node(n).op) {
            // Written again to read the parts (what was made without them is not used).
            let (_, _, parts) = held.take().expect("held for this reader");
            vec![program::program(g, n, p, b, t, Some(&parts))?]
        } else {
            made?
        };
        if ks.is_empty() {
            continue;
        }
        if let Some((_, sum, _)) = held.take() {
            out.push(sum);
        }
        if let Some((reader, parts)) = parts_reader(g, n, &ks, &folded, b)? {
            held = Some((reader, ks.pop().expect("a split-sum kernel"), parts));
        }
        out.extend(ks);
    }
    if let Some((_, sum, _)) = held {
        out.push(sum);
    }
    validate_all(out, t.caps)
}

/// Validates kernels (in order) with naga: each distinct code once, since naga's verdict
/// depends on the code and the capabilities alone (the Qwen2-0.5B-sized decode step has 128
/// kernels of 14 codes; validating every one made its codegen on the H100 machine 420 ms
/// instead of 80–100, `benches/results/h100-2026-11-27i-setup.md`), and the distinct codes
/// several at a time on rayon's pool. The error is the first failing kernel's in order.
fn validate_all(kernels: Vec<KernelSource>, caps: naga::valid::Capabilities) -> Result<Vec<Kernel>> {
    use rayon::prelude::*;
    let mut first: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, k) in kernels.iter().enumerate() {
        first.entry(k.code()).or_insert(i);
    }
    let mut distinct: Vec<usize> = first.into_values().collect();
    distinct.sort_unstable();
    let verdicts: Vec<Result<()>> = distinct.par_iter().map(|&i| check(&kernels[i], caps)).collect();
    verdicts.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(kernels.into_iter().map(|src| Kernel { src }).collect())
}

/// Where projection `n`'s kernels `ks` end with a split-sum kernel that only adds the parts
/// up (a `MatMul`: no bias, activation or product) and the one reader of its output is a
/// program, not folded into a GEMV's prologue, reading it once: that program and how it
/// reads the parts ([`program::PartsRead`]). The caller generates the program reading them
/// in place of the split-sum kernel where it is the very next kernel (no kernel between
/// them may overwrite the scratch buffer).
fn parts_reader(
    g: &Graph,
    n: NodeIndex,
    ks: &[KernelSource],
    folded: &std::collections::HashSet<NodeIndex>,
    b: &Bindings,
) -> Result<Option<(NodeIndex, program::PartsRead)>> {
    let Some(sum) = ks.last() else { return Ok(None) };
    let split_sum = KernelKind::Projection { fused: false, kernel: ProjKernel::SplitSum };
    if ks.len() != 2 || sum.kind != split_sum || !matches!(g.node(n).op, Op::MatMul) {
        return Ok(None);
    }
    let v = Value::of(n);
    let users = g.users(v);
    let [(reader, input)] = users[..] else { return Ok(None) };
    if g.is_output(v) || folded.contains(&reader) || !matches!(g.node(reader).op, Op::Elementwise(_)) {
        return Ok(None);
    }
    let total: usize = dims(g, v, b)?.iter().product();
    let per = total as u64 * 4;
    if total == 0 || sum.scratch_bytes % per != 0 {
        return Ok(None);
    }
    Ok(Some((reader, program::PartsRead { input, parts: (sum.scratch_bytes / per) as usize, total })))
}

/// The manifest of `glufuse wgsl`: each kernel's file, kind, the choice of a projection's
/// kernel and its reason ([`Choice`]), bindings (values named as `g` names them) and dispatch
/// size. `kernels` must have been generated for `g`.
pub fn manifest(g: &Graph, kernels: &[Kernel]) -> serde_json::Value {
    let ks: Vec<serde_json::Value> = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| {
            let s = k.source();
            let mut e = serde_json::json!({
                "file": file_name(i, &s.name),
                "node": s.name,
                "kind": s.kind.to_string(),
            });
            if let Some(c) = &s.choice {
                e["choice"] = c.to_string().into();
            }
            e["bindings"] = serde_json::json!(s
                .bindings
                .iter()
                .map(|b| serde_json::json!({
                    "value": g.value_name(b.value),
                    "write": b.write,
                    "packed_f16": b.packed_f16,
                }))
                .collect::<Vec<_>>());
            if s.scratch_bytes > 0 {
                e["scratch_bytes"] = s.scratch_bytes.into();
            }
            if s.flag_words > 0 {
                e["flag_words"] = s.flag_words.into();
            }
            e["workgroups"] = serde_json::json!(s.workgroups);
            e["workgroup_size"] = serde_json::json!(s.workgroup_size);
            e["checks"] = serde_json::json!(s.checks.len());
            e
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

#[cfg(test)]
mod tests {
    use super::*;
    use glufuse_ir::builder::GraphBuilder;
    use glufuse_ir::{shape_of, DType};

    /// Four projections of two shapes: kernels of two codes, two kernels each.
    fn kernels() -> Vec<KernelSource> {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[3, 16]));
        let ws: Vec<_> = (0..4).map(|i| b.weight(&format!("w{i}"), DType::F32, &[16, 8 + 8 * (i % 2)], 0.1)).collect();
        let ys: Vec<_> = ws.iter().enumerate().map(|(i, &w)| b.matmul(&format!("p{i}"), x, w)).collect();
        let g = b.finish(&ys).unwrap();
        let ks = generate(&g, &Bindings::new(), &Target::default()).unwrap();
        ks.into_iter().map(|k| k.src).collect()
    }

    #[test]
    fn kernels_come_back_in_order_and_the_first_invalid_one_is_the_error() {
        let ks = kernels();
        assert_eq!(ks.len(), 4);
        let codes: std::collections::HashSet<&str> = ks.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), 2, "two shapes, two codes");
        // All valid: every kernel comes back, in order.
        let names: Vec<String> = ks.iter().map(|k| k.name.clone()).collect();
        let back = validate_all(ks.clone(), Target::default().caps).unwrap();
        assert_eq!(back.iter().map(|k| k.source().name.clone()).collect::<Vec<_>>(), names);
        // Kernels 1 and 3 broken differently: the error names kernel 1, whichever thread
        // validated it.
        for _ in 0..8 {
            let mut bad = ks.clone();
            bad[1].wgsl = bad[1].wgsl.replace("fn main(", "fn main(((");
            bad[3].wgsl.push_str("\nfn broken() -> u32 { return 1.5; }\n");
            let e = validate_all(bad, Target::default().caps).unwrap_err().to_string();
            assert!(e.contains(&names[1]) && !e.contains(&names[3]), "{e}");
        }
    }

    /// The kernel rounding kept f16 outputs in place is valid WGSL under the plainest
    /// capabilities (it runs on every device, f16 or not).
    #[test]
    fn the_f16_rounding_kernel_validates() {
        let wgsl = round_f16_in_place();
        let module = naga::front::wgsl::parse_str(&wgsl).unwrap_or_else(|e| panic!("{}", e.emit_to_string(&wgsl)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}", e.emit_to_string(&wgsl)));
        assert!(round_f16_in_place().contains(&format!("@workgroup_size({ROUND_F16_WORKGROUP})")));
    }
}
