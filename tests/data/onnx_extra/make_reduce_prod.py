"""Makes reduce_prod.onnx: ONNX's ReduceProd over the last axis kept (fused into the program
that multiplies it with x after the passes), over the first axis dropped, over every axis, on
a symbolic length, of int64 (exact), with onnxruntime's outputs as .npy files beside it
(reduce_prod.INPUT.npy, reduce_prod.out.OUTPUT.npy). usage: python3 make_reduce_prod.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

nodes = [
    helper.make_node("ReduceProd", ["x", "last"], ["p_last"], name="prod_last", keepdims=1),
    helper.make_node("Mul", ["p_last", "x"], ["scaled"], name="scale"),
    helper.make_node("ReduceProd", ["x", "first"], ["p_first"], name="prod_first", keepdims=0),
    helper.make_node("ReduceProd", ["x"], ["p_all"], name="prod_all", keepdims=0),
    helper.make_node("ReduceProd", ["i", "last"], ["p_int"], name="prod_int", keepdims=0),
]
graph = helper.make_graph(
    nodes,
    "reduce_prod",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, "n"]),
     helper.make_tensor_value_info("i", TensorProto.INT64, [2, 4])],
    [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [3, "n"]),
     helper.make_tensor_value_info("p_first", TensorProto.FLOAT, ["n"]),
     helper.make_tensor_value_info("p_all", TensorProto.FLOAT, []),
     helper.make_tensor_value_info("p_int", TensorProto.INT64, [2])],
    initializer=[helper.make_tensor("last", TensorProto.INT64, [1], [-1]),
                 helper.make_tensor("first", TensorProto.INT64, [1], [0])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "reduce_prod.onnx")
rng = np.random.default_rng(5)
inputs = {"x": rng.uniform(0.5, 1.5, (3, 7)).astype(np.float32) * np.array([1, -1, 1, 1, -1, 1, 1], np.float32),
          "i": np.array([[2, -3, 5, 7], [-1, 0, 9, 4]], dtype=np.int64)}
s = ort.InferenceSession("reduce_prod.onnx", providers=["CPUExecutionProvider"])
for k, v in inputs.items():
    np.save(f"reduce_prod.{k}.npy", v)
for o, v in zip(s.get_outputs(), s.run(None, inputs)):
    np.save(f"reduce_prod.out.{o.name}.npy", v)
    print(o.name, v)
