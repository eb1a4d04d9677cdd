//! Test harness: fake-gcs-server started for the test process, and buckets
//! on it.

use std::time::{Duration, Instant};

use storage_conformance::servers::{self, Lifetime, RunningServer};
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
    let backend = config(server, bucket, "").build().expect("client");
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
