//! `S3Config`: where the bucket is, how to authenticate, and how to upload.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_sdk_s3::config::{
    Region, RequestChecksumCalculation, ResponseChecksumValidation, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use storage_core::raw::url_options::{
    UrlForm, UrlOptions, bucket_host, path_prefix, without_query,
};
use storage_core::{Error, Result};

use crate::S3Backend;
use crate::encryption::S3Encryption;

/// Settings of an [`S3Backend`], validated by [`S3Config::build`].
///
/// ```no_run
/// use std::time::Duration;
/// use storage_s3::S3Config;
/// # async fn example() -> storage_core::Result<()> {
/// let store = S3Config::new("my-bucket")
///     .prefix("service-a/")
///     .region("eu-west-1")
///     .request_timeout(Duration::from_secs(30))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct S3Config {
    pub(crate) bucket: String,
    pub(crate) prefix: String,
    pub(crate) region: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) path_style: bool,
    pub(crate) credentials: Option<(String, String, Option<String>)>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) multipart_threshold: u64,
    pub(crate) part_size: u64,
    pub(crate) parts_in_flight: usize,
    pub(crate) public_base_url: Option<String>,
    pub(crate) conditional_put: bool,
    pub(crate) conditional_delete: bool,
    pub(crate) conditional_copy: bool,
    pub(crate) encryption: Option<S3Encryption>,
}

/// The options of [`S3Config::from_url`].
pub const URL_OPTIONS: [&str; 6] = [
    "region",
    "endpoint",
    "path_style",
    "access_key_id",
    "secret_access_key",
    "session_token",
];

/// Deserializes from [`UrlForm`] (`{"url": "s3://…", "options": {…}}`)
/// through [`S3Config::from_url`], so the environment fills in what the
/// form leaves out.
impl<'de> serde::Deserialize<'de> for S3Config {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let form = UrlForm::deserialize(deserializer)?;
        S3Config::from_url(&form.url, form.options).map_err(serde::de::Error::custom)
    }
}

/// Bodies of at least this many bytes (or of unknown length) are sent as a
/// multipart upload by default: 16 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Default part size: 8 MiB.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Smallest part S3 accepts (but for the last): 5 MiB.
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

