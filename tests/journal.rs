//! Journaling into a real `threadsd serve`: a private Postfix copying every message to it
//! with `always_bcc` over LMTP and SMTP, and Exchange-style journal reports delivered over
//! SMTP. What counts is what the store holds afterwards: each message once, classified,
//! with the parties the journal named.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::{Daemon, JOURNAL_ADDRESS, Journal, Postfix, set, sorted};

/// How long Postfix may take to hand everything on.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(60);

/// Messages sent through Postfix per test.
const MESSAGES: usize = 50;

/// Parallel swaks clients feeding Postfix.
const SENDERS: usize = 4;

fn transcript(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn messages(daemon: &Daemon) -> Vec<Value> {
    let list = daemon.cli_json(&["message", "list", "--json"]);
    list.as_array()
        .expect("message list prints an array")
        .clone()
}

// ---------------------------------------------------------------------------------------
// Postfix

/// One message sent through Postfix, and who should see it once threadsd classified it.
struct Sent {
    message_id: String,
    from: &'static str,
    to: &'static str,
    /// The projects besides the default that a sub-addressed recipient adds.
    extra_project: Option<&'static str>,
    visibility: &'static str,
    visible_to: &'static [&'static str],
}

/// The mix sent through Postfix. alice and bob are users; pat@partner.test is a private
/// contact; other outside addresses are new, and shared by default.
fn plan(tag: &str) -> Vec<Sent> {
    (0..MESSAGES)
        .map(|n| {
            let (from, to, extra_project, visibility, visible_to): (_, _, _, _, &[&str]) =
                match n % 5 {
                    0 => (
                        "alice@corp.test",
                        "pat@partner.test",
                        None,
                        "users",
                        &["alice"],
                    ),
                    1 => (
                        "alice@corp.test",
                        "buyer@customer.test",
                        None,
                        "all",
                        &["alice", "bob"],
                    ),
                    2 => (
                        "carol@outside.test",
                        "bob@corp.test",
                        None,
                        "all",
                        &["alice", "bob"],
                    ),
                    // The journal address with a sub-address routes to a project as well.
                    3 => (
                        "bob@corp.test",
                        "pat@partner.test,archive+Clients.Acme@bcc.test",
                        Some("Clients/Acme"),
                        "users",
                        &["bob"],
                    ),
                    _ => (
                        "pat@partner.test",
                        "alice@corp.test,bob@corp.test",
                        None,
                        "users",
                        &["alice", "bob"],
                    ),
                };
            Sent {
                message_id: format!("{tag}-{n}@corp.test"),
                from,
                to,
                extra_project,
                visibility,
                visible_to,
            }
        })
        .collect()
}

