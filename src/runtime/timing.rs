//! Timing on the GPU: compute passes with timestamp queries around them, and [`time`], the
//! median time per repetition of a recorded workload (wall clock where the device has no
//! timestamps). The benchmark and the GEMM tuner measure through these.

use super::Gpu;
use crate::{Error, Result};
use std::time::Instant;

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

/// Times `reps` repetitions of `record` per submission; returns the median µs per repetition
/// and whether timestamps were used.
pub fn time<F: Fn(&mut wgpu::CommandEncoder, usize, Option<(&wgpu::QuerySet, u32)>)>(
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
