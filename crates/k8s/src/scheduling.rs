//! Spreading pods over nodes and zones (seed rows 14 and 17).

use hapress_spec::AntiAffinity;
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint, WeightedPodAffinityTerm,
};

use crate::names::{Component, Names};
use crate::pod;

const HOSTNAME: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

fn term(names: &Names, component: Component) -> PodAffinityTerm {
    PodAffinityTerm {
        label_selector: Some(pod::selector(names.selector(component))),
        topology_key: HOSTNAME.into(),
        ..PodAffinityTerm::default()
    }
}

/// Prefer one pod per node.
pub fn soft_anti_affinity(names: &Names, component: Component) -> Affinity {
    anti_affinity(names, component, AntiAffinity::Soft)
}

/// One pod per node: preferred (`soft`) or required (`hard`, pods beyond the node count stay
/// Pending, which validation rules out when `spec.web.zones` is known).
pub fn anti_affinity(names: &Names, component: Component, strength: AntiAffinity) -> Affinity {
    let anti = match strength {
        AntiAffinity::Soft => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: term(names, component),
                },
            ]),
            ..PodAntiAffinity::default()
        },
        AntiAffinity::Hard => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term(names, component)]),
            ..PodAntiAffinity::default()
        },
    };
    Affinity {
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    }
}

/// Even spread across zones, best effort (a single-zone cluster still schedules).
pub fn zone_spread(names: &Names, component: Component) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        label_selector: Some(pod::selector(names.selector(component))),
        max_skew: 1,
        topology_key: ZONE.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        ..TopologySpreadConstraint::default()
    }]
}
