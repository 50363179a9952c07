//! Opening the GPU: the adapter (chosen by `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`), a device
//! with the features glufuse can use (cooperative matrices included, where the adapter offers
//! them), error capture (wgpu errors become [`Error::Gpu`], never a panic), the code
//! generation [`Target`] the device supports, the device's pipeline cache
//! ([`Gpu::pipeline`]: one compiled pipeline per kernel code, [`KernelSource::code`]), and
//! counts of the buffers and bind groups glufuse made on it ([`Gpu::created`]: a run of a
//! [`super::Session`] on a binding it has run before makes none).
//!
//! Which adapter: every adapter of the allowed backends is listed, and the first by
//! [`adapter_rank`] is opened: Vulkan, Metal and DX12 before GL (wgpu's GL backend compiles
//! every shader through the driver's GLSL path, slower on Mesa's llvmpipe than lavapipe),
//! then hardware before software, discrete before integrated. `WGPU_BACKEND` (`vulkan`,
//! `metal`, `dx12`, `gl`, comma-separated) limits the backends, an unknown name being an
//! error; `WGPU_ADAPTER_NAME` picks the adapter whose name contains it.

use crate::codegen::{CoopClass, CoopMatrix, CoopScalar, CoopTile, KernelSource, Target};
use crate::{Error, Result};
use std::collections::HashMap;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How a [`Gpu`] is opened.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// How wgpu's allocator sizes the memory blocks it suballocates buffers from
    /// (`Performance`, wgpu's default: blocks of 128 to 256 MiB; a buffer larger than a
    /// block gets a block of its own).
    pub memory_hints: wgpu::MemoryHints,
    /// The longest a wait for the GPU may take before it is an error ([`Gpu::wait`]).
    /// `None`: `GLUFUSE_GPU_TIMEOUT` (seconds) where it is set, else [`WAIT_TIMEOUT`].
    pub wait_timeout: Option<std::time::Duration>,
}

/// The longest glufuse waits for the GPU to finish one submission unless told otherwise
/// ([`GpuOptions::wait_timeout`], `GLUFUSE_GPU_TIMEOUT`): ten minutes, far past any run the
/// tests or benchmarks make (a software adapter included), so that a device that stopped
/// answering is an error instead of a process that waits for ever.
pub const WAIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The wait limit `GLUFUSE_GPU_TIMEOUT` sets, if it is set and not empty
/// ([`parse_wait_timeout`]).
pub fn wait_timeout_from_env() -> std::result::Result<Option<std::time::Duration>, String> {
    match std::env::var("GLUFUSE_GPU_TIMEOUT") {
        Ok(v) if !v.trim().is_empty() => parse_wait_timeout(&v).map(Some),
        _ => Ok(None),
    }
}

/// The cooperative-matrix tilings `GLUFUSE_COOP_TILES` names by kind of projection
/// (`fused=128x64x64w4x2s1,long=64x64x64w4x2`: [`crate::codegen::proj::coop::parse_class_tiles`]),
/// for tuning on a device glufuse was not measured on; none where it is unset or empty.
/// Anything else is an error naming the variable.
pub fn coop_tiles_from_env() -> std::result::Result<Vec<(CoopClass, CoopTile)>, String> {
    match std::env::var("GLUFUSE_COOP_TILES") {
        Ok(v) => {
            crate::codegen::proj::coop::parse_class_tiles(&v).map_err(|e| format!("GLUFUSE_COOP_TILES='{v}': {e}"))
        }
        Err(_) => Ok(vec![]),
    }
}

/// The key chunks `GLUFUSE_ATTENTION_CHUNKS` forces on every decode-shaped attention (a whole
/// number from 1, 1 for no split: [`crate::codegen::Target::attention_chunks`]), for tuning on
/// a device glufuse was not measured on; none where it is unset or empty. Anything else is an
/// error naming the variable.
pub fn attention_chunks_from_env() -> std::result::Result<Option<usize>, String> {
    match std::env::var("GLUFUSE_ATTENTION_CHUNKS") {
        Ok(v) if !v.trim().is_empty() => match v.trim().parse::<usize>() {
            Ok(c) if (1..=4096).contains(&c) => Ok(Some(c)),
            _ => Err(format!("GLUFUSE_ATTENTION_CHUNKS='{v}': expected a whole number of chunks from 1 to 4096")),
        },
        _ => Ok(None),
    }
}

/// A duration in whole nanoseconds, saturating (past 584 years).
fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The wait limit `GLUFUSE_GPU_TIMEOUT` sets: a number of seconds greater than 0 (`0.5`, `30`);
/// anything else is an error naming the variable.
pub fn parse_wait_timeout(v: &str) -> std::result::Result<std::time::Duration, String> {
    match v.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s <= 1e9 => Ok(std::time::Duration::from_secs_f64(s)),
        _ => Err(format!("GLUFUSE_GPU_TIMEOUT='{v}': expected a number of seconds greater than 0 (at most 1e9)")),
    }
}

