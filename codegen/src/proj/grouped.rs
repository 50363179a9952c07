//! A mixture of experts' products for many tokens at once, grouped by expert: `out[p] =
//! table[idx[p]] · x[p]` for every token-expert pair `p` (Hugging Face's `batched_mm`: each
//! pair's expert matrix `[N, K]` gathered from a table `[E, N, K]`, times the pair's row of x
//! as a column), where the pairs outnumber the experts (a prompt), so that each expert's
//! matrix is read once for all the pairs that picked it instead of once per pair (the
//! matrix-times-vector kernel, `batched.rs`, which a decode step keeps).
//!
//! A workgroup owns one expert `e` and `bn` of its output columns (the grid runs over column
//! tiles, then experts; `bn` of 128, 64 or 32, the most that still give the device
//! [`MIN_WORKGROUPS`]). It walks the indices [`WORKGROUP`] at a time, each thread testing one
//! pair and appending the pairs that picked `e` to a list in workgroup memory (an atomic
//! counter: their order in the list is arbitrary, and nothing depends on it, since every
//! output element is one thread's sum over k in order). Whenever the list holds a tile's worth
//! of rows (`bm`: 32, or 64 where the experts have more pairs on average), and at the end
//! whatever is left, it multiplies them out: k advances `bk` a step (64 down to 8: what fits
//! the device's workgroup memory) through workgroup memory, x's rows (gathered through the
//! list) and the expert's columns staged as loaded, 16 bytes a thread at a time (four f32 of
//! x, eight halves or four f32 of the table), the loads of the next step issued into registers
//! before the products of this one. Each thread owns two columns (`bn / 2` apart) and the rows
//! of its row group: it reads its columns' 16 bytes once for all its rows, and each row's x
//! once for both columns, x that every thread of the row group reads alike (a broadcast).
//! Four columns and four rows a thread (4 × 4 sums, each of the eight operands read from
//! workgroup memory apart) took a Mixtral-like prompt's expert products 555 and 567 µs on an
//! H200, one column 384 and 247, two 327 and 218, two with a row group past the tile's rows
//! skipping its products 276 and 180 (`benches/results/h200-2026-11-28-grouped.md`).
//!
//! A mixture of experts' fused gated unit (`FusedGateUp` with a matrix per pair, gate and up
//! merged in one table) runs the same way with each thread's two columns one output's gate row
//! (`go + j`) and up row (`uo + j`): a workgroup then owns `bn / 2` outputs, and each thread
//! writes `act(gate) · up` of its one.
//!
//! It needs k a multiple of 16 bytes (8 for an f16 table, else 4) and x stored as f32; other
//! products keep the matrix-times-vector kernel. Indices are checked as the gather would
//! (negative ones counting from the end); one out of range is an error naming the gather,
//! reported by the first workgroup, and its pair is in no list.

use crate::elementwise::{act_call, MATH};
use crate::index::{size_i32, slab_check};
use crate::wgsl::{assemble, bcast_index, Elems, Store, WORKGROUP};
use crate::{dims, packed_f16, Choice, KernelKind, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Activation, Graph, Layout, NodeIndex, Op, Result, Value};
use std::fmt::Write;

/// Fewest pairs per expert (on average) for which a product is grouped: below it (a decode
/// step: 2 pairs of 8 experts, 8 of 64) the matrix-times-vector kernel reads no more bytes.
/// On an H200, grouping was even at two pairs an expert (a Mixtral-like prompt of 8 tokens
/// 0.7% faster, a Qwen3-MoE-like one of 16 1.5% slower) and far ahead from four
/// (`benches/results/h200-2026-11-28-grouped.md`).
pub(crate) const GROUP_MIN_PAIRS: usize = 2;

/// Columns a thread owns: with one, a Mixtral-like prompt's expert products took 383.8 and
/// 246.7 µs on an H200.
const COLS: usize = 2;

/// Workgroups a grouped product should have at least, where narrower column tiles give them
/// (a Mixtral-like down projection, 8 experts of 1024 outputs, has 64 tiles of 128).
const MIN_WORKGROUPS: usize = 256;

/// A grouped product's tiling: each of the 256 threads owns `ct` of `bn` columns (`bn / ct`
/// apart) and `r` rows of one of `g = 256 · ct / bn` row groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tile {
    /// Output columns a workgroup owns.
    bn: usize,
    /// Columns per thread.
    ct: usize,
    /// Rows (pairs) per thread.
    r: usize,
    /// k a step.
    bk: usize,
}

