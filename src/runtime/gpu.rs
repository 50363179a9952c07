//! Opening the GPU: the adapter (chosen by `WGPU_BACKEND` and `WGPU_ADAPTER_NAME`), a device
//! with the features glufuse can use, error capture (wgpu errors become [`Error::Gpu`], never
//! a panic) and the code generation [`Target`] the device supports.
//!
//! Which adapter: every adapter of the allowed backends is listed, and the first by
//! [`adapter_rank`] is opened: Vulkan, Metal and DX12 before GL (wgpu's GL backend compiles
//! every shader through the driver's GLSL path: on Mesa's llvmpipe a test suite that takes
//! minutes on lavapipe takes an hour), then hardware before software, discrete before
//! integrated. `WGPU_BACKEND` (`vulkan`, `metal`, `dx12`, `gl`, comma-separated) limits the
//! backends, an unknown name being an error; `WGPU_ADAPTER_NAME` picks the adapter whose name
//! contains it.

use crate::codegen::Target;
use crate::{Error, Result};
use std::sync::{Arc, Mutex};

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
    /// Opens the default adapter (see the module's documentation for which):
    /// `WGPU_BACKEND` (e.g. `vulkan`, `gl`) limits the backends, `WGPU_ADAPTER_NAME` picks an
    /// adapter whose name contains it.
    pub fn new() -> Result<Gpu> {
        pollster::block_on(Self::open())
    }

    async fn open() -> Result<Gpu> {
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
        describe_info(&self.info)
    }

    /// Whether the adapter is a software rasteriser running on the CPU (see
    /// [`is_software_adapter`]): timings there say little about a GPU, and every pipeline
    /// costs an LLVM compile, so tests and tuning size their work down.
    pub fn is_software(&self) -> bool {
        is_software_adapter(&self.info.name, self.info.device_type)
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

    pub(crate) fn take_errors(&self) -> Result<()> {
        let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        if e.is_empty() {
            Ok(())
        } else {
            Err(Error::Gpu(std::mem::take(&mut *e).join("; ")))
        }
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
