//! The one path every message takes before the store (ARCHITECTURE.md §1): parse, unwrap a
//! journal report, collect party addresses and compute the dedup key. Pure: no I/O.

mod addresses;
mod ingestor;
mod journal;
mod parse;

use crate::model::{Address, MessageId, Party, ProjectPath, Source};

pub use ingestor::Ingestor;

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

/// What the pipeline needs from the configuration.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// The daemon's own addresses; never parties.
    pub ingest_addresses: Vec<Address>,
    pub max_message_size: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            ingest_addresses: Vec::new(),
            max_message_size: 50 << 20,
        }
    }
}

/// Runs the pipeline of ARCHITECTURE.md §1 up to the store: everything but
/// classification, which needs the directory as the committer sees it.
pub fn prepare(submission: Submission, options: &IngestOptions) -> Result<Prepared, Refusal> {
    let Submission {
        raw,
        source,
        projects,
        trust,
    } = submission;
    if raw.len() > options.max_message_size {
        return Err(Refusal::TooLarge {
            size: raw.len(),
            limit: options.max_message_size,
        });
    }
    let raw = parse::normalise(raw);
    parse::check_is_mail(&raw)?;

    // The header block answers everything but a journal report's contents, and costs a
    // fraction of a full parse that would also decode every attachment.
    let head = parse::parse_head(&raw);
    let unwrapped = match &head {
        Some(message) if journal::is_report(message) => unwrap_journal(&raw),
        _ => None,
    };
    let journal = unwrapped.is_some();
    let (stored, report_parties, analysis) = match unwrapped {
        Some((original, recipients)) => {
            drop(head);
            let stored = parse::normalise(original);
            // The report lists the recipients; original-recipient headers inside the
            // original are not believed over it.
            let analysis = match parse::parse_head(&stored) {
                Some(message) => analysis_of(&stored, &message, Trust::Untrusted),
                None => Analysis::unparsed(),
            };
            (stored, recipients, analysis)
        }
        None => {
            let analysis = match &head {
                Some(message) => analysis_of(&raw, message, trust),
                None => Analysis::unparsed(),
            };
            drop(head);
            (raw, Vec::new(), analysis)
        }
    };
    let Analysis {
        mut parties,
        original_recipients,
        meta,
        malformed,
    } = analysis;
    let own = own_addresses(options, &source);

    let mut extra: Vec<Party> = report_parties;
    extra.extend(original_recipients);
    extra.retain(|p| !own.contains(&p.address));
    parties.extend(extra.iter().cloned());
    let parties = addresses::unique_sorted(parties, &own);
    let mut extra_recipients: Vec<Address> = Vec::new();
    for p in extra {
        if !extra_recipients.contains(&p.address) {
            extra_recipients.push(p.address);
        }
    }

    let dedup_key = dedup_key(&stored, &meta);
    Ok(Prepared {
        content_hash: *blake3::hash(&stored).as_bytes(),
        dedup_key,
        raw: stored,
        message_id: meta.message_id,
        subject: meta.subject,
        from: meta.from,
        date: meta.date,
        parties,
        extra_recipients,
        journal,
        malformed,
        source,
        projects,
    })
}

/// The original and the listed recipients, when `raw` is a journal report.
fn unwrap_journal(raw: &[u8]) -> Option<(Vec<u8>, Vec<Party>)> {
    let message = parse::parse_full(raw)?;
    let unwrapped = journal::unwrap(raw, &message)?;
    Some((unwrapped.original.into_owned(), unwrapped.recipients))
}

/// What the header block of the stored message says.
#[derive(Debug, Default)]
struct Analysis {
    parties: Vec<Party>,
    original_recipients: Vec<Party>,
    meta: addresses::Meta,
    malformed: bool,
}

impl Analysis {
    /// No header could be parsed at all, though the gate saw header fields.
    fn unparsed() -> Analysis {
        Analysis {
            malformed: true,
            ..Analysis::default()
        }
    }
}

fn analysis_of(raw: &[u8], message: &mail_parser::Message<'_>, trust: Trust) -> Analysis {
    let original_recipients = match trust {
        Trust::Trusted => addresses::original_recipients(message),
        Trust::Untrusted => Vec::new(),
    };
    Analysis {
        parties: addresses::header_parties(message),
        original_recipients,
        meta: addresses::meta(message),
        malformed: parse::is_malformed(raw, message),
    }
}

/// The configured ingest addresses and this delivery's envelope recipients, with and
/// without their `+detail`: the addresses mail was sent to threadsd by.
fn own_addresses(options: &IngestOptions, source: &Source) -> Vec<Address> {
    let mut own = options.ingest_addresses.clone();
    if let Some(envelope) = &source.envelope {
        for r in &envelope.recipients {
            if let Ok(a) = Address::parse(r) {
                own.push(a.without_detail());
                own.push(a);
            }
        }
    }
    own
}

/// ARCHITECTURE.md §3: the normalised Message-ID with a hash of the body; without a
/// Message-ID, From, Date and Subject stand in. Copies that travelled different routes
/// differ only in their header block, so they share this key.
fn dedup_key(stored: &[u8], meta: &addresses::Meta) -> [u8; 32] {
    let body_hash = body_hash(stored);
    let mut h = blake3::Hasher::new();
    match &meta.message_id {
        Some(id) => {
            h.update(b"message-id\0");
            h.update(id.as_bytes());
        }
        None => {
            h.update(b"headers\0");
            for part in [&meta.from, &meta.date_text, &meta.subject] {
                h.update(part.as_deref().unwrap_or("").as_bytes());
                h.update(b"\0");
            }
        }
    }
    h.update(b"\0");
    h.update(body_hash.as_bytes());
    *h.finalize().as_bytes()
}

/// The hash of the body with line ends as LF and trailing white space dropped: what
/// survives every route unchanged.
fn body_hash(stored: &[u8]) -> blake3::Hash {
    let start = find(stored, b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(stored.len());
    let body = stored[start..].trim_ascii_end();
    let mut h = blake3::Hasher::new();
    let mut lines = body.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        h.update(line.strip_suffix(b"\r").unwrap_or(line));
        if lines.peek().is_some() {
            h.update(b"\n");
        }
    }
    h.finalize()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}
