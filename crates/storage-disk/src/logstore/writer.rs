//! The writer thread: group commit.
//!
//! One thread owns the active segment. Callers queue [`Request`]s; the writer
//! takes everything queued, decides every compare-and-swap against the index
//! and the earlier writes of the same batch, appends the batch's records with
//! one write, calls `fdatasync` once, then updates the index, publishes the
//! changes and answers every caller. While one `fdatasync` runs, the next
//! batch gathers in the queue: there is no timer.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use bytes::Bytes;
use storage_core::raw::{check_if_match, check_put_mode};
use storage_core::{Change, ChangeKind, ETag, Error, Key, ObjectMeta, PutMode, Result};
use tokio::sync::oneshot;

use super::index::{IndexEntry, Location};
use super::record::{self, BlobRef, RecordHeader, RecordMeta, RecordType};
use super::segment::{SEGMENT_HEADER_LEN, Segment, SegmentHeader, segment_path};
use super::{Durability, Shared, blob_path, snapshot, sync_dir};
use crate::power_loss;

/// Most requests committed in one batch.
const MAX_BATCH: usize = 4096;
/// In `Buffered` mode, superseded blobs kept for a durable point before
/// one is forced (an `fdatasync`), so that their disk space stays bounded.
const MAX_DEAD_BLOBS: usize = 64;

/// The value of a put.
#[derive(Debug)]
pub enum Value {
    /// Stored inline in the record.
    Inline(Bytes),
    /// Already written, fsynced, to a blob file.
    Blob(BlobRef),
}

/// One operation for the writer.
#[derive(Debug)]
pub enum Op {
    /// A put with its precondition.
    Put {
        key: Key,
        mode: PutMode,
        meta: Option<Arc<RecordMeta>>,
        value: Value,
        sha256: [u8; 32],
        modified_ms: u64,
    },
    /// A delete, conditional when `if_match` is set.
    Delete { key: Key, if_match: Option<ETag> },
    /// Promotes the write staged at `staged` to `key` under `mode`, in one
    /// record: the staged value moves (a blob by reference), the staged key
    /// is deleted.
    Promote {
        key: Key,
        staged: Key,
        mode: PutMode,
        modified_ms: u64,
    },
    /// Compaction: append this record again if it is still live.
    Relocate {
        key: Key,
        seq: u64,
        kind: RecordType,
        record: Bytes,
    },
    /// Make every committed record durable (`fdatasync` of the active
    /// segment in [`Durability::Buffered`] mode; nothing to do otherwise).
    Sync,
    /// Write an index snapshot now.
    Snapshot,
    /// Write a snapshot, release the directory lock and stop.
    Close,
}

/// The writer's answer.
#[derive(Debug)]
pub enum Reply {
    /// A put's new metadata.
    Put(ObjectMeta),
    /// A delete, snapshot or close is done.
    Done,
    /// Whether a relocated record was still live and was copied.
    Relocated(bool),
}

/// An operation and where to send its answer.
#[derive(Debug)]
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The caller waiting for the answer.
    pub reply: oneshot::Sender<Result<Reply>>,
}

/// The segment being appended to.
#[derive(Debug)]
pub struct Active {
    /// The segment, as readers see it.
    pub segment: Arc<Segment>,
    /// A handle for appending.
    pub file: File,
    /// Its length in bytes: where the next record goes.
    pub len: u64,
    /// Keys and sequence numbers written to it, whose index entries hold the
    /// record bytes in memory until the segment is sealed.
    pub tail: Vec<(Key, u64)>,
}

