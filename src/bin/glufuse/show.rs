//! `glufuse show GRAPH [--format ..]`: prints a graph.

use crate::args::ShowArgs;
use crate::out::out;
use glufuse::dump::render;
use glufuse::files::load_graph;
use glufuse::Result;

/// Runs the command.
pub fn run(a: ShowArgs) -> Result<()> {
    let g = load_graph(&a.graph)?;
    out!("{}", render(&g, a.format.into())?);
    Ok(())
}
