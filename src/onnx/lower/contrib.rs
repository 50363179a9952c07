//! onnxruntime's contrib ops (domain `com.microsoft`) that its transformer optimizer writes
//! into models it fuses, and that models on the Hugging Face Hub ship with: the skip norms
//! (`SkipLayerNormalization`, `SkipSimplifiedLayerNormalization`: a residual add and a norm
//! in one node) and the GELU forms (`FastGelu`, `BiasGelu`, `Gelu`, `QuickGelu`), lowered to
//! the IR's ops as onnxruntime's CPU kernels define them. (`SimplifiedLayerNormalization`,
//! which onnxruntime registers in the default domain, is [`super::lower`]'s, as RMS norm.)
//! And `GroupQueryAttention`, the attention of the models onnxruntime-genai's model builder
//! writes (Phi-3/4, Llama, Qwen, Mistral, Gemma as published for onnxruntime-genai), where
//! each batch row's keys are the past's and the new ones (no padding: checked at run time),
//! and the `RotaryEmbedding` its DirectML builds apply before it. The other attention ops
//! (`Attention`, `MultiHeadAttention`) of this domain are not modelled: they stay opaque.

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
        "RotaryEmbedding" => arity(c, 4, 4, 1).and_then(|()| rotary_embedding(c, attrs)),
        // (Key and value may be left out, packed in the query.)
        "GroupQueryAttention" => arity(c, 1, 12, 4).and_then(|()| group_query_attention(c, attrs)),
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

