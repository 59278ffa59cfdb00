//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, offered only over TLS
//! unless `auth_without_tls` says otherwise. Credentials are never logged.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};

use super::reply::{self, Reply};
use super::session::{Action, Session, State, TlsState};
use crate::model::Secret;

/// Clients differ on base64 padding in SASL responses; either form is taken.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The SASL response the session waits for.
#[derive(Debug)]
pub(super) enum AuthStep {
    /// PLAIN without an initial response: the whole credential comes next.
    Plain,
    LoginUser,
    LoginPassword {
        user: String,
    },
}

impl Session {
    /// Whether AUTH is offered now.
    pub(super) fn auth_offered(&self) -> bool {
        self.auth.is_none() && (self.peer.tls == TlsState::Active || self.config.auth_without_tls)
    }

    /// AUTH mechanism [initial-response].
    pub(super) fn on_auth(&mut self, mechanism: u64, initial: &str, out: &mut Vec<Action>) {
        if let Err(refusal) = self.auth_allowed() {
            self.answer(out, refusal);
            return;
        }
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => self.prompt(out, AuthStep::Plain, ""),
            AUTH_PLAIN => self.on_auth_response(AuthStep::Plain, initial.as_bytes(), out),
            // "Username:" and "Password:", as every LOGIN client expects them.
            AUTH_LOGIN if initial.is_empty() => self.prompt(out, AuthStep::LoginUser, USER),
            AUTH_LOGIN => self.on_auth_response(AuthStep::LoginUser, initial.as_bytes(), out),
            _ => self.answer(out, reply::UNKNOWN_MECHANISM),
        }
    }

    fn auth_allowed(&self) -> Result<(), Reply> {
        // RFC 4954 §4: once authenticated, AUTH may not be repeated.
        if self.auth.is_some() {
            return Err(reply::ALREADY_AUTHENTICATED);
        }
        if !self.auth_offered() {
            if self.peer.tls == TlsState::Available {
                return Err(reply::ENCRYPTION_REQUIRED);
            }
            return Err(reply::AUTH_UNAVAILABLE);
        }
        if self.helo.is_none() {
            return Err(reply::HELO_FIRST);
        }
        // RFC 4954 §4: not during a mail transaction.
        if self.transaction.is_some() {
            return Err(reply::AUTH_IN_TRANSACTION);
        }
        Ok(())
    }

    fn prompt(&mut self, out: &mut Vec<Action>, step: AuthStep, challenge: &'static str) {
        self.state = State::Auth(step);
        self.send(out, Reply::intermediate(334, challenge));
    }

    /// One base64 SASL response, without its line end.
    pub(super) fn on_auth_response(&mut self, step: AuthStep, line: &[u8], out: &mut Vec<Action>) {
        // RFC 4954 §4: a lone "*" cancels the exchange.
        if line == b"*" {
            self.answer(out, reply::AUTH_CANCELLED);
            return;
        }
        let Some(decoded) = decode(line) else {
            self.answer(out, reply::BAD_BASE64);
            return;
        };
        match step {
            AuthStep::Plain => match plain_credentials(&decoded) {
                Some((user, password)) => self.authenticate(out, user, password),
                None => self.answer(out, reply::BAD_SASL),
            },
            AuthStep::LoginUser => match text(decoded) {
                Some(user) if !user.is_empty() => {
                    self.prompt(out, AuthStep::LoginPassword { user }, PASSWORD);
                }
                _ => self.answer(out, reply::BAD_SASL),
            },
            AuthStep::LoginPassword { user } => match String::from_utf8(decoded) {
                Ok(password) => self.authenticate(out, user, password),
                Err(_) => self.answer(out, reply::BAD_SASL),
            },
        }
    }

    fn authenticate(&mut self, out: &mut Vec<Action>, identity: String, password: String) {
        self.state = State::AwaitAuth {
            identity: identity.clone(),
        };
        out.push(Action::Authenticate {
            identity,
            password: Secret::new(password),
        });
    }
}

const USER: &str = "VXNlcm5hbWU6";
const PASSWORD: &str = "UGFzc3dvcmQ6";

/// RFC 4954 §4: `=` is an empty initial response.
fn decode(line: &[u8]) -> Option<Vec<u8>> {
    if line == b"=" {
        return Some(Vec::new());
    }
    LENIENT.decode(line).ok()
}

/// RFC 4616 §2: `[authzid] NUL authcid NUL passwd`. Acting for another identity is not
/// supported, so an authzid must be empty or the authcid itself.
fn plain_credentials(decoded: &[u8]) -> Option<(String, String)> {
    let mut parts = decoded.split(|&b| b == 0);
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || authcid.is_empty() {
        return None;
    }
    if !authzid.is_empty() && authzid != authcid {
        return None;
    }
    let user = text(authcid.to_vec())?;
    let password = String::from_utf8(password.to_vec()).ok()?;
    Some((user, password))
}

/// An identity: UTF-8 without control characters, so that it can be logged and stored.
fn text(bytes: Vec<u8>) -> Option<String> {
    let s = String::from_utf8(bytes).ok()?;
    (!s.contains(char::is_control)).then_some(s)
}
