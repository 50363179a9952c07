//! Lowerings of opset 23's transformer operators, `RMSNormalization`, `RotaryEmbedding` and
//! `Attention`, to ops glufuse already has: each as the operator's reference computes it, so
//! that the passes see what they see in the eager spellings (the elementwise fusion makes
//! programs of the norm and the rotation; the attention fusion makes one node of the
//! attention).

use super::*;

/// ONNX's `RMSNormalization` (opset 23): `X / sqrt(mean(X², axes axis..) + epsilon)` in the
/// stash type (f32), back in X's dtype, times the scale, as the operator's function body
/// spells it; the elementwise fusion makes one row program of it, as of the eager spelling.
pub(super) fn rms_normalization(c: &mut Ctx, attrs: &Attrs) -> Result<Src, String> {
    let t = c.ty(0)?;
    let rank = t.rank() as i64;
    let a = attrs.int("axis").unwrap_or(-1);
    let axis = if a < 0 { a + rank } else { a };
    if !(0..rank).contains(&axis) {
        return Err(format!("axis {a} is out of range for {t}"));
    }
    if !t.dtype.is_float() {
        return Err(format!("RMSNormalization of {} (floats only)", t.dtype));
    }
    let stash = dtype_of(attrs.int("stash_type").unwrap_or(1) as i32)?;
    if !stash.is_float() {
        return Err(format!("stash_type {stash} is not a float type"));
    }
    let epsilon = attrs.float("epsilon").unwrap_or(1e-5);
    let x = if t.dtype == stash { Src::In(0) } else { c.step("stash", Op::Cast { to: stash }, vec![Src::In(0)]) };
    let mut y = rms_normalized(c, x, (axis..rank).collect(), epsilon, stash);
    if t.dtype != stash {
        y = c.step("unstash", Op::Cast { to: t.dtype }, vec![y]);
    }
    Ok(c.step("", Op::Binary(BinaryOp::Mul), vec![y, Src::In(1)]))
}

/// `x / sqrt(mean(x², axes) + epsilon)`, `x` of float type `dtype`: the RMS norm before its
/// scale, as RMSNormalization's function body and onnxruntime's skip norms compute it.
pub(super) fn rms_normalized(c: &mut Ctx, x: Src, axes: Vec<i64>, epsilon: f32, dtype: DType) -> Src {
    let sq = c.step("square", Op::Binary(BinaryOp::Mul), vec![x.clone(), x.clone()]);
    let mean = c.step("mean", Op::Reduce { op: ReduceOp::Mean, axes, keepdims: true }, vec![sq]);
    let eps = Src::Known("epsilon".into(), scalar(dtype, epsilon as f64));
    let shifted = c.step("shifted", Op::Binary(BinaryOp::Add), vec![mean, eps]);
    let rms = c.step("rms", Op::Unary(UnaryOp::Sqrt), vec![shifted]);
    c.step("normalized", Op::Binary(BinaryOp::Div), vec![x, rms])
}

/// ONNX's `RotaryEmbedding` (opset 23), as the operator's reference computes it: X is
/// `[batch, heads, seq, head]` (or `[batch, seq, heads·head]` with `num_heads`), the caches
/// `[batch, seq, rot/2]` (or `[positions, rot/2]` read at `position_ids`); the first `rot`
/// of each head (all of it where `rotary_embedding_dim` is 0) is rotated in halves, or in
/// its even and odd elements where `interleaved`: `real = cos·x1 − sin·x2`,
/// `imag = sin·x1 + cos·x2`, the rest passed through.
pub(super) fn rotary_embedding(c: &mut Ctx, attrs: &Attrs) -> Result<Src, String> {
    let t = c.ty(0)?;
    let heads = attrs.int("num_heads").unwrap_or(0);
    let interleaved = attrs.int("interleaved").unwrap_or(0) != 0;
    let (x, heads_axis) = match t.rank() {
        4 => (Src::In(0), 1),
        3 if heads > 0 => {
            let shape = [0, 0, heads, -1].map(DimExpr::constant).to_vec();
            (c.step("heads", Op::Reshape { shape }, vec![Src::In(0)]), 2)
        }
        3 => return Err("a 3-D input needs num_heads".into()),
        r => return Err(format!("the input has rank {r}, not 3 or 4")),
    };
    let head = match t.rank() {
        4 => t.shape[3].fixed(),
        _ => t.shape[2].fixed().map(|h| h / heads as u64),
    }
    .ok_or_else(|| format!("the head width of {t} must be known"))?;
    let rot = match attrs.int("rotary_embedding_dim").unwrap_or(0) {
        0 => head,
        r if r > 0 && r % 2 == 0 && r as u64 <= head => r as u64,
        r => return Err(format!("rotary_embedding_dim {r} must be even and at most the head width {head}")),
    };
    let (mut cos, mut sin) = (Src::In(1), Src::In(2));
    let cache = c.ty(1)?;
    // The caches as read: [batch, seq, rot/2].
    let mut dims: Vec<DimExpr> = cache.shape.iter().map(Dim::expr).collect();
    if c.has(3) {
        if cache.rank() != 2 {
            return Err(format!("with position_ids the caches are [positions, rot/2], not {cache}"));
        }
        dims = c.ty(3)?.shape.iter().map(Dim::expr).chain([cache.shape[1].expr()]).collect();
        cos = c.step("cos_at", Op::Gather { axis: 0 }, vec![cos, Src::In(3)]);
        sin = c.step("sin_at", Op::Gather { axis: 0 }, vec![sin, Src::In(3)]);
    }
    let r = Rotation { heads_axis, head, rot, interleaved };
    let mut y = rotate(c, x, (cos, sin), &dims, &r)?;
    if t.rank() == 3 {
        let shape = [0, 0, -1].map(DimExpr::constant).to_vec();
        y = c.step("", Op::Reshape { shape }, vec![y]);
    }
    Ok(y)
}

