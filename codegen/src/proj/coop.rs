//! The cooperative-matrix (tensor-core) prefill GEMM: `x·W` and the fused gated unit with f16
//! products and f32 accumulation, through wgpu's `wgpu_cooperative_matrix` WGSL extension
//! (16×16×16 fragments: `coop_mat16x16<f16, A|B>`, `coop_mat16x16<f32, C>`).
//!
//! A workgroup of `32·wr·wc` threads (`wr × wc` subgroups of 32) owns `bm` rows of x and `bn`
//! output columns; the fused kernel stages the gate and the up columns of those `bn` outputs,
//! `2·bn` weight columns. Subgroup `(r, c)` owns rows `r·bm/wr ..` and outputs `c·bn/wc ..`:
//! `fm × fn` 16×16 f32 accumulators per weight (`fm = bm/(16·wr)`, `fn = bn/(16·wc)`), the gate
//! and up accumulators of the same outputs in the same subgroup, so the epilogue needs nothing
//! from another subgroup.
//!
//! k advances `bk` at a time. Every thread issues the global loads of step t+1 into registers
//! (16-byte loads: `vec4<f32>` of x; f16 weights as `vec4<u32>`, 8 halves, widened with
//! `unpack2x16float`; f32 weights as `vec4<f32>`), the subgroups multiply out step t from
//! workgroup memory (`coopLoadT`/`coopLoad`, `coopMultiplyAdd`), then the registers are
//! narrowed to f16 and stored as `vec4<f16>`; with two sets of registers ([`prefetch_depth`]),
//! step t+2's loads are issued instead, and step t+1's, loaded a step earlier, stored. Two
//! stages of workgroup memory take one barrier per step; one stage (`s1`) half the memory
//! and two barriers. NVIDIA's Vulkan driver gives a
//! workgroup 48 KiB, so the 128×128 tilings that won on an H100 are single-stage.
//!
//! Tiles are nested arrays, one inner array per subgroup row block (x) or per (weight,
//! subgroup column) block (weights), so a fragment pointer is `&tile[stage][block][constant]`.
//! The x tile is row-major (`A` fragments load with `coopLoadT`), `[K, N]` weights are staged
//! k-major (`B` with `coopLoadT`), `[N, K]` weights n-major (`B` with `coopLoad`, column-major:
//! no transpose while staging). Every staged row is padded by 16 bytes so that the 8 rows one
//! fragment-load phase reads fall in distinct banks, and each weight block by 64 bytes more
//! where that spreads a step's stores over more banks (`Geo::block_pad`: `[K, N]` blocks).
//!
//! Epilogue: each subgroup stores one accumulator at a time (`coopStoreT` with a literal
//! stride: naga 30's SPIR-V writer panics on a runtime one) into its own 16×16 f32 scratch;
//! every lane reads 8 consecutive values of one row, applies bias, activation and product
//! (`super::epilogue`, as every projection kernel) and writes two `vec4<f32>`.
//!
//! Split-K ([`split`]): where the output has too few tiles to keep the device busy (Qwen2-0.5B's
//! down projection at 128 rows: 7), the grid's y also runs over parts of k; part `kp` multiplies
//! out its own run of steps and writes its accumulators, without the epilogue, to the scratch
//! buffer, laid out as the split GEMV's, for the split-sum kernel (`gemv::split_sum`) to add up and finish
//! (or the program reading the output, where that is the next kernel: `crate::generate`).
//!
//! Partial tiles: loads past M, N or K read zeros, stores past M or N are skipped; the checks
//! are emitted only where a size is not a multiple of its tile. The cooperative operations sit
//! in control flow naga can prove uniform: the main loop runs over whole steps with
//! unconditional multiply-outs, and only the loads and stores of a step past the end are
//! guarded.
//!
//! [`Ops::Emulated`] writes the same kernel with every cooperative operation replaced by plain
//! WGSL (each lane holds its 8 cells of every 16×16 accumulator and computes them from
//! workgroup memory): the staging, indexing, software pipeline and epilogue then run on any
//! device with f16, lavapipe included, which is how CI tests them. Slow; small sizes only.
//!
//! Measured on an H100 (issue #15's prototype, `benches/results/`): fused gate/up at
//! Llama-3-8B, M=512 in 592 µs (203 TFLOP/s), M=128 in 158–176 µs, M=16 in 100–109 µs.

use super::{binds_with, epilogue, finish, kind, up_name, ProjShape, ProjValues};
use crate::elementwise::MATH;
use crate::{KernelSource, ProjKernel, Target};
use glufuse_ir::{Error, Layout, Result};
use std::fmt::Write;

/// Lanes of a subgroup the kernel assumes (subgroups are consecutive invocations).
pub const SUBGROUP: usize = 32;
/// Row padding of the staged tiles, in `vec4<f16>` (8-byte) units: 16 bytes.
const PAD: usize = 2;

/// How the cooperative-matrix operations are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ops {
    /// `coopLoad`/`coopMultiplyAdd`/`coopStoreT` (needs the device's cooperative matrices).
    Native,
    /// Plain WGSL with the same results up to summation order, for devices without them.
    Emulated,
}

/// A tiling of the cooperative-matrix GEMM, written `BMxBNxBKwWRxWC[s1]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CoopTile {
    /// Rows of x per workgroup (a multiple of 16·wr).
    pub bm: usize,
    /// Output columns per workgroup (a multiple of 16·wc).
    pub bn: usize,
    /// k per step (a multiple of 16).
    pub bk: usize,
    /// Subgroups along the rows.
    pub wr: usize,
    /// Subgroups along the columns.
    pub wc: usize,
    /// Stages of workgroup memory: 2 (one barrier per step) or 1 (half the memory, two
    /// barriers per step). Both issue the next step's loads before the multiply-adds.
    pub stages: usize,
    /// Slices of k: 1, or 2 (twice the subgroups, each half of them multiplying out its own
    /// half of the k steps through its own stages; the halves' sums are added in the
    /// epilogue).
    pub ks: usize,
}

impl CoopTile {
    /// Threads per workgroup.
    pub fn threads(&self) -> usize {
        SUBGROUP * self.wr * self.wc * self.ks
    }

    /// Whether the tiling's numbers are in the ranges any tiling can use (tile sides of 1 to
    /// [`MAX_TILE`], 1 to 8 subgroups, 1 or 2 stages and slices of k), before [`check`]
    /// weighs it against a shape: a tiling from outside (`GLUFUSE_COOP_TILES`) is held to
    /// this first, so that no size computed from it overflows.
    pub fn sane(&self) -> std::result::Result<(), String> {
        let sides = [self.bm, self.bn, self.bk];
        if sides.iter().any(|&d| d == 0 || d > MAX_TILE) {
            return Err(format!("tile sides must be 1 to {MAX_TILE}"));
        }
        if self.wr == 0 || self.wc == 0 || self.wr * self.wc > 8 {
            return Err("1 to 8 subgroups (WR·WC)".into());
        }
        if !matches!(self.stages, 1 | 2) || !matches!(self.ks, 1 | 2) {
            return Err("1 or 2 stages, 1 or 2 slices of k".into());
        }
        Ok(())
    }
}

/// The tiling of a plain projection whose k stays whole, split in [`READ_PARTS_SPLIT`] parts
/// because the row program reading its output adds the parts up ([`reader_adds_parts`]): 32×32
/// tiles on k steps of 64.
pub const READ_PARTS_TILE: CoopTile = s1(32, 32, 64, 2, 2);

/// Parts of k of such a projection.
pub const READ_PARTS_SPLIT: usize = 2;

/// The tiling and split of a plain `[.., K]·W` cooperative GEMM of the `short` class (k
/// stays whole) whose output only a row program reads, where that program adds the split's
/// parts up as it reads them (`crate::generate`: no split-sum dispatch), so that the split
/// costs no dispatch: [`READ_PARTS_TILE`] in [`READ_PARTS_SPLIT`] parts where the pick is
/// the 32×32 tiles on k steps of 128 (its tiles are few) and the steps divide so; `None`
/// where the class's tiling or the split is forced, or elsewhere. The Qwen2-0.5B-sized f16
/// prefill's output projections (K = 896, N = 896, 128 rows) on an H200: 15.9 → 13.5 µs
/// each, the norm after them 10.1 µs either way
/// (`benches/results/h200-2026-11-29-long-k.md`; the q/k/v projections, whose output the
/// attention and the keys' program both read, took a split-sum dispatch of their own and
/// gained nothing).
pub fn reader_adds_parts(s: &ProjShape, t: &crate::Target) -> Option<(CoopTile, usize)> {
    let class = CoopClass::of(s);
    let forced =
        t.coop_tiles.is_some() || t.coop_split.is_some() || t.coop_class_tiles.iter().any(|(c, _)| *c == class);
    let tile = READ_PARTS_TILE;
    let steps = s.k.div_ceil(tile.bk);
    // (The short class is plain: a fused projection is of its own class.)
    if forced || class != CoopClass::Short || s.q4.is_some() || steps % READ_PARTS_SPLIT != 0 {
        return None;
    }
    let max = t.max_workgroup_storage_bytes as usize;
    if pick(s, max).ok()? != s1(32, 32, 128, 2, 2) {
        return None;
    }
    check(s, tile, max).ok()?;
    Some((tile, READ_PARTS_SPLIT))
}

/// The longest tile side a tiling may have (a 512-wide tile of f16 already takes more
/// workgroup memory than any device glufuse has met).
pub const MAX_TILE: usize = 512;

impl std::fmt::Display for CoopTile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}w{}x{}", self.bm, self.bn, self.bk, self.wr, self.wc)?;
        if self.ks != 1 {
            write!(f, "k{}", self.ks)?;
        }
        if self.stages != 2 {
            write!(f, "s{}", self.stages)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for CoopTile {
    type Err = Error;
    /// Parses the [`Display`](std::fmt::Display) form, e.g. `128x128x32w2x4s1` (no `sS`: two
    /// stages; no `kK`: one slice of k) or `64x64x32w2x2k2s1`. Whether a shape can use it is
    /// [`check`]'s to say.
    fn from_str(s: &str) -> Result<CoopTile> {
        let bad = || Error::input(format!("cooperative-matrix tiling {s:?} is not BMxBNxBKwWRxWC[k2][s1|s2]"));
        let (dims, stages) = match s.split_once('s') {
            Some((a, st)) => (a, st.parse::<usize>().map_err(|_| bad())?),
            None => (s, 2),
        };
        let (dims, ks) = match dims.split_once('k') {
            Some((a, k)) => (a, k.parse::<usize>().map_err(|_| bad())?),
            None => (dims, 1),
        };
        let (a, b) = dims.split_once('w').ok_or_else(bad)?;
        let nums = |p: &str| -> Result<Vec<usize>> { p.split('x').map(|v| v.parse().map_err(|_| bad())).collect() };
        let t = match (&nums(a)?[..], &nums(b)?[..]) {
            ([bm, bn, bk], [wr, wc]) => CoopTile { bm: *bm, bn: *bn, bk: *bk, wr: *wr, wc: *wc, stages, ks },
            _ => return Err(bad()),
        };
        t.sane().map_err(|m| Error::input(format!("cooperative-matrix tiling {s:?}: {m}")))?;
        Ok(t)
    }
}

/// A tiling of one stage: `bm`×`bn` per workgroup, k steps of `bk`, `wr`×`wc` subgroups.
const fn s1(bm: usize, bn: usize, bk: usize, wr: usize, wc: usize) -> CoopTile {
    CoopTile { bm, bn, bk, wr, wc, stages: 1, ks: 1 }
}

/// The kinds of cooperative GEMM [`candidates`] tells apart, which a tiling override names
/// ([`Target::coop_class_tiles`](crate::Target::coop_class_tiles), `GLUFUSE_COOP_TILES`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoopClass {
    /// A fused gate/up projection.
    Fused,
    /// A plain projection wide enough for 128×256 tiles on half an H100's SMs (an LM head).
    Head,
    /// Another plain projection whose k is too long to stay whole (it may split: a down
    /// projection).
    Long,
    /// Any other plain projection (q/k/v, an output projection).
    Short,
}

impl CoopClass {
    /// Every class, in the order the overrides list them.
    pub const ALL: [CoopClass; 4] = [CoopClass::Fused, CoopClass::Head, CoopClass::Long, CoopClass::Short];

    /// The class of a projection's shape.
    pub fn of(s: &ProjShape) -> CoopClass {
        if s.fused.is_some() {
            CoopClass::Fused
        } else if wide(s) {
            CoopClass::Head
        } else if !k_stays_whole(s) {
            CoopClass::Long
        } else {
            CoopClass::Short
        }
    }
}

