//! `MatMul` with a right operand of rank above 2: `[.., M, K] · [.., K, N]`, batch dims
//! broadcast, one thread per output element; where N is 1 and k long (a matrix times a vector
//! per batch: a mixture of experts' products, each token's expert matrix times its row), lanes
//! side by side along the row of k instead, adding up their sums by subgroups or a tree in
//! workgroup memory: a workgroup per output element where they are few, 32 lanes (8 elements
//! a workgroup) where they are many (a thread walking a row of 3584 alone took 540 µs on an
//! H200 for what the row's bytes take 3 µs to read); the elements run row by row over the
//! batches (`benches/results/h200-2026-11-28-moe.md`). Each lane reads four elements of the row
//! a step (four words of two halves where the matrix is f16), a subgroup's loads side by side
//! ([`row_loop`]).
//!
//! An operand that gathers whole slabs of a table ([`Graph::gathered_rows`]: a mixture of
//! experts' weights picked per token) is read in place: the kernel binds the table and the
//! indices instead, checks each index as the gather would (negative ones counting from the
//! end, one out of range an error naming the gather), and reads the slab it names. The gather
//! itself takes no kernel and no buffer. Where the pairs outnumber the experts (a prompt),
//! the products are grouped by expert instead (`grouped.rs`).

use super::gemv::tree_sum;
use crate::elementwise::{act_call, MATH};
use crate::index::{check_index, size_i32, slab_check};
use crate::wgsl::{bcast_index, kernel, read, subgroup, tree_reduce_rows, RedArray, Store, WORKGROUP};
use crate::{dims, packed_f16, KernelKind, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Error, Graph, Layout, NodeIndex, Op, Result, Value};
use std::fmt::Write;

