//! The one writer: a thread that drains waiting jobs, applies them as one atomic sled
//! batch, makes it durable with one sync, and only then answers every waiter (group
//! commit, ARCHITECTURE.md §3).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::txn::{Overlay, Txn, to_batch};
use super::{Store, StoreError};
use crate::ingest::{Ack, Prepared};
use crate::policy::PolicyOptions;
use crate::telemetry;

/// What the committer needs to know to classify and store.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    pub policy: PolicyOptions,
    pub auto_create_contacts: bool,
}

/// Jobs drained into one batch, at most.
const MAX_BATCH_JOBS: usize = 1024;
/// Message bytes in one batch, at most: bounds the memory a batch holds.
const MAX_BATCH_BYTES: usize = 32 << 20;
/// Jobs waiting for the committer before submitters wait for room.
const QUEUE_DEPTH: usize = 4096;

/// Called once the batch a job belonged to is durable, or has failed.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Applied {
    /// Whether the job's writes go into the batch.
    keep: bool,
    reply: Reply,
}

type Work = Box<dyn FnOnce(&mut Txn<'_>, &CommitOptions) -> Applied + Send>;

enum Job {
    Work { work: Work, bytes: usize },
    Stop,
}

/// A handle to the committer thread. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
    store: Store,
}

impl Committer {
    /// Starts the committer thread for `store`.
    pub fn start(store: Store, options: CommitOptions) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread_store = store.clone();
        let thread = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || run(thread_store, options, rx))
            .expect("the committer thread starts");
        Committer {
            tx,
            thread: Arc::new(Mutex::new(Some(thread))),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a prepared message; answers once it is durable.
    pub async fn ingest(&self, prepared: Prepared) -> Result<Ack, StoreError> {
        let bytes = prepared.raw.len();
        self.run_sized(bytes, move |txn, options| {
            super::messages::ingest(txn, options, prepared)
        })
        .await
    }

    /// Runs `f` on the committer thread inside a batch; answers with its result once its
    /// writes are durable. If `f` fails, none of its writes are kept.
    pub async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>, &CommitOptions) -> Result<R, StoreError> + Send + 'static,
    {
        self.run_sized(0, f).await
    }

    async fn run_sized<R, F>(&self, bytes: usize, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Txn<'_>, &CommitOptions) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let work: Work = Box::new(move |txn, options| match f(txn, options) {
            Ok(value) => Applied {
                keep: true,
                reply: Box::new(move |synced| {
                    let _ = tx.send(synced.map(|()| value).map_err(commit_failed));
                }),
            },
            Err(e) => Applied {
                keep: false,
                reply: Box::new(move |_| {
                    let _ = tx.send(Err(e));
                }),
            },
        });
        self.tx
            .send(Job::Work { work, bytes })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Finishes every job already queued, syncs, and stops the thread. Jobs sent later
    /// fail with `StoreError::Stopped`.
    pub async fn close(&self) {
        let _ = self.tx.send(Job::Stop).await;
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn commit_failed(detail: String) -> StoreError {
    StoreError::Io {
        path: "commit".into(),
        source: std::io::Error::other(detail),
    }
}

fn run(store: Store, options: CommitOptions, mut rx: mpsc::Receiver<Job>) {
    let mut stopping = false;
    while !stopping {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut jobs = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(job) = next.take() {
            match job {
                Job::Stop => {
                    stopping = true;
                    rx.close();
                }
                Job::Work { work, bytes: b } => {
                    bytes += b;
                    jobs.push(work);
                }
            }
            if jobs.len() < MAX_BATCH_JOBS && bytes < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        commit(&store, &options, jobs);
    }
    // After `close`, jobs that were already queued still get their answer.
    let mut rest = Vec::new();
    while let Ok(Job::Work { work, .. }) = rx.try_recv() {
        rest.push(work);
    }
    if !rest.is_empty() {
        commit(&store, &options, rest);
    }
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "final sync of the store failed");
    }
}

fn commit(store: &Store, options: &CommitOptions, jobs: Vec<Work>) {
    let started = Instant::now();
    let count = jobs.len();
    let mut batch = Overlay::new();
    let mut replies = Vec::with_capacity(count);

    for work in jobs {
        let mut txn = Txn::new(store.db(), store.tree(), &batch);
        let applied = catch_unwind(AssertUnwindSafe(|| work(&mut txn, options)));
        match applied {
            Ok(Applied { keep, reply }) => {
                if keep {
                    let writes = txn.into_writes();
                    batch.extend(writes);
                }
                replies.push(reply);
            }
            // The job's reply channel went down with it: its waiter sees `Stopped`.
            Err(_) => tracing::error!("a store job panicked; its writes were dropped"),
        }
    }

    let synced = if batch.is_empty() {
        Ok(())
    } else {
        store
            .tree()
            .apply_batch(to_batch(batch))
            .map_err(StoreError::from)
            .and_then(|()| store.sync())
            .map_err(|e| e.to_string())
    };
    if let Err(e) = &synced {
        tracing::error!(error = %e, jobs = count, "commit failed; no job of the batch acknowledged");
        telemetry::count_commit_failure();
    }
    telemetry::record_commit(count, started.elapsed());
    for reply in replies {
        reply(synced.clone());
    }
}
