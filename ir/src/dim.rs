//! Symbolic integer expressions ([`DimExpr`]): the sizes of dims known only at run time
//! (`past + new`, `batch * seq`, `(a + b) // 2`), and the integer values an importer tracks
//! through shape arithmetic.
//!
//! An expression is held in a canonical form, so that structural equality is semantic
//! equality for everything but floor divisions: a polynomial with integer coefficients over
//! monomials, each a sorted product of atoms, where an atom is a symbol or the floor of an
//! expression divided by a constant greater than 1. `past + new` and `new + past` are the same
//! value; `2 * (a + b)` and `2 * a + 2 * b` too. Floor division keeps what it can exact
//! (`(2 * a + 3) // 2` is `a + 1`) and holds the rest as an atom (`(a + 1) // 2`).
//!
//! Symbols stand for dims, so they are never negative; the simplifications of `//` rely on
//! that. Evaluation under a binding of the symbols uses checked arithmetic: an overflow is an
//! error, never a wrapped value.
//!
//! Text form, as [`DimExpr::parse`] reads and [`Display`](std::fmt::Display) writes it:
//! integers, identifiers (`[A-Za-z_][A-Za-z0-9_]*`), `+`, `-`, `*`, `//` (by a positive
//! constant) and parentheses, with Python's precedence.

use std::collections::BTreeMap;
use std::fmt;

/// Most terms one expression may hold, and the highest degree of a monomial: expressions past
/// these are refused rather than grown without bound.
const MAX_TERMS: usize = 64;
const MAX_DEGREE: usize = 8;
/// Longest text [`DimExpr::parse`] reads.
const MAX_TEXT: usize = 1024;

/// One factor of a monomial.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Atom {
    /// A named size.
    Sym(String),
    /// `floor(e / c)` with `c > 1`, `e` with coefficients in `0..c` and no constant term
    /// outside that range (see [`DimExpr::floor_div`]).
    FloorDiv(Box<DimExpr>, i64),
}

/// A symbolic integer: a polynomial with integer coefficients over symbols and floor
/// divisions, in canonical form (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DimExpr {
    /// `(monomial, coefficient)` sorted by monomial; no zero coefficient; the constant term
    /// has the empty monomial.
    terms: Vec<(Vec<Atom>, i64)>,
}

/// Most steps (quotient terms) [`DimExpr::div_exact`] takes before giving up.
pub const MAX_DIV_STEPS: usize = 64;

fn overflow() -> String {
    "dim arithmetic overflows a 64-bit integer".into()
}

impl DimExpr {
    /// The constant `c`.
    pub fn constant(c: i64) -> Self {
        if c == 0 {
            DimExpr::default()
        } else {
            DimExpr { terms: vec![(vec![], c)] }
        }
    }

    /// The symbol `name` (not checked for being an identifier).
    pub fn sym(name: impl Into<String>) -> Self {
        DimExpr { terms: vec![(vec![Atom::Sym(name.into())], 1)] }
    }

