//! One function per URL scheme, each behind its backend's feature.

use std::sync::Arc;

use storage_core::{Backend, Error, Result};
use url::Url;

#[allow(unused_imports, reason = "used by whichever backend features are off")]
use crate::open::feature_off;
use crate::open::known;
use crate::options::Options;

/// The schemes [`crate::open`] knows, whatever the features.
pub const SCHEMES: [&str; 7] = ["memory", "file", "logstore", "s3", "gs", "az", "https"];

/// The backend `url` names, taking its scheme's options.
pub(crate) async fn backend(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    match url.scheme() {
        "memory" => memory(url, options),
        "file" => fs(url, options),
        "logstore" => logstore(url, options).await,
        "s3" => s3(url, options).await,
        "gs" => gcs(url, options).await,
        "az" | "azure" => azure(url, options),
        "https" | "http" if is_azure_host(url) => azure(url, options),
        "https" | "http" => Err(Error::invalid_argument(format!(
            "{}: an https:// URL is understood only for Azure accounts (*.blob.core.windows.net); use s3:// with `endpoint` for other servers",
            options.url()
        ))),
        other => Err(Error::invalid_argument(format!(
            "unknown scheme `{other}` in {} (known: {})",
            options.url(),
            SCHEMES.join(", ")
        ))),
    }
}

/// The query of an Azure `https://` URL that is a SAS token (it holds a
/// `sig` parameter), as given.
pub(crate) fn sas_query(url: &Url) -> Option<String> {
    let query = url.query()?;
    let is_sas = query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("sig"));
    (matches!(url.scheme(), "https" | "http") && is_azure_host(url) && is_sas)
        .then(|| query.to_owned())
}

/// `https://{account}.blob.core.windows.net/...`.
fn is_azure_host(url: &Url) -> bool {
    url.host_str()
        .is_some_and(|host| host.ends_with(".blob.core.windows.net"))
}

/// Takes what is left of `options` for a scheme with `own` options.
fn finish(options: &Options, own: &[&str]) -> Result<()> {
    options.finish(&known(own))
}

/// A URL's path without its leading `/`, percent-decoded, as a key prefix
/// ending with `/` (empty stays empty).
///
/// # Errors
/// [`Error::InvalidArgument`] when the decoded path is not UTF-8.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn path_prefix(path: &str, options: &Options) -> Result<String> {
    let path = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
        .decode_utf8()
        .map_err(|_| {
            Error::invalid_argument(format!(
                "the path of {} holds a percent-encoded sequence that is not UTF-8",
                options.url()
            ))
        })?;
    Ok(if path.is_empty() || path.ends_with('/') {
        path.into_owned()
    } else {
        format!("{path}/")
    })
}

/// The host of a URL, which names the bucket or account: required.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn required_host<'a>(url: &'a Url, options: &Options, what: &str) -> Result<&'a str> {
    match url.host_str() {
        Some(host) if !host.is_empty() => Ok(host),
        _ => Err(Error::invalid_argument(format!(
            "{} names no {what} (expected {}://{what}/...)",
            options.url(),
            url.scheme()
        ))),
    }
}

/// A local path from a `file://` or `logstore://` URL: absolute, no host
/// but `localhost`, percent-decoded.
#[cfg(any(feature = "fs", feature = "logstore"))]
fn local_path(url: &Url, options: &Options) -> Result<std::path::PathBuf> {
    if !matches!(url.host_str(), None | Some("") | Some("localhost")) {
        return Err(Error::invalid_argument(format!(
            "{} names host {:?}: a {}:// URL is local (use {}:///absolute/path)",
            options.url(),
            url.host_str().unwrap_or_default(),
            url.scheme(),
            url.scheme()
        )));
    }
    let as_file = Url::parse(&format!("file://{}", url.path())).ok();
    match as_file.and_then(|file| file.to_file_path().ok()) {
        Some(path) if path.is_absolute() && path != std::path::Path::new("/") => Ok(path),
        _ => Err(Error::invalid_argument(format!(
            "{} has no absolute directory path (use {}:///absolute/path)",
            options.url(),
            url.scheme()
        ))),
    }
}

fn memory(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    if url.host_str().is_some_and(|h| !h.is_empty()) || !matches!(url.path(), "" | "/") {
        return Err(Error::invalid_argument(format!(
            "{} has a host or path: memory:// takes none (use the `prefix` option for a namespace)",
            options.url()
        )));
    }
    finish(options, &[])?;
    memory_backend()
}

#[cfg(feature = "memory")]
fn memory_backend() -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(storage_core::MemoryBackend::new()))
}

#[cfg(not(feature = "memory"))]
fn memory_backend() -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme memory://", "memory"))
}

#[cfg(feature = "fs")]
fn fs(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let path = local_path(url, options)?;
    finish(options, &[])?;
    Ok(Arc::new(storage_disk::FsBackend::new(path)?))
}

#[cfg(not(feature = "fs"))]
fn fs(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme file://", "fs"))
}

#[cfg(feature = "logstore")]
async fn logstore(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let path = local_path(url, options)?;
    finish(options, &[])?;
    Ok(Arc::new(storage_disk::LogStore::open(path).await?))
}

#[cfg(not(feature = "logstore"))]
async fn logstore(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme logstore://", "logstore"))
}

#[cfg(feature = "s3")]
async fn s3(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    const OWN: [&str; 6] = [
        "region",
        "endpoint",
        "path_style",
        "access_key_id",
        "secret_access_key",
        "session_token",
    ];
    let bucket = required_host(url, options, "bucket")?;
    let mut config =
        storage_s3::S3Config::from_env(bucket).prefix(path_prefix(url.path(), options)?);
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
                "{}: `access_key_id` and `secret_access_key` go together, and `session_token` needs both",
                options.url()
            )));
        }
    }
    finish(options, &OWN)?;
    Ok(Arc::new(config.build().await?))
}

