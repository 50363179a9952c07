"""Makes contrib.onnx: onnxruntime's contrib ops that its transformer optimizer writes into the
models it fuses (domain com.microsoft: SkipLayerNormalization with and without beta and bias,
its sum output; SkipSimplifiedLayerNormalization with a bias, its sum output; FastGelu with and
without a bias; BiasGelu; Gelu; QuickGelu with its default and another alpha; and the default
domain's SimplifiedLayerNormalization), on f32 rows of a symbolic count, and SkipLayerNormalization
of f16, with onnxruntime's outputs as .npy files beside it (contrib.INPUT.npy,
contrib.out.OUTPUT.npy).
usage: python3 make_contrib.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(11)
H = 24
f32 = lambda *s: (rng.standard_normal(s) * 2).astype(np.float32)
inits = [numpy_helper.from_array(f32(H), n) for n in ("gamma", "beta", "bias")]
inits += [numpy_helper.from_array(f32(H).astype(np.float16), n) for n in ("gamma16", "beta16")]
ms = "com.microsoft"
nodes = [
    helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["sln", "", "", "sln_sum"], domain=ms, epsilon=1e-5, name="sln"),
    helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma"], ["sln_plain"], domain=ms, name="sln_plain"),
    helper.make_node("SkipSimplifiedLayerNormalization", ["x", "skip", "gamma", "bias"], ["ssln", "", "", "ssln_sum"], domain=ms, epsilon=1e-6, name="ssln"),
    helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["rms"], epsilon=1e-6, axis=-1, name="rms"),
    helper.make_node("FastGelu", ["x", "bias"], ["fast_gelu_bias"], domain=ms, name="fast_gelu_bias"),
    helper.make_node("FastGelu", ["x"], ["fast_gelu"], domain=ms, name="fast_gelu"),
    helper.make_node("BiasGelu", ["x", "bias"], ["bias_gelu"], domain=ms, name="bias_gelu"),
    helper.make_node("Gelu", ["x"], ["gelu"], domain=ms, name="gelu"),
    helper.make_node("QuickGelu", ["x"], ["quick_gelu"], domain=ms, name="quick_gelu"),
    helper.make_node("QuickGelu", ["x"], ["quick_gelu_1"], domain=ms, alpha=1.0, name="quick_gelu_1"),
    helper.make_node("SkipLayerNormalization", ["h", "hskip", "gamma16", "beta16"], ["sln_half"], domain=ms, name="sln_half"),
]
outs = ["sln", "sln_sum", "sln_plain", "ssln", "ssln_sum", "rms", "fast_gelu_bias", "fast_gelu", "bias_gelu", "gelu",
        "quick_gelu", "quick_gelu_1"]
graph = helper.make_graph(
    nodes, "contrib",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", H]),
     helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["n", H]),
     helper.make_tensor_value_info("h", TensorProto.FLOAT16, [3, H]),
     helper.make_tensor_value_info("hskip", TensorProto.FLOAT16, [3, H])],
    [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["n", H]) for o in outs]
    + [helper.make_tensor_value_info("sln_half", TensorProto.FLOAT16, [3, H])],
    inits,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ms, 1)], ir_version=8)
onnx.save(model, "contrib.onnx")
inputs = {"x": f32(5, H), "skip": f32(5, H), "h": f32(3, H).astype(np.float16), "hskip": f32(3, H).astype(np.float16)}
s = ort.InferenceSession("contrib.onnx", providers=["CPUExecutionProvider"])
for k, v in inputs.items():
    np.save(f"contrib.{k}.npy", v)
for o, v in zip(s.get_outputs(), s.run(None, inputs)):
    np.save(f"contrib.out.{o.name}.npy", v)
    print(o.name, v.shape, float(np.abs(v).max()))
