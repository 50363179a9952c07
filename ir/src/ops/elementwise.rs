//! Elementwise programs ([`ElementwiseProgram`]): a chain of elementwise ops over one output
//! shape held in one node, so that one kernel computes them all. The elementwise fusion pass
//! (glufuse-passes) merges connected unary and binary ops, `Where`s, casts, expands and
//! scalar constants into one.
//!
//! A program is a list of [`Step`]s, each reading the node's inputs, a constant of one element
//! or earlier steps; the last step is the result. A kernel computes each output element from
//! its coordinates: an elementwise step at some coordinates reads its operands at the same
//! coordinates broadcast to their shapes (so a step of a smaller shape than its reader is
//! recomputed for every element it broadcasts to), a layout step (transpose, slice, concat,
//! reshape) reads them at the coordinates it moves the element from, and an input is read at
//! the coordinates it is asked for.
//!
//! Row steps (a reduction over the last axis, kept; a softmax along it) reduce an operand of
//! the result's shape row by row: a kernel runs one workgroup per row of the result, which
//! walks the row once per reduction it needs (an RMS norm's mean; a softmax's maximum and
//! sum) and once more to write it.
//!
//! Evaluation runs each step as the op it stands for, in order (the same code as the nodes it
//! replaced, f16 rounding exactly where a cast to f16 rounds), so a program computes bit for
//! bit what those nodes computed.

use super::{read_attrs, to_json, Attrs};
use crate::dim::DimExpr;
use crate::op::Op;
use crate::ops::binary::BinaryOp;
use crate::ops::reduce::ReduceOp;
use crate::ops::source::ConstValues;
use crate::ops::unary::UnaryOp;
use crate::shape::{concrete, fmt_shape, Bindings};
use crate::tensor::Tensor;
use crate::types::{DType, Dim, TensorType};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;
use std::borrow::Cow;

/// The name of [`Op::Elementwise`].
pub const NAME: &str = "Elementwise";

/// The value of a constant of one element, in its dtype's kind.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scalar {
    /// An f32 or f16 value (as written: rounded to the dtype when read, as a `Constant`'s);
    /// in JSON a number, or `"inf"`, `"-inf"` or `"nan"` (a mask's `-inf`).
    Float(#[serde(with = "json_float")] f64),
    /// An i64 or i32 value.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

/// Serde for [`Scalar::Float`]: a number, or for the values JSON has no number for, the
/// strings of [`super::source::float_to_json`] (serde_json writes them as `null`, which
/// reads back as nothing).
mod json_float {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        super::super::source::float_to_json(*x).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        super::super::source::float_from_json(&v)
            .ok_or_else(|| D::Error::custom(format!("expected a number, \"inf\", \"-inf\" or \"nan\", got {v}")))
    }
}

/// One step of a program. Operands are earlier steps, by index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Input `k` of the node.
    Input(usize),
    /// A constant of one element (its shape kept: `[1, 1]` broadcasts as `[]` does not).
    Const {
        /// Its dtype.
        dtype: DType,
        /// Its shape (every dim 1).
        shape: Vec<u64>,
        /// Its value.
        value: Scalar,
    },
    /// A unary op.
    Unary {
        /// Which.
        op: UnaryOp,
        /// Operand.
        x: usize,
    },
    /// A binary op (numpy broadcasting).
    Binary {
        /// Which.
        op: BinaryOp,
        /// Left operand.
        a: usize,
        /// Right operand.
        b: usize,
    },
    /// `cond ? x : y`.
    Where {
        /// The condition (bool).
        cond: usize,
        /// Taken where the condition holds.
        x: usize,
        /// Taken elsewhere.
        y: usize,
    },
    /// A conversion to another dtype.
    Cast {
        /// Target dtype.
        to: DType,
        /// Operand.
        x: usize,
    },
    /// A broadcast to a shape (the identity on the values: the kernel broadcasts every
    /// read to the result's shape anyway).
    Expand {
        /// The shape broadcast to.
        shape: Vec<Dim>,
        /// Operand.
        x: usize,
    },
    /// A reduction of a float operand over its last axis, keeping it (size 1): a row step.
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// Operand, of the result's shape.
        x: usize,
    },
    /// A softmax of a float operand along its last axis: a row step.
    Softmax {
        /// Operand, of the result's shape.
        x: usize,
    },
    /// An axis permutation: a read of the operand at permuted coordinates.
    Transpose {
        /// `out.shape[i] = in.shape[perm[i]]`.
        perm: Vec<usize>,
        /// Operand.
        x: usize,
    },
    /// Every `step`-th element of one axis from `start`: a read at shifted coordinates.
    Slice {
        /// Axis (negative counts from the end).
        axis: i64,
        /// First index read.
        start: Dim,
        /// Elements taken.
        len: Dim,
        /// Distance between the indices read (not zero).
        step: i64,
        /// Operand.
        x: usize,
    },
    /// The operands joined along one axis: each output element is read from the operand
    /// whose part of the axis it lies in.
    Concat {
        /// Axis (negative counts from the end).
        axis: i64,
        /// Operands, in order.
        xs: Vec<usize>,
    },
    /// The operand's elements, row-major, in another shape (ONNX rules: `0` copies a dim,
    /// `-1` is inferred).
    Reshape {
        /// Target shape.
        #[serde(with = "expr_list")]
        shape: Vec<DimExpr>,
        /// Operand.
        x: usize,
    },
    /// `start, start + delta, ..` up to `limit` (excluded), as [`Op::Range`]: a 1-D integer
    /// value computed from its coordinate, reading no other step.
    Range {
        /// First value.
        #[serde(with = "expr_one")]
        start: DimExpr,
        /// Bound, excluded.
        #[serde(with = "expr_one")]
        limit: DimExpr,
        /// Step (not zero).
        delta: i64,
        /// Element type (i64 or i32).
        dtype: DType,
    },
}

