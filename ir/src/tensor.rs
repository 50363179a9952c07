//! The host tensor: a dense row-major buffer with its shape and element type, as the
//! interpreter computes with it, the `.npy` reader returns it and the GPU runtime uploads and
//! reads it back; and the values a weight or constant node holds.
//!
//! # Representations
//!
//! On the host a [`Tensor`] holds its values in one of three vectors ([`Data`]), chosen by
//! its dtype, so that a kernel of the interpreter matches on the representation once per op,
//! never per element:
//!
//! | dtype | host ([`Data`]) | GPU (one 32-bit word per element) |
//! | --- | --- | --- |
//! | `f32` | `F32(Vec<f32>)` | `f32` |
//! | `f16` | `F32(Vec<f32>)` | `f32` (weights: packed f16 pairs in `u32`) |
//! | `i64` | `I64(Vec<i64>)` | `i32`: a value outside i32's range is a checked error on upload and readback |
//! | `i32` | `I64(Vec<i64>)`, each value within i32's range | `i32` |
//! | `bool` | `Bool(Vec<bool>)` | `u32` 0 or 1 |
//!
//! [`Tensor::to_gpu_words`] and [`Tensor::from_gpu_words`] convert between the two, with
//! those checks.
//!
//! f16 values are held as f32: graph inputs ([`Tensor::f16`], the `.npy` reader), weights,
//! constants and casts to f16 round them to f16; the ops between compute and keep f32
//! precision, as the GPU kernels do.

use crate::{DType, Node, Op, TensorType};
use crate::{Error, Result};
use rand::{Rng, SeedableRng};

/// The values of a tensor, in the representation its dtype calls for (see the module
/// documentation).
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// f32 and f16 values (f16 held rounded, as f32).
    F32(Vec<f32>),
    /// i64 and i32 values (i32 held within its range).
    I64(Vec<i64>),
    /// Booleans.
    Bool(Vec<bool>),
}

impl Data {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::Bool(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether this representation holds values of `dtype`.
    pub fn holds(&self, dtype: DType) -> bool {
        match self {
            Data::F32(_) => dtype.is_float(),
            Data::I64(_) => dtype.is_int(),
            Data::Bool(_) => dtype == DType::Bool,
        }
    }

    /// `n` zeros (`false`) in the representation of `dtype`.
    pub fn zeros(dtype: DType, n: usize) -> Data {
        match dtype {
            DType::F32 | DType::F16 => Data::F32(vec![0.0; n]),
            DType::I64 | DType::I32 => Data::I64(vec![0; n]),
            DType::Bool => Data::Bool(vec![false; n]),
        }
    }

    /// The values picked by `idx`, in order (`out[i] = self[idx[i]]`); indices must be in
    /// range.
    pub fn gather(&self, idx: impl Iterator<Item = usize>) -> Data {
        match self {
            Data::F32(v) => Data::F32(idx.map(|i| v[i]).collect()),
            Data::I64(v) => Data::I64(idx.map(|i| v[i]).collect()),
            Data::Bool(v) => Data::Bool(idx.map(|i| v[i]).collect()),
        }
    }

    /// Value `i` as f64 (booleans as 0 and 1), for comparisons and reports.
    pub fn get_f64(&self, i: usize) -> f64 {
        match self {
            Data::F32(v) => v[i] as f64,
            Data::I64(v) => v[i] as f64,
            Data::Bool(v) => v[i] as u8 as f64,
        }
    }
}

/// A dense row-major tensor of any [`DType`].
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub(crate) shape: Vec<usize>,
    pub(crate) dtype: DType,
    pub(crate) data: Data,
}

