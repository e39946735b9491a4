//! Property tests (proptest) of the statement classifier: any input is classified without
//! panicking, comments and whitespace never change a decision, locking reads never leave the
//! primary, and nothing that is not provably a read may go to a replica.

use hapress_router::classify::{classify, Effect, Where};
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

    /// The safety property: a statement that writes, locks, changes session or server state,
    /// or reads something only the primary has, is never one a replica may run, however it is
    /// spelled (case, comments, whitespace, parentheses).
    #[test]
    fn nothing_but_a_plain_read_may_reach_a_replica(
        stmt in prop_oneof![
            Just("INSERT INTO t VALUES (1)"),
            Just("insert t set a = 1"),
            Just("UPDATE t SET a = a + 1 WHERE id = 1"),
            Just("DELETE FROM t WHERE id = 1"),
            Just("REPLACE INTO t VALUES (1)"),
            Just("CREATE TABLE x (i INT)"),
            Just("CREATE TEMPORARY TABLE x (i INT)"),
            Just("DROP TABLE t"),
            Just("ALTER TABLE t ADD c INT"),
            Just("TRUNCATE t"),
            Just("RENAME TABLE t TO u"),
            Just("CALL p()"),
            Just("LOCK TABLES t WRITE"),
            Just("UNLOCK TABLES"),
            Just("DO GET_LOCK('a', 1)"),
            Just("SET @a = 1"),
            Just("SET SESSION sql_mode = ''"),
            Just("SET GLOBAL max_connections = 10"),
            Just("SET autocommit = 0"),
            Just("BEGIN"),
            Just("START TRANSACTION READ ONLY"),
            Just("XA START 'x'"),
            Just("SAVEPOINT s"),
            Just("USE wordpress"),
            Just("PREPARE s FROM 'SELECT 1'"),
            Just("EXECUTE s"),
            Just("LOAD DATA LOCAL INFILE 'f' INTO TABLE t"),
            Just("HANDLER t OPEN"),
            Just("FLUSH TABLES"),
            Just("ANALYZE TABLE t"),
            Just("OPTIMIZE TABLE t"),
            Just("GRANT SELECT ON *.* TO u"),
            Just("KILL 5"),
            Just("SELECT a INTO @v FROM t"),
            Just("SELECT a FROM t INTO OUTFILE '/tmp/x'"),
            Just("SELECT * FROM t FOR UPDATE"),
            Just("SELECT * FROM t LOCK IN SHARE MODE"),
            Just("SELECT GET_LOCK('a', 1)"),
            Just("SELECT RELEASE_LOCK('a')"),
            Just("SELECT IS_USED_LOCK('a')"),
            Just("SELECT NEXTVAL(s)"),
            Just("SELECT NEXT VALUE FOR s"),
            Just("SELECT s.nextval"),
            Just("SELECT db.s.currval"),
            Just("SELECT LAST_INSERT_ID()"),
            Just("SELECT FOUND_ROWS()"),
            Just("SELECT ROW_COUNT()"),
            Just("SELECT @a := 1"),
            Just("SELECT * FROM t WHERE a = (@b := 2)"),
            Just("SELECT @@last_gtid"),
            Just("WITH x AS (SELECT 1) DELETE FROM t"),
            Just("WITH x AS (SELECT 1) UPDATE t SET a = 1"),
            Just("SHOW MASTER STATUS"),
            Just("SHOW PROCESSLIST"),
            Just("SELECT CONNECTION_ID()"),
            Just("SELECT * FROM t; DELETE FROM t"),
            Just("/*!40101 DELETE FROM t */"),
        ],
        upper in any::<bool>(),
        lead in prop_oneof![Just(""), Just(" "), Just("\n\t"), Just("/* c */ "), Just("-- c\n"), Just("# c\n"), Just("/**/")],
        parens in any::<bool>(),
        trail in prop_oneof![Just(""), Just(";"), Just(" -- end"), Just(" /* end */"), Just("\n")],
    ) {
        let body = if upper { stmt.to_uppercase() } else { stmt.to_lowercase() };
        let body = if parens && body.to_lowercase().starts_with("select") && !body.contains(';') {
            format!("({body})")
        } else {
            body
        };
        let sql = format!("{lead}{body}{trail}");
        let st = classify(sql.as_bytes());
        prop_assert!(
            !(st.place == Where::AnyServer && st.effect == Effect::None),
            "{:?} may run on a replica: {:?}", sql, st
        );
    }
}
