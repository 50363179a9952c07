//! Values the loader knows at load time ([`Known`]): initializers, constants, and what shape
//! arithmetic computes from them and from the (possibly symbolic) dims of other values.
//! Integers may be dim expressions (`Shape` of a `[1, new]` value gives `[1, new]`), so
//! `past + new` flows through `Add`, `Concat`, `Gather`, `Reshape` and the rest into the
//! attributes of the ops that need it.
//!
//! Folding ([`fold`]) evaluates one IR op on known inputs: through the interpreter's own
//! evaluation when every value is a plain number (so a folded value is exactly what the op
//! computes at run time), and through dim-expression arithmetic when some integer is
//! symbolic, for the ops shape arithmetic uses. What cannot be decided symbolically (is
//! `seq < past`?) is not folded: the op is built into the graph and runs.

use crate::ir::*;
use crate::shape::Bindings;
use crate::tensor::broadcast_index;
use glufuse_ir::ops::binary::BinaryKind;

/// Largest element count a folded value (and every input it is folded from) may have.
pub const FOLD_LIMIT: usize = 4096;
/// Largest initializer of floats that folding reads (weights are left to the run).
const FOLD_WEIGHT_LIMIT: usize = 64;

/// Known elements, in the representation the loader tracks them in.
#[derive(Clone, Debug, PartialEq)]
pub enum KVals {
    /// f32 and f16 values (f16 rounded).
    Float(Vec<f32>),
    /// Integers known as numbers.
    Int(Vec<i64>),
    /// Integers, some of them dim expressions.
    Sym(Vec<DimExpr>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl KVals {
    fn len(&self) -> usize {
        match self {
            KVals::Float(v) => v.len(),
            KVals::Int(v) => v.len(),
            KVals::Sym(v) => v.len(),
            KVals::Bool(v) => v.len(),
        }
    }
}

/// A tensor whose values are known at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct Known {
    /// Element type.
    pub dtype: DType,
    /// Dims (always known: a known tensor has a known element count).
    pub dims: Vec<usize>,
    /// The values.
    pub vals: KVals,
    /// Whether it is an initializer of the model (a weight), not a computed value.
    pub init: bool,
}

impl Known {
    /// A known value; `Sym` values that are all constants become `Int`.
    pub fn new(dtype: DType, dims: Vec<usize>, vals: KVals) -> Known {
        let vals = match vals {
            KVals::Sym(v) if v.iter().all(|e| e.as_const().is_some()) => {
                KVals::Int(v.iter().map(|e| e.as_const().expect("checked")).collect())
            }
            v => v,
        };
        Known { dtype, dims, vals, init: false }
    }

    /// A scalar integer (i64).
    pub fn int_scalar(v: DimExpr) -> Known {
        Known::new(DType::I64, vec![], KVals::Sym(vec![v]))
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.vals.len()
    }

    /// Its type.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype, self.dims.iter().map(|&d| Dim::Fixed(d as u64)).collect())
    }

    /// Whether some value is a dim expression rather than a number.
    pub fn is_symbolic(&self) -> bool {
        matches!(self.vals, KVals::Sym(_))
    }

    /// The integers, as expressions.
    pub fn exprs(&self) -> Option<Vec<DimExpr>> {
        match &self.vals {
            KVals::Int(v) => Some(v.iter().map(|&x| DimExpr::constant(x)).collect()),
            KVals::Sym(v) => Some(v.clone()),
            KVals::Float(_) | KVals::Bool(_) => None,
        }
    }

    /// The one value of a one-element integer tensor, as an expression.
    #[cfg(test)]
    pub fn scalar_expr(&self) -> Option<DimExpr> {
        self.exprs().filter(|v| v.len() == 1).map(|mut v| v.remove(0))
    }

    /// The value as a tensor, when it holds no dim expression.
    pub fn to_tensor(&self) -> Option<Tensor> {
        let data = match &self.vals {
            KVals::Float(v) => Data::F32(v.clone()),
            KVals::Int(v) => Data::I64(v.clone()),
            KVals::Bool(v) => Data::Bool(v.clone()),
            KVals::Sym(_) => return None,
        };
        Tensor::from_data(self.dtype, self.dims.clone(), data).ok()
    }

