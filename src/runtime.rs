//! The wgpu executor: picks an adapter, uploads weights once, plans intermediate buffers
//! (reused once their last reader has run; `Reshape` is a view of its input), records every
//! dispatch of a run in one command encoder, and reads the outputs back.
//!
//! Only validated [`Kernel`]s reach it. wgpu errors are caught by error scopes and an
//! uncaptured-error handler and come back as [`Error::Gpu`], never as a panic.

use crate::codegen::gemm::Tiles;
use crate::codegen::{self, gpu_bytes, Kernel, Target};
use crate::ir::*;
use crate::shape::{bind, concrete, Bindings};
use crate::tensor::{round_f16, weight_values, Data, Tensor};
use crate::{Error, Graph, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// An opened GPU.
pub struct Gpu {
    /// The device.
    pub device: wgpu::Device,
    /// Its queue.
    pub queue: wgpu::Queue,
    /// What the adapter says about itself.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with.
    pub limits: wgpu::Limits,
    /// The features it was opened with.
    pub features: wgpu::Features,
    /// What the adapter supports below full WebGPU.
    pub downlevel: wgpu::DownlevelCapabilities,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Gpu {
    /// Opens the default adapter: `WGPU_BACKEND` (e.g. `vulkan`, `gl`) limits the backends,
    /// `WGPU_ADAPTER_NAME` picks an adapter whose name contains it.
    pub fn new() -> Result<Gpu> {
        pollster::block_on(Self::open())
    }

    async fn open() -> Result<Gpu> {
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let desc = wgpu::InstanceDescriptor { backends, ..wgpu::InstanceDescriptor::new_without_display_handle() };
        let instance = wgpu::Instance::new(desc);
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(want) => {
                let want = want.to_lowercase();
                let all = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = all.iter().map(|a| a.get_info().name).collect();
                all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want)).ok_or_else(|| {
                    Error::Gpu(format!("no adapter's name contains WGPU_ADAPTER_NAME={want:?}; adapters: {names:?}"))
                })?
            }
            Err(_) => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    force_fallback_adapter: false,
                    compatible_surface: None,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::Gpu(format!("no GPU adapter found ({e}); backends tried: {backends:?}")))?,
        };
        let info = adapter.get_info();
        let downlevel = adapter.get_downlevel_capabilities();
        let wanted = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("glufuse"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::Gpu(format!("cannot open a device on '{}': {e}", info.name)))?;
        let errors = Arc::new(Mutex::new(vec![]));
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(e.to_string());
        }));
        let lost = errors.clone();
        device.set_device_lost_callback(move |reason, msg| {
            lost.lock().unwrap_or_else(|p| p.into_inner()).push(format!("device lost ({reason:?}): {msg}"));
        });
        Ok(Gpu { device, queue, info, limits, features, downlevel, errors })
    }

    /// A line naming the adapter and backend.
    pub fn describe(&self) -> String {
        format!("{} ({:?}, {:?})", self.info.name, self.info.backend, self.info.device_type)
    }

    /// The code generation target for this device.
    pub fn target(&self) -> Target {
        let mut caps = naga::valid::Capabilities::empty();
        if self.features.contains(wgpu::Features::SHADER_F16) {
            caps |= naga::valid::Capabilities::SHADER_FLOAT16;
        }
        if self.downlevel.flags.contains(wgpu::DownlevelFlags::SHADER_F16_IN_F32) {
            caps |= naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        }
        // Subgroup reductions need one fixed subgroup size (so that every subgroup is full).
        let subgroup_size = (self.features.contains(wgpu::Features::SUBGROUP)
            && self.info.subgroup_min_size == self.info.subgroup_max_size)
            .then_some(self.info.subgroup_min_size);
        if subgroup_size.is_some() {
            caps |= naga::valid::Capabilities::SUBGROUP;
        }
        Target {
            caps,
            max_workgroups_per_dim: self.limits.max_compute_workgroups_per_dimension,
            max_binding_bytes: self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size),
            max_workgroup_storage_bytes: self.limits.max_compute_workgroup_storage_size,
            gemm_tiles: None,
            subgroup_size,
        }
    }

    fn take_errors(&self) -> Result<()> {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_empty() {
            Ok(())
        } else {
            Err(Error::Gpu(std::mem::take(&mut *e).join("; ")))
        }
    }

    /// Runs `f` inside validation and out-of-memory error scopes.
    fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let r = f();
        let ve = pollster::block_on(val.pop());
        let oe = pollster::block_on(oom.pop());
        if let Some(e) = oe {
            return Err(Error::Gpu(format!("out of GPU memory while {what}: {e}")));
        }
        if let Some(e) = ve {
            return Err(Error::Gpu(format!("wgpu rejected {what}: {e}")));
        }
        self.take_errors()?;
        Ok(r)
    }
}

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

