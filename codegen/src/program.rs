//! Elementwise programs (`Op::Elementwise`): the steps of a program strung together in one
//! kernel, each a `let` of the expression its op has in `elementwise.rs` (inputs read at their
//! broadcast index, one-element constants as literals, an expand the identity).
//!
//! A program without row steps runs one thread per output element. One with row steps (a
//! reduction over the last axis, a softmax along it) runs one workgroup per row of its output:
//! the threads stride over the row once per round of reductions (a reduction needs its operand,
//! which may need an earlier reduction: a softmax's sum needs its maximum), combine their
//! partial results with a tree in workgroup memory, and stride over it once more to write it.
//! Each round recomputes the steps it needs from the inputs, so nothing but the output is
//! written. Floats accumulate in f32, as the reduction and softmax kernels do.

use crate::elementwise::{binary_expr, cast_expr, map_kernel_lets, unary_expr, Sites};
use crate::wgsl::{bcast_index, kernel, load, row_threads, tree_reduce, Store};
use crate::{dims, KernelKind, KernelSource, Target};
use glufuse_ir::ops::binary::BinaryKind;
use glufuse_ir::shape::Bindings;
use glufuse_ir::tensor::held_values;
use glufuse_ir::{
    Data, ElementwiseProgram, Error, Graph, NodeIndex, ReduceOp, Result, Step, Tensor, TensorType, Value,
};
use std::collections::BTreeSet;
use std::fmt::Write;

/// WGSL of `-inf`.
const NEG_INF: &str = "bitcast<f32>(0xff800000u)";

/// The kernel of an elementwise program.
pub(crate) fn program(
    g: &Graph,
    n: NodeIndex,
    p: &ElementwiseProgram,
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let in_tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
    let tys = p.step_types(&in_tys).map_err(|m| Error::graph(&name, m))?;
    let od = dims(g, out, b)?;
    let total: usize = od.iter().product();
    let mut w = Writer { g, p, tys: &tys, ins: &ins, od: &od, b, name: &name, sites: Sites::new(&name) };
    let last = p.steps.len() - 1;
    if !p.steps.iter().any(Step::is_row) {
        let lets = w.lets(&[last], &[])?;
        let sites = w.sites;
        return map_kernel_lets(g, name, KernelKind::Program, &ins, out, total, &lets, &format!("t{last}"), sites, t);
    }
    // Rounds: a step is known in the round after the reductions it needs are done.
    let mut round = vec![0usize; p.steps.len()];
    for (k, s) in p.steps.iter().enumerate() {
        round[k] = match s {
            Step::Reduce { x, .. } => round[*x] + 1,
            Step::Softmax { x } => round[*x] + 2,
            _ => s.args().iter().map(|&a| round[a]).max().unwrap_or(0),
        };
    }
    let row = *od.last().expect("a row program's output has a last axis");
    let rows = total.checked_div(row).unwrap_or(0);
    let threads = row_threads(row);
    // What each round reduces: (step, reduction, operand).
    let mut reductions: Vec<Vec<(usize, Red, usize)>> = vec![vec![]; round[last]];
    for (k, s) in p.steps.iter().enumerate() {
        match s {
            Step::Reduce { op, x } => reductions[round[*x]].push((k, Red::Of(*op), *x)),
            Step::Softmax { x } => {
                reductions[round[*x]].push((k, Red::Max, *x));
                reductions[round[*x] + 1].push((k, Red::SumExp, *x));
            }
            _ => {}
        }
    }
    let mut body = format!("    if (gid >= {rows}u) {{ return; }}\n    let row = gid * {row}u;\n");
    let mut done: Vec<usize> = vec![];
    let stride = format!("    for (var j = lid; j < {row}u; j = j + {threads}u) {{\n        let i = row + j;\n");
    for reds in &reductions {
        for (k, r, _) in reds {
            let _ = writeln!(body, "    var a{k}_{}: f32 = {};", r.tag(), r.identity());
        }
        body.push_str(&stride);
        let targets: Vec<usize> = reds.iter().map(|(_, _, x)| *x).collect();
        body.push_str(&indent(&w.lets(&targets, &done)?));
        for (k, r, x) in reds {
            let acc = format!("a{k}_{}", r.tag());
            let _ = writeln!(body, "        {acc} = {};", r.combine(&acc, &format!("t{x}"), *k));
        }
        body.push_str("    }\n");
        for (k, r, _) in reds {
            body.push_str(&tree_reduce(threads, &format!("a{k}_{}", r.tag()), r.tree_fn()));
            let v = match r {
                Red::Of(ReduceOp::Mean) => format!("red[0] / f32({row})"),
                Red::Of(ReduceOp::Sum | ReduceOp::Max) | Red::Max | Red::SumExp => "red[0]".into(),
            };
            let _ = writeln!(body, "    let {}{k} = {v};\n    workgroupBarrier();", r.tag());
            if matches!(r, Red::Of(_) | Red::SumExp) {
                done.push(*k);
            }
        }
    }
    body.push_str(&stride);
    body.push_str(&indent(&w.lets(&[last], &done)?));
    let _ = writeln!(body, "        out0[i] = t{last};\n    }}");
    let sites = w.sites;
    let mut prelude = sites.prelude();
    prelude.push_str(&format!(
        "fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\nvar<workgroup> red: array<f32, {threads}>;\n"
    ));
    prelude.push_str(&crate::elementwise::helpers_for(&format!("{body}\n{prelude}")));
    kernel(g, name, KernelKind::Program, &ins, out, rows as u64, threads, &prelude, &body, sites.checks, t)
}

