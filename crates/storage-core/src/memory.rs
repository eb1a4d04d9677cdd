//! The in-memory backend: the reference implementation of every rule.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use futures::stream::{self, StreamExt};

use crate::raw::list::{page_from_sorted, scan_start};
use crate::{
    Backend, Body, Capabilities, Change, ChangeFeed, ChangeKind, ChangeStream, DeleteOptions, ETag,
    Error, GetOptions, GetResult, Key, ListOptions, ListPage, Locality, Metadata, ObjectMeta,
    PutMode, PutOptions, Result, TxnId,
};

/// An object store in this process's memory.
///
/// Every rule of the contract holds here, and the conformance suite checks it
/// like any other backend. Writes take a short exclusive lock on an ordered
/// map; reads take a shared lock only long enough to clone a reference to the
/// entry, so content is never copied: a get returns slices of the `Bytes`
/// that were put. A streamed body is kept as the chunks it arrived in
/// (chunks under 64 KiB are coalesced, so a stream of tiny chunks costs no
/// more than its bytes), so that a layer that transforms a body chunk by
/// chunk (encryption) stores it without a copy into one buffer. ETags are a per-instance counter, never reused.
///
/// No SHA-256 is recorded ([`Capabilities::checksums`] is false): memory is
/// the trust boundary of the process, and hashing every put would only slow
/// it down.
///
/// ```
/// use storage_core::{Backend, BackendExt, MemoryBackend, PutMode, PutOptions, Body, Key, Error};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryBackend::new();
/// let key = Key::new("counters/jobs")?;
/// let first = store.put(&key, Body::from("1"), PutOptions::mode(PutMode::IfNotExists)).await?;
/// // A second create loses and changes nothing.
/// let again = store.put(&key, Body::from("9"), PutOptions::mode(PutMode::IfNotExists)).await;
/// assert!(matches!(again, Err(Error::AlreadyExists { .. })));
/// // Compare-and-swap against the ETag we read.
/// store.put(&key, Body::from("2"), PutOptions::mode(PutMode::IfMatch(first.etag))).await?;
/// assert_eq!(store.get_bytes(&key).await?, "2");
/// # Ok::<(), Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: RwLock<BTreeMap<Key, Arc<Entry>>>,
    next_version: AtomicU64,
    changes: ChangeFeed,
}

/// Chunks of at least this many bytes are stored as they arrive; smaller
/// ones are coalesced into buffers of this size.
const COALESCE_BYTES: usize = 64 * 1024;

/// An object's content: the chunks it arrived in, in order.
#[derive(Debug, Clone, Default)]
struct Chunks {
    parts: Vec<Bytes>,
    len: u64,
}

impl Chunks {
    /// Reads `body` to its end, keeping its chunks; runs of chunks under
    /// [`COALESCE_BYTES`] are joined into one buffer of their exact size.
    async fn collect(body: Body) -> Result<Self> {
        let mut chunks = Chunks::default();
        let mut run: Vec<Bytes> = Vec::new();
        let mut run_len = 0;
        let mut stream = body.into_stream();
        loop {
            let next = stream.try_next().await?;
            let large = next.as_ref().is_some_and(|c| c.len() >= COALESCE_BYTES);
            if let Some(chunk) = next.as_ref().filter(|_| !large) {
                run_len += chunk.len();
                run.push(chunk.clone());
            }
            if next.is_none() || large || run_len >= COALESCE_BYTES {
                chunks.push_run(std::mem::take(&mut run), run_len);
                run_len = 0;
            }
            match next {
                Some(chunk) if large => chunks.push(chunk),
                Some(_) => {}
                None => return Ok(chunks),
            }
        }
    }

    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len() as u64;
        self.parts.push(chunk);
    }

    /// Pushes `run` (of `len` bytes in all) as one chunk.
    fn push_run(&mut self, mut run: Vec<Bytes>, len: usize) {
        match run.len() {
            0 => {}
            1 => self.push(run.remove(0)),
            _ => {
                let mut joined = BytesMut::with_capacity(len);
                run.iter().for_each(|c| joined.extend_from_slice(c));
                self.push(joined.freeze());
            }
        }
    }

    /// The bytes of `range` (within the content), as slices of the chunks.
    fn slices(&self, range: std::ops::Range<u64>) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut at = 0u64;
        for part in &self.parts {
            let end = at + part.len() as u64;
            if end > range.start && at < range.end {
                let from = (range.start.max(at) - at) as usize;
                let to = (range.end.min(end) - at) as usize;
                out.push(part.slice(from..to));
            }
            if end >= range.end {
                break;
            }
            at = end;
        }
        out
    }
}

