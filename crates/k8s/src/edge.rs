//! The edge: an Ingress with TLS from cert-manager and an http->https redirect.

use std::collections::BTreeMap;

use hapress_spec::Cluster;
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};

use crate::names::{Component, Names};
use crate::object::Object;
use crate::pod;

/// The Ingress, when enabled.
pub fn objects(c: &Cluster, names: &Names) -> Vec<Object> {
    let ing = &c.spec.ingress;
    if !ing.enabled {
        return vec![];
    }
    let tls = &ing.tls;
    let mut annotations = BTreeMap::new();
    if tls.enabled && !tls.cluster_issuer.is_empty() {
        annotations.insert(
            "cert-manager.io/cluster-issuer".into(),
            tls.cluster_issuer.clone(),
        );
    }
    if ing.class_name == "nginx" {
        if tls.enabled {
            annotations.insert(
                "nginx.ingress.kubernetes.io/ssl-redirect".into(),
                "true".into(),
            );
            annotations.insert(
                "nginx.ingress.kubernetes.io/force-ssl-redirect".into(),
                "true".into(),
            );
        }
        // Media uploads larger than ingress-nginx's 1m default.
        annotations.insert(
            "nginx.ingress.kubernetes.io/proxy-body-size".into(),
            "64m".into(),
        );
    }
    let mut meta = pod::meta(names, &names.cluster, names.labels(Component::Web));
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    vec![Object::Ingress(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: Some(ing.class_name.clone()),
            tls: tls.enabled.then(|| {
                vec![IngressTLS {
                    hosts: Some(vec![ing.host.clone()]),
                    secret_name: Some(names.tls_secret(tls.secret_name.as_ref())),
                }]
            }),
            rules: Some(vec![IngressRule {
                host: Some(ing.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: crate::web::front_service(c, names),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })]
}
