//! The kernel choice: which kernel every node gets, in one place. [`node_kernels`] is
//! exhaustive over the op list; [`projection`] picks among the projection kernels by shape.

use crate::proj::{batched, gemm_tiled, gemm_unaligned, gemv, scalar, ProjShape, ProjValues};
use crate::{dims, elementwise, gpu_bytes, index, layout, norm, packed_f16, program, reduce, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Error, Graph, Layout, NodeIndex, Op, Result, Value};

/// The (unvalidated) kernels of one node: which kernel each op gets, for every dtype it
/// takes. Empty for sources (uploaded), views (`Reshape`) and empty results; an error for an
/// opaque op or a value past the device's limits.
pub fn node_kernels(g: &Graph, n: NodeIndex, b: &Bindings, t: &Target) -> Result<Vec<KernelSource>> {
    let node = g.node(n);
    let too_big = |v: Value| -> Result<()> {
        let bytes = gpu_bytes(g, v, b)?;
        let elems: u64 = dims(g, v, b)?.iter().map(|&d| d as u64).product();
        if bytes > t.max_binding_bytes || elems > u32::MAX as u64 {
            return Err(Error::Gpu(format!(
                "value '{}' needs {bytes} bytes, more than this device binds in one buffer ({} bytes)",
                g.value_name(v),
                t.max_binding_bytes
            )));
        }
        Ok(())
    };
    for v in g.inputs(n) {
        too_big(v)?;
    }
    for k in 0..node.outputs.len() {
        too_big(Value { node: n, output: k })?;
    }
    // An empty result takes no dispatch (a split's empty parts are left out in `split`).
    let empty = |v: Value| -> Result<bool> { Ok(dims(g, v, b)?.contains(&0)) };
    if !matches!(node.op, Op::Split { .. }) && !node.outputs.is_empty() && empty(Value::of(n))? {
        return Ok(vec![]);
    }
    let one = |k: Result<KernelSource>| k.map(|k| vec![k]);
    match &node.op {
        // Sources are uploaded (a `SymConstant` under the binding); `Reshape` is a view.
        Op::Input | Op::Weight(_) | Op::Constant(_) | Op::SymConstant(_) | Op::Reshape { .. } => Ok(vec![]),
        Op::Opaque { op_type, .. } => Err(Error::graph(
            &node.name,
            format!("opaque op '{op_type}' cannot run on the GPU: glufuse has no kernel for it"),
        )),
        Op::MatMul => {
            let (a, w) = (g.inputs(n)[0], g.inputs(n)[1]);
            if g.ty(w).rank() == 2 && g.ty(a).rank() >= 2 {
                one(projection(g, n, &ProjShape::matmul(g, n, b)?, t))
            } else {
                one(batched::batched_matmul(g, n, b, t))
            }
        }
        Op::FusedGateUp(_) => one(projection(g, n, &ProjShape::fused(g, n, b)?, t)),
        Op::Unary(u) => one(elementwise::unary(g, n, *u, b, t)),
        Op::Binary(op) => one(elementwise::binary(g, n, *op, b, t)),
        Op::Where => one(elementwise::where_(g, n, b, t)),
        Op::Cast { to } => one(elementwise::cast(g, n, *to, b, t)),
        Op::Elementwise(p) => one(program::program(g, n, p, b, t)),
        Op::Transpose { perm } => one(layout::transpose(g, n, perm, b, t)),
        Op::Expand { .. } => one(layout::expand(g, n, b, t)),
        Op::Slice { axis, start, step, .. } => one(layout::slice(g, n, *axis, start, *step, b, t)),
        Op::Split { axis, .. } => layout::split(g, n, *axis, b, t),
        Op::Concat { axis } => one(layout::concat(g, n, *axis, b, t)),
        Op::Gather { axis } => one(index::gather(g, n, *axis, b, t)),
        Op::GatherND { batch_dims } => one(index::gather_nd(g, n, *batch_dims, b, t)),
        Op::Range { .. } => one(index::range(g, n, b, t)),
        Op::Reduce { op, axes, .. } => one(reduce::reduce(g, n, *op, axes, b, t)),
        Op::Softmax { axis } => one(reduce::softmax(g, n, *axis, b, t)),
        Op::CumSum { axis, exclusive, reverse } => one(reduce::cumsum(g, n, *axis, *exclusive, *reverse, b, t)),
        Op::LayerNorm { axis, epsilon, scale, bias } => {
            one(norm::layer_norm(g, n, *axis, *epsilon, *scale, *bias, b, t))
        }
    }
}

/// The kernel of a projection node (a `MatMul` with a 2-D weight, or a `FusedGateUp`): the
/// vector GEMV up to 32 rows when the weight rows allow 16-byte loads; past 8 rows the
/// aligned GEMM where x and the weights load as 16-byte vectors, else the scalar-load GEMM;
/// the scalar template otherwise (and wherever gate and up weights differ in storage).
pub(crate) fn projection(g: &Graph, n: NodeIndex, s: &ProjShape, t: &Target) -> Result<KernelSource> {
    let (ins, out) = (g.inputs(n), Value::of(n));
    let name = g.node(n).name.clone();
    let v = ProjValues::new(g, &ins, out, s);
    let same_dtype = s.fused.is_none() || packed_f16(g, ins[2]) == s.f16;
    if same_dtype && s.gemv_fits() {
        return match s.layout {
            Layout::Kn => gemv::gemv_kn(name, s, &v, t),
            Layout::Nk => gemv::gemv_nk(name, s, &v, t),
        };
    }
    if same_dtype && s.rows > 8 {
        if gemm_tiled::fits(s) {
            return gemm_tiled::gemm_tiled(name, s, &v, t, gemm_tiled::tiles(t));
        }
        return gemm_unaligned::gemm_unaligned(name, s, &v, t);
    }
    scalar::scalar(g, name, &ins, out, s, t)
}
