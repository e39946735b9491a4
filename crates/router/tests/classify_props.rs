//! Property tests (proptest) of the statement classifier: any input is classified without
//! panicking, comments and whitespace never change a decision, and locking reads never leave
//! the primary.

use hapress_router::classify::{classify, Where};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn any_bytes_are_classified(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = classify(&bytes);
    }

    #[test]
    fn any_sql_like_text_is_classified(s in "[a-zA-Z0-9 ,;'\"`@()*/#=!M\\-\\\\\n]{0,200}") {
        let _ = classify(s.as_bytes());
    }

    #[test]
    fn comments_and_whitespace_do_not_change_the_decision(
        table in "[a-z][a-z0-9_]{0,10}",
        col in "[a-z][a-z0-9_]{0,10}",
        comment in "[a-zA-Z0-9 ]{0,20}",
        ws in "[ \t\n]{1,4}",
    ) {
        let plain = format!("SELECT {col} FROM {table}");
        let decorated = format!("{ws}/* {comment} */SELECT{ws}{col}{ws}FROM {table} -- {comment}\n");
        prop_assert_eq!(classify(plain.as_bytes()), classify(decorated.as_bytes()));
    }

    #[test]
    fn locking_reads_stay_on_the_primary(
        table in "[a-z][a-z0-9_]{0,10}",
        lock in prop_oneof![Just("FOR UPDATE"), Just("LOCK IN SHARE MODE"), Just("for update nowait")],
        func in prop_oneof![Just(""), Just(", GET_LOCK('a', 1)"), Just(", LAST_INSERT_ID()")],
    ) {
        let sql = format!("SELECT * {func} FROM {table} WHERE id = 1 {lock}");
        prop_assert_eq!(classify(sql.as_bytes()).place, Where::Primary);
    }
}