/// How many buffers and bind groups glufuse created on a [`Gpu`] (wgpu's own staging
/// buffers are not counted; the runtime's run path uses none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Created {
    /// Buffers.
    pub buffers: usize,
    /// Bind groups.
    pub bind_groups: usize,
}

/// Compiled pipelines by kernel code (the WGSL without its choice comment), each with the
/// tick of its last use, and how often each path was taken. It holds at most `capacity`
/// pipelines, dropping the least recently used: a decode loop compiles the kernels whose sizes
/// involve the growing past length at every step, and would otherwise keep every one.
struct PipelineCache {
    by_code: HashMap<String, (wgpu::ComputePipeline, u64)>,
    tick: u64,
    capacity: usize,
    counts: PipelineCounts,
}

impl Default for PipelineCache {
    fn default() -> Self {
        PipelineCache { by_code: HashMap::new(), tick: 0, capacity: PIPELINE_CAPACITY, counts: Default::default() }
    }
}

impl PipelineCache {
    /// Drops the least recently used pipelines until at most `capacity` are held.
    fn trim(&mut self) {
        while self.by_code.len() > self.capacity {
            let Some(oldest) = self.by_code.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) else {
                break;
            };
            self.by_code.remove(&oldest);
            self.counts.evicted += 1;
        }
    }
}

/// How many compiled pipelines a [`Gpu`] keeps by default ([`Gpu::set_pipeline_capacity`]).
/// An executable holds its own pipelines, so one dropped from the cache is only compiled
/// again if a later executable needs it.
pub const PIPELINE_CAPACITY: usize = 1024;

/// How many pipelines a [`Gpu`] compiled, and how many requests its cache answered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounts {
    /// Pipelines compiled (distinct kernel codes, again after an eviction).
    pub compiled: usize,
    /// Requests answered from the cache.
    pub reused: usize,
    /// Pipelines dropped from the cache as the least recently used.
    pub evicted: usize,
}

/// An opened GPU.
pub struct Gpu {
    /// The device (released in [`Gpu`]'s `Drop`, under the lock that opening holds).
    pub device: ManuallyDrop<wgpu::Device>,
    /// Its queue (released with the device).
    pub queue: ManuallyDrop<wgpu::Queue>,
    /// What the adapter says about itself.
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with.
    pub limits: wgpu::Limits,
    /// The features it was opened with.
    pub features: wgpu::Features,
    /// What the adapter supports below full WebGPU.
    pub downlevel: wgpu::DownlevelCapabilities,
    /// The cooperative-matrix configurations the device was opened with (empty without
    /// `EXPERIMENTAL_COOPERATIVE_MATRIX`).
    pub coop_matrix: Vec<wgpu::CooperativeMatrixProperties>,
    errors: Arc<Mutex<Vec<String>>>,
    /// [`Gpu::wait`]'s limit, in nanoseconds.
    wait_timeout: AtomicU64,
    /// The cooperative-matrix tilings `GLUFUSE_COOP_TILES` names, in [`Gpu::target`].
    coop_class_tiles: Vec<(CoopClass, CoopTile)>,
    /// The key chunks `GLUFUSE_ATTENTION_CHUNKS` forces, read when opened.
    attention_chunks: Option<usize>,
    pipelines: Mutex<PipelineCache>,
    buffers_created: AtomicUsize,
    bind_groups_created: AtomicUsize,
    /// [`Gpu::pack_f16_rounds`], once tried.
    pack_rounds: OnceLock<bool>,
    /// The pipeline of [`crate::codegen::round_f16_in_place`], compiled the first time a
    /// call keeps an f16 output on the GPU ([`Gpu::round_f16_pipeline`]).
    round_f16: Mutex<Option<wgpu::ComputePipeline>>,
}

/// The values [`Gpu::pack_f16_rounds`] packs on the device (an even count): ties between
/// f16 neighbours (which round to the even one) and values just off them, the top of f16's
/// range (65520 rounds to infinity, 65519 to 65504), subnormals, their ties and the bottom,
/// zeros, infinities and NaN, each also negated.
fn pack_probe_values() -> Vec<f32> {
    let p = |e: i32| 2f32.powi(e);
    let mut v = vec![
        1.0 + p(-11),
        1.0 + 3.0 * p(-11),
        1.0 + p(-11) + p(-20),
        1.0 + p(-11) - p(-20),
        0.1,
        std::f32::consts::PI,
        65504.0,
        65519.0,
        65520.0,
        65535.0,
        1e6,
        f32::MAX,
        f32::INFINITY,
        p(-14),
        p(-14) - p(-25),
        p(-14) - p(-26),
        p(-24),
        p(-25),
        3.0 * p(-25),
        p(-25) + p(-40),
        p(-26),
        1e-30,
        0.0,
        f32::NAN,
    ];
    let negated: Vec<f32> = v.iter().map(|x| -x).collect();
    v.extend(negated);
    v
}