/// Begins a compute pass, with timestamps written at its start and end into `timestamps`
/// (query set, first index) where given.
pub(crate) fn timed_pass<'e>(
    encoder: &'e mut wgpu::CommandEncoder,
    label: &str,
    timestamps: Option<(&wgpu::QuerySet, u32)>,
) -> wgpu::ComputePass<'e> {
    let tw = timestamps.map(|(q, i)| wgpu::ComputePassTimestampWrites {
        query_set: q,
        beginning_of_pass_write_index: Some(i),
        end_of_pass_write_index: Some(i + 1),
    });
    encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(label), timestamp_writes: tw })
}

/// Back-to-back dispatches per timing of [`Executable::tune_gemms`].
const TUNE_REPS: usize = 3;
/// Timing rounds over the candidates (each candidate's fastest round counts).
const TUNE_ROUNDS: usize = 5;

/// What [`Executable::tune_gemms`] did with one kernel.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The kernel (the node it computes).
    pub kernel: String,
    /// Each tiling timed and its µs per dispatch; empty where a kernel of the same shape was
    /// timed before.
    pub timings: Vec<(Tiles, f64)>,
    /// The tiling kept.
    pub chosen: Tiles,
}

/// A graph compiled for one device and one binding of its symbolic dims.
pub struct Executable<'a> {
    gpu: &'a Gpu,
    buffers: Vec<wgpu::Buffer>,
    buffer_of: HashMap<Value, usize>,
    dispatches: Vec<Dispatch>,
    inputs: Vec<(String, Value, TensorType)>,
    outputs: Vec<(Value, Vec<usize>)>,
    output_dtypes: Vec<DType>,
    kernels: Vec<Kernel>,
}

impl<'a> Executable<'a> {
    /// Generates, validates and uploads everything a run of `g` needs.
    pub fn new(gpu: &'a Gpu, g: &Graph, b: &Bindings) -> Result<Self> {
        Self::with_target(gpu, g, b, &gpu.target())
    }

