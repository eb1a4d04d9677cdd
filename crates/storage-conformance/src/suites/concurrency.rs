//! Suite `concurrency`: compare-and-swap under contention and atomic puts
//! (DESIGN section 2, rules 1 and 4).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::try_join_all;
use storage_core::{Backend, BackendExt, Error, GetOptions, ListOptions, PutMode};

use crate::support::{key, put};
use crate::{Check, CheckResult, Failure, check, ensure, ensure_eq};

const SUITE: &str = "concurrency";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            SUITE,
            cas_counter_16_tasks_100_increments_ends_at_1600,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            concurrent_if_not_exists_has_exactly_one_winner,
            [ConditionalPut]
        ),
        check!(SUITE, readers_never_see_a_partial_put),
        check!(SUITE, concurrent_puts_to_distinct_keys_all_land),
        check!(SUITE, concurrent_overwrites_leave_one_whole_version),
    ]
}

fn join_failure(e: tokio::task::JoinError) -> Failure {
    Failure(format!("a task failed: {e}"))
}

async fn cas_counter_16_tasks_100_increments_ends_at_1600(b: Arc<dyn Backend>) -> CheckResult {
    const TASKS: u64 = 16;
    const INCREMENTS: u64 = 100;
    let k = key("counter")?;
    put(&*b, &k, "0", PutMode::IfNotExists).await?;
    let tasks = (0..TASKS).map(|_| {
        let (b, k) = (Arc::clone(&b), k.clone());
        tokio::spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..INCREMENTS {
                loop {
                    let current = b.get(&k, GetOptions::default()).await?;
                    let etag = current.meta.etag.clone();
                    let bytes = current.bytes().await?;
                    let value: u64 = std::str::from_utf8(&bytes)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Failure(format!("counter holds {bytes:?}")))?;
                    // Let the other tasks run between the read and the swap, so
                    // that contention happens even on backends that never wait.
                    tokio::task::yield_now().await;
                    match put(&*b, &k, (value + 1).to_string(), PutMode::IfMatch(etag)).await {
                        Ok(_) => break,
                        Err(Error::PreconditionFailed { .. }) => conflicts += 1,
                        Err(e) => return Err(Failure::from(e)),
                    }
                }
            }
            Ok::<u64, Failure>(conflicts)
        })
    });
    for task in try_join_all(tasks).await.map_err(join_failure)? {
        task?;
    }
    let final_value = b.get_bytes(&k).await?;
    ensure_eq!(
        final_value,
        Bytes::from((TASKS * INCREMENTS).to_string()),
        "final counter value"
    );
    Ok(())
}

async fn concurrent_if_not_exists_has_exactly_one_winner(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("lease")?;
    let tasks = (0..16u32).map(|i| {
        let (b, k) = (Arc::clone(&b), k.clone());
        tokio::spawn(async move {
            (
                i,
                put(&*b, &k, format!("holder-{i}"), PutMode::IfNotExists).await,
            )
        })
    });
    let mut winners = Vec::new();
    for (i, result) in try_join_all(tasks).await.map_err(join_failure)? {
        match result {
            Ok(_) => winners.push(i),
            Err(Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(Failure::from(e)),
        }
    }
    ensure_eq!(winners.len(), 1, "number of winning creates");
    let holder = b.get_bytes(&k).await?;
    ensure_eq!(
        holder,
        Bytes::from(format!("holder-{}", winners[0])),
        "stored content"
    );
    Ok(())
}

async fn readers_never_see_a_partial_put(b: Arc<dyn Backend>) -> CheckResult {
    const LEN: usize = 512 * 1024;
    let k = key("swapped")?;
    b.put_bytes(&k, vec![b'a'; LEN]).await?;
    let writer = {
        let (b, k) = (Arc::clone(&b), k.clone());
        tokio::spawn(async move {
            for i in 0..20 {
                let fill = if i % 2 == 0 { b'b' } else { b'a' };
                b.put_bytes(&k, vec![fill; LEN]).await?;
            }
            Ok::<(), Error>(())
        })
    };
    let readers = (0..4).map(|_| {
        let (b, k) = (Arc::clone(&b), k.clone());
        tokio::spawn(async move {
            for _ in 0..20 {
                let data = b.get_bytes(&k).await?;
                let whole = data.len() == LEN
                    && (data.iter().all(|&c| c == b'a') || data.iter().all(|&c| c == b'b'));
                if !whole {
                    return Err(Failure(format!(
                        "a reader saw {} bytes mixing two versions",
                        data.len()
                    )));
                }
            }
            Ok::<(), Failure>(())
        })
    });
    for reader in try_join_all(readers).await.map_err(join_failure)? {
        reader?;
    }
    writer.await.map_err(join_failure)??;
    Ok(())
}

async fn concurrent_puts_to_distinct_keys_all_land(b: Arc<dyn Backend>) -> CheckResult {
    let tasks = (0..64).map(|i| {
        let b = Arc::clone(&b);
        tokio::spawn(async move {
            b.put_bytes(format!("many/{i:03}"), format!("value {i}"))
                .await
        })
    });
    for result in try_join_all(tasks).await.map_err(join_failure)? {
        result?;
    }
    let page = b.list(&ListOptions::prefix("many/")).await?;
    ensure_eq!(
        page.objects.len(),
        64,
        "objects listed after 64 concurrent puts"
    );
    Ok(())
}

async fn concurrent_overwrites_leave_one_whole_version(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("contended")?;
    let tasks = (0..16u8).map(|i| {
        let (b, k) = (Arc::clone(&b), k.clone());
        tokio::spawn(async move { b.put_bytes(&k, vec![b'a' + i; 100_000]).await })
    });
    let mut etags = Vec::new();
    for result in try_join_all(tasks).await.map_err(join_failure)? {
        etags.push(result?.etag);
    }
    let got = b.get(&k, GetOptions::default()).await?;
    ensure!(
        etags.contains(&got.meta.etag),
        "the final ETag {} is none of the writers'",
        got.meta.etag
    );
    let data = got.bytes().await?;
    ensure!(
        data.len() == 100_000 && data.iter().all(|&c| c == data[0]),
        "the final content mixes writers"
    );
    Ok(())
}
