//! Server responses: OK, ERR and EOF packets, and [`ResponseTracker`], which follows the packets
//! a server sends for one command and says when the answer is complete, so a proxy can forward
//! bytes without decoding rows.

use crate::codec::Reader;
use crate::consts::{cmd, status};
use crate::packet::MAX_CHUNK;
use crate::{err, Result};

/// An OK packet's fields a proxy cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ok {
    /// Affected rows.
    pub affected_rows: u64,
    /// Last insert id.
    pub last_insert_id: u64,
    /// Server status flags.
    pub status: u16,
    /// Warning count.
    pub warnings: u16,
}

/// Parses an OK packet (`0x00`, or `0xfe` as the end of a result set with `DEPRECATE_EOF`).
pub fn parse_ok(p: &[u8]) -> Result<Ok> {
    let mut r = Reader::new(p);
    let h = r.u8()?;
    if h != 0x00 && h != 0xfe {
        return err(format!("expected an OK packet, got header {h:#04x}"));
    }
    Ok(Ok {
        affected_rows: r.lenenc_int()?,
        last_insert_id: r.lenenc_int()?,
        status: r.u16()?,
        warnings: r.u16()?,
    })
}

/// A server error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// Error code, e.g. 1045.
    pub code: u16,
    /// SQLSTATE, e.g. `28000`.
    pub state: String,
    /// Message.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ERROR {} ({}): {}", self.code, self.state, self.message)
    }
}

/// Parses an ERR packet.
pub fn parse_err(p: &[u8]) -> Result<ServerError> {
    let mut r = Reader::new(p);
    if r.u8()? != 0xff {
        return err("expected an ERR packet");
    }
    let code = r.u16()?;
    let mut state = String::from("HY000");
    let rest = r.rest();
    let msg = if let Some(s) = rest.strip_prefix(b"#") {
        if s.len() >= 5 {
            state = String::from_utf8_lossy(&s[..5]).into_owned();
            &s[5..]
        } else {
            s
        }
    } else {
        rest
    };
    Ok(ServerError {
        code,
        state,
        message: String::from_utf8_lossy(msg).into_owned(),
    })
}

/// Encodes an ERR packet payload.
pub fn err_packet(code: u16, state: &str, message: &str) -> Vec<u8> {
    let mut o = vec![0xff];
    o.extend_from_slice(&code.to_le_bytes());
    o.push(b'#');
    let mut st = state.as_bytes().to_vec();
    st.resize(5, b'0');
    o.extend_from_slice(&st);
    o.extend_from_slice(message.as_bytes());
    o
}

/// Encodes an ERR packet sent in place of the server greeting: no SQL state (the 4.1 protocol
/// is not agreed on yet), as MariaDB sends "Too many connections" there.
pub fn greeting_err_packet(code: u16, message: &str) -> Vec<u8> {
    let mut o = vec![0xff];
    o.extend_from_slice(&code.to_le_bytes());
    o.extend_from_slice(message.as_bytes());
    o
}

/// Encodes a minimal OK packet payload.
pub fn ok_packet(status: u16) -> Vec<u8> {
    let mut o = vec![0, 0, 0];
    o.extend_from_slice(&status.to_le_bytes());
    o.extend_from_slice(&[0, 0]);
    o
}

/// `CLIENT_SESSION_TRACK` session-state type: a system variable changed.
const TRACK_SYSTEM_VARIABLES: u8 = 0;
/// `CLIENT_SESSION_TRACK` session-state type: the current database changed.
const TRACK_SCHEMA: u8 = 1;

/// An OK packet parsed once: its fields, and where its info string and (with
/// `CLIENT_SESSION_TRACK`) its session-state block lie in the payload, so a proxy reads the
/// GTID and strips the state without parsing the packet again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OkPacket {
    /// The fields.
    pub ok: Ok,
    /// Offset of the status flags.
    status_at: usize,
    /// The ranges of the info string and of the session-state block (empty when the status
    /// does not announce one); `None` when they do not parse (the fields above still do).
    tail: Option<((usize, usize), (usize, usize))>,
}