    /// [`Executable::new`] with code generation options of the caller's choosing (for
    /// example a forced GEMM tiling); `target` must not promise more than [`Gpu::target`].
    pub fn with_target(gpu: &'a Gpu, g: &Graph, b: &Bindings, target: &Target) -> Result<Self> {
        let kernels = codegen::generate(g, b, target)?;
        let order = g.topo_order()?;
        // Views share their input's buffer.
        let mut alias: HashMap<Value, Value> = HashMap::new();
        for &n in &order {
            if matches!(g.node(n).op, Op::Reshape { .. }) {
                let src = g.inputs(n)[0];
                let root = *alias.get(&src).unwrap_or(&src);
                alias.insert(Value::of(n), root);
            }
        }
        let root = |v: Value| *alias.get(&v).unwrap_or(&v);
        // Last reader of each buffer root (graph outputs live to the end).
        let pos: HashMap<_, _> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
        let mut last: HashMap<Value, usize> = HashMap::new();
        for &n in &order {
            for v in g.inputs(n) {
                let e = last.entry(root(v)).or_default();
                *e = (*e).max(pos[&n]);
            }
        }
        for &o in &g.outputs {
            last.insert(root(o), usize::MAX);
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let mut buffers: Vec<wgpu::Buffer> = vec![];
        let mut sizes: Vec<u64> = vec![];
        let mut buffer_of: HashMap<Value, usize> = HashMap::new();
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
                    let bytes = gpu_bytes(g, v, b)?.max(4);
                    if bytes > target.max_binding_bytes {
                        return Err(Error::Gpu(format!(
                            "value '{}' needs {bytes} bytes, more than this device binds in one buffer ({})",
                            g.value_name(v),
                            target.max_binding_bytes
                        )));
                    }
                    let reusable = !node.op.is_source();
                    let slot = if reusable {
                        free.iter().position(|&i| sizes[i] >= bytes).map(|p| free.swap_remove(p))
                    } else {
                        None
                    };
                    let i = slot.unwrap_or_else(|| {
                        buffers.push(gpu.device.create_buffer(&wgpu::BufferDescriptor {
                            label: Some(&node.name),
                            size: bytes.next_multiple_of(4),
                            usage,
                            mapped_at_creation: false,
                        }));
                        sizes.push(bytes);
                        buffers.len() - 1
                    });
                    buffer_of.insert(v, i);
                    if matches!(node.op, Op::Weight(_) | Op::Constant(_)) {
                        uploads.push((i, weight_bytes(node)));
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
            let i = buffer_of[r];
            buffer_of.insert(*v, i);
        }
        for (i, bytes) in uploads {
            gpu.queue.write_buffer(&buffers[i], 0, &bytes);
        }
        let mut dispatches = vec![];
        gpu.scoped("creating pipelines", || {
            for k in &kernels {
                dispatches.push(dispatch(gpu, g, &buffers, &buffer_of, k.source()));
            }
        })?;
        let inputs = g
            .input_nodes()
            .into_iter()
            .map(|n| (g.node(n).name.clone(), Value::of(n), g.node(n).outputs[0].clone()))
            .collect();
        let outputs = g
            .outputs
            .iter()
            .map(|&v| Ok((v, concrete(&g.ty(v).shape, b).map_err(|m| Error::graph(&g.node(v.node).name, m))?)))
            .collect::<Result<_>>()?;
        let output_dtypes = g.outputs.iter().map(|&v| g.ty(v).dtype).collect();
        Ok(Executable { gpu, buffers, buffer_of, dispatches, inputs, outputs, output_dtypes, kernels })
    }

    /// Times every aligned prefill GEMM of the executable (fused or plain) under each tiling
    /// of `candidates` on this device, and keeps the fastest: which tiling wins depends on
    /// the shape and the device (on an H100 the default wins at M=512 and loses at M=128 on
    /// Llama-3-8B). Kernels with the same WGSL (the same shape) are timed once. Every tiling
    /// sums k in the same order, so the choice changes no result bit. Candidates the device's
    /// workgroup memory cannot hold are skipped; with fewer than two left nothing is timed.
    /// Costs about 20 dispatches per candidate and distinct shape (tens of milliseconds for
    /// a Llama-3-8B prefill GEMM).
    pub fn tune_gemms(&mut self, g: &Graph, b: &Bindings, target: &Target, candidates: &[Tiles]) -> Result<Vec<Tuned>> {
        let fit: Vec<Tiles> = candidates
            .iter()
            .copied()
            .filter(|t| t.storage_bytes() <= target.max_workgroup_storage_bytes as usize)
            .collect();
        let mut report = vec![];
        if fit.len() < 2 {
            return Ok(report);
        }
        let mut decided: HashMap<String, Tiles> = HashMap::new();
        for i in 0..self.kernels.len() {
            let src = self.kernels[i].source().clone();
            if !codegen::gemm::KINDS.contains(&src.kind.as_str()) {
                continue;
            }
            let node =
                g.resolve(&src.name).ok_or_else(|| Error::Internal(format!("no node for kernel '{}'", src.name)))?;
            let variant = |t: Tiles| -> Result<Kernel> {
                let tt = Target { gemm_tiles: Some(t), ..target.clone() };
                let k = codegen::node_kernels(g, node.node, b, &tt)?
                    .into_iter()
                    .find(|k| k.name == src.name)
                    .ok_or_else(|| Error::Internal(format!("tiling {t} made no kernel '{}'", src.name)))?;
                codegen::validate(k, tt.caps)
            };
            let mut timings = vec![];
            // The chosen kernel and, when it was timed, its pipeline.
            let (kernel, timed, chosen) = match decided.get(&src.wgsl) {
                Some(&t) => (variant(t)?, None, t),
                None => {
                    let mut tried = vec![];
                    for &t in &fit {
                        let k = variant(t)?;
                        // The candidate the executable already runs keeps its pipeline.
                        let d = if k.source().wgsl == src.wgsl {
                            self.dispatches[i].clone()
                        } else {
                            self.gpu.scoped("creating a tuning pipeline", || {
                                dispatch(self.gpu, g, &self.buffers, &self.buffer_of, k.source())
                            })?
                        };
                        tried.push((t, k, d, f64::INFINITY));
                    }
                    // Rounds alternate the candidates and each keeps its fastest round, so a
                    // passing slowdown of the device cannot decide for one.
                    for _ in 0..TUNE_ROUNDS {
                        for (_, _, d, fastest) in &mut tried {
                            let (us, _) = time(self.gpu, TUNE_REPS, 1, |enc, reps, ts| d.record(enc, reps, ts))?;
                            *fastest = fastest.min(us);
                        }
                    }
                    timings = tried.iter().map(|(t, _, _, us)| (*t, *us)).collect();
                    let (t, k, d, _) = tried
                        .into_iter()
                        .min_by(|a, b| a.3.total_cmp(&b.3))
                        .expect("at least two candidates were timed");
                    decided.insert(src.wgsl.clone(), t);
                    (k, Some(d), t)
                }
            };
            if kernel.source().wgsl != src.wgsl {
                self.dispatches[i] = match timed {
                    Some(d) => d,
                    None => self.gpu.scoped("creating a pipeline", || {
                        dispatch(self.gpu, g, &self.buffers, &self.buffer_of, kernel.source())
                    })?,
                };
                self.kernels[i] = kernel;
            }
            report.push(Tuned { kernel: src.name, timings, chosen });
        }
        Ok(report)
    }

    /// Dispatches one run takes.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }

    /// The validated kernels, in dispatch order.
    pub fn kernels(&self) -> &[Kernel] {
        &self.kernels
    }

    /// Uploads the inputs (checked against the graph's types).
    pub fn write_inputs(&self, inputs: &HashMap<String, Tensor>) -> Result<()> {
        let mut b = Bindings::new();
        for (name, v, ty) in &self.inputs {
            let t = inputs.get(name).ok_or_else(|| Error::graph(name, "no value was given for this graph input"))?;
            bind(ty, t.shape(), &mut b).map_err(|m| Error::graph(name, m))?;
            let mut data = t.floats().map_err(|m| Error::graph(name, m))?.to_vec();
            if ty.dtype == DType::F16 {
                round_f16(&mut data);
            }
            let buf = &self.buffers[self.buffer_of[v]];
            if data.len() as u64 * 4 > buf.size() {
                return Err(Error::graph(name, "the input is larger than the graph was compiled for"));
            }
            self.gpu.queue.write_buffer(buf, 0, bytemuck::cast_slice(&data));
        }
        Ok(())
    }

    /// Records every dispatch, `reps` times over, in one compute pass of `encoder`.
    pub fn record(&self, encoder: &mut wgpu::CommandEncoder, reps: usize, timestamps: Option<(&wgpu::QuerySet, u32)>) {
        let mut pass = timed_pass(encoder, "glufuse", timestamps);
        for _ in 0..reps {
            for d in &self.dispatches {
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
            }
        }
    }

    /// Runs the graph once and reads every output back.
    pub fn run(&self, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
        self.write_inputs(inputs)?;
        let dev = &self.gpu.device;
        let staging: Vec<wgpu::Buffer> = self
            .outputs
            .iter()
            .map(|(_, d)| {
                dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: (d.iter().product::<usize>() as u64 * 4).max(4),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        self.gpu.scoped("running the graph", || {
            let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("glufuse run") });
            self.record(&mut enc, 1, None);
            for ((v, _), s) in self.outputs.iter().zip(&staging) {
                enc.copy_buffer_to_buffer(&self.buffers[self.buffer_of[v]], 0, s, 0, s.size());
            }
            self.gpu.queue.submit([enc.finish()]);
        })?;
        let mut out = vec![];
        for ((_, d), s) in self.outputs.iter().zip(&staging) {
            let slice = s.slice(..);
            let done = Arc::new(Mutex::new(None));
            let flag = done.clone();
            slice.map_async(wgpu::MapMode::Read, move |r| *flag.lock().unwrap_or_else(|p| p.into_inner()) = Some(r));
            dev.poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
            self.gpu.take_errors()?;
            match done.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(Error::Gpu(format!("reading results back: {e}"))),
                None => return Err(Error::Gpu("the GPU never finished the run".into())),
            }
            let n: usize = d.iter().product();
            let view = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading results back: {e}")))?;
            let data: Vec<f32> = bytemuck::cast_slice::<u8, f32>(&view[..n * 4]).to_vec();
            drop(view);
            s.unmap();
            out.push(Tensor::from_data(self.output_dtypes[out.len()], d.clone(), Data::F32(data))?);
        }
        Ok(out)
    }
}

