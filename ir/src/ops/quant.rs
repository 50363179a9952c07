//! Quantized weights: [`QuantWeight`], a 2-D weight held as 4-bit integers in blocks, each
//! block with its own scale (and zero point), as ONNX models spell them
//! (`com.microsoft::MatMulNBits`, opset-21 blocked `DequantizeLinear` over an `INT4`/`UINT4`
//! initializer).
//!
//! The op is a source. Its output type is the *logical, dequantized* matrix (dtype the
//! scales' f32 or f16, shape `[rows, cols]` as the model has it), so every consumer (a
//! `MatMul`, a `Transpose`, the fusion pass, the interpreter) sees an ordinary 2-D weight
//! value; only what cares looks inside: the interpreter dequantizes it
//! (`x = (q - zero_point) · scale` per block), code generation reads it packed, the dumps and
//! the JSON show and keep the packing.
//!
//! Packing, kept as the model packs it: element `(r, c)` is nibble `r·row_nibbles + c` of
//! `data`, two per byte, the low nibble first (ONNX's `INT4`/`UINT4`: `row_nibbles = cols`;
//! `MatMulNBits`: each row padded to whole blocks, `row_nibbles = blocks·block`). Blocks run
//! along `axis`: with `axis = 1` element `(r, c)` takes scale `r·ceil(cols/block) + c/block`;
//! with `axis = 0` scale `(r/block)·cols + c` (ONNX's blocked `DequantizeLinear`: the scale's
//! shape is the data's with the blocked axis divided by the block size, rounded up). Zero
//! points, when present, are one per scale, in the element type's range; absent, they are 8
//! for unsigned and 0 for signed values.
//!
//! In JSON (`"op": "QuantWeight"`): `bits` (4), `signed`, `block`, `axis`, `row_nibbles`,
//! `data` (the packed bytes in hex, one string), `scales` (little-endian f32 bits in hex, one
//! string, exact), `zero_points` (optional: one hex digit per zero point, signed ones in two's
//! complement) and `origin` (the model op it came from).

use super::{arity, one_declared, read_attrs, Attrs};
use crate::op::Op;
use crate::shape::{check_size, fmt_shape};
use crate::types::{DType, TensorType};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value as J;

/// The name of [`Op::QuantWeight`].
pub const NAME: &str = "QuantWeight";

/// Bits per element: the only width glufuse reads.
pub const BITS: u32 = 4;
/// Smallest block size.
pub const MIN_BLOCK: u64 = 16;
/// Largest block size.
pub const MAX_BLOCK: u64 = 1 << 16;

/// A 2-D weight of 4-bit integers in blocks with scales (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantWeight {
    /// Bits per element (4).
    pub bits: u32,
    /// Signed elements (`INT4`: -8..7) or unsigned (`UINT4`: 0..15).
    pub signed: bool,
    /// Elements per block along `axis`: a power of two, at least 16.
    pub block: u64,
    /// The blocked axis of the `[rows, cols]` matrix: 0 or 1.
    pub axis: usize,
    /// Nibbles from the start of one row to the next in `data` (at least `cols`).
    pub row_nibbles: u64,
    /// The elements, two per byte, low nibble first.
    pub data: Vec<u8>,
    /// One scale per block (f16 scales held exactly as f32).
    pub scales: Vec<f32>,
    /// One zero point per block, in the element type's range; `None`: 8 for unsigned, 0 for
    /// signed elements.
    pub zero_points: Option<Vec<i8>>,
    /// The model op it came from (`MatMulNBits`, `DequantizeLinear`, `synth`).
    pub origin: String,
}

/// The sizes of a quantized weight of shape `[rows, cols]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantDims {
    /// Rows of the logical matrix.
    pub rows: u64,
    /// Columns of the logical matrix.
    pub cols: u64,
    /// Blocks along the blocked axis.
    pub blocks: u64,
    /// Scales (and zero points) in all.
    pub scales: u64,
}

