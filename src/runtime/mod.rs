//! The wgpu executor: opens the GPU ([`Gpu`]), uploads weights once, plans intermediate buffers
//! (reused once their last reader has run; `Reshape` is a view of its input), records every
//! dispatch of a run in one command encoder, and reads the outputs back.
//!
//! Only validated [`Kernel`]s reach it. wgpu errors are caught by error scopes and an
//! uncaptured-error handler and come back as [`Error::Gpu`], never as a panic.

use crate::codegen::tune::Tuned;
use crate::codegen::Tiles;
use crate::codegen::{self, gpu_bytes, Kernel, Target};
use crate::ir::*;
use crate::shape::{bind, concrete, Bindings};
use crate::tensor::{round_f16, weight_values, Data, Tensor};
use crate::{Error, Graph, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod gpu;
mod timing;

pub use gpu::{adapter_rank, is_software_adapter, parse_backends, Gpu};
pub use timing::{time, timed_pass};

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

/// Back-to-back dispatches per timing of [`Executable::tune_gemms`] (one on a software
/// adapter).
const TUNE_REPS: usize = 3;
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
        gpu.scoped("creating pipelines", || -> Result<()> {
            for k in &kernels {
                dispatches.push(dispatch(gpu, g, &buffers, &buffer_of, k.source())?);
            }
            Ok(())
        })??;
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
    /// Llama-3-8B). The choice is codegen's ([`codegen::tune::tune`]: which variants, how
    /// many rounds, which wins); this only times each variant it is given, over the
    /// executable's own buffers. Every tiling sums k in the same order, so the choice changes
    /// no result bit. Costs about 20 dispatches per candidate and distinct shape (tens of
    /// milliseconds for a Llama-3-8B prefill GEMM). On a software adapter ([`Gpu::is_software`])
    /// it shrinks to one round of one dispatch per candidate
    /// ([`codegen::tune::SOFTWARE_ROUNDS`]): its timings say little about a GPU, and each
    /// costs CPU time.
    pub fn tune_gemms(&mut self, g: &Graph, b: &Bindings, target: &Target, candidates: &[Tiles]) -> Result<Vec<Tuned>> {
        // Pipelines by what they run (WGSL and bindings): the executable's own and every
        // candidate timed, so that a kernel already on the chosen tiling keeps its pipeline
        // and the winner keeps the one it was timed with.
        let key = |k: &Kernel| (k.source().wgsl.clone(), k.source().bindings.clone());
        let mut pipelines: HashMap<_, Dispatch> =
            self.kernels.iter().zip(&self.dispatches).map(|(k, d)| (key(k), d.clone())).collect();
        let (gpu, buffers, buffer_of) = (self.gpu, &self.buffers, &self.buffer_of);
        let mut pipeline = |k: &Kernel, what: &str| -> Result<Dispatch> {
            if let Some(d) = pipelines.get(&key(k)) {
                return Ok(d.clone());
            }
            let d = gpu.scoped(what, || dispatch(gpu, g, buffers, buffer_of, k.source()))??;
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

/// The pipeline and bind group of one kernel over the executable's buffers.
fn dispatch(
    gpu: &Gpu,
    g: &Graph,
    buffers: &[wgpu::Buffer],
    buffer_of: &HashMap<Value, usize>,
    s: &codegen::KernelSource,
) -> Result<Dispatch> {
    let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&s.name),
        source: wgpu::ShaderSource::Wgsl(s.wgsl.as_str().into()),
    });
    let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&s.name),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            // wgpu zero-fills workgroup memory before a kernel runs unless told not to. On GL,
            // naga writes that fill as GLSL that Mesa's llvmpipe takes ten times as long to
            // compile as the kernel itself (70 s of CPU against 6 for a one-layer prefill
            // graph). glufuse's kernels write every workgroup cell they read, before a
            // barrier (glufuse-codegen's contract), so on GL the fill is skipped; elsewhere
            // drivers do it cheaply and it stays.
            zero_initialize_workgroup_memory: gpu.info.backend != wgpu::Backend::Gl,
            ..Default::default()
        },
        cache: None,
    });
    let mut entries: Vec<wgpu::BindGroupEntry> = vec![];
    for (i, bd) in s.bindings.iter().enumerate() {
        let buffer = buffer_of.get(&bd.value).map(|&b| &buffers[b]).ok_or_else(|| {
            Error::Internal(format!("kernel '{}' binds a value without a buffer: '{}'", s.name, g.value_name(bd.value)))
        })?;
        entries.push(wgpu::BindGroupEntry { binding: i as u32, resource: buffer.as_entire_binding() });
    }
    let group = gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(&s.name),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &entries,
    });
    Ok(Dispatch { pipeline, group, workgroups: s.workgroups })
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
