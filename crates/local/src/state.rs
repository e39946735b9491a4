//! `state.json`: which cluster a state directory belongs to, which hapress format made it, and
//! which one-time steps have finished. It is what makes `hapress up` resumable and idempotent.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomic;
use crate::layout::Layout;

/// Layout version of state directories this build understands.
pub const FORMAT: u32 = 1;

/// The persistent record of a state directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// State directory layout version.
    pub format: u32,
    /// hapress version that created the directory.
    pub created_by: String,
    /// `metadata.name` of the cluster that owns the directory.
    pub cluster: String,
    /// Number of database servers initialised (changing it needs cloning, not supported yet).
    pub database_instances: u32,
    /// Index of the server currently acting as primary.
    pub primary: u32,
    /// One-time steps that finished (`db-0-initialised`, `replication`, `site-installed`).
    pub done: BTreeSet<String>,
}

impl State {
    /// A fresh record for a new cluster.
    pub fn new(cluster: &str, database_instances: u32) -> Self {
        Self {
            format: FORMAT,
            created_by: env!("CARGO_PKG_VERSION").into(),
            cluster: cluster.into(),
            database_instances,
            primary: 0,
            done: BTreeSet::new(),
        }
    }

    /// Whether a one-time step has finished.
    pub fn is_done(&self, step: &str) -> bool {
        self.done.contains(step)
    }

    /// Records a finished step durably before anything depends on it.
    pub fn mark_done(&mut self, layout: &Layout, step: &str) -> Result<()> {
        self.done.insert(step.into());
        self.save(layout)
    }

    /// Runs one-time step `step` unless it finished before, and records it; true if it ran.
    pub fn once(
        &mut self,
        layout: &Layout,
        step: &str,
        run: impl FnOnce() -> Result<()>,
    ) -> Result<bool> {
        if self.is_done(step) {
            return Ok(false);
        }
        run()?;
        self.mark_done(layout, step)?;
        Ok(true)
    }

    /// Writes the record atomically.
    pub fn save(&self, layout: &Layout) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| std::io::Error::other(e.to_string()))
            .context(|| "serialising state".into())?;
        text.push('\n');
        write_atomic(&layout.state_file(), text.as_bytes(), 0o644)
    }
}

fn refuse(dir: &Path, message: String) -> Error {
    Error::StateDir {
        dir: dir.to_path_buf(),
        message,
    }
}

/// Reads `state.json` if the directory has one, checking it belongs to `cluster` and that this
/// build understands it. A directory with other content but no `state.json` is refused, so
/// hapress never writes into something it did not create.
pub fn load_for(layout: &Layout, cluster: &str, database_instances: u32) -> Result<Option<State>> {
    let dir = &layout.root;
    let text = match fs::read_to_string(layout.state_file()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let non_empty = fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if non_empty {
                return Err(refuse(dir, "is not empty and has no state.json, so it was not made by hapress; refusing to write into it. Choose another --state-dir or empty this one.".into()));
            }
            return Ok(None);
        }
        Err(e) => return Err(e).context(|| format!("reading {}", layout.state_file().display())),
    };
    let state: State = serde_json::from_str(&text).map_err(|e| {
        refuse(dir, format!("state.json is unreadable ({e}); it may come from an incompatible hapress version. Nothing was changed."))
    })?;
    if state.format > FORMAT {
        return Err(refuse(dir, format!(
            "was created by hapress {} with state format {}, newer than this hapress {} understands (format {FORMAT}). Use hapress {} or newer; nothing was changed.",
            state.created_by, state.format, env!("CARGO_PKG_VERSION"), state.created_by
        )));
    }
    if state.cluster != cluster {
        return Err(refuse(dir, format!(
            "belongs to cluster {:?}, but the spec names {cluster:?}. Use `--state-dir` to give {cluster:?} its own directory, or set metadata.name: {} to manage the existing cluster. Nothing was changed.",
            state.cluster, state.cluster
        )));
    }
    if state.database_instances != database_instances {
        return Err(refuse(dir, format!(
            "holds {} database servers but spec.database.instances is {database_instances}; changing the number of servers of an existing cluster is not supported yet. Set spec.database.instances: {} (nothing was changed).",
            state.database_instances, state.database_instances
        )));
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_layout() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path()).unwrap();
        (dir, layout)
    }

    #[test]
    fn empty_dir_is_new_and_state_round_trips() {
        let (_d, layout) = temp_layout();
        assert_eq!(load_for(&layout, "blog", 3).unwrap(), None);
        let mut s = State::new("blog", 3);
        s.mark_done(&layout, "replication").unwrap();
        let loaded = load_for(&layout, "blog", 3).unwrap().unwrap();
        assert!(loaded.is_done("replication"));
        assert_eq!(loaded, s);
    }

    #[test]
    fn foreign_content_other_cluster_and_newer_format_are_refused() {
        let (_d, layout) = temp_layout();
        fs::write(layout.root.join("precious.txt"), "x").unwrap();
        let e = load_for(&layout, "blog", 3).unwrap_err().to_string();
        assert!(e.contains("has no state.json"), "{e}");

        let (_d, layout) = temp_layout();
        State::new("shop", 3).save(&layout).unwrap();
        let e = load_for(&layout, "blog", 3).unwrap_err().to_string();
        assert!(
            e.contains("belongs to cluster \"shop\", but the spec names \"blog\""),
            "{e}"
        );
        let e = load_for(&layout, "shop", 5).unwrap_err().to_string();
        assert!(e.contains("holds 3 database servers"), "{e}");

        let mut s = State::new("blog", 3);
        s.format = FORMAT + 1;
        s.created_by = "9.0.0".into();
        s.save(&layout).unwrap();
        let e = load_for(&layout, "blog", 3).unwrap_err().to_string();
        assert!(e.contains("newer than this hapress"), "{e}");
    }
}
