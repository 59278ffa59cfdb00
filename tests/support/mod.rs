//! The integration-test harness: a real `threadsd` on ephemeral loopback ports, and the real
//! peers it works with (a private Postfix, smtp-sink, Dovecot, swaks) in temporary directories,
//! and a raw SMTP client for the bytes no peer sends.
//!
//! Every peer is a Debian program. A missing one fails the test with the package to install
//! (`tests/peers/install.sh` installs them all); nothing here skips.

#![allow(
    dead_code,
    unused_imports,
    reason = "each test binary uses a different part of the harness"
)]

mod client;
mod daemon;
mod dovecot;
mod json;
mod postfix;
mod process;
mod sink;

pub use client::{SmtpClient, status};
pub use daemon::{Daemon, Ports};
pub use dovecot::Dovecot;
pub use json::{set, sorted, strings};
pub use postfix::{JOURNAL_ADDRESS, Journal, Postfix};
pub use process::{free_port, require, swaks, wait_for_port, wait_until};
pub use sink::{SinkProtocol, SmtpSink};
