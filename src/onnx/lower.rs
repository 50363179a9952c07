//! ONNX nodes as IR ops: [`lower`] turns one node into a short list of [`Step`]s (one IR op
//! each, usually a single one; `Gemm`, multi-axis `Slice`, variadic `Max` and `Clip` take
//! several), with the attributes ONNX passes as tensors (shapes, axes, bounds) read from
//! values known at load time, symbolic ones included. The loader then folds each step whose
//! inputs are all known, and builds the rest into the graph.
//!
//! An input that must be known (a `Reshape` target, `Slice` bounds, a `Range` limit) but is
//! computed from tensor data at run time is an error: the output's shape would depend on
//! data, which glufuse does not model. An op not listed here returns `None` and stays opaque.

use super::known::{KVals, Known};
use super::proto;
use crate::ir::*;
use std::collections::HashMap;

mod activations;
mod contrib;
mod einsum;
mod llm;
mod one_hot;
mod topk;

/// Where a step's input comes from.
#[derive(Clone, Debug)]
pub enum Src {
    /// Input `i` of the ONNX node.
    In(usize),
    /// A value the lowering makes up (a default bound, Gemm's alpha), with a name suffix for
    /// its node should it need one.
    Known(String, Known),
    /// Output `o` of an earlier step.
    Step(usize, usize),
}

/// One IR op of a lowering.
#[derive(Clone, Debug)]
pub struct Step {
    /// The op.
    pub op: Op,
    /// Its inputs.
    pub ins: Vec<Src>,
    /// Suffix of its node's name (`{node}.{suffix}`), unless it is the last step (which takes
    /// the node's name).
    pub suffix: String,
}

/// A node as IR ops: the steps, and where each ONNX output comes from (`None`: an output
/// glufuse does not model, an error if anything reads it).
#[derive(Clone, Debug, Default)]
pub struct Lowering {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Each ONNX output's source.
    pub outs: Vec<Option<Src>>,
}

/// What the lowering may ask about the node's inputs.
pub trait Env {
    /// The type of a value, by ONNX name.
    fn type_of(&self, name: &str) -> Option<TensorType>;
    /// The known value of a value, by ONNX name.
    fn known(&self, name: &str) -> Option<&Known>;
    /// The model's default-domain opset (11 and up).
    fn opset(&self) -> i64;
    /// The model's folder, which anchors external data (a large `Constant`'s too: optimum
    /// writes them so).
    fn dir(&self) -> &std::path::Path;
    /// The nodes of the top-level graph that read a value, by ONNX name: (`domain::op_type`,
    /// input index) each.
    fn readers(&self, name: &str) -> &[(String, usize)];
}

/// An attribute reader.
pub struct Attrs<'a>(pub HashMap<&'a str, &'a proto::AttributeProto>);

impl Attrs<'_> {
    pub(super) fn int(&self, k: &str) -> Option<i64> {
        self.0.get(k).and_then(|a| a.i)
    }
    pub(super) fn float(&self, k: &str) -> Option<f32> {
        self.0.get(k).and_then(|a| a.f)
    }
    pub(super) fn ints(&self, k: &str) -> Option<Vec<i64>> {
        self.0.get(k).map(|a| a.ints.clone())
    }
    pub(super) fn string(&self, k: &str) -> Option<String> {
        self.0.get(k).and_then(|a| a.s.as_ref()).map(|s| String::from_utf8_lossy(s).into_owned())
    }
    /// A tensor attribute.
    pub fn tensor(&self, k: &str) -> Option<&proto::TensorProto> {
        self.0.get(k).and_then(|a| a.t.as_ref())
    }
}

struct Ctx<'a> {
    env: &'a dyn Env,
    n: &'a proto::NodeProto,
    steps: Vec<Step>,
}

impl Ctx<'_> {
    fn name(&self, i: usize) -> Option<&str> {
        self.n.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }
    fn has(&self, i: usize) -> bool {
        self.name(i).is_some()
    }
    fn ty(&self, i: usize) -> Result<TensorType, String> {
        let nm = self.name(i).ok_or_else(|| format!("input {i} is missing"))?;
        self.env.type_of(nm).ok_or_else(|| format!("value '{nm}' is not produced by any earlier node"))
    }
    fn known(&self, i: usize) -> Option<&Known> {
        self.name(i).and_then(|nm| self.env.known(nm))
    }
    /// Input `i`'s integers, which must be known at load time (`what` says what they are).
    fn exprs(&self, i: usize, what: &str) -> Result<Vec<DimExpr>, String> {
        match self.known(i) {
            Some(k) => k.exprs().ok_or_else(|| format!("the {what} (input {i}) must be integers, not {}", k.dtype)),
            None if self.has(i) => Err(data_dependent(what, i)),
            None => Err(format!("the {what} (input {i}) is missing")),
        }
    }
    /// Input `i`'s integers, which must be known numbers.
    fn ints(&self, i: usize, what: &str) -> Result<Vec<i64>, String> {
        let e = self.exprs(i, what)?;
        e.iter()
            .map(|x| x.as_const().ok_or_else(|| format!("the {what} (input {i}) must be numbers, not {x}")))
            .collect()
    }
    fn step(&mut self, suffix: &str, op: Op, ins: Vec<Src>) -> Src {
        self.steps.push(Step { op, ins, suffix: suffix.to_string() });
        Src::Step(self.steps.len() - 1, 0)
    }
    /// A step of an op with `outputs` outputs (a split's parts, a top-K's values and
    /// indices): each of them.
    fn step_outputs(&mut self, suffix: &str, op: Op, ins: Vec<Src>, outputs: usize) -> Vec<Option<Src>> {
        self.step(suffix, op, ins);
        let last = self.steps.len() - 1;
        (0..outputs).map(|o| Some(Src::Step(last, o))).collect()
    }
    fn done(self, outs: Vec<Option<Src>>) -> Option<Lowering> {
        Some(Lowering { steps: self.steps, outs })
    }
}

/// An `If` whose condition is known only at run time and whose branches each only hold
/// constants: each output a `Where` of the condition over the two branches' values, which
/// must be of one type. `None` for any other `If` (a branch computing anything, or reading a
/// value from outside).
///
/// onnxruntime-genai's LongRoPE builds (Phi-3.5-mini and Phi-4-mini as published among them)
/// pick their rotary tables so, by `total_sequence_length > original_max_position_embeddings`:
/// the long ones (a row for each of the `max_position_embeddings` positions) or the short ones
/// (a row for each of the original ones), read only as `GroupQueryAttention`'s cosine and
/// sine tables. Where every reader of the outputs is one of those, tables of different
/// lengths are taken, the shorter one padded with rows of zeros: it is taken only for a total
/// length of at most its own, so no position read lies in the padding.
pub fn lower_if_of_constants(env: &dyn Env, n: &proto::NodeProto, attrs: &Attrs) -> Result<Option<Lowering>, String> {
    // Each branch's outputs, in order, where it holds constants only.
    let branch = |which: &str| -> Result<Option<Vec<Known>>, String> {
        let Some(g) = attrs.0.get(which).and_then(|a| a.g.as_ref()) else { return Ok(None) };
        let mut vals = HashMap::new();
        for t in &g.initializer {
            vals.insert(t.name.clone().unwrap_or_default(), super::decode_tensor(t, Some(env.dir()))?);
        }
        for node in &g.node {
            let default_domain = matches!(node.domain.as_deref(), None | Some("") | Some("ai.onnx"));
            if !default_domain || node.op_type.as_deref() != Some("Constant") || node.output.len() != 1 {
                return Ok(None);
            }
            let a = Attrs(node.attribute.iter().map(|a| (a.name.as_deref().unwrap_or(""), a)).collect());
            vals.insert(node.output[0].clone(), constant_attr(&a, env.dir())?);
        }
        let outs: Option<Vec<Known>> =
            g.output.iter().map(|o| vals.get(o.name.as_deref().unwrap_or("")).cloned()).collect();
        Ok(outs.filter(|o| o.len() == n.output.len()))
    };
    let (Some(then), Some(other)) = (branch("then_branch")?, branch("else_branch")?) else { return Ok(None) };
    let rotary_tables = n.output.iter().all(|o| {
        let r = env.readers(o);
        !r.is_empty() && r.iter().all(|(op, i)| op == "com.microsoft::GroupQueryAttention" && matches!(i, 7 | 8))
    });
    let mut c = Ctx { env, n, steps: vec![] };
    let mut outs = vec![];
    for (k, (mut a, mut b)) in then.into_iter().zip(other).enumerate() {
        if rotary_tables && a.ty() != b.ty() {
            (a, b) = (pad_rows(&a, b.dims.first().copied()), pad_rows(&b, a.dims.first().copied()));
        }
        if a.ty() != b.ty() {
            return Err(format!(
                "output {k} is {} in then_branch and {} in else_branch: a condition known only at run time needs one type",
                a.ty(),
                b.ty()
            ));
        }
        let ins = vec![Src::In(0), Src::Known(format!("then{k}"), a), Src::Known(format!("else{k}"), b)];
        outs.push(Some(c.step(&format!("out{k}"), Op::Where, ins)));
    }
    Ok(c.done(outs))
}

