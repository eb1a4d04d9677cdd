//! `GcsConfig`: where the bucket is, how to authenticate, and how to upload.

use std::path::PathBuf;
use std::time::Duration;

use gcloud_storage::client::google_cloud_auth::credentials::CredentialsFile;
use gcloud_storage::client::{Client, ClientConfig};
use storage_core::raw::url_options::{
    UrlForm, UrlOptions, bucket_host, path_prefix, without_query,
};
use storage_core::{Error, Result};

use crate::GcsBackend;
use crate::backend::Auth;
use crate::encryption::GcsEncryption;

/// The environment variable naming an emulator's host, honoured by
/// [`GcsConfig::new`] as Google's client libraries honour it.
pub const EMULATOR_HOST_VARIABLE: &str = "STORAGE_EMULATOR_HOST";

/// The public Cloud Storage endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://storage.googleapis.com";
/// Bodies of at least this many bytes (or of unknown length, once they
/// pass one chunk) are sent as resumable uploads by default: 16 MiB.
pub const DEFAULT_RESUMABLE_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Default resumable upload chunk: 8 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
/// Resumable upload chunks are multiples of this: 256 KiB (GCS: "Perform
/// resumable uploads").
pub const CHUNK_GRANULARITY: u64 = 256 * 1024;

/// The options of [`GcsConfig::from_url`].
pub const URL_OPTIONS: [&str; 4] = ["emulator", "endpoint", "anonymous", "service_account_path"];

/// Deserializes from [`UrlForm`] (`{"url": "gs://…", "options": {…}}`)
/// through [`GcsConfig::from_url`], so the environment fills in what the
/// form leaves out.
impl<'de> serde::Deserialize<'de> for GcsConfig {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let form = UrlForm::deserialize(deserializer)?;
        GcsConfig::from_url(&form.url, form.options).map_err(serde::de::Error::custom)
    }
}

/// How requests are authorized.
#[derive(Debug, Clone)]
pub enum GcsCredentials {
    /// No credentials: public buckets and emulators.
    Anonymous,
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// the gcloud user credentials, or the metadata server.
    ApplicationDefault,
    /// A service account key file (JSON). Enables V4 signed URLs.
    ServiceAccountFile(PathBuf),
    /// A service account key (the JSON text). Enables V4 signed URLs.
    ServiceAccountJson(String),
}

/// Settings of a [`GcsBackend`], validated by [`GcsConfig::build`].
///
/// ```no_run
/// use storage_gcs::GcsConfig;
/// # async fn example() -> storage_core::Result<()> {
/// let store = GcsConfig::new("my-bucket")
///     .prefix("service-a/")
///     .application_default_credentials()
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GcsConfig {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) endpoint: String,
    pub(crate) credentials: GcsCredentials,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) resumable_threshold: u64,
    pub(crate) chunk_size: u64,
    pub(crate) status_queries: bool,
    pub(crate) encryption: Option<GcsEncryption>,
}

