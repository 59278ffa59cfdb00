//! Checks the integration-test harness itself against the real peers: a private Postfix
//! journaling to smtp-sink and to Dovecot over LMTP and SMTP, Dovecot's LMTP and IMAP, and the
//! configuration the harness writes for threadsd.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Daemon, Dovecot, JOURNAL_ADDRESS, Journal, Postfix, SinkProtocol, SmtpSink};

const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

fn send(server: &str, subject: &str) {
    let header = format!("Subject: {subject}");
    let output = support::swaks(&[
        "--server",
        server,
        "--from",
        "alice@corp.test",
        "--to",
        "bob@example.test",
        "--header",
        &header,
        "--body",
        "the quarterly figures are attached",
    ]);
    assert!(
        output.status.success(),
        "swaks to {server} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

fn panic_message(result: std::thread::Result<impl Sized>) -> String {
    let Err(payload) = result.map(drop) else {
        panic!("expected a panic");
    };
    if let Some(s) = payload.downcast_ref::<String>() {
        return s.clone();
    }
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .unwrap_or_default()
}

#[test]
fn require_names_the_debian_package() {
    let result = std::panic::catch_unwind(|| support::require("no-such-peer", "peer-pkg"));
    let message = panic_message(result);
    assert_eq!(
        message,
        "`no-such-peer` not found: run tests/peers/install.sh or apt-get install peer-pkg"
    );
    assert!(support::require("swaks", "swaks").ends_with("swaks"));
}

#[test]
fn free_ports_are_not_handed_out_twice() {
    let ports: Vec<u16> = (0..50).map(|_| support::free_port()).collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len());
}

#[test]
fn daemon_config_is_valid_and_extra_toml_overrides_single_keys() {
    let daemon = Daemon::configure(
        "[smtp]\nrequire_auth = true\nmax_message_size = \"10M\"\n\
         [policy]\ndefault_project = \"Acme/Sales\"\n",
    );
    let config = threadsd::config::Config::load(daemon.config_path())
        .unwrap_or_else(|e| panic!("the harness wrote a config threadsd refuses: {e}"));

    let ports = daemon.ports();
    let listen = |port: u16| format!("127.0.0.1:{port}").parse().unwrap();
    use threadsd::config::ListenAddr::Tcp;
    assert_eq!(config.smtp.listen, vec![Tcp(listen(ports.smtp))]);
    assert_eq!(config.smtp.tls_listen, vec![Tcp(listen(ports.smtps))]);
    assert_eq!(config.lmtp.listen, vec![Tcp(listen(ports.lmtp))]);
    assert_eq!(config.metrics.listen, listen(ports.metrics));
    assert!(config.smtp.require_auth);
    assert_eq!(config.smtp.max_message_size.0, 10 << 20);
    assert_eq!(config.policy.default_project.as_str(), "Acme/Sales");
    assert_eq!(config.store.path, daemon.data_dir());
    assert!(daemon.data_dir().starts_with(daemon.dir()));
    assert_eq!(config.admin_socket(), daemon.admin_socket());
}

#[test]
fn a_daemon_that_exits_before_it_is_ready_fails_with_its_log() {
    let result = std::panic::catch_unwind(|| Daemon::start("[store]\nno_such_key = 1\n"));
    let message = panic_message(result);
    assert!(
        message.contains("threadsd exited before it was ready"),
        "{message}"
    );
    assert!(
        message.contains("--- harness: start 1 of threadsd serve ---"),
        "{message}"
    );
}

#[test]
fn postfix_journals_over_lmtp() {
    let sink = SmtpSink::start(SinkProtocol::Lmtp);
    let postfix = Postfix::start(Journal::Lmtp(sink.port()));

    send(&postfix.smtp_addr(), "journal over lmtp");
    postfix.wait_queue_empty(QUEUE_TIMEOUT);

    let messages = sink.wait_for(1, QUEUE_TIMEOUT);
    assert_eq!(
        messages.len(),
        1,
        "only the journaling copy reaches the sink"
    );
    let message = &messages[0];
    assert!(message.contains("X-Client-Proto: LMTP"), "{message}");
    assert!(
        message.contains(&format!("X-Rcpt-Args: <{JOURNAL_ADDRESS}>")),
        "{message}"
    );
    assert!(message.contains("Subject: journal over lmtp"), "{message}");
    let log = postfix.log();
    assert!(
        log.contains("to=<bob@example.test>, relay=none"),
        "bob's copy is discarded:\n{log}"
    );
}

#[test]
fn postfix_journals_over_smtp() {
    let sink = SmtpSink::start(SinkProtocol::Smtp);
    let postfix = Postfix::start(Journal::Smtp(sink.port()));

    send(&postfix.smtp_addr(), "journal over smtp");
    postfix.wait_queue_empty(QUEUE_TIMEOUT);

    let messages = sink.wait_for(1, QUEUE_TIMEOUT);
    assert_eq!(messages.len(), 1);
    assert!(
        messages[0].contains("X-Client-Proto: ESMTP"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains(&format!("X-Rcpt-Args: <{JOURNAL_ADDRESS}>")));
}

#[test]
fn postfix_retries_a_journal_target_that_comes_up_late() {
    let port = support::free_port();
    let postfix = Postfix::start(Journal::Lmtp(port));
    send(&postfix.smtp_addr(), "held while the target is down");

    let deferred = support::wait_until(QUEUE_TIMEOUT, || postfix.queue().contains(JOURNAL_ADDRESS));
    assert!(
        deferred,
        "the copy waits in the queue:\n{}",
        postfix.queue()
    );

    let sink = SmtpSink::start_on(SinkProtocol::Lmtp, port);
    postfix.flush();
    postfix.wait_queue_empty(QUEUE_TIMEOUT);
    let messages = sink.wait_for(1, QUEUE_TIMEOUT);
    assert!(messages[0].contains("Subject: held while the target is down"));
}

#[test]
fn dovecot_stores_lmtp_deliveries_and_serves_them_over_imap() {
    let dovecot = Dovecot::start();
    dovecot.add_user("carol@corp.test", "s3cret");

    let lmtp = format!("127.0.0.1:{}", dovecot.lmtp_port());
    let output = support::swaks(&[
        "--protocol",
        "LMTP",
        "--server",
        &lmtp,
        "--from",
        "alice@corp.test",
        "--to",
        "carol@corp.test",
    ]);
    let transcript = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{transcript}");
    assert!(transcript.contains("<carol@corp.test>") && transcript.contains(" Saved"));
    assert_eq!(dovecot.inbox_count("carol@corp.test"), 1);

    let mut imap = Imap::connect(dovecot.imap_port());
    assert!(
        imap.command("a1 LOGIN carol@corp.test wrong")
            .starts_with("a1 NO")
    );
    assert!(
        imap.command("a2 LOGIN carol@corp.test s3cret")
            .starts_with("a2 OK")
    );
    imap.command("a3 SELECT INBOX");
    assert!(
        imap.untagged.iter().any(|l| l == "* 1 EXISTS"),
        "{:?}",
        imap.untagged
    );
}

#[test]
fn postfix_journals_into_dovecot() {
    let dovecot = Dovecot::start();
    let postfix = Postfix::start(Journal::Lmtp(dovecot.lmtp_port()));

    for n in 0..3 {
        send(&postfix.smtp_addr(), &format!("journal copy {n}"));
    }
    postfix.wait_queue_empty(QUEUE_TIMEOUT);
    assert_eq!(dovecot.inbox_count(JOURNAL_ADDRESS), 3);
}

/// The harness's own smoke test of a running daemon behind Postfix.
#[test]
fn daemon_stores_what_postfix_journals_and_keeps_it_across_restarts() {
    let mut daemon = Daemon::start("");
    let postfix = Postfix::start(Journal::Lmtp(daemon.ports().lmtp));

    send(&postfix.smtp_addr(), "kept across restarts");
    postfix.wait_queue_empty(QUEUE_TIMEOUT);
    let subjects = |daemon: &Daemon| -> Vec<String> {
        let list = daemon.cli_json(&["message", "list", "--json"]);
        let list = list
            .as_array()
            .expect("message list prints an array")
            .clone();
        list.iter()
            .map(|m| m["subject"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(subjects(&daemon), ["kept across restarts"]);
    assert!(daemon.metrics().contains("threadsd_smtp_messages_total"));

    daemon.restart();
    assert_eq!(subjects(&daemon), ["kept across restarts"]);
    daemon.kill9();
    daemon.launch();
    assert_eq!(subjects(&daemon), ["kept across restarts"]);
}

/// Just enough IMAP to log in and select: tagged commands, untagged lines collected.
struct Imap {
    reader: BufReader<TcpStream>,
    untagged: Vec<String>,
}

impl Imap {
    fn connect(port: u16) -> Imap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to imap");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut imap = Imap {
            reader: BufReader::new(stream),
            untagged: Vec::new(),
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "{greeting}");
        imap
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read an imap line");
        line.trim_end().to_owned()
    }

    /// Sends one command and returns its tagged reply.
    fn command(&mut self, command: &str) -> String {
        let tag = command.split(' ').next().unwrap_or_default().to_owned();
        write!(self.reader.get_mut(), "{command}\r\n").expect("send an imap command");
        loop {
            let line = self.line();
            if line.starts_with(&format!("{tag} ")) {
                return line;
            }
            assert!(!line.is_empty(), "imap closed the connection");
            self.untagged.push(line);
        }
    }
}
