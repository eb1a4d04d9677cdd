//! The conformance hooks of the cloud factories: corrupting an object behind
//! the backend's back (new bytes under the SHA-256 it recorded), and a client
//! whose credentials the server must refuse.
//!
//! | backend | where the SHA-256 is recorded | how the hook rewrites the bytes |
//! |---|---|---|
//! | S3 | `x-amz-checksum-sha256` | none: the server verifies the checksum on write (SeaweedFS answers `BadDigest`, as AWS does), so bytes cannot be changed behind the backend's back through the API; the check is reported unsupported |
//! | Azure | metadata `storage_sha256` | Put Blob through `object_store` with the old metadata |
//! | GCS | metadata `storage_sha256` | a media upload, then a metadata patch, over the JSON API |

use std::sync::Arc;

#[cfg(feature = "full")]
use object_store::{ObjectStore, PutPayload};
use storage_conformance::hooks::MakeBackendFn;
#[cfg(feature = "full")]
use storage_conformance::hooks::TamperFn;
use storage_core::Backend;
#[cfg(feature = "full")]
use storage_core::Key;

#[cfg(feature = "full")]
/// Bytes that replace an object's content: same length, other bytes.
fn corrupted(original: &[u8]) -> Vec<u8> {
    original.iter().map(|b| b ^ 0x5a).collect()
}

#[cfg(feature = "full")]
/// What the tamper hooks need of the object they corrupt: its current
/// bytes and the SHA-256 the backend recorded.
async fn current(backend: &Arc<dyn Backend>, key: &Key) -> Result<(Vec<u8>, [u8; 32]), String> {
    let head = backend.head(key).await.map_err(|e| e.to_string())?;
    let sha256 = head
        .sha256
        .ok_or_else(|| format!("{key} has no recorded SHA-256 to keep"))?;
    let got = backend
        .get(key, Default::default())
        .await
        .map_err(|e| e.to_string())?;
    let bytes = got.bytes().await.map_err(|e| e.to_string())?;
    Ok((bytes.to_vec(), sha256))
}

#[cfg(feature = "full")]
/// Azure: a Put Blob of other bytes carrying the old `storage_sha256`.
pub fn azure_tamper(backend: Arc<dyn Backend>, endpoint: String, container: String) -> TamperFn {
    use storage_azure::{EMULATOR_ACCOUNT, EMULATOR_KEY};
    Arc::new(move |key| {
        let (backend, endpoint, container) =
            (Arc::clone(&backend), endpoint.clone(), container.clone());
        Box::pin(async move {
            let (bytes, sha256) = current(&backend, &key).await?;
            let raw = object_store::azure::MicrosoftAzureBuilder::new()
                .with_account(EMULATOR_ACCOUNT)
                .with_access_key(EMULATOR_KEY)
                .with_container_name(container)
                .with_endpoint(endpoint)
                .with_allow_http(true)
                .build()
                .map_err(|e| e.to_string())?;
            let mut attributes = object_store::Attributes::new();
            attributes.insert(
                object_store::Attribute::Metadata("storage_sha256".into()),
                hex::encode(sha256).into(),
            );
            let options = object_store::PutOptions {
                attributes,
                ..Default::default()
            };
            raw.put_opts(
                &object_store::path::Path::from(key.as_str()),
                PutPayload::from(corrupted(&bytes)),
                options,
            )
            .await
            .map_err(|e| format!("the server refused the corrupted object: {e}"))?;
            Ok(None)
        })
    })
}

#[cfg(feature = "full")]
/// GCS: a media upload of other bytes, then the old `storage_sha256` patched
/// back into the object's metadata.
pub fn gcs_tamper(backend: Arc<dyn Backend>, endpoint: String, bucket: String) -> TamperFn {
    Arc::new(move |key| {
        let (backend, endpoint, bucket) = (Arc::clone(&backend), endpoint.clone(), bucket.clone());
        Box::pin(async move {
            let (bytes, sha256) = current(&backend, &key).await?;
            let client = reqwest::Client::new();
            let name = key.as_str().to_owned();
            client
                .post(format!("{endpoint}/upload/storage/v1/b/{bucket}/o"))
                .query(&[("uploadType", "media"), ("name", name.as_str())])
                .body(corrupted(&bytes))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("uploading the corrupted object: {e}"))?;
            let encoded =
                percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
            client
                .patch(format!("{endpoint}/storage/v1/b/{bucket}/o/{encoded}"))
                .header("content-type", "application/json")
                .body(format!(
                    r#"{{"metadata":{{"storage_sha256":"{}"}}}}"#,
                    hex::encode(sha256)
                ))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("patching the recorded SHA-256 back: {e}"))?;
            Ok(None)
        })
    })
}

/// A hook that makes a backend with `make` (configured in a way the server
/// must refuse).
pub fn make_backend<F, Fut>(make: F) -> MakeBackendFn
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = storage_core::Result<Arc<dyn Backend>>> + Send + 'static,
{
    Arc::new(move || {
        let made = make();
        Box::pin(async move { made.await.map_err(|e| e.to_string()) })
    })
}
