//! Connection phase: the server greeting (Initial Handshake v10), the client's Handshake
//! Response 41, auth switch requests and the `mysql_native_password` scramble.

use sha1::{Digest, Sha1};

use crate::codec::{put_lenenc_bytes, Reader};
use crate::consts::cap;
use crate::{err, Result};

/// The auth plugin whose scramble a proxy can re-compute for other servers.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";

/// The server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// Server version string, e.g. `5.5.5-10.11.6-MariaDB-0+deb12u1-log`.
    pub server_version: Vec<u8>,
    /// The server's id for this connection (`CONNECTION_ID()`).
    pub connection_id: u32,
    /// The 20-byte nonce.
    pub nonce: Vec<u8>,
    /// Capabilities (lower 32 bits).
    pub capabilities: u32,
    /// MariaDB extended capabilities (the reserved bytes), when the server is MariaDB.
    pub mariadb_capabilities: u32,
    /// Default collation id.
    pub charset: u8,
    /// Server status.
    pub status: u16,
    /// Auth plugin the server proposes.
    pub auth_plugin: String,
}

impl Greeting {
    /// Parses a greeting payload.
    pub fn parse(p: &[u8]) -> Result<Self> {
        let mut r = Reader::new(p);
        match r.u8()? {
            10 => {}
            0xff => return err("the server refused the connection (ERR in place of a greeting)"),
            v => return err(format!("unsupported protocol version {v}")),
        }
        let server_version = r.null_terminated()?.to_vec();
        let connection_id = r.u32()?;
        let mut nonce = r.bytes(8)?.to_vec();
        r.u8()?;
        let mut capabilities = u32::from(r.u16()?);
        let charset = r.u8()?;
        let status = r.u16()?;
        capabilities |= u32::from(r.u16()?) << 16;
        let data_len = usize::from(r.u8()?);
        r.bytes(6)?;
        let mariadb_capabilities = r.u32()?;
        if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = data_len.saturating_sub(8).max(13);
            let part2 = r.bytes(n)?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            nonce.extend_from_slice(part2);
        }
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            let rest = r.rest();
            String::from_utf8_lossy(rest.strip_suffix(&[0]).unwrap_or(rest)).into_owned()
        } else {
            NATIVE_PASSWORD.to_string()
        };
        Ok(Self {
            server_version,
            connection_id,
            nonce,
            capabilities,
            mariadb_capabilities,
            charset,
            status,
            auth_plugin,
        })
    }

    /// Encodes the greeting (used to hand a modified greeting to a client).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = vec![10];
        o.extend_from_slice(&self.server_version);
        o.push(0);
        o.extend_from_slice(&self.connection_id.to_le_bytes());
        o.extend_from_slice(&self.nonce[..8.min(self.nonce.len())]);
        o.push(0);
        o.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        o.push(self.charset);
        o.extend_from_slice(&self.status.to_le_bytes());
        o.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        o.push(if self.capabilities & cap::PLUGIN_AUTH != 0 {
            (self.nonce.len() + 1) as u8
        } else {
            0
        });
        o.extend_from_slice(&[0; 6]);
        o.extend_from_slice(&self.mariadb_capabilities.to_le_bytes());
        if self.capabilities & cap::SECURE_CONNECTION != 0 {
            let part2 = self.nonce.get(8..).unwrap_or(&[]);
            o.extend_from_slice(part2);
            o.resize(o.len() + 13usize.saturating_sub(part2.len()).max(1), 0);
        }
        if self.capabilities & cap::PLUGIN_AUTH != 0 {
            o.extend_from_slice(self.auth_plugin.as_bytes());
            o.push(0);
        }
        o
    }
}

/// The client's answer to the greeting.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    /// Client capabilities.
    pub capabilities: u32,
    /// Client's max packet size.
    pub max_packet: u32,
    /// Collation id.
    pub charset: u8,
    /// MariaDB extended capabilities.
    pub mariadb_capabilities: u32,
    /// User name.
    pub user: Vec<u8>,
    /// Auth data (the scramble for `mysql_native_password`).
    pub auth: Vec<u8>,
    /// Initial database.
    pub database: Option<Vec<u8>>,
    /// Auth plugin the client used.
    pub auth_plugin: Option<String>,
    /// Connection attributes, raw (the length-encoded key/value block).
    pub attrs: Option<Vec<u8>>,
}

impl HandshakeResponse {
    /// True when `p` is an SSL request (the short response a TLS client sends first).
    pub fn is_ssl_request(p: &[u8]) -> bool {
        p.len() == 32 && u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & cap::SSL != 0
    }