impl Step {
    /// The step computing `op` where it reads no operand and is one a program holds (a
    /// `Range`); `None` for any other op.
    pub fn source(op: &Op) -> Option<Step> {
        match op {
            Op::Range { start, limit, delta, dtype } => {
                Some(Step::Range { start: start.clone(), limit: limit.clone(), delta: *delta, dtype: *dtype })
            }
            _ => None,
        }
    }

    /// The steps it reads.
    pub fn args(&self) -> Vec<usize> {
        match self {
            Step::Input(_) | Step::Const { .. } | Step::Range { .. } => vec![],
            Step::Unary { x, .. }
            | Step::Cast { x, .. }
            | Step::Expand { x, .. }
            | Step::Reduce { x, .. }
            | Step::Softmax { x }
            | Step::Transpose { x, .. }
            | Step::Slice { x, .. }
            | Step::Reshape { x, .. } => vec![*x],
            Step::Concat { xs, .. } => xs.clone(),
            Step::Binary { a, b, .. } => vec![*a, *b],
            Step::Where { cond, x, y } => vec![*cond, *x, *y],
        }
    }

    /// Sets the steps it reads to `args`, in the order [`Step::args`] gives them.
    pub fn set_args(&mut self, args: &[usize]) {
        match self {
            Step::Input(_) | Step::Const { .. } | Step::Range { .. } => {}
            Step::Unary { x, .. }
            | Step::Cast { x, .. }
            | Step::Expand { x, .. }
            | Step::Reduce { x, .. }
            | Step::Softmax { x }
            | Step::Transpose { x, .. }
            | Step::Slice { x, .. }
            | Step::Reshape { x, .. } => *x = args[0],
            Step::Binary { a, b, .. } => (*a, *b) = (args[0], args[1]),
            Step::Where { cond, x, y } => (*cond, *x, *y) = (args[0], args[1], args[2]),
            Step::Concat { xs, .. } => *xs = args.to_vec(),
        }
    }

    /// The op this step computes (`None` for an input).
    pub fn op(&self) -> Option<Op> {
        Some(match self {
            Step::Input(_) => return None,
            Step::Const { value, .. } => Op::Constant(match *value {
                Scalar::Float(x) => ConstValues::Float(vec![x]),
                Scalar::Int(x) => ConstValues::Int(vec![x]),
                Scalar::Bool(x) => ConstValues::Bool(vec![x]),
            }),
            Step::Unary { op, .. } => Op::Unary(*op),
            Step::Binary { op, .. } => Op::Binary(*op),
            Step::Where { .. } => Op::Where,
            Step::Cast { to, .. } => Op::Cast { to: *to },
            Step::Expand { shape, .. } => Op::Expand { shape: shape.clone() },
            Step::Reduce { op, .. } => Op::Reduce { op: *op, axes: vec![-1], keepdims: true },
            Step::Softmax { .. } => Op::Softmax { axis: -1 },
            Step::Transpose { perm, .. } => Op::Transpose { perm: perm.clone() },
            Step::Slice { axis, start, len, step, .. } => {
                Op::Slice { axis: *axis, start: start.clone(), len: len.clone(), step: *step }
            }
            Step::Concat { axis, .. } => Op::Concat { axis: *axis },
            Step::Reshape { shape, .. } => Op::Reshape { shape: shape.clone() },
            Step::Range { start, limit, delta, dtype } => {
                Op::Range { start: start.clone(), limit: limit.clone(), delta: *delta, dtype: *dtype }
            }
        })
    }

