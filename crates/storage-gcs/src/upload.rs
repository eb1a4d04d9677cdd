//! Large bodies as resumable uploads: one session, then the body in chunks
//! (GCS: "Perform resumable uploads", multiple chunks), driven by the
//! upload engine of `storage_core::raw`.
//!
//! Chunks go one at a time and in order, as a session requires; the next
//! chunk is read while one is sent, so memory holds about three chunks.
//! Every chunk but the last is a multiple of 256 KiB, and the last carries
//! the total size. A chunk that fails with a transient error is sent again
//! at the same offset, with the policy in force. The session is opened with
//! the precondition (`ifGenerationMatch`), the content type and the user
//! metadata; the object appears only when the last chunk is accepted. A
//! body that turns out to fit in one chunk goes as one multipart upload. A
//! failed or dropped upload cancels the session (`DELETE` on the session
//! URI).
//!
//! A chunk whose outcome is unknown (a lost answer, a 5xx, a timeout) is
//! recovered as GCS documents ("Perform resumable uploads", resuming an
//! interrupted upload): before the chunk is sent again, the session is
//! asked how many bytes it persisted (`Content-Range: bytes */SIZE`, a 308
//! answer with `Range`, or the finished object), and only the rest is sent.
//! fake-gcs-server commits the partial object on that query, so
//! [`GcsConfig::upload_status_queries`](crate::GcsConfig::upload_status_queries)
//! turns it off for emulators: a failed chunk is then sent again whole, and
//! a last chunk sent again after the upload finished meets a finished
//! session (200 with the object on GCS, 404 on emulators), so the object
//! then stored is taken.
//!
//! After the last chunk, the stored object's CRC32C must match the body's;
//! when it does not, the object just written is deleted (under
//! `ifGenerationMatch` of its generation, so a later writer's object is
//! never touched) and the put fails with `ChecksumMismatch`. When it does,
//! the content's SHA-256 is recorded in the object's metadata with one
//! metadata patch under `ifGenerationMatch` (the session was opened before
//! the content was read, so its metadata could not hold it); the generation,
//! and so the ETag, stays the same.

