//! Elementwise programs (`Op::Elementwise`): the steps of a program strung together in one
//! kernel, each a `let` of the expression its op has in `elementwise.rs` (inputs read at their
//! broadcast index, one-element constants as literals, an expand the identity).
//!
//! A program without row steps runs one thread per output element. One with row steps (a
//! reduction over the last axis, a softmax along it) runs one workgroup per row of its output:
//! the threads stride over the row once per round of reductions (a reduction needs its operand,
//! which may need an earlier reduction: a softmax's sum needs its maximum), combine their
//! partial results with a tree in workgroup memory, and stride over it once more to write it.
//! Each round recomputes the steps it needs from the inputs, so nothing but the output is
//! written. Floats accumulate in f32, as the reduction and softmax kernels do.

use crate::elementwise::{binary_expr, cast_expr, map_kernel_lets, unary_expr, Sites};
use crate::wgsl::{load, row_threads, subgroup, tree_reduce_rows, RedArray, Store, WORKGROUP};
use crate::{dims, KernelKind, KernelSource, Target};
use glufuse_ir::ops::attention::types as attention_types;
use glufuse_ir::ops::binary::BinaryKind;
use glufuse_ir::shape::{concrete, norm_axis, Bindings};
use glufuse_ir::tensor::{held_values, strides};
use glufuse_ir::Attention;
use glufuse_ir::{
    Data, ElementwiseProgram, Error, Graph, NodeIndex, Op, ReduceOp, Result, Scalar, Step, Tensor, TensorType, UnaryOp,
    Value,
};
use std::collections::HashMap;
use std::fmt::Write;
use std::rc::Rc;

/// WGSL of `-inf`.
const NEG_INF: &str = "bitcast<f32>(0xff800000u)";

/// An input of a program read as the partial sums a split projection left in the scratch
/// buffer, added up where the program reads them, instead of from its own buffer: the
/// projection's split-sum kernel is then not generated (a dispatch fewer; see
/// [`crate::generate`]). Part `q` of element `i` is at `q·total + i` (the layout of
/// [`crate::proj::gemv::split_sum`]'s input for one accumulator).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PartsRead {
    /// Which input of the program.
    pub input: usize,
    /// How many parts.
    pub parts: usize,
    /// Elements of the input.
    pub total: usize,
}

impl PartsRead {
    /// Bytes of scratch the parts take.
    pub(crate) fn scratch_bytes(&self) -> u64 {
        (self.parts * self.total * 4) as u64
    }

    /// The WGSL adding up the parts of the element at flat index `i` (an expression).
    fn sum(&self, i: &str) -> String {
        let terms: Vec<String> = (0..self.parts)
            .map(|q| if q == 0 { format!("part[{i}]") } else { format!("part[{}u + {i}]", q * self.total) })
            .collect();
        format!("({})", terms.join(" + "))
    }
}

/// The kernel of an elementwise program; with `parts`, one input read as partial sums.
pub(crate) fn program(
    g: &Graph,
    n: NodeIndex,
    p: &ElementwiseProgram,
    b: &Bindings,
    t: &Target,
    parts: Option<&PartsRead>,
) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let in_tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
    let tys = p.step_types(&in_tys).map_err(|m| Error::graph(&name, m))?;
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let mut w = Writer::new(g, n, b, p.clone(), tys, Sites::new(&name), 0)?;
    w.parts = parts.copied();
    let last = p.steps.len() - 1;
    let outs: Vec<Value> = (0..=p.also.len()).map(|k| Value { node: n, output: k }).collect();
    let results: Vec<usize> = std::iter::once(last).chain(p.also.iter().copied()).collect();
    // Output 0 stored as packed f16 where only cooperative GEMMs read it, or no node does
    // (a graph output): [`crate::packed_activation`].
    let packed = crate::packed_activation(g, out, b, t)?;
    let assemble = |prelude: &str, body: &str, groups: u64, threads: u32, checks| {
        let kind = KernelKind::Program;
        crate::wgsl::assemble(
            g,
            name.clone(),
            kind,
            &ins,
            &outs,
            crate::wgsl::Elems { out0_packed: packed, ..Default::default() },
            parts,
            None,
            0,
            groups,
            threads,
            prelude,
            body,
            checks,
            t,
        )
    };
    if !p.steps.iter().any(Step::is_row) {
        if packed {
            return Err(Error::Internal(format!("'{name}': a program without row steps does not write packed f16")));
        }
        let (lets, writes) = w.outputs(&results)?;
        if outs.len() == 1 && parts.is_none() {
            let sites = w.sites;
            return map_kernel_lets(g, name, KernelKind::Program, &ins, out, total, &lets, &writes[0], sites, t);
        }
        let mut body = format!("    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {total}u) {{ return; }}\n{lets}");
        for (k, v) in writes.iter().enumerate() {
            let _ = writeln!(body, "    out{k}[i] = {v};");
        }
        let mut prelude = w.sites.prelude();
        prelude.push_str(&crate::elementwise::helpers_for(&format!("{body}\n{prelude}")));
        let groups = (total as u64).div_ceil(WORKGROUP as u64);
        return assemble(&prelude, &body, groups, WORKGROUP, w.sites.checks);
    }
    // Rounds: a step is known in the round after the reductions it needs are done.
    let row = *od.last().expect("a row program's output has a last axis");
    let rows = total.checked_div(row).unwrap_or(0);
    let threads = row_threads(row);
    let reductions = reduction_rounds(&p.steps);
    let mut body = format!("    if (gid >= {rows}u) {{ return; }}\n    let row = gid * {row}u;\n");
    let stride = format!("    for (var j = lid; j < {row}u; j = j + {threads}u) {{\n        let i = row + j;\n");
    for reds in &reductions {
        for (k, r, _) in reds {
            let _ = writeln!(body, "    var a{k}_{}: f32 = {};", r.tag(), r.identity());
        }
        body.push_str(&stride);
        w.reset();
        let c = w.coords(last);
        reduction_round(&mut w, &mut body, reds, &RowAt::one(&c), threads, row, &RedArray::F32, subgroup(t))?;
    }
    if packed {
        // Two neighbouring elements a thread (the row's length is even: a multiple of 4, as
        // the cooperative GEMM's K), output 0 packed into one word.
        let _ = writeln!(body, "    for (var j = lid * 2u; j < {row}u; j = j + {}u) {{", 2 * threads);
        body.push_str("        var pk0: f32;\n        var pk1: f32;\n");
        for h in 0..2 {
            let (lets, writes) = w.outputs(&results)?;
            let _ = writeln!(body, "        {{\n            let i = row + j + {h}u;");
            body.push_str(&indent(&indent(&lets)));
            let _ = writeln!(body, "            pk{h} = {};", writes[0]);
            for (k, v) in writes.iter().enumerate().skip(1) {
                let _ = writeln!(body, "            out{k}[i] = {v};");
            }
            body.push_str("        }\n");
        }
        let pair = crate::wgsl::pack_halves("pk0", "pk1", crate::wgsl::packs_exactly(g, out, t));
        let _ = writeln!(body, "        out0[(row + j) / 2u] = {pair};\n    }}");
    } else {
        body.push_str(&stride);
        let (lets, writes) = w.outputs(&results)?;
        body.push_str(&indent(&lets));
        for (k, v) in writes.iter().enumerate() {
            let _ = writeln!(body, "        out{k}[i] = {v};");
        }
        body.push_str("    }\n");
    }
    let mul = if takes_products(&w.p.steps) { MUL_F } else { "" };
    let sites = w.sites;
    let mut prelude = sites.prelude();
    prelude.push_str(&format!(
        "fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\n{mul}var<workgroup> red: array<f32, {threads}>;\n"
    ));
    prelude.push_str(&crate::elementwise::helpers_for(&format!("{body}\n{prelude}")));
    assemble(&prelude, &body, rows as u64, threads, sites.checks)
}

/// The kernel of a fused attention: one workgroup per row of scores (a query of a head; or
/// several, below). The
/// row's query is computed once through Q's program (views, and a bias and rotary embedding
/// where the pass folded them in) into workgroup memory. For each round the scores program
/// needs (a softmax's maximum, then its sum), its threads stride over the row's keys, each
/// score a dot product of the query with a key (Kᵀ read through its program), computed in the first round and kept in workgroup memory where
/// the row fits (recomputed each round where it does not); then, in tiles of the workgroup's
/// width, each thread computes one probability into workgroup memory, and the tile's
/// probabilities times V are summed by `groups` threads per column of V (as many as fit in
/// the workgroup), each over every `groups`-th key; their partial sums are added at the end.
/// Dot products and sums are written out several terms per iteration so that their loads are
/// in flight together. A decode-shaped attention (few rows, each key one thread's) loads all
/// of its K and V at the start instead ([`PREFETCH_MAX_ROWS`]), its K into workgroup memory
/// by the whole workgroup, in order, where it fits there: a thread loading its own key's
/// row made each of a warp's loads touch as many lines of memory as the warp has threads
/// (the Qwen2-0.5B-sized f16 decode step on an H100, 1055 → 967 µs:
/// `benches/results/h100-2026-11-26g-kstage.md`). Where the scores are kept, a workgroup
/// may compute several consecutive queries of a head at once ([`query_rows`]): each load of
/// K and V then serves every one of them (their queries, scores, reductions, probabilities
/// and sums side by side, suffixed `_0`, `_1`, ..), and a last group that the queries do not
/// fill reads the last query in its rows past the end and writes nothing for them. Past
/// [`SPLIT_MIN_KEYS`] keys, a decode-shaped row's keys are split over several workgroups and a
/// second kernel combines them ([`Split`]): the kernels, in dispatch order.
pub(crate) fn attention(g: &Graph, n: NodeIndex, a: &Attention, b: &Bindings, t: &Target) -> Result<Vec<KernelSource>> {
    attention_over(g, n, a, g.inputs(n), Part::Whole, b, t)
}

/// Which kernel of an attention [`attention_over`] writes.
#[derive(Clone, Copy)]
enum Part {
    /// All of it in one kernel.
    Whole,
    /// The other outputs alone; output `1 + k` (the present keys) also into the scratch
    /// buffer, positions last, where `Some(k)`.
    Present(Option<usize>),
    /// The rows; input `k`, where `Some(k)`, read from that copy instead of its buffer.
    Rows(Option<usize>),
}

/// The scratch array holding an attention's present keys with positions last
/// ([`attention_kernels`]).
const KEYS_T: &str = "kts";

/// Whether the kernel `part` writes other output `k` to the scratch buffer too.
fn part_copies(part: Part, k: usize) -> bool {
    matches!(part, Part::Present(Some(c)) if c == k)
}

/// Query rows a head needs for a KV step's attention to write its present keys and values
/// with a dispatch of their own ([`attention_kernels`]).
pub const PRESENT_FIRST_MIN_QUERIES: usize = 16;

