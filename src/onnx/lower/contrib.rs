//! onnxruntime's contrib ops (domain `com.microsoft`) that its transformer optimizer writes
//! into models it fuses, and that models on the Hugging Face Hub ship with: the skip norms
//! (`SkipLayerNormalization`, `SkipSimplifiedLayerNormalization`: a residual add and a norm
//! in one node) and the GELU forms (`FastGelu`, `BiasGelu`, `Gelu`, `QuickGelu`), lowered to
//! the IR's ops as onnxruntime's CPU kernels define them. (`SimplifiedLayerNormalization`,
//! which onnxruntime registers in the default domain, is [`super::lower`]'s, as RMS norm.)
//! The attention ops (`Attention`, `MultiHeadAttention`, `GroupQueryAttention`) and
//! `RotaryEmbedding` of this domain are not modelled: they stay opaque.

use super::*;

/// Lowers one `com.microsoft` node; `None` for an op not modelled here.
pub(super) fn lower(c: &mut Ctx, op: &str, attrs: &Attrs) -> Option<Result<Vec<Option<Src>>, String>> {
    let arity = |c: &Ctx, fewest: usize, most: usize, outs: usize| -> Result<(), String> {
        let n = c.n.input.len();
        if n < fewest || n > most {
            return Err(format!("takes {fewest} to {most} inputs, but this node has {n}"));
        }
        if let Some(i) = (0..fewest).find(|&i| !c.has(i)) {
            return Err(format!("input {i} is required, but this node leaves it out"));
        }
        if c.n.output.is_empty() || c.n.output.len() > outs {
            return Err(format!("gives 1 to {outs} outputs, but this node has {}", c.n.output.len()));
        }
        Ok(())
    };
    Some(match op {
        "SkipLayerNormalization" => arity(c, 3, 5, 4).and_then(|()| skip_norm(c, attrs, false)),
        "SkipSimplifiedLayerNormalization" => arity(c, 3, 4, 4).and_then(|()| skip_norm(c, attrs, true)),
        "FastGelu" => arity(c, 1, 2, 1).and_then(|()| gelu(c, UnaryOp::GeluTanh, true)),
        "BiasGelu" => arity(c, 2, 2, 1).and_then(|()| gelu(c, UnaryOp::GeluErf, true)),
        "Gelu" => arity(c, 1, 1, 1).and_then(|()| gelu(c, UnaryOp::GeluErf, false)),
        "QuickGelu" => arity(c, 1, 1, 1).and_then(|()| quick_gelu(c, attrs)),
        _ => return None,
    })
}

/// `input + skip (+ bias)` normalized over the last axis (a layer norm with `gamma` and
/// `beta`, or an RMS norm with `gamma`), in f32 where the input is f16 (as onnxruntime's
/// kernels compute it); outputs the norm, then two statistics not modelled (an error if read),
/// then the sum itself (`input_skip_bias_sum`).
fn skip_norm(c: &mut Ctx, attrs: &Attrs, simplified: bool) -> Result<Vec<Option<Src>>, String> {
    let t = c.ty(0)?;
    if !t.dtype.is_float() || t.rank() == 0 {
        return Err(format!("the input is {t}: a float tensor of rank 1 or more is needed"));
    }
    let epsilon = attrs.float("epsilon").unwrap_or(1e-12);
    let bias_at = if simplified { 3 } else { 4 };
    let mut sum = c.step("skip", Op::Binary(BinaryOp::Add), vec![Src::In(0), Src::In(1)]);
    if c.has(bias_at) {
        sum = c.step("bias", Op::Binary(BinaryOp::Add), vec![sum, Src::In(bias_at)]);
    }
    let x = if t.dtype == DType::F32 {
        sum.clone()
    } else {
        c.step("stash", Op::Cast { to: DType::F32 }, vec![sum.clone()])
    };
    let axis = t.rank() as i64 - 1;
    let mut y = if simplified {
        llm::rms_normalized(c, x, vec![axis], epsilon, DType::F32)
    } else {
        c.step("normalized", Op::LayerNorm { axis, epsilon, scale: false, bias: false }, vec![x])
    };
    if t.dtype != DType::F32 {
        y = c.step("unstash", Op::Cast { to: t.dtype }, vec![y]);
    }
    y = c.step("gamma", Op::Binary(BinaryOp::Mul), vec![y, Src::In(2)]);
    if !simplified && c.has(3) {
        y = c.step("beta", Op::Binary(BinaryOp::Add), vec![y, Src::In(3)]);
    }
    Ok(vec![Some(y), None, None, Some(sum)])
}

/// A GELU of `x` (plus the bias, input 1, where `bias` and it is given).
fn gelu(c: &mut Ctx, u: UnaryOp, bias: bool) -> Result<Vec<Option<Src>>, String> {
    let t = c.ty(0)?;
    if !t.dtype.is_float() {
        return Err(format!("the input is {t}: floats only"));
    }
    let x = if bias && c.has(1) {
        c.step("bias", Op::Binary(BinaryOp::Add), vec![Src::In(0), Src::In(1)])
    } else {
        Src::In(0)
    };
    Ok(vec![Some(c.step("", Op::Unary(u), vec![x]))])
}

/// `x · sigmoid(alpha · x)` (`alpha` 1.702 by default).
fn quick_gelu(c: &mut Ctx, attrs: &Attrs) -> Result<Vec<Option<Src>>, String> {
    let t = c.ty(0)?;
    if !t.dtype.is_float() {
        return Err(format!("the input is {t}: floats only"));
    }
    let alpha = Src::Known("alpha".into(), scalar(t.dtype, attrs.float("alpha").unwrap_or(1.702) as f64));
    let ax = c.step("scaled", Op::Binary(BinaryOp::Mul), vec![Src::In(0), alpha]);
    let s = c.step("sigmoid", Op::Unary(UnaryOp::Sigmoid), vec![ax]);
    Ok(vec![Some(c.step("", Op::Binary(BinaryOp::Mul), vec![Src::In(0), s]))])
}
