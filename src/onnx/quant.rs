//! 4-bit weights in ONNX, both spellings onnxruntime's quantizer writes, into the IR's
//! [`QuantWeight`] (its value is the dequantized matrix, so everything downstream sees an
//! ordinary 2-D weight):
//!
//! - `com.microsoft::MatMulNBits` (attributes `K`, `N`, `bits` 4, `block_size` a power of two
//!   ≥ 16, `accuracy_level` (ignored: glufuse computes in floats); inputs `A`, packed `B`
//!   (uint8 `[N, ceil(K/block), block/2]`), `scales` (`[N, blocks]` or flat, f32 or f16),
//!   optional packed 4-bit `zero_points` (uint8 `[N, ceil(blocks/2)]` or flat), optional
//!   `g_idx` (only the trivial order `k / block`), optional `bias` `[N]`) becomes
//!   `QuantWeight [N, K]` → `Transpose` → `MatMul` (→ `Add` of the bias): exactly how an
//!   `[N, K]` float weight appears, so the fusion pass's projection recognizer applies as is.
//!   A `B` read by several nodes becomes one weight.
//! - `DequantizeLinear` (opset 21) over an `INT4` (22) or `UINT4` (21) initializer of rank 2,
//!   two elements per byte, low nibble first: blocked (`axis`, `block_size`), per axis (1-D
//!   scale) or per tensor (one scale), with an optional zero point of the data's type, becomes
//!   a `QuantWeight` in the initializer's layout, read by whatever read the `DequantizeLinear`.
//!
//! Every size is checked (with checked arithmetic) against the bytes that back it before
//! anything is allocated for it; a malformed packing is an error naming the node (exit 2).

use super::known::{KVals, Known};
use super::lower::Attrs;
use super::{open_external, proto, Loader};
use crate::ir::ops::quant::{BITS, MAX_BLOCK, MIN_BLOCK};
use crate::ir::*;
use std::path::Path;

/// The most elements a packed 4-bit tensor may declare (the graph's byte budget applies too).
const MAX_TENSOR_ELEMENTS: u64 = 1 << 32;

/// ONNX's `UINT4` element type.
pub const UINT4: i32 = 21;
/// ONNX's `INT4` element type.
pub const INT4: i32 = 22;

/// A 4-bit initializer as the model stores it: two elements per byte, low nibble first.
#[derive(Clone, Debug)]
pub struct Packed4 {
    /// `INT4` (else `UINT4`).
    pub signed: bool,
    /// Its dims.
    pub dims: Vec<u64>,
    /// The packed bytes: `ceil(elements / 2)`.
    pub bytes: Vec<u8>,
}

impl Packed4 {
    fn numel(&self) -> u64 {
        self.dims.iter().product()
    }
    /// Element `i` (sign-extended for `INT4`).
    fn get(&self, i: u64) -> i8 {
        let b = self.bytes[(i / 2) as usize];
        let q = if i % 2 == 0 { b & 0xF } else { b >> 4 } as i8;
        if self.signed && q >= 8 {
            q - 16
        } else {
            q
        }
    }
    fn type_name(&self) -> &'static str {
        if self.signed {
            "INT4"
        } else {
            "UINT4"
        }
    }
}

/// Decodes a 4-bit initializer, its size checked against the bytes that back it (`raw_data`,
/// `int32_data` holding one byte each, or external data under `dir`) before allocating.
pub fn decode_packed4(t: &proto::TensorProto, dir: &Path) -> std::result::Result<Packed4, String> {
    let code = t.data_type.unwrap_or(0);
    let mut n: u64 = 1;
    let mut dims = vec![];
    for &d in &t.dims {
        let d = u64::try_from(d).map_err(|_| format!("dim {d} is negative"))?;
        n = n
            .checked_mul(d)
            .filter(|&n| n <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| format!("dims {:?} hold more than {MAX_TENSOR_ELEMENTS} elements", t.dims))?;
        dims.push(d);
    }
    let want = n.div_ceil(2);
    let bytes = if t.data_location == Some(1) {
        use std::io::Read;
        let (mut f, file) = open_external(dir, t, want)?;
        let mut b = vec![0u8; want as usize];
        f.read_exact(&mut b).map_err(|e| format!("external data file {file}: {e}"))?;
        b
    } else if let Some(raw) = &t.raw_data {
        if raw.len() as u64 != want {
            return Err(format!(
                "holds {} bytes of packed 4-bit data but dims {:?} need {want} (two elements per byte)",
                raw.len(),
                t.dims
            ));
        }
        raw.clone()
    } else {
        if t.int32_data.len() as u64 != want {
            return Err(format!(
                "holds {} packed bytes in int32_data but dims {:?} need {want} (two elements per byte)",
                t.int32_data.len(),
                t.dims
            ));
        }
        t.int32_data
            .iter()
            .map(|&v| u8::try_from(v).map_err(|_| format!("int32_data value {v} is not one byte of packed 4-bit data")))
            .collect::<std::result::Result<_, _>>()?
    };
    Ok(Packed4 { signed: code == INT4, dims, bytes })
}

