//! The CPU reference interpreter: the oracle for the fusion pass and the GPU runtime.
//!
//! This file is the driver: it binds symbolic dims from the inputs it is given, walks the
//! graph in topological order, checks each node's output sizes against the budget
//! ([`crate::limits`]), evaluates each node through [`Op::eval`] (plain loops in the
//! op's family file, f32 values, f64 accumulation in reductions and matrix products:
//! obviously right over fast) and frees each value after its last use.

use crate::shape::{bind_inputs, concrete, Bindings};
use crate::tensor::{Data, Tensor};
use crate::{DType, Graph, Op, Value};
use crate::{Error, Result};
use std::collections::HashMap;

/// Seeded inputs for every graph input (symbols bound by `b`), uniform in [-1, 1) (rounded
/// for f16 inputs). Integer and boolean inputs (token ids, masks) have no sensible random
/// values: an error names the first.
pub fn seeded_inputs(g: &Graph, b: &Bindings, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (i, n) in g.input_nodes().into_iter().enumerate() {
        out.insert(g.node(n).name.clone(), seeded_input(g, i, b, seed)?);
    }
    Ok(out)
}

/// The seeded value of the graph's input number `i` (in [`Graph::input_nodes`] order), as
/// [`seeded_inputs`] makes it.
pub fn seeded_input(g: &Graph, i: usize, b: &Bindings, seed: u64) -> Result<Tensor> {
    let n = *g.input_nodes().get(i).ok_or_else(|| Error::Internal(format!("the graph has no input {i}")))?;
    let node = g.node(n);
    let ty = &node.outputs[0];
    if !ty.dtype.is_float() {
        return Err(Error::graph(
            &node.name,
            format!(
                "this graph input holds {} values: give it (random values are made for float inputs only)",
                ty.dtype
            ),
        ));
    }
    let shape = concrete(&ty.shape, b).map_err(|m| Error::graph(&node.name, m))?;
    crate::limits::current().check_tensor(ty.dtype, &shape).map_err(|m| Error::graph(&node.name, m))?;
    let mut t = Tensor::random(shape, seed.wrapping_add(i as u64), 1.0);
    if ty.dtype == DType::F16 {
        if let Data::F32(v) = &mut t.data {
            crate::tensor::round_f16(v);
        }
        t.dtype = DType::F16;
    }
    Ok(t)
}

/// Checks `inputs` against the graph's inputs (every one given, of its dtype) and binds the
/// symbols of their types from their shapes (see [`bind_inputs`]; `given` are bindings
/// fixed beforehand). Errors name the input.
pub fn bind_graph_inputs(g: &Graph, inputs: &HashMap<String, Tensor>, given: &Bindings) -> Result<Bindings> {
    let mut b = given.clone();
    let mut list = vec![];
    for n in g.input_nodes() {
        let node = g.node(n);
        let t = inputs
            .get(&node.name)
            .ok_or_else(|| Error::graph(&node.name, "no value was given for this graph input"))?;
        let ty = &node.outputs[0];
        if t.dtype != ty.dtype {
            return Err(Error::graph(
                &node.name,
                format!("the graph input is {} but the value given is {}", ty.dtype, t.dtype),
            ));
        }
        list.push((node.name.as_str(), ty, t.shape.as_slice()));
    }
    bind_inputs(&list, &mut b)?;
    Ok(b)
}

/// Runs the graph on the CPU. `inputs` maps input names to tensors; weights come from the
/// graph (random fills are generated, shape-only weights are zeros). Returns every graph
/// output in order.
pub fn run(g: &Graph, inputs: &HashMap<String, Tensor>) -> Result<Vec<Tensor>> {
    run_with(g, inputs, &Bindings::new())
}

/// [`run`] with symbols bound beforehand (`given`), as a caller that fixed some sizes does.
pub fn run_with(g: &Graph, inputs: &HashMap<String, Tensor>, given: &Bindings) -> Result<Vec<Tensor>> {
    let order = g.topo_order()?;
    let b = bind_graph_inputs(g, inputs, given)?;
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
        // Every output's size is checked against the budget before anything is allocated.
        let budget = crate::limits::current();
        let shapes: Vec<Vec<usize>> = node
            .outputs
            .iter()
            .map(|t| concrete(&t.shape, &b).and_then(|s| budget.check_tensor(t.dtype, &s).map(|()| s)))
            .collect::<std::result::Result<_, _>>()
            .map_err(|m| Error::graph(&node.name, m))?;
        let out: Vec<Tensor> = if matches!(node.op, Op::Input) {
            // A graph input takes the value it was given.
            let t = inputs
                .get(&node.name)
                .ok_or_else(|| Error::graph(&node.name, "no value was given for this graph input"))?;
            vec![t.clone()]
        } else {
            node.op.eval(&ins, &node.outputs, &shapes, &b).map_err(|m| Error::graph(&node.name, m + &fed_by(g, n)))?
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

/// For a gather or scatter whose data or indices come from a graph input (token ids, a mask,
/// cache positions, through casts and reshapes): the words that say which, for its errors
/// (an id out of the table, a mask shorter than the positions, is the input's fault).
fn fed_by(g: &Graph, n: crate::NodeIndex) -> String {
    let node = g.node(n);
    if !matches!(node.op, Op::Gather { .. } | Op::GatherND { .. } | Op::ScatterND | Op::ScatterElements { .. }) {
        return String::new();
    }
    let source = |v: Value| {
        let mut v = v;
        loop {
            let src = g.node(v.node);
            match src.op {
                Op::Input => return Some(src.name.clone()),
                Op::Cast { .. } | Op::Reshape { .. } => v = g.inputs(v.node)[0],
                _ => return None,
            }
        }
    };
    let ins = g.inputs(n);
    let mut said = vec![];
    for (slot, what) in [(1, "indices"), (0, "data")] {
        if let Some(name) = ins.get(slot).and_then(|&v| source(v)) {
            said.push(format!("the {what} come from graph input '{name}'"));
        }
    }
    if said.is_empty() {
        String::new()
    } else {
        format!(" ({})", said.join("; "))
    }
}

/// Max absolute and relative error between two tensors (relative to the reference's largest
/// magnitude). Integers and booleans compare exactly: any difference gives an infinite
/// relative error; so do different shapes or dtypes (other than f32 against f16), and a NaN
/// on one side only.
pub fn compare(got: &Tensor, want: &Tensor) -> (f64, f64) {
    let kinds_match = got.dtype == want.dtype || (got.dtype.is_float() && want.dtype.is_float());
    if got.shape != want.shape || !kinds_match {
        return (f64::INFINITY, f64::INFINITY);
    }
    let n = want.numel();
    let (g, w) = (&got.data, &want.data);
    let mut abs = 0.0f64;
    let mut scale = 0.0f64;
    for i in 0..n {
        let (a, b) = (g.get_f64(i), w.get_f64(i));
        if a.is_nan() != b.is_nan() {
            return (f64::INFINITY, f64::INFINITY);
        }
        if a.is_nan() {
            continue;
        }
        if a.is_infinite() || b.is_infinite() {
            if a != b {
                return (f64::INFINITY, f64::INFINITY);
            }
            continue;
        }
        abs = abs.max((a - b).abs());
        scale = scale.max(b.abs());
    }
    if !want.dtype.is_float() {
        return (abs, if abs > 0.0 { f64::INFINITY } else { 0.0 });
    }
    (abs, abs / scale.max(1e-6))
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
