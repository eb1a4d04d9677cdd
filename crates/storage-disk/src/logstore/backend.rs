//! The `Backend` implementation of `LogStore`: puts queue for the writer,
//! reads go straight to the index and the segments.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::stream::{self, StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
#[cfg(doc)]
use storage_core::presign::LocalPresigner;
use storage_core::raw::list::{page_from_sorted, scan_start};
use storage_core::{
    Backend, Body, ByteStream, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, Locality, ObjectMeta, PresignMethod, PutMode,
    PutOptions, Result, TxnId,
};

use super::index::IndexEntry;
use super::record::{BlobRef, RecordMeta, crc_ok};
use super::writer::{Op, Reply, Value};
use super::{LogStore, blob_path, now_ms};
use crate::util::{RemoveOnDrop, blocking, sync_dir};

/// Reads of at most this many bytes from a segment not in memory are tried
/// on the async worker when the page cache holds them (`RWF_NOWAIT`).
const CACHED_READ_BYTES: u64 = 64 * 1024;
/// Values above this many bytes are hashed on the blocking pool.
const INLINE_HASH_BYTES: usize = 64 * 1024;
/// Chunk size of streamed blob reads.
const BLOB_CHUNK_BYTES: u64 = 2 * 1024 * 1024;
/// A blob is written in batches of at least this many bytes (or the whole
/// rest of the body), one batch on the blocking pool while the next is
/// gathered from the body: at most two batches and a chunk in memory.
const WRITE_BATCH_BYTES: usize = 1024 * 1024;
/// How often a read retries when a concurrent put removed the blob it found.
const READ_ATTEMPTS: usize = 16;

/// A blob being written: the file and the running checksums.
struct BlobWriter {
    file: File,
    path: std::path::PathBuf,
    len: u64,
    sha256: Sha256,
    crc32c: u32,
}

impl BlobWriter {
    fn write(mut self, chunks: Vec<Bytes>) -> io::Result<Self> {
        for chunk in chunks {
            self.file.write_all_at(&chunk, self.len)?;
            crate::power_loss::wrote(&self.path, self.len, &chunk);
            self.len += chunk.len() as u64;
            self.sha256.update(&chunk);
            self.crc32c = crc32c::crc32c_append(self.crc32c, &chunk);
        }
        Ok(self)
    }
}

/// The blob writer, idle or busy writing a batch on the blocking pool.
enum Slot {
    Idle(BlobWriter),
    Busy(tokio::task::JoinHandle<Result<BlobWriter>>),
}

impl Slot {
    /// The writer, once its batch (if any) is written.
    async fn settle(self) -> Result<BlobWriter> {
        match self {
            Slot::Idle(writer) => Ok(writer),
            Slot::Busy(task) => task
                .await
                .map_err(|e| Error::backend(false, "blob write task failed", e))?,
        }
    }
}

