"""Exports the whole-model and 4-bit test graphs in tests/data/models and tests/data/q4.

Needs torch 2.11, transformers 5.17, onnx, onnxscript, onnx-ir and onnxruntime 1.30 (the test
set was made on a CPU machine with those; the GPU machine has them too). Tiny random Hugging Face configs (no hub), exported the way
deployments do with PyTorch's dynamo exporter (opset 18):

  NAME_static   input_ids [1, 8] only, fixed shapes
  NAME_dynseq   dynamic batch and sequence, input_ids + attention_mask (left padding in row 2)
  NAME_kvstep   one decode step: input_ids [1, new], attention_mask [1, past+new],
                past_L_k/v [1, kv_heads, past, head_dim] in; logits and present_L_k/v out
  NAME_staticstep  one decode step over a static cache (Hugging Face's StaticCache, 16
                positions): input_ids [1, 1], attention_mask [1, 16] (ones up to the
                position), cache_position [1], past_L_k/v [1, kv_heads, 16, head_dim] in;
                logits and the updated caches out (written by ScatterND). Fixed shapes: one
                executable serves every position. (Without the attention_mask input the
                exporter bakes the example position's causal mask into a constant.)

with onnxruntime (CPU) references beside each model: NAME.TAG.INPUT.npy and
NAME.TAG.out.OUTPUT.npy. `q4` mode quantizes MLPs with onnxruntime's own MatMulNBits quantizer
(both the com.microsoft::MatMulNBits and the opset-21 DequantizeLinear spelling).

usage: export.py models OUTDIR     whole models (every architecture, four forms (FORMS), f16)
       export.py variants OUTDIR   other configs of the architectures (`v_*`: dynseq, kvstep)
       export.py attn OUTDIR       dynseq and kvstep with Hugging Face's default attention
                                   (sdpa) and at opset 23 (`a_ARCH_ATTN_opN`; ATTN_COMBOS,
                                   ATTN_ARCHS: see attention_forms()). The test set holds the
                                   opset-18 sdpa ones and the opset-23 ones (the exporter
                                   writes RMSNormalization and RotaryEmbedding, with sdpa
                                   also Attention; onnxruntime 1.30 fails on a
                                   RotaryEmbedding of batch 2, so those dynseq exports have
                                   one set)
       export.py more OUTDIR       dynseq and kvstep of architectures beyond the twelve
                                   (`m_ARCH_*`: OPT, GPT-NeoX, Falcon, BLOOM, GPT-J, MoE
                                   models and more; MORE, MORE_ARCHS: see more())
       export.py legacy OUTDIR     dynseq and kvstep made by the TorchScript exporter
                                   (dynamo=False, opset 17: `l_ARCH_ATTN_*`)
       export.py q4 OUTDIR         4-bit MLPs
       export.py perf OUTDIR       Qwen2-0.5B-sized random models for the benchmark
                                   (f32/f16, external data) and PyTorch eager timings
                                   (PERF_DTYPES, PERF_FORMS, PERF_LAYERS, PERF_TORCH: see perf())
       export.py moe OUTDIR        a Mixtral-like random model for benches/h200-moe.sh (moe())
       export.py moe8 OUTDIR       a Qwen3-MoE-like one, 64 experts and top 8 (moe8())
"""
import json, os, sys, time, traceback, zlib
import numpy as np, torch, transformers as T, onnxruntime as ort

mode, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
report = {}
VOCAB = 128


def ref(path, feeds, tag):
    """Runs onnxruntime (CPU) on feeds and saves inputs and outputs beside the model."""
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = s.run(None, feeds)
    b = os.path.splitext(os.path.basename(path))[0]
    d = os.path.dirname(path)
    for k, v in feeds.items():
        np.save(os.path.join(d, f"{b}.{tag}.{k}.npy"), v)
    for o, v in zip(s.get_outputs(), outs):
        np.save(os.path.join(d, f"{b}.{tag}.out.{o.name}.npy"), v)


def tiny(arch):
    """A tiny config of each architecture: hidden 32, 4 heads of 8, 2 KV heads, 2 layers."""
    c = dict(hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)
    if arch == "llama":
        return T.LlamaConfig(**c, head_dim=8)
    if arch == "qwen2":
        return T.Qwen2Config(**c)
    if arch == "qwen3":
        return T.Qwen3Config(**c, head_dim=8)
    if arch == "mistral":
        return T.MistralConfig(**c, head_dim=8, sliding_window=6)
    if arch == "phi3":
        return T.Phi3Config(**c, pad_token_id=0)
    if arch == "gemma":
        return T.GemmaConfig(**c, head_dim=8)
    if arch == "gemma2":
        return T.Gemma2Config(**c, head_dim=8, sliding_window=6)
    if arch == "gemma3":
        return T.Gemma3TextConfig(**c, head_dim=8, sliding_window=6)
    if arch == "olmo":
        return T.OlmoConfig(**c)
    if arch == "granite":
        return T.GraniteConfig(**c)
    if arch == "gpt2":
        return T.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64, vocab_size=VOCAB, n_inner=96)
    if arch == "t5":
        return T.T5Config(d_model=32, d_ff=96, d_kv=8, num_layers=2, num_heads=4, vocab_size=VOCAB,
                          feed_forward_proj="gated-gelu", relative_attention_num_buckets=8,
                          relative_attention_max_distance=16)
    raise ValueError(arch)