/// `[.., M, K] · [.., K, N]` with broadcast batch dims: one thread per output element, or,
/// where N is 1 and k at least [`ROW_MIN_K`], lanes along k per output element (see the
/// module's header); a gathered operand read in place either way.
pub(crate) fn batched_matmul(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    if let Some(k) = super::grouped::grouped(g, n, b, t)? {
        return Ok(k);
    }
    let ins = g.inputs(n);
    let out = Value::of(n);
    let (ad, bd, od) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?, dims(g, out, b)?);
    let (m, k, nn) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch = &od[..od.len() - 2];
    let total: usize = od.iter().product();
    let zero = Store::of(g, out).zero();
    // A matrix times a vector per batch, k long: lanes side by side along k per output
    // element, a workgroup's worth where the elements are few (a decode step's down
    // projection: 2048 of k = 3584 took 22 µs so on an H200, 56 with 32 lanes each), else 32.
    let rows = nn == 1 && k >= ROW_MIN_K;
    let ln = Lanes::of(total, t);
    // Two rows of a matrix a workgroup where a workgroup takes an element and the rows are
    // even (x read once for both, twice the loads in flight, half the workgroups): a
    // Mixtral-like decode step's down products 15.7 → 13.0 µs a layer on an H200 (the step 308.0
    // → 298.3 µs). With 32 lanes an element, pairs were slower (a 4-token prompt's down
    // products 34.7 → 35.4 µs; `benches/results/h200-2026-11-29-experts.md`).
    let pair = rows && ln.wide() && m % 2 == 0;
    let per_group = if pair { 2 } else { 1 };
    let mut body = if rows {
        // Elements in the order (row, batch): the batches that read one slab's row (a
        // prefill's tokens of one expert) read it one after another, while it is cached. No
        // thread returns before the tree's barriers: one past the end reads element 0.
        let batches = total / m;
        let (group, lane) = ln.group_and_lane();
        format!(
            "    let lane = {lane};\n    let o = gid * {per}u + {group};\n    let live = o < {}u;\n    let oo = select(0u, o, live);\n    let KK = {k}u;\n    let NN = 1u;\n    let col = 0u;\n    let row = (oo / {batches}u) * {per_group}u;\n    let bi = oo % {batches}u;\n    let i = bi * {m}u + row;\n    var bad = false;\n",
            total / per_group,
            per = ln.per_workgroup()
        )
    } else {
        format!(
            "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let KK = {k}u;\n    let NN = {nn}u;\n    let col = i % NN;\n    let row = (i / NN) % {m}u;\n    let bi = i / ({m}u * NN);\n"
        )
    };
    // The values bound (`in0..`), the checks, and each operand's binding (its name, whether
    // it is packed f16), its elements from `base{slot}` on.
    let (mut bound, mut checks, mut operands) = (vec![], vec![], vec![]);
    for (slot, (v, vd, size)) in [(ins[0], &ad, m * k), (ins[1], &bd, k * nn)].into_iter().enumerate() {
        let flat = bcast_index(batch, &vd[..vd.len() - 2], "bi");
        let Some((table, idx)) = g.gathered_rows(v) else {
            let _ = writeln!(body, "    let base{slot} = ({flat}) * {size}u;");
            operands.push((format!("in{}", bound.len()), packed_f16(g, v)));
            bound.push(v);
            continue;
        };
        // Operand batch index `ab` over (the indices' dims, the table's batch dims after its
        // first): its slab is the table's `idx[ab / inner]`, then `ab % inner` within it.
        let td = dims(g, table, b)?;
        let inner: usize = td[1..td.len() - 2].iter().product();
        checks.push(slab_check(g, v.node, td[0]));
        let _ = writeln!(
            body,
            "    let ab{slot} = {flat};\n    let raw{slot} = in{}[ab{slot} / {inner}u];",
            bound.len() + 1
        );
        let (raw, e, d, site) = (format!("raw{slot}"), format!("e{slot}"), size_i32(g, v.node, td[0])?, checks.len());
        if rows {
            // No return before the tree's barriers: a bad index reads slab 0 and writes 0.
            let _ = writeln!(
                body,
                "    var {e} = {raw};\n    if ({e} < 0i) {{ {e} = {e} + {d}i; }}\n    if ({e} < 0i || {e} >= {d}i) {{ if (live && lane == 0u) {{ fail_({site}u, {raw}, i); }} {e} = 0i; bad = true; }}"
            );
        } else {
            body.push_str(&check_index(&raw, &e, d, site, zero));
        }
        let _ = writeln!(body, "    let base{slot} = (u32(e{slot}) * {inner}u + ab{slot} % {inner}u) * {size}u;");
        operands.push((format!("in{}", bound.len()), packed_f16(g, table)));
        bound.extend([table, idx]);
    }
    if rows {
        let one = RowSum { a: &operands[0], acc: "acc", row: "row", base: "base0" };
        let two = RowSum { a: &operands[0], acc: "acc1", row: "row + 1u", base: "base0" };
        let both = [one, two];
        body.push_str(&row_loop(&both[..per_group], &operands[1], k, ln.lanes));
    } else {
        let ((a, pa), (w, pw)) = (&operands[0], &operands[1]);
        let _ = writeln!(
            body,
            "    var acc = 0.0;\n    for (var p = 0u; p < KK; p += 1u) {{ acc = acc + {} * {}; }}",
            read(a, "base0 + row * KK + p", *pa),
            read(w, "base1 + p * NN + col", *pw)
        );
    }
    let (groups, prelude) = if rows {
        let mut prelude = String::new();
        let sums = ln.sums(&["acc", "acc1"][..per_group], &mut body, &mut prelude, t);
        for (r, sum) in sums.iter().enumerate() {
            let _ = writeln!(body, "    if (live && lane == 0u) {{ out0[i + {r}u] = select({sum}, {zero}, bad); }}");
        }
        (((total / per_group) as u64).div_ceil(ln.per_workgroup() as u64), prelude)
    } else {
        body.push_str("    out0[i] = acc;\n");
        ((total as u64).div_ceil(WORKGROUP as u64), String::new())
    };
    kernel(
        g,
        g.node(n).name.clone(),
        KernelKind::BatchedMatmul,
        &bound,
        out,
        groups,
        WORKGROUP,
        &prelude,
        &body,
        checks,
        t,
    )
}

