"""Makes trilu.onnx: ONNX's Trilu (upper and lower, diagonals 0, 1, -1 and 2) on inputs of
symbolic dims (floats [b, n, m], int64 [n, m]), with onnxruntime's outputs as .npy files
beside it (trilu.INPUT.npy, trilu.out.OUTPUT.npy). usage: python3 make_trilu.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

k = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(name, TensorProto.INT64, [], [v]))
nodes = [
    k("k1", 1), k("km1", -1), k("k2", 2),
    helper.make_node("Trilu", ["x", "k1"], ["triu_k1"]),
    helper.make_node("Trilu", ["x", "km1"], ["tril_km1"], upper=0),
    helper.make_node("Trilu", ["x", "k2"], ["tril_k2"], upper=0),
    helper.make_node("Trilu", ["y"], ["triu_int"]),
]
graph = helper.make_graph(
    nodes,
    "trilu",
    [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "n", "m"]),
        helper.make_tensor_value_info("y", TensorProto.INT64, ["n", "m"]),
    ],
    [
        helper.make_tensor_value_info("triu_k1", TensorProto.FLOAT, ["b", "n", "m"]),
        helper.make_tensor_value_info("tril_km1", TensorProto.FLOAT, ["b", "n", "m"]),
        helper.make_tensor_value_info("tril_k2", TensorProto.FLOAT, ["b", "n", "m"]),
        helper.make_tensor_value_info("triu_int", TensorProto.INT64, ["n", "m"]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "trilu.onnx")
rng = np.random.default_rng(3)
inputs = {
    "x": rng.standard_normal((2, 4, 6)).astype(np.float32),
    "y": rng.integers(-9, 9, (4, 6)).astype(np.int64),
}
outs = ort.InferenceSession("trilu.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"trilu.{name}.npy", v)
for o, v in zip(["triu_k1", "tril_km1", "tril_k2", "triu_int"], outs):
    np.save(f"trilu.out.{o}.npy", v)
print(outs[3])
