//! Binding TCP and Unix listening sockets, and the limits on concurrent connections.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::ListenAddr;

/// Who may connect to a Unix listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixAccess {
    /// Permission bits of the socket file.
    pub mode: u32,
    /// The group the socket file is given; the daemon's own when `None`.
    pub group: Option<u32>,
}

impl Default for UnixAccess {
    /// The owner and its group (the MTA's user, added to the group) may connect.
    fn default() -> Self {
        UnixAccess {
            mode: 0o660,
            group: None,
        }
    }
}

/// A bound listening socket. A Unix socket's file is removed when the listener is dropped.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
    },
}

/// An accepted connection.
#[derive(Debug)]
pub enum Connection {
    Tcp(TcpStream, SocketAddr),
    Unix(UnixStream),
}

impl Listener {
    // TODO(systemd): take sockets passed by socket activation (LISTEN_FDS) as well.
    /// Binds `addr`. For a Unix socket the parent directory is created, a stale socket
    /// file left by a dead process is removed (one that still answers is an error), and
    /// the file gets the default [`UnixAccess`].
    pub async fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        Listener::bind_with(addr, UnixAccess::default()).await
    }

    /// [`Listener::bind`], with a Unix socket's file given `access`.
    pub async fn bind_with(addr: &ListenAddr, access: UnixAccess) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(addr) => TcpListener::bind(addr).await.map(Listener::Tcp),
            ListenAddr::Unix(path) => bind_unix(path, access),
        }
    }

    /// Where it listens; with the actual port when bound to port 0.
    pub fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(listener) => listener.local_addr().map(ListenAddr::Tcp),
            Listener::Unix { path, .. } => Ok(ListenAddr::Unix(path.clone())),
        }
    }

    pub async fn accept(&self) -> io::Result<Connection> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Replies are small and flushed deliberately; do not let Nagle hold them.
                stream.set_nodelay(true)?;
                Ok(Connection::Tcp(stream, peer))
            }
            Listener::Unix { listener, .. } => listener
                .accept()
                .await
                .map(|(stream, _)| Connection::Unix(stream)),
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix { path, .. } = self {
            // Nothing to do if it is already gone.
            let _ = std::fs::remove_file(path);
        }
    }
}

fn bind_unix(path: &Path, access: UnixAccess) -> io::Result<Listener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                let message = format!("{} is in use by another process", path.display());
                return Err(io::Error::new(io::ErrorKind::AddrInUse, message));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            let message = format!("{} exists and is not a socket", path.display());
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, message));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    let listener = Listener::Unix {
        listener,
        path: path.to_owned(),
    };
    // Dropping `listener` on an error removes the file again.
    if let Some(gid) = access.group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            let hint = "threadsd must run as root or be a member of that group";
            io::Error::new(
                e.kind(),
                format!(
                    "cannot give {} to group {gid}: {e} ({hint})",
                    path.display()
                ),
            )
        })?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode))?;
    Ok(listener)
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    #[error("too many connections")]
    Total,
    #[error("too many connections from {0}")]
    PerClient(IpAddr),
}

/// Counts open connections, overall and per client IP address. Clones share the counts,
/// so one limiter serves every listener.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    inner: Arc<LimiterInner>,
}

#[derive(Debug)]
struct LimiterInner {
    max_total: usize,
    max_per_client: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Invariant: no entry is zero.
    per_client: HashMap<IpAddr, usize>,
}

/// One open connection; dropping it frees its place.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<LimiterInner>,
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_client: usize) -> ConnectionLimiter {
        let inner = LimiterInner {
            max_total,
            max_per_client,
            counts: Mutex::default(),
        };
        ConnectionLimiter {
            inner: Arc::new(inner),
        }
    }

    /// A place for a connection from `ip` (None for a Unix socket, which counts only
    /// towards the total).
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> Result<ConnectionPermit, LimitExceeded> {
        // An IPv4 client on a dual-stack socket is the same client as over IPv4.
        let ip = ip.map(|ip| ip.to_canonical());
        let mut counts = self
            .inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if counts.total >= self.inner.max_total {
            return Err(LimitExceeded::Total);
        }
        if let Some(ip) = ip {
            if counts.per_client.get(&ip).copied().unwrap_or(0) >= self.inner.max_per_client {
                return Err(LimitExceeded::PerClient(ip));
            }
            *counts.per_client.entry(ip).or_insert(0) += 1;
        }
        counts.total += 1;
        Ok(ConnectionPermit {
            limiter: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.inner
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self
            .limiter
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        let Some(ip) = self.ip else { return };
        if let Some(n) = counts.per_client.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_client.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_total_and_per_client() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let p1 = limiter.try_acquire(Some(a)).unwrap();
        let _p2 = limiter.try_acquire(Some(mapped)).unwrap();
        assert_eq!(
            limiter.try_acquire(Some(a)).unwrap_err(),
            LimitExceeded::PerClient(a)
        );
        let _p3 = limiter.try_acquire(None).unwrap();
        assert_eq!(
            limiter.try_acquire(Some(b)).unwrap_err(),
            LimitExceeded::Total
        );
        drop(p1);
        assert_eq!(limiter.active(), 2);
        let _p4 = limiter.try_acquire(Some(a)).unwrap();
    }

    #[tokio::test]
    async fn unix_socket_gets_the_mode_and_group_asked_for() {
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lmtp.sock");
        // The directory's group: one the test may give the socket without privilege.
        let gid = std::fs::metadata(dir.path()).unwrap().gid();
        let access = UnixAccess {
            mode: 0o600,
            group: Some(gid),
        };
        let listener = Listener::bind_with(&ListenAddr::Unix(path.clone()), access)
            .await
            .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.gid(), gid);
        drop(listener);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn unix_socket_replaces_a_stale_file_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lmtp.sock");
        let addr = ListenAddr::Unix(path.clone());
        let live = Listener::bind(&addr).await.unwrap();
        let err = Listener::bind(&addr).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(live);
        assert!(!path.exists());

        // std's listener leaves its file behind, as a crashed process does.
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists());
        let stale_addr = ListenAddr::Unix(stale.clone());
        let rebound = Listener::bind(&stale_addr).await.unwrap();
        assert_eq!(rebound.local_addr().unwrap(), stale_addr);

        std::fs::write(dir.path().join("plain"), "x").unwrap();
        let err = Listener::bind(&ListenAddr::Unix(dir.path().join("plain")))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }
}
