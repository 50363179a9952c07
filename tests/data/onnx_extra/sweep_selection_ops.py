"""Sweeps random single-op graphs of TopK, OneHot and Hardmax through `glufuse run` (fused and
unfused) against onnxruntime: random ranks 1 to 3, axes, K, largest/smallest, depths, f32,
f16, int32 and int64, small integer values (ties), and +-inf, -0.0 and (TopK) NaN among the
floats. TopK's values compare bit for bit (NaN as NaN, the sign of zero kept: they are elements
of the input, read back); OneHot's and Hardmax's as numbers (NaN as NaN), since they select
between two constants and a driver may fold such a select into arithmetic that gives -0.0 for
0.0 (lavapipe does in a fused program: OneHot with the values [0, -1]). Not a test: an ad hoc
sweep, writing its graphs in a scratch folder (Hardmax gets no NaN: onnxruntime's own answer
for a lane holding NaN depends on the axis and on where the NaN falls).
usage: python3 sweep_selection_ops.py [COUNT_EACH] [SEED] [GLUFUSE]"""
import os, subprocess, sys, tempfile
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

count = int(sys.argv[1]) if len(sys.argv) > 1 else 60
rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
glufuse = sys.argv[3] if len(sys.argv) > 3 else "target/release/glufuse"
tmp = tempfile.mkdtemp()
TYPES = {"f32": (TensorProto.FLOAT, np.float32), "f16": (TensorProto.FLOAT16, np.float16),
         "i64": (TensorProto.INT64, np.int64), "i32": (TensorProto.INT32, np.int32)}


def values(shape, dt, nan):
    x = rng.integers(-3, 4, size=shape).astype(np.float32)
    if dt in ("f32", "f16"):
        m = rng.random(shape)
        x[(m > 0.1) & (m < 0.2)] = np.inf
        x[(m > 0.2) & (m < 0.3)] = -np.inf
        x[(m > 0.3) & (m < 0.35)] = -0.0
        if nan:
            x[m < 0.1] = np.nan
    return x.astype(TYPES[dt][1])


def case(op):
    """One random graph of `op`: (node, inputs' infos, initializers, inputs, outputs' infos)."""
    rank = int(rng.integers(1, 4))
    shape = [int(rng.integers(1, 7)) for _ in range(rank)]
    if op == "TopK":
        axis = int(rng.integers(-rank, rank))
        dt = str(rng.choice(["f32", "f16", "i64"]))
        k = int(rng.integers(1, shape[axis] + 1))
        node = helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=int(rng.integers(0, 2)))
        inits = [helper.make_tensor("k", TensorProto.INT64, [1], [k])]
        outs = [helper.make_tensor_value_info("v", TYPES[dt][0], None),
                helper.make_tensor_value_info("i", TensorProto.INT64, None)]
        return node, [helper.make_tensor_value_info("x", TYPES[dt][0], shape)], inits, {"x": values(shape, dt, True)}, outs
    if op == "OneHot":
        depth = int(rng.integers(1, 6))
        axis = int(rng.integers(-(rank + 1), rank + 1))
        it = str(rng.choice(["i64", "i32"]))
        vt = str(rng.choice(["f32", "i64"])) if it == "i64" else "f32"
        idx = rng.integers(-depth - 2, depth + 2, size=shape).astype(TYPES[it][1])
        vals = rng.integers(-5, 5, size=2).astype(TYPES[vt][1])
        node = helper.make_node("OneHot", ["x", "d", "v"], ["y"], axis=axis)
        inits = [helper.make_tensor("d", TYPES[it][0], [], [depth]), helper.make_tensor("v", TYPES[vt][0], [2], vals.tolist())]
        outs = [helper.make_tensor_value_info("y", TYPES[vt][0], None)]
        return node, [helper.make_tensor_value_info("x", TYPES[it][0], shape)], inits, {"x": idx}, outs
    dt = str(rng.choice(["f32", "f16"]))
    node = helper.make_node("Hardmax", ["x"], ["y"], axis=int(rng.integers(-rank, rank)))
    outs = [helper.make_tensor_value_info("y", TYPES[dt][0], None)]
    return node, [helper.make_tensor_value_info("x", TYPES[dt][0], shape)], [], {"x": values(shape, dt, False)}, outs


def same(got, want, signed_zero):
    if got.shape != want.shape or got.dtype != want.dtype:
        return False
    if got.dtype.kind != "f":
        return np.array_equal(got, want)
    nan = np.isnan(want)
    if not np.array_equal(np.isnan(got), nan):
        return False
    if signed_zero:
        bits = f"u{got.itemsize}"
        return np.array_equal(got[~nan].view(bits), want[~nan].view(bits))
    return np.array_equal(got[~nan], want[~nan])


bad = runs = 0
for op in ["TopK", "OneHot", "Hardmax"]:
    for n in range(count):
        node, ins, inits, feed, outs = case(op)
        model = helper.make_model(helper.make_graph([node], "g", ins, outs, inits),
                                  opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        path = os.path.join(tmp, "g.onnx")
        onnx.save(model, path)
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feed)
        np.save(os.path.join(tmp, "x.npy"), feed["x"])
        names = [o.name for o in outs]
        for mode in ([], ["--unfused"]):
            runs += 1
            args = [glufuse, "run", path, "--input", f"x={tmp}/x.npy"]
            args += [a for o in names for a in ("--output", f"{o}={tmp}/{o}.out.npy")]
            r = subprocess.run(args + mode, capture_output=True, text=True)
            if r.returncode != 0:
                bad += 1
                print("FAIL", op, n, mode, r.stderr.strip()[-300:])
                continue
            for o, w in zip(names, want):
                got = np.load(f"{tmp}/{o}.out.npy")
                if not same(got, w, op == "TopK"):
                    bad += 1
                    print("MISMATCH", op, n, mode, o, feed["x"].tolist(), w.tolist(), got.tolist())
print(f"{runs} runs, {bad} bad")
