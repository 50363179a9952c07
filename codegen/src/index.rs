//! Indexing kernels, one thread per output element: `Gather` (any axis: embedding rows by
//! token ids), `GatherND` (index tuples, with batch dims) and `Range`; and the scatters,
//! `ScatterND` and `ScatterElements`, in two kernels: a copy of the data to the output (one
//! thread per element), then one thread per element of the updates, writing it where its
//! index (tuple) points; or the second alone, in place, where the data is a graph input that
//! nothing else reads (a static KV cache: [`scatter_in_place`]).
//!
//! Every index read from data is normalised (a negative index counts from the end of its
//! axis) and checked against the axis: an index out of range is never read (a gather writes
//! 0 there, a scatter writes nothing) and the failure is recorded in the kernel's error
//! words ([`crate::Check`]), which the runtime turns into an error naming the node, the
//! index, the valid range and, where the indices come from a graph input, that input. A
//! scatter's place is written once: the thread of each update's first element adds one to
//! the place's flag (an atomic, in the kernel's region of the executable's flags buffer,
//! which the runtime zeroes before every run), and finding it already set is
//! a failure too ([`crate::CheckKind::Duplicate`]), whichever of the two writes came first:
//! so a run never returns a result that depends on the order of the writes.

use crate::wgsl::{kernel, kernel_flags, load, per_element, Store, WORKGROUP};
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

/// The run-time check that node `name`'s `indices` lie within an axis of `size` of its
/// `data`, `what` the axis holds in words (each named by the graph input it comes from).
fn index_check(g: &Graph, name: &str, data: Value, indices: Value, size: usize, what: String) -> Check {
    Check {
        node: name.to_string(),
        kind: CheckKind::Index { size, what, indices_from: source_input(g, indices), data_from: source_input(g, data) },
    }
}

/// What the indices of a `Gather` along axis `ax` of data of rank `rank` count.
fn gather_what(ax: usize, rank: usize) -> String {
    if ax == 0 && rank == 2 {
        "rows".to_string()
    } else {
        format!("elements along axis {ax}")
    }
}

/// What position `j` of an index tuple counts, along axis `axis` of the data.
fn tuple_what(axis: usize, j: usize) -> String {
    format!("elements along axis {axis} (position {j} of an index tuple)")
}

/// The check the gather `gather` makes of the slab each index picks (along the first axis
/// of its table, of `slabs`), for a kernel that reads that gather in place
/// ([`glufuse_ir::Graph::gathered_rows`]): the same words as the gather's own kernel.
pub(crate) fn slab_check(g: &Graph, gather: NodeIndex, slabs: usize) -> Check {
    let ins = g.inputs(gather);
    let what = if matches!(g.node(gather).op, Op::Gather { .. }) {
        gather_what(0, g.ty(ins[0]).rank())
    } else {
        tuple_what(0, 0)
    };
    index_check(g, &g.node(gather).name, ins[0], ins[1], slabs, what)
}

/// An axis size as an i32 constant for the kernel's index arithmetic.
pub(crate) fn size_i32(g: &Graph, n: NodeIndex, d: usize) -> Result<i32> {
    i32::try_from(d)
        .map_err(|_| Error::Gpu(format!("node '{}': an axis of {d} elements is too long to index", g.node(n).name)))
}

/// WGSL normalising index `raw` against an axis of `d` elements into `k` (an i32 variable),
/// and failing check `site` (writing 0 to output element `i`) when it lies outside.
pub(crate) fn check_index(raw: &str, k: &str, d: i32, site: usize, zero: &str) -> String {
    check_index_else(raw, k, d, site, "i", &format!("out0[i] = {zero}; "))
}