/// The writer thread's state.
#[derive(Debug)]
pub struct Writer {
    /// State shared with readers.
    pub shared: Arc<Shared>,
    /// The active segment.
    pub active: Active,
    /// The next sequence number.
    pub next_seq: u64,
    /// The directory lock, released on close.
    pub lock: Option<File>,
    /// Segments sealed since the last snapshot.
    pub sealed_since_snapshot: u32,
    /// The snapshot thread's queue; `None` once it is stopped.
    pub snapshots: Option<std::sync::mpsc::Sender<snapshot::Job>>,
    /// The snapshot thread, joined before the directory lock is released.
    pub snapshot_thread: Option<std::thread::JoinHandle<()>>,
    /// Set after a failed write or fsync: the file's state is unknown, so
    /// every later write fails until the store is reopened (and recovered).
    pub failed: Option<String>,
    /// In [`Durability::Buffered`] mode, blobs superseded by records not
    /// yet durable: unlinked at the next `fdatasync` (segment roll,
    /// snapshot, sync), so that a power loss, which may drop those
    /// records, never leaves a surviving record without its blob.
    pub dead_blobs: Vec<u64>,
}

/// A decided operation waiting for the batch's fsync.
enum Decided {
    Put {
        reply: oneshot::Sender<Result<Reply>>,
        key: Key,
        entry: IndexEntry,
        at: usize,
    },
    Delete {
        reply: oneshot::Sender<Result<Reply>>,
        key: Key,
        written: bool,
    },
    Relocate {
        reply: oneshot::Sender<Result<Reply>>,
        key: Key,
        seq: u64,
        at: usize,
        len: u64,
    },
    Promote {
        reply: oneshot::Sender<Result<Reply>>,
        key: Key,
        staged: Key,
        entry: IndexEntry,
        at: usize,
    },
    /// A failed condition decided against an earlier write of the same
    /// batch: answered only once that write is visible to readers, so that
    /// no caller learns of a write (through its refusal) before a read could
    /// see it (linearizability).
    Refused {
        reply: oneshot::Sender<Result<Reply>>,
        error: Error,
    },
}

/// How long the writer polls for the next request after a commit before it
/// sleeps: a writer that puts again as soon as its put is answered is back
/// within tens of microseconds, and finding its request without a futex
/// wake-up saves about as much per put (1 writer on the 2-core test
/// machine: 0.70× to 0.79× the raw append + `fdatasync` loop, means of 4
/// interleaved runs). An idle store pays it once per commit, and a busy one
/// never, its next batch being queued already.
const POLL_BEFORE_SLEEP: std::time::Duration = std::time::Duration::from_micros(60);

/// The next request: polled for [`POLL_BEFORE_SLEEP`], then waited for.
fn next_request(
    requests: &Receiver<Request>,
) -> std::result::Result<Request, std::sync::mpsc::RecvError> {
    let start = std::time::Instant::now();
    loop {
        match requests.try_recv() {
            Ok(request) => return Ok(request),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                return Err(std::sync::mpsc::RecvError);
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => {}
        }
        if start.elapsed() >= POLL_BEFORE_SLEEP {
            return requests.recv();
        }
        std::hint::spin_loop();
    }
}

