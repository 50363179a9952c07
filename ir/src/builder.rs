//! [`GraphBuilder`]: the Rust way to write a graph. Each method adds one node, infers its
//! output type and returns the value it produces; the first error is kept and returned by
//! [`GraphBuilder::finish`], so a chain of calls needs no `?` at each step.

use crate::{
    shape_of, BinaryOp, ConstValues, DType, Dim, Graph, Layout, Op, QuantWeight, Shape, TensorType, UnaryOp, Value,
    WeightInit,
};
use crate::{Error, Result};

/// Builds a [`Graph`] node by node.
#[derive(Default)]
pub struct GraphBuilder {
    g: Graph,
    err: Option<Error>,
    next_seed: u64,
}

impl GraphBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node with an explicit op; outputs are inferred (`declared` for sources/opaque).
    pub fn node(&mut self, name: &str, op: Op, inputs: &[Value], declared: Vec<TensorType>) -> Vec<Value> {
        if self.err.is_some() {
            return vec![Value::of(Default::default()); declared.len().max(1)];
        }
        let tys: Vec<&TensorType> = inputs.iter().map(|&v| self.g.ty(v)).collect();
        let res = op.infer(&tys, &declared).map_err(|m| Error::graph(name, m)).and_then(|outs| {
            let n = outs.len();
            self.g.add_node(name, op, inputs, outs).map(|idx| (idx, n))
        });
        match res {
            Ok((idx, n)) => (0..n).map(|output| Value { node: idx, output }).collect(),
            Err(e) => {
                self.err = Some(e);
                vec![Value::of(Default::default()); declared.len().max(1)]
            }
        }
    }

    fn one(&mut self, name: &str, op: Op, inputs: &[Value]) -> Value {
        self.node(name, op, inputs, vec![])[0]
    }

    /// A graph input.
    pub fn input(&mut self, name: &str, dtype: DType, shape: Shape) -> Value {
        self.node(name, Op::Input, &[], vec![TensorType::new(dtype, shape)])[0]
    }

    /// A weight filled with seeded uniform values in ±`scale` (seeds count up per builder).
    pub fn weight(&mut self, name: &str, dtype: DType, dims: &[u64], scale: f32) -> Value {
        self.next_seed += 1;
        let init = WeightInit::Random { seed: self.next_seed, scale };
        self.node(name, Op::Weight(init), &[], vec![TensorType::new(dtype, shape_of(dims))])[0]
    }

    /// A weight with inline values.
    pub fn weight_data(&mut self, name: &str, dtype: DType, dims: &[u64], data: Vec<f32>) -> Value {
        self.node(name, Op::Weight(WeightInit::Data(data)), &[], vec![TensorType::new(dtype, shape_of(dims))])[0]
    }

    /// A 4-bit weight `[rows, cols]` ([`QuantWeight::random`]): seeded uniform values in
    /// ±`scale` quantized symmetrically (unsigned, zero point 8) in blocks of `block` along
    /// `axis`, scales of `dtype` (f32 or f16; seeds count up per builder).
    pub fn quant_weight(
        &mut self,
        name: &str,
        dtype: DType,
        dims: [u64; 2],
        block: u64,
        axis: usize,
        scale: f32,
    ) -> Value {
        self.next_seed += 1;
        let q = QuantWeight::random(self.next_seed, dims[0], dims[1], block, axis, scale, dtype == DType::F16);
        self.node(name, Op::QuantWeight(q), &[], vec![TensorType::new(dtype, shape_of(&dims))])[0]
    }

    /// A scalar constant of shape `[]`.
    pub fn scalar(&mut self, name: &str, dtype: DType, v: f64) -> Value {
        let values = if dtype.is_float() {
            ConstValues::Float(vec![v])
        } else if dtype.is_int() {
            ConstValues::Int(vec![v as i64])
        } else {
            ConstValues::Bool(vec![v != 0.0])
        };
        self.node(name, Op::Constant(values), &[], vec![TensorType::new(dtype, vec![])])[0]
    }

    /// `a · b`
    pub fn matmul(&mut self, name: &str, a: Value, b: Value) -> Value {
        self.one(name, Op::MatMul, &[a, b])
    }

    /// An elementwise op with one operand.
    pub fn unary(&mut self, name: &str, op: UnaryOp, a: Value) -> Value {
        self.one(name, Op::Unary(op), &[a])
    }

    /// An elementwise op with two operands.
    pub fn binary(&mut self, name: &str, op: BinaryOp, a: Value, b: Value) -> Value {
        self.one(name, Op::Binary(op), &[a, b])
    }

    /// `a + b`
    pub fn add(&mut self, name: &str, a: Value, b: Value) -> Value {
        self.binary(name, BinaryOp::Add, a, b)
    }

    /// `a · b` elementwise.
    pub fn mul(&mut self, name: &str, a: Value, b: Value) -> Value {
        self.binary(name, BinaryOp::Mul, a, b)
    }

    /// A projection `x · W` with a seeded weight named `{name}.weight` of `out` features, laid
    /// out as `[K, N]` or, PyTorch-style, as `[N, K]` behind a `Transpose` named
    /// `{name}.weight_t`. The weight has x's element type.
    pub fn linear(&mut self, name: &str, x: Value, out: u64, layout: Layout, scale: f32) -> Value {
        let Some(t) = self.ty(x).cloned() else {
            self.err.get_or_insert(crate::Error::graph(name, "x is not a value of this graph"));
            return x;
        };
        let k = match t.shape.last().and_then(Dim::fixed) {
            Some(k) => k,
            None => {
                self.err.get_or_insert(crate::Error::graph(name, "x must end in a known dim"));
                return x;
            }
        };
        match layout {
            Layout::Kn => {
                let w = self.weight(&format!("{name}.weight"), t.dtype, &[k, out], scale);
                self.matmul(name, x, w)
            }
            Layout::Nk => {
                let w = self.weight(&format!("{name}.weight"), t.dtype, &[out, k], scale);
                let wt = self.transpose(&format!("{name}.weight_t"), w, &[1, 0]);
                self.matmul(name, x, wt)
            }
        }
    }

    /// `x · W` with a 4-bit weight ([`GraphBuilder::quant_weight`]) of `out` features, blocked
    /// along k: `[K, N]` (`Kn`, blocks along axis 0) or `[N, K]` behind a transpose (`Nk`, as
    /// `MatMulNBits` loads; blocks along axis 1).
    pub fn linear_q4(&mut self, name: &str, x: Value, out: u64, layout: Layout, block: u64, scale: f32) -> Value {
        let Some(t) = self.ty(x).cloned() else {
            self.err.get_or_insert(crate::Error::graph(name, "x is not a value of this graph"));
            return x;
        };
        let Some(k) = t.shape.last().and_then(Dim::fixed) else {
            self.err.get_or_insert(crate::Error::graph(name, "x must end in a known dim"));
            return x;
        };
        match layout {
            Layout::Kn => {
                let w = self.quant_weight(&format!("{name}.weight"), t.dtype, [k, out], block, 0, scale);
                self.matmul(name, x, w)
            }
            Layout::Nk => {
                let w = self.quant_weight(&format!("{name}.weight"), t.dtype, [out, k], block, 1, scale);
                let wt = self.transpose(&format!("{name}.weight_t"), w, &[1, 0]);
                self.matmul(name, x, wt)
            }
        }
    }

    /// Axis permutation.
    pub fn transpose(&mut self, name: &str, a: Value, perm: &[usize]) -> Value {
        self.one(name, Op::Transpose { perm: perm.to_vec() }, &[a])
    }

    /// Split along an axis into parts of the given sizes.
    pub fn split(&mut self, name: &str, a: Value, axis: i64, sizes: &[u64]) -> Vec<Value> {
        self.node(name, Op::Split { axis, sizes: sizes.iter().map(|&s| Dim::Fixed(s)).collect() }, &[a], vec![])
    }

    /// `a[.., start..end]` along an axis (an `end` before `start` is taken as `start`:
    /// nothing; verification then refuses a slice that does not fit).
    pub fn slice(&mut self, name: &str, a: Value, axis: i64, start: u64, end: u64) -> Value {
        let len = Dim::Fixed(end.saturating_sub(start));
        self.one(name, Op::Slice { axis, start: Dim::Fixed(start), len, step: 1 }, &[a])
    }

    /// An op glufuse does not model, with its declared output types.
    pub fn opaque(&mut self, name: &str, op_type: &str, inputs: &[Value], outputs: Vec<TensorType>) -> Vec<Value> {
        let op = Op::Opaque { op_type: op_type.into(), attrs: Default::default() };
        self.node(name, op, inputs, outputs)
    }

    /// The type of a value built so far.
    pub fn ty(&self, v: Value) -> Option<&TensorType> {
        self.g.g.node_weight(v.node).and_then(|n| n.outputs.get(v.output))
    }

    /// Marks values as graph outputs and returns the verified graph, or the first error.
    pub fn finish(mut self, outputs: &[Value]) -> Result<Graph> {
        if let Some(e) = self.err {
            return Err(e);
        }
        self.g.outputs = outputs.to_vec();
        crate::verify::verify(&self.g)?;
        Ok(self.g)
    }
}