/// Times `reps` repetitions of `record` per submission; returns the median µs per repetition
/// and whether timestamps were used.
pub(crate) fn time<F: Fn(&mut wgpu::CommandEncoder, usize, Option<(&wgpu::QuerySet, u32)>)>(
    gpu: &Gpu,
    reps: usize,
    samples: usize,
    record: F,
) -> Result<(f64, bool)> {
    let dev = &gpu.device;
    let ts = gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
    let qs = ts.then(|| {
        dev.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count: 2 })
    });
    let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read = dev.create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 16,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let period = gpu.queue.get_timestamp_period() as f64;
    let wait =
        || dev.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")));
    // Warm-up.
    let mut enc = dev.create_command_encoder(&Default::default());
    record(&mut enc, 1, None);
    gpu.queue.submit([enc.finish()]);
    wait()?;
    let mut times = vec![];
    for _ in 0..samples.max(1) {
        let mut enc = dev.create_command_encoder(&Default::default());
        let t0 = Instant::now();
        record(&mut enc, reps, qs.as_ref().map(|q| (q, 0)));
        if let Some(q) = &qs {
            enc.resolve_query_set(q, 0..2, &resolve, 0);
            enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
        }
        gpu.queue.submit([enc.finish()]);
        wait()?;
        let wall = t0.elapsed().as_secs_f64() * 1e6;
        let us = if qs.is_some() {
            let slice = read.slice(..);
            slice.map_async(wgpu::MapMode::Read, |_| {});
            wait()?;
            let ticks: Vec<u64> = {
                let v = slice.get_mapped_range().map_err(|e| Error::Gpu(e.to_string()))?;
                bytemuck::cast_slice::<u8, u64>(&v).to_vec()
            };
            read.unmap();
            ticks[1].saturating_sub(ticks[0]) as f64 * period / 1e3
        } else {
            wall
        };
        times.push(us / reps.max(1) as f64);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], qs.is_some()))
}

