//! The wgpu executor: opens the GPU ([`Gpu`]), uploads weights and constants, plans
//! intermediate buffers (reused once their last reader has run; `Reshape` is a view of its
//! input), records the dispatches of a run into a few command buffers, each submitted as
//! soon as it is recorded ([`FIRST_SUBMIT`]: the GPU starts while the rest are recorded), and
//! reads every output back after one wait. Inputs go up through a staging buffer of the
//! executable's own, kept mapped between runs, so a run creates no buffer.
//!
//! Only validated [`Kernel`]s reach it. wgpu errors are caught by error scopes and an
//! uncaptured-error handler and come back as [`Error::Gpu`], never as a panic.
//!
//! - [`Executable`]: a graph compiled for one binding of its symbolic dims (every size baked
//!   into the kernels). Its inputs must have exactly the shapes it was compiled for.
//! - [`Session`]: a graph held for repeated calls with inputs of any shape: weights uploaded
//!   once, an executable per binding of the symbols (kept for reuse), pipelines shared by
//!   kernel code (the WGSL less its choice comment) through the [`Gpu`]'s cache; a loop's
//!   steps may keep outputs on the GPU as the next step's inputs ([`Feedback`],
//!   [`Session::step`]). What each call costs: `session.rs`.
//!
//! Values live as the codegen crate documents (`glufuse_codegen`'s "GPU representation"):
//! one 32-bit word per element, i64 and i32 as i32 (inputs, constants and outputs converted
//! with a checked error for a value that does not fit), bool as u32 0/1, f16 weights packed.
//! Run-time checks of the kernels (an index out of range, an integer division by zero, an
//! i64 result past 32 bits) come back as an error naming the node, in place of the outputs.

use crate::codegen::tune::Tuned;
use crate::codegen::Tiles;
use crate::codegen::{self, gpu_bytes, Kernel, Target, ERROR_WORDS};
use crate::ir::*;
use crate::shape::{concrete, Bindings};
use crate::tensor::{Data, Tensor};
use crate::{Error, Graph, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod feedback;
mod gpu;
mod session;
mod timing;

pub use feedback::Feedback;
pub use gpu::{
    adapter_rank, attention_chunks_from_env, coop_tiles_from_env, is_software_adapter, parse_backends,
    parse_wait_timeout, wait_timeout_from_env, Created, Gpu, GpuOptions, PipelineCounts, PIPELINE_CAPACITY,
    WAIT_TIMEOUT,
};
pub use session::Session;
pub use timing::{median, profile_dispatches, time, time_series, timed_pass, WARM_UP};

#[derive(Clone)]
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Dispatch {
    /// Records this dispatch `reps` times in one compute pass.
    fn record(&self, encoder: &mut wgpu::CommandEncoder, reps: usize, timestamps: Option<(&wgpu::QuerySet, u32)>) {
        let mut pass = timed_pass(encoder, "glufuse tune", timestamps);
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.group, &[]);
        for _ in 0..reps {
            pass.dispatch_workgroups(self.workgroups[0], self.workgroups[1], self.workgroups[2]);
        }
    }
}

/// The buffers of a graph's weights and constants: uploaded once, shared by every executable
/// made from them (a [`Session`] makes one per binding of the symbols).
#[derive(Clone, Default)]
pub(crate) struct Weights {
    buffers: HashMap<Value, wgpu::Buffer>,
}

impl Weights {
    /// Uploads every weight and constant of `g` (f16 weights packed in pairs; integer
    /// constants checked to fit the GPU's 32 bits, the error naming the node).
    pub(crate) fn upload(gpu: &Gpu, g: &Graph) -> Result<Weights> {
        let mut buffers = HashMap::new();
        gpu.scoped("uploading weights", || -> Result<()> {
            for n in g.topo_order()? {
                let node = g.node(n);
                if !matches!(node.op, Op::Weight(_) | Op::QuantWeight(_) | Op::Constant(_)) {
                    continue;
                }
                let words = source_words(node)?;
                let bytes: &[u8] = bytemuck::cast_slice(&words);
                let buf = gpu.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&node.name),
                    size: (bytes.len() as u64).max(4),
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                if !bytes.is_empty() {
                    gpu.queue.write_buffer(&buf, 0, bytes);
                }
                buffers.insert(Value::of(n), buf);
            }
            Ok(())
        })??;
        Ok(Weights { buffers })
    }
}

/// A graph input as an executable takes it, and where its words lie in the staging buffer.
struct InputSlot {
    name: String,
    value: Value,
    dtype: DType,
    dims: Vec<usize>,
    /// Where its words start, in the staging buffer and in the buffer every input shares.
    offset: u64,
}

/// The inputs and outputs of a call that stay on the GPU ([`Session::step`]): the buffer the
/// fed inputs come from and, per graph input (in [`Graph::input_nodes`]' order), where its
/// words lie there if it is fed, instead of staged; the buffer the kept outputs go into and,
/// per graph output, where its words go there if it is kept, instead of read back (laid out
/// by [`Executable::kept_layout`]).
pub(crate) struct Feed<'f> {
    pub(crate) from: Option<&'f wgpu::Buffer>,
    pub(crate) inputs: Vec<Option<u64>>,
    pub(crate) into: Option<&'f wgpu::Buffer>,
    pub(crate) outputs: Vec<Option<u64>>,
}

impl Feed<'_> {
    /// Where graph input `i`'s words lie in the buffer it is fed from, if it is fed.
    fn input(&self, i: usize) -> Option<u64> {
        self.inputs.get(i).copied().flatten()
    }

    /// Where graph output `j`'s words go in the buffer it is kept in, if it is kept.
    fn output(&self, j: usize) -> Option<u64> {
        self.outputs.get(j).copied().flatten()
    }
}

/// What a call with a [`Feed`] copies and rounds besides what any call does: the fed inputs'
/// copies (source offset, destination offset in the inputs' buffer, bytes), the kept outputs'
/// copies (the executable's buffer, source offset, destination offset, bytes), each covering
/// as many neighbouring values as lie alike on both sides (a decode step's caches: one copy
/// each way), and the f16 outputs' roundings.
struct FeedPlan {
    copies_in: Vec<(u64, u64, u64)>,
    copies_out: Vec<(usize, u64, u64, u64)>,
    rounding: Vec<Rounding>,
}

/// One dispatch of [`crate::codegen::round_f16_in_place`] over an output kept on the GPU.
struct Rounding {
    pipeline: wgpu::ComputePipeline,
    group: wgpu::BindGroup,
    workgroups: [u32; 2],
}

/// Where a value lives: one of the executable's buffers, all of it, or a range of it (a
/// graph input in the buffer the inputs share, an output in the one the outputs share).
#[derive(Clone, Copy, Debug)]
struct Place {
    buffer: usize,
    offset: u64,
    size: Option<wgpu::BufferSize>,
}

impl Place {
    /// All of buffer `buffer`.
    fn whole(buffer: usize) -> Place {
        Place { buffer, offset: 0, size: None }
    }
}

/// The staged inputs' bytes from which a call stages them while it records the run on another
/// thread ([`Executable::run_timed`], [`CallTimes::encode_us`]): on the H200 machine the
/// handoff to rayon's pool cost about 30 µs, and a Qwen2-0.5B-sized decode step's 3.1 MB took
/// about 500 µs to stage, beside 300–550 µs of recording
/// (`benches/results/h200-2026-11-29-overlap.md`).
pub const OVERLAP_MIN_BYTES: u64 = 512 << 10;

/// Dispatches in the first command buffer of a call ([`Executable::run_timed`]): the GPU starts
/// on them while the call records the rest, [`NEXT_SUBMITS`] a buffer, each submitted as soon
/// as it is recorded (recording a dispatch takes less time than the GPU takes to run one).
pub const FIRST_SUBMIT: usize = 16;
/// Dispatches in each command buffer of a call after the first ([`FIRST_SUBMIT`]).
pub const NEXT_SUBMITS: usize = 24;

/// The dispatches of each command buffer a call of `n` dispatches records and submits, in
/// order: the first [`FIRST_SUBMIT`], on which the GPU starts while the rest are recorded,
/// then [`NEXT_SUBMITS`] a buffer (at least one buffer, which may hold none).
fn submits(n: usize) -> Vec<std::ops::Range<usize>> {
    let mut parts = Vec::new();
    let (mut at, mut size) = (0, FIRST_SUBMIT);
    loop {
        let end = (at + size).min(n);
        parts.push(at..end);
        if end >= n {
            return parts;
        }
        (at, size) = (end, NEXT_SUBMITS);
    }
}

/// Where one run's CPU time went, in µs (wall clock). `submit_wait` includes the GPU's work.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallTimes {
    /// Binding the symbols from the inputs' shapes and finding the executable ([`Session`]
    /// only; 0 for [`Executable::run_timed`]).
    pub bind_us: f64,
    /// Checking the inputs and writing them into the mapped staging buffer.
    pub upload_us: f64,
    /// Recording the first command buffer (the inputs' copies and the first [`FIRST_SUBMIT`]
    /// dispatches): after the upload, or at the same time where the inputs take
    /// [`OVERLAP_MIN_BYTES`] or more (on another thread, once they are checked), the call then
    /// waiting for the longer of the two.
    pub encode_us: f64,
    /// Submitting it, recording and submitting the rest (while the GPU runs what it has) and
    /// waiting for the GPU (and for the buffers to map), from when both the upload and the
    /// first recording are done.
    pub submit_wait_us: f64,
    /// Converting the mapped words into the output tensors.
    pub readback_us: f64,
}