/// The kernels of a fused attention: one ([`attention`]), or, for a KV step's attention over
/// many query rows (a prompt through a graph that takes a past cache: optimum's exports, past
/// length 0), two: first the present keys and values (the node's other outputs) alone, then
/// the attention reading K and V from them. In one kernel, K's program computes the new keys'
/// bias and rotary embedding wherever it reads a key, once per query row: the
/// Qwen2-0.5B-sized f32 prompt of 128 tokens on an H200 spent 138 µs a layer in its
/// attention against the dynamo prefill export's 17.7 (`benches/results/h200-2026-11-28v-optimum.md`).
/// A decode step (one query row) keeps one kernel. The split is taken where each of the node's
/// other outputs is a prefix of K's or V's program (the steps that compute the cache with the
/// new entries appended) that nothing after it reads but its last step.
pub(crate) fn attention_kernels(
    g: &Graph,
    n: NodeIndex,
    a: &Attention,
    b: &Bindings,
    t: &Target,
) -> Result<Vec<KernelSource>> {
    let name = g.node(n).name.clone();
    let ins = g.inputs(n);
    let in_tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
    let [.., s_ty, _, _] = attention_types(a, &in_tys).map_err(|m| Error::graph(&name, m))?;
    let sd = concrete(&s_ty.shape, b).map_err(|m| Error::graph(&name, m))?;
    let queries = if sd.len() >= 2 { sd[sd.len() - 2] } else { 1 };
    if a.also.is_empty() || queries < PRESENT_FIRST_MIN_QUERIES {
        return attention(g, n, a, b, t);
    }
    // K's and V's programs, each reading the present output it starts with.
    let mut rows = a.clone();
    rows.also = vec![];
    let mut extra = vec![];
    // K's present output (its index among the others) and the input the rows read it as.
    let mut keys_out = None;
    for (which, prog) in [&mut rows.kt, &mut rows.v].into_iter().enumerate() {
        let Some(k) = a.also.iter().position(|s| !s.is_empty() && prog.len() >= s.len() && prog[..s.len()] == s[..])
        else {
            continue;
        };
        if which == 0 {
            keys_out = Some((k, ins.len() + extra.len()));
        }
        let len = a.also[k].len();
        let mut steps = vec![Step::Input(ins.len() + extra.len())];
        for st in &prog[len..] {
            let mut st = st.clone();
            let args = st.args();
            if args.iter().any(|&x| x + 1 < len) {
                // A later step reads inside the prefix: one kernel, as before.
                return attention(g, n, a, b, t);
            }
            st.set_args(&args.iter().map(|&x| x + 1 - len).collect::<Vec<_>>());
            steps.push(st);
        }
        *prog = steps;
        extra.push(Value { node: n, output: 1 + k });
    }
    if extra.len() != a.also.len() {
        return attention(g, n, a, b, t);
    }
    // The rows' inputs: those its programs still read (the new keys' bias and the caches are
    // read through the present outputs now), renumbered in order; the scores program reads
    // the scores as the input past them.
    let mut all = ins.clone();
    all.extend(extra);
    let scores_at = ins.len();
    let read = |k: usize| {
        [&rows.q, &rows.kt, &rows.v].iter().any(|p| p.contains(&Step::Input(k)))
            || (k != scores_at && rows.scores.contains(&Step::Input(k)))
    };
    let kept: Vec<usize> = (0..all.len()).filter(|&k| read(k)).collect();
    let renumber = |k: usize| kept.iter().position(|&x| x == k);
    for (prog, is_scores) in
        [(&mut rows.q, false), (&mut rows.kt, false), (&mut rows.v, false), (&mut rows.scores, true)]
    {
        for st in prog.iter_mut() {
            if let Step::Input(k) = st {
                *k = match (is_scores && *k == scores_at, renumber(*k)) {
                    (true, _) => kept.len(),
                    (false, Some(x)) => x,
                    (false, None) => {
                        return Err(Error::graph(&name, "an attention's split lost an input (a glufuse bug)"))
                    }
                };
            }
        }
    }
    // The present keys also go to the scratch buffer with their positions last, for the rows
    // to read (where they are 2-D or more): the rows' loads of K then read one run of memory
    // a warp, where the cache's layout (a key's elements together) made each thread's key a
    // line of its own. The Qwen2-0.5B-sized f16 prompt through onnxruntime-genai's build on
    // an H200: the attention 1070 µs against the prefill export's 415 before.
    let copy = keys_out.filter(|&(k, _)| dims(g, Value { node: n, output: 1 + k }, b).is_ok_and(|d| d.len() >= 2));
    let mut kernels = attention_over(g, n, a, ins, Part::Present(copy.map(|(k, _)| k)), b, t)?;
    let keys_at = copy.and_then(|(_, input)| renumber(input));
    kernels.extend(attention_over(g, n, &rows, kept.iter().map(|&k| all[k]).collect(), Part::Rows(keys_at), b, t)?);
    Ok(kernels)
}