impl std::fmt::Display for CoopClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CoopClass::Fused => "fused",
            CoopClass::Head => "head",
            CoopClass::Long => "long",
            CoopClass::Short => "short",
        })
    }
}

/// Whether 128-row tiles of 128 output columns (256 plain, which stage as many weight
/// columns) give half of an H100's SMs work: [`candidates`]' wide case, and
/// [`CoopClass::Head`] among plain projections.
fn wide(s: &ProjShape) -> bool {
    let w = if s.fused.is_some() { 1 } else { 2 };
    s.rows.div_ceil(128) * s.n.div_ceil(128 * w) >= 66
}

/// Whether k is short enough for a plain projection to keep it whole on k steps of 64
/// (fewer than twice [`COOP_SPLIT_MIN_STEPS`] steps): [`candidates`]' 32-row tilings, and
/// [`CoopClass::Short`] against [`CoopClass::Long`].
fn k_stays_whole(s: &ProjShape) -> bool {
    s.k.div_ceil(64) < 2 * COOP_SPLIT_MIN_STEPS
}

/// Tiling overrides as `GLUFUSE_COOP_TILES` writes them: `CLASS=TILE` pairs, comma-separated
/// (`fused=128x64x64w4x2s1,long=64x64x64w4x2`), each class at most once; an empty text is
/// none. Whether a tiling fits a shape is [`check`]'s to say, when it is used.
pub fn parse_class_tiles(text: &str) -> std::result::Result<Vec<(CoopClass, CoopTile)>, String> {
    let mut out: Vec<(CoopClass, CoopTile)> = vec![];
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (class, tile) = part.split_once('=').ok_or_else(|| format!("'{part}' is not CLASS=TILE"))?;
        let class = CoopClass::ALL
            .into_iter()
            .find(|c| c.to_string() == class.trim())
            .ok_or_else(|| format!("'{}' is not a class (fused, head, long or short)", class.trim()))?;
        let tile: CoopTile = tile.trim().parse().map_err(|e: Error| format!("{class}: {e}"))?;
        if out.iter().any(|(c, _)| *c == class) {
            return Err(format!("class '{class}' is given twice"));
        }
        out.push((class, tile));
    }
    Ok(out)
}

/// A tiling of two stages ([`s1`]'s arguments).
const fn s2(bm: usize, bn: usize, bk: usize, wr: usize, wc: usize) -> CoopTile {
    CoopTile { bm, bn, bk, wr, wc, stages: 2, ks: 1 }
}

/// The tilings to try for a shape, best first (measured on an H100, issue #15): 16-row tiles
/// up to 32 rows (a bandwidth-bound pass over the weights), 128-row ones beyond, with 128
/// output columns (256 plain) per workgroup where that still gives half of an H100's 132 SMs
/// work, else 64 (128 plain); 256 rows for a plain projection past 256 rows. Where even the
/// narrower 128-row tiles number fewer than [`COOP_MIN_WORKGROUPS`] (fused) or half of it
/// (plain), 64×64 tiles of four subgroups come first: the Qwen2-0.5B-sized f16 prefill (128
/// tokens: its q/k/v, o and down projections, and its fused gate/up of 76 tiles, 39.6 → 39.0
/// µs) went from 4540 to 3934 µs on an H100 that way, where 16×128 tiles took 4619,
/// 32×64 tiles 4378 (faster for the K = 896 projections, slower for the fused gate/up) and
/// 32×128 tiles 4595 (`benches/results/h100-2026-11-26e-coop-rows.md`). A plain projection
/// among those takes k 64 at a time in two stages of workgroup memory, on 32-row tiles where
/// 64-row ones number fewer than half of [`COOP_MIN_WORKGROUPS`] and k stays whole (fewer
/// than twice [`COOP_SPLIT_MIN_STEPS`] steps): the same prefill went from 3888 to 3208 µs
/// (q/k/v 30.7 → 19.9 µs, o 30.3 → 19.3, the split down projection 39.5 → 35.7, timestamped);
/// the fused gate/up kept its tiles, every variant of it tried being slower
/// (`benches/results/h100-2026-11-26g-coop-k64.md`). Those 32-row tiles take k in two
/// slices of one stage each where the workgroup memory allows (q/k/v and o: 2792 → 2751 µs,
/// with the loads two steps ahead; two slices were slower for the fused gate/up, the split
/// down projection and on k steps of 32: `benches/results/h100-2026-11-27h-prefill.md`).
/// A plain projection wide enough for 128-row tiles of 256 columns, at up to 256 rows (an
/// LM head), takes 128×128 tiles on k steps of 64 first: Qwen2-0.5B's tied LM head at 128 rows (K = 896, N = 151936) went from
/// 304 to 233 µs, where 128×128 tiles on k steps of 32 in two stages took 289, 64×256 ones
/// 387 and 64×128 ones on k steps of 64 316 (`benches/results/h100-2026-11-26g-head.md`).
/// Eight subgroups a workgroup, four along the rows, came later
/// (`benches/results/h100-2026-11-27l-coop-tiles.md`): a fused projection of more than 64
/// rows takes 128×64 tiles on k steps of 64 first (the prefill's gate/up, 76 tiles: 2742 →
/// 2611 µs), and where its 128-row tiles are not few, with `[N, K]` weights, where k is long
/// or those tiles fill two waves (896×4864 at 512 rows 79.5 → 69.3 µs, 4096×14336 at 128
/// rows 189.0 → 166.0; at 256 rows of 896×4864, 152 tiles, 40.2 → 47.1, and with `[K, N]`
/// weights at 4096×14336, 128 and 256 rows, slower); a plain projection whose k stays whole
/// takes k 128 at a time on 32×32 tiles (the q/k/v and o projections: −30 µs on 32×64
/// tiles, −35 more on 32×32), and a split one 64-row tiles of eight subgroups (the down
/// projection: −40 µs). Together the prefill went from 2742 to 2550 µs, then 2524.
/// Then the split one on 32×64 tiles on k steps of 128 (the down projection in 2 parts where
/// the eight-subgroup tiles took 4: 2523 → 2492 µs, A/B alternating,
/// `benches/results/h100-2026-11-27m-prefill.md`; 32×32 tiles, unsplit, were slower); on an
/// H200, those tiles with k in two slices of steps of 64, each slice 19 steps of the down
/// projection's parts (2254–2267 → 2226–2232 µs, A/B alternating; the other tilings tried:
/// `benches/results/h200-2026-11-29-long-k.md`).
/// The later entries are smaller fallbacks for devices with less workgroup memory
/// (lavapipe: 32 KiB).
pub fn candidates(s: &ProjShape) -> Vec<CoopTile> {
    let fused = s.fused.is_some();
    if s.rows <= 32 {
        return match (s.layout, fused) {
            (Layout::Nk, true) => vec![s1(16, 32, 128, 1, 2), s1(16, 64, 64, 1, 4)],
            _ => vec![s1(16, 128, 64, 1, 4), s1(16, 64, 64, 1, 4), s1(16, 32, 64, 1, 2)],
        };
    }
    let w = if fused { 1 } else { 2 }; // a plain tile stages as many weight columns
    let wide = wide(s);
    let mut v = vec![];
    // Where 128-row tiles would leave SMs idle (a plain projection: most of them), smaller
    // or taller-and-narrower ones first.
    let few = if fused { COOP_MIN_WORKGROUPS } else { COOP_MIN_WORKGROUPS / 2 };
    if s.rows.div_ceil(128) * s.n.div_ceil(64 * w) < few {
        if !fused {
            // A plain projection: 32×32 tiles on k steps of 128 where even 64-row tiles are
            // few and k is short enough to stay whole; 32×64 ones with k in two slices where
            // k is long (and split); else 64×64 tiles of eight subgroups, k steps of 64 in two
            // stages of workgroup memory (the rest: fallbacks for less workgroup memory).
            let whole = k_stays_whole(s);
            if whole && s.rows.div_ceil(64) * s.n.div_ceil(64) < COOP_MIN_WORKGROUPS / 2 {
                v.push(s1(32, 32, 128, 2, 2));
                v.push(s1(32, 64, 128, 2, 2));
                v.push(CoopTile { ks: 2, ..s1(32, 64, 64, 2, 2) });
                v.push(s2(32, 64, 64, 2, 2));
            } else if !whole {
                // k long: 32×64 tiles, their k in two slices of k steps of 64 (each slice's
                // subgroups multiplying out every other run of steps); the unsliced tile on k
                // steps of 128 after it. Qwen2-0.5B-sized f16 prefill (128 tokens) on an H200,
                // its down projections (K = 4864, 2 parts of k): 2254–2261 → 2230–2234 µs, a
                // down projection 32.9 → 29.9 µs (`benches/results/h200-2026-11-29-long-k.md`).
                v.push(CoopTile { ks: 2, ..s1(32, 64, 64, 2, 2) });
                v.push(s1(32, 64, 128, 2, 2));
            }
            v.push(s2(64, 64, 64, 4, 2));
            v.push(s2(64, 64, 64, 2, 2));
        } else if s.rows > 64 {
            // A fused one of more than 64 rows: 128-row tiles on k steps of 64 (fewer than
            // one a SM).
            v.push(s1(128, 64, 64, 4, 2));
        }
        v.push(s1(64, 64, 32, 2, 2));
    } else if fused && s.rows > 64 && s.layout == Layout::Nk {
        // Fused `[N, K]`, at least one 128×64 tile a SM: those tiles on k steps of 64 first,
        // except where they fill a second wave only in part and k is short. (`[K, N]`
        // weights were slower that way at 4096×14336, M = 128 and 256.)
        let tiles = s.rows.div_ceil(128) * s.n.div_ceil(64);
        if s.k >= 2048 || tiles >= 2 * COOP_MIN_WORKGROUPS {
            v.push(s1(128, 64, 64, 4, 2));
        }
    }
    if s.rows > 256 && !fused {
        v.push(s1(256, 128, 32, 4, 2));
    }
    if wide {
        // A plain projection this wide at up to 256 rows (an LM head): k steps of 64 on
        // 128×128 tiles first.
        if !fused && s.rows <= 256 {
            v.push(s1(128, 128, 64, 2, 4));
        }
        v.push(s1(128, 128 * w, 32, 2, 4));
    }
    v.push(s1(128, 64 * w, 32, 2, 4));
    v.push(s1(64, 64, 32, 2, 2));
    v
}

/// The first of [`candidates`] that [`check`] accepts, or why none is.
pub fn pick(s: &ProjShape, max_workgroup_bytes: usize) -> std::result::Result<CoopTile, String> {
    let mut why = String::new();
    for t in candidates(s) {
        match check(s, t, max_workgroup_bytes) {
            Ok(()) => return Ok(t),
            Err(e) if why.is_empty() => why = e,
            Err(_) => {}
        }
    }
    Err(why)
}

/// Workgroups a cooperative GEMM's grid should reach: an H100 has 132 SMs, and a 128×128 tile
/// keeps one busy. Qwen2-0.5B's down projection at 128 rows (K = 4864, N = 896) has 7 tiles
/// and took 135 µs on an H100 (8 TFLOP/s) unsplit.
pub const COOP_MIN_WORKGROUPS: usize = 132;

/// Fewest k steps one part of a split-K cooperative GEMM multiplies out: each part writes
/// its tile's partial sums, which a second kernel reads back (parts × rows × columns floats),
/// and a split costs that second dispatch. Measured on the Qwen2-0.5B-sized f16 prefill (128
/// tokens) on an H100, whole graph (`benches/results/h100-2026-11-26d-coop-split.md`): with 4
/// (the K = 896 projections in 7 parts, the down projection, K = 4864, in 19) 4988 µs; 10 or
/// 14: 4820-4830; 16 to 19 (the K = 896 ones unsplit, the down projection in 8): 4577; 28
/// (the down projection in 4): 4876; no split at all: 6561.
pub const COOP_SPLIT_MIN_STEPS: usize = 16;

/// How many k steps ahead a cooperative GEMM issues its global loads (register sets):
/// two where it has more than 32 rows and plain or f16/f32 weights, so that each step's
/// loads have two steps' multiply-outs to land; else one. Measured on the Qwen2-0.5B-sized
/// f16 prefill (128 tokens) on an H100: 2996 → 2865 µs, every one of its cooperative GEMMs
/// at its own tiling (`benches/results/h100-2026-11-27h-prefill.md`). The 4-bit kernels and
/// the 16-row tilings of up to 32 rows were not measured that way, and keep one.
pub fn prefetch_depth(s: &ProjShape) -> usize {
    if s.q4.is_none() && s.rows > 32 {
        2
    } else {
        1
    }
}

