//! The kernel choice: which kernel every node gets, in one place. [`node_kernels`] is
//! exhaustive over the op list; [`projection`] picks among the projection kernels by shape,
//! device and precision, and records the choice with its reason ([`Choice`]).

use crate::program::Prologue;
use crate::proj::coop::{self, CoopTile, Ops};
use crate::proj::{batched, gemm_tiled, gemm_unaligned, gemv, q4, scalar, ProjShape, ProjValues};
use crate::wgsl::RedArray;
use crate::{
    dims, elementwise, gpu_bytes, index, layout, nk_weight, norm, packed_f16, program, reduce, Choice, CoopMatrix,
    KernelSource, MatmulPrecision, Target,
};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{DType, Error, Graph, Layout, NodeIndex, Op, Result, Step, Value};
use naga::valid::Capabilities;

/// The (unvalidated) kernels of one node: which kernel each op gets, for every dtype it
/// takes. Empty for sources (uploaded), views (`Reshape`) and empty results; an error for an
/// opaque op or a value past the device's limits.
pub fn node_kernels(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Vec<KernelSource>> {
    node_kernels_with(g, n, b, t, None)
}

/// [`node_kernels`], a projection computing the row program `pro` in its prologue (see
/// [`prologue_for`]).
pub(crate) fn node_kernels_with(
    g: &Graph,
    n: NodeIndex,
    b: &Bindings,
    t: &Target,
    pro: Option<&Prologue>,
) -> Result<Vec<KernelSource>> {
    let node = g.node(n);
    let too_big = |v: Value| -> Result<()> {
        let bytes = gpu_bytes(g, v, b)?;
        let elems: u64 = dims(g, v, b)?.iter().map(|&d| d as u64).product();
        if bytes > t.max_binding_bytes || elems > u32::MAX as u64 {
            return Err(Error::Gpu(format!(
                "value '{}' needs {bytes} bytes, more than this device binds in one buffer ({} bytes)",
                g.value_name(v),
                t.max_binding_bytes
            )));
        }
        Ok(())
    };
    // A value its readers read in place ([`Graph::read_in_place`]: a transposed weight, a
    // gather of slabs, squares a sum squares, rows an expand repeats) takes no kernel and no
    // buffer: its readers bind what it is read from.
    if g.read_in_place(Value::of(n)).is_some() {
        return Ok(vec![]);
    }
    // A value read in place (a transposed weight, a gather's table) takes no buffer of its own.
    for v in g.inputs(n) {
        too_big(g.read_in_place(v).unwrap_or(v))?;
    }
    for k in 0..node.outputs.len() {
        too_big(Value { node: n, output: k })?;
    }
    // An empty result takes no dispatch (a split's empty parts are left out in `split`).
    let empty = |v: Value| -> Result<bool> { Ok(dims(g, v, b)?.contains(&0)) };
    // A scatter into empty data still checks its updates' indices (every one is out of range).
    let scatter = matches!(node.op, Op::ScatterND | Op::ScatterElements { .. });
    if !matches!(node.op, Op::Split { .. }) && !scatter && !node.outputs.is_empty() && empty(Value::of(n))? {
        return Ok(vec![]);
    }
    let one = |k: Result<KernelSource>| k.map(|k| vec![k]);
    check_quant_readers(g, n)?;
    match &node.op {
        // Sources are uploaded (a `SymConstant` under the binding); `Reshape` is a view.
        Op::Input | Op::Weight(_) | Op::QuantWeight(_) | Op::Constant(_) | Op::SymConstant(_) | Op::Reshape { .. } => {
            Ok(vec![])
        }
        Op::Opaque { op_type, .. } if op_type == "If" => Err(Error::graph(
            &node.name,
            "opaque op 'If' cannot run on the GPU: glufuse runs one branch of a graph; give the graph input the If takes as its condition as one boolean (glufuse run --input NAME=F.npy, the library's glufuse::load_with) and the graph loads as the branch it picks",
        )),
        Op::Opaque { op_type, .. } => Err(Error::graph(
            &node.name,
            format!("opaque op '{op_type}' cannot run on the GPU: glufuse has no kernel for it"),
        )),
        Op::MatMul => {
            let (a, w) = (g.inputs(n)[0], g.inputs(n)[1]);
            if g.ty(w).rank() == 2 && g.ty(a).rank() >= 2 {
                projection(g, n, &ProjShape::matmul(g, n, b)?, b, t, pro)
            } else {
                one(batched::batched_matmul(g, n, b, t))
            }
        }
        // Weights of rank 3: a matrix per row of x (a mixture of experts' gated unit).
        Op::FusedGateUp(_) if g.ty(g.inputs(n)[1]).rank() == 3 => one(batched::fused_experts(g, n, b, t)),
        Op::FusedGateUp(_) => projection(g, n, &ProjShape::fused(g, n, b)?, b, t, pro),
        Op::Unary(u) => one(elementwise::unary(g, n, *u, b, t)),
        Op::Binary(op) => one(elementwise::binary(g, n, *op, b, t)),
        Op::Where => one(elementwise::where_(g, n, b, t)),
        Op::Cast { to } => one(elementwise::cast(g, n, *to, b, t)),
        Op::Elementwise(p) => one(program::program(g, n, p, b, t, None)),
        Op::Attention(a) => program::attention_kernels(g, n, a, b, t),
        Op::Transpose { perm } => one(layout::transpose(g, n, perm, b, t)),
        Op::Expand { .. } => one(layout::expand(g, n, b, t)),
        Op::Slice { axis, start, step, .. } => one(layout::slice(g, n, *axis, start, *step, b, t)),
        Op::Split { axis, .. } => layout::split(g, n, *axis, b, t),
        Op::Concat { axis } => one(layout::concat(g, n, *axis, b, t)),
        Op::Gather { axis } => one(index::gather(g, n, *axis, b, t)),
        Op::GatherND { batch_dims } => one(index::gather_nd(g, n, *batch_dims, b, t)),
        Op::ScatterND => index::scatter_nd(g, n, b, t),
        Op::ScatterElements { axis } => index::scatter_elements(g, n, *axis, b, t),
        Op::Range { .. } => one(index::range(g, n, b, t)),
        Op::Reduce { op, axes, .. } => one(reduce::reduce(g, n, *op, axes, b, t)),
        Op::Softmax { axis } => one(reduce::softmax(g, n, *axis, b, t)),
        Op::CumSum { axis, exclusive, reverse } => one(reduce::cumsum(g, n, *axis, *exclusive, *reverse, b, t)),
        Op::TopK { axis, k, largest } => one(reduce::top_k(g, n, *axis, *k, *largest, b, t)),
        Op::LayerNorm { axis, epsilon, scale, bias } => {
            one(norm::layer_norm(g, n, *axis, *epsilon, *scale, *bias, b, t))
        }
    }
}

/// Checks that node `n` reads 4-bit weights only as a projection does (a `MatMul`'s weight,
/// itself or through a 2-D `Transpose` the projections read in place, [`nk_weight`]; a
/// `FusedGateUp`'s gate and up weights): no kernel reads one as floats yet.
fn check_quant_readers(g: &Graph, n: NodeIndex) -> Result<()> {
    let node = g.node(n);
    for (i, v) in g.inputs(n).into_iter().enumerate() {
        let direct = matches!(g.node(v.node).op, Op::QuantWeight(_));
        let behind = !direct && crate::proj::quant_operand(g, v).is_some();
        if !direct && !behind {
            continue;
        }
        let matmul = matches!(node.op, Op::MatMul) && i == 1 && g.ty(g.inputs(n)[0]).rank() >= 2;
        let fused = matches!(node.op, Op::FusedGateUp(_)) && direct && (i == 1 || i == 2);
        // A transpose only where every reader is such a projection (read in place).
        let transpose = direct && matches!(node.op, Op::Transpose { .. }) && nk_weight(g, Value::of(n)).is_some();
        if !(matmul || fused || transpose) {
            return Err(Error::graph(
                &node.name,
                format!(
                    "no GPU kernel yet for {} reading the 4-bit weight '{}' as floats (the CPU interpreter runs it)",
                    node.op.label(),
                    g.value_name(v)
                ),
            ));
        }
    }
    Ok(())
}

/// Fewest rows of x the cooperative-matrix GEMM takes. Up to 8 rows the GEMVs read the
/// weights once (at 2.7–3.0 TB/s on an H100, against 2.2–2.3 TB/s for the cooperative-matrix
/// kernel's 16-row tiles); past 8 they read them again per 8 rows (16 in `[N,K]` with
/// subgroups), and at 16 rows the cooperative-matrix kernel took 100–109 µs where the GEMVs
/// took 263–360 µs (Llama-3-8B gate/up, f16, issue #15).
pub const COOP_MIN_ROWS: usize = 9;

/// The kernels of a projection node (a `MatMul` with a 2-D weight, or a `FusedGateUp`), with
/// their [`Choice`]: the cooperative-matrix GEMM past 8 rows where the device has 16×16×16
/// f16×f16→f32 cooperative matrices, the precision allows f16 products and the shape suits
/// it ([`coop_tile`]; split over k with a second kernel adding the parts up where its tiles
/// are too few for the device: [`coop::split`]); else the vector GEMV up to 32 rows when the weight rows allow 16-byte
/// loads (the `[K, N]` one split over k, with a second kernel adding the parts up, where its
/// grid is too small for the device: [`gemv::kn_split`]); past 8 rows the aligned GEMM where x and the weights load as 16-byte vectors (split over k
/// the same way where its grid is small: [`gemm_tiled::split`]), else
/// the scalar-load GEMM; the scalar template otherwise (and wherever gate and up weights
/// differ in storage).
pub(crate) fn projection(
    g: &Graph,
    n: NodeIndex,
    s: &ProjShape,
    b: &Bindings,
    t: &Target,
    pro: Option<&Prologue>,
) -> Result<Vec<KernelSource>> {
    let (ins, out) = (proj_inputs(g, n), Value::of(n));
    let name = g.node(n).name.clone();
    // x, or the output, stored as packed f16 ([`packed_activation`]): only where this node
    // gets the cooperative GEMM (unsplit, for the output), which the choice below confirms.
    let (x_packed, out_packed) = (packed_activation(g, ins[0], b, t)?, packed_activation(g, out, b, t)?);
    let out_exact = out_packed && crate::wgsl::packs_exactly(g, out, t);
    let v = ProjValues { x_packed, out_packed, out_exact, ..ProjValues::new(g, &ins, out, s) };
    // A split's partial sums take no epilogue: their kernel binds no biases (the sum's does).
    let parts = || ProjValues { b_gate: None, b_up: None, x_packed, ..ProjValues::new(g, &ins, out, s) };
    let unpacked = |kernel: &str| -> Result<()> {
        if x_packed || out_packed {
            return Err(Error::Internal(format!("'{name}': {kernel} reads and writes no packed f16 activations")));
        }
        Ok(())
    };
    // A prologue goes only to an unsplit decode GEMV, of either layout ([`prologue_for`]
    // checks the shape against the choice below): any other kernel would leave the program
    // uncomputed.
    let dropped = |kernel: &str| -> Result<()> {
        match pro {
            Some(p) => Err(Error::graph(
                &name,
                format!("{kernel} cannot compute the row program '{}' (a glufuse bug)", g.node(p.node).name),
            )),
            None => Ok(()),
        }
    };
    if s.q4.is_some() {
        dropped("the 4-bit projection")?;
        unpacked("the 4-bit projection")?;
        let note = in_place(g, n, &ins);
        return projection_q4(name, s, &v, t).map(|k| {
            let c = k.choice.clone().expect("chosen");
            vec![chosen(k, c.kernel, format!("{}{note}", c.reason))]
        });
    }
    let same_dtype = s.fused.is_none() || packed_f16(g, ins[2]) == s.f16;
    // An inner dim of 0 is an empty sum: every output is 0 (plus the bias), which the scalar
    // template computes with a loop that never runs; the others tile (or split) K.
    if s.k == 0 {
        dropped("the scalar template")?;
        unpacked("the scalar template")?;
        let k = scalar::scalar(g, name, &ins, out, s, t)?;
        return Ok(vec![chosen(k, "scalar".into(), "K = 0: every sum is empty".into())]);
    }
    // A plain projection whose one reader is a row program adding its parts up: split (the
    // tiling and parts of [`coop::reader_adds_parts`], as if forced).
    let parts_target;
    let (t, read_parts) = match read_parts_target(g, n, s, t) {
        Some(rt) => {
            parts_target = rt;
            (&parts_target, true)
        }
        None => (t, false),
    };
    let not_coop = match coop_tile(s, t, same_dtype) {
        Ok((tile, why)) => {
            dropped("the cooperative-matrix GEMM")?;
            let ops = if t.coop_emulate { Ops::Emulated } else { Ops::Native };
            let note = in_place(g, n, &ins);
            if let (split, Some(why_split)) = coop::split(s, tile, t.coop_split) {
                if out_packed {
                    unpacked("the split cooperative-matrix GEMM")?;
                }
                let why_split = if read_parts {
                    format!("split K={} in {split}: the row program reading it adds the parts up", s.k)
                } else {
                    why_split
                };
                let k = coop::coop(name.clone(), s, &parts(), t, tile, ops, split)?;
                return split_pair(
                    k,
                    &name,
                    s,
                    &v,
                    t,
                    split,
                    format!("coop {tile} split-k {split}"),
                    format!("{why}; {why_split}{note}"),
                );
            }
            let k = coop::coop(name, s, &v, t, tile, ops, 1)?;
            return Ok(vec![chosen(k, format!("coop {tile}"), format!("{why}{note}"))]);
        }
        Err(why_not) => why_not,
    };
    unpacked("a projection kernel other than the cooperative GEMM")?;
    let m = s.rows;
    let (k, kernel, why) = if same_dtype && s.gemv_fits() {
        let why = format!("M={m} ≤ 32, 16-byte aligned weight rows");
        let (k, l) = match (s.layout, gemv::kn_split(s)) {
            (Layout::Kn, (split, Some(why_split))) => {
                dropped("the split GEMV")?;
                let k = gemv::gemv_kn(name.clone(), s, &parts(), t, split, None)?;
                let why = format!("{why}; {why_split}; not coop: {not_coop}{}", in_place(g, n, &ins));
                return split_pair(k, &name, s, &v, t, split, format!("gemv-kn split-k {split}"), why);
            }
            (Layout::Kn, _) => (gemv::gemv_kn(name, s, &v, t, 1, pro)?, "kn"),
            (Layout::Nk, _) => (gemv::gemv_nk(name, s, &v, t, pro)?, "nk"),
        };
        (k, format!("gemv-{l}"), why)
    } else if let Some(p) = pro {
        let what = format!("a GEMM or the scalar template cannot compute the row program '{}'", g.node(p.node).name);
        return Err(Error::graph(&name, format!("{what} (a glufuse bug)")));
    } else if same_dtype && m > 8 && gemm_tiled::fits(s) {
        let (tiles, why_tiles) = gemm_tiled::pick(s, t);
        let label = format!("gemm {tiles}{}", why_tiles.map_or(String::new(), |w| format!(" ({w})")));
        let why = format!("M={m} > 8, 16-byte aligned operands");
        if let (split, Some(why_split)) = gemm_tiled::split(s, tiles, t) {
            let k = gemm_tiled::gemm_tiled(name.clone(), s, &parts(), t, tiles, split)?;
            let why = format!("{why}; {why_split}; not coop: {not_coop}{}", in_place(g, n, &ins));
            return split_pair(k, &name, s, &v, t, split, format!("{label} split-k {split}"), why);
        }
        (gemm_tiled::gemm_tiled(name, s, &v, t, tiles, 1)?, label, why)
    } else if same_dtype && m > 8 {
        let k = gemm_unaligned::gemm_unaligned(name, s, &v, t)?;
        (k, "gemm-unaligned".into(), format!("M={m} > 8, operands not 16-byte aligned"))
    } else {
        let why = if same_dtype {
            format!("M={m} ≤ 8, weight rows not 16-byte aligned")
        } else {
            "gate and up weights stored in different types".into()
        };
        (scalar::scalar(g, name, &ins, out, s, t)?, "scalar".into(), why)
    };
    let folded = pro.map_or(String::new(), |p| {
        format!("; computes the row program '{}' (which writes its x) in its prologue", g.node(p.node).name)
    });
    Ok(vec![chosen(k, kernel, format!("{why}; not coop: {not_coop}{}{folded}", in_place(g, n, &ins)))])
}

/// Most rows of x a GEMV computes a row program for. Each workgroup computes the reductions
/// of every row of its tile (up to 8) and evaluates the program once per row and weight row
/// read, so the kernel's code grows with the rows: at 8 rows a tile (the bundled Llama's 22
/// prefill rows) lavapipe took 25 s to compile the fused graph's kernels against 0.24 s
/// without the fold. Decode (1 row) and small batches fold.
pub(crate) const PROLOGUE_MAX_ROWS: usize = 4;

/// Most storage buffers a kernel with a prologue binds: WebGPU's default limit per shader
/// stage, so that the fold never needs more than every device offers.
const PROLOGUE_MAX_BINDINGS: usize = 8;

/// The row program projection `n` computes in its prologue instead of reading its x, where
/// it qualifies: `n` gets a decode GEMV without a split, as [`projection`] chooses (at most
/// [`PROLOGUE_MAX_ROWS`] rows, which the cooperative-matrix GEMM never takes; weights of one
/// storage type, not 4-bit, whose rows allow the GEMV's 16-byte loads; `[N, K]` weights,
/// a transpose read in place included, or `[K, N]` weights whose GEMV is not split over k,
/// [`gemv::kn_split`]); its x is output 0 of a row program ([`program::row_prologue`]) that
/// nothing else reads and that is no graph output; every reader of the program's other
/// outputs comes after `n` in `order` (the GEMV writes them); and the kernel binds at most
/// [`PROLOGUE_MAX_BINDINGS`] buffers (the program's inputs and other outputs, the weights,
/// the biases and the output).
pub(crate) fn prologue_for(
    g: &Graph,
    n: NodeIndex,
    order_pos: &std::collections::HashMap<NodeIndex, usize>,
    b: &Bindings,
    t: &Target,
) -> Result<Option<Prologue>> {
    let Some((s, same_dtype)) = proj_shape(g, n, b)? else { return Ok(None) };
    let ins = proj_inputs(g, n);
    if s.q4.is_some()
        || !same_dtype
        || s.k == 0
        || s.rows == 0
        || s.rows > PROLOGUE_MAX_ROWS
        || coop_tile(&s, t, same_dtype).is_ok()
        || !s.gemv_fits()
        || (s.layout == Layout::Kn && gemv::kn_split(&s).0 != 1)
        || (s.layout == Layout::Nk && !gemv::nk_prologue_fits(&s, t))
    {
        return Ok(None);
    }
    let x = ins[0];
    let p = x.node;
    if x.output != 0 || g.is_output(x) || g.users(x).iter().any(|&(r, _)| r != n) {
        return Ok(None);
    }
    let outs = g.node(p).outputs.len();
    for k in 1..outs {
        let v = Value { node: p, output: k };
        if g.users(v).iter().any(|(r, _)| order_pos.get(r) <= order_pos.get(&n)) {
            return Ok(None);
        }
    }
    // Each GEMV declares the workgroup array its own sums use (the prologue's reductions go
    // through it): vec4 in the `[K, N]` one, f32 in the `[N, K]` one.
    let arr = match s.layout {
        Layout::Kn => RedArray::Vec4X,
        Layout::Nk => RedArray::F32,
    };
    let sg = crate::wgsl::subgroup(t);
    let Some(pro) = program::row_prologue(g, p, b, s.rows, s.k, sg, arr)? else { return Ok(None) };
    let v = ProjValues::new(g, &ins, Value::of(n), &s);
    // (The same count in either layout: an `[N, K]` weight read in place binds as one.)
    let bound = pro.ins.len()
        + pro.also.len()
        + 2
        + usize::from(v.w_up.is_some() && !s.merged)
        + usize::from(v.b_gate.is_some())
        + usize::from(v.b_up.is_some());
    if bound > PROLOGUE_MAX_BINDINGS {
        return Ok(None);
    }
    Ok(Some(pro))
}

/// Whether value `v`, computed on the GPU, is stored as packed f16 (two halves a `u32`, as
/// f16 weights are) instead of one f32 per element: an f16 value, output 0 of its node,
/// written by a row program (a norm) or by a projection that gets the unsplit
/// cooperative-matrix GEMM (a gated unit, an LM head), and either
/// - no graph output, read only as x by projections that get the cooperative-matrix GEMM
///   (not 4-bit). Those GEMMs round x to f16 where they stage it anyway, so storing it
///   rounded changes no value they multiply (the outputs are bit for bit the same), and its
///   writes and their loads of it take half the bytes: the Qwen2-0.5B-sized f16 prefill on an
///   H100, 2403–2411 → 2292–2295 µs (`benches/results/h100-2026-11-27o-packed.md`); or
/// - a graph output that no node reads (of rows of even length, for a row program, which
///   writes two neighbours a thread). Its writer rounds it as the host rounds an f16 output
///   it reads back as f32 (the nearest f16, ties to even, past 65504 infinity: the same
///   values), by the device's own conversion where it is known to round so
///   ([`Target::pack_f16_rounds`]), else on the bits; the call copies and converts half the
///   bytes: the Qwen2-0.5B-sized prefill's 128 × 151936 logits, 78 → 39 MB, its call on an
///   H100 11.9–13.1 → 9.2–9.6 ms (`benches/results/h100-2026-11-27q-packed-outputs.md`).
///
/// The runtime sizes its buffer for the halves.
pub fn packed_activation(g: &Graph, v: Value, b: &Bindings, t: &Target) -> Result<bool> {
    if v.output != 0 || g.ty(v).dtype != DType::F16 || matches!(g.node(v.node).op, Op::Weight(_)) {
        return Ok(false);
    }
    let users = g.users(v);
    let output = g.is_output(v);
    if output != users.is_empty() {
        return Ok(false);
    }
    for (r, input) in users {
        if input != 0 || proj_inputs(g, r)[0] != v || coop_shape(g, r, b, t)?.is_none() {
            return Ok(false);
        }
    }
    let op = &g.node(v.node).op;
    if let Op::Elementwise(p) = op {
        let even = !output || dims(g, v, b)?.last().is_some_and(|&d| d % 2 == 0);
        return Ok(even && p.steps.iter().any(Step::is_row));
    }
    Ok(match coop_shape(g, v.node, b, t)? {
        Some((s, tile)) => coop::split(&s, tile, t.coop_split).0 == 1,
        None => false,
    })
}

/// The product of node `n` where the projection kernels take it (a `FusedGateUp`, or a
/// `MatMul` with a 2-D weight and an x of rank 2 or more), and whether its gate and up
/// weights are stored alike; `None` for any other node.
fn proj_shape(g: &Graph, n: NodeIndex, b: &Bindings) -> Result<Option<(ProjShape, bool)>> {
    // (Projections only; no catch-all arm in this file: tests/architecture.rs.)
    let s = if matches!(g.node(n).op, Op::FusedGateUp(_)) {
        if g.ty(g.inputs(n)[1]).rank() != 2 {
            return Ok(None);
        }
        ProjShape::fused(g, n, b)?
    } else if matches!(g.node(n).op, Op::MatMul) {
        let (a, w) = (g.inputs(n)[0], g.inputs(n)[1]);
        if g.ty(w).rank() != 2 || g.ty(a).rank() < 2 {
            return Ok(None);
        }
        ProjShape::matmul(g, n, b)?
    } else {
        return Ok(None);
    };
    let ins = proj_inputs(g, n);
    let same_dtype = s.fused.is_none() || packed_f16(g, ins[2]) == s.f16;
    Ok(Some((s, same_dtype)))
}

/// The shape and tiling of projection `n` where it gets the cooperative-matrix GEMM, as
/// [`projection`] chooses (not 4-bit, K not 0); `None` for any other node or kernel.
fn coop_shape(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Option<(ProjShape, CoopTile)>> {
    let Some((s, same_dtype)) = proj_shape(g, n, b)? else { return Ok(None) };
    if s.q4.is_some() || s.k == 0 {
        return Ok(None);
    }
    Ok(coop_tile(&s, t, same_dtype).ok().map(|(tile, _)| (s, tile)))
}

/// A projection split over k: its partial-sums kernel `k`, then the kernel adding the
/// `split` parts up with the epilogue ([`gemv::split_sum`]), both chosen as `kernel` (the
/// second as "`kernel` sum") for reason `why`.
#[allow(clippy::too_many_arguments)]
fn split_pair(
    k: KernelSource,
    name: &str,
    s: &ProjShape,
    v: &ProjValues,
    t: &Target,
    split: usize,
    kernel: String,
    why: String,
) -> Result<Vec<KernelSource>> {
    let sum = gemv::split_sum(format!("{name}.split_sum"), s, v, t, split)?;
    Ok(vec![chosen(k, kernel.clone(), why.clone()), chosen(sum, format!("{kernel} sum"), why)])
}

/// The reason's note where a projection reads a transposed weight in place ([`nk_weight`]).
fn in_place(g: &Graph, n: NodeIndex, ins: &[Value]) -> String {
    let t = g.inputs(n)[1];
    if ins[1] == t {
        return String::new();
    }
    format!("; '{}' read in place as [N,K] for the transpose '{}'", g.value_name(ins[1]), g.value_name(t))
}

/// The values a projection node reads, a transposed weight read in place ([`nk_weight`])
/// replaced by the `[N, K]` weight itself.
pub(crate) fn proj_inputs(g: &Graph, n: NodeIndex) -> Vec<Value> {
    let mut ins = g.inputs(n);
    if matches!(g.node(n).op, Op::MatMul) {
        if let Some(w) = nk_weight(g, ins[1]) {
            ins[1] = w;
        }
    }
    ins
}

/// The kernel of a projection through 4-bit weights: the cooperative-matrix GEMM where
/// [`coop_tile`] allows it (the chunks dequantized to f16 while staged), else the 4-bit
/// GEMV up to 8 rows and the 4-bit tiled GEMM past them ([`q4`]).
fn projection_q4(name: String, s: &ProjShape, v: &ProjValues, t: &Target) -> Result<KernelSource> {
    let not_coop = match coop_tile(s, t, true) {
        Ok((tile, why)) => {
            let ops = if t.coop_emulate { Ops::Emulated } else { Ops::Native };
            let k = coop::coop(name, s, v, t, tile, ops, 1)?;
            return Ok(chosen(k, format!("coop {tile}"), format!("{why}, 4-bit weights dequantized while staged")));
        }
        Err(why_not) => why_not,
    };
    let m = s.rows;
    let (k, kernel, why) = if m <= 8 {
        let r = q4::gemv_cols(s, t);
        let k = q4::gemv_q4(name, s, v, t)?;
        (k, format!("gemv-q4 r{r} {}", t.q4_unpack), format!("M={m} ≤ 8: one pass over the packed weights"))
    } else {
        (q4::gemm_q4(name, s, v, t)?, format!("gemm-q4 {}", t.q4_unpack), format!("M={m} > 8"))
    };
    Ok(chosen(k, kernel, format!("{why}; not coop: {not_coop}")))
}

/// The kernel with its choice recorded, as data and as the first line of its WGSL.
fn chosen(k: KernelSource, kernel: String, reason: String) -> KernelSource {
    k.with_choice(Choice { kernel, reason })
}

/// `t` with the tiling and split of [`coop::reader_adds_parts`] forced, where projection `n`
/// takes them: a `MatMul`, not a graph output, whose one reader is a row program (which
/// [`crate::generate`] has add the parts up where it runs right after); `None` elsewhere.
fn read_parts_target(g: &Graph, n: NodeIndex, s: &ProjShape, t: &Target) -> Option<Target> {
    let out = Value::of(n);
    let users = g.users(out);
    let [(reader, _)] = users[..] else { return None };
    let row_program = matches!(&g.node(reader).op, Op::Elementwise(p) if p.steps.iter().any(Step::is_row));
    if !matches!(g.node(n).op, Op::MatMul) || g.is_output(out) || !row_program || s.rows < COOP_MIN_ROWS {
        return None;
    }
    let (tile, split) = coop::reader_adds_parts(s, t)?;
    Some(Target { coop_tiles: Some(tile), coop_split: Some(split), ..t.clone() })
}

/// Whether a projection runs on cooperative matrices, under which tiling and why; or why
/// not. In order: the precision must allow f16 products ([`MatmulPrecision`]), the device
/// must offer [`CoopMatrix::F16_F32_16`] with subgroups of 32 (or the target emulates them),
/// x must have more than 8 rows ([`COOP_MIN_ROWS`]), gate and up must be stored alike, and
/// the shape must suit a tiling that fits the device's workgroup memory ([`coop::pick`], or
/// the forced [`Target::coop_tiles`], or its class's in [`Target::coop_class_tiles`]).
pub(crate) fn coop_tile(
    s: &ProjShape,
    t: &Target,
    same_dtype: bool,
) -> std::result::Result<(CoopTile, String), String> {
    let weights = match (t.matmul_precision, s.f16_values, s.f16) {
        (MatmulPrecision::F32, _, _) => return Err("matmul precision f32".into()),
        (MatmulPrecision::AsWeights, false, _) if s.q4.is_some() => {
            return Err("4-bit weights with f32 scales keep f32 products (matmul precision f16 would allow f16)".into())
        }
        (_, true, _) if s.q4.is_some() => "4-bit weights, f16 scales",
        (MatmulPrecision::F16, false, _) if s.q4.is_some() => {
            "4-bit weights, f32 scales rounded to f16 (matmul precision f16)"
        }
        (MatmulPrecision::AsWeights, false, _) => {
            return Err("f32 weights keep f32 products (matmul precision f16 would allow f16)".into())
        }
        (_, true, true) => "f16 weights",
        (_, true, false) => "f16 weights stored as f32",
        (MatmulPrecision::F16, false, _) => "f32 weights rounded to f16 (matmul precision f16)",
    };
    let device = if !t.caps.contains(Capabilities::SHADER_FLOAT16) {
        return Err("the device has no f16 in shaders".into());
    } else if t.coop_emulate {
        "emulated cooperative matrices"
    } else if !t.coop_matrix.contains(&CoopMatrix::F16_F32_16) || !t.caps.contains(Capabilities::COOPERATIVE_MATRIX) {
        return Err("the adapter has no 16x16x16 f16×f16→f32 cooperative matrices".into());
    } else if t.subgroup_size != Some(coop::SUBGROUP as u32) {
        return Err(format!("the adapter's subgroups are not fixed at {} lanes", coop::SUBGROUP));
    } else {
        "adapter has 16x16x16 f16×f16→f32"
    };
    if s.rows < COOP_MIN_ROWS {
        return Err(format!("M={} ≤ {}: the GEMV reads the weights once", s.rows, COOP_MIN_ROWS - 1));
    }
    if !same_dtype {
        return Err("gate and up weights stored in different types".into());
    }
    let max = t.max_workgroup_storage_bytes as usize;
    let class = coop::CoopClass::of(s);
    // A class's tiling (tuning, `GLUFUSE_COOP_TILES`) where it fits this shape, else the
    // default pick, the choice saying so: a projection of the class whose shape it does not
    // fit keeps the cooperative GEMM (a tiled GEMM in its place took the Qwen2-0.5B-sized
    // LM head from 222 to 975 µs on an H100).
    let mut note = String::new();
    let tile = match (t.coop_tiles, t.coop_class_tiles.iter().find(|(c, _)| *c == class)) {
        (Some(tl), _) => coop::check(s, tl, max).map(|()| tl)?,
        (None, Some(&(_, tl))) => match coop::check(s, tl, max) {
            Ok(()) => tl,
            Err(e) => {
                note = format!("; the {class} tiling does not fit ({e}): the default pick");
                coop::pick(s, max)?
            }
        },
        (None, None) => coop::pick(s, max)?,
    };
    Ok((tile, format!("{device}, {weights}, M={}{note}", s.rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glufuse_ir::builder::GraphBuilder;
    use glufuse_ir::ops::binary::BinaryOp;
    use glufuse_ir::{shape_of, DType, ElementwiseProgram, ReduceOp, Step};

    /// `x + mean(x²)` over rows of 64 (a row program), then `· W [64, 32]`, over `rows` rows.
    fn norm_then_proj(rows: u64) -> (Graph, NodeIndex, NodeIndex) {
        norm_then_proj_in(rows, false)
    }

    /// [`norm_then_proj`], `W` the transpose of a `[32, 64]` weight (read in place) when `nk`.
    fn norm_then_proj_in(rows: u64, nk: bool) -> (Graph, NodeIndex, NodeIndex) {
        norm_then_proj_wide(rows, nk, 32)
    }

    /// `x + mean(x²)` over the rows of `x` (a row program), named `norm`.
    fn norm(b: &mut GraphBuilder, x: Value) -> Value {
        let steps = vec![
            Step::Input(0),
            Step::Binary { op: BinaryOp::Mul, a: 0, b: 0 },
            Step::Reduce { op: ReduceOp::Mean, x: 1 },
            Step::Binary { op: BinaryOp::Add, a: 0, b: 2 },
        ];
        let prog = ElementwiseProgram { steps, also: vec![], replaced: vec![] };
        b.node("norm", Op::Elementwise(prog), &[x], vec![])[0]
    }

    /// [`norm_then_proj_in`] with `width` output features.
    fn norm_then_proj_wide(rows: u64, nk: bool, width: u64) -> (Graph, NodeIndex, NodeIndex) {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[rows, 64]));
        let n = norm(&mut b, x);
        let w = if nk {
            let wt = b.weight("w.nk", DType::F32, &[width, 64], 0.3);
            b.transpose("w", wt, &[1, 0])
        } else {
            b.weight("w", DType::F32, &[64, width], 0.3)
        };
        let y = b.matmul("proj", n, w);
        let g = b.finish(&[y]).unwrap();
        let (p, m) = (g.find("norm").unwrap(), g.find("proj").unwrap());
        (g, p, m)
    }

    /// The fold's decision and the kernel choice agree: a GEMV projection takes the
    /// program, and a prologue handed to a projection that another kernel computes is an error
    /// naming the program, never a kernel that leaves it uncomputed.
    #[test]
    fn a_prologue_goes_to_the_decode_gemv_only() {
        let b = Bindings::new();
        let t = Target::default();
        let (g, p, m) = norm_then_proj(1);
        let pos = g.topo_order().unwrap().into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        let pro = prologue_for(&g, m, &pos, &b, &t).unwrap().expect("the decode GEMV takes the norm");
        assert_eq!(pro.node, p);
        let ks = node_kernels_with(&g, m, &b, &t, Some(&pro)).unwrap();
        assert!(ks[0].choice.as_ref().unwrap().reason.contains("'norm'"), "{:?}", ks[0].choice);
        // Up to PROLOGUE_MAX_ROWS rows, not past them (the GEMV's code grows with its rows).
        for (rows, folds) in [(PROLOGUE_MAX_ROWS as u64, true), (PROLOGUE_MAX_ROWS as u64 + 1, false)] {
            let (gr, _, mr) = norm_then_proj(rows);
            let posr = gr.topo_order().unwrap().into_iter().enumerate().map(|(i, n)| (n, i)).collect();
            assert_eq!(prologue_for(&gr, mr, &posr, &b, &t).unwrap().is_some(), folds, "{rows} rows");
        }
        // 40 rows: the GEMM, which takes no prologue.
        let (g40, _, m40) = norm_then_proj(40);
        let pos40 = g40.topo_order().unwrap().into_iter().enumerate().map(|(i, n)| (n, i)).collect();
        assert!(prologue_for(&g40, m40, &pos40, &b, &t).unwrap().is_none());
        let norm40 = g40.find("norm").unwrap();
        let forced = program::row_prologue(&g40, norm40, &b, 40, 64, None, RedArray::Vec4X).unwrap().unwrap();
        let e = node_kernels_with(&g40, m40, &b, &t, Some(&forced)).unwrap_err().to_string();
        assert!(e.contains("cannot compute the row program 'norm'"), "{e}");
    }

    /// The `[N, K]` GEMV (a transposed weight read in place) takes the program too, up to
    /// [`PROLOGUE_MAX_ROWS`] rows, and computes it in its prologue: its inputs bound
    /// instead of x, its reductions through the kernel's f32 `red`, x into workgroup memory;
    /// where x does not fit there, or the grid is too wide, it takes none.
    #[test]
    fn a_prologue_goes_to_the_nk_gemv_too() {
        let b = Bindings::new();
        let caps = Target::default().caps | Capabilities::SUBGROUP;
        for t in [Target::default(), Target { caps, subgroup_size: Some(32), ..Target::default() }] {
            for (rows, folds) in [(1u64, true), (PROLOGUE_MAX_ROWS as u64, true), (PROLOGUE_MAX_ROWS as u64 + 1, false)]
            {
                let (g, p, m) = norm_then_proj_in(rows, true);
                let pos = g.topo_order().unwrap().into_iter().enumerate().map(|(i, n)| (n, i)).collect();
                let pro = prologue_for(&g, m, &pos, &b, &t).unwrap();
                assert_eq!(pro.is_some(), folds, "{rows} rows");
                let Some(pro) = pro else { continue };
                assert_eq!(pro.node, p);
                let ks = node_kernels_with(&g, m, &b, &t, Some(&pro)).unwrap();
                let c = ks[0].choice.as_ref().unwrap();
                assert_eq!(c.kernel, "gemv-nk");
                assert!(c.reason.contains("'norm'"), "{c:?}");
                let wgsl = &ks[0].wgsl;
                assert!(wgsl.contains("fn px_(") && wgsl.contains("var<workgroup> red: array<f32, "), "{wgsl}");
                assert!(!wgsl.contains(" x: array<"), "x is not bound: {wgsl}");
                assert_eq!(wgsl.contains("subgroupAdd"), t.subgroup_size.is_some());
                // x staged in workgroup memory (it fits: 64 f32 a row).
                assert!(wgsl.contains("var<workgroup> xs: array<vec4<f32>, ") && !wgsl.contains("px_(xe0"), "{wgsl}");
                crate::validate(ks[0].clone(), t.caps).unwrap();
                // Not where x does not fit in workgroup memory: the norm keeps its kernel, and
                // a prologue handed to the GEMV anyway is an error, not a kernel without it.
                let small = Target { max_workgroup_storage_bytes: 1024, ..t.clone() };
                assert!(prologue_for(&g, m, &pos, &b, &small).unwrap().is_none());
                let e = node_kernels_with(&g, m, &b, &small, Some(&pro)).unwrap_err().to_string();
                assert!(e.contains("does not fit") && e.contains("a glufuse bug"), "{e}");
            }
            // Nor on a grid of more than NK_PROLOGUE_MAX_WORKGROUPS (8 outputs a workgroup
            // here): an LM head's.
            let wide = 8 * gemv::NK_PROLOGUE_MAX_WORKGROUPS as u64;
            for (n, folds) in [(wide, true), (wide + 8, false)] {
                let (g, _, m) = norm_then_proj_wide(1, true, n);
                let pos = g.topo_order().unwrap().into_iter().enumerate().map(|(i, n)| (n, i)).collect();
                assert_eq!(prologue_for(&g, m, &pos, &b, &t).unwrap().is_some(), folds, "N = {n}");
            }
        }
    }

    /// An f16 norm feeding one projection, `rows` rows: x `[rows, k]`, the norm a row
    /// program, the projection through a `[k, k]` weight, its output read by a second
    /// projection of the same weight; `extra` adds a second reader of the norm's output (an
    /// elementwise add with x, or where `extra_proj` a third projection), `out` makes the
    /// norm's output a graph output too.
    fn packed_graph(rows: u64, k: u64, dtype: DType, extra: bool, out: bool) -> Graph {
        packed_graph_with(rows, k, dtype, extra, false, out)
    }

    /// [`packed_graph`], the norm's second reader a projection where `extra_proj`.
    fn packed_graph_with(rows: u64, k: u64, dtype: DType, extra: bool, extra_proj: bool, out: bool) -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", dtype, shape_of(&[rows, k]));
        let n = norm(&mut b, x);
        let w = b.weight("w", dtype, &[k, k], 0.3);
        let y = b.matmul("proj", n, w);
        let z = b.matmul("proj2", y, w);
        let mut outs = vec![z];
        if extra && extra_proj {
            outs.push(b.matmul("proj3", n, w));
        } else if extra {
            outs.push(b.node("other", Op::Binary(BinaryOp::Add), &[n, x], vec![])[0]);
        }
        if out {
            outs.push(n);
        }
        b.finish(&outs).unwrap()
    }

    /// A plain projection whose one reader is a row program (an output projection before its
    /// norm) is split in two parts of k on 32×32 tiles, and [`crate::generate`] has the
    /// program add the parts up: no split-sum kernel; not where its output has another
    /// reader or is a graph output, nor where the split or the tiling is forced.
    #[test]
    fn a_projection_read_by_a_row_program_splits_and_the_program_adds_the_parts() {
        let b = Bindings::new();
        let coop = Target {
            caps: Target::default().caps | Capabilities::SHADER_FLOAT16,
            coop_emulate: true,
            matmul_precision: MatmulPrecision::F16,
            max_workgroup_storage_bytes: 32768,
            ..Target::default()
        };
        let graph = |extra: bool, out: bool| {
            let mut g = GraphBuilder::new();
            let x = g.input("x", DType::F16, shape_of(&[40, 128]));
            let w = g.weight("w", DType::F16, &[128, 96], 0.3);
            let y = g.matmul("proj", x, w);
            let n = norm(&mut g, y);
            let mut outs = vec![n];
            if extra {
                outs.push(g.node("other", Op::Binary(BinaryOp::Add), &[y, y], vec![])[0]);
            }
            if out {
                outs.push(y);
            }
            g.finish(&outs).unwrap()
        };
        let kinds = |g: &Graph, t: &Target| -> Vec<String> {
            crate::generate(g, &b, t).unwrap().iter().map(|k| k.source().kind.to_string()).collect()
        };
        let g = graph(false, false);
        let proj = node_kernels(&g, g.find("proj").unwrap(), &b, &coop).unwrap();
        let c = proj[0].choice.as_ref().unwrap();
        assert_eq!(c.kernel, "coop 32x32x64w2x2s1 split-k 2", "{c:?}");
        assert!(c.reason.contains("the row program reading it adds the parts up"), "{c:?}");
        assert_eq!(proj.len(), 2);
        let ks = kinds(&g, &coop);
        assert_eq!(ks, ["matmul-coop", "elementwise-program"], "the split sum is the program's");
        for (label, g, t) in [
            ("another reader", graph(true, false), &coop),
            ("a graph output", graph(false, true), &coop),
            ("a forced split", graph(false, false), &Target { coop_split: Some(2), ..coop.clone() }),
        ] {
            let proj = node_kernels(&g, g.find("proj").unwrap(), &b, t).unwrap();
            let c = proj[0].choice.as_ref().unwrap();
            assert!(!c.reason.contains("adds the parts up"), "{label}: {c:?}");
        }
    }

    /// Which values are stored as packed f16 ([`packed_activation`]): an f16 value written
    /// by a row program or an unsplit cooperative GEMM and read only as x by cooperative
    /// GEMMs, or a graph output no node reads (rounded on the bits); not with another reader,
    /// as a graph output that is read, in f32, below the cooperative GEMM's rows, on a target
    /// without it, or from a split GEMM; and the kernels bind it as the decision says.
    #[test]
    fn activations_are_packed_only_between_their_writer_and_cooperative_gemms() {
        let b = Bindings::new();
        let caps = Target::default().caps | Capabilities::SHADER_FLOAT16;
        let coop = Target {
            caps,
            coop_emulate: true,
            matmul_precision: MatmulPrecision::F16,
            max_workgroup_storage_bytes: 32768,
            ..Target::default()
        };
        let packed =
            |g: &Graph, name: &str, t: &Target| packed_activation(g, Value::of(g.find(name).unwrap()), &b, t).unwrap();
        let g = packed_graph(40, 64, DType::F16, false, false);
        assert!(packed(&g, "norm", &coop) && packed(&g, "proj", &coop));
        // The writer and the reader bind it packed; the graph output no node reads is packed
        // too, rounded on the bits where the activation takes the device's conversion.
        let norm = node_kernels(&g, g.find("norm").unwrap(), &b, &coop).unwrap();
        assert!(norm[0].bindings.iter().any(|x| x.write && x.packed_f16) && norm[0].wgsl.contains("pack2x16float"));
        assert!(!norm[0].wgsl.contains("pack_f16_("));
        assert!(packed(&g, "proj2", &coop), "a graph output no node reads");
        let out = node_kernels(&g, g.find("proj2").unwrap(), &b, &coop).unwrap();
        assert!(out[0].bindings.last().unwrap().packed_f16 && out[0].wgsl.contains("pack_f16_("));
        let proj = node_kernels(&g, g.find("proj").unwrap(), &b, &coop).unwrap();
        assert!(proj[0].choice.as_ref().unwrap().kernel.starts_with("coop"));
        assert!(proj[0].bindings[0].packed_f16 && proj[0].bindings.last().unwrap().packed_f16);
        // Read by two cooperative GEMMs: packed for both.
        let two = packed_graph_with(40, 64, DType::F16, true, true, false);
        assert!(packed(&two, "norm", &coop));
        for name in ["proj", "proj3"] {
            let ks = node_kernels(&two, two.find(name).unwrap(), &b, &coop).unwrap();
            assert!(ks[0].bindings[0].packed_f16, "{name}");
        }
        for (label, g, t) in [
            ("another reader", packed_graph(40, 64, DType::F16, true, false), &coop),
            ("a graph output", packed_graph(40, 64, DType::F16, false, true), &coop),
            ("f32", packed_graph(40, 64, DType::F32, false, false), &coop),
            ("8 rows: GEMVs", packed_graph(8, 64, DType::F16, false, false), &coop),
            (
                "no cooperative matrices",
                packed_graph(40, 64, DType::F16, false, false),
                &Target { caps, ..Target::default() },
            ),
        ] {
            assert!(!packed(&g, "norm", t), "{label}");
            let ks = node_kernels(&g, g.find("norm").unwrap(), &b, t).unwrap();
            assert!(ks[0].bindings.iter().all(|x| !x.packed_f16), "{label}");
        }
        // A split GEMM's output is written by its split-sum kernel: not packed.
        let split = Target { coop_split: Some(2), ..coop.clone() };
        let g = packed_graph(40, 1024, DType::F16, false, false);
        let proj = node_kernels(&g, g.find("proj").unwrap(), &b, &split).unwrap();
        assert!(proj[0].choice.as_ref().unwrap().kernel.contains("split"), "{:?}", proj[0].choice);
        assert!(packed(&g, "norm", &split) && !packed(&g, "proj", &split));
    }
}