use bytes::Bytes;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::{
    ChunkSize, ResumableUploadClient, UploadStatus, UploadedRange,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use storage_core::raw::{self, ChunkedUpload, Part, UploadPlan, Uploaded};

use storage_core::{Backend, Body, DeleteOptions, Error, Key, ObjectMeta, PutOptions, Result};

use crate::GcsBackend;
use crate::core::{condition, context, crc32c_base64};
use crate::error::Context;
use crate::metadata;

impl GcsBackend {
    /// Uploads `body` in a resumable session, or as one multipart upload if
    /// it turns out to fit in one chunk.
    pub(crate) async fn put_resumable(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let plan = UploadPlan {
            part_size: self.config().chunk_size,
            parts_in_flight: 1,
            max_parts: u64::MAX,
        };
        let upload = ResumableUpload {
            backend: self.clone(),
            key: key.clone(),
            options,
        };
        raw::upload(upload, key, body, plan).await
    }
}

/// One resumable upload's calls.
#[derive(Clone)]
struct ResumableUpload {
    backend: GcsBackend,
    key: Key,
    options: PutOptions,
}

/// Most answers that store only part of a chunk before the chunk fails.
const MAX_SHORT_ANSWERS: usize = 8;

/// An open resumable session.
#[derive(Clone)]
pub(crate) struct Session {
    client: ResumableUploadClient,
    /// A chunk failed with an unknown outcome: how much the session
    /// persisted must be asked before more is sent.
    unsure: Arc<AtomicBool>,
}

/// What a chunk's upload leaves: its CRC32C and length, and for the last
/// chunk the stored object.
struct Chunk {
    crc32c: u32,
    len: usize,
    object: Option<Object>,
    /// The object came from this session (a chunk's answer or the status
    /// query), not from reading the key afterwards.
    from_session: bool,
}

impl ResumableUpload {
    /// The object stored under the key now.
    async fn stored_object(&self) -> Result<Object> {
        let b = &self.backend;
        let request = GetObjectRequest {
            bucket: b.bucket().to_owned(),
            object: b.full_name(&self.key),
            encryption: crate::encryption::for_client(b.encryption()),
            ..Default::default()
        };
        match b
            .timed("get", b.client().await?.get_object(&request))
            .await?
        {
            Ok(object) => Ok(object),
            Err(e) => Err(b.error(e, "get", self.key.as_str(), Context::Plain).await),
        }
    }
}

/// How much of an upload a session holds.
enum Persisted {
    /// Every byte; the object is stored.
    Finished(Box<Object>),
    /// The bytes before this offset.
    Upto(u64),
}

impl ResumableUpload {
    /// Asks the session how many bytes it persisted (`total`: the size,
    /// when `part` is the last), after a chunk whose outcome is unknown.
    async fn persisted(
        &self,
        session: &Session,
        part: &Part,
        total: Option<u64>,
    ) -> Result<Persisted> {
        let key = &self.key;
        let range = match total {
            Some(total) => format!("bytes */{total}"),
            None => "bytes */*".to_owned(),
        };
        let status = self
            .session_request(session, "resumable upload status", range, Bytes::new())
            .await?;
        session.unsure.store(false, Ordering::SeqCst);
        let stored = match status {
            UploadStatus::Ok(object) if part.last => {
                return Ok(Persisted::Finished(Box::new(object)));
            }
            UploadStatus::Ok(_) => {
                return Err(Error::backend(
                    false,
                    format!(
                        "GCS resumable upload of {key}: the session finished before its last chunk"
                    ),
                    "resumable upload",
                ));
            }
            UploadStatus::NotStarted => 0,
            UploadStatus::ResumeIncomplete(range) => range.last_byte + 1,
        };
        if stored < part.offset {
            return Err(Error::backend(
                false,
                format!(
                    "GCS resumable upload of {key}: the session holds {stored} bytes, fewer than the {} sent and acknowledged before",
                    part.offset
                ),
                "resumable upload",
            ));
        }
        Ok(Persisted::Upto(stored))
    }

    /// One `PUT` to the session URI with `Content-Range: range` and `body`
    /// (a chunk, or nothing for a status query), with the customer-supplied
    /// key's headers where one is configured: 308 with `Range` is the
    /// persisted prefix (none without it), a success carries the object.
    /// The session URI authorizes the request ("Perform resumable
    /// uploads"), so no token is sent.
    async fn session_request(
        &self,
        session: &Session,
        op: &str,
        range: String,
        body: Bytes,
    ) -> Result<UploadStatus> {
        let (b, key) = (&self.backend, &self.key);
        let request = b
            .http()
            .put(session.client.url())
            .header("content-range", range)
            .header("content-length", body.len())
            .body(body);
        let request = crate::encryption::with_headers(request, b.encryption());
        let response = b.send_raw(request, op, key.as_str()).await?;
        if response.status().as_u16() != 308 {
            let context = context(&self.options.mode);
            let object: Object = b.json_answer(response, op, key, context).await?;
            return Ok(UploadStatus::Ok(object));
        }
        let Some(persisted) = response.headers().get("range") else {
            return Ok(UploadStatus::NotStarted);
        };
        let malformed = || {
            Error::backend(
                false,
                format!("GCS {op} of {key}: a Range header that is not bytes=0-N: {persisted:?}"),
                "resumable upload",
            )
        };
        let (first, last) = persisted
            .to_str()
            .ok()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.split_once('-'))
            .ok_or_else(malformed)?;
        Ok(UploadStatus::ResumeIncomplete(UploadedRange {
            first_byte: first.trim().parse().map_err(|_| malformed())?,
            last_byte: last.trim().parse().map_err(|_| malformed())?,
        }))
    }

    /// Records the content's SHA-256 in the uploaded object's metadata,
    /// under `ifGenerationMatch` of its generation, and returns its
    /// metadata. The put has succeeded whatever happens here: when another
    /// writer replaced or deleted the object first (412, 404), the answer
    /// describes this put's write, SHA-256 included; when the patch fails
    /// otherwise, the object stays stored without the record and the answer
    /// says so (`sha256: None`, as `head` will).
    async fn record_sha256(&self, uploaded: &Object, sha256: &[u8; 32]) -> Result<ObjectMeta> {
        let (b, key) = (&self.backend, &self.key);
        let mut recorded = uploaded.metadata.clone().unwrap_or_default();
        recorded.insert(metadata::SHA256_NAME.to_owned(), hex::encode(sha256));
        let mut meta = GcsBackend::meta_from_object(key, uploaded);
        meta.sha256 = match b.patch_metadata(key, uploaded.generation, &recorded).await {
            Ok(()) => Some(*sha256),
            // Replaced or deleted by another writer after this put.
            Err(Error::PreconditionFailed { .. } | Error::NotFound { .. }) => Some(*sha256),
            Err(_) => None,
        };
        Ok(meta)
    }
}

