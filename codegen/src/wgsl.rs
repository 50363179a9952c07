//! The WGSL writer's shared pieces: the module header (bindings and entry point), the
//! dispatch grid, element reads (packed f16 included) and the f16 unpacking helper, broadcast
//! index arithmetic, and the kernel of one thread per output element that the elementwise,
//! layout and batched kernels are written in.

use crate::{packed_f16, Binding, KernelKind, KernelSource, Target};
use glufuse_ir::tensor::strides;
use glufuse_ir::{Error, Graph, Result, Value};
use std::fmt::Write;

/// Threads per workgroup of the kernels of one thread per output element, the scalar
/// projection template and the GEMVs. (The tiled GEMM sizes its own: `Tiles::threads`.)
pub(crate) const WORKGROUP: u32 = 256;

/// Splits `groups` workgroups over x and y so that neither exceeds `max_per_dim`.
pub(crate) fn grid(groups: u64, max_per_dim: u32) -> Result<[u32; 3]> {
    let max = max_per_dim.max(1) as u64;
    if groups <= max {
        return Ok([groups.max(1) as u32, 1, 1]);
    }
    let y = groups.div_ceil(max);
    if y > max {
        return Err(Error::Gpu(format!("{groups} workgroups exceed the device's 2-D dispatch limit")));
    }
    Ok([max as u32, y as u32, 1])
}

/// The header every kernel starts with: bindings, then the entry point's signature. `body`
/// sees `gid` (linear workgroup index) and `lid` (thread index in the workgroup).
pub(crate) fn module(bindings: &[(String, bool, bool)], workgroup: u32, prelude: &str, body: &str) -> String {
    module_with(bindings, workgroup, prelude, body, "")
}

/// [`module`] with extra entry-point parameters (`extra` starts with `, `), e.g. subgroup
/// builtins.
pub(crate) fn module_with(
    bindings: &[(String, bool, bool)],
    workgroup: u32,
    prelude: &str,
    body: &str,
    extra: &str,
) -> String {
    let mut s = String::new();
    for (i, (name, write, packed)) in bindings.iter().enumerate() {
        let access = if *write { "read_write" } else { "read" };
        let elem = if *packed { "u32" } else { "f32" };
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, {access}> {name}: array<{elem}>;");
    }
    s.push_str(prelude);
    let _ = write!(
        s,
        "\n@compute @workgroup_size({workgroup})\nfn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32{extra}) {{\n    let gid = wg.x + wg.y * nwg.x;\n{body}}}\n"
    );
    s
}

/// WGSL reading element `idx` of binding `name`.
pub(crate) fn read(name: &str, idx: &str, packed: bool) -> String {
    if packed {
        format!("unpack2x16float({name}[({idx}) >> 1u])[({idx}) & 1u]")
    } else {
        format!("{name}[{idx}]")
    }
}

/// WGSL widening four packed f16 (8 bytes, `vec2<u32>`) to a `vec4<f32>`.
pub(crate) const UNPACK4_F16: &str =
    "fn unpack4_f16_(q: vec2<u32>) -> vec4<f32> { return vec4<f32>(unpack2x16float(q.x), unpack2x16float(q.y)); }\n";

/// WGSL computing the flat index into an input of dims `inp` broadcast to `out`, from `i`.
pub(crate) fn bcast_index(out: &[usize], inp: &[usize], i: &str) -> String {
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

/// A kernel of one thread per output element: inputs bound as `in0..`, the output as
/// `out0`, `total` threads over a 1-D (or, past the device's limit, 2-D) grid.
#[allow(clippy::too_many_arguments)]
pub(crate) fn per_element(
    g: &Graph,
    name: String,
    kind: KernelKind,
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
        ins.iter().map(|&v| Binding { value: v, write: false, packed_f16: packed_f16(g, v) }).collect();
    bindings.push(Binding { value: out, write: true, packed_f16: false });
    Ok(KernelSource {
        name,
        kind,
        wgsl: module(&binds, WORKGROUP, prelude, body),
        bindings,
        workgroup_size: WORKGROUP,
        choice: None,
        workgroups: grid((total as u64).div_ceil(WORKGROUP as u64), t.max_workgroups_per_dim)?,
    })
}