/// The name of input `i` of a node, if given.
fn input(n: &proto::NodeProto, i: usize) -> Option<&str> {
    n.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
}

/// Input `i`, which must be an initializer (`what` says what it is).
fn init<'a>(l: &'a Loader, n: &proto::NodeProto, i: usize, what: &str) -> std::result::Result<&'a Known, String> {
    let name = input(n, i).ok_or_else(|| format!("the {what} (input {i}) is missing"))?;
    l.known.get(name).ok_or_else(|| format!("the {what} (input {i}, '{name}') must be an initializer"))
}

/// A known tensor's values as bytes (uint8 data): each must be 0..=255.
fn bytes_of(k: &Known, what: &str) -> std::result::Result<Vec<u8>, String> {
    match &k.vals {
        KVals::Int(v) => v
            .iter()
            .enumerate()
            .map(|(i, &x)| u8::try_from(x).map_err(|_| format!("the {what} holds {x} at {i}, not a uint8 byte")))
            .collect(),
        KVals::Float(_) | KVals::Bool(_) | KVals::Sym(_) => Err(format!("the {what} must be uint8, not {}", k.dtype)),
    }
}

/// A known tensor's float values (f32 or f16: the dtype a scale gives the weight).
fn floats_of(k: &Known, what: &str) -> std::result::Result<(DType, Vec<f32>), String> {
    match (&k.vals, k.dtype) {
        (KVals::Float(v), DType::F32 | DType::F16) => Ok((k.dtype, v.clone())),
        _ => Err(format!("the {what} must be f32 or f16, not {}", k.dtype)),
    }
}

fn check_block(block: i64) -> std::result::Result<u64, String> {
    match u64::try_from(block) {
        Ok(b) if (MIN_BLOCK..=MAX_BLOCK).contains(&b) && b.is_power_of_two() => Ok(b),
        _ => Err(format!("block_size {block} must be a power of two from {MIN_BLOCK} to {MAX_BLOCK}")),
    }
}

/// A `[rows, cols]` quantized weight's node, checked by type inference.
fn add_weight(
    l: &mut Loader,
    name: &str,
    q: QuantWeight,
    dtype: DType,
    rows: u64,
    cols: u64,
) -> std::result::Result<Value, String> {
    let ty = TensorType::new(dtype, shape_of(&[rows, cols]));
    let op = Op::QuantWeight(q);
    op.infer(&[], std::slice::from_ref(&ty))?;
    l.materialise(name, op, ty)
}

/// Adds a node computing `op` over `ins`, its type inferred.
fn add(l: &mut Loader, name: &str, op: Op, ins: &[Value]) -> std::result::Result<Value, String> {
    let tys: Vec<&TensorType> = ins.iter().map(|&v| l.g.ty(v)).collect();
    let outs = op.infer(&tys, &[])?;
    let unique = l.unique(name, 1);
    let n = l.g.add_node(unique, op, ins, outs).map_err(|e| e.to_string())?;
    Ok(Value::of(n))
}

