//! Opening a store: take the lock, load the newest index snapshot, replay the
//! segments after it, truncate a torn tail, drop unreferenced blobs.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;

use storage_core::{Error, Key, Result};

use super::index::{Index, IndexEntry, Location};
use super::record::{self, BlobRef, RecordError, RecordMeta, RecordType};
use super::segment::{
    SEGMENT_HEADER_LEN, Segment, SegmentHeader, parse_segment_name, segment_path,
};
use super::writer::{Active, create_segment};
use super::{snapshot, sync_dir};
use crate::power_loss;

/// What opening found: the active segment, the next sequence and blob
/// numbers, and every segment.
#[derive(Debug)]
pub struct Recovered {
    /// The segment to append to.
    pub active: Active,
    /// The next sequence number: above every one ever used.
    pub next_seq: u64,
    /// The highest blob number found in the blob directory, the index or a
    /// replayed record (0 for none).
    pub max_blob: u64,
    /// Every segment by id, the active one included.
    pub segments: HashMap<u64, Arc<Segment>>,
    /// Whether a usable index snapshot was loaded.
    pub from_snapshot: bool,
    /// Bytes cut off the last segment as a torn tail.
    pub truncated_bytes: u64,
}

/// Sequence numbers at or above this are refused as damage: far beyond
/// any store's life (2⁶² writes), and far from overflow.
const MAX_SEQ: u64 = 1 << 62;

fn corrupt(segment: u64, offset: u64, reason: &str) -> Error {
    Error::Backend {
        transient: false,
        message: format!("segment {segment} is corrupt at byte {offset}: {reason}"),
        source: None,
    }
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(context, e)
}

/// Takes the exclusive lock on `dir/LOCK`.
///
/// # Errors
/// [`Error::Locked`] when another `LogStore`, in this process or another,
/// holds it.
pub fn lock(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.display().to_string(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(format!("locking {}", path.display()), e)),
    }
}

