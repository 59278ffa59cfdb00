//! Transcript tests of the session: client bytes in, server replies and requests out.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use crate::config::RecipientPattern;
use crate::ingest::{Ack, IngestError, Refusal, Trust};
use crate::model::{MessageId, ProjectPath, SourceKind};

use super::*;

fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        accept_recipients: vec![RecipientPattern::Domain("archive.test".into())],
        allow_networks: Vec::new(),
        require_auth: false,
        auth_without_tls: false,
        max_message_size: 1000,
        max_recipients: 3,
        max_errors: 5,
        default_project: ProjectPath::parse("Inbox").unwrap(),
        command_timeout: Duration::from_secs(300),
        data_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(30),
    }
}

fn trusted() -> PeerInfo {
    PeerInfo {
        ip: Some("127.0.0.1".parse().unwrap()),
        trusted_network: true,
        tls: TlsState::Available,
    }
}

fn untrusted(tls: TlsState) -> PeerInfo {
    PeerInfo {
        ip: Some("192.0.2.9".parse().unwrap()),
        trusted_network: false,
        tls,
    }
}

/// Plays the driver: answers every request at once and records what happened.
struct Driver {
    session: Session,
    replies: String,
    deliveries: Vec<Delivery>,
    /// (identity, password) of every Authenticate.
    auths: Vec<(String, String)>,
    discarded: Vec<usize>,
    starttls: usize,
    closed: bool,
    result: Result<Ack, IngestError>,
    /// Answer StartTls with tls_started at once.
    auto_tls: bool,
}

impl Driver {
    fn new(config: SessionConfig, protocol: Protocol, peer: PeerInfo) -> Driver {
        let session = Session::new(Arc::new(config), protocol, peer);
        let replies = String::from_utf8(session.greeting()).unwrap();
        Driver {
            session,
            replies,
            deliveries: Vec::new(),
            auths: Vec::new(),
            discarded: Vec::new(),
            starttls: 0,
            closed: false,
            result: Ok(Ack::Stored {
                id: MessageId(7),
                duplicate: false,
            }),
            auto_tls: true,
        }
    }

    fn smtp() -> Driver {
        Driver::new(config(), Protocol::Smtp, trusted())
    }

    /// SMTP with room for many failed commands.
    fn lenient() -> Driver {
        Driver::new(
            SessionConfig {
                max_errors: 100,
                ..config()
            },
            Protocol::Smtp,
            trusted(),
        )
    }

    /// LMTP with room for many failed commands.
    fn lmtp() -> Driver {
        Driver::new(
            SessionConfig {
                max_errors: 100,
                ..config()
            },
            Protocol::Lmtp,
            trusted(),
        )
    }

    /// Feeds `input` and returns the replies it produced.
    fn send(&mut self, input: &str) -> String {
        self.send_bytes(input.as_bytes())
    }

    fn send_bytes(&mut self, input: &[u8]) -> String {
        let before = self.replies.len();
        let actions = self.session.feed(input);
        self.act(actions);
        self.replies[before..].to_owned()
    }

    fn act(&mut self, actions: Vec<Action>) {
        assert!(
            !self.closed || actions.is_empty(),
            "actions after Close: {actions:?}"
        );
        for action in actions {
            match action {
                Action::Reply(bytes) => self.replies.push_str(&String::from_utf8(bytes).unwrap()),
                Action::Deliver(delivery) => {
                    self.deliveries.push(*delivery);
                    let more = self.session.delivered(self.result.clone());
                    self.act(more);
                }
                Action::Authenticate { identity, password } => {
                    let ok = password.expose() == "secret";
                    self.auths.push((identity, password.expose().to_owned()));
                    let more = self.session.authenticated(ok);
                    self.act(more);
                }
                Action::StartTls => {
                    self.starttls += 1;
                    if self.auto_tls {
                        let more = self.session.tls_started();
                        self.act(more);
                    }
                }
                Action::Discarded { bytes } => self.discarded.push(bytes),
                Action::Close => self.closed = true,
            }
        }
    }
}

/// The reply codes of a reply text, one per line, with the enhanced code where present.
fn codes(replies: &str) -> Vec<String> {
    replies
        .lines()
        .map(|l| {
            let mut words = l.splitn(3, ' ');
            let code = words.next().unwrap_or_default();
            match words.next() {
                Some(w) if w.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                    format!("{code} {w}")
                }
                _ => code.to_owned(),
            }
        })
        .collect()
}

