//! Message bytes inside sled: compressed once, then split into chunks small enough that no
//! tree node holding them reaches sled's side-file (blob) threshold.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use super::txn::Txn;
use super::{StoreError, schema};

/// Chunks are at most this many stored bytes. sled moves any page over a quarter of a
/// segment (512 KiB with our 2 MiB segments) into a side file it never syncs; a leaf
/// holds at most a few dozen entries before it splits, so 16 KiB keeps every page well
/// inside the log.
pub const CHUNK_SIZE: usize = 16 * 1024;

/// zstd's default level: most of the ratio at a few hundred MB/s on one core.
const ZSTD_LEVEL: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Codec {
    /// Stored as received: compression did not make it smaller.
    Plain,
    Zstd,
}

/// What the store knows of one distinct message body.
///
/// Invariant: `refs` is the number of message records whose `content_hash` is this blob's;
/// the blob and its chunks go when it drops to zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobInfo {
    pub refs: u32,
    pub raw_len: u64,
    pub stored_len: u64,
    pub chunks: u32,
    pub codec: Codec,
}

/// Writes the bytes under their hash, or takes one more reference to identical bytes
/// stored before.
pub fn put(txn: &mut Txn<'_>, hash: &[u8; 32], raw: &[u8]) -> Result<(), StoreError> {
    let key = schema::blob(hash);
    if let Some(mut info) = txn.get::<BlobInfo>("blob", &key)? {
        info.refs += 1;
        txn.put(key, &info);
        return Ok(());
    }

    let compressed = compress(raw).map_err(|e| StoreError::Io {
        path: "zstd".into(),
        source: e,
    })?;
    let (codec, stored) = if compressed.len() < raw.len() {
        (Codec::Zstd, compressed.as_slice())
    } else {
        (Codec::Plain, raw)
    };

    let mut chunks = 0u32;
    for piece in stored.chunks(CHUNK_SIZE) {
        txn.put_raw(schema::chunk(hash, chunks), piece.to_vec());
        chunks += 1;
    }
    let info = BlobInfo {
        refs: 1,
        raw_len: raw.len() as u64,
        stored_len: stored.len() as u64,
        chunks,
        codec,
    };
    txn.put(key, &info);
    Ok(())
}

thread_local! {
    /// The committer's compression context, kept between messages: making a fresh one
    /// for each message cost more than compressing a 4 KiB message (zstd allocates and
    /// clears its tables and probes the CPU, which traps to the hypervisor in a VM).
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
}

fn compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let compressor = match slot {
            Some(c) => c,
            None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        compressor.compress(raw)
    })
}

/// Drops one reference; removes the bytes with the last.
pub fn release(txn: &mut Txn<'_>, hash: &[u8; 32]) -> Result<(), StoreError> {
    let key = schema::blob(hash);
    let Some(mut info) = txn.get::<BlobInfo>("blob", &key)? else {
        return Ok(());
    };
    if info.refs > 1 {
        info.refs -= 1;
        txn.put(key, &info);
        return Ok(());
    }
    for n in 0..info.chunks {
        txn.remove(schema::chunk(hash, n));
    }
    txn.remove(key);
    Ok(())
}

/// Reads the bytes back from the tree.
pub fn read(tree: &sled::Tree, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
    let Some(info_bytes) = tree.get(schema::blob(hash))? else {
        return Ok(None);
    };
    let info: BlobInfo = super::codec::decode("blob", &info_bytes)?;
    let mut stored = Vec::with_capacity(info.stored_len as usize);
    for n in 0..info.chunks {
        let Some(piece) = tree.get(schema::chunk(hash, n))? else {
            let detail = format!("chunk {n} of {} missing", info.chunks);
            return Err(StoreError::Corrupt {
                what: "message bytes",
                detail,
            });
        };
        stored.extend_from_slice(&piece);
    }
    let raw = match info.codec {
        Codec::Plain => stored,
        Codec::Zstd => zstd::bulk::decompress(&stored, info.raw_len as usize).map_err(|e| {
            StoreError::Corrupt {
                what: "message bytes",
                detail: e.to_string(),
            }
        })?,
    };
    if raw.len() as u64 != info.raw_len {
        let detail = format!("{} bytes where {} were stored", raw.len(), info.raw_len);
        return Err(StoreError::Corrupt {
            what: "message bytes",
            detail,
        });
    }
    Ok(Some(raw))
}
