//! BDAT (CHUNKING, RFC 3030): message data in counted chunks, taken as sent with no dot
//! handling and no line-end changes.

use super::reply::{self, Reply};
use super::session::{Action, Session, State};

/// A BDAT chunk being read.
#[derive(Debug)]
pub(super) struct Chunk {
    size: usize,
    /// Octets still to come.
    left: usize,
    last: bool,
    /// The command was refused; its octets are read and dropped, then this is the answer
    /// (RFC 3030 §2: the chunk follows the command whatever the server thinks of it).
    refusal: Option<Reply>,
}

impl Session {
    /// BDAT size [LAST].
    pub(super) fn on_bdat(&mut self, size: usize, last: bool, out: &mut Vec<Action>) {
        let refusal = self.bdat_refusal();
        if refusal.is_none()
            && let Some(transaction) = self.transaction.as_mut()
        {
            transaction.chunking = true;
        }
        let chunk = Chunk {
            size,
            left: size,
            last,
            refusal,
        };
        if size == 0 {
            self.finish_chunk(chunk, out);
        } else {
            self.state = State::Bdat(chunk);
        }
    }

    fn bdat_refusal(&self) -> Option<Reply> {
        if self.helo.is_none() {
            return Some(reply::HELO_FIRST);
        }
        let Some(transaction) = &self.transaction else {
            return Some(reply::MAIL_FIRST);
        };
        if transaction.recipients.is_empty() {
            return Some(self.no_recipients());
        }
        None
    }

    /// Reads chunk octets from `input`; returns how many it took.
    pub(super) fn take_chunk(&mut self, input: &[u8], out: &mut Vec<Action>) -> usize {
        let State::Bdat(chunk) = &mut self.state else {
            return 0;
        };
        let taken = chunk.left.min(input.len());
        chunk.left -= taken;
        let done = chunk.left == 0;
        if chunk.refusal.is_none()
            && let Some(transaction) = self.transaction.as_mut()
        {
            transaction.message.push(&input[..taken]);
        }
        if done && let State::Bdat(chunk) = std::mem::replace(&mut self.state, State::Command) {
            self.finish_chunk(chunk, out);
        }
        taken
    }

    fn finish_chunk(&mut self, chunk: Chunk, out: &mut Vec<Action>) {
        self.state = State::Command;
        if let Some(refusal) = chunk.refusal {
            self.answer(out, refusal);
            return;
        }
        if chunk.last {
            self.end_of_message(out);
            return;
        }
        let Some(transaction) = &self.transaction else {
            return;
        };
        // RFC 3030 §2: any chunk may be answered 552; the rest is still read and dropped.
        if transaction.message.overflowed() {
            self.send(out, reply::TOO_BIG);
            return;
        }
        let ok = Reply::with_text(250, "2.0.0", format!("{} octets received", chunk.size));
        self.send(out, ok);
    }
}
