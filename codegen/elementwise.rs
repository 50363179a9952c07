//! Kernels that map output elements to input elements: unary and binary elementwise ops
//! (numpy broadcasting), casts, transposes, slices and splits, concats, and the general
//! batched matmul (one thread per output element; used when the right operand is not 2-D).

use super::{dims, grid, module, packed_f16, Binding, KernelSource, Target, MATH, WORKGROUP};
use crate::ir::*;
use crate::shape::{norm_axis, Bindings};
use crate::tensor::strides;
use crate::{Graph, Result};
use petgraph::stable_graph::NodeIndex;

/// WGSL reading element `idx` of binding `name`.
pub(crate) fn read(name: &str, idx: &str, packed: bool) -> String {
    if packed {
        format!("unpack2x16float({name}[({idx}) >> 1u])[({idx}) & 1u]")
    } else {
        format!("{name}[{idx}]")
    }
}

/// WGSL computing the flat index into an input of dims `inp` broadcast to `out`, from `i`.
fn bcast_index(out: &[usize], inp: &[usize], i: &str) -> String {
    let off = out.len() - inp.len();
    let (os, is) = (strides(out), strides(inp));
    let mut terms = vec![];
    for (d, &sz) in inp.iter().enumerate() {
        if sz == 1 {
            continue;
        }
        let (od, ost) = (out[d + off], os[d + off]);
        let coord = if d + off == 0 { format!("({i} / {ost}u)") } else { format!("(({i} / {ost}u) % {od}u)") };
        terms.push(if is[d] == 1 { coord } else { format!("{coord} * {}u", is[d]) });
    }
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

fn unary_expr(u: UnaryOp, x: &str) -> Option<String> {
    Some(match u {
        UnaryOp::Neg => format!("-{x}"),
        UnaryOp::Exp => format!("exp({x})"),
        UnaryOp::Sqrt => format!("sqrt({x})"),
        UnaryOp::Erf => format!("erf_({x})"),
        UnaryOp::Tanh => format!("tanh_({x})"),
        UnaryOp::Sigmoid => format!("sigmoid_({x})"),
        UnaryOp::Relu => format!("relu_({x})"),
        UnaryOp::Silu => format!("silu_({x})"),
        UnaryOp::GeluTanh => format!("gelu_tanh_({x})"),
        UnaryOp::GeluErf => format!("gelu_erf_({x})"),
        UnaryOp::Reciprocal
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Log
        | UnaryOp::Abs
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Softplus
        | UnaryOp::Not
        | UnaryOp::IsNaN => return None,
    })
}

fn binary_expr(op: BinaryOp, a: &str, b: &str) -> Option<String> {
    Some(match op {
        BinaryOp::Add => format!("{a} + {b}"),
        BinaryOp::Sub => format!("{a} - {b}"),
        BinaryOp::Mul => format!("{a} * {b}"),
        BinaryOp::Div => format!("{a} / {b}"),
        // pow() is undefined for negative bases in WGSL; integral exponents are exact here.
        BinaryOp::Pow => format!("pow_({a}, {b})"),
        BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Equal
        | BinaryOp::Less
        | BinaryOp::LessOrEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterOrEqual
        | BinaryOp::And
        | BinaryOp::Or => return None,
    })
}

const POW: &str = r#"
fn pow_(a: f32, b: f32) -> f32 {
    if (b == round(b) && abs(b) <= 16.0) {
        var r = 1.0;
        for (var k = 0; k < i32(abs(b)); k++) { r = r * a; }
        return select(r, 1.0 / r, b < 0.0);
    }
    return pow(a, b);
}
"#;

/// A kernel of one thread per output element: inputs bound as `in0..`, the output as
/// `out0`, `total` threads over a 1-D (or, past the device's limit, 2-D) grid.
#[allow(clippy::too_many_arguments)]
fn per_element(
    g: &Graph,
    name: String,
    kind: &str,
    ins: &[Value],
    out: Value,
    total: usize,
    prelude: &str,
    body: &str,
    t: &Target,
) -> Result<KernelSource> {
    let mut binds: Vec<(String, bool, bool)> =
        ins.iter().enumerate().map(|(k, &v)| (format!("in{k}"), false, packed_f16(g, v))).collect();
    binds.push(("out0".into(), true, false));
    let mut bindings: Vec<Binding> =
        ins.iter().map(|&v| Binding { value: g.value_name(v), write: false, packed_f16: packed_f16(g, v) }).collect();
    bindings.push(Binding { value: g.value_name(out), write: true, packed_f16: false });
    Ok(KernelSource {
        name,
        kind: kind.into(),
        wgsl: module(&binds, WORKGROUP, prelude, body),
        bindings,
        workgroups: grid((total as u64).div_ceil(WORKGROUP as u64), t.max_workgroups_per_dim)?,
    })
}

/// A kernel over `n` output elements whose element `i` is `expr`.
#[allow(clippy::too_many_arguments)]
fn map_kernel(
    g: &Graph,
    name: String,
    kind: &str,
    ins: &[Value],
    out: Value,
    n: usize,
    expr: &str,
    t: &Target,
) -> Result<KernelSource> {
    let body =
        format!("    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {n}u) {{ return; }}\n    out0[i] = {expr};\n");
    per_element(g, name, kind, ins, out, n, &format!("{MATH}{POW}"), &body, t)
}

/// Kernels of the index-mapping ops.
pub fn kernels(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Vec<KernelSource>> {
    let node = g.node(n);
    let ins = g.inputs(n);
    let out = Value::of(n);
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let rd = |k: usize, idx: &str| read(&format!("in{k}"), idx, packed_f16(g, ins[k]));
    let name = node.name.clone();
    let ks = match &node.op {
        Op::Unary(u) => {
            let e = unary_expr(*u, &rd(0, "i")).ok_or_else(|| no_kernel(node))?;
            vec![map_kernel(g, name, "elementwise", &ins, out, total, &e, t)?]
        }
        Op::Binary(op) => {
            let (a, c) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
            let e = binary_expr(*op, &rd(0, &bcast_index(&od, &a, "i")), &rd(1, &bcast_index(&od, &c, "i")))
                .ok_or_else(|| no_kernel(node))?;
            vec![map_kernel(g, name, "elementwise", &ins, out, total, &e, t)?]
        }
        Op::Cast { to } => {
            let e = if *to == DType::F16 { format!("round_f16_({})", rd(0, "i")) } else { rd(0, "i") };
            vec![map_kernel(g, name, "cast", &ins, out, total, &e, t)?]
        }
        Op::Transpose { perm } => {
            let id = dims(g, ins[0], b)?;
            let (is, os) = (strides(&id), strides(&od));
            let terms: Vec<String> = perm
                .iter()
                .enumerate()
                .map(|(d, &p)| format!("((i / {}u) % {}u) * {}u", os[d], od[d], is[p]))
                .collect();
            vec![map_kernel(g, name, "transpose", &ins, out, total, &rd(0, &terms.join(" + ")), t)?]
        }
        Op::Slice { axis, start, step: 1, .. } => {
            let id = dims(g, ins[0], b)?;
            let ax = norm_axis(*axis, id.len()).expect("verified");
            let s = start.eval(b).map_err(|m| crate::Error::graph(&node.name, m))?;
            if s + od[ax] > id[ax] {
                return Err(crate::Error::graph(
                    &node.name,
                    format!("slice {s}..{} does not fit axis {ax} of size {}", s + od[ax], id[ax]),
                ));
            }
            vec![slice_kernel(g, name, &ins, out, &id, &od, ax, s, &rd, t)?]
        }
        Op::Split { axis, sizes } => {
            let id = dims(g, ins[0], b)?;
            let ax = norm_axis(*axis, id.len()).expect("verified");
            let mut start = 0;
            let mut v = vec![];
            for k in 0..sizes.len() {
                let o = Value { node: n, output: k };
                let od = dims(g, o, b)?;
                v.push(slice_kernel(g, format!("{name}:{k}"), &ins, o, &id, &od, ax, start, &rd, t)?);
                start += od[ax];
            }
            v
        }
        Op::Concat { axis } => {
            let ax = norm_axis(*axis, od.len()).expect("verified");
            vec![concat_kernel(g, name, &ins, out, total, ax, &od, b, t)?]
        }
        Op::Slice { .. }
        | Op::Input
        | Op::Weight(_)
        | Op::Constant(_)
        | Op::SymConstant(_)
        | Op::MatMul
        | Op::Where
        | Op::Reduce { .. }
        | Op::Softmax { .. }
        | Op::CumSum { .. }
        | Op::LayerNorm { .. }
        | Op::Gather { .. }
        | Op::GatherND { .. }
        | Op::Range { .. }
        | Op::Reshape { .. }
        | Op::Expand { .. }
        | Op::FusedGateUp(_)
        | Op::Opaque { .. } => return Err(no_kernel(node)),
    };
    Ok(ks)
}

/// The error for a node (or an attribute of it) no elementwise kernel is written for yet.
fn no_kernel(node: &crate::ir::Node) -> crate::Error {
    crate::Error::graph(&node.name, format!("no GPU kernel yet for {} (the CPU interpreter runs it)", node.op.label()))
}

#[allow(clippy::too_many_arguments)]
fn slice_kernel(
    g: &Graph,
    name: String,
    ins: &[Value],
    out: Value,
    id: &[usize],
    od: &[usize],
    ax: usize,
    start: usize,
    rd: &dyn Fn(usize, &str) -> String,
    t: &Target,
) -> Result<KernelSource> {
    let inner: usize = id[ax + 1..].iter().product();
    let total: usize = od.iter().product();
    // out index i = (outer, c, r) with c < od[ax]; input index = (outer, c + start, r).
    let idx = format!(
        "(i / {}u) * {}u + ((i / {inner}u) % {}u + {start}u) * {inner}u + (i % {inner}u)",
        od[ax] * inner,
        id[ax] * inner,
        od[ax]
    );
    map_kernel(g, name, "slice", &ins[..1], out, total, &rd(0, &idx), t)
}

#[allow(clippy::too_many_arguments)]
fn concat_kernel(
    g: &Graph,
    name: String,
    ins: &[Value],
    out: Value,
    total: usize,
    ax: usize,
    od: &[usize],
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let inner: usize = od[ax + 1..].iter().product();
    let mut body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let outer = i / {}u;\n    let c = (i / {inner}u) % {}u;\n    let r = i % {inner}u;\n",
        od[ax] * inner,
        od[ax]
    );
    let mut lo = 0;
    for (k, &v) in ins.iter().enumerate() {
        let d = dims(g, v, b)?;
        let hi = lo + d[ax];
        let src = read(
            &format!("in{k}"),
            &format!("outer * {}u + (c - {lo}u) * {inner}u + r", d[ax] * inner),
            packed_f16(g, v),
        );
        body.push_str(&format!("    if (c >= {lo}u && c < {hi}u) {{ out0[i] = {src}; }}\n"));
        lo = hi;
    }
    per_element(g, name, "concat", ins, out, total, "", &body, t)
}

/// `[.., M, K] · [.., K, N]` with broadcast batch dims, one thread per output element.
pub fn batched_matmul(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
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
    per_element(g, g.node(n).name.clone(), "batched-matmul", &ins, out, total, "", &body, t)
}
