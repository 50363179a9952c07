"""Makes random_NN.onnx: seeded random graphs of the ops exporters emit around and inside
transformer blocks (projections by weights, gated FFNs with SiLU or GELU, elementwise ops with
broadcasting, softmax, reductions, layer norms, transposes, reshapes, concatenations, slices,
gathers, where, cumulative sums, expands), float32, with onnxruntime's outputs beside each as
.npy files (random_NN.INPUT.npy, random_NN.out.OUTPUT.npy). Shapes are tracked here, so every
graph is valid ONNX; values are kept in range (exp of a tanh, square roots of |x|, division
by 1 + |y|), so that the comparison measures the compiler, not overflow.
With --wide, a wider sweep (not the tested graphs): Clip, Pow, Gemm, Split, Tile, Pad, the
L1/L2/log-sum-exp reductions, Flatten, Sin/Cos/Softplus/HardSigmoid/Softsign, LeakyRelu,
Einsum, ArgMax, batched MatMul of two values, a round trip through float16, GatherElements,
and in 3 graphs of 10 a symbolic first dim of each input (which glufuse type-checks for every
size: a graph that holds for one size only, a reshape to constants say, is refused naming the
node, where onnxruntime runs it at the size it is given).
With --ints, integer graphs (random_int_NNN: int64 inputs, one in five near the 32-bit
limits; Add, Sub, Mul, Max, Min, Div and Mod by nonzero constants of either sign, Neg, Abs,
Sign, comparisons and And/Or/Xor/Not cast back to int64, Where, CumSum, the integer
reductions, ArgMax/ArgMin, Gather, Concat, Slice, Transpose, a round trip through floats
with Floor/Ceil/Round, Clip). The tested ones are seeds 0 to 39 less the five whose values
leave 32 bits on the way (the GPU's integers: an error there, not data).
With --attention, attention blocks (random_attn_NNN: 1 or 2 sequences of 1 to 8 tokens, 1 to 4
heads of 4 to 16, grouped-query KV heads, the score's scale as a product or a quotient, a
causal mask added (-1e9 or -inf) or selected by `Where`, an input padding mask, a soft cap);
the tested ones are seeds 0 to 15, 100 were an ad hoc sweep.
With --attention --rope, the same blocks with a rotary embedding of the queries and keys and
(in most) a bias of the keys' projection (random_rope_NNN); the tested ones are seeds 0 to 23,
100 were an ad hoc sweep.
With --select (alone or with --wide), also TopK (either order, any axis and K; its values and
its indices as floats go on) and OneHot (of a lane's ArgMax along the same axis, times the
lane), a quarter of the steps: an ad hoc sweep, not the tested graphs.
usage: python3 make_random_graphs.py [[--wide] [--select] | --ints | --attention [--rope]] [COUNT] [FIRST_SEED] [DIR]"""
import sys
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


class G:
    def __init__(self, rng):
        self.rng = rng
        self.nodes, self.inits, self.pool, self.n = [], [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}{self.n}"

    def const(self, arr, p="c"):
        nm = self.name(p)
        self.inits.append(numpy_helper.from_array(arr, nm))
        return nm

    def node(self, op, ins, shape, p="t", **attrs):
        out = self.name(p)
        self.nodes.append(helper.make_node(op, ins, [out], **attrs))
        if shape is not None:
            self.pool.append((out, tuple(shape)))
        return out

    def pick(self, pred=lambda s: True):
        cands = [t for t in self.pool if pred(t[1])]
        return cands[self.rng.integers(len(cands))] if cands else None


def into(s, xs):
    """Whether shape `s` broadcasts into `xs` (the result is `xs`)."""
    try:
        return np.broadcast_shapes(s, xs) == xs
    except ValueError:
        return False


def bshape(rng, shape):
    """A shape that broadcasts against `shape` (right-aligned, some dims 1, maybe fewer)."""
    k = rng.integers(0, len(shape) + 1)
    tail = list(shape[len(shape) - k:])
    return tuple(d if rng.random() < 0.6 else 1 for d in tail)


