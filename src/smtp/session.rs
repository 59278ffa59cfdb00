//! The SMTP/LMTP session: a sans-I/O state machine fed the client's bytes that returns the
//! replies to write and the requests (deliver, authenticate, start TLS, close) its driver
//! carries out. It does no I/O and never panics on any input.
//!
//! Command lines end at LF; the CR before it is optional, because sloppy clients exist and a
//! command carries no message text to smuggle. A CR anywhere else in a command line is
//! refused (501 5.5.2). RFC 5321 §4.5.3.1.4 allows 512 octets per command line and lets
//! extensions raise it; threadsd takes [`MAX_COMMAND_LINE`], and [`MAX_AUTH_LINE`] for AUTH
//! and SASL responses (RFC 4954 §4). A longer line is dropped up to its LF and answered
//! 500 5.5.6.
//!
//! Access: a client may start a transaction when its network is allowed (the driver says so
//! in [`PeerInfo::trusted_network`]) or it authenticated; `require_auth` asks every client
//! to authenticate. A client that may not yet submit gets 530 5.7.0 when it can still
//! fix that in this session (AUTH is offered, or will be after STARTTLS), and 550 5.7.1 when
//! it cannot. Replies carry RFC 3463 enhanced codes except where RFC 2034 §3 leaves them
//! out (the greeting, the answer to EHLO/HELO/LHLO, 3xx replies).
//!
//! The rules for message data (the only terminator, dot-stuffing, bare LF and CR) are with
//! the DATA reader in `data.rs`.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::{Error as ParseError, Request};

use crate::config::{Network, PolicyConfig, RecipientPattern, SmtpConfig};
use crate::ingest::{Ack, IngestError};
use crate::model::{Address, ProjectPath};

use super::auth::AuthStep;
use super::bdat::Chunk;
use super::data::{DotReader, MessageBuffer};
use super::delivery::{Body, Delivery};
use super::ehlo::Hello;
use super::reply::{self, Reply};
use crate::model::Secret;

/// Octets per command line, CRLF included.
pub const MAX_COMMAND_LINE: usize = 4096;
/// Octets per AUTH command line or SASL response line, CRLF included (RFC 4954 §4).
pub const MAX_AUTH_LINE: usize = 12288;
/// Characters of a client's AUTH identity that go into the log, at most.
const MAX_LOGGED_IDENTITY: usize = 64;

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    /// RFC 2033: LHLO instead of EHLO, and one reply per recipient after the data.
    Lmtp,
}

/// Whether the connection can be, or is, encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    /// No TLS on this connection (a Unix socket, or no certificate).
    Unavailable,
    /// STARTTLS is offered.
    Available,
    /// Implicit TLS, or after STARTTLS.
    Active,
}

/// What the driver knows about the client when the connection opens.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// None for a Unix socket.
    pub ip: Option<IpAddr>,
    /// The client is in `allow_networks`, or on a Unix socket.
    pub trusted_network: bool,
    pub tls: TlsState,
}

/// The settings every session of a listener shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The name in the greeting and the EHLO answer.
    pub hostname: String,
    pub accept_recipients: Vec<RecipientPattern>,
    pub allow_networks: Vec<Network>,
    pub require_auth: bool,
    pub auth_without_tls: bool,
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// Failed commands after which the session replies 421 and closes.
    pub max_errors: usize,
    /// Where a recipient without a usable sub-address delivers.
    pub default_project: ProjectPath,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl SessionConfig {
    /// The session settings of the configuration; the host name defaults to the machine's.
    pub fn new(smtp: &SmtpConfig, policy: &PolicyConfig) -> SessionConfig {
        let hostname = smtp.hostname.clone().unwrap_or_else(crate::net::hostname);
        SessionConfig {
            hostname,
            accept_recipients: smtp.accept_recipients.clone(),
            allow_networks: smtp.allow_networks.clone(),
            require_auth: smtp.require_auth,
            auth_without_tls: smtp.auth_without_tls,
            max_message_size: usize::try_from(smtp.max_message_size.0).unwrap_or(usize::MAX),
            max_recipients: smtp.max_recipients,
            max_errors: smtp.max_errors,
            default_project: policy.default_project.clone(),
            command_timeout: smtp.command_timeout.duration(),
            data_timeout: smtp.data_timeout.duration(),
            shutdown_grace: smtp.shutdown_grace.duration(),
        }
    }

    /// Whether a client may submit without authenticating; Unix-socket clients (no IP) may.
    pub fn is_trusted(&self, ip: Option<IpAddr>) -> bool {
        match ip {
            None => true,
            Some(ip) => self.allow_networks.iter().any(|n| n.contains(ip)),
        }
    }
}