/// Whether `words` hold `values` packed two a word (the first in the low half) as the host
/// rounds f32 to f16 (NaN: any NaN).
fn rounds_as_host(values: &[f32], words: &[u32]) -> bool {
    words.len() * 2 >= values.len()
        && values.iter().enumerate().all(|(i, &x)| {
            let h = half::f16::from_bits((words[i / 2] >> (16 * (i % 2))) as u16);
            let want = half::f16::from_f32(x);
            if want.is_nan() {
                h.is_nan()
            } else {
                h.to_bits() == want.to_bits()
            }
        })
}

/// Held while a [`Gpu`] is being opened or closed: the instance, the adapters of every backend
/// and the device are created, and released, by one thread at a time. On the H100 machine
/// (Vulkan and EGL drivers present), 16 test threads opening devices at once hung before any
/// test finished, with this code as with the code before it; two threads did not. With
/// opening serialized, four test threads (`gpu_ops`, each test opening and closing its own
/// device) hung once more in session 11: a device, and the instance it keeps alive, was then
/// released without the lock while another thread opened one. Releasing under the lock too
/// is the fix that follows. With it (at 227b527), `gpu_ops` ran to its end on the H100 seven
/// times in a row at 1, 4 and 16 test threads, 6 to 8 s each; the hang was seen once and
/// never reproduced, so whether this was its cause is not known.
static OPENING: Mutex<()> = Mutex::new(());

impl Drop for Gpu {
    fn drop(&mut self) {
        let _one_at_a_time = OPENING.lock().unwrap_or_else(|p| p.into_inner());
        // The cached pipelines hold the device too: released first, so that the device (and
        // the instance behind it) goes here, under the lock.
        drop(std::mem::take(&mut *self.pipelines.lock().unwrap_or_else(|p| p.into_inner())));
        // SAFETY: neither field is used after this (`drop` runs once, and nothing else of
        // `self` reads them on the way out).
        unsafe {
            ManuallyDrop::drop(&mut self.queue);
            ManuallyDrop::drop(&mut self.device);
        }
    }
}

impl Gpu {
    /// Opens the default adapter (see the module's documentation for which):
    /// `WGPU_BACKEND` (e.g. `vulkan`, `gl`) limits the backends, `WGPU_ADAPTER_NAME` picks an
    /// adapter whose name contains it.
    pub fn new() -> Result<Gpu> {
        Self::with_options(&GpuOptions::default())
    }

    /// [`Gpu::new`] with options of the caller's choosing. Devices are opened one at a time
    /// in a process: opening every backend's adapters from many threads at once hung on a
    /// machine with Vulkan and EGL drivers.
    pub fn with_options(o: &GpuOptions) -> Result<Gpu> {
        let _one_at_a_time = OPENING.lock().unwrap_or_else(|p| p.into_inner());
        pollster::block_on(Self::open(o))
    }

