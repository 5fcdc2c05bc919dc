//! The one error type of this crate.
//!
//! Loading and importing static data are the only fallible operations; lookups return `Option`
//! and valuation never fails (unknown prices are counted, not raised).

use std::path::PathBuf;

/// Why a bundle or an SDE export could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("io error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the format requires is absent.
    #[error("missing required file {0}")]
    MissingFile(String),
    /// The bundle's header or manifest does not match the format this code reads.
    #[error("unsupported bundle format in {file}: {detail}")]
    Format { file: String, detail: String },
    /// A JSON document (manifest, ESI prices) could not be parsed.
    #[error("invalid json in {file}: {source}")]
    Json {
        file: String,
        #[source]
        source: serde_json::Error,
    },
    /// The zip archive is damaged or uses a feature this reader does not support.
    #[error("unsupported or damaged zip archive {path}: {detail}")]
    Zip { path: PathBuf, detail: String },
    /// The path is neither a bundle, an official SDE (zip or directory) nor the CSV layout.
    #[error("unrecognised static data layout at {0}")]
    UnknownLayout(PathBuf),
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(file: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Format {
            file: file.into(),
            detail: detail.into(),
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