/// [`check_index`] recording element `at` and running `then` (WGSL statements) before the
/// thread returns, when the index lies outside.
fn check_index_else(raw: &str, k: &str, d: i32, site: usize, at: &str, then: &str) -> String {
    format!(
        "    var {k} = {raw};\n    if ({k} < 0i) {{ {k} = {k} + {d}i; }}\n    if ({k} < 0i || {k} >= {d}i) {{ fail_({site}u, {raw}, {at}); {then}return; }}\n"
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
    let check = index_check(g, &name, ins[0], ins[1], dd[ax], gather_what(ax, dd.len()));
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
    let mut checks = vec![];
    let mut body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n    let tu = i / {slice}u;\n    var off = (tu / {tpb}u) * {per_batch}u + i % {slice}u;\n"
    );
    for j in 0..k {
        let d = size_i32(g, n, dd[bd + j])?;
        checks.push(index_check(g, &name, ins[0], ins[1], dd[bd + j], tuple_what(bd + j, j)));
        let _ = writeln!(body, "    let raw{j} = in1[tu * {k}u + {j}u];");
        body.push_str(&check_index(&format!("raw{j}"), &format!("k{j}"), d, j + 1, zero));
        let _ = writeln!(body, "    off = off + u32(k{j}) * {}u;", st[j] * slice);
    }
    let _ = writeln!(body, "    out0[i] = {};", load("in0", "off", Store::of(g, ins[0])));
    let groups = (total as u64).div_ceil(WORKGROUP as u64);
    kernel(g, name, KernelKind::Gather, &ins, out, groups, WORKGROUP, "", &body, checks, t)
}

/// The two kernels of a scatter over a node's data (input 0) into its output: the first
/// copies the data (one thread per element; none in place, [`scatter_in_place`]); the second
/// runs `body` (one thread per element of the updates, `total` of them) with `checks` and
/// `places` flags. A kernel with nothing to do is left out: an empty output takes no copy,
/// empty updates no scatter.
#[allow(clippy::too_many_arguments)]
fn scatter_pair(
    g: &Graph,
    n: NodeIndex,
    b: &Bindings,
    t: &Target,
    places: usize,
    total: usize,
    body: &str,
    checks: Vec<Check>,
) -> Result<Vec<KernelSource>> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let numel: usize = dims(g, out, b)?.iter().product();
    let mut ks = vec![];
    // In place ([`scatter_in_place`]), the data's buffer is the output's: no copy.
    if numel > 0 && !scatter_in_place(g, n) {
        let copy = format!(
            "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {numel}u) {{ return; }}\n    out0[i] = {};\n",
            load("in0", "i", Store::of(g, ins[0]))
        );
        ks.push(per_element(g, name.clone(), KernelKind::Copy, &ins[..1], out, numel, "", &copy, t)?);
    }
    if total > 0 {
        let scatter = format!("{name}.scatter");
        ks.push(kernel_flags(g, scatter, KernelKind::Scatter, &ins[1..], out, total, places, body, checks, t)?);
    }
    Ok(ks)
}

/// Whether scatter node `n` writes its updates into its data's buffer instead of into a copy
/// of it (one kernel instead of two): where its data is a graph input, uploaded again before
/// every run, that nothing else reads and that is no graph output (a static KV cache), and
/// none of its other inputs lives in the buffer the graph inputs share (a graph input, an
/// in-place scatter's output or a view of either): wgpu refuses a dispatch that binds one
/// buffer both read-only and read-write. The runtime gives such a scatter's output its data's
/// buffer.
pub fn scatter_in_place(g: &Graph, n: NodeIndex) -> bool {
    if !matches!(g.node(n).op, Op::ScatterND | Op::ScatterElements { .. }) {
        return false;
    }
    let ins = g.inputs(n);
    let d = ins[0];
    d.output == 0
        && g.node(d.node).op == Op::Input
        && !g.is_output(d)
        && g.users(d) == [(n, 0)]
        && !ins[1..].iter().any(|&v| in_inputs_buffer(g, v))
}

/// Whether value `v` lives in the buffer the graph inputs share: a graph input, an in-place
/// scatter's output ([`scatter_in_place`]) or a `Reshape` view of either.
fn in_inputs_buffer(g: &Graph, v: Value) -> bool {
    match &g.node(v.node).op {
        Op::Input => true,
        Op::Reshape { .. } => in_inputs_buffer(g, g.inputs(v.node)[0]),
        Op::ScatterND | Op::ScatterElements { .. } => scatter_in_place(g, v.node),
        _ => false,
    }
}

