//! STARTTLS (RFC 3207): the switch to TLS in the middle of a plain connection.

use super::reply;
use super::session::{Action, Session, State, TlsState};

impl Session {
    pub(super) fn on_starttls(&mut self, out: &mut Vec<Action>) {
        match self.peer.tls {
            TlsState::Active => return self.answer(out, reply::TLS_ACTIVE),
            TlsState::Unavailable => return self.answer(out, reply::TLS_UNAVAILABLE),
            TlsState::Available => {}
        }
        self.send(out, reply::TLS_READY);
        // What the client sent after this line is dropped when the session's loop sees
        // this state (RFC 3207 §6).
        self.state = State::AwaitTls;
        out.push(Action::StartTls);
    }
}
