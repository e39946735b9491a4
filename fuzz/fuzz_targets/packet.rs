//! Every decoder of client and server packets on arbitrary bytes: never a panic, and what
//! decodes re-encodes consistently.
#![no_main]

use hapress_wire::command::Command;
use hapress_wire::handshake::{Greeting, HandshakeResponse};
use hapress_wire::packet::{read_logical, Framer};
use hapress_wire::response::{parse_err, OkPacket};
use hapress_wire::stmt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The framer over a stream: chunks lie inside the buffer, in order.
    let mut f = Framer::new();
    let mut at = 0;
    while let Some(c) = f.next(&data[at..]) {
        assert!(c.size() > 0 && at + c.size() <= data.len());
        at += c.size();
    }
    let _ = read_logical(data, 1 << 20);
    if let Ok(c) = Command::parse(data) {
        assert_eq!(c.code(), data[0]);
        if let Command::StmtExecute { id, .. } = c {
            for params in [0u16, 1, 2, 7] {
                if let Ok(e) = stmt::parse_execute(data, params) {
                    assert_eq!(e.id, id);
                    let types = vec![8u8; 2 * usize::from(params)];
                    if let Ok(moved) = stmt::readdress_execute(data, params, id ^ 1, &types) {
                        let back = stmt::parse_execute(&moved, params).unwrap();
                        assert_eq!(back.id, id ^ 1);
                        assert_eq!(back.flags, e.flags);
                    }
                }
            }
        }
    }
    if let Ok(ok) = OkPacket::parse(data) {
        let _ = ok.last_gtid(data);
        if let Some(plain) = ok.without_session_state(data) {
            let again = OkPacket::parse(&plain).unwrap();
            assert_eq!(again.ok.affected_rows, ok.ok.affected_rows);
            assert_eq!(again.ok.last_insert_id, ok.ok.last_insert_id);
            assert_eq!(again.last_gtid(&plain), None);
        }
    }
    let _ = parse_err(data);
    if let Ok(g) = Greeting::parse(data) {
        let _ = Greeting::parse(&g.encode());
    }
    if let Ok(h) = HandshakeResponse::parse(data) {
        let _ = HandshakeResponse::parse(&h.encode());
    }
});
