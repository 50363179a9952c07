"""The decoders of this folder converted to f16 the way fp16 ONNX files on the Hugging Face Hub
are made (onnxconverter-common's `convert_float_to_float16`, inputs and outputs f16 too; the
casts to f32 that the exporter put around the norms become casts to f16, as transformers.js's
conversion script does), each run through `glufuse run`, fused and unfused, on every reference
set (float inputs cast to f16), its logits compared with the f32 model's (onnxruntime's outputs
in this folder), and onnxruntime's CPU run of the same f16 graph beside it. Exits 1 if glufuse
is further than 2e-2 (relative to the largest logit) from the f32 model.
usage: f16_sweep.py [GLUFUSE]   (needs onnx, onnxruntime, onnxconverter-common, numpy)"""
import glob, os, subprocess, sys, tempfile
import numpy as np, onnx, onnxruntime as ort
from onnxconverter_common import float16

here = os.path.dirname(os.path.abspath(__file__))
binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/glufuse"
failed = 0
with tempfile.TemporaryDirectory() as tmp:
    for path in sorted(glob.glob(os.path.join(here, "o_*.onnx"))):
        name = os.path.basename(path)[:-5]
        if not os.path.exists(os.path.join(here, f"{name}.p1.input_ids.npy")):
            continue  # the decoders (prompts and steps) only: T5's parts have no logits
        m = float16.convert_float_to_float16(onnx.load(path), keep_io_types=False)
        for n in m.graph.node:
            if n.op_type == "Cast":
                for a in n.attribute:
                    if a.name == "to" and a.i == onnx.TensorProto.FLOAT:
                        a.i = onnx.TensorProto.FLOAT16
        model = os.path.join(tmp, name + "_f16.onnx")
        onnx.save(m, model)
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        worst = {"fused": 0.0, "unfused": 0.0, "onnxruntime": 0.0}
        for tag in ("p1", "p2", "s1", "s2"):
            feed = {}
            for i in sess.get_inputs():
                a = np.load(os.path.join(here, f"{name}.{tag}.{i.name}.npy"))
                feed[i.name] = a.astype(np.float16) if i.type == "tensor(float16)" else a
                np.save(os.path.join(tmp, f"in.{i.name}.npy"), feed[i.name])
            want = np.load(os.path.join(here, f"{name}.{tag}.out.logits.npy")).astype(np.float64)
            scale = np.abs(want).max()
            got = sess.run(["logits"], feed)[0].astype(np.float64)
            worst["onnxruntime"] = max(worst["onnxruntime"], np.abs(got - want).max() / scale)
            for mode in ("fused", "unfused"):
                args = [binary, "run", model, "--output", f"logits={tmp}/logits.npy"] + (["--unfused"] if mode == "unfused" else [])
                args += [a for k in feed for a in ("--input", f"{k}={tmp}/in.{k}.npy")]
                r = subprocess.run(args, capture_output=True, text=True, timeout=600)
                if r.returncode != 0:
                    print(f"{name} {tag} {mode}: FAILED (exit {r.returncode}): {r.stderr.strip()[-300:]}")
                    failed += 1
                    continue
                got = np.load(f"{tmp}/logits.npy").astype(np.float64)
                worst[mode] = max(worst[mode], np.abs(got - want).max() / scale)
        bad = max(worst["fused"], worst["unfused"]) > 2e-2
        failed += bad
        print(f"{name}_f16 against the f32 model: glufuse fused {worst['fused']:.1e}, unfused {worst['unfused']:.1e}; "
              f"onnxruntime (CPU) {worst['onnxruntime']:.1e}{'  FAILED' if bad else ''}", flush=True)
sys.exit(1 if failed else 0)
