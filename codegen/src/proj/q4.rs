//! Projections through 4-bit weights ([`QuantWeight`]): what the GPU holds for one, and the
//! kernels that read it packed.
//!
//! # What is uploaded
//!
//! Codegen decides the bytes ([`upload_words`]); the runtime uploads what it is given. Every
//! weight, however the model packed it, becomes one buffer in the layout the kernels read
//! best ([`Q4Layout`]), `[N, K]`-major whatever its graph layout (blocks run along k, the
//! reduced dim, in both ONNX spellings):
//!
//! - the elements: per output feature n, `chunks = ceil(K/32)` 16-byte chunks of 32 elements
//!   (`vec4<u32>`, k ascending, 8 per word), as unsigned nibbles (a signed element `v` is
//!   stored `v + 8`, its zero point too, so that `(q - zp)` is unchanged), interleaved in
//!   each word: nibble j (bits 4j..) holds element `2j` for j < 4 and `2(j-4) + 1` after, so
//!   that one mask picks a pair of consecutive elements into the two halves of a word (the
//!   f16 unpacking) and four masks of the low half pick elements 0, 2, 4, 6 in place (the
//!   f32 one). Elements past K are the block's zero point: they dequantize to 0;
//! - the scales, f32 words or f16 pairs, `nbp = ceil(32·chunks / block)` per output feature
//!   (blocks past the last real one have scale 0);
//! - the zero points, 8 per word, when the model gives any; none means 8 for every block.
//!
//! The kernels bind the one buffer twice, as `array<vec4<u32>>` (the elements) and as
//! `array<u32>` (scales and zero points): two read-only views of one buffer.
//!
//! # Kernels
//!
//! - `gemv_q4`, the decode GEMV (few rows): workgroups of 4 groups of 32 lanes
//!   ([`GEMV_THREADS`]), each group `r` output features, each lane reading 16-byte chunks (32
//!   elements, one block of 32 or two of 16) of the gate and up weights of those features, the
//!   chunk's scale and zero point once, dequantizing in registers (`(q - zp)` exactly, times
//!   the scale after the chunk's dot product), f32 sums. The chunk is worked word-major: x's 8
//!   elements of word `wi`, then word `wi` of every weight chunk, so that only a word's worth
//!   of x is live beside the weights (on an H100 this took Llama-3-8B gate/up from 41.5 to
//!   37.5 µs; the chunk-major order held all 32 of x). The fused kernel (gate and up) sums
//!   each word into the partial sum as a chain of 8 `fma`, and addresses a group's features
//!   as one clamped base plus constants where N is a multiple of `r`; the single-weight
//!   kernel keeps `p + dot + dot` and a clamp per feature (on an H100 the two together took
//!   the fused Llama-3-8B gate/up from 34.8 to 33.0 µs, but the unfused graph's two
//!   single-weight GEMVs from 50.9 to 51.7). The lanes are summed by `subgroupAdd` or a
//!   tree in workgroup memory; bias, activation and product in the epilogue
//!   (`super::epilogue`, as every projection kernel).
//! - `gemm_q4`, the prefill GEMM where there are no cooperative matrices: 32 rows × 32
//!   output features per workgroup, k by chunks of 32, the weight chunk dequantized into
//!   workgroup memory as f32, f32 math.
//! - Prefill on cooperative matrices: [`super::coop`] stages the chunks the same way,
//!   dequantized to f16 in workgroup memory.

use super::Binds;
use super::{epilogue, finish, kind, ProjShape, ProjValues};
use crate::elementwise::MATH;
use crate::wgsl::WORKGROUP;
use crate::{KernelSource, ProjKernel, Target};
use glufuse_ir::{DType, Error, QuantWeight, Result};
use std::fmt::Write;

/// Elements per chunk (one 16-byte load).
pub const CHUNK: usize = 32;

/// How the elements are unpacked to floats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Q4Unpack {
    /// Each nibble ORed into the mantissa of 2^23 and 2^23 + zero point subtracted: no
    /// integer-to-float conversion (which NVIDIA GPUs issue at a quarter of the FMA rate).
    #[default]
    Magic,
    /// Shift, mask, convert to f32, subtract the zero point.
    Convert,
}

impl std::str::FromStr for Q4Unpack {
    type Err = Error;
    fn from_str(s: &str) -> Result<Q4Unpack> {
        match s {
            "magic" => Ok(Q4Unpack::Magic),
            "convert" => Ok(Q4Unpack::Convert),
            _ => Err(Error::input(format!("4-bit unpacking {s:?} is neither magic nor convert"))),
        }
    }
}