#[cfg(not(feature = "s3"))]
async fn s3(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme s3://", "s3"))
}

#[cfg(feature = "gcs")]
async fn gcs(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    const OWN: [&str; 4] = ["endpoint", "anonymous", "service_account_path", "emulator"];
    let bucket = required_host(url, options, "bucket")?;
    let mut config = match options.take("emulator") {
        Some(endpoint) => storage_gcs::GcsConfig::emulator(endpoint, bucket),
        None => storage_gcs::GcsConfig::from_env(bucket),
    };
    config = config.prefix(path_prefix(url.path(), options)?);
    if let Some(endpoint) = options.take("endpoint") {
        config = config.endpoint(endpoint);
    }
    if options.take_bool("anonymous")? == Some(true) {
        config = config.anonymous();
    }
    if let Some(path) = options.take("service_account_path") {
        config = config.service_account_file(path);
    }
    finish(options, &OWN)?;
    Ok(Arc::new(config.build().await?))
}

#[cfg(not(feature = "gcs"))]
async fn gcs(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme gs://", "gcs"))
}

/// Where an Azure URL points: `az://account/container/prefix` or
/// `https://account.blob.core.windows.net/container/prefix`.
#[cfg(feature = "azure")]
#[derive(Debug, PartialEq)]
struct AzureParts {
    account: String,
    container: String,
    prefix: String,
    /// The https URL's origin, for `https://` URLs.
    endpoint: Option<String>,
}

#[cfg(feature = "azure")]
fn azure_parts(url: &Url, options: &Options) -> Result<AzureParts> {
    let host = required_host(url, options, "account")?;
    let (account, endpoint) = if url.scheme().starts_with("http") {
        // The account is the first label (private endpoints add labels:
        // `acct.privatelink.blob.core.windows.net`).
        let account = host.split('.').next().unwrap_or_default();
        (account.to_owned(), Some(url.origin().ascii_serialization()))
    } else {
        (host.to_owned(), None)
    };
    if account.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{} names no account",
            options.url()
        )));
    }
    let path = url.path().trim_start_matches('/');
    let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
    if container.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{} names no container (expected az://account/container/prefix)",
            options.url()
        )));
    }
    Ok(AzureParts {
        account,
        container: container.to_owned(),
        prefix: path_prefix(prefix, options)?,
        endpoint,
    })
}

#[cfg(feature = "azure")]
fn azure(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    const OWN: [&str; 4] = ["access_key", "sas_token", "endpoint", "use_emulator"];
    let parts = azure_parts(url, options)?;
    let emulator = options.take_bool("use_emulator")? == Some(true);
    let endpoint = options
        .take("endpoint")
        .or(parts.endpoint)
        .or_else(|| emulator.then(|| format!("http://127.0.0.1:10000/{}", parts.account)));
    let mut config =
        storage_azure::AzureConfig::new(parts.account, parts.container).prefix(parts.prefix);
    if let Some(endpoint) = endpoint {
        config = config.endpoint(endpoint);
    }
    let key = options
        .take("access_key")
        .or_else(|| emulator.then(|| storage_azure::EMULATOR_KEY.to_owned()));
    let sas = options.take("sas_token");
    match (key, sas) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_argument(format!(
                "{}: `access_key` (or `use_emulator`) and `sas_token` exclude each other",
                options.url()
            )));
        }
        (Some(key), None) => config = config.account_key(key),
        (None, Some(sas)) => config = config.sas_token(sas),
        (None, None) => {
            if let Some(key) = env("AZURE_STORAGE_KEY") {
                config = config.account_key(key);
            } else if let Some(sas) = env("AZURE_STORAGE_SAS_TOKEN") {
                config = config.sas_token(sas);
            }
        }
    }
    finish(options, &OWN)?;
    Ok(Arc::new(config.build()?))
}

#[cfg(feature = "azure")]
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(not(feature = "azure"))]
fn azure(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off(
        "schemes az:// and https://*.blob.core.windows.net",
        "azure",
    ))
}

#[cfg(all(test, feature = "azure"))]
mod tests {
    use super::*;

    fn parts(url: &str) -> Result<AzureParts> {
        let parsed = Url::parse(url).expect("url");
        azure_parts(&parsed, &Options::new(&parsed, []).expect("options"))
    }

    #[test]
    fn an_az_url_names_account_container_and_prefix() {
        assert_eq!(
            parts("az://acct/box/logs/2026").expect("parts"),
            AzureParts {
                account: "acct".into(),
                container: "box".into(),
                prefix: "logs/2026/".into(),
                endpoint: None,
            }
        );
    }

    #[test]
    fn an_https_url_takes_the_first_label_as_account_and_keeps_the_origin() {
        let got =
            parts("https://acct.privatelink.blob.core.windows.net/box/a%20b/").expect("parts");
        assert_eq!(got.account, "acct");
        assert_eq!(got.container, "box");
        assert_eq!(got.prefix, "a b/");
        assert_eq!(
            got.endpoint.as_deref(),
            Some("https://acct.privatelink.blob.core.windows.net")
        );
    }

    #[test]
    fn a_portal_sas_url_is_read_as_a_token() {
        let url =
            Url::parse("https://acct.blob.core.windows.net/box?sv=2022-11-02&sp=r&sig=abc%2B")
                .expect("url");
        assert_eq!(
            sas_query(&url).as_deref(),
            Some("sv=2022-11-02&sp=r&sig=abc%2B")
        );
        let plain =
            Url::parse("https://acct.blob.core.windows.net/box?use_emulator=true").expect("url");
        assert_eq!(sas_query(&plain), None);
    }
}