    /// Parses a Handshake Response 41.
    pub fn parse(p: &[u8]) -> Result<Self> {
        let mut r = Reader::new(p);
        let capabilities = r.u32()?;
        if capabilities & cap::PROTOCOL_41 == 0 {
            return err("clients older than protocol 4.1 are not supported");
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        r.bytes(19)?;
        let mariadb_capabilities = r.u32()?;
        let user = r.null_terminated()?.to_vec();
        let auth = if capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            r.lenenc_bytes()?.to_vec()
        } else if capabilities & cap::SECURE_CONNECTION != 0 {
            let n = usize::from(r.u8()?);
            r.bytes(n)?.to_vec()
        } else {
            r.null_terminated()?.to_vec()
        };
        let database = if capabilities & cap::CONNECT_WITH_DB != 0 && !r.is_empty() {
            Some(r.null_terminated()?.to_vec())
        } else {
            None
        };
        let auth_plugin = if capabilities & cap::PLUGIN_AUTH != 0 && !r.is_empty() {
            Some(String::from_utf8_lossy(r.null_terminated()?).into_owned())
        } else {
            None
        };
        let attrs = if capabilities & cap::CONNECT_ATTRS != 0 && !r.is_empty() {
            Some(r.lenenc_bytes()?.to_vec())
        } else {
            None
        };
        Ok(Self {
            capabilities,
            max_packet,
            charset,
            mariadb_capabilities,
            user,
            auth,
            database,
            auth_plugin,
            attrs,
        })
    }

    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(64 + self.user.len());
        o.extend_from_slice(&self.capabilities.to_le_bytes());
        o.extend_from_slice(&self.max_packet.to_le_bytes());
        o.push(self.charset);
        o.extend_from_slice(&[0; 19]);
        o.extend_from_slice(&self.mariadb_capabilities.to_le_bytes());
        o.extend_from_slice(&self.user);
        o.push(0);
        if self.capabilities & cap::PLUGIN_AUTH_LENENC_DATA != 0 {
            put_lenenc_bytes(&mut o, &self.auth);
        } else if self.capabilities & cap::SECURE_CONNECTION != 0 {
            o.push(self.auth.len() as u8);
            o.extend_from_slice(&self.auth);
        } else {
            o.extend_from_slice(&self.auth);
            o.push(0);
        }
        if self.capabilities & cap::CONNECT_WITH_DB != 0 {
            o.extend_from_slice(self.database.as_deref().unwrap_or(b""));
            o.push(0);
        }
        if self.capabilities & cap::PLUGIN_AUTH != 0 {
            o.extend_from_slice(
                self.auth_plugin
                    .as_deref()
                    .unwrap_or(NATIVE_PASSWORD)
                    .as_bytes(),
            );
            o.push(0);
        }
        if self.capabilities & cap::CONNECT_ATTRS != 0 {
            put_lenenc_bytes(&mut o, self.attrs.as_deref().unwrap_or(b""));
        }
        o
    }
}

/// An auth switch request (`0xfe`, plugin name, plugin data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    /// Plugin to switch to.
    pub plugin: String,
    /// Its data (the new nonce for `mysql_native_password`, without the trailing NUL).
    pub data: Vec<u8>,
}

impl AuthSwitch {
    /// Parses an auth switch request payload (starting with `0xfe`).
    pub fn parse(p: &[u8]) -> Result<Self> {
        let mut r = Reader::new(p);
        if r.u8()? != 0xfe {
            return err("not an auth switch request");
        }
        let plugin = String::from_utf8_lossy(r.null_terminated()?).into_owned();
        let data = r.rest();
        Ok(Self {
            plugin,
            data: data.strip_suffix(&[0]).unwrap_or(data).to_vec(),
        })
    }

    /// Encodes the request as MariaDB sends it (the data NUL-terminated).
    pub fn encode(&self) -> Vec<u8> {
        let mut o = Vec::with_capacity(2 + self.plugin.len() + self.data.len() + 1);
        o.push(0xfe);
        o.extend_from_slice(self.plugin.as_bytes());
        o.push(0);
        o.extend_from_slice(&self.data);
        o.push(0);
        o
    }
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `SHA1(SHA1(password))`: what `mysql.user` stores (as `*HEX`).
pub fn native_stage2(password: &[u8]) -> [u8; 20] {
    sha1(&[&sha1(&[password])])
}

/// The client's `mysql_native_password` scramble for `nonce`, from `SHA1(password)`.
pub fn native_token_from_stage1(stage1: &[u8; 20], nonce: &[u8]) -> [u8; 20] {
    let stage2 = sha1(&[stage1]);
    let mask = sha1(&[nonce, &stage2]);
    let mut t = [0u8; 20];
    for i in 0..20 {
        t[i] = stage1[i] ^ mask[i];
    }
    t
}

/// The scramble for a clear-text password (empty password: empty scramble).
pub fn native_token(password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return Vec::new();
    }
    native_token_from_stage1(&sha1(&[password]), nonce).to_vec()
}

