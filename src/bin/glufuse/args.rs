//! The command line's types (clap): the commands and their arguments, and the argument
//! enums that map onto library types (the library itself knows nothing of clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use glufuse::codegen::MatmulPrecision;
use glufuse::dump::Format;
use glufuse::ir::Layout;
use glufuse::synth::WeightType;
use std::path::PathBuf;

/// Finds gated FFNs in model graphs by equality saturation, fuses them, and runs them as WGSL.
#[derive(Parser)]
#[command(name = "glufuse", version, about, after_help = ENVIRONMENT)]
pub struct Cli {
    /// The command; none runs the bundled default job.
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

/// The environment variables glufuse reads, for `--help` (the README says more).
const ENVIRONMENT: &str = "Environment:
  WGPU_BACKEND          backends to try: vulkan, metal, dx12, gl (comma-separated)
  WGPU_ADAPTER_NAME     use the adapter whose name contains this
  GLUFUSE_GPU_TIMEOUT   longest wait for the GPU, in seconds (default 600)
  GLUFUSE_COOP_TILES    cooperative-matrix tilings by kind of projection (fused=TILE,head=..,long=..,short=..)
  GLUFUSE_ATTENTION_CHUNKS  key chunks of every decode-shaped attention (1: one workgroup a row)
  GLUFUSE_MAX_TENSOR_BYTES, GLUFUSE_MAX_GRAPH_BYTES, GLUFUSE_MAX_FILE_BYTES, GLUFUSE_MAX_RANK,
  GLUFUSE_MAX_LIST_LEN  limits on what a file may ask for";

/// Output formats of `show` and the before/after dumps ([`Format`] as an argument).
#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    /// One line per node.
    Text,
    /// The `glufuse.graph/1` JSON format.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Text => Format::Text,
            FormatArg::Json => Format::Json,
            FormatArg::Dot => Format::Dot,
            FormatArg::Mermaid => Format::Mermaid,
        }
    }
}

/// How `fuse` prints the fusion report.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Text,
}

/// The subcommands; none runs the bundled default job.
#[derive(Subcommand)]
pub enum Cmd {
    /// Print a graph.
    Show(ShowArgs),
    /// Run the pass pipeline (fusion, dead-node elimination) and write the result.
    Fuse(FuseArgs),
    /// Write a synthetic Llama-style decoder graph.
    Synth(SynthArgs),
    /// Run a graph on the CPU reference interpreter and print output summaries.
    Interp(InterpArgs),
    /// Write one WGSL file per kernel of the (fused) graph, plus manifest.json.
    Wgsl(WgslArgs),
    /// Run a graph on the GPU (after the passes, unless --unfused).
    Run(RunArgs),
    /// Time a model (MODEL given) or synthetic gate/up kernels on the GPU, fused against
    /// unfused (timestamp queries; each part in a fresh process).
    Bench(Box<BenchArgs>),
    /// The long-lived-process slowdown experiment: one graph timed under several
    /// histories (each in a fresh process).
    #[command(hide = true)]
    BenchProbe(BenchProbeArgs),
    /// Time the fusion pass on synthetic decoder graphs.
    BenchPass(BenchPassArgs),
}

/// Arguments of `glufuse show`.
#[derive(Args)]
pub struct ShowArgs {
    /// Graph file (.json or .onnx).
    pub graph: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
}

/// Arguments of `glufuse fuse`.
#[derive(Args)]
pub struct FuseArgs {
    /// Graph file (.json or .onnx).
    pub graph: PathBuf,
    /// Write the fused graph here as JSON.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Write a dump of the graph before the passes here.
    #[arg(long)]
    pub before: Option<PathBuf>,
    /// Write a dump of the graph after the passes here.
    #[arg(long)]
    pub after: Option<PathBuf>,
    /// Format of the before/after dumps (and of stdout when no -o is given).
    #[arg(long, value_enum, default_value = "text")]
    pub format: FormatArg,
    /// Print the fusion report for people.
    #[arg(long)]
    pub explain: bool,
    /// Print the fusion report for tools.
    #[arg(long, value_enum)]
    pub report: Option<ReportFormat>,
    /// Where a JSON graph written to a file keeps its weights' values: in a data file beside it
    /// (`OUT.data`, read back from there) where they take 16 MiB or more (auto), always, or
    /// never (inline, as numbers)
    #[arg(long, value_enum, default_value = "auto")]
    pub data_file: DataFileArg,
}

