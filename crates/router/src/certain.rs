//! Session `SET`s whose outcome is certain: an OK with nothing else in it (no warning, no
//! status flag of its own), on any MariaDB server since 10.3. The router answers them itself
//! and holds them back ([`crate::conn::Conn::defer`]) until the session sends the primary
//! something else, so a session that only reads from replicas never costs the primary a
//! command (PHP's `mysqli_set_charset`, WordPress's `SET NAMES` and `sql_mode`).
//!
//! Only exact, known values pass: the common character sets and collations, and `sql_mode`s
//! that change no status flag (`NO_BACKSLASH_ESCAPES` does) and exist in every supported
//! server. Anything else (another value, a comment, a second statement) goes to the server as
//! before.

/// Character sets a client may set (`ucs2`, `utf16` and `utf32` cannot be a client's).
const CHARSETS: &[&str] = &["utf8mb4", "utf8", "latin1", "ascii", "binary"];

/// Collations by character set, present in every supported server.
const COLLATIONS: &[(&str, &[&str])] = &[
    (
        "utf8mb4",
        &[
            "utf8mb4_general_ci",
            "utf8mb4_unicode_ci",
            "utf8mb4_unicode_520_ci",
            "utf8mb4_bin",
        ],
    ),
    (
        "utf8",
        &[
            "utf8_general_ci",
            "utf8_unicode_ci",
            "utf8_unicode_520_ci",
            "utf8_bin",
        ],
    ),
    (
        "latin1",
        &["latin1_swedish_ci", "latin1_general_ci", "latin1_bin"],
    ),
];

/// `sql_mode` words that set no status flag, in every supported server.
const SQL_MODES: &[&str] = &[
    "STRICT_TRANS_TABLES",
    "STRICT_ALL_TABLES",
    "NO_ZERO_IN_DATE",
    "NO_ZERO_DATE",
    "ERROR_FOR_DIVISION_BY_ZERO",
    "NO_AUTO_CREATE_USER",
    "NO_ENGINE_SUBSTITUTION",
    "ONLY_FULL_GROUP_BY",
    "NO_AUTO_VALUE_ON_ZERO",
    "TRADITIONAL",
    "ALLOW_INVALID_DATES",
    "REAL_AS_FLOAT",
    "PIPES_AS_CONCAT",
    "IGNORE_SPACE",
    "HIGH_NOT_PRECEDENCE",
    "PAD_CHAR_TO_FULL_LENGTH",
    "NO_UNSIGNED_SUBTRACTION",
    "NO_DIR_IN_CREATE",
    "IGNORE_BAD_TABLE_OPTIONS",
];

/// Splits `sql` into words: identifiers and quoted strings (quotes kept), `=`; `None` for
/// anything else (comments, `;`, backquotes, escapes), which makes the statement uncertain.
fn words(sql: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    let mut rest = sql.trim();
    while !rest.is_empty() {
        let c = rest.chars().next()?;
        let len = match c {
            '\'' | '"' => {
                let end = rest[1..].find(c)? + 2;
                if rest[1..end - 1].contains('\\') || rest[end..].starts_with(c) {
                    return None; // escapes or doubled quotes: not worth reading
                }
                end
            }
            '=' => 1,
            c if c.is_ascii_alphanumeric() || c == '_' || c == '@' || c == '.' => rest
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || "_@.".contains(ch)))
                .unwrap_or(rest.len()),
            _ => return None,
        };
        out.push(&rest[..len]);
        rest = rest[len..].trim_start();
    }
    Some(out)
}

/// The value without its quotes (one kind, matching), lowercase for names.
fn unquoted(w: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(v) = w.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
            return v;
        }
    }
    w
}

/// Whether `sql` is a `SET` the router may answer itself ([module docs](self)).
pub fn certain_set(sql: &[u8]) -> bool {
    let Ok(sql) = std::str::from_utf8(sql) else {
        return false;
    };
    let Some(w) = words(sql) else {
        return false;
    };
    let is = |i: usize, word: &str| w.get(i).is_some_and(|x| x.eq_ignore_ascii_case(word));
    if !is(0, "SET") {
        return false;
    }
    if is(1, "NAMES") {
        let Some(cs) = w.get(2).map(|c| unquoted(c).to_ascii_lowercase()) else {
            return false;
        };
        if !CHARSETS.contains(&cs.as_str()) {
            return false;
        }
        return match w.len() {
            3 => true,
            5 if is(3, "COLLATE") => {
                let coll = unquoted(w[4]).to_ascii_lowercase();
                COLLATIONS
                    .iter()
                    .any(|(c, list)| *c == cs && list.contains(&coll.as_str()))
            }
            _ => false,
        };
    }
    // SET [SESSION] sql_mode = '...' | SET @@[session.]sql_mode = '...'
    let at = if is(1, "SESSION") { 2 } else { 1 };
    let name = w.get(at).map(|n| n.to_ascii_lowercase());
    let named = matches!(
        name.as_deref(),
        Some("sql_mode" | "@@sql_mode" | "@@session.sql_mode")
    );
    if !named || !is(at + 1, "=") || w.len() != at + 3 {
        return false;
    }
    let value = w[at + 2];
    if !(value.starts_with('\'') || value.starts_with('"')) {
        return false;
    }
    unquoted(value)
        .split(',')
        .filter(|m| !m.is_empty())
        .all(|m| SQL_MODES.iter().any(|k| k.eq_ignore_ascii_case(m.trim())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_values_in_plain_statements_are_certain() {
        for sql in [
            "SET NAMES utf8mb4",
            "set names 'utf8mb4'",
            "SET NAMES 'utf8mb4' COLLATE 'utf8mb4_unicode_520_ci'",
            "SET NAMES utf8 COLLATE utf8_general_ci",
            "SET NAMES latin1",
            "SET SESSION sql_mode='ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION'",
            "SET sql_mode = ''",
            "SET @@session.sql_mode = \"TRADITIONAL\"",
            "  SET NAMES utf8mb4  ",
        ] {
            assert!(certain_set(sql.as_bytes()), "{sql}");
        }
        for sql in [
            "SET NAMES ucs2",
            "SET NAMES nosuchset",
            "SET NAMES utf8mb4 COLLATE utf8mb4_uca1400_ai_ci", // 10.10+ only
            "SET NAMES utf8mb4 COLLATE latin1_bin",
            "SET NAMES utf8mb4; DROP TABLE t",
            "SET NAMES utf8mb4 /* hi */",
            "SET sql_mode = 'NO_BACKSLASH_ESCAPES'", // a status flag of its own
            "SET sql_mode = 'ORACLE'",
            "SET sql_mode = 'NOSUCHMODE'",
            "SET sql_mode = CONCAT(@@sql_mode, ',STRICT_ALL_TABLES')",
            "SET sql_mode = 'STRICT_ALL_TABLES\\''",
            "SET GLOBAL sql_mode = ''",
            "SET time_zone = '+00:00'",
            "SET autocommit = 0",
            "SET NAMES",
            "SELECT 1",
            "",
        ] {
            assert!(!certain_set(sql.as_bytes()), "{sql}");
        }
    }
}
