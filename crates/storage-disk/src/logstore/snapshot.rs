//! Index snapshots: the whole index at one log position, so that opening a
//! store replays only the records after it.
//!
//! File `index.snap`, written to `index.snap.tmp`, fsynced, renamed, and the
//! directory fsynced. All integers little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `STLGIDX1` |
//! | 8 | 4 | version (3) |
//! | 12 | 4 | reserved |
//! | 16 | 8 | next sequence number |
//! | 24 | 8 | segment id of the log position |
//! | 32 | 8 | byte offset of the log position in that segment |
//! | 40 | 8 | reserved (0) |
//! | 48 | … | entries, in key order, then a key length of 0 |
//! | end − 4 | 4 | CRC32C of everything before |
//!
//! Each entry: key length (`u16`, 1..=1024), key, sequence number,
//! modified time (ms), segment id, record offset, record length, value
//! offset (each `u64`), blob flag (`u8`; when 1:
//! blob id, blob length (`u64`), blob CRC32C (`u32`)), metadata length
//! (`u32`), metadata (the record metadata encoding). A snapshot of another
//! version is not used (the store replays every segment instead).
//!
//! # Off the writer thread
//!
//! The writer only fixes the log position (after making it durable) and
//! hands it to the snapshot thread, which walks the index while commits go
//! on, so entries newer than the position may be in the file. That is
//! harmless: replay from the position applies a record only if its sequence
//! number is the key's newest, so newer entries are kept and older ones are
//! replaced or deleted by the records that follow the position. In
//! [`Durability::Buffered`] mode the segments
//! from the position on are `fdatasync`ed after the walk and before the
//! rename, so the file never names a record a power loss could take. An
//! entry in a segment that compaction removes later makes the whole
//! snapshot unusable at the next open (every segment is replayed then);
//! compaction writes a new snapshot once it has removed segments.
//!
//! Loading reads the file as a stream (peak memory: the index and a
//! 256 KiB buffer), inserting entries as they come, and empties the index
//! again if the CRC32C at the end does not match.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use storage_core::{Error, Key, Result};
use tokio::sync::oneshot;

use super::index::{Index, IndexEntry, Location};
use super::record::{BlobRef, HEADER_LEN, RecordMeta, TRAILER_LEN};
use super::segment::Segment;
use super::writer::Reply;
use super::{Durability, Shared, sync_dir};
use crate::power_loss;

/// The first eight bytes of a snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"STLGIDX1";
/// The snapshot format version written and read by this crate.
pub const SNAPSHOT_VERSION: u32 = 3;
/// Buffer of the streamed reads and writes, in bytes.
const BUFFER_BYTES: usize = 256 * 1024;
/// Longest metadata an entry may hold (the record metadata encoding of
/// [`storage_core::MAX_METADATA_BYTES`] of user metadata and a content type
/// fits well within it).
const MAX_META_BYTES: usize = 64 * 1024;

/// A snapshot for the snapshot thread to write: the log position it names,
/// made durable by the writer, and who waits for it.
#[derive(Debug)]
pub(crate) struct Job {
    /// Segment of the position.
    pub segment: u64,
    /// Offset of the position in that segment.
    pub offset: u64,
    /// The next sequence number at the position.
    pub next_seq: u64,
    /// Answered once the snapshot is durable.
    pub done: Done,
}

/// Who waits for a snapshot.
#[derive(Debug)]
pub(crate) enum Done {
    /// Nobody (a snapshot after segment rolls): a failure is logged.
    Nobody,
    /// A caller of [`LogStore::snapshot`](super::LogStore::snapshot).
    Caller(oneshot::Sender<Result<Reply>>),
    /// The writer thread, before it releases the directory lock.
    Writer(Sender<std::result::Result<(), String>>),
}

/// Starts the snapshot thread; it stops once the returned sender is
/// dropped and every queued job is done.
///
/// # Errors
/// The I/O error of spawning the thread.
pub(crate) fn spawn(shared: Arc<Shared>) -> io::Result<(Sender<Job>, std::thread::JoinHandle<()>)> {
    let (jobs, received) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("logstore-snapshot".into())
        .spawn(move || run(&shared, received))?;
    Ok((jobs, thread))
}

