//! The WGSL writer's shared pieces: the module header (bindings and entry point), the
//! dispatch grid, how each dtype is stored ([`Store`]) and read (packed f16 included), the
//! f16 unpacking helper, broadcast index arithmetic, the run-time checks' error words
//! ([`FAIL`]), the workgroup tree reduction, and the kernel shapes every family is written
//! in: one thread per output element ([`per_element`]) or one workgroup per row
//! ([`kernel`] with a workgroup count of its own).

use crate::{packed_f16, Binding, Check, KernelKind, KernelSource, Target};
use glufuse_ir::tensor::strides;
use glufuse_ir::{DType, Error, Graph, Result, Value};
use std::fmt::Write;

/// How a value's elements are stored on the GPU: one 32-bit word each (f32 for floats, i32
/// for i64 and i32, u32 0 or 1 for bool), except f16 weights, packed two to a `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Store {
    /// f32 and f16 values (f16 activations are f32 rounded to f16 where the graph casts).
    F32,
    /// An f16 weight: pairs packed in `u32`, read with `unpack2x16float`.
    PackedF16,
    /// i64 and i32 values, as i32.
    I32,
    /// Booleans, as `u32` 0 or 1.
    Bool,
}

impl Store {
    /// How value `v` of `g` is stored.
    pub(crate) fn of(g: &Graph, v: Value) -> Store {
        if packed_f16(g, v) {
            return Store::PackedF16;
        }
        Store::of_dtype(g.ty(v).dtype)
    }

    /// How a computed value of `dtype` is stored (never packed).
    pub(crate) fn of_dtype(d: DType) -> Store {
        match d {
            DType::F32 | DType::F16 => Store::F32,
            DType::I64 | DType::I32 => Store::I32,
            DType::Bool => Store::Bool,
        }
    }

    /// The WGSL element type of its storage array.
    pub(crate) fn array_elem(self) -> &'static str {
        match self {
            Store::F32 => "f32",
            Store::PackedF16 | Store::Bool => "u32",
            Store::I32 => "i32",
        }
    }

    /// The WGSL type of one element once read.
    pub(crate) fn scalar(self) -> &'static str {
        match self {
            Store::F32 | Store::PackedF16 => "f32",
            Store::I32 => "i32",
            Store::Bool => "u32",
        }
    }

    /// The WGSL zero of [`Store::scalar`].
    pub(crate) fn zero(self) -> &'static str {
        match self {
            Store::F32 | Store::PackedF16 => "0.0",
            Store::I32 => "0i",
            Store::Bool => "0u",
        }
    }
}

/// WGSL reading element `idx` of binding `name` stored as `s` (a value of `s.scalar()`).
pub(crate) fn load(name: &str, idx: &str, s: Store) -> String {
    read(name, idx, s == Store::PackedF16)
}

/// The error words of one checking kernel (site, value, element, one spare), each a `u32`.
pub const ERROR_WORDS: u64 = 4;

/// WGSL of the run-time checks: `fail_(site, value, at)` records the first failed check of
/// the kernel in its error words (`err[0]` the 1-based site, `err[1]` the offending value,
/// `err[2]` the element), which the runtime reads back after the run and turns into an error
/// naming the node ([`Check`]). The kernel goes on without the bad read.
pub(crate) const FAIL: &str = r#"
fn fail_(site: u32, value: i32, at: u32) {
    loop {
        let r = atomicCompareExchangeWeak(&err[0], 0u, site);
        if (r.exchanged) {
            atomicStore(&err[1], bitcast<u32>(value));
            atomicStore(&err[2], at);
            return;
        }
        if (r.old_value != 0u) { return; }
    }
}
"#;