/// A `FusedGateUp` whose weights hold a matrix per row of x (`[P, N, K]`, a mixture of
/// experts' gated unit: each token-expert pair's expert matrix, gathered per pair, read in
/// place where it is [`Graph::gathered_rows`]): `out[p, j] = act(W[p][go + j] · x[p]) ·
/// (W'[p][uo + j] · x[p])`. Grouped by expert where the pairs outnumber the experts
/// (`grouped.rs`); else lanes along k per output element as the matrix-times-vector kernel
/// above, each element's two rows (gate and up) summed side by side and the activation and
/// product applied by the lane that writes it.
pub(crate) fn fused_experts(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    if let Some(k) = super::grouped::grouped_fused(g, n, b, t)? {
        return Ok(k);
    }
    let Op::FusedGateUp(f) = &g.node(n).op else {
        return Err(Error::Internal(format!("node '{}': fused_experts() on another op", g.node(n).name)));
    };
    let ins = g.inputs(n);
    let out = Value::of(n);
    if f.layout != Layout::Nk || f.gate_bias || f.up_bias {
        return Err(Error::graph(
            &g.node(n).name,
            "no GPU kernel for a gated unit with a matrix per row of x in [K, N] layout or with biases",
        ));
    }
    let (xd, wd, od) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?, dims(g, out, b)?);
    let (pairs, k, width, slab) = (xd[0], xd[1], od[1], wd[1] * wd[2]);
    let total = pairs * width;
    let zero = Store::of(g, out).zero();
    // Lanes as for the unfused products' rows, two an output: with a workgroup an output
    // below `ROW_WIDE_BELOW` outputs (rather than rows), a Mixtral-like decode step's gated
    // units (7168 outputs) took 26.8 µs a layer on an H200 where the unfused product, 32
    // lanes a row, took 23.4 and its program 7.1 (timestamped; `h200-2026-11-29-experts.md`).
    let ln = Lanes::of(2 * total, t);
    let (group, lane) = ln.group_and_lane();
    // Elements in the order (column, pair), as the matrix-times-vector kernel's (row, batch).
    let mut body = format!(
        "    let lane = {lane};\n    let o = gid * {per}u + {group};\n    let live = o < {total}u;\n    let oo = select(0u, o, live);\n    let KK = {k}u;\n    let j = oo / {pairs}u;\n    let p = oo % {pairs}u;\n    let i = p * {width}u + j;\n    var bad = false;\n    let base1 = {} * KK;\n",
        super::pair_row(g, ins[0]),
        per = ln.per_workgroup()
    );
    // x first; then each weight (one where gate and up are merged), itself or the table and
    // indices it gathers from, its matrix for pair `p` from `wb{slot}` on.
    let (mut bound, mut checks, mut operands) = (vec![ins[0]], vec![], vec![]);
    let weights = if ins[1] == ins[2] { vec![ins[1]] } else { vec![ins[1], ins[2]] };
    for (slot, &w) in weights.iter().enumerate() {
        let Some((table, idx)) = g.gathered_rows(w) else {
            let _ = writeln!(body, "    let wb{slot} = p * {slab}u;");
            operands.push((format!("in{}", bound.len()), packed_f16(g, w)));
            bound.push(w);
            continue;
        };
        let experts = dims(g, table, b)?[0];
        checks.push(slab_check(g, w.node, experts));
        let (d, site) = (size_i32(g, w.node, experts)?, checks.len());
        // No return before the reductions' barriers: a bad index reads matrix 0 and writes 0.
        let _ = writeln!(
            body,
            "    let raw{slot} = in{}[p];\n    var e{slot} = raw{slot};\n    if (e{slot} < 0i) {{ e{slot} = e{slot} + {d}i; }}\n    if (e{slot} < 0i || e{slot} >= {d}i) {{ if (live && lane == 0u) {{ fail_({site}u, raw{slot}, i); }} e{slot} = 0i; bad = true; }}\n    let wb{slot} = u32(e{slot}) * {slab}u;",
            bound.len() + 1
        );
        operands.push((format!("in{}", bound.len()), packed_f16(g, table)));
        bound.extend([table, idx]);
    }
    let x = ("in0".to_string(), packed_f16(g, ins[0]));
    // The gate's and the up's rows side by side in one loop (each x unit read once for both).
    let up = operands.len() - 1;
    let (gr, ur) = (format!("{}u + j", f.gate_offset), format!("{}u + j", f.up_offset));
    let ub = format!("wb{up}");
    let rows = [
        RowSum { a: &operands[0], acc: "accg", row: &gr, base: "wb0" },
        RowSum { a: &operands[up], acc: "accu", row: &ur, base: &ub },
    ];
    body.push_str(&row_loop(&rows, &x, k, ln.lanes));
    let mut prelude = String::from(MATH);
    let sums = ln.sums(&["accg", "accu"], &mut body, &mut prelude, t);
    let _ = writeln!(
        body,
        "    if (live && lane == 0u) {{ out0[i] = select({} * {}, {zero}, bad); }}",
        act_call(f.activation, &sums[0]),
        sums[1]
    );
    kernel(
        g,
        g.node(n).name.clone(),
        KernelKind::FusedExperts,
        &bound,
        out,
        (total as u64).div_ceil(ln.per_workgroup() as u64),
        WORKGROUP,
        &prelude,
        &body,
        checks,
        t,
    )
}