impl QuantWeight {
    /// The range of an element (and of a zero point).
    pub fn range(&self) -> (i32, i32) {
        if self.signed {
            (-8, 7)
        } else {
            (0, 15)
        }
    }

    /// The zero point of an element type when the model gives none: 8 unsigned, 0 signed.
    pub fn default_zero_point(&self) -> i32 {
        if self.signed {
            0
        } else {
            8
        }
    }

    /// The element type's name (`int4`, `uint4`).
    pub fn elem_name(&self) -> &'static str {
        if self.signed {
            "int4"
        } else {
            "uint4"
        }
    }

    /// Sizes for the logical shape `[rows, cols]`, every count checked against overflow.
    pub fn dims(&self, rows: u64, cols: u64) -> Result<QuantDims, String> {
        if self.block == 0 {
            return Err("block size 0".into());
        }
        let blocks = match self.axis {
            0 => rows.div_ceil(self.block),
            1 => cols.div_ceil(self.block),
            a => return Err(format!("blocked axis {a} of a 2-D weight")),
        };
        let other = if self.axis == 0 { cols } else { rows };
        let scales = blocks.checked_mul(other).ok_or("the scale count overflows")?;
        Ok(QuantDims { rows, cols, blocks, scales })
    }

    /// Bytes `data` must hold for `rows` rows.
    pub fn data_bytes(&self, rows: u64) -> Result<u64, String> {
        rows.checked_mul(self.row_nibbles).map(|n| n.div_ceil(2)).ok_or_else(|| "the packed size overflows".to_string())
    }

    /// Checks the packing against the logical shape `[rows, cols]`: the clear reason if
    /// malformed.
    pub fn check(&self, rows: u64, cols: u64) -> Result<QuantDims, String> {
        if self.bits != BITS {
            return Err(format!("{} bits per element: glufuse reads 4-bit weights only", self.bits));
        }
        if self.block < MIN_BLOCK || self.block > MAX_BLOCK || !self.block.is_power_of_two() {
            return Err(format!("block size {} must be a power of two from {MIN_BLOCK} to {MAX_BLOCK}", self.block));
        }
        let d = self.dims(rows, cols)?;
        if self.row_nibbles < cols {
            return Err(format!("rows of {} nibbles cannot hold {cols} columns", self.row_nibbles));
        }
        let want = self.data_bytes(rows)?;
        if self.data.len() as u64 != want {
            return Err(format!(
                "the packed data holds {} bytes but {rows} rows of {} nibbles need {want}",
                self.data.len(),
                self.row_nibbles
            ));
        }
        if self.scales.len() as u64 != d.scales {
            return Err(format!(
                "{} scales for {} blocks of {} along axis {} of [{rows}, {cols}]: expected {}",
                self.scales.len(),
                d.blocks,
                self.block,
                self.axis,
                d.scales
            ));
        }
        if let Some(z) = &self.zero_points {
            if z.len() != self.scales.len() {
                return Err(format!("{} zero points for {} scales", z.len(), self.scales.len()));
            }
            let (lo, hi) = self.range();
            if let Some((i, v)) = z.iter().enumerate().find(|(_, &v)| (v as i32) < lo || (v as i32) > hi) {
                return Err(format!("zero point {i} is {v}, outside the {} range {lo}..={hi}", self.elem_name()));
            }
        }
        Ok(d)
    }

    /// The raw nibble of element `(r, c)` (0..15).
    pub fn nibble(&self, r: u64, c: u64) -> u8 {
        let i = r * self.row_nibbles + c;
        let b = self.data[(i / 2) as usize];
        if i % 2 == 0 {
            b & 0xF
        } else {
            b >> 4
        }
    }

    /// The integer value of element `(r, c)` (sign-extended for signed elements).
    pub fn value(&self, r: u64, c: u64) -> i32 {
        let q = self.nibble(r, c) as i32;
        if self.signed && q >= 8 {
            q - 16
        } else {
            q
        }
    }

    /// The index of the scale (and zero point) of element `(r, c)` in a `cols`-wide matrix.
    pub fn scale_index(&self, r: u64, c: u64, cols: u64) -> usize {
        (match self.axis {
            0 => (r / self.block) * cols + c,
            _ => r * cols.div_ceil(self.block) + c / self.block,
        }) as usize
    }

    /// The zero point of scale `i`.
    pub fn zero_point(&self, i: usize) -> i32 {
        self.zero_points.as_ref().map_or(self.default_zero_point(), |z| z[i] as i32)
    }

    /// The dequantized matrix, row-major: `(q - zero_point) · scale`, in f32 (the product of
    /// a 4-bit integer and a scale is exact in f32; an f16 weight's is rounded once, by the
    /// caller, as f16 arithmetic would). The packing must have passed [`QuantWeight::check`].
    pub fn dequantize(&self, rows: u64, cols: u64) -> Vec<f32> {
        let mut out = Vec::with_capacity((rows * cols) as usize);
        for r in 0..rows {
            for c in 0..cols {
                let i = self.scale_index(r, c, cols);
                out.push((self.value(r, c) - self.zero_point(i)) as f32 * self.scales[i]);
            }
        }
        out
    }

    /// Quantizes a row-major `[rows, cols]` matrix to nearest, in blocks of `block` along
    /// `axis`: symmetric (no zero points; scale `max|v| / 7`, around 0 signed or 8 unsigned),
    /// or asymmetric (unsigned, zero points spanning each block's min..max).
    /// `f16` rounds the scales to f16. Packed with `row_nibbles = cols`.
    #[allow(clippy::too_many_arguments)]
    pub fn quantize(
        values: &[f32],
        rows: u64,
        cols: u64,
        block: u64,
        axis: usize,
        signed: bool,
        symmetric: bool,
        f16: bool,
    ) -> Result<QuantWeight, String> {
        let mut q = QuantWeight {
            bits: BITS,
            signed: signed && symmetric,
            block,
            axis,
            row_nibbles: cols,
            data: vec![],
            scales: vec![],
            zero_points: None,
            origin: "quantize".into(),
        };
        let d = q.dims(rows, cols)?;
        let n = rows.checked_mul(cols).ok_or("the element count overflows")?;
        if values.len() as u64 != n {
            return Err(format!("{} values for [{rows}, {cols}]", values.len()));
        }
        let round = |s: f32| if f16 { half::f16::from_f32(s).to_f32() } else { s };
        let (mut lo, mut hi) = (vec![f32::INFINITY; d.scales as usize], vec![f32::NEG_INFINITY; d.scales as usize]);
        for r in 0..rows {
            for c in 0..cols {
                let i = q.scale_index(r, c, cols);
                let v = values[(r * cols + c) as usize];
                lo[i] = lo[i].min(v);
                hi[i] = hi[i].max(v);
            }
        }
        let mut zps = vec![];
        for i in 0..d.scales as usize {
            let (a, b) = (lo[i].min(0.0), hi[i].max(0.0));
            let (s, z) = if symmetric {
                let m = a.abs().max(b.abs());
                (round(m / 7.0), q.default_zero_point())
            } else {
                let s = round((b - a) / 15.0);
                let z = if s > 0.0 { (-a / s).round().clamp(0.0, 15.0) as i32 } else { 8 };
                (s, z)
            };
            q.scales.push(if s > 0.0 { s } else { 1.0 });
            zps.push(z as i8);
        }
        if !symmetric {
            q.zero_points = Some(zps);
        }
        let (lo_q, hi_q) = q.range();
        let mut data = vec![0u8; n.div_ceil(2) as usize];
        for r in 0..rows {
            for c in 0..cols {
                let i = q.scale_index(r, c, cols);
                let v = values[(r * cols + c) as usize];
                let k = ((v / q.scales[i]).round() as i32 + q.zero_point(i)).clamp(lo_q, hi_q);
                let nib = (k & 0xF) as u8;
                let at = r * cols + c;
                data[(at / 2) as usize] |= if at % 2 == 0 { nib } else { nib << 4 };
            }
        }
        q.data = data;
        Ok(q)
    }

    /// A seeded random weight: uniform values in ±`scale` quantized as [`QuantWeight::quantize`]
    /// does (symmetric, unsigned, as `synth --dtype q4` makes them).
    pub fn random(seed: u64, rows: u64, cols: u64, block: u64, axis: usize, scale: f32, f16: bool) -> QuantWeight {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = (rows * cols) as usize;
        let v: Vec<f32> = (0..n).map(|_| if scale == 0.0 { 0.0 } else { rng.random_range(-scale..scale) }).collect();
        let mut q = QuantWeight::quantize(&v, rows, cols, block, axis, false, true, f16).expect("valid sizes");
        q.origin = "random".into();
        q
    }
}

