//! The resource budget: how much glufuse allocates for one tensor, one graph's weights and
//! constants, and one file it reads, checked *before* anything is allocated, with every
//! element count and byte size computed with checked arithmetic through the helpers here.
//!
//! | limit | default | environment variable |
//! | --- | --- | --- |
//! | bytes of one tensor (in its dtype: f16 2, i64 8, bool 1 per element) | 8 GiB | `GLUFUSE_MAX_TENSOR_BYTES` |
//! | bytes of all weights and constants of a graph | 256 GiB | `GLUFUSE_MAX_GRAPH_BYTES` |
//! | bytes of one file read whole (a graph, an `.npy`) | 16 GiB | `GLUFUSE_MAX_FILE_BYTES` |
//! | rank of a tensor | 64 | `GLUFUSE_MAX_RANK` |
//! | entries of one list: a node's inputs or outputs, an ONNX attribute's values | 1048576 | `GLUFUSE_MAX_LIST_LEN` |
//!
//! A 70B-parameter model in f16 (140 GB of weights, its largest tensor an embedding table of
//! about 2 GB) fits the defaults. Sizes in the variables are bytes, or a number with a binary
//! suffix (`512MiB`, `64G`, `1TiB`; `K`, `M`, `G`, `T`, with or without `iB`/`B`).
//!
//! The budget in force is [`current`]: the one [`with`] set on this thread, else the
//! process's ([`set_global`]), else the environment's (read on first use; a variable that
//! does not parse leaves that limit at its default, and [`Budget::from_env`] reports it).

use crate::types::{DType, Dim, TensorType};
use std::cell::Cell;
use std::sync::{OnceLock, RwLock};

/// Limits on what glufuse allocates and reads (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Largest tensor, in bytes of its dtype.
    pub max_tensor_bytes: u64,
    /// All weights and constants of one graph together, in bytes of their dtypes.
    pub max_graph_bytes: u64,
    /// Largest file read whole (a graph file, an `.npy`); external data is bounded per tensor.
    pub max_file_bytes: u64,
    /// Largest rank of a tensor.
    pub max_rank: u64,
    /// Longest list: a node's inputs or outputs, the values of an ONNX attribute.
    pub max_list_len: u64,
}

const GIB: u64 = 1 << 30;

impl Default for Budget {
    fn default() -> Self {
        Budget::DEFAULT
    }
}

/// The field of a budget an environment variable sets.
type Field = fn(&mut Budget) -> &mut u64;

/// The environment variables, each with the field it sets.
const VARS: [(&str, Field); 5] = [
    ("GLUFUSE_MAX_TENSOR_BYTES", |b| &mut b.max_tensor_bytes),
    ("GLUFUSE_MAX_GRAPH_BYTES", |b| &mut b.max_graph_bytes),
    ("GLUFUSE_MAX_FILE_BYTES", |b| &mut b.max_file_bytes),
    ("GLUFUSE_MAX_RANK", |b| &mut b.max_rank),
    ("GLUFUSE_MAX_LIST_LEN", |b| &mut b.max_list_len),
];

impl Budget {
    /// The defaults (see the module documentation).
    pub const DEFAULT: Budget = Budget {
        max_tensor_bytes: 8 * GIB,
        max_graph_bytes: 256 * GIB,
        max_file_bytes: 16 * GIB,
        max_rank: 64,
        max_list_len: 1 << 20,
    };

    /// The defaults, overridden by the `GLUFUSE_MAX_*` environment variables that are set;
    /// an error names a variable whose value is not a size.
    pub fn from_env() -> Result<Budget, String> {
        let mut b = Budget::DEFAULT;
        for (var, field) in VARS {
            if let Some(v) = std::env::var_os(var) {
                let text = v.to_string_lossy();
                *field(&mut b) = parse_size(&text).map_err(|m| format!("{var}={text:?}: {m}"))?;
            }
        }
        Ok(b)
    }

