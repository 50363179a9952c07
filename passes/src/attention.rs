//! Attention fusion: `MatMul(P, V)` where `P` is an elementwise row program (a softmax, with
//! the scale, mask or soft cap merged into it by the elementwise fusion) of the scores
//! `MatMul(Q, Kᵀ)` becomes one `Attention` node, which one kernel computes per row of scores
//! without writing the scores or the probabilities.
//!
//! The rules:
//! - the scores and the probabilities are read only by the next step (and are no graph
//!   outputs), so nothing is computed twice or lost;
//! - Q, Kᵀ and V are read through the views and moves that only this attention reads: the
//!   `Reshape`s, `Transpose`s, `Expand`s and `Slice`s, and the elementwise programs made only
//!   of such steps (a grouped-query expand of the KV cache and its transpose) become programs
//!   of the node, so the cache is read where it lies instead of being copied per layer; Q
//!   also takes in the float programs without row steps that only it reads (the query's bias
//!   and rotary embedding), which the kernel computes once per row, and so does V (the
//!   value's bias, in an export without a KV cache), which the kernel computes as it reads;
//!   Kᵀ takes in programs that only move and multiply by constants (PyTorch's
//!   `scaled_dot_product_attention` scales K too, by the scale's square root), one
//!   multiplication per element read;
//! - the node must type-check as the products did (Q, Kᵀ and V of one rank with the same batch
//!   dims), and V's last dim (a head's width) must be known and at most 256, what one
//!   workgroup accumulates.
//!
//! Where Kᵀ is a program of its own that ends by expanding grouped-query heads and moving the
//! keys' positions last (HF's `repeat_kv` then `transpose(2, 3)` after the rotary embedding,
//! which no attention kernel recomputes per row), that program stops before the expand,
//! writing each KV head's keys once, positions last, and the node reads them through the
//! expand (`narrow_grouped_keys`): for Qwen2-0.5B's 14 heads over 2, a seventh of the writes.
//!
//! A `Transpose` that alone reads the output (the heads put back side by side for the output
//! projection) is absorbed too: the kernel writes its output so. The node takes the name of
//! the last node it replaces and lists every node it replaced.

use super::{Pass, PassReport};
use glufuse_ir::ops::attention::types;
use glufuse_ir::Result;
use glufuse_ir::*;
use std::collections::HashMap;

/// One attention fused.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fused {
    /// The node's name (the product's, kept).
    pub node: String,
    /// The names of the nodes it replaced.
    pub replaced: Vec<String>,
    /// Whether its keys' program was narrowed to the KV heads (written once per KV head).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keys_per_kv_head: bool,
}

/// What the pass fused.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttentionReport {
    /// The attentions fused, in topological order.
    pub fused: Vec<Fused>,
    /// Kernel launches a run takes before the pass.
    pub launches_before: usize,
    /// Kernel launches a run takes after it.
    pub launches_after: usize,
}

impl AttentionReport {
    /// The report for people: one line, then one per attention when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let mut s = format!(
            "attention: {} fused, kernel launches {} -> {}\n",
            self.fused.len(),
            self.launches_before,
            self.launches_after
        );
        if detail {
            for f in &self.fused {
                let keys = if f.keys_per_kv_head { " (keys written once per KV head)" } else { "" };
                s.push_str(&format!("  {}: replaced {}{keys}\n", f.node, f.replaced.join(", ")));
            }
        }
        s
    }
}

/// The pass.
#[derive(Default)]
pub struct FuseAttention;

impl Pass for FuseAttention {
    fn name(&self) -> &'static str {
        "fuse-attention"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        Ok(PassReport::Attention(fuse(g)?))
    }
}

/// Whether `v` is read once, by one node, and is no graph output.
fn only_read_once(g: &Graph, v: Value) -> bool {
    g.users(v).len() == 1 && !g.is_output(v) && g.node(v.node).outputs.len() == 1
}

/// Whether an elementwise program only moves its inputs' elements.
fn moves_only(p: &ElementwiseProgram) -> bool {
    p.steps.iter().all(|s| {
        matches!(s, Step::Input(_) | Step::Expand { .. }) || (s.is_layout() && !matches!(s, Step::Concat { .. }))
    })
}

