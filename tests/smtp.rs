//! The SMTP and LMTP listeners of a real `threadsd serve`, driven over loopback by real
//! clients (swaks, curl, Python's smtplib and ssl, openssl) and, for the bytes no client
//! sends, by a raw socket: what each one is answered, code and enhanced code, and what the
//! store holds afterwards.

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Daemon, SmtpClient, require, set, sorted, status, strings};

/// The journaling address the tests deliver to; as an envelope recipient it is one of
/// threadsd's own addresses, so it never counts as a party.
const ARCHIVE: &str = "archive@bcc.test";

// ---------------------------------------------------------------------------------------
// Helpers

/// Everything a program printed, standard output then standard error.
fn transcript(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs swaks and returns its transcript; panics with it unless swaks succeeded.
fn swaks_ok(args: &[&str]) -> String {
    let output = support::swaks(args);
    let text = transcript(&output);
    assert!(
        output.status.success(),
        "swaks {args:?} failed ({}):\n{text}",
        output.status
    );
    text
}

/// Runs swaks where the server is to refuse; returns the transcript.
fn swaks_refused(args: &[&str]) -> String {
    let output = support::swaks(args);
    let text = transcript(&output);
    assert!(
        !output.status.success(),
        "swaks {args:?} succeeded:\n{text}"
    );
    text
}

fn messages(daemon: &Daemon) -> Vec<Value> {
    let list = daemon.cli_json(&["message", "list", "--json"]);
    list.as_array()
        .expect("message list prints an array")
        .clone()
}

/// The one stored message; panics when there are none or several.
fn only_message(daemon: &Daemon) -> Value {
    let mut list = messages(daemon);
    assert_eq!(list.len(), 1, "expected one stored message: {list:#?}");
    list.remove(0)
}

/// Connects, takes the greeting and greets with `hello` (EHLO or LHLO); returns the
/// client and the answer to the greeting.
fn greet(port: u16, hello: &str) -> (SmtpClient<TcpStream>, String) {
    let mut c = SmtpClient::connect(port);
    let greeting = c.reply();
    assert_eq!(status(&greeting), "220", "{greeting}");
    let answer = c.command(&format!("{hello} client.test"));
    assert_eq!(status(&answer), "250", "{answer}");
    (c, answer)
}

fn ehlo(port: u16) -> SmtpClient<TcpStream> {
    greet(port, "EHLO").0
}

/// A small message with the given Message-ID and subject.
fn message(id: &str, subject: &str) -> String {
    format!(
        "From: alice@corp.test\r\nTo: bob@partner.test\r\nSubject: {subject}\r\n\
         Message-Id: <{id}>\r\n\r\n{subject}, the body\r\n"
    )
}

/// Sends one message over an open SMTP session, pipelining the envelope, and returns the
/// reply to its data.
fn send_message(c: &mut SmtpClient<TcpStream>, text: &str) -> String {
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nDATA\r\n"
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(status(&c.reply()), "354");
    c.send(format!("{text}.\r\n"));
    c.reply()
}

fn python(script: &str, args: &[&str]) -> String {
    let python = require("python3", "python3");
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python failed ({}):\n{}",
        output.status,
        transcript(&output)
    );
    String::from_utf8(output.stdout).expect("python prints UTF-8")
}

/// The generated self-signed certificate, for clients that verify it.
fn generated_cert(daemon: &Daemon) -> String {
    let path = daemon.data_dir().join("tls/cert.pem");
    assert!(
        path.exists(),
        "no generated certificate at {}",
        path.display()
    );
    path.display().to_string()
}

fn write_file(path: &Path, bytes: impl AsRef<[u8]>) -> String {
    std::fs::write(path, bytes).expect("write a test file");
    path.display().to_string()
}

/// Connects to `port` from another loopback address, a second client as far as
/// per-client limits go.
fn connect_from(source: [u8; 4], port: u16) -> SmtpClient<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a tokio runtime");
    let stream = runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
        socket
            .bind(SocketAddr::from((source, 0)))
            .expect("bind a loopback source address");
        socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("connect")
    });
    let stream = stream.into_std().expect("a std socket");
    stream.set_nonblocking(false).expect("a blocking socket");
    SmtpClient::over_tcp(stream)
}

