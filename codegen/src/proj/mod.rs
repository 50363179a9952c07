//! Projection kernels: `x · W` with a 2-D weight (the unfused `MatMul`) and the fused gated
//! unit `act(x·Wg + bg) · (x·Wu + bu)`, each kernel written once for both, so that fused
//! against unfused measures the fusion and nothing else (the fused kernel keeps two
//! accumulators and applies bias, activation and product in its epilogue).
//!
//! - `gemv`: the decode GEMVs (a few rows of x), 16-byte weight loads, one per layout; the
//!   `[K, N]` one split over k, with a second kernel adding the parts up, where its grid
//!   is too small for the device (a thin N with a large K: a down projection);
//! - [`coop`]: the prefill GEMM on cooperative matrices (tensor cores), f16 products with f32
//!   accumulation;
//! - [`gemm_tiled`]: the prefill GEMM for 16-byte aligned operands, in tilings to choose from;
//! - `gemm_unaligned`: the prefill GEMM for any other shape;
//! - `scalar`: the template for whatever the others do not take (any alignment, any mix of
//!   weight storage);
//! - `batched`: `MatMul` with a right operand of rank above 2;
//! - `grouped`: a mixture of experts' batched products for a prompt, grouped by expert;
//!
//! and a mixture of experts' fused gated unit (a `FusedGateUp` with a matrix per row of x) by
//! `batched` and `grouped`.
//!
//! Which one a node gets is decided in `select.rs`. This file holds what they share: the
//! shape of the product ([`ProjShape`]), the values bound, the bindings and the epilogue.

pub(crate) mod batched;
pub mod coop;
pub mod gemm_tiled;
pub(crate) mod gemm_unaligned;
pub(crate) mod gemv;
pub(crate) mod grouped;
pub mod q4;
pub(crate) mod scalar;

use crate::elementwise::act_call;
use crate::wgsl::{module_with, read};
use crate::{dims, packed_f16, Binding, KernelKind, KernelSource, ProjKernel, Target};
use glufuse_ir::shape::Bindings;
use glufuse_ir::*;
use glufuse_ir::{Error, Result};
use std::fmt::Write;

/// What a projection kernel computes, with every size known.
#[derive(Clone, Debug)]
pub struct ProjShape {
    /// Rows of x.
    pub rows: usize,
    /// Inner dim K (= H).
    pub k: usize,
    /// Output features written (= I).
    pub n: usize,
    /// Output features the weight holds (its N in its layout).
    pub n_total: usize,
    /// Weight layout.
    pub layout: Layout,
    /// Weights are stored as packed f16.
    pub f16: bool,
    /// The weights' values are f16 (their graph dtype), whatever their storage: an f16
    /// weight behind a `Transpose` is stored as f32 but holds f16 values.
    pub f16_values: bool,
    /// The fused node, or None for a plain `x·W`.
    pub fused: Option<FusedGateUp>,
    /// Gate and up read one merged weight (bound once).
    pub merged: bool,
    /// The weights are 4-bit ([`q4`]): then `layout` is `Nk` (what is uploaded is `[N, K]`,
    /// whatever the graph's layout), `f16` false, and `f16_values` says whether the scales
    /// (so the dequantized values) are f16.
    pub q4: Option<q4::Q4>,
}

impl ProjShape {
    pub(crate) fn na(&self) -> usize {
        if self.fused.is_some() {
            2
        } else {
            1
        }
    }
    pub(crate) fn offsets(&self) -> (usize, usize) {
        self.fused.as_ref().map_or((0, 0), |f| (f.gate_offset as usize, f.up_offset as usize))
    }
    /// Columns one 16-byte load covers.
    fn vc(&self) -> usize {
        if self.f16 {
            8
        } else {
            4
        }
    }
    /// Rows of x one GEMV workgroup handles (the grid's y covers the rest): 8, or 16 where
    /// the lanes are summed by subgroups and the reduction needs no workgroup memory per row.
    pub fn gemv_rows(&self, subgroup_sums: bool) -> usize {
        self.rows.min(if subgroup_sums { 16 } else { 8 })
    }

    /// Whether the decode GEMV applies: up to 32 rows (in tiles of 8, each tile reading the
    /// weights once) and 16-byte aligned weight rows.
    pub fn gemv_fits(&self) -> bool {
        let (go, uo) = self.offsets();
        let vc = self.vc();
        self.rows <= 32
            && match self.layout {
                Layout::Kn => self.n_total % vc == 0 && self.n % vc == 0 && go % vc == 0 && uo % vc == 0,
                Layout::Nk => self.k % vc == 0,
            }
    }
}

