//! Network plumbing shared by the listeners: TLS configurations (only this module builds
//! them), binding TCP and Unix sockets, and connection limits.

mod listen;
mod tls;

pub use listen::{
    Connection, ConnectionLimiter, ConnectionPermit, LimitExceeded, Listener, UnixAccess,
};
pub use tls::{TlsError, TlsStore};

#[cfg(test)]
pub(crate) use tls::test_client_config;

/// The machine's host name, for greetings and the generated certificate; `localhost` when
/// the system does not say.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_owned())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
