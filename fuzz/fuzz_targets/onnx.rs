//! The ONNX loader, then (under a small budget) the JSON round trip, the pass pipeline and the
//! interpreter with symbols bound by the input's bytes: no input may panic, allocate what the
//! budget or its bytes do not allow, or load into a graph that does not write and read back
//! the same (`src/lib.rs`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| glufuse_fuzz::onnx_input(data));
