//! `glufuse interp GRAPH [--input NAME=F.npy].. [--dim NAME=N].. [--output [NAME=]F.npy]..`:
//! runs a graph on the CPU reference interpreter, prints a summary of each output and writes
//! the outputs asked for.

use crate::args::InterpArgs;
use crate::io::{conditions, dim_hint, gather_inputs, output_plan, print_outputs, write_outputs};
use glufuse::Result;

/// Runs the command.
pub fn run(a: InterpArgs) -> Result<()> {
    let fixed = conditions(&a.io.inputs);
    let g = crate::progress::load_with(&a.graph, &fixed)?;
    let plan = output_plan(&g, &a.io.outputs)?;
    let (inputs, b) = gather_inputs(&g, &a.io, &fixed)?;
    let outs = crate::progress::step("running on the CPU interpreter", || glufuse::interp::run_with(&g, &inputs, &b))
        .map_err(dim_hint)?;
    print_outputs(&g, &outs);
    write_outputs(&outs, &plan)
}
