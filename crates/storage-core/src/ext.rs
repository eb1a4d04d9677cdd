//! Conveniences over any [`Backend`].

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::{
    Backend, Body, ByteRange, Error, GetOptions, IntoKey, ListOptions, ObjectMeta, PutOptions,
    Result,
};

/// Conveniences users expect, available on every [`Backend`] (including
/// `Arc<dyn Backend>`). Keys may be given as strings; an invalid one fails
/// with [`Error::InvalidKey`] before the backend is called.
///
/// ```
/// use storage_core::{BackendExt, MemoryBackend};
/// # tokio_test_block(async {
/// let store = MemoryBackend::new();
/// store.put_bytes("greeting", "hello").await?;
/// assert_eq!(store.get_bytes("greeting").await?, "hello");
/// assert!(store.exists("greeting").await?);
/// # Ok::<(), storage_core::Error>(())
/// # });
/// # fn tokio_test_block<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait BackendExt: Backend {
    /// Overwrites `key` with `data`; returns the new metadata.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and those of [`Backend::put`].
    async fn put_bytes<K, D>(&self, key: K, data: D) -> Result<ObjectMeta>
    where
        K: IntoKey + Send,
        D: Into<Bytes> + Send,
    {
        let key = key.into_key()?;
        self.put(&key, Body::from(data.into()), PutOptions::default())
            .await
    }

    /// Reads the whole object into memory.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and those of [`Backend::get`] and of its body.
    async fn get_bytes<K>(&self, key: K) -> Result<Bytes>
    where
        K: IntoKey + Send,
    {
        let key = key.into_key()?;
        self.get(&key, GetOptions::default()).await?.bytes().await
    }

    /// Reads a byte range of the object into memory.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], [`Error::InvalidRange`], and those of
    /// [`Backend::get`].
    async fn get_range<K, R>(&self, key: K, range: R) -> Result<Bytes>
    where
        K: IntoKey + Send,
        R: Into<ByteRange> + Send,
    {
        let key = key.into_key()?;
        self.get(&key, GetOptions::range(range))
            .await?
            .bytes()
            .await
    }

    /// Whether the key holds an object.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and those of [`Backend::head`] other than
    /// [`Error::NotFound`].
    async fn exists<K>(&self, key: K) -> Result<bool>
    where
        K: IntoKey + Send,
    {
        let key = key.into_key()?;
        match self.head(&key).await {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every object matching `options`, following continuations page by page.
    ///
    /// The delimiter is ignored (every key under the prefix is returned) and
    /// so is `options.continuation`. The stream ends after its first error.
    fn list_all(&self, options: ListOptions) -> BoxStream<'_, Result<ObjectMeta>> {
        let first = ListOptions {
            delimiter: false,
            continuation: None,
            ..options
        };
        stream::try_unfold(Some(first), move |next| async move {
            let Some(options) = next else {
                return Ok(None);
            };
            let page = self.list(&options).await?;
            let following = page.continuation.map(|token| ListOptions {
                continuation: Some(token),
                ..options
            });
            Ok(Some((
                stream::iter(page.objects.into_iter().map(Ok)),
                following,
            )))
        })
        .map(|page| match page {
            Ok(objects) => objects.left_stream(),
            Err(e) => stream::once(async { Err(e) }).right_stream(),
        })
        .flatten()
        .boxed()
    }
}

impl<B: Backend + ?Sized> BackendExt for B {}
