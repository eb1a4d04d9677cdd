//! Sealing a plaintext stream into segments and opening segments back,
//! with at most one segment held in memory either way.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use storage_core::{ByteStream, Error, Result};

use crate::format::{DEK_BYTES, PREFIX_BYTES, TAG_BYTES, segment_nonce, stored_segment_range};

/// One object's DEK with what its segments are sealed under.
pub(crate) struct SegmentKey {
    key: LessSafeKey,
    prefix: [u8; PREFIX_BYTES],
    /// `header[0..20] ‖ context`.
    aad: Vec<u8>,
    segment_bytes: u32,
}

impl SegmentKey {
    pub fn new(
        dek: &[u8; DEK_BYTES],
        prefix: [u8; PREFIX_BYTES],
        aad: Vec<u8>,
        segment_bytes: u32,
    ) -> Result<Self> {
        let unbound = UnboundKey::new(&AES_256_GCM, dek).map_err(|_| Error::Backend {
            transient: false,
            message: "an AES-256 key could not be built from the DEK".into(),
            source: None,
        })?;
        Ok(SegmentKey {
            key: LessSafeKey::new(unbound),
            prefix,
            aad,
            segment_bytes,
        })
    }

    fn nonce(&self, index: u64, last: bool) -> Result<Nonce> {
        let index = u32::try_from(index).map_err(|_| Error::TooLarge {
            key: None,
            size: index.saturating_mul(u64::from(self.segment_bytes)),
            limit: (u64::from(u32::MAX) + 1) * u64::from(self.segment_bytes),
        })?;
        Ok(Nonce::assume_unique_for_key(segment_nonce(
            &self.prefix,
            index,
            last,
        )))
    }

    /// Seals the plaintext in `buf[from..]` in place, appending the tag.
    fn seal(&self, buf: &mut BytesMut, from: usize, index: u64, last: bool) -> Result<()> {
        let plain = buf.get_mut(from..).ok_or_else(|| Error::Backend {
            transient: false,
            message: "a segment starts past its buffer".into(),
            source: None,
        })?;
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(index, last)?, Aad::from(&self.aad), plain)
            .map_err(|_| Error::Backend {
                transient: false,
                message: "sealing a segment failed".into(),
                source: None,
            })?;
        buf.extend_from_slice(tag.as_ref());
        Ok(())
    }

    /// Opens sealed segment `index` in place; returns its plaintext's
    /// length (the plaintext is the start of `segment`).
    fn open(&self, segment: &mut [u8], index: u64, last: bool, key: &str) -> Result<usize> {
        let plain = self
            .key
            .open_in_place(self.nonce(index, last)?, Aad::from(&self.aad), segment)
            .map_err(|_| Error::Integrity {
                key: key.to_owned(),
                message: format!(
                    "segment {index} does not authenticate: tampered with, truncated, reordered, moved to another key or read under another context kind"
                ),
            })?
            .len();
        Ok(plain)
    }
}

struct SealState {
    input: ByteStream,
    key: SegmentKey,
    /// The unread rest of the last input chunk.
    pending: Bytes,
    /// The item being filled: the header (first item only), then the
    /// plaintext of one segment from `start` on.
    current: BytesMut,
    start: usize,
    index: u64,
    finished: bool,
}

/// The stored form of `input`: `header` and the first sealed segment as
/// the first item (one buffer, so that a small object is one chunk), then
/// one sealed segment per item. Holds at most one segment and one input
/// chunk. `plain`, the plaintext's length when known, sizes the first
/// buffer (a 4 KiB object does not allocate a whole segment).
pub(crate) fn seal_stream(
    header: &[u8],
    key: SegmentKey,
    plain: Option<u64>,
    input: ByteStream,
) -> ByteStream {
    let size = key.segment_bytes as usize;
    let first = plain.map_or(size, |len| usize::try_from(len).unwrap_or(size).min(size));
    let mut current = BytesMut::with_capacity(header.len() + first + TAG_BYTES);
    current.extend_from_slice(header);
    let state = SealState {
        input,
        pending: Bytes::new(),
        start: current.len(),
        current,
        key,
        index: 0,
        finished: false,
    };
    stream::try_unfold(state, move |mut st| async move {
        if st.finished {
            return Ok(None);
        }
        loop {
            if !st.pending.is_empty() {
                if st.current.len() - st.start == size {
                    // More plaintext follows: the full segment is not the
                    // last.
                    let mut full = std::mem::replace(
                        &mut st.current,
                        BytesMut::with_capacity(size + TAG_BYTES),
                    );
                    st.key.seal(&mut full, st.start, st.index, false)?;
                    st.start = 0;
                    st.index += 1;
                    return Ok(Some((full.freeze(), st)));
                }
                let take = (size - (st.current.len() - st.start)).min(st.pending.len());
                st.current.extend_from_slice(&st.pending[..take]);
                st.pending.advance(take);
                continue;
            }
            match st.input.try_next().await? {
                Some(chunk) => st.pending = chunk,
                None => {
                    let mut last = std::mem::take(&mut st.current);
                    st.key.seal(&mut last, st.start, st.index, true)?;
                    st.finished = true;
                    return Ok(Some((last.freeze(), st)));
                }
            }
        }
    })
    .boxed()
}

