//! The decision tables.

use super::*;

const SETTINGS: Settings = Settings {
    detect_probes: 3,
    silence: Duration::from_millis(1500),
    preferred: None,
};

/// A reachable writable primary.
fn primary() -> ServerSeen {
    ServerSeen {
        reachable: true,
        gtid: "0-1-10".into(),
        ..ServerSeen::default()
    }
}

/// A reachable read-only replica of `m`, receiving.
fn replica(m: usize) -> ServerSeen {
    ServerSeen {
        reachable: true,
        read_only: true,
        gtid: "0-1-10".into(),
        replica: Some(ReplicaSeen {
            master: Some(m),
            io: Io::Running,
            sql_running: true,
            ..ReplicaSeen::default()
        }),
        ..ServerSeen::default()
    }
}

/// A server that missed `n` probes in a row.
fn gone(n: u32) -> ServerSeen {
    ServerSeen {
        failures: n,
        ..ServerSeen::default()
    }
}

/// `s` with its IO thread in `io`, silent for `ms`.
fn io(mut s: ServerSeen, io: Io, ms: u64) -> ServerSeen {
    let r = s.replica.as_mut().unwrap();
    r.io = io;
    r.silent_for = Duration::from_millis(ms);
    s
}

/// What a case is called, the servers, the current primary, the one elected.
type ElectionCase = (&'static str, Vec<ServerSeen>, Option<usize>, Option<usize>);

#[test]
fn election() {
    let healthy = vec![primary(), replica(0), replica(0)];
    let resumed_old = vec![primary(), primary(), replica(1)]; // 0 came back writable
    let table: &[ElectionCase] = &[
        ("the one writable server", healthy.clone(), None, Some(0)),
        ("kept", healthy.clone(), Some(0), Some(0)),
        (
            "a current that became read-only is dropped",
            vec![replica(1), primary(), replica(1)],
            Some(0),
            Some(1),
        ),
        (
            "no writable server",
            vec![gone(1), replica(0), replica(0)],
            Some(0),
            None,
        ),
        (
            "two writable, nobody follows either: none until one is fenced",
            vec![primary(), primary(), replica(5)],
            None,
            None,
        ),
        (
            "an old primary back writable is contradicted by the replicas",
            resumed_old.clone(),
            None,
            Some(1),
        ),
        (
            "even for a router that still routes to it",
            resumed_old,
            Some(0),
            Some(1),
        ),
        (
            "a replica that only tries to reach the old one does not contradict",
            vec![
                primary(),
                io(replica(2), Io::Connecting, 9000),
                ServerSeen {
                    read_only: true,
                    ..gone(0)
                },
            ],
            None,
            Some(0),
        ),
        ("a single server", vec![primary()], None, Some(0)),
        ("an index out of range", healthy, Some(7), Some(0)),
    ];
    for (what, servers, current, want) in table {
        assert_eq!(elect(servers, *current), *want, "{what}");
    }
}

fn failover(from: Option<usize>, candidates: &[usize]) -> impl Fn(&[Action]) -> bool + '_ {
    move |a: &[Action]| matches!(a, [Action::Failover { from: f, candidates: c, .. }] if *f == from && c == candidates)
}