/// Rebuilds `index` from the snapshot and the segments of `dir`.
///
/// # Errors
/// A non-transient [`Error::Backend`] for a bad record inside a sealed
/// segment or a bad segment header, and I/O errors.
pub fn recover(
    dir: &Path,
    index: &Index,
    map_sealed: bool,
    durability: super::Durability,
) -> Result<Recovered> {
    let seg_dir = dir.join("segments");
    let mut ids: Vec<u64> = fs::read_dir(&seg_dir)
        .map_err(io(format!("listing {}", seg_dir.display())))?
        .filter_map(|e| e.ok()?.file_name().to_str().and_then(parse_segment_name))
        .collect();
    ids.sort_unstable();
    if ids.is_empty() {
        create_segment(
            &segment_path(dir, 1),
            &SegmentHeader {
                id: 1,
                first_seq: 1,
            },
        )
        .map_err(io("creating the first segment".into()))?;
        sync_dir(&seg_dir).map_err(io("syncing the segment directory".into()))?;
        ids.push(1);
    }
    let mut segments = HashMap::new();
    for &id in &ids {
        let segment = Segment::open(id, segment_path(dir, id))
            .map_err(io(format!("opening segment {id}")))?;
        segments.insert(id, Arc::new(segment));
    }
    let loaded = snapshot::load(dir, &segments, index);
    let last = *ids.last().expect("at least one segment exists");
    let mut max_seq = loaded.as_ref().map_or(0, |l| l.next_seq.saturating_sub(1));
    let mut deleted: HashMap<Key, u64> = HashMap::new();
    let mut truncated_bytes = 0;
    let mut max_blob_named = 0;
    for &id in &ids {
        let start = match &loaded {
            Some(l) if id < l.segment => continue,
            Some(l) if id == l.segment => l.offset,
            _ => SEGMENT_HEADER_LEN,
        };
        let segment = &segments[&id];
        // Only the header and the records from `start` on are read: a
        // snapshot's position may be deep into the last segment.
        let mut skip = start.saturating_sub(SEGMENT_HEADER_LEN);
        let mut bytes =
            read_skipping(&segment.path, skip).map_err(io(format!("reading segment {id}")))?;
        // Short, or all zeros (extended or preallocated, never written): a
        // zeroed header with data after it is damage, not this.
        let unwritten = bytes.len() < SEGMENT_HEADER_LEN as usize || bytes.iter().all(|&b| b == 0);
        if id == last && unwritten {
            // Created but never written to (short, or zeros where the
            // file was extended or preallocated): start it afresh.
            bytes = SegmentHeader {
                id,
                first_seq: max_seq.saturating_add(1),
            }
            .encode()
            .to_vec();
            skip = 0;
            rewrite_header(&segment.path, &bytes).map_err(io(format!("rewriting segment {id}")))?;
        }
        // `bytes[i]` is byte `i + skip` of the segment past the header.
        let end = bytes.len() as u64 + skip;
        let at = |offset: u64| (offset - skip) as usize;
        let header = SegmentHeader::decode(&bytes).map_err(|r| corrupt(id, 0, r))?;
        if header.id != id {
            return Err(corrupt(id, 0, "header names another segment"));
        }
        max_seq = max_seq.max(header.first_seq.saturating_sub(1));
        let mut offset = start;
        while offset < end {
            let record = match record::parse(&bytes[at(offset)..]) {
                Ok(record) => record,
                Err(RecordError::Incomplete | RecordError::Corrupt(_)) if id == last => {
                    let tail = &bytes[at(offset)..];
                    // In `Fsync` mode a batch is written only once the one
                    // before it is durable, so only the last batch can be
                    // torn, in any order of its pages: a valid first record
                    // of a later batch after the bad bytes means the damage
                    // is inside acknowledged writes, which are not dropped.
                    // Otherwise (and always in `Buffered` mode, which may
                    // lose any suffix) the rest is a torn tail.
                    if durability == super::Durability::Fsync
                        && let Some(at) = next_batch_start(tail)
                    {
                        return Err(corrupt(
                            id,
                            offset,
                            &format!(
                                "a bad record is followed by a later batch at byte {}: the store is not opened, since cutting the damage would drop acknowledged writes (restore the segment, or cut it at byte {offset} by hand to drop them)",
                                offset + at as u64
                            ),
                        ));
                    }
                    set_aside(dir, id, offset, tail)?;
                    truncated_bytes = tail.len() as u64;
                    truncate(&segment.path, offset)
                        .map_err(io(format!("truncating segment {id}")))?;
                    break;
                }
                Err(RecordError::Incomplete) => {
                    return Err(corrupt(id, offset, "record cut short"));
                }
                Err(RecordError::Corrupt(reason)) => return Err(corrupt(id, offset, reason)),
            };
            let len = record.header.record_len();
            apply(index, &mut deleted, segment, offset, &record)
                .map_err(|r| corrupt(id, offset, r))?;
            max_seq = max_seq.max(record.header.seq);
            // Dead references count too: a new blob never takes a number
            // an old record names.
            if record.header.kind.in_blob() {
                let value = match record.header.kind.is_promote() {
                    true => record::promote_parts(record.value)
                        .map(|(_, v)| v)
                        .unwrap_or(&[]),
                    false => record.value,
                };
                if let Ok(blob) = BlobRef::decode(value) {
                    max_blob_named = max_blob_named.max(blob.id);
                }
            }
            offset += len;
        }
    }
    if map_sealed {
        for (id, segment) in &segments {
            if *id != last {
                segment
                    .map_sealed()
                    .map_err(io(format!("mapping segment {id}")))?;
            }
        }
    }
    let max_blob = sweep_blobs(dir, index)?.max(max_blob_named);
    let active_segment = Arc::clone(&segments[&last]);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&active_segment.path)
        .map_err(io(format!("opening segment {last}")))?;
    // What replay read may have come from the page cache only (a process
    // killed before its `fdatasync`, or `Buffered` mode): it is made
    // durable before the store builds on it, so a power loss now cannot
    // take back records this open numbers its writes after.
    file.sync_data()
        .map_err(io(format!("syncing segment {last}")))?;
    power_loss::synced(&active_segment.path);
    let len = file
        .metadata()
        .map_err(io(format!("reading segment {last}")))?
        .len();
    Ok(Recovered {
        active: Active {
            segment: active_segment,
            file,
            len,
            tail: Vec::new(),
        },
        next_seq: max_seq
            .checked_add(1)
            .filter(|&next| next < MAX_SEQ)
            .ok_or_else(|| corrupt(last, 0, "a sequence number is impossibly high"))?,
        max_blob,
        segments,
        from_snapshot: loaded.is_some(),
        truncated_bytes,
    })
}

