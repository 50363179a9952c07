"""Writes the hostile ONNX files of tests/bad_onnx/ (run: python3 tests/bad_onnx/make.py).

Each file is small and broken in one way; tests/onnx.rs checks that loading it gives a clear
error naming the file and exit code 2. Needs the `onnx` and `numpy` Python packages; the
files are committed, so the test suite does not.
"""
import os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

here = os.path.dirname(os.path.abspath(__file__))
src = os.path.join(here, "..", "data", "onnx", "llama_mlp_dynamo.onnx")
good = open(src, "rb").read()


def write(name, data):
    with open(os.path.join(here, name), "wb") as f:
        f.write(data)


def mlp(init):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [init])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


write("truncated.onnx", good[: len(good) // 2])
write("garbage.onnx", bytes(range(256)) * 7)
# raw_data shorter than dims say
t = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
t.raw_data = t.raw_data[:12]
write("initializer_length.onnx", mlp(t).SerializeToString())
# a header claiming a 1e12-element tensor with almost no data
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1000000, 1000000], raw_data=b"\0" * 8)
write("huge_dims.onnx", mlp(t).SerializeToString())
# external data that escapes the model's folder, and external data that is missing
for name, loc in [("external_escape.onnx", "../../secret.bin"), ("external_absolute.onnx", "/etc/passwd"), ("external_missing.onnx", "missing.bin")]:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2])
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=loc)
    write(name, mlp(t).SerializeToString())
# an old opset
m = mlp(numpy_helper.from_array(np.ones((4, 2), np.float32), "w"))
m.opset_import[0].version = 10
write("old_opset.onnx", m.SerializeToString())
# a MatMul whose shapes disagree
m = mlp(numpy_helper.from_array(np.ones((3, 2), np.float32), "w"))
write("shape_mismatch.onnx", m.SerializeToString())
# an op glufuse does not model whose output has no declared type
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
g = helper.make_graph([helper.make_node("Det", ["x"], ["s"], name="det"), helper.make_node("Relu", ["s"], ["y"], name="r")], "g", [x], [y])
write("untyped_opaque.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# a declared type that contradicts what the inputs give
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
write("declared_mismatch.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
# a Reshape whose target shape is computed from data at run time
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
s = helper.make_tensor_value_info("s", TensorProto.INT64, [2])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
g = helper.make_graph([helper.make_node("Reshape", ["x", "s"], ["y"], name="reshape_by_data")], "g", [x, s], [y])
write("data_dependent_shape.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
# a NonZero of data given at run time (the count of its indices, a dim of its output, would
# depend on the values; a NonZero of values known at load time folds)
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
y = helper.make_tensor_value_info("y", TensorProto.INT64, None)
g = helper.make_graph([helper.make_node("NonZero", ["x"], ["y"], name="nonzero_of_data")], "g", [x], [y])
write("nonzero_of_data.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
# opset 12's LogSoftmax along a middle axis (the dims from it on flattened into one): refused
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])
g = helper.make_graph([helper.make_node("LogSoftmax", ["x"], ["y"], axis=1, name="log_softmax_2d")], "g", [x], [y])
write("legacy_log_softmax_axis.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)]).SerializeToString())
# a Gather index constant outside its table
t = numpy_helper.from_array(np.ones((3, 2), np.float32), "table")
i = numpy_helper.from_array(np.array([0, 3], np.int64), "ids")
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])
g = helper.make_graph([helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup")], "g", [], [y], [t, i])
write("gather_out_of_range.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# Two good files: weights in an external file, and weights in the typed float_data field.
extra = os.path.join(here, "..", "data", "onnx_extra")
os.makedirs(extra, exist_ok=True)
w = np.arange(8, dtype=np.float32).reshape(4, 2) / 8
with open(os.path.join(extra, "external_ok.bin"), "wb") as f:
    f.write(b"\0" * 16 + w.tobytes())
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2])
t.data_location = TensorProto.EXTERNAL
t.external_data.add(key="location", value="external_ok.bin")
t.external_data.add(key="offset", value="16")
t.external_data.add(key="length", value="32")
with open(os.path.join(extra, "external_ok.onnx"), "wb") as f:
    f.write(mlp(t).SerializeToString())
t = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], w.flatten().tolist())
with open(os.path.join(extra, "typed_fields.onnx"), "wb") as f:
    f.write(mlp(t).SerializeToString())
