"""The decoders of this folder through onnxruntime's transformer optimizer (`optimize_model`,
model_type gpt2: it fuses the norms into SimplifiedLayerNormalization and the contrib ops
SkipSimplifiedLayerNormalization / SkipLayerNormalization, and GELUs into FastGelu), as
"optimized" ONNX files on the Hugging Face Hub are made; each run through `glufuse run`, fused
and unfused, on the sets p2 and s2, every output compared with onnxruntime's run of the same
optimized graph (1e-4 of the largest value). Exits 1 on a failure or a difference.
usage: ort_optimized_sweep.py [GLUFUSE]   (needs onnx, onnxruntime, numpy)"""
import glob, os, subprocess, sys, tempfile
import numpy as np, onnx, onnxruntime as ort
from onnxruntime.transformers.optimizer import optimize_model

here = os.path.dirname(os.path.abspath(__file__))
binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/glufuse"
failed = 0
with tempfile.TemporaryDirectory() as tmp:
    for path in sorted(glob.glob(os.path.join(here, "o_*.onnx"))):
        name = os.path.basename(path)[:-5]
        if not os.path.exists(os.path.join(here, f"{name}.p2.input_ids.npy")):
            continue  # the decoders only
        model = os.path.join(tmp, name + "_opt.onnx")
        optimize_model(path, model_type="gpt2", num_heads=4, hidden_size=32).save_model_to_file(model)
        contrib = sorted({n.op_type for n in onnx.load(model).graph.node if n.domain == "com.microsoft"
                          or n.op_type == "SimplifiedLayerNormalization"})
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        worst = 0.0
        for tag in ("p2", "s2"):
            feed = {i.name: np.load(os.path.join(here, f"{name}.{tag}.{i.name}.npy")) for i in sess.get_inputs()}
            want = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))
            for k, v in feed.items():
                np.save(os.path.join(tmp, f"in.{k}.npy"), v)
            for mode in ("fused", "unfused"):
                args = [binary, "run", model, "--check"] + (["--unfused"] if mode == "unfused" else [])
                args += [a for k in feed for a in ("--input", f"{k}={tmp}/in.{k}.npy")]
                args += [a for i, o in enumerate(want) for a in ("--output", f"{o}={tmp}/out{i}.npy")]
                r = subprocess.run(args, capture_output=True, text=True, timeout=600)
                if r.returncode != 0:
                    print(f"{name} {tag} {mode}: FAILED (exit {r.returncode}): {r.stderr.strip()[-300:]}")
                    failed += 1
                    continue
                for i, (o, w) in enumerate(want.items()):
                    got = np.load(f"{tmp}/out{i}.npy").astype(np.float64)
                    w = w.astype(np.float64)
                    if w.size:
                        worst = max(worst, np.abs(got - w).max() / max(np.abs(w).max(), 1e-12))
        bad = worst > 1e-4
        failed += bad
        print(f"{name} optimized ({', '.join(contrib) or 'nothing fused'}): worst {worst:.1e}{'  FAILED' if bad else ''}", flush=True)
sys.exit(1 if failed else 0)
