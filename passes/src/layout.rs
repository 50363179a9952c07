//! Weight layout: projections whose decode GEMV reads `[N, K]` weights (each output feature's
//! weights contiguous along k) keep their weights that way. ONNX exports store a projection's
//! weight as `[K, N]`; the decode GEMV over `[K, N]` reads, per warp, 16 bytes of each of 32
//! rows where the output has few columns (the down projection: K = 4864, N = 896 in
//! Qwen2-0.5B), and took 19.5 µs per dispatch (timestamped) on an H100 where the `[N, K]`
//! kernel, whose lanes read a row of k contiguously, took 12.8 (24 layers of
//! Qwen2-0.5B-sized f16 FFNs, `glufuse synth --layout kn` against `--layout nk`:
//! `benches/results/h100-2026-11-26e-down-nk.md`).
//!
//! The rule, over the projections whose x is computed just before them:
//! - a `MatMul` whose x is a `FusedGateUp`'s output (the down projection), an output of a
//!   row program: an elementwise program whose row steps are all reductions (an RMS or layer
//!   norm; the merged q/k/v projection after the attention's norm), or a fused attention's
//!   output, directly or through a `Reshape` (the output projection). Its weight, a `Weight`
//!   holding its `[K, N]` values (every dim known, K a multiple of 8: whole 16-byte loads
//!   along k) that nothing else reads and that is no graph output, is replaced by a new one holding the transposed values (`NAME.nk`), under
//!   a `Transpose` that takes the old weight's name, so the product reads the same value
//!   under the same name (codegen reads the transpose in place: `Graph::nk_weight`);
//! - a `FusedGateUp` of `[K, N]` layout whose x is an output of such a program (the gate and
//!   up projections after the FFN's norm): where its gate and up weights (one weight, where
//!   they are merged) qualify as above, each keeps its node and name but holds its values
//!   transposed, and the node's layout becomes `[N, K]`.
//!
//! Codegen computes the norm in the decode GEMV after it (its prologue) in either layout, so
//! holding these weights as `[N, K]` keeps that fold. The pass runs late in the standard
//! pipeline: after the elementwise fusion, which makes the norms the programs it looks for,
//! and after the projection merge, so that a merged weight is transposed as a whole. A
//! weight given by shape only, or by a seed, keeps its layout.

use super::{free_name, Pass, PassReport};
use glufuse_ir::ops::source::WeightInit;
use glufuse_ir::Result;
use glufuse_ir::*;

/// What the pass did.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayoutReport {
    /// The weights now held as `[N, K]`, by their (kept) names.
    pub transposed: Vec<String>,
}

impl LayoutReport {
    /// The report for people: one line, then one per weight when `detail`.
    pub fn to_text(&self, detail: bool) -> String {
        let mut s = format!("weight layout: {} projection weights held as [N, K]\n", self.transposed.len());
        if detail {
            for w in &self.transposed {
                s.push_str(&format!("  {w}\n"));
            }
        }
        s
    }
}

/// Holds the weights of the projections after a fused FFN or a norm as `[N, K]` (see the
/// module documentation).
pub struct WeightsNk;

impl Pass for WeightsNk {
    fn name(&self) -> &'static str {
        "weights-nk"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        hold_nk(g).map(PassReport::Layout)
    }
}

/// The pass: every projection's weights that qualify, in topological order, held as
/// `[N, K]`.
fn hold_nk(g: &mut Graph) -> Result<LayoutReport> {
    let mut report = LayoutReport::default();
    for n in g.topo_order()? {
        match &g.node(n).op {
            Op::MatMul => {
                if let Some(w) = matmul_weight(g, n) {
                    report.transposed.push(transpose(g, w)?);
                }
            }
            Op::FusedGateUp(_) => {
                if let Some(ws) = fused_weights(g, n) {
                    report.transposed.extend(hold_fused_nk(g, n, &ws));
                }
            }
            _ => {}
        }
    }
    Ok(report)
}

