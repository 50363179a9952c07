"""Makes rotary_ms.onnx: onnxruntime's `RotaryEmbedding` (domain com.microsoft, as
onnxruntime-genai's DirectML builds rotate q and k before `GroupQueryAttention`): 3-D inputs at
positions per row, from one start, interleaved, rotating part of each head (`num_heads`,
`rotary_embedding_dim`), and a 4-D `[batch, heads, length, head]` input; with onnxruntime's
outputs as .npy files beside it (rotary_ms.INPUT.npy, rotary_ms.out.OUTPUT.npy).
usage: python3 make_rotary_ms.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(29)
B, S, H, D, MAXPOS = 2, 3, 4, 32, 24
angles = np.outer(np.arange(MAXPOS), 1.0 / 10000 ** (np.arange(0, D, 2) / D)).astype(np.float32)
inits = [numpy_helper.from_array(np.cos(angles), "cos"), numpy_helper.from_array(np.sin(angles), "sin"),
         numpy_helper.from_array(np.cos(angles[:, :8]).copy(), "cos_part"),
         numpy_helper.from_array(np.sin(angles[:, :8]).copy(), "sin_part")]
ms = "com.microsoft"
nodes = [
    helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["rows"], domain=ms, name="rows"),
    helper.make_node("RotaryEmbedding", ["x", "start", "cos", "sin"], ["started"], domain=ms, name="started"),
    helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["interleaved"], domain=ms, interleaved=1, name="interleaved"),
    helper.make_node("RotaryEmbedding", ["x", "pos", "cos_part", "sin_part"], ["partial"], domain=ms, num_heads=H,
                     rotary_embedding_dim=16, name="partial"),
    helper.make_node("RotaryEmbedding", ["x4", "pos", "cos", "sin"], ["by_head"], domain=ms, name="by_head"),
]
graph = helper.make_graph(
    nodes, "rotary_ms",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, H * D]),
     helper.make_tensor_value_info("x4", TensorProto.FLOAT, [B, H, S, D]),
     helper.make_tensor_value_info("pos", TensorProto.INT64, [B, S]),
     helper.make_tensor_value_info("start", TensorProto.INT64, [1])],
    [helper.make_tensor_value_info(o, TensorProto.FLOAT, [B, S, H * D]) for o in ["rows", "started", "interleaved", "partial"]]
    + [helper.make_tensor_value_info("by_head", TensorProto.FLOAT, [B, H, S, D])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)], ir_version=8)
onnx.save(model, "rotary_ms.onnx")
inputs = {"x": rng.standard_normal((B, S, H * D)).astype(np.float32), "x4": rng.standard_normal((B, H, S, D)).astype(np.float32),
          "pos": np.array([[3, 4, 5], [9, 2, 17]], np.int64), "start": np.array([6], np.int64)}
s = ort.InferenceSession("rotary_ms.onnx", providers=["CPUExecutionProvider"])
for k, v in inputs.items():
    np.save(f"rotary_ms.{k}.npy", v)
for o, v in zip(s.get_outputs(), s.run(None, inputs)):
    np.save(f"rotary_ms.out.{o.name}.npy", v)
    print(o.name, v.shape)
