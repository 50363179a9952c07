//! ONNX's parametric activations and the reductions that are a function of a sum or a
//! maximum, as ops glufuse already has (comparisons, `Where`, `Exp`, `Max`, `Min`, sums): each
//! as the operator's definition spells it, so that the elementwise fusion makes a program of
//! it. Floats only, but for the sums of integers (`ReduceSumSquare`, `ReduceL1`).

use super::*;

/// A float constant of `dtype`, named after what it is.
fn k(what: &str, dtype: DType, v: f64) -> Src {
    Src::Known(what.into(), scalar(dtype, v))
}

/// The activations: `LeakyRelu`, `PRelu`, `Elu`, `Selu`, `Celu`, `ThresholdedRelu`,
/// `HardSigmoid`, `HardSwish`, `Softsign` and `Mish`; `None` for any other op.
pub(super) fn activation(c: &mut Ctx, op: &str, attrs: &Attrs) -> Option<Result<Src, String>> {
    let names = [
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Selu",
        "Celu",
        "ThresholdedRelu",
        "HardSigmoid",
        "HardSwish",
        "Softsign",
        "Mish",
    ];
    if !names.contains(&op) {
        return None;
    }
    Some(activation_of(c, op, attrs))
}

fn activation_of(c: &mut Ctx, op: &str, attrs: &Attrs) -> Result<Src, String> {
    let t = c.ty(0)?.dtype;
    if !t.is_float() {
        return Err(format!("{op} of {t} (floats only)"));
    }
    let x = Src::In(0);
    let f = |name: &str, default: f32| attrs.float(name).unwrap_or(default) as f64;
    let bin = |c: &mut Ctx, name: &str, b: BinaryOp, a: Src, y: Src| c.step(name, Op::Binary(b), vec![a, y]);
    let un = |c: &mut Ctx, name: &str, u: UnaryOp, a: Src| c.step(name, Op::Unary(u), vec![a]);
    // `alpha · (exp(x) - 1)`, the negative side of Elu and Selu.
    let exp_side = |c: &mut Ctx, x: Src, alpha: f64| {
        let e = un(c, "exp", UnaryOp::Exp, x);
        let m = bin(c, "expm1", BinaryOp::Sub, e, k("one", t, 1.0));
        bin(c, "negative", BinaryOp::Mul, m, k("alpha", t, alpha))
    };
    Ok(match op {
        // x < 0 ? slope · x : x (NaN and -0.0 pass through).
        "LeakyRelu" | "PRelu" => {
            let slope = if op == "PRelu" { Src::In(1) } else { k("alpha", t, f("alpha", 0.01)) };
            let neg = bin(c, "below", BinaryOp::Less, x.clone(), k("zero", t, 0.0));
            let scaled = bin(c, "scaled", BinaryOp::Mul, x.clone(), slope);
            c.step("", Op::Where, vec![neg, scaled, x])
        }
        // x > 0 ? x : alpha · (exp(x) - 1), times gamma for Selu.
        "Elu" | "Selu" => {
            let (alpha, gamma) =
                if op == "Elu" { (f("alpha", 1.0), 1.0) } else { (f("alpha", 1.673_263_2), f("gamma", 1.050_701)) };
            let pos = bin(c, "above", BinaryOp::Greater, x.clone(), k("zero", t, 0.0));
            let negative = exp_side(c, x.clone(), alpha);
            if gamma == 1.0 {
                c.step("", Op::Where, vec![pos, x, negative])
            } else {
                let y = c.step("unscaled", Op::Where, vec![pos, x, negative]);
                bin(c, "", BinaryOp::Mul, y, k("gamma", t, gamma))
            }
        }
        // max(0, x) + min(0, alpha · (exp(x / alpha) - 1)).
        "Celu" => {
            let alpha = f("alpha", 1.0);
            if alpha == 0.0 {
                return Err("Celu with alpha 0 (it divides by alpha)".into());
            }
            let pos = bin(c, "positive", BinaryOp::Max, x.clone(), k("zero", t, 0.0));
            let xa = bin(c, "over_alpha", BinaryOp::Div, x, k("alpha_div", t, alpha));
            let negative = exp_side(c, xa, alpha);
            let neg = bin(c, "negative_part", BinaryOp::Min, negative, k("zero_min", t, 0.0));
            bin(c, "", BinaryOp::Add, pos, neg)
        }
        // x > alpha ? x : 0.
        "ThresholdedRelu" => {
            let above = bin(c, "above", BinaryOp::Greater, x.clone(), k("alpha", t, f("alpha", 1.0)));
            c.step("", Op::Where, vec![above, x, k("zero", t, 0.0)])
        }
        // max(0, min(1, alpha · x + beta)), times x for HardSwish (alpha 1/6, beta 1/2).
        "HardSigmoid" | "HardSwish" => {
            let (alpha, beta) = if op == "HardSigmoid" { (f("alpha", 0.2), f("beta", 0.5)) } else { (1.0 / 6.0, 0.5) };
            let ax = bin(c, "scaled", BinaryOp::Mul, x.clone(), k("alpha", t, alpha));
            let shifted = bin(c, "shifted", BinaryOp::Add, ax, k("beta", t, beta));
            let low = bin(c, "low", BinaryOp::Max, shifted, k("zero", t, 0.0));
            if op == "HardSigmoid" {
                bin(c, "", BinaryOp::Min, low, k("one", t, 1.0))
            } else {
                let g = bin(c, "gate", BinaryOp::Min, low, k("one", t, 1.0));
                bin(c, "", BinaryOp::Mul, x, g)
            }
        }
        // x / (1 + |x|).
        "Softsign" => {
            let a = un(c, "abs", UnaryOp::Abs, x.clone());
            let d = bin(c, "denominator", BinaryOp::Add, a, k("one", t, 1.0));
            bin(c, "", BinaryOp::Div, x, d)
        }
        // x · tanh(softplus(x)).
        _ => {
            let sp = un(c, "softplus", UnaryOp::Softplus, x.clone());
            let th = tanh(c, "tanh", sp);
            bin(c, "", BinaryOp::Mul, x, th)
        }
    })
}

