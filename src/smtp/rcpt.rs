//! RCPT TO: which recipients threadsd takes, and the project each one routes to.

use std::borrow::Cow;

use smtp_proto::RcptTo;

use crate::model::{Address, AddressError, ProjectPath};

use super::reply::{self, Reply};
use super::session::Session;

impl Session {
    /// RCPT (RFC 5321 §4.1.1.3).
    pub(super) fn on_rcpt(&mut self, to: &RcptTo<Cow<'_, str>>) -> Result<Reply, Reply> {
        if self.helo.is_none() {
            return Err(reply::HELO_FIRST);
        }
        let max_recipients = self.config.max_recipients;
        let Some(transaction) = self.transaction.as_mut() else {
            return Err(reply::MAIL_FIRST);
        };
        // RFC 5321 §4.5.3.1.10: 452 past the limit; the client sends the rest later.
        if transaction.recipients.len() >= max_recipients {
            return Err(reply::TOO_MANY_RECIPIENTS);
        }
        // No RCPT parameter belongs to an extension threadsd offers (DSN is not offered).
        if to.orcpt.is_some() || to.rrvs != 0 || to.flags != 0 {
            return Err(reply::UNSUPPORTED_PARAMETER);
        }
        let address = match Address::parse(&to.address) {
            Ok(address) => address,
            // smtp-proto gives `<postmaster>` as the empty address; nobody receives here.
            Err(AddressError::Empty) => return Err(reply::UNKNOWN_RECIPIENT),
            Err(_) => return Err(reply::BAD_RECIPIENT),
        };

        // threadsd never relays: only the configured recipients are taken.
        if !self
            .config
            .accept_recipients
            .iter()
            .any(|p| p.matches(&address))
        {
            return Err(reply::UNKNOWN_RECIPIENT);
        }
        transaction.recipients.push(address);
        Ok(reply::RECIPIENT_OK)
    }

    /// The project a recipient delivers to: its sub-address (`threads+Clients.Acme@…` is
    /// `Clients/Acme`, ARCHITECTURE.md §5), else the default. A sub-address that is no valid
    /// path falls back to the default too: a journaling sink must not lose the message.
    pub(super) fn project_for(&self, recipient: &Address) -> ProjectPath {
        let Some(detail) = recipient.detail() else {
            return self.config.default_project.clone();
        };
        match ProjectPath::from_detail(detail) {
            Ok(path) => path,
            Err(e) => {
                tracing::debug!(error = %e, "sub-address is no project path, using the default");
                self.config.default_project.clone()
            }
        }
    }
}