impl OkPacket {
    /// Parses an OK packet (`0x00`, or `0xfe` ending a result set with `DEPRECATE_EOF`).
    pub fn parse(p: &[u8]) -> Result<Self> {
        let mut r = Reader::new(p);
        let h = r.u8()?;
        if h != 0x00 && h != 0xfe {
            return err(format!("expected an OK packet, got header {h:#04x}"));
        }
        let affected_rows = r.lenenc_int()?;
        let last_insert_id = r.lenenc_int()?;
        let status_at = p.len() - r.remaining();
        let status = r.u16()?;
        let warnings = r.u16()?;
        let has_info = !r.is_empty();
        let mut field = |present: bool| -> Result<(usize, usize)> {
            let b = if present { r.lenenc_bytes()? } else { &[][..] };
            let end = p.len() - r.remaining();
            Ok((end - b.len(), end))
        };
        let info = field(has_info);
        let tail = info.and_then(|info| {
            let announced = status & status::SESSION_STATE_CHANGED != 0;
            let state = field(announced && info.1 < p.len())?;
            Ok((info, state))
        });
        Ok(Self {
            ok: Ok {
                affected_rows,
                last_insert_id,
                status,
                warnings,
            },
            status_at,
            tail: tail.ok(),
        })
    }

    /// The session-state entries of the packet `p` (the one parsed): type and data, up to
    /// the first that does not parse.
    fn state_entries<'p>(&self, p: &'p [u8]) -> impl Iterator<Item = (u8, &'p [u8])> {
        let mut r = self
            .tail
            .and_then(|(_, state)| p.get(state.0..state.1))
            .map(Reader::new);
        std::iter::from_fn(move || {
            let r = r.as_mut().filter(|r| !r.is_empty())?;
            let kind = r.u8().ok()?;
            Some((kind, r.lenenc_bytes().ok()?))
        })
    }

    /// The `last_gtid` value the packet `p` (the one parsed) reports (sent with
    /// `CLIENT_SESSION_TRACK` when the server tracks `last_gtid` in
    /// `session_track_system_variables`).
    pub fn last_gtid(&self, p: &[u8]) -> Option<String> {
        let mut found = None;
        for (kind, data) in self.state_entries(p) {
            if kind == TRACK_SYSTEM_VARIABLES {
                let mut d = Reader::new(data);
                let name = d.lenenc_bytes().ok()?;
                let value = d.lenenc_bytes().ok()?;
                if name.eq_ignore_ascii_case(b"last_gtid") && !value.is_empty() {
                    found = Some(String::from_utf8_lossy(value).into_owned());
                }
            }
        }
        found
    }

    /// The connection's current database when the packet `p` (the one parsed) reports that
    /// it changed (`session_track_schema`, on by default): empty when it has none now (its
    /// database was dropped).
    pub fn schema<'p>(&self, p: &'p [u8]) -> Option<&'p [u8]> {
        self.state_entries(p)
            .filter(|(kind, _)| *kind == TRACK_SCHEMA)
            .filter_map(|(_, data)| Reader::new(data).lenenc_bytes().ok())
            .last()
    }

    /// The packet `p` (the one parsed) re-encoded for a client that did not ask for
    /// `CLIENT_SESSION_TRACK`: same counts, status without `SESSION_STATE_CHANGED`, and the info
    /// string the way MariaDB itself sends it to such clients (length-encoded when not empty,
    /// absent when empty; see `net_send_ok` in MariaDB's `protocol.cc`, which differs from
    /// MySQL's documented `string<EOF>`). `None` when its info or state does not parse.
    pub fn without_session_state(&self, p: &[u8]) -> Option<Vec<u8>> {
        let (info, _) = self.tail?;
        let mut o = p[..self.status_at].to_vec();
        o.extend_from_slice(&(self.ok.status & !status::SESSION_STATE_CHANGED).to_le_bytes());
        o.extend_from_slice(&self.ok.warnings.to_le_bytes());
        let info = &p[info.0..info.1];
        if !info.is_empty() {
            crate::codec::put_lenenc_bytes(&mut o, info);
        }
        Some(o)
    }
}

/// [`OkPacket::last_gtid`] of `p`, parsed here.
pub fn ok_last_gtid(p: &[u8]) -> Option<String> {
    OkPacket::parse(p).ok()?.last_gtid(p)
}