    /// Whether it moves elements (a transpose, slice, concat or reshape): its operands are
    /// read at other coordinates than its own.
    pub fn is_layout(&self) -> bool {
        match self {
            Step::Transpose { .. } | Step::Slice { .. } | Step::Concat { .. } | Step::Reshape { .. } => true,
            Step::Input(_)
            | Step::Const { .. }
            | Step::Unary { .. }
            | Step::Binary { .. }
            | Step::Where { .. }
            | Step::Cast { .. }
            | Step::Expand { .. }
            | Step::Reduce { .. }
            | Step::Softmax { .. }
            | Step::Range { .. } => false,
        }
    }

    /// Whether it reduces along rows (a reduction or a softmax): a program with one runs a
    /// workgroup per row of its result.
    pub fn is_row(&self) -> bool {
        match self {
            Step::Reduce { .. } | Step::Softmax { .. } => true,
            Step::Input(_)
            | Step::Const { .. }
            | Step::Unary { .. }
            | Step::Binary { .. }
            | Step::Where { .. }
            | Step::Cast { .. }
            | Step::Expand { .. }
            | Step::Transpose { .. }
            | Step::Slice { .. }
            | Step::Concat { .. }
            | Step::Reshape { .. }
            | Step::Range { .. } => false,
        }
    }
}

/// A dim expression in JSON as a range writes it: an integer, or an expression text.
mod expr_one {
    use crate::dim::DimExpr;
    use crate::ops::source::{expr_from_json, expr_json};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value as J;

