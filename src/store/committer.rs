//! The one writer (group commit, ARCHITECTURE.md §3). The applier thread drains waiting
//! jobs and applies them as one atomic sled batch; the syncer thread makes everything
//! applied so far durable with one flush and `fdatasync`, and only then answers the jobs
//! of every batch that sync covered. The two overlap: while one sync waits on the disk,
//! the next batch is applied, so each sync covers whatever arrived during the last one.
//!
//! A job may read what an earlier, not yet durable batch wrote (a copy merging into a
//! message stored a moment before). That is safe because batches are synced and answered
//! in order: a job is answered only after a sync that began after its batch was applied,
//! and that sync covers every batch before it too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::body::Encoded;
use super::txn::{Overlay, Txn, to_batch};
use super::{Handles, Store, StoreError};
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
/// Stored (compressed) bytes in one batch, at most: bounds the memory a batch holds, and
/// sled copies it once more into its log buffers.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Jobs waiting for the applier before submitters wait for room.
const QUEUE_DEPTH: usize = 4096;
/// Applied batches waiting for a sync before the applier waits: sled holds each in its log
/// buffers until the flush, so an applier far ahead of the disk only costs memory.
const UNSYNCED_BATCHES: usize = 2;

/// Called once the batch a job belonged to is durable, or has failed.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;

struct Done {
    /// Whether the job's writes go into the batch.
    keep: bool,
    reply: Reply,
}

/// A job for the committer: run inside a batch, or answered with an error when no batch
/// can run because the store is being reopened.
trait Task: Send {
    fn run(self: Box<Self>, txn: &mut Txn<'_>, options: &CommitOptions) -> Done;
    fn fail(self: Box<Self>, error: String);
}

type Work = Box<dyn Task>;

/// A closure and the waiter for its result.
struct Call<F, R> {
    f: F,
    tx: oneshot::Sender<Result<R, StoreError>>,
}

impl<R, F> Task for Call<F, R>
where
    R: Send + 'static,
    F: FnOnce(&mut Txn<'_>, &CommitOptions) -> Result<R, StoreError> + Send + 'static,
{
    fn run(self: Box<Self>, txn: &mut Txn<'_>, options: &CommitOptions) -> Done {
        let Call { f, tx } = *self;
        match f(txn, options) {
            Ok(value) => Done {
                keep: true,
                reply: Box::new(move |synced| {
                    let _ = tx.send(synced.map(|()| value).map_err(commit_failed));
                }),
            },
            Err(e) => Done {
                keep: false,
                reply: Box::new(move |_| {
                    let _ = tx.send(Err(e));
                }),
            },
        }
    }

    fn fail(self: Box<Self>, error: String) {
        let _ = self.tx.send(Err(commit_failed(error)));
    }
}

enum Job {
    Work { work: Work, bytes: usize },
    Stop,
}

/// A batch on its way from the applier to the syncer.
struct Applied {
    replies: Vec<Reply>,
    /// Whether sled took the batch; a batch it refused is answered with the error.
    outcome: Result<(), String>,
    started: Instant,
    /// The sled instance the batch went into: the one its sync must cover.
    handles: Arc<Handles>,
}

/// Answers that are ready, handed to the runtime in one go: waking many tasks from a
/// tokio worker costs far less than waking each from the syncer thread.
type Answers = Vec<(Reply, Result<(), String>)>;

/// A handle to the committer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    store: Store,
}

impl Committer {
    /// Starts the applier and syncer threads for `store`.
    pub fn start(store: Store, options: CommitOptions) -> Committer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let (applied_tx, applied_rx) = std_mpsc::sync_channel(UNSYNCED_BATCHES);
        let answers = answerer();