ARCHS = ["llama", "qwen2", "qwen3", "mistral", "phi3", "gemma", "gemma2", "gemma3", "olmo", "granite", "gpt2", "t5"]


def build(arch, dtype=torch.float32, cfg=None, attn="eager"):
    cfg = cfg if cfg is not None else tiny(arch)
    cfg._attn_implementation = attn
    if getattr(cfg, "num_experts_per_tok", None):
        # A mixture of experts: transformers' default (`grouped_mm`) has no ONNX export;
        # `batched_mm` gathers each token's expert weights and multiplies them batched.
        cfg._experts_implementation = os.environ.get("MORE_EXPERTS", "batched_mm")
    torch.manual_seed(0)
    if arch == "t5":
        m = T.T5EncoderModel(cfg)
    else:
        m = T.AutoModelForCausalLM.from_config(cfg)
    return cfg, m.eval().to(dtype)


class Static(torch.nn.Module):
    def __init__(s, m, arch):
        super().__init__(); s.m, s.t5 = m, arch == "t5"

    def forward(s, input_ids):
        if s.t5:
            return s.m(input_ids=input_ids).last_hidden_state
        return s.m(input_ids=input_ids, use_cache=False).logits


class Dyn(torch.nn.Module):
    def __init__(s, m, arch):
        super().__init__(); s.m, s.t5 = m, arch == "t5"

    def forward(s, input_ids, attention_mask):
        if s.t5:
            return s.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return s.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


def kv_dims(cfg, arch, m=None):
    if arch in MORE_ARCHS and m is not None:
        # Whatever the config calls them: the cache a forward pass leaves (layers, KV heads,
        # head width).
        with torch.no_grad():
            pk = m(input_ids=torch.zeros(1, 3, dtype=torch.long), use_cache=True).past_key_values
        k = pk.layers[0].keys
        return len(pk.layers), k.shape[1], k.shape[3]
    if arch == "gpt2":
        return cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return cfg.num_hidden_layers, cfg.num_key_value_heads, hd


class Step(torch.nn.Module):
    def __init__(s, m, layers):
        super().__init__(); s.m, s.L = m, layers

    def forward(s, input_ids, attention_mask, *past):
        cache = T.DynamicCache()
        for i in range(s.L):
            cache.update(past[2 * i], past[2 * i + 1], i)
        o = s.m(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, use_cache=True)
        pk = o.past_key_values
        flat = []
        for i in range(s.L):
            layer = pk.layers[i] if hasattr(pk, "layers") else None
            k, v = (layer.keys, layer.values) if layer is not None else (pk.key_cache[i], pk.value_cache[i])
            flat += [k, v]
        return (o.logits, *flat)


STATIC_LEN = 16


class StaticStep(torch.nn.Module):
    def __init__(s, m, cfg, layers, length=STATIC_LEN):
        super().__init__(); s.m, s.cfg, s.L, s.len = m, cfg, layers, length

    def forward(s, input_ids, attention_mask, cache_position, *past):
        cache = T.StaticCache(config=s.cfg, max_cache_len=s.len)
        for i, layer in enumerate(cache.layers[: s.L]):
            k, v = past[2 * i].clone(), past[2 * i + 1].clone()
            if not getattr(layer, "is_initialized", True):
                layer.lazy_initialization(k[:, :, :1], v[:, :, :1])  # (transformers 5.17's signature)
            layer.keys, layer.values = k, v
            # A static layer of transformers 5.17 writes the new keys where its own count of
            # the tokens seen says (from 0 in a cache made per call), not at cache_position:
            # the count starts at the position (the references below check where they went).
            layer.cumulative_length = cache_position[0].clone()
        o = s.m(input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache,
                cache_position=cache_position, use_cache=True)
        flat = []
        for i in range(s.L):
            flat += [cache.layers[i].keys, cache.layers[i].values]
        return (o.logits, *flat)


def attempt(key, fn):
    t0 = time.time()
    try:
        fn()
        report[key] = f"ok ({time.time() - t0:.1f} s)"
    except Exception as e:
        report[key] = "failed: " + "".join(traceback.format_exception_only(e))[-600:]
    print(key, report[key], flush=True)


