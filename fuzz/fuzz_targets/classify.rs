//! The classifier and the routing decision on arbitrary statement text: never a panic, and
//! nothing that is not a plain read is ever planned for a replica.
#![no_main]

use hapress_router::classify::{classify, Effect, Where};
use hapress_router::route::{decide, Plan, ReadYourWrites, SessionView};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let st = classify(data);
    let free = SessionView {
        replica_available: true,
        credential: true,
        ..SessionView::default()
    };
    for ryw in [
        ReadYourWrites::None,
        ReadYourWrites::Session,
        ReadYourWrites::Global,
    ] {
        if let Plan::Replica { .. } = decide(&st, &free, ryw) {
            assert_eq!(
                st.place,
                Where::AnyServer,
                "{:?}",
                String::from_utf8_lossy(data)
            );
            assert_eq!(
                st.effect,
                Effect::None,
                "{:?}",
                String::from_utf8_lossy(data)
            );
            assert!(!st.hint_primary);
        }
    }
    if st.effect == Effect::Write {
        // Anything that writes runs on the primary, whatever the session looks like.
        assert_eq!(decide(&st, &free, ReadYourWrites::None), Plan::Primary);
    }
});