/// Into how many parts of k the cooperative GEMM at tiling `t` splits (1: none), and why:
/// forced by the target where that divides its k steps; else, where fewer than half of
/// [`COOP_MIN_WORKGROUPS`] tiles cover the output, the fewest parts (dividing the steps
/// evenly, each at least [`COOP_SPLIT_MIN_STEPS`]) that reach that many workgroups, or the
/// most there can be. The partial sums are added up (and the epilogue applied) by
/// the split-sum kernel (`gemv::split_sum`).
pub fn split(s: &ProjShape, t: CoopTile, forced: Option<usize>) -> (usize, Option<String>) {
    let steps = s.k.div_ceil(t.bk);
    let grid = s.rows.div_ceil(t.bm) * s.n.div_ceil(t.bn);
    if let Some(f) = forced {
        if f > 1 && steps % f == 0 && (steps / f) % t.ks == 0 {
            return (f, Some(format!("split K={} in {f} (forced)", s.k)));
        }
        return (1, None);
    }
    if 2 * grid >= COOP_MIN_WORKGROUPS {
        return (1, None);
    }
    let parts: Vec<usize> =
        (2..=steps / COOP_SPLIT_MIN_STEPS).filter(|d| steps % d == 0 && (steps / d) % t.ks == 0).collect();
    let Some(&p) = parts.iter().find(|&&d| grid * d >= COOP_MIN_WORKGROUPS).or(parts.last()) else {
        return (1, None);
    };
    let why = format!(
        "split K={} in {p}: {grid} tiles < {}, {} workgroups with the split",
        s.k,
        COOP_MIN_WORKGROUPS / 2,
        grid * p
    );
    (p, Some(why))
}

/// The geometry of one kernel: shape, tiling and the derived sizes.
struct Geo<'a> {
    s: &'a ProjShape,
    t: CoopTile,
    /// `vec4<f16>` of padding after each block of the weight tile ([`Geo::block_pad`]).
    pad: usize,
}

