//! The command line's types (clap): the commands and their arguments, and the argument
//! enums that map onto library types (the library itself knows nothing of clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use glufuse::dump::Format;
use glufuse::ir::{DType, Layout};
use std::path::PathBuf;

/// Finds gated FFNs in model graphs by equality saturation, fuses them, and runs them as WGSL.
#[derive(Parser)]
#[command(name = "glufuse", version, about)]
pub struct Cli {
    /// The command; none runs the bundled default job.
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

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
    /// Time fused against unfused gate/up kernels on the GPU (timestamp queries).
    Bench(BenchArgs),
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
    /// Element type.
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
    /// Generate for this machine's GPU adapter (its limits and subgroups: what `run`
    /// executes there) instead of for portable WebGPU defaults.
    #[arg(long)]
    pub device: bool,
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
}

/// Arguments of `glufuse bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Shapes as HxI, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "896x4864,2048x11008,4096x14336")]
    pub shapes: Vec<String>,
    /// Rows of x (tokens), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,128,512")]
    pub rows: Vec<u64>,
    /// Weight element types, comma-separated.
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
    /// Measure every configuration in this process instead of a fresh one each.
    #[arg(long)]
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
    /// Where a child process of the isolated benchmark writes its figures as JSON (for the
    /// parent that started it; with --in-process).
    #[arg(long, hide = true, requires = "in_process")]
    pub child_report: Option<PathBuf>,
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

/// An element type, as an argument.
#[derive(Clone, Copy, ValueEnum, Debug)]
pub enum DTypeArg {
    F32,
    F16,
}

impl From<DTypeArg> for DType {
    fn from(d: DTypeArg) -> DType {
        match d {
            DTypeArg::F32 => DType::F32,
            DTypeArg::F16 => DType::F16,
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
