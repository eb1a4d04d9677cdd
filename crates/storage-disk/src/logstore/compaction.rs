//! Compaction: copy the live records of mostly-dead sealed segments into the
//! active segment through the writer, then delete those segments.
//!
//! Crash safety: a record is copied with its sequence number, and recovery
//! keeps the highest sequence number of each key whatever segment holds it,
//! so a crash between the copy and the deletion leaves two equal copies. A
//! segment is deleted only once no index entry points into it; the index
//! snapshot is rewritten afterwards.
//!
//! Tombstones: a tombstone is copied forward only while an older segment
//! remains that may hold a put of its key (each sealed segment's keys are
//! read once and kept as hashes, [`KeySummary`]); otherwise it is dropped.
//! Puts it hides can only be older, and older segments only go away, so a
//! dropped tombstone is never needed again, and under endless put/delete
//! churn of new keys tombstones do not pile up. Tombstones still needed
//! count as live bytes when choosing segments to rewrite, so a segment of
//! them is not rewritten again and again.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use storage_core::{Error, Result};

use super::record::{self, RecordType};
use super::segment::{KeySummary, SEGMENT_HEADER_LEN, Segment, key_hash};
use super::writer::{Op, Reply};
use super::{Handle, LogStore, Shared, sync_dir};

/// A segment is rewritten when less than this share of its bytes is live.
pub const LIVE_RATIO_THRESHOLD: f64 = 0.5;

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Segments rewritten and deleted.
    pub segments_removed: Vec<u64>,
    /// Records copied forward.
    pub records_copied: u64,
    /// Bytes of segment files before and after.
    pub bytes_before: u64,
    /// Bytes of segment files after.
    pub bytes_after: u64,
}

impl LogStore {
    /// Rewrites every sealed segment that is more than half dead: its live
    /// records are copied into the active segment (through the writer, so
    /// they are fsynced like any commit), then the segment is deleted and a
    /// fresh index snapshot written. Safe to run while other tasks read and
    /// write.
    ///
    /// # Errors
    /// I/O errors, and a non-transient [`Error::Backend`] if a sealed
    /// segment is corrupt.
    pub async fn compact(&self) -> Result<CompactionReport> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || compact_blocking(&store.shared, &store.handle))
            .await
            .map_err(|e| Error::backend(false, "the compaction task failed", e))?
    }
}

fn disk_len(segment: &Segment) -> u64 {
    std::fs::metadata(&segment.path).map_or(0, |m| m.len())
}

fn summary(segment: &Segment) -> Result<Arc<KeySummary>> {
    segment.summary().map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => Error::Backend {
            transient: false,
            message: e.to_string(),
            source: None,
        },
        _ => Error::io(format!("reading segment {}", segment.id), e),
    })
}

fn request_blocking(handle: &Handle, op: Op) -> Result<Reply> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    handle
        .requests
        .send(super::writer::Request { op, reply })
        .map_err(|_| super::closed())?;
    answer.blocking_recv().map_err(|_| super::closed())?
}

fn compact_blocking(shared: &Shared, handle: &Handle) -> Result<CompactionReport> {
    let _one_at_a_time = shared
        .compaction
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let segments = shared.segments();
    let Some(active) = segments.keys().next_back().copied() else {
        return Ok(CompactionReport::default());
    };
    let mut live: HashMap<u64, u64> = HashMap::new();
    for (_, e) in shared.index.iter() {
        *live.entry(e.location.segment.id).or_default() += e.location.len;
    }
    let mut report = CompactionReport {
        bytes_before: segments.values().map(|s| disk_len(s)).sum(),
        ..Default::default()
    };
    // In id order; a tombstone counts as live while an older segment that
    // is not itself chosen may hold a put it hides.
    let mut candidates: Vec<Arc<Segment>> = Vec::new();
    let mut kept: Vec<Arc<KeySummary>> = Vec::new();
    for segment in segments.values().filter(|s| s.id != active) {
        let summary = summary(segment)?;
        let tombstones: u64 = summary
            .tombstones
            .iter()
            .filter(|(hash, _)| kept.iter().any(|older| older.may_hold_put(*hash)))
            .map(|(_, len)| len)
            .sum();
        let body = disk_len(segment).saturating_sub(SEGMENT_HEADER_LEN).max(1);
        let live = live.get(&segment.id).copied().unwrap_or(0) + tombstones;
        if (live as f64) < LIVE_RATIO_THRESHOLD * body as f64 {
            candidates.push(Arc::clone(segment));
        } else {
            kept.push(summary);
        }
    }
    let rewritten = (|| -> Result<()> {
        for segment in candidates {
            // The segments that may still hold a put a tombstone of this one
            // hides: older ones not removed by now. Only compaction removes
            // segments, and it runs one at a time, so the list only shrinks.
            let older: Vec<Arc<KeySummary>> = shared
                .segments()
                .range(..segment.id)
                .map(|(_, s)| summary(s))
                .collect::<Result<_>>()?;
            let needed = |key: &str| {
                let hash = key_hash(key);
                older.iter().any(|s| s.may_hold_put(hash))
            };
            report.records_copied += copy_live(shared, handle, &segment, &needed)?;
            let still_used = shared
                .index
                .iter()
                .any(|(_, e)| e.location.segment.id == segment.id);
            if still_used {
                continue;
            }
            // The copies are durable before the originals go (`Buffered` mode
            // commits without `fdatasync`).
            request_blocking(handle, Op::Sync)?;
            // The segment leaves the list (and the next snapshot) only once its
            // unlink is durable.
            match std::fs::remove_file(&segment.path) {
                Ok(()) => crate::power_loss::removed(&segment.path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("removing segment {}", segment.id), e)),
            }
            sync_dir(&shared.dir.join("segments"))
                .map_err(|e| Error::io("syncing the segment directory", e))?;
            shared
                .segments
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&segment.id);
            report.segments_removed.push(segment.id);
        }
        Ok(())
    })();
    // Once a segment is gone, a fresh snapshot stops naming it (an older
    // one would make the next open replay everything), even when a later
    // step failed.
    if !report.segments_removed.is_empty() {
        let snapshot = request_blocking(handle, Op::Snapshot);
        rewritten?;
        snapshot?;
    } else {
        rewritten?;
    }
    report.bytes_after = shared.segments().values().map(|s| disk_len(s)).sum();
    Ok(report)
}