/// A reduction a row program's round computes.
#[derive(Clone, Copy, Debug)]
enum Red {
    /// A reduction step's.
    Of(ReduceOp),
    /// A softmax's maximum.
    Max,
    /// A softmax's sum of `exp(x - max)`.
    SumExp,
}

impl Red {
    /// The prefix of its accumulator and of its row value (`r` for a reduction, `m` and `s`
    /// for a softmax's maximum and sum).
    fn tag(self) -> &'static str {
        match self {
            Red::Of(_) => "r",
            Red::Max => "m",
            Red::SumExp => "s",
        }
    }

    fn identity(self) -> &'static str {
        match self {
            Red::Of(ReduceOp::Max) | Red::Max => NEG_INF,
            Red::Of(ReduceOp::Sum | ReduceOp::Mean) | Red::SumExp => "0.0",
        }
    }

    /// WGSL folding element `x` into accumulator `acc` (of step `k`).
    fn combine(self, acc: &str, x: &str, k: usize) -> String {
        match self {
            // NaN-propagating, as the reduction kernel's maximum.
            Red::Of(ReduceOp::Max) => format!("maxf_({acc}, {x})"),
            Red::Of(ReduceOp::Sum | ReduceOp::Mean) => format!("{acc} + {x}"),
            // As the softmax kernel: the plain maximum, then `exp(x - max)`.
            Red::Max => format!("max({acc}, {x})"),
            Red::SumExp => format!("{acc} + exp({x} - m{k})"),
        }
    }

    /// The two-argument WGSL function its tree combines partial results with.
    fn tree_fn(self) -> &'static str {
        match self {
            Red::Of(ReduceOp::Max) => "maxf_",
            Red::Max => "max",
            Red::Of(ReduceOp::Sum | ReduceOp::Mean) | Red::SumExp => "add_f_",
        }
    }
}

/// Indents lines by four more spaces (the body of a row loop).
fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

/// Writes the `let`s of a program's steps.
struct Writer<'a> {
    g: &'a Graph,
    p: &'a ElementwiseProgram,
    tys: &'a [TensorType],
    ins: &'a [Value],
    od: &'a [usize],
    b: &'a Bindings,
    name: &'a str,
    sites: Sites,
}

impl Writer<'_> {
    /// The `let tK = ..;` of every step `targets` need, in order, for output element `i`; the
    /// row steps in `done` are row values already reduced (`rK`; a softmax `exp(x - mK) / sK`).
    fn lets(&mut self, targets: &[usize], done: &[usize]) -> Result<String> {
        let mut need = BTreeSet::new();
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(k) = stack.pop() {
            if !need.insert(k) {
                continue;
            }
            match &self.p.steps[k] {
                Step::Reduce { .. } => debug_assert!(done.contains(&k), "step {k} read before its round"),
                s => stack.extend(s.args()),
            }
        }
        let mut out = String::new();
        for k in need {
            let e = self.expr(k)?;
            let _ = writeln!(out, "    let t{k} = {e};");
        }
        Ok(out)
    }

    /// The WGSL of step `k`, over the `let`s of its operands.
    fn expr(&mut self, k: usize) -> Result<String> {
        let (tys, sites) = (self.tys, &mut self.sites);
        let st = |j: usize| Store::of_dtype(tys[j].dtype);
        let a = |j: usize| format!("t{j}");
        let s = &self.p.steps[k];
        Ok(match s {
            Step::Input(i) => {
                let v = self.ins[*i];
                load(&format!("in{i}"), &bcast_index(self.od, &dims(self.g, v, self.b)?, "i"), Store::of(self.g, v))
            }
            Step::Const { .. } => {
                let op = s.op().expect("a constant is an op");
                literal(&held_values(&op, &tys[k])).map_err(|m| Error::graph(self.name, m))?
            }
            Step::Unary { op, x } => unary_expr(*op, &a(*x), st(*x), tys[*x].dtype, sites),
            Step::Binary { op, a: l, b: r } => {
                let store = if op.kind() == BinaryKind::Logic { Store::Bool } else { st(*l) };
                binary_expr(*op, &a(*l), &a(*r), store, tys[*l].dtype, sites)
            }
            Step::Where { cond, x, y } => format!("select({}, {}, {} != 0u)", a(*y), a(*x), a(*cond)),
            Step::Cast { to, x } => cast_expr(&a(*x), st(*x), *to, sites),
            Step::Expand { x, .. } => a(*x),
            Step::Reduce { .. } => format!("r{k}"),
            Step::Softmax { x } => format!("exp({} - m{k}) / s{k}", a(*x)),
        })
    }
}

/// The WGSL literal of a one-element constant, in its storage type: floats exactly (a
/// non-finite one by its bits), integers within i32's range, booleans as 0 or 1.
fn literal(c: &Tensor) -> std::result::Result<String, String> {
    Ok(match c.data() {
        Data::F32(v) if v[0].is_finite() => format!("f32({:?})", v[0]),
        Data::F32(v) => format!("bitcast<f32>({:#010x}u)", v[0].to_bits()),
        Data::I64(v) => match i32::try_from(v[0]) {
            Ok(i32::MIN) => "(-2147483647i - 1i)".into(),
            Ok(x) => format!("{x}i"),
            Err(_) => return Err(format!("constant {} does not fit the 32 bits the GPU holds integers in", v[0])),
        },
        Data::Bool(v) => format!("{}u", v[0] as u32),
    })
}