/// `com.microsoft::MatMulNBits` as `QuantWeight [N, K]` → `Transpose` → `MatMul` (→ `Add`):
/// the value of output 0 (see the module documentation).
pub(super) fn matmul_nbits(
    l: &mut Loader,
    label: &str,
    n: &proto::NodeProto,
    attrs: &Attrs,
) -> std::result::Result<Value, String> {
    let attr = |k: &str| attrs.int(k).ok_or_else(|| format!("attribute {k} is missing"));
    let (k, nn) = (attr("K")?, attr("N")?);
    let bits = attrs.int("bits").unwrap_or(4);
    if bits != BITS as i64 {
        return Err(format!("bits={bits}: glufuse reads 4-bit MatMulNBits only"));
    }
    let block = check_block(attr("block_size")?)?;
    let (k, nn) = match (u64::try_from(k), u64::try_from(nn)) {
        (Ok(k), Ok(n)) if k > 0 && n > 0 => (k, n),
        _ => return Err(format!("K={k} and N={nn} must be positive")),
    };
    let blocks = k.div_ceil(block);
    // Packed B: [N, blocks, block/2] bytes.
    let b = init(l, n, 1, "packed weight B")?;
    let row_bytes = blocks.checked_mul(block / 2).ok_or("K overflows")?;
    let want = nn.checked_mul(row_bytes).ok_or("N·K overflows")?;
    let dims_ok = match b.dims.as_slice() {
        [d0, d1, d2] => (*d0 as u64, *d1 as u64, *d2 as u64) == (nn, blocks, block / 2),
        [d0, d1] => (*d0 as u64, *d1 as u64) == (nn, row_bytes),
        [d0] => *d0 as u64 == want,
        _ => false,
    };
    if !dims_ok {
        return Err(format!(
            "the packed weight B has dims {:?}, but K={k}, N={nn}, block_size={block} need [{nn}, {blocks}, {}] ({want} bytes)",
            b.dims,
            block / 2
        ));
    }
    let b_name = input(n, 1).unwrap_or_default().to_string();
    // Scales: [N, blocks] or flat.
    let s = init(l, n, 2, "scales")?;
    let (dtype, scales) = floats_of(s, "scales")?;
    let want_s = nn * blocks;
    let s_ok = match s.dims.as_slice() {
        [d0, d1] => (*d0 as u64, *d1 as u64) == (nn, blocks),
        [d0] => *d0 as u64 == want_s,
        _ => false,
    };
    if !s_ok {
        return Err(format!(
            "the scales have dims {:?}, but N={nn} with {blocks} blocks need [{nn}, {blocks}]",
            s.dims
        ));
    }
    // Zero points: 4-bit, packed two per byte per row, [N, ceil(blocks/2)] or flat.
    let zero_points = match input(n, 3) {
        None => None,
        Some(_) => {
            let z = init(l, n, 3, "zero points")?;
            if z.dtype.is_float() {
                return Err("floating-point zero points are not supported (only packed 4-bit ones)".into());
            }
            let per_row = blocks.div_ceil(2);
            let want_z = nn * per_row;
            let z_ok = match z.dims.as_slice() {
                [d0, d1] => (*d0 as u64, *d1 as u64) == (nn, per_row),
                [d0] => *d0 as u64 == want_z,
                _ => false,
            };
            if !z_ok {
                return Err(format!(
                    "the zero points have dims {:?}, but N={nn} with {blocks} blocks packed two per byte need [{nn}, {per_row}]",
                    z.dims
                ));
            }
            let zb = bytes_of(z, "zero points")?;
            let mut zp = Vec::with_capacity(want_s as usize);
            for r in 0..nn {
                for blk in 0..blocks {
                    let byte = zb[(r * per_row + blk / 2) as usize];
                    zp.push((if blk % 2 == 0 { byte & 0xF } else { byte >> 4 }) as i8);
                }
            }
            Some(zp)
        }
    };
    // g_idx: only the trivial order.
    if input(n, 4).is_some() {
        let g = init(l, n, 4, "g_idx")?;
        let trivial = match &g.vals {
            KVals::Int(v) => v.len() as u64 == k && v.iter().enumerate().all(|(i, &x)| x == i as i64 / block as i64),
            _ => false,
        };
        if !trivial {
            return Err("g_idx reorders the blocks of k: only the trivial order (k / block_size) is supported".into());
        }
    }
    let data = bytes_of(b, "packed weight B")?;
    let a_name = input(n, 0).ok_or("input A is missing")?.to_string();
    let x = l.value(&a_name, &a_name)?;
    let xt = l.g.ty(x).clone();
    if xt.dtype != dtype {
        return Err(format!("A is {} but the scales are {dtype}: they must agree", xt.dtype));
    }
    let q = QuantWeight {
        bits: BITS,
        signed: false,
        block,
        axis: 1,
        row_nibbles: blocks * block,
        data,
        scales,
        zero_points,
        origin: "MatMulNBits".into(),
    };
    // One weight per packed B (and scales and zero points), however many nodes read it.
    let key = format!("{b_name}\u{0}{}\u{0}{}", input(n, 2).unwrap_or(""), input(n, 3).unwrap_or(""));
    let w = match l.quant_weights.get(&key) {
        Some(&w) => w,
        None => {
            let w = add_weight(l, &b_name, q, dtype, nn, k)?;
            l.quant_weights.insert(key, w);
            w
        }
    };
    let wt = add(l, &format!("{label}.weight_t"), Op::Transpose { perm: vec![1, 0] }, &[w])?;
    let bias = input(n, 5).map(str::to_string);
    let Some(bias) = bias else {
        return add(l, label, Op::MatMul, &[x, wt]);
    };
    let y = add(l, &format!("{label}.matmul"), Op::MatMul, &[x, wt])?;
    let bv = l.value(&bias, &bias)?;
    add(l, label, Op::Binary(BinaryOp::Add), &[y, bv])
}