impl CallTimes {
    /// The call's time from its parts: the upload and the recording overlap, so the longer
    /// of the two counts.
    pub fn total_us(&self) -> f64 {
        self.bind_us + self.upload_us.max(self.encode_us) + self.submit_wait_us + self.readback_us
    }
}

/// The buffers a call stages its inputs in and reads its outputs back from, and what they
/// hold between calls: whether the staging buffer is mapped for writing, and the inputs' bytes
/// on their way there (kept, so that a call allocates nothing). An executable's own, or one
/// that a [`Session`]'s executables share (they run one at a time), sized for the largest
/// ([`Io::fit`]): a session that keeps an executable for each of many past lengths then
/// holds one pair, not one each.
pub(crate) struct Io {
    /// The inputs' words on their way up (`MAP_WRITE`), at least as large as the staged
    /// inputs of each executable that uses it.
    staging: Option<wgpu::Buffer>,
    /// The outputs' words on their way back (`MAP_READ`).
    readback: Option<wgpu::Buffer>,
    staging_mapped: bool,
    bytes: Vec<u8>,
}

impl Io {
    /// None yet: [`Io::fit`] makes them.
    pub(crate) fn new() -> Io {
        Io { staging: None, readback: None, staging_mapped: false, bytes: vec![] }
    }

    /// `io` locked (a run that panicked leaves it usable: the next run maps and writes what it
    /// needs).
    pub(crate) fn lock(io: &Mutex<Io>) -> std::sync::MutexGuard<'_, Io> {
        io.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the buffers at least `staged` and `read` bytes (a larger one replaces the one
    /// there); none is made where they are large enough already. The staging buffer's
    /// mapping and the bytes are written once now: the first write of each page costs a
    /// fault, which the first call paid (the Qwen2-0.5B-sized f16 decode step's 3.1 MB: that
    /// call's upload took 3.3–3.6 ms against 0.7–0.8 after, on the H200 machine, and 0.7–0.9
    /// with the pages written here: `benches/results/h200-2026-11-29-prepare.md`).
    pub(crate) fn fit(&mut self, gpu: &Gpu, staged: u64, read: u64) -> Result<()> {
        if staged > 0 && self.staging.as_ref().is_none_or(|b| b.size() < staged) {
            let desc = wgpu::BufferDescriptor {
                label: Some("inputs"),
                size: staged,
                usage: wgpu::BufferUsages::MAP_WRITE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: true,
            };
            let b = gpu.scoped("allocating the inputs' staging buffer", || gpu.create_buffer(&desc))?;
            // (Not `vec![0; n]`: its pages come zeroed from the kernel on first write, the
            // cost this moves out of the first call.)
            #[allow(clippy::slow_vector_initialization)]
            let bytes: Vec<u8> = {
                let mut v = Vec::with_capacity(staged as usize);
                v.resize(staged as usize, 0);
                v
            };
            b.slice(..)
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(format!("writing the inputs' staging buffer: {e}")))?
                .copy_from_slice(&bytes);
            (self.staging, self.bytes, self.staging_mapped) = (Some(b), bytes, true);
        }
        let read = read.max(4);
        if self.readback.as_ref().is_none_or(|b| b.size() < read) {
            let desc = wgpu::BufferDescriptor {
                label: Some("readback"),
                size: read,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            };
            self.readback = Some(gpu.scoped("allocating the readback buffer", || gpu.create_buffer(&desc))?);
        }
        Ok(())
    }
}

/// A graph output as an executable reads it back: its value, dims, dtype, and where its
/// words lie in the readback buffer.
struct OutputSlot {
    value: Value,
    dims: Vec<usize>,
    dtype: DType,
    offset: u64,
    /// Whether its words come back with the buffer the outputs share (one copy for all of
    /// them), at the same offset there; else by a copy of its own.
    shared: bool,
    /// Whether it is stored as packed f16, two values a word ([`codegen::packed_activation`]).
    packed: bool,
}

impl OutputSlot {
    /// The words it takes in the readback buffer.
    fn words(&self) -> usize {
        let n = self.dims.iter().product::<usize>();
        if self.packed {
            n.div_ceil(2)
        } else {
            n
        }
    }
}

/// The error words of the kernels that check something at run time: one region per checking
/// kernel, each at a multiple of the device's storage offset alignment.
struct ErrorWords {
    buffer: wgpu::Buffer,
    /// Bytes between the regions.
    stride: u64,
    /// Per checking kernel: its index in the executable's kernels.
    kernels: Vec<usize>,
    /// Where the regions' copies start in the readback buffer.
    offset: u64,
}

/// A graph compiled for one device and one binding of its symbolic dims.
pub struct Executable<'a> {
    gpu: &'a Gpu,
    buffers: Vec<wgpu::Buffer>,
    buffer_of: HashMap<Value, Place>,
    dispatches: Vec<Dispatch>,
    inputs: Vec<InputSlot>,
    outputs: Vec<OutputSlot>,
    kernels: Vec<Kernel>,
    errors: Option<ErrorWords>,
    /// The scatters' flags, a region per kernel that counts them, zeroed before every run.
    flags: Option<wgpu::Buffer>,
    /// The inputs' bytes as staged (laid out as the buffer the inputs share; 0 without
    /// inputs) and the outputs' as read back.
    staged: u64,
    read: u64,
    /// Its staging and readback buffers, its own or a session's: one run at a time.
    io: Arc<Mutex<Io>>,
    /// By range of a buffer (its index, offset, bytes), the bind group rounding the f16 outputs
    /// there in place where a call keeps them on the GPU ([`Executable::rounding`]), made the
    /// first time.
    rounders: Mutex<HashMap<(usize, u64, u64), wgpu::BindGroup>>,
}

impl<'a> Executable<'a> {
    /// Generates, validates and uploads everything a run of `g` needs.
    pub fn new(gpu: &'a Gpu, g: &Graph, b: &Bindings) -> Result<Self> {
        Self::with_target(gpu, g, b, &gpu.target())
    }

    /// [`Executable::new`] with code generation options of the caller's choosing (for
    /// example a forced GEMM tiling); `target` must not promise more than [`Gpu::target`].
    pub fn with_target(gpu: &'a Gpu, g: &Graph, b: &Bindings, target: &Target) -> Result<Self> {
        let weights = Weights::upload(gpu, g)?;
        Self::build(gpu, g, b, target, &weights)
    }

    /// An executable over weights already uploaded, with staging and readback buffers of
    /// its own.
    pub(crate) fn build(gpu: &'a Gpu, g: &Graph, b: &Bindings, target: &Target, weights: &Weights) -> Result<Self> {
        let exe = Self::build_with(gpu, g, b, target, weights, Arc::new(Mutex::new(Io::new())))?;
        exe.io().fit(gpu, exe.staged, exe.read)?;
        Ok(exe)
    }

