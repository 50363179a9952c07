//! The `.npy` reader against inputs of every dtype, of a symbolic shape `[batch, 4]`, a dim
//! expression `[n + 1, 2]` and a scalar: no input may panic.
#![no_main]
use glufuse::ir::{DType, Dim, TensorType};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let shapes =
        [vec![Dim::Sym("batch".into()), Dim::Fixed(4)], vec![Dim::parse("n + 1").unwrap(), Dim::Fixed(2)], vec![]];
    for dtype in DType::ALL {
        for shape in &shapes {
            let _ = glufuse::files::parse_npy(data, &TensorType::new(dtype, shape.clone()));
        }
    }
});