fn run(shared: &Shared, jobs: Receiver<Job>) {
    while let Ok(mut job) = jobs.recv() {
        // Jobs queued behind this one name later positions: writing the
        // newest serves them all.
        let mut waiting = Vec::new();
        while let Ok(later) = jobs.try_recv() {
            waiting.push(std::mem::replace(&mut job, later).done);
        }
        waiting.push(job.done);
        let result = write(shared, job.segment, job.offset, job.next_seq)
            .map_err(|e| format!("writing the index snapshot: {e}"));
        for done in waiting {
            done.answer(result.clone());
        }
    }
}

impl Done {
    /// Tells whoever waits how the snapshot went (logs a failure nobody
    /// waits for).
    pub(crate) fn answer(self, result: std::result::Result<(), String>) {
        match self {
            Done::Nobody => {
                if let Err(e) = &result {
                    tracing::warn!(error = %e, "a background index snapshot failed");
                }
            }
            Done::Caller(reply) => {
                let _ = reply.send(result.map(|()| Reply::Done).map_err(|e| Error::Backend {
                    transient: false,
                    message: e,
                    source: None,
                }));
            }
            Done::Writer(reply) => {
                let _ = reply.send(result);
            }
        }
    }
}

/// A file being written, every write reported to the power-loss simulator.
struct Reported {
    file: std::fs::File,
    path: PathBuf,
    offset: u64,
}

impl Write for Reported {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        power_loss::wrote(&self.path, self.offset, &buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// A writer computing the CRC32C of what passes through it.
struct Crc<W> {
    inner: W,
    crc: u32,
}

impl<W: Write> Crc<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        self.inner.write_all(bytes)
    }
}