const MESSAGE: &str = "Subject: hi\r\n\r\nhello\r\n";

#[test]
fn a_plain_transaction() {
    let mut d = Driver::smtp();
    assert_eq!(d.replies, "220 mx.test ESMTP threadsd ready\r\n");
    assert_eq!(
        d.send("EHLO client.test\r\n"),
        "250-mx.test greets client.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-8BITMIME\r\n\
         250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250-STARTTLS\r\n250 HELP\r\n"
    );
    assert_eq!(
        d.send("MAIL FROM:<ann@example.org>\r\n"),
        "250 2.1.0 sender OK\r\n"
    );
    assert_eq!(
        d.send("RCPT TO:<threads@archive.test>\r\n"),
        "250 2.1.5 recipient OK\r\n"
    );
    assert_eq!(
        d.send("DATA\r\n"),
        "354 end data with <CR><LF>.<CR><LF>\r\n"
    );
    assert_eq!(d.send(MESSAGE), "");
    assert_eq!(d.send(".\r\n"), "250 2.0.0 stored as 7\r\n");
    assert_eq!(d.send("QUIT\r\n"), "221 2.0.0 bye\r\n");
    assert!(d.closed);

    let [delivery] = &d.deliveries[..] else {
        panic!("one delivery")
    };
    assert_eq!(delivery.data, MESSAGE.as_bytes());
    assert_eq!(delivery.envelope.mail_from, "ann@example.org");
    assert_eq!(delivery.envelope.recipients, ["threads@archive.test"]);
    assert_eq!(delivery.projects, [ProjectPath::parse("Inbox").unwrap()]);
    assert_eq!(delivery.helo, "client.test");
    assert_eq!(delivery.trust, Trust::Trusted);
    assert_eq!(delivery.protocol, Protocol::Smtp);
}