/// Sends `name` (`HUP`, `TERM`) to the daemon with kill(1).
fn signal(daemon: &Daemon, name: &str) {
    let kill = require("kill", "procps");
    let pid = daemon.pid().expect("a running daemon").to_string();
    let status = Command::new(kill)
        .arg(format!("-{name}"))
        .arg(pid)
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// The value of one sample line of the metrics text, such as
/// `threadsd_sessions_total{listener="smtp"}`.
fn metric(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------
// Delivery with real clients

#[test]
fn swaks_over_plain_smtp_is_stored_with_its_envelope() {
    let daemon = Daemon::start("");
    let t = swaks_ok(&[
        "--server",
        &daemon.smtp_addr(),
        "--ehlo",
        "client.test",
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "--header",
        "To: Bob <bob@partner.test>",
        "--header",
        "Subject: plain smtp",
        "--header",
        "Message-Id: <plain-1@corp.test>",
        "--body",
        "sent over plain smtp",
    ]);
    assert!(
        t.contains("<-  220 threadsd.test ESMTP threadsd ready"),
        "{t}"
    );
    assert!(t.contains("<-  250 2.1.0 sender OK"), "{t}");
    assert!(t.contains("<-  250 2.1.5 recipient OK"), "{t}");
    assert!(t.contains("<-  250 2.0.0 stored as "), "{t}");

    let m = only_message(&daemon);
    assert_eq!(m["message_id"], "plain-1@corp.test");
    assert_eq!(m["subject"], "plain smtp");
    assert_eq!(strings(&m["projects"]), ["Inbox"]);
    assert_eq!(
        strings(&m["parties"]),
        ["alice@corp.test", "bob@partner.test"]
    );
    assert_eq!(
        (&m["journal"], &m["copies"]),
        (&Value::from(false), &1.into())
    );
    let detail = daemon.show(&m);
    let [source] = &detail["sources"].as_array().unwrap()[..] else {
        panic!("one source: {detail:#}")
    };
    assert_eq!(source["kind"], "smtp");
    assert_eq!(source["mail_from"], "alice@corp.test");
    assert_eq!(strings(&source["recipients"]), [ARCHIVE]);
    assert!(
        source["detail"].as_str().unwrap().contains("(client.test)"),
        "{source}"
    );
    let stored = String::from_utf8(daemon.raw(&m)).unwrap();
    assert!(
        stored.contains("\r\n\r\nsent over plain smtp\r\n"),
        "{stored}"
    );

    // The same message by another route is a copy of the stored one, not a second record.
    let mut c = greet(daemon.ports().lmtp, "LHLO").0;
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nDATA\r\n"
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(status(&c.reply()), "354");
    c.send(format!("Received: from another.route\r\n{stored}.\r\n"));
    let id = m["id"].as_u64().unwrap();
    assert_eq!(
        c.reply(),
        format!("250 2.0.0 <{ARCHIVE}> stored as {id} (duplicate)\r\n")
    );
    let m = only_message(&daemon);
    assert_eq!(m["copies"], 2);
    let kinds: BTreeSet<String> = daemon.show(&m)["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, set(&["lmtp", "smtp"]));
}

#[test]
fn starttls_implicit_tls_and_curl_deliver() {
    let daemon = Daemon::start("");
    let smtp = daemon.smtp_addr();
    let smtps = format!("127.0.0.1:{}", daemon.ports().smtps);
    let common = |id: &'static str| ["--from", "alice@corp.test", "--to", ARCHIVE, "--header", id];

    let mut args = vec!["--server", &smtp, "--tls"];
    args.extend(common("Message-Id: <starttls@corp.test>"));
    let t = swaks_ok(&args);
    assert!(t.contains("<-  220 2.0.0 ready to start TLS"), "{t}");
    assert!(t.contains("=== TLS started"), "{t}");
    assert!(t.contains("<~  250 2.0.0 stored as "), "{t}");
    // STARTTLS is not offered again inside TLS.
    let after_tls = &t[t.find("=== TLS started").unwrap()..];
    assert!(!after_tls.contains("STARTTLS"), "{t}");

    let mut args = vec!["--server", &smtps, "--tlsc"];
    args.extend(common("Message-Id: <smtps@corp.test>"));
    let t = swaks_ok(&args);
    assert!(
        t.contains("<~  220 threadsd.test ESMTP threadsd ready"),
        "{t}"
    );
    assert!(t.contains("<~  250 2.0.0 stored as "), "{t}");

    let cert = generated_cert(&daemon);
    let curl = require("curl", "curl");
    for (url, tls, id) in [
        (format!("smtp://{smtp}"), None, "curl-plain"),
        (
            format!("smtp://{smtp}"),
            Some("--ssl-reqd"),
            "curl-starttls",
        ),
        (format!("smtps://{smtps}"), Some("--ssl-reqd"), "curl-smtps"),
    ] {
        let file = daemon.dir().join(format!("{id}.eml"));
        let file = write_file(&file, message(&format!("{id}@corp.test"), id));
        let mut command = Command::new(&curl);
        command
            .args(["-sS", "-v", "--mail-from", "alice@corp.test"])
            .args(["--mail-rcpt", ARCHIVE, "--upload-file", &file])
            .args(["--cacert", &cert])
            .arg(&url);
        if let Some(flag) = tls {
            command.arg(flag);
        }
        let output = command.output().expect("run curl");
        let text = transcript(&output);
        assert!(output.status.success(), "curl {url} failed:\n{text}");
        assert!(text.contains("< 250 2.0.0 stored as "), "{text}");
        // With TLS, curl checked the generated certificate against its IP address name.
        assert_eq!(
            text.contains("SSL connection using"),
            tls.is_some(),
            "{text}"
        );
    }

    let ids: BTreeSet<String> = messages(&daemon)
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    let expected = set(&[
        "starttls@corp.test",
        "smtps@corp.test",
        "curl-plain@corp.test",
        "curl-starttls@corp.test",
        "curl-smtps@corp.test",
    ]);
    assert_eq!(ids, expected);
}

#[test]
fn untrusted_clients_authenticate_over_tls_with_a_relay_account() {
    let daemon = Daemon::start("[smtp]\nallow_networks = []\nmax_errors = 3\n");
    let added = daemon.cli_stdin(
        &["relay", "add", "mx-relay", "--password-stdin"],
        b"correct horse battery",
    );
    assert!(added.status.success(), "{}", transcript(&added));
    let smtp = daemon.smtp_addr();
    let smtps = format!("127.0.0.1:{}", daemon.ports().smtps);

    // In the clear, AUTH is neither offered nor taken, and MAIL points at STARTTLS.
    let (mut c, answer) = greet(daemon.ports().smtp, "EHLO");
    assert!(answer.contains("250-STARTTLS\r\n"), "{answer}");
    assert!(!answer.contains("AUTH"), "{answer}");
    // base64 of "\0mx-relay\0correct horse battery"
    let plain = "AG14LXJlbGF5AGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==";
    c.expect(&format!("AUTH PLAIN {plain}"), "538 5.7.11");
    c.expect("MAIL FROM:<alice@corp.test>", "530 5.7.0");
    c.expect("QUIT", "221 2.0.0");

    let base = ["--from", "alice@corp.test", "--to", ARCHIVE];
    let with = |extra: &[&'static str]| {
        let mut args: Vec<&str> = vec!["--server", &smtp, "--tls"];
        args.extend(base);
        args.extend(extra);
        args
    };
    let t = swaks_refused(&with(&[]));
    assert!(t.contains("<~  250-AUTH PLAIN LOGIN"), "{t}");
    assert!(t.contains("<~* 530 5.7.0 authentication required"), "{t}");

    let wrong = [
        "-a",
        "PLAIN",
        "-au",
        "mx-relay",
        "-ap",
        "wrong horse battery",
    ];
    let t = swaks_refused(&with(&wrong));
    assert!(
        t.contains("<~* 535 5.7.8 authentication credentials invalid"),
        "{t}"
    );
    let unknown = [
        "-a",
        "LOGIN",
        "-au",
        "nobody",
        "-ap",
        "correct horse battery",
    ];
    let t = swaks_refused(&with(&unknown));
    assert!(t.contains("<~* 535 5.7.8"), "{t}");
    assert!(messages(&daemon).is_empty());

    let right = [
        "-a",
        "PLAIN",
        "-au",
        "mx-relay",
        "-ap",
        "correct horse battery",
    ];
    let mut args = with(&right);
    args.extend(["--header", "Message-Id: <auth-plain@corp.test>"]);
    let t = swaks_ok(&args);
    assert!(t.contains("<~  235 2.7.0 authentication succeeded"), "{t}");
    assert!(t.contains("<~  250 2.0.0 stored as "), "{t}");

    let mut args = vec!["--server", &smtps, "--tlsc"];
    args.extend(base);
    args.extend([
        "-a",
        "LOGIN",
        "-au",
        "mx-relay",
        "-ap",
        "correct horse battery",
    ]);
    args.extend(["--header", "Message-Id: <auth-login@corp.test>"]);
    let t = swaks_ok(&args);
    assert!(t.contains("<~  334 VXNlcm5hbWU6"), "{t}");
    assert!(t.contains("<~  235 2.7.0 authentication succeeded"), "{t}");
    assert!(t.contains("<~  250 2.0.0 stored as "), "{t}");

    let list = messages(&daemon);
    let ids: BTreeSet<String> = list
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, set(&["auth-plain@corp.test", "auth-login@corp.test"]));
    for m in &list {
        let detail = daemon.show(m);
        let source = &detail["sources"][0];
        assert!(
            source["detail"]
                .as_str()
                .unwrap()
                .ends_with("authenticated as mx-relay"),
            "{source}"
        );
    }

    // Guessing is cut short: failed AUTH counts towards max_errors.
    let mut c = starttls(daemon.ports().smtp, Path::new(&generated_cert(&daemon)));
    let guess = "AUTH PLAIN AG14LXJlbGF5AHdyb25nIGhvcnNlIGJhdHRlcnk=";
    c.expect(guess, "535 5.7.8");
    c.expect(guess, "535 5.7.8");
    c.expect(guess, "535 5.7.8");
    assert_eq!(
        c.reply(),
        "421 4.7.0 too many errors, closing connection\r\n"
    );
}

/// swaks delivering one message from alice over LMTP on the Unix socket at `socket`;
/// its transcript.
fn lmtp_over_socket(socket: &Path, to: &str, message_id: &str) -> String {
    let socket = socket.display().to_string();
    let header = format!("Message-Id: <{message_id}>");
    swaks_ok(&[
        "--protocol",
        "LMTP",
        "--socket",
        &socket,
        "--from",
        "alice@corp.test",
        "--to",
        to,
        "--header",
        &header,
    ])
}

/// LMTP on a Unix socket, as an MTA on the same host delivers to it: the socket is
/// group-writable only, its clients are trusted though no network is, and every recipient
/// gets its own answer.
#[test]
fn lmtp_over_a_unix_socket_takes_mail_from_local_clients() {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};

    let run = tempfile::tempdir().expect("a directory for the socket");
    // The daemon creates the missing directory, as /run/threadsd is missing at first boot.
    let socket = run.path().join("threadsd/lmtp.sock");
    let daemon = Daemon::start(&format!(
        "[smtp]\nallow_networks = []\n[lmtp]\nlisten = [\"unix:{}\"]\n",
        socket.display()
    ));
    let meta = std::fs::metadata(&socket).expect("the LMTP socket exists");
    assert!(meta.file_type().is_socket(), "{meta:?}");
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);

    let to = format!("{ARCHIVE},archive+Legal@bcc.test");
    let t = lmtp_over_socket(&socket, &to, "unix-lmtp@corp.test");
    for r in [ARCHIVE, "archive+Legal@bcc.test"] {
        assert!(
            t.contains(&format!("<-  250 2.0.0 <{r}> stored as ")),
            "{t}"
        );
    }
    let m = only_message(&daemon);
    assert_eq!(m["message_id"], "unix-lmtp@corp.test");
    assert_eq!(sorted(&m["projects"]), set(&["Inbox", "Legal"]));
    let detail = daemon.show(&m);
    let sources = detail["sources"].as_array().unwrap();
    assert!(sources.iter().all(|s| s["kind"] == "lmtp"), "{detail:#}");

    // The same daemon refuses SMTP over TCP from loopback, which no network admits.
    let mut c = ehlo(daemon.ports().smtp);
    c.expect("MAIL FROM:<alice@corp.test>", "530 5.7.0");

    // A clean stop removes the socket file.
    let mut daemon = daemon;
    daemon.stop();
    assert!(!socket.exists(), "the socket outlived the daemon");
}

/// The LMTP socket's mode and group are configurable, so that an MTA running as another
/// user (Postfix's LMTP client runs as `postfix`) can connect without joining the daemon's
/// group.
#[test]
fn lmtp_socket_mode_and_group_come_from_the_configuration() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let getent = require("getent", "libc-bin");
    let out = Command::new(getent)
        .args(["group", "mail"])
        .output()
        .expect("run getent");
    assert!(out.status.success(), "no group mail: {}", transcript(&out));
    let line = String::from_utf8(out.stdout).expect("getent prints text");
    let gid: u32 = line
        .split(':')
        .nth(2)
        .and_then(|g| g.trim().parse().ok())
        .expect("a gid");

    let run = tempfile::tempdir().expect("a directory for the socket");
    let socket = run.path().join("lmtp.sock");
    let daemon = Daemon::start(&format!(
        "[lmtp]\nlisten = [\"unix:{}\"]\nsocket_mode = \"0620\"\nsocket_group = \"mail\"\n",
        socket.display()
    ));
    let meta = std::fs::metadata(&socket).expect("the LMTP socket exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o620, "{meta:?}");
    assert_eq!(meta.gid(), gid, "{meta:?}");

    let t = lmtp_over_socket(&socket, ARCHIVE, "socket-group@corp.test");
    assert!(t.contains("stored as"), "{t}");
    assert_eq!(
        only_message(&daemon)["message_id"],
        "socket-group@corp.test"
    );
}

/// Authentication is logged with the relay's name and never with a password, in any
/// form a client sends it, even at the most verbose log level.
#[test]
fn auth_is_logged_without_credentials() {
    let daemon = Daemon::start(
        "[log]\nlevel = \"trace\"\n[smtp]\nallow_networks = []\nauth_without_tls = true\n",
    );
    let added = daemon.cli_stdin(
        &["relay", "add", "mx-relay", "--password-stdin"],
        b"correct horse battery",
    );
    assert!(added.status.success(), "{}", transcript(&added));

    let port = daemon.ports().smtp;
    // PLAIN with the right and a wrong password.
    let mut c = ehlo(port);
    c.expect("AUTH PLAIN AG14LXJlbGF5AHdyb25nIGhvcnNl", "535 5.7.8");
    c.expect(
        "AUTH PLAIN AG14LXJlbGF5AGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==",
        "235 2.7.0",
    );
    // LOGIN, step by step: "mx-relay", then "correct horse battery".
    let mut c = ehlo(port);
    c.expect("AUTH LOGIN", "334");
    c.expect("bXgtcmVsYXk=", "334");
    c.expect("Y29ycmVjdCBob3JzZSBiYXR0ZXJ5", "235 2.7.0");
    // LOGIN with the name in the first line and a wrong password.
    let mut c = ehlo(port);
    c.expect("AUTH LOGIN bXgtcmVsYXk=", "334");
    c.expect("d3JvbmcgaG9yc2U=", "535 5.7.8");
    c.expect("QUIT", "221 2.0.0");

    let log = daemon.log();
    assert!(
        log.contains("relay authenticated") && log.contains("auth.identity=\"mx-relay\""),
        "{log}"
    );
    assert!(log.contains("relay authentication failed"), "{log}");
    for secret in [
        "correct horse",
        "wrong horse",
        "Y29ycmVjdCBob3JzZSBiYXR0ZXJ5",
        "d3JvbmcgaG9yc2U",
        "AG14LXJlbGF5AGNvcnJlY3Q",
        "AG14LXJlbGF5AHdyb25n",
        "$argon2id$",
    ] {
        assert!(!log.contains(secret), "{secret:?} in the log:\n{log}");
    }
}