impl ProjShape {
    /// The product of an unfused `MatMul` node with a 2-D weight: `[K, N]`, or `[N, K]`
    /// where the weight is a transposed weight read in place ([`crate::nk_weight`]).
    pub(crate) fn matmul(g: &Graph, n: NodeIndex, b: &Bindings) -> Result<ProjShape> {
        let (node, ins) = (n, crate::select::proj_inputs(g, n));
        let layout = if ins[1] == g.inputs(n)[1] { Layout::Kn } else { Layout::Nk };
        let (xd, wd) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?);
        let k = *xd.last().expect("rank >= 2");
        // The rows from the dims before K: with K = 0, x holds no elements yet has rows.
        let rows = xd[..xd.len() - 1].iter().product::<usize>();
        let n = match layout {
            Layout::Kn => wd[1],
            Layout::Nk => wd[0],
        };
        if matches!(g.node(ins[1].node).op, Op::QuantWeight(_)) {
            let q4 = q4_of(g, node, &[(ins[1], layout == Layout::Nk)])?;
            return Ok(ProjShape {
                rows,
                k,
                n,
                n_total: n,
                layout: Layout::Nk,
                f16: false,
                f16_values: q4.scale_f16,
                fused: None,
                merged: false,
                q4: Some(q4),
            });
        }
        Ok(ProjShape {
            rows,
            k,
            n,
            n_total: n,
            layout,
            f16: packed_f16(g, ins[1]),
            f16_values: g.ty(ins[1]).dtype == DType::F16,
            fused: None,
            merged: false,
            q4: None,
        })
    }

    /// The product of a `FusedGateUp` node.
    pub(crate) fn fused(g: &Graph, n: NodeIndex, b: &Bindings) -> Result<ProjShape> {
        let Op::FusedGateUp(f) = &g.node(n).op else {
            return Err(Error::Internal("ProjShape::fused() on a node that is not FusedGateUp".into()));
        };
        let ins = g.inputs(n);
        let (xd, wd, od) = (dims(g, ins[0], b)?, dims(g, ins[1], b)?, dims(g, Value::of(n), b)?);
        let k = *xd.last().expect("rank >= 1");
        let rows = xd[..xd.len() - 1].iter().product::<usize>();
        let n_total = match f.layout {
            Layout::Kn => wd[1],
            Layout::Nk => wd[0],
        };
        let quant = [ins[1], ins[2]].map(|w| matches!(g.node(w.node).op, Op::QuantWeight(_)));
        if quant[0] || quant[1] {
            if quant[0] != quant[1] {
                return Err(Error::graph(
                    &g.node(n).name,
                    "gate and up weights stored in different formats (one 4-bit): no GPU kernel reads both",
                ));
            }
            let nk = f.layout == Layout::Nk;
            let q4 = q4_of(g, n, &[(ins[1], nk), (ins[2], nk)])?;
            return Ok(ProjShape {
                rows,
                k,
                n: *od.last().expect("rank >= 1"),
                n_total,
                layout: Layout::Nk,
                f16: false,
                f16_values: q4.scale_f16,
                fused: Some(f.clone()),
                merged: ins[1] == ins[2],
                q4: Some(q4),
            });
        }
        Ok(ProjShape {
            rows,
            k,
            n: *od.last().expect("rank >= 1"),
            n_total,
            layout: f.layout,
            f16: packed_f16(g, ins[1]),
            f16_values: g.ty(ins[1]).dtype == DType::F16 && g.ty(ins[2]).dtype == DType::F16,
            fused: Some(f.clone()),
            merged: ins[1] == ins[2],
            q4: None,
        })
    }
}

/// The 4-bit weight a projection's weight operand `v` reads: a `QuantWeight` value, or one
/// behind a 2-D `Transpose` (then used `[N, K]`: `true`).
pub fn quant_operand(g: &Graph, v: Value) -> Option<(Value, bool)> {
    match &g.node(v.node).op {
        Op::QuantWeight(_) => Some((v, false)),
        Op::Transpose { perm } if perm == &[1, 0] => {
            let src = g.inputs(v.node)[0];
            matches!(g.node(src.node).op, Op::QuantWeight(_)).then_some((src, true))
        }
        _ => None,
    }
}

