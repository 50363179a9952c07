//! What `interp`, `run` and `wgsl` share: symbolic dims and inputs from the arguments
//! (`--dim NAME=N`, `--input NAME=F.npy`, the rest seeded), and the summary printed for each
//! output.

use crate::args::RunInputs;
use glufuse::ir::{Dim, Op};
use glufuse::shape::Bindings;
use glufuse::tensor::Tensor;
use glufuse::{Error, Graph, Result};
use std::collections::HashMap;
use std::path::Path;

/// The dims given as `NAME=N`.
fn parse_dims(dims: &[String]) -> Result<Bindings> {
    let mut b = Bindings::new();
    for d in dims {
        let (k, v) = d.split_once('=').ok_or_else(|| Error::input(format!("--dim {d:?} must be NAME=N")))?;
        let n: usize = v.parse().map_err(|_| Error::input(format!("--dim {d:?}: {v:?} is not a size")))?;
        b.insert(k.to_string(), n);
    }
    Ok(b)
}

/// Binds every symbol of the graph's inputs that `b` leaves unbound to 1.
fn default_unbound(g: &Graph, b: &mut Bindings) {
    for n in g.input_nodes() {
        for d in &g.node(n).outputs[0].shape {
            if let Dim::Sym(s) = d {
                b.entry(s.clone()).or_insert(1);
            }
        }
    }
}

/// The bindings of `--dim NAME=N` arguments; unbound dims are 1.
pub fn bindings(g: &Graph, dims: &[String]) -> Result<Bindings> {
    let mut b = parse_dims(dims)?;
    default_unbound(g, &mut b);
    Ok(b)
}

/// Inputs for a run: those given as .npy files, the rest seeded; and the dim bindings (from
/// `--dim`, then from the shapes of the files given; unbound dims are 1).
pub fn gather_inputs(g: &Graph, io: &RunInputs) -> Result<(HashMap<String, Tensor>, Bindings)> {
    let mut b = parse_dims(&io.dims)?;
    let mut given = HashMap::new();
    for spec in &io.inputs {
        let (name, file) =
            spec.split_once('=').ok_or_else(|| Error::input(format!("--input {spec:?} must be NAME=FILE.npy")))?;
        let n = g
            .find(name)
            .filter(|&n| matches!(g.node(n).op, Op::Input))
            .ok_or_else(|| Error::input(format!("--input {name:?}: the graph has no input of that name")))?;
        let t = glufuse::files::read_npy(Path::new(file), &g.node(n).outputs[0])?;
        glufuse::shape::bind(&g.node(n).outputs[0], t.shape(), &mut b)
            .map_err(|m| Error::input(format!("--input {name}: {m}")).in_file(Path::new(file)))?;
        given.insert(name.to_string(), t);
    }
    default_unbound(g, &mut b);
    let mut inputs = glufuse::interp::seeded_inputs(g, &b, io.seed)?;
    inputs.extend(given);
    Ok((inputs, b))
}

/// Shape, mean, range and first values of a tensor, in one line.
fn stats(t: &Tensor) -> String {
    let d = t.data();
    let n = d.len().max(1) as f64;
    let mean = (0..d.len()).map(|i| d.get_f64(i)).sum::<f64>() / n;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..d.len() {
        lo = lo.min(d.get_f64(i));
        hi = hi.max(d.get_f64(i));
    }
    let head: Vec<String> = (0..d.len().min(4)).map(|i| format!("{:.5}", d.get_f64(i))).collect();
    format!("shape {:?} mean {mean:.6} min {lo:.5} max {hi:.5} first [{}]", t.shape(), head.join(", "))
}

/// Prints a line of [`stats`] per graph output.
pub fn print_outputs(g: &Graph, outs: &[Tensor]) {
    for (v, t) in g.outputs.iter().zip(outs) {
        println!("  {}: {}", g.value_name(*v), stats(t));
    }
}
