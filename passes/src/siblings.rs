//! Merging sibling programs: two `Elementwise` nodes that read a value in common, write
//! outputs of one shape and do not depend on each other become one node writing both (its
//! output 0 the first's, the second's among its extra outputs), so that one kernel launch
//! computes them. A decode step's KV cache is such a pair: the present keys (the new key,
//! rotated, after the past ones) and the present values, both `[batch, kv heads, past + new,
//! head]`, read the same merged projection. A decode step is dispatch-bound (about 9 µs a
//! dependent dispatch on an H100 over Vulkan), so a launch saved is time saved.
//!
//! The rules: neither program has row steps (each thread computes one element of every
//! output, which needs the outputs of one shape); every output of both has the first's
//! shape; neither reaches the other through the graph. It runs after the attention fusion,
//! which may take a program of views into an attention node, and the merged node takes the
//! first program's name, listing the second's among the names it replaced; a graph output
//! either computed keeps its name.
//!
//! Then a small program (at most [`INLINE_MAX_STEPS`] steps, no row steps, one output, not
//! a graph output), or a `Range`, that only programs read (directly or through `Reshape`
//! views) is computed inside each of them instead of by a launch of its own: the start of an exported decoder computes positions, a range, the
//! rotary embedding's angles and the mask's operands in such programs, each a dependent
//! dispatch of a few hundred elements. Its readers compute it at the coordinates they read
//! it at (a few more arithmetic steps each), and it is gone.

use super::{Pass, PassReport};
use glufuse_ir::petgraph::Direction;
use glufuse_ir::Result;
use glufuse_ir::*;
use std::collections::HashSet;

/// One pair of programs merged.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Pair {
    /// The merged node's name (the first program's).
    pub node: String,
    /// The second program's name, now among the node's outputs.
    pub merged: String,
}

/// What the pass merged.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiblingsReport {
    /// The pairs merged, in topological order of the first.
    pub pairs: Vec<Pair>,
    /// The small programs computed inside their readers instead (`node`: the program,
    /// `merged`: a reader), in the order done.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inlined: Vec<Pair>,
}

impl SiblingsReport {
    /// The report for people: one line, then one per pair when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let mut s = format!("sibling programs: {} pair(s) merged", self.pairs.len());
        if !self.inlined.is_empty() {
            let mut small: Vec<&str> = self.inlined.iter().map(|p| p.node.as_str()).collect();
            small.dedup();
            s.push_str(&format!(", {} small program(s) computed in their readers", small.len()));
        }
        s.push('\n');
        if detail {
            for p in &self.pairs {
                s.push_str(&format!("  {}: also computes {}\n", p.node, p.merged));
            }
            for p in &self.inlined {
                s.push_str(&format!("  {}: computed in {}\n", p.node, p.merged));
            }
        }
        s
    }
}

/// Merges sibling programs (see the module documentation).
pub struct MergeSiblingPrograms;

impl Pass for MergeSiblingPrograms {
    fn name(&self) -> &'static str {
        "merge-sibling-programs"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        let mut report = SiblingsReport::default();
        for a in g.topo_order()? {
            // (A node merged into an earlier one is gone.)
            if g.g.node_weight(a).is_none() || program(g, a).is_none() {
                continue;
            }
            // Candidates: programs reading one of a's inputs, after a in the graph.
            let mut cands: Vec<NodeIndex> = vec![];
            for v in g.inputs(a) {
                for (r, _) in g.users(v) {
                    if r != a && !cands.contains(&r) && program(g, r).is_some() {
                        cands.push(r);
                    }
                }
            }
            cands.sort();
            let Some(b) = cands.into_iter().find(|&b| alike(g, a, b) && !reaches(g, a, b) && !reaches(g, b, a)) else {
                continue;
            };
            let (node, merged) = (g.node(a).name.clone(), g.node(b).name.clone());
            merge(g, a, b)?;
            report.pairs.push(Pair { node, merged });
        }
        // Small programs into their readers, until none is left (a reader may become one),
        // the last first (so that a producer has not yet grown by its own producers).
        loop {
            let mut done = false;
            for p in g.topo_order()?.into_iter().rev() {
                let Some(readers) = inlinable(g, p) else { continue };
                let name = g.node(p).name.clone();
                for r in readers {
                    report.inlined.push(Pair { node: name.clone(), merged: g.node(r).name.clone() });
                    inline(g, p, r)?;
                }
                remove_unread(g, p);
                done = true;
                break;
            }
            if !done {
                break;
            }
        }
        Ok(PassReport::Siblings(report))
    }
}

