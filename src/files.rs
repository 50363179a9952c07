//! Reading graphs from files (the format told by the content, the extension a hint) and
//! writing outputs.
//!
//! Reads take regular files only ([`read_regular`]): a directory, FIFO, device or socket is
//! refused before it is opened for reading (and checked again on the opened file), and a file
//! is read whole only within the budget ([`crate::limits`]), so `/dev/zero` or a FIFO never
//! hangs or fills memory.
//!
//! Every file the CLI writes goes through [`write_atomic`]: a regular file (new, or one that is
//! replaced) is written to a temporary file in the same folder first and renamed into place,
//! so an error never leaves a partial file or clobbers an existing one; a new file gets the
//! usual permissions (0666 less the umask), a replaced one keeps its own. A character device
//! (`/dev/null`) or a FIFO is written straight through, never replaced; [`write_output`] also
//! takes `-` for standard output.

use crate::{Error, Graph, Result};
use std::io::{Read, Write};
use std::path::Path;

/// The graph formats glufuse reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// glufuse's JSON (`glufuse.graph/1`).
    Json,
    /// An ONNX model (protobuf).
    Onnx,
}

/// Loads a graph from a file, verified: glufuse's JSON or an ONNX model, told apart by the
/// content ([`sniff`]), so an ONNX model named `.json` loads, and so does a JSON graph named
/// `.onnx`. A file that is neither says what it looks like. Errors name the file.
pub fn load_graph(path: &Path) -> Result<Graph> {
    load_graph_with(path, &std::collections::HashMap::new())
}

/// [`load_graph`] with graph inputs fixed to values: an ONNX model's `If` on one of them
/// loads as the branch the value picks ([`crate::onnx::load_with`]); a JSON graph has no
/// `If`, and `fixed` changes nothing there.
pub fn load_graph_with(path: &Path, fixed: &std::collections::HashMap<String, crate::tensor::Tensor>) -> Result<Graph> {
    let bytes = read_regular(path).map_err(|e| e.in_file(path))?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let hint = match ext.as_str() {
        "onnx" => Some(GraphFormat::Onnx),
        "json" => Some(GraphFormat::Json),
        _ => None,
    };
    match sniff(&bytes, hint).map_err(|m| Error::input(m).in_file(path))? {
        GraphFormat::Onnx => crate::onnx::load_with(path, &bytes, fixed),
        GraphFormat::Json => {
            let text = std::str::from_utf8(&bytes).map_err(|_| Error::input("not UTF-8 text").in_file(path))?;
            // A data file the graph names is read from this file's folder (where a link
            // points: `write_graph` writes it beside the file it writes), by its own name.
            let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
            let dir = real.parent().unwrap_or(Path::new(""));
            let mut read = |name: &str| -> Result<Vec<u8>> {
                if !is_plain_file_name(name) {
                    return Err(Error::input(format!(
                        "the data file {name:?} must be named by a file name alone (it sits beside the JSON file)"
                    )));
                }
                let p = dir.join(name);
                read_regular(&p).map_err(|e| e.in_file(&p))
            };
            let g = crate::json::from_str_with(text, &mut read).map_err(|e| e.in_file(path))?;
            // (No `If` here; a value fixed for a name that is no input is refused all the same.)
            let names: Vec<&str> = g.input_nodes().into_iter().map(|n| g.node(n).name.as_str()).collect();
            crate::onnx::refuse_unknown_inputs(fixed, &names).map_err(|e| e.in_file(path))?;
            Ok(g)
        }
    }
}

/// Whether `name` names a file by itself: not empty, no folder in it, not `.` or `..`.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// Where [`write_graph`] keeps a graph's weights' values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DataFile {
    /// In a data file where they take [`DATA_FILE_MIN_BYTES`] or more in all, else inline.
    #[default]
    Auto,
    /// In a data file (where the graph has inline weights at all).
    Always,
    /// Inline, as numbers in the JSON text.
    Never,
}

/// Bytes of weights' values from which [`DataFile::Auto`] writes them to a data file: as JSON
/// numbers a model's weights take about 20 characters a value (a 2.5 GB f32 build of a
/// 0.5B-parameter model made 14 GB of JSON), read back as one whole document.
pub const DATA_FILE_MIN_BYTES: u64 = 16 << 20;

