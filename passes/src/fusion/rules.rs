//! The rewrite rules of the fusion pass, all in one place.
//!
//! # Rules policy
//! - A rule states one identity, named, on one line, with the identity in a comment.
//! - The right side is never worse than the left: rules add canonical forms (`scale`,
//!   `offset`, `silu`, `lin`, `glu`, `fgu`); extraction decides what is built.
//! - No general commutativity or associativity: they blow the e-graph up. Where an exporter
//!   may put an operand on either side, write the two targeted variants (`-l`, `-r`).
//! - Constants are matched by value with a tolerance ([`TOL`]), never by spelling, since
//!   exporters round √(2/π), 0.044715 and 1/√2 differently (and f16 rounds further).
//! - Conditions check types where an identity needs them (a bias is 1-D of the right
//!   length; gate and up agree in shape and dtype).

use super::lang::{same_type, Const, Glu, GluGraph, TypeAnalysis};
use egg::{rewrite as rw, Applier, Id, PatternAst, Rewrite, Subst, Symbol, Var};

/// Relative tolerance when matching a constant against its textbook value.
pub const TOL: f64 = 2e-3;

type Rw = Rewrite<Glu, TypeAnalysis>;

fn var(s: &str) -> Var {
    s.parse().expect("valid pattern variable")
}

fn close(v: f64, want: f64) -> bool {
    (v - want).abs() <= TOL * want.abs().max(1e-30)
}

/// ?v is a scalar constant close to `want`.
fn is(v: &str, want: f64) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool {
    let v = var(v);
    move |eg, _, s| eg[s[v]].data.konst.is_some_and(|c| close(c, want))
}

/// ?c is a scalar constant and ?x is not.
fn konst_on(c: &str, x: &str) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool {
    let (c, x) = (var(c), var(x));
    move |eg, _, s| eg[s[c]].data.konst.is_some() && eg[s[x]].data.konst.is_none()
}

/// ?w is a 2-D tensor (a projection weight, perhaps behind a transpose).
fn is_2d(w: &str) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool {
    let w = var(w);
    move |eg, _, s| eg[s[w]].data.ty.as_ref().is_some_and(|t| t.rank() == 2)
}

/// ?b is a tensor (not `nobias`).
fn has_ty(b: &str) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool {
    let b = var(b);
    move |eg, _, s| eg[s[b]].data.ty.is_some()
}

fn both<A, B>(a: A, b: B) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool
where
    A: Fn(&mut GluGraph, Id, &Subst) -> bool,
    B: Fn(&mut GluGraph, Id, &Subst) -> bool,
{
    move |eg, id, s| a(eg, id, s) && b(eg, id, s)
}

/// `x / c  =>  scale(x, 1/c)`: the right side holds a new constant, so it is computed here.
struct ScaleByRecip;

impl Applier<Glu, TypeAnalysis> for ScaleByRecip {
    fn apply_one(&self, eg: &mut GluGraph, class: Id, s: &Subst, _: Option<&PatternAst<Glu>>, rule: Symbol) -> Vec<Id> {
        let Some(c) = eg[s[var("?c")]].data.konst.filter(|c| *c != 0.0) else {
            return vec![];
        };
        let r = eg.add(Glu::Num(Const::new(1.0 / c)));
        let new = eg.add(Glu::Scale([s[var("?x")], r]));
        if eg.union_trusted(class, new, rule) {
            vec![class]
        } else {
            vec![]
        }
    }
}

