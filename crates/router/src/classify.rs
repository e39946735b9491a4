//! What a statement is, from its text alone: where it may run and what it does to the session.
//!
//! The classifier is conservative: anything it does not recognise as a plain read runs on the
//! primary. It never sees inside string literals or ordinary comments, but it does read
//! MariaDB's executable comments (`/*! ... */`, `/*M! ... */`), because the server runs them.

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// Only on the primary.
    Primary,
    /// On any server that is up to date enough (an autocommit read).
    AnyServer,
    /// On the server that ran the session's previous statement (`SHOW WARNINGS`, `FOUND_ROWS()`).
    Previous,
}

/// What a statement does to the session beyond its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing the router tracks.
    None,
    /// Changes session state in a way that is replayed on every other backend the session uses
    /// (`SET NAMES`, `SET SESSION sql_mode=...`).
    Replay,
    /// `USE db`.
    UseDb(String),
    /// Ties the session to the primary for good: temporary tables, table locks, SQL-level
    /// prepared statements, `HANDLER`, multi-statements (reason given).
    Pin(&'static str),
    /// Modifies data: later reads of this session must see it (read-your-writes).
    Write,
    /// `SET GLOBAL`: new connections take the new value; pooled ones would not.
    SetGlobal {
        /// One variable of [`MIRRORED_GLOBALS`]: the router sets it on the replicas too.
        mirrored: bool,
    },
}

/// A classified statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Where it may run.
    pub place: Where,
    /// What it does to the session.
    pub effect: Effect,
    /// `/* hapress:primary */` was given.
    pub hint_primary: bool,
    /// `SQL_CALC_FOUND_ROWS`: the next `FOUND_ROWS()` must run on the same server.
    pub calc_found_rows: bool,
    /// Uses state of the connection it runs on that the router cannot carry to another
    /// connection: user variables, named locks, `LAST_INSERT_ID()`, `CONNECTION_ID()`,
    /// `LASTVAL()`. A session that ran one stays on its primary connection.
    pub connection_state: bool,
    /// `KILL [QUERY] <id>`: the thread id and whether only its statement is killed
    /// ([`kill_target`]).
    pub kill: Option<(u32, bool)>,
    /// A write that may create, drop or change an account or its password (`CREATE USER`,
    /// `GRANT`, `SET PASSWORD`, `FLUSH PRIVILEGES`, any write to the `mysql` schema...): the
    /// password hashes the router checks logins with must be read again.
    pub changes_accounts: bool,
}

/// The statement's code, lower-cased, with literals as `?`, comments dropped (executable ones
/// kept), whitespace collapsed; plus whether a `hapress:primary` hint was seen and whether a
/// second statement follows a `;`.
#[derive(Debug, Default)]
struct Scan {
    code: String,
    hint_primary: bool,
    multi: bool,
}