    /// A known value from a tensor.
    pub fn from_tensor(t: Tensor) -> Known {
        let (dtype, dims) = (t.dtype(), t.shape().to_vec());
        let vals = match t.into_data() {
            Data::F32(v) => KVals::Float(v),
            Data::I64(v) => KVals::Int(v),
            Data::Bool(v) => KVals::Bool(v),
        };
        Known::new(dtype, dims, vals)
    }

    /// Whether its floats are held as a weight (f32 values): an initializer of several, or
    /// any tensor too large to fold (a big `Constant`, never widened to a constant's f64s).
    fn is_weight(&self) -> bool {
        matches!(&self.vals, KVals::Float(v) if v.len() > 1 && (self.init || v.len() > FOLD_LIMIT))
    }

    /// The IR op holding this value: a weight for an initializer of several floats (or a
    /// large tensor of floats), a constant for numbers and booleans, a symbolic constant for
    /// dim expressions.
    pub fn to_op(&self) -> Op {
        match &self.vals {
            KVals::Float(v) if self.is_weight() => Op::Weight(WeightInit::Data(v.clone())),
            KVals::Float(v) => Op::Constant(ConstValues::Float(v.iter().map(|&x| x as f64).collect())),
            KVals::Int(v) => Op::Constant(ConstValues::Int(v.clone())),
            KVals::Sym(v) => Op::SymConstant(v.clone()),
            KVals::Bool(v) => Op::Constant(ConstValues::Bool(v.clone())),
        }
    }

    /// [`Known::to_op`], taking the values instead of copying them (a weight of gigabytes).
    pub fn into_op(self) -> Op {
        let weight = self.is_weight();
        match self.vals {
            KVals::Float(v) if weight => Op::Weight(WeightInit::Data(v)),
            KVals::Float(v) => Op::Constant(ConstValues::Float(v.into_iter().map(f64::from).collect())),
            KVals::Int(v) => Op::Constant(ConstValues::Int(v)),
            KVals::Sym(v) => Op::SymConstant(v),
            KVals::Bool(v) => Op::Constant(ConstValues::Bool(v)),
        }
    }

    fn foldable(&self) -> bool {
        let n = self.numel();
        n <= FOLD_LIMIT && !(self.init && matches!(self.vals, KVals::Float(_)) && n > FOLD_WEIGHT_LIMIT)
    }
}

/// Folds `op` applied to known inputs: `Ok(None)` when it is not to be folded (too large, a
/// weight, or an undecidable symbolic question), an error when the op is wrong for these
/// inputs (the loader names the node).
pub fn fold(op: &Op, ins: &[&Known], declared: &[TensorType]) -> Result<Option<Vec<Known>>, String> {
    if ins.iter().any(|k| !k.foldable()) {
        return Ok(None);
    }
    let tys: Vec<TensorType> = ins.iter().map(|k| k.ty()).collect();
    let refs: Vec<&TensorType> = tys.iter().collect();
    let outs = op.infer(&refs, declared)?;
    let mut shapes = vec![];
    for t in &outs {
        // A symbolic output dim (a range of `seq` values) is not a known value.
        let Some(s) = t.shape.iter().map(|d| d.fixed().map(|n| n as usize)).collect::<Option<Vec<_>>>() else {
            return Ok(None);
        };
        if s.iter().product::<usize>() > FOLD_LIMIT {
            return Ok(None);
        }
        shapes.push(s);
    }
    if ins.iter().all(|k| !k.is_symbolic()) {
        let tensors: Vec<Tensor> = ins.iter().map(|k| k.to_tensor().expect("not symbolic")).collect();
        let refs: Vec<&Tensor> = tensors.iter().collect();
        let out = op.eval(&refs, &outs, &shapes, &Bindings::new())?;
        return Ok(Some(out.into_iter().map(Known::from_tensor).collect()));
    }
    Ok(fold_symbolic(op, ins, &outs, &shapes))
}

