//! What the SMTP and LMTP listeners call into: ingestion, relay-account checks, and the
//! sender checks that run after a message was acknowledged.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admin::password;
use crate::ingest::{Ack, IngestError, Ingestor, Submission};
use crate::model::Secret;
use crate::sender_auth::{SenderContext, Verifier};
use crate::smtp::{Backend, StoredMessage};
use crate::telemetry;

/// Sender checks waiting to start, at most; beyond that a message goes unchecked rather
/// than holding memory while DNS is slow.
const CHECK_QUEUE: usize = 4096;
/// Sender checks running at once. They spend their time waiting on DNS, so many can run;
/// each holds its message's bytes.
const CHECKS_RUNNING: usize = 256;
/// How often, at most, skipped checks are logged.
const SKIP_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct DaemonBackend {
    ingestor: Ingestor,
    checks: Option<mpsc::Sender<StoredMessage>>,
    skipped: Arc<std::sync::Mutex<Skipped>>,
    passwords: password::Checker,
}

impl DaemonBackend {
    /// With a verifier, starts the workers that check senders after acknowledgement.
    pub fn new(ingestor: Ingestor, verifier: Option<Verifier>, hostname: String) -> DaemonBackend {
        let checks = verifier.map(|verifier| {
            let (tx, mut rx) = mpsc::channel::<StoredMessage>(CHECK_QUEUE);
            let ingestor = ingestor.clone();
            let running = Arc::new(tokio::sync::Semaphore::new(CHECKS_RUNNING));
            tokio::spawn(async move {
                while let Some(message) = rx.recv().await {
                    let Ok(permit) = running.clone().acquire_owned().await else {
                        break;
                    };
                    let (ingestor, verifier) = (ingestor.clone(), verifier.clone());
                    let hostname = hostname.clone();
                    tokio::spawn(async move {
                        check(&ingestor, &verifier, &hostname, message).await;
                        drop(permit);
                    });
                }
            });
            tx
        });
        DaemonBackend {
            ingestor,
            checks,
            skipped: Arc::default(),
            passwords: password::Checker::start(),
        }
    }
}

/// Counts checks skipped since the last warning, and when that was.
#[derive(Debug, Default)]
struct Skipped {
    count: u64,
    warned: Option<std::time::Instant>,
}

async fn check(ingestor: &Ingestor, verifier: &Verifier, hostname: &str, m: StoredMessage) {
    let store = ingestor.committer().store().clone();
    let id = m.id;
    let raw = match tokio::task::spawn_blocking(move || store.raw_message(id)).await {
        Ok(Ok(Some(raw))) => raw,
        // Gone already (purged, or merged into an exclusion): nothing to check.
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!(message = %id, error = %e, "cannot read a message for sender checks");
            return;
        }
        Err(_) => return,
    };
    let context = SenderContext {
        client_ip: m.peer_ip,
        helo: m.helo,
        mail_from: m.mail_from,
        receiver_host: hostname.to_owned(),
    };
    let results = verifier.verify(&raw, &context).await;
    let saved = ingestor
        .committer()
        .run(move |txn, _| txn.set_auth(id, results))
        .await;
    if let Err(e) = saved {
        tracing::warn!(message = %id, error = %e, "cannot record sender check results");
    }
}

impl Backend for DaemonBackend {
    async fn submit(&self, submission: Submission) -> Result<Ack, IngestError> {
        self.ingestor.submit(submission).await
    }

    async fn verify_relay(&self, name: &str, password: &Secret) -> bool {
        let hash = match self.ingestor.committer().store().relay(name) {
            Ok(relay) => relay.map(|r| r.password_hash),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read relay accounts");
                None
            }
        };
        self.passwords.check(hash, password.clone()).await
    }

    fn after_stored(&self, message: StoredMessage) {
        let Some(checks) = &self.checks else { return };
        if checks.try_send(message).is_ok() {
            return;
        }
        telemetry::auth_check(telemetry::AuthOutcome::Skipped);
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        skipped.count += 1;
        if skipped
            .warned
            .is_none_or(|t| t.elapsed() >= SKIP_WARNING_EVERY)
        {
            tracing::warn!(
                skipped = skipped.count,
                "sender checks are falling behind (slow DNS?); messages stored unchecked"
            );
            skipped.count = 0;
            skipped.warned = Some(std::time::Instant::now());
        }
    }
}
