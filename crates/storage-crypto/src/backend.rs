//! `Encrypted<B>`: the layer itself.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use bytes::Bytes;
use futures::{StreamExt, stream};
use storage_core::raw::copy_through_client;
use storage_core::{
    Backend, Body, ByteRange, ByteStream, Capabilities, ChangeStream, DeleteOptions, Error,
    GetOptions, GetResult, Key, ListOptions, ListPage, Metadata, ObjectMeta, PutMode, PutOptions,
    Result, StagedListOptions, StagedPage, TxnId,
};
use zeroize::Zeroizing;

use crate::context::{ContextKind, Resolver};
use crate::format::{
    DEFAULT_SEGMENT_BYTES, DEK_BYTES, HEADER_BYTES, Header, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES,
    context_bytes, plaintext_size, segment_count, stored_segment_range, stored_size,
};
use crate::keyring::Keyring;
use crate::stream::{
    OpenPlan, Reader, SMALL_OBJECT_BYTES, SegmentKey, open_small, open_stream, seal_stream,
};

/// Random bytes a header's wrap draws: the wrap nonce (12) and the KEK
/// id's padding (32).
const WRAP_RANDOM_BYTES: usize = 44;

/// The user-metadata entry that holds the sealed user metadata when
/// [`Encrypted::with_sealed_metadata`] is on.
pub const SEALED_METADATA: &str = "sealed-metadata";

/// Client-side envelope encryption over any backend (DESIGN section 4): the
/// inner backend only ever sees ciphertext in the format of
/// [`format`](crate::format).
///
/// - Every put draws a fresh random 256-bit DEK and nonce prefix (every
///   replay of a replayable body too), wraps the DEK with the keyring's
///   active KEK, and seals the content in segments of
///   [`Encrypted::with_segment_bytes`] bytes (64 KiB by default).
/// - The associated data binds the object's key (for a staged write or
///   attachment, the key it is promoted to) and the context kind the
///   resolver picks for it: ciphertext moved to another key or read as
///   another kind fails with [`Error::Integrity`].
/// - `head`, `list` and `get` report plaintext sizes, computed from the
///   stored size and the segment size alone (every writer and reader of a
///   store must use the same segment size; an object with another fails
///   reads with [`Error::Integrity`]). ETags and their preconditions are
///   the inner backend's, and each write's ETag is new even for the same
///   plaintext, since the ciphertext differs ([`Capabilities::unique_etags`]).
///   The inner backend's SHA-256 is of ciphertext, so none is reported; the
///   segments' tags authenticate every byte read.
/// - Range reads fetch the header, then only the segments that cover the
///   range (two requests, the second conditional on the first's ETag).
/// - The content type and user metadata are stored in the clear and are
///   not authenticated, unless [`Encrypted::with_sealed_metadata`] is on:
///   then both are sealed with the active KEK under their own random
///   nonce, bound to the key and kind, into the single entry
///   [`SEALED_METADATA`] (base64), which must fit the 2 KiB metadata limit
///   (about 1.4 KiB of plaintext metadata); `head` and `get` fail with
///   [`Error::Integrity`] when it is missing or has clear entries beside
///   it. It is bound to the key, not to one version: someone who can write
///   to the store can put back an older version's sealed metadata. The
///   name [`SEALED_METADATA`] is reserved either way.
/// - A listing leaves out, with a warning in the log, objects that cannot
///   be encrypted ones (a stored size no plaintext encrypts to); reading
///   them fails with [`Error::Integrity`].
/// - `copy` reads and re-encrypts for the destination key
///   ([`Capabilities::server_side_copy`] is false through the layer);
///   `promote` is the inner backend's, since staged content is already
///   bound to its target key.
///
/// Random nonces under one KEK (the DEK wraps and sealed metadata) are
/// safe for 2³² encryptions (NIST SP 800-38D, section 8.3): rotate the KEK
/// before then.
pub struct Encrypted<B> {
    inner: B,
    codec: Arc<Codec>,
    name: String,
}

