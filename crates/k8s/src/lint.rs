//! Checks over the rendered object graph (`hapress render --check`, also run by the tests):
//! pure functions from a [`Manifest`] to findings.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use hapress_spec::{Cluster, QosClass};
use k8s_openapi::api::core::v1::{Container, KeyToPath, PodSpec, PodTemplateSpec};

use crate::names::{Component, RUNTIME_LABELS_ANNOTATION};
use crate::object::Object;
use crate::Manifest;

/// One kind of check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// Every Service selector matches some pod template, and its named target ports exist.
    ServiceSelectors,
    /// Every PodDisruptionBudget selects some pod template.
    DisruptionBudgets,
    /// Every HorizontalPodAutoscaler targets a rendered workload.
    Autoscalers,
    /// Every referenced Secret, ConfigMap, PVC, PV, ServiceAccount, Role and Service (and every
    /// mounted volume) is rendered or declared external, and every Secret or ConfigMap key a
    /// pod reads is one the object (or the documented command creating it) provides.
    References,
    /// Every container that serves a port (native sidecars included) has readiness and
    /// liveness probes.
    Probes,
    /// The QoS class computed from the pods' resources is the one the spec asks for.
    QosClasses,
    /// Every container is non-root, without privilege escalation, drops all capabilities,
    /// uses the RuntimeDefault seccomp profile and a read-only root filesystem, and pods do
    /// not automount API tokens; exceptions only with a written checkov skip reason.
    Security,
    /// Every namespaced object is in the site's namespace.
    Namespaces,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 8] = [
        Check::ServiceSelectors,
        Check::DisruptionBudgets,
        Check::Autoscalers,
        Check::References,
        Check::Probes,
        Check::QosClasses,
        Check::Security,
        Check::Namespaces,
    ];

    /// Short name printed in findings.
    pub fn name(self) -> &'static str {
        match self {
            Check::ServiceSelectors => "service-selectors",
            Check::DisruptionBudgets => "disruption-budgets",
            Check::Autoscalers => "autoscalers",
            Check::References => "references",
            Check::Probes => "probes",
            Check::QosClasses => "qos-classes",
            Check::Security => "security",
            Check::Namespaces => "namespaces",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Check::ServiceSelectors => "every Service selector matches a pod template and its named target ports",
            Check::DisruptionBudgets => "every PodDisruptionBudget selects a pod template",
            Check::Autoscalers => "every HorizontalPodAutoscaler targets a rendered workload",
            Check::References => "every referenced Secret, ConfigMap, PVC, PV, ServiceAccount, Role, Service and volume is rendered or declared external, with every key a pod reads",
            Check::Probes => "every container serving a port has readiness and liveness probes",
            Check::QosClasses => "the computed QoS class of each workload matches the spec",
            Check::Security => "non-root, no privilege escalation, no capabilities, RuntimeDefault seccomp, read-only root filesystem, no automounted token (exceptions need a checkov skip reason)",
            Check::Namespaces => "every namespaced object is in the site's namespace",
        }
    }
}

/// A problem found in the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Which check.
    pub check: Check,
    /// `Kind/name` of the object at fault.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[{}] {}: {}",
            self.check.name(),
            self.object,
            self.message
        )
    }
}

struct Ctx<'a> {
    /// Shared, so checks can iterate it while recording findings.
    manifest: &'a Manifest,
    findings: Vec<Finding>,
}

impl Ctx<'_> {
    fn fail(&mut self, check: Check, object: &Object, message: impl Into<String>) {
        self.findings.push(Finding {
            check,
            object: object.id(),
            message: message.into(),
        });
    }
}

fn workloads(m: &Manifest) -> impl Iterator<Item = (&Object, &PodTemplateSpec)> {
    m.objects
        .iter()
        .filter_map(|o| o.pod_template().map(|t| (o, t)))
}

