//! MariaDB GTID positions (`0-1-42,1-2-7`: domain, server id, sequence number per domain) as
//! the router and the topology decisions compare them. Pure.

use std::cmp::Ordering;

/// Parses a GTID position such as `0-1-42,1-2-7` into (domain, server, sequence) triples;
/// malformed parts are skipped.
pub fn parse_gtids(s: &str) -> Vec<(u32, u32, u64)> {
    s.split(',')
        .filter_map(|g| {
            let mut it = g.trim().splitn(3, '-');
            Some((
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// True when position `have` includes every domain's sequence number of `want`.
pub fn gtid_covers(have: &str, want: &str) -> bool {
    let have = parse_gtids(have);
    parse_gtids(want)
        .iter()
        .all(|(d, _, n)| have.iter().any(|(hd, _, hn)| hd == d && hn >= n))
}

/// How two positions compare: `Some(Greater)` when `a` has everything `b` has and more,
/// `Some(Equal)` when they have the same, `None` when each has something the other lacks (in
/// different domains).
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    match (gtid_covers(a, b), gtid_covers(b, a)) {
        (true, true) => Some(Ordering::Equal),
        (true, false) => Some(Ordering::Greater),
        (false, true) => Some(Ordering::Less),
        (false, false) => None,
    }
}

/// The most advanced of `positions` (index, position): one that covers every other; among
/// equals `prefer` when it is one of them, else the first. When no position covers all the
/// others (domains that moved apart), the one with the highest sum of sequence numbers.
pub fn most_advanced(positions: &[(usize, String)], prefer: Option<usize>) -> Option<usize> {
    let covers_all = |(_, p): &&(usize, String)| positions.iter().all(|(_, q)| gtid_covers(p, q));
    let best: Vec<usize> = positions.iter().filter(covers_all).map(|e| e.0).collect();
    if let Some(p) = prefer.filter(|p| best.contains(p)) {
        return Some(p);
    }
    if let Some(&first) = best.first() {
        return Some(first);
    }
    positions
        .iter()
        .max_by_key(|(i, p)| {
            let sum: u64 = parse_gtids(p).iter().map(|g| g.2).sum();
            (sum, std::cmp::Reverse(*i))
        })
        .map(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_parse_and_compare() {
        assert_eq!(parse_gtids("0-1-42,1-2-7"), vec![(0, 1, 42), (1, 2, 7)]);
        assert_eq!(parse_gtids(""), vec![]);
        assert_eq!(parse_gtids("x-1-2, 0-1-3"), vec![(0, 1, 3)]);
        assert!(gtid_covers("0-1-20,1-2-3", "0-1-20"));
        assert!(!gtid_covers("0-1-19", "0-1-20"));
        assert!(!gtid_covers("1-1-30", "0-1-20"), "a domain it lacks");
        assert!(gtid_covers("0-1-1", ""), "everything covers nothing");
        assert_eq!(compare("0-2-9", "0-1-9"), Some(Ordering::Equal));
        assert_eq!(compare("0-2-10", "0-1-9"), Some(Ordering::Greater));
        assert_eq!(compare("0-1-8", "0-1-9"), Some(Ordering::Less));
        assert_eq!(compare("0-1-8,1-1-5", "0-1-9"), None);
    }

    #[test]
    fn the_most_advanced_server_wins_and_ties_keep_the_preferred_one() {
        let p = |v: &[(usize, &str)]| -> Vec<(usize, String)> {
            v.iter().map(|(i, s)| (*i, s.to_string())).collect()
        };
        let three = p(&[(0, "0-1-10"), (1, "0-1-12"), (2, "0-1-11")]);
        assert_eq!(most_advanced(&three, Some(0)), Some(1));
        let tie = p(&[(0, "0-1-12"), (1, "0-1-12"), (2, "0-1-11")]);
        assert_eq!(most_advanced(&tie, Some(0)), Some(0));
        assert_eq!(most_advanced(&tie, Some(1)), Some(1));
        assert_eq!(most_advanced(&tie, Some(2)), Some(0), "2 is behind");
        assert_eq!(most_advanced(&tie, None), Some(0));
        let apart = p(&[(0, "0-1-12,1-1-1"), (1, "0-1-5,1-1-20")]);
        assert_eq!(most_advanced(&apart, None), Some(1));
        assert_eq!(most_advanced(&[], None), None);
    }
}