    /// An executable over weights already uploaded, staging and reading back through `io`
    /// (which each call fits to it: [`Io::fit`]).
    pub(crate) fn build_with(
        gpu: &'a Gpu,
        g: &Graph,
        b: &Bindings,
        target: &Target,
        weights: &Weights,
        io: Arc<Mutex<Io>>,
    ) -> Result<Self> {
        let kernels = codegen::generate(g, b, target)?;
        let order = g.topo_order()?;
        // Views share their input's buffer, and so do a value its readers read in place
        // (`Graph::read_in_place`: a transposed weight, a gather's table; no kernel writes it)
        // and a scatter written in place (`codegen::scatter_in_place`: into a graph input
        // nothing else reads, uploaded again before every run).
        let mut alias: HashMap<Value, Value> = HashMap::new();
        for &n in &order {
            if matches!(g.node(n).op, Op::Reshape { .. })
                || g.read_in_place(Value::of(n)).is_some()
                || codegen::scatter_in_place(g, n)
            {
                let src = g.inputs(n)[0];
                let root = *alias.get(&src).unwrap_or(&src);
                alias.insert(Value::of(n), root);
            }
        }
        let root = |v: Value| *alias.get(&v).unwrap_or(&v);
        // The values stored as packed f16 (`codegen::packed_activation`), as their writers
        // bind them: two values a word, their buffers sized so.
        let packed: std::collections::HashSet<Value> = kernels
            .iter()
            .flat_map(|k| k.source().bindings.iter().filter(|bd| bd.write && bd.packed_f16).map(|bd| bd.value))
            .collect();
        let value_bytes = |v: Value| -> Result<u64> {
            if packed.contains(&v) {
                let n: u64 = codegen::dims(g, v, b)?.iter().map(|&d| d as u64).product();
                Ok(n.div_ceil(2) * 4)
            } else {
                gpu_bytes(g, v, b)
            }
        };
        // Last reader of each buffer root (graph outputs live to the end).
        let pos: HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut last: HashMap<Value, usize> = HashMap::new();
        for &n in &order {
            for v in g.inputs(n) {
                let e = last.entry(root(v)).or_default();
                *e = (*e).max(pos[&n]);
            }
        }
        // A kernel may read values its node does not (a projection computing the row program
        // before it in its prologue reads that program's inputs): they live to its node.
        for k in &kernels {
            let name = &k.source().name;
            let node = g.find(name).or_else(|| name.rsplit_once('.').and_then(|(base, _)| g.find(base)));
            let Some(at) = node.and_then(|n| pos.get(&n)) else { continue };
            for bd in k.source().bindings.iter().filter(|bd| !bd.write) {
                let e = last.entry(root(bd.value)).or_default();
                *e = (*e).max(*at);
            }
        }
        for &o in &g.outputs {
            last.insert(root(o), usize::MAX);
        }
        // The outputs that no kernel reads share one buffer (each at a multiple of the
        // device's storage offset alignment, at least 4 bytes), read back in one copy: a
        // decode step's logits and present keys and values, which took about 0.14 ms of GPU
        // time and 0.09 ms of recording more as 49 copies on an H100. An output a kernel
        // reads keeps a buffer of its own: wgpu refuses a dispatch that binds one buffer both
        // read-only and read-write, whatever the ranges. So do graph inputs and weights that
        // are outputs, and whatever a view of them is.
        let read: std::collections::HashSet<Value> = kernels
            .iter()
            .flat_map(|k| k.source().bindings.iter().filter(|bd| !bd.write).map(|bd| root(bd.value)))
            .collect();
        let align = (gpu.limits.min_storage_buffer_offset_alignment as u64).max(wgpu::MAP_ALIGNMENT);
        let mut shared_outs: Vec<Value> = vec![];
        for &o in &g.outputs {
            let r = root(o);
            let own = read.contains(&r) || g.node(r.node).op.is_source() || weights.buffers.contains_key(&r);
            if !own && !shared_outs.contains(&r) {
                shared_outs.push(r);
            }
        }
        let out_sizes = shared_outs.iter().map(|&r| value_bytes(r)).collect::<Result<Vec<_>>>()?;
        let (out_offsets, out_bytes) = pack(&out_sizes, align);
        let out_places: HashMap<Value, (u64, u64)> = shared_outs
            .iter()
            .zip(out_offsets.iter().zip(&out_sizes))
            .map(|(&r, (&o, &n))| (r, (o, n.max(4))))
            .collect();
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        // The graph inputs share one buffer, each at a multiple of the device's storage
        // offset alignment (at least 4 bytes each, so that an empty one binds too), laid out
        // as in the staging buffer: a call copies them up in one copy, not one per input (a
        // decode step's 48 past keys and values took about 0.12 ms of GPU time and 0.18 ms of
        // recording more as 48 copies on an H100).
        let in_nodes = g.input_nodes();
        let in_dims = in_nodes
            .iter()
            .map(|&n| concrete(&g.node(n).outputs[0].shape, b).map_err(|m| Error::graph(&g.node(n).name, m)))
            .collect::<Result<Vec<_>>>()?;
        let in_sizes: Vec<u64> = in_dims.iter().map(|d| d.iter().map(|&x| x as u64).product::<u64>() * 4).collect();
        let (in_offsets, staged) = pack(&in_sizes, align);
        let inputs: Vec<InputSlot> = in_nodes
            .iter()
            .zip(in_dims)
            .zip(&in_offsets)
            .map(|((&n, dims), &offset)| {
                let node = g.node(n);
                InputSlot { name: node.name.clone(), value: Value::of(n), dtype: node.outputs[0].dtype, dims, offset }
            })
            .collect();
        let mut buffers: Vec<wgpu::Buffer> = vec![];
        let mut sizes: Vec<u64> = vec![];
        let mut buffer_of: HashMap<Value, Place> = HashMap::new();
        // The two shared buffers, and each input's and output's range in its own.
        let ranges = [
            (
                "graph inputs",
                staged,
                inputs.iter().zip(&in_sizes).map(|(s, &n)| (s.value, s.offset, n)).collect::<Vec<_>>(),
            ),
            ("graph outputs", out_bytes, shared_outs.iter().map(|r| (*r, out_places[r].0, out_places[r].1)).collect()),
        ];
        for (label, total, values) in ranges {
            if total == 0 {
                continue;
            }
            let desc = wgpu::BufferDescriptor { label: Some(label), size: total, usage, mapped_at_creation: false };
            buffers.push(gpu.scoped(&format!("allocating the {label}' buffer"), || gpu.create_buffer(&desc))?);
            sizes.push(total);
            for (v, offset, bytes) in values {
                let place = Place { buffer: buffers.len() - 1, offset, size: wgpu::BufferSize::new(bytes.max(4)) };
                buffer_of.insert(v, place);
            }
        }
        let mut free: Vec<usize> = vec![];
        let mut release_at: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut uploads: Vec<(usize, Vec<u8>)> = vec![];
        gpu.scoped("allocating buffers", || -> Result<()> {
            for &n in &order {
                let node = g.node(n);
                for k in 0..node.outputs.len() {
                    let v = Value { node: n, output: k };
                    if alias.contains_key(&v) {
                        continue;
                    }
                    if let Some(w) = weights.buffers.get(&v) {
                        buffers.push(w.clone());
                        sizes.push(w.size());
                        buffer_of.insert(v, Place::whole(buffers.len() - 1));
                        continue;
                    }
                    let bytes = value_bytes(v)?.max(4);
                    if bytes > target.max_binding_bytes {
                        return Err(Error::Gpu(format!(
                            "value '{}' needs {bytes} bytes, more than this device binds in one buffer ({})",
                            g.value_name(v),
                            target.max_binding_bytes
                        )));
                    }
                    if buffer_of.contains_key(&v) {
                        continue; // a graph input or output, in the buffer they share
                    }
                    let reusable = !node.op.is_source();
                    let slot = if reusable {
                        free.iter().position(|&i| sizes[i] >= bytes).map(|p| free.swap_remove(p))
                    } else {
                        None
                    };
                    let i = slot.unwrap_or_else(|| {
                        buffers.push(gpu.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(&node.name),
                            size: bytes.next_multiple_of(4),
                            usage,
                            mapped_at_creation: false,
                        }));
                        sizes.push(bytes);
                        buffers.len() - 1
                    });
                    buffer_of.insert(v, Place::whole(i));
                    if let Op::SymConstant(exprs) = &node.op {
                        uploads.push((i, sym_constant_bytes(node, exprs, b)?));
                    }
                    if reusable {
                        match last.get(&v) {
                            Some(&l) if l != usize::MAX => release_at.entry(l).or_default().push(i),
                            None => free.push(i), // never read: its buffer is free at once
                            _ => {}
                        }
                    }
                }
                if let Some(rel) = release_at.remove(&pos[&n]) {
                    free.extend(rel);
                }
            }
            Ok(())
        })??;
        for (v, r) in &alias {
            let p = buffer_of[r];
            buffer_of.insert(*v, p);
        }
        for (i, bytes) in uploads {
            if !bytes.is_empty() {
                gpu.queue.write_buffer(&buffers[i], 0, &bytes);
            }
        }
        // One region of error words per kernel that checks something at run time.
        let checking: Vec<usize> = (0..kernels.len()).filter(|&i| !kernels[i].source().checks.is_empty()).collect();
        let stride = (gpu.limits.min_storage_buffer_offset_alignment as u64).max(ERROR_WORDS * 4);
        let error_buffer = (!checking.is_empty()).then(|| {
            gpu.create_buffer(&wgpu::BufferDescriptor {
                label: Some("error words"),
                size: stride * checking.len() as u64,
                usage,
                mapped_at_creation: false,
            })
        });
        // One scratch buffer for every kernel that asks (split-K partial sums), of the
        // largest size asked: the kernels run one after another.
        let scratch_bytes = kernels.iter().map(|k| k.source().scratch_bytes).max().unwrap_or(0);
        let scratch = (scratch_bytes > 0).then(|| {
            gpu.create_buffer(&wgpu::BufferDescriptor {
                label: Some("scratch"),
                size: scratch_bytes.next_multiple_of(4),
                usage,
                mapped_at_creation: false,
            })
        });
        // Each kernel that counts flags (a scatter's, one per place) has a region of its own in
        // one flags buffer, zeroed before every run.
        let flagged: Vec<usize> = (0..kernels.len()).filter(|&i| kernels[i].source().flag_words > 0).collect();
        let flag_bytes: Vec<u64> = flagged.iter().map(|&i| kernels[i].source().flag_words * 4).collect();
        let (flag_offsets, flags_total) = pack(&flag_bytes, align);
        let flags = if flags_total > 0 {
            let desc =
                wgpu::BufferDescriptor { label: Some("flags"), size: flags_total, usage, mapped_at_creation: false };
            Some(gpu.scoped("allocating the flags buffer", || gpu.create_buffer(&desc))?)
        } else {
            None
        };
        // Every new pipeline at once, several compiles at a time.
        let pipelines = gpu.pipelines(&kernels.iter().map(|k| k.source()).collect::<Vec<_>>())?;
        let mut dispatches = vec![];
        gpu.scoped("creating bind groups", || -> Result<()> {
            for (i, (k, pipeline)) in kernels.iter().zip(pipelines).enumerate() {
                let err = checking
                    .iter()
                    .position(|&c| c == i)
                    .zip(error_buffer.as_ref())
                    .map(|(j, e)| (e, j as u64 * stride));
                let fl = flagged
                    .iter()
                    .position(|&f| f == i)
                    .zip(flags.as_ref())
                    .map(|(j, f)| (f, flag_offsets[j], flag_bytes[j]));
                dispatches.push(dispatch(
                    gpu,
                    g,
                    &buffers,
                    &buffer_of,
                    k.source(),
                    pipeline,
                    err,
                    scratch.as_ref(),
                    fl,
                )?);
            }
            Ok(())
        })??;
        // The readback buffer: the outputs' shared buffer as it is, every other output, then
        // every region's error words.
        let mut offset = out_bytes;
        let mut outputs = vec![];
        for &v in &g.outputs {
            let dims = concrete(&g.ty(v).shape, b).map_err(|m| Error::graph(&g.node(v.node).name, m))?;
            let dtype = g.ty(v).dtype;
            let packed = packed.contains(&root(v));
            match out_places.get(&root(v)) {
                Some(&(at, _)) => outputs.push(OutputSlot { value: v, dims, dtype, offset: at, shared: true, packed }),
                None => {
                    let slot = OutputSlot { value: v, dims, dtype, offset, shared: false, packed };
                    offset += slot.words() as u64 * 4;
                    outputs.push(slot);
                }
            }
        }
        let errors = error_buffer.map(|buffer| {
            let e = ErrorWords { buffer, stride, kernels: checking, offset };
            offset += stride * e.kernels.len() as u64;
            e
        });
        Ok(Executable {
            gpu,
            buffers,
            buffer_of,
            dispatches,
            inputs,
            outputs,
            kernels,
            errors,
            flags,
            staged,
            read: offset,
            io,
            rounders: Mutex::new(HashMap::new()),
        })
    }

    /// Times every aligned prefill GEMM of the executable (fused or plain) under each tiling
    /// of `candidates` on this device, and keeps the fastest: which tiling wins depends on
    /// the shape and the device (on an H100 the default wins at M=512 and loses at M=128 on
    /// Llama-3-8B). The choice is codegen's ([`codegen::tune::tune`]: which variants, how
    /// many rounds, which wins); this only times each variant it is given, over the
    /// executable's own buffers. Every tiling sums k in the same order, so the choice changes
    /// no result bit. Costs about 20 dispatches per candidate and distinct shape (tens of
    /// milliseconds for a Llama-3-8B prefill GEMM). On a software adapter ([`Gpu::is_software`])
    /// it shrinks to one round of one dispatch per candidate
    /// ([`codegen::tune::SOFTWARE_ROUNDS`]): its timings say little about a GPU, and each
    /// costs CPU time.
    pub fn tune_gemms(&mut self, g: &Graph, b: &Bindings, target: &Target, candidates: &[Tiles]) -> Result<Vec<Tuned>> {
        // Pipelines by what they run (the code, without the choice comment, and bindings): the
        // executable's own and every candidate timed, so that a kernel already on the chosen
        // tiling keeps its pipeline (and is timed on it) and the winner keeps the one it was
        // timed with.
        let key = |k: &Kernel| (k.source().code().to_string(), k.source().bindings.clone());
        let mut pipelines: HashMap<_, Dispatch> =
            self.kernels.iter().zip(&self.dispatches).map(|(k, d)| (key(k), d.clone())).collect();
        let (gpu, buffers, buffer_of) = (self.gpu, &self.buffers, &self.buffer_of);
        let mut pipeline = |k: &Kernel, what: &str| -> Result<Dispatch> {
            if let Some(d) = pipelines.get(&key(k)) {
                return Ok(d.clone());
            }
            // Tiled GEMMs check nothing at run time and split nothing: no error words and no
            // scratch to bind.
            let p = gpu.pipeline(k.source())?;
            let d = gpu.scoped(what, || dispatch(gpu, g, buffers, buffer_of, k.source(), p, None, None, None))??;
            pipelines.insert(key(k), d.clone());
            Ok(d)
        };
        let (rounds, reps) =
            if gpu.is_software() { (codegen::tune::SOFTWARE_ROUNDS, 1) } else { (codegen::tune::ROUNDS, TUNE_REPS) };
        let mut timer = |k: &Kernel| -> Result<f64> {
            let d = pipeline(k, "creating a tuning pipeline")?;
            Ok(time(gpu, reps, 1, |enc, reps, ts| d.record(enc, reps, ts))?.0)
        };
        let tuned = codegen::tune::tune(&mut self.kernels, g, b, target, candidates, rounds, &mut timer)?;
        for t in tuned.iter().filter(|t| t.replaced) {
            self.dispatches[t.index] = pipeline(&self.kernels[t.index], "creating a pipeline")?;
        }
        Ok(tuned)
    }

    /// Dispatches one run takes.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// The validated kernels, in dispatch order.
    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    /// Graph input `i`'s dims and dtype under this executable's binding.
    pub(crate) fn input_type(&self, i: usize) -> Option<(&[usize], DType)> {
        self.inputs.get(i).map(|s| (s.dims.as_slice(), s.dtype))
    }

    /// Graph output `j`'s dims and dtype under this executable's binding, and whether it is
    /// stored as packed f16 (two values a word: no graph input takes it so).
    pub(crate) fn output_type(&self, j: usize) -> Option<(&[usize], DType, bool)> {
        self.outputs.get(j).map(|o| (o.dims.as_slice(), o.dtype, o.packed))
    }

    /// Checks the inputs against what the executable was compiled for: every graph input
    /// given, of its dtype and of exactly the shape this binding gives it (an input of
    /// another shape is refused, never padded or cut), integers within 32 bits. Errors name
    /// the input.
    pub fn check_inputs(&self, inputs: &HashMap<String, Tensor>) -> Result<()> {
        self.check_given(inputs, None)
    }

    /// [`Executable::check_inputs`] of the inputs a call stages: every one but those `feed`
    /// takes from the GPU.
    fn check_given(&self, inputs: &HashMap<String, Tensor>, feed: Option<&Feed>) -> Result<()> {
        for (i, slot) in self.inputs.iter().enumerate() {
            if feed.is_some_and(|f| f.input(i).is_some()) {
                continue;
            }
            let name = &slot.name;
            let t = inputs.get(name).ok_or_else(|| Error::graph(name, "no value was given for this graph input"))?;
            if t.dtype() != slot.dtype {
                return Err(Error::graph(
                    name,
                    format!("the graph input is {} but the value given is {}", slot.dtype, t.dtype()),
                ));
            }
            if t.shape() != slot.dims.as_slice() {
                return Err(Error::graph(
                    name,
                    format!(
                        "the value given has shape {:?}, but this executable was compiled for {:?}",
                        t.shape(),
                        slot.dims
                    ),
                ));
            }
            if let Some(v) = t.as_i64() {
                if let Some((i, x)) = v.iter().enumerate().find(|(_, &x)| i32::try_from(x).is_err()) {
                    return Err(Error::graph(
                        name,
                        format!("element {i} is {x}, outside the 32-bit range the GPU holds {} values in", slot.dtype),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The byte ranges of the staging buffer (and of the buffer the inputs share) that a call
    /// copies up: each a run of the inputs it stages, laid end to end with the gaps between
    /// them, broken where `feed` takes an input from the GPU instead. Without one, one run of
    /// all the inputs.
    fn staged_runs(&self, feed: Option<&Feed>) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = vec![];
        let mut open = false;
        for (i, slot) in self.inputs.iter().enumerate() {
            if feed.is_some_and(|f| f.input(i).is_some()) {
                open = false;
                continue;
            }
            let end = slot.offset + slot.dims.iter().map(|&d| d as u64).product::<u64>() * 4;
            match runs.last_mut() {
                Some(run) if open => run.1 = end,
                _ => runs.push((slot.offset, end)),
            }
            open = true;
        }
        // The last run takes the padding after it: one copy of the whole buffer where every
        // input is staged.
        if let (Some(run), true) = (runs.last_mut(), open) {
            run.1 = self.staged;
        }
        runs.retain(|(a, b)| b > a);
        runs
    }

    /// Writes the (checked) inputs into the staging buffer (fitted), mapping it first if
    /// the last run did not leave it mapped, and unmaps it for the copies: the ranges of
    /// `runs` ([`Executable::staged_runs`]), every input in them and the gaps between them
    /// (zeroed: another executable sharing the buffer may have written them).
    fn stage_inputs(&self, io: &mut Io, inputs: &HashMap<String, Tensor>, runs: &[(u64, u64)]) -> Result<()> {
        if runs.is_empty() {
            return Ok(());
        }
        let Some(staging) = &io.staging else {
            return Err(Error::Internal("staging inputs without a staging buffer".into()));
        };
        if !io.staging_mapped {
            map_and_wait(self.gpu, staging, wgpu::MapMode::Write, "mapping the input staging buffer")?;
            io.staging_mapped = true;
        }
        // The inputs' bytes, converted on several threads where they are many ([`spread`]),
        // then copied into the mapped buffer at once: a mapped range is written through
        // wgpu's write-only view, which no thread but this one can hold.
        let size = self.staged as usize;
        if io.bytes.len() < size {
            return Err(Error::Internal("the staging bytes are smaller than the inputs".into()));
        }
        let mut jobs = vec![];
        let mut rest: &mut [u8] = &mut io.bytes[..size];
        let mut at = 0u64;
        for &(start, end) in runs {
            // `rest` starts at byte `at`; the run's bytes are `start..end`.
            let skip = start.checked_sub(at).ok_or_else(|| Error::Internal("staged runs overlap".into()))? as usize;
            if rest.len() < skip {
                return Err(Error::Internal("a staged run starts past the staging bytes".into()));
            }
            let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
            let len = (end - start) as usize;
            if tail.len() < len {
                return Err(Error::Internal("a staged run lies past the staging bytes".into()));
            }
            let (mut run, tail) = tail.split_at_mut(len);
            rest = tail;
            at = end;
            let mut run_at = start;
            for slot in self.inputs.iter().filter(|s| s.offset >= start && s.offset < end) {
                let t = inputs.get(&slot.name).ok_or_else(|| {
                    Error::Internal(format!("graph input '{}' is staged but was not given", slot.name))
                })?;
                let gap = slot.offset.checked_sub(run_at).ok_or_else(|| {
                    Error::Internal(format!("graph input '{}' overlaps the one staged before it", slot.name))
                })? as usize;
                let len = t.numel() * 4;
                if run.len() < gap + len {
                    return Err(Error::Internal(format!("graph input '{}' lies past its staged run", slot.name)));
                }
                let (g, tail) = std::mem::take(&mut run).split_at_mut(gap);
                g.fill(0);
                let (bytes, tail) = tail.split_at_mut(len);
                run = tail;
                run_at = slot.offset + len as u64;
                jobs.push((t, slot.dtype, bytes));
            }
            run.fill(0);
        }
        spread(jobs, |(t, _, _)| t.numel(), |(t, dtype, run)| write_gpu_bytes(t, dtype, run));
        {
            let mut view = staging
                .slice(..self.staged)
                .get_mapped_range_mut()
                .map_err(|e| Error::Gpu(format!("writing the graph inputs: {e}")))?;
            for &(start, end) in runs {
                let (a, b) = (start as usize, end as usize);
                view.slice(a..b).copy_from_slice(&io.bytes[a..b]);
            }
        }
        staging.unmap();
        io.staging_mapped = false;
        Ok(())
    }

    /// Records every dispatch, `reps` times over, in one compute pass of `encoder`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, reps: usize, timestamps: Option<(&wgpu::QuerySet, u32)>) {
        self.record_keeping(encoder, reps, timestamps, &|_| true);
    }

    /// [`Executable::record`] of only the dispatches `keep` takes, by index in
    /// [`Executable::kernels`]' order: what leaving the others out saves, measured (the
    /// outputs are then wrong; `glufuse bench MODEL --leave-out`).
    pub fn record_keeping(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        reps: usize,
        timestamps: Option<(&wgpu::QuerySet, u32)>,
        keep: &dyn Fn(usize) -> bool,
    ) {
        let mut pass = timed_pass(encoder, "glufuse", timestamps);
        for _ in 0..reps {
            for (_, d) in self.dispatches.iter().enumerate().filter(|(i, _)| keep(*i)) {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
            }
        }
    }

    /// Records the dispatches `cycle` (indices in [`Executable::kernels`]' order, in that
    /// order) `times` over in one compute pass of `encoder`, on this executable's buffers:
    /// `&[i]` is what dispatch `i` costs alone, a run of the dispatches before it and then `i`
    /// what it costs after them, each dispatch waiting for the one before as in a run (`glufuse
    /// bench MODEL --alone`, `--alone-after`). They compute on whatever the buffers hold;
    /// nothing else runs (an index past the dispatches records nothing).
    pub fn record_repeated(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        cycle: &[usize],
        times: usize,
        timestamps: Option<(&wgpu::QuerySet, u32)>,
    ) {
        let mut pass = timed_pass(encoder, "glufuse alone", timestamps);
        let ds: Vec<&Dispatch> = cycle.iter().filter_map(|&i| self.dispatches.get(i)).collect();
        for _ in 0..times {
            for d in &ds {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
            }
        }
    }

    /// Keeps the GPU busy with this executable's dispatches (over whatever its buffers hold)
    /// for `d` of wall clock, at least one run; returns the runs. A GPU left without work
    /// for about a second lowers its clocks and runs the next calls up to 3× slower until
    /// 100-300 ms of work have raised them again ([`WARM_UP`]): a server that wants its
    /// first request after a pause at full speed calls this first.
    pub fn warm_up(&self, d: std::time::Duration) -> Result<usize> {
        let dev = &self.gpu.device;
        let start = Instant::now();
        let mut runs = 0;
        while runs == 0 || start.elapsed() < d {
            let mut enc = dev.create_command_encoder(&Default::default());
            self.record(&mut enc, 1, None);
            self.gpu.scoped("warming up", || self.gpu.queue.submit([enc.finish()]))?;
            self.gpu.wait("warming up")?;
            runs += 1;
        }
        Ok(runs)
    }

    /// Runs the graph once and reads every output back: the inputs checked (see
    /// [`Session::bind`]; here they must have exactly the shapes this executable was compiled
    /// for) and copied up from the staging buffer, every dispatch and every output's copy
    /// submitted a few dozen dispatches at a time as they are recorded, one wait. A failed
    /// run-time check (an index out of range, say) is an
    /// error naming the node, and no outputs.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
        Ok(self.run_timed(inputs)?.0)
    }

    /// Its staging and readback buffers, locked ([`Io::lock`]).
    fn io(&self) -> std::sync::MutexGuard<'_, Io> {
        Io::lock(&self.io)
    }

    /// [`Executable::run`], and where its CPU time went.
    pub fn run_timed(&self, inputs: &HashMap<String, Tensor>) -> Result<(Vec<Tensor>, CallTimes)> {
        self.call(inputs, None)
    }

    /// [`Executable::run_timed`], with the inputs and outputs `feed` names kept on the GPU:
    /// each such input copied from its buffer instead of staged (it need not be in
    /// `inputs`), each such output copied into its buffer instead of read back (it is not
    /// among those returned, which are the others in order).
    pub(crate) fn call(
        &self,
        inputs: &HashMap<String, Tensor>,
        feed: Option<&Feed>,
    ) -> Result<(Vec<Tensor>, CallTimes)> {
        let mut io = self.io();
        let t0 = Instant::now();
        self.check_given(inputs, feed)?;
        if let Some(f) = feed {
            self.check_feed(f)?;
        }
        let runs = self.staged_runs(feed);
        let plan = feed.map(|f| self.feed_plan(f)).transpose()?;
        io.fit(self.gpu, self.staged, self.read)?;
        let staging = io.staging.clone();
        let readback =
            io.readback.clone().ok_or_else(|| Error::Internal("a fitted Io without a readback buffer".into()))?;
        // Many inputs' bytes staged and the run recorded at the same time, on two threads:
        // the recording does not read the inputs (wgpu checks that the staging buffer is
        // unmapped when the run is submitted, not when its copy is recorded). Few are staged
        // first, on this thread: the handoff to the pool costs more than they take.
        let io_state: &mut Io = &mut io;
        let mut stage = || (self.stage_inputs(io_state, inputs, &runs), Instant::now());
        // The run in several command buffers, each submitted as soon as it is recorded: the
        // GPU starts on the first dispatches while the rest are recorded.
        let parts = submits(self.dispatches.len());
        let record = |i: usize| {
            let t = Instant::now();
            let part = (parts[i].clone(), i == 0, i + 1 == parts.len());
            (self.record_part(staging.as_ref(), &readback, &runs, feed.zip(plan.as_ref()), part), t.elapsed())
        };
        let staged_bytes: u64 = runs.iter().map(|(a, b)| b - a).sum();
        let ((staged, t1), (cmd, recorded)) = if staged_bytes >= OVERLAP_MIN_BYTES {
            rayon::join(stage, || record(0))
        } else {
            let staged = stage();
            (staged, record(0))
        };
        staged?;
        let cmd = cmd?;
        let t2 = Instant::now();
        self.gpu.scoped("running the graph", || self.gpu.queue.submit([cmd]))?;
        for i in 1..parts.len() {
            let cmd = record(i).0?;
            self.gpu.scoped("running the graph", || self.gpu.queue.submit([cmd]))?;
        }
        // The staging buffer is mapped again for the next run once this one is done with it.
        let staged = staging.as_ref().filter(|_| !runs.is_empty()).map(|b| map_async(b, wgpu::MapMode::Write));
        let read = map_async(&readback, wgpu::MapMode::Read);
        self.gpu.wait("running the graph")?;
        self.gpu.take_errors()?;
        if let Some(done) = staged {
            mapped(&done, "mapping the input staging buffer")?;
            io.staging_mapped = true;
        }
        mapped(&read, "reading results back")?;
        let t3 = Instant::now();
        let result = {
            match readback.slice(..).get_mapped_range() {
                Ok(view) => self.read_results(bytemuck::cast_slice(&view), feed),
                Err(e) => Err(Error::Gpu(format!("reading results back: {e}"))),
            }
        };
        readback.unmap();
        let t4 = Instant::now();
        let us = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1e6;
        let times = CallTimes {
            bind_us: 0.0,
            upload_us: us(t0, t1),
            encode_us: recorded.as_secs_f64() * 1e6,
            submit_wait_us: us(t2, t3),
            readback_us: us(t3, t4),
        };
        Ok((result?, times))
    }

    /// Command buffer `part` of one run ([`submits`]): the first copies the
    /// inputs up (the staged `runs`, then those `feed` takes from the GPU) and clears the
    /// error words and flags; each records its dispatches; the last copies the outputs into
    /// the readback buffer (or, those `feed` keeps, rounded where they are f16 and copied into
    /// its buffer).
    fn record_part(
        &self,
        staging: Option<&wgpu::Buffer>,
        readback: &wgpu::Buffer,
        runs: &[(u64, u64)],
        feed: Option<(&Feed, &FeedPlan)>,
        part: (std::ops::Range<usize>, bool, bool),
    ) -> Result<wgpu::CommandBuffer> {
        let dev = &self.gpu.device;
        let (range, first, last) = part;
        self.gpu.scoped("recording the run", || {
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("glufuse run") });
            if first {
                self.record_inputs(&mut enc, staging, runs, feed);
            }
            if !range.is_empty() {
                self.record_keeping(&mut enc, 1, None, &|i| range.contains(&i));
            }
            if last {
                self.record_outputs(&mut enc, readback, feed);
            }
            enc.finish()
        })
    }

    /// A run's start: the staged inputs in a copy a run (one where every input is staged:
    /// the inputs' buffer is laid out as the staging buffer), those `feed` takes from the GPU,
    /// the error words and flags cleared.
    fn record_inputs(
        &self,
        enc: &mut wgpu::CommandEncoder,
        staging: Option<&wgpu::Buffer>,
        runs: &[(u64, u64)],
        feed: Option<(&Feed, &FeedPlan)>,
    ) {
        {
            let inputs_buffer = self.inputs.first().map(|slot| &self.buffers[self.buffer_of[&slot.value].buffer]);
            if let (Some(staging), Some(dst)) = (staging, inputs_buffer) {
                for &(start, end) in runs {
                    enc.copy_buffer_to_buffer(staging, start, dst, start, end - start);
                }
            }
            if let (Some((f, plan)), Some(dst)) = (feed, inputs_buffer) {
                if let Some(src) = f.from {
                    for &(from, to, bytes) in &plan.copies_in {
                        enc.copy_buffer_to_buffer(src, from, dst, to, bytes);
                    }
                }
            }
            if let Some(e) = &self.errors {
                enc.clear_buffer(&e.buffer, 0, None);
            }
            if let Some(f) = &self.flags {
                enc.clear_buffer(f, 0, None);
            }
        }
    }

    /// A run's end: the f16 outputs `feed` keeps rounded and copied into its buffer, the
    /// others and the error words copied into the readback buffer.
    fn record_outputs(
        &self,
        enc: &mut wgpu::CommandEncoder,
        readback: &wgpu::Buffer,
        feed: Option<(&Feed, &FeedPlan)>,
    ) {
        {
            if let Some((f, plan)) = feed {
                if let Some(first) = plan.rounding.first() {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("f16 outputs kept on the GPU, rounded"),
                        timestamp_writes: None,
                    });
                    pass.set_pipeline(&first.pipeline);
                    for r in &plan.rounding {
                        pass.set_bind_group(0, &r.group, &[]);
                        pass.dispatch_workgroups(r.workgroups[0], r.workgroups[1], 1);
                    }
                }
                if let Some(dst) = f.into {
                    for &(buffer, from, to, bytes) in &plan.copies_out {
                        enc.copy_buffer_to_buffer(&self.buffers[buffer], from, dst, to, bytes);
                    }
                }
            }
            // The outputs no kernel reads lie in one buffer, laid out in the readback buffer
            // as there: one copy of it all, or one a run of those read back where some are
            // kept on the GPU; each other output by a copy of its own.
            let f = feed.map(|(f, _)| f);
            if let Some(o) = self.outputs.iter().find(|o| o.shared) {
                let src = &self.buffers[self.buffer_of[&o.value].buffer];
                if f.is_none() {
                    enc.copy_buffer_to_buffer(src, 0, readback, 0, src.size());
                } else {
                    for (start, end) in self.shared_runs(f) {
                        enc.copy_buffer_to_buffer(src, start, readback, start, end - start);
                    }
                }
            }
            for (j, o) in self.outputs.iter().enumerate() {
                let bytes = o.words() as u64 * 4;
                if !o.shared && bytes > 0 && f.is_none_or(|f| f.output(j).is_none()) {
                    let p = self.buffer_of[&o.value];
                    enc.copy_buffer_to_buffer(&self.buffers[p.buffer], p.offset, readback, o.offset, bytes);
                }
            }
            if let Some(e) = &self.errors {
                enc.copy_buffer_to_buffer(&e.buffer, 0, readback, e.offset, e.buffer.size());
            }
        }
    }

    /// Where outputs `kept` (graph output indices) go in a buffer that keeps them on the GPU
    /// ([`Feed`]): each at its offset in the readback buffer less the first one's, so that
    /// neighbours there are neighbours in it (one copy for them); and the bytes the buffer
    /// needs.
    pub(crate) fn kept_layout(&self, kept: &[usize]) -> Result<(Vec<u64>, u64)> {
        let slots = kept
            .iter()
            .map(|&j| self.outputs.get(j).ok_or_else(|| Error::Internal(format!("no graph output {j} to keep"))))
            .collect::<Result<Vec<_>>>()?;
        let base = slots.iter().map(|o| o.offset).min().unwrap_or(0);
        let end = slots.iter().map(|o| o.offset + (o.words() as u64 * 4).max(4)).max().unwrap_or(base);
        Ok((slots.iter().map(|o| o.offset - base).collect(), end - base))
    }

    /// The copies and roundings of a call with `f` ([`FeedPlan`]); the roundings' bind
    /// groups are made the first time.
    fn feed_plan(&self, f: &Feed) -> Result<FeedPlan> {
        let bytes_of = |dims: &[usize]| dims.iter().map(|&d| d as u64).product::<u64>() * 4;
        // Fed inputs by offset, merged where their sources lie as their destinations do and
        // no staged input lies between them.
        let mut fed: Vec<(u64, u64, u64)> = self
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(i, s)| f.input(i).map(|from| (from, s.offset, bytes_of(&s.dims))))
            .filter(|&(_, _, n)| n > 0)
            .collect();
        fed.sort_by_key(|c| c.1);
        let mut copies_in: Vec<(u64, u64, u64)> = vec![];
        for (from, to, n) in fed {
            if let Some(last) = copies_in.last_mut() {
                let staged_between = self
                    .inputs
                    .iter()
                    .enumerate()
                    .any(|(i, s)| f.input(i).is_none() && s.offset >= last.1 && s.offset < to);
                let alike = from.checked_sub(last.0).is_some_and(|d| Some(d) == to.checked_sub(last.1));
                if alike && !staged_between {
                    last.2 = to + n - last.1;
                    continue;
                }
            }
            copies_in.push((from, to, n));
        }
        // Kept outputs by offset in the readback buffer, merged where they lie alike in their
        // buffer (the outputs' shared one, or the inputs' for a cache written in place) with
        // no more than padding between them: every value there starts at a multiple of
        // `align`, so a gap shorter than that holds no other value (nothing read back, no
        // input) that a merged copy or rounding would touch.
        let mut kept: Vec<(&OutputSlot, u64)> = self
            .outputs
            .iter()
            .enumerate()
            .filter_map(|(j, o)| f.output(j).map(|to| (o, to)))
            .filter(|(o, _)| o.words() > 0)
            .collect();
        kept.sort_by_key(|k| k.0.offset);
        let align = (self.gpu.limits.min_storage_buffer_offset_alignment as u64).max(wgpu::MAP_ALIGNMENT);
        // (buffer, from, to, bytes, every value f16)
        let mut runs: Vec<(usize, u64, u64, u64, bool)> = vec![];
        for (o, to) in kept {
            let p = self.buffer_of[&o.value];
            let n = o.words() as u64 * 4;
            let half = o.dtype == DType::F16;
            if let Some(last) = runs.last_mut() {
                let alike = p.offset.checked_sub(last.1).is_some_and(|d| Some(d) == to.checked_sub(last.2));
                let padding = p.offset.saturating_sub(last.1 + last.3) < align;
                if last.0 == p.buffer && alike && padding {
                    last.3 = last.3.max(p.offset + n - last.1);
                    last.4 &= half;
                    continue;
                }
            }
            runs.push((p.buffer, p.offset, to, n, half));
        }
        // An f16 run is rounded in one dispatch (the gaps between its values hold nothing);
        // a run of mixed dtypes, value by value.
        let mut round: Vec<(usize, u64, u64)> = vec![];
        for &(buffer, from, _, n, half) in &runs {
            if half {
                round.push((buffer, from, n));
                continue;
            }
            for o in self.outputs.iter().filter(|o| o.dtype == DType::F16) {
                let p = self.buffer_of[&o.value];
                let m = o.words() as u64 * 4;
                if p.buffer == buffer && p.offset >= from && p.offset + m <= from + n && m > 0 {
                    round.push((buffer, p.offset, m));
                }
            }
        }
        round.sort_unstable();
        round.dedup();
        let rounding = self.rounding(&round)?;
        Ok(FeedPlan { copies_in, copies_out: runs.into_iter().map(|r| (r.0, r.1, r.2, r.3)).collect(), rounding })
    }

    /// The dispatches rounding the f16 values of `ranges` (buffer, offset, bytes) in place
    /// before they are kept, as the host rounds the f16 values it reads back: the GPU holds
    /// f16 values as f32 words that only casts round, so the kept value is then the one a
    /// loop through the host would upload. Their bind groups are made the first time.
    fn rounding(&self, ranges: &[(usize, u64, u64)]) -> Result<Vec<Rounding>> {
        if ranges.is_empty() {
            return Ok(vec![]);
        }
        let pipeline = self.gpu.round_f16_pipeline()?;
        let mut groups = self.rounders.lock().unwrap_or_else(|p| p.into_inner());
        let max = self.gpu.limits.max_compute_workgroups_per_dimension.max(1) as u64;
        let mut out = vec![];
        for &(buffer, offset, bytes) in ranges {
            let group = match groups.get(&(buffer, offset, bytes)) {
                Some(g) => g.clone(),
                None => {
                    let g = self.gpu.scoped("binding f16 outputs to round", || {
                        self.gpu.create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some("round f16"),
                            layout: &pipeline.get_bind_group_layout(0),
                            entries: &[wgpu::BindGroupEntry {
                                binding: 0,
                                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer: &self.buffers[buffer],
                                    offset,
                                    size: wgpu::BufferSize::new(bytes),
                                }),
                            }],
                        })
                    })?;
                    groups.insert((buffer, offset, bytes), g.clone());
                    g
                }
            };
            let n = (bytes / 4).div_ceil(codegen::ROUND_F16_WORKGROUP as u64);
            let x = n.min(max);
            out.push(Rounding { pipeline: pipeline.clone(), group, workgroups: [x as u32, n.div_ceil(x) as u32] });
        }
        Ok(out)
    }

    /// The byte ranges of the outputs' shared buffer to read back where `feed` keeps some
    /// outputs on the GPU: runs of the others by offset, each up to the next one kept.
    fn shared_runs(&self, feed: Option<&Feed>) -> Vec<(u64, u64)> {
        // Each value of the buffer once, by offset: read back where any output of it is (the
        // same value may be two outputs, one kept and one not).
        let mut values: Vec<(u64, u64, bool)> = vec![];
        for (j, o) in self.outputs.iter().enumerate().filter(|(_, o)| o.shared) {
            let read = feed.is_none_or(|f| f.output(j).is_none());
            match values.iter_mut().find(|v| v.0 == o.offset) {
                Some(v) => v.2 |= read,
                None => values.push((o.offset, (o.words() as u64 * 4).max(4), read)),
            }
        }
        values.sort_by_key(|v| v.0);
        let mut runs: Vec<(u64, u64)> = vec![];
        let mut open = false;
        for (at, bytes, read) in values {
            match runs.last_mut() {
                Some(run) if read && open => run.1 = at + bytes,
                _ if read => runs.push((at, at + bytes)),
                _ => {}
            }
            open = read;
        }
        runs
    }

    /// Checks that `f` fits this executable: its buffers hold the values it takes from them
    /// or puts there, and no output it keeps is stored as packed f16 (its words are not an
    /// input's).
    fn check_feed(&self, f: &Feed) -> Result<()> {
        if f.inputs.len() > self.inputs.len() || f.outputs.len() > self.outputs.len() {
            return Err(Error::Internal("a feed for more inputs or outputs than the graph has".into()));
        }
        let bytes_of = |dims: &[usize]| dims.iter().map(|&d| d as u64).product::<u64>() * 4;
        for (i, slot) in self.inputs.iter().enumerate() {
            if let Some(at) = f.input(i) {
                if f.from.is_none_or(|b| b.size() < at + bytes_of(&slot.dims)) {
                    return Err(Error::Internal(format!("graph input '{}' is fed from past its buffer", slot.name)));
                }
            }
        }
        for (j, o) in self.outputs.iter().enumerate() {
            if let Some(at) = f.output(j) {
                if o.packed {
                    return Err(Error::input(format!(
                        "graph output {j} is stored on the GPU as packed f16, which no graph input takes: it cannot be fed back"
                    )));
                }
                if f.into.is_none_or(|b| b.size() < at + o.words() as u64 * 4) {
                    return Err(Error::Internal(format!("graph output {j} is kept past its buffer")));
                }
            }
        }
        Ok(())
    }

    /// The outputs from the readback words, or the error of the first kernel (in dispatch
    /// order) whose run-time check failed.
    fn read_results(&self, words: &[u32], feed: Option<&Feed>) -> Result<Vec<Tensor>> {
        if let Some(e) = &self.errors {
            for (j, &k) in e.kernels.iter().enumerate() {
                let at = ((e.offset + j as u64 * e.stride) / 4) as usize;
                let site = words[at] as usize;
                if site == 0 {
                    continue;
                }
                let checks = &self.kernels[k].source().checks;
                let check = checks.get(site - 1).ok_or_else(|| {
                    Error::Internal(format!(
                        "kernel '{}' recorded check {site} of {}",
                        self.kernels[k].source().name,
                        checks.len()
                    ))
                })?;
                return Err(check.error(words[at + 1] as i32, words[at + 2]));
            }
        }
        let jobs: Vec<(&OutputSlot, &[u32])> = self
            .outputs
            .iter()
            .enumerate()
            .filter(|(j, _)| feed.is_none_or(|f| f.output(*j).is_none()))
            .map(|(_, o)| {
                let at = (o.offset / 4) as usize;
                (o, &words[at..at + o.words()])
            })
            .collect();
        spread(
            jobs,
            |(_, w)| w.len(),
            |(o, w)| {
                let n = o.dims.iter().product::<usize>();
                let buf = if o.dtype.is_float() && n * 4 >= HUGE_OUTPUT_BYTES { host_vec(n) } else { Vec::new() };
                if o.packed {
                    Tensor::from_packed_f16_words_in(o.dims.clone(), w, buf)
                } else {
                    Tensor::from_gpu_words_in(o.dtype, o.dims.clone(), w, buf)
                }
            },
        )
        .into_iter()
        .collect()
    }
}

