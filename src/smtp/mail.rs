//! MAIL FROM: who may start a transaction, and the parameters threadsd takes.

use std::borrow::Cow;

use smtp_proto::{
    MAIL_BODY_7BIT, MAIL_BODY_8BITMIME, MAIL_BODY_BINARYMIME, MAIL_SMTPUTF8, MailFrom,
};

use super::delivery::Body;
use super::reply::{self, Reply};
use super::session::{Session, TlsState, Transaction};

impl Session {
    /// MAIL (RFC 5321 §4.1.1.2).
    pub(super) fn on_mail(&mut self, from: &MailFrom<Cow<'_, str>>) -> Result<Reply, Reply> {
        if self.helo.is_none() {
            return Err(reply::HELO_FIRST);
        }
        if self.transaction.is_some() {
            return Err(reply::NESTED_MAIL);
        }
        self.may_submit()?;
        let body = body_of(from)?;
        // RFC 1870 §6: refuse at once a message declared bigger than the limit.
        if from.size > self.config.max_message_size {
            return Err(reply::TOO_BIG);
        }

        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        let limit = self.config.max_message_size;
        self.transaction = Some(Transaction::new(
            from.address.to_string(),
            body,
            smtputf8,
            limit,
        ));
        Ok(reply::SENDER_OK)
    }

    /// Whether this client may submit now; threadsd never relays, and takes mail only from
    /// allowed networks or authenticated clients (see the session module docs).
    fn may_submit(&self) -> Result<(), Reply> {
        if self.auth.is_some() {
            return Ok(());
        }
        if self.peer.trusted_network && !self.config.require_auth {
            return Ok(());
        }
        if self.auth_offered() {
            return Err(reply::AUTH_REQUIRED);
        }
        // AUTH is offered only over TLS here, and TLS is one STARTTLS away.
        if self.peer.tls == TlsState::Available {
            return Err(reply::STARTTLS_FIRST);
        }
        Err(reply::NOT_ALLOWED)
    }
}

/// The BODY type, refusing parameters of extensions threadsd does not offer
/// (RFC 5321 §4.1.1.11: 555). AUTH= (RFC 4954 §5) is taken and ignored.
fn body_of(from: &MailFrom<Cow<'_, str>>) -> Result<Body, Reply> {
    let known = MAIL_BODY_7BIT | MAIL_BODY_8BITMIME | MAIL_SMTPUTF8;
    let unoffered = from.flags & !known != 0
        || from.flags & MAIL_BODY_BINARYMIME != 0
        || from.trans_id.is_some()
        || from.by != 0
        || from.env_id.is_some()
        || from.solicit.is_some()
        || from.mtrk.is_some()
        || from.hold_for != 0
        || from.hold_until != 0
        || from.mt_priority != 0;
    if unoffered {
        return Err(reply::UNSUPPORTED_PARAMETER);
    }
    Ok(if from.flags & MAIL_BODY_8BITMIME != 0 {
        Body::EightBitMime
    } else if from.flags & MAIL_BODY_7BIT != 0 {
        Body::SevenBit
    } else {
        Body::Unspecified
    })
}