impl LogStore {
    /// Streams `head` then `rest` into a new blob file, fsynced with its
    /// directory; returns the reference, size and SHA-256.
    async fn write_blob(
        &self,
        head: Vec<Bytes>,
        mut rest: ByteStream,
        guard: &mut RemoveOnDrop,
    ) -> Result<(BlobRef, [u8; 32])> {
        let id = self.shared.next_blob.fetch_add(1, Ordering::Relaxed);
        if !self.shared.epochs.blob_in_current(id) {
            return Err(Error::Backend {
                transient: false,
                message: "this open has used up its 2^40 blob numbers: reopen the store".into(),
                source: None,
            });
        }
        let path = blob_path(&self.shared.dir, id);
        guard.guard(path.clone());
        let context = format!("writing blob {}", path.display());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(context.clone(), e))?;
        crate::power_loss::created(&path);
        let mut slot = Slot::Idle(BlobWriter {
            file,
            path: path.clone(),
            len: 0,
            sha256: Sha256::new(),
            crc32c: 0,
        });
        let mut batch_len = head.iter().map(Bytes::len).sum::<usize>();
        let mut batch = head;
        let mut ended = false;
        loop {
            while !ended && batch_len < WRITE_BATCH_BYTES {
                match rest.try_next().await? {
                    Some(chunk) => {
                        batch_len += chunk.len();
                        batch.push(chunk);
                    }
                    None => ended = true,
                }
            }
            let writer = slot.settle().await?;
            if batch.is_empty() {
                slot = Slot::Idle(writer);
                break;
            }
            let chunks = std::mem::take(&mut batch);
            batch_len = 0;
            let ctx = context.clone();
            slot = Slot::Busy(tokio::task::spawn_blocking(move || {
                writer.write(chunks).map_err(|e| Error::io(ctx, e))
            }));
        }
        let writer = slot.settle().await?;
        let dir = self.shared.dir.join("blobs");
        let ctx = context.clone();
        let writer = blocking(move || {
            writer
                .file
                .sync_all()
                .map_err(|e| Error::io(ctx.clone(), e))?;
            crate::power_loss::synced(&writer.path);
            sync_dir(&dir).map_err(|e| Error::io(ctx, e))?;
            Ok(writer)
        })
        .await?;
        let blob = BlobRef {
            id,
            len: writer.len,
            crc32c: writer.crc32c,
        };
        Ok((blob, writer.sha256.finalize().into()))
    }

    /// The value of a put: inline below the large-value threshold, otherwise
    /// streamed into a blob. A body of unknown length is read up to the
    /// threshold to find out which.
    async fn value_of(
        &self,
        body: Body,
        guard: &mut RemoveOnDrop,
    ) -> Result<(Value, u64, [u8; 32])> {
        let threshold = self.shared.options.large_value_bytes;
        let declared = body.len();
        let (value, size, sha256) = self.value_of_body(body, threshold, guard).await?;
        // A body that carries other than what it declared is refused
        // before anything is committed (a blob written for it is removed
        // by the guard).
        if let Some(declared) = declared
            && declared != size
        {
            return Err(Error::invalid_argument(format!(
                "the body declared {declared} bytes but carried {size}"
            )));
        }
        Ok((value, size, sha256))
    }

    async fn value_of_body(
        &self,
        body: Body,
        threshold: u64,
        guard: &mut RemoveOnDrop,
    ) -> Result<(Value, u64, [u8; 32])> {
        // Read as a stream even when the declared length is small, so that
        // a body longer than it declares never sits in memory whole.
        let mut chunks = body.into_stream();
        let mut head = Vec::new();
        let mut buffered = 0u64;
        while buffered < threshold {
            match chunks.try_next().await? {
                Some(chunk) => {
                    buffered += chunk.len() as u64;
                    head.push(chunk);
                }
                None if head.len() == 1 => return inline(head.remove(0)).await,
                None => {
                    let mut all = BytesMut::with_capacity(buffered as usize);
                    head.iter().for_each(|c| all.extend_from_slice(c));
                    return inline(all.freeze()).await;
                }
            }
        }
        let (blob, sha256) = self.write_blob(head, chunks, guard).await?;
        Ok((Value::Blob(blob), blob.len, sha256))
    }

    fn entry(&self, key: &Key) -> Result<Arc<IndexEntry>> {
        self.shared.index.get(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })
    }
}

async fn inline(bytes: Bytes) -> Result<(Value, u64, [u8; 32])> {
    let sha256: [u8; 32] = if bytes.len() > INLINE_HASH_BYTES {
        let b = bytes.clone();
        blocking(move || Ok(Sha256::digest(&b).into())).await?
    } else {
        Sha256::digest(&bytes).into()
    };
    let size = bytes.len() as u64;
    Ok((Value::Inline(bytes), size, sha256))
}

/// The new version the writer answers a put or promote with.
fn put_reply(reply: Reply) -> Result<ObjectMeta> {
    match reply {
        Reply::Put(meta) => Ok(meta),
        other => Err(Error::backend(
            false,
            "unexpected writer reply",
            format!("{other:?}"),
        )),
    }
}

