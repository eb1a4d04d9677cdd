//! `open(url)`: a backend and its layers from a URL and options.

use std::sync::Arc;

use storage_core::{Backend, Error, Prefixed, Result};

use storage_core::raw::url_options::{UrlForm, UrlOptions as Options};

/// The options every scheme takes: the layers.
const LAYER_OPTIONS: [&str; 5] = [
    "prefix",
    "retry",
    "keyring_env",
    "keyring_file",
    "instrument",
];

/// Opens the backend `url` names, with the layers its query asks for; see
/// [`open_with`] for the schemes and options.
///
/// ```
/// # async fn example() -> storage_core::Result<()> {
/// use storage::BackendExt;
/// let store = storage::open("memory://").await?;
/// store.put_bytes("greeting.txt", "hello").await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`open_with`].
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    open_with(url, std::iter::empty::<(String, String)>()).await
}

/// Opens the backend `url` names, with options from its query and from
/// `options` (which win over the query; the names are the same).
///
/// | URL | backend | feature |
/// |---|---|---|
/// | `memory://` | a new, empty `MemoryBackend` per call | `memory` (default) |
/// | `file:///abs/path` | `FsBackend` rooted there (created if missing) | `fs` |
/// | `logstore:///abs/path` | `LogStore` in that directory | `logstore` |
/// | `s3://bucket/prefix` | `S3Backend` | `s3` |
/// | `gs://bucket/prefix` | `GcsBackend` | `gcs` |
/// | `az://account/container/prefix`, `https://account.blob.core.windows.net/container/prefix` | `AzureBackend` | `azure` |
///
/// A cloud URL's path is the backend's own key prefix, percent-decoded; a
/// `/` is added if it does not end with one, so `s3://b/logs` holds
/// `logs/a`, never `logsa`. Query values are percent-decoded only (a `+`
/// stays a `+`): percent-encode `&`, `=`, `%` and `#` in secrets, or pass
/// secrets to `open_with` rather than in the URL. Error messages never show
/// the query. Options that exclude each other (`access_key` and
/// `sas_token`, `keyring_env` and `keyring_file`) are refused together
/// whether they come from the query or from `options`.
///
/// Options of every scheme, applied in this order from the backend out:
/// - `retry=true`: `storage_retry::Retry` with its default policy
///   (feature `retry`);
/// - `keyring_env=VAR` or `keyring_file=PATH`: `storage_crypto::Encrypted`
///   with the keyring in that variable or file (`Keyring::from_text`
///   format) and every key of context kind `state` (feature `crypto`);
///   encryption sits outside retry, so a retried write re-sends the same
///   ciphertext;
/// - `prefix=tenant/`: a [`Prefixed`] view, outside encryption: the
///   associated data binds the key with this prefix, but not the URL
///   path's prefix (the backend's own, below encryption). So
///   `s3://b/?prefix=logs/` and `s3://b/logs/` store `k` at the same
///   place, but ciphertext written through one reads through the other
///   only as [`Error::Integrity`]: keep to one form;
/// - `instrument=true`: `Instrumented` (feature
///   `instrument`), outermost, so its spans time what the caller waits for.
///
/// Options of one scheme:
/// - `file` and `logstore`: `presign_base=URL` with `presign_secret=TEXT`
///   (at least 32 bytes, its UTF-8 bytes are the HMAC key: use a random
///   string of 64 hex digits or more, and pass it to `open_with`, not in
///   the URL): presigned URLs under that base, signed by a
///   [`LocalPresigner`](storage_core::presign::LocalPresigner). The HTTP
///   server behind the base verifies requests with
///   `LocalPresigner::new(base, secret)` and serves the keys it returns
///   from this store. Not with `prefix` (a presigned URL names the store's
///   own key);
/// - `s3`: `region`, `endpoint` (an S3-compatible server), `path_style`
///   (`true` for servers without virtual-hosted buckets),
///   `access_key_id` with `secret_access_key` (and optionally
///   `session_token`). What the URL does not set comes from the
///   environment (`S3Config::from_env`: `AWS_REGION`,
///   `AWS_ENDPOINT_URL_S3`, `AWS_S3_FORCE_PATH_STYLE`, the `AWS_*` keys),
///   then from the AWS default chain (profiles, web identity, instance
///   metadata).
/// - `gs`: `endpoint`, `anonymous=true`, `service_account_path`,
///   `emulator=URL` (fake-gcs-server: that endpoint, anonymous, no
///   upload-status queries). Otherwise `GcsConfig::from_env`:
///   `STORAGE_EMULATOR_HOST`, `GOOGLE_APPLICATION_CREDENTIALS`, then
///   Application Default Credentials.
/// - `az`: `access_key`, `sas_token`, `endpoint` (for example
///   `http://127.0.0.1:10000/devstoreaccount1`), `use_emulator=true`
///   (Azurite's well-known account key, and its endpoint
///   `http://127.0.0.1:10000/{account}` unless one is given). Without a key
///   or token, the variables `AZURE_STORAGE_KEY` and
///   `AZURE_STORAGE_SAS_TOKEN` are read. An `https://` URL of an account
///   (the account is the host's first label) may carry a SAS as its whole
///   query (`?sv=…&sig=…`, as the portal copies it): a query holding `sig`
///   is taken as the SAS token, not as options.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the part that is wrong: a URL that
/// does not parse, an unknown scheme, a scheme whose feature is off, a
/// missing bucket, container or path, an unknown option (with the known
/// ones), a malformed value; the errors of the backend's constructor
/// (opening a `LogStore` locks its directory: [`Error::Locked`]).
pub async fn open_with<I, K, V>(url: &str, options: I) -> Result<Arc<dyn Backend>>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<String>,
    V: Into<String>,
{
    // The query may hold secrets: messages show the URL without it.
    let shown = storage_core::raw::url_options::without_query(url);
    let mut parsed = url::Url::parse(url)
        .map_err(|e| Error::invalid_argument(format!("URL {shown:?} does not parse: {e}")))?;
    // An Azure SAS URL as the portal copies it: the query is the token.
    let sas = crate::schemes::sas_query(&parsed);
    if sas.is_some() {
        parsed.set_query(None);
    }
    let mut options = Options::new(
        parsed.query(),
        shown,
        options.into_iter().map(|(k, v)| (k.into(), v.into())),
    )?;
    if let Some(sas) = sas {
        options.set_if_absent("sas_token", sas);
    }
    // Every layer is checked (and its keyring loaded) before the backend
    // is opened: a bad option leaves no directory made and no store locked.
    let layers = Layers::take(&mut options)?;
    if layers.prefix.is_some() && options.remaining().any(|(name, _)| name == "presign_base") {
        return Err(Error::invalid_argument(format!(
            "options `prefix` and `presign_base` of {} exclude each other: a presigned URL names the store's own key, which the server behind presign_base serves from the store itself, not through the prefix view (put the prefix in the store's path instead)",
            options.url()
        )));
    }
    let layers = layers.prepare()?;
    let backend = crate::schemes::backend(&parsed, &mut options).await?;
    layers.apply(backend)
}

