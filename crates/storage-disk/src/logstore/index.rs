//! The in-memory index: every live key, ordered by its bytes, with where its
//! record is and what `head` reports.
//!
//! The index is a lock-free skip list (`crossbeam-skiplist`) of per-key
//! slots (`arc-swap`): readers never take a lock, and only the writer thread
//! changes it. An overwrite swaps the entry inside the key's slot, so a
//! reader never sees a present key missing (a skip-list replace is a remove
//! then an insert).
//!
//! # Memory
//!
//! One key costs its skip-list node (the key inline up to 24 bytes, as a
//! `CompactString`; the slot; a reference count; two tower links on
//! average) and its entry behind an `Arc`: about 144 bytes for a 16-byte
//! key (measured by `tests/logstore_index_memory.rs`). To stay there, the
//! entry keeps what every read needs and nothing it can find in the record:
//! the content's SHA-256 is read from the record's trailer when `head` or
//! `get` reports it (listings report none, as S3 listings do), the size of
//! an inline value follows from the record's length, and the in-memory
//! tail and the blob reference, which most entries lack, are boxed.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use compact_str::CompactString;
use crossbeam_skiplist::SkipMap;
use storage_core::{Key, ObjectMeta};

use super::epoch::Epochs;
use super::record::{BlobRef, RecordMeta, TRAILER_LEN};
use super::segment::Segment;

/// The ordered index of live keys.
#[derive(Debug, Default)]
pub struct Index {
    map: SkipMap<CompactString, ArcSwap<IndexEntry>>,
}

/// The key of a stored name (valid: it was validated when written).
fn key_of(name: &CompactString) -> Option<Key> {
    storage_core::raw::stored_key(name.as_str()).ok()
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current entry of `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<IndexEntry>> {
        self.map.get(key.as_str()).map(|e| e.value().load_full())
    }

    /// Makes `entry` the current entry of `key` (writer only); returns the
    /// entry it replaces.
    pub fn set(&self, key: Key, entry: IndexEntry) -> Option<Arc<IndexEntry>> {
        match self.map.get(key.as_str()) {
            Some(slot) => Some(slot.value().swap(Arc::new(entry))),
            None => {
                self.map.insert(
                    CompactString::from(key.as_str()),
                    ArcSwap::from_pointee(entry),
                );
                None
            }
        }
    }

    /// Inserts the entry of a key known to be absent (loading a snapshot).
    pub fn insert_new(&self, key: &str, entry: IndexEntry) {
        self.map
            .insert(CompactString::from(key), ArcSwap::from_pointee(entry));
    }

    /// Removes `key`, returning its last entry (writer only).
    pub fn remove(&self, key: &Key) -> Option<Arc<IndexEntry>> {
        self.map.remove(key.as_str()).map(|e| e.value().load_full())
    }

    /// Every key and entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (Key, Arc<IndexEntry>)> + '_ {
        self.map
            .iter()
            .filter_map(|e| Some((key_of(e.key())?, e.value().load_full())))
    }

    /// Keys from `start` (inclusive) on, in key order.
    pub fn range_from<'a>(
        &'a self,
        start: &'a str,
    ) -> impl Iterator<Item = (Key, Arc<IndexEntry>)> + 'a {
        self.map
            .range::<str, _>((std::ops::Bound::Included(start), std::ops::Bound::Unbounded))
            .filter_map(|e| Some((key_of(e.key())?, e.value().load_full())))
    }

    /// Number of live keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no key is live.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Removes everything.
    pub fn clear(&self) {
        self.map.clear();
    }
}

/// What the index knows of the current version of one key.
#[derive(Debug, Clone)]
pub struct IndexEntry {
    /// Sequence number of the version: its ETag.
    pub seq: u64,
    /// Time of the write, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Content type and user metadata, when there are any.
    pub meta: Option<Arc<RecordMeta>>,
    /// Where the record is.
    pub location: Location,
}

/// Where a version's record, and its content, are.
#[derive(Debug, Clone)]
pub struct Location {
    /// The segment holding the record.
    pub segment: Arc<Segment>,
    /// Offset of the record in the segment.
    pub offset: u64,
    /// Length of the record in bytes.
    pub len: u64,
    /// Offset of the value within the record.
    pub value_offset: u64,
    /// The record's bytes, kept in memory while its segment is the active
    /// one (at most one segment's worth), so recent writes are read without
    /// I/O. Boxed, like `blob`: most entries have neither, and the index
    /// holds one entry per key.
    pub tail: Option<Box<Bytes>>,
    /// For a large value: the blob file holding it.
    pub blob: Option<Box<BlobRef>>,
}

impl Location {
    /// The blob holding the value, if it is in one.
    pub fn blob(&self) -> Option<BlobRef> {
        self.blob.as_deref().copied()
    }

    /// Offset within the record of the content's SHA-256 (the trailer).
    pub fn sha256_offset(&self) -> u64 {
        self.len.saturating_sub(TRAILER_LEN as u64)
    }

    /// The content's SHA-256 from `record`, this location's whole record;
    /// `None` when the record is shorter than its length says.
    pub fn sha256_in(&self, record: &[u8]) -> Option<[u8; 32]> {
        let at = usize::try_from(self.sha256_offset()).ok()?;
        record.get(at..at + 32)?.try_into().ok()
    }
}

impl IndexEntry {
    /// Content size in bytes: the blob's length, or what the record holds
    /// between the value's offset and the trailer.
    pub fn size(&self) -> u64 {
        match self.location.blob() {
            Some(blob) => blob.len,
            None => self
                .location
                .sha256_offset()
                .saturating_sub(self.location.value_offset),
        }
    }

    /// The metadata `head` reports for `key`, its ETag made by `epochs`,
    /// with the content's SHA-256 when given (read from the record).
    pub fn object_meta(&self, key: &Key, epochs: &Epochs, sha256: Option<[u8; 32]>) -> ObjectMeta {
        let (content_type, metadata) = match &self.meta {
            Some(m) => (m.content_type.clone(), m.metadata.clone()),
            None => (None, Default::default()),
        };
        ObjectMeta {
            key: key.clone(),
            size: self.size(),
            etag: epochs.etag(self.seq),
            last_modified: UNIX_EPOCH + Duration::from_millis(self.modified_ms),
            content_type,
            metadata,
            sha256,
        }
    }
}