/// The pipeline and bind group of one kernel over the executable's buffers.
fn dispatch(
    gpu: &Gpu,
    g: &Graph,
    buffers: &[wgpu::Buffer],
    buffer_of: &HashMap<Value, usize>,
    s: &codegen::KernelSource,
) -> Dispatch {
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&s.name),
        source: wgpu::ShaderSource::Wgsl(s.wgsl.as_str().into()),
    });
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&s.name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let entries: Vec<wgpu::BindGroupEntry> = s
        .bindings
        .iter()
        .enumerate()
        .map(|(i, bd)| {
            let v = g.resolve(&bd.value).expect("kernel bindings name graph values");
            wgpu::BindGroupEntry { binding: i as u32, resource: buffers[buffer_of[&v]].as_entire_binding() }
        })
        .collect();
    let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&s.name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    Dispatch { pipeline, group, workgroups: s.workgroups }
}

/// The bytes a weight or constant is uploaded as (packed f16 pairs for f16 weights).
fn weight_bytes(node: &Node) -> Vec<u8> {
    let t = weight_values(node);
    // Code generation refuses graphs with values of other dtypes.
    let v = t.as_f32().unwrap_or(&[]);
    if matches!(node.op, Op::Weight(_)) && node.outputs[0].dtype == DType::F16 {
        let mut h: Vec<half::f16> = v.iter().map(|&x| half::f16::from_f32(x)).collect();
        if h.len() % 2 == 1 {
            h.push(half::f16::ZERO);
        }
        bytemuck::cast_slice(&h).to_vec()
    } else {
        bytemuck::cast_slice(v).to_vec()
    }
}