impl std::fmt::Display for Q4Unpack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Q4Unpack::Magic => "magic",
            Q4Unpack::Convert => "convert",
        })
    }
}

/// A projection's 4-bit weights, as the kernels need to know them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Q4 {
    /// Elements per block along k.
    pub block: usize,
    /// The scales are f16 (else f32).
    pub scale_f16: bool,
    /// Whether the gate (or only) weight and the up weight have zero points.
    pub zp: [bool; 2],
}

/// Where everything lies in an uploaded 4-bit weight (see the module documentation), in
/// 32-bit words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Q4Layout {
    /// Output features.
    pub n: usize,
    /// The reduced dim.
    pub k: usize,
    /// 32-element chunks per feature.
    pub chunks: usize,
    /// Elements per block.
    pub block: usize,
    /// Scales (and zero points) per feature, padded to whole chunks.
    pub nbp: usize,
    /// f16 scales, two per word.
    pub scale_f16: bool,
    /// Zero points present.
    pub zp: bool,
    /// First word of the scales.
    pub scales_at: usize,
    /// First word of the zero points.
    pub zps_at: usize,
    /// Words in all.
    pub words: usize,
}

impl Q4Layout {
    /// The layout of an `[n, k]` weight in blocks of `block`; an error if its size overflows.
    pub fn new(n: usize, k: usize, block: usize, scale_f16: bool, zp: bool) -> Result<Q4Layout> {
        let big = || Error::Gpu(format!("a 4-bit weight of {n}×{k} is too large to address"));
        let chunks = k.div_ceil(CHUNK);
        let nbp = (chunks * CHUNK).div_ceil(block.max(1));
        let scales_at = n.checked_mul(chunks * 4).ok_or_else(big)?;
        let count = n.checked_mul(nbp).ok_or_else(big)?;
        let scale_words = if scale_f16 { count.div_ceil(2) } else { count };
        let zps_at = scales_at.checked_add(scale_words).ok_or_else(big)?.next_multiple_of(4);
        let zp_words = if zp { count.div_ceil(8) } else { 0 };
        let words = zps_at.checked_add(zp_words).ok_or_else(big)?.next_multiple_of(4).max(4);
        Ok(Q4Layout { n, k, chunks, block, nbp, scale_f16, zp, scales_at, zps_at, words })
    }

    /// The layout of a graph's quantized weight of shape `[rows, cols]` and scale type
    /// `dtype`: blocks run along k, so `axis` 0 is `[K, N]`, 1 is `[N, K]`.
    pub fn of(q: &QuantWeight, rows: usize, cols: usize, dtype: DType) -> Result<Q4Layout> {
        let (n, k) = if q.axis == 0 { (cols, rows) } else { (rows, cols) };
        Q4Layout::new(n, k, q.block as usize, dtype == DType::F16, q.zero_points.is_some())
    }

    /// Bytes on the GPU.
    pub fn bytes(&self) -> u64 {
        self.words as u64 * 4
    }
}

/// The words a quantized weight of shape `[rows, cols]` (scales of `dtype`) is uploaded as
/// (see the module documentation).
pub fn upload_words(q: &QuantWeight, rows: usize, cols: usize, dtype: DType) -> Result<Vec<u32>> {
    q.check(rows as u64, cols as u64).map_err(|m| Error::Internal(format!("an unchecked 4-bit weight: {m}")))?;
    let l = Q4Layout::of(q, rows, cols, dtype)?;
    let mut w = vec![0u32; l.words];
    let kn = q.axis == 0;
    let blocks = l.k.div_ceil(l.block);
    // The graph's scale (and zero point) index of block b of feature n.
    let src = |n: usize, b: usize| if kn { b * cols + n } else { n * blocks + b };
    let unsigned_zp = |i: usize| (q.zero_point(i) + if q.signed { 8 } else { 0 }) as u32;
    for n in 0..l.n {
        let row = n * l.chunks * 4;
        for kk in 0..l.chunks * CHUNK {
            let b = kk / l.block;
            let nib = if kk < l.k {
                let (r, c) = if kn { (kk, n) } else { (n, kk) };
                let raw = q.nibble(r as u64, c as u64) as u32;
                if q.signed {
                    raw ^ 8
                } else {
                    raw
                }
            } else if b < blocks {
                unsigned_zp(src(n, b))
            } else {
                8
            };
            // Element e of a word sits in nibble e/2 (even e) or 4 + e/2 (odd e).
            let e = kk % 8;
            let slot = if e % 2 == 0 { e / 2 } else { 4 + e / 2 };
            w[row + kk / 8] |= nib << (4 * slot);
        }
        for b in 0..l.nbp {
            let i = n * l.nbp + b;
            let s = if b < blocks { q.scales[src(n, b)] } else { 0.0 };
            if l.scale_f16 {
                let h = half::f16::from_f32(s).to_bits() as u32;
                w[l.scales_at + i / 2] |= h << (16 * (i % 2));
            } else {
                w[l.scales_at + i] = s.to_bits();
            }
            if l.zp {
                let z = if b < blocks { unsigned_zp(src(n, b)) } else { 8 };
                w[l.zps_at + i / 8] |= z << (4 * (i % 8));
            }
        }
    }
    Ok(w)
}

