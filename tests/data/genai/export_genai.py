#!/usr/bin/env python3
"""Tiny random decoders built by onnxruntime-genai's model builder (`g_*.onnx`), as the ONNX
language models Microsoft and others publish for onnxruntime-genai are made (Phi-3/4, Llama,
Qwen, Mistral, Gemma ONNX repositories), with onnxruntime reference sets beside them:
`NAME.TAG.INPUT.npy` and `NAME.TAG.out.OUTPUT.npy`.

The builder writes `com.microsoft` ops: `GroupQueryAttention` (packed q/k/v, rotary
embedding inside, the present keys and values), `SkipSimplifiedLayerNormalization`,
`SimplifiedLayerNormalization`, `MatMulNBits` (int4).

Needs onnxruntime-genai (its `models.builder`), transformers, torch and onnxruntime:
    python3 tests/data/genai/export_genai.py [OUT_DIR]
Sets: `p1` a 5-token prompt (past length 0), `s1` one token after a past of 5, `s2` three
tokens after a past of 4, `b2` a batch of two 3-token prompts; every attention mask all ones.
"""
import os, subprocess, sys, tempfile
import numpy as np
import onnx
import onnxruntime as ort
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
VOCAB = 96
SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
             num_key_value_heads=1, vocab_size=VOCAB, max_position_embeddings=64)

ARCHS = {
    "llama": (transformers.LlamaConfig, {}),
    "qwen2": (transformers.Qwen2Config, {}),
    "mistral": (transformers.MistralConfig, {"sliding_window": 3}),
    "phi3": (transformers.Phi3Config, {"pad_token_id": 0, "original_max_position_embeddings": 64}),
    "gemma": (transformers.GemmaConfig, {"head_dim": 16}),
    # LongRoPE (Phi-3.5-mini, Phi-4-mini): rotary tables for long sequences and for short ones,
    # an `If` on the length picking them; past 4 positions the long ones (sets p1, s1, s2),
    # else the short ones (b2).
    "phi3_longrope": (transformers.Phi3Config, {
        "pad_token_id": 0, "original_max_position_embeddings": 4,
        "rope_scaling": {"type": "longrope", "short_factor": [1.0 + 0.1 * i for i in range(8)],
                         "long_factor": [2.0 + 0.3 * i for i in range(8)]}}),
    # RMS norms of q and k per head: q, k and v are given to the attention apart.
    "qwen3": (transformers.Qwen3Config, {"head_dim": 16}),
}
# (arch, precision) pairs built; int4 only where the builder quantizes a model this small.
BUILDS = [("llama", "fp32"), ("qwen2", "fp32"), ("mistral", "fp32"), ("phi3", "fp32"),
          ("gemma", "fp32"), ("qwen3", "fp32"), ("phi3_longrope", "fp32"),
          ("llama", "int4"), ("llama", "fp16"), ("llama", "fp16_dml")]
# (Gemma 2's sliding layers: onnxruntime 1.30's kernel then wants a past of at least the
# window, a cache kept otherwise; not modelled, refused at load.)


def tokenizer(path):
    vocab = {f"t{i}": i for i in range(VOCAB)}
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=t, unk_token="t0", bos_token="t1",
                            eos_token="t2").save_pretrained(path)


def build(arch, prec, work):
    cls, extra = ARCHS[arch]
    cfg = cls(**SMALL, **extra)
    torch.manual_seed(0)
    hf = os.path.join(work, f"{arch}_hf")
    if not os.path.exists(hf):
        transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(hf)
        tokenizer(hf)
    out = os.path.join(work, f"{arch}_{prec}")
    # fp16 for CUDA (the builder's fp16 CPU graph is another: RotaryEmbedding and
    # MultiHeadAttention, and onnxruntime 1.30 fails on its steps); the graph is the CPU
    # one's in f16 (genai shares the past and present buffers there, a choice of its own
    # runtime, not of the graph).
    # fp16_dml: the DirectML build, its rotary embedding a RotaryEmbedding before the attention
    # and position_ids an input.
    ep = {"fp16": "cuda", "fp16_dml": "dml"}.get(prec, "cpu")
    cmd = [sys.executable, "-m", "onnxruntime_genai.models.builder", "-m", hf, "-i", hf, "-o", out,
           "-p", prec.removesuffix("_dml"), "-e", ep]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    m = onnx.load(os.path.join(out, "model.onnx"))  # external data read in
    name = f"g_{arch}_{prec}".replace("fp16", "f16")
    onnx.save(m, os.path.join(OUT, f"{name}.onnx"))
    width = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return name, m, width


def sets(m, width):
    layers = [i.name for i in m.graph.input if i.name.startswith("past_key_values.")]
    kv = next(i for i in m.graph.input if i.name.startswith("past_key_values."))
    heads = kv.type.tensor_type.shape.dim[1].dim_value
    dtype = np.float16 if kv.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 else np.float32
    rng = np.random.default_rng(5)
    for tag, batch, past, new in [("p1", 1, 0, 5), ("s1", 1, 5, 1), ("s2", 1, 4, 3), ("b2", 2, 0, 3)]:
        feeds = {
            "input_ids": rng.integers(0, VOCAB, (batch, new), dtype=np.int64),
            "attention_mask": np.ones((batch, past + new), dtype=np.int64),
        }
        if any(i.name == "position_ids" for i in m.graph.input):
            feeds["position_ids"] = np.tile(np.arange(past, past + new, dtype=np.int64), (batch, 1))
        for n in layers:
            feeds[n] = rng.standard_normal((batch, heads, past, width)).astype(dtype)
        yield tag, feeds


def main():
    with tempfile.TemporaryDirectory() as work:
        for arch, prec in BUILDS:
            name, m, width = build(arch, prec, work)
            # `MatMulNBits`' accuracy_level is the least accuracy allowed; the builder's 4 lets
            # onnxruntime's CPU kernel round the activations to int8 first. The references are
            # those of level 0 (f32 products, as glufuse computes them).
            ref = onnx.ModelProto()
            ref.CopyFrom(m)
            for n in ref.graph.node:
                for a in n.attribute:
                    if n.op_type == "MatMulNBits" and a.name == "accuracy_level":
                        a.i = 0
            s = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
            outs = [o.name for o in s.get_outputs()]
            for tag, feeds in sets(m, width):
                for k, v in feeds.items():
                    np.save(os.path.join(OUT, f"{name}.{tag}.{k}.npy"), v)
                for k, v in zip(outs, s.run(outs, feeds)):
                    np.save(os.path.join(OUT, f"{name}.{tag}.out.{k}.npy"), v)
            print(name, "ok")


if __name__ == "__main__":
    main()
