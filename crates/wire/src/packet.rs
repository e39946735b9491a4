//! Physical packets: a 3-byte little-endian length, a sequence id, then the payload. A logical
//! packet of 16 MB - 1 bytes or more is split into chunks of exactly `MAX_CHUNK` bytes followed
//! by a shorter one (possibly empty).
//!
//! A proxy forwards physical packets as they are and only needs to know where logical packets
//! start and end: [`Framer`] tells it, without ever holding more than one chunk.

/// Largest payload of one physical packet; a chunk of exactly this size continues.
pub const MAX_CHUNK: usize = 0xff_ffff;
/// Header length.
pub const HEADER: usize = 4;

/// One physical packet found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Sequence id.
    pub seq: u8,
    /// Payload length.
    pub len: usize,
    /// This chunk starts a logical packet (its first payload byte is the packet's type).
    pub first: bool,
    /// This chunk ends a logical packet.
    pub last: bool,
}

impl Chunk {
    /// Header + payload.
    pub fn size(&self) -> usize {
        HEADER + self.len
    }
}

/// Tracks logical-packet boundaries over a stream of physical packets in one direction.
#[derive(Debug, Default, Clone)]
pub struct Framer {
    continuing: bool,
}

impl Framer {
    /// A framer at a logical packet boundary.
    pub fn new() -> Self {
        Self::default()
    }
    /// True between the chunks of a split logical packet.
    pub fn in_packet(&self) -> bool {
        self.continuing
    }
    /// The chunk at the start of `buf`, once all of it is buffered; `None` means read more.
    pub fn next(&mut self, buf: &[u8]) -> Option<Chunk> {
        let (seq, len) = peek_header(buf)?;
        if buf.len() < HEADER + len {
            return None;
        }
        let first = !self.continuing;
        let last = len < MAX_CHUNK;
        self.continuing = !last;
        Some(Chunk {
            seq,
            len,
            first,
            last,
        })
    }
}

/// Sequence id and payload length of the packet starting `buf`, once its header is buffered.
pub fn peek_header(buf: &[u8]) -> Option<(u8, usize)> {
    if buf.len() < HEADER {
        return None;
    }
    let len = usize::from(buf[0]) | usize::from(buf[1]) << 8 | usize::from(buf[2]) << 16;
    Some((buf[3], len))
}

/// Appends `payload` as one logical packet (split as needed) starting at sequence id `seq`;
/// returns the next sequence id.
pub fn write_packet(out: &mut Vec<u8>, mut seq: u8, payload: &[u8]) -> u8 {
    let mut rest = payload;
    loop {
        let n = rest.len().min(MAX_CHUNK);
        out.extend_from_slice(&(n as u32).to_le_bytes()[..3]);
        out.push(seq);
        out.extend_from_slice(&rest[..n]);
        seq = seq.wrapping_add(1);
        rest = &rest[n..];
        if n < MAX_CHUNK {
            return seq;
        }
    }
}

/// A reassembled logical packet: payload, sequence id of its last chunk, bytes consumed.
pub type Logical = (Vec<u8>, u8, usize);

/// Reassembles whole logical packets from a buffer (for small, bounded exchanges such as the
/// handshake; the proxy path never reassembles). Returns the payload, the sequence id of its last
/// chunk and the bytes consumed, or `None` if more input is needed or the packet exceeds `limit`.
pub fn read_logical(buf: &[u8], limit: usize) -> Option<std::result::Result<Logical, usize>> {
    let mut f = Framer::new();
    let mut pos = 0;
    let mut payload = Vec::new();
    loop {
        let c = f.next(&buf[pos..])?;
        if payload.len() + c.len > limit {
            return Some(Err(payload.len() + c.len));
        }
        payload.extend_from_slice(&buf[pos + HEADER..pos + c.size()]);
        pos += c.size();
        if c.last {
            return Some(Ok((payload, c.seq, pos)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble_around_16mb() {
        for n in [
            0,
            1,
            MAX_CHUNK - 1,
            MAX_CHUNK,
            MAX_CHUNK + 1,
            2 * MAX_CHUNK,
            2 * MAX_CHUNK + 7,
        ] {
            let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            let mut out = Vec::new();
            let next = write_packet(&mut out, 3, &payload);
            let chunks = n / MAX_CHUNK + 1;
            assert_eq!(out.len(), n + HEADER * chunks, "{n}");
            assert_eq!(next, 3 + chunks as u8);
            let (got, last_seq, used) = read_logical(&out, usize::MAX).unwrap().unwrap();
            assert_eq!(got, payload);
            assert_eq!(last_seq, 3 + chunks as u8 - 1);
            assert_eq!(used, out.len());
            // The framer marks first/last correctly chunk by chunk.
            let mut f = Framer::new();
            let (mut pos, mut seen) = (0, 0);
            while pos < out.len() {
                let c = f.next(&out[pos..]).unwrap();
                assert_eq!(c.first, seen == 0);
                assert_eq!(c.last, seen == chunks - 1);
                pos += c.size();
                seen += 1;
            }
            assert!(!f.in_packet());
        }
    }

    #[test]
    fn partial_input_asks_for_more_and_limit_is_enforced() {
        let mut out = Vec::new();
        write_packet(&mut out, 0, b"hello");
        for cut in 0..out.len() {
            assert!(Framer::new().next(&out[..cut]).is_none());
            assert!(read_logical(&out[..cut], 100).is_none());
        }
        assert_eq!(read_logical(&out, 4), Some(Err(5)));
    }
}
