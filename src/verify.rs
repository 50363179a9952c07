//! Shape and type inference for every op, and [`verify`], the whole-graph check run after
//! loading and after every pass: acyclic, arity, dtype agreement, broadcasting, declared
//! output types equal to the inferred ones. Every error names the node.

use crate::ir::*;
use crate::shape::{broadcast, check_size, fmt_shape, norm_axis, reshape_dims};
use crate::{Error, Result};

/// Infers the output types of `op` applied to inputs of types `ins`. `declared` are the types
/// the node declares; they are the answer for sources and opaque ops, and ignored otherwise.
pub fn infer(op: &Op, ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
    let arity = |n: usize| -> Result<(), String> {
        if ins.len() == n {
            Ok(())
        } else {
            Err(format!("{} takes {n} input(s), got {}", op.kind(), ins.len()))
        }
    };
    let float = |t: &TensorType| -> Result<(), String> {
        if t.dtype.is_float() {
            Ok(())
        } else {
            Err(format!("{} needs floating-point inputs, got {}", op.kind(), t.dtype))
        }
    };
    let one_declared = || -> Result<TensorType, String> {
        match declared {
            [t] => Ok(t.clone()),
            _ => Err(format!("{} declares {} output types, expected 1", op.kind(), declared.len())),
        }
    };
    let out = match op {
        Op::Input => {
            arity(0)?;
            vec![one_declared()?]
        }
        Op::Weight(init) => {
            arity(0)?;
            let t = one_declared()?;
            if !t.dtype.is_float() {
                return Err(format!("weights must be f32 or f16, not {}", t.dtype));
            }
            let Some(n) = t.numel() else {
                return Err(format!("weight shape {} must have known dims", fmt_shape(&t.shape)));
            };
            check_size(&t)?;
            if let WeightInit::Data(d) = init {
                if d.len() as u64 != n {
                    return Err(format!(
                        "inline data has {} values but shape {} holds {n}",
                        d.len(),
                        fmt_shape(&t.shape)
                    ));
                }
            }
            if let WeightInit::Random { scale, .. } = init {
                if !scale.is_finite() || *scale < 0.0 {
                    return Err(format!("random fill scale {scale} must be finite and non-negative"));
                }
            }
            vec![t]
        }
        Op::Constant(v) => {
            arity(0)?;
            let t = one_declared()?;
            let Some(n) = t.numel() else {
                return Err("constant shape must have known dims".into());
            };
            if v.len() as u64 != n {
                return Err(format!("constant has {} values but shape {} holds {n}", v.len(), fmt_shape(&t.shape)));
            }
            vec![t]
        }
        Op::MatMul => {
            arity(2)?;
            let (a, b) = (ins[0], ins[1]);
            float(a)?;
            if a.dtype != b.dtype {
                return Err(format!("operand dtypes differ: {} vs {}", a.dtype, b.dtype));
            }
            if a.rank() < 2 || b.rank() < 2 {
                return Err(format!("MatMul needs operands of rank 2 or more, got {a} and {b}"));
            }
            let (ka, kb) = (&a.shape[a.rank() - 1], &b.shape[b.rank() - 2]);
            if ka != kb {
                return Err(format!("inner dims disagree: {a} · {b} ({ka} vs {kb})"));
            }
            let batch = broadcast(&a.shape[..a.rank() - 2], &b.shape[..b.rank() - 2])?;
            let mut shape = batch;
            shape.push(a.shape[a.rank() - 2].clone());
            shape.push(b.shape[b.rank() - 1].clone());
            vec![TensorType::new(a.dtype, shape)]
        }
        Op::Unary(_) => {
            arity(1)?;
            float(ins[0])?;
            vec![ins[0].clone()]
        }
        Op::Binary(_) => {
            arity(2)?;
            float(ins[0])?;
            if ins[0].dtype != ins[1].dtype {
                return Err(format!("operand dtypes differ: {} vs {}", ins[0].dtype, ins[1].dtype));
            }
            vec![TensorType::new(ins[0].dtype, broadcast(&ins[0].shape, &ins[1].shape)?)]
        }
        Op::Transpose { perm } => {
            arity(1)?;
            let r = ins[0].rank();
            let mut seen = vec![false; r];
            if perm.len() != r || perm.iter().any(|&p| p >= r || std::mem::replace(&mut seen[p], true)) {
                return Err(format!("perm {perm:?} is not a permutation of {r} axes"));
            }
            vec![TensorType::new(ins[0].dtype, perm.iter().map(|&p| ins[0].shape[p].clone()).collect())]
        }
        Op::Reshape { shape } => {
            arity(1)?;
            vec![TensorType::new(ins[0].dtype, reshape_dims(&ins[0].shape, shape)?)]
        }
        Op::Split { axis, sizes } => {
            arity(1)?;
            let t = ins[0];
            let ax =
                norm_axis(*axis, t.rank()).ok_or_else(|| format!("axis {axis} out of range for rank {}", t.rank()))?;
            if sizes.is_empty() {
                return Err("Split needs at least one part".into());
            }
            let total: u64 = sizes.iter().sum();
            match &t.shape[ax] {
                Dim::Fixed(n) if *n == total => {}
                d => return Err(format!("split sizes {sizes:?} sum to {total} but axis {ax} has size {d}")),
            }
            sizes
                .iter()
                .map(|&s| {
                    let mut shape = t.shape.clone();
                    shape[ax] = Dim::Fixed(s);
                    TensorType::new(t.dtype, shape)
                })
                .collect()
        }
        Op::Slice { axis, start, end } => {
            arity(1)?;
            let t = ins[0];
            let ax =
                norm_axis(*axis, t.rank()).ok_or_else(|| format!("axis {axis} out of range for rank {}", t.rank()))?;
            match &t.shape[ax] {
                Dim::Fixed(n) if start <= end && end <= n => {}
                d => return Err(format!("slice {start}..{end} does not fit axis {ax} of size {d}")),
            }
            let mut shape = t.shape.clone();
            shape[ax] = Dim::Fixed(end - start);
            vec![TensorType::new(t.dtype, shape)]
        }
        Op::Concat { axis } => {
            if ins.is_empty() {
                return Err("Concat needs at least one input".into());
            }
            let t0 = ins[0];
            let ax = norm_axis(*axis, t0.rank())
                .ok_or_else(|| format!("axis {axis} out of range for rank {}", t0.rank()))?;
            let mut total = 0u64;
            for t in ins {
                if t.dtype != t0.dtype || t.rank() != t0.rank() {
                    return Err(format!("inputs {t0} and {t} cannot be concatenated"));
                }
                for (i, (a, b)) in t.shape.iter().zip(&t0.shape).enumerate() {
                    if i != ax && a != b {
                        return Err(format!("inputs {t0} and {t} differ outside axis {ax}"));
                    }
                }
                total += t.shape[ax].fixed().ok_or("concat axis must have known sizes")?;
            }
            let mut shape = t0.shape.clone();
            shape[ax] = Dim::Fixed(total);
            vec![TensorType::new(t0.dtype, shape)]
        }
        Op::Cast { to } => {
            arity(1)?;
            vec![TensorType::new(*to, ins[0].shape.clone())]
        }
        Op::FusedGateUp(f) => infer_fused(f, ins, declared)?,
        Op::Opaque { .. } => {
            if declared.is_empty() {
                return Err("an opaque op must declare its output types".into());
            }
            declared.to_vec()
        }
    };
    for t in &out {
        check_size(t)?;
    }
    Ok(out)
}