impl Writer {
    /// Runs until every sender is gone or a close request arrives.
    pub fn run(mut self, requests: Receiver<Request>) {
        while let Ok(first) = next_request(&requests) {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match requests.try_recv() {
                    Ok(request) => batch.push(request),
                    Err(_) => break,
                }
            }
            if self.commit(batch) {
                return;
            }
        }
        // Every handle is gone: leave a snapshot so the next open is fast
        // (not after a failed write: what is on disk is unknown).
        if self.failed.is_none() {
            let _ = self.snapshot_and_wait();
        }
        self.stop_snapshots();
    }

    /// Stops the snapshot thread once every queued snapshot is written, so
    /// that none is written after the directory lock is released.
    fn stop_snapshots(&mut self) {
        self.snapshots = None;
        if let Some(thread) = self.snapshot_thread.take() {
            let _ = thread.join();
        }
    }

    fn current_seq(&self, overlay: &HashMap<Key, Option<u64>>, key: &Key) -> Option<u64> {
        match overlay.get(key) {
            Some(seq) => *seq,
            None => self.shared.index.get(key).map(|e| e.seq),
        }
    }

    /// Commits one batch; returns whether the writer must stop.
    fn commit(&mut self, batch: Vec<Request>) -> bool {
        let mut buf = Vec::new();
        let mut overlay: HashMap<Key, Option<u64>> = HashMap::new();
        let mut decided = Vec::with_capacity(batch.len());
        let mut controls = Vec::new();
        for Request { op, reply } in batch {
            if let Some(reason) = &self.failed {
                if let Op::Put {
                    value: Value::Blob(blob),
                    ..
                } = &op
                {
                    remove_blob(&self.shared, blob.id);
                }
                let _ = reply.send(Err(failed_error(reason)));
                continue;
            }
            match op {
                Op::Put {
                    key,
                    mode,
                    meta,
                    value,
                    sha256,
                    modified_ms,
                } => {
                    let current = self.current_seq(&overlay, &key);
                    if let Err(e) = check_put_mode(
                        &key,
                        &mode,
                        current.map(|seq| self.shared.epochs.etag(seq)).as_ref(),
                    ) {
                        if let Value::Blob(blob) = &value {
                            remove_blob(&self.shared, blob.id);
                        }
                        refuse(&mut decided, overlay.contains_key(&key), reply, e);
                        continue;
                    }
                    let seq = self.take_seq();
                    let at = buf.len();
                    let entry = encode_put(
                        &mut buf,
                        &key,
                        seq,
                        meta,
                        value,
                        sha256,
                        modified_ms,
                        &self.active,
                    );
                    let entry = IndexEntry {
                        location: Location {
                            offset: self.active.len + at as u64,
                            ..entry.location
                        },
                        ..entry
                    };
                    overlay.insert(key.clone(), Some(seq));
                    decided.push(Decided::Put {
                        reply,
                        key,
                        entry,
                        at,
                    });
                }
                Op::Delete { key, if_match } => {
                    let current = self.current_seq(&overlay, &key);
                    if let Some(expected) = &if_match
                        && let Err(e) = check_if_match(
                            &key,
                            expected,
                            current.map(|seq| self.shared.epochs.etag(seq)).as_ref(),
                        )
                    {
                        refuse(&mut decided, overlay.contains_key(&key), reply, e);
                        continue;
                    }
                    let written = current.is_some();
                    if written {
                        let seq = self.take_seq();
                        encode_delete(&mut buf, &key, seq);
                        overlay.insert(key.clone(), None);
                    }
                    decided.push(Decided::Delete {
                        reply,
                        key,
                        written,
                    });
                }
                Op::Promote {
                    key,
                    staged,
                    mode,
                    modified_ms,
                } => {
                    let pending = overlay.contains_key(&key) || overlay.contains_key(&staged);
                    let current = self.current_seq(&overlay, &key);
                    let source = check_put_mode(
                        &key,
                        &mode,
                        current.map(|seq| self.shared.epochs.etag(seq)).as_ref(),
                    )
                    .and_then(|()| self.staged_source(&overlay, &decided, &buf, &staged));
                    let (source, inline, sha256) = match source {
                        Ok(found) => found,
                        Err(e) => {
                            refuse(&mut decided, pending, reply, e);
                            continue;
                        }
                    };
                    let seq = self.take_seq();
                    let at = buf.len();
                    let entry = encode_promote(
                        &mut buf,
                        &key,
                        &staged,
                        seq,
                        &source,
                        &inline,
                        &sha256,
                        modified_ms,
                        &self.active,
                    );
                    overlay.insert(key.clone(), Some(seq));
                    overlay.insert(staged.clone(), None);
                    decided.push(Decided::Promote {
                        reply,
                        key,
                        staged,
                        entry,
                        at,
                    });
                }
                Op::Relocate {
                    key,
                    seq,
                    kind,
                    record,
                } => {
                    let current = self.current_seq(&overlay, &key);
                    let live = match kind {
                        RecordType::Delete => current.is_none_or(|c| c < seq),
                        RecordType::Put | RecordType::PutBlob => current == Some(seq),
                        // Its staged tombstone is relocated on its own
                        // (`compaction::copy_live`).
                        RecordType::Promote | RecordType::PromoteBlob => current == Some(seq),
                    };
                    if !live {
                        let _ = reply.send(Ok(Reply::Relocated(false)));
                        continue;
                    }
                    let at = buf.len();
                    buf.extend_from_slice(&record);
                    // A copy is never the first of its new batch but by
                    // the mark set below.
                    record::set_batch_start(&mut buf[at..], false);
                    decided.push(Decided::Relocate {
                        reply,
                        key,
                        seq,
                        at,
                        len: record.len() as u64,
                    });
                }
                Op::Sync | Op::Snapshot | Op::Close => controls.push((op, reply)),
            }
        }
        if let Ok(first) = record::RecordHeader::decode(&buf)
            && let Some(first) = buf.get_mut(..first.record_len() as usize)
        {
            record::set_batch_start(first, true);
        }
        if !buf.is_empty()
            && let Err(reason) = self.append(&buf)
        {
            self.failed = Some(reason.clone());
            for d in decided {
                // Blobs stay: the failed write may have reached the disk
                // with its records, and the next open sweeps the blobs no
                // record refers to.
                let reply = match d {
                    Decided::Put { reply, .. }
                    | Decided::Delete { reply, .. }
                    | Decided::Promote { reply, .. }
                    | Decided::Relocate { reply, .. }
                    | Decided::Refused { reply, .. } => reply,
                };
                let _ = reply.send(Err(failed_error(&reason)));
            }
            return self.run_controls(controls);
        }
        self.apply(decided, Bytes::from(buf));
        if self.active.len >= self.shared.options.segment_bytes
            && let Err(reason) = self.roll()
        {
            self.failed = Some(reason);
        }
        self.run_controls(controls)
    }

    /// The version staged at `staged` that a promote moves, as readers
    /// will see it once earlier writes of this batch apply, its content
    /// when stored inline, and its SHA-256 (read back from its record,
    /// checked against the record's CRC32C).
    fn staged_source(
        &self,
        overlay: &HashMap<Key, Option<u64>>,
        decided: &[Decided],
        buf: &[u8],
        staged: &Key,
    ) -> Result<(IndexEntry, Bytes, [u8; 32])> {
        let not_found = || Error::NotFound {
            key: staged.to_string(),
        };
        let (entry, record) = match overlay.get(staged) {
            None => {
                let entry = self.shared.index.get(staged).ok_or_else(not_found)?;
                let record = read_record(&entry.location, staged)?;
                ((*entry).clone(), record)
            }
            Some(None) => return Err(not_found()),
            // Written earlier in this batch: its record is in `buf`.
            Some(Some(_)) => decided
                .iter()
                .rev()
                .find_map(|d| match d {
                    Decided::Put { key, entry, at, .. }
                    | Decided::Promote { key, entry, at, .. }
                        if key == staged =>
                    {
                        let len = entry.location.len as usize;
                        Some((entry.clone(), Bytes::copy_from_slice(&buf[*at..*at + len])))
                    }
                    _ => None,
                })
                .ok_or_else(not_found)?,
        };
        let short = || Error::ChecksumMismatch {
            key: staged.to_string(),
            expected: "a record holding the staged value".into(),
            actual: "a shorter record: the segment is corrupt".into(),
        };
        let sha256 = entry.location.sha256_in(&record).ok_or_else(short)?;
        if entry.location.blob().is_some() {
            return Ok((entry, Bytes::new(), sha256));
        }
        let start = entry.location.value_offset;
        let inline = start
            .checked_add(entry.size())
            .and_then(|end| record.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?))
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| Error::ChecksumMismatch {
                key: staged.to_string(),
                expected: "a record holding the staged value".into(),
                actual: "a shorter record: the segment is corrupt".into(),
            })?;
        Ok((entry, inline, sha256))
    }

    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    /// Appends `buf` at the end of the active segment and makes it durable.
    fn append(&mut self, buf: &[u8]) -> std::result::Result<(), String> {
        let file = &self.active.file;
        let path = &self.active.segment.path;
        file.write_all_at(buf, self.active.len)
            .map_err(|e| format!("appending to segment {}: {e}", self.active.segment.id))?;
        power_loss::wrote(path, self.active.len, buf);
        if self.shared.options.durability == Durability::Fsync {
            file.sync_data()
                .map_err(|e| format!("fdatasync of segment {}: {e}", self.active.segment.id))?;
            power_loss::synced(path);
        }
        Ok(())
    }

    /// Updates the index, publishes changes and answers callers, after the
    /// batch is durable.
    fn apply(&mut self, decided: Vec<Decided>, batch: Bytes) {
        let index = &self.shared.index;
        let mut dead_blobs = Vec::new();
        for d in decided {
            match d {
                Decided::Put {
                    reply,
                    key,
                    entry,
                    at,
                } => {
                    let meta = install(
                        &self.shared,
                        &mut self.active.tail,
                        key,
                        entry,
                        &batch,
                        at,
                        &mut dead_blobs,
                    );
                    let _ = reply.send(Ok(Reply::Put(meta)));
                }
                Decided::Delete {
                    reply,
                    key,
                    written,
                } => {
                    if written {
                        if let Some(old) = index.remove(&key)
                            && let Some(blob) = old.location.blob()
                        {
                            dead_blobs.push(blob.id);
                        }
                        self.shared.feed.publish(Change {
                            key,
                            kind: ChangeKind::Delete,
                            etag: None,
                        });
                    }
                    let _ = reply.send(Ok(Reply::Done));
                }
                Decided::Promote {
                    reply,
                    key,
                    staged,
                    entry,
                    at,
                } => {
                    // The staged key's blob, if any, now belongs to `key`.
                    let moved = entry.location.blob().map(|b| b.id);
                    if let Some(old) = index.remove(&staged)
                        && let Some(blob) = old.location.blob()
                        && Some(blob.id) != moved
                    {
                        dead_blobs.push(blob.id);
                    }
                    let meta = install(
                        &self.shared,
                        &mut self.active.tail,
                        key,
                        entry,
                        &batch,
                        at,
                        &mut dead_blobs,
                    );
                    let _ = reply.send(Ok(Reply::Put(meta)));
                }
                Decided::Relocate {
                    reply,
                    key,
                    seq,
                    at,
                    len,
                } => {
                    if let Some(old) = index.get(&key)
                        && old.seq == seq
                    {
                        let entry = IndexEntry {
                            location: Location {
                                segment: Arc::clone(&self.active.segment),
                                offset: self.active.len + at as u64,
                                len,
                                tail: Some(Box::new(batch.slice(at..at + len as usize))),
                                ..old.location.clone()
                            },
                            ..(*old).clone()
                        };
                        index.set(key.clone(), entry);
                        self.active.tail.push((key, seq));
                    }
                    let _ = reply.send(Ok(Reply::Relocated(true)));
                }
                Decided::Refused { reply, error } => {
                    let _ = reply.send(Err(error));
                }
            }
        }
        self.active.len += batch.len() as u64;
        if self.shared.options.durability == Durability::Fsync {
            for id in dead_blobs {
                remove_blob(&self.shared, id);
            }
        } else {
            self.dead_blobs.extend(dead_blobs);
            if self.dead_blobs.len() >= MAX_DEAD_BLOBS
                && let Err(reason) = self.sync()
            {
                self.failed = Some(reason);
            }
        }
    }

    /// Makes the active segment's records durable where commits do not
    /// (`Buffered` mode), then unlinks the blobs they superseded.
    fn sync(&mut self) -> std::result::Result<(), String> {
        if self.shared.options.durability == Durability::Buffered {
            self.active
                .file
                .sync_data()
                .map_err(|e| format!("fdatasync of segment {}: {e}", self.active.segment.id))?;
            power_loss::synced(&self.active.segment.path);
        }
        for id in std::mem::take(&mut self.dead_blobs) {
            remove_blob(&self.shared, id);
        }
        Ok(())
    }

    /// Seals the active segment (durable first) and starts the next one.
    fn roll(&mut self) -> std::result::Result<(), String> {
        self.sync()?;
        let id = self.active.segment.id + 1;
        let dir = &self.shared.dir;
        let path = segment_path(dir, id);
        let header = SegmentHeader {
            id,
            first_seq: self.next_seq,
        };
        let file =
            create_segment(&path, &header).map_err(|e| format!("creating segment {id}: {e}"))?;
        sync_dir(&dir.join("segments"))
            .map_err(|e| format!("syncing the segment directory: {e}"))?;
        let segment =
            Arc::new(Segment::open(id, path).map_err(|e| format!("opening segment {id}: {e}"))?);
        let sealed = std::mem::replace(
            &mut self.active,
            Active {
                segment: Arc::clone(&segment),
                file,
                len: SEGMENT_HEADER_LEN,
                tail: Vec::new(),
            },
        );
        self.shared.register_segment(Arc::clone(&segment));
        if !self.shared.options.nfs {
            // Without a map, reads of the sealed segment use pread.
            let _ = sealed.segment.map_sealed();
        }
        let index = &self.shared.index;
        for (key, seq) in sealed.tail {
            if let Some(e) = index.get(&key)
                && e.seq == seq
                && e.location.segment.id == sealed.segment.id
            {
                let mut entry = (*e).clone();
                entry.location.tail = None;
                index.set(key, entry);
            }
        }
        self.sealed_since_snapshot += 1;
        if self
            .shared
            .options
            .snapshot_every_segments
            .is_some_and(|n| self.sealed_since_snapshot >= n)
        {
            self.snapshot(snapshot::Done::Nobody)?;
        }
        Ok(())
    }

    /// Makes the current log position durable and queues a snapshot naming
    /// it for the snapshot thread; `done` is answered when it is written.
    fn snapshot(&mut self, done: snapshot::Done) -> std::result::Result<(), String> {
        if let Err(e) = self.sync() {
            done.answer(Err(e.clone()));
            return Err(e);
        }
        let job = snapshot::Job {
            segment: self.active.segment.id,
            offset: self.active.len,
            next_seq: self.next_seq,
            done,
        };
        let sent = match &self.snapshots {
            Some(snapshots) => snapshots.send(job).map_err(|unsent| unsent.0),
            None => Err(job),
        };
        if let Err(unsent) = sent {
            let e = "the snapshot thread stopped".to_string();
            unsent.done.answer(Err(e.clone()));
            return Err(e);
        }
        self.sealed_since_snapshot = 0;
        Ok(())
    }

    /// Queues a snapshot and waits until it is written.
    fn snapshot_and_wait(&mut self) -> std::result::Result<(), String> {
        let (done, written) = std::sync::mpsc::channel();
        self.snapshot(snapshot::Done::Writer(done))?;
        written
            .recv()
            .map_err(|_| "the snapshot thread stopped".to_string())?
    }

    /// Answers sync, snapshot and close requests; returns whether to stop.
    /// Requests after a close are answered as closed.
    fn run_controls(&mut self, controls: Vec<(Op, oneshot::Sender<Result<Reply>>)>) -> bool {
        let as_error = |message: String| Error::Backend {
            transient: false,
            message,
            source: None,
        };
        let mut stop = false;
        for (op, reply) in controls {
            if stop {
                let _ = reply.send(Err(super::closed()));
                continue;
            }
            if let Some(reason) = &self.failed {
                let error = failed_error(reason);
                if matches!(op, Op::Close) {
                    self.stop_snapshots();
                    self.lock = None;
                    stop = true;
                }
                let _ = reply.send(Err(error));
                continue;
            }
            match op {
                Op::Sync => {
                    let _ = reply.send(self.sync().map(|()| Reply::Done).map_err(as_error));
                }
                Op::Close => {
                    // The lock is released only once the final snapshot,
                    // and every one queued before it, is written.
                    let result = self.snapshot_and_wait();
                    self.stop_snapshots();
                    self.lock = None;
                    stop = true;
                    let _ = reply.send(result.map(|()| Reply::Done).map_err(as_error));
                }
                _ => {
                    // Answered by the snapshot thread once written; commits
                    // go on meanwhile. A failure to queue it is answered
                    // here.
                    let _ = self.snapshot(snapshot::Done::Caller(reply));
                }
            }
        }
        stop
    }
}

