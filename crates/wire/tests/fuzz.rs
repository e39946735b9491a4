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
