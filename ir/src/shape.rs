//! Shapes: symbolic dims bound to sizes at run time ([`Bindings`], [`bind_inputs`]), numpy
//! broadcasting, axis normalisation, ONNX reshape rules, and the budget check every inferred
//! type goes through.

use crate::dim::DimExpr;
use crate::{Dim, Error, Shape, TensorType};
use std::collections::HashMap;

/// Normalises a possibly negative axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

thread_local! {
    /// The dims the last failed [`broadcast`] of this thread could not prove to broadcast
    /// ([`take_unproven`]).
    static UNPROVEN: std::cell::RefCell<Option<(Dim, Dim)>> = const { std::cell::RefCell::new(None) };
}

/// The two symbolic dims the last failed [`broadcast`] on this thread could neither prove
/// equal nor find 1, and forgets them. The ONNX loader asks, after a model failed to load,
/// whether solving one of the inputs' symbols for the other dim would let it load.
pub fn take_unproven() -> Option<(Dim, Dim)> {
    UNPROVEN.with(|u| u.borrow_mut().take())
}

/// Broadcasts two shapes with numpy rules.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Shape, String> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = (i + a.len()).checked_sub(n).map(|j| &a[j]);
        let db = (i + b.len()).checked_sub(n).map(|j| &b[j]);
        let d = match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Fixed(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Fixed(1))) => x.clone(),
            (Some(x @ Dim::Fixed(_)), Some(y @ Dim::Fixed(_))) => {
                return Err(format!("shapes {} and {} do not broadcast (dim {x} vs {y})", fmt_shape(a), fmt_shape(b)))
            }
            (Some(x), Some(y)) => {
                UNPROVEN.with(|u| *u.borrow_mut() = Some((x.clone(), y.clone())));
                return Err(format!(
                    "shapes {} and {} do not broadcast: cannot prove dims {x} and {y} broadcast",
                    fmt_shape(a),
                    fmt_shape(b)
                ));
            }
            (None, None) => unreachable!("i < max rank"),
        };
        out.push(d);
    }
    Ok(out)
}

/// Writes a shape as `[a,b,c]`.
pub fn fmt_shape(s: &[Dim]) -> String {
    let parts: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(","))
}

/// Checks a type against the budget in force ([`crate::limits`]): its rank, and its size
/// where every dim is known.
pub(crate) fn check_size(t: &TensorType) -> Result<(), String> {
    crate::limits::current().check_type(t)
}

/// Binds symbolic dims to sizes.
pub type Bindings = HashMap<String, usize>;

/// Resolves a shape under bindings; fails naming the unbound symbol (or the expression that
/// overflows or comes out negative).
pub fn concrete(shape: &[Dim], b: &Bindings) -> std::result::Result<Vec<usize>, String> {
    shape.iter().map(|d| d.eval(b)).collect()
}

/// Binds the symbols in `ty` from an actual shape, checking known dims and expressions (see
/// [`bind_inputs`] for several inputs at once, with conflicts named).
pub fn bind(ty: &TensorType, actual: &[usize], b: &mut Bindings) -> std::result::Result<(), String> {
    bind_inputs(&[("", ty, actual)], b).map_err(|e| match e {
        Error::Graph { msg, .. } => msg,
        e => e.to_string(),
    })
}

