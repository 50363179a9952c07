//! Reading graphs from files (by extension) and writing outputs atomically: every file the
//! CLI writes goes to a temporary file in the same folder first and is renamed into place,
//! so an error never leaves a partial file or clobbers an existing one.

use crate::{Error, Graph, Result};
use std::io::Write;
use std::path::Path;

/// Loads a graph from a `.json` file (or `.onnx`, where supported), verified.
pub fn load_graph(path: &Path) -> Result<Graph> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let read = || std::fs::read(path).map_err(|e| Error::input(format!("cannot read: {e}")).in_file(path));
    match ext.as_str() {
        "onnx" => load_onnx(path, &read()?),
        _ => {
            let bytes = read()?;
            let text = std::str::from_utf8(&bytes).map_err(|_| Error::input("not UTF-8 text").in_file(path))?;
            crate::json::from_str(text).map_err(|e| e.in_file(path))
        }
    }
}

fn load_onnx(path: &Path, bytes: &[u8]) -> Result<Graph> {
    crate::onnx::load(path, bytes)
}

/// Writes `bytes` to `path` atomically (temp file in the same folder, then rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let werr = |e: std::io::Error| Error::Write { path: path.to_path_buf(), msg: e.to_string() };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(werr)?;
    tmp.write_all(bytes).map_err(werr)?;
    tmp.as_file().sync_all().map_err(werr)?;
    tmp.persist(path).map_err(|e| werr(e.error))?;
    Ok(())
}

/// Reads a `.npy` file as a tensor of the given graph type: its dtype must match (`<f4` for
/// f32, `<f2` for f16), its shape must fit the type's dims, C order only.
pub fn read_npy(path: &Path, want: &crate::ir::TensorType) -> Result<crate::tensor::Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::input(format!("cannot read: {e}")).in_file(path))?;
    parse_npy(&bytes, want).map_err(|e| e.in_file(path))
}

/// Parses `.npy` bytes as a tensor of the given graph type (see [`read_npy`]).
pub fn parse_npy(bytes: &[u8], want: &crate::ir::TensorType) -> Result<crate::tensor::Tensor> {
    use crate::ir::DType;
    let bad = |m: String| Error::input(m);
    check_npy_header(bytes).map_err(bad)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad("Fortran-ordered arrays are not supported; save with C order".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let (elem, ok) = match want.dtype {
        DType::F32 => (4u64, descr == "'<f4'"),
        DType::F16 => (2u64, descr == "'<f2'"),
        DType::I64 => (8u64, false),
    };
    if !ok {
        return Err(bad(format!("holds dtype {descr}, but the graph input is {}", want.dtype)));
    }
    // The header's shape must be backed by data before anything is allocated for it.
    let n = npy.shape().iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if n.and_then(|n| n.checked_mul(elem)).is_none_or(|b| b > bytes.len() as u64) {
        return Err(bad(format!("its header claims shape {shape:?}, more data than the file holds")));
    }
    let mut b = crate::shape::Bindings::new();
    crate::shape::bind(want, &shape, &mut b)
        .map_err(|m| bad(format!("shape {shape:?} does not fit the graph input: {m}")))?;
    let data: Vec<f32> = match want.dtype {
        DType::F16 => npy
            .into_vec::<half::f16>()
            .map_err(|e| bad(format!("cannot read the data: {e}")))?
            .into_iter()
            .map(f32::from)
            .collect(),
        _ => npy.into_vec::<f32>().map_err(|e| bad(format!("cannot read the data: {e}")))?,
    };
    crate::tensor::Tensor::new(shape, data)
}

/// Checks a `.npy` header's framing and shape before it reaches the header parser: a header
/// nested deeper than `{'shape': (..)}` sent npyz's parser into exponential time (found by
/// fuzzing, kept in `fuzz/regressions/npy/`), and glufuse reads plain arrays only.
fn check_npy_header(bytes: &[u8]) -> std::result::Result<(), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a valid .npy file (no NUMPY magic)".into());
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(format!("not a valid .npy file (format version {v})")),
    };
    let header = bytes.get(start..start.saturating_add(len)).ok_or("not a valid .npy file (truncated header)")?;
    let mut depth = 0usize;
    for &c in header {
        match c {
            b'[' => return Err("not a valid .npy file: structured or nested dtypes are not supported".into()),
            b'{' | b'(' => {
                depth += 1;
                if depth > 2 {
                    return Err("not a valid .npy file: its header nests too deeply".into());
                }
            }
            b'}' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    // npyz multiplies the shape out unchecked (a panic under overflow checks, found by
    // fuzzing): bound it here.
    let text = String::from_utf8_lossy(header);
    let shape = text
        .split_once("'shape'")
        .and_then(|(_, rest)| rest.split_once('(')?.1.split_once(')').map(|(inside, _)| inside.to_string()))
        .ok_or("not a valid .npy file: its header has no shape")?;
    let mut n: u64 = 1;
    for dim in shape.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: u64 = dim.parse().map_err(|_| format!("not a valid .npy file: shape entry {dim:?} is not a size"))?;
        n = n.checked_mul(d).ok_or("not a valid .npy file: its shape holds more elements than can be counted")?;
    }
    Ok(())
}

/// Writes a tensor as a little-endian f32 `.npy` file, atomically.
pub fn write_npy(path: &Path, t: &crate::tensor::Tensor) -> Result<()> {
    let mut buf = vec![];
    let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
    let io = |e: std::io::Error| Error::Internal(format!("encoding .npy: {e}"));
    {
        use npyz::WriterBuilder;
        let mut w =
            npyz::WriteOptions::<f32>::new().default_dtype().shape(&shape).writer(&mut buf).begin_nd().map_err(io)?;
        w.extend(t.data.iter().copied()).map_err(io)?;
        w.finish().map_err(io)?;
    }
    write_atomic(path, &buf)
}