/// Opset-21 `DequantizeLinear` of a 4-bit initializer `p` as a `QuantWeight` in its layout.
pub(super) fn dequantize_linear(
    l: &mut Loader,
    n: &proto::NodeProto,
    attrs: &Attrs,
    p: &Packed4,
) -> std::result::Result<Value, String> {
    let name = input(n, 0).unwrap_or_default().to_string();
    let [rows, cols] = p.dims[..] else {
        return Err(format!(
            "a 4-bit DequantizeLinear over data of rank {} is not supported (2-D weights only)",
            p.dims.len()
        ));
    };
    let s = init(l, n, 1, "scale")?;
    let (dtype, scales) = floats_of(s, "scale")?;
    if let Some(od) = attrs.int("output_dtype").filter(|&d| d != 0) {
        let want = if dtype == DType::F16 { 10 } else { 1 };
        if od != want {
            return Err(format!("output_dtype {od} differs from the scale's type ({dtype})"));
        }
    }
    let sdims: Vec<u64> = s.dims.iter().map(|&d| d as u64).collect();
    let axis = attrs.int("axis").unwrap_or(1);
    let ax = match axis {
        0 | -2 => 0usize,
        1 | -1 => 1,
        a => return Err(format!("axis {a} is out of range for 2-D data")),
    };
    let block_size = attrs.int("block_size").unwrap_or(0);
    // The blocked axis (the scale's index runs along it in blocks) and the block size, with
    // scales as the IR indexes them.
    let (block, blocked_axis, scales) = if block_size != 0 {
        let block = check_block(block_size)?;
        let mut want = vec![rows, cols];
        want[ax] = want[ax].div_ceil(block);
        if sdims != want {
            return Err(format!(
                "the scale has dims {sdims:?}, but data [{rows}, {cols}] in blocks of {block} along axis {axis} needs {want:?}"
            ));
        }
        (block, ax, scales)
    } else if sdims.iter().product::<u64>() == 1 {
        // One scale for the tensor: one block spanning every row, per column.
        let block = rows.max(MIN_BLOCK).checked_next_power_of_two().ok_or("too many rows")?;
        let cols_us = usize::try_from(cols).map_err(|_| "too many columns")?;
        (block, 0, vec![scales[0]; cols_us])
    } else {
        // One scale per index of `axis`: blocks along the other axis, spanning it.
        let len = if ax == 0 { rows } else { cols };
        if sdims != [len] {
            return Err(format!("a per-axis scale along axis {axis} must have dims [{len}], not {sdims:?}"));
        }
        let other = if ax == 0 { cols } else { rows };
        let block = other.max(MIN_BLOCK).checked_next_power_of_two().ok_or("too many elements")?;
        // Per row (axis 0): one block spanning the columns (the IR's axis 1); per column: one
        // spanning the rows (the IR's axis 0).
        (block, 1 - ax, scales)
    };
    let zero_points = match input(n, 2) {
        None => None,
        Some(zn) => {
            let z = l.packed.get(zn).ok_or_else(|| {
                format!(
                    "the zero point (input 2, '{zn}') must be a 4-bit initializer of the data's type, {}",
                    p.type_name()
                )
            })?;
            if z.signed != p.signed {
                return Err(format!("the zero point is {} but the data is {}", z.type_name(), p.type_name()));
            }
            if z.dims != sdims {
                return Err(format!("the zero point has dims {:?} but the scale {sdims:?}", z.dims));
            }
            let mut v: Vec<i8> = (0..z.numel()).map(|i| z.get(i)).collect();
            if block_size == 0 && sdims.iter().product::<u64>() == 1 {
                v = vec![v[0]; scales.len()];
            }
            Some(v)
        }
    };
    let q = QuantWeight {
        bits: BITS,
        signed: p.signed,
        block,
        axis: blocked_axis,
        row_nibbles: cols,
        data: p.bytes.clone(),
        scales,
        zero_points,
        origin: "DequantizeLinear".into(),
    };
    add_weight(l, &name, q, dtype, rows, cols)
}