impl Tensor {
    /// An f32 tensor; fails if the data length disagrees with the shape.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Tensor::from_data(DType::F32, shape, Data::F32(data))
    }

    /// An f32 tensor (as [`Tensor::new`]).
    pub fn f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Tensor::new(shape, data)
    }

    /// An f16 tensor from f32 values, each rounded to the nearest f16.
    pub fn f16(shape: Vec<usize>, mut data: Vec<f32>) -> Result<Self> {
        round_f16(&mut data);
        Tensor::from_data(DType::F16, shape, Data::F32(data))
    }

    /// An i64 tensor.
    pub fn i64(shape: Vec<usize>, data: Vec<i64>) -> Result<Self> {
        Tensor::from_data(DType::I64, shape, Data::I64(data))
    }

    /// An i32 tensor; fails if a value is outside i32's range.
    pub fn i32(shape: Vec<usize>, data: Vec<i64>) -> Result<Self> {
        Tensor::from_data(DType::I32, shape, Data::I64(data))
    }

    /// A boolean tensor.
    pub fn bool(shape: Vec<usize>, data: Vec<bool>) -> Result<Self> {
        Tensor::from_data(DType::Bool, shape, Data::Bool(data))
    }

    /// A tensor of `dtype` from values in its representation; fails if the representation
    /// does not hold `dtype`, the length disagrees with the shape, or an i32 value is out of
    /// range. (f16 values are taken as given: see the module documentation.)
    pub fn from_data(dtype: DType, shape: Vec<usize>, data: Data) -> Result<Self> {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(data.len()) {
            return Err(Error::input(format!(
                "a tensor of shape {shape:?} needs {} values, got {}",
                n.map_or("more than can be counted".into(), |n| n.to_string()),
                data.len()
            )));
        }
        if !data.holds(dtype) {
            return Err(Error::input(format!("{dtype} values cannot be held as {}", data_kind(&data))));
        }
        if let (Data::I64(v), DType::I32) = (&data, dtype) {
            if let Some(x) = v.iter().find(|&&x| i32::try_from(x).is_err()) {
                return Err(Error::input(format!("value {x} does not fit an i32")));
            }
        }
        Ok(Tensor { shape, dtype, data })
    }

    /// A tensor of zeros (`false`).
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, dtype, data: Data::zeros(dtype, n) }
    }

    /// Seeded uniform f32 values in `[-scale, scale)`.
    pub fn random(shape: Vec<usize>, seed: u64, scale: f32) -> Self {
        let n: usize = shape.iter().product();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let data = (0..n).map(|_| if scale == 0.0 { 0.0 } else { rng.random_range(-scale..scale) }).collect();
        Tensor { shape, dtype: DType::F32, data: Data::F32(data) }
    }

    /// The shape, outermost dim first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The values.
    pub fn data(&self) -> &Data {
        &self.data
    }

    /// The values, taken out.
    pub fn into_data(self) -> Data {
        self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The values of an f32 or f16 tensor.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.data {
            Data::F32(v) => Some(v),
            Data::I64(_) | Data::Bool(_) => None,
        }
    }

    /// The values of an i64 or i32 tensor.
    pub fn as_i64(&self) -> Option<&[i64]> {
        match &self.data {
            Data::I64(v) => Some(v),
            Data::F32(_) | Data::Bool(_) => None,
        }
    }

    /// The values of a boolean tensor.
    pub fn as_bool(&self) -> Option<&[bool]> {
        match &self.data {
            Data::Bool(v) => Some(v),
            Data::F32(_) | Data::I64(_) => None,
        }
    }

    /// The f32 values, or an error naming the dtype (for code that only handles floats).
    pub fn floats(&self) -> std::result::Result<&[f32], String> {
        self.as_f32().ok_or_else(|| format!("expected a floating-point tensor, got {}", self.dtype))
    }

    /// The same values under another shape of the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Result<Self> {
        Tensor::from_data(self.dtype, shape, self.data)
    }

    /// The tensor as the GPU holds it: one 32-bit word per element (f32 bits; i64 and i32 as
    /// i32; booleans as 0 or 1). Fails naming the first integer outside i32's range.
    pub fn to_gpu_words(&self) -> std::result::Result<Vec<u32>, String> {
        match &self.data {
            Data::F32(v) => Ok(v.iter().map(|x| x.to_bits()).collect()),
            Data::I64(v) => v
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    i32::try_from(x).map(|y| y as u32).map_err(|_| {
                        format!("element {i} is {x}, outside the 32-bit range the GPU holds {} values in", self.dtype)
                    })
                })
                .collect(),
            Data::Bool(v) => Ok(v.iter().map(|&b| b as u32).collect()),
        }
    }

    /// A tensor of `dtype` from the words the GPU holds it in (see [`Tensor::to_gpu_words`]);
    /// fails on a boolean word other than 0 or 1, or a length that disagrees with the shape.
    pub fn from_gpu_words(dtype: DType, shape: Vec<usize>, words: &[u32]) -> Result<Self> {
        Self::from_gpu_words_in(dtype, shape, words, Vec::new())
    }

    /// [`Tensor::from_gpu_words`], the values of a float tensor written into `buf` (emptied
    /// first): memory the caller allocated as it sees fit (the runtime asks for huge pages
    /// for large outputs).
    pub fn from_gpu_words_in(dtype: DType, shape: Vec<usize>, words: &[u32], buf: Vec<f32>) -> Result<Self> {
        let data = match dtype {
            DType::F32 => Data::F32(floats_from_words(words, WordFloats::F32, words.len(), buf)),
            DType::F16 => Data::F32(floats_from_words(words, WordFloats::F16InF32, words.len(), buf)),
            DType::I64 | DType::I32 => Data::I64(words.iter().map(|&w| w as i32 as i64).collect()),
            DType::Bool => Data::Bool(
                words
                    .iter()
                    .map(|&w| match w {
                        0 => Ok(false),
                        1 => Ok(true),
                        w => Err(Error::Internal(format!("a boolean read back from the GPU is {w}, not 0 or 1"))),
                    })
                    .collect::<Result<_>>()?,
            ),
        };
        Tensor::from_data(dtype, shape, data)
    }

    /// An f16 tensor from the GPU's words of packed halves (two values a word, the first in
    /// the low half; where the count is odd, the last word's high half is not read), its
    /// values written into `buf` (emptied first), as [`Tensor::from_gpu_words_in`]. Fails
    /// where the words are not as many as the shape needs.
    pub fn from_packed_f16_words_in(shape: Vec<usize>, words: &[u32], buf: Vec<f32>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if words.len() != n.div_ceil(2) {
            return Err(Error::Internal(format!(
                "{} words of packed f16 read back for {n} values of shape {shape:?}",
                words.len()
            )));
        }
        let data = Data::F32(floats_from_words(words, WordFloats::PackedF16, n, buf));
        Tensor::from_data(DType::F16, shape, data)
    }
}

