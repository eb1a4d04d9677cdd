//! One function per URL scheme, each behind its backend's feature.

use std::sync::Arc;

use storage_core::{Backend, Error, Result};
use url::Url;

#[allow(unused_imports, reason = "used by whichever backend features are off")]
use crate::open::feature_off;
use crate::open::known;
use storage_core::raw::url_options::UrlOptions as Options;

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
/// `sig` parameter), as given; storage-azure decides.
#[cfg(feature = "azure")]
pub(crate) fn sas_query(url: &Url) -> Option<String> {
    storage_azure::AzureConfig::portal_sas(url.as_str())
}

/// Without the `azure` feature no URL is opened as Azure's.
#[cfg(not(feature = "azure"))]
pub(crate) fn sas_query(_: &Url) -> Option<String> {
    None
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

/// The options of `file://` and `logstore://`.
#[cfg(any(feature = "fs", feature = "logstore"))]
const LOCAL_OPTIONS: [&str; 2] = ["presign_base", "presign_secret"];

/// The presigner that `presign_base` and `presign_secret` ask for (both or
/// neither).
#[cfg(any(feature = "fs", feature = "logstore"))]
fn local_presigner(options: &mut Options) -> Result<Option<storage_core::presign::LocalPresigner>> {
    match (options.take("presign_base"), options.take("presign_secret")) {
        (None, None) => Ok(None),
        (Some(base), Some(secret)) => Ok(Some(storage_core::presign::LocalPresigner::new(
            &base,
            secret.into_bytes(),
        )?)),
        _ => Err(Error::invalid_argument(format!(
            "{}: presign_base and presign_secret go together",
            options.url()
        ))),
    }
}

#[cfg(feature = "fs")]
fn fs(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let path = local_path(url, options)?;
    let presigner = local_presigner(options)?;
    finish(options, &LOCAL_OPTIONS)?;
    let store = storage_disk::FsBackend::new(path)?;
    Ok(match presigner {
        Some(presigner) => Arc::new(store.with_presigner(presigner)),
        None => Arc::new(store),
    })
}

#[cfg(not(feature = "fs"))]
fn fs(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme file://", "fs"))
}

#[cfg(feature = "logstore")]
async fn logstore(url: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let path = local_path(url, options)?;
    let presigner = local_presigner(options)?;
    finish(options, &LOCAL_OPTIONS)?;
    let store = storage_disk::LogStore::open(path).await?;
    Ok(match presigner {
        Some(presigner) => Arc::new(store.with_presigner(presigner)),
        None => Arc::new(store),
    })
}

#[cfg(not(feature = "logstore"))]
async fn logstore(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme logstore://", "logstore"))
}

/// The options left for a cloud backend's `from_url`, after the layers
/// took theirs: any name that backend does not know is refused here, with
/// the layers' names among the known ones.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
fn handed_on(options: &Options, own: &[&str]) -> Result<Vec<(String, String)>> {
    if let Some((name, _)) = options.remaining().find(|(name, _)| !own.contains(name)) {
        return Err(Error::invalid_argument(format!(
            "unknown option `{name}` for {} (known: {})",
            options.url(),
            known(own).join(", ")
        )));
    }
    Ok(options
        .remaining()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

#[cfg(feature = "s3")]
async fn s3(_: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let pairs = handed_on(options, &storage_s3::URL_OPTIONS)?;
    let config = storage_s3::S3Config::from_url(options.url(), pairs)?;
    Ok(Arc::new(config.build()?))
}

#[cfg(not(feature = "s3"))]
async fn s3(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme s3://", "s3"))
}

#[cfg(feature = "gcs")]
async fn gcs(_: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let pairs = handed_on(options, &storage_gcs::URL_OPTIONS)?;
    let config = storage_gcs::GcsConfig::from_url(options.url(), pairs)?;
    Ok(Arc::new(config.build()?))
}

#[cfg(not(feature = "gcs"))]
async fn gcs(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off("scheme gs://", "gcs"))
}

#[cfg(feature = "azure")]
fn azure(_: &Url, options: &mut Options) -> Result<Arc<dyn Backend>> {
    let pairs = handed_on(options, &storage_azure::URL_OPTIONS)?;
    let config = storage_azure::AzureConfig::from_url(options.url(), pairs)?;
    Ok(Arc::new(config.build()?))
}

#[cfg(not(feature = "azure"))]
fn azure(_: &Url, _: &mut Options) -> Result<Arc<dyn Backend>> {
    Err(feature_off(
        "schemes az:// and https://*.blob.core.windows.net",
        "azure",
    ))
}