fn exists(m: &Manifest, kind: &str, name: &str) -> bool {
    m.objects
        .iter()
        .any(|o| o.kind() == kind && o.name() == name)
        || m.external.iter().any(|e| e.kind == kind && e.name == name)
}

/// Runs every check; an empty result means the graph is consistent.
pub fn lint(manifest: &Manifest, cluster: &Cluster) -> Vec<Finding> {
    let mut cx = Ctx {
        manifest,
        findings: vec![],
    };
    service_selectors(&mut cx);
    disruption_budgets(&mut cx);
    autoscalers(&mut cx);
    references(&mut cx);
    probes(&mut cx);
    qos_classes(&mut cx, cluster);
    security(&mut cx);
    namespaces(&mut cx);
    cx.findings
}

/// Whether a pod template satisfies `selector`; labels the template declares as set at
/// runtime (the database role) match any value.
fn selects(selector: &BTreeMap<String, String>, template: &PodTemplateSpec) -> bool {
    let meta = template.metadata.as_ref();
    let labels = meta.and_then(|m| m.labels.as_ref());
    let runtime: BTreeSet<&str> = meta
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(RUNTIME_LABELS_ANNOTATION))
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v) || runtime.contains(k.as_str()))
}

fn containers(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter())
}

/// Containers that run for the pod's lifetime: the regular ones and native sidecars (init
/// containers with `restartPolicy: Always`), which serve ports like any other.
fn long_running(spec: &PodSpec) -> impl Iterator<Item = &Container> {
    spec.init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .chain(spec.containers.iter())
}

fn service_selectors(cx: &mut Ctx) {
    let m = cx.manifest;
    for o in &m.objects {
        let Object::Service(s) = o else { continue };
        let Some(spec) = &s.spec else { continue };
        let Some(selector) = &spec.selector else {
            cx.fail(Check::ServiceSelectors, o, "has no selector");
            continue;
        };
        let matching: Vec<&PodTemplateSpec> = workloads(m)
            .filter(|(_, t)| selects(selector, t))
            .map(|(_, t)| t)
            .collect();
        if matching.is_empty() {
            cx.fail(
                Check::ServiceSelectors,
                o,
                format!("selector {selector:?} matches no pod template"),
            );
            continue;
        }
        for port in spec.ports.iter().flatten() {
            let Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(name)) =
                &port.target_port
            else {
                continue;
            };
            let served = matching.iter().any(|t| {
                t.spec.iter().flat_map(long_running).any(|c| {
                    c.ports
                        .iter()
                        .flatten()
                        .any(|p| p.name.as_deref() == Some(name))
                })
            });
            if !served {
                cx.fail(
                    Check::ServiceSelectors,
                    o,
                    format!("target port {name:?} is not a named port of the selected pods"),
                );
            }
        }
    }
}

fn disruption_budgets(cx: &mut Ctx) {
    let m = cx.manifest;
    for o in &m.objects {
        let Object::PodDisruptionBudget(p) = o else {
            continue;
        };
        let selector = p
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(|s| s.match_labels.clone())
            .unwrap_or_default();
        if selector.is_empty() || !workloads(cx.manifest).any(|(_, t)| selects(&selector, t)) {
            cx.fail(
                Check::DisruptionBudgets,
                o,
                "selects no rendered pod template",
            );
        }
    }
}

fn autoscalers(cx: &mut Ctx) {
    let m = cx.manifest;
    for o in &m.objects {
        let Object::HorizontalPodAutoscaler(h) = o else {
            continue;
        };
        let Some(spec) = &h.spec else { continue };
        let t = &spec.scale_target_ref;
        let ok = matches!(t.kind.as_str(), "Deployment" | "StatefulSet")
            && cx
                .manifest
                .objects
                .iter()
                .any(|w| w.kind() == t.kind && w.name() == t.name);
        if !ok {
            cx.fail(
                Check::Autoscalers,
                o,
                format!("targets {}/{}, which is not rendered", t.kind, t.name),
            );
        }
        if spec.min_replicas.unwrap_or(1) > spec.max_replicas {
            cx.fail(Check::Autoscalers, o, "minReplicas exceeds maxReplicas");
        }
    }
}

