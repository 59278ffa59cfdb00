//! DATA: the dot-terminated message reader, written here because smtp-proto's
//! `DataReceiver` ends a message at `CRLF . CR CR LF` (it keeps looking for LF after any run
//! of CRs following the dot), which a sending MTA does not treat as the end: a smuggling gap.
//!
//! Rules, on the raw byte stream:
//!
//! - The message ends only at `CRLF . CRLF`; the start of the data counts as following a
//!   CRLF (RFC 5321 §4.1.1.4), so `.CRLF` right after the 354 reply is an empty message.
//!   The CRLF before the dot belongs to the message. No other combination of CR, LF and dot
//!   (`LF . LF`, `LF . CRLF`, `CRLF . LF`, `CR . CRLF`, `CRLF . CR x`, …) ends or splits it.
//! - RFC 5321 §4.5.2: a dot that opens a CRLF-delimited line is removed. A dot after a bare
//!   LF or a bare CR is ordinary text and kept.
//! - A bare LF is stored as CRLF. Postfix 3.9 normalises the same way by default: a
//!   journaling sink must not lose mail because a sender's line ends are sloppy, and the
//!   normalised LF never becomes a line start, so it cannot open a terminator. A bare CR is
//!   kept as it came.

use super::reply::{self, Reply};
use super::session::{Protocol, Session, State};

/// The message bytes of a transaction, capped at the configured size.
///
/// Invariant: `bytes` is empty once `received` went over `limit`; the rest of the message
/// is then counted and dropped, so that the client can be told 552 after its last byte.
pub(crate) struct MessageBuffer {
    bytes: Vec<u8>,
    limit: usize,
    received: usize,
}

impl std::fmt::Debug for MessageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageBuffer")
            .field("received", &self.received)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl MessageBuffer {
    pub(crate) fn new(limit: usize) -> MessageBuffer {
        MessageBuffer {
            bytes: Vec::new(),
            limit,
            received: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.received = self.received.saturating_add(bytes.len());
        if self.received > self.limit {
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(bytes);
        }
    }

    pub(crate) fn overflowed(&self) -> bool {
        self.received > self.limit
    }

    /// Octets of message received so far, including any dropped for being over the limit.
    pub(crate) fn received(&self) -> usize {
        self.received
    }

    pub(crate) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.bytes)
    }
}

/// Where the reader stands in the raw stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Right after a CRLF (or at the start of the data).
    LineStart,
    /// After CRLF and a dot; the dot is held back.
    Dot,
    /// After CRLF, a dot and a CR; both are held back.
    DotCr,
    /// After a CR inside a line; the CR was written.
    Cr,
    /// Inside a line.
    Text,
}

/// Reads DATA bytes up to the terminator; see the module docs for the rules.
#[derive(Debug)]
pub(crate) struct DotReader {
    at: At,
}

/// How far one call to [`DotReader::feed`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Bytes of the input taken; what follows the terminator is left alone.
    pub(crate) consumed: usize,
    pub(crate) complete: bool,
}

impl DotReader {
    pub(crate) fn new() -> DotReader {
        DotReader { at: At::LineStart }
    }

    /// Appends the message text in `input` to `out`, stopping after the terminator.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut MessageBuffer) -> Progress {
        let mut i = 0;
        while i < input.len() {
            if self.at == At::Text {
                let rest = &input[i..];
                let run = rest.iter().position(|&b| b == b'\r' || b == b'\n');
                let run = run.unwrap_or(rest.len());
                out.push(&rest[..run]);
                i += run;
                if i == input.len() {
                    break;
                }
            }
            let byte = input[i];
            i += 1;
            if self.step(byte, out) {
                return Progress {
                    consumed: i,
                    complete: true,
                };
            }
        }
        Progress {
            consumed: i,
            complete: false,
        }
    }

    /// Takes one byte; true at the end of the message.
    fn step(&mut self, byte: u8, out: &mut MessageBuffer) -> bool {
        self.at = match (self.at, byte) {
            (At::LineStart, b'.') => At::Dot,
            (At::Dot, b'\r') => At::DotCr,
            (At::DotCr, b'\n') => return true,
            // RFC 5321 §4.5.2: the line is more than a lone dot, so its first dot goes.
            (At::Dot, _) => text(byte, out),
            (At::DotCr, _) => {
                out.push(b"\r");
                after_cr(byte, out)
            }
            (At::Cr, _) => after_cr(byte, out),
            (At::LineStart | At::Text, _) => text(byte, out),
        };
        false
    }
}