/// WGSL of the row of its buffer that a mixture of experts' gated unit reads as x for pair
/// `p`: `p`, or `p / k` where x reshapes an expand of each token's row that the unit reads in
/// place ([`Graph::rows_repeated`]).
pub(crate) fn pair_row(g: &Graph, x: Value) -> String {
    let k = g.rows_repeated(x);
    if k > 1 {
        format!("(p / {k}u)")
    } else {
        "p".to_string()
    }
}

/// What the kernels of node `n` need to know of its 4-bit weights, each `(value, used [N,
/// K])`: the blocks must run along k, and gate and up agree in block size and scale type.
fn q4_of(g: &Graph, n: NodeIndex, ws: &[(Value, bool)]) -> Result<q4::Q4> {
    let node = &g.node(n).name;
    let mut out: Option<q4::Q4> = None;
    for (i, &(w, nk)) in ws.iter().enumerate() {
        let Op::QuantWeight(q) = &g.node(w.node).op else {
            return Err(Error::Internal("q4_of() on a weight that is not 4-bit".into()));
        };
        // [N, K] has k along axis 1, [K, N] along axis 0.
        if q.axis != nk as usize {
            return Err(Error::graph(
                node,
                format!(
                    "no GPU kernel yet for the 4-bit weight '{}', blocked along its output features (the CPU interpreter runs it)",
                    g.node(w.node).name
                ),
            ));
        }
        let this = q4::Q4 {
            block: q.block as usize,
            scale_f16: g.ty(w).dtype == DType::F16,
            zp: [q.zero_points.is_some(); 2],
        };
        out = Some(match out {
            None => this,
            Some(mut o) => {
                if o.block != this.block || o.scale_f16 != this.scale_f16 {
                    return Err(Error::graph(
                        node,
                        "gate and up are 4-bit weights of different block sizes or scale types",
                    ));
                }
                o.zp[i.min(1)] = this.zp[0];
                o
            }
        });
    }
    out.ok_or_else(|| Error::Internal("q4_of() without weights".into()))
}

/// A kernel's interface: directives (`enable ...;` lines), binding declarations (name,
/// writable, WGSL element type) and extra entry-point builtins (`, @builtin(...) name: type`
/// each).
pub(super) struct Binds {
    directives: String,
    decls: Vec<(String, bool, String)>,
    bindings: Vec<Binding>,
    builtins: String,
}

impl Binds {
    fn push(&mut self, name: &str, write: bool, elem: &str, value: Value, packed: bool) {
        self.decls.push((name.into(), write, elem.into()));
        self.bindings.push(Binding { value, write, packed_f16: packed });
    }
    /// Declares the shared scratch buffer (an array of `elem`, written by the kernel or only read), bound
    /// after the bindings ([`KernelSource::scratch_bytes`]); the last declaration. A reader
    /// declares it read-only, so that wgpu orders the write before the read by the change
    /// of use.
    fn scratch(&mut self, name: &str, write: bool, elem: &str) {
        self.decls.push((name.into(), write, elem.into()));
    }
    fn header(&self) -> String {
        let mut s = self.directives.clone();
        for (i, (n, w, e)) in self.decls.iter().enumerate() {
            let access = if *w { "read_write" } else { "read" };
            let _ = writeln!(s, "@group(0) @binding({i}) var<storage, {access}> {n}: array<{e}>;");
        }
        s
    }
}

/// The values bound: x, weights, biases, output.
pub struct ProjValues {
    /// x.
    pub x: Value,
    /// Gate (or the only) weight.
    pub w_gate: Value,
    /// Up weight (fused, unmerged).
    pub w_up: Option<Value>,
    /// Gate bias and whether it is packed f16.
    pub b_gate: Option<(Value, bool)>,
    /// Up bias and whether it is packed f16.
    pub b_up: Option<(Value, bool)>,
    /// Output.
    pub out: Value,
    /// x is stored as packed f16 (the cooperative GEMM reads it so: [`packed_activation`]).
    ///
    /// [`packed_activation`]: crate::packed_activation
    pub x_packed: bool,
    /// The output is stored as packed f16 (the unsplit cooperative GEMM writes it so).
    pub out_packed: bool,
    /// The packed output is a graph output on a device whose own conversion is not known to
    /// round as the host rounds f16 outputs ([`crate::Target::pack_f16_rounds`]): its halves
    /// are rounded on the bits (`pack_f16_`: ties to even, overflow to infinity).
    pub out_exact: bool,
}