def export_models(arch, dtype, suffix, forms, d, cfg=None, name=None, attn="eager", opset=18):
    cfg, m = build(arch, dtype, cfg, attn)
    npf = np.float16 if dtype == torch.float16 else np.float32
    rng = np.random.default_rng(zlib.crc32(arch.encode()) % 1000)
    base = name or f"{arch}{suffix}"
    if "static" in forms:
        p = os.path.join(d, f"{base}_static.onnx")

        def f():
            with torch.no_grad():
                torch.onnx.export(Static(m, arch).eval(), (torch.randint(0, VOCAB, (1, 8)),), p, dynamo=True, opset_version=opset,
                                  input_names=["input_ids"], output_names=["logits" if arch != "t5" else "hidden"],
                                  external_data=False)
            ref(p, {"input_ids": rng.integers(0, VOCAB, (1, 8)).astype(np.int64)}, "s8")
        attempt(os.path.basename(p), f)
    if "dynseq" in forms:
        p = os.path.join(d, f"{base}_dynseq.onnx")

        def f():
            ids = torch.randint(0, VOCAB, (2, 8)); am = torch.ones(2, 8, dtype=torch.int64)
            b, s_ = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=2, max=48)
            with torch.no_grad():
                torch.onnx.export(Dyn(m, arch).eval(), (ids, am), p, dynamo=True, opset_version=opset,
                                  input_names=["input_ids", "attention_mask"],
                                  output_names=["logits" if arch != "t5" else "hidden"],
                                  dynamic_shapes={"input_ids": {0: b, 1: s_}, "attention_mask": {0: b, 1: s_}},
                                  external_data=False)
            for tag, (bb, ss) in (("b1s5", (1, 5)), ("b2s11", (2, 11))):
                am_ = np.ones((bb, ss), np.int64)
                if bb == 2:
                    am_[1, :3] = 0  # left padding in the second row
                ref(p, {"input_ids": rng.integers(0, VOCAB, (bb, ss)).astype(np.int64), "attention_mask": am_}, tag)
        attempt(os.path.basename(p), f)
    if "kvstep" in forms and arch != "t5":
        p = os.path.join(d, f"{base}_kvstep.onnx")
        L, kvh, hd = kv_dims(cfg, arch, m)

        def f():
            # Example sizes other than 0 and 1, which torch.export would specialise.
            past = [torch.randn(1, kvh, 6, hd, dtype=dtype) for _ in range(2 * L)]
            ids = torch.randint(0, VOCAB, (1, 2)); am = torch.ones(1, 8, dtype=torch.int64)
            pn = [f"past_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
            P = torch.export.Dim("past", min=1, max=40)
            S = torch.export.Dim("new", min=1, max=4)
            A = torch.export.Dim("all", min=2, max=48)
            ds = {"input_ids": {1: S}, "attention_mask": {1: A}, "past": tuple({2: P} for _ in range(2 * L))}
            with torch.no_grad():
                torch.onnx.export(Step(m, L).eval(), (ids, am, *past), p, dynamo=True, opset_version=opset,
                                  input_names=["input_ids", "attention_mask", *pn],
                                  output_names=["logits"] + [f"present_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)],
                                  dynamic_shapes=ds, external_data=False)
            for tag, (pl, new) in (("past9", (9, 1)), ("past4n3", (4, 3))):
                feeds = {"input_ids": rng.integers(0, VOCAB, (1, new)).astype(np.int64),
                         "attention_mask": np.ones((1, pl + new), np.int64)}
                for n_ in pn:
                    feeds[n_] = rng.standard_normal((1, kvh, pl, hd)).astype(npf)
                ref(p, feeds, tag)
        attempt(os.path.basename(p), f)
    if "staticstep" in forms and arch != "t5":
        p = os.path.join(d, f"{base}_staticstep.onnx")
        L, kvh, hd = kv_dims(cfg, arch)

        def f():
            past = [torch.randn(1, kvh, STATIC_LEN, hd, dtype=dtype) for _ in range(2 * L)]
            pn = [f"past_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
            am = (torch.arange(STATIC_LEN) <= 5).long()[None]
            step = StaticStep(m, cfg, L).eval()
            with torch.no_grad():
                torch.onnx.export(step, (torch.randint(0, VOCAB, (1, 1)), am, torch.tensor([5]), *past), p,
                                  dynamo=True, opset_version=opset, input_names=["input_ids", "attention_mask", "cache_position", *pn],
                                  output_names=["logits"] + [f"present_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)],
                                  external_data=False)
            for tag, pos in (("pos0", 0), ("pos5", 5), ("pos15", 15)):
                feeds = {"input_ids": rng.integers(0, VOCAB, (1, 1)).astype(np.int64),
                         "attention_mask": (np.arange(STATIC_LEN) <= pos).astype(np.int64)[None],
                         "cache_position": np.array([pos], np.int64)}
                for n_ in pn:
                    x = rng.standard_normal((1, kvh, STATIC_LEN, hd)).astype(npf)
                    x[:, :, pos:] = 0  # not written yet
                    feeds[n_] = x
                ref(p, feeds, tag)
                # The export against PyTorch eager at a position other than the example's: a
                # mask baked into a constant would show here.
                with torch.no_grad():
                    want = step(*[torch.from_numpy(feeds[k]) for k in ["input_ids", "attention_mask", "cache_position", *pn]])
                got = ort.InferenceSession(p, providers=["CPUExecutionProvider"]).run(None, feeds)
                # The new keys and values went to `pos` and nowhere else.
                for i, n_ in enumerate(pn):
                    moved = [q for q in range(STATIC_LEN) if not np.array_equal(feeds[n_][:, :, q], got[1 + i][:, :, q])]
                    assert moved == [pos], f"{tag}: {n_} changed at rows {moved}"
                for g_, w in zip(got, want):
                    w = w.float().numpy()
                    rel = float(np.abs(g_.astype(np.float32) - w).max() / max(1e-9, float(np.abs(w).max())))
                    assert rel <= (2e-2 if dtype == torch.float16 else 1e-4), f"{tag}: onnxruntime against eager {rel:.2e}"
        attempt(os.path.basename(p), f)


FORMS = tuple(os.environ.get("FORMS", "static,dynseq,kvstep,staticstep").split(","))


def models():
    print("torch", torch.__version__, "transformers", T.__version__, "onnxruntime", ort.__version__, flush=True)
    for arch in ARCHS:
        export_models(arch, torch.float32, "", FORMS, out)
    for arch in ("llama", "qwen2", "gemma2"):
        export_models(arch, torch.float16, "_f16", FORMS, out)


def variant_configs():
    """Configs other than `tiny`'s, each exercising what the tiny ones do not: other head
    widths (12, 16), one KV head or as many as queries, three layers, a tied LM head, rope
    scaling (llama3, longrope), a window of 3, multipliers, the q/k/v clip, GPT-2's upcast
    attention, Gemma 2 without soft-capping, an f16 model with an intermediate size of 100."""
    c = dict(hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64)
    f32, f16 = torch.float32, torch.float16
    return [
        ("llama_rope3", "llama", f32, T.LlamaConfig(**{**c, "num_attention_heads": 2, "num_key_value_heads": 1},
            head_dim=16, tie_word_embeddings=True, rope_theta=500000.0,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                          "original_max_position_embeddings": 16})),
        ("qwen2_mha", "qwen2", f32, T.Qwen2Config(**{**c, "hidden_size": 48, "intermediate_size": 80,
            "num_key_value_heads": 4, "num_hidden_layers": 3})),
        ("mistral_win3", "mistral", f32, T.MistralConfig(**{**c, "num_attention_heads": 2, "num_key_value_heads": 1},
            head_dim=16, sliding_window=3)),
        ("phi3_longrope", "phi3", f32, T.Phi3Config(**c, pad_token_id=0, original_max_position_embeddings=16,
            rope_scaling={"type": "longrope", "short_factor": [1.0, 1.1, 1.2, 1.3], "long_factor": [2.0, 2.5, 3.0, 4.0]})),
        ("gemma_hd16", "gemma", f32, T.GemmaConfig(**{**c, "num_attention_heads": 2, "num_key_value_heads": 1},
            head_dim=16)),
        ("granite_mult", "granite", f32, T.GraniteConfig(**c, embedding_multiplier=12.0, residual_multiplier=0.22,
            attention_multiplier=0.0625, logits_scaling=8.0)),
        ("qwen3_hd16", "qwen3", f32, T.Qwen3Config(**c, head_dim=16, rope_theta=1e6)),
        ("gpt2_upcast", "gpt2", f32, T.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=VOCAB,
            n_inner=96, scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True)),
        ("olmo_clip", "olmo", f32, T.OlmoConfig(**c, clip_qkv=0.5)),
        ("gemma2_nocap", "gemma2", f32, T.Gemma2Config(**c, head_dim=8, sliding_window=4, attn_logit_softcapping=None,
            final_logit_softcapping=None, query_pre_attn_scalar=16)),
        ("llama_f16_i100", "llama", f16, T.LlamaConfig(**{**c, "intermediate_size": 100}, head_dim=8)),
    ]


def variants():
    """`export.py variants OUTDIR`: the configs of `variant_configs`, dynamic-shape and
    KV-cache step, with onnxruntime references."""
    print("torch", torch.__version__, "transformers", T.__version__, "onnxruntime", ort.__version__, flush=True)
    for name, arch, dtype, cfg in variant_configs():
        export_models(arch, dtype, "", ("dynseq", "kvstep"), out, cfg=cfg, name=f"v_{name}")


# Architectures beyond the test set's twelve, tiny (`more` mode): the names are Hugging Face's
# model types, the keyword arguments what each config calls its sizes (the common ones are
# given to every config; one that does not know a name keeps it as an unused attribute).
MORE = {
    "opt": dict(ffn_dim=96, word_embed_proj_dim=32),
    "gpt_neox": dict(rotary_pct=0.5),
    "falcon": dict(new_decoder_architecture=True, num_kv_heads=2),
    "falcon_alibi": dict(alibi=True, multi_query=True, model_type="falcon"),
    "bloom": dict(n_head=4, n_layer=2),
    "gptj": dict(n_embd=32, n_head=4, n_layer=2, n_inner=96, rotary_dim=4, n_positions=64),
    "stablelm": dict(partial_rotary_factor=0.5),
    "phi": dict(partial_rotary_factor=0.5),
    "starcoder2": dict(sliding_window=None),
    "cohere": dict(),
    "cohere2": dict(sliding_window=6),
    "olmo2": dict(),
    "olmo3": dict(sliding_window=6),
    "nemotron": dict(partial_rotary_factor=0.5, head_dim=8),
    "glm": dict(head_dim=8, partial_rotary_factor=0.5),
    "glm4": dict(head_dim=8, partial_rotary_factor=0.5),
    "smollm3": dict(no_rope_layers=[1, 0]),
    "helium": dict(head_dim=8),
    "arcee": dict(head_dim=8),
    "exaone4": dict(sliding_window=6, head_dim=8),
    "ernie4_5": dict(head_dim=8),
    "seed_oss": dict(head_dim=8),
    "apertus": dict(head_dim=8),
    "hunyuan_v1_dense": dict(head_dim=8),
    "gpt_bigcode": dict(n_embd=32, n_head=4, n_layer=2, n_inner=96, n_positions=64),
    "codegen": dict(n_embd=32, n_head=4, n_layer=2, n_inner=96, rotary_dim=4, n_positions=64, n_ctx=64),
    "mpt": dict(d_model=32, n_heads=4, n_layers=2, expansion_ratio=3, max_seq_len=64),
    "persimmon": dict(partial_rotary_factor=0.5),
    "gpt_neo": dict(num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]], window_size=6),
    "xglm": dict(d_model=32, ffn_dim=96, num_layers=2, attention_heads=4),
    "biogpt": dict(),
    "bitnet": dict(head_dim=8),
    "mixtral": dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=48),
    "qwen2_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, shared_expert_intermediate_size=64),
    "qwen3_moe": dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=48, head_dim=8),
    "olmoe": dict(num_experts=4, num_experts_per_tok=2, intermediate_size=48),
    "granitemoe": dict(num_local_experts=4, num_experts_per_tok=2, intermediate_size=48),
}
MORE_ARCHS = set(MORE)
# The architectures of tests/data/more_models: one of each way of spelling a decoder the
# others do not already cover (positions from the mask, ALiBi, parallel blocks, partial and
# interleaved rotary embeddings, multi-query attention, local attention, sinusoidal
# positions, squared-ReLU FFNs, layers without rotary embeddings, merged gate/up weights).
TEST_MORE = ("opt,bloom,falcon,gpt_neox,gptj,gpt_bigcode,codegen,phi,cohere,olmo2,nemotron,gpt_neo,xglm,"
             "persimmon,smollm3,glm,mixtral,qwen2_moe,qwen3_moe,olmoe,granitemoe")