fn text(byte: u8, out: &mut MessageBuffer) -> At {
    match byte {
        b'\r' => {
            out.push(b"\r");
            At::Cr
        }
        // A bare LF: stored as CRLF, but never a line start (see the module docs).
        b'\n' => {
            out.push(b"\r\n");
            At::Text
        }
        _ => {
            out.push(&[byte]);
            At::Text
        }
    }
}

fn after_cr(byte: u8, out: &mut MessageBuffer) -> At {
    if byte == b'\n' {
        out.push(b"\n");
        return At::LineStart;
    }
    text(byte, out)
}

impl Session {
    /// DATA (RFC 5321 §4.1.1.4).
    pub(super) fn on_data(&mut self) -> Result<Reply, Reply> {
        if self.helo.is_none() {
            return Err(reply::HELO_FIRST);
        }
        let Some(transaction) = &self.transaction else {
            return Err(reply::MAIL_FIRST);
        };
        // RFC 3030 §3: a transaction uses DATA or BDAT, never both.
        if transaction.chunking {
            return Err(reply::DATA_AFTER_BDAT);
        }
        if transaction.recipients.is_empty() {
            return Err(self.no_recipients());
        }
        self.state = State::Data(DotReader::new());
        Ok(Reply::intermediate(354, reply::DATA_GO_AHEAD))
    }

