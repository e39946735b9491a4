//! Golden files: every `examples/<name>.yaml` renders to exactly `examples/<name>.rendered.yaml`,
//! lints clean, and renders identically twice. After an intended change, regenerate with
//! `UPDATE_GOLDEN=1 cargo test -p hapress-k8s --test golden` and review the diff.

use std::fs;
use std::path::{Path, PathBuf};

use hapress_k8s::{lint, render, RenderOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(repo().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".yaml") && !n.ends_with(".rendered.yaml")
        })
        .collect();
    v.sort();
    v
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v != "0")
}

/// Writes `actual` when updating; otherwise compares, naming the first differing line.
fn compare(golden: &Path, actual: &str) {
    if updating() {
        fs::write(golden, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(golden)
        .unwrap_or_else(|e| panic!("{}: {e}; create it with UPDATE_GOLDEN=1", golden.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} is stale (first difference at line {}: expected {:?}, got {:?}); if the change is intended, run UPDATE_GOLDEN=1 cargo test -p hapress-k8s --test golden and review the diff",
            golden.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn examples_match_their_golden_files_and_lint_clean() {
    let examples = examples();
    let names: Vec<String> = examples
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for required in ["galera", "minimal", "production", "seeds"] {
        assert!(
            names.iter().any(|n| n == required),
            "examples/{required}.yaml is missing"
        );
    }
    for path in examples {
        let cluster = hapress_spec::load(&path, false).unwrap();
        let manifest = render(&cluster, &RenderOptions::default());
        let findings = lint::lint(&manifest, &cluster);
        assert!(findings.is_empty(), "{}: {findings:#?}", path.display());
        let yaml = manifest.to_yaml().unwrap();
        let again = render(&cluster, &RenderOptions::default())
            .to_yaml()
            .unwrap();
        assert_eq!(
            yaml,
            again,
            "{}: rendering is not deterministic",
            path.display()
        );
        compare(&path.with_extension("rendered.yaml"), &yaml);
    }
}

#[test]
fn crd_file_is_current() {
    compare(
        &repo().join("deploy/crd.yaml"),
        &hapress_k8s::crd::yaml().unwrap(),
    );
}