/// Sends `sent` through Postfix's smtpd with swaks; returns the Message-IDs Postfix
/// accepted.
fn send_through(postfix: &Postfix, sent: &[Sent]) -> BTreeSet<String> {
    let server = postfix.smtp_addr();
    let chunk = sent.len().div_ceil(SENDERS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = sent
            .chunks(chunk)
            .map(|part| {
                let server = &server;
                scope.spawn(move || {
                    let mut accepted = BTreeSet::new();
                    for m in part {
                        let id = format!("Message-Id: <{}>", m.message_id);
                        let subject = format!("Subject: journaled {}", m.message_id);
                        let output = support::swaks(&[
                            "--server", server, "--from", m.from, "--to", m.to, "--header", &id,
                            "--header", &subject,
                        ]);
                        let text = transcript(&output);
                        assert!(output.status.success(), "swaks failed:\n{text}");
                        assert!(text.contains("<-  250 2.0.0 Ok: queued as "), "{text}");
                        accepted.insert(m.message_id.clone());
                    }
                    accepted
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a swaks worker"))
            .collect()
    })
}

/// Which listener Postfix journals to.
#[derive(Debug, Clone, Copy)]
enum Via {
    Lmtp,
    Smtp,
}

fn journal_through_postfix(via: Via) {
    let daemon = Daemon::start("");
    daemon.cli_ok(&[
        "user",
        "add",
        "alice",
        "--address",
        "alice@corp.test",
        "--no-password",
    ]);
    daemon.cli_ok(&[
        "user",
        "add",
        "bob",
        "--address",
        "bob@corp.test",
        "--no-password",
    ]);
    daemon.cli_ok(&[
        "contact",
        "add",
        "Pat",
        "--address",
        "pat@partner.test",
        "--private",
    ]);
    let (journal, kind) = match via {
        Via::Lmtp => (Journal::Lmtp(daemon.ports().lmtp), "lmtp"),
        Via::Smtp => (Journal::Smtp(daemon.ports().smtp), "smtp"),
    };
    let postfix = Postfix::start(journal);

    let sent = plan(kind);
    let accepted = send_through(&postfix, &sent);
    assert_eq!(accepted.len(), MESSAGES);
    postfix.wait_queue_empty(QUEUE_TIMEOUT);
    let log = postfix.log();
    assert!(!log.contains("status=bounced"), "postfix bounced:\n{log}");
    assert!(!log.contains("status=deferred"), "postfix deferred:\n{log}");

    // Every accepted message once: the Message-IDs stored are exactly those accepted.
    let list = messages(&daemon);
    let mut stored: BTreeMap<String, &Value> = BTreeMap::new();
    for m in &list {
        let id = m["message_id"].as_str().expect("a Message-ID").to_owned();
        assert!(stored.insert(id.clone(), m).is_none(), "{id} stored twice");
    }
    assert_eq!(stored.keys().cloned().collect::<BTreeSet<_>>(), accepted);

    for s in &sent {
        let m = stored[&s.message_id];
        let mut projects = set(&["Inbox"]);
        projects.extend(s.extra_project.map(str::to_owned));
        assert_eq!(sorted(&m["projects"]), projects, "{m:#}");
        assert_eq!(m["visibility"], s.visibility, "{} {m:#}", s.message_id);
        assert_eq!(sorted(&m["visible_to"]), set(s.visible_to), "{m:#}");
        assert_eq!(m["journal"], false);
        let mut parties: BTreeSet<String> = s.to.split(',').map(str::to_owned).collect();
        parties.insert(s.from.to_owned());
        parties.retain(|p| !p.ends_with("@bcc.test"));
        assert_eq!(sorted(&m["parties"]), parties, "{m:#}");
    }

    // The envelope Postfix delivered with: the journaling copy of the sender's message.
    let sample = stored[&sent[3].message_id];
    let detail = daemon.show(sample);
    let sources = detail["sources"].as_array().expect("sources");
    assert!(sources.iter().all(|s| s["kind"] == kind), "{detail:#}");
    assert!(
        sources.iter().all(|s| s["mail_from"] == "bob@corp.test"),
        "{detail:#}"
    );
    let recipients: BTreeSet<String> = sources
        .iter()
        .flat_map(|s| sorted(&s["recipients"]))
        .collect();
    assert_eq!(
        recipients,
        set(&[JOURNAL_ADDRESS, "archive+Clients.Acme@bcc.test"]),
        "{detail:#}"
    );
    let visible = daemon.cli_json(&["message", "list", "--visible-to", "alice", "--json"]);
    let expected = sent
        .iter()
        .filter(|s| s.visible_to.contains(&"alice"))
        .count();
    assert_eq!(visible.as_array().unwrap().len(), expected);
}

#[test]
fn postfix_journals_every_message_once_over_lmtp() {
    journal_through_postfix(Via::Lmtp);
}

#[test]
fn postfix_journals_every_message_once_over_smtp() {
    journal_through_postfix(Via::Smtp);
}

// ---------------------------------------------------------------------------------------
// Exchange journal reports

/// How the original rides inside the report.
#[derive(Debug, Clone, Copy)]
enum Attached {
    SevenBit,
    Base64,
}

const ORIGINAL: &str = "From: Alice <alice@contoso.test>\r\nTo: Bob <bob@fabrikam.test>\r\n\
    Subject: Q3 numbers\r\nMessage-ID: <q3@contoso.test>\r\n\
    Date: Mon, 02 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
    Content-Type: text/plain; charset=us-ascii\r\n\r\nThe numbers are in.\r\n";

/// An Exchange-style journal report of `original`, listing `envelope` (lines such as
/// `Recipient: x@y, Expanded: z@y`) in its text part. The CRLF before each boundary
/// belongs to the boundary (RFC 2046 §5.1.1), so the original keeps its own last CRLF.
fn journal_report(report_id: &str, original: &str, envelope: &str, attached: Attached) -> String {
    let (encoding, body) = match attached {
        Attached::SevenBit => ("7bit", original.to_owned()),
        Attached::Base64 => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(original);
            let lines: Vec<&str> = encoded
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
                .collect();
            ("base64", format!("{}\r\n", lines.join("\r\n")))
        }
    };
    let subject = header(original, "Subject");
    let message_id = header(original, "Message-ID");
    format!(
        "From: Microsoft Exchange Server <postmaster@contoso.test>\r\n\
         To: {JOURNAL_ADDRESS}\r\nSubject: {subject}\r\nMessage-ID: <{report_id}>\r\n\
         Date: Mon, 02 Nov 2026 10:00:05 +0000\r\nX-MS-Journal-Report:\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"journal-boundary\"\r\n\r\n\
         --journal-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\
         Content-Transfer-Encoding: 7bit\r\n\r\n\
         Sender: alice@contoso.test\r\nSubject: {subject}\r\nMessage-Id: {message_id}\r\n\
         {envelope}\r\n\
         --journal-boundary\r\nContent-Type: message/rfc822\r\n\
         Content-Transfer-Encoding: {encoding}\r\n\r\n{body}\
         \r\n--journal-boundary--\r\n"
    )
}

/// The value of a header field of a test message.
fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .split("\r\n")
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (field, value) = line.split_once(':')?;
            field.eq_ignore_ascii_case(name).then(|| value.trim())
        })
        .unwrap_or_else(|| panic!("no {name} field in the test message"))
}

