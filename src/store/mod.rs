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
use std::sync::{Arc, Mutex};

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
}

impl StoreError {
    pub fn refused(message: impl Into<String>) -> StoreError {
        StoreError::Refused(message.into())
    }
}

/// An open store. Cheap to clone; every clone shares the one sled database.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    /// sled's log, opened again so that a commit can `fdatasync` it: sled itself only
    /// calls `sync_file_range`, which leaves metadata and the drive cache unsynced.
    log: File,
    /// Side files already synced; see `sync_blobs`.
    synced_blobs: Mutex<SyncedBlobs>,
    /// Durable syncs made since the store was opened.
    syncs: std::sync::atomic::AtomicU64,
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
        let store = Store {
            inner: Arc::new(Inner {
                path: path.clone(),
                db,
                tree,
                log,
                synced_blobs: Mutex::new(SyncedBlobs::default()),
                syncs: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        store.check_schema()?;
        Ok(store)
    }

    fn check_schema(&self) -> Result<(), StoreError> {
        let key = schema::meta("schema");
        match self.inner.tree.get(&key)? {
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
                self.inner
                    .tree
                    .insert(key, codec::encode(&SCHEMA_VERSION))?;
                self.sync()?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.inner.tree
    }

    pub(crate) fn db(&self) -> &sled::Db {
        &self.inner.db
    }

    /// Makes everything written so far durable: sled's flush, then `fdatasync` of its log
    /// and of any side files (ARCHITECTURE.md §3).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.inner.db.flush()?;
        self.inner
            .log
            .sync_data()
            .map_err(|e| io_error(&self.inner.path.join("sled").join("db"), e))?;
        self.sync_blobs()?;
        self.inner
            .syncs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Durable syncs made since the store was opened: with group commit, far fewer than
    /// the messages stored under load.
    pub fn syncs(&self) -> u64 {
        self.inner.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// sled writes pages over its threshold to `blobs/` and never syncs them. Our pages
    /// stay under it, so this normally finds nothing; it is the guard should one not.
    fn sync_blobs(&self) -> Result<(), StoreError> {
        let dir = self.inner.path.join("sled").join("blobs");
        let mut synced = self
            .inner
            .synced_blobs
            .lock()
            .unwrap_or_else(|p| p.into_inner());
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

    /// Bytes sled uses on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.inner.db.size_on_disk()?)
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