/// The ways a SiLU can be spelled, for building test graphs as exporters write them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiluSpelling {
    /// One `Silu` op.
    Op,
    /// `x * sigmoid(x)`.
    MulSigmoid,
    /// `sigmoid(x) * x`.
    SigmoidMul,
    /// `x / (1 + exp(-x))`.
    DivExp,
}

impl GraphBuilder {
    /// SiLU of `g` in the given spelling; node names start with `prefix`.
    pub fn silu(&mut self, prefix: &str, g: Value, how: SiluSpelling) -> Value {
        let dt = self.ty(g).map_or(DType::F32, |t| t.dtype);
        match how {
            SiluSpelling::Op => self.unary(&format!("{prefix}silu"), UnaryOp::Silu, g),
            SiluSpelling::MulSigmoid => {
                let s = self.unary(&format!("{prefix}sigmoid"), UnaryOp::Sigmoid, g);
                self.mul(&format!("{prefix}silu"), g, s)
            }
            SiluSpelling::SigmoidMul => {
                let s = self.unary(&format!("{prefix}sigmoid"), UnaryOp::Sigmoid, g);
                self.mul(&format!("{prefix}silu"), s, g)
            }
            SiluSpelling::DivExp => {
                let n = self.unary(&format!("{prefix}neg"), UnaryOp::Neg, g);
                let e = self.unary(&format!("{prefix}exp"), UnaryOp::Exp, n);
                let one = self.scalar(&format!("{prefix}one"), dt, 1.0);
                let d = self.add(&format!("{prefix}denom"), one, e);
                self.binary(&format!("{prefix}silu"), BinaryOp::Div, g, d)
            }
        }
    }
}
