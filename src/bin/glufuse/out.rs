//! Printing for the commands: standard output through [`outln!`] and [`out!`], standard
//! error through [`errln!`], never a panic.
//!
//! A reader that goes away (`glufuse show MODEL | head -1`) ends nothing early and is no
//! error: what is printed after is dropped, the command finishes its work (files are still
//! written) and exits 0, as most command-line tools do. Loops that only print
//! ([`closed`]) stop. Any other failure to write standard output (`> /dev/full`) is reported
//! at the end, exit code 1. Writes to standard error never fail a command.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static CLOSED: AtomicBool = AtomicBool::new(false);
static FAILED: Mutex<Option<String>> = Mutex::new(None);

/// Whether standard output's reader has gone (what is printed now is dropped).
pub fn closed() -> bool {
    CLOSED.load(Ordering::Relaxed)
}

fn note(r: std::io::Result<()>) {
    match r {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => CLOSED.store(true, Ordering::Relaxed),
        Err(e) => {
            let mut f = FAILED.lock().unwrap_or_else(|p| p.into_inner());
            f.get_or_insert_with(|| e.to_string());
            CLOSED.store(true, Ordering::Relaxed);
        }
    }
}

/// Writes to standard output (see the module documentation).
pub fn print(args: fmt::Arguments) {
    if closed() {
        return;
    }
    note(std::io::stdout().lock().write_fmt(args));
}

/// Writes to standard error, ignoring failure.
pub fn eprint(args: fmt::Arguments) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Flushes standard output; the first failure to write it other than a closed pipe, if any.
pub fn finish() -> Option<String> {
    if !closed() {
        note(std::io::stdout().lock().flush());
    }
    FAILED.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// `println!` to standard output, quiet on a closed pipe.
macro_rules! outln {
    () => { $crate::out::print(format_args!("\n")) };
    ($($t:tt)*) => { $crate::out::print(format_args!("{}\n", format_args!($($t)*))) };
}

/// `print!` to standard output, quiet on a closed pipe.
macro_rules! out {
    ($($t:tt)*) => { $crate::out::print(format_args!($($t)*)) };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($t:tt)*) => { $crate::out::eprint(format_args!("{}\n", format_args!($($t)*))) };
}

pub(crate) use {errln, out, outln};
