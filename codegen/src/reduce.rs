//! Reductions, one workgroup per output row: `ReduceMean`/`ReduceSum`/`ReduceMax`/`ReduceProd`
//! over any axes, `Softmax`, `CumSum` and `TopK` along any axis. The workgroup's threads stride
//! over the row together and combine their partial results with a tree in workgroup memory
//! ([`tree_reduce`]), so a long axis (a vocabulary-sized softmax row) is read by 256 threads
//! at once, never walked by one.
//!
//! Floats accumulate in f32 (the interpreter in f64). Softmax subtracts the row's maximum
//! before exponentiating: a row masked with -3.4e38 everywhere comes out uniform, one of
//! `-inf` NaN, as in onnxruntime. Integer sums and products of i64 values are checked for
//! results past 32 bits; the maximum of nothing is the lowest value (-inf for floats), the sum
//! 0, the product 1, the mean NaN, as ONNX says.

use crate::wgsl::{checked_int_math, kernel, kernel_outs, load, row_threads, subgroup, tree_reduce, Store, WORKGROUP};
use crate::{dims, Check, CheckKind, KernelKind, KernelSource, Target};
use glufuse_ir::shape::{norm_axis, Bindings};
use glufuse_ir::tensor::strides;
use glufuse_ir::{DType, Error, Graph, NodeIndex, ReduceOp, Result, Value};
use std::fmt::Write;

/// WGSL of `-inf`.
const NEG_INF: &str = "bitcast<f32>(0xff800000u)";

/// The combining function `comb_` of a reduction over values of `store`, its identity, and
/// the checks it makes (an i64 sum past 32 bits).
fn combiner(op: ReduceOp, store: Store, dtype: DType, node: &str) -> (String, &'static str, Vec<Check>) {
    match (op, store) {
        (ReduceOp::Max, Store::I32) => {
            ("fn comb_(a: i32, b: i32, at: u32) -> i32 { return max(a, b); }\n".into(), "-2147483647i - 1i", vec![])
        }
        (ReduceOp::Sum | ReduceOp::Mean, Store::I32) if dtype == DType::I64 => {
            let check = Check { node: node.to_string(), kind: CheckKind::Overflow };
            let f = format!("{}fn comb_(a: i32, b: i32, at: u32) -> i32 {{ return add_(a, b, at); }}\n", checked_int_math(1));
            (f, "0i", vec![check])
        }
        (ReduceOp::Sum | ReduceOp::Mean, Store::I32) => {
            ("fn comb_(a: i32, b: i32, at: u32) -> i32 { return a + b; }\n".into(), "0i", vec![])
        }
        (ReduceOp::Max, _) => (
            "fn isnan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }\nfn comb_(a: f32, b: f32, at: u32) -> f32 { if (isnan_(a) || isnan_(b)) { return bitcast<f32>(0x7fc00000u); } return max(a, b); }\n"
                .into(),
            NEG_INF,
            vec![],
        ),
        (ReduceOp::Sum | ReduceOp::Mean, _) => {
            ("fn comb_(a: f32, b: f32, at: u32) -> f32 { return a + b; }\n".into(), "0.0", vec![])
        }
        (ReduceOp::Prod, Store::I32) if dtype == DType::I64 => {
            let check = Check { node: node.to_string(), kind: CheckKind::Overflow };
            let f = format!("{}fn comb_(a: i32, b: i32, at: u32) -> i32 {{ return mul_(a, b, at); }}\n", checked_int_math(1));
            (f, "1i", vec![check])
        }
        (ReduceOp::Prod, Store::I32) => {
            ("fn comb_(a: i32, b: i32, at: u32) -> i32 { return a * b; }\n".into(), "1i", vec![])
        }
        (ReduceOp::Prod, _) => ("fn comb_(a: f32, b: f32, at: u32) -> f32 { return a * b; }\n".into(), "1.0", vec![]),
    }
}