/// Makes `entry` (of a put or promote whose record is at `at` in `batch`)
/// the current version of `key`, keeping the record's bytes in memory,
/// noting the blob it supersedes and publishing the change; returns what
/// the caller is answered.
fn install(
    shared: &Shared,
    tail: &mut Vec<(Key, u64)>,
    key: Key,
    mut entry: IndexEntry,
    batch: &Bytes,
    at: usize,
    dead_blobs: &mut Vec<u64>,
) -> ObjectMeta {
    let len = entry.location.len as usize;
    let seq = entry.seq;
    let record = batch.slice(at..at + len);
    let sha256 = entry.location.sha256_in(&record);
    entry.location.tail = Some(Box::new(record));
    let meta = entry.object_meta(&key, &shared.epochs, sha256);
    if let Some(old) = shared.index.set(key.clone(), entry)
        && let Some(blob) = old.location.blob()
    {
        dead_blobs.push(blob.id);
    }
    tail.push((key.clone(), seq));
    if shared.feed.has_subscribers() {
        shared.feed.publish(Change {
            key,
            kind: ChangeKind::Put,
            etag: Some(meta.etag.clone()),
        });
    }
    meta
}

/// Answers a failed condition: at once when it was decided against the
/// index (what readers already see), or after the batch is applied when it
/// was decided against an earlier write of the same batch (`pending`).
fn refuse(
    decided: &mut Vec<Decided>,
    pending: bool,
    reply: oneshot::Sender<Result<Reply>>,
    error: Error,
) {
    if pending {
        decided.push(Decided::Refused { reply, error });
    } else {
        let _ = reply.send(Err(error));
    }
}

