//! `glufuse fuse GRAPH [-o OUT] [--before F] [--after F] [--format ..] [--explain | --report
//! json|text] [--data-file auto|always|never]`: runs the pass pipeline, writes the fused graph
//! and the dumps (a JSON graph's weights' values in a data file beside it where they are many:
//! `glufuse::files::write_graph`), prints the fusion report (for people, with what the
//! elementwise fusion merged).

use crate::args::{FuseArgs, ReportFormat};
use crate::out::{errln, out, outln};
use glufuse::dump::{render, Format};
use glufuse::files::{write_graph, write_output};
use glufuse::passes::{
    attention_report, cse_report, elementwise_report, fusion_report, layout_report, merge_report, siblings_report,
    PassManager, PassRun,
};
use glufuse::{Error, Graph, Result};
use std::path::Path;

/// Runs the command.
pub fn run(a: FuseArgs) -> Result<()> {
    let format = Format::from(a.format);
    let mut g = crate::progress::load(&a.graph)?;
    // The dump before the passes, kept until everything is computed: a text now, or in JSON
    // (every weight's values among it) the graph itself, streamed to its file.
    let before = match (&a.before, format) {
        (None, _) => None,
        (Some(_), Format::Json) => Some(Err(g.clone())),
        (Some(_), f) => Some(Ok(render(&g, f)?)),
    };
    let mut pm = PassManager::standard();
    pm.verify_each = true;
    let runs = crate::progress::step("running the passes", || pm.run(&mut g))?;
    let after_text = match format {
        Format::Json => None,
        f => Some(render(&g, f)?),
    };
    // Everything is computed; now write, each file atomically, a JSON graph as it is made
    // (its weights' values in a data file beside it, as `--data-file` says).
    let data = glufuse::files::DataFile::from(a.data_file);
    let json = |p: &Path, g: &Graph| write_graph(p, g, data).map(|_| ());
    if let Some(p) = &a.output {
        json(p, &g)?;
    }
    match (&a.before, &before) {
        (Some(p), Some(Ok(text))) => write_output(p, text.as_bytes())?,
        (Some(p), Some(Err(original))) => json(p, original)?,
        _ => {}
    }
    if let Some(p) = &a.after {
        match &after_text {
            Some(text) => write_output(p, text.as_bytes())?,
            None => json(p, &g)?,
        }
    }
    let rep = fusion_report(&runs).cloned().unwrap_or_default();
    // For people: the gated-FFN fusion, then the projections merged, the weights transposed,
    // what the elementwise and attention fusions merged, then the sibling programs merged;
    // the repeated computations dropped first, where there were any.
    let explained = || {
        let cs = cse_report(&runs).filter(|c| !c.merged.is_empty()).map(|c| c.to_text(true)).unwrap_or_default();
        let mg = merge_report(&runs).map(|m| m.to_text(true)).unwrap_or_default();
        let ly = layout_report(&runs).map(|l| l.to_text(true)).unwrap_or_default();
        let ew = elementwise_report(&runs).map(|e| e.to_text(true)).unwrap_or_default();
        let at = attention_report(&runs).map(|a| a.to_text(true)).unwrap_or_default();
        let sb = siblings_report(&runs).map(|p| p.to_text(true)).unwrap_or_default();
        format!("{cs}{}{mg}{ly}{ew}{at}{sb}", rep.to_text(true))
    };
    match a.report {
        Some(ReportFormat::Json) => {
            outln!("{}", serde_json::to_string_pretty(&rep).map_err(|e| Error::Internal(e.to_string()))?)
        }
        Some(ReportFormat::Text) => out!("{}", explained()),
        None if a.explain => out!("{}", explained()),
        None if a.output.is_none() && a.after.is_none() => match after_text {
            Some(text) => out!("{text}"),
            None => out!("{}", render(&g, format)?),
        },
        None => {
            errln!("{}", summary_line(&runs));
        }
    }
    Ok(())
}

/// The graph before the first pass and after the last, in one line each.
pub fn summary_line(runs: &[PassRun]) -> String {
    match (runs.first(), runs.last()) {
        (Some(a), Some(b)) => format!("before: {}\nafter:  {}", a.before, b.after),
        _ => String::new(),
    }
}
