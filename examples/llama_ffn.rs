//! Library use of glufuse: build a Llama-style FFN with the builder, run the pass pipeline,
//! print the graph before and after with the fusion report, and run both on the GPU (when
//! there is one) against the CPU interpreter.
//!
//! `cargo run --release --example llama_ffn`

use glufuse::builder::{GraphBuilder, SiluSpelling};
use glufuse::interp;
use glufuse::ir::{DType, Dim};
use glufuse::passes::{fusion_report, PassManager};

fn main() -> Result<(), glufuse::Error> {
    let (h, i) = (64, 176);
    let mut b = GraphBuilder::new();
    let x = b.input("x", DType::F32, vec![Dim::Sym("tokens".into()), Dim::Fixed(h)]);
    let wg = b.weight("mlp.gate_proj.weight", DType::F32, &[h, i], 0.125);
    let wu = b.weight("mlp.up_proj.weight", DType::F32, &[h, i], 0.125);
    let wd = b.weight("mlp.down_proj.weight", DType::F32, &[i, h], 0.075);
    let gate = b.matmul("mlp.gate_proj", x, wg);
    let up = b.matmul("mlp.up_proj", x, wu);
    let act = b.silu("mlp.act_fn.", gate, SiluSpelling::MulSigmoid); // as exporters write SiLU
    let prod = b.mul("mlp.mul", act, up);
    let down = b.matmul("mlp.down_proj", prod, wd);
    let original = b.finish(&[down])?;

    let mut fused = original.clone();
    let runs = PassManager::standard().run(&mut fused)?;
    println!("== before ==\n{}", glufuse::dump::text(&original)?);
    println!("== after ==\n{}", glufuse::dump::text(&fused)?);
    if let Some(report) = fusion_report(&runs) {
        println!("{}", report.to_text(true));
    }

    let dims: glufuse::shape::Bindings = [("tokens".to_string(), 1)].into_iter().collect();
    let inputs = interp::seeded_inputs(&original, &dims, 1)?;
    let want = interp::run(&original, &inputs)?;
    match glufuse::runtime::Gpu::new() {
        Err(e) => println!("no GPU ({e}); the interpreter says the fused graph agrees: {:?}", {
            let got = interp::run(&fused, &inputs)?;
            glufuse::interp::compare(&got[0], &want[0])
        }),
        Ok(gpu) => {
            for (label, g) in [("original", &original), ("fused", &fused)] {
                let exe = glufuse::runtime::Executable::new(&gpu, g, &dims)?;
                let got = exe.run(&inputs)?;
                let (abs, rel) = glufuse::interp::compare(&got[0], &want[0]);
                println!(
                    "{label}: {} dispatches on {}, max abs err {abs:.2e} (rel {rel:.2e})",
                    exe.dispatch_count(),
                    gpu.describe()
                );
            }
        }
    }
    Ok(())
}