/// The data file [`write_graph`] writes beside the JSON file `path`: `PATH.data`, beside the
/// file a symbolic link points to where `path` is one (the JSON is written there too).
pub fn data_file_path(path: &Path) -> Option<std::path::PathBuf> {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let real = if link { std::fs::canonicalize(path).ok()? } else { path.to_path_buf() };
    let name = real.file_name()?.to_str()?;
    Some(real.with_file_name(format!("{name}.data")))
}

/// Writes graph `g` as JSON ([`crate::json`]) to `path` (`-` for standard output), its
/// weights' values in the data file [`data_file_path`] beside it where `data` asks for one
/// and `path` is a regular file (or none yet; standard output, a character device or a FIFO
/// take the values inline). The two are written to temporary files first and renamed into
/// place only once both are whole, the data file first, so that an error leaves neither
/// half-written. Returns the data file's path where one was written.
pub fn write_graph(path: &Path, g: &Graph, data: DataFile) -> Result<Option<std::path::PathBuf>> {
    let bytes = crate::json::data_bytes(g)?;
    let wanted = match data {
        DataFile::Never => false,
        DataFile::Always => bytes > 0,
        DataFile::Auto => bytes >= DATA_FILE_MIN_BYTES,
    };
    let regular = path != Path::new("-") && std::fs::metadata(path).map_or(true, |m| m.is_file());
    let data_path = data_file_path(path).filter(|_| wanted && regular);
    let Some(dp) = data_path else {
        write_output_with(path, &mut |w| crate::json::write(g, w))?;
        return Ok(None);
    };
    let name = dp.file_name().and_then(|n| n.to_str()).expect("made from a UTF-8 name").to_string();
    let named = |e: Error, p: &Path| match e {
        Error::Write { msg, .. } => Error::Write { path: p.to_path_buf(), msg },
        e => e,
    };
    let staged_data = stage_atomic(&dp, &mut |w| crate::json::write_data(g, w).map(|_| ()).map_err(|e| named(e, &dp)))?;
    let staged_json =
        stage_atomic(path, &mut |w| crate::json::write_with_data_file(g, w, &name).map_err(|e| named(e, path)))?;
    staged_data.persist()?;
    staged_json.persist()?;
    Ok(Some(dp))
}

/// Which format `bytes` hold: JSON text (an object, after any byte-order mark and white
/// space) or an ONNX model (a protobuf message whose first field is one of `ModelProto`'s,
/// as every exporter writes it). `hint` (from the extension) decides only what neither
/// settles: binary content with an `.onnx` name goes to the ONNX reader, whose error then
/// says what is wrong. Anything else is an error saying what the content looks like.
pub fn sniff(bytes: &[u8], hint: Option<GraphFormat>) -> std::result::Result<GraphFormat, String> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = body.trim_ascii_start();
    if text.first() == Some(&b'{') {
        return Ok(GraphFormat::Json);
    }
    if is_model_proto_start(body) {
        return Ok(GraphFormat::Onnx);
    }
    if hint == Some(GraphFormat::Onnx) && !looks_like_text(body) && known_kind(body).is_none() {
        return Ok(GraphFormat::Onnx);
    }
    Err(format!("neither a glufuse JSON graph nor an ONNX model: {}", looks_like(bytes)))
}

/// Whether the bytes open with a field of ONNX's `ModelProto` (field numbers 1 to 8, 14, 20
/// and 25, each with its wire type), as a serialised model does.
fn is_model_proto_start(b: &[u8]) -> bool {
    let Some(&tag) = b.first() else { return false };
    // One-byte tags: field << 3 | wire type. ir_version (1), model_version (5): varints;
    // producer_name (2), producer_version (3), domain (4), doc_string (6), graph (7),
    // opset_import (8), metadata_props (14): length-delimited.
    let one = matches!(tag, 0x08 | 0x28 | 0x12 | 0x1a | 0x22 | 0x32 | 0x3a | 0x42 | 0x72);
    // Two-byte tags: training_info (20), functions (25).
    let two = matches!(b, [0xa2, 0x01, ..] | [0xca, 0x01, ..]);
    (one || two) && b.len() >= 2
}

