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
}

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
        let q = b.linear(&format!("{p}self_attn.q_proj"), n1, h, Layout::Kn, sh);
        let k = b.linear(&format!("{p}self_attn.k_proj"), n1, h, Layout::Kn, sh);
        let v = b.linear(&format!("{p}self_attn.v_proj"), n1, h, Layout::Kn, sh);
        let core = if o.executable {
            let s = b.unary(&format!("{p}self_attn.core_sigmoid"), UnaryOp::Sigmoid, q);
            let sv = b.mul(&format!("{p}self_attn.core_mix"), s, v);
            b.add(&format!("{p}self_attn.core"), sv, k)
        } else {
            b.opaque(&format!("{p}self_attn.core"), "Attention", &[q, k, v], vec![act_ty.clone()])[0]
        };
        let attn = b.linear(&format!("{p}self_attn.o_proj"), core, h, Layout::Kn, sh);
        let r1 = b.add(&format!("{p}attn_residual"), x, attn);
        let n2 = norm(&mut b, &format!("{p}post_attention_layernorm"), r1);
        let gate = b.linear(&format!("{p}mlp.gate_proj"), n2, i, o.layout, sh);
        let up = b.linear(&format!("{p}mlp.up_proj"), n2, i, o.layout, sh);
        let act = b.silu(&format!("{p}mlp.act_fn."), gate, SiluSpelling::MulSigmoid);
        let prod = b.mul(&format!("{p}mlp.mul"), act, up);
        let down = b.linear(&format!("{p}mlp.down_proj"), prod, h, o.layout, si);
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
    let mut b = GraphBuilder::new();
    let x = b.input("x", dtype, shape_of(&[m, h]));
    let scale = 1.0 / (h as f32).sqrt();
    let g = b.linear("gate_proj", x, i, layout, scale);
    let u = b.linear("up_proj", x, i, layout, scale);
    let a = b.unary("act", UnaryOp::Silu, g);
    let y = b.mul("mul", a, u);
    b.finish(&[y])
}
