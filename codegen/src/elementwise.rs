//! Elementwise kernels, one thread per output element: unary ops, binary ops with numpy
//! broadcasting, `Where`, casts between every pair of dtypes (and the expressions of each, which
//! `program.rs` strings together); and [`MATH`], the WGSL
//! definitions of the activations and helpers every kernel that applies one shares.
//!
//! Values are read in their storage type ([`Store`]): f32 (packed f16 weights widened), i32
//! for i64 and i32, u32 0/1 for bool. i32 arithmetic wraps at 32 bits, as the interpreter's
//! does; i64 arithmetic is 32-bit too, and a result that would not fit is a run-time error
//! (the `add_`/`sub_`/`mul_` helpers), as is an integer division by zero.

use crate::wgsl::{bcast_index, checked_int_math, kernel, load, Store, WORKGROUP};
use crate::{dims, Check, CheckKind, KernelKind, KernelSource, Target};
use glufuse_ir::ops::binary::BinaryKind;
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
fn round_f16_(x: f32) -> f32 {
    // The nearest f16 (ties to even, past 65504 infinity), on the bits: a driver may fold a
    // pack2x16float/unpack2x16float pair away (the H100's did: casts to f16 rounded nothing).
    let b = bitcast<u32>(x);
    let e = (b >> 23u) & 0xffu;
    if (e == 0xffu) { return x; }
    if (e < 113u) {
        // Below 2^-14: f16 subnormals, multiples of 2^-24 (`round` takes ties to even).
        return round(x * 16777216.0) * 5.9604644775390625e-8;
    }
    let r = (b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u;
    if (((r >> 23u) & 0xffu) > 142u) { return bitcast<f32>((b & 0x80000000u) | 0x7f800000u); }
    return bitcast<f32>(r);
}
"#;

/// WGSL of the float helpers past the activations: sine and cosine with the argument reduced
/// modulo 2π first (Cody-Waite, two constants: drivers' `sin` loses accuracy far from 0, and
/// rotary embeddings take it of positions times frequencies), softplus, NaN-propagating max
/// and min (as ONNX and the interpreter give them), and integer powers by repeated products
/// (`pow()` is undefined for negative bases in WGSL). NaN is tested on the bits (`isnan_`):
/// WGSL lets a compiler assume floats are finite, and lavapipe folds `x != x` to false.
const FLOAT_MATH: &str = r#"
fn f16_bits_(x: f32) -> u32 {
    // The bits of the f16 nearest x, as round_f16_ rounds (NaN stays NaN): pack2x16float
    // leaves the rounding to the implementation, and its result past f16's range undefined.
    let r = round_f16_(x);
    let b = bitcast<u32>(r);
    let s = (b >> 16u) & 0x8000u;
    let e = (b >> 23u) & 0xffu;
    if (e == 0xffu) { return s | 0x7c00u | select(0u, 0x200u, (b & 0x7fffffu) != 0u); }
    if (e < 113u) { return s | u32(abs(r) * 16777216.0); }
    return s | ((e - 112u) << 10u) | ((b >> 13u) & 0x3ffu);
}
fn pack_f16_(a: f32, b: f32) -> u32 { return f16_bits_(a) | (f16_bits_(b) << 16u); }
fn reduce_2pi_(x: f32) -> f32 {
    let k = round(x * 0.15915494309189535);
    return (x - k * 6.28125) - k * 0.0019353071795864769;
}
fn sin_(x: f32) -> f32 { return sin(reduce_2pi_(x)); }
fn cos_(x: f32) -> f32 { return cos(reduce_2pi_(x)); }
// Reduced modulo π/2 (π/2 in three parts) to |r| ≤ π/4, where a polynomial holds to f32
// precision (Cephes' tanf); an odd quarter turn away, -1/tan(r). (sin/cos of NVIDIA's driver
// are accurate to about 4e-7 absolutely, which near a pole is far from the tangent.)
fn tan_(x: f32) -> f32 {
    let j = round(x * 0.63661977);
    let r = ((x - j * 1.5703125) - j * 4.8375130e-4) - j * 7.5497900e-8;
    let z = r * r;
    let p = ((((((9.38540185543e-3 * z + 3.11992232697e-3) * z + 2.44301354525e-2) * z
        + 5.34112807005e-2) * z + 1.33387994085e-1) * z + 3.33331568548e-1) * z) * r + r;
    if (abs(j % 2.0) == 1.0) { return -1.0 / p; }
    return p;
}
// (Through atan: llvmpipe's asin is 7.8e-5 off at 0.999, its acos 1.6e-4 at -0.3.)
fn asin_(x: f32) -> f32 {
    if (!(abs(x) <= 1.0)) { return bitcast<f32>(0x7fc00000u); }
    return atan(x / sqrt((1.0 - x) * (1.0 + x)));
}
fn acos_(x: f32) -> f32 { return 1.5707964 - asin_(x); }
fn atan_(x: f32) -> f32 { if (isnan_(x)) { return x; } return atan(x); }
fn sinh_(x: f32) -> f32 {
    let a = abs(x);
    var r = a * (1.0 + a * a * (0.16666667 + a * a * 0.008333334));
    if (a >= 0.5) { r = exp(a - 0.6931472) - 0.5 * exp(-a); }
    return select(r, -r, x < 0.0);
}
fn cosh_(x: f32) -> f32 { let a = abs(x); return exp(a - 0.6931472) + 0.5 * exp(-a); }
fn asinh_(x: f32) -> f32 {
    let a = abs(x);
    var r = log(a + sqrt(a * a + 1.0));
    if (a > 1e18) { r = log(a) + 0.6931472; }
    return select(r, -r, x < 0.0);
}
fn acosh_(x: f32) -> f32 {
    if (!(x >= 1.0)) { return bitcast<f32>(0x7fc00000u); }
    if (x > 1e18) { return log(x) + 0.6931472; }
    return log(x + sqrt(x * x - 1.0));
}
fn atanh_(x: f32) -> f32 {
    if (!(abs(x) <= 1.0)) { return bitcast<f32>(0x7fc00000u); }
    return 0.5 * log((1.0 + x) / (1.0 - x));
}
fn softplus_(x: f32) -> f32 {
    if (x > 20.0) { return x; }
    if (x < -15.0) { return exp(x); }
    return log(1.0 + exp(x));
}
fn isnan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn isinf_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
fn fmod_(a: f32, b: f32) -> f32 {
    // C's fmod, exactly (WGSL's `%` is a - b·trunc(a/b), off once a/b passes 2^24): |b|
    // times powers of two subtracted from |a| by long division, each difference exact.
    let d = abs(b);
    var r = abs(a);
    if (isnan_(a) || isnan_(b) || isinf_(a) || d == 0.0) { return bitcast<f32>(0x7fc00000u); }
    if (r < d) { return a; }
    var t = ldexp(d, frexp(r).exp - frexp(d).exp);
    if (t > r) { t = t * 0.5; }
    loop {
        if (r >= t) { r = r - t; }
        if (t <= d) { break; }
        t = t * 0.5;
    }
    return select(r, -r, a < 0.0);
}
fn maxf_(a: f32, b: f32) -> f32 { if (isnan_(a) || isnan_(b)) { return bitcast<f32>(0x7fc00000u); } return max(a, b); }
fn minf_(a: f32, b: f32) -> f32 { if (isnan_(a) || isnan_(b)) { return bitcast<f32>(0x7fc00000u); } return min(a, b); }
fn pow_(a: f32, b: f32) -> f32 {
    if (b == round(b) && abs(b) <= 16.0) {
        var r = 1.0;
        for (var k = 0; k < i32(abs(b)); k++) { r = r * a; }
        return select(r, 1.0 / r, b < 0.0);
    }
    return pow(a, b);
}
"#;

/// The WGSL functions of [`MATH`] and [`FLOAT_MATH`] that `code` calls, with those they call
/// in turn (a kernel declares only what it uses).
pub(crate) fn helpers_for(code: &str) -> String {
    helpers_in(code, true)
}

/// [`helpers_for`] without [`MATH`]'s own functions (for a kernel that declares all of
/// `MATH`).
pub(crate) fn helpers_beyond_math(code: &str) -> String {
    helpers_in(code, false)
}

fn helpers_in(code: &str, with_math: bool) -> String {
    let mut fns: Vec<(String, String)> = vec![];
    let math_names: Vec<String> =
        MATH.split("\nfn ").skip(1).map(|p| p.split('(').next().unwrap_or_default().to_string()).collect();
    for part in format!("{MATH}{FLOAT_MATH}").split("\nfn ").skip(1) {
        let name = part.split('(').next().unwrap_or_default().to_string();
        if !with_math && math_names.contains(&name) {
            continue;
        }
        fns.push((format!("{name}("), format!("fn {}\n", part.trim_end())));
    }
    let mut used = vec![false; fns.len()];
    let mut text = code.to_string();
    loop {
        let mut grew = false;
        for (i, (call, def)) in fns.iter().enumerate() {
            if !used[i] && text.contains(call.as_str()) {
                used[i] = true;
                text.push_str(def);
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    fns.iter().zip(&used).filter(|(_, &u)| u).map(|((_, def), _)| def.as_str()).collect()
}

/// The WGSL call applying an activation to `x`.
pub(crate) fn act_call(a: Activation, x: &str) -> String {
    format!("{}_({x})", a.name())
}

/// The run-time checks one elementwise kernel makes, numbered in the order first asked for.
pub(crate) struct Sites {
    node: String,
    pub(crate) checks: Vec<Check>,
}

impl Sites {
    pub(crate) fn new(node: &str) -> Sites {
        Sites { node: node.to_string(), checks: vec![] }
    }

    /// The site number of a check of `kind`, added if new.
    pub(crate) fn site(&mut self, kind: CheckKind) -> usize {
        if let Some(i) = self.checks.iter().position(|c| c.kind == kind) {
            return i + 1;
        }
        self.checks.push(Check { node: self.node.clone(), kind });
        self.checks.len()
    }

    /// The prelude the checks need (the overflow-checked arithmetic and the division).
    pub(crate) fn prelude(&self) -> String {
        let mut p = String::new();
        for (i, c) in self.checks.iter().enumerate() {
            match c.kind {
                CheckKind::Overflow => p.push_str(&checked_int_math(i + 1)),
                CheckKind::DivisionByZero => p.push_str(&format!(
                    "fn div_(a: i32, b: i32, at: u32) -> i32 {{\n    if (b == 0i) {{ fail_({k}u, a, at); return 0i; }}\n    return a / b;\n}}\nfn rem_(a: i32, b: i32, at: u32) -> i32 {{\n    if (b == 0i) {{ fail_({k}u, a, at); return 0i; }}\n    return a % b;\n}}\nfn mod_(a: i32, b: i32, at: u32) -> i32 {{\n    let r = rem_(a, b, at);\n    return select(r, r + b, r != 0i && ((r < 0i) != (b < 0i)));\n}}\n",
                    k = i + 1
                )),
                CheckKind::Index { .. } | CheckKind::Duplicate { .. } => {}
            }
        }
        p
    }
}

/// The WGSL of a unary op applied to `x`, an element of `store`, for output element `i`.
pub(crate) fn unary_expr(u: UnaryOp, x: &str, store: Store, dtype: DType, sites: &mut Sites) -> String {
    let int = store == Store::I32;
    let checked = dtype == DType::I64;
    match u {
        UnaryOp::Neg if int && checked => {
            sites.site(CheckKind::Overflow);
            format!("sub_(0i, {x}, i)")
        }
        UnaryOp::Abs if int && checked => {
            sites.site(CheckKind::Overflow);
            format!("select({x}, sub_(0i, {x}, i), {x} < 0i)")
        }
        UnaryOp::Neg => format!("-({x})"),
        UnaryOp::Abs => format!("abs({x})"),
        UnaryOp::Exp => format!("exp({x})"),
        UnaryOp::Sqrt => format!("sqrt({x})"),
        UnaryOp::Erf => format!("erf_({x})"),
        UnaryOp::Tanh => format!("tanh_({x})"),
        UnaryOp::Sigmoid => format!("sigmoid_({x})"),
        UnaryOp::Relu => format!("relu_({x})"),
        UnaryOp::Silu => format!("silu_({x})"),
        UnaryOp::GeluTanh => format!("gelu_tanh_({x})"),
        UnaryOp::GeluErf => format!("gelu_erf_({x})"),
        UnaryOp::Reciprocal => format!("1.0 / ({x})"),
        UnaryOp::Sin => format!("sin_({x})"),
        UnaryOp::Cos => format!("cos_({x})"),
        UnaryOp::Tan => format!("tan_({x})"),
        UnaryOp::Asin => format!("asin_({x})"),
        UnaryOp::Acos => format!("acos_({x})"),
        UnaryOp::Atan => format!("atan_({x})"),
        UnaryOp::Sinh => format!("sinh_({x})"),
        UnaryOp::Cosh => format!("cosh_({x})"),
        UnaryOp::Asinh => format!("asinh_({x})"),
        UnaryOp::Acosh => format!("acosh_({x})"),
        UnaryOp::Atanh => format!("atanh_({x})"),
        UnaryOp::Log => format!("log({x})"),
        UnaryOp::Floor => format!("floor({x})"),
        UnaryOp::Ceil => format!("ceil({x})"),
        // (WGSL's `round` takes halves to even, as ONNX's.)
        UnaryOp::Round => format!("round({x})"),
        UnaryOp::Softplus => format!("softplus_({x})"),
        UnaryOp::Not => format!("1u - ({x})"),
        UnaryOp::IsNaN => format!("select(0u, 1u, isnan_({x}))"),
        UnaryOp::IsInf => format!("select(0u, 1u, isinf_({x}))"),
        UnaryOp::IsPosInf => format!("select(0u, 1u, bitcast<u32>({x}) == 0x7f800000u)"),
        UnaryOp::IsNegInf => format!("select(0u, 1u, bitcast<u32>({x}) == 0xff800000u)"),
    }
}

/// The WGSL of a binary op applied to `a` and `b`, elements of `store` of the operands'
/// `dtype`, for output element `i`.
pub(crate) fn binary_expr(op: BinaryOp, a: &str, b: &str, store: Store, dtype: DType, sites: &mut Sites) -> String {
    let int = store == Store::I32;
    let checked = dtype == DType::I64;
    let cmp = |o: &str| format!("select(0u, 1u, ({a}) {o} ({b}))");
    match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul if int && checked => {
            sites.site(CheckKind::Overflow);
            let f = match op {
                BinaryOp::Add => "add_",
                BinaryOp::Sub => "sub_",
                _ => "mul_",
            };
            format!("{f}({a}, {b}, i)")
        }
        BinaryOp::Div if int => {
            sites.site(CheckKind::DivisionByZero);
            format!("div_({a}, {b}, i)")
        }
        BinaryOp::Mod | BinaryOp::FMod if int => {
            sites.site(CheckKind::DivisionByZero);
            let f = if op == BinaryOp::Mod { "mod_" } else { "rem_" };
            format!("{f}({a}, {b}, i)")
        }
        BinaryOp::FMod => format!("fmod_({a}, {b})"),
        // (Floats do not take it: type inference refuses them.)
        BinaryOp::Mod => format!("{a} - {b} * floor({a} / {b})"),
        // Operands are element reads: no parentheses needed.
        BinaryOp::Add => format!("{a} + {b}"),
        BinaryOp::Sub => format!("{a} - {b}"),
        BinaryOp::Mul => format!("{a} * {b}"),
        BinaryOp::Div => format!("{a} / {b}"),
        BinaryOp::Pow => format!("pow_({a}, {b})"),
        BinaryOp::Max if int => format!("max({a}, {b})"),
        BinaryOp::Min if int => format!("min({a}, {b})"),
        BinaryOp::Max => format!("maxf_({a}, {b})"),
        BinaryOp::Min => format!("minf_({a}, {b})"),
        BinaryOp::Equal => cmp("=="),
        BinaryOp::Less => cmp("<"),
        BinaryOp::LessOrEqual => cmp("<="),
        BinaryOp::Greater => cmp(">"),
        BinaryOp::GreaterOrEqual => cmp(">="),
        BinaryOp::And => format!("({a}) & ({b})"),
        BinaryOp::Or => format!("({a}) | ({b})"),
    }
}

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
    map_kernel_checked(g, name, kind, ins, out, n, expr, Sites::new(""), t)
}

/// [`map_kernel`] with the run-time checks `sites` (and the float helpers when the output or
/// an input is a float).
#[allow(clippy::too_many_arguments)]
fn map_kernel_checked(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    out: Value,
    n: usize,
    expr: &str,
    sites: Sites,
    t: &Target,
) -> Result<KernelSource> {
    map_kernel_lets(g, name, kind, ins, out, n, "", expr, sites, t)
}

/// [`map_kernel_checked`] with statements `lets` before the output element is written
/// (an elementwise program's steps).
#[allow(clippy::too_many_arguments)]
pub(crate) fn map_kernel_lets(
    g: &Graph,
    name: String,
    kind: KernelKind,
    ins: &[Value],
    out: Value,
    n: usize,
    lets: &str,
    expr: &str,
    sites: Sites,
    t: &Target,
) -> Result<KernelSource> {
    let body = format!(
        "    let i = gid * {WORKGROUP}u + lid;\n    if (i >= {n}u) {{ return; }}\n{lets}    out0[i] = {expr};\n"
    );
    let mut prelude = sites.prelude();
    prelude.push_str(&helpers_for(&format!("{lets}{expr}\n{prelude}")));
    let groups = (n as u64).div_ceil(WORKGROUP as u64);
    kernel(g, name, kind, ins, out, groups, WORKGROUP, &prelude, &body, sites.checks, t)
}

/// The kernel of a unary op.
pub(crate) fn unary(g: &Graph, n: NodeIndex, u: UnaryOp, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let total: usize = dims(g, out, b)?.iter().product();
    let name = g.node(n).name.clone();
    let mut sites = Sites::new(&name);
    let s = Store::of(g, ins[0]);
    let e = unary_expr(u, &load("in0", "i", s), s, g.ty(ins[0]).dtype, &mut sites);
    map_kernel_checked(g, name, KernelKind::Elementwise, &ins, out, total, &e, sites, t)
}

/// The kernel of a binary op, its operands broadcast to the output.
pub(crate) fn binary(g: &Graph, n: NodeIndex, op: BinaryOp, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let (a, c) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
    let name = g.node(n).name.clone();
    let mut sites = Sites::new(&name);
    let (sa, sc) = (Store::of(g, ins[0]), Store::of(g, ins[1]));
    // Both operands have one dtype: a packed weight reads as f32 like any float.
    let store = if op.kind() == BinaryKind::Logic { Store::Bool } else { Store::of_dtype(g.ty(ins[0]).dtype) };
    let e = binary_expr(
        op,
        &load("in0", &bcast_index(&od, &a, "i"), sa),
        &load("in1", &bcast_index(&od, &c, "i"), sc),
        store,
        g.ty(ins[0]).dtype,
        &mut sites,
    );
    map_kernel_checked(g, name, KernelKind::Elementwise, &ins, out, total, &e, sites, t)
}

/// The kernel of a `Where`: condition, x and y broadcast to the output.
pub(crate) fn where_(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let r = |k: usize| -> Result<String> {
        Ok(load(&format!("in{k}"), &bcast_index(&od, &dims(g, ins[k], b)?, "i"), Store::of(g, ins[k])))
    };
    let e = format!("select({}, {}, {} != 0u)", r(2)?, r(1)?, r(0)?);
    map_kernel(g, g.node(n).name.clone(), KernelKind::Where, &ins, out, total, &e, t)
}

/// The kernel of a cast, between any two dtypes, as ONNX (and the interpreter) casts: to f16
/// rounded and held as f32; float to integer truncated toward zero, NaN to 0, to i32
/// saturated (to i64 a value past 32 bits is a run-time error); to bool `!= 0`.
pub(crate) fn cast(g: &Graph, n: NodeIndex, to: DType, b: &Bindings, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let total: usize = dims(g, out, b)?.iter().product();
    let name = g.node(n).name.clone();
    let mut sites = Sites::new(&name);
    let s = Store::of(g, ins[0]);
    let e = cast_expr(&load("in0", "i", s), s, to, &mut sites);
    map_kernel_checked(g, name, KernelKind::Cast, &ins, out, total, &e, sites, t)
}

/// The WGSL of a cast of `x`, an element stored as `s`, to `to` (see [`cast`]), for output
/// element `i`.
pub(crate) fn cast_expr(x: &str, s: Store, to: DType, sites: &mut Sites) -> String {
    let x = x.to_string();
    let as_f32 = match s {
        Store::F32 | Store::PackedF16 => x.clone(),
        Store::I32 | Store::Bool => format!("f32({x})"),
    };
    match (s, to) {
        (_, DType::F32) => as_f32,
        (_, DType::F16) => format!("round_f16_({as_f32})"),
        (Store::F32 | Store::PackedF16, DType::I32) => {
            format!("select(i32(clamp({x}, -2147483648.0, 2147483520.0)), 0i, isnan_({x}))")
        }
        (Store::F32 | Store::PackedF16, DType::I64) => {
            sites.site(CheckKind::Overflow);
            format!("cast_i64_({x}, i)")
        }
        (Store::I32, DType::I64 | DType::I32) => x,
        (Store::Bool, DType::I64 | DType::I32) => format!("i32({x})"),
        // NaN is true, as in ONNX.
        (Store::F32 | Store::PackedF16, DType::Bool) => format!("select(0u, 1u, {x} != 0.0 || isnan_({x}))"),
        (Store::I32, DType::Bool) => format!("select(0u, 1u, ({x}) != 0i)"),
        (Store::Bool, DType::Bool) => x,
    }
}
