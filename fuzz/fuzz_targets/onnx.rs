//! The ONNX loader, then the pass pipeline on whatever loads: no input may panic, and no
//! header may make it allocate what the bytes do not back.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(mut g) = glufuse::onnx::load(std::path::Path::new("fuzz.onnx"), data) {
        let _ = glufuse::passes::PassManager::standard().run(&mut g);
    }
});
