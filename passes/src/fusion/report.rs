//! The fusion report: what the pass saw, fused and rejected (with reasons), and how the
//! e-graph run went. Data for tools (`--report json`) and text for people (`--explain`).

use super::select::Rejection;
use glufuse_ir::{Activation, Layout};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Write};

/// What became of one candidate product `act(g) · u`. In JSON: `"outcome": "fused"` with
/// the fields of [`Outcome::Fused`], or `"outcome": "rejected"` with the reason's text
/// (`"reason"`) and the [`Rejection`] itself (`"rejection"`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(into = "OutcomeJson", from = "OutcomeJson")]
pub enum Outcome {
    /// Rewritten into one `FusedGateUp` node.
    Fused {
        /// The nodes it replaced (the fused node takes the product's name).
        replaced: Vec<String>,
        /// Weight layout.
        layout: Layout,
        /// Whether it reads one merged gate_up weight in two halves.
        merged: bool,
        /// Whether gate and up carry biases.
        biases: (bool, bool),
    },
    /// Left as it was.
    Rejected {
        /// Why.
        reason: Rejection,
    },
}

/// [`Outcome`] as JSON writes it: a rejection carries its text for people beside the value
/// that reads back.
#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum OutcomeJson {
    Fused { replaced: Vec<String>, layout: Layout, merged: bool, biases: (bool, bool) },
    Rejected { reason: String, rejection: Rejection },
}

impl From<Outcome> for OutcomeJson {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Fused { replaced, layout, merged, biases } => {
                OutcomeJson::Fused { replaced, layout, merged, biases }
            }
            Outcome::Rejected { reason } => OutcomeJson::Rejected { reason: reason.to_string(), rejection: reason },
        }
    }
}

impl From<OutcomeJson> for Outcome {
    fn from(o: OutcomeJson) -> Self {
        match o {
            OutcomeJson::Fused { replaced, layout, merged, biases } => {
                Outcome::Fused { replaced, layout, merged, biases }
            }
            OutcomeJson::Rejected { rejection, .. } => Outcome::Rejected { reason: rejection },
        }
    }
}

/// One candidate.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Candidate {
    /// The product node's name.
    pub node: String,
    /// The activation on its gate side.
    pub activation: Activation,
    /// What became of it.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Why equality saturation stopped: egg's `StopReason`, as data.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum StopReason {
    /// No rule had anything left to add.
    Saturated,
    /// The iteration limit, reached.
    IterationLimit(usize),
    /// The e-node limit, reached.
    NodeLimit(usize),
    /// The time limit in seconds, reached.
    TimeLimit(f64),
    /// Another reason, in egg's words.
    Other(String),
    /// No reason given (the run did not stop, or did not happen).
    #[default]
    Unknown,
}

impl From<Option<&egg::StopReason>> for StopReason {
    fn from(r: Option<&egg::StopReason>) -> Self {
        match r {
            Some(egg::StopReason::Saturated) => StopReason::Saturated,
            Some(egg::StopReason::IterationLimit(n)) => StopReason::IterationLimit(*n),
            Some(egg::StopReason::NodeLimit(n)) => StopReason::NodeLimit(*n),
            Some(egg::StopReason::TimeLimit(s)) => StopReason::TimeLimit(*s),
            Some(egg::StopReason::Other(s)) => StopReason::Other(s.clone()),
            None => StopReason::Unknown,
        }
    }
}

/// As the report says it: `saturated`, `iteration limit (32)`, `e-node limit (1024)`, `time
/// limit (20 s)`.
impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Saturated => f.write_str("saturated"),
            StopReason::IterationLimit(n) => write!(f, "iteration limit ({n})"),
            StopReason::NodeLimit(n) => write!(f, "e-node limit ({n})"),
            StopReason::TimeLimit(s) => write!(f, "time limit ({s} s)"),
            StopReason::Other(s) => f.write_str(s),
            StopReason::Unknown => f.write_str("unknown"),
        }
    }
}

