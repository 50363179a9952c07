//! ONNX's `Einsum` as ops glufuse already has: per operand, a sum over the labels no other
//! operand and not the output has; then the operands folded left to right, each pair as one
//! batched `MatMul` (the labels both share and something later needs as its batch, those
//! nothing later needs summed as its k, each side's own labels flattened into its rows and
//! columns) or, where the pair shares no label to sum, as a broadcast `Mul`; last, a sum over
//! what the output drops and a transpose to its order. Dims may be symbolic; an ellipsis
//! stands for the same leading dims in every operand (right-aligned, broadcast as NumPy
//! does). A label repeated within one operand (a diagonal) is refused, as is a summed label
//! whose sizes differ between operands.

use super::*;

/// One operand, or a partial result: where it comes from, its labels and their dims.
struct Term {
    src: Src,
    labels: Vec<char>,
    dims: Vec<Dim>,
}

/// The labels `...` stands for: characters no equation can hold, one per leading dim.
fn ellipsis_label(k: usize) -> char {
    char::from_u32(0xE000 + k as u32).expect("a private-use character")
}

/// The label as the equation writes it (an ellipsis dim as `...`).
fn show(l: char) -> String {
    if l.is_ascii_alphabetic() {
        l.to_string()
    } else {
        format!("...[{}]", l as u32 - 0xE000)
    }
}

/// One side of the equation: its letters, and where its `...` stands, if it has one.
fn parse_term(t: &str, eq: &str) -> Result<(Vec<char>, Option<usize>), String> {
    let mut labels = vec![];
    let mut ellipsis = None;
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ellipsis.is_some() {
                return Err(format!("the equation '{eq}' has two ellipses in '{t}'"));
            }
            ellipsis = Some(labels.len());
            rest = r;
            continue;
        }
        let ch = rest.chars().next().expect("not empty");
        if !ch.is_ascii_alphabetic() {
            return Err(format!("the equation '{eq}' has '{ch}' in '{t}' (labels are letters, and '...')"));
        }
        labels.push(ch);
        rest = &rest[ch.len_utf8()..];
    }
    Ok((labels, ellipsis))
}

/// The broadcast of two dims of one label: equal, or one of them 1.
fn broadcast(a: &Dim, b: &Dim) -> Option<Dim> {
    match (a.fixed(), b.fixed()) {
        _ if a == b => Some(a.clone()),
        (Some(1), _) => Some(b.clone()),
        (_, Some(1)) => Some(a.clone()),
        _ => None,
    }
}

/// `t` transposed so that its labels come in `order` (a permutation of them).
fn arrange(c: &mut Ctx, t: Term, order: &[char], name: &str) -> Term {
    let perm: Vec<usize> = order.iter().map(|l| t.labels.iter().position(|x| x == l).expect("a label of t")).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return t;
    }
    let src = c.step(name, Op::Transpose { perm: perm.clone() }, vec![t.src]);
    Term { src, labels: order.to_vec(), dims: perm.iter().map(|&p| t.dims[p].clone()).collect() }
}

/// `src` reshaped to `dims`, unless it has them already (`from`).
fn reshape(c: &mut Ctx, src: Src, from: &[Dim], dims: &[DimExpr], name: &str) -> Src {
    if from.len() == dims.len() && from.iter().zip(dims).all(|(d, e)| &d.expr() == e) {
        return src;
    }
    c.step(name, Op::Reshape { shape: dims.to_vec() }, vec![src])
}

/// `t` summed over its labels in `drop`.
fn sum_out(c: &mut Ctx, t: Term, drop: &[char], name: &str) -> Term {
    let axes: Vec<i64> = (0..t.labels.len()).filter(|&i| drop.contains(&t.labels[i])).map(|i| i as i64).collect();
    if axes.is_empty() {
        return t;
    }
    let src = c.step(name, Op::Reduce { op: ReduceOp::Sum, axes, keepdims: false }, vec![t.src]);
    let keep = |i: &usize| !drop.contains(&t.labels[*i]);
    Term {
        src,
        labels: (0..t.labels.len()).filter(keep).map(|i| t.labels[i]).collect(),
        dims: (0..t.labels.len()).filter(keep).map(|i| t.dims[i].clone()).collect(),
    }
}

fn exprs(dims: &[Dim]) -> Vec<DimExpr> {
    dims.iter().map(Dim::expr).collect()
}