/// Whether an elementwise program only moves its inputs' elements and multiplies them by
/// constants: PyTorch's `scaled_dot_product_attention` scales K as well as Q, by the square
/// root of the scale each. The kernel reads Kᵀ through such a program, one multiplication
/// per element read, instead of a kernel writing the scaled keys.
fn moves_and_scales(p: &ElementwiseProgram) -> bool {
    let constant = |k: usize| matches!(p.steps.get(k), Some(Step::Const { .. }));
    p.steps.iter().all(|s| match s {
        Step::Const { value: Scalar::Float(x), .. } => x.is_finite(),
        Step::Binary { op: BinaryOp::Mul, a, b } => constant(*a) || constant(*b),
        s => matches!(s, Step::Input(_) | Step::Expand { .. }) || (s.is_layout() && !matches!(s, Step::Concat { .. })),
    })
}

/// Whether an elementwise program computes Q's elements one by one in floats: no row steps,
/// every step a float (so nothing checks at run time), over inputs of types `ins`. The
/// kernel computes Q once per row into workgroup memory, so such a program (a rotary
/// embedding) is folded into the node rather than launched on its own.
fn computes_per_element(p: &ElementwiseProgram, ins: &[&TensorType]) -> bool {
    !p.steps.iter().any(Step::is_row) && p.step_types(ins).is_ok_and(|tys| tys.iter().all(|t| t.dtype.is_float()))
}

/// Builds the program of one operand of the node.
struct Operand<'a> {
    g: &'a Graph,
    /// Whether programs that compute (not only move) are absorbed too: Q's, which the
    /// kernel computes once per row, and V's.
    computes: bool,
    /// The node's inputs, shared by its programs.
    inputs: &'a mut Vec<Value>,
    /// Nodes absorbed (to be removed), with the names they replaced.
    absorbed: &'a mut Vec<NodeIndex>,
    steps: Vec<Step>,
    /// The step reading each node input, in this program.
    input_step: HashMap<usize, usize>,
    /// Programs taken in whose output the graph outputs too (see [`Operand::side`]): the
    /// output, and this operand's steps up to its value (the program of the node's output
    /// that replaces it).
    sides: &'a mut Vec<(Value, Vec<Step>)>,
}