fn failed_error(reason: &str) -> Error {
    Error::Backend {
        transient: false,
        message: format!("the log store failed and must be reopened: {reason}"),
        source: None,
    }
}

/// Creates a segment file with its header, fsynced.
pub fn create_segment(path: &std::path::Path, header: &SegmentHeader) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)?;
    power_loss::created(path);
    let header = header.encode();
    file.write_all_at(&header, 0)?;
    power_loss::wrote(path, 0, &header);
    file.sync_all()?;
    power_loss::synced(path);
    Ok(file)
}

#[allow(clippy::too_many_arguments)]
fn encode_put(
    buf: &mut Vec<u8>,
    key: &Key,
    seq: u64,
    meta: Option<Arc<RecordMeta>>,
    value: Value,
    sha256: [u8; 32],
    modified_ms: u64,
    active: &Active,
) -> IndexEntry {
    let mut meta_bytes = Vec::new();
    if let Some(m) = &meta {
        m.encode(&mut meta_bytes);
    }
    let (kind, inline, blob) = match &value {
        Value::Inline(bytes) => (RecordType::Put, bytes.clone(), None),
        Value::Blob(blob) => (
            RecordType::PutBlob,
            Bytes::copy_from_slice(&blob.encode()),
            Some(*blob),
        ),
    };
    let header = RecordHeader {
        kind,
        key_len: key.as_str().len() as u16,
        meta_len: meta_bytes.len() as u32,
        value_len: inline.len() as u64,
        seq,
        modified_ms,
    };
    let len = record::encode(&header, key.as_str(), &meta_bytes, &inline, &sha256, buf);
    IndexEntry {
        seq,
        modified_ms,
        meta,
        location: Location {
            segment: Arc::clone(&active.segment),
            offset: 0,
            len,
            value_offset: header.value_offset(),
            tail: None,
            blob: blob.map(Box::new),
        },
    }
}

