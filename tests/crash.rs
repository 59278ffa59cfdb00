//! Crash tests against the real binary: `kill -9` of the daemon (or of a direct
//! `threadsd import`) in the middle of a stream of messages, then a restart on the same
//! store.
//!
//! What they prove: everything acknowledged before the kill is stored after it, nothing is
//! stored twice, the store opens again, and sending the same messages again stores exactly
//! the ones that were missing. A SIGKILL leaves the kernel's page cache intact, so these
//! tests check the order of writes and acknowledgements and sled's recovery; they do not
//! simulate a power cut.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use threadsd::admin::socket::AdminClient;
use threadsd::admin::views::IngestStatus;
use threadsd::admin::{Request, Response};

use support::Daemon;

const BIN: &str = env!("CARGO_BIN_EXE_threadsd");

/// How long a phase of a test may take before it counts as hung.
const PHASE_TIMEOUT: Duration = Duration::from_secs(90);

/// Size of the generated messages, as the brief's journaled mail.
const MESSAGE_SIZE: usize = 4096;

// --- messages ---------------------------------------------------------------------------

/// One generated message and the Message-ID the store reports for it (without brackets).
#[derive(Debug, Clone)]
struct Mail {
    id: String,
    raw: Vec<u8>,
}

/// A message of about `size` bytes whose Message-ID is `<tag.n@crash.test>`. Bodies differ
/// from message to message, as real mail does.
fn mail(tag: &str, n: usize, size: usize) -> Mail {
    let id = format!("{tag}.{n}@crash.test");
    let mut raw = format!(
        "From: Alice Martin <alice@corp.test>\r\n\
         To: Bob Dupont <bob@example.test>\r\n\
         Subject: crash test {tag} {n}\r\n\
         Date: Thu, 03 Dec 2026 09:00:00 +0000\r\n\
         Message-ID: <{id}>\r\n\
         \r\n"
    )
    .into_bytes();
    // Word text from a small generator seeded by the message: it compresses about as
    // well as real mail, not to nothing.
    let mut state = (n as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tag.len() as u64;
    let mut line = String::new();
    while raw.len() < size {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        line.push_str(WORDS[(state >> 33) as usize % WORDS.len()]);
        if line.len() < 70 {
            line.push(' ');
            continue;
        }
        line.push_str("\r\n");
        raw.extend_from_slice(line.as_bytes());
        line.clear();
    }
    Mail { id, raw }
}

const WORDS: &[&str] = &[
    "the",
    "quarterly",
    "figures",
    "budget",
    "review",
    "meeting",
    "tomorrow",
    "attached",
    "draft",
    "contract",
    "customer",
    "supplier",
    "invoice",
    "delivery",
    "schedule",
    "thanks",
    "proposal",
    "agenda",
    "minutes",
    "deadline",
    "approval",
    "order",
    "shipment",
    "forecast",
    "revenue",
    "margin",
    "travel",
    "hiring",
    "release",
    "roadmap",
    "migration",
    "outage",
];

fn mails(tag: &str, count: usize) -> Vec<Mail> {
    (0..count).map(|n| mail(tag, n, MESSAGE_SIZE)).collect()
}

// --- what the store holds ---------------------------------------------------------------

/// Every stored message's Message-ID (`None` for mail without one), via the CLI.
fn stored_ids(daemon: &Daemon) -> Vec<Option<String>> {
    let list = daemon.cli_json(&["message", "list", "--json"]);
    let list = list.as_array().expect("message list prints an array");
    list.iter()
        .map(|m| m["message_id"].as_str().map(str::to_owned))
        .collect()
}

/// The stored Message-IDs as a set; panics naming any that is stored more than once, or any
/// message stored without one.
fn unique_ids(stored: &[Option<String>]) -> BTreeSet<String> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in stored {
        let id = id
            .as_deref()
            .expect("every test message carries a Message-ID");
        *counts.entry(id).or_default() += 1;
    }
    let mut twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    twice.sort();
    assert!(
        twice.is_empty(),
        "{} Message-IDs are stored more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    counts.into_keys().map(str::to_owned).collect()
}

/// Panics listing acknowledged Message-IDs missing from `stored`.
fn assert_all_stored(acked: &[String], stored: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged messages are not stored after the restart, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

/// Panics if the daemon logged a warning or an error in any of its starts: recovery from
/// the kill must be silent (a torn batch would show as "dedup entry of a missing message").
fn assert_log_clean(daemon: &Daemon) {
    let log = daemon.log();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .collect();
    assert!(
        bad.is_empty(),
        "the daemon logged problems:\n{}",
        bad.join("\n")
    );
}

fn stats(daemon: &Daemon) -> Value {
    daemon.cli_json(&["stats", "--json"])
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    assert!(
        support::wait_until(PHASE_TIMEOUT, &mut done),
        "timed out waiting for {what}"
    );
}

// --- 1. the admin socket ----------------------------------------------------------------

/// Messages one admin connection keeps in flight.
const IN_FLIGHT: usize = 64;

/// What a stream of `Ingest` requests got back.
#[derive(Debug, Default)]
struct IngestReport {
    /// Message-IDs answered stored or duplicate: durable, by the daemon's promise.
    acked: Vec<String>,
    stored: usize,
    duplicates: usize,
    /// Requests that failed or got any other answer (the kill, for one).
    failed: usize,
}

/// Sends every message as an admin `Ingest` request, `IN_FLIGHT` at a time, on a runtime of
/// its own; counts acknowledgements in `acks` as they come. Stops sending after the first
/// failure: the daemon is gone.
fn ingest_over_admin(socket: PathBuf, mails: Vec<Mail>, acks: Arc<AtomicUsize>) -> IngestReport {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let client = AdminClient::connect(&socket)
            .await
            .expect("connect to the admin socket")
            .expect("a daemon answers on the admin socket");
        let client = Arc::new(client);
        let window = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
        let failed = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for m in mails {
            let permit = window
                .clone()
                .acquire_owned()
                .await
                .expect("an open window");
            if failed.load(Ordering::SeqCst) {
                break;
            }
            let (client, acks, failed) = (client.clone(), acks.clone(), failed.clone());
            tasks.spawn(async move {
                let request = Request::Ingest {
                    project: None,
                    file: None,
                };
                let call = client.call(request, m.raw);
                let answer = tokio::time::timeout(PHASE_TIMEOUT, call).await;
                drop(permit);
                let status = match answer {
                    Ok(Ok(Response::Ingested(outcome))) => Some(outcome.status),
                    _ => None,
                };
                if matches!(status, Some(IngestStatus::Stored | IngestStatus::Duplicate)) {
                    acks.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.store(true, Ordering::SeqCst);
                }
                (m.id, status)
            });
        }
        let mut report = IngestReport::default();
        while let Some(done) = tasks.join_next().await {
            let (id, status) = done.expect("an ingest task");
            match status {
                Some(IngestStatus::Stored) => report.stored += 1,
                Some(IngestStatus::Duplicate) => report.duplicates += 1,
                _ => {
                    report.failed += 1;
                    continue;
                }
            }
            report.acked.push(id);
        }
        report
    })
}