/// Whether the bytes read as text (UTF-8 without control characters other than white space).
fn looks_like_text(b: &[u8]) -> bool {
    let head = &b[..b.len().min(512)];
    // A multi-byte character cut at the end of the head is still text.
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none() && e.valid_up_to() + 4 > head.len(),
    };
    valid && head.iter().all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r'))
}

/// What a file that is not a graph looks like, for the error that refuses it.
fn looks_like(b: &[u8]) -> String {
    if let Some(what) = known_kind(b) {
        return what;
    }
    if looks_like_text(b) {
        let first = String::from_utf8_lossy(&b[..b.len().min(200)]);
        let line = first.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        let line: String = line.chars().take(40).collect();
        return format!("it is text that is not a JSON object (it starts {line:?})");
    }
    let head: Vec<String> = b.iter().take(8).map(|x| format!("{x:02x}")).collect();
    format!("it is binary data that starts with bytes {}", head.join(" "))
}

/// What the bytes are, where they open like a kind of file that is known not to be a graph
/// (empty, NumPy, zip, GGUF, HDF5, pickle, safetensors, ...).
fn known_kind(b: &[u8]) -> Option<String> {
    let magic: [(&[u8], &str); 8] = [
        (b"\x93NUMPY", "a NumPy .npy array (give it to --input)"),
        (b"PK\x03\x04", "a zip archive (a PyTorch .pt/.pth checkpoint? export the model to ONNX)"),
        (b"GGUF", "a GGUF model (llama.cpp); glufuse reads ONNX"),
        (b"\x89HDF", "an HDF5 file (a Keras .h5 model? export it to ONNX)"),
        (b"\x89PNG", "a PNG image"),
        (b"\x1f\x8b", "gzip-compressed data (decompress it first)"),
        (b"\x7fELF", "an executable (ELF)"),
        (b"%PDF", "a PDF document"),
    ];
    if b.is_empty() {
        return Some("the file is empty".into());
    }
    if let Some((_, what)) = magic.iter().find(|(m, _)| b.starts_with(m)) {
        return Some(format!("it looks like {what}"));
    }
    if b.len() >= 2 && b[0] == 0x80 && (2..=5).contains(&b[1]) {
        return Some("it looks like a Python pickle (a PyTorch checkpoint? export the model to ONNX)".into());
    }
    // safetensors: an 8-byte little-endian header length, then a JSON header.
    if b.len() > 9 && b[8] == b'{' {
        return Some("it looks like a safetensors file (weights only, no graph; export the model to ONNX)".into());
    }
    None
}

/// What a file that is not a regular file is, in words (`a directory`, `a FIFO`, ...).
fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

/// Opens a regular file for reading, refusing anything else before opening it for reading:
/// the path is looked at first (following symbolic links), then opened without blocking (a
/// FIFO swapped in between cannot hang the open) and looked at again. Returns the file and
/// its size; errors say what the path is instead.
pub fn open_regular(path: &Path) -> std::result::Result<(std::fs::File, u64), String> {
    let m = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if !m.is_file() {
        return Err(format!("cannot read: it is {}, not a regular file", kind_of(m.file_type())));
    }
    let mut o = std::fs::OpenOptions::new();
    o.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.custom_flags(libc::O_NONBLOCK);
    }
    let f = o.open(path).map_err(|e| format!("cannot read: {e}"))?;
    let m = f.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if !m.is_file() {
        return Err(format!("cannot read: it is {}, not a regular file", kind_of(m.file_type())));
    }
    Ok((f, m.len()))
}

/// Reads a regular file whole ([`open_regular`]), within the budget for a file read whole
/// ([`crate::limits::Budget::max_file_bytes`]), checked before reading. The error does not
/// name the file: callers attach it.
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let (f, len) = open_regular(path).map_err(Error::input)?;
    let limit = crate::ir::limits::current().max_file_bytes;
    let too_big = |n: u64| crate::ir::limits::current().check_file_bytes(n).map_err(Error::input);
    too_big(len)?;
    let mut buf = Vec::with_capacity(len as usize);
    // A file that grows while it is read is still read only up to the budget.
    f.take(limit.saturating_add(1)).read_to_end(&mut buf).map_err(|e| Error::input(format!("cannot read: {e}")))?;
    too_big(buf.len() as u64)?;
    Ok(buf)
}