    async fn open(o: &GpuOptions) -> Result<Gpu> {
        let wait_timeout = match o.wait_timeout {
            Some(t) => t,
            None => wait_timeout_from_env().map_err(Error::Gpu)?.unwrap_or(WAIT_TIMEOUT),
        };
        let coop_class_tiles = coop_tiles_from_env().map_err(Error::Gpu)?;
        let attention_chunks = attention_chunks_from_env().map_err(Error::Gpu)?;
        let backends = match std::env::var("WGPU_BACKEND") {
            Ok(v) if !v.trim().is_empty() => parse_backends(&v).map_err(Error::Gpu)?,
            _ => wgpu::Backends::all(),
        };
        let desc = wgpu::InstanceDescriptor { backends, ..wgpu::InstanceDescriptor::new_without_display_handle() };
        let instance = wgpu::Instance::new(desc);
        let mut all = instance.enumerate_adapters(backends).await;
        all.sort_by_key(|a| adapter_rank(&a.get_info()));
        let names: Vec<String> = all.iter().map(|a| describe_info(&a.get_info())).collect();
        let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
            Ok(want) => {
                let want = want.to_lowercase();
                all.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want)).ok_or_else(|| {
                    Error::Gpu(format!("no adapter's name contains WGPU_ADAPTER_NAME={want:?}; adapters: {names:?}"))
                })?
            }
            Err(_) => all.into_iter().next().ok_or_else(|| Error::Gpu(no_adapter_message(backends)))?,
        };
        let info = adapter.get_info();
        let downlevel = adapter.get_downlevel_capabilities();
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SHADER_F16
            | wgpu::Features::SUBGROUP
            | wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        let features = adapter.features() & wanted;
        let coop = features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX);
        let experimental_features = if coop {
            // SAFETY: wgpu marks cooperative matrices experimental (bugs in its implementation
            // may be undefined behaviour). glufuse only uses them in the kernels of
            // codegen::proj::coop, each validated by naga with the capability on; the tests
            // check them against the interpreter on the device (benches/results/).
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
        let coop_matrix = if coop { adapter.cooperative_matrix_properties() } else { vec![] };
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("glufuse"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: o.memory_hints.clone(),
                experimental_features,
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
        Ok(Gpu {
            device: ManuallyDrop::new(device),
            queue: ManuallyDrop::new(queue),
            info,
            limits,
            features,
            downlevel,
            coop_matrix,
            errors,
            wait_timeout: AtomicU64::new(nanos(wait_timeout)),
            coop_class_tiles,
            attention_chunks,
            pipelines: Mutex::default(),
            buffers_created: AtomicUsize::new(0),
            bind_groups_created: AtomicUsize::new(0),
            pack_rounds: OnceLock::new(),
            round_f16: Mutex::new(None),
        })
    }

    /// Creates a buffer, counted in [`Gpu::created`].
    pub fn create_buffer(&self, desc: &wgpu::BufferDescriptor) -> wgpu::Buffer {
        self.buffers_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_buffer(desc)
    }

    /// Creates a bind group, counted in [`Gpu::created`].
    pub fn create_bind_group(&self, desc: &wgpu::BindGroupDescriptor) -> wgpu::BindGroup {
        self.bind_groups_created.fetch_add(1, Ordering::Relaxed);
        self.device.create_bind_group(desc)
    }

    /// How many buffers and bind groups glufuse created on this device so far.
    pub fn created(&self) -> Created {
        Created {
            buffers: self.buffers_created.load(Ordering::Relaxed),
            bind_groups: self.bind_groups_created.load(Ordering::Relaxed),
        }
    }

    /// Whether timestamps can be written between the dispatches of a pass (per-kernel
    /// timing), not only around a pass.
    pub fn timestamps_inside_passes(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    }

    /// A line naming the adapter and backend.
    pub fn describe(&self) -> String {
        describe_info(&self.info)
    }

    /// Whether the adapter is a software rasteriser running on the CPU (see
    /// [`is_software_adapter`]): timings there say little about a GPU, and every pipeline
    /// costs an LLVM compile, so tests and tuning size their work down.
    pub fn is_software(&self) -> bool {
        is_software_adapter(&self.info.name, self.info.device_type)
    }

    /// The cooperative-matrix configurations as `16x16x16 f16×f16→f32, ...`, or `none`.
    pub fn describe_coop(&self) -> String {
        let all: Vec<String> = self
            .coop_matrix
            .iter()
            .map(|p| format!("{}x{}x{} {:?}×{:?}→{:?}", p.m_size, p.n_size, p.k_size, p.ab_type, p.ab_type, p.cr_type))
            .collect();
        if all.is_empty() {
            "none".into()
        } else {
            all.join(", ").to_lowercase()
        }
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
        if self.features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            caps |= naga::valid::Capabilities::COOPERATIVE_MATRIX;
        }
        let scalar = |t: wgpu::CooperativeScalarType| match t {
            wgpu::CooperativeScalarType::F16 => CoopScalar::F16,
            wgpu::CooperativeScalarType::F32 => CoopScalar::F32,
            wgpu::CooperativeScalarType::I32 => CoopScalar::I32,
            wgpu::CooperativeScalarType::U32 => CoopScalar::U32,
        };
        let coop_matrix = self
            .coop_matrix
            .iter()
            .map(|p| CoopMatrix { m: p.m_size, n: p.n_size, k: p.k_size, ab: scalar(p.ab_type), cr: scalar(p.cr_type) })
            .collect();
        Target {
            caps,
            max_workgroups_per_dim: self.limits.max_compute_workgroups_per_dimension,
            max_binding_bytes: self.limits.max_storage_buffer_binding_size.min(self.limits.max_buffer_size),
            max_workgroup_storage_bytes: self.limits.max_compute_workgroup_storage_size,
            gemm_tiles: None,
            gemm_wave: gemm_wave(&self.info.name),
            subgroup_size,
            coop_matrix,
            coop_emulate: false,
            coop_tiles: None,
            coop_class_tiles: self.coop_class_tiles.clone(),
            matmul_precision: Default::default(),
            q4_unpack: Default::default(),
            q4_cols: None,
            coop_split: None,
            gemm_split: None,
            attention_rows: None,
            attention_chunks: self.attention_chunks,
            pack_f16_rounds: self.pack_f16_rounds(),
        }
    }

    /// Whether this device's `pack2x16float` rounds f32 as the host rounds f16 (to the
    /// nearest, ties to even, past 65504 to infinity, NaN kept a NaN;
    /// [`Target::pack_f16_rounds`]): tried once, the first time asked, on values that tell
    /// rounding modes apart (ties and near ties, the top of the range, subnormals and the
    /// bottom, signed zeros, infinities, NaN). A device where the try fails counts as one that
    /// does not round so (its graph outputs are then rounded on the bits).
    pub fn pack_f16_rounds(&self) -> bool {
        *self.pack_rounds.get_or_init(|| self.try_pack_f16().unwrap_or(false))
    }

    /// The pipeline rounding an f16 value's words in place ([`crate::codegen::round_f16_in_place`]:
    /// an f16 output kept on the GPU as an input, rounded as the host would read it back),
    /// compiled the first time asked.
    pub(crate) fn round_f16_pipeline(&self) -> Result<wgpu::ComputePipeline> {
        let mut p = self.round_f16.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = &*p {
            return Ok(p.clone());
        }
        let wgsl = crate::codegen::round_f16_in_place();
        let dev = &*self.device;
        let made = self.scoped("compiling the f16 rounding kernel", || {
            let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("round f16"),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
            dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("round f16"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            })
        })?;
        *p = Some(made.clone());
        Ok(made)
    }

    /// Runs [`crate::codegen::PACK_PROBE`] over [`pack_probe_values`] and compares its
    /// halves with the host's rounding.
    fn try_pack_f16(&self) -> Result<bool> {
        use wgpu::util::DeviceExt;
        let values = pack_probe_values();
        let words = (values.len() / 2) as u64;
        let dev = &*self.device;
        let (pipeline, group, out, read) = self.scoped("trying the device's f16 packing", || {
            let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some("pack probe"),
                source: wgpu::ShaderSource::Wgsl(crate::codegen::PACK_PROBE.into()),
            });
            let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some("pack probe"),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
            let a = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("pack probe in"),
                contents: bytemuck::cast_slice(&values),
                usage: wgpu::BufferUsages::STORAGE,
            });
            let buffer = |label, usage| {
                dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: words * 4,
                    usage,
                    mapped_at_creation: false,
                })
            };
            let out = buffer("pack probe out", wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC);
            let read = buffer("pack probe read", wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
            let group = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("pack probe"),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry { binding: 0, resource: a.as_entire_binding() },
                    wgpu::BindGroupEntry { binding: 1, resource: out.as_entire_binding() },
                ],
            });
            (pipeline, group, out, read)
        })?;
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        enc.copy_buffer_to_buffer(&out, 0, &read, 0, words * 4);
        self.scoped("trying the device's f16 packing", || self.queue.submit([enc.finish()]))?;
        let done = super::map_async(&read, wgpu::MapMode::Read);
        self.wait("trying the device's f16 packing")?;
        super::mapped(&done, "reading the f16 packing back")?;
        let got: Vec<u32> = match read.slice(..).get_mapped_range() {
            Ok(view) => bytemuck::cast_slice(&view).to_vec(),
            Err(e) => return Err(Error::Gpu(format!("reading the f16 packing back: {e}"))),
        };
        Ok(rounds_as_host(&values, &got))
    }

    /// The compute pipeline (entry point `main`, layout from the shader) of a kernel,
    /// compiled the first time its code is asked for and shared afterwards: the layers of a
    /// model, and executables of one graph under other bindings, mostly ask for code already
    /// compiled. The cache is keyed by [`KernelSource::code`], the WGSL without the choice
    /// comment on its first line (as the tuner compares kernels): a comment changes nothing
    /// the device runs, so kernels whose choices are worded differently (a tiling chosen by
    /// default, forced or tuned) share one pipeline. A module wgpu rejects is an error and is
    /// not cached.
    pub fn pipeline(&self, k: &KernelSource) -> Result<wgpu::ComputePipeline> {
        Ok(self.pipelines(&[k])?.pop().expect("one pipeline for one kernel"))
    }

    /// [`Gpu::pipeline`] of each kernel, in order, with the pipelines the cache lacks
    /// compiled several at a time on rayon's pool (each distinct code once; the counts as if
    /// asked for one by one). A driver compiles a pipeline on the thread that asks for it,
    /// and an executable's build is mostly its new pipelines (a KV step's five new codes for
    /// each new past length): one after another they cost their sum, here about the longest.
    /// The error is the first rejected kernel's, in order; every pipeline compiled is kept.
    pub fn pipelines(&self, kernels: &[&KernelSource]) -> Result<Vec<wgpu::ComputePipeline>> {
        let mut got: Vec<Option<wgpu::ComputePipeline>> = vec![None; kernels.len()];
        // The first kernel of each code the cache lacks, and where the others are.
        let mut todo: Vec<usize> = vec![];
        let mut slot: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        let mut same: Vec<(usize, usize)> = vec![];
        for (i, k) in kernels.iter().enumerate() {
            match slot.get(k.code()) {
                Some(&t) => same.push((i, t)),
                None => match self.cached(k.code()) {
                    Some(p) => got[i] = Some(p),
                    None => {
                        slot.insert(k.code(), todo.len());
                        todo.push(i);
                    }
                },
            }
        }
        let compiled: Vec<Result<wgpu::ComputePipeline>> = {
            use rayon::prelude::*;
            todo.par_iter().map(|&i| self.compile(kernels[i])).collect()
        };
        let mut first_error = None;
        let mut made: Vec<Option<wgpu::ComputePipeline>> = vec![];
        for (&i, p) in todo.iter().zip(compiled) {
            match p {
                Ok(p) => {
                    self.keep(kernels[i].code(), &p);
                    got[i] = Some(p.clone());
                    made.push(Some(p));
                }
                Err(e) => {
                    first_error = first_error.or(Some(e));
                    made.push(None);
                }
            }
        }
        for (i, t) in same {
            if let Some(p) = &made[t] {
                self.cache().counts.reused += 1;
                got[i] = Some(p.clone());
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(got.into_iter().map(|p| p.expect("every kernel has its pipeline")).collect())
    }

    /// The cached pipeline of `code`, marked as just used.
    fn cached(&self, code: &str) -> Option<wgpu::ComputePipeline> {
        let mut c = self.cache();
        c.tick += 1;
        let tick = c.tick;
        let (p, used) = c.by_code.get_mut(code)?;
        *used = tick;
        let p = p.clone();
        c.counts.reused += 1;
        Some(p)
    }

    /// Keeps a pipeline just compiled for `code`.
    fn keep(&self, code: &str, p: &wgpu::ComputePipeline) {
        let mut c = self.cache();
        c.counts.compiled += 1;
        c.tick += 1;
        let tick = c.tick;
        c.by_code.insert(code.to_string(), (p.clone(), tick));
        c.trim();
    }

    /// Compiles a kernel's pipeline (the cache untouched), on the calling thread: wgpu's
    /// error scopes are the thread's own, so compiles on several threads report each its own
    /// error.
    fn compile(&self, k: &KernelSource) -> Result<wgpu::ComputePipeline> {
        let code = k.code();
        let label = k.name.as_str();
        let entries = layout_entries(code).map_err(|e| Error::Internal(format!("kernel '{label}': {e}")))?;
        self.scoped(&format!("compiling kernel '{label}'"), || {
            let module = self.device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(code.into()),
            });
            // The layout from the bindings the WGSL declares, not from those its code uses:
            // a kernel specialised to a size of 0 (a KV step's empty past cache) may declare
            // a buffer it never reads, which a derived layout leaves out, and the runtime
            // binds every declared buffer.
            let group = self
                .device
                .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(label), entries: &entries });
            let layout = self.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&group)],
                immediate_size: 0,
            });
            self.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&layout),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    // wgpu zero-fills workgroup memory before a kernel runs unless told not
                    // to. On GL, naga writes that fill as GLSL that Mesa's llvmpipe takes ten
                    // times as long to compile as the kernel itself (70 s of CPU against 6
                    // for a one-layer prefill graph). glufuse's kernels write every workgroup
                    // cell they read, before a barrier (glufuse-codegen's contract), so on GL
                    // the fill is skipped; elsewhere drivers do it cheaply and it stays.
                    zero_initialize_workgroup_memory: self.info.backend != wgpu::Backend::Gl,
                    ..Default::default()
                },
                cache: None,
            })
        })
    }

    /// How many pipelines this device compiled, reused and dropped so far.
    pub fn pipeline_counts(&self) -> PipelineCounts {
        self.cache().counts
    }

    /// How many compiled pipelines the cache holds now.
    pub fn cached_pipelines(&self) -> usize {
        self.cache().by_code.len()
    }

    /// Keeps at most `n` compiled pipelines (at least 1), dropping the least recently used
    /// now and from then on ([`PIPELINE_CAPACITY`] by default).
    pub fn set_pipeline_capacity(&self, n: usize) {
        let mut c = self.cache();
        c.capacity = n.max(1);
        c.trim();
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, PipelineCache> {
        self.pipelines.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn take_errors(&self) -> Result<()> {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_empty() {
            Ok(())
        } else {
            Err(Error::Gpu(std::mem::take(&mut *e).join("; ")))
        }
    }

    /// Waits until the GPU has finished everything submitted to it (and the mappings asked
    /// for are done), for at most the device's wait limit ([`GpuOptions::wait_timeout`]): a
    /// longer wait is an error saying `what` was waited for. After such an error the work may
    /// still be running: the device is best treated as lost (its buffers may still be in use).
    pub fn wait(&self, what: &str) -> Result<()> {
        let limit = self.wait_timeout();
        match self.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: Some(limit) }) {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => Err(Error::Gpu(format!(
                "{what}: the GPU did not finish within {} s (the limit is GLUFUSE_GPU_TIMEOUT, in \
                 seconds); the device may have stopped answering, and is best not used again",
                limit.as_secs_f64()
            ))),
            Err(e) => Err(Error::Gpu(format!("{what}: {e}"))),
        }
    }

    /// The longest [`Gpu::wait`] waits now.
    pub fn wait_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.wait_timeout.load(Ordering::Relaxed))
    }

    /// Sets the longest [`Gpu::wait`] waits, from the next wait on.
    pub fn set_wait_timeout(&self, d: std::time::Duration) {
        self.wait_timeout.store(nanos(d), Ordering::Relaxed);
    }

    /// Runs `f` inside validation and out-of-memory error scopes.
    pub(crate) fn scoped<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T> {
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

/// The backends `WGPU_BACKEND` names: a comma-separated list of `vulkan` (`vk`), `metal`
/// (`mtl`), `dx12` (`d3d12`) and `gl` (`gles`, `opengl`), any case. Anything else is an error
/// listing those (wgpu itself would quietly take no backend at all).
pub fn parse_backends(list: &str) -> std::result::Result<wgpu::Backends, String> {
    let mut b = wgpu::Backends::empty();
    for name in list.split(',').map(|n| n.trim().to_lowercase()) {
        b |= match name.as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            _ => {
                return Err(format!(
                    "WGPU_BACKEND={list:?}: {name:?} is not a backend; give one or more of vulkan, metal, dx12, gl \
                     (comma-separated), or leave WGPU_BACKEND unset for all"
                ))
            }
        };
    }
    Ok(b)
}

