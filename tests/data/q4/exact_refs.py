"""Writes NAME.TAG.exact.npy for the DequantizeLinear (QDQ) models of this folder: onnxruntime's
CPU output with graph optimizations off, i.e. DequantizeLinear then MatMul as the ONNX spec
defines them (run: python3 tests/data/q4/exact_refs.py; needs numpy and onnxruntime).

Why: with its default optimizations onnxruntime's CPU provider rewrites DequantizeLinear +
MatMul into MatMulNBits at accuracy level 4 (session.qdq_matmulnbits_accuracy_level), which
quantizes the activations to int8 on the fly; the NAME.TAG.out.out.npy references of the QDQ
models were computed that way and differ from the exact product by 0.5-2.4% of their largest
value (the MatMulNBits models, at accuracy level 0, are exact). glufuse computes the exact
product, so the QDQ models are checked against these files.
"""
import glob
import os

import numpy as np
import onnxruntime as ort

here = os.path.dirname(os.path.abspath(__file__))
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
for f in sorted(glob.glob(os.path.join(here, "*.onnx"))):
    m = os.path.basename(f)[:-5]
    if "qdq" not in m:
        continue
    s = ort.InferenceSession(f, so, providers=["CPUExecutionProvider"])
    tags = [None] if m.startswith("shared_") else ["t1", "t7"]
    for t in tags:
        stem = f"{m}.{t}" if t else m
        x = np.load(os.path.join(here, f"{stem}.x.npy"))
        y = s.run(None, {s.get_inputs()[0].name: x})[0]
        np.save(os.path.join(here, f"{stem}.exact.npy"), y)