/// [`OkPacket::without_session_state`] of `p`, parsed here (`None`: not an OK packet).
pub fn ok_without_session_state(p: &[u8]) -> Option<Vec<u8>> {
    OkPacket::parse(p).ok()?.without_session_state(p)
}

/// Status flags of an EOF packet, or of the OK packet that replaces it with `DEPRECATE_EOF`.
fn terminator_status(p: &[u8], deprecate_eof: bool) -> Result<u16> {
    if deprecate_eof {
        if let Ok(ok) = parse_ok(p) {
            return Ok(ok.status);
        }
    }
    if p.len() < 9 {
        // EOF: 0xfe, warnings, status.
        let mut r = Reader::new(p);
        r.u8()?;
        if r.is_empty() {
            return Ok(0); // pre-4.1 EOF
        }
        r.u16()?;
        r.u16()
    } else {
        Ok(parse_ok(p)?.status)
    }
}

/// What the tracker learned from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The answer goes on.
    More,
    /// The server asked for a local file: the client now sends it (packets ending with an empty
    /// one), then the server answers with OK or ERR.
    LocalInfile,
    /// The answer is complete.
    Done(Outcome),
}

/// How a complete answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success, with the server status of the last OK/EOF (`None` when the answer has none).
    Ok(Option<u16>),
    /// An ERR packet.
    Err,
    /// A prepared statement: its id, parameter count and the warnings its preparation raised.
    Prepared {
        /// Statement id.
        id: u32,
        /// Number of parameters.
        params: u16,
        /// Warnings of the preparation (the OK's `warning_count`; 0 when the packet ends
        /// before it).
        warnings: u16,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the first packet of a (possibly further) result.
    Start,
    /// Column definitions left to read.
    Columns(u64),
    /// After the column definitions (EOF expected, or rows / terminator).
    AfterColumns,
    /// Rows until a terminator.
    Rows,
    /// COM_STMT_PREPARE: metadata packets left (definitions and their EOFs).
    Prep(u64),
    /// COM_FIELD_LIST: column definitions until a terminator.
    FieldList,
    /// COM_STATISTICS: one string.
    Statistics,
    /// COM_SET_OPTION, COM_SHUTDOWN, COM_DEBUG: one EOF packet (an OK with the 0xfe header
    /// under `DEPRECATE_EOF`), or an ERR.
    Eof,
    Finished,
}

/// Follows the server's answer to one command.
#[derive(Debug, Clone)]
pub struct ResponseTracker {
    state: State,
    deprecate_eof: bool,
    binary: bool,
    /// A `COM_STMT_EXECUTE` whose flags byte asked for a cursor.
    cursor_asked: bool,
    local_infile_allowed: bool,
    prepared: Option<(u32, u16, u16)>,
    /// The packet last fed, when it was an OK packet.
    last_ok: Option<OkPacket>,
    cache_metadata: bool,
}

impl ResponseTracker {
    /// A tracker for the answer to the command packet `command` (its first payload bytes), on a
    /// connection where `deprecate_eof` was negotiated. Returns `None` for commands the server
    /// does not answer (`COM_QUIT`, `COM_STMT_CLOSE`, `COM_STMT_SEND_LONG_DATA`).
    pub fn new(command: &[u8], deprecate_eof: bool) -> Option<Self> {
        let c = *command.first()?;
        let state = match c {
            cmd::QUIT | cmd::STMT_CLOSE | cmd::STMT_SEND_LONG_DATA => return None,
            cmd::STMT_PREPARE => State::Start,
            cmd::STMT_FETCH => State::Rows,
            cmd::FIELD_LIST => State::FieldList,
            cmd::STATISTICS => State::Statistics,
            cmd::SET_OPTION | cmd::SHUTDOWN | cmd::DEBUG => State::Eof,
            _ => State::Start,
        };
        Some(Self {
            state,
            deprecate_eof,
            binary: c == cmd::STMT_EXECUTE || c == cmd::STMT_FETCH,
            // COM_STMT_EXECUTE: command, statement id (4 bytes), flags (cursor type bits).
            cursor_asked: c == cmd::STMT_EXECUTE && command.get(5).is_some_and(|f| f & 0x07 != 0),
            local_infile_allowed: c == cmd::QUERY,
            prepared: (c == cmd::STMT_PREPARE).then_some((0, 0, 0)),
            last_ok: None,
            cache_metadata: false,
        })
    }

