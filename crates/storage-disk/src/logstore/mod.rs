//! `LogStore`: a durable log-structured backend with group commit, for many
//! small compare-and-swap writes per second on one machine (DESIGN section 3).
//!
//! # Layout
//!
//! | path | what |
//! |---|---|
//! | `LOCK` | held with an exclusive `flock` while a `LogStore` is open |
//! | `segments/NNNNNNNNNNNNNNNNNNNN.seg` | segments, numbered from 1; the highest is the active one |
//! | `blobs/NNNNNNNNNNNNNNNNNNNN.blob` | values at or above the large-value threshold, raw bytes |
//! | `index.snap` | the newest index snapshot (format in [`snapshot`]) |
//! | `EPOCHS` | the store id and one random tag per open, that ETags and blob numbers are made of (format in [`epoch`]) |
//!
//! # Segment format
//!
//! A segment is a 40-byte header followed by records back to back. All
//! integers are little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `STLGSEG1` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | reserved (0) |
//! | 16 | 8 | segment id |
//! | 24 | 8 | first sequence number (the store's next one at creation) |
//! | 32 | 4 | CRC32C of bytes 0..32 |
//! | 36 | 4 | reserved (0) |
//!
//! # Record format
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `STLR` |
//! | 4 | 1 | version (1) |
//! | 5 | 1 | type: 1 put, 2 delete (tombstone), 3 put with the value in a blob, 4 promote, 5 promote with the value in a blob |
//! | 6 | 2 | key length *k* (1..=1024) |
//! | 8 | 4 | metadata length *m* |
//! | 12 | 1 | flags: bit 0 set on the first record of a committed batch |
//! | 13 | 3 | reserved (0) |
//! | 16 | 8 | value length *v* (20 for type 3: blob id `u64`, length `u64`, CRC32C `u32`) |
//! | 24 | 8 | sequence number: grows with every write; with the store id and its epoch's tag, the version's ETag ([`epoch`]) |
//! | 32 | 8 | modified time, ms since the Unix epoch |
//! | 40 | *k* | key, UTF-8 |
//! | 40+*k* | *m* | metadata: content type and user metadata ([`record::RecordMeta::encode`]) |
//! | 40+*k*+*m* | *v* | value |
//! | 40+*k*+*m*+*v* | 32 | SHA-256 of the object's content (zeros for a delete) |
//! | 72+*k*+*m*+*v* | 4 | CRC32C of every byte of the record before it, header included |
//!
//! A promote record (types 4 and 5) moves a staged write to its key in one
//! step: it is a put of the record's key and a tombstone of the staged key.
//! Its value starts with the staged key's length (`u16`, 1..=1024) and the
//! staged key; then comes the content (type 4, copied from the staged
//! record, under the large-value threshold) or the staged write's blob
//! reference (type 5, 20 bytes: the blob changes owner, nothing is copied).
//! Replay applies each half when its sequence number is the key's newest;
//! compaction keeps the record while either half is still needed.
//!
//! # Guarantees
//!
//! - **Group commit.** One writer thread appends every queued request with
//!   one write and one `fdatasync`, then updates the index and answers. Compare-and-swap is decided by the writer against the index
//!   and earlier writes of the same batch, so the order is serializable.
//! - **Durability.** With [`Durability::Fsync`] (the default) a put is
//!   acknowledged only after its record is on disk; new segments, snapshots
//!   and renames are followed by a directory fsync. [`Durability::Buffered`]
//!   skips the per-batch `fdatasync`: writes survive a crash of the process,
//!   and a power loss takes only the most recent ones, since the active
//!   segment is made durable before it is sealed, before a snapshot names a
//!   position in it and before compaction removes the originals of what it
//!   copied, and a blob superseded by a record is unlinked only once that
//!   record is durable.
//! - **Recovery.** Opening loads `index.snap` if valid and replays the
//!   records after its position. The first record of every committed batch
//!   carries a flag (bit 0 of the byte at offset 12). At the first bad
//!   record of the last segment, in [`Durability::Fsync`] mode, a valid
//!   batch-start record further on means the damage lies inside
//!   acknowledged writes (a batch is written only once the one before it is
//!   durable): the open fails, naming the segment and offset, and nothing is
//!   cut. Otherwise, and always in [`Durability::Buffered`] mode, the rest
//!   is a torn tail (the last batch's pages reach the disk in any order): it
//!   is kept in `torn-<segment>-<offset>-<ms>` unless all zeros, then cut
//!   off (and fsynced). A bad record inside a sealed segment fails the open;
//!   a last segment that is all zeros (created, never written) starts
//!   afresh; a missing blob is [`storage_core::Error::Integrity`]; sequence
//!   numbers of 2⁶² or more are refused as damage.
//! - **Reads** take no lock: the index is a lock-free skip list. Records of
//!   the active segment are kept in memory until it is sealed (at most one
//!   segment); sealed segments are memory-mapped on local file systems, and
//!   read with `pread` in [`LogStoreOptions::nfs`] mode. A full read verifies
//!   the record's CRC32C (a blob's CRC32C); a range read reads only its bytes
//!   and is not verified. The index keeps about 144 bytes per 16-byte key:
//!   `head` and `get` read the content's SHA-256 from the record's trailer,
//!   and listings report none (as S3 listings do).
//! - **Large values** (at least [`LogStoreOptions::large_value_bytes`]) are
//!   streamed by the caller's task into a blob file and fsynced before the
//!   writer commits a small record pointing at them, so they never stall
//!   other commits.
//! - **Compaction** ([`LogStore::compact`]) copies the live records of
//!   sealed segments that are more than half dead into the active segment,
//!   then deletes them, keeping space amplification of sealed segments under
//!   2×. A tombstone is copied only while an older segment may hold a put
//!   of its key, and counts as live meanwhile, so put/delete churn leaves
//!   no tombstones behind.

