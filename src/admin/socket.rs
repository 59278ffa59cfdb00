//! The admin socket: length-prefixed JSON frames over a Unix socket, so that the CLI can
//! manage a running daemon (sled lets one process open a store).
//!
//! A request frame is `{"id": N, "request": {...}}`; an `Ingest` request is followed by
//! one frame with the message bytes. Each answer is `{"id": N, "result": ...}`. Requests
//! are served concurrently and answered as they finish, so a client may keep many in
//! flight on one connection.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot, watch};

use super::{Admin, AdminError, Request, Response};

/// Requests one connection may have in progress at once.
const IN_FLIGHT: usize = 256;

#[derive(Debug, Serialize, Deserialize)]
struct RequestFrame {
    id: u64,
    request: Request,
}

#[derive(Debug, Serialize, Deserialize)]
struct ResponseFrame {
    id: u64,
    result: Result<Response, AdminError>,
}

async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        let msg = format!("frame of {len} bytes is over the limit of {max}");
        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

async fn write_frame<W: AsyncWriteExt + Unpin>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(payload).await
}

/// Binds the admin socket: mode 0600, a stale socket file replaced, a live one refused.
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            let msg = format!("{} answers: another threadsd is running", path.display());
            return Err(io::Error::new(io::ErrorKind::AddrInUse, msg));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin connections until `shutdown` turns true.
pub async fn serve(
    listener: UnixListener,
    admin: Admin,
    max_frame: usize,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let admin = admin.clone();
                    tokio::spawn(async move {
                        if let Err(e) = connection(stream, admin, max_frame).await {
                            tracing::debug!(error = %e, "admin connection ended");
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "admin socket accept failed"),
            },
            _ = shutdown.changed() => break,
        }
    }
}

async fn connection(stream: UnixStream, admin: Admin, max_frame: usize) -> io::Result<()> {
    let (mut reader, mut writer) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(IN_FLIGHT);
    let write_task = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if write_frame(&mut writer, &frame).await.is_err() {
                break;
            }
        }
    });
    let window = Arc::new(Semaphore::new(IN_FLIGHT));

    while let Some(frame) = read_frame(&mut reader, max_frame).await? {
        let RequestFrame { id, request } = serde_json::from_slice(&frame).map_err(|e| {
            // The stream cannot be resynchronised after a frame we do not understand.
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad request frame: {e}"),
            )
        })?;
        let raw = match request {
            Request::Ingest { .. } => read_frame(&mut reader, max_frame)
                .await?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no message"))?,
            _ => Vec::new(),
        };
        let permit = window
            .clone()
            .acquire_owned()
            .await
            .map_err(io::Error::other)?;
        let admin = admin.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = admin.handle(request, raw).await;
            let frame = ResponseFrame { id, result };
            // Serialising these plain types cannot fail.
            let bytes = serde_json::to_vec(&frame).unwrap_or_default();
            let _ = tx.send(bytes).await;
            drop(permit);
        });
    }
    drop(tx);
    let _ = write_task.await;
    Ok(())
}

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Response, AdminError>>>>>;

/// A connection to a running daemon's admin socket. Calls may run concurrently.
#[derive(Debug)]
pub struct AdminClient {
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
}

impl AdminClient {
    /// Connects; `Ok(None)` when no daemon listens at `path`.
    pub async fn connect(path: &Path) -> io::Result<Option<AdminClient>> {
        let stream = match UnixStream::connect(path).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let (mut reader, writer) = stream.into_split();
        let pending: Pending = Arc::default();
        let table = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) = read_frame(&mut reader, usize::MAX >> 1).await {
                let Ok(ResponseFrame { id, result }) = serde_json::from_slice(&frame) else {
                    break;
                };
                let waiter = table.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(result);
                }
            }
            // Waiters still in the table see their channel close.
            table.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        Ok(Some(AdminClient {
            writer: Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
        }))
    }

    /// Sends one request (with the message bytes of an `Ingest`) and awaits its answer.
    pub async fn call(&self, request: Request, raw: Vec<u8>) -> Result<Response, AdminError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let is_ingest = matches!(request, Request::Ingest { .. });
        let frame = serde_json::to_vec(&RequestFrame { id, request })
            .map_err(|e| AdminError::Store(format!("cannot encode request: {e}")))?;
        let lost = |e: io::Error| AdminError::Store(format!("admin socket: {e}"));
        {
            let mut w = self.writer.lock().await;
            write_frame(&mut *w, &frame).await.map_err(lost)?;
            if is_ingest {
                write_frame(&mut *w, &raw).await.map_err(lost)?;
            }
        }
        rx.await
            .map_err(|_| AdminError::Store("the daemon closed the admin connection".into()))?
    }
}