/// The program of node `n`, where it is one without row steps.
fn program(g: &Graph, n: NodeIndex) -> Option<&ElementwiseProgram> {
    match &g.node(n).op {
        Op::Elementwise(p) if !p.steps.iter().any(Step::is_row) => Some(p),
        _ => None,
    }
}

/// Most steps a program computed inside its readers may have ([`MergeSiblingPrograms`]):
/// each reader repeats them for every element it reads.
pub const INLINE_MAX_STEPS: usize = 8;

/// The program of node `p` as a producer to compute inside its readers: a program without
/// row steps or extra outputs, or a `Range` (one step).
fn producer(g: &Graph, p: NodeIndex) -> Option<ElementwiseProgram> {
    match Step::source(&g.node(p).op) {
        Some(step) => Some(ElementwiseProgram { steps: vec![step], also: vec![], replaced: vec![] }),
        None => program(g, p).filter(|pp| pp.also.is_empty()).cloned(),
    }
}

/// The programs reading `p` (each once), directly or through `Reshape` views, where `p` is
/// a small program to compute inside them: at most [`INLINE_MAX_STEPS`] steps, none a row
/// step, one output that is no graph output, read by nothing else (no view a graph output).
fn inlinable(g: &Graph, p: NodeIndex) -> Option<Vec<NodeIndex>> {
    let pp = producer(g, p)?;
    if pp.steps.len() > INLINE_MAX_STEPS || g.node(p).outputs.len() != 1 {
        return None;
    }
    let mut readers = vec![];
    let mut stack = vec![p];
    while let Some(n) = stack.pop() {
        let v = Value::of(n);
        if g.is_output(v) {
            return None;
        }
        for (r, _) in g.users(v) {
            match g.node(r).op {
                Op::Elementwise(_) => readers.push(r),
                Op::Reshape { .. } => stack.push(r),
                _ => return None,
            }
        }
    }
    readers.sort();
    readers.dedup();
    (!readers.is_empty()).then_some(readers)
}

/// The shapes of the `Reshape` views that lead from `p`'s output to `v` (empty: `v` is that
/// output), or `None` where `v` is not `p`'s output seen through views.
fn through_views(g: &Graph, p: NodeIndex, v: Value) -> Option<Vec<Vec<DimExpr>>> {
    let mut shapes = vec![];
    let mut at = v;
    while at != Value::of(p) {
        let Op::Reshape { shape } = &g.node(at.node).op else { return None };
        shapes.push(shape.clone());
        at = g.inputs(at.node)[0];
    }
    shapes.reverse();
    Some(shapes)
}

/// Makes program `r` compute producer `p` where it read `p`'s output (directly or through
/// views): `p`'s steps (its inputs among `r`'s, a value both read kept once), then the
/// views' reshapes, take the place of that input step.
fn inline(g: &mut Graph, p: NodeIndex, r: NodeIndex) -> Result<()> {
    let pp = producer(g, p).expect("a producer");
    let Op::Elementwise(pr) = &g.node(r).op else {
        return Err(Error::Internal(format!("'{}' is not a program", g.node(r).name)));
    };
    let pr = pr.clone();
    let (p_ins, r_ins) = (g.inputs(p), g.inputs(r));
    let mut ins: Vec<Value> = vec![];
    let mut steps: Vec<Step> = vec![];
    let mut at = vec![0usize; pr.steps.len()];
    for (j, s) in pr.steps.iter().enumerate() {
        at[j] = match s {
            Step::Input(k) => match through_views(g, p, r_ins[*k]) {
                Some(views) => {
                    let base = steps.len();
                    for ps in &pp.steps {
                        let t = match ps {
                            Step::Input(i) => Step::Input(slot(&mut ins, p_ins[*i])),
                            ps => moved(ps, &|a| a + base),
                        };
                        steps.push(t);
                    }
                    for shape in views {
                        steps.push(Step::Reshape { shape, x: steps.len() - 1 });
                    }
                    steps.len() - 1
                }
                None => {
                    steps.push(Step::Input(slot(&mut ins, r_ins[*k])));
                    steps.len() - 1
                }
            },
            s => {
                steps.push(moved(s, &|a| at[a]));
                steps.len() - 1
            }
        };
    }
    let also = pr.also.iter().map(|&k| at[k]).collect();
    let outputs = g.node(r).outputs.clone();
    let what = format!("computing '{}' in '{}'", g.node(p).name, g.node(r).name);
    replace(g, &[(r, 0)], (steps, also), (p, &pp), &ins, outputs, &what)
}

