//! Indexing kernels, one thread per output element: `Gather` (any axis: embedding rows by
//! token ids), `GatherND` (index tuples, with batch dims) and `Range`.
//!
//! Every index read from data is normalised (a negative index counts from the end of its
//! axis) and checked against the axis: an index out of range is never read; the kernel writes
//! 0 there and records the failure in its error words ([`crate::Check`]), which the runtime
//! turns into an error naming the node, the index, the valid range and, where the indices
//! come from a graph input, that input.

use crate::wgsl::{kernel, load, Store, WORKGROUP};
use crate::{dims, Check, CheckKind, KernelKind, KernelSource, Target};
use glufuse_ir::shape::{norm_axis, Bindings};
use glufuse_ir::tensor::strides;
use glufuse_ir::{DimExpr, Error, Graph, NodeIndex, Op, Result, Value};
use std::fmt::Write;

/// The graph input that value `v` comes from through casts and views, if any: the words of
/// an index error say which input held the bad index (token ids, a mask).
fn source_input(g: &Graph, v: Value) -> Option<String> {
    let mut v = v;
    loop {
        let n = g.node(v.node);
        match n.op {
            Op::Input => return Some(n.name.clone()),
            Op::Cast { .. } | Op::Reshape { .. } => v = g.inputs(v.node)[0],
            _ => return None,
        }
    }
}

/// An axis size as an i32 constant for the kernel's index arithmetic.
fn size_i32(g: &Graph, n: NodeIndex, d: usize) -> Result<i32> {
    i32::try_from(d)
        .map_err(|_| Error::Gpu(format!("node '{}': an axis of {d} elements is too long to index", g.node(n).name)))
}

/// WGSL normalising index `raw` against an axis of `d` elements into `k` (an i32 variable),
/// and failing check `site` (writing 0 to output element `i`) when it lies outside.
fn check_index(raw: &str, k: &str, d: i32, site: usize, zero: &str) -> String {
    format!(
        "    var {k} = {raw};\n    if ({k} < 0i) {{ {k} = {k} + {d}i; }}\n    if ({k} < 0i || {k} >= {d}i) {{ fail_({site}u, {raw}, i); out0[i] = {zero}; return; }}\n"
    )
}

/// The kernel of a gather along `axis`: `out[o, j.., r] = data[o, indices[j..], r]`.
pub(crate) fn gather(g: &Graph, n: NodeIndex, axis: i64, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let (dd, id) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
    let ax = norm_axis(axis, dd.len())
        .ok_or_else(|| Error::graph(&name, format!("axis {axis} out of range for rank {}", dd.len())))?;
    let d = size_i32(g, n, dd[ax])?;
    let inner: usize = dd[ax + 1..].iter().product();
    let nidx: usize = id.iter().product();
    let total: usize = dims(g, out, b)?.iter().product();
    let what = if ax == 0 && dd.len() == 2 { "rows".to_string() } else { format!("elements along axis {ax}") };
    let check = Check {
        node: name.clone(),
        kind: CheckKind::Index {
            size: dd[ax],
            what,
            indices_from: source_input(g, ins[1]),
            data_from: source_input(g, ins[0]),
        },
    };
    let zero = Store::of(g, out).zero();
    let mut body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let o = i / {}u;\n    let j = (i / {inner}u) % {nidx}u;\n    let r = i % {inner}u;\n    let raw = in1[j];\n",
        nidx * inner
    );
    body.push_str(&check_index("raw", "k", d, 1, zero));
    let _ = writeln!(
        body,
        "    out0[i] = {};",
        load("in0", &format!("(o * {}u + u32(k)) * {inner}u + r", dd[ax]), Store::of(g, ins[0]))
    );
    let groups = (total as u64).div_ceil(WORKGROUP as u64);
    kernel(g, name, KernelKind::Gather, &ins, out, groups, WORKGROUP, "", &body, vec![check], t)
}