/// `fuse --data-file`.
#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DataFileArg {
    /// A data file where the weights' values take 16 MiB or more.
    Auto,
    /// A data file whenever the graph holds weights' values.
    Always,
    /// The values inline, as JSON numbers.
    Never,
}

impl From<DataFileArg> for glufuse::files::DataFile {
    fn from(a: DataFileArg) -> Self {
        match a {
            DataFileArg::Auto => glufuse::files::DataFile::Auto,
            DataFileArg::Always => glufuse::files::DataFile::Always,
            DataFileArg::Never => glufuse::files::DataFile::Never,
        }
    }
}

/// Arguments of `glufuse synth`.
#[derive(Args)]
pub struct SynthArgs {
    /// Decoder layers.
    #[arg(long, default_value_t = 2)]
    pub layers: usize,
    /// Hidden size H.
    #[arg(long, default_value_t = 64)]
    pub hidden: u64,
    /// FFN intermediate size I.
    #[arg(long, default_value_t = 176)]
    pub intermediate: u64,
    /// Rows of x; omitted, the graph takes a symbolic `batch`.
    #[arg(long)]
    pub batch: Option<u64>,
    /// Element type: f32, f16, or q4 (4-bit projection weights in blocks of 32, symmetric,
    /// f16 scales and activations).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DTypeArg,
    /// FFN weight layout: kn (ONNX MatMul) or nk (PyTorch Linear, through a Transpose).
    #[arg(long, value_enum, default_value = "kn")]
    pub layout: LayoutArg,
    /// Opaque attention and norms, as in a real model (the graph then cannot run).
    #[arg(long)]
    pub opaque: bool,
    /// Output file.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Arguments of `glufuse interp`.
#[derive(Args)]
pub struct InterpArgs {
    /// Graph file (.json or .onnx).
    pub graph: PathBuf,
    #[command(flatten)]
    pub io: RunInputs,
}

/// Arguments of `glufuse wgsl`.
#[derive(Args)]
pub struct WgslArgs {
    /// Graph file (.json or .onnx).
    pub graph: PathBuf,
    /// Output folder: created if missing; an existing one must be empty or hold only an
    /// earlier `glufuse wgsl` output (manifest.json and NNN_*.wgsl), which is replaced.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Generate for the graph as given, without the passes.
    #[arg(long)]
    pub unfused: bool,
    /// Size of a symbolic dim, as NAME=N (repeatable; unbound dims default to 1).
    #[arg(long = "dim", value_name = "NAME=N")]
    pub dims: Vec<String>,
    /// Generate for this machine's GPU adapter (its limits, subgroups and cooperative
    /// matrices: what `run` executes there) instead of for portable WebGPU defaults.
    #[arg(long)]
    pub device: bool,
    /// Which matrix products may be f16 (sums stay f32); default: as the weights.
    #[arg(long, value_enum, value_name = "f16|f32")]
    pub matmul_precision: Option<PrecisionArg>,
}

/// Arguments of `glufuse run`.
#[derive(Args)]
pub struct RunArgs {
    /// Graph file (.json or .onnx).
    pub graph: PathBuf,
    #[command(flatten)]
    pub io: RunInputs,
    /// Run the graph as given, without the passes.
    #[arg(long)]
    pub unfused: bool,
    /// Compare against the CPU interpreter on the original graph; fail past tolerance.
    #[arg(long)]
    pub check: bool,
    /// Time each prefill GEMM under the candidate tilings on this GPU first and keep the
    /// fastest (about 20 dispatches per tiling and shape; results are bit-identical).
    #[arg(long)]
    pub tune: bool,
    /// Which matrix products may be f16 (sums stay f32); default: as the weights.
    #[arg(long, value_enum, value_name = "f16|f32")]
    pub matmul_precision: Option<PrecisionArg>,
}

/// Arguments of `glufuse bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// A graph file (.json or .onnx) to time, fused and unfused, as a whole; without it,
    /// synthetic gate/up graphs (--shapes, --rows, --dtypes, --layout).
    pub model: Option<PathBuf>,
    /// With MODEL: an input from a .npy file, as NAME=FILE (repeatable); inputs not given
    /// are made up (token ids within the embedding's rows, masks all ones, floats seeded).
    #[arg(long = "input", value_name = "NAME=FILE.npy", requires = "model")]
    pub inputs: Vec<String>,
    /// With MODEL: leaves the dispatches that PATTERN matches out of the GPU time per call
    /// (repeatable), to measure what a group of kernels costs the whole; the other figures
    /// still run every dispatch. A pattern is matched against `NAME|KIND` of each kernel
    /// (as the table's slowest dispatches show them: `|elementwise-program` is every row
    /// program, `node_linear_168|` one kernel); `A&B` matches where both do, `!A` where A
    /// does not.
    #[arg(long = "leave-out", value_name = "PATTERN", requires = "model")]
    pub leave_out: Vec<String>,
    /// With MODEL: each dispatch that PATTERN matches (as for --leave-out; repeatable) is
    /// also timed alone, repeated in a chain on the model's own buffers, beside what it costs
    /// in the model (the GPU time per call less that call without it): how much of a
    /// kernel's time is its context (the kernels around it, the caches they leave).
    #[arg(long = "alone", value_name = "PATTERN", requires = "model")]
    pub alone: Vec<String>,
    /// With --alone: each of those dispatches also timed after the N dispatches before it in
    /// the model (cycles of them and it, less them alone): what a kernel costs once the ones
    /// before it have filled the caches with their data and code, beside what it costs alone.
    #[arg(long = "alone-after", value_name = "N", default_value_t = 0, requires = "alone")]
    pub alone_after: usize,
    /// With MODEL: size of a symbolic dim, as NAME=N (repeatable; unbound dims are 1).
    #[arg(long = "dim", value_name = "NAME=N", requires = "model")]
    pub dims: Vec<String>,
    /// With MODEL: seed of the inputs made up.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Shapes as HxI, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "896x4864,2048x11008,4096x14336")]
    pub shapes: Vec<String>,
    /// Rows of x (tokens), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128,512")]
    pub rows: Vec<u64>,
    /// Weight element types, comma-separated: f32, f16, q4 (4-bit weights in blocks of 32,
    /// symmetric, f16 scales and activations).
    #[arg(long, value_delimiter = ',', value_enum, default_value = "f32,f16")]
    pub dtypes: Vec<DTypeArg>,
    /// Weight layout.
    #[arg(long, value_enum, default_value = "kn")]
    pub layout: LayoutArg,
    /// Repetitions recorded back to back per submission.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Submissions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub samples: usize,
    /// Also write the rows as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Measure everything in this process instead of a fresh one per graph (with MODEL:
    /// the fused part, then the unfused one).
    #[arg(long, visible_alias = "same-process")]
    pub in_process: bool,
    /// Time only the fused or only the unfused graph (the other is reported as 0).
    #[arg(long, value_enum, default_value = "both")]
    pub part: PartArg,
    /// Force the prefill GEMM's tiling as RTxBK[xNY]: rows of x per thread (4 or 8), k
    /// per step (8 or 16) and threads along the rows (8 or 16; a bare RTxBK means NY=16).
    /// Without this option the tiling is 8x8x8 (or the one --tune picks).
    #[arg(long, value_name = "RTxBK[xNY]")]
    pub gemm_tiles: Option<String>,
    /// Time each prefill GEMM under the candidate tilings first and keep the fastest (as
    /// `run --tune`), in the fused and the unfused graph alike.
    #[arg(long, conflicts_with = "gemm_tiles")]
    pub tune: bool,
    /// Which matrix products may be f16 (sums stay f32), in the fused and the unfused graph
    /// alike; default: as the weights.
    #[arg(long, value_enum, value_name = "f16|f32")]
    pub matmul_precision: Option<PrecisionArg>,
    /// How the 4-bit kernels unpack their elements: magic (no integer-to-float conversion)
    /// or convert.
    #[arg(long, default_value = "magic", value_name = "magic|convert")]
    pub q4_unpack: String,
    /// Output features per 32 lanes of the 4-bit decode GEMV (1, 2 or 4); default: per shape.
    #[arg(long, value_name = "1|2|4")]
    pub q4_cols: Option<usize>,
    /// Where a child process of the isolated benchmark writes its figures as JSON (for the
    /// parent that started it; with --in-process).
    #[arg(long, hide = true, requires = "in_process")]
    pub child_report: Option<PathBuf>,
}

