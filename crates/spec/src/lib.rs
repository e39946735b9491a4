//! The `WordPressCluster` spec shared by every hapress runtime: the types (which double as the
//! Kubernetes CRD), their defaults, loading from `hapress.yaml` and validation with field paths.
//!
//! # Layout
//! - [`types`]: the spec structs and their defaults; `WordPressCluster` is the CRD.
//! - [`validate`]: field-by-field checks returning every problem with its path.
//! - [`router`]: the SQL router's config made from the spec, for both runtimes.
//! - this file: reading a `hapress.yaml` document into a [`Cluster`].

pub mod router;
pub mod types;
pub mod validate;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use router::RouterPlacement;
pub use types::*;
pub use validate::{validate_spec, FieldError};

/// `apiVersion` of the spec documents and of the CRD.
pub const API_VERSION: &str = "hapress.dev/v1alpha1";
/// `kind` of the spec documents and of the CRD.
pub const KIND: &str = "WordPressCluster";
/// Cluster name used when no spec file exists.
pub const DEFAULT_NAME: &str = "wordpress";
/// A commented spec with every field at its default, written by `hapress init`.
pub const EXAMPLE_YAML: &str = include_str!("example.yaml");

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not YAML, or a field has the wrong type or name.
    #[error("{source_name}:{line}:{column}: {message}")]
    Yaml {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// Well-formed, but some fields hold values that are not allowed.
    #[error("invalid spec in {source_name}:\n{}", .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        source_name: String,
        errors: Vec<FieldError>,
    },
}

/// Crate result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A validated cluster: its name and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// `metadata.name`: prefixes every object and names the state directory's cluster.
    pub name: String,
    /// `metadata.namespace`, if the file gives one.
    pub namespace: Option<String>,
    /// The desired state.
    pub spec: WordPressClusterSpec,
}

impl Default for Cluster {
    fn default() -> Self {
        Self {
            name: DEFAULT_NAME.into(),
            namespace: None,
            spec: WordPressClusterSpec::default(),
        }
    }
}

impl Cluster {
    /// The custom resource for this cluster.
    pub fn to_resource(&self) -> WordPressCluster {
        let mut wpc = WordPressCluster::new(&self.name, self.spec.clone());
        wpc.metadata.namespace.clone_from(&self.namespace);
        wpc
    }

    /// The site URL: `spec.site.url` or the embedded runtime's loopback address.
    pub fn embedded_url(&self) -> String {
        self.spec.site.url.clone().unwrap_or_else(|| {
            let e = &self.spec.embedded;
            let host = if e.bind_address.contains(':') {
                format!("[{}]", e.bind_address)
            } else {
                e.bind_address.clone()
            };
            format!("http://{host}:{}", e.http_port)
        })
    }
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Document {
    api_version: String,
    kind: String,
    metadata: Metadata,
    #[serde(default)]
    spec: WordPressClusterSpec,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Option<serde_yaml::Mapping>,
    #[serde(default)]
    annotations: Option<serde_yaml::Mapping>,
}

/// Parses and validates a spec document; `source_name` is used in messages.
pub fn parse(text: &str, source_name: &str) -> Result<Cluster> {
    let doc: Document = serde_yaml::from_str(text).map_err(|e| {
        let (line, column) = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        // serde_yaml appends " at line L column C"; we print the location up front instead.
        let message = e.to_string();
        let message = message
            .split(" at line ")
            .next()
            .unwrap_or(&message)
            .to_string();
        Error::Yaml {
            source_name: source_name.into(),
            line,
            column,
            message,
        }
    })?;
    let mut errors = Vec::new();
    if doc.api_version != API_VERSION {
        errors.push(FieldError {
            path: "apiVersion".into(),
            message: format!("must be {API_VERSION}, got {:?}", doc.api_version),
        });
    }
    if doc.kind != KIND {
        errors.push(FieldError {
            path: "kind".into(),
            message: format!("must be {KIND}, got {:?}", doc.kind),
        });
    }
    errors.extend(validate::validate_name(&doc.metadata.name));
    errors.extend(validate_spec(&doc.spec));
    if !errors.is_empty() {
        return Err(Error::Invalid {
            source_name: source_name.into(),
            errors,
        });
    }
    Ok(Cluster {
        name: doc.metadata.name,
        namespace: doc.metadata.namespace,
        spec: doc.spec,
    })
}

/// Loads `path`; a missing file yields the default cluster only when `allow_missing` is set.
pub fn load(path: &Path, allow_missing: bool) -> Result<Cluster> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&text, &path.display().to_string()),
        Err(e) if allow_missing && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(Cluster::default())
        }
        Err(source) => Err(Error::Read {
            path: path.display().to_string(),
            source,
        }),
    }
}

impl fmt::Display for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let doc = Document {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            metadata: Metadata {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                labels: None,
                annotations: None,
            },
            spec: self.spec.clone(),
        };
        let text = serde_yaml::to_string(&doc).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}
