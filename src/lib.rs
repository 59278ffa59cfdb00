//! threadsd: the mail-sink daemon of Threads. It ingests journaled and copied mail over
//! SMTP, LMTP, IMAP and by pulling, classifies it against the address book's privacy flags,
//! stores it durably in sled, and serves it to Threads users over IMAP.

pub mod admin;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod ingest;
pub mod model;
pub mod net;
pub mod policy;
pub mod sender_auth;
pub mod smtp;
pub mod store;
pub mod telemetry;
