//! The bounded-memory check catches a backend that buffers whole objects in
//! memory while claiming local storage. It measures this process's resident
//! memory, so it runs alone in its own test binary.

use std::sync::Arc;

use storage_conformance::{Filter, FnFactory, Status, run, suites};
use storage_core::{Backend, Capabilities, Locality, MemoryBackend};

/// A memory backend that claims to keep its objects on a local disk.
#[derive(Debug)]
struct ClaimsDisk(MemoryBackend);

#[async_trait::async_trait]
impl Backend for ClaimsDisk {
    fn name(&self) -> &str {
        "claims-disk"
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            locality: Locality::Local,
            ..self.0.capabilities()
        }
    }
    async fn put(
        &self,
        key: &storage_core::Key,
        body: storage_core::Body,
        options: storage_core::PutOptions,
    ) -> storage_core::Result<storage_core::ObjectMeta> {
        self.0.put(key, body, options).await
    }
    async fn get(
        &self,
        key: &storage_core::Key,
        options: storage_core::GetOptions,
    ) -> storage_core::Result<storage_core::GetResult> {
        self.0.get(key, options).await
    }
    async fn head(
        &self,
        key: &storage_core::Key,
    ) -> storage_core::Result<storage_core::ObjectMeta> {
        self.0.head(key).await
    }
    async fn delete(
        &self,
        key: &storage_core::Key,
        options: storage_core::DeleteOptions,
    ) -> storage_core::Result<()> {
        self.0.delete(key, options).await
    }
    async fn list(
        &self,
        options: &storage_core::ListOptions,
    ) -> storage_core::Result<storage_core::ListPage> {
        self.0.list(options).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buffering_in_memory_fails_the_bounded_memory_check() {
    let factory = FnFactory::new("claims-disk", |_check| async {
        Ok(Arc::new(ClaimsDisk(MemoryBackend::new())) as Arc<dyn Backend>)
    });
    let filter = Filter {
        names: vec!["large_object_streams_with_bounded_memory".into()],
        ..Default::default()
    };
    let report = run(&factory, &suites::all(), &filter).await;
    let check = report.checks.first().expect("the check ran");
    assert_eq!(check.status, Status::Failed, "{:?}", check.message);
}
