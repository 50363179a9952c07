//! Element types, dims (known sizes, named symbols, or expressions over symbols), shapes and
//! tensor types: what a value of the graph is, independent of the op that makes it.

use crate::dim::DimExpr;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// 64-bit signed integer (token ids, positions, indices, shape arithmetic). Held as i64
    /// on the host; on the GPU as i32, with a checked error for a value that does not fit.
    I64,
    /// 32-bit signed integer. Held as i64 on the host (always within i32's range), i32 on
    /// the GPU.
    I32,
    /// Boolean (masks, comparisons). Held as `bool` on the host, a `u32` 0 or 1 on the GPU.
    Bool,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 => 4,
            DType::F16 => 2,
            DType::I64 => 8,
            DType::I32 => 4,
            DType::Bool => 1,
        }
    }

    /// Whether the dtype is a floating-point type.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16)
    }

    /// Whether the dtype is an integer type.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32)
    }

    /// Every dtype.
    pub const ALL: [DType; 5] = [DType::F32, DType::F16, DType::I64, DType::I32, DType::Bool];
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::Bool => "bool",
        })
    }
}

/// One dimension of a shape: a known size, a named symbol (`batch`, `seq`), or an expression
/// over symbols and integers (`past + new`, `heads * seq`, `(a + b) // 2`; see
/// [`crate::dim`]).
///
/// A dim is kept normalised, so that derived equality is semantic equality: a constant is
/// always `Fixed`, a lone symbol always `Sym`, and `Expr` holds only what is neither. Build
/// dims from expressions with [`Dim::from_expr`] (or [`Dim::parse`], or the arithmetic
/// methods), never with `Dim::Expr` directly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A known size.
    Fixed(u64),
    /// A size known only at run time, named.
    Sym(String),
    /// A size computed from symbols at run time (neither a constant nor a lone symbol).
    Expr(DimExpr),
}

impl Dim {
    /// The size, when known.
    pub fn fixed(&self) -> Option<u64> {
        match self {
            Dim::Fixed(n) => Some(*n),
            Dim::Sym(_) | Dim::Expr(_) => None,
        }
    }

    /// A symbol.
    pub fn sym(name: impl Into<String>) -> Dim {
        Dim::Sym(name.into())
    }

    /// The dim as an expression (a size beyond `i64::MAX`, refused by every size check, is
    /// taken as `i64::MAX`).
    pub fn expr(&self) -> DimExpr {
        match self {
            Dim::Fixed(n) => DimExpr::constant(i64::try_from(*n).unwrap_or(i64::MAX)),
            Dim::Sym(s) => DimExpr::sym(s.clone()),
            Dim::Expr(e) => e.clone(),
        }
    }

    /// The dim an expression stands for, normalised; an error for a negative constant.
    pub fn from_expr(e: DimExpr) -> Result<Dim, String> {
        if let Some(c) = e.as_const() {
            return u64::try_from(c).map(Dim::Fixed).map_err(|_| format!("dimension {c} is negative"));
        }
        if let Some(s) = e.as_sym() {
            return Ok(Dim::Sym(s.to_string()));
        }
        Ok(Dim::Expr(e))
    }

    /// The dim with the symbol `s` replaced by `by`.
    pub fn substitute(&self, s: &str, by: &DimExpr) -> Result<Dim, String> {
        match self {
            Dim::Fixed(_) => Ok(self.clone()),
            Dim::Sym(x) if x != s => Ok(self.clone()),
            Dim::Sym(_) | Dim::Expr(_) => Dim::from_expr(self.expr().substitute(s, by)?),
        }
    }

    /// Parses a dim written as an integer, a symbol or an expression (`past + new`).
    pub fn parse(text: &str) -> Result<Dim, String> {
        Dim::from_expr(DimExpr::parse(text)?)
    }

    /// `self + other`.
    pub fn add(&self, other: &Dim) -> Result<Dim, String> {
        Dim::from_expr(self.expr().add(&other.expr())?)
    }

    /// `self * other`.
    pub fn mul(&self, other: &Dim) -> Result<Dim, String> {
        Dim::from_expr(self.expr().mul(&other.expr())?)
    }

    /// Every symbol the dim mentions, sorted.
    pub fn symbols(&self) -> Vec<String> {
        match self {
            Dim::Fixed(_) => vec![],
            Dim::Sym(s) => vec![s.clone()],
            Dim::Expr(e) => e.symbols(),
        }
    }

    /// The size under a binding of the symbols; fails naming an unbound symbol, or when the
    /// expression overflows or comes out negative.
    pub fn eval(&self, b: &crate::shape::Bindings) -> Result<usize, String> {
        match self {
            Dim::Fixed(n) => usize::try_from(*n).map_err(|_| format!("dimension {n} does not fit this machine")),
            Dim::Sym(s) => b.get(s).copied().ok_or_else(|| format!("symbolic dim '{s}' has no size")),
            Dim::Expr(e) => {
                let v = e.eval(&|s| b.get(s).and_then(|&v| i64::try_from(v).ok()))?;
                usize::try_from(v).map_err(|_| format!("dim {e} comes out as {v}, a negative size"))
            }
        }
    }
}

impl From<u64> for Dim {
    fn from(n: u64) -> Dim {
        Dim::Fixed(n)
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Sym(s) => f.write_str(s),
            Dim::Expr(e) => write!(f, "{e}"),
        }
    }
}

impl Serialize for Dim {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Dim::Fixed(n) => s.serialize_u64(*n),
            Dim::Sym(name) => s.serialize_str(name),
            Dim::Expr(e) => s.serialize_str(&e.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Dim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            I(i64),
            S(String),
            Other(serde_json::Value),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Dim::Fixed(n)),
            Raw::I(i) => Err(serde::de::Error::custom(format!("dimension {i} is negative"))),
            Raw::Other(v) => Err(serde::de::Error::custom(format!(
                "dimension {v} is neither a non-negative integer nor a symbol or dim expression"
            ))),
            Raw::S(s) => Dim::parse(&s).map_err(serde::de::Error::custom),
        }
    }
}

/// A shape: a list of dims, outermost first.
pub type Shape = Vec<Dim>;

/// Builds a shape of known sizes.
pub fn shape_of(dims: &[u64]) -> Shape {
    dims.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// The type of one value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type.
    pub fn new(dtype: DType, shape: Shape) -> Self {
        TensorType { dtype, shape }
    }

    /// Number of elements when every dim is known.
    pub fn numel(&self) -> Option<u64> {
        self.shape.iter().try_fold(1u64, |acc, d| d.fixed().and_then(|n| acc.checked_mul(n)))
    }

    /// Size in bytes when every dim is known.
    pub fn bytes(&self) -> Option<u64> {
        self.numel().and_then(|n| n.checked_mul(self.dtype.size()))
    }

    /// The rank.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.dtype)?;
        for (i, d) in self.shape.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}