/// Applies one replayed record: the highest sequence number of each key
/// wins, whatever order the segments hold them in (compaction copies records
/// forward with their sequence numbers). A promote record is a put of its
/// key and a tombstone of the staged key, each applied on its own.
fn apply(
    index: &Index,
    deleted: &mut HashMap<Key, u64>,
    segment: &Arc<Segment>,
    offset: u64,
    record: &record::Record<'_>,
) -> std::result::Result<(), &'static str> {
    let key =
        storage_core::raw::stored_key(record.key).map_err(|_| "record holds an invalid key")?;
    let seq = record.header.seq;
    let newer = |deleted: &HashMap<Key, u64>, key: &Key| {
        let current = index
            .get(key)
            .map(|e| e.seq)
            .max(deleted.get(key).copied())
            .unwrap_or(0);
        seq > current
    };
    let kind = record.header.kind;
    let (content, prefix) = match kind {
        RecordType::Delete => {
            if newer(deleted, &key) {
                index.remove(&key);
                deleted.insert(key, seq);
            }
            return Ok(());
        }
        RecordType::Put | RecordType::PutBlob => (record.value, 0),
        RecordType::Promote | RecordType::PromoteBlob => {
            let (staged, content) =
                record::promote_parts(record.value).map_err(|_| "bad promote record")?;
            let staged = storage_core::raw::stored_key(staged)
                .map_err(|_| "promote record names an invalid staged key")?;
            if newer(deleted, &staged) {
                index.remove(&staged);
                deleted.insert(staged.clone(), seq);
            }
            (content, record::promote_prefix_len(staged.as_str()) as u64)
        }
    };
    if !newer(deleted, &key) {
        return Ok(());
    }
    let blob = match kind.in_blob() {
        true => Some(BlobRef::decode(content).map_err(|_| "bad blob reference")?),
        false => None,
    };
    let meta = match record.meta.is_empty() {
        true => None,
        false => Some(Arc::new(
            RecordMeta::decode(record.meta).map_err(|_| "bad metadata")?,
        )),
    };
    let entry = IndexEntry {
        seq,
        modified_ms: record.header.modified_ms,
        meta,
        location: Location {
            segment: Arc::clone(segment),
            offset,
            len: record.header.record_len(),
            value_offset: record.header.value_offset() + prefix,
            tail: None,
            blob: blob.map(Box::new),
        },
    };
    deleted.remove(&key);
    index.set(key, entry);
    Ok(())
}

/// Offset in `tail` (after its first byte) of the first valid record that
/// starts a batch, if any.
fn next_batch_start(tail: &[u8]) -> Option<usize> {
    (1..tail.len().saturating_sub(record::HEADER_LEN - 1)).find(|&at| {
        tail[at..].starts_with(&record::RECORD_MAGIC)
            && record::is_batch_start(&tail[at..])
            && record::parse(&tail[at..]).is_ok()
    })
}

/// Keeps a torn tail that is not all zeros in
/// `torn-<segment>-<offset>-<ms since the epoch>` in the store's directory
/// (fsynced), so truncation deletes nothing that was ever written.
fn set_aside(dir: &Path, segment: u64, offset: u64, tail: &[u8]) -> Result<()> {
    if tail.iter().all(|&b| b == 0) {
        return Ok(());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let path = dir.join(format!("torn-{segment}-{offset}-{stamp}"));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        power_loss::created(&path);
        std::io::Write::write_all(&mut file, tail)?;
        power_loss::wrote(&path, 0, tail);
        file.sync_all()?;
        power_loss::synced(&path);
        sync_dir(dir)
    };
    write().map_err(io(format!(
        "setting aside the torn tail in {}",
        path.display()
    )))?;
    tracing::warn!(
        segment,
        offset,
        bytes = tail.len(),
        path = %path.display(),
        "a torn tail was cut off the last segment and set aside"
    );
    Ok(())
}

/// The first [`SEGMENT_HEADER_LEN`] bytes of the file at `path` (fewer if
/// it is shorter), then its bytes from `SEGMENT_HEADER_LEN + skip` on.
fn read_skipping(path: &Path, skip: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path)?;
    let mut bytes = Vec::new();
    (&mut file)
        .take(SEGMENT_HEADER_LEN)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 == SEGMENT_HEADER_LEN {
        file.seek(SeekFrom::Start(SEGMENT_HEADER_LEN + skip))?;
        file.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    power_loss::set_len(path, len);
    file.sync_all()?;
    power_loss::synced(path);
    Ok(())
}

fn rewrite_header(path: &Path, header: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(0)?;
    power_loss::set_len(path, 0);
    file.write_all_at(header, 0)?;
    power_loss::wrote(path, 0, header);
    file.sync_all()?;
    power_loss::synced(path);
    Ok(())
}

/// Removes blob files no index entry refers to (puts that crashed or lost
/// their precondition, versions superseded before their blob was removed);
/// returns the highest blob number found (0 for none).
fn sweep_blobs(dir: &Path, index: &Index) -> Result<u64> {
    let blob_dir = dir.join("blobs");
    let files: Vec<fs::DirEntry> = fs::read_dir(&blob_dir)
        .and_then(|entries| entries.collect())
        .map_err(io(format!("listing {}", blob_dir.display())))?;
    if files.is_empty() {
        // No blob file: no entry can refer to one.
        return Ok(0);
    }
    let live: HashSet<u64> = index
        .iter()
        .filter_map(|(_, e)| e.location.blob().map(|b| b.id))
        .collect();
    let mut max = live.iter().max().copied().unwrap_or(0);
    for entry in files {
        let name = entry.file_name();
        let id = name
            .to_str()
            .and_then(|n| n.strip_suffix(".blob"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(id) = id {
            max = max.max(id);
            if live.contains(&id) {
                continue;
            }
        }
        fs::remove_file(entry.path())
            .map_err(io(format!("removing {}", entry.path().display())))?;
        power_loss::removed(&entry.path());
    }
    Ok(max)
}
