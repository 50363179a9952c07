"""Makes pad.onnx: ONNX's Pad in constant mode (every axis, some axes through `axes`, a
symbolic dim, the default zero and a given value, zeros on one side, f32 and int64) and in
edge, reflect and wrap modes (a symbolic dim where the mode allows one, pads up to the
size, int64), with
onnxruntime's outputs as .npy files beside it (pad.INPUT.npy, pad.out.OUTPUT.npy).
usage: python3 make_pad.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

def ints(name, v):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [len(v)], v))

nodes = [
    ints("p_all", [1, 0, 2, 3]),
    ints("p_axes", [2, 1]),
    ints("axes", [-1]),
    ints("p_int", [0, 2]),
    helper.make_node("Constant", [], ["v"], value=helper.make_tensor("v", TensorProto.FLOAT, [], [-1.5])),
    helper.make_node("Constant", [], ["vi"], value=helper.make_tensor("vi", TensorProto.INT64, [], [7])),
    helper.make_node("Pad", ["x", "p_all"], ["all_zero"]),
    helper.make_node("Pad", ["x", "p_all", "v"], ["all_value"], mode="constant"),
    helper.make_node("Pad", ["x", "p_axes", "v", "axes"], ["last_axis"]),
    helper.make_node("Pad", ["i", "p_int", "vi"], ["int"]),
    ints("p_edge", [1, 0, 2, 3]),
    ints("p_reflect", [2, 1]),
    ints("p_wrap", [3, 1, 2, 3]),
    ints("p_edge_int", [2, 1]),
    helper.make_node("Pad", ["x", "p_edge"], ["edge"], mode="edge"),
    helper.make_node("Pad", ["x", "p_reflect", "", "axes"], ["reflect"], mode="reflect"),
    helper.make_node("Pad", ["x", "p_wrap"], ["wrap"], mode="wrap"),
    helper.make_node("Pad", ["i", "p_edge_int"], ["edge_int"], mode="edge"),
]
graph = helper.make_graph(
    nodes,
    "pad",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3]),
        helper.make_tensor_value_info("i", TensorProto.INT64, [4]),
    ],
    [
        helper.make_tensor_value_info("all_zero", TensorProto.FLOAT, [None, 6]),
        helper.make_tensor_value_info("all_value", TensorProto.FLOAT, [None, 6]),
        helper.make_tensor_value_info("last_axis", TensorProto.FLOAT, [None, 6]),
        helper.make_tensor_value_info("int", TensorProto.INT64, [6]),
        helper.make_tensor_value_info("edge", TensorProto.FLOAT, [None, 6]),
        helper.make_tensor_value_info("reflect", TensorProto.FLOAT, [None, 6]),
        helper.make_tensor_value_info("wrap", TensorProto.FLOAT, [None, 7]),
        helper.make_tensor_value_info("edge_int", TensorProto.INT64, [7]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "pad.onnx")
inputs = {
    "x": np.random.default_rng(9).standard_normal((4, 3)).astype(np.float32),
    "i": np.array([3, -1, 0, 2147483647], dtype=np.int64),
}
res = ort.InferenceSession("pad.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"pad.{name}.npy", v)
for o, v in zip(["all_zero", "all_value", "last_axis", "int", "edge", "reflect", "wrap", "edge_int"], res):
    np.save(f"pad.out.{o}.npy", v)
    print(o, v.shape, v.tolist())