impl<'a> Geo<'a> {
    /// The geometry of tiling `t` for shape `s`, its weight blocks padded as
    /// [`Geo::block_pad`] finds best.
    fn new(s: &'a ProjShape, t: CoopTile) -> Geo<'a> {
        let mut g = Geo { s, t, pad: 0 };
        g.pad = g.block_pad();
        g
    }

    /// The padding after each weight block, 0 or 64 bytes (rows stay 16-byte aligned, as
    /// fragment loads need), whichever has one step's weight stores take fewer shared-memory
    /// wavefronts ([`Geo::store_wavefronts`]; 0 where equal, and for 4-bit weights).
    ///
    /// Blocks of `[K, N]` weights whose size is a multiple of 128 bytes start in the same
    /// bank, and a store phase writes the same rows of two blocks: the fused 64×64 tiling's
    /// stores took 4 wavefronts where 2 do, and its kernel went from 29.3 to 26.0 µs at
    /// 896×4864, M=128, and from 81.0 to 73.3 µs at M=512 (128×128 tiles) on an H100
    /// (`benches/results/h100-2026-11-27k-coop-banks.md`). `[N, K]` blocks are written a
    /// phase at a time within one block, so their padding changes nothing and stays 0.
    fn block_pad(&self) -> usize {
        if self.s.q4.is_some() {
            return 0;
        }
        let padded = 8;
        if self.store_wavefronts(padded) < self.store_wavefronts(0) {
            padded
        } else {
            0
        }
    }

    /// Shared-memory wavefronts of one step's weight stores with `pad` after each block: per
    /// store instruction and 16-lane phase of a subgroup (8-byte stores: 128 bytes a phase),
    /// the most distinct 4-byte words that fall in one of the 32 banks. The addresses follow
    /// the kernel's stores (`store` in [`coop`]): thread `idx` of `threads` holds vector
    /// `li = idx % per_w` of weight `idx / per_w`, stored as one `vec4<f16>` (f32 weights) or
    /// two (f16).
    fn store_wavefronts(&self, pad: usize) -> usize {
        let (vw, sb) = (self.vw(), self.sb());
        let CoopTile { bk, bn, wc, .. } = self.t;
        let wno = bn / wc;
        let halves = if vw == 8 { 2 } else { 1 };
        let per_w = bk * bn / vw;
        let (vectors, threads) = (self.na() * per_w, SUBGROUP * self.t.wr * wc);
        let block = match self.s.layout {
            Layout::Kn => bk * sb,
            Layout::Nk => wno * sb,
        } + pad;
        // (block, vec4<f16> within it) of half h of vector li of weight a.
        let at = |a: usize, li: usize, h: usize| match self.s.layout {
            Layout::Kn => {
                let (row, c) = (li / (bn / vw), li % (bn / vw));
                (a * wc + c / (wno / vw), row * sb + (c % (wno / vw)) * halves + h)
            }
            Layout::Nk => {
                let (row, c) = (li / (bk / vw), li % (bk / vw));
                (a * wc + row / wno, (row % wno) * sb + c * halves + h)
            }
        };
        let mut total = 0;
        let mut banks: Vec<Vec<usize>> = vec![Vec::new(); 32];
        for slot in 0..vectors.div_ceil(threads) {
            for sg in 0..threads / SUBGROUP {
                for h in 0..halves {
                    for phase in [0, 16] {
                        banks.iter_mut().for_each(Vec::clear);
                        for lane in phase..phase + 16 {
                            let idx = slot * threads + sg * SUBGROUP + lane;
                            if idx >= vectors {
                                continue;
                            }
                            let (blk, i) = at(idx / per_w, idx % per_w, h);
                            let word = (blk * block + i) * 2;
                            for w in [word, word + 1] {
                                if !banks[w % 32].contains(&w) {
                                    banks[w % 32].push(w);
                                }
                            }
                        }
                        total += banks.iter().map(Vec::len).max().unwrap_or(0);
                    }
                }
            }
        }
        total
    }
    /// Weights staged per workgroup (gate and up, or the one).
    fn na(&self) -> usize {
        self.s.na()
    }
    /// Weight elements per 16-byte load: 8 f16, 4 f32 or 32 4-bit.
    fn vw(&self) -> usize {
        if self.s.q4.is_some() {
            super::q4::CHUNK
        } else if self.s.f16 {
            8
        } else {
            4
        }
    }
    /// Row pitch of the x tile, in `vec4<f16>`.
    fn sa(&self) -> usize {
        self.t.bk / 4 + PAD
    }
    /// Row pitch of a weight block, in `vec4<f16>`: per k (`[K,N]`: one subgroup column's
    /// `bn/wc` columns) or per column (`[N,K]`: `bk` of k).
    fn sb(&self) -> usize {
        match self.s.layout {
            Layout::Kn => self.t.bn / self.t.wc / 4 + PAD,
            Layout::Nk => self.t.bk / 4 + PAD,
        }
    }
    /// `vec4<f16>` of one stage of the x tile (all row blocks).
    fn a_len(&self) -> usize {
        self.t.bm * self.sa()
    }
    /// `vec4<f16>` of one stage of the weight tile (all blocks, each padded).
    fn b_len(&self) -> usize {
        let block = match self.s.layout {
            Layout::Kn => self.t.bk * self.sb(),
            Layout::Nk => self.t.bn / self.t.wc * self.sb(),
        };
        self.na() * self.t.wc * (block + self.pad)
    }
    /// Workgroup memory in bytes: the stages of both tiles and one 16×16 f32 scratch per
    /// subgroup.
    fn bytes(&self) -> usize {
        self.t.ks * (self.t.stages * (self.a_len() + self.b_len()) * 8 + self.t.wr * self.t.wc * 256 * 4)
    }
}

/// Workgroup memory a tiling needs for a shape, in bytes.
pub fn workgroup_bytes(s: &ProjShape, t: CoopTile) -> usize {
    Geo::new(s, t).bytes()
}

/// Whether the kernel supports this shape under this tiling within `max_workgroup_bytes`;
/// the reason if not.
pub fn check(s: &ProjShape, t: CoopTile, max_workgroup_bytes: usize) -> std::result::Result<(), String> {
    t.sane().map_err(|m| format!("tiling {t}: {m}"))?;
    let geo = Geo::new(s, t);
    let (go, uo) = s.offsets();
    let vw = geo.vw();
    if s.rows == 0 || s.k == 0 || s.n == 0 {
        return Err("an empty product".into());
    }
    if s.q4.is_some() && (t.bk % super::q4::CHUNK != 0 || s.layout != Layout::Nk) {
        return Err(format!("tiling {t}: 4-bit weights stage whole chunks of 32 of k (BK a multiple of 32)"));
    }
    if s.k % 4 != 0 || s.n % 4 != 0 {
        return Err(format!("K={} and N={} must be multiples of 4 (16-byte rows of x and of the output)", s.k, s.n));
    }
    let aligned = match s.layout {
        Layout::Kn => s.n_total % vw == 0 && s.n % vw == 0 && go % vw == 0 && uo % vw == 0,
        // 4-bit rows are padded to whole chunks.
        Layout::Nk => s.k % vw == 0 || s.q4.is_some(),
    };
    if !aligned {
        let what = match s.layout {
            Layout::Kn => format!("weight columns ({}), N ({}) and offsets ({go}, {uo})", s.n_total, s.n),
            Layout::Nk => format!("K ({})", s.k),
        };
        return Err(format!("16-byte weight loads need {what} to be multiples of {vw}"));
    }
    if go + s.n > s.n_total || uo + s.n > s.n_total {
        return Err("the gate or up columns run past the weight".into());
    }
    if t.wr == 0 || t.wc == 0 || t.bk == 0 || t.bm % (16 * t.wr) != 0 || t.bn % (16 * t.wc) != 0 || t.bk % 16 != 0 {
        return Err(format!("tiling {t}: BM must be a multiple of 16·WR, BN of 16·WC, BK of 16"));
    }
    if !matches!(t.stages, 1 | 2) {
        return Err(format!("tiling {t}: 1 or 2 stages"));
    }
    if !matches!(t.ks, 1 | 2) || (t.ks > 1 && s.q4.is_some()) {
        return Err(format!("tiling {t}: 1 or 2 slices of k (4-bit weights: 1)"));
    }
    if t.threads() > 256 {
        return Err(format!("tiling {t}: {} threads, more than WebGPU's 256 per workgroup", t.threads()));
    }
    if geo.bytes() > max_workgroup_bytes {
        return Err(format!(
            "tiling {t} needs {} bytes of workgroup memory, past this device's {max_workgroup_bytes}",
            geo.bytes()
        ));
    }
    Ok(())
}

/// The kernel (see the module header), `ops` native or emulated.
pub(crate) fn coop(
    name: String,
    s: &ProjShape,
    v: &ProjValues,
    t: &Target,
    tl: CoopTile,
    ops: Ops,
    split: usize,
) -> Result<KernelSource> {
    check(s, tl, t.max_workgroup_storage_bytes as usize).map_err(|e| Error::Gpu(format!("'{name}': {e}")))?;
    let geo = Geo::new(s, tl);
    let CoopTile { bm, bn, bk, wr, wc, stages, ks } = tl;
    let na = s.na();
    let (go, uo) = s.offsets();
    let threads = tl.threads();
    let (sa, sb) = (geo.sa(), geo.sb());
    let (fm, fnn) = (bm / (16 * wr), bn / (16 * wc));
    let kq = bk / 4; // x vec4 per tile row and step
    let kv = s.k / 4; // x vec4 per row of x
    let steps = s.k.div_ceil(bk);
    if split == 0 || steps % split != 0 || (split > 1 && (steps / split) % ks != 0) {
        return Err(Error::Internal(format!(
            "'{name}': {steps} steps of k do not split in {split} parts of {ks} slices"
        )));
    }
    // The steps this workgroup multiplies out: all of them, or part `kp` of a split, from
    // step `k0` (a prefix of the step expressions).
    let sp = steps / split;
    let k0 = if split > 1 { "k0 + " } else { "" };
    // Slices of k: each slice's subgroups (`tk` threads, `lidk` the thread among them) take
    // `spl` consecutive steps through their own stages, the last slice's past the end reading
    // zeros (as a partial step's loads do).
    let tk = threads / ks;
    let spl = sp.div_ceil(ks);
    let lidk = if ks == 1 { "lid" } else { "lidk" };
    let stx = |st: usize| if ks == 1 { st.to_string() } else { format!("ksl * {stages}u + {st}u") };
    let rows_partial = s.rows % bm != 0;
    let cols_partial = s.n % bn != 0;
    let k_partial = s.k % bk != 0 || spl * ks != sp;
    let wname = |a: usize| match (&s.q4, a == 0 || s.merged) {
        (Some(_), true) => "wq_gate",
        (Some(_), false) => "wq_up",
        (None, true) => "w_gate",
        (None, false) => up_name(s),
    };
    let woff = |a: usize| if a == 0 { go } else { uo };
    let rb_a = bm / wr; // x-tile rows per subgroup row block
    let wno = bn / wc; // output columns per subgroup column block
    let blocks_b = na * wc;
    let w_elem = if s.f16 || s.q4.is_some() { "vec4<u32>" } else { "vec4<f32>" };
    let mut b = match &s.q4 {
        Some(_) => super::q4::binds(s, v, "vec4<f32>", "vec4<f32>"),
        None => {
            // x and the output as packed f16 where so stored ([`crate::packed_activation`]):
            // 4 halves of x a `vec2<u32>`; the output written as such (unsplit).
            let x_elem = if v.x_packed { "vec2<u32>" } else { "vec4<f32>" };
            let out_elem = if v.out_packed && split == 1 { "vec2<u32>" } else { "vec4<f32>" };
            let mut b = binds_with(s, v, x_elem, w_elem, out_elem);
            b.bindings[0].packed_f16 = v.x_packed;
            if let Some(o) = b.bindings.last_mut().filter(|_| v.out_packed && split == 1) {
                o.packed_f16 = true;
            }
            b
        }
    };
    // 4-bit weights: the elements' and the scales' views, the row stride in chunks, and the
    // scale index expressions of a staged vector (per half: blocks of 16 take two).
    let q4 = match &s.q4 {
        Some(_) => Some(super::q4::layout(s)?),
        None => None,
    };
    let q4_chunks = q4.as_ref().map_or(0, |(_, l)| l.chunks);
    let q4_scale = |a: usize, oc: &str, kk: &str, h: usize| -> String {
        let (q, l) = q4.as_ref().expect("4-bit");
        let p = if a == 0 || s.merged { "wp_gate" } else { "wp_up" };
        let shift = (q.block / super::q4::CHUNK).max(1).trailing_zeros();
        let i = if q.block == 16 {
            format!("({oc} + {}u) * {}u + ({kk}) * 2u + {h}u", woff(a), l.nbp)
        } else {
            format!("({oc} + {}u) * {}u + (({kk}) >> {shift}u)", woff(a), l.nbp)
        };
        format!("{p}_s({i}), {p}_z({i})")
    };
    // Where N is a multiple of 4 every lane's four sums of a row start at a multiple of 4
    // (c is): the partial sums are then written as `vec4<f32>`, one 16-byte store for four.
    let part_vec4 = s.n % 4 == 0;
    if split > 1 {
        // The partial sums go to the scratch buffer, not to the output (as the split GEMV's).
        b.decls.pop();
        b.bindings.pop();
        b.scratch("part", true, if part_vec4 { "vec4<f32>" } else { "f32" });
    }
    b.directives = match ops {
        Ops::Native => "enable f16;\nenable wgpu_cooperative_matrix;\n".into(),
        Ops::Emulated => "enable f16;\n".into(),
    };
    let emu = Emu { fm, fnn, na };

    let mut body = String::new();
    if ops == Ops::Emulated {
        // 16, as a value the shader compiler cannot fold (num_workgroups.z is 1), so that
        // llvmpipe does not unroll the emulation's loops: unrolled, they took it seconds to
        // compile per kernel.
        let _ = writeln!(body, "    emu_16 = 15u + nwg.z;");
    }
    let col_tiles = s.n.div_ceil(bn);
    let col_tile = if split > 1 { format!("(wg.y % {col_tiles}u)") } else { "wg.y".into() };
    if split > 1 {
        let _ = writeln!(body, "    let kp = wg.y / {col_tiles}u;\n    let k0 = kp * {sp}u;");
    }
    let _ = writeln!(
        body,
        "    let row0 = wg.x * {bm}u;\n    let col0 = {col_tile} * {bn}u;\n    let sg = lid / {SUBGROUP}u;\n    let lane = lid % {SUBGROUP}u;"
    );
    let sgi = if ks == 1 {
        "sg"
    } else {
        let _ = writeln!(
            body,
            "    let ksl = sg / {nsg}u;\n    let sgi = sg % {nsg}u;\n    let lidk = lid % {tk}u;",
            nsg = wr * wc
        );
        if ops == Ops::Emulated {
            let _ = writeln!(body, "    emu_ks = ksl;");
        }
        "sgi"
    };
    let _ = writeln!(body, "    let sr = {sgi} / {wc}u;\n    let sc = {sgi} % {wc}u;");
    for a in 0..na {
        for i in 0..fm {
            for j in 0..fnn {
                let _ = match ops {
                    Ops::Native => writeln!(body, "    var acc{a}_{i}_{j} = coop_mat16x16<f32, C>();"),
                    Ops::Emulated => writeln!(body, "    emu_zero({}u);", emu.acc(a, i, j)),
                };
            }
        }
    }

    // Global loads of one step into registers: x slots, then weight slots.
    let a_total = bm * kq;
    let x_slots = a_total.div_ceil(tk);
    let vw = geo.vw();
    let per_w = bk * bn / vw; // weight vectors per weight and step
    let kw = bk / vw; // [N,K]: vectors per staged row and step
    let w_total = na * per_w;
    let w_slots = w_total.div_ceil(tk);
    let depth = prefetch_depth(s);
    // A vector of x in registers: four f32, or four halves packed in two words, unpacked
    // where staged.
    let x_packed = v.x_packed && s.q4.is_none();
    let px_zero = if x_packed { "vec2<u32>()" } else { "vec4<f32>(0.0)" };
    let x_value = |reg: &str| {
        if x_packed {
            format!("vec4<f32>(unpack2x16float({reg}.x), unpack2x16float({reg}.y))")
        } else {
            reg.to_string()
        }
    };
    let sets: &[&str] = if depth == 2 { &["", "b"] } else { &[""] };
    for rs in sets {
        for e in 0..x_slots {
            let _ = writeln!(body, "    var px{e}{rs} = {px_zero};");
        }
        for e in 0..w_slots {
            let _ = writeln!(body, "    var pw{e}{rs} = {w_elem}();");
            if s.q4.is_some() {
                // Scale and zero point of each half of the staged chunk.
                let _ = writeln!(body, "    var ps{e}{rs} = vec2<f32>(0.0);\n    var pz{e}{rs} = vec2<f32>(0.0);");
            }
        }
    }
    let guarded = |b: &mut String, dst: &str, zero: &str, value: &str, conds: &[String]| {
        if conds.is_empty() {
            let _ = writeln!(b, "            {dst} = {value};");
        } else {
            let _ = writeln!(
                b,
                "            {dst} = {zero};\n            if ({}) {{ {dst} = {value}; }}",
                conds.join(" && ")
            );
        }
    };
    let load = |b: &mut String, step: &str, rs: &str| {
        for e in 0..x_slots {
            let mut conds = vec![];
            if a_total % tk != 0 {
                conds.push(format!("idx < {a_total}u"));
            }
            if rows_partial {
                conds.push(format!("r < {}u", s.rows));
            }
            if k_partial {
                conds.push(format!("c < {kv}u"));
            }
            let _ = writeln!(
                b,
                "        {{\n            let idx = {}u + {lidk};\n            let r = row0 + idx / {kq}u;\n            let c = ({step}) * {kq}u + idx % {kq}u;",
                e * tk
            );
            guarded(b, &format!("px{e}{rs}"), px_zero, &format!("x[r * {kv}u + c]"), &conds);
            let _ = writeln!(b, "        }}");
        }
        for e in 0..w_slots {
            // Slot e covers vectors e·T .. e·T + T-1: one weight's when they do not straddle
            // gate and up (always for the tilings above), else chosen per thread.
            let lo = e * tk;
            let uniform = lo / per_w == (lo + tk - 1) / per_w && lo + tk <= w_total;
            let _ =
                writeln!(b, "        {{\n            let idx = {lo}u + {lidk};\n            let li = idx % {per_w}u;");
            let (oc, kk, kbound) = match s.layout {
                Layout::Kn => (
                    format!("col0 + (li % {}u) * {vw}u", bn / vw),
                    format!("({step}) * {bk}u + li / {}u", bn / vw),
                    s.k,
                ),
                Layout::Nk if s.q4.is_some() => {
                    (format!("col0 + li / {kw}u"), format!("({step}) * {kw}u + li % {kw}u"), q4_chunks)
                }
                Layout::Nk => (format!("col0 + li / {kw}u"), format!("({step}) * {kw}u + li % {kw}u"), s.k / vw),
            };
            let _ = writeln!(b, "            let oc = {oc};\n            let kk = {kk};");
            let mut conds = vec![];
            if w_total % tk != 0 {
                conds.push(format!("idx < {w_total}u"));
            }
            if cols_partial {
                conds.push(format!("oc < {}u", s.n));
            }
            // Past K: a 4-bit row holds whole chunks, so only steps past its last chunk.
            let past_k = match &s.q4 {
                Some(_) => steps * kw > kbound,
                None => k_partial,
            };
            if past_k {
                conds.push(format!("kk < {kbound}u"));
            }
            let read = |a: usize| {
                let index = match s.layout {
                    Layout::Kn => format!("kk * {}u + (oc + {}u) / {vw}u", s.n_total / vw, woff(a)),
                    Layout::Nk if s.q4.is_some() => format!("(oc + {}u) * {q4_chunks}u + kk", woff(a)),
                    Layout::Nk => format!("(oc + {}u) * {}u + kk", woff(a), s.k / vw),
                };
                format!("{}[{index}]", wname(a))
            };
            // A 4-bit vector's scales and zero-point terms, per half (zeros where the vector is
            // not loaded, so that it dequantizes to zeros).
            let scales = |a: usize| -> (String, String) {
                let parts: Vec<String> = (0..2).map(|h| q4_scale(a, "oc", "kk", h)).collect();
                let (s0, z0) = parts[0].split_once(", ").expect("scale, zc");
                let (s1, z1) = parts[1].split_once(", ").expect("scale, zc");
                (format!("vec2<f32>({s0}, {s1})"), format!("vec2<f32>({z0}, {z1})"))
            };
            if (uniform || na == 1) && s.q4.is_some() {
                let a = if na == 1 { 0 } else { lo / per_w };
                let (sc, zc) = scales(a);
                guarded(b, &format!("pw{e}{rs}"), &format!("{w_elem}()"), &read(a), &conds);
                guarded(b, &format!("ps{e}{rs}"), "vec2<f32>(0.0)", &sc, &conds);
                guarded(b, &format!("pz{e}{rs}"), "vec2<f32>(0.0)", &zc, &conds);
            } else if uniform || na == 1 {
                guarded(b, &format!("pw{e}{rs}"), &format!("{w_elem}()"), &read(lo / per_w), &conds);
            } else if s.q4.is_some() {
                let c = if conds.is_empty() { "true".to_string() } else { conds.join(" && ") };
                let ((s0, z0), (s1, z1)) = (scales(0), scales(1));
                let _ = writeln!(
                    b,
                    "            pw{e}{rs} = {w_elem}();\n            ps{e}{rs} = vec2<f32>(0.0);\n            pz{e}{rs} = vec2<f32>(0.0);\n            if ({c}) {{ if (idx < {per_w}u) {{ pw{e}{rs} = {}; ps{e}{rs} = {s0}; pz{e}{rs} = {z0}; }} else {{ pw{e}{rs} = {}; ps{e}{rs} = {s1}; pz{e}{rs} = {z1}; }} }}",
                    read(0),
                    read(1)
                );
            } else {
                let c = if conds.is_empty() { "true".to_string() } else { conds.join(" && ") };
                let _ = writeln!(
                    b,
                    "            pw{e}{rs} = {w_elem}();\n            if ({c}) {{ if (idx < {per_w}u) {{ pw{e}{rs} = {}; }} else {{ pw{e}{rs} = {}; }} }}",
                    read(0),
                    read(1)
                );
            }
            let _ = writeln!(b, "        }}");
        }
    };
    // Registers into stage `st`, as f16.
    let store = |b: &mut String, st: usize, rs: &str| {
        let st = stx(st);
        for e in 0..x_slots {
            let guard = a_total % tk != 0;
            let _ = writeln!(b, "        {{\n            let idx = {}u + {lidk};", e * tk);
            if guard {
                let _ = writeln!(b, "            if (idx < {a_total}u) {{");
            }
            let _ = writeln!(
                b,
                "            let r = idx / {kq}u;\n            xs[{st}][r / {rb_a}u][(r % {rb_a}u) * {sa}u + idx % {kq}u] = vec4<f16>({});",
                x_value(&format!("px{e}{rs}"))
            );
            if guard {
                let _ = writeln!(b, "            }}");
            }
            let _ = writeln!(b, "        }}");
        }
        for e in 0..w_slots {
            let guard = w_total % tk != 0;
            let _ = writeln!(b, "        {{\n            let idx = {}u + {lidk};", e * tk);
            if guard {
                let _ = writeln!(b, "            if (idx < {w_total}u) {{");
            }
            let _ = writeln!(b, "            let a = idx / {per_w}u;\n            let li = idx % {per_w}u;");
            if s.q4.is_some() {
                // 32 elements, dequantized in f32 (q4.rs's `q4lo`/`q4hi`: elements 0, 2, 4, 6
                // and 1, 3, 5, 7 of a word, exactly, less the zero point; times the scale, in
                // order again), rounded to f16 once; eight vec4<f16> stores. (The f16
                // unpacking, `bitcast<vec2<f16>>` of a masked word, would skip the f32 steps,
                // but naga 30 types that bitcast as vec2<f32>.)
                let halves = if s.q4.as_ref().is_some_and(|q| q.block == 16) { 2 } else { 1 };
                let _ = writeln!(
                    b,
                    "            let nn = li / {kw}u;\n            let blk = a * {wc}u + nn / {wno}u;\n            let at = (nn % {wno}u) * {sb}u + (li % {kw}u) * 8u;"
                );
                for h in 0..halves {
                    let c = ["x", "y"][h];
                    let _ = writeln!(
                        b,
                        "            let zc{h} = q4zc(pz{e}{rs}.{c});\n            let sq{h} = ps{e}{rs}.{c} * Q4X;"
                    );
                }
                for wi in 0..4 {
                    let (word, h) = (["x", "y", "z", "w"][wi], wi * halves / 4);
                    let _ = writeln!(
                        b,
                        "            {{\n                let l = q4lo(pw{e}{rs}.{word}, zc{h}) * sq{h};\n                let u = q4hi(pw{e}{rs}.{word}, zc{h}) * sq{h};\n                ws[{st}][blk][at + {}u] = vec4<f16>(vec4<f32>(l.x, u.x, l.y, u.y));\n                ws[{st}][blk][at + {}u] = vec4<f16>(vec4<f32>(l.z, u.z, l.w, u.w));\n            }}",
                        2 * wi,
                        2 * wi + 1
                    );
                }
            } else if vw == 8 {
                // 8 halves per load, two vec4<f16> stores.
                let (pre, blk, at) = match s.layout {
                    Layout::Kn => (
                        format!("let c8 = li % {}u;", bn / 8),
                        format!("c8 / {}u", wno / 8),
                        format!("(li / {}u) * {sb}u + (c8 % {}u) * 2u", bn / 8, wno / 8),
                    ),
                    Layout::Nk => (
                        format!("let nn = li / {kw}u;"),
                        format!("nn / {wno}u"),
                        format!("(nn % {wno}u) * {sb}u + (li % {kw}u) * 2u"),
                    ),
                };
                let _ = writeln!(
                    b,
                    "            {pre}\n            let blk = a * {wc}u + {blk};\n            let at = {at};\n            ws[{st}][blk][at] = vec4<f16>(vec4<f32>(unpack2x16float(pw{e}{rs}.x), unpack2x16float(pw{e}{rs}.y)));\n            ws[{st}][blk][at + 1u] = vec4<f16>(vec4<f32>(unpack2x16float(pw{e}{rs}.z), unpack2x16float(pw{e}{rs}.w)));"
                );
            } else {
                match s.layout {
                    Layout::Kn => {
                        let _ = writeln!(
                            b,
                            "            let c4 = li % {q}u;\n            ws[{st}][a * {wc}u + c4 / {qb}u][(li / {q}u) * {sb}u + c4 % {qb}u] = vec4<f16>(pw{e}{rs});",
                            q = bn / 4,
                            qb = wno / 4
                        );
                    }
                    Layout::Nk => {
                        let _ = writeln!(
                            b,
                            "            let nn = li / {kq}u;\n            ws[{st}][a * {wc}u + nn / {wno}u][(nn % {wno}u) * {sb}u + li % {kq}u] = vec4<f16>(pw{e}{rs});"
                        );
                    }
                }
            }
            if guard {
                let _ = writeln!(b, "            }}");
            }
            let _ = writeln!(b, "        }}");
        }
    };
    // Multiply out stage `st`: per 16 of k, fm A fragments, na·fn B fragments, their products.
    // Fragment i of A starts at `i·a_step + a0` of its row block, fragment j of B at
    // `j·b_step + b0` of its weight block (offsets in vec4<f16>).
    let a_step = 16 * sa;
    let b_step = match s.layout {
        Layout::Kn => 4,
        Layout::Nk => 16 * sb,
    };
    let (b_func, b_order) = match s.layout {
        Layout::Kn => ("coopLoadT", "T"),
        Layout::Nk => ("coopLoad", "N"),
    };
    let compute = |b: &mut String, st: usize| {
        let sx = stx(st);
        for q in 0..bk / 16 {
            let a0 = q * 4;
            let b0 = match s.layout {
                Layout::Kn => q * 16 * sb,
                Layout::Nk => q * 4,
            };
            let _ = writeln!(b, "        {{");
            match ops {
                Ops::Native => {
                    for i in 0..fm {
                        let _ = writeln!(
                            b,
                            "            let fa{i} = coopLoadT<coop_mat16x16<f16, A>>(&xs[{sx}][sr][{}u], {sa}u);",
                            i * a_step + a0
                        );
                    }
                    for a in 0..na {
                        for j in 0..fnn {
                            let _ = writeln!(
                                b,
                                "            let fb{a}_{j} = {b_func}<coop_mat16x16<f16, B>>(&ws[{sx}][{}u + sc][{}u], {sb}u);",
                                a * wc,
                                j * b_step + b0
                            );
                        }
                    }
                }
                Ops::Emulated => {
                    // Loops over the fragments (one call site each: see Emu::mma_all).
                    let _ = writeln!(
                        b,
                        "            for (var i = 0u; i < {fm}u; i++) {{ emu_ld_xs_{st}_T(i, sr, i * {a_step}u + {a0}u, {sa}u, lane); }}\n            for (var f = 0u; f < {}u; f++) {{ emu_ld_ws_{st}_{b_order}(f, (f / {fnn}u) * {wc}u + sc, (f % {fnn}u) * {b_step}u + {b0}u, {sb}u, lane); }}",
                        na * fnn
                    );
                }
            }
            match ops {
                Ops::Native => {
                    for a in 0..na {
                        for i in 0..fm {
                            for j in 0..fnn {
                                let _ = writeln!(
                                    b,
                                    "            acc{a}_{i}_{j} = coopMultiplyAdd(fa{i}, fb{a}_{j}, acc{a}_{i}_{j});"
                                );
                            }
                        }
                    }
                }
                Ops::Emulated => {
                    let _ = writeln!(b, "            {}", emu.mma_all());
                }
            }
            let _ = writeln!(b, "        }}");
        }
    };

    // Prologue: step 0 into stage 0. (From here on, `sp` counts a slice's steps and `k0`
    // prefixes its first.)
    let sp = spl;
    let k0 = if ks == 1 { k0.to_string() } else { format!("{k0}ksl * {sp}u + ") };
    let first = match (split, ks) {
        (1, 1) => "0u".to_string(),
        (_, 1) => "k0".to_string(),
        _ => format!("{k0}0u"),
    };
    let _ = writeln!(body, "    {{");
    load(&mut body, &first, "");
    store(&mut body, 0, "");
    if depth == 2 && sp > 1 {
        load(&mut body, &format!("{k0}1u"), "b");
    }
    let _ = writeln!(body, "    }}\n    workgroupBarrier();");
    let guarded_block = |b: &mut String, cond: Option<String>, f: &dyn Fn(&mut String)| match cond {
        Some(c) => {
            let _ = writeln!(b, "        if ({c}) {{");
            f(b);
            b.push_str("        }\n");
        }
        None => f(b),
    };
    if depth == 2 {
        // Two register sets: step t+2's loads are issued while step t multiplies out and
        // step t+1 (loaded one step earlier) is stored, so each load has two steps to land.
        // Steps alternate between the sets, two per iteration, so every name is a constant.
        let pairs = sp / 2;
        let lt = |c: usize| format!("t + {c}u < {sp}u");
        if pairs > 0 {
            let _ = writeln!(body, "    for (var t = 0u; t < {}u; t = t + 2u) {{", 2 * pairs);
            // Step t (stage 0), set b holds step t+1, set a takes step t+2.
            guarded_block(&mut body, Some(lt(2)), &|b| load(b, &format!("{k0}t + 2u"), ""));
            compute(&mut body, 0);
            if stages == 2 {
                store(&mut body, 1, "b");
                let _ = writeln!(body, "        workgroupBarrier();");
            } else {
                let _ = writeln!(body, "        workgroupBarrier();");
                store(&mut body, 0, "b");
                let _ = writeln!(body, "        workgroupBarrier();");
            }
            // Step t+1 (stage 1, or 0), set a holds step t+2, set b takes step t+3.
            guarded_block(&mut body, Some(lt(3)), &|b| load(b, &format!("{k0}t + 3u"), "b"));
            compute(&mut body, stages - 1);
            if stages == 2 {
                guarded_block(&mut body, Some(lt(2)), &|b| store(b, 0, ""));
            } else {
                let _ = writeln!(body, "        workgroupBarrier();");
                guarded_block(&mut body, Some(lt(2)), &|b| store(b, 0, ""));
            }
            let _ = writeln!(body, "        workgroupBarrier();\n    }}");
        }
        if sp % 2 == 1 {
            compute(&mut body, 0);
        }
    } else if stages == 2 {
        // Step t lives in stage t % 2; two steps per iteration keep every stage index a
        // constant. The multiply-outs are unconditional (naga takes an `if` on the loop
        // variable as non-uniform control flow): the loop runs over whole pairs of steps and
        // an odd last step follows it; only loads and stores past the last step are guarded.
        let half = |b: &mut String, st: usize, next: &str, guard: bool| {
            let cond = guard.then(|| format!("{next} < {sp}u"));
            guarded_block(b, cond.clone(), &|b| load(b, &format!("{k0}{next}"), ""));
            compute(b, st);
            guarded_block(b, cond, &|b| store(b, 1 - st, ""));
        };
        let pairs = sp / 2;
        if pairs > 0 {
            let _ = writeln!(body, "    for (var t = 0u; t < {}u; t = t + 2u) {{", 2 * pairs);
            half(&mut body, 0, "t + 1u", false);
            let _ = writeln!(body, "        workgroupBarrier();");
            half(&mut body, 1, "t + 2u", true);
            let _ = writeln!(body, "        workgroupBarrier();\n    }}");
        }
        if sp % 2 == 1 {
            compute(&mut body, 0);
        }
    } else {
        // One stage: step t+1's loads in flight while step t multiplies out, a barrier, the
        // stores, a barrier.
        let _ = writeln!(body, "    for (var t = 0u; t < {sp}u; t = t + 1u) {{\n        if (t + 1u < {sp}u) {{");
        load(&mut body, &format!("{k0}t + 1u"), "");
        let _ = writeln!(body, "        }}");
        compute(&mut body, 0);
        let _ = writeln!(body, "        workgroupBarrier();\n        if (t + 1u < {sp}u) {{");
        store(&mut body, 0, "");
        let _ = writeln!(body, "        }}\n        workgroupBarrier();\n    }}");
    }

    // Epilogue, per fragment through the subgroup's scratch: lane l reads row l / 2, columns
    // (l % 2)·8 .. +8 of the 16×16 block.
    let _ = writeln!(
        body,
        "    let er = lane / 2u;\n    let ec = (lane % 2u) * 8u;\n    let srow = row0 + sr * {rb_a}u + er;\n    let scol = col0 + sc * {wno}u + ec;"
    );
    for i in 0..fm {
        for j in 0..fnn {
            let _ = writeln!(body, "    {{");
            for a in 0..na {
                let _ = match ops {
                    Ops::Native => writeln!(body, "        coopStoreT(acc{a}_{i}_{j}, &cs[sg][0u], 16u);"),
                    Ops::Emulated => writeln!(body, "        emu_store_cs({}u, sg, lane);", emu.acc(a, i, j)),
                };
                let _ = writeln!(body, "        workgroupBarrier();");
                for h in 0..2 {
                    let cell = |d: usize| {
                        let at = format!("er * 16u + ec + {}u", 4 * h + d);
                        if ks == 1 {
                            format!("cs[sg][{at}]")
                        } else {
                            format!("(cs[sgi][{at}] + cs[sgi + {}u][{at}])", wr * wc)
                        }
                    };
                    let _ = writeln!(
                        body,
                        "        let v{a}_{h} = vec4<f32>({}, {}, {}, {});",
                        cell(0),
                        cell(1),
                        cell(2),
                        cell(3)
                    );
                }
                let _ = writeln!(body, "        workgroupBarrier();");
            }
            let _ = writeln!(body, "        let r = srow + {}u;\n        let c = scol + {}u;", i * 16, j * 16);
            let row_guard = match (rows_partial, ks) {
                (true, 1) => format!("r < {}u", s.rows),
                (false, 1) => "true".into(),
                (true, _) => format!("ksl == 0u && r < {}u", s.rows),
                (false, _) => "ksl == 0u".into(),
            };
            let _ = writeln!(body, "        if ({row_guard}) {{");
            for h in (0..2).filter(|_| split > 1) {
                // Part kp's sums of accumulator a at ((a·split + kp)·M + r)·N + c, for the
                // split-sum kernel ([`super::gemv::split_sum`]) to add up and finish.
                let col_guard = if cols_partial { format!("c + {}u < {}u", 4 * h, s.n) } else { "true".into() };
                let _ = writeln!(body, "            if ({col_guard}) {{");
                for a in 0..na {
                    let _ = writeln!(
                        body,
                        "                let o{a}_{h} = (({a}u * {split}u + kp) * {}u + r) * {}u + c + {}u;",
                        s.rows,
                        s.n,
                        4 * h
                    );
                    if part_vec4 {
                        let _ = writeln!(body, "                part[o{a}_{h} / 4u] = v{a}_{h};");
                    } else {
                        for (d, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                            let _ = writeln!(body, "                part[o{a}_{h} + {d}u] = v{a}_{h}.{comp};");
                        }
                    }
                }
                let _ = writeln!(body, "            }}");
            }
            for h in (0..2).filter(|_| split == 1) {
                let comps: Vec<String> = ["x", "y", "z", "w"]
                    .iter()
                    .enumerate()
                    .map(|(d, comp)| {
                        let up = if na == 2 { format!("v1_{h}.{comp}") } else { String::new() };
                        epilogue(s, v, &format!("v0_{h}.{comp}"), &up, &format!("(c + {}u)", 4 * h + d))
                    })
                    .collect();
                let col_guard = if cols_partial { format!("c + {}u < {}u", 4 * h, s.n) } else { "true".into() };
                let value = if v.out_packed {
                    let _ = writeln!(body, "            let o{h} = vec4<f32>({});", comps.join(", "));
                    let pair = |a: &str, b: &str| {
                        crate::wgsl::pack_halves(&format!("o{h}.{a}"), &format!("o{h}.{b}"), v.out_exact)
                    };
                    if v.out_exact {
                        format!("vec2<u32>({}, {})", pair("x", "y"), pair("z", "w"))
                    } else {
                        // (The same as `pack_halves`, on the vector's halves.)
                        format!("vec2<u32>(pack2x16float(o{h}.xy), pack2x16float(o{h}.zw))")
                    }
                } else {
                    format!("vec4<f32>({})", comps.join(", "))
                };
                let _ = writeln!(
                    body,
                    "            if ({col_guard}) {{ out0[(r * {}u + c + {}u) / 4u] = {value}; }}",
                    s.n,
                    4 * h,
                );
            }
            let _ = writeln!(body, "        }}\n    }}");
        }
    }

    let mut prelude = String::new();
    if s.fused.is_some() {
        prelude.push_str(MATH);
    }
    if v.out_exact {
        // The exact packing's functions (the ones MATH, where declared, lacks).
        let helpers =
            if s.fused.is_some() { crate::elementwise::helpers_beyond_math } else { crate::elementwise::helpers_for };
        prelude.push_str(&helpers(&body));
    }
    let _ = writeln!(
        prelude,
        "var<workgroup> xs: array<array<array<vec4<f16>, {}>, {wr}>, {nst}>;\nvar<workgroup> ws: array<array<array<vec4<f16>, {}>, {blocks_b}>, {nst}>;\nvar<workgroup> cs: array<array<f32, 256>, {}>;",
        geo.a_len() / wr,
        geo.b_len() / blocks_b,
        wr * wc * ks,
        nst = stages * ks
    );
    if ops == Ops::Emulated {
        prelude.push_str(&emu.functions(stages, ks, s.layout));
    }
    if let Some((q, l)) = &q4 {
        let views: &[&str] = if s.fused.is_some() && !s.merged { &["wp_gate", "wp_up"] } else { &["wp_gate"] };
        prelude.push_str(&super::q4::functions(q, l, views, t.q4_unpack));
    }
    let kind = kind(s, ProjKernel::Coop);
    let groups = [s.rows.div_ceil(bm) as u64, (col_tiles * split) as u64];
    let mut k = finish(name, kind, &b, &prelude, &body, groups, threads as u32, t)?;
    if split > 1 {
        k.scratch_bytes = super::gemv::split_scratch_bytes(s, split);
    }
    Ok(k)
}

/// The emulation's slots. As on the hardware, a 16×16 matrix is spread over the 32 lanes of
/// a subgroup: lane l holds row l / 2, columns (l % 2)·8 .. +8 of each accumulator (the
/// cells it reads back in the epilogue), and of the fragments what it needs for those: its
/// row of each A fragment (16 values) and its 8 columns of each B fragment (16×8 values), in
/// private arrays (never passed by value: llvmpipe's compile time explodes on those).
struct Emu {
    fm: usize,
    fnn: usize,
    na: usize,
}

impl Emu {
    /// Accumulator slot (fragment slots: A fragment i in `emu_a[i]`, B fragment j of weight
    /// a in `emu_b[a·fn + j]`).
    fn acc(&self, a: usize, i: usize, j: usize) -> usize {
        (a * self.fm + i) * self.fnn + j
    }
    /// Every product of one 16 of k, `acc[a][i][j] += A[i]·B[a][j]`, as one loop over the
    /// accumulator slots (one call site: llvmpipe takes about half a second to compile each
    /// inlined copy of `emu_mma`). The slots' arithmetic is [`Emu::acc`] inverted.
    fn mma_all(&self) -> String {
        let (fm, fnn) = (self.fm, self.fnn);
        format!(
            "for (var m = 0u; m < {}u; m++) {{ emu_mma((m / {fnn}u) % {fm}u, (m / {}u) * {fnn}u + m % {fnn}u, m); }}",
            self.na * fm * fnn,
            fm * fnn
        )
    }
    /// The private arrays and the functions standing in for the cooperative operations:
    /// `emu_ld_xs_{stage}_T` loads a lane's row of an A fragment row-major (as `coopLoadT`),
    /// `emu_ld_ws_{stage}_{T|N}` its columns of a B fragment row-major or column-major (as
    /// `coopLoadT` / `coopLoad`), from block `blk` of a staged tile; `emu_mma` is
    /// `coopMultiplyAdd` (f32 products of f16 values, exact, summed in f32), `emu_store_cs`
    /// is `coopStoreT` into a subgroup's scratch, `emu_zero` a fresh accumulator.
    fn functions(&self, stages: usize, ks: usize, layout: Layout) -> String {
        let mut f = format!(
            "var<private> emu_16: u32;\nvar<private> emu_a: array<array<f32, 16>, {}>;\nvar<private> emu_b: array<array<f32, 128>, {}>;\nvar<private> emu_c: array<array<f32, 8>, {}>;\n",
            self.fm,
            self.na * self.fnn,
            self.na * self.fm * self.fnn
        );
        // Element (r, c) of a fragment at [base + r·stride + c/4][c%4] (row-major) or
        // [base + c·stride + r/4][r%4] (column-major).
        let at = |order: &str, r: &str, c: &str| match order {
            "T" => format!("base + ({r}) * stride + ({c}) / 4u][({c}) % 4u"),
            _ => format!("base + ({c}) * stride + ({r}) / 4u][({r}) % 4u"),
        };
        let ws_order = match layout {
            Layout::Kn => "T",
            Layout::Nk => "N",
        };
        if ks > 1 {
            f.push_str("var<private> emu_ks: u32;\n");
        }
        for st in 0..stages {
            let sx = if ks == 1 { st.to_string() } else { format!("emu_ks * {stages}u + {st}u") };
            let _ = writeln!(
                f,
                "fn emu_ld_xs_{st}_T(fr: u32, blk: u32, base: u32, stride: u32, lane: u32) {{\n    for (var c = 0u; c < emu_16; c++) {{ emu_a[fr][c] = f32(xs[{sx}][blk][{}]); }}\n}}",
                at("T", "lane / 2u", "c")
            );
            let _ = writeln!(
                f,
                "fn emu_ld_ws_{st}_{ws_order}(fr: u32, blk: u32, base: u32, stride: u32, lane: u32) {{\n    for (var k = 0u; k < emu_16; k++) {{ for (var e = 0u; e < 8u; e++) {{ emu_b[fr][k * 8u + e] = f32(ws[{sx}][blk][{}]); }} }}\n}}",
                at(ws_order, "k", "(lane % 2u) * 8u + e")
            );
        }
        f.push_str(
            "fn emu_zero(a: u32) {\n    for (var e = 0u; e < 8u; e++) { emu_c[a][e] = 0.0; }\n}\n\
             fn emu_mma(fa: u32, fb: u32, a: u32) {\n    for (var e = 0u; e < 8u; e++) {\n        var s = emu_c[a][e];\n        for (var k = 0u; k < emu_16; k++) { s = fma(emu_a[fa][k], emu_b[fb][k * 8u + e], s); }\n        emu_c[a][e] = s;\n    }\n}\n\
             fn emu_store_cs(a: u32, blk: u32, lane: u32) {\n    for (var e = 0u; e < 8u; e++) { cs[blk][(lane / 2u) * 16u + (lane % 2u) * 8u + e] = emu_c[a][e]; }\n}\n",
        );
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glufuse_ir::{Activation, FusedGateUp, NodeIndex, Value};
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    /// A value bound by a test kernel (the node index only has to be distinct).
    fn val(i: usize) -> Value {
        Value { node: NodeIndex::new(i), output: 0 }
    }

    /// The fused-unit variants of the grid: activation, offsets, merged, biases (f32 or packed
    /// f16), or `None` for a plain projection.
    type Kind = Option<(Activation, (usize, usize), bool, Option<bool>, Option<bool>)>;

    const KINDS: [Kind; 5] = [
        None,
        Some((Activation::Silu, (0, 0), false, None, None)),
        Some((Activation::GeluTanh, (0, 0), false, Some(false), Some(true))),
        Some((Activation::GeluErf, (0, 96), true, None, Some(false))),
        Some((Activation::Relu, (8, 104), true, Some(true), None)),
    ];

    /// The shape and values of one grid point.
    fn case(layout: Layout, f16: bool, kind: Kind, rows: usize, k: usize) -> (ProjShape, ProjValues) {
        let (n, n_total, fused, merged, biases) = match kind {
            None => (200, 200, None, false, (None, None)),
            Some((activation, (go, uo), merged, bg, bu)) => {
                let n = if merged { 96 } else { 200 };
                let n_total = if merged { 2 * n + go.min(uo) } else { n + go.max(uo) };
                let f = FusedGateUp {
                    activation,
                    layout,
                    gate_bias: bg.is_some(),
                    up_bias: bu.is_some(),
                    gate_offset: go as u64,
                    up_offset: uo as u64,
                    replaced: vec![],
                };
                (n, n_total, Some(f), merged, (bg, bu))
            }
        };
        let s = ProjShape { rows, k, n, n_total, layout, f16, f16_values: f16, fused, merged, q4: None };
        let v = ProjValues {
            x: val(0),
            w_gate: val(1),
            w_up: s.fused.as_ref().map(|_| val(if merged { 1 } else { 2 })),
            b_gate: biases.0.map(|p| (val(3), p)),
            b_up: biases.1.map(|p| (val(4), p)),
            out: val(5),
            x_packed: false,
            out_packed: false,
            out_exact: false,
        };
        (s, v)
    }

    /// naga's SPIR-V writer with the options wgpu 30 uses on a Vulkan 1.3 device with robust
    /// buffer access (NVIDIA): workgroup-array indexes clamped, storage unchecked.
    fn spirv(module: &naga::Module, info: &naga::valid::ModuleInfo) -> std::result::Result<Vec<u32>, String> {
        use naga::back::spv;
        let options = spv::Options {
            lang_version: (1, 6),
            bounds_check_policies: naga::proc::BoundsCheckPolicies {
                index: naga::proc::BoundsCheckPolicy::Restrict,
                buffer: naga::proc::BoundsCheckPolicy::Unchecked,
                image_load: naga::proc::BoundsCheckPolicy::Unchecked,
                binding_array: naga::proc::BoundsCheckPolicy::Unchecked,
            },
            zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::Native,
            force_loop_bounding: true,
            use_storage_input_output_16: true,
            ..Default::default()
        };
        let pipeline = spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: "main".into() };
        spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| e.to_string())
    }

