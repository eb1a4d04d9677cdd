//! GCS-specific behaviour against fake-gcs-server.

mod common;

use storage_core::{Backend, BackendExt, Key};

fn key(s: &str) -> Key {
    Key::new(s).expect("key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_head() {
    let server = common::start();
    for bucket in ["check-000", "check-001"] {
        let store = common::create_bucket(&server, bucket).await;
        store.put_bytes("k", "0123456789").await.expect("put");
        println!("{:?}", store.head(&key("k")).await.map(|m| m.size));
        println!("{:?}", store.get_range("k", 10..12).await);
    }
}
