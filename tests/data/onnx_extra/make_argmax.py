"""Makes argmax.onnx: ONNX's ArgMax and ArgMin (first and last index, each axis sign, kept and
dropped dims, a symbolic dim, ties, -0.0 beside 0.0, -inf, NaN passed over, a lane of NaN
only, int64 with the most negative int32 and ties) and ReduceMin of int64, with onnxruntime's outputs as .npy files beside it (argmax.INPUT.npy,
argmax.out.OUTPUT.npy).
usage: python3 make_argmax.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

outs = [
    ("max_rows", "ArgMax", "x", dict(axis=1, keepdims=0)),
    ("max_rows_last", "ArgMax", "x", dict(axis=-1, keepdims=1, select_last_index=1)),
    ("max_cols", "ArgMax", "x", dict(axis=0, keepdims=1)),
    ("max_cols_last", "ArgMax", "x", dict(axis=-2, keepdims=0, select_last_index=1)),
    ("min_rows", "ArgMin", "x", dict(axis=1, keepdims=0)),
    ("min_rows_last", "ArgMin", "x", dict(axis=1, keepdims=0, select_last_index=1)),
    ("max_3d", "ArgMax", "y", dict(axis=1, keepdims=0)),
    ("max_int", "ArgMax", "i", dict(axis=-1, keepdims=0)),
    ("max_int_last", "ArgMax", "i", dict(axis=0, keepdims=1, select_last_index=1)),
    ("min_int", "ArgMin", "i", dict(axis=-1, keepdims=0)),
    ("min_int_last", "ArgMin", "i", dict(axis=0, keepdims=1, select_last_index=1)),
    ("rmin_int", "ReduceMin", "i", dict(axes=[1], keepdims=0)),
    ("rmin_int_cols", "ReduceMin", "i", dict(axes=[0], keepdims=1)),
]
nodes = [helper.make_node(op, [x], [name], **kw) for name, op, x, kw in outs]
shapes = {"max_rows": ["n"], "max_rows_last": ["n", 1], "max_cols": [1, 6], "max_cols_last": [6],
          "min_rows": ["n"], "min_rows_last": ["n"], "max_3d": [2, 4], "max_int": [3], "max_int_last": [1, 4],
          "min_int": [3], "min_int_last": [1, 4], "rmin_int": [3], "rmin_int_cols": [1, 4]}
graph = helper.make_graph(
    nodes,
    "argmax",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5, 4]),
        helper.make_tensor_value_info("i", TensorProto.INT64, [3, 4]),
    ],
    [helper.make_tensor_value_info(name, TensorProto.INT64, shapes[name]) for name, _, _, _ in outs],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "argmax.onnx")
nan, inf = np.nan, np.inf
x = np.array([
    [1.0, 3.0, -2.0, 3.0, 0.5, -7.0],
    [0.0, -0.0, -1.0, -1.0, 0.0, -0.0],
    [1.0, nan, 3.0, nan, 3.0, 2.0],
    [nan, nan, nan, nan, nan, nan],
    [-inf, nan, -inf, -inf, nan, -inf],
    [2.5, -inf, inf, 4.0, inf, -inf],
    [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],
], dtype=np.float32)
inputs = {
    "x": x,
    "y": np.random.default_rng(3).standard_normal((2, 5, 4)).astype(np.float32).round(0),
    "i": np.array([[3, -1, 3, -1], [-2147483648, 0, 7, 7], [5, 5, 5, 5]], dtype=np.int64),
}
res = ort.InferenceSession("argmax.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"argmax.{name}.npy", v)
for (o, _, _, _), v in zip(outs, res):
    np.save(f"argmax.out.{o}.npy", v)
    print(o, v.tolist())
