"""Makes rope_rms.onnx: opset 23's RotaryEmbedding (halves and interleaved, the whole head
and a part of it, 4-D and 3-D inputs, caches read at position_ids), RMSNormalization (the
last axis and from axis 1, f32 and f16 with an f32 stash) and Attention (grouped-query heads
with a boolean mask hiding one row everywhere and the default scale; a float mask, a scale and
a soft cap; no mask) on inputs of symbolic batch and sequence, with the expected outputs as .npy files beside it (rope_rms.INPUT.npy,
rope_rms.out.OUTPUT.npy): onnxruntime's where it runs an output, else onnx's reference
implementation's. usage: python3 make_rope_rms.py"""
import numpy as np, onnx
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

F, H = TensorProto.FLOAT, TensorProto.FLOAT16
nodes = [
    helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["rope_half"]),
    helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["rope_inter"], interleaved=1),
    helper.make_node("RotaryEmbedding", ["x", "cos_cache", "sin_cache", "pos"], ["rope_part_pos"], rotary_embedding_dim=4),
    helper.make_node("RotaryEmbedding", ["x3", "cos", "sin"], ["rope_3d"], interleaved=1, num_heads=2),
    helper.make_node("RMSNormalization", ["r", "scale"], ["rms_last"], epsilon=1e-5),
    helper.make_node("RMSNormalization", ["r2", "scale2"], ["rms_axis1"], axis=1, epsilon=1e-3),
    helper.make_node("RMSNormalization", ["rh", "scaleh"], ["rms_f16"]),
    helper.make_node("Attention", ["aq", "ak", "av", "amask"], ["attn_gqa_bool"]),
    helper.make_node("Attention", ["aq2", "ak2", "av2", "afmask"], ["attn_cap_float"], scale=0.5, softcap=2.0),
    helper.make_node("Attention", ["aq2", "ak2", "av2"], ["attn_nomask"]),
    helper.make_node("Attention", ["aq2", "ak2", "av2", "amask2"], ["attn_causal"], is_causal=1),
    helper.make_node("Attention", ["aq3", "ak3", "av3", "", "apk", "apv"], ["attn3_y", "attn3_pk", "attn3_pv"],
                     is_causal=1, q_num_heads=4, kv_num_heads=2),
]
outs = [
    ("rope_half", F, ["b", 2, "s", 8]),
    ("rope_inter", F, ["b", 2, "s", 8]),
    ("rope_part_pos", F, ["b", 2, "s", 8]),
    ("rope_3d", F, ["b", "s", 16]),
    ("rms_last", F, ["b", "s", 8]),
    ("rms_axis1", F, [2, 3, 8]),
    ("rms_f16", H, ["b", "s", 8]),
    ("attn_gqa_bool", F, ["b", 4, "s", 8]),
    ("attn_cap_float", F, ["b", 2, "s", 8]),
    ("attn_nomask", F, ["b", 2, "s", 8]),
    ("attn_causal", F, ["b", 2, "s", 8]),
    ("attn3_y", F, ["b", "s", 32]),
    ("attn3_pk", F, ["b", 2, "p + s", 8]),
    ("attn3_pv", F, ["b", 2, "p + s", 8]),
]
graph = helper.make_graph(
    nodes,
    "rope_rms",
    [
        helper.make_tensor_value_info("x", F, ["b", 2, "s", 8]),
        helper.make_tensor_value_info("x3", F, ["b", "s", 16]),
        helper.make_tensor_value_info("cos", F, ["b", "s", 4]),
        helper.make_tensor_value_info("sin", F, ["b", "s", 4]),
        helper.make_tensor_value_info("cos_cache", F, [16, 2]),
        helper.make_tensor_value_info("sin_cache", F, [16, 2]),
        helper.make_tensor_value_info("pos", TensorProto.INT64, ["b", "s"]),
        helper.make_tensor_value_info("r", F, ["b", "s", 8]),
        helper.make_tensor_value_info("scale", F, [8]),
        helper.make_tensor_value_info("r2", F, [2, 3, 8]),
        helper.make_tensor_value_info("scale2", F, [3, 8]),
        helper.make_tensor_value_info("rh", H, ["b", "s", 8]),
        helper.make_tensor_value_info("scaleh", H, [8]),
        helper.make_tensor_value_info("aq", F, ["b", 4, "s", 8]),
        helper.make_tensor_value_info("ak", F, ["b", 2, "t", 8]),
        helper.make_tensor_value_info("av", F, ["b", 2, "t", 8]),
        helper.make_tensor_value_info("amask", TensorProto.BOOL, ["b", 1, "s", "t"]),
        helper.make_tensor_value_info("aq2", F, ["b", 2, "s", 8]),
        helper.make_tensor_value_info("ak2", F, ["b", 2, "t", 8]),
        helper.make_tensor_value_info("av2", F, ["b", 2, "t", 8]),
        helper.make_tensor_value_info("afmask", F, [1, 1, "s", "t"]),
        helper.make_tensor_value_info("amask2", TensorProto.BOOL, ["b", 1, "s", "t"]),
        helper.make_tensor_value_info("aq3", F, ["b", "s", 32]),
        helper.make_tensor_value_info("ak3", F, ["b", "s", 16]),
        helper.make_tensor_value_info("av3", F, ["b", "s", 16]),
        helper.make_tensor_value_info("apk", F, ["b", 2, "p", 8]),
        helper.make_tensor_value_info("apv", F, ["b", 2, "p", 8]),
    ],
    [helper.make_tensor_value_info(n, t, s) for n, t, s in outs],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)], ir_version=10)
