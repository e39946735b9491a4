//! `hapress render` end to end: every example's output is accepted by `kubernetes-validate
//! --strict` (Kubernetes 1.30 and the newest schema it ships) and by `checkov` with zero failed
//! checks; `--out-dir` is atomic; bad input writes nothing. The Python tools come from
//! `scripts/setup.sh --test`; a missing tool fails the test, never skips it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hapress(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hapress"))
        .args(args)
        .output()
        .expect("run hapress")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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
    assert!(v.len() >= 4, "examples/ should hold at least 4 specs");
    v
}

/// Renders `example` into a temporary file.
fn rendered(example: &Path, dir: &Path) -> PathBuf {
    let o = hapress(&["render", "-f", example.to_str().unwrap()]);
    assert!(o.status.success(), "{}: {}", example.display(), stderr(&o));
    let out = dir.join(example.file_name().unwrap());
    fs::write(&out, &o.stdout).unwrap();
    out
}

/// Runs a test tool, failing with the setup hint when it is not installed.
fn tool(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program} ({e}): install the test tools with `scripts/setup.sh --test`"
            )
        })
}

#[test]
fn examples_pass_kubernetes_validate_strict() {
    let dir = tempfile::tempdir().unwrap();
    for example in examples() {
        let file = rendered(&example, dir.path());
        // 1.30: the oldest release we support; the default is the newest schema it ships.
        for version in [Some("1.30.0"), None] {
            let mut args = vec!["--strict", "--quiet"];
            if let Some(v) = version {
                args.extend(["-k", v]);
            }
            args.push(file.to_str().unwrap());
            let o = tool("kubernetes-validate", &args);
            assert!(
                o.status.success(),
                "kubernetes-validate {args:?} rejected {}:\n{}{}",
                example.display(),
                stdout(&o),
                stderr(&o)
            );
        }
    }
    let o = tool(
        "kubernetes-validate",
        &[
            "--strict",
            "--quiet",
            repo().join("deploy/crd.yaml").to_str().unwrap(),
        ],
    );
    assert!(
        o.status.success(),
        "deploy/crd.yaml: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn examples_pass_checkov_with_reasoned_skips_only() {
    let dir = tempfile::tempdir().unwrap();
    for example in examples() {
        let file = rendered(&example, dir.path());
        let o = tool(
            "checkov",
            &[
                "-f",
                file.to_str().unwrap(),
                "--framework",
                "kubernetes",
                "-o",
                "json",
            ],
        );
        let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "checkov printed no JSON report ({e}):\n{}{}",
                stdout(&o),
                stderr(&o)
            )
        });
        let summary = &report["summary"];
        let failed: Vec<String> = report["results"]["failed_checks"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} ({})", c["check_id"], c["resource"], c["check_name"]))
            .collect();
        eprintln!(
            "checkov {}: passed {}, failed {}, skipped {}",
            example.display(),
            summary["passed"],
            summary["failed"],
            summary["skipped"]
        );
        assert_eq!(summary["failed"], 0, "{}: {failed:#?}", example.display());
        assert_eq!(summary["parsing_errors"], 0, "{}", example.display());
        assert!(summary["passed"].as_u64().unwrap() > 150, "{summary}");
        for skip in report["results"]["skipped_checks"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let reason = skip["check_result"]["suppress_comment"]
                .as_str()
                .unwrap_or("");
            assert!(
                reason.len() > 20,
                "{} on {} is skipped without a real reason: {reason:?}",
                skip["check_id"],
                skip["resource"]
            );
        }
    }
}

#[test]
fn output_is_deterministic_and_checks_pass() {
    for example in examples() {
        let f = example.to_str().unwrap();
        let a = hapress(&["render", "-f", f]);
        let b = hapress(&["render", "-f", f]);
        assert!(a.status.success(), "{}", stderr(&a));
        assert!(a.stdout == b.stdout, "{f}: two renders differ");
        let golden = fs::read(example.with_extension("rendered.yaml")).unwrap();
        // Not assert_eq!: a mismatch would print both manifests as byte arrays.
        assert!(
            a.stdout == golden,
            "{f}: differs from its golden file (UPDATE_GOLDEN=1 cargo test -p hapress-k8s --test golden)"
        );
        let check = hapress(&["render", "-f", f, "--check"]);
        assert!(
            check.status.success(),
            "{f}: {}{}",
            stdout(&check),
            stderr(&check)
        );
        assert!(
            stdout(&check).contains("8 checks passed"),
            "{}",
            stdout(&check)
        );
    }
}