/// Appends a promote record of `source` (staged at `staged`) to `key`;
/// `inline` is the content when it is not in a blob. Returns the entry of
/// `key`, its offset relative to the batch.
#[allow(clippy::too_many_arguments)]
fn encode_promote(
    buf: &mut Vec<u8>,
    key: &Key,
    staged: &Key,
    seq: u64,
    source: &IndexEntry,
    inline: &[u8],
    sha256: &[u8; 32],
    modified_ms: u64,
    active: &Active,
) -> IndexEntry {
    let mut meta_bytes = Vec::new();
    if let Some(m) = &source.meta {
        m.encode(&mut meta_bytes);
    }
    let prefix = record::promote_prefix_len(staged.as_str());
    let mut value = Vec::with_capacity(prefix + inline.len().max(record::BLOB_REF_LEN));
    record::encode_promote_prefix(staged.as_str(), &mut value);
    let kind = match source.location.blob() {
        Some(blob) => {
            value.extend_from_slice(&blob.encode());
            RecordType::PromoteBlob
        }
        None => {
            value.extend_from_slice(inline);
            RecordType::Promote
        }
    };
    let header = RecordHeader {
        kind,
        key_len: key.as_str().len() as u16,
        meta_len: meta_bytes.len() as u32,
        value_len: value.len() as u64,
        seq,
        modified_ms,
    };
    let at = buf.len();
    let len = record::encode(&header, key.as_str(), &meta_bytes, &value, sha256, buf);
    IndexEntry {
        seq,
        modified_ms,
        meta: source.meta.clone(),
        location: Location {
            segment: Arc::clone(&active.segment),
            offset: active.len + at as u64,
            len,
            value_offset: header.value_offset() + prefix as u64,
            tail: None,
            blob: source.location.blob.clone(),
        },
    }
}