#[test]
fn helo_has_no_extensions_and_null_sender_is_taken() {
    let mut d = Driver::smtp();
    assert_eq!(
        d.send("HELO client.test\r\n"),
        "250 mx.test greets client.test\r\n"
    );
    assert_eq!(codes(&d.send("MAIL FROM:<>\r\n")), ["250 2.1.0"]);
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let mut d = Driver::smtp();
    let replies = d.send(
        "EHLO c\r\nMAIL FROM:<a@x.test> SIZE=20 BODY=8BITMIME\r\nRCPT TO:<b@archive.test>\r\n\
         RCPT TO:<nobody@elsewhere.test>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<a@x.test>\r\n\
         RCPT TO:<c@archive.test>\r\nDATA\r\ny\r\n.\r\nNOOP\r\nQUIT\r\n",
    );
    assert_eq!(
        codes(&replies)[9..],
        [
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "354",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert_eq!(d.deliveries.len(), 2);
    assert_eq!(d.deliveries[0].data, b"x\r\n");
    assert_eq!(d.deliveries[0].body, Body::EightBitMime);
    assert_eq!(d.deliveries[1].envelope.recipients, ["c@archive.test"]);
}

#[test]
fn input_waits_while_a_delivery_is_pending() {
    let mut session = Session::new(Arc::new(config()), Protocol::Smtp, trusted());
    let actions = session.feed(
        b"EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n",
    );
    assert!(matches!(actions.last(), Some(Action::Deliver(_))));
    // More input while the delivery is out is only buffered.
    assert!(session.feed(b"NOOP\r\n").is_empty());
    let after = session.delivered(Ok(Ack::Excluded));
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(matches!(&after[0], Action::Reply(r) if r == b"250 2.0.0 OK\r\n"));
    assert!(matches!(&after[1], Action::Reply(r) if r == b"250 2.0.0 OK\r\n"));
}

#[test]
fn sequence_errors() {
    let mut d = Driver::lenient();
    assert_eq!(codes(&d.send("MAIL FROM:<a@x.test>\r\n")), ["503 5.5.1"]);
    d.send("EHLO c\r\n");
    assert_eq!(
        codes(&d.send("RCPT TO:<b@archive.test>\r\n")),
        ["503 5.5.1"]
    );
    assert_eq!(codes(&d.send("DATA\r\n")), ["503 5.5.1"]);
    d.send("MAIL FROM:<a@x.test>\r\n");
    assert_eq!(codes(&d.send("MAIL FROM:<a@x.test>\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send("DATA\r\n")), ["554 5.5.1"]);
    assert!(!d.closed);
}

#[test]
fn minor_commands() {
    let mut d = Driver::lenient();
    d.send("EHLO c\r\n");
    assert_eq!(codes(&d.send("NOOP\r\n")), ["250 2.0.0"]);
    assert_eq!(codes(&d.send("VRFY bob\r\n")), ["252 2.5.0"]);
    assert_eq!(codes(&d.send("HELP\r\n")), ["214 2.0.0"]);
    assert_eq!(
        codes(&d.send("MAIL FROM:<a@x.test>\r\nRSET\r\n")),
        ["250 2.1.0", "250 2.0.0"]
    );
    assert_eq!(
        codes(&d.send("RCPT TO:<b@archive.test>\r\n")),
        ["503 5.5.1"]
    );
    assert_eq!(codes(&d.send("EXPN list\r\n")), ["502 5.5.1"]);
    d.send("RSET\r\n");
    assert_eq!(codes(&d.send("ETRN example.org\r\n")), ["502 5.5.1"]);
    assert_eq!(codes(&d.send("BURL imap://x LAST\r\n")), ["502 5.5.1"]);
    d.send("RSET\r\n");
    assert_eq!(codes(&d.send("XYZZY\r\n")), ["500 5.5.2"]);
    assert_eq!(codes(&d.send("\r\n")), ["500 5.5.2"]);
    assert_eq!(codes(&d.send("LHLO c\r\n")), ["500 5.5.1"]);
    assert!(!d.closed);
}

#[test]
fn syntax_errors() {
    let mut d = Driver::lenient();
    d.send("EHLO c\r\n");
    assert_eq!(codes(&d.send("MAIL FROM:ann@x.test\r\n")), ["501 5.5.4"]);
    assert_eq!(codes(&d.send("MAIL FROM:<a b@x>\r\n")), ["501 5.1.7"]);
    assert_eq!(
        codes(&d.send("MAIL FROM:<a@x.test> FOO=1\r\n")),
        ["555 5.5.4"]
    );
    d.send("RSET\r\n");
    assert_eq!(
        codes(&d.send("MAIL FROM:<a@x.test> RET=FULL\r\n")),
        ["555 5.5.4"]
    );
    assert_eq!(
        codes(&d.send("MAIL FROM:<a@x.test> BODY=BINARYMIME\r\n")),
        ["555 5.5.4"]
    );
}

#[test]
fn line_length_limits() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    let longest = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE - 7));
    assert_eq!(longest.len(), MAX_COMMAND_LINE);
    assert_eq!(codes(&d.send(&longest)), ["250 2.0.0"]);
    let too_long = format!("NOOP {}\r\n", "x".repeat(MAX_COMMAND_LINE));
    // Split, to show the limit holds across reads.
    let (a, b) = too_long.split_at(10);
    assert_eq!(d.send(a), "");
    assert_eq!(codes(&d.send(b)), ["500 5.5.6"]);
    assert_eq!(codes(&d.send("NOOP\r\n")), ["250 2.0.0"]);
    // Bare LF ends a command line; a bare CR inside one is refused.
    assert_eq!(codes(&d.send("NOOP\n")), ["250 2.0.0"]);
    assert_eq!(codes(&d.send("NO\rOP\r\n")), ["501 5.5.2"]);
}

#[test]
fn too_many_errors_close_the_session() {
    let mut d = Driver::smtp();
    let replies = d.send("A\r\nB\r\nC\r\nD\r\nE\r\nNOOP\r\n");
    assert_eq!(
        codes(&replies),
        [
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "500 5.5.2",
            "421 4.7.0"
        ]
    );
    assert!(d.closed);
    assert!(d.session.is_closed());
    assert!(d.session.feed(b"NOOP\r\n").is_empty());
}

#[test]
fn recipient_limits_and_refusals() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\nMAIL FROM:<a@x.test>\r\n");
    assert_eq!(
        codes(&d.send("RCPT TO:<a@elsewhere.test>\r\n")),
        ["550 5.1.1"]
    );
    assert_eq!(codes(&d.send("RCPT TO:<postmaster>\r\n")), ["550 5.1.1"]);
    assert_eq!(
        codes(&d.send("RCPT TO:<a@archive.test> NOTIFY=NEVER\r\n")),
        ["555 5.5.4"]
    );
    let many = "RCPT TO:<a@archive.test>\r\n".repeat(9);
    let replies = codes(&d.send(&many));
    // Three taken, then 452s, which do not count as errors (max_errors is 5).
    assert_eq!(replies[..3], ["250 2.1.5", "250 2.1.5", "250 2.1.5"]);
    assert!(replies[3..].iter().all(|r| r == "452 4.5.3"), "{replies:?}");
    assert!(!d.closed);
}

#[test]
fn message_size_limits() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert_eq!(
        codes(&d.send("MAIL FROM:<a@x.test> SIZE=1001\r\n")),
        ["552 5.3.4"]
    );
    d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\n");
    let big = format!("{}\r\n", "x".repeat(2000));
    assert_eq!(d.send(&big), "");
    assert_eq!(codes(&d.send(".\r\n")), ["552 5.3.4"]);
    assert_eq!(d.discarded, [2002]);
    assert!(d.deliveries.is_empty());
    // The session goes on with a new transaction.
    let replies = d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\nok\r\n.\r\n");
    assert_eq!(
        codes(&replies),
        ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    );
}