# A third: the weights as a Constant node's value in the external file (optimum writes small
# Constants of a large model so, the rotary frequencies).
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2])
t.data_location = TensorProto.EXTERNAL
t.external_data.add(key="location", value="external_ok.bin")
t.external_data.add(key="offset", value="16")
t.external_data.add(key="length", value="32")
m = mlp(TensorProto(name="unused", data_type=TensorProto.FLOAT, dims=[1], float_data=[0.0]))
del m.graph.initializer[:]
m.graph.node.insert(0, helper.make_node("Constant", [], ["w"], value=t, name="w_const"))
with open(os.path.join(extra, "external_constant.onnx"), "wb") as f:
    f.write(m.SerializeToString())

# Phi-3's merged gate_up split as the TorchScript exporter writes torch.chunk: the half width
# is computed at run time from Shape -> Gather -> Div, then two Slices.
rng = np.random.default_rng(3)
wgu = numpy_helper.from_array((rng.standard_normal((64, 352)) * 0.1).astype(np.float32), "gate_up.weight")
wd = numpy_helper.from_array((rng.standard_normal((176, 64)) * 0.1).astype(np.float32), "down.weight")
c = lambda name, v: helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.array(v, dtype=np.int64), name))
nodes = [
    helper.make_node("MatMul", ["x", "gate_up.weight"], ["gu"], name="/gate_up_proj/MatMul"),
    helper.make_node("Shape", ["gu"], ["shape"], name="/Shape"),
    c("two_idx", 2),
    helper.make_node("Gather", ["shape", "two_idx"], ["width"], name="/Gather", axis=0),
    c("two", 2),
    helper.make_node("Div", ["width", "two"], ["half"], name="/Div"),
    c("axes0", [0]),
    helper.make_node("Unsqueeze", ["half", "axes0"], ["half1"], name="/Unsqueeze"),
    c("zero", [0]),
    c("last", [-1]),
    c("big", [9223372036854775807]),
    helper.make_node("Slice", ["gu", "zero", "half1", "last"], ["gate"], name="/Slice"),
    helper.make_node("Slice", ["gu", "half1", "big", "last"], ["up"], name="/Slice_1"),
    helper.make_node("Sigmoid", ["gate"], ["sig"], name="/act/Sigmoid"),
    helper.make_node("Mul", ["gate", "sig"], ["act"], name="/act/Mul"),
    helper.make_node("Mul", ["up", "act"], ["prod"], name="/Mul"),
    helper.make_node("MatMul", ["prod", "down.weight"], ["out"], name="/down_proj/MatMul"),
]
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 64])
out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 64])
g = helper.make_graph(nodes, "phi3_mlp_ts_chunk", [x], [out], [wgu, wd])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
onnx.checker.check_model(m)
with open(os.path.join(extra, "phi3_chunk_shape_arith.onnx"), "wb") as f:
    f.write(m.SerializeToString())

# Odd dim_param strings: an expression over the inputs' symbols, text that is no expression
# (a plain symbol, sanitised), and an unknown dim; the file loads.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch size", "past + new", "2*", None, "(a"])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch size", "new + past", "2*", None, "(a"])
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
with open(os.path.join(extra, "odd_dim_params.onnx"), "wb") as f:
    f.write(m.SerializeToString())

# 4-bit weights, each malformed in one way (issue #16): a MatMulNBits MLP (K 64, N 32) and a
# DequantizeLinear one, from valid packings.
def nbits(b_dims=None, block=32, bits=4, scale_dims=None, zp_dims=None, g_idx=None):
    K, N = 64, 32
    blocks = (K + block - 1) // block
    bd = b_dims or [N, blocks, block // 2]
    b = numpy_helper.from_array(np.full(bd, 0x88, np.uint8), "w_q4")
    s = numpy_helper.from_array(np.full(scale_dims or [N, blocks], 0.01, np.float32), "w_scales")
    ins, inits = ["x", "w_q4", "w_scales"], [b, s]
    if zp_dims is not None:
        inits.append(numpy_helper.from_array(np.full(zp_dims, 0x88, np.uint8), "w_zp"))
        ins.append("w_zp")
    if g_idx is not None:
        if zp_dims is None:
            ins.append("")
        inits.append(numpy_helper.from_array(np.array(g_idx, np.int32), "w_gidx"))
        ins.append("w_gidx")
    node = helper.make_node("MatMulNBits", ins, ["y"], name="proj", domain="com.microsoft", K=K, N=N, bits=bits, block_size=block)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])
    g = helper.make_graph([node], "g", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]).SerializeToString()