/// [`attention`] over inputs `ins`, the kernel `part` says: all of it, the other outputs
/// alone (its workgroups all of the side outputs', none of the rows'), or the rows.
fn attention_over(
    g: &Graph,
    n: NodeIndex,
    a: &Attention,
    ins: Vec<Value>,
    part: Part,
    b: &Bindings,
    t: &Target,
) -> Result<Vec<KernelSource>> {
    let present_only = matches!(part, Part::Present(_));
    let out = Value::of(n);
    let name = if present_only { format!("{}.present", g.node(n).name) } else { g.node(n).name.clone() };
    let in_tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
    let [.., s_ty, _, _] = attention_types(a, &in_tys).map_err(|m| Error::graph(&name, m))?;
    let mut with_s = in_tys.clone();
    with_s.push(&s_ty);
    let program = |steps: &[Step], tys: &[&TensorType]| -> Result<(ElementwiseProgram, Vec<TensorType>)> {
        let p = ElementwiseProgram { steps: steps.to_vec(), also: vec![], replaced: vec![] };
        let st = p.step_types(tys).map_err(|m| Error::graph(&name, m))?;
        Ok((p, st))
    };
    let (qp, qt) = program(&a.q, &in_tys)?;
    let (kp, kt) = program(&a.kt, &in_tys)?;
    let (vp, vt) = program(&a.v, &in_tys)?;
    let (sp, st) = program(&a.scores, &with_s)?;
    let sd = concrete(&s_ty.shape, b).map_err(|m| Error::graph(&name, m))?;
    let r = sd.len();
    let keys = sd[r - 1];
    let depth = concrete(&qt[qt.len() - 1].shape, b).map_err(|m| Error::graph(&name, m))?[r - 1];
    // The output's dims before its permutation, and where each of its coordinates goes.
    let od = dims(g, out, b)?;
    let mut pd = od.clone();
    for (i, &p) in a.out_perm.iter().enumerate() {
        pd[p] = od[i];
    }
    let width = pd[r - 1];
    let rows: usize = sd[..r - 1].iter().product();
    if width > 256 {
        return Err(Error::graph(&name, format!("a head of width {width} is wider than one workgroup (256)")));
    }
    // A decode-shaped row split over its keys: from here on `keys` is a chunk's.
    let max_ws = t.max_workgroup_storage_bytes as u64;
    let split = match part {
        Part::Whole if r >= 2 => lone_softmax(&sp.steps)
            .and_then(|(soft, nan_zero)| Split::pick(rows, keys, width, depth, t, soft, nan_zero)),
        Part::Whole | Part::Present(_) | Part::Rows(_) => None,
    };
    let keys_all = keys;
    let keys = split.map_or(keys, |s| s.len);
    let threads = row_threads(keys).max(row_threads(width));
    let (ql, kl, vl, pl) = (qp.steps.len() - 1, kp.steps.len() - 1, vp.steps.len() - 1, sp.steps.len() - 1);
    let mut sw = Writer::over(g, n, ins.clone(), b, sp, st, Sites::new(&name), 0)?;
    sw.virt = Some((ins.len(), "s".into()));
    let mut qw = Writer::over(g, n, ins.clone(), b, qp, qt, Sites::new(&name), 0)?;
    let mut kw = Writer::over(g, n, ins.clone(), b, kp, kt, Sites::new(&name), 0)?;
    let mut scratch = None;
    if let Part::Rows(Some(k)) = part {
        kw.swapped = Some(k);
        let bytes = dims(g, ins[k], b)?.iter().product::<usize>() as u64 * 4;
        scratch = Some(crate::wgsl::Scratch { name: KEYS_T, write: false, bytes });
    }
    let mut vw = Writer::over(g, n, ins.clone(), b, vp, vt, Sites::new(&name), 0)?;
    // The node's other outputs (`also`: a KV step's present keys and values), written by
    // workgroups of their own after the attention's rows (`gid >= rows`), one element a
    // thread (several where they are many: [`side_elements`]), on other compute units than
    // the attention's; their concatenations branch-free.
    let mut outs = vec![out];
    let mut also_fresh = 0;
    let mut side = String::new();
    let mut extra = 0usize;
    for (k, steps) in a.also.iter().enumerate() {
        let o = Value { node: n, output: 1 + k };
        outs.push(o);
        let total: usize = dims(g, o, b)?.iter().product();
        extra = extra.max(total.div_ceil(threads as usize));
        let (p, st) = program(steps, &in_tys)?;
        let last = p.steps.len() - 1;
        let mut w = Writer::over(g, n, ins.clone(), b, p, st, Sites::new(&name), also_fresh)?;
        w.select_concat = true;
        let (lets, v) = w.outputs(&[last])?;
        // The present keys also to the scratch buffer, their last two axes swapped.
        let mut copy = String::new();
        if part_copies(part, k) {
            let d = dims(g, o, b)?;
            let (rows, width) = (d[d.len() - 2], d[d.len() - 1]);
            let _ = writeln!(
                copy,
                "            {KEYS_T}[((i / {}u) * {width}u + i % {width}u) * {rows}u + (i / {width}u) % {rows}u] = v{k}_;",
                rows * width
            );
            scratch = Some(crate::wgsl::Scratch { name: KEYS_T, write: true, bytes: total as u64 * 4 });
        }
        let _ = writeln!(
            side,
            "        if (i < {total}u) {{\n{}            let v{k}_ = {};\n            out{}[i] = v{k}_;\n{copy}        }}",
            indent(&indent(&lets)),
            v[0],
            1 + k,
        );
        if !w.sites.checks.is_empty() {
            return Err(Error::graph(&name, "an attention's other outputs check nothing at run time (a glufuse bug)"));
        }
        also_fresh = w.fresh;
    }
    // (Beside the rows, a thread writes `per` elements of each other output, strided by the
    // side workgroups' threads: [`side_elements`].)
    let per = if present_only { 1 } else { side_elements(extra) };
    let extra = extra.div_ceil(per);
    if present_only {
        // The other outputs alone, a thread an element ([`attention_kernels`]).
        let body = format!("    let i = gid * {threads}u + lid;\n{side}");
        let prelude = crate::elementwise::helpers_for(&body);
        let kernel = crate::wgsl::kernel_outs(
            g,
            name,
            KernelKind::Program,
            &ins,
            &outs,
            scratch.as_ref(),
            extra as u64,
            threads,
            &prelude,
            &body,
            vec![],
            t,
        )?;
        return Ok(vec![kernel]);
    }
    // The scores of the row are kept in workgroup memory where they fit beside the trees:
    // the first round computes them, the later ones read them back.
    let per_row = keys as u64 + 2 * threads as u64 + depth as u64;
    let cached = per_row * 4 <= max_ws;
    let mut computed = false;
    // The score of key `j`, as `s`: the query's dot product with the key, `lanes` terms per
    // iteration (their loads independent, so they are in flight together: one serial load per
    // term made the kernel wait on memory), added in order.
    let lanes = unroll(depth, 16);
    // Each column of V is summed by `groups` threads (as many as fit in the workgroup).
    let groups = (threads as usize / width.max(1)).max(1);
    // Decode-shaped attention (few rows, one key per thread, one tile of P·V; see
    // [`PREFETCH_MAX_ROWS`], [`PREFETCH_MAX_VALUES`]): every thread loads its key's row of K
    // and its share of V before the query is computed, so that all of the kernel's loads are
    // in flight at once; the scores and the sums then read registers. The key index is
    // clamped so that every thread's loads are in bounds.
    let per_thread_v = keys.div_ceil(groups);
    let prefetch = up_front(rows, keys, width, depth, max_ws);
    // Where K fits in workgroup memory beside the rest (the staged new keys and values at
    // most a workgroup's width each), it is loaded there cooperatively instead of each
    // thread loading its own key's row: a warp's load then reads one run of memory, where
    // a row a thread touched as many lines as the warp has threads.
    let kstage =
        prefetch && (keys as u64 * (depth as u64 + 1) + (keys + 4 * threads as usize + depth) as u64) * 4 <= max_ws;
    // Query rows per workgroup (`qr`): consecutive queries of one head share every load of K
    // and V ([`query_rows`]).
    let queries = if r >= 2 { sd[r - 2] } else { 1 };
    let qr = if prefetch || !cached || r < 2 {
        1
    } else {
        query_rows(rows / queries.max(1), queries, per_row * 4, max_ws, t.attention_rows)
    };
    // (Each head's queries in groups of `qr`, the last one partial where `qr` does not divide
    // them: its rows past the end read the last query and write nothing.)
    let per_head = queries.div_ceil(qr);
    let partial = queries % qr != 0;
    let groups_n = rows / queries.max(1) * per_head * split.map_or(1, |s| s.chunks);
    let exit = if side.is_empty() {
        " return; ".to_string()
    } else {
        match per {
            1 => format!("\n        let i = (gid - {groups_n}u) * {threads}u + lid;\n{side}        return;\n    "),
            _ => format!(
                "\n        for (var e = 0u; e < {per}u; e = e + 1u) {{\n        let i = (gid - {groups_n}u + e * {extra}u) * {threads}u + lid;\n{side}        }}\n        return;\n    "
            ),
        }
    };
    let first = match (qr, partial) {
        (1, _) if split.is_some() => format!("gid / {}u", split.map_or(1, |s| s.chunks)),
        (1, _) => "gid".to_string(),
        (_, false) => format!("gid * {qr}u"),
        (_, true) => format!("(gid / {per_head}u) * {queries}u + (gid % {per_head}u) * {qr}u"),
    };
    let mut body = format!("    if (gid >= {groups_n}u) {{{exit}}}\n    let row = {first};\n");
    // A chunk's first key and its count (the last chunk's may be short).
    if let Some(s) = split {
        let _ = writeln!(
            body,
            "    let k0 = (gid % {}u) * {keys}u;\n    let kn = min({keys}u, {keys_all}u - k0);",
            s.chunks
        );
    }
    // The bound of a row's keys, and a key's index in the row from its index `j` in the chunk.
    let kn = if split.is_some() { "kn".to_string() } else { format!("{keys}u") };
    let key_at = |j: &str| if split.is_some() { format!("k0 + {j}") } else { j.to_string() };
    let rc = row_coords(&mut body, &sd[..r - 1]);
    // Each query row's coordinates (the first row's plus m along the queries), the suffix of
    // its names, and the offset of its part of each workgroup array.
    let mut rcs = vec![rc.clone()];
    let last_q = |e: String| if partial { format!("min({e}, {}u)", queries - 1) } else { e };
    for m in 1..qr {
        let _ = writeln!(body, "    let rq{m} = {};", last_q(format!("{} + {m}u", rc[r - 2])));
        let mut c = rc.clone();
        c[r - 2] = format!("rq{m}");
        rcs.push(c);
    }
    let sfx = |m: usize| if qr == 1 { String::new() } else { format!("_{m}") };
    let off = |m: usize, n: usize| if m == 0 { String::new() } else { format!("{}u + ", m * n) };
    let batch = &rc[..r - 2];
    let at = |x: &[&str]| -> Vec<String> { batch.iter().cloned().chain(x.iter().map(|s| s.to_string())).collect() };
    // With the up-front loads, the concatenation parts of K and V few enough for a workgroup
    // (a KV step's new keys and values) are computed once per workgroup into workgroup
    // memory: every element of K then reads the past cache or that array, instead of
    // computing the new key (its rotation) wherever it is read.
    let mut staged_decls = String::new();
    let mut staging = String::new();
    if prefetch {
        kw.select_concat = true;
        vw.select_concat = true;
        kw.fresh = also_fresh;
        let (code, decls) = kw.stage(threads as usize, "stk_")?;
        staging.push_str(&code);
        staged_decls.push_str(&decls);
        vw.fresh = kw.fresh;
        let (code, decls) = vw.stage(threads as usize, "stv_")?;
        staging.push_str(&code);
        staged_decls.push_str(&decls);
        also_fresh = vw.fresh;
    }
    if !staging.is_empty() {
        body.push_str(&staging);
        body.push_str("    workgroupBarrier();\n");
    }
    qw.fresh = also_fresh;
    let mut kvals = vec![];
    let mut vvals = vec![];
    if prefetch {
        let _ = writeln!(
            body,
            "    let jk = min({}, {}u);\n    let uv = lid / {width}u;\n    let colv = lid % {width}u;",
            key_at("lid"),
            keys_all - 1
        );
        kw.fresh = qw.fresh;
        kw.reset();
        if kstage {
            // K through workgroup memory: the workgroup's threads load it element by element
            // in order (consecutive threads, consecutive addresses), each row padded by one
            // so that a thread reading its own key's row meets no other thread's bank.
            let total = keys * depth;
            let mut stores = String::new();
            for m in 0..total.div_ceil(threads as usize) {
                let e = m * threads as usize;
                let _ = writeln!(
                    body,
                    "    let ke{m} = min(lid + {e}u, {}u);\n    let kj{m} = ke{m} / {depth}u;\n    let kc{m} = ke{m} % {depth}u;",
                    total - 1
                );
                let kj = match split {
                    Some(_) => {
                        let _ = writeln!(body, "    let kg{m} = min(k0 + kj{m}, {}u);", keys_all - 1);
                        format!("kg{m}")
                    }
                    None => format!("kj{m}"),
                };
                let v = kw.value(kl, &at(&[&format!("kc{m}"), &kj]))?;
                let guard =
                    if e + threads as usize > total { format!("if (lid + {e}u < {total}u) ") } else { String::new() };
                let _ = writeln!(stores, "    {guard}{{ kst[kj{m} * {}u + kc{m}] = {v}; }}", depth + 1);
            }
            body.push_str(&kw.code);
            body.push_str(&stores);
            // (A chunk's staged keys are its own, from 0.)
            let jl = match split {
                Some(_) => {
                    let _ = writeln!(body, "    let jl = min(lid, {}u);", keys - 1);
                    "jl"
                }
                None => "jk",
            };
            kvals = (0..depth).map(|d| format!("kst[{jl} * {}u + {d}u]", depth + 1)).collect();
        } else {
            // (Each coordinate a `let`: a program branching on it, a rotary embedding's
            // halves, would otherwise compute with constants, and WGSL refuses a constant
            // expression that overflows even in a branch never taken.)
            for d in 0..depth {
                let _ = writeln!(body, "    let kd{d} = {d}u;");
                kvals.push(kw.value(kl, &at(&[&format!("kd{d}"), "jk"]))?);
            }
            body.push_str(&kw.code);
        }
        vw.fresh = kw.fresh;
        vw.reset();
        for m in 0..per_thread_v {
            let j = key_at(&format!("uv + {}u", m * groups));
            vvals.push(vw.value(vl, &at(&[&format!("min({j}, {}u)", keys_all - 1), "colv"]))?);
        }
        body.push_str(&vw.code);
        qw.fresh = vw.fresh;
    }
    let mut score = |qw: &mut Writer, kw: &mut Writer, fresh: &mut usize| -> Result<String> {
        if cached && computed {
            return Ok((0..qr).map(|m| format!("    let s{} = sc[{}j];\n", sfx(m), off(m, keys))).collect());
        }
        computed = true;
        let keep: String =
            (0..qr).filter(|_| cached).map(|m| format!("    sc[{}j] = s{};\n", off(m, keys), sfx(m))).collect();
        if prefetch {
            let terms: String =
                kvals.iter().enumerate().map(|(d, k)| format!("    s = s + qs[{d}u] * {k};\n")).collect();
            return Ok(format!("    var s = 0.0;\n{terms}{keep}"));
        }
        qw.fresh = *fresh;
        qw.reset();
        kw.reset();
        let mut terms = String::new();
        for l in 0..lanes {
            let d = if l == 0 { "d".to_string() } else { format!("(d + {l}u)") };
            kw.fresh = qw.fresh;
            let kv = kw.value(kl, &at(&[d.as_str(), "j"]))?;
            qw.fresh = kw.fresh;
            for m in 0..qr {
                let _ = writeln!(terms, "    s{x} = s{x} + qs[{}{d}] * {kv};", off(m, depth), x = sfx(m));
            }
        }
        *fresh = qw.fresh;
        let zeros: String = (0..qr).map(|m| format!("    var s{} = 0.0;\n", sfx(m))).collect();
        Ok(format!(
            "{zeros}    for (var d = 0u; d < {depth}u; d = d + {lanes}u) {{\n{}{}{}    }}\n{keep}",
            indent(&qw.code),
            indent(&kw.code),
            indent(&terms)
        ))
    };
    // The rows' queries, computed once into workgroup memory through their program (which
    // may compute, not only move: a rotary embedding), then read by every key's dot product.
    // (Several rows: element e of `qs` is row e / depth's query at e % depth, one loop over
    // all of them.)
    qw.reset();
    let mut qc = rc.clone();
    let (open, slot) = if qr == 1 {
        (format!("    for (var dq = lid; dq < {depth}u; dq = dq + {threads}u) {{\n"), "dq")
    } else {
        qc[r - 2] = "rqm".into();
        let open = format!(
            "    for (var e = lid; e < {}u; e = e + {threads}u) {{\n        let dq = e % {depth}u;\n        let rqm = {};\n",
            qr * depth,
            last_q(format!("{} + e / {depth}u", rc[r - 2]))
        );
        (open, "e")
    };
    qc.push("dq".into());
    let qv = qw.value(ql, &qc)?;
    let _ = writeln!(body, "{open}{}        qs[{slot}] = {qv};\n    }}\n    workgroupBarrier();", indent(&qw.code));
    let mut fresh = qw.fresh;
    // Rounds of the scores program's reductions, as in a row program.
    let reductions = reduction_rounds(&sw.p.steps);
    // (The scores program reads a key at its index in the row: `jg` in a chunk.)
    let jv = if split.is_some() { "jg" } else { "j" };
    let pcs: Vec<Vec<String>> = rcs.iter().map(|c| at(&[c[r - 2].as_str(), jv])).collect();
    let jg = if split.is_some() { "        let jg = k0 + j;\n" } else { "" };
    let rows_at: Vec<RowAt> = (0..qr)
        .map(|m| RowAt {
            c: pcs[m].clone(),
            sfx: sfx(m),
            virt: Some(format!("s{}", sfx(m))),
            base: m * threads as usize,
        })
        .collect();
    // The softmax's operand (the masked, scaled score) kept where the raw score was, from
    // the first round on, where nothing else reads the raw score: every round then reads the
    // value the maximum was taken of. Computed again in each round, a driver may round it
    // differently (NVIDIA's contracts `x / c - m` into one fused multiply-add): at scores
    // of -1e38 (a row every key of which a mask of `finfo.min` hides) one ulp is 1e31, and
    // the exponentials came out infinite and the row NaN.
    let keep = match reductions.first().map(|r| r.iter().map(|&(_, _, x)| x).collect::<Vec<_>>()) {
        Some(xs) if cached && !xs.is_empty() && xs.iter().all(|&x| x == xs[0]) => {
            let x = xs[0];
            let mut cone = vec![false; sw.p.steps.len()];
            mark_cone(&sw.p.steps, x, &mut cone);
            let reads_score = |k: usize| matches!(sw.p.steps[k], Step::Input(i) if i == ins.len());
            let elsewhere =
                (0..sw.p.steps.len()).any(|k| !cone[k] && sw.p.steps[k].args().into_iter().any(&reads_score));
            (!elsewhere && sw.tys[x].dtype.is_float()).then_some(x)
        }
        _ => None,
    };
    for (round, reds) in reductions.iter().enumerate() {
        for m in 0..qr {
            for (k, rd, _) in reds {
                let _ = writeln!(body, "    var a{k}_{}{}: f32 = {};", rd.tag(), sfx(m), rd.identity());
            }
        }
        let _ = writeln!(
            body,
            "    for (var j = lid; j < {kn}; j = j + {threads}u) {{\n{jg}        let i = row * {keys_all}u + {};",
            key_at("j")
        );
        body.push_str(&indent(&score(&mut qw, &mut kw, &mut fresh)?));
        sw.fresh = fresh;
        sw.reset();
        if let (0, Some(x)) = (round, keep) {
            for (m, row) in rows_at.iter().enumerate() {
                sw.at_row(row);
                let v = sw.value(x, &row.c)?;
                let at = format!("sc[{}j]", off(m, keys));
                let _ = writeln!(sw.code, "    {at} = {v};");
                sw.kept.insert((x, row.sfx.clone()), at);
                sw.memo.clear();
            }
        }
        reduction_round(&mut sw, &mut body, reds, &rows_at, threads, keys, &RedArray::F32, subgroup(t))?;
        fresh = sw.fresh;
    }
    // P·V: one tile where the loads were made up front (every key is thread `lid`'s), else
    // a tile of keys at a time.
    for m in 0..qr {
        let _ = writeln!(body, "    var acc{} = 0.0;", sfx(m));
    }
    if prefetch {
        body.push_str("    {\n        let j = lid;\n");
    } else {
        let _ =
            writeln!(body, "    for (var t0 = 0u; t0 < {keys}u; t0 = t0 + {threads}u) {{\n        let j = t0 + lid;");
    }
    for m in 0..qr {
        let _ = writeln!(body, "        var pj{} = 0.0;", sfx(m));
    }
    let _ = writeln!(body, "{jg}        if (j < {kn}) {{\n            let i = row * {keys_all}u + {};", key_at("j"));
    body.push_str(&indent(&indent(&score(&mut qw, &mut kw, &mut fresh)?)));
    let mut sets = String::new();
    for (m, row) in rows_at.iter().enumerate() {
        sw.fresh = fresh;
        sw.reset();
        sw.at_row(row);
        let pv = sw.value(pl, &row.c)?;
        fresh = sw.fresh;
        body.push_str(&indent(&indent(&sw.code)));
        let _ = writeln!(sets, "            pj{} = {pv};", sfx(m));
    }
    sw.sfx.clear();
    body.push_str(&sets);
    body.push_str("        }\n");
    for m in 0..qr {
        let _ = writeln!(body, "        pw[{}lid] = pj{};", off(m, threads as usize), sfx(m));
    }
    body.push_str("        workgroupBarrier();\n");
    let used = groups * width;
    if prefetch {
        // Thread `uv·width + colv` adds the terms of keys uv, uv + groups, .. in key order.
        let _ = writeln!(body, "        if (lid < {used}u) {{");
        for (m, v) in vvals.iter().enumerate() {
            let o = m * groups;
            let _ = writeln!(body, "            if (uv + {o}u < {kn}) {{ acc = acc + pw[uv + {o}u] * {v}; }}");
        }
        body.push_str("        }\n");
    } else {
        // Each column of V is summed by `groups` threads, each over every `groups`-th key of
        // the tile, up to [`PV_KEYS`] keys per iteration; their partial sums are added at
        // the end.
        let lanes = (threads as usize / groups).clamp(1, PV_KEYS);
        // The terms of keys `u`, `u + groups`, ... (`n` of them): the `let`s reading V, then
        // their additions in key order.
        let mut terms = |n: usize| -> Result<(String, String)> {
            vw.fresh = fresh;
            vw.reset();
            let mut adds = String::new();
            for l in 0..n {
                let u = if l == 0 { "u".to_string() } else { format!("u + {}u", l * groups) };
                let vv = vw.value(vl, &at(&[&format!("(t0 + {u})"), "col"]))?;
                for m in 0..qr {
                    let _ =
                        writeln!(adds, "    acc{x} = acc{x} + pw[{}{u}] * {vv};", off(m, threads as usize), x = sfx(m));
                }
            }
            fresh = vw.fresh;
            Ok((std::mem::take(&mut vw.code), adds))
        };
        let (wide_lets, wide_adds) = terms(lanes)?;
        let (one_lets, one_add) = terms(1)?;
        let _ = writeln!(
            body,
            "        if (lid < {used}u) {{\n            let n = min({threads}u, {keys}u - t0);\n            let col = lid % {width}u;\n            var u = lid / {width}u;\n            while (u + {last}u < n) {{\n{}{}                u = u + {stride}u;\n            }}\n            while (u < n) {{\n{}{}                u = u + {groups}u;\n            }}\n        }}",
            indent(&indent(&indent(&wide_lets))),
            indent(&indent(&indent(&wide_adds))),
            indent(&indent(&indent(&one_lets))),
            indent(&indent(&indent(&one_add))),
            last = (lanes - 1) * groups,
            stride = lanes * groups,
        );
    }
    body.push_str("        workgroupBarrier();\n    }\n");
    for m in 0..qr {
        let _ = writeln!(body, "    red[{}lid] = acc{};", off(m, threads as usize), sfx(m));
    }
    let _ = writeln!(body, "    workgroupBarrier();\n    if (lid < {width}u) {{");
    for (m, c) in rcs.iter().enumerate() {
        let (o, base) = (format!("o{}", sfx(m)), off(m, threads as usize));
        let write = match split {
            // A chunk's output, normalized by its own sum, for the combining kernel.
            // (A chunk every key of which scored `-inf` leaves zeros: its sum and output are
            // NaN, and it counts nothing in a row whose other keys scored.)
            Some(sp) => {
                format!("{PARTIALS}[gid * {}u + lid] = select({o}, 0.0, m{} == {NEG_INF});", width + 2, sp.softmax)
            }
            None => format!("out0[{}] = {o};", out_index(c, &od, &a.out_perm)),
        };
        let write =
            if partial && m > 0 { format!("if ({} + {m}u < {queries}u) {{ {write} }}", rc[r - 2]) } else { write };
        let _ = writeln!(
            body,
            "        var {o} = red[{base}lid];\n{}        {write}",
            (1..groups).map(|g| format!("        {o} = {o} + red[{base}lid + {}u];\n", g * width)).collect::<String>(),
        );
    }
    body.push_str("    }\n");
    if let Some(s) = split {
        let _ = writeln!(
            body,
            "    if (lid == 0u) {{\n        {PARTIALS}[gid * {w2}u + {width}u] = m{k};\n        {PARTIALS}[gid * {w2}u + {}u] = select(s{k}, 0.0, m{k} == {NEG_INF});\n    }}",
            width + 1,
            w2 = width + 2,
            k = s.softmax,
        );
        scratch = Some(crate::wgsl::Scratch { name: PARTIALS, write: true, bytes: s.scratch_bytes(rows, width) });
    }
    // Only the scores program computes (a mask's integer arithmetic may check for overflow);
    // Q, Kᵀ and V are reads.
    if [&qw, &kw, &vw].iter().any(|w| !w.sites.checks.is_empty()) {
        return Err(Error::graph(&name, "an attention's operands check nothing at run time (a glufuse bug)"));
    }
    let mut prelude = sw.sites.prelude();
    prelude.push_str(&format!(
        "fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\nvar<workgroup> red: array<f32, {tr}>;\nvar<workgroup> pw: array<f32, {tr}>;\nvar<workgroup> qs: array<f32, {}>;\n",
        qr * depth.max(1),
        tr = qr * threads as usize
    ));
    if cached {
        prelude.push_str(&format!("var<workgroup> sc: array<f32, {}>;\n", qr * keys.max(1)));
    }
    if kstage {
        prelude.push_str(&format!("var<workgroup> kst: array<f32, {}>;\n", keys * (depth + 1)));
    }
    prelude.push_str(&staged_decls);
    prelude.push_str(&crate::elementwise::helpers_for(&format!("{body}\n{prelude}")));
    let checks = sw.sites.checks;
    let combine = match split {
        Some(s) => Some(attention_combine(g, &name, out, &sd[..r - 1], width, &od, &a.out_perm, s, t)?),
        None => None,
    };
    let kernel = crate::wgsl::kernel_outs(
        g,
        name,
        KernelKind::Attention,
        &ins,
        &outs,
        scratch.as_ref(),
        (groups_n + extra) as u64,
        threads,
        &prelude,
        &body,
        checks,
        t,
    )?;
    Ok([kernel].into_iter().chain(combine).collect())
}

