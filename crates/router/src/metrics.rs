//! `GET /metrics`: the Prometheus text (format 0.0.4), made from the typed [`RouterStatus`]
//! that `/status` serves, with the `prometheus-client` encoder (names, escaping, `_total`).

use std::fmt;

use hapress_contract::status::{BackendStatus, Role, RouterStatus, LATENCY_BUCKETS};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{prometheus_text, DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The metrics of `status`.
pub fn render(status: RouterStatus) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Status(status)));
    let mut out = String::new();
    // Writing to a String does not fail; the collector below returns only the writer's errors.
    let _ = prometheus_text::encode(&mut out, &registry);
    out
}

/// One scrape's values.
#[derive(Debug)]
struct Status(RouterStatus);

/// Per-backend series: name (without the `hapress_router_backend_` prefix and `_total`), help,
/// type, and the value (`None`: no sample for that backend).
type BackendSeries = (
    &'static str,
    &'static str,
    MetricType,
    fn(&BackendStatus) -> Option<u64>,
);

const BACKEND_SERIES: [BackendSeries; 13] = [
    (
        "up",
        "The backend answered its last probe.",
        MetricType::Gauge,
        |b| Some(u64::from(b.up)),
    ),
    (
        "primary",
        "Writes go to this backend.",
        MetricType::Gauge,
        |b| Some(u64::from(b.role == Role::Primary)),
    ),
    (
        "lag_seconds",
        "Seconds_Behind_Master of a replica.",
        MetricType::Gauge,
        |b| b.lag_seconds,
    ),
    (
        "sessions",
        "Client sessions using the backend.",
        MetricType::Gauge,
        |b| Some(b.sessions),
    ),
    (
        "statements",
        "Statements routed to the backend.",
        MetricType::Counter,
        |b| Some(b.statements),
    ),
    (
        "errors",
        "Connection or login failures.",
        MetricType::Counter,
        |b| Some(b.errors),
    ),
    (
        "pool_open",
        "Pooled connections open, in use or idle.",
        MetricType::Gauge,
        |b| Some(b.pool.open),
    ),
    (
        "pool_idle",
        "Pooled connections idle.",
        MetricType::Gauge,
        |b| Some(b.pool.idle),
    ),
    (
        "pool_opened",
        "Backend connections opened.",
        MetricType::Counter,
        |b| Some(b.pool.opened),
    ),
    (
        "pool_reused",
        "Sessions served by a pooled connection.",
        MetricType::Counter,
        |b| Some(b.pool.reused),
    ),
    (
        "pool_mismatched",
        "Pooled connections closed because they could not serve a session.",
        MetricType::Counter,
        |b| Some(b.pool.mismatched),
    ),
    (
        "pool_overflow",
        "Connections opened beyond the pool's size.",
        MetricType::Counter,
        |b| Some(b.pool.overflow),
    ),
    (
        "pool_resets",
        "Connections reset when their session ended (none for a session that sent nothing).",
        MetricType::Counter,
        |b| Some(b.pool.resets),
    ),
];

impl Collector for Status {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let m = &s.manager;
        let gauge = MetricType::Gauge;
        let counter = MetricType::Counter;
        scalar(&mut e, "clients", "Client sessions open.", gauge, s.clients)?;
        scalar(
            &mut e,
            "refused",
            "Client sessions refused (connection limit, or no primary).",
            counter,
            s.refused,
        )?;
        scalar(
            &mut e,
            "manager_leader",
            "This router's failover manager holds the majority lock and acts.",
            gauge,
            u64::from(m.leader),
        )?;
        scalar(
            &mut e,
            "failovers",
            "Failovers this router performed.",
            counter,
            m.failovers_total,
        )?;
        labelled(
            &mut e,
            "topology_actions",
            "Topology actions (promotions, fences, re-points) by result.",
            "result",
            &[
                ("ok", m.actions.saturating_sub(m.action_errors)),
                ("error", m.action_errors),
            ],
        )?;
        scalar(
            &mut e,
            "diverged_servers",
            "Servers that cannot replicate any more and need a rebuild.",
            gauge,
            m.diverged.len() as u64,
        )?;
        labelled(
            &mut e,
            "routed",
            "Statements routed, by target.",
            "target",
            &[
                ("primary", s.routed_to_primary),
                ("replica", s.routed_to_replicas),
            ],
        )?;
        for (name, help, kind, value) in BACKEND_SERIES {
            let name = format!("hapress_router_backend_{name}");
            let mut family = e.encode_descriptor(&name, help, None, kind)?;
            for b in &s.backends {
                let Some(v) = value(b) else { continue };
                let labels = [("backend", b.address.as_str())];
                sample(family.encode_family(&labels)?, kind, v)?;
            }
        }
        let mut latency = e.encode_descriptor(
            "hapress_router_backend_latency_seconds",
            "Statement latency, command sent to answer complete.",
            None,
            MetricType::Histogram,
        )?;
        for b in &s.backends {
            let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .zip(b.latency.counts.iter().copied())
                .collect();
            latency
                .encode_family(&[("backend", b.address.as_str())])?
                .encode_histogram::<NoLabelSet>(
                    b.latency.sum_us as f64 / 1e6,
                    b.latency.counts.iter().sum(),
                    &buckets,
                    None,
                )?;
        }
        Ok(())
    }
}

