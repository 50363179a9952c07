//! What a generation loop pays over a decode step exported with a growing (dynamic) KV cache:
//! greedy decoding, one token a step, the step's present keys and values fed back as the next
//! step's past. Each step has a past one longer than the last, a binding the session has not
//! seen, so each step builds an executable (code generation, and the driver compiling the
//! kernels whose sizes involve the past length) before it runs. The example prints, per step,
//! the call's time, the pipelines compiled and the same call's time again: the difference is
//! what the new binding cost, which a step exported over a static cache (`static_cache_loop`)
//! does not pay. With `--prepare` the loop first builds the executables of every past length
//! it will reach, several at a time ([`Session::prepare`]), prints what that took, and runs
//! the first step's graph for half a second (the GPU's clocks fell while it compiled); its
//! steps then build nothing.
//!
//! The caches stay on the GPU from step to step ([`Session::step`] with
//! [`Feedback::caches`]): only the logits come back, and only the token ids and the mask go
//! up. With `--host` the loop goes through the host instead, as a loop over [`Session::run`]
//! does: every present cache read back and given again as the next past, and each step's call
//! made twice (the second without the build). The last line is the median step of those after
//! the first.
//!
//! ```text
//! cargo run --release --example dynamic_cache_loop -- [MODEL.onnx] [STEPS] [PAST] [--prepare] [--host]
//! ```
//!
//! The default model is `tests/data/models/llama_kvstep.onnx`, a tiny random Llama (its
//! tokens mean nothing). Any export of `tests/data/models/export.py`'s `kvstep` form fits:
//! inputs `input_ids [1, new]`, `attention_mask [1, all]` and the caches `past_*` (`[1,
//! kv_heads, past, head_dim]`), outputs the logits then the caches `present_*`. The loop
//! starts from caches of `PAST` positions (default 4) of seeded values.

use glufuse::files::load_graph;
use glufuse::passes::PassManager;
use glufuse::runtime::{median, Feedback, Gpu, Session};
use glufuse::tensor::Tensor;
use glufuse::Error;
use std::collections::HashMap;
use std::time::Instant;

