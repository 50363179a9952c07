//! A generation loop on the GPU over a decode step exported with a static KV cache: greedy
//! decoding, one token a step, the step's updated caches fed back as the next step's. Every
//! step has the same shapes, so the session builds one executable on the first step and
//! compiles nothing after it (a step exported over a growing cache needs a new executable
//! for every past length).
//!
//! ```text
//! cargo run --release --example static_cache_loop -- [MODEL.onnx] [STEPS]
//! ```
//!
//! The default model is `tests/data/models/llama_staticstep.onnx`, a tiny random Llama (its
//! tokens mean nothing). Any export of `tests/data/models/export.py`'s `staticstep` form fits:
//! inputs `input_ids [1, 1]`, `attention_mask [1, L]`, `cache_position [1]` and the caches
//! `past_*`, outputs the logits then the updated caches `present_*` (in the caches' order).
//! Each step is also run on the CPU interpreter, and the loop stops with an error if the
//! two disagree.

use glufuse::files::load_graph;
use glufuse::interp;
use glufuse::passes::PassManager;
use glufuse::runtime::{Gpu, Session};
use glufuse::tensor::Tensor;
use glufuse::Error;
use std::collections::HashMap;
use std::time::Instant;

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "tests/data/models/llama_staticstep.onnx".into());
    let steps: usize = match args.next() {
        Some(s) => s.parse().map_err(|_| Error::input(format!("STEPS must be a number, not {s:?}")))?,
        None => 12,
    };
    let mut g = load_graph(std::path::Path::new(&path))?;
    PassManager::standard().run(&mut g)?;

    // The caches start empty: zeros of each `past_*` input's type; the cache length is the
    // attention mask's.
    let mut ins: HashMap<String, Tensor> = HashMap::new();
    let mut len = 0;
    for n in g.input_nodes() {
        let node = g.node(n);
        let ty = &node.outputs[0];
        let dims: Option<Vec<usize>> = ty.shape.iter().map(|d| d.fixed().map(|x| x as usize)).collect();
        let dims =
            dims.ok_or_else(|| Error::input(format!("input '{}' has a symbolic dim: not a static step", node.name)))?;
        match node.name.as_str() {
            "attention_mask" => len = dims[1],
            "input_ids" | "cache_position" => {}
            name if name.starts_with("past_") => {
                ins.insert(name.to_string(), Tensor::zeros(ty.dtype, dims));
            }
            name => return Err(Error::input(format!("input '{name}' is not one of a static-cache step's"))),
        }
    }
    let caches: Vec<(usize, String)> = (0..g.outputs.len())
        .filter_map(|i| g.output_name(i).strip_prefix("present_").map(|l| (i, format!("past_{l}"))))
        .collect();
    if len == 0 || caches.is_empty() || caches.iter().any(|(_, p)| !ins.contains_key(p)) {
        return Err(Error::input(format!("'{path}' is not a static-cache decode step (see the example's header)")));
    }

    let gpu = Gpu::new()?;
    println!("device: {}", gpu.describe());
    let mut s = Session::new(&gpu, g.clone())?;
    let mut token = 1i64;
    let mut tokens = vec![token];
    for pos in 0..steps.min(len) {
        let ids = |v: Vec<i64>| Tensor::i64(vec![1, v.len()], v);
        ins.insert("input_ids".into(), ids(vec![token])?);
        ins.insert("attention_mask".into(), ids((0..len).map(|q| i64::from(q <= pos)).collect())?);
        ins.insert("cache_position".into(), Tensor::i64(vec![1], vec![pos as i64])?);
        let t = Instant::now();
        let out = s.run(&ins)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let want = interp::run(&g, &ins)?;
        for (i, (x, y)) in out.iter().zip(&want).enumerate() {
            let (_, rel) = interp::compare(x, y);
            if rel > 2e-2 {
                return Err(Error::Gpu(format!(
                    "step {pos}: output '{}' is {rel:e} from the interpreter's",
                    g.output_name(i)
                )));
            }
        }
        // Greedy: the largest logit of the last row.
        let logits = out[0].as_f32().ok_or_else(|| Error::input("the first output (logits) is not a float tensor"))?;
        let vocab = *out[0].shape().last().unwrap_or(&1);
        let last = &logits[logits.len() - vocab..];
        token = (0..vocab).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as i64;
        tokens.push(token);
        for (i, past) in &caches {
            ins.insert(past.clone(), out[*i].clone());
        }
        let p = gpu.pipeline_counts();
        println!(
            "position {pos:3}: next token {token:5}  {ms:7.2} ms  executables {}  pipelines compiled {}",
            s.executables(),
            p.compiled
        );
    }
    let b = s.bind(&ins, &Default::default())?;
    println!("dispatches a step: {}", s.executable(&b)?.kernels().len());
    println!("tokens: {tokens:?}");
    Ok(())
}
