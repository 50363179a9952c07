//! Elementwise ops of one operand ([`UnaryOp`]), the activations among them, and their scalar
//! definitions ([`scalar`]), which the interpreter evaluates and the GPU kernels are tested
//! against.

use super::{arity, float, read_attrs, Attrs};
use crate::op::Op;
use crate::tensor::Tensor;
use crate::types::TensorType;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Elementwise ops with one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    /// `-x`
    Neg,
    /// `e^x`
    Exp,
    /// `√x`
    Sqrt,
    /// The error function.
    Erf,
    /// Hyperbolic tangent.
    Tanh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
    /// `max(x, 0)`
    Relu,
    /// `x · sigmoid(x)`
    Silu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// Exact GELU, `x · Φ(x)` through erf.
    GeluErf,
}

impl UnaryOp {
    /// Every unary op.
    pub const ALL: [UnaryOp; 10] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sqrt,
        UnaryOp::Erf,
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Silu,
        UnaryOp::GeluTanh,
        UnaryOp::GeluErf,
    ];

    /// The op's name as the JSON format and the dumps spell it (both GELUs are `Gelu`, told
    /// apart by their `approximate` attribute).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "Neg",
            UnaryOp::Exp => "Exp",
            UnaryOp::Sqrt => "Sqrt",
            UnaryOp::Erf => "Erf",
            UnaryOp::Tanh => "Tanh",
            UnaryOp::Sigmoid => "Sigmoid",
            UnaryOp::Relu => "Relu",
            UnaryOp::Silu => "Silu",
            UnaryOp::GeluTanh | UnaryOp::GeluErf => "Gelu",
        }
    }

    /// The op applied to one value.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            UnaryOp::Neg => -x,
            UnaryOp::Exp => x.exp(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Erf => scalar::erf(x),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sigmoid => scalar::sigmoid(x),
            UnaryOp::Relu => scalar::relu(x),
            UnaryOp::Silu => scalar::silu(x),
            UnaryOp::GeluTanh => scalar::gelu_tanh(x),
            UnaryOp::GeluErf => scalar::gelu_erf(x),
        }
    }
}