/// `LogSoftmax` along `axis`: `(x - m) - log Σ exp(x - m)`, m the largest along it (so that
/// large values do not overflow), of floats.
pub(super) fn log_softmax(c: &mut Ctx, axis: i64) -> Result<Src, String> {
    let t = c.ty(0)?;
    if !t.dtype.is_float() {
        return Err(format!("LogSoftmax of {t} (floats only)"));
    }
    let a = if axis < 0 { axis + t.rank() as i64 } else { axis };
    if !(0..t.rank() as i64).contains(&a) {
        return Err(format!("LogSoftmax axis {axis} out of range for rank {}", t.rank()));
    }
    let (_, shifted, l) = log_sum_exp(c, vec![a], true);
    Ok(c.step("", Op::Binary(BinaryOp::Sub), vec![shifted, l]))
}

/// The steps of input 0's `log Σ exp(x - m)` over `axes` (the sum's dims kept or dropped as
/// `keepdims`), m its largest (dims kept): m, `x - m` and the log of the sum.
fn log_sum_exp(c: &mut Ctx, axes: Vec<i64>, keepdims: bool) -> (Src, Src, Src) {
    let m = c.step("max", Op::Reduce { op: ReduceOp::Max, axes: axes.clone(), keepdims: true }, vec![Src::In(0)]);
    let shifted = c.step("shifted", Op::Binary(BinaryOp::Sub), vec![Src::In(0), m.clone()]);
    let e = c.step("exp", Op::Unary(UnaryOp::Exp), vec![shifted.clone()]);
    let s = c.step("sum", Op::Reduce { op: ReduceOp::Sum, axes, keepdims }, vec![e]);
    let l = c.step("log", Op::Unary(UnaryOp::Log), vec![s]);
    (m, shifted, l)
}

/// The reductions of a sum or a maximum: `ReduceSumSquare` (Σx²), `ReduceL1` (Σ|x|),
/// `ReduceL2` (√Σx²), `ReduceLogSum` (log Σx) and `ReduceLogSumExp` (log Σexp(x - m) + m, m
/// the largest, so that large values do not overflow); `None` for any other op. `axes` and
/// `keepdims` as the op has them (read by the caller); with `noop` (no axes and
/// `noop_with_empty_axes`), each element is reduced alone, as onnxruntime does: `x²`, `|x|`,
/// `√x²`, `log x`, `x`.
pub(super) fn reduction(
    c: &mut Ctx,
    op: &str,
    axes: Vec<i64>,
    keepdims: bool,
    noop: bool,
) -> Option<Result<Src, String>> {
    if !["ReduceSumSquare", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp"].contains(&op) {
        return None;
    }
    Some(reduction_of(c, op, axes, keepdims, noop))
}

fn reduction_of(c: &mut Ctx, op: &str, axes: Vec<i64>, keepdims: bool, noop: bool) -> Result<Src, String> {
    let t = c.ty(0)?.dtype;
    let sums_only = matches!(op, "ReduceSumSquare" | "ReduceL1");
    if t == DType::Bool || (!sums_only && !t.is_float()) {
        return Err(format!("{op} of {t} ({})", if sums_only { "numbers only" } else { "floats only" }));
    }
    let x = Src::In(0);
    if noop && op == "ReduceLogSumExp" {
        return Ok(x);
    }
    let sum = |c: &mut Ctx, name: &str, v: Src, keep: bool| {
        if noop {
            v
        } else {
            c.step(name, Op::Reduce { op: ReduceOp::Sum, axes: axes.clone(), keepdims: keep }, vec![v])
        }
    };
    Ok(match op {
        "ReduceSumSquare" | "ReduceL2" => {
            let sq = c.step("square", Op::Binary(BinaryOp::Mul), vec![x.clone(), x]);
            if op == "ReduceL2" {
                let s = sum(c, "sum", sq, keepdims);
                c.step("", Op::Unary(UnaryOp::Sqrt), vec![s])
            } else {
                sum(c, "", sq, keepdims)
            }
        }
        "ReduceL1" => {
            let a = c.step("abs", Op::Unary(UnaryOp::Abs), vec![x]);
            sum(c, "", a, keepdims)
        }
        "ReduceLogSum" => {
            let s = sum(c, "sum", x, keepdims);
            c.step("", Op::Unary(UnaryOp::Log), vec![s])
        }
        _ => {
            let (m, _, l) = log_sum_exp(c, axes.clone(), keepdims);
            let m = if keepdims {
                m
            } else {
                let dropped = Op::Reduce { op: ReduceOp::Max, axes, keepdims: false };
                c.step("max_dropped", dropped, vec![Src::In(0)])
            };
            c.step("", Op::Binary(BinaryOp::Add), vec![l, m])
        }
    })
}
