//! The S3 factory: SeaweedFS (the primary S3 test server) or moto (the
//! cross-check), a fresh bucket per check.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use storage_core::Backend;
use storage_s3::S3Config;

use super::{Stores, building, start_server, when_ready};
use crate::servers::{self, RunningServer};
use crate::{BackendFactory, Check, Declared, Hooks};

/// Which S3 test server a [`S3Factory`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Server {
    /// SeaweedFS, the primary S3 test server (factory name `s3`).
    SeaweedFs,
    /// moto, the cross-check server (factory name `s3-moto`).
    Moto,
}

/// The contract suite's factory for `S3Backend` on a local test server: a
/// fresh bucket per check (no prefix, so 1,024-byte keys fit), the
/// missing-bucket and wrong-credentials hooks, and no tamper hook (see the
/// table of [`crate::cloud`]).
#[derive(Debug)]
pub struct S3Factory {
    name: &'static str,
    server: RunningServer,
    /// Whether suites the server passes only through `Retry`
    /// ([`servers::needs_retry`]) get one from this factory.
    wrap_retry: bool,
    buckets: AtomicUsize,
    /// The bucket of each check, for its hooks.
    stores: Stores,
}

impl S3Factory {
    /// Installs the test servers if needed and starts `server`, tied to
    /// this process. `wrap_retry`: wrap the backend in `Retry` for the
    /// suites the server passes only so ([`servers::needs_retry`]); pass
    /// `false` when the caller wraps every backend itself.
    ///
    /// # Errors
    /// Why the server could not be installed or started.
    pub fn start(server: S3Server, wrap_retry: bool) -> Result<Self, String> {
        let (name, running) = match server {
            S3Server::SeaweedFs => ("s3", start_server("s3", servers::start_seaweedfs)?),
            S3Server::Moto => ("s3-moto", start_server("s3-moto", servers::start_moto)?),
        };
        Ok(S3Factory {
            name,
            server: running,
            wrap_retry,
            buckets: AtomicUsize::new(0),
            stores: Stores::default(),
        })
    }

    /// The running server.
    pub fn server_process(&self) -> &RunningServer {
        &self.server
    }

    fn config(&self, bucket: &str, secret: &str) -> S3Config {
        S3Config::new(bucket)
            .endpoint(self.server.endpoint.clone())
            .path_style(true)
            .region("us-east-1")
            .credentials(servers::S3_ACCESS_KEY, secret, None)
            .request_timeout(Duration::from_secs(30))
    }
}

#[async_trait]
impl BackendFactory for S3Factory {
    fn name(&self) -> &str {
        self.name
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let bucket = format!("check-{:03}", self.buckets.fetch_add(1, Ordering::Relaxed));
        let backend = self
            .config(&bucket, servers::S3_SECRET_KEY)
            .build()
            .map_err(|e| e.to_string())?;
        when_ready(&self.server, &bucket, || backend.create_bucket()).await?;
        self.stores.remember(check, bucket);
        let suite = check.split('/').next().unwrap_or_default();
        if self.wrap_retry && servers::needs_retry(self.server.name, suite).is_some() {
            let policy = storage_retry::RetryPolicy::default()
                .with_base_delay(Duration::from_millis(10))
                .with_cap_delay(Duration::from_millis(200));
            return Ok(Arc::new(storage_retry::Retry::with_policy(backend, policy)));
        }
        Ok(Arc::new(backend))
    }

    fn hooks(&self, check: &str, _backend: &Arc<dyn Backend>) -> Hooks {
        let Some(bucket) = self.stores.recall(check) else {
            return Hooks::default();
        };
        let refused = self.config(&bucket, "not-the-secret");
        let missing = self.config(&format!("missing-{bucket}"), servers::S3_SECRET_KEY);
        Hooks {
            // The server verifies x-amz-checksum-sha256 on write: no bytes
            // can be changed behind the backend's back.
            tamper: None,
            missing_bucket: Some(building(missing, S3Config::build)),
            wrong_credentials: Some(building(refused, S3Config::build)),
            // Cloud clients keep no state of their own to reopen.
            reopen: None,
            below: None,
        }
    }

    fn limitation(&self, check: &Check) -> Option<Declared> {
        servers::declared_limitation(self.server.name, check)
    }
}
