//! Writes the graphs of `tests/graphs/`: one per way exporters spell a gated FFN, one per case
//! the fusion pass must leave alone, and chains of elementwise ops for the elementwise fusion. Run `cargo run --example make_test_graphs` to
//! regenerate them; the test suite reads the files, so every change to them is reviewed.

use glufuse::builder::{GraphBuilder, SiluSpelling};
use glufuse::ir::*;
use glufuse::Graph;

const H: u64 = 8;
const I: u64 = 12;
const M: u64 = 3;

/// x [M, H] and the projection helper.
struct Ffn {
    b: GraphBuilder,
    x: Value,
    dt: DType,
}

impl Ffn {
    fn new(dt: DType, rows: Dim) -> Self {
        let mut b = GraphBuilder::new();
        let x = b.input("x", dt, vec![rows, Dim::Fixed(H)]);
        Ffn { b, x, dt }
    }
    fn kn(&mut self, name: &str, x: Value, n: u64) -> Value {
        let w = self.b.weight(&format!("{name}.weight"), self.dt, &[H, n], 0.5);
        self.b.matmul(name, x, w)
    }
    fn nk(&mut self, name: &str, x: Value, n: u64) -> Value {
        let w = self.b.weight(&format!("{name}.weight"), self.dt, &[n, H], 0.5);
        let t = self.b.transpose(&format!("{name}.weight_t"), w, &[1, 0]);
        self.b.matmul(name, x, t)
    }
    fn bias(&mut self, name: &str, p: Value, n: u64) -> Value {
        let bias = self.b.weight(&format!("{name}.bias"), self.dt, &[n], 0.5);
        self.b.add(&format!("{name}.add_bias"), p, bias)
    }
    fn c(&mut self, name: &str, v: f64) -> Value {
        self.b.scalar(name, self.dt, v)
    }
    /// Ends with the down projection, as in a real FFN.
    fn down(mut self, h: Value) -> Graph {
        let w = self.b.weight("down_proj.weight", self.dt, &[I, H], 0.5);
        let d = self.b.matmul("down_proj", h, w);
        self.b.finish(&[d]).expect("test graph is valid")
    }
}

fn swiglu(spelling: SiluSpelling) -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let a = f.b.silu("act.", g, spelling);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn swiglu_recip() -> Graph {
    // x · (1 / (1 + exp(-x)))
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let zero = f.c("act.zero", 0.0);
    let n = f.b.binary("act.neg", BinaryOp::Sub, zero, g);
    let e = f.b.unary("act.exp", UnaryOp::Exp, n);
    let one = f.c("act.one", 1.0);
    let d = f.b.add("act.denom", e, one);
    let one2 = f.c("act.one_num", 1.0);
    let r = f.b.binary("act.sigmoid", BinaryOp::Div, one2, d);
    let a = f.b.mul("act.silu", g, r);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn act_on_right() -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let a = f.b.unary("act", UnaryOp::Silu, g);
    let m = f.b.mul("mul", u, a);
    f.down(m)
}

fn nk_layout() -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.nk("gate_proj", f.x, I);
    let u = f.nk("up_proj", f.x, I);
    let a = f.b.silu("act.", g, SiluSpelling::MulSigmoid);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn bias() -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let g = f.bias("gate_proj", g, I);
    let u = f.kn("up_proj", f.x, I);
    let u = f.bias("up_proj", u, I);
    let a = f.b.silu("act.", g, SiluSpelling::MulSigmoid);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn geglu_op(op: UnaryOp) -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let a = f.b.unary("act", op, g);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