impl ProjValues {
    /// The values a projection node binds: x, its weight(s) and biases, its output.
    pub(crate) fn new(g: &Graph, ins: &[Value], out: Value, s: &ProjShape) -> ProjValues {
        let fused_bias = |present: bool, i: usize| present.then(|| (ins[i], packed_f16(g, ins[i])));
        let (b_gate, b_up) = match &s.fused {
            Some(f) => (fused_bias(f.gate_bias, 3), fused_bias(f.up_bias, 3 + f.gate_bias as usize)),
            None => (None, None),
        };
        ProjValues {
            x: ins[0],
            w_gate: ins[1],
            w_up: s.fused.as_ref().map(|_| ins[2]),
            b_gate,
            b_up,
            out,
            x_packed: false,
            out_packed: false,
            out_exact: false,
        }
    }
}

pub(crate) fn binds(s: &ProjShape, v: &ProjValues, x_elem: &str, w_elem: &str) -> Binds {
    binds_with(s, v, x_elem, w_elem, "f32")
}

/// [`binds`] with the output's WGSL element type.
pub(crate) fn binds_with(s: &ProjShape, v: &ProjValues, x_elem: &str, w_elem: &str, out_elem: &str) -> Binds {
    let mut b = Binds { directives: String::new(), decls: vec![], bindings: vec![], builtins: String::new() };
    b.push("x", false, x_elem, v.x, false);
    b.push("w_gate", false, w_elem, v.w_gate, s.f16);
    if let (Some(_), false, Some(u)) = (&s.fused, s.merged, &v.w_up) {
        b.push("w_up", false, w_elem, *u, s.f16);
    }
    if let Some((g, p)) = &v.b_gate {
        b.push("b_gate", false, if *p { "u32" } else { "f32" }, *g, *p);
    }
    if let Some((u, p)) = &v.b_up {
        b.push("b_up", false, if *p { "u32" } else { "f32" }, *u, *p);
    }
    b.push("out0", true, out_elem, v.out, false);
    b
}

fn bias_read(name: &str, idx: &str, packed: bool) -> String {
    read(name, idx, packed)
}

/// The epilogue value for column expression `col` given sums `g` and `u`.
pub(crate) fn epilogue(s: &ProjShape, v: &ProjValues, g: &str, u: &str, col: &str) -> String {
    let (go, uo) = s.offsets();
    match &s.fused {
        None => g.to_string(),
        Some(f) => {
            let gb = v
                .b_gate
                .as_ref()
                .map_or(String::new(), |(_, p)| format!(" + {}", bias_read("b_gate", &format!("{col} + {go}u"), *p)));
            let ub = v
                .b_up
                .as_ref()
                .map_or(String::new(), |(_, p)| format!(" + {}", bias_read("b_up", &format!("{col} + {uo}u"), *p)));
            format!("{} * ({u}{ub})", act_call(f.activation, &format!("{g}{gb}")))
        }
    }
}

pub(crate) fn up_name(s: &ProjShape) -> &'static str {
    if s.merged {
        "w_gate"
    } else {
        "w_up"
    }
}

/// The kind of a projection kernel of this shape.
pub(crate) fn kind(s: &ProjShape, kernel: ProjKernel) -> KernelKind {
    KernelKind::Projection { fused: s.fused.is_some(), kernel }
}

/// The kernel: bindings, `prelude` and `body` in an entry point of `threads` threads, over
/// `workgroups` (x, y), each within the device's per-dimension limit.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    name: String,
    kind: KernelKind,
    b: &Binds,
    prelude: &str,
    body: &str,
    workgroups: [u64; 2],
    threads: u32,
    t: &Target,
) -> Result<KernelSource> {
    let max = t.max_workgroups_per_dim as u64;
    if workgroups.iter().any(|&w| w > max) {
        return Err(Error::Gpu(format!(
            "'{name}' needs {workgroups:?} workgroups, past this device's limit of {max} per dimension"
        )));
    }
    let mut wgsl = b.header();
    wgsl.push_str(&module_with(&[], threads, prelude, body, &b.builtins));
    Ok(KernelSource {
        name,
        kind,
        wgsl,
        bindings: b.bindings.clone(),
        workgroup_size: threads,
        choice: None,
        scratch_bytes: 0,
        flag_words: 0,
        workgroups: [workgroups[0] as u32, workgroups[1] as u32, 1],
        checks: vec![],
    })
}