onnx.checker.check_model(model)
onnx.save(model, "rope_rms.onnx")
rng = np.random.default_rng(5)
b, s = 2, 3
ang = rng.uniform(-3, 3, (b, s, 4))
angc = rng.uniform(-3, 3, (16, 2))
inputs = {
    "x": rng.standard_normal((b, 2, s, 8)).astype(np.float32),
    "x3": rng.standard_normal((b, s, 16)).astype(np.float32),
    "cos": np.cos(ang).astype(np.float32),
    "sin": np.sin(ang).astype(np.float32),
    "cos_cache": np.cos(angc).astype(np.float32),
    "sin_cache": np.sin(angc).astype(np.float32),
    "pos": rng.integers(0, 16, (b, s)).astype(np.int64),
    "r": rng.standard_normal((b, s, 8)).astype(np.float32),
    "scale": rng.standard_normal(8).astype(np.float32),
    "r2": rng.standard_normal((2, 3, 8)).astype(np.float32),
    "scale2": rng.standard_normal((3, 8)).astype(np.float32),
    "rh": rng.standard_normal((b, s, 8)).astype(np.float16),
    "scaleh": rng.standard_normal(8).astype(np.float16),
    "aq": rng.standard_normal((b, 4, s, 8)).astype(np.float32),
    "ak": rng.standard_normal((b, 2, 5, 8)).astype(np.float32),
    "av": rng.standard_normal((b, 2, 5, 8)).astype(np.float32),
    "amask": rng.random((b, 1, s, 5)) < 0.7,
    "aq2": rng.standard_normal((b, 2, s, 8)).astype(np.float32),
    "ak2": rng.standard_normal((b, 2, 5, 8)).astype(np.float32),
    "av2": rng.standard_normal((b, 2, 5, 8)).astype(np.float32),
    "afmask": np.where(rng.random((1, 1, s, 5)) < 0.7, 0.0, -1e4).astype(np.float32),
}
inputs["amask"][0, 0, 1, :] = False  # a row hidden everywhere: onnxruntime gives zeros
inputs["amask2"] = rng.random((b, 1, s, 5)) < 0.8
inputs["amask2"][:, :, :, 0] = True  # every query keeps its first key, as causal ones do
for name, shape in (("aq3", (b, s, 32)), ("ak3", (b, s, 16)), ("av3", (b, s, 16)), ("apk", (b, 2, 4, 8)), ("apv", (b, 2, 4, 8))):
    inputs[name] = rng.standard_normal(shape).astype(np.float32)
want = ReferenceEvaluator(model).run(None, inputs)
try:
    import onnxruntime as ort

    got = ort.InferenceSession("rope_rms.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
    for (name, _, _), g, w in zip(outs, got, want):
        err = float(np.abs(g.astype(np.float32) - w.astype(np.float32)).max())
        print(f"{name}: onnxruntime against the reference {err:.1e}")
    want = got
except Exception as e:  # onnxruntime 1.30 refuses some RotaryEmbedding shapes
    print("onnxruntime:", str(e)[:200], "- the reference's outputs are kept")
for name, v in inputs.items():
    np.save(f"rope_rms.{name}.npy", v)
for (name, _, _), v in zip(outs, want):
    np.save(f"rope_rms.out.{name}.npy", v)
