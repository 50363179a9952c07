//! Replays the fuzzing corpora (`fuzz/corpus/*`) and any crash found since
//! (`fuzz/regressions/*`) through the loaders and the pass pipeline: none may panic. This
//! keeps what the fuzzers found as regression tests that run without a fuzzer.

mod common;

use glufuse::ir::{DType, Dim, TensorType};

fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let d = common::root().join(dir);
    let Ok(rd) = std::fs::read_dir(&d) else { return vec![] };
    let mut v: Vec<_> = rd.map(|e| e.unwrap().path()).filter(|p| p.is_file()).collect();
    v.sort();
    v
}

#[test]
fn corpora_never_panic() {
    let json: Vec<_> = [files("fuzz/corpus/json"), files("fuzz/regressions/json")].concat();
    let onnx: Vec<_> = [files("fuzz/corpus/onnx"), files("fuzz/regressions/onnx")].concat();
    let npy: Vec<_> = [files("fuzz/corpus/npy"), files("fuzz/regressions/npy")].concat();
    assert!(!json.is_empty() && !onnx.is_empty() && !npy.is_empty(), "the corpora are in the repository");
    for f in &json {
        let bytes = std::fs::read(f).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Ok(mut g) = glufuse::json::from_str(text) {
                let _ = glufuse::passes::PassManager::standard().run(&mut g);
            }
        }
    }
    for f in &onnx {
        let bytes = std::fs::read(f).unwrap();
        if let Ok(mut g) = glufuse::onnx::load(std::path::Path::new("fuzz.onnx"), &bytes) {
            let _ = glufuse::passes::PassManager::standard().run(&mut g);
        }
    }
    for f in &npy {
        let bytes = std::fs::read(f).unwrap();
        for dtype in DType::ALL {
            let ty = TensorType::new(dtype, vec![Dim::Sym("batch".into()), Dim::Fixed(4)]);
            let _ = glufuse::files::parse_npy(&bytes, &ty);
        }
    }
}

#[test]
fn nested_npy_header_is_refused_before_parsing() {
    let bytes = std::fs::read(common::root().join("fuzz/regressions/npy/timeout-nested-header.npy")).unwrap();
    let ty = TensorType::new(DType::F32, vec![Dim::Sym("batch".into()), Dim::Fixed(4)]);
    let e = glufuse::files::parse_npy(&bytes, &ty).unwrap_err().to_string();
    // The guard's own message: the header never reaches the parser that took minutes on it.
    assert!(e.contains("structured or nested dtypes are not supported"), "{e}");
}

#[test]
fn npy_shape_that_overflows_is_refused() {
    let bytes = std::fs::read(common::root().join("fuzz/regressions/npy/crash-shape-overflow.npy")).unwrap();
    let ty = TensorType::new(DType::F32, vec![Dim::Sym("batch".into()), Dim::Fixed(4)]);
    let e = glufuse::files::parse_npy(&bytes, &ty).unwrap_err().to_string();
    assert!(e.contains("more elements than can be counted"), "{e}");
}