#[test]
fn access_policy() {
    let mail = "EHLO c\r\nMAIL FROM:<a@x.test>\r\n";
    let cases = [
        (untrusted(TlsState::Available), false, "530 5.7.0"),
        (untrusted(TlsState::Active), false, "530 5.7.0"),
        (untrusted(TlsState::Unavailable), false, "550 5.7.1"),
        (trusted(), true, "530 5.7.0"),
        (trusted(), false, "250 2.1.0"),
    ];
    for (peer, require_auth, expected) in cases {
        let config = SessionConfig {
            require_auth,
            ..config()
        };
        let mut d = Driver::new(config, Protocol::Smtp, peer.clone());
        let replies = codes(&d.send(mail));
        assert_eq!(
            replies.last().unwrap(),
            expected,
            "{peer:?} require_auth={require_auth}"
        );
    }
    let mut d = Driver::new(config(), Protocol::Smtp, untrusted(TlsState::Available));
    assert!(d.send(mail).contains("STARTTLS command first"));
}

#[test]
fn recipients_route_to_projects_and_one_delivery() {
    let mut d = Driver::smtp();
    d.send(
        "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<threads+Clients.Acme@archive.test>\r\n\
         RCPT TO:<threads@Archive.TEST>\r\nRCPT TO:<threads+Clients.Acme@archive.test>\r\n",
    );
    d.send("RSET\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<threads+Clients.Acme@archive.test>\r\n");
    d.send("RCPT TO:<threads@archive.test>\r\nRCPT TO:<threads+Clients.Acme@archive.test>\r\n");
    d.send("DATA\r\nx\r\n.\r\n");
    // Seventeen segments: no valid project path, so the default project.
    d.send(
        "MAIL FROM:<a@x.test>\r\nRCPT TO:<t+a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q@archive.test>\r\n",
    );
    d.send("DATA\r\ny\r\n.\r\n");
    let [first, second] = &d.deliveries[..] else {
        panic!("{:?}", d.deliveries)
    };
    let paths: Vec<&str> = first.projects.iter().map(ProjectPath::as_str).collect();
    assert_eq!(paths, ["Clients/Acme", "Inbox"]);
    assert_eq!(
        first.envelope.recipients,
        ["threads+Clients.Acme@archive.test", "threads@archive.test"]
    );
    assert_eq!(second.projects, [ProjectPath::parse("Inbox").unwrap()]);
}

#[test]
fn smuggled_commands_stay_inside_the_message() {
    let mut d = Driver::smtp();
    let replies = d.send(
        "EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\nhi\n.\n\
         MAIL FROM:<evil@x.test>\r\nRCPT TO:<c@archive.test>\r\nDATA\r\nevil\r\n.\r\n",
    );
    assert_eq!(
        codes(&replies)[9..],
        ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    );
    let [delivery] = &d.deliveries[..] else {
        panic!("one delivery")
    };
    assert_eq!(
        delivery.data,
        b"hi\r\n.\r\nMAIL FROM:<evil@x.test>\r\nRCPT TO:<c@archive.test>\r\nDATA\r\nevil\r\n"
    );
}