#[async_trait::async_trait]
impl ChunkedUpload for ResumableUpload {
    type Session = Session;
    type Receipt = Chunk;

    async fn initiate(&self) -> Result<Session> {
        let (b, key, options) = (&self.backend, &self.key, &self.options);
        let request = UploadObjectRequest {
            bucket: b.bucket().to_owned(),
            if_generation_match: condition(key, &options.mode)?,
            kms_key_name: crate::encryption::kms_key_name(b.encryption()),
            encryption: crate::encryption::for_client(b.encryption()),
            ..Default::default()
        };
        let object = Object {
            name: b.full_name(key),
            content_type: options.content_type.clone(),
            metadata: Some(metadata::to_gcs(&options.metadata, None)),
            ..Default::default()
        };
        let prepared = b
            .timed(
                "resumable upload",
                b.client()
                    .await?
                    .prepare_resumable_upload(&request, &UploadType::Multipart(Box::new(object))),
            )
            .await?;
        match prepared {
            Ok(client) => Ok(Session {
                client,
                unsure: Arc::new(AtomicBool::new(false)),
            }),
            Err(e) => {
                let context = context(&options.mode);
                Err(b.error(e, "resumable upload", key.as_str(), context).await)
            }
        }
    }

    async fn upload_part(&self, session: &Session, part: &Part) -> Result<Chunk> {
        let (b, key) = (&self.backend, &self.key);
        let len = part.bytes.len() as u64;
        let end = part.offset + len;
        let total = part.last.then_some(end);
        let done = |object: Option<Object>| Chunk {
            crc32c: crc32c::crc32c(&part.bytes),
            len: part.bytes.len(),
            object,
            from_session: true,
        };
        let mut from = part.offset;
        if session.unsure.load(Ordering::SeqCst) {
            match self.persisted(session, part, total).await? {
                Persisted::Finished(object) => return Ok(done(Some(*object))),
                Persisted::Upto(stored) if stored >= end && !part.last => return Ok(done(None)),
                Persisted::Upto(stored) => from = stored.max(part.offset),
            }
        }
        // GCS may persist less than a chunk it answers 308 to ("Perform
        // resumable uploads": resume from the byte after the returned
        // `Range`), so the rest is sent until the chunk is in, a few times
        // at most.
        for _ in 0..MAX_SHORT_ANSWERS {
            let start = usize::try_from(from - part.offset).unwrap_or(usize::MAX);
            let bytes = part.bytes.slice(start.min(part.bytes.len())..);
            // `from == end` on the last chunk: every byte is in and the
            // session is finalized with `bytes */TOTAL`.
            let range = ChunkSize::new(from, end.saturating_sub(1), total);
            let sent = self
                .session_request(session, "resumable upload chunk", range.to_string(), bytes)
                .await;
            let status = match sent {
                Ok(status) => status,
                Err(error) => {
                    if b.config().status_queries && error.is_transient() {
                        session.unsure.store(true, Ordering::SeqCst);
                        return Err(error);
                    }
                    // Without status queries: the last chunk sent again after
                    // an attempt whose answer was lost (a time limit while the
                    // server finalized) meets a finished session, which
                    // emulators answer 404. Take the stored object; `complete`
                    // checks it against the body's CRC32C.
                    if part.last
                        && matches!(error, Error::NotFound { .. })
                        && let Ok(object) = self.stored_object().await
                    {
                        return Ok(Chunk {
                            from_session: false,
                            ..done(Some(object))
                        });
                    }
                    return Err(error);
                }
            };
            let stored = match (status, part.last) {
                (UploadStatus::Ok(object), true) => return Ok(done(Some(object))),
                (UploadStatus::ResumeIncomplete(range), _) => range.last_byte + 1,
                // A 308 without `Range`: nothing is persisted.
                (UploadStatus::NotStarted, _) => 0,
                (other, _) => {
                    return Err(Error::backend(
                        false,
                        format!(
                            "GCS resumable upload of {key}: unexpected answer after {end} bytes: {other:?}"
                        ),
                        "resumable upload",
                    ));
                }
            };
            if stored < from {
                return Err(Error::backend(
                    false,
                    format!(
                        "GCS resumable upload of {key}: the session holds {stored} bytes after {from} were acknowledged"
                    ),
                    "resumable upload",
                ));
            }
            if !part.last && stored >= end {
                return Ok(done(None));
            }
            from = stored.min(end);
        }
        Err(Error::backend(
            true,
            format!(
                "GCS resumable upload of {key}: the chunk ending at {end} bytes was still not stored after {MAX_SHORT_ANSWERS} answers"
            ),
            "resumable upload",
        ))
    }