    pub fn serialize<S: Serializer>(v: &DimExpr, s: S) -> Result<S::Ok, S::Error> {
        expr_json(v).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DimExpr, D::Error> {
        expr_from_json(&J::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Dim expressions in JSON as a reshape writes them: integers, or expression texts.
mod expr_list {
    use crate::dim::DimExpr;
    use crate::ops::source::{expr_from_json, expr_json};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value as J;

    pub fn serialize<S: Serializer>(v: &[DimExpr], s: S) -> Result<S::Ok, S::Error> {
        v.iter().map(expr_json).collect::<Vec<J>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DimExpr>, D::Error> {
        Vec::<J>::deserialize(d)?.iter().map(|v| expr_from_json(v).map_err(serde::de::Error::custom)).collect()
    }
}

/// The attributes of an elementwise program node: its steps and the model nodes it replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementwiseProgram {
    /// The steps, in order; the last is the result.
    pub steps: Vec<Step>,
    /// Steps also written as outputs (output `k + 1` is step `also[k]`), each of the result's
    /// shape: values read outside the node too (a residual sum that a norm also reads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<usize>,
    /// Names of the model nodes this node replaced.
    #[serde(default)]
    pub replaced: Vec<String>,
}

impl ElementwiseProgram {
    /// The type of every step, for inputs of types `ins`; checks that operands come before
    /// the steps that read them, every input is read, every step is an op of its operands'
    /// types, and every step's shape broadcasts to the result's.
    pub fn step_types(&self, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        if self.steps.is_empty() {
            return Err("a program needs a step".into());
        }
        let mut tys: Vec<TensorType> = Vec::with_capacity(self.steps.len());
        for (i, s) in self.steps.iter().enumerate() {
            let ty = match s {
                Step::Input(k) => {
                    let t = ins.get(*k).ok_or_else(|| format!("step {i} reads input {k} of {}", ins.len()))?;
                    (*t).clone()
                }
                Step::Const { dtype, shape, .. } => {
                    if shape.iter().any(|&d| d != 1) {
                        return Err(format!("step {i}: a constant step holds one element, not {shape:?}"));
                    }
                    let declared = TensorType::new(*dtype, shape.iter().map(|&d| Dim::Fixed(d)).collect());
                    let op = s.op().expect("a constant is an op");
                    op.infer(&[], &[declared]).map_err(|e| format!("step {i}: {e}"))?.remove(0)
                }
                _ => {
                    let args = s.args();
                    if let Some(a) = args.iter().find(|&&a| a >= i) {
                        return Err(format!("step {i} reads step {a}, which does not come before it"));
                    }
                    let at: Vec<&TensorType> = args.iter().map(|&a| &tys[a]).collect();
                    let op = s.op().expect("not an input");
                    op.infer(&at, &[]).map_err(|e| format!("step {i} ({}): {e}", op.name()))?.remove(0)
                }
            };
            tys.push(ty);
        }
        let out = &tys[tys.len() - 1].shape;
        // A row step reduces rows of the result: its operand has the result's shape.
        for (i, s) in self.steps.iter().enumerate().filter(|(_, s)| s.is_row()) {
            let x = &tys[s.args()[0]];
            if !x.dtype.is_float() || x.rank() == 0 || x.shape != *out {
                return Err(format!(
                    "step {i} reduces rows of {x}, not floats of the result's shape {}",
                    fmt_shape(out)
                ));
            }
        }
        // What reads a row step must read it in the same row: through elementwise steps only.
        let mut after_row = vec![false; self.steps.len()];
        for (i, s) in self.steps.iter().enumerate() {
            let reads_row = s.args().iter().any(|&a| after_row[a] || self.steps[a].is_row());
            if reads_row && s.is_layout() {
                return Err(format!("step {i} moves elements computed from a row step"));
            }
            after_row[i] = reads_row;
        }
        Ok(tys)
    }
}

/// Type of a program's output: its last step's, which computes a value; every input read.
pub(crate) fn infer(p: &ElementwiseProgram, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    if matches!(p.steps.last(), Some(Step::Input(_) | Step::Const { .. })) {
        return Err("the last step of an elementwise program must compute a value".into());
    }
    let tys = p.step_types(ins)?;
    if let Some(k) = (0..ins.len()).find(|k| !p.steps.contains(&Step::Input(*k))) {
        return Err(format!("input {k} is not read by any step"));
    }
    let result = tys.last().expect("a program has a step").clone();
    let mut out = vec![result.clone()];
    for &k in &p.also {
        let t = tys.get(k).ok_or_else(|| format!("output step {k} of {}", tys.len()))?;
        if t.shape != result.shape || matches!(p.steps[k], Step::Input(_) | Step::Const { .. }) {
            return Err(format!("output step {k} is {t}, not a value computed in the result's shape"));
        }
        out.push(t.clone());
    }
    Ok(out)
}

/// Evaluates a program step by step, each as the op it stands for (an expand to its shape
/// under the binding `b`).
pub(crate) fn eval(
    p: &ElementwiseProgram,
    ins: &[&Tensor],
    shapes: &[Vec<usize>],
    b: &Bindings,
) -> Result<Vec<Tensor>, String> {
    let mut vals = run_all(&p.steps, ins, b)?;
    let mut outs = vec![vals.pop().ok_or("a program needs a step")?.into_owned()];
    for &k in &p.also {
        outs.push(vals[k].clone().into_owned());
    }
    if outs[0].shape() != shapes[0].as_slice() {
        return Err(format!(
            "the program computed shape {:?} for an output of shape {:?} (a glufuse bug)",
            outs[0].shape(),
            shapes[0]
        ));
    }
    Ok(outs)
}

/// The value of the last of `steps` on inputs `ins`, each step evaluated as its op.
pub(crate) fn run(steps: &[Step], ins: &[&Tensor], b: &Bindings) -> Result<Tensor, String> {
    Ok(run_all(steps, ins, b)?.pop().ok_or("a program needs a step")?.into_owned())
}

/// The value of every one of `steps` on inputs `ins`.
fn run_all<'a>(steps: &[Step], ins: &[&'a Tensor], b: &Bindings) -> Result<Vec<Cow<'a, Tensor>>, String> {
    let p = ElementwiseProgram { steps: steps.to_vec(), also: vec![], replaced: vec![] };
    let mut vals: Vec<Cow<Tensor>> = Vec::with_capacity(p.steps.len());
    for s in &p.steps {
        let v = match s {
            Step::Input(k) => Cow::Borrowed(ins[*k]),
            _ => {
                let op = match s {
                    // Sizes under the binding, so that inference on concrete operands holds.
                    Step::Expand { shape, .. } => {
                        let dims = concrete(shape, b)?;
                        Op::Expand { shape: dims.iter().map(|&d| Dim::Fixed(d as u64)).collect() }
                    }
                    Step::Slice { axis, start, len, step, .. } => Op::Slice {
                        axis: *axis,
                        start: Dim::Fixed(start.eval(b)? as u64),
                        len: Dim::Fixed(len.eval(b)? as u64),
                        step: *step,
                    },
                    Step::Reshape { shape, .. } => {
                        let lookup = |name: &str| b.get(name).map(|&v| v as i64);
                        let shape = shape.iter().map(|e| e.eval(&lookup).map(DimExpr::constant)).collect::<Result<
                            Vec<_>,
                            String,
                        >>(
                        )?;
                        Op::Reshape { shape }
                    }
                    _ => s.op().expect("not an input"),
                };
                let args: Vec<&Tensor> = s.args().iter().map(|&a| vals[a].as_ref()).collect();
                let tys: Vec<TensorType> = args
                    .iter()
                    .map(|t| TensorType::new(t.dtype(), t.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect()))
                    .collect();
                let declared = match s {
                    Step::Const { dtype, shape, .. } => {
                        vec![TensorType::new(*dtype, shape.iter().map(|&d| Dim::Fixed(d)).collect())]
                    }
                    _ => vec![],
                };
                let refs: Vec<&TensorType> = tys.iter().collect();
                let out = op.infer(&refs, &declared)?;
                let out_shapes: Vec<Vec<usize>> =
                    out.iter().map(|t| concrete(&t.shape, b)).collect::<Result<_, String>>()?;
                Cow::Owned(op.eval(&args, &out, &out_shapes, b)?.remove(0))
            }
        };
        vals.push(v);
    }
    Ok(vals)
}

/// How a label shows step `k`'s value: `inK` for an input, the value of a constant, `tN` for
/// the N-th computed step.
fn operand(p: &ElementwiseProgram, names: &[String], k: usize) -> String {
    match &p.steps[k] {
        Step::Input(i) => format!("in{i}"),
        Step::Const { value, .. } => match value {
            Scalar::Float(x) => format!("{x:?}"),
            Scalar::Int(x) => format!("{x}"),
            Scalar::Bool(x) => format!("{x}"),
        },
        _ => names[k].clone(),
    }
}

/// Dump label: every computed step as `tN = Op operands`, inputs as `inK`, constants by
/// value; the last step is the result (`Elementwise(t0 = Add in1, 1e-6; t1 = Sqrt t0)`).
pub(crate) fn label(p: &ElementwiseProgram) -> String {
    format!("{NAME}({})", steps_text(p))
}

/// The steps as a label shows them (`t0 = Add in1, 1e-6; t1 = Sqrt t0`; a program that only
/// reads an input, `inK`).
pub(crate) fn steps_text(p: &ElementwiseProgram) -> String {
    let mut names = vec![String::new(); p.steps.len()];
    let mut parts = vec![];
    for (i, s) in p.steps.iter().enumerate() {
        let Some(op) = s.op().filter(|_| !matches!(s, Step::Const { .. })) else { continue };
        names[i] = format!("t{}", parts.len());
        let args: Vec<String> = s.args().iter().map(|&a| operand(p, &names, a)).collect();
        parts.push(format!("{} = {} {}", names[i], op.label(), args.join(", ")));
    }
    match p.steps.last() {
        Some(Step::Input(_) | Step::Const { .. }) if parts.is_empty() => operand(p, &names, p.steps.len() - 1),
        _ if p.also.is_empty() => parts.join("; "),
        _ => {
            let also: Vec<String> = p.also.iter().map(|&k| operand(p, &names, k)).collect();
            format!("{}; also {}", parts.join("; "), also.join(", "))
        }
    }
}

/// JSON attributes: `steps`, `replaced`.
pub(crate) fn write_attrs(p: &ElementwiseProgram, m: &mut Attrs) {
    if let J::Object(o) = to_json(p) {
        m.extend(o);
    }
}

/// Reads an elementwise program from its JSON attributes; `None` for another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    (name == NAME).then(|| read_attrs::<ElementwiseProgram>(name, a).map(Op::Elementwise))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape_of;