fn infer_fused(f: &FusedGateUp, ins: &[&TensorType], declared: &[TensorType]) -> Result<Vec<TensorType>, String> {
    let want = 3 + f.gate_bias as usize + f.up_bias as usize;
    if ins.len() != want {
        return Err(format!("FusedGateUp with these bias flags takes {want} inputs, got {}", ins.len()));
    }
    let (x, wg, wu) = (ins[0], ins[1], ins[2]);
    if !x.dtype.is_float() || x.rank() < 1 {
        return Err(format!("x must be a floating-point tensor of rank 1 or more, got {x}"));
    }
    let h = x.shape[x.rank() - 1].clone();
    // The output width is the declared one when given (the merged-weight case), else the
    // whole width of the gate weight.
    let width = |w: &TensorType, off: u64, what: &str| -> Result<u64, String> {
        if w.rank() != 2 {
            return Err(format!("{what} weight must be 2-D, got {w}"));
        }
        let (k, n) = match f.layout {
            Layout::Kn => (&w.shape[0], &w.shape[1]),
            Layout::Nk => (&w.shape[1], &w.shape[0]),
        };
        if *k != h {
            return Err(format!(
                "hidden size mismatch: x has {h} features but the {what} weight {w} ({:?} layout) expects {k}",
                f.layout
            ));
        }
        let n = n.fixed().ok_or_else(|| format!("{what} weight must have known dims"))?;
        n.checked_sub(off).ok_or_else(|| format!("{what} offset {off} is past the weight's {n} outputs"))
    };
    let gate_room = width(wg, f.gate_offset, "gate")?;
    let up_room = width(wu, f.up_offset, "up")?;
    let i = match declared {
        [t] => t.shape.last().and_then(Dim::fixed).ok_or("declared output must end in a known dim")?,
        _ => gate_room,
    };
    if i == 0 || i > gate_room || i > up_room {
        return Err(format!(
            "intermediate size {i} does not fit the gate ({gate_room} outputs from offset) and up ({up_room}) weights"
        ));
    }
    if wg.dtype != wu.dtype {
        return Err(format!("gate and up weights differ in dtype: {} vs {}", wg.dtype, wu.dtype));
    }
    let mut k = 3;
    for (present, off, what) in [(f.gate_bias, f.gate_offset, "gate"), (f.up_bias, f.up_offset, "up")] {
        if present {
            let b = ins[k];
            k += 1;
            let len = (b.rank() == 1).then(|| b.shape[0].fixed()).flatten();
            if !matches!(len, Some(n) if n >= off + i) {
                return Err(format!("{what} bias {b} must be 1-D with at least {} values", off + i));
            }
        }
    }
    let mut shape = x.shape.clone();
    *shape.last_mut().expect("rank >= 1") = Dim::Fixed(i);
    Ok(vec![TensorType::new(x.dtype, shape)])
}