/// Scalar definitions shared by the interpreter and the WGSL generator's tests.
pub mod scalar {
    /// `1 / (1 + e^-x)`
    pub fn sigmoid(x: f32) -> f32 {
        1.0 / (1.0 + (-x).exp())
    }
    /// `x · sigmoid(x)`
    pub fn silu(x: f32) -> f32 {
        x * sigmoid(x)
    }
    /// GELU, tanh approximation.
    pub fn gelu_tanh(x: f32) -> f32 {
        let k = (2.0f32 / std::f32::consts::PI).sqrt();
        0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())
    }
    /// Exact GELU.
    pub fn gelu_erf(x: f32) -> f32 {
        0.5 * x * (1.0 + erf(x / std::f32::consts::SQRT_2))
    }
    /// The error function, computed in f64 and rounded.
    pub fn erf(x: f32) -> f32 {
        erf64(x as f64) as f32
    }
    /// The error function in f64: its Maclaurin series below 2.5, the continued fraction of
    /// erfc above (both converge to full f64 precision there).
    pub fn erf64(x: f64) -> f64 {
        // Maclaurin series for small |x|, erfc continued fraction beyond.
        let ax = x.abs();
        let r = if ax < 2.5 {
            let mut sum = ax;
            let mut term = ax;
            let x2 = ax * ax;
            // Terms shrink past f64 precision within 60 steps for |x| < 2.5.
            for n in 1..=80 {
                let n = n as f64;
                term *= -x2 / n;
                let add = term / (2.0 * n + 1.0);
                sum += add;
                if add.abs() <= 1e-17 * sum.abs() {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // Lentz continued fraction for erfc.
            let x2 = ax * ax;
            let mut f = ax;
            let tiny = 1e-300;
            let mut c = f;
            let mut d = 0.0;
            for k in 1..200 {
                let a = k as f64 / 2.0;
                d = ax + a * d;
                d = if d.abs() < tiny { tiny } else { d };
                c = ax + a / c;
                c = if c.abs() < tiny { tiny } else { c };
                d = 1.0 / d;
                let delta = c * d;
                f *= delta;
                if (delta - 1.0).abs() < 1e-16 {
                    break;
                }
            }
            1.0 - (-x2).exp() / (f * std::f64::consts::PI.sqrt())
        };
        r.copysign(x)
    }
    /// `max(x, 0)`
    pub fn relu(x: f32) -> f32 {
        x.max(0.0)
    }
}

/// Type of a unary op's output: its operand's, which must be floating-point.
pub(crate) fn infer(u: UnaryOp, ins: &[&TensorType]) -> Result<Vec<TensorType>, String> {
    arity(u.name(), ins, 1)?;
    float(u.name(), ins[0])?;
    Ok(vec![ins[0].clone()])
}

/// Applies `u` to every element.
pub(crate) fn eval(u: UnaryOp, ins: &[&Tensor], shapes: &[Vec<usize>]) -> Result<Vec<Tensor>, String> {
    Ok(vec![Tensor { shape: shapes[0].clone(), data: ins[0].data.iter().map(|&x| u.apply(x)).collect() }])
}

/// Dump label: the name, and which GELU.
pub(crate) fn label(u: UnaryOp) -> String {
    match u {
        UnaryOp::GeluTanh => format!("{}(tanh)", u.name()),
        UnaryOp::GeluErf => format!("{}(erf)", u.name()),
        UnaryOp::Neg
        | UnaryOp::Exp
        | UnaryOp::Sqrt
        | UnaryOp::Erf
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Relu
        | UnaryOp::Silu => u.name().into(),
    }
}

/// JSON attributes: `approximate` for the GELUs.
pub(crate) fn write_attrs(u: UnaryOp, m: &mut Attrs) {
    match u {
        UnaryOp::GeluTanh => {
            m.insert("approximate".into(), json!("tanh"));
        }
        UnaryOp::GeluErf => {
            m.insert("approximate".into(), json!("none"));
        }
        UnaryOp::Neg
        | UnaryOp::Exp
        | UnaryOp::Sqrt
        | UnaryOp::Erf
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Relu
        | UnaryOp::Silu => {}
    }
}

/// Reads a unary op named `name` from its JSON attributes; `None` if `name` is not one.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GeluAttrs {
        #[serde(default = "approximate_none")]
        approximate: String,
    }
    fn approximate_none() -> String {
        "none".into()
    }
    let u = UnaryOp::ALL.into_iter().find(|u| u.name() == name)?;
    Some(match u {
        UnaryOp::GeluTanh | UnaryOp::GeluErf => {
            read_attrs::<GeluAttrs>(name, a).and_then(|g| match g.approximate.as_str() {
                "tanh" => Ok(Op::Unary(UnaryOp::GeluTanh)),
                "none" | "erf" => Ok(Op::Unary(UnaryOp::GeluErf)),
                x => Err(format!("Gelu approximate must be \"tanh\" or \"none\", not {x:?}")),
            })
        }
        // No attributes (other fields are not read).
        UnaryOp::Neg
        | UnaryOp::Exp
        | UnaryOp::Sqrt
        | UnaryOp::Erf
        | UnaryOp::Tanh
        | UnaryOp::Sigmoid
        | UnaryOp::Relu
        | UnaryOp::Silu => Ok(Op::Unary(u)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (-1.5, -0.9661051464753108),
        ] {
            assert!((scalar::erf64(x) - want).abs() < 1e-12, "erf({x}) = {} != {want}", scalar::erf64(x));
        }
    }

    #[test]
    fn every_unary_op_reads_back_from_its_json() {
        for u in UnaryOp::ALL {
            let mut m = Attrs::new();
            write_attrs(u, &mut m);
            assert_eq!(from_json(u.name(), &mut m), Some(Ok(Op::Unary(u))), "{u:?}");
        }
    }
}
