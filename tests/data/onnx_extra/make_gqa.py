"""Makes gqa.onnx: onnxruntime's GroupQueryAttention (domain com.microsoft) as
onnxruntime-genai's builds use it and beyond: q, k and v packed and apart; the rotary
embedding in halves, interleaved and over part of each head; none, with
a soft cap, a scale and an added attention_bias (without a past); a prompt without a past;
3 new tokens after a past of 4; a batch of 2, a token each after a past of 4; 4 query heads over 2 KV heads of 32 (the partial rotation over 16 of them), with onnxruntime's outputs as
.npy files beside it (gqa.INPUT.npy, gqa.out.OUTPUT.npy).
usage: python3 make_gqa.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(17)
B, S, P, H, G, D, MAXPOS = 1, 3, 4, 4, 2, 32, 16
f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
angles = np.outer(np.arange(MAXPOS), 1.0 / 10000 ** (np.arange(0, D, 2) / D)).astype(np.float32)
inits = [numpy_helper.from_array(np.cos(angles), "cos"), numpy_helper.from_array(np.sin(angles), "sin"),
         numpy_helper.from_array(np.cos(angles[:, :8]).copy(), "cos_part"),
         numpy_helper.from_array(np.sin(angles[:, :8]).copy(), "sin_part")]
ms = "com.microsoft"
heads = dict(domain=ms, num_heads=H, kv_num_heads=G)
nodes = [
    helper.make_node("GroupQueryAttention", ["qkv", "", "", "past_k", "past_v", "seqlens", "total", "cos", "sin"],
                     ["packed", "packed_k", "packed_v"], do_rotary=1, name="packed", **heads),
    helper.make_node("GroupQueryAttention", ["q", "k", "v", "past_k", "past_v", "seqlens", "total", "cos", "sin"],
                     ["interleaved", "interleaved_k", "interleaved_v"], do_rotary=1, rotary_interleaved=1,
                     name="interleaved", **heads),
    helper.make_node("GroupQueryAttention", ["qkv", "", "", "past_k", "past_v", "seqlens", "total", "cos_part", "sin_part"],
                     ["partial", "partial_k", "partial_v"], do_rotary=1, name="partial", **heads),
    # (onnxruntime takes an attention_bias with a batch of 2 only without a past.)
    helper.make_node("GroupQueryAttention", ["q", "k", "v", "", "", "seqlens0", "total0", "", "", "", "bias"],
                     ["capped", "capped_k", "capped_v"], softcap=2.0, scale=0.3, name="capped", **heads),
    helper.make_node("GroupQueryAttention", ["qkv", "", "", "", "", "seqlens0", "total0", "cos", "sin"],
                     ["prompt"], do_rotary=1, name="prompt", **heads),
    # A batch of 2, one token each after a past of 4 (onnxruntime takes a batch of more than
    # one with a past only so).
    helper.make_node("GroupQueryAttention", ["qkv2", "", "", "past_k2", "past_v2", "seqlens2", "total2", "cos", "sin"],
                     ["step", "step_k", "step_v"], do_rotary=1, name="step", **heads),
]
cache = lambda n, t: helper.make_tensor_value_info(n, TensorProto.FLOAT, [B, G, t, D])
graph = helper.make_graph(
    nodes, "gqa",
    [helper.make_tensor_value_info("qkv", TensorProto.FLOAT, [B, S, (H + 2 * G) * D]),
     helper.make_tensor_value_info("q", TensorProto.FLOAT, [B, S, H * D]),
     helper.make_tensor_value_info("k", TensorProto.FLOAT, [B, S, G * D]),
     helper.make_tensor_value_info("v", TensorProto.FLOAT, [B, S, G * D]),
     cache("past_k", P), cache("past_v", P),
     helper.make_tensor_value_info("seqlens", TensorProto.INT32, [B]),
     helper.make_tensor_value_info("total", TensorProto.INT32, []),
     helper.make_tensor_value_info("seqlens0", TensorProto.INT32, [B]),
     helper.make_tensor_value_info("total0", TensorProto.INT32, []),
     helper.make_tensor_value_info("bias", TensorProto.FLOAT, [B, 1, S, S]),
     helper.make_tensor_value_info("qkv2", TensorProto.FLOAT, [2, 1, (H + 2 * G) * D]),
     helper.make_tensor_value_info("past_k2", TensorProto.FLOAT, [2, G, P, D]),
     helper.make_tensor_value_info("past_v2", TensorProto.FLOAT, [2, G, P, D]),
     helper.make_tensor_value_info("seqlens2", TensorProto.INT32, [2]),
     helper.make_tensor_value_info("total2", TensorProto.INT32, [])],
    [helper.make_tensor_value_info(o, TensorProto.FLOAT, [B, S, H * D]) for o in ["packed"]]
    + [cache(o, P + S) for o in ["packed_k", "packed_v"]]
    + [helper.make_tensor_value_info("interleaved", TensorProto.FLOAT, [B, S, H * D])]
    + [cache(o, P + S) for o in ["interleaved_k", "interleaved_v"]]
    + [helper.make_tensor_value_info("partial", TensorProto.FLOAT, [B, S, H * D])]
    + [cache(o, P + S) for o in ["partial_k", "partial_v"]]
    + [helper.make_tensor_value_info("capped", TensorProto.FLOAT, [B, S, H * D])]
    + [cache(o, S) for o in ["capped_k", "capped_v"]]
    + [helper.make_tensor_value_info("prompt", TensorProto.FLOAT, [B, S, H * D])]
    + [helper.make_tensor_value_info("step", TensorProto.FLOAT, [2, 1, H * D])]
    + [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, G, P + 1, D]) for o in ["step_k", "step_v"]],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)], ir_version=8)
onnx.save(model, "gqa.onnx")
inputs = {
    "qkv": f32(B, S, (H + 2 * G) * D), "q": f32(B, S, H * D), "k": f32(B, S, G * D), "v": f32(B, S, G * D),
    "past_k": f32(B, G, P, D), "past_v": f32(B, G, P, D),
    "seqlens": np.full([B], P + S - 1, np.int32), "total": np.array(P + S, np.int32),
    "seqlens0": np.full([B], S - 1, np.int32), "total0": np.array(S, np.int32),
    "bias": f32(B, 1, S, S),
    "qkv2": f32(2, 1, (H + 2 * G) * D), "past_k2": f32(2, G, P, D), "past_v2": f32(2, G, P, D),
    "seqlens2": np.full([2], P, np.int32), "total2": np.array(P + 1, np.int32),
}
s = ort.InferenceSession("gqa.onnx", providers=["CPUExecutionProvider"])
for k, v in inputs.items():
    np.save(f"gqa.{k}.npy", v)
for o, v in zip(s.get_outputs(), s.run(None, inputs)):
    np.save(f"gqa.out.{o.name}.npy", v)
    print(o.name, v.shape, float(np.abs(v).max()))