/// Arguments of `glufuse bench-probe`.
#[derive(Args)]
pub struct BenchProbeArgs {
    /// Cases to run, comma-separated (all when none).
    #[arg(long, value_delimiter = ',')]
    pub cases: Vec<String>,
    /// Run this one case here (what the parent asks a child to do).
    #[arg(long)]
    pub case: Option<String>,
    /// Runs per submission.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Submissions per measurement (each printed).
    #[arg(long, default_value_t = 12)]
    pub samples: usize,
}

/// Arguments of `glufuse bench-pass`.
#[derive(Args)]
pub struct BenchPassArgs {
    /// Layer counts to time.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32,128")]
    pub layers: Vec<usize>,
    /// Repetitions per size (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
}

/// An element type, as an argument: f32, f16, or q4 (4-bit weights in blocks of 32,
/// symmetric, with f16 scales and f16 activations).
#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum DTypeArg {
    F32,
    F16,
    Q4,
}

impl From<DTypeArg> for WeightType {
    fn from(d: DTypeArg) -> WeightType {
        match d {
            DTypeArg::F32 => WeightType::F32,
            DTypeArg::F16 => WeightType::F16,
            DTypeArg::Q4 => WeightType::Q4,
        }
    }
}

/// Which graphs of a benchmark configuration to time.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PartArg {
    Both,
    Fused,
    Unfused,
}

