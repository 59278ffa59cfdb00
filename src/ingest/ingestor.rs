//! The front door every source uses: runs the pipeline and awaits the committer's
//! answer. The one part of `ingest` that waits on anything.

use std::sync::Arc;

use super::{Ack, IngestError, IngestOptions, Submission, prepare};
use crate::store::{Committer, encode_body};
use crate::telemetry::{self, Outcome, SourceLabel};

/// Messages up to this size are parsed and compressed on the calling task; bigger ones on
/// the blocking pool, so that one large message does not stall the sessions sharing a
/// worker thread.
const INLINE_PARSE_LIMIT: usize = 256 * 1024;

#[derive(Debug, Clone)]
pub struct Ingestor {
    committer: Committer,
    options: Arc<IngestOptions>,
}

impl Ingestor {
    pub fn new(committer: Committer, options: IngestOptions) -> Ingestor {
        Ingestor {
            committer,
            options: Arc::new(options),
        }
    }

    pub fn committer(&self) -> &Committer {
        &self.committer
    }

    /// Ingests one message; `Ok` only once it is durable (or excluded).
    pub async fn submit(&self, submission: Submission) -> Result<Ack, IngestError> {
        let source = SourceLabel::of(&submission.source);
        let size = submission.raw.len();
        let options = self.options.clone();
        let work = move || {
            prepare(submission, &options).map(|p| {
                let body = encode_body(&p.raw);
                (p, body)
            })
        };
        let prepared = if size > INLINE_PARSE_LIMIT {
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|_| IngestError::Unavailable("the parser task failed".into()))?
        } else {
            work()
        };
        let (prepared, body) = match prepared {
            Ok((p, Ok(body))) => (p, body),
            Ok((_, Err(e))) => {
                telemetry::count_message(source, Outcome::Failed, size);
                return Err(IngestError::Unavailable(e.to_string()));
            }
            Err(refusal) => {
                telemetry::count_message(source, Outcome::Refused, size);
                return Err(refusal.into());
            }
        };
        match self.committer.ingest(prepared, body).await {
            Ok(ack) => {
                let outcome = match ack {
                    Ack::Stored {
                        duplicate: false, ..
                    } => Outcome::Stored,
                    Ack::Stored {
                        duplicate: true, ..
                    } => Outcome::Duplicate,
                    Ack::Excluded => Outcome::Excluded,
                };
                telemetry::count_message(source, outcome, size);
                Ok(ack)
            }
            Err(e) => {
                telemetry::count_message(source, Outcome::Failed, size);
                Err(IngestError::Unavailable(e.to_string()))
            }
        }
    }
}