    /// On a connection where MariaDB's `MARIADB_CLIENT_CACHE_METADATA` was negotiated: the
    /// column count of a result set is followed by a "metadata follows" byte, and when it is
    /// 0 (a prepared statement's unchanged metadata) no column definitions come.
    pub fn cache_metadata(mut self, on: bool) -> Self {
        self.cache_metadata = on;
        self
    }

    /// The packet last fed, parsed, when it was an OK packet (which carries session state when
    /// `CLIENT_SESSION_TRACK` is on): a plain OK, or a result set's terminator with
    /// `DEPRECATE_EOF`.
    pub fn last_ok(&self) -> Option<&OkPacket> {
        self.last_ok.as_ref()
    }

    /// True once the answer is complete.
    pub fn finished(&self) -> bool {
        self.state == State::Finished
    }

    /// Feeds the first chunk of the next logical packet (`whole` is false when the packet is
    /// split into more chunks, i.e. at least 16 MB).
    pub fn feed(&mut self, p: &[u8], whole: bool) -> Result<Step> {
        let head = p.first().copied();
        let terminator = whole && head == Some(0xfe) && p.len() < MAX_CHUNK;
        let is_err = head == Some(0xff);
        // MariaDB progress report (`CLIENT_PROGRESS`, e.g. during ALTER TABLE): an ERR header
        // with code 0xffff; the real answer follows.
        if is_err && p.get(1..3) == Some(&[0xff, 0xff][..]) && self.state != State::Finished {
            self.last_ok = None;
            return Ok(Step::More);
        }
        let ok_packet = match self.state {
            State::Start => head == Some(0x00) && self.prepared.is_none(),
            State::AfterColumns | State::Rows | State::FieldList => {
                terminator && self.deprecate_eof
            }
            _ => false,
        };
        // Parsed once here; the status below and the proxy's reading of it use this parse.
        self.last_ok = if ok_packet {
            OkPacket::parse(p).ok()
        } else {
            None
        };
        let step = match self.state {
            State::Finished => return err("packet after the end of the answer"),
            State::Statistics => self.done(Outcome::Ok(None)),
            State::Eof if is_err => self.done(Outcome::Err),
            State::Eof if terminator => {
                let st = self.terminator_status(p)?;
                self.done(Outcome::Ok(Some(st)))
            }
            State::Eof => return err("expected EOF after COM_SET_OPTION"),
            State::Start => match head {
                None => return err("empty packet"),
                Some(0xff) => self.done(Outcome::Err),
                Some(0x00) if self.prepared.is_some() => {
                    let mut r = Reader::new(p);
                    r.u8()?;
                    let id = r.u32()?;
                    let cols = u64::from(r.u16()?);
                    let params = r.u16()?;
                    let warnings = r.u8().and_then(|_| r.u16()).unwrap_or(0);
                    self.prepared = Some((id, params, warnings));
                    let eofs = |n: u64| u64::from(n > 0 && !self.deprecate_eof);
                    let left = u64::from(params) + eofs(u64::from(params)) + cols + eofs(cols);
                    self.state = State::Prep(left);
                    if left == 0 {
                        self.prep_done()
                    } else {
                        Step::More
                    }
                }
                Some(0x00) => match self.last_ok {
                    Some(ok) => self.end_result(ok.ok.status),
                    None => return err("malformed OK packet"),
                },
                Some(0xfb) if self.local_infile_allowed => {
                    self.state = State::Start;
                    Step::LocalInfile
                }
                Some(_) => {
                    let mut r = Reader::new(p);
                    let n = r.lenenc_int()?;
                    if n == 0 {
                        return err("result set with zero columns");
                    }
                    let metadata = !self.cache_metadata || r.u8().unwrap_or(1) != 0;
                    self.state = if metadata {
                        State::Columns(n)
                    } else {
                        State::AfterColumns
                    };
                    Step::More
                }
            },
            State::Columns(n) => {
                if is_err {
                    self.done(Outcome::Err)
                } else {
                    self.state = if n > 1 {
                        State::Columns(n - 1)
                    } else {
                        State::AfterColumns
                    };
                    Step::More
                }
            }
            State::AfterColumns => {
                if is_err {
                    self.done(Outcome::Err)
                } else if terminator {
                    let st = self.terminator_status(p)?;
                    // A binary result set opened as a cursor ends here (rows come with
                    // COM_STMT_FETCH): only when the execute asked for one. Other result
                    // sets may carry the flag too (a stored program with an open cursor, a
                    // prepared CALL of one): their rows follow as usual.
                    let cursor = self.cursor_asked && st & status::CURSOR_EXISTS != 0;
                    if cursor {
                        self.done(Outcome::Ok(Some(st)))
                    } else if !self.deprecate_eof {
                        // The EOF closing the column definitions.
                        self.state = State::Rows;
                        Step::More
                    } else {
                        self.end_result(st)
                    }
                } else if !self.deprecate_eof {
                    return err("expected EOF after column definitions");
                } else {
                    self.state = State::Rows;
                    Step::More
                }
            }
            State::Rows => {
                if is_err {
                    self.done(Outcome::Err)
                } else if terminator {
                    let st = self.terminator_status(p)?;
                    self.end_result(st)
                } else if self.binary && head != Some(0x00) && whole {
                    return err(format!("binary row with header {head:?}"));
                } else {
                    Step::More
                }
            }
            State::Prep(n) => {
                if is_err {
                    return err("ERR inside a prepared statement's metadata");
                }
                if n > 1 {
                    self.state = State::Prep(n - 1);
                    Step::More
                } else {
                    self.prep_done()
                }
            }
            State::FieldList => {
                if is_err {
                    self.done(Outcome::Err)
                } else if terminator {
                    let st = self.terminator_status(p)?;
                    self.done(Outcome::Ok(Some(st)))
                } else {
                    Step::More
                }
            }
        };
        Ok(step)
    }

