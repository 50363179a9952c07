//! `glufuse bench-probe [--cases ..]`: the experiment behind the long-lived-process slowdown
//! (a graph timed after another graph ran in the same process was up to 3× slower than in a
//! fresh process, on an H100). Each case runs in a fresh child process and times the same
//! graph, the fused Llama-3-8B decode FFN with f32 weights (470 MB), under one history:
//!
//! - `fresh`: timed at once, again at once, after 2 s idle, after 300 ms of warm-up;
//! - `after-free`: after another graph (the same FFN with f16 weights) was built, timed and
//!   dropped; then after 300 ms of warm-up;
//! - `kept`: the same, the other graph kept alive;
//! - `after-free-memusage`, `after-free-dedicated`: `after-free` under wgpu's
//!   `MemoryHints::MemoryUsage` (small blocks) and under 4 MiB blocks (every large buffer in a
//!   memory allocation of its own);
//! - `idle`: warmed up, then timed after 0, 0.2, 1 and 3 s of idle;
//! - `churn`: timed, then five small graphs built, timed and dropped, then timed again, and
//!   again after warm-up;
//! - `dispatch-floor`: no graph: chains of 256 dispatches of a kernel that does next to
//!   nothing, each dispatch reading what the one before wrote (so the GPU waits between
//!   them) or each on a buffer of its own, from 1 to 132 workgroups, in one pass or a pass
//!   each: what a dispatch costs whatever its work.
//!
//! Every measurement prints its samples in order (µs per run, timestamps and wall clock), the
//! Unix time (to line up with `nvidia-smi`'s clock log) and, once per case, where wgpu's
//! allocator put the large buffers.

use crate::out::outln;
use glufuse::ir::{DType, Layout};
use glufuse::passes::PassManager;
use glufuse::runtime::{median, time_series, timed_pass, Executable, Gpu, GpuOptions, WARM_UP};
use glufuse::synth::ffn_graph;
use glufuse::{Error, Graph, Result};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Every case, in the order run.
pub const CASES: &[&str] =
    &["fresh", "after-free", "kept", "after-free-memusage", "after-free-dedicated", "idle", "churn", "dispatch-floor"];

/// Runs the cases, each in a child process of its own (`case` set: this process is that
/// child).
pub fn run(cases: &[String], case: Option<&str>, reps: usize, samples: usize) -> Result<()> {
    if let Some(c) = case {
        return run_case(c, reps, samples);
    }
    let exe = std::env::current_exe().map_err(|e| Error::Job(format!("cannot find this program: {e}")))?;
    let list: Vec<String> =
        if cases.is_empty() { CASES.iter().map(|c| c.to_string()).collect() } else { cases.to_vec() };
    for c in &list {
        if !CASES.contains(&c.as_str()) {
            return Err(Error::input(format!("bench-probe: no case '{c}'; cases: {}", CASES.join(", "))));
        }
    }
    for c in &list {
        outln!("## case {c}");
        let status = std::process::Command::new(&exe)
            .args(["bench-probe", "--case", c, "--reps", &reps.to_string(), "--samples", &samples.to_string()])
            .status()
            .map_err(|e| Error::Job(format!("cannot run a probe child: {e}")))?;
        if !status.success() {
            outln!("case {c} failed: {status}");
        }
    }
    Ok(())
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// The fused decode FFN at Llama-3-8B.
fn graph(dtype: DType) -> Result<Graph> {
    let mut g = ffn_graph(4096, 14336, 1, dtype, Layout::Kn)?;
    PassManager::standard().run(&mut g)?;
    Ok(g)
}

fn build<'a>(gpu: &'a Gpu, g: &Graph) -> Result<Executable<'a>> {
    Executable::new(gpu, g, &Default::default())
}

struct Probe<'a> {
    gpu: &'a Gpu,
    case: String,
    reps: usize,
    samples: usize,
    t0: Instant,
}

