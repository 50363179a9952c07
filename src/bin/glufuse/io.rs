//! What `interp`, `run` and `wgsl` share: symbolic dims and inputs from the arguments
//! (`--dim NAME=N`, `--input NAME=F.npy`, the rest seeded), the outputs to write (`--output
//! [NAME=]F.npy`), and the summary printed for each output.

use crate::args::RunInputs;
use crate::out::outln;
use glufuse::shape::Bindings;
use glufuse::tensor::Tensor;
use glufuse::{Error, Graph, Result};
use std::collections::HashMap;
use std::path::PathBuf;

/// The dims given as `NAME=N`.
pub fn parse_dims(dims: &[String]) -> Result<Bindings> {
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
            for s in d.symbols() {
                b.entry(s).or_insert(1);
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

/// Adds the hint of `--dim` to an error about a symbol without a size.
pub fn dim_hint(e: Error) -> Error {
    let text = e.to_string();
    let Some(sym) = text.split("symbolic dim '").nth(1).and_then(|r| r.split_once("' has no size")).map(|p| p.0) else {
        return e;
    };
    let sym = sym.to_string();
    match e {
        Error::Graph { node, msg } => Error::Graph { node, msg: format!("{msg}; pass --dim {sym}=N") },
        Error::Input(m) => Error::Input(format!("{m}; pass --dim {sym}=N")),
        e => e,
    }
}

/// The `--input` files that hold one boolean, by input name: the values an ONNX `If` on that
/// input is loaded with ([`glufuse::load_with`]: the branch it picks, and the input is then no
/// longer the graph's). Files that do not parse as one boolean are left to [`gather_inputs`].
pub fn conditions(specs: &[String]) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for spec in specs {
        let Some((name, file)) = spec.split_once('=') else { continue };
        // (One boolean takes a header and a byte: larger files are not read here.)
        if std::fs::metadata(file).map_or(true, |m| m.len() > 4096) {
            continue;
        }
        for shape in [vec![1], vec![]] {
            let ty = glufuse::ir::TensorType::new(glufuse::ir::DType::Bool, glufuse::ir::shape_of(&shape));
            if let Ok(t) = glufuse::files::read_npy(std::path::Path::new(file), &ty) {
                out.insert(name.to_string(), t);
                break;
            }
        }
    }
    out
}

/// Inputs for a run: those given as .npy files (checked by [`glufuse::files::read_inputs`]),
/// the float ones not given seeded; and the dim bindings (from `--dim`, then from the shapes
/// of the files given; unbound dims are 1).
pub fn gather_inputs(
    g: &Graph,
    io: &RunInputs,
    fixed: &HashMap<String, Tensor>,
) -> Result<(HashMap<String, Tensor>, Bindings)> {
    let given = parse_dims(&io.dims)?;
    let mut files = vec![];
    for spec in &io.inputs {
        let (name, file) =
            spec.split_once('=').ok_or_else(|| Error::input(format!("--input {spec:?} must be NAME=FILE.npy")))?;
        // (A condition the graph was loaded with is no longer one of its inputs.)
        if fixed.contains_key(name) && !g.find(name).is_some_and(|n| matches!(g.node(n).op, glufuse::ir::Op::Input)) {
            continue;
        }
        files.push((name.to_string(), PathBuf::from(file)));
    }
    let (given_inputs, mut b) = glufuse::files::read_inputs(g, &files, &given)?;
    default_unbound(g, &mut b);
    let mut inputs = HashMap::new();
    let mut made_up = vec![];
    for (i, n) in g.input_nodes().into_iter().enumerate() {
        let node = g.node(n);
        if given_inputs.contains_key(&node.name) {
            continue;
        }
        if !node.outputs[0].dtype.is_float() {
            return Err(Error::input(format!(
                "graph input '{}' is missing: it holds {} values; give it with --input {}=FILE.npy",
                node.name, node.outputs[0].dtype, node.name
            )));
        }
        let t = glufuse::interp::seeded_input(g, i, &b, io.seed).map_err(dim_hint)?;
        if t.numel() > 0 {
            made_up.push(format!("'{}' {:?}", node.name, t.shape()));
        }
        inputs.insert(node.name.clone(), t);
    }
    // Real inputs beside made-up ones (a KV step's past keys and values left out, say) give
    // outputs that look like any others: say which are made up. (An empty input, a prompt's
    // past of length 0, holds nothing to make up.)
    if !given_inputs.is_empty() && !made_up.is_empty() {
        crate::out::errln!(
            "note: {} graph input(s) not given hold seeded random values (seed {}): {}; give them with --input NAME=FILE.npy",
            made_up.len(),
            io.seed,
            made_up.join(", ")
        );
    }
    inputs.extend(given_inputs);
    Ok((inputs, b))
}

/// The outputs `--output` asks for, as (output index, file): `NAME=FILE` by the output's
/// name, a bare `FILE` for the first output. Checked before anything runs.
pub fn output_plan(g: &Graph, specs: &[String]) -> Result<Vec<(usize, PathBuf)>> {
    let names: Vec<String> = (0..g.outputs.len()).map(|i| g.output_name(i)).collect();
    if g.outputs.is_empty() && !specs.is_empty() {
        return Err(Error::input(format!("--output {:?}: the graph has no outputs to write", specs[0])));
    }
    let mut plan = vec![];
    for spec in specs {
        let (i, file) = match spec.split_once('=') {
            Some((name, file)) => {
                let i = g.find_output(name).or_else(|| g.outputs.iter().position(|&v| g.value_name(v) == name));
                let i = i.ok_or_else(|| {
                    Error::input(format!(
                        "--output {spec:?}: the graph has no output '{name}'; its outputs are: {}",
                        names.join(", ")
                    ))
                })?;
                (i, file)
            }
            None => (0, spec.as_str()),
        };
        plan.push((i, PathBuf::from(file)));
    }
    Ok(plan)
}

/// Writes the outputs of an [`output_plan`].
pub fn write_outputs(outs: &[Tensor], plan: &[(usize, PathBuf)]) -> Result<()> {
    for (i, p) in plan {
        glufuse::files::write_npy(p, &outs[*i])?;
    }
    Ok(())
}

/// Shape, mean, range and first values of a tensor, in one line.
fn stats(t: &Tensor) -> String {
    let d = t.data();
    if d.is_empty() {
        return format!("shape {:?} {} (no elements)", t.shape(), t.dtype());
    }
    let n = d.len().max(1) as f64;
    let mean = (0..d.len()).map(|i| d.get_f64(i)).sum::<f64>() / n;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for i in 0..d.len() {
        lo = lo.min(d.get_f64(i));
        hi = hi.max(d.get_f64(i));
    }
    let head: Vec<String> = (0..d.len().min(4)).map(|i| format!("{:.5}", d.get_f64(i))).collect();
    format!("shape {:?} {} mean {mean:.6} min {lo:.5} max {hi:.5} first [{}]", t.shape(), t.dtype(), head.join(", "))
}

/// Prints a line of [`stats`] per graph output, by the output's name.
pub fn print_outputs(g: &Graph, outs: &[Tensor]) {
    for (i, t) in outs.iter().enumerate() {
        outln!("  {}: {}", g.output_name(i), stats(t));
    }
}
