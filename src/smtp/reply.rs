//! SMTP replies: the code, the RFC 3463 enhanced status code and the text, and the one
//! catalogue of fixed replies the session sends.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One reply line sent to the client.
///
/// Invariant: `text` holds no CR or LF (see [`Reply::with_text`]), so a reply is always
/// exactly one line on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    code: u16,
    /// RFC 2034 §3: omitted only in the greeting and the answer to EHLO/HELO/LHLO.
    status: Option<&'static str>,
    text: Cow<'static, str>,
}

impl Reply {
    pub(crate) const fn fixed(code: u16, status: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: Cow::Borrowed(text),
        }
    }

    /// A reply whose text is built at run time; control characters become spaces so that
    /// nothing in the text can start a reply line of its own.
    pub(crate) fn with_text(code: u16, status: &'static str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            status: Some(status),
            text: Cow::Owned(clean(text.into())),
        }
    }

    /// A 3xx intermediate reply (354, 334): RFC 2034 §3 gives those no enhanced code.
    pub(crate) fn intermediate(code: u16, text: impl Into<Cow<'static, str>>) -> Reply {
        Reply {
            code,
            status: None,
            text: text.into(),
        }
    }

    /// A 4xx or 5xx reply.
    pub(crate) fn is_failure(&self) -> bool {
        self.code >= 400
    }

    /// Whether this failure counts towards `max_errors`. RFC 5321 §4.5.3.1.10: a client
    /// with more recipients than the limit is expected to take 452 and send the rest in
    /// another transaction; that is flow control, not a misbehaving client.
    pub(crate) fn counts_as_error(&self) -> bool {
        self.is_failure() && *self != TOO_MANY_RECIPIENTS
    }

    /// The same reply naming one recipient, as LMTP answers per recipient (RFC 2033 §4.2).
    pub(crate) fn for_recipient(&self, recipient: &str) -> Reply {
        let text = clean(format!("<{recipient}> {}", self.text));
        Reply {
            code: self.code,
            status: self.status,
            text: Cow::Owned(text),
        }
    }

    /// The reply as sent: `code SP [status SP] text CRLF`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut line = String::with_capacity(self.text.len() + 12);
        // Writing into a String cannot fail.
        let _ = match self.status {
            Some(status) => write!(line, "{} {status} {}\r\n", self.code, self.text),
            None => write!(line, "{} {}\r\n", self.code, self.text),
        };
        line.into_bytes()
    }
}

