//! Text result sets decoded into rows: what a proxy needs for the few queries it runs itself
//! (probes, `MASTER_GTID_WAIT`, password hashes), fed one logical packet at a time.

use crate::codec::Reader;
use crate::consts::header;
use crate::response::{parse_err, ResponseTracker, ServerError, Step};
use crate::{err, Result};

/// A text result: column names and rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rows {
    /// Column names.
    pub columns: Vec<String>,
    /// Rows (NULL is `None`).
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The value of column `name` in row `i`.
    pub fn get(&self, i: usize, name: &str) -> Option<&str> {
        let c = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.rows.get(i)?.get(c)?.as_deref()
    }
}

/// Decodes the answer to one `COM_QUERY` into [`Rows`] (the last result set's, for a
/// multi-result answer), or the server's error.
#[derive(Debug)]
pub struct TextRows {
    tracker: ResponseTracker,
    deprecate_eof: bool,
    /// Columns of the current result set, once its column count was read.
    columns: Option<u64>,
    /// Packets of the current result set after the column count.
    seen: u64,
    out: Rows,
}

impl TextRows {
    /// A decoder for the answer to the command `command` on a connection where
    /// `deprecate_eof` was negotiated.
    pub fn new(command: &[u8], deprecate_eof: bool) -> Result<Self> {
        let Some(tracker) = ResponseTracker::new(command, deprecate_eof) else {
            return err("a command without an answer");
        };
        Ok(Self {
            tracker,
            deprecate_eof,
            columns: None,
            seen: 0,
            out: Rows::default(),
        })
    }

    /// Feeds the next logical packet of the answer: `Some` once the answer is complete.
    pub fn feed(&mut self, p: &[u8]) -> Result<Option<std::result::Result<Rows, ServerError>>> {
        let step = self.tracker.feed(p, true)?;
        if p.first() == Some(&header::ERR) {
            return Ok(Some(Err(parse_err(p)?)));
        }
        if let Step::Done(_) = step {
            return Ok(Some(Ok(std::mem::take(&mut self.out))));
        }
        let Some(n) = self.columns else {
            if p.first() != Some(&header::OK) {
                self.columns = Some(Reader::new(p).lenenc_int()?);
                self.out = Rows::default();
                self.seen = 0;
            }
            return Ok(None);
        };
        self.seen += 1;
        let eof = u64::from(!self.deprecate_eof);
        if self.seen <= n {
            // Column definition: catalog, schema, table, org_table, name, ...
            let mut r = Reader::new(p);
            let mut name = &[][..];
            for _ in 0..5 {
                name = r.lenenc_bytes()?;
            }
            self.out
                .columns
                .push(String::from_utf8_lossy(name).into_owned());
        } else if self.seen > n + eof {
            // The terminator of a result set that more results follow (an EOF is shorter than
            // any row starting with 0xfe; with DEPRECATE_EOF the tracker saw an OK).
            let terminator = p.first() == Some(&header::EOF)
                && (p.len() < 9 || self.tracker.last_ok().is_some());
            if terminator {
                self.columns = None;
                return Ok(None);
            }
            let mut r = Reader::new(p);
            let mut row = Vec::with_capacity(self.out.columns.len());
            for _ in 0..self.out.columns.len() {
                if r.remaining() > 0 && p[p.len() - r.remaining()] == 0xfb {
                    r.u8()?;
                    row.push(None); // NULL
                } else {
                    let v = r.lenenc_bytes()?;
                    row.push(Some(String::from_utf8_lossy(v).into_owned()));
                }
            }
            self.out.rows.push(row);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::put_lenenc_bytes;
    use crate::consts::{cmd, status};

    fn column(name: &str) -> Vec<u8> {
        let mut d = Vec::new();
        for part in ["def", "", "", "", name, name] {
            put_lenenc_bytes(&mut d, part.as_bytes());
        }
        d.extend_from_slice(&[0x0c, 45, 0, 255, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
        d
    }
    fn eof() -> Vec<u8> {
        let mut e = vec![0xfe, 0, 0];
        e.extend_from_slice(&status::AUTOCOMMIT.to_le_bytes());
        e
    }
    fn row(values: &[Option<&str>]) -> Vec<u8> {
        let mut r = Vec::new();
        for v in values {
            match v {
                Some(v) => put_lenenc_bytes(&mut r, v.as_bytes()),
                None => r.push(0xfb),
            }
        }
        r
    }
    fn decode(packets: &[Vec<u8>]) -> std::result::Result<Rows, ServerError> {
        let mut d = TextRows::new(&[cmd::QUERY, b'x'], false).unwrap();
        for (i, p) in packets.iter().enumerate() {
            if let Some(done) = d.feed(p).unwrap() {
                assert_eq!(i, packets.len() - 1, "ended early");
                return done;
            }
        }
        panic!("never ended");
    }

    #[test]
    fn a_result_set_decodes_to_named_columns_and_rows_with_nulls() {
        let rows = decode(&[
            vec![2],
            column("Host"),
            column("w"),
            eof(),
            row(&[Some("db-1"), None]),
            row(&[Some(""), Some("0")]),
            eof(),
        ])
        .unwrap();
        assert_eq!(rows.columns, ["Host", "w"]);
        assert_eq!(rows.get(0, "host"), Some("db-1"));
        assert_eq!(rows.get(0, "W"), None);
        assert_eq!(rows.get(1, "w"), Some("0"));
        assert_eq!(rows.get(2, "w"), None);
    }

    #[test]
    fn of_several_results_the_last_result_set_is_kept() {
        let more = status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS;
        let mut eof_more = vec![0xfe, 0, 0];
        eof_more.extend_from_slice(&more.to_le_bytes());
        let rows = decode(&[
            vec![1],
            column("a"),
            eof(),
            row(&[Some("first")]),
            eof_more,
            vec![1],
            column("b"),
            eof(),
            row(&[Some("second")]),
            eof(),
        ])
        .unwrap();
        assert_eq!(rows.columns, ["b"]);
        assert_eq!(rows.get(0, "b"), Some("second"));
        assert_eq!(rows.rows.len(), 1);
    }

    #[test]
    fn an_ok_is_no_rows_and_an_err_is_the_servers_error() {
        assert_eq!(
            decode(&[crate::response::ok_packet(status::AUTOCOMMIT)]).unwrap(),
            Rows::default()
        );
        let e = decode(&[crate::response::err_packet(1227, "42000", "Access denied")]).unwrap_err();
        assert_eq!((e.code, e.message.as_str()), (1227, "Access denied"));
    }
}