def tiny_more(arch):
    """A tiny config of an architecture of `MORE`: hidden 32, 4 heads, 2 KV heads where it has
    them, 2 layers, vocabulary 128."""
    kw = dict(MORE[arch])
    model_type = kw.pop("model_type", arch)
    c = dict(hidden_size=32, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=0,
             bos_token_id=1, eos_token_id=2)
    return T.AutoConfig.for_model(model_type, **{**c, **kw})


def more():
    """`export.py more OUTDIR`: architectures beyond the twelve (`MORE`; MORE_ARCHS picks some,
    comma-separated), dynamic-shape and KV-cache step, with onnxruntime references:
    `m_ARCH_{dynseq,kvstep}` (MORE_DTYPE=f16: f16 models, `m_ARCH_f16_*`; MORE_ATTN=sdpa:
    Hugging Face's default attention, `m_ARCH_sdpa_*`). An architecture the exporter or onnxruntime fails on is reported
    and skipped."""
    print("torch", torch.__version__, "transformers", T.__version__, "onnxruntime", ort.__version__, flush=True)
    picked = [a for a in os.environ.get("MORE_ARCHS", ",".join(MORE)).split(",") if a]
    # (The test set, tests/data/more_models, holds MORE_ARCHS=TEST_MORE.)
    for arch in picked:
        try:
            cfg = tiny_more(arch)
        except Exception as e:
            report[f"m_{arch}"] = "config failed: " + "".join(traceback.format_exception_only(e))[-300:]
            print(arch, report[f"m_{arch}"], flush=True)
            continue
        f16 = os.environ.get("MORE_DTYPE", "f32") == "f16"
        attn = os.environ.get("MORE_ATTN", "eager")
        name = f"m_{arch}_f16" if f16 else f"m_{arch}"
        name += "" if attn == "eager" else f"_{attn}"
        try:
            export_models(arch, torch.float16 if f16 else torch.float32, "", ("dynseq", "kvstep"), out, cfg=cfg,
                          name=name, attn=attn)
        except Exception as e:  # the model itself did not build (an attention it does not offer)
            report[name] = "failed: " + "".join(traceback.format_exception_only(e))[-300:]
            print(name, report[name], flush=True)
            continue
        for form in ("dynseq", "kvstep"):
            p = os.path.join(out, f"{name}_{form}.onnx")
            if os.path.exists(p):
                strip_metadata(p)


