//! Timing on the GPU: compute passes with timestamp queries around them; [`time`], the
//! median time per repetition of a recorded workload (wall clock where the device has no
//! timestamps); [`profile_dispatches`], the time of each dispatch of an executable
//! (timestamps between the dispatches of one pass). The benchmark and the GEMM tuner
//! measure through these.

use super::{Executable, Gpu};
use crate::{Error, Result};
use std::time::{Duration, Instant};

/// Begins a compute pass, with timestamps written at its start and end into `timestamps`
/// (query set, first index) where given.
pub fn timed_pass<'e>(
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

/// How long to keep the GPU busy before timing it. Measured on an H100 (`glufuse
/// bench-probe`, `benches/results/h100-2026-11-26-probe.txt`): after about a second without
/// work its SM clock falls from 1980 MHz towards 345 MHz (the memory clock stays), and it takes
/// 100-300 ms of work to come back; a bandwidth-bound kernel timed before that runs up to 3.3×
/// slower (158.7 µs warm, 286.8 µs after 2 s idle, 525 µs after 3 s). Freeing or keeping
/// other graphs' buffers, and wgpu's memory block sizes, made no difference.
pub const WARM_UP: Duration = Duration::from_millis(500);

/// Times `reps` repetitions of `record` per submission; returns the median µs per repetition
/// and whether timestamps were used. One warm-up submission first, and no more: see
/// [`time_series`] and [`WARM_UP`] for timings that must not depend on what the GPU did
/// before.
pub fn time<F: Fn(&mut wgpu::CommandEncoder, usize, Option<(&wgpu::QuerySet, u32)>)>(
    gpu: &Gpu,
    reps: usize,
    samples: usize,
    record: F,
) -> Result<(f64, bool)> {
    let (t, ts) = time_series(gpu, reps, samples, Duration::ZERO, record)?;
    Ok((median(&t), ts))
}

/// The median of `v` (0 for none).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// [`time`]'s samples, in the order taken (µs per repetition), after warming up: one
/// submission, then more of `reps` repetitions each until `warm_up` of wall clock has
/// passed.
pub fn time_series<F: Fn(&mut wgpu::CommandEncoder, usize, Option<(&wgpu::QuerySet, u32)>)>(
    gpu: &Gpu,
    reps: usize,
    samples: usize,
    warm_up: Duration,
    record: F,
) -> Result<(Vec<f64>, bool)> {
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
    let wait = || gpu.wait("timing the graph");
    // Warm-up.
    let start = Instant::now();
    let mut enc = dev.create_command_encoder(&Default::default());
    record(&mut enc, 1, None);
    gpu.queue.submit([enc.finish()]);
    wait()?;
    while start.elapsed() < warm_up {
        let mut enc = dev.create_command_encoder(&Default::default());
        record(&mut enc, reps.max(1), None);
        gpu.queue.submit([enc.finish()]);
        wait()?;
    }
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
    Ok((times, qs.is_some()))
}

/// The time of each dispatch of `exe`, µs, median over `samples` runs (after one warm-up
/// run): a timestamp before every dispatch and one after the last, all in one pass, so a
/// dispatch's time includes the wait for the one before it to finish (the barrier). `None`
/// where the device cannot write timestamps inside a pass. The inputs are whatever the
/// executable's input buffers hold (run it once first).
pub fn profile_dispatches(gpu: &Gpu, exe: &Executable, samples: usize) -> Result<Option<Vec<f64>>> {
    if !gpu.timestamps_inside_passes() {
        return Ok(None);
    }
    let n = exe.dispatches.len();
    if n == 0 {
        return Ok(Some(vec![]));
    }
    let dev = &gpu.device;
    let queries = n + 1;
    let sets: Vec<(wgpu::QuerySet, u32)> = (0..queries.div_ceil(QUERIES_PER_SET))
        .map(|k| {
            let count = (queries - k * QUERIES_PER_SET).min(QUERIES_PER_SET) as u32;
            let q =
                dev.create_query_set(&wgpu::QuerySetDescriptor { label: None, ty: wgpu::QueryType::Timestamp, count });
            (q, count)
        })
        .collect();
    let bytes = (queries * 8) as u64;
    let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile resolve"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let read = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile read"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let period = gpu.queue.get_timestamp_period() as f64;
    let wait = || gpu.wait("timing the graph");
    let stamp = |pass: &mut wgpu::ComputePass, j: usize| {
        pass.write_timestamp(&sets[j / QUERIES_PER_SET].0, (j % QUERIES_PER_SET) as u32)
    };
    let mut per: Vec<Vec<f64>> = vec![vec![]; n];
    for sample in 0..=samples.max(1) {
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("profile"), timestamp_writes: None });
            for (i, d) in exe.dispatches.iter().enumerate() {
                stamp(&mut pass, i);
                pass.set_pipeline(&d.pipeline);
                pass.set_bind_group(0, &d.group, &[]);
                pass.dispatch_workgroups(d.workgroups[0], d.workgroups[1], d.workgroups[2]);
            }
            stamp(&mut pass, n);
        }
        for (k, (q, count)) in sets.iter().enumerate() {
            enc.resolve_query_set(q, 0..*count, &resolve, (k * QUERIES_PER_SET * 8) as u64);
        }
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, bytes);
        gpu.scoped("profiling the dispatches", || gpu.queue.submit([enc.finish()]))?;
        let slice = read.slice(..);
        slice.map_async(wgpu::MapMode::Read, |_| {});
        wait()?;
        let ticks: Vec<u64> = {
            let v = slice.get_mapped_range().map_err(|e| Error::Gpu(e.to_string()))?;
            bytemuck::cast_slice::<u8, u64>(&v).to_vec()
        };
        read.unmap();
        if sample == 0 {
            continue; // warm-up
        }
        for (i, p) in per.iter_mut().enumerate() {
            p.push(ticks[i + 1].saturating_sub(ticks[i]) as f64 * period / 1e3);
        }
    }
    Ok(Some(per.iter().map(|p| median(p)).collect()))
}

/// Queries per timestamp query set (wgpu's limit).
const QUERIES_PER_SET: usize = 4096;