/// WGSL of the flat input index of element `r` of the reduced dims of output row `o`: each
/// coordinate taken out of `var` by division and remainder over `sizes`, times its stride.
fn coords(var: &str, axes: &[usize], shape: &[usize], st: &[usize]) -> String {
    let mut terms = vec![];
    let mut below = 1usize;
    for &a in axes.iter().rev() {
        let coord = if below == 1 {
            format!("({var} % {}u)", shape[a])
        } else {
            format!("(({var} / {below}u) % {}u)", shape[a])
        };
        terms.push(if st[a] == 1 { coord } else { format!("{coord} * {}u", st[a]) });
        below *= shape[a];
    }
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

/// Most elements an output of a reduction may have for one thread to walk them alone
/// ([`reduce`]); a longer run takes a workgroup. A Mixtral-like prefill's sum over each
/// token's two experts (128 × 1024 outputs of 2) took 125 µs a layer on an H200 with a
/// workgroup of 32 threads per output.
const SHORT_AXIS: usize = 16;

/// The kernel of a reduction over `axes` (every axis when empty): one workgroup per output
/// element, its threads striding over the reduced elements, or, where they are at most
/// [`SHORT_AXIS`], one thread per output element.
pub(crate) fn reduce(
    g: &Graph,
    n: NodeIndex,
    op: ReduceOp,
    axes: &[i64],
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let id = dims(g, ins[0], b)?;
    let mut red: Vec<usize> = if axes.is_empty() {
        (0..id.len()).collect()
    } else {
        axes.iter()
            .map(|&a| norm_axis(a, id.len()).ok_or_else(|| Error::graph(&name, format!("axis {a} out of range"))))
            .collect::<Result<_>>()?
    };
    red.sort_unstable();
    red.dedup();
    let kept: Vec<usize> = (0..id.len()).filter(|a| !red.contains(a)).collect();
    let count: usize = red.iter().map(|&a| id[a]).product();
    let rows: usize = kept.iter().map(|&a| id[a]).product();
    let st = strides(&id);
    let store = Store::of(g, ins[0]);
    let (mut comb, identity, checks) = combiner(op, Store::of_dtype(g.ty(ins[0]).dtype), g.ty(ins[0]).dtype, &name);
    // Squares read in place ([`Graph::squared_in_place`]): the buffer bound holds their
    // operand, squared here.
    let squared = g.squared_in_place(ins[0]).is_some();
    let read = |at: &str| {
        let x = load("in0", at, store);
        if squared {
            format!("sq_({x})")
        } else {
            x
        }
    };
    if squared {
        comb.push_str("fn sq_(x: f32) -> f32 { return x * x; }\n");
    }
    // Reducing trailing axes (a norm's mean, a row's sum): rows are contiguous.
    let suffix = red.iter().enumerate().all(|(i, &a)| a == id.len() - red.len() + i);
    let scalar = store.scalar();
    let mean = |acc: &str| match (op, count) {
        // The mean of nothing is NaN (a compiler may fold 0 / 0 to anything).
        (ReduceOp::Mean, 0) => "bitcast<f32>(0x7fc00000u)".to_string(),
        (ReduceOp::Mean, _) => format!("{acc} / f32({count})"),
        _ => acc.to_string(),
    };
    if count <= SHORT_AXIS {
        // A few elements an output (a mixture of experts' top-k outputs added up per token):
        // one thread per output element walks them.
        let (base, off) = if suffix {
            (format!("i * {count}u"), "r".to_string())
        } else {
            (coords("i", &kept, &id, &st), coords("r", &red, &id, &st))
        };
        let body = format!(
            "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {rows}u) {{ return; }}\n    let base = {base};\n    var acc: {scalar} = {identity};\n    for (var r = 0u; r < {count}u; r = r + 1u) {{\n        acc = comb_(acc, {}, i);\n    }}\n    out0[i] = {};\n",
            read(&format!("base + {off}")),
            mean("acc")
        );
        let groups = (rows as u64).div_ceil(WORKGROUP as u64);
        return kernel(g, name, KernelKind::Reduce, &ins, out, groups, WORKGROUP, &comb, &body, checks, t);
    }
    let threads = row_threads(count);
    let (base, off) = if suffix {
        (format!("gid * {count}u"), "r".to_string())
    } else {
        (coords("gid", &kept, &id, &st), coords("r", &red, &id, &st))
    };
    let mut body = format!(
        "    if (gid >= {rows}u) {{ return; }}\n    let base = {base};\n    var acc: {scalar} = {identity};\n    for (var r = lid; r < {count}u; r = r + {threads}u) {{\n        acc = comb_(acc, {}, gid);\n    }}\n",
        read(&format!("base + {off}"))
    );
    body.push_str(&tree_reduce(threads, "acc", "comb2_", subgroup(t)));
    let _ = writeln!(body, "    if (lid == 0u) {{ out0[gid] = {}; }}", mean("red[0]"));
    let prelude = format!(
        "{comb}fn comb2_(a: {scalar}, b: {scalar}) -> {scalar} {{ return comb_(a, b, 0u); }}\nvar<workgroup> red: array<{scalar}, {threads}>;\n"
    );
    kernel(g, name, KernelKind::Reduce, &ins, out, rows as u64, threads, &prelude, &body, checks, t)
}

/// The lanes of `shape` along `axis`: (lanes, axis length, stride between a lane's elements),
/// and the WGSL of lane `gid`'s first element.
fn lanes(shape: &[usize], ax: usize) -> (usize, usize, usize, String) {
    let inner: usize = shape[ax + 1..].iter().product();
    let outer: usize = shape[..ax].iter().product();
    let d = shape[ax];
    let base =
        if inner == 1 { format!("gid * {d}u") } else { format!("(gid / {inner}u) * {}u + gid % {inner}u", d * inner) };
    (outer * inner, d, inner, base)
}

/// The kernel of a softmax along `axis`: one workgroup per lane, three passes over it (the
/// maximum, the sum of `exp(x - max)`, the normalised values).
pub(crate) fn softmax(g: &Graph, n: NodeIndex, axis: i64, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let id = dims(g, ins[0], b)?;
    let ax = norm_axis(axis, id.len())
        .ok_or_else(|| Error::graph(&name, format!("axis {axis} out of range for rank {}", id.len())))?;
    let (nl, d, stride, base) = lanes(&id, ax);
    let threads = row_threads(d);
    let x = load("in0", &format!("base + c * {stride}u"), Store::of(g, ins[0]));
    let mut body = format!(
        "    if (gid >= {nl}u) {{ return; }}\n    let base = {base};\n    var m = {NEG_INF};\n    for (var c = lid; c < {d}u; c = c + {threads}u) {{ m = max(m, {x}); }}\n"
    );
    body.push_str(&tree_reduce(threads, "m", "max", subgroup(t)));
    let _ = write!(
        body,
        "    let mx = red[0];\n    workgroupBarrier();\n    var s = 0.0;\n    for (var c = lid; c < {d}u; c = c + {threads}u) {{ s = s + exp({x} - mx); }}\n"
    );
    body.push_str(&tree_reduce(threads, "s", "add_f_", subgroup(t)));
    let _ = write!(
        body,
        "    let sum = red[0];\n    for (var c = lid; c < {d}u; c = c + {threads}u) {{ out0[base + c * {stride}u] = exp({x} - mx) / sum; }}\n"
    );
    let prelude =
        format!("fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\nvar<workgroup> red: array<f32, {threads}>;\n");
    kernel(g, name, KernelKind::Softmax, &ins, out, nl as u64, threads, &prelude, &body, vec![], t)
}

/// The kernel of a cumulative sum along `axis`: one workgroup per lane, which walks it in
/// chunks of its threads, each chunk scanned in workgroup memory (Hillis–Steele, unrolled)
/// and carried into the next.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cumsum(
    g: &Graph,
    n: NodeIndex,
    axis: i64,
    exclusive: bool,
    reverse: bool,
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let id = dims(g, ins[0], b)?;
    let ax = norm_axis(axis, id.len())
        .ok_or_else(|| Error::graph(&name, format!("axis {axis} out of range for rank {}", id.len())))?;
    let (nl, d, stride, base) = lanes(&id, ax);
    let threads = row_threads(d);
    let dtype = g.ty(ins[0]).dtype;
    let store = Store::of(g, ins[0]);
    let (comb, identity, checks) = combiner(ReduceOp::Sum, Store::of_dtype(dtype), dtype, &name);
    let scalar = Store::of_dtype(dtype).scalar();
    let chunks = d.div_ceil(threads as usize);
    let pos = if reverse { format!("{}u - p", d.max(1) - 1) } else { "p".into() };
    let mut body = format!(
        "    if (gid >= {nl}u) {{ return; }}\n    let base = {base};\n    var carry: {scalar} = {identity};\n    for (var ch = 0u; ch < {chunks}u; ch = ch + 1u) {{\n        let p = ch * {threads}u + lid;\n        let valid = p < {d}u;\n        let at = base + ({pos}) * {stride}u;\n        var x: {scalar} = {identity};\n        if (valid) {{ x = {}; }}\n        red[lid] = x;\n        workgroupBarrier();\n",
        load("in0", "at", store)
    );
    let mut off = 1;
    while off < threads {
        let _ = write!(
            body,
            "        var v{off} = red[lid];\n        if (lid >= {off}u) {{ v{off} = comb_(red[lid - {off}u], v{off}, at); }}\n        workgroupBarrier();\n        red[lid] = v{off};\n        workgroupBarrier();\n"
        );
        off *= 2;
    }
    let mine =
        if exclusive { format!("select({identity}, red[max(lid, 1u) - 1u], lid > 0u)") } else { "red[lid]".into() };
    let _ = write!(
        body,
        "        if (valid) {{ out0[at] = comb_(carry, {mine}, at); }}\n        carry = comb_(carry, red[{}u], at);\n        workgroupBarrier();\n    }}\n",
        threads - 1
    );
    let prelude = format!("{comb}var<workgroup> red: array<{scalar}, {threads}>;\n");
    kernel(g, name, KernelKind::CumSum, &ins, out, nl as u64, threads, &prelude, &body, checks, t)
}