/// Where an adapter comes in the choice of [`Gpu::new`] (lower first): Vulkan, Metal and DX12
/// before GL, then hardware before software, then discrete, integrated, virtual, other.
pub fn adapter_rank(info: &wgpu::AdapterInfo) -> (u8, u8, u8) {
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        wgpu::Backend::Gl => 1,
        _ => 2,
    };
    let software = is_software_adapter(&info.name, info.device_type) as u8;
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    (backend, software, kind)
}

/// Whether an adapter is a software rasteriser: one that says it is a CPU, or one of the
/// known software drivers by name (Mesa's llvmpipe, which lavapipe reports as well,
/// SwiftShader, Microsoft's WARP / Basic Render Driver), since GL adapters report no type.
pub fn is_software_adapter(name: &str, device_type: wgpu::DeviceType) -> bool {
    let name = name.to_lowercase();
    device_type == wgpu::DeviceType::Cpu
        || ["llvmpipe", "lavapipe", "softpipe", "swiftshader", "warp", "basic render driver"]
            .iter()
            .any(|s| name.contains(s))
}

fn describe_info(info: &wgpu::AdapterInfo) -> String {
    format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type)
}

/// What to say when no adapter was found: the backends tried and how to get a driver.
fn no_adapter_message(backends: wgpu::Backends) -> String {
    let tried: Vec<&str> = [
        (wgpu::Backends::VULKAN, "Vulkan"),
        (wgpu::Backends::METAL, "Metal"),
        (wgpu::Backends::DX12, "DX12"),
        (wgpu::Backends::GL, "GL"),
    ]
    .into_iter()
    .filter(|(b, _)| backends.contains(*b))
    .map(|(_, n)| n)
    .collect();
    format!(
        "no GPU adapter found (backends tried: {}). To get one: on Debian or Ubuntu, \
         `apt-get install mesa-vulkan-drivers` (Mesa's Vulkan drivers, with lavapipe, a software \
         Vulkan that needs no GPU) or your GPU vendor's Vulkan driver; macOS has Metal and Windows \
         DX12 built in. WGPU_BACKEND (vulkan, metal, dx12, gl) limits the backends tried, \
         WGPU_ADAPTER_NAME picks an adapter by name",
        tried.join(", ")
    )
}