/// The logical `[rows, cols]` of a declared type: rank 2, known dims.
fn rows_cols(t: &TensorType) -> Result<(u64, u64), String> {
    match (t.rank(), t.shape.first().and_then(|d| d.fixed()), t.shape.get(1).and_then(|d| d.fixed())) {
        (2, Some(r), Some(c)) => Ok((r, c)),
        _ => Err(format!("a quantized weight is a 2-D matrix of known dims, not {}", fmt_shape(&t.shape))),
    }
}

/// Type of a quantized weight: the one it declares (f32 or f16, the scales' type; 2-D, known
/// dims), with a packing that holds it ([`QuantWeight::check`]).
pub(crate) fn infer(q: &QuantWeight, ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
    arity(NAME, ins, 0)?;
    let t = one_declared(NAME, declared)?;
    if !matches!(t.dtype, DType::F32 | DType::F16) {
        return Err(format!("a quantized weight dequantizes to f32 or f16, not {}", t.dtype));
    }
    let (rows, cols) = rows_cols(&t)?;
    check_size(&t)?;
    q.check(rows, cols)?;
    Ok(vec![t])
}

/// The dequantized values of a quantized weight of type `shape` (`[rows, cols]`).
pub fn values(q: &QuantWeight, shape: &[usize]) -> Vec<f32> {
    match shape {
        [r, c] if q.check(*r as u64, *c as u64).is_ok() => q.dequantize(*r as u64, *c as u64),
        // Type inference refuses a packing that does not hold its shape.
        _ => vec![0.0; shape.iter().product()],
    }
}

