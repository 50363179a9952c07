//! The `.npy` reader against an input of symbolic shape `[batch, 4]`, in every dtype: no
//! input may panic.
#![no_main]
use glufuse::ir::{DType, Dim, TensorType};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    for dtype in DType::ALL {
        let ty = TensorType::new(dtype, vec![Dim::Sym("batch".into()), Dim::Fixed(4)]);
        let _ = glufuse::files::parse_npy(data, &ty);
    }
});
