//! The JSON graph loader, then (under a small budget) the JSON round trip, the pass pipeline
//! and the interpreter with symbols bound by the input's bytes: no input may panic, allocate
//! past the budget, or write a graph that reads back as another (`src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| glufuse_fuzz::json_input(data));
