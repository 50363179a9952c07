//! The prefill GEMM for 16-byte aligned operands: register-blocked, double-buffered through
//! workgroup memory, one kernel shape for `x·W` and for the fused gated unit.
//!
//! A workgroup of `16·ny` threads (16 along the weight columns, `ny` along the rows) owns
//! `ny·rt` rows of x and 128 weight columns, split into two sub-tiles of 64: for the fused
//! unit the gate and the up columns of the same 64 outputs, for a plain projection two
//! adjacent blocks of 64 outputs. Each thread keeps `rt` rows × 4 columns of each sub-tile in
//! registers (`rt` = 8: 64 accumulators), so both kernels have the same register footprint
//! and the same arithmetic per loaded byte; the fused one spends it on two products of one x
//! tile.
//!
//! k advances `bk` at a time through two stages of workgroup memory: each thread issues the
//! global loads of step t+1 into registers, multiplies out step t from one stage, then stores
//! the loaded vectors into the other stage, so a step costs one barrier and the loads' latency
//! hides behind the multiply-adds. x and `[N, K]` weights are stored transposed (k-major) so
//! that the inner loop reads one `vec4` of rows and one `vec4` of columns per sub-tile and
//! does `4·rt·2` multiply-adds with them.
//!
//! The default tiling, [`DEFAULT`] (8 rows per thread, k steps of 8, 128 threads: 64 rows ×
//! 128 columns, 12 KiB of workgroup memory, so it fits WebGPU's 16 KiB everywhere), is
//! chosen for occupancy. On an H100, NVIDIA's driver gives it 141–155 registers per thread
//! (`examples/pipeline_stats.rs` asks), so three workgroups share an SM; the 256-thread
//! 128×128 tiling with k steps of 16 takes 165–185, one workgroup per SM, and took 14–38%
//! more time at M=512 in f32. At M=128 on the largest shape it is the faster (README).
//!
//! Row blocks vary fastest across the grid (`workgroup_id.x`), so the workgroups that read
//! the same weight columns run at the same time and share them through L2 instead of each
//! fetching them again; on the H100 that took M=512 `[K,N]` from 34.7 to 38.1 TFLOP/s at
//! Llama-3-8B.
//!
//! The tiles are nested arrays indexed by constants at every level but the last (the stage
//! loop is unrolled by two), so wgpu's bounds checks on workgroup arrays clamp only the
//! loop-invariant `tx` / `ty`. With one flat array and computed indices, each of those loads
//! carried its own clamp and the kernel ran 30% slower on an H100.
//!
//! Where the grid is small against the device ([`split`]: Qwen2-0.5B's q/k/v, output and down
//! projections at 128 rows have 14–18 tiles), k is split: each workgroup multiplies out one
//! part of the k steps and writes its partial sums to a scratch buffer, laid out as the split
//! GEMV's, for the split-sum kernel (`gemv::split_sum`) to add up and finish.
//!
//! Requires `K % 4 == 0` and, for `[K, N]` weights, 4-aligned columns and offsets
//! ([`fits`]); the unaligned GEMM (`gemm_unaligned.rs`) covers the rest.

use super::{binds, epilogue, finish, kind, up_name, ProjShape, ProjValues};
use crate::elementwise::MATH;
use crate::wgsl::UNPACK4_F16;
use crate::{KernelSource, ProjKernel, Target};
use glufuse_ir::Layout;
use glufuse_ir::{Error, Result};
use std::fmt::Write;

/// Weight columns of one sub-tile.
const SUB: usize = 64;

/// The tiling of one GEMM kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiles {
    /// Rows of x per thread: 4 or 8 (the workgroup covers `ny·rt` rows).
    pub rt: usize,
    /// k per step: 8 or 16.
    pub bk: usize,
    /// Threads along the rows: 16 (256 threads per workgroup) or 8 (128).
    pub ny: usize,
}

impl Tiles {
    /// Rows of x per workgroup.
    pub fn bm(&self) -> usize {
        self.ny * self.rt
    }
    /// Threads per workgroup (16 along the weight columns, `ny` along the rows).
    pub fn threads(&self) -> usize {
        16 * self.ny
    }
    /// Workgroup memory in bytes (two stages of the x and weight tiles).
    pub fn storage_bytes(&self) -> usize {
        2 * (self.bk * self.bm() + self.bk * 2 * SUB) * 4
    }
    /// Whether glufuse generates this tiling.
    pub fn supported(&self) -> bool {
        matches!(self.rt, 4 | 8) && matches!(self.bk, 8 | 16) && matches!(self.ny, 8 | 16)
    }
}

