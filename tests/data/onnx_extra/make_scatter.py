"""Makes scatter.onnx: ONNX's ScatterND (rows of a KV-cache-like [1, 2, S, 8] tensor written
at positions from an input, S and the new length n symbolic; single elements, the tuples as
long as the data's rank; negative indices; int64 and f16 data; a shape with a symbolic dim
rewritten at load time for a ConstantOfShape) and ScatterElements (axis 0, 1 and -1, indices
shorter than the data on another axis, int32 indices, negative indices, int64 and f16 data),
with onnxruntime's outputs as .npy files beside it (scatter.INPUT.npy,
scatter.out.OUTPUT.npy).
usage: python3 make_scatter.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

F, H, I64, I32 = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT32
def ints(name, dims, v):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(name, I64, dims, v))

nodes = [
    helper.make_node("Shape", ["cache"], ["cache_shape"]),
    ints("last_dim", [1, 1], [-1]),
    ints("four", [1], [4]),
    helper.make_node("ScatterND", ["cache_shape", "last_dim", "four"], ["narrow_shape"]),
    helper.make_node(
        "ConstantOfShape", ["narrow_shape"], ["shape_fold"], value=helper.make_tensor("v", F, [1], [1.5])
    ),
    helper.make_node("ScatterND", ["cache", "kv_idx", "new_kv"], ["kv"]),
    helper.make_node("ScatterND", ["cache", "el_idx", "el_upd"], ["elems"], reduction="none"),
    helper.make_node("ScatterND", ["ints", "row_idx", "int_upd"], ["nd_int"]),
    helper.make_node("ScatterND", ["halves", "half_idx", "half_upd"], ["nd_f16"]),
    helper.make_node("ScatterElements", ["x", "idx0", "upd0"], ["el_axis0"], axis=0),
    helper.make_node("ScatterElements", ["x", "idx1", "upd1"], ["el_axis1"], axis=1),
    helper.make_node("ScatterElements", ["x", "idx_last", "upd_last"], ["el_last"], axis=-1),
    helper.make_node("ScatterElements", ["ints", "int_el_idx", "int_el_upd"], ["el_int"], axis=0),
    helper.make_node("ScatterElements", ["halves", "half_el_idx", "half_el_upd"], ["el_f16"], axis=1),
]
vi = helper.make_tensor_value_info
graph = helper.make_graph(
    nodes,
    "scatter",
    [
        vi("cache", F, [1, 2, "S", 8]),
        vi("kv_idx", I64, [1, 2, "n", 3]),
        vi("new_kv", F, [1, 2, "n", 8]),
        vi("el_idx", I64, [5, 4]),
        vi("el_upd", F, [5]),
        vi("ints", I64, [4, 3]),
        vi("row_idx", I64, [2, 1]),
        vi("int_upd", I64, [2, 3]),
        vi("halves", H, [2, 5]),
        vi("half_idx", I64, [3, 2]),
        vi("half_upd", H, [3]),
        vi("x", F, [3, 4]),
        vi("idx0", I64, [2, 4]),
        vi("upd0", F, [2, 4]),
        vi("idx1", I32, [3, 2]),
        vi("upd1", F, [3, 2]),
        vi("idx_last", I64, [2, 3]),
        vi("upd_last", F, [2, 3]),
        vi("int_el_idx", I64, [1, 3]),
        vi("int_el_upd", I64, [1, 3]),
        vi("half_el_idx", I64, [2, 2]),
        vi("half_el_upd", H, [2, 2]),
    ],
    [
        vi("kv", F, [1, 2, "S", 8]),
        vi("elems", F, [1, 2, "S", 8]),
        vi("nd_int", I64, [4, 3]),
        vi("nd_f16", H, [2, 5]),
        vi("el_axis0", F, [3, 4]),
        vi("el_axis1", F, [3, 4]),
        vi("el_last", F, [3, 4]),
        vi("el_int", I64, [4, 3]),
        vi("el_f16", H, [2, 5]),
        vi("shape_fold", F, [1, 2, "S", 4]),
    ],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "scatter.onnx")
rng = np.random.default_rng(11)
S, n = 6, 3
# The new rows go to positions 2, 3 and -1 (the last, 5) of every batch and head, as a static
# cache's index_copy_ writes them.
pos = [2, 3, -1]
kv_idx = np.array([[[[0, h, p] for p in pos] for h in range(2)]], dtype=np.int64)
inputs = {
    "cache": rng.standard_normal((1, 2, S, 8)).astype(np.float32),
    "kv_idx": kv_idx,
    "new_kv": rng.standard_normal((1, 2, n, 8)).astype(np.float32),
    "el_idx": np.array([[0, 0, 0, 0], [0, 1, 5, 7], [0, -1, -6, -8], [-1, 0, 3, 4], [0, 1, 0, 1]], dtype=np.int64),
    "el_upd": np.array([1.5, -0.0, np.inf, -2.25, 1e-40], dtype=np.float32),
    "ints": np.arange(12, dtype=np.int64).reshape(4, 3) * 1000 - 5000,
    "row_idx": np.array([[3], [-4]], dtype=np.int64),
    "int_upd": np.array([[2147483647, -2147483648, 7], [-1, 0, 123456789]], dtype=np.int64),
    "halves": rng.standard_normal((2, 5)).astype(np.float16),
    "half_idx": np.array([[0, 4], [1, -5], [-2, 2]], dtype=np.int64),
    "half_upd": np.array([65504, -0.0, 6e-8], dtype=np.float16),
    "x": rng.standard_normal((3, 4)).astype(np.float32),
    "idx0": np.array([[2, 0, -1, 1], [0, -2, 0, 2]], dtype=np.int64),
    "upd0": rng.standard_normal((2, 4)).astype(np.float32),
    "idx1": np.array([[3, 0], [-1, -4], [1, 2]], dtype=np.int32),
    "upd1": rng.standard_normal((3, 2)).astype(np.float32),
    "idx_last": np.array([[0, -1, 2], [3, 1, -4]], dtype=np.int64),
    "upd_last": np.array([[np.nan, 1.0, -np.inf], [3.0, 4.0, -5.0]], dtype=np.float32),
    "int_el_idx": np.array([[-1, 0, 2]], dtype=np.int64),
    "int_el_upd": np.array([[-2147483648, 2147483647, -9]], dtype=np.int64),
    "half_el_idx": np.array([[4, -5], [0, 3]], dtype=np.int64),
    "half_el_upd": np.array([[1.0009765625, -65504], [np.inf, -6e-8]], dtype=np.float16),
}
outs = ["kv", "elems", "nd_int", "nd_f16", "el_axis0", "el_axis1", "el_last", "el_int", "el_f16", "shape_fold"]
res = ort.InferenceSession("scatter.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"scatter.{name}.npy", v)
for o, v in zip(outs, res):
    np.save(f"scatter.out.{o}.npy", v)
    print(o, v.shape, v.dtype)
