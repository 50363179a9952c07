"""Makes trig.onnx: ONNX's Tan, Asin, Acos, Atan, Sinh, Cosh, Asinh, Acosh and Atanh on a symbolic
length of f32 values (the domains' edges, NaN, ±inf, values far out; the tangent's within 1e4) and Sinh and Atan of f16,
with onnxruntime's outputs as .npy files beside it (trig.INPUT.npy, trig.out.OUTPUT.npy).
usage: python3 make_trig.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

ops = ["Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh"]
# (Tan takes `t`: its argument is reduced in f32 as the sine's is, which holds to 1e4 or so,
# not at 1e20.)
nodes = [helper.make_node(op, ["t" if op == "Tan" else "x"], [op.lower()], name=f"node_{op.lower()}") for op in ops]
nodes += [helper.make_node("Sinh", ["h"], ["sinh_half"], name="node_sinh_half"),
          helper.make_node("Atan", ["h"], ["atan_half"], name="node_atan_half")]
graph = helper.make_graph(
    nodes,
    "trig",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"]),
     helper.make_tensor_value_info("t", TensorProto.FLOAT, ["m"]),
     helper.make_tensor_value_info("h", TensorProto.FLOAT16, [6])],
    [helper.make_tensor_value_info(op.lower(), TensorProto.FLOAT, ["m" if op == "Tan" else "n"]) for op in ops]
    + [helper.make_tensor_value_info(o, TensorProto.FLOAT16, [6]) for o in ("sinh_half", "atan_half")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "trig.onnx")
x = np.array([-2.5, -1.0, -0.999, -0.3, 0.0, 1e-6, 0.4, 0.999, 1.0, 1.5, 2.7, 10.0, -30.0, 89.0, -89.2, 1000.0,
              1e20, np.nan, np.inf, -np.inf], dtype=np.float32)
h = np.array([-3.0, -0.5, 0.0, 0.25, 2.0, 11.0], dtype=np.float16)
t = np.array([-2.5, -1.57, 0.0, 1.5, 1.5707, 100.0, -1000.5, 4096.25, np.nan, np.inf], dtype=np.float32)
inputs = {"x": x, "t": t, "h": h}
s = ort.InferenceSession("trig.onnx", providers=["CPUExecutionProvider"])
for k, v in inputs.items():
    np.save(f"trig.{k}.npy", v)
for o, v in zip(s.get_outputs(), s.run(None, inputs)):
    np.save(f"trig.out.{o.name}.npy", v)
    print(o.name, v)
