"""Makes min_xor.onnx: ONNX's ReduceMin (over one axis, kept and dropped, and over all, -inf
included; no NaN: onnxruntime skips one where glufuse's reductions give NaN) and Xor, with
onnxruntime's outputs as .npy files beside it (min_xor.INPUT.npy, min_xor.out.OUTPUT.npy).
usage: python3 make_min_xor.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

nodes = [
    helper.make_node("ReduceMin", ["x"], ["min_rows"], axes=[1], keepdims=0),
    helper.make_node("ReduceMin", ["x"], ["min_cols"], axes=[0], keepdims=1),
    helper.make_node("ReduceMin", ["x"], ["min_all"], keepdims=0),
    helper.make_node("Xor", ["p", "q"], ["xor"]),
]
graph = helper.make_graph(
    nodes,
    "min_xor",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5]),
        helper.make_tensor_value_info("p", TensorProto.BOOL, [2, 3]),
        helper.make_tensor_value_info("q", TensorProto.BOOL, [3]),
    ],
    [
        helper.make_tensor_value_info("min_rows", TensorProto.FLOAT, ["n"]),
        helper.make_tensor_value_info("min_cols", TensorProto.FLOAT, [1, 5]),
        helper.make_tensor_value_info("min_all", TensorProto.FLOAT, []),
        helper.make_tensor_value_info("xor", TensorProto.BOOL, [2, 3]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "min_xor.onnx")
x = np.random.default_rng(5).standard_normal((4, 5)).astype(np.float32)
x[2, 3] = 3e38
x[0, 1] = -np.inf
inputs = {
    "x": x,
    "p": np.array([[True, False, True], [False, False, True]]),
    "q": np.array([True, True, False]),
}
outs = ort.InferenceSession("min_xor.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"min_xor.{name}.npy", v)
for o, v in zip(["min_rows", "min_cols", "min_all", "xor"], outs):
    np.save(f"min_xor.out.{o}.npy", v)
    print(o, v)