/// `GroupQueryAttention` (onnxruntime's CPU kernel, caches not shared with the present ones):
/// Q, K and V `[batch, length, heads·width]` (or packed in the query, `num_heads +
/// 2·kv_num_heads` heads, K and V left out); with `do_rotary` Q and K rotated at their
/// positions (the past length on) by `cos_cache`/`sin_cache`
/// (`[positions, rot/2]`), in halves or `rotary_interleaved`; the past keys and values
/// (`[batch, kv heads, past, width]`) before the rotated new ones (the present ones, outputs 1
/// and 2); causal; `scale`, `softcap`, an `attention_bias` added.
///
/// onnxruntime places each batch row's new keys after `seqlens_k[b] + 1 - length` of its past
/// ones (so that rows of a batch may have pasts of their own lengths, the rest padding). This
/// models the case where every row's is the whole past: `seqlens_k[b]` is `past + length -
/// 1` and `total_sequence_length` is `past + length` (what a model run with an attention mask
/// of all ones gives). Where a run's are not, it fails with an index error naming the node's
/// `.check_seqlens_k_is_past_plus_new_minus_1` (a gather of one element at twice the
/// differences), rather than give what onnxruntime would not. Refused at load, naming what:
/// `smooth_softmax`, `qk_output`, `position_ids`, `head_sink`, a quantized cache, a sliding
/// window (`local_window_size`).
fn group_query_attention(c: &mut Ctx, attrs: &Attrs) -> Result<Vec<Option<Src>>, String> {
    for (a, what) in [("smooth_softmax", "smooth softmax"), ("qk_output", "the QK output")] {
        if attrs.int(a).unwrap_or(0) != 0 {
            return Err(format!("{what} ({a}) is not supported"));
        }
    }
    if let Some(w) = attrs.int("local_window_size").filter(|&w| w >= 0) {
        // onnxruntime 1.30 then keeps a cache of its own length (a past of at least the
        // window), which the past/present concatenation here is not.
        return Err(format!("a sliding window (local_window_size {w}) is not supported"));
    }
    for (i, what) in [(5, "seqlens_k"), (6, "total_sequence_length")] {
        if !c.has(i) {
            return Err(format!("input {i} ({what}) is required, but this node leaves it out"));
        }
    }
    // (onnxruntime's kernel reads position_ids in a way of its own: positions 4, 5 and 6
    // given after a past of 4 do not give what they give by default.)
    for (i, what) in [(9, "position_ids"), (11, "head_sink")] {
        if c.has(i) {
            return Err(format!("the {what} input is not supported"));
        }
    }
    if c.n.output.get(3).is_some_and(|o| !o.is_empty()) {
        return Err("the output_qk output is not supported".into());
    }
    let heads = attrs.int("num_heads").filter(|&h| h > 0).ok_or("num_heads must be positive")? as u64;
    let kv_heads = attrs.int("kv_num_heads").filter(|&h| h > 0).ok_or("kv_num_heads must be positive")? as u64;
    let q = c.ty(0)?;
    if q.rank() != 3 || !q.dtype.is_float() {
        return Err(format!("the query is {q}: a float [batch, length, hidden] is needed"));
    }
    // Q, K and V as given: the query's columns or inputs of their own.
    let (qv, kv, vv) = if c.has(1) || c.has(2) {
        if !(c.has(1) && c.has(2)) {
            return Err("key and value must be given together".into());
        }
        (Src::In(0), Src::In(1), Src::In(2))
    } else {
        let cols = q.shape[2].fixed().filter(|n| n % (heads + 2 * kv_heads) == 0).ok_or_else(|| {
            format!(
                "the packed query {q}'s last dim must be known and a multiple of num_heads + 2·kv_num_heads = {}",
                heads + 2 * kv_heads
            )
        })?;
        let w = cols / (heads + 2 * kv_heads);
        let mut part = |what: &str, start: u64, n: u64| {
            let (start, len) = (Dim::Fixed(start * w), Dim::Fixed(n * w));
            c.step(what, Op::Slice { axis: -1, start, len, step: 1 }, vec![Src::In(0)])
        };
        let qv = part("q", 0, heads);
        let kv = part("k", heads, kv_heads);
        let vv = part("v", heads + kv_heads, kv_heads);
        (qv, kv, vv)
    };
    let width = |t: &TensorType, n: u64| {
        t.shape
            .get(2)
            .and_then(Dim::fixed)
            .filter(|c| *c % n == 0)
            .map(|c| c / n)
            .ok_or_else(|| format!("{t} is not [batch, length, {n}·width]"))
    };
    let head = if c.has(1) { width(&q, heads)? } else { q.shape[2].fixed().unwrap_or(0) / (heads + 2 * kv_heads) };
    let as_3d = |n: u64| TensorType::new(q.dtype, vec![q.shape[0].clone(), q.shape[1].clone(), Dim::Fixed(n * head)]);
    let (kt, vt) = if c.has(1) { (c.ty(1)?, c.ty(2)?) } else { (as_3d(kv_heads), as_3d(kv_heads)) };
    if width(&kt, kv_heads)? != head || width(&vt, kv_heads)? != head {
        return Err(format!("the keys {kt} and values {vt} are not {kv_heads} heads of the query's width {head}"));
    }
    let (qx, qd) = llm::by_head(c, qv, &as_3d(heads), heads, "q")?;
    let (mut kx, kd) = llm::by_head(c, kv, &kt, kv_heads, "k")?;
    let vx = llm::by_head(c, vv, &vt, kv_heads, "v")?;
    // The past (length 0 where left out).
    if c.has(3) != c.has(4) {
        return Err("past_key and past_value must be given together".into());
    }
    let past = if c.has(3) {
        let (pk, pv) = (c.ty(3)?, c.ty(4)?);
        // The width may be declared a symbol of the inputs (onnxruntime-genai's
        // `kv_cache_dim`): the loader declares it the query's and loads again.
        for t in [&pk, &pv] {
            if let Some(Dim::Sym(s)) = t.shape.get(3) {
                crate::onnx::require_size(s, head);
                return Err(format!("the caches' width '{s}' must be the query heads' width, {head}"));
            }
        }
        let want =
            |t: &TensorType| t.rank() == 4 && t.shape[1].fixed() == Some(kv_heads) && t.shape[3].fixed() == Some(head);
        if !want(&pk) || !want(&pv) || pk.shape[2] != pv.shape[2] || pk.dtype != q.dtype || pv.dtype != q.dtype {
            return Err(format!("the past keys and values are {pk} and {pv}, not {} [batch, {kv_heads}, past, {head}] of one length (a quantized or shared cache is not supported)", q.dtype));
        }
        Some((Src::In(3), Src::In(4), pk.shape[2].expr()))
    } else {
        None
    };
    let past_len = past.as_ref().map_or(DimExpr::constant(0), |p| p.2.clone());
    let new = q.shape[1].expr();
    let total = past_len.add(&new)?;
    // The run-time check: 2·(|seqlens_k[b] - (total - 1)| + |total_sequence_length - total|)
    // indexes a one-element tensor, [batch] ones where every row has the whole past.
    let int = |c: &mut Ctx, what: &str, i: usize| c.step(what, Op::Cast { to: DType::I64 }, vec![Src::In(i)]);
    let (seqlens, tsl) = (int(c, "seqlens", 5), int(c, "total", 6));
    let last = Src::Known("last_position".into(), Known::int_scalar(total.sub(&DimExpr::constant(1))?));
    let off = c.step("seqlens_off", Op::Binary(BinaryOp::Sub), vec![seqlens, last]);
    let off = c.step("seqlens_off_abs", Op::Unary(UnaryOp::Abs), vec![off]);
    let whole = Src::Known("total_positions".into(), Known::int_scalar(total.clone()));
    let toff = c.step("total_off", Op::Binary(BinaryOp::Sub), vec![tsl, whole]);
    let toff = c.step("total_off_abs", Op::Unary(UnaryOp::Abs), vec![toff]);
    let toff = c.step("total_off_scalar", Op::Reshape { shape: vec![] }, vec![toff]);
    let both = c.step("offs", Op::Binary(BinaryOp::Add), vec![off, toff]);
    let two = Src::Known("two".into(), Known::new(DType::I64, vec![], KVals::Int(vec![2])));
    let at = c.step("seqlens_index", Op::Binary(BinaryOp::Mul), vec![both, two]);
    let one = Src::Known("one".into(), Known::new(DType::I64, vec![1], KVals::Int(vec![1])));
    let check = c.step("check_seqlens_k_is_past_plus_new_minus_1", Op::Gather { axis: 0 }, vec![one, at]);
    // [batch, 1]: multiplies the positions (or, without a rotation, the new keys) by one.
    let batch_col = vec![DimExpr::constant(-1), DimExpr::constant(1)];
    let check = c.step("seqlens_k_checked", Op::Reshape { shape: batch_col }, vec![check]);
    let do_rotary = attrs.int("do_rotary").unwrap_or(0) != 0;
    let qx = if do_rotary {
        let cache = c.ty(7)?;
        let rot = cache.shape.get(1).and_then(Dim::fixed).map(|h| 2 * h);
        let rot = match rot {
            Some(r) if cache.rank() == 2 && r > 0 && r <= head && c.has(8) && c.ty(8)? == cache => r,
            _ => return Err(format!("with do_rotary the cos and sin caches must be [positions, rot/2] alike, rot even and at most the head width {head}, not {cache}")),
        };
        let from = c.step("positions", indices(new.clone()), vec![]);
        let past_k = Src::Known("past_length".into(), Known::int_scalar(past_len.clone()));
        let positions = c.step("positions_after_past", Op::Binary(BinaryOp::Add), vec![from, past_k]);
        let positions = c.step("positions_checked", Op::Binary(BinaryOp::Mul), vec![positions, check]);
        let cos = c.step("cos_at", Op::Gather { axis: 0 }, vec![Src::In(7), positions.clone()]);
        let sin = c.step("sin_at", Op::Gather { axis: 0 }, vec![Src::In(8), positions]);
        let dims = vec![q.shape[0].expr(), new.clone(), DimExpr::constant(rot as i64 / 2)];
        let r =
            llm::Rotation { heads_axis: 1, head, rot, interleaved: attrs.int("rotary_interleaved").unwrap_or(0) != 0 };
        kx = llm::rotate(c, kx, (cos.clone(), sin.clone()), &dims, &r)?;
        llm::rotate(c, qx, (cos, sin), &dims, &r)?
    } else {
        let ones = c.step("check_as_float", Op::Cast { to: q.dtype }, vec![check]);
        let shape = [-1, 1, 1, 1].map(DimExpr::constant).to_vec();
        let ones = c.step("check_per_row", Op::Reshape { shape }, vec![ones]);
        kx = c.step("k_checked", Op::Binary(BinaryOp::Mul), vec![kx, ones]);
        qx
    };
    let mask = if c.has(10) { Some((Src::In(10), c.ty(10)?)) } else { None };
    let a = llm::Attend {
        causal: true,
        scale: attrs.float("scale").filter(|&s| s != 0.0).map(f64::from),
        softcap: attrs.float("softcap").unwrap_or(0.0) as f64,
        dtype: q.dtype,
    };
    let (y, present_k, present_v) = llm::attend(c, (qx, qd), (kx, kd), vx, past, mask, &a)?;
    let y = llm::joined(c, y);
    Ok(vec![Some(y), Some(present_k), Some(present_v), None])
}

