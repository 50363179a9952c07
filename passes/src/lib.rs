//! glufuse-passes: graph passes and the manager that runs them. It builds on glufuse-ir and
//! egg only; the code generator and the runtime know nothing of it.
//!
//! A [`Pass`] transforms a [`Graph`] in place and returns a report (data, not log lines). The
//! [`PassManager`], not each pass, verifies the graph after every pass (always in debug builds
//! and tests, on request in release) and records before/after dumps when asked.

#![warn(missing_docs)]

pub mod attention;
pub mod cse;
pub mod dce;
pub mod elementwise;
pub mod fusion;
pub mod layout;
pub mod merge;
pub mod scatter;
pub mod siblings;

use glufuse_ir::dump::{render, Format};
use glufuse_ir::{Error, Result};
use glufuse_ir::{Graph, GraphSummary};
use std::time::{Duration, Instant};

/// What a pass reports about its run (in JSON, tagged by `"pass"`: `"dce"` or `"fusion"`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "pass", rename_all = "snake_case")]
pub enum PassReport {
    /// Dead-node elimination.
    Dce(dce::DceReport),
    /// Common-subexpression elimination.
    Cse(cse::CseReport),
    /// The gated-FFN fusion.
    Fusion(fusion::FusionReport),
    /// The elementwise fusion.
    Elementwise(elementwise::ElementwiseReport),
    /// The attention fusion.
    Attention(attention::AttentionReport),
    /// The merging of sibling projections.
    Merge(merge::MergeReport),
    /// The merging of sibling programs.
    Siblings(siblings::SiblingsReport),
    /// The projections' weights held as `[N, K]`.
    Layout(layout::LayoutReport),
    /// Transposed `ScatterND` chains written as one `ScatterElements` along an axis.
    Scatter(scatter::ScatterReport),
}

/// A graph transformation.
pub trait Pass {
    /// Short name, used in reports and dumps (`fuse-gate-up`).
    fn name(&self) -> &'static str;
    /// Transforms the graph. Must keep what it computes; must keep every node's name.
    fn run(&mut self, g: &mut Graph) -> Result<PassReport>;
}

/// One pass's run, as the manager saw it. Serialisable to JSON and back (`time` in
/// milliseconds).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PassRun {
    /// The pass's name ([`Pass::name`]).
    pub name: String,
    /// Wall time of the pass (verification excluded).
    #[serde(serialize_with = "ser_ms", deserialize_with = "de_ms")]
    pub time: Duration,
    /// The graph before.
    pub before: GraphSummary,
    /// The graph after.
    pub after: GraphSummary,
    /// The pass's own report.
    pub report: PassReport,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// Milliseconds back to a duration, rounded to the nanosecond (exact for what [`ser_ms`]
/// wrote, up to days).
fn de_ms<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    let ms = <f64 as serde::Deserialize>::deserialize(d)?;
    if !(ms.is_finite() && ms >= 0.0) {
        return Err(serde::de::Error::custom(format!("a pass time must be a non-negative number of ms, not {ms}")));
    }
    Ok(Duration::from_nanos((ms * 1e6).round() as u64))
}

/// Runs passes in order, verifying between them.
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
    /// Verify after every pass (on by default in debug builds and tests).
    pub verify_each: bool,
    /// Record a dump of the graph before and after every pass in this format.
    pub dump: Option<Format>,
    /// The dumps recorded: (pass name, before, after).
    pub dumps: Vec<(&'static str, String, String)>,
}

impl PassManager {
    /// A manager over the given passes.
    pub fn new(passes: Vec<Box<dyn Pass>>) -> Self {
        PassManager { passes, verify_each: cfg!(debug_assertions), dump: None, dumps: vec![] }
    }

