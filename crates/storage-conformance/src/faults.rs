//! Fault injection: a backend wrapper that injects transient faults at set rates, seeded.
//!
//! [`FaultInjector`] wraps any backend and, call by call, injects the faults
//! a retrying layer must survive (DESIGN section 6), drawn from a seeded
//! generator so that a run can be repeated:
//!
//! | kind | what happens | what a client observes | counted as |
//! |---|---|---|---|
//! | before | the call is refused before it reaches the inner backend; nothing is applied and a put's body is not read | a transient [`Error::Backend`] | [`FaultCounts::before`] |
//! | after | the call runs to its end (a write is applied), then its answer is replaced by an error | a transient [`Error::Backend`], outcome unknown | [`FaultCounts::after`] |
//! | slow | the call is held for [`FaultConfig::slow_delay`], before or after it runs (chosen at random), so that a per-attempt time limit below it fires with the outcome unknown | a late answer | [`FaultCounts::slow`] |
//! | mid-stream | a successful get's body ends with an error after a random number of its bytes | a transient [`Error::Backend`] from the body stream | [`FaultCounts::mid_stream`] |
//!
//! Each call faults with probability [`FaultConfig::rate`], with one kind
//! drawn among those that apply to it (mid-stream to gets only) by their
//! weights; [`FaultConfig::uniform`] weighs every kind the same.
//! [`FaultInjector::counts`] reports how many of each were injected. `watch`,
//! `name` and `capabilities` are forwarded without faults.
//!
//! ```
//! use storage_conformance::faults::{FaultConfig, FaultInjector, FaultKind};
//! use storage_core::{BackendExt, MemoryBackend};
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! // Every call loses its answer: the write is applied, the caller is told it failed.
//! let faulty = FaultInjector::new(MemoryBackend::new(), FaultConfig::only(FaultKind::After, 1.0));
//! assert!(faulty.put_bytes("k", "v").await.is_err_and(|e| e.is_transient()));
//! assert_eq!(faulty.inner().get_bytes("k").await?, "v");
//! assert_eq!(faulty.counts().after, 1);
//! # Ok::<(), storage_core::Error>(())
//! # }).unwrap();
//! ```

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream;
use storage_core::{
    Backend, Body, ByteStream, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, ObjectMeta, PutMode, PutOptions, Result, TxnId,
};

/// How long a slow call is held by default: 100 ms. Give the retrying layer
/// under test a shorter per-attempt time limit so that slow calls trip it.
pub const DEFAULT_SLOW_DELAY: Duration = Duration::from_millis(100);

/// A kind of fault; see the table in the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// The call is refused before it reaches the inner backend.
    Before,
    /// The call runs, then its answer is replaced by an error.
    After,
    /// The call is held for [`FaultConfig::slow_delay`].
    Slow,
    /// A get's body fails after some of its bytes.
    MidStream,
}

/// How often faults are injected, of which kinds, and the generator's seed.
///
/// Each call faults with probability [`FaultConfig::rate`]; the kind is then
/// drawn among the kinds that apply to the call (mid-stream applies to gets
/// only), in proportion to their weights. A kind of weight 0 never happens.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Seed of the generator: the same seed and the same sequence of calls
    /// give the same faults.
    pub seed: u64,
    /// Probability that a call faults, from 0.0 (never) to 1.0 (always).
    pub rate: f64,
    /// Weight of [`FaultKind::Before`].
    pub before: f64,
    /// Weight of [`FaultKind::After`].
    pub after: f64,
    /// Weight of [`FaultKind::Slow`].
    pub slow: f64,
    /// Weight of [`FaultKind::MidStream`].
    pub mid_stream: f64,
    /// How long a slow call is held.
    pub slow_delay: Duration,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig::none()
    }
}

impl FaultConfig {
    /// No faults at all, seed 0.
    pub fn none() -> Self {
        FaultConfig {
            seed: 0,
            rate: 0.0,
            before: 1.0,
            after: 1.0,
            slow: 1.0,
            mid_stream: 1.0,
            slow_delay: DEFAULT_SLOW_DELAY,
        }
    }

