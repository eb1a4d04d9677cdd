//! What a put sends: replayable and one-shot bodies.

use std::fmt;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::{Error, Result};

/// Size of the chunks read from a file region, in bytes.
pub const FILE_CHUNK_BYTES: usize = 64 * 1024;

/// A stream of body chunks; an error ends the stream.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The content of a put.
///
/// Replayability is part of the value: [`Body::is_replayable`] says whether the
/// body can be sent again from its start, and [`Body::try_clone`] gives a
/// second copy of a replayable body. A retrying layer resends replayable bodies
/// and fails fast with [`Error::NonReplayableBody`] on a one-shot stream that
/// was already read (DESIGN section 5).
///
/// | form | constructor | replayable | length known |
/// |---|---|---|---|
/// | in-memory bytes | [`Body::from`] (`Bytes`, `Vec<u8>`, `&'static [u8]`, `String`) | yes | yes |
/// | list of chunks | [`Body::chunks`] | yes | yes |
/// | file region | [`Body::file_region`] | yes (the file is reopened) | yes |
/// | reopenable stream | [`Body::replayable`] | yes (the function is called again) | if given |
/// | stream | [`Body::stream`] | no | if given |
///
/// A file region is read in [`FILE_CHUNK_BYTES`] chunks, never loaded whole.
pub struct Body {
    inner: Inner,
}

enum Inner {
    Bytes(Bytes),
    Chunks(Vec<Bytes>),
    File(FileRegion),
    Replay {
        open: OpenFn,
        len: Option<u64>,
    },
    Stream {
        stream: ByteStream,
        len: Option<u64>,
    },
}

/// What [`Body::replayable`] calls to open a fresh stream of the body.
pub type OpenFn = Arc<dyn Fn() -> ByteStream + Send + Sync>;

/// A region of a file, read afresh each time the body is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRegion {
    /// The file.
    pub path: PathBuf,
    /// First byte of the region.
    pub offset: u64,
    /// Length of the region in bytes.
    pub len: u64,
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Body::from(Bytes::new())
    }

    /// A replayable body made of several chunks, sent in order.
    pub fn chunks(chunks: Vec<Bytes>) -> Self {
        Body {
            inner: Inner::Chunks(chunks),
        }
    }

    /// A replayable body reading `len` bytes of the file at `path` from byte
    /// `offset` (the half-open range `offset..offset + len`).
    ///
    /// The file is opened when the body is sent, and again on each replay. If
    /// it is shorter than the region when read, the stream fails with a
    /// non-transient [`Error::Backend`] and no object is written.
    pub fn file_region(path: impl Into<PathBuf>, offset: u64, len: u64) -> Self {
        Body {
            inner: Inner::File(FileRegion {
                path: path.into(),
                offset,
                len,
            }),
        }
    }

    /// A replayable body holding the whole file at `path` (its size is read now).
    ///
    /// # Errors
    /// [`Error::Backend`] when the file's metadata cannot be read.
    pub async fn file(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
        Ok(Body::file_region(path, 0, meta.len()))
    }

    /// A replayable body whose every sending reads a fresh stream from
    /// `open`; `len` is its length in bytes when known, and every stream
    /// `open` returns must have that length.
    ///
    /// This is how a layer transforms a body without losing its
    /// replayability: `open` reopens the layer's source (a
    /// [`Body::try_clone`] of the caller's body) and transforms it again, so
    /// each replay may differ (an encrypting layer draws a fresh data key
    /// each time) while keeping the declared length.
    pub fn replayable(
        len: Option<u64>,
        open: impl Fn() -> ByteStream + Send + Sync + 'static,
    ) -> Self {
        Body {
            inner: Inner::Replay {
                open: Arc::new(open),
                len,
            },
        }
    }

    /// A one-shot body read from `stream`; `len` is its length in bytes when
    /// known. It cannot be replayed.
    pub fn stream(stream: ByteStream, len: Option<u64>) -> Self {
        Body {
            inner: Inner::Stream { stream, len },
        }
    }

    /// Whether the body can be sent again from its start.
    pub fn is_replayable(&self) -> bool {
        !matches!(self.inner, Inner::Stream { .. })
    }

    /// A second copy of a replayable body; `None` for a one-shot stream.
    pub fn try_clone(&self) -> Option<Body> {
        let inner = match &self.inner {
            Inner::Bytes(b) => Inner::Bytes(b.clone()),
            Inner::Chunks(c) => Inner::Chunks(c.clone()),
            Inner::File(f) => Inner::File(f.clone()),
            Inner::Replay { open, len } => Inner::Replay {
                open: Arc::clone(open),
                len: *len,
            },
            Inner::Stream { .. } => return None,
        };
        Some(Body { inner })
    }

    /// The length in bytes, when known before reading.
    pub fn len(&self) -> Option<u64> {
        match &self.inner {
            Inner::Bytes(b) => Some(b.len() as u64),
            Inner::Chunks(c) => Some(c.iter().map(|b| b.len() as u64).sum()),
            Inner::File(f) => Some(f.len),
            Inner::Replay { len, .. } | Inner::Stream { len, .. } => *len,
        }
    }

    /// Whether the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes of an in-memory body without copying, or `None` for other forms.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match &self.inner {
            Inner::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The file region of a file body, or `None` for other forms.
    pub fn as_file_region(&self) -> Option<&FileRegion> {
        match &self.inner {
            Inner::File(f) => Some(f),
            _ => None,
        }
    }

    /// Turns the body into a stream of chunks. A file region is opened here
    /// and read lazily.
    pub fn into_stream(self) -> ByteStream {
        match self.inner {
            Inner::Bytes(b) => stream::once(async move { Ok(b) }).boxed(),
            Inner::Chunks(c) => stream::iter(c.into_iter().map(Ok)).boxed(),
            Inner::File(f) => file_stream(f),
            Inner::Replay { open, .. } => open(),
            Inner::Stream { stream, .. } => stream,
        }
    }

    /// Reads the whole body into memory.
    ///
    /// # Errors
    /// Whatever the body's stream fails with.
    pub async fn into_bytes(self) -> Result<Bytes> {
        if let Inner::Bytes(b) = self.inner {
            return Ok(b);
        }
        let capacity = self.len().unwrap_or(0).min(1 << 30) as usize;
        let mut out = bytes::BytesMut::with_capacity(capacity);
        let mut stream = self.into_stream();
        while let Some(chunk) = stream.try_next().await? {
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }
}

