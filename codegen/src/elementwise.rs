//! Elementwise kernels, one thread per output element: unary ops, binary ops with numpy
//! broadcasting, casts; and [`MATH`], the WGSL definitions of the activations every kernel
//! that applies one shares.

use crate::wgsl::{bcast_index, per_element, read, WORKGROUP};
use crate::{dims, packed_f16, KernelKind, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Activation, BinaryOp, DType, Graph, NodeIndex, Result, UnaryOp, Value};

/// WGSL for the activations and helpers kernels share.
pub(crate) const MATH: &str = r#"
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn silu_(x: f32) -> f32 { return x / (1.0 + exp(-x)); }
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
fn erf_(x: f32) -> f32 {
    // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7).
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
    return select(-y, y, x >= 0.0);
}
fn gelu_tanh_(x: f32) -> f32 { return 0.5 * x * (1.0 + tanh_(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
fn gelu_erf_(x: f32) -> f32 { return 0.5 * x * (1.0 + erf_(x * 0.7071067811865476)); }
fn relu_(x: f32) -> f32 { return max(x, 0.0); }
fn round_f16_(x: f32) -> f32 { return unpack2x16float(pack2x16float(vec2<f32>(x, 0.0))).x; }
"#;

/// The WGSL call applying an activation to `x`.
pub(crate) fn act_call(a: Activation, x: &str) -> String {
    format!("{}_({x})", a.name())
}

/// The WGSL of a unary op applied to `x`; `None` for an op with no kernel yet.
fn unary_expr(u: UnaryOp, x: &str) -> Option<String> {
    Some(match u {
        UnaryOp::Neg => format!("-{x}"),
        UnaryOp::Exp => format!("exp({x})"),
        UnaryOp::Sqrt => format!("sqrt({x})"),
        UnaryOp::Erf => format!("erf_({x})"),
        UnaryOp::Tanh => format!("tanh_({x})"),
        UnaryOp::Sigmoid => format!("sigmoid_({x})"),
        UnaryOp::Relu => format!("relu_({x})"),
        UnaryOp::Silu => format!("silu_({x})"),
        UnaryOp::GeluTanh => format!("gelu_tanh_({x})"),
        UnaryOp::GeluErf => format!("gelu_erf_({x})"),
        UnaryOp::Reciprocal
        | UnaryOp::Sin
        | UnaryOp::Cos
        | UnaryOp::Log
        | UnaryOp::Abs
        | UnaryOp::Floor
        | UnaryOp::Ceil
        | UnaryOp::Softplus
        | UnaryOp::Not
        | UnaryOp::IsNaN => return None,
    })
}

/// The WGSL of a binary op applied to `a` and `b`; `None` for an op with no kernel yet.
fn binary_expr(op: BinaryOp, a: &str, b: &str) -> Option<String> {
    Some(match op {
        BinaryOp::Add => format!("{a} + {b}"),
        BinaryOp::Sub => format!("{a} - {b}"),
        BinaryOp::Mul => format!("{a} * {b}"),
        BinaryOp::Div => format!("{a} / {b}"),
        // pow() is undefined for negative bases in WGSL; integral exponents are exact here.
        BinaryOp::Pow => format!("pow_({a}, {b})"),
        BinaryOp::Max
        | BinaryOp::Min
        | BinaryOp::Equal
        | BinaryOp::Less
        | BinaryOp::LessOrEqual
        | BinaryOp::Greater
        | BinaryOp::GreaterOrEqual
        | BinaryOp::And
        | BinaryOp::Or => return None,
    })
}

const POW: &str = r#"
fn pow_(a: f32, b: f32) -> f32 {
    if (b == round(b) && abs(b) <= 16.0) {
        var r = 1.0;
        for (var k = 0; k < i32(abs(b)); k++) { r = r * a; }
        return select(r, 1.0 / r, b < 0.0);
    }
    return pow(a, b);
}
"#;

/// A kernel over `n` output elements whose element `i` is `expr`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_kernel(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    out: Value,
    n: usize,
    expr: &str,
    t: &Target,
) -> Result<KernelSource> {
    let body =
        format!("    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {n}u) {{ return; }}\n    out0[i] = {expr};\n");
    per_element(g, name, kind, ins, out, n, &format!("{MATH}{POW}"), &body, t)
}

/// The kernel of a unary op; `None` for an op with no kernel yet.
pub(crate) fn unary(g: &Graph, n: NodeIndex, u: UnaryOp, b: &Bindings, t: &Target) -> Result<Option<KernelSource>> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let total: usize = dims(g, out, b)?.iter().product();
    let Some(e) = unary_expr(u, &read("in0", "i", packed_f16(g, ins[0]))) else { return Ok(None) };
    map_kernel(g, g.node(n).name.clone(), KernelKind::Elementwise, &ins, out, total, &e, t).map(Some)
}

/// The kernel of a binary op, its operands broadcast to the output; `None` for an op with
/// no kernel yet.
pub(crate) fn binary(g: &Graph, n: NodeIndex, op: BinaryOp, b: &Bindings, t: &Target) -> Result<Option<KernelSource>> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let (a, c) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
    let e = binary_expr(
        op,
        &read("in0", &bcast_index(&od, &a, "i"), packed_f16(g, ins[0])),
        &read("in1", &bcast_index(&od, &c, "i"), packed_f16(g, ins[1])),
    );
    let Some(e) = e else { return Ok(None) };
    map_kernel(g, g.node(n).name.clone(), KernelKind::Elementwise, &ins, out, total, &e, t).map(Some)
}

/// The kernel of a cast (to f16: rounded, and held as f32).
pub(crate) fn cast(g: &Graph, n: NodeIndex, to: DType, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let total: usize = dims(g, out, b)?.iter().product();
    let x = read("in0", "i", packed_f16(g, ins[0]));
    let e = if to == DType::F16 { format!("round_f16_({x})") } else { x };
    map_kernel(g, g.node(n).name.clone(), KernelKind::Cast, &ins, out, total, &e, t)
}