/// Every password check holds argon2id's 19 MiB while it runs. A flood of AUTH attempts
/// over many connections waits its turn instead of holding that for each connection, and
/// a relay with the right password still gets in.
#[test]
fn auth_floods_are_checked_a_few_at_a_time() {
    const ATTEMPTS: usize = 48;
    // Every attempt comes from 127.0.0.1: the per-address lock-out is lifted far above the
    // flood, so that each attempt reaches the password check this test is about.
    let daemon = Daemon::start(
        "[smtp]\nallow_networks = []\nauth_without_tls = true\nmax_auth_failures = 1000\n",
    );
    let added = daemon.cli_stdin(
        &["relay", "add", "mx-relay", "--password-stdin"],
        b"correct horse battery",
    );
    assert!(added.status.success(), "{}", transcript(&added));
    let before = daemon.peak_rss_kib().expect("the daemon's peak RSS");

    let port = daemon.ports().smtp;
    let barrier = Arc::new(std::sync::Barrier::new(ATTEMPTS));
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut c = ehlo(port);
                barrier.wait();
                // base64 of "\0mx-relay\0wrong horse"
                c.command("AUTH PLAIN AG14LXJlbGF5AHdyb25nIGhvcnNl")
            })
        })
        .collect();
    // A relay that knows its password, sent in the middle of the flood.
    let (mut c, answer) = greet(port, "EHLO");
    assert!(answer.contains("250-AUTH PLAIN LOGIN"), "{answer}");
    let right = c.command("AUTH PLAIN AG14LXJlbGF5AGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==");
    assert_eq!(status(&right), "235 2.7.0", "{right}");
    for attempt in attempts {
        let reply = attempt.join().expect("an AUTH attempt");
        assert_eq!(status(&reply), "535 5.7.8", "{reply}");
    }

    let grew_mib = daemon
        .peak_rss_kib()
        .expect("the daemon's peak RSS")
        .saturating_sub(before)
        / 1024;
    // The daemon checks on one thread per core, at most four, each keeping about one
    // check's memory (19 MiB) with its allocator's slack; all at once, 48 checks would
    // hold over 900 MiB.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4) as u64;
    let allowed = 100 * threads + 50;
    assert!(
        grew_mib < allowed,
        "{ATTEMPTS} concurrent AUTH attempts grew the daemon by {grew_mib} MiB (at most \
         {allowed} MiB for {threads} checking threads)"
    );
}

/// A password guesser that reconnects keeps its count: past `max_auth_failures` from one
/// address, AUTH from it is refused without a check until the window ends, while other
/// addresses and the refused session itself go on.
#[test]
fn repeated_auth_failures_lock_the_address_out_until_the_window_ends() {
    const WINDOW: Duration = Duration::from_secs(10);
    let daemon = Daemon::start(&format!(
        "[smtp]\nallow_networks = []\nauth_without_tls = true\nmax_auth_failures = 2\n\
         auth_failure_window = \"{}s\"\n",
        WINDOW.as_secs()
    ));
    let added = daemon.cli_stdin(
        &["relay", "add", "mx-relay", "--password-stdin"],
        b"correct horse battery",
    );
    assert!(added.status.success(), "{}", transcript(&added));
    let smtp = daemon.smtp_addr();
    let with_password = |password: &'static str, id: &'static str| {
        let mut args: Vec<&str> = vec!["--server", &smtp, "--from", "alice@corp.test"];
        args.extend(["--to", ARCHIVE, "-a", "PLAIN", "-au", "mx-relay"]);
        args.extend(["-ap", password, "--header", id]);
        args
    };

    let first_failure = Instant::now();
    for _ in 0..2 {
        let t = swaks_refused(&with_password(
            "wrong horse",
            "Message-Id: <guess@corp.test>",
        ));
        assert!(t.contains("<** 535 5.7.8"), "{t}");
    }
    let right = with_password("correct horse battery", "Message-Id: <locked@corp.test>");
    let t = swaks_refused(&right);
    assert!(
        t.contains("<** 454 4.7.0 too many failed authentications from your address"),
        "{t}"
    );
    // The refused session goes on; another address is not affected.
    let port = daemon.ports().smtp;
    let mut c = ehlo(port);
    c.expect(
        "AUTH PLAIN AG14LXJlbGF5AGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==",
        "454 4.7.0",
    );
    c.expect("NOOP", "250 2.0.0");
    let mut other = connect_from([127, 0, 0, 2], port);
    assert_eq!(status(&other.reply()), "220");
    other.expect("EHLO client.test", "250");
    other.expect(
        "AUTH PLAIN AG14LXJlbGF5AGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==",
        "235 2.7.0",
    );
    assert!(
        first_failure.elapsed() < WINDOW,
        "the lock-out checks took longer than the window; nothing above was tested"
    );
    assert!(messages(&daemon).is_empty());

    std::thread::sleep(WINDOW.saturating_sub(first_failure.elapsed()) + Duration::from_millis(200));
    let t = swaks_ok(&with_password(
        "correct horse battery",
        "Message-Id: <after-window@corp.test>",
    ));
    assert!(t.contains("<-  235 2.7.0"), "{t}");
    assert_eq!(
        only_message(&daemon)["message_id"],
        "after-window@corp.test"
    );

    assert!(
        daemon
            .log()
            .contains("relay authentication refused: too many failures from this address")
    );
    let text = daemon.metrics();
    let value = |outcome: &str| {
        let sample = format!("threadsd_smtp_auth_total{{listener=\"smtp\",outcome=\"{outcome}\"}}");
        metric(&text, &sample).unwrap_or_else(|| panic!("no {sample}:\n{text}"))
    };
    assert_eq!(value("failure"), 2.0, "{text}");
    assert_eq!(value("locked_out"), 2.0, "{text}");
    assert_eq!(value("success"), 2.0, "{text}");
}

