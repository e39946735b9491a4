//! The few Redis commands the supervisor sends to the object cache (health and counters), in
//! RESP over its unix socket, with a short timeout: a hung Redis must not stall supervision.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long one exchange may take.
const TIMEOUT: Duration = Duration::from_millis(300);

/// What the object cache did since Redis started (Redis's own counters).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectCacheStats {
    /// Lookups that found their entry.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Entries stored now.
    pub keys: u64,
    /// Entries evicted to stay under `maxMemoryMb`.
    pub evicted: u64,
    /// Memory used, bytes.
    pub used_memory: u64,
}

/// One command as a RESP array of bulk strings.
fn command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads one reply: a simple string, an integer or a bulk string, as text; an error reply is
/// an `Err` with Redis's message.
fn reply(r: &mut impl BufRead) -> std::io::Result<Result<String, String>> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not a RESP reply");
    match line.as_bytes().first() {
        Some(b'+' | b':') => Ok(Ok(line[1..].to_string())),
        Some(b'-') => Ok(Err(line[1..].to_string())),
        Some(b'$') => {
            let n: i64 = line[1..].parse().map_err(|_| bad())?;
            if n < 0 {
                return Ok(Ok(String::new()));
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Ok(Ok(String::from_utf8_lossy(&buf).into_owned()))
        }
        _ => Err(bad()),
    }
}

/// Sends `AUTH` and then `commands`, and returns their replies.
fn exchange(socket: &Path, password: &str, commands: &[&[&str]]) -> Option<Vec<String>> {
    let stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(TIMEOUT)).ok()?;
    stream.set_write_timeout(Some(TIMEOUT)).ok()?;
    let mut out = command(&["AUTH", password]);
    for c in commands {
        out.extend(command(c));
    }
    (&stream).write_all(&out).ok()?;
    let mut r = BufReader::new(&stream);
    reply(&mut r).ok()?.ok()?;
    commands.iter().map(|_| reply(&mut r).ok()?.ok()).collect()
}

/// Whether Redis answers `PING` on `socket` with this password.
pub fn ping(socket: &Path, password: &str) -> bool {
    exchange(socket, password, &[&["PING"]]).is_some_and(|r| r[0] == "PONG")
}

/// Redis's counters, or `None` when it does not answer.
pub fn stats(socket: &Path, password: &str) -> Option<ObjectCacheStats> {
    let r = exchange(socket, password, &[&["INFO"], &["DBSIZE"]])?;
    let field = |name: &str| {
        r[0].lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Some(ObjectCacheStats {
        hits: field("keyspace_hits"),
        misses: field("keyspace_misses"),
        keys: r[1].parse().unwrap_or(0),
        evicted: field("evicted_keys"),
        used_memory: field("used_memory"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_resp_arrays_and_replies_are_read_by_type() {
        assert_eq!(
            command(&["AUTH", "pw"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
        );
        let mut r = std::io::Cursor::new(
            b"+OK\r\n:42\r\n$11\r\na:1\r\nb\r\nccc\r\n-WRONGPASS invalid\r\n$-1\r\n".to_vec(),
        );
        assert_eq!(reply(&mut r).unwrap(), Ok("OK".into()));
        assert_eq!(reply(&mut r).unwrap(), Ok("42".into()));
        assert_eq!(reply(&mut r).unwrap(), Ok("a:1\r\nb\r\nccc".into()));
        assert_eq!(reply(&mut r).unwrap(), Err("WRONGPASS invalid".into()));
        assert_eq!(reply(&mut r).unwrap(), Ok(String::new()));
        assert!(reply(&mut r).is_err(), "end of input is no reply");
    }
}