/// Writes `bytes` to `path`, or to standard output for `-` (see [`write_atomic`]).
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    write_output_with(path, &mut |w| {
        w.write_all(bytes).map_err(|e| Error::Write { path: path.into(), msg: e.to_string() })
    })
}

/// [`write_output`] of what `write` writes to the writer it is given (a graph's JSON,
/// [`crate::json::write`], which a large model's weights make too large to hold whole): to a
/// temporary file first where `path` is a regular file, so that an error leaves nothing
/// half-written. An [`Error::Write`] from `write` is given `path`.
pub fn write_output_with(path: &Path, write: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<()> {
    let named = |e: Error, p: &Path| match e {
        Error::Write { msg, .. } => Error::Write { path: p.to_path_buf(), msg },
        e => e,
    };
    if path == Path::new("-") {
        let stdout = Path::new("standard output");
        let werr = |e: std::io::Error| Error::Write { path: stdout.into(), msg: e.to_string() };
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        write(&mut out).map_err(|e| named(e, stdout))?;
        return out.flush().map_err(werr);
    }
    write_atomic_with(path, &mut |w| write(w).map_err(|e| named(e, path)))
}

/// Writes `bytes` to `path`: a regular file atomically (a temporary file in the same folder,
/// then a rename; a replaced file keeps its permissions, a new one gets 0666 less the umask,
/// a symbolic link to a regular file has its target replaced and stays a link); a character
/// device or a FIFO straight through (it is never replaced); a directory, block device or
/// socket is an error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, &mut |w| {
        w.write_all(bytes).map_err(|e| Error::Write { path: path.into(), msg: io_reason(&e) })
    })
}

/// [`write_atomic`] of what `write` writes to the writer it is given (buffered).
pub fn write_atomic_with(path: &Path, write: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<()> {
    stage_atomic(path, write)?.persist()
}

/// A file [`stage_atomic`] wrote, waiting to be renamed into place.
struct Staged {
    /// The temporary file and where it goes; none where the file was written straight
    /// through (a character device or a FIFO).
    tmp: Option<(tempfile::NamedTempFile, std::path::PathBuf)>,
    /// The path errors name.
    path: std::path::PathBuf,
}

impl Staged {
    /// Renames the temporary file into place.
    fn persist(self) -> Result<()> {
        if let Some((tmp, target)) = self.tmp {
            tmp.persist(&target).map_err(|e| Error::Write { path: self.path, msg: io_reason(&e.error) })?;
        }
        Ok(())
    }
}

/// [`write_atomic_with`] up to the rename: the file whole in a temporary file beside its
/// target (or written straight through to a character device or a FIFO).
fn stage_atomic(path: &Path, write: &mut dyn FnMut(&mut dyn Write) -> Result<()>) -> Result<Staged> {
    // Errors name `path`, never the temporary file ([`io_reason`]).
    let werr = |e: std::io::Error| Error::Write { path: path.to_path_buf(), msg: io_reason(&e) };
    let wmsg = |m: String| Error::Write { path: path.to_path_buf(), msg: m };
    let existing = match std::fs::metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(werr(e)),
    };
    let mut target = path.to_path_buf();
    if let Some(m) = &existing {
        let t = m.file_type();
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if t.is_char_device() || t.is_fifo() {
                let f = std::fs::OpenOptions::new().write(true).open(path).map_err(werr)?;
                let mut f = std::io::BufWriter::new(f);
                write(&mut f)?;
                f.flush().map_err(werr)?;
                return Ok(Staged { tmp: None, path: path.to_path_buf() });
            }
        }
        if !t.is_file() {
            return Err(wmsg(format!(
                "it is {}; glufuse writes regular files, and straight through to character devices and FIFOs",
                kind_of(t)
            )));
        }
        // Replace what a symbolic link points to, not the link.
        if std::fs::symlink_metadata(path).is_ok_and(|l| l.file_type().is_symlink()) {
            target = std::fs::canonicalize(path).map_err(werr)?;
        }
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let mut b = tempfile::Builder::new();
    // The mode asked of open(2): the kernel takes the umask off, as for any new file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = b.tempfile_in(&dir).map_err(werr)?;
    if let Some(m) = &existing {
        tmp.as_file().set_permissions(m.permissions()).map_err(werr)?;
    }
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.flush().map_err(werr)?;
    }
    tmp.as_file().sync_all().map_err(werr)?;
    Ok(Staged { tmp: Some((tmp, target)), path: path.to_path_buf() })
}

