//! `AzureConfig`: where the container is, how to authenticate, and how to
//! upload.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::{ClientOptions, RetryOptions, Transport, Url};
use storage_core::raw::url_options::{UrlForm, UrlOptions, path_prefix, without_query};
use storage_core::{Error, Result};

use crate::AzureBackend;
use crate::encryption::AzureEncryption;
use crate::sas::{AccountKey, SasPolicy};
use crate::shared_key::SharedKeyPolicy;
use azure_core::http::policies::Policy;

mod sources;

/// The account name of the Azure Storage emulator (Azurite).
pub const EMULATOR_ACCOUNT: &str = "devstoreaccount1";
/// The well-known, public account key of the Azure Storage emulator
/// (Azurite); never a secret.
pub const EMULATOR_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// The options of [`AzureConfig::from_url`].
pub const URL_OPTIONS: [&str; 4] = ["access_key", "sas_token", "endpoint", "use_emulator"];

/// Bodies of at least this many bytes (or of unknown length) are uploaded as
/// staged blocks by default: 16 MiB.
pub const DEFAULT_BLOCK_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Default block size: 4 MiB (the SDK's own partition size).
pub const DEFAULT_BLOCK_SIZE: u64 = 4 * 1024 * 1024;
/// Bodies already in memory up to this many bytes go as one Put Blob by
/// default: 256 MiB.
pub const DEFAULT_SINGLE_PUT_IN_MEMORY: u64 = 256 * 1024 * 1024;
/// Largest body of one Put Blob: 5,000 MiB.
pub const MAX_SINGLE_PUT: u64 = 5000 * 1024 * 1024;
/// Largest block Azure accepts in one Put Block: 4,000 MiB.
pub const MAX_BLOCK_SIZE: u64 = 4000 * 1024 * 1024;
/// Most blocks in one block blob: 50,000 (Azure: "Put Block List").
pub const MAX_BLOCKS: u64 = 50_000;
/// The slowest upload a single Put Blob is planned for, by default: 4 MiB/s.
pub const DEFAULT_MIN_UPLOAD_RATE: u64 = 4 * 1024 * 1024;

/// How requests are authorized.
#[derive(Clone)]
pub enum AzureCredential {
    /// The storage account key (base64, as the portal shows it). Requests
    /// are signed with it (Shared Key, or an account SAS: see
    /// [`AzureConfig::account_sas_requests`]); the key never leaves the
    /// process. Enables presigned URLs
    /// ([`Backend::presign`](storage_core::Backend::presign)).
    AccountKey(String),
    /// A SAS token (the query string, with or without the leading `?`) or a
    /// whole SAS URL, whose query is used. It is sent as given and not
    /// renewed: it must grant read, write, delete and list on the container
    /// for as long as the backend is used.
    Sas(String),
    /// An Entra ID credential (`azure_identity` builds them; see the
    /// `identity` feature). The endpoint must be `https`.
    Token(Arc<dyn TokenCredential>),
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AzureCredential::AccountKey(_) => "AccountKey(…)",
            AzureCredential::Sas(_) => "Sas(…)",
            AzureCredential::Token(_) => "Token(…)",
        })
    }
}

/// Settings of an [`AzureBackend`], validated by [`AzureConfig::build`].
///
/// ```no_run
/// use std::time::Duration;
/// use storage_azure::AzureConfig;
/// # async fn example() -> storage_core::Result<()> {
/// let store = AzureConfig::new("myaccount", "mycontainer")
///     .account_key(std::env::var("AZURE_STORAGE_KEY").unwrap_or_default())
///     .prefix("service-a/")
///     .request_timeout(Duration::from_secs(30))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct AzureConfig {
    pub(crate) account: String,
    pub(crate) container: String,
    pub(crate) prefix: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) credential: Option<AzureCredential>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) block_threshold: u64,
    pub(crate) block_size: u64,
    pub(crate) blocks_in_flight: usize,
    pub(crate) single_put_in_memory: u64,
    pub(crate) sas_validity: Duration,
    pub(crate) account_sas_requests: bool,
    pub(crate) min_upload_rate: u64,
    pub(crate) encryption: Option<AzureEncryption>,
    pub(crate) copy_timeout: Duration,
}