/// A 2-D float table `k` with rows of zeros after its own up to `rows` (unchanged where it has
/// as many or more, or is not a 2-D float table).
fn pad_rows(k: &Known, rows: Option<usize>) -> Known {
    let (Some(rows), [r, w], KVals::Float(v)) = (rows, k.dims.as_slice(), &k.vals) else { return k.clone() };
    if rows <= *r {
        return k.clone();
    }
    let mut v = v.clone();
    v.resize(rows * w, 0.0);
    Known::new(k.dtype, vec![rows, *w], KVals::Float(v))
}

/// Lowers one node of onnxruntime's contrib domain (`com.microsoft`, [`contrib`]); `None`
/// for an op not modelled there.
pub fn lower_contrib(env: &dyn Env, n: &proto::NodeProto, attrs: &Attrs) -> Result<Option<Lowering>, String> {
    let op = n.op_type.as_deref().unwrap_or("");
    let mut c = Ctx { env, n, steps: vec![] };
    match contrib::lower(&mut c, op, attrs) {
        None => Ok(None),
        Some(outs) => {
            let mut outs = outs?;
            outs.truncate(n.output.len().max(1));
            Ok(c.done(outs))
        }
    }
}

/// The message for an input that must be known but is computed from data.
fn data_dependent(what: &str, i: usize) -> String {
    format!(
        "the {what} (input {i}) is computed from tensor data at run time, so the output's shape would depend on data; glufuse needs it known at load time (from constants and dims)"
    )
}

/// Axis `a` (negative: from the end) of a rank-`r` value, or why not.
fn ax(a: i64, r: usize) -> Result<usize, String> {
    crate::shape::norm_axis(a, r).ok_or_else(|| format!("axis {a} out of range for rank {r}"))
}

/// The positions `0, 1, .. len - 1` (int64) along an axis with `after` dims after it, shaped
/// to broadcast over those (`name`, and `name.lane` for the reshape).
fn lane_positions(c: &mut Ctx, name: &str, len: DimExpr, after: usize) -> Src {
    let at = c.step(name, indices(len), vec![]);
    if after == 0 {
        return at;
    }
    let shape = std::iter::once(-1).chain(std::iter::repeat_n(1, after)).map(DimExpr::constant).collect();
    c.step(&format!("{name}.lane"), Op::Reshape { shape }, vec![at])
}

/// The first position along `axes` where `hit` holds, negated: the largest of the negated
/// positions `neg` hit (`prefix` names the steps), or `-i32::MAX` where none is (the largest
/// int32 negated, which no position is). `ArgMax`'s first index, and `TopK`'s and
/// `Hardmax`'s, are this negated back.
fn first_hit_negated(c: &mut Ctx, prefix: &str, hit: Src, neg: Src, axes: Vec<i64>, keepdims: bool) -> Src {
    let none = Src::Known("none".into(), scalar(DType::I64, -(i32::MAX as f64)));
    let cand = c.step(&format!("{prefix}candidates"), Op::Where, vec![hit, neg, none]);
    c.step(&format!("{prefix}found"), Op::Reduce { op: ReduceOp::Max, axes, keepdims }, vec![cand])
}

/// The indices `0, 1, .. limit - 1` (int64) along a dim of `limit`, symbolic or not.
fn indices(limit: DimExpr) -> Op {
    Op::Range { start: DimExpr::constant(0), limit, delta: 1, dtype: DType::I64 }
}

/// A known scalar of a dtype.
fn scalar(dtype: DType, v: f64) -> Known {
    let vals = match dtype {
        DType::F32 | DType::F16 => KVals::Float(vec![v as f32]),
        DType::I64 | DType::I32 => KVals::Int(vec![v as i64]),
        DType::Bool => KVals::Bool(vec![v != 0.0]),
    };
    Known::new(dtype, vec![], vals)
}

fn unary_of(op: &str, attrs: &Attrs) -> Option<UnaryOp> {
    Some(match op {
        "Neg" => UnaryOp::Neg,
        "Exp" => UnaryOp::Exp,
        "Sqrt" => UnaryOp::Sqrt,
        "Erf" => UnaryOp::Erf,
        "Tanh" => UnaryOp::Tanh,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Relu" => UnaryOp::Relu,
        "Gelu" => match attrs.string("approximate").as_deref() {
            Some("tanh") => UnaryOp::GeluTanh,
            _ => UnaryOp::GeluErf,
        },
        "Reciprocal" => UnaryOp::Reciprocal,
        "Sin" => UnaryOp::Sin,
        "Cos" => UnaryOp::Cos,
        "Tan" => UnaryOp::Tan,
        "Asin" => UnaryOp::Asin,
        "Acos" => UnaryOp::Acos,
        "Atan" => UnaryOp::Atan,
        "Sinh" => UnaryOp::Sinh,
        "Cosh" => UnaryOp::Cosh,
        "Asinh" => UnaryOp::Asinh,
        "Acosh" => UnaryOp::Acosh,
        "Atanh" => UnaryOp::Atanh,
        "Log" => UnaryOp::Log,
        "Abs" => UnaryOp::Abs,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Round" => UnaryOp::Round,
        "Softplus" => UnaryOp::Softplus,
        "Not" => UnaryOp::Not,
        "IsNaN" => UnaryOp::IsNaN,
        "IsInf" => {
            match (attrs.int("detect_negative").unwrap_or(1) != 0, attrs.int("detect_positive").unwrap_or(1) != 0) {
                (true, true) => UnaryOp::IsInf,
                (false, true) => UnaryOp::IsPosInf,
                (true, false) => UnaryOp::IsNegInf,
                // (Refused by `lower` with its reason.)
                (false, false) => return None,
            }
        }
        _ => return None,
    })
}

fn binary_of(op: &str, attrs: &Attrs) -> Option<BinaryOp> {
    Some(match op {
        "Add" | "Sum" => BinaryOp::Add,
        "Sub" => BinaryOp::Sub,
        "Mul" => BinaryOp::Mul,
        "Div" => BinaryOp::Div,
        "Pow" => BinaryOp::Pow,
        "Max" => BinaryOp::Max,
        "Min" => BinaryOp::Min,
        "Equal" => BinaryOp::Equal,
        "Less" => BinaryOp::Less,
        "LessOrEqual" => BinaryOp::LessOrEqual,
        "Greater" => BinaryOp::Greater,
        "GreaterOrEqual" => BinaryOp::GreaterOrEqual,
        "And" => BinaryOp::And,
        "Or" => BinaryOp::Or,
        "Mod" if attrs.int("fmod").unwrap_or(0) != 0 => BinaryOp::FMod,
        "Mod" => BinaryOp::Mod,
        _ => return None,
    })
}

/// The element type of an ONNX type code.
pub fn dtype_of(code: i32) -> Result<DType, String> {
    Ok(match code {
        1 => DType::F32,
        10 => DType::F16,
        7 => DType::I64,
        6 => DType::I32,
        9 => DType::Bool,
        // Other integers are held as i64 (uint8, int8, uint16, int16, uint32, uint64).
        2..=5 | 12 | 13 => DType::I64,
        // Other floats pass through opaque ops only; f32 stands in for them.
        11 | 16 => DType::F32,
        c => return Err(format!("element type {c} is not supported")),
    })
}