impl Operand<'_> {
    /// The step holding `v`: its views and moves absorbed when only this operand reads them.
    fn step(&mut self, v: Value) -> usize {
        let node = self.g.node(v.node);
        if only_read_once(self.g, v) {
            let ins = self.g.inputs(v.node);
            let moved = match &node.op {
                Op::Reshape { shape } => Some(Step::Reshape { shape: shape.clone(), x: 0 }),
                Op::Transpose { perm } => Some(Step::Transpose { perm: perm.clone(), x: 0 }),
                Op::Expand { shape } => Some(Step::Expand { shape: shape.clone(), x: 0 }),
                Op::Slice { axis, start, len, step } => {
                    Some(Step::Slice { axis: *axis, start: start.clone(), len: len.clone(), step: *step, x: 0 })
                }
                _ => None,
            };
            if let Some(mut s) = moved {
                let x = self.step(ins[0]);
                s.set_args(&[x]);
                self.absorbed.push(v.node);
                return self.push(s);
            }
            if let Op::Elementwise(p) = &node.op {
                let tys: Vec<&TensorType> = ins.iter().map(|&x| self.g.ty(x)).collect();
                let scales = moves_and_scales(p) && computes_per_element(p, &tys);
                if moves_only(p) || scales || (self.computes && computes_per_element(p, &tys)) {
                    let k = self.take_in(p, &ins);
                    self.absorbed.push(v.node);
                    return k;
                }
            }
        }
        if let Some(k) = self.side(v) {
            return k;
        }
        let i = match self.inputs.iter().position(|&x| x == v) {
            Some(i) => i,
            None => {
                self.inputs.push(v);
                self.inputs.len() - 1
            }
        };
        if let Some(&k) = self.input_step.get(&i) {
            return k;
        }
        let k = self.push(Step::Input(i));
        self.input_step.insert(i, k);
        k
    }

    /// A float program without row steps (a KV step's present keys: the past cache and the
    /// new rotated keys concatenated) whose output `v` the graph outputs and only this
    /// operand reads besides: its steps are taken into the operand (the attention reads the
    /// past cache and the new keys where they are) and into a program of the node's own
    /// output that replaces `v` (the kernel writes it), so the program is no kernel of its own.
    fn side(&mut self, v: Value) -> Option<usize> {
        let node = self.g.node(v.node);
        let Op::Elementwise(p) = &node.op else { return None };
        let ins = self.g.inputs(v.node);
        let tys: Vec<&TensorType> = ins.iter().map(|&x| self.g.ty(x)).collect();
        let takes = self.g.is_output(v)
            && self.g.users(v).len() == 1
            && node.outputs.len() == 1
            && p.also.is_empty()
            && !matches!(p.steps.last(), Some(Step::Input(_)))
            && computes_per_element(p, &tys);
        if !takes {
            return None;
        }
        let k = self.take_in(p, &ins);
        // Its steps were pushed last (an operand's views are pushed after what they read).
        self.sides.push((v, self.steps.clone()));
        self.absorbed.push(v.node);
        Some(k)
    }

    /// Pushes program `p`'s steps over its node's inputs `ins` (each read through
    /// [`Operand::step`]) into the operand; returns the step holding its value.
    fn take_in(&mut self, p: &ElementwiseProgram, ins: &[Value]) -> usize {
        let mut at = vec![];
        for s in &p.steps {
            let k = match s {
                Step::Input(i) => self.step(ins[*i]),
                _ => {
                    let mut s = s.clone();
                    let args: Vec<usize> = s.args().iter().map(|&a| at[a]).collect();
                    s.set_args(&args);
                    self.push(s)
                }
            };
            at.push(k);
        }
        *at.last().expect("a program has a step")
    }

    fn push(&mut self, s: Step) -> usize {
        self.steps.push(s);
        self.steps.len() - 1
    }
}

/// Fuses every attention of `g` and reports them.
pub fn fuse(g: &mut Graph) -> Result<AttentionReport> {
    let mut report = AttentionReport { launches_before: g.summary().launches, ..Default::default() };
    for n in g.topo_order()? {
        if g.g.node_weight(n).is_none() || g.node(n).op != Op::MatMul {
            continue;
        }
        if let Some(mut f) = try_fuse(g, n)? {
            if let Some(a) = g.find(&f.node) {
                f.keys_per_kv_head = narrow_grouped_keys(g, a)?;
            }
            report.fused.push(f);
        }
    }
    report.launches_after = g.summary().launches;
    Ok(report)
}

