//! The decode GEMVs: a few rows of x against the weights, 16-byte weight loads, one kernel
//! per layout.
//!
//! - `gemv-kn` (`W [K, N]`): a thread owns one 16-byte group of adjacent columns (4 f32 or
//!   8 f16) and a share of k; adjacent threads read adjacent groups of one row of W, so each
//!   warp reads whole 128-byte lines (on small grids, fewer groups and more k-lanes per
//!   workgroup: [`GEMV_SMALL_MAX_ROWS`]). The k-lanes of a workgroup are summed by a tree in
//!   workgroup memory, or, where the device has one fixed subgroup size larger than the
//!   column groups per workgroup, by shuffles within each subgroup (its threads numbered by
//!   subgroup) and then across the subgroups: one barrier per row instead of one per halving
//!   (on an H100 the Qwen2-0.5B-sized decode step, with the row programs' reductions done the
//!   same way, went from 1492 to 1414 µs). The fused kernel with f16 weights over more than
//!   4 rows loads 8 bytes (4 columns) instead, which halves its accumulators.
//! - `gemv-nk` (`W [N, K]`): 32 lanes own one output feature (up to 128 on small grids with
//!   long rows: [`nk_lanes`]) and read its row of W along k in 16-byte loads; the lanes are
//!   summed with `subgroupAdd` where the device has subgroups of one fixed size up to 32
//!   (then across the subgroups of a feature in workgroup memory), else by a tree in
//!   workgroup memory.
//!
//! Every weight element is read once per row tile of x: 8 rows (16 in the `[N, K]` kernel
//! with subgroups, where the reduction needs no workgroup memory per row).
//!
//! Either kernel (the `[K, N]` one unsplit) may take a prologue ([`Prologue`]): the row
//! program that writes its x (a norm, with the residual addition before it), which every
//! workgroup then computes for its rows instead of the kernel reading x. Its inputs are bound
//! in x's place and its other outputs after the kernel's; every thread takes part in its row
//! reductions before the main loop (through the kernel's own workgroup array `red`), and
//! each element of x is the program's value at that index (`px_`). The `[K, N]` kernel
//! computes it as it reads the weights (one element a 16-byte load, shared by the load's
//! columns); the `[N, K]` kernel, whose lanes each need every element of x once per output
//! feature, computes its rows of x once per workgroup into workgroup memory, and takes a
//! prologue only where they fit there beside `red` ([`nk_prologue_fits`]; elsewhere the
//! norm keeps its own dispatch).

use super::{binds, epilogue, finish, kind, up_name, ProjShape, ProjValues};
use crate::elementwise::MATH;
use crate::program::Prologue;
use crate::wgsl::{subgroup, UNPACK4_F16, WORKGROUP};
use crate::{Binding, KernelSource, ProjKernel, Target};
use glufuse_ir::{Layout, Result};
use std::fmt::Write;

/// Loads 16 bytes of weight at vector index `idx` as one or two `vec4<f32>`.
fn load16(s: &ProjShape, w: &str, idx: &str) -> (String, Option<String>) {
    if s.f16 {
        let q = format!("{w}[{idx}]");
        (
            format!("vec4<f32>(unpack2x16float({q}.x), unpack2x16float({q}.y))"),
            Some(format!("vec4<f32>(unpack2x16float({q}.z), unpack2x16float({q}.w))")),
        )
    } else {
        (format!("{w}[{idx}]"), None)
    }
}

/// Sums `lanes` lanes by a tree in workgroup memory: `slots` arrays of [`WORKGROUP`] entries,
/// the entry of slot `sl` at `red[sl·WORKGROUP + lid]`, lane `l`'s `l·stride` after lane 0's
/// (the thread's lane is `lane`). Lane 0 ends with the sum.
pub(crate) fn tree_sum(body: &mut String, lanes: usize, stride: usize, slots: usize) {
    let mut step = lanes / 2;
    while step > 0 {
        let _ = writeln!(body, "    if (lane < {step}u) {{");
        for sl in 0..slots {
            let base = sl * WORKGROUP as usize;
            let _ = writeln!(
                body,
                "        red[{base}u + lid] = red[{base}u + lid] + red[{base}u + lid + {}u];",
                step * stride
            );
        }
        let _ = writeln!(body, "    }}\n    workgroupBarrier();");
        step /= 2;
    }
}

/// Fewest workgroups a `[K, N]` GEMV's grid should have: fewer leave most of a large GPU idle
/// (an H100 has 132 SMs). Qwen2-0.5B's down projection (K = 4864, N = 896, f16) has 14
/// workgroups of 64 columns and took 50 µs per decode step on an H100, 0.7 TB/s.
pub const GEMV_MIN_WORKGROUPS: usize = 128;