/// GELU-tanh written out. `pow`: x³ as Pow (else x*x*x); `half_first`: 0.5·x first (else the
/// 0.5 multiplies last); `consts_left`: constants on the left of each Mul.
fn gelu_tanh_expanded(pow: bool, half_first: bool, consts_left: bool, k: f64) -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let cmul = |f: &mut Ffn, name: &str, c: Value, v: Value| {
        if consts_left {
            f.b.mul(name, c, v)
        } else {
            f.b.mul(name, v, c)
        }
    };
    let cube = if pow {
        let three = f.c("gelu.three", 3.0);
        f.b.binary("gelu.pow", BinaryOp::Pow, g, three)
    } else {
        let sq = f.b.mul("gelu.sq", g, g);
        f.b.mul("gelu.cube", sq, g)
    };
    let a = f.c("gelu.a", 0.044715);
    let ac = cmul(&mut f, "gelu.a_cube", a, cube);
    let inner = f.b.add("gelu.inner", g, ac);
    let kc = f.c("gelu.k", k);
    let arg = cmul(&mut f, "gelu.arg", kc, inner);
    let t = f.b.unary("gelu.tanh", UnaryOp::Tanh, arg);
    let one = f.c("gelu.one", 1.0);
    let t1 = f.b.add("gelu.one_plus", t, one);
    let half = f.c("gelu.half", 0.5);
    let act = if half_first {
        let hx = cmul(&mut f, "gelu.half_x", half, g);
        f.b.mul("gelu", hx, t1)
    } else {
        let xt = f.b.mul("gelu.x_t", g, t1);
        cmul(&mut f, "gelu", half, xt)
    };
    let m = f.b.mul("mul", act, u);
    f.down(m)
}

fn gelu_erf_expanded() -> Graph {
    // x · 0.5 · (1 + erf(x / √2)), as PyTorch's dynamo exporter writes it.
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let s2 = f.c("gelu.sqrt2", std::f64::consts::SQRT_2);
    let d = f.b.binary("gelu.div", BinaryOp::Div, g, s2);
    let e = f.b.unary("gelu.erf", UnaryOp::Erf, d);
    let one = f.c("gelu.one", 1.0);
    let e1 = f.b.add("gelu.one_plus", e, one);
    let half = f.c("gelu.half", 0.5);
    let he = f.b.mul("gelu.half_e", half, e1);
    let act = f.b.mul("gelu", g, he);
    let m = f.b.mul("mul", act, u);
    f.down(m)
}

/// One merged gate_up projection split in halves; `gate_second` puts the gate in the second
/// half; `slices` uses two Slices instead of a Split.
fn merged(gate_second: bool, slices: bool, nk: bool) -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let gu = if nk { f.nk("gate_up_proj", f.x, 2 * I) } else { f.kn("gate_up_proj", f.x, 2 * I) };
    let (first, second) = if slices {
        (f.b.slice("chunk0", gu, -1, 0, I), f.b.slice("chunk1", gu, -1, I, 2 * I))
    } else {
        let parts = f.b.split("chunk", gu, -1, &[I, I]);
        (parts[0], parts[1])
    };
    let (g, u) = if gate_second { (second, first) } else { (first, second) };
    let a = f.b.silu("act.", g, SiluSpelling::MulSigmoid);
    let m = f.b.mul("mul", u, a);
    f.down(m)
}

fn f16_symbolic() -> Graph {
    let mut f = Ffn::new(DType::F16, Dim::Sym("batch".into()));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let a = f.b.silu("act.", g, SiluSpelling::MulSigmoid);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn batched_3d() -> Graph {
    // x [batch, seq, H], as exporters give it.
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, vec![Dim::Sym("batch".into()), Dim::Sym("seq".into()), Dim::Fixed(H)]);
    let wg = b.weight("gate_proj.weight", DType::F32, &[H, I], 0.5);
    let wu = b.weight("up_proj.weight", DType::F32, &[H, I], 0.5);
    let g = b.matmul("gate_proj", x, wg);
    let u = b.matmul("up_proj", x, wu);
    let a = b.unary("act", UnaryOp::Relu, g);
    let m = b.mul("mul", a, u);
    b.finish(&[m]).expect("valid")
}

