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
        other => Err(Error::invalid_argument(format!(
            "unknown scheme `{other}` in {} (known: {})",
            options.url(),
            SCHEMES.join(", ")
        ))),
    }
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

/// A URL's path without its leading `/`, as a key prefix ending with `/`
/// (empty stays empty).
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn path_prefix(path: &str) -> String {
    let path = path.trim_start_matches('/');
    if path.is_empty() || path.ends_with('/') {
        path.to_owned()
    } else {
        format!("{path}/")
    }
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
    let mut config = storage_s3::S3Config::new(bucket).prefix(path_prefix(url.path()));
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
    ) {
        (Some(id), Some(secret)) => {
            config = config.credentials(id, secret, options.take("session_token"));
        }
        (None, None) => {}
        _ => {
            return Err(Error::invalid_argument(format!(
                "{}: `access_key_id` and `secret_access_key` go together",
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
        None => storage_gcs::GcsConfig::new(bucket),
    };
    config = config.prefix(path_prefix(url.path()));
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

#[cfg(feature = "azure")]
fn azure(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    const OWN: [&str; 4] = ["access_key", "sas_token", "endpoint", "use_emulator"];
    let (account, path) = if url.scheme().starts_with("http") {
        let host = required_host(url, options, "account")?;
        let account = host.trim_end_matches(".blob.core.windows.net");
        (account.to_owned(), url.path())
    } else {
        (
            required_host(url, options, "account")?.to_owned(),
            url.path(),
        )
    };
    let path = path.trim_start_matches('/');
    let (container, prefix) = path.split_once('/').unwrap_or((path, ""));
    if container.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{} names no container (expected az://account/container/prefix)",
            options.url()
        )));
    }
    let mut config =
        storage_azure::AzureConfig::new(account, container).prefix(path_prefix(prefix));
    if url.scheme().starts_with("http") {
        let mut endpoint = url.clone();
        endpoint.set_path("");
        endpoint.set_query(None);
        config = config.endpoint(endpoint.as_str().trim_end_matches('/'));
    }
    if let Some(endpoint) = options.take("endpoint") {
        config = config.endpoint(endpoint);
    }
    let emulator = options.take_bool("use_emulator")? == Some(true);
    let key = options
        .take("access_key")
        .or_else(|| emulator.then(|| storage_azure::EMULATOR_KEY.to_owned()));
    let sas = options.take("sas_token");
    match (key, sas) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_argument(format!(
                "{}: `access_key` and `sas_token` exclude each other",
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