/// Most weight rows (of k) a thread of a `[K, N]` GEMV with fewer than 8 column groups per
/// workgroup sums. Where 8 groups of 16 bytes per workgroup give fewer than
/// [`GEMV_MIN_WORKGROUPS`], the kernel takes fewer groups (down to one: a warp then reads 16
/// bytes of 32 rows, whole 32-byte sectors between two neighbouring workgroups) and more lanes
/// along k (no more than k has rows), if each lane then sums at most this many rows; else it keeps 8 groups and is
/// split over k ([`kn_split`]). Measured on an H100 in the Qwen2-0.5B-sized f16 decode step
/// (`benches/h100-gemv-small.sh`): its K = 896 projections 14-18 → 112-144 workgroups and its
/// down projection (K = 4864: 19 rows a lane, no split and no sum kernel) took the step from
/// 1864 to 1675 µs; Llama-3-8B's down projection (K = 14336: 224 rows a lane with 4 groups)
/// was 25% slower that way, so it keeps 8 groups and its split.
pub const GEMV_SMALL_MAX_ROWS: usize = 32;

/// Fewest weight rows (of k) each part of a split-K GEMV sums: shorter parts cost more in
/// partial sums written and read than they gain.
pub const SPLIT_MIN_K: usize = 256;

/// The columns one `[K, N]` GEMV workgroup covers, with its groups of 16-byte loads per
/// workgroup, and whether it loads 8 bytes instead (fused f16 over more than 4 rows).
fn kn_tiling(s: &ProjShape) -> (usize, usize, bool) {
    let tm = s.gemv_rows(false);
    // Fused f16 over more than 4 rows: 8-byte loads of 4 columns, so that a thread keeps
    // rows × 2 vec4 accumulators; 16-byte loads (8 columns) would double that to 32 vec4 at
    // 8 rows. Measured on an H100 at 4096×14336, M=16: 304 µs fused against 252 µs unfused
    // with 16-byte loads.
    let narrow = s.f16 && s.na() == 2 && tm > 4;
    let vc = if narrow { 4 } else { s.vc() };
    // Columns per workgroup: as many as keep at least 256 workgroups busy, from 32 vectors
    // down to 8, so that a warp reads 128 contiguous bytes of each weight row. Where 8 leave
    // fewer than GEMV_MIN_WORKGROUPS, fewer groups and more lanes along k (see
    // GEMV_SMALL_MAX_ROWS).
    let row_tiles = s.rows.div_ceil(tm.max(1));
    let grid = |gpw: usize| s.n.div_ceil(gpw * vc) * row_tiles;
    let groups_per_wg = match [32usize, 16].into_iter().find(|&gpw| grid(gpw) >= 256) {
        Some(gpw) => gpw,
        None => {
            // No more lanes than k has rows (at least 32: a warp).
            let lanes_fit = |gpw: &usize| WORKGROUP as usize / gpw <= s.k.max(32);
            let fewer: Vec<usize> = [8usize, 4, 2, 1].into_iter().filter(lanes_fit).collect();
            let gpw = fewer.iter().copied().find(|&gpw| grid(gpw) >= GEMV_MIN_WORKGROUPS);
            let gpw = gpw.or(fewer.last().copied()).unwrap_or(8);
            if s.k.div_ceil(WORKGROUP as usize / gpw) <= GEMV_SMALL_MAX_ROWS {
                gpw
            } else {
                8
            }
        }
    };
    (groups_per_wg * vc, groups_per_wg, narrow)
}

/// Fewest parts a split-K GEMV has: the split costs a second dispatch (about 2 µs on an H100
/// before any work, plus the sum's), which fewer parts would not win back. Qwen2-0.5B's
/// decode GEMVs all stay whole: its down projection (K = 4864, N = 896) runs 112 workgroups
/// of one column group ([`GEMV_SMALL_MAX_ROWS`]), which would take 3 parts at most.
pub const SPLIT_MIN_PARTS: usize = 4;

/// Into how many parts of k a `[K, N]` GEMV splits (1: none), and why: where its grid has
/// fewer than [`GEMV_MIN_WORKGROUPS`] workgroups, enough parts of at least [`SPLIT_MIN_K`]
/// rows of k to reach 2 × that many, if that is at least [`SPLIT_MIN_PARTS`].
pub(crate) fn kn_split(s: &ProjShape) -> (usize, Option<String>) {
    let (cw, _, _) = kn_tiling(s);
    let grid = s.n.div_ceil(cw) * s.rows.div_ceil(s.gemv_rows(false));
    if grid >= GEMV_MIN_WORKGROUPS {
        return (1, None);
    }
    let split = (2 * GEMV_MIN_WORKGROUPS).div_ceil(grid).min(s.k / SPLIT_MIN_K);
    if split < SPLIT_MIN_PARTS {
        return (1, None);
    }
    let why = format!(
        "split K={} in {split}: {grid} workgroups of {cw} columns < {GEMV_MIN_WORKGROUPS}, {} with the split",
        s.k,
        grid * split
    );
    (split, Some(why))
}