/// Opens the store a deserialized [`StoreConfig`](crate::StoreConfig)
/// names (`{"url": "…", "options": {…}}`), as [`open_with`] its URL and
/// options.
///
/// # Errors
/// As [`open_with`].
pub async fn open_config(config: &UrlForm) -> Result<Arc<dyn Backend>> {
    open_with(&config.url, config.options.clone()).await
}

/// The layer options, taken before the scheme's.
#[derive(Debug)]
struct Layers {
    prefix: Option<String>,
    retry: bool,
    keyring: Option<KeyringSource>,
    instrument: bool,
}

/// Where the `Encrypted` layer's keyring comes from.
#[derive(Debug)]
enum KeyringSource {
    Env(String),
    File(String),
}

impl Layers {
    fn take(options: &mut Options) -> Result<Self> {
        let keyring = match (options.take("keyring_env"), options.take("keyring_file")) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid_argument(format!(
                    "options `keyring_env` and `keyring_file` of {} exclude each other (wherever each is given)",
                    options.url()
                )));
            }
            (Some(var), None) => Some(KeyringSource::Env(var)),
            (None, Some(path)) => Some(KeyringSource::File(path)),
            (None, None) => None,
        };
        Ok(Layers {
            prefix: options.take("prefix"),
            retry: options.take_bool("retry")?.unwrap_or(false),
            keyring,
            instrument: options.take_bool("instrument")?.unwrap_or(false),
        })
    }

    /// Checks every layer and loads the keyring, before any I/O on the
    /// store.
    fn prepare(self) -> Result<Prepared> {
        if self.retry && !cfg!(feature = "retry") {
            return Err(feature_off("option `retry`", "retry"));
        }
        if self.instrument && !cfg!(feature = "instrument") {
            return Err(feature_off("option `instrument`", "instrument"));
        }
        if let Some(prefix) = &self.prefix {
            storage_core::validate_namespace_prefix(prefix)?;
        }
        Ok(Prepared {
            prefix: self.prefix,
            retry: self.retry,
            keyring: self.keyring.map(load_keyring).transpose()?,
            instrument: self.instrument,
        })
    }
}

