//! `BackendExt` takes keys as strings: an invalid one fails with
//! `InvalidKey` before any call reaches the backend.

use std::sync::Arc;

use storage_conformance::spy::Spy;
use storage_core::{Backend, BackendExt, Error, MemoryBackend};

#[tokio::test]
async fn invalid_string_keys_never_reach_the_backend() {
    let spy = Spy::new(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>);
    for key in ["", "/a", "a//b", "a/../b", ".staging", "a\nb"] {
        assert!(matches!(
            spy.put_bytes(key, "x").await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            spy.get_bytes(key).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            spy.get_range(key, 0..1).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            spy.exists(key).await,
            Err(Error::InvalidKey { .. })
        ));
    }
    assert_eq!(spy.calls(), Vec::new(), "calls that reached the backend");
}