/// How [`rotate`] rotates a 4-D value's heads.
pub(super) struct Rotation {
    /// The heads' axis (1 for `[batch, heads, seq, head]`, 2 for `[batch, seq, heads, head]`).
    pub heads_axis: usize,
    /// Each head's width.
    pub head: u64,
    /// How many of its first elements are rotated (even, at most `head`).
    pub rot: u64,
    /// Whether in even and odd elements (else in halves).
    pub interleaved: bool,
}

/// The rotary embedding of the 4-D `x` with the cosines and sines `cs` as read, `[batch,
/// seq, rot/2]` (`dims`): the first `rot` of each head rotated in halves, or in its even and
/// odd elements where `interleaved`: `real = cos·x1 − sin·x2`, `imag = sin·x1 + cos·x2`, the
/// rest passed through (`RotaryEmbedding`'s reference, and `GroupQueryAttention`'s).
pub(super) fn rotate(c: &mut Ctx, x: Src, cs: (Src, Src), dims: &[DimExpr], r: &Rotation) -> Result<Src, String> {
    let (rot, head, interleaved) = (r.rot, r.head, r.interleaved);
    if dims.len() != 3 || dims[2].as_const() != Some(rot as i64 / 2) {
        let shown: Vec<String> = dims.iter().map(DimExpr::to_string).collect();
        return Err(format!("the caches read are [{}], not [batch, seq, {}]", shown.join(","), rot / 2));
    }
    let unsqueeze = |c: &mut Ctx, v: Src, what: &str| {
        // [batch, seq, rot/2] with a 1 at the heads' axis.
        let mut shape = dims.to_vec();
        shape.insert(r.heads_axis, DimExpr::constant(1));
        c.step(what, Op::Reshape { shape }, vec![v])
    };
    let cos = unsqueeze(c, cs.0, "cos");
    let sin = unsqueeze(c, cs.1, "sin");
    let part = |c: &mut Ctx, what: &str, start: u64, len: u64, step: i64| {
        let (start, len) = (Dim::Fixed(start), Dim::Fixed(len));
        c.step(what, Op::Slice { axis: -1, start, len, step }, vec![x.clone()])
    };
    let half = rot / 2;
    let (x1, x2) = if interleaved {
        (part(c, "x1", 0, half, 2), part(c, "x2", 1, half, 2))
    } else {
        (part(c, "x1", 0, half, 1), part(c, "x2", half, half, 1))
    };
    let mul =
        |c: &mut Ctx, what: &str, a: &Src, b: &Src| c.step(what, Op::Binary(BinaryOp::Mul), vec![a.clone(), b.clone()]);
    let (c1, s2) = (mul(c, "cos_x1", &cos, &x1), mul(c, "sin_x2", &sin, &x2));
    let (s1, c2) = (mul(c, "sin_x1", &sin, &x1), mul(c, "cos_x2", &cos, &x2));
    let real = c.step("real", Op::Binary(BinaryOp::Sub), vec![c1, s2]);
    let imag = c.step("imag", Op::Binary(BinaryOp::Add), vec![s1, c2]);
    let mut y = if interleaved {
        // real and imag side by side in a last axis of 2, read as rot elements.
        let pair = |c: &mut Ctx, v: Src, what: &str| {
            let shape = [0, 0, 0, -1, 1].map(DimExpr::constant).to_vec();
            c.step(what, Op::Reshape { shape }, vec![v])
        };
        let (re, im) = (pair(c, real, "real_pair"), pair(c, imag, "imag_pair"));
        let both = c.step("pairs", Op::Concat { axis: -1 }, vec![re, im]);
        let shape = [0, 0, 0, -1].map(DimExpr::constant).to_vec();
        c.step("rotated", Op::Reshape { shape }, vec![both])
    } else {
        c.step("rotated", Op::Concat { axis: -1 }, vec![real, imag])
    };
    if rot < head {
        let rest = part(c, "rest", rot, head - rot, 1);
        y = c.step("joined", Op::Concat { axis: -1 }, vec![y, rest]);
    }
    Ok(y)
}