def step(g):
    rng = g.rng
    x, xs = g.pick()
    r = len(xs)
    op = rng.choice(["unary", "binary", "binary", "matmul", "matmul", "ffn", "softmax", "reduce",
                     "transpose", "reshape", "concat", "slice", "unsqueeze", "squeeze", "gather",
                     "where", "layernorm", "cumsum", "expand"])
    if WIDE and rng.random() < 0.4:
        op = rng.choice(["clip", "pow", "gemm", "split", "tile", "pad", "reduce2", "flatten", "trig",
                         "einsum", "argmax", "bmm", "castf16", "leaky", "gather_elements"])
    if SELECT and rng.random() < 0.25:
        op = rng.choice(["topk", "one_hot"])
    if r == 0:
        op = rng.choice(["unary", "binary", "unsqueeze", "expand"])
    if op in WIDE_OPS:
        return wide(g, op, x, xs)
    if op in SELECT_OPS:
        return select(g, op, x, xs)
    if op == "unary":
        u = rng.choice(["Relu", "Sigmoid", "Tanh", "Neg", "Abs", "ExpTanh", "SqrtAbs", "Erf"])
        if u == "ExpTanh":
            t = g.node("Tanh", [x], None)
            return g.node("Exp", [t], xs)
        if u == "SqrtAbs":
            t = g.node("Abs", [x], None)
            return g.node("Sqrt", [t], xs)
        return g.node(u, [x], xs)
    if op == "binary":
        b = rng.choice(["Add", "Sub", "Mul", "Div", "Max", "Min"])
        other = g.pick(lambda s: into(s, xs)) if rng.random() < 0.5 else None
        if other is None:
            y = g.const(rng.standard_normal(bshape(rng, xs)).astype(np.float32))
        else:
            y = other[0]
        if b == "Div":
            a = g.node("Abs", [y], None)
            one = g.const(np.array(1.0, dtype=np.float32))
            y = g.node("Add", [a, one], None)
        ins = [x, y] if rng.random() < 0.7 else [y, x]
        return g.node(b, ins, xs)
    if op in ("matmul", "ffn"):
        k = xs[-1]
        n = int(rng.integers(1, 20))
        w = lambda: g.const((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), "w")
        shape = xs[:-1] + (n,)
        if op == "matmul":
            y = g.node("MatMul", [x, w()], shape)
            if rng.random() < 0.4:
                y = g.node("Add", [y, g.const(rng.standard_normal(n).astype(np.float32), "b")], shape)
            return y
        gate = g.node("MatMul", [x, w()], None)
        up = g.node("MatMul", [x, w()], None)
        act = rng.choice(["silu", "gelu", "relu"])
        if act == "silu":
            s = g.node("Sigmoid", [gate], None)
            a = g.node("Mul", [gate, s], None)
        elif act == "relu":
            a = g.node("Relu", [gate], None)
        else:
            d = g.node("Div", [gate, g.const(np.array(np.sqrt(2.0), dtype=np.float32))], None)
            e = g.node("Erf", [d], None)
            p1 = g.node("Add", [e, g.const(np.array(1.0, dtype=np.float32))], None)
            m = g.node("Mul", [gate, p1], None)
            a = g.node("Mul", [m, g.const(np.array(0.5, dtype=np.float32))], None)
        return g.node("Mul", [a, up], shape)
    if op == "softmax":
        return g.node(rng.choice(["Softmax", "LogSoftmax"]), [x], xs, axis=int(rng.integers(-r, r)))
    if op == "reduce":
        red = rng.choice(["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
        axes = sorted(set(int(a) for a in rng.integers(0, r, size=rng.integers(1, r + 1))))
        keep = int(rng.integers(0, 2))
        shape = tuple(1 if i in axes else d for i, d in enumerate(xs)) if keep else tuple(
            d for i, d in enumerate(xs) if i not in axes)
        if not shape and not keep and rng.random() < 0.5:
            keep = 1
            shape = tuple(1 for _ in xs)
        ax = g.const(np.array(axes, dtype=np.int64), "axes")
        return g.node(red, [x, ax], shape, keepdims=keep)
    if op == "transpose":
        perm = [int(p) for p in rng.permutation(r)]
        return g.node("Transpose", [x], tuple(xs[p] for p in perm), perm=perm)
    if op == "reshape":
        total = int(np.prod(xs))
        if r >= 2 and rng.random() < 0.5:
            i = int(rng.integers(0, r - 1))
            shape = xs[:i] + (xs[i] * xs[i + 1],) + xs[i + 2:]
        else:
            divs = [d for d in range(1, total + 1) if total % d == 0]
            a = divs[rng.integers(len(divs))]
            shape = (a, total // a)
        spec = list(shape)
        if rng.random() < 0.4:
            spec[rng.integers(len(spec))] = -1
        return g.node("Reshape", [x, g.const(np.array(spec, dtype=np.int64), "shape")], shape)
    if op == "concat":
        ax = int(rng.integers(0, r))
        other = g.pick(lambda s: len(s) == r and all(s[i] == xs[i] for i in range(r) if i != ax))
        y = other[0] if other else x
        shape = list(xs)
        shape[ax] += (other[1] if other else xs)[ax]
        ins = [x, y] if rng.random() < 0.5 else [y, x]
        return g.node("Concat", ins, tuple(shape), axis=ax - r if rng.random() < 0.3 else ax)
    if op == "slice":
        ax = int(rng.integers(0, r))
        d = xs[ax]
        st = int(rng.choice([1, 1, 2, -1]))
        if st > 0:
            s0 = int(rng.integers(0, d))
            e0 = int(rng.integers(s0 + 1, d + 2))
            n = len(range(s0, min(e0, d), st))
        else:
            s0 = int(rng.integers(0, d))
            e0 = int(rng.integers(-d - 2, s0))
            # (A negative end counts from the end, then clamps to -1: "before the first".)
            n = len(range(s0, max(e0 + d if e0 < 0 else e0, -1), st))
        if n == 0:
            return None
        shape = list(xs)
        shape[ax] = n
        cs = [g.const(np.array([v], dtype=np.int64), p) for v, p in ((s0, "st"), (e0, "en"), (ax, "ax"), (st, "sp"))]
        return g.node("Slice", [x] + cs, tuple(shape))
    if op == "unsqueeze":
        if r >= 4:
            return None
        ax = int(rng.integers(0, r + 1))
        shape = xs[:ax] + (1,) + xs[ax:]
        return g.node("Unsqueeze", [x, g.const(np.array([ax], dtype=np.int64), "ax")], shape)
    if op == "squeeze":
        ones = [i for i, d in enumerate(xs) if d == 1]
        if not ones or r == 1:
            return None
        ax = ones[rng.integers(len(ones))]
        return g.node("Squeeze", [x, g.const(np.array([ax], dtype=np.int64), "ax")], xs[:ax] + xs[ax + 1:])
    if op == "gather":
        ax = int(rng.integers(0, r))
        n = int(rng.integers(1, 5))
        idx = rng.integers(-xs[ax], xs[ax], size=(n,) if rng.random() < 0.7 else (n, 2)).astype(np.int64)
        shape = xs[:ax] + idx.shape + xs[ax + 1:]
        if len(shape) > 5:
            return None
        return g.node("Gather", [x, g.const(idx, "ids")], shape, axis=ax)
    if op == "where":
        other = g.pick(lambda s: into(s, xs))
        y = other[0]
        c = g.node("Greater", [x, y], None)
        return g.node("Where", [c, x, y] if rng.random() < 0.5 else [c, y, x], xs)
    if op == "layernorm":
        d = xs[-1]
        sc = g.const((1 + 0.1 * rng.standard_normal(d)).astype(np.float32), "ln_w")
        bi = g.const((0.1 * rng.standard_normal(d)).astype(np.float32), "ln_b")
        return g.node("LayerNormalization", [x, sc, bi], xs, axis=-1, epsilon=1e-5)
    if op == "cumsum":
        ax = g.const(np.array(int(rng.integers(0, r)), dtype=np.int64), "ax")
        return g.node("CumSum", [x, ax], xs, exclusive=int(rng.integers(0, 2)), reverse=int(rng.integers(0, 2)))
    if op == "expand":
        if r >= 4:
            return None
        shape = (int(rng.integers(1, 4)),) + xs
        return g.node("Expand", [x, g.const(np.array(shape, dtype=np.int64), "shape")], shape)
    return None


WIDE = False
SELECT = False
SELECT_OPS = {"topk", "one_hot"}
WIDE_OPS = {"clip", "pow", "gemm", "split", "tile", "pad", "reduce2", "flatten", "trig", "einsum", "argmax",
            "bmm", "castf16", "leaky", "gather_elements"}


def wide(g, op, x, xs):
    """The wider sweep's ops (`--wide`): not in the 40 tested graphs."""
    rng, r = g.rng, len(xs)
    if op == "clip":
        lo = g.const(np.array(-0.5, dtype=np.float32))
        hi = g.const(np.array(0.7, dtype=np.float32))
        return g.node("Clip", [x, lo, hi] if rng.random() < 0.7 else [x, "", hi], xs)
    if op == "pow":
        a = g.node("Abs", [x], None)
        e = g.const(np.array(rng.choice([2.0, 0.5, 3.0]), dtype=np.float32))
        return g.node("Pow", [a, e], xs)
    if op == "gemm" and r == 2:
        ta, tb = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        m, k = (xs[1], xs[0]) if ta else xs
        n = int(rng.integers(1, 9))
        w = g.const(rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32), "w")
        c = g.const(rng.standard_normal(bshape(rng, (m, n))).astype(np.float32), "c")
        return g.node("Gemm", [x, w, c], (m, n), transA=ta, transB=tb, alpha=float(rng.choice([1.0, 0.5])),
                      beta=float(rng.choice([1.0, 2.0])))
    if op == "split" and r >= 1:
        ax = int(rng.integers(0, r))
        if xs[ax] < 2:
            return None
        a = int(rng.integers(1, xs[ax]))
        outs = [g.name("s"), g.name("s")]
        sizes = g.const(np.array([a, xs[ax] - a], dtype=np.int64), "split")
        g.nodes.append(helper.make_node("Split", [x, sizes], outs, axis=ax))
        for o, d in zip(outs, (a, xs[ax] - a)):
            sh = list(xs)
            sh[ax] = d
            g.pool.append((o, tuple(sh)))
        return outs[0]
    if op == "tile" and 1 <= r <= 3:
        reps = [int(v) for v in rng.integers(1, 3, size=r)]
        return g.node("Tile", [x, g.const(np.array(reps, dtype=np.int64), "reps")],
                      tuple(d * k for d, k in zip(xs, reps)))
    if op == "pad" and r >= 1:
        mode = rng.choice(["constant", "edge", "reflect"])
        pads = [int(v) for v in rng.integers(0, 3, size=2 * r)]
        if mode == "reflect":
            pads = [min(p, xs[i % r] - 1) for i, p in enumerate(pads)]
        sh = tuple(d + pads[i] + pads[i + r] for i, d in enumerate(xs))
        return g.node("Pad", [x, g.const(np.array(pads, dtype=np.int64), "pads")], sh, mode=mode)
    if op == "reduce2" and r >= 1:
        red = rng.choice(["ReduceL2", "ReduceLogSumExp", "ReduceSumSquare", "ReduceL1"])
        ax = int(rng.integers(0, r))
        return g.node(red, [x, g.const(np.array([ax], dtype=np.int64), "axes")],
                      tuple(1 if i == ax else d for i, d in enumerate(xs)), keepdims=1)
    if op == "flatten" and r >= 1:
        ax = int(rng.integers(0, r + 1))
        return g.node("Flatten", [x], (int(np.prod(xs[:ax])), int(np.prod(xs[ax:]))), axis=ax)
    if op == "trig":
        return g.node(rng.choice(["Sin", "Cos", "Softplus", "HardSigmoid", "Softsign"]), [x], xs)
    if op == "leaky":
        return g.node("LeakyRelu", [x], xs, alpha=0.1)
    if op == "einsum" and r >= 2:
        n = int(rng.integers(1, 6))
        w = g.const(rng.standard_normal((xs[-1], n)).astype(np.float32), "w")
        return g.node("Einsum", [x, w], xs[:-1] + (n,), equation="...ij,jk->...ik")
    if op == "argmax" and r >= 1:
        ax = int(rng.integers(0, r))
        a = g.node("ArgMax", [x], None, axis=ax, keepdims=1)
        return g.node("Cast", [a], tuple(1 if i == ax else d for i, d in enumerate(xs)), to=TensorProto.FLOAT)
    if op == "bmm" and r >= 2:
        other = g.pick(lambda s: len(s) == r and s[:-2] == xs[:-2] and s[-2] == xs[-1])
        if other is None:
            return None
        return g.node("MatMul", [x, other[0]], xs[:-1] + (other[1][-1],))
    if op == "castf16":
        h = g.node("Cast", [x], None, to=TensorProto.FLOAT16)
        return g.node("Cast", [h], xs, to=TensorProto.FLOAT)
    if op == "gather_elements" and r >= 1:
        ax = int(rng.integers(0, r))
        idx = rng.integers(-xs[ax], xs[ax], size=xs).astype(np.int64)
        return g.node("GatherElements", [x, g.const(idx, "ids")], xs, axis=ax)
    return None


def select(g, op, x, xs):
    """The selections' ops (`--select`): TopK (either order, any axis and K) and OneHot (of a
    lane's ArgMax, along the same axis, times the lane: a hard max)."""
    rng, r = g.rng, len(xs)
    ax = int(rng.integers(0, r))
    if op == "topk" or r < 2:
        k = int(rng.integers(1, xs[ax] + 1))
        sh = tuple(k if i == ax else d for i, d in enumerate(xs))
        v, i = g.name("v"), g.name("i")
        kk = g.const(np.array([k], dtype=np.int64), "k")
        g.nodes.append(helper.make_node("TopK", [x, kk], [v, i], axis=ax, largest=int(rng.integers(0, 2))))
        g.pool.append((v, sh))
        return g.node("Cast", [i], sh, to=TensorProto.FLOAT)
    if op == "one_hot" and r >= 2:
        # (Of rank 2 or more: onnxruntime refuses scalar indices.)
        a = g.node("ArgMax", [x], None, axis=ax, keepdims=0)
        vals = g.const(rng.standard_normal(2).astype(np.float32), "vals")
        depth = g.const(np.array(xs[ax], dtype=np.int64), "depth")
        hot = g.node("OneHot", [a, depth, vals], None, axis=ax)
        return g.node("Mul", [x, hot], xs)
    return None


def save(graph, stem, ins, outs, out_dir):
    """Checks and saves `graph` as `{stem}.onnx` in `out_dir`, with its inputs `ins` and
    onnxruntime's outputs `outs` beside it as .npy files; returns the stem and the outputs."""
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    onnx.checker.check_model(model)
    path = f"{out_dir}/{stem}.onnx"
    onnx.save(model, path)
    res = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, ins)
    for n, v in ins.items():
        np.save(f"{out_dir}/{stem}.{n}.npy", v)
    for n, v in zip(outs, res):
        np.save(f"{out_dir}/{stem}.out.{n}.npy", v)
    return stem, outs


def make(seed, out_dir):
    rng = np.random.default_rng(seed)
    g = G(rng)
    ins = {}
    for i in range(int(rng.integers(1, 3))):
        r = int(rng.integers(1, 4))
        shape = tuple(int(d) for d in rng.integers(1, 7, size=r))
        nm = f"in{i}"
        ins[nm] = rng.standard_normal(shape).astype(np.float32)
        g.pool.append((nm, shape))
    sym = WIDE and rng.random() < 0.3
    steps = int(rng.integers(4, 14))
    made = 0
    while made < steps:
        if step(g) is not None:
            made += 1
    produced = [t for t in g.pool if t[0] not in ins]
    outs = [produced[-1]] + [produced[i] for i in rng.choice(len(produced), size=min(2, len(produced)), replace=False)]
    seen, outs_u = set(), []
    for o in outs:
        if o[0] not in seen:
            seen.add(o[0])
            outs_u.append(o)
    stem = f"random_{seed:02d}"
    graph = helper.make_graph(
        g.nodes, stem,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [f"n{i}"] + list(v.shape[1:]) if sym and v.ndim else list(v.shape))
         for i, (n, v) in enumerate(ins.items())],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None] * len(sh) if sym else list(sh)) for n, sh in outs_u],
        g.inits,
    )
    return save(graph, stem, ins, [n for n, _ in outs_u], out_dir)


