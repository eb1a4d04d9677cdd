//! [`StreamingUpload`]: object_store's multipart upload as one streaming
//! [`Backend::put`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use object_store::{MultipartUpload, PutPayload, PutResult, UploadPart};
use storage_core::{Backend, Body, Error, Key, ObjectMeta, PutOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::convert::{STORE, to_store_error};

/// What the caller sends the put's body.
enum Message {
    /// The next part, and who waits until the backend takes it.
    Part(Bytes, oneshot::Sender<()>),
    /// `complete`: the body ends here.
    End,
}

/// A multipart upload fed into one [`Backend::put`] that runs as a tokio
/// task from the first call: parts become the body in the order
/// `put_part` was called (as object_store requires of `MultipartUpload`),
/// and each part's future resolves when the backend's put has pulled the
/// part from the queue into its own buffering (it is then the backend's
/// to send; a failure shows at `complete`). Memory is therefore bounded by
/// the parts the caller keeps in flight (`WriteMultipart` keeps a fixed
/// number), plus what the backend buffers for one request.
///
/// Nothing is visible until `complete`, which ends the body and returns the
/// put's result (once `complete` has been called, the put finishes even if
/// its future is dropped). `abort`, or dropping the upload, ends the body
/// with an error after the parts already queued, so the backend writes
/// nothing (and aborts its own multipart upload).
pub(crate) struct StreamingUpload {
    sender: Option<mpsc::UnboundedSender<Message>>,
    put: Option<JoinHandle<storage_core::Result<ObjectMeta>>>,
    path: String,
    /// Set by `abort`: the body fails at its next part instead of passing
    /// the parts still queued to a put that is doomed anyway.
    aborted: Arc<AtomicBool>,
}

impl std::fmt::Debug for StreamingUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingUpload")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl StreamingUpload {
    /// Starts the put of `key` with `options` on `backend`; must be called
    /// within a tokio runtime.
    pub(crate) fn start<B: Backend + ?Sized>(
        backend: Arc<B>,
        key: Key,
        options: PutOptions,
    ) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let path = key.to_string();
        let name = path.clone();
        let aborted = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&aborted);
        let body = stream::unfold(Some(receiver), move |state| {
            let name = name.clone();
            let seen = Arc::clone(&seen);
            async move {
                let mut receiver = state?;
                let next = match receiver.recv().await {
                    Some(Message::Part(..)) if seen.load(Ordering::SeqCst) => None,
                    next => next,
                };
                match next {
                    Some(Message::Part(bytes, taken)) => {
                        // The caller may have stopped waiting.
                        let _ = taken.send(());
                        Some((Ok(bytes), Some(receiver)))
                    }
                    Some(Message::End) => None,
                    None => Some((
                        Err(Error::Backend {
                            transient: false,
                            message: format!(
                                "the multipart upload of {name} was aborted before complete"
                            ),
                            source: None,
                        }),
                        None,
                    )),
                }
            }
        })
        .boxed();
        let put =
            tokio::spawn(async move { backend.put(&key, Body::stream(body, None), options).await });
        StreamingUpload {
            sender: Some(sender),
            put: Some(put),
            path,
            aborted,
        }
    }

    /// The error of a call after `complete` or `abort`, or of a put that
    /// already ended.
    fn ended(&self) -> object_store::Error {
        object_store::Error::Generic {
            store: STORE,
            source: format!(
                "the multipart upload of {} has ended (completed, aborted or failed; complete reports the failure)",
                self.path
            )
            .into(),
        }
    }

    /// Waits for the put's task.
    async fn finish(&mut self) -> object_store::Result<ObjectMeta> {
        let put = self.put.take().ok_or_else(|| self.ended())?;
        match put.await {
            Ok(result) => result.map_err(|e| to_store_error(e, &self.path)),
            // The put's task panicked or was cancelled.
            Err(e) => Err(object_store::Error::Generic {
                store: STORE,
                source: Box::new(e),
            }),
        }
    }
}

#[async_trait]
impl MultipartUpload for StreamingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let (taken, wait) = oneshot::channel();
        let mut bytes = data.into_iter();
        let part = match (bytes.next(), bytes.next()) {
            (None, _) => Bytes::new(),
            (Some(one), None) => one,
            (Some(first), Some(second)) => {
                let mut all = Vec::from(first.as_ref());
                all.extend_from_slice(&second);
                bytes.for_each(|b| all.extend_from_slice(&b));
                Bytes::from(all)
            }
        };
        let sent = self
            .sender
            .as_ref()
            .is_some_and(|s| s.send(Message::Part(part, taken)).is_ok());
        let ended = self.ended();
        Box::pin(async move {
            if !sent {
                return Err(ended);
            }
            // A dropped sender means the put ended without taking the
            // part: `complete` reports why.
            wait.await.map_err(|_| ended)
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let sender = self.sender.take().ok_or_else(|| self.ended())?;
        // A failed send means the put already ended; `finish` says how.
        let _ = sender.send(Message::End);
        let meta = self.finish().await?;
        Ok(PutResult {
            e_tag: Some(meta.etag.as_str().to_owned()),
            version: None,
            extensions: Default::default(),
        })
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // Closing the channel without `End` fails the body (at its next
        // part, queued ones included), so the backend writes nothing;
        // waiting lets it clean up first.
        self.aborted.store(true, Ordering::SeqCst);
        self.sender = None;
        match self.finish().await {
            Ok(_) => Err(object_store::Error::Generic {
                store: STORE,
                source: format!("the upload of {} completed before the abort", self.path).into(),
            }),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_core::MemoryBackend;

    #[tokio::test(flavor = "current_thread")]
    async fn an_abort_with_parts_queued_writes_nothing_and_fails_the_parts() {
        let backend = Arc::new(MemoryBackend::new());
        let key = Key::new("k").expect("valid key");
        let mut upload = StreamingUpload::start(
            Arc::clone(&backend) as Arc<dyn Backend>,
            key.clone(),
            PutOptions::default(),
        );
        let parts: Vec<UploadPart> = (0..3)
            .map(|_| upload.put_part(PutPayload::from_static(b"part")))
            .collect();
        upload.abort().await.expect("aborted");
        let outcomes = futures::future::join_all(parts).await;
        let absent = matches!(
            backend.head(&key).await,
            Err(storage_core::Error::NotFound { .. })
        );
        // On the test's one-thread runtime the put's task first runs when
        // the abort waits for it: every part is still queued, and none may
        // be passed to the doomed put.
        assert!(
            absent && outcomes.iter().all(Result::is_err),
            "absent: {absent}, parts: {outcomes:?}"
        );
    }
}
