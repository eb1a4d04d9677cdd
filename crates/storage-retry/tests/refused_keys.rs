//! A key the backend refuses before any I/O (`InvalidKey`, on every
//! operation, as Azure refuses names it would rewrite): a write of it whose
//! attempt failed transiently is refused, not reported as of unknown
//! outcome.

mod common;

use async_trait::async_trait;
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, Error, GetOptions, GetResult, Key, ListOptions,
    ListPage, MemoryBackend, ObjectMeta, PutOptions, Result,
};
use storage_retry::Retry;

use common::{Script, Scripted, fast_policy};

/// Memory, refusing every key that holds `\`.
#[derive(Debug, Default)]
struct RefusesBackslashes {
    inner: MemoryBackend,
}

impl RefusesBackslashes {
    fn check(key: &Key) -> Result<()> {
        match key.as_str().contains('\\') {
            true => Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "this test backend stores no `\\`",
            }),
            false => Ok(()),
        }
    }
}

#[async_trait]
impl Backend for RefusesBackslashes {
    fn name(&self) -> &str {
        "refuses-backslashes"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        Self::check(key)?;
        self.inner.put(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        Self::check(key)?;
        self.inner.get(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        Self::check(key)?;
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        Self::check(key)?;
        self.inner.delete(key, options).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
}

#[tokio::test]
async fn a_refused_key_whose_put_failed_transiently_is_invalid_key() {
    // The first put fails transiently before reaching the backend.
    let store = Retry::with_policy(
        Scripted::new(RefusesBackslashes::default(), Script::Refuse(1)),
        fast_policy(),
    );
    let key = Key::new("a\\b").expect("a valid key of the contract");
    let put = store
        .put(&key, Body::from("x"), PutOptions::default())
        .await;
    assert!(
        matches!(put, Err(Error::InvalidKey { .. })),
        "{:?}",
        put.map(|m| m.etag)
    );
}
