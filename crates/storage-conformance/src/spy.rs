//! A backend that records every call and every byte its inner backend sees.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use storage_core::{
    Backend, Body, ByteRange, Capabilities, ChangeStream, DeleteOptions, GetOptions, GetResult,
    Key, ListOptions, ListPage, Metadata, ObjectMeta, PutMode, PutOptions, Result, TxnId,
};

/// One call that reached the inner backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `put(key)` (or `stage(key)`, under its staged name) with the bytes
    /// and the user metadata the inner backend was sent.
    Put(Key, Bytes, Metadata),
    /// `get(key)` with the byte range asked for (`None`: the whole object).
    Get(Key, Option<ByteRange>),
    /// `head(key)`.
    Head(Key),
    /// `delete(key)`.
    Delete(Key),
    /// `list(prefix)`.
    List(String),
    /// `copy(from, to)`.
    Copy(Key, Key),
    /// `watch(prefix)`.
    Watch(String),
}

/// Wraps a backend and records, in order, every call it forwards and the
/// bytes of every put body, so tests can prove what reached storage (or that
/// nothing did). Put bodies are buffered to record them: use it on test data.
#[derive(Debug, Clone)]
pub struct Spy<B> {
    inner: B,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl<B: Backend> Spy<B> {
    /// Wraps `inner`.
    pub fn new(inner: B) -> Self {
        Spy {
            inner,
            calls: Arc::default(),
        }
    }

    /// The calls recorded so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
    }
}

#[async_trait]
impl<B: Backend> Backend for Spy<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn presign(
        &self,
        method: storage_core::PresignMethod,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<String> {
        self.inner.presign(method, key, expires_in).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        let bytes = body.into_bytes().await?;
        self.record(Call::Put(
            key.clone(),
            bytes.clone(),
            options.metadata.clone(),
        ));
        self.inner.put(key, Body::from(bytes), options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.record(Call::Get(key.clone(), options.range));
        self.inner.get(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.record(Call::Head(key.clone()));
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.record(Call::Delete(key.clone()));
        self.inner.delete(key, options).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.record(Call::List(options.prefix.clone()));
        self.inner.list(options).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.record(Call::Copy(from.clone(), to.clone()));
        self.inner.copy(from, to, mode).await
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.record(Call::Watch(prefix.to_owned()));
        self.inner.watch(prefix).await
    }

    /// Forwarded where the inner backend promotes atomically (as its
    /// capabilities, forwarded, say); otherwise the default copy-then-delete
    /// through the spy.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        if self.inner.capabilities().atomic_promote {
            return self.inner.promote(key, txn, mode).await;
        }
        storage_core::raw::promote_by_copy(self, key, txn, mode).await
    }
}