        let applier_store = store.clone();
        let applier = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || apply_loop(applier_store, options, rx, applied_tx))
            .expect("the committer thread starts");
        let syncer_store = store.clone();
        let syncer = std::thread::Builder::new()
            .name("syncer".into())
            .spawn(move || sync_loop(syncer_store, applied_rx, answers))
            .expect("the syncer thread starts");
        Committer {
            tx,
            threads: Arc::new(Mutex::new(vec![applier, syncer])),
            store,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Stores a prepared message whose bytes the caller encoded (`store::encode_body`,
    /// on the caller's thread, so that the committer only writes); answers once it is
    /// durable.
    pub async fn ingest(&self, mut prepared: Prepared, body: Encoded) -> Result<Ack, StoreError> {
        // The committer needs the chunks, not a second copy of the bytes.
        prepared.raw = Vec::new();
        let bytes = body.stored_len();
        self.run_sized(bytes, move |txn, options| {
            super::messages::ingest(txn, options, prepared, body)
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
        let work: Work = Box::new(Call { f, tx });
        self.tx
            .send(Job::Work { work, bytes })
            .await
            .map_err(|_| StoreError::Stopped)?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Finishes every job already queued, syncs, and stops the threads. Jobs sent later
    /// fail with `StoreError::Stopped`.
    pub async fn close(&self) {
        let _ = self.tx.send(Job::Stop).await;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

fn commit_failed(detail: String) -> StoreError {
    StoreError::Io {
        path: "commit".into(),
        source: std::io::Error::other(detail),
    }
}

/// Where the syncer sends answers: a task on the runtime the committer started on, or
/// `None` to answer on the syncer thread itself when there is no runtime.
fn answerer() -> Option<mpsc::UnboundedSender<Answers>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Answers>();
    handle.spawn(async move {
        while let Some(answers) = rx.recv().await {
            answer(answers);
        }
    });
    Some(tx)
}

fn apply_loop(
    store: Store,
    options: CommitOptions,
    mut rx: mpsc::Receiver<Job>,
    applied: std_mpsc::SyncSender<Applied>,
) {
    let mut stopping = false;
    let mut last_reopen = None;
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
        reopen_if_failed(&store, &mut last_reopen);
        if let Some(batch) = apply(&store, &options, jobs)
            && applied.send(batch).is_err()
        {
            return;
        }
    }
    // After `close`, jobs that were already queued still get their answer.
    let mut rest = Vec::new();
    while let Ok(Job::Work { work, .. }) = rx.try_recv() {
        rest.push(work);
    }
    if !rest.is_empty()
        && let Some(batch) = apply(&store, &options, rest)
    {
        let _ = applied.send(batch);
    }
    // Dropping `applied` tells the syncer to finish.
}

/// After a write failed for want of space, tries at most this often to open the store
/// again; jobs in between are answered with the failure (451 to SMTP clients).
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// Replaces a store instance that failed for want of space, so that mail is taken again
/// once there is room, without a restart.
fn reopen_if_failed(store: &Store, last: &mut Option<Instant>) {
    if !store.needs_reopen() || last.is_some_and(|t: Instant| t.elapsed() < REOPEN_INTERVAL) {
        return;
    }
    *last = Some(Instant::now());
    match store.reopen() {
        Ok(()) => tracing::warn!("store reopened after running out of space; writes resume"),
        Err(e) => tracing::debug!(error = %e, "store not reopened yet"),
    }
}

/// Runs each job in its own view of the batch, then hands the batch to sled. Without an
/// open store, answers every job with the error instead.
fn apply(store: &Store, options: &CommitOptions, jobs: Vec<Work>) -> Option<Applied> {
    let started = Instant::now();
    let handles = match store.handles() {
        Ok(handles) => handles,
        Err(e) => {
            let e = e.to_string();
            for work in jobs {
                work.fail(e.clone());
            }
            return None;
        }
    };
    let mut batch = Overlay::new();
    let mut replies = Vec::with_capacity(jobs.len());

    for work in jobs {
        let mut txn = Txn::new(&handles.db, &handles.tree, &batch);
        let done = catch_unwind(AssertUnwindSafe(|| work.run(&mut txn, options)));
        match done {
            Ok(Done { keep, reply }) => {
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

    let outcome = if batch.is_empty() {
        Ok(())
    } else {
        handles.tree.apply_batch(to_batch(batch)).map_err(|e| {
            let e = StoreError::from(e);
            store.note_failure(&e);
            e.to_string()
        })
    };
    Some(Applied {
        replies,
        outcome,
        started,
        handles,
    })
}

fn sync_loop(
    store: Store,
    applied: std_mpsc::Receiver<Applied>,
    answers: Option<mpsc::UnboundedSender<Answers>>,
) {
    while let Ok(first) = applied.recv() {
        let mut round = vec![first];
        round.extend(applied.try_iter());

        let jobs: usize = round.iter().map(|a| a.replies.len()).sum();
        let started = round[0].started;
        // Every instance the round's batches went into (one, unless the store was just
        // reopened) is synced once; a batch is answered by the sync of its own.
        let mut synced: Vec<(Arc<Handles>, Result<(), String>)> = Vec::new();
        let mut ready: Answers = Vec::with_capacity(jobs);
        for batch in round {
            let sync = match synced.iter().find(|(h, _)| Arc::ptr_eq(h, &batch.handles)) {
                Some((_, result)) => result.clone(),
                None => {
                    let result = store
                        .sync_handles(&batch.handles)
                        .map_err(|e| e.to_string());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, jobs, "sync failed; no job it covered acknowledged");
                        telemetry::count_commit_failure();
                    }
                    synced.push((batch.handles.clone(), result.clone()));
                    result
                }
            };
            let outcome = batch.outcome.and(sync);
            ready.extend(batch.replies.into_iter().map(|r| (r, outcome.clone())));
        }
        drop(synced);
        telemetry::record_commit(jobs, started.elapsed());
        match &answers {
            Some(tx) => {
                if let Err(mpsc::error::SendError(ready)) = tx.send(ready) {
                    // The runtime is gone (shutdown): answer here instead.
                    answer(ready);
                }
            }
            None => answer(ready),
        }
    }
    if let Err(e) = store.sync() {
        tracing::error!(error = %e, "final sync of the store failed");
    }
}

fn answer(ready: Answers) {
    for (reply, outcome) in ready {
        reply(outcome);
    }
}
