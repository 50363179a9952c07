//! The CPU reference interpreter: the oracle for the fusion pass and the GPU runtime.
//!
//! This file is the driver: it binds symbolic dims from the inputs it is given, walks the
//! graph in topological order, evaluates each node through [`Op::eval`] (plain loops in the
//! op's family file, f32 values, f64 accumulation in matrix products: obviously right over
//! fast) and frees each value after its last use.

use crate::shape::{bind, concrete, Bindings};
use crate::tensor::Tensor;
use crate::{DType, Graph, Op, Value};
use crate::{Error, Result};
use std::collections::HashMap;

/// Seeded inputs for every graph input (symbols bound by `b`), uniform in [-1, 1).
pub fn seeded_inputs(g: &Graph, b: &Bindings, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (i, n) in g.input_nodes().into_iter().enumerate() {
        let node = g.node(n);
        let shape = concrete(&node.outputs[0].shape, b).map_err(|m| Error::graph(&node.name, m))?;
        out.insert(node.name.clone(), Tensor::random(shape, seed.wrapping_add(i as u64), 1.0));
    }
    Ok(out)
}

/// Runs the graph on the CPU. `inputs` maps input names to tensors; weights come from the
/// graph (random fills are generated, shape-only weights are zeros). Returns every graph
/// output in order.
pub fn run(g: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
    let order = g.topo_order()?;
    let mut b = Bindings::new();
    for n in g.input_nodes() {
        let node = g.node(n);
        let t = inputs
            .get(&node.name)
            .ok_or_else(|| Error::graph(&node.name, "no value was given for this graph input"))?;
        bind(&node.outputs[0], &t.shape, &mut b).map_err(|m| Error::graph(&node.name, m))?;
    }
    let mut vals: HashMap<Value, Tensor> = HashMap::new();
    // Free each value after its last use to keep memory flat on deep graphs.
    let mut uses: HashMap<Value, usize> = HashMap::new();
    for &n in &order {
        for v in g.inputs(n) {
            *uses.entry(v).or_default() += 1;
        }
    }
    for &n in &order {
        let node = g.node(n);
        let ins_v = g.inputs(n);
        let ins: Vec<&Tensor> = ins_v.iter().map(|v| &vals[v]).collect();
        let shapes: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|t| concrete(&t.shape, &b))
            .collect::<std::result::Result<_, _>>()
            .map_err(|m| Error::graph(&node.name, m))?;
        let out: Vec<Tensor> = if matches!(node.op, Op::Input) {
            // A graph input takes the value it was given.
            let t = inputs
                .get(&node.name)
                .ok_or_else(|| Error::graph(&node.name, "no value was given for this graph input"))?;
            vec![t.clone()]
        } else {
            node.op.eval(&ins, &node.outputs, &shapes).map_err(|m| Error::graph(&node.name, m))?
        };
        for (i, t) in out.into_iter().enumerate() {
            vals.insert(Value { node: n, output: i }, t);
        }
        for v in ins_v {
            let u = uses.get_mut(&v).expect("counted");
            *u -= 1;
            if *u == 0 && !g.is_output(v) {
                vals.remove(&v);
            }
        }
    }
    Ok(g.outputs.iter().map(|v| vals[v].clone()).collect())
}

/// Max absolute and relative error between two tensors (relative to the reference's scale).
pub fn compare(got: &Tensor, want: &Tensor) -> (f64, f64) {
    let scale = want.data.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs())).max(1e-6);
    let mut abs = 0.0f64;
    for (a, b) in got.data.iter().zip(&want.data) {
        abs = abs.max((*a as f64 - *b as f64).abs());
    }
    (abs, abs / scale)
}

/// Relative tolerance of GPU against interpreter: f32 math on both sides, so differences
/// come from summation order and transcendental functions; f16 graphs round more.
pub fn check_tolerance(g: &Graph) -> f64 {
    let f16 = g.g.node_indices().any(|n| g.node(n).outputs.iter().any(|t| t.dtype == DType::F16));
    if f16 {
        2e-3
    } else {
        1e-4
    }
}
