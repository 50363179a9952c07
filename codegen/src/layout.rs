//! Index-mapping kernels, one thread per output element, for values of any dtype (each
//! element moved in its storage type): transpose, expand (broadcast), slice (any step),
//! split (one slice kernel per output), concat. (`Reshape`, and the `Squeeze`/`Unsqueeze`
//! it stands for, is a view and has no kernel.)

use crate::elementwise::map_kernel;
use crate::wgsl::{bcast_index, grid, load, per_element, Store, WORKGROUP};
use crate::{dims, KernelKind, KernelSource, Target};
use glufuse_ir::shape::{norm_axis, Bindings};
use glufuse_ir::tensor::strides;
use glufuse_ir::{Dim, Error, Graph, NodeIndex, Result, Value};

/// An axis of a value of rank `r`, normalised (verified graphs have only valid axes).
fn axis(g: &Graph, n: NodeIndex, axis: i64, r: usize) -> Result<usize> {
    norm_axis(axis, r).ok_or_else(|| Error::graph(&g.node(n).name, format!("axis {axis} out of range for rank {r}")))
}

/// The kernel of a transpose.
pub(crate) fn transpose(g: &Graph, n: NodeIndex, perm: &[usize], b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let id = dims(g, ins[0], b)?;
    let (is, os) = (strides(&id), strides(&od));
    let terms: Vec<String> =
        perm.iter().enumerate().map(|(d, &p)| format!("((i / {}u) % {}u) * {}u", os[d], od[d], is[p])).collect();
    let idx = if terms.is_empty() { "0u".to_string() } else { terms.join(" + ") };
    let e = load("in0", &idx, Store::of(g, ins[0]));
    map_kernel(g, g.node(n).name.clone(), KernelKind::Transpose, &ins, out, total, &e, t)
}

/// The kernel of an expand: the input broadcast to the output's shape.
pub(crate) fn expand(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let e = load("in0", &bcast_index(&od, &dims(g, ins[0], b)?, "i"), Store::of(g, ins[0]));
    map_kernel(g, g.node(n).name.clone(), KernelKind::Expand, &ins, out, total, &e, t)
}

/// The kernel of a slice: output index `c` of the axis reads input index `start + c * step`,
/// the start evaluated under the binding and every index read checked to lie in the axis.
pub(crate) fn slice(
    g: &Graph,
    n: NodeIndex,
    ax: i64,
    start: &Dim,
    step: i64,
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = &g.node(n).name;
    let id = dims(g, ins[0], b)?;
    let od = dims(g, out, b)?;
    let ax = axis(g, n, ax, id.len())?;
    let s = start.eval(b).map_err(|m| Error::graph(name, m))?;
    if od[ax] > 0 {
        let last = s as i128 + (od[ax] as i128 - 1) * step as i128;
        if s >= id[ax] || last < 0 || last >= id[ax] as i128 || i32::try_from(last).is_err() {
            return Err(Error::graph(
                name,
                format!(
                    "slice of {} elements from {s} in steps of {step} does not fit axis {ax} of size {}",
                    od[ax], id[ax]
                ),
            ));
        }
    }
    let step = i32::try_from(step).map_err(|_| Error::graph(name, format!("slice step {step} is too large")))?;
    slice_kernel(g, name.clone(), &ins, out, &id, &od, ax, s, step, t)
}

/// The kernels of a split: one slice kernel per output, named `node:k`.
pub(crate) fn split(g: &Graph, n: NodeIndex, ax: i64, b: &Bindings, t: &Target) -> Result<Vec<KernelSource>> {
    let ins = g.inputs(n);
    let id = dims(g, ins[0], b)?;
    let ax = axis(g, n, ax, id.len())?;
    let name = &g.node(n).name;
    let mut start = 0;
    let mut v = vec![];
    for k in 0..g.node(n).outputs.len() {
        let o = Value { node: n, output: k };
        let od = dims(g, o, b)?;
        if od.iter().product::<usize>() > 0 {
            v.push(slice_kernel(g, format!("{name}:{k}"), &ins, o, &id, &od, ax, start, 1, t)?);
        }
        start += od[ax];
    }
    Ok(v)
}

/// The kernel of a concat.
pub(crate) fn concat(g: &Graph, n: NodeIndex, ax: i64, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let ax = axis(g, n, ax, od.len())?;
    // An empty input contributes nothing and is not bound (a binding the WGSL never reads
    // would not be in the pipeline's layout).
    let mut parts = vec![];
    for v in ins {
        if !dims(g, v, b)?.contains(&0) {
            parts.push(v);
        }
    }
    concat_kernel(g, g.node(n).name.clone(), &parts, out, total, ax, &od, b, t)
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
    step: i32,
    t: &Target,
) -> Result<KernelSource> {
    let inner: usize = id[ax + 1..].iter().product();
    let total: usize = od.iter().product();
    // out index i = (outer, c, r) with c < od[ax]; input index = (outer, start + c * step, r).
    let at = if step == 1 {
        format!("((i / {inner}u) % {}u + {start}u)", od[ax])
    } else {
        format!("u32({start}i + i32((i / {inner}u) % {}u) * {step}i)", od[ax])
    };
    let idx = format!("(i / {}u) * {}u + {at} * {inner}u + (i % {inner}u)", od[ax] * inner, id[ax] * inner);
    map_kernel(g, name, KernelKind::Slice, &ins[..1], out, total, &load("in0", &idx, Store::of(g, ins[0])), t)
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
        let src = load(
            &format!("in{k}"),
            &format!("outer * {}u + (c - {lo}u) * {inner}u + r", d[ax] * inner),
            Store::of(g, v),
        );
        body.push_str(&format!("    if (c >= {lo}u && c < {hi}u) {{ out0[i] = {src}; }}\n"));
        lo = hi;
    }
    per_element(g, name, KernelKind::Concat, ins, out, total, "", &body, t)
}

/// A copy of `n4` 16-byte vectors from binding 0 to binding 1, one per thread: the
/// benchmark's bandwidth yardstick. It binds no graph values (`bindings` is empty); the
/// caller binds two buffers of `n4 · 16` bytes.
pub fn copy_kernel(n4: u64, t: &Target) -> Result<KernelSource> {
    let workgroups = grid(n4.div_ceil(WORKGROUP as u64), t.max_workgroups_per_dim)?;
    let wgsl = format!(
        "@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;\n@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;\n@compute @workgroup_size({WORKGROUP})\nfn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {{\n    let i = (wg.x + wg.y * nwg.x) * {WORKGROUP}u + lid;\n    if (i < {n4}u) {{ dst[i] = src[i]; }}\n}}\n"
    );
    Ok(KernelSource {
        scratch_bytes: 0,
        flag_words: 0,
        name: "copy".into(),
        kind: KernelKind::Copy,
        wgsl,
        bindings: vec![],
        workgroups,
        workgroup_size: WORKGROUP,
        checks: vec![],
        choice: None,
    })
}
