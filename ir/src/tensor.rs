//! The host tensor: a dense row-major f32 buffer with its shape, as the interpreter computes
//! with it, the `.npy` reader returns it and the GPU runtime uploads and reads it back; and
//! the values a weight or constant node holds.

use crate::{DType, Node, Op, TensorType};
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

/// Maps each element index of a tensor of shape `out` to the index of an input of shape
/// `inp` broadcast to it (numpy rules: `inp` aligned to the right, its size-1 dims repeated).
pub fn broadcast_index(out: &[usize], inp: &[usize]) -> Vec<usize> {
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

/// The values a weight or constant node holds, as the runtime uploads them and the
/// interpreter reads them: shape-only weights hold zeros, f16 values are rounded.
pub fn weight_values(node: &Node) -> Tensor {
    held_values(&node.op, &node.outputs[0])
}

/// The values `op` holds for an output of type `ty` (known dims): [`Op::held_values`], zeros
/// for an op that holds none, rounded to f16 for an f16 type.
pub fn held_values(op: &Op, ty: &TensorType) -> Tensor {
    let shape: Vec<usize> = ty.shape.iter().map(|d| d.fixed().unwrap_or(0) as usize).collect();
    let n: usize = shape.iter().product();
    let mut data = op.held_values(&shape).unwrap_or_else(|| vec![0.0; n]);
    if ty.dtype == DType::F16 {
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