impl AzureConfig {
    /// Settings for `container` in storage account `account`, with the
    /// defaults: the public cloud endpoint
    /// (`https://{account}.blob.core.windows.net`), no credential (public
    /// containers only), connect timeout 5 s, request timeout 60 s, staged
    /// blocks from 16 MiB in 4 MiB blocks, 4 in flight (but one Put Blob for
    /// bodies already in memory up to 256 MiB), Shared Key signing with an
    /// account key, and account SAS tokens valid for 1 hour.
    pub fn new(account: impl Into<String>, container: impl Into<String>) -> Self {
        AzureConfig {
            account: account.into(),
            container: container.into(),
            prefix: String::new(),
            endpoint: None,
            credential: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            block_threshold: DEFAULT_BLOCK_THRESHOLD,
            block_size: DEFAULT_BLOCK_SIZE,
            blocks_in_flight: 4,
            single_put_in_memory: DEFAULT_SINGLE_PUT_IN_MEMORY,
            sas_validity: Duration::from_secs(3600),
            account_sas_requests: false,
            min_upload_rate: DEFAULT_MIN_UPLOAD_RATE,
            encryption: None,
            copy_timeout: Duration::from_secs(600),
        }
    }

    /// Settings for `container` on an Azure Storage emulator (Azurite) at
    /// `endpoint` (for example `http://127.0.0.1:10000/devstoreaccount1`),
    /// with the emulator's well-known account and key.
    pub fn emulator(endpoint: impl Into<String>, container: impl Into<String>) -> Self {
        AzureConfig::new(EMULATOR_ACCOUNT, container)
            .endpoint(endpoint)
            .account_key(EMULATOR_KEY)
    }

    /// Stores every key under this prefix (for example `"service-a/"`);
    /// listings strip it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The blob service endpoint, for example
    /// `https://myaccount.blob.core.windows.net` or an emulator's
    /// `http://127.0.0.1:10000/devstoreaccount1`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Authorizes with the storage account key (see
    /// [`AzureCredential::AccountKey`]).
    pub fn account_key(mut self, key: impl Into<String>) -> Self {
        self.credential = Some(AzureCredential::AccountKey(key.into()));
        self
    }

    /// Authorizes with a SAS token or SAS URL (see [`AzureCredential::Sas`]).
    pub fn sas_token(mut self, token: impl Into<String>) -> Self {
        self.credential = Some(AzureCredential::Sas(token.into()));
        self
    }

    /// Authorizes with an Entra ID credential (see
    /// [`AzureCredential::Token`]).
    pub fn token_credential(mut self, credential: Arc<dyn TokenCredential>) -> Self {
        self.credential = Some(AzureCredential::Token(credential));
        self
    }

    /// Authorizes with `azure_identity`'s developer-tools chain (Azure CLI,
    /// Azure Developer CLI), for local development.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] when the chain cannot be built.
    #[cfg(feature = "identity")]
    pub fn developer_tools_credential(self) -> Result<Self> {
        let credential = azure_identity::DeveloperToolsCredential::new(None).map_err(|e| {
            Error::Unauthenticated {
                message: format!("Azure developer tools credential: {e}"),
            }
        })?;
        Ok(self.token_credential(credential))
    }

    /// Authorizes with a managed identity (`azure_identity`'s
    /// `ManagedIdentityCredential`: App Service, Functions, virtual
    /// machines through IMDS). The endpoint must be `https`.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] when the credential cannot be built.
    #[cfg(feature = "identity")]
    pub fn managed_identity_credential(self) -> Result<Self> {
        let credential = azure_identity::ManagedIdentityCredential::new(None).map_err(|e| {
            Error::Unauthenticated {
                message: format!("Azure managed identity credential: {e}"),
            }
        })?;
        Ok(self.token_credential(credential))
    }