/// What the driver is to do, in order.
#[derive(Debug)]
pub enum Action {
    /// Write these bytes to the client.
    Reply(Vec<u8>),
    /// Submit the message and answer with [`Session::delivered`]. The session reads no
    /// further input until then.
    Deliver(Box<Delivery>),
    /// Check the credentials and answer with [`Session::authenticated`].
    Authenticate { identity: String, password: Secret },
    /// Run the TLS handshake on the connection, then call [`Session::tls_started`]; close
    /// the connection if it fails. Bytes read before the handshake must not be fed.
    StartTls,
    /// A message was received and refused by the session itself (too big); for metrics.
    Discarded { bytes: usize },
    /// Close the connection after writing what came before.
    Close,
}

/// One mail transaction, from MAIL to the end of its data.
#[derive(Debug)]
pub(super) struct Transaction {
    /// The reverse path; empty for `<>`.
    pub(super) mail_from: String,
    pub(super) body: Body,
    pub(super) smtputf8: bool,
    /// Every accepted RCPT in order, repeats included: LMTP answers each one
    /// (RFC 2033 §4.2).
    pub(super) recipients: Vec<Address>,
    pub(super) message: MessageBuffer,
    /// BDAT was used; DATA may not be (RFC 3030 §3).
    pub(super) chunking: bool,
}

impl Transaction {
    pub(super) fn new(mail_from: String, body: Body, smtputf8: bool, limit: usize) -> Self {
        Transaction {
            mail_from,
            body,
            smtputf8,
            recipients: Vec::new(),
            message: MessageBuffer::new(limit),
            chunking: false,
        }
    }
}

#[derive(Debug)]
pub(super) enum State {
    /// Reading command lines.
    Command,
    /// Dropping the rest of an over-long line up to its LF.
    LongLine,
    /// Reading a SASL response line.
    Auth(AuthStep),
    Data(DotReader),
    Bdat(Chunk),
    /// A Deliver is out; these are the recipients LMTP answers for.
    AwaitDelivery {
        recipients: Vec<Address>,
    },
    AwaitAuth {
        identity: String,
    },
    /// STARTTLS was accepted; the handshake comes next.
    AwaitTls,
    Closed,
}

/// One SMTP or LMTP connection's protocol state.
pub struct Session {
    pub(super) config: Arc<SessionConfig>,
    pub(super) protocol: Protocol,
    pub(super) peer: PeerInfo,
    /// Bytes received and not yet acted on: a partial command line, or pipelined commands
    /// waiting behind a pending request. May hold AUTH credentials, so never logged.
    input: Vec<u8>,
    pub(super) state: State,
    /// The EHLO/HELO/LHLO argument; None until the client greeted.
    pub(super) helo: Option<String>,
    /// The authenticated identity.
    pub(super) auth: Option<String>,
    pub(super) transaction: Option<Transaction>,
    /// Failed commands so far.
    errors: usize,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("protocol", &self.protocol)
            .field("peer", &self.peer)
            .field("helo", &self.helo)
            .field("auth", &self.auth)
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub fn new(config: Arc<SessionConfig>, protocol: Protocol, peer: PeerInfo) -> Session {
        Session {
            config,
            protocol,
            peer,
            input: Vec::new(),
            state: State::Command,
            helo: None,
            auth: None,
            transaction: None,
            errors: 0,
        }
    }

