//! `MatMul` with a right operand of rank above 2: `[.., M, K] · [.., K, N]`, batch dims
//! broadcast, one thread per output element; where N is 1 and k long (a matrix times a vector
//! per batch: a mixture of experts' products, each token's expert matrix times its row), one
//! workgroup per output element instead, its threads reading the row of k side by side and
//! adding up their sums in a tree (a thread walking a row of 3584 alone took 540 µs on an H200
//! for what the row's bytes take 3 µs to read); the workgroups run row by row over the
//! batches (`benches/results/h200-2026-11-28-moe.md`).
//!
//! An operand that gathers whole slabs of a table ([`Graph::gathered_rows`]: a mixture of
//! experts' weights picked per token) is read in place: the kernel binds the table and the
//! indices instead, checks each index as the gather would (negative ones counting from the
//! end, one out of range an error naming the gather), and reads the slab it names. The gather
//! itself takes no kernel and no buffer.

use crate::index::{check_index, size_i32, source_input};
use crate::wgsl::{bcast_index, kernel, read, row_threads, subgroup, tree_reduce, Store, WORKGROUP};
use crate::{dims, packed_f16, Check, CheckKind, KernelKind, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Graph, NodeIndex, Op, Result, Value};
use std::fmt::Write;

/// `[.., M, K] · [.., K, N]` with broadcast batch dims, one thread per output element.
pub(crate) fn batched_matmul(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let ins = g.inputs(n);
    let out = Value::of(n);
    let (ad, bd, od) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?, dims(g, out, b)?);
    let (m, k, nn) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch = &od[..od.len() - 2];
    let total: usize = od.iter().product();
    let zero = Store::of(g, out).zero();
    // A matrix times a vector per batch, k long: a workgroup per output element.
    let rows = nn == 1 && k >= ROW_MIN_K;
    let threads = if rows { row_threads(k) } else { WORKGROUP };
    let (first, step) = if rows { ("lid", format!("{threads}u")) } else { ("0u", "1u".to_string()) };
    let mut body = if rows {
        // Workgroups in the order (row, batch): the batches that read one slab's row (a
        // prefill's tokens of one expert) read it one after another, while it is cached.
        let batches = total / m;
        format!(
            "    if (gid >= {total}u) {{ return; }}\n    let KK = {k}u;\n    let NN = 1u;\n    let col = 0u;\n    let row = gid / {batches}u;\n    let bi = gid % {batches}u;\n    let i = bi * {m}u + row;\n    var bad = false;\n"
        )
    } else {
        format!(
            "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let KK = {k}u;\n    let NN = {nn}u;\n    let col = i % NN;\n    let row = (i / NN) % {m}u;\n    let bi = i / ({m}u * NN);\n"
        )
    };
    // The values bound (`in0..`), the checks, and each operand's read of element `at`.
    let (mut bound, mut checks, mut reads) = (vec![], vec![], vec![]);
    for (slot, (v, vd, size, at)) in
        [(ins[0], &ad, m * k, "row * KK + p"), (ins[1], &bd, k * nn, "p * NN + col")].into_iter().enumerate()
    {
        let flat = bcast_index(batch, &vd[..vd.len() - 2], "bi");
        let Some((table, idx)) = g.gathered_rows(v) else {
            let _ = writeln!(body, "    let base{slot} = ({flat}) * {size}u;");
            reads.push(read(&format!("in{}", bound.len()), &format!("base{slot} + {at}"), packed_f16(g, v)));
            bound.push(v);
            continue;
        };
        // Operand batch index `ab` over (the indices' dims, the table's batch dims after its
        // first): its slab is the table's `idx[ab / inner]`, then `ab % inner` within it.
        let td = dims(g, table, b)?;
        let inner: usize = td[1..td.len() - 2].iter().product();
        let gather = g.node(v.node);
        let what = if matches!(gather.op, Op::Gather { .. }) {
            "elements along axis 0".to_string()
        } else {
            "elements along axis 0 (position 0 of an index tuple)".to_string()
        };
        checks.push(Check {
            node: gather.name.clone(),
            kind: CheckKind::Index {
                size: td[0],
                what,
                indices_from: source_input(g, idx),
                data_from: source_input(g, table),
            },
        });
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
                "    var {e} = {raw};\n    if ({e} < 0i) {{ {e} = {e} + {d}i; }}\n    if ({e} < 0i || {e} >= {d}i) {{ if (lid == 0u) {{ fail_({site}u, {raw}, i); }} {e} = 0i; bad = true; }}"
            );
        } else {
            body.push_str(&check_index(&raw, &e, d, site, zero));
        }
        let _ = writeln!(body, "    let base{slot} = (u32(e{slot}) * {inner}u + ab{slot} % {inner}u) * {size}u;");
        reads.push(read(&format!("in{}", bound.len()), &format!("base{slot} + {at}"), packed_f16(g, table)));
        bound.extend([table, idx]);
    }
    let _ = writeln!(
        body,
        "    var acc = 0.0;\n    for (var p = {first}; p < KK; p += {step}) {{ acc = acc + {} * {}; }}",
        reads[0], reads[1]
    );
    let (groups, prelude) = if rows {
        body.push_str(&tree_reduce(threads, "acc", "add_f_", subgroup(t)));
        body.push_str(&format!("    if (lid == 0u) {{ out0[i] = select(red[0], {zero}, bad); }}\n"));
        let prelude = format!(
            "fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\nvar<workgroup> red: array<f32, {threads}>;\n"
        );
        (total as u64, prelude)
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
        threads,
        &prelude,
        &body,
        checks,
        t,
    )
}

/// Shortest k a matrix-times-vector product takes a workgroup per output element for (one
/// thread walking a shorter row is as fast).
const ROW_MIN_K: usize = 64;