mod backend;
mod compaction;
pub mod epoch;
mod index;
pub mod record;
mod recovery;
mod segment;
pub mod snapshot;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use storage_core::presign::LocalPresigner;
use storage_core::{ChangeFeed, Error, Result};

pub use compaction::CompactionReport;
use index::Index;
use segment::Segment;
use writer::{Op, Reply, Request, Writer};

/// Largest [`LogStoreOptions::large_value_bytes`]: an inline value, with a
/// promote record's staged key and its length before it, still fits the
/// record format's inline limit.
pub const MAX_LARGE_VALUE_BYTES: u64 =
    record::MAX_INLINE_VALUE - 2 - storage_core::MAX_KEY_BYTES as u64;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After `fdatasync`: survives power loss.
    #[default]
    Fsync,
    /// After the write reaches the operating system: survives a crash of
    /// the process, not of the machine.
    Buffered,
}

/// Settings of a [`LogStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStoreOptions {
    /// A segment is sealed and a new one started once it reaches this many
    /// bytes. Default 64 MiB.
    pub segment_bytes: u64,
    /// When a write is acknowledged. Default [`Durability::Fsync`].
    pub durability: Durability,
    /// Values of at least this many bytes go to blob files. Default 1 MiB.
    pub large_value_bytes: u64,
    /// Never memory-map: positional reads only (for NFS, where I/O errors
    /// on a map become `SIGBUS`). Default false.
    pub nfs: bool,
    /// Write an index snapshot after this many segments were sealed.
    /// Default 4.
    pub snapshot_every_segments: Option<u32>,
    /// Run [`LogStore::compact`] on a background thread at this interval.
    /// Default off.
    pub background_compaction: Option<Duration>,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_bytes: 64 * 1024 * 1024,
            durability: Durability::Fsync,
            large_value_bytes: 1024 * 1024,
            nfs: false,
            snapshot_every_segments: Some(4),
            background_compaction: None,
        }
    }
}

/// State shared by readers, the writer thread and compaction.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    options: LogStoreOptions,
    index: Index,
    feed: ChangeFeed,
    segments: Mutex<BTreeMap<u64, Arc<Segment>>>,
    /// The next blob number (see [`epoch`]).
    next_blob: AtomicU64,
    /// The store id and epochs that ETags are made of.
    epochs: epoch::Epochs,
    /// Held by a compaction from start to end: [`LogStore::compact`] and the
    /// background thread never run one at the same time.
    compaction: Mutex<()>,
}