/// A reference from one object to another: `(kind, name, key)`; `key` when only one key of
/// a Secret or ConfigMap is read.
type Ref = (&'static str, String, Option<String>);

fn named(kind: &'static str, name: String) -> Ref {
    (kind, name, None)
}

fn pod_references(spec: &PodSpec, claim_templates: &BTreeSet<String>) -> Vec<Ref> {
    let mut refs = vec![];
    if let Some(sa) = &spec.service_account_name {
        refs.push(named("ServiceAccount", sa.clone()));
    }
    let keyed = |refs: &mut Vec<Ref>, kind, name: &str, items: Option<&Vec<KeyToPath>>| {
        refs.push(named(kind, name.to_string()));
        for item in items.into_iter().flatten() {
            refs.push((kind, name.to_string(), Some(item.key.clone())));
        }
    };
    let mut volumes: BTreeSet<String> = claim_templates.clone();
    for v in spec.volumes.iter().flatten() {
        volumes.insert(v.name.clone());
        if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            keyed(&mut refs, "Secret", &name, s.items.as_ref());
        }
        if let Some(c) = &v.config_map {
            keyed(&mut refs, "ConfigMap", &c.name, c.items.as_ref());
        }
        if let Some(p) = &v.persistent_volume_claim {
            refs.push(named("PersistentVolumeClaim", p.claim_name.clone()));
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(s) = &src.secret {
                keyed(&mut refs, "Secret", &s.name, s.items.as_ref());
            }
            if let Some(c) = &src.config_map {
                keyed(&mut refs, "ConfigMap", &c.name, c.items.as_ref());
            }
        }
    }
    for c in containers(spec) {
        for e in c.env.iter().flatten() {
            if let Some(from) = &e.value_from {
                if let Some(s) = &from.secret_key_ref {
                    refs.push(("Secret", s.name.clone(), Some(s.key.clone())));
                }
                if let Some(m) = &from.config_map_key_ref {
                    refs.push(("ConfigMap", m.name.clone(), Some(m.key.clone())));
                }
            }
        }
        for m in c.volume_mounts.iter().flatten() {
            if !volumes.contains(&m.name) {
                refs.push(named("volume", m.name.clone()));
            }
        }
    }
    refs
}

/// The keys a Secret or ConfigMap holds: the rendered data, or what an external one is
/// declared to hold; `None` when unknown (then any key is accepted).
fn known_keys(m: &Manifest, kind: &str, name: &str) -> Option<BTreeSet<String>> {
    for o in &m.objects {
        if o.kind() != kind || o.name() != name {
            continue;
        }
        let keys: BTreeSet<String> = match o {
            Object::Secret(s) => s
                .string_data
                .iter()
                .flat_map(|d| d.keys())
                .chain(s.data.iter().flat_map(|d| d.keys()))
                .cloned()
                .collect(),
            Object::ConfigMap(c) => c
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(c.binary_data.iter().flat_map(|d| d.keys()))
                .cloned()
                .collect(),
            _ => return None,
        };
        return Some(keys);
    }
    m.external
        .iter()
        .find(|e| e.kind == kind && e.name == name && !e.keys.is_empty())
        .map(|e| e.keys.iter().cloned().collect())
}