/// Slice bounds of one axis of size `dim` by ONNX rules (negative counts from the end, out
/// of range clamps, huge values mean the end): the first index and the length. A bound that
/// is symbolic, or a number against a symbolic dim, is taken as in range; the run checks
/// that it is.
pub fn slice_bounds(dim: &Dim, start: &DimExpr, end: &DimExpr, step: i64) -> Result<(Dim, Dim), String> {
    const HUGE: i64 = 1 << 62;
    let d = dim.expr();
    let fixed = dim.fixed().map(|n| n as i64);
    let resolve = |x: &DimExpr| -> Result<DimExpr, String> {
        Ok(match x.as_const() {
            Some(c) if c >= HUGE => d.clone(),
            Some(c) if c <= -HUGE => DimExpr::constant(if step > 0 { 0 } else { -1 }),
            Some(c) if c < 0 => d.add(&DimExpr::constant(c))?,
            Some(_) => x.clone(),
            // A symbolic bound that is never positive (`-seq`: Python's `x[..., -n:]` with a
            // length n) counts from the end like a negative number: `dim - seq`, which is
            // exact wherever it is negative. (Where all of its symbols are 0 ONNX reads it as
            // 0; the two agree where `dim - seq` is itself 0, as in T5's `bias[:, :, -q:]`
            // of a bias of q rows.) Any other symbolic bound is taken as it is.
            None if !x.is_nonnegative() && x.neg()?.is_nonnegative() => d.add(x)?,
            None => x.clone(),
        })
    };
    let (s, e) = (resolve(start)?, resolve(end)?);
    if step > 0 {
        let (s, e) = match (fixed, s.as_const(), e.as_const()) {
            (Some(n), Some(s), Some(e)) => {
                let s = s.clamp(0, n);
                (DimExpr::constant(s), DimExpr::constant(e.clamp(s, n)))
            }
            _ => (s, e),
        };
        let len = e.sub(&s)?.add(&DimExpr::constant(step - 1))?.floor_div(step)?;
        let len = if len.as_const().is_some_and(|c| c < 0) { DimExpr::constant(0) } else { len };
        return Ok((Dim::from_expr(s)?, Dim::from_expr(len)?));
    }
    if step == 0 {
        return Err("slice step must not be 0".into());
    }
    // Negative steps: start in [0, dim - 1], end in [-1, dim - 1].
    if fixed == Some(0) {
        return Ok((Dim::Fixed(0), Dim::Fixed(0)));
    }
    let last = d.sub(&DimExpr::constant(1))?;
    let (s, e) = match (fixed, s.as_const(), e.as_const()) {
        (Some(n), Some(s), Some(e)) => (DimExpr::constant(s.clamp(0, n - 1)), DimExpr::constant(e.clamp(-1, n - 1))),
        _ if start.as_const().is_some_and(|c| c >= HUGE) => (last.clone(), e),
        _ => (s, e),
    };
    let len = s.sub(&e)?.add(&DimExpr::constant(-step - 1))?.floor_div(-step)?;
    if len.as_const().is_some_and(|c| c <= 0) {
        return Ok((Dim::Fixed(0), Dim::Fixed(0)));
    }
    Ok((Dim::from_expr(s)?, Dim::from_expr(len)?))
}

/// How many inputs and outputs each op glufuse maps takes, by the ONNX operator
/// specification (opset 13 and up; 11 and 12 take no more): `(fewest inputs, most inputs, most outputs)`, the first
/// `fewest` inputs required (named), the rest optional; `None` for an op not mapped. The one
/// place the importer's arities are stated: every node is checked against it before anything
/// reads its inputs.
pub fn arity(op: &str) -> Option<(usize, usize, usize)> {
    const ANY: usize = usize::MAX;
    if unary_of(op, &Attrs(HashMap::new())).is_some() {
        return Some((1, 1, 1));
    }
    Some(match op {
        "Sum" | "Max" | "Min" => (1, ANY, 1),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "LessOrEqual" | "Greater" | "GreaterOrEqual"
        | "And" | "Or" | "Mod" | "Xor" => (2, 2, 1),
        "Sign" | "ArgMax" | "ArgMin" | "NonZero" => (1, 1, 1),
        "Constant" => (0, 0, 1),
        "Identity" | "Shape" | "Size" | "Cast" | "Transpose" | "Flatten" | "ConstantOfShape" | "Softmax"
        | "LogSoftmax" => (1, 1, 1),
        "Dropout" => (1, 3, 2),
        "CastLike" | "MatMul" | "Reshape" | "Expand" | "Gather" | "GatherND" | "GatherElements" | "CumSum" | "Tile" => {
            (2, 2, 1)
        }
        "Where" | "Range" | "ScatterND" | "ScatterElements" => (3, 3, 1),
        "Clip" => (1, 3, 1),
        "Pad" => (2, 4, 1),
        "Trilu" => (1, 2, 1),
        "Gemm" => (2, 3, 1),
        "Squeeze" | "Unsqueeze" => (1, 2, 1),
        "Concat" => (1, ANY, 1),
        "Split" => (1, 2, ANY),
        "Slice" => (3, 5, 1),
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" => (1, 2, 1),
        "ReduceSumSquare" | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" => (1, 2, 1),
        "LeakyRelu" | "Elu" | "Selu" | "Celu" | "ThresholdedRelu" | "HardSigmoid" | "HardSwish" | "Softsign"
        | "Mish" => (1, 1, 1),
        "PRelu" => (2, 2, 1),
        "LayerNormalization" => (1, 3, 3),
        "RMSNormalization" => (2, 2, 1),
        "SimplifiedLayerNormalization" => (2, 2, 2),
        "RotaryEmbedding" => (3, 4, 1),
        "Attention" => (3, 7, 4),
        "Einsum" => (1, usize::MAX, 1),
        "TopK" => (2, 2, 2),
        "OneHot" => (3, 3, 1),
        "Hardmax" => (1, 1, 1),
        _ => return None,
    })
}

/// Checks a node's inputs and outputs against [`arity`]: their counts, and a name for every
/// required input.
pub fn check_arity(n: &proto::NodeProto) -> Result<(), String> {
    let op = n.op_type.as_deref().unwrap_or("");
    let Some((fewest, most, outs)) = arity(op) else { return Ok(()) };
    let count = n.input.len();
    let takes = |lo: usize, hi: usize, what: &str| match (lo, hi) {
        (1, 1) => format!("1 {what}"),
        (lo, hi) if lo == hi => format!("{lo} {what}s"),
        (lo, usize::MAX) => format!("{lo} or more {what}s"),
        (lo, hi) => format!("{lo} to {hi} {what}s"),
    };
    if count < fewest || count > most {
        return Err(format!("takes {}, but this node has {count}", takes(fewest, most, "input")));
    }
    if let Some(i) = (0..fewest).find(|&i| n.input[i].is_empty()) {
        return Err(format!("input {i} is required, but this node leaves it out"));
    }
    if n.output.is_empty() || n.output.len() > outs {
        return Err(format!("gives {}, but this node has {}", takes(1, outs, "output"), n.output.len()));
    }
    Ok(())
}