impl<B: Backend> Encrypted<B> {
    /// Encrypts everything written to `inner` with `keyring`'s active KEK,
    /// choosing each key's context kind with `resolver` (for example
    /// [`all_state`](crate::all_state)).
    pub fn new(inner: B, keyring: Keyring, resolver: Resolver) -> Self {
        let name = format!("{}+crypto", inner.name());
        Encrypted {
            inner,
            codec: Arc::new(Codec {
                keyring: Arc::new(keyring),
                resolver,
                segment_bytes: DEFAULT_SEGMENT_BYTES,
                seal_metadata: false,
            }),
            name,
        }
    }

    /// Sets the plaintext bytes per segment: 16 B to 16 MiB, 64 KiB by
    /// default. Reads hold one segment in memory; each segment costs a
    /// 16-byte tag. Every writer and reader of a store must use the same
    /// size: listings compute plaintext sizes from it, and objects written
    /// with another fail reads with [`Error::Integrity`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] outside those bounds.
    pub fn with_segment_bytes(mut self, segment_bytes: u32) -> Result<Self> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&segment_bytes) {
            return Err(Error::invalid_argument(format!(
                "segment size {segment_bytes} B is outside {MIN_SEGMENT_BYTES} B to {MAX_SEGMENT_BYTES} B"
            )));
        }
        Arc::make_mut(&mut self.codec).segment_bytes = segment_bytes;
        Ok(self)
    }

    /// Seals user metadata (see the type's docs) when `on`.
    pub fn with_sealed_metadata(mut self, on: bool) -> Self {
        Arc::make_mut(&mut self.codec).seal_metadata = on;
        self
    }

    /// The backend below the layer.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.codec.keyring
    }

    /// Moves `key`'s object to the keyring's active KEK without
    /// re-encrypting its segments: the DEK is unwrapped and wrapped again
    /// (a new header), sealed metadata sealed again, and the object written
    /// back conditional on the ETag read (the segments stream through
    /// unchanged). An object already under the active KEK is left alone.
    /// Returns the object's (new) metadata.
    ///
    /// Rewrapping retires a KEK; it is no remedy for a KEK that leaked:
    /// the DEK stays the same, so copies of the old header (backups, older
    /// object versions) still open with the leaked KEK. Re-encrypt (a
    /// `copy` through the layer) for that. The body is sent once: under
    /// `Encrypted<Retry<B>>` a transient failure of the write is returned
    /// as [`Error::NonReplayableBody`]; call `rewrap` again.
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when the object changed meanwhile (read
    /// and rewrap again); [`Error::Integrity`] for an object that does not
    /// authenticate or whose KEK is not in the keyring; the inner backend's
    /// errors.
    pub async fn rewrap(&self, key: &Key) -> Result<ObjectMeta> {
        let found = self.inner.get(key, GetOptions::default()).await?;
        let context = self.codec.context(key);
        let mut input = Reader::new(found.body);
        let stored_header = input.take(HEADER_BYTES).await?;
        let (header, dek) = self.codec.open_header(key, &stored_header, &context)?;
        let meta = found.meta;
        if header.kek_id == self.codec.keyring.active_id() {
            return self.codec.plain_meta(meta, Whole::Yes);
        }
        let new_header =
            self.codec
                .wrap_header(&dek, header.nonce_prefix, &context, &crate::random_array()?)?;
        let mut metadata = meta.metadata.clone();
        if let Some(sealed) = meta.metadata.get(SEALED_METADATA) {
            let plain = self.codec.open_metadata(key, sealed, &context)?;
            metadata = self.codec.sealed_metadata(&plain, &context)?;
        }
        let content_type = meta.content_type.clone();
        let body = stream::once(async move { Ok(Bytes::copy_from_slice(&new_header.encode())) })
            .chain(input.into_stream())
            .boxed();
        let written = self
            .inner
            .put(
                key,
                Body::stream(body, Some(meta.size)),
                PutOptions {
                    mode: PutMode::IfMatch(meta.etag),
                    content_type,
                    metadata,
                },
            )
            .await?;
        self.codec.plain_meta(written, Whole::No)
    }

    /// The stored form of `body`: one-shot for a one-shot body; replayable
    /// for a replayable one, with a fresh DEK and nonce prefix each time
    /// it is sent.
    fn seal_body(&self, key: &Key, body: Body, context: Vec<u8>) -> Result<Body> {
        let stored = match body.len() {
            Some(plain) => Some(stored_size(plain, self.codec.segment_bytes).ok_or_else(|| {
                Error::TooLarge {
                    key: Some(key.to_string()),
                    size: plain,
                    limit: (u64::from(u32::MAX) + 1) * u64::from(self.codec.segment_bytes),
                }
            })?),
            None => None,
        };
        if !body.is_replayable() {
            return Ok(Body::stream(
                self.codec.seal(body.len(), body.into_stream(), &context)?,
                stored,
            ));
        }
        let codec = Arc::clone(&self.codec);
        let name = key.to_string();
        let plain = body.len();
        // A `Body` is `Send` but not `Sync`; the opener must be both.
        let source = std::sync::Mutex::new(body);
        Ok(Body::replayable(stored, move || {
            let copy = source
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .try_clone();
            let sealed = match copy {
                Some(copy) => codec.seal(plain, copy.into_stream(), &context),
                None => Err(Error::NonReplayableBody {
                    key: name.clone(),
                    source: None,
                }),
            };
            sealed.unwrap_or_else(|e| stream::once(async move { Err(e) }).boxed())
        }))
    }

    /// A full read: the header first (so a missing KEK or a broken header
    /// fails the call itself), then every segment. A small object (at most
    /// [`SMALL_OBJECT_BYTES`] stored) is read and opened whole before the
    /// call returns, so a tampered one fails the call itself.
    async fn get_whole(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let found = self.inner.get(key, options).await?;
        // The stored size, not the range the store says it served: the
        // plan must cover every segment the size implies.
        let stored = found.meta.size;
        let meta = self.codec.plain_meta(found.meta, Whole::Yes)?;
        let context = self.codec.context(key);
        let mut input = Reader::new(found.body);
        let stored_header = input.take(HEADER_BYTES).await?;
        let (header, dek) = self.codec.open_header(key, &stored_header, &context)?;
        let segment_key = self.codec.segment_key(&header, &dek, &context)?;
        let size = meta.size;
        if stored <= SMALL_OBJECT_BYTES {
            let plains = open_small(input, &segment_key, size, key.as_str()).await?;
            let body = stream::iter(plains.into_iter().map(Ok)).boxed();
            return Ok(GetResult::new(meta, 0..size, body));
        }
        let plan = OpenPlan {
            plain: meta.size,
            first: 0,
            last: segment_count(meta.size, self.codec.segment_bytes) - 1,
            want: 0..meta.size,
            whole: true,
        };
        let body = open_stream(input, segment_key, plan, key.to_string());
        Ok(GetResult::new(meta, 0..size, body))
    }

    /// A range read: the header, then the covering segments of the same
    /// version.
    /// `conditions` are the caller's (its range unused): they apply to the
    /// header read, whose ETag and time are those of the plaintext.
    async fn get_range(
        &self,
        key: &Key,
        range: ByteRange,
        conditions: GetOptions,
    ) -> Result<GetResult> {
        let if_match = conditions.if_match.clone();
        let context = self.codec.context(key);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let head = GetOptions {
                range: Some(ByteRange::Bounded {
                    start: 0,
                    end: HEADER_BYTES as u64,
                }),
                ..conditions.clone()
            };
            let found = match self.inner.get(key, head).await {
                Err(Error::InvalidRange { .. }) => {
                    return Err(Error::Integrity {
                        key: key.to_string(),
                        message: "the stored object is empty: it has no header".into(),
                    });
                }
                other => other?,
            };
            let stored_meta = found.meta.clone();
            let header_bytes = found.bytes().await?;
            let meta = self.codec.plain_meta(stored_meta.clone(), Whole::Yes)?;
            let (header, dek) = self.codec.open_header(key, &header_bytes, &context)?;
            let want = range.resolve(key, meta.size)?;
            let segment = u64::from(self.codec.segment_bytes);
            let first = want.start / segment;
            let last = (want.end - 1) / segment;
            let stored = stored_segment_range(first, meta.size, self.codec.segment_bytes).start
                ..stored_segment_range(last, meta.size, self.codec.segment_bytes).end;
            let covering = GetOptions {
                range: Some(stored.into()),
                if_match: Some(stored_meta.etag.clone()),
                ..GetOptions::default()
            };
            match self.inner.get(key, covering).await {
                Ok(segments) => {
                    let segment_key = self.codec.segment_key(&header, &dek, &context)?;
                    let plan = OpenPlan {
                        plain: meta.size,
                        first,
                        last,
                        want: want.clone(),
                        whole: false,
                    };
                    let body = open_stream(
                        Reader::new(segments.body),
                        segment_key,
                        plan,
                        key.to_string(),
                    );
                    return Ok(GetResult::new(meta, want, body));
                }
                // Replaced between the two reads: read the new version,
                // unless the caller asked for this one.
                Err(
                    e @ (Error::PreconditionFailed { .. }
                    | Error::NotFound { .. }
                    | Error::InvalidRange { .. }),
                ) if if_match.is_none() => {
                    if attempt == 3 {
                        return Err(Error::Backend {
                            transient: true,
                            message: format!(
                                "{key} was replaced during each of 3 range reads (last: {e})"
                            ),
                            source: None,
                        });
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// What sealed metadata holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Sealed {
    metadata: Metadata,
    content_type: Option<String>,
}

/// Whether metadata comes from a whole object's `head` or `get`, or from a
/// listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whole {
    Yes,
    No,
}

/// The layer's cryptographic state, shared with the openers of replayable
/// bodies.
#[derive(Clone)]
struct Codec {
    keyring: Arc<Keyring>,
    resolver: Resolver,
    segment_bytes: u32,
    seal_metadata: bool,
}

impl Codec {
    /// The context part of the associated data of `key`'s content.
    fn context(&self, key: &Key) -> Vec<u8> {
        let bound = storage_core::raw::promotion_target(key);
        let bound = bound.as_ref().unwrap_or(key);
        let kind: ContextKind = (self.resolver)(bound);
        context_bytes(bound.as_str(), kind.as_str())
    }

    /// A header for a fresh DEK's wrap with the active KEK.
    fn wrap_header(
        &self,
        dek: &[u8; DEK_BYTES],
        nonce_prefix: [u8; 7],
        context: &[u8],
        fresh: &[u8; WRAP_RANDOM_BYTES],
    ) -> Result<Header> {
        let (wrap_nonce, padding) = fresh.split_at(12);
        let mut header = Header {
            segment_bytes: self.segment_bytes,
            nonce_prefix,
            kek_id: self.keyring.active_id().to_owned(),
            kek_field: crate::format::kek_field(
                self.keyring.active_id(),
                padding.try_into().unwrap_or([0; 32]),
            ),
            wrap_nonce: wrap_nonce.try_into().unwrap_or([0; 12]),
            wrapped_dek: [0; 48],
        };
        let aad = [header.bound_for_wrap().as_slice(), context].concat();
        header.wrapped_dek = self.keyring.wrap(dek, header.wrap_nonce, &aad)?;
        Ok(header)
    }

    /// Decodes a stored header and unwraps its DEK.
    fn open_header(
        &self,
        key: &Key,
        bytes: &[u8],
        context: &[u8],
    ) -> Result<(Header, Zeroizing<[u8; DEK_BYTES]>)> {
        let integrity = |message: String| Error::Integrity {
            key: key.to_string(),
            message,
        };
        let header = Header::decode(bytes).map_err(integrity)?;
        if header.segment_bytes != self.segment_bytes {
            return Err(integrity(format!(
                "the object's segments are {} B, this layer's {} B",
                header.segment_bytes, self.segment_bytes
            )));
        }
        let aad = [header.bound_for_wrap().as_slice(), context].concat();
        let dek = self
            .keyring
            .unwrap(&header.kek_id, header.wrap_nonce, &header.wrapped_dek, &aad)
            .map_err(integrity)?;
        Ok((header, dek))
    }

    fn segment_key(
        &self,
        header: &Header,
        dek: &[u8; DEK_BYTES],
        context: &[u8],
    ) -> Result<SegmentKey> {
        let aad = [header.bound().as_slice(), context].concat();
        SegmentKey::new(dek, header.nonce_prefix, aad, self.segment_bytes)
    }

    /// The stored form of `input` (of `plain` bytes, when known) under a
    /// fresh DEK and nonce prefix.
    fn seal(&self, plain: Option<u64>, input: ByteStream, context: &[u8]) -> Result<ByteStream> {
        // One draw from the system's generator: DEK, nonce prefix, wrap
        // nonce and KEK-id padding.
        let fresh = Zeroizing::new(crate::random_array::<{ DEK_BYTES + 7 + WRAP_RANDOM_BYTES }>()?);
        let mut dek = Zeroizing::new([0u8; DEK_BYTES]);
        dek.copy_from_slice(&fresh[..DEK_BYTES]);
        let mut prefix = [0u8; 7];
        prefix.copy_from_slice(&fresh[DEK_BYTES..DEK_BYTES + 7]);
        let mut wrap = [0u8; WRAP_RANDOM_BYTES];
        wrap.copy_from_slice(&fresh[DEK_BYTES + 7..]);
        let header = self.wrap_header(&dek, prefix, context, &wrap)?;
        let key = self.segment_key(&header, &dek, context)?;
        Ok(seal_stream(&header.encode(), key, plain, input))
    }

    /// The put options the inner backend gets: the user metadata sealed
    /// when that is on.
    fn stored_options(&self, options: PutOptions, context: &[u8]) -> Result<PutOptions> {
        options.validate()?;
        if options.metadata.contains_key(SEALED_METADATA) {
            return Err(Error::invalid_argument(format!(
                "the metadata name {SEALED_METADATA:?} is reserved by the encryption layer"
            )));
        }
        if !self.seal_metadata {
            return Ok(options);
        }
        let sealed = Sealed {
            metadata: options.metadata,
            content_type: options.content_type,
        };
        Ok(PutOptions {
            mode: options.mode,
            content_type: None,
            metadata: self.sealed_metadata(&sealed, context)?,
        })
    }

    fn sealed_metadata(&self, plain: &Sealed, context: &[u8]) -> Result<Metadata> {
        let json = Zeroizing::new(serde_json::to_vec(plain).map_err(|e| {
            Error::invalid_argument(format!("user metadata cannot be serialised: {e}"))
        })?);
        let aad = [b"metadata".as_slice(), context].concat();
        let sealed = self.keyring.seal_small(&json, &aad)?;
        let metadata =
            Metadata::from([(SEALED_METADATA.to_owned(), STANDARD_NO_PAD.encode(sealed))]);
        storage_core::validate_metadata(&metadata).map_err(|_| {
            Error::invalid_argument(format!(
                "user metadata of {} bytes is too large to seal: sealed and in base64 it exceeds {} bytes",
                json.len(),
                storage_core::MAX_METADATA_BYTES
            ))
        })?;
        Ok(metadata)
    }

    fn open_metadata(&self, key: &Key, sealed: &str, context: &[u8]) -> Result<Sealed> {
        let integrity = |message: String| Error::Integrity {
            key: key.to_string(),
            message,
        };
        let bytes = STANDARD_NO_PAD
            .decode(sealed)
            .map_err(|_| integrity("the sealed metadata is not base64".into()))?;
        let aad = [b"metadata".as_slice(), context].concat();
        let (_, json) = self.keyring.open_small(&bytes, &aad).map_err(integrity)?;
        serde_json::from_slice(&json)
            .map_err(|_| integrity("the sealed metadata is not a metadata map".into()))
    }

    /// What the caller sees of a stored object: the plaintext size, no
    /// SHA-256 (the inner one is of ciphertext), opened metadata.
    ///
    /// For a whole object ([`Whole::Yes`]: `head`, `get`) with sealing on,
    /// the sealed entry must be there and alone; a listing
    /// ([`Whole::No`]) may carry no metadata at all.
    fn written_meta(
        &self,
        mut meta: ObjectMeta,
        (metadata, content_type): (Metadata, Option<String>),
    ) -> Result<ObjectMeta> {
        meta.metadata.clear();
        let mut meta = self.plain_meta(meta, Whole::No)?;
        meta.metadata = metadata;
        if self.seal_metadata {
            meta.content_type = content_type;
        }
        Ok(meta)
    }

    /// What a listing shows of a stored object: `None` (and a warning in
    /// the log, target `storage_crypto`) for an object that cannot be an
    /// encrypted one (a size no plaintext encrypts to: truncated, extended,
    /// or written without the layer) or whose sealed metadata does not
    /// open. Reading such an object fails with [`Error::Integrity`]; one
    /// stray object must not make every listing of its prefix (and the
    /// transaction layer's reconcile) fail.
    fn listed(&self, meta: ObjectMeta) -> Option<ObjectMeta> {
        let name = meta.key.to_string();
        match self.plain_meta(meta, Whole::No) {
            Ok(meta) => Some(meta),
            Err(e) => {
                tracing::warn!(target: "storage_crypto", key = %name, error = %e, "left out of a listing: not a valid encrypted object");
                None
            }
        }
    }

    /// What the caller sees of a stored object's metadata.
    fn plain_meta(&self, mut meta: ObjectMeta, whole: Whole) -> Result<ObjectMeta> {
        meta.size = plaintext_size(meta.size, self.segment_bytes).ok_or_else(|| {
            Error::Integrity {
                key: meta.key.to_string(),
                message: format!(
                    "a stored size of {} bytes is not that of any encrypted object with {} B segments: truncated, extended or not written through this layer",
                    meta.size, self.segment_bytes
                ),
            }
        })?;
        meta.sha256 = None;
        let integrity = |message: &str| Error::Integrity {
            key: meta.key.to_string(),
            message: message.to_owned(),
        };
        match meta.metadata.get(SEALED_METADATA) {
            Some(_) if meta.metadata.len() > 1 => {
                return Err(integrity(
                    "clear metadata was added beside the sealed metadata",
                ));
            }
            Some(sealed) => {
                let context = self.context(&meta.key);
                let opened = self.open_metadata(&meta.key, sealed, &context)?;
                meta.metadata = opened.metadata;
                meta.content_type = opened.content_type;
            }
            None if self.seal_metadata && whole == Whole::Yes => {
                return Err(integrity(
                    "the sealed metadata is missing (removed, or written without sealing)",
                ));
            }
            None => {}
        }
        Ok(meta)
    }
}

impl<B: fmt::Debug> fmt::Debug for Encrypted<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypted")
            .field("inner", &self.inner)
            .field("keyring", &self.codec.keyring)
            .field("segment_bytes", &self.codec.segment_bytes)
            .field("seal_metadata", &self.codec.seal_metadata)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<B: Backend> Backend for Encrypted<B> {
    fn name(&self) -> &str {
        &self.name
    }

    /// The inner backend's, except: no server-side copy (a copy
    /// re-encrypts), no recorded SHA-256, no presigned URLs (they would
    /// serve ciphertext), and unique ETags (every write's ciphertext is new,
    /// so an ETag derived from the content, or one never reissued, is
    /// unique; every backend of this workspace has one or the other).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            server_side_copy: false,
            checksums: false,
            unique_etags: true,
            presigned_urls: false,
            ..self.inner.capabilities()
        }
    }

    /// [`Error::Unsupported`]: a presigned `GET` would serve ciphertext and
    /// a presigned `PUT` would store plaintext that reads then refuse.
    async fn presign(
        &self,
        method: storage_core::PresignMethod,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<String> {
        let _ = (method, key, expires_in);
        Err(storage_core::raw::unsupported(
            self,
            "presigned URLs through encryption",
        ))
    }

    /// The inner backend's health check (the keyring needs none).
    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        let context = self.codec.context(key);
        let shown = (options.metadata.clone(), options.content_type.clone());
        let options = self.codec.stored_options(options, &context)?;
        let body = self.seal_body(key, body, context)?;
        let meta = self.inner.put(key, body, options).await?;
        self.codec.written_meta(meta, shown)
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        match options.range {
            None => self.get_whole(key, options).await,
            Some(range) => self.get_range(key, range, options).await,
        }
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.codec
            .plain_meta(self.inner.head(key).await?, Whole::Yes)
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.inner.delete(key, options).await
    }

    /// The inner backend's batch delete: ciphertext lives under the same
    /// keys.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        self.inner.delete_many(keys).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let mut page = self.inner.list(options).await?;
        page.objects = page
            .objects
            .into_iter()
            .filter_map(|meta| self.codec.listed(meta))
            .collect();
        Ok(page)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        copy_through_client(self, from, to, mode).await
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.inner.watch(prefix).await
    }

    async fn stage(
        &self,
        key: &Key,
        txn: &TxnId,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let context = self.codec.context(key);
        let shown = (options.metadata.clone(), options.content_type.clone());
        let options = self.codec.stored_options(options, &context)?;
        let body = self.seal_body(key, body, context)?;
        let meta = self.inner.stage(key, txn, body, options).await?;
        self.codec.written_meta(meta, shown)
    }

    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        self.codec
            .plain_meta(self.inner.promote(key, txn, mode).await?, Whole::No)
    }

    async fn discard(&self, key: &Key, txn: &TxnId) -> Result<()> {
        self.inner.discard(key, txn).await
    }

    async fn list_staged(&self, options: &StagedListOptions) -> Result<StagedPage> {
        let mut page = self.inner.list_staged(options).await?;
        page.staged = page
            .staged
            .into_iter()
            .filter_map(|mut staged| {
                staged.meta = self.codec.listed(staged.meta)?;
                Some(staged)
            })
            .collect();
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use storage_core::{BackendExt, MemoryBackend};

    use super::*;

    fn layer() -> Encrypted<MemoryBackend> {
        let keyring = Keyring::new("k1", &[9; 32]).expect("valid keyring");
        Encrypted::new(MemoryBackend::new(), keyring, crate::all_state())
    }

    /// The DEK and nonce prefix of `key`'s stored object.
    async fn dek_of(store: &Encrypted<MemoryBackend>, key: &Key) -> ([u8; DEK_BYTES], [u8; 7]) {
        let stored = store.inner().get_bytes(key).await.expect("stored");
        let context = store.codec.context(key);
        let (header, dek) = store
            .codec
            .open_header(key, &stored, &context)
            .expect("opens");
        (*dek, header.nonce_prefix)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_thousand_puts_never_repeat_a_dek() {
        let store = layer();
        let key = Key::new("k").expect("valid key");
        let mut deks = HashSet::new();
        let mut prefixes = HashSet::new();
        for i in 0..100_000u32 {
            store
                .put(
                    &key,
                    Body::from(i.to_be_bytes().to_vec()),
                    PutOptions::default(),
                )
                .await
                .expect("put");
            let (dek, prefix) = dek_of(&store, &key).await;
            deks.insert(dek);
            prefixes.insert(prefix);
        }
        // Distinct DEKs make every (DEK, nonce) pair distinct: within one
        // object, nonces differ by segment index.
        assert_eq!(deks.len(), 100_000);
        assert!(
            prefixes.len() > 99_990,
            "{} distinct prefixes",
            prefixes.len()
        );
    }

    #[tokio::test]
    async fn each_replay_of_a_replayable_body_draws_a_fresh_dek() {
        let store = layer();
        let key = Key::new("k").expect("valid key");
        let sealed = store
            .seal_body(
                &key,
                Body::from("same plaintext"),
                store.codec.context(&key),
            )
            .expect("seals");
        let again = sealed.try_clone().expect("replayable");
        let first = sealed.into_bytes().await.expect("first sending");
        let second = again.into_bytes().await.expect("second sending");
        assert_eq!(first.len(), second.len());
        assert_ne!(
            first[..HEADER_BYTES],
            second[..HEADER_BYTES],
            "same header twice"
        );
        let put = |bytes: Bytes| {
            let store = &store;
            let key = key.clone();
            async move {
                store
                    .inner()
                    .put(&key, Body::from(bytes), PutOptions::default())
                    .await
                    .expect("put");
                dek_of(store, &key).await
            }
        };
        let (dek1, _) = put(first).await;
        let (dek2, _) = put(second).await;
        assert_ne!(dek1, dek2);
    }

    #[tokio::test]
    async fn a_one_shot_body_is_sealed_one_shot_and_a_replayable_one_replayable() {
        let store = layer();
        let key = Key::new("k").expect("valid key");
        let chunk = futures::stream::once(async { Ok(Bytes::from_static(b"x")) }).boxed();
        let one_shot = store
            .seal_body(
                &key,
                Body::stream(chunk, Some(1)),
                store.codec.context(&key),
            )
            .expect("seals");
        assert!(!one_shot.is_replayable());
        let replayable = store
            .seal_body(&key, Body::from("x"), store.codec.context(&key))
            .expect("seals");
        assert!(replayable.is_replayable());
    }

    #[tokio::test]
    async fn a_large_chunk_is_sealed_one_segment_at_a_time_the_header_with_the_first() {
        use futures::TryStreamExt;
        let store = layer();
        let key = Key::new("k").expect("valid key");
        let mut sealed = store
            .seal_body(
                &key,
                Body::from(vec![0u8; 1 << 20]),
                store.codec.context(&key),
            )
            .expect("seals")
            .into_stream();
        let segment = DEFAULT_SEGMENT_BYTES as usize + crate::format::TAG_BYTES;
        let first = sealed.try_next().await.expect("first").expect("some");
        assert_eq!(
            first.len(),
            HEADER_BYTES + segment,
            "the header and one segment"
        );
        let mut total = 0;
        while let Some(item) = sealed.try_next().await.expect("segment") {
            assert_eq!(item.len(), segment, "an item is not one segment");
            total += item.len();
        }
        assert_eq!(total, 15 * segment);
    }
}

/// A store that misreports the range of a full read.
#[cfg(test)]
mod lying_range {
    use async_trait::async_trait;
    use storage_core::{
        Backend, BackendExt, Body, Capabilities, DeleteOptions, Error, GetOptions, GetResult, Key,
        ListOptions, ListPage, MemoryBackend, ObjectMeta, PutOptions, Result,
    };

    use crate::{Encrypted, Keyring};

    /// Serves every byte of a full read but says it served `0..1`.
    #[derive(Debug)]
    struct LyingRange(MemoryBackend);

    #[async_trait]
    impl Backend for LyingRange {
        fn name(&self) -> &str {
            "lying-range"
        }
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
            self.0.put(key, body, options).await
        }
        async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
            let found = self.0.get(key, options).await?;
            Ok(GetResult::new(found.meta, 0..1, found.body))
        }
        async fn head(&self, key: &Key) -> Result<ObjectMeta> {
            self.0.head(key).await
        }
        async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
            self.0.delete(key, options).await
        }
        async fn list(&self, options: &ListOptions) -> Result<ListPage> {
            self.0.list(options).await
        }
    }

    /// The plan of a full read follows the stored size, so a misreported
    /// range cannot make a small-object read of a 3 MiB object stop after
    /// its first batch and pass the rest off as the whole.
    #[tokio::test]
    async fn a_misreported_range_never_shortens_a_full_read() {
        let keyring = Keyring::new("k1", &[9; 32]).expect("valid keyring");
        let store = Encrypted::new(
            LyingRange(MemoryBackend::new()),
            keyring,
            crate::all_state(),
        );
        let data = vec![7u8; 3 << 20];
        store.put_bytes("big", data.clone()).await.expect("put");
        let read = store.get_bytes("big").await;
        assert!(
            matches!(&read, Ok(bytes) if bytes.as_ref() == data.as_slice())
                || matches!(read, Err(Error::Integrity { .. })),
            "a short read passed as whole: {:?}",
            read.map(|b| b.len())
        );
    }
}