fn different_inputs() -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let y = f.b.input("y", DType::F32, shape_of(&[M, H]));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", y, I);
    let a = f.b.unary("act", UnaryOp::Silu, g);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn gelu_mlp_no_gate() -> Graph {
    // GPT-2: gelu(x·W1 + b1)·W2 + b2, GELU written out; no product with a second projection.
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let h = f.kn("c_fc", f.x, I);
    let h = f.bias("c_fc", h, I);
    let half = f.c("act.half", 0.5);
    let hx = f.b.mul("act.half_x", h, half);
    let three = f.c("act.three", 3.0);
    let p = f.b.binary("act.pow", BinaryOp::Pow, h, three);
    let a = f.c("act.a", 0.044715);
    let ap = f.b.mul("act.a_cube", p, a);
    let inner = f.b.add("act.inner", h, ap);
    let k = f.c("act.k", 0.7978846);
    let arg = f.b.mul("act.arg", inner, k);
    let t = f.b.unary("act.tanh", UnaryOp::Tanh, arg);
    let one = f.c("act.one", 1.0);
    let t1 = f.b.add("act.one_plus", t, one);
    let g = f.b.mul("act", hx, t1);
    f.down(g)
}

fn shared_gate() -> Graph {
    // The gate projection is also read by another node: fusing would compute it twice.
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("up_proj", f.x, I);
    let a = f.b.unary("act", UnaryOp::Silu, g);
    let m = f.b.mul("mul", a, u);
    let side = f.b.unary("side", UnaryOp::Tanh, g);
    let both = f.b.add("mix", m, side);
    f.down(both)
}

fn gate_is_output() -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, shape_of(&[M, H]));
    let wg = b.weight("gate_proj.weight", DType::F32, &[H, I], 0.5);
    let wu = b.weight("up_proj.weight", DType::F32, &[H, I], 0.5);
    let g = b.matmul("gate_proj", x, wg);
    let u = b.matmul("up_proj", x, wu);
    let a = b.unary("act", UnaryOp::Silu, g);
    let m = b.mul("mul", a, u);
    b.finish(&[m, g]).expect("valid")
}

fn broadcast_up() -> Graph {
    // The "up" side has one output feature, broadcast: a product, but not a gated linear unit.
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.kn("score", f.x, 1);
    let a = f.b.unary("act", UnaryOp::Silu, g);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

fn mixed_layouts() -> Graph {
    let mut f = Ffn::new(DType::F32, Dim::Fixed(M));
    let g = f.kn("gate_proj", f.x, I);
    let u = f.nk("up_proj", f.x, I);
    let a = f.b.unary("act", UnaryOp::Silu, g);
    let m = f.b.mul("mul", a, u);
    f.down(m)
}

/// SwiGLU with 4-bit weights (H 32, I 24, blocks of 16 along k), `[N, K]` as MatMulNBits
/// loads them; `up_q4` false makes the up weight f32 (mixed precision: left alone).
fn q4(up_q4: bool) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, shape_of(&[M, 32]));
    let g = b.linear_q4("gate_proj", x, 24, Layout::Nk, 16, 0.5);
    let u = if up_q4 {
        b.linear_q4("up_proj", x, 24, Layout::Nk, 16, 0.5)
    } else {
        b.linear("up_proj", x, 24, Layout::Nk, 0.5)
    };
    let a = b.unary("act", UnaryOp::Silu, g);
    let m = b.mul("mul", a, u);
    let d = b.linear_q4("down_proj", m, 32, Layout::Nk, 16, 0.5);
    b.finish(&[d]).expect("valid")
}

fn decoder(layers: usize, layout: Layout) -> Graph {
    glufuse::synth::llama(&glufuse::synth::SynthOptions {
        layers,
        hidden: H,
        intermediate: I,
        batch: Some(M),
        dtype: DType::F32,
        executable: true,
        layout,
        q4: false,
    })
    .expect("valid")
}