/// ONNX's `Attention` (opset 23), as the operator's reference computes it: Q, K and V
/// `[batch, heads, length, width]` (3-D ones `[batch, length, heads·width]`, split into the
/// heads `q_num_heads` and `kv_num_heads` give, and the output joined back); the past keys
/// and values, where given, before the new ones (the present keys and values, outputs 1 and
/// 2); K's and V's heads repeated to Q's where fewer, each KV head serving a run of query
/// heads; Q and K each times √scale (`scale` 1/√width by default), `softcap·tanh(S/softcap)`
/// where a soft cap is set, `is_causal` hiding the keys past each query's index plus the past
/// length, an optional mask (boolean: where to attend; or added), a softmax, times V. A row
/// hidden everywhere gives zeros, as onnxruntime's kernel does (the reference's softmax would
/// give NaN). The attention fusion makes one node of it, as of the exporters' other
/// spellings. Refused, naming what: `nonpad_kv_seqlen`, `qk_matmul_output`, a mask shorter
/// than the keys.
pub(super) fn attention(c: &mut Ctx, attrs: &Attrs) -> Result<Vec<Option<Src>>, String> {
    let (q, k, v) = (c.ty(0)?, c.ty(1)?, c.ty(2)?);
    let rank = q.rank();
    if !matches!(rank, 3 | 4) || k.rank() != rank || v.rank() != rank {
        return Err(format!("Q, K and V are {q}, {k} and {v}: 3-D or 4-D inputs of one rank"));
    }
    if c.has(6) {
        return Err("the nonpad_kv_seqlen input is not supported".into());
    }
    if c.has(4) != c.has(5) {
        return Err("past_key and past_value must be given together".into());
    }
    if c.n.output.get(3).is_some_and(|o| !o.is_empty()) {
        return Err("the qk_matmul_output output is not supported".into());
    }
    // Each input as [batch, heads, length, width]: its Src and dims.
    let split = |c: &mut Ctx, i: usize, t: &TensorType, attr: &str| -> Result<(Src, Vec<DimExpr>), String> {
        if rank == 4 {
            return Ok((Src::In(i), t.shape.iter().map(Dim::expr).collect()));
        }
        let heads = attrs.int(attr).filter(|&h| h > 0).ok_or_else(|| format!("3-D inputs need {attr}"))?;
        by_head(c, Src::In(i), t, heads as u64, &format!("in{i}"))
    };
    let qd = split(c, 0, &q, "q_num_heads")?;
    let kd = split(c, 1, &k, "kv_num_heads")?;
    let vd = split(c, 2, &v, "kv_num_heads")?;
    let past = if c.has(4) {
        let (pk, pv) = (c.ty(4)?, c.ty(5)?);
        if pk.rank() != 4 || pv.rank() != 4 || pk.shape[2] != pv.shape[2] {
            return Err(format!("the past keys and values are {pk} and {pv}, not 4-D of one length"));
        }
        Some((Src::In(4), Src::In(5), pk.shape[2].expr()))
    } else {
        None
    };
    let mask = if c.has(3) { Some((Src::In(3), c.ty(3)?)) } else { None };
    let a = Attend {
        causal: attrs.int("is_causal").unwrap_or(0) != 0,
        scale: attrs.float("scale").map(f64::from),
        softcap: attrs.float("softcap").unwrap_or(0.0) as f64,
        dtype: q.dtype,
    };
    let (mut y, present_k, present_v) = attend(c, qd, kd, vd, past, mask, &a)?;
    if rank == 3 {
        y = joined(c, y);
    }
    let outs = [Some(y), Some(present_k), Some(present_v), None];
    Ok(outs.into_iter().take(c.n.output.len().max(1)).collect())
}

