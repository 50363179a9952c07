//! The CPU reference interpreter: the oracle for the fusion pass and the GPU runtime.
//!
//! Plain loops, f32 values, f64 accumulation in matrix products. It favours being obviously
//! right over being fast. Symbolic dims are bound from the shapes of the inputs it is given.

use crate::ir::*;
use crate::shape::{bind, concrete, Bindings};
use crate::tensor::{round_f16, strides, weight_values, Tensor};
use crate::{Error, Result};
use std::collections::HashMap;

/// Seeded inputs for every graph input (symbols bound by `b`), uniform in [-1, 1).
pub fn seeded_inputs(g: &Graph, b: &Bindings, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (i, n) in g.input_nodes().into_iter().enumerate() {
        let node = g.node(n);
        let shape = concrete(&node.outputs[0].shape, b).map_err(|m| Error::graph(&node.name, m))?;
        out.insert(node.name.clone(), Tensor::random(shape, seed.wrapping_add(i as u64), 1.0));
    }
    Ok(out)
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

/// Applies an activation.
pub fn activate(a: Activation, x: f32) -> f32 {
    match a {
        Activation::Silu => scalar::silu(x),
        Activation::GeluTanh => scalar::gelu_tanh(x),
        Activation::GeluErf => scalar::gelu_erf(x),
        Activation::Relu => scalar::relu(x),
    }
}

fn unary(op: UnaryOp, x: f32) -> f32 {
    match op {
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

fn binary(op: BinaryOp, a: f32, b: f32) -> f32 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
    }
}

/// Maps each output index to the index of an input broadcast to `out` shape.
fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let off = out.len() - inp.len();
    let is = strides(inp);
    let os = strides(out);
    (0..n)
        .map(|i| {
            let mut j = 0;
            for (d, &sz) in inp.iter().enumerate() {
                let coord = (i / os[d + off]) % out[d + off];
                if sz != 1 {
                    j += coord * is[d];
                }
            }
            j
        })
        .collect()
}

/// Numpy matmul of `[.., M, K]` by `[.., K, N]` (batch dims broadcast), f64 accumulation.
pub fn matmul(a: &Tensor, b: &Tensor, out_shape: &[usize]) -> Tensor {
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k, n) = (a.shape[ra - 2], a.shape[ra - 1], b.shape[rb - 1]);
    let batch_out = &out_shape[..out_shape.len() - 2];
    let nb: usize = batch_out.iter().product();
    let ia = broadcast_index(batch_out, &a.shape[..ra - 2]);
    let ib = broadcast_index(batch_out, &b.shape[..rb - 2]);
    let mut data = vec![0.0f32; nb * m * n];
    for bi in 0..nb {
        let (ao, bo) = (ia[bi] * m * k, ib[bi] * k * n);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for p in 0..k {
                    acc += a.data[ao + i * k + p] as f64 * b.data[bo + p * n + j] as f64;
                }
                data[bi * m * n + i * n + j] = acc as f32;
            }
        }
    }
    Tensor { shape: out_shape.to_vec(), data }
}

/// Generic axis permutation.
pub fn transpose(t: &Tensor, perm: &[usize]) -> Tensor {
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let is = strides(&t.shape);
    let os = strides(&shape);
    let data = (0..t.numel())
        .map(|i| {
            let mut j = 0;
            for (d, &p) in perm.iter().enumerate() {
                j += ((i / os[d]) % shape[d]) * is[p];
            }
            t.data[j]
        })
        .collect();
    Tensor { shape, data }
}

/// `t[.., start..end, ..]` along `axis`.
pub fn slice(t: &Tensor, axis: usize, start: usize, end: usize) -> Tensor {
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let d = t.shape[axis];
    let mut data = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        data.extend_from_slice(&t.data[(o * d + start) * inner..(o * d + end) * inner]);
    }
    let mut shape = t.shape.clone();
    shape[axis] = end - start;
    Tensor { shape, data }
}

/// The fused gated linear unit, straight from its definition.
pub fn fused_gate_up(f: &FusedGateUp, ins: &[&Tensor], out_shape: &[usize]) -> Tensor {
    let (x, wg, wu) = (ins[0], ins[1], ins[2]);
    let h = *x.shape.last().expect("rank >= 1");
    let i_size = *out_shape.last().expect("rank >= 1");
    let rows = x.numel() / h.max(1);
    let mut k = 3;
    let mut next_bias = |present: bool| {
        present.then(|| {
            k += 1;
            ins[k - 1]
        })
    };
    let (bg, bu) = (next_bias(f.gate_bias), next_bias(f.up_bias));
    let w_at = |w: &Tensor, kk: usize, n: usize| -> f64 {
        match f.layout {
            Layout::Kn => w.data[kk * w.shape[1] + n] as f64,
            Layout::Nk => w.data[n * w.shape[1] + kk] as f64,
        }
    };
    let mut data = vec![0.0f32; rows * i_size];
    for r in 0..rows {
        let xr = &x.data[r * h..(r + 1) * h];
        for j in 0..i_size {
            let (gn, un) = (f.gate_offset as usize + j, f.up_offset as usize + j);
            let (mut g, mut u) = (0.0f64, 0.0f64);
            for (kk, &xv) in xr.iter().enumerate() {
                g += xv as f64 * w_at(wg, kk, gn);
                u += xv as f64 * w_at(wu, kk, un);
            }
            let g = g as f32 + bg.map_or(0.0, |b| b.data[gn]);
            let u = u as f32 + bu.map_or(0.0, |b| b.data[un]);
            data[r * i_size + j] = activate(f.activation, g) * u;
        }
    }
    Tensor { shape: out_shape.to_vec(), data }
}

