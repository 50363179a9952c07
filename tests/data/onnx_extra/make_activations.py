"""Makes activations.onnx: ONNX's parametric activations (LeakyRelu, PRelu with a broadcast
slope, Elu, Selu, Celu, ThresholdedRelu, HardSigmoid, HardSwish, Softsign, Mish; default and
given attributes) and the reductions of a sum or a maximum (ReduceSumSquare, ReduceL1,
ReduceL2, ReduceLogSum, ReduceLogSumExp: axes as an input, kept and dropped dims, a
symbolic dim, no axes (all) and noop_with_empty_axes, int64 sums, large values for the log
of a sum of exponentials), with onnxruntime's outputs as .npy files beside it
(activations.INPUT.npy, activations.out.OUTPUT.npy). usage: python3 make_activations.py"""
import numpy as np, onnx, onnxruntime as ort
from onnx import TensorProto, helper

F, I = TensorProto.FLOAT, TensorProto.INT64
acts = [
    ("leaky", "LeakyRelu", ["x"], {}),
    ("leaky_alpha", "LeakyRelu", ["x"], dict(alpha=0.3)),
    ("prelu", "PRelu", ["x", "slope"], {}),
    ("elu", "Elu", ["x"], dict(alpha=0.7)),
    ("selu", "Selu", ["x"], {}),
    ("celu", "Celu", ["x"], dict(alpha=2.0)),
    ("thresholded", "ThresholdedRelu", ["x"], dict(alpha=0.5)),
    ("hard_sigmoid", "HardSigmoid", ["x"], dict(alpha=0.25, beta=0.4)),
    ("hard_swish", "HardSwish", ["x"], {}),
    ("softsign", "Softsign", ["x"], {}),
    ("mish", "Mish", ["x"], {}),
]
ints = lambda name, v: helper.make_node("Constant", [], [name], value=helper.make_tensor(name, I, [len(v)], v))
reds = [
    # (output, op, input, axes or None, keepdims, noop, output shape)
    ("sum_square", "ReduceSumSquare", "r", [1], 0, 0, ["n"]),
    ("l1", "ReduceL1", "r", [0], 1, 0, [1, 4]),
    ("l2", "ReduceL2", "r", [-1], 1, 0, ["n", 1]),
    ("l2_all", "ReduceL2", "r", None, 0, 0, []),
    ("log_sum", "ReduceLogSum", "rp", [1], 0, 0, ["n"]),
    ("log_sum_exp", "ReduceLogSumExp", "big", [1], 0, 0, ["n"]),
    ("log_sum_exp_keep", "ReduceLogSumExp", "big", [0, 1], 1, 0, [1, 1]),
    ("l2_noop", "ReduceL2", "r", [], 1, 1, ["n", 4]),
    ("sum_square_int", "ReduceSumSquare", "ri", [1], 0, 0, [2]),
    ("l1_int", "ReduceL1", "ri", [0], 0, 0, [3]),
]
nodes, outs = [], []
for name, op, ins, kw in acts:
    nodes.append(helper.make_node(op, ins, [name], **kw))
    outs.append(helper.make_tensor_value_info(name, F, ["m"]))
for name, op, x, axes, keep, noop, shape in reds:
    ins = [x]
    if axes is not None:
        nodes.append(ints(f"{name}_axes", axes))
        ins.append(f"{name}_axes")
    nodes.append(helper.make_node(op, ins, [name], keepdims=keep, noop_with_empty_axes=noop))
    outs.append(helper.make_tensor_value_info(name, I if x == "ri" else F, shape))
graph = helper.make_graph(
    nodes,
    "activations",
    [
        helper.make_tensor_value_info("x", F, ["m"]),
        helper.make_tensor_value_info("slope", F, [1]),
        helper.make_tensor_value_info("r", F, ["n", 4]),
        helper.make_tensor_value_info("rp", F, ["n", 4]),
        helper.make_tensor_value_info("big", F, ["n", 4]),
        helper.make_tensor_value_info("ri", I, [2, 3]),
    ],
    outs,
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "activations.onnx")
rng = np.random.default_rng(23)
x = np.concatenate([[-30.0, -4.0, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0, 3.0, 30.0], rng.uniform(-6, 6, 13)])
inputs = {
    "x": x.astype(np.float32),
    "slope": np.array([0.15], np.float32),
    "r": rng.standard_normal((3, 4)).astype(np.float32),
    "rp": rng.uniform(0.1, 2.0, (3, 4)).astype(np.float32),
    "big": (rng.standard_normal((3, 4)) * 40 + 60).astype(np.float32),
    "ri": np.array([[3, -4, 0], [-7000, 2, -1]], np.int64),
}
res = ort.InferenceSession("activations.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for name, v in inputs.items():
    np.save(f"activations.{name}.npy", v)
for o, v in zip([a[0] for a in acts] + [r[0] for r in reds], res):
    np.save(f"activations.out.{o}.npy", v)
    print(o, v.shape, v.dtype)