impl S3Config {
    /// Settings for `bucket` with the defaults: the AWS region and
    /// credentials from the standard chain, virtual-hosted addressing,
    /// connect timeout 5 s, request timeout 60 s, multipart from 16 MiB in
    /// 8 MiB parts, 3 parts in flight.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: String::new(),
            region: None,
            endpoint: None,
            path_style: false,
            credentials: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            parts_in_flight: 3,
            public_base_url: None,
            conditional_put: true,
            conditional_delete: true,
            conditional_copy: true,
            encryption: None,
        }
    }

    /// Stores every key under this prefix (for example `"service-a/"`);
    /// listings strip it.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Settings for `bucket` from the environment, as the AWS tools read
    /// it: the region from `AWS_REGION` (or `AWS_DEFAULT_REGION`), the
    /// endpoint from `AWS_ENDPOINT_URL_S3` (or `AWS_ENDPOINT_URL`; neither
    /// when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is `true`), with
    /// path-style addressing when `AWS_S3_FORCE_PATH_STYLE` is `true` or
    /// `1` (not an AWS variable: the AWS CLI's `s3.addressing_style = path`
    /// has none; `object_store` reads this one), and the keys from
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and
    /// `AWS_SESSION_TOKEN`. What is not set falls to the SDK's default
    /// chain on the first request (profiles in `~/.aws`, web identity,
    /// container and instance credentials).
    pub fn from_env(bucket: impl Into<String>) -> Self {
        Self::from_vars(bucket, |name| {
            std::env::var(name).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// Settings from a URL, `s3://bucket/prefix?option=value&…`, and
    /// `options` (the same names, winning over the query): the bucket is
    /// the host; the path, percent-decoded, is the key prefix (a `/` is
    /// added if it does not end with one); the options are
    /// [`URL_OPTIONS`]: `region`, `endpoint` (an S3-compatible server),
    /// `path_style` (`true` or `false`), `access_key_id` with
    /// `secret_access_key` (and optionally `session_token`). What the URL
    /// does not set comes from [`S3Config::from_env`]. Query values are
    /// percent-decoded only (a `+` stays a `+`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the part that is wrong: a URL that
    /// does not parse or is not `s3://`, no bucket, an unknown option (with
    /// the known ones), a malformed boolean, half a key pair. Messages
    /// never show the query, which may hold secrets.
    pub fn from_url<I, K, V>(url: &str, options: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let shown = without_query(url);
        let parsed = url::Url::parse(url)
            .map_err(|e| Error::invalid_argument(format!("URL {shown:?} does not parse: {e}")))?;
        let bucket = bucket_host(parsed.scheme(), parsed.host_str(), "s3", shown)?;
        let extra = options.into_iter().map(|(k, v)| (k.into(), v.into()));
        let mut options = UrlOptions::new(parsed.query(), shown, extra)?;
        let mut config = Self::from_env(bucket).prefix(path_prefix(parsed.path(), shown)?);
        if let Some(region) = options.take("region") {
            config = config.region(region);
        }
        if let Some(endpoint) = options.take("endpoint") {
            config = config.endpoint(endpoint);
        }
        if let Some(path_style) = options.take_bool("path_style")? {
            config = config.path_style(path_style);
        }
        match (
            options.take("access_key_id"),
            options.take("secret_access_key"),
            options.take("session_token"),
        ) {
            (Some(id), Some(secret), token) => {
                config = config.credentials(id, secret, token);
            }
            (None, None, None) => {}
            _ => {
                return Err(Error::invalid_argument(format!(
                    "{shown}: `access_key_id` and `secret_access_key` go together, and `session_token` needs both"
                )));
            }
        }
        options.finish(&URL_OPTIONS)?;
        Ok(config)
    }

    /// [`S3Config::from_env`] with the variables read by `var`.
    fn from_vars(bucket: impl Into<String>, var: impl Fn(&str) -> Option<String>) -> Self {
        let mut config = Self::new(bucket);
        if let Some(region) = var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")) {
            config = config.region(region);
        }
        let ignore_endpoints = var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        if let (Some(endpoint), false) = (endpoint, ignore_endpoints) {
            config = config.endpoint(endpoint);
        }
        if var("AWS_S3_FORCE_PATH_STYLE")
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
        {
            config = config.path_style(true);
        }
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            config = config.credentials(id, secret, var("AWS_SESSION_TOKEN"));
        }
        config
    }

    /// The region, for example `us-east-1`. Set it (and credentials) for
    /// S3-compatible servers so nothing probes the cloud metadata address.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// The endpoint URL of an S3-compatible server, for example
    /// `http://127.0.0.1:9000`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible
    /// servers need; virtual-hosted (`bucket.endpoint/key`) otherwise.
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }

    /// Explicit credentials instead of the standard AWS chain.
    pub fn credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        self.credentials = Some((
            access_key_id.into(),
            secret_access_key.into(),
            session_token,
        ));
        self
    }

    /// Time allowed to connect.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time allowed for one request, from sending to the last byte of the
    /// response headers.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Multipart upload from `threshold` bytes, in parts of `part_size`
    /// bytes (at least 5 MiB), `in_flight` parts at a time. Memory held by
    /// an upload is about `part_size × (in_flight + 2)`: the parts being sent,
    /// the next, and the one being read.
    pub fn multipart(mut self, threshold: u64, part_size: u64, in_flight: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size;
        self.parts_in_flight = in_flight;
        self
    }

    /// Whether the server honours `If-None-Match: *` and `If-Match` on
    /// PutObject and CompleteMultipartUpload (default: yes, as AWS S3 does
    /// since 2024; "Add preconditions to S3 operations with conditional
    /// requests"). Set `false` for an S3-compatible server that ignores
    /// them: [`Capabilities::conditional_put`](storage_core::Capabilities)
    /// is then false and a conditional put fails with
    /// [`Error::Unsupported`] before any request, instead of silently
    /// overwriting (object_store's `S3ConditionalPut::Disabled`).
    pub fn conditional_put(mut self, supported: bool) -> Self {
        self.conditional_put = supported;
        self
    }

    /// Whether the server honours `If-Match` on DeleteObject (default:
    /// yes, as AWS S3 does). Set `false` for a server that ignores it:
    /// `Capabilities::conditional_delete` is then false and a conditional
    /// delete fails with [`Error::Unsupported`] before any request.
    pub fn conditional_delete(mut self, supported: bool) -> Self {
        self.conditional_delete = supported;
        self
    }

    /// Whether the server honours `If-None-Match: *` and `If-Match` on the
    /// destination of CopyObject (default: yes). Set `false` for a server
    /// that ignores them: a conditional copy then reads the source and
    /// writes it with a conditional put (the bytes pass through this
    /// client), so the precondition still holds where conditional puts do.
    pub fn conditional_copy(mut self, supported: bool) -> Self {
        self.conditional_copy = supported;
        self
    }

    /// Server-side encryption of every object this backend writes (SSE-S3,
    /// SSE-KMS) or writes and reads (SSE-C), sent on every request that
    /// needs it; see the table in [`S3Encryption`]'s module. Without it the
    /// bucket's default encryption applies. Presigned URLs carry none of
    /// these headers: a presigned PUT gets the bucket's default, and an
    /// SSE-C object is read only by a request that sends its key.
    pub fn server_side_encryption(mut self, encryption: S3Encryption) -> Self {
        self.encryption = Some(encryption);
        self
    }

    /// The public base URL of the bucket (for example a CDN), so that
    /// [`S3Backend::public_url`] can name objects.
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }

    /// Builds the backend: checks the settings, without I/O. The shared AWS
    /// configuration (the region and credentials chains, the profile) is
    /// loaded by the first request, so this is usable outside an async
    /// context; credentials that cannot be found then fail that request
    /// (the SDK's error, mapped as in [`crate::error`]). The SDK's own
    /// retries are off: wrap the backend in `storage-retry`'s `Retry` for
    /// backoff that knows which bodies can be replayed.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty bucket, a part size under
    /// 5 MiB, zero parts in flight, or a threshold below the part size.
    pub fn build(self) -> Result<S3Backend> {
        if self.bucket.is_empty() {
            return Err(Error::invalid_argument("the bucket name is empty"));
        }
        if self.part_size < MIN_PART_SIZE
            || self.parts_in_flight == 0
            || self.multipart_threshold < self.part_size
        {
            return Err(Error::invalid_argument(
                "multipart needs parts of at least 5 MiB, at least one in flight, and a threshold of at least one part",
            ));
        }
        Ok(S3Backend::new(self))
    }

    /// The SDK client of these settings: the shared AWS configuration
    /// (`aws_config::defaults`: region, credentials chain, profile and
    /// environment) loaded, then this crate's checksum, timeout and retry
    /// settings (see [`S3Config::build`]).
    pub(crate) async fn make_client(&self) -> aws_sdk_s3::Client {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret, token)) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                token.clone(),
                None,
                "storage-s3",
            ));
        }
        let shared = loader.load().await;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.request_timeout)
            .build();
        let mut builder = aws_sdk_s3::config::Builder::from(&shared)
            // This crate sends and checks SHA-256 itself: no SDK-side CRCs.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .force_path_style(self.path_style)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::disabled());
        if let Some(endpoint) = &self.endpoint {
            builder = builder.endpoint_url(endpoint.clone());
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> S3Config {
        S3Config::from_vars("b", |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn the_s3_endpoint_variable_wins_over_the_general_one() {
        let config = from(&[
            ("AWS_ENDPOINT_URL", "http://general:1"),
            ("AWS_ENDPOINT_URL_S3", "http://s3:2"),
        ]);
        assert_eq!(config.endpoint.as_deref(), Some("http://s3:2"));
    }

    #[test]
    fn configured_endpoints_can_be_ignored() {
        let ignored = from(&[
            ("AWS_ENDPOINT_URL", "http://general:1"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ]);
        assert_eq!(ignored.endpoint, None);
    }

    #[test]
    fn the_region_variable_wins_over_the_default_region() {
        assert_eq!(
            from(&[("AWS_DEFAULT_REGION", "eu-west-3")])
                .region
                .as_deref(),
            Some("eu-west-3")
        );
        let both = from(&[
            ("AWS_DEFAULT_REGION", "eu-west-3"),
            ("AWS_REGION", "us-east-2"),
        ]);
        assert_eq!(both.region.as_deref(), Some("us-east-2"));
    }

    #[test]
    fn half_a_key_pair_in_the_environment_is_left_to_the_sdk_chain() {
        assert!(from(&[("AWS_ACCESS_KEY_ID", "AKIA")]).credentials.is_none());
        let pair = from(&[
            ("AWS_ACCESS_KEY_ID", "AKIA"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
        ]);
        assert_eq!(pair.credentials, Some(("AKIA".into(), "s".into(), None)));
    }
}