/// How the lanes of a matrix-times-vector kernel sit: a workgroup an element where the
/// elements (rows summed) are fewer than [`ROW_WIDE_BELOW`], else [`ROW_LANES`] an element, one
/// subgroup each where the device's subgroups are that wide.
struct Lanes {
    /// Lanes an element.
    lanes: usize,
    /// The 32 lanes of an element are one subgroup (numbered by it).
    sg32: bool,
}

impl Lanes {
    fn of(rows: usize, t: &Target) -> Lanes {
        let lanes = if rows < ROW_WIDE_BELOW { WORKGROUP as usize } else { ROW_LANES };
        Lanes { lanes, sg32: lanes == ROW_LANES && subgroup(t) == Some(ROW_LANES) }
    }

    /// A workgroup an element.
    fn wide(&self) -> bool {
        self.lanes == WORKGROUP as usize
    }

    /// WGSL of an element's lane group within the workgroup and of a lane within it.
    fn group_and_lane(&self) -> (&'static str, &'static str) {
        if self.wide() {
            ("0u", "lid")
        } else if self.sg32 {
            ("sg_id", "sg_lane")
        } else {
            ("lid / 32u", "lid % 32u")
        }
    }

    /// Elements a workgroup.
    fn per_workgroup(&self) -> usize {
        WORKGROUP as usize / self.lanes
    }

    /// Adds up each of `accs` (variables) over an element's lanes: WGSL appended to `body`
    /// (and `prelude`: the workgroup array and functions it needs); returns the expressions of
    /// the sums, read by the element's lane 0.
    fn sums(&self, accs: &[&str], body: &mut String, prelude: &mut String, t: &Target) -> Vec<String> {
        let w = WORKGROUP as usize;
        let at: Vec<(usize, String)> = accs.iter().enumerate().map(|(r, a)| (r * w, a.to_string())).collect();
        let sums = if self.wide() {
            body.push_str(&tree_reduce_rows(&RedArray::F32, &at, WORKGROUP, "add_f_", subgroup(t)));
            prelude.push_str("fn add_f_(a: f32, b: f32) -> f32 { return a + b; }\n");
            at.iter().map(|(base, _)| format!("red[{base}]")).collect()
        } else if self.sg32 {
            for (r, a) in accs.iter().enumerate() {
                let _ = writeln!(body, "    let sum{r} = subgroupAdd({a});");
            }
            (0..accs.len()).map(|r| format!("sum{r}")).collect()
        } else {
            for (base, a) in &at {
                let _ = writeln!(body, "    red[{base}u + lid] = {a};");
            }
            body.push_str("    workgroupBarrier();\n");
            tree_sum(body, ROW_LANES, 1, accs.len());
            at.iter().map(|(base, _)| format!("red[{base}u + lid]")).collect()
        };
        if !self.sg32 {
            let _ = writeln!(prelude, "var<workgroup> red: array<f32, {}>;", accs.len() * w);
        }
        sums
    }
}

