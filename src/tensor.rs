//! The host tensor: a dense row-major f32 buffer with its shape, as the interpreter computes
//! with it, the `.npy` reader returns it and the GPU runtime uploads and reads it back; and
//! the values a weight or constant node holds.

use crate::ir::*;
use crate::{Error, Result};
use rand::{Rng, SeedableRng};

/// A dense row-major f32 tensor (f16 values are held widened to f32).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Dims, outermost first.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor; fails if the data length disagrees with the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::input(format!("tensor of shape {shape:?} needs {n} values, got {}", data.len())));
        }
        Ok(Tensor { shape, data })
    }

    /// Seeded uniform values in `[-scale, scale)`.
    pub fn random(shape: Vec<usize>, seed: u64, scale: f32) -> Self {
        let n: usize = shape.iter().product();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data = (0..n).map(|_| if scale == 0.0 { 0.0 } else { rng.random_range(-scale..scale) }).collect();
        Tensor { shape, data }
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// The values of a weight node as the runtime and interpreter see them.
pub fn weight_values(node: &Node) -> Tensor {
    let t = &node.outputs[0];
    let shape: Vec<usize> = t.shape.iter().map(|d| d.fixed().unwrap_or(0) as usize).collect();
    let n: usize = shape.iter().product();
    let mut data = match &node.op {
        Op::Weight(WeightInit::Data(d)) => d.clone(),
        Op::Weight(WeightInit::Random { seed, scale }) => Tensor::random(shape.clone(), *seed, *scale).data,
        Op::Constant(v) => v.iter().map(|&x| x as f32).collect(),
        _ => vec![0.0; n],
    };
    if t.dtype == DType::F16 {
        round_f16(&mut data);
    }
    Tensor { shape, data }
}

/// Rounds every value to the nearest f16.
pub fn round_f16(d: &mut [f32]) {
    for x in d {
        *x = half::f16::from_f32(*x).to_f32();
    }
}
