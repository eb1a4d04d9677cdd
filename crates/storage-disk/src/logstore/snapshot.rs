//! Index snapshots: the whole index at one log position, so that opening a
//! store replays only the records after it.
//!
//! File `index.snap`, written to `index.snap.tmp`, fsynced, renamed, and the
//! directory fsynced. All integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `STLGIDX1` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | reserved |
//! | 16 | 8 | next sequence number |
//! | 24 | 8 | segment id of the log position |
//! | 32 | 8 | byte offset of the log position in that segment |
//! | 40 | 8 | number of entries |
//! | 48 | … | entries, in key order |
//! | end − 4 | 4 | CRC32C of everything before |
//!
//! Each entry: key length (`u16`), key, sequence number, size, SHA-256 (32),
//! modified time (ms), segment id, record offset, record length, value
//! offset (each `u64` but the hash), blob flag (`u8`; when 1: blob id, blob
//! length (`u64`), blob CRC32C (`u32`)), metadata length (`u32`), metadata
//! (the record metadata encoding).

use std::collections::HashMap;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use storage_core::Key;

use super::index::{Index, IndexEntry, Location};
use super::record::{BlobRef, RecordMeta};
use super::segment::Segment;
use super::{Shared, sync_dir};
use crate::power_loss;

/// The first eight bytes of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STLGIDX1";
const HEADER_LEN: usize = 48;

/// Writes a snapshot of `shared.index`, taken at log position
/// (`segment`, `offset`), crash-safely.
///
/// # Errors
/// The I/O error of writing, syncing or renaming.
pub(crate) fn write(shared: &Shared, segment: u64, offset: u64, next_seq: u64) -> io::Result<()> {
    let mut out = Vec::with_capacity(HEADER_LEN + shared.index.len() * 128);
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for v in [next_seq, segment, offset, shared.index.len() as u64] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    for (key, entry) in shared.index.iter() {
        encode_entry(&key, &entry, &mut out);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    let temp = shared.dir.join("index.snap.tmp");
    let mut file = std::fs::File::create(&temp)?;
    power_loss::created(&temp);
    file.write_all(&out)?;
    power_loss::wrote(&temp, 0, &out);
    file.sync_all()?;
    power_loss::synced(&temp);
    let path = shared.dir.join("index.snap");
    std::fs::rename(&temp, &path)?;
    power_loss::renamed(&temp, &path);
    sync_dir(&shared.dir)
}

fn encode_entry(key: &Key, e: &IndexEntry, out: &mut Vec<u8>) {
    out.extend_from_slice(&(key.as_str().len() as u16).to_le_bytes());
    out.extend_from_slice(key.as_str().as_bytes());
    out.extend_from_slice(&e.seq.to_le_bytes());
    out.extend_from_slice(&e.size.to_le_bytes());
    out.extend_from_slice(&e.sha256);
    let l = &e.location;
    for v in [e.modified_ms, l.segment.id, l.offset, l.len, l.value_offset] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    match l.blob {
        Some(b) => {
            out.push(1);
            out.extend_from_slice(&b.id.to_le_bytes());
            out.extend_from_slice(&b.len.to_le_bytes());
            out.extend_from_slice(&b.crc32c.to_le_bytes());
        }
        None => out.push(0),
    }
    let mut meta = Vec::new();
    if let Some(m) = &e.meta {
        m.encode(&mut meta);
    }
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&meta);
}

/// A loaded snapshot: the log position it was taken at.
#[derive(Debug)]
pub struct Loaded {
    /// The next sequence number then.
    pub next_seq: u64,
    /// Segment of the log position.
    pub segment: u64,
    /// Offset of the log position.
    pub offset: u64,
}

/// Loads `dir/index.snap` into `index`, resolving segment ids in
/// `segments`. Returns `None`, leaving `index` empty, when there is no
/// snapshot or it is unusable (corrupt, or naming a segment that is gone or
/// shorter than its position): the caller then replays every segment.
pub(crate) fn load(
    dir: &Path,
    segments: &HashMap<u64, Arc<Segment>>,
    index: &Index,
) -> Option<Loaded> {
    let bytes = std::fs::read(dir.join("index.snap")).ok()?;
    match parse(&bytes, segments, index) {
        Some(loaded) => Some(loaded),
        None => {
            tracing::warn!("the index snapshot is unusable; replaying every segment");
            index.clear();
            None
        }
    }
}

fn parse(bytes: &[u8], segments: &HashMap<u64, Arc<Segment>>, index: &Index) -> Option<Loaded> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut r = Reader(body);
    if r.take(8)? != SNAPSHOT_MAGIC || r.u32()? != 1 {
        return None;
    }
    r.take(4)?;
    let next_seq = r.u64()?;
    let segment = r.u64()?;
    let offset = r.u64()?;
    let count = r.u64()?;
    let position = segments.get(&segment)?;
    if std::fs::metadata(&position.path).ok()?.len() < offset {
        return None;
    }
    for _ in 0..count {
        let key_len = r.u16()?;
        let name = std::str::from_utf8(r.take(usize::from(key_len))?).ok()?;
        let key = storage_core::raw::stored_key(name).ok()?;
        let seq = r.u64()?;
        let size = r.u64()?;
        let sha256: [u8; 32] = r.take(32)?.try_into().ok()?;
        let modified_ms = r.u64()?;
        let segment = Arc::clone(segments.get(&r.u64()?)?);
        let (offset, len, value_offset) = (r.u64()?, r.u64()?, r.u64()?);
        let blob = match r.take(1)?[0] {
            0 => None,
            1 => Some(BlobRef {
                id: r.u64()?,
                len: r.u64()?,
                crc32c: r.u32()?,
            }),
            _ => return None,
        };
        let meta_len = r.u32()? as usize;
        let meta = match meta_len {
            0 => None,
            n => Some(Arc::new(RecordMeta::decode(r.take(n)?).ok()?)),
        };
        let entry = IndexEntry {
            seq,
            size,
            sha256,
            modified_ms,
            meta,
            location: Location {
                segment,
                offset,
                len,
                value_offset,
                tail: None,
                blob,
            },
        };
        index.insert_new(key, entry);
    }
    r.0.is_empty().then_some(Loaded {
        next_seq,
        segment,
        offset,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}