/// Chains of elementwise ops for the elementwise fusion, around the products that bound them
/// (no gated FFN): an RMS norm as exporters write it (`x·x`, its mean and the tail one group),
/// a mask built from comparisons and logic through an expand and a `Where`, an integer detour
/// with casts, a product read three times (so it stays a group's output, computed once), and
/// a softmax of it less its row maximum (rows reduced in turn).
fn elementwise_chains(dt: DType) -> Graph {
    let mut b = GraphBuilder::new();
    let x = b.input("x", dt, vec![Dim::Sym("batch".into()), Dim::Fixed(H)]);
    // An f16 graph computes its norm in f32, as the exports do.
    let xf = if dt == DType::F16 { b.node("norm.cast_in", Op::Cast { to: DType::F32 }, &[x], vec![])[0] } else { x };
    let two = b.scalar("norm.two", DType::F32, 2.0);
    let sq = b.binary("norm.pow", BinaryOp::Pow, xf, two);
    let mean = b.node("norm.mean", Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true }, &[sq], vec![])[0];
    let eps = b.scalar("norm.eps", DType::F32, 1e-6);
    let var = b.add("norm.add_eps", mean, eps);
    let sd = b.unary("norm.sqrt", UnaryOp::Sqrt, var);
    let r = b.unary("norm.rsqrt", UnaryOp::Reciprocal, sd);
    let n = b.mul("norm.mul", xf, r);
    let n = if dt == DType::F16 { b.node("norm.cast_out", Op::Cast { to: DType::F16 }, &[n], vec![])[0] } else { n };
    let w = b.weight("norm.weight", dt, &[H], 0.5);
    let y = b.mul("norm.scale", w, n);
    // A mask: where x < 0 and not x < -0.25, 0; elsewhere the lowest float; over [1, batch, H].
    let zero = b.scalar("mask.zero", dt, 0.0);
    let lo = b.scalar("mask.lo", dt, -0.25);
    let neg = b.binary("mask.neg", BinaryOp::Less, x, zero);
    let deep = b.binary("mask.deep", BinaryOp::Less, x, lo);
    let shallow = b.unary("mask.not_deep", UnaryOp::Not, deep);
    let keep = b.binary("mask.and", BinaryOp::And, neg, shallow);
    let wide = b.node(
        "mask.expand",
        Op::Expand { shape: vec![Dim::Fixed(1), Dim::Sym("batch".into()), Dim::Fixed(H)] },
        &[keep],
        vec![],
    )[0];
    let min = b.scalar("mask.min", dt, if dt == DType::F16 { -65504.0 } else { -3.4028234663852886e38 });
    let mask = b.node("mask.where", Op::Where, &[wide, zero, min], vec![])[0];
    // Integers: 4·x truncated to an i64 (exact on any device), plus 1, back to floats.
    let four = b.scalar("int.four", dt, 4.0);
    let x4 = b.mul("int.mul", x, four);
    let i = b.node("int.cast", Op::Cast { to: DType::I64 }, &[x4], vec![])[0];
    let one = b.scalar("int.one", DType::I64, 1.0);
    let i1 = b.add("int.add", i, one);
    let f = b.node("int.back", Op::Cast { to: dt }, &[i1], vec![])[0];
    // The product read twice: by the masked sum and by a projection.
    let p = b.mul("prod", y, f);
    let s = b.add("masked", p, mask);
    let wp = b.weight("proj.weight", dt, &[H, H], 0.5);
    let proj = b.matmul("proj", p, wp);
    let out = b.unary("out", UnaryOp::Tanh, s);
    // Rows reduced one after another: a softmax of (p - max(p)) / 2.
    let mx = b.node("soft.max", Op::Reduce { op: ReduceOp::Max, axes: vec![-1], keepdims: true }, &[p], vec![])[0];
    let centred = b.binary("soft.sub", BinaryOp::Sub, p, mx);
    let half = b.scalar("soft.half", dt, 0.5);
    let scaled = b.mul("soft.scale", centred, half);
    let soft = b.node("soft", Op::Softmax { axis: -1 }, &[scaled], vec![])[0];
    b.finish(&[out, proj, soft]).expect("valid")
}

