//! The contract suite against a real S3 server, a fresh bucket per check.
//! What a server cannot honour is declared, with the reason, and reported as
//! a limitation, never as a pass. Shared by the SeaweedFS and moto test
//! binaries (each runs alone, since one check measures this process's
//! memory).

use std::sync::Arc;

use async_trait::async_trait;

use super as common;
use storage_conformance::servers::{self, RunningServer};
use storage_conformance::{BackendFactory, Check, Filter, assert_no_failures, run, suites};
use storage_core::Backend;

/// A fresh bucket per check (no prefix, so 1,024-byte keys fit).
pub struct S3Factory {
    server: RunningServer,
    buckets: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl BackendFactory for S3Factory {
    fn name(&self) -> &str {
        "s3"
    }

    fn server(&self) -> Option<String> {
        Some(servers::describe(&self.server))
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self
            .buckets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bucket = format!("check-{n:03}");
        let backend = common::create_bucket(&self.server, &bucket).await;
        let suite = check.split('/').next().unwrap_or_default();
        if servers::needs_retry(self.server.name, suite).is_some() {
            let policy = storage_retry::RetryPolicy::default()
                .with_base_delay(std::time::Duration::from_millis(10))
                .with_cap_delay(std::time::Duration::from_millis(200));
            return Ok(Arc::new(storage_retry::Retry::with_policy(backend, policy)));
        }
        Ok(Arc::new(backend))
    }

    fn limitation(&self, check: &Check) -> Option<storage_conformance::Declared> {
        storage_conformance::servers::declared_limitation(self.server.name, check)
    }
}

/// Runs the suite on SeaweedFS.
#[allow(dead_code)]
pub async fn on_seaweedfs() {
    let server = common::start(common::Server::SeaweedFs);
    let factory = S3Factory {
        server,
        buckets: Default::default(),
    };
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}

/// Runs the suite on moto.
#[allow(dead_code)]
pub async fn on_moto() {
    let server = common::start(common::Server::Moto);
    let factory = S3Factory {
        server,
        buckets: Default::default(),
    };
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