#[test]
fn bdat_chunks() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\n");
    assert_eq!(
        d.send("BDAT 9\r\nab\r\n.\r\ncd"),
        "250 2.0.0 9 octets received\r\n"
    );
    assert_eq!(codes(&d.send("BDAT 3 LAST\r\nxyz")), ["250 2.0.0"]);
    assert_eq!(d.deliveries[0].data, b"ab\r\n.\r\ncdxyz");

    // BDAT 0 LAST ends a message; DATA may not follow BDAT.
    d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nBDAT 2\r\nhi");
    assert_eq!(codes(&d.send("DATA\r\n")), ["503 5.5.1"]);
    assert_eq!(codes(&d.send("BDAT 0 LAST\r\n")), ["250 2.0.0"]);
    assert_eq!(d.deliveries[1].data, b"hi");
}

#[test]
fn refused_bdat_chunks_are_still_read() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    // The chunk's octets look like commands; they must not be taken as such.
    let replies = d.send("BDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes(&replies), ["503 5.5.1", "250 2.0.0"]);
    d.send("MAIL FROM:<a@x.test>\r\n");
    assert_eq!(codes(&d.send("BDAT 1\r\nx")), ["554 5.5.1"]);
    assert!(!d.closed);
}

#[test]
fn bdat_over_the_limit() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\n");
    let chunk = format!("BDAT 800\r\n{}", "x".repeat(800));
    assert_eq!(codes(&d.send(&chunk)), ["250 2.0.0"]);
    assert_eq!(codes(&d.send(&chunk)), ["552 5.3.4"]);
    assert_eq!(codes(&d.send("BDAT 1 LAST\r\nx")), ["552 5.3.4"]);
    assert_eq!(d.discarded, [1601]);
    assert!(d.deliveries.is_empty());
    assert_eq!(codes(&d.send("NOOP\r\n")), ["250 2.0.0"]);
}

#[test]
fn lmtp_answers_each_recipient() {
    let mut d = Driver::lmtp();
    assert_eq!(d.replies, "220 mx.test LMTP threadsd ready\r\n");
    assert_eq!(codes(&d.send("EHLO c\r\n")), ["500 5.5.1"]);
    assert_eq!(codes(&d.send("HELO c\r\n")), ["500 5.5.1"]);
    assert!(d.send("LHLO c\r\n").starts_with("250-mx.test greets c\r\n"));
    // RFC 2033 §4.2: DATA without an accepted recipient is 503 in LMTP.
    let refused = d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<no@else.test>\r\nDATA\r\nRSET\r\n");
    assert_eq!(
        codes(&refused),
        ["250 2.1.0", "550 5.1.1", "503 5.5.1", "250 2.0.0"]
    );
    d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nRCPT TO:<no@else.test>\r\n");
    d.send("RCPT TO:<c+P@archive.test>\r\n");
    assert_eq!(
        d.send("DATA\r\nx\r\n.\r\n"),
        "354 end data with <CR><LF>.<CR><LF>\r\n250 2.0.0 <b@archive.test> stored as 7\r\n\
         250 2.0.0 <c+P@archive.test> stored as 7\r\n"
    );
    assert_eq!(d.deliveries.len(), 1);
    assert_eq!(d.deliveries[0].projects.len(), 2);

    d.result = Err(IngestError::Unavailable("disk full".into()));
    d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nRCPT TO:<b@archive.test>\r\n");
    assert_eq!(
        codes(&d.send("BDAT 1 LAST\r\nx")),
        ["451 4.3.0", "451 4.3.0"]
    );

    d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nRCPT TO:<c@archive.test>\r\n");
    let big = format!("BDAT 1001 LAST\r\n{}", "x".repeat(1001));
    assert_eq!(codes(&d.send(&big)), ["552 5.3.4", "552 5.3.4"]);
}

#[test]
fn delivery_results_map_to_replies() {
    let cases = [
        (
            Ok(Ack::Stored {
                id: MessageId(3),
                duplicate: true,
            }),
            "250 2.0.0 stored as 3 (duplicate)",
        ),
        (Ok(Ack::Excluded), "250 2.0.0 OK"),
        (Err(IngestError::Unavailable("x".into())), "451 4.3.0"),
        (
            Err(Refusal::TooLarge { size: 9, limit: 1 }.into()),
            "552 5.3.4 message too big",
        ),
        (
            Err(Refusal::NotMail("no header").into()),
            "554 5.6.0 message refused: not a mail",
        ),
    ];
    for (result, expected) in cases {
        let mut d = Driver::smtp();
        d.result = result;
        let replies = d.send("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\n.\r\n");
        let last = replies.lines().last().unwrap();
        assert!(last.starts_with(expected), "{last} for {expected}");
    }
}