fn spawn_admin_ingest(
    daemon: &Daemon,
    mails: &[Mail],
) -> (JoinHandle<IngestReport>, Arc<AtomicUsize>) {
    let acks = Arc::new(AtomicUsize::new(0));
    let socket = daemon.admin_socket().to_owned();
    let (mails, counter) = (mails.to_vec(), acks.clone());
    let handle = std::thread::spawn(move || ingest_over_admin(socket, mails, counter));
    (handle, acks)
}

#[test]
fn acknowledged_admin_ingests_survive_kill9() {
    const MESSAGES: usize = 3000;
    // Acknowledgements seen before each kill: early, middle and late in the stream, so that
    // the kills land in different phases of the committer's apply–flush–sync cycle.
    const KILL_AFTER: [usize; 3] = [150, 900, 2000];

    let mut daemon = Daemon::start("");
    let mut expected_total = 0;
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let mails = mails(&format!("admin{round}"), MESSAGES);
        let (sender, acks) = spawn_admin_ingest(&daemon, &mails);
        wait_for("acknowledgements before the kill", || {
            acks.load(Ordering::SeqCst) >= kill_after || sender.is_finished()
        });
        daemon.kill9();
        let report = sender.join().expect("the sending thread");
        assert!(
            report.acked.len() < MESSAGES,
            "round {round}: every message was acknowledged before the kill; it came too late"
        );
        assert!(
            report.acked.len() >= kill_after,
            "round {round}: {report:?}"
        );
        assert_eq!(report.duplicates, 0, "round {round}: fresh messages");

        daemon.launch();
        let stored = unique_ids(&stored_ids(&daemon));
        assert_all_stored(&report.acked, &stored, &format!("round {round}"));
        let present = mails.iter().filter(|m| stored.contains(&m.id)).count();
        assert_eq!(
            stored.len(),
            expected_total + present,
            "round {round}: stray messages"
        );

        // Everything once more: what survived counts as a duplicate, the rest is stored.
        let (again, _) = spawn_admin_ingest(&daemon, &mails);
        let again = again.join().expect("the sending thread");
        assert_eq!(
            again.failed, 0,
            "round {round}: the resend failed: {again:?}"
        );
        assert_eq!(
            again.stored,
            MESSAGES - present,
            "round {round}: stored on resend"
        );
        assert_eq!(
            again.duplicates, present,
            "round {round}: duplicates on resend"
        );

        expected_total += MESSAGES;
        let stored = unique_ids(&stored_ids(&daemon));
        assert_eq!(
            stored.len(),
            expected_total,
            "round {round}: after the resend"
        );
        assert!(mails.iter().all(|m| stored.contains(&m.id)));
        assert_eq!(stats(&daemon)["messages"], expected_total as u64);
    }
    assert_log_clean(&daemon);
}