def strip_metadata(path):
    """Drops what the exporter records per node for people (stack traces, names of the
    PyTorch modules) and nothing a run reads: the `more` exports come out 3-4 times smaller."""
    import onnx
    m = onnx.load(path)

    def strip(g):
        for n in g.node:
            del n.metadata_props[:]
            n.doc_string = ""
            for a in n.attribute:
                if a.HasField("g"):
                    strip(a.g)
        for v in list(g.value_info) + list(g.input) + list(g.output):
            del v.metadata_props[:]
        for t in g.initializer:
            del t.metadata_props[:]
    strip(m.graph)
    del m.metadata_props[:]
    onnx.save(m, path)


def attention_forms():
    """`export.py attn OUTDIR`: models exported as a user who keeps Hugging Face's default
    attention (`sdpa`, PyTorch's fused kernel) or asks for a newer opset would export them,
    dynamic-shape and KV-cache step, with onnxruntime references: `a_ARCH_ATTN_opN`."""
    print("torch", torch.__version__, "transformers", T.__version__, "onnxruntime", ort.__version__, flush=True)
    combos = [c.split(":") for c in os.environ.get("ATTN_COMBOS", "sdpa:18,sdpa:23,eager:23").split(",")]
    archs = os.environ.get("ATTN_ARCHS", "llama,qwen2,gemma2,phi3,gpt2").split(",")
    for attn, opset in combos:
        for arch in archs:
            export_models(arch, torch.float32, "", ("dynseq", "kvstep"), out, name=f"a_{arch}_{attn}_op{opset}",
                          attn=attn, opset=int(opset))