/// The positions of the elements an op that only moves elements reads, found by running it
/// on tensors of element positions: the inputs marked in `numbered` are replaced by their
/// positions (each input's numbered after the previous ones'), the others (indices,
/// conditions) are used as they are and must be plain numbers.
fn positions(
    op: &Op,
    ins: &[&Known],
    numbered: &[bool],
    outs: &[TensorType],
    shapes: &[Vec<usize>],
) -> Option<Vec<Vec<usize>>> {
    let mut at = 0i64;
    let mut tensors = vec![];
    for (k, &num) in ins.iter().zip(numbered) {
        if num {
            let n = k.numel() as i64;
            tensors.push(Tensor::i64(k.dims.clone(), (at..at + n).collect()).ok()?);
            at += n;
        } else {
            tensors.push(k.to_tensor()?);
        }
    }
    let refs: Vec<&Tensor> = tensors.iter().collect();
    let int_outs: Vec<TensorType> = outs.iter().map(|t| TensorType::new(DType::I64, t.shape.clone())).collect();
    let out = op.eval(&refs, &int_outs, shapes, &Bindings::new()).ok()?;
    out.iter().map(|t| t.as_i64().map(|v| v.iter().map(|&x| x as usize).collect())).collect()
}

/// Folds ops over dim expressions: those that move elements (any op whose inputs past the
/// first are plain numbers), and integer arithmetic and comparisons that can be decided.
fn fold_symbolic(op: &Op, ins: &[&Known], outs: &[TensorType], shapes: &[Vec<usize>]) -> Option<Vec<Known>> {
    // The integers of the inputs `numbered` marks, in order, and the op's outputs built from
    // the positions it reads.
    let moved = |numbered: &[bool]| -> Option<Vec<Known>> {
        let mut all = vec![];
        for (k, &num) in ins.iter().zip(numbered) {
            if num {
                all.extend(k.exprs()?);
            }
        }
        let pos = positions(op, ins, numbered, outs, shapes)?;
        let known =
            pos.into_iter().zip(outs).zip(shapes).map(|((p, t), s)| {
                Known::new(t.dtype, s.clone(), KVals::Sym(p.iter().map(|&i| all[i].clone()).collect()))
            });
        Some(known.collect())
    };
    let every = vec![true; ins.len()];
    let all: Vec<DimExpr> = ins.iter().flat_map(|k| k.exprs().unwrap_or_default()).collect();
    match op {
        Op::Reshape { .. }
        | Op::Expand { .. }
        | Op::Transpose { .. }
        | Op::Split { .. }
        | Op::Slice { .. }
        | Op::Concat { .. } => moved(&every),
        // The indices must be numbers: only the data moves.
        Op::Gather { .. } | Op::GatherND { .. } => moved(&[true, false]),
        // The data and the updates move; the indices must be numbers.
        Op::ScatterND | Op::ScatterElements { .. } => moved(&[true, false, true]),
        // The condition must be known; both branches are integers.
        Op::Where => moved(&[false, true, true]),
        Op::Binary(b) => {
            let (x, y) = (ins[0].exprs()?, ins[1].exprs()?);
            let ix = broadcast_index(&shapes[0], &ins[0].dims);
            let iy = broadcast_index(&shapes[0], &ins[1].dims);
            let pairs = ix.iter().zip(&iy).map(|(&i, &j)| (&x[i], &y[j]));
            match b.kind() {
                BinaryKind::Arith => {
                    let v = pairs.map(|(a, c)| sym_arith(*b, a, c)).collect::<Option<Vec<_>>>()?;
                    Some(vec![Known::new(outs[0].dtype, shapes[0].clone(), KVals::Sym(v))])
                }
                BinaryKind::Compare => {
                    let v = pairs.map(|(a, c)| sym_compare(*b, a, c)).collect::<Option<Vec<_>>>()?;
                    Some(vec![Known::new(DType::Bool, shapes[0].clone(), KVals::Bool(v))])
                }
                BinaryKind::Logic => None,
            }
        }
        Op::Unary(UnaryOp::Neg) => {
            let v = all.iter().map(|e| e.neg().ok()).collect::<Option<Vec<_>>>()?;
            Some(vec![Known::new(outs[0].dtype, shapes[0].clone(), KVals::Sym(v))])
        }
        Op::Unary(UnaryOp::Abs) => {
            let v = all.iter().map(|e| e.is_nonnegative().then(|| e.clone())).collect::<Option<Vec<_>>>()?;
            Some(vec![Known::new(outs[0].dtype, shapes[0].clone(), KVals::Sym(v))])
        }
        // Integer to integer: dims fit an i32 (the run checks every size it binds).
        Op::Cast { to } if to.is_int() => Some(vec![Known::new(*to, shapes[0].clone(), KVals::Sym(all))]),
        // What dim expressions cannot say: their other unary ops, casts to floats or bools,
        // reductions, and the ops of floats.
        Op::Unary(_)
        | Op::Cast { .. }
        | Op::Input
        | Op::Weight(_)
        | Op::QuantWeight(_)
        | Op::Constant(_)
        | Op::SymConstant(_)
        | Op::MatMul
        | Op::Reduce { .. }
        | Op::Softmax { .. }
        | Op::CumSum { .. }
        | Op::TopK { .. }
        | Op::LayerNorm { .. }
        | Op::Range { .. }
        | Op::FusedGateUp(_)
        | Op::Elementwise(_)
        | Op::Attention(_)
        | Op::Opaque { .. } => None,
    }
}