/// The kernels of a `ScatterND` ([`scatter_pair`]): each tuple of the indices' last dim (of
/// `k`) names a slice of the data's last dims, which the tuple's updates replace; the flags
/// are one per slice, counted by the thread of the slice's first element.
pub(crate) fn scatter_nd(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Vec<KernelSource>> {
    let ins = g.inputs(n);
    let name = g.node(n).name.clone();
    let (dd, id) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
    let k = *id.last().ok_or_else(|| Error::Internal(format!("ScatterND '{name}' has scalar indices")))?;
    if k == 0 || dd.len() < k {
        return Err(Error::Internal(format!("ScatterND '{name}': indices do not fit the data")));
    }
    let slice: usize = dd[k..].iter().product();
    let places: usize = dd[..k].iter().product();
    let total: usize = dims(g, ins[2], b)?.iter().product();
    let st = strides(&dd[..k]);
    let mut checks = vec![];
    let mut body = format!(
        "    let j = gid * {WORKGROUP}u + lid;\n    if (j >= {total}u) {{ return; }}\n    let tu = j / {slice}u;\n    var dst = 0u;\n"
    );
    for p in 0..k {
        let d = size_i32(g, n, dd[p])?;
        checks.push(index_check(g, &name, ins[0], ins[1], dd[p], tuple_what(p, p)));
        let _ = writeln!(body, "    let raw{p} = in0[tu * {k}u + {p}u];");
        body.push_str(&check_index_else(&format!("raw{p}"), &format!("k{p}"), d, p + 1, "tu", ""));
        let _ = writeln!(body, "    dst = dst + u32(k{p}) * {}u;", st[p]);
    }
    checks.push(Check {
        node: name,
        kind: CheckKind::Duplicate { op: "ScatterND".into(), what: "index tuple".into(), dims: dd[..k].to_vec() },
    });
    let _ = write!(
        body,
        "    if (j % {slice}u == 0u && atomicAdd(&flag[dst], 1u) != 0u) {{ fail_({}u, bitcast<i32>(dst), tu); }}\n    out0[dst * {slice}u + j % {slice}u] = {};\n",
        k + 1,
        load("in1", "j", Store::of(g, ins[2]))
    );
    scatter_pair(g, n, b, t, places, total, &body, checks)
}

/// The kernels of a `ScatterElements` along `axis` ([`scatter_pair`]): element `c` of the
/// updates goes to `c` with its coordinate along the axis replaced by the index at `c`; the
/// flags are one per element of the data.
pub(crate) fn scatter_elements(
    g: &Graph,
    n: NodeIndex,
    axis: i64,
    b: &Bindings,
    t: &Target,
) -> Result<Vec<KernelSource>> {
    let ins = g.inputs(n);
    let name = g.node(n).name.clone();
    let (dd, id) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
    let ax = norm_axis(axis, dd.len())
        .ok_or_else(|| Error::graph(&name, format!("axis {axis} out of range for rank {}", dd.len())))?;
    if id.len() != dd.len() {
        return Err(Error::Internal(format!("ScatterElements '{name}': indices do not fit the data")));
    }
    let d = size_i32(g, n, dd[ax])?;
    let total: usize = id.iter().product();
    let places: usize = dd.iter().product();
    let (ist, dst_st) = (strides(&id), strides(&dd));
    let checks = vec![
        index_check(g, &name, ins[0], ins[1], dd[ax], format!("elements along axis {ax}")),
        Check {
            node: name,
            kind: CheckKind::Duplicate { op: "ScatterElements".into(), what: "element".into(), dims: dd.clone() },
        },
    ];
    let mut body =
        format!("    let j = gid * {WORKGROUP}u + lid;\n    if (j >= {total}u) {{ return; }}\n    let raw = in0[j];\n");
    body.push_str(&check_index_else("raw", "k", d, 1, "j", ""));
    body.push_str("    var dst = 0u;\n");
    for a in 0..dd.len() {
        let c = if a == ax { "u32(k)".to_string() } else { format!("((j / {}u) % {}u)", ist[a], id[a]) };
        let _ = writeln!(body, "    dst = dst + {c} * {}u;", dst_st[a]);
    }
    let _ = write!(
        body,
        "    if (atomicAdd(&flag[dst], 1u) != 0u) {{ fail_(2u, bitcast<i32>(dst), j); }}\n    out0[dst] = {};\n",
        load("in1", "j", Store::of(g, ins[2]))
    );
    scatter_pair(g, n, b, t, places, total, &body, checks)
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