/// What an I/O error says, without the path the `tempfile` crate adds (the temporary file's,
/// which the user never asked for): the operating system's message alone.
fn io_reason(e: &std::io::Error) -> String {
    if let Some(code) = e.raw_os_error() {
        return std::io::Error::from_raw_os_error(code).to_string();
    }
    // tempfile wraps the OS error as "<error> at path <temporary file>": keep the error.
    let text = e.to_string();
    match text.split_once(" at path ") {
        Some((reason, _)) => reason.to_string(),
        None => text,
    }
}

/// Reads a `.npy` file as a tensor of the given graph type: its dtype must match (`<f4` for
/// f32, `<f2` for f16, `<i8` for i64, `<i4` for i32, `|b1` or `|u1` for bool), its shape must
/// fit the type's dims, C order only.
pub fn read_npy(path: &Path, want: &crate::ir::TensorType) -> Result<crate::tensor::Tensor> {
    let bytes = read_regular(path).map_err(|e| e.in_file(path))?;
    parse_npy(&bytes, want).map_err(|e| e.in_file(path))
}

/// Reads named `.npy` files as the graph's inputs, each checked against its input's type,
/// and binds the symbols of the inputs' types from their shapes (`given`: sizes fixed
/// beforehand). What `interp` and `run` share. Errors (exit code 2) name the input: one the
/// graph does not have (listing the ones it has), one given twice, a file of another dtype
/// or rank, or a symbol two inputs (or `given`) bind to different sizes.
pub fn read_inputs(
    g: &Graph,
    files: &[(String, std::path::PathBuf)],
    given: &crate::shape::Bindings,
) -> Result<(std::collections::HashMap<String, crate::tensor::Tensor>, crate::shape::Bindings)> {
    use crate::ir::Op;
    let names: Vec<String> = g.input_nodes().into_iter().map(|n| g.node(n).name.clone()).collect();
    let mut tensors = std::collections::HashMap::new();
    let mut types = vec![];
    for (name, path) in files {
        let n = g.find(name).filter(|&n| matches!(g.node(n).op, Op::Input)).ok_or_else(|| {
            Error::input(format!("the graph has no input '{name}'; its inputs are: {}", names.join(", ")))
        })?;
        if tensors.contains_key(name) {
            return Err(Error::input(format!("graph input '{name}' is given twice")));
        }
        let ty = g.node(n).outputs[0].clone();
        let t = read_npy(path, &ty).map_err(|e| Error::input(format!("graph input '{name}': {e}")))?;
        tensors.insert(name.clone(), t);
        types.push((name.clone(), ty));
    }
    let mut b = given.clone();
    let list: Vec<(&str, &crate::ir::TensorType, &[usize])> =
        types.iter().map(|(n, ty)| (n.as_str(), ty, tensors[n].shape())).collect();
    crate::shape::bind_inputs(&list, &mut b).map_err(|e| match e {
        Error::Graph { node, msg } => Error::input(format!("graph input '{node}': {msg}")),
        e => e,
    })?;
    Ok((tensors, b))
}

/// The `.npy` descriptors a graph dtype is read from, the first the one it is written as.
fn npy_descrs(d: crate::ir::DType) -> &'static [&'static str] {
    use crate::ir::DType;
    match d {
        DType::F32 => &["<f4"],
        DType::F16 => &["<f2"],
        DType::I64 => &["<i8"],
        DType::I32 => &["<i4"],
        DType::Bool => &["|b1", "|u1"],
    }
}

