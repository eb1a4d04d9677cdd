//! Large bodies as resumable uploads: one session, then the body in chunks
//! (GCS: "Perform resumable uploads", multiple chunks).
//!
//! Memory holds at most two chunks: the one being sent and the next, read
//! ahead so that the last chunk can be sent with the total size. Every
//! chunk but the last is a multiple of 256 KiB. The session is opened with
//! the precondition (`ifGenerationMatch`), the content type and the user
//! metadata; the object appears only when the last chunk is accepted. This
//! code never asks the session for its status (`bytes */*`): fake-gcs-server
//! commits the partial object on that query. A failed or dropped upload
//! cancels the session (`DELETE` on the session URI).

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use gcloud_storage::http::objects::Object;
use gcloud_storage::http::objects::upload::{UploadObjectRequest, UploadType};
use gcloud_storage::http::resumable_upload_client::{
    ChunkSize, ResumableUploadClient, UploadStatus,
};
use storage_core::{Body, ByteStream, Error, Key, ObjectMeta, PutOptions, Result};

use crate::GcsBackend;
use crate::backend::{condition, context, crc32c_base64};
use crate::metadata;

/// Cancels the session unless the upload finished.
struct CancelOnDrop(Option<ResumableUploadClient>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(session) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = session.cancel().await;
            });
        }
    }
}

/// Reads up to `size` bytes from `stream` into one buffer; fewer only at
/// the end of the stream.
async fn read_chunk(stream: &mut ByteStream, carry: &mut BytesMut, size: usize) -> Result<Bytes> {
    while carry.len() < size {
        match stream.next().await {
            Some(Ok(chunk)) => carry.extend_from_slice(&chunk),
            Some(Err(e)) => return Err(e),
            None => break,
        }
    }
    let take = carry.len().min(size);
    Ok(carry.split_to(take).freeze())
}

impl GcsBackend {
    /// Uploads `body` in a resumable session, or as one multipart upload if
    /// it turns out to fit in one chunk.
    pub(crate) async fn put_resumable(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let chunk_size = usize::try_from(self.config().chunk_size)
            .map_err(|_| Error::invalid_argument("the chunk size does not fit in memory"))?;
        let mut stream = body.into_stream();
        let mut carry = BytesMut::new();
        let mut current = read_chunk(&mut stream, &mut carry, chunk_size).await?;
        let mut next = read_chunk(&mut stream, &mut carry, chunk_size).await?;
        if next.is_empty() {
            return self.put_single(key, current, options).await;
        }
        let request = UploadObjectRequest {
            bucket: self.bucket().to_owned(),
            if_generation_match: condition(key, &options.mode)?,
            ..Default::default()
        };
        let object = Object {
            name: self.full_name(key),
            content_type: options.content_type.clone(),
            metadata: Some(metadata::to_gcs(&options.metadata, None)),
            ..Default::default()
        };
        let prepared = self
            .timed(
                "resumable upload",
                self.client()
                    .prepare_resumable_upload(&request, &UploadType::Multipart(Box::new(object))),
            )
            .await?;
        let session = match prepared {
            Ok(session) => session,
            Err(e) => {
                let context = context(&options.mode);
                return Err(self
                    .error(e, "resumable upload", key.as_str(), context)
                    .await);
            }
        };
        let mut guard = CancelOnDrop(Some(session.clone()));
        let mut offset = 0u64;
        let mut crc = 0u32;
        let uploaded = loop {
            let len = current.len() as u64;
            crc = crc32c::crc32c_append(crc, &current);
            let last = next.is_empty();
            let total = last.then_some(offset + len);
            let range = ChunkSize::new(offset, offset + len - 1, total);
            let sent = self
                .timed(
                    "resumable upload chunk",
                    session.upload_multiple_chunk(current, &range),
                )
                .await?;
            let status = match sent {
                Ok(status) => status,
                Err(e) => {
                    let (op, context) = ("resumable upload chunk", context(&options.mode));
                    return Err(self.error(e, op, key.as_str(), context).await);
                }
            };
            offset += len;
            match (status, last) {
                (UploadStatus::Ok(object), true) => break object,
                (UploadStatus::ResumeIncomplete(_), false) => {}
                (other, _) => {
                    return Err(Error::backend(
                        false,
                        format!(
                            "GCS resumable upload of {key}: unexpected answer after {offset} bytes: {other:?}"
                        ),
                        "resumable upload",
                    ));
                }
            }
            current = next;
            next = read_chunk(&mut stream, &mut carry, chunk_size).await?;
        };
        guard.0 = None;
        if let Some(server) = uploaded.crc32c.as_deref()
            && server != crc32c_base64(crc)
        {
            return Err(Error::ChecksumMismatch {
                key: key.to_string(),
                expected: crc32c_base64(crc),
                actual: format!("{server} (CRC32C stored by GCS)"),
            });
        }
        Ok(Self::meta_from_object(key, &uploaded))
    }
}