/// Lowers one default-domain node; `None` for an op glufuse does not model. The node's
/// arity is checked first ([`check_arity`]).
pub fn lower(env: &dyn Env, n: &proto::NodeProto, attrs: &Attrs) -> Result<Option<Lowering>, String> {
    check_arity(n)?;
    let op = n.op_type.as_deref().unwrap_or("");
    let mut c = Ctx { env, n, steps: vec![] };
    let nout = n.output.len().max(1);
    let input = Src::In;
    if let Some(u) = unary_of(op, attrs) {
        let s = c.step("", Op::Unary(u), vec![input(0)]);
        return Ok(c.done(vec![Some(s)]));
    }
    if op == "IsInf" {
        return Err(
            "IsInf detecting neither sign (detect_negative = detect_positive = 0: always false) is not supported"
                .into(),
        );
    }
    if let Some(b) = binary_of(op, attrs) {
        let count = n.input.len();
        // A variadic Sum, Max or Min of one input is that input (arity allows one only there).
        if count == 1 {
            return Ok(c.done(vec![Some(input(0))]));
        }
        let mut ins = vec![input(0), input(1)];
        // Pow's exponent may be of another type: it takes the base's.
        if b == BinaryOp::Pow {
            let (base, exp) = (c.ty(0)?, c.ty(1)?);
            if base.dtype != exp.dtype {
                ins[1] = c.step("exponent", Op::Cast { to: base.dtype }, vec![input(1)]);
            }
        }
        let mut acc = c.step("0", Op::Binary(b), ins);
        for i in 2..count {
            acc = c.step(&format!("{}", i - 1), Op::Binary(b), vec![acc, input(i)]);
        }
        return Ok(c.done(vec![Some(acc)]));
    }
    if let Some(r) = activations::activation(&mut c, op, attrs) {
        let y = r?;
        return Ok(c.done(vec![Some(y)]));
    }
    let out = match op {
        "Constant" => {
            let k = constant_attr(attrs, env.dir())?;
            return Ok(c.done(vec![Some(Src::Known("value".into(), k))]));
        }
        "Identity" => input(0),
        "Dropout" => {
            // Inference: the data passes through; the mask is not modelled.
            return Ok(c.done([Some(input(0))].into_iter().chain((1..nout).map(|_| None)).collect()));
        }
        "Shape" => {
            let t = c.ty(0)?;
            let r = t.rank() as i64;
            let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
            let (s, e) = (clamp(attrs.int("start").unwrap_or(0)), clamp(attrs.int("end").unwrap_or(r)));
            let v: Vec<DimExpr> = t.shape[s..e.max(s)].iter().map(Dim::expr).collect();
            let len = v.len();
            Src::Known("shape".into(), Known::new(DType::I64, vec![len], KVals::Sym(v)))
        }
        "NonZero" => {
            // The indices of the nonzero elements, `[rank, count]`: the count depends on the
            // values, so only an input known at load time is taken (TorchScript's
            // `repeat_interleave` of a tensor of repeats builds its mask from constants and
            // dims: optimum's Cohere export), folded here.
            let k = match c.known(0) {
                Some(k) => k.clone(),
                None if c.has(0) => return Err(data_dependent("input", 0)),
                None => return Err("the input (input 0) is missing".into()),
            };
            if k.dims.is_empty() {
                return Err("NonZero of a scalar is not supported".into());
            }
            let nonzero: Vec<bool> = match &k.vals {
                KVals::Float(v) => v.iter().map(|&x| x != 0.0).collect(),
                KVals::Int(v) => v.iter().map(|&x| x != 0).collect(),
                KVals::Bool(v) => v.clone(),
                KVals::Sym(v) => v
                    .iter()
                    .map(|e| {
                        e.as_const().map(|x| x != 0).ok_or_else(|| {
                            format!("whether {e} is 0 is not known at load time, so the output's shape would depend on the sizes")
                        })
                    })
                    .collect::<Result<_, _>>()?,
            };
            let hits: Vec<usize> = (0..nonzero.len()).filter(|&i| nonzero[i]).collect();
            let mut vals = vec![0i64; k.dims.len() * hits.len()];
            for (j, &flat) in hits.iter().enumerate() {
                let mut rest = flat;
                for (d, &n) in k.dims.iter().enumerate().rev() {
                    vals[d * hits.len() + j] = (rest % n) as i64;
                    rest /= n;
                }
            }
            Src::Known("indices".into(), Known::new(DType::I64, vec![k.dims.len(), hits.len()], KVals::Int(vals)))
        }
        "Size" => {
            let t = c.ty(0)?;
            Src::Known("size".into(), Known::int_scalar(crate::shape::numel_expr(&t.shape)?))
        }
        "Cast" => {
            let to = dtype_of(attrs.int("to").unwrap_or(1) as i32)?;
            c.step("", Op::Cast { to }, vec![input(0)])
        }
        "CastLike" => {
            let to = c.ty(1)?.dtype;
            c.step("", Op::Cast { to }, vec![input(0)])
        }
        "Where" => c.step("", Op::Where, vec![input(0), input(1), input(2)]),
        "Trilu" => {
            // The elements on and above (upper) or on and below (lower) diagonal k of the
            // last two dims kept, the rest zero: where(cols - rows >= k (or <= k), x, 0),
            // the row and column indices ranges over the (possibly symbolic) dims.
            let t = c.ty(0)?;
            let r = t.rank();
            if r < 2 {
                return Err(format!("Trilu needs at least 2 dims, got {t}"));
            }
            let k = if c.has(1) {
                match c.ints(1, "diagonal k")?[..] {
                    [k] => k,
                    _ => return Err("the Trilu diagonal k (input 1) must be a scalar".into()),
                }
            } else {
                0
            };
            let upper = attrs.int("upper").unwrap_or(1) != 0;
            let rows = c.step("rows", indices(t.shape[r - 2].expr()), vec![]);
            let rows = c.step(
                "rows.col",
                Op::Reshape { shape: vec![DimExpr::constant(-1), DimExpr::constant(1)] },
                vec![rows],
            );
            let cols = c.step("cols", indices(t.shape[r - 1].expr()), vec![]);
            let diag = c.step("diagonal", Op::Binary(BinaryOp::Sub), vec![cols, rows]);
            let side = if upper { BinaryOp::GreaterOrEqual } else { BinaryOp::LessOrEqual };
            let keep =
                c.step("keep", Op::Binary(side), vec![diag, Src::Known("k".into(), scalar(DType::I64, k as f64))]);
            let zero = Src::Known("zero".into(), scalar(t.dtype, 0.0));
            c.step("", Op::Where, vec![keep, input(0), zero])
        }
        "Clip" => {
            let mut acc = input(0);
            if c.has(1) {
                acc = c.step("min", Op::Binary(BinaryOp::Max), vec![acc, input(1)]);
            }
            if c.has(2) {
                acc = c.step("max", Op::Binary(BinaryOp::Min), vec![acc, input(2)]);
            }
            acc
        }
        "MatMul" => {
            let (ta, tb) = (c.ty(0)?, c.ty(1)?);
            if ta.rank() >= 2 && tb.rank() >= 2 {
                c.step("", Op::MatMul, vec![input(0), input(1)])
            } else if ta.rank() == 0 || tb.rank() == 0 {
                return Err(format!("MatMul of {ta} and {tb}: an operand is a scalar"));
            } else {
                // NumPy's rule: a 1-D A is a row `[1, K]`, a 1-D B a column `[K, 1]`, and the
                // dim each added is dropped from the product (no batch dims to broadcast: the
                // product's other dims are the other operand's).
                let dims = |t: &TensorType| -> Vec<DimExpr> { t.shape.iter().map(Dim::expr).collect() };
                let (mut a, mut b) = (input(0), input(1));
                let mut out = vec![];
                if ta.rank() == 1 {
                    let row = [vec![DimExpr::constant(1)], dims(&ta)].concat();
                    a = c.step("row", Op::Reshape { shape: row }, vec![a]);
                } else {
                    out = dims(&ta)[..ta.rank() - 1].to_vec();
                }
                if tb.rank() == 1 {
                    let column = [dims(&tb), vec![DimExpr::constant(1)]].concat();
                    b = c.step("column", Op::Reshape { shape: column }, vec![b]);
                } else {
                    let mut d = dims(&tb);
                    d.remove(tb.rank() - 2);
                    out = d;
                }
                let y = c.step("product", Op::MatMul, vec![a, b]);
                c.step("", Op::Reshape { shape: out }, vec![y])
            }
        }
        "Gemm" => {
            let (ta, tb) = (c.ty(0)?, c.ty(1)?);
            if ta.rank() != 2 || tb.rank() != 2 {
                return Err("Gemm needs 2-D operands".into());
            }
            let mut a = input(0);
            let mut b = input(1);
            if attrs.int("transA") == Some(1) {
                a = c.step("transA", Op::Transpose { perm: vec![1, 0] }, vec![a]);
            }
            if attrs.int("transB") == Some(1) {
                b = c.step("transB", Op::Transpose { perm: vec![1, 0] }, vec![b]);
            }
            let alpha = attrs.float("alpha").unwrap_or(1.0);
            let beta = attrs.float("beta").unwrap_or(1.0);
            let has_c = c.has(2);
            let mut y = c.step("matmul", Op::MatMul, vec![a, b]);
            let dt = ta.dtype;
            if alpha != 1.0 {
                let k = Src::Known("alpha".into(), scalar(dt, alpha as f64));
                y = c.step("scaled", Op::Binary(BinaryOp::Mul), vec![y, k]);
            }
            if has_c {
                let mut bias = input(2);
                if beta != 1.0 {
                    let k = Src::Known("beta".into(), scalar(dt, beta as f64));
                    bias = c.step("beta_c", Op::Binary(BinaryOp::Mul), vec![bias, k]);
                }
                y = c.step("", Op::Binary(BinaryOp::Add), vec![y, bias]);
            }
            y
        }
        "Transpose" => {
            let r = c.ty(0)?.rank();
            let perm: Vec<usize> = match attrs.ints("perm") {
                Some(p) => p.iter().map(|&x| ax(x, r)).collect::<Result<_, _>>()?,
                None => (0..r).rev().collect(),
            };
            c.step("", Op::Transpose { perm }, vec![input(0)])
        }
        "Reshape" => {
            let shape = c.exprs(1, "target shape")?;
            if attrs.int("allowzero") == Some(1) && shape.iter().any(|e| e.as_const() == Some(0)) {
                return Err("a Reshape (allowzero) to a dim of size 0 is not supported".into());
            }
            c.step("", Op::Reshape { shape }, vec![input(0)])
        }
        "Squeeze" | "Unsqueeze" => {
            let t = c.ty(0)?;
            let axes: Option<Vec<i64>> = if c.has(1) { Some(c.ints(1, "axes")?) } else { attrs.ints("axes") };
            let mut dims: Vec<DimExpr> = t.shape.iter().map(Dim::expr).collect();
            if op == "Unsqueeze" {
                let axes = axes.ok_or("Unsqueeze needs axes")?;
                let r = t.rank() + axes.len();
                let mut norm = axes.iter().map(|&a| ax(a, r)).collect::<Result<Vec<_>, _>>()?;
                norm.sort_unstable();
                if norm.windows(2).any(|w| w[0] == w[1]) {
                    return Err(format!("Unsqueeze axes {axes:?} name an axis twice"));
                }
                for a in norm {
                    dims.insert(a, DimExpr::constant(1));
                }
            } else {
                let drop: Vec<usize> = match axes.filter(|a| !a.is_empty()) {
                    Some(a) => a.iter().map(|&x| ax(x, t.rank())).collect::<Result<_, _>>()?,
                    None => {
                        if let Some(d) = t.shape.iter().find(|d| d.fixed().is_none()) {
                            return Err(format!(
                                "Squeeze without axes of {t}: whether dim {d} is 1 is known only at run time"
                            ));
                        }
                        (0..t.rank()).filter(|&i| t.shape[i] == Dim::Fixed(1)).collect()
                    }
                };
                for &a in &drop {
                    if t.shape[a] != Dim::Fixed(1) {
                        return Err(format!("Squeeze axis {a} of {t} has size {}, not 1", t.shape[a]));
                    }
                }
                dims = dims.into_iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, d)| d).collect();
            }
            c.step("", Op::Reshape { shape: dims }, vec![input(0)])
        }
        "Flatten" => {
            let t = c.ty(0)?;
            let a = attrs.int("axis").unwrap_or(1);
            let a = if a < 0 { a + t.rank() as i64 } else { a };
            if !(0..=t.rank() as i64).contains(&a) {
                return Err(format!("axis {a} out of range for rank {}", t.rank()));
            }
            let (outer, inner) = t.shape.split_at(a as usize);
            let shape = vec![crate::shape::numel_expr(outer)?, crate::shape::numel_expr(inner)?];
            c.step("", Op::Reshape { shape }, vec![input(0)])
        }
        "Expand" => {
            let shape = c.exprs(1, "shape")?.into_iter().map(Dim::from_expr).collect::<Result<_, _>>()?;
            c.step("", Op::Expand { shape }, vec![input(0)])
        }
        "Pad" => {
            // Constant mode: along each padded axis, blocks of the value (a broadcast of it to
            // the block's shape, symbolic dims included) concatenated before and after. The
            // other modes gather ([`pad_by_index`]).
            let t = c.ty(0)?;
            let mode = attrs.string("mode").unwrap_or_else(|| "constant".into());
            if !matches!(mode.as_str(), "constant" | "edge" | "reflect" | "wrap") {
                return Err(format!("mode '{mode}' is not supported (constant, edge, reflect or wrap)"));
            }
            let pads = c.ints(1, "pads")?;
            let r = t.rank();
            let axes: Vec<usize> = if c.has(3) {
                c.ints(3, "axes")?.into_iter().map(|a| ax(a, r)).collect::<Result<_, _>>()?
            } else {
                (0..r).collect()
            };
            if pads.len() != 2 * axes.len() {
                return Err(format!("{} pads for {} axes of {t}: 2 an axis", pads.len(), axes.len()));
            }
            if let Some(p) = pads.iter().find(|&&p| p < 0) {
                return Err(format!("a negative pad ({p}, cropping) is not supported"));
            }
            if mode != "constant" {
                return pad_by_index(&mut c, &t, &axes, &pads, &mode).map(|v| c.done(vec![Some(v)]));
            }
            let value = if c.has(2) {
                if c.ty(2)?.numel() != Some(1) {
                    return Err(format!("the constant_value (input 2) must be one value, not {}", c.ty(2)?));
                }
                input(2)
            } else {
                Src::Known("zero".into(), scalar(t.dtype, 0.0))
            };
            let mut shape = t.shape.clone();
            let mut v = input(0);
            for (j, &a) in axes.iter().enumerate() {
                let (before, after) = (pads[j], pads[j + axes.len()]);
                if before == 0 && after == 0 {
                    continue;
                }
                let block = |c: &mut Ctx, side: &str, p: i64| {
                    let mut dims = shape.clone();
                    dims[a] = Dim::Fixed(p as u64);
                    c.step(&format!("{a}.{side}"), Op::Expand { shape: dims }, vec![value.clone()])
                };
                let mut ins = vec![];
                if before > 0 {
                    ins.push(block(&mut c, "before", before));
                }
                ins.push(v);
                if after > 0 {
                    ins.push(block(&mut c, "after", after));
                }
                v = c.step(&format!("{a}"), Op::Concat { axis: a as i64 }, ins);
                shape[a] = Dim::from_expr(shape[a].expr().add(&DimExpr::constant(before + after))?)?;
            }
            // (All pads zero: the input itself, as Identity.)
            v
        }
        "Tile" => {
            // Each dim d repeated r times: x viewed as [1, d0, 1, d1, ..], broadcast to
            // [r0, d0, r1, d1, ..], viewed as [r0·d0, r1·d1, ..]. A repeat may be a dim
            // (optimum's GPT-J and Cohere exports repeat their rotary tables `batch` times).
            let t = c.ty(0)?;
            let reps = c.exprs(1, "repeats")?;
            if reps.len() != t.rank() {
                return Err(format!("Tile needs one repeat a dim: {} repeats for {t}", reps.len()));
            }
            if let Some(r) = reps.iter().filter_map(DimExpr::as_const).find(|&r| r < 0) {
                return Err(format!("a Tile repeat must not be negative, got {r}"));
            }
            if t.shape.iter().any(|d| d.fixed() == Some(0)) || reps.iter().any(|r| r.as_const() == Some(0)) {
                let shown: Vec<String> = reps.iter().map(|r| r.to_string()).collect();
                return Err(format!("Tile of {t} by [{}] would be empty: not supported", shown.join(", ")));
            }
            let mut split = vec![];
            let mut wide = vec![];
            let mut out = vec![];
            for (d, r) in t.shape.iter().zip(&reps) {
                split.extend([DimExpr::constant(1), d.expr()]);
                wide.extend([Dim::from_expr(r.clone())?, d.clone()]);
                out.push(r.mul(&d.expr())?);
            }
            let v = c.step("split", Op::Reshape { shape: split }, vec![input(0)]);
            let w = c.step("repeated", Op::Expand { shape: wide }, vec![v]);
            c.step("", Op::Reshape { shape: out }, vec![w])
        }
        "ConstantOfShape" => {
            let shape: Vec<Dim> = c.exprs(0, "shape")?.into_iter().map(Dim::from_expr).collect::<Result<_, _>>()?;
            let mut v = match attrs.tensor("value") {
                Some(t) => super::decode_tensor(t, None)?,
                None => scalar(DType::F32, 0.0),
            };
            if v.numel() != 1 {
                return Err(format!("ConstantOfShape value must hold one value, not {}", v.numel()));
            }
            v.dims = vec![];
            c.step("", Op::Expand { shape }, vec![Src::Known("value".into(), v)])
        }
        "Concat" => {
            let axis = attrs.int("axis").ok_or("Concat needs an axis")?;
            c.step("", Op::Concat { axis }, (0..n.input.len()).map(input).collect())
        }
        "Split" => {
            let t = c.ty(0)?;
            let axis = attrs.int("axis").unwrap_or(0);
            let a = ax(axis, t.rank())?;
            let sizes: Vec<Dim> = if c.has(1) {
                c.exprs(1, "split sizes")?.into_iter().map(Dim::from_expr).collect::<Result<_, _>>()?
            } else if let Some(s) = attrs.ints("split") {
                s.into_iter().map(|x| Dim::from_expr(DimExpr::constant(x))).collect::<Result<_, _>>()?
            } else {
                let parts = nout as i64;
                match attrs.int("num_outputs") {
                    Some(k) if k < 1 => return Err(format!("num_outputs {k} must be 1 or more")),
                    Some(k) if k != parts => {
                        return Err(format!("num_outputs is {k} but the node has {parts} outputs"))
                    }
                    _ => {}
                }
                match t.shape[a].fixed() {
                    Some(total) => {
                        let each = total.div_ceil(parts as u64);
                        (0..parts as u64).map(|i| Dim::Fixed(each.min(total.saturating_sub(i * each)))).collect()
                    }
                    None => {
                        let part = t.shape[a].expr().div_exact(&DimExpr::constant(parts)).ok_or_else(|| {
                            format!("axis {a} of size {} does not split into {parts} equal parts", t.shape[a])
                        })?;
                        vec![Dim::from_expr(part)?; parts as usize]
                    }
                }
            };
            let k = sizes.len();
            if k != nout {
                return Err(format!("the split gives {k} sizes but the node has {nout} outputs"));
            }
            let parts = c.step_outputs("", Op::Split { axis, sizes }, vec![input(0)], k);
            return Ok(c.done(parts));
        }
        "Slice" => {
            let t = c.ty(0)?;
            let starts = c.exprs(1, "starts")?;
            let ends = c.exprs(2, "ends")?;
            if starts.len() != ends.len() {
                return Err(format!("{} starts but {} ends", starts.len(), ends.len()));
            }
            let axes: Vec<i64> = if c.has(3) { c.ints(3, "axes")? } else { (0..starts.len() as i64).collect() };
            let steps: Vec<i64> = if c.has(4) { c.ints(4, "steps")? } else { vec![1; starts.len()] };
            if axes.len() != starts.len() || steps.len() != starts.len() {
                return Err("Slice starts, ends, axes and steps differ in length".into());
            }
            let mut v = input(0);
            for j in 0..starts.len() {
                let a = ax(axes[j], t.rank())?;
                let (start, len) = slice_bounds(&t.shape[a], &starts[j], &ends[j], steps[j])?;
                v = c.step(&format!("{j}"), Op::Slice { axis: a as i64, start, len, step: steps[j] }, vec![v]);
            }
            v
        }
        "Gather" => c.step("", Op::Gather { axis: attrs.int("axis").unwrap_or(0) }, vec![input(0), input(1)]),
        "GatherND" => {
            let b = attrs.int("batch_dims").unwrap_or(0);
            let batch_dims = u64::try_from(b).map_err(|_| format!("batch_dims {b} is negative"))?;
            c.step("", Op::GatherND { batch_dims }, vec![input(0), input(1)])
        }
        "GatherElements" => {
            // `out[j] = data[j with j[axis] replaced by indices[j]]`: the index tuples of a
            // `GatherND` (each output position's coordinates, the axis's taken from the
            // indices: a program of ranges and broadcasts after the passes), so that negative
            // indices and ones out of range are what `GatherND` makes of them (counted from
            // the end; an error naming the node).
            let (t, it) = (c.ty(0)?, c.ty(1)?);
            let r = t.rank();
            if it.rank() != r || r == 0 {
                return Err(format!("the indices ({it}) must have the rank of the data ({t}), at least 1"));
            }
            if !matches!(it.dtype, DType::I64 | DType::I32) {
                return Err(format!("the indices (input 1) are {}: int64 or int32 only", it.dtype));
            }
            let a = ax(attrs.int("axis").unwrap_or(0), r)?;
            let mut one: Vec<DimExpr> = it.shape.iter().map(Dim::expr).collect();
            one.push(DimExpr::constant(1));
            let mut coords = vec![];
            for k in 0..r {
                let v = if k == a {
                    if it.dtype == DType::I64 {
                        input(1)
                    } else {
                        c.step("indices.i64", Op::Cast { to: DType::I64 }, vec![input(1)])
                    }
                } else {
                    let j = c.step(&format!("{k}.coordinate"), indices(it.shape[k].expr()), vec![]);
                    let mut lane = vec![DimExpr::constant(1); r];
                    lane[k] = DimExpr::constant(-1);
                    let j = c.step(&format!("{k}.lane"), Op::Reshape { shape: lane }, vec![j]);
                    c.step(&format!("{k}.all"), Op::Expand { shape: it.shape.clone() }, vec![j])
                };
                coords.push(c.step(&format!("{k}.tuple"), Op::Reshape { shape: one.clone() }, vec![v]));
            }
            let tuples = c.step("tuples", Op::Concat { axis: r as i64 }, coords);
            c.step("", Op::GatherND { batch_dims: 0 }, vec![input(0), tuples])
        }
        "ScatterND" | "ScatterElements" => {
            // Reduction `none` only: each place written once (two updates of one place are an
            // error at run time), where `add` and `mul` would combine floats in an order.
            let reduction = attrs.string("reduction").unwrap_or_else(|| "none".into());
            if reduction != "none" {
                return Err(format!("reduction '{reduction}' is not supported (none only)"));
            }
            let ins = vec![input(0), input(1), input(2)];
            if op == "ScatterND" {
                let it = c.ty(1)?.dtype;
                if it != DType::I64 {
                    return Err(format!("the indices (input 1) are {it}: ScatterND takes int64 indices"));
                }
                c.step("", Op::ScatterND, ins)
            } else {
                c.step("", Op::ScatterElements { axis: attrs.int("axis").unwrap_or(0) }, ins)
            }
        }
        "Range" => {
            let dtype = c.ty(0)?.dtype;
            if dtype.is_float() {
                return range_of_floats(&c).map(|s| c.done(vec![Some(s)]));
            }
            let one = |i: usize, what: &str| -> Result<DimExpr, String> {
                let v = c.exprs(i, what)?;
                if v.len() != 1 {
                    return Err(format!("the Range {what} must be a scalar"));
                }
                Ok(v[0].clone())
            };
            let (start, limit, delta) = (one(0, "start")?, one(1, "limit")?, one(2, "delta")?);
            let delta = delta.as_const().ok_or_else(|| format!("the Range delta must be a number, not {delta}"))?;
            c.step("", Op::Range { start, limit, delta, dtype }, vec![])
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" => {
            let rop = match op {
                "ReduceMean" => ReduceOp::Mean,
                "ReduceSum" => ReduceOp::Sum,
                "ReduceProd" => ReduceOp::Prod,
                _ => ReduceOp::Max,
            };
            // The smallest is the mirrored largest of the mirrored values ([`mirror`]).
            let min = op == "ReduceMin";
            let dtype = c.ty(0)?.dtype;
            if min && dtype == DType::Bool {
                return Err("ReduceMin of bool is not supported (numbers only)".into());
            }
            let axes = if c.has(1) { c.ints(1, "axes")? } else { attrs.ints("axes").unwrap_or_default() };
            if axes.is_empty() && attrs.int("noop_with_empty_axes") == Some(1) {
                input(0)
            } else {
                let keepdims = attrs.int("keepdims").unwrap_or(1) != 0;
                let x = if min { mirror(&mut c, "mirrored", input(0), dtype) } else { input(0) };
                let r = c.step(if min { "max" } else { "" }, Op::Reduce { op: rop, axes, keepdims }, vec![x]);
                if min {
                    mirror(&mut c, "", r, dtype)
                } else {
                    r
                }
            }
        }
        "ReduceSumSquare" | "ReduceL1" | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" => {
            let axes = if c.has(1) { c.ints(1, "axes")? } else { attrs.ints("axes").unwrap_or_default() };
            let noop = axes.is_empty() && attrs.int("noop_with_empty_axes") == Some(1);
            let keepdims = attrs.int("keepdims").unwrap_or(1) != 0;
            activations::reduction(&mut c, op, axes, keepdims, noop)
                .ok_or("a reduction not in the list (a glufuse bug)")??
        }
        "ArgMax" | "ArgMin" => {
            // The index (int64) of the first largest (smallest) value along the axis, or the
            // last with `select_last_index`, as onnxruntime gives it: NaN is passed over, and
            // a lane of NaN only gives 0. Lowered to a reduction of the indices where the
            // value equals the lane's largest: the smallest is the largest of the mirrored
            // values (as `ReduceMin`), the first index the negated largest of the negated
            // indices.
            let t = c.ty(0)?;
            let min = op == "ArgMin";
            if t.dtype == DType::Bool {
                return Err(format!("not supported for {} values (numbers only)", t.dtype));
            }
            let a = ax(attrs.int("axis").unwrap_or(0), t.rank())?;
            let keepdims = attrs.int("keepdims").unwrap_or(1) != 0;
            let last = attrs.int("select_last_index").unwrap_or(0) != 0;
            let float = t.dtype.is_float();
            let x = if min { mirror(&mut c, "mirrored", input(0), t.dtype) } else { input(0) };
            // The lane's largest, NaN passed over (as -inf).
            let clean = if float {
                let nan = c.step("nan", Op::Unary(UnaryOp::IsNaN), vec![x.clone()]);
                let low = Src::Known("neg_inf".into(), scalar(t.dtype, f64::NEG_INFINITY));
                c.step("clean", Op::Where, vec![nan, low, x.clone()])
            } else {
                x.clone()
            };
            let axes = vec![a as i64];
            let top = c.step("top", Op::Reduce { op: ReduceOp::Max, axes: axes.clone(), keepdims: true }, vec![clean]);
            let hit = c.step("hit", Op::Binary(BinaryOp::Equal), vec![x, top]);
            let idx = lane_positions(&mut c, "indices", t.shape[a].expr(), t.rank() - 1 - a);
            let reduce = |c: &mut Ctx, name: &str, v: Src| {
                c.step(name, Op::Reduce { op: ReduceOp::Max, axes: axes.clone(), keepdims }, vec![v])
            };
            let i64s = |name: &str, v: f64| Src::Known(name.into(), scalar(DType::I64, v));
            if last {
                let cand = c.step("candidates", Op::Where, vec![hit, idx, i64s("none", -1.0)]);
                let found = reduce(&mut c, if float { "found" } else { "" }, cand);
                if float {
                    // (-1: no value but NaN.)
                    c.step("", Op::Binary(BinaryOp::Max), vec![found, i64s("zero", 0.0)])
                } else {
                    found
                }
            } else {
                let neg = c.step("neg_indices", Op::Unary(UnaryOp::Neg), vec![idx]);
                let found = first_hit_negated(&mut c, "", hit, neg, axes.clone(), keepdims);
                let first = c.step(if float { "first" } else { "" }, Op::Unary(UnaryOp::Neg), vec![found]);
                if float {
                    // (i32::MAX: no value but NaN.)
                    let nothing = c.step(
                        "nothing",
                        Op::Binary(BinaryOp::Equal),
                        vec![first.clone(), i64s("max", i32::MAX as f64)],
                    );
                    c.step("", Op::Where, vec![nothing, i64s("zero", 0.0), first])
                } else {
                    first
                }
            }
        }
        "Sign" => {
            // 1 above zero, -1 below, the value itself otherwise (zero, and NaN).
            let t = c.ty(0)?;
            if t.dtype == DType::Bool {
                return Err("Sign needs numbers, got bool".into());
            }
            let (one, minus, zero) = (scalar(t.dtype, 1.0), scalar(t.dtype, -1.0), scalar(t.dtype, 0.0));
            let pos =
                c.step("pos", Op::Binary(BinaryOp::Greater), vec![input(0), Src::Known("zero".into(), zero.clone())]);
            let neg = c.step("neg", Op::Binary(BinaryOp::Less), vec![input(0), Src::Known("zero".into(), zero)]);
            let low = c.step("low", Op::Where, vec![neg, Src::Known("minus_one".into(), minus), input(0)]);
            c.step("", Op::Where, vec![pos, Src::Known("one".into(), one), low])
        }
        "Xor" => {
            // Booleans: true where they differ.
            if c.ty(0)?.dtype != DType::Bool || c.ty(1)?.dtype != DType::Bool {
                return Err(format!("Xor needs booleans, got {} and {}", c.ty(0)?.dtype, c.ty(1)?.dtype));
            }
            let same = c.step("same", Op::Binary(BinaryOp::Equal), vec![input(0), input(1)]);
            c.step("", Op::Unary(UnaryOp::Not), vec![same])
        }
        "Softmax" | "LogSoftmax" | "Hardmax" if c.env.opset() < 13 => legacy_softmax(&mut c, op, attrs)?,
        "Softmax" => c.step("", Op::Softmax { axis: attrs.int("axis").unwrap_or(-1) }, vec![input(0)]),
        "LogSoftmax" => activations::log_softmax(&mut c, attrs.int("axis").unwrap_or(-1))?,
        "CumSum" => {
            let a = c.ints(1, "axis")?;
            let [axis] = a.as_slice() else { return Err("the CumSum axis must be a scalar".into()) };
            let exclusive = attrs.int("exclusive").unwrap_or(0) != 0;
            let reverse = attrs.int("reverse").unwrap_or(0) != 0;
            c.step("", Op::CumSum { axis: *axis, exclusive, reverse }, vec![input(0)])
        }
        "RMSNormalization" => llm::rms_normalization(&mut c, attrs)?,
        // onnxruntime's RMS norm (registered in the default domain; its transformer optimizer
        // writes it): RMSNormalization's semantics, its inverse deviation output not modelled.
        "SimplifiedLayerNormalization" => {
            let y = llm::rms_normalization(&mut c, attrs)?;
            return Ok(c.done([Some(y)].into_iter().chain((1..nout).map(|_| None)).collect()));
        }
        "Einsum" => einsum::einsum(&mut c, attrs)?,
        "OneHot" => one_hot::one_hot(&mut c, attrs)?,
        "Hardmax" => one_hot::hardmax(&mut c, attrs)?,
        "RotaryEmbedding" => llm::rotary_embedding(&mut c, attrs)?,
        "Attention" => return llm::attention(&mut c, attrs).map(|outs| c.done(outs)),
        "TopK" => return topk::top_k(&mut c, attrs).map(|outs| c.done(outs)),
        "LayerNormalization" => {
            let axis = attrs.int("axis").unwrap_or(-1);
            let epsilon = attrs.float("epsilon").unwrap_or(1e-5);
            let (scale, bias) = (c.has(1), c.has(2));
            let ins = [(true, 0), (scale, 1), (bias, 2)].into_iter().filter(|p| p.0).map(|p| input(p.1)).collect();
            let y = c.step("", Op::LayerNorm { axis, epsilon, scale, bias }, ins);
            // The mean and inverse deviation outputs are not modelled.
            return Ok(c.done([Some(y)].into_iter().chain((1..nout).map(|_| None)).collect()));
        }
        _ => return Ok(None),
    };
    Ok(c.done(vec![Some(out)]))
}

