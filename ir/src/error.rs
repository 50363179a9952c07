//! The one error type of the crate. Every variant says what is wrong and names the node or
//! file it concerns; [`Error::exit_code`] maps it to the CLI's exit codes (2 bad input, 1 the
//! job failed).

use std::path::{Path, PathBuf};

/// An error from loading, checking, transforming or running a graph.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something about one node of a graph is wrong (bad input).
    #[error("node '{}': {msg}", crate::dump::printable(node))]
    Graph {
        /// The node's name in the model.
        node: String,
        /// What is wrong.
        msg: String,
    },
    /// An input file or argument is malformed (bad input).
    #[error("{0}")]
    Input(String),
    /// An error that concerns a file; the inner error says what.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong with it.
        #[source]
        source: Box<Error>,
    },
    /// An output could not be written (the job failed).
    #[error("cannot write {}: {msg}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        msg: String,
    },
    /// The GPU could not run the job (no adapter, device lost, out of memory, limits).
    #[error("GPU: {0}")]
    Gpu(String),
    /// The job ran but failed (a check out of tolerance, say).
    #[error("{0}")]
    Job(String),
    /// A broken invariant inside glufuse: a bug, not bad input.
    #[error("internal error (a glufuse bug, please report it): {0}")]
    Internal(String),
}

impl Error {
    /// An error about a node.
    pub fn graph(node: &str, msg: impl Into<String>) -> Self {
        Error::Graph { node: node.to_string(), msg: msg.into() }
    }

    /// Bad input that concerns no single node.
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }

    /// Attaches the file this error concerns.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            e @ (Error::File { .. } | Error::Write { .. }) => e,
            e => Error::File { path: path.to_path_buf(), source: Box::new(e) },
        }
    }

    /// The CLI exit code: 2 for bad input, 1 when the job itself failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Graph { .. } | Error::Input(_) => 2,
            Error::File { source, .. } => source.exit_code(),
            Error::Write { .. } | Error::Gpu(_) | Error::Job(_) | Error::Internal(_) => 1,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
