"""Makes the opset 11 files: legacy_softmax.onnx (Softmax, LogSoftmax and Hardmax as opsets 11
and 12 define them: the input viewed as 2-D at `axis`, default 1; Softmax along axis 1 of a
rank-3 tensor, with no axis, and along the last axis; LogSoftmax and Hardmax along the last)
and legacy_llama.onnx (a tiny random Llama exported by PyTorch's TorchScript exporter at opset
11, as older exports on the Hub are: Squeeze, Unsqueeze, Split and ReduceSum with attribute
axes), with onnxruntime's outputs as .npy files beside them (STEM.INPUT.npy, STEM.out.OUTPUT.npy).
usage: python3 make_legacy.py   (needs torch and transformers for the Llama)"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

rng = np.random.default_rng(5)
nodes = [
    helper.make_node("Softmax", ["x"], ["sm_axis1"], axis=1, name="sm_axis1"),
    helper.make_node("Softmax", ["x"], ["sm_default"], name="sm_default"),
    helper.make_node("Softmax", ["x"], ["sm_last"], axis=-1, name="sm_last"),
    helper.make_node("LogSoftmax", ["x"], ["lsm_last"], axis=2, name="lsm_last"),
    helper.make_node("Hardmax", ["x"], ["hm_last"], axis=-1, name="hm_last"),
]
outs = ["sm_axis1", "sm_default", "sm_last", "lsm_last", "hm_last"]
graph = helper.make_graph(nodes, "legacy_softmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 3, 4])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, ["b", 3, 4]) for o in outs])
onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], ir_version=7), "legacy_softmax.onnx")
x = (rng.standard_normal((2, 3, 4)) * 3).astype(np.float32)
s = ort.InferenceSession("legacy_softmax.onnx", providers=["CPUExecutionProvider"])
np.save("legacy_softmax.x.npy", x)
for o, v in zip(s.get_outputs(), s.run(None, {"x": x})):
    np.save(f"legacy_softmax.out.{o.name}.npy", v)

import torch
from transformers import AutoConfig, AutoModelForCausalLM
cfg = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, vocab_size=128, max_position_embeddings=64)
cfg._attn_implementation = "eager"
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(cfg).eval()


class Logits(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


ids = torch.randint(0, 128, (2, 6), generator=torch.Generator().manual_seed(1))
mask = torch.ones(2, 6, dtype=torch.long)
mask[1, :2] = 0
torch.onnx.export(Logits(model), (ids, mask), "legacy_llama.onnx", dynamo=False, opset_version=11,
                  input_names=["input_ids", "attention_mask"], output_names=["logits"],
                  dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}})
m = onnx.load("legacy_llama.onnx")
for n in m.graph.node:
    n.doc_string = ""
onnx.save(m, "legacy_llama.onnx")
feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
s = ort.InferenceSession("legacy_llama.onnx", providers=["CPUExecutionProvider"])
for k, v in feed.items():
    np.save(f"legacy_llama.{k}.npy", v)
np.save("legacy_llama.out.logits.npy", s.run(None, feed)[0])
print("ok")
