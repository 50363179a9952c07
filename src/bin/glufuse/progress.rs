//! Progress on stderr for work that takes seconds to minutes (loading a model, compiling
//! kernels and uploading weights, tuning, the interpreter's pass of `--check`, benchmarks,
//! whole-model runs), drawn with indicatif only when stderr is a terminal: pipes, files and
//! the tests see nothing of it. Bars clear themselves when done, so the results stand alone.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether progress is drawn (stderr is a terminal).
fn shown() -> bool {
    std::io::stderr().is_terminal()
}

/// A spinner saying what is being done, with the time it has taken; hidden when stderr is
/// not a terminal.
pub fn spinner(what: impl Into<String>) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(what.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A bar over `len` steps of `what`; hidden when stderr is not a terminal.
#[cfg(feature = "gpu")]
pub fn bar(len: u64, what: impl Into<String>) -> ProgressBar {
    if !shown() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({elapsed}, {eta} left)") {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what.into());
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// Runs `f` under a [`spinner`] saying `what`, cleared when `f` returns.
pub fn step<T>(what: impl Into<String>, f: impl FnOnce() -> T) -> T {
    let pb = spinner(what);
    let r = f();
    pb.finish_and_clear();
    r
}

/// Loads a graph under a spinner naming the file.
pub fn load(path: &std::path::Path) -> glufuse::Result<glufuse::Graph> {
    load_with(path, &std::collections::HashMap::new())
}

/// [`load`] with graph inputs fixed to values ([`glufuse::load_with`]).
pub fn load_with(
    path: &std::path::Path,
    fixed: &std::collections::HashMap<String, glufuse::tensor::Tensor>,
) -> glufuse::Result<glufuse::Graph> {
    step(format!("loading {}", path.display()), || glufuse::load_with(path, fixed))
}