#[test]
fn out_dir_has_one_file_per_object_and_is_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("manifests");
    let spec = repo().join("examples/production.yaml");
    let o = hapress(&[
        "render",
        "-f",
        spec.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut files: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(
        files.contains(&"00-namespace-blog-prod.yaml".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"09-statefulset-blog-db.yaml".to_string()),
        "{files:?}"
    );
    assert!(
        files.contains(&"14-ingress-blog.yaml".to_string()),
        "{files:?}"
    );
    assert!(files.contains(&"README.txt".to_string()));
    let yaml_files = files.iter().filter(|f| f.ends_with(".yaml")).count();
    let stdout_docs = stdout(&hapress(&["render", "-f", spec.to_str().unwrap()]))
        .matches("---\n")
        .count();
    assert_eq!(yaml_files, stdout_docs, "one file per object");

    // Re-rendering a smaller spec replaces the directory: no stale files survive.
    let minimal = repo().join("examples/galera.yaml");
    let o = hapress(&[
        "render",
        "-f",
        minimal.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!out.join("09-statefulset-blog-db.yaml").exists());
    assert!(out.join("09-statefulset-shop-db.yaml").exists());
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "manifests")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary directories left: {leftovers:?}"
    );

    // A directory hapress did not write is never replaced.
    let foreign = dir.path().join("mine");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "keep").unwrap();
    let o = hapress(&[
        "render",
        "-f",
        minimal.to_str().unwrap(),
        "--out-dir",
        foreign.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("was not written by `hapress render`"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "keep"
    );
}

fn bad_spec(dir: &Path, spec: &str) -> (Output, PathBuf) {
    let file = dir.join("bad.yaml");
    fs::write(
        &file,
        format!("apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {{name: site}}\nspec:\n{spec}"),
    )
    .unwrap();
    let out = dir.join("out");
    let o = hapress(&[
        "render",
        "-f",
        file.to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    (o, out)
}

#[test]
fn invalid_spec_names_the_field_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = bad_spec(
        dir.path(),
        "  database: {mode: galera, instances: 2}\n  ingress: {serviceType: NodePort}\n",
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("unknown variant `NodePort`, expected `ClusterIP` or `LoadBalancer`"),
        "{err}"
    );
    assert!(!out.exists());
    let (o, out) = bad_spec(dir.path(), "  database: {mode: galera, instances: 2}\n");
    assert!(
        stderr(&o).contains("spec.database.instances: galera mode needs an odd number >= 3"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    let entries = fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(entries, 1, "only the spec file exists");
}

#[test]
fn contradictory_options_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (o, out) = bad_spec(
        dir.path(),
        "  web: {replicas: 5, antiAffinity: hard, zones: 3}\n  autoscaling: {enabled: false}\n",
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("spec.web.antiAffinity: hard anti-affinity allows at most one web pod per node/zone, but replicas (5) exceeds zones (3)"), "{}", stderr(&o));
    assert!(!out.exists());
    let (o, out) = bad_spec(
        dir.path(),
        "  storage: {storageClass: cephfs, nfs: {enabled: true}}\n",
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("spec.storage: set either storageClass (a ReadWriteMany class) or nfs.enabled, not both"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn crd_flag_prints_the_checked_in_crd() {
    let o = hapress(&["render", "--crd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let checked_in = fs::read(repo().join("deploy/crd.yaml")).unwrap();
    assert_eq!(
        o.stdout, checked_in,
        "deploy/crd.yaml is stale: hapress render --crd > deploy/crd.yaml"
    );
}

#[test]
fn generate_secrets_renders_random_secrets() {
    let spec = repo().join("examples/minimal.yaml");
    let a = stdout(&hapress(&[
        "render",
        "-f",
        spec.to_str().unwrap(),
        "--generate-secrets",
    ]));
    let b = stdout(&hapress(&[
        "render",
        "-f",
        spec.to_str().unwrap(),
        "--generate-secrets",
    ]));
    // Database passwords, WordPress keys, Redis's password, the page cache's purge key.
    assert_eq!(a.matches("kind: Secret").count(), 4);
    assert!(
        a.contains("root-password:") && a.contains("redis-password:") && a.contains("purge-key:")
    );
    assert_ne!(a, b, "passwords must be random");
    assert!(!a.contains("create secret generic"));
}

/// The router sidecar's config is one `hapress router` accepts: parsed and checked by the
/// router's own `Config`, one backend per database server, the password only as a file path.
#[test]
fn router_config_is_accepted_by_the_router() {
    for example in examples() {
        let cluster = hapress_spec::load(&example, false).unwrap();
        let m = hapress_k8s::render(&cluster, &hapress_k8s::RenderOptions::default());
        let text = m.objects.iter().find_map(|o| match o {
            hapress_k8s::Object::ConfigMap(c) if o.name().ends_with("-router-config") => {
                c.data.as_ref()?.get("router.yaml").cloned()
            }
            _ => None,
        });
        let Some(text) = text else {
            assert!(
                !hapress_k8s::router::enabled(&cluster),
                "{}: router enabled but no config",
                example.display()
            );
            continue;
        };
        let config: hapress_router::config::Config = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: {e}\n{text}", example.display()));
        config.check().unwrap();
        assert_eq!(config.listen, "127.0.0.1:3306");
        assert_eq!(
            config.backends.len(),
            cluster.spec.database.instances as usize,
            "{}",
            example.display()
        );
        assert_eq!(config.monitor_user, "hapress_router");
        assert_eq!(
            config.max_replication_lag,
            u64::from(cluster.spec.router.max_replication_lag_seconds)
        );
        assert_eq!(config.status_listen.as_deref(), Some("0.0.0.0:9104"));
        assert!(config
            .monitor_password_file
            .starts_with("/run/secrets/router"));
    }
}