/// WGSL of 32-bit integer arithmetic on i64 values (add, subtract, multiply, and the cast from
/// f32), which records an overflow (a result an i64 holds but i32 does not) as check `site`
/// instead of wrapping or saturating silently. (An infinite float cast to i64 saturates, to
/// i32's range where the interpreter saturates to i64's: exports cast `log(0)` and discard it.)
pub(crate) fn checked_int_math(site: usize) -> String {
    format!(
        r#"
fn add_(a: i32, b: i32, at: u32) -> i32 {{
    let r = a + b;
    if (((a ^ r) & (b ^ r)) < 0i) {{ fail_({site}u, r, at); }}
    return r;
}}
fn sub_(a: i32, b: i32, at: u32) -> i32 {{
    let r = a - b;
    if (((a ^ b) & (a ^ r)) < 0i) {{ fail_({site}u, r, at); }}
    return r;
}}
fn mul_(a: i32, b: i32, at: u32) -> i32 {{
    let r = a * b;
    if (a != 0i && (r / a != b || (a == -1i && b == -2147483647i - 1i))) {{ fail_({site}u, r, at); }}
    return r;
}}
fn cast_i64_(x: f32, at: u32) -> i32 {{
    let bits = bitcast<u32>(x) & 0x7fffffffu;
    if (bits > 0x7f800000u) {{ return 0i; }}
    let lim = select(2147483647i, -2147483647i - 1i, x < 0.0);
    if (x >= 2147483648.0 || x < -2147483648.0) {{
        // An infinity saturates (T5's position buckets cast log(0) and discard it); a
        // finite value past 32 bits is an error.
        if (bits != 0x7f800000u) {{ fail_({site}u, lim, at); }}
        return lim;
    }}
    return i32(x);
}}
"#
    )
}

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

/// [`module`] over bindings of any element type: (name, writable, WGSL element type).
pub(crate) fn module_typed(bindings: &[(String, bool, &str)], workgroup: u32, prelude: &str, body: &str) -> String {
    let mut s = String::new();
    for (i, (name, write, elem)) in bindings.iter().enumerate() {
        let access = if *write { "read_write" } else { "read" };
        let _ = writeln!(s, "@group(0) @binding({i}) var<storage, {access}> {name}: array<{elem}>;");
    }
    // The subgroup builtins, where the body uses them (a reduction by subgroups).
    let uses = |id: &str| body.contains(id) || prelude.contains(id);
    let extra = if uses("sg_id") || uses("sg_lane") {
        ", @builtin(subgroup_id) sg_id: u32, @builtin(subgroup_invocation_id) sg_lane: u32"
    } else {
        ""
    };
    s.push_str(&module_with(&[], workgroup, prelude, body, extra));
    s
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
    let groups = (total as u64).div_ceil(WORKGROUP as u64);
    kernel(g, name, kind, ins, out, groups, WORKGROUP, prelude, body, vec![], t)
}

/// A kernel over `groups` workgroups of `threads` threads: inputs bound as `in0..` (each in
/// its [`Store`]), the output as `out0`, and, when there are run-time `checks`, the error
/// words as `err` after them, with [`FAIL`] in the prelude.
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    out: Value,
    groups: u64,
    threads: u32,
    prelude: &str,
    body: &str,
    checks: Vec<Check>,
    t: &Target,
) -> Result<KernelSource> {
    kernel_outs(g, name, kind, ins, &[out], None, groups, threads, prelude, body, checks, t)
}

/// How [`assemble`] declares a kernel's arrays beyond their [`Store`]'s element: output 0 as
/// packed f16 words, some inputs as wider elements (a kernel reading 16 bytes at a time binds
/// an f32 value as `vec4<f32>`, packed f16 as `vec4<u32>`; the buffers are the same).
#[derive(Clone, Copy, Default)]
pub(crate) struct Elems<'a> {
    /// Output 0 stored as packed f16 (two values a `u32`).
    pub out0_packed: bool,
    /// `(input, element)`: inputs declared as arrays of `element`.
    pub wide: &'a [(usize, &'static str)],
}

/// The shared scratch buffer as a kernel other than a split projection's uses it
/// ([`KernelSource::scratch_bytes`]): bound after the outputs as `name`, f32, written or read.
pub(crate) struct Scratch {
    /// Its name in the WGSL.
    pub name: &'static str,
    /// Whether the kernel writes it (else it reads what the kernel before it wrote).
    pub write: bool,
    /// Bytes the kernel uses.
    pub bytes: u64,
}

