"""Makes more_ops.onnx: ONNX's ReduceMin (over one axis, kept and dropped, and over all, -inf
included; no NaN: onnxruntime skips one where glufuse's reductions give NaN), Xor, Sign (of
floats, zeros and NaN included, and of int64), Round (halves to even) and Tile (of a symbolic
dim and of int64), with onnxruntime's
outputs as .npy files beside it (more_ops.INPUT.npy, more_ops.out.OUTPUT.npy).
usage: python3 make_more_ops.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

nodes = [
    helper.make_node("ReduceMin", ["x"], ["min_rows"], axes=[1], keepdims=0),
    helper.make_node("ReduceMin", ["x"], ["min_cols"], axes=[0], keepdims=1),
    helper.make_node("ReduceMin", ["x"], ["min_all"], keepdims=0),
    helper.make_node("Xor", ["p", "q"], ["xor"]),
    helper.make_node("Sign", ["s"], ["sign"]),
    helper.make_node("Sign", ["i"], ["sign_int"]),
    helper.make_node("Round", ["s"], ["round"]),
    helper.make_node("Constant", [], ["reps"], value=helper.make_tensor("reps", TensorProto.INT64, [2], [2, 3])),
    helper.make_node("Constant", [], ["reps1"], value=helper.make_tensor("reps1", TensorProto.INT64, [1], [3])),
    helper.make_node("Tile", ["x", "reps"], ["tile"]),
    helper.make_node("Tile", ["i", "reps1"], ["tile_int"]),
]
graph = helper.make_graph(
    nodes,
    "more_ops",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5]),
        helper.make_tensor_value_info("p", TensorProto.BOOL, [2, 3]),
        helper.make_tensor_value_info("q", TensorProto.BOOL, [3]),
        helper.make_tensor_value_info("s", TensorProto.FLOAT, [8]),
        helper.make_tensor_value_info("i", TensorProto.INT64, [4]),
    ],
    [
        helper.make_tensor_value_info("min_rows", TensorProto.FLOAT, ["n"]),
        helper.make_tensor_value_info("min_cols", TensorProto.FLOAT, [1, 5]),
        helper.make_tensor_value_info("min_all", TensorProto.FLOAT, []),
        helper.make_tensor_value_info("xor", TensorProto.BOOL, [2, 3]),
        helper.make_tensor_value_info("sign", TensorProto.FLOAT, [8]),
        helper.make_tensor_value_info("sign_int", TensorProto.INT64, [4]),
        helper.make_tensor_value_info("round", TensorProto.FLOAT, [8]),
        helper.make_tensor_value_info("tile", TensorProto.FLOAT, [None, 15]),
        helper.make_tensor_value_info("tile_int", TensorProto.INT64, [12]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "more_ops.onnx")
x = np.random.default_rng(5).standard_normal((4, 5)).astype(np.float32)
x[2, 3] = 3e38
x[0, 1] = -np.inf
inputs = {
    "x": x,
    "p": np.array([[True, False, True], [False, False, True]]),
    "q": np.array([True, True, False]),
    "s": np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.0, np.nan, -7.25], dtype=np.float32),
    "i": np.array([-3, 0, 5, -2147483647], dtype=np.int64),
}
outs = ort.InferenceSession("more_ops.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"more_ops.{name}.npy", v)
for o, v in zip(["min_rows", "min_cols", "min_all", "xor", "sign", "sign_int", "round", "tile", "tile_int"], outs):
    np.save(f"more_ops.out.{o}.npy", v)
    print(o, v)