fn integrity_error(key: &Key, what: &str) -> Error {
    Error::ChecksumMismatch {
        key: key.to_string(),
        expected: format!("the {what} recorded at write"),
        actual: format!("a different {what}: the stored bytes are corrupt"),
    }
}

/// Reads `len` bytes at `offset` of the entry's segment: from the map if
/// sealed, else from the page cache on this thread if it can, else on the
/// blocking pool.
/// The content's SHA-256 from the trailer of `record`, the entry's whole
/// record.
fn trailer_sha256(entry: &IndexEntry, record: &[u8], key: &Key) -> Result<[u8; 32]> {
    entry
        .location
        .sha256_in(record)
        .ok_or_else(|| integrity_error(key, "record length"))
}

/// The content's SHA-256, read from the trailer of the entry's record (in
/// memory, mapped, or read from the segment): the index does not keep it
/// (see the index's memory notes). Only these 32 bytes are read, so they
/// are not checked against the record's CRC32C; a full read is.
async fn record_sha256(entry: &IndexEntry, key: &Key) -> Result<[u8; 32]> {
    let at = entry.location.sha256_offset();
    let bytes = match &entry.location.tail {
        Some(tail) => usize::try_from(at)
            .ok()
            .and_then(|at| tail.get(at..at + 32))
            .map(Bytes::copy_from_slice)
            .unwrap_or_default(),
        None => read_segment(entry, entry.location.offset + at, 32, key).await?,
    };
    <[u8; 32]>::try_from(&bytes[..]).map_err(|_| integrity_error(key, "record length"))
}

async fn read_segment(entry: &IndexEntry, offset: u64, len: u64, key: &Key) -> Result<Bytes> {
    let segment = Arc::clone(&entry.location.segment);
    if let Some(bytes) = segment.mapped(offset, len) {
        return Ok(bytes);
    }
    let id = segment.id;
    let context = move || format!("reading {key} from segment {id}");
    if len <= CACHED_READ_BYTES {
        let mut buf = vec![0u8; len as usize];
        match segment.read_cached(&mut buf, offset) {
            Ok(()) => return Ok(Bytes::from(buf)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Error::io(context(), e)),
        }
    }
    let message = context();
    let segment = Arc::clone(&entry.location.segment);
    blocking(move || {
        let mut buf = vec![0u8; len as usize];
        segment
            .read_at(&mut buf, offset)
            .map_err(|e| Error::io(message, e))?;
        Ok(Bytes::from(buf))
    })
    .await
}

/// Blob chunks read ahead of the consumer: the next read runs on the
/// blocking pool while the consumer processes the current chunk.
const READ_AHEAD: usize = 2;

/// Streams `range` of a blob in chunks, reading up to [`READ_AHEAD`] chunks
/// ahead; on a full read, ends with the CRC32C's verdict.
fn blob_stream(
    file: Arc<File>,
    range: std::ops::Range<u64>,
    key: Key,
    verify: Option<u32>,
) -> ByteStream {
    let end = range.end;
    let reader = key.clone();
    let reads = stream::iter((range.start..end).step_by(BLOB_CHUNK_BYTES as usize))
        .map(move |pos| {
            let (file, key) = (Arc::clone(&file), reader.clone());
            let len = (end - pos).min(BLOB_CHUNK_BYTES);
            blocking(move || {
                let mut buf = vec![0u8; len as usize];
                file.read_exact_at(&mut buf, pos)
                    .map_err(|e| Error::io(format!("reading the blob of {key}"), e))?;
                // Each chunk's CRC32C is computed beside its read; the
                // consumer only combines them.
                let crc = verify.map_or(0, |_| crc32c::crc32c(&buf));
                Ok((Bytes::from(buf), crc))
            })
        })
        .buffered(READ_AHEAD);
    stream::try_unfold((reads, 0u32), move |(mut reads, crc)| {
        let key = key.clone();
        async move {
            match reads.try_next().await? {
                Some((chunk, chunk_crc)) => {
                    let crc = crc32c::crc32c_combine(crc, chunk_crc, chunk.len());
                    Ok(Some((chunk, (reads, crc))))
                }
                None => match verify {
                    Some(expected) if crc != expected => Err(integrity_error(&key, "CRC32C")),
                    _ => Ok(None),
                },
            }
        }
    })
    .boxed()
}

