//! `glufuse interp GRAPH [--input NAME=F.npy].. [--dim NAME=N].. [--output F.npy]`: runs a
//! graph on the CPU reference interpreter and prints a summary of each output.

use crate::args::InterpArgs;
use crate::io::{gather_inputs, print_outputs};
use glufuse::files::load_graph;
use glufuse::Result;

/// Runs the command.
pub fn run(a: InterpArgs) -> Result<()> {
    let g = load_graph(&a.graph)?;
    let (inputs, _) = gather_inputs(&g, &a.io)?;
    let outs = glufuse::interp::run(&g, &inputs)?;
    print_outputs(&g, &outs);
    if let Some(p) = &a.io.output {
        glufuse::files::write_npy(p, &outs[0])?;
    }
    Ok(())
}