def legacy_forms():
    """`export.py legacy OUTDIR`: dynseq and kvstep made by PyTorch's TorchScript exporter
    (`dynamo=False`, opset 17, dynamic axes), as older deployment scripts still do:
    `l_ARCH_{dynseq,kvstep}` (LEGACY_ARCHS, LEGACY_ATTN)."""
    print("torch", torch.__version__, "transformers", T.__version__, "onnxruntime", ort.__version__, flush=True)
    attn = os.environ.get("LEGACY_ATTN", "eager")
    for arch in os.environ.get("LEGACY_ARCHS", "llama,qwen2,phi3,gemma2,gpt2").split(","):
        # (An architecture of `MORE` in its `tiny_more` config.)
        cfg, m = build(arch, torch.float32, tiny_more(arch) if arch in MORE else None, attn)
        rng = np.random.default_rng(zlib.crc32(arch.encode()) % 1000)
        p = os.path.join(out, f"l_{arch}_{attn}_dynseq.onnx")

        def f():
            ids = torch.randint(0, VOCAB, (2, 8)); am = torch.ones(2, 8, dtype=torch.int64)
            with torch.no_grad():
                torch.onnx.export(Dyn(m, arch).eval(), (ids, am), p, dynamo=False, opset_version=17,
                                  input_names=["input_ids", "attention_mask"], output_names=["logits"],
                                  dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                                "logits": {0: "batch", 1: "seq"}})
            for tag, (bb, ss) in (("b1s5", (1, 5)), ("b2s11", (2, 11))):
                am_ = np.ones((bb, ss), np.int64)
                if bb == 2:
                    am_[1, :3] = 0
                ref(p, {"input_ids": rng.integers(0, VOCAB, (bb, ss)).astype(np.int64), "attention_mask": am_}, tag)
        attempt(os.path.basename(p), f)
        p2 = os.path.join(out, f"l_{arch}_{attn}_kvstep.onnx")
        L, kvh, hd = kv_dims(cfg, arch, m)

        def f2():
            past = [torch.randn(1, kvh, 6, hd) for _ in range(2 * L)]
            ids = torch.randint(0, VOCAB, (1, 2)); am = torch.ones(1, 8, dtype=torch.int64)
            pn = [f"past_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
            on = [f"present_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
            axes = {"input_ids": {1: "new"}, "attention_mask": {1: "all"}}
            axes.update({n_: {2: "past"} for n_ in pn})
            axes.update({n_: {2: "all"} for n_ in on})
            with torch.no_grad():
                torch.onnx.export(Step(m, L).eval(), (ids, am, *past), p2, dynamo=False, opset_version=17,
                                  input_names=["input_ids", "attention_mask", *pn], output_names=["logits", *on],
                                  dynamic_axes=axes)
            for tag, (pl, new) in (("past9", (9, 1)), ("past4n3", (4, 3))):
                feeds = {"input_ids": rng.integers(0, VOCAB, (1, new)).astype(np.int64),
                         "attention_mask": np.ones((1, pl + new), np.int64)}
                for n_ in pn:
                    feeds[n_] = rng.standard_normal((1, kvh, pl, hd)).astype(np.float32)
                ref(p2, feeds, tag)
        attempt(os.path.basename(p2), f2)


# --- 4-bit MLPs ---------------------------------------------------------------------------

class GLU(torch.nn.Module):
    """A gated MLP: act(x Wg + bg) * (x Wu + bu), then the down projection."""

    def __init__(s, h, i, act, bias=False, merged=False):
        super().__init__()
        s.merged, s.i, s.act = merged, i, act
        if merged:
            s.gate_up = torch.nn.Linear(h, 2 * i, bias=bias)
        else:
            s.gate = torch.nn.Linear(h, i, bias=bias); s.up = torch.nn.Linear(h, i, bias=bias)
        s.down = torch.nn.Linear(i, h, bias=bias)

    def forward(s, x):
        if s.merged:
            g, u = s.gate_up(x).chunk(2, dim=-1)
        else:
            g, u = s.gate(x), s.up(x)
        a = {"silu": torch.nn.functional.silu, "gelu_tanh": lambda t: torch.nn.functional.gelu(t, approximate="tanh"),
             "gelu": torch.nn.functional.gelu, "relu": torch.nn.functional.relu}[s.act](g)
        return s.down(a * u)


class Plain(torch.nn.Module):
    """GPT-2's MLP shape: no gate (must not fuse)."""

    def __init__(s, h, i):
        super().__init__(); s.fc, s.proj = torch.nn.Linear(h, i), torch.nn.Linear(i, h)

    def forward(s, x):
        return s.proj(torch.nn.functional.gelu(s.fc(x), approximate="tanh"))


def quantize(src, dst, block, symmetric, qdq):
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mq
    from onnxruntime.quantization.quant_utils import QuantFormat
    model = onnx.load(src)
    cfg = mq.DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric,
                                          quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                                          op_types_to_quantize=("MatMul",))
    q = mq.MatMulNBitsQuantizer(model, algo_config=cfg)
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)