/// Writes a snapshot of `shared.index`, naming log position (`segment`,
/// `offset`), crash-safely, streaming it to the file.
///
/// # Errors
/// The I/O error of writing, syncing or renaming.
pub(crate) fn write(shared: &Shared, segment: u64, offset: u64, next_seq: u64) -> io::Result<()> {
    let temp = shared.dir.join("index.snap.tmp");
    let file = std::fs::File::create(&temp)?;
    power_loss::created(&temp);
    let mut out = Crc {
        inner: BufWriter::with_capacity(
            BUFFER_BYTES,
            Reported {
                file,
                path: temp.clone(),
                offset: 0,
            },
        ),
        crc: 0,
    };
    out.put(&SNAPSHOT_MAGIC)?;
    out.put(&SNAPSHOT_VERSION.to_le_bytes())?;
    out.put(&[0; 4])?;
    for v in [next_seq, segment, offset, 0] {
        out.put(&v.to_le_bytes())?;
    }
    let mut entry = Vec::with_capacity(512);
    for (key, e) in shared.index.iter() {
        entry.clear();
        encode_entry(&key, &e, &mut entry);
        out.put(&entry)?;
    }
    out.put(&0u16.to_le_bytes())?;
    let crc = out.crc;
    out.inner.write_all(&crc.to_le_bytes())?;
    let reported = out.inner.into_inner().map_err(|e| e.into_error())?;
    if shared.options.durability == Durability::Buffered {
        // Entries newer than the position may be in the file: their
        // records must be durable before the file is.
        for (id, s) in shared.segments() {
            if id >= segment {
                s.sync_data()?;
                power_loss::synced(&s.path);
            }
        }
    }
    reported.file.sync_all()?;
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
    let l = &e.location;
    for v in [e.modified_ms, l.segment.id, l.offset, l.len, l.value_offset] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    match l.blob() {
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

/// Loads `dir/index.snap` into `index` as a stream, resolving segment ids
/// in `segments`. Returns `None`, leaving `index` empty, when there is no
/// snapshot or it is unusable (corrupt, another version, or naming a
/// segment that is gone or shorter than its position): the caller then
/// replays every segment.
pub(crate) fn load(
    dir: &Path,
    segments: &HashMap<u64, Arc<Segment>>,
    index: &Index,
) -> Option<Loaded> {
    let file = std::fs::File::open(dir.join("index.snap")).ok()?;
    let mut reader = Reader {
        inner: BufReader::with_capacity(BUFFER_BYTES, file),
        crc: 0,
    };
    match parse(&mut reader, segments, index) {
        Some(loaded) => Some(loaded),
        None => {
            tracing::warn!("the index snapshot is unusable; replaying every segment");
            index.clear();
            None
        }
    }
}

fn parse<R: BufRead>(
    r: &mut Reader<R>,
    segments: &HashMap<u64, Arc<Segment>>,
    index: &Index,
) -> Option<Loaded> {
    if r.take::<8>()? != SNAPSHOT_MAGIC || r.u32()? != SNAPSHOT_VERSION {
        return None;
    }
    r.take::<4>()?;
    let next_seq = r.u64()?;
    let segment = r.u64()?;
    let offset = r.u64()?;
    r.u64()?;
    let position = segments.get(&segment)?;
    if std::fs::metadata(&position.path).ok()?.len() < offset {
        return None;
    }
    let mut name = Vec::with_capacity(storage_core::MAX_KEY_BYTES);
    let mut lengths: HashMap<u64, u64> = HashMap::new();
    let mut meta = Vec::new();
    loop {
        let key_len = usize::from(r.u16()?);
        if key_len == 0 {
            break;
        }
        if key_len > storage_core::MAX_KEY_BYTES {
            return None;
        }
        name.resize(key_len, 0);
        r.fill(&mut name)?;
        let key: Key = storage_core::raw::stored_key(std::str::from_utf8(&name).ok()?).ok()?;
        let seq = r.u64()?;
        let modified_ms = r.u64()?;
        let segment = Arc::clone(segments.get(&r.u64()?)?);
        let (offset, len, value_offset) = (r.u64()?, r.u64()?, r.u64()?);
        // Checked by a CRC32C only: an entry must at least describe a
        // record inside its segment, its value before the trailer.
        let segment_len = match lengths.get(&segment.id) {
            Some(&len) => len,
            None => {
                let len = std::fs::metadata(&segment.path).ok()?.len();
                lengths.insert(segment.id, len);
                len
            }
        };
        let plausible = len >= (HEADER_LEN + TRAILER_LEN) as u64
            && value_offset >= HEADER_LEN as u64
            && value_offset.checked_add(TRAILER_LEN as u64)? <= len
            && offset.checked_add(len)? <= segment_len;
        if !plausible {
            return None;
        }
        let blob = match r.take::<1>()?[0] {
            0 => None,
            1 => Some(BlobRef {
                id: r.u64()?,
                len: r.u64()?,
                crc32c: r.u32()?,
            }),
            _ => return None,
        };
        let meta_len = r.u32()? as usize;
        if meta_len > MAX_META_BYTES {
            return None;
        }
        let meta = match meta_len {
            0 => None,
            n => {
                meta.resize(n, 0);
                r.fill(&mut meta)?;
                Some(Arc::new(RecordMeta::decode(&meta).ok()?))
            }
        };
        let entry = IndexEntry {
            seq,
            modified_ms,
            meta,
            location: Location {
                segment,
                offset,
                len,
                value_offset,
                tail: None,
                blob: blob.map(Box::new),
            },
        };
        index.insert_new(key.as_str(), entry);
    }
    let computed = r.crc;
    let mut stored = [0u8; 4];
    r.inner.read_exact(&mut stored).ok()?;
    let at_end = r.inner.fill_buf().ok()?.is_empty();
    (computed == u32::from_le_bytes(stored) && at_end).then_some(Loaded {
        next_seq,
        segment,
        offset,
    })
}

/// Reads a snapshot, computing the CRC32C of what it reads.
struct Reader<R> {
    inner: R,
    crc: u32,
}

impl<R: Read> Reader<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Option<()> {
        self.inner.read_exact(buf).ok()?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        Some(())
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf)?;
        Some(buf)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take()?))
    }
}