/// Parses `.npy` bytes as a tensor of the given graph type (see [`read_npy`]).
pub fn parse_npy(bytes: &[u8], want: &crate::ir::TensorType) -> Result<crate::tensor::Tensor> {
    use crate::ir::DType;
    use crate::tensor::{Data, Tensor};
    let bad = |m: String| Error::input(m);
    check_npy_header(bytes).map_err(bad)?;
    let npy = npyz::NpyFile::new(bytes).map_err(|e| bad(format!("not a valid .npy file: {e}")))?;
    if npy.order() != npyz::Order::C {
        return Err(bad("Fortran-ordered arrays are not supported; save with C order".into()));
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let descr = npy.dtype().descr();
    let plain = descr.trim_matches('\'');
    if !npy_descrs(want.dtype).contains(&plain) {
        let what = DType::ALL.into_iter().find(|&d| npy_descrs(d).contains(&plain));
        let what = what.map_or(String::new(), |d| format!(" ({d})"));
        return Err(bad(format!("holds dtype {descr}{what}, but the graph input is {}", want.dtype)));
    }
    // The header's shape must be backed by data before anything is allocated for it.
    let elem = match want.dtype {
        DType::Bool => 1,
        d => d.size(),
    };
    let n = npy.shape().iter().try_fold(1u64, |a, &d| a.checked_mul(d));
    if n.and_then(|n| n.checked_mul(elem)).is_none_or(|b| b > bytes.len() as u64) {
        return Err(bad(format!("its header claims shape {shape:?}, more data than the file holds")));
    }
    crate::ir::limits::current().check_tensor(want.dtype, &shape).map_err(bad)?;
    // The shape against the type on its own: a dim over symbols that other inputs bind
    // (`past + new` of a mask) is checked with all the inputs (`shape::bind_inputs`).
    let own: std::collections::HashSet<&str> = want
        .shape
        .iter()
        .filter_map(|d| match d {
            crate::ir::Dim::Sym(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    let alone = |d: &crate::ir::Dim, a: usize| match d {
        crate::ir::Dim::Expr(e) if e.symbols().iter().any(|s| !own.contains(s.as_str())) => {
            crate::ir::Dim::Fixed(a as u64)
        }
        d => d.clone(),
    };
    let ty = if want.rank() == shape.len() {
        crate::ir::TensorType::new(want.dtype, want.shape.iter().zip(&shape).map(|(d, &a)| alone(d, a)).collect())
    } else {
        want.clone()
    };
    let mut b = crate::shape::Bindings::new();
    crate::shape::bind(&ty, &shape, &mut b)
        .map_err(|m| bad(format!("shape {shape:?} does not fit the graph input: {m}")))?;
    let read = |e: std::io::Error| bad(format!("cannot read the data: {e}"));
    let data = match (want.dtype, plain) {
        (DType::F16, _) => Data::F32(npy.into_vec::<half::f16>().map_err(read)?.into_iter().map(f32::from).collect()),
        (DType::F32, _) => Data::F32(npy.into_vec::<f32>().map_err(read)?),
        (DType::I64, _) => Data::I64(npy.into_vec::<i64>().map_err(read)?),
        (DType::I32, _) => Data::I64(npy.into_vec::<i32>().map_err(read)?.into_iter().map(i64::from).collect()),
        (DType::Bool, "|u1") => {
            let v = npy.into_vec::<u8>().map_err(read)?;
            if let Some(x) = v.iter().find(|&&x| x > 1) {
                return Err(bad(format!("holds the byte {x} where a boolean (0 or 1) belongs")));
            }
            Data::Bool(v.into_iter().map(|x| x == 1).collect())
        }
        (DType::Bool, _) => Data::Bool(npy.into_vec::<bool>().map_err(read)?),
    };
    Tensor::from_data(want.dtype, shape, data)
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

/// Writes a tensor as a `.npy` file of its dtype (`<f4`, `<f2`, `<i8`, `<i4`, `|b1`), as
/// [`write_output`] writes.
pub fn write_npy(path: &Path, t: &crate::tensor::Tensor) -> Result<()> {
    write_output(path, &npy_bytes(t)?)
}

/// A tensor as the bytes of a `.npy` file of its dtype.
pub fn npy_bytes(t: &crate::tensor::Tensor) -> Result<Vec<u8>> {
    use crate::ir::DType;
    use crate::tensor::Data;
    use npyz::WriterBuilder;
    let mut buf = vec![];
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let io = |e: std::io::Error| Error::Internal(format!("encoding .npy: {e}"));
    fn put<T: npyz::Serialize + npyz::AutoSerialize + Copy>(
        buf: &mut Vec<u8>,
        shape: &[u64],
        vals: impl Iterator<Item = T>,
    ) -> std::io::Result<()> {
        let mut w = npyz::WriteOptions::<T>::new().default_dtype().shape(shape).writer(buf).begin_nd()?;
        w.extend(vals)?;
        w.finish()
    }
    match (t.data(), t.dtype()) {
        (Data::F32(v), DType::F16) => put(&mut buf, &shape, v.iter().map(|&x| half::f16::from_f32(x))),
        (Data::F32(v), _) => put(&mut buf, &shape, v.iter().copied()),
        (Data::I64(v), DType::I32) => put(&mut buf, &shape, v.iter().map(|&x| x as i32)),
        (Data::I64(v), _) => put(&mut buf, &shape, v.iter().copied()),
        (Data::Bool(v), _) => put(&mut buf, &shape, v.iter().copied()),
    }
    .map_err(io)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{shape_of, DType, Dim, TensorType};
    use crate::tensor::Tensor;

    /// `auto` puts a graph's weights in a data file from [`DATA_FILE_MIN_BYTES`] on, and the
    /// graph loads back from the pair; standard output and `never` keep them inline.
    #[test]
    fn large_weights_go_to_a_data_file_that_loads_back() {
        let graph = |values: usize| {
            let mut b = crate::ir::builder::GraphBuilder::new();
            let x = b.input("x", DType::F32, shape_of(&[1, values as u64]));
            let w = b.weight_data("w", DType::F32, &[values as u64, 1], (0..values).map(|i| i as f32 * 0.5).collect());
            let y = b.matmul("y", x, w);
            b.finish(&[y]).unwrap()
        };
        let d = tempfile::tempdir().unwrap();
        let (big, small) = (graph(DATA_FILE_MIN_BYTES as usize / 4), graph(DATA_FILE_MIN_BYTES as usize / 4 - 1));
        let (pb, ps) = (d.path().join("big.json"), d.path().join("small.json"));
        let data = write_graph(&pb, &big, DataFile::Auto).unwrap();
        assert_eq!(data.as_deref(), Some(d.path().join("big.json.data").as_path()));
        assert_eq!(std::fs::metadata(d.path().join("big.json.data")).unwrap().len(), DATA_FILE_MIN_BYTES);
        assert!(std::fs::metadata(&pb).unwrap().len() < 4096);
        assert_eq!(write_graph(&ps, &small, DataFile::Auto).unwrap(), None);
        assert!(!d.path().join("small.json.data").exists());
        let back = load_graph(&pb).unwrap();
        assert_eq!(crate::json::to_string(&back).unwrap(), crate::json::to_string(&big).unwrap());
        let pn = d.path().join("never.json");
        assert_eq!(write_graph(&pn, &big, DataFile::Never).unwrap(), None);
        assert!(!d.path().join("never.json.data").exists());
        // Through a symbolic link: both files beside the file it points to, read back through
        // the link.
        #[cfg(unix)]
        {
            let (real, link) = (d.path().join("real.json"), d.path().join("sub/link.json"));
            std::fs::write(&real, "old").unwrap();
            std::fs::create_dir(d.path().join("sub")).unwrap();
            std::os::unix::fs::symlink(&real, &link).unwrap();
            assert_eq!(write_graph(&link, &big, DataFile::Auto).unwrap(), Some(d.path().join("real.json.data")));
            assert!(!d.path().join("sub/link.json.data").exists());
            assert_eq!(
                crate::json::to_string(&load_graph(&link).unwrap()).unwrap(),
                crate::json::to_string(&big).unwrap()
            );
        }
        // A graph whose data file is gone says which file it looked for.
        std::fs::remove_file(d.path().join("big.json.data")).unwrap();
        let e = load_graph(&pb).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains(&d.path().join("big.json.data").display().to_string()), "{e}");
    }

    #[test]
    fn the_format_is_told_by_the_content_the_extension_a_hint() {
        use GraphFormat::{Json, Onnx};
        // JSON: an object, after a byte-order mark and white space, whatever the name says.
        for b in [&b"{\"format\": 1}"[..], b"\xEF\xBB\xBF{}", b" \n\t{"] {
            for hint in [None, Some(Json), Some(Onnx)] {
                assert_eq!(sniff(b, hint), Ok(Json), "{b:?} {hint:?}");
            }
        }
        // ONNX: the first field is one of ModelProto's (ir_version, producer_name, graph, ...).
        for b in [&[0x08, 0x07, 0x12][..], &[0x12, 0x07, b'p'], &[0x3a, 0x10], &[0xa2, 0x01, 0x00]] {
            for hint in [None, Some(Json), Some(Onnx)] {
                assert_eq!(sniff(b, hint), Ok(Onnx), "{b:?} {hint:?}");
            }
        }
        // Binary that opens like no model: the ONNX reader's to judge if the name says .onnx,
        // described otherwise; never when it is a known other kind of file, or text.
        let odd = [0xff, 0x00, 0x13];
        assert_eq!(sniff(&odd, Some(Onnx)), Ok(Onnx));
        assert_eq!(
            sniff(&odd, None).unwrap_err(),
            "neither a glufuse JSON graph nor an ONNX model: it is binary data that starts with bytes ff 00 13"
        );
        assert!(sniff(b"\x93NUMPY\x01\x00", Some(Onnx))
            .unwrap_err()
            .ends_with("a NumPy .npy array (give it to --input)"));
        assert!(sniff(b"", Some(Onnx)).unwrap_err().ends_with("the file is empty"));
        assert!(sniff(b"[1]", Some(Json))
            .unwrap_err()
            .ends_with("it is text that is not a JSON object (it starts \"[1]\")"));
        assert!(sniff(b"hello", Some(Onnx)).unwrap_err().contains("text that is not a JSON object"));
        // A lone tag byte is not a model.
        assert!(sniff(&[0x08], None).is_err());
    }

    #[test]
    fn npy_of_every_dtype_round_trips() {
        for t in [
            Tensor::new(vec![2, 2], vec![1.5, -2.0, 0.0, 3.25]).unwrap(),
            Tensor::f16(vec![3], vec![0.1, 65504.0, -1.0]).unwrap(),
            Tensor::i64(vec![1, 3], vec![-1, 1 << 40, 7]).unwrap(),
            Tensor::i32(vec![2], vec![i32::MIN as i64, 5]).unwrap(),
            Tensor::bool(vec![2, 1], vec![true, false]).unwrap(),
        ] {
            let bytes = npy_bytes(&t).unwrap();
            let ty = TensorType::new(t.dtype(), t.shape().iter().map(|&d| Dim::Fixed(d as u64)).collect());
            assert_eq!(parse_npy(&bytes, &ty).unwrap(), t, "{}", t.dtype());
        }
    }

    #[test]
    fn npy_of_another_dtype_is_refused_naming_both() {
        let bytes = npy_bytes(&Tensor::i64(vec![2], vec![1, 2]).unwrap()).unwrap();
        let e = parse_npy(&bytes, &TensorType::new(DType::I32, shape_of(&[2]))).unwrap_err().to_string();
        assert_eq!(e, "holds dtype '<i8' (i64), but the graph input is i32");
        let e = parse_npy(&bytes, &TensorType::new(DType::Bool, shape_of(&[2]))).unwrap_err().to_string();
        assert_eq!(e, "holds dtype '<i8' (i64), but the graph input is bool");
        // Booleans saved as bytes read as booleans; other bytes are refused.
        let mut buf = vec![];
        {
            use npyz::WriterBuilder;
            let mut w =
                npyz::WriteOptions::<u8>::new().default_dtype().shape(&[3]).writer(&mut buf).begin_nd().unwrap();
            w.extend([1u8, 0, 2]).unwrap();
            w.finish().unwrap();
        }
        let ty = TensorType::new(DType::Bool, shape_of(&[3]));
        assert_eq!(parse_npy(&buf, &ty).unwrap_err().to_string(), "holds the byte 2 where a boolean (0 or 1) belongs");
        let last = buf.len() - 1;
        buf[last] = 1;
        assert_eq!(parse_npy(&buf, &ty).unwrap().as_bool().unwrap(), &[true, false, true]);
    }
}
