//! `Prefixed`: a namespace view of a backend, every key under one prefix.

use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    Backend, Body, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, ObjectMeta, PresignMethod, PutMode, PutOptions, Result, TxnId,
};

/// A view of `inner` in which key `k` is stored as `{prefix}k`: reads,
/// writes, copies, staged writes, presigned URLs and change feeds all go
/// under the prefix, and listings and watches see only the keys under it,
/// with the prefix stripped (in errors too). Views with prefixes neither of
/// which starts the other never see each other's keys; a view of `a/`
/// sees everything of a view of `a/b/`, and the inner backend sees all.
///
/// The prefix is empty or a valid key followed by `/` (`tenant-a/`,
/// `env/prod/`; [`validate_namespace_prefix`]): with the `/`, the staging
/// layer's reserved names (`K/.staging/T`, `.staging/T`) of the view stay
/// reserved names of the inner backend, so its ordinary listings leave them
/// out too. A key whose prefixed form exceeds 1,024 bytes is
/// [`Error::InvalidKey`], before any I/O.
///
/// Capabilities are the inner backend's; a conditional put, delete or
/// promotion is exactly the inner one, on the prefixed key.
///
/// **Transactions.** A view's transactions keep their records inside the
/// view (`{prefix}.txn/T`, `{prefix}K/.staging/T`). Run
/// [`reconcile`](crate::reconcile) through the view, never on the inner
/// backend or another ancestor view: from there the view's staged writes
/// look like writes of keys `{prefix}K` with no decision record, and would
/// be discarded once old enough, even those of a committed transaction not
/// yet promoted.
///
/// ```
/// use storage_core::{Backend, BackendExt, ListOptions, MemoryBackend, Prefixed};
/// # async fn example() -> storage_core::Result<()> {
/// let shared = std::sync::Arc::new(MemoryBackend::new());
/// let tenant = Prefixed::new(shared.clone(), "tenant-a/")?;
/// tenant.put_bytes("report.csv", "a,b\n").await?;
/// assert!(shared.exists("tenant-a/report.csv").await?);
/// let page = tenant.list(&ListOptions::prefix("")).await?;
/// assert_eq!(page.objects[0].key.as_str(), "report.csv");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Prefixed<B> {
    inner: B,
    prefix: String,
}

/// Checks a namespace prefix of [`Prefixed`]: empty, or a valid,
/// non-reserved key followed by `/`.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the prefix and the broken rule.
pub fn validate_namespace_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    let Some(stem) = prefix.strip_suffix('/') else {
        return Err(Error::invalid_argument(format!(
            "prefix {prefix:?}: a namespace prefix must end with '/'"
        )));
    };
    Key::new(stem).map_err(|e| {
        Error::invalid_argument(format!("prefix {prefix:?} is not a key and '/': {e}"))
    })?;
    Ok(())
}

impl<B: Backend> Prefixed<B> {
    /// A view of `inner` under `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `prefix` is empty or a valid,
    /// non-reserved key followed by `/` ([`validate_namespace_prefix`]).
    pub fn new(inner: B, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        validate_namespace_prefix(&prefix)?;
        Ok(Prefixed { inner, prefix })
    }

    /// The prefix, as given.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The backend underneath.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// `key` as the inner backend stores it.
    fn outer_to_inner(&self, key: &Key) -> Result<Key> {
        if self.prefix.is_empty() {
            return Ok(key.clone());
        }
        Key::stored(&format!("{}{key}", self.prefix))
    }

    /// A name the inner backend returned, as this view names it.
    fn inner_to_outer(&self, name: &str) -> Result<String> {
        name.strip_prefix(self.prefix.as_str())
            .map(str::to_owned)
            .ok_or_else(|| Error::Backend {
                transient: false,
                message: format!(
                    "the {} backend returned {name:?}, outside the prefix {:?}",
                    self.inner.name(),
                    self.prefix
                ),
                source: None,
            })
    }

    /// [`Backend::list`] of the view, before its errors are renamed.
    async fn list_inner(&self, options: &ListOptions) -> Result<ListPage> {
        crate::validate_prefix(&options.prefix)?;
        let inner_options = ListOptions {
            prefix: format!("{}{}", self.prefix, options.prefix),
            start_after: options
                .start_after
                .as_ref()
                .map(|after| format!("{}{after}", self.prefix)),
            ..options.clone()
        };
        let page = self.inner.list(&inner_options).await?;
        Ok(ListPage {
            objects: page
                .objects
                .into_iter()
                .map(|meta| self.strip(meta))
                .collect::<Result<_>>()?,
            common_prefixes: page
                .common_prefixes
                .iter()
                .map(|p| self.inner_to_outer(p))
                .collect::<Result<_>>()?,
            continuation: page.continuation,
        })
    }

    /// `error` with the key it names as this view names it.
    fn view_error(&self, error: Error) -> Error {
        view_error(&self.prefix, error)
    }

    fn strip(&self, mut meta: ObjectMeta) -> Result<ObjectMeta> {
        meta.key = Key::stored(&self.inner_to_outer(meta.key.as_str())?)?;
        Ok(meta)
    }
}