#[test]
fn lmtp_answers_each_recipient_and_routes_sub_addresses_to_projects() {
    let daemon = Daemon::start("[smtp]\naccept_recipients = [\"threadsd@bcc.test\"]\n");
    let recipients = [
        "threadsd+Clients.Acme@bcc.test",
        "threadsd+Sales@bcc.test",
        "threadsd@bcc.test",
    ];
    let to = recipients.join(",");
    let t = swaks_ok(&[
        "--protocol",
        "LMTP",
        "--server",
        &daemon.lmtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        &to,
        "--header",
        "To: bob@partner.test",
        "--header",
        "Message-Id: <lmtp-1@corp.test>",
    ]);
    assert!(
        t.contains("<-  220 threadsd.test LMTP threadsd ready"),
        "{t}"
    );
    for r in recipients {
        assert!(
            t.contains(&format!("<-  250 2.0.0 <{r}> stored as ")),
            "{t}"
        );
    }

    let m = only_message(&daemon);
    assert_eq!(m["message_id"], "lmtp-1@corp.test");
    assert_eq!(
        sorted(&m["projects"]),
        set(&["Clients/Acme", "Inbox", "Sales"])
    );
    // The sub-addressed recipients are threadsd's own, not parties.
    assert_eq!(
        strings(&m["parties"]),
        ["alice@corp.test", "bob@partner.test"]
    );
    let listed = daemon.cli_json(&["message", "list", "--project", "Clients/Acme", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let detail = daemon.show(&m);
    let sources = detail["sources"].as_array().unwrap();
    assert!(sources.iter().all(|s| s["kind"] == "lmtp"), "{detail:#}");

    // Refused recipients get their 550 at RCPT and no reply after the data; LMTP without
    // an accepted recipient is 503 (RFC 2033 §4.2).
    let mut c = greet(daemon.ports().lmtp, "LHLO").0;
    c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
    c.expect("RCPT TO:<stranger@bcc.test>", "550 5.1.1");
    c.expect("DATA", "503 5.5.1");
    c.expect("RCPT TO:<threadsd+Legal@bcc.test>", "250 2.1.5");
    c.expect("RCPT TO:<someone@example.com>", "550 5.1.1");
    c.expect("RCPT TO:<threadsd@bcc.test>", "250 2.1.5");
    c.expect("DATA", "354");
    c.send(format!(
        "{}.\r\n",
        message("lmtp-2@corp.test", "two of four")
    ));
    let first = c.reply();
    assert!(
        first.starts_with("250 2.0.0 <threadsd+Legal@bcc.test> stored as "),
        "{first}"
    );
    let second = c.reply();
    assert!(
        second.starts_with("250 2.0.0 <threadsd@bcc.test> stored as "),
        "{second}"
    );
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");
    assert!(c.closed());
    let list = messages(&daemon);
    let m = list
        .iter()
        .find(|m| m["message_id"] == "lmtp-2@corp.test")
        .expect("the second message");
    assert_eq!(sorted(&m["projects"]), set(&["Inbox", "Legal"]));
}

#[test]
fn bdat_chunks_are_stored_as_sent() {
    let daemon = Daemon::start("");
    let (mut c, answer) = greet(daemon.ports().smtp, "EHLO");
    assert!(answer.contains("250-CHUNKING\r\n"), "{answer}");

    // Two chunks, the second LAST; BDAT data has no dot handling, so a lone dot line and
    // what follows it are message text.
    let head = "From: alice@corp.test\r\nTo: bob@partner.test\r\nSubject: chunked\r\n\
                Message-Id: <bdat-1@corp.test>\r\n\r\n";
    let tail = "a line\r\n.\r\nMAIL FROM:<mallory@evil.test>\r\nthe end\r\n";
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\n\
         BDAT {}\r\n{head}BDAT {} LAST\r\n{tail}",
        head.len(),
        tail.len()
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(
        c.reply(),
        format!("250 2.0.0 {} octets received\r\n", head.len())
    );
    let stored = c.reply();
    assert!(stored.starts_with("250 2.0.0 stored as "), "{stored}");

    // BDAT 0 LAST ends a message whose text came in earlier chunks.
    let whole = message("bdat-2@corp.test", "ended by an empty chunk");
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nBDAT {}\r\n{whole}BDAT 0 LAST\r\n",
        whole.len()
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(
        c.reply(),
        format!("250 2.0.0 {} octets received\r\n", whole.len())
    );
    let stored = c.reply();
    assert!(stored.starts_with("250 2.0.0 stored as "), "{stored}");

    // A refused BDAT still has its octets read (RFC 3030 §2): "NOOP\r\n" here is chunk
    // data, dropped, and not a command.
    c.expect("BDAT 6\r\nNOOP", "503 5.5.1");
    assert_eq!(c.command("NOOP"), "250 2.0.0 OK\r\n");
    // A transaction that started with BDAT may not switch to DATA (RFC 3030 §3).
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nBDAT 3\r\nabc"
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(c.reply(), "250 2.0.0 3 octets received\r\n");
    c.expect("DATA", "503 5.5.1");
    c.expect("RSET", "250 2.0.0");
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");

    let list = messages(&daemon);
    assert_eq!(list.len(), 2, "{list:#?}");
    for m in &list {
        let expected = match m["message_id"].as_str().unwrap() {
            "bdat-1@corp.test" => format!("{head}{tail}"),
            "bdat-2@corp.test" => whole.clone(),
            other => panic!("unexpected message {other}"),
        };
        assert_eq!(String::from_utf8(daemon.raw(m)).unwrap(), expected);
    }
}

#[test]
fn pipelined_transactions_are_answered_in_order() {
    let daemon = Daemon::start("");
    let t = swaks_ok(&[
        "--pipeline",
        "--server",
        &daemon.smtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        &format!("{ARCHIVE},archive+Legal@bcc.test"),
        "--header",
        "Message-Id: <pipelined-swaks@corp.test>",
    ]);
    assert!(t.contains("<-  250-PIPELINING"), "{t}");
    assert!(t.contains("<-  250 2.0.0 stored as "), "{t}");

    // RFC 2920 §3.1: the envelope in one group, then the message text with the next
    // transaction's envelope in the next.
    let mut c = ehlo(daemon.ports().smtp);
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nRCPT TO:<nobody>\r\nDATA\r\n"
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(status(&c.reply()), "501 5.1.3");
    assert_eq!(status(&c.reply()), "354");
    c.send(format!(
        "{}.\r\nMAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nDATA\r\n",
        message("pipelined-1@corp.test", "first")
    ));
    assert!(c.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(status(&c.reply()), "354");
    c.send(format!(
        "{}.\r\nQUIT\r\n",
        message("pipelined-2@corp.test", "second")
    ));
    assert!(c.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(c.reply(), "221 2.0.0 bye\r\n");
    assert!(c.closed());

    let ids: BTreeSet<String> = messages(&daemon)
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ids,
        set(&[
            "pipelined-swaks@corp.test",
            "pipelined-1@corp.test",
            "pipelined-2@corp.test"
        ])
    );
}

/// Sends one message with smtplib's low-level calls and prints every reply as JSON.
const SMTPLIB_SEND: &str = r#"
import json, smtplib, sys
port, sender, rcpt, path, options = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
s = smtplib.SMTP("127.0.0.1", int(port), local_hostname="client.test")
s.ehlo()
replies = {"esmtp": sorted(s.esmtp_features)}
code, text = s.mail(sender, options)
replies["mail"] = [code, text.decode()]
code, text = s.rcpt(rcpt)
replies["rcpt"] = [code, text.decode()]
code, text = s.data(open(path, "rb").read())
replies["data"] = [code, text.decode()]
s.quit()
print(json.dumps(replies))
"#;

fn smtplib_send(daemon: &Daemon, sender: &str, name: &str, text: &[u8], options: &[&str]) -> Value {
    let path = write_file(&daemon.dir().join(name), text);
    let port = daemon.ports().smtp.to_string();
    let mut args = vec![port.as_str(), sender, ARCHIVE, path.as_str()];
    args.extend(options);
    serde_json::from_str(&python(SMTPLIB_SEND, &args)).expect("smtplib's replies")
}

#[test]
fn eight_bit_bodies_and_utf8_addresses_are_kept() {
    let daemon = Daemon::start("");

    // An 8-bit Latin-1 body: bytes that are not UTF-8 survive as they came.
    let latin1: &[u8] = b"From: alice@corp.test\r\nTo: bob@partner.test\r\nSubject: latin1\r\n\
        Message-Id: <latin1@corp.test>\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
        Content-Transfer-Encoding: 8bit\r\n\r\nK\xe4se und Br\xf6tchen\r\n";
    let replies = smtplib_send(
        &daemon,
        "alice@corp.test",
        "latin1.eml",
        latin1,
        &["BODY=8BITMIME"],
    );
    let esmtp = sorted(&replies["esmtp"]);
    assert!(
        esmtp.contains("8bitmime") && esmtp.contains("smtputf8"),
        "{replies}"
    );
    assert_eq!(replies["mail"][0], 250, "{replies}");
    assert_eq!(replies["data"][0], 250, "{replies}");

    // SMTPUTF8: UTF-8 in the local part and the domain, of the sender and in the headers.
    let utf8 = "From: Jörg <jörg@bücher.test>\r\nTo: 名前@例え.テスト\r\nCc: zoë@corp.test\r\n\
                Subject: Grüße\r\nMessage-Id: <utf8@bücher.test>\r\n\r\nÄpfel, Birnen\r\n";
    let replies = smtplib_send(
        &daemon,
        "jörg@bücher.test",
        "utf8.eml",
        utf8.as_bytes(),
        &["SMTPUTF8", "BODY=8BITMIME"],
    );
    assert_eq!(replies["mail"], serde_json::json!([250, "2.1.0 sender OK"]));
    assert_eq!(replies["rcpt"][0], 250, "{replies}");
    assert_eq!(replies["data"][0], 250, "{replies}");

    let list = messages(&daemon);
    assert_eq!(list.len(), 2, "{list:#?}");
    for m in &list {
        let bytes = daemon.raw(m);
        match m["message_id"].as_str().unwrap() {
            "latin1@corp.test" => assert_eq!(bytes, latin1),
            "utf8@bücher.test" => {
                assert_eq!(bytes, utf8.as_bytes());
                assert_eq!(m["subject"], "Grüße");
                assert_eq!(
                    sorted(&m["parties"]),
                    set(&["jörg@bücher.test", "zoë@corp.test", "名前@例え.テスト"])
                );
                let detail = daemon.show(m);
                assert_eq!(detail["sources"][0]["mail_from"], "jörg@bücher.test");
            }
            other => panic!("unexpected message {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Refusals

#[test]
fn recipients_outside_accept_recipients_are_refused_and_the_session_goes_on() {
    let daemon = Daemon::start(&format!("[smtp]\naccept_recipients = [\"{ARCHIVE}\"]\n"));

    // A relay attempt through a peer: swaks stops at the refusal.
    let t = swaks_refused(&[
        "--server",
        &daemon.smtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        "bob@example.com",
    ]);
    assert!(
        t.contains("<** 550 5.1.1 recipient not accepted here"),
        "{t}"
    );

    let mut c = ehlo(daemon.ports().smtp);
    c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
    c.expect("RCPT TO:<bob@example.com>", "550 5.1.1");
    c.expect("RCPT TO:<other@bcc.test>", "550 5.1.1");
    c.expect("RCPT TO:<archive@bcc.test.evil.test>", "550 5.1.1");
    c.expect("RCPT TO:<archive+Legal@bcc.test>", "250 2.1.5");
    c.expect("RCPT TO:<ARCHIVE@BCC.TEST>", "250 2.1.5");
    c.expect("DATA", "354");
    c.send(format!(
        "{}.\r\n",
        message("accepted@corp.test", "accepted")
    ));
    assert!(c.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");

    let m = only_message(&daemon);
    assert_eq!(m["message_id"], "accepted@corp.test");
    assert_eq!(sorted(&m["projects"]), set(&["Inbox", "Legal"]));
    let detail = daemon.show(&m);
    assert_eq!(
        detail["sources"][0]["recipients"].as_array().unwrap().len(),
        2
    );
}

#[test]
fn messages_over_the_size_limit_are_refused_and_the_session_goes_on() {
    let daemon = Daemon::start("[smtp]\nmax_message_size = \"1K\"\n");
    let (mut c, answer) = greet(daemon.ports().smtp, "EHLO");
    assert!(answer.contains("250-SIZE 1024\r\n"), "{answer}");

    // RFC 1870 §6: a declared size over the limit is refused at MAIL.
    assert_eq!(
        c.command("MAIL FROM:<alice@corp.test> SIZE=1025"),
        "552 5.3.4 message too big\r\n"
    );
    // An undeclared size over the limit is refused after the data.
    c.expect("MAIL FROM:<alice@corp.test> SIZE=1024", "250 2.1.0");
    c.expect(&format!("RCPT TO:<{ARCHIVE}>"), "250 2.1.5");
    c.expect("DATA", "354");
    let big = format!(
        "{}{}\r\n",
        message("too-big@corp.test", "too big"),
        "x".repeat(70).repeat(20)
    );
    c.send(format!("{big}.\r\n"));
    assert_eq!(c.reply(), "552 5.3.4 message too big\r\n");
    // The transaction is over, the session is not.
    assert_eq!(c.command("NOOP"), "250 2.0.0 OK\r\n");
    c.expect(&format!("RCPT TO:<{ARCHIVE}>"), "503 5.5.1");
    // The same over BDAT.
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nBDAT {} LAST\r\n{big}",
        big.len()
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(c.reply(), "552 5.3.4 message too big\r\n");
    let fits = send_message(&mut c, &message("fits@corp.test", "small enough"));
    assert!(fits.starts_with("250 2.0.0 stored as "), "{fits}");
    // The limit is on the message as received: exactly 1024 octets fit, 1025 do not.
    let at_limit = |id: &str, size: usize| {
        let text = message(id, "at the limit");
        format!("{text}{}\r\n", "=".repeat(size - text.len() - 2))
    };
    let exact = send_message(&mut c, &at_limit("exact@corp.test", 1024));
    assert!(exact.starts_with("250 2.0.0 stored as "), "{exact}");
    let over = send_message(&mut c, &at_limit("one-over@corp.test", 1025));
    assert_eq!(over, "552 5.3.4 message too big\r\n");
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");

    // LMTP refuses it once per recipient.
    let mut c = greet(daemon.ports().lmtp, "LHLO").0;
    c.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nRCPT TO:<archive+Legal@bcc.test>\r\n\
         DATA\r\n"
    ));
    assert_eq!(status(&c.reply()), "250 2.1.0");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(status(&c.reply()), "250 2.1.5");
    assert_eq!(status(&c.reply()), "354");
    c.send(format!("{big}.\r\n"));
    assert_eq!(
        c.reply(),
        format!("552 5.3.4 <{ARCHIVE}> message too big\r\n")
    );
    assert_eq!(
        c.reply(),
        "552 5.3.4 <archive+Legal@bcc.test> message too big\r\n"
    );
    assert_eq!(c.command("NOOP"), "250 2.0.0 OK\r\n");

    let t = swaks_refused(&[
        "--server",
        &daemon.smtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "--body",
        &"y".repeat(2000),
    ]);
    assert!(t.contains("<** 552 5.3.4 message too big"), "{t}");

    let ids: BTreeSet<String> = messages(&daemon)
        .iter()
        .map(|m| m["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, set(&["fits@corp.test", "exact@corp.test"]));
}

#[test]
fn recipients_over_the_limit_get_452_which_is_not_an_error() {
    // Three 452s would close the session if they counted towards max_errors.
    let daemon = Daemon::start("[smtp]\nmax_recipients = 2\nmax_errors = 2\n");
    let mut c = ehlo(daemon.ports().smtp);
    c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
    c.expect("RCPT TO:<archive@bcc.test>", "250 2.1.5");
    c.expect("RCPT TO:<archive+Sales@bcc.test>", "250 2.1.5");
    for extra in ["archive+Legal", "archive+HR", "archive+IT"] {
        assert_eq!(
            c.command(&format!("RCPT TO:<{extra}@bcc.test>")),
            "452 4.5.3 too many recipients\r\n"
        );
    }
    c.expect("DATA", "354");
    c.send(format!(
        "{}.\r\n",
        message("two-rcpts@corp.test", "two recipients")
    ));
    assert!(c.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");

    let m = only_message(&daemon);
    assert_eq!(sorted(&m["projects"]), set(&["Inbox", "Sales"]));
    let detail = daemon.show(&m);
    assert_eq!(
        strings(&detail["sources"][0]["recipients"]),
        ["archive@bcc.test", "archive+Sales@bcc.test"]
    );
}

#[test]
fn protocol_errors_are_answered_and_the_session_goes_on() {
    let daemon = Daemon::start("[smtp]\nmax_errors = 12\n");
    let mut c = SmtpClient::connect(daemon.ports().smtp);
    assert_eq!(c.reply(), "220 threadsd.test ESMTP threadsd ready\r\n");
    assert_eq!(
        c.command("MAIL FROM:<alice@corp.test>"),
        "503 5.5.1 send EHLO first\r\n"
    );
    c.expect("LHLO client.test", "500 5.5.1");
    c.expect("EHLO client.test", "250");
    assert_eq!(
        c.command("FROB the widget"),
        "500 5.5.2 syntax error, command unrecognized\r\n"
    );
    assert_eq!(
        c.command("EXPN staff"),
        "502 5.5.1 command not implemented\r\n"
    );
    c.expect("VRFY bob", "252 2.5.0");
    assert_eq!(c.command("DATA"), "503 5.5.1 send MAIL first\r\n");
    assert_eq!(
        c.command(&format!("RCPT TO:<{ARCHIVE}>")),
        "503 5.5.1 send MAIL first\r\n"
    );
    c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
    c.expect("MAIL FROM:<alice@corp.test>", "503 5.5.1");
    // RFC 5321 §3.3 allows 503 or 554 for DATA without a recipient; SMTP gets 554 here,
    // as RFC 2920 §3.1 expects of a pipelining server (LMTP gets 503).
    assert_eq!(c.command("DATA"), "554 5.5.1 no valid recipients\r\n");
    // RFC 5321 §4.5.3.1.4: an over-long line is refused as a whole.
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_eq!(c.command(&long), "500 5.5.6 line too long\r\n");
    assert_eq!(
        c.command("NOOP\rRSET"),
        "501 5.5.2 bare CR in command line\r\n"
    );
    c.expect("MAIL FROM:<alice@corp.test> FROB=1", "555 5.5.4");

    // A twelfth failure would close it (max_errors); after these eleven it still delivers.
    assert_eq!(c.command("NOOP"), "250 2.0.0 OK\r\n");
    c.expect(&format!("RCPT TO:<{ARCHIVE}>"), "250 2.1.5");
    c.expect("DATA", "354");
    c.send(format!(
        "{}.\r\n",
        message("after-errors@corp.test", "after errors")
    ));
    assert!(c.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");
    assert!(c.closed());
    assert_eq!(
        only_message(&daemon)["message_id"],
        "after-errors@corp.test"
    );
}

#[test]
fn too_many_errors_close_the_session_with_421() {
    let daemon = Daemon::start("[smtp]\nmax_errors = 3\n");
    let mut c = ehlo(daemon.ports().smtp);
    c.expect("FROB 1", "500 5.5.2");
    c.expect("DATA", "503 5.5.1");
    c.expect("FROB 3", "500 5.5.2");
    assert_eq!(
        c.reply(),
        "421 4.7.0 too many errors, closing connection\r\n"
    );
    assert!(c.closed());
}

#[test]
fn connections_over_the_limits_get_421() {
    let wait_idle = |daemon: &Daemon| {
        // The harness's readiness probes hold no connection once their sessions ended.
        let idle = support::wait_until(Duration::from_secs(10), || {
            metric(
                &daemon.metrics(),
                "threadsd_sessions_active{listener=\"smtp\"}",
            ) == Some(0.0)
        });
        assert!(idle, "sessions still open:\n{}", daemon.metrics());
    };
    const REFUSED: &str = "421 4.7.0 too many connections, try again later\r\n";

    let per_client = Daemon::start("[smtp]\nmax_connections_per_client = 2\n");
    wait_idle(&per_client);
    let port = per_client.ports().smtp;
    let mut first = SmtpClient::connect(port);
    let mut second = SmtpClient::connect(port);
    assert_eq!(status(&first.reply()), "220");
    assert_eq!(status(&second.reply()), "220");
    let mut third = SmtpClient::connect(port);
    assert_eq!(third.reply(), REFUSED);
    assert!(third.closed());
    // On the implicit-TLS port the client expects a handshake, so a 421 in the clear
    // would be garbage to it: it is closed unanswered instead.
    let mut tls = SmtpClient::connect(per_client.ports().smtps);
    assert!(tls.closed(), "plaintext sent on the implicit-TLS port");
    // Another client is not held back by this one's connections.
    let mut other = connect_from([127, 0, 0, 2], port);
    assert_eq!(status(&other.reply()), "220");
    assert_eq!(first.command("NOOP"), "250 2.0.0 OK\r\n");
    // A closed connection frees its place.
    assert_eq!(first.command("QUIT"), "221 2.0.0 bye\r\n");
    assert!(first.closed());
    let freed = support::wait_until(Duration::from_secs(5), || {
        let mut again = SmtpClient::connect(port);
        status(&again.reply()) == "220"
    });
    assert!(freed, "the closed session's place was not freed");
    let refused = metric(
        &per_client.metrics(),
        "threadsd_sessions_refused_total{listener=\"smtp\"}",
    );
    assert!(refused >= Some(1.0), "{}", per_client.metrics());

    // The total limit holds across clients and listeners.
    let total = Daemon::start("[smtp]\nmax_connections = 2\n");
    wait_idle(&total);
    let port = total.ports().smtp;
    let mut first = SmtpClient::connect(port);
    let mut second = connect_from([127, 0, 0, 2], port);
    assert_eq!(status(&first.reply()), "220");
    assert_eq!(status(&second.reply()), "220");
    let mut third = connect_from([127, 0, 0, 3], port);
    assert_eq!(third.reply(), REFUSED);
    assert!(third.closed());
    let mut lmtp = SmtpClient::connect(total.ports().lmtp);
    assert_eq!(lmtp.reply(), REFUSED);
    assert_eq!(second.command("NOOP"), "250 2.0.0 OK\r\n");
}

#[test]
fn silent_clients_time_out_with_421() {
    let daemon = Daemon::start("[smtp]\ncommand_timeout = 1\ndata_timeout = 2\n");
    let port = daemon.ports().smtp;
    const TIMEOUT: &str = "421 4.4.2 timeout, closing connection\r\n";

    std::thread::scope(|scope| {
        // Silent after the greeting.
        scope.spawn(|| {
            let mut c = SmtpClient::connect(port);
            assert_eq!(status(&c.reply()), "220");
            let start = Instant::now();
            assert_eq!(c.reply(), TIMEOUT);
            assert!(start.elapsed() >= Duration::from_millis(900));
            assert!(c.closed());
        });
        // Silent in the middle of a command line.
        scope.spawn(|| {
            let mut c = ehlo(port);
            c.send("MAIL FROM:<al");
            let start = Instant::now();
            assert_eq!(c.reply(), TIMEOUT);
            assert!(start.elapsed() >= Duration::from_millis(900));
            assert!(c.closed());
        });
        // Inside the data the data timeout applies: a pause longer than the command
        // timeout is fine, one longer than the data timeout is not.
        scope.spawn(|| {
            let mut c = ehlo(port);
            c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
            c.expect(&format!("RCPT TO:<{ARCHIVE}>"), "250 2.1.5");
            c.expect("DATA", "354");
            c.send("Subject: slow\r\n");
            std::thread::sleep(Duration::from_millis(1500));
            c.send("\r\nstill here\r\n");
            let start = Instant::now();
            assert_eq!(c.reply(), TIMEOUT);
            assert!(start.elapsed() >= Duration::from_millis(1500));
            assert!(c.closed());
        });
        // Silent instead of starting the TLS handshake on the implicit-TLS port: closed
        // after the command timeout, without a word in the clear.
        scope.spawn(|| {
            let mut c = SmtpClient::connect(daemon.ports().smtps);
            let start = Instant::now();
            assert!(c.closed());
            assert!(start.elapsed() >= Duration::from_millis(900));
        });
        // Gone in the middle of a message.
        scope.spawn(|| {
            let mut c = ehlo(port);
            c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
            c.expect(&format!("RCPT TO:<{ARCHIVE}>"), "250 2.1.5");
            c.expect("DATA", "354");
            c.send(message("cut-off@corp.test", "cut off"));
        });
    });
    // Nothing of the unfinished messages was stored.
    assert!(messages(&daemon).is_empty());
}

#[test]
fn excluded_mail_is_acknowledged_and_not_stored() {
    let daemon = Daemon::start("");
    daemon.cli_ok(&["channel", "set", "mallory@spam.test", "--exclude"]);
    let smtp = daemon.smtp_addr();

    let t = swaks_ok(&[
        "--server",
        &smtp,
        "--from",
        "mallory@spam.test",
        "--to",
        ARCHIVE,
    ]);
    assert!(t.contains("<-  250 2.0.0 OK\n"), "{t}");
    assert!(!t.contains("stored as"), "{t}");
    // Excluded as a recipient in the headers, over LMTP with two recipients.
    let t = swaks_ok(&[
        "--protocol",
        "LMTP",
        "--server",
        &daemon.lmtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        &format!("{ARCHIVE},archive+Sales@bcc.test"),
        "--header",
        "Cc: Mallory <mallory@spam.test>",
    ]);
    assert!(
        t.contains(&format!("<-  250 2.0.0 <{ARCHIVE}> OK\n")),
        "{t}"
    );
    assert!(
        t.contains("<-  250 2.0.0 <archive+Sales@bcc.test> OK\n"),
        "{t}"
    );

    let t = swaks_ok(&[
        "--server",
        &smtp,
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "--header",
        "Message-Id: <kept@corp.test>",
    ]);
    assert!(t.contains("stored as"), "{t}");
    assert_eq!(only_message(&daemon)["message_id"], "kept@corp.test");
    let metrics = daemon.metrics();
    let excluded = |listener: &str| {
        let sample =
            format!("threadsd_smtp_messages_total{{listener=\"{listener}\",outcome=\"excluded\"}}");
        metric(&metrics, &sample)
    };
    assert_eq!(excluded("smtp"), Some(1.0), "{metrics}");
    assert_eq!(excluded("lmtp"), Some(1.0), "{metrics}");
}

/// A store that cannot write (here: a file size limit, which fails sled's log writes the
/// way a full disk does) answers 451 4.3.0, keeps the session and the daemon going, and
/// loses nothing it acknowledged before. Once there is room again (the limit lifted, as
/// freeing disk space would) it takes mail again without a restart.
#[test]
fn a_failing_store_answers_451_and_keeps_what_it_acknowledged() {
    let mut daemon = Daemon::configure("");
    daemon.set_file_size_limit_kib(Some(2048));
    daemon.launch();

    // Incompressible text, so that the log reaches the limit after a few hundred.
    let mut noise = 0x9e37_79b9_7f4a_7c15u64;
    let mut filling = |id: &str| {
        let mut text = message(id, "filling");
        for _ in 0..60 {
            for _ in 0..8 {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                text.push_str(&format!("{noise:016x}"));
            }
            text.push_str("\r\n");
        }
        text
    };
    // Sends filling messages until one is refused; returns that reply. Every 250 counts.
    let mut acknowledged = Vec::new();
    let mut fill = |c: &mut SmtpClient<TcpStream>, tag: &str, acknowledged: &mut Vec<String>| {
        for n in 0..5000 {
            let id = format!("{tag}-{n}@corp.test");
            let reply = send_message(c, &filling(&id));
            match status(&reply) {
                "250 2.0.0" => acknowledged.push(id),
                _ => return Some(reply),
            }
        }
        None
    };

    let mut c = ehlo(daemon.ports().smtp);
    let refused = fill(&mut c, "full", &mut acknowledged)
        .expect("the store never failed under a 2 MiB file size limit");
    assert_eq!(status(&refused), "451 4.3.0", "{refused}");
    assert!(
        acknowledged.len() > 10,
        "only {} messages before the failure",
        acknowledged.len()
    );

    // The session goes on and the daemon stays up. While the limit stands, messages keep
    // being refused: a reopened store may take a few more that fit under the limit, but
    // not many (they count as acknowledged).
    c.expect("RSET", "250 2.0.0");
    c.expect("NOOP", "250 2.0.0");
    let before = acknowledged.len();
    let again = fill(&mut c, "still-full", &mut acknowledged)
        .expect("the store took 5000 more messages under the limit");
    assert_eq!(status(&again), "451 4.3.0", "{again}");
    assert!(
        acknowledged.len() - before < 50,
        "{} more messages stored past the limit",
        acknowledged.len() - before
    );
    assert!(daemon.is_running(), "threadsd died:\n{}", daemon.log());
    let failures = metric(&daemon.metrics(), "threadsd_commit_failures_total");
    assert!(failures.is_some_and(|n| n >= 1.0), "{failures:?}");
    assert!(daemon.log().contains("sync failed"), "{}", daemon.log());

    // Room again: within a few seconds the daemon reopens the store and takes mail of any
    // size, in the same session, without a restart.
    daemon.lift_file_size_limit();
    let deadline = Instant::now() + Duration::from_secs(20);
    let resumed = loop {
        let reply = send_message(&mut c, &filling("after-room@corp.test"));
        if status(&reply) == "250 2.0.0" {
            break reply;
        }
        assert_eq!(status(&reply), "451 4.3.0", "{reply}");
        assert!(
            Instant::now() < deadline,
            "still 451 20 s after the limit was lifted:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(resumed.contains("stored as"), "{resumed}");
    assert!(daemon.log().contains("store reopened"), "{}", daemon.log());
    acknowledged.push("after-room@corp.test".to_owned());
    for n in 0..20 {
        let id = format!("roomy-{n}@corp.test");
        let reply = send_message(&mut c, &filling(&id));
        assert_eq!(status(&reply), "250 2.0.0", "{reply}");
        acknowledged.push(id);
    }
    drop(c);

    let stored_ids = |daemon: &Daemon| -> Vec<String> {
        messages(daemon)
            .iter()
            .map(|m| m["message_id"].as_str().expect("message_id").to_string())
            .collect()
    };
    let check = |stored: Vec<String>, when: &str| {
        let unique: BTreeSet<&String> = stored.iter().collect();
        assert_eq!(
            unique.len(),
            stored.len(),
            "a message stored twice ({when})"
        );
        let missing: Vec<&String> = acknowledged
            .iter()
            .filter(|id| !unique.contains(id))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged messages lost ({when}): {missing:?}",
            missing.len(),
            acknowledged.len()
        );
    };
    check(stored_ids(&daemon), "after the reopen");

    // A restart opens the store with every acknowledged message once.
    daemon.stop();
    daemon.set_file_size_limit_kib(None);
    daemon.launch();
    check(stored_ids(&daemon), "after a restart");
    let mut c = ehlo(daemon.ports().smtp);
    let reply = send_message(&mut c, &message("after-restart@corp.test", "fine"));
    assert_eq!(status(&reply), "250 2.0.0", "{reply}");
}

// ---------------------------------------------------------------------------------------
// Smuggling and injection

/// Line-end tricks that some receivers take for the end of the data and others do not.
const SMUGGLING_TRICKS: &[&str] = &[
    "\n.\n",
    "\n.\r\n",
    "\r\n.\n",
    "\r.\r\n",
    "\r\n.\r",
    "\r\n.\r\r\n",
    "\r\n.\r\r\r\n",
    "\r.\n",
    "\n.\r",
    "\r\n\x00.\r\n",
];

#[test]
fn smuggled_terminators_do_not_end_or_split_a_message() {
    let daemon = Daemon::start("");
    for (i, trick) in SMUGGLING_TRICKS.iter().enumerate() {
        let mut c = ehlo(daemon.ports().smtp);
        c.send(format!(
            "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nDATA\r\n"
        ));
        assert_eq!(status(&c.reply()), "250 2.1.0");
        assert_eq!(status(&c.reply()), "250 2.1.5");
        assert_eq!(status(&c.reply()), "354");
        // The whole rest in one write, as an attacker's relay would pass it on.
        c.send(format!(
            "From: alice@corp.test\r\nSubject: smuggle {i}\r\n\
             Message-Id: <smuggle-{i}@corp.test>\r\n\
             \r\nbefore the trick{trick}MAIL FROM:<mallory@evil.test>\r\nRCPT TO:<{ARCHIVE}>\r\n\
             DATA\r\nFrom: mallory@evil.test\r\nSubject: smuggled {i}\r\n\r\nsmuggled body\r\n\
             .\r\nQUIT\r\n"
        ));
        let stored = c.reply();
        assert!(
            stored.starts_with("250 2.0.0 stored as "),
            "trick {trick:?}: {stored}"
        );
        // Nothing answers a smuggled MAIL, RCPT or DATA.
        assert_eq!(c.reply(), "221 2.0.0 bye\r\n", "trick {trick:?}");
        assert!(c.closed(), "trick {trick:?}");
    }

    let list = messages(&daemon);
    assert_eq!(list.len(), SMUGGLING_TRICKS.len(), "{list:#?}");
    for m in &list {
        let subject = m["subject"].as_str().unwrap();
        assert!(subject.starts_with("smuggle "), "a smuggled message: {m:#}");
        assert_eq!(m["from"], "alice@corp.test");
        let bytes = String::from_utf8_lossy(&daemon.raw(m)).into_owned();
        assert!(
            bytes.contains("MAIL FROM:<mallory@evil.test>") && bytes.ends_with("smuggled body\r\n"),
            "{subject}: {bytes:?}"
        );
    }
}

/// Sends STARTTLS with another command in the same write, completes the handshake and
/// prints the replies as JSON: the greeting, EHLO, STARTTLS, then each `after` command over
/// TLS.
const STARTTLS_INJECTION: &str = r#"
import json, socket, ssl, sys
port, cafile, injected, after = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
def reply(f):
    text = ""
    while True:
        line = f.readline().decode()
        text += line
        if len(line) < 4 or line[3] != "-":
            return text
plain = socket.create_connection(("127.0.0.1", port), timeout=10)
f = plain.makefile("rb", buffering=0)
replies = [reply(f)]
plain.sendall(b"EHLO client.test\r\n")
replies.append(reply(f))
plain.sendall(("STARTTLS\r\n" + injected + "\r\n").encode())
replies.append(reply(f))
context = ssl.create_default_context(cafile=cafile)
tls = context.wrap_socket(plain, server_hostname="localhost")
f = tls.makefile("rb", buffering=0)
for command in after:
    tls.sendall((command + "\r\n").encode())
    replies.append(reply(f))
print(json.dumps(replies))
"#;

#[test]
fn commands_pipelined_after_starttls_are_discarded() {
    let daemon = Daemon::start("");
    let port = daemon.ports().smtp.to_string();
    let cert = generated_cert(&daemon);
    let run = |injected: &str, after: &[&str]| -> Vec<String> {
        let mut args = vec![port.as_str(), cert.as_str(), injected];
        args.extend(after);
        let printed = python(STARTTLS_INJECTION, &args);
        serde_json::from_str(&printed).expect("the replies as JSON")
    };

    // RFC 3207 §6: what came with STARTTLS in the clear is not run after the handshake.
    let replies = run("RSET", &["EHLO client.test", "NOOP"]);
    assert_eq!(replies[2], "220 2.0.0 ready to start TLS\r\n");
    assert!(
        replies[3].starts_with("250-threadsd.test greets client.test\r\n"),
        "the injected RSET was answered: {replies:?}"
    );
    assert!(!replies[3].contains("STARTTLS"), "{replies:?}");
    assert_eq!(replies[4], "250 2.0.0 OK\r\n");

    let replies = run(
        "MAIL FROM:<mallory@evil.test>",
        &["EHLO client.test", &format!("RCPT TO:<{ARCHIVE}>"), "QUIT"],
    );
    assert!(
        replies[3].starts_with("250-threadsd.test greets"),
        "{replies:?}"
    );
    assert_eq!(replies[4], "503 5.5.1 send MAIL first\r\n", "{replies:?}");
    assert_eq!(replies[5], "221 2.0.0 bye\r\n");
    assert!(messages(&daemon).is_empty());
}

// ---------------------------------------------------------------------------------------
// Trusted headers, metrics, reload

#[test]
fn original_recipient_headers_count_from_trusted_clients() {
    let text = "From: alice@corp.test\r\nTo: team@corp.test\r\nSubject: original recipients\r\n\
                Message-Id: <orig-rcpt@corp.test>\r\nX-Original-To: hidden@partner.test\r\n\
                Delivered-To: dana@corp.test\r\n\r\nbody\r\n";

    // Loopback is in allow_networks by default: the headers name parties.
    let trusted = Daemon::start("");
    let mut c = ehlo(trusted.ports().smtp);
    assert!(send_message(&mut c, text).starts_with("250 2.0.0 stored as "));
    let m = only_message(&trusted);
    let parties = set(&[
        "alice@corp.test",
        "dana@corp.test",
        "hidden@partner.test",
        "team@corp.test",
    ]);
    assert_eq!(sorted(&m["parties"]), parties);
    let detail = trusted.show(&m);
    assert_eq!(
        sorted(&detail["extra_recipients"]),
        set(&["dana@corp.test", "hidden@partner.test"])
    );

    // From an untrusted network, a client that did not authenticate cannot submit at all,
    // so the headers never arrive from one; a relay that authenticated is trusted.
    let untrusted = Daemon::start("[smtp]\nallow_networks = []\n");
    let added = untrusted.cli_stdin(
        &["relay", "add", "edge", "--password-stdin"],
        b"edge relay password",
    );
    assert!(added.status.success(), "{}", transcript(&added));
    let file = write_file(&untrusted.dir().join("orig.eml"), text);
    let smtps = format!("127.0.0.1:{}", untrusted.ports().smtps);
    let t = swaks_refused(&[
        "--server",
        &smtps,
        "--tlsc",
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "--data",
        &format!("@{file}"),
    ]);
    assert!(t.contains("<~* 530 5.7.0 authentication required"), "{t}");
    let t = swaks_ok(&[
        "--server",
        &smtps,
        "--tlsc",
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "-a",
        "PLAIN",
        "-au",
        "edge",
        "-ap",
        "edge relay password",
        "--data",
        &format!("@{file}"),
    ]);
    assert!(t.contains("<~  250 2.0.0 stored as "), "{t}");
    let m = only_message(&untrusted);
    assert_eq!(sorted(&m["parties"]), parties);
}

#[test]
fn metrics_after_traffic_pass_promtool() {
    let daemon = Daemon::start("[smtp]\nmax_message_size = \"1K\"\n");
    const SENT: usize = 4;
    for n in 0..SENT {
        let id = format!("Message-Id: <metrics-{n}@corp.test>");
        swaks_ok(&[
            "--server",
            &daemon.smtp_addr(),
            "--from",
            "alice@corp.test",
            "--to",
            ARCHIVE,
            "--header",
            &id,
        ]);
    }
    swaks_ok(&[
        "--protocol",
        "LMTP",
        "--server",
        &daemon.lmtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "--header",
        "Message-Id: <metrics-lmtp@corp.test>",
    ]);
    swaks_refused(&[
        "--server",
        &daemon.smtp_addr(),
        "--from",
        "alice@corp.test",
        "--to",
        ARCHIVE,
        "--body",
        &"z".repeat(2000),
    ]);
    assert_eq!(messages(&daemon).len(), SENT + 1);

    let curl = require("curl", "curl");
    let url = format!("http://127.0.0.1:{}/metrics", daemon.ports().metrics);
    let output = Command::new(curl)
        .args(["-sS", "--fail", &url])
        .output()
        .expect("run curl");
    assert!(output.status.success(), "{}", transcript(&output));
    let text = String::from_utf8(output.stdout).expect("metrics are UTF-8");

    let promtool = require("promtool", "prometheus");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    std::io::Write::write_all(&mut check.stdin.take().unwrap(), text.as_bytes())
        .expect("feed promtool");
    let checked = check.wait_with_output().expect("wait for promtool");
    assert!(
        checked.status.success(),
        "promtool check metrics ({}):\n{}\n{text}",
        checked.status,
        transcript(&checked)
    );

    let value =
        |sample: &str| metric(&text, sample).unwrap_or_else(|| panic!("no {sample}:\n{text}"));
    let accepted = value("threadsd_smtp_messages_total{listener=\"smtp\",outcome=\"accepted\"}");
    assert!(accepted >= SENT as f64, "{text}");
    let lmtp = value("threadsd_smtp_messages_total{listener=\"lmtp\",outcome=\"accepted\"}");
    assert!(lmtp >= 1.0, "{text}");
    let rejected = value("threadsd_smtp_messages_total{listener=\"smtp\",outcome=\"refused_5xx\"}");
    assert!(rejected >= 1.0, "{text}");
    assert!(value("threadsd_sessions_total{listener=\"smtp\"}") >= (SENT + 1) as f64);
    let acks = value("threadsd_smtp_ack_duration_seconds_bucket{listener=\"smtp\",le=\"+Inf\"}");
    assert!(acks >= SENT as f64, "{text}");
}

/// Writes a fresh self-signed certificate and key for localhost and 127.0.0.1; returns
/// its SHA-256 fingerprint as openssl prints it.
fn make_certificate(cert: &Path, key: &Path) -> String {
    let openssl = require("openssl", "openssl");
    let output = Command::new(&openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(key)
        .arg("-out")
        .arg(cert)
        .output()
        .expect("run openssl req");
    assert!(output.status.success(), "{}", transcript(&output));
    let output = Command::new(&openssl)
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl x509");
    assert!(output.status.success(), "{}", transcript(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// How openssl s_client reaches TLS on a port.
#[derive(Debug, Clone, Copy)]
enum Tls {
    StartTls,
    Implicit,
}

/// The fingerprint of the certificate a new TLS session on `port` is shown.
fn served_fingerprint(port: u16, tls: Tls) -> String {
    let openssl = require("openssl", "openssl");
    let connect = format!("127.0.0.1:{port}");
    let starttls: &[&str] = match tls {
        Tls::StartTls => &["-starttls", "smtp"],
        Tls::Implicit => &[],
    };
    let hello = Command::new(&openssl)
        .args(["s_client", "-connect", &connect])
        .args(starttls)
        .args(["-servername", "localhost"])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    let mut x509 = Command::new(&openssl)
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl x509");
    std::io::Write::write_all(&mut x509.stdin.take().unwrap(), &hello.stdout)
        .expect("feed openssl x509");
    let output = x509.wait_with_output().expect("wait for openssl x509");
    assert!(
        output.status.success(),
        "no certificate from s_client:\n{}",
        transcript(&hello)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

type TlsClient = SmtpClient<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>;

/// A session on `port` after STARTTLS, trusting only the certificate in `ca`.
fn starttls(port: u16, ca: &Path) -> TlsClient {
    let mut c = ehlo(port);
    assert_eq!(c.command("STARTTLS"), "220 2.0.0 ready to start TLS\r\n");
    let mut roots = rustls::RootCertStore::empty();
    let mut pem = BufReader::new(File::open(ca).expect("open the certificate"));
    for cert in rustls_pemfile::certs(&mut pem) {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a server name");
    let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let mut tls = SmtpClient::new(rustls::StreamOwned::new(connection, c.into_inner()));
    assert!(
        tls.command("EHLO client.test")
            .starts_with("250-threadsd.test greets")
    );
    tls
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_open_sessions() {
    let dir = tempfile::tempdir().expect("a tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let old = make_certificate(&cert, &key);
    let old_pem = std::fs::read(&cert).unwrap();
    let daemon = Daemon::start(&format!(
        "[tls]\ncertificate = \"{}\"\nprivate_key = \"{}\"\n",
        cert.display(),
        key.display()
    ));
    let (port, smtps) = (daemon.ports().smtp, daemon.ports().smtps);
    assert_eq!(served_fingerprint(port, Tls::StartTls), old);
    assert_eq!(served_fingerprint(smtps, Tls::Implicit), old);
    let mut open = starttls(port, &cert);

    let new_dir = tempfile::tempdir().expect("a tempdir");
    let (new_cert, new_key) = (
        new_dir.path().join("cert.pem"),
        new_dir.path().join("key.pem"),
    );
    let new = make_certificate(&new_cert, &new_key);
    assert_ne!(new, old);
    std::fs::copy(&new_key, &key).expect("replace the key");
    std::fs::copy(&new_cert, &cert).expect("replace the certificate");
    signal(&daemon, "HUP");
    let reloaded = support::wait_until(Duration::from_secs(10), || {
        daemon.log().contains("tls certificate reloaded")
    });
    assert!(reloaded, "no reload in the log:\n{}", daemon.log());

    // New sessions, STARTTLS and implicit TLS alike, see the new certificate.
    assert_eq!(served_fingerprint(port, Tls::StartTls), new);
    assert_eq!(served_fingerprint(smtps, Tls::Implicit), new);
    let mut fresh = starttls(port, &new_cert);
    assert_eq!(fresh.command("NOOP"), "250 2.0.0 OK\r\n");

    // The session opened before the reload still runs on the old certificate.
    let peer = open
        .get_ref()
        .conn
        .peer_certificates()
        .expect("a peer certificate")[0]
        .clone();
    let old_der = rustls_pemfile::certs(&mut &old_pem[..])
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(peer, old_der);
    assert_eq!(open.command("NOOP"), "250 2.0.0 OK\r\n");
    open.send(format!(
        "MAIL FROM:<alice@corp.test>\r\nRCPT TO:<{ARCHIVE}>\r\nDATA\r\n"
    ));
    assert_eq!(status(&open.reply()), "250 2.1.0");
    assert_eq!(status(&open.reply()), "250 2.1.5");
    assert_eq!(status(&open.reply()), "354");
    open.send(format!(
        "{}.\r\n",
        message("across-reload@corp.test", "across a reload")
    ));
    assert!(open.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(open.command("QUIT"), "221 2.0.0 bye\r\n");
    assert_eq!(
        only_message(&daemon)["message_id"],
        "across-reload@corp.test"
    );

    // A broken replacement is refused and the working certificate stays.
    std::fs::write(&cert, "not a certificate\n").unwrap();
    signal(&daemon, "HUP");
    let failed = support::wait_until(Duration::from_secs(10), || {
        daemon.log().contains("tls reload failed")
    });
    assert!(failed, "no failed reload in the log:\n{}", daemon.log());
    assert_eq!(served_fingerprint(port, Tls::StartTls), new);
}

// ---------------------------------------------------------------------------------------
// Floods and shutdown

#[test]
fn floods_are_answered_in_order_and_bounded() {
    let daemon = Daemon::start("[smtp]\nmax_message_size = \"1M\"\n");
    let mut c = ehlo(daemon.ports().smtp);

    // Twenty thousand pipelined commands in one go, written while the replies are read,
    // so that neither side waits on a full socket buffer.
    const NOOPS: usize = 20_000;
    let mut writer = c.get_ref().try_clone().expect("clone the socket");
    let flood = std::thread::spawn(move || {
        std::io::Write::write_all(&mut writer, "NOOP\r\n".repeat(NOOPS).as_bytes())
            .expect("write the flood");
    });
    for n in 0..NOOPS {
        let reply = c.reply();
        assert_eq!(reply, "250 2.0.0 OK\r\n", "reply {n}");
    }
    flood.join().expect("the writer");

    // Eight times the size limit of message text: counted and dropped, then 552, and the
    // session is still good for a message that fits.
    c.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");
    c.expect(&format!("RCPT TO:<{ARCHIVE}>"), "250 2.1.5");
    c.expect("DATA", "354");
    let line = format!("{}\r\n", "o".repeat(998));
    let block = line.repeat(1024);
    for _ in 0..8 {
        c.send(&block);
    }
    c.send(".\r\n");
    assert_eq!(c.reply(), "552 5.3.4 message too big\r\n");
    let fits = send_message(&mut c, &message("after-flood@corp.test", "after the flood"));
    assert!(fits.starts_with("250 2.0.0 stored as "), "{fits}");
    assert_eq!(c.command("QUIT"), "221 2.0.0 bye\r\n");
    assert_eq!(only_message(&daemon)["message_id"], "after-flood@corp.test");
}

#[test]
fn sigterm_lets_an_open_transaction_finish_and_closes_idle_sessions() {
    let mut daemon = Daemon::start("[smtp]\nshutdown_grace = 10\n");
    let port = daemon.ports().smtp;
    let mut idle = ehlo(port);
    let mut busy = ehlo(port);
    busy.expect("MAIL FROM:<alice@corp.test>", "250 2.1.0");

    signal(&daemon, "TERM");
    assert_eq!(
        idle.reply(),
        "421 4.3.2 service shutting down, try again later\r\n"
    );
    assert!(idle.closed());
    // New connections are no longer taken.
    let refused = support::wait_until(Duration::from_secs(5), || {
        TcpStream::connect(("127.0.0.1", port)).is_err()
    });
    assert!(refused, "the listener still accepts after SIGTERM");

    // The transaction under way is stored, durably, before its session is closed.
    busy.expect(&format!("RCPT TO:<{ARCHIVE}>"), "250 2.1.5");
    busy.expect("DATA", "354");
    busy.send(format!(
        "{}.\r\n",
        message("in-flight@corp.test", "in flight")
    ));
    assert!(busy.reply().starts_with("250 2.0.0 stored as "));
    assert_eq!(
        busy.reply(),
        "421 4.3.2 service shutting down, try again later\r\n"
    );
    assert!(busy.closed());
    let status = daemon.stop();
    assert!(status.success(), "threadsd exited with {status}");

    daemon.launch();
    assert_eq!(only_message(&daemon)["message_id"], "in-flight@corp.test");
}

/// With sender checks on, a stored message gets its DKIM/ARC/SPF/DMARC verdicts after the
/// 250, and `message show` prints them. Whether this machine's resolver answers or not,
/// the check ends within its budget: an unsigned message has DKIM `none`, and SPF and
/// DMARC carry a verdict (`none` for the unregistered `.test` domain, `temperror`
/// without DNS).
#[test]
fn sender_checks_run_after_the_reply_and_are_shown() {
    let daemon = Daemon::start("[smtp]\nverify_auth = true\ndns_timeout = 1\n");
    let mut c = ehlo(daemon.ports().smtp);
    let reply = send_message(&mut c, &message("checked@corp.test", "checked"));
    assert!(reply.starts_with("250 2.0.0"), "{reply}");

    let m = only_message(&daemon);
    let mut detail = daemon.show(&m);
    support::wait_until(std::time::Duration::from_secs(15), || {
        detail = daemon.show(&m);
        !detail["auth"].is_null()
    });
    let auth = &detail["auth"];
    assert_eq!(strings(&auth["dkim"]), ["none"], "{detail:#}");
    for verdict in ["spf", "dmarc", "arc"] {
        let text = auth[verdict].as_str().unwrap_or_default();
        assert!(
            [
                "none",
                "temperror",
                "pass",
                "fail",
                "permerror",
                "neutral",
                "softfail"
            ]
            .iter()
            .any(|v| text.starts_with(v)),
            "{verdict}: {text:?}"
        );
    }
    let id = m["id"].as_u64().unwrap().to_string();
    let text = String::from_utf8(daemon.cli(&["message", "show", &id]).stdout).unwrap();
    assert!(text.contains("authentication (checked"), "{text}");
    assert!(text.contains("dkim:  none"), "{text}");
}