/// The record at `location`, from memory or the segment, checked against
/// its CRC32C.
fn read_record(location: &Location, key: &Key) -> Result<Bytes> {
    let record = match &location.tail {
        Some(tail) => Bytes::clone(tail),
        None => match location.segment.mapped(location.offset, location.len) {
            Some(bytes) => bytes,
            None => {
                // The length comes from the index (a snapshot, checked only
                // by its CRC32C): never allocate past the segment's end.
                let segment_len = std::fs::metadata(&location.segment.path)
                    .map_err(|e| Error::io(format!("reading segment {}", location.segment.id), e))?
                    .len();
                if location
                    .offset
                    .checked_add(location.len)
                    .is_none_or(|end| end > segment_len)
                {
                    return Err(Error::ChecksumMismatch {
                        key: key.to_string(),
                        expected: "a record inside its segment".into(),
                        actual: "a record running past the segment's end: the index is corrupt"
                            .into(),
                    });
                }
                let mut buf = vec![0u8; location.len as usize];
                location
                    .segment
                    .read_at(&mut buf, location.offset)
                    .map_err(|e| {
                        Error::io(
                            format!("reading {key} from segment {}", location.segment.id),
                            e,
                        )
                    })?;
                Bytes::from(buf)
            }
        },
    };
    if !record::crc_ok(&record) {
        return Err(Error::ChecksumMismatch {
            key: key.to_string(),
            expected: "the CRC32C recorded at write".into(),
            actual: "a different CRC32C: the stored bytes are corrupt".into(),
        });
    }
    Ok(record)
}

fn encode_delete(buf: &mut Vec<u8>, key: &Key, seq: u64) {
    record::encode_tombstone(key.as_str(), seq, super::now_ms(), buf);
}

/// Unlinks a blob no index entry refers to any more. A reader that already
/// opened it keeps reading it; a failure only leaves garbage that the next
/// open removes.
fn remove_blob(shared: &Shared, id: u64) {
    let path = blob_path(&shared.dir, id);
    match std::fs::remove_file(&path) {
        Ok(()) => power_loss::removed(&path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(blob = id, error = %e, "could not remove a dead blob"),
    }
}
