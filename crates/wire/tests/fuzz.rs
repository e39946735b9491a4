//! Property tests (proptest) over the protocol decoder: arbitrary bytes from a peer never panic,
//! and what we encode decodes to the same thing.

use hapress_wire::codec::{put_lenenc_int, Reader};
use hapress_wire::consts::cmd;
use hapress_wire::handshake::{AuthSwitch, Greeting, HandshakeResponse};
use hapress_wire::packet::{read_logical, write_packet, Framer};
use hapress_wire::response::{parse_err, parse_ok, ResponseTracker};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Greeting::parse(&bytes);
        let _ = HandshakeResponse::parse(&bytes);
        let _ = AuthSwitch::parse(&bytes);
        let _ = parse_ok(&bytes);
        let _ = parse_err(&bytes);
        let _ = read_logical(&bytes, 1 << 20);
        let _ = Framer::new().next(&bytes);
        let mut r = Reader::new(&bytes);
        while r.lenenc_bytes().is_ok() && !r.is_empty() {}
    }

    #[test]
    fn tracker_survives_any_packet_sequence(
        command in prop_oneof![Just(cmd::QUERY), Just(cmd::STMT_PREPARE), Just(cmd::STMT_EXECUTE), Just(cmd::STMT_FETCH), Just(cmd::FIELD_LIST), Just(cmd::PING)],
        deprecate_eof in any::<bool>(),
        packets in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..40), any::<bool>()), 0..30),
    ) {
        let mut t = ResponseTracker::new(&[command], deprecate_eof).unwrap();
        for (p, whole) in packets {
            if t.feed(&p, whole).is_err() || t.finished() {
                break;
            }
        }
    }

    #[test]
    fn packets_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..5000), seq in any::<u8>()) {
        let mut out = Vec::new();
        write_packet(&mut out, seq, &payload);
        let (got, last, used) = read_logical(&out, usize::MAX).unwrap().unwrap();
        prop_assert_eq!(got, payload);
        prop_assert_eq!(last, seq);
        prop_assert_eq!(used, out.len());
    }

    #[test]
    fn lenenc_round_trips(n in any::<u64>()) {
        let mut v = Vec::new();
        put_lenenc_int(&mut v, n);
        prop_assert_eq!(Reader::new(&v).lenenc_int().unwrap(), n);
    }
}

/// An OK packet: `affected`, `insert_id`, `status`, `info`, then the session-state block when
/// `state` is given (and `SESSION_STATE_CHANGED` set).
fn ok_with(
    affected: u64,
    insert_id: u64,
    status: u16,
    info: &[u8],
    state: Option<&[u8]>,
) -> Vec<u8> {
    use hapress_wire::codec::put_lenenc_bytes;
    use hapress_wire::consts::status::SESSION_STATE_CHANGED;
    let mut p = vec![0];
    put_lenenc_int(&mut p, affected);
    put_lenenc_int(&mut p, insert_id);
    let status = if state.is_some() {
        status | SESSION_STATE_CHANGED
    } else {
        status & !SESSION_STATE_CHANGED
    };
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    if !info.is_empty() || state.is_some() {
        put_lenenc_bytes(&mut p, info);
    }
    if let Some(s) = state {
        put_lenenc_bytes(&mut p, s);
    }
    p
}