/// Removes `p` and the views of it that nothing reads any more.
fn remove_unread(g: &mut Graph, p: NodeIndex) {
    let mut views = vec![p];
    let mut k = 0;
    while k < views.len() {
        for (r, _) in g.users(Value::of(views[k])) {
            if matches!(g.node(r).op, Op::Reshape { .. }) && !views.contains(&r) {
                views.push(r);
            }
        }
        k += 1;
    }
    for &n in views.iter().rev() {
        if g.users(Value::of(n)).is_empty() && !g.is_output(Value::of(n)) {
            g.remove_node(n);
        }
    }
}

/// Whether every output of `a` and `b` has the shape of `a`'s first.
fn alike(g: &Graph, a: NodeIndex, b: NodeIndex) -> bool {
    let shape = &g.node(a).outputs[0].shape;
    g.node(a).outputs.iter().chain(&g.node(b).outputs).all(|t| &t.shape == shape)
}

/// Whether a path leads from `from` to `to`.
fn reaches(g: &Graph, from: NodeIndex, to: NodeIndex) -> bool {
    let mut seen = HashSet::new();
    let mut stack = vec![from];
    while let Some(n) = stack.pop() {
        if n == to {
            return true;
        }
        if seen.insert(n) {
            stack.extend(g.g.neighbors_directed(n, Direction::Outgoing));
        }
    }
    false
}

/// Step `s` with its operands' indices moved by `f`.
fn moved(s: &Step, f: &dyn Fn(usize) -> usize) -> Step {
    let mut t = s.clone();
    let args: Vec<usize> = s.args().into_iter().map(f).collect();
    t.set_args(&args);
    t
}

/// Makes `a` compute `b` too and removes `b`: b's steps first (its inputs renumbered after
/// a's, a value both read kept once), then a's, whose result stays the node's result; the
/// outputs are a's, then b's result and b's extra outputs.
fn merge(g: &mut Graph, a: NodeIndex, b: NodeIndex) -> Result<()> {
    let (pa, pb) = (program(g, a).expect("a program").clone(), program(g, b).expect("a program").clone());
    let mut ins = g.inputs(a);
    let b_in: Vec<usize> = g.inputs(b).into_iter().map(|v| slot(&mut ins, v)).collect();
    let nb = pb.steps.len();
    let mut steps: Vec<Step> = pb
        .steps
        .iter()
        .map(|s| match s {
            Step::Input(i) => Step::Input(b_in[*i]),
            s => moved(s, &|k| k),
        })
        .collect();
    steps.extend(pa.steps.iter().map(|s| moved(s, &|k| k + nb)));
    let mut also: Vec<usize> = pa.also.iter().map(|k| k + nb).collect();
    also.push(nb - 1);
    also.extend(pb.also.iter().copied());
    let mut outputs = g.node(a).outputs.clone();
    outputs.extend(g.node(b).outputs.iter().cloned());
    let first_b = g.node(a).outputs.len();
    let what = format!("merging '{}' into '{}'", g.node(b).name, g.node(a).name);
    replace(g, &[(a, 0), (b, first_b)], (steps, also), (b, &pb), &ins, outputs, &what)
}

/// The index of `v` among `ins`, added at the end if it is not there yet (a value two
/// programs read becomes one input of the program computing both).
fn slot(ins: &mut Vec<Value>, v: Value) -> usize {
    ins.iter().position(|&u| u == v).unwrap_or_else(|| {
        ins.push(v);
        ins.len() - 1
    })
}