    /// Faults of every kind, evenly: a call faults with probability `rate`
    /// (clamped to 0.0..=1.0), each kind that applies to it equally likely.
    /// So `uniform(0.3)` faults 30 % of calls: 10 % of puts are refused,
    /// 10 % lose their answer, 10 % are slow; a get's 30 % also include
    /// bodies broken mid-way (7.5 % each).
    pub fn uniform(rate: f64) -> Self {
        FaultConfig {
            rate: rate.clamp(0.0, 1.0),
            ..FaultConfig::none()
        }
    }

    /// Faults of one kind only, at `rate` of the calls it applies to.
    pub fn only(kind: FaultKind, rate: f64) -> Self {
        let weight = |k: FaultKind| if k == kind { 1.0 } else { 0.0 };
        FaultConfig {
            before: weight(FaultKind::Before),
            after: weight(FaultKind::After),
            slow: weight(FaultKind::Slow),
            mid_stream: weight(FaultKind::MidStream),
            ..FaultConfig::uniform(rate)
        }
    }

    /// The same rates with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The same rates with slow calls held for `delay`.
    pub fn with_slow_delay(mut self, delay: Duration) -> Self {
        self.slow_delay = delay;
        self
    }
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    /// Calls refused before reaching the inner backend.
    pub before: u64,
    /// Calls whose answer was replaced by an error after they ran.
    pub after: u64,
    /// Calls held for the slow delay.
    pub slow: u64,
    /// Get bodies broken mid-way.
    pub mid_stream: u64,
}

impl FaultCounts {
    /// Every fault injected.
    pub fn total(&self) -> u64 {
        self.before + self.after + self.slow + self.mid_stream
    }
}

impl fmt::Display for FaultCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} faults: {} before the call, {} after it, {} slow, {} mid-stream",
            self.total(),
            self.before,
            self.after,
            self.slow,
            self.mid_stream
        )
    }
}

/// Counts of injected faults, shareable between injectors (for example
/// every backend a conformance run creates), cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FaultCounter(Arc<[AtomicU64; 4]>);

