"""Cuts the whole-model exports of tests/data/models down to fuzzing seeds for the onnx target
(run: python3 fuzz/seed_models.py OUT_DIR; then `cargo fuzz cmin` or copy what is small).

Every initializer of more than 16 elements becomes a ConstantOfShape node of the same shape
and dtype, and the exporter's metadata (stack traces, name scopes, doc strings) goes: the
graph, its shape arithmetic and its types stay as exported, in a tenth of the bytes.
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
models = os.path.join(here, "..", "tests", "data", "models")
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name in sorted(os.listdir(models)):
    if not name.endswith(".onnx"):
        continue
    m = onnx.load(os.path.join(models, name))
    g = m.graph
    keep, consts = [], []
    for t in g.initializer:
        a = numpy_helper.to_array(t)
        if a.size <= 16:
            keep.append(t)
            continue
        shape = numpy_helper.from_array(np.array(a.shape, dtype=np.int64), t.name + "_shape")
        keep.append(shape)
        value = numpy_helper.from_array(np.array([0.01], dtype=a.dtype))
        consts.append(helper.make_node("ConstantOfShape", [shape.name], [t.name], name=t.name + "_fill", value=value))
    del g.initializer[:]
    g.initializer.extend(keep)
    nodes = consts + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    for n in g.node:
        del n.metadata_props[:]
        n.doc_string = ""
    del m.metadata_props[:]
    m.doc_string = ""
    g.doc_string = ""
    data = m.SerializeToString()
    with open(os.path.join(out, "model_" + name), "wb") as f:
        f.write(data)
    print(f"{name}: {len(data)} bytes")