    /// Checks a tensor of `dtype` and concrete `shape` against the per-tensor budget: an
    /// element count or byte size that overflows says so, a rank or a size past the budget
    /// names the limit and its variable.
    pub fn check_tensor(&self, dtype: DType, shape: &[usize]) -> Result<(), String> {
        self.check_rank(shape.len())?;
        let bytes = tensor_bytes(dtype, shape)?;
        self.check_tensor_bytes(bytes, &|| format!("{dtype}{shape:?}"))
    }

    /// Checks a tensor type: its rank, and its size where every dim is known (a symbolic one
    /// is checked when a run binds it).
    pub fn check_type(&self, t: &TensorType) -> Result<(), String> {
        self.check_rank(t.rank())?;
        let mut n: u64 = 1;
        for d in &t.shape {
            if let Dim::Fixed(k) = d {
                n = n.checked_mul(*k).ok_or_else(|| overflow(&t.to_string()))?;
            }
        }
        if t.shape.iter().all(|d| d.fixed().is_some()) {
            let bytes = n.checked_mul(t.dtype.size()).ok_or_else(|| overflow(&t.to_string()))?;
            self.check_tensor_bytes(bytes, &|| t.to_string())?;
        }
        Ok(())
    }

    fn check_rank(&self, rank: usize) -> Result<(), String> {
        if rank as u64 > self.max_rank {
            return Err(format!("rank {rank} is past the limit of {} (GLUFUSE_MAX_RANK raises it)", self.max_rank));
        }
        Ok(())
    }

    fn check_tensor_bytes(&self, bytes: u64, what: &dyn Fn() -> String) -> Result<(), String> {
        if bytes > self.max_tensor_bytes {
            return Err(format!(
                "{} takes {}, more than the per-tensor budget of {} (GLUFUSE_MAX_TENSOR_BYTES raises it)",
                what(),
                show_bytes(bytes),
                show_bytes(self.max_tensor_bytes)
            ));
        }
        Ok(())
    }

    /// Checks the bytes of all weights and constants of a graph against the per-graph budget.
    pub fn check_graph_bytes(&self, bytes: u64) -> Result<(), String> {
        if bytes > self.max_graph_bytes {
            return Err(format!(
                "the graph's weights and constants take {}, more than the per-graph budget of {} (GLUFUSE_MAX_GRAPH_BYTES raises it)",
                show_bytes(bytes),
                show_bytes(self.max_graph_bytes)
            ));
        }
        Ok(())
    }

    /// Checks the size of a file about to be read whole.
    pub fn check_file_bytes(&self, bytes: u64) -> Result<(), String> {
        if bytes > self.max_file_bytes {
            return Err(format!(
                "the file holds {}, more than the budget of {} for a file read whole (GLUFUSE_MAX_FILE_BYTES raises it)",
                show_bytes(bytes),
                show_bytes(self.max_file_bytes)
            ));
        }
        Ok(())
    }

    /// Checks the length of a list (`what` says which).
    pub fn check_list(&self, what: &str, len: usize) -> Result<(), String> {
        if len as u64 > self.max_list_len {
            return Err(format!(
                "{what} has {len} entries, more than the limit of {} (GLUFUSE_MAX_LIST_LEN raises it)",
                self.max_list_len
            ));
        }
        Ok(())
    }
}

fn overflow(what: &str) -> String {
    format!("{what} holds more elements than can be counted (its size overflows)")
}

/// The number of elements of a concrete shape; an error saying so when it overflows.
pub fn numel(shape: &[usize]) -> Result<usize, String> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| overflow(&format!("shape {shape:?}")))
}

/// The bytes of a tensor of `dtype` and concrete `shape` (in its dtype's size); an error
/// saying so when the count overflows.
pub fn tensor_bytes(dtype: DType, shape: &[usize]) -> Result<u64, String> {
    let n = numel(shape)?;
    (n as u64).checked_mul(dtype.size()).ok_or_else(|| overflow(&format!("{dtype}{shape:?}")))
}

/// A byte count for people: `16 GiB`, `1.5 MiB`, `300 bytes`.
pub fn show_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (u, size) in UNITS {
        if b >= size {
            let x = b as f64 / size as f64;
            return if b % size == 0 { format!("{} {u}", b / size) } else { format!("{x:.1} {u}") };
        }
    }
    format!("{b} bytes")
}