/// Fuses the attention whose last product is `pv`, if it is one.
fn try_fuse(g: &mut Graph, pv: NodeIndex) -> Result<Option<Fused>> {
    let [p, v] = g.inputs(pv)[..] else { return Ok(None) };
    let Op::Elementwise(prog) = &g.node(p.node).op else { return Ok(None) };
    if !only_read_once(g, p) || !prog.steps.iter().any(Step::is_row) {
        return Ok(None);
    }
    let prog = prog.clone();
    let p_ins = g.inputs(p.node);
    let is_scores =
        |s: &Value| g.node(s.node).op == Op::MatMul && only_read_once(g, *s) && g.ty(*s).shape == g.ty(p).shape;
    let Some(s_at) = p_ins.iter().position(is_scores) else { return Ok(None) };
    let s = p_ins[s_at];
    let [q, kt] = g.inputs(s.node)[..] else { return Ok(None) };
    let width = g.ty(v).shape.last().and_then(|d| d.fixed());
    if !width.is_some_and(|w| (1..=256).contains(&w)) {
        return Ok(None);
    }
    let (mut inputs, mut absorbed, mut sides) = (vec![], vec![], vec![]);
    let mut operand = |x: Value, computes: bool, inputs: &mut Vec<Value>, absorbed: &mut Vec<NodeIndex>| {
        let mut o =
            Operand { g, computes, inputs, absorbed, steps: vec![], input_step: HashMap::new(), sides: &mut sides };
        o.step(x);
        o.steps
    };
    let q_steps = operand(q, true, &mut inputs, &mut absorbed);
    let kt_steps = operand(kt, false, &mut inputs, &mut absorbed);
    // V's program too (a bias added as read: one more read per element, from a vector the
    // caches keep, against a kernel of its own). Kᵀ's would be recomputed per query row.
    let v_steps = operand(v, true, &mut inputs, &mut absorbed);
    // The scores program: P's program over the shared inputs, the scores one past them.
    let mut map = vec![0; p_ins.len()];
    for (k, &x) in p_ins.iter().enumerate() {
        if k != s_at {
            map[k] = match inputs.iter().position(|&y| y == x) {
                Some(i) => i,
                None => {
                    inputs.push(x);
                    inputs.len() - 1
                }
            };
        }
    }
    map[s_at] = inputs.len();
    let scores: Vec<Step> =
        prog.steps.iter().map(|st| if let Step::Input(k) = st { Step::Input(map[*k]) } else { st.clone() }).collect();
    // The heads transposed back (read only there): the kernel writes them so.
    let out = Value::of(pv);
    let transposed = match g.users(out)[..] {
        [(t, 0)] if !g.is_output(out) => match &g.node(t).op {
            Op::Transpose { perm } => Some((t, perm.clone())),
            _ => None,
        },
        _ => None,
    };
    let out_perm = transposed.as_ref().map(|(_, p)| p.clone()).unwrap_or_default();
    let also = sides.iter().map(|(_, st)| st.clone()).collect();
    let a = Attention { q: q_steps, kt: kt_steps, v: v_steps, scores, out_perm, also, replaced: vec![] };
    let tys: Vec<&TensorType> = inputs.iter().map(|&x| g.ty(x)).collect();
    if types(&a, &tys).is_err() {
        return Ok(None);
    }
    // Every node replaced, by name: the products, P's program and what it replaced, what the
    // operands absorbed (and what their programs replaced).
    let mut replaced: Vec<String> = vec![];
    let names_of = |n: NodeIndex, replaced: &mut Vec<String>| match &g.node(n).op {
        Op::Elementwise(e) => replaced.extend(e.replaced.iter().cloned()),
        _ => replaced.push(g.node(n).name.clone()),
    };
    let last = transposed.map(|(t, _)| t).unwrap_or(pv);
    for &n in absorbed.iter().chain([s.node, p.node, pv].iter()) {
        names_of(n, &mut replaced);
    }
    if last != pv {
        replaced.push(g.node(last).name.clone());
    }
    let name = g.node(last).name.clone();
    let mut tys = vec![g.ty(Value::of(last)).clone()];
    tys.extend(sides.iter().map(|(v, _)| g.ty(*v).clone()));
    g.rename(last, format!("{name}.unfused"))?;
    let new = g.add_node(name.clone(), Op::Attention(Attention { replaced: replaced.clone(), ..a }), &inputs, tys)?;
    g.replace_uses(Value::of(last), Value::of(new));
    for (k, (v, _)) in sides.iter().enumerate() {
        g.replace_uses(*v, Value { node: new, output: 1 + k });
    }
    let removed = [last, pv, p.node, s.node];
    for n in removed[usize::from(last == pv)..].iter().copied().chain(absorbed.into_iter().rev()) {
        g.remove_node(n);
    }
    Ok(Some(Fused { node: name, replaced, keys_per_kv_head: false }))
}