/// Serialised as its text, so that JSON reports read as people read them.
impl Serialize for StopReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read from its text, as [`fmt::Display`] writes it; a text of no other form is
/// [`StopReason::Other`].
impl<'de> Deserialize<'de> for StopReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let inside = |prefix: &str, suffix: &str| s.strip_prefix(prefix)?.strip_suffix(suffix).map(str::to_string);
        let r = if s == "saturated" {
            StopReason::Saturated
        } else if s == "unknown" {
            StopReason::Unknown
        } else if let Some(n) = inside("iteration limit (", ")").and_then(|n| n.parse().ok()) {
            StopReason::IterationLimit(n)
        } else if let Some(n) = inside("e-node limit (", ")").and_then(|n| n.parse().ok()) {
            StopReason::NodeLimit(n)
        } else if let Some(t) = inside("time limit (", " s)").and_then(|t| t.parse().ok()) {
            StopReason::TimeLimit(t)
        } else {
            StopReason::Other(s)
        };
        Ok(r)
    }
}

/// Wall times of the pass's phases, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    /// Lowering the graph into the e-graph.
    pub lower_ms: f64,
    /// Equality saturation.
    pub saturate_ms: f64,
    /// Choosing what to fuse.
    pub select_ms: f64,
    /// Rewriting the graph.
    pub lift_ms: f64,
}

/// The report of one run of the fusion pass.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FusionReport {
    /// Every candidate, in graph order.
    pub candidates: Vec<Candidate>,
    /// How many were fused.
    pub fused: usize,
    /// How many were left alone.
    pub rejected: usize,
    /// E-nodes at the end of saturation.
    pub egraph_nodes: usize,
    /// E-classes at the end of saturation.
    pub egraph_classes: usize,
    /// Saturation iterations.
    pub iterations: usize,
    /// Why saturation stopped.
    pub stop_reason: StopReason,
    /// How often each rule fired, over the run.
    pub rules_applied: BTreeMap<String, usize>,
    /// Phase timings.
    pub timings: Timings,
}

impl FusionReport {
    /// The report as text for people; `timings` adds the (run-dependent) times.
    pub fn to_text(&self, timings: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fusion: {} candidate(s), {} fused, {} rejected",
            self.candidates.len(),
            self.fused,
            self.rejected
        );
        for c in &self.candidates {
            match &c.outcome {
                Outcome::Fused { replaced, layout, merged, biases } => {
                    let mut extra = vec![format!("{layout:?}").to_lowercase()];
                    if *merged {
                        extra.push("merged gate_up".into());
                    }
                    if biases.0 || biases.1 {
                        extra.push("bias".into());
                    }
                    let _ = writeln!(
                        s,
                        "  fused    {} ({}, {}): replaced {}",
                        c.node,
                        c.activation.name(),
                        extra.join(", "),
                        replaced.join(", ")
                    );
                }
                Outcome::Rejected { reason } => {
                    let _ = writeln!(s, "  rejected {} ({}): {}", c.node, c.activation.name(), reason);
                }
            }
        }
        let _ = writeln!(
            s,
            "e-graph: {} nodes, {} classes, {} iteration(s), stopped: {}",
            self.egraph_nodes, self.egraph_classes, self.iterations, self.stop_reason
        );
        let fired: Vec<String> =
            self.rules_applied.iter().filter(|(_, &n)| n > 0).map(|(k, n)| format!("{k}×{n}")).collect();
        let _ = writeln!(s, "rules fired: {}", if fired.is_empty() { "none".into() } else { fired.join(" ") });
        if timings {
            let t = &self.timings;
            let _ = writeln!(
                s,
                "time: lower {:.2} ms, saturate {:.2} ms, select {:.2} ms, lift {:.2} ms",
                t.lower_ms, t.saturate_ms, t.select_ms, t.lift_ms
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_read_as_before_in_text_and_json() {
        for (r, text) in [
            (StopReason::Saturated, "saturated"),
            (StopReason::IterationLimit(32), "iteration limit (32)"),
            (StopReason::NodeLimit(1024), "e-node limit (1024)"),
            (StopReason::TimeLimit(20.0), "time limit (20 s)"),
            (StopReason::Other("stopped by hook".into()), "stopped by hook"),
        ] {
            assert_eq!(r.to_string(), text);
            assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::Value::from(text));
            assert_eq!(serde_json::from_value::<StopReason>(text.into()).unwrap(), r);
        }
        assert_eq!(serde_json::from_value::<StopReason>("unknown".into()).unwrap(), StopReason::Unknown);
    }
}