    /// Checks the stored object's CRC32C against the body's: the last
    /// chunk's answer already made the object visible.
    async fn complete(
        &self,
        _session: &Session,
        chunks: Vec<Chunk>,
        whole: &Uploaded,
    ) -> Result<ObjectMeta> {
        let key = &self.key;
        let mut crc = 0u32;
        let mut uploaded = None;
        let mut from_session = true;
        for chunk in chunks {
            crc = crc32c::crc32c_combine(crc, chunk.crc32c, chunk.len);
            if chunk.object.is_some() {
                from_session = chunk.from_session;
            }
            uploaded = chunk.object.or(uploaded);
        }
        let uploaded = uploaded.ok_or_else(|| {
            Error::backend(
                false,
                format!("GCS resumable upload of {key}: the last chunk's answer has no object"),
                "resumable upload",
            )
        })?;
        if let Some(server) = uploaded.crc32c.as_deref()
            && server != crc32c_base64(crc)
        {
            if !from_session {
                // Read from the key after a lost answer: it may be another
                // writer's object, which is never deleted here.
                return Err(Error::ChecksumMismatch {
                    key: key.to_string(),
                    expected: crc32c_base64(crc),
                    actual: format!(
                        "{server} (CRC32C of the object stored under the key after the upload's last answer was lost; left in place)"
                    ),
                });
            }
            // Remove what this session wrote, and only that generation.
            let written = GcsBackend::meta_from_object(key, &uploaded).etag;
            let removed = self
                .backend
                .delete(
                    key,
                    DeleteOptions {
                        if_match: Some(written),
                    },
                )
                .await;
            let left = match removed {
                Ok(()) => "its generation was deleted, or was already gone".to_owned(),
                Err(e) => format!("deleting the object written failed: {e}"),
            };
            return Err(Error::ChecksumMismatch {
                key: key.to_string(),
                expected: crc32c_base64(crc),
                actual: format!("{server} (CRC32C stored by GCS; {left})"),
            });
        }
        self.record_sha256(&uploaded, &whole.sha256).await
    }

    async fn abort(&self, session: &Session) -> Result<()> {
        let b = &self.backend;
        let cancelled = b
            .timed("cancel resumable upload", session.client.clone().cancel())
            .await?;
        match cancelled {
            Ok(()) => Ok(()),
            Err(e) => {
                let op = "cancel resumable upload";
                match b.error(e, op, self.key.as_str(), Context::Plain).await {
                    // Finished or cancelled already: nothing is left.
                    Error::NotFound { .. } => Ok(()),
                    other => Err(other),
                }
            }
        }
    }

    async fn put_whole(&self, bytes: Bytes, _whole: &Uploaded) -> Result<ObjectMeta> {
        self.backend
            .put_single(&self.key, bytes, self.options.clone())
            .await
    }
}
