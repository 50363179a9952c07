//! Tuning the tiled prefill GEMM. Which tiling is fastest depends on the shape and on the
//! device (on an H100 the default wins at M=512 and loses at M=128 on Llama-3-8B, and wgpu
//! does not report the SM count), so it is chosen by timing on the device. The choice is
//! codegen's: [`tune`] makes the candidate kernels, asks the caller's timer how long each
//! takes, decides, and returns the decisions as data; the runtime only times what it is
//! given.
//!
//! Every tiling sums k in the same order, so the choice changes no result bit.

use crate::{node_kernels, validate, Choice, Kernel, Target, Tiles};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Error, Graph, Result};
use std::collections::HashMap;

/// Timing rounds over the candidates on a GPU. Rounds alternate the candidates and each
/// keeps its fastest round, so that a passing slowdown of the device cannot decide for one.
pub const ROUNDS: usize = 5;

/// Timing rounds on a software adapter (lavapipe, llvmpipe), whose timings say little about a
/// GPU and whose every dispatch takes CPU time: one.
pub const SOFTWARE_ROUNDS: usize = 1;

/// What [`tune`] did with one kernel.
#[derive(Clone, Debug)]
pub struct Tuned {
    /// The kernel (the node it computes).
    pub kernel: String,
    /// Its index in the kernel list.
    pub index: usize,
    /// Each tiling timed and its µs per dispatch; empty where a kernel of the same shape was
    /// timed before.
    pub timings: Vec<(Tiles, f64)>,
    /// The tiling kept.
    pub chosen: Tiles,
    /// Whether the kernel was replaced (false where it was on the chosen tiling already).
    pub replaced: bool,
}

