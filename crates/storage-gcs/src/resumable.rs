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
//! This code never asks the session for its status (`bytes */*`):
//! fake-gcs-server commits the partial object on that query. So a chunk
//! whose request reached the server but whose answer was lost is sent
//! again whole, which real GCS documents recovering from with that query
//! instead. A last chunk sent again after the upload finished meets a
//! finished session (200 with the object on GCS, 404 on emulators): the
//! object then stored is taken, and its CRC32C must match the body's.

use bytes::Bytes;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::get::GetObjectRequest;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::{
    ChunkSize, ResumableUploadClient, UploadStatus,
};
use storage_core::raw::{self, ChunkedUpload, Part, UploadPlan, Uploaded};
use storage_core::{Body, Error, Key, ObjectMeta, PutOptions, Result};

use crate::GcsBackend;
use crate::backend::{condition, context, crc32c_base64};
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

/// What a chunk's upload leaves: its CRC32C and length, and for the last
/// chunk the stored object.
struct Chunk {
    crc32c: u32,
    len: usize,
    object: Option<Object>,
}

impl ResumableUpload {
    /// The object stored under the key now.
    async fn stored_object(&self) -> Result<Object> {
        let b = &self.backend;
        let request = GetObjectRequest {
            bucket: b.bucket().to_owned(),
            object: b.full_name(&self.key),
            ..Default::default()
        };
        match b.timed("get", b.client().get_object(&request)).await? {
            Ok(object) => Ok(object),
            Err(e) => Err(b.error(e, "get", self.key.as_str(), Context::Plain).await),
        }
    }
}

#[async_trait::async_trait]
impl ChunkedUpload for ResumableUpload {
    type Session = ResumableUploadClient;
    type Receipt = Chunk;

    async fn initiate(&self) -> Result<ResumableUploadClient> {
        let (b, key, options) = (&self.backend, &self.key, &self.options);
        let request = UploadObjectRequest {
            bucket: b.bucket().to_owned(),
            if_generation_match: condition(key, &options.mode)?,
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
                    .prepare_resumable_upload(&request, &UploadType::Multipart(Box::new(object))),
            )
            .await?;
        match prepared {
            Ok(session) => Ok(session),
            Err(e) => {
                let context = context(&options.mode);
                Err(b.error(e, "resumable upload", key.as_str(), context).await)
            }
        }
    }

    async fn upload_part(&self, session: &ResumableUploadClient, part: &Part) -> Result<Chunk> {
        let (b, key) = (&self.backend, &self.key);
        let len = part.bytes.len() as u64;
        let end = part.offset + len;
        let total = part.last.then_some(end);
        let range = ChunkSize::new(part.offset, end.saturating_sub(1), total);
        let sent = b
            .timed(
                "resumable upload chunk",
                session.upload_multiple_chunk(part.bytes.clone(), &range),
            )
            .await?;
        let status = match sent {
            Ok(status) => status,
            Err(e) => {
                let (op, context) = ("resumable upload chunk", context(&self.options.mode));
                let error = b.error(e, op, key.as_str(), context).await;
                // The last chunk sent again after an attempt whose answer
                // was lost (a time limit while the server finalized): real
                // GCS answers 200 with the object, emulators 404 for the
                // finished session. Take the stored object; `complete`
                // checks it against the body's CRC32C.
                if part.last
                    && matches!(error, Error::NotFound { .. })
                    && let Ok(object) = self.stored_object().await
                {
                    return Ok(Chunk {
                        crc32c: crc32c::crc32c(&part.bytes),
                        len: part.bytes.len(),
                        object: Some(object),
                    });
                }
                return Err(error);
            }
        };
        let object = match (status, part.last) {
            (UploadStatus::Ok(object), true) => Some(object),
            (UploadStatus::ResumeIncomplete(_), false) => None,
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
        Ok(Chunk {
            crc32c: crc32c::crc32c(&part.bytes),
            len: part.bytes.len(),
            object,
        })
    }

    /// Checks the stored object's CRC32C against the body's: the last
    /// chunk's answer already made the object visible.
    async fn complete(
        &self,
        _session: &ResumableUploadClient,
        chunks: Vec<Chunk>,
        _whole: &Uploaded,
    ) -> Result<ObjectMeta> {
        let key = &self.key;
        let mut crc = 0u32;
        let mut uploaded = None;
        for chunk in chunks {
            crc = crc32c::crc32c_combine(crc, chunk.crc32c, chunk.len);
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
            return Err(Error::ChecksumMismatch {
                key: key.to_string(),
                expected: crc32c_base64(crc),
                actual: format!("{server} (CRC32C stored by GCS)"),
            });
        }
        Ok(GcsBackend::meta_from_object(key, &uploaded))
    }

    async fn abort(&self, session: &ResumableUploadClient) -> Result<()> {
        let b = &self.backend;
        let cancelled = b
            .timed("cancel resumable upload", session.clone().cancel())
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