    /// Authorizes with workload identity federation (`azure_identity`'s
    /// `WorkloadIdentityCredential`: Kubernetes pods, from
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_FEDERATED_TOKEN_FILE`).
    /// The endpoint must be `https`.
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] when those variables are missing.
    #[cfg(feature = "identity")]
    pub fn workload_identity_credential(self) -> Result<Self> {
        let credential = azure_identity::WorkloadIdentityCredential::new(None).map_err(|e| {
            Error::Unauthenticated {
                message: format!("Azure workload identity credential: {e}"),
            }
        })?;
        Ok(self.token_credential(credential))
    }

    /// Time allowed to connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one request, from sending it to the response
    /// headers; a response body that stalls for this long fails too.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Staged blocks from `threshold` bytes, in blocks of `block_size` bytes
    /// (at most 4,000 MiB), `in_flight` blocks at a time. Memory held by an
    /// upload is about `block_size × (in_flight + 2)` (24 MiB by default). A
    /// blob holds at most 50,000 blocks: for a body of known length the
    /// block size grows, in whole MiB, so that it fits (a body over
    /// 50,000 × 4,000 MiB fails with `TooLarge` before any request); a
    /// stream of unknown length keeps `block_size`, so it can hold at most
    /// 50,000 blocks of it (195 GiB with 4 MiB blocks).
    pub fn blocks(mut self, threshold: u64, block_size: u64, in_flight: usize) -> Self {
        self.block_threshold = threshold;
        self.block_size = block_size;
        self.blocks_in_flight = in_flight;
        self
    }

    /// With an account key, authorize requests with an account SAS signed
    /// from the key (renewed when a fifth of [`AzureConfig::sas_validity`]
    /// is left) instead of Shared Key (the default: one signature per
    /// request, which servers check faster — Azurite spends ~0.16 ms less
    /// CPU per request, measured with `cargo xtask probe azure`).
    pub fn account_sas_requests(mut self, enabled: bool) -> Self {
        self.account_sas_requests = enabled;
        self
    }

    /// Bodies already held in memory (`Body::from(Bytes)`) of up to `max`
    /// bytes (at most 5,000 MiB) are sent as one Put Blob even above the
    /// block threshold: they cost no extra memory, and one request is
    /// faster than staged blocks where the server's block path is slow
    /// (Azurite: 152 vs 63 MB/s for 256 MiB, `cargo xtask bench --backend
    /// azure`). Streamed and file bodies above the threshold are always
    /// staged. Set 0 to stage every large body.
    pub fn single_put_in_memory(mut self, max: u64) -> Self {
        self.single_put_in_memory = max;
        self
    }