/// Whether `x` is computed by a row program: an elementwise program with row steps, all of
/// them reductions (a norm; codegen computes such a program in the decode GEMV after it).
fn row_program(g: &Graph, x: Value) -> bool {
    let Op::Elementwise(p) = &g.node(x.node).op else { return false };
    let mut rows = p.steps.iter().filter(|s| s.is_row()).peekable();
    rows.peek().is_some() && rows.all(|s| matches!(s, Step::Reduce { .. }))
}

/// Whether weight `w` may change layout for node `n`: a 2-D `Weight` holding its values,
/// every dim known, K a multiple of 8 (the `[N, K]` GEMV loads a row 16 bytes at a time: 8
/// f16 or 4 f32), no graph output, read by `n` only, in one of `slots`.
fn movable(g: &Graph, w: Value, n: NodeIndex, slots: &[usize]) -> bool {
    if !matches!(g.node(w.node).op, Op::Weight(WeightInit::Data(_))) || g.is_output(w) {
        return false;
    }
    let wt = g.ty(w);
    let known = wt.shape.iter().all(|d| matches!(d, Dim::Fixed(_)));
    let whole_loads = matches!(wt.shape.first(), Some(Dim::Fixed(k)) if k % 8 == 0);
    let only_reader = g.users(w).iter().all(|&(u, slot)| u == n && slots.contains(&slot));
    wt.rank() == 2 && known && whole_loads && only_reader
}

/// The weight of `MatMul` `n` that may change layout, where its x is a fused FFN's output, a
/// row program's or a fused attention's (directly or through a `Reshape`: the heads side by
/// side before the output projection).
fn matmul_weight(g: &Graph, n: NodeIndex) -> Option<NodeIndex> {
    let ins = g.inputs(n);
    let (x, w) = (ins[0], ins[1]);
    let after_ffn = matches!(g.node(x.node).op, Op::FusedGateUp(_));
    let after_norm = row_program(g, x);
    let attention = |v: Value| matches!(g.node(v.node).op, Op::Attention(_));
    let reshaped = matches!(g.node(x.node).op, Op::Reshape { .. }) && attention(g.inputs(x.node)[0]);
    let after_attention = attention(x) || reshaped;
    ((after_ffn || after_norm || after_attention) && g.ty(x).rank() >= 2 && movable(g, w, n, &[1])).then_some(w.node)
}

/// The weights (one where gate and up are merged) of `FusedGateUp` `n` that may change
/// layout, where it is `[K, N]`, its x a row program's and both weights movable.
fn fused_weights(g: &Graph, n: NodeIndex) -> Option<Vec<NodeIndex>> {
    let Op::FusedGateUp(f) = &g.node(n).op else { return None };
    let ins = g.inputs(n);
    if f.layout != Layout::Kn || !row_program(g, ins[0]) {
        return None;
    }
    let mut ws = vec![ins[1]];
    if ins[2] != ins[1] {
        ws.push(ins[2]);
    }
    ws.iter().all(|&w| movable(g, w, n, &[1, 2])).then(|| ws.iter().map(|w| w.node).collect())
}

/// A weight's dims, `[rows, cols]` (known: [`movable`]).
fn dims2(ty: &TensorType) -> (usize, usize) {
    let dim = |d: &Dim| match d {
        Dim::Fixed(k) => *k as usize,
        _ => unreachable!("a movable weight has known dims"),
    };
    (dim(&ty.shape[0]), dim(&ty.shape[1]))
}

/// `data` (`rows × cols`, row-major) transposed, in square blocks of [`BLOCK`] so that the
/// writes of a block land in a few lines of cache rather than one line per value, the
/// output's rows cut into [`host_threads`](glufuse_ir::tensor::host_threads) runs for rayon's
/// pool where there are many values (element by element on one thread, transposing the weights of
/// a Qwen2-0.5B-sized f16 export took 1.0 s of the 5.8 that `glufuse wgsl` spent on it).
fn transposed(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0.0f32; rows * cols];
    if rows == 0 || cols == 0 {
        return t;
    }
    // Output rows `c0..` (input columns) of `out`, block by block.
    let part = |c0: usize, out: &mut [f32]| {
        let n = out.len() / rows;
        for r0 in (0..rows).step_by(BLOCK) {
            for j0 in (0..n).step_by(BLOCK) {
                for r in r0..(r0 + BLOCK).min(rows) {
                    for j in j0..(j0 + BLOCK).min(n) {
                        out[j * rows + r] = data[r * cols + c0 + j];
                    }
                }
            }
        }
    };
    let threads = if rows * cols >= PARALLEL_VALUES { glufuse_ir::tensor::host_threads() } else { 1 };
    if threads == 1 {
        part(0, &mut t);
        return t;
    }
    use rayon::prelude::*;
    let per = cols.div_ceil(threads).next_multiple_of(BLOCK);
    t.par_chunks_mut(per * rows).enumerate().for_each(|(i, out)| part(i * per, out));
    t
}