/// The kernel of a `GatherND` with `batch_dims` leading dims shared by data and indices:
/// each tuple of the indices' last dim picks a slice of data.
pub(crate) fn gather_nd(g: &Graph, n: NodeIndex, batch_dims: u64, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let (dd, id) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
    let bd = batch_dims as usize;
    let k = *id.last().ok_or_else(|| Error::Internal(format!("GatherND '{name}' has scalar indices")))?;
    if dd.len() < bd + k {
        return Err(Error::Internal(format!("GatherND '{name}': indices do not fit the data")));
    }
    let batch: usize = dd[..bd].iter().product();
    let slice: usize = dd[bd + k..].iter().product();
    let per_batch: usize = dd[bd..].iter().product();
    let tuples: usize = id[..id.len() - 1].iter().product();
    let tpb = tuples.checked_div(batch).unwrap_or(0).max(1);
    let st = strides(&dd[bd..bd + k]);
    let total: usize = dims(g, out, b)?.iter().product();
    let zero = Store::of(g, out).zero();
    let (indices_from, data_from) = (source_input(g, ins[1]), source_input(g, ins[0]));
    let mut checks = vec![];
    let mut body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let tu = i / {slice}u;\n    var off = (tu / {tpb}u) * {per_batch}u + i % {slice}u;\n"
    );
    for j in 0..k {
        let d = size_i32(g, n, dd[bd + j])?;
        checks.push(Check {
            node: name.clone(),
            kind: CheckKind::Index {
                size: dd[bd + j],
                what: format!("elements along axis {} (position {j} of an index tuple)", bd + j),
                indices_from: indices_from.clone(),
                data_from: data_from.clone(),
            },
        });
        let _ = writeln!(body, "    let raw{j} = in1[tu * {k}u + {j}u];");
        body.push_str(&check_index(&format!("raw{j}"), &format!("k{j}"), d, j + 1, zero));
        let _ = writeln!(body, "    off = off + u32(k{j}) * {}u;", st[j] * slice);
    }
    let _ = writeln!(body, "    out0[i] = {};", load("in0", "off", Store::of(g, ins[0])));
    let groups = (total as u64).div_ceil(WORKGROUP as u64);
    kernel(g, name, KernelKind::Gather, &ins, out, groups, WORKGROUP, "", &body, checks, t)
}

/// The WGSL value of a range of `len` elements (`start, start + delta, ..`, the start
/// evaluated under the binding) at index expression `i`, for node `name`: every value must
/// fit the GPU's 32-bit integers (checked here, before any run). The range kernel and a
/// program's range step both write it.
pub(crate) fn range_value(
    name: &str,
    start: &DimExpr,
    delta: i64,
    len: usize,
    b: &Bindings,
    i: &str,
) -> Result<String> {
    let s = start.eval(&|v| b.get(v).and_then(|&x| i64::try_from(x).ok())).map_err(|m| Error::graph(name, m))?;
    let last = (s as i128) + (len.max(1) as i128 - 1) * (delta as i128);
    let fits = |x: i128| i32::try_from(x).is_ok();
    if !fits(s as i128) || !fits(last) || i32::try_from(delta).is_err() {
        return Err(Error::Gpu(format!(
            "node '{name}': range values {s} to {last} do not fit the 32 bits the GPU holds integers in"
        )));
    }
    Ok(format!("i32({s}) + i32({i}) * i32({delta})"))
}

/// The kernel of a range: `out[i] = start + i * delta` ([`range_value`]).
pub(crate) fn range(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let Op::Range { start, delta, .. } = &g.node(n).op else {
        return Err(Error::Internal("range() on a node that is not a Range".into()));
    };
    let out = Value::of(n);
    let name = g.node(n).name.clone();
    let len = dims(g, out, b)?[0];
    let v = range_value(&name, start, *delta, len, b, "i")?;
    let body =
        format!("    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {len}u) {{ return; }}\n    out0[i] = {v};\n");
    let groups = (len as u64).div_ceil(WORKGROUP as u64);
    kernel(g, name, KernelKind::Range, &[], out, groups, WORKGROUP, "", &body, vec![], t)
}