impl GcsConfig {
    /// Settings for `bucket` with the defaults: the public endpoint,
    /// Application Default Credentials, connect timeout 5 s, request timeout
    /// 60 s, resumable uploads from 16 MiB in 8 MiB chunks.
    ///
    /// When the environment variable `STORAGE_EMULATOR_HOST` is set (for
    /// example `localhost:4443`, or a URL with its scheme), the endpoint is
    /// that host, over `http` unless a scheme is given, without credentials,
    /// as Google's own client libraries do; calls made after `new` (such as
    /// [`GcsConfig::endpoint`]) still override it.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self::with_emulator_host(bucket, std::env::var(EMULATOR_HOST_VARIABLE).ok())
    }

    /// Settings for `bucket` from the environment, as Google's client
    /// libraries read it: `STORAGE_EMULATOR_HOST` (an emulator, without
    /// credentials), else `GOOGLE_APPLICATION_CREDENTIALS` (a service
    /// account key file, which also enables signed URLs), else the rest of
    /// Application Default Credentials (gcloud's user credentials, the
    /// metadata server), resolved by the first request.
    pub fn from_env(bucket: impl Into<String>) -> Self {
        let config = Self::new(bucket);
        let key_file =
            std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|path| !path.is_empty());
        match (&config.credentials, key_file) {
            (GcsCredentials::ApplicationDefault, Some(path)) => {
                config.service_account_file(PathBuf::from(path))
            }
            _ => config,
        }
    }

    /// Settings from a URL, `gs://bucket/prefix?option=value&…`, and
    /// `options` (the same names, winning over the query): the bucket is
    /// the host; the path, percent-decoded, is the key prefix (a `/` is
    /// added if it does not end with one); the options are
    /// [`URL_OPTIONS`]: `emulator` (an emulator's endpoint, as
    /// [`GcsConfig::emulator`]), `endpoint`, `anonymous` (`true`: no
    /// credentials), `service_account_path` (a key file). What the URL does
    /// not set comes from [`GcsConfig::from_env`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the part that is wrong: a URL that
    /// does not parse or is not `gs://`, no bucket, an unknown option (with
    /// the known ones), a malformed boolean. Messages never show the query.
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let shown = without_query(url);
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid_argument(format!("URL {shown:?} does not parse: {e}")))?;
        let bucket = bucket_host(parsed.scheme(), parsed.host_str(), "gs", shown)?;
        let extra = options.into_iter().map(|(k, v)| (k.into(), v.into()));
        let mut options = UrlOptions::new(parsed.query(), shown, extra)?;
        let mut config = match options.take("emulator") {
            Some(endpoint) => Self::emulator(endpoint, bucket),
            None => Self::from_env(bucket),
        };
        config = config.prefix(path_prefix(parsed.path(), shown)?);
        if let Some(endpoint) = options.take("endpoint") {
            config = config.endpoint(endpoint);
        }
        if options.take_bool("anonymous")? == Some(true) {
            config = config.anonymous();
        }
        if let Some(path) = options.take("service_account_path") {
            config = config.service_account_file(path);
        }
        options.finish(&URL_OPTIONS)?;
        Ok(config)
    }

    /// [`GcsConfig::new`] with the value of `STORAGE_EMULATOR_HOST` given.
    fn with_emulator_host(bucket: impl Into<String>, host: Option<String>) -> Self {
        let config = Self::defaults(bucket);
        match host.as_deref().map(str::trim) {
            Some(host) if !host.is_empty() => {
                let url = match host.contains("://") {
                    true => host.to_owned(),
                    false => format!("http://{host}"),
                };
                config
                    .endpoint(url)
                    .anonymous()
                    .upload_status_queries(false)
            }
            _ => config,
        }
    }

    fn defaults(bucket: impl Into<String>) -> Self {
        GcsConfig {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            credentials: GcsCredentials::ApplicationDefault,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            resumable_threshold: DEFAULT_RESUMABLE_THRESHOLD,
            chunk_size: DEFAULT_CHUNK_SIZE,
            status_queries: true,
            encryption: None,
        }
    }

    /// Settings for `bucket` on an emulator (fake-gcs-server) at
    /// `endpoint`, without credentials and without upload-status queries
    /// (see [`GcsConfig::upload_status_queries`]).
    pub fn emulator(endpoint: impl Into<String>, bucket: impl Into<String>) -> Self {
        GcsConfig::defaults(bucket)
            .endpoint(endpoint)
            .anonymous()
            .upload_status_queries(false)
    }

    /// Server-side encryption of the objects this backend writes: a Cloud
    /// KMS key (CMEK) or a customer-supplied key (CSEK, also sent on every
    /// read), on every request that needs it, copies going through this
    /// client; see the table in [`GcsEncryption`]'s module. Without it the
    /// bucket's default applies.
    pub fn server_side_encryption(mut self, encryption: GcsEncryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// Whether a resumable upload whose chunk failed with an unknown outcome
    /// (a lost answer, a 5xx, a timeout) asks the session how many bytes it
    /// stored before sending more, and sends only the rest: GCS's
    /// documented recovery ("Perform resumable uploads", resuming an
    /// interrupted upload: `Content-Range: bytes */SIZE`, answered 308 with
    /// the persisted `Range`). Default on; off for [`GcsConfig::emulator`]
    /// and `STORAGE_EMULATOR_HOST`, because fake-gcs-server commits the
    /// partial object when asked. Off, a failed chunk is sent again whole
    /// at the same offset.
    pub fn upload_status_queries(mut self, enabled: bool) -> Self {
        self.status_queries = enabled;
        self
    }

    /// Stores every key under this prefix (for example `"service-a/"`);
    /// listings strip it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The endpoint, for example `http://127.0.0.1:4443` for an emulator
    /// (without `/storage/v1`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// No credentials (emulators, public buckets).
    pub fn anonymous(mut self) -> Self {
        self.credentials = GcsCredentials::Anonymous;
        self
    }

    /// Application Default Credentials (the default).
    pub fn application_default_credentials(mut self) -> Self {
        self.credentials = GcsCredentials::ApplicationDefault;
        self
    }

    /// A service account key file (JSON).
    pub fn service_account_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.credentials = GcsCredentials::ServiceAccountFile(path.into());
        self
    }

    /// A service account key given as its JSON text.
    pub fn service_account_json(mut self, json: impl Into<String>) -> Self {
        self.credentials = GcsCredentials::ServiceAccountJson(json.into());
        self
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

    /// Resumable uploads from `threshold` bytes, in chunks of `chunk_size`
    /// bytes (a positive multiple of 256 KiB). Memory held by an upload is
    /// about three chunks (the one being sent, the next, and the one being
    /// read).
    pub fn resumable(mut self, threshold: u64, chunk_size: u64) -> Self {
        self.resumable_threshold = threshold;
        self.chunk_size = chunk_size;
        self
    }

    /// Builds the backend: checks the settings and makes the HTTP client.
    /// The credentials are loaded (Application Default Credentials looked
    /// up, a token source made) by the first request that needs them; a
    /// failure then is that request's [`Error::Unauthenticated`], and the
    /// next request tries again. Only a service account key with a private
    /// key signs URLs ([`storage_core::Capabilities::presigned_urls`]), so
    /// a configured key file is read here to know it, the one I/O of
    /// `build`; Application Default Credentials do not presign, even where
    /// the metadata server could sign through IAM (configure the key).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty bucket, a chunk size that is
    /// not a positive multiple of 256 KiB or a threshold below it, or an
    /// HTTP client that cannot be made.
    pub fn build(self) -> Result<GcsBackend> {
        if self.bucket.is_empty() {
            return Err(Error::invalid_argument("the bucket name is empty"));
        }
        if self.chunk_size == 0
            || !self.chunk_size.is_multiple_of(CHUNK_GRANULARITY)
            || self.resumable_threshold < self.chunk_size
        {
            return Err(Error::invalid_argument(
                "resumable uploads need chunks of a positive multiple of 256 KiB and a threshold of at least one chunk",
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.request_timeout)
            .build()
            .map_err(|e| Error::invalid_argument(format!("HTTP client: {e}")))?;
        let signs = self.holds_signing_key();
        Ok(GcsBackend::new(self, http, signs))
    }

    /// Whether the credentials are a service account key with a private key
    /// and a client email, the only credentials that sign URLs here: the
    /// JSON text, or the key file read now (a file that cannot be read
    /// signs nothing; loading it for requests fails later, as
    /// [`Error::Unauthenticated`]).
    fn holds_signing_key(&self) -> bool {
        let has_key = |text: &str| {
            serde_json::from_str::<serde_json::Value>(text).is_ok_and(|key| {
                key["private_key"].as_str().is_some_and(|k| !k.is_empty())
                    && key["client_email"].as_str().is_some()
            })
        };
        match &self.credentials {
            GcsCredentials::ServiceAccountJson(json) => has_key(json),
            GcsCredentials::ServiceAccountFile(path) => {
                std::fs::read_to_string(path).is_ok_and(|text| has_key(&text))
            }
            GcsCredentials::Anonymous | GcsCredentials::ApplicationDefault => false,
        }
    }

    /// Loads the credentials and makes the SDK client over `http` (see
    /// [`GcsConfig::build`]).
    ///
    /// # Errors
    /// [`Error::Unauthenticated`] when the credentials cannot be loaded.
    pub(crate) async fn resolve(&self, http: &reqwest::Client) -> Result<Auth> {
        let base = ClientConfig {
            http: Some(reqwest_middleware::ClientBuilder::new(http.clone()).build()),
            storage_endpoint: self.endpoint.clone(),
            ..ClientConfig::default()
        };
        let unauthenticated = |e: &dyn std::fmt::Display| Error::Unauthenticated {
            message: format!("Google Cloud credentials: {e}"),
        };
        let config = match &self.credentials {
            GcsCredentials::Anonymous => base.anonymous(),
            GcsCredentials::ApplicationDefault => {
                base.with_auth().await.map_err(|e| unauthenticated(&e))?
            }
            GcsCredentials::ServiceAccountFile(path) => {
                let file = CredentialsFile::new_from_file(path.display().to_string())
                    .await
                    .map_err(|e| unauthenticated(&e))?;
                base.with_credentials(file)
                    .await
                    .map_err(|e| unauthenticated(&e))?
            }
            GcsCredentials::ServiceAccountJson(json) => {
                let file = CredentialsFile::new_from_str(json)
                    .await
                    .map_err(|e| unauthenticated(&e))?;
                base.with_credentials(file)
                    .await
                    .map_err(|e| unauthenticated(&e))?
            }
        };
        let token = config
            .token_source_provider
            .as_ref()
            .map(|provider| provider.token_source());
        let can_sign =
            config.default_sign_by.is_some() && config.default_google_access_id.is_some();
        Ok(Auth {
            client: Client::new(config),
            token,
            can_sign,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_must_be_multiples_of_256_kib() {
        let built = GcsConfig::emulator("http://127.0.0.1:1", "b")
            .resumable(16 << 20, 300 * 1024)
            .build();
        assert!(
            matches!(built, Err(Error::InvalidArgument { .. })),
            "{:?}",
            built.map(|_| ())
        );
    }

    #[test]
    fn storage_emulator_host_sets_an_anonymous_http_endpoint() {
        let config = GcsConfig::with_emulator_host("b", Some("localhost:4443".into()));
        assert_eq!(config.endpoint, "http://localhost:4443");
        assert!(matches!(config.credentials, GcsCredentials::Anonymous));
        let with_scheme = GcsConfig::with_emulator_host("b", Some("https://gcs.test/".into()));
        assert_eq!(with_scheme.endpoint, "https://gcs.test");
        let unset = GcsConfig::with_emulator_host("b", None);
        assert_eq!(unset.endpoint, DEFAULT_ENDPOINT);
        assert!(matches!(
            unset.credentials,
            GcsCredentials::ApplicationDefault
        ));
    }

    #[test]
    fn only_a_key_with_a_private_key_and_an_email_signs() {
        let signs = |json: &str| {
            GcsConfig::new("b")
                .service_account_json(json)
                .holds_signing_key()
        };
        assert!(signs(
            r#"{"type":"service_account","client_email":"a@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----"}"#
        ));
        assert!(!signs(
            r#"{"type":"authorized_user","client_id":"c","refresh_token":"r"}"#
        ));
        assert!(!signs("not json"));
        let missing = GcsConfig::new("b").service_account_file("/nonexistent/key.json");
        assert!(!missing.holds_signing_key());
        assert!(!GcsConfig::new("b").anonymous().holds_signing_key());
    }

    #[test]
    fn endpoints_lose_their_trailing_slash() {
        assert_eq!(
            GcsConfig::emulator("http://127.0.0.1:1/", "b").endpoint,
            "http://127.0.0.1:1"
        );
    }
}
