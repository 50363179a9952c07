//! Layer normalisation (ONNX `LayerNormalization`), one workgroup per row of the normalised
//! axes: the mean, then the (population) variance of the deviations from it (two passes,
//! each a tree reduction over the workgroup), then `(x - mean) / sqrt(var + epsilon)` times
//! the scale plus the bias, each optional and broadcast to the normalised dims.

use crate::wgsl::{bcast_index, kernel, load, row_threads, subgroup, tree_reduce, Store};
use crate::{dims, KernelKind, KernelSource, Target};
use glufuse_ir::shape::{norm_axis, Bindings};
use glufuse_ir::{Error, Graph, NodeIndex, Result, Value};
use std::fmt::Write;

/// The kernel of a layer norm from `axis` on; `scale` and `bias` say which optional inputs
/// follow `x`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm(
    g: &Graph,
    n: NodeIndex,
    axis: i64,
    epsilon: f32,
    scale: bool,
    bias: bool,
    b: &Bindings,
    t: &Target,
) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let xd = dims(g, ins[0], b)?;
    let ax = norm_axis(axis, xd.len())
        .ok_or_else(|| Error::graph(&name, format!("axis {axis} out of range for rank {}", xd.len())))?;
    let normed = &xd[ax..];
    let inner: usize = normed.iter().product();
    let rows: usize = xd[..ax].iter().product();
    let threads = row_threads(inner);
    let x = load("in0", "base + c", Store::of(g, ins[0]));
    let mut body = format!(
        "    if (gid >= {rows}u) {{ return; }}\n    let base = gid * {inner}u;\n    var s = 0.0;\n    for (var c = lid; c < {inner}u; c = c + {threads}u) {{ s = s + {x}; }}\n"
    );
    body.push_str(&tree_reduce(threads, "s", "add_f_", subgroup(t)));
    let _ = write!(
        body,
        "    let mean = red[0] / f32({inner});\n    workgroupBarrier();\n    var q = 0.0;\n    for (var c = lid; c < {inner}u; c = c + {threads}u) {{ let d = {x} - mean; q = q + d * d; }}\n"
    );
    body.push_str(&tree_reduce(threads, "q", "add_f_", subgroup(t)));
    let mut y = format!("({x} - mean) / sqrt(red[0] / f32({inner}) + {epsilon:?})");
    let mut k = 1;
    for present in [scale, bias] {
        if !present {
            continue;
        }
        let pd = dims(g, ins[k], b)?;
        let p = load(&format!("in{k}"), &bcast_index(normed, &pd, "c"), Store::of(g, ins[k]));
        y = if k == 1 && scale { format!("({y}) * {p}") } else { format!("({y}) + {p}") };
        k += 1;
    }
    let _ = writeln!(body, "    for (var c = lid; c < {inner}u; c = c + {threads}u) {{ out0[base + c] = {y}; }}");
    let prelude =
        format!("fn add_f_(a: f32, b: f32) -> f32 {{ return a + b; }}\nvar<workgroup> red: array<f32, {threads}>;\n");
    kernel(g, name, KernelKind::LayerNorm, &ins, out, rows as u64, threads, &prelude, &body, vec![], t)
}
