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

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hapress_wire::packet::peek_header;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::Stream;

/// Frame header length.
const HEADER: usize = 7;
/// Payloads shorter than this are sent as they are (MariaDB's `MIN_COMPRESS_LENGTH`).
const MIN_COMPRESS: usize = 50;
/// Largest frame payload.
const MAX_FRAME: usize = 0xff_ffff;
/// Bytes read from the client at a time.
const READ_CHUNK: usize = 16 * 1024;

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
    /// The zlib states, reset for every frame (allocated once per session).
    codec: Codec,
    /// Where reads from the client land before they join `raw` (zeroed once).
    scratch: Vec<u8>,
}

/// zlib compression and decompression states, reused frame after frame.
pub struct Codec {
    z: Compress,
    d: Decompress,
}

impl Default for Codec {
    fn default() -> Self {
        Self {
            z: Compress::new(Compression::fast(), true),
            d: Decompress::new(true),
        }
    }
}

/// The 3-byte little-endian number at the start of `b`.
fn u24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
}

fn put_u24(out: &mut [u8], n: usize) {
    out.copy_from_slice(&(n as u32).to_le_bytes()[..3]);
}

impl Codec {
    /// Replaces `out` with one frame holding `data` (at most [`MAX_FRAME`] bytes) numbered
    /// `seq`: zlib data when it is shorter, else the bytes as they are.
    pub fn frame(&mut self, data: &[u8], seq: u8, out: &mut Vec<u8>) {
        out.clear();
        // Room for the header and for compressed data shorter than `data`: deflate that
        // does not finish within it is not worth sending.
        out.reserve(HEADER + data.len());
        out.extend_from_slice(&[0; HEADER]);
        let mut compressed = false;
        if data.len() >= MIN_COMPRESS {
            self.z.reset();
            let done = self.z.compress_vec(data, out, FlushCompress::Finish);
            compressed = matches!(done, Ok(Status::StreamEnd)) && out.len() < HEADER + data.len();
        }
        if compressed {
            let len = out.len() - HEADER;
            put_u24(&mut out[..3], len);
            put_u24(&mut out[4..7], data.len());
        } else {
            out.truncate(HEADER);
            out.extend_from_slice(data);
            put_u24(&mut out[..3], data.len());
            put_u24(&mut out[4..7], 0);
        }
        out[3] = seq;
    }

    /// Takes the first whole frame off `raw`, its uncompressed bytes into `data` (replaced);
    /// its number, or `None` while the frame is incomplete.
    pub fn unframe(&mut self, raw: &mut Vec<u8>, data: &mut Vec<u8>) -> io::Result<Option<u8>> {
        if raw.len() < HEADER {
            return Ok(None);
        }
        // A frame header starts like a packet header: length, then the number.
        let Some((seq, len)) = peek_header(raw) else {
            return Ok(None);
        };
        let ulen = u24(&raw[4..]);
        if raw.len() < HEADER + len {
            return Ok(None);
        }
        let payload = &raw[HEADER..HEADER + len];
        data.clear();
        if ulen == 0 {
            data.extend_from_slice(payload);
        } else {
            // Exactly the announced size: a frame inflating to more or less is an error.
            data.reserve_exact(ulen);
            self.d.reset(true);
            let done = self
                .d
                .decompress_vec(payload, data, FlushDecompress::Finish)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if done != Status::StreamEnd || data.len() != ulen {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("compressed frame does not inflate to the {ulen} bytes it announces"),
                ));
            }
        }
        raw.drain(..HEADER + len);
        Ok(Some(seq))
    }
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
            codec: Codec::default(),
            scratch: vec![0; READ_CHUNK],
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
            if let Some(seq) = this.codec.unframe(&mut this.raw, &mut this.plain)? {
                this.seq = seq.wrapping_add(1);
                this.plain_at = 0;
                continue;
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
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
        this.codec.frame(&data[..n], this.seq, &mut this.out);
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

    fn frame(c: &mut Codec, data: &[u8], seq: u8) -> Vec<u8> {
        let mut out = vec![9; 3]; // replaced, not appended to
        c.frame(data, seq, &mut out);
        out
    }

    fn unframe(c: &mut Codec, raw: &mut Vec<u8>) -> io::Result<Option<(u8, Vec<u8>)>> {
        let mut data = b"stale".to_vec();
        Ok(c.unframe(raw, &mut data)?.map(|seq| (seq, data)))
    }

    #[test]
    fn frames_round_trip_compressed_or_not() {
        let mut c = Codec::default();
        let short = b"\x01\x00\x00\x00\x0e".to_vec(); // COM_PING: too short to compress
        let long: Vec<u8> = b"SELECT 'hapress' ".repeat(100);
        let random: Vec<u8> = (0..200u32).map(|i| (i * 7919 % 251) as u8).collect();
        let mut raw = frame(&mut c, &short, 0);
        assert_eq!(&raw[..7], &[5, 0, 0, 0, 0, 0, 0]);
        // The same codec, frame after frame (its state is reset for each).
        for seq in 1..3 {
            let f = frame(&mut c, &long, seq);
            assert_eq!(u24(&f[4..]), long.len(), "long data is compressed");
            assert!(f.len() < long.len() / 4);
            raw.extend(&f);
        }
        let f = frame(&mut c, &random, 3);
        assert_eq!(u24(&f[4..]), 0, "what does not shrink is sent as it is");
        raw.extend(&f);
        // Incomplete: nothing yet.
        let mut part = raw[..raw.len() - 1].to_vec();
        assert_eq!(unframe(&mut c, &mut part).unwrap().map(|f| f.0), Some(0));
        for _ in 1..3 {
            assert!(unframe(&mut c, &mut part).unwrap().is_some());
        }
        assert!(unframe(&mut c, &mut part).unwrap().is_none());
        assert_eq!(unframe(&mut c, &mut raw).unwrap(), Some((0, short)));
        assert_eq!(unframe(&mut c, &mut raw).unwrap(), Some((1, long.clone())));
        assert_eq!(unframe(&mut c, &mut raw).unwrap(), Some((2, long)));
        assert_eq!(unframe(&mut c, &mut raw).unwrap(), Some((3, random)));
        assert!(raw.is_empty());
    }

    #[test]
    fn a_frame_that_lies_about_its_size_is_an_error() {
        let mut c = Codec::default();
        for claimed in [100u8, 0xff] {
            let mut f = frame(&mut c, &b"x".repeat(200), 0);
            f[4] = claimed; // claims 100 (too few) or 255 (too many) bytes uncompressed
            assert!(unframe(&mut c, &mut f).is_err(), "{claimed}");
        }
    }
}
