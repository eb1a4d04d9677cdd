//! The whole contract suite through `Retry` over a fault injector that
//! faults 30 % of calls and 30 % of read bodies, on memory.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use storage_conformance::faults::{FaultConfig, FaultCounter, FaultInjector};
use storage_conformance::{Filter, FnFactory, Status, assert_no_failures, run, suites};
use storage_core::{Backend, MemoryBackend};
use storage_retry::Retry;

/// Slow calls are held longer than the policy's 50 ms per attempt.
const SLOW: Duration = Duration::from_millis(100);

/// A seed per check, so that each check meets the same faults every run.
fn seed(check: &str) -> u64 {
    check.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The fast policy with 20 attempts: at 30 % faults, ten attempts all
/// fail once in 170,000 calls (0.3^10), and the suite makes well over ten
/// thousand (the CAS counter alone: 1,600 increments by 16 tasks, each a
/// read and a compare-and-swap, both again on every conflict), so with the
/// default of ten an exhausted policy failed a CI run (2026-12-02); with
/// 20, once in 3·10^10 calls.
fn policy() -> storage_retry::RetryPolicy {
    common::fast_policy().with_max_attempts(20)
}

/// What the factory's closure returns.
type Made = futures::future::Ready<Result<Arc<dyn Backend>, String>>;

fn factory(counter: FaultCounter) -> FnFactory<impl Fn(String) -> Made> {
    FnFactory::new("memory+faults+retry", move |check: String| {
        let config = FaultConfig::uniform(0.3)
            .with_seed(seed(&check))
            .with_slow_delay(SLOW);
        let faulty = FaultInjector::with_counter(MemoryBackend::new(), config, counter.clone());
        let backend: Arc<dyn Backend> = Arc::new(Retry::with_policy(faulty, policy()));
        futures::future::ready(Ok(backend))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_through_retry_with_30_percent_faults_of_every_kind() {
    let counter = FaultCounter::new();
    let started = Instant::now();
    let report = run(
        &factory(counter.clone()),
        &suites::all(),
        &Filter::default(),
    )
    .await;
    let faults = counter.snapshot();
    println!(
        "{} checks in {:.1} s; injected {faults}",
        report.checks.len(),
        started.elapsed().as_secs_f64()
    );
    for check in report.checks.iter().filter(|c| c.ms > 2000) {
        println!(
            "  slow check {}/{}: {} ms",
            check.suite, check.name, check.ms
        );
    }
    assert!(faults.before > 0 && faults.after > 0 && faults.slow > 0 && faults.mid_stream > 0);
    assert_no_failures(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cas_counter_ends_exact_through_retry_with_30_percent_faults() {
    let counter = FaultCounter::new();
    let filter = Filter {
        names: vec!["cas_counter_16_tasks_100_increments_ends_at_1600".into()],
        ..Filter::default()
    };
    let report = run(&factory(counter.clone()), &suites::all(), &filter).await;
    println!("injected {}", counter.snapshot());
    assert_eq!(report.checks.len(), 1, "the counter check was not found");
    assert_eq!(
        report.checks[0].status,
        Status::Passed,
        "{:?}",
        report.checks[0].message
    );
}
