//! The only code that knows sled: the schema, value codecs, the committer that makes
//! writes durable, and the queries every other module uses.

mod body;
mod codec;
mod committer;
mod directory;
mod messages;
mod query;
mod schema;
mod txn;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

pub use body::{Encoded, encode as encode_body};
pub use committer::{CommitOptions, Committer};
pub use directory::{ChannelChange, NewContact, NewUser};
pub use messages::Membership;
pub use query::{MessageFilter, MessageView, Stats};
pub use txn::Txn;

/// sled's segment size. Fixed at creation (sled records it in its `conf` file); 1 MiB puts
/// the side-file threshold at 256 KiB, above any page we write (see `body`). Each of
/// sled's write buffers is a segment: 2 MiB segments measured 46 MiB more peak memory in a
/// 100 KiB import, and 512 KiB (with 4 KiB chunks) was slower and larger still.
const SEGMENT_SIZE: usize = 1 << 20;

/// The version of the key layout in `schema`.
const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sled::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// A management request that cannot be carried out as asked; nothing was changed.
    #[error("{0}")]
    Refused(String),
    #[error("the store at {0} is in use by another process (is threadsd serve running?)")]
    Locked(PathBuf),
    #[error("the committer has stopped")]
    Stopped,
    /// A failed instance is being replaced (see `Store::reopen`); try again shortly.
    #[error("the store is being reopened after a failed write")]
    Reopening,
}

impl StoreError {
    pub fn refused(message: impl Into<String>) -> StoreError {
        StoreError::Refused(message.into())
    }

    /// A write failed for want of room: a full disk, a quota, a file size limit.
    pub fn is_out_of_space(&self) -> bool {
        use std::io::ErrorKind::{FileTooLarge, QuotaExceeded, StorageFull};
        let io = match self {
            StoreError::Db(sled::Error::Io(io)) | StoreError::Io { source: io, .. } => io,
            _ => return false,
        };
        matches!(io.kind(), StorageFull | QuotaExceeded | FileTooLarge)
    }
}

/// An open store. Cheap to clone; every clone shares the one sled database.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: StoreOptions,
    /// The open sled instance; `None` only while a failed one is being replaced (see
    /// [`Store::reopen`]).
    open: RwLock<Option<Arc<Handles>>>,
    /// A write failed for want of space: sled refuses every write after one, so the
    /// committer replaces the instance once there may be room again.
    needs_reopen: AtomicBool,
    /// Durable syncs made since the store was opened.
    syncs: AtomicU64,
}

/// One open sled instance and what syncing it needs.
#[derive(Debug)]
pub(crate) struct Handles {
    pub(crate) db: sled::Db,
    pub(crate) tree: sled::Tree,
    /// sled's log, opened again so that a commit can `fdatasync` it: sled itself only
    /// calls `sync_file_range`, which leaves metadata and the drive cache unsynced.
    log: File,
    /// Side files already synced; see `sync_blobs`.
    synced_blobs: Mutex<SyncedBlobs>,
}

#[derive(Debug, Default)]
struct SyncedBlobs {
    names: HashSet<std::ffi::OsString>,
    /// The side-file directory's mtime when it was last read.
    mtime: Option<std::time::SystemTime>,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    pub cache_bytes: u64,
}

impl Store {
    /// Opens or creates the store, recovering sled's log after a crash.
    pub fn open(options: &StoreOptions) -> Result<Store, StoreError> {
        let handles = Handles::open(options)?;
        let store = Store {
            inner: Arc::new(Inner {
                options: options.clone(),
                open: RwLock::new(Some(Arc::new(handles))),
                needs_reopen: AtomicBool::new(false),
                syncs: AtomicU64::new(0),
            }),
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let key = schema::meta("schema");
        let tree = self.tree()?;
        match tree.get(&key)? {
            Some(v) => {
                let version: u32 = codec::decode("schema version", &v)?;
                if version != SCHEMA_VERSION {
                    let detail = format!("schema {version}, this threadsd reads {SCHEMA_VERSION}");
                    return Err(StoreError::Corrupt {
                        what: "store",
                        detail,
                    });
                }
            }
            None => {
                tree.insert(key, codec::encode(&SCHEMA_VERSION))?;
                self.sync()?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.options.path
    }

    /// The open sled instance. Work that must see one instance throughout (a batch, a
    /// sync) holds on to what this returns.
    pub(crate) fn handles(&self) -> Result<Arc<Handles>, StoreError> {
        let open = self
            .inner
            .open
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        open.clone().ok_or(StoreError::Reopening)
    }

    pub(crate) fn tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.handles()?.tree.clone())
    }

    /// Makes everything written so far durable: sled's flush, then `fdatasync` of its log
    /// and of any side files (ARCHITECTURE.md §3).
    pub fn sync(&self) -> Result<(), StoreError> {
        let handles = self.handles()?;
        self.sync_handles(&handles)
    }

    /// [`Store::sync`] of one instance: a batch is durable only if the instance it was
    /// applied to is synced, not whichever is open by then.
    pub(crate) fn sync_handles(&self, handles: &Handles) -> Result<(), StoreError> {
        let result = handles.sync(&self.inner.options.path);
        if let Err(e) = &result {
            self.note_failure(e);
        } else {
            self.inner.syncs.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Durable syncs made since the store was opened: with group commit, far fewer than
    /// the messages stored under load.
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(Ordering::Relaxed)
    }

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.handles()?.db.size_on_disk()?)
    }