/// Integer arithmetic over dim expressions, where it is exact.
fn sym_arith(op: BinaryOp, a: &DimExpr, b: &DimExpr) -> Option<DimExpr> {
    match op {
        BinaryOp::Add => a.add(b).ok(),
        BinaryOp::Sub => a.sub(b).ok(),
        BinaryOp::Mul => a.mul(b).ok(),
        // ONNX divides integers toward zero; for a non-negative dividend that is floor division.
        BinaryOp::Div => match b.as_const() {
            Some(c) if c > 0 && a.is_nonnegative() => a.floor_div(c).ok(),
            _ => a.div_exact(b),
        },
        BinaryOp::Max | BinaryOp::Min => {
            if a == b {
                return Some(a.clone());
            }
            // Whichever is larger by a non-negative difference.
            let (hi, lo) = if a.sub(b).ok()?.is_nonnegative() {
                (a, b)
            } else if b.sub(a).ok()?.is_nonnegative() {
                (b, a)
            } else {
                return None;
            };
            Some(if op == BinaryOp::Max { hi.clone() } else { lo.clone() })
        }
        BinaryOp::Pow
        | BinaryOp::Equal
        | BinaryOp::Less
        | BinaryOp::LessOrEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterOrEqual
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Mod
        | BinaryOp::FMod => None,
    }
}

