//! `cargo xtask conformance --retry`: every backend through
//! `Retry<FaultInjector<B>>`, with 30 % of calls faulted (DESIGN section 5;
//! issue 10). The contract must hold as if no fault happened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use storage_conformance::faults::{FaultConfig, FaultCounter, FaultInjector};
use storage_conformance::{BackendFactory, Check, Declared, Hooks};
use storage_core::Backend;
use storage_retry::{Retry, RetryPolicy};

/// Share of calls faulted, split among the kinds that apply (slow calls at
/// [`SLOW_WEIGHT`], the others evenly; see
/// [`FaultConfig::uniform`]).
pub const FAULT_RATE: f64 = 0.3;

/// How long a slow call is held: past [`policy`]'s per-attempt limit.
const SLOW: Duration = Duration::from_millis(300);

/// Weight of slow calls among the faults, against 1.0 for each other kind:
/// a slow call costs the per-attempt limit (200 ms) before it is retried,
/// and at the uniform weight slow calls were the larger part of a matrix
/// run's time on CI (over 1,000 per backend). At a quarter, 30 % of calls
/// are still faulted, about 3 % of puts are slow, and every check still
/// meets them.
const SLOW_WEIGHT: f64 = 0.25;

/// The policy of the fault runs: short delays (1 ms doubling to 50 ms) so
/// that the suite stays fast, 200 ms per attempt plus 1 s per 4 MiB of body
/// (the test servers answer small requests in a few ms; a 64 MiB put through
/// encryption to LogStore, fsync included, once took over 8 s on the 2-core
/// CI machine), 20 attempts: with
/// 30 % of calls faulted independently, 10 attempts all fail for one call
/// in 170,000 (0.3¹⁰), which the tens of thousands of calls of a matrix run
/// meet now and then; 20 attempts make it one in 3·10¹⁰.
pub fn policy() -> RetryPolicy {
    RetryPolicy::default()
        .with_max_attempts(20)
        .with_base_delay(Duration::from_millis(1))
        .with_cap_delay(Duration::from_millis(50))
        .with_attempt_timeout(Duration::from_millis(200))
        .with_min_throughput(4 << 20)
        .with_deadline(Duration::from_secs(120))
}

/// A seed per check: each check meets the same faults on every run.
fn seed(check: &str) -> u64 {
    check.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Wraps a factory: each backend it makes is put behind a fault injector and
/// `Retry`.
pub struct Faulty {
    inner: Box<dyn BackendFactory>,
    /// Whether `Encrypted` sits between `Retry` and the fault injector.
    encrypt: bool,
    name: String,
    counter: FaultCounter,
    /// The unwrapped backend of each check, for the inner factory's hooks.
    raw: Mutex<HashMap<String, Arc<dyn Backend>>>,
}

impl Faulty {
    /// Wraps `inner`.
    pub fn new(inner: Box<dyn BackendFactory>) -> Self {
        let name = format!("{}+faults+retry", inner.name());
        Faulty {
            inner,
            encrypt: false,
            name,
            counter: FaultCounter::new(),
            raw: Mutex::default(),
        }
    }

    /// Wraps `inner` as `Retry<Encrypted<FaultInjector<B>>>`: the
    /// recommended order of the two layers.
    pub fn encrypted(inner: Box<dyn BackendFactory>) -> Self {
        let name = format!("{}+faults+crypto+retry", inner.name());
        Faulty {
            encrypt: true,
            name,
            ..Faulty::new(inner)
        }
    }

    /// The counter of the faults injected, for the report.
    pub fn counter(&self) -> FaultCounter {
        self.counter.clone()
    }
}

#[async_trait]
impl BackendFactory for Faulty {
    fn name(&self) -> &str {
        &self.name
    }

    fn server(&self) -> Option<String> {
        self.inner.server()
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        let raw = self.inner.create(check).await?;
        self.raw
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(check.to_owned(), Arc::clone(&raw));
        let config = FaultConfig {
            slow: SLOW_WEIGHT,
            ..FaultConfig::uniform(FAULT_RATE)
                .with_seed(seed(check))
                .with_slow_delay(SLOW)
        };
        let faulty: Arc<dyn Backend> = Arc::new(FaultInjector::with_counter(
            raw,
            config,
            self.counter.clone(),
        ));
        let middle = if self.encrypt {
            crate::encrypted::encrypt(faulty)
        } else {
            faulty
        };
        Ok(Arc::new(Retry::with_policy(middle, policy())))
    }

    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let raw = self
            .raw
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(check);
        let raw = raw.unwrap_or_else(|| Arc::clone(backend));
        let hooks = self.inner.hooks(check, &raw);
        if self.encrypt {
            crate::encrypted::hooks(hooks, raw)
        } else {
            hooks
        }
    }

    /// The inner factory's limitations; those about conditional deletes may
    /// pass: `Retry` checks a conditional delete's ETag itself before
    /// sending it, which can hide a server's ignored condition.
    fn limitation(&self, check: &Check) -> Option<Declared> {
        let hidden = matches!(
            check.name,
            "delete_if_match_with_a_stale_etag_keeps_the_object" | "linearizability"
        );
        let inner = self.inner.limitation(check);
        let inner = if self.encrypt {
            // `Retry` promotes by its default, a copy through the layer
            // below it, and the encryption layer copies through the client
            // with a conditional put the servers honour.
            crate::encrypted::limitation(inner, check).filter(|_| {
                check.name != "promote_honours_its_condition_and_keeps_the_staged_write"
            })
        } else {
            inner
        };
        inner.map(|declared| Declared {
            may_pass: if hidden {
                Some("Retry checks a conditional delete's ETag itself before sending it, which can hide the server's fault".to_owned())
            } else {
                declared.may_pass.clone()
            },
            ..declared
        })
    }
}