// --- 2. `threadsd import` without a daemon -----------------------------------------------

/// Writes `distinct` messages into a new Maildir's `cur/`, plus `copies` byte-for-byte
/// copies of some of them under other file names, as a mailbox gathered from two backups
/// holds; returns the number of files.
fn write_maildir(dir: &Path, tag: &str, distinct: usize, copies: usize) -> usize {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).expect("create the Maildir");
    }
    let mails = mails(tag, distinct);
    for (n, m) in mails.iter().enumerate() {
        let name = format!("1700000000.{n}.crash.test:2,S");
        std::fs::write(dir.join("cur").join(name), &m.raw).expect("write a message");
    }
    for n in 0..copies {
        let m = &mails[(n * 7) % distinct];
        let name = format!("1700000001.{n}.copy.test:2,S");
        std::fs::write(dir.join("cur").join(name), &m.raw).expect("write a copy");
    }
    distinct + copies
}

/// The counts of the import's summary line: (total, stored, duplicates, excluded, refused).
fn import_summary(stdout: &str) -> (u64, u64, u64, u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("imported "))
        .unwrap_or_else(|| panic!("no summary line in the import's output:\n{stdout}"));
    let number_before = |word: &str| -> u64 {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.trim_end_matches(',') == word)
            .unwrap_or_else(|| panic!("no `{word}` in {line:?}"));
        words[at - 1]
            .parse()
            .unwrap_or_else(|_| panic!("no count before `{word}` in {line:?}"))
    };
    let total = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total in {line:?}"));
    (
        total,
        number_before("stored"),
        number_before("duplicates"),
        number_before("excluded"),
        number_before("refused"),
    )
}

fn import_command(daemon: &Daemon, maildir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("import")
        .arg("--config")
        .arg(daemon.config_path())
        .arg(maildir);
    command
}

/// Bytes in sled's log so far: grows with every commit.
fn sled_log_len(daemon: &Daemon) -> u64 {
    std::fs::metadata(daemon.data_dir().join("sled/db")).map_or(0, |m| m.len())
}

