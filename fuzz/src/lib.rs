// What the json and onnx targets check (tests/fuzz_corpus.rs includes this file to replay the
// corpora through the same checks): a small budget for everything a fuzzed graph may
// allocate, the JSON round trip every loaded graph must survive, and a run of the interpreter
// with the symbols bound to sizes picked by the input's bytes (zero, small, and sizes whose
// products overflow), which must end in a value or an error, never a panic. (Plain comments:
// an inner doc comment cannot be included.)

use glufuse::ir::limits::Budget;
use glufuse::ir::{interp, json, shape::Bindings, tensor::Tensor, Graph};

/// Loads JSON text, then checks it ([`check`]).
pub fn json_input(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    glufuse::ir::limits::with(BUDGET, || {
        if let Ok(g) = json::from_str(text) {
            check(g, data);
        }
    });
}

/// Loads an ONNX model, then checks it ([`check`]).
pub fn onnx_input(data: &[u8]) {
    glufuse::ir::limits::with(BUDGET, || {
        if let Ok(g) = glufuse::onnx::load(std::path::Path::new("fuzz.onnx"), data) {
            check(g, data);
        }
    });
}

/// What every loaded graph must survive: the round trip, the passes, the round trip of what
/// they give, and a small run.
pub fn check(mut g: Graph, data: &[u8]) {
    round_trip(&g);
    if glufuse::passes::PassManager::standard().run(&mut g).is_ok() {
        round_trip(&g);
    }
    run_small(&g, data);
}
use std::collections::HashMap;

/// Tensors of 16k f32 values at most: a product's work stays below a few million
/// multiply-adds whatever the shapes.
pub const BUDGET: Budget = Budget {
    max_tensor_bytes: 64 << 10,
    max_graph_bytes: 1 << 20,
    max_file_bytes: 1 << 20,
    max_rank: 8,
    max_list_len: 4096,
};

/// The sizes a symbol is bound to.
const SIZES: [usize; 11] = [0, 1, 2, 3, 5, 8, 1 << 20, 1 << 31, (1 << 32) + 1, 1 << 62, usize::MAX];

/// A graph written to JSON reads back to the same graph (written the same again).
pub fn round_trip(g: &Graph) {
    let written = json::to_string(g).expect("a loaded graph writes");
    let back = json::from_str(&written).unwrap_or_else(|e| panic!("a written graph reads back: {e}\n{written}"));
    assert_eq!(json::to_string(&back).expect("writes"), written, "the graph read back differs");
}

/// Runs the interpreter with every input symbol bound to a size picked by `data`, the float
/// inputs seeded, the others zeros; any error is fine.
pub fn run_small(g: &Graph, data: &[u8]) {
    let mut b = Bindings::new();
    let mut k = 0;
    for n in g.input_nodes() {
        for d in &g.node(n).outputs[0].shape {
            for s in d.symbols() {
                let pick = data.get(k % data.len().max(1)).copied().unwrap_or(0) as usize;
                b.entry(s).or_insert(SIZES[pick % SIZES.len()]);
                k += 7;
            }
        }
    }
    let mut inputs = HashMap::new();
    for (i, n) in g.input_nodes().into_iter().enumerate() {
        let node = g.node(n);
        let ty = &node.outputs[0];
        let t = if ty.dtype.is_float() {
            match interp::seeded_input(g, i, &b, 1) {
                Ok(t) => t,
                Err(_) => return,
            }
        } else {
            let Ok(shape) = glufuse::ir::shape::concrete(&ty.shape, &b) else { return };
            if BUDGET.check_tensor(ty.dtype, &shape).is_err() {
                return;
            }
            Tensor::zeros(ty.dtype, shape)
        };
        inputs.insert(node.name.clone(), t);
    }
    let _ = interp::run_with(g, &inputs, &b);
}