    /// Remembers a failed write. A full disk, a quota or a file size limit fail sled's log
    /// writes before anything of them is on disk, and sled then refuses every write until
    /// it is opened again: such a failure asks for [`Store::reopen`]. Any other failure
    /// (an I/O error, say) leaves the store failed until the daemon is restarted, since
    /// after a failed sync the page cache cannot be trusted to match the disk.
    pub(crate) fn note_failure(&self, error: &StoreError) {
        if error.is_out_of_space() {
            self.inner.needs_reopen.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn needs_reopen(&self) -> bool {
        self.inner.needs_reopen.load(Ordering::Relaxed)
    }

    /// Replaces a failed sled instance with a fresh one opened from disk, which holds
    /// exactly what was synced. sled locks its files until every handle on the old
    /// instance is gone, so this fails (and is tried again later) while one is in use.
    pub(crate) fn reopen(&self) -> Result<(), StoreError> {
        let old = self
            .inner
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        drop(old);
        let handles = Handles::open(&self.inner.options)?;
        *self
            .inner
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(handles));
        self.inner.needs_reopen.store(false, Ordering::Relaxed);
        Ok(())
    }
}

impl Handles {
    fn open(options: &StoreOptions) -> Result<Handles, StoreError> {
        let path = &options.path;
        std::fs::create_dir_all(path).map_err(|e| io_error(path, e))?;
        let db = sled::Config::new()
            .path(path.join("sled"))
            .cache_capacity(options.cache_bytes)
            .segment_size(SEGMENT_SIZE)
            // Every commit flushes and syncs; sled's own timer would only add syncs.
            .flush_every_ms(None)
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked(path.clone())
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked(path.clone())
                }
                other => StoreError::Db(other),
            })?;
        let tree = db.open_tree("threadsd")?;
        let log_path = path.join("sled").join("db");
        let log = File::open(&log_path).map_err(|e| io_error(&log_path, e))?;
        Ok(Handles {
            db,
            tree,
            log,
            synced_blobs: Mutex::new(SyncedBlobs::default()),
        })
    }

    fn sync(&self, path: &Path) -> Result<(), StoreError> {
        self.db.flush()?;
        self.log
            .sync_data()
            .map_err(|e| io_error(&path.join("sled").join("db"), e))?;
        self.sync_blobs(path)
    }

    /// sled writes pages over its threshold to `blobs/` and never syncs them. Our pages
    /// stay under it, so this normally finds nothing; it is the guard should one not.
    fn sync_blobs(&self, path: &Path) -> Result<(), StoreError> {
        let dir = path.join("sled").join("blobs");
        let mut synced = self
            .synced_blobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A new file changes the directory's mtime. The clock behind mtime may be coarse,
        // so an unchanged mtime is trusted only once it is a second old.
        let Ok(mtime) = std::fs::metadata(&dir).and_then(|m| m.modified()) else {
            return Ok(());
        };
        let settled = mtime.elapsed().is_ok_and(|age| age.as_secs() >= 1);
        if settled && synced.mtime == Some(mtime) {
            return Ok(());
        }
        synced.mtime = Some(mtime);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        let mut any = false;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let name = entry.file_name();
            if synced.names.contains(&name) {
                continue;
            }
            let path = entry.path();
            match File::open(&path) {
                Ok(f) => f.sync_data().map_err(|e| io_error(&path, e))?,
                // sled removes side files it no longer needs at any moment.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&path, e)),
            }
            tracing::debug!(file = %path.display(), "synced a sled side file");
            synced.names.insert(name);
            any = true;
        }
        if any {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_error(&dir, e))?;
        }
        Ok(())
    }
}

fn io_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests;