    /// The 220 greeting to write when the connection opens (after the handshake of an
    /// implicit-TLS listener).
    pub fn greeting(&self) -> Vec<u8> {
        let kind = match self.protocol {
            Protocol::Smtp => "ESMTP",
            Protocol::Lmtp => "LMTP",
        };
        format!("220 {} {kind} threadsd ready\r\n", self.config.hostname).into_bytes()
    }

    /// Takes bytes from the client; consumes what it can and buffers the rest.
    pub fn feed(&mut self, input: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            // RFC 3207 §6: nothing received before the handshake may be acted on after it.
            State::AwaitTls | State::Closed => {}
            _ => {
                self.input.extend_from_slice(input);
                self.run(&mut out);
            }
        }
        out
    }

    /// The answer to [`Action::Deliver`].
    pub fn delivered(&mut self, result: Result<Ack, IngestError>) -> Vec<Action> {
        let mut out = Vec::new();
        let State::AwaitDelivery { recipients } = &mut self.state else {
            return out;
        };
        let recipients = std::mem::take(recipients);
        self.state = State::Command;
        self.answer_delivery(&result, &recipients, &mut out);
        self.run(&mut out);
        out
    }

    /// The answer to [`Action::Authenticate`].
    pub fn authenticated(&mut self, ok: bool) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((identity, logged)) = self.end_auth() else {
            return out;
        };
        if ok {
            tracing::info!(auth.identity = ?logged, "relay authenticated");
            self.auth = Some(identity);
            self.answer(&mut out, reply::AUTH_OK);
        } else {
            tracing::warn!(auth.identity = ?logged, "relay authentication failed");
            self.answer(&mut out, reply::BAD_CREDENTIALS);
        }
        self.run(&mut out);
        out
    }

    /// The answer to [`Action::Authenticate`] when the client's address has failed too
    /// often lately: the credentials were not checked.
    pub fn authentication_locked_out(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        let Some((_, logged)) = self.end_auth() else {
            return out;
        };
        tracing::warn!(
            auth.identity = ?logged,
            "relay authentication refused: too many failures from this address"
        );
        self.answer(&mut out, reply::AUTH_LOCKED_OUT);
        self.run(&mut out);
        out
    }

    /// Leaves the wait for a credentials check: the identity the client gave, and the form
    /// of it for the log. Operators (and fail2ban) want every outcome with that name, which
    /// Debug escapes and is cut short; the password never reaches the log.
    fn end_auth(&mut self) -> Option<(String, String)> {
        let State::AwaitAuth { identity } = &mut self.state else {
            return None;
        };
        let identity = std::mem::take(identity);
        self.state = State::Command;
        let logged = identity.chars().take(MAX_LOGGED_IDENTITY).collect();
        Some((identity, logged))
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded.
    pub fn tls_started(&mut self) -> Vec<Action> {
        if !matches!(self.state, State::AwaitTls) {
            return Vec::new();
        }
        // RFC 3207 §4.2: forget everything learnt before the handshake; the client greets
        // again.
        self.state = State::Command;
        self.peer.tls = TlsState::Active;
        self.helo = None;
        self.auth = None;
        self.transaction = None;
        self.input.clear();
        Vec::new()
    }

    /// The client was silent for [`Session::timeout`] (RFC 5321 §4.5.3.2).
    pub fn timed_out(&mut self) -> Vec<Action> {
        self.close_now(reply::TIMEOUT)
    }

    /// The daemon is stopping.
    pub fn shutdown(&mut self) -> Vec<Action> {
        self.close_now(reply::SHUTTING_DOWN)
    }

    /// How long the driver waits for the next bytes: the data timeout inside a message
    /// (RFC 5321 §4.5.3.2.6), the command timeout elsewhere.
    pub fn timeout(&self) -> Duration {
        match self.state {
            State::Data(_) | State::Bdat(_) => self.config.data_timeout,
            _ => self.config.command_timeout,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Between transactions with nothing buffered: closing now loses no work.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Command) && self.transaction.is_none() && self.input.is_empty()
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    fn close_now(&mut self, reply: Reply) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.is_closed() {
            self.close_with(&mut out, reply);
        }
        out
    }

    /// Acts on buffered input until it runs out or a request is pending.
    fn run(&mut self, out: &mut Vec<Action>) {
        let mut input = std::mem::take(&mut self.input);
        let mut pos = 0;
        while pos < input.len() {
            let Some(used) = self.step(&input[pos..], out) else {
                break;
            };
            pos += used;
        }
        input.drain(..pos);
        // RFC 3207 §6: bytes that followed STARTTLS in the clear are an injection attempt.
        if matches!(self.state, State::AwaitTls | State::Closed) {
            input.clear();
        }
        self.input = input;
    }

    /// Takes what the current state can from `input`; None when it needs more or waits.
    /// Every Some either consumed a byte or changed the state.
    fn step(&mut self, input: &[u8], out: &mut Vec<Action>) -> Option<usize> {
        match &mut self.state {
            State::Command | State::Auth(_) => self.take_line(input, out),
            State::LongLine => Some(self.skip_long_line(input, out)),
            State::Data(reader) => {
                let Some(transaction) = self.transaction.as_mut() else {
                    self.state = State::Command;
                    return Some(0);
                };
                let progress = reader.feed(input, &mut transaction.message);
                if progress.complete {
                    self.end_of_message(out);
                }
                Some(progress.consumed)
            }
            State::Bdat(_) => Some(self.take_chunk(input, out)),
            State::AwaitDelivery { .. }
            | State::AwaitAuth { .. }
            | State::AwaitTls
            | State::Closed => None,
        }
    }

    fn take_line(&mut self, input: &[u8], out: &mut Vec<Action>) -> Option<usize> {
        let limit = self.line_limit(input);
        let Some(lf) = input.iter().take(limit).position(|&b| b == b'\n') else {
            if input.len() < limit {
                return None;
            }
            self.state = State::LongLine;
            return Some(limit);
        };
        self.line(&input[..=lf], out);
        Some(lf + 1)
    }

    fn line_limit(&self, input: &[u8]) -> usize {
        if matches!(self.state, State::Auth(_)) || is_auth(input) {
            MAX_AUTH_LINE
        } else {
            MAX_COMMAND_LINE
        }
    }

    fn skip_long_line(&mut self, input: &[u8], out: &mut Vec<Action>) -> usize {
        let Some(lf) = input.iter().position(|&b| b == b'\n') else {
            return input.len();
        };
        self.state = State::Command;
        self.answer(out, reply::LINE_TOO_LONG);
        lf + 1
    }

    /// One whole line, LF included.
    fn line(&mut self, line: &[u8], out: &mut Vec<Action>) {
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if matches!(self.state, State::Auth(_)) {
            let State::Auth(step) = std::mem::replace(&mut self.state, State::Command) else {
                return;
            };
            tracing::trace!(line = "<sasl response redacted>", "received");
            self.on_auth_response(step, text, out);
            return;
        }
        trace_command(text);
        if text.contains(&b'\r') {
            self.answer(out, reply::BARE_CR);
            return;
        }
        match Request::parse(&mut line.iter()) {
            Ok(request) => self.command(request, out),
            Err(e) => self.answer(out, parse_error(&e)),
        }
    }

    fn command(&mut self, request: Request<Cow<'_, str>>, out: &mut Vec<Action>) {
        let answer = match request {
            Request::Ehlo { host } => return self.hello(Hello::Ehlo, &host, out),
            Request::Helo { host } => return self.hello(Hello::Helo, &host, out),
            Request::Lhlo { host } => return self.hello(Hello::Lhlo, &host, out),
            Request::Mail { from } => self.on_mail(&from),
            Request::Rcpt { to } => self.on_rcpt(&to),
            Request::Data => self.on_data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => {
                return self.on_bdat(chunk_size, is_last, out);
            }
            Request::Auth {
                mechanism,
                initial_response,
            } => {
                return self.on_auth(mechanism, &initial_response, out);
            }
            Request::StartTls => return self.on_starttls(out),
            Request::Rset => {
                self.transaction = None;
                Ok(reply::RESET)
            }
            Request::Noop { .. } => Ok(reply::OK),
            Request::Vrfy { .. } => Ok(reply::CANNOT_VRFY),
            Request::Help { .. } => Ok(reply::HELP),
            Request::Quit => {
                self.close_with(out, reply::BYE);
                return;
            }
            // threadsd expands no lists, keeps no queue and fetches no URLs.
            Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Err(reply::NOT_IMPLEMENTED),
        };
        let (Ok(reply) | Err(reply)) = answer;
        self.answer(out, reply);
    }

    fn hello(&mut self, hello: Hello, host: &str, out: &mut Vec<Action>) {
        match self.on_hello(hello, host) {
            Ok(bytes) => out.push(Action::Reply(bytes)),
            Err(reply) => self.answer(out, reply),
        }
    }

    /// Sends a reply to a command; a failure counts towards `max_errors`.
    pub(super) fn answer(&mut self, out: &mut Vec<Action>, reply: Reply) {
        out.push(Action::Reply(reply.to_bytes()));
        if !reply.counts_as_error() {
            return;
        }
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            tracing::debug!(errors = self.errors, "too many errors, closing");
            self.close_with(out, reply::TOO_MANY_ERRORS);
        }
    }

    /// Sends a reply that is not the failure of a command (the outcome of a message).
    pub(super) fn send(&self, out: &mut Vec<Action>, reply: Reply) {
        out.push(Action::Reply(reply.to_bytes()));
    }

    fn close_with(&mut self, out: &mut Vec<Action>, reply: Reply) {
        out.push(Action::Reply(reply.to_bytes()));
        out.push(Action::Close);
        self.state = State::Closed;
        self.transaction = None;
    }
}