/// [`kernel`] writing several outputs, bound as `out0, out1, ..` after the inputs (and the
/// scratch buffer after them, as `scratch` says, where given).
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel_outs(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    outs: &[Value],
    scratch: Option<&Scratch>,
    groups: u64,
    threads: u32,
    prelude: &str,
    body: &str,
    checks: Vec<Check>,
    t: &Target,
) -> Result<KernelSource> {
    assemble(g, name, kind, ins, outs, Elems::default(), None, scratch, 0, groups, threads, prelude, body, checks, t)
}

/// WGSL of the `u32` holding f32 values `a` (low half) and `b` (high half) as f16, for a
/// value stored as packed f16 ([`crate::packed_activation`]). An activation only the
/// cooperative GEMMs read takes the device's own conversion (`pack2x16float`), as the GEMMs
/// do where they stage x; a graph output must round as the host rounds an f16 output it
/// reads back as f32 (ties to even, past 65504 infinity), which WGSL leaves to the
/// implementation (and values past f16's range undefined): `exact` (a device whose
/// conversion [`PACK_PROBE`] did not confirm) rounds on the bits (`pack_f16_`). On the
/// H100, the Qwen2-0.5B-sized prefill's logits rounded so took 35–45 µs more than with its
/// own conversion (`benches/results/h100-2026-11-27q-packed-outputs.md`).
/// With [`packs_exactly`] telling `exact`.
pub(crate) fn pack_halves(a: &str, b: &str, exact: bool) -> String {
    // (The probe below tries the same call.)
    if exact {
        format!("pack_f16_({a}, {b})")
    } else {
        format!("pack2x16float(vec2<f32>({a}, {b}))")
    }
}

/// Whether packed f16 value `v` is written rounded on the bits ([`pack_halves`]): a graph
/// output, on a target whose own conversion is not known to round as the host's
/// ([`Target::pack_f16_rounds`]). Its writers, a row program or a cooperative GEMM, ask here.
pub(crate) fn packs_exactly(g: &Graph, v: Value, t: &Target) -> bool {
    g.is_output(v) && !t.pack_f16_rounds
}

/// A kernel trying the device's `pack2x16float` on `a` (f32 values, an even count): thread 0
/// packs each pair into `o` (one `u32` a pair), for the runtime to compare with the host's
/// rounding ([`Target::pack_f16_rounds`]).
pub const PACK_PROBE: &str = "@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(1)
fn main() {
    for (var i = 0u; i < arrayLength(&o); i = i + 1u) {
        o[i] = pack2x16float(vec2<f32>(a[2u * i], a[2u * i + 1u]));
    }
}
";

/// Threads per workgroup of [`round_f16_in_place`].
pub const ROUND_F16_WORKGROUP: u32 = 256;

/// A kernel rounding the f32 words of an f16 value to f16 in place (`round_f16_`: to the
/// nearest, ties to even, as the host rounds the f16 values it reads back), over the whole
/// binding `v`: a graph output kept on the GPU as the next call's input holds what the host
/// would have read back and uploaded. Workgroups of [`ROUND_F16_WORKGROUP`] threads over a
/// grid of any x and y (element `(y·X + x)·256 + lane`).
pub fn round_f16_in_place() -> String {
    format!(
        "{}
@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@compute @workgroup_size({ROUND_F16_WORKGROUP})
fn main(@builtin(workgroup_id) w: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>, @builtin(local_invocation_index) l: u32) {{
    let i = (w.y * n.x + w.x) * {ROUND_F16_WORKGROUP}u + l;
    if (i < arrayLength(&v)) {{
        v[i] = round_f16_(v[i]);
    }}
}}
",
        crate::elementwise::MATH
    )
}

/// A kernel of one thread per element over `total` elements, as [`per_element`], that also
/// binds `flags` words (at least one) of flags after its output as `flag:
/// array<atomic<u32>>`, before its error words ([`KernelSource::flag_words`]: zeroed by the
/// runtime before every run): a scatter's one flag per place.
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel_flags(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    out: Value,
    total: usize,
    flags: usize,
    body: &str,
    checks: Vec<Check>,
    t: &Target,
) -> Result<KernelSource> {
    let groups = (total as u64).div_ceil(WORKGROUP as u64);
    let elems = Elems::default();
    assemble(g, name, kind, ins, &[out], elems, None, None, flags.max(1), groups, WORKGROUP, "", body, checks, t)
}

