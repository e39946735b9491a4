//! Credentials. By default only referenced by name (output stays deterministic and free of
//! secrets, fit for GitOps); with `--generate-secrets` rendered with random values.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use rand::distributions::Alphanumeric;
use rand::Rng;

use hapress_spec::Cluster;

use crate::names::Names;
use crate::object::Object;
use crate::{pod, router};

/// Key of the MariaDB root password (also used by probes and backups, locally).
pub const ROOT_PASSWORD: &str = "root-password";
/// Key of the WordPress database user's password.
pub const WORDPRESS_PASSWORD: &str = "wordpress-password";
/// Key of the replication account's password.
pub const REPLICATION_PASSWORD: &str = "replication-password";
/// Key of the SQL router's monitor account password (`hapress_router`); only with the router.
pub const ROUTER_PASSWORD: &str = "router-password";
/// Keys of the WordPress authentication keys and salts (shared by every web pod, so a login
/// cookie issued by one pod is valid on all).
pub const WORDPRESS_KEYS: &[&str] = &[
    "auth-key",
    "secure-auth-key",
    "logged-in-key",
    "nonce-key",
    "auth-salt",
    "secure-auth-salt",
    "logged-in-salt",
    "nonce-salt",
];

/// A Secret the output refers to, with its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretRef {
    /// Secret name.
    pub name: String,
    /// Keys the pods read.
    pub keys: Vec<&'static str>,
    /// Characters per generated value.
    pub length: usize,
}

/// The database passwords the pods read: the router's only when the router is rendered.
pub fn db_keys(c: &Cluster) -> Vec<&'static str> {
    let mut keys = vec![ROOT_PASSWORD, WORDPRESS_PASSWORD, REPLICATION_PASSWORD];
    if router::enabled(c) {
        keys.push(ROUTER_PASSWORD);
    }
    keys
}

/// The Secrets the site needs.
pub fn required(c: &Cluster, names: &Names) -> Vec<SecretRef> {
    let mut out = vec![
        SecretRef {
            name: names.db_secret(),
            keys: db_keys(c),
            length: 32,
        },
        SecretRef {
            name: names.web_secret(),
            keys: WORDPRESS_KEYS.to_vec(),
            length: 64,
        },
    ];
    if crate::cache::enabled(c) {
        out.push(SecretRef {
            name: names.cache_secret(),
            keys: vec![crate::cache::PASSWORD_KEY],
            length: 32,
        });
    }
    if crate::page_cache::enabled(c) {
        out.push(SecretRef {
            name: names.page_cache_secret(),
            keys: vec![crate::page_cache::KEY],
            length: 64,
        });
    }
    out
}

/// `kubectl create secret` commands that create `refs` with random values.
pub fn create_commands(names: &Names, refs: &[SecretRef]) -> Vec<String> {
    refs.iter()
        .map(|r| {
            let literals: Vec<String> = r
                .keys
                .iter()
                .map(|k| {
                    format!(
                        "--from-literal={k}=\"$(openssl rand -hex {})\"",
                        r.length / 2
                    )
                })
                .collect();
            format!(
                "kubectl -n {} create secret generic {} {}",
                names.namespace,
                r.name,
                literals.join(" ")
            )
        })
        .collect()
}

/// `kubectl patch` adding a random `router-password` to an existing database Secret.
pub fn add_router_key_command(names: &Names) -> String {
    format!(
        "kubectl -n {} patch secret {} --type=merge -p \"{{\\\"stringData\\\":{{\\\"{ROUTER_PASSWORD}\\\":\\\"$(openssl rand -hex 16)\\\"}}}}\"",
        names.namespace,
        names.db_secret()
    )
}

/// Secret objects with fresh random alphanumeric values.
pub fn generate(names: &Names, refs: &[SecretRef]) -> Vec<Object> {
    let mut rng = rand::thread_rng();
    refs.iter()
        .map(|r| {
            let data: BTreeMap<String, String> = r
                .keys
                .iter()
                .map(|k| {
                    let v: String = (&mut rng)
                        .sample_iter(&Alphanumeric)
                        .take(r.length)
                        .map(char::from)
                        .collect();
                    ((*k).to_string(), v)
                })
                .collect();
            Object::Secret(Secret {
                metadata: pod::meta(names, &r.name, names.site_labels()),
                type_: Some("Opaque".into()),
                string_data: Some(data),
                ..Secret::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_are_random_and_long() {
        let c = Cluster::default();
        let names = Names::new(&c);
        let refs = required(&c, &names);
        let a = generate(&names, &refs);
        let b = generate(&names, &refs);
        assert_ne!(a, b);
        let Object::Secret(s) = &a[0] else { panic!() };
        let data = s.string_data.as_ref().unwrap();
        assert_eq!(data.len(), 4, "{data:?}");
        assert!(data.contains_key(ROUTER_PASSWORD));
        assert!(data.values().all(|v| v.len() == 32));
    }
}
