//! Kubernetes rendering of a `WordPressCluster` (placeholder; see issue 4).
