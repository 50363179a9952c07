//! Synthetic Llama-style decoder graphs: the bundled default model, test inputs and the pass
//! benchmark. Each layer has a norm, q/k/v/o projections around an attention core, a residual
//! add, a second norm, a gated FFN (gate, up, SiLU, product, down) and a second residual add.
//!
//! With `executable` off, the norms and attention core are opaque ops, as in a real model.
//! With it on they are small elementwise stand-ins (a tanh "norm", `sigmoid(q)·v + k` for
//! attention) so that the whole graph runs on the interpreter and the GPU.
//!
//! Also the FFN gate/up graph alone, as `glufuse bench` times it ([`ffn_graph`]), and the
//! `HxI` notation of its shapes ([`parse_shape`]).

use crate::builder::{GraphBuilder, SiluSpelling};
use crate::ir::*;
use crate::Result;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SynthOptions {
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size H.
    pub hidden: u64,
    /// FFN intermediate size I.
    pub intermediate: u64,
    /// Rows of x (tokens); `None` makes it the symbolic dim `batch`.
    pub batch: Option<u64>,
    /// Element type of activations and weights.
    pub dtype: DType,
    /// Stand-ins instead of opaque ops, so the graph runs end to end.
    pub executable: bool,
    /// Weight layout of the FFN projections.
    pub layout: Layout,
    /// 4-bit projection weights ([`QuantWeight`]: blocks of [`Q4_BLOCK`] along k, symmetric,
    /// scales of `dtype`), as `synth --dtype q4` makes them (f16).
    pub q4: bool,
}

/// The block size of synthetic 4-bit weights.
pub const Q4_BLOCK: u64 = 32;

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            layers: 4,
            hidden: 256,
            intermediate: 688,
            batch: Some(4),
            dtype: DType::F32,
            executable: true,
            layout: Layout::Kn,
            q4: false,
        }
    }
}

/// The bundled default model of `glufuse` with no arguments: 4 executable layers, H=256, I=688.
pub fn default_model() -> Graph {
    llama(&SynthOptions::default()).expect("the default model is valid")
}

/// Builds a synthetic decoder graph.
pub fn llama(o: &SynthOptions) -> Result<Graph> {
    if o.layers == 0 || o.hidden == 0 || o.intermediate == 0 || o.batch == Some(0) {
        return Err(crate::Error::input("layers, hidden, intermediate and batch must be at least 1"));
    }
    let mut b = GraphBuilder::new();
    let (h, i, dt) = (o.hidden, o.intermediate, o.dtype);
    let rows = match o.batch {
        Some(m) => Dim::Fixed(m),
        None => Dim::Sym("batch".into()),
    };
    let act_ty = TensorType::new(dt, vec![rows.clone(), Dim::Fixed(h)]);
    let sh = 1.0 / (h as f32).sqrt();
    let si = 1.0 / (i as f32).sqrt();
    let mut x = b.input("x", dt, act_ty.shape.clone());
    for l in 0..o.layers {
        let p = format!("layers.{l}.");
        let norm = |b: &mut GraphBuilder, name: &str, x: Value| -> Value {
            if o.executable {
                b.unary(name, UnaryOp::Tanh, x)
            } else {
                let w = b.weight(&format!("{name}.weight"), dt, &[h], 1.0);
                b.opaque(name, "RMSNorm", &[x, w], vec![act_ty.clone()])[0]
            }
        };
        let n1 = norm(&mut b, &format!("{p}input_layernorm"), x);
        let linear = |b: &mut GraphBuilder, name: &str, x: Value, out: u64, layout: Layout, scale: f32| {
            if o.q4 {
                b.linear_q4(name, x, out, layout, Q4_BLOCK, scale)
            } else {
                b.linear(name, x, out, layout, scale)
            }
        };
        let q = linear(&mut b, &format!("{p}self_attn.q_proj"), n1, h, Layout::Kn, sh);
        let k = linear(&mut b, &format!("{p}self_attn.k_proj"), n1, h, Layout::Kn, sh);
        let v = linear(&mut b, &format!("{p}self_attn.v_proj"), n1, h, Layout::Kn, sh);
        let core = if o.executable {
            let s = b.unary(&format!("{p}self_attn.core_sigmoid"), UnaryOp::Sigmoid, q);
            let sv = b.mul(&format!("{p}self_attn.core_mix"), s, v);
            b.add(&format!("{p}self_attn.core"), sv, k)
        } else {
            b.opaque(&format!("{p}self_attn.core"), "Attention", &[q, k, v], vec![act_ty.clone()])[0]
        };
        let attn = linear(&mut b, &format!("{p}self_attn.o_proj"), core, h, Layout::Kn, sh);
        let r1 = b.add(&format!("{p}attn_residual"), x, attn);
        let n2 = norm(&mut b, &format!("{p}post_attention_layernorm"), r1);
        let gate = linear(&mut b, &format!("{p}mlp.gate_proj"), n2, i, o.layout, sh);
        let up = linear(&mut b, &format!("{p}mlp.up_proj"), n2, i, o.layout, sh);
        let act = b.silu(&format!("{p}mlp.act_fn."), gate, SiluSpelling::MulSigmoid);
        let prod = b.mul(&format!("{p}mlp.mul"), act, up);
        let down = linear(&mut b, &format!("{p}mlp.down_proj"), prod, h, o.layout, si);
        x = b.add(&format!("{p}mlp_residual"), r1, down);
    }
    b.finish(&[x])
}

