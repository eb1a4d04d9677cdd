//! The Azure factory: Azurite, a fresh container per check.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use azure_storage_blob::models::BlockBlobClientUploadOptions;
use storage_azure::{AzureBackend, AzureConfig};
use storage_core::Backend;

use super::{Stores, building, corrupted, current, start_server, when_ready};
use crate::hooks::TamperFn;
use crate::servers::{self, RunningServer};
use crate::{BackendFactory, Check, Declared, Hooks};

/// The contract suite's factory for `AzureBackend` on Azurite: a fresh
/// container per check, the missing-container, wrong-credentials and
/// tamper hooks (see the table of [`crate::cloud`]).
#[derive(Debug)]
pub struct AzureFactory {
    server: RunningServer,
    containers: AtomicUsize,
    /// The container of each check, for its hooks.
    stores: Stores,
}

impl AzureFactory {
    /// Installs the test servers if needed and starts Azurite, tied to this
    /// process.
    ///
    /// # Errors
    /// Why the server could not be installed or started.
    pub fn start() -> Result<Self, String> {
        Ok(AzureFactory {
            server: start_server("azure", servers::start_azurite)?,
            containers: AtomicUsize::new(0),
            stores: Stores::default(),
        })
    }

    /// The running server.
    pub fn server_process(&self) -> &RunningServer {
        &self.server
    }

    /// The blob endpoint of the emulator's account.
    pub fn endpoint(&self) -> String {
        format!(
            "{}/{}",
            self.server.endpoint,
            storage_azure::EMULATOR_ACCOUNT
        )
    }
}

#[async_trait]
impl BackendFactory for AzureFactory {
    fn name(&self) -> &str {
        "azure"
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self.containers.fetch_add(1, Ordering::Relaxed);
        let container = format!("check-{n:03}");
        let backend = AzureConfig::emulator(self.endpoint(), &container)
            .build()
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &container, || backend.create_container()).await?;
        self.stores.remember(check, container);
        Ok(Arc::new(backend))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let Some(container) = self.stores.recall(check) else {
            return Hooks::default();
        };
        // A well-formed account key that is not the emulator's.
        let refused = AzureConfig::emulator(self.endpoint(), &container)
            .account_key("bm90LXRoZS1lbXVsYXRvci1rZXktbm90LXRoZS1lbXVsYXRvci1rZXk=");
        let missing = AzureConfig::emulator(self.endpoint(), format!("missing-{container}"));
        let raw = AzureConfig::emulator(self.endpoint(), &container).build();
        Hooks {
            missing_bucket: Some(building(missing, AzureConfig::build)),
            tamper: Some(match raw {
                Ok(raw) => tamper(Arc::clone(backend), raw),
                // The check fails with the reason rather than going
                // unsupported.
                Err(e) => {
                    let message = format!("no client for the tamper hook: {e}");
                    Arc::new(move |_key| {
                        let message = message.clone();
                        Box::pin(async move { Err(message) })
                    })
                }
            }),
            wrong_credentials: Some(building(refused, AzureConfig::build)),
            // Cloud clients keep no state of their own to reopen.
            reopen: None,
            below: None,
        }
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}

/// A Put Blob of other bytes that carries the old `storage_sha256`, through
/// the SDK client of `raw` (a backend on the same container, no prefix).
fn tamper(backend: Arc<dyn Backend>, raw: AzureBackend) -> TamperFn {
    Arc::new(move |key| {
        let (backend, raw) = (Arc::clone(&backend), raw.clone());
        Box::pin(async move {
            let (bytes, sha256) = current(&backend, &key).await?;
            let options = BlockBlobClientUploadOptions {
                metadata: Some(HashMap::from([(
                    "storage_sha256".to_owned(),
                    hex::encode(sha256),
                )])),
                ..Default::default()
            };
            raw.container_client()
                .blob_client(key.as_str())
                .block_blob_client()
                .upload(bytes::Bytes::from(corrupted(&bytes)).into(), Some(options))
                .await
                .map_err(|e| format!("the server refused the corrupted object: {e}"))?;
            Ok(None)
        })
    })
}