    /// Server-side encryption of the blobs this backend writes: a
    /// customer-provided key (sent on every request that writes or reads a
    /// blob; copies then go through this client) or an encryption scope
    /// (sent on every write); see the table in [`AzureEncryption`]'s
    /// module. Without it the account's or container's default applies.
    pub fn server_side_encryption(mut self, encryption: AzureEncryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// How long a server-side copy (Copy Blob, which Azure may run in the
    /// background) may stay pending before it is aborted and the copy fails
    /// (default 10 minutes). The aborted destination, a zero-length blob, is
    /// deleted.
    pub fn copy_timeout(mut self, timeout: Duration) -> Self {
        self.copy_timeout = timeout;
        self
    }

    /// The slowest upload rate, in bytes per second, a single Put Blob is
    /// planned for (default [`DEFAULT_MIN_UPLOAD_RATE`], 4 MiB/s): a body
    /// goes as one Put Blob only while it fits the request timeout at this
    /// rate (`len ≤ request_timeout × rate`, 240 MiB with the defaults), so
    /// that a slow link stages blocks (each retried alone) instead of
    /// failing one long request at the time limit; staged blocks are no
    /// larger than that limit either (in whole MiB, at least 1 MiB). 0
    /// turns the rule off: bodies go by the block threshold and
    /// [`AzureConfig::single_put_in_memory`] alone.
    pub fn min_upload_rate(mut self, bytes_per_second: u64) -> Self {
        self.min_upload_rate = bytes_per_second;
        self
    }

    /// The largest body one request carries under this configuration: what
    /// the request timeout allows at [`AzureConfig::min_upload_rate`]
    /// (`None`: the rule is off).
    pub(crate) fn single_put_limit(&self) -> Option<u64> {
        let seconds = self.request_timeout.as_secs_f64();
        (self.min_upload_rate > 0)
            .then(|| (seconds * self.min_upload_rate as f64).min(MAX_SINGLE_PUT as f64) as u64)
    }

    /// How long each account SAS signed from the account key is valid; it
    /// is renewed when less than a fifth of this is left.
    pub fn sas_validity(mut self, validity: Duration) -> Self {
        self.sas_validity = validity;
        self
    }

    /// The container's URL, without credentials.
    pub(crate) fn container_url(&self) -> Result<Url> {
        let endpoint = match &self.endpoint {
            Some(e) => e.trim_end_matches('/').to_owned(),
            None => format!("https://{}.blob.core.windows.net", self.account),
        };
        let mut url = Url::parse(&endpoint)
            .map_err(|e| Error::invalid_argument(format!("endpoint {endpoint:?}: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| Error::invalid_argument(format!("endpoint {endpoint:?} has no path")))?
            .pop_if_empty()
            .push(&self.container);
        Ok(url)
    }

    /// Builds the client. The SDK's own retries are off: wrap the backend
    /// in `storage-retry`'s `Retry` for backoff that knows which bodies can
    /// be replayed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty account or container, an
    /// endpoint that is not a URL, an account key that is not base64, a
    /// token credential over plain `http`, a block size of 0 or over
    /// 4,000 MiB, zero blocks in flight, a threshold below the block size,
    /// or a SAS validity under one minute.
    pub fn build(self) -> Result<AzureBackend> {
        if self.account.is_empty() || self.container.is_empty() {
            return Err(Error::invalid_argument(
                "the account and the container must be named",
            ));
        }
        if self.block_size == 0
            || self.block_size > MAX_BLOCK_SIZE
            || self.blocks_in_flight == 0
            || self.block_threshold < self.block_size
        {
            return Err(Error::invalid_argument(
                "staged blocks need a block size of 1 byte to 4000 MiB, at least one in flight, and a threshold of at least one block",
            ));
        }
        if self.single_put_in_memory > MAX_SINGLE_PUT {
            return Err(Error::invalid_argument(
                "one Put Blob carries at most 5000 MiB",
            ));
        }
        if self.sas_validity < Duration::from_secs(60) {
            return Err(Error::invalid_argument(
                "an account SAS must be valid for at least a minute",
            ));
        }
        let container_url = self.container_url()?;
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::invalid_argument(format!("HTTP client: {e}")))?;
        let mut client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http))),
            // Retries belong to storage-retry, which knows which bodies can
            // be sent twice.
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let mut token = None;
        let mut account_key = None;
        match &self.credential {
            Some(AzureCredential::AccountKey(key)) => {
                let key = AccountKey::new(&self.account, key)?;
                let policy: Arc<dyn Policy> = if self.account_sas_requests {
                    Arc::new(SasPolicy::signing(key.clone(), self.sas_validity))
                } else {
                    Arc::new(SharedKeyPolicy::new(key.clone()))
                };
                client_options.per_try_policies.push(policy);
                account_key = Some(key);
            }
            Some(AzureCredential::Sas(token)) => {
                client_options
                    .per_try_policies
                    .push(Arc::new(SasPolicy::fixed(token)?));
            }
            Some(AzureCredential::Token(credential)) => {
                if container_url.scheme() != "https" {
                    return Err(Error::invalid_argument(
                        "Entra ID credentials need an https endpoint",
                    ));
                }
                token = Some(credential.clone());
            }
            None => {}
        }
        AzureBackend::new(self, container_url, client_options, token, account_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_url_joins_the_endpoint_and_the_container() {
        let config = AzureConfig::new("acct", "box");
        assert_eq!(
            config.container_url().expect("url").as_str(),
            "https://acct.blob.core.windows.net/box"
        );
        let emulator = AzureConfig::emulator("http://127.0.0.1:10000/devstoreaccount1/", "box");
        assert_eq!(
            emulator.container_url().expect("url").as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/box"
        );
    }

    #[test]
    fn a_token_credential_over_http_is_refused() {
        #[derive(Debug)]
        struct Never;
        #[async_trait::async_trait]
        impl TokenCredential for Never {
            async fn get_token(
                &self,
                _scopes: &[&str],
                _options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
            ) -> azure_core::Result<azure_core::credentials::AccessToken> {
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    "never",
                ))
            }
        }
        let built = AzureConfig::new("acct", "box")
            .endpoint("http://127.0.0.1:1/acct")
            .token_credential(Arc::new(Never))
            .build();
        assert!(
            matches!(built, Err(Error::InvalidArgument { .. })),
            "{built:?}"
        );
    }

    #[test]
    fn a_block_size_over_4000_mib_is_refused() {
        let built = AzureConfig::emulator("http://127.0.0.1:1/devstoreaccount1", "box")
            .blocks(MAX_BLOCK_SIZE * 2, MAX_BLOCK_SIZE + 1, 1)
            .build();
        assert!(
            matches!(built, Err(Error::InvalidArgument { .. })),
            "{built:?}"
        );
    }
}