    /// DATA or BDAT without an accepted recipient. RFC 5321 §3.3 allows 503 or 554 and
    /// RFC 2920 §3.1 expects 554 ("no valid recipients"); RFC 2033 §4.2 demands 503 of LMTP.
    pub(super) fn no_recipients(&self) -> Reply {
        match self.protocol {
            Protocol::Smtp => reply::NO_RECIPIENTS,
            Protocol::Lmtp => reply::NO_RECIPIENTS_LMTP,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `chunks` and returns the message and how many bytes were left after it, or
    /// None if the message did not end.
    fn read(chunks: &[&[u8]]) -> Option<(Vec<u8>, usize)> {
        let mut reader = DotReader::new();
        let mut out = MessageBuffer::new(usize::MAX);
        for (i, chunk) in chunks.iter().enumerate() {
            let p = reader.feed(chunk, &mut out);
            if p.complete {
                let later: usize = chunks[i + 1..].iter().map(|c| c.len()).sum();
                return Some((out.take(), chunk.len() - p.consumed + later));
            }
            assert_eq!(p.consumed, chunk.len());
        }
        None
    }

    /// The rules written a second, different way: find the terminator in the raw stream,
    /// then unstuff and normalise the text before it.
    fn reference(raw: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut stream = b"\r\n".to_vec();
        stream.extend_from_slice(raw);
        let end = stream.windows(5).position(|w| w == b"\r\n.\r\n")?;
        let left = stream.len() - (end + 5);
        let text = &stream[..end + 2];
        let mut unstuffed = Vec::new();
        let mut i = 0;
        while i < text.len() {
            unstuffed.push(text[i]);
            if text[i..].starts_with(b"\r\n.") {
                unstuffed.push(b'\n');
                i += 3;
            } else {
                i += 1;
            }
        }
        let mut out = Vec::new();
        for (i, &b) in unstuffed.iter().enumerate() {
            let after_cr = i > 0 && unstuffed[i - 1] == b'\r';
            if b == b'\n' && !after_cr {
                out.push(b'\r');
            }
            out.push(b);
        }
        Some((out[2..].to_vec(), left))
    }

    #[test]
    fn plain_message_and_dot_stuffing() {
        let (msg, left) = read(&[b"Subject: x\r\n\r\n..hidden\r\n.a\r\n.\r\nQUIT\r\n"]).unwrap();
        assert_eq!(msg, b"Subject: x\r\n\r\n.hidden\r\na\r\n");
        assert_eq!(left, b"QUIT\r\n".len());
    }

    #[test]
    fn a_dot_at_the_very_start_is_an_empty_message() {
        assert_eq!(read(&[b".\r\n"]), Some((Vec::new(), 0)));
    }

    #[test]
    fn smuggling_variants_neither_end_nor_split_the_message() {
        for trick in [
            &b"\n.\n"[..],
            b"\n.\r\n",
            b"\r\n.\n",
            b"\r.\r\n",
            b"\r\n.\r",
            b"\r\n.\r\r\n",
            b"\r\n.\r\r\r\n",
            b"\r.\n",
            b"\n.\r",
            b"\r\n \r\n",
            b"\r\n\x00.\r\n",
        ] {
            let mut raw = b"a".to_vec();
            raw.extend_from_slice(trick);
            raw.extend_from_slice(b"MAIL FROM:<evil@x>\r\n");
            assert_eq!(read(&[&raw]), None, "{trick:?} ended the message");
            raw.extend_from_slice(b".\r\n");
            let (msg, left) = read(&[&raw]).unwrap();
            assert_eq!(left, 0, "{trick:?}");
            assert!(msg.ends_with(b"MAIL FROM:<evil@x>\r\n"), "{trick:?}");
        }
    }

    #[test]
    fn bare_line_feeds_become_crlf_and_keep_their_dots() {
        let (msg, _) = read(&[b"a\nb\n.c\r\n.\r\n"]).unwrap();
        assert_eq!(msg, b"a\r\nb\r\n.c\r\n");
        let (msg, _) = read(&[b"\n.\r\n.\r\n"]).unwrap();
        assert_eq!(msg, b"\r\n.\r\n");
    }

    #[test]
    fn bare_carriage_returns_are_kept() {
        let (msg, _) = read(&[b"a\rb\r.\r\r\n.\r\n"]).unwrap();
        assert_eq!(msg, b"a\rb\r.\r\r\n");
    }

    #[test]
    fn exhaustive_short_streams_match_the_reference() {
        const ALPHABET: [u8; 4] = [b'\r', b'\n', b'.', b'a'];
        for len in 0..=8u32 {
            for n in 0..4usize.pow(len) {
                let mut raw = Vec::new();
                let mut k = n;
                for _ in 0..len {
                    raw.push(ALPHABET[k % 4]);
                    k /= 4;
                }
                for prefix in [&b""[..], b"x"] {
                    let mut stream = prefix.to_vec();
                    stream.extend_from_slice(&raw);
                    let whole = read(&[&stream]);
                    assert_eq!(whole, reference(&stream), "{stream:?}");
                    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
                    assert_eq!(read(&bytes), whole, "{stream:?} byte by byte");
                }
            }
        }
    }

    #[test]
    fn over_the_limit_is_counted_and_dropped() {
        let mut reader = DotReader::new();
        let mut out = MessageBuffer::new(4);
        let p = reader.feed(b"12345678\r\n.\r\n", &mut out);
        assert!(p.complete);
        assert!(out.overflowed());
        assert_eq!(out.received(), 10);
        assert!(out.take().is_empty());
    }

    proptest! {
        #[test]
        fn any_split_reads_the_same(raw in proptest::collection::vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..200),
            cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(raw.len())).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&raw[start..cut]);
                start = cut;
            }
            chunks.push(&raw[start..]);
            let whole = read(&[&raw]);
            prop_assert_eq!(&whole, &reference(&raw));
            prop_assert_eq!(read(&chunks), whole);
        }
    }
}
