//! Shapes: symbolic dims bound to sizes at run time ([`Bindings`]), numpy broadcasting, axis
//! normalisation, ONNX reshape rules, and the size limit every tensor is held to.

use crate::{Dim, Shape, TensorType};
use std::collections::HashMap;

/// Largest size of one dim, and of one tensor in elements, that glufuse accepts (2^40).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// Normalises a possibly negative axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
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
            (Some(x), Some(y)) => {
                return Err(format!("shapes {} and {} do not broadcast (dim {x} vs {y})", fmt_shape(a), fmt_shape(b)))
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

pub(crate) fn check_size(t: &TensorType) -> Result<(), String> {
    let mut n: u64 = 1;
    for d in &t.shape {
        if let Dim::Fixed(k) = d {
            if *k > MAX_ELEMENTS {
                return Err(format!("dim {k} is absurdly large (limit {MAX_ELEMENTS})"));
            }
            n = n.saturating_mul(*k);
        }
    }
    if n > MAX_ELEMENTS {
        return Err(format!("{t} has {n} elements, more than the limit of {MAX_ELEMENTS}"));
    }
    Ok(())
}

/// Binds symbolic dims to sizes.
pub type Bindings = HashMap<String, usize>;

/// Resolves a shape under bindings; fails naming the unbound symbol.
pub fn concrete(shape: &[Dim], b: &Bindings) -> std::result::Result<Vec<usize>, String> {
    shape
        .iter()
        .map(|d| match d {
            Dim::Fixed(n) => Ok(*n as usize),
            Dim::Sym(s) => {
                b.get(s).copied().ok_or_else(|| format!("symbolic dim '{s}' has no size; pass one with --dim {s}=N"))
            }
        })
        .collect()
}

/// Binds the symbols in `ty` from an actual shape, checking known dims.
pub fn bind(ty: &TensorType, actual: &[usize], b: &mut Bindings) -> std::result::Result<(), String> {
    if ty.rank() != actual.len() {
        return Err(format!("expected {ty}, got shape {actual:?}"));
    }
    for (d, &a) in ty.shape.iter().zip(actual) {
        match d {
            Dim::Fixed(n) if *n as usize != a => return Err(format!("expected {ty}, got shape {actual:?}")),
            Dim::Sym(s) => {
                if let Some(&prev) = b.get(s) {
                    if prev != a {
                        return Err(format!("symbolic dim '{s}' is {prev} elsewhere but {a} here"));
                    }
                }
                b.insert(s.clone(), a);
            }
            _ => {}
        }
    }
    Ok(())
}

/// ONNX reshape rules over possibly symbolic dims.
pub fn reshape_dims(input: &[Dim], target: &[i64]) -> Result<Shape, String> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            0 => out.push(Some(
                input.get(i).cloned().ok_or_else(|| format!("reshape dim {i} copies a missing input dim"))?,
            )),
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                out.push(None);
            }
            -1 => return Err("reshape has more than one -1".into()),
            t if t > 0 => out.push(Some(Dim::Fixed(t as u64))),
            t => return Err(format!("reshape dim {t} is invalid")),
        }
    }
    // Cancel symbols that appear on both sides, then compare known products.
    let mut in_syms: Vec<&Dim> = input.iter().filter(|d| d.fixed().is_none()).collect();
    let mut out_syms = vec![];
    let in_prod: u64 = input.iter().filter_map(Dim::fixed).product();
    let mut out_prod: u64 = 1;
    for d in out.iter().flatten() {
        match d {
            Dim::Fixed(n) => out_prod = out_prod.saturating_mul(*n),
            s => {
                if let Some(p) = in_syms.iter().position(|x| *x == s) {
                    in_syms.remove(p);
                } else {
                    out_syms.push(s.clone());
                }
            }
        }
    }
    if !out_syms.is_empty() {
        return Err(format!("reshape introduces symbolic dims {out_syms:?} not in the input"));
    }
    match infer_at {
        Some(i) => {
            let d = match in_syms.as_slice() {
                [] => {
                    if out_prod == 0 || in_prod % out_prod != 0 {
                        return Err(format!("cannot reshape {} into {target:?}", fmt_shape(input)));
                    }
                    Dim::Fixed(in_prod / out_prod)
                }
                [s] if in_prod == out_prod => (*s).clone(),
                _ => return Err(format!("cannot infer -1 when reshaping {} into {target:?}", fmt_shape(input))),
            };
            out[i] = Some(d);
        }
        None => {
            if !in_syms.is_empty() || in_prod != out_prod {
                return Err(format!("cannot reshape {} into {target:?}", fmt_shape(input)));
            }
        }
    }
    Ok(out.into_iter().map(|d| d.expect("filled")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape_of;

    #[test]
    fn reshape_rules() {
        let s = |v: &[u64]| shape_of(v);
        assert_eq!(reshape_dims(&s(&[2, 8, 64]), &[-1, 64]).unwrap(), s(&[16, 64]));
        assert_eq!(reshape_dims(&s(&[2, 8, 64]), &[0, 0, 8, 8]).unwrap(), s(&[2, 8, 8, 8]));
        assert!(reshape_dims(&s(&[2, 8, 64]), &[3, -1]).is_err());
        let sym = vec![Dim::Sym("batch".into()), Dim::Fixed(64)];
        assert_eq!(
            reshape_dims(&sym, &[-1, 8, 8]).unwrap(),
            vec![Dim::Sym("batch".into()), Dim::Fixed(8), Dim::Fixed(8)]
        );
    }

    #[test]
    fn broadcasting() {
        let s = |v: &[u64]| shape_of(v);
        assert_eq!(broadcast(&s(&[2, 1, 4]), &s(&[3, 1])).unwrap(), s(&[2, 3, 4]));
        assert!(broadcast(&s(&[2, 3]), &s(&[4])).is_err());
    }
}