fn clean(text: String) -> String {
    if !text.contains(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A multi-line reply without enhanced codes, as RFC 5321 §4.2.1 writes it: every line but
/// the last has a hyphen after the code. Used for the EHLO answer.
pub(crate) fn multiline(code: u16, lines: &[String]) -> Vec<u8> {
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i + 1 == lines.len() { ' ' } else { '-' };
        let _ = write!(out, "{code}{sep}{line}\r\n");
    }
    out.into_bytes()
}

// RFC 5321 §4.2.2 gives the codes, RFC 3463 §3 the enhanced codes.
pub(crate) const OK: Reply = Reply::fixed(250, "2.0.0", "OK");
pub(crate) const SENDER_OK: Reply = Reply::fixed(250, "2.1.0", "sender OK");
pub(crate) const RECIPIENT_OK: Reply = Reply::fixed(250, "2.1.5", "recipient OK");
pub(crate) const RESET: Reply = Reply::fixed(250, "2.0.0", "reset");
pub(crate) const BYE: Reply = Reply::fixed(221, "2.0.0", "bye");
pub(crate) const HELP: Reply = Reply::fixed(
    214,
    "2.0.0",
    "threadsd stores mail; see RFC 5321 for the commands",
);
// RFC 5321 §3.5.3: 252 when the server will accept mail but cannot verify the address.
pub(crate) const CANNOT_VRFY: Reply = Reply::fixed(
    252,
    "2.5.0",
    "cannot verify the user, but will take the message",
);
pub(crate) const TLS_READY: Reply = Reply::fixed(220, "2.0.0", "ready to start TLS");
pub(crate) const AUTH_OK: Reply = Reply::fixed(235, "2.7.0", "authentication succeeded");

pub(crate) const UNKNOWN_COMMAND: Reply =
    Reply::fixed(500, "5.5.2", "syntax error, command unrecognized");
pub(crate) const LINE_TOO_LONG: Reply = Reply::fixed(500, "5.5.6", "line too long");
pub(crate) const BARE_CR: Reply = Reply::fixed(501, "5.5.2", "bare CR in command line");
pub(crate) const NOT_IMPLEMENTED: Reply = Reply::fixed(502, "5.5.1", "command not implemented");
pub(crate) const USE_EHLO: Reply = Reply::fixed(500, "5.5.1", "this is SMTP: use EHLO or HELO");
pub(crate) const USE_LHLO: Reply = Reply::fixed(500, "5.5.1", "this is LMTP: use LHLO");
pub(crate) const HELO_FIRST: Reply = Reply::fixed(503, "5.5.1", "send EHLO first");
pub(crate) const NESTED_MAIL: Reply = Reply::fixed(503, "5.5.1", "sender already given");
pub(crate) const MAIL_FIRST: Reply = Reply::fixed(503, "5.5.1", "send MAIL first");
pub(crate) const NO_RECIPIENTS: Reply = Reply::fixed(554, "5.5.1", "no valid recipients");
pub(crate) const NO_RECIPIENTS_LMTP: Reply = Reply::fixed(503, "5.5.1", "no valid recipients");
pub(crate) const DATA_AFTER_BDAT: Reply =
    Reply::fixed(503, "5.5.1", "DATA cannot follow BDAT in one transaction");
pub(crate) const BAD_SENDER: Reply = Reply::fixed(501, "5.1.7", "bad sender address syntax");
pub(crate) const BAD_RECIPIENT: Reply = Reply::fixed(501, "5.1.3", "bad recipient address syntax");
pub(crate) const BAD_PARAMETER: Reply = Reply::fixed(501, "5.5.4", "invalid command parameter");
pub(crate) const UNSUPPORTED_PARAMETER: Reply =
    Reply::fixed(555, "5.5.4", "parameter not recognized or not implemented");
pub(crate) const UNKNOWN_RECIPIENT: Reply =
    Reply::fixed(550, "5.1.1", "recipient not accepted here");
pub(crate) const TOO_MANY_RECIPIENTS: Reply = Reply::fixed(452, "4.5.3", "too many recipients");
pub(crate) const TOO_BIG: Reply = Reply::fixed(552, "5.3.4", "message too big");
pub(crate) const AUTH_REQUIRED: Reply = Reply::fixed(530, "5.7.0", "authentication required");
pub(crate) const STARTTLS_FIRST: Reply =
    Reply::fixed(530, "5.7.0", "must issue a STARTTLS command first");
pub(crate) const NOT_ALLOWED: Reply =
    Reply::fixed(550, "5.7.1", "client not allowed to submit mail here");
pub(crate) const TLS_ACTIVE: Reply = Reply::fixed(503, "5.5.1", "TLS already active");
pub(crate) const TLS_UNAVAILABLE: Reply = Reply::fixed(502, "5.5.1", "STARTTLS not available");
pub(crate) const AUTH_UNAVAILABLE: Reply = Reply::fixed(502, "5.5.1", "AUTH not available");
// RFC 4954 §6: 538 when a mechanism needs an encrypted connection.
pub(crate) const ENCRYPTION_REQUIRED: Reply =
    Reply::fixed(538, "5.7.11", "encryption required for authentication");
pub(crate) const ALREADY_AUTHENTICATED: Reply = Reply::fixed(503, "5.5.1", "already authenticated");
pub(crate) const AUTH_IN_TRANSACTION: Reply =
    Reply::fixed(503, "5.5.1", "AUTH not permitted during a mail transaction");
pub(crate) const UNKNOWN_MECHANISM: Reply =
    Reply::fixed(504, "5.5.4", "authentication mechanism not supported");
pub(crate) const AUTH_CANCELLED: Reply = Reply::fixed(501, "5.7.0", "authentication cancelled");
pub(crate) const BAD_SASL: Reply = Reply::fixed(501, "5.5.2", "malformed authentication response");
pub(crate) const BAD_BASE64: Reply = Reply::fixed(501, "5.5.2", "cannot decode base64 response");
pub(crate) const BAD_CREDENTIALS: Reply =
    Reply::fixed(535, "5.7.8", "authentication credentials invalid");
// RFC 4954 §6: 454 4.7.0, a temporary authentication failure.
pub(crate) const AUTH_LOCKED_OUT: Reply = Reply::fixed(
    454,
    "4.7.0",
    "too many failed authentications from your address, try again later",
);
pub(crate) const TOO_MANY_ERRORS: Reply =
    Reply::fixed(421, "4.7.0", "too many errors, closing connection");
pub(crate) const TIMEOUT: Reply = Reply::fixed(421, "4.4.2", "timeout, closing connection");
pub(crate) const SHUTTING_DOWN: Reply =
    Reply::fixed(421, "4.3.2", "service shutting down, try again later");
pub(crate) const TRY_LATER: Reply = Reply::fixed(
    451,
    "4.3.0",
    "temporary failure storing the message, try again later",
);
pub(crate) const DATA_GO_AHEAD: &str = "end data with <CR><LF>.<CR><LF>";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_single_lines() {
        assert_eq!(OK.to_bytes(), b"250 2.0.0 OK\r\n");
        let r = Reply::with_text(554, "5.6.0", "bad\r\n250 fake");
        assert_eq!(r.to_bytes(), b"554 5.6.0 bad  250 fake\r\n");
        assert_eq!(Reply::intermediate(334, "").to_bytes(), b"334 \r\n");
    }

    #[test]
    fn multiline_marks_every_line_but_the_last() {
        let lines = ["a".to_owned(), "B".to_owned(), "C".to_owned()];
        assert_eq!(multiline(250, &lines), b"250-a\r\n250-B\r\n250 C\r\n");
    }
}
