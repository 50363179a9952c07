"""Makes mod_isinf.onnx: ONNX's Mod (fmod 0 on int64, fmod 1 on float) and IsInf (all three
sign choices) on named inputs, with onnxruntime's outputs as .npy files beside it
(mod_isinf.INPUT.npy, mod_isinf.out.OUTPUT.npy). usage: python3 make_mod_isinf.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

nodes = [
    helper.make_node("Mod", ["a", "b"], ["mod_int"]),
    helper.make_node("Mod", ["a", "b"], ["fmod_int"], fmod=1),
    helper.make_node("Mod", ["x", "y"], ["fmod_float"], fmod=1),
    helper.make_node("IsInf", ["x"], ["inf"]),
    helper.make_node("IsInf", ["x"], ["pos_inf"], detect_negative=0),
    helper.make_node("IsInf", ["x"], ["neg_inf"], detect_positive=0),
]
n = "n"
graph = helper.make_graph(
    nodes,
    "mod_isinf",
    [
        helper.make_tensor_value_info("a", TensorProto.INT64, [n]),
        helper.make_tensor_value_info("b", TensorProto.INT64, [n]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [n]),
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [n]),
    ],
    [
        helper.make_tensor_value_info("mod_int", TensorProto.INT64, [n]),
        helper.make_tensor_value_info("fmod_int", TensorProto.INT64, [n]),
        helper.make_tensor_value_info("fmod_float", TensorProto.FLOAT, [n]),
        helper.make_tensor_value_info("inf", TensorProto.BOOL, [n]),
        helper.make_tensor_value_info("pos_inf", TensorProto.BOOL, [n]),
        helper.make_tensor_value_info("neg_inf", TensorProto.BOOL, [n]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "mod_isinf.onnx")
inputs = {
    "a": np.array([7, -7, 7, -7, 0, 13, -2147483648, 5], dtype=np.int64),
    "b": np.array([3, 3, -3, -3, 5, 13, 7, -1], dtype=np.int64),
    "x": np.array([7.5, -7.5, np.inf, -np.inf, 1e30, 0.0, 3.25, -0.5], dtype=np.float32),
    "y": np.array([2.0, 2.0, 1.0, 1.0, 7.0, 1.0, -0.75, 0.25], dtype=np.float32),
}
outs = ort.InferenceSession("mod_isinf.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for k, v in inputs.items():
    np.save(f"mod_isinf.{k}.npy", v)
for o, v in zip(["mod_int", "fmod_int", "fmod_float", "inf", "pos_inf", "neg_inf"], outs):
    np.save(f"mod_isinf.out.{o}.npy", v)
    print(o, v)
