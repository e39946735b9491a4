//! Spec loading: defaults, validation messages with field paths, YAML errors with positions.

use hapress_spec::{parse, Cluster, Error, WordPressClusterSpec, EXAMPLE_YAML};

const HEADER: &str = "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\n";

fn invalid(yaml: &str) -> Vec<String> {
    match parse(&format!("{HEADER}{yaml}"), "test.yaml") {
        Err(Error::Invalid { errors, .. }) => errors.iter().map(ToString::to_string).collect(),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn name_only_gives_every_default() {
    let c = parse(&format!("{HEADER}metadata:\n  name: blog\n"), "t").unwrap();
    assert_eq!(c.name, "blog");
    assert_eq!(c.spec, WordPressClusterSpec::default());
    assert_eq!(c.spec.web.replicas, 3);
    assert_eq!(c.spec.database.instances, 3);
    assert!(c.spec.database.semi_sync.enabled);
    assert_eq!(c.embedded_url(), "http://127.0.0.1:8080");
}

#[test]
fn missing_file_uses_name_wordpress() {
    let c = hapress_spec::load(std::path::Path::new("/nonexistent/hapress.yaml"), true).unwrap();
    assert_eq!(c, Cluster::default());
    assert_eq!(c.name, "wordpress");
    let err =
        hapress_spec::load(std::path::Path::new("/nonexistent/hapress.yaml"), false).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read /nonexistent/hapress.yaml"),
        "{err}"
    );
}

#[test]
fn example_file_is_the_defaults() {
    let c = parse(EXAMPLE_YAML, "example").unwrap();
    assert_eq!(c, Cluster::default());
}

#[test]
fn display_round_trips() {
    let mut c = Cluster::default();
    c.spec.web.replicas = 5;
    c.spec
        .database
        .config
        .insert("max_connections".into(), "500".into());
    assert_eq!(parse(&c.to_string(), "x").unwrap(), c);
}

#[test]
fn out_of_range_values_name_the_field_and_the_range() {
    let errs =
        invalid("metadata: {name: blog}\nspec:\n  web:\n    replicas: 0\n    phpWorkers: 1000\n");
    assert_eq!(
        errs,
        vec![
            "spec.web.replicas: must be 1..=64, got 0",
            "spec.web.phpWorkers: must be 1..=256, got 1000"
        ]
    );
    let errs = invalid("metadata: {name: blog}\nspec:\n  router: {poolSize: 10001}\n");
    assert_eq!(
        errs,
        vec!["spec.router.poolSize: must be 0..=10000, got 10001"]
    );
    let errs = invalid(
        "metadata: {name: blog}\nspec:\n  database: {failover: {preferredPrimary: 3}}\n  cache: {page: {ttlSeconds: 0}}\n",
    );
    assert_eq!(
        errs,
        vec![
            "spec.database.failover.preferredPrimary: must name one of the 3 servers (0..=2), got 3",
            "spec.cache.page.ttlSeconds: must be 1..=86400, got 0"
        ]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let errs = invalid(
        "metadata: {name: Bad_Name}\nspec:\n  site: {adminEmail: nope, locale: english, environment: prod}\n  database: {mode: galera, instances: 2, config: {server_id: '9'}}\n  storage: {size: 10GB, storageClass: rwx, nfs: {enabled: true}}\n  autoscaling: {minReplicas: 8, maxReplicas: 4}\n  embedded: {bindAddress: localhost, httpPort: 13307}\n",
    );
    let joined = errs.join("\n");
    for needle in [
        "metadata.name: must be 1..=40 lowercase letters",
        "spec.site.adminEmail: must be an e-mail address, got \"nope\"",
        "spec.site.locale: must look like `en` or `en_US`, got \"english\"",
        "spec.site.environment: must be one of production, staging, development, local, got \"prod\"",
        "spec.database.instances: galera mode needs an odd number >= 3",
        "spec.database.config.server_id: is managed by hapress",
        "spec.storage.size: must be a Kubernetes quantity",
        "spec.storage: set either storageClass",
        "spec.autoscaling: minReplicas (8) must not exceed maxReplicas (4)",
        "spec.embedded.bindAddress: must be an IP address",
        "spec.embedded.httpPort: 13307 collides with the database ports 13306..=13307",
    ] {
        assert!(joined.contains(needle), "missing {needle:?} in:\n{joined}");
    }
}

#[test]
fn burstable_needs_limits_and_guaranteed_forbids_different_ones() {
    let errs = invalid("metadata: {name: b}\nspec:\n  web:\n    resources: {requests: {cpu: 1, memory: 1Gi}, qosClass: Burstable}\n  database:\n    resources: {requests: {cpu: 1, memory: 1Gi}, limits: {cpu: 2, memory: 1Gi}}\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(
        errs[0].starts_with("spec.web.resources.limits: must be set when qosClass is Burstable")
    );
    assert!(errs[1].starts_with("spec.database.resources.limits: must equal requests"));
}

#[test]
fn yaml_syntax_error_has_line_and_column() {
    let err = parse(
        &format!("{HEADER}metadata:\n  name: blog\nspec:\n  web: [unclosed\n"),
        "bad.yaml",
    )
    .unwrap_err();
    match &err {
        Error::Yaml { line, column, .. } => assert!(*line >= 6 && *column >= 1, "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
}

#[test]
fn unknown_field_and_wrong_type_give_path_and_position() {
    let err = parse(
        &format!("{HEADER}metadata:\n  name: blog\nspec:\n  web:\n    replica: 3\n"),
        "f.yaml",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("f.yaml:7:5: spec.web: unknown field `replica`, expected one of"),
        "{msg}"
    );

    let err = parse(
        &format!("{HEADER}metadata:\n  name: blog\nspec:\n  web:\n    replicas: three\n"),
        "f.yaml",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("f.yaml:7:15: spec.web.replicas: invalid type: string \"three\""),
        "{msg}"
    );
}

#[test]
fn wrong_api_version_and_kind() {
    let err = parse("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "k.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("apiVersion: must be hapress.dev/v1alpha1, got \"v1\""),
        "{err}"
    );
    assert!(
        err.contains("kind: must be WordPressCluster, got \"Pod\""),
        "{err}"
    );
}

#[test]
fn crd_has_the_spec_schema() {
    use kube::CustomResourceExt;
    let crd = hapress_spec::WordPressCluster::crd();
    assert_eq!(crd.spec.group, "hapress.dev");
    let json = serde_json::to_string(&crd).unwrap();
    assert!(
        json.contains("phpWorkers") && json.contains("semiSync"),
        "schema lacks spec fields"
    );
}

#[test]
fn hard_anti_affinity_needs_enough_zones() {
    let errs = invalid("metadata: {name: b}\nspec:\n  web: {replicas: 4, antiAffinity: hard, zones: 3}\n  autoscaling: {maxReplicas: 6}\n");
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with("spec.web.antiAffinity: hard anti-affinity allows at most one web pod per node/zone, but replicas (4) exceeds zones (3)"), "{errs:?}");
    assert!(
        errs[1].starts_with(
            "spec.autoscaling.maxReplicas: hard anti-affinity allows at most 3 web pods"
        ),
        "{errs:?}"
    );
    // Unknown zone count (0) cannot be checked; soft never contradicts.
    assert!(parse(
        &format!(
            "{HEADER}metadata: {{name: b}}\nspec:\n  web: {{replicas: 4, antiAffinity: hard}}\n"
        ),
        "t"
    )
    .is_ok());
}