/// A rotary embedding and a KV cache as decoders export them: projections viewed as heads and
/// transposed, `rotate_half` (two slices, a negation, a concat), the products with cos and sin
/// (inputs here), and the concat of the cache's past with the new keys (and values).
fn elementwise_rotary() -> Graph {
    let mut b = GraphBuilder::new();
    let seq = Dim::Sym("seq".into());
    let batch = Dim::Sym("batch".into());
    let x = b.input("x", DType::F32, vec![batch.clone(), seq.clone(), Dim::Fixed(16)]);
    let cos = b.input("cos", DType::F32, vec![seq.clone(), Dim::Fixed(8)]);
    let sin = b.input("sin", DType::F32, vec![seq.clone(), Dim::Fixed(8)]);
    let past_k = b.input("past_k", DType::F32, vec![batch.clone(), Dim::Fixed(2), Dim::Fixed(5), Dim::Fixed(8)]);
    let past_v = b.input("past_v", DType::F32, vec![batch, Dim::Fixed(2), Dim::Fixed(5), Dim::Fixed(8)]);
    let heads = |b: &mut GraphBuilder, name: &str, p: Value| {
        let shape = [0, 0, 2, 8].map(DimExpr::constant).to_vec();
        let r = b.node(&format!("{name}.view"), Op::Reshape { shape }, &[p], vec![])[0];
        b.transpose(&format!("{name}.heads"), r, &[0, 2, 1, 3])
    };
    let wk = b.weight("k_proj.weight", DType::F32, &[16, 16], 0.5);
    let k = b.matmul("k_proj", x, wk);
    let k = heads(&mut b, "k", k);
    let lo = b.slice("rot.lo", k, 3, 0, 4);
    let hi = b.slice("rot.hi", k, 3, 4, 8);
    let neg = b.unary("rot.neg", UnaryOp::Neg, hi);
    let half = b.node("rot.rotate_half", Op::Concat { axis: -1 }, &[neg, lo], vec![])[0];
    let kc = b.mul("rot.cos", k, cos);
    let ks = b.mul("rot.sin", half, sin);
    let kr = b.add("rot.sum", kc, ks);
    let k_cache = b.node("k_cache", Op::Concat { axis: 2 }, &[past_k, kr], vec![])[0];
    let wv = b.weight("v_proj.weight", DType::F32, &[16, 16], 0.5);
    let v = b.matmul("v_proj", x, wv);
    let v = heads(&mut b, "v", v);
    let v_cache = b.node("v_cache", Op::Concat { axis: 2 }, &[past_v, v], vec![])[0];
    b.finish(&[k_cache, v_cache]).expect("valid")
}