/// Checks the whole graph. Every error names the node that is wrong.
pub fn verify(g: &Graph) -> Result<()> {
    let order = g.topo_order()?;
    for &n in &order {
        let node = g.node(n);
        let ins = g.inputs(n);
        for (slot, v) in ins.iter().enumerate() {
            let edges =
                g.g.edges_directed(n, petgraph::Direction::Incoming).filter(|e| e.weight().slot == slot).count();
            if edges != 1 {
                return Err(Error::graph(&node.name, format!("input slot {slot} has {edges} producers")));
            }
            if v.output >= g.node(v.node).outputs.len() {
                return Err(Error::graph(&node.name, format!("input {slot} reads a missing output")));
            }
        }
        let tys: Vec<&TensorType> = ins.iter().map(|&v| g.ty(v)).collect();
        let inferred = infer(&node.op, &tys, &node.outputs).map_err(|m| Error::graph(&node.name, m))?;
        if inferred != node.outputs {
            let show = |ts: &[TensorType]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
            return Err(Error::graph(
                &node.name,
                format!("declares output type {} but its inputs give {}", show(&node.outputs), show(&inferred)),
            ));
        }
    }
    if g.outputs.is_empty() && !g.is_empty() {
        return Err(Error::input("the graph has no outputs"));
    }
    for o in &g.outputs {
        if g.g.node_weight(o.node).is_none_or(|n| o.output >= n.outputs.len()) {
            return Err(Error::input("a graph output refers to a missing value"));
        }
    }
    Ok(())
}