    fn validate(wgsl: &str, caps: Capabilities) -> (naga::Module, naga::valid::ModuleInfo) {
        let module =
            naga::front::wgsl::parse_str(wgsl).unwrap_or_else(|e| panic!("{}\n{wgsl}", e.emit_to_string(wgsl)));
        let info = Validator::new(ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}\n{wgsl}", e.emit_to_string(wgsl)));
        (module, info)
    }

    /// The fused 64×64 tiling of the Qwen2-0.5B-sized prefill: `[K, N]` f16 weight blocks of
    /// 2560 bytes all start in bank 0, so a step's stores take twice the wavefronts they do
    /// with 64 bytes after each block; `[N, K]` blocks are written one at a time a phase, and
    /// stay unpadded. The padding is in the kernel's declaration of the tile.
    #[test]
    fn weight_blocks_are_padded_where_their_stores_would_share_banks() {
        let t: CoopTile = "64x64x32w2x2s1".parse().unwrap();
        for (layout, pad, unpadded, padded) in [(Layout::Kn, 8, 256, 128), (Layout::Nk, 0, 192, 192)] {
            let (s, v) = case(layout, true, KINDS[1], 128, 896);
            let g = Geo::new(&s, t);
            assert_eq!((g.store_wavefronts(0), g.store_wavefronts(8)), (unpadded, padded), "{layout:?}");
            assert_eq!(g.pad, pad, "{layout:?}");
            let target = Target { max_workgroup_storage_bytes: 1 << 15, ..Target::default() };
            let k = coop("k".into(), &s, &v, &target, t, Ops::Native, 1).unwrap();
            let block = 32 * g.sb() + pad;
            let decl = format!("var<workgroup> ws: array<array<array<vec4<f16>, {block}>, 4>, 1>;");
            assert!(k.wgsl.contains(&decl), "{layout:?}: no `{decl}` in\n{}", k.wgsl);
        }
        // 4-bit weights are not modelled and keep their blocks as they are.
        let mut s = case(Layout::Nk, true, None, 128, 896).0;
        s.q4 = Some(super::super::q4::Q4 { block: 32, scale_f16: true, zp: [false, false] });
        assert_eq!(Geo::new(&s, t).pad, 0);
    }