/// How the GPU's words hold a float tensor's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WordFloats {
    /// One f32 a word.
    F32,
    /// One f32 a word, read back as f16 (rounded to the nearest, ties to even).
    F16InF32,
    /// Two f16 a word, the first in the low half.
    PackedF16,
}

fn data_kind(d: &Data) -> &'static str {
    match d {
        Data::F32(_) => "f32 values",
        Data::I64(_) => "i64 values",
        Data::Bool(_) => "booleans",
    }
}

/// Fewest float values [`floats_from_words`] converts on several threads.
const PARALLEL_WORDS: usize = 1 << 20;

/// Most threads [`host_threads`] gives.
const MAX_THREADS: usize = 8;

/// Runs a conversion of many values between the host's tensors and the GPU's words is cut
/// into for rayon's pool (and whether it is worth cutting: 1 on one core): the parallelism
/// available to the process (asked once: on Linux the answer reads the cgroup's quota, tens
/// of µs), at most 8.
pub fn host_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |p| p.get()).min(MAX_THREADS))
}

/// The `n` floats the GPU's words hold as `kind` says, written into `buf` (emptied first).
/// Large outputs (from [`PARALLEL_WORDS`] values) are converted in [`host_threads`] runs on
/// rayon's pool, each writing its own run of `buf` straight from the words: reading back a
/// prefill's logits (78 MB as f32) is mostly the cost of touching fresh memory and of the
/// rounding, which the threads share.
fn floats_from_words(words: &[u32], kind: WordFloats, n: usize, mut buf: Vec<f32>) -> Vec<f32> {
    buf.clear();
    buf.reserve_exact(n);
    let threads = if n >= PARALLEL_WORDS { host_threads() } else { 1 };
    let spare = &mut buf.spare_capacity_mut()[..n];
    if threads == 1 {
        convert_words(words, spare, kind);
    } else {
        // Runs of an even length: no word of packed halves is split between two threads.
        let chunk = n.div_ceil(threads).next_multiple_of(2);
        let per_word = if kind == WordFloats::PackedF16 { 2 } else { 1 };
        use rayon::prelude::*;
        spare
            .par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, dst)| convert_words(&words[i * chunk / per_word..], dst, kind));
    }
    // SAFETY: `convert_words` wrote each of the first `n` elements (the chunks cover
    // `spare`, which is `n` long), and the capacity is at least `n` (reserved above).
    unsafe { buf.set_len(n) };
    buf
}