/// Elements a thread of a decode-shaped attention's side workgroups (which write its other
/// outputs, a KV step's present keys and values) writes, where one each would take `groups`
/// workgroups: enough that at least [`SIDE_MIN_WORKGROUPS`] remain, 1 for fewer.
fn side_elements(groups: usize) -> usize {
    (groups / SIDE_MIN_WORKGROUPS).max(1)
}

/// Side workgroups a decode-shaped attention keeps at least where its threads write several
/// elements each ([`side_elements`]). The Qwen2-0.5B-sized f16 decode step on an H200, GPU
/// time per step at 1, 4 and 16 elements a thread, twice each: past 128 (65 workgroups at one
/// element) 890.3-892.7, 897.9-898.0 and 999.2-1006.6 µs; past 1024 (513) 1062.7-1064.2,
/// 1050.5-1051.0 and 1187.7-1188.7; past 4096 (2049) 1576.7-1577.8, 1504.5-1505.0 and
/// 1506.4-1507.4 (`benches/results/h200-2026-11-29-side.md`): a thread's elements are a chain
/// of loads, so too few workgroups leave the dispatch waiting on a few of them.
const SIDE_MIN_WORKGROUPS: usize = 128;

/// The scratch array an attention split over its keys leaves its chunks' results in
/// ([`Split`]): for chunk `c` of row `row`, at `(row · chunks + c) · (width + 2)`, the chunk's
/// output (normalized by its own sum), then its maximum and its sum of exponentials.
const PARTIALS: &str = "fdp";

/// A decode-shaped attention's rows split over their keys (flash-decoding): `chunks`
/// workgroups a row, each over `len` consecutive keys (the last over the rest), computing the
/// row's softmax and P·V over its keys alone; a second kernel ([`attention_combine`]) weighs
/// each chunk's output by its sum of exponentials rescaled to the row's maximum, which gives
/// the row's softmax over all of its keys. The scores program must end in its one softmax
/// ([`lone_softmax`]); a cast to f16 after it then rounds each chunk's probabilities, not the
/// row's (the same within f16's tolerance: the Qwen2-0.5B-sized f16 step's logits at past 1000
/// within 4.3e-4 of the interpreter's, as in one workgroup a row). That step on an H200 took
/// 1053 µs at past 1024 (2159 in one workgroup a row), 1505 at 4096 (5579)
/// (`benches/results/h200-2026-11-29-side.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Split {
    /// Workgroups a row.
    chunks: usize,
    /// Keys a chunk (the last one's may be fewer).
    len: usize,
    /// The scores program's softmax step (its row values `m{k}`, `s{k}`).
    softmax: usize,
    /// Whether the scores program makes NaN probabilities zeros ([`lone_softmax`]): a row
    /// every key of which scored `-inf` is then zeros, not NaN.
    nan_zero: bool,
}

impl Split {
    /// The split of `rows` rows of `keys` keys (a head `width` wide, dot products `depth`
    /// long) into the chunks `t` forces or as many as [`default_chunks`] says, more where a
    /// chunk's keys would be too many to load up front ([`up_front`]): `None` for one chunk
    /// (forced or by default), where no chunk would load its keys up front, or where the
    /// chunks' results or their combining kernel's weights would not fit the target.
    fn pick(
        rows: usize,
        keys: usize,
        width: usize,
        depth: usize,
        t: &Target,
        softmax: usize,
        nan_zero: bool,
    ) -> Option<Split> {
        let max_ws = t.max_workgroup_storage_bytes as u64;
        let want = t.attention_chunks.unwrap_or_else(|| default_chunks(rows, keys)).min(keys);
        if want <= 1 {
            return None;
        }
        // (More chunks where fewer leave a chunk's keys too many to load up front; the
        // chunks then recounted so that none is empty.)
        let most = keys.div_ceil(want).min(WORKGROUP as usize);
        let len = (1..=most).rev().find(|&len| up_front(rows, len, width, depth, max_ws))?;
        let chunks = keys.div_ceil(len);
        let split = Split { chunks, len, softmax, nan_zero };
        // (The combining kernel holds a weight a chunk and a value a thread for its reductions.)
        let fits = (chunks + WORKGROUP as usize) as u64 * 4 <= max_ws
            && split.scratch_bytes(rows, width) <= t.max_binding_bytes;
        (chunks > 1 && fits).then_some(split)
    }