#[test]
fn killed_direct_import_is_completed_by_a_second_import() {
    const DISTINCT: usize = 6000;
    const COPIES: usize = 300;
    // The log bytes written before each kill: two kills, at different depths.
    const KILL_AT_LOG_BYTES: [u64; 2] = [2 << 20, 7 << 20];

    let daemon = Daemon::configure("");
    let maildir = daemon.dir().join("Maildir");
    let files = write_maildir(&maildir, "import", DISTINCT, COPIES) as u64;

    let mut after_kill = 0;
    for (kill, at) in KILL_AT_LOG_BYTES.into_iter().enumerate() {
        let mut child = import_command(&daemon, &maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn threadsd import");
        wait_for("the import to write to the store", || {
            sled_log_len(&daemon) >= at || child.try_wait().ok().flatten().is_some()
        });
        let running = child.try_wait().expect("poll the import").is_none();
        assert!(
            running,
            "kill {kill}: the import finished before it was killed"
        );
        child.kill().expect("kill -9 the import");
        child.wait().expect("reap the import");

        // The store opens, consistent with what it holds.
        let messages = stats(&daemon)["messages"]
            .as_u64()
            .expect("a message count");
        let stored = unique_ids(&stored_ids(&daemon));
        assert_eq!(
            stored.len() as u64,
            messages,
            "kill {kill}: stats and list agree"
        );
        assert!(
            messages > after_kill && messages < DISTINCT as u64,
            "kill {kill}: {messages} messages stored, {after_kill} before; the kill \
             was not mid-run"
        );
        after_kill = messages;
    }

    let output = import_command(&daemon, &maildir)
        .output()
        .expect("run threadsd import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the second import failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let (total, stored, duplicates, excluded, refused) = import_summary(&stdout);
    assert_eq!(total, files, "{stdout}");
    assert_eq!((excluded, refused), (0, 0), "{stdout}");
    assert_eq!(stored + duplicates, total, "{stdout}");
    assert_eq!(stored, DISTINCT as u64 - after_kill, "{stdout}");

    let ids = unique_ids(&stored_ids(&daemon));
    assert_eq!(ids.len(), DISTINCT);
    assert_eq!(stats(&daemon)["messages"], DISTINCT as u64);
}

// --- 3. SMTP and LMTP -------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Smtp,
    Lmtp,
}

/// A plain blocking SMTP/LMTP client: one command, one reply.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(port: u16, protocol: Protocol) -> std::io::Result<Client> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        };
        client.expect("", 220)?;
        let hello = match protocol {
            Protocol::Smtp => "EHLO client.crash.test",
            Protocol::Lmtp => "LHLO client.crash.test",
        };
        client.expect(hello, 250)?;
        Ok(client)
    }

    /// Reads one reply, continuation lines included; returns its code.
    fn reply(&mut self) -> std::io::Result<u16> {
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let code = line.get(..3).and_then(|c| c.parse().ok());
            let Some(code) = code else {
                return Err(std::io::Error::other(format!("bad reply {line:?}")));
            };
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(code);
            }
        }
    }

    /// Sends `command` (nothing when empty) and checks the reply's code.
    fn expect(&mut self, command: &str, code: u16) -> std::io::Result<()> {
        if !command.is_empty() {
            self.writer.write_all(format!("{command}\r\n").as_bytes())?;
        }
        let got = self.reply()?;
        if got != code {
            let msg = format!("{command:?}: {got}, wanted {code}");
            return Err(std::io::Error::other(msg));
        }
        Ok(())
    }

    /// Sends one message to one recipient; true when the end of data got 250 (LMTP: the
    /// one recipient's reply).
    fn send(&mut self, raw: &[u8]) -> std::io::Result<bool> {
        self.expect("MAIL FROM:<alice@corp.test>", 250)?;
        self.expect("RCPT TO:<archive@bcc.test>", 250)?;
        self.expect("DATA", 354)?;
        // The generated lines never start with a dot: no stuffing needed.
        self.writer.write_all(raw)?;
        self.writer.write_all(b".\r\n")?;
        Ok(self.reply()? == 250)
    }
}