/// Sends every live record of `segment` to the writer; returns how many were
/// copied.
fn copy_live(
    shared: &Shared,
    handle: &Handle,
    segment: &Segment,
    tombstone_needed: &dyn Fn(&str) -> bool,
) -> Result<u64> {
    let bytes = match std::fs::read(&segment.path) {
        Ok(bytes) => bytes,
        // Removed meanwhile: nothing left to copy.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(format!("reading segment {}", segment.id), e)),
    };
    let mut offset = SEGMENT_HEADER_LEN as usize;
    let mut pending = Vec::new();
    while offset < bytes.len() {
        let record = record::parse(&bytes[offset..]).map_err(|e| Error::Backend {
            transient: false,
            message: format!("segment {} is corrupt at byte {offset}: {e:?}", segment.id),
            source: None,
        })?;
        let len = record.header.record_len() as usize;
        let key = storage_core::raw::stored_key(record.key)?;
        let holds_version = || {
            shared
                .index
                .get(&key)
                .is_some_and(|e| e.seq == record.header.seq && e.location.segment.id == segment.id)
        };
        let seq = record.header.seq;
        let copy = |kind, key, bytes: &[u8]| Op::Relocate {
            key,
            seq,
            kind,
            record: Bytes::copy_from_slice(bytes),
        };
        let whole = &bytes[offset..offset + len];
        match record.header.kind {
            RecordType::Delete => {
                if tombstone_needed(key.as_str()) {
                    pending.push(copy(RecordType::Delete, key, whole));
                }
            }
            kind => {
                if holds_version() {
                    pending.push(copy(kind, key, whole));
                }
                // A promote is also a tombstone of the staged key: while an
                // older segment may hold the staged write, that tombstone
                // is copied forward on its own (never the put of a key
                // that may since have been overwritten or deleted).
                if kind.is_promote() {
                    let (staged, _) =
                        record::promote_parts(record.value).map_err(|e| Error::Backend {
                            transient: false,
                            message: format!(
                                "segment {} is corrupt at byte {offset}: {e:?}",
                                segment.id
                            ),
                            source: None,
                        })?;
                    let mut tombstone = Vec::new();
                    record::encode_tombstone(
                        staged,
                        seq,
                        record.header.modified_ms,
                        &mut tombstone,
                    );
                    if tombstone_needed(staged) {
                        let staged = storage_core::raw::stored_key(staged)?;
                        pending.push(copy(RecordType::Delete, staged, &tombstone));
                    }
                }
            }
        }
        offset += len;
    }
    let mut copied = 0;
    let answers: Vec<_> = pending
        .into_iter()
        .map(|op| {
            let (reply, answer) = tokio::sync::oneshot::channel();
            handle
                .requests
                .send(super::writer::Request { op, reply })
                .map_err(|_| super::closed())?;
            Ok(answer)
        })
        .collect::<Result<_>>()?;
    for answer in answers {
        if let Reply::Relocated(true) = answer.blocking_recv().map_err(|_| super::closed())?? {
            copied += 1;
        }
    }
    Ok(copied)
}

/// Runs compaction every `interval` on its own thread until the store is
/// dropped.
pub(super) fn spawn_background(store: &LogStore, interval: Duration) -> Result<()> {
    let shared: Weak<Shared> = Arc::downgrade(&store.shared);
    let handle: Weak<Handle> = Arc::downgrade(&store.handle);
    std::thread::Builder::new()
        .name("logstore-compaction".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let (Some(shared), Some(handle)) = (shared.upgrade(), handle.upgrade()) else {
                    return;
                };
                if let Err(e) = compact_blocking(&shared, &handle) {
                    tracing::warn!(error = %e, "background compaction failed");
                }
            }
        })
        .map(|_| ())
        .map_err(|e| Error::io("starting the compaction thread", e))
}