/// Side of the blocks [`transposed`] moves at a time.
const BLOCK: usize = 32;

/// Fewest values [`transposed`] shares out among threads.
const PARALLEL_VALUES: usize = 1 << 20;

/// Replaces weight `w` (`[K, N]`) by `Transpose(w.nk)`, `w.nk` holding the `[N, K]` values;
/// returns the weight's name.
fn transpose(g: &mut Graph, w: NodeIndex) -> Result<String> {
    let ty = g.ty(Value::of(w)).clone();
    let (k, n) = dims2(&ty);
    let data = match &g.node(w).op {
        Op::Weight(WeightInit::Data(v)) => transposed(v, k, n),
        _ => unreachable!("a movable weight holds its values"),
    };
    let name = g.node(w).name.clone();
    let nk_ty = TensorType::new(ty.dtype, vec![ty.shape[1].clone(), ty.shape[0].clone()]);
    let wn = g.add_node(free_name(g, &format!("{name}.nk")), Op::Weight(WeightInit::Data(data)), &[], vec![nk_ty])?;
    let tmp = free_name(g, &format!("{name}.t"));
    let tr = g.add_node(tmp, Op::Transpose { perm: vec![1, 0] }, &[Value::of(wn)], vec![ty])?;
    g.replace_uses(Value::of(w), Value::of(tr));
    g.remove_node(w);
    g.rename(tr, name.clone())?;
    Ok(name)
}

