"""Makes if_constants.onnx: `If` on a condition computed at run time (a comparison of an
input's length), its branches constants only, as onnxruntime-genai's LongRoPE builds pick
their rotary tables: two outputs an `If`, one `If` on the opposite condition, each added to
x; with onnxruntime's outputs as .npy files beside it (if_constants.INPUT.npy,
if_constants.out.OUTPUT.npy). The input `ids` has 3 elements: the first `If` takes its then
branch, the second its else branch.
usage: python3 make_if_constants.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

rng = np.random.default_rng(23)

def branch(name, tables):
    nodes = [helper.make_node("Constant", [], [f"{name}{k}"], value=helper.make_tensor(f"{name}{k}_v", TensorProto.FLOAT, [2, 3], t.flatten()))
             for k, t in enumerate(tables)]
    outs = [helper.make_tensor_value_info(f"{name}{k}", TensorProto.FLOAT, [2, 3]) for k in range(len(tables))]
    return helper.make_graph(nodes, name, [], outs)

tables = [rng.standard_normal((2, 3)).astype(np.float32) for _ in range(6)]
nodes = [
    helper.make_node("Shape", ["ids"], ["n"], name="n"),
    helper.make_node("Greater", ["n", "two"], ["long"], name="long"),
    helper.make_node("Not", ["long"], ["short"], name="short"),
    helper.make_node("If", ["long"], ["t0", "t1"], then_branch=branch("a", tables[:2]), else_branch=branch("b", tables[2:4]), name="pick"),
    helper.make_node("If", ["short"], ["t2"], then_branch=branch("c", tables[4:5]), else_branch=branch("d", tables[5:6]), name="pick_other"),
    helper.make_node("Add", ["x", "t0"], ["y0"], name="y0"),
    helper.make_node("Add", ["x", "t1"], ["y1"], name="y1"),
    helper.make_node("Add", ["x", "t2"], ["y2"], name="y2"),
]
graph = helper.make_graph(
    nodes, "if_constants",
    [helper.make_tensor_value_info("ids", TensorProto.INT64, ["n"]), helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
    [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, 3]) for o in ["y0", "y1", "y2"]],
    [helper.make_tensor("two", TensorProto.INT64, [1], [2])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
onnx.save(model, "if_constants.onnx")
inputs = {"ids": np.array([5, 6, 7], np.int64), "x": rng.standard_normal((2, 3)).astype(np.float32)}
s = ort.InferenceSession("if_constants.onnx", providers=["CPUExecutionProvider"])
for k, v in inputs.items():
    np.save(f"if_constants.{k}.npy", v)
for o, v in zip(s.get_outputs(), s.run(None, inputs)):
    np.save(f"if_constants.out.{o.name}.npy", v)
    print(o.name, v.shape)