/// Outputs of at least this many bytes are read back into memory asked for in huge pages
/// ([`host_vec`]).
const HUGE_OUTPUT_BYTES: usize = 4 << 20;

/// An empty vector with room for `n` values whose whole 2 MiB pages are advised to be backed
/// by huge pages (Linux's transparent huge pages, where they are on for advised memory, as on
/// Debian's default). Filling freshly allocated memory costs a page fault per 4 KiB page: on
/// the H100 machine and a 2-core VM, reading back a prefill's 78 MB of logits took 66 and 80 ms
/// that way, against 20 ms in huge pages (and 14 ms into memory already touched).
fn host_vec(n: usize) -> Vec<f32> {
    let v: Vec<f32> = Vec::with_capacity(n);
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let p = v.as_ptr() as usize;
        let (start, end) = (p.next_multiple_of(HUGE), (p + n * 4) / HUGE * HUGE);
        if end > start {
            // SAFETY: madvise only advises the kernel on how to back pages of this process's
            // own allocation (whole pages inside the vector's capacity, none yet touched); it
            // reads and writes no memory, and a failure (an older kernel) changes nothing.
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

/// What a `map_async` callback reported, once it has run.
type MapDone = Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>;

/// Asks for the whole of `buffer` to be mapped; the result lands in what is returned once
/// the device is polled.
fn map_async(buffer: &wgpu::Buffer, mode: wgpu::MapMode) -> MapDone {
    let done: MapDone = Arc::new(Mutex::new(None));
    let flag = done.clone();
    buffer.slice(..).map_async(mode, move |r| *flag.lock().unwrap_or_else(|p| p.into_inner()) = Some(r));
    done
}

/// Whether a mapping asked for with [`map_async`] succeeded (the device polled since).
fn mapped(done: &MapDone, what: &str) -> Result<()> {
    match done.lock().unwrap_or_else(|p| p.into_inner()).take() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(Error::Gpu(format!("{what}: {e}"))),
        None => Err(Error::Gpu(format!("{what}: the GPU never finished"))),
    }
}

/// Maps the whole of `buffer` and waits for it.
fn map_and_wait(gpu: &Gpu, buffer: &wgpu::Buffer, mode: wgpu::MapMode, what: &str) -> Result<()> {
    let done = map_async(buffer, mode);
    gpu.wait(what)?;
    gpu.take_errors()?;
    mapped(&done, what)
}

/// Back-to-back dispatches per timing of [`Executable::tune_gemms`] (one on a software
/// adapter).
const TUNE_REPS: usize = 3;

/// Writes `t`'s values as the GPU holds values of `dtype` into `out` (4 bytes a value), as
/// little-endian bytes: f32 bits (f16 rounded), integers as i32 (the caller has checked that
/// they fit), booleans as 0 or 1; a block at a time through a buffer on the stack.
fn write_gpu_bytes(t: &Tensor, dtype: DType, out: &mut [u8]) {
    const BLOCK: usize = 1024;
    let mut words = [0u32; BLOCK];
    for b in 0..t.numel().div_ceil(BLOCK) {
        let (lo, hi) = (b * BLOCK, ((b + 1) * BLOCK).min(t.numel()));
        let w = &mut words[..hi - lo];
        match t.data() {
            Data::F32(v) if dtype == DType::F16 => {
                let f: &mut [f32] = bytemuck::cast_slice_mut(w);
                f.copy_from_slice(&v[lo..hi]);
                crate::tensor::round_f16(f);
            }
            Data::F32(v) => w.iter_mut().zip(&v[lo..hi]).for_each(|(o, x)| *o = x.to_bits()),
            Data::I64(v) => w.iter_mut().zip(&v[lo..hi]).for_each(|(o, &x)| *o = x as i32 as u32),
            Data::Bool(v) => w.iter_mut().zip(&v[lo..hi]).for_each(|(o, &x)| *o = x as u32),
        }
        out[lo * 4..hi * 4].copy_from_slice(bytemuck::cast_slice(w));
    }
}

/// Fewest words a call's inputs, or its outputs, take in all for [`spread`] to convert them
/// on several threads: a decode step's KV cache (48 tensors of 16384 values at past 128) and
/// the 49 outputs read back (logits and the present keys and values).
const SPREAD_MIN_WORDS: usize = 1 << 18;

/// `work` of each item, in the items' order: where their `words` add up to
/// [`SPREAD_MIN_WORDS`] or more, on the threads of rayon's pool (kept between calls), else in
/// order on this thread. Threads spawned for each call, as this did before, cost more than
/// the work on the H200 machine: a decode step's inputs took 450–570 µs to convert on 8 fresh
/// threads and its outputs 560–600 µs (`benches/results/h200-2026-11-29-calls.md`).
fn spread<T: Send, R: Send>(items: Vec<T>, words: impl Fn(&T) -> usize, work: impl Fn(T) -> R + Sync + Send) -> Vec<R> {
    use rayon::prelude::*;
    let total: usize = items.iter().map(&words).sum();
    if total < SPREAD_MIN_WORDS || items.len() < 2 || crate::tensor::host_threads() < 2 {
        return items.into_iter().map(work).collect();
    }
    items.into_par_iter().map(work).collect()
}

/// The offsets of runs of `sizes` bytes laid end to end, each at a multiple of `align` and
/// taking at least 4 bytes (so that an empty one binds too), and the bytes they take in all.
fn pack(sizes: &[u64], align: u64) -> (Vec<u64>, u64) {
    let mut total = 0u64;
    let offsets = sizes
        .iter()
        .map(|&n| {
            let at = total.next_multiple_of(align);
            total = at + n.max(4);
            at
        })
        .collect();
    (offsets, total)
}

/// One kernel's dispatch: `pipeline` (its code's, [`Gpu::pipelines`]) and a bind group over
/// the executable's buffers; `err` is the error words' buffer and offset for a kernel with
/// run-time checks, `flags` the flags buffer, offset and bytes for a kernel that counts flags.
#[allow(clippy::too_many_arguments)]
fn dispatch(
    gpu: &Gpu,
    g: &Graph,
    buffers: &[wgpu::Buffer],
    buffer_of: &HashMap<Value, Place>,
    s: &codegen::KernelSource,
    pipeline: wgpu::ComputePipeline,
    err: Option<(&wgpu::Buffer, u64)>,
    scratch: Option<&wgpu::Buffer>,
    flags: Option<(&wgpu::Buffer, u64, u64)>,
) -> Result<Dispatch> {
    // Each binding in turn: a buffer from `offset`, `size` bytes of it (all of the rest: None).
    let mut entries: Vec<wgpu::BindGroupEntry> = vec![];
    let mut bind = |buffer, offset, size| {
        let resource = wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset, size });
        entries.push(wgpu::BindGroupEntry { binding: entries.len() as u32, resource });
    };
    for bd in &s.bindings {
        let p = buffer_of.get(&bd.value).ok_or_else(|| {
            Error::Internal(format!("kernel '{}' binds a value without a buffer: '{}'", s.name, g.value_name(bd.value)))
        })?;
        bind(&buffers[p.buffer], p.offset, p.size);
    }
    if s.scratch_bytes > 0 {
        let buffer = scratch.ok_or_else(|| Error::Internal(format!("kernel '{}' has no scratch buffer", s.name)))?;
        bind(buffer, 0, None);
    }
    if s.flag_words > 0 {
        let (buffer, offset, bytes) =
            flags.ok_or_else(|| Error::Internal(format!("kernel '{}' counts flags but has none", s.name)))?;
        bind(buffer, offset, wgpu::BufferSize::new(bytes));
    }
    if !s.checks.is_empty() {
        let (buffer, offset) =
            err.ok_or_else(|| Error::Internal(format!("kernel '{}' checks but has no error words", s.name)))?;
        bind(buffer, offset, wgpu::BufferSize::new(ERROR_WORDS * 4));
    }
    let group = gpu.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&s.name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    Ok(Dispatch { pipeline, group, workgroups: s.workgroups })
}