fn scan(sql: &[u8]) -> Scan {
    let mut s = Scan::default();
    let mut i = 0;
    let n = sql.len();
    let mut after_semicolon = false;
    let push = |s: &mut Scan, c: char| {
        if c.is_whitespace() {
            if !s.code.is_empty() && !s.code.ends_with(' ') {
                s.code.push(' ');
            }
        } else {
            s.code.push(c.to_ascii_lowercase());
        }
    };
    while i < n {
        let c = sql[i];
        match c {
            b'\'' | b'"' => {
                // String literal ("..." is a string unless ANSI_QUOTES; either way not a keyword).
                i += 1;
                while i < n && sql[i] != c {
                    if sql[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                if after_semicolon {
                    s.multi = true;
                }
                push(&mut s, '?');
                continue;
            }
            b'`' => {
                i += 1;
                let start = i;
                while i < n && sql[i] != b'`' {
                    i += 1;
                }
                // A quoted identifier is just an identifier, unless it names a schema whose
                // contents differ per server.
                let name = String::from_utf8_lossy(&sql[start..i.min(n)]).to_ascii_lowercase();
                i += 1;
                if matches!(
                    name.as_str(),
                    "mysql" | "information_schema" | "performance_schema" | "sys"
                ) {
                    name.chars().for_each(|c| push(&mut s, c));
                } else {
                    push(&mut s, 'i');
                }
                continue;
            }
            b'#' => {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
                push(&mut s, ' ');
                continue;
            }
            b'-' if sql.get(i + 1) == Some(&b'-')
                && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
                push(&mut s, ' ');
                continue;
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                let body_start = i + 2;
                let end = sql[body_start..]
                    .windows(2)
                    .position(|w| w == b"*/")
                    .map_or(n, |p| body_start + p);
                let body = &sql[body_start..end];
                let executable = body.starts_with(b"!") || body.starts_with(b"M!");
                if executable {
                    // Drop the marker and version digits; the rest is code.
                    let mut k = if body.starts_with(b"M!") { 2 } else { 1 };
                    while k < body.len() && body[k].is_ascii_digit() {
                        k += 1;
                    }
                    let inner = scan(&body[k..]);
                    if after_semicolon && !inner.code.is_empty() {
                        s.multi = true;
                    }
                    s.hint_primary |= inner.hint_primary;
                    s.multi |= inner.multi;
                    push(&mut s, ' ');
                    for ch in inner.code.chars() {
                        push(&mut s, ch);
                    }
                } else if String::from_utf8_lossy(body)
                    .to_ascii_lowercase()
                    .contains("hapress:primary")
                {
                    s.hint_primary = true;
                }
                push(&mut s, ' ');
                i = (end + 2).min(n.max(end));
                continue;
            }
            b';' => {
                after_semicolon = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        if after_semicolon && !c.is_ascii_whitespace() {
            s.multi = true;
        }
        push(&mut s, char::from(c));
        i += 1;
    }
    while s.code.ends_with(' ') {
        s.code.pop();
    }
    s
}

/// True if `code` contains `word` as a whole word (or, for words ending in `(`, as a call,
/// with or without a space before the parenthesis).
fn has_word(code: &str, word: &str) -> bool {
    if let Some(name) = word.strip_suffix('(') {
        return has_word_exact(code, &format!("{name} (")) || has_word_exact(code, word);
    }
    has_word_exact(code, word)
}

fn has_word_exact(code: &str, word: &str) -> bool {
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find(word) {
        let start = from + p;
        let end = start + word.len();
        let before_ok = start == 0 || !is_ident(bytes[start - 1]);
        let after_ok = word.ends_with('(') || end >= bytes.len() || !is_ident(bytes[end]);
        if before_ok && after_ok {
            return true;
        }
        from = start + 1;
    }
    false
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Function calls that make a read unsafe on a replica: locks, session-local values, sequences.
const PRIMARY_FUNCTIONS: &[&str] = &[
    "get_lock(",
    "release_lock(",
    "release_all_locks(",
    "is_free_lock(",
    "is_used_lock(",
    "last_insert_id(",
    "connection_id(",
    "nextval(",
    "lastval(",
    "setval(",
    "master_gtid_wait(",
    "master_pos_wait(",
    "last_value(",
];

/// What a `SELECT` contains that matters for routing, found in one pass over its words.
#[derive(Debug, Default)]
struct SelectFlags {
    locking: bool,
    into: bool,
    /// Advances or sets a sequence (`NEXTVAL()`, `SETVAL()`, `NEXT VALUE FOR`): a write.
    sequence: bool,
    functions: bool,
    variables: bool,
    found_rows: bool,
    calc_found_rows: bool,
    /// Reads state that differs per server: status counters, processlist, variables, locks.
    server_local: bool,
}

fn select_flags(code: &str) -> SelectFlags {
    let mut f = SelectFlags {
        // `@var` (user variables) and `@@var` (server variables, many of them per server).
        variables: code.contains('@'),
        ..SelectFlags::default()
    };
    let b = code.as_bytes();
    let mut words: [&str; 3] = ["", "", ""]; // the last three words, newest last
    let mut i = 0;
    while i < b.len() {
        if !is_ident(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        let w = &code[start..i];
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        let call = b.get(j) == Some(&b'(');
        if call
            && PRIMARY_FUNCTIONS
                .iter()
                .any(|p| p.strip_suffix('(') == Some(w))
        {
            f.functions = true;
            f.sequence |= w == "nextval" || w == "setval";
        }
        // Oracle mode's pseudo-columns (`s.nextval`, `db.s.currval`): a sequence advanced, or
        // the session's last value of it.
        let qualified = start > 0 && b[start - 1] == b'.';
        if qualified && (w == "nextval" || w == "currval") {
            f.functions = true;
            f.sequence |= w == "nextval";
        }
        // Both describe the session's previous statement, wherever it ran.
        if call && (w == "found_rows" || w == "row_count") {
            f.found_rows = true;
        }
        // `@@warning_count`, `@@session.error_count`: so do these.
        if (w == "warning_count" || w == "error_count")
            && ["@@", "@@session.", "@@local."]
                .iter()
                .any(|p| code[..start].ends_with(p))
        {
            f.found_rows = true;
        }
        // Per-server state: status and processlist, and the `mysql` system tables (`CREATE
        // SERVER` is not replicated, `gtid_slave_pos` and statistics differ per server).
        if matches!(
            w,
            "information_schema" | "performance_schema" | "sys" | "mysql"
        ) {
            f.server_local = true;
        }
        match (words[1], words[2], w) {
            (_, "for", "update" | "share") => f.locking = true,
            ("in", "share", "mode") => f.locking = true,
            ("next", "value", "for") => {
                f.functions = true;
                f.sequence = true;
            }
            ("previous", "value", "for") => f.functions = true,
            (_, _, "into") => f.into = true,
            (_, _, "sql_calc_found_rows") => f.calc_found_rows = true,
            _ => {}
        }
        words = [words[1], words[2], w];
    }
    f
}

/// `KILL [HARD | SOFT] [CONNECTION | QUERY] <thread id>`: the thread id and whether only the
/// running statement is killed. `None` for any other statement, `KILL USER` and
/// `KILL QUERY ID` (those name no thread), and for text the router cannot read plainly
/// (comments between the words).
fn kill_target(sql: &[u8]) -> Option<(u32, bool)> {
    let text = std::str::from_utf8(sql).ok()?.to_ascii_lowercase();
    let mut words = text
        .split_ascii_whitespace()
        .flat_map(|w| w.split(';'))
        .filter(|w| !w.is_empty())
        .peekable();
    if words.next()? != "kill" {
        return None;
    }
    if matches!(words.peek(), Some(&"hard" | &"soft")) {
        words.next();
    }
    let query = match words.peek() {
        Some(&"query") => {
            words.next();
            true
        }
        Some(&"connection") => {
            words.next();
            false
        }
        _ => false,
    };
    let id = words.next()?.parse().ok()?;
    words.next().is_none().then_some((id, query))
}

/// Global variables that change what statements return, which the router sets on the replicas
/// too when a `SET GLOBAL` of one goes through it. Nothing about replication, roles, logging
/// or resources a replica sizes for itself.
const MIRRORED_GLOBALS: &[&str] = &[
    "max_allowed_packet",
    "net_buffer_length",
    "sql_mode",
    "ft_boolean_syntax",
    "optimizer_switch",
    "optimizer_search_depth",
    "optimizer_prune_level",
    "optimizer_use_condition_selectivity",
    "div_precision_increment",
    "group_concat_max_len",
    "lc_time_names",
    "time_zone",
    "default_week_format",
    "max_sort_length",
    "max_statement_time",
    "in_predicate_conversion_threshold",
    "old_mode",
    "sql_select_limit",
    "max_join_size",
    "max_recursive_iterations",
    "max_sp_recursion_depth",
    "character_set_server",
    "collation_server",
];

/// True for `SET GLOBAL v = ...` / `SET @@global.v = ...` of one variable of
/// [`MIRRORED_GLOBALS`] (`Effect::SetGlobal { mirrored }`).
fn mirrored(sc: &Scan) -> bool {
    if sc.multi {
        return false;
    }
    let code = sc.code.trim().trim_end_matches(';').trim();
    let Some(rest) = code
        .strip_prefix("set global ")
        .or_else(|| code.strip_prefix("set @@global."))
    else {
        return false;
    };
    let (name, value) = match rest.split_once('=') {
        Some((n, v)) => (n.trim(), v),
        None => return false,
    };
    // One assignment: no comma outside parentheses in the value.
    let mut depth = 0i32;
    for ch in value.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => return false,
            _ => {}
        }
    }
    MIRRORED_GLOBALS.contains(&name)
}

/// Classifies one `COM_QUERY` text.
pub fn classify(sql: &[u8]) -> Statement {
    let sc = scan(sql);
    let code = sc.code.trim_start_matches(['(', ' ']);
    let first = code
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .next()
        .unwrap_or("");
    let mut st = Statement {
        place: Where::Primary,
        effect: Effect::None,
        hint_primary: sc.hint_primary,
        calc_found_rows: false,
        connection_state: uses_connection_state(&sc.code),
        kill: None,
        changes_accounts: false,
    };
    if sc.multi {
        st.effect = Effect::Pin("multi-statement query");
        return st;
    }
    match first {
        // A common table expression may lead to a write (`WITH ... DELETE`, `... UPDATE`):
        // any such word sends it to the primary (found by the safety property test).
        "with"
            if ["delete", "update", "insert", "replace"]
                .iter()
                .any(|w| has_word(code, w)) =>
        {
            st.effect = Effect::Write
        }
        "select" | "with" | "values" | "table" => {
            let f = select_flags(code);
            if f.found_rows {
                st.place = Where::Previous;
            } else if !(f.locking || f.into || f.functions || f.variables || f.server_local) {
                st.place = Where::AnyServer;
                st.calc_found_rows = f.calc_found_rows;
            }
            if f.into || f.sequence {
                st.effect = Effect::Write;
            }
        }
        "show" => {
            if has_word(code, "warnings") || has_word(code, "errors") {
                st.place = Where::Previous;
            }
        }
        "set" => {
            st.effect = match classify_set(code) {
                Effect::SetGlobal { .. } => Effect::SetGlobal {
                    mirrored: mirrored(&sc),
                },
                e => e,
            }
        }
        "use" => {
            let name = code[3..].trim().trim_end_matches(';').trim();
            st.effect = Effect::UseDb(use_name(sql).unwrap_or_else(|| name.to_string()));
        }
        "create" if has_word(code, "temporary") => st.effect = Effect::Pin("temporary table"),
        "lock" => st.effect = Effect::Pin("LOCK TABLES"),
        "handler" => st.effect = Effect::Pin("HANDLER"),
        "prepare" | "execute" | "deallocate" => st.effect = Effect::Pin("SQL prepared statement"),
        "kill" => st.kill = kill_target(sql),
        "begin" | "start" | "commit" | "rollback" | "savepoint" | "release" | "xa" | "unlock"
        | "help" | "explain" | "describe" | "desc" | "analyze" | "check" | "checksum" | "do" => {}
        _ => st.effect = Effect::Write,
    }
    if st.effect == Effect::Write {
        st.changes_accounts = may_change_accounts(sql);
    }
    st
}

impl Statement {
    /// The statement `sql` turned out to write although its text looks like a read (a replica
    /// refused it as read-only: a view or column default calling a sequence, a stored function
    /// that modifies data): it counts as a write from now on.
    pub fn writes_after_all(&mut self, sql: &[u8]) {
        self.effect = Effect::Write;
        self.changes_accounts = may_change_accounts(sql);
    }
}

/// A write whose text names accounts, privileges, passwords, roles or the `mysql` schema (in
/// its first 512 bytes).
fn may_change_accounts(sql: &[u8]) -> bool {
    let head = &sql[..sql.len().min(512)];
    let lower = head.to_ascii_lowercase();
    [
        &b"user"[..],
        b"grant",
        b"revoke",
        b"password",
        b"privileges",
        b"role",
        b"mysql",
    ]
    .iter()
    .any(|w| lower.windows(w.len()).any(|x| x == *w))
}

/// Functions whose value or effect belongs to one connection.
const CONNECTION_FUNCTIONS: &[&str] = &["get_lock", "last_insert_id", "connection_id", "lastval"];

/// A user variable (`@v`, not `@@v`) or a call of a [`CONNECTION_FUNCTIONS`] member in `code`
/// (literals already replaced, so an `@` in a string does not count).
fn uses_connection_state(code: &str) -> bool {
    let b = code.as_bytes();
    let user_variable = (0..b.len())
        .any(|i| b[i] == b'@' && b.get(i + 1) != Some(&b'@') && (i == 0 || b[i - 1] != b'@'));
    // `s.currval` (Oracle mode) is the session's `LASTVAL(s)`.
    let currval = code.match_indices(".currval").any(|(i, _)| {
        !code
            .as_bytes()
            .get(i + ".currval".len())
            .is_some_and(|&c| is_ident(c))
    });
    user_variable
        || currval
        || CONNECTION_FUNCTIONS.iter().any(|f| {
            code.match_indices(f).any(|(i, _)| {
                let before = i.checked_sub(1).map(|j| b[j]);
                let after = code[i + f.len()..].trim_start();
                !before.is_some_and(is_ident) && after.starts_with('(')
            })
        })
}

/// `USE` takes the name verbatim (case kept; back-quoted, with ``` `` ``` for a backquote);
/// read it from the original text, past comments before and after the keyword.
fn use_name(sql: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(sql).ok()?;
    let rest = past_comments(text);
    let rest = rest
        .get(..3)
        .filter(|w| w.eq_ignore_ascii_case("use"))
        .and(rest.get(3..))?;
    let rest = past_comments(rest);
    if let Some(quoted) = rest.strip_prefix('`') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '`' {
                name.push(c);
            } else if chars.next_if_eq(&'`').is_some() {
                name.push('`');
            } else {
                return Some(name);
            }
        }
        return None; // no closing backquote: the server refuses it
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || matches!(c, ';' | '/' | '#'))
        .unwrap_or(rest.len());
    (end > 0).then(|| rest[..end].to_string())
}

/// `text` past leading whitespace and comments (`/* */`, `-- `, `#`).
fn past_comments(mut text: &str) -> &str {
    loop {
        text = text.trim_start();
        let line = text.starts_with('#')
            || (text.starts_with("--") && text[2..].starts_with(char::is_whitespace));
        let executable = text
            .strip_prefix("/*!")
            .or_else(|| text.strip_prefix("/*M!"));
        if let Some(r) = executable {
            // `/*!40101 USE db */`: the content is code (the version, digits, skipped).
            text = r.trim_start_matches(|c: char| c.is_ascii_digit());
        } else if let Some(r) = text.strip_prefix("/*") {
            text = r.find("*/").map_or("", |e| &r[e + 2..]);
        } else if line {
            text = text.find('\n').map_or("", |e| &text[e + 1..]);
        } else {
            return text;
        }
    }
}

fn classify_set(code: &str) -> Effect {
    let rest = code[3..].trim_start();
    // A global is assigned (`SET GLOBAL v = ...`, `SET @@global.v = ...`, also after a comma),
    // not merely read (`SET sql_mode = @@global.sql_mode` is a session SET).
    let global = rest.starts_with("global ")
        || rest.starts_with("@@global.")
        || [", global ", ",global ", ", @@global.", ",@@global."]
            .iter()
            .any(|p| code.contains(p));
    let word = rest.split([' ', '=']).next().unwrap_or("");
    match word {
        // The active role decides privileges on every server, and survives a reset.
        "role" => Effect::Pin("SET ROLE"),
        "transaction" | "password" | "default" | "statement" => Effect::None,
        _ if global => Effect::SetGlobal { mirrored: false },
        // With it, `WHERE auto_increment_column IS NULL` reads the session's last insert id.
        _ if has_word(code, "sql_auto_is_null") => Effect::Pin("sql_auto_is_null"),
        // `SHOW PROFILES` lists what the server it runs on profiled for the session.
        _ if has_word(code, "profiling") => Effect::Pin("profiling"),
        // The trace describes the session's previous statement, wherever it ran.
        _ if has_word(code, "optimizer_trace") => Effect::Pin("optimizer_trace"),
        // autocommit is followed through the server's status flags; replaying autocommit=0 on a
        // replica would hold a read snapshot there.
        _ if has_word(code, "autocommit") => Effect::None,
        _ if rest.starts_with('@') && !rest.starts_with("@@") && !rest.contains(',') => {
            Effect::None
        }
        _ => Effect::Replay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(sql: &str) -> Where {
        classify(sql.as_bytes()).place
    }

    #[test]
    fn mirrored_globals() {
        for (sql, want) in [
            ("SET GLOBAL max_allowed_packet = 1048576", true),
            ("set @@global.sql_mode='ANSI'", true),
            ("SET GLOBAL ft_boolean_syntax = ' +-><()~*:\"\"&|';", true),
            (
                "SET GLOBAL max_allowed_packet = 1024, net_buffer_length = 1024",
                false,
            ),
            ("SET GLOBAL read_only = 1", false),
            ("SET GLOBAL event_scheduler = ON", false),
            ("SET SESSION sql_mode = ''", false),
            ("SET GLOBAL sql_mode = CONCAT(@@sql_mode, ',ANSI')", true),
            ("SET GLOBAL sql_mode = ''; SELECT 1", false),
        ] {
            assert_eq!(mirrored(&scan(sql.as_bytes())), want, "{sql}");
            match classify(sql.as_bytes()).effect {
                Effect::SetGlobal { mirrored } => assert_eq!(mirrored, want, "{sql}"),
                other => assert!(!want, "{sql}: {other:?}"),
            }
        }
    }

    #[test]
    fn writes_that_may_change_accounts_make_the_router_read_the_hashes_again() {
        for (sql, want) in [
            ("GRANT SELECT ON wp.* TO 'bob'@'%'", true),
            ("CREATE USER bob IDENTIFIED BY 'x'", true),
            ("UPDATE mysql.global_priv SET priv = '{}'", true),
            ("INSERT INTO wp_posts VALUES (1)", false),
            ("SELECT user FROM mysql.user", false), // a read changes nothing
        ] {
            assert_eq!(classify(sql.as_bytes()).changes_accounts, want, "{sql}");
        }
        // A read that a replica refused as read-only is a write after all.
        let sql = b"SELECT set_password_for('bob')";
        let mut st = classify(sql);
        assert!(!st.changes_accounts);
        st.writes_after_all(sql);
        assert_eq!(st.effect, Effect::Write);
        assert!(st.changes_accounts);
    }

    #[test]
    fn kill_targets() {
        for (sql, want) in [
            ("KILL 42", Some((42, false))),
            ("kill connection 42;", Some((42, false))),
            ("KILL QUERY 7", Some((7, true))),
            ("KILL HARD QUERY 7 ;", Some((7, true))),
            ("kill soft connection 9", Some((9, false))),
            ("KILL QUERY ID 7", None),
            ("KILL USER bob", None),
            ("KILL 7, 8", None),
            ("KILL /* x */ 7", None),
            ("SELECT 1", None),
            ("KILL", None),
        ] {
            assert_eq!(kill_target(sql.as_bytes()), want, "{sql}");
            assert_eq!(classify(sql.as_bytes()).kill, want, "{sql}");
        }
    }

    #[test]
    fn reads_and_writes() {
        let table: &[(&str, Where)] = &[
            ("SELECT * FROM wp_posts WHERE ID = 1", Where::AnyServer),
            ("  select option_value from wp_options", Where::AnyServer),
            ("(SELECT 1) UNION (SELECT 2)", Where::AnyServer),
            ("WITH t AS (SELECT 1) SELECT * FROM t", Where::AnyServer),
            ("WITH t AS (SELECT 1) DELETE FROM u", Where::Primary),
            (
                "SELECT SQL_CALC_FOUND_ROWS wp_posts.ID FROM wp_posts LIMIT 0, 10",
                Where::AnyServer,
            ),
            ("SELECT FOUND_ROWS()", Where::Previous),
            (
                "SELECT VARIABLE_VALUE FROM INFORMATION_SCHEMA.GLOBAL_STATUS",
                Where::Primary,
            ),
            ("SELECT * FROM performance_schema.threads", Where::Primary),
            ("SELECT Server_name FROM mysql.servers", Where::Primary),
            ("SELECT * FROM `mysql`.`user`", Where::Primary),
            ("SELECT * FROM information_schema_like", Where::AnyServer),
            ("SELECT ROW_COUNT()", Where::Previous),
            ("select @@warning_count", Where::Previous),
            ("SELECT @@session.error_count, 1", Where::Previous),
            ("SELECT t.warning_count FROM t", Where::AnyServer),
            ("SHOW WARNINGS", Where::Previous),
            ("show count(*) errors", Where::Previous),
            ("SHOW TABLES", Where::Primary),
            ("SELECT * FROM t FOR UPDATE", Where::Primary),
            ("select * from t lock in share mode", Where::Primary),
            ("SELECT GET_LOCK('x', 1)", Where::Primary),
            ("SELECT get_lock ('x', 1)", Where::Primary),
            ("SELECT LAST_INSERT_ID()", Where::Primary),
            ("SELECT NEXTVAL(s)", Where::Primary),
            ("SELECT NEXT VALUE FOR s", Where::Primary),
            ("SELECT s1.nextval", Where::Primary),
            ("SELECT s1.currval", Where::Primary),
            ("SELECT @@SESSION.sql_mode", Where::Primary),
            ("SELECT @x", Where::Primary),
            ("SELECT 1 INTO @x", Where::Primary),
            ("SELECT * INTO OUTFILE '/tmp/x' FROM t", Where::Primary),
            ("SELECT CONNECTION_ID()", Where::Primary),
            ("SELECT 'for update' FROM t", Where::AnyServer),
            ("SELECT `for update` FROM t", Where::AnyServer),
            ("SELECT 1 -- FOR UPDATE", Where::AnyServer),
            ("SELECT 1 /* FOR UPDATE */", Where::AnyServer),
            ("SELECT 1 /*!50000 FOR UPDATE */", Where::Primary),
            ("SELECT 1 # for update", Where::AnyServer),
            ("SELECT 'it''s', \"a\\\"b\" FROM t", Where::AnyServer),
            ("SELECT last_insert_id_x FROM t", Where::AnyServer),
            ("INSERT INTO wp_posts VALUES (1)", Where::Primary),
            ("UPDATE t SET a = 1", Where::Primary),
            ("DELETE FROM t", Where::Primary),
            ("REPLACE INTO t VALUES (1)", Where::Primary),
            ("CREATE TABLE t (a int)", Where::Primary),
            ("CALL p()", Where::Primary),
            ("BEGIN", Where::Primary),
            ("SET NAMES utf8mb4", Where::Primary),
            ("/* hapress:primary */ SELECT 1", Where::AnyServer),
        ];
        for (sql, want) in table {
            assert_eq!(place(sql), *want, "{sql}");
        }
        assert!(classify(b"/* hapress:primary */ SELECT 1").hint_primary);
        assert!(classify(b"SELECT 1 /* HAPRESS:PRIMARY */").hint_primary);
        assert!(!classify(b"SELECT 'hapress:primary'").hint_primary);
        assert!(classify(b"SELECT SQL_CALC_FOUND_ROWS a FROM t").calc_found_rows);
    }

    #[test]
    fn session_effects() {
        let table: &[(&str, Effect)] = &[
            (
                "SET NAMES utf8mb4 COLLATE utf8mb4_unicode_520_ci",
                Effect::Replay,
            ),
            ("SET SESSION sql_mode='NO_ZERO_DATE'", Effect::Replay),
            ("SET sql_mode = ''", Effect::Replay),
            ("SET @@session.time_zone = '+00:00'", Effect::Replay),
            ("SET @@time_zone = '+00:00'", Effect::Replay),
            ("SET CHARACTER SET utf8", Effect::Replay),
            (
                "SET GLOBAL read_only = 1",
                Effect::SetGlobal { mirrored: false },
            ),
            (
                "SET @@global.max_allowed_packet = 1024",
                Effect::SetGlobal { mirrored: true },
            ),
            (
                "SET SESSION sql_auto_is_null = 1",
                Effect::Pin("sql_auto_is_null"),
            ),
            ("SET profiling = 1", Effect::Pin("profiling")),
            (
                "SET optimizer_trace = 'enabled=on'",
                Effect::Pin("optimizer_trace"),
            ),
            (
                "SET SESSION optimizer_trace_max_mem_size = 1",
                Effect::Replay,
            ),
            ("SET SESSION profiling_history_size = 20", Effect::Replay),
            ("SET @@global.x = 1", Effect::SetGlobal { mirrored: false }),
            ("SET sql_mode = @@GLOBAL.sql_mode", Effect::Replay),
            (
                "SET a = 1, GLOBAL b = 2",
                Effect::SetGlobal { mirrored: false },
            ),
            ("SET autocommit = 0", Effect::None),
            (
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
                Effect::None,
            ),
            ("SET @x = 1", Effect::None),
            ("SET @x = 1, sql_mode = ''", Effect::Replay),
            ("USE wordpress", Effect::UseDb("wordpress".into())),
            ("use `my db`", Effect::UseDb("my db".into())),
            ("/* c */ USE Wp2", Effect::UseDb("Wp2".into())),
            ("-- c\n use wp3 /* after */;", Effect::UseDb("wp3".into())),
            ("USE/*x*/`a``b` ;", Effect::UseDb("a`b".into())),
            ("#c\nUSE\twp4;", Effect::UseDb("wp4".into())),
            ("/*!40101 USE `MyDb` */", Effect::UseDb("MyDb".into())),
            (
                "CREATE TEMPORARY TABLE t (a int)",
                Effect::Pin("temporary table"),
            ),
            ("LOCK TABLES t WRITE", Effect::Pin("LOCK TABLES")),
            ("SET ROLE editor", Effect::Pin("SET ROLE")),
            (
                "PREPARE s FROM 'SELECT 1'",
                Effect::Pin("SQL prepared statement"),
            ),
            ("SELECT 1; SELECT 2", Effect::Pin("multi-statement query")),
            ("SELECT 1;", Effect::None),
            ("SELECT ';'", Effect::None),
            ("SELECT 1; -- trailing comment", Effect::None),
            ("INSERT INTO t VALUES (1)", Effect::Write),
            ("SELECT 1 INTO @x", Effect::Write),
            ("SELECT NEXTVAL(s)", Effect::Write),
            ("SELECT NEXT VALUE FOR s", Effect::Write),
            ("SELECT SETVAL(s, 100)", Effect::Write),
            ("SELECT LASTVAL(s)", Effect::None),
            ("SELECT PREVIOUS VALUE FOR s", Effect::None),
            // Oracle mode (compat/oracle.sequence through the router found these).
            ("SELECT s1.nextval", Effect::Write),
            ("SELECT test.s1.nextval", Effect::Write),
            ("SELECT .s1.nextval", Effect::Write),
            ("SELECT s1.currval", Effect::None),
            ("SELECT t.nextval_at FROM t", Effect::None),
            ("BEGIN", Effect::None),
        ];
        for (sql, want) in table {
            assert_eq!(classify(sql.as_bytes()).effect, *want, "{sql}");
        }
    }

    #[test]
    fn connection_state() {
        for (sql, want) in [
            ("SET @who = 'x'", true),
            ("SELECT 1 INTO @x", true),
            ("INSERT INTO t VALUES (@x)", true),
            ("SELECT @a := 1", true),
            ("SELECT GET_LOCK('x', 1)", true),
            ("DO get_lock ('x', 1)", true),
            ("SELECT LAST_INSERT_ID()", true),
            ("SELECT CONNECTION_ID()", true),
            ("SELECT lastval(s)", true),
            ("SELECT s1.currval", true),
            ("SELECT test.s1.currval FROM dual", true),
            ("SELECT t.currval_x FROM t", false),
            ("SELECT @@sql_mode", false),
            ("SET @@session.time_zone = '+00:00'", false),
            ("SELECT '@x', 'get_lock(1)'", false),
            ("SELECT my_get_lock(1), last_insert_id_x FROM t", false),
            ("INSERT INTO t VALUES (1)", false),
        ] {
            assert_eq!(classify(sql.as_bytes()).connection_state, want, "{sql}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            &b""[..],
            b"/*",
            b"'",
            b"`",
            b"--",
            b"/*!",
            b"/*M!123",
            b"\xff\xfe",
            b"set",
            b"use",
            b";;;",
            b"(",
            b"select '\\",
        ] {
            let _ = classify(s);
        }
    }
}