/// One stored version, kept small: the map holds one per key.
#[derive(Debug)]
struct Entry {
    data: Chunks,
    etag: ETag,
    modified: SystemTime,
    /// Content type and user metadata, boxed because most objects have none.
    attributes: Option<Box<(Option<String>, Metadata)>>,
}

impl Entry {
    fn new(data: Chunks, etag: ETag, content_type: Option<String>, metadata: Metadata) -> Self {
        let attributes = (content_type.is_some() || !metadata.is_empty())
            .then(|| Box::new((content_type, metadata)));
        Entry {
            data,
            etag,
            modified: SystemTime::now(),
            attributes,
        }
    }

    fn meta(&self, key: &Key) -> ObjectMeta {
        let (content_type, metadata) = match &self.attributes {
            Some(a) => (a.0.clone(), a.1.clone()),
            None => (None, Metadata::new()),
        };
        ObjectMeta {
            key: key.clone(),
            size: self.data.len,
            etag: self.etag.clone(),
            last_modified: self.modified,
            content_type,
            metadata,
            sha256: None,
        }
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lookup(&self, key: &Key) -> Option<Arc<Entry>> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects.get(key).cloned()
    }

    /// Publishes a change while the write lock is held, so that changes of
    /// one key are streamed in commit order.
    fn publish(&self, key: &Key, kind: ChangeKind, etag: Option<&ETag>) {
        if !self.changes.has_subscribers() {
            return;
        }
        self.changes.publish(Change {
            key: key.clone(),
            kind,
            etag: etag.cloned(),
        });
    }

    fn next_etag(&self) -> ETag {
        use std::io::Write;
        let version = self.next_version.fetch_add(1, Ordering::Relaxed) + 1;
        // Format on the stack: one allocation per ETag (its own), not two.
        let mut digits = [0u8; 20];
        let mut cursor = std::io::Cursor::new(&mut digits[..]);
        let _ = write!(cursor, "{version}");
        let len = cursor.position() as usize;
        ETag::new(std::str::from_utf8(&digits[..len]).unwrap_or_default())
    }
}

/// Checks `mode` against the current version of `key`, as every backend must
/// (DESIGN section 2, rules 2 and 3).
///
/// # Errors
/// [`Error::AlreadyExists`] or [`Error::PreconditionFailed`] when the mode
/// forbids the write.
pub fn check_put_mode(key: &Key, mode: &PutMode, current: Option<&ETag>) -> Result<()> {
    match (mode, current) {
        (PutMode::Overwrite, _) | (PutMode::IfNotExists, None) => Ok(()),
        (PutMode::IfNotExists, Some(_)) => Err(Error::AlreadyExists {
            key: key.to_string(),
        }),
        (PutMode::IfMatch(expected), current) => check_if_match(key, expected, current),
    }
}

