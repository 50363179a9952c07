//! The fusion pass: finds every gated linear unit `act(x·W_gate [+b]) · (x·W_up [+b])`,
//! however the exporter spelled it, by equality saturation, and rewrites each into one
//! `FusedGateUp` node.
//!
//! A mixture of experts' gated unit, whose gate and up are products of a matrix per
//! token-expert pair, is found the same way: the lowering writes such a per-pair product as
//! `lin` of a weight of rank 3 ([`lower`]), and the fused node reads the pairs' matrices.
//!
//! Phases: [`lower`] the graph into an e-graph; saturate with [`rules`] under explicit
//! limits; [`select`] candidates by a DAG-aware cost (launches and bytes, shared nodes paid
//! once) with a hard rule against duplicated work; lift the chosen ones back as one patch.
//! Every node keeps its name; a fused node takes the name of the product it replaces and
//! lists the names of all the nodes it replaced.

pub mod lang;
pub mod lower;
pub mod report;
pub mod rules;
pub mod select;

use super::{Pass, PassReport};
use glufuse_ir::Result;
use glufuse_ir::*;
pub use report::{Candidate, FusionReport, Outcome, StopReason};
use select::{ClassMap, Plan, Rejection};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

/// Limits of one saturation run.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Saturation iterations at most.
    pub iterations: usize,
    /// E-nodes at most, per graph node (the limit scales with the graph).
    pub nodes_per_graph_node: usize,
    /// Wall time at most.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { iterations: 32, nodes_per_graph_node: 16, time: Duration::from_secs(20) }
    }
}

/// The pass.
#[derive(Default)]
pub struct FuseGateUp {
    /// Saturation limits.
    pub limits: Limits,
}

