//! The embedded runtime's error type: every message says what failed and how to fix it.

use std::path::PathBuf;

/// What can go wrong while running a cluster on this machine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The spec file is missing, malformed or invalid.
    #[error(transparent)]
    Spec(#[from] hapress_spec::Error),
    /// A filesystem or process operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// Debian packages the runtime needs are not installed.
    #[error("missing programs: {}\ninstall them with:\n  {apt_line}", missing.join(", "))]
    MissingPackages {
        missing: Vec<String>,
        apt_line: String,
    },
    /// A port hapress needs is taken by another program.
    #[error("port {port} ({component}) is already in use by another program on {address}.\nStop that program, or choose another port: set {field} in the spec or pass {flag}")]
    PortInUse {
        port: u16,
        address: String,
        component: String,
        field: String,
        flag: String,
    },
    /// The state directory belongs to something else or cannot be used as is.
    #[error("state directory {}: {message}", dir.display())]
    StateDir { dir: PathBuf, message: String },
    /// Another supervisor owns the state directory.
    #[error("hapress is already running for {} (supervisor pid {pid}); see `hapress status` or stop it with `hapress down`", dir.display())]
    Busy { dir: PathBuf, pid: String },
    /// A startup step failed; the message names the log to read.
    #[error("{step} failed: {message}")]
    Step { step: String, message: String },
    /// Ctrl-C or SIGTERM arrived before startup finished.
    #[error("interrupted; run `hapress up` again to finish (nothing initialised is lost)")]
    Interrupted,
}

/// Crate result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a description of what was being done to an I/O error.
pub trait IoContext<T> {
    /// Wraps the error with `context`.
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: context(),
            source,
        })
    }
}

/// Builds an [`Error::Step`].
pub fn step_error(step: &str, message: impl Into<String>) -> Error {
    Error::Step {
        step: step.into(),
        message: message.into(),
    }
}