    /// Bytes of scratch the chunks' results take.
    fn scratch_bytes(&self, rows: usize, width: usize) -> u64 {
        (rows * self.chunks * (width + 2) * 4) as u64
    }
}

/// The chunks a decode-shaped attention splits its rows' keys into, unforced: none up to
/// [`SPLIT_MIN_KEYS`], past it as many as leave each at least [`SPLIT_KEYS`], and two at least.
fn default_chunks(rows: usize, keys: usize) -> usize {
    if rows > PREFETCH_MAX_ROWS || keys <= SPLIT_MIN_KEYS {
        1
    } else {
        (keys / SPLIT_KEYS).max(2)
    }
}

/// Keys an attention row holds at most before it is split over several workgroups, unforced
/// ([`Split`]). The Qwen2-0.5B-sized f16 decode step on an H200, GPU time per step, one row
/// in one workgroup against two chunks: past 128 887.5 µs against 958.3, past 160 899.0 against
/// 968.8; past 192 1040.5-1043.2 against 976.3-979.0, past 224 1067.3 against 987.0, past 255
/// 1084.4 against 1006.9 (`benches/results/h200-2026-11-29-split.md`).
const SPLIT_MIN_KEYS: usize = 192;

/// Keys a chunk of a split attention row takes at least past 256, unforced (fewer than 128
/// leave the workgroup 128 threads, each loading twice the values of V). The same step with
/// the first combining kernel, per chunk length: past 256, 2 chunks of 129 keys 976 µs (3 of
/// 86: 994); past 512, 4 of 129 1007 (3 of 256: 1174, 5 of 103: 1051); past 1024, 8 of 129
/// 1149 (5 of 256: 1207, 9 of 114: 1237); past 2048, 16 of 129 1412 (9 of 256: 1411, 17 of
/// 121: 1596).
const SPLIT_KEYS: usize = 128;

/// Whether an attention of `rows` rows loads its K and V up front ([`PREFETCH_MAX_ROWS`],
/// [`PREFETCH_MAX_VALUES`]): each thread one key of the row (a chunk's, where it is split), the
/// scores kept in workgroup memory.
fn up_front(rows: usize, keys: usize, width: usize, depth: usize, max_ws: u64) -> bool {
    let threads = row_threads(keys).max(row_threads(width)) as usize;
    let cached = (keys + 2 * threads + depth) as u64 * 4 <= max_ws;
    let groups = (threads / width.max(1)).max(1);
    cached
        && rows <= PREFETCH_MAX_ROWS
        && (1..=threads).contains(&keys)
        && depth + keys.div_ceil(groups) <= PREFETCH_MAX_VALUES
}

/// The scores program's softmax, where it is the program's one reduction and the steps after
/// it only pass its probabilities on: casts to a float type, and NaNs made zeros
/// (`Where(IsNaN(p), 0, p)`: PyTorch's `scaled_dot_product_attention` so zeroes a row every key
/// of which a mask hid); with whether the program zeroes NaNs ([`Split`]).
fn lone_softmax(steps: &[Step]) -> Option<(usize, bool)> {
    let mut rows = steps.iter().enumerate().filter(|(_, s)| matches!(s, Step::Softmax { .. } | Step::Reduce { .. }));
    let (k, Step::Softmax { .. }) = rows.next()? else { return None };
    if rows.next().is_some() {
        return None;
    }
    let zero = |z: usize| matches!(steps[z], Step::Const { value: Scalar::Float(v), .. } if v == 0.0);
    let is_nan = |c: usize, p: usize| matches!(steps[c], Step::Unary { op: UnaryOp::IsNaN, x } if x == p);
    // The value the probabilities are so far, walking the steps after the softmax (constants
    // anywhere: the zero a `Where` takes).
    let (mut p, mut nan_zero) = (k, false);
    for (i, step) in steps.iter().enumerate().skip(k + 1) {
        match *step {
            Step::Const { .. } => {}
            Step::Unary { op: UnaryOp::IsNaN, x } if x == p => {}
            Step::Cast { to, x } if x == p && to.is_float() => p = i,
            Step::Where { cond, x, y } if y == p && zero(x) && is_nan(cond, p) => (p, nan_zero) = (i, true),
            _ => return None,
        }
    }
    (p == steps.len() - 1).then_some((k, nan_zero))
}

/// The kernel combining a split attention's chunks ([`Split`]): a workgroup a row (the row
/// dims `rd`), a thread an element of its output (`width` of them, written as the unsplit
/// kernel writes them into dims `od` permuted by `perm`). Chunk `c`'s output counts with weight
/// `s_c · exp(m_c - M)` (its sum and maximum, the row's maximum `M`). The workgroup's threads
/// take the row's maximum and the chunks' weights together (into workgroup memory), then each
/// output element adds up its chunks' terms, [`COMBINE_LANES`] loads in flight at a time: a
/// loop over the chunks one load after another took 8-22 µs a dispatch on an H200
/// (`benches/results/h200-2026-11-29-split.md`). A chunk every key of which scored `-inf` left
/// a sum and an output of 0, so it weighs nothing, but where every chunk did: the row is then
/// NaN (`0 · exp(NaN)`), as the softmax of such a row is, or zeros where the program makes NaN
/// probabilities zeros.
#[allow(clippy::too_many_arguments)]
fn attention_combine(
    g: &Graph,
    name: &str,
    out: Value,
    rd: &[usize],
    width: usize,
    od: &[usize],
    perm: &[usize],
    s: Split,
    t: &Target,
) -> Result<KernelSource> {
    let rows: usize = rd.iter().product();
    let threads = row_threads(width.max(s.chunks));
    let mut body = String::from("    let row = gid;\n");
    let rc = row_coords(&mut body, rd);
    let (c, w2, sg) = (s.chunks, width + 2, subgroup(t));
    let _ = writeln!(
        body,
        "    let base = row * {c}u;\n    var mx_ = {NEG_INF};\n    for (var c = lid; c < {c}u; c = c + {threads}u) {{\n        mx_ = max(mx_, {PARTIALS}[(base + c) * {w2}u + {width}u]);\n    }}"
    );
    body.push_str(&crate::wgsl::tree_reduce(threads, "mx_", "max", sg));
    let _ = writeln!(
        body,
        "    let mx = red[0];\n    workgroupBarrier();\n    var den_ = 0.0;\n    for (var c = lid; c < {c}u; c = c + {threads}u) {{\n        let at = (base + c) * {w2}u;\n        let wc = {PARTIALS}[at + {}u] * exp({PARTIALS}[at + {width}u] - mx);\n        cw[c] = wc;\n        den_ = den_ + wc;\n    }}",
        width + 1
    );
    body.push_str(&crate::wgsl::tree_reduce(threads, "den_", "add_f_", sg));
    // (The reduction's last barrier makes every weight visible.)
    let lanes = COMBINE_LANES.min(c);
    let terms = |n: usize| -> String {
        let loads: String =
            (0..n).map(|l| format!("            let o{l} = {PARTIALS}[(base + c + {l}u) * {w2}u + lid];\n")).collect();
        let adds: String = (0..n).map(|l| format!("            num = num + cw[c + {l}u] * o{l};\n")).collect();
        format!("{loads}{adds}")
    };
    let o = if s.nan_zero { format!("select(num / den, 0.0, mx == {NEG_INF})") } else { "num / den".into() };
    let _ = writeln!(
        body,
        "    let den = red[0];\n    if (lid < {width}u) {{\n        var num = 0.0;\n        var c = 0u;\n        for (; c + {lanes}u <= {c}u; c = c + {lanes}u) {{\n{}        }}\n        for (; c < {c}u; c = c + 1u) {{\n{}        }}\n        out0[{}] = {o};\n    }}",
        terms(lanes),
        terms(1),
        out_index(&rc, od, perm),
    );
    let prelude = format!(
        "fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\nvar<workgroup> red: array<f32, {threads}>;\nvar<workgroup> cw: array<f32, {c}>;\n"
    );
    let scratch = crate::wgsl::Scratch { name: PARTIALS, write: false, bytes: s.scratch_bytes(rows, width) };
    crate::wgsl::kernel_outs(
        g,
        format!("{name}.combine"),
        KernelKind::Attention,
        &[],
        &[out],
        Some(&scratch),
        rows as u64,
        threads,
        &prelude,
        &body,
        vec![],
        t,
    )
}

/// Chunks a thread of an attention's combining kernel adds per iteration, their loads in
/// flight together ([`attention_combine`]).
const COMBINE_LANES: usize = 8;

/// `let`s the coordinates of row `row` of dims `rd` (the dims of 1 read at `0u`), and their
/// names.
fn row_coords(body: &mut String, rd: &[usize]) -> Vec<String> {
    let rs = strides(rd);
    let mut rc = vec![];
    for (k, &d) in rd.iter().enumerate() {
        if d == 1 {
            rc.push("0u".to_string());
        } else {
            let e = match (k, rs[k]) {
                (0, st) => format!("row / {st}u"),
                (_, 1) => format!("row % {d}u"),
                (_, st) => format!("(row / {st}u) % {d}u"),
            };
            let _ = writeln!(body, "    let r{k} = {e};");
            rc.push(format!("r{k}"));
        }
    }
    rc
}

/// Query rows an attention workgroup computes together (sharing each load of K and V), of
/// a head's `queries` (`heads` × `queries` rows in all): `forced` where it is at most the
/// queries and its workgroup memory (`bytes` a row) fits `max_bytes`; unforced, two where
/// they fit and leave at least [`COOP_MIN_WORKGROUPS`](crate::proj::coop::COOP_MIN_WORKGROUPS)
/// workgroups; else 1. Measured on the Qwen2-0.5B-sized f16 prefill (128 tokens, 14 heads) on
/// an H100, whole graph: one row a workgroup 2865 µs, two 2786, four 2889, eight 3199,
/// sixteen 3623 (`benches/results/h100-2026-11-27h-prefill.md`): past two, each workgroup's
/// longer serial work outweighs the loads it shares.
fn query_rows(heads: usize, queries: usize, bytes: u64, max_bytes: u64, forced: Option<usize>) -> usize {
    let fits = |q: usize| (1..=queries).contains(&q) && q as u64 * bytes <= max_bytes;
    match forced {
        Some(q) if fits(q) => q,
        Some(_) => 1,
        None if fits(2) && heads * queries.div_ceil(2) >= crate::proj::coop::COOP_MIN_WORKGROUPS => 2,
        None => 1,
    }
}

/// Most rows (workgroups) an attention that loads its K and V up front has ([`attention`]).
/// With few workgroups nothing hides a workgroup's wait on memory, and loading everything at
/// once shortens it: in the Qwen2-0.5B-sized f16 decode step on an H100 (14 rows of 129
/// keys), 1255 → 1218 µs; its 128-token prefill (1792 rows), where other workgroups hide the
/// waits, went from 3820 to 3860 µs that way, so it keeps the loops
/// (`benches/results/h100-2026-11-26f-attention.md`).
const PREFETCH_MAX_ROWS: usize = 128;