/// Makes `FusedGateUp` `n` read its weights `ws` as `[N, K]`: each weight node holds its
/// values transposed (its name kept), and the node's layout becomes `[N, K]`; returns the
/// weights' names.
fn hold_fused_nk(g: &mut Graph, n: NodeIndex, ws: &[NodeIndex]) -> Vec<String> {
    let mut names = vec![];
    for &w in ws {
        let node = &mut g.g[w];
        let ty = node.outputs[0].clone();
        let (k, cols) = dims2(&ty);
        if let Op::Weight(WeightInit::Data(v)) = &mut node.op {
            *v = transposed(v, k, cols);
        }
        node.outputs[0] = TensorType::new(ty.dtype, vec![ty.shape[1].clone(), ty.shape[0].clone()]);
        names.push(node.name.clone());
    }
    if let Op::FusedGateUp(f) = &mut g.g[n].op {
        f.layout = Layout::Nk;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use glufuse_ir::builder::{GraphBuilder, SiluSpelling};
    use glufuse_ir::{interp, shape_of};

    /// The blocked transpose puts every value where the plain one does, across whole and
    /// partial blocks and degenerate shapes.
    #[test]
    fn blocked_transpose_moves_every_value_to_its_place() {
        for (rows, cols) in
            [(70, 45), (32, 64), (1, 100), (100, 1), (33, 31), (0, 5), (5, 0), (1100, 1001), (3, 400_000)]
        {
            let data = ramp(rows * cols, 1.0);
            let t = transposed(&data, rows, cols);
            assert_eq!(t.len(), data.len());
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(t[c * rows + r], data[r * cols + c], "[{r}, {c}] of {rows}×{cols}");
                }
            }
        }
    }

    /// Values that differ in every position, so that a misplaced element changes the result.
    fn ramp(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin() * s).collect()
    }

    /// x `[3, 8]` through a SwiGLU FFN (I = 16) whose down projection's weight is `wd`
    /// (`[16, 8]`); `extra` also reads `wd` (as a graph output's operand) when `shared`.
    fn ffn(shared: bool) -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[3, 8]));
        let wg = b.weight_data("wg", DType::F32, &[8, 16], ramp(128, 0.5));
        let wu = b.weight_data("wu", DType::F32, &[8, 16], ramp(128, -0.7));
        let wd = b.weight_data("wd", DType::F32, &[16, 8], ramp(128, 0.3));
        let gate = b.matmul("gate", x, wg);
        let up = b.matmul("up", x, wu);
        let act = b.silu("", gate, SiluSpelling::Op);
        let h = b.mul("h", act, up);
        let down = b.matmul("down", h, wd);
        let mut outs = vec![down];
        if shared {
            let y = b.input("y", DType::F32, shape_of(&[2, 16]));
            outs.push(b.matmul("extra", y, wd));
        }
        b.finish(&outs).unwrap()
    }

    /// The `[N, K]` weight under transpose `name` (a `Weight` named `name.nk`), with its
    /// values.
    fn nk_under<'g>(g: &'g Graph, name: &str) -> (&'g TensorType, &'g [f32]) {
        let t = g.find(name).unwrap_or_else(|| panic!("no node {name}"));
        assert!(matches!(&g.node(t).op, Op::Transpose { perm } if perm == &[1, 0]), "{name} is no transpose");
        let nk = g.inputs(t)[0];
        assert_eq!(g.node(nk.node).name, format!("{name}.nk"));
        let Op::Weight(WeightInit::Data(v)) = &g.node(nk.node).op else { panic!("{name}.nk holds no values") };
        (g.ty(nk), v)
    }

    /// Whether `v` (`[N, K]`) is `w` (`[K, N]`) transposed.
    fn is_transposed(v: &[f32], w: &[f32], k: usize, n: usize) -> bool {
        v.len() == w.len() && (0..k).all(|r| (0..n).all(|c| v[c * k + r] == w[r * n + c]))
    }

    #[test]
    fn the_down_weight_is_held_transposed_under_its_name() {
        let original = ffn(false);
        let mut g = original.clone();
        let runs = PassManager::standard().run(&mut g).unwrap();
        assert_eq!(crate::layout_report(&runs).unwrap().transposed, ["wd"]);
        // `wd` is now a transpose of `wd.nk`, which holds the [N, K] values.
        let (ty, v) = nk_under(&g, "wd");
        assert_eq!(ty.shape, shape_of(&[8, 16]));
        assert!(is_transposed(v, &ramp(128, 0.3), 16, 8));
        // The gate and up weights keep [K, N]: the fused unit's x is no row program.
        for name in ["wg", "wu"] {
            assert!(matches!(g.node(g.find(name).unwrap()).op, Op::Weight(_)), "{name}");
            assert_eq!(g.ty(Value::of(g.find(name).unwrap())).shape, shape_of(&[8, 16]), "{name}");
        }
        let inputs = interp::seeded_inputs(&original, &Default::default(), 3).unwrap();
        assert_eq!(interp::run(&g, &inputs).unwrap(), interp::run(&original, &inputs).unwrap(), "exactly");
    }

    #[test]
    fn a_weight_something_else_reads_keeps_its_layout() {
        let mut g = ffn(true);
        let runs = PassManager::standard().run(&mut g).unwrap();
        assert!(crate::layout_report(&runs).unwrap().transposed.is_empty());
        assert!(matches!(g.node(g.find("wd").unwrap()).op, Op::Weight(_)));
    }

    /// `s`'s RMS norm over its rows, spelled in ops as exporters write it.
    fn rms(b: &mut GraphBuilder, p: &str, s: Value, scale: Value) -> Value {
        let mean = Op::Reduce { op: ReduceOp::Mean, axes: vec![-1], keepdims: true };
        let sq = b.mul(&format!("{p}.sq"), s, s);
        let ms = b.node(&format!("{p}.mean"), mean, &[sq], vec![])[0];
        let eps = b.scalar(&format!("{p}.eps"), DType::F32, 1e-5);
        let ve = b.add(&format!("{p}.var_eps"), ms, eps);
        let r = b.unary(&format!("{p}.sqrt"), UnaryOp::Sqrt, ve);
        let inv = b.unary(&format!("{p}.rsqrt"), UnaryOp::Reciprocal, r);
        let n = b.mul(&format!("{p}.normalise"), s, inv);
        b.mul(p, n, scale)
    }

    /// The projections of a decoder layer over rows of 16, weights with values: `s = x + h`,
    /// q/k/v projections (8, 8, 16 wide, biased) of `rms(s)`, `s2 = s + a`, a SwiGLU FFN
    /// (I = 24) of `rms(s2)` and its down projection; outputs q, k, v, the FFN's and `s2`.
    fn layer() -> Graph {
        let mut b = GraphBuilder::new();
        let f = DType::F32;
        let x = b.input("x", f, shape_of(&[2, 16]));
        let h = b.input("h", f, shape_of(&[2, 16]));
        let a = b.input("a", f, shape_of(&[2, 16]));
        let s = b.add("s", x, h);
        let sc1 = b.weight_data("norm1.w", f, &[16], ramp(16, 1.0));
        let n1 = rms(&mut b, "norm1", s, sc1);
        let mut outs = vec![];
        for (i, (p, w)) in [("q", 8u64), ("k", 8), ("v", 16)].into_iter().enumerate() {
            let wt = b.weight_data(&format!("{p}.w"), f, &[16, w], ramp(16 * w as usize, 0.3 + i as f32));
            let bias = b.weight_data(&format!("{p}.b"), f, &[w], ramp(w as usize, 0.1));
            let y = b.matmul(p, n1, wt);
            outs.push(b.add(&format!("{p}.biased"), y, bias));
        }
        let s2 = b.add("s2", s, a);
        let sc2 = b.weight_data("norm2.w", f, &[16], ramp(16, -1.0));
        let n2 = rms(&mut b, "norm2", s2, sc2);
        let wg = b.weight_data("wg", f, &[16, 24], ramp(384, 0.5));
        let wu = b.weight_data("wu", f, &[16, 24], ramp(384, -0.7));
        let wd = b.weight_data("wd", f, &[24, 16], ramp(384, 0.3));
        let gate = b.matmul("gate", n2, wg);
        let up = b.matmul("up", n2, wu);
        let act = b.silu("", gate, SiluSpelling::Op);
        let m = b.mul("m", act, up);
        outs.push(b.matmul("down", m, wd));
        outs.push(s2);
        b.finish(&outs).unwrap()
    }

    /// After the norms: the merged q/k/v weight (as a whole, under its name) and the fused
    /// unit's gate and up weights (in place, its layout `[N, K]`), besides the down
    /// projection's; nothing else; the interpreter's outputs unchanged, bit for bit.
    #[test]
    fn the_weights_after_norms_are_held_transposed() {
        let original = layer();
        let mut g = original.clone();
        let runs = PassManager::standard().run(&mut g).unwrap();
        let merged = &crate::merge_report(&runs).unwrap().merged;
        assert_eq!(merged.len(), 1, "{merged:?}");
        let qkv = g.find(&merged[0].node).unwrap();
        let qkv_w = g.node(g.inputs(qkv)[1].node).name.clone();
        let mut held = crate::layout_report(&runs).unwrap().transposed.clone();
        held.sort();
        let mut want = vec![qkv_w.clone(), "wd".into(), "wg".into(), "wu".into()];
        want.sort();
        assert_eq!(held, want);
        // The merged weight: [32, 16] under its [16, 32] name; its x the norm's program.
        let (ty, v) = nk_under(&g, &qkv_w);
        assert_eq!(ty.shape, shape_of(&[32, 16]));
        let side_by_side: Vec<f32> = (0..16)
            .flat_map(|r| {
                let q = ramp(128, 0.3)[r * 8..r * 8 + 8].to_vec();
                let k = ramp(128, 1.3)[r * 8..r * 8 + 8].to_vec();
                let v = ramp(256, 2.3)[r * 16..r * 16 + 16].to_vec();
                [q, k, v].concat()
            })
            .collect();
        assert!(is_transposed(v, &side_by_side, 16, 32));
        assert!(row_program(&g, g.inputs(qkv)[0]));
        // The fused unit reads wg and wu as [N, K], in place under their names.
        let fgu = g.g.node_indices().find(|&n| matches!(g.node(n).op, Op::FusedGateUp(_))).unwrap();
        assert!(matches!(&g.node(fgu).op, Op::FusedGateUp(f) if f.layout == Layout::Nk));
        assert!(row_program(&g, g.inputs(fgu)[0]));
        for (slot, name, scale) in [(1, "wg", 0.5), (2, "wu", -0.7)] {
            let w = g.inputs(fgu)[slot];
            assert_eq!(g.node(w.node).name, name);
            assert_eq!(g.ty(w).shape, shape_of(&[24, 16]), "{name}");
            let Op::Weight(WeightInit::Data(v)) = &g.node(w.node).op else { panic!("{name} holds no values") };
            assert!(is_transposed(v, &ramp(384, scale), 16, 24), "{name}");
        }
        nk_under(&g, "wd");
        let inputs = interp::seeded_inputs(&original, &Default::default(), 7).unwrap();
        assert_eq!(interp::run(&g, &inputs).unwrap(), interp::run(&original, &inputs).unwrap(), "exactly");
    }

    /// A row program x (built as the elementwise fusion writes one) and a fused unit over
    /// one merged gate/up weight `[8, 32]` (gate columns 0..16, up 16..32): the weight is
    /// transposed once, the offsets keep naming its output features. A product after a
    /// softmax (a row step that is not a reduction) keeps its weight.
    #[test]
    fn a_merged_gate_up_weight_is_transposed_once() {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[3, 8]));
        let norm = vec![
            Step::Input(0),
            Step::Binary { op: BinaryOp::Mul, a: 0, b: 0 },
            Step::Reduce { op: ReduceOp::Mean, x: 1 },
            Step::Binary { op: BinaryOp::Add, a: 0, b: 2 },
        ];
        let prog = |steps| Op::Elementwise(ElementwiseProgram { steps, also: vec![], replaced: vec![] });
        let n = b.node("norm", prog(norm), &[x], vec![])[0];
        let w = b.weight_data("wgu", DType::F32, &[8, 32], ramp(256, 0.4));
        let f = FusedGateUp {
            activation: Activation::Silu,
            layout: Layout::Kn,
            gate_bias: false,
            up_bias: false,
            gate_offset: 0,
            up_offset: 16,
            replaced: vec![],
        };
        let out = TensorType::new(DType::F32, shape_of(&[3, 16]));
        let y = b.node("ffn", Op::FusedGateUp(f), &[n, w, w], vec![out])[0];
        let sm = b.node("sm", prog(vec![Step::Input(0), Step::Softmax { x: 0 }]), &[x], vec![])[0];
        let w2 = b.weight_data("w2", DType::F32, &[8, 8], ramp(64, 0.2));
        let z = b.matmul("after_softmax", sm, w2);
        let original = b.finish(&[y, z]).unwrap();
        let mut g = original.clone();
        let mut pm = PassManager::new(vec![Box::new(WeightsNk)]);
        let runs = pm.run(&mut g).unwrap();
        assert_eq!(crate::layout_report(&runs).unwrap().transposed, ["wgu"]);
        let ffn = g.find("ffn").unwrap();
        assert!(matches!(&g.node(ffn).op, Op::FusedGateUp(f) if f.layout == Layout::Nk && f.up_offset == 16));
        let w = g.inputs(ffn)[1];
        assert_eq!(g.inputs(ffn)[2], w);
        assert_eq!(g.ty(w).shape, shape_of(&[32, 8]));
        assert!(matches!(g.node(g.find("w2").unwrap()).op, Op::Weight(_)));
        let inputs = interp::seeded_inputs(&original, &Default::default(), 5).unwrap();
        assert_eq!(interp::run(&g, &inputs).unwrap(), interp::run(&original, &inputs).unwrap(), "exactly");
    }
}