#[test]
fn when_the_primary_is_lost() {
    let none = |a: &[Action]| a.is_empty();
    #[allow(clippy::type_complexity)]
    let table: &[(
        &str,
        Vec<ServerSeen>,
        Option<usize>,
        &dyn Fn(&[Action]) -> bool,
    )] = &[
        (
            "one missed probe is a hiccup",
            vec![gone(1), io(replica(0), Io::Connecting, 0), replica(0)],
            Some(0),
            &none,
        ),
        (
            "two are still a hiccup",
            vec![gone(2), io(replica(0), Io::Connecting, 0), replica(0)],
            Some(0),
            &none,
        ),
        (
            "three, but a replica still receives from it: the router's link is down, not it",
            vec![gone(3), io(replica(0), Io::Connecting, 0), replica(0)],
            Some(0),
            &none,
        ),
        (
            "three, and both replicas lost it (killed)",
            vec![
                gone(3),
                io(replica(0), Io::Connecting, 0),
                io(replica(0), Io::Connecting, 0),
            ],
            Some(0),
            &failover(Some(0), &[1, 2]),
        ),
        (
            "three, and both replicas hear nothing (hung)",
            vec![
                gone(3),
                io(replica(0), Io::Running, 1600),
                io(replica(0), Io::Running, 2000),
            ],
            Some(0),
            &failover(Some(0), &[1, 2]),
        ),
        (
            "hung, but not silent long enough yet",
            vec![
                gone(5),
                io(replica(0), Io::Running, 1600),
                io(replica(0), Io::Running, 1000),
            ],
            Some(0),
            &none,
        ),
        (
            "an unreachable replica cannot confirm or object",
            vec![gone(3), io(replica(0), Io::Connecting, 0), gone(9)],
            Some(0),
            &none, // only 1 of 3 reachable: a minority never promotes
        ),
        (
            "restarted in place, read-only: promote now (it may win again)",
            vec![
                ServerSeen {
                    reachable: true,
                    read_only: true,
                    ..ServerSeen::default()
                },
                io(replica(0), Io::Connecting, 0),
                replica(0),
            ],
            Some(0),
            &failover(Some(0), &[0, 1, 2]),
        ),
        (
            "a former primary that already replicates is a replica",
            vec![replica(1), gone(0), replica(1)],
            Some(0),
            &none,
        ),
        (
            "a router that never saw a primary takes the most followed server as the lost one",
            vec![
                gone(4),
                io(replica(0), Io::Connecting, 0),
                io(replica(0), Io::Connecting, 0),
            ],
            None,
            &failover(Some(0), &[1, 2]),
        ),
        (
            "a diverged replica is no candidate",
            vec![
                gone(3),
                io(replica(0), Io::Connecting, 0),
                ServerSeen {
                    replica: Some(ReplicaSeen {
                        sql_errno: 1062,
                        master: Some(0),
                        ..ReplicaSeen::default()
                    }),
                    ..replica(0)
                },
            ],
            Some(0),
            &failover(Some(0), &[1]),
        ),
        (
            "a new cluster: every server read-only, nothing replicates",
            vec![
                ServerSeen {
                    reachable: true,
                    read_only: true,
                    ..ServerSeen::default()
                };
                3
            ],
            None,
            &failover(None, &[0, 1, 2]),
        ),
        (
            "two writable servers, none followed",
            vec![primary(), primary(), gone(1)],
            None,
            &failover(None, &[0, 1]),
        ),
    ];
    for (what, servers, former, ok) in table {
        let got = plan(servers, None, *former, &SETTINGS);
        assert!(ok(&got), "{what}: {got:?}");
    }
}

#[test]
fn a_flapping_primary_never_fails_over() {
    // Probe after probe, a primary that misses at most two in a row and replicas that lose
    // it for a moment each time.
    let mut failures = 0;
    for (i, answers) in [true, false, false, true, false, true, false, false, true]
        .into_iter()
        .enumerate()
    {
        failures = if answers { 0 } else { failures + 1 };
        let p = if answers { primary() } else { gone(failures) };
        let servers = vec![
            p,
            io(replica(0), Io::Connecting, 0),
            io(replica(0), Io::Connecting, 0),
        ];
        let elected = elect(&servers, Some(0));
        let got = plan(&servers, elected, Some(0), &SETTINGS);
        assert!(
            got.iter().all(|a| !matches!(a, Action::Failover { .. })),
            "probe {i}: {got:?}"
        );
    }
}

#[test]
fn with_a_primary_every_other_server_is_brought_in_line() {
    let rejoin = |server| Action::Rejoin { server, primary: 0 };
    let standalone = ServerSeen {
        reachable: true,
        read_only: true,
        ..ServerSeen::default()
    };
    let mut stopped = replica(0);
    stopped.replica.as_mut().unwrap().io = Io::Stopped;
    let mut errant = replica(0);
    errant.replica.as_mut().unwrap().io_errno = 1236;
    let mut broken = replica(0);
    broken.replica.as_mut().unwrap().sql_errno = 1950;
    broken.replica.as_mut().unwrap().sql_running = false;
    let table: &[(&str, ServerSeen, Vec<Action>)] = &[
        ("a healthy replica", replica(0), vec![]),
        (
            "one still connecting to the primary",
            io(replica(0), Io::Connecting, 5000),
            vec![],
        ),
        ("an unreachable one is left alone", gone(9), vec![]),
        ("an old primary back read-only", standalone, vec![rejoin(1)]),
        (
            "an old primary back writable: fenced, then rejoined",
            primary(),
            vec![Action::Fence(1), rejoin(1)],
        ),
        ("following another server", replica(2), vec![rejoin(1)]),
        ("threads stopped without an error", stopped, vec![rejoin(1)]),
        (
            "errant transactions (1236)",
            errant,
            vec![Action::Diverged {
                server: 1,
                why: "its IO thread stopped with error 1236".into(),
            }],
        ),
        (
            "an SQL thread error",
            broken,
            vec![Action::Diverged {
                server: 1,
                why: "its SQL thread stopped with error 1950".into(),
            }],
        ),
    ];
    for (what, second, want) in table {
        let servers = vec![primary(), second.clone(), replica(0)];
        assert_eq!(plan(&servers, Some(0), Some(0), &SETTINGS), *want, "{what}");
    }
}

