//! The `.npy` reader against an input of symbolic shape `[batch, 4]`: no input may panic.
#![no_main]
use glufuse::ir::{DType, Dim, TensorType};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let f32_ty = TensorType::new(DType::F32, vec![Dim::Sym("batch".into()), Dim::Fixed(4)]);
    let f16_ty = TensorType::new(DType::F16, vec![Dim::Sym("batch".into()), Dim::Fixed(4)]);
    let _ = glufuse::files::parse_npy(data, &f32_ty);
    let _ = glufuse::files::parse_npy(data, &f16_ty);
});