    fn f32t(shape: &[u64]) -> TensorType {
        TensorType::new(DType::F32, shape_of(shape))
    }

    /// `in2 * (in0 * 1/sqrt(in1 + 1e-6))`: an RMS norm's tail.
    fn norm_tail() -> ElementwiseProgram {
        ElementwiseProgram {
            steps: vec![
                Step::Input(0),
                Step::Input(1),
                Step::Const { dtype: DType::F32, shape: vec![], value: Scalar::Float(1e-6) },
                Step::Binary { op: BinaryOp::Add, a: 1, b: 2 },
                Step::Unary { op: UnaryOp::Sqrt, x: 3 },
                Step::Unary { op: UnaryOp::Reciprocal, x: 4 },
                Step::Binary { op: BinaryOp::Mul, a: 0, b: 5 },
                Step::Input(2),
                Step::Binary { op: BinaryOp::Mul, a: 7, b: 6 },
            ],
            also: vec![],
            replaced: vec![],
        }
    }

    #[test]
    fn infers_labels_evaluates_and_reads_back() {
        let p = norm_tail();
        let (x, m, w) = (f32t(&[2, 3]), f32t(&[2, 1]), f32t(&[3]));
        let out = infer(&p, &[&x, &m, &w]).unwrap();
        assert_eq!(out, vec![f32t(&[2, 3])]);
        assert_eq!(
            label(&p),
            "Elementwise(t0 = Add in1, 1e-6; t1 = Sqrt t0; t2 = Reciprocal t1; t3 = Mul in0, t2; t4 = Mul in2, t3)"
        );
        let xs = Tensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]).unwrap();
        let ms = Tensor::new(vec![2, 1], vec![4., 16.]).unwrap();
        let ws = Tensor::new(vec![3], vec![1., 10., 100.]).unwrap();
        let got = eval(&p, &[&xs, &ms, &ws], &[vec![2, 3]], &Bindings::new()).unwrap().remove(0);
        let r0 = 1.0 / (4.0f32 + 1e-6).sqrt();
        let r1 = 1.0 / (16.0f32 + 1e-6).sqrt();
        let want = [1. * r0, 10. * (2. * r0), 100. * (3. * r0), 4. * r1, 10. * (5. * r1), 100. * (6. * r1)];
        assert_eq!(got.as_f32().unwrap(), &want);
        let mut m = Attrs::new();
        write_attrs(&p, &mut m);
        assert_eq!(from_json(NAME, &mut m), Some(Ok(Op::Elementwise(p))));
    }

    #[test]
    fn refuses_bad_programs() {
        let x = f32t(&[2, 3]);
        let mut p = norm_tail();
        p.steps[3] = Step::Binary { op: BinaryOp::Add, a: 1, b: 4 };
        assert_eq!(infer(&p, &[&x, &x, &x]).unwrap_err(), "step 3 reads step 4, which does not come before it");
        let p = ElementwiseProgram { steps: vec![Step::Input(0)], also: vec![], replaced: vec![] };
        assert!(infer(&p, &[&x]).unwrap_err().contains("must compute a value"));
        // A row's maximum moved to another row: a kernel reduces each row once, in its row.
        let p = ElementwiseProgram {
            steps: vec![
                Step::Input(0),
                Step::Reduce { op: ReduceOp::Max, x: 0 },
                Step::Transpose { perm: vec![1, 0], x: 1 },
                Step::Binary { op: BinaryOp::Sub, a: 0, b: 2 },
            ],
            also: vec![],
            replaced: vec![],
        };
        assert_eq!(infer(&p, &[&f32t(&[3, 3])]).unwrap_err(), "step 2 moves elements computed from a row step");
        let p = ElementwiseProgram {
            steps: vec![Step::Input(0), Step::Reduce { op: ReduceOp::Sum, x: 0 }],
            also: vec![],
            replaced: vec![],
        };
        let e = infer(&p, &[&f32t(&[2, 3])]).unwrap_err();
        assert_eq!(e, "step 1 reduces rows of f32[2,3], not floats of the result's shape [2,1]");
        let p = ElementwiseProgram {
            steps: vec![Step::Input(0), Step::Cast { to: DType::F16, x: 0 }],
            also: vec![],
            replaced: vec![],
        };
        assert_eq!(infer(&p, &[&x, &x]).unwrap_err(), "input 1 is not read by any step");
    }
}