/// Most keys of a tile a thread of an attention's P·V loop takes per iteration (its loads of
/// V in flight together; the rest of the tile, fewer, one at a time). Measured on the
/// Qwen2-0.5B-sized f16 prefill (128 tokens, two query rows and 64 keys a thread) on an
/// H100, GPU time per call, alternating: 8 keys 2246.1 and 2240.9 µs, 16 keys 2238.0 and
/// 2230.6, 32 keys 2223.0 and 2227.0; on another lease 8 keys 2265.6, 2243.6, 2249.6 and 32
/// keys 2231.2, 2236.4, 2238.3 (`benches/results/h100-2026-11-28r-coop-attention.md`). The
/// scores' dot products, 64 terms an iteration instead of 16, were slower (2252.5, 2250.6).
const PV_KEYS: usize = 32;

/// Most values (one key's row of K plus its share of V) a thread of an attention loads up
/// front ([`attention`]); past it the kernel loads them in its loops (each value a register).
const PREFETCH_MAX_VALUES: usize = 160;

/// The largest power of two up to `max` that divides `n` (the terms of a loop written out
/// per iteration).
fn unroll(n: usize, max: usize) -> usize {
    let mut l = max.max(1);
    while l > 1 && n % l != 0 {
        l /= 2;
    }
    l
}

/// The flat output index of an attention row's element `lid`: the row's coordinates `rc`
/// and `lid`, permuted by `perm` (empty: none) into the output's dims `od`.
fn out_index(rc: &[String], od: &[usize], perm: &[usize]) -> String {
    let c: Vec<String> = rc.iter().cloned().chain(["lid".to_string()]).collect();
    let c: Vec<String> = if perm.is_empty() { c } else { perm.iter().map(|&p| c[p].clone()).collect() };
    Writer::flat(&c, od)
}

/// Marks step `x` and every step it is computed from in `marked` (those already marked, and
/// what they are computed from, are not walked again).
fn mark_cone(steps: &[Step], x: usize, marked: &mut [bool]) {
    let mut todo = vec![x];
    while let Some(y) = todo.pop() {
        if !marked[y] {
            marked[y] = true;
            todo.extend(steps[y].args());
        }
    }
}

/// The function a tree of products combines partial results with ([`Red::tree_fn`]).
const MUL_F: &str = "fn mul_f_(a: f32, b: f32) -> f32 { return a * b; }\n";

/// Whether a program reduces by products (its kernel then needs [`MUL_F`]).
fn takes_products(steps: &[Step]) -> bool {
    steps.iter().any(|s| matches!(s, Step::Reduce { op: ReduceOp::Prod, .. }))
}

/// A reduction a row program's round computes.
#[derive(Clone, Copy, Debug)]
enum Red {
    /// A reduction step's.
    Of(ReduceOp),
    /// A softmax's maximum.
    Max,
    /// A softmax's sum of `exp(x - max)`.
    SumExp,
}

impl Red {
    /// The prefix of its accumulator and of its row value (`r` for a reduction, `m` and `s`
    /// for a softmax's maximum and sum).
    fn tag(self) -> &'static str {
        match self {
            Red::Of(_) => "r",
            Red::Max => "m",
            Red::SumExp => "s",
        }
    }

    fn identity(self) -> &'static str {
        match self {
            Red::Of(ReduceOp::Max) | Red::Max => NEG_INF,
            Red::Of(ReduceOp::Sum | ReduceOp::Mean) | Red::SumExp => "0.0",
            Red::Of(ReduceOp::Prod) => "1.0",
        }
    }

    /// WGSL folding element `x` into accumulator `acc` (of step `k`, its row values named
    /// with suffix `sfx`).
    fn combine(self, acc: &str, x: &str, k: usize, sfx: &str) -> String {
        match self {
            // NaN-propagating, as the reduction kernel's maximum.
            Red::Of(ReduceOp::Max) => format!("maxf_({acc}, {x})"),
            Red::Of(ReduceOp::Sum | ReduceOp::Mean) => format!("{acc} + {x}"),
            Red::Of(ReduceOp::Prod) => format!("{acc} * {x}"),
            // As the softmax kernel: the plain maximum, then `exp(x - max)`.
            Red::Max => format!("max({acc}, {x})"),
            Red::SumExp => format!("{acc} + exp({x} - m{k}{sfx})"),
        }
    }

    /// The two-argument WGSL function its tree combines partial results with.
    fn tree_fn(self) -> &'static str {
        match self {
            Red::Of(ReduceOp::Max) => "maxf_",
            Red::Max => "max",
            Red::Of(ReduceOp::Sum | ReduceOp::Mean) | Red::SumExp => "add_f_",
            Red::Of(ReduceOp::Prod) => "mul_f_",
        }
    }
}

/// Indents lines by four more spaces (the body of a row loop).
fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// One row a round of reductions reduces ([`reduction_round`]): the coordinates the
/// reductions' operands are computed at, the suffix of its accumulators and row values
/// (`a5_m_1`, `m5_1`: an attention's query row 1 of several), the WGSL holding its scores
/// (an attention's virtual input, where the writer has one), and where its part of the
/// workgroup array begins.
struct RowAt {
    c: Vec<String>,
    sfx: String,
    virt: Option<String>,
    base: usize,
}

impl RowAt {
    /// The one row of a row program, at coordinates `c`.
    fn one(c: &[String]) -> Vec<RowAt> {
        vec![RowAt { c: c.to_vec(), sfx: String::new(), virt: None, base: 0 }]
    }
}

/// One round of row reductions, after its accumulators are declared and its strided loop
/// opened: each reduction's operand accumulated for each row of `rows` (inside the loop,
/// which it closes), then reduced across the workgroup's `threads` (the rows' reductions
/// sharing their barriers) and bound as `TAGk` with the row's suffix (a mean divided by the
/// `len` elements of the row); reductions whose value is final are marked done in `w`. With
/// `sg` (the subgroup size), across subgroups first ([`tree_reduce_rows`]).
#[allow(clippy::too_many_arguments)]
fn reduction_round(
    w: &mut Writer,
    body: &mut String,
    reds: &[(usize, Red, usize)],
    rows: &[RowAt],
    threads: u32,
    len: usize,
    arr: &RedArray,
    sg: Option<usize>,
) -> Result<()> {
    for row in rows {
        w.at_row(row);
        if rows.len() > 1 {
            // (A step's value is kept per coordinates; another row's reductions differ.)
            w.memo.clear();
        }
        for (k, r, x) in reds {
            let v = w.value(*x, &row.c)?;
            let acc = format!("a{k}_{}{}", r.tag(), row.sfx);
            let _ = writeln!(w.code, "    {acc} = {};", r.combine(&acc, &v, *k, &row.sfx));
        }
    }
    body.push_str(&indent(&w.code));
    body.push_str("    }\n");
    for (k, r, _) in reds {
        let xs: Vec<(usize, String)> =
            rows.iter().map(|row| (row.base, format!("a{k}_{}{}", r.tag(), row.sfx))).collect();
        body.push_str(&tree_reduce_rows(arr, &xs, threads, r.tree_fn(), sg));
        for row in rows {
            let at0 = if row.base == 0 { arr.at("0") } else { arr.at(&format!("{}u", row.base)) };
            let v = match r {
                Red::Of(ReduceOp::Mean) => format!("{at0} / f32({len})"),
                Red::Of(ReduceOp::Sum | ReduceOp::Max | ReduceOp::Prod) | Red::Max | Red::SumExp => at0,
            };
            let _ = writeln!(body, "    let {}{k}{} = {v};", r.tag(), row.sfx);
        }
        body.push_str("    workgroupBarrier();\n");
        if matches!(r, Red::Of(_) | Red::SumExp) {
            w.done.push(*k);
        }
    }
    w.sfx.clear();
    Ok(())
}

/// The rounds of a row program's reductions, and what each reduces: (step, reduction,
/// operand). A step is known in the round after the reductions it needs are done (a
/// reduction's operand may need an earlier one: a softmax's sum needs its maximum, a layer
/// norm's variance its mean).
fn reduction_rounds(steps: &[Step]) -> Vec<Vec<(usize, Red, usize)>> {
    let mut round = vec![0usize; steps.len()];
    for (k, s) in steps.iter().enumerate() {
        round[k] = match s {
            Step::Reduce { x, .. } => round[*x] + 1,
            Step::Softmax { x } => round[*x] + 2,
            _ => s.args().iter().map(|&a| round[a]).max().unwrap_or(0),
        };
    }
    // (Sized past the last step's round too where a reduction only an extra output reads
    // needs more.)
    let needed = steps.iter().filter_map(|s| match s {
        Step::Reduce { x, .. } => Some(round[*x] + 1),
        Step::Softmax { x } => Some(round[*x] + 2),
        _ => None,
    });
    let len = needed.chain(round.last().copied()).max().unwrap_or(0);
    let mut reductions: Vec<Vec<(usize, Red, usize)>> = vec![vec![]; len];
    for (k, s) in steps.iter().enumerate() {
        match s {
            Step::Reduce { op, x } => reductions[round[*x]].push((k, Red::Of(*op), *x)),
            Step::Softmax { x } => {
                reductions[round[*x]].push((k, Red::Max, *x));
                reductions[round[*x] + 1].push((k, Red::SumExp, *x));
            }
            _ => {}
        }
    }
    reductions
}

/// Writes the `let`s that compute a program's steps at given coordinates.
struct Writer<'a> {
    g: &'a Graph,
    b: &'a Bindings,
    /// The program and its steps' types, shared: [`Writer::value`] holds them while it
    /// recurses (a clone of the types for each value made an attention's codegen quadratic
    /// in its steps: 90% of a Qwen2-0.5B-sized KV step's codegen).
    p: Rc<ElementwiseProgram>,
    tys: Rc<[TensorType]>,
    /// Each step's dims under the binding.
    dims: Vec<Vec<usize>>,
    ins: Vec<Value>,
    in_dims: Vec<Vec<usize>>,
    name: String,
    sites: Sites,
    /// Row steps whose row values are known (`rK`; a softmax's `mK` and `sK`).
    done: Vec<usize>,
    /// The `let` holding each step's value at each coordinates already computed in scope.
    memo: HashMap<(usize, Vec<String>), String>,
    /// The statements written so far in the current scope.
    code: String,
    fresh: usize,
    /// An input that is a value of the kernel rather than a binding (an attention's scores),
    /// and the WGSL holding it at the coordinates asked for.
    virt: Option<(usize, String)>,
    /// Concatenations computed without branches ([`Writer::concat`]).
    select_concat: bool,
    /// Steps whose every value a workgroup array holds ([`Writer::stage`]), by its name.
    staged: HashMap<usize, String>,
    /// The suffix of the row values read (`m5_1`: an attention's query row 1 of several).
    sfx: String,
    /// An input read as partial sums ([`PartsRead`]).
    parts: Option<PartsRead>,
    /// An input read from the scratch buffer as [`KEYS_T`], which holds it with its last two
    /// axes swapped (an attention's present keys, positions last: [`attention_kernels`]).
    swapped: Option<usize>,
    /// Steps whose value at the row's coordinates a workgroup array holds, by step and row
    /// suffix: the WGSL reading it (an attention's softmax operand, kept from its first
    /// round).
    kept: HashMap<(usize, String), String>,
}

impl<'a> Writer<'a> {
    /// A writer of program `p` (its steps' types `tys`) over the inputs of node `n`, named
    /// `name`, under binding `b`; `sites` and `fresh` carried on from another writer of the
    /// same kernel.
    fn new(
        g: &'a Graph,
        n: NodeIndex,
        b: &'a Bindings,
        p: ElementwiseProgram,
        tys: Vec<TensorType>,
        sites: Sites,
        fresh: usize,
    ) -> Result<Self> {
        Self::over(g, n, g.inputs(n), b, p, tys, sites, fresh)
    }

