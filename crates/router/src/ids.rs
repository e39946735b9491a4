//! Maps keyed by ids the servers hand out (statement ids, thread ids), looked up per
//! statement: hashed with one multiplication rather than SipHash. The keys are the servers'
//! counters, never chosen by a client, so there is no flooding to defend against.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map from a server-assigned `u32` id.
pub type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// Multiplicative hashing of a `u32` id: an odd constant keeps consecutive ids in distinct
/// buckets (the low bits) and mixes them into the tag (the top bits).
#[derive(Default)]
pub struct IdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(GOLDEN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_get_distinct_buckets_and_tags() {
        // hashbrown picks the bucket from the low bits and the tag from the top 7: both
        // must differ between the consecutive ids a server hands out.
        let hash = |id: u32| {
            let mut h = IdHasher::default();
            h.write_u32(id);
            h.finish()
        };
        let tags: std::collections::HashSet<u64> = (1..=64).map(|id| hash(id) >> 57).collect();
        assert!(tags.len() > 32, "{} distinct tags of 64", tags.len());
        let buckets: std::collections::HashSet<u64> = (1..=64).map(|id| hash(id) & 63).collect();
        assert!(
            buckets.len() > 32,
            "{} distinct buckets of 64",
            buckets.len()
        );
        let mut m: IdMap<u32> = IdMap::default();
        for id in 1..=1000 {
            m.insert(id, id * 2);
        }
        assert!((1..=1000).all(|id| m[&id] == id * 2));
    }
}