impl Pass for FuseGateUp {
    fn name(&self) -> &'static str {
        "fuse-gate-up"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        Ok(PassReport::Fusion(fuse(g, &self.limits)?))
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Runs the fusion on `g` in place and reports what it did.
pub fn fuse(g: &mut Graph, limits: &Limits) -> Result<FusionReport> {
    let mut rep = FusionReport::default();
    let t = Instant::now();
    let lowered = lower::lower(g)?;
    rep.timings.lower_ms = ms(t);

    let t = Instant::now();
    let rules = rules::rules();
    let node_limit = limits.nodes_per_graph_node.saturating_mul(g.len().max(64));
    let runner = egg::Runner::default()
        .with_egraph(lowered.egraph)
        .with_iter_limit(limits.iterations)
        .with_node_limit(node_limit)
        .with_time_limit(limits.time)
        .run(&rules);
    rep.timings.saturate_ms = ms(t);
    rep.stop_reason = runner.stop_reason.as_ref().into();
    rep.iterations = runner.iterations.len();
    let mut applied: BTreeMap<String, usize> = rules.iter().map(|r| (r.name.to_string(), 0)).collect();
    for it in &runner.iterations {
        for (name, n) in &it.applied {
            *applied.entry(name.to_string()).or_default() += n;
        }
    }
    rep.rules_applied = applied;
    let eg = runner.egraph;
    rep.egraph_nodes = eg.total_number_of_nodes();
    rep.egraph_classes = eg.number_of_classes();

    let t = Instant::now();
    let cm = ClassMap::new(&eg, &lowered.class_of, &lowered.order);
    // Candidates: each Mul of the graph whose class holds a gated product.
    let mut found: Vec<(Value, Activation, std::result::Result<Plan, Rejection>)> = vec![];
    for &n in &lowered.order {
        if g.node(n).op != Op::Binary(BinaryOp::Mul) {
            continue;
        }
        let v = Value::of(n);
        let class = &eg[lowered.class_of[&v]];
        let glus: Vec<&lang::Glu> = class.nodes.iter().filter(|e| matches!(e, lang::Glu::Glu(_))).collect();
        let Some(first) = glus.first() else { continue };
        let lang::Glu::Glu([a, _, _]) = first else { unreachable!("filtered") };
        let act = eg[*a].nodes.iter().find_map(|e| if let lang::Glu::Act(t) = e { Some(t.0) } else { None });
        let Some(act) = act else { continue };
        let mut plan = Err(select::diagnose(&eg, &cm, first, g));
        for f in class.nodes.iter().filter(|e| matches!(e, lang::Glu::Fgu(_))) {
            plan = select::resolve(&eg, &cm, v, f, g);
            if plan.is_ok() {
                break;
            }
        }
        found.push((v, act, plan));
    }
    let mut accepted: Vec<Plan> = vec![];
    let mut freed_before: HashSet<NodeIndex> = HashSet::new();
    let mut read_by_fused: HashSet<Value> = HashSet::new();
    let mut outcomes: Vec<(String, Activation, std::result::Result<usize, Rejection>)> = vec![];
    for (v, act, plan) in found {
        let name = g.node(v.node).name.clone();
        let plan = match plan {
            Ok(p) => p,
            Err(reason) => {
                outcomes.push((name, act, Err(reason)));
                continue;
            }
        };
        let eff = select::effect(g, &plan, &freed_before, &read_by_fused);
        let duplicated = eff.still.iter().any(|&n| g.launches_kernel(n));
        if duplicated {
            outcomes.push((name, act, Err(select::shared_reason(g, &plan, &eff.still))));
        } else if eff.delta >= 0.0 {
            outcomes.push((name, act, Err(Rejection::NoGain { change: Some(eff.delta) })));
        } else {
            freed_before.extend(eff.freed);
            read_by_fused.extend(plan.operands());
            outcomes.push((name, act, Ok(accepted.len())));
            accepted.push(plan);
        }
    }
    rep.timings.select_ms = ms(t);

    let t = Instant::now();
    let lifted = lift(g, &accepted)?;
    for (node, act, o) in outcomes {
        let outcome = match o {
            Ok(i) => {
                let p = &accepted[i];
                Outcome::Fused {
                    replaced: lifted[i].1.clone(),
                    layout: p.w_gate.layout,
                    merged: p.w_gate.value == p.w_up.value,
                    biases: (p.b_gate.is_some(), p.b_up.is_some()),
                }
            }
            Err(reason) => Outcome::Rejected { reason },
        };
        rep.candidates.push(Candidate { node, activation: act, outcome });
    }
    rep.fused = rep.candidates.iter().filter(|c| matches!(c.outcome, Outcome::Fused { .. })).count();
    rep.rejected = rep.candidates.len() - rep.fused;
    rep.timings.lift_ms = ms(t);
    Ok(rep)
}

/// Rewrites the graph for the accepted plans: each product is replaced by a `FusedGateUp`
/// node of its name, readers are rewired, and the nodes this leaves dead are removed.
/// Returns, per plan, the fused node and the names of the nodes it replaced.
fn lift(g: &mut Graph, plans: &[Plan]) -> Result<Vec<(NodeIndex, Vec<String>)>> {
    let mut out = vec![];
    let mut regions = vec![];
    for p in plans {
        let reg = select::region(g, p);
        let names: Vec<(NodeIndex, String)> = reg.iter().map(|&n| (n, g.node(n).name.clone())).collect();
        let name = g.node(p.root.node).name.clone();
        let ty = g.ty(p.root).clone();
        g.rename(p.root.node, format!("{name}.unfused"))?;
        let f = FusedGateUp {
            activation: p.activation,
            layout: p.w_gate.layout,
            gate_bias: p.b_gate.is_some(),
            up_bias: p.b_up.is_some(),
            gate_offset: p.w_gate.offset,
            up_offset: p.w_up.offset,
            replaced: vec![],
        };
        let new = g.add_node(name, Op::FusedGateUp(f), &p.operands(), vec![ty])?;
        g.replace_uses(p.root, Value::of(new));
        regions.push(names);
        out.push(new);
    }
    // Remove what became dead, region by region, consumers first.
    let mut removed: HashSet<NodeIndex> = HashSet::new();
    loop {
        let mut changed = false;
        for names in &regions {
            for (n, _) in names.iter().rev() {
                if removed.contains(n) {
                    continue;
                }
                let dead = g.g.neighbors_directed(*n, glufuse_ir::petgraph::Direction::Outgoing).next().is_none()
                    && !g.outputs.iter().any(|v| v.node == *n);
                if dead {
                    g.remove_node(*n);
                    removed.insert(*n);
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut res = vec![];
    for (new, names) in out.into_iter().zip(regions) {
        let replaced: Vec<String> = names.into_iter().filter(|(n, _)| removed.contains(n)).map(|(_, s)| s).collect();
        if let Op::FusedGateUp(f) = &mut g.g[new].op {
            f.replaced = replaced.clone();
        }
        res.push((new, replaced));
    }
    Ok(res)
}
