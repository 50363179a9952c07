//! [`Feedback`]: which graph outputs a [`Session::step`](super::Session::step) keeps on the
//! GPU as the next step's inputs (a decode step's present keys and values as the next step's
//! past), instead of reading them back and uploading them again.
//!
//! A pair names a graph output and the graph input it becomes: of the same dtype and rank,
//! and of the same size on every axis both fix (the axis that grows, `past + 1` against
//! `past`, is symbolic on one side at least). [`Feedback::caches`] pairs a KV-cache export's
//! outputs by their names, as the exporters write them (`present_0_k` → `past_0_k`,
//! `present.0.key` → `past_key_values.0.key`).

use crate::ir::{Dim, Op};
use crate::{Error, Graph, Result};

/// Graph outputs fed back to graph inputs between the steps of a [`Session`](super::Session).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    /// (output index, output name, input name), in the outputs' order.
    pub(crate) pairs: Vec<(usize, String, String)>,
}

impl Feedback {
    /// Feeds each output `pairs[i].0` back to input `pairs[i].1` of `g`. Errors name the
    /// output or input: one the graph does not have (listing those it has), an input or an
    /// output paired twice, a dtype, rank or fixed size that differs.
    pub fn new(g: &Graph, pairs: &[(&str, &str)]) -> Result<Feedback> {
        let mut list: Vec<(usize, String, String)> = vec![];
        for &(out, inp) in pairs {
            let j = (0..g.outputs.len()).find(|&j| g.output_name(j) == out).ok_or_else(|| {
                let names: Vec<String> = (0..g.outputs.len()).map(|j| g.output_name(j)).collect();
                Error::input(format!("the graph has no output '{out}'; its outputs are: {}", names.join(", ")))
            })?;
            let n = g.find(inp).filter(|&n| matches!(g.node(n).op, Op::Input)).ok_or_else(|| {
                let names: Vec<String> = g.input_nodes().iter().map(|&n| g.node(n).name.clone()).collect();
                Error::input(format!("the graph has no input '{inp}'; its inputs are: {}", names.join(", ")))
            })?;
            if let Some((_, o, _)) = list.iter().find(|(_, _, i)| i == inp) {
                return Err(Error::graph(inp, format!("is fed back twice, from '{o}' and from '{out}'")));
            }
            if let Some((_, _, i)) = list.iter().find(|(k, _, _)| *k == j) {
                return Err(Error::input(format!("graph output '{out}' is fed back twice, to '{i}' and to '{inp}'")));
            }
            let (to, from) = (&g.node(n).outputs[0], g.ty(g.outputs[j]));
            if to.dtype != from.dtype {
                return Err(Error::graph(
                    inp,
                    format!("the graph input is {} but output '{out}', fed back to it, is {}", to.dtype, from.dtype),
                ));
            }
            if to.shape.len() != from.shape.len() {
                return Err(Error::graph(
                    inp,
                    format!(
                        "the graph input has rank {} but output '{out}', fed back to it, has rank {}",
                        to.shape.len(),
                        from.shape.len()
                    ),
                ));
            }
            let fixed = |d: &Dim| d.fixed();
            if let Some(axis) = (0..to.shape.len())
                .find(|&a| matches!((fixed(&to.shape[a]), fixed(&from.shape[a])), (Some(x), Some(y)) if x != y))
            {
                return Err(Error::graph(
                    inp,
                    format!(
                        "axis {axis} of the graph input is {} but that of output '{out}', fed back to it, is {}",
                        to.shape[axis], from.shape[axis]
                    ),
                ));
            }
            list.push((j, out.to_string(), inp.to_string()));
        }
        if list.is_empty() {
            return Err(Error::input("no output is fed back: a feedback needs at least one pair"));
        }
        list.sort_by_key(|p| p.0);
        Ok(Feedback { pairs: list })
    }

    /// Every output of `g` whose name starts with `present` fed back to the input named the
    /// same with `past` or `past_key_values` in its place (`present_3_v` → `past_3_v`,
    /// `present.3.value` → `past_key_values.3.value`): a KV-cache step's caches. An error
    /// where the graph has no such output, or one without its input.
    pub fn caches(g: &Graph) -> Result<Feedback> {
        let mut pairs: Vec<(String, String)> = vec![];
        for j in 0..g.outputs.len() {
            let out = g.output_name(j);
            let Some(rest) = out.strip_prefix("present") else { continue };
            let is_input = |name: &str| g.find(name).is_some_and(|n| matches!(g.node(n).op, Op::Input));
            let inp = [format!("past{rest}"), format!("past_key_values{rest}")]
                .into_iter()
                .find(|name| is_input(name))
                .ok_or_else(|| {
                    Error::input(format!(
                        "graph output '{out}' looks like a present cache, but the graph has no input 'past{rest}' or 'past_key_values{rest}' to feed it back to"
                    ))
                })?;
            pairs.push((out, inp));
        }
        if pairs.is_empty() {
            return Err(Error::input(
                "the graph has no output named 'present…': it is not a KV-cache step whose caches could be fed back",
            ));
        }
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(o, i)| (o.as_str(), i.as_str())).collect();
        Feedback::new(g, &refs)
    }

    /// The pairs, (output, input), in the outputs' order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(_, o, i)| (o.as_str(), i.as_str()))
    }

    /// Whether graph output `j` is fed back.
    pub fn feeds_output(&self, j: usize) -> bool {
        self.pairs.iter().any(|p| p.0 == j)
    }

    /// Checks that it was made for a graph with `g`'s outputs and inputs (by index and name).
    pub(crate) fn check(&self, g: &Graph) -> Result<()> {
        for (j, out, inp) in &self.pairs {
            if *j >= g.outputs.len() || g.output_name(*j) != *out {
                return Err(Error::input(format!(
                    "the feedback's output '{out}' is not output {j} of this graph: it was made for another graph"
                )));
            }
            if !g.find(inp).is_some_and(|n| matches!(g.node(n).op, Op::Input)) {
                return Err(Error::input(format!(
                    "the feedback's input '{inp}' is no input of this graph: it was made for another graph"
                )));
            }
        }
        Ok(())
    }
}
