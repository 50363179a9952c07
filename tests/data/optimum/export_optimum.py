"""Tiny random Hugging Face decoders exported by optimum-onnx (`main_export`, task
text-generation-with-past: one graph that takes the past keys and values, of length 0 for a
prompt), with onnxruntime reference sets beside each:
  p1  batch 1, 7 tokens, no past (past length 0)
  p2  batch 2, 5 tokens, no past, the second row left-padded by 2
  s1  batch 1, 1 new token after a past of 6
  s2  batch 2, 3 new tokens after a past of 4, the second row's first 2 positions padded
  p3  batch 1, 20 tokens, no past; s3  batch 2, 17 new tokens after a past of 5, padded as s2
      (enough query rows for the attention to write its present keys and values first)
and T5's encoder and decoder step (text2text-generation-with-past; sets e1, e2, d1, d2: see
`t5`), as NAME.TAG.INPUT.npy and NAME.TAG.out.OUTPUT.npy (input and output names keep their dots:
`past_key_values.0.key`, `present.0.key`). optimum-onnx pins transformers 4.x: install it in
a virtual environment of its own, e.g.
    python3 -m venv /tmp/ovenv && /tmp/ovenv/bin/pip install optimum-onnx==0.1.0 onnxruntime==1.30.0 \
        torch==2.11.0 --extra-index-url https://download.pytorch.org/whl/cpu
    /tmp/ovenv/bin/python3 export_optimum.py OUTDIR [ARCH..]
usage: export_optimum.py OUTDIR [ARCH..]  (default: the architectures kept in this folder)"""
import hashlib, os, shutil, sys, tempfile
import numpy as np, onnx, onnxruntime as ort, torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
from optimum.exporters.onnx import main_export

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
KEPT = ["llama", "qwen2", "gemma2", "phi3", "granite", "cohere", "gpt2", "gptj", "opt", "t5"]
archs = sys.argv[2:] or KEPT
small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
configs = {
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64),
    "gptj": dict(n_embd=32, n_layer=2, n_head=4, vocab_size=128, n_positions=64, rotary_dim=4),
    "opt": dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=128,
                max_position_embeddings=64, word_embed_proj_dim=32),
    "gemma2": dict(small, head_dim=8),
    "phi3": dict(small, pad_token_id=0),
}
SETS = {"p1": (1, 7, 0), "p2": (2, 5, 0), "s1": (1, 1, 6), "s2": (2, 3, 4), "p3": (1, 20, 0), "s3": (2, 17, 5)}


def feed(sess, rng, batch, seq, past):
    f = {}
    for i in sess.get_inputs():
        if i.name == "input_ids":
            f[i.name] = rng.integers(0, 128, (batch, seq)).astype(np.int64)
        elif i.name == "attention_mask":
            m = np.ones((batch, past + seq), np.int64)
            if batch > 1:
                m[1, :2] = 0
            f[i.name] = m
        elif i.name == "position_ids":
            # As transformers' generate() makes them: the mask's running count, 1 where padded.
            m = np.ones((batch, past + seq), np.int64)
            if batch > 1:
                m[1, :2] = 0
            p = np.cumsum(m, axis=1) - 1
            p[m == 0] = 1
            f[i.name] = p[:, past:]
        elif i.name.startswith("past_key_values"):
            shape = [batch if "batch" in str(d) else (past if isinstance(d, str) else d) for d in i.shape]
            f[i.name] = rng.standard_normal(shape).astype(np.float32)
        else:
            raise RuntimeError(f"unexpected input {i.name} {i.shape}")
    return f


