//! The JSON graph loader, then the pass pipeline on whatever loads: no input may panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mut g) = glufuse::json::from_str(text) {
            let _ = glufuse::passes::PassManager::standard().run(&mut g);
            let _ = glufuse::json::to_string(&g);
        }
    }
});