/// The module and [`KernelSource`] of [`kernel_outs`] and [`kernel_flags`]: inputs (but the
/// one whose partial sums `parts` reads: bound as the scratch buffer, `part`, after the
/// outputs, see [`crate::program::PartsRead`]), outputs, `flags` words of flags as `flag`
/// where not 0, then the error words where there are checks (the order the runtime binds
/// them in). With `out0_packed`, output 0 is stored as packed f16 (`u32` words of two
/// halves: [`crate::packed_activation`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn assemble(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    outs: &[Value],
    elems: Elems,
    parts: Option<&crate::program::PartsRead>,
    scratch: Option<&Scratch>,
    flags: usize,
    groups: u64,
    threads: u32,
    prelude: &str,
    body: &str,
    checks: Vec<Check>,
    t: &Target,
) -> Result<KernelSource> {
    // (The input read as parts keeps its name's number free: the others are `in{k}` still.)
    let bound = |k: &usize| parts.is_none_or(|p| p.input != *k);
    let mut binds: Vec<(String, bool, &str)> = ins
        .iter()
        .enumerate()
        .filter(|(k, _)| bound(k))
        .map(|(k, &v)| {
            let wide = elems.wide.iter().find(|(i, _)| *i == k).map(|(_, e)| *e);
            (format!("in{k}"), false, wide.unwrap_or(Store::of(g, v).array_elem()))
        })
        .collect();
    let mut bindings: Vec<Binding> = ins
        .iter()
        .enumerate()
        .filter(|(k, _)| bound(k))
        .map(|(_, &v)| Binding { value: v, write: false, packed_f16: packed_f16(g, v) })
        .collect();
    for (k, &out) in outs.iter().enumerate() {
        let packed = k == 0 && elems.out0_packed;
        binds.push((format!("out{k}"), true, if packed { "u32" } else { Store::of(g, out).array_elem() }));
        bindings.push(Binding { value: out, write: true, packed_f16: packed });
    }
    if parts.is_some() {
        binds.push(("part".into(), false, "f32"));
    } else if let Some(sc) = scratch {
        binds.push((sc.name.into(), sc.write, "f32"));
    }
    if flags > 0 {
        binds.push(("flag".into(), true, "atomic<u32>"));
    }
    let mut wgsl = module_typed(&binds, threads, prelude, body);
    if !checks.is_empty() {
        let decl =
            format!("@group(0) @binding({}) var<storage, read_write> err: array<atomic<u32>>;\n{FAIL}", binds.len());
        wgsl.insert_str(0, &decl);
    }
    Ok(KernelSource {
        scratch_bytes: parts.map_or(scratch.map_or(0, |sc| sc.bytes), |p| p.scratch_bytes()),
        flag_words: flags as u64,
        name,
        kind,
        wgsl,
        bindings,
        workgroup_size: threads,
        workgroups: grid(groups, t.max_workgroups_per_dim)?,
        checks,
        choice: None,
    })
}

/// WGSL of a tree reduction over the workgroup's `threads` partial values: each thread puts
/// its `x` into `red[lid]`, and after the call `red[0]` holds `combine` over all of them
/// (`combine` a WGSL function name of two values). `threads` is a power of two; every thread
/// of the workgroup must reach it (it has barriers). With `sg`, by subgroups
/// ([`tree_reduce_in`]).
pub(crate) fn tree_reduce(threads: u32, x: &str, combine: &str, sg: Option<usize>) -> String {
    tree_reduce_in(&RedArray::F32, threads, x, combine, sg)
}

/// The workgroup array a tree reduction uses: `red` of f32, or the first lanes of `red` of
/// `vec4<f32>` (a kernel that declares that one for its own sums).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RedArray {
    /// `red: array<f32, ..>`.
    F32,
    /// `red: array<vec4<f32>, ..>`, its `.x` lanes.
    Vec4X,
}

impl RedArray {
    /// The element at index expression `i`.
    pub(crate) fn at(&self, i: &str) -> String {
        match self {
            RedArray::F32 => format!("red[{i}]"),
            RedArray::Vec4X => format!("red[{i}].x"),
        }
    }
}