fn main() -> Result<(), Error> {
    let all_args: Vec<String> = std::env::args().skip(1).collect();
    let prepare = all_args.iter().any(|a| a == "--prepare");
    let host = all_args.iter().any(|a| a == "--host");
    let mut args = all_args.into_iter().filter(|a| a != "--prepare" && a != "--host");
    let path = args.next().unwrap_or_else(|| "tests/data/models/llama_kvstep.onnx".into());
    let number = |s: Option<String>, what: &str, default: usize| -> Result<usize, Error> {
        match s {
            Some(s) => s.parse().map_err(|_| Error::input(format!("{what} must be a number, not {s:?}"))),
            None => Ok(default),
        }
    };
    let steps = number(args.next(), "STEPS", 8)?;
    let past = number(args.next(), "PAST", 4)?;
    let mut g = load_graph(std::path::Path::new(&path))?;
    PassManager::standard().run(&mut g)?;

    // The caches: seeded values of each `past_*` input's type with `past` positions (dim 2).
    let mut ins: HashMap<String, Tensor> = HashMap::new();
    for n in g.input_nodes() {
        let node = g.node(n);
        let ty = &node.outputs[0];
        match node.name.as_str() {
            "input_ids" | "attention_mask" => {}
            name if name.starts_with("past_") => {
                let dims: Option<Vec<usize>> = ty
                    .shape
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if i == 2 { Some(past) } else { d.fixed().map(|x| x as usize) })
                    .collect();
                let dims = dims.filter(|d| d.len() == 4).ok_or_else(|| {
                    Error::input(format!("input '{name}' is not a cache [1, kv_heads, past, head_dim]"))
                })?;
                let values = Tensor::random(dims, 7, 0.5);
                ins.insert(name.to_string(), Tensor::from_data(ty.dtype, values.shape().to_vec(), values.into_data())?);
            }
            name => return Err(Error::input(format!("input '{name}' is not one of a KV-cache step's"))),
        }
    }
    // Which output feeds which cache (`present_L_k` → `past_L_k`), by output index for the
    // loop through the host.
    let feedback = Feedback::caches(&g)?;
    let caches: Vec<(usize, String)> = feedback
        .pairs()
        .filter_map(|(out, inp)| (0..g.outputs.len()).find(|&j| g.output_name(j) == out).map(|j| (j, inp.to_string())))
        .collect();
    if caches.is_empty() || caches.iter().any(|(_, p)| !ins.contains_key(p)) {
        return Err(Error::input(format!("'{path}' is not a KV-cache decode step (see the example's header)")));
    }

    let gpu = Gpu::new()?;
    println!("device: {}", gpu.describe());
    let mut s = Session::new(&gpu, g)?;
    let mut token = 1i64;
    if prepare {
        ins.insert("input_ids".into(), Tensor::i64(vec![1, 1], vec![token])?);
        ins.insert("attention_mask".into(), Tensor::i64(vec![1, past + 1], vec![1; past + 1])?);
        // Every step's binding, from the shapes of its inputs: the first step's, the mask's
        // and the caches' lengths moved on.
        let bindings = (0..steps)
            .map(|step| {
                let shapes: HashMap<String, Vec<usize>> = ins
                    .iter()
                    .map(|(name, t)| {
                        let mut d = t.shape().to_vec();
                        match name.as_str() {
                            "attention_mask" => d[1] += step,
                            n if n.starts_with("past_") => d[2] += step,
                            _ => {}
                        }
                        (name.clone(), d)
                    })
                    .collect();
                s.bind_shapes(&shapes, &Default::default())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        s.set_capacity(steps.max(1));
        let before = gpu.pipeline_counts().compiled;
        let t = Instant::now();
        s.prepare(&bindings)?;
        println!(
            "prepared {steps} past lengths in {:.1} ms ({} pipelines compiled)",
            t.elapsed().as_secs_f64() * 1e3,
            gpu.pipeline_counts().compiled - before
        );
        // Seconds of compiling left the GPU idle and its clocks low: the first step's graph
        // runs for half a second first ([`Session::warm_up`]).
        s.warm_up(&ins, &Default::default(), std::time::Duration::from_millis(500))?;
    }
    let mut times = vec![];
    for step in 0..steps {
        let len = past + step;
        ins.insert("input_ids".into(), Tensor::i64(vec![1, 1], vec![token])?);
        ins.insert("attention_mask".into(), Tensor::i64(vec![1, len + 1], vec![1; len + 1])?);
        let before = gpu.pipeline_counts().compiled;
        let t = Instant::now();
        let (out, parts) = if host {
            s.run_timed(&ins, &Default::default())?
        } else {
            s.step_timed(&ins, &Default::default(), &feedback)?
        };
        let ms = t.elapsed().as_secs_f64() * 1e3;
        times.push(ms);
        let compiled = gpu.pipeline_counts().compiled - before;
        // Greedy: the largest logit of the last row.
        let logits = out[0].as_f32().ok_or_else(|| Error::input("the first output (logits) is not a float tensor"))?;
        let vocab = *out[0].shape().last().unwrap_or(&1);
        let last = &logits[logits.len() - vocab..];
        token = (0..vocab).fold(0, |b, i| if last[i] > last[b] { i } else { b }) as i64;
        if host {
            // The same binding again: the call without the build.
            let t = Instant::now();
            s.run(&ins)?;
            let again = t.elapsed().as_secs_f64() * 1e3;
            for (i, p) in &caches {
                ins.insert(p.clone(), out[*i].clone());
            }
            println!(
                "past {len:5}: {ms:8.2} ms ({compiled} pipelines compiled), the same call again {again:6.2} ms: the new binding cost {:8.2} ms",
                ms - again,
            );
        } else {
            // The caches stay on the GPU: the next step gives none.
            ins.retain(|name, _| !name.starts_with("past_"));
            println!("past {len:5}: {ms:8.2} ms ({compiled} pipelines compiled), the caches kept on the GPU");
        }
        println!(
            "            bind {:.0} µs, upload {:.0}, encode {:.0}, submit and wait {:.0}, readback {:.0}",
            parts.bind_us, parts.upload_us, parts.encode_us, parts.submit_wait_us, parts.readback_us
        );
    }
    if times.len() > 1 {
        println!(
            "median step after the first: {:.3} ms ({})",
            median(&times[1..]),
            if host { "caches through the host" } else { "caches kept on the GPU" }
        );
    }
    Ok(())
}