/// The WGSL a kernel reading 4-bit weights needs (elements interleaved in each word: see
/// the module documentation):
///
/// - `q4lo(w, zc)` / `q4hi(w, zc)`: elements 0, 2, 4, 6 / 1, 3, 5, 7 of word `w`, less `zc`.
///   Under [`Q4Unpack::Magic`] each of the four lanes is masked in place (no shift: nibble j
///   of the low half lies at bits 4j) and ORed into the mantissa of 2^23, so lane j holds
///   `2^23 + q·16^j` exactly; `zc = 2^23 + zp·16^j` (`q4zc`) leaves `(q - zp)·16^j` exactly,
///   and x (or the scale) is multiplied by `Q4X` = 16^-j to match (exact: powers of two).
///   Under [`Q4Unpack::Convert`] the nibbles are shifted down and converted, `Q4X` is 1 and
///   `zc` the zero point;
/// - per weight binding `p` (`wp_gate`, `wp_up`): `{p}_s(i)`, scale i, and `{p}_z(i)`, its
///   zero point (8 when the weight has none).
pub(crate) fn functions(q: &Q4, l: &Q4Layout, views: &[&str], unpack: Q4Unpack) -> String {
    let mut s = String::new();
    match unpack {
        Q4Unpack::Magic => s.push_str(
            "const Q4X = vec4<f32>(1.0, 0.0625, 0.00390625, 0.000244140625);\n\
             fn q4lo(w: u32, zc: vec4<f32>) -> vec4<f32> { return bitcast<vec4<f32>>((vec4<u32>(w) & vec4<u32>(0xFu, 0xF0u, 0xF00u, 0xF000u)) | vec4<u32>(0x4B000000u)) - zc; }\n\
             fn q4hi(w: u32, zc: vec4<f32>) -> vec4<f32> { return q4lo(w >> 16u, zc); }\n\
             fn q4zc(z: f32) -> vec4<f32> { return vec4<f32>(8388608.0) + z * vec4<f32>(1.0, 16.0, 256.0, 4096.0); }\n",
        ),
        Q4Unpack::Convert => s.push_str(
            "const Q4X = vec4<f32>(1.0);\n\
             fn q4lo(w: u32, zc: vec4<f32>) -> vec4<f32> { return vec4<f32>((vec4<u32>(w) >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u)) - zc; }\n\
             fn q4hi(w: u32, zc: vec4<f32>) -> vec4<f32> { return q4lo(w >> 16u, zc); }\n\
             fn q4zc(z: f32) -> vec4<f32> { return vec4<f32>(z); }\n",
        ),
    }
    for (a, p) in views.iter().enumerate() {
        let sc = if q.scale_f16 {
            format!("unpack2x16float({p}[{}u + (i >> 1u)])[i & 1u]", l.scales_at)
        } else {
            format!("bitcast<f32>({p}[{}u + i])", l.scales_at)
        };
        let _ = writeln!(s, "fn {p}_s(i: u32) -> f32 {{ return {sc}; }}");
        let zp = if q.zp[a.min(1)] {
            format!("f32(({p}[{}u + (i >> 3u)] >> ((i & 7u) * 4u)) & 15u)", l.zps_at)
        } else {
            "8.0".into()
        };
        let _ = writeln!(s, "fn {p}_z(i: u32) -> f32 {{ return {zp}; }}");
    }
    s
}