/// Dump label: `QuantWeight(uint4, block 32, sym)` (`asym` with zero points).
pub(crate) fn label(q: &QuantWeight) -> String {
    let zp = if q.zero_points.is_some() { "asym" } else { "sym" };
    format!("{NAME}({}, block {}, {zp})", q.elem_name(), q.block)
}

fn hex(bytes: impl Iterator<Item = u8>) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::new();
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 0xF) as usize] as char);
    }
    s
}

fn hex_digit(c: u8) -> Result<u8, String> {
    (c as char).to_digit(16).map(|d| d as u8).ok_or_else(|| format!("{:?} is not a hex digit", c as char))
}

fn unhex(s: &str, what: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return Err(format!("{what}: an odd number of hex digits"));
    }
    b.chunks_exact(2)
        .map(|p| Ok(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect::<Result<_, String>>()
        .map_err(|e| format!("{what}: {e}"))
}

/// The JSON attributes as written.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuantAttrs {
    bits: u32,
    signed: bool,
    block: u64,
    axis: usize,
    row_nibbles: u64,
    data: String,
    scales: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zero_points: Option<String>,
    #[serde(default)]
    origin: String,
}

/// JSON attributes of a quantized weight (see the module documentation).
pub(crate) fn write_attrs(q: &QuantWeight, m: &mut Attrs) {
    let a = QuantAttrs {
        bits: q.bits,
        signed: q.signed,
        block: q.block,
        axis: q.axis,
        row_nibbles: q.row_nibbles,
        data: hex(q.data.iter().copied()),
        scales: hex(q.scales.iter().flat_map(|s| s.to_le_bytes())),
        zero_points: q.zero_points.as_ref().map(|z| {
            const D: &[u8; 16] = b"0123456789abcdef";
            z.iter().map(|&v| D[(v as u8 & 0xF) as usize] as char).collect()
        }),
        origin: q.origin.clone(),
    };
    if let J::Object(o) = super::to_json(&a) {
        m.extend(o);
    }
}