/// Binds every symbol of the inputs' declared types from their actual shapes: `inputs` holds
/// `(name, declared type, actual shape)`. Plain symbols bind first; then an input dim
/// declared as an expression (`past + new`) is checked against its value under the binding,
/// or, where exactly one of its symbols is still unbound and appears alone and linearly in
/// it, binds that symbol. Bindings already in `b` (sizes given by the caller) count as bound.
/// Errors name the input (as `Error::Graph`): a wrong rank or known dim, an expression that
/// disagrees, or a symbol two inputs (or the caller and an input) bind to different sizes,
/// naming both and both sizes.
pub fn bind_inputs(inputs: &[(&str, &TensorType, &[usize])], b: &mut Bindings) -> crate::Result<()> {
    let mut origin: HashMap<String, &str> = HashMap::new();
    let err = |name: &str, m: String| Error::graph(name, m);
    for &(name, ty, actual) in inputs {
        if ty.rank() != actual.len() {
            return Err(err(name, format!("expected {ty} (rank {}), got shape {actual:?}", ty.rank())));
        }
        for (i, (d, &a)) in ty.shape.iter().zip(actual).enumerate() {
            match d {
                Dim::Fixed(n) if *n as usize != a => {
                    return Err(err(name, format!("expected {ty}, got shape {actual:?} (dim {i} is {a}, not {n})")))
                }
                Dim::Sym(s) => match (b.get(s), origin.get(s)) {
                    (Some(&prev), Some(other)) if prev != a => {
                        let other = if other.is_empty() { String::new() } else { format!(" in input '{other}'") };
                        return Err(err(
                            name,
                            format!("symbolic dim '{s}' is {prev}{other} but {a} here (dim {i} of shape {actual:?})"),
                        ));
                    }
                    (Some(&prev), None) if prev != a => {
                        return Err(err(
                            name,
                            format!(
                                "symbolic dim '{s}' is bound to {prev} but is {a} here (dim {i} of shape {actual:?})"
                            ),
                        ));
                    }
                    (Some(_), _) => {}
                    (None, _) => {
                        b.insert(s.clone(), a);
                        origin.insert(s.clone(), name);
                    }
                },
                Dim::Fixed(_) | Dim::Expr(_) => {}
            }
        }
    }
    // Expressions: solve the ones with one unbound symbol standing alone, until none is left.
    loop {
        let mut progress = false;
        for &(name, ty, actual) in inputs {
            for (d, &a) in ty.shape.iter().zip(actual) {
                let Dim::Expr(e) = d else { continue };
                if let Some((s, v)) = solve_linear(e, a, b) {
                    let v = usize::try_from(v).map_err(|_| {
                        err(name, format!("dim {e} is {a}, which would make symbolic dim '{s}' negative ({v})"))
                    })?;
                    b.insert(s.clone(), v);
                    origin.insert(s, name);
                    progress = true;
                }
            }
        }
        if !progress {
            break;
        }
    }
    for &(name, ty, actual) in inputs {
        for (d, &a) in ty.shape.iter().zip(actual) {
            let Dim::Expr(e) = d else { continue };
            let v = d.eval(b).map_err(|m| err(name, format!("dim {e}: {m}")))?;
            if v != a {
                let syms: Vec<String> =
                    e.symbols().iter().map(|s| format!("{s}={}", b.get(s).copied().unwrap_or(0))).collect();
                return Err(err(
                    name,
                    format!("dim {e} is {v} under the binding {} but {a} in shape {actual:?}", syms.join(", ")),
                ));
            }
        }
    }
    Ok(())
}

/// For `e == value` with exactly one symbol of `e` unbound, appearing only as a term `k *
/// s` of its own: `s` and its value, when the division is exact.
fn solve_linear(e: &DimExpr, value: usize, b: &Bindings) -> Option<(String, i64)> {
    let unbound: Vec<String> = e.symbols().into_iter().filter(|s| !b.contains_key(s)).collect();
    let [s] = unbound.as_slice() else { return None };
    // e = k * s + rest with rest free of s: k from the values at s = 0 and s = 1, then
    // checked as polynomials (a floor division or a power of s would leave s in rest).
    let at = |x: i64| e.eval(&|n| if n == s { Some(x) } else { b.get(n).and_then(|&v| i64::try_from(v).ok()) });
    let (r0, r1) = (at(0).ok()?, at(1).ok()?);
    let k = r1.checked_sub(r0)?;
    let rest = e.sub(&DimExpr::constant(k).mul(&DimExpr::sym(s.clone())).ok()?).ok()?;
    if k == 0 || rest.symbols().contains(s) {
        return None;
    }
    let diff = i64::try_from(value).ok()?.checked_sub(r0)?;
    (diff % k == 0).then(|| (s.clone(), diff / k))
}

/// The product of dims, as an expression.
pub fn numel_expr(shape: &[Dim]) -> Result<DimExpr, String> {
    shape.iter().try_fold(DimExpr::constant(1), |acc, d| acc.mul(&d.expr()))
}