/// Decode GEMV, `[K, N]` weights, over k in `split` parts: 1 writes the output; more write
/// f32 partial sums to the shared scratch buffer (`part`, after the bindings: for
/// accumulator a, part p, row r, column c at `((a·split + p)·M + r)·N + c`) for
/// [`split_sum`] to add up and finish.
///
/// With a prologue (`pro`, never with a split), x is not read: the kernel computes the row
/// program that would have written it ([`Prologue`]).
pub(crate) fn gemv_kn(
    name: String,
    s: &ProjShape,
    v: &ProjValues,
    t: &Target,
    split: usize,
    pro: Option<&Prologue>,
) -> Result<KernelSource> {
    debug_assert!(split == 1 || pro.is_none(), "a split GEMV takes no prologue");
    let (na, tm) = (s.na(), s.gemv_rows(false));
    let (cw, groups_per_wg, narrow) = kn_tiling(s);
    let vc = if narrow { 4 } else { s.vc() };
    let load = |w: &str, idx: &str| {
        if narrow {
            (format!("unpack4_f16_({w}[{idx}])"), None)
        } else {
            load16(s, w, idx)
        }
    };
    let (go, uo) = s.offsets();
    let lanes = WORKGROUP as usize / groups_per_wg;
    let w_elem = match (s.f16, narrow) {
        (true, true) => "vec2<u32>",
        (true, false) => "vec4<u32>",
        _ => "vec4<f32>",
    };
    let mut b = binds(s, v, "f32", w_elem);
    if split > 1 {
        // The partial sums go to the scratch buffer, not to the output.
        b.decls.pop();
        b.bindings.pop();
        b.scratch("part", true, "f32");
    }
    if let Some(p) = pro {
        prologue_binds(&mut b, p);
    }
    let row_vec = s.n_total / vc; // vectors per weight row
    let mut body = String::new();
    // With subgroups, the threads are numbered by subgroup (as in [`gemv_nk`]), so that the
    // k-lanes of a column group that share a subgroup are summed there by shuffles.
    let sgz = subgroup(t);
    let sg = sgz.filter(|&z| groups_per_wg < z);
    if sgz.is_some() {
        // (The prologue's reductions use them too.)
        b.builtins = ", @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32".into();
    }
    let me = match sg {
        Some(z) => {
            let _ = writeln!(body, "    let vid = sg_id * {z}u + sg_lane;");
            "vid"
        }
        None => "lid",
    };
    let _ = writeln!(body, "    let g = {me} % {groups_per_wg}u;\n    let lane = {me} / {groups_per_wg}u;\n    let col = wg.x * {cw}u + g * {vc}u;\n    let live = col < {}u;", s.n);
    // This workgroup's rows of k: `kbeg..kend` (all of k without a split).
    let chunk = s.k.div_ceil(split);
    let (k0, kend) = if split > 1 {
        let _ = writeln!(body, "    let part_k = wg.y % {split}u;\n    let row0 = (wg.y / {split}u) * {tm}u;\n    let kbeg = part_k * {chunk}u;\n    let kend = min(kbeg + {chunk}u, {}u);", s.k);
        ("kbeg + lane".to_string(), "kend".to_string())
    } else {
        let _ = writeln!(body, "    let row0 = wg.y * {tm}u;");
        ("lane".to_string(), format!("{}u", s.k))
    };
    if let Some(p) = pro {
        body.push_str(&p.code(tm));
    }
    for r in 0..tm {
        let _ = writeln!(body, "    let xr{r} = min(row0 + {r}u, {}u) * {}u;", s.rows - 1, s.k);
    }
    let halves = if s.f16 && !narrow { 2 } else { 1 };
    for r in 0..tm {
        for a in 0..na {
            for h in 0..halves {
                let _ = writeln!(body, "    var acc{r}_{a}_{h} = vec4<f32>(0.0);");
            }
        }
    }
    let _ = writeln!(body, "    if (live) {{");
    // Two weight rows per iteration, so each thread has twice the loads in flight.
    let step = |body: &mut String, k: &str, sfx: &str| {
        let (g0, g1) = load("w_gate", &format!("({k}) * {row_vec}u + (col + {go}u) / {vc}u"));
        let _ = writeln!(body, "            let wg0{sfx} = {g0};");
        if let Some(g1) = &g1 {
            let _ = writeln!(body, "            let wg1{sfx} = {g1};");
        }
        if na == 2 {
            let (u0, u1) = load(up_name(s), &format!("({k}) * {row_vec}u + (col + {uo}u) / {vc}u"));
            let _ = writeln!(body, "            let wu0{sfx} = {u0};");
            if let Some(u1) = &u1 {
                let _ = writeln!(body, "            let wu1{sfx} = {u1};");
            }
        }
        for r in 0..tm {
            let xv = match pro {
                Some(p) => p.x_at(r, &format!("xr{r} + {k}")),
                None => format!("x[xr{r} + {k}]"),
            };
            let _ = writeln!(body, "            let x{r}{sfx} = vec4<f32>({xv});");
            for h in 0..halves {
                let _ = writeln!(body, "            acc{r}_0_{h} = fma(x{r}{sfx}, wg{h}{sfx}, acc{r}_0_{h});");
                if na == 2 {
                    let _ = writeln!(body, "            acc{r}_1_{h} = fma(x{r}{sfx}, wu{h}{sfx}, acc{r}_1_{h});");
                }
            }
        }
    };
    let _ = writeln!(body, "        var k = {k0};");
    let _ = writeln!(body, "        for (; k + {lanes}u < {kend}; k = k + {}u) {{", 2 * lanes);
    step(&mut body, "k", "a");
    step(&mut body, &format!("k + {lanes}u"), "b");
    let _ = writeln!(body, "        }}\n        if (k < {kend}) {{");
    step(&mut body, "k", "c");
    let _ = writeln!(body, "        }}\n    }}");
    // Per row: every accumulator into workgroup memory, tree over the lanes, epilogue.
    let slots = na * halves;
    // The sum of slot `sl` (accumulator a, half h at a·halves + h), where lane == 0.
    let total = |sl: usize| -> String {
        let base = sl * WORKGROUP as usize;
        match sg {
            Some(z) => {
                let terms: Vec<String> =
                    (0..WORKGROUP as usize / z).map(|p| format!("red[{}u + g]", base + p * groups_per_wg)).collect();
                terms.join(" + ")
            }
            None => format!("red[{base}u + lid]"),
        }
    };
    for r in 0..tm {
        match sg {
            Some(z) => {
                // Shuffles over the lanes of each column group in the subgroup, then each
                // subgroup's sums (one per group) into workgroup memory.
                let mut m = groups_per_wg;
                while m < z {
                    for a in 0..na {
                        for h in 0..halves {
                            let acc = format!("acc{r}_{a}_{h}");
                            let _ = writeln!(body, "    {acc} = {acc} + subgroupShuffleXor({acc}, {m}u);");
                        }
                    }
                    m *= 2;
                }
                let _ = writeln!(body, "    if (sg_lane < {groups_per_wg}u) {{");
                for a in 0..na {
                    for h in 0..halves {
                        let base = (a * halves + h) * WORKGROUP as usize;
                        let _ = writeln!(
                            body,
                            "        red[{base}u + sg_id * {groups_per_wg}u + sg_lane] = acc{r}_{a}_{h};"
                        );
                    }
                }
                let _ = writeln!(body, "    }}\n    workgroupBarrier();");
            }
            None => {
                for a in 0..na {
                    for h in 0..halves {
                        let _ = writeln!(
                            body,
                            "    red[{}u + lid] = acc{r}_{a}_{h};",
                            (a * halves + h) * WORKGROUP as usize
                        );
                    }
                }
                let _ = writeln!(body, "    workgroupBarrier();");
                tree_sum(&mut body, lanes, groups_per_wg, slots);
            }
        }
        let _ = writeln!(body, "    if (lane == 0u && live && row0 + {r}u < {}u) {{", s.rows);
        for h in 0..halves {
            let _ = writeln!(body, "        let sg{h} = {};", total(h));
            if na == 2 {
                let _ = writeln!(body, "        let su{h} = {};", total(halves + h));
            }
        }
        for j in 0..vc {
            let (h, c) = (j / 4, ["x", "y", "z", "w"][j % 4]);
            if split > 1 {
                let at = |a: usize| {
                    format!("(({}u + part_k) * {}u + row0 + {r}u) * {}u + col + {j}u", a * split, s.rows, s.n)
                };
                let _ = writeln!(body, "        part[{}] = sg{h}.{c};", at(0));
                if na == 2 {
                    let _ = writeln!(body, "        part[{}] = su{h}.{c};", at(1));
                }
                continue;
            }
            let e = epilogue(s, v, &format!("sg{h}.{c}"), &format!("su{h}.{c}"), &format!("col + {j}u"));
            let _ = writeln!(body, "        out0[(row0 + {r}u) * {}u + col + {j}u] = {e};", s.n);
        }
        let _ = writeln!(body, "    }}\n    workgroupBarrier();");
    }
    let mut prelude = format!("{MATH}\nvar<workgroup> red: array<vec4<f32>, {}>;\n", slots * WORKGROUP as usize);
    if narrow {
        prelude.push_str(UNPACK4_F16);
    }
    if let Some(p) = pro {
        prelude.push_str(&prologue_funcs(p, &body));
    }
    let kind = kind(s, ProjKernel::Gemv(Layout::Kn));
    let grid = [s.n.div_ceil(cw) as u64, (s.rows.div_ceil(tm) * split) as u64];
    let mut k = finish(name, kind, &b, &prelude, &body, grid, WORKGROUP, t)?;
    if split > 1 {
        k.scratch_bytes = split_scratch_bytes(s, split);
    }
    Ok(k)
}