/// A session-state block with `last_gtid` = `gtid` among other tracked changes.
fn state_with_gtid(gtid: &str, schema: &[u8]) -> Vec<u8> {
    use hapress_wire::codec::put_lenenc_bytes;
    let mut var = Vec::new();
    put_lenenc_bytes(&mut var, b"last_gtid");
    put_lenenc_bytes(&mut var, gtid.as_bytes());
    let mut s = vec![1]; // a schema change first
    let mut sch = Vec::new();
    put_lenenc_bytes(&mut sch, schema);
    put_lenenc_bytes(&mut s, &sch);
    s.push(0);
    put_lenenc_bytes(&mut s, &var);
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The prepared-statement and OK-packet helpers the session uses on every answer never
    /// panic on what a peer sends.
    #[test]
    fn statement_and_ok_helpers_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        params in 0u16..40,
        id in any::<u32>(),
        types in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        use hapress_wire::response::{ok_last_gtid, ok_without_session_state};
        use hapress_wire::stmt::{parse_execute, readdress_execute};
        let _ = parse_execute(&bytes, params);
        let _ = readdress_execute(&bytes, params, id, &types);
        let _ = hapress_wire::command::Command::parse(&bytes);
        let _ = ok_last_gtid(&bytes);
        let _ = ok_without_session_state(&bytes);
    }

    /// A `COM_STMT_EXECUTE` re-addressed to another statement id carries that id, the
    /// parameter types given (when the client's packet did not bind them) or its own, and the
    /// same null bitmap and values.
    #[test]
    fn readdressed_executes_keep_everything_but_the_id(
        params in 0u16..20,
        from in any::<u32>(),
        to in any::<u32>(),
        flags in 0u8..2,
        bound_here in any::<bool>(),
        seed in proptest::collection::vec(any::<u8>(), 60..120),
        values in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        use hapress_wire::stmt::{parse_execute, readdress_execute};
        let n = usize::from(params);
        let nulls = &seed[..n.div_ceil(8)];
        let types = &seed[n.div_ceil(8)..n.div_ceil(8) + 2 * n];
        let mut p = vec![cmd::STMT_EXECUTE];
        p.extend_from_slice(&from.to_le_bytes());
        p.push(flags);
        p.extend_from_slice(&1u32.to_le_bytes());
        if n > 0 {
            p.extend_from_slice(nulls);
            p.push(u8::from(bound_here));
            if bound_here {
                p.extend_from_slice(types);
            }
        }
        p.extend_from_slice(&values);
        let remembered = [7u8, 0].repeat(n);
        let out = readdress_execute(&p, params, to, &remembered).unwrap();
        let e = parse_execute(&out, params).unwrap();
        prop_assert_eq!(e.id, to);
        prop_assert_eq!(e.flags, flags);
        if n > 0 {
            let want: &[u8] = if bound_here { types } else { &remembered };
            prop_assert_eq!(e.types, Some(want));
            prop_assert_eq!(&out[10..10 + nulls.len()], nulls);
        }
        prop_assert!(out.ends_with(&values));
    }

    /// The GTID of a write is read from any OK packet that tracks it, and stripping the session
    /// state keeps the counts and the info string, drops the flag.
    #[test]
    fn ok_packets_give_their_gtid_and_lose_only_the_state(
        affected in any::<u64>(),
        insert_id in any::<u64>(),
        status in any::<u16>(),
        info in proptest::collection::vec(any::<u8>(), 0..300),
        domain in 0u32..10,
        server in 1u32..5000,
        seq in any::<u64>(),
        schema in "[a-z]{1,12}",
    ) {
        use hapress_wire::consts::status::SESSION_STATE_CHANGED;
        use hapress_wire::response::{ok_last_gtid, ok_without_session_state};
        let gtid = format!("{domain}-{server}-{seq}");
        let p = ok_with(affected, insert_id, status, &info, Some(&state_with_gtid(&gtid, schema.as_bytes())));
        prop_assert_eq!(ok_last_gtid(&p), Some(gtid));
        let plain = ok_without_session_state(&p).unwrap();
        let ok = parse_ok(&plain).unwrap();
        prop_assert_eq!((ok.affected_rows, ok.last_insert_id), (affected, insert_id));
        prop_assert_eq!(ok.status, status & !SESSION_STATE_CHANGED);
        prop_assert_eq!(plain, ok_with(affected, insert_id, status, &info, None));
    }

    /// Well-formed result sets of any shape (columns, rows, several results chained by
    /// MORE_RESULTS_EXISTS, with or without EOF packets) end exactly at their last packet.
    #[test]
    fn the_tracker_ends_result_sets_exactly_at_their_end(
        deprecate_eof in any::<bool>(),
        results in proptest::collection::vec((1u64..6, proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..6)), 1..4),
        final_ok in any::<bool>(),
    ) {
        use hapress_wire::consts::status::MORE_RESULTS_EXISTS;
        let mut packets: Vec<Vec<u8>> = Vec::new();
        let eof = |status: u16| {
            if deprecate_eof {
                let mut p = ok_with(0, 0, status, b"", None);
                p[0] = 0xfe;
                p
            } else {
                let mut p = vec![0xfe, 0, 0];
                p.extend_from_slice(&status.to_le_bytes());
                p
            }
        };
        for (k, (columns, rows)) in results.iter().enumerate() {
            let last = k + 1 == results.len() && !final_ok;
            let more = if last { 0 } else { MORE_RESULTS_EXISTS };
            let mut count = Vec::new();
            put_lenenc_int(&mut count, *columns);
            packets.push(count);
            for c in 0..*columns {
                // A column definition: catalog "def", then names (content is not looked at).
                let mut d = vec![3, b'd', b'e', b'f'];
                d.extend_from_slice(&[1, b's', 1, b't', 1, b't', 1, b'c', 1, b'c', 0x0c]);
                d.extend_from_slice(&[33, 0, (c as u8), 0, 0, 0, 253, 0, 0, 0, 0, 0]);
                packets.push(d);
            }
            if !deprecate_eof {
                packets.push(eof(2));
            }
            for row in rows {
                // Text rows: one length-encoded value per column, or NULL (0xfb).
                let mut r = Vec::new();
                for c in 0..*columns {
                    if (c as usize) < row.len() && row[c as usize] % 5 == 0 {
                        r.push(0xfb);
                    } else {
                        hapress_wire::codec::put_lenenc_bytes(&mut r, row);
                    }
                }
                packets.push(r);
            }
            packets.push(eof(2 | more));
        }
        if final_ok {
            packets.push(ok_with(0, 0, 2, b"", None));
        }
        let mut t = ResponseTracker::new(&[cmd::QUERY], deprecate_eof).unwrap();
        for (i, p) in packets.iter().enumerate() {
            prop_assert!(!t.finished(), "finished before packet {} of {}", i, packets.len());
            t.feed(p, true).unwrap();
        }
        prop_assert!(t.finished(), "not finished after the last packet");
    }
}
