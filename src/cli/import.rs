//! `threadsd import`: reads messages on a thread of its own and keeps a window of them in
//! flight, so that the committer can store many with one sync.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use super::backend::Backend;
use super::{CliError, exit};
use crate::admin::import::{self, Input};
use crate::admin::views::{IngestOutcome, IngestStatus};
use crate::admin::{AdminError, Request, Response};
use crate::model::ProjectPath;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The project to import into; the configured default project otherwise.
    #[arg(long)]
    project: Option<ProjectPath>,
    /// Files, mbox files, Maildir folders, directories; `-` for one message on stdin.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// Messages in flight at once, at most.
const WINDOW_MESSAGES: usize = 256;
/// KiB of message bytes in flight at once, at most. More does not import faster: the
/// committer takes at most 8 MiB per batch.
const WINDOW_KIB: usize = 16 * 1024;

#[derive(Debug, Default)]
struct Tally {
    stored: u64,
    duplicate: u64,
    excluded: u64,
    refused: u64,
    bytes: u64,
}

impl Tally {
    fn count(&mut self, outcome: &IngestOutcome) {
        match outcome.status {
            IngestStatus::Stored => self.stored += 1,
            IngestStatus::Duplicate => self.duplicate += 1,
            IngestStatus::Excluded => self.excluded += 1,
            IngestStatus::Refused => self.refused += 1,
        }
    }

    fn total(&self) -> u64 {
        self.stored + self.duplicate + self.excluded + self.refused
    }
}

/// One message read from an input.
struct Item {
    raw: Vec<u8>,
    label: String,
}

pub async fn run(backend: &Backend, args: ImportArgs) -> Result<ExitCode, CliError> {
    let inputs = import::collect(&args.paths).map_err(|e| CliError::Usage(e.to_string()))?;
    let total_bytes: u64 = inputs.iter().map(Input::size).sum();
    let mut run = Run {
        progress: Progress::new(total_bytes),
        ..Run::default()
    };
    let started = Instant::now();

    let (tx, mut rx) = mpsc::channel::<Result<Item, String>>(64);
    let reader = std::thread::spawn(move || read_all(inputs, tx));

    let window = Arc::new(Semaphore::new(WINDOW_KIB));
    let slots = Arc::new(Semaphore::new(WINDOW_MESSAGES));
    let mut tasks: JoinSet<(String, Result<Response, AdminError>)> = JoinSet::new();

    while let Some(item) = rx.recv().await {
        let item = match item {
            Ok(item) => item,
            Err(e) => {
                run.failures += 1;
                run.progress.note(&format!("cannot read: {e}"));
                continue;
            }
        };
        run.tally.bytes += item.raw.len() as u64;
        let kib = (item.raw.len() / 1024).clamp(1, WINDOW_KIB) as u32;
        let bytes = window
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(internal)?;
        let slot = slots.clone().acquire_owned().await.map_err(internal)?;
        while let Some(done) = tasks.try_join_next() {
            let (label, result) = done.map_err(internal)?;
            run.answer(label, result);
        }
        let backend = backend.clone();
        let project = args.project.clone();
        tasks.spawn(async move {
            let request = Request::Ingest {
                project,
                file: Some(item.label.clone()),
            };
            let result = backend.call_with(request, item.raw).await;
            drop((bytes, slot));
            (item.label, result)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (label, result) = done.map_err(internal)?;
        run.answer(label, result);
    }
    let _ = reader.join();
    run.progress.finish();

    let Run {
        tally, failures, ..
    } = run;
    let secs = started.elapsed().as_secs_f64().max(0.001);
    println!(
        "imported {} messages ({} bytes) in {secs:.1} s, {:.0} messages/s: \
         {} stored, {} duplicates, {} excluded, {} refused",
        tally.total(),
        tally.bytes,
        tally.total() as f64 / secs,
        tally.stored,
        tally.duplicate,
        tally.excluded,
        tally.refused,
    );
    if failures > 0 {
        eprintln!("{failures} messages were not read or not stored; run the import again");
        return Ok(ExitCode::from(exit::TEMPFAIL));
    }
    if tally.refused > 0 {
        return Ok(ExitCode::from(exit::DATA));
    }
    Ok(ExitCode::SUCCESS)
}

/// The state of one import run.
#[derive(Debug, Default)]
struct Run {
    progress: Progress,
    tally: Tally,
    /// Messages that could not be read, or that the store did not take: worth a retry.
    failures: u64,
}

impl Run {
    fn answer(&mut self, label: String, result: Result<Response, AdminError>) {
        match result {
            Ok(Response::Ingested(outcome)) => {
                if outcome.status == IngestStatus::Refused {
                    let reason = outcome.reason.as_deref().unwrap_or("refused");
                    self.progress.note(&format!("refused: {label}: {reason}"));
                }
                self.tally.count(&outcome);
            }
            Ok(_) => {
                self.failures += 1;
                self.progress
                    .note(&format!("failed: {label}: unexpected answer"));
            }
            Err(e) => {
                self.failures += 1;
                self.progress.note(&format!("failed: {label}: {e}"));
            }
        }
        self.progress.show(&self.tally);
    }
}

fn internal(e: impl std::fmt::Display) -> CliError {
    CliError::Other(anyhow::anyhow!("import: {e}"))
}

/// Reads every input on this thread and hands the messages over one by one.
fn read_all(inputs: Vec<Input>, tx: mpsc::Sender<Result<Item, String>>) {
    for input in inputs {
        let name = input
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into());
        let messages = match import::read(&input) {
            Ok(m) => m,
            Err(e) => {
                if tx.blocking_send(Err(e.to_string())).is_err() {
                    return;
                }
                continue;
            }
        };
        let is_mbox = matches!(input, Input::Mbox(_));
        for (n, message) in messages.enumerate() {
            let label = if is_mbox {
                format!("{name}#{}", n + 1)
            } else {
                name.clone()
            };
            let item = message
                .map(|raw| Item { raw, label })
                .map_err(|e| format!("{name}: {e}"));
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    }
}

/// A progress line on standard error when it is a terminal; notes either way.
#[derive(Debug, Default)]
struct Progress {
    total_bytes: u64,
    terminal: bool,
    last: Option<Instant>,
    shown: bool,
}

impl Progress {
    fn new(total_bytes: u64) -> Progress {
        Progress {
            total_bytes,
            terminal: std::io::stderr().is_terminal(),
            ..Progress::default()
        }
    }

    fn show(&mut self, tally: &Tally) {
        if !self.terminal {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now - t < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        let share = if self.total_bytes > 0 {
            (tally.bytes as f64 / self.total_bytes as f64).min(1.0)
        } else {
            0.0
        };
        let filled = (share * 30.0) as usize;
        let bar = format!("{}{}", "=".repeat(filled), " ".repeat(30 - filled));
        eprint!(
            "\r[{bar}] {:3.0}%  {} messages: {} stored, {} duplicates, {} excluded, {} refused",
            share * 100.0,
            tally.total(),
            tally.stored,
            tally.duplicate,
            tally.excluded,
            tally.refused
        );
        let _ = std::io::stderr().flush();
        self.shown = true;
    }

    fn note(&mut self, text: &str) {
        if self.shown {
            eprint!("\r\x1b[2K");
        }
        eprintln!("{text}");
    }

    fn finish(&mut self) {
        if self.shown {
            eprintln!();
        }
    }
}
