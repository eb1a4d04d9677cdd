//! `AzureBackend`: its shared state, container creation, and the
//! `Backend` trait implemented by delegating to [`crate::read`],
//! [`crate::write`], [`crate::list`], [`crate::presign`] and
//! [`crate::core`].

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, Pipeline, Url};
use azure_storage_blob::models::BlobContainerClientCreateOptions;
use azure_storage_blob::{BlobContainerClient, BlobContainerClientOptions};
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, Error, GetOptions, GetResult, Key, ListOptions,
    ListPage, Locality, ObjectMeta, PresignMethod, PutMode, PutOptions, Result,
};

use crate::config::AzureConfig;
use crate::error::{Context, from_sdk, status_and_code};
use crate::sas::AccountKey;

/// Content type stored when a put gives none: Azure always stores one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// An object store in an Azure Blob Storage container (or on Azurite).
///
/// - Objects are block blobs. A put below the block threshold, or of a body
///   already in memory up to [`AzureConfig::single_put_in_memory`], is one
///   Put Blob; other large bodies and bodies of unknown length are staged as blocks
///   (Put Block, several in flight, bounded memory) and committed with Put
///   Block List, which carries the condition. Blocks of a failed upload are
///   never committed: Azure discards uncommitted blocks after 7 days.
/// - Keys holding `\` or a segment ending in `.` are refused with
///   [`Error::InvalidKey`] before any I/O: Azure reads `\` in a blob name
///   as `/` and drops a trailing dot ("Naming and Referencing Containers,
///   Blobs, and Metadata": avoid names whose segments end with a dot), so
///   such a key would be stored as, and overwrite, another key.
/// - `IfNotExists` sends `If-None-Match: *`, `IfMatch` sends `If-Match`
///   (Azure: "Specifying conditional headers"). Azure answers an existing
///   blob with 412, Azurite with 409 `BlobAlreadyExists`: both are
///   [`Error::AlreadyExists`].
/// - The SHA-256 of the content is stored as metadata (`storage_sha256`,
///   see [`crate::metadata`]) for every put, staged or not, and a full read
///   is checked against it ([`Error::ChecksumMismatch`]).
/// - Ranges use `x-ms-range`. Azure has no suffix ranges: a suffix read asks
///   for the size first and pins the read to that version with `If-Match`.
///   A range that starts at or past the size is [`Error::InvalidRange`],
///   also where Azurite answers 206 with no bytes.
/// - Listings parse the List Blobs XML themselves, because the SDK cannot
///   send `delimiter`; `start_after` is sent as `startFrom` and applied
///   exclusively here too, so servers without `startFrom` still list
///   correctly (more slowly).
/// - With an account key, `copy` is Copy Blob inside the service: the
///   source is named by a URL carrying a read SAS for that one blob (valid
///   1 hour), the destination's condition is sent as `If-Match` /
///   `If-None-Match`, content type and metadata (with the recorded
///   SHA-256) travel with the content, and a copy the service reports as
///   pending is awaited. With a SAS token or an Entra ID credential this
///   crate cannot authorize the source, so `copy` streams through the
///   client (`Capabilities::server_side_copy` says which).
/// - Delete removes the blob with its snapshots; deleting a missing blob
///   succeeds. With an account key, `delete_many` sends Blob Batch
///   requests of up to 256 Delete Blob sub-requests, each signed with
///   Shared Key; with a SAS token or an Entra ID credential it deletes one
///   blob per request (10 in flight): every sub-request of a batch carries
///   its own authorization, and this crate signs them with the account key
///   only.
/// - A missing container is [`Error::BucketNotFound`] on every operation,
///   never the [`Error::NotFound`] of a blob: Azure names it
///   (`ContainerNotFound`) in the `x-ms-error-code` header of every failed
///   answer, HEAD answers included. A 404 whose code names neither is
///   followed by one Get Container Properties: 404 there is
///   `BucketNotFound`, success makes the 404 the blob's and is remembered;
///   a transient failure of that request is returned as is. The memory is
///   cleared whenever an answer names the container missing.
/// - A put without a content type stores [`DEFAULT_CONTENT_TYPE`].
#[derive(Debug, Clone)]
pub struct AzureBackend {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: AzureConfig,
    pub(crate) container_url: Url,
    pub(crate) container: BlobContainerClient,
    /// For the requests the SDK does not offer (get with every range form,
    /// head with metadata, delimiter listings): the same transport and
    /// authorization as the SDK clients.
    pub(crate) pipeline: Pipeline,
    pub(crate) account_key: Option<AccountKey>,
    /// Whether Get Container Properties found the container (see
    /// [`AzureBackend`]).
    pub(crate) container_exists: AtomicBool,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBackend")
            .field("container_url", &self.container_url.as_str())
            .field("prefix", &self.config.prefix)
            .field("account_key", &self.account_key.is_some())
            .finish_non_exhaustive()
    }
}