/// Delivers a report with swaks to `server` (threadsd's SMTP listener, or an MTA in front
/// of it), writing it into the daemon's directory first; returns the transcript.
fn send_report(daemon: &Daemon, server: &str, name: &str, report: &str) -> String {
    let path = daemon.dir().join(name);
    std::fs::write(&path, report).expect("write the report");
    let data = format!("@{}", path.display());
    let output = support::swaks(&[
        "--server",
        server,
        "--from",
        "postmaster@contoso.test",
        "--to",
        JOURNAL_ADDRESS,
        "--data",
        &data,
    ]);
    let text = transcript(&output);
    assert!(output.status.success(), "{text}");
    text
}

/// Delivers a report that is to be stored.
fn deliver(daemon: &Daemon, name: &str, report: &str) {
    let text = send_report(daemon, &daemon.smtp_addr(), name, report);
    assert!(text.contains("<-  250 2.0.0 stored as "), "{text}");
}

#[test]
fn exchange_journal_reports_are_unwrapped() {
    for attached in [Attached::SevenBit, Attached::Base64] {
        let daemon = Daemon::start("");
        let envelope = "To: bob@fabrikam.test\r\n\
                        Cc: carol@contoso.test, Expanded: sales@contoso.test\r\n\
                        Recipient: erin@partner.test, Forwarded: frank@contoso.test\r\n";
        let report = journal_report("report-1@contoso.test", ORIGINAL, envelope, attached);
        deliver(&daemon, "report.eml", &report);

        let list = messages(&daemon);
        let [m] = &list[..] else {
            panic!("{attached:?}: one message: {list:#?}")
        };
        assert_eq!(m["message_id"], "q3@contoso.test", "{attached:?}");
        assert_eq!(m["journal"], true, "{attached:?}");
        assert_eq!(m["from"], "Alice <alice@contoso.test>", "{attached:?}");
        let stored = String::from_utf8(daemon.raw(m)).unwrap();
        assert_eq!(
            stored, ORIGINAL,
            "{attached:?}: the original, not the report"
        );
        // The report's own sender is not a party; every address it lists is.
        assert_eq!(
            sorted(&m["parties"]),
            set(&[
                "alice@contoso.test",
                "bob@fabrikam.test",
                "carol@contoso.test",
                "erin@partner.test",
                "frank@contoso.test",
                "sales@contoso.test",
            ]),
            "{attached:?}"
        );
        let detail = daemon.show(m);
        let extra = sorted(&detail["extra_recipients"]);
        for hidden in [
            "carol@contoso.test",
            "erin@partner.test",
            "sales@contoso.test",
        ] {
            assert!(
                extra.contains(hidden),
                "{attached:?}: {hidden} in {detail:#}"
            );
        }
    }
}

