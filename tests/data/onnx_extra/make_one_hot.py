"""Makes one_hot.onnx: ONNX's OneHot (the last axis, the first and a middle one, negative
indices counted from the end, indices out of range giving the off value, a symbolic dim,
int32 indices with an int32 depth, f32 and int64 values, the values computed from an input), with
ONNX's Hardmax (the last axis and
the first, ties, -0.0 beside 0.0, -inf, a lane along the last axis with NaN giving zeros, f16), with
onnxruntime's outputs as .npy files beside it (one_hot.INPUT.npy, one_hot.out.OUTPUT.npy).
usage: python3 make_one_hot.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

cases = [
    ("last", "i", "depth5", "vals", dict(), TensorProto.FLOAT, ["n", 3, 5]),
    ("first", "i", "depth5", "vals", dict(axis=0), TensorProto.FLOAT, [5, "n", 3]),
    ("middle", "i", "depth4", "ivals", dict(axis=1), TensorProto.INT64, ["n", 4, 3]),
    ("int32", "j", "depth4_i32", "vals", dict(axis=-1), TensorProto.FLOAT, [2, 4]),
    ("computed", "i", "depth5", "scaled", dict(axis=-2), TensorProto.FLOAT, ["n", 5, 3]),
]
nodes = [helper.make_node("Mul", ["vals", "scale"], ["scaled"], name="scale_values")]
hard = [("hard_last", "x", dict(), TensorProto.FLOAT, ["m", 4]), ("hard_first", "z", dict(axis=0), TensorProto.FLOAT, [5, 4]),
        ("hard_half", "h", dict(axis=1), TensorProto.FLOAT16, [2, 5, 3])]
nodes += [helper.make_node("Hardmax", [x], [name], name=f"hardmax_{name}", **kw) for name, x, kw, _, _ in hard]
nodes += [helper.make_node("OneHot", [i, d, v], [name], name=f"one_hot_{name}", **kw) for name, i, d, v, kw, _, _ in cases]
graph = helper.make_graph(
    nodes,
    "one_hot",
    [
        helper.make_tensor_value_info("i", TensorProto.INT64, ["n", 3]),
        helper.make_tensor_value_info("j", TensorProto.INT32, [2]),
        helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", 4]),
        helper.make_tensor_value_info("h", TensorProto.FLOAT16, [2, 5, 3]),
        helper.make_tensor_value_info("z", TensorProto.FLOAT, [5, 4]),
    ],
    [helper.make_tensor_value_info(name, ty, shape) for name, _, _, _, _, ty, shape in cases]
    + [helper.make_tensor_value_info(name, ty, shape) for name, _, _, ty, shape in hard],
    initializer=[
        helper.make_tensor("depth5", TensorProto.INT64, [], [5]),
        helper.make_tensor("depth4", TensorProto.INT64, [1], [4]),
        helper.make_tensor("depth4_i32", TensorProto.INT32, [], [4]),
        helper.make_tensor("vals", TensorProto.FLOAT, [2], [-0.5, 2.0]),
        helper.make_tensor("ivals", TensorProto.INT64, [2], [0, 7]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "one_hot.onnx")
inputs = {
    "i": np.array([[0, 4, -1], [-5, 5, -6], [2, 2, 3], [1, -3, 0]], dtype=np.int64),
    "j": np.array([3, -2], dtype=np.int32),
    "scale": np.array([3.0], dtype=np.float32),
    "x": np.array([[1, 3, 3, 0], [np.nan, 1, 2, np.nan], [-np.inf] * 4, [0.0, -0.0, -1, 0], [2, -1, 5, 4]], dtype=np.float32),
    "h": np.random.default_rng(2).standard_normal((2, 5, 3)).round(0).astype(np.float16),
    # (No NaN along the first axis: onnxruntime's Hardmax there gives 1 at some lanes holding
    # NaN and 0 at others, by where the NaN falls.)
    "z": np.random.default_rng(3).standard_normal((5, 4)).round(0).astype(np.float32),
}
res = ort.InferenceSession("one_hot.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"one_hot.{name}.npy", v)
for o, v in zip([c[0] for c in cases] + [c[0] for c in hard], res):
    np.save(f"one_hot.out.{o}.npy", v)
    print(o, v.shape, v.tolist() if v.size < 40 else v.reshape(-1)[:40].tolist())
