//! Weight layout: the down projection of each fused FFN keeps its weight as `[N, K]` (each
//! output feature's weights contiguous along k), read through a `Transpose` that the
//! projections read in place (codegen's `nk_weight`). ONNX exports store a projection's
//! weight as `[K, N]`; the decode GEMV over `[K, N]` reads, per warp, 16 bytes of each of 32
//! rows where the output has few columns (the down projection: K = 4864, N = 896 in
//! Qwen2-0.5B), and took 19.5 µs per dispatch (timestamped) on an H100 where the `[N, K]`
//! kernel, whose lanes read a row of k contiguously, took 12.8 (24 layers of
//! Qwen2-0.5B-sized f16 FFNs, `glufuse synth --layout kn` against `--layout nk`:
//! `benches/results/h100-2026-11-26e-down-nk.md`).
//!
//! The rule: a `MatMul` whose x is a `FusedGateUp`'s output, through a `Weight` holding its
//! `[K, N]` values (every dim known) that nothing else reads and that is no graph output. The
//! weight is replaced by a new one holding the transposed values (`NAME.nk`), under a
//! `Transpose` that takes the old weight's name, so the product reads the same value under
//! the same name. The gate and up projections (the fused unit's own weights) keep `[K, N]`:
//! their decode GEMV computes the norm before them in its prologue, which the `[N, K]` kernel
//! does not.

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
        let mut s = format!("weight layout: {} down-projection weights held as [N, K]\n", self.transposed.len());
        if detail {
            for w in &self.transposed {
                s.push_str(&format!("  {w}\n"));
            }
        }
        s
    }
}

/// Holds the down projections' weights as `[N, K]` (see the module documentation).
pub struct DownWeightsNk;

impl Pass for DownWeightsNk {
    fn name(&self) -> &'static str {
        "down-weights-nk"
    }

    fn run(&mut self, g: &mut Graph) -> Result<PassReport> {
        let mut report = LayoutReport::default();
        for n in g.topo_order()? {
            if let Some(w) = candidate(g, n) {
                report.transposed.push(transpose(g, w)?);
            }
        }
        Ok(PassReport::Layout(report))
    }
}

/// The weight of a down projection that may change layout, where `n` is one.
fn candidate(g: &Graph, n: NodeIndex) -> Option<NodeIndex> {
    if !matches!(g.node(n).op, Op::MatMul) {
        return None;
    }
    let ins = g.inputs(n);
    let (x, w) = (ins[0], ins[1]);
    if !matches!(g.node(x.node).op, Op::FusedGateUp(_)) || g.ty(x).rank() < 2 {
        return None;
    }
    if !matches!(g.node(w.node).op, Op::Weight(WeightInit::Data(_))) || g.is_output(w) {
        return None;
    }
    let wt = g.ty(w);
    let known = wt.shape.iter().all(|d| matches!(d, Dim::Fixed(_)));
    let only_reader = g.users(w).iter().all(|&(u, slot)| u == n && slot == 1);
    (wt.rank() == 2 && known && only_reader).then_some(w.node)
}

/// Replaces weight `w` (`[K, N]`) by `Transpose(w.nk)`, `w.nk` holding the `[N, K]` values;
/// returns the weight's name.
fn transpose(g: &mut Graph, w: NodeIndex) -> Result<String> {
    let ty = g.ty(Value::of(w)).clone();
    let dim = |d: &Dim| match d {
        Dim::Fixed(k) => *k as usize,
        _ => unreachable!("a candidate's weight has known dims"),
    };
    let (k, n) = (dim(&ty.shape[0]), dim(&ty.shape[1]));
    let data = match &g.node(w).op {
        Op::Weight(WeightInit::Data(v)) => v,
        _ => unreachable!("a candidate's weight holds its values"),
    };
    let mut t = vec![0.0f32; k * n];
    for (r, row) in data.chunks_exact(n.max(1)).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * k + r] = v;
        }
    }
    let name = g.node(w).name.clone();
    let nk_ty = TensorType::new(ty.dtype, vec![ty.shape[1].clone(), ty.shape[0].clone()]);
    let wn = g.add_node(free_name(g, &format!("{name}.nk")), Op::Weight(WeightInit::Data(t)), &[], vec![nk_ty])?;
    let tmp = free_name(g, &format!("{name}.t"));
    let tr = g.add_node(tmp, Op::Transpose { perm: vec![1, 0] }, &[Value::of(wn)], vec![ty])?;
    g.replace_uses(Value::of(w), Value::of(tr));
    g.remove_node(w);
    g.rename(tr, name.clone())?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PassManager;
    use glufuse_ir::builder::{GraphBuilder, SiluSpelling};
    use glufuse_ir::{interp, shape_of};

    /// Values that differ in every position, so that a misplaced element changes the result.
    fn ramp(n: usize, s: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 * 0.37).sin() * s).collect()
    }

    /// x `[3, 8]` through a SwiGLU FFN (I = 12) whose down projection's weight is `wd`
    /// (`[12, 8]`); `extra` also reads `wd` (as a graph output's operand) when `shared`.
    fn ffn(shared: bool) -> Graph {
        let mut b = GraphBuilder::new();
        let x = b.input("x", DType::F32, shape_of(&[3, 8]));
        let wg = b.weight_data("wg", DType::F32, &[8, 12], ramp(96, 0.5));
        let wu = b.weight_data("wu", DType::F32, &[8, 12], ramp(96, -0.7));
        let wd = b.weight_data("wd", DType::F32, &[12, 8], ramp(96, 0.3));
        let gate = b.matmul("gate", x, wg);
        let up = b.matmul("up", x, wu);
        let act = b.silu("", gate, SiluSpelling::Op);
        let h = b.mul("h", act, up);
        let down = b.matmul("down", h, wd);
        let mut outs = vec![down];
        if shared {
            let y = b.input("y", DType::F32, shape_of(&[2, 12]));
            outs.push(b.matmul("extra", y, wd));
        }
        b.finish(&outs).unwrap()
    }

    #[test]
    fn the_down_weight_is_held_transposed_under_its_name() {
        let original = ffn(false);
        let mut g = original.clone();
        let runs = PassManager::standard().run(&mut g).unwrap();
        assert_eq!(crate::layout_report(&runs).unwrap().transposed, ["wd"]);
        // `wd` is now a transpose of `wd.nk`, which holds the [N, K] values.
        let t = g.find("wd").unwrap();
        assert!(matches!(&g.node(t).op, Op::Transpose { perm } if perm == &[1, 0]));
        let nk = g.inputs(t)[0];
        assert_eq!(g.node(nk.node).name, "wd.nk");
        assert_eq!(g.ty(nk).shape, shape_of(&[8, 12]));
        let Op::Weight(WeightInit::Data(v)) = &g.node(nk.node).op else { panic!("wd.nk holds no values") };
        let w = ramp(96, 0.3);
        for (r, c) in [(0, 0), (0, 11), (7, 0), (5, 9)] {
            assert_eq!(v[r * 12 + c], w[c * 8 + r], "element ({r}, {c})");
        }
        // The gate and up weights keep [K, N] (the fused unit reads them as they are).
        for name in ["wg", "wu"] {
            assert!(matches!(g.node(g.find(name).unwrap()).op, Op::Weight(_)), "{name}");
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
}