    /// The standard pipeline: gated-FFN fusion, merging of sibling projections, static-cache
    /// scatters on their cache's layout (before the elementwise fusion, which takes in the
    /// transposes of the updates it adds), elementwise fusion, attention fusion, merging of
    /// sibling programs, the projections' weights held as `[N, K]` (after the merge, so that
    /// a merged weight is transposed whole, and after the elementwise fusion, whose norm
    /// programs it looks for), then dead-node elimination.
    pub fn standard() -> Self {
        Self::new(vec![
            Box::new(cse::EliminateCommonSubexpressions),
            Box::new(fusion::FuseGateUp::default()),
            Box::new(merge::MergeProjections),
            Box::new(scatter::ScatterAlongAxis),
            Box::new(elementwise::FuseElementwise),
            Box::new(attention::FuseAttention),
            Box::new(siblings::MergeSiblingPrograms),
            Box::new(layout::WeightsNk),
            Box::new(dce::DeadNodeElimination),
        ])
    }

    /// Runs every pass. The input is verified first (bad input is the caller's error); a
    /// verification failure after a pass is a glufuse bug and says so.
    pub fn run(&mut self, g: &mut Graph) -> Result<Vec<PassRun>> {
        glufuse_ir::verify::verify(g)?;
        let mut runs = vec![];
        for p in &mut self.passes {
            let before = g.summary();
            let dump_before = self.dump.map(|f| render(g, f)).transpose()?;
            let t = Instant::now();
            let report = p.run(g)?;
            let time = t.elapsed();
            if self.verify_each {
                glufuse_ir::verify::verify(g).map_err(|e| {
                    Error::Internal(format!("the graph fails verification after pass '{}': {e}", p.name()))
                })?;
            }
            if let (Some(f), Some(b)) = (self.dump, dump_before) {
                self.dumps.push((p.name(), b, render(g, f)?));
            }
            runs.push(PassRun { name: p.name().to_string(), time, before, after: g.summary(), report });
        }
        Ok(runs)
    }
}

/// `base`, or `base.N` for the first N that no node has: the name of a node a pass adds.
pub(crate) fn free_name(g: &Graph, base: &str) -> String {
    if g.find(base).is_none() {
        return base.to_string();
    }
    (1..).map(|i| format!("{base}.{i}")).find(|n| g.find(n).is_none()).expect("some name is free")
}

/// The fusion report among a pipeline's runs, if the fusion pass ran.
pub fn fusion_report(runs: &[PassRun]) -> Option<&fusion::FusionReport> {
    runs.iter().find_map(|r| if let PassReport::Fusion(f) = &r.report { Some(f) } else { None })
}

/// The elementwise fusion's report among a pipeline's runs, if it ran.
pub fn elementwise_report(runs: &[PassRun]) -> Option<&elementwise::ElementwiseReport> {
    runs.iter().find_map(|r| if let PassReport::Elementwise(e) = &r.report { Some(e) } else { None })
}

/// The attention fusion's report among a pipeline's runs, if it ran.
pub fn attention_report(runs: &[PassRun]) -> Option<&attention::AttentionReport> {
    runs.iter().find_map(|r| if let PassReport::Attention(a) = &r.report { Some(a) } else { None })
}

/// The merging of sibling projections' report among a pipeline's runs, if it ran.
pub fn merge_report(runs: &[PassRun]) -> Option<&merge::MergeReport> {
    runs.iter().find_map(|r| if let PassReport::Merge(m) = &r.report { Some(m) } else { None })
}

/// The weight layout's report among a pipeline's runs, if it ran.
pub fn layout_report(runs: &[PassRun]) -> Option<&layout::LayoutReport> {
    runs.iter().find_map(|r| if let PassReport::Layout(l) = &r.report { Some(l) } else { None })
}

/// The static-cache scatters' report among a pipeline's runs, if it ran.
pub fn scatter_report(runs: &[PassRun]) -> Option<&scatter::ScatterReport> {
    runs.iter().find_map(|r| if let PassReport::Scatter(s) = &r.report { Some(s) } else { None })
}

/// The common-subexpression elimination's report among a pipeline's runs, if it ran.
pub fn cse_report(runs: &[PassRun]) -> Option<&cse::CseReport> {
    runs.iter().find_map(|r| if let PassReport::Cse(c) = &r.report { Some(c) } else { None })
}

/// The merging of sibling programs' report among a pipeline's runs, if it ran.
pub fn siblings_report(runs: &[PassRun]) -> Option<&siblings::SiblingsReport> {
    runs.iter().find_map(|r| if let PassReport::Siblings(p) = &r.report { Some(p) } else { None })
}