/// Attention as decoders export it, grouped-query: a KV cache of 2 heads expanded to the 4
/// query heads (a view, an expand, a view), keys transposed, scores scaled, masked and
/// softmaxed, times the values, heads transposed back.
fn attention_gqa() -> Graph {
    let mut b = GraphBuilder::new();
    let seq = Dim::Sym("seq".into());
    let f = |d: u64| Dim::Fixed(d);
    let q = b.input("q", DType::F32, vec![f(1), f(4), seq.clone(), f(8)]);
    let k = b.input("k_cache", DType::F32, vec![f(1), f(2), f(5), f(8)]);
    let v = b.input("v_cache", DType::F32, vec![f(1), f(2), f(5), f(8)]);
    let mask = b.input("mask", DType::F32, vec![f(1), f(1), seq, f(5)]);
    let heads = |b: &mut GraphBuilder, name: &str, x: Value| {
        let one = [1, 2, 1, 5, 8].map(DimExpr::constant).to_vec();
        let u = b.node(&format!("{name}.unsqueeze"), Op::Reshape { shape: one }, &[x], vec![])[0];
        let e = b.node(
            &format!("{name}.expand"),
            Op::Expand { shape: [1, 2, 2, 5, 8].map(Dim::Fixed).to_vec() },
            &[u],
            vec![],
        )[0];
        let four = [1, 4, -1, 8].map(DimExpr::constant).to_vec();
        b.node(&format!("{name}.heads"), Op::Reshape { shape: four }, &[e], vec![])[0]
    };
    let kh = heads(&mut b, "k", k);
    let kt = b.transpose("k.t", kh, &[0, 1, 3, 2]);
    let scores = b.matmul("scores", q, kt);
    let scale = b.scalar("scale", DType::F32, 0.35355339);
    let scaled = b.mul("scaled", scores, scale);
    let masked = b.add("masked", scaled, mask);
    let probs = b.node("probs", Op::Softmax { axis: -1 }, &[masked], vec![])[0];
    let vh = heads(&mut b, "v", v);
    let o = b.matmul("attn", probs, vh);
    let out = b.transpose("attn.t", o, &[0, 2, 1, 3]);
    b.finish(&[out]).expect("valid")
}

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/graphs");
    std::fs::create_dir_all(&dir).expect("create tests/graphs");
    let graphs: Vec<(&str, Graph)> = vec![
        ("swiglu_silu_op", swiglu(SiluSpelling::Op)),
        ("swiglu_mul_sigmoid", swiglu(SiluSpelling::MulSigmoid)),
        ("swiglu_sigmoid_mul", swiglu(SiluSpelling::SigmoidMul)),
        ("swiglu_div_exp", swiglu(SiluSpelling::DivExp)),
        ("swiglu_mul_recip", swiglu_recip()),
        ("swiglu_act_on_right", act_on_right()),
        ("swiglu_nk_transpose", nk_layout()),
        ("swiglu_bias", bias()),
        ("geglu_tanh_op", geglu_op(UnaryOp::GeluTanh)),
        ("geglu_erf_op", geglu_op(UnaryOp::GeluErf)),
        ("reglu_op", geglu_op(UnaryOp::Relu)),
        ("geglu_tanh_pow_half_last", gelu_tanh_expanded(true, false, true, 0.7978845608028654)),
        ("geglu_tanh_cube_half_first", gelu_tanh_expanded(false, true, false, 0.7978846)),
        ("geglu_tanh_cube_consts_left", gelu_tanh_expanded(false, false, true, 0.79788456)),
        ("geglu_erf_expanded", gelu_erf_expanded()),
        ("merged_split", merged(false, false, false)),
        ("merged_split_gate_second", merged(true, false, false)),
        ("merged_slices_nk", merged(false, true, true)),
        ("f16_symbolic_batch", f16_symbolic()),
        ("reglu_batched_3d", batched_3d()),
        ("decoder_2_layers", decoder(2, Layout::Kn)),
        ("decoder_3_layers_nk", decoder(3, Layout::Nk)),
        ("nofuse_different_inputs", different_inputs()),
        ("nofuse_gelu_mlp_no_gate", gelu_mlp_no_gate()),
        ("nofuse_shared_gate", shared_gate()),
        ("nofuse_gate_is_output", gate_is_output()),
        ("nofuse_broadcast_up", broadcast_up()),
        ("nofuse_mixed_layouts", mixed_layouts()),
        ("elementwise_chains", elementwise_chains(DType::F32)),
        ("elementwise_chains_f16", elementwise_chains(DType::F16)),
        ("elementwise_rotary", elementwise_rotary()),
        ("attention_gqa", attention_gqa()),
        ("q4_swiglu_nk", q4(true)),
        ("nofuse_mixed_q4", q4(false)),
    ];
    for (name, g) in graphs {
        let path = dir.join(format!("{name}.json"));
        std::fs::write(&path, glufuse::json::to_string(&g).expect("serialise")).expect("write");
        println!("wrote {}", path.display());
    }
}
