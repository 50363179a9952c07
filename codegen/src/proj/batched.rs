//! `MatMul` with a right operand of rank above 2: `[.., M, K] · [.., K, N]`, batch dims
//! broadcast, one thread per output element.

use crate::wgsl::{bcast_index, per_element, read, WORKGROUP};
use crate::{dims, packed_f16, KernelKind, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Graph, NodeIndex, Result, Value};

/// `[.., M, K] · [.., K, N]` with broadcast batch dims, one thread per output element.
pub(crate) fn batched_matmul(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let ins = g.inputs(n);
    let out = Value::of(n);
    let (ad, bd, od) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?, dims(g, out, b)?);
    let (m, k, nn) = (ad[ad.len() - 2], ad[ad.len() - 1], bd[bd.len() - 1]);
    let batch = &od[..od.len() - 2];
    let total: usize = od.iter().product();
    let ab = bcast_index(batch, &ad[..ad.len() - 2], "bi");
    let bb = bcast_index(batch, &bd[..bd.len() - 2], "bi");
    let ra = read("in0", "abase + row * KK + p", packed_f16(g, ins[0]));
    let rb = read("in1", "bbase + p * NN + col", packed_f16(g, ins[1]));
    let body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let KK = {k}u;\n    let NN = {nn}u;\n    let col = i % NN;\n    let row = (i / NN) % {m}u;\n    let bi = i / ({m}u * NN);\n    let abase = ({ab}) * {}u;\n    let bbase = ({bb}) * {}u;\n    var acc = 0.0;\n    for (var p = 0u; p < KK; p++) {{ acc = acc + {ra} * {rb}; }}\n    out0[i] = acc;\n",
        m * k,
        k * nn
    );
    per_element(g, g.node(n).name.clone(), KernelKind::BatchedMatmul, &ins, out, total, "", &body, t)
}
