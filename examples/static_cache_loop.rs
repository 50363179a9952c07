//! A generation loop on the GPU over a decode step exported with a static KV cache: greedy
//! decoding, one token a step, the step's updated caches fed back as the next step's. Every
//! step has the same shapes, so the session builds one executable on the first step and
//! compiles nothing after it (a step exported over a growing cache needs a new executable
//! for every past length).
//!
//! The caches stay on the GPU from step to step ([`Session::step`] with
//! [`Feedback::caches`]): only the logits come back, and only the token id, the mask and the
//! position go up. With `--host` the loop goes through the host instead, as a loop over
//! [`Session::run`] does: every updated cache read back and given again. The last line is the
//! median step of those after the first.
//!
//! ```text
//! cargo run --release --example static_cache_loop -- [MODEL.onnx] [STEPS] [--host] [--no-check]
//! ```
//!
//! The default model is `tests/data/models/llama_staticstep.onnx`, a tiny random Llama (its
//! tokens mean nothing). Any export of `tests/data/models/export.py`'s `staticstep` form fits:
//! inputs `input_ids [1, 1]`, `attention_mask [1, L]`, `cache_position [1]` and the caches
//! `past_*`, outputs the logits then the updated caches `present_*` (in the caches' order).
//! Each step is also run on the CPU interpreter (its caches read back from the GPU where they
//! are kept there), and the loop stops with an error if the two disagree; `--no-check` leaves
//! the interpreter out (a large model's steps take it seconds).

use glufuse::files::load_graph;
use glufuse::interp;
use glufuse::passes::PassManager;
use glufuse::runtime::{median, Feedback, Gpu, Session};
use glufuse::tensor::Tensor;
use glufuse::Error;
use std::collections::HashMap;
use std::time::Instant;

fn main() -> Result<(), Error> {
    let all_args: Vec<String> = std::env::args().skip(1).collect();
    let host = all_args.iter().any(|a| a == "--host");
    let check = !all_args.iter().any(|a| a == "--no-check");
    let mut args = all_args.into_iter().filter(|a| a != "--host" && a != "--no-check");
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
    let feedback = Feedback::caches(&g)?;
    let mut token = 1i64;
    let mut tokens = vec![token];
    let mut times = vec![];
    for pos in 0..steps.min(len) {
        let ids = |v: Vec<i64>| Tensor::i64(vec![1, v.len()], v);
        ins.insert("input_ids".into(), ids(vec![token])?);
        ins.insert("attention_mask".into(), ids((0..len).map(|q| i64::from(q <= pos)).collect())?);
        ins.insert("cache_position".into(), Tensor::i64(vec![1], vec![pos as i64])?);
        // The interpreter's inputs: the caches as the GPU keeps them, before the step.
        let mut check_ins = ins.clone();
        if check && !host && pos > 0 {
            for (_, past) in &caches {
                check_ins.insert(past.clone(), s.fed_value(past)?);
            }
        }
        let t = Instant::now();
        let out = if host { s.run(&ins)? } else { s.step(&ins, &Default::default(), &feedback)? };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        if check {
            let want = interp::run(&g, &check_ins)?;
            // The outputs returned: all of them through the host, the logits where the caches
            // are kept (each checked at the next step, as its input).
            for (i, (x, y)) in out.iter().zip(&want).enumerate() {
                let (_, rel) = interp::compare(x, y);
                if rel > 2e-2 {
                    return Err(Error::Gpu(format!(
                        "step {pos}: output '{}' is {rel:e} from the interpreter's",
                        g.output_name(i)
                    )));
                }
            }
        }
        // Greedy: the largest logit of the last row.
        let logits = out[0].as_f32().ok_or_else(|| Error::input("the first output (logits) is not a float tensor"))?;
        let vocab = *out[0].shape().last().unwrap_or(&1);
        let last = &logits[logits.len() - vocab..];
        token = (0..vocab).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as i64;
        tokens.push(token);
        if host {
            for (i, past) in &caches {
                ins.insert(past.clone(), out[*i].clone());
            }
        } else {
            // The caches stay on the GPU: the next step gives none.
            ins.retain(|name, _| !name.starts_with("past_"));
        }
        let p = gpu.pipeline_counts();
        println!(
            "position {pos:3}: next token {token:5}  {ms:7.2} ms  executables {}  pipelines compiled {}",
            s.executables(),
            p.compiled
        );
    }
    println!("tokens: {tokens:?}");
    if times.len() > 1 {
        println!(
            "median step after the first: {:.3} ms ({})",
            median(&times[1..]),
            if host { "caches through the host" } else { "caches kept on the GPU" }
        );
    }
    Ok(())
}
