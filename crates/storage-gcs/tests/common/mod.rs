//! Test harness: fake-gcs-server started for the test process, and buckets
//! on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use storage_conformance::servers::{self, Lifetime, RunningServer};
use storage_conformance::{BackendFactory, Check};
use storage_core::Backend;
use storage_gcs::{GcsBackend, GcsConfig};

/// Starts fake-gcs-server (installed by `cargo xtask servers install`).
pub fn start() -> RunningServer {
    servers::start_fake_gcs(&servers::tools_dir(), Lifetime::TiedToThisProcess).unwrap_or_else(
        |e| panic!("fake-gcs-server did not start ({e}); run `cargo xtask servers install`"),
    )
}

/// Settings for `bucket` on `server`, with keys under `prefix`.
#[allow(dead_code)]
pub fn config(server: &RunningServer, bucket: &str, prefix: &str) -> GcsConfig {
    GcsConfig::emulator(server.endpoint.clone(), bucket)
        .request_timeout(Duration::from_secs(30))
        .prefix(prefix)
}

/// Creates `bucket`, retrying while the server finishes starting (up to
/// 30 s).
pub async fn create_bucket(server: &RunningServer, bucket: &str) -> GcsBackend {
    let backend = config(server, bucket, "").build().await.expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match backend.create_bucket("test-project").await {
            Ok(()) => return backend,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!(
                "creating bucket {bucket} failed: {e}; server log:\n{}",
                server.log_tail()
            ),
        }
    }
}

/// A fresh bucket per check (no prefix, so 1,024-byte names fit).
#[allow(dead_code)]
pub struct GcsFactory {
    pub server: RunningServer,
    pub buckets: AtomicUsize,
}

#[async_trait]
impl BackendFactory for GcsFactory {
    fn name(&self) -> &str {
        "gcs"
    }

    fn server(&self) -> Option<String> {
        Some(format!("{} {}", self.server.name, self.server.version))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self.buckets.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(
            create_bucket(&self.server, &format!("check-{n:03}")).await,
        ))
    }

    fn limitation(&self, check: &Check) -> Option<storage_conformance::Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}