    /// The status of a terminator: from the OK packet parsed already, else as an EOF.
    fn terminator_status(&self, p: &[u8]) -> Result<u16> {
        match self.last_ok {
            Some(ok) => Ok(ok.ok.status),
            None => terminator_status(p, self.deprecate_eof),
        }
    }

    fn done(&mut self, o: Outcome) -> Step {
        self.state = State::Finished;
        Step::Done(o)
    }

    fn end_result(&mut self, st: u16) -> Step {
        if st & status::MORE_RESULTS_EXISTS != 0 {
            self.state = State::Start;
            Step::More
        } else {
            self.done(Outcome::Ok(Some(st)))
        }
    }

    fn prep_done(&mut self) -> Step {
        let (id, params, warnings) = self.prepared.unwrap_or((0, 0, 0));
        self.done(Outcome::Prepared {
            id,
            params,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eof(st: u16) -> Vec<u8> {
        let mut v = vec![0xfe, 0, 0];
        v.extend_from_slice(&st.to_le_bytes());
        v
    }
    fn ok_fe(st: u16) -> Vec<u8> {
        // DEPRECATE_EOF terminator: an OK packet with the 0xfe header (>= 9 bytes with info).
        let mut v = vec![0xfe, 0, 0];
        v.extend_from_slice(&st.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 0, 0]);
        v
    }
    fn ok(st: u16) -> Vec<u8> {
        ok_packet(st)
    }
    const COL: &[u8] = b"\x03def\x00\x00\x00\x01a\x00\x0c";
    const ERR: &[u8] = b"\xff\x15\x04#28000Access denied";

    /// Feeds packets; returns the index at which the answer completed and how.
    fn run(command: &[u8], deprecate_eof: bool, packets: &[Vec<u8>]) -> (usize, Step) {
        let mut t = ResponseTracker::new(command, deprecate_eof).unwrap();
        for (i, p) in packets.iter().enumerate() {
            let s = t.feed(p, true).unwrap();
            if s != Step::More {
                return (i, s);
            }
        }
        panic!("answer did not complete: {t:?}");
    }

    #[test]
    fn answers_end_where_the_server_ends_them() {
        let q = [cmd::QUERY, b'x'];
        let ac = status::AUTOCOMMIT;
        let more = status::MORE_RESULTS_EXISTS | ac;
        let row = b"\x01a".to_vec();
        let fe_row = {
            // A text row starting with 0xfe is only possible for a >= 16 MB value: not whole.
            vec![0xfe; 20]
        };
        type Case<'a> = (&'a str, &'a [u8], bool, Vec<Vec<u8>>, (usize, Step));
        // COM_STMT_EXECUTE of statement 1 with CURSOR_TYPE_READ_ONLY, iteration count 1.
        let exec_cursor = [cmd::STMT_EXECUTE, 1, 0, 0, 0, 1, 1, 0, 0, 0];
        let table: Vec<Case> = vec![
            (
                "ok",
                &q,
                false,
                vec![ok(ac)],
                (0, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "err",
                &q,
                false,
                vec![ERR.to_vec()],
                (0, Step::Done(Outcome::Err)),
            ),
            (
                "result set",
                &q,
                false,
                vec![
                    vec![1],
                    COL.to_vec(),
                    eof(ac),
                    row.clone(),
                    row.clone(),
                    eof(ac),
                ],
                (5, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "result set, deprecate eof",
                &q,
                true,
                vec![vec![1], COL.to_vec(), row.clone(), ok_fe(ac)],
                (3, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "empty result set, deprecate eof",
                &q,
                true,
                vec![vec![2], COL.to_vec(), COL.to_vec(), ok_fe(ac)],
                (3, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                // A stored program with an open cursor (an anonymous block in Oracle mode):
                // its SELECTs' text result sets carry CURSOR_EXISTS; rows still follow.
                "text result set flagged cursor-exists, then more",
                &q,
                false,
                vec![
                    vec![1],
                    COL.to_vec(),
                    eof(more | status::CURSOR_EXISTS),
                    row.clone(),
                    eof(more | status::CURSOR_EXISTS),
                    ok(ac),
                ],
                (5, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "the same, deprecate eof",
                &q,
                true,
                vec![
                    vec![1],
                    COL.to_vec(),
                    row.clone(),
                    ok_fe(more | status::CURSOR_EXISTS),
                    ok(ac),
                ],
                (4, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "error mid rows",
                &q,
                false,
                vec![vec![1], COL.to_vec(), eof(ac), row.clone(), ERR.to_vec()],
                (4, Step::Done(Outcome::Err)),
            ),
            (
                "multi results",
                &q,
                false,
                vec![
                    ok(more),
                    vec![1],
                    COL.to_vec(),
                    eof(ac),
                    row.clone(),
                    eof(more),
                    ok(ac),
                ],
                (6, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "local infile",
                &q,
                false,
                vec![b"\xfb/tmp/x".to_vec()],
                (0, Step::LocalInfile),
            ),
            (
                "ping",
                &[cmd::PING],
                false,
                vec![ok(ac)],
                (0, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "statistics",
                &[cmd::STATISTICS],
                false,
                vec![b"Uptime: 5".to_vec()],
                (0, Step::Done(Outcome::Ok(None))),
            ),
            (
                "set option (EOF)",
                &[cmd::SET_OPTION, 0, 0],
                false,
                vec![eof(ac)],
                (0, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "shutdown",
                &[cmd::SHUTDOWN, 0],
                false,
                vec![eof(ac)],
                (0, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "set option (deprecate EOF)",
                &[cmd::SET_OPTION, 1, 0],
                true,
                vec![ok_fe(ac)],
                (0, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "field list",
                &[cmd::FIELD_LIST],
                false,
                vec![COL.to_vec(), COL.to_vec(), eof(ac)],
                (2, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "prepare 2 params 1 col",
                &[cmd::STMT_PREPARE],
                false,
                vec![
                    b"\x00\x07\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00".to_vec(),
                    COL.to_vec(),
                    COL.to_vec(),
                    eof(ac),
                    COL.to_vec(),
                    eof(ac),
                ],
                (
                    5,
                    Step::Done(Outcome::Prepared {
                        id: 7,
                        params: 2,
                        warnings: 0,
                    }),
                ),
            ),
            (
                "prepare no params no cols",
                &[cmd::STMT_PREPARE],
                false,
                vec![b"\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00".to_vec()],
                (
                    0,
                    Step::Done(Outcome::Prepared {
                        id: 8,
                        params: 0,
                        warnings: 3,
                    }),
                ),
            ),
            (
                "prepare 1 param, deprecate eof",
                &[cmd::STMT_PREPARE],
                true,
                vec![
                    b"\x00\x09\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00".to_vec(),
                    COL.to_vec(),
                ],
                (
                    1,
                    Step::Done(Outcome::Prepared {
                        id: 9,
                        params: 1,
                        warnings: 0,
                    }),
                ),
            ),
            (
                "execute binary rows",
                &[cmd::STMT_EXECUTE],
                false,
                vec![vec![1], COL.to_vec(), eof(ac), vec![0, 0, 1], eof(ac)],
                (4, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "execute with cursor",
                &exec_cursor,
                false,
                vec![vec![1], COL.to_vec(), eof(ac | status::CURSOR_EXISTS)],
                (2, Step::Done(Outcome::Ok(Some(ac | status::CURSOR_EXISTS)))),
            ),
            (
                "execute with cursor, deprecate eof",
                &exec_cursor,
                true,
                vec![vec![1], COL.to_vec(), eof(ac | status::CURSOR_EXISTS)],
                (2, Step::Done(Outcome::Ok(Some(ac | status::CURSOR_EXISTS)))),
            ),
            (
                // A prepared CALL of a routine with an open cursor: no cursor was asked for,
                // the rows follow although the status says CURSOR_EXISTS (status 74).
                "execute without cursor, routine's cursor open",
                &[cmd::STMT_EXECUTE, 1, 0, 0, 0, 0, 1, 0, 0, 0],
                false,
                vec![
                    vec![1],
                    COL.to_vec(),
                    eof(74),
                    vec![0, 0, 1],
                    eof(74),
                    ok(ac),
                ],
                (5, Step::Done(Outcome::Ok(Some(ac)))),
            ),
            (
                "fetch",
                &[cmd::STMT_FETCH],
                false,
                vec![vec![0, 0, 1], eof(ac | status::LAST_ROW_SENT)],
                (1, Step::Done(Outcome::Ok(Some(ac | status::LAST_ROW_SENT)))),
            ),
        ];
        for (name, c, de, packets, want) in table {
            assert_eq!(run(c, de, &packets), want, "{name}");
        }
        // MARIADB_CLIENT_CACHE_METADATA: "metadata follows" 0 skips the definitions (the EOF
        // that closes them still comes without DEPRECATE_EOF); 1 sends them.
        for (de, packets) in [
            (false, vec![vec![1, 0], eof(ac), vec![0, 0, 1], eof(ac)]),
            (true, vec![vec![1, 0], vec![0, 0, 1], eof(ac)]),
            (
                false,
                vec![vec![1, 1], COL.to_vec(), eof(ac), vec![0, 0, 1], eof(ac)],
            ),
        ] {
            let mut t = ResponseTracker::new(&[cmd::STMT_EXECUTE], de)
                .unwrap()
                .cache_metadata(true);
            let last = packets.len() - 1;
            for (i, p) in packets.iter().enumerate() {
                let step = t.feed(p, true).unwrap();
                assert_eq!(step == Step::More, i < last, "{packets:?} at {i}");
            }
        }
        // A progress report (ERR header, code 0xffff) is not the end of the answer.
        let mut t = ResponseTracker::new(&q, false).unwrap();
        assert_eq!(
            t.feed(b"\xff\xff\xff\x01\x01\x00\x10\x27\x00\x05stage", true)
                .unwrap(),
            Step::More
        );
        assert_eq!(
            t.feed(&ok(ac), true).unwrap(),
            Step::Done(Outcome::Ok(Some(ac)))
        );
        // A huge row starting with 0xfe is a row, not a terminator.
        let mut t = ResponseTracker::new(&q, false).unwrap();
        for p in [vec![1], COL.to_vec(), eof(ac)] {
            assert_eq!(t.feed(&p, true).unwrap(), Step::More);
        }
        assert_eq!(t.feed(&fe_row, false).unwrap(), Step::More);
        assert_eq!(
            t.feed(&eof(ac), true).unwrap(),
            Step::Done(Outcome::Ok(Some(ac)))
        );
    }

    #[test]
    fn commands_without_answer_and_garbage() {
        for c in [cmd::QUIT, cmd::STMT_CLOSE, cmd::STMT_SEND_LONG_DATA] {
            assert!(ResponseTracker::new(&[c], false).is_none());
        }
        let mut t = ResponseTracker::new(&[cmd::QUERY], false).unwrap();
        assert!(t.feed(&[], true).is_err());
        let mut t = ResponseTracker::new(&[cmd::QUERY], false).unwrap();
        assert!(t.feed(&[0xfc, 1], true).is_err());
        let mut t = ResponseTracker::new(&[cmd::PING], false).unwrap();
        t.feed(&ok(2), true).unwrap();
        assert!(t.feed(&ok(2), true).is_err());
    }

    #[test]
    fn session_state_is_read_and_stripped() {
        // OK: affected 1, insert id 5, status autocommit|state changed, 0 warnings, info "",
        // state: [sysvar (0), len, lenenc "last_gtid", lenenc "0-1-42"], [schema (1), ...].
        let mut state = vec![];
        let mut var = vec![9];
        var.extend_from_slice(b"last_gtid");
        var.push(6);
        var.extend_from_slice(b"0-1-42");
        state.push(0);
        state.push(var.len() as u8);
        state.extend_from_slice(&var);
        state.extend_from_slice(&[1, 3, 2, b'w', b'p']);
        let st = status::AUTOCOMMIT | status::SESSION_STATE_CHANGED;
        let mut p = vec![0, 1, 5];
        p.extend_from_slice(&st.to_le_bytes());
        p.extend_from_slice(&[0, 0, 0]); // warnings, empty info
        p.push(state.len() as u8);
        p.extend_from_slice(&state);
        assert_eq!(ok_last_gtid(&p).as_deref(), Some("0-1-42"));
        let parsed = OkPacket::parse(&p).unwrap();
        assert_eq!(parsed.schema(&p), Some(&b"wp"[..]));
        assert_eq!(
            OkPacket::parse(&ok_packet(2))
                .unwrap()
                .schema(&ok_packet(2)),
            None
        );
        let plain = ok_without_session_state(&p).unwrap();
        assert_eq!(plain, vec![0, 1, 5, 2, 0, 0, 0]);
        assert_eq!(parse_ok(&plain).unwrap().affected_rows, 1);
        // No state, no gtid; an OK without the info string at all is fine too.
        assert_eq!(ok_last_gtid(&ok_packet(2)), None);
        assert_eq!(
            ok_without_session_state(&ok_packet(2)).unwrap(),
            ok_packet(2)
        );
        // An info string ("Records: 3 ...") stays length-encoded, as MariaDB sends it.
        let mut with_info = vec![0, 3, 0, 2, 0, 0, 0, 4];
        with_info.extend_from_slice(b"Recs");
        assert_eq!(ok_without_session_state(&with_info).unwrap(), with_info);
        // The tracker flags OK packets (not EOFs, not prepare OKs).
        let mut t = ResponseTracker::new(&[cmd::QUERY], false).unwrap();
        t.feed(&p, true).unwrap();
        assert!(t.last_ok().is_some());
        let mut t = ResponseTracker::new(&[cmd::QUERY], true).unwrap();
        for pk in [vec![1], COL.to_vec()] {
            t.feed(&pk, true).unwrap();
            assert!(t.last_ok().is_none());
        }
        t.feed(&ok_fe(2), true).unwrap();
        assert!(t.last_ok().is_some());
    }

    #[test]
    fn err_packets_round_trip() {
        let e = parse_err(&err_packet(
            1045,
            "28000",
            "Access denied for user 'x'@'localhost' (using password: YES)",
        ))
        .unwrap();
        assert_eq!((e.code, e.state.as_str()), (1045, "28000"));
        assert!(e.message.starts_with("Access denied"));
        assert_eq!(parse_ok(&ok_packet(3)).unwrap().status, 3);
    }
}