/// A prologue's bindings in a GEMV's: the program's inputs (`in0`, ..) instead of x, its
/// other outputs (`pout0`, ..) after the GEMV's own.
fn prologue_binds(b: &mut super::Binds, p: &Prologue) {
    b.decls.remove(0);
    b.bindings.remove(0);
    for (k, &iv) in p.ins.iter().enumerate().rev() {
        b.decls.insert(0, (format!("in{k}"), false, p.in_elem[k].clone()));
        b.bindings.insert(0, Binding { value: iv, write: false, packed_f16: p.in_packed[k] });
    }
    for (k, &ov) in p.also.iter().enumerate() {
        b.decls.push((format!("pout{k}"), true, p.also_elem[k].clone()));
        b.bindings.push(Binding { value: ov, write: true, packed_f16: false });
    }
}

/// The functions a GEMV whose body is `body` needs for its prologue `p`: `px_`, and the
/// helpers the program calls that [`MATH`] does not define.
fn prologue_funcs(p: &Prologue, body: &str) -> String {
    let helpers = crate::elementwise::helpers_beyond_math(&format!("{}{body}", p.funcs));
    format!("{}{helpers}", p.funcs)
}

/// Workgroups along x of the split sum's grid (its y covers the rest).
const SUM_ROW: usize = 4096;