/// onnxruntime's `RotaryEmbedding` (domain `com.microsoft`; onnxruntime-genai's DirectML builds
/// rotate q and k with it before `GroupQueryAttention`): the input `[batch, length, hidden]`
/// (heads of `2·cos_cache`'s width, or `num_heads` of them) or `[batch, heads, length, head]`,
/// rotated at `position_ids` (`[batch, length]`, or one start for every row) by
/// `cos_cache`/`sin_cache` (`[positions, rot/2]`): the first `rotary_embedding_dim` of each
/// head (all of it where 0), in halves or `interleaved`. Refused, naming what: `scale` other
/// than 1, `is_packed_batching`.
fn rotary_embedding(c: &mut Ctx, attrs: &Attrs) -> Result<Vec<Option<Src>>, String> {
    if attrs.int("is_packed_batching").unwrap_or(0) != 0 {
        return Err("packed batching (is_packed_batching) is not supported".into());
    }
    if let Some(s) = attrs.float("scale").filter(|&s| s != 1.0) {
        return Err(format!("a scale of the positions ({s}) is not supported"));
    }
    let t = c.ty(0)?;
    let cache = c.ty(2)?;
    let half = match (cache.rank(), cache.shape.get(1).and_then(Dim::fixed)) {
        (2, Some(h)) if h > 0 && c.ty(3)? == cache => h,
        _ => {
            return Err(format!(
                "cos_cache and sin_cache must be [positions, rot/2] alike, not {cache} and {}",
                c.ty(3)?
            ))
        }
    };
    let rot_attr = attrs.int("rotary_embedding_dim").unwrap_or(0);
    let rot = if rot_attr > 0 { rot_attr as u64 } else { 2 * half };
    if rot != 2 * half {
        return Err(format!("rotary_embedding_dim {rot} is not twice the caches' width {half}"));
    }
    let heads_attr = attrs.int("num_heads").unwrap_or(0);
    let (x, heads_axis, head) = match t.rank() {
        4 => {
            let head = t.shape[3].fixed().ok_or_else(|| format!("the head width of {t} must be known"))?;
            (Src::In(0), 1, head)
        }
        3 => {
            let hidden = t.shape[2].fixed().ok_or_else(|| format!("the hidden size of {t} must be known"))?;
            let heads = match heads_attr {
                h if h > 0 => h as u64,
                _ if rot_attr == 0 => hidden / rot,
                _ => return Err("a partial rotation (rotary_embedding_dim) of a 3-D input needs num_heads".into()),
            };
            if heads == 0 || hidden % heads != 0 {
                return Err(format!("{t}'s hidden size is not a multiple of {heads} heads"));
            }
            let shape = [0, 0, heads as i64, (hidden / heads) as i64].map(DimExpr::constant).to_vec();
            (c.step("heads", Op::Reshape { shape }, vec![Src::In(0)]), 2, hidden / heads)
        }
        r => return Err(format!("the input has rank {r}, not 3 or 4")),
    };
    if rot > head || (rot_attr == 0 && rot != head) {
        return Err(format!(
            "the caches rotate {rot} elements of a head of {head} (rotary_embedding_dim {rot_attr}: 0 rotates whole heads)"
        ));
    }
    let seq = if heads_axis == 1 { t.shape[2].expr() } else { t.shape[1].expr() };
    let p = c.ty(1)?;
    // The positions read: [batch, length], or from one start [1, length].
    let (positions, batch) = match p.rank() {
        2 => (c.step("positions", Op::Cast { to: DType::I64 }, vec![Src::In(1)]), p.shape[0].expr()),
        1 if p.shape[0].fixed() == Some(1) => {
            let from = c.step("offsets", indices(seq.clone()), vec![]);
            let start = c.step("start", Op::Cast { to: DType::I64 }, vec![Src::In(1)]);
            let at = c.step("positions_from_start", Op::Binary(BinaryOp::Add), vec![from, start]);
            let shape = vec![DimExpr::constant(1), DimExpr::constant(-1)];
            (c.step("positions", Op::Reshape { shape }, vec![at]), DimExpr::constant(1))
        }
        _ => return Err(format!("position_ids are {p}: [batch, length] or one start, [1]")),
    };
    let cos = c.step("cos_at", Op::Gather { axis: 0 }, vec![Src::In(2), positions.clone()]);
    let sin = c.step("sin_at", Op::Gather { axis: 0 }, vec![Src::In(3), positions]);
    let dims = vec![batch, seq, DimExpr::constant(half as i64)];
    let r = llm::Rotation { heads_axis, head, rot, interleaved: attrs.int("interleaved").unwrap_or(0) != 0 };
    let mut y = llm::rotate(c, x, (cos, sin), &dims, &r)?;
    if t.rank() == 3 {
        let shape = [0, 0, -1].map(DimExpr::constant).to_vec();
        y = c.step("", Op::Reshape { shape }, vec![y]);
    }
    Ok(vec![Some(y)])
}