/// Every rule of the pass.
#[rustfmt::skip]
pub fn rules() -> Vec<Rw> {
    let k_gelu = (2.0 / std::f64::consts::PI).sqrt();
    let r_sqrt2 = std::f64::consts::FRAC_1_SQRT_2;
    let mut r: Vec<Rw> = vec![
        // --- constants to one side, in canonical forms ---
        rw!("mul-const-r";  "(mul ?x ?c)" => "(scale ?x ?c)" if konst_on("?c", "?x")),  // x·c = scale(x, c)
        rw!("mul-const-l";  "(mul ?c ?x)" => "(scale ?x ?c)" if konst_on("?c", "?x")),  // c·x = scale(x, c)
        rw!("add-const-r";  "(add ?x ?c)" => "(offset ?x ?c)" if konst_on("?c", "?x")), // x+c = offset(x, c)
        rw!("add-const-l";  "(add ?c ?x)" => "(offset ?x ?c)" if konst_on("?c", "?x")), // c+x = offset(x, c)
        rw!("div-const";    "(div ?x ?c)" => { egg::ConditionalApplier { condition: konst_on("?c", "?x"), applier: ScaleByRecip } }), // x/c = scale(x, 1/c)
        rw!("scale-neg1";   "(scale ?x ?c)" => "(neg ?x)" if is("?c", -1.0)),             // x·(-1) = -x
        rw!("sub-from-0";   "(sub ?z ?x)" => "(neg ?x)" if is("?z", 0.0)),                // 0-x = -x
        rw!("recip";        "(div ?o ?y)" => "(recip ?y)" if is("?o", 1.0)),              // 1/y = recip(y)
        rw!("mul-recip-r";  "(mul ?a (recip ?b))" => "(div ?a ?b)"),                    // a·(1/b) = a/b
        rw!("mul-recip-l";  "(mul (recip ?b) ?a)" => "(div ?a ?b)"),                    // (1/b)·a = a/b
        rw!("scale-out-l";  "(mul (scale ?a ?c) ?b)" => "(scale (mul ?a ?b) ?c)"),       // (a·c)·b = (a·b)·c
        rw!("scale-out-r";  "(mul ?a (scale ?b ?c))" => "(scale (mul ?a ?b) ?c)"),       // a·(b·c) = (a·b)·c
        // --- SiLU ---
        rw!("sigmoid-exp";  "(recip (offset (exp (neg ?x)) ?o))" => "(sigmoid ?x)" if is("?o", 1.0)), // 1/(1+e^-x) = σ(x)
        rw!("silu-sig-r";   "(mul ?x (sigmoid ?x))" => "(silu ?x)"),                   // x·σ(x) = silu(x)
        rw!("silu-sig-l";   "(mul (sigmoid ?x) ?x)" => "(silu ?x)"),                   // σ(x)·x = silu(x)
        rw!("silu-div-exp"; "(div ?x (offset (exp (neg ?x)) ?o))" => "(silu ?x)" if is("?o", 1.0)), // x/(1+e^-x) = silu(x)
        // --- GELU, tanh approximation ---
        rw!("cube-pow";     "(pow ?x ?n)" => "(cube ?x)" if is("?n", 3.0)),              // x^3 = x³
        rw!("cube-mul-l";   "(mul (mul ?x ?x) ?x)" => "(cube ?x)"),                    // (x·x)·x = x³
        rw!("cube-mul-r";   "(mul ?x (mul ?x ?x))" => "(cube ?x)"),                    // x·(x·x) = x³
        rw!("gelu-arg-r";   "(scale (add ?x (scale (cube ?x) ?a)) ?k)" => "(gelu_arg ?x)" if both(is("?a", 0.044715), is("?k", k_gelu))), // k·(x + a·x³)
        rw!("gelu-arg-l";   "(scale (add (scale (cube ?x) ?a) ?x) ?k)" => "(gelu_arg ?x)" if both(is("?a", 0.044715), is("?k", k_gelu))), // k·(a·x³ + x)
        rw!("gelu-tanh-r";  "(scale (mul ?x (offset (tanh (gelu_arg ?x)) ?o)) ?h)" => "(gelu_tanh ?x)" if both(is("?o", 1.0), is("?h", 0.5))), // ½·x·(1+tanh(..))
        rw!("gelu-tanh-l";  "(scale (mul (offset (tanh (gelu_arg ?x)) ?o) ?x) ?h)" => "(gelu_tanh ?x)" if both(is("?o", 1.0), is("?h", 0.5))), // ½·(1+tanh(..))·x
        // --- GELU, exact ---
        rw!("gelu-erf-r";   "(scale (mul ?x (offset (erf (scale ?x ?r)) ?o)) ?h)" => "(gelu_erf ?x)" if both(is("?r", r_sqrt2), both(is("?o", 1.0), is("?h", 0.5)))), // ½·x·(1+erf(x/√2))
        rw!("gelu-erf-l";   "(scale (mul (offset (erf (scale ?x ?r)) ?o) ?x) ?h)" => "(gelu_erf ?x)" if both(is("?r", r_sqrt2), both(is("?o", 1.0), is("?h", 0.5)))), // ½·(1+erf(x/√2))·x
        // --- projections x·W (+ b) ---
        rw!("lin";          "(matmul ?x ?w)" => "(lin ?x ?w nobias)" if is_2d("?w")),    // x·W = lin(x, W)
        rw!("lin-bias-r";   "(add (lin ?x ?w nobias) ?b)" => "(lin ?x ?w ?b)" if bias_fits("?b", "?w")), // x·W + b = lin(x, W, b)
        rw!("lin-bias-l";   "(add ?b (lin ?x ?w nobias))" => "(lin ?x ?w ?b)" if bias_fits("?b", "?w")), // b + x·W = lin(x, W, b)
        rw!("slice-lin";    "(slice (lin ?x ?w nobias) ?s ?e)" => "(lin ?x (cols ?w ?s ?e) nobias)"), // (x·W)[.., s..e] = x·W[:, s..e]
        rw!("slice-lin-b";  "(slice (lin ?x ?w ?b) ?s ?e)" => "(lin ?x (cols ?w ?s ?e) (cols ?b ?s ?e))" if has_ty("?b")), // (x·W+b)[s..e] = x·W[:, s..e] + b[s..e]
        // --- the gated linear unit ---
        rw!("fuse";         "(glu ?a (lin ?x ?wg ?bg) (lin ?x ?wu ?bu))" => "(fgu ?a ?x ?wg ?bg ?wu ?bu)" if same_type_of("?wg", "?wu")), // act(x·Wg+bg)·(x·Wu+bu) = fgu(..)
    ];
    // act(g)·u and u·act(g), for each activation: the candidates the pass reports on.
    for act in glufuse_ir::Activation::ALL {
        let (n, tag) = (act.name(), format!("act:{}", act.name()));
        let op = match act {
            glufuse_ir::Activation::Silu => "silu",
            glufuse_ir::Activation::GeluTanh => "gelu_tanh",
            glufuse_ir::Activation::GeluErf => "gelu_erf",
            glufuse_ir::Activation::Relu => "relu",
        };
        let lhs_l: egg::Pattern<Glu> = format!("(mul ({op} ?g) ?u)").parse().expect("pattern");
        let lhs_r: egg::Pattern<Glu> = format!("(mul ?u ({op} ?g))").parse().expect("pattern");
        let rhs: egg::Pattern<Glu> = format!("(glu {tag} ?g ?u)").parse().expect("pattern");
        r.push(Rewrite::new(format!("glu-{n}-l"), lhs_l, rhs.clone()).expect("rule")); // act(g)·u = glu(act, g, u)
        r.push(Rewrite::new(format!("glu-{n}-r"), lhs_r, rhs).expect("rule"));         // u·act(g) = glu(act, g, u)
    }
    r
}

/// ?b is a 1-D bias whose length is the output width of the weight descriptor ?w.
fn bias_fits(b: &str, w: &str) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool {
    let (b, w) = (var(b), var(w));
    move |eg, _, s| match (&eg[s[b]].data.ty, &eg[s[w]].data.ty) {
        (Some(bt), Some(wt)) => bt.rank() == 1 && wt.rank() == 2 && bt.shape[0] == wt.shape[1] && bt.dtype == wt.dtype,
        _ => false,
    }
}

/// ?a and ?b have one type: the gate and up weights give outputs of one width and dtype.
fn same_type_of(a: &str, b: &str) -> impl Fn(&mut GluGraph, Id, &Subst) -> bool {
    let (a, b) = (var(a), var(b));
    move |eg, _, s| same_type(&eg[s[a]].data.ty, &eg[s[b]].data.ty)
}
