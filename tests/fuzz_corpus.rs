//! Replays the fuzzing corpora (`fuzz/corpus/*`) and any crash found since
//! (`fuzz/regressions/*`) through the checks the fuzz targets make (`fuzz/src/lib.rs`,
//! included here): the loaders, the JSON round trip, the pass pipeline and a small run of the
//! interpreter under a small budget for JSON and ONNX inputs, the `.npy` reader in every
//! dtype. None may panic. This keeps what the fuzzers found as regression tests that run
//! without a fuzzer.

mod common;

/// The fuzz targets' checks.
#[allow(dead_code)]
mod checks {
    include!("../fuzz/src/lib.rs");
}

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
        checks::json_input(&std::fs::read(f).unwrap());
    }
    for f in &onnx {
        checks::onnx_input(&std::fs::read(f).unwrap());
    }
    let shapes =
        [vec![Dim::Sym("batch".into()), Dim::Fixed(4)], vec![Dim::parse("n + 1").unwrap(), Dim::Fixed(2)], vec![]];
    for f in &npy {
        let bytes = std::fs::read(f).unwrap();
        // Every dtype against the first shape, the others in f32 (as the target, more cheaply).
        for (dtype, shape) in
            DType::ALL.iter().map(|&d| (d, &shapes[0])).chain(shapes[1..].iter().map(|s| (DType::F32, s)))
        {
            let _ = glufuse::files::parse_npy(&bytes, &TensorType::new(dtype, shape.clone()));
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
