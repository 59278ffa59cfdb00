//! The one path every message takes before the store (ARCHITECTURE.md §1): parse, unwrap a
//! journal report, collect party addresses and compute the dedup key. Pure: no I/O.

use crate::model::{Address, MessageId, Party, ProjectPath, Source};

/// One message handed in by a listener, the importer or the puller.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The message as received (SMTP data already un-dot-stuffed).
    pub raw: Vec<u8>,
    pub source: Source,
    /// The projects it goes into; never empty. One SMTP message whose recipients route to
    /// several projects is stored once with a membership in each.
    pub projects: Vec<ProjectPath>,
    /// Whether original-recipient headers (`X-Original-To`, `Delivered-To`, …) are believed.
    pub trust: Trust,
}

/// How far the sender of a submission is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// An allowed network, an authenticated relay, a local import.
    Trusted,
    Untrusted,
}

/// What a listener is told once the store has answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Durable. `duplicate` when it merged into a message stored before.
    Stored { id: MessageId, duplicate: bool },
    /// An excluded address takes part: nothing was written.
    Excluded,
}

/// Why a submission was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("empty message")]
    Empty,
    #[error("not a mail message: {0}")]
    NotMail(&'static str),
    #[error("message of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

/// A parsed submission, ready for the committer.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// What is stored: the original of a journal report, otherwise the submission, with
    /// line ends normalised to CRLF.
    pub raw: Vec<u8>,
    /// BLAKE3 of `raw`.
    pub content_hash: [u8; 32],
    /// ARCHITECTURE.md §3: normalised Message-ID and body hash.
    pub dedup_key: [u8; 32],
    pub message_id: Option<String>,
    pub subject: Option<String>,
    pub from: Option<String>,
    pub date: Option<i64>,
    /// Sorted by address, without duplicates or the daemon's own addresses.
    pub parties: Vec<Party>,
    /// Recipients from journal reports or trusted original-recipient headers.
    pub extra_recipients: Vec<Address>,
    pub journal: bool,
    pub malformed: bool,
    pub source: Source,
    pub projects: Vec<ProjectPath>,
}

/// Why a submission was not acknowledged as stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The message itself is unacceptable; retrying will not help (5xx).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The store could not make it durable; nothing was acknowledged, retry later (4xx).
    #[error("store unavailable: {0}")]
    Unavailable(String),
}