/// Checks an `If-Match` condition against the current ETag, `None` when the
/// object is missing.
///
/// # Errors
/// [`Error::PreconditionFailed`] when the object is missing or the ETags differ.
pub fn check_if_match(key: &Key, expected: &ETag, current: Option<&ETag>) -> Result<()> {
    if current == Some(expected) {
        Ok(())
    } else {
        Err(Error::PreconditionFailed {
            key: key.to_string(),
            expected: expected.clone(),
            actual: current.cloned(),
        })
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: true,
            conditional_delete: true,
            change_feed: true,
            server_side_copy: true,
            unique_etags: true,
            atomic_promote: true,
            ..Capabilities::none(Locality::Memory)
        }
    }

    /// Always healthy: there is nothing to reach.
    async fn health(&self) -> Result<()> {
        Ok(())
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        options.validate()?;
        let data = Chunks::collect(body).await?;
        let PutOptions {
            mode,
            content_type,
            metadata,
        } = options;
        // Everything but the precondition check and the insert happens
        // outside the lock; an ETag drawn for a refused put is never used.
        let entry = Arc::new(Entry::new(data, self.next_etag(), content_type, metadata));
        let meta = entry.meta(key);
        let replaced = {
            let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
            check_put_mode(key, &mode, objects.get(key).map(|e| &e.etag))?;
            let replaced = objects.insert(key.clone(), entry);
            self.publish(key, ChangeKind::Put, Some(&meta.etag));
            replaced
        };
        drop(replaced);
        Ok(meta)
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let entry = self.lookup(key).ok_or_else(|| Error::NotFound {
            key: key.to_string(),
        })?;
        let meta = entry.meta(key);
        options.check(key, &meta)?;
        let size = entry.data.len;
        let range = match &options.range {
            Some(r) => r.resolve(key, size)?,
            None => 0..size,
        };
        let body = stream::iter(entry.data.slices(range.clone()).into_iter().map(Ok)).boxed();
        Ok(GetResult::new(meta, range, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.lookup(key)
            .map(|e| e.meta(key))
            .ok_or_else(|| Error::NotFound {
                key: key.to_string(),
            })
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(expected) = &options.if_match {
            check_if_match(key, expected, objects.get(key).map(|e| &e.etag))?;
        }
        if objects.remove(key).is_some() {
            self.publish(key, ChangeKind::Delete, None);
        }
        Ok(())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        options.validate()?;
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let start = scan_start(options);
        let range = objects.range::<str, _>((Bound::Included(start), Bound::Unbounded));
        page_from_sorted(range.map(|(k, e)| e.meta(k)), options)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        let source = self.lookup(from).ok_or_else(|| Error::NotFound {
            key: from.to_string(),
        })?;
        let (content_type, metadata) = source.attributes.as_deref().cloned().unwrap_or_default();
        let entry = Arc::new(Entry::new(
            source.data.clone(),
            self.next_etag(),
            content_type,
            metadata,
        ));
        let meta = entry.meta(to);
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        check_put_mode(to, &mode, objects.get(to).map(|e| &e.etag))?;
        objects.insert(to.clone(), entry);
        self.publish(to, ChangeKind::Put, Some(&meta.etag));
        Ok(meta)
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        crate::validate_prefix(prefix)?;
        Ok(self.changes.subscribe(prefix))
    }

    /// One atomic step under the map's lock: the staged version becomes
    /// `key`'s (with a fresh ETag) and the staged name disappears, or
    /// nothing changes.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        let staged = key.staged(txn)?;
        let etag = self.next_etag();
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let source = objects
            .get(&staged)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                key: staged.to_string(),
            })?;
        check_put_mode(key, &mode, objects.get(key).map(|e| &e.etag))?;
        let (content_type, metadata) = source.attributes.as_deref().cloned().unwrap_or_default();
        let entry = Arc::new(Entry::new(
            source.data.clone(),
            etag,
            content_type,
            metadata,
        ));
        let meta = entry.meta(key);
        objects.remove(&staged);
        objects.insert(key.clone(), entry);
        self.publish(key, ChangeKind::Put, Some(&meta.etag));
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(chunks: Vec<Bytes>) -> Body {
        Body::stream(stream::iter(chunks.into_iter().map(Ok)).boxed(), None)
    }

    fn content(len: usize) -> Bytes {
        (0..len)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>()
            .into()
    }

    #[tokio::test]
    async fn large_chunks_are_kept_without_a_copy() {
        let (a, b) = (content(COALESCE_BYTES), content(COALESCE_BYTES + 7));
        let stored = Chunks::collect(body_of(vec![a.clone(), b.clone()]))
            .await
            .expect("collect");
        assert_eq!(stored.parts.len(), 2);
        assert_eq!(stored.parts[0].as_ptr(), a.as_ptr());
        assert_eq!(stored.parts[1].as_ptr(), b.as_ptr());
    }

    #[tokio::test]
    async fn tiny_chunks_are_joined_into_few_exact_buffers() {
        let data = content(3 * COALESCE_BYTES + 5);
        let tiny = (0..data.len()).map(|i| data.slice(i..i + 1)).collect();
        let stored = Chunks::collect(body_of(tiny)).await.expect("collect");
        assert_eq!(stored.parts.len(), 4);
        assert_eq!(stored.len, data.len() as u64);
        let total: usize = stored.parts.iter().map(Bytes::len).sum();
        assert_eq!(total, data.len());
    }

    #[tokio::test]
    async fn every_range_reads_the_same_bytes_across_chunk_boundaries() {
        let data = content(2 * COALESCE_BYTES + 300);
        let pieces = vec![
            data.slice(..10),
            data.slice(10..COALESCE_BYTES + 10),
            data.slice(COALESCE_BYTES + 10..COALESCE_BYTES + 20),
            data.slice(COALESCE_BYTES + 20..),
        ];
        let stored = Chunks::collect(body_of(pieces)).await.expect("collect");
        let len = data.len() as u64;
        for (start, end) in [
            (0, len),
            (0, 0),
            (5, 15),
            (9, COALESCE_BYTES as u64 + 15),
            (len - 1, len),
            (len, len),
        ] {
            let joined: Vec<u8> = stored
                .slices(start..end)
                .iter()
                .flat_map(|b| b.iter().copied())
                .collect();
            assert_eq!(joined, data[start as usize..end as usize], "{start}..{end}");
        }
    }
}
