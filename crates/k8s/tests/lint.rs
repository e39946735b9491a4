//! The lint catches each kind of broken graph: start from a clean render, break one thing,
//! expect exactly the matching check to complain.

use hapress_k8s::lint::{lint, qos_class, Check};
use hapress_k8s::{render, Manifest, Object, RenderOptions};
use hapress_spec::{Cluster, QosClass};

fn clean() -> (Cluster, Manifest) {
    let c = Cluster::default();
    let m = render(&c, &RenderOptions::default());
    assert_eq!(lint(&m, &c), vec![]);
    (c, m)
}

fn checks(m: &Manifest, c: &Cluster) -> Vec<Check> {
    let mut v: Vec<Check> = lint(m, c).into_iter().map(|f| f.check).collect();
    v.dedup();
    v
}

fn find<'a>(m: &'a mut Manifest, kind: &str, name: &str) -> &'a mut Object {
    m.objects
        .iter_mut()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("{kind}/{name} not rendered"))
}

#[test]
fn every_check_is_listed_once() {
    let names: Vec<&str> = Check::ALL.iter().map(|c| c.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len());
}

#[test]
fn service_selecting_nothing() {
    let (c, mut m) = clean();
    if let Object::Service(s) = find(&mut m, "Service", "wordpress-web") {
        let sel = s.spec.as_mut().unwrap().selector.as_mut().unwrap();
        sel.insert("app.kubernetes.io/component".into(), "webb".into());
    }
    assert_eq!(checks(&m, &c), vec![Check::ServiceSelectors]);
}

#[test]
fn pdb_and_hpa_without_targets() {
    let (c, mut m) = clean();
    m.objects.retain(|o| o.kind() != "Deployment");
    let found = checks(&m, &c);
    assert!(found.contains(&Check::DisruptionBudgets), "{found:?}");
    assert!(found.contains(&Check::Autoscalers), "{found:?}");
}

#[test]
fn undeclared_secret() {
    let (c, mut m) = clean();
    m.external.retain(|e| e.name != "wordpress-db-credentials");
    assert_eq!(checks(&m, &c), vec![Check::References]);
    let with_generated = render(
        &c,
        &RenderOptions {
            generate_secrets: true,
        },
    );
    assert_eq!(lint(&with_generated, &c), vec![]);
}

#[test]
fn serving_container_without_probes() {
    let (c, mut m) = clean();
    if let Object::Deployment(d) = find(&mut m, "Deployment", "wordpress-web") {
        let pod = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        pod.containers[0].readiness_probe = None;
    }
    assert_eq!(checks(&m, &c), vec![Check::Probes]);
}

#[test]
fn qos_class_follows_the_spec() {
    let (mut c, m) = clean();
    c.spec.web.resources.qos_class = QosClass::Burstable;
    assert_eq!(checks(&m, &c), vec![Check::QosClasses]);
    let Some(Object::Deployment(d)) = m.objects.iter().find(|o| o.kind() == "Deployment") else {
        panic!()
    };
    assert_eq!(
        qos_class(d.spec.as_ref().unwrap().template.spec.as_ref().unwrap()),
        "Guaranteed"
    );
}

#[test]
fn weakened_security_context_needs_a_reason() {
    let (c, mut m) = clean();
    if let Object::Deployment(d) = find(&mut m, "Deployment", "wordpress-web") {
        let pod = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let sc = pod.containers[0].security_context.as_mut().unwrap();
        sc.allow_privilege_escalation = Some(true);
        pod.automount_service_account_token = None;
    }
    let findings = lint(&m, &c);
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert!(findings.iter().all(|f| f.check == Check::Security));
}

#[test]
fn object_outside_the_namespace() {
    let (c, mut m) = clean();
    if let Object::ConfigMap(cm) = find(&mut m, "ConfigMap", "wordpress-db-config") {
        cm.metadata.namespace = Some("default".into());
    }
    assert_eq!(checks(&m, &c), vec![Check::Namespaces]);
}

#[test]
fn secret_key_nobody_creates() {
    let (c, mut m) = clean();
    for e in &mut m.external {
        if e.name == "wordpress-db-credentials" {
            e.keys.retain(|k| k != "router-password");
        }
    }
    let findings = lint(&m, &c);
    assert!(!findings.is_empty());
    assert!(
        findings
            .iter()
            .all(|f| f.check == Check::References && f.message.contains("\"router-password\"")),
        "{findings:#?}"
    );
}

#[test]
fn config_map_key_that_is_not_rendered() {
    let (c, mut m) = clean();
    if let Object::ConfigMap(cm) = find(&mut m, "ConfigMap", "wordpress-router-config") {
        cm.data = Some(Default::default());
    }
    assert_eq!(checks(&m, &c), vec![Check::References]);
}

#[test]
fn sidecar_without_probes() {
    let (c, mut m) = clean();
    if let Object::Deployment(d) = find(&mut m, "Deployment", "wordpress-web") {
        let pod = d.spec.as_mut().unwrap().template.spec.as_mut().unwrap();
        let router = pod
            .init_containers
            .as_mut()
            .unwrap()
            .iter_mut()
            .find(|c| c.name == "router")
            .unwrap();
        router.liveness_probe = None;
    }
    assert_eq!(checks(&m, &c), vec![Check::Probes]);
}

#[test]
fn router_qos_class_must_agree_with_the_web_pods() {
    let mut c = Cluster::default();
    c.spec.router.resources.qos_class = QosClass::Burstable;
    c.spec.router.resources.limits = Some(hapress_spec::ComputeResources {
        cpu: "1".into(),
        memory: "64Mi".into(),
    });
    let m = render(&c, &RenderOptions::default());
    let findings = lint(&m, &c);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].check, Check::QosClasses);
    assert!(findings[0].message.contains("spec.router.resources"));
}