/// Sends `mails` one after another over one session until the first failure; returns the
/// Message-IDs acknowledged with 250, counting them in `acks` as they come.
fn send_until_failure(
    port: u16,
    protocol: Protocol,
    mails: Vec<Mail>,
    acks: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let Ok(mut client) = Client::connect(port, protocol) else {
        return acked;
    };
    for m in mails {
        match client.send(&m.raw) {
            Ok(true) => {
                acked.push(m.id);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(false) | Err(_) => break,
        }
    }
    acked
}

/// Postfix's load generator at `port`. Its messages carry `Message-Id: <pid.fd.count@host>`
/// headers, distinct within one run, and bodies of `X` lines.
fn smtp_source(port: u16, protocol: Protocol, messages: usize, log: &Path) -> Child {
    let program = support::require("smtp-source", "postfix");
    let log = std::fs::File::create(log).expect("create the smtp-source log");
    let mut command = Command::new(program);
    if protocol == Protocol::Lmtp {
        command.arg("-L");
    }
    command
        .args(["-s", "10", "-m", &messages.to_string(), "-l", "4096"])
        .args(["-f", "a@x.test", "-t", "archive@bcc.test"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone a file handle"))
        .stderr(log)
        .spawn()
        .expect("spawn smtp-source")
}

/// Waits for a child that should end on its own; kills it if it does not.
fn finish(child: &mut Child, grace: Duration) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().expect("poll a child").is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn kill_during_load(protocol: Protocol) {
    const CLIENTS: usize = 4;
    const PER_CLIENT: usize = 1500;
    const SOURCE_MESSAGES: usize = 3000;
    const KILL_AFTER: usize = 300;

    let mut daemon = Daemon::start("");
    let port = match protocol {
        Protocol::Smtp => daemon.ports().smtp,
        Protocol::Lmtp => daemon.ports().lmtp,
    };
    let tag = format!("{protocol:?}").to_lowercase();
    let mut source = smtp_source(
        port,
        protocol,
        SOURCE_MESSAGES,
        &daemon.dir().join("smtp-source.log"),
    );

    let acks = Arc::new(AtomicUsize::new(0));
    let clients: Vec<JoinHandle<Vec<String>>> = (0..CLIENTS)
        .map(|c| {
            let mails: Vec<Mail> = (0..PER_CLIENT)
                .map(|n| mail(&format!("{tag}{c}"), n, MESSAGE_SIZE))
                .collect();
            let acks = acks.clone();
            std::thread::spawn(move || send_until_failure(port, protocol, mails, acks))
        })
        .collect();
    wait_for("acknowledgements before the kill", || {
        acks.load(Ordering::SeqCst) >= KILL_AFTER || clients.iter().all(|c| c.is_finished())
    });
    let source_running = source.try_wait().expect("poll smtp-source").is_none();
    let clients_running = clients.iter().filter(|c| !c.is_finished()).count();
    daemon.kill9();

    let acked: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect();
    finish(&mut source, Duration::from_secs(30));
    assert!(source_running, "smtp-source had finished before the kill");
    assert_eq!(
        clients_running, CLIENTS,
        "every client still sending at the kill"
    );
    assert!(acked.len() >= KILL_AFTER && acked.len() < CLIENTS * PER_CLIENT);

    daemon.launch();
    let all = stored_ids(&daemon);
    // smtp-source's messages carry Message-IDs too, so every stored one is checked.
    let stored = unique_ids(&all);
    assert_all_stored(&acked, &stored, &tag);
    let from_source = stored
        .iter()
        .filter(|id| !id.ends_with("@crash.test"))
        .count();
    assert!(
        from_source > 0,
        "no smtp-source message was stored: the load did not run"
    );
    assert!(
        from_source <= SOURCE_MESSAGES,
        "{from_source} smtp-source messages stored"
    );
    assert_eq!(stats(&daemon)["messages"], all.len() as u64);
    assert_log_clean(&daemon);
}

#[test]
fn acknowledged_smtp_messages_survive_kill9_under_load() {
    kill_during_load(Protocol::Smtp);
}

#[test]
fn acknowledged_lmtp_messages_survive_kill9_under_load() {
    kill_during_load(Protocol::Lmtp);
}