#[test]
fn two_reports_of_one_original_merge_into_one_record() {
    let daemon = Daemon::start("");
    // Each journaling server (or each recipient's database) reports its own recipients.
    let first = journal_report(
        "report-a@contoso.test",
        ORIGINAL,
        "To: bob@fabrikam.test\r\n",
        Attached::SevenBit,
    );
    let second = journal_report(
        "report-b@contoso.test",
        ORIGINAL,
        "Recipient: dave@partner.test, Expanded: board@contoso.test\r\n",
        Attached::Base64,
    );
    deliver(&daemon, "first.eml", &first);
    deliver(&daemon, "second.eml", &second);

    let list = messages(&daemon);
    let [m] = &list[..] else {
        panic!("one merged record: {list:#?}")
    };
    assert_eq!(m["message_id"], "q3@contoso.test");
    assert_eq!(m["copies"], 2);
    assert_eq!(m["journal"], true);
    assert_eq!(
        sorted(&m["parties"]),
        set(&[
            "alice@contoso.test",
            "board@contoso.test",
            "bob@fabrikam.test",
            "dave@partner.test",
        ])
    );
    assert_eq!(String::from_utf8(daemon.raw(m)).unwrap(), ORIGINAL);
    let detail = daemon.show(m);
    assert_eq!(detail["sources"].as_array().unwrap().len(), 2, "{detail:#}");
}

#[test]
fn a_journal_report_relayed_by_postfix_is_unwrapped() {
    let daemon = Daemon::start("");
    let postfix = Postfix::start(Journal::Smtp(daemon.ports().smtp));
    let envelope = "To: bob@fabrikam.test\r\nBcc: grace@partner.test\r\n";
    let report = journal_report("relayed@contoso.test", ORIGINAL, envelope, Attached::Base64);
    send_report(&daemon, &postfix.smtp_addr(), "relayed.eml", &report);
    postfix.wait_queue_empty(QUEUE_TIMEOUT);

    let list = messages(&daemon);
    let [m] = &list[..] else {
        panic!("one message: {list:#?}")
    };
    assert_eq!(m["journal"], true);
    assert_eq!(m["message_id"], "q3@contoso.test");
    // Postfix's Received header went on the report, which is not kept.
    assert_eq!(String::from_utf8(daemon.raw(m)).unwrap(), ORIGINAL);
    assert_eq!(
        sorted(&m["parties"]),
        set(&[
            "alice@contoso.test",
            "bob@fabrikam.test",
            "grace@partner.test"
        ])
    );
}

#[test]
fn a_report_naming_an_excluded_party_removes_the_stored_message() {
    let daemon = Daemon::start("");
    daemon.cli_ok(&["channel", "set", "counsel@lawfirm.test", "--exclude"]);

    // A report whose only recipient of note is excluded: acknowledged, nothing stored.
    let other = ORIGINAL
        .replace("q3@contoso.test", "privileged@contoso.test")
        .replace("Q3 numbers", "Privileged");
    let report = journal_report(
        "report-x@contoso.test",
        &other,
        "Bcc: counsel@lawfirm.test\r\n",
        Attached::SevenBit,
    );
    let text = send_report(&daemon, &daemon.smtp_addr(), "excluded.eml", &report);
    assert!(text.contains("<-  250 2.0.0 OK\n"), "{text}");
    assert!(messages(&daemon).is_empty());

    // A first report stores the message; a second copy that shows it also went to the
    // excluded address takes it out again (ARCHITECTURE.md, departures).
    let first = journal_report(
        "report-a@contoso.test",
        ORIGINAL,
        "To: bob@fabrikam.test\r\n",
        Attached::SevenBit,
    );
    deliver(&daemon, "first.eml", &first);
    assert_eq!(messages(&daemon).len(), 1);
    let second = journal_report(
        "report-b@contoso.test",
        ORIGINAL,
        "Bcc: counsel@lawfirm.test\r\n",
        Attached::SevenBit,
    );
    let text = send_report(&daemon, &daemon.smtp_addr(), "second.eml", &second);
    assert!(text.contains("<-  250 2.0.0 OK\n"), "{text}");
    assert!(messages(&daemon).is_empty(), "{:#?}", messages(&daemon));
}
