//! MySQL's compressed protocol on the client side of a session: a stream wrapper that turns
//! the client's compressed frames into the plain packet bytes the session reads, and what the
//! session writes into compressed frames. Backends are always spoken to uncompressed (on
//! loopback, compressing costs only CPU).
//!
//! A frame is `len: u24, seq: u8, uncompressed_len: u24` and the payload: zlib data, or the
//! bytes as they are when `uncompressed_len` is 0 (short payloads are never compressed). The
//! frames carry a byte stream: a frame may hold several packets or part of one. Frame numbers
//! run like packet numbers: a client's command starts at 0, and the answer continues from the
//! last frame the client sent.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Stream;

/// Frame header length.
const HEADER: usize = 7;
/// Payloads shorter than this are sent as they are (MariaDB's `MIN_COMPRESS_LENGTH`).
const MIN_COMPRESS: usize = 50;
/// Largest frame payload.
const MAX_FRAME: usize = 0xff_ffff;

/// A client stream speaking the compressed protocol.
pub struct Compressed {
    inner: Box<dyn Stream>,
    /// Raw bytes read from the client, not yet a whole frame.
    raw: Vec<u8>,
    /// Uncompressed bytes for the session, from `plain_at` on.
    plain: Vec<u8>,
    plain_at: usize,
    /// Frames waiting to be written, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    /// The next frame number.
    seq: u8,
}

fn u24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
}

fn put_u24(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
}

/// One frame holding `data` (at most [`MAX_FRAME`] bytes) with number `seq`.
pub fn frame(data: &[u8], seq: u8) -> Vec<u8> {
    let compressed = (data.len() >= MIN_COMPRESS)
        .then(|| {
            let mut z = ZlibEncoder::new(Vec::new(), Compression::fast());
            z.write_all(data).ok()?;
            z.finish().ok()
        })
        .flatten()
        .filter(|z| z.len() < data.len());
    let mut out = Vec::with_capacity(HEADER + data.len());
    match compressed {
        Some(z) => {
            put_u24(&mut out, z.len());
            out.push(seq);
            put_u24(&mut out, data.len());
            out.extend_from_slice(&z);
        }
        None => {
            put_u24(&mut out, data.len());
            out.push(seq);
            put_u24(&mut out, 0);
            out.extend_from_slice(data);
        }
    }
    out
}

/// Takes the first whole frame off `raw`: its number and its uncompressed bytes. `None` while
/// the frame is incomplete.
pub fn unframe(raw: &mut Vec<u8>) -> io::Result<Option<(u8, Vec<u8>)>> {
    if raw.len() < HEADER {
        return Ok(None);
    }
    let (len, seq, ulen) = (u24(raw), raw[3], u24(&raw[4..]));
    if raw.len() < HEADER + len {
        return Ok(None);
    }
    let payload = &raw[HEADER..HEADER + len];
    let data = if ulen == 0 {
        payload.to_vec()
    } else {
        let mut data = Vec::with_capacity(ulen);
        ZlibDecoder::new(payload)
            .take(ulen as u64 + 1)
            .read_to_end(&mut data)?;
        if data.len() != ulen {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "compressed frame inflates to {} bytes, not {ulen}",
                    data.len()
                ),
            ));
        }
        data
    };
    raw.drain(..HEADER + len);
    Ok(Some((seq, data)))
}

impl Compressed {
    /// Wraps a client stream whose login just completed with `CLIENT_COMPRESS`; `raw` are
    /// bytes already read from it (frames the client sent right behind its login).
    pub fn new(inner: Box<dyn Stream>, raw: Vec<u8>) -> Self {
        Self {
            inner,
            raw,
            plain: Vec::new(),
            plain_at: 0,
            out: Vec::new(),
            out_at: 0,
            seq: 0,
        }
    }

    /// Writes pending frames; `Ready(Ok)` once none are left.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.out[self.out_at..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.out_at += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.out.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Compressed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // The end of an answer may still be on its way: a session waiting for the client's
        // next command keeps it moving.
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            if this.plain_at < this.plain.len() {
                let n = buf.remaining().min(this.plain.len() - this.plain_at);
                buf.put_slice(&this.plain[this.plain_at..this.plain_at + n]);
                this.plain_at += n;
                return Poll::Ready(Ok(()));
            }
            if let Some((seq, data)) = unframe(&mut this.raw)? {
                this.seq = seq.wrapping_add(1);
                this.plain = data;
                this.plain_at = 0;
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    return if this.raw.is_empty() {
                        Poll::Ready(Ok(())) // end of stream
                    } else {
                        Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()))
                    };
                }
                Poll::Ready(Ok(())) => this.raw.extend_from_slice(rb.filled()),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AsyncWrite for Compressed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let n = data.len().min(MAX_FRAME);
        this.out = frame(&data[..n], this.seq);
        this.seq = this.seq.wrapping_add(1);
        // Accepted whatever the socket takes now: the rest goes with the next write, flush or
        // read.
        if let Poll::Ready(Err(e)) = this.drain(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.drain(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_compressed_or_not() {
        let short = b"\x01\x00\x00\x00\x0e".to_vec(); // COM_PING: too short to compress
        let long: Vec<u8> = b"SELECT 'hapress' ".repeat(100);
        let mut raw = frame(&short, 0);
        assert_eq!(&raw[..7], &[5, 0, 0, 0, 0, 0, 0]);
        let f = frame(&long, 1);
        assert_eq!(u24(&f[4..]), long.len(), "long data is compressed");
        assert!(f.len() < long.len() / 4);
        raw.extend(&f);
        // Incomplete: nothing yet.
        let mut part = raw[..raw.len() - 1].to_vec();
        assert_eq!(unframe(&mut part).unwrap().map(|f| f.0), Some(0));
        assert!(unframe(&mut part).unwrap().is_none());
        assert_eq!(unframe(&mut raw).unwrap(), Some((0, short)));
        assert_eq!(unframe(&mut raw).unwrap(), Some((1, long)));
        assert!(raw.is_empty());
    }

    #[test]
    fn a_frame_that_lies_about_its_size_is_an_error() {
        let mut f = frame(&b"x".repeat(200), 0);
        f[4] = 100; // claims 100 bytes uncompressed
        assert!(unframe(&mut f).is_err());
    }
}