    /// [`Writer::new`] over the inputs `ins` (node `n`'s, or those and values of its own that
    /// an earlier kernel of it wrote: [`attention_kernels`]).
    #[allow(clippy::too_many_arguments)]
    fn over(
        g: &'a Graph,
        n: NodeIndex,
        ins: Vec<Value>,
        b: &'a Bindings,
        p: ElementwiseProgram,
        tys: Vec<TensorType>,
        sites: Sites,
        fresh: usize,
    ) -> Result<Self> {
        let name = g.node(n).name.clone();
        let in_dims = ins.iter().map(|&v| dims(g, v, b)).collect::<Result<_>>()?;
        let dims =
            tys.iter().map(|t| concrete(&t.shape, b).map_err(|m| Error::graph(&name, m))).collect::<Result<_>>()?;
        Ok(Writer {
            g,
            b,
            p: Rc::new(p),
            tys: tys.into(),
            dims,
            ins,
            in_dims,
            name,
            sites,
            done: vec![],
            memo: HashMap::new(),
            code: String::new(),
            fresh,
            virt: None,
            select_concat: false,
            staged: HashMap::new(),
            kept: HashMap::new(),
            sfx: String::new(),
            parts: None,
            swapped: None,
        })
    }

    /// Reads the row values (and the virtual input, where it has one) of `row` from now on.
    fn at_row(&mut self, row: &RowAt) {
        self.sfx = row.sfx.clone();
        if let (Some(v), Some((_, name))) = (&row.virt, self.virt.as_mut()) {
            *name = v.clone();
        }
    }

    /// Forgets what was computed (a new loop over the row).
    fn reset(&mut self) {
        self.memo.clear();
        self.code.clear();
    }

    /// The statements computing steps `ks` (the result, then the other outputs, all of its
    /// shape) at output element `i`, and their values.
    fn outputs(&mut self, ks: &[usize]) -> Result<(String, Vec<String>)> {
        self.reset();
        let c = self.coords(ks[0]);
        let vs = ks.iter().map(|&k| self.value(k, &c)).collect::<Result<Vec<_>>>()?;
        Ok((std::mem::take(&mut self.code), vs))
    }

    /// A name for a new `let`.
    fn name(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    /// `let`s the coordinates of flat element `i` of step `k`'s dims (the output's).
    fn coords(&mut self, k: usize) -> Vec<String> {
        let d = self.dims[k].clone();
        let st = strides(&d);
        (0..d.len())
            .map(|a| {
                if d[a] == 1 {
                    return "0u".to_string();
                }
                let e = match (a, st[a]) {
                    (0, s) => format!("i / {s}u"),
                    (_, 1) => format!("i % {}u", d[a]),
                    (_, s) => format!("(i / {s}u) % {}u", d[a]),
                };
                self.bind("c", &e)
            })
            .collect()
    }

    /// A coordinate expression as a `let` (identifiers and literals as they are).
    fn bind(&mut self, prefix: &str, e: &str) -> String {
        if e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return e.to_string();
        }
        let n = self.name(prefix);
        let _ = writeln!(self.code, "    let {n} = {e};");
        n
    }

    /// Coordinates `c` of a step of dims `from` broadcast to an operand of dims `to` (numpy
    /// rules: aligned right, size-1 dims read at 0).
    fn project(c: &[String], to: &[usize]) -> Vec<String> {
        let off = c.len() - to.len();
        to.iter().enumerate().map(|(a, &d)| if d == 1 { "0u".to_string() } else { c[a + off].clone() }).collect()
    }

    /// The flat index of coordinates `c` in dims `d`.
    fn flat(c: &[String], d: &[usize]) -> String {
        let st = strides(d);
        let terms: Vec<String> = c
            .iter()
            .zip(&st)
            .filter(|(x, _)| x.as_str() != "0u")
            .map(|(x, &s)| if s == 1 { x.clone() } else { format!("{x} * {s}u") })
            .collect();
        if terms.is_empty() {
            "0u".into()
        } else {
            terms.join(" + ")
        }
    }

    /// The value of step `k` at coordinates `c` (of its dims): the `let` holding it, written
    /// (with the operands it needs) if not yet in scope.
    fn value(&mut self, k: usize, c: &[String]) -> Result<String> {
        if let Some(v) = self.kept.get(&(k, self.sfx.clone())) {
            return Ok(v.clone());
        }
        let key = (k, c.to_vec());
        if let Some(v) = self.memo.get(&key) {
            return Ok(v.clone());
        }
        let (p, tys) = (self.p.clone(), self.tys.clone());
        let s = &p.steps[k];
        let st = |j: usize| Store::of_dtype(tys[j].dtype);
        let e = match s {
            Step::Input(i) if self.virt.as_ref().is_some_and(|(k, _)| k == i) => {
                return Ok(self.virt.as_ref().expect("checked").1.clone());
            }
            Step::Input(i) if self.parts.is_some_and(|p| p.input == *i) => {
                self.parts.expect("checked").sum(&Self::flat(c, &self.in_dims[*i]))
            }
            Step::Input(i) if self.swapped == Some(*i) => {
                let (mut cs, mut ds) = (c.to_vec(), self.in_dims[*i].clone());
                let r = ds.len();
                cs.swap(r - 2, r - 1);
                ds.swap(r - 2, r - 1);
                format!("{KEYS_T}[{}]", Self::flat(&cs, &ds))
            }
            Step::Input(i) => {
                let v = self.ins[*i];
                load(&format!("in{i}"), &Self::flat(c, &self.in_dims[*i]), Store::of(self.g, v))
            }
            Step::Const { .. } => {
                let op = s.op().expect("a constant is an op");
                literal(&held_values(&op, &tys[k])).map_err(|m| Error::graph(&self.name, m))?
            }
            Step::Unary { op, x } => {
                let a = self.operand(*x, c)?;
                unary_expr(*op, &a, st(*x), tys[*x].dtype, &mut self.sites)
            }
            Step::Binary { op, a, b } => {
                let (l, r) = (self.operand(*a, c)?, self.operand(*b, c)?);
                let store = if op.kind() == BinaryKind::Logic { Store::Bool } else { st(*a) };
                binary_expr(*op, &l, &r, store, tys[*a].dtype, &mut self.sites)
            }
            Step::Where { cond, x, y } => {
                let (cv, xv, yv) = (self.operand(*cond, c)?, self.operand(*x, c)?, self.operand(*y, c)?);
                format!("select({yv}, {xv}, {cv} != 0u)")
            }
            Step::Cast { to, x } => {
                let a = self.operand(*x, c)?;
                cast_expr(&a, st(*x), *to, &mut self.sites)
            }
            Step::Expand { x, .. } => return self.operand(*x, c),
            Step::Reduce { .. } => {
                debug_assert!(self.done.contains(&k), "step {k} read before its round");
                format!("r{k}{}", self.sfx)
            }
            Step::Softmax { x } => {
                let a = self.value(*x, c)?;
                format!("exp({a} - m{k}{sfx}) / s{k}{sfx}", sfx = self.sfx)
            }
            Step::Transpose { perm, x } => {
                let mut cx = vec![String::new(); c.len()];
                for (i, &p) in perm.iter().enumerate() {
                    cx[p] = c[i].clone();
                }
                return self.value(*x, &cx);
            }
            Step::Slice { axis, start, step, x, .. } => {
                let ax =
                    norm_axis(*axis, c.len()).ok_or_else(|| Error::graph(&self.name, "slice axis out of range"))?;
                let s0 = start.eval(self.b).map_err(|m| Error::graph(&self.name, m))?;
                let mut cx = c.to_vec();
                let e = match *step {
                    1 => format!("{} + {s0}u", c[ax]),
                    st if st > 0 => format!("{} * {st}u + {s0}u", c[ax]),
                    st => format!("{s0}u - {} * {}u", c[ax], st.unsigned_abs()),
                };
                cx[ax] = if s0 == 0 && *step == 1 { c[ax].clone() } else { self.bind("c", &e) };
                return self.value(*x, &cx);
            }
            Step::Concat { axis, xs } => return self.concat(k, *axis, xs, c),
            Step::Range { start, delta, .. } => {
                crate::index::range_value(&self.name, start, *delta, self.dims[k][0], self.b, &c[0])?
            }
            Step::Reshape { x, .. } => {
                let cx = self.reshaped(c, &self.dims[k].clone(), &self.dims[*x].clone());
                return self.value(*x, &cx);
            }
        };
        let v = self.name("t");
        let _ = writeln!(self.code, "    let {v} = {e};");
        self.memo.insert(key, v.clone());
        Ok(v)
    }

    /// Coordinates `c` of a reshape's output (dims `from`) as coordinates of its operand (dims
    /// `to`): the dims other than 1 matched in runs of equal size, a run of one dim on each
    /// side read as it is, a run that splits or merges dims through its own linear index.
    fn reshaped(&mut self, c: &[String], from: &[usize], to: &[usize]) -> Vec<String> {
        let mut out = vec!["0u".to_string(); to.len()];
        let fs: Vec<usize> = (0..from.len()).filter(|&a| from[a] != 1).collect();
        let ts: Vec<usize> = (0..to.len()).filter(|&a| to[a] != 1).collect();
        let (mut i, mut j) = (0, 0);
        while i < fs.len() && j < ts.len() {
            let (mut gf, mut gt) = (vec![fs[i]], vec![ts[j]]);
            let (mut pf, mut pt) = (from[fs[i]], to[ts[j]]);
            (i, j) = (i + 1, j + 1);
            while pf != pt {
                if pf < pt && i < fs.len() {
                    gf.push(fs[i]);
                    pf *= from[fs[i]];
                    i += 1;
                } else if j < ts.len() {
                    gt.push(ts[j]);
                    pt *= to[ts[j]];
                    j += 1;
                } else {
                    break;
                }
            }
            if gf.len() == 1 && gt.len() == 1 {
                out[gt[0]] = c[gf[0]].clone();
                continue;
            }
            let mut terms = vec![];
            let mut below = 1;
            for &a in gf.iter().rev() {
                terms.push(if below == 1 { c[a].clone() } else { format!("{} * {below}u", c[a]) });
                below *= from[a];
            }
            terms.reverse();
            let l = self.bind("l", &terms.join(" + "));
            let mut below = 1;
            for &a in gt.iter().rev() {
                let e = match (below, a == gt[0]) {
                    (1, true) => l.clone(),
                    (1, false) => format!("{l} % {}u", to[a]),
                    (_, true) => format!("{l} / {below}u"),
                    (_, false) => format!("({l} / {below}u) % {}u", to[a]),
                };
                out[a] = self.bind("c", &e);
                below *= to[a];
            }
        }
        out
    }

    /// The value of operand `x` of an elementwise step at coordinates `c` (the step's).
    fn operand(&mut self, x: usize, c: &[String]) -> Result<String> {
        let cx = Self::project(c, &self.dims[x]);
        self.value(x, &cx)
    }

    /// A concat at coordinates `c`: the part holding `c` along the axis, read in a branch of
    /// its own (what each part computes stays in its branch).
    fn concat(&mut self, k: usize, axis: i64, xs: &[usize], c: &[String]) -> Result<String> {
        let ax = norm_axis(axis, c.len()).ok_or_else(|| Error::graph(&self.name, "concat axis out of range"))?;
        if self.select_concat && xs.iter().any(|&x| self.dims[x][ax] > 0) {
            return self.concat_select(k, ax, xs, c);
        }
        let v = self.name("t");
        let _ = writeln!(self.code, "    var {v}: {};", Store::of_dtype(self.tys[k].dtype).scalar());
        let mut off = 0usize;
        let parts: Vec<usize> = xs.iter().copied().filter(|&x| self.dims[x][ax] > 0).collect();
        for (n, &x) in parts.iter().enumerate() {
            let size = self.dims[x][ax];
            let mut cx = c.to_vec();
            if off > 0 {
                cx[ax] = format!("({} - {off}u)", c[ax]);
            }
            let (memo, code) = (self.memo.clone(), std::mem::take(&mut self.code));
            cx[ax] = self.bind("c", &cx[ax]);
            let got = self.value(x, &cx)?;
            let _ = writeln!(self.code, "    {v} = {got};");
            let inner = std::mem::replace(&mut self.code, code);
            self.memo = memo;
            let cond = if n + 1 == parts.len() { String::new() } else { format!("if ({} < {}u) ", c[ax], off + size) };
            let open = if n == 0 { format!("    {cond}{{\n") } else { format!(" else {cond}{{\n") };
            let _ = write!(self.code, "{open}{}    }}", indent(&inner));
            off += size;
        }
        self.code.push('\n');
        self.memo.insert((k, c.to_vec()), v.clone());
        Ok(v)
    }