def qdq(raw=None, block=32, scale_dims=None, zp_type=None, int4_type=TensorProto.INT4):
    K, N = 64, 32
    data = raw if raw is not None else b"\x88" * (K * N // 2)
    w = TensorProto(name="w_q4", data_type=int4_type, dims=[K, N], raw_data=data)
    s = numpy_helper.from_array(np.full(scale_dims or [(K + block - 1) // block, N], 0.01, np.float32), "w_scale")
    ins, inits = ["w_q4", "w_scale"], [w, s]
    if zp_type is not None:
        zd = scale_dims or [(K + block - 1) // block, N]
        n = int(np.prod(zd))
        inits.append(TensorProto(name="w_zp", data_type=zp_type, dims=zd, raw_data=b"\x00" * ((n + 1) // 2)))
        ins.append("w_zp")
    nodes = [
        helper.make_node("DequantizeLinear", ins, ["w"], name="dq", axis=0, block_size=block),
        helper.make_node("MatMul", ["x", "w"], ["y"], name="proj"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, N])
    g = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]).SerializeToString()


write("q4_nbits_byte_count.onnx", nbits(b_dims=[32, 2, 15]))
write("q4_nbits_block_24.onnx", nbits(block=24, b_dims=[32, 3, 12], scale_dims=[32, 3]))
write("q4_nbits_bits_8.onnx", nbits(bits=8))
write("q4_nbits_scales_shape.onnx", nbits(scale_dims=[32, 3]))
write("q4_nbits_zero_points_shape.onnx", nbits(zp_dims=[32, 2]))
write("q4_nbits_g_idx.onnx", nbits(g_idx=[(i * 7) % 2 for i in range(64)]))
write("q4_qdq_byte_count.onnx", qdq(raw=b"\x88" * 1000))
write("q4_qdq_block_8.onnx", qdq(block=8))
write("q4_qdq_scale_shape.onnx", qdq(scale_dims=[3, 32]))
write("q4_qdq_zero_point_type.onnx", qdq(zp_type=TensorProto.UINT4))

# Nodes with fewer inputs than their op takes (each panicked once), and Split outputs that
# disagree with the node's.
c = numpy_helper.from_array(np.ones(2, np.float32), "c")
ids = numpy_helper.from_array(np.array([0, 1], np.int64), "ids")
x2 = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
y2 = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
for name, node, ins, inits in [
    ("relu_no_input.onnx", helper.make_node("Relu", [], ["y"], name="act"), [x2], []),
    ("add_one_input.onnx", helper.make_node("Add", ["c"], ["y"], name="bias_add"), [], [c]),
    ("gather_one_input.onnx", helper.make_node("Gather", ["ids"], ["y"], name="lookup"), [], [ids]),
    ("split_negative_num_outputs.onnx", helper.make_node("Split", ["x"], ["y"], name="halves", num_outputs=-1), [x2], []),
    ("split_num_outputs_huge.onnx", helper.make_node("Split", ["x"], ["y"], name="halves", num_outputs=100000000), [x2], []),
    ("split_sizes_count.onnx", helper.make_node("Split", ["x"], ["y"], name="halves", split=[1, 1]), [x2], []),
]:
    g = helper.make_graph([node], "g", ins, [y2], inits)
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
# A double initializer past f32's range (it became inf).
d = helper.make_tensor("scale", TensorProto.DOUBLE, [2], [1e39, 1.0])
g = helper.make_graph([helper.make_node("Cast", ["scale"], ["y"], name="to_float", to=TensorProto.FLOAT)], "g", [], [y2], [d])
write("double_out_of_range.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# ArgMin of booleans (numbers only)
i = helper.make_tensor_value_info("i", TensorProto.BOOL, [2, 3])
o = helper.make_tensor_value_info("o", TensorProto.INT64, [2])
g = helper.make_graph([helper.make_node("ArgMin", ["i"], ["o"], name="argmin", axis=1, keepdims=0)], "g", [i], [o])
write("argmin_bool.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# Pad in reflect mode with a pad as large as the axis (each must be less), and of a
# symbolic axis (its size unknown at load time); a mode ONNX does not have.
def pad(name, dims, pads, mode):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    p = helper.make_tensor("pads", TensorProto.INT64, [len(pads)], pads)
    g = helper.make_graph([helper.make_node("Pad", ["x", "pads"], ["y"], name="pad", mode=mode)], "g", [x], [y], [p])
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
pad("pad_reflect.onnx", [2, 3], [0, 3, 0, 1], "reflect")
pad("pad_reflect_symbolic.onnx", ["n", 3], [1, 0, 0, 0], "reflect")
pad("pad_mode.onnx", [2, 3], [0, 1, 0, 1], "mirror")

# Scatters: a reduction other than none, updates of the wrong shape, ScatterND indices that
# are not int64.
def scatter(name, op, idx_type, upd_dims, **attrs):
    d = helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 2, 4, 8])
    i = helper.make_tensor_value_info("idx", idx_type, [1, 2, 1, 3])
    u = helper.make_tensor_value_info("upd", TensorProto.FLOAT, upd_dims)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 8])
    g = helper.make_graph([helper.make_node(op, ["data", "idx", "upd"], ["y"], name="cache_write", **attrs)], "g", [d, i, u], [y])
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
scatter("scatter_nd_reduction_add.onnx", "ScatterND", TensorProto.INT64, [1, 2, 1, 8], reduction="add")
scatter("scatter_nd_updates_shape.onnx", "ScatterND", TensorProto.INT64, [1, 2, 8])
scatter("scatter_nd_int32_indices.onnx", "ScatterND", TensorProto.INT32, [1, 2, 1, 8])
scatter("scatter_elements_reduction_max.onnx", "ScatterElements", TensorProto.INT64, [1, 2, 1, 3], axis=2, reduction="max")

# Opset 23's RotaryEmbedding with an odd rotary_embedding_dim and with a 2-D input, and
# RMSNormalization over an axis past the rank.
def opset23(name, node, dims):
    ins = [helper.make_tensor_value_info(n, TensorProto.FLOAT, d) for n, d in zip(node.input, dims) if n]
    y = helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
    g = helper.make_graph([node], "g", ins, [y])
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 23)]).SerializeToString())
opset23("rope_odd_dim.onnx", helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["y"], name="rope", rotary_embedding_dim=3),
        [[1, 2, 4, 8], [1, 4, 1], [1, 4, 1]])