/// The softmax family before opset 13: the input viewed as 2-D at `axis` (default 1: the dims
/// before it, and the dims from it on, each multiplied together), the op along the second,
/// viewed back. Along the last axis (the exporters' `dim=-1`) that is the op along it, as
/// from opset 13; otherwise Softmax is computed so, and the other two are refused naming
/// the node.
fn legacy_softmax(c: &mut Ctx, op: &str, attrs: &Attrs) -> Result<Src, String> {
    let t = c.ty(0)?;
    let r = t.rank();
    if r == 0 {
        return Err(format!("{op} of a scalar"));
    }
    let a = ax(attrs.int("axis").unwrap_or(1), r)?;
    if a == r - 1 {
        return match op {
            "Softmax" => Ok(c.step("", Op::Softmax { axis: -1 }, vec![Src::In(0)])),
            "LogSoftmax" => activations::log_softmax(c, -1),
            _ => {
                let mut m = attrs.0.clone();
                m.remove("axis");
                one_hot::hardmax(c, &Attrs(m))
            }
        };
    }
    if op != "Softmax" {
        return Err(format!(
            "opset {}'s {op} over axis {a} of {t} (the dims from it on flattened into one) is not supported",
            c.env.opset()
        ));
    }
    let product = |dims: &[Dim]| -> Result<DimExpr, String> {
        dims.iter().try_fold(DimExpr::constant(1), |acc, d| acc.mul(&d.expr()))
    };
    let flat = vec![product(&t.shape[..a])?, product(&t.shape[a..])?];
    let v = c.step("flat", Op::Reshape { shape: flat }, vec![Src::In(0)]);
    let s = c.step("softmax", Op::Softmax { axis: -1 }, vec![v]);
    Ok(c.step("", Op::Reshape { shape: t.shape.iter().map(Dim::expr).collect() }, vec![s]))
}

