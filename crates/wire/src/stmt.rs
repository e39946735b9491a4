//! Binary-protocol prepared statements: what a proxy needs to run a client's statement on
//! another server (`COM_STMT_EXECUTE` re-addressed to that server's statement id, with the
//! parameter types the client bound earlier).

use crate::consts::cmd;
use crate::{err, Result};

/// The fixed part of `COM_STMT_EXECUTE`: command, statement id, flags, iteration count.
const FIXED: usize = 1 + 4 + 1 + 4;

/// A parsed `COM_STMT_EXECUTE` (payload, command byte included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Statement id.
    pub id: u32,
    /// Cursor flags (0: no cursor).
    pub flags: u8,
    /// Parameter types (2 bytes each) when this packet binds them.
    pub types: Option<&'a [u8]>,
}

/// Parses `COM_STMT_EXECUTE` for a statement with `params` parameters.
pub fn parse_execute(p: &[u8], params: u16) -> Result<Execute<'_>> {
    if p.first() != Some(&cmd::STMT_EXECUTE) || p.len() < FIXED {
        return err("not a complete COM_STMT_EXECUTE");
    }
    let id = u32::from_le_bytes([p[1], p[2], p[3], p[4]]);
    let flags = p[5];
    let mut types = None;
    if params > 0 {
        let n = usize::from(params);
        let bound = FIXED + n.div_ceil(8);
        match p.get(bound) {
            Some(1) => {
                types = Some(
                    p.get(bound + 1..bound + 1 + 2 * n)
                        .ok_or_else(|| crate::ProtocolError("truncated parameter types".into()))?,
                )
            }
            Some(0) => {}
            _ => return err("COM_STMT_EXECUTE without its new-params-bound flag"),
        }
    }
    Ok(Execute { id, flags, types })
}

/// `p` (a `COM_STMT_EXECUTE` the client sent for a statement with `params` parameters) for
/// another server: statement id `id`, and, when `p` does not bind types, `types` bound (a
/// server that has not executed the statement yet needs them).
pub fn readdress_execute(p: &[u8], params: u16, id: u32, types: &[u8]) -> Result<Vec<u8>> {
    let e = parse_execute(p, params)?;
    let mut out = Vec::with_capacity(p.len() + types.len());
    out.push(cmd::STMT_EXECUTE);
    out.extend_from_slice(&id.to_le_bytes());
    if params == 0 || e.types.is_some() {
        out.extend_from_slice(&p[5..]);
        return Ok(out);
    }
    let n = usize::from(params);
    if types.len() != 2 * n {
        return err("parameter types of another length");
    }
    let bound = FIXED + n.div_ceil(8);
    out.extend_from_slice(&p[5..bound]);
    out.push(1);
    out.extend_from_slice(types);
    out.extend_from_slice(&p[bound + 1..]);
    Ok(out)
}

/// `COM_STMT_CLOSE` of statement `id` (the server does not answer).
pub fn close(id: u32) -> [u8; 5] {
    let b = id.to_le_bytes();
    [cmd::STMT_CLOSE, b[0], b[1], b[2], b[3]]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two parameters (a LONGLONG and a VAR_STRING), the second NULL-free: 7 and "ab".
    fn execute(id: u32, bind: bool) -> Vec<u8> {
        let mut p = vec![cmd::STMT_EXECUTE];
        p.extend_from_slice(&id.to_le_bytes());
        p.push(0); // no cursor
        p.extend_from_slice(&1u32.to_le_bytes());
        p.push(0); // null bitmap
        if bind {
            p.extend_from_slice(&[1, 8, 0, 253, 0]);
        } else {
            p.push(0);
        }
        p.extend_from_slice(&7u64.to_le_bytes());
        p.extend_from_slice(&[2, b'a', b'b']);
        p
    }

    #[test]
    fn parses_ids_flags_and_types() {
        let bound = execute(5, true);
        let e = parse_execute(&bound, 2).unwrap();
        assert_eq!((e.id, e.flags, e.types), (5, 0, Some(&[8, 0, 253, 0][..])));
        assert_eq!(parse_execute(&execute(5, false), 2).unwrap().types, None);
        // Statement ids are read by `command::Command::parse`.
        use crate::command::Command;
        assert_eq!(
            Command::parse(&execute(9, false)).unwrap(),
            Command::StmtExecute { id: 9, flags: 0 }
        );
        assert_eq!(Command::parse(&close(3)).unwrap(), Command::StmtClose(3));
        assert_eq!(
            Command::parse(&[cmd::QUERY, 1, 2, 3, 4]).unwrap(),
            Command::Query(&[1, 2, 3, 4])
        );
        assert!(parse_execute(&execute(5, true)[..12], 2).is_err());
        assert!(parse_execute(&[cmd::STMT_EXECUTE, 1], 0).is_err());
    }

    #[test]
    fn readdressing_binds_the_remembered_types() {
        // A packet without types gets them; the values follow unchanged.
        let out = readdress_execute(&execute(5, false), 2, 42, &[8, 0, 253, 0]).unwrap();
        assert_eq!(out, execute(42, true));
        // A packet with types keeps its own.
        let out = readdress_execute(&execute(5, true), 2, 42, &[]).unwrap();
        assert_eq!(out, execute(42, true));
        // No parameters: only the id changes.
        let mut p = vec![cmd::STMT_EXECUTE, 5, 0, 0, 0, 0, 1, 0, 0, 0];
        let out = readdress_execute(&p, 0, 6, &[]).unwrap();
        p[1] = 6;
        assert_eq!(out, p);
        assert!(readdress_execute(&execute(5, false), 2, 42, &[8, 0]).is_err());
    }
}