impl LogStore {
    /// A get served from a record already in memory (the writer's tail or
    /// a mapped segment), without waiting for anything; `None` when the
    /// value is a blob or its record must be read from the file.
    ///
    /// # Errors
    /// As [`Backend::get`].
    fn get_at_hand(&self, key: &Key, options: &GetOptions) -> Result<Option<GetResult>> {
        let entry = self.entry(key)?;
        let location = &entry.location;
        if location.blob().is_some() {
            return Ok(None);
        }
        // As on the waiting path: the writer's own bytes are served as
        // they are; a record read back from a segment is checked against
        // its CRC32C on a full read.
        let record = match &location.tail {
            Some(tail) => Bytes::clone(tail),
            None => match location.segment.mapped(location.offset, location.len) {
                Some(record) if options.range.is_some() || crc_ok(&record) => record,
                Some(_) => return Err(integrity_error(key, "CRC32C")),
                None => return Ok(None),
            },
        };
        if options.is_conditional() {
            options.check(key, &entry.object_meta(key, &self.shared.epochs, None))?;
        }
        let size = entry.size();
        let range = match &options.range {
            Some(r) => r.resolve(key, size)?,
            None => 0..size,
        };
        let sha256 = trailer_sha256(&entry, &record, key)?;
        let start = location.value_offset + range.start;
        let bytes = record.slice(start as usize..(start + range.end - range.start) as usize);
        let meta = entry.object_meta(key, &self.shared.epochs, Some(sha256));
        let body = stream::once(async move { Ok(bytes) }).boxed();
        Ok(Some(GetResult::new(meta, range, body)))
    }

    /// A get that may wait: for a blob, or a record read from its segment
    /// file.
    ///
    /// # Errors
    /// As [`Backend::get`].
    async fn get_waiting(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        for _ in 0..READ_ATTEMPTS {
            let entry = self.entry(key)?;
            if options.is_conditional() {
                options.check(key, &entry.object_meta(key, &self.shared.epochs, None))?;
            }
            let size = entry.size();
            let range = match &options.range {
                Some(r) => r.resolve(key, size)?,
                None => 0..size,
            };
            let full = options.range.is_none();
            if let Some(blob) = entry.location.blob() {
                let sha256 = record_sha256(&entry, key).await?;
                let meta = entry.object_meta(key, &self.shared.epochs, Some(sha256));
                let path = blob_path(&self.shared.dir, blob.id);
                let file = match File::open(&path) {
                    Ok(file) => Arc::new(file),
                    // A concurrent put or delete removed this version;
                    // unless the index still names it, then it is lost.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        if self
                            .shared
                            .index
                            .get(key)
                            .is_some_and(|e| e.seq == entry.seq)
                        {
                            return Err(Error::Integrity {
                                key: key.to_string(),
                                message: format!(
                                    "blob {} holding its value is missing from {}",
                                    blob.id,
                                    path.display()
                                ),
                            });
                        }
                        continue;
                    }
                    Err(e) => return Err(Error::io(format!("opening the blob of {key}"), e)),
                };
                let body = blob_stream(
                    file,
                    range.clone(),
                    key.clone(),
                    full.then_some(blob.crc32c),
                );
                return Ok(GetResult::new(meta, range, body));
            }
            let location = &entry.location;
            let sha256;
            let bytes = if full {
                // Records of the active segment are served from the bytes the
                // writer encoded, which never left memory; everything read
                // back from a segment file is checked against its CRC32C.
                let record = match &location.tail {
                    Some(tail) => Bytes::clone(tail),
                    None => {
                        let record =
                            read_segment(&entry, location.offset, location.len, key).await?;
                        if !crc_ok(&record) {
                            return Err(integrity_error(key, "CRC32C"));
                        }
                        record
                    }
                };
                sha256 = trailer_sha256(&entry, &record, key)?;
                let start = location.value_offset as usize;
                record.slice(start..start + size as usize)
            } else {
                sha256 = record_sha256(&entry, key).await?;
                let start = location.value_offset + range.start;
                let len = range.end - range.start;
                match &location.tail {
                    Some(tail) => tail.slice(start as usize..(start + len) as usize),
                    None => read_segment(&entry, location.offset + start, len, key).await?,
                }
            };
            let meta = entry.object_meta(key, &self.shared.epochs, Some(sha256));
            let body = stream::once(async move { Ok(bytes) }).boxed();
            return Ok(GetResult::new(meta, range, body));
        }
        Err(Error::Backend {
            transient: true,
            message: format!("{key} was replaced {READ_ATTEMPTS} times while reading it"),
            source: None,
        })
    }
}