/// A matmul precision, as an argument: f16 allows f16 products (x and the weights rounded to
/// f16, summed in f32: the bound is in the README) for f32 weights too, f32 keeps f32 products
/// for f16 weights too. Left out, as the weights ([`MatmulPrecision::AsWeights`]).
#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum PrecisionArg {
    F16,
    F32,
}

impl PrecisionArg {
    /// The library's precision for an optional argument.
    pub fn resolve(a: Option<PrecisionArg>) -> MatmulPrecision {
        match a {
            None => MatmulPrecision::AsWeights,
            Some(PrecisionArg::F16) => MatmulPrecision::F16,
            Some(PrecisionArg::F32) => MatmulPrecision::F32,
        }
    }
}

/// A weight layout, as an argument.
#[derive(Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Kn,
    Nk,
}

impl From<LayoutArg> for Layout {
    fn from(l: LayoutArg) -> Layout {
        match l {
            LayoutArg::Kn => Layout::Kn,
            LayoutArg::Nk => Layout::Nk,
        }
    }
}

/// How inputs are given to `interp` and `run`.
#[derive(Args, Clone)]
pub struct RunInputs {
    /// An input from a .npy file, as NAME=FILE (repeatable; any dtype: <f4, <f2, <i8, <i4,
    /// |b1). Float inputs not given are seeded; integer and boolean inputs must be given.
    #[arg(long = "input", value_name = "NAME=FILE.npy")]
    pub inputs: Vec<String>,
    /// Size of a symbolic dim, as NAME=N (repeatable; unbound dims default to 1).
    #[arg(long = "dim", value_name = "NAME=N")]
    pub dims: Vec<String>,
    /// Seed of generated inputs.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Write an output as .npy: NAME=FILE for the output of that name (repeatable), or a
    /// bare FILE (no `=` in it) for the first output.
    #[arg(long = "output", value_name = "[NAME=]FILE.npy")]
    pub outputs: Vec<String>,
}