/// WGSL of the two x vectors word `wi` of a chunk multiplies, from x's vectors `xv(2·wi)`
/// and `xv(2·wi + 1)` (elements 8·wi ..): its even elements and its odd ones, each scaled by
/// `Q4X` (see [`functions`]).
fn x_pair(xv: &dyn Fn(usize) -> String, wi: usize) -> (String, String) {
    let (a, b) = (xv(2 * wi), xv(2 * wi + 1));
    (format!("vec4<f32>({a}.x, {a}.z, {b}.x, {b}.z) * Q4X"), format!("vec4<f32>({a}.y, {a}.w, {b}.y, {b}.w) * Q4X"))
}

/// The weight views of a projection: (element view, scale view, row offset) per weight (the
/// up weight of a merged pair reads the gate's views at its own offset).
fn views(s: &ProjShape) -> Vec<(&'static str, &'static str, usize)> {
    let (go, uo) = s.offsets();
    let mut v = vec![("wq_gate", "wp_gate", go)];
    if s.fused.is_some() {
        v.push(if s.merged { ("wq_gate", "wp_gate", uo) } else { ("wq_up", "wp_up", uo) });
    }
    v
}

/// The bindings: x (`x_elem`), each weight twice (elements, scales), biases, the output
/// (`out_elem`).
pub(crate) fn binds(s: &ProjShape, v: &ProjValues, x_elem: &str, out_elem: &str) -> Binds {
    let mut b = Binds { directives: String::new(), decls: vec![], bindings: vec![], builtins: String::new() };
    b.push("x", false, x_elem, v.x, false);
    b.push("wq_gate", false, "vec4<u32>", v.w_gate, false);
    b.push("wp_gate", false, "u32", v.w_gate, false);
    if let (Some(_), false, Some(u)) = (&s.fused, s.merged, &v.w_up) {
        b.push("wq_up", false, "vec4<u32>", *u, false);
        b.push("wp_up", false, "u32", *u, false);
    }
    if let Some((g, p)) = &v.b_gate {
        b.push("b_gate", false, if *p { "u32" } else { "f32" }, *g, *p);
    }
    if let Some((u, p)) = &v.b_up {
        b.push("b_up", false, if *p { "u32" } else { "f32" }, *u, *p);
    }
    b.push("out0", true, out_elem, v.out, false);
    b
}

/// The layout of the shape's weights (gate's; the up weight's differs at most in its zero
/// points, which [`functions`] reads per view).
pub(crate) fn layout(s: &ProjShape) -> Result<(Q4, Q4Layout)> {
    let q = s.q4.clone().ok_or_else(|| Error::Internal("a 4-bit kernel for float weights".into()))?;
    let l = Q4Layout::new(s.n_total, s.k, q.block, q.scale_f16, q.zp[0])?;
    Ok((q, l))
}

/// WGSL of x's `vec4` `i` (elements `32·c + 4i ..`) of the row starting at `xr`, zeros past K.
/// x is bound as `array<vec4<f32>>` when K is a multiple of 4, else as `array<f32>`.
fn x_vec(s: &ProjShape, xr: &str, c: &str, i: usize) -> String {
    let k = s.k;
    let len = s.rows * k;
    if k % 4 == 0 {
        let idx = format!("{xr} + ({c}) * 8u + {i}u");
        if k % CHUNK == 0 {
            format!("x[{idx}]")
        } else {
            format!("select(vec4<f32>(0.0), x[min({idx}, {}u)], ({c}) * 32u + {}u < {k}u)", len / 4 - 1, 4 * i)
        }
    } else {
        let e: Vec<String> = (0..4)
            .map(|d| {
                let kk = format!("({c}) * 32u + {}u", 4 * i + d);
                format!("select(0.0, x[min({xr} + {kk}, {}u)], {kk} < {k}u)", len - 1)
            })
            .collect();
        format!("vec4<f32>({})", e.join(", "))
    }
}

/// x's stride between rows in its binding's elements.
fn x_stride(s: &ProjShape) -> usize {
    if s.k % 4 == 0 {
        s.k / 4
    } else {
        s.k
    }
}

fn x_elem(s: &ProjShape) -> &'static str {
    if s.k % 4 == 0 {
        "vec4<f32>"
    } else {
        "f32"
    }
}

/// Output features per group of 32 lanes in the decode GEMV: forced by the target, else the
/// most of 4, 2, 1 that leaves a single row at least 256 eights of groups of 32 lanes (the
/// workgroups when they held 8 groups; now 2 workgroups each). More features per group load
/// x once for more weights: on an H100 at Llama-3-8B gate/up (N = 14336) 4 took 45.1 µs, 2
/// 48.7 and 1 68.0 (issue #16's tuning run, chunk-major body, 256 threads); 8 took 50.0
/// against 4's 41.6 (chunk-major, 256 threads) and 42.5 against 34.8 (word-major, 128).
pub fn gemv_cols(s: &ProjShape, t: &Target) -> usize {
    if s.rows > 1 {
        return 1;
    }
    match t.q4_cols {
        Some(r) if matches!(r, 1 | 2 | 4) => r,
        _ => [4, 2].into_iter().find(|r| s.n.div_ceil(8 * r) >= 256).unwrap_or(1),
    }
}