/// A comparison of dim expressions, where the sign of their difference is known (dims are
/// never negative: `seq + 1 > 0` always, `seq == -1` never).
fn sym_compare(op: BinaryOp, a: &DimExpr, b: &DimExpr) -> Option<bool> {
    let d = a.sub(b).ok()?;
    // Sign of d: Some(0), Some(1) for > 0, Some(-1) for < 0, or what is known of it.
    let positive = |e: &DimExpr| e.is_nonnegative() && e.eval(&|_| Some(0)).is_ok_and(|v| v > 0);
    let (ge0, gt0, le0, lt0) =
        (d.is_nonnegative(), positive(&d), d.neg().ok()?.is_nonnegative(), positive(&d.neg().ok()?));
    let known = |yes: bool, no: bool| -> Option<bool> {
        if yes {
            Some(true)
        } else if no {
            Some(false)
        } else {
            None
        }
    };
    match op {
        BinaryOp::Equal => known(d.as_const() == Some(0), gt0 || lt0),
        BinaryOp::Less => known(lt0, ge0),
        BinaryOp::LessOrEqual => known(le0, gt0),
        BinaryOp::Greater => known(gt0, le0),
        BinaryOp::GreaterOrEqual => known(ge0, lt0),
        BinaryOp::Add
        | BinaryOp::Sub
        | BinaryOp::Mul
        | BinaryOp::Div
        | BinaryOp::Pow
        | BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::And
        | BinaryOp::Or
        | BinaryOp::Mod
        | BinaryOp::FMod => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str) -> DimExpr {
        DimExpr::parse(s).unwrap()
    }

    fn vec1(v: Vec<DimExpr>) -> Known {
        let n = v.len();
        Known::new(DType::I64, vec![n], KVals::Sym(v))
    }

    #[test]
    fn shape_arithmetic_folds_through_dim_expressions() {
        let shape = vec1(vec![DimExpr::constant(1), sym("new")]);
        let past = Known::int_scalar(sym("past"));
        // new + past, as Add over scalars gives it.
        let new = fold(&Op::Gather { axis: 0 }, &[&shape, &Known::new(DType::I64, vec![], KVals::Int(vec![1]))], &[])
            .unwrap()
            .unwrap()
            .remove(0);
        assert_eq!(new.scalar_expr(), Some(sym("new")));
        let all = fold(&Op::Binary(BinaryOp::Add), &[&past, &new], &[]).unwrap().unwrap().remove(0);
        assert_eq!(all.scalar_expr(), Some(sym("past + new")));
        // Concat into a shape vector, and a reshape of it.
        let one = Known::new(DType::I64, vec![1], KVals::Int(vec![1]));
        let r = fold(&Op::Reshape { shape: vec![DimExpr::constant(-1)] }, &[&all], &[]).unwrap().unwrap().remove(0);
        let v = fold(&Op::Concat { axis: 0 }, &[&one, &r], &[]).unwrap().unwrap().remove(0);
        assert_eq!(v.exprs().unwrap(), vec![DimExpr::constant(1), sym("past + new")]);
        // Comparisons decided by sign, or not at all.
        let minus1 = Known::new(DType::I64, vec![], KVals::Int(vec![-1]));
        let eq = fold(&Op::Binary(BinaryOp::Equal), &[&new, &minus1], &[]).unwrap().unwrap().remove(0);
        assert_eq!(eq.vals, KVals::Bool(vec![false]));
        assert_eq!(fold(&Op::Binary(BinaryOp::Less), &[&new, &past], &[]).unwrap(), None);
        let ge = fold(&Op::Binary(BinaryOp::GreaterOrEqual), &[&all, &past], &[]).unwrap().unwrap().remove(0);
        assert_eq!(ge.vals, KVals::Bool(vec![true]));
        // Division: exact, or floor of a non-negative value by a positive constant.
        let two = Known::new(DType::I64, vec![], KVals::Int(vec![2]));
        let half = fold(&Op::Binary(BinaryOp::Div), &[&all, &two], &[]).unwrap().unwrap().remove(0);
        assert_eq!(half.scalar_expr(), Some(sym("(past + new) // 2")));
        let neg = Known::int_scalar(sym("0 - new"));
        assert_eq!(fold(&Op::Binary(BinaryOp::Div), &[&neg, &two], &[]).unwrap(), None);
        // Max with a constant below every dim.
        let zero = Known::new(DType::I64, vec![], KVals::Int(vec![0]));
        let m = fold(&Op::Binary(BinaryOp::Max), &[&zero, &new], &[]).unwrap().unwrap().remove(0);
        assert_eq!(m.scalar_expr(), Some(sym("new")));
        // Where with a known condition picks symbolic branches.
        let c = Known::new(DType::Bool, vec![2], KVals::Bool(vec![true, false]));
        let w =
            fold(&Op::Where, &[&c, &v, &Known::new(DType::I64, vec![], KVals::Int(vec![7]))], &[]).unwrap().unwrap();
        assert_eq!(w[0].exprs().unwrap(), vec![DimExpr::constant(1), DimExpr::constant(7)]);
    }

    #[test]
    fn numbers_fold_through_the_interpreter_and_weights_do_not() {
        let a = Known::new(DType::F32, vec![2], KVals::Float(vec![1.5, -2.0]));
        let c = fold(&Op::Cast { to: DType::I64 }, &[&a], &[]).unwrap().unwrap().remove(0);
        assert_eq!(c.vals, KVals::Int(vec![1, -2]));
        let mut w = Known::new(DType::F32, vec![100], KVals::Float(vec![0.0; 100]));
        w.init = true;
        assert_eq!(fold(&Op::Unary(UnaryOp::Neg), &[&w], &[]).unwrap(), None);
        let e = fold(&Op::Gather { axis: 0 }, &[&a, &Known::new(DType::I64, vec![], KVals::Int(vec![5]))], &[]);
        assert!(e.unwrap_err().contains("index 5"));
    }
}