    /// Every variant of the grid (both layouts, f16 and f32 weights, plain and fused with
    /// every activation, biases of both storages, merged weights with offsets, partial row,
    /// column and k tiles, one- and two-stage tilings, x and the output packed f16) validates in naga with the
    /// cooperative-matrix capability on and goes through naga's SPIR-V writer as wgpu would
    /// send it to a Vulkan driver; its emulated form validates without the capability and
    /// uses no cooperative-matrix operation.
    #[test]
    fn every_variant_validates_and_writes_spirv() {
        let tilings = [
            "128x64x64w4x2s1",
            "64x64x64w4x2",
            "32x64x128w2x2s1",
            "32x32x128w2x2s1",
            "128x128x32w2x4s1",
            "256x128x32w4x2s1",
            "128x64x32w2x4s1",
            "16x128x64w1x4s1",
            "16x32x128w1x2s1",
            "128x64x32w2x2",
            "64x64x16w2x2",
            "64x64x64w2x2",
            "32x64x64w2x2",
            "64x64x32w2x2k2s1",
            "32x64x64w2x2k2s1",
        ];
        let native =
            Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let emulated = Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let target = Target { max_workgroup_storage_bytes: 1 << 17, ..Target::default() };
        let mut count = 0;
        for layout in [Layout::Kn, Layout::Nk] {
            for f16 in [true, false] {
                for kind in KINDS {
                    for (rows, k) in [(512, 256), (37, 136), (1, 40)] {
                        for tl in tilings {
                            let tl: CoopTile = tl.parse().unwrap();
                            let (s, v) = case(layout, f16, kind, rows, k);
                            let what = format!("{layout:?} f16={f16} {kind:?} M={rows} K={k} {tl}");
                            let src = coop("t".into(), &s, &v, &target, tl, Ops::Native, 1)
                                .unwrap_or_else(|e| panic!("{what}: {e}"));
                            let (module, info) = validate(&src.wgsl, native);
                            spirv(&module, &info).unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
                            assert_eq!(src.workgroup_size as usize, tl.threads());
                            assert_eq!(src.workgroups, [rows.div_ceil(tl.bm) as u32, s.n.div_ceil(tl.bn) as u32, 1]);
                            let emu = coop("t".into(), &s, &v, &target, tl, Ops::Emulated, 1).unwrap();
                            assert!(!emu.wgsl.contains("coop"), "{what}: the emulation uses a cooperative op");
                            validate(&emu.wgsl, emulated);
                            count += 1;
                            // x and the output stored as packed f16, the output a graph
                            // output's (rounded on the bits) or an activation's.
                            for exact in [false, true].into_iter().filter(|_| f16 && rows == 37) {
                                let pv = ProjValues { x_packed: true, out_packed: true, out_exact: exact, ..v };
                                let src = coop("t".into(), &s, &pv, &target, tl, Ops::Native, 1)
                                    .unwrap_or_else(|e| panic!("{what} packed: {e}"));
                                assert_eq!(src.wgsl.contains("pack_f16_("), exact, "{what}");
                                let (module, info) = validate(&src.wgsl, native);
                                spirv(&module, &info).unwrap_or_else(|e| panic!("{what} packed: SPIR-V: {e}"));
                            }
                            // Split in two parts of k (K = 256: an even number of steps at
                            // every tiling): partial sums, no output binding.
                            if k == 256 {
                                let pv = ProjValues { b_gate: None, b_up: None, ..v };
                                let src = coop("t".into(), &s, &pv, &target, tl, Ops::Native, 2)
                                    .unwrap_or_else(|e| panic!("{what} split: {e}"));
                                let (module, info) = validate(&src.wgsl, native);
                                spirv(&module, &info).unwrap_or_else(|e| panic!("{what} split: SPIR-V: {e}"));
                                assert!(src.wgsl.contains("part[") && !src.wgsl.contains("out0"), "{what} split");
                                assert_eq!(src.workgroups[1], 2 * s.n.div_ceil(tl.bn) as u32);
                                assert_eq!(src.scratch_bytes, (s.na() * 2 * rows * s.n * 4) as u64);
                                validate(
                                    &coop("t".into(), &s, &pv, &target, tl, Ops::Emulated, 2).unwrap().wgsl,
                                    emulated,
                                );
                            }
                        }
                    }
                }
            }
        }
        // layouts × weight storages × kinds × sizes × tilings
        assert_eq!(count, 2 * 2 * 5 * 3 * 15);
    }