/// Recovers `SHA1(password)` from a client's scramble, given what `mysql.user` stores; `None`
/// when the scramble does not match (a wrong password).
pub fn native_recover_stage1(token: &[u8], nonce: &[u8], stage2: &[u8; 20]) -> Option<[u8; 20]> {
    if token.len() != 20 {
        return None;
    }
    let mask = sha1(&[nonce, stage2]);
    let mut s1 = [0u8; 20];
    for i in 0..20 {
        s1[i] = token[i] ^ mask[i];
    }
    (sha1(&[&s1]) == *stage2).then_some(s1)
}

/// Parses `*94BDCEBE19083CE2A1F959FD02F964C7AF4CFC29` (as in `mysql.user`) into stage 2.
pub fn parse_stage2_hex(s: &str) -> Option<[u8; 20]> {
    let h = s.strip_prefix('*')?;
    if h.len() != 40 {
        return None;
    }
    let mut out = [0u8; 20];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_switch_round_trips() {
        let sw = AuthSwitch {
            plugin: NATIVE_PASSWORD.into(),
            data: b"abcdefghij0123456789".to_vec(),
        };
        let p = sw.encode();
        assert_eq!(p[0], 0xfe);
        assert_eq!(*p.last().unwrap(), 0);
        assert_eq!(AuthSwitch::parse(&p).unwrap(), sw);
    }

    #[test]
    fn native_password_matches_mariadb() {
        // SELECT PASSWORD('secret') on MariaDB 10.11
        let stage2 = parse_stage2_hex("*14E65567ABDB5135D0CFD9A70B3032C179A49EE7").unwrap();
        assert_eq!(native_stage2(b"secret"), stage2);
        let nonce = b"0123456789abcdefghij";
        let token = native_token(b"secret", nonce);
        let s1 = native_recover_stage1(&token, nonce, &stage2).unwrap();
        assert_eq!(
            native_token_from_stage1(&s1, b"another nonce 123456").to_vec(),
            native_token(b"secret", b"another nonce 123456")
        );
        assert!(native_recover_stage1(&native_token(b"wrong", nonce), nonce, &stage2).is_none());
        assert!(native_recover_stage1(b"short", nonce, &stage2).is_none());
        assert!(native_token(b"", nonce).is_empty());
    }

    #[test]
    fn handshake_response_round_trips() {
        for caps in [
            cap::PROTOCOL_41
                | cap::SECURE_CONNECTION
                | cap::PLUGIN_AUTH
                | cap::CONNECT_WITH_DB
                | cap::CONNECT_ATTRS,
            cap::PROTOCOL_41 | cap::PLUGIN_AUTH_LENENC_DATA | cap::PLUGIN_AUTH,
            cap::PROTOCOL_41,
        ] {
            let r = HandshakeResponse {
                capabilities: caps,
                max_packet: 1 << 24,
                charset: 45,
                mariadb_capabilities: 0,
                user: b"wordpress".to_vec(),
                auth: if caps & cap::SECURE_CONNECTION != 0
                    || caps & cap::PLUGIN_AUTH_LENENC_DATA != 0
                {
                    vec![7; 20]
                } else {
                    b"x".to_vec()
                },
                database: (caps & cap::CONNECT_WITH_DB != 0).then(|| b"wp".to_vec()),
                auth_plugin: (caps & cap::PLUGIN_AUTH != 0).then(|| NATIVE_PASSWORD.into()),
                attrs: (caps & cap::CONNECT_ATTRS != 0).then(|| vec![3, b'a', b'b', b'c', 1, b'd']),
            };
            assert_eq!(HandshakeResponse::parse(&r.encode()).unwrap(), r);
        }
        assert!(HandshakeResponse::parse(&[0; 10]).is_err());
    }

    #[test]
    fn greeting_round_trips_and_rejects_garbage() {
        let g = Greeting {
            server_version: b"5.5.5-10.11.6-MariaDB".to_vec(),
            connection_id: 42,
            nonce: b"abcdefgh0123456789AB".to_vec(),
            capabilities: cap::PROTOCOL_41
                | cap::SECURE_CONNECTION
                | cap::PLUGIN_AUTH
                | cap::DEPRECATE_EOF,
            mariadb_capabilities: 0x1d,
            charset: 45,
            status: 2,
            auth_plugin: NATIVE_PASSWORD.into(),
        };
        assert_eq!(Greeting::parse(&g.encode()).unwrap(), g);
        assert!(Greeting::parse(&[9, 0]).is_err());
        assert!(Greeting::parse(&[0xff, 0x10, 0x04]).is_err());
        for cut in 0..g.encode().len() - 30 {
            assert!(Greeting::parse(&g.encode()[..cut]).is_err(), "{cut}");
        }
    }
}