/// ONNX reshape rules over possibly symbolic dims: each target entry is a size or expression,
/// `0` (copy the input's dim at that position) or `-1` (inferred, at most once). The element
/// counts must agree as polynomials (`[batch, seq, 32]` into `[batch, seq, -1, 8]` infers 4).
pub fn reshape_dims(input: &[Dim], target: &[DimExpr]) -> Result<Shape, String> {
    let shown = || {
        let t: Vec<String> = target.iter().map(|e| e.to_string()).collect();
        format!("[{}]", t.join(", "))
    };
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, t) in target.iter().enumerate() {
        match t.as_const() {
            Some(0) => out.push(Some(
                input.get(i).cloned().ok_or_else(|| format!("reshape dim {i} copies a missing input dim"))?,
            )),
            Some(-1) if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(None);
            }
            Some(-1) => return Err("reshape has more than one -1".into()),
            Some(c) if c < 0 => return Err(format!("reshape dim {c} is invalid")),
            _ => out.push(Some(Dim::from_expr(t.clone())?)),
        }
    }
    let total = numel_expr(input)?;
    let known = numel_expr(&out.iter().flatten().cloned().collect::<Vec<_>>())?;
    let cannot = || format!("cannot reshape {} into {}", fmt_shape(input), shown());
    match infer_at {
        Some(i) => {
            if known.as_const() == Some(0) {
                return Err(format!("{}: the other dims hold no elements, so -1 cannot be inferred", cannot()));
            }
            let d = total.div_exact(&known).ok_or_else(cannot)?;
            out[i] = Some(Dim::from_expr(d).map_err(|_| cannot())?);
        }
        None if total != known => return Err(cannot()),
        None => {}
    }
    Ok(out.into_iter().map(|d| d.expect("filled")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape_of;

    fn t(v: &[i64]) -> Vec<DimExpr> {
        v.iter().map(|&x| DimExpr::constant(x)).collect()
    }

    fn d(s: &str) -> Dim {
        Dim::parse(s).unwrap()
    }

    #[test]
    fn reshape_rules() {
        let s = |v: &[u64]| shape_of(v);
        assert_eq!(reshape_dims(&s(&[2, 8, 64]), &t(&[-1, 64])).unwrap(), s(&[16, 64]));
        assert_eq!(reshape_dims(&s(&[2, 8, 64]), &t(&[0, 0, 8, 8])).unwrap(), s(&[2, 8, 8, 8]));
        assert!(reshape_dims(&s(&[2, 8, 64]), &t(&[3, -1])).is_err());
        assert!(reshape_dims(&s(&[2, 8, 64]), &t(&[-1, -1])).unwrap_err().contains("more than one -1"));
        let sym = vec![Dim::Sym("batch".into()), Dim::Fixed(64)];
        assert_eq!(
            reshape_dims(&sym, &t(&[-1, 8, 8])).unwrap(),
            vec![Dim::Sym("batch".into()), Dim::Fixed(8), Dim::Fixed(8)]
        );
        // Symbolic targets, and -1 inferred through them.
        let x = vec![d("batch"), d("seq"), Dim::Fixed(32)];
        let target = vec![DimExpr::sym("batch"), DimExpr::sym("seq"), DimExpr::constant(-1), DimExpr::constant(8)];
        assert_eq!(reshape_dims(&x, &target).unwrap(), vec![d("batch"), d("seq"), Dim::Fixed(4), Dim::Fixed(8)]);
        // -1 inferred through a sum: a KV-cache step's keys with their heads folded away.
        let keys = vec![Dim::Fixed(1), Dim::Fixed(4), d("new + past"), Dim::Fixed(8)];
        let target = vec![DimExpr::constant(-1), DimExpr::parse("new + past").unwrap(), DimExpr::constant(8)];
        assert_eq!(reshape_dims(&keys, &target).unwrap(), vec![Dim::Fixed(4), d("new + past"), Dim::Fixed(8)]);
        let target = vec![DimExpr::constant(-1), DimExpr::parse("new + past + 1").unwrap(), DimExpr::constant(8)];
        assert!(reshape_dims(&keys, &target).unwrap_err().starts_with("cannot reshape"));
        let kv = vec![Dim::Fixed(1), Dim::Fixed(2), Dim::Fixed(2), d("past + new"), Dim::Fixed(8)];
        assert_eq!(reshape_dims(&kv, &t(&[1, 4, -1, 8])).unwrap()[2], d("new + past"));
        let flat = vec![DimExpr::parse("batch * seq").unwrap(), DimExpr::constant(32)];
        assert_eq!(reshape_dims(&x, &flat).unwrap(), vec![d("batch * seq"), Dim::Fixed(32)]);
        assert!(reshape_dims(&x, &t(&[-1, 5])).unwrap_err().starts_with("cannot reshape [batch,seq,32] into [-1, 5]"));
    }

    #[test]
    fn symbolic_broadcasting() {
        let a = vec![d("batch"), Dim::Fixed(1), d("past + new")];
        let b = vec![Dim::Fixed(4), d("new + past")];
        assert_eq!(broadcast(&a, &b).unwrap(), vec![d("batch"), Dim::Fixed(4), d("past + new")]);
        let e = broadcast(&[d("a")], &[d("b")]).unwrap_err();
        assert_eq!(e, "shapes [a] and [b] do not broadcast: cannot prove dims a and b broadcast");
    }

    #[test]
    fn binding_inputs_names_conflicts_and_checks_expressions() {
        let ty = |s: &[&str]| TensorType::new(crate::DType::F32, s.iter().map(|x| d(x)).collect());
        let (ids, mask, past, present) =
            (ty(&["1", "new"]), ty(&["1", "all"]), ty(&["past", "8"]), ty(&["past + new", "8"]));
        let mut b = Bindings::new();
        bind_inputs(&[("ids", &ids, &[1, 3]), ("past", &past, &[9, 8]), ("present", &present, &[12, 8])], &mut b)
            .unwrap();
        assert_eq!((b["new"], b["past"]), (3, 9));
        // An expression binds its one unbound symbol.
        let mut b = Bindings::new();
        bind_inputs(&[("ids", &ids, &[1, 3]), ("present", &present, &[12, 8])], &mut b).unwrap();
        assert_eq!(b["past"], 9);
        let e = bind_inputs(&[("ids", &ids, &[1, 3]), ("present", &present, &[2, 8])], &mut Bindings::new())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "node 'present': dim new + past is 2, which would make symbolic dim 'past' negative (-1)");
        let e = bind_inputs(
            &[("ids", &ids, &[1, 3]), ("past", &past, &[9, 8]), ("present", &present, &[11, 8])],
            &mut Bindings::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "node 'present': dim new + past is 12 under the binding new=3, past=9 but 11 in shape [11, 8]");
        let e = bind_inputs(&[("ids", &ids, &[1, 3]), ("mask", &ty(&["1", "new"]), &[1, 5])], &mut Bindings::new())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "node 'mask': symbolic dim 'new' is 3 in input 'ids' but 5 here (dim 1 of shape [1, 5])");
        let mut given: Bindings = [("all".to_string(), 4)].into();
        let e = bind_inputs(&[("mask", &mask, &[1, 5])], &mut given).unwrap_err().to_string();
        assert_eq!(e, "node 'mask': symbolic dim 'all' is bound to 4 but is 5 here (dim 1 of shape [1, 5])");
        let e = bind_inputs(&[("ids", &ids, &[1, 3, 1])], &mut Bindings::new()).unwrap_err().to_string();
        assert_eq!(e, "node 'ids': expected f32[1,new] (rank 2), got shape [1, 3, 1]");
        let e = bind_inputs(&[("ids", &ids, &[2, 3])], &mut Bindings::new()).unwrap_err().to_string();
        assert_eq!(e, "node 'ids': expected f32[1,new], got shape [2, 3] (dim 0 is 2, not 1)");
    }

    #[test]
    fn broadcasting() {
        let s = |v: &[u64]| shape_of(v);
        assert_eq!(broadcast(&s(&[2, 1, 4]), &s(&[3, 1])).unwrap(), s(&[2, 3, 4]));
        assert!(broadcast(&s(&[2, 3]), &s(&[4])).is_err());
    }
}
