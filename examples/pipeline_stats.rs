//! What the Vulkan driver made of glufuse's kernels: registers per thread, workgroup memory,
//! spills and whatever else the driver reports through `VK_KHR_pipeline_executable_properties`,
//! for the fused and the unfused graph of one benchmark configuration.
//!
//! Occupancy follows from these numbers: a workgroup of T threads using R registers each
//! needs T·R of the SM's register file, so the statistics say how many workgroups an SM can
//! hold at once (the timings alone only hint at it).
//!
//! The kernels are generated for this device (as `glufuse run` does), translated to SPIR-V
//! by naga with the options wgpu uses on Vulkan (bounds checks by clamping, loop bounding,
//! native zero-initialised workgroup memory), and compiled by the driver in a pipeline of
//! its own that asks for statistics: wgpu's pipelines do not.
//!
//! ```text
//! cargo run --release --example pipeline_stats -- --shape 896x4864 --rows 512 --layout kn
//! cargo run --release --example pipeline_stats -- --model model.onnx --dim batch=1 --dim seq=128
//! ```
//!
//! With `--model`, every distinct kernel of a model graph (fused, for this device) once, as the
//! runtime compiles one pipeline per distinct code: how large each kernel's machine code is
//! tells what the kernels of a layer ask of the instruction caches together
//! (`benches/results/h100-2026-11-28s-code-size.md`).
//!
//! With `--dump DIR` each kernel's pipeline-cache data is written too. NVIDIA's holds the
//! machine code: `python3 benches/sass.py DIR/fused_mul.pipeline_cache.bin SIZE` (SIZE: the
//! kernel's "Binary Size" above) disassembles it with CUDA's `nvdisasm`, which is how the
//! cooperative GEMM's loop was read (`benches/results/h100-2026-11-27k-coop-banks.md`).
//! Its statistics' "Local Memory Size" reads 2^36 for every kernel on NVIDIA's 580 driver,
//! whatever the spills: not a measurement.
//!
//! Needs a Vulkan driver with that extension (NVIDIA, RADV and ANV have it; lavapipe does
//! not, and the example says so and exits non-zero).

use ash::vk;
use clap::Parser;
use glufuse::codegen::{generate, Kernel, Target, Tiles};
use glufuse::ir::Layout;
use glufuse::runtime::Gpu;
use glufuse::synth::WeightType;
use std::ffi::CStr;

/// Command line.
#[derive(Parser)]
struct Args {
    /// H×I of the FFN.
    #[arg(long, default_value = "896x4864")]
    shape: String,
    /// Rows of x.
    #[arg(long, default_value_t = 512)]
    rows: u64,
    /// Weight layout: kn or nk.
    #[arg(long, default_value = "kn")]
    layout: String,
    /// Weight dtype: f32, f16 or q4 (as `glufuse bench --dtypes`).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Force the prefill GEMM's tiling (as `glufuse bench --gemm-tiles`).
    #[arg(long)]
    gemm_tiles: Option<String>,
    /// Also write, per kernel into this folder, the driver's internal representations where
    /// it offers any (NVIDIA's offers none) and the data of a pipeline cache holding only that
    /// kernel (`LABEL_KERNEL.pipeline_cache.bin`: NVIDIA's holds the machine code, which
    /// `benches/sass.py` disassembles).
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
    /// Instead of an FFN: the kernels of this model graph (JSON or ONNX), fused as `glufuse
    /// run` fuses it, each distinct kernel once.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// With `--model`: a size for a symbolic dim, `NAME=N` (repeatable; unbound dims are 1).
    #[arg(long = "dim", value_name = "NAME=N", requires = "model")]
    dims: Vec<String>,
}

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, String>;

