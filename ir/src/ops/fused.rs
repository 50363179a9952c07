//! The fused gated linear unit, `act(x·W_gate + b_gate) · (x·W_up + b_up)` in one op
//! ([`FusedGateUp`]), what the fusion pass rewrites each gated FFN into; its activations and
//! weight layouts.

use super::{out, read_attrs, to_json, Attrs};
use crate::op::Op;
use crate::ops::unary::UnaryOp;
use crate::tensor::{Data, Tensor};
use crate::types::{Dim, TensorType};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;
use std::fmt::Write;

/// The name of [`Op::FusedGateUp`].
pub const NAME: &str = "FusedGateUp";

/// The activation applied to the gate projection of a gated linear unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// SiLU (SwiGLU).
    Silu,
    /// GELU, tanh approximation (GeGLU as in Gemma).
    GeluTanh,
    /// GELU, exact through erf.
    GeluErf,
    /// ReLU (ReGLU).
    Relu,
}

impl Activation {
    /// Every activation, in a stable order.
    pub const ALL: [Activation; 4] = [Activation::Silu, Activation::GeluTanh, Activation::GeluErf, Activation::Relu];

    /// The unary op computing this activation.
    pub fn unary(self) -> UnaryOp {
        match self {
            Activation::Silu => UnaryOp::Silu,
            Activation::GeluTanh => UnaryOp::GeluTanh,
            Activation::GeluErf => UnaryOp::GeluErf,
            Activation::Relu => UnaryOp::Relu,
        }
    }

    /// The activation applied to one value.
    pub fn apply(self, x: f32) -> f32 {
        self.unary().apply(x)
    }

    /// Short lowercase name (`silu`, `gelu_tanh`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Silu => "silu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::GeluErf => "gelu_erf",
            Activation::Relu => "relu",
        }
    }
}

/// How a 2-D weight of a projection `x · W` is laid out in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[K, N]`: as ONNX `MatMul` takes it.
    Kn,
    /// `[N, K]`: PyTorch `Linear` layout, used through a transpose.
    Nk,
}

/// The attributes of a fused gated-linear-unit node.
///
/// Inputs, in order: `x [.., H]`, `w_gate`, `w_up`, then `b_gate` if `gate_bias`, then `b_up`
/// if `up_bias`. The output is `act(x·Wg[:, go..go+I] + bg[go..]) * (x·Wu[:, uo..uo+I] +
/// bu[uo..])` with `I` the last dim of the output, `go`/`uo` the column offsets (non-zero
/// only when one merged gate_up weight is read in two halves; `w_gate` and `w_up` are then the
/// same node).
///
/// The weights are 2-D, one matrix for every row of x; or 3-D, `[P, ·, ·]` beside an x of
/// `[P, H]`: a matrix per row (row `p` of x times matrix `p`, laid out as `layout` says). The
/// latter is a mixture of experts' gated unit, each token-expert pair's expert matrix gathered
/// per pair (Hugging Face's `batched_mm` experts).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusedGateUp {
    /// Activation on the gate projection.
    pub activation: Activation,
    /// Layout of both weights.
    pub layout: Layout,
    /// Whether a gate bias input is present.
    #[serde(default)]
    pub gate_bias: bool,
    /// Whether an up bias input is present.
    #[serde(default)]
    pub up_bias: bool,
    /// First output feature of the gate half within `w_gate` (and `b_gate`).
    #[serde(default)]
    pub gate_offset: u64,
    /// First output feature of the up half within `w_up` (and `b_up`).
    #[serde(default)]
    pub up_offset: u64,
    /// Names of the model nodes this node replaced.
    #[serde(default)]
    pub replaced: Vec<String>,
}

