"""Makes gather_elements.onnx: ONNX's GatherElements (axis 0 with negative indices, the last
axis over a symbolic dim, a middle axis of 3-D data given as -2, indices narrower than the
data along other axes, int64 and f16 data, int32 indices), with onnxruntime's outputs as
.npy files beside it (gather_elements.INPUT.npy, gather_elements.out.OUTPUT.npy).
usage: python3 make_gather_elements.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

F, H, I, I32 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT32
cases = [
    # (output, data, indices, axis, output dtype, output shape)
    ("rows", "x", "i_rows", 0, F, [2, 4]),
    ("last", "xs", "i_last", 1, F, ["n", 3]),
    ("middle", "x3", "i_mid", -2, F, [2, 2, 3]),
    ("int", "xi", "i_int", 1, I, [2, 2]),
    ("half", "xh", "i_half", 0, H, [3, 2]),
    ("int32_indices", "x", "i32", 1, F, [3, 2]),
]
tys = {
    "x": (F, [3, 4]), "xs": (F, ["n", 5]), "x3": (F, [2, 3, 4]), "xi": (I, [2, 3]), "xh": (H, [4, 2]),
    "i_rows": (I, [2, 4]), "i_last": (I, ["n", 3]), "i_mid": (I, [2, 2, 3]), "i_int": (I, [2, 2]),
    "i_half": (I, [3, 2]), "i32": (I32, [3, 2]),
}
nodes = [helper.make_node("GatherElements", [d, i], [o], axis=a) for o, d, i, a, _, _ in cases]
graph = helper.make_graph(
    nodes,
    "gather_elements",
    [helper.make_tensor_value_info(n, t, s) for n, (t, s) in tys.items()],
    [helper.make_tensor_value_info(o, t, s) for o, _, _, _, t, s in cases],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "gather_elements.onnx")
rng = np.random.default_rng(17)
n = 4
inputs = {
    "x": rng.standard_normal((3, 4)).astype(np.float32),
    "xs": rng.standard_normal((n, 5)).astype(np.float32),
    "x3": rng.standard_normal((2, 3, 4)).astype(np.float32),
    "xi": np.array([[7, -3, 2147483647], [0, -2147483648, 5]], dtype=np.int64),
    "xh": rng.standard_normal((4, 2)).astype(np.float16),
    "i_rows": np.array([[0, -1, 2, -3], [2, 1, -2, 0]], dtype=np.int64),
    "i_last": rng.integers(-5, 5, (n, 3)).astype(np.int64),
    "i_mid": rng.integers(0, 3, (2, 2, 3)).astype(np.int64),
    "i_int": np.array([[2, 0], [1, -1]], dtype=np.int64),
    "i_half": rng.integers(0, 4, (3, 2)).astype(np.int64),
    "i32": np.array([[3, 0], [-1, 1], [2, -4]], dtype=np.int32),
}
res = ort.InferenceSession("gather_elements.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"gather_elements.{name}.npy", v)
for (o, *_), v in zip(cases, res):
    np.save(f"gather_elements.out.{o}.npy", v)
    print(o, v.shape, v.dtype)