def make_ints(seed, d):
    """An integer graph (`--ints`): int64 inputs (one in five near the 32-bit limits), the
    integer ops of masks and shape arithmetic, onnxruntime's outputs beside it."""
    rng = np.random.default_rng(seed)
    g = G(rng)
    const, node, pick = g.const, g.node, g.pick
    ins = {}
    for i in range(int(rng.integers(1, 3))):
        r = int(rng.integers(1, 4))
        sh = tuple(int(v) for v in rng.integers(1, 6, size=r))
        big = rng.random() < 0.2
        ins[f"in{i}"] = rng.integers(-2**31 + 5 if big else -50, 2**31 - 5 if big else 50, size=sh).astype(np.int64)
        g.pool.append((f"in{i}", sh))
    steps, made = int(rng.integers(4, 12)), 0
    while made < steps:
        x, xs = pick()
        r = len(xs)
        op = rng.choice(["bin", "bin", "div", "mod", "un", "cmp", "where", "cumsum", "reduce", "argmax", "gather", "concat", "slice", "transpose", "castf", "clip"])
        y = None
        if op == "bin":
            b = rng.choice(["Add", "Sub", "Mul", "Max", "Min"])
            o = pick(lambda s: into(s, xs))
            other = o[0] if o and rng.random() < 0.5 else const(rng.integers(-9, 9, size=bshape(rng, xs)).astype(np.int64))
            y = node(b, [x, other], xs)
        elif op == "div":
            o = const(np.where(rng.random(xs[-1:]) < 0.5, -1, 1).astype(np.int64) * rng.integers(1, 7, size=xs[-1:]).astype(np.int64))
            y = node("Div", [x, o], xs)
        elif op == "mod":
            o = const((rng.integers(1, 7, size=xs[-1:]) * np.where(rng.random(xs[-1:]) < 0.5, -1, 1)).astype(np.int64))
            y = node("Mod", [x, o], xs, fmod=int(rng.integers(0, 2)))
        elif op == "un":
            y = node(rng.choice(["Neg", "Abs", "Sign"]), [x], xs)
        elif op == "cmp":
            o = pick(lambda s: into(s, xs))
            c = node(rng.choice(["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]), [x, o[0]], None)
            if rng.random() < 0.5:
                c2 = node(rng.choice(["Equal", "Less"]), [x, const(np.array(0, dtype=np.int64))], None)
                c = node(rng.choice(["And", "Or", "Xor"]), [c, c2], None)
            if rng.random() < 0.3:
                c = node("Not", [c], None)
            y = node("Cast", [c], xs, to=TensorProto.INT64)
        elif op == "where":
            o = pick(lambda s: into(s, xs))
            c = node("Less", [x, o[0]], None)
            y = node("Where", [c, x, o[0]] if rng.random() < 0.5 else [c, o[0], x], xs)
        elif op == "cumsum" and r:
            y = node("CumSum", [x, const(np.array(int(rng.integers(0, r)), dtype=np.int64))], xs, exclusive=int(rng.integers(0, 2)), reverse=int(rng.integers(0, 2)))
        elif op == "reduce" and r:
            red = rng.choice(["ReduceSum", "ReduceMax", "ReduceMin"])
            ax, keep = int(rng.integers(0, r)), int(rng.integers(0, 2))
            sh = tuple(1 if i == ax else v for i, v in enumerate(xs)) if keep else tuple(v for i, v in enumerate(xs) if i != ax)
            y = node(red, [x, const(np.array([ax], dtype=np.int64))], sh, keepdims=keep)
        elif op == "argmax" and r:
            ax = int(rng.integers(0, r))
            y = node(rng.choice(["ArgMax", "ArgMin"]), [x], tuple(1 if i == ax else v for i, v in enumerate(xs)), axis=ax, keepdims=1, select_last_index=int(rng.integers(0, 2)))
        elif op == "gather" and r:
            ax = int(rng.integers(0, r))
            idx = rng.integers(-xs[ax], xs[ax], size=(int(rng.integers(1, 4)),)).astype(np.int64)
            y = node("Gather", [x, const(idx)], xs[:ax] + idx.shape + xs[ax + 1:], axis=ax)
        elif op == "concat" and r:
            ax = int(rng.integers(0, r))
            sh = list(xs)
            sh[ax] *= 2
            y = node("Concat", [x, x], tuple(sh), axis=ax)
        elif op == "slice" and r:
            ax = int(rng.integers(0, r))
            s0 = int(rng.integers(0, xs[ax]))
            sh = list(xs)
            sh[ax] = xs[ax] - s0
            y = node("Slice", [x, const(np.array([s0], dtype=np.int64)), const(np.array([xs[ax] + 5], dtype=np.int64)), const(np.array([ax], dtype=np.int64))], tuple(sh))
        elif op == "transpose" and r:
            p = [int(v) for v in rng.permutation(r)]
            y = node("Transpose", [x], tuple(xs[i] for i in p), perm=p)
        elif op == "castf":
            f = node("Cast", [x], None, to=TensorProto.FLOAT)
            h = node("Mul", [f, const(np.array(0.37, dtype=np.float32))], None)
            h = node(rng.choice(["Floor", "Ceil", "Round"]), [h], None)
            y = node("Cast", [h], xs, to=TensorProto.INT64)
        elif op == "clip":
            y = node("Clip", [x, const(np.array(-20, dtype=np.int64)), const(np.array(30, dtype=np.int64))], xs)
        if y is not None:
            made += 1
    prod = [p for p in g.pool if p[0] not in ins]
    outs = list(dict.fromkeys([prod[-1][0]] + [prod[i][0] for i in rng.choice(len(prod), size=min(2, len(prod)), replace=False)]))
    shp = dict(g.pool)
    stem = f"random_int_{seed:03d}"
    graph = helper.make_graph(
        g.nodes, f"random_int_{seed}",
        [helper.make_tensor_value_info(n, TensorProto.INT64, list(v.shape)) for n, v in ins.items()],
        [helper.make_tensor_value_info(n, TensorProto.INT64, list(shp[n])) for n in outs],
        g.inits,
    )
    return save(graph, stem, ins, outs, d)


def make_attention(seed, d, rope=False):
    """An attention block (`--attention`): projections, heads split and transposed, grouped-query
    expansion, scores scaled by a product or a quotient, a causal mask added or selected, an
    input padding mask, a soft cap, softmax, P·V, heads merged, the output projection. With
    `rope` (`--rope`), the keys' projection may take a bias and the queries and keys a rotary
    embedding (`rotate_half`, before the grouped-query expansion, as Hugging Face's eager
    attention spells them), drawn from a second generator so that the blocks without them stay
    as they were."""
    rng = np.random.default_rng(seed)
    g = G(rng)
    const = g.const

    def node(op, ins, **attrs):
        return g.node(op, ins, None, **attrs)

    b, h = int(rng.integers(1, 3)), int(rng.choice([1, 2, 4]))
    kvh = int(rng.choice([x for x in (1, 2, 4) if h % x == 0 and x <= h]))
    s, dh = int(rng.integers(1, 9)), int(rng.choice([4, 8, 16]))
    hid = h * dh
    x = "in0"
    ins = {"in0": rng.standard_normal((b, s, hid)).astype(np.float32)}
    def proj(n_out):
        return node("MatMul", [x, const((rng.standard_normal((hid, n_out)) / np.sqrt(hid)).astype(np.float32))])
    q, k, v = proj(h * dh), proj(kvh * dh), proj(kvh * dh)
    rr = np.random.default_rng(seed + 7919)
    if rope and rr.random() < 0.7:
        k = node("Add", [k, const(rr.standard_normal(kvh * dh).astype(np.float32))])
    def heads(t, nh):
        r = node("Reshape", [t, const(np.array([b, s, nh, dh], dtype=np.int64))])
        return node("Transpose", [r], perm=[0, 2, 1, 3])
    qh, kh, vh = heads(q, h), heads(k, kvh), heads(v, kvh)
    if rope:
        pos = np.arange(s, dtype=np.float64)[:, None]
        freq = 1.0 / (10000.0 ** (np.arange(0, dh, 2, dtype=np.float64) / dh))
        ang = np.concatenate([pos * freq, pos * freq], axis=-1).reshape(1, 1, s, dh)
        cos, sin = const(np.cos(ang).astype(np.float32)), const(np.sin(ang).astype(np.float32))
        def rotate(t):
            half = lambda a, z: node("Slice", [t, const(np.array([a], dtype=np.int64)), const(np.array([z], dtype=np.int64)), const(np.array([3], dtype=np.int64))])
            r = node("Concat", [node("Neg", [half(dh // 2, dh)]), half(0, dh // 2)], axis=-1)
            return node("Add", [node("Mul", [t, cos]), node("Mul", [r, sin])])
        qh, kh = rotate(qh), rotate(kh)
    if kvh != h:
        rep = h // kvh
        def expand(t):
            u = node("Unsqueeze", [t, const(np.array([2], dtype=np.int64))])
            e = node("Expand", [u, const(np.array([b, kvh, rep, s, dh], dtype=np.int64))])
            return node("Reshape", [e, const(np.array([b, h, s, dh], dtype=np.int64))])
        kh, vh = expand(kh), expand(vh)
    kt = node("Transpose", [kh], perm=[0, 1, 3, 2])
    sc = node("MatMul", [qh, kt])
    scale = np.float32(1 / np.sqrt(dh))
    sc = node("Mul", [sc, const(np.array(scale))]) if rng.random() < 0.5 else node("Div", [sc, const(np.array(np.sqrt(dh), dtype=np.float32))])
    mk = rng.choice(["none", "causal_add", "causal_where", "input"])
    if mk == "causal_add":
        m = np.triu(np.full((s, s), -1e9 if rng.random() < 0.5 else -np.inf, dtype=np.float32), 1)
        sc = node("Add", [sc, const(m)])
    elif mk == "causal_where":
        m = np.tril(np.ones((s, s), dtype=bool))
        sc = node("Where", [const(m), sc, const(np.array(-np.inf, dtype=np.float32))])
    elif mk == "input":
        am = np.ones((b, s), dtype=np.int64)
        am[:, : int(rng.integers(0, s))] = 0
        am[:, -1] = 1
        ins["in1"] = am
        u = node("Unsqueeze", ["in1", const(np.array([1, 2], dtype=np.int64))])
        f = node("Cast", [u], to=TensorProto.FLOAT)
        one = node("Sub", [const(np.array(1.0, dtype=np.float32)), f])
        add = node("Mul", [one, const(np.array(-1e9, dtype=np.float32))])
        sc = node("Add", [sc, add])
    if rng.random() < 0.3:
        cap = np.float32(rng.choice([5.0, 30.0]))
        t = node("Div", [sc, const(np.array(cap))])
        t = node("Tanh", [t])
        sc = node("Mul", [t, const(np.array(cap))])
    p = node("Softmax", [sc], axis=-1)
    o = node("MatMul", [p, vh])
    o = node("Transpose", [o], perm=[0, 2, 1, 3])
    o = node("Reshape", [o, const(np.array([b, s, hid], dtype=np.int64))])
    y = node("MatMul", [o, const((rng.standard_normal((hid, hid)) / np.sqrt(hid)).astype(np.float32))])
    inputs = [helper.make_tensor_value_info("in0", TensorProto.FLOAT, [b, s, hid])]
    if "in1" in ins: inputs.append(helper.make_tensor_value_info("in1", TensorProto.INT64, [b, s]))
    stem = f"random_{'rope' if rope else 'attn'}_{seed:03d}"
    output = helper.make_tensor_value_info(y, TensorProto.FLOAT, [b, s, hid])
    return save(helper.make_graph(g.nodes, f"random_attn_{seed}", inputs, [output], g.inits), stem, ins, [y], d)


if __name__ == "__main__":
    if "--select" in sys.argv:
        sys.argv.remove("--select")
        SELECT = True
    if "--wide" in sys.argv:
        sys.argv.remove("--wide")
        WIDE = True
    INTS = "--ints" in sys.argv
    if INTS:
        sys.argv.remove("--ints")
    ATTENTION = "--attention" in sys.argv
    if ATTENTION:
        sys.argv.remove("--attention")
    ROPE = "--rope" in sys.argv
    if ROPE:
        sys.argv.remove("--rope")
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    first = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    out_dir = sys.argv[3] if len(sys.argv) > 3 else "."
    for s in range(first, first + count):
        made = make_ints(s, out_dir) if INTS else make_attention(s, out_dir, ROPE) if ATTENTION else make(s, out_dir)
        if made:
            print(made[0], " ".join(made[1]))
