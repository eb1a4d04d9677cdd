//! Test harness: a local S3 server started for the test process, and a
//! bucket on it.

use std::time::{Duration, Instant};

use storage_conformance::servers::{self, Lifetime, RunningServer, S3_ACCESS_KEY, S3_SECRET_KEY};
use storage_s3::{S3Backend, S3Config};

/// Which S3 server to start.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub enum Server {
    SeaweedFs,
    Moto,
}

/// Starts `server` (installed by `cargo xtask servers install`).
pub fn start(server: Server) -> RunningServer {
    let tools = servers::tools_dir();
    let started = match server {
        Server::SeaweedFs => servers::start_seaweedfs(&tools, Lifetime::TiedToThisProcess),
        Server::Moto => servers::start_moto(&tools, Lifetime::TiedToThisProcess),
    };
    started.unwrap_or_else(|e| {
        panic!("{server:?} did not start ({e}); run `cargo xtask servers install`")
    })
}

/// Settings for `bucket` on `server`, with keys under `prefix`.
pub fn config(server: &RunningServer, bucket: &str, prefix: &str) -> S3Config {
    S3Config::new(bucket)
        .endpoint(server.endpoint.clone())
        .path_style(true)
        .region("us-east-1")
        .credentials(S3_ACCESS_KEY, S3_SECRET_KEY, None)
        .request_timeout(Duration::from_secs(30))
        .prefix(prefix)
}

/// Creates `bucket`, retrying while the server finishes starting (up to 30 s).
pub async fn create_bucket(server: &RunningServer, bucket: &str) -> S3Backend {
    let backend = config(server, bucket, "").build().expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match backend.create_bucket().await {
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