fn references(cx: &mut Ctx) {
    let mut missing: Vec<(&Object, String)> = vec![];
    let m = cx.manifest;
    for o in &m.objects {
        let mut refs: Vec<Ref> = vec![];
        match o {
            Object::StatefulSet(s) => {
                if let Some(spec) = &s.spec {
                    if let Some(svc) = &spec.service_name {
                        refs.push(named("Service", svc.clone()));
                    }
                    let templates = spec
                        .volume_claim_templates
                        .iter()
                        .flatten()
                        .filter_map(|p| p.metadata.name.clone())
                        .collect();
                    if let Some(pod) = &spec.template.spec {
                        refs.extend(pod_references(pod, &templates));
                    }
                }
            }
            Object::Deployment(d) => {
                if let Some(pod) = d.spec.as_ref().and_then(|s| s.template.spec.as_ref()) {
                    refs.extend(pod_references(pod, &BTreeSet::new()));
                }
            }
            Object::RoleBinding(b) => {
                refs.push(named("Role", b.role_ref.name.clone()));
                for s in b.subjects.iter().flatten() {
                    refs.push(named("ServiceAccount", s.name.clone()));
                }
            }
            Object::PersistentVolumeClaim(p) => {
                if let Some(pv) = p.spec.as_ref().and_then(|s| s.volume_name.clone()) {
                    refs.push(named("PersistentVolume", pv));
                }
            }
            Object::PersistentVolume(p) => {
                if let Some(claim) = p.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                    refs.push(named(
                        "PersistentVolumeClaim",
                        claim.name.clone().unwrap_or_default(),
                    ));
                }
            }
            Object::Ingress(i) => {
                let spec = i.spec.iter();
                for tls in spec.clone().flat_map(|s| s.tls.iter().flatten()) {
                    if let Some(name) = &tls.secret_name {
                        refs.push(named("Secret", name.clone()));
                    }
                }
                for rule in spec.flat_map(|s| s.rules.iter().flatten()) {
                    for path in rule.http.iter().flat_map(|h| h.paths.iter()) {
                        if let Some(svc) = &path.backend.service {
                            refs.push(named("Service", svc.name.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
        for (kind, name, key) in refs {
            if kind == "volume" {
                missing.push((
                    o,
                    format!("mounts volume {name:?}, which the pod does not declare"),
                ));
            } else if !exists(cx.manifest, kind, &name) {
                missing.push((
                    o,
                    format!(
                        "refers to {kind}/{name}, which is neither rendered nor declared external"
                    ),
                ));
            } else if let Some(key) = key {
                if known_keys(cx.manifest, kind, &name).is_some_and(|k| !k.contains(&key)) {
                    missing.push((
                        o,
                        format!(
                            "reads key {key:?} of {kind}/{name}, which neither the rendered object nor the documented `kubectl create` command provides"
                        ),
                    ));
                }
            }
        }
    }
    for (o, m) in missing {
        cx.fail(Check::References, o, m);
    }
}

fn probes(cx: &mut Ctx) {
    let mut bad = vec![];
    for (o, t) in workloads(cx.manifest) {
        for c in t.spec.iter().flat_map(long_running) {
            if c.ports.as_ref().is_some_and(|p| !p.is_empty())
                && (c.readiness_probe.is_none() || c.liveness_probe.is_none())
            {
                bad.push((
                    o,
                    format!(
                        "container {} serves ports without readiness and liveness probes",
                        c.name
                    ),
                ));
            }
        }
    }
    for (o, m) in bad {
        cx.fail(Check::Probes, o, m);
    }
}

/// The QoS class Kubernetes will assign to a pod with these containers.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers(spec) {
        let r = c.resources.as_ref();
        let req = r.and_then(|r| r.requests.as_ref());
        let lim = r.and_then(|r| r.limits.as_ref());
        any |= req.is_some_and(|m| !m.is_empty()) || lim.is_some_and(|m| !m.is_empty());
        for res in ["cpu", "memory"] {
            let l = lim.and_then(|m| m.get(res));
            let q = req.and_then(|m| m.get(res)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (_, true) => "Guaranteed",
        (true, false) => "Burstable",
        (false, false) => "BestEffort",
    }
}

fn qos_classes(cx: &mut Ctx, cluster: &Cluster) {
    let mut bad = vec![];
    for (o, t) in workloads(cx.manifest) {
        let component = t
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get("app.kubernetes.io/component"))
            .map(String::as_str);
        let want = match component {
            Some(c) if c == Component::Web.as_str() => cluster.spec.web.resources.qos_class,
            Some(c) if c == Component::Database.as_str() => {
                cluster.spec.database.resources.qos_class
            }
            _ => QosClass::Guaranteed,
        };
        let want = match want {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
        };
        if let Some(spec) = &t.spec {
            let got = qos_class(spec);
            if got != want {
                let sidecar = component == Some(Component::Web.as_str())
                    && crate::router::enabled(cluster)
                    && cluster.spec.router.resources.qos_class
                        != cluster.spec.web.resources.qos_class;
                let hint = if sidecar {
                    " (the router sidecar shares the pod: give spec.router.resources the same qosClass as spec.web.resources)"
                } else {
                    ""
                };
                bad.push((
                    o,
                    format!("pods get QoS class {got}, the spec asks for {want}{hint}"),
                ));
            }
        }
    }
    for (o, m) in bad {
        cx.fail(Check::QosClasses, o, m);
    }
}

fn skipped(o: &Object, check_id: &str) -> bool {
    o.metadata().annotations.iter().flatten().any(|(k, v)| {
        k.starts_with("checkov.io/skip")
            && v.split_once('=')
                .is_some_and(|(id, why)| id == check_id && !why.trim().is_empty())
    })
}

fn security(cx: &mut Ctx) {
    let mut bad = vec![];
    for (o, t) in workloads(cx.manifest) {
        let Some(spec) = &t.spec else { continue };
        if spec.automount_service_account_token != Some(false) {
            bad.push((o, "pods automount a service account token".to_string()));
        }
        let pod_sc = spec.security_context.as_ref();
        for c in containers(spec) {
            let sc = c.security_context.as_ref();
            let mut need = |ok: bool, id: &str, what: &str| {
                if !ok && !skipped(o, id) {
                    bad.push((
                        o,
                        format!("container {}: {what} (no {id} skip reason)", c.name),
                    ));
                }
            };
            need(
                sc.and_then(|s| s.allow_privilege_escalation) == Some(false),
                "CKV_K8S_20",
                "allowPrivilegeEscalation is not false",
            );
            need(
                sc.and_then(|s| s.privileged) != Some(true),
                "CKV_K8S_16",
                "is privileged",
            );
            need(
                sc.and_then(|s| s.run_as_non_root)
                    .or(pod_sc.and_then(|s| s.run_as_non_root))
                    == Some(true),
                "CKV_K8S_23",
                "may run as root",
            );
            need(
                sc.and_then(|s| s.capabilities.as_ref())
                    .and_then(|c| c.drop.as_ref())
                    .is_some_and(|d| d.iter().any(|x| x == "ALL")),
                "CKV_K8S_37",
                "does not drop ALL capabilities",
            );
            need(
                sc.and_then(|s| s.capabilities.as_ref())
                    .and_then(|c| c.add.as_ref())
                    .is_none_or(Vec::is_empty),
                "CKV_K8S_25",
                "adds capabilities",
            );
            need(
                sc.and_then(|s| s.read_only_root_filesystem) == Some(true),
                "CKV_K8S_22",
                "root filesystem is writable",
            );
            let seccomp = sc
                .and_then(|s| s.seccomp_profile.as_ref())
                .or(pod_sc.and_then(|s| s.seccomp_profile.as_ref()));
            need(
                seccomp.is_some_and(|p| p.type_ == "RuntimeDefault"),
                "CKV_K8S_31",
                "no RuntimeDefault seccomp profile",
            );
        }
    }
    for (o, m) in bad {
        cx.fail(Check::Security, o, m);
    }
}

fn namespaces(cx: &mut Ctx) {
    let ns = cx.manifest.names.namespace.clone();
    let mut bad = vec![];
    let m = cx.manifest;
    for o in &m.objects {
        if o.is_namespaced() && o.metadata().namespace.as_deref() != Some(ns.as_str()) {
            bad.push(o);
        }
    }
    for o in bad {
        cx.fail(Check::Namespaces, o, format!("is not in namespace {ns}"));
    }
}