/// The 3-D `x` (`[batch, length, heads·width]`, of type `t`) as `[batch, heads, length,
/// width]`, and those dims.
pub(super) fn by_head(
    c: &mut Ctx,
    x: Src,
    t: &TensorType,
    heads: u64,
    what: &str,
) -> Result<(Src, Vec<DimExpr>), String> {
    let d: Vec<DimExpr> = t.shape.iter().map(Dim::expr).collect();
    let width = t.shape[2]
        .fixed()
        .filter(|w| heads > 0 && w % heads == 0)
        .ok_or_else(|| format!("{t}'s last dim must be known and a multiple of the {heads} heads"))?
        / heads;
    let shape = [0, 0, heads as i64, width as i64].map(DimExpr::constant).to_vec();
    let x = c.step(&format!("{what}_heads"), Op::Reshape { shape }, vec![x]);
    let x = c.step(&format!("{what}_by_head"), Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![x]);
    let dims = vec![d[0].clone(), DimExpr::constant(heads as i64), d[1].clone(), DimExpr::constant(width as i64)];
    Ok((x, dims))
}

/// `[batch, heads, length, width]` back to `[batch, length, heads·width]`.
pub(super) fn joined(c: &mut Ctx, y: Src) -> Src {
    let x = c.step("by_position", Op::Transpose { perm: vec![0, 2, 1, 3] }, vec![y]);
    c.step("joined", Op::Reshape { shape: [0, 0, -1].map(DimExpr::constant).to_vec() }, vec![x])
}

/// What [`attend`] computes beside Q, K and V.
pub(super) struct Attend {
    /// Each query attends the keys up to its own index plus the past length only.
    pub causal: bool,
    /// The scores' scale (default `1/√width`).
    pub scale: Option<f64>,
    /// `softcap·tanh(S/softcap)` where positive.
    pub softcap: f64,
    /// Q's dtype.
    pub dtype: DType,
}

