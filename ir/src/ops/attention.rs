//! Fused attention ([`Attention`]): `P·V` where `P` is a row program (a softmax with its scale,
//! mask or soft cap) of the scores `Q·Kᵀ`, in one node, so that one kernel computes a head's
//! scores, their softmax and its weighted sum of values without writing either. What the
//! attention fusion pass (glufuse-passes) makes of two batched products and the elementwise
//! program between them.
//!
//! Q, Kᵀ and V are programs too, over the node's inputs: the transposes, head views and
//! grouped-query expands an export puts between a KV cache and its products are reads at moved
//! coordinates, not copies. The scores program reads the node's inputs and, as input `n` (one
//! past them), the scores.
//!
//! The node may also compute further outputs (`also`): float programs without row steps over
//! its inputs, output `1 + k` being `also[k]`'s value. A KV-cache step's present keys and
//! values are such: the past cache with the new (rotated) keys appended, which the graph
//! outputs and the attention reads. The attention then reads K and V through the same steps
//! (the past cache and the new keys where they are), and extra workgroups of its kernel write
//! the present outputs: one launch instead of two.
//!
//! Evaluation runs each program and product as the ops they replaced (two `MatMul`s and the
//! programs' steps), so the node computes bit for bit what those nodes computed.

use super::elementwise::{run, steps_text, ElementwiseProgram, Step};
use super::{read_attrs, to_json, Attrs};
use crate::op::Op;
use crate::shape::{concrete, Bindings};
use crate::tensor::Tensor;
use crate::types::{Dim, TensorType};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

/// The name of [`Op::Attention`].
pub const NAME: &str = "Attention";

/// The attributes of a fused attention node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attention {
    /// Q `[.., N, D]`.
    pub q: Vec<Step>,
    /// Kᵀ `[.., D, T]`.
    pub kt: Vec<Step>,
    /// V `[.., T, E]`.
    pub v: Vec<Step>,
    /// P `[.., N, T]` from the node's inputs and the scores (input `n`); it has a row step.
    pub scores: Vec<Step>,
    /// The output's axes permuted (`out.shape[i] = (P·V).shape[perm[i]]`; empty: as it is):
    /// the heads transposed back next to each other as the output projection reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub out_perm: Vec<usize>,
    /// Programs of the node's further outputs (output `1 + k` is `also[k]`'s last step): float
    /// programs without row steps over the node's inputs (see the module documentation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Vec<Step>>,
    /// Names of the model nodes this node replaced.
    #[serde(default)]
    pub replaced: Vec<String>,
}

/// The types of Q, Kᵀ, V, the scores, P and the output (permuted), for inputs of types `ins`.
pub fn types(a: &Attention, ins: &[&TensorType]) -> Result<[TensorType; 6], String> {
    let last = |steps: &[Step], what: &str, ins: &[&TensorType]| -> Result<TensorType, String> {
        let p = ElementwiseProgram { steps: steps.to_vec(), also: vec![], replaced: vec![] };
        let mut t = p.step_types(ins).map_err(|e| format!("{what}: {e}"))?;
        Ok(t.pop().expect("a program has a step"))
    };
    let (q, kt, v) = (last(&a.q, "q", ins)?, last(&a.kt, "kt", ins)?, last(&a.v, "v", ins)?);
    let r = q.rank();
    if r < 2
        || kt.rank() != r
        || v.rank() != r
        || q.shape[..r - 2] != kt.shape[..r - 2]
        || v.shape[..r - 2] != q.shape[..r - 2]
    {
        return Err(format!("q {q}, kt {kt} and v {v} must be of one rank (2 or more) and share their batch dims"));
    }
    let s = Op::MatMul.infer(&[&q, &kt], &[]).map_err(|e| format!("q·kt: {e}"))?.remove(0);
    let mut with_s: Vec<&TensorType> = ins.to_vec();
    with_s.push(&s);
    let p = last(&a.scores, "scores", &with_s)?;
    if p.shape != s.shape || !a.scores.iter().any(Step::is_row) {
        return Err(format!("the scores program gives {p} for scores {s}: it must be a row program of their shape"));
    }
    // A kernel computes each score where the scores program reads it: never moved.
    let mut from_s = vec![false; a.scores.len()];
    for (i, st) in a.scores.iter().enumerate() {
        from_s[i] = *st == Step::Input(ins.len()) || st.args().iter().any(|&x| from_s[x]);
        if from_s[i] && st.is_layout() {
            return Err(format!("scores step {i} moves the scores"));
        }
    }
    let mut o = Op::MatMul.infer(&[&p, &v], &[]).map_err(|e| format!("p·v: {e}"))?.remove(0);
    if !a.out_perm.is_empty() {
        let t = Op::Transpose { perm: a.out_perm.clone() };
        o = t.infer(&[&o], &[]).map_err(|e| format!("out_perm: {e}"))?.remove(0);
    }
    for (k, steps) in a.also.iter().enumerate() {
        let p = ElementwiseProgram { steps: steps.clone(), also: vec![], replaced: vec![] };
        let tys = p.step_types(ins).map_err(|e| format!("also {k}: {e}"))?;
        if steps.iter().any(Step::is_row) || !tys.iter().all(|t| t.dtype.is_float()) {
            return Err(format!("also {k}: a program of the attention's outputs is a float program without row steps"));
        }
    }
    for k in 0..ins.len() {
        let read = |steps: &[Step]| steps.contains(&Step::Input(k));
        if !(read(&a.q) || read(&a.kt) || read(&a.v) || read(&a.scores) || a.also.iter().any(|s| read(s))) {
            return Err(format!("input {k} is not read"));
        }
    }
    Ok([q, kt, v, s, p, o])
}

