//! `glufuse synth --layers N --hidden H --intermediate I [..] -o OUT.json`: writes a
//! synthetic Llama-style decoder graph.

use crate::args::SynthArgs;
use crate::out::errln;
use glufuse::files::write_output;
use glufuse::synth::{self, SynthOptions, WeightType};
use glufuse::Result;

/// Runs the command.
pub fn run(a: SynthArgs) -> Result<()> {
    let o = SynthOptions {
        layers: a.layers,
        hidden: a.hidden,
        intermediate: a.intermediate,
        batch: a.batch,
        dtype: WeightType::from(a.dtype).dtype(),
        executable: !a.opaque,
        layout: a.layout.into(),
        q4: WeightType::from(a.dtype) == WeightType::Q4,
    };
    let g = synth::llama(&o)?;
    write_output(&a.output, glufuse::json::to_string(&g)?.as_bytes())?;
    errln!("wrote {}: {}", a.output.display(), g.summary());
    Ok(())
}