#[test]
fn starttls_discards_injected_commands() {
    let mut d = Driver::smtp();
    d.auto_tls = false;
    let replies = d.send("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<evil@x.test>\r\n");
    assert!(
        replies.ends_with("220 2.0.0 ready to start TLS\r\n"),
        "{replies}"
    );
    assert_eq!(d.starttls, 1);
    // Plain bytes arriving before the handshake are dropped as well.
    assert_eq!(d.send("RCPT TO:<b@archive.test>\r\n"), "");
    let more = d.session.tls_started();
    d.act(more);

    // Knowledge from before TLS is gone: EHLO again.
    assert_eq!(codes(&d.send("MAIL FROM:<a@x.test>\r\n")), ["503 5.5.1"]);
    let ehlo = d.send("EHLO c\r\n");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert_eq!(codes(&d.send("STARTTLS\r\n")), ["503 5.5.1"]);
    let replies = d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        codes(&replies),
        ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    );

    let mut plain = Driver::new(
        config(),
        Protocol::Lmtp,
        PeerInfo {
            ip: None,
            trusted_network: true,
            tls: TlsState::Unavailable,
        },
    );
    assert_eq!(codes(&plain.send("STARTTLS\r\n")), ["502 5.5.1"]);
}

fn tls_client(untrusted_peer: bool) -> Driver {
    let peer = if untrusted_peer {
        untrusted(TlsState::Active)
    } else {
        trusted()
    };
    let mut d = Driver::new(config(), Protocol::Smtp, peer);
    d.peer_tls();
    d
}

impl Driver {
    fn peer_tls(&mut self) {
        if self.session.peer.tls != TlsState::Active {
            self.send("STARTTLS\r\n");
        }
        self.send("EHLO c\r\n");
    }
}

#[test]
fn auth_plain() {
    // "\0relay\0secret"
    let mut d = tls_client(true);
    assert_eq!(
        codes(&d.send("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n")),
        ["235 2.7.0"]
    );
    assert_eq!(d.auths, [("relay".to_owned(), "secret".to_owned())]);
    assert_eq!(
        codes(&d.send("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n")),
        ["503 5.5.1"]
    );
    let replies = d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\nx\r\n.\r\n");
    assert_eq!(
        codes(&replies),
        ["250 2.1.0", "250 2.1.5", "354", "250 2.0.0"]
    );
    assert_eq!(d.deliveries[0].auth.as_deref(), Some("relay"));
    assert_eq!(d.deliveries[0].trust, Trust::Trusted);

    // Continuation, without padding, and with authzid equal to authcid.
    let mut d = tls_client(true);
    assert_eq!(d.send("AUTH PLAIN\r\n"), "334 \r\n");
    assert_eq!(
        codes(&d.send("cmVsYXkAcmVsYXkAc2VjcmV0\r\n")),
        ["235 2.7.0"]
    );

    let mut d = tls_client(true);
    assert_eq!(
        codes(&d.send("AUTH PLAIN AHJlbGF5AHdyb25n\r\n")),
        ["535 5.7.8"]
    );
    assert_eq!(codes(&d.send("MAIL FROM:<a@x.test>\r\n")), ["530 5.7.0"]);
    // authzid naming someone else.
    assert_eq!(
        codes(&d.send("AUTH PLAIN b3RoZXIAcmVsYXkAc2VjcmV0\r\n")),
        ["501 5.5.2"]
    );
}