impl AzureBackend {
    pub(crate) fn new(
        config: AzureConfig,
        container_url: Url,
        client_options: ClientOptions,
        token: Option<Arc<dyn TokenCredential>>,
        account_key: Option<AccountKey>,
    ) -> Result<Self> {
        let container = BlobContainerClient::new(
            container_url.clone(),
            token.clone(),
            Some(BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..Default::default()
            }),
        )
        .map_err(|e| Error::invalid_argument(format!("Azure container client: {e}")))?;
        let mut per_try: Vec<Arc<dyn Policy>> = Vec::new();
        if let Some(token) = token {
            per_try.push(Arc::new(BearerTokenAuthorizationPolicy::new(
                token,
                vec!["https://storage.azure.com/.default"],
            )));
        }
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options,
            Vec::new(),
            per_try,
            None,
        );
        Ok(AzureBackend {
            inner: Arc::new(Inner {
                config,
                container_url,
                container,
                pipeline,
                account_key,
                container_exists: AtomicBool::new(false),
            }),
        })
    }

    pub(crate) fn config(&self) -> &AzureConfig {
        &self.inner.config
    }

    /// The container's name.
    pub fn container(&self) -> &str {
        &self.inner.config.container
    }

    /// The SDK's container client, for operations this crate does not wrap.
    pub fn container_client(&self) -> &BlobContainerClient {
        &self.inner.container
    }

    /// Creates the configured container; succeeds if it exists.
    ///
    /// # Errors
    /// The mapped Azure error (see [`crate::error`]).
    pub async fn create_container(&self) -> Result<()> {
        let created = self
            .timed(
                "Create Container",
                self.inner
                    .container
                    .create(Some(BlobContainerClientCreateOptions::default())),
            )
            .await?;
        match created {
            Ok(_) => Ok(()),
            Err(e) if status_and_code(&e).1.as_deref() == Some("ContainerAlreadyExists") => Ok(()),
            Err(e) => Err(from_sdk(
                e,
                "Create Container",
                self.container(),
                self.container(),
                Context::Bucket,
            )),
        }
    }
}

#[async_trait]
impl Backend for AzureBackend {
    fn name(&self) -> &str {
        "azure"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            conditional_put: true,
            conditional_delete: true,
            presigned_urls: self.inner.account_key.is_some(),
            server_side_copy: self.inner.account_key.is_some(),
            checksums: true,
            unique_etags: true,
            ..Capabilities::none(Locality::Remote)
        }
    }

    /// [`Error::Unsupported`] unless the backend authenticates with an
    /// account key ([`Capabilities::presigned_urls`]);
    /// [`Error::InvalidArgument`] for a zero expiry.
    async fn presign(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
    ) -> Result<String> {
        self.sas_url(key, method, expires_in)
    }

    /// Get Container Properties: 404 is [`Error::BucketNotFound`], a
    /// refused signature or token [`Error::Unauthenticated`] or
    /// [`Error::PermissionDenied`], no answer a transient [`Error::Backend`].
    async fn health(&self) -> Result<()> {
        self.check_health().await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.put_blob(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.get_blob(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.get_properties(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.delete_blob(key, options).await
    }

    /// Blob Batch, 256 deletes per request, with an account key; one Delete
    /// Blob per key otherwise (see [`AzureBackend`]'s docs).
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        self.delete_blobs(keys).await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.copy_blob(from, to, mode).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.list_blobs(options).await
    }
}

#[cfg(test)]
mod tests;
