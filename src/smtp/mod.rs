//! SMTP and LMTP push ingestion: a sans-I/O session state machine ([`Session`]), one file
//! per verb with logic, and the tokio listener that drives sessions over sockets.
//!
//! Wiring: build one [`SessionConfig::new`] from the configuration, one
//! [`crate::net::TlsStore`], one [`crate::net::ConnectionLimiter`] and one [`AuthLimiter`] for
//! the daemon, then
//! for every bound [`crate::net::Listener`] run a [`Server`] of the matching
//! [`ListenerKind`] with the daemon's [`Backend`] and a shutdown `watch` channel.

mod auth;
mod auth_limit;
mod bdat;
mod data;
mod delivery;
mod ehlo;
pub mod listener;
mod mail;
mod rcpt;
mod reply;
mod session;
mod starttls;

pub use auth_limit::AuthLimiter;
pub use delivery::{Body, Delivery, outcome};
pub use listener::{Backend, ListenerKind, Server, StoredMessage};
pub use session::{
    Action, MAX_AUTH_LINE, MAX_COMMAND_LINE, PeerInfo, Protocol, Session, SessionConfig, TlsState,
};

#[cfg(test)]
mod tests;