/// One row a [`row_loop`] sums: the matrix's binding (and whether it is packed f16), the
/// variable the sum goes into (declared by the loop), the row's index and the element the
/// matrix starts at (WGSL expressions).
struct RowSum<'a> {
    a: &'a (String, bool),
    acc: &'a str,
    row: &'a str,
    base: &'a str,
}

/// WGSL summing, into each `acc`, lane `lane`'s part of its row of its matrix times the
/// vector (binding `x`, from `base1`), `lanes` lanes side by side along k: each lane reads
/// [`ROW_UNROLL`] units of every row a step, `lanes` units apart, so that a subgroup's loads
/// cover consecutive bytes and several are in flight at once (the rows of a step side by
/// side: a fused gated unit's gate and up, each unit of x read once for both). A unit is a
/// word of two halves where the matrices are packed f16 and k is even (every row then starts
/// on a word), else one element. One element a lane at a time, one load in flight, read the
/// expert tables of a decode step at 0.7–0.8 TB/s on an H200.
fn row_loop(rows: &[RowSum], x: &(String, bool), k: usize, lanes: usize) -> String {
    let words = rows.iter().all(|r| r.a.1) && k % 2 == 0;
    let units = if words { k / 2 } else { k };
    let xr = |e: &str| read(&x.0, &format!("base1 + {e}"), x.1);
    let mut s = String::new();
    for (i, r) in rows.iter().enumerate() {
        let _ = writeln!(s, "    var {} = 0.0;\n    let ra{i} = {} + ({}) * KK;", r.acc, r.base, r.row);
    }
    let _ = writeln!(s, "    for (var u0 = lane; u0 < {units}u; u0 += {}u) {{", lanes * ROW_UNROLL);
    for j in 0..ROW_UNROLL {
        let _ = write!(s, "        let u{j} = u0 + {}u;\n        if (u{j} < {units}u) {{", j * lanes);
        if words {
            let (x0, x1) = (xr(&format!("2u * u{j}")), xr(&format!("2u * u{j} + 1u")));
            let _ = write!(s, " let x{j}a = {x0}; let x{j}b = {x1};");
            for (i, r) in rows.iter().enumerate() {
                let _ = write!(
                    s,
                    " let w{j}_{i} = unpack2x16float({}[(ra{i} >> 1u) + u{j}]); {acc} = {acc} + w{j}_{i}.x * x{j}a + w{j}_{i}.y * x{j}b;",
                    r.a.0,
                    acc = r.acc
                );
            }
        } else {
            let _ = write!(s, " let x{j} = {};", xr(&format!("u{j}")));
            for (i, r) in rows.iter().enumerate() {
                let _ = write!(
                    s,
                    " {acc} = {acc} + {} * x{j};",
                    read(&r.a.0, &format!("ra{i} + u{j}"), r.a.1),
                    acc = r.acc
                );
            }
        }
        s.push_str(" }\n");
    }
    s.push_str("    }\n");
    s
}

/// Units ([`row_loop`]) each lane of a matrix-times-vector product reads a step: with four
/// the experts of a Mixtral-like decode step took 364 µs against 447 with one, and eight were
/// within a percent of four (`benches/results/h200-2026-11-28-topk.md`).
const ROW_UNROLL: usize = 4;

/// Shortest k for which a matrix-times-vector product takes lanes along k per output element
/// (one thread walking a shorter row is as fast).
const ROW_MIN_K: usize = 64;

/// Lanes per output element of a matrix-times-vector product with many elements.
const ROW_LANES: usize = 32;

/// Fewest output elements a matrix-times-vector product gives [`ROW_LANES`] lanes each
/// (fewer take a workgroup each: more loads in flight).
const ROW_WIDE_BELOW: usize = 8192;
