"""Makes einsum.onnx: ONNX's Einsum as exporters and users write it (a matrix product over a
symbolic row count, batched products, an attention's scores and its product with the values,
an outer product, an ellipsis broadcast between operands (a 1 against a 2), a transpose, a
row sum, a full contraction to a scalar, the implicit output, three operands, two summed
labels at once, an elementwise product and f16, and 24 random equations), with onnxruntime's outputs as .npy files
beside it (einsum.INPUT.npy, einsum.out.OUTPUT.npy). usage: python3 make_einsum.py"""
import numpy as np, onnx
from onnx import TensorProto, helper

F, H = TensorProto.FLOAT, TensorProto.FLOAT16
cases = [
    # (output, equation, [(input, dtype, shape)], output dtype, output shape)
    ("matmul", "ij,jk->ik", [("a", F, ["m", 4]), ("b", F, [4, 5])], F, ["m", 5]),
    ("batched", "bij,bjk->bik", [("ba", F, ["n", 3, 4]), ("bb", F, ["n", 4, 2])], F, ["n", 3, 2]),
    ("scores", "bhqd,bhkd->bhqk", [("q", F, [1, 2, "m", 8]), ("k", F, [1, 2, 5, 8])], F, [1, 2, "m", 5]),
    ("values", "bhqk,bhkd->bhqd", [("p", F, [1, 2, "m", 5]), ("v", F, [1, 2, 5, 8])], F, [1, 2, "m", 8]),
    ("outer", "i,j->ij", [("t", F, ["m"]), ("f", F, [4])], F, ["m", 4]),
    ("ellipsis", "...ij,...jk->...ik", [("ea", F, [2, 3, 4, 5]), ("eb", F, [1, 3, 5, 6])], F, [2, 3, 4, 6]),
    ("transpose", "ij->ji", [("x", F, ["m", 4])], F, [4, "m"]),
    ("rowsum", "ij->i", [("x2", F, ["m", 4])], F, ["m"]),
    ("dot", "ij,ij->", [("d1", F, [3, 4]), ("d2", F, [3, 4])], F, []),
    ("implicit", "kj,ji", [("ia", F, [3, 4]), ("ib", F, [4, 2])], F, [2, 3]),
    ("bilinear", "bn,anm,bm->ba", [("u", F, ["m", 3]), ("w", F, [2, 3, 4]), ("z", F, ["m", 4])], F, ["m", 2]),
    ("two_summed", "ijk,ikl->jl", [("s1", F, [2, 3, 4]), ("s2", F, [2, 4, 5])], F, [3, 5]),
    ("elementwise", "i,i->i", [("e1", F, ["m"]), ("e2", F, ["m"])], F, ["m"]),
    ("half", "ij,kj->ik", [("ha", H, ["m", 8]), ("hb", H, [3, 8])], H, ["m", 3]),
]
# Twenty-four random equations besides (seeded): two or three operands of up to four labels
# of sizes 1 to 4, some shared, an explicit output in a random order or the implicit one.
gen = np.random.default_rng(21)
for r in range(24):
    letters = list("abcdefgh")
    gen.shuffle(letters)
    size = {l: int(gen.integers(1, 5)) for l in letters}
    operands, seen = [], []
    for k in range(int(gen.integers(2, 4))):
        pool = letters[: 2 + 2 * k]
        labels = [str(l) for l in gen.choice(pool, size=int(gen.integers(1, min(4, len(pool)) + 1)), replace=False)]
        operands.append(labels)
        seen += labels
    present = sorted(set(seen))
    if gen.random() < 0.25:
        out, arrow = sorted(l for l in present if seen.count(l) == 1), ""
    else:
        out = [str(l) for l in gen.choice(present, size=int(gen.integers(0, len(present) + 1)), replace=False)]
        arrow = "->" + "".join(out)
    eq = ",".join("".join(o) for o in operands) + arrow
    ops = [(f"r{r}_{k}", F, [size[l] for l in o]) for k, o in enumerate(operands)]
    cases.append((f"random{r}", eq, ops, F, [size[l] for l in out]))
nodes, ins, outs = [], [], []
for name, eq, operands, odt, oshape in cases:
    nodes.append(helper.make_node("Einsum", [o[0] for o in operands], [name], equation=eq))
    ins += [helper.make_tensor_value_info(n, t, s) for n, t, s in operands]
    outs.append(helper.make_tensor_value_info(name, odt, oshape))
graph = helper.make_graph(nodes, "einsum", ins, outs)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
onnx.checker.check_model(model)
onnx.save(model, "einsum.onnx")
rng = np.random.default_rng(11)
m, n = 3, 2
inputs = {}
for _, _, operands, _, _ in cases:
    for name, t, shape in operands:
        dims = [m if d == "m" else n if d == "n" else d for d in shape]
        inputs[name] = rng.standard_normal(dims).astype(np.float16 if t == H else np.float32)
import onnxruntime as ort

got = ort.InferenceSession("einsum.onnx", providers=["CPUExecutionProvider"]).run(None, inputs)
for (name, eq, operands, _, _), g in zip(cases, got):
    want = np.einsum(eq, *[inputs[o[0]].astype(np.float64) for o in operands])
    print(f"{name} ({eq}): onnxruntime against numpy {float(np.abs(g - want).max()):.1e}, shape {g.shape}")
for name, v in inputs.items():
    np.save(f"einsum.{name}.npy", v)
for (name, *_), v in zip(cases, got):
    np.save(f"einsum.out.{name}.npy", v)

# An ellipsis of different ranks in two operands (broadcast right-aligned, as the ONNX
# specification and NumPy have it): onnxruntime refuses the graph, so its own file, with
# NumPy's outputs (einsum_ranks.*).
ranks = [
    ("ranks", "...ij,...jk->...ik", [("ra", F, [2, 3, 4, 5]), ("rb", F, [3, 5, 6])], F, [2, 3, 4, 6]),
    ("ranks_implicit", "...i,i", [("rc", F, ["m", 2, 4]), ("rd", F, [4])], F, ["m", 2]),
]
g = helper.make_graph(
    [helper.make_node("Einsum", [o[0] for o in ops], [name], equation=eq) for name, eq, ops, _, _ in ranks],
    "einsum_ranks",
    [helper.make_tensor_value_info(n, t, s) for _, _, ops, _, _ in ranks for n, t, s in ops],
    [helper.make_tensor_value_info(name, t, s) for name, _, _, t, s in ranks],
)
onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), "einsum_ranks.onnx")
for name, eq, operands, _, _ in ranks:
    vals = []
    for n, t, shape in operands:
        v = rng.standard_normal([m if d == "m" else d for d in shape]).astype(np.float32)
        np.save(f"einsum_ranks.{n}.npy", v)
        vals.append(v)
    out = np.einsum(eq, *[v.astype(np.float64) for v in vals]).astype(np.float32)
    np.save(f"einsum_ranks.out.{name}.npy", out)
    print(f"{name} ({eq}): numpy, shape {out.shape}")