#[test]
fn the_primary_moves_to_the_preferred_server_once_it_has_caught_up() {
    let prefer = |p| Settings {
        preferred: p,
        ..SETTINGS
    };
    let mut behind = replica(0);
    behind.gtid = "0-1-9".into();
    let mut stopped = replica(0);
    stopped.replica.as_mut().unwrap().sql_running = false;
    let healthy = vec![primary(), replica(0), replica(0)];
    type Case = (&'static str, Vec<ServerSeen>, Option<usize>, Vec<Action>);
    let table: &[Case] = &[
        (
            "a caught-up replica",
            healthy.clone(),
            Some(2),
            vec![Action::Switchover { to: 2 }],
        ),
        ("none preferred", healthy.clone(), None, vec![]),
        (
            "the preferred one is the primary",
            healthy.clone(),
            Some(0),
            vec![],
        ),
        (
            "behind the primary",
            vec![primary(), replica(0), behind],
            Some(2),
            vec![],
        ),
        (
            "unreachable",
            vec![primary(), replica(0), gone(4)],
            Some(2),
            vec![],
        ),
        (
            "other servers to bring in line first",
            vec![primary(), replica(2), replica(0)],
            Some(2),
            vec![Action::Rejoin {
                server: 1,
                primary: 0,
            }],
        ),
        (
            "its SQL thread stopped: it is rejoined, not promoted",
            vec![primary(), replica(0), stopped],
            Some(2),
            vec![Action::Rejoin {
                server: 2,
                primary: 0,
            }],
        ),
        ("out of range", healthy.clone(), Some(7), vec![]),
    ];
    for (what, servers, preferred, want) in table {
        assert_eq!(
            plan(servers, Some(0), Some(0), &prefer(*preferred)),
            *want,
            "{what}"
        );
    }
}

#[test]
fn only_a_majority_of_locks_leads() {
    use Leadership::*;
    use Lock::*;
    let table: &[(&[Lock], Leadership)] = &[
        (&[Mine, Mine, Unknown], Leader),
        (&[Unknown, Mine, Mine], Leader),
        (&[Mine, Other, Other], Release),
        (&[Mine, Unknown, Other], Release),
        (&[Other, Other, Unknown], Wait),
        (&[Free, Free, Free], Acquire(vec![0, 1, 2])),
        (&[Unknown, Free, Free], Acquire(vec![1, 2])),
        (&[Mine, Free, Unknown], Acquire(vec![1])),
        (&[Unknown, Unknown, Mine], Wait),
        (&[Mine], Leader),
        (&[Mine, Mine, Free, Free], Acquire(vec![2, 3])),
        (&[Mine, Mine, Mine, Other], Leader),
    ];
    for (locks, want) in table {
        assert_eq!(leadership(locks), *want, "{locks:?}");
    }
}

#[test]
fn two_routers_never_both_lead() {
    // Every assignment of 3 servers' locks to two routers (or nobody): at most one leads.
    let holders = [None, Some(0), Some(1)];
    for a in holders {
        for b in holders {
            for c in holders {
                let view = |me| {
                    [a, b, c]
                        .iter()
                        .map(|h| match h {
                            None => Lock::Free,
                            Some(x) if *x == me => Lock::Mine,
                            Some(_) => Lock::Other,
                        })
                        .collect::<Vec<_>>()
                };
                let leaders = (0..2)
                    .filter(|&me| leadership(&view(me)) == Leadership::Leader)
                    .count();
                assert!(leaders <= 1, "{a:?} {b:?} {c:?}");
            }
        }
    }
}