impl Shared {
    fn register_segment(&self, segment: Arc<Segment>) {
        self.segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(segment.id, segment);
    }

    fn segments(&self) -> BTreeMap<u64, Arc<Segment>> {
        self.segments
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What an open found; see [`LogStore::open_report`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReport {
    /// A valid index snapshot was loaded.
    pub from_snapshot: bool,
    /// Bytes cut off the last segment as a torn tail.
    pub truncated_bytes: u64,
    /// Live objects.
    pub objects: usize,
}

/// A durable log-structured object store in one directory (see the module
/// docs for the format and guarantees).
///
/// Cloning is cheap and shares the store. The directory stays locked until
/// [`LogStore::close`] or until every clone is dropped and the writer thread
/// has written its final snapshot.
///
/// ```
/// use storage_core::BackendExt;
/// use storage_disk::LogStore;
/// # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir().unwrap();
/// let store = LogStore::open(dir.path()).await?;
/// store.put_bytes("queues/jobs/0001", "payload").await?; // fsynced, in a group commit
/// assert_eq!(store.get_bytes("queues/jobs/0001").await?, "payload");
/// store.close().await?;
/// # Ok::<(), storage_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    handle: Arc<Handle>,
    /// Signs the URLs of [`Backend::presign`](storage_core::Backend::presign)
    /// (see [`LogStore::with_presigner`]).
    presigner: Option<Arc<LocalPresigner>>,
}

#[derive(Debug)]
struct Handle {
    requests: Sender<Request>,
    report: OpenReport,
}

impl LogStore {
    /// Opens (creating if needed) the store in `dir` with default options.
    ///
    /// # Errors
    /// As [`LogStore::open_with`].
    pub async fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        Self::open_with(dir, LogStoreOptions::default()).await
    }

    /// Opens (creating if needed) the store in `dir`, recovering it (module
    /// docs, "Recovery"). Runs on the blocking pool.
    ///
    /// # Errors
    /// [`Error::Locked`] when another `LogStore` has the directory open;
    /// [`Error::InvalidArgument`] for impossible options; a non-transient
    /// [`Error::Backend`] for corruption in a sealed segment, and I/O errors.
    pub async fn open_with(dir: impl Into<PathBuf>, options: LogStoreOptions) -> Result<Self> {
        let dir = dir.into();
        tokio::task::spawn_blocking(move || Self::open_blocking(dir, options))
            .await
            .map_err(|e| Error::backend(false, "the open task failed", e))?
    }

    fn open_blocking(dir: PathBuf, options: LogStoreOptions) -> Result<Self> {
        if options.segment_bytes < 4096
            || options.large_value_bytes == 0
            || options.large_value_bytes > MAX_LARGE_VALUE_BYTES
        {
            return Err(Error::invalid_argument(format!(
                "segment_bytes must be at least 4096 and large_value_bytes between 1 and {MAX_LARGE_VALUE_BYTES} (the longest inline value a record holds, less a promote's staged key)"
            )));
        }
        for sub in ["segments", "blobs"] {
            let path = dir.join(sub);
            let existed = path.is_dir();
            crate::util::create_dirs(&path)
                .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
            if !existed {
                // The new directory's entry is durable before anything in it.
                let parents = [
                    dir.parent().filter(|p| !p.as_os_str().is_empty()),
                    Some(&*dir),
                ];
                for parent in parents.into_iter().flatten() {
                    sync_dir(parent)
                        .map_err(|e| Error::io(format!("syncing {}", parent.display()), e))?;
                }
            }
        }
        let lock = recovery::lock(&dir)?;
        let index = Index::new();
        let recovered = recovery::recover(&dir, &index, !options.nfs, options.durability)?;
        let report = OpenReport {
            from_snapshot: recovered.from_snapshot,
            truncated_bytes: recovered.truncated_bytes,
            objects: index.len(),
        };
        let epochs = epoch::begin(
            &dir,
            recovered.next_seq,
            recovered.next_seq > 1,
            recovered.max_blob,
        )?;
        let shared = Arc::new(Shared {
            dir,
            options: options.clone(),
            index,
            feed: ChangeFeed::default(),
            segments: Mutex::new(recovered.segments.into_iter().collect()),
            next_blob: AtomicU64::new(epochs.first_blob()),
            epochs,
            compaction: Mutex::new(()),
        });
        let (snapshots, snapshot_thread) = snapshot::spawn(Arc::clone(&shared))
            .map_err(|e| Error::io("starting the snapshot thread", e))?;
        let writer = Writer {
            shared: Arc::clone(&shared),
            active: recovered.active,
            next_seq: recovered.next_seq,
            lock: Some(lock),
            sealed_since_snapshot: 0,
            snapshots: Some(snapshots),
            snapshot_thread: Some(snapshot_thread),
            failed: None,
            dead_blobs: Vec::new(),
        };
        let (requests, received) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("logstore-writer".into())
            .spawn(move || writer.run(received))
            .map_err(|e| Error::io("starting the writer thread", e))?;
        let store = LogStore {
            shared,
            handle: Arc::new(Handle { requests, report }),
            presigner: None,
        };
        if let Some(interval) = options.background_compaction {
            compaction::spawn_background(&store, interval)?;
        }
        Ok(store)
    }

    /// This store with presigned URLs: [`Backend::presign`](storage_core::Backend::presign)
    /// signs URLs under `presigner`'s base URL, which the application
    /// serves by checking each request with [`LocalPresigner::verify`] and
    /// answering it from this store (see [`storage_core::presign`]), and
    /// [`Capabilities::presigned_urls`](storage_core::Capabilities::presigned_urls)
    /// is true. Clones share the setting they were made with.
    pub fn with_presigner(mut self, presigner: LocalPresigner) -> Self {
        self.presigner = Some(Arc::new(presigner));
        self
    }

    /// The presigner set by [`LogStore::with_presigner`], if any.
    pub(crate) fn presigner(&self) -> Option<&LocalPresigner> {
        self.presigner.as_deref()
    }

    /// What the open found: whether the snapshot was used, and how many
    /// bytes of torn tail were truncated.
    pub fn open_report(&self) -> OpenReport {
        self.handle.report
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Number of live objects.
    pub fn len(&self) -> usize {
        self.shared.index.len()
    }

    /// Whether the store holds no objects.
    pub fn is_empty(&self) -> bool {
        self.shared.index.is_empty()
    }

    async fn request(&self, op: Op) -> Result<Reply> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.handle
            .requests
            .send(Request { op, reply })
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Writes an index snapshot now, so that the next open replays nothing
    /// written before it. It is written by the snapshot thread while
    /// commits go on (format and reasoning in [`snapshot`]); this returns
    /// once it is durable.
    ///
    /// # Errors
    /// I/O errors writing the snapshot; an error if the store is closed.
    pub async fn snapshot(&self) -> Result<()> {
        self.request(Op::Snapshot).await.map(|_| ())
    }

    /// Writes a final snapshot, stops the writer and releases the directory
    /// lock. Reads keep working on this handle's clones; writes fail.
    ///
    /// # Errors
    /// I/O errors writing the snapshot (the lock is released anyway).
    pub async fn close(&self) -> Result<()> {
        self.request(Op::Close).await.map(|_| ())
    }

    /// Disk bytes of every segment (headers included) and of the live
    /// records in them; their ratio is the space amplification.
    pub fn space(&self) -> (u64, u64) {
        let total = self
            .shared
            .segments()
            .values()
            .filter_map(|s| std::fs::metadata(&s.path).ok())
            .map(|m| m.len())
            .sum();
        let live = self.shared.index.iter().map(|(_, e)| e.location.len).sum();
        (total, live)
    }
}

fn closed() -> Error {
    Error::Backend {
        transient: false,
        message: "the log store is closed".into(),
        source: None,
    }
}

/// The path of blob `id`.
pub(crate) fn blob_path(dir: &Path, id: u64) -> PathBuf {
    dir.join("blobs").join(format!("{id:020}.blob"))
}

pub(crate) use crate::util::sync_dir;

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