/// The layers, checked and ready.
struct Prepared {
    prefix: Option<String>,
    retry: bool,
    keyring: Option<Keyring>,
    instrument: bool,
}

impl Prepared {
    fn apply(self, backend: Arc<dyn Backend>) -> Result<Arc<dyn Backend>> {
        let mut backend = backend;
        if self.retry {
            backend = retry(backend);
        }
        if let Some(keyring) = self.keyring {
            backend = encrypt(backend, keyring);
        }
        if let Some(prefix) = self.prefix {
            backend = Arc::new(Prefixed::new(backend, prefix)?);
        }
        if self.instrument {
            backend = instrument(backend);
        }
        Ok(backend)
    }
}

#[cfg(feature = "retry")]
fn retry(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(storage_retry::Retry::from_arc(
        backend,
        storage_retry::RetryPolicy::default(),
    ))
}

/// Unreachable: [`Layers::prepare`] refuses `retry` without the feature.
#[cfg(not(feature = "retry"))]
fn retry(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    backend
}

#[cfg(feature = "crypto")]
type Keyring = storage_crypto::Keyring;

#[cfg(not(feature = "crypto"))]
type Keyring = std::convert::Infallible;

#[cfg(feature = "crypto")]
fn load_keyring(source: KeyringSource) -> Result<Keyring> {
    match source {
        KeyringSource::Env(var) => storage_crypto::Keyring::from_env(&var),
        KeyringSource::File(path) => storage_crypto::Keyring::from_file(path),
    }
}

#[cfg(not(feature = "crypto"))]
fn load_keyring(source: KeyringSource) -> Result<Keyring> {
    let what = match source {
        KeyringSource::Env(var) => format!("option `keyring_env={var}`"),
        KeyringSource::File(path) => format!("option `keyring_file={path}`"),
    };
    Err(feature_off(&what, "crypto"))
}

#[cfg(feature = "crypto")]
fn encrypt(backend: Arc<dyn Backend>, keyring: Keyring) -> Arc<dyn Backend> {
    Arc::new(storage_crypto::Encrypted::new(
        backend,
        keyring,
        storage_crypto::all_state(),
    ))
}

#[cfg(not(feature = "crypto"))]
fn encrypt(_: Arc<dyn Backend>, keyring: Keyring) -> Arc<dyn Backend> {
    match keyring {}
}

#[cfg(feature = "instrument")]
fn instrument(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(crate::Instrumented::new(backend))
}

/// Unreachable: [`Layers::prepare`] refuses `instrument` without the
/// feature.
#[cfg(not(feature = "instrument"))]
fn instrument(backend: Arc<dyn Backend>) -> Arc<dyn Backend> {
    backend
}

/// The error for `what` when the crate was built without `feature`.
pub(crate) fn feature_off(what: &str, feature: &str) -> Error {
    Error::invalid_argument(format!(
        "{what} needs the `{feature}` feature of the `storage` crate"
    ))
}

/// The options known for a scheme: its own and the layers'.
pub(crate) fn known<'a>(own: &[&'a str]) -> Vec<&'a str> {
    own.iter().copied().chain(LAYER_OPTIONS).collect()
}