/// `Pad` in edge, reflect or wrap mode: along each padded axis of size n, the input gathered
/// at the positions `-before .. n + after` mapped into `0 .. n`: clamped (edge), reflected
/// about 0 and n - 1 without repeating them, `(n - 1) - |(n - 1) - |p||` (reflect: each pad
/// less than n, so n must be known), or modulo n (wrap). The index arithmetic is a program
/// of the elementwise fusion, symbolic sizes included.
fn pad_by_index(c: &mut Ctx, t: &TensorType, axes: &[usize], pads: &[i64], mode: &str) -> Result<Src, String> {
    let mut v = Src::In(0);
    for (j, &a) in axes.iter().enumerate() {
        let (before, after) = (pads[j], pads[j + axes.len()]);
        if before == 0 && after == 0 {
            continue;
        }
        match (mode, t.shape[a].fixed()) {
            (_, Some(0)) => return Err(format!("axis {a} of {t} is empty: nothing to pad it with in {mode} mode")),
            ("reflect", None) => {
                return Err(format!(
                    "reflect mode needs the size of axis {a} of {t} known at load time (each pad must be less than it)"
                ))
            }
            ("reflect", Some(size)) if before.max(after) as u64 >= size => {
                return Err(format!(
                    "reflect pads ({before}, {after}) of axis {a} of {t}: each must be less than its size, {size}"
                ))
            }
            _ => {}
        }
        let n = t.shape[a].expr();
        let last = n.sub(&DimExpr::constant(1))?;
        let known = |what: &str, e: DimExpr| Src::Known(format!("{a}.{what}"), Known::int_scalar(e));
        let range = Op::Range {
            start: DimExpr::constant(-before),
            limit: n.add(&DimExpr::constant(after))?,
            delta: 1,
            dtype: DType::I64,
        };
        let p = c.step(&format!("{a}.positions"), range, vec![]);
        let index = format!("{a}.index");
        let idx = match mode {
            "edge" => {
                let low = c.step(
                    &format!("{a}.low"),
                    Op::Binary(BinaryOp::Max),
                    vec![p, known("zero", DimExpr::constant(0))],
                );
                c.step(&index, Op::Binary(BinaryOp::Min), vec![low, known("last", last)])
            }
            "reflect" => {
                let q = c.step(&format!("{a}.reflected"), Op::Unary(UnaryOp::Abs), vec![p]);
                let d =
                    c.step(&format!("{a}.to_last"), Op::Binary(BinaryOp::Sub), vec![known("last", last.clone()), q]);
                let d = c.step(&format!("{a}.distance"), Op::Unary(UnaryOp::Abs), vec![d]);
                c.step(&index, Op::Binary(BinaryOp::Sub), vec![known("last_again", last), d])
            }
            _ => c.step(&index, Op::Binary(BinaryOp::Mod), vec![p, known("size", n)]),
        };
        v = c.step(&format!("{a}"), Op::Gather { axis: a as i64 }, vec![v, idx]);
    }
    // (All pads zero: the input itself, as Identity.)
    Ok(v)
}

