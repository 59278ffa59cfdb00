//! A write set over the tree: reads see earlier writes of the same batch, and the whole
//! batch reaches sled as one atomic `Batch`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{StoreError, codec};

/// Pending writes: `None` removes the key.
pub type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Keys with their values, in key order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One job's view of the store inside a commit batch.
///
/// Reads look at this job's writes, then at the writes of earlier jobs of the batch, then
/// at the tree. A job that fails drops its own writes and leaves the batch intact.
#[derive(Debug)]
pub struct Txn<'a> {
    tree: &'a sled::Tree,
    db: &'a sled::Db,
    batch: &'a Overlay,
    own: Overlay,
}

impl<'a> Txn<'a> {
    pub(super) fn new(db: &'a sled::Db, tree: &'a sled::Tree, batch: &'a Overlay) -> Txn<'a> {
        Txn {
            tree,
            db,
            batch,
            own: Overlay::new(),
        }
    }

    pub(super) fn into_writes(self) -> Overlay {
        self.own
    }

    pub fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.own.get(key).or_else(|| self.batch.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.get_raw(key)? {
            Some(bytes) => codec::decode(what, &bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn contains(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.get_raw(key)?.is_some())
    }

    pub fn put<T: Serialize>(&mut self, key: Vec<u8>, value: &T) {
        self.own.insert(key, Some(codec::encode(value)));
    }

    pub fn put_raw(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert(key, Some(value));
    }

    pub fn remove(&mut self, key: Vec<u8>) {
        self.own.insert(key, None);
    }

    /// Every live key under `prefix` with its value, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Result<Entries, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for item in self.tree.scan_prefix(prefix) {
            let (k, v) = item?;
            merged.insert(k.to_vec(), Some(v.to_vec()));
        }
        for layer in [self.batch, &self.own] {
            for (k, v) in layer.range(prefix.to_vec()..) {
                if !k.starts_with(prefix) {
                    break;
                }
                merged.insert(k.clone(), v.clone());
            }
        }
        Ok(merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect())
    }

    /// A fresh identifier; never handed out twice, even across crashes.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        Ok(self.db.generate_id()?)
    }
}

/// Turns a batch's writes into one atomic sled batch.
pub(super) fn to_batch(writes: Overlay) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for (k, v) in writes {
        match v {
            Some(v) => batch.insert(k, v),
            None => batch.remove(k),
        }
    }
    batch
}
