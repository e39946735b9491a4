//! What the rendered objects promise, checked on the typed values.

use hapress_k8s::{render, Object, RenderOptions};
use hapress_spec::{parse, Cluster, DatabaseMode};

fn yaml(spec: &str) -> String {
    let c = parse(
        &format!("apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {{name: site}}\n{spec}"),
        "t",
    )
    .unwrap();
    render(&c, &RenderOptions::default()).to_yaml().unwrap()
}

#[test]
fn objects_come_in_apply_order_with_prefixed_names_and_labels() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    let ranks: Vec<u8> = m.objects.iter().map(Object::rank).collect();
    let mut sorted = ranks.clone();
    sorted.sort_unstable();
    assert_eq!(ranks, sorted);
    assert_eq!(m.objects[0].kind(), "Namespace");
    assert_eq!(m.objects.last().unwrap().kind(), "Ingress");
    for o in &m.objects {
        assert!(o.name().starts_with("wordpress"), "{}", o.id());
        let labels = o.metadata().labels.as_ref().unwrap();
        assert_eq!(
            labels["app.kubernetes.io/instance"],
            "wordpress",
            "{}",
            o.id()
        );
        assert_eq!(
            labels["app.kubernetes.io/managed-by"],
            "hapress",
            "{}",
            o.id()
        );
    }
}

#[test]
fn no_secret_values_without_generate_secrets() {
    let m = render(&Cluster::default(), &RenderOptions::default());
    assert!(m.objects.iter().all(|o| o.kind() != "Secret"));
    let out = m.to_yaml().unwrap();
    assert!(!out.contains("PASSWORD:"), "no inline passwords");
    assert!(out.contains("MARIADB_ROOT_PASSWORD_FILE"));
    assert!(out.contains("kubectl -n wordpress create secret generic wordpress-db-credentials"));
    let g = render(
        &Cluster::default(),
        &RenderOptions {
            generate_secrets: true,
        },
    );
    assert_eq!(g.objects.iter().filter(|o| o.kind() == "Secret").count(), 2);
    assert!(g.secret_commands.is_empty());
}

#[test]
fn zero_downtime_rollout_settings() {
    let out = yaml("");
    for needle in [
        "maxSurge: 1",
        "maxUnavailable: 0",
        "- sleep\n              - '20'",
        "terminationGracePeriodSeconds: 60",
        "path: /wp-login.php",
        "podManagementPolicy: OrderedReady",
        "hapress.dev/role: primary",
        "hapress.dev/role: replica",
        "automountServiceAccountToken: false",
        "readOnlyRootFilesystem: true",
        "type: RuntimeDefault",
    ] {
        assert!(out.contains(needle), "missing {needle:?}");
    }
}

#[test]
fn autoscaler_owns_the_replica_count() {
    let with = yaml("spec: {web: {replicas: 5}}");
    assert!(!with.contains("replicas: 5"));
    let without = yaml("spec: {web: {replicas: 5}, autoscaling: {enabled: false}}");
    assert!(without.contains("replicas: 5"));
    assert!(!without.contains("HorizontalPodAutoscaler"));
}

#[test]
fn hard_anti_affinity_and_tls_toggle() {
    let out = yaml("spec: {web: {antiAffinity: hard}, ingress: {tls: {enabled: false}}}");
    assert!(out.contains("requiredDuringSchedulingIgnoredDuringExecution"));
    assert!(!out.contains("cert-manager.io/cluster-issuer"));
    assert!(!out.contains("ssl-redirect"));
}

#[test]
fn galera_mode_renders_a_parallel_cluster_without_role_services() {
    let mut c = Cluster::default();
    c.spec.database.mode = DatabaseMode::Galera;
    let out = render(&c, &RenderOptions::default()).to_yaml().unwrap();
    assert!(out.contains("podManagementPolicy: Parallel"));
    assert!(out.contains("/config/galera-start.sh"));
    assert!(out.contains("wordpress-db-nodes"));
    assert!(!out.contains("wordpress-db-primary"));
    assert!(!out.contains("kind: Role\n"));
    assert!(out.contains("name: galera\n"));
}

#[test]
fn nfs_mode_renders_server_volume_and_claim() {
    let out = yaml("spec: {storage: {nfs: {enabled: true}}}");
    for needle in [
        "kind: PersistentVolume\n",
        "server: site-nfs.site.svc.cluster.local",
        "volumeName: site-site-content",
        "privileged: true",
        "checkov.io/skip1: CKV_K8S_16=",
        "pod-security.kubernetes.io/enforce: privileged",
    ] {
        assert!(out.contains(needle), "missing {needle:?}");
    }
}