/// Bytes of partial sums a GEMV split in `split` parts writes.
pub(crate) fn split_scratch_bytes(s: &ProjShape, split: usize) -> u64 {
    (s.na() * split * s.rows * s.n * 4) as u64
}

/// The second pass of a split-K GEMV ([`gemv_kn`] with `split` > 1): one thread per output
/// element adds up its `split` partial sums (per accumulator) and applies the epilogue
/// (biases, activation, product).
pub(crate) fn split_sum(name: String, s: &ProjShape, v: &ProjValues, t: &Target, split: usize) -> Result<KernelSource> {
    let mut b = super::Binds { directives: String::new(), decls: vec![], bindings: vec![], builtins: String::new() };
    if let Some((g, p)) = &v.b_gate {
        b.push("b_gate", false, if *p { "u32" } else { "f32" }, *g, *p);
    }
    if let Some((u, p)) = &v.b_up {
        b.push("b_up", false, if *p { "u32" } else { "f32" }, *u, *p);
    }
    b.push("out0", true, "f32", v.out, false);
    b.scratch("part", false, "f32");
    let total = s.rows * s.n;
    let per_acc = split * total;
    let mut body = String::new();
    let _ = writeln!(body, "    let i = wg.y * {}u + wg.x * {WORKGROUP}u + lid;", SUM_ROW * WORKGROUP as usize);
    let _ = writeln!(body, "    if (i >= {total}u) {{ return; }}\n    let col = i % {}u;", s.n);
    for a in 0..s.na() {
        let _ = writeln!(body, "    var s{a} = 0.0;");
        let _ = writeln!(
            body,
            "    for (var p = 0u; p < {split}u; p = p + 1u) {{ s{a} = s{a} + part[{}u + p * {total}u + i]; }}",
            a * per_acc
        );
    }
    let u = if s.na() == 2 { "s1" } else { "0.0" };
    let _ = writeln!(body, "    out0[i] = {};", epilogue(s, v, "s0", u, "col"));
    let groups = total.div_ceil(WORKGROUP as usize);
    let grid = [groups.min(SUM_ROW) as u64, groups.div_ceil(SUM_ROW) as u64];
    let kind = kind(s, ProjKernel::SplitSum);
    let mut k = finish(name, kind, &b, &format!("{MATH}\n"), &body, grid, WORKGROUP, t)?;
    k.scratch_bytes = split_scratch_bytes(s, split);
    Ok(k)
}