/// `x` under an order-reversing map of its dtype onto itself: `-x` for floats (exact, NaN
/// kept), `-1 - x` for integers (one's complement: `-x` would wrap at the most negative
/// value, `-1 - x` takes it to the most positive). Applied twice it is the identity, so the
/// smallest of some values is the mirrored largest of the mirrored values.
fn mirror(c: &mut Ctx, name: &str, x: Src, dtype: DType) -> Src {
    if dtype.is_float() {
        c.step(name, Op::Unary(UnaryOp::Neg), vec![x])
    } else {
        c.step(name, Op::Binary(BinaryOp::Sub), vec![Src::Known("minus_one".into(), scalar(dtype, -1.0)), x])
    }
}

/// `cap · tanh(x / cap)` (an attention's soft cap), in `dtype`.
fn soft_cap(c: &mut Ctx, x: Src, dtype: DType, cap: f64) -> Src {
    let k = |what: &str| Src::Known(what.into(), scalar(dtype, cap));
    let x = c.step("capped", Op::Binary(BinaryOp::Div), vec![x, k("softcap")]);
    let x = tanh(c, "capped_tanh", x);
    c.step("capped_scores", Op::Binary(BinaryOp::Mul), vec![x, k("softcap_again")])
}

/// `tanh(x)`: the one place the importer spells that op (`tests/architecture.rs` counts the
/// files an op is spelled in), for the soft caps and `Mish`.
fn tanh(c: &mut Ctx, name: &str, x: Src) -> Src {
    c.step(name, Op::Unary(UnaryOp::Tanh), vec![x])
}

