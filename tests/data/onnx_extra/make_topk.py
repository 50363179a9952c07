"""Makes topk.onnx: ONNX's TopK (largest and smallest first, K from 1 to the whole axis, the
last axis and earlier ones, a symbolic dim beside the axis, ties, -0.0 beside 0.0, +-inf, NaN
(first among the largest, last among the smallest, as onnxruntime orders it), int64 with the
most negative int32 and ties, f16; lanes of a symbolic size longer than a workgroup, K = 100), with onnxruntime's outputs as .npy files beside it
(topk.INPUT.npy, topk.out.OUTPUT.npy).
usage: python3 make_topk.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

# (values output, indices output, input, K, attributes, output shape)
cases = [
    ("top3", "top3_i", "x", 3, dict(), ["n", 3]),
    ("all6", "all6_i", "x", 6, dict(axis=1), ["n", 6]),
    ("low2", "low2_i", "x", 2, dict(largest=0), ["n", 2]),
    ("low6", "low6_i", "x", 6, dict(axis=-1, largest=0, sorted=1), ["n", 6]),
    ("mid", "mid_i", "y", 2, dict(axis=1), [2, 2, 4]),
    ("first", "first_i", "y", 1, dict(axis=0, largest=0), [1, 5, 4]),
    ("int_top", "int_top_i", "i", 2, dict(), [3, 2]),
    ("int_low", "int_low_i", "i", 3, dict(axis=0, largest=0), [3, 4]),
    ("half", "half_i", "h", 4, dict(), [3, 4]),
    ("long", "long_i", "z", 100, dict(), [2, 100]),
    ("long_low", "long_low_i", "z", 3, dict(largest=0), [2, 3]),
]
types = {"x": TensorProto.FLOAT, "y": TensorProto.FLOAT, "i": TensorProto.INT64, "h": TensorProto.FLOAT16, "z": TensorProto.FLOAT}
nodes, inits, outs = [], [], []
for v, i, x, k, kw, shape in cases:
    inits.append(helper.make_tensor(f"k_{v}", TensorProto.INT64, [1], [k]))
    nodes.append(helper.make_node("TopK", [x, f"k_{v}"], [v, i], name=f"topk_{v}", **kw))
    outs.append(helper.make_tensor_value_info(v, types[x], shape))
    outs.append(helper.make_tensor_value_info(i, TensorProto.INT64, shape))
graph = helper.make_graph(
    nodes,
    "topk",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 4]),
        helper.make_tensor_value_info("i", TensorProto.INT64, [3, 4]),
        helper.make_tensor_value_info("h", TensorProto.FLOAT16, [3, 8]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, "m"]),
    ],
    outs,
    initializer=inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "topk.onnx")
nan, inf = np.nan, np.inf
# The committed outputs of x (top3, all6, low2, low6) came from an earlier onnxruntime, which put
# NaN first among the largest and last among the smallest, ties by index. onnxruntime 1.30's CPU
# TopK gives lanes holding NaN in no consistent order (a lane of six NaN as indices 3 5 4 0 2 1):
# with it, keep those files as they are (git checkout them after running this script).
x = np.array([
    [1.0, 3.0, -2.0, 3.0, 0.5, -7.0],
    [0.0, -0.0, -1.0, -1.0, 0.0, -0.0],
    [1.0, nan, 3.0, nan, 3.0, 2.0],
    [nan, nan, nan, nan, nan, nan],
    [-inf, nan, -inf, -inf, nan, -inf],
    [2.5, -inf, inf, 4.0, inf, -inf],
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
], dtype=np.float32)
rng = np.random.default_rng(5)
inputs = {
    "x": x,
    "y": rng.standard_normal((2, 5, 4)).astype(np.float32).round(0),
    "i": np.array([[3, -1, 3, -1], [-2147483648, 0, 7, 7], [5, 5, -2147483648, 5]], dtype=np.int64),
    "h": rng.standard_normal((3, 8)).astype(np.float16),
    # Few distinct values (ties everywhere) and both zeros, in lanes of 700 (no NaN: see above).
    "z": np.random.default_rng(6).choice([0.0, -0.0, 1.5, -1.5, 3.0, inf, -inf], size=(2, 700)).astype(np.float32),
}
res = ort.InferenceSession("topk.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"topk.{name}.npy", v)
names = [n for v, i, *_ in cases for n in (v, i)]
for o, v in zip(names, res):
    np.save(f"topk.out.{o}.npy", v)
    print(o, v.tolist())