/// Puts one node in the place of the nodes `olds`, under the first's name, computing the
/// program of `steps` and `also` over `ins`, which takes in the program of node `taken` (its
/// name and the names it replaced join the first's); checks the program's steps (`what` says
/// what went wrong: a glufuse bug). Each old node's output `k` becomes the new node's output
/// `offset + k`; a graph output among theirs keeps its name.
fn replace(
    g: &mut Graph,
    olds: &[(NodeIndex, usize)],
    (steps, also): (Vec<Step>, Vec<usize>),
    (taken, tp): (NodeIndex, &ElementwiseProgram),
    ins: &[Value],
    outputs: Vec<TensorType>,
    what: &str,
) -> Result<()> {
    let nodes: Vec<NodeIndex> = olds.iter().map(|&(n, _)| n).collect();
    let Op::Elementwise(first) = &g.node(nodes[0]).op else {
        return Err(Error::Internal(format!("{what}: '{}' is not a program", g.node(nodes[0]).name)));
    };
    let mut replaced = first.replaced.clone();
    replaced.push(g.node(taken).name.clone());
    replaced.extend(tp.replaced.iter().cloned());
    let p = ElementwiseProgram { steps, also, replaced };
    let tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
    p.step_types(&tys).map_err(|m| Error::Internal(format!("{what}: {m}")))?;
    let names: Vec<(usize, String)> =
        (0..g.outputs.len()).filter(|&i| nodes.contains(&g.outputs[i].node)).map(|i| (i, g.output_name(i))).collect();
    let tmp = format!("{}.replaced", g.node(nodes[0]).name);
    let m = g.add_node(tmp, Op::Elementwise(p), ins, outputs)?;
    for &(n, offset) in olds {
        for k in 0..g.node(n).outputs.len() {
            g.replace_uses(Value { node: n, output: k }, Value { node: m, output: offset + k });
        }
    }
    let first = g.remove_node(nodes[0]).expect("the node is in the graph");
    for &n in &nodes[1..] {
        g.remove_node(n);
    }
    g.rename(m, first.name)?;
    for (i, name) in names {
        g.name_output(i, name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use glufuse_ir::builder::GraphBuilder;
    use glufuse_ir::{interp, shape_of};

    /// A KV-cache step in miniature: the new key (scaled) and value (negated) after the past
    /// ones, both `[2, past + 1, 4]`, read from one projection; `q` of another shape.
    fn graph() -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[2, 1, 12]));
        let pk = b.input("past_k", DType::F32, vec![Dim::Fixed(2), Dim::sym("past"), Dim::Fixed(4)]);
        let pv = b.input("past_v", DType::F32, vec![Dim::Fixed(2), Dim::sym("past"), Dim::Fixed(4)]);
        let k = b.slice("k", x, -1, 4, 8);
        let v = b.slice("v", x, -1, 8, 12);
        let q = b.slice("q", x, -1, 0, 4);
        let two = b.scalar("two", DType::F32, 2.0);
        let ks = b.mul("k.scaled", k, two);
        let vn = b.unary("v.neg", UnaryOp::Neg, v);
        let kc = b.node("present_k", Op::Concat { axis: 1 }, &[pk, ks], vec![])[0];
        let vc = b.node("present_v", Op::Concat { axis: 1 }, &[pv, vn], vec![])[0];
        let qs = b.unary("q.exp", UnaryOp::Exp, q);
        b.finish(&[qs, kc, vc]).unwrap()
    }

    #[test]
    fn a_kv_cache_step_writes_keys_and_values_in_one_kernel() {
        let original = graph();
        let mut g = original.clone();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let rep = crate::siblings_report(&runs).unwrap();
        assert_eq!(rep.pairs.len(), 1, "{rep:?}");
        let (node, merged) = (rep.pairs[0].node.as_str(), rep.pairs[0].merged.as_str());
        let mut both = [node, merged];
        both.sort();
        assert_eq!(both, ["present_k", "present_v"]);
        assert_eq!(g.node(g.find(node).unwrap()).outputs.len(), 2);
        assert!(g.find(merged).is_none());
        assert_eq!(g.output_name(1), "present_k");
        assert_eq!(g.output_name(2), "present_v", "the graph output keeps its name");
        let back = glufuse_ir::json::from_str(&glufuse_ir::json::to_string(&g).unwrap()).unwrap();
        assert_eq!(
            (back.output_name(1), back.output_name(2)),
            ("present_k".into(), "present_v".into()),
            "through JSON"
        );
        let b: glufuse_ir::shape::Bindings = [("past".to_string(), 5usize)].into_iter().collect();
        let inputs = interp::seeded_inputs(&original, &b, 4).unwrap();
        assert_eq!(interp::run(&g, &inputs).unwrap(), interp::run(&original, &inputs).unwrap());
    }

    #[test]
    fn dependent_or_differently_shaped_programs_stay_apart() {
        // b reads a's output: merging them would make the node read itself.
        let mut bld = GraphBuilder::new();
        let x = bld.input("x", DType::F32, shape_of(&[4, 4]));
        let y = bld.input("y", DType::F32, shape_of(&[4, 4]));
        let a1 = bld.add("a1", x, y);
        let a = bld.unary("a", UnaryOp::Exp, a1);
        let b1 = bld.mul("b1", x, a);
        let b = bld.unary("b", UnaryOp::Neg, b1);
        let t = bld.transpose("t", x, &[1, 0]);
        let c = bld.unary("c", UnaryOp::Sin, t);
        let r = bld.node("r", Op::Reshape { shape: vec![DimExpr::constant(2), DimExpr::constant(8)] }, &[x], vec![])[0];
        let d1 = bld.unary("d1", UnaryOp::Cos, r);
        let d = bld.unary("d", UnaryOp::Neg, d1);
        let mut g = bld.finish(&[a, b, c, d]).unwrap();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let rep = crate::siblings_report(&runs).unwrap();
        assert!(rep.pairs.iter().all(|p| p.node != "d" && p.merged != "d"), "d is [2, 8]: {rep:?}");
        assert!(!rep.pairs.iter().any(|p| [p.node.as_str(), p.merged.as_str()] == ["a", "b"]), "{rep:?}");
    }

    /// A mask's positions in miniature: a small program (`pos + 1`, `pos` a `Range` over a
    /// symbolic dim) read by two programs through views (`[1, n]` and `[n, 1]`) is computed
    /// inside both and gone, views and all; the values are the original's. A producer read
    /// by a projection, and a graph output, keeps its kernel.
    #[test]
    fn small_programs_are_computed_inside_their_readers() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, vec![Dim::Fixed(1), Dim::sym("n")]);
        let w = b.weight("w", DType::F32, &[4, 4], 1.0);
        let y = b.input("y", DType::F32, shape_of(&[3, 4]));
        let range = Op::Range {
            start: DimExpr::constant(2),
            limit: DimExpr::sym("n").add(&DimExpr::constant(2)).unwrap(),
            delta: 1,
            dtype: DType::I64,
        };
        let pos = b.node("pos", range, &[], vec![])[0];
        let posf = b.node("posf", Op::Cast { to: DType::F32 }, &[pos], vec![])[0];
        let one = b.scalar("one", DType::F32, 1.0);
        let next = b.add("next", posf, one);
        let view =
            b.node("view", Op::Reshape { shape: vec![DimExpr::constant(1), DimExpr::constant(-1)] }, &[next], vec![])
                [0];
        let a1 = b.mul("a1", x, view);
        let a = b.unary("a", UnaryOp::Sin, a1);
        let column =
            b.node("column", Op::Reshape { shape: vec![DimExpr::constant(-1), DimExpr::constant(1)] }, &[next], vec![])
                [0];
        let e1 = b.unary("e1", UnaryOp::Exp, column);
        let e = b.unary("e", UnaryOp::Neg, e1);
        let c = b.unary("c", UnaryOp::Cos, y);
        let kept = b.matmul("kept", c, w);
        let original = b.finish(&[a, e, kept, c]).unwrap();
        let mut g = original.clone();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let rep = crate::siblings_report(&runs).unwrap();
        let inlined: Vec<&str> = rep.inlined.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(inlined, ["next", "next"], "{rep:?}");
        for gone in ["pos", "posf", "next", "view", "column"] {
            assert!(g.find(gone).is_none(), "{gone} is still a node");
        }
        assert!(g.find("c").is_some(), "a graph output read by a projection keeps its kernel");
        assert!(rep.to_text(false).contains("1 small program(s) computed in their readers"), "{}", rep.to_text(false));
        let bind: glufuse_ir::shape::Bindings = [("n".to_string(), 5usize)].into_iter().collect();
        let inputs = interp::seeded_inputs(&original, &bind, 4).unwrap();
        assert_eq!(interp::run(&g, &inputs).unwrap(), interp::run(&original, &inputs).unwrap());
        let back = glufuse_ir::json::from_str(&glufuse_ir::json::to_string(&g).unwrap()).unwrap();
        assert_eq!(interp::run(&back, &inputs).unwrap(), interp::run(&original, &inputs).unwrap(), "through JSON");
    }
}