/// Where attention `at` reads Kᵀ as input `i` alone (its Kᵀ program is that input), and input
/// `i` is the one output of a program read nowhere else whose last steps expand grouped-query
/// heads and put the positions last (`[.., H, S, D]` reshaped to `[.., H, 1, S, D]`, expanded
/// to `[.., H, G, S, D]`, reshaped to `[.., H·G, S, D]`, transposed to `[.., H·G, D, S]`):
/// the program ends with the transpose of the `[.., H, S, D]` step instead, and the node's Kᵀ
/// program expands it (`[.., H, 1, D, S]`, `[.., H, G, D, S]`, `[.., H·G, D, S]`). The same
/// values reach the kernel; the program writes `G` times fewer. Returns whether it did.
fn narrow_grouped_keys(g: &mut Graph, at: NodeIndex) -> Result<bool> {
    let Op::Attention(a) = &g.node(at).op else { return Ok(false) };
    let [Step::Input(i)] = a.kt[..] else { return Ok(false) };
    let reads = |steps: &[Step]| steps.iter().any(|s| matches!(s, Step::Input(k) if *k == i));
    if reads(&a.q) || reads(&a.v) || reads(&a.scores) || a.also.iter().any(|s| reads(s)) {
        return Ok(false);
    }
    let k = g.inputs(at)[i];
    let Op::Elementwise(p) = &g.node(k.node).op else { return Ok(false) };
    if !only_read_once(g, k) || !p.also.is_empty() || p.steps.len() < 5 {
        return Ok(false);
    }
    let in_tys: Vec<TensorType> = g.inputs(k.node).iter().map(|&v| g.ty(v).clone()).collect();
    let Ok(tys) = p.step_types(&in_tys.iter().collect::<Vec<_>>()) else { return Ok(false) };
    let n = p.steps.len();
    let base = n - 5;
    let r = tys[base].rank();
    if r < 3 {
        return Ok(false);
    }
    let mut swap: Vec<usize> = (0..r).collect();
    swap.swap(r - 2, r - 1);
    let chained = matches!(
        &p.steps[base + 1..],
        [Step::Reshape { x: a, .. }, Step::Expand { x: b, .. }, Step::Reshape { x: c, .. }, Step::Transpose { perm, x: d }]
            if *a == base && *b == base + 1 && *c == base + 2 && *d == base + 3 && *perm == swap
    );
    let (kv, one, grouped, merged) =
        (&tys[base].shape, &tys[base + 1].shape, &tys[base + 2].shape, &tys[base + 3].shape);
    let lead = &kv[..r - 2];
    let tail = &kv[r - 2..];
    let ones = Dim::Fixed(1);
    let shaped = chained
        && one.len() == r + 1
        && one[..r - 2] == *lead
        && one[r - 2] == ones
        && one[r - 1..] == *tail
        && grouped.len() == r + 1
        && grouped[..r - 2] == *lead
        && grouped[r - 1..] == *tail
        && grouped[r - 2] != ones
        && merged.len() == r
        && merged[..r - 3] == kv[..r - 3]
        && merged[r - 2..] == *tail;
    if !shaped {
        return Ok(false);
    }
    // The same shapes with the last two dims swapped.
    let swapped = |d: &[Dim]| {
        let mut d = d.to_vec();
        let m = d.len();
        d.swap(m - 2, m - 1);
        d
    };
    let exprs = |d: &[Dim]| swapped(d).iter().map(Dim::expr).collect::<Vec<_>>();
    let mut steps = p.steps[..=base].to_vec();
    steps.push(Step::Transpose { perm: swap, x: base });
    let narrow = ElementwiseProgram { steps, also: vec![], replaced: p.replaced.clone() };
    let kt = vec![
        Step::Input(i),
        Step::Reshape { shape: exprs(one), x: 0 },
        Step::Expand { shape: swapped(grouped), x: 1 },
        Step::Reshape { shape: exprs(merged), x: 2 },
    ];
    let Ok(mut narrow_tys) = narrow.step_types(&in_tys.iter().collect::<Vec<_>>()) else { return Ok(false) };
    let narrow_ty = narrow_tys.pop().expect("a program has a step");
    let new_a = Attention { kt, ..a.clone() };
    let mut node_tys: Vec<TensorType> = g.inputs(at).iter().map(|&v| g.ty(v).clone()).collect();
    node_tys[i] = narrow_ty.clone();
    let before = types(a, &g.inputs(at).iter().map(|&v| g.ty(v)).collect::<Vec<_>>());
    let after = types(&new_a, &node_tys.iter().collect::<Vec<_>>());
    if after.is_err() || after.ok().map(|t| t[1].clone()) != before.ok().map(|t| t[1].clone()) {
        return Ok(false);
    }
    g.g[k.node].op = Op::Elementwise(narrow);
    g.g[k.node].outputs[0] = narrow_ty;
    g.g[at].op = Op::Attention(new_a);
    Ok(true)
}