/// An attention of Q, K and V given `[batch, heads, length, width]` (each with its dims):
/// the past keys and values (and their length), where given, before the new ones (the
/// present keys and values, returned beside the output); K's and V's heads repeated to Q's
/// where fewer, each KV head serving a run of query heads; Q and K each times √scale,
/// `softcap·tanh(S/softcap)` where a soft cap is set, the causal mask hiding keys, the mask (boolean: where to attend; or added), a softmax, times V.
/// A row hidden everywhere gives zeros, as onnxruntime's kernels do. The output is
/// `[batch, Q's heads, length, width]`.
pub(super) fn attend(
    c: &mut Ctx,
    (qx, qd): (Src, Vec<DimExpr>),
    (mut key, mut kd): (Src, Vec<DimExpr>),
    (mut value, mut vd): (Src, Vec<DimExpr>),
    past_kv: Option<(Src, Src, DimExpr)>,
    mask: Option<(Src, TensorType)>,
    a: &Attend,
) -> Result<(Src, Src, Src), String> {
    let fixed = |e: &DimExpr, what: &str| {
        e.as_const().filter(|&x| x > 0).map(|x| x as u64).ok_or_else(|| format!("{what} must be known"))
    };
    let (qh, kh, head) = (fixed(&qd[1], "Q's heads")?, fixed(&kd[1], "K's heads")?, fixed(&qd[3], "Q's width")?);
    if qh % kh != 0 || vd[1] != kd[1] {
        return Err(format!("Q's {qh} heads are not a multiple of K's and V's ({} and {})", kd[1], vd[1]));
    }
    // The past before the new keys and values: the present ones.
    let mut past = DimExpr::constant(0);
    if let Some((pk, pv, len)) = past_kv {
        past = len;
        key = c.step("present_key", Op::Concat { axis: 2 }, vec![pk, key]);
        value = c.step("present_value", Op::Concat { axis: 2 }, vec![pv, value]);
        kd[2] = past.add(&kd[2])?;
        vd[2] = kd[2].clone();
    }
    let presents = (key.clone(), value.clone());
    let scale = a.scale.unwrap_or(1.0 / (head as f64).sqrt());
    let root = Src::Known("scale".into(), scalar(a.dtype, scale.sqrt()));
    if qh != kh {
        // Each KV head repeated for its run of query heads: [b, kh, 1, n, d] broadcast to
        // [b, kh, qh/kh, n, d], read as [b, qh, n, d].
        let rep = |c: &mut Ctx, x: Src, d: &[DimExpr], what: &str| {
            let one = vec![d[0].clone(), d[1].clone(), DimExpr::constant(1), d[2].clone(), d[3].clone()];
            let x = c.step(&format!("{what}_heads"), Op::Reshape { shape: one }, vec![x]);
            let wide: Vec<Dim> =
                [d[0].clone(), d[1].clone(), DimExpr::constant((qh / kh) as i64), d[2].clone(), d[3].clone()]
                    .into_iter()
                    .map(Dim::from_expr)
                    .collect::<Result<_, _>>()?;
            let x = c.step(&format!("{what}_repeated"), Op::Expand { shape: wide }, vec![x]);
            let back = vec![d[0].clone(), DimExpr::constant(qh as i64), d[2].clone(), d[3].clone()];
            Ok::<Src, String>(c.step(&format!("{what}_grouped"), Op::Reshape { shape: back }, vec![x]))
        };
        key = rep(c, key, &kd, "k")?;
        value = rep(c, value, &vd, "v")?;
    }
    let qs = c.step("q_scaled", Op::Binary(BinaryOp::Mul), vec![qx, root.clone()]);
    let ks = c.step("k_scaled", Op::Binary(BinaryOp::Mul), vec![key, root]);
    let kt = c.step("k_transposed", Op::Transpose { perm: vec![0, 1, 3, 2] }, vec![ks]);
    let mut scores = c.step("scores", Op::MatMul, vec![qs, kt]);
    if a.softcap > 0.0 {
        scores = soft_cap(c, scores, a.dtype, a.softcap);
    }
    if a.causal {
        // Query i attends keys 0..=i + past: -inf past that, from ranges over the (possibly
        // symbolic) query and key lengths.
        let rows = c.step("causal_rows", indices(qd[2].clone()), vec![]);
        let col = vec![DimExpr::constant(-1), DimExpr::constant(1)];
        let rows = c.step("causal_rows_col", Op::Reshape { shape: col }, vec![rows]);
        let cols = c.step("causal_cols", indices(kd[2].clone()), vec![]);
        let ahead = c.step("causal_ahead", Op::Binary(BinaryOp::Sub), vec![cols, rows]);
        let past = Src::Known("causal_past".into(), Known::int_scalar(past.clone()));
        let future = c.step("causal_future", Op::Binary(BinaryOp::Greater), vec![ahead, past]);
        let never = Src::Known("causal_masked".into(), scalar(a.dtype, f64::NEG_INFINITY));
        let attend = Src::Known("causal_attend".into(), scalar(a.dtype, 0.0));
        let bias = c.step("causal_bias", Op::Where, vec![future, never, attend]);
        scores = c.step("causal", Op::Binary(BinaryOp::Add), vec![scores, bias]);
    }
    if let Some((m, mt)) = &mask {
        if mt.shape.last().map(Dim::expr).as_ref() != Some(&kd[2]) {
            return Err(format!("the mask {mt} does not cover the {} keys (padded masks are not supported)", kd[2]));
        }
        let bias = if mt.dtype == DType::Bool {
            let zero = Src::Known("attend".into(), scalar(a.dtype, 0.0));
            let never = Src::Known("masked".into(), scalar(a.dtype, f64::NEG_INFINITY));
            c.step("mask_bias", Op::Where, vec![m.clone(), zero, never])
        } else {
            m.clone()
        };
        scores = c.step("masked", Op::Binary(BinaryOp::Add), vec![scores, bias]);
    }
    let mut p = c.step("probabilities", Op::Softmax { axis: -1 }, vec![scores]);
    if mask.is_some() || a.causal {
        // A row masked everywhere: its softmax is NaN; onnxruntime gives zeros, and so does
        // PyTorch's own spelling of the guard (which the attention fusion takes in too).
        let nan = c.step("masked_row", Op::Unary(UnaryOp::IsNaN), vec![p.clone()]);
        let zero = Src::Known("zero".into(), scalar(a.dtype, 0.0));
        p = c.step("guarded", Op::Where, vec![nan, zero, p]);
    }
    let y = c.step("", Op::MatMul, vec![p, value]);
    Ok((y, presents.0, presents.1))
}