/// Reads a stream of chunks in pieces of chosen lengths, copying each byte
/// once (into the piece) and never more than one piece at a time.
pub(crate) struct Reader {
    input: ByteStream,
    /// The unread rest of the last chunk.
    rest: Bytes,
}

impl Reader {
    pub fn new(input: ByteStream) -> Self {
        Reader {
            input,
            rest: Bytes::new(),
        }
    }

    /// The next `len` bytes in one buffer, or fewer at the end of the
    /// stream.
    pub async fn take(&mut self, len: usize) -> Result<BytesMut> {
        let mut out = BytesMut::with_capacity(len);
        self.take_into(&mut out, len).await?;
        Ok(out)
    }

    /// Appends the next `len` bytes to `out`, or fewer at the end of the
    /// stream; returns how many.
    pub async fn take_into(&mut self, out: &mut BytesMut, len: usize) -> Result<usize> {
        let mut taken = 0;
        while taken < len {
            if self.rest.is_empty() {
                match self.input.try_next().await? {
                    Some(chunk) => self.rest = chunk,
                    None => break,
                }
                continue;
            }
            let n = (len - taken).min(self.rest.len());
            out.extend_from_slice(&self.rest[..n]);
            self.rest.advance(n);
            taken += n;
        }
        Ok(taken)
    }

