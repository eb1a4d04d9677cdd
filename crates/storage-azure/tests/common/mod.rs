//! Test harness: Azurite started for the test process, and containers on it.

use std::time::{Duration, Instant};

use storage_azure::{AzureBackend, AzureConfig};
use storage_conformance::servers::{self, Lifetime, RunningServer};

/// Starts Azurite (installed by `cargo xtask servers install`).
pub fn start() -> RunningServer {
    servers::start_azurite(&servers::tools_dir(), Lifetime::TiedToThisProcess).unwrap_or_else(|e| {
        panic!("Azurite did not start ({e}); run `cargo xtask servers install`")
    })
}

/// Settings for `container` on `server`, with keys under `prefix`.
pub fn config(server: &RunningServer, container: &str, prefix: &str) -> AzureConfig {
    AzureConfig::emulator(format!("{}/devstoreaccount1", server.endpoint), container)
        .request_timeout(Duration::from_secs(30))
        .prefix(prefix)
}

/// Creates `container`, retrying while the server finishes starting (up to
/// 30 s).
pub async fn create_container(server: &RunningServer, container: &str) -> AzureBackend {
    let backend = config(server, container, "").build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match backend.create_container().await {
            Ok(()) => return backend,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!(
                "creating container {container} failed: {e}; server log:\n{}",
                server.log_tail()
            ),
        }
    }
}