fn file_stream(region: FileRegion) -> ByteStream {
    let FileRegion { path, offset, len } = region;
    let shown = path.display().to_string();
    let open = async move {
        let context = move || format!("reading body file {shown}");
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| Error::io(context(), e))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::io(context(), e))?;
        let chunks = ReaderStream::with_capacity(file.take(len), FILE_CHUNK_BYTES);
        // An empty chunk marks the end, where the length read is checked: a
        // file shorter than its region must not become a shorter object.
        let mut seen = 0u64;
        let checked = chunks
            .map_err(move |e| Error::io(context(), e))
            .chain(stream::once(async { Ok(Bytes::new()) }))
            .try_filter_map(move |chunk| {
                let result = if !chunk.is_empty() {
                    seen += chunk.len() as u64;
                    Ok(Some(chunk))
                } else if seen == len {
                    Ok(None)
                } else {
                    Err(Error::Backend {
                        transient: false,
                        message: format!(
                            "body file {} ended after {seen} of {len} bytes",
                            path.display()
                        ),
                        source: None,
                    })
                };
                futures::future::ready(result)
            });
        Ok::<_, Error>(checked)
    };
    stream::once(open).try_flatten().boxed()
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Inner::Chunks(c) => write!(f, "Body::Chunks({} chunks)", c.len()),
            Inner::File(r) => write!(f, "Body::File({r:?})"),
            Inner::Replay { len, .. } => write!(f, "Body::Replay(len: {len:?})"),
            Inner::Stream { len, .. } => write!(f, "Body::Stream(len: {len:?})"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body {
            inner: Inner::Bytes(b),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Body::from(Bytes::from(v))
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Body::from(Bytes::from_static(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Body::from(Bytes::from_static(s.as_bytes()))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Body::from(Bytes::from(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn file_region_reads_only_its_bytes_and_replays() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"0123456789").expect("write");
        let body = Body::file_region(file.path(), 2, 5);
        assert!(body.is_replayable());
        let again = body.try_clone().expect("replayable");
        assert_eq!(body.into_bytes().await.expect("read"), "23456");
        assert_eq!(again.into_bytes().await.expect("read"), "23456");
    }

    #[tokio::test]
    async fn short_file_region_fails() {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(b"0123").expect("write");
        let err = Body::file_region(file.path(), 0, 10)
            .into_bytes()
            .await
            .expect_err("file is shorter than the region");
        assert!(
            err.to_string().contains("ended after 4 of 10 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn stream_is_one_shot() {
        let s = stream::iter(vec![
            Ok(Bytes::from_static(b"ab")),
            Ok(Bytes::from_static(b"c")),
        ]);
        let body = Body::stream(s.boxed(), None);
        assert!(!body.is_replayable());
        assert!(body.try_clone().is_none());
        assert_eq!(body.into_bytes().await.expect("read"), "abc");
    }
}
