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

    /// Opens sealed segment `index` in place, leaving its plaintext.
    fn open(&self, segment: &mut BytesMut, index: u64, last: bool, key: &str) -> Result<()> {
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
        segment.truncate(plain);
        Ok(())
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
/// chunk.
pub(crate) fn seal_stream(header: &[u8], key: SegmentKey, input: ByteStream) -> ByteStream {
    let size = key.segment_bytes as usize;
    let mut current = BytesMut::with_capacity(header.len() + size + TAG_BYTES);
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
        while out.len() < len {
            if self.rest.is_empty() {
                match self.input.try_next().await? {
                    Some(chunk) => self.rest = chunk,
                    None => break,
                }
                continue;
            }
            let n = (len - out.len()).min(self.rest.len());
            out.extend_from_slice(&self.rest[..n]);
            self.rest.advance(n);
        }
        Ok(out)
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

struct OpenState {
    input: Reader,
    key: SegmentKey,
    plan: OpenPlan,
    index: u64,
    segments: u64,
    name: String,
}

/// The plaintext of `plan.want`, from `input` positioned at the first byte
/// of segment `plan.first`.
pub(crate) fn open_stream(
    input: Reader,
    key: SegmentKey,
    plan: OpenPlan,
    name: String,
) -> ByteStream {
    let segments = crate::format::segment_count(plan.plain, key.segment_bytes);
    let state = OpenState {
        input,
        index: plan.first,
        key,
        plan,
        segments,
        name,
    };
    stream::try_unfold(state, |mut st| async move {
        while st.index <= st.plan.last {
            let range = stored_segment_range(st.index, st.plan.plain, st.key.segment_bytes);
            let len = (range.end - range.start) as usize;
            let mut segment = st.input.take(len).await?;
            if segment.len() < len {
                return Err(Error::Integrity {
                    key: st.name.clone(),
                    message: format!(
                        "the stored object ended inside segment {} (its size says {} segments)",
                        st.index, st.segments
                    ),
                });
            }
            let last = st.index + 1 == st.segments;
            st.key.open(&mut segment, st.index, last, &st.name)?;
            let start = st.index * u64::from(st.key.segment_bytes);
            st.index += 1;
            let from = st.plan.want.start.saturating_sub(start) as usize;
            let to = (st.plan.want.end - start).min(segment.len() as u64) as usize;
            if st.index > st.plan.last && st.plan.whole && !st.input.at_end().await? {
                return Err(Error::Integrity {
                    key: st.name.clone(),
                    message: "the stored object goes on after its last segment".into(),
                });
            }
            if from < to {
                let mut plain = segment.freeze();
                plain.truncate(to);
                plain.advance(from);
                return Ok(Some((plain, st)));
            }
        }
        Ok(None)
    })
    .boxed()
}
