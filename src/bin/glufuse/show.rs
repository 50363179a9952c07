//! `glufuse show GRAPH [--format ..]`: prints a graph.

use crate::args::ShowArgs;
use crate::out::out;
use glufuse::dump::render;
use glufuse::Result;

/// Runs the command.
pub fn run(a: ShowArgs) -> Result<()> {
    let g = crate::progress::load(&a.graph)?;
    out!("{}", render(&g, a.format.into())?);
    Ok(())
}
