"""Makes a model runnable from its graph alone: for every .onnx under SRC (ONNX graphs whose
weights are external data, as `export.py perf` and optimum write them), writes the graph to DST
and its external data file with random values (normal, std 0.02) at the offsets the graph names. The
timing of a random-init model does not depend on which random values it holds, and this
takes seconds where the export takes minutes. usage: fill_weights.py SRC DST"""
import os, shutil, sys, time
import numpy as np, onnx
from onnx import TensorProto

src, dst = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
sizes = {TensorProto.FLOAT: (np.float32, 4), TensorProto.FLOAT16: (np.float16, 2), TensorProto.INT64: (np.int64, 8),
         TensorProto.INT32: (np.int32, 4), TensorProto.BOOL: (np.bool_, 1)}
for root, _, files in os.walk(src):
    for f in sorted(files):
        if not f.endswith(".onnx"):
            continue
        t0 = time.time()
        rel = os.path.relpath(os.path.join(root, f), src)
        out = os.path.join(dst, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        m = onnx.load(os.path.join(root, f), load_external_data=False)
        files_out = {}
        # Initializers, and Constant values that an exporter also put in external data
        # (optimum does for a large model: its rotary frequencies).
        consts = [a.t for n in m.graph.node if n.op_type == "Constant" for a in n.attribute if a.HasField("t")]
        for t in list(m.graph.initializer) + consts:
            if t.data_location != TensorProto.EXTERNAL:
                continue
            kv = {e.key: e.value for e in t.external_data}
            dt, width = sizes[t.data_type]
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            off, length = int(kv.get("offset", 0)), int(kv.get("length", n * width))
            path = os.path.join(os.path.dirname(out), kv["location"])
            fh = files_out.get(path) or files_out.setdefault(path, open(path, "wb"))
            if dt in (np.float32, np.float16):
                v = (rng.standard_normal(n, dtype=np.float32) * 0.02).astype(dt)
            else:
                v = np.zeros(n, dt)  # integer and boolean initializers: zeros (none in these models)
            fh.seek(off)
            fh.write(v.tobytes()[:length])
        for fh in files_out.values():
            fh.close()
        shutil.copyfile(os.path.join(root, f), out)
        print(f"{rel}: weights filled in {time.time() - t0:.1f} s", flush=True)