    /// Whether the stream has no byte left.
    pub async fn at_end(&mut self) -> Result<bool> {
        while self.rest.is_empty() {
            match self.input.try_next().await? {
                Some(chunk) => self.rest = chunk,
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    /// What is left to read, as a stream.
    pub fn into_stream(self) -> ByteStream {
        let rest = (!self.rest.is_empty()).then_some(Ok(self.rest));
        stream::iter(rest).chain(self.input).boxed()
    }
}

/// What an opened stream reads: segments `first..=last` of an object of
/// `plain` plaintext bytes, of which only the half-open plaintext range
/// `want` is returned.
pub(crate) struct OpenPlan {
    pub plain: u64,
    pub first: u64,
    pub last: u64,
    pub want: Range<u64>,
    /// The input is the whole stored object: after the last segment it
    /// must end.
    pub whole: bool,
}

/// Stored bytes gathered into one batch of segments before they are
/// opened.
const BATCH_BYTES: usize = 1024 * 1024;
/// A batch of at least this many bytes is opened on the blocking pool
/// (where a tokio runtime runs), so that two batches open on two cores
/// while the next is read; smaller ones (small objects) are opened in
/// place, without a thread hop.
const PARALLEL_BYTES: usize = 256 * 1024;
/// Batches being opened at once.
const BATCHES_IN_FLIGHT: usize = 2;

/// Sealed segments back to back, as read.
struct Batch {
    buf: BytesMut,
    /// Index, offset in `buf`, stored length and last flag of each.
    segments: Vec<(u64, usize, usize, bool)>,
}

struct OpenState {
    input: Reader,
    plan: OpenPlan,
    segment_bytes: u32,
    index: u64,
    segments: u64,
    name: String,
}

impl OpenState {
    /// The next batch of whole sealed segments, or `None` past the plan.
    async fn next_batch(&mut self) -> Result<Option<Batch>> {
        if self.index > self.plan.last {
            return Ok(None);
        }
        let mut plan = Vec::new();
        let (mut index, mut total) = (self.index, 0usize);
        while index <= self.plan.last && total < BATCH_BYTES {
            let range = stored_segment_range(index, self.plan.plain, self.segment_bytes);
            let len = (range.end - range.start) as usize;
            plan.push((index, total, len, index + 1 == self.segments));
            total += len;
            index += 1;
        }
        let mut buf = BytesMut::with_capacity(total);
        for &(index, _, len, _) in &plan {
            if self.input.take_into(&mut buf, len).await? < len {
                return Err(Error::Integrity {
                    key: self.name.clone(),
                    message: format!(
                        "the stored object ended inside segment {index} (its size says {} segments)",
                        self.segments
                    ),
                });
            }
        }
        self.index = index;
        if self.index > self.plan.last && self.plan.whole && !self.input.at_end().await? {
            return Err(Error::Integrity {
                key: self.name.clone(),
                message: "the stored object goes on after its last segment".into(),
            });
        }
        Ok(Some(Batch {
            buf,
            segments: plan,
        }))
    }
}

/// Opens every segment of `batch` in place; returns the plaintext of each
/// within `want`, as slices of the batch's buffer.
fn open_batch(key: &SegmentKey, batch: Batch, want: &Range<u64>, name: &str) -> Result<Vec<Bytes>> {
    let Batch { mut buf, segments } = batch;
    let mut plains = Vec::with_capacity(segments.len());
    for &(index, at, len, last) in &segments {
        let sealed = buf.get_mut(at..at + len).ok_or_else(|| Error::Integrity {
            key: name.to_owned(),
            message: format!("segment {index} is missing from its batch"),
        })?;
        plains.push((index, at, key.open(sealed, index, last, name)?));
    }
    let buf = buf.freeze();
    let size = u64::from(key.segment_bytes);
    Ok(plains
        .into_iter()
        .filter_map(|(index, at, plain)| {
            let start = index * size;
            let from = want.start.saturating_sub(start) as usize;
            let to = (want.end.saturating_sub(start)).min(plain as u64) as usize;
            (from < to).then(|| buf.slice(at + from..at + to))
        })
        .collect())
}

/// Stored objects up to this size are read whole by a full get and opened
/// in place with no stream machinery: the cost per call of small objects
/// (4 KiB) is then the AES-GCM work and one copy. Equal to
/// [`PARALLEL_BYTES`], below which batches are opened in place anyway.
pub(crate) const SMALL_OBJECT_BYTES: u64 = PARALLEL_BYTES as u64;

/// The plaintext of a whole small object: `input` is its stored form from
/// the first byte after the header, expected to hold `segments` segments
/// of an object of `plain` bytes; every segment is read, then opened in
/// place.
///
/// # Errors
/// [`Error::Integrity`] when the stored form ends early, goes on after its
/// last segment, or a segment does not authenticate.
pub(crate) async fn open_small(
    input: Reader,
    key: &SegmentKey,
    plain: u64,
    name: &str,
) -> Result<Vec<Bytes>> {
    let segments = crate::format::segment_count(plain, key.segment_bytes);
    let mut state = OpenState {
        input,
        plan: OpenPlan {
            plain,
            first: 0,
            last: segments.saturating_sub(1),
            want: 0..plain,
            whole: true,
        },
        segment_bytes: key.segment_bytes,
        index: 0,
        segments,
        name: name.to_owned(),
    };
    // One batch for an object this small; the loop holds whatever the
    // size says, so that no segment goes unread.
    let mut plains = Vec::new();
    while let Some(batch) = state.next_batch().await? {
        plains.extend(open_batch(key, batch, &(0..plain), name)?);
    }
    Ok(plains)
}

const _: () = assert!(SMALL_OBJECT_BYTES as usize <= BATCH_BYTES);

/// The plaintext of `plan.want`, from `input` positioned at the first byte
/// of segment `plan.first`. Segments are read in batches of about 1 MiB;
/// a large batch is opened on the blocking pool, two at a time, in order:
/// at most three batches and one input chunk are held.
pub(crate) fn open_stream(
    input: Reader,
    key: SegmentKey,
    plan: OpenPlan,
    name: String,
) -> ByteStream {
    let segments = crate::format::segment_count(plan.plain, key.segment_bytes);
    let want = plan.want.clone();
    let state = OpenState {
        input,
        segment_bytes: key.segment_bytes,
        index: plan.first,
        plan,
        segments,
        name: name.clone(),
    };
    let batches = stream::try_unfold(state, |mut st| async move {
        Ok(st.next_batch().await?.map(|batch| (batch, st)))
    });
    let key = std::sync::Arc::new(key);
    batches
        .map(move |batch| {
            let (key, want, name) = (std::sync::Arc::clone(&key), want.clone(), name.clone());
            async move {
                let batch = batch?;
                let runtime = tokio::runtime::Handle::try_current();
                match runtime {
                    Ok(runtime) if batch.buf.len() >= PARALLEL_BYTES => runtime
                        .spawn_blocking(move || open_batch(&key, batch, &want, &name))
                        .await
                        .map_err(|e| Error::backend(false, "a decryption task failed", e))?,
                    _ => open_batch(&key, batch, &want, &name),
                }
            }
        })
        .buffered(BATCHES_IN_FLIGHT)
        .map_ok(|plains| stream::iter(plains.into_iter().map(Ok)))
        .try_flatten()
        .boxed()
}