/// A `Range` of floats: its bounds must be known numbers.
fn range_of_floats(c: &Ctx) -> Result<Src, String> {
    let num = |i: usize| -> Result<f64, String> {
        let k = c.known(i).ok_or_else(|| data_dependent("Range bounds", i))?;
        match &k.vals {
            KVals::Float(v) if v.len() == 1 => Ok(v[0] as f64),
            _ => Err("a Range of floats needs scalar float bounds".into()),
        }
    };
    let (start, limit, delta) = (num(0)?, num(1)?, num(2)?);
    if delta == 0.0 || !delta.is_finite() {
        return Err(format!("Range delta {delta} must be finite and not 0"));
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if !n.is_finite() || n > super::known::FOLD_LIMIT as f64 {
        return Err(format!("a Range of floats from {start} to {limit} by {delta} is too long to hold"));
    }
    let v: Vec<f32> = (0..n as usize).map(|i| (start + i as f64 * delta) as f32).collect();
    let len = v.len();
    Ok(Src::Known("range".into(), Known::new(c.ty(0)?.dtype, vec![len], KVals::Float(v))))
}

/// The value of a `Constant` node (any of its value attributes; a tensor in external data
/// anchored at `dir`, as an initializer's).
fn constant_attr(attrs: &Attrs, dir: &std::path::Path) -> Result<Known, String> {
    if let Some(t) = attrs.tensor("value") {
        return super::decode_tensor(t, Some(dir));
    }
    if let Some(f) = attrs.float("value_float") {
        return Ok(scalar(DType::F32, f as f64));
    }
    if let Some(i) = attrs.int("value_int") {
        return Ok(Known::new(DType::I64, vec![], KVals::Int(vec![i])));
    }
    if let Some(v) = attrs.0.get("value_ints") {
        return Ok(Known::new(DType::I64, vec![v.ints.len()], KVals::Int(v.ints.clone())));
    }
    if let Some(v) = attrs.0.get("value_floats") {
        return Ok(Known::new(DType::F32, vec![v.floats.len()], KVals::Float(v.floats.clone())));
    }
    Err("a Constant without a tensor, float(s) or int(s) value is not supported".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(s: &str) -> DimExpr {
        DimExpr::parse(s).unwrap()
    }

    #[test]
    fn slice_bounds_follow_onnx() {
        let f = |d: u64, s: i64, en: i64, st: i64| {
            let (a, b) = slice_bounds(&Dim::Fixed(d), &DimExpr::constant(s), &DimExpr::constant(en), st).unwrap();
            (a.fixed().unwrap(), b.fixed().unwrap())
        };
        assert_eq!(f(8, 0, 4, 1), (0, 4));
        assert_eq!(f(8, 4, i64::MAX, 1), (4, 4));
        assert_eq!(f(8, -3, -1, 1), (5, 2));
        assert_eq!(f(8, -100, 100, 1), (0, 8));
        assert_eq!(f(8, 6, 2, 1), (6, 0));
        assert_eq!(f(8, 1, 8, 3), (1, 3));
        assert_eq!(f(8, -1, i64::MIN, -1), (7, 8));
        assert_eq!(f(8, 6, 1, -2), (6, 3));
        assert_eq!(f(8, 100, -100, -1), (7, 8));
        assert_eq!(f(0, -1, i64::MIN, -1), (0, 0));
        // Symbolic: `past .. past + new` of a [past + new] axis; the rest of a symbolic axis.
        let d = Dim::parse("past + new").unwrap();
        let (s, l) = slice_bounds(&d, &e("past"), &DimExpr::constant(i64::MAX), 1).unwrap();
        assert_eq!((s, l), (Dim::sym("past"), Dim::sym("new")));
        let (s, l) = slice_bounds(&Dim::sym("seq"), &DimExpr::constant(-1), &DimExpr::constant(i64::MAX), 1).unwrap();
        assert_eq!((s, l), (Dim::parse("seq - 1").unwrap(), Dim::Fixed(1)));
        let (s, l) = slice_bounds(&Dim::sym("seq"), &DimExpr::constant(-1), &DimExpr::constant(i64::MIN), -1).unwrap();
        assert_eq!((s, l), (Dim::parse("seq - 1").unwrap(), Dim::sym("seq")));
        // A bound of `-n` counts from the end: the last `q` rows of a `[q]` axis (T5's position
        // bias), the last `n` of a `[past + n]` one, all but the last `n`.
        let (s, l) = slice_bounds(&Dim::sym("q"), &e("-q"), &DimExpr::constant(i64::MAX), 1).unwrap();
        assert_eq!((s, l), (Dim::Fixed(0), Dim::sym("q")));
        let (s, l) = slice_bounds(&Dim::parse("past + n").unwrap(), &e("-n"), &DimExpr::constant(i64::MAX), 1).unwrap();
        assert_eq!((s, l), (Dim::sym("past"), Dim::sym("n")));
        let (s, l) = slice_bounds(&Dim::parse("past + n").unwrap(), &DimExpr::constant(0), &e("-n"), 1).unwrap();
        assert_eq!((s, l), (Dim::Fixed(0), Dim::sym("past")));
        assert!(slice_bounds(&Dim::Fixed(4), &DimExpr::constant(0), &DimExpr::constant(1), 0).is_err());
    }
}