    /// Stages the later parts of the program's branch-free concatenations ([`Writer::concat_select`])
    /// that hold at most `threads` float elements (a KV step's new keys after the past cache)
    /// in workgroup arrays named `{prefix}N`: the statements computing them (thread `lid`
    /// element `lid`; the caller puts a barrier after them) and the arrays' declarations.
    /// The concatenation then reads a staged part there instead of computing it per element.
    /// A part inside another staged part is not staged on its own.
    fn stage(&mut self, threads: usize, prefix: &str) -> Result<(String, String)> {
        let steps = self.p.steps.clone();
        let mut inside = vec![false; steps.len()];
        let mut chosen = vec![];
        for k in (0..steps.len()).rev() {
            let Step::Concat { xs, .. } = &steps[k] else { continue };
            if inside[k] {
                continue;
            }
            for &x in &xs[1..] {
                let numel: usize = self.dims[x].iter().product();
                if numel == 0 || numel > threads || !self.tys[x].dtype.is_float() || inside[x] {
                    continue;
                }
                chosen.push((x, numel));
                mark_cone(&steps, x, &mut inside);
            }
        }
        let (mut code, mut decls) = (String::new(), String::new());
        for (n, &(x, numel)) in chosen.iter().enumerate() {
            let arr = format!("{prefix}{n}");
            self.reset();
            let c = self.coords(x);
            let v = self.value(x, &c)?;
            let inner = std::mem::take(&mut self.code);
            let _ = writeln!(
                code,
                "    if (lid < {numel}u) {{\n        let i = lid;\n{}        {arr}[lid] = {v};\n    }}",
                indent(&inner)
            );
            let _ = writeln!(decls, "var<workgroup> {arr}: array<f32, {numel}>;");
            self.staged.insert(x, arr);
        }
        self.reset();
        Ok((code, decls))
    }

    /// [`Writer::concat`] without branches: every part's value at the coordinate clamped into
    /// that part (so that every read is in bounds), then the one the coordinate falls in
    /// picked by `select`. Each part is computed wherever the concatenation is, but the
    /// reads of a row written out element by element no longer wait on each other behind
    /// branches: the attention's K and V, read through a KV step's concatenation of the past
    /// cache and the new keys, load their whole row at once.
    fn concat_select(&mut self, k: usize, ax: usize, xs: &[usize], c: &[String]) -> Result<String> {
        let parts: Vec<usize> = xs.iter().copied().filter(|&x| self.dims[x][ax] > 0).collect();
        let mut vals = vec![];
        let mut off = 0usize;
        for (n, &x) in parts.iter().enumerate() {
            let size = self.dims[x][ax];
            let lo = if off > 0 { format!("max({}, {off}u)", c[ax]) } else { c[ax].clone() };
            let hi = if n + 1 < parts.len() { format!("min({lo}, {}u)", off + size - 1) } else { lo };
            let mut cx = c.to_vec();
            cx[ax] = self.bind("c", &if off > 0 { format!("{hi} - {off}u") } else { hi });
            let v = match self.staged.get(&x).cloned() {
                Some(arr) => {
                    let at = Self::flat(&cx, &self.dims[x]);
                    self.bind("t", &format!("{arr}[{at}]"))
                }
                None => self.value(x, &cx)?,
            };
            vals.push((v, off + size));
            off += size;
        }
        let (last, _) = vals.pop().expect("a concatenation has a part");
        let e = vals.iter().rev().fold(last, |acc, (v, end)| format!("select({acc}, {v}, {} < {end}u)", c[ax]));
        let v = self.name("t");
        let _ = writeln!(self.code, "    let {v} = {e};");
        self.memo.insert((k, c.to_vec()), v.clone());
        Ok(v)
    }
}

/// The WGSL literal of a one-element constant, in its storage type: floats exactly (a
/// non-finite one by its bits), integers within i32's range, booleans as 0 or 1.
fn literal(c: &Tensor) -> std::result::Result<String, String> {
    Ok(match c.data() {
        Data::F32(v) if v[0].is_finite() => format!("f32({:?})", v[0]),
        Data::F32(v) => format!("bitcast<f32>({:#010x}u)", v[0].to_bits()),
        Data::I64(v) => match i32::try_from(v[0]) {
            Ok(i32::MIN) => "(-2147483647i - 1i)".into(),
            Ok(x) => format!("{x}i"),
            Err(_) => return Err(format!("constant {} does not fit the 32 bits the GPU holds integers in", v[0])),
        },
        Data::Bool(v) => format!("{}u", v[0] as u32),
    })
}

/// A row program computed inside the decode GEMV (either layout) that reads it: an RMS or
/// layer norm (with the residual addition before it) folded into the projection after it,
/// one dispatch instead of two. Every workgroup of the GEMV computes the reductions of its
/// rows of x (a few thousand elements, from L2) before its main loop, and reads each element
/// of x as the program's value there (`px_`) instead of loading it; the first workgroup along
/// the columns also writes the program's other outputs (the residual sum the next norm
/// reads). The reductions go through the GEMV's own workgroup array `red`, in the form the
/// GEMV declares it ([`RedArray`], at least [`WORKGROUP`] entries). See [`row_prologue`] for
/// when a program qualifies.
pub(crate) struct Prologue {
    /// The program node.
    pub node: NodeIndex,
    /// Its inputs, bound as `in0`, `in1`, .. in this order.
    pub ins: Vec<Value>,
    /// Each input's WGSL array element.
    pub in_elem: Vec<String>,
    /// Whether each input is packed f16.
    pub in_packed: Vec<bool>,
    /// Its other outputs (outputs 1..), bound as `pout0`, .. in this order.
    pub also: Vec<Value>,
    /// Each other output's WGSL array element.
    pub also_elem: Vec<String>,
    /// Functions the kernel needs: `px_`, and the helpers the code calls.
    pub funcs: String,
    /// The row reductions `px_` takes after the element index, in order.
    stats: Vec<usize>,
    /// Statements computing the row's reductions (`rK`) for the row at flat offset `row`
    /// (a `let` in scope), with every thread of a 256-wide workgroup taking part.
    stats_code: String,
    /// Statements writing the other outputs of the row at `row`, strided over the threads.
    also_code: String,
    /// Row length (the projection's K).
    len: usize,
    /// Rows of x.
    rows: usize,
}

impl Prologue {
    /// The statements before the GEMV's main loop for its rows `row0 + r`, r < `tm`:
    /// each row's reductions into `pstR_K`, and, in workgroups with `wg.x == 0`, the other
    /// outputs. Every thread of the workgroup must run them (they have barriers).
    pub(crate) fn code(&self, tm: usize) -> String {
        let mut s = String::new();
        for r in 0..tm {
            for k in &self.stats {
                let _ = writeln!(s, "    var pst{r}_{k}: f32;");
            }
            let _ = writeln!(s, "    {{\n    let row = min(row0 + {r}u, {}u) * {}u;", self.rows - 1, self.len);
            s.push_str(&self.stats_code);
            for k in &self.stats {
                let _ = writeln!(s, "    pst{r}_{k} = r{k};");
            }
            if !self.also.is_empty() {
                let _ = writeln!(s, "    if (wg.x == 0u && row0 + {r}u < {}u) {{", self.rows);
                s.push_str(&indent(&self.also_code));
                s.push_str("    }\n");
            }
            s.push_str("    }\n");
        }
        s
    }

    /// The value of x at flat index `i` of row `r` of the tile.
    pub(crate) fn x_at(&self, r: usize, i: &str) -> String {
        let stats: String = self.stats.iter().map(|k| format!(", pst{r}_{k}")).collect();
        format!("px_({i}{stats})")
    }
}

/// The prologue that computes node `p`'s output 0, the x of a decode GEMV over `rows` rows
/// of length `len`, under binding `b`, its reductions through the GEMV's array `arr`: `None`
/// unless `p` is an elementwise program with row reductions (no softmax) whose output is
/// `rows × len` with rows of `len`, and its code needs no runtime checks.
pub(crate) fn row_prologue(
    g: &Graph,
    p: NodeIndex,
    b: &Bindings,
    rows: usize,
    len: usize,
    sg: Option<usize>,
    arr: RedArray,
) -> Result<Option<Prologue>> {
    let Op::Elementwise(prog) = &g.node(p).op else { return Ok(None) };
    let rowsteps: Vec<&Step> = prog.steps.iter().filter(|s| s.is_row()).collect();
    if rowsteps.is_empty() || rowsteps.iter().any(|s| !matches!(s, Step::Reduce { .. })) {
        return Ok(None);
    }
    let od = dims(g, Value::of(p), b)?;
    if od.last() != Some(&len) || od.iter().product::<usize>() != rows * len || len == 0 {
        return Ok(None);
    }
    let ins = g.inputs(p);
    let in_tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
    let name = g.node(p).name.clone();
    let tys = prog.step_types(&in_tys).map_err(|m| Error::graph(&name, m))?;
    let mut w = Writer::new(g, p, b, prog.clone(), tys, Sites::new(&name), 0)?;
    let last = prog.steps.len() - 1;
    let reductions = reduction_rounds(&prog.steps);
    let threads = WORKGROUP;
    let stride = format!("    for (var j = lid; j < {len}u; j = j + {threads}u) {{\n        let i = row + j;\n");
    let mut stats_code = String::new();
    let mut stats = vec![];
    for reds in &reductions {
        for (k, r, _) in reds {
            let _ = writeln!(stats_code, "    var a{k}_{}: f32 = {};", r.tag(), r.identity());
            stats.push(*k);
        }
        stats_code.push_str(&stride);
        w.reset();
        let c = w.coords(last);
        reduction_round(&mut w, &mut stats_code, reds, &RowAt::one(&c), threads, len, &arr, sg)?;
    }
    // The other outputs, where the first workgroup along the columns writes them.
    let mut also_code = String::new();
    if !prog.also.is_empty() {
        let (lets, writes) = w.outputs(&prog.also)?;
        also_code.push_str(&stride);
        also_code.push_str(&indent(&lets));
        for (k, v) in writes.iter().enumerate() {
            let _ = writeln!(also_code, "        pout{k}[i] = {v};");
        }
        also_code.push_str("    }\n");
    }
    let (lets, x) = w.outputs(&[last])?;
    let params: String = stats.iter().map(|k| format!(", r{k}: f32")).collect();
    let mut funcs = format!("fn px_(i: u32{params}) -> f32 {{\n{lets}    return {};\n}}\n", x[0]);
    if !w.sites.checks.is_empty() || !w.sites.prelude().is_empty() {
        return Ok(None);
    }
    funcs.push_str("fn add_f_(a: f32, b: f32) -> f32 { return a + b; }\n");
    if takes_products(&w.p.steps) {
        funcs.push_str(MUL_F);
    }
    let also: Vec<Value> = (1..=prog.also.len()).map(|k| Value { node: p, output: k }).collect();
    let in_elem = ins.iter().map(|&v| Store::of(g, v).array_elem().to_string()).collect();
    let in_packed = ins.iter().map(|&v| crate::packed_f16(g, v)).collect();
    let also_elem = also.iter().map(|&v| Store::of(g, v).array_elem().to_string()).collect();
    Ok(Some(Prologue {
        node: p,
        ins,
        in_elem,
        in_packed,
        also,
        also_elem,
        funcs,
        stats,
        stats_code,
        also_code,
        len,
        rows,
    }))
}