    /// The 4-bit staging: every kind of the grid with 4-bit weights (blocks of 16, 32 and
    /// 128, f16 and f32 scales, with and without zero points; K a multiple of neither 32 nor
    /// the block) validates natively and writes SPIR-V, and its emulation validates.
    #[test]
    fn q4_variants_validate_and_write_spirv() {
        use crate::proj::q4::Q4;
        let native =
            Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let emulated = Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let target = Target { max_workgroup_storage_bytes: 1 << 17, ..Target::default() };
        let mut count = 0;
        for (i, kind) in KINDS.into_iter().enumerate() {
            for (rows, k, block) in [(512, 256, 32), (37, 136, 16), (9, 200, 128)] {
                for tl in ["128x128x32w2x4s1", "16x32x128w1x2s1", "128x64x32w2x2"] {
                    let tl: CoopTile = tl.parse().unwrap();
                    let (mut s, v) = case(Layout::Nk, false, kind, rows, k);
                    s.q4 = Some(Q4 { block, scale_f16: i % 2 == 0, zp: [i % 3 == 0, i % 3 != 1] });
                    s.f16_values = i % 2 == 0;
                    let what = format!("q4 {kind:?} M={rows} K={k} block {block} {tl}");
                    let src =
                        coop("t".into(), &s, &v, &target, tl, Ops::Native, 1).unwrap_or_else(|e| panic!("{what}: {e}"));
                    let (module, info) = validate(&src.wgsl, native);
                    spirv(&module, &info).unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
                    let emu = coop("t".into(), &s, &v, &target, tl, Ops::Emulated, 1).unwrap();
                    validate(&emu.wgsl, emulated);
                    count += 1;
                }
            }
        }
        assert_eq!(count, 5 * 3 * 3);
        // Steps of 16 of k cannot stage whole chunks.
        let (mut s, _) = case(Layout::Nk, false, KINDS[1], 64, 64);
        s.q4 = Some(Q4 { block: 32, scale_f16: true, zp: [false; 2] });
        let e = check(&s, "64x64x16w2x2".parse().unwrap(), 1 << 16).unwrap_err();
        assert!(e.contains("BK a multiple of 32"), "{e}");
    }

    /// Split-K where the output's tiles leave most of an H100 idle, in parts that divide the
    /// k steps evenly.
    #[test]
    fn splits_fill_the_device_with_whole_steps() {
        let split_for = |fused: bool, rows, k, n, forced| {
            let kind = fused.then_some((Activation::Silu, (0, 0), false, None, None));
            let (mut s, _) = case(Layout::Kn, true, kind, rows, k);
            s.n = n;
            s.n_total = n;
            let t = pick(&s, 49152).unwrap();
            split(&s, t, forced).0
        };
        // Qwen2-0.5B at 128 rows: the down projection's 56 tiles of 32×64 (76 steps of 64 in
        // two slices of k) split in 2 parts of 38 steps, the fewest of at least
        // COOP_SPLIT_MIN_STEPS, each sliced evenly, that reach COOP_MIN_WORKGROUPS (112
        // workgroups); q, o, k and v (K = 896, 32-row tiles, 7 steps of 128) stay whole, as
        // does the fused gate/up. K = 1024 stays whole (32×32 tiles); K = 2048 (32 steps of
        // 64) splits in 2 (no more parts of 16), K = 4096 (64) in 4 (224 workgroups). At 512
        // rows the down projection's 112 tiles stay whole.
        assert_eq!(split_for(false, 128, 4864, 896, None), 2);
        assert_eq!(split_for(false, 128, 896, 896, None), 1);
        assert_eq!(split_for(false, 128, 896, 128, None), 1);
        assert_eq!(split_for(false, 128, 1024, 896, None), 1);
        assert_eq!(split_for(false, 128, 2048, 896, None), 2);
        assert_eq!(split_for(false, 128, 4096, 896, None), 4);
        assert_eq!(split_for(true, 128, 896, 4864, None), 1);
        assert_eq!(split_for(false, 512, 4864, 896, None), 1);
        assert_eq!(split_for(true, 512, 4096, 14336, None), 1);
        // Too few steps to split (3 of 32), or none dividing them evenly (29, prime).
        assert_eq!(split_for(false, 128, 96, 128, None), 1);
        assert_eq!(split_for(false, 128, 928, 128, None), 1);
        // Forced: used where it divides the steps (38 of 128).
        assert_eq!(split_for(false, 512, 4864, 896, Some(2)), 2);
        assert_eq!(split_for(false, 512, 4864, 896, Some(4)), 1);
    }

    /// The LM head's tiling (a plain projection only: a fused one stages twice the columns)
    /// validates and writes SPIR-V at 128 rows of a wide `[N, K]` weight, f16 and f32.
    #[test]
    fn the_lm_head_tiling_validates() {
        let native =
            Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        let target = Target { max_workgroup_storage_bytes: 49152, ..Target::default() };
        let tl: CoopTile = "128x128x64w2x4s1".parse().unwrap();
        for f16 in [true, false] {
            let (mut s, v) = case(Layout::Nk, f16, None, 128, 896);
            s.n = 151936;
            s.n_total = 151936;
            assert_eq!(pick(&s, 49152), Ok(tl));
            let src = coop("t".into(), &s, &v, &target, tl, Ops::Native, 1).unwrap();
            let (module, info) = validate(&src.wgsl, native);
            spirv(&module, &info).unwrap();
            assert_eq!(src.workgroups, [1, 151936u32.div_ceil(128), 1]);
        }
    }