/// Runs the graph on the CPU. `inputs` maps input names to tensors; weights come from the
/// graph (random fills are generated, shape-only weights are zeros). Returns every graph
/// output in order.
pub fn run(g: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
    let order = g.topo_order()?;
    let mut b = Bindings::new();
    for n in g.input_nodes() {
        let node = g.node(n);
        let t = inputs
            .get(&node.name)
            .ok_or_else(|| Error::graph(&node.name, "no value was given for this graph input"))?;
        bind(&node.outputs[0], &t.shape, &mut b).map_err(|m| Error::graph(&node.name, m))?;
    }
    let mut vals: HashMap<Value, Tensor> = HashMap::new();
    // Free each value after its last use to keep memory flat on deep graphs.
    let mut uses: HashMap<Value, usize> = HashMap::new();
    for &n in &order {
        for v in g.inputs(n) {
            *uses.entry(v).or_default() += 1;
        }
    }
    for &n in &order {
        let node = g.node(n);
        let ins_v = g.inputs(n);
        let ins: Vec<&Tensor> = ins_v.iter().map(|v| &vals[v]).collect();
        let shapes: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|t| concrete(&t.shape, &b))
            .collect::<std::result::Result<_, _>>()
            .map_err(|m| Error::graph(&node.name, m))?;
        let out: Vec<Tensor> = match &node.op {
            Op::Input => vec![inputs[&node.name].clone()],
            Op::Weight(_) | Op::Constant(_) => vec![weight_values(node)],
            Op::MatMul => vec![matmul(ins[0], ins[1], &shapes[0])],
            Op::Unary(u) => {
                vec![Tensor { shape: shapes[0].clone(), data: ins[0].data.iter().map(|&x| unary(*u, x)).collect() }]
            }
            Op::Binary(op) => {
                let ia = broadcast_index(&shapes[0], &ins[0].shape);
                let ib = broadcast_index(&shapes[0], &ins[1].shape);
                let data = ia.iter().zip(&ib).map(|(&i, &j)| binary(*op, ins[0].data[i], ins[1].data[j])).collect();
                vec![Tensor { shape: shapes[0].clone(), data }]
            }
            Op::Transpose { perm } => vec![transpose(ins[0], perm)],
            Op::Reshape { .. } => vec![Tensor { shape: shapes[0].clone(), data: ins[0].data.clone() }],
            Op::Split { axis, sizes } => {
                let ax = crate::shape::norm_axis(*axis, ins[0].shape.len()).expect("verified");
                let mut start = 0;
                sizes
                    .iter()
                    .map(|&s| {
                        let t = slice(ins[0], ax, start, start + s as usize);
                        start += s as usize;
                        t
                    })
                    .collect()
            }
            Op::Slice { axis, start, end } => {
                let ax = crate::shape::norm_axis(*axis, ins[0].shape.len()).expect("verified");
                vec![slice(ins[0], ax, *start as usize, *end as usize)]
            }
            Op::Concat { axis } => {
                let ax = crate::shape::norm_axis(*axis, shapes[0].len()).expect("verified");
                let outer: usize = shapes[0][..ax].iter().product();
                let mut data = Vec::with_capacity(shapes[0].iter().product());
                for o in 0..outer {
                    for t in &ins {
                        let chunk: usize = t.shape[ax..].iter().product();
                        data.extend_from_slice(&t.data[o * chunk..(o + 1) * chunk]);
                    }
                }
                vec![Tensor { shape: shapes[0].clone(), data }]
            }
            Op::Cast { to } => {
                let mut data = ins[0].data.clone();
                if *to == DType::F16 {
                    round_f16(&mut data);
                }
                vec![Tensor { shape: shapes[0].clone(), data }]
            }
            Op::FusedGateUp(f) => vec![fused_gate_up(f, &ins, &shapes[0])],
            Op::Opaque { op_type, .. } => {
                return Err(Error::graph(&node.name, format!("opaque op '{op_type}' cannot be executed")))
            }
        };
        for (i, t) in out.into_iter().enumerate() {
            vals.insert(Value { node: n, output: i }, t);
        }
        for v in ins_v {
            let u = uses.get_mut(&v).expect("counted");
            *u -= 1;
            if *u == 0 && !g.is_output(v) {
                vals.remove(&v);
            }
        }
    }
    Ok(g.outputs.iter().map(|v| vals[v].clone()).collect())
}

/// Max absolute and relative error between two tensors (relative to the reference's scale).
pub fn compare(got: &Tensor, want: &Tensor) -> (f64, f64) {
    let scale = want.data.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs())).max(1e-6);
    let mut abs = 0.0f64;
    for (a, b) in got.data.iter().zip(&want.data) {
        abs = abs.max((*a as f64 - *b as f64).abs());
    }
    (abs, abs / scale)
}

/// Relative tolerance of GPU against interpreter: f32 math on both sides, so differences
/// come from summation order and transcendental functions; f16 graphs round more.
pub fn check_tolerance(g: &Graph) -> f64 {
    let f16 = g.g.node_indices().any(|n| g.node(n).outputs.iter().any(|t| t.dtype == DType::F16));
    if f16 {
        2e-3
    } else {
        1e-4
    }
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
    fn transpose_and_slice() {
        let t = Tensor::new(vec![2, 3], vec![0., 1., 2., 3., 4., 5.]).unwrap();
        assert_eq!(transpose(&t, &[1, 0]).data, vec![0., 3., 1., 4., 2., 5.]);
        assert_eq!(slice(&t, 1, 1, 3).data, vec![1., 2., 4., 5.]);
    }
}
