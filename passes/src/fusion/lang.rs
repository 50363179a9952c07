//! The e-graph language of the fusion pass and its analysis.
//!
//! Computation nodes mirror the IR's executable ops; helper nodes (`scale`, `offset`, `lin`,
//! `cols`, `glu`, `fgu`, ...) are canonical forms the rules introduce so that patterns stay
//! short. Values the pass does not look into (inputs, weights, opaque ops, reshapes) are
//! leaves named `vN_K` (node index N, output K). The analysis carries each class's tensor
//! type and, for scalars, its constant value.

use egg::{define_language, Analysis, DidMerge, EGraph, Id, Symbol};
use glufuse_ir::{Activation, BinaryOp, Dim, TensorType, UnaryOp};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

/// A scalar constant, held as the bits of an f64 so that it can be hashed and ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Const(u64);

impl Const {
    /// The constant `v`.
    pub fn new(v: f64) -> Self {
        Const(v.to_bits())
    }
    /// Its value.
    pub fn value(self) -> f64 {
        f64::from_bits(self.0)
    }
}

impl fmt::Display for Const {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.value())
    }
}

impl FromStr for Const {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        // Only plain decimal numbers: names such as `inf` stay symbols.
        if s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') {
            s.parse::<f64>().map(Const::new).map_err(|_| ())
        } else {
            Err(())
        }
    }
}

/// An activation named in a pattern: `act:silu`, `act:gelu_tanh`, ...
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActTag(pub Activation);

impl fmt::Display for ActTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "act:{}", self.0.name())
    }
}

impl FromStr for ActTag {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let name = s.strip_prefix("act:").ok_or(())?;
        Activation::ALL.into_iter().find(|a| a.name() == name).map(ActTag).ok_or(())
    }
}

define_language! {
    /// The fusion pass's e-graph language. Each e-node is named by its string (the comments
    /// say what the others mean; the macro takes no doc comments on variants).
    #[allow(missing_docs)]
    pub enum Glu {
        // Computations, as in the IR.
        "matmul" = MatMul([Id; 2]),
        "add" = Add([Id; 2]),
        "sub" = Sub([Id; 2]),
        "mul" = Mul([Id; 2]),
        "div" = Div([Id; 2]),
        "pow" = Pow([Id; 2]),
        "neg" = Neg(Id),
        "exp" = Exp(Id),
        "sqrt" = Sqrt(Id),
        "erf" = Erf(Id),
        "tanh" = Tanh(Id),
        "sigmoid" = Sigmoid(Id),
        "relu" = Relu(Id),
        "silu" = Silu(Id),
        "gelu_tanh" = GeluTanh(Id),
        "gelu_erf" = GeluErf(Id),
        // A 2-D transpose (of a weight of rank 3, a matrix per row of x, its last two dims).
        "t" = T(Id),
        // `value[.., start..end]` on the last axis; start and end are constants.
        "slice" = Slice([Id; 3]),
        // Canonical forms introduced by rules.
        "scale" = Scale([Id; 2]),   // x · c, c a scalar constant
        "offset" = Offset([Id; 2]), // x + c, c a scalar constant
        "recip" = Recip(Id),        // 1 / x
        "cube" = Cube(Id),          // x³
        "gelu_arg" = GeluArg(Id),   // √(2/π)·(x + 0.044715·x³)
        "lin" = Lin([Id; 3]),       // x·W + b: x, weight descriptor, bias (or nobias)
        "cols" = Cols([Id; 3]),     // output features start..end of a weight or bias
        "nobias" = NoBias,
        "glu" = Glu([Id; 3]),       // act(g) · u: act tag, g, u
        "fgu" = Fgu([Id; 6]),       // fused: act, x, W_gate, b_gate, W_up, b_up
        // The root: every graph output, so that one extraction covers them all.
        "outputs" = Outputs(Box<[Id]>),
        Act(ActTag),
        Num(Const),
        Leaf(Symbol),
    }
}