/// An FFN shape written `HxI` (or `H×I`), as `--shapes` takes it.
pub fn parse_shape(s: &str) -> Option<(u64, u64)> {
    let (h, i) = s.split_once(['x', '×'])?;
    Some((h.trim().parse().ok()?, i.trim().parse().ok()?))
}

/// The FFN gate/up graph of one benchmark configuration: `H` features in, `I` out, `m` rows
/// (SiLU as one op, so the unfused graph is the strongest op-by-op baseline: two
/// projections, one activation, one product).
pub fn ffn_graph(h: u64, i: u64, m: u64, dtype: DType, layout: Layout) -> Result<Graph> {
    let w = match dtype {
        DType::F16 => WeightType::F16,
        _ => WeightType::F32,
    };
    ffn_graph_of(h, i, m, w, layout)
}

/// The weights of a benchmark configuration: f32, f16, or 4-bit (`q4`: blocks of
/// [`Q4_BLOCK`] along k, symmetric, f16 scales, with f16 activations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightType {
    /// f32 weights and activations.
    F32,
    /// f16 weights and activations.
    F16,
    /// 4-bit weights with f16 scales; f16 activations.
    Q4,
}

impl WeightType {
    /// The activations' (and the scales') dtype.
    pub fn dtype(self) -> DType {
        match self {
            WeightType::F32 => DType::F32,
            WeightType::F16 | WeightType::Q4 => DType::F16,
        }
    }

    /// Bytes of one `[k, n]` weight as stored: a 4-bit one's packed elements and its f16
    /// scales (one per block of k).
    pub fn weight_bytes(self, k: u64, n: u64) -> f64 {
        match self {
            WeightType::F32 | WeightType::F16 => (k * n * self.dtype().size()) as f64,
            WeightType::Q4 => (k * n) as f64 / 2.0 + (k.div_ceil(Q4_BLOCK) * n * 2) as f64,
        }
    }
}

impl std::fmt::Display for WeightType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WeightType::F32 => "f32",
            WeightType::F16 => "f16",
            WeightType::Q4 => "q4",
        })
    }
}

/// [`ffn_graph`] with weights of any [`WeightType`].
pub fn ffn_graph_of(h: u64, i: u64, m: u64, w: WeightType, layout: Layout) -> Result<Graph> {
    let mut b = GraphBuilder::new();
    let x = b.input("x", w.dtype(), shape_of(&[m, h]));
    let scale = 1.0 / (h as f32).sqrt();
    let proj = |b: &mut GraphBuilder, name: &str| match w {
        WeightType::Q4 => b.linear_q4(name, x, i, layout, Q4_BLOCK, scale),
        WeightType::F32 | WeightType::F16 => b.linear(name, x, i, layout, scale),
    };
    let g = proj(&mut b, "gate_proj");
    let u = proj(&mut b, "up_proj");
    let a = b.unary("act", UnaryOp::Silu, g);
    let y = b.mul("mul", a, u);
    b.finish(&[y])
}