def t5(out):
    """T5 (gated GELU) as optimum exports it for text2text-generation-with-past: the encoder
    (sets e1: batch 1 of 7 tokens; e2: batch 2 of 5, the second row's last 2 padded) and the
    decoder step with past self-attention keys and values and the encoder's cross-attention
    ones (d1: 1 token after 3, over 7 encoder positions; d2: batch 2, 1 token after 4, over 5
    with the same padding), and the merged decoder (both behind an `If` on `use_cache_branch`:
    m1, the prompt branch, 3 tokens over 7 encoder positions; m2, the step branch as d2)."""
    cfg = AutoConfig.for_model("t5", d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, vocab_size=128,
                               feed_forward_proj="gated-gelu", decoder_start_token_id=0)
    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(cfg).eval()
    rng = np.random.default_rng(int(hashlib.sha256(b"t5").hexdigest()[:8], 16))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(os.path.join(tmp, "hf"))
        main_export(os.path.join(tmp, "hf"), output=os.path.join(tmp, "onnx"),
                    task="text2text-generation-with-past", do_validation=False)
        for part, name, sets in (("encoder_model", "o_t5_encoder", {"e1": (1, 7, 0, 0), "e2": (2, 5, 0, 0)}),
                                 ("decoder_with_past_model", "o_t5_decoder", {"d1": (1, 7, 1, 3), "d2": (2, 5, 1, 4)}),
                                 ("decoder_model_merged", "o_t5_merged", {"m1": (1, 7, 3, 1), "m2": (2, 5, 1, 4)})):
            m = onnx.load(os.path.join(tmp, "onnx", part + ".onnx"), load_external_data=True)
            for n in m.graph.node:
                n.doc_string = ""
            path = os.path.join(out, name + ".onnx")
            onnx.save(m, path)
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            for tag, (b, enc, new, past) in sets.items():
                f = {}
                for i in sess.get_inputs():
                    if i.name == "input_ids":
                        f[i.name] = rng.integers(0, 128, (b, new or enc)).astype(np.int64)
                    elif i.name in ("attention_mask", "encoder_attention_mask"):
                        mask = np.ones((b, enc), np.int64)
                        if b > 1:
                            mask[1, -2:] = 0
                        f[i.name] = mask
                    elif ".encoder." in i.name:
                        f[i.name] = rng.standard_normal((b, 4, enc, 8)).astype(np.float32)
                    elif ".decoder." in i.name:
                        f[i.name] = rng.standard_normal((b, 4, past, 8)).astype(np.float32)
                    elif i.name == "encoder_hidden_states":
                        f[i.name] = rng.standard_normal((b, enc, 32)).astype(np.float32)
                    elif i.name == "use_cache_branch":
                        # m1 is a prompt (the branch without past: the past inputs, one
                        # position of noise, go unread), m2 a step.
                        f[i.name] = np.array([tag != "m1"])
                    else:
                        raise RuntimeError(f"unexpected input {i.name} {i.shape}")
                for k, v in f.items():
                    np.save(os.path.join(out, f"{name}.{tag}.{k}.npy"), v)
                for o, v in zip(sess.get_outputs(), sess.run(None, f)):
                    np.save(os.path.join(out, f"{name}.{tag}.out.{o.name}.npy"), v)
            print(f"{name}: ok, inputs {[i.name for i in sess.get_inputs()][:3]}..", flush=True)


failed = []
for arch in archs:
    if arch == "t5":
        try:
            t5(out)
        except Exception as e:  # as below
            failed.append(arch)
            print(f"o_t5: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
        continue
    name = f"o_{arch}"
    try:
        cfg = AutoConfig.for_model(arch, **configs.get(arch, small))
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg).eval()
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(os.path.join(tmp, "hf"))
            main_export(os.path.join(tmp, "hf"), output=os.path.join(tmp, "onnx"),
                        task="text-generation-with-past", do_validation=False)
            m = onnx.load(os.path.join(tmp, "onnx", "model.onnx"), load_external_data=True)
        for n in m.graph.node:  # the exporter's doc strings: bytes only
            n.doc_string = ""
        path = os.path.join(out, name + ".onnx")
        onnx.save(m, path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(int(hashlib.sha256(arch.encode()).hexdigest()[:8], 16))
        for tag, (b, s, p) in SETS.items():
            f = feed(sess, rng, b, s, p)
            for k, v in f.items():
                np.save(os.path.join(out, f"{name}.{tag}.{k}.npy"), v)
            for o, v in zip(sess.get_outputs(), sess.run(None, f)):
                np.save(os.path.join(out, f"{name}.{tag}.out.{o.name}.npy"), v)
        print(f"{name}: ok, inputs {[i.name for i in sess.get_inputs()][:3]}..", flush=True)
    except Exception as e:  # report and go on: an architecture optimum cannot export
        failed.append(arch)
        print(f"{name}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
sys.exit(1 if failed else 0)
