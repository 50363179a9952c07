//! `MatMul` with a right operand of rank above 2: `[.., M, K] · [.., K, N]`, batch dims
//! broadcast, one thread per output element.
//!
//! An operand that gathers whole slabs of a table ([`Graph::gathered_rows`]: a mixture of
//! experts' weights picked per token) is read in place: the kernel binds the table and the
//! indices instead, checks each index as the gather would (negative ones counting from the
//! end, one out of range an error naming the gather), and reads the slab it names. The gather
//! itself takes no kernel and no buffer.

use crate::index::{check_index, size_i32, source_input};
use crate::wgsl::{bcast_index, kernel, read, Store, WORKGROUP};
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
    let mut body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let KK = {k}u;\n    let NN = {nn}u;\n    let col = i % NN;\n    let row = (i / NN) % {m}u;\n    let bi = i / ({m}u * NN);\n"
    );
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
        body.push_str(&check_index(
            &format!("raw{slot}"),
            &format!("e{slot}"),
            size_i32(g, v.node, td[0])?,
            checks.len(),
            zero,
        ));
        let _ = writeln!(body, "    let base{slot} = (u32(e{slot}) * {inner}u + ab{slot} % {inner}u) * {size}u;");
        reads.push(read(&format!("in{}", bound.len()), &format!("base{slot} + {at}"), packed_f16(g, table)));
        bound.extend([table, idx]);
    }
    let _ = write!(
        body,
        "    var acc = 0.0;\n    for (var p = 0u; p < KK; p++) {{ acc = acc + {} * {}; }}\n    out0[i] = acc;\n",
        reads[0], reads[1]
    );
    let groups = (total as u64).div_ceil(WORKGROUP as u64);
    kernel(g, g.node(n).name.clone(), KernelKind::BatchedMatmul, &bound, out, groups, WORKGROUP, "", &body, checks, t)
}