/// The e-node of a unary op of the IR applied to class `a`; `None` for an op the language
/// does not look into (its value becomes a leaf).
pub fn unary(u: UnaryOp, a: Id) -> Option<Glu> {
    Some(match u {
        UnaryOp::Neg => Glu::Neg(a),
        UnaryOp::Exp => Glu::Exp(a),
        UnaryOp::Sqrt => Glu::Sqrt(a),
        UnaryOp::Erf => Glu::Erf(a),
        UnaryOp::Tanh => Glu::Tanh(a),
        UnaryOp::Sigmoid => Glu::Sigmoid(a),
        UnaryOp::Relu => Glu::Relu(a),
        UnaryOp::Silu => Glu::Silu(a),
        UnaryOp::GeluTanh => Glu::GeluTanh(a),
        UnaryOp::GeluErf => Glu::GeluErf(a),
        // `Reciprocal` is the canonical `recip` the rules write `1 / x` as.
        UnaryOp::Reciprocal => Glu::Recip(a),
        UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Tan
        | UnaryOp::Asin
        | UnaryOp::Acos
        | UnaryOp::Atan
        | UnaryOp::Sinh
        | UnaryOp::Cosh
        | UnaryOp::Asinh
        | UnaryOp::Acosh
        | UnaryOp::Atanh
        | UnaryOp::Log
        | UnaryOp::Abs
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Round
        | UnaryOp::Softplus
        | UnaryOp::Not
        | UnaryOp::IsNaN
        | UnaryOp::IsInf
        | UnaryOp::IsPosInf
        | UnaryOp::IsNegInf => return None,
    })
}

/// The e-node of a binary op of the IR applied to classes `ab`; `None` for an op the
/// language does not look into (its value becomes a leaf).
pub fn binary(b: BinaryOp, ab: [Id; 2]) -> Option<Glu> {
    Some(match b {
        BinaryOp::Add => Glu::Add(ab),
        BinaryOp::Sub => Glu::Sub(ab),
        BinaryOp::Mul => Glu::Mul(ab),
        BinaryOp::Div => Glu::Div(ab),
        BinaryOp::Pow => Glu::Pow(ab),
        BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Equal
        | BinaryOp::Less
        | BinaryOp::LessOrEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterOrEqual
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Mod
        | BinaryOp::FMod => return None,
    })
}

/// What the analysis knows about a class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    /// The tensor type, when it is a tensor (a scalar constant has none; a weight descriptor
    /// has its logical `[K, N]` type).
    pub ty: Option<TensorType>,
    /// The value, for a scalar constant.
    pub konst: Option<f64>,
}

/// The analysis: leaf types come from the graph being lowered.
#[derive(Default)]
pub struct TypeAnalysis {
    /// Types of the leaves, by symbol.
    pub leaf_types: HashMap<Symbol, TensorType>,
}

/// The e-graph type of the pass.
pub type GluGraph = EGraph<Glu, TypeAnalysis>;

fn last_dim_set(t: &TensorType, n: u64) -> TensorType {
    let mut t = t.clone();
    if let Some(d) = t.shape.last_mut() {
        *d = Dim::Fixed(n);
    }
    t
}

impl Analysis<Glu> for TypeAnalysis {
    type Data = Info;