impl Tile {
    /// Threads of a row group.
    fn tpg(&self) -> usize {
        self.bn / self.ct
    }
    /// Row groups.
    fn g(&self) -> usize {
        WORKGROUP as usize / self.tpg()
    }
    /// Rows (pairs) a tile multiplies out at once.
    fn bm(&self) -> usize {
        self.g() * self.r
    }
    /// Workgroup memory: the pair list and its counters, the x tile (`bm` rows of `bk / 4 + 1`
    /// 16-byte units: one of padding) and the table's (`bn` columns of `bk / v + 1`, `v` its
    /// elements in 16 bytes).
    fn bytes(&self, v: usize) -> usize {
        4 * (self.bm() + WORKGROUP as usize + 2) + 16 * (self.bm() * (self.bk / 4 + 1) + self.bn * (self.bk / v + 1))
    }
}

/// The tiling of `pairs` pairs over `experts` experts of `nn` outputs: columns as many as
/// still give [`MIN_WORKGROUPS`], rows 32 a tile, or 64 where an expert has more pairs on
/// average, k steps as long as workgroup memory holds.
fn tile(pairs: usize, experts: usize, nn: usize, v: usize, max_bytes: usize) -> Option<Tile> {
    let bn = [128, 64, 32].into_iter().find(|&bn| nn.div_ceil(bn) * experts >= MIN_WORKGROUPS).unwrap_or(32);
    let bm = if pairs.div_ceil(experts) > 32 { 64 } else { 32 };
    let ct = COLS;
    let r = bm / (WORKGROUP as usize * ct / bn);
    [64, 32, 16, 8].into_iter().map(|bk| Tile { bn, ct, r, bk }).find(|t| t.bk >= v && t.bytes(v) <= max_bytes)
}

/// The grouped kernel of batched `MatMul` `n`, where it applies: its first operand gathers
/// whole matrices of a table `[E, N, K]` per pair (read in place, [`Graph::gathered_rows`]),
/// with no broadcast, its second is a column per pair (`[.., K, 1]`, broadcast allowed) stored
/// as f32, k is whole 16-byte units of the table, and there are at least [`GROUP_MIN_PAIRS`]
/// pairs per expert.
pub(crate) fn grouped(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Option<KernelSource>> {
    let ins = g.inputs(n);
    let out = Value::of(n);
    let Some(gathered) = Gathered::of(g, ins[0]) else { return Ok(None) };
    if g.gathered_rows(ins[1]).is_some() {
        return Ok(None);
    }
    let (ad, xd, od) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?, dims(g, out, b)?);
    let r = od.len();
    if ad.len() != r || ad[..r - 2] != od[..r - 2] || od[r - 1] != 1 || xd.len() < 2 {
        return Ok(None);
    }
    let batch = &od[..r - 2];
    let xflat = bcast_index(batch, &xd[..xd.len() - 2], "p");
    build(g, n, gathered, ins[1], batch.iter().product(), &xflat, None, b, t)
}

/// What a grouped kernel of a fused gated unit applies to each output: `act(gate) · up`, the
/// gate of output `j` the table's row `go + j`, its up row `uo + j`, `width` outputs.
struct Fuse {
    act: Activation,
    go: usize,
    uo: usize,
    width: usize,
}

