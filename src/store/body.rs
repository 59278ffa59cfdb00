//! Message bytes inside sled: compressed once, then split into chunks keyed by message id,
//! each small enough that no tree node holding them reaches sled's side-file threshold.
//!
//! The first chunk opens with a header: one codec byte and the raw length (u64, big
//! endian). Keys grow with the message id, so new chunks land at the end of the tree
//! instead of touching leaves all over it.

use std::cell::RefCell;

use super::txn::Txn;
use super::{StoreError, schema};
use crate::model::MessageId;

/// Chunks are at most this many stored bytes. sled moves any page over a quarter of a
/// segment (256 KiB with our 1 MiB segments) into a side file it never syncs; a leaf
/// splits past 16 entries and is rarely seen with more than twenty, so 8 KiB keeps every
/// page inside the log. Smaller chunks cost more keys per message; larger ones need
/// larger segments, and sled keeps several segment-sized write buffers in memory.
pub const CHUNK_SIZE: usize = 8 * 1024;

/// zstd's default level: most of the ratio at a few hundred MB/s on one core.
const ZSTD_LEVEL: i32 = 3;

const HEADER_LEN: usize = 9;
const PLAIN: u8 = 0;
const ZSTD: u8 = 1;

/// A message's bytes, compressed and cut into chunks, ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub raw_len: u64,
    chunks: Vec<Vec<u8>>,
}

impl Encoded {
    /// Bytes the chunks take, header included.
    pub fn stored_len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }
}

/// Compresses (when that makes it smaller) and chunks a message. Runs on the submitting
/// task, not on the committer, so that messages are compressed in parallel.
pub fn encode(raw: &[u8]) -> Result<Encoded, StoreError> {
    let compressed = compress(raw).map_err(|e| StoreError::Io {
        path: "zstd".into(),
        source: e,
    })?;
    let (codec, body) = if compressed.len() < raw.len() {
        (ZSTD, compressed.as_slice())
    } else {
        (PLAIN, raw)
    };
    let mut stored = Vec::with_capacity(HEADER_LEN + body.len());
    stored.push(codec);
    stored.extend_from_slice(&(raw.len() as u64).to_be_bytes());
    stored.extend_from_slice(body);
    Ok(Encoded {
        raw_len: raw.len() as u64,
        chunks: stored.chunks(CHUNK_SIZE).map(<[u8]>::to_vec).collect(),
    })
}

thread_local! {
    /// Each thread's compression context, kept between messages: making a fresh one for
    /// each message cost more than compressing a 4 KiB message (zstd allocates and
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

/// Writes a message's chunks.
pub fn put(txn: &mut Txn<'_>, id: MessageId, body: Encoded) {
    for (n, chunk) in body.chunks.into_iter().enumerate() {
        txn.put_raw(schema::chunk(id, n as u32), chunk);
    }
}

/// Removes a message's chunks.
pub fn remove(txn: &mut Txn<'_>, id: MessageId) -> Result<(), StoreError> {
    for (key, _) in txn.scan_prefix(&schema::chunks_of(id))? {
        txn.remove(key);
    }
    Ok(())
}

fn corrupt(detail: String) -> StoreError {
    StoreError::Corrupt {
        what: "message bytes",
        detail,
    }
}

/// Reads a message's bytes back from the tree.
pub fn read(tree: &sled::Tree, id: MessageId) -> Result<Option<Vec<u8>>, StoreError> {
    let mut stored = Vec::new();
    for item in tree.scan_prefix(schema::chunks_of(id)) {
        let (_, chunk) = item?;
        stored.extend_from_slice(&chunk);
    }
    if stored.is_empty() {
        return Ok(None);
    }
    let Some((header, body)) = stored.split_at_checked(HEADER_LEN) else {
        return Err(corrupt(format!(
            "{} bytes, shorter than the header",
            stored.len()
        )));
    };
    let raw_len = u64::from_be_bytes(header[1..].try_into().expect("8 header bytes"));
    let raw = match header[0] {
        PLAIN => body.to_vec(),
        ZSTD => {
            zstd::bulk::decompress(body, raw_len as usize).map_err(|e| corrupt(e.to_string()))?
        }
        other => return Err(corrupt(format!("unknown codec {other}"))),
    };
    if raw.len() as u64 != raw_len {
        return Err(corrupt(format!(
            "{} bytes where {raw_len} were stored",
            raw.len()
        )));
    }
    Ok(Some(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_under_the_limit_and_compression_is_skipped_when_useless() {
        let text = b"a line of mail text\r\n".repeat(10_000);
        let encoded = encode(&text).unwrap();
        assert!(encoded.stored_len() < text.len() / 10);
        assert_eq!(encoded.chunks[0][0], ZSTD);

        let mut noise = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.push(x as u8);
        }
        let encoded = encode(&noise).unwrap();
        assert_eq!(encoded.chunks[0][0], PLAIN);
        assert_eq!(encoded.stored_len(), noise.len() + HEADER_LEN);
        assert!(encoded.chunks.iter().all(|c| c.len() <= CHUNK_SIZE));
        assert_eq!(
            encoded.chunks.len(),
            (noise.len() + HEADER_LEN).div_ceil(CHUNK_SIZE)
        );
    }
}
