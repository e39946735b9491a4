//! `hapress status --prometheus`: the cluster's status as Prometheus text (format 0.0.4), with
//! the `prometheus-client` encoder: each component's health and restarts, and what the page
//! cache and the object cache did. For node_exporter's textfile collector, or any scraper that
//! reads a file (the embedded runtime runs no HTTP server of its own for this; the SQL
//! router's own `/metrics` is on its `statusListen` address).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::{ClusterStatus, PageCacheCounts};

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn gauge(value: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(value).unwrap_or(i64::MAX));
    g
}

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

/// `hapress_page_cache_requests_total{result}`: what the page cache did, by result.
fn register_page_cache(r: &mut Registry, pc: &PageCacheCounts) {
    let requests = Family::<Labels, Counter>::default();
    for (result, n) in [
        ("hit", pc.hit),
        ("miss", pc.miss),
        ("bypass", pc.bypass),
        ("expired", pc.expired),
        ("stale", pc.stale),
    ] {
        requests
            .get_or_create(&labels(&[("result", result)]))
            .inc_by(n);
    }
    r.register(
        "page_cache_requests",
        "Requests by what the page cache did, since it was last started.",
        requests,
    );
}

/// The page-cache metrics alone (a Kubernetes cache pod's `/metrics`).
pub fn render_page_cache(pc: &PageCacheCounts) -> String {
    let mut r = Registry::with_prefix("hapress");
    register_page_cache(&mut r, pc);
    let mut out = String::new();
    let _ = encode(&mut out, &r);
    out
}

/// The metrics of `st`.
pub fn render(st: &ClusterStatus) -> String {
    let mut r = Registry::with_prefix("hapress");
    r.register(
        "supervisor_running",
        "The supervisor of this state directory is alive.",
        gauge(u64::from(st.supervisor_running)),
    );
    let up = Family::<Labels, Gauge>::default();
    let restarts = Family::<Labels, Counter>::default();
    for c in &st.components {
        let who = [("component", c.name.as_str())];
        up.get_or_create(&labels(&[
            ("component", &c.name),
            ("kind", &c.kind),
            ("role", &c.role),
        ]))
        .set(i64::from(c.health == "up"));
        restarts
            .get_or_create(&labels(&who))
            .inc_by(u64::from(c.restarts));
    }
    r.register(
        "component_up",
        "The component is up (1) or not (0), with its kind and role.",
        up,
    );
    r.register(
        "component_restarts",
        "Restarts of the component after unexpected exits.",
        restarts,
    );
    if let Some(pc) = &st.page_cache {
        register_page_cache(&mut r, pc);
    }
    if let Some(oc) = &st.object_cache {
        r.register(
            "object_cache_hits",
            "Object cache lookups that found their entry, since Redis started.",
            counter(oc.hits),
        );
        r.register(
            "object_cache_misses",
            "Object cache lookups that did not, since Redis started.",
            counter(oc.misses),
        );
        r.register(
            "object_cache_evicted",
            "Entries evicted to stay under maxMemoryMb, since Redis started.",
            counter(oc.evicted),
        );
        r.register(
            "object_cache_entries",
            "Entries in the object cache.",
            gauge(oc.keys),
        );
        r.register(
            "object_cache_memory_bytes",
            "Memory Redis uses.",
            gauge(oc.used_memory),
        );
    }
    let mut out = String::new();
    // Writing to a String does not fail.
    let _ = encode(&mut out, &r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis::ObjectCacheStats;
    use crate::status::{ComponentStatus, PageCacheCounts};

    fn component(
        name: &str,
        kind: &str,
        role: &str,
        health: &str,
        restarts: u32,
    ) -> ComponentStatus {
        ComponentStatus {
            name: name.into(),
            kind: kind.into(),
            pid: None,
            address: String::new(),
            health: health.into(),
            role: role.into(),
            restarts,
            replication: None,
            router: None,
        }
    }

    /// The value of the sample `series` (name with its labels, as printed).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_counter_of_the_status_is_a_series() {
        let st = ClusterStatus {
            cluster: "site".into(),
            phase: "running".into(),
            supervisor_pid: 1,
            supervisor_running: true,
            url: String::new(),
            updated_at: 0,
            components: vec![
                component("db-0", "database", "primary", "up", 0),
                component("db-1", "database", "replica", "down", 3),
            ],
            events: Vec::new(),
            failovers: Vec::new(),
            attention: Vec::new(),
            page_cache: Some(PageCacheCounts {
                hit: 40,
                miss: 2,
                bypass: 7,
                expired: 1,
                stale: 0,
            }),
            object_cache: Some(ObjectCacheStats {
                hits: 90,
                misses: 10,
                keys: 33,
                evicted: 4,
                used_memory: 1 << 20,
            }),
        };
        let text = render(&st);
        let table = [
            ("hapress_supervisor_running", 1.0),
            (
                r#"hapress_component_up{component="db-0",kind="database",role="primary"}"#,
                1.0,
            ),
            (
                r#"hapress_component_up{component="db-1",kind="database",role="replica"}"#,
                0.0,
            ),
            (r#"hapress_component_restarts_total{component="db-1"}"#, 3.0),
            (r#"hapress_page_cache_requests_total{result="hit"}"#, 40.0),
            (r#"hapress_page_cache_requests_total{result="bypass"}"#, 7.0),
            ("hapress_object_cache_hits_total", 90.0),
            ("hapress_object_cache_misses_total", 10.0),
            ("hapress_object_cache_evicted_total", 4.0),
            ("hapress_object_cache_entries", 33.0),
            ("hapress_object_cache_memory_bytes", 1048576.0),
        ];
        for (series, want) in table {
            assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
        }
        assert!(
            text.contains("# HELP hapress_page_cache_requests "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE hapress_component_restarts counter"),
            "{text}"
        );
        // Caches that are off have no series.
        let off = render(&ClusterStatus {
            page_cache: None,
            object_cache: None,
            ..st
        });
        assert!(!off.contains("cache"), "{off}");
    }
}