/// ONNX's `Einsum`: see the module's documentation.
pub(super) fn einsum(c: &mut Ctx, attrs: &Attrs) -> Result<Src, String> {
    let eq: String =
        attrs.string("equation").ok_or("Einsum needs an equation")?.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq.as_str(), None),
    };
    let n = c.n.input.len();
    let sides: Vec<&str> = lhs.split(',').collect();
    if sides.len() != n {
        let inputs = if n == 1 { "input" } else { "inputs" };
        return Err(format!("the equation '{eq}' names {} operands, but the node has {n} {inputs}", sides.len()));
    }
    // Each operand's labels, its `...` standing for the dims its letters leave over.
    let mut parsed = vec![];
    let mut ell_rank = 0;
    for (i, side) in sides.iter().enumerate() {
        let t = c.ty(i)?;
        let (letters, ell) = parse_term(side, &eq)?;
        let rank = t.rank();
        let extra = match ell {
            Some(_) if rank >= letters.len() => rank - letters.len(),
            _ if rank == letters.len() => 0,
            _ => {
                return Err(format!(
                    "operand {i} is {t}, but the equation '{eq}' gives it {} labels in '{side}'",
                    letters.len()
                ))
            }
        };
        ell_rank = ell_rank.max(extra);
        parsed.push((t, letters, ell, extra));
    }
    let mut terms = vec![];
    for (i, (t, letters, ell, extra)) in parsed.into_iter().enumerate() {
        let mut labels = letters.clone();
        if let Some(at) = ell {
            let e: Vec<char> = (ell_rank - extra..ell_rank).map(ellipsis_label).collect();
            labels.splice(at..at, e);
        }
        if let Some(l) = labels.iter().find(|l| labels.iter().filter(|x| x == l).count() > 1) {
            return Err(format!(
                "operand {i} repeats label '{}' in '{}' (a diagonal), which is not supported",
                show(*l),
                sides[i]
            ));
        }
        if !t.dtype.is_float() {
            return Err(format!("operand {i} is {}: floats only", t.dtype));
        }
        terms.push(Term { src: Src::In(i), labels, dims: t.shape.clone() });
    }
    // The output's labels: as written, or (implicit) the ellipsis then the letters that occur
    // once, in alphabetical order.
    let ell_labels: Vec<char> = (0..ell_rank).map(ellipsis_label).collect();
    let out: Vec<char> = match rhs {
        Some(r) => {
            let (letters, ell) = parse_term(r, &eq)?;
            let mut o = letters;
            if let Some(at) = ell {
                o.splice(at..at, ell_labels.clone());
            }
            o
        }
        None => {
            let mut once: Vec<char> = terms
                .iter()
                .flat_map(|t| t.labels.iter().copied())
                .filter(|l| l.is_ascii_alphabetic())
                .filter(|l| terms.iter().map(|t| t.labels.iter().filter(|x| *x == l).count()).sum::<usize>() == 1)
                .collect();
            once.sort_unstable();
            ell_labels.iter().copied().chain(once).collect()
        }
    };
    for (k, l) in out.iter().enumerate() {
        if out[..k].contains(l) {
            return Err(format!("the equation '{eq}' repeats output label '{}'", show(*l)));
        }
        if !terms.iter().any(|t| t.labels.contains(l)) {
            return Err(format!("the equation '{eq}' has output label '{}' in no operand", show(*l)));
        }
    }
    // Each label's dims agree across the operands (a 1 broadcasts where the output keeps it).
    for (i, t) in terms.iter().enumerate() {
        for (&l, d) in t.labels.iter().zip(&t.dims) {
            for (j, u) in terms.iter().enumerate().skip(i + 1) {
                if let Some(p) = u.labels.iter().position(|&x| x == l) {
                    let ok = if out.contains(&l) { broadcast(d, &u.dims[p]).is_some() } else { d == &u.dims[p] };
                    if !ok {
                        return Err(format!(
                            "label '{}' is {d} in operand {i} and {} in operand {j}{}",
                            show(l),
                            u.dims[p],
                            if out.contains(&l) { "" } else { " (a summed label's sizes must be equal)" }
                        ));
                    }
                }
            }
        }
    }
    // Per operand, the labels nothing else has (and the output drops) summed first.
    let labels_of: Vec<Vec<char>> = terms.iter().map(|t| t.labels.clone()).collect();
    let mut summed_first = vec![];
    for (i, t) in terms.into_iter().enumerate() {
        let lone: Vec<char> = t
            .labels
            .iter()
            .copied()
            .filter(|l| !out.contains(l) && labels_of.iter().enumerate().all(|(j, o)| j == i || !o.contains(l)))
            .collect();
        summed_first.push(sum_out(c, t, &lone, &format!("sum{i}")));
    }
    // Fold the operands left to right.
    let mut rest = summed_first.into_iter();
    let mut cur = rest.next().expect("at least one operand");
    for (k, next) in rest.enumerate() {
        let i = k + 1;
        let later: Vec<char> =
            out.iter().copied().chain(labels_of[i + 1..].iter().flat_map(|l| l.iter().copied())).collect();
        let shared = |l: &char| next.labels.contains(l);
        let batch: Vec<char> = cur.labels.iter().copied().filter(|l| shared(l) && later.contains(l)).collect();
        let summed: Vec<char> = cur.labels.iter().copied().filter(|l| shared(l) && !later.contains(l)).collect();
        let left: Vec<char> = cur.labels.iter().copied().filter(|l| !shared(l)).collect();
        let right: Vec<char> = next.labels.iter().copied().filter(|l| !cur.labels.contains(l)).collect();
        let a_order: Vec<char> = batch.iter().chain(&left).chain(&summed).copied().collect();
        let b_order: Vec<char> = batch.iter().chain(&summed).chain(&right).copied().collect();
        let a = arrange(c, cur, &a_order, &format!("a{i}"));
        let b = arrange(c, next, &b_order, &format!("b{i}"));
        let nb = batch.len();
        let bdims: Vec<Dim> = (0..nb).map(|j| broadcast(&a.dims[j], &b.dims[j]).expect("checked above")).collect();
        let (ldims, rdims) = (a.dims[nb..nb + left.len()].to_vec(), b.dims[nb + summed.len()..].to_vec());
        let src = if summed.is_empty() {
            // Nothing to sum: a broadcast product, each side given 1s for the other's labels.
            let ones = |k: usize| vec![DimExpr::constant(1); k];
            let sa: Vec<DimExpr> = exprs(&a.dims).into_iter().chain(ones(right.len())).collect();
            let sb: Vec<DimExpr> =
                exprs(&b.dims[..nb]).into_iter().chain(ones(left.len())).chain(exprs(&b.dims[nb..])).collect();
            let xa = reshape(c, a.src, &a.dims, &sa, &format!("a{i}.wide"));
            let xb = reshape(c, b.src, &b.dims, &sb, &format!("b{i}.wide"));
            c.step(&format!("product{i}"), Op::Binary(BinaryOp::Mul), vec![xa, xb])
        } else {
            // One batched MatMul: [batch.., left, summed] · [batch.., summed, right].
            let flat = |d: &[Dim]| crate::shape::numel_expr(d);
            let kd = flat(&a.dims[nb + left.len()..])?;
            let sa: Vec<DimExpr> = exprs(&a.dims[..nb]).into_iter().chain([flat(&ldims)?, kd.clone()]).collect();
            let sb: Vec<DimExpr> = exprs(&b.dims[..nb]).into_iter().chain([kd, flat(&rdims)?]).collect();
            let xa = reshape(c, a.src, &a.dims, &sa, &format!("a{i}.rows"));
            let xb = reshape(c, b.src, &b.dims, &sb, &format!("b{i}.cols"));
            let m = c.step(&format!("matmul{i}"), Op::MatMul, vec![xa, xb]);
            let mdims: Vec<Dim> =
                bdims.iter().cloned().chain([Dim::from_expr(flat(&ldims)?)?, Dim::from_expr(flat(&rdims)?)?]).collect();
            let full: Vec<DimExpr> = exprs(&bdims).into_iter().chain(exprs(&ldims)).chain(exprs(&rdims)).collect();
            reshape(c, m, &mdims, &full, &format!("matmul{i}.split"))
        };
        cur = Term {
            src,
            labels: batch.iter().chain(&left).chain(&right).copied().collect(),
            dims: bdims.into_iter().chain(ldims).chain(rdims).collect(),
        };
    }
    let drop: Vec<char> = cur.labels.iter().copied().filter(|l| !out.contains(l)).collect();
    let cur = sum_out(c, cur, &drop, "sum");
    let cur = arrange(c, cur, &out, "order");
    // (An equation that changes nothing, `ij->ij`, gives the input itself.)
    Ok(cur.src)
}