/// One unlabelled series `hapress_router_<name>`.
fn scalar(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    v: u64,
) -> fmt::Result {
    let name = format!("hapress_router_{name}");
    sample(e.encode_descriptor(&name, help, None, kind)?, kind, v)
}

/// The counter `hapress_router_<name>` with one sample per value of `label`.
fn labelled(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &str,
    samples: &[(&str, u64)],
) -> fmt::Result {
    let name = format!("hapress_router_{name}");
    let mut m = e.encode_descriptor(&name, help, None, MetricType::Counter)?;
    for (value, n) in samples {
        sample(
            m.encode_family(&[(label, *value)])?,
            MetricType::Counter,
            *n,
        )?;
    }
    Ok(())
}

/// One sample of a counter or a gauge.
fn sample(mut m: MetricEncoder, kind: MetricType, v: u64) -> fmt::Result {
    match kind {
        MetricType::Counter => m.encode_counter::<NoLabelSet, _, u64>(&v, None),
        _ => m.encode_gauge(&v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hapress_contract::status::{Latency, PoolStatus};

    #[test]
    fn every_series_comes_from_its_field() {
        let mut s = RouterStatus {
            clients: 3,
            refused: 4,
            routed_to_primary: 5,
            routed_to_replicas: 6,
            ..RouterStatus::default()
        };
        s.manager.leader = true;
        s.manager.failovers_total = 2;
        s.manager.actions = 7;
        s.manager.action_errors = 1;
        s.backends = vec![
            BackendStatus {
                address: "/run/db \"0\".sock".into(),
                role: Role::Primary,
                up: true,
                statements: 11,
                pool: PoolStatus {
                    reused: 9,
                    ..PoolStatus::default()
                },
                latency: Latency {
                    counts: vec![1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 4],
                    sum_us: 2_500_000,
                },
                ..BackendStatus::default()
            },
            BackendStatus {
                address: "db-1".into(),
                role: Role::Replica,
                up: true,
                lag_seconds: Some(8),
                ..BackendStatus::default()
            },
        ];
        let text = render(s);
        for line in [
            "hapress_router_clients 3",
            "hapress_router_refused_total 4",
            "hapress_router_manager_leader 1",
            "hapress_router_failovers_total 2",
            "hapress_router_topology_actions_total{result=\"ok\"} 6",
            "hapress_router_topology_actions_total{result=\"error\"} 1",
            "hapress_router_routed_total{target=\"replica\"} 6",
            "hapress_router_backend_primary{backend=\"/run/db \\\"0\\\".sock\"} 1",
            "hapress_router_backend_primary{backend=\"db-1\"} 0",
            "hapress_router_backend_lag_seconds{backend=\"db-1\"} 8",
            "hapress_router_backend_statements_total{backend=\"/run/db \\\"0\\\".sock\"} 11",
            "hapress_router_backend_pool_reused_total{backend=\"/run/db \\\"0\\\".sock\"} 9",
            "hapress_router_backend_latency_seconds_bucket{backend=\"/run/db \\\"0\\\".sock\",le=\"0.001\"} 3",
            "hapress_router_backend_latency_seconds_bucket{backend=\"/run/db \\\"0\\\".sock\",le=\"+Inf\"} 7",
            "hapress_router_backend_latency_seconds_sum{backend=\"/run/db \\\"0\\\".sock\"} 2.5",
            "# TYPE hapress_router_backend_errors_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // A backend without lag has no lag sample.
        assert!(!text.contains("lag_seconds{backend=\"/run"));
    }
}