def q4():
    print("onnxruntime", ort.__version__, flush=True)
    tmp = os.path.join(out, "float"); os.makedirs(tmp, exist_ok=True)
    h, i = 64, 176
    mlps = {"llama": GLU(h, i, "silu"), "geglu_tanh": GLU(h, i, "gelu_tanh"), "geglu_erf": GLU(h, i, "gelu"),
            "reglu": GLU(h, i, "relu"), "merged": GLU(h, i, "silu", merged=True), "bias": GLU(h, i, "silu", bias=True),
            "gpt2": Plain(h, i)}
    variants = []
    for name in mlps:
        variants += [(name, 32, True, False), (name, 32, False, False), (name, 32, True, True), (name, 32, False, True)]
    for block in (16, 64, 128):
        variants += [("llama", block, True, False), ("llama", block, False, True), ("llama", block, False, False),
                     ("llama", block, True, True)]
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    for dtype, sfx in ((torch.float32, ""), (torch.float16, "_f16")):
        for name, mod in mlps.items():
            if sfx and name not in ("llama", "geglu_tanh"):
                continue
            mod = mod.eval().to(dtype)
            p = os.path.join(tmp, f"{name}{sfx}.onnx")

            def f():
                x = torch.randn(1, 5, h, dtype=dtype)
                s = torch.export.Dim("tokens", min=1, max=512)
                with torch.no_grad():
                    torch.onnx.export(mod, (x,), p, dynamo=True, opset_version=21, input_names=["x"], output_names=["out"],
                                      dynamic_shapes={"x": {1: s}}, external_data=False)
            attempt(os.path.basename(p), f)
        for name, block, sym, qdq in variants:
            if sfx and (name not in ("llama", "geglu_tanh") or block != 32):
                continue
            src = os.path.join(tmp, f"{name}{sfx}.onnx")
            q = f"{name}{sfx}_{'qdq' if qdq else 'nbits'}_{'s' if sym else 'a'}{block}.onnx"
            p = os.path.join(out, q)

            def f():
                quantize(src, p, block, sym, qdq)
                npf = np.float16 if dtype == torch.float16 else np.float32
                for tag, rows in (("t1", 1), ("t7", 7)):
                    ref(p, {"x": rng.standard_normal((1, rows, h)).astype(npf)}, tag)
            attempt(q, f)


# --- Benchmark models --------------------------------------------------------------------

def export_dynseq(m, arch, path):
    """Exports model `m` (of architecture `arch`) as a dynamic-shape forward pass to `path`,
    weights as external data: `input_ids` and `attention_mask` of dims `batch` and `seq`,
    `logits` out (the graphs `perf()` and `moe()` time)."""
    ids = torch.randint(0, 1000, (1, 8)); am = torch.ones(1, 8, dtype=torch.int64)
    b, s_ = torch.export.Dim("batch", min=1, max=8), torch.export.Dim("seq", min=2, max=1024)
    with torch.no_grad():
        torch.onnx.export(Dyn(m, arch).eval(), (ids, am), path, dynamo=True, opset_version=18,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_shapes={"input_ids": {0: b, 1: s_}, "attention_mask": {0: b, 1: s_}},
                          external_data=True)