/// The grouped kernel of `FusedGateUp` `n` whose weights hold a matrix per row of x, where it
/// applies: one weight (gate and up merged) gathering whole `[N, K]` matrices of a table per
/// pair (read in place), no biases, x `[P, K]` stored as f32, k whole 16-byte units of the
/// table, and at least [`GROUP_MIN_PAIRS`] pairs per expert. Each thread's two columns are
/// then one output's gate and up rows; it writes `act(gate) · up`.
pub(crate) fn grouped_fused(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Option<KernelSource>> {
    let Op::FusedGateUp(f) = &g.node(n).op else { return Ok(None) };
    let ins = g.inputs(n);
    if ins[1] != ins[2] || f.layout != Layout::Nk || f.gate_bias || f.up_bias {
        return Ok(None);
    }
    let Some(gathered) = Gathered::of(g, ins[1]) else { return Ok(None) };
    let (xd, od) = (dims(g, ins[0], b)?, dims(g, Value::of(n), b)?);
    let fuse = Fuse { act: f.activation, go: f.gate_offset as usize, uo: f.up_offset as usize, width: od[1] };
    // x's row of pair `p`: row `p / rep` where an expand's rows are read in place.
    build(g, n, gathered, ins[0], xd[0], &super::pair_row(g, ins[0]), Some(fuse), b, t)
}

/// A gather of slabs the grouped kernel reads in place ([`Graph::gathered_rows`]): the gather,
/// the table and the indices.
#[derive(Clone, Copy)]
struct Gathered {
    gather: NodeIndex,
    table: Value,
    idx: Value,
}

impl Gathered {
    fn of(g: &Graph, v: Value) -> Option<Gathered> {
        g.gathered_rows(v).map(|(table, idx)| Gathered { gather: v.node, table, idx })
    }
}

/// The grouped kernel of node `n`: `pairs` products of the matrix that `gathered` gathers per
/// pair with x's row of pair `p` (16-byte unit `xflat · k/4` on), plain or fused.
#[allow(clippy::too_many_arguments)]
fn build(
    g: &Graph,
    n: NodeIndex,
    gathered: Gathered,
    x: Value,
    pairs: usize,
    xflat: &str,
    fuse: Option<Fuse>,
    b: &Bindings,
    t: &Target,
) -> Result<Option<KernelSource>> {
    let out = Value::of(n);
    let Gathered { gather, table, idx } = gathered;
    if Store::of(g, x) != Store::F32 || Store::of(g, out) != Store::F32 {
        return Ok(None);
    }
    let td = dims(g, table, b)?;
    if td.len() != 3 {
        return Ok(None);
    }
    let (experts, nn, k) = (td[0], td[1], td[2]);
    // Output columns: the table's rows, or the fused unit's outputs (two table rows each).
    let (width, cols) = match &fuse {
        Some(f) => (f.width, 2 * f.width),
        None => (nn, nn),
    };
    let w16 = packed_f16(g, table);
    // Elements of the table in 16 bytes.
    let v = if w16 { 8 } else { 4 };
    if experts == 0 || k == 0 || width == 0 || k % v != 0 || pairs < GROUP_MIN_PAIRS * experts {
        return Ok(None);
    }
    let Some(tl) = tile(pairs, experts, cols, v, t.max_workgroup_storage_bytes as usize) else { return Ok(None) };
    let d = size_i32(g, gather, experts)?;
    let checks = vec![slab_check(g, gather, experts)];
    let (bn, rr, bk, bm, ct, tpg) = (tl.bn, tl.r, tl.bk, tl.bm(), tl.ct, tl.tpg());
    let wg = WORKGROUP as usize;
    // Outputs a workgroup owns: its columns, or (fused) half as many, a gate and an up
    // column each (the thread's two columns, `tpg` apart).
    let per_tile = if fuse.is_some() { tpg } else { bn };
    let tiles = width.div_ceil(per_tile);
    let total = tiles * experts;
    // 16-byte units: of x, `bk / 4` a row, `bm` rows; of the table, `bk / v` a column, `bn`
    // columns; `lid + 256·j` for j in 0.. each thread's.
    let (xu, wu) = (bm * bk / 4, bn * bk / v);
    let unit_guard = |u: usize, j: usize| {
        if (j + 1) * wg <= u {
            String::new()
        } else {
            format!("lid + {}u < {u}u", j * wg)
        }
    };
    let both = |a: String, b: String| match (a.is_empty(), b.is_empty()) {
        (true, true) => "true".to_string(),
        (false, true) => a,
        (true, false) => b,
        (false, false) => format!("{a} && {b}"),
    };
    let kk_guard =
        |q: &str, units: usize| if k % bk == 0 { String::new() } else { format!("k0 + {q} * {units}u < {k}u") };
    let mut s = format!(
        "    if (gid >= {total}u) {{ return; }}\n    let e = i32(gid / {tiles}u);\n    let n0 = (gid % {tiles}u) * {per_tile}u;\n    let col = lid % {tpg}u;\n    let row0 = (lid / {tpg}u) * {rr}u;\n"
    );
    // The table's units this thread stages, fixed for the whole kernel.
    let wj = wu.div_ceil(wg);
    for j in 0..wj {
        // The table row staged as column `wc`: the output's own, or (fused) the gate row of
        // output `wc` (the first `tpg` columns) or the up row of output `wc - tpg`.
        let (out_col, row) = match &fuse {
            None => (format!("wc{j}"), format!("n0 + wc{j}")),
            Some(f) => (
                format!("(wc{j} % {tpg}u)"),
                format!("select({}u + n0 + wc{j} - {tpg}u, {}u + n0 + wc{j}, wc{j} < {tpg}u)", f.uo, f.go),
            ),
        };
        let col_ok = if width % per_tile == 0 { String::new() } else { format!("n0 + {out_col} < {width}u") };
        let _ = writeln!(
            s,
            "    let wc{j} = (lid + {o}u) / {per}u;\n    let wq{j} = (lid + {o}u) % {per}u;\n    let wl{j} = {};\n    let wb{j} = (u32(e) * {nn}u + {row}) * {kv}u + wq{j};",
            both(unit_guard(wu, j), col_ok),
            o = j * wg,
            per = bk / v,
            kv = k / v,
        );
    }
    // Walk the indices, listing the pairs that picked `e`.
    let _ = write!(
        s,
        "    for (var s0 = 0u; s0 < {pairs}u; s0 = s0 + {wg}u) {{\n        let p = s0 + lid;\n        if (p < {pairs}u) {{\n            let raw = in1[p];\n            var ex = raw;\n            if (ex < 0i) {{ ex = ex + {d}i; }}\n            if (ex < 0i || ex >= {d}i) {{\n                if (gid == 0u) {{ fail_(1u, raw, p); }}\n            }} else if (ex == e) {{\n                list[atomicAdd(&count, 1u)] = p;\n            }}\n        }}\n        workgroupBarrier();\n        if (lid == 0u) {{ held = atomicLoad(&count); }}\n        let have = workgroupUniformLoad(&held);\n        let last = s0 + {wg}u >= {pairs}u;\n        var done = 0u;\n        loop {{\n            let left = have - done;\n            if (left < {bm}u && !(last && left > 0u)) {{ break; }}\n            let m = min(left, {bm}u);\n"
    );
    // One tile of rows `list[done ..][.. m]`: the x units this thread stages and their rows.
    let xj = xu.div_ceil(wg);
    for j in 0..xj {
        let _ = writeln!(
            s,
            "            let xr{j} = (lid + {o}u) / {per}u;\n            let xq{j} = (lid + {o}u) % {per}u;\n            let xl{j} = {};\n            var xb{j} = 0u;\n            if (xl{j}) {{ let p = list[done + xr{j}]; xb{j} = ({xflat}) * {k4}u + xq{j}; }}",
            both(unit_guard(xu, j), format!("xr{j} < m")),
            o = j * wg,
            per = bk / 4,
            k4 = k / 4,
        );
    }
    let (wvec, wzero) = if w16 { ("vec4<u32>", "vec4<u32>(0u)") } else { ("vec4<f32>", "vec4<f32>(0.0)") };
    for j in 0..xj {
        let _ = writeln!(s, "            var xv{j} = vec4<f32>(0.0);");
    }
    for j in 0..wj {
        let _ = writeln!(s, "            var wv{j} = {wzero};");
    }
    for r in 0..rr {
        for c in 0..ct {
            let _ = writeln!(s, "            var acc{r}_{c} = 0.0;");
        }
    }
    // The loads of step `k0` into registers.
    let mut load = String::new();
    for j in 0..xj {
        let _ = writeln!(
            load,
            "                xv{j} = vec4<f32>(0.0);\n                if ({}) {{ xv{j} = in2[xb{j} + k0 / 4u]; }}",
            both(format!("xl{j}"), kk_guard(&format!("xq{j}"), 4))
        );
    }
    for j in 0..wj {
        let _ = writeln!(
            load,
            "                wv{j} = {wzero};\n                if ({}) {{ wv{j} = in0[wb{j} + k0 / {v}u]; }}",
            both(format!("wl{j}"), kk_guard(&format!("wq{j}"), v))
        );
    }
    let _ = write!(s, "            {{\n                let k0 = 0u;\n{load}            }}\n");
    let _ = writeln!(s, "            for (var k0 = 0u; k0 < {k}u; k0 = k0 + {bk}u) {{");
    // Into workgroup memory as loaded: x row-major, the table column-major.
    for (j, (u, reg, dst)) in (0..xj).map(|j| (xu, "xv", format!("xs[xr{j}][xq{j}]"))).enumerate() {
        let g = unit_guard(u, j);
        let store = format!("{dst} = {reg}{j};");
        let _ = writeln!(s, "                {}", if g.is_empty() { store } else { format!("if ({g}) {{ {store} }}") });
    }
    for j in 0..wj {
        let g = unit_guard(wu, j);
        let store = format!("ws[wc{j}][wq{j}] = wv{j};");
        let _ = writeln!(s, "                {}", if g.is_empty() { store } else { format!("if ({g}) {{ {store} }}") });
    }
    s.push_str("                workgroupBarrier();\n");
    // The next step's loads, in flight while this step is multiplied out.
    if k > bk {
        let _ = write!(s, "                if (k0 + {bk}u < {k}u) {{\n                    let k0 = k0 + {bk}u;\n{load}                }}\n");
    }
    // Each unit of the thread's columns against its rows: the rows' x read by every thread of
    // a row group alike (a broadcast), the columns' by each its own.
    // (A row group past the tile's rows has nothing to add up: a tile's last rows are often
    // few.)
    let _ = writeln!(
        s,
        "                if (row0 < m) {{\n                for (var q = 0u; q < {}u; q = q + 1u) {{",
        bk / v
    );
    for c in 0..ct {
        let _ = writeln!(s, "                    let wq{c} = ws[col + {}u][q];", c * tpg);
        if w16 {
            let _ = writeln!(
                s,
                "                    let wa{c} = vec4<f32>(unpack2x16float(wq{c}.x), unpack2x16float(wq{c}.y));\n                    let wb{c} = vec4<f32>(unpack2x16float(wq{c}.z), unpack2x16float(wq{c}.w));"
            );
        }
    }
    for r in 0..rr {
        if w16 {
            let _ = writeln!(s, "                    let xa{r} = xs[row0 + {r}u][2u * q];\n                    let xb{r} = xs[row0 + {r}u][2u * q + 1u];");
        } else {
            let _ = writeln!(s, "                    let xa{r} = xs[row0 + {r}u][q];");
        }
        for c in 0..ct {
            if w16 {
                let _ =
                    writeln!(s, "                    acc{r}_{c} = acc{r}_{c} + dot(xa{r}, wa{c}) + dot(xb{r}, wb{c});");
            } else {
                let _ = writeln!(s, "                    acc{r}_{c} = acc{r}_{c} + dot(xa{r}, wq{c});");
            }
        }
    }
    s.push_str("                }\n                }\n                workgroupBarrier();\n            }\n");
    // Each thread's sums to its pairs' rows (fused: `act(gate) · up` of its one output).
    for r in 0..rr {
        let outs: Vec<(String, String)> = match &fuse {
            None => (0..ct).map(|c| (format!("col + {}u", c * tpg), format!("acc{r}_{c}"))).collect(),
            Some(f) => vec![("col".to_string(), format!("{} * acc{r}_1", act_call(f.act, &format!("acc{r}_0"))))],
        };
        for (cc, value) in outs {
            let col_ok = if width % per_tile == 0 { String::new() } else { format!(" && n0 + {cc} < {width}u") };
            let _ = writeln!(
                s,
                "            if (row0 + {r}u < m{col_ok}) {{ out0[list[done + row0 + {r}u] * {width}u + n0 + {cc}] = {value}; }}"
            );
        }
    }
    // Whatever did not fill a tile moves to the front of the list.
    s.push_str(
        "            done = done + m;\n        }\n        let rest = have - done;\n        var keep = 0u;\n        if (lid < rest) { keep = list[done + lid]; }\n        workgroupBarrier();\n        if (lid < rest) { list[lid] = keep; }\n        if (lid == 0u) { atomicStore(&count, rest); }\n        workgroupBarrier();\n    }\n",
    );
    let mut prelude = if fuse.is_some() { MATH.to_string() } else { String::new() };
    let _ = write!(
        prelude,
        "var<workgroup> list: array<u32, {}>;\nvar<workgroup> count: atomic<u32>;\nvar<workgroup> held: u32;\nvar<workgroup> xs: array<array<vec4<f32>, {}>, {bm}>;\nvar<workgroup> ws: array<array<{wvec}, {}>, {bn}>;\n",
        bm + wg,
        bk / 4 + 1,
        bk / v + 1
    );
    let kind = if fuse.is_some() { KernelKind::FusedExpertsGrouped } else { KernelKind::GroupedMatmul };
    // The table and x are read 16 bytes at a time.
    let elems = Elems { wide: &[(0, wvec), (2, "vec4<f32>")], ..Elems::default() };
    let (name, ins) = (g.node(n).name.clone(), [table, idx, x]);
    let mut ks =
        assemble(g, name, kind, &ins, &[out], elems, None, None, 0, total as u64, WORKGROUP, &prelude, &s, checks, t)?;
    ks.choice = Some(Choice {
        kernel: format!("grouped {bm}x{bn}x{bk}{}", if fuse.is_some() { ", gate and up" } else { "" }),
        reason: format!("{pairs} pairs over {experts} experts: each expert's matrix read once for its pairs"),
    });
    Ok(Some(ks))
}