/// Type of the fused unit's output: x's, its last dim the intermediate size (the declared
/// one when given: a merged weight read in two halves; else the gate weight's width).
pub(crate) fn infer(f: &FusedGateUp, ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
    let want = 3 + f.gate_bias as usize + f.up_bias as usize;
    if ins.len() != want {
        return Err(format!("FusedGateUp with these bias flags takes {want} inputs, got {}", ins.len()));
    }
    let (x, wg, wu) = (ins[0], ins[1], ins[2]);
    // As strict as the two MatMuls it replaces: floating-point operands of one dtype, x of
    // rank 2 or more, 2-D weights (below).
    if !x.dtype.is_float() || x.rank() < 2 {
        return Err(format!("x must be a floating-point tensor of rank 2 or more, got {x}"));
    }
    for (w, what) in [(wg, "gate"), (wu, "up")] {
        if w.dtype != x.dtype {
            return Err(format!("the {what} weight is {} but x is {}: operand dtypes must agree", w.dtype, x.dtype));
        }
    }
    let h = x.shape[x.rank() - 1].clone();
    // Weights of rank 3 hold a matrix per row of x (of rank 2 then, its rows as many).
    let per_row = wg.rank() == 3;
    // The output width is the declared one when given (the merged-weight case), else the
    // whole width of the gate weight.
    let width = |w: &TensorType, off: u64, what: &str| -> Result<u64, String> {
        if w.rank() != wg.rank() || !matches!(w.rank(), 2 | 3) {
            return Err(format!("{what} weight must be 2-D (or 3-D, a matrix per row of x, for both), got {w}"));
        }
        if per_row && (x.rank() != 2 || w.shape[0] != x.shape[0]) {
            return Err(format!(
                "the {what} weight {w} holds a matrix per row of x, so x must be [{}, H], got {x}",
                w.shape[0]
            ));
        }
        let m = &w.shape[w.rank() - 2..];
        let (k, n) = match f.layout {
            Layout::Kn => (&m[0], &m[1]),
            Layout::Nk => (&m[1], &m[0]),
        };
        if *k != h {
            return Err(format!(
                "hidden size mismatch: x has {h} features but the {what} weight {w} ({:?} layout) expects {k}",
                f.layout
            ));
        }
        let n = n.fixed().ok_or_else(|| format!("{what} weight must have known dims"))?;
        n.checked_sub(off).ok_or_else(|| format!("{what} offset {off} is past the weight's {n} outputs"))
    };
    if per_row && (f.gate_bias || f.up_bias) {
        return Err("weights with a matrix per row of x take no biases".into());
    }
    let gate_room = width(wg, f.gate_offset, "gate")?;
    let up_room = width(wu, f.up_offset, "up")?;
    let i = match declared {
        [t] => t.shape.last().and_then(Dim::fixed).ok_or("declared output must end in a known dim")?,
        _ => gate_room,
    };
    if i == 0 || i > gate_room || i > up_room {
        return Err(format!(
            "intermediate size {i} does not fit the gate ({gate_room} outputs from offset) and up ({up_room}) weights"
        ));
    }
    let mut k = 3;
    for (present, off, what) in [(f.gate_bias, f.gate_offset, "gate"), (f.up_bias, f.up_offset, "up")] {
        if present {
            let b = ins[k];
            k += 1;
            if b.dtype != x.dtype {
                return Err(format!("the {what} bias is {} but x is {}: operand dtypes must agree", b.dtype, x.dtype));
            }
            let len = (b.rank() == 1).then(|| b.shape[0].fixed()).flatten();
            if !matches!(len, Some(n) if n >= off + i) {
                return Err(format!("{what} bias {b} must be 1-D with at least {} values", off + i));
            }
        }
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank >= 1") = Dim::Fixed(i);
    Ok(vec![TensorType::new(x.dtype, shape)])
}

/// Evaluates the fused unit straight from its definition, with f64 accumulation.
pub(crate) fn eval(
    f: &FusedGateUp,
    ins: &[&Tensor],
    ty: &TensorType,
    shapes: &[Vec<usize>],
) -> Result<Vec<Tensor>, String> {
    Ok(vec![out(ty, &shapes[0], Data::F32(fused_gate_up(f, ins, &shapes[0])?))])
}

/// The fused gated linear unit, straight from its definition: the values of the
/// `out_shape` result.
pub fn fused_gate_up(f: &FusedGateUp, ins: &[&Tensor], out_shape: &[usize]) -> Result<Vec<f32>, String> {
    let (x, wg, wu) = (ins[0], ins[1], ins[2]);
    let (xd, wgd, wud) = (x.floats()?, wg.floats()?, wu.floats()?);
    let h = *x.shape.last().expect("rank >= 1");
    let i_size = *out_shape.last().expect("rank >= 1");
    // Rows from the output's shape: x holds no elements when H is 0, yet has rows.
    let rows: usize = out_shape[..out_shape.len() - 1].iter().product();
    let mut k = 3;
    let mut next_bias = |present: bool| {
        present.then(|| {
            k += 1;
            ins[k - 1]
        })
    };
    let (bg, bu) = (next_bias(f.gate_bias), next_bias(f.up_bias));
    let (bg, bu) = (bg.map(|b| b.floats()).transpose()?, bu.map(|b| b.floats()).transpose()?);
    let w_at = |w: &[f32], cols: usize, kk: usize, n: usize| -> f64 {
        match f.layout {
            Layout::Kn => w[kk * cols + n] as f64,
            Layout::Nk => w[n * cols + kk] as f64,
        }
    };
    // A weight's matrix for row `r`: the whole weight, or its slab `r` where it holds one
    // per row; and the matrix's row length.
    fn slab<'a>(w: &Tensor, d: &'a [f32], r: usize) -> (&'a [f32], usize) {
        let m = &w.shape[w.shape.len() - 2..];
        let size = m[0] * m[1];
        let at = if w.shape.len() == 3 { r * size } else { 0 };
        (&d[at..at + size], m[1])
    }
    if wg.shape.len() == 3 && (wg.shape[0] != rows || wu.shape[0] != rows) {
        return Err(format!("{rows} rows of x against weights {:?} and {:?}: a matrix per row", wg.shape, wu.shape));
    }
    let mut data = vec![0.0f32; rows * i_size];
    for r in 0..rows {
        let xr = &xd[r * h..(r + 1) * h];
        let ((gm, gcols), (um, ucols)) = (slab(wg, wgd, r), slab(wu, wud, r));
        for j in 0..i_size {
            let (gn, un) = (f.gate_offset as usize + j, f.up_offset as usize + j);
            let (mut g, mut u) = (0.0f64, 0.0f64);
            for (kk, &xv) in xr.iter().enumerate() {
                g += xv as f64 * w_at(gm, gcols, kk, gn);
                u += xv as f64 * w_at(um, ucols, kk, un);
            }
            let g = g as f32 + bg.map_or(0.0, |b| b[gn]);
            let u = u as f32 + bu.map_or(0.0, |b| b[un]);
            data[r * i_size + j] = f.activation.apply(g) * u;
        }
    }
    Ok(data)
}

/// Dump label: `FusedGateUp(silu, kn[, bias=gu][, offsets=g/u])`.
pub(crate) fn label(f: &FusedGateUp) -> String {
    let mut s = format!("{NAME}({}, {:?}", f.activation.name(), f.layout).replace("Kn", "kn").replace("Nk", "nk");
    if f.gate_bias || f.up_bias {
        let _ = write!(s, ", bias={}{}", if f.gate_bias { "g" } else { "" }, if f.up_bias { "u" } else { "" });
    }
    if f.gate_offset != 0 || f.up_offset != 0 {
        let _ = write!(s, ", offsets={}/{}", f.gate_offset, f.up_offset);
    }
    s.push(')');
    s
}

/// JSON attributes: the fields of [`FusedGateUp`].
pub(crate) fn write_attrs(f: &FusedGateUp, m: &mut Attrs) {
    if let J::Object(o) = to_json(f) {
        m.extend(o);
    }
}

/// Reads a `FusedGateUp` from its JSON attributes; `None` for another name.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    (name == NAME).then(|| read_attrs::<FusedGateUp>(name, a).map(Op::FusedGateUp))
}
