//! EHLO, HELO and LHLO: the client's greeting and the extensions threadsd offers.

use super::reply::{self, Reply};
use super::session::{Protocol, Session, TlsState};

/// Which greeting command the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hello {
    Ehlo,
    Helo,
    Lhlo,
}

impl Session {
    /// Answers a greeting with the bytes to send.
    pub(super) fn on_hello(&mut self, hello: Hello, host: &str) -> Result<Vec<u8>, Reply> {
        // RFC 2033 §4.1: an LMTP client greets with LHLO; HELO and EHLO are not LMTP.
        match (self.protocol, hello) {
            (Protocol::Lmtp, Hello::Ehlo | Hello::Helo) => return Err(reply::USE_LHLO),
            (Protocol::Smtp, Hello::Lhlo) => return Err(reply::USE_EHLO),
            _ => {}
        }

        // RFC 5321 §4.1.4: a greeting resets any transaction, as RSET does.
        self.transaction = None;
        self.helo = Some(host.to_owned());
        // The name is echoed only as far as it is printable ASCII.
        let shown: String = host
            .chars()
            .filter(char::is_ascii_graphic)
            .take(64)
            .collect();
        let greeting = format!("{} greets {shown}", self.config.hostname);
        if hello == Hello::Helo {
            return Ok(reply::multiline(250, &[greeting]));
        }
        let mut lines = vec![greeting];
        lines.extend(self.extensions());
        Ok(reply::multiline(250, &lines))
    }

    fn extensions(&self) -> Vec<String> {
        let mut lines: Vec<String> = vec![
            "PIPELINING".into(),
            // RFC 1870 §4: the fixed maximum message size.
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
        ];
        if self.peer.tls == TlsState::Available {
            lines.push("STARTTLS".into());
        }
        if self.auth_offered() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.push("HELP".into());
        lines
    }
}
