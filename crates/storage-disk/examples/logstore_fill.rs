//! Fills a LogStore with N objects of 100 bytes (256 writers, buffered
//! durability), closes it, then times a reopen. `cargo run --release
//! --example logstore_fill -- DIR N`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use storage_core::BackendExt;
use storage_disk::{Durability, LogStore, LogStoreOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "logstore-fill".into());
    let objects: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let options = LogStoreOptions {
        durability: Durability::Buffered,
        ..Default::default()
    };
    let store = Arc::new(LogStore::open_with(&dir, options).await?);
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..256)
        .map(|_| {
            let (store, next) = (Arc::clone(&store), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= objects {
                        return Ok::<(), storage_core::Error>(());
                    }
                    store
                        .put_bytes(format!("objects/{i:08}"), vec![b'v'; 100])
                        .await?;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    store.close().await?;
    let started = Instant::now();
    let store = LogStore::open(&dir).await?;
    println!(
        "reopened {} objects in {:?} ({:?})",
        store.len(),
        started.elapsed(),
        store.open_report()
    );
    Ok(())
}