/// Reads a quantized weight from its JSON attributes; `None` if `name` is not this op.
pub(crate) fn from_json(name: &str, a: &mut Attrs) -> Option<Result<Op, String>> {
    if name != NAME {
        return None;
    }
    let bad = |m: String| format!("bad attributes for {NAME}: {m}");
    Some(read_attrs::<QuantAttrs>(name, a).and_then(|a| {
        let scale_bytes = unhex(&a.scales, "scales").map_err(bad)?;
        if scale_bytes.len() % 4 != 0 {
            return Err(bad("scales: not whole f32 values".into()));
        }
        let scales = scale_bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        let zero_points = match &a.zero_points {
            None => None,
            Some(z) => Some(
                z.bytes()
                    .map(|c| {
                        let d = hex_digit(c)? as i8;
                        Ok(if a.signed && d >= 8 { d - 16 } else { d })
                    })
                    .collect::<Result<Vec<i8>, String>>()
                    .map_err(|e| bad(format!("zero_points: {e}")))?,
            ),
        };
        Ok(Op::QuantWeight(QuantWeight {
            bits: a.bits,
            signed: a.signed,
            block: a.block,
            axis: a.axis,
            row_nibbles: a.row_nibbles,
            data: unhex(&a.data, "data").map_err(bad)?,
            scales,
            zero_points,
            origin: a.origin,
        }))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_then_dequantize_is_within_a_step() {
        let v: Vec<f32> = (0..6 * 40).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        for (axis, signed, sym) in [(0, false, true), (1, true, true), (1, false, false), (0, false, false)] {
            let q = QuantWeight::quantize(&v, 6, 40, 16, axis, signed, sym, false).unwrap();
            q.check(6, 40).unwrap();
            let d = q.dequantize(6, 40);
            for (i, (&a, &b)) in v.iter().zip(&d).enumerate() {
                let s = q.scales[q.scale_index(i as u64 / 40, i as u64 % 40, 40)];
                // Half a step; a whole one at an asymmetric block's ends (its zero point is
                // rounded too, and clamped).
                let tol = if sym { 0.5 * s } else { s };
                assert!((a - b).abs() <= tol + 1e-6, "{axis} {signed} {sym} {i}: {a} vs {b} (step {s})");
            }
        }
    }

    #[test]
    fn malformed_packings_say_why() {
        let q = QuantWeight::quantize(&[0.5; 64], 2, 32, 16, 1, false, true, false).unwrap();
        let mut bad = q.clone();
        bad.block = 24;
        assert!(bad.check(2, 32).unwrap_err().contains("power of two"));
        let mut bad = q.clone();
        bad.data.pop();
        assert!(bad.check(2, 32).unwrap_err().contains("holds 31 bytes"));
        let mut bad = q.clone();
        bad.zero_points = Some(vec![16, 0, 0, 0]);
        assert!(bad.check(2, 32).unwrap_err().contains("outside"));
        let mut bad = q;
        bad.scales.push(1.0);
        assert!(bad.check(2, 32).unwrap_err().contains("5 scales"));
    }
}