/// The kernel of a top-K selection along `axis`: one workgroup per lane, `k` rounds. Round
/// `r` finds the first element in the selection's order (larger first with `largest`, NaN
/// first among the largest and last among the smallest, equal values by index) of those
/// after round `r - 1`'s pick: the order is total, so no element needs marking as taken and
/// a lane of any length is walked by the workgroup's threads together, each round's pick
/// combined in a tree of (value, index) pairs in workgroup memory. Values are moved, never
/// computed with, so they keep their bits (`-0.0`, NaN payloads).
#[allow(clippy::too_many_arguments)]
pub(crate) fn top_k(
    g: &Graph,
    n: NodeIndex,
    axis: i64,
    k: usize,
    largest: bool,
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let ins = g.inputs(n);
    let outs = [Value { node: n, output: 0 }, Value { node: n, output: 1 }];
    let name = g.node(n).name.clone();
    let id = dims(g, ins[0], b)?;
    let ax = norm_axis(axis, id.len())
        .ok_or_else(|| Error::graph(&name, format!("axis {axis} out of range for rank {}", id.len())))?;
    let (nl, d, stride, base) = lanes(&id, ax);
    if k == 0 || k > d {
        return Err(Error::graph(&name, format!("k = {k}, but k must be from 1 to the axis's size, {d}")));
    }
    let threads = row_threads(d);
    let store = Store::of(g, ins[0]);
    let dtype = g.ty(ins[0]).dtype;
    let scalar = Store::of_dtype(dtype).scalar();
    // Whether (a, ia) comes before (b, ib): NaN apart (tested on the bits), then by value.
    let (nan, first) = match (dtype.is_float(), largest) {
        (true, true) => (true, "    let na = isnan_(a);\n    if (na != isnan_(b)) { return na; }\n    if (!na && a != b) { return a > b; }\n"),
        (true, false) => (true, "    let na = isnan_(a);\n    if (na != isnan_(b)) { return !na; }\n    if (!na && a != b) { return a < b; }\n"),
        (false, true) => (false, "    if (a != b) { return a > b; }\n"),
        (false, false) => (false, "    if (a != b) { return a < b; }\n"),
    };
    let isnan =
        if nan { "fn isnan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }\n" } else { "" };
    let prelude = format!(
        "{isnan}fn first_(a: {scalar}, ia: u32, b: {scalar}, ib: u32) -> bool {{\n{first}    return ia < ib;\n}}\n\
         const NONE: u32 = 0xffffffffu;\n\
         var<workgroup> rv: array<{scalar}, {threads}>;\nvar<workgroup> ri: array<u32, {threads}>;\n"
    );
    let out_base = if stride == 1 {
        format!("gid * {k}u")
    } else {
        format!("(gid / {stride}u) * {}u + gid % {stride}u", k * stride)
    };
    let x = load("in0", &format!("base + c * {stride}u"), store);
    let zero = Store::of_dtype(dtype).zero();
    let mut body = format!(
        "    if (gid >= {nl}u) {{ return; }}\n    let base = {base};\n    let obase = {out_base};\n    var pv: {scalar} = {zero};\n    var pi: u32 = NONE;\n    for (var r = 0u; r < {k}u; r = r + 1u) {{\n        var bv: {scalar} = {zero};\n        var bi: u32 = NONE;\n        for (var c = lid; c < {d}u; c = c + {threads}u) {{\n            let v = {x};\n            if (pi != NONE && !first_(pv, pi, v, c)) {{ continue; }}\n            if (bi == NONE || first_(v, c, bv, bi)) {{ bv = v; bi = c; }}\n        }}\n        rv[lid] = bv;\n        ri[lid] = bi;\n        workgroupBarrier();\n"
    );
    let mut half = threads / 2;
    while half > 0 {
        let _ = writeln!(
            body,
            "        if (lid < {half}u) {{\n            let oi = ri[lid + {half}u];\n            if (oi != NONE && (ri[lid] == NONE || first_(rv[lid + {half}u], oi, rv[lid], ri[lid]))) {{ rv[lid] = rv[lid + {half}u]; ri[lid] = oi; }}\n        }}\n        workgroupBarrier();"
        );
        half /= 2;
    }
    let _ = write!(
        body,
        "        pv = rv[0];\n        pi = ri[0];\n        if (lid == 0u) {{ out0[obase + r * {stride}u] = pv; out1[obase + r * {stride}u] = i32(pi); }}\n        workgroupBarrier();\n    }}\n"
    );
    kernel_outs(g, name, KernelKind::TopK, &ins, &outs, None, nl as u64, threads, &prelude, &body, vec![], t)
}