impl Probe<'_> {
    /// Times `exe` (`reps` runs per submission, `samples` submissions, after `warm` of
    /// warm-up) and prints the samples.
    fn measure(&self, what: &str, exe: &Executable, warm: Duration) -> Result<f64> {
        let start = now();
        let wall0 = Instant::now();
        let (t, ts) = time_series(self.gpu, self.reps, self.samples, warm, |enc, reps, q| exe.record(enc, reps, q))?;
        let wall = wall0.elapsed().as_secs_f64();
        let m = median(&t);
        let show = |v: &[f64]| v.iter().map(|x| format!("{x:.1}")).collect::<Vec<_>>().join(" ");
        outln!(
            "{} | {what} | at {:.1} s (unix {start:.3}) | median {m:.1} µs ({}) | samples {} | took {wall:.2} s",
            self.case,
            self.t0.elapsed().as_secs_f64(),
            if ts { "timestamps" } else { "wall clock" },
            show(&t)
        );
        Ok(m)
    }

    /// Prints a line marking this moment.
    fn note(&self, what: &str) {
        outln!("{} | {what} | at {:.1} s (unix {:.3})", self.case, self.t0.elapsed().as_secs_f64(), now());
    }

    /// Where the allocator put the buffers of 16 MiB and more.
    fn placement(&self) {
        let Some(r) = self.gpu.device.generate_allocator_report() else {
            outln!("{} | allocator report: none on this backend", self.case);
            return;
        };
        let blocks: Vec<String> = r.blocks.iter().map(|b| format!("{} MiB", b.size >> 20)).collect();
        outln!(
            "{} | allocator: {} blocks [{}], {} MiB allocated, {} MiB reserved",
            self.case,
            r.blocks.len(),
            blocks.join(", "),
            r.total_allocated_bytes >> 20,
            r.total_reserved_bytes >> 20
        );
        for (bi, b) in r.blocks.iter().enumerate() {
            for a in &r.allocations[b.allocations.clone()] {
                if a.size >= 16 << 20 {
                    outln!(
                        "{} |   block {bi} ({} MiB): '{}' at offset {} MiB, {} MiB",
                        self.case,
                        b.size >> 20,
                        a.name,
                        a.offset >> 20,
                        a.size >> 20
                    );
                }
            }
        }
    }
}

fn run_case(case: &str, reps: usize, samples: usize) -> Result<()> {
    let mib = 1u64 << 20;
    let memory_hints = match case {
        "after-free-memusage" => wgpu::MemoryHints::MemoryUsage,
        "after-free-dedicated" => wgpu::MemoryHints::Manual { suballocated_device_memory_block_size: 4 * mib..4 * mib },
        _ => wgpu::MemoryHints::Performance,
    };
    let gpu = Gpu::with_options(&GpuOptions { memory_hints, ..Default::default() })?;
    let p = Probe { gpu: &gpu, case: case.to_string(), reps, samples, t0: Instant::now() };
    p.note(&format!("device {}", gpu.describe()));
    if case == "dispatch-floor" {
        return dispatch_floor(&p);
    }
    let none = Duration::ZERO;
    let warm = Duration::from_millis(300);
    let target = graph(DType::F32)?;
    match case {
        "fresh" => {
            let t = build(&gpu, &target)?;
            p.placement();
            p.measure("target, at once", &t, none)?;
            p.measure("target, again", &t, none)?;
            std::thread::sleep(Duration::from_secs(2));
            p.measure("target, after 2 s idle", &t, none)?;
            p.measure("target, after 300 ms warm-up", &t, warm)?;
        }
        "after-free" | "after-free-memusage" | "after-free-dedicated" | "kept" => {
            let other = build(&gpu, &graph(DType::F16)?)?;
            p.measure("other (f16 weights)", &other, none)?;
            let kept = if case == "kept" {
                Some(other)
            } else {
                drop(other);
                None
            };
            let t = build(&gpu, &target)?;
            p.placement();
            p.measure("target, at once", &t, none)?;
            p.measure("target, again", &t, none)?;
            p.measure("target, after 300 ms warm-up", &t, warm)?;
            drop(kept);
        }
        "idle" => {
            let t = build(&gpu, &target)?;
            p.measure("target, after 300 ms warm-up", &t, warm)?;
            for ms in [0u64, 200, 1000, 3000] {
                std::thread::sleep(Duration::from_millis(ms));
                p.measure(&format!("target, after {ms} ms idle"), &t, none)?;
            }
        }
        "churn" => {
            let t = build(&gpu, &target)?;
            p.measure("target, at once", &t, none)?;
            for (k, (h, i, dtype)) in [
                (896, 4864, DType::F32),
                (896, 4864, DType::F16),
                (2048, 11008, DType::F32),
                (2048, 11008, DType::F16),
                (1024, 2816, DType::F32),
            ]
            .into_iter()
            .enumerate()
            {
                let mut g = ffn_graph(h, i, 16, dtype, Layout::Kn)?;
                if k % 2 == 0 {
                    PassManager::standard().run(&mut g)?;
                }
                let e = build(&gpu, &g)?;
                p.measure(&format!("small graph {h}x{i} {dtype} M=16"), &e, none)?;
            }
            p.measure("target, after the small graphs", &t, none)?;
            p.measure("target, after 300 ms warm-up", &t, warm)?;
        }
        other => return Err(Error::input(format!("bench-probe: no case '{other}'"))),
    }
    Ok(())
}

