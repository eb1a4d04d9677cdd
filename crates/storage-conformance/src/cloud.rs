//! The server-backed factories of the cloud backends, shared by each cloud
//! crate's tests and `cargo xtask conformance`: a local test server started
//! by the factory ([`crate::servers`]), a fresh bucket or container per
//! check, and the hooks the suite needs (a client the server must refuse, a
//! missing bucket, an object corrupted behind the backend's back).
//!
//! Each factory is behind the feature of its backend (`s3`, `azure`,
//! `gcs`), off by default, so that the embedded backends' suite compiles no
//! cloud SDK.
//!
//! | backend | where the SHA-256 is recorded | how the tamper hook rewrites the bytes |
//! |---|---|---|
//! | S3 | `x-amz-checksum-sha256` | none: the server verifies the checksum on write (SeaweedFS answers `BadDigest`, as AWS does), so bytes cannot be changed behind the backend's back through the API; the check is reported unsupported |
//! | Azure | metadata `storage_sha256` | Put Blob through the Azure SDK, with the old metadata |
//! | GCS | metadata `storage_sha256` | a media upload, then a metadata patch, over the JSON API |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use storage_core::Backend;
#[cfg(any(feature = "azure", feature = "gcs"))]
use storage_core::Key;

use crate::hooks::make_backend;
use crate::servers::RunningServer;

#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "gcs")]
mod gcs;
#[cfg(feature = "s3")]
mod s3;

#[cfg(feature = "azure")]
pub use azure::AzureFactory;
#[cfg(feature = "gcs")]
pub use gcs::GcsFactory;
#[cfg(feature = "s3")]
pub use s3::{S3Factory, S3Server};

/// The bucket or container made for each check, by check name, kept from
/// `create` to `hooks`.
#[derive(Debug, Default)]
struct Stores(Mutex<HashMap<String, String>>);

impl Stores {
    fn remember(&self, check: &str, store: String) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(check.to_owned(), store);
    }

    fn recall(&self, check: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(check)
    }
}

/// Runs `create` (of the bucket or container named `what` on `server`)
/// until it succeeds, every 200 ms for up to 30 s: the server may still be
/// starting.
///
/// # Errors
/// The last failure, with the tail of the server's log.
pub async fn when_ready<F, Fut>(server: &RunningServer, what: &str, create: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = storage_core::Result<()>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match create().await {
            Ok(()) => return Ok(()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => {
                return Err(format!(
                    "creating {what}: {e}; server log:\n{}",
                    server.log_tail()
                ));
            }
        }
    }
}

/// A hook that builds a backend from `config` with `build` each time it
/// runs (a client the server must refuse, a bucket that does not exist).
fn building<C, B>(config: C, build: fn(C) -> storage_core::Result<B>) -> crate::hooks::MakeBackendFn
where
    C: Clone + Send + Sync + 'static,
    B: Backend + 'static,
{
    make_backend(move || {
        let built = build(config.clone());
        async move { Ok(Arc::new(built?) as Arc<dyn Backend>) }
    })
}

/// Bytes that replace an object's content: same length, other bytes.
#[cfg(any(feature = "azure", feature = "gcs"))]
fn corrupted(original: &[u8]) -> Vec<u8> {
    original.iter().map(|b| b ^ 0x5a).collect()
}

/// What the tamper hooks need of the object they corrupt: its current bytes
/// and the SHA-256 the backend recorded.
#[cfg(any(feature = "azure", feature = "gcs"))]
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

/// Starts a test server with `start`, installing the servers first.
fn start_server(
    what: &str,
    start: fn(
        &std::path::Path,
        crate::servers::Lifetime,
    ) -> Result<RunningServer, crate::servers::ServerError>,
) -> Result<RunningServer, String> {
    let tools = crate::servers::tools_dir();
    crate::servers::install(&tools).map_err(|e| format!("installing the test servers: {e}"))?;
    eprintln!("starting the {what} test server ...");
    start(&tools, crate::servers::Lifetime::TiedToThisProcess)
        .map_err(|e| format!("{what} did not start: {e}"))
}