#[async_trait]
impl Backend for LogStore {
    fn name(&self) -> &str {
        "logstore"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: true,
            conditional_delete: true,
            change_feed: true,
            presigned_urls: self.presigner().is_some(),
            checksums: true,
            unique_etags: true,
            atomic_promote: true,
            ..Capabilities::none(Locality::Local)
        }
    }

    /// A URL of the configured [`LocalPresigner`]
    /// ([`LogStore::with_presigner`]); [`Error::Unsupported`] without one.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<String> {
        crate::util::presign(self, self.presigner(), method, key, expires_in)
    }

    /// A stat of the root directory.
    async fn health(&self) -> Result<()> {
        crate::util::root_health(&self.shared.dir).await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let mut guard = RemoveOnDrop::default();
        let (value, _, sha256) = self.value_of(body, &mut guard).await?;
        let meta = RecordMeta {
            content_type: options.content_type,
            metadata: options.metadata,
        };
        let op = Op::Put {
            key: key.clone(),
            mode: options.mode,
            meta: (!meta.is_empty()).then(|| Arc::new(meta)),
            value,
            sha256,
            modified_ms: now_ms(),
        };
        // From here the writer owns the blob: it removes it if the put loses.
        guard.disarm();
        put_reply(self.request(op).await?)
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        // Most reads find their record in memory or mapped: they are served
        // without awaiting, and only the others pay for the larger future.
        if let Some(result) = self.get_at_hand(key, &options)? {
            return Ok(result);
        }
        Box::pin(self.get_waiting(key, options)).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let entry = self.entry(key)?;
        let sha256 = record_sha256(&entry, key).await?;
        Ok(entry.object_meta(key, &self.shared.epochs, Some(sha256)))
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        let op = Op::Delete {
            key: key.clone(),
            if_match: options.if_match,
        };
        self.request(op).await.map(|_| ())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let start = scan_start(options);
        let entries = self
            .shared
            .index
            .range_from(start)
            .map(|(key, entry)| entry.object_meta(&key, &self.shared.epochs, None));
        page_from_sorted(entries, options)
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        storage_core::validate_prefix(prefix)?;
        Ok(self.shared.feed.subscribe(prefix))
    }

    /// One record, one atomic step: the staged version becomes `key`'s
    /// (with a fresh ETag) and the staged key is deleted, or nothing
    /// changes. A large value's blob moves by reference, so promoting a
    /// value of any size appends one record of at most 1.1 KiB plus its
    /// metadata; a value under [`large_value_bytes`] is copied into the
    /// record (format in the module docs, record type 4 and 5).
    ///
    /// [`large_value_bytes`]: crate::LogStoreOptions::large_value_bytes
    ///
    /// # Errors
    /// [`Error::NotFound`] when nothing is staged; [`Error::AlreadyExists`]
    /// or [`Error::PreconditionFailed`] when `mode` refuses the write (the
    /// staged object is kept); [`Error::ChecksumMismatch`] when the staged
    /// record fails its CRC32C.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        let op = Op::Promote {
            key: key.clone(),
            staged: key.staged(txn)?,
            mode,
            modified_ms: now_ms(),
        };
        put_reply(self.request(op).await?)
    }
}