/// Dispatches per chain in `dispatch-floor`.
const FLOOR_CHAIN: usize = 256;

/// The `dispatch-floor` case: µs per dispatch of a kernel that adds 1 to 1024 words, in
/// chains of [`FLOOR_CHAIN`].
fn dispatch_floor(p: &Probe) -> Result<()> {
    let dev = &p.gpu.device;
    let src = "@group(0) @binding(0) var<storage, read_write> b: array<u32>;\n\
               @compute @workgroup_size(256)\n\
               fn main(@builtin(global_invocation_id) g: vec3<u32>) { let i = g.x % 1024u; b[i] = b[i] + 1u; }\n";
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("floor"),
        source: wgpu::ShaderSource::Wgsl(src.into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("floor"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let layout = pipeline.get_bind_group_layout(0);
    let groups: Vec<wgpu::BindGroup> = (0..FLOOR_CHAIN)
        .map(|_| {
            let buf = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("floor"),
                size: 4096,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &layout,
                entries: &[wgpu::BindGroupEntry { binding: 0, resource: buf.as_entire_binding() }],
            })
        })
        .collect();
    for (dependent, one_pass) in [(true, true), (false, true)] {
        for wgs in [1u32, 4, 32, 132] {
            let record = |enc: &mut wgpu::CommandEncoder, reps: usize, ts: Option<(&wgpu::QuerySet, u32)>| {
                let group = |i: usize| if dependent { &groups[0] } else { &groups[i] };
                if one_pass {
                    let mut pass = timed_pass(enc, "floor", ts);
                    pass.set_pipeline(&pipeline);
                    for _ in 0..reps {
                        for i in 0..FLOOR_CHAIN {
                            pass.set_bind_group(0, group(i), &[]);
                            pass.dispatch_workgroups(wgs, 1, 1);
                        }
                    }
                } else {
                    // Timestamps around the whole: at the start of the first pass, the end of the last.
                    let last = reps * FLOOR_CHAIN - 1;
                    for j in 0..=last {
                        let tw = ts.map(|(q, i)| wgpu::ComputePassTimestampWrites {
                            query_set: q,
                            beginning_of_pass_write_index: (j == 0).then_some(i),
                            end_of_pass_write_index: (j == last).then_some(i + 1),
                        });
                        let mut pass =
                            enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: tw });
                        pass.set_pipeline(&pipeline);
                        pass.set_bind_group(0, group(j % FLOOR_CHAIN), &[]);
                        pass.dispatch_workgroups(wgs, 1, 1);
                    }
                }
            };
            let (t, ts) = time_series(p.gpu, p.reps, p.samples, WARM_UP, record)?;
            let m = median(&t) / FLOOR_CHAIN as f64;
            outln!(
                "{} | {} | {wgs} workgroups of 256 | {} | {m:.2} µs per dispatch ({})",
                p.case,
                if dependent { "dependent (one buffer)" } else { "independent (a buffer each)" },
                if one_pass { "one pass" } else { "a pass each" },
                if ts { "timestamps" } else { "wall clock" }
            );
        }
    }
    Ok(())
}