/// Fewest 16-byte loads of its row each lane of a `[N, K]` GEMV keeps when [`nk_lanes`]
/// gives an output feature more lanes.
pub const NK_MIN_LOADS: usize = 4;

/// Lanes per output feature of the `[N, K]` GEMV: 32 (a warp), doubled (up to 128) while its
/// grid has fewer than 2 × [`GEMV_MIN_WORKGROUPS`] workgroups and each lane still loads at
/// least [`NK_MIN_LOADS`] vectors. Measured on an H100 in 24 layers of Qwen2-0.5B-sized f16
/// FFNs with `[N, K]` weights (`glufuse synth --layout nk`): the down projection (K = 4864,
/// N = 896: 19 loads a lane at 32 lanes, 112 workgroups) took 18.1 µs per dispatch
/// (timestamped) with 32 lanes, 14.3 with 64 and 12.8 with 128
/// (`benches/results/h100-2026-11-26e-down-nk.md`).
fn nk_lanes(s: &ProjShape) -> usize {
    let kv = s.k / s.vc();
    let grid = |lp: usize| s.n.div_ceil(WORKGROUP as usize / lp);
    let mut lp = 32;
    while lp < 128 && grid(lp) < 2 * GEMV_MIN_WORKGROUPS && kv >= 2 * lp * NK_MIN_LOADS {
        lp *= 2;
    }
    lp
}

/// The f32 of workgroup memory (`red`) an `[N, K]` GEMV over `tm` rows with `lp` lanes an
/// output takes: a value per subgroup and sum where an output's lanes span several
/// subgroups, one per thread and sum for the tree (none where a subgroup is an output's
/// lanes); at least one per thread with a prologue (its row reductions).
fn nk_red_len(s: &ProjShape, t: &Target, tm: usize, lp: usize, pro: bool) -> usize {
    let slots = tm * s.na();
    let len = match subgroup(t) {
        Some(z) if lp / z == 1 => 0,
        Some(z) => slots * (WORKGROUP as usize / z),
        None => slots * WORKGROUP as usize,
    };
    if pro {
        len.max(WORKGROUP as usize)
    } else {
        len
    }
}

/// Whether an `[N, K]` GEMV can compute the row program before it (a norm) in its prologue:
/// its rows of x, computed once per workgroup into workgroup memory (`xs`: `tm` rows of `k`
/// f32) before the main loop, fit there beside its `red`. Computing x in the main loop
/// instead (8 evaluations of the program per 16-byte load of f16 weights, each output
/// feature's lanes evaluating every element) made the Qwen2-0.5B-sized f16 decode step on an
/// H100 1637 µs against 1127 staged (`benches/results/h100-2026-11-26f-nk.md`): slower than
/// the norm's own dispatch, which a GEMV that does not fit keeps.
///
/// Nor where its grid has more than [`NK_PROLOGUE_MAX_WORKGROUPS`] workgroups, each of which
/// would compute the rows of x.
pub(crate) fn nk_prologue_fits(s: &ProjShape, t: &Target) -> bool {
    let tm = s.gemv_rows(subgroup(t).is_some());
    let lp = nk_lanes(s);
    let [x, y] = nk_grid(s, tm, lp);
    x * y <= NK_PROLOGUE_MAX_WORKGROUPS as u64
        && (tm * s.k + nk_red_len(s, t, tm, lp, true)) * 4 <= t.max_workgroup_storage_bytes as usize
}

/// The grid of an `[N, K]` GEMV over tiles of `tm` rows with `lp` lanes an output: output
/// features along x, row tiles along y.
fn nk_grid(s: &ProjShape, tm: usize, lp: usize) -> [u64; 2] {
    [s.n.div_ceil(WORKGROUP as usize / lp) as u64, s.rows.div_ceil(tm) as u64]
}

/// Most workgroups an `[N, K]` GEMV computing the norm before it has: every workgroup
/// computes the norm of its rows of x, which a grid of thousands repeats more often than a
/// dispatch of its own costs. The Qwen2-0.5B-sized LM head (N = 151936, K = 896, 18992
/// workgroups) took 129 µs a call with the final norm folded in against 97 without (H100,
/// timestamped, `benches/results/h100-2026-11-26f-nk.md`); its gate/up (608 workgroups)
/// and q/k/v (144) fold.
pub const NK_PROLOGUE_MAX_WORKGROUPS: usize = 4096;