/// The subgroup size the reductions may use: one that divides the 32 lanes of an output, on a
/// target that validates subgroup operations.
pub(crate) fn subgroup(t: &Target) -> Option<usize> {
    t.subgroup_size
        .filter(|&z| (1..=32).contains(&z) && 32 % z == 0 && t.caps.contains(naga::valid::Capabilities::SUBGROUP))
        .map(|z| z as usize)
}

/// [`tree_reduce`] over the array `arr`, by subgroups where `sg` (the device's one subgroup
/// size, see [`subgroup`]) is given and divides `threads`: each subgroup combines
/// its lanes by `subgroupShuffleXor` (in registers), its first lane puts the result into
/// `arr[subgroup_id]`, and thread 0 combines those `threads / sg` values into `arr[0]`: two
/// barriers where the tree in workgroup memory has one per halving (nine at 256 threads).
/// The body then uses the `sg_id` and `sg_lane` builtins ([`module_typed`] declares them).
pub(crate) fn tree_reduce_in(arr: &RedArray, threads: u32, x: &str, combine: &str, sg: Option<usize>) -> String {
    tree_reduce_rows(arr, &[(0, x.to_string())], threads, combine, sg)
}

/// [`tree_reduce_in`] of several values at once (an attention's query rows), value `x` of
/// each `(base, x)` reduced into `arr` from element `base` on, so that the reductions share
/// their barriers: after the call element `base` holds each one's result. With `sg`, thread
/// `i` combines value `i`'s subgroup results (there must be at most `threads` values).
pub(crate) fn tree_reduce_rows(
    arr: &RedArray,
    xs: &[(usize, String)],
    threads: u32,
    combine: &str,
    sg: Option<usize>,
) -> String {
    debug_assert!(xs.len() <= threads as usize, "a thread combines each value's subgroup results");
    let at = |base: usize, i: &str| if base == 0 { arr.at(i) } else { arr.at(&format!("{base}u + {i}")) };
    if let Some(z) = sg.filter(|&z| z > 1 && threads as usize % z == 0) {
        let mut s = String::new();
        for (base, x) in xs {
            let _ = writeln!(s, "    {{\n        var sgv_ = {x};");
            let mut m = z / 2;
            while m > 0 {
                let _ = writeln!(s, "        sgv_ = {combine}(sgv_, subgroupShuffleXor(sgv_, {m}u));");
                m /= 2;
            }
            let _ = writeln!(s, "        if (sg_lane == 0u) {{ {} = sgv_; }}\n    }}", at(*base, "sg_id"));
        }
        s.push_str("    workgroupBarrier();\n");
        let parts = threads as usize / z;
        if parts > 1 {
            for (i, (base, _)) in xs.iter().enumerate() {
                let _ = write!(s, "    if (lid == {i}u) {{\n        var sgv_ = {};\n", at(*base, "0"));
                for p in 1..parts {
                    let _ = writeln!(s, "        sgv_ = {combine}(sgv_, {});", at(*base, &format!("{p}u")));
                }
                let _ = writeln!(s, "        {} = sgv_;\n    }}", at(*base, "0"));
            }
            s.push_str("    workgroupBarrier();\n");
        }
        return s;
    }
    let mut s = String::new();
    for (base, x) in xs {
        let _ = writeln!(s, "    {} = {x};", at(*base, "lid"));
    }
    s.push_str("    workgroupBarrier();\n");
    let mut half = threads / 2;
    while half > 0 {
        let ops: Vec<String> = xs
            .iter()
            .map(|(base, _)| {
                let far = at(*base, &format!("lid + {half}u"));
                format!("{} = {combine}({}, {far});", at(*base, "lid"), at(*base, "lid"))
            })
            .collect();
        let _ = writeln!(s, "    if (lid < {half}u) {{ {} }}\n    workgroupBarrier();", ops.join(" "));
        half /= 2;
    }
    s
}

/// Threads of a workgroup that reduces `n` elements: a power of two from 32 to 256.
pub(crate) fn row_threads(n: usize) -> u32 {
    (n.max(1).next_power_of_two() as u32).clamp(32, WORKGROUP)
}