    /// The tilings picked for the shapes measured on the H100 are the ones measured fastest,
    /// and fit its 48 KiB; with lavapipe's 32 KiB smaller ones are picked.
    #[test]
    fn picked_tilings_are_the_measured_ones_and_fit() {
        let pick_for = |layout, fused: bool, rows, k, n, max| {
            let kind = fused.then_some((Activation::Silu, (0, 0), false, None, None));
            let (mut s, _) = case(layout, true, kind, rows, k);
            s.n = n;
            s.n_total = n;
            pick(&s, max).map(|t| t.to_string())
        };
        let h100 = 49152;
        // Fused, more than 64 rows: 128×64 tiles on k steps of 64, but where 132 to 263 of
        // them cover the output with k short (896×4864 at 256 rows), and at up to 64 rows.
        assert_eq!(pick_for(Layout::Nk, true, 512, 4096, 14336, h100).unwrap(), "128x64x64w4x2s1");
        assert_eq!(pick_for(Layout::Kn, true, 512, 4096, 14336, h100).unwrap(), "128x128x32w2x4s1");
        assert_eq!(pick_for(Layout::Kn, true, 128, 4096, 14336, h100).unwrap(), "128x128x32w2x4s1");
        assert_eq!(pick_for(Layout::Nk, true, 128, 4096, 14336, h100).unwrap(), "128x64x64w4x2s1");
        assert_eq!(pick_for(Layout::Nk, true, 128, 896, 4864, h100).unwrap(), "128x64x64w4x2s1");
        assert_eq!(pick_for(Layout::Kn, true, 128, 896, 4864, h100).unwrap(), "128x64x64w4x2s1");
        assert_eq!(pick_for(Layout::Nk, true, 512, 896, 4864, h100).unwrap(), "128x64x64w4x2s1");
        assert_eq!(pick_for(Layout::Nk, true, 256, 896, 4864, h100).unwrap(), "128x128x32w2x4s1");
        assert_eq!(pick_for(Layout::Nk, true, 64, 896, 4864, h100).unwrap(), "64x64x32w2x2s1");
        assert_eq!(pick_for(Layout::Nk, true, 64, 4096, 14336, h100).unwrap(), "128x128x32w2x4s1");
        // (Where that tile does not fit: lavapipe's 32 KiB.)
        assert_eq!(pick_for(Layout::Nk, true, 128, 896, 4864, 32768).unwrap(), "64x64x32w2x2s1");
        // Plain, few tiles, k short: 32×32 tiles on k steps of 128.
        assert_eq!(pick_for(Layout::Kn, false, 128, 896, 1152, h100).unwrap(), "32x32x128w2x2s1");
        assert_eq!(pick_for(Layout::Nk, false, 128, 896, 1152, h100).unwrap(), "32x32x128w2x2s1");
        assert_eq!(pick_for(Layout::Nk, false, 128, 896, 1152, 32768).unwrap(), "32x32x128w2x2s1");
        // Plain, few tiles, k long (split): 32×64 tiles, k in two slices of steps of 64.
        assert_eq!(pick_for(Layout::Nk, false, 128, 4864, 896, h100).unwrap(), "32x64x64w2x2k2s1");
        // (Where the slices do not fit, lavapipe's 32 KiB: one on k steps of 128.)
        assert_eq!(pick_for(Layout::Nk, false, 128, 4864, 896, 32768).unwrap(), "32x64x128w2x2s1");
        // Plain, few tiles, k short but 64-row tiles not few: 64-row tiles of eight
        // subgroups, two stages.
        assert_eq!(pick_for(Layout::Nk, false, 128, 896, 4864, h100).unwrap(), "64x64x64w4x2");
        // An LM head (Qwen2-0.5B's, tied: [N, K]) at 128 rows; past 256 rows, 256-row tiles.
        assert_eq!(pick_for(Layout::Nk, false, 128, 896, 151936, h100).unwrap(), "128x128x64w2x4s1");
        assert_eq!(pick_for(Layout::Nk, false, 128, 896, 151936, 32768).unwrap(), "128x128x32w2x4s1");
        assert_eq!(pick_for(Layout::Nk, false, 512, 896, 151936, h100).unwrap(), "256x128x32w4x2s1");
        assert_eq!(pick_for(Layout::Nk, true, 16, 4096, 14336, h100).unwrap(), "16x32x128w1x2s1");
        assert_eq!(pick_for(Layout::Kn, true, 16, 4096, 14336, h100).unwrap(), "16x128x64w1x4s1");
        assert_eq!(pick_for(Layout::Kn, false, 512, 4096, 14336, h100).unwrap(), "256x128x32w4x2s1");
        assert_eq!(pick_for(Layout::Nk, false, 128, 4096, 14336, h100).unwrap(), "128x128x32w2x4s1");
        assert_eq!(pick_for(Layout::Kn, true, 512, 4096, 14336, 32768).unwrap(), "128x64x32w2x4s1");
        assert_eq!(pick_for(Layout::Kn, true, 16, 4096, 14336, 32768).unwrap(), "16x64x64w1x4s1");
        for (k, n) in [(896, 4864), (2048, 11008), (4096, 14336)] {
            for rows in [9, 16, 33, 128, 200, 512, 4096] {
                for layout in [Layout::Kn, Layout::Nk] {
                    for fused in [false, true] {
                        let t = pick_for(layout, fused, rows, k, n, h100).unwrap();
                        // 64-row tiles where 128-row ones of 64 outputs (128 plain) number
                        // fewer than COOP_MIN_WORKGROUPS (half of it plain).
                        let (cols, least) =
                            if fused { (64, COOP_MIN_WORKGROUPS) } else { (128, COOP_MIN_WORKGROUPS / 2) };
                        let few = rows > 32 && rows.div_ceil(128) * n.div_ceil(cols) < least;
                        // A plain one of those: 32×32 tiles (k steps of 128) where 64-row
                        // ones number fewer than half of COOP_MIN_WORKGROUPS and k has fewer
                        // than twice COOP_SPLIT_MIN_STEPS steps of 64; 32×64 ones (k in two
                        // slices) where k has more; else 64-row ones of eight subgroups, two
                        // stages.
                        let long_k = k.div_ceil(64) >= 2 * COOP_SPLIT_MIN_STEPS;
                        let short = rows.div_ceil(64) * n.div_ceil(64) < COOP_MIN_WORKGROUPS / 2 && !long_k;
                        // Fused past 64 rows: 128×64 tiles on k steps of 64 where few, or
                        // (`[N, K]`) where k is long or they fill two waves.
                        let tiles = rows.div_ceil(128) * n.div_ceil(64);
                        let tall = fused
                            && rows > 64
                            && (few || (layout == Layout::Nk && (k >= 2048 || tiles >= 2 * COOP_MIN_WORKGROUPS)));
                        let want = match (rows <= 32, tall, few, fused, short, long_k) {
                            (true, ..) => "16x",
                            (false, true, ..) => "128x64x64w4x2s1",
                            (false, false, true, true, ..) => "64x64x32w2x2s1",
                            (false, false, true, false, true, _) => "32x32x128w2x2s1",
                            (false, false, true, false, false, true) => "32x64x64w2x2k2s1",
                            (false, false, true, false, false, false) => "64x64x64w4x2",
                            (false, false, false, ..) => "128x",
                        };
                        let exact = tall || (few && !fused);
                        assert!(
                            if exact { t == want } else { t.starts_with(want) || (!few && t.starts_with("256x")) },
                            "{rows} {k} {n}: {t}"
                        );
                    }
                }
            }
        }
    }

    /// What the kernel cannot take is refused with the reason.
    /// `GLUFUSE_COOP_TILES`'s text: `CLASS=TILE` pairs, each class once; the classes follow
    /// [`candidates`]' cases (Qwen2-0.5B's projections at 128 rows); a class's tiling is used
    /// where it fits, and where it does not the projection says why it is not cooperative.
    #[test]
    fn class_tilings_parse_and_override_the_pick() {
        let t = |s: &str| s.parse::<CoopTile>().unwrap();
        assert_eq!(
            parse_class_tiles(" fused=128x64x64w4x2s1, long=64x64x64w4x2 ,").unwrap(),
            vec![(CoopClass::Fused, t("128x64x64w4x2s1")), (CoopClass::Long, t("64x64x64w4x2"))]
        );
        assert_eq!(parse_class_tiles("").unwrap(), vec![]);
        for (bad, why) in [
            ("fused", "not CLASS=TILE"),
            ("wide=64x64x32w2x2s1", "not a class"),
            ("short=64x64", "short:"),
            ("head=128x128x64w2x4s1,head=64x64x32w2x2s1", "given twice"),
            ("fused=16x99999999999999999x16w1x1", "tile sides must be 1 to 512"),
            ("fused=64x64x32w4x4s1", "1 to 8 subgroups"),
            ("fused=64x64x32w2x2s3", "1 or 2 stages"),
        ] {
            let e = parse_class_tiles(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let shape = |fused: bool, k: usize, n: usize| {
            let kind = fused.then_some((Activation::Silu, (0, 0), false, None, None));
            let (mut s, _) = case(Layout::Nk, true, kind, 128, k);
            s.n = n;
            s.n_total = n;
            s
        };
        let (gate_up, head, down, qkv) =
            (shape(true, 896, 4864), shape(false, 896, 151936), shape(false, 4864, 896), shape(false, 896, 1152));
        let classes = [&gate_up, &head, &down, &qkv].map(CoopClass::of);
        assert_eq!(classes, [CoopClass::Fused, CoopClass::Head, CoopClass::Long, CoopClass::Short]);
        let h100 = Target {
            caps: Capabilities::COOPERATIVE_MATRIX | Capabilities::SHADER_FLOAT16,
            coop_matrix: vec![crate::CoopMatrix::F16_F32_16],
            subgroup_size: Some(32),
            max_workgroup_storage_bytes: 49152,
            ..Target::default()
        };
        let pick = |s: &ProjShape, t: &Target| crate::select::coop_tile(s, t, true).map(|(tile, _)| tile.to_string());
        assert_eq!(pick(&gate_up, &h100).unwrap(), "128x64x64w4x2s1");
        let tuned = Target { coop_class_tiles: parse_class_tiles("fused=64x64x32w2x2s1").unwrap(), ..h100.clone() };
        assert_eq!(pick(&gate_up, &tuned).unwrap(), "64x64x32w2x2s1");
        // Only its class.
        assert_eq!(pick(&down, &tuned).unwrap(), pick(&down, &h100).unwrap());
        // One that does not fit the shape: the default pick, the reason saying why.
        let too_big = Target { coop_class_tiles: parse_class_tiles("long=256x128x64w4x2").unwrap(), ..h100.clone() };
        assert_eq!(pick(&down, &too_big).unwrap(), pick(&down, &h100).unwrap());
        let (_, why) = crate::select::coop_tile(&down, &too_big, true).unwrap();
        assert!(why.contains("the long tiling does not fit (tiling 256x128x64w4x2 needs"), "{why}");
    }

    #[test]
    fn refusals_say_why() {
        let t128: CoopTile = "128x64x32w2x4s1".parse().unwrap();
        let (mut s, _) = case(Layout::Kn, true, None, 16, 64);
        s.k = 30;
        assert!(check(&s, t128, 1 << 16).unwrap_err().contains("multiples of 4"));
        let (mut s, _) = case(Layout::Kn, true, None, 16, 64);
        s.n = 196;
        s.n_total = 196;
        assert!(check(&s, t128, 1 << 16).unwrap_err().contains("multiples of 8"), "f16 [K,N] needs 8-aligned columns");
        s.f16 = false;
        assert!(check(&s, t128, 1 << 16).is_ok(), "f32 weights load 4 columns at a time");
        let (s, _) = case(Layout::Nk, true, None, 16, 64);
        assert!(check(&s, "128x64x24w2x4s1".parse().unwrap(), 1 << 16).unwrap_err().contains("BK of 16"));
        assert!(check(&s, "128x128x32w4x2k2s1".parse().unwrap(), 1 << 16).unwrap_err().contains("512 threads"));
        assert!("128x128x32w4x4s1".parse::<CoopTile>().unwrap_err().to_string().contains("1 to 8 subgroups"));
        let huge = CoopTile { bn: usize::MAX / 2, ..t128 };
        assert!(check(&s, huge, 1 << 16).unwrap_err().contains("tile sides must be 1 to 512"));
        let e = check(&s, t128, 16384).unwrap_err();
        assert!(e.contains("bytes of workgroup memory, past this device's 16384"), "{e}");
        // x: 128 rows of 32 + 8 halves; w: 64 columns of 32 + 8 halves; 8 scratch blocks of 1 KiB.
        assert_eq!(workgroup_bytes(&s, t128), 128 * 40 * 2 + 64 * 40 * 2 + 8 * 1024);
        assert!("128x64".parse::<CoopTile>().unwrap_err().to_string().contains("BMxBNxBKwWRxWC"));
        assert_eq!("128x64x32w2x2".parse::<CoopTile>().unwrap().stages, 2);
        assert_eq!("128x64x32w2x2s1".parse::<CoopTile>().unwrap().to_string(), "128x64x32w2x2s1");
    }
}