/// The bytes a weight or constant is uploaded as: packed f16 pairs for f16 weights, one
/// 32-bit word per element otherwise (integers checked to fit, the error naming the node).
fn source_words(node: &Node) -> Result<Vec<u32>> {
    // A 4-bit weight: the packed layout codegen's kernels read.
    if let Some(words) = codegen::source_words(node)? {
        return Ok(words);
    }
    if let (Op::Weight(init), DType::F16) = (&node.op, node.outputs[0].dtype) {
        // Packed two to a word straight from the values held (a model's weights: no copy).
        if let crate::ir::WeightInit::Data(v) = init {
            return Ok(packed_halves(v));
        }
        if let Some(v) = crate::tensor::weight_values(node).as_f32() {
            return Ok(packed_halves(v));
        }
    }
    crate::tensor::weight_values(node).to_gpu_words().map_err(|m| Error::graph(&node.name, m))
}

/// `v` rounded to f16 (to nearest, ties to even) and packed two to a word, the first of each
/// pair in the low half, as the kernels read f16 weights; an odd count ends with a zero half.
/// By `half`'s slice conversion (SIMD where the CPU has it): value by value, with the copies
/// around it, uploading a Qwen2-0.5B-sized f16 model took 3.2 s on the H200 machine.
fn packed_halves(v: &[f32]) -> Vec<u32> {
    use half::slice::HalfFloatSliceExt;
    let mut words = vec![0u32; v.len().div_ceil(2)];
    let halves: &mut [half::f16] = bytemuck::cast_slice_mut(&mut words);
    halves[..v.len()].convert_from_f32_slice(v);
    words
}

