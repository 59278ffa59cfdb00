//! The end of a message: the delivery handed to the daemon, and the reply to its result.

use std::fmt;

use crate::ingest::{Ack, IngestError, Refusal, Submission, Trust};
use crate::model::{Address, Envelope, ProjectPath, Source, SourceKind};
use crate::telemetry::SmtpOutcome;

use super::reply::{self, Reply};
use super::session::{Action, Protocol, Session, State, Transaction};

/// The BODY parameter of MAIL (RFC 6152).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Unspecified,
    SevenBit,
    EightBitMime,
}

/// One received message, for the daemon to submit; stored once whatever the number of
/// recipients.
pub struct Delivery {
    /// The message as received: un-dot-stuffed, bare LF made CRLF (DATA), or as sent (BDAT).
    pub data: Vec<u8>,
    /// The reverse path and every accepted recipient, without repeats.
    pub envelope: Envelope,
    /// The accepted recipients, without repeats, in RCPT order.
    pub recipients: Vec<Address>,
    /// The distinct projects of the recipients; never empty.
    pub projects: Vec<ProjectPath>,
    pub protocol: Protocol,
    /// The EHLO/HELO/LHLO argument.
    pub helo: String,
    /// The authenticated identity.
    pub auth: Option<String>,
    pub trust: Trust,
    pub body: Body,
    /// MAIL had SMTPUTF8 (RFC 6531).
    pub smtputf8: bool,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("data", &format_args!("<{} bytes>", self.data.len()))
            .field("envelope", &self.envelope)
            .field("projects", &self.projects)
            .field("protocol", &self.protocol)
            .field("helo", &self.helo)
            .field("auth", &self.auth)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// The submission for the ingest pipeline; `peer` names the client (`ip:port`, or the
    /// socket path).
    pub fn into_submission(self, peer: &str) -> Submission {
        let peer = peer.to_owned();
        let kind = match self.protocol {
            Protocol::Smtp => SourceKind::Smtp {
                peer,
                helo: self.helo,
                auth: self.auth,
            },
            Protocol::Lmtp => SourceKind::Lmtp {
                peer,
                helo: self.helo,
            },
        };
        let received = crate::model::unix_now();
        Submission {
            raw: self.data,
            source: Source {
                kind,
                received,
                envelope: Some(self.envelope),
            },
            projects: self.projects,
            trust: self.trust,
        }
    }
}

/// The metric label of a delivery's result.
pub fn outcome(result: &Result<Ack, IngestError>) -> SmtpOutcome {
    match result {
        Ok(Ack::Stored {
            duplicate: false, ..
        }) => SmtpOutcome::Accepted,
        Ok(Ack::Stored {
            duplicate: true, ..
        }) => SmtpOutcome::Duplicate,
        Ok(Ack::Excluded) => SmtpOutcome::Excluded,
        Err(IngestError::Unavailable(_)) => SmtpOutcome::Deferred,
        Err(IngestError::Refused(_)) => SmtpOutcome::Rejected,
    }
}

fn result_reply(result: &Result<Ack, IngestError>) -> Reply {
    match result {
        Ok(Ack::Stored {
            id,
            duplicate: false,
        }) => Reply::with_text(250, "2.0.0", format!("stored as {id}")),
        Ok(Ack::Stored {
            id,
            duplicate: true,
        }) => Reply::with_text(250, "2.0.0", format!("stored as {id} (duplicate)")),
        // ARCHITECTURE.md §4 rule 1: a journaling server must not receive bounces.
        Ok(Ack::Excluded) => reply::OK,
        Err(IngestError::Unavailable(_)) => reply::TRY_LATER,
        Err(IngestError::Refused(Refusal::TooLarge { .. })) => reply::TOO_BIG,
        Err(IngestError::Refused(refusal)) => {
            Reply::with_text(554, "5.6.0", format!("message refused: {refusal}"))
        }
    }
}

impl Session {
    /// The terminator of DATA or BDAT LAST was read.
    pub(super) fn end_of_message(&mut self, out: &mut Vec<Action>) {
        self.state = State::Command;
        let Some(mut transaction) = self.transaction.take() else {
            return;
        };
        if transaction.message.overflowed() {
            out.push(Action::Discarded {
                bytes: transaction.message.received(),
            });
            let replies = self.reply_targets(&transaction.recipients);
            self.answer_each(out, &reply::TOO_BIG, &replies);
            return;
        }
        let recipients = self.reply_targets(&transaction.recipients);
        let delivery = self.delivery(&mut transaction);
        self.state = State::AwaitDelivery { recipients };
        out.push(Action::Deliver(Box::new(delivery)));
    }

    /// Replies to the delivery result: once for SMTP, once per accepted RCPT for LMTP
    /// (RFC 2033 §4.2), in RCPT order.
    pub(super) fn answer_delivery(
        &mut self,
        result: &Result<Ack, IngestError>,
        recipients: &[Address],
        out: &mut Vec<Action>,
    ) {
        let reply = result_reply(result);
        self.answer_each(out, &reply, recipients);
    }

    /// The recipients that get a reply of their own: every RCPT for LMTP, none for SMTP.
    fn reply_targets(&self, recipients: &[Address]) -> Vec<Address> {
        match self.protocol {
            Protocol::Smtp => Vec::new(),
            Protocol::Lmtp => recipients.to_vec(),
        }
    }

    fn answer_each(&self, out: &mut Vec<Action>, reply: &Reply, recipients: &[Address]) {
        if self.protocol == Protocol::Smtp {
            return self.send(out, reply.clone());
        }
        for recipient in recipients {
            self.send(out, reply.for_recipient(recipient.as_str()));
        }
    }

    fn delivery(&self, transaction: &mut Transaction) -> Delivery {
        let mut recipients: Vec<Address> = Vec::with_capacity(transaction.recipients.len());
        let mut projects: Vec<ProjectPath> = Vec::new();
        for recipient in &transaction.recipients {
            if recipients.contains(recipient) {
                continue;
            }
            let project = self.project_for(recipient);
            if !projects.contains(&project) {
                projects.push(project);
            }
            recipients.push(recipient.clone());
        }
        let envelope = Envelope {
            mail_from: std::mem::take(&mut transaction.mail_from),
            recipients: recipients.iter().map(|r| r.as_str().to_owned()).collect(),
        };
        let trusted = self.peer.trusted_network || self.auth.is_some();
        Delivery {
            data: transaction.message.take(),
            envelope,
            recipients,
            projects,
            protocol: self.protocol,
            helo: self.helo.clone().unwrap_or_default(),
            auth: self.auth.clone(),
            trust: if trusted {
                Trust::Trusted
            } else {
                Trust::Untrusted
            },
            body: transaction.body,
            smtputf8: transaction.smtputf8,
        }
    }
}