#[test]
fn auth_login_and_cancel() {
    let mut d = tls_client(true);
    assert_eq!(d.send("AUTH LOGIN\r\n"), "334 VXNlcm5hbWU6\r\n");
    assert_eq!(d.send("cmVsYXk=\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(codes(&d.send("c2VjcmV0\r\n")), ["235 2.7.0"]);

    let mut d = tls_client(true);
    assert_eq!(d.send("AUTH LOGIN cmVsYXk=\r\n"), "334 UGFzc3dvcmQ6\r\n");
    assert_eq!(codes(&d.send("*\r\n")), ["501 5.7.0"]);
    assert_eq!(
        codes(&d.send("AUTH PLAIN\r\n!!!\r\n")),
        ["334", "501 5.5.2"]
    );
    assert_eq!(codes(&d.send("AUTH CRAM-MD5\r\n")), ["504 5.5.4"]);
    assert!(d.auths.is_empty());
}

#[test]
fn auth_is_offered_only_where_it_may_be_used() {
    let mut d = Driver::new(config(), Protocol::Smtp, untrusted(TlsState::Available));
    let ehlo = d.send("EHLO c\r\n");
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert_eq!(
        codes(&d.send("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n")),
        ["538 5.7.11"]
    );

    let lenient = SessionConfig {
        auth_without_tls: true,
        ..config()
    };
    let mut d = Driver::new(lenient, Protocol::Smtp, untrusted(TlsState::Unavailable));
    assert!(d.send("EHLO c\r\n").contains("AUTH PLAIN LOGIN"));
    assert_eq!(
        codes(&d.send("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n")),
        ["235 2.7.0"]
    );

    let mut d = Driver::new(
        config(),
        Protocol::Lmtp,
        PeerInfo {
            ip: None,
            trusted_network: true,
            tls: TlsState::Unavailable,
        },
    );
    d.send("LHLO c\r\n");
    assert_eq!(codes(&d.send("AUTH PLAIN =\r\n")), ["502 5.5.1"]);

    let mut d = tls_client(false);
    d.send("MAIL FROM:<a@x.test>\r\n");
    assert_eq!(
        codes(&d.send("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n")),
        ["503 5.5.1"]
    );
}

#[test]
fn credentials_never_show_in_debug_output() {
    let mut session = Session::new(
        Arc::new(config()),
        Protocol::Smtp,
        untrusted(TlsState::Active),
    );
    session.feed(b"EHLO c\r\n");
    let actions = session.feed(b"AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n");
    let shown = format!("{actions:?} {session:?}");
    assert!(shown.contains("relay"), "{shown}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[test]
fn timeouts_and_shutdown_close_with_421() {
    let mut d = Driver::smtp();
    d.send("EHLO c\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@archive.test>\r\nDATA\r\n");
    assert_eq!(d.session.timeout(), Duration::from_secs(600));
    assert!(!d.session.is_idle());
    let actions = d.session.timed_out();
    d.act(actions);
    assert!(
        d.replies
            .ends_with("421 4.4.2 timeout, closing connection\r\n")
    );
    assert!(d.closed);
    assert!(d.deliveries.is_empty());

    let mut d = Driver::smtp();
    d.send("EHLO c\r\n");
    assert!(d.session.is_idle());
    assert_eq!(d.session.timeout(), Duration::from_secs(300));
    let actions = d.session.shutdown();
    d.act(actions);
    assert_eq!(codes(d.replies.lines().last().unwrap()), ["421 4.3.2"]);
    assert!(d.session.shutdown().is_empty());
}

#[test]
fn into_submission_builds_the_source() {
    let mut d = tls_client(true);
    d.send("AUTH PLAIN AHJlbGF5AHNlY3JldA==\r\n");
    d.send("MAIL FROM:<a@x.test>\r\nRCPT TO:<t+P.Q@archive.test>\r\nDATA\r\nx\r\n.\r\n");
    let delivery = d.deliveries.pop().unwrap();
    let submission = delivery.into_submission("192.0.2.9:4000");
    let SourceKind::Smtp { peer, helo, auth } = &submission.source.kind else {
        panic!("{:?}", submission.source)
    };
    assert_eq!(
        (peer.as_str(), helo.as_str(), auth.as_deref()),
        ("192.0.2.9:4000", "c", Some("relay"))
    );
    assert!(submission.source.received > 1_600_000_000);
    let envelope = submission.source.envelope.as_ref().unwrap();
    assert_eq!(envelope.recipients, ["t+P.Q@archive.test"]);
    assert_eq!(submission.projects, [ProjectPath::parse("P/Q").unwrap()]);
    assert_eq!(submission.raw, b"x\r\n");

    let mut d = Driver::lmtp();
    d.send("LHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<t@archive.test>\r\nDATA\r\nx\r\n.\r\n");
    let submission = d.deliveries.pop().unwrap().into_submission("unix");
    assert!(matches!(submission.source.kind, SourceKind::Lmtp { .. }));
    assert_eq!(submission.source.envelope.unwrap().mail_from, "");
}

/// A transcript that exercises most of the state machine (no STARTTLS: what it discards
/// depends on how the input was split, by design).
const TRANSCRIPT: &str = "EHLO c\r\nNOOP\r\nMAIL FROM:<a@x.test> SIZE=10\r\n\
    RCPT TO:<t+A.B@archive.test>\r\nRCPT TO:<bad@else.test>\r\nRCPT TO:<t@archive.test>\r\n\
    DATA\r\nSubject: x\r\n\r\n..dot\r\nbare\nlf\r\n.\r\nMAIL FROM:<a@x.test>\r\n\
    RCPT TO:<t@archive.test>\r\nBDAT 7\r\n\r\n.\r\nxyBDAT 0 LAST\r\nBOGUS\r\nVRFY x\r\n\
    AUTH PLAIN\r\n*\r\nRSET\r\nQUIT\r\n";

fn replay(chunks: &[&[u8]], protocol: Protocol) -> (String, Vec<Vec<u8>>) {
    let config = SessionConfig {
        auth_without_tls: true,
        ..config()
    };
    let mut d = Driver::new(config, protocol, trusted());
    for chunk in chunks {
        d.send_bytes(chunk);
    }
    (
        d.replies,
        d.deliveries.into_iter().map(|x| x.data).collect(),
    )
}

#[test]
fn the_transcript_replays() {
    let (replies, data) = replay(&[TRANSCRIPT.as_bytes()], Protocol::Smtp);
    // After the greeting and the ten lines of the EHLO answer.
    assert_eq!(
        codes(&replies)[11..],
        [
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "354",
            "250 2.0.0",
            "250 2.1.0",
            "250 2.1.5",
            "250 2.0.0",
            "250 2.0.0",
            "500 5.5.2",
            "252 2.5.0",
            "334",
            "501 5.7.0",
            "250 2.0.0",
            "221 2.0.0"
        ]
    );
    assert_eq!(
        data,
        [
            b"Subject: x\r\n\r\n.dot\r\nbare\r\nlf\r\n".to_vec(),
            b"\r\n.\r\nxy".to_vec()
        ]
    );
}

/// Commands for the noise test, to mix with random printable lines.
const COMMANDS: &[&str] = &[
    "EHLO c",
    "LHLO c",
    "MAIL FROM:<a@x.test>",
    "RCPT TO:<t@archive.test>",
    "DATA",
    ".",
    "BDAT 3",
    "BDAT 0 LAST",
    "AUTH LOGIN",
    "AUTH PLAIN",
    "STARTTLS",
    "RSET",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(
        input in proptest::collection::vec(any::<u8>(), 0..2000),
        lmtp in any::<bool>(),
    ) {
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        let config = SessionConfig { max_errors: 1000, ..config() };
        let mut d = Driver::new(config, protocol, untrusted(TlsState::Active));
        for chunk in input.chunks(97) {
            d.send_bytes(chunk);
        }
        // Every reply is a CRLF-terminated line with a three-digit code.
        for line in d.replies.split_terminator("\r\n") {
            prop_assert!(line.len() >= 3 && line.as_bytes()[..3].iter().all(u8::is_ascii_digit));
        }
    }

    #[test]
    fn command_noise_never_panics(
        lines in proptest::collection::vec(
            prop_oneof![proptest::sample::select(COMMANDS).prop_map(str::to_owned), "[ -~]{0,40}"],
            0..60,
        ),
        lmtp in any::<bool>(),
    ) {
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        let config = SessionConfig { max_errors: 1000, ..config() };
        let mut d = Driver::new(config, protocol, trusted());
        for line in lines {
            d.send(&format!("{line}\r\n"));
        }
    }

    #[test]
    fn chunking_does_not_change_the_replies(
        cuts in proptest::collection::vec(0..TRANSCRIPT.len(), 0..12),
        lmtp in any::<bool>(),
    ) {
        let protocol = if lmtp { Protocol::Lmtp } else { Protocol::Smtp };
        let transcript =
            if lmtp { TRANSCRIPT.replace("EHLO", "LHLO") } else { TRANSCRIPT.to_owned() };
        let bytes = transcript.as_bytes();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(replay(&chunks, protocol), replay(&[bytes], protocol));
    }
}