/// Threads per workgroup of the decode GEMV: 4 groups of 32 lanes. On an H100 (issue #16,
/// Llama-3-8B gate/up, M=1, word-major body) 128 took 34.8 µs against 256's 37.5, and 64 the
/// same as 128 (34.9 both, one run). Smaller workgroups fill the SMs in finer steps.
pub const GEMV_THREADS: u32 = 128;

/// The decode GEMV over 4-bit weights (see the module documentation): rows of x in tiles of
/// up to 8 (the grid's y covers the rest).
pub(crate) fn gemv_q4(name: String, s: &ProjShape, v: &ProjValues, t: &Target) -> Result<KernelSource> {
    let (q, l) = layout(s)?;
    let sg = crate::wgsl::subgroup(t);
    let na = s.na();
    let tm = s.rows.min(8);
    let r_cols = gemv_cols(s, t);
    let groups = GEMV_THREADS as usize / 32;
    let per_wg = groups * r_cols;
    let ws = views(s);
    let mut b = binds(s, v, x_elem(s), "f32");
    if sg.is_some() {
        b.builtins = ", @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32".into();
    }
    let me = if sg.is_some() { "vid" } else { "lid" };
    let chunks = l.chunks;
    let shift = (q.block / CHUNK).max(1).trailing_zeros();
    let mut body = String::new();
    if let Some(z) = sg {
        let _ = writeln!(body, "    let vid = sg_id * {z}u + sg_lane;");
    }
    let _ = writeln!(
        body,
        "    let lane = {me} % 32u;\n    let cbase = wg.x * {per_wg}u + ({me} / 32u) * {r_cols}u;\n    let row0 = wg.y * {tm}u;"
    );
    // The fused kernel (two weights) takes two forms the single-weight one does not: on an
    // H100 (issue #16, M=1, both together) they took the fused Llama-3-8B gate/up from 34.8 to
    // 33.0 µs and 2048×11008 from 16.0 to 15.1, but the single-weight kernels of the unfused
    // graph from 50.9 to 51.7 and 26.2 to 27.3 µs (two projections each).
    let fused_form = na == 2;
    // Feature j's row of a weight at row offset `off`. When the group's features never
    // straddle N (N a multiple of r), only the group's base is clamped (groups past N read the
    // last group's rows and write nothing): the rows are then the base plus constants, which
    // the driver can fold into the loads' offsets instead of holding an address per feature
    // (with the fma chains, the fused kernel at Llama-3-8B gate/up takes 72 registers per
    // thread on an H100, per the driver: 7 workgroups of 128 threads per SM, all 896 at once).
    let affine = fused_form && s.n % r_cols == 0;
    if affine {
        let _ = writeln!(body, "    let cb = min(cbase, {}u);", s.n - r_cols);
    } else {
        for j in 0..r_cols {
            let _ = writeln!(body, "    let c{j} = min(cbase + {j}u, {}u);", s.n - 1);
        }
    }
    let feat = |j: usize, off: usize| if affine { format!("(cb + {}u)", off + j) } else { format!("(c{j} + {off}u)") };
    for r in 0..tm {
        let _ = writeln!(body, "    let xr{r} = min(row0 + {r}u, {}u) * {}u;", s.rows - 1, x_stride(s));
    }
    for r in 0..tm {
        for a in 0..na {
            for j in 0..r_cols {
                let _ = writeln!(body, "    var acc{r}_{a}_{j} = 0.0;");
            }
        }
    }
    let _ = writeln!(body, "    for (var c = lane; c < {chunks}u; c = c + 32u) {{");
    // Weight a, feature j: its chunk `w{a}_{j}`, scale(s) `s{a}_{j}_{h}` and zero-point terms
    // `z{a}_{j}_{h}`, one per chunk (a block of 32 or more), two for blocks of 16.
    let halves = if q.block == 16 { 2 } else { 1 };
    for (a, &(wq, wp, off)) in ws.iter().enumerate() {
        for j in 0..r_cols {
            let row = feat(j, off);
            let _ = writeln!(body, "        let w{a}_{j} = {wq}[{row} * {chunks}u + c];");
            for h in 0..halves {
                let idx = if halves == 2 {
                    format!("{row} * {}u + c * 2u + {h}u", l.nbp)
                } else {
                    format!("{row} * {}u + (c >> {shift}u)", l.nbp)
                };
                let _ = writeln!(
                    body,
                    "        let si{a}_{j}_{h} = {idx};\n        let s{a}_{j}_{h} = {wp}_s(si{a}_{j}_{h});\n        let z{a}_{j}_{h} = q4zc({wp}_z(si{a}_{j}_{h}));"
                );
            }
        }
    }
    // Word-major: per word wi of the chunk, row r's x over its 8 elements (evens and odds),
    // then every weight's word wi, dequantized and dotted into the chunk's partial sum
    // `p{r}_{a}_{j}_{h}` (scaled once per chunk, or half chunk).
    for r in 0..tm {
        for a in 0..na {
            for j in 0..r_cols {
                for h in 0..halves {
                    let _ = writeln!(body, "        var p{r}_{a}_{j}_{h} = 0.0;");
                }
            }
        }
    }
    for wi in 0..4 {
        let (word, h) = (["x", "y", "z", "w"][wi], wi * halves / 4);
        for r in 0..tm {
            for i in [2 * wi, 2 * wi + 1] {
                let _ = writeln!(body, "        let x{r}_{i} = {};", x_vec(s, &format!("xr{r}"), "c", i));
            }
            let (e, o) = x_pair(&|i| format!("x{r}_{i}"), wi);
            let _ = writeln!(body, "        let xe{r}_{wi} = {e};\n        let xo{r}_{wi} = {o};");
        }
        for a in 0..na {
            for j in 0..r_cols {
                let _ = writeln!(
                    body,
                    "        let d{a}_{j}_{wi}lo = q4lo(w{a}_{j}.{word}, z{a}_{j}_{h});\n        let d{a}_{j}_{wi}hi = q4hi(w{a}_{j}.{word}, z{a}_{j}_{h});"
                );
                // Fused: one chain of 8 `fma` per row into the partial sum; else `p + dot + dot`.
                for r in 0..tm {
                    let p = format!("p{r}_{a}_{j}_{h}");
                    if !fused_form {
                        let _ = writeln!(
                            body,
                            "        {p} = {p} + dot(xe{r}_{wi}, d{a}_{j}_{wi}lo) + dot(xo{r}_{wi}, d{a}_{j}_{wi}hi);"
                        );
                        continue;
                    }
                    let mut e = p.clone();
                    for (xv, dv) in [("xe", "lo"), ("xo", "hi")] {
                        for comp in ["x", "y", "z", "w"] {
                            e = format!("fma({xv}{r}_{wi}.{comp}, d{a}_{j}_{wi}{dv}.{comp}, {e})");
                        }
                    }
                    let _ = writeln!(body, "        {p} = {e};");
                }
            }
        }
    }
    for r in 0..tm {
        for a in 0..na {
            for j in 0..r_cols {
                let terms: Vec<String> = (0..halves).map(|h| format!("s{a}_{j}_{h} * p{r}_{a}_{j}_{h}")).collect();
                let _ = writeln!(body, "        acc{r}_{a}_{j} = acc{r}_{a}_{j} + {};", terms.join(" + "));
            }
        }
    }
    let _ = writeln!(body, "    }}");
    // Sum the 32 lanes of each accumulator.
    let slots = tm * na * r_cols;
    let slot = |r: usize, a: usize, j: usize| (r * na + a) * r_cols + j;
    let mut sums: Vec<String> = vec![String::new(); slots];
    let red_len;
    match sg {
        Some(z) => {
            let parts = 32 / z;
            let subgroups = GEMV_THREADS as usize / z;
            for r in 0..tm {
                for a in 0..na {
                    for j in 0..r_cols {
                        let _ = writeln!(body, "    let sum{} = subgroupAdd(acc{r}_{a}_{j});", slot(r, a, j));
                    }
                }
            }
            if parts == 1 {
                red_len = 0;
                let _ = writeln!(body, "    if (sg_lane != 0u) {{ return; }}");
                for (i, x) in sums.iter_mut().enumerate() {
                    *x = format!("sum{i}");
                }
            } else {
                red_len = slots * subgroups;
                let _ = writeln!(body, "    if (sg_lane == 0u) {{");
                for sl in 0..slots {
                    let _ = writeln!(body, "        red[{}u + sg_id] = sum{sl};", sl * subgroups);
                }
                let _ = writeln!(body, "    }}\n    workgroupBarrier();\n    if (lane != 0u) {{ return; }}");
                for (sl, x) in sums.iter_mut().enumerate() {
                    let terms: Vec<String> =
                        (0..parts).map(|p| format!("red[{}u + sg_id + {p}u]", sl * subgroups)).collect();
                    *x = format!("({})", terms.join(" + "));
                }
            }
        }
        None => {
            red_len = slots * WORKGROUP as usize;
            for r in 0..tm {
                for a in 0..na {
                    for j in 0..r_cols {
                        let _ =
                            writeln!(body, "    red[{}u + lid] = acc{r}_{a}_{j};", slot(r, a, j) * WORKGROUP as usize);
                    }
                }
            }
            let _ = writeln!(body, "    workgroupBarrier();");
            super::gemv::tree_sum(&mut body, 32, 1, slots);
            let _ = writeln!(body, "    if (lane != 0u) {{ return; }}");
            for (sl, x) in sums.iter_mut().enumerate() {
                *x = format!("red[{}u + lid]", sl * WORKGROUP as usize);
            }
        }
    }
    for r in 0..tm {
        for j in 0..r_cols {
            let g = &sums[slot(r, 0, j)];
            let u = if na == 2 { sums[slot(r, 1, j)].clone() } else { "0.0".into() };
            let col = format!("(cbase + {j}u)");
            let _ = writeln!(
                body,
                "    if (row0 + {r}u < {}u && {col} < {}u) {{ out0[(row0 + {r}u) * {}u + {col}] = {}; }}",
                s.rows,
                s.n,
                s.n,
                epilogue(s, v, g, &u, &col)
            );
        }
    }
    let mut prelude = format!("{MATH}\n");
    prelude.push_str(&functions(&q, &l, &scale_views(&ws), t.q4_unpack));
    if red_len > 0 {
        let _ = writeln!(prelude, "var<workgroup> red: array<f32, {red_len}>;");
    }
    let kind = kind(s, ProjKernel::GemvQ4);
    let grid = [s.n.div_ceil(per_wg) as u64, s.rows.div_ceil(tm) as u64];
    finish(name, kind, &b, &prelude, &body, grid, GEMV_THREADS, t)
}