/// `RTxBK` (256 threads) or `RTxBKxNY`, as `glufuse bench --gemm-tiles` takes it.
impl std::fmt::Display for Tiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.rt, self.bk)?;
        if self.ny != 16 {
            write!(f, "x{}", self.ny)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Tiles {
    type Err = Error;
    /// Parses the [`Display`](std::fmt::Display) form; only supported tilings.
    fn from_str(s: &str) -> Result<Tiles> {
        let parts: Vec<usize> = s.split('x').map(|p| p.parse().ok()).collect::<Option<_>>().unwrap_or_default();
        let t = match parts[..] {
            [rt, bk] => Some(Tiles { rt, bk, ny: 16 }),
            [rt, bk, ny] => Some(Tiles { rt, bk, ny }),
            _ => None,
        };
        t.filter(Tiles::supported).ok_or_else(|| Error::input(unsupported(&format!("{s:?}"))))
    }
}

/// Why a tiling is refused.
fn unsupported(tiling: &str) -> String {
    format!(
        "GEMM tiling {tiling} is not one glufuse has: RTxBK or RTxBKxNY with RT (rows per thread) 4 or 8, \
         BK (k per step) 8 or 16, NY (threads along the rows) 8 or 16"
    )
}

/// Whether the aligned GEMM applies: x rows and weight rows load as 16-byte vectors.
pub fn fits(s: &ProjShape) -> bool {
    let (go, uo) = s.offsets();
    s.k % 4 == 0
        && match s.layout {
            Layout::Kn => s.n_total % 4 == 0 && s.n % 4 == 0 && go % 4 == 0 && uo % 4 == 0,
            Layout::Nk => true,
        }
}

/// Output columns one workgroup covers.
fn out_cols(s: &ProjShape) -> usize {
    if s.fused.is_some() {
        SUB
    } else {
        2 * SUB
    }
}

/// The default tiling (see the module header): 8 rows per thread, k steps of 8, 8 threads
/// along the rows (128 per workgroup).
pub const DEFAULT: Tiles = Tiles { rt: 8, bk: 8, ny: 8 };

/// The tilings worth timing against each other on a device ([`crate::tune`]):
/// the default and the 256-thread 128×128 one with k steps of 16.
pub const CANDIDATES: [Tiles; 2] = [DEFAULT, Tiles { rt: 8, bk: 16, ny: 16 }];

/// The tiling for a target: the one it forces, else [`DEFAULT`].
pub fn tiles(t: &Target) -> Tiles {
    t.gemm_tiles.unwrap_or(DEFAULT)
}

/// The 256-thread tiling with 128 rows per workgroup and k steps of 16 ([`CANDIDATES`]).
pub const WIDE: Tiles = Tiles { rt: 8, bk: 16, ny: 16 };

/// The tiling for one shape: the one the target forces; else, for the fused unit, [`WIDE`]
/// where the wave model says the default loses to its tail (with the reason); else
/// [`DEFAULT`].
///
/// The wave model, for a device whose [`Target::gemm_wave`] is known (how many default
/// workgroups it runs at once: on an H100 3 per SM, by the driver's 141–155 registers per
/// thread, × 132 SMs): where the default grid needs a second wave that is less than half
/// full, about half of the kernel's time is that tail, with most of the device idle; the
/// 256-thread tiling covers the same outputs with half the workgroups (one per SM at 165–185
/// registers) and fills its waves better. Measured on the H100 (`benches/results/`), fused
/// f32 Llama-3-8B gate/up at M=128: 448 default workgroups (1.13 waves of 396), 1199.9 µs
/// against 1078.6 µs with [`WIDE`], where the unfused graph (two plain GEMMs, each of 224
/// workgroups in one wave) took 1164.5 µs; at the two other shapes, and at M=512 (4.5
/// waves), the default is the faster, and the model keeps it.
pub fn pick(s: &ProjShape, t: &Target) -> (Tiles, Option<String>) {
    if let Some(forced) = t.gemm_tiles {
        return (forced, Some("forced".into()));
    }
    let Some(wave) = t.gemm_wave.map(|w| w as usize) else {
        return (DEFAULT, None);
    };
    let groups = s.rows.div_ceil(DEFAULT.bm()) * s.n.div_ceil(out_cols(s));
    let tail = groups.saturating_sub(wave);
    if s.fused.is_some()
        && groups > wave
        && groups <= 2 * wave
        && 2 * tail < wave
        && WIDE.storage_bytes() <= t.max_workgroup_storage_bytes as usize
    {
        let why = format!(
            "the default grid of {groups} workgroups would end in a second wave {tail}/{wave} full; 128-row tiles halve the grid"
        );
        return (WIDE, Some(why));
    }
    (DEFAULT, None)
}

/// Fewest k steps one part of a split tiled GEMM multiplies out: each part writes its tile's
/// partial sums (parts × rows × columns floats, read back by the split-sum kernel), and the
/// split costs that second dispatch.
pub const SPLIT_MIN_STEPS: usize = 16;

/// Most parts a tiled GEMM splits k into.
pub const SPLIT_MAX_PARTS: usize = 32;

/// Into how many parts of k the tiled GEMM at tiling `tl` splits (1: none), and why: the
/// parts the target forces (where each gets a step); else, where the grid is less than a
/// third of the device's wave ([`Target::gemm_wave`], or 128, `gemv::GEMV_MIN_WORKGROUPS`,
/// where that is not known; on an H100, one workgroup an SM), the parts that make it two
/// thirds (two an SM), each at least [`SPLIT_MIN_STEPS`] steps, at most [`SPLIT_MAX_PARTS`]
/// and no more than the scratch buffer of partial sums holds in one binding
/// ([`Target::max_binding_bytes`]). The last part takes what the others leave.
///
/// Measured on an H100 on the Qwen2-0.5B-sized f32 prefill (128 tokens), whose q/k/v, output
/// and down projections have 14–18 default tiles (`benches/results/h100-2026-11-28t-split-gemm.md`):
/// unsplit 24.9–25.0 ms (the down projection, K = 4864, 595–602 µs a layer); split as here
/// 8.1 ms (q/k/v and output 7 parts, 37–38 µs and a 10 µs sum each; down 19 parts, 70 µs);
/// parts for a whole wave, which splits the fused gate/up's 152 tiles too, 8.6 ms; for a third
/// of it 8.5 ms; parts of at least 8 steps 8.1 ms, of 32 9.0 ms.
pub fn split(s: &ProjShape, tl: Tiles, t: &Target) -> (usize, Option<String>) {
    let steps = s.k.div_ceil(tl.bk);
    let grid = s.rows.div_ceil(tl.bm()) * s.n.div_ceil(out_cols(s));
    // Parts of at most `ceil(steps / p)` steps, none empty.
    let whole = |p: usize| steps.div_ceil(steps.div_ceil(p.clamp(1, steps.max(1))));
    if let Some(f) = t.gemm_split {
        let p = whole(f);
        return if p > 1 { (p, Some(format!("split K={} in {p} (forced)", s.k))) } else { (1, None) };
    }
    let wave = t.gemm_wave.map_or(super::gemv::GEMV_MIN_WORKGROUPS, |w| w as usize);
    if 3 * grid >= wave {
        return (1, None);
    }
    // (No more parts than the partial sums' scratch buffer, one binding, holds.)
    let per_part = (s.na() * s.rows * s.n * 4) as u64;
    let fit = usize::try_from(t.max_binding_bytes / per_part.max(1)).unwrap_or(usize::MAX);
    let p = whole((2 * wave).div_ceil(3 * grid).min(steps / SPLIT_MIN_STEPS).min(SPLIT_MAX_PARTS).min(fit));
    if p < 2 {
        return (1, None);
    }
    let why = format!("split K={} in {p}: {grid} workgroups < a third of {wave}, {} with the split", s.k, grid * p);
    (p, Some(why))
}

/// The aligned prefill GEMM (see the module header), over all of k (`split` 1) or over part
/// `wg.y / column tiles` of `split` parts of its k steps, whose partial sums go to the
/// scratch buffer for the split-sum kernel (`gemv::split_sum`) to add up and finish.
pub(crate) fn gemm_tiled(
    name: String,
    s: &ProjShape,
    v: &ProjValues,
    t: &Target,
    tl: Tiles,
    split: usize,
) -> Result<KernelSource> {
    let Tiles { rt, bk, ny } = tl;
    if !tl.supported() {
        return Err(Error::Gpu(unsupported(&tl.to_string())));
    }
    if tl.storage_bytes() > t.max_workgroup_storage_bytes as usize {
        return Err(Error::Gpu(format!(
            "'{name}': GEMM tiling {tl:?} needs {} bytes of workgroup memory, past this device's {}",
            tl.storage_bytes(),
            t.max_workgroup_storage_bytes
        )));
    }
    let bm = tl.bm();
    let kq = bk / 4; // x vectors per row per step
    let kv = s.k / 4; // x (and [N, K] weight) vectors per row
    let per_sub = bk * SUB / 4; // weight vectors per sub-tile per step
    let steps = s.k.div_ceil(bk);
    // Steps per part: every part but the last takes `sp`, the last what is left (at least one).
    let sp = steps.div_ceil(split.max(1));
    if split == 0 || (split > 1 && (split - 1) * sp >= steps) {
        return Err(Error::Internal(format!("'{name}': {steps} steps of k do not make {split} parts")));
    }
    let fused = s.fused.is_some();
    let (go, uo) = s.offsets();
    let w_elem = if s.f16 { "vec2<u32>" } else { "vec4<f32>" };
    let mut b = binds(s, v, "vec4<f32>", w_elem);
    if split > 1 {
        // The partial sums go to the scratch buffer, not to the output (as the split GEMV's).
        b.decls.pop();
        b.bindings.pop();
        b.scratch("part", true, "f32");
    }
    let col_tiles = s.n.div_ceil(out_cols(s));
    let wv = |buf: &str, idx: &str| {
        if s.f16 {
            format!("unpack4_f16_({buf}[{idx}])")
        } else {
            format!("{buf}[{idx}]")
        }
    };
    let threads = tl.threads();
    let x_slots = (bm * kq).div_ceil(threads);
    let x_guard = (bm * kq) % threads != 0;
    // 2·per_sub = 32·bk: 256 or 512 weight vectors, a whole number of slots.
    let w_slots = 2 * per_sub / threads;

    let mut body = String::new();
    // Row blocks vary fastest across workgroups (see the module header).
    let _ = writeln!(body, "    let tx = lid % 16u;\n    let ty = lid / 16u;\n    let row0 = wg.x * {bm}u;");
    if split > 1 {
        // Part kp: steps s0 .. s0 + ns of k.
        let _ = writeln!(
            body,
            "    let kp = wg.y / {col_tiles}u;\n    let s0 = kp * {sp}u;\n    let ns = min({sp}u, {steps}u - s0);\n    let col0 = (wg.y % {col_tiles}u) * {}u;",
            out_cols(s)
        );
    } else {
        let _ = writeln!(body, "    let col0 = wg.y * {}u;", out_cols(s));
    }
    // The part's step count, and where its steps start (all of k unsplit: constants).
    let (ns, s0) = if split > 1 { ("ns".to_string(), "s0 + ") } else { (format!("{steps}u"), "") };
    for i in 0..rt {
        for sub in 0..2 {
            let _ = writeln!(body, "    var acc{i}_{sub} = vec4<f32>(0.0);");
        }
    }
    for e in 0..x_slots {
        let _ = writeln!(body, "    var px{e} = vec4<f32>(0.0);");
    }
    for e in 0..w_slots {
        let _ = writeln!(body, "    var pw{e} = vec4<f32>(0.0);");
    }

    // Global loads of step `t` into registers.
    let load = |body: &mut String, step: &str| {
        for e in 0..x_slots {
            let _ = writeln!(
                body,
                "        {{\n            let idx = {}u + lid;\n            let r = row0 + idx / {kq}u;\n            let c = ({step}) * {kq}u + idx % {kq}u;\n            px{e} = vec4<f32>(0.0);\n            if ({}r < {}u && c < {kv}u) {{ px{e} = x[r * {kv}u + c]; }}\n        }}",
                e * threads,
                if x_guard { format!("idx < {}u && ", bm * kq) } else { String::new() },
                s.rows,
            );
        }
        for e in 0..w_slots {
            let _ = writeln!(body, "        {{\n            let idx = {}u + lid;\n            let sub = idx / {per_sub}u;\n            let li = idx % {per_sub}u;", e * threads);
            // Local output column and k of this vector.
            let (local, kexpr, kbound) = match s.layout {
                Layout::Kn => ("(li % 16u) * 4u".to_string(), format!("({step}) * {bk}u + li / 16u"), s.k),
                Layout::Nk => (format!("li / {kq}u"), format!("({step}) * {kq}u + li % {kq}u"), kv),
            };
            let oc = if fused { format!("col0 + {local}") } else { format!("col0 + sub * {SUB}u + {local}") };
            let _ = writeln!(body, "            let oc = {oc};\n            let kk = {kexpr};");
            let idx = |off: usize| match s.layout {
                Layout::Kn => format!("kk * {}u + (oc + {off}u) / 4u", s.n_total / 4),
                Layout::Nk => format!("(oc + {off}u) * {kv}u + kk"),
            };
            let guard = format!("oc < {}u && kk < {kbound}u", s.n);
            let _ = writeln!(body, "            pw{e} = vec4<f32>(0.0);\n            if ({guard}) {{");
            if fused {
                let _ = writeln!(
                    body,
                    "                if (sub == 0u) {{ pw{e} = {}; }} else {{ pw{e} = {}; }}",
                    wv("w_gate", &idx(go)),
                    wv(up_name(s), &idx(uo))
                );
            } else {
                let _ = writeln!(body, "                pw{e} = {};", wv("w_gate", &idx(0)));
            }
            let _ = writeln!(body, "            }}\n        }}");
        }
    };
    // Register tiles into workgroup memory, stage `st`. Tiles are nested arrays,
    // `xs[stage][k·q_blocks + q][ty]` and `ws[stage][sub·bk + k][tx]`, so that the inner loop
    // indexes every level but the last with a constant and only `ty` / `tx` (loop-invariant)
    // is bounds-checked.
    let q_blocks = rt / 4;
    let store = |body: &mut String, st: usize| {
        for e in 0..x_slots {
            let _ = writeln!(body, "        {{\n            let idx = {}u + lid;", e * threads);
            if x_guard {
                let _ = writeln!(body, "            if (idx < {}u) {{", bm * kq);
            }
            let _ = writeln!(body, "            let r = idx / {kq}u;\n            let c = idx % {kq}u;");
            for (j, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                let _ = writeln!(
                    body,
                    "            xs[{st}][(c * 4u + {j}u) * {q_blocks}u + r / {}u][(r / 4u) % {ny}u][r % 4u] = px{e}.{comp};",
                    4 * ny
                );
            }
            if x_guard {
                let _ = writeln!(body, "            }}");
            }
            let _ = writeln!(body, "        }}");
        }
        for e in 0..w_slots {
            let _ = writeln!(body, "        {{\n            let idx = {}u + lid;", e * threads);
            let _ = writeln!(body, "            let sub = idx / {per_sub}u;\n            let li = idx % {per_sub}u;");
            match s.layout {
                Layout::Kn => {
                    let _ = writeln!(body, "            ws[{st}][sub * {bk}u + li / 16u][li % 16u] = pw{e};");
                }
                Layout::Nk => {
                    let _ = writeln!(body, "            let nn = li / {kq}u;\n            let c = li % {kq}u;");
                    for (j, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                        let _ = writeln!(
                            body,
                            "            ws[{st}][sub * {bk}u + c * 4u + {j}u][nn / 4u][nn % 4u] = pw{e}.{comp};"
                        );
                    }
                }
            }
            let _ = writeln!(body, "        }}");
        }
    };
    let compute = |body: &mut String, st: usize| {
        for kk in 0..bk {
            let _ = writeln!(body, "        {{");
            for q in 0..q_blocks {
                let _ = writeln!(body, "            let a{q} = xs[{st}][{}][ty];", kk * q_blocks + q);
            }
            for sub in 0..2 {
                let _ = writeln!(body, "            let b{sub} = ws[{st}][{}][tx];", sub * bk + kk);
            }
            for i in 0..rt {
                let comp = ["x", "y", "z", "w"][i % 4];
                for sub in 0..2 {
                    let _ = writeln!(
                        body,
                        "            acc{i}_{sub} = fma(vec4<f32>(a{}.{comp}), b{sub}, acc{i}_{sub});",
                        i / 4
                    );
                }
            }
            let _ = writeln!(body, "        }}");
        }
    };

    // Step t is in stage t % 2; the loop takes two steps per iteration so that every stage
    // index is a constant.
    let _ = writeln!(body, "    {{");
    load(&mut body, if split > 1 { "s0" } else { "0u" });
    store(&mut body, 0);
    let _ = writeln!(body, "    }}\n    workgroupBarrier();");
    // Each step's global loads are issued before the multiply-adds of the step before, so
    // their latency hides behind arithmetic; the registers they land in are stored into the
    // other stage after. `half` multiplies out stage `st` while step `next` comes in.
    // (`next` counts the part's steps; the loads take step `s0 + next` of k.)
    let half = |body: &mut String, st: usize, next: &str| {
        let _ = writeln!(body, "        if ({next} < {ns}) {{");
        load(body, &format!("{s0}{next}"));
        let _ = writeln!(body, "        }}");
        compute(body, st);
        let _ = writeln!(body, "        if ({next} < {ns}) {{");
        store(body, 1 - st);
        let _ = writeln!(body, "        }}");
    };
    let _ = writeln!(body, "    for (var t = 0u; t < {ns}; t = t + 2u) {{");
    half(&mut body, 0, "t + 1u");
    let _ = writeln!(body, "        workgroupBarrier();\n        if (t + 1u < {ns}) {{");
    half(&mut body, 1, "t + 2u");
    let _ = writeln!(body, "        }}\n        workgroupBarrier();\n    }}");

    // Epilogue: thread rows q·4·ny + ty·4 + c, columns tx·4 + j of each sub-tile.
    for i in 0..rt {
        let _ = writeln!(
            body,
            "    {{\n        let r = row0 + {}u + ty * 4u;\n        if (r < {}u) {{",
            (i / 4) * 4 * ny + i % 4,
            s.rows
        );
        for (j, comp) in ["x", "y", "z", "w"].iter().enumerate() {
            if split > 1 {
                // Part kp's sums of accumulator a (the gate 0, the up 1; a plain projection's
                // two sub-tiles are columns of one) at ((a·split + kp)·M + r)·N + column.
                for sub in 0..2 {
                    let (a, col) = if fused {
                        (sub, format!("col0 + tx * 4u + {j}u"))
                    } else {
                        (0, format!("col0 + {}u + tx * 4u + {j}u", sub * SUB))
                    };
                    let _ = writeln!(
                        body,
                        "            if ({col} < {n}u) {{ part[(({a}u * {split}u + kp) * {m}u + r) * {n}u + {col}] = acc{i}_{sub}.{comp}; }}",
                        n = s.n,
                        m = s.rows
                    );
                }
            } else if fused {
                let col = format!("col0 + tx * 4u + {j}u");
                let e = epilogue(s, v, &format!("acc{i}_0.{comp}"), &format!("acc{i}_1.{comp}"), &format!("({col})"));
                let _ = writeln!(body, "            if ({col} < {}u) {{ out0[r * {}u + {col}] = {e}; }}", s.n, s.n);
            } else {
                for sub in 0..2 {
                    let col = format!("col0 + {}u + tx * 4u + {j}u", sub * SUB);
                    let _ = writeln!(
                        body,
                        "            if ({col} < {}u) {{ out0[r * {}u + {col}] = acc{i}_{sub}.{comp}; }}",
                        s.n, s.n
                    );
                }
            }
        }
        let _ = writeln!(body, "        }}\n    }}");
    }

    let mut prelude = format!(
        "{MATH}\nvar<workgroup> xs: array<array<array<vec4<f32>, {ny}>, {}>, 2>;\nvar<workgroup> ws: array<array<array<vec4<f32>, 16>, {}>, 2>;\n",
        bk * rt / 4,
        2 * bk
    );
    if s.f16 {
        prelude.push_str(UNPACK4_F16);
    }
    let kind = kind(s, ProjKernel::GemmTiled);
    let groups = [s.rows.div_ceil(bm) as u64, (col_tiles * split) as u64];
    let mut k = finish(name, kind, &b, &prelude, &body, groups, threads as u32, t)?;
    if split > 1 {
        k.scratch_bytes = super::gemv::split_scratch_bytes(s, split);
    }
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use glufuse_ir::{Activation, FusedGateUp};

    /// The f32 gate/up product (fused or one plain projection) of `rows` × K=`k` by `n`.
    fn shape(rows: usize, k: usize, n: usize, fused: bool) -> ProjShape {
        let f = FusedGateUp {
            activation: Activation::Silu,
            layout: Layout::Kn,
            gate_bias: false,
            up_bias: false,
            gate_offset: 0,
            up_offset: 0,
            replaced: vec![],
        };
        ProjShape {
            rows,
            k,
            n,
            n_total: n,
            layout: Layout::Kn,
            f16: false,
            f16_values: false,
            fused: fused.then_some(f),
            merged: false,
            q4: None,
        }
    }

    /// The split rule at the Qwen2-0.5B-sized f32 prefill's shapes on an H100 (a wave of 396):
    /// the down projection (14 workgroups, 608 steps) in 19 parts, the q/k/v projection (18
    /// workgroups, 112 steps) in 7 of 16 steps, the fused gate/up (152 workgroups, more than a
    /// third of the wave) whole; fewer parts where the scratch buffer would not fit one binding.
    #[test]
    fn the_split_fills_two_thirds_of_the_wave_within_a_binding() {
        let h100 = Target { gemm_wave: Some(396), max_workgroup_storage_bytes: 49152, ..Target::default() };
        let (p, why) = split(&shape(128, 4864, 896, false), DEFAULT, &h100);
        assert_eq!(p, 19);
        assert!(why.unwrap().contains("14 workgroups < a third of 396, 266 with the split"));
        assert_eq!(split(&shape(128, 896, 1152, false), DEFAULT, &h100).0, 7);
        assert_eq!(split(&shape(128, 896, 4864, true), DEFAULT, &h100), (1, None));
        // 128 × 896 floats a part: a binding of 2 MiB holds 4 of them.
        let small = Target { max_binding_bytes: 2 << 20, ..h100.clone() };
        assert_eq!(split(&shape(128, 4864, 896, false), DEFAULT, &small).0, 4);
        let tiny = Target { max_binding_bytes: 128 * 896 * 4, ..h100.clone() };
        assert_eq!(split(&shape(128, 4864, 896, false), DEFAULT, &tiny), (1, None));
        // Forced: as many parts as asked, where each gets a step.
        let forced = Target { gemm_split: Some(5), ..h100 };
        assert_eq!(split(&shape(128, 40, 896, false), DEFAULT, &forced).0, 5);
        assert_eq!(split(&shape(128, 16, 896, false), DEFAULT, &forced).0, 2);
    }

    /// The wave model picks the 256-thread tiling only for a fused grid that would end in a
    /// mostly empty second wave (as measured on the H100), never without a known wave, never
    /// where the device's workgroup memory cannot hold it, and a forced tiling wins.
    #[test]
    fn the_wave_model_takes_the_wide_tiling_only_against_a_thin_second_wave() {
        let h100 = Target { gemm_wave: Some(396), max_workgroup_storage_bytes: 49152, ..Target::default() };
        // Llama-3-8B, M=128: 2 × 224 = 448 workgroups, a second wave 52/396 full.
        let (t, why) = pick(&shape(128, 4096, 14336, true), &h100);
        assert_eq!(t, WIDE);
        assert!(why.unwrap().contains("448 workgroups would end in a second wave 52/396 full"));
        // Qwen2.5-3B, M=128: 344 workgroups, one wave; Llama-3-8B, M=512: 1792, 4.5 waves;
        // Qwen2-0.5B, M=128: 152.
        for (rows, k, n) in [(128, 2048, 11008), (512, 4096, 14336), (128, 896, 4864)] {
            assert_eq!(pick(&shape(rows, k, n, true), &h100), (DEFAULT, None), "{rows}x{k}x{n}");
        }
        // The plain projections of the unfused graph: 2 × 112 = 224 workgroups, one wave.
        assert_eq!(pick(&shape(128, 4096, 14336, false), &h100), (DEFAULT, None));
        let unknown = Target { max_workgroup_storage_bytes: 49152, ..Target::default() };
        assert_eq!(pick(&shape(128, 4096, 14336, true), &unknown), (DEFAULT, None));
        let small = Target { max_workgroup_storage_bytes: 16384, ..h100.clone() };
        assert_eq!(pick(&shape(128, 4096, 14336, true), &small), (DEFAULT, None));
        let forced = Target { gemm_tiles: Some(DEFAULT), ..h100 };
        assert_eq!(pick(&shape(128, 4096, 14336, true), &forced), (DEFAULT, Some("forced".into())));
    }
}
