//! A load generator: N tasks put 4 KiB objects into a LogStore for a few
//! seconds and the rate is printed. `cargo run --release --example
//! logstore_load -- DIR TASKS SECONDS [get]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use storage_core::BackendExt;
use storage_disk::LogStore;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "logstore-load".into());
    let writers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let gets = args.next().as_deref() == Some("get");
    let store = Arc::new(LogStore::open(&dir).await?);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|t| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            tokio::spawn(async move {
                let data = bytes::Bytes::from(vec![7u8; 4096]);
                let mut i = 0u64;
                if gets {
                    store.put_bytes(format!("load/{t}"), data.clone()).await?;
                }
                while Instant::now() < deadline {
                    if gets {
                        store.get_bytes(format!("load/{t}")).await?;
                    } else {
                        store
                            .put_bytes(format!("load/{t}/{i}"), data.clone())
                            .await?;
                    }
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
                Ok::<(), storage_core::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let ops = done.load(Ordering::Relaxed) as f64;
    let what = if gets { "gets" } else { "durable puts" };
    println!(
        "{writers} tasks: {:.0} {what}/s",
        ops / started.elapsed().as_secs_f64()
    );
    store.close().await?;
    Ok(())
}