/// Writes the floats that the words of `src` hold as `kind` says into `dst` (as many as it
/// takes; `src` holds at least those): a block at a time through buffers on the stack, where
/// the f16 conversions take vector instructions (F16C) where the processor has them.
fn convert_words(src: &[u32], dst: &mut [std::mem::MaybeUninit<f32>], kind: WordFloats) {
    use half::slice::HalfFloatSliceExt;
    const BLOCK: usize = 1024; // even: a block starts at the low half of a word
    let mut vals = [0f32; BLOCK];
    let mut halves = [half::f16::ZERO; BLOCK];
    for (bi, d) in dst.chunks_mut(BLOCK).enumerate() {
        let v = &mut vals[..d.len()];
        match kind {
            WordFloats::F32 | WordFloats::F16InF32 => {
                for (x, &w) in v.iter_mut().zip(&src[bi * BLOCK..]) {
                    *x = f32::from_bits(w);
                }
                if kind == WordFloats::F16InF32 {
                    let h = &mut halves[..d.len()];
                    h.convert_from_f32_slice(v);
                    h.convert_to_f32_slice(v);
                }
            }
            WordFloats::PackedF16 if cfg!(target_endian = "little") => {
                // A word's low half comes first in memory: the words' bytes are the halves
                // in order.
                let all: &[half::f16] = bytemuck::cast_slice(src);
                all[bi * BLOCK..bi * BLOCK + d.len()].convert_to_f32_slice(v);
            }
            WordFloats::PackedF16 => {
                let (h, words) = (&mut halves[..d.len()], &src[bi * BLOCK / 2..]);
                for (j, x) in h.iter_mut().enumerate() {
                    *x = half::f16::from_bits((words[j / 2] >> (16 * (j % 2))) as u16);
                }
                h.convert_to_f32_slice(v);
            }
        }
        for (o, &x) in d.iter_mut().zip(v.iter()) {
            o.write(x);
        }
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
    let mut data = op.held_values(ty.dtype, &shape).unwrap_or_else(|| Data::zeros(ty.dtype, n));
    if ty.dtype == DType::F16 {
        if let Data::F32(v) = &mut data {
            round_f16(v);
        }
    }
    Tensor { shape, dtype: ty.dtype, data }
}

/// Appends the f32 values of little-endian halves (f16, or bf16 where `brain`) to `v`, a block
/// at a time through `half`'s slice conversions (SIMD where the CPU has it: value by value,
/// converting a Qwen2-0.5B-sized f16 export's weights took about 0.6 s of the 3.2 that
/// `glufuse wgsl` spent on it). The ONNX loader and the JSON reader's data files use it.
pub fn halves_into(raw: &[u8], brain: bool, v: &mut Vec<f32>) {
    use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
    const BLOCK: usize = 4096;
    let mut bits = [0u16; BLOCK];
    let mut out = [0f32; BLOCK];
    for chunk in raw.chunks(2 * BLOCK) {
        let n = chunk.len() / 2;
        for (b, c) in bits.iter_mut().zip(chunk.chunks_exact(2)) {
            *b = u16::from_le_bytes([c[0], c[1]]);
        }
        if brain {
            bits[..n].reinterpret_cast::<half::bf16>().convert_to_f32_slice(&mut out[..n]);
        } else {
            bits[..n].reinterpret_cast::<half::f16>().convert_to_f32_slice(&mut out[..n]);
        }
        v.extend_from_slice(&out[..n]);
    }
}

/// Rounds every value to the nearest f16.
pub fn round_f16(d: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    // Slice conversions: vector instructions (F16C) where the processor has them, several
    // times faster than one value at a time (what a model's f16 outputs cost to read back).
    let mut buf = [half::f16::ZERO; 1024];
    for chunk in d.chunks_mut(1024) {
        let b = &mut buf[..chunk.len()];
        b.convert_from_f32_slice(chunk);
        b.convert_to_f32_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs large enough to be converted by several threads (a length that splits in
    /// uneven runs and blocks) hold the same values as each word converted alone: f32 bit for
    /// bit, f16 rounded to nearest even, packed f16 each half as it is; into a caller's
    /// buffer holding other values, too.
    #[test]
    fn large_outputs_convert_as_each_word_alone() {
        let n = PARALLEL_WORDS + 1234;
        let words: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2654435761) & 0xbfff_ffff).collect();
        let f32s = Tensor::from_gpu_words(DType::F32, vec![n], &words).unwrap();
        let got: Vec<u32> = f32s.as_f32().unwrap().iter().map(|x| x.to_bits()).collect();
        assert!(got == words, "f32 words differ");
        let f16s = Tensor::from_gpu_words_in(DType::F16, vec![n], &words, vec![7.0; 99]).unwrap();
        let one = |w: u32| half::f16::from_f32(f32::from_bits(w)).to_f32().to_bits();
        let bad = f16s.as_f32().unwrap().iter().zip(&words).position(|(x, &w)| x.to_bits() != one(w));
        assert_eq!(bad, None, "f16 rounding differs at this element");
        assert_eq!(f16s.as_f32().unwrap().len(), n);
        // Packed halves, an odd count (the last word's high half unused), small and large.
        for m in [5, 2 * n - 1] {
            let halves = &words[..m.div_ceil(2)];
            let packed = Tensor::from_packed_f16_words_in(vec![m], halves, vec![7.0; 99]).unwrap();
            let one = |j: usize| half::f16::from_bits((halves[j / 2] >> (16 * (j % 2))) as u16).to_f32().to_bits();
            let got = packed.as_f32().unwrap();
            assert_eq!(got.len(), m);
            let bad = got.iter().enumerate().position(|(j, x)| x.to_bits() != one(j));
            assert_eq!(bad, None, "{m} packed halves: this one differs");
            assert!(Tensor::from_packed_f16_words_in(vec![m + 2], halves, vec![]).is_err(), "too few words");
        }
    }

    #[test]
    fn constructors_check_what_they_are_given() {
        assert!(Tensor::new(vec![2, 2], vec![0.0; 3]).unwrap_err().to_string().contains("needs 4 values, got 3"));
        assert_eq!(
            Tensor::i32(vec![1], vec![1 << 40]).unwrap_err().to_string(),
            "value 1099511627776 does not fit an i32"
        );
        assert_eq!(Tensor::f16(vec![1], vec![0.1]).unwrap().as_f32().unwrap()[0], half::f16::from_f32(0.1).to_f32());
        let e = Tensor::from_data(DType::Bool, vec![1], Data::I64(vec![1])).unwrap_err().to_string();
        assert_eq!(e, "bool values cannot be held as i64 values");
        let e = Tensor::new(vec![usize::MAX, 2], vec![]).unwrap_err().to_string();
        assert!(e.contains("more than can be counted"), "{e}");
    }

    #[test]
    fn gpu_words_round_trip_and_refuse_what_does_not_fit() {
        let t = Tensor::i64(vec![3], vec![-1, 0, i32::MAX as i64]).unwrap();
        let w = t.to_gpu_words().unwrap();
        assert_eq!(Tensor::from_gpu_words(DType::I64, vec![3], &w).unwrap(), t);
        let e = Tensor::i64(vec![2], vec![0, 1 << 31]).unwrap().to_gpu_words().unwrap_err();
        assert_eq!(e, "element 1 is 2147483648, outside the 32-bit range the GPU holds i64 values in");
        let b = Tensor::bool(vec![2], vec![true, false]).unwrap();
        assert_eq!(b.to_gpu_words().unwrap(), vec![1, 0]);
        assert_eq!(Tensor::from_gpu_words(DType::Bool, vec![2], &[1, 0]).unwrap(), b);
        assert!(Tensor::from_gpu_words(DType::Bool, vec![1], &[2]).is_err());
        let f = Tensor::new(vec![2], vec![1.5, -0.25]).unwrap();
        assert_eq!(Tensor::from_gpu_words(DType::F32, vec![2], &f.to_gpu_words().unwrap()).unwrap(), f);
    }
}