    fn make(egraph: &mut GluGraph, enode: &Glu, _id: Id) -> Info {
        let ty = |i: &Id| egraph[*i].data.ty.clone();
        let k = |i: &Id| egraph[*i].data.konst;
        let same = |i: &Id| Info { ty: ty(i), konst: None };
        match enode {
            Glu::Num(c) => Info { ty: None, konst: Some(c.value()) },
            Glu::Leaf(s) => Info { ty: egraph.analysis.leaf_types.get(s).cloned(), konst: None },
            // A weight descriptor of rank 3 holds a matrix per row of x: x's type, its last
            // dim the matrices' width.
            Glu::Lin([a, b, _]) if ty(b).is_some_and(|t| t.rank() == 3) => {
                let ty = match (ty(a), ty(b)) {
                    (Some(x), Some(w)) => w.shape[2].fixed().map(|n| last_dim_set(&x, n)),
                    _ => None,
                };
                Info { ty, konst: None }
            }
            Glu::MatMul([a, b]) | Glu::Lin([a, b, _]) => {
                let ty = match (ty(a), ty(b)) {
                    (Some(a), Some(b)) => glufuse_ir::Op::MatMul.infer(&[&a, &b], &[]).ok().map(|mut v| v.remove(0)),
                    _ => None,
                };
                Info { ty, konst: None }
            }
            Glu::Add([a, b]) | Glu::Sub([a, b]) | Glu::Mul([a, b]) | Glu::Div([a, b]) | Glu::Pow([a, b]) => {
                let ty = match (ty(a), ty(b)) {
                    (Some(x), Some(y)) => {
                        glufuse_ir::shape::broadcast(&x.shape, &y.shape).ok().map(|s| TensorType::new(x.dtype, s))
                    }
                    (Some(x), None) | (None, Some(x)) => Some(x),
                    (None, None) => None,
                };
                let konst = match (enode, k(a), k(b)) {
                    (Glu::Add(_), Some(x), Some(y)) => Some(x + y),
                    (Glu::Sub(_), Some(x), Some(y)) => Some(x - y),
                    (Glu::Mul(_), Some(x), Some(y)) => Some(x * y),
                    (Glu::Div(_), Some(x), Some(y)) => Some(x / y),
                    _ => None,
                };
                Info { ty, konst }
            }
            Glu::Neg(a) => Info { ty: ty(a), konst: k(a).map(|v| -v) },
            Glu::Exp(a) | Glu::Sqrt(a) | Glu::Erf(a) | Glu::Tanh(a) | Glu::Sigmoid(a) | Glu::Relu(a) | Glu::Silu(a) => {
                same(a)
            }
            Glu::GeluTanh(a) | Glu::GeluErf(a) | Glu::Recip(a) | Glu::Cube(a) | Glu::GeluArg(a) => same(a),
            Glu::Scale([a, _]) | Glu::Offset([a, _]) => same(a),
            // The last two dims swapped (a 2-D transpose; of rank 3, a matrix per row of x).
            Glu::T(a) => Info {
                ty: ty(a).filter(|t| matches!(t.rank(), 2 | 3)).map(|t| {
                    let mut s = t.shape.clone();
                    let r = s.len();
                    s.swap(r - 2, r - 1);
                    TensorType::new(t.dtype, s)
                }),
                konst: None,
            },
            Glu::Slice([a, s, e]) | Glu::Cols([a, s, e]) => {
                let ty = match (ty(a), k(s), k(e)) {
                    (Some(t), Some(s), Some(e)) if e >= s => Some(last_dim_set(&t, (e - s) as u64)),
                    _ => None,
                };
                Info { ty, konst: None }
            }
            Glu::Glu([_, g, _]) => same(g),
            Glu::Fgu([_, x, wg, _, _, _]) => {
                let ty = match (ty(x), ty(wg)) {
                    (Some(x), Some(w)) if matches!(w.rank(), 2 | 3) => {
                        Some(last_dim_set(&x, w.shape[w.rank() - 1].fixed().unwrap_or(0)))
                    }
                    _ => None,
                };
                Info { ty, konst: None }
            }
            Glu::NoBias | Glu::Act(_) | Glu::Outputs(_) => Info::default(),
        }
    }

    fn merge(&mut self, a: &mut Info, b: Info) -> DidMerge {
        let mut changed_a = false;
        if a.ty.is_none() && b.ty.is_some() {
            a.ty = b.ty.clone();
            changed_a = true;
        }
        if a.konst.is_none() && b.konst.is_some() {
            a.konst = b.konst;
            changed_a = true;
        }
        DidMerge(changed_a, a.ty != b.ty || a.konst != b.konst)
    }
}

/// Bytes a class's value occupies, symbolic dims counted as 1 (for cost comparisons only).
pub fn bytes_of(t: &TensorType) -> f64 {
    let n: f64 = t.shape.iter().map(|d| d.fixed().unwrap_or(1) as f64).product();
    n * t.dtype.size() as f64
}

/// Whether two types are equal in shape and dtype.
pub fn same_type(a: &Option<TensorType>, b: &Option<TensorType>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x == y)
}