    /// The value, when the expression is a constant.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.as_slice() {
            [] => Some(0),
            [(m, c)] if m.is_empty() => Some(*c),
            _ => None,
        }
    }

    /// The symbol's name, when the expression is exactly one symbol.
    pub fn as_sym(&self) -> Option<&str> {
        match self.terms.as_slice() {
            [(m, 1)] => match m.as_slice() {
                [Atom::Sym(s)] => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether every coefficient is non-negative, so that the value is never negative (every
    /// symbol and floor-division atom is non-negative).
    pub fn is_nonnegative(&self) -> bool {
        self.terms.iter().all(|(_, c)| *c >= 0)
    }

    /// Every symbol the expression mentions, sorted, without repeats.
    pub fn symbols(&self) -> Vec<String> {
        let mut out = std::collections::BTreeSet::new();
        self.collect_symbols(&mut out);
        out.into_iter().collect()
    }

    fn collect_symbols(&self, out: &mut std::collections::BTreeSet<String>) {
        for (m, _) in &self.terms {
            for a in m {
                match a {
                    Atom::Sym(s) => {
                        out.insert(s.clone());
                    }
                    Atom::FloorDiv(e, _) => e.collect_symbols(out),
                }
            }
        }
    }

    fn from_map(map: BTreeMap<Vec<Atom>, i64>) -> Result<Self, String> {
        let terms: Vec<_> = map.into_iter().filter(|(_, c)| *c != 0).collect();
        if terms.len() > MAX_TERMS {
            return Err(format!("dim expression has more than {MAX_TERMS} terms"));
        }
        Ok(DimExpr { terms })
    }

    /// `self + other`.
    pub fn add(&self, other: &DimExpr) -> Result<DimExpr, String> {
        let mut map: BTreeMap<Vec<Atom>, i64> = self.terms.iter().cloned().collect();
        for (m, c) in &other.terms {
            let e = map.entry(m.clone()).or_insert(0);
            *e = e.checked_add(*c).ok_or_else(overflow)?;
        }
        Self::from_map(map)
    }

    /// `-self`.
    pub fn neg(&self) -> Result<DimExpr, String> {
        let terms = self
            .terms
            .iter()
            .map(|(m, c)| c.checked_neg().map(|c| (m.clone(), c)).ok_or_else(overflow))
            .collect::<Result<_, _>>()?;
        Ok(DimExpr { terms })
    }

    /// `self - other`.
    pub fn sub(&self, other: &DimExpr) -> Result<DimExpr, String> {
        self.add(&other.neg()?)
    }

    /// `self * other`.
    pub fn mul(&self, other: &DimExpr) -> Result<DimExpr, String> {
        let mut map: BTreeMap<Vec<Atom>, i64> = BTreeMap::new();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                if ma.len() + mb.len() > MAX_DEGREE {
                    return Err(format!("dim expression has a product of more than {MAX_DEGREE} factors"));
                }
                let mut m: Vec<Atom> = ma.iter().chain(mb).cloned().collect();
                m.sort();
                let c = ca.checked_mul(*cb).ok_or_else(overflow)?;
                let e = map.entry(m).or_insert(0);
                *e = e.checked_add(c).ok_or_else(overflow)?;
            }
        }
        Self::from_map(map)
    }

    /// `floor(self / c)` for a positive constant `c`. The multiples of `c` come out exactly
    /// (`(2 * a + 3) // 2` is `a + 1`); the rest, its coefficients reduced into `0..c`, stays
    /// as a floor-division atom (`(a + 1) // 2`), or vanishes when it is a constant below `c`.
    pub fn floor_div(&self, c: i64) -> Result<DimExpr, String> {
        if c <= 0 {
            return Err(format!("floor division by {c}: the divisor must be a positive integer"));
        }
        if c == 1 {
            return Ok(self.clone());
        }
        let mut q = BTreeMap::new();
        let mut r = BTreeMap::new();
        for (m, k) in &self.terms {
            let rem = k.rem_euclid(c);
            q.insert(m.clone(), (k - rem) / c);
            r.insert(m.clone(), rem);
        }
        let q = Self::from_map(q)?;
        let r = Self::from_map(r)?;
        // 0 <= r's constant < c with every other term non-negative: a constant r floors to 0.
        if r.as_const().is_some() {
            return Ok(q);
        }
        q.add(&DimExpr { terms: vec![(vec![Atom::FloorDiv(Box::new(r), c)], 1)] })
    }

    /// The value under a binding of the symbols (`lookup`), in checked arithmetic; fails
    /// naming the first unbound symbol or saying that the value overflows.
    pub fn eval(&self, lookup: &dyn Fn(&str) -> Option<i64>) -> Result<i64, String> {
        let mut sum: i64 = 0;
        for (m, c) in &self.terms {
            let mut p = *c;
            for a in m {
                let v = match a {
                    Atom::Sym(s) => lookup(s).ok_or_else(|| format!("symbolic dim '{s}' has no size"))?,
                    Atom::FloorDiv(e, d) => e.eval(lookup)?.div_euclid(*d),
                };
                p = p.checked_mul(v).ok_or_else(|| format!("evaluating {self} overflows a 64-bit integer"))?;
            }
            sum = sum.checked_add(p).ok_or_else(|| format!("evaluating {self} overflows a 64-bit integer"))?;
        }
        Ok(sum)
    }

    /// `self / other` when it is exact as polynomials: `batch * seq * 32` by `seq * 8`, or
    /// `32 * new + 32 * past` by `8 * new + 8 * past` (a reshape of `[1, 4, new + past, 8]`
    /// into `[-1, new + past, 8]`); `None` otherwise, or where the division would take more
    /// than [`MAX_DIV_STEPS`] steps.
    ///
    /// Polynomial long division: the leading term of the remainder (the greatest by degree,
    /// then by monomial) over the divisor's, until nothing remains. `self = quotient · other +
    /// remainder` holds at every step, so a quotient returned is exact whatever the order;
    /// the order only decides which exact divisions are found.
    pub fn div_exact(&self, other: &DimExpr) -> Option<DimExpr> {
        let lead = |e: &DimExpr| e.terms.iter().max_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0))).cloned();
        let (dm, dc) = lead(other)?;
        let mut rem = self.clone();
        let mut quotient = DimExpr::default();
        for _ in 0..MAX_DIV_STEPS {
            let Some((rm, rc)) = lead(&rem) else { return Some(quotient) };
            if rc % dc != 0 {
                return None;
            }
            let mut rest = rm;
            for a in &dm {
                let i = rest.iter().position(|x| x == a)?;
                rest.remove(i);
            }
            let t = Self::from_map(BTreeMap::from([(rest, rc / dc)])).ok()?;
            rem = rem.sub(&t.mul(other).ok()?).ok()?;
            quotient = quotient.add(&t).ok()?;
        }
        None
    }

    /// `self` with every occurrence of the symbol `s` replaced by `by`.
    pub fn substitute(&self, s: &str, by: &DimExpr) -> Result<DimExpr, String> {
        let mut out = DimExpr::default();
        for (m, c) in &self.terms {
            let mut p = DimExpr::constant(*c);
            for a in m {
                let f = match a {
                    Atom::Sym(x) if x == s => by.clone(),
                    Atom::Sym(x) => DimExpr::sym(x.clone()),
                    Atom::FloorDiv(e, d) => e.substitute(s, by)?.floor_div(*d)?,
                };
                p = p.mul(&f)?;
            }
            out = out.add(&p)?;
        }
        Ok(out)
    }

    /// For `self == 0`, the symbol `s` as an expression of the others: where `s` appears as a
    /// term of its own with coefficient 1 or -1 and nowhere else (`new - all + past` gives
    /// `all - past` for `new`); `None` otherwise.
    pub fn solve_for(&self, s: &str) -> Option<DimExpr> {
        let alone = |m: &[Atom]| matches!(m, [Atom::Sym(x)] if x == s);
        let [(_, c)] = self.terms.iter().filter(|(m, _)| alone(m)).collect::<Vec<_>>()[..] else { return None };
        let rest = DimExpr { terms: self.terms.iter().filter(|(m, _)| !alone(m)).cloned().collect() };
        if !matches!(c, 1 | -1) || rest.symbols().iter().any(|x| x == s) {
            return None;
        }
        // c·s + rest = 0: s = -rest / c.
        if *c == 1 {
            rest.neg().ok()
        } else {
            Some(rest)
        }
    }

    /// Parses the text form (see the module documentation). Errors quote the text and say
    /// what is wrong.
    pub fn parse(text: &str) -> Result<DimExpr, String> {
        if text.len() > MAX_TEXT {
            return Err(format!("dim expression of {} characters is too long (limit {MAX_TEXT})", text.len()));
        }
        let toks = tokens(text).map_err(|m| format!("dim expression {text:?}: {m}"))?;
        let mut p = Parser { toks: &toks, at: 0, depth: 0 };
        let e = p.expr().map_err(|m| format!("dim expression {text:?}: {m}"))?;
        if p.at != toks.len() {
            return Err(format!("dim expression {text:?}: unexpected {} after a complete expression", toks[p.at]));
        }
        Ok(e)
    }

    fn fmt_monomial(m: &[Atom], c: i64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // c is the absolute coefficient here; the sign is written by the caller.
        let mut first = true;
        if c != 1 || m.is_empty() {
            write!(f, "{c}")?;
            first = false;
        }
        let alone = m.len() == 1 && first;
        for a in m {
            if !first {
                f.write_str(" * ")?;
            }
            first = false;
            match a {
                Atom::Sym(s) => f.write_str(s)?,
                Atom::FloorDiv(e, d) => {
                    let inner = if e.as_sym().is_some() { format!("{e}") } else { format!("({e})") };
                    if alone {
                        write!(f, "{inner} // {d}")?
                    } else {
                        write!(f, "({inner} // {d})")?
                    }
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for DimExpr {
    /// As people write it: the highest degree first, the constant last, positive terms before
    /// negative ones (`new + past`, `seq - 1`, `2 * heads`, `(a + b) // 2`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        let mut order: Vec<&(Vec<Atom>, i64)> = self.terms.iter().collect();
        order.sort_by(|a, b| (b.1 > 0).cmp(&(a.1 > 0)).then(b.0.len().cmp(&a.0.len())).then(a.0.cmp(&b.0)));
        for (i, (m, c)) in order.into_iter().enumerate() {
            let abs = c.unsigned_abs();
            match (i, *c < 0) {
                (0, true) => f.write_str("-")?,
                (0, false) => {}
                (_, true) => f.write_str(" - ")?,
                (_, false) => f.write_str(" + ")?,
            }
            // |i64::MIN| does not fit an i64: write it as text.
            match i64::try_from(abs) {
                Ok(a) => Self::fmt_monomial(m, a, f)?,
                Err(_) => {
                    write!(f, "{abs}")?;
                    for a in m {
                        f.write_str(" * ")?;
                        Self::fmt_monomial(std::slice::from_ref(a), 1, f)?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Ident(String),
    Plus,
    Minus,
    Star,
    SlashSlash,
    Open,
    Close,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Int(n) => write!(f, "'{n}'"),
            Tok::Ident(s) => write!(f, "'{s}'"),
            Tok::Plus => f.write_str("'+'"),
            Tok::Minus => f.write_str("'-'"),
            Tok::Star => f.write_str("'*'"),
            Tok::SlashSlash => f.write_str("'//'"),
            Tok::Open => f.write_str("'('"),
            Tok::Close => f.write_str("')'"),
        }
    }
}

fn tokens(text: &str) -> Result<Vec<Tok>, String> {
    let b = text.as_bytes();
    let mut out = vec![];
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' => i += 1,
            b'+' => (out.push(Tok::Plus), i += 1).1,
            b'-' => (out.push(Tok::Minus), i += 1).1,
            b'*' => (out.push(Tok::Star), i += 1).1,
            b'(' => (out.push(Tok::Open), i += 1).1,
            b')' => (out.push(Tok::Close), i += 1).1,
            b'/' if b.get(i + 1) == Some(&b'/') => (out.push(Tok::SlashSlash), i += 2).1,
            b'/' => return Err("'/' is not integer division; write '//'".into()),
            b'0'..=b'9' => {
                let s = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                let n = text[s..i].parse::<i64>().map_err(|_| format!("integer {} is too large", &text[s..i]))?;
                out.push(Tok::Int(n));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let s = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push(Tok::Ident(text[s..i].to_string()));
            }
            _ => {
                let ch = text[i..].chars().next().expect("in bounds");
                return Err(format!("unexpected character {ch:?}"));
            }
        }
    }
    if out.is_empty() {
        return Err("it is empty".into());
    }
    Ok(out)
}

struct Parser<'t> {
    toks: &'t [Tok],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn expr(&mut self) -> Result<DimExpr, String> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Some(Tok::Plus) => {
                    self.at += 1;
                    e = e.add(&self.term()?)?;
                }
                Some(Tok::Minus) => {
                    self.at += 1;
                    e = e.sub(&self.term()?)?;
                }
                _ => return Ok(e),
            }
        }
    }

    fn term(&mut self) -> Result<DimExpr, String> {
        let mut e = self.unary()?;
        loop {
            match self.peek() {
                Some(Tok::Star) => {
                    self.at += 1;
                    e = e.mul(&self.unary()?)?;
                }
                Some(Tok::SlashSlash) => {
                    self.at += 1;
                    let d = self.unary()?;
                    let c = d.as_const().ok_or_else(|| format!("the divisor of '//' must be an integer, not {d}"))?;
                    e = e.floor_div(c)?;
                }
                _ => return Ok(e),
            }
        }
    }

    fn unary(&mut self) -> Result<DimExpr, String> {
        if self.peek() == Some(&Tok::Minus) {
            self.at += 1;
            return self.unary()?.neg();
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<DimExpr, String> {
        let t = self.peek().cloned().ok_or("it ends where a value was expected")?;
        self.at += 1;
        match t {
            Tok::Int(n) => Ok(DimExpr::constant(n)),
            Tok::Ident(s) => Ok(DimExpr::sym(s)),
            Tok::Open => {
                self.depth += 1;
                if self.depth > 16 {
                    return Err("parentheses nest too deeply".into());
                }
                let e = self.expr()?;
                self.depth -= 1;
                match self.peek() {
                    Some(Tok::Close) => {
                        self.at += 1;
                        Ok(e)
                    }
                    Some(t) => Err(format!("expected ')' but found {t}")),
                    None => Err("a '(' is never closed".into()),
                }
            }
            t => Err(format!("expected a value but found {t}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DimExpr {
        DimExpr::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn canonical_equality_is_semantic() {
        assert_eq!(p("past + new"), p("new + past"));
        assert_eq!(p("2 * (a + b)"), p("2*a + b + b"));
        assert_eq!(p("a * b - b * a"), DimExpr::constant(0));
        assert_eq!(p("(a + 1) * (a - 1)"), p("a * a - 1"));
        assert_ne!(p("a + b"), p("a + c"));
        assert_eq!(p("(2 * a + 3) // 2"), p("a + 1"));
        assert_eq!(p("(a + b) // 2"), p("(b + a) // 2"));
        assert_eq!(p("(4 * a + 2 * b + 1) // 2"), p("2 * a + b"));
        assert_eq!(p("7 // 2"), DimExpr::constant(3));
        assert_eq!(p("-7 // 2"), DimExpr::constant(-4));
    }

    #[test]
    fn substitution_and_solving_for_a_symbol() {
        assert_eq!(p("all - past").substitute("all", &p("past + new")).unwrap(), p("new"));
        assert_eq!(
            p("2 * a * b + (a + 1) // 2").substitute("a", &p("c + 1")).unwrap(),
            p("2*b*c + 2*b + (c + 2) // 2")
        );
        assert_eq!(p("x + 3").substitute("y", &p("z")).unwrap(), p("x + 3"));
        // new == all - past, for each of its symbols.
        let e = p("new - (all - past)");
        assert_eq!(e.solve_for("all"), Some(p("new + past")));
        assert_eq!(e.solve_for("new"), Some(p("all - past")));
        assert_eq!(e.solve_for("past"), Some(p("all - new")));
        // Not alone, not ±1, or also elsewhere: no solution.
        assert_eq!(p("2 * a - b").solve_for("a"), None);
        assert_eq!(p("a - b").solve_for("c"), None);
        assert_eq!(p("a + a * b - c").solve_for("a"), None);
        assert_eq!(p("a - (a + 1) // 2 - c").solve_for("a"), None);
        assert_eq!(p("a * a - c").solve_for("a"), None);
    }

    #[test]
    fn prints_as_people_write_it_and_reads_back() {
        for (text, shown) in [
            ("past + new", "new + past"),
            ("seq - 1", "seq - 1"),
            ("1 - seq", "1 - seq"),
            ("-seq", "-seq"),
            ("seq * heads", "heads * seq"),
            ("2 * heads", "2 * heads"),
            ("(a + b) // 2", "(a + b) // 2"),
            ("seq // 2", "seq // 2"),
            ("3 * (seq // 2) + 1", "3 * (seq // 2) + 1"),
            ("batch * seq * 32 - 7", "32 * batch * seq - 7"),
            ("0", "0"),
            ("12", "12"),
            ("-5 - a", "-a - 5"),
        ] {
            let e = p(text);
            assert_eq!(e.to_string(), shown, "{text}");
            assert_eq!(p(shown), e, "{shown} reads back");
        }
    }

    #[test]
    fn parse_errors_quote_the_text() {
        for (text, msg) in [
            ("", "it is empty"),
            ("a +", "it ends where a value was expected"),
            ("a / 2", "'/' is not integer division"),
            ("a // b", "the divisor of '//' must be an integer, not b"),
            ("a // 0", "floor division by 0"),
            ("(a + b", "a '(' is never closed"),
            ("a b", "unexpected 'b' after a complete expression"),
            ("a % 2", "unexpected character '%'"),
            ("99999999999999999999", "is too large"),
        ] {
            let e = DimExpr::parse(text).unwrap_err();
            assert!(e.starts_with(&format!("dim expression {text:?}")), "{e}");
            assert!(e.contains(msg), "{text}: {e}");
        }
        assert!(DimExpr::parse(&"(".repeat(40)).unwrap_err().contains("nest too deeply"));
        let big = (0..100).map(|i| format!("s{i}")).collect::<Vec<_>>().join(" + ");
        assert!(DimExpr::parse(&big).unwrap_err().contains("more than 64 terms"));
    }

    #[test]
    fn evaluates_with_checked_arithmetic() {
        let b = |s: &str| match s {
            "past" => Some(9),
            "new" => Some(3),
            "huge" => Some(i64::MAX / 2 + 1),
            _ => None,
        };
        assert_eq!(p("past + new").eval(&b), Ok(12));
        assert_eq!(p("(past + new) // 2").eval(&b), Ok(6));
        assert_eq!(p("past * new - 30").eval(&b), Ok(-3));
        assert_eq!(p("past + other").eval(&b), Err("symbolic dim 'other' has no size".into()));
        let e = p("2 * huge").eval(&b).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        assert_eq!(p("past + new").symbols(), vec!["new".to_string(), "past".to_string()]);
        assert_eq!(p("(a + b) // 2 + c").symbols(), vec!["a", "b", "c"]);
    }

    #[test]
    fn exact_division_by_a_monomial() {
        assert_eq!(p("32 * batch * seq").div_exact(&p("8 * seq")), Some(p("4 * batch")));
        assert_eq!(p("4 * past + 4 * new").div_exact(&p("4")), Some(p("past + new")));
        assert_eq!(p("3 * batch").div_exact(&p("2")), None);
        assert_eq!(p("batch").div_exact(&p("seq")), None);
    }

    /// Divisors of several terms, as a KV-cache step's `[1, heads, new + past, d]` reshaped
    /// with -1 has them (Hugging Face's default attention, exported by PyTorch): exact
    /// quotients found whatever the order of the terms, inexact ones refused.
    #[test]
    fn exact_division_by_a_sum() {
        assert_eq!(p("32 * new + 32 * past").div_exact(&p("8 * new + 8 * past")), Some(p("4")));
        assert_eq!(p("32 * past + 32 * new").div_exact(&p("8 * past + 8 * new")), Some(p("4")));
        let product = p("(a + b) * (c + 2 * d) * batch");
        assert_eq!(product.div_exact(&p("a + b")), Some(p("(c + 2 * d) * batch")));
        assert_eq!(product.div_exact(&p("batch * c + 2 * batch * d")), Some(p("a + b")));
        assert_eq!(p("(past + new) * (past + new)").div_exact(&p("past + new")), Some(p("past + new")));
        assert_eq!(p("new + past + 1").div_exact(&p("new + past")), None);
        assert_eq!(p("2 * new").div_exact(&p("new + past")), None);
        assert_eq!(p("3 * new + 3 * past").div_exact(&p("2 * new + 2 * past")), None);
        assert_eq!(p("a * a").div_exact(&p("a + 1")), None);
        assert_eq!(p("(a + 1) // 2 * b").div_exact(&p("(a + 1) // 2")), Some(p("b")));
    }
}