/// `error` with the key it names as a view under `prefix` names it, where
/// the key is under the prefix (an inner key outside it is left whole).
fn view_error(prefix: &str, mut error: Error) -> Error {
    {
        let key = match &mut error {
            Error::NotFound { key }
            | Error::AlreadyExists { key }
            | Error::PreconditionFailed { key, .. }
            | Error::NotModified { key, .. }
            | Error::ModifiedSince { key, .. }
            | Error::InvalidKey { key, .. }
            | Error::InvalidRange { key, .. }
            | Error::ChecksumMismatch { key, .. }
            | Error::Integrity { key, .. }
            | Error::NonReplayableBody { key, .. }
            | Error::PermissionDenied { key: Some(key), .. }
            | Error::TooLarge { key: Some(key), .. } => key,
            _ => return error,
        };
        if let Some(stripped) = key.strip_prefix(prefix) {
            *key = stripped.to_owned();
        }
        error
    }
}

#[async_trait]
impl<B: Backend> Backend for Prefixed<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        let put = async {
            let inner = self.outer_to_inner(key)?;
            self.strip(self.inner.put(&inner, body, options).await?)
        };
        put.await.map_err(|e| self.view_error(e))
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let get = async {
            let inner = self.outer_to_inner(key)?;
            let mut result = self.inner.get(&inner, options).await?;
            result.meta = self.strip(result.meta)?;
            let prefix = self.prefix.clone();
            Ok(result.map_errors(move |e| view_error(&prefix, e)))
        };
        get.await.map_err(|e| self.view_error(e))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let head = async {
            let inner = self.outer_to_inner(key)?;
            self.strip(self.inner.head(&inner).await?)
        };
        head.await.map_err(|e| self.view_error(e))
    }

    /// The inner backend's ranged read (which may do better than the
    /// default, for example on S3) of the inner key.
    async fn get_ranges(&self, key: &Key, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let get = async {
            let inner = self.outer_to_inner(key)?;
            self.inner.get_ranges(&inner, ranges).await
        };
        get.await.map_err(|e| self.view_error(e))
    }

    /// The inner backend's batch delete of the inner keys.
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let delete = async {
            let inner = keys
                .iter()
                .map(|key| self.outer_to_inner(key))
                .collect::<Result<Vec<Key>>>()?;
            let results = self.inner.delete_many(&inner).await?;
            Ok(results
                .into_iter()
                .map(|r| r.map_err(|e| self.view_error(e)))
                .collect())
        };
        delete.await.map_err(|e| self.view_error(e))
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        let delete = async {
            let inner = self.outer_to_inner(key)?;
            self.inner.delete(&inner, options).await
        };
        delete.await.map_err(|e| self.view_error(e))
    }

    /// The inner listing of `{prefix}{options.prefix}`, names stripped; the
    /// continuation token is the inner backend's, passed through.
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.list_inner(options)
            .await
            .map_err(|e| self.view_error(e))
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        let copy = async {
            let (from, to) = (self.outer_to_inner(from)?, self.outer_to_inner(to)?);
            self.strip(self.inner.copy(&from, &to, mode).await?)
        };
        copy.await.map_err(|e| self.view_error(e))
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        crate::validate_prefix(prefix)?;
        let stream = self
            .inner
            .watch(&format!("{}{prefix}", self.prefix))
            .await
            .map_err(|e| self.view_error(e))?;
        let view_prefix = self.prefix.clone();
        Ok(stream
            .map(move |change| {
                let mut change = change.map_err(|e| view_error(&view_prefix, e))?;
                let name = change
                    .key
                    .as_str()
                    .strip_prefix(view_prefix.as_str())
                    .ok_or_else(|| {
                        Error::backend(
                            false,
                            format!("a change to {} outside the prefix", change.key),
                            "watch",
                        )
                    })?;
                change.key = Key::stored(name)?;
                Ok(change)
            })
            .boxed())
    }

    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        let presign = async {
            let inner = self.outer_to_inner(key)?;
            self.inner.presign(method, &inner, expires_in).await
        };
        presign.await.map_err(|e| self.view_error(e))
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn stage(
        &self,
        key: &Key,
        txn: &TxnId,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let stage = async {
            let inner = self.outer_to_inner(key)?;
            self.strip(self.inner.stage(&inner, txn, body, options).await?)
        };
        stage.await.map_err(|e| self.view_error(e))
    }

    /// The inner promotion of the prefixed key: atomic where the inner
    /// backend's is.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        let promote = async {
            let inner = self.outer_to_inner(key)?;
            self.strip(self.inner.promote(&inner, txn, mode).await?)
        };
        promote.await.map_err(|e| self.view_error(e))
    }

    async fn discard(&self, key: &Key, txn: &TxnId) -> Result<()> {
        let discard = async {
            let inner = self.outer_to_inner(key)?;
            self.inner.discard(&inner, txn).await
        };
        discard.await.map_err(|e| self.view_error(e))
    }

    // `list_staged` keeps the trait's default, which lists through this
    // view: the view's own root forms (`.staging/T`, stored as
    // `{prefix}.staging/T`) are then found too.
}