opset23("rope_rank2.onnx", helper.make_node("RotaryEmbedding", ["x", "cos", "sin"], ["y"], name="rope"),
        [[4, 8], [1, 4, 4], [1, 4, 4]])
opset23("rms_axis.onnx", helper.make_node("RMSNormalization", ["x", "scale"], ["y"], name="norm", axis=3),
        [[1, 4, 8], [8]])
# Attention forms not mapped: the scores as an output, past keys without past values, and a
# 3-D input without its head count.
opset23("attention_scores_output.onnx",
        helper.make_node("Attention", ["q", "k", "v"], ["y", "", "", "qk"], name="sdpa"),
        [[1, 2, 4, 8], [1, 2, 4, 8], [1, 2, 4, 8]])
opset23("attention_past_key_only.onnx", helper.make_node("Attention", ["q", "k", "v", "", "pk"], ["y"], name="sdpa"),
        [[1, 2, 4, 8], [1, 2, 4, 8], [1, 2, 4, 8], None, [1, 2, 3, 8]])
opset23("attention_3d_no_heads.onnx", helper.make_node("Attention", ["q", "k", "v"], ["y"], name="sdpa"),
        [[1, 4, 16], [1, 4, 16], [1, 4, 16]])

# Einsum forms refused: a diagonal (a label repeated in one operand), a summed label of two
# sizes, fewer operands than the equation names, and an output label no operand has.
def einsum(name, eq, dims):
    ins = [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, d) for i, d in enumerate(dims)]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("Einsum", [f"x{i}" for i in range(len(dims))], ["y"], name="contract", equation=eq)
    g = helper.make_graph([node], "g", ins, [y])
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
einsum("einsum_diagonal.onnx", "ii->i", [[3, 3]])
einsum("einsum_sizes.onnx", "ij,jk->ik", [[2, 3], [4, 5]])
einsum("einsum_operands.onnx", "ij,jk->ik", [[2, 3]])
einsum("einsum_output_label.onnx", "ij->k", [[2, 3]])