/// Parses a size: a number of bytes, or a number with a binary suffix (`K`, `M`, `G`, `T`,
/// optionally followed by `iB` or `B`: `512MiB`, `64G`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| "not a size (a number of bytes, or one like 512MiB or 64G)".to_string())?;
    let unit = unit.trim().to_ascii_lowercase();
    let shift = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("unknown unit {unit:?} (K, M, G or T, optionally with iB)")),
    };
    n.checked_mul(1u64 << shift).ok_or_else(|| "too large".to_string())
}

static GLOBAL: RwLock<Option<Budget>> = RwLock::new(None);
static FROM_ENV: OnceLock<Budget> = OnceLock::new();

thread_local! {
    static SCOPED: Cell<Option<Budget>> = const { Cell::new(None) };
}

/// The budget in force on this thread (see the module documentation).
pub fn current() -> Budget {
    if let Some(b) = SCOPED.with(Cell::get) {
        return b;
    }
    if let Some(b) = *GLOBAL.read().unwrap_or_else(|e| e.into_inner()) {
        return b;
    }
    *FROM_ENV.get_or_init(|| {
        let mut b = Budget::DEFAULT;
        for (var, field) in VARS {
            if let Some(n) = std::env::var(var).ok().and_then(|v| parse_size(&v).ok()) {
                *field(&mut b) = n;
            }
        }
        b
    })
}

/// Sets the budget for the whole process (threads inside [`with`] keep theirs).
pub fn set_global(b: Budget) {
    *GLOBAL.write().unwrap_or_else(|e| e.into_inner()) = Some(b);
}

/// Runs `f` with `b` as this thread's budget, then restores the one before.
pub fn with<R>(b: Budget, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Budget>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SCOPED.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(SCOPED.with(|s| s.replace(Some(b))));
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64G"), Ok(64 << 30));
        assert_eq!(parse_size("2 tb"), Ok(2 << 40));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999T").unwrap_err().contains("too large"));
        assert_eq!(show_bytes(16 << 30), "16 GiB");
        assert_eq!(Budget::DEFAULT.max_tensor_bytes, 8 << 30);
        assert_eq!(show_bytes(3 << 19), "1.5 MiB");
        assert_eq!(show_bytes(300), "300 bytes");
    }

    #[test]
    fn checks_count_with_checked_arithmetic_and_name_the_limit() {
        let b = Budget { max_tensor_bytes: 1 << 20, ..Budget::DEFAULT };
        assert!(b.check_tensor(DType::F32, &[512, 512]).is_ok());
        let e = b.check_tensor(DType::F32, &[1024, 512]).unwrap_err();
        assert_eq!(
            e,
            "f32[1024, 512] takes 2 MiB, more than the per-tensor budget of 1 MiB (GLUFUSE_MAX_TENSOR_BYTES raises it)"
        );
        let e = b.check_tensor(DType::F32, &[usize::MAX, 2]).unwrap_err();
        assert!(e.contains("overflows"), "{e}");
        let t = TensorType::new(DType::F16, crate::shape_of(&[u64::MAX, 4]));
        assert!(b.check_type(&t).unwrap_err().contains("overflows"));
        // A symbolic dim is checked when bound; the rank always.
        let t = TensorType::new(DType::F16, vec![Dim::sym("n"), Dim::Fixed(1 << 40)]);
        assert!(b.check_type(&t).is_ok());
        let t = TensorType::new(DType::F16, vec![Dim::Fixed(1); 65]);
        assert!(b.check_type(&t).unwrap_err().starts_with("rank 65 is past the limit of 64"));
    }

    #[test]
    fn a_scoped_budget_is_this_threads_until_the_scope_ends() {
        let small = Budget { max_rank: 2, ..Budget::DEFAULT };
        let inner = with(small, || {
            let nested = with(Budget::DEFAULT, current);
            (current(), nested)
        });
        assert_eq!(inner, (small, Budget::DEFAULT));
        assert_ne!(current().max_rank, 2);
    }
}