/// Types of the outputs: `P·V`, then each of `also`'s programs'.
pub(crate) fn infer(a: &Attention, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let [.., o] = types(a, ins)?;
    let mut outs = vec![o];
    for steps in &a.also {
        let p = ElementwiseProgram { steps: steps.clone(), also: vec![], replaced: vec![] };
        let mut t = p.step_types(ins)?;
        outs.push(t.pop().expect("a program has a step"));
    }
    Ok(outs)
}

/// Evaluates the programs and the two products as the ops they stand for.
pub(crate) fn eval(a: &Attention, ins: &[&Tensor], b: &Bindings) -> Result<Vec<Tensor>, String> {
    let mm = |x: &Tensor, y: &Tensor| -> Result<Tensor, String> {
        let ty = |t: &Tensor| TensorType::new(t.dtype(), t.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect());
        let out = Op::MatMul.infer(&[&ty(x), &ty(y)], &[])?;
        let shapes = vec![concrete(&out[0].shape, b)?];
        Ok(Op::MatMul.eval(&[x, y], &out, &shapes, b)?.remove(0))
    };
    let (q, kt, v) = (run(&a.q, ins, b)?, run(&a.kt, ins, b)?, run(&a.v, ins, b)?);
    let s = mm(&q, &kt)?;
    let mut with_s: Vec<&Tensor> = ins.to_vec();
    with_s.push(&s);
    let p = run(&a.scores, &with_s, b)?;
    let o = mm(&p, &v)?;
    let o = if a.out_perm.is_empty() { o } else { super::layout::transpose(&o, &a.out_perm) };
    let mut outs = vec![o];
    for steps in &a.also {
        outs.push(run(steps, ins, b)?);
    }
    Ok(outs)
}

/// Dump label: each program as an elementwise one shows it, the scores as `S`
/// (`Attention(q: in0; kt: t0 = Transpose(..) in1; v: in2; p: t0 = Mul S, 0.125; ..)`).
pub(crate) fn label(a: &Attention) -> String {
    let text =
        |steps: &[Step]| steps_text(&ElementwiseProgram { steps: steps.to_vec(), also: vec![], replaced: vec![] });
    // The scores are the input one past the node's, the highest any program reads.
    let all = a.q.iter().chain(&a.kt).chain(&a.v).chain(&a.scores);
    let n = all.filter_map(|s| if let Step::Input(k) = s { Some(*k) } else { None }).max().unwrap_or(0);
    let name = format!("in{n}");
    let raw = text(&a.scores);
    let mut scores = String::new();
    let mut rest = raw.as_str();
    while let Some(at) = rest.find(&name) {
        let after = &rest[at + name.len()..];
        let whole = !after.starts_with(|c: char| c.is_ascii_digit())
            && !rest[..at].ends_with(|c: char| c.is_ascii_alphanumeric());
        scores.push_str(&rest[..at]);
        scores.push_str(if whole { "S" } else { &name });
        rest = after;
    }
    scores.push_str(rest);
    let perm = if a.out_perm.is_empty() { String::new() } else { format!("; out: Transpose(perm={:?})", a.out_perm) };
    let also: String = a.also.iter().enumerate().map(|(k, st)| format!("; out{}: {}", k + 1, text(st))).collect();
    format!("{NAME}(q: {}; kt: {}; v: {}; p: {scores}{perm}{also})", text(&a.q), text(&a.kt), text(&a.v))
}

/// JSON attributes: `q`, `kt`, `v`, `scores`, `out_perm` and `also` where not empty, `replaced`.
pub(crate) fn write_attrs(a: &Attention, m: &mut Attrs) {
    if let J::Object(o) = to_json(a) {
        m.extend(o);
    }
}

/// Reads a fused attention from its JSON attributes; `None` for another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    (name == NAME).then(|| read_attrs::<Attention>(name, a).map(Op::Attention))
}