/// Workgroups of the default tiled GEMM an adapter runs at once, for the GPUs glufuse was
/// measured on (wgpu reports no compute-unit count): 3 per SM on NVIDIA's Hopper (the
/// driver gives the default tiling 141–155 registers per thread, `examples/pipeline_stats.rs`)
/// × 132 SMs (H100 SXM, H200) or 114 (H100 PCIe).
fn gemm_wave(adapter: &str) -> Option<u32> {
    let name = adapter.to_lowercase();
    if name.contains("h100 pcie") {
        Some(3 * 114)
    } else if name.contains("h100") || name.contains("h200") {
        Some(3 * 132)
    } else {
        None
    }
}

/// The bind group layout entries of a kernel: one per buffer its WGSL declares in group 0, in
/// binding order, read-only where the WGSL declares it so (glufuse's kernels bind storage
/// buffers only).
fn layout_entries(wgsl: &str) -> std::result::Result<Vec<wgpu::BindGroupLayoutEntry>, String> {
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| format!("its WGSL does not parse: {e}"))?;
    let mut entries = vec![];
    for (_, var) in module.global_variables.iter() {
        let Some(b) = &var.binding else { continue };
        let read_only = match var.space {
            naga::AddressSpace::Storage { access } => !access.contains(naga::StorageAccess::STORE),
            other => return Err(format!("binding {} is in address space {other:?}, not storage", b.binding)),
        };
        if b.group != 0 {
            return Err(format!("binding {} is in group {}, not 0", b.binding, b.group));
        }
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: b.binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
    }
    entries.sort_by_key(|e| e.binding);
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe's values tell the host's rounding from the others a device might use:
    /// toward zero, half away from zero, and saturating at 65504.
    #[test]
    fn the_pack_probe_tells_rounding_modes_apart() {
        let values = pack_probe_values();
        let pack = |f: &dyn Fn(f32) -> u16| -> Vec<u32> {
            values.chunks(2).map(|p| u32::from(f(p[0])) | (u32::from(f(p[1])) << 16)).collect()
        };
        let host = |x: f32| half::f16::from_f32(x).to_bits();
        assert!(rounds_as_host(&values, &pack(&host)));
        // Toward zero: one f16 back toward zero wherever the nearest lies past x.
        let toward_zero = |x: f32| {
            let h = half::f16::from_f32(x);
            if x.is_finite() && (h.to_f32().abs() > x.abs() || h.is_infinite()) {
                half::f16::from_bits(h.to_bits() - 1).to_bits()
            } else {
                h.to_bits()
            }
        };
        assert!(!rounds_as_host(&values, &pack(&toward_zero)), "toward zero");
        // Ties away from zero: 1 + 2^-11 goes up.
        let away = |x: f32| {
            let h = half::f16::from_f32(x);
            let up = half::f16::from_bits(h.to_bits() + 1);
            let down = half::f16::from_bits(h.to_bits().wrapping_sub(1));
            let tie =
                |o: half::f16| (o.to_f32() - x).abs() == (h.to_f32() - x).abs() && o.to_f32().abs() > h.to_f32().abs();
            if x.is_finite() && h.is_finite() && (tie(up) || tie(down)) {
                if tie(up) {
                    up.to_bits()
                } else {
                    down.to_bits()
                }
            } else {
                h.to_bits()
            }
        };
        assert!(!rounds_as_host(&values, &pack(&away)), "ties away from zero");
        // Saturating: past 65504 the largest finite f16.
        let saturating = |x: f32| {
            if x.is_finite() && x.abs() > 65504.0 {
                half::f16::from_f32(65504.0f32.copysign(x)).to_bits()
            } else {
                host(x)
            }
        };
        assert!(!rounds_as_host(&values, &pack(&saturating)), "saturating");
        assert!(!rounds_as_host(&values, &pack(&host)[1..]), "too few words");
    }

    /// A kernel's layout has every buffer its WGSL declares, the ones its code never reads
    /// included, read-only as declared; a binding outside storage or group 0 is an error.
    #[test]
    fn layouts_come_from_the_declared_bindings() {
        let wgsl = "@group(0) @binding(0) var<storage, read> a: array<f32>;\n\
                    @group(0) @binding(2) var<storage, read_write> out: array<f32>;\n\
                    @group(0) @binding(1) var<storage, read> unused: array<f32>;\n\
                    @compute @workgroup_size(1) fn main() { out[0] = a[0]; }";
        let e = layout_entries(wgsl).unwrap();
        let got: Vec<(u32, bool)> = e
            .iter()
            .map(|e| match e.ty {
                wgpu::BindingType::Buffer { ty: wgpu::BufferBindingType::Storage { read_only }, .. } => {
                    (e.binding, read_only)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, vec![(0, true), (1, true), (2, false)]);
        let uniform = "@group(0) @binding(0) var<uniform> u: vec4<f32>;\n@compute @workgroup_size(1) fn main() {}";
        assert!(layout_entries(uniform).unwrap_err().contains("binding 0 is in address space"));
        let group1 =
            "@group(1) @binding(0) var<storage, read> a: array<f32>;\n@compute @workgroup_size(1) fn main() {}";
        assert!(layout_entries(group1).unwrap_err().contains("group 1"));
        assert!(layout_entries("fn main( {").unwrap_err().contains("does not parse"));
    }
}
