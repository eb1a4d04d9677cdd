//! Backoff, attempts, deadline and per-attempt time limits, in paused time.

mod common;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use storage_core::{
    Backend, BackendExt, Body, Capabilities, DeleteOptions, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, MemoryBackend, ObjectMeta, PutOptions, Result,
};
use storage_retry::{Operation, Retry, RetryPolicy};
use tokio::time::Instant;

use common::{Script, Scripted};

/// Delays drawn by the observer: (attempt that failed, delay).
type Seen = Arc<Mutex<Vec<(u32, Duration)>>>;

fn policy(seen: &Seen) -> RetryPolicy {
    let seen = Arc::clone(seen);
    RetryPolicy::default()
        .with_base_delay(Duration::from_millis(100))
        .with_cap_delay(Duration::from_secs(2))
        .with_observer(move |event| {
            seen.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((event.attempt, event.delay));
        })
}

fn always_failing(policy: RetryPolicy) -> Retry<Scripted<MemoryBackend>> {
    Retry::with_policy(
        Scripted::new(MemoryBackend::new(), Script::AlwaysTransient),
        policy,
    )
}

#[tokio::test(start_paused = true)]
async fn every_retry_delay_lies_within_its_ceiling() {
    let seen = Seen::default();
    let store = always_failing(policy(&seen));
    for _ in 0..200 {
        let _ = store.head(&Key::new("k").expect("key")).await;
    }
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    assert_eq!(seen.len(), 200 * 9, "nine retries per operation");
    for &(attempt, delay) in seen.iter() {
        let ceiling = store.policy().delay_ceiling(attempt - 1);
        assert!(
            delay <= ceiling,
            "retry after attempt {attempt}: {delay:?} > {ceiling:?}"
        );
        assert!(ceiling <= Duration::from_millis(100 << (attempt - 1)).min(Duration::from_secs(2)));
    }
}

#[tokio::test(start_paused = true)]
async fn delays_spread_over_the_whole_range_below_the_ceiling() {
    let seen = Seen::default();
    let store = always_failing(policy(&seen).with_max_attempts(2));
    for _ in 0..2000 {
        let _ = store.head(&Key::new("k").expect("key")).await;
    }
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let mean = seen.iter().map(|(_, d)| d.as_secs_f64()).sum::<f64>() / seen.len() as f64;
    // Full jitter over [0, 100 ms] has a mean of 50 ms (additive jitter,
    // over [100, 200 ms], would have 150 ms).
    assert!((0.045..0.055).contains(&mean), "mean delay {mean} s");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_stops_retries() {
    let deadline = Duration::from_secs(5);
    let store = always_failing(
        RetryPolicy::default()
            .with_max_attempts(1000)
            .with_base_delay(Duration::from_millis(100))
            .with_cap_delay(Duration::from_secs(1))
            .with_deadline(deadline),
    );
    let started = Instant::now();
    let head = store.head(&Key::new("k").expect("key")).await;
    assert!(head.is_err_and(|e| e.is_transient()));
    assert!(
        started.elapsed() <= deadline,
        "ran for {:?}",
        started.elapsed()
    );
    assert!(
        store.inner().calls() > 5,
        "only {} attempts",
        store.inner().calls()
    );
}

#[tokio::test(start_paused = true)]
async fn attempts_stop_at_the_maximum() {
    let store = always_failing(RetryPolicy::default().with_max_attempts(4));
    let _ = store.list(&ListOptions::default()).await;
    assert_eq!(store.inner().calls(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_non_transient_error_returns_after_exactly_one_attempt() {
    let store = Retry::new(Scripted::new(MemoryBackend::new(), Script::AlwaysDenied));
    let k = Key::new("k").expect("key");
    let results = [
        store.head(&k).await.map(|_| ()),
        store.get(&k, GetOptions::default()).await.map(|_| ()),
        store.list(&ListOptions::default()).await.map(|_| ()),
        store
            .put(&k, Body::from("x"), PutOptions::default())
            .await
            .map(|_| ()),
    ];
    for result in &results {
        assert!(
            matches!(result, Err(Error::PermissionDenied { .. })),
            "{result:?}"
        );
    }
    assert_eq!(store.inner().calls(), 4, "one attempt per operation");
}

/// A backend whose first head never answers.
#[derive(Debug, Default)]
struct StallsOnce {
    inner: MemoryBackend,
    stalled: Mutex<bool>,
}

#[async_trait]
impl Backend for StallsOnce {
    fn name(&self) -> &str {
        "stalls-once"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.inner.put(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.inner.get(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        let stall = !std::mem::replace(
            &mut *self.stalled.lock().unwrap_or_else(PoisonError::into_inner),
            true,
        );
        if stall {
            std::future::pending::<()>().await;
        }
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.inner.delete(key, options).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_stalled_attempt_is_cut_at_its_time_limit_and_retried() {
    let limit = Duration::from_secs(3);
    let store = Retry::with_policy(
        StallsOnce::default(),
        RetryPolicy::default().with_attempt_timeout(limit),
    );
    store.inner().inner.put_bytes("k", "v").await.expect("put");
    let started = Instant::now();
    let head = store.head(&Key::new("k").expect("key")).await;
    assert!(head.is_ok(), "{head:?}");
    assert!(
        started.elapsed() >= limit,
        "answered after {:?}",
        started.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn the_observer_is_told_operation_key_attempt_delay_and_error() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&events);
    let store = always_failing(RetryPolicy::default().with_max_attempts(3).with_observer(
        move |event| {
            log.lock().unwrap_or_else(PoisonError::into_inner).push((
                event.operation,
                event.key.map(str::to_owned),
                event.attempt,
                event.delay,
                event.error.is_transient(),
            ));
        },
    ));
    let _ = store.head(&Key::new("k").expect("key")).await;
    let events = events.lock().unwrap_or_else(PoisonError::into_inner);
    let attempts: Vec<u32> = events.iter().map(|e| e.2).collect();
    assert_eq!(attempts, [1, 2]);
    for (operation, key, _, delay, transient) in events.iter() {
        assert_eq!(*operation, Operation::Head);
        assert_eq!(key.as_deref(), Some("k"));
        assert!(*delay <= Duration::from_millis(200) && *transient);
    }
}
