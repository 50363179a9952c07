//! The shape of the code, checked by reading the source tree: the dependencies between the
//! crates run one way (ir ← passes, codegen ← the glufuse library ← its binary), the runtime
//! and the code generator do not know the interpreter, only the binary uses clap, no module
//! is stitched in with a `path` attribute, an op's name is spelled in few places, the files that
//! switch on the op list do so exhaustively, and the binary prints through `out.rs` only.

use std::path::{Path, PathBuf};

/// The repository root. (Not `root()`: this test reads files only, and does not link
/// the library.)
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the repository root), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(d) else { return };
        for e in rd {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                if !p.ends_with("target") {
                    walk(&p, out);
                }
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = vec![];
    walk(&root().join(dir), &mut out);
    out.sort();
    out
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Whether `text` holds `word` with no identifier character on either side.
fn has_word(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        !text[..i].chars().next_back().is_some_and(ident) && !text[i + word.len()..].chars().next().is_some_and(ident)
    })
}

/// The file's path relative to the repository root, for messages.
fn rel(p: &Path) -> String {
    p.strip_prefix(root()).unwrap_or(p).display().to_string()
}

/// The library's source files: the three crates and the root package outside its binary.
fn library_files() -> Vec<PathBuf> {
    let bin = root().join("src/bin");
    ["ir", "passes", "codegen", "src"].iter().flat_map(|d| rust_files(d)).filter(|p| !p.starts_with(&bin)).collect()
}

/// The names a crate's `[dependencies]` table lists.
fn dependencies(manifest: &str) -> Vec<String> {
    let text = read(&root().join(manifest));
    let mut deps = vec![];
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.']).next().unwrap_or("").trim();
            deps.push(name.to_string());
        }
    }
    deps
}

#[test]
fn no_module_is_stitched_in_with_a_path_attribute() {
    let attr = concat!("#[", "path");
    let dirs = ["ir", "passes", "codegen", "src", "tests", "examples", "fuzz/fuzz_targets"];
    let files: Vec<PathBuf> = dirs.iter().flat_map(|d| rust_files(d)).collect();
    assert!(files.len() > 40, "the walk found the sources: {}", files.len());
    let bad: Vec<String> = files.iter().filter(|p| read(p).contains(attr)).map(|p| rel(p)).collect();
    assert!(bad.is_empty(), "{attr}] in {bad:?}");
}

#[test]
fn the_runtime_and_the_code_generator_do_not_know_the_interpreter() {
    let files: Vec<PathBuf> = [rust_files("src/runtime"), rust_files("codegen")].concat();
    assert!(files.len() > 10);
    let bad: Vec<String> = files.iter().filter(|p| has_word(&read(p), "interp")).map(|p| rel(p)).collect();
    assert!(bad.is_empty(), "mention `interp`: {bad:?}");
}

#[test]
fn only_the_binary_uses_clap() {
    let bad: Vec<String> = library_files().iter().filter(|p| has_word(&read(p), "clap")).map(|p| rel(p)).collect();
    assert!(bad.is_empty(), "library modules that mention clap: {bad:?}");
    assert!(read(&root().join("src/bin/glufuse/args.rs")).contains("use clap::"));
}

#[test]
fn crate_dependencies_run_one_way() {
    let forbidden = [
        ("ir/Cargo.toml", &["egg", "naga", "wgpu", "clap", "glufuse-passes", "glufuse-codegen"][..]),
        ("passes/Cargo.toml", &["naga", "wgpu", "clap", "glufuse-codegen"][..]),
        ("codegen/Cargo.toml", &["egg", "wgpu", "clap", "glufuse-passes"][..]),
    ];
    for (manifest, not) in forbidden {
        let deps = dependencies(manifest);
        assert!(deps.iter().any(|d| d == "serde"), "{manifest}: the [dependencies] table was read: {deps:?}");
        let bad: Vec<&&str> = not.iter().filter(|n| deps.iter().any(|d| d == *n)).collect();
        assert!(bad.is_empty(), "{manifest} depends on {bad:?}");
    }
}

/// An elementwise op is spelled in at most five source files: the op list's family file,
/// the codegen family file, the ONNX importer, the e-graph language, and one user (the
/// synthetic decoder's stand-in norm).
#[test]
fn an_op_is_spelled_in_few_files() {
    let proto = root().join("src/onnx/proto.rs");
    let files: Vec<String> =
        library_files().iter().filter(|p| **p != proto && has_word(&read(p), "Tanh")).map(|p| rel(p)).collect();
    assert!(!files.is_empty());
    assert!(files.len() <= 5, "`Tanh` in {} files: {files:?}", files.len());
}

/// The files that switch on the op list (or the kernel kinds) have no catch-all arm, so a new
/// op does not compile until each of them handles it.
#[test]
fn op_list_switches_are_exhaustive() {
    for f in ["ir/src/op.rs", "codegen/src/select.rs", "passes/src/fusion/lower.rs", "codegen/src/lib.rs"] {
        let text = read(&root().join(f));
        assert!(!text.contains("_ =>"), "{f} has a catch-all arm");
    }
}

/// The binary builds no unit-test harness (`test = false`: it is tested through its command
/// line) and the member crates run no doctests (`doctest = false`), to keep CI short: so no
/// unit test may sit in `src/bin/`, and no Rust example in the member crates' docs, where it
/// would never run.
#[test]
fn no_test_is_written_where_none_would_run() {
    let cfg_test = concat!("#[cfg(", "test)]");
    let bad: Vec<String> =
        rust_files("src/bin").iter().filter(|p| read(p).contains(cfg_test)).map(|p| rel(p)).collect();
    assert!(bad.is_empty(), "unit tests in the binary would not run (test = false): {bad:?}");
    let fence = concat!("``", "`");
    let mut examples = vec![];
    for p in ["ir", "passes", "codegen"].iter().flat_map(|d| rust_files(d)) {
        let mut open = false;
        for (i, line) in read(&p).lines().enumerate() {
            let t = line.trim_start();
            let Some(doc) = t.strip_prefix("///").or_else(|| t.strip_prefix("//!")) else { continue };
            let Some(tag) = doc.trim().strip_prefix(fence) else { continue };
            if !open && !["text", "json", "wgsl", "sh", "ignore"].contains(&tag) {
                examples.push(format!("{}:{}", rel(&p), i + 1));
            }
            open = !open;
        }
    }
    assert!(examples.is_empty(), "doc examples that would not run (doctest = false): {examples:?}");
}

/// The binary prints through `out.rs` only (`outln!`, `out!`, `errln!`), so that a closed
/// standard output (`glufuse show MODEL | head -1`) ends quietly instead of panicking in
/// `println!`.
#[test]
fn the_binary_prints_through_out_rs() {
    let out = root().join("src/bin/glufuse/out.rs");
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    for p in rust_files("src/bin").into_iter().filter(|p| *p != out) {
        let text = read(&p);
        for m in ["println!", "print!", "eprintln!", "eprint!"] {
            let used = text.match_indices(m).any(|(i, _)| !text[..i].chars().next_back().is_some_and(ident));
            assert!(!used, "{}: uses {m}; print with outln!, out! or errln! (out.rs)", rel(&p));
        }
    }
}