# GatherElements with indices of another rank than the data.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])
i = helper.make_tensor_value_info("i", TensorProto.INT64, [3])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
g = helper.make_graph([helper.make_node("GatherElements", ["x", "i"], ["y"], name="pick", axis=1)], "g", [x, i], [y])
write("gather_elements_rank.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# MatMul of a scalar (NumPy's rule promotes 1-D operands only), and LogSoftmax of integers.
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])
s = helper.make_tensor_value_info("s", TensorProto.FLOAT, [])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
g = helper.make_graph([helper.make_node("MatMul", ["x", "s"], ["y"], name="dot")], "g", [x, s], [y])
write("matmul_scalar.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
x = helper.make_tensor_value_info("x", TensorProto.INT64, [2, 3])
y = helper.make_tensor_value_info("y", TensorProto.INT64, None)
g = helper.make_graph([helper.make_node("LogSoftmax", ["x"], ["y"], name="logp")], "g", [x], [y])
write("log_softmax_int.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# TopK: K past the axis, K computed from data.
def topk(name, dims, k, k_input=False, **attrs):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, None)
    i = helper.make_tensor_value_info("i", TensorProto.INT64, None)
    ins, inits = [x], []
    if k_input:
        ins.append(helper.make_tensor_value_info("k", TensorProto.INT64, [1]))
    else:
        inits.append(helper.make_tensor("k", TensorProto.INT64, [1], [k]))
    g = helper.make_graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], name="pick", **attrs)], "g", ins, [v, i], inits)
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
topk("topk_k_past_axis.onnx", [2, 6], 7)
topk("topk_k_from_data.onnx", [2, 6], 0, k_input=True)

# OneHot: the depth computed from data, values that are not [off, on].
def one_hot(name, depth_input, values):
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    ins, inits = [i], [helper.make_tensor("values", TensorProto.FLOAT, [len(values)], values)]
    if depth_input:
        ins.append(helper.make_tensor_value_info("depth", TensorProto.INT64, []))
    else:
        inits.append(helper.make_tensor("depth", TensorProto.INT64, [], [4]))
    g = helper.make_graph([helper.make_node("OneHot", ["i", "depth", "values"], ["y"], name="hot")], "g", ins, [y], inits)
    write(name, helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
one_hot("one_hot_depth_from_data.onnx", True, [0.0, 1.0])
one_hot("one_hot_values.onnx", False, [0.0, 1.0, 2.0])

# Models whose external data file tests/onnx.rs makes in a temporary folder: a FIFO, a
# directory, a symbolic link out of the folder (data.bin, 32 bytes wanted), and a sparse
# 16 GiB file the per-tensor budget refuses before reading (big.bin).
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4, 2])
t.data_location = TensorProto.EXTERNAL
t.external_data.add(key="location", value="data.bin")
with open(os.path.join(extra, "external_data_bin.onnx"), "wb") as f:
    f.write(mlp(t).SerializeToString())
t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[65536, 65536])
t.data_location = TensorProto.EXTERNAL
t.external_data.add(key="location", value="big.bin")
x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 65536])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 65536])
g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [t])
with open(os.path.join(extra, "external_16g.onnx"), "wb") as f:
    f.write(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())

# An If on a condition known only at run time, its branches constants of two shapes (read by
# an Add, not as GroupQueryAttention's rotary tables): no one type for its output.
c = helper.make_tensor_value_info("c", TensorProto.BOOL, [])
y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
def const_branch(name, vals):
    node = helper.make_node("Constant", [], [name], value=helper.make_tensor(name + "_v", TensorProto.FLOAT, [len(vals)], vals))
    return helper.make_graph([node], name, [], [helper.make_tensor_value_info(name, TensorProto.FLOAT, [len(vals)])])
g = helper.make_graph(
    [helper.make_node("If", ["c"], ["t"], then_branch=const_branch("a", [1.0, 2.0]),
                      else_branch=const_branch("b", [1.0, 2.0, 3.0]), name="pick"),
     helper.make_node("Add", ["t", "t"], ["y"], name="twice")], "g", [c], [y])
write("if_constants_of_two_shapes.onnx", helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())