/// Decode GEMV, `[N, K]` weights: 32 lanes or more per output feature ([`nk_lanes`]).
///
/// With subgroups the threads are numbered by subgroup (`vid = subgroup_id · size +
/// subgroup_invocation_id`), so the lanes of an output fill whole subgroups whatever order the
/// device forms them in, and each subgroup sums its lanes with `subgroupAdd`: at size 32 that is
/// the whole reduction, at smaller sizes the 32/size partial sums meet in workgroup memory.
/// Without, the lanes are summed by a tree in workgroup memory.
///
/// With a prologue (`pro`; only where [`nk_prologue_fits`]), x is not read: every thread of
/// the workgroup first takes part in the row program's reductions ([`Prologue`]; through
/// this kernel's `red`, f32, at least [`WORKGROUP`] entries), then computes x's elements as
/// the program's values there into workgroup memory, once per workgroup, which the main loop
/// reads.
pub(crate) fn gemv_nk(
    name: String,
    s: &ProjShape,
    v: &ProjValues,
    t: &Target,
    pro: Option<&Prologue>,
) -> Result<KernelSource> {
    let sg = subgroup(t);
    let (na, vc) = (s.na(), s.vc());
    let tm = s.gemv_rows(sg.is_some());
    let (go, uo) = s.offsets();
    let lp = nk_lanes(s);
    let per_wg = WORKGROUP as usize / lp;
    let w_elem = if s.f16 { "vec4<u32>" } else { "vec4<f32>" };
    let mut b = binds(s, v, "vec4<f32>", w_elem);
    if let Some(p) = pro {
        prologue_binds(&mut b, p);
    }
    if sg.is_some() {
        b.builtins = ", @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32".into();
    }
    let slots = tm * na;
    let parts = sg.map(|z| lp / z);
    let red_len = nk_red_len(s, t, tm, lp, pro.is_some());
    if pro.is_some() && !nk_prologue_fits(s, t) {
        return Err(glufuse_ir::Error::Internal(format!(
            "{name}: the [N, K] GEMV's x does not fit its workgroup memory for a prologue (a glufuse bug)"
        )));
    }
    let kv = s.k / vc; // weight vectors per row
    let xv = s.k / 4; // x vectors per row
    let me = if sg.is_some() { "vid" } else { "lid" };
    let mut body = String::new();
    if let Some(z) = sg {
        let _ = writeln!(body, "    let vid = sg_id * {z}u + sg_lane;");
    }
    let _ = writeln!(body, "    let lane = {me} % {lp}u;\n    let col = wg.x * {per_wg}u + {me} / {lp}u;\n    let live = col < {}u;\n    let row0 = wg.y * {tm}u;", s.n);
    // Before anything that diverges: the prologue has barriers.
    if let Some(p) = pro {
        body.push_str(&p.code(tm));
    }
    // Where row r of x starts: in vec4 of x, or in elements of the prologue's program.
    let row_len = if pro.is_some() { s.k } else { xv };
    for r in 0..tm {
        let _ = writeln!(body, "    let xr{r} = min(row0 + {r}u, {}u) * {row_len}u;", s.rows - 1);
    }
    // With a prologue, its rows of x into workgroup memory (`xs`, row r from vec4 r·K/4),
    // four elements of the program a vec4, before the main loop reads them there.
    if let Some(p) = pro {
        let four = |r: usize, e: &str| -> String {
            let at: Vec<String> =
                (0..4).map(|j| p.x_at(r, &if j == 0 { e.to_string() } else { format!("{e} + {j}u") })).collect();
            format!("vec4<f32>({})", at.join(", "))
        };
        for r in 0..tm {
            let _ = writeln!(
                body,
                "    for (var j = lid; j < {xv}u; j = j + {WORKGROUP}u) {{\n        let e = xr{r} + j * 4u;\n        xs[{}u + j] = {};\n    }}",
                r * xv,
                four(r, "e")
            );
        }
        let _ = writeln!(body, "    workgroupBarrier();");
    }
    for r in 0..tm {
        for a in 0..na {
            let _ = writeln!(body, "    var acc{r}_{a} = 0.0;");
        }
    }
    let _ = writeln!(body, "    if (live) {{\n        for (var k = lane; k < {kv}u; k = k + {lp}u) {{");
    let (g0, g1) = load16(s, "w_gate", &format!("(col + {go}u) * {kv}u + k"));
    let _ = writeln!(body, "            let wg0 = {g0};");
    if let Some(g1) = &g1 {
        let _ = writeln!(body, "            let wg1 = {g1};");
    }
    if na == 2 {
        let (u0, u1) = load16(s, up_name(s), &format!("(col + {uo}u) * {kv}u + k"));
        let _ = writeln!(body, "            let wu0 = {u0};");
        if let Some(u1) = &u1 {
            let _ = writeln!(body, "            let wu1 = {u1};");
        }
    }
    for r in 0..tm {
        // The x vectors against the first 4 and (f16) the next 4 k of the weight load.
        let (xa, xb) = match (pro.is_some(), s.f16) {
            (true, true) => (format!("xs[{}u + k * 2u]", r * xv), format!("xs[{}u + k * 2u + 1u]", r * xv)),
            (true, false) => (format!("xs[{}u + k]", r * xv), String::new()),
            (false, true) => (format!("x[xr{r} + k * 2u]"), format!("x[xr{r} + k * 2u + 1u]")),
            (false, false) => (format!("x[xr{r} + k]"), String::new()),
        };
        if s.f16 {
            let _ = writeln!(body, "            let xa{r} = {xa};\n            let xb{r} = {xb};");
            let _ = writeln!(body, "            acc{r}_0 = acc{r}_0 + dot(xa{r}, wg0) + dot(xb{r}, wg1);");
            if na == 2 {
                let _ = writeln!(body, "            acc{r}_1 = acc{r}_1 + dot(xa{r}, wu0) + dot(xb{r}, wu1);");
            }
        } else {
            let _ = writeln!(body, "            let x{r} = {xa};");
            let _ = writeln!(body, "            acc{r}_0 = acc{r}_0 + dot(x{r}, wg0);");
            if na == 2 {
                let _ = writeln!(body, "            acc{r}_1 = acc{r}_1 + dot(x{r}, wu0);");
            }
        }
    }
    let _ = writeln!(body, "        }}\n    }}");
    // The sums of row r, accumulator a, as WGSL expressions valid where lane == 0.
    let mut sums: Vec<String> = vec![];
    match (sg, parts) {
        (Some(z), Some(parts)) => {
            let subgroups = WORKGROUP as usize / z;
            for sl in 0..slots {
                let (r, a) = (sl / na, sl % na);
                let _ = writeln!(body, "    let sum{sl} = subgroupAdd(acc{r}_{a});");
            }
            if parts == 1 {
                let _ = writeln!(body, "    if (sg_lane != 0u || !live) {{ return; }}");
                sums.extend((0..slots).map(|sl| format!("sum{sl}")));
            } else {
                let _ = writeln!(body, "    if (sg_lane == 0u) {{");
                for sl in 0..slots {
                    let _ = writeln!(body, "        red[{}u + sg_id] = sum{sl};", sl * subgroups);
                }
                let _ = writeln!(body, "    }}\n    workgroupBarrier();\n    if (lane != 0u || !live) {{ return; }}");
                for sl in 0..slots {
                    let terms: Vec<String> =
                        (0..parts).map(|p| format!("red[{}u + sg_id + {p}u]", sl * subgroups)).collect();
                    sums.push(format!("({})", terms.join(" + ")));
                }
            }
        }
        _ => {
            for r in 0..tm {
                for a in 0..na {
                    let _ = writeln!(body, "    red[{}u + lid] = acc{r}_{a};", (r * na + a) * WORKGROUP as usize);
                }
            }
            let _ = writeln!(body, "    workgroupBarrier();");
            tree_sum(&mut body, lp, 1, slots);
            let _ = writeln!(body, "    if (lane != 0u || !live) {{ return; }}");
            sums.extend((0..slots).map(|sl| format!("red[{}u + lid]", sl * WORKGROUP as usize)));
        }
    }
    for r in 0..tm {
        let g = &sums[r * na];
        let u = if na == 2 { sums[r * na + 1].clone() } else { "0.0".into() };
        let _ = writeln!(
            body,
            "    if (row0 + {r}u < {}u) {{ out0[(row0 + {r}u) * {}u + col] = {}; }}",
            s.rows,
            s.n,
            epilogue(s, v, g, &u, "col")
        );
    }
    let mut prelude = format!("{MATH}\n");
    if red_len > 0 {
        let _ = writeln!(prelude, "var<workgroup> red: array<f32, {red_len}>;");
    }
    if let Some(p) = pro {
        let _ = writeln!(prelude, "var<workgroup> xs: array<vec4<f32>, {}>;", tm * xv);
        prelude.push_str(&prologue_funcs(p, &body));
    }
    let kind = kind(s, ProjKernel::Gemv(Layout::Nk));
    finish(name, kind, &b, &prelude, &body, nk_grid(s, tm, lp), WORKGROUP, t)
}