/// Tunes every tiled prefill GEMM of `kernels` (generated for `g`, `b` and `target`): for
/// each, the variants under the `candidates` that fit the target's workgroup memory are
/// timed in `rounds` alternating rounds ([`ROUNDS`] on a GPU, [`SOFTWARE_ROUNDS`] on a
/// software adapter; at least one) through `timer` (µs per dispatch), and the fastest
/// replaces the kernel (its [`Choice`] then reads `gemm TILING (tuned)`, with the kernel's
/// reason). Kernels with the same code ([`crate::KernelSource::code`]: the same shape) are
/// timed once and take the same choice. With fewer than two candidates that fit, nothing is
/// timed.
pub fn tune(
    kernels: &mut [Kernel],
    g: &Graph,
    b: &Bindings,
    target: &Target,
    candidates: &[Tiles],
    rounds: usize,
    timer: &mut dyn FnMut(&Kernel) -> Result<f64>,
) -> Result<Vec<Tuned>> {
    let fit: Vec<Tiles> = candidates
        .iter()
        .copied()
        .filter(|t| t.storage_bytes() <= target.max_workgroup_storage_bytes as usize)
        .collect();
    let mut report = vec![];
    if fit.len() < 2 {
        return Ok(report);
    }
    // The tiling chosen for each shape, by the WGSL of the kernel it was chosen for.
    let mut decided: HashMap<String, Tiles> = HashMap::new();
    for (index, slot) in kernels.iter_mut().enumerate() {
        let src = slot.source().clone();
        if !src.kind.is_tiled_gemm() {
            continue;
        }
        let node = src
            .bindings
            .iter()
            .find(|b| b.write)
            .map(|b| b.value.node)
            .ok_or_else(|| Error::Internal(format!("kernel '{}' writes no value", src.name)))?;
        let variant = |t: Tiles| -> Result<Kernel> {
            let tt = Target { gemm_tiles: Some(t), ..target.clone() };
            let mut k = node_kernels(g, node, b, &tt)?
                .into_iter()
                .find(|k| k.name == src.name)
                .ok_or_else(|| Error::Internal(format!("tiling {t} made no kernel '{}'", src.name)))?;
            // Its tiling is the tuner's, not forced; the reason for a GEMM stays the kernel's.
            if let Some(c) = &src.choice {
                k = k.with_choice(Choice { kernel: format!("gemm {t} (tuned)"), reason: c.reason.clone() });
            }
            validate(k, tt.caps)
        };
        // Kernels are compared by their code: the choice comment says how the tiling was
        // chosen, which differs between the generated kernel and a variant of its tiling.
        let (kernel, timings, chosen) = match decided.get(src.code()) {
            Some(&t) => (variant(t)?, vec![], t),
            None => {
                let mut tried = vec![];
                for &t in &fit {
                    tried.push((t, variant(t)?, f64::INFINITY));
                }
                for _ in 0..rounds.max(1) {
                    for (_, k, fastest) in &mut tried {
                        *fastest = fastest.min(timer(k)?);
                    }
                }
                let timings: Vec<(Tiles, f64)> = tried.iter().map(|(t, _, us)| (*t, *us)).collect();
                let (t, k, _) = tried
                    .into_iter()
                    .min_by(|a, b| a.2.total_cmp(&b.2))
                    .ok_or_else(|| Error::Internal("no tiling was timed".into()))?;
                decided.insert(src.code().to_string(), t);
                (k, timings, t)
            }
        };
        let replaced = kernel.source().code() != src.code();
        if replaced {
            *slot = kernel;
        }
        report.push(Tuned { kernel: src.name, index, timings, chosen, replaced });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate;
    use crate::proj::gemm_tiled::{CANDIDATES, DEFAULT};
    use glufuse_ir::builder::GraphBuilder;
    use glufuse_ir::{shape_of, DType};

    /// Three prefill projections of 40 rows; two of one shape.
    fn graph() -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[40, 64]));
        let (w1, w2, w3) = (
            b.weight("w1", DType::F32, &[64, 64], 0.1),
            b.weight("w2", DType::F32, &[64, 64], 0.1),
            b.weight("w3", DType::F32, &[64, 128], 0.1),
        );
        let (y1, y2, y3) = (b.matmul("a", x, w1), b.matmul("b", x, w2), b.matmul("c", x, w3));
        b.finish(&[y1, y2, y3]).unwrap()
    }

    /// Tunes with a timer that calls kernels of `fast` threads per workgroup faster; returns
    /// the report, the kernels after and how often the timer ran.
    fn tune_with(target: &Target, fast: u32) -> (Vec<Tuned>, Vec<Kernel>, usize) {
        let g = graph();
        let b = Bindings::new();
        let mut kernels = generate(&g, &b, target).unwrap();
        let mut calls = 0;
        let mut timer = |k: &Kernel| -> Result<f64> {
            calls += 1;
            Ok(if k.source().workgroup_size == fast { 1.0 } else { 2.0 })
        };
        let tuned = tune(&mut kernels, &g, &b, target, &CANDIDATES, ROUNDS, &mut timer).unwrap();
        (tuned, kernels, calls)
    }

    #[test]
    fn the_fastest_tiling_is_kept_and_each_shape_is_timed_once() {
        let target = Target { max_workgroup_storage_bytes: 49152, ..Target::default() };
        // The 256-thread tiling is faster: every GEMM is replaced by it.
        let (tuned, kernels, calls) = tune_with(&target, 256);
        let names: Vec<&str> = tuned.iter().map(|t| t.kernel.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(calls, 2 * ROUNDS * CANDIDATES.len(), "two shapes, each candidate every round");
        assert!(tuned[1].timings.is_empty(), "'b' has the shape of 'a': {tuned:?}");
        assert!(tuned.iter().all(|t| t.chosen == CANDIDATES[1] && t.replaced), "{tuned:?}");
        assert!(kernels.iter().all(|k| k.source().workgroup_size == 256));
        let choice = |k: &Kernel| k.source().choice.as_ref().unwrap().kernel.clone();
        assert!(kernels.iter().all(|k| choice(k) == "gemm 8x16 (tuned)"), "{kernels:?}");
        assert!(kernels.iter().all(|k| k.source().wgsl.starts_with("// choice: gemm 8x16 (tuned): M=40 > 8")));
        // The default is faster: nothing is replaced, and the kernels keep their choice.
        let (tuned, kernels, _) = tune_with(&target, 128);
        assert!(tuned.iter().all(|t| t.chosen == DEFAULT && !t.replaced), "{tuned:?}");
        assert!(kernels.iter().all(|k| k.source().workgroup_size == 128));
        assert!(kernels.iter().all(|k| choice(k) == "gemm 8x8x8"), "{kernels:?}");
    }

    #[test]
    fn with_one_candidate_that_fits_nothing_is_timed() {
        // WebGPU's 16 KiB hold the default tiling only.
        let (tuned, _, calls) = tune_with(&Target::default(), 256);
        assert!(tuned.is_empty() && calls == 0);
    }
}