def export_kvstep(m, L, kvh, hd, dtype, path):
    """Exports one KV-cache step of model `m` (`L` layers, `kvh` KV heads of width `hd`, caches
    of `dtype`) to `path`, weights as external data: `input_ids [1, new]`, `attention_mask [1,
    all]`, `past_L_k/v [1, kvh, past, hd]` in, `logits` and `present_L_k/v` out."""
    past = [torch.randn(1, kvh, 6, hd, dtype=dtype) for _ in range(2 * L)]
    ids = torch.randint(0, 1000, (1, 2)); am = torch.ones(1, 8, dtype=torch.int64)
    pn = [f"past_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
    P = torch.export.Dim("past", min=1, max=2048)
    S = torch.export.Dim("new", min=1, max=4)
    A = torch.export.Dim("all", min=2, max=2052)
    ds = {"input_ids": {1: S}, "attention_mask": {1: A}, "past": tuple({2: P} for _ in range(2 * L))}
    with torch.no_grad():
        torch.onnx.export(Step(m, L).eval(), (ids, am, *past), path, dynamo=True, opset_version=18,
                          input_names=["input_ids", "attention_mask", *pn],
                          output_names=["logits"] + [f"present_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)],
                          dynamic_shapes=ds, external_data=True)


def perf():
    """Qwen2-0.5B-sized random models: dynseq (prefill) and kvstep (decode), f32 and f16, with
    weights as external data; PyTorch eager timings of the same two calls (on CUDA, when there).

    Environment: PERF_DTYPES (default "f32,f16"), PERF_FORMS (default "dynseq,kvstep"; also
    "staticstep", a decode step over a static cache of PERF_STATIC_LEN positions, default 129;
    "none" for the timings alone), PERF_LAYERS (default 24; fewer for a quick try), PERF_TORCH=0 skips
    the PyTorch timings. benches/h100-models.sh runs the timings once, then one process per
    dtype and form at the same time (each export takes about 45 s on the GPU machine)."""
    layers = int(os.environ.get("PERF_LAYERS", "24"))
    dtypes = os.environ.get("PERF_DTYPES", "f32,f16").split(",")
    forms = os.environ.get("PERF_FORMS", "dynseq,kvstep").split(",")
    cuda = torch.cuda.is_available() and os.environ.get("PERF_TORCH", "1") != "0"
    cfg = T.Qwen2Config(hidden_size=896, intermediate_size=4864, num_hidden_layers=layers, num_attention_heads=14,
                        num_key_value_heads=2, vocab_size=151936, max_position_embeddings=4096,
                        tie_word_embeddings=True)
    cfg._attn_implementation = "eager"
    L, kvh, hd = layers, 2, 64
    timings = {}
    t_start = time.time()
    for dtype, sfx in ((torch.float32, "f32"), (torch.float16, "f16")):
        if sfx not in dtypes:
            continue
        t0 = time.time()
        torch.manual_seed(0)
        m = T.AutoModelForCausalLM.from_config(cfg).eval().to(dtype)
        report[f"qwen05b_{sfx}_init_s"] = round(time.time() - t0, 1)
        print(sfx, f"model made in {time.time() - t0:.1f} s", flush=True)
        d = os.path.join(out, f"qwen05b_{sfx}"); os.makedirs(d, exist_ok=True)
        if cuda:
            # PyTorch eager on the GPU: a 128-token prefill and one decode step after 128 tokens.
            mc = m.to("cuda")
            ids = torch.randint(0, 151936, (1, 128), device="cuda")
            with torch.no_grad():
                def prefill():
                    return mc(input_ids=ids, use_cache=False).logits
                past = [torch.randn(1, kvh, 128, hd, dtype=dtype, device="cuda") for _ in range(2 * L)]
                one = torch.randint(0, 151936, (1, 1), device="cuda")
                am = torch.ones(1, 129, dtype=torch.int64, device="cuda")
                step = Step(mc, L)

                def decode():
                    return step(one, am, *past)[0]
                for name, fn in (("prefill128", prefill), ("decode_past128", decode)):
                    for _ in range(3):
                        fn()
                    torch.cuda.synchronize()
                    ts = []
                    for _ in range(10):
                        t0 = time.perf_counter(); fn(); torch.cuda.synchronize(); ts.append((time.perf_counter() - t0) * 1e3)
                    timings[f"torch_eager_{sfx}_{name}_ms"] = sorted(ts)[len(ts) // 2]
                    print(sfx, name, f"{timings[f'torch_eager_{sfx}_{name}_ms']:.2f} ms", flush=True)
            m = mc.to("cpu")
            del mc
            torch.cuda.empty_cache()
        p = os.path.join(d, "model_dynseq.onnx")

        def f():
            export_dynseq(m, "qwen2", p)
        if "dynseq" in forms:
            attempt(f"qwen05b_{sfx}_dynseq", f)
        p = os.path.join(d, "model_kvstep.onnx")

        def f():
            export_kvstep(m, L, kvh, hd, dtype, p)
        if "kvstep" in forms:
            attempt(f"qwen05b_{sfx}_kvstep", f)
        p = os.path.join(d, "model_staticstep.onnx")

        def f():
            n = int(os.environ.get("PERF_STATIC_LEN", "129"))
            past = [torch.randn(1, kvh, n, hd, dtype=dtype) for _ in range(2 * L)]
            pn = [f"past_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)]
            am = (torch.arange(n) <= 5).long()[None]
            with torch.no_grad():
                torch.onnx.export(StaticStep(m, cfg, L, n).eval(), (torch.randint(0, 1000, (1, 1)), am, torch.tensor([5]), *past),
                                  p, dynamo=True, opset_version=18,
                                  input_names=["input_ids", "attention_mask", "cache_position", *pn],
                                  output_names=["logits"] + [f"present_{i // 2}_{'kv'[i % 2]}" for i in range(2 * L)],
                                  external_data=True)
        if "staticstep" in forms:
            attempt(f"qwen05b_{sfx}_staticstep", f)
        del m
    report["timings"] = timings
    report["perf_total_s"] = round(time.time() - t_start, 1)


def moe(cfg=None, name="mid"):
    """A Mixtral-like random model for benches/h200-moe.sh: hidden 1024, 8 experts of 3584, top
    2, 4 layers, 16 heads (4 KV), vocab 32000, f16, eager attention, `batched_mm` experts;
    `mid/model_dynseq.onnx` and `mid/model_kvstep.onnx` with their weights as external data
    (the bench carries the graphs alone and fills the weights: benches/fill_weights.py)."""
    cfg = cfg or T.MixtralConfig(hidden_size=1024, intermediate_size=3584, num_hidden_layers=4,
                                 num_attention_heads=16, num_key_value_heads=4, num_local_experts=8,
                                 num_experts_per_tok=2, vocab_size=32000, max_position_embeddings=4096)
    cfg._attn_implementation = "eager"
    cfg._experts_implementation = "batched_mm"
    torch.manual_seed(0)
    m = T.AutoModelForCausalLM.from_config(cfg).eval().to(torch.float16)
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    d = os.path.join(out, name); os.makedirs(d, exist_ok=True)
    export_dynseq(m, cfg.model_type, os.path.join(d, "model_dynseq.onnx"))
    export_kvstep(m, cfg.num_hidden_layers, cfg.num_key_value_heads, hd, torch.float16,
                  os.path.join(d, "model_kvstep.onnx"))


def moe8():
    """A Qwen3-MoE-like random model for benches/h200-moe.sh, as moe() but 64 experts of 512 and
    top 8 (its router's TopK takes 8 of 64): `moe8/`."""
    moe(T.Qwen3MoeConfig(hidden_size=1024, moe_intermediate_size=512, intermediate_size=3072, num_hidden_layers=4,
                         num_attention_heads=16, num_key_value_heads=4, head_dim=64, num_experts=64,
                         num_experts_per_tok=8, norm_topk_prob=True, vocab_size=32000,
                         max_position_embeddings=4096), "moe8")


{"models": models, "variants": variants, "attn": attention_forms, "legacy": legacy_forms, "q4": q4, "perf": perf, "moe": moe,
 "moe8": moe8, "more": more}[mode]()
print(json.dumps(report, indent=1))
json.dump(report, open(os.path.join(out, f"report_{mode}.json"), "w"), indent=1)
