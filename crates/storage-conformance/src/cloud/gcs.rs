//! The GCS factory: fake-gcs-server, a fresh bucket per check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use storage_core::Backend;
use storage_gcs::GcsConfig;

use super::{Stores, building, corrupted, current, start_server, when_ready};
use crate::hooks::TamperFn;
use crate::servers::{self, RunningServer};
use crate::{BackendFactory, Check, Declared, Hooks};

/// The project buckets are created in (fake-gcs-server accepts any).
const PROJECT: &str = "test-project";

/// The contract suite's factory for `GcsBackend` on fake-gcs-server: a
/// fresh bucket per check (no prefix, so 1,024-byte names fit), the
/// missing-bucket, wrong-credentials and tamper hooks (see the table of
/// [`crate::cloud`]).
#[derive(Debug)]
pub struct GcsFactory {
    server: RunningServer,
    buckets: AtomicUsize,
    /// The bucket of each check, for its hooks.
    stores: Stores,
}

impl GcsFactory {
    /// Installs the test servers if needed and starts fake-gcs-server, tied
    /// to this process.
    ///
    /// # Errors
    /// Why the server could not be installed or started.
    pub fn start() -> Result<Self, String> {
        Ok(GcsFactory {
            server: start_server("gcs", servers::start_fake_gcs)?,
            buckets: AtomicUsize::new(0),
            stores: Stores::default(),
        })
    }

    /// The running server.
    pub fn server_process(&self) -> &RunningServer {
        &self.server
    }
}

#[async_trait]
impl BackendFactory for GcsFactory {
    fn name(&self) -> &str {
        "gcs"
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("check-{:03}", self.buckets.fetch_add(1, Ordering::Relaxed));
        let backend = GcsConfig::emulator(self.server.endpoint.clone(), &bucket)
            .build()
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &bucket, || backend.create_bucket(PROJECT)).await?;
        self.stores.remember(check, bucket);
        Ok(Arc::new(backend))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let Some(bucket) = self.stores.recall(check) else {
            return Hooks::default();
        };
        let endpoint = self.server.endpoint.clone();
        // fake-gcs-server checks no credentials (a declared limitation): a
        // client without any must still be refused by a real service.
        let refused = GcsConfig::emulator(endpoint.clone(), &bucket).anonymous();
        let missing = GcsConfig::emulator(endpoint.clone(), format!("missing-{bucket}"));
        Hooks {
            missing_bucket: Some(building(missing, GcsConfig::build)),
            tamper: Some(tamper(Arc::clone(backend), endpoint, bucket)),
            wrong_credentials: Some(building(refused, GcsConfig::build)),
            // Cloud clients keep no state of their own to reopen.
            reopen: None,
            below: None,
        }
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}

/// A media upload of other bytes, then the old `storage_sha256` patched back
/// into the object's metadata (Cloud Storage JSON API: "Objects: insert",
/// "Objects: patch").
fn tamper(backend: Arc<dyn Backend>, endpoint: String, bucket: String) -> TamperFn {
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