/// The distinct scale views of `ws`, gate first.
fn scale_views<'a>(ws: &[(&'a str, &'a str, usize)]) -> Vec<&'a str> {
    let mut v: Vec<&str> = vec![];
    for w in ws {
        if !v.contains(&w.1) {
            v.push(w.1);
        }
    }
    v
}

/// Rows of x per workgroup of [`gemm_q4`].
const GM: usize = 32;
/// Output features per workgroup of [`gemm_q4`].
const GN: usize = 32;

/// The prefill GEMM over 4-bit weights without cooperative matrices (see the module
/// documentation): 256 threads, each 4 rows × 1 output feature of each weight.
pub(crate) fn gemm_q4(name: String, s: &ProjShape, v: &ProjValues, t: &Target) -> Result<KernelSource> {
    let (q, l) = layout(s)?;
    let na = s.na();
    let ws = views(s);
    let b = binds(s, v, x_elem(s), "f32");
    let chunks = l.chunks;
    let shift = (q.block / CHUNK).max(1).trailing_zeros();
    let halves = if q.block == 16 { 2 } else { 1 };
    let mut body = String::new();
    let _ = writeln!(
        body,
        "    let tc = lid % {GN}u;\n    let tr = lid / {GN}u;\n    let row0 = wg.y * {GM}u;\n    let col0 = wg.x * {GN}u;"
    );
    for r in 0..4 {
        for a in 0..na {
            let _ = writeln!(body, "    var acc{r}_{a} = 0.0;");
        }
    }
    // x loads: row lid / 8, vec4 lid % 8 of the chunk.
    let _ = writeln!(
        body,
        "    let xrow = lid / 8u;\n    let xi = lid % 8u;\n    let xr = min(row0 + xrow, {}u) * {}u;\n    let wa = lid / {GN}u;\n    let wcol = min(col0 + lid % {GN}u, {}u);",
        s.rows - 1,
        x_stride(s),
        s.n - 1
    );
    let _ = writeln!(body, "    for (var c = 0u; c < {chunks}u; c = c + 1u) {{");
    // x: one vec4 per thread (a dynamic i: the guarded forms take it as an expression).
    let xv = if s.k % 4 == 0 {
        let idx = "xr + c * 8u + xi";
        if s.k % CHUNK == 0 {
            format!("x[{idx}]")
        } else {
            format!("select(vec4<f32>(0.0), x[min({idx}, {}u)], c * 32u + xi * 4u < {}u)", s.rows * s.k / 4 - 1, s.k)
        }
    } else {
        let e: Vec<String> = (0..4)
            .map(|d| {
                let kk = format!("c * 32u + xi * 4u + {d}u");
                format!("select(0.0, x[min(xr + {kk}, {}u)], {kk} < {}u)", s.rows * s.k - 1, s.k)
            })
            .collect();
        format!("vec4<f32>({})", e.join(", "))
    };
    let row_ok = if s.rows % GM != 0 { format!(" * f32(row0 + xrow < {}u)", s.rows) } else { String::new() };
    let _ = writeln!(body, "        xs[xrow][xi] = {xv}{row_ok};");
    // Weights: threads 0 .. na·32 each dequantize one chunk of one feature.
    let _ = writeln!(body, "        if (wa < {na}u) {{");
    for (a, &(wq, wp, off)) in ws.iter().enumerate() {
        let _ = writeln!(
            body,
            "            if (wa == {a}u) {{\n                let w = {wq}[(wcol + {off}u) * {chunks}u + c];"
        );
        for h in 0..halves {
            let idx = if halves == 2 {
                format!("(wcol + {off}u) * {}u + c * 2u + {h}u", l.nbp)
            } else {
                format!("(wcol + {off}u) * {}u + (c >> {shift}u)", l.nbp)
            };
            let _ = writeln!(
                body,
                "                let s{h} = {wp}_s({idx}) * Q4X;\n                let z{h} = q4zc({wp}_z({idx}));"
            );
        }
        // Word wi: its even and its odd elements, dequantized, back in order.
        for wi in 0..4 {
            let (word, h) = (["x", "y", "z", "w"][wi], wi * halves / 4);
            let _ = writeln!(
                body,
                "                let l{wi} = q4lo(w.{word}, z{h}) * s{h};\n                let h{wi} = q4hi(w.{word}, z{h}) * s{h};\n                ws[{a}u][tc][{}] = vec4<f32>(l{wi}.x, h{wi}.x, l{wi}.y, h{wi}.y);\n                ws[{a}u][tc][{}] = vec4<f32>(l{wi}.z, h{wi}.z, l{wi}.w, h{wi}.w);",
                2 * wi,
                2 * wi + 1
            );
        }
        let _ = writeln!(body, "            }}");
    }
    let _ = writeln!(body, "        }}\n        workgroupBarrier();");
    let _ = writeln!(body, "        for (var i = 0u; i < 8u; i = i + 1u) {{");
    for a in 0..na {
        let _ = writeln!(body, "            let w{a} = ws[{a}u][tc][i];");
    }
    for r in 0..4 {
        let _ = writeln!(body, "            let x{r} = xs[tr * 4u + {r}u][i];");
        for a in 0..na {
            let _ = writeln!(body, "            acc{r}_{a} = acc{r}_{a} + dot(x{r}, w{a});");
        }
    }
    let _ = writeln!(body, "        }}\n        workgroupBarrier();\n    }}");
    let _ = writeln!(body, "    let col = col0 + tc;");
    for r in 0..4 {
        let u = if na == 2 { format!("acc{r}_1") } else { "0.0".into() };
        let _ = writeln!(
            body,
            "    if (row0 + tr * 4u + {r}u < {}u && col < {}u) {{ out0[(row0 + tr * 4u + {r}u) * {}u + col] = {}; }}",
            s.rows,
            s.n,
            s.n,
            epilogue(s, v, &format!("acc{r}_0"), &u, "col")
        );
    }
    // The thread of a weight chunk is `wa · 32 + tc`: `wa` picks the weight, `tc` the feature.
    let mut prelude = format!("{MATH}\n");
    prelude.push_str(&functions(&q, &l, &scale_views(&ws), t.q4_unpack));
    let _ = writeln!(
        prelude,
        "var<workgroup> xs: array<array<vec4<f32>, 8>, {GM}>;\nvar<workgroup> ws: array<array<array<vec4<f32>, 9>, {GN}>, {na}>;"
    );
    let kind = kind(s, ProjKernel::GemmQ4);
    let grid = [s.n.div_ceil(GN) as u64, s.rows.div_ceil(GM) as u64];
    finish(name, kind, &b, &prelude, &body, grid, WORKGROUP, t)
}
