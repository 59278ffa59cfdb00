//! Drives an SMTP or LMTP session with arbitrary client bytes, answering its requests with
//! fixed results: it must never panic, and must go quiet once it closed.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use threadsd::config::RecipientPattern;
use threadsd::ingest::{Ack, IngestError, Refusal};
use threadsd::model::{MessageId, ProjectPath};
use threadsd::smtp::{Action, PeerInfo, Protocol, Session, SessionConfig, TlsState};

/// Separates the client's writes in the input, so that splits are fuzzed too.
const SPLIT: u8 = 0xff;

fuzz_target!(|data: &[u8]| {
    let Some((&setup, input)) = data.split_first() else {
        return;
    };
    let mut session = session(setup);
    let mut deliveries = 0usize;
    for chunk in input.split(|&b| b == SPLIT) {
        let actions = session.feed(chunk);
        if drive(&mut session, actions, &mut deliveries) {
            assert!(
                session.feed(b"NOOP\r\n").is_empty(),
                "a closed session answered"
            );
            return;
        }
    }
    if setup & 0x80 != 0 {
        let actions = session.timed_out();
        drive(&mut session, actions, &mut deliveries);
    }
});

/// A session whose protocol, trust, TLS and limits come from the bits of `setup`.
fn session(setup: u8) -> Session {
    let config = SessionConfig {
        hostname: "fuzz.test".into(),
        accept_recipients: vec![RecipientPattern::Any],
        allow_networks: Vec::new(),
        require_auth: setup & 0x04 != 0,
        auth_without_tls: setup & 0x08 != 0,
        max_message_size: if setup & 0x10 != 0 { 64 } else { 1 << 20 },
        max_recipients: 4,
        max_errors: if setup & 0x20 != 0 { 3 } else { 1000 },
        default_project: ProjectPath::parse("Inbox").expect("a valid literal path"),
        command_timeout: Duration::from_secs(300),
        data_timeout: Duration::from_secs(600),
        shutdown_grace: Duration::from_secs(30),
    };
    let protocol = if setup & 0x01 != 0 {
        Protocol::Lmtp
    } else {
        Protocol::Smtp
    };
    let tls = match (setup >> 1) & 0x03 {
        0 => TlsState::Unavailable,
        1 => TlsState::Available,
        _ => TlsState::Active,
    };
    let peer = PeerInfo {
        ip: None,
        trusted_network: setup & 0x40 != 0,
        tls,
    };
    Session::new(Arc::new(config), protocol, peer)
}

/// Carries out the actions as a driver would; true once the session closed.
fn drive(session: &mut Session, actions: Vec<Action>, deliveries: &mut usize) -> bool {
    let mut queue = std::collections::VecDeque::from(actions);
    while let Some(action) = queue.pop_front() {
        match action {
            Action::Reply(bytes) => assert!(bytes.ends_with(b"\r\n"), "a reply without CRLF"),
            Action::Deliver(delivery) => {
                assert!(
                    !delivery.projects.is_empty(),
                    "a delivery without a project"
                );
                *deliveries += 1;
                queue.extend(session.delivered(result(*deliveries)));
            }
            Action::Authenticate { password, .. } => {
                let ok = password.expose().len() % 2 == 0;
                queue.extend(session.authenticated(ok));
            }
            Action::StartTls => queue.extend(session.tls_started()),
            Action::Discarded { .. } => {}
            Action::Close => return true,
        }
    }
    false
}

/// Every kind of store answer, in turn.
fn result(n: usize) -> Result<Ack, IngestError> {
    match n % 4 {
        0 => Ok(Ack::Stored {
            id: MessageId(n as u64),
            duplicate: n % 8 == 0,
        }),
        1 => Ok(Ack::Excluded),
        2 => Err(IngestError::Unavailable("fuzz".into())),
        _ => Err(IngestError::Refused(Refusal::NotMail("fuzz"))),
    }
}
