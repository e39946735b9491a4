//! The response tracker (and the text-result decoder over it) fed an arbitrary answer: never a
//! panic, never a step after the end.
//! The first byte picks the command, the second the `DEPRECATE_EOF` and cache-metadata
//! settings; the rest is a sequence of packets, each prefixed with a one-byte length.
#![no_main]

use hapress_wire::response::{ResponseTracker, Step};
use hapress_wire::rows::TextRows;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [command, flags, rest @ ..] = data else {
        return;
    };
    let cmd = [*command, 1, 0, 0, 0, 0, 1, 0, 0, 0];
    let Some(t) = ResponseTracker::new(&cmd, flags & 1 != 0) else {
        return;
    };
    let mut t = t.cache_metadata(flags & 2 != 0);
    // The router's own text-result decoder on the same packets: never a panic.
    let mut rows = TextRows::new(&cmd, flags & 1 != 0).ok();
    let mut rest = rest;
    let mut done = false;
    while let [len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (p, next) = tail.split_at(n);
        rest = next;
        if let Some(r) = rows.as_mut() {
            if !matches!(r.feed(p), Ok(None)) {
                rows = None;
            }
        }
        match t.feed(p, true) {
            Ok(Step::Done(_)) => {
                assert!(!done, "a second end");
                assert!(t.finished());
                done = true;
            }
            Ok(_) => assert!(!done, "a step after the end"),
            Err(_) => return,
        }
        if t.last_ok().is_some() {
            assert!(p.first() == Some(&0x00) || p.first() == Some(&0xfe));
        }
    }
});