/// The words of a symbolic constant under the binding (`Shape` of a symbolic value, as data).
fn sym_constant_bytes(node: &Node, exprs: &[crate::ir::DimExpr], b: &Bindings) -> Result<Vec<u8>> {
    let dtype = node.outputs[0].dtype;
    let v = crate::ir::ops::source::sym_constant_values(exprs, dtype, b).map_err(|m| Error::graph(&node.name, m))?;
    let words = Tensor::from_data(dtype, vec![v.len()], Data::I64(v))
        .and_then(|t| t.to_gpu_words().map_err(|m| Error::graph(&node.name, m)))?;
    Ok(bytemuck::cast_slice(&words).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packed halves are the values rounded one by one (ties to even, overflow to infinity,
    /// NaN kept), the first of a pair in the low half of its word, an odd count padded.
    #[test]
    fn f16_weights_pack_as_rounded_one_by_one() {
        let edge = [0.1, -2.5e-8, 1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 65519.0, 65520.0, f32::NAN, -0.0];
        for n in [0, 1, 2, 7, 1025, 5000] {
            let v: Vec<f32> =
                (0..n).map(|i| if i < edge.len() { edge[i] } else { (i as f32 * 0.37).sin() * 3.0 }).collect();
            let words = packed_halves(&v);
            assert_eq!(words.len(), n.div_ceil(2));
            for (j, &x) in v.iter().enumerate() {
                let got = (words[j / 2] >> (16 * (j % 2))) as u16;
                assert_eq!(got, half::f16::from_f32(x).to_bits(), "value {j} ({x}) of {n}");
            }
            if n % 2 == 1 {
                assert_eq!(words[n / 2] >> 16, 0, "the pad of {n}");
            }
        }
    }

    /// A call's command buffers cover its dispatches in order, each once: the first 16, then
    /// 24 a buffer; one empty buffer for none (it still copies the inputs and outputs).
    #[test]
    fn command_buffers_take_every_dispatch_once_in_order() {
        assert_eq!(submits(0), vec![0..0]);
        assert_eq!(submits(5), vec![0..5]);
        assert_eq!(submits(16), vec![0..16]);
        assert_eq!(submits(17), vec![0..16, 16..17]);
        assert_eq!(submits(40), vec![0..16, 16..40]);
        assert_eq!(submits(128), vec![0..16, 16..40, 40..64, 64..88, 88..112, 112..128]);
    }

    /// A decode step's caches kept on the GPU take one copy each way and, f16, one rounding
    /// dispatch: over a dynamic cache (the present caches in the outputs' shared buffer) and a
    /// static one (written in place, in the inputs' buffer); a step that keeps only the keys
    /// takes a copy a key each way (the values lie between them).
    #[test]
    fn neighbouring_caches_are_kept_in_one_copy_each_way() {
        let gpu = match Gpu::new() {
            Ok(g) => g,
            Err(e) if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") => panic!("REQUIRE_GPU=1: {e}"),
            Err(e) => return eprintln!("SKIPPED: no GPU adapter ({e})"),
        };
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/models");
        for (model, f16, keys_only, want) in [
            ("llama_kvstep", false, false, (1, 1, 0)),
            ("llama_f16_kvstep", true, false, (1, 1, 1)),
            ("llama_f16_staticstep", true, false, (1, 1, 1)),
            ("llama_f16_kvstep", true, true, (2, 2, 2)),
        ] {
            let mut g = crate::files::load_graph(&models.join(format!("{model}.onnx"))).unwrap();
            crate::passes::PassManager::standard().run(&mut g).unwrap();
            let feedback = Feedback::caches(&g).unwrap();
            let pairs: Vec<(usize, String)> = feedback
                .pairs
                .iter()
                .filter(|p| !keys_only || p.1.ends_with("_k"))
                .map(|p| (p.0, p.2.clone()))
                .collect();
            // A step at past 9 keeps its outputs; the step at past 10 takes them (a static
            // cache has no past: the same binding twice).
            let exe = |past: usize| {
                let mut b = Bindings::new();
                for (k, v) in [("past", past), ("all", past + 1), ("new", 1), ("batch", 1)] {
                    let used = g
                        .input_nodes()
                        .iter()
                        .any(|&n| g.node(n).outputs[0].shape.iter().any(|d| d.symbols().iter().any(|s| s == k)));
                    if used {
                        b.insert(k.into(), v);
                    }
                }
                Executable::new(&gpu, &g, &b).unwrap()
            };
            let (first, next) = (exe(9), exe(10));
            let outs: Vec<usize> = pairs.iter().map(|p| p.0).collect();
            let (at, bytes) = first.kept_layout(&outs).unwrap();
            let buffer = gpu.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: bytes,
                usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let names: Vec<String> = g.input_nodes().iter().map(|&n| g.node(n).name.clone()).collect();
            let mut keep =
                Feed { from: None, inputs: vec![], into: Some(&buffer), outputs: vec![None; g.outputs.len()] };
            let mut take = Feed { from: Some(&buffer), inputs: vec![None; names.len()], into: None, outputs: vec![] };
            for ((j, inp), &o) in pairs.iter().zip(&at) {
                keep.outputs[*j] = Some(o);
                take.inputs[names.iter().position(|n| n == inp).unwrap()] = Some(o);
            }
            first.check_feed(&keep).unwrap();
            next.check_feed(&take).unwrap();
            let (kept, taken) = (first.feed_plan(&keep).unwrap(), next.feed_plan(&take).unwrap());
            let got = (taken.copies_in.len(), kept.copies_out.len(), kept.rounding.len());
            assert_eq!(
                got,
                want,
                "{model}{}: copies in, copies out, roundings",
                if keys_only { " (keys)" } else { "" }
            );
            let exe = first;
            assert_eq!(f16, exe.outputs.iter().skip(1).all(|o| o.dtype == DType::F16));
        }
    }
}