fn run(a: Args) -> Res<()> {
    let (h, i) = glufuse::synth::parse_shape(&a.shape).ok_or_else(|| format!("--shape {:?}: expected HxI", a.shape))?;
    let layout = match a.layout.as_str() {
        "kn" => Layout::Kn,
        "nk" => Layout::Nk,
        l => return Err(format!("--layout {l:?}: expected kn or nk")),
    };
    let weights = match a.dtype.as_str() {
        "f32" => WeightType::F32,
        "f16" => WeightType::F16,
        "q4" => WeightType::Q4,
        d => return Err(format!("--dtype {d:?}: expected f32, f16 or q4")),
    };
    let gemm_tiles = a.gemm_tiles.as_deref().map(str::parse::<Tiles>).transpose().map_err(|e| e.to_string())?;

    let gpu = Gpu::new().map_err(|e| e.to_string())?;
    let target = Target { gemm_tiles, ..gpu.target() };
    if let Some(path) = &a.model {
        return model(&a, path, &gpu, &target);
    }
    let original = glufuse::synth::ffn_graph_of(h, i, a.rows, weights, layout).map_err(|e| e.to_string())?;
    let mut fused = original.clone();
    glufuse::passes::PassManager::standard().run(&mut fused).map_err(|e| e.to_string())?;

    if let Some(dir) = &a.dump {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let vk = Vulkan::open(&gpu.info.name)?;
    println!("device: {} (driver {})", gpu.describe(), gpu.info.driver_info);
    for (label, g) in [("fused", &fused), ("unfused", &original)] {
        println!("\n== {label} graph: {h}×{i}, M={}, {} weights [{}] ==", a.rows, a.dtype, a.layout);
        for k in generate(g, &Default::default(), &target).map_err(|e| e.to_string())? {
            let src = k.source();
            let threads = workgroup_threads(&src.wgsl);
            println!("\n{} ({}), {threads} threads × {:?} workgroups", src.name, src.kind, src.workgroups);
            let dump = a.dump.as_ref().map(|d| d.join(format!("{label}_{}", src.name)));
            match spirv(&k, &target).and_then(|spirv| vk.statistics(&spirv, src.bindings.len(), dump.as_deref())) {
                Ok(exes) => exes.iter().for_each(|e| println!("{e}")),
                Err(e) => println!("  not compiled: {e}"),
            }
        }
    }
    Ok(())
}

/// `--model`: the statistics of each distinct kernel of one model graph, fused.
fn model(a: &Args, path: &std::path::Path, gpu: &Gpu, target: &Target) -> Res<()> {
    let mut g = glufuse::files::load_graph(path).map_err(|e| e.to_string())?;
    glufuse::passes::PassManager::standard().run(&mut g).map_err(|e| e.to_string())?;
    let mut bindings = glufuse::shape::Bindings::new();
    for d in &a.dims {
        let (k, v) = d.split_once('=').ok_or_else(|| format!("--dim {d:?}: expected NAME=N"))?;
        bindings.insert(k.to_string(), v.parse().map_err(|_| format!("--dim {d:?}: {v:?} is not a size"))?);
    }
    if let Some(dir) = &a.dump {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let vk = Vulkan::open(&gpu.info.name)?;
    println!("device: {} (driver {})", gpu.describe(), gpu.info.driver_info);
    println!("\n== {} (fused) ==", path.display());
    let kernels = generate(&g, &bindings, target).map_err(|e| e.to_string())?;
    // The runtime compiles one pipeline per distinct code (the choice comment aside).
    let mut uses: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for k in &kernels {
        *uses.entry(k.source().code()).or_default() += 1;
    }
    for k in &kernels {
        let src = k.source();
        let Some(uses) = uses.remove(src.code()) else { continue };
        let threads = workgroup_threads(&src.wgsl);
        println!(
            "\n{} ({}), {threads} threads × {:?} workgroups, {uses} dispatches of this code",
            src.name, src.kind, src.workgroups
        );
        let dump = a.dump.as_ref().map(|d| d.join(format!("model_{}", src.name)));
        match spirv(k, target).and_then(|spirv| vk.statistics(&spirv, src.bindings.len(), dump.as_deref())) {
            Ok(exes) => exes.iter().for_each(|e| println!("{e}")),
            Err(e) => println!("  not compiled: {e}"),
        }
    }
    Ok(())
}

/// The `@workgroup_size` of a kernel's WGSL (glufuse's kernels are one-dimensional).
fn workgroup_threads(wgsl: &str) -> String {
    wgsl.split("@workgroup_size(").nth(1).and_then(|r| r.split(')').next()).unwrap_or("?").to_string()
}

/// The kernel as SPIR-V, with the bounds-check and initialisation choices wgpu makes on
/// Vulkan for a device with robust buffer access (NVIDIA's).
fn spirv(k: &Kernel, t: &Target) -> Res<Vec<u32>> {
    use naga::back::spv;
    let wgsl = &k.source().wgsl;
    let module = naga::front::wgsl::parse_str(wgsl).map_err(|e| e.emit_to_string(wgsl))?;
    let mut v = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), t.caps);
    v.subgroup_stages(naga::valid::ShaderStages::COMPUTE).subgroup_operations(
        naga::valid::SubgroupOperationSet::BASIC
            | naga::valid::SubgroupOperationSet::ARITHMETIC
            | naga::valid::SubgroupOperationSet::SHUFFLE,
    );
    let info = v.validate(&module).map_err(|e| e.emit_to_string(wgsl))?;
    let options = spv::Options {
        // The SPIR-V version wgpu writes for a Vulkan 1.3 device.
        lang_version: (1, 6),
        bounds_check_policies: naga::proc::BoundsCheckPolicies {
            index: naga::proc::BoundsCheckPolicy::Restrict,
            buffer: naga::proc::BoundsCheckPolicy::Unchecked,
            image_load: naga::proc::BoundsCheckPolicy::Unchecked,
            binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
        },
        zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::Native,
        force_loop_bounding: true,
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
    spv::write_vec(&module, &info, &options, Some(&pipeline)).map_err(|e| format!("SPIR-V output: {e}"))
}

/// A Vulkan device opened with pipeline statistics enabled.
struct Vulkan {
    _entry: ash::Entry,
    instance: ash::Instance,
    device: ash::Device,
    props: ash::khr::pipeline_executable_properties::Device,
}

impl Vulkan {
    /// Opens the physical device whose name wgpu reported.
    fn open(name: &str) -> Res<Vulkan> {
        // SAFETY: loads the system's Vulkan loader; every handle made below is destroyed in
        // `Drop`, children before parents.
        unsafe {
            let entry = ash::Entry::load().map_err(|e| format!("no Vulkan loader: {e}"))?;
            let app = vk::ApplicationInfo::default().api_version(vk::API_VERSION_1_3);
            let instance = entry
                .create_instance(&vk::InstanceCreateInfo::default().application_info(&app), None)
                .map_err(|e| format!("vkCreateInstance: {e}"))?;
            let phys = instance.enumerate_physical_devices().map_err(|e| format!("{e}"))?;
            let pd = *phys
                .iter()
                .find(|&&p| {
                    let n = instance.get_physical_device_properties(p);
                    CStr::from_ptr(n.device_name.as_ptr()).to_string_lossy() == name
                })
                .ok_or_else(|| format!("Vulkan lists no device named {name:?}"))?;
            // The device's extensions, read once.
            let offered = match instance.enumerate_device_extension_properties(pd) {
                Ok(v) => v,
                Err(e) => {
                    instance.destroy_instance(None);
                    return Err(format!("vkEnumerateDeviceExtensionProperties: {e}"));
                }
            };
            let has = |want: &CStr| offered.iter().any(|p| CStr::from_ptr(p.extension_name.as_ptr()) == want);
            let ext = ash::khr::pipeline_executable_properties::NAME;
            if !has(ext) {
                instance.destroy_instance(None);
                return Err(format!("{name}'s Vulkan driver lacks {}", ext.to_string_lossy()));
            }
            let family = instance
                .get_physical_device_queue_family_properties(pd)
                .iter()
                .position(|f| f.queue_flags.contains(vk::QueueFlags::COMPUTE))
                .ok_or("no compute queue")? as u32;
            let prio = [1.0];
            let queues = [vk::DeviceQueueCreateInfo::default().queue_family_index(family).queue_priorities(&prio)];
            // Every feature the device offers is enabled (float16, 16-bit storage, the memory
            // model, cooperative matrices...), as the kernels may use any wgpu enabled.
            let coop = ash::khr::cooperative_matrix::NAME;
            let has_coop = has(coop);
            let mut exts = vec![ext.as_ptr()];
            if has_coop {
                exts.push(coop.as_ptr());
            }
            let mut v11 = vk::PhysicalDeviceVulkan11Features::default();
            let mut v12 = vk::PhysicalDeviceVulkan12Features::default();
            let mut v13 = vk::PhysicalDeviceVulkan13Features::default();
            let mut cm = vk::PhysicalDeviceCooperativeMatrixFeaturesKHR::default();
            let mut all =
                vk::PhysicalDeviceFeatures2::default().push_next(&mut v11).push_next(&mut v12).push_next(&mut v13);
            if has_coop {
                all = all.push_next(&mut cm);
            }
            instance.get_physical_device_features2(pd, &mut all);
            let mut stats =
                vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default().pipeline_executable_info(true);
            let info = vk::DeviceCreateInfo::default()
                .queue_create_infos(&queues)
                .enabled_extension_names(&exts)
                .push_next(&mut all)
                .push_next(&mut stats);
            let device = instance.create_device(pd, &info, None).map_err(|e| format!("vkCreateDevice: {e}"))?;
            let props = ash::khr::pipeline_executable_properties::Device::new(&instance, &device);
            Ok(Vulkan { _entry: entry, instance, device, props })
        }
    }

    /// Compiles one compute shader with `bindings` storage buffers and returns, per
    /// executable the driver made of it, its name and statistics as text; with `dump`, writes
    /// its internal representations and pipeline-cache data to files named from that prefix.
    fn statistics(&self, spirv: &[u32], bindings: usize, dump: Option<&std::path::Path>) -> Res<Vec<String>> {
        let d = &self.device;
        // SAFETY: the objects made here are destroyed before returning; the create infos
        // outlive the calls that read them.
        unsafe {
            let module = d
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(spirv), None)
                .map_err(|e| format!("vkCreateShaderModule: {e}"))?;
            let binds: Vec<_> = (0..bindings as u32)
                .map(|b| {
                    vk::DescriptorSetLayoutBinding::default()
                        .binding(b)
                        .descriptor_type(vk::DescriptorType::STORAGE_BUFFER)
                        .descriptor_count(1)
                        .stage_flags(vk::ShaderStageFlags::COMPUTE)
                })
                .collect();
            let set = d
                .create_descriptor_set_layout(&vk::DescriptorSetLayoutCreateInfo::default().bindings(&binds), None)
                .map_err(|e| format!("{e}"))?;
            let sets = [set];
            let layout = d
                .create_pipeline_layout(&vk::PipelineLayoutCreateInfo::default().set_layouts(&sets), None)
                .map_err(|e| format!("{e}"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(module)
                .name(c"main");
            let mut flags = vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR;
            if dump.is_some() {
                flags |= vk::PipelineCreateFlags::CAPTURE_INTERNAL_REPRESENTATIONS_KHR;
            }
            let info = [vk::ComputePipelineCreateInfo::default().stage(stage).layout(layout).flags(flags)];
            // With `dump`, the pipeline goes through a pipeline cache of its own, whose data
            // (the driver's compiled code, in its own format) is written out.
            let cache = match dump {
                Some(_) => d.create_pipeline_cache(&vk::PipelineCacheCreateInfo::default(), None),
                None => Ok(vk::PipelineCache::null()),
            };
            let result = match cache {
                Err(e) => Err(format!("vkCreatePipelineCache: {e}")),
                Ok(cache) => {
                    let r = match d.create_compute_pipelines(cache, &info, None) {
                        Err((_, e)) => Err(format!("vkCreateComputePipelines: {e}")),
                        Ok(p) => {
                            let r = self.describe(p[0], dump).and_then(|r| match dump {
                                Some(prefix) => write_cache(d, cache, prefix).map(|()| r),
                                None => Ok(r),
                            });
                            d.destroy_pipeline(p[0], None);
                            r
                        }
                    };
                    d.destroy_pipeline_cache(cache, None);
                    r
                }
            };
            d.destroy_pipeline_layout(layout, None);
            d.destroy_descriptor_set_layout(set, None);
            d.destroy_shader_module(module, None);
            result
        }
    }

    /// The executables of a pipeline with their statistics (and internal representations
    /// written to files named from `dump`).
    unsafe fn describe(&self, p: vk::Pipeline, dump: Option<&std::path::Path>) -> Res<Vec<String>> {
        let exes = self
            .props
            .get_pipeline_executable_properties(&vk::PipelineInfoKHR::default().pipeline(p))
            .map_err(|e| format!("vkGetPipelineExecutablePropertiesKHR: {e}"))?;
        let mut out = vec![];
        for (n, e) in exes.iter().enumerate() {
            let mut s = format!(
                "  executable {n}: {} (subgroup size {})",
                e.name_as_c_str().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default(),
                e.subgroup_size
            );
            let ei = vk::PipelineExecutableInfoKHR::default().pipeline(p).executable_index(n as u32);
            let stats = self
                .props
                .get_pipeline_executable_statistics(&ei)
                .map_err(|e| format!("vkGetPipelineExecutableStatisticsKHR: {e}"))?;
            for st in &stats {
                let value = match st.format {
                    vk::PipelineExecutableStatisticFormatKHR::BOOL32 => format!("{}", st.value.b32 != 0),
                    vk::PipelineExecutableStatisticFormatKHR::INT64 => format!("{}", st.value.i64),
                    vk::PipelineExecutableStatisticFormatKHR::UINT64 => format!("{}", st.value.u64),
                    vk::PipelineExecutableStatisticFormatKHR::FLOAT64 => format!("{}", st.value.f64),
                    f => format!("(format {f:?})"),
                };
                let name = st.name_as_c_str().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default();
                s.push_str(&format!("\n    {name}: {value}"));
            }
            if let Some(prefix) = dump {
                for (name, text, data) in self.internal(&ei)? {
                    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
                    let path = format!("{}_{n}_{clean}.{}", prefix.display(), if text { "txt" } else { "bin" });
                    std::fs::write(&path, &data).map_err(|e| format!("{path}: {e}"))?;
                    s.push_str(&format!("\n    internal representation {name:?}: {} bytes in {path}", data.len()));
                }
            }
            out.push(s);
        }
        Ok(out)
    }
}

/// Writes a pipeline cache's data to `PREFIX.pipeline_cache.bin`.
///
/// # Safety
/// `cache` must be a live pipeline cache of `d`.
unsafe fn write_cache(d: &ash::Device, cache: vk::PipelineCache, prefix: &std::path::Path) -> Res<()> {
    let data = d.get_pipeline_cache_data(cache).map_err(|e| format!("vkGetPipelineCacheData: {e}"))?;
    let path = format!("{}.pipeline_cache.bin", prefix.display());
    std::fs::write(&path, &data).map_err(|e| format!("{path}: {e}"))
}

impl Vulkan {
    /// An executable's internal representations: name, whether text, and the bytes (text
    /// without its terminating zero).
    unsafe fn internal(&self, ei: &vk::PipelineExecutableInfoKHR) -> Res<Vec<(String, bool, Vec<u8>)>> {
        let get = self.props.fp().get_pipeline_executable_internal_representations_khr;
        let dev = self.device.handle();
        let err = |e: vk::Result| format!("vkGetPipelineExecutableInternalRepresentationsKHR: {e}");
        let mut n = 0u32;
        get(dev, ei, &mut n, std::ptr::null_mut()).result().map_err(err)?;
        let mut reps = vec![vk::PipelineExecutableInternalRepresentationKHR::default(); n as usize];
        // First their sizes, then their bytes.
        get(dev, ei, &mut n, reps.as_mut_ptr()).result().map_err(err)?;
        let mut bufs: Vec<Vec<u8>> = reps.iter().map(|r| vec![0u8; r.data_size]).collect();
        for (r, b) in reps.iter_mut().zip(&mut bufs) {
            r.p_data = b.as_mut_ptr().cast();
        }
        get(dev, ei, &mut n, reps.as_mut_ptr()).result().map_err(err)?;
        Ok(reps
            .iter()
            .zip(bufs)
            .map(|(r, mut b)| {
                let text = r.is_text != 0;
                if text {
                    while b.last() == Some(&0) {
                        b.pop();
                    }
                }
                (r.name_as_c_str().map(|c| c.to_string_lossy().into_owned()).unwrap_or_default(), text, b)
            })
            .collect())
    }
}

impl Drop for Vulkan {
    fn drop(&mut self) {
        // SAFETY: no object made from the device is alive (each `statistics` call frees its own).
        unsafe {
            self.device.destroy_device(None);
            self.instance.destroy_instance(None);
        }
    }
}