/// Whether a line is an AUTH command; smtp-proto skips spaces before the verb, so do we.
fn is_auth(line: &[u8]) -> bool {
    let verb = line.trim_ascii_start().get(..4);
    verb.is_some_and(|verb| verb.eq_ignore_ascii_case(b"AUTH"))
}

/// Logs a command line at trace level, escaped, with AUTH arguments left out.
fn trace_command(text: &[u8]) {
    if !tracing::enabled!(tracing::Level::TRACE) {
        return;
    }
    let shown = if is_auth(text) {
        Cow::Borrowed("AUTH <redacted>")
    } else {
        String::from_utf8_lossy(text)
    };
    tracing::trace!(line = %shown.escape_debug(), "received");
}

/// The reply to a line smtp-proto could not parse.
fn parse_error(error: &ParseError) -> Reply {
    match error {
        ParseError::UnknownCommand | ParseError::InvalidResponse { .. } => reply::UNKNOWN_COMMAND,
        ParseError::InvalidSenderAddress => reply::BAD_SENDER,
        ParseError::InvalidRecipientAddress => reply::BAD_RECIPIENT,
        ParseError::SyntaxError { syntax } => {
            Reply::with_text(501, "5.5.4", format!("syntax: {syntax}"))
        }
        ParseError::InvalidParameter { param } => {
            Reply::with_text(501, "5.5.4", format!("invalid parameter {param}"))
        }
        ParseError::UnsupportedParameter { param } => {
            let param: String = param.chars().take(32).collect();
            Reply::with_text(555, "5.5.4", format!("unsupported parameter {param}"))
        }
        ParseError::ResponseTooLong => reply::LINE_TOO_LONG,
        // The parser had a whole line and still wanted more: the line is malformed.
        ParseError::NeedsMoreData { .. } => reply::BAD_PARAMETER,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_lines_are_recognised_as_smtp_proto_parses_them() {
        assert!(is_auth(b"AUTH PLAIN AHJlbGF5AHNlY3JldA=="));
        assert!(is_auth(b"  auth\tplain x"));
        assert!(!is_auth(b"NOOP AUTH"));
        assert!(!is_auth(b"AUT"));
    }
}
