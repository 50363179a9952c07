//! Elementwise programs ([`ElementwiseProgram`]): a chain of elementwise ops over one output
//! shape held in one node, so that one kernel computes them all. The elementwise fusion pass
//! (glufuse-passes) merges connected unary and binary ops, `Where`s, casts, expands and
//! scalar constants into one.
//!
//! A program is a list of [`Step`]s, each reading the node's inputs, a constant of one element
//! or earlier steps; the last step is the result. Every step's shape broadcasts to the
//! result's (inference checks it), so output element `i` is computed by reading each input at
//! its broadcast index and applying the steps in order: a step of a smaller shape than the
//! result is recomputed for every output element it broadcasts to.
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
use crate::op::Op;
use crate::ops::binary::BinaryOp;
use crate::ops::reduce::ReduceOp;
use crate::ops::source::ConstValues;
use crate::ops::unary::UnaryOp;
use crate::shape::{broadcast, concrete, fmt_shape, Bindings};
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
    /// An f32 or f16 value (as written: rounded to the dtype when read, as a `Constant`'s).
    Float(f64),
    /// An i64 or i32 value.
    Int(i64),
    /// A boolean.
    Bool(bool),
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
}

impl Step {
    /// The steps it reads.
    pub fn args(&self) -> Vec<usize> {
        match self {
            Step::Input(_) | Step::Const { .. } => vec![],
            Step::Unary { x, .. }
            | Step::Cast { x, .. }
            | Step::Expand { x, .. }
            | Step::Reduce { x, .. }
            | Step::Softmax { x } => vec![*x],
            Step::Binary { a, b, .. } => vec![*a, *b],
            Step::Where { cond, x, y } => vec![*cond, *x, *y],
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
        })
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
            | Step::Expand { .. } => false,
        }
    }
}

/// The attributes of an elementwise program node: its steps and the model nodes it replaced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementwiseProgram {
    /// The steps, in order; the last is the result.
    pub steps: Vec<Step>,
    /// Names of the model nodes this node replaced.
    #[serde(default)]
    pub replaced: Vec<String>,
}

impl ElementwiseProgram {
    /// The type of every step, for inputs of types `ins`; checks that operands come before
    /// the steps that read them, every input is read, every step is an op of its operands'
    /// types, and every step's shape broadcasts to the result's.
    pub fn step_types(&self, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let Some(last) = self.steps.last() else { return Err("an elementwise program needs a step".into()) };
        if matches!(last, Step::Input(_) | Step::Const { .. }) {
            return Err("the last step of an elementwise program must compute a value".into());
        }
        let mut tys: Vec<TensorType> = Vec::with_capacity(self.steps.len());
        let mut read = vec![false; ins.len()];
        for (i, s) in self.steps.iter().enumerate() {
            let ty = match s {
                Step::Input(k) => {
                    let t = ins.get(*k).ok_or_else(|| format!("step {i} reads input {k} of {}", ins.len()))?;
                    read[*k] = true;
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
        if let Some(k) = read.iter().position(|r| !r) {
            return Err(format!("input {k} is not read by any step"));
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
        for (i, t) in tys.iter().enumerate() {
            if broadcast(&t.shape, out).ok().as_ref() != Some(out) {
                return Err(format!(
                    "step {i} has shape {}, which does not broadcast to the result's {}",
                    fmt_shape(&t.shape),
                    fmt_shape(out)
                ));
            }
        }
        Ok(tys)
    }
}

/// Type of a program's output: its last step's.
pub(crate) fn infer(p: &ElementwiseProgram, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    let mut tys = p.step_types(ins)?;
    Ok(vec![tys.pop().expect("a program has a step")])
}

/// Evaluates a program step by step, each as the op it stands for (an expand to its shape
/// under the binding `b`).
pub(crate) fn eval(
    p: &ElementwiseProgram,
    ins: &[&Tensor],
    shapes: &[Vec<usize>],
    b: &Bindings,
) -> Result<Vec<Tensor>, String> {
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
    let result = vals.pop().expect("a program has a step").into_owned();
    if result.shape() != shapes[0].as_slice() {
        return Err(format!(
            "the program computed shape {:?} for an output of shape {:?} (a glufuse bug)",
            result.shape(),
            shapes[0]
        ));
    }
    Ok(vec![result])
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
    let mut names = vec![String::new(); p.steps.len()];
    let mut parts = vec![];
    for (i, s) in p.steps.iter().enumerate() {
        let Some(op) = s.op().filter(|_| !matches!(s, Step::Const { .. })) else { continue };
        names[i] = format!("t{}", parts.len());
        let args: Vec<String> = s.args().iter().map(|&a| operand(p, &names, a)).collect();
        parts.push(format!("{} = {} {}", names[i], op.label(), args.join(", ")));
    }
    format!("{NAME}({})", parts.join("; "))
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
        let p = ElementwiseProgram { steps: vec![Step::Input(0)], replaced: vec![] };
        assert!(infer(&p, &[&x]).unwrap_err().contains("must compute a value"));
        // A step wider than the result: its values could not be computed per output element.
        let p = ElementwiseProgram {
            steps: vec![
                Step::Input(0),
                Step::Input(1),
                Step::Binary { op: BinaryOp::Add, a: 0, b: 1 },
                Step::Cast { to: DType::F16, x: 0 },
            ],
            replaced: vec![],
        };
        let e = infer(&p, &[&f32t(&[3]), &f32t(&[2, 3])]).unwrap_err();
        assert_eq!(e, "step 1 has shape [2,3], which does not broadcast to the result's [3]");
        let p =
            ElementwiseProgram { steps: vec![Step::Input(0), Step::Cast { to: DType::F16, x: 0 }], replaced: vec![] };
        assert_eq!(infer(&p, &[&x, &x]).unwrap_err(), "input 1 is not read by any step");
    }
}
