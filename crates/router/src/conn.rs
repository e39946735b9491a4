//! One owner per socket: a buffered MySQL-protocol connection over TCP or a unix socket, with
//! chunk-level reads (for forwarding) and logical-packet reads (for small exchanges), plus the
//! backend login the router performs itself (monitor connections, replica connections).

use std::io;
use std::time::Duration;

use hapress_wire::consts::cap;
use hapress_wire::handshake::{self, Greeting, HandshakeResponse, NATIVE_PASSWORD};
use hapress_wire::packet::{self, Chunk, Framer, HEADER};
use hapress_wire::response::parse_err;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

/// A stream the router speaks MySQL over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Logical packets the router reassembles itself (handshakes, probe results) stay below this.
pub const SMALL_PACKET_LIMIT: usize = 1 << 20;

/// A listening socket: `host:port`, or an absolute path for a unix socket.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix socket.
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr`; a unix socket replaces a stale file and gets `mode` if given.
    pub async fn bind(addr: &str, mode: Option<u32>) -> io::Result<Self> {
        if !addr.starts_with('/') {
            return Ok(Self::Tcp(TcpListener::bind(addr).await?));
        }
        let _ = std::fs::remove_file(addr);
        let l = UnixListener::bind(addr)?;
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(addr, std::fs::Permissions::from_mode(mode))?;
        }
        Ok(Self::Unix(l))
    }

    /// The next connection.
    pub async fn accept(&self) -> io::Result<Box<dyn Stream>> {
        Ok(match self {
            Self::Tcp(l) => {
                let (s, _) = l.accept().await?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Self::Unix(l) => Box::new(l.accept().await?.0),
        })
    }
}

/// A buffered connection.
pub struct Conn {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    start: usize,
    framer: Framer,
    /// Commands held back ([`Conn::defer`]), encoded: sent in front of the next write.
    deferred: Vec<u8>,
    /// How many commands `deferred` holds.
    deferred_count: usize,
    /// Answers of sent deferred commands not read yet: the next read skips them first.
    awaiting: usize,
    /// Writes so far (see [`Conn::writes`]).
    writes: u64,
}

impl Conn {
    /// Wraps a stream.
    pub fn new(stream: Box<dyn Stream>) -> Self {
        Self {
            stream,
            // Allocated by the first read: a client still waiting for its greeting costs none.
            buf: Vec::new(),
            start: 0,
            framer: Framer::new(),
            deferred: Vec::new(),
            deferred_count: 0,
            awaiting: 0,
            writes: 0,
        }
    }

    /// Holds back a command answered by one OK (a session `SET` the router answered itself):
    /// it is sent in the same write as the next command, whose answer is read after its OK.
    /// An ERR in its place fails that read. A connection that is never written again never
    /// runs it ([`Conn::drop_deferred`]).
    pub fn defer(&mut self, payload: &[u8]) {
        packet::write_packet(&mut self.deferred, 0, payload);
        self.deferred_count += 1;
    }

    /// Forgets the commands held back and not sent.
    pub fn drop_deferred(&mut self) {
        self.deferred.clear();
        self.deferred_count = 0;
    }

    /// How many writes went out on this connection: a pooled connection that had none while
    /// leased is as it was when it was returned.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// One write of `b`, after the commands held back.
    async fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.writes += 1;
        if self.deferred_count == 0 {
            return self.stream.write_all(b).await;
        }
        let mut out = std::mem::take(&mut self.deferred);
        out.extend_from_slice(b);
        self.awaiting += std::mem::take(&mut self.deferred_count);
        self.stream.write_all(&out).await
    }

    /// Reads the answers of sent deferred commands: each must be an OK. (Called only while
    /// some are awaited: the common read pays one comparison.)
    async fn settle(&mut self) -> io::Result<()> {
        while self.awaiting > 0 {
            self.awaiting -= 1;
            let (_, p) = self.read_packet_now().await?;
            if p.first() != Some(&hapress_wire::consts::header::OK) {
                let why = parse_err(&p).map_or_else(|_| "not an OK".to_string(), |e| e.message);
                return Err(io::Error::other(format!(
                    "a session setting the router answered failed on the server: {why}"
                )));
            }
        }
        Ok(())
    }

    /// Connects to `addr` (`host:port`, or a path for a unix socket) within `timeout`.
    pub async fn connect(addr: &str, timeout: Duration) -> io::Result<Self> {
        let fut = async {
            if addr.starts_with('/') {
                Ok::<Box<dyn Stream>, io::Error>(Box::new(UnixStream::connect(addr).await?))
            } else {
                let s = TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                Ok::<Box<dyn Stream>, io::Error>(Box::new(s))
            }
        };
        let stream = tokio::time::timeout(timeout, fut).await.map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("connecting to {addr} timed out"),
            )
        })??;
        Ok(Self::new(stream))
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() - self.buf.len() < 8192 {
            self.buf.reserve(16 * 1024);
        }
        // Reads into the spare capacity: no zeroing of the buffer on every read.
        let n = self.stream.read_buf(&mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(())
    }

    /// Reads what the peer sends into the buffer (kept for later reads) while less than
    /// `limit` bytes are buffered: false once the peer hung up or errored; past the limit it
    /// waits forever (the caller stops watching by dropping the future). Cancel-safe.
    pub async fn fill_bounded(&mut self, limit: usize) -> bool {
        if self.buffered().len() >= limit {
            std::future::pending::<()>().await;
        }
        self.fill().await.is_ok()
    }

    /// The next physical chunk: header and payload stay in the buffer until [`Conn::consume`].
    pub async fn next_chunk(&mut self) -> io::Result<Chunk> {
        if self.awaiting > 0 {
            self.settle().await?;
        }
        self.next_chunk_now().await
    }

    async fn next_chunk_now(&mut self) -> io::Result<Chunk> {
        loop {
            // The buffer grows with the bytes that actually arrive (never by what a header
            // claims), so a peer announcing 16 MB and sending nothing costs nothing.
            let mut f = self.framer.clone();
            if let Some(c) = f.next(self.buffered()) {
                self.framer = f;
                return Ok(c);
            }
            self.fill().await?;
        }
    }

    /// The bytes of the chunk returned by the last [`Conn::next_chunk`] (header included).
    pub fn chunk_bytes(&self, c: &Chunk) -> &[u8] {
        &self.buf[self.start..self.start + c.size()]
    }

    /// Drops the chunk returned by the last [`Conn::next_chunk`].
    pub fn consume(&mut self, c: &Chunk) {
        self.start += c.size();
    }

    /// Switches to MySQL's compressed protocol: from now on the stream's bytes are frames
    /// (the client's login just completed with `CLIENT_COMPRESS`).
    pub fn compress(&mut self) {
        let inner = std::mem::replace(&mut self.stream, Box::new(tokio::io::duplex(1).0));
        let read_ahead = self.buf.split_off(self.start);
        self.buf.clear();
        self.start = 0;
        self.stream = Box::new(crate::compress::Compressed::new(inner, read_ahead));
    }

    /// True when nothing is buffered (so a reply can be flushed before reading more).
    pub fn nothing_buffered(&self) -> bool {
        self.buffered().is_empty()
    }

    /// True when an idle connection was closed by its peer or got unsolicited bytes (a
    /// killed connection): checked without waiting.
    pub async fn gone(&mut self) -> bool {
        if !self.nothing_buffered() {
            return true;
        }
        // One poll of a read, no timer: pending (nothing to read) means alive. Tokio keeps the
        // socket's readiness, so this costs a syscall only the first time after the peer sent
        // something.
        let mut byte = [0u8; 1];
        let stream = &mut self.stream;
        std::future::poll_fn(|cx| {
            let mut rb = tokio::io::ReadBuf::new(&mut byte);
            // Ready: EOF, an error, or unsolicited bytes.
            std::task::Poll::Ready(
                std::pin::Pin::new(&mut *stream)
                    .poll_read(cx, &mut rb)
                    .is_ready(),
            )
        })
        .await
    }

    /// Reads one whole logical packet of at most `SMALL_PACKET_LIMIT` bytes.
    pub async fn read_packet(&mut self) -> io::Result<(u8, Vec<u8>)> {
        if self.awaiting > 0 {
            self.settle().await?;
        }
        self.read_packet_now().await
    }

    async fn read_packet_now(&mut self) -> io::Result<(u8, Vec<u8>)> {
        let mut payload = Vec::new();
        loop {
            while packet::peek_header(self.buffered()).is_none() {
                self.fill().await?;
            }
            if let Some((_, len)) = packet::peek_header(self.buffered()) {
                if payload.len() + len > SMALL_PACKET_LIMIT {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "packet too large",
                    ));
                }
            }
            let c = self.next_chunk_now().await?;
            if payload.len() + c.len > SMALL_PACKET_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "packet too large",
                ));
            }
            payload.extend_from_slice(&self.chunk_bytes(&c)[HEADER..]);
            self.consume(&c);
            if c.last {
                return Ok((c.seq, payload));
            }
        }
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, b: &[u8]) -> io::Result<()> {
        self.send(b).await
    }

    /// Writes one logical packet.
    pub async fn write_packet(&mut self, seq: u8, payload: &[u8]) -> io::Result<u8> {
        let mut out = Vec::with_capacity(payload.len() + HEADER);
        let next = packet::write_packet(&mut out, seq, payload);
        self.send(&out).await?;
        Ok(next)
    }

    /// Sends an ERR packet (the router's own errors to a client).
    pub async fn send_err(
        &mut self,
        seq: u8,
        code: u16,
        state: &str,
        message: &str,
    ) -> io::Result<()> {
        self.write_packet(
            seq,
            &hapress_wire::response::err_packet(code, state, message),
        )
        .await
        .map(|_| ())
    }

    /// Sends an ERR packet in place of the greeting (the router's own refusals).
    pub async fn send_greeting_err(&mut self, code: u16, message: &str) -> io::Result<()> {
        self.write_packet(
            0,
            &hapress_wire::response::greeting_err_packet(code, message),
        )
        .await
        .map(|_| ())
    }

    /// Flushes.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stream.flush().await
    }
}

/// How the router logs in to a backend on its own.
#[derive(Debug, Clone)]
pub enum Credential {
    /// A clear-text password (the router's monitor account).
    Password(Vec<u8>),
    /// `SHA1(password)` recovered from a client's login: enough to log in anywhere as that user.
    Stage1([u8; 20]),
    /// An empty password.
    Empty,
}

/// Why a login failed.
#[derive(Debug)]
pub enum LoginError {
    /// The socket failed.
    Io(io::Error),
    /// The server said no (code, message).
    Refused(u16, String),
    /// The server wants an auth method the router cannot answer for this user.
    Unsupported(String),
}

impl std::fmt::Display for LoginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "{e}"),
            Self::Refused(c, m) => write!(f, "refused ({c}): {m}"),
            Self::Unsupported(p) => write!(f, "unsupported auth plugin {p}"),
        }
    }
}

impl From<io::Error> for LoginError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

fn token(cred: &Credential, nonce: &[u8]) -> Vec<u8> {
    match cred {
        Credential::Password(p) => handshake::native_token(p, nonce),
        Credential::Stage1(s1) => handshake::native_token_from_stage1(s1, nonce).to_vec(),
        Credential::Empty => Vec::new(),
    }
}

/// Logs in on a fresh connection. `template` supplies the capabilities, collation and
/// database (a client's own handshake response when logging in on its behalf).
pub async fn login(
    conn: &mut Conn,
    user: &[u8],
    cred: &Credential,
    template: &HandshakeResponse,
) -> Result<Greeting, LoginError> {
    let (_, g) = conn.read_packet().await?;
    if g.first() == Some(&0xff) {
        let e = parse_err(&g).map_err(|e| LoginError::Refused(0, e.to_string()))?;
        return Err(LoginError::Refused(e.code, e.message));
    }
    let greeting = Greeting::parse(&g).map_err(|e| LoginError::Refused(0, e.to_string()))?;
    let mut r = template.clone();
    r.capabilities &= greeting.capabilities | cap::MYSQL;
    r.capabilities &= !(cap::SSL | cap::CONNECT_ATTRS | cap::COMPRESS);
    r.capabilities |= cap::PLUGIN_AUTH | cap::SECURE_CONNECTION | cap::PROTOCOL_41;
    r.user = user.to_vec();
    r.auth = token(cred, &greeting.nonce);
    r.auth_plugin = Some(NATIVE_PASSWORD.into());
    r.attrs = None;
    if r.database.is_some() {
        r.capabilities |= cap::CONNECT_WITH_DB;
    } else {
        r.capabilities &= !cap::CONNECT_WITH_DB;
    }
    conn.write_packet(1, &r.encode()).await?;
    loop {
        let (s, p) = conn.read_packet().await?;
        match p.first() {
            Some(0x00) => return Ok(greeting),
            Some(0xff) => {
                let e = parse_err(&p).map_err(|e| LoginError::Refused(0, e.to_string()))?;
                return Err(LoginError::Refused(e.code, e.message));
            }
            Some(0xfe) => {
                let sw = handshake::AuthSwitch::parse(&p)
                    .map_err(|e| LoginError::Refused(0, e.to_string()))?;
                if sw.plugin != NATIVE_PASSWORD {
                    return Err(LoginError::Unsupported(sw.plugin));
                }
                conn.write_packet(s.wrapping_add(1), &token(cred, &sw.data))
                    .await?;
            }
            _ => return Err(LoginError::Unsupported("unknown auth exchange".into())),
        }
    }
}

pub use hapress_wire::rows::Rows;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Runs one query and decodes its text result set ([`hapress_wire::rows::TextRows`]), on a
/// connection whose `DEPRECATE_EOF` setting is `deprecate_eof` (the router's own logins never
/// negotiate it). Errors from the server come back as `Err((code, message))`.
pub async fn query(
    conn: &mut Conn,
    sql: &str,
    deprecate_eof: bool,
) -> io::Result<Result<Rows, (u16, String)>> {
    let command = hapress_wire::command::query(sql.as_bytes());
    conn.write_packet(0, &command).await?;
    let mut rows = hapress_wire::rows::TextRows::new(&command, deprecate_eof).map_err(invalid)?;
    loop {
        let (_, p) = conn.read_packet().await?;
        if let Some(done) = rows.feed(&p).map_err(invalid)? {
            return Ok(done.map_err(|e| (e.code, e.message)));
        }
    }
}