impl FaultCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// The counts so far.
    pub fn snapshot(&self) -> FaultCounts {
        let [before, after, slow, mid_stream] = self.0.as_ref();
        FaultCounts {
            before: before.load(Ordering::Relaxed),
            after: after.load(Ordering::Relaxed),
            slow: slow.load(Ordering::Relaxed),
            mid_stream: mid_stream.load(Ordering::Relaxed),
        }
    }

    fn add(&self, kind: FaultKind) {
        let index = match kind {
            FaultKind::Before => 0,
            FaultKind::After => 1,
            FaultKind::Slow => 2,
            FaultKind::MidStream => 3,
        };
        self.0[index].fetch_add(1, Ordering::Relaxed);
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast and good enough to
/// draw faults.
#[derive(Debug)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number uniformly in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Wraps a backend and injects transient faults into its calls; see the
/// module docs for the kinds.
#[derive(Debug)]
pub struct FaultInjector<B> {
    inner: B,
    config: FaultConfig,
    rng: Mutex<SplitMix64>,
    counter: FaultCounter,
}

impl<B: Backend> FaultInjector<B> {
    /// Wraps `inner`, counting faults in a counter of its own.
    pub fn new(inner: B, config: FaultConfig) -> Self {
        FaultInjector::with_counter(inner, config, FaultCounter::new())
    }

    /// Wraps `inner`, counting faults in `counter` (shared with others).
    pub fn with_counter(inner: B, config: FaultConfig, counter: FaultCounter) -> Self {
        let rng = Mutex::new(SplitMix64(config.seed));
        FaultInjector {
            inner,
            config,
            rng,
            counter,
        }
    }

    /// The wrapped backend, to arrange or inspect state without faults.
    pub fn inner(&self) -> &B {
        &self.inner
    }

    /// The faults injected so far (by every injector sharing the counter).
    pub fn counts(&self) -> FaultCounts {
        self.counter.snapshot()
    }

    /// The counter this injector adds to.
    pub fn counter(&self) -> FaultCounter {
        self.counter.clone()
    }

    fn unit(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unit()
    }

    /// The fault for the next call, if any; `get` says whether the call is
    /// a get (the only kind of call with a body to break).
    fn draw(&self, get: bool) -> Option<FaultKind> {
        let c = &self.config;
        if self.unit() >= c.rate {
            return None;
        }
        let mid_stream = if get { c.mid_stream } else { 0.0 };
        let kinds = [
            (FaultKind::Before, c.before),
            (FaultKind::After, c.after),
            (FaultKind::Slow, c.slow),
            (FaultKind::MidStream, mid_stream),
        ];
        let total: f64 = kinds.iter().map(|(_, w)| w.max(0.0)).sum();
        let mut pick = self.unit() * total;
        for (kind, weight) in kinds {
            let weight = weight.max(0.0);
            if pick < weight {
                return Some(kind);
            }
            pick -= weight;
        }
        None
    }

    /// Runs `call` (not yet polled) with `fault`.
    async fn call<T>(
        &self,
        fault: Option<FaultKind>,
        operation: &str,
        key: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let Some(kind) = fault.filter(|k| *k != FaultKind::MidStream) else {
            return call.await;
        };
        self.counter.add(kind);
        let injected = |when: &str| injected(format!("{when} {operation} of {key:?}"));
        match kind {
            FaultKind::Before => {
                // Dropped unpolled: nothing applied, a put's body unread.
                drop(call);
                Err(injected("refused"))
            }
            FaultKind::After => {
                let _lost = call.await;
                Err(injected("lost the answer of"))
            }
            _ if self.unit() < 0.5 => {
                tokio::time::sleep(self.config.slow_delay).await;
                call.await
            }
            _ => {
                let answer = call.await;
                tokio::time::sleep(self.config.slow_delay).await;
                answer
            }
        }
    }

    /// Runs a call that is not a get.
    async fn plain<T>(
        &self,
        operation: &str,
        key: &str,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        self.call(self.draw(false), operation, key, call).await
    }

    /// `body` (of `len` bytes), broken after a random number of its bytes.
    fn broken(&self, key: &Key, body: ByteStream, len: u64) -> ByteStream {
        if len == 0 {
            return body;
        }
        self.counter.add(FaultKind::MidStream);
        let cut = ((self.unit() * len as f64) as u64).min(len - 1);
        break_after(body, cut, key.to_string())
    }
}

fn injected(what: String) -> Error {
    Error::Backend {
        transient: true,
        message: format!("injected fault: {what}"),
        source: None,
    }
}

/// Passes the first `cut` bytes of `body`, then fails with a transient
/// error instead of the rest.
fn break_after(body: ByteStream, cut: u64, key: String) -> ByteStream {
    let state = (Some(body), 0u64);
    stream::unfold(state, move |(body, passed)| {
        let key = key.clone();
        async move {
            let mut body = body?;
            if passed >= cut {
                let broken = injected(format!("the body of {key:?} broke after {cut} bytes"));
                return Some((Err(broken), (None, passed)));
            }
            match body.next().await {
                Some(Ok(chunk)) if passed + chunk.len() as u64 > cut => {
                    let head = chunk.slice(..(cut - passed) as usize);
                    Some((Ok(head), (Some(body), cut)))
                }
                Some(Ok(chunk)) => {
                    let passed = passed + chunk.len() as u64;
                    Some((Ok(chunk), (Some(body), passed)))
                }
                Some(Err(e)) => Some((Err(e), (None, passed))),
                None => None,
            }
        }
    })
    .filter(|item| futures::future::ready(!matches!(item, Ok(chunk) if chunk.is_empty())))
    .boxed()
}

#[async_trait]
impl<B: Backend> Backend for FaultInjector<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    /// Forwarded without faults: a URL is not a call to the store.
    async fn presign(
        &self,
        method: storage_core::PresignMethod,
        key: &Key,
        expires_in: std::time::Duration,
    ) -> Result<String> {
        self.inner.presign(method, key, expires_in).await
    }

    async fn health(&self) -> Result<()> {
        self.inner.health().await
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.plain("put", key.as_str(), self.inner.put(key, body, options))
            .await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let fault = self.draw(true);
        let result = self
            .call(fault, "get", key.as_str(), self.inner.get(key, options))
            .await?;
        if fault != Some(FaultKind::MidStream) {
            return Ok(result);
        }
        let GetResult {
            meta, range, body, ..
        } = result;
        let body = self.broken(key, body, range.end - range.start);
        Ok(GetResult::new(meta, range, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.plain("head", key.as_str(), self.inner.head(key)).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.plain("delete", key.as_str(), self.inner.delete(key, options))
            .await
    }

    /// One faulty call of the inner backend's `delete_many` (so a batch
    /// fails, or loses its answer, as a whole).
    async fn delete_many(&self, keys: &[Key]) -> Result<Vec<Result<()>>> {
        let first = keys.first().map_or("", Key::as_str);
        self.plain("delete_many", first, self.inner.delete_many(keys))
            .await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.plain("list", &options.prefix, self.inner.list(options))
            .await
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.plain("copy", to.as_str(), self.inner.copy(from, to, mode))
            .await
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.inner.watch(prefix).await
    }

    /// One faulty call where the inner backend promotes atomically (as its
    /// capabilities, forwarded, say); otherwise the default copy-then-delete
    /// through this layer, each step faulty on its own.
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        if self.inner.capabilities().atomic_promote {
            return self
                .plain("promote", key.as_str(), self.inner.promote(key, txn, mode))
                .await;
        }
        storage_core::raw::promote_by_copy(self, key, txn, mode).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::TryStreamExt;
    use storage_core::{BackendExt, MemoryBackend};

    fn only(config: FaultConfig) -> FaultInjector<MemoryBackend> {
        FaultInjector::new(MemoryBackend::new(), config)
    }

    #[tokio::test]
    async fn a_fault_before_the_call_applies_nothing_and_leaves_the_body_unread() {
        let faulty = only(FaultConfig::only(FaultKind::Before, 1.0));
        let pulled = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&pulled);
        let body = stream::iter([Ok(Bytes::from_static(b"x"))])
            .inspect(move |_| {
                counted.fetch_add(1, Ordering::Relaxed);
            })
            .boxed();
        let key = Key::new("k").expect("valid key");
        let put = faulty
            .put(&key, Body::stream(body, None), PutOptions::default())
            .await;
        assert!(put.is_err_and(|e| e.is_transient()));
        assert_eq!(pulled.load(Ordering::Relaxed), 0, "the body was read");
        assert!(!faulty.inner().exists(&key).await.expect("head"));
    }

    #[tokio::test]
    async fn a_fault_after_the_call_applies_the_write_and_loses_the_answer() {
        let faulty = only(FaultConfig::only(FaultKind::After, 1.0));
        let put = faulty.put_bytes("k", "applied").await;
        assert!(put.is_err_and(|e| e.is_transient()));
        assert_eq!(faulty.inner().get_bytes("k").await.expect("get"), "applied");
        assert_eq!(faulty.counts().after, 1);
    }

    #[tokio::test]
    async fn a_broken_body_passes_a_prefix_then_fails_transiently() {
        let faulty = only(FaultConfig::only(FaultKind::MidStream, 1.0));
        faulty
            .inner()
            .put_bytes("k", vec![7u8; 1000])
            .await
            .expect("put");
        let got = faulty
            .get(&Key::new("k").expect("valid key"), GetOptions::default())
            .await
            .expect("get");
        let mut body = got.body;
        let mut passed = 0;
        let error = loop {
            match body.try_next().await {
                Ok(Some(chunk)) => passed += chunk.len(),
                Ok(None) => panic!("the body ended whole"),
                Err(e) => break e,
            }
        };
        assert!(error.is_transient(), "{error}");
        assert!(passed < 1000, "{passed} bytes passed");
        assert_eq!(faulty.counts().mid_stream, 1);
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draws = |seed| {
            let faulty = only(FaultConfig::uniform(0.5).with_seed(seed));
            (0..100)
                .map(|i| format!("{:?}", faulty.draw(i % 2 == 0)))
                .collect::<Vec<_>>()
        };
        assert_eq!(draws(3), draws(3));
        assert_ne!(draws(3), draws(4));
    }
}
