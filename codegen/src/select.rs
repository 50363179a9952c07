//! The kernel choice: which kernel every node gets, in one place. [`node_kernels`] is
//! exhaustive over the op list; [`projection`] picks among the projection kernels by shape.

use crate::proj::{batched, gemm_tiled, gemm_unaligned, gemv, scalar, ProjShape, ProjValues};
use crate::{dims, elementwise, gpu_bytes, layout, packed_f16, KernelSource, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::{Error, Graph, Layout, Node, NodeIndex, Op, Result, Value};

/// The (unvalidated) kernels of one node: which kernel each op gets. Empty for sources and
/// views (`Reshape`); an error for an opaque op or a value past the device's limits.
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
    // Every value on the GPU is an f32 array so far: integer and boolean values (token ids,
    // positions, masks) have no kernels yet.
    let tys = g.inputs(n).into_iter().map(|v| g.ty(v).clone()).chain(node.outputs.iter().cloned());
    if let Some(ty) = tys.into_iter().find(|ty| !ty.dtype.is_float()) {
        return Err(no_kernel_yet(node, &format!(" on {} values", ty.dtype)));
    }
    match &node.op {
        Op::Input | Op::Weight(_) | Op::Constant(_) | Op::Reshape { .. } => Ok(vec![]),
        Op::Opaque { op_type, .. } => Err(Error::graph(
            &node.name,
            format!("opaque op '{op_type}' cannot run on the GPU: glufuse has no kernel for it"),
        )),
        Op::MatMul => {
            if g.ty(g.inputs(n)[1]).rank() == 2 {
                Ok(vec![projection(g, n, &ProjShape::matmul(g, n, b)?, t)?])
            } else {
                Ok(vec![batched::batched_matmul(g, n, b, t)?])
            }
        }
        Op::FusedGateUp(_) => Ok(vec![projection(g, n, &ProjShape::fused(g, n, b)?, t)?]),
        Op::Unary(u) => match elementwise::unary(g, n, *u, b, t)? {
            Some(k) => Ok(vec![k]),
            None => Err(no_kernel_yet(node, "")),
        },
        Op::Binary(op) => match elementwise::binary(g, n, *op, b, t)? {
            Some(k) => Ok(vec![k]),
            None => Err(no_kernel_yet(node, "")),
        },
        Op::Cast { to } => Ok(vec![elementwise::cast(g, n, *to, b, t)?]),
        Op::Transpose { perm } => Ok(vec![layout::transpose(g, n, perm, b, t)?]),
        Op::Slice { axis, start, step: 1, .. } => Ok(vec![layout::slice(g, n, *axis, start, b, t)?]),
        Op::Slice { .. } => Err(no_kernel_yet(node, " with a step other than 1")),
        Op::Split { axis, .. } => layout::split(g, n, *axis, b, t),
        Op::Concat { axis } => Ok(vec![layout::concat(g, n, *axis, b, t)?]),
        Op::SymConstant(_)
        | Op::Where
        | Op::Reduce { .. }
        | Op::Softmax { .. }
        | Op::CumSum { .. }
        | Op::LayerNorm { .. }
        | Op::Gather { .. }
        | Op::GatherND { .. }
        | Op::Range { .. }
        | Op::Expand { .. } => Err(no_kernel_yet(node, "")),
    }
}

/// The error for a node no kernel is written for yet (`what` qualifies it).
fn no_kernel_yet(node: &Node, what: &str) -> Error {
    Error::graph(&node.name, format!("no GPU kernel yet for {}{what} (the CPU interpreter runs it)", node.op.label()))
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
