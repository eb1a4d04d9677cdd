//! Running checks against a backend and reporting the outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use storage_core::Backend;

use crate::{Check, Hooks};

/// Makes a fresh, empty backend for each check.
#[async_trait]
pub trait BackendFactory: Send + Sync {
    /// The backend's name in reports, for example `"fs"`.
    fn name(&self) -> &str;

    /// The test server and its version, for remote backends.
    fn server(&self) -> Option<String> {
        None
    }

    /// A fresh backend holding no objects, for the check named
    /// `suite/name`.
    ///
    /// # Errors
    /// A message saying why the backend could not be made; the check fails
    /// with it.
    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String>;

    /// The [`Hooks`] this factory offers for `backend`, just made by
    /// [`BackendFactory::create`] for the check `check`. None by default:
    /// the checks that need one are reported as unsupported.
    fn hooks(&self, check: &str, backend: &Arc<dyn Backend>) -> Hooks {
        let _ = (check, backend);
        Hooks::default()
    }

    /// A rule the test server cannot honour: the check is reported as a
    /// declared limitation with this reason when it fails, and as failed when
    /// it passes (the declaration is stale).
    fn limitation(&self, _check: &Check) -> Option<Declared> {
        None
    }
}

/// The limitation of a backend seen through a namespace prefix
/// (`storage_core::Prefixed`, or a cloud backend's own prefix) of
/// `prefix_len` bytes: the checks that write keys of exactly 1,024 bytes
/// cannot, since the prefix takes part of the limit, and get
/// [`Error::InvalidKey`](storage_core::Error::InvalidKey) instead. `None`
/// for every other check, and for an empty prefix.
pub fn prefix_limitation(prefix_len: usize, check: &Check) -> Option<Declared> {
    let full_length = matches!(
        (check.suite, check.name),
        ("errors", "key_of_exactly_1024_bytes_is_stored")
            | (
                "staging",
                "staging_past_the_key_length_limit_is_an_invalid_key"
            )
    );
    (full_length && prefix_len > 0).then(|| Declared {
        reason: format!(
            "the namespace prefix takes {prefix_len} of the 1,024 bytes a stored key may have"
        ),
        fails_with: "a key must be at most 1024 bytes".to_owned(),
        may_pass: None,
    })
}

/// A rule a test server cannot honour, as a factory declares it for one
/// check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// What the server does instead, naming the server.
    pub reason: String,
    /// A phrase the check's failure message holds when it fails for the
    /// declared reason; any other failure is reported as a failure.
    pub fails_with: String,
    /// Why the check may pass on this server all the same (the server
    /// breaks the rule only under some interleavings, or a layer under test
    /// hides it): a pass is then reported as a limitation, with this reason,
    /// instead of as a stale declaration.
    pub may_pass: Option<String>,
}

/// Which checks to run: all of them, or those whose suite and name match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Suites to run; empty means every suite.
    pub suites: Vec<String>,
    /// Substrings of check names; a check runs if its name contains one.
    /// Empty means every check.
    pub names: Vec<String>,
    /// Report checks the factory declares as server limitations as what they
    /// are (passed or failed), without the declaration.
    pub ignore_limitations: bool,
}

impl Filter {
    /// Whether `check` is selected.
    pub fn matches(&self, check: &Check) -> bool {
        (self.suites.is_empty() || self.suites.iter().any(|s| s == check.suite))
            && (self.names.is_empty() || self.names.iter().any(|n| check.name.contains(n.as_str())))
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The rule held.
    Passed,
    /// The rule was broken; the message says how.
    Failed,
    /// The backend's capabilities lack what the check needs.
    Unsupported,
    /// The test server cannot honour the rule; the message says why.
    Limitation,
}

/// One check's line in a report (the JSON shape of DESIGN section 6).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// Its suite.
    pub suite: String,
    /// Its name.
    pub name: String,
    /// The outcome.
    pub status: Status,
    /// Wall time in milliseconds.
    pub ms: u64,
    /// Why it failed, is unsupported or is a limitation.
    pub message: Option<String>,
}

/// Every check's outcome for one backend.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendReport {
    /// The backend's name.
    pub name: String,
    /// The test server, for remote backends.
    pub server: Option<String>,
    /// What else the run observed, for example how many faults were
    /// injected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// One entry per check run: checks marked [`Check::first`], then the
    /// rest in suite order.
    pub checks: Vec<CheckReport>,
}

/// Counts of each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks the backend does not support.
    pub unsupported: usize,
    /// Checks the test server cannot honour.
    pub limitation: usize,
}

impl Tally {
    fn add(&mut self, status: Status) {
        match status {
            Status::Passed => self.passed += 1,
            Status::Failed => self.failed += 1,
            Status::Unsupported => self.unsupported += 1,
            Status::Limitation => self.limitation += 1,
        }
    }
}

impl BackendReport {
    /// Status counts per suite, suites in name order.
    pub fn by_suite(&self) -> BTreeMap<&str, Tally> {
        let mut out: BTreeMap<&str, Tally> = BTreeMap::new();
        for check in &self.checks {
            out.entry(check.suite.as_str())
                .or_default()
                .add(check.status);
        }
        out
    }

    /// Status counts over every check.
    pub fn total(&self) -> Tally {
        let mut tally = Tally::default();
        for check in &self.checks {
            tally.add(check.status);
        }
        tally
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckReport> {
        self.checks.iter().filter(|c| c.status == Status::Failed)
    }
}

/// Longest a check may run before it is failed as hung.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs the checks selected by `filter`, one at a time, each on a fresh
/// backend from `factory`.
///
/// A check runs in its own task: a panic fails that check and no other. A
/// check the backend's [`Capabilities`](storage_core::Capabilities) cannot
/// support is reported as [`Status::Unsupported`] and not run. A check the
/// factory declares a server limitation is still run, to re-prove the
/// declaration: it is reported as [`Status::Limitation`] when it fails, and
/// as [`Status::Failed`] when it passes (the declaration is stale).
pub async fn run(factory: &dyn BackendFactory, checks: &[Check], filter: &Filter) -> BackendReport {
    let mut report = BackendReport {
        name: factory.name().to_owned(),
        server: factory.server(),
        notes: Vec::new(),
        checks: Vec::new(),
    };
    let selected = checks.iter().filter(|c| filter.matches(c));
    let (first, rest): (Vec<&Check>, Vec<&Check>) = selected.partition(|c| c.first);
    for check in first.into_iter().chain(rest) {
        let started = Instant::now();
        let (status, message) = run_one(factory, check, filter).await;
        report.checks.push(CheckReport {
            suite: check.suite.to_owned(),
            name: check.name.to_owned(),
            status,
            ms: started.elapsed().as_millis() as u64,
            message,
        });
    }
    report
}

async fn run_one(
    factory: &dyn BackendFactory,
    check: &Check,
    filter: &Filter,
) -> (Status, Option<String>) {
    let limitation = factory
        .limitation(check)
        .filter(|_| !filter.ignore_limitations);
    let (status, message) = run_fresh(factory, check).await;
    let Some(Declared {
        reason,
        fails_with,
        may_pass,
    }) = limitation
    else {
        return (status, message);
    };
    let declared_failure = message
        .as_deref()
        .is_some_and(|m| m.contains(fails_with.as_str()));
    // A declared limitation is re-proved on every run: the check must still
    // fail on this server, or the declaration is stale.
    match (status, may_pass) {
        (Status::Passed, Some(why)) => (
            Status::Limitation,
            Some(format!("{reason} (not seen this run: {why})")),
        ),
        (Status::Failed, _) if !declared_failure => (
            Status::Failed,
            Some(format!(
                "{} (declared as a server limitation ({reason}), but this failure does not say {fails_with:?})",
                message.as_deref().unwrap_or("failed")
            )),
        ),
        // A factory without the hook the check needs cannot re-prove the
        // declaration; that is the factory's gap, not the server's.
        (Status::Unsupported, _) if check.needs_a_hook() => (
            Status::Unsupported,
            Some(format!(
                "{} (declared as a server limitation: {reason}; not re-proved here)",
                message.as_deref().unwrap_or("unsupported")
            )),
        ),
        (Status::Unsupported, _) => (
            Status::Failed,
            Some(format!(
                "declared as a server limitation ({reason}) but not run: {}; remove the declaration",
                message.as_deref().unwrap_or("unsupported")
            )),
        ),
        (Status::Failed, _) => (
            Status::Limitation,
            Some(format!(
                "{reason} (re-proved: {})",
                message.as_deref().unwrap_or("failed")
            )),
        ),
        (Status::Passed, None) => (
            Status::Failed,
            Some(format!(
                "declared as a server limitation ({reason}) but passed: remove the declaration"
            )),
        ),
        (other, _) => (other, message),
    }
}

/// Runs `check` on a fresh backend from `factory`, unless its capabilities
/// lack what the check needs.
async fn run_fresh(factory: &dyn BackendFactory, check: &Check) -> (Status, Option<String>) {
    let name = format!("{}/{}", check.suite, check.name);
    let backend = match factory.create(&name).await {
        Ok(backend) => backend,
        Err(message) => {
            return (
                Status::Failed,
                Some(format!("could not create the backend: {message}")),
            );
        }
    };
    let hooks = factory.hooks(&name, &backend);
    if let Some(reason) = check.unsupported_reason(&backend.capabilities(), &hooks) {
        return (
            Status::Unsupported,
            Some(format!("{} {reason}", backend.name())),
        );
    }
    let mut task = tokio::spawn((check.run)(backend, hooks));
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, &mut task).await;
    if outcome.is_err() {
        task.abort();
    }
    match outcome {
        Ok(Ok(Ok(()))) => (Status::Passed, None),
        Ok(Ok(Err(failure))) => (Status::Failed, Some(failure.0)),
        Ok(Err(join)) => (
            Status::Failed,
            Some(format!("the check panicked: {}", panic_message(join))),
        ),
        Err(_) => (
            Status::Failed,
            Some(format!("timed out after {} s", CHECK_TIMEOUT.as_secs())),
        ),
    }
}

fn panic_message(err: tokio::task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a non-string panic".to_owned()),
        Err(err) => err.to_string(),
    }
}

/// A [`BackendFactory`] made from a name and an async closure.
///
/// ```
/// use std::sync::Arc;
/// use storage_conformance::FnFactory;
/// use storage_core::{Backend, MemoryBackend};
/// let factory = FnFactory::new("memory", |_check| async {
///     Ok(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
/// });
/// ```
pub struct FnFactory<F> {
    name: String,
    make: F,
}

impl<F> std::fmt::Debug for FnFactory<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FnFactory({})", self.name)
    }
}

impl<F, Fut> FnFactory<F>
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<Arc<dyn Backend>, String>> + Send,
{
    /// A factory named `name` that calls `make` with the check's
    /// `suite/name` for each check.
    pub fn new(name: impl Into<String>, make: F) -> Self {
        FnFactory {
            name: name.into(),
            make,
        }
    }
}

#[async_trait]
impl<F, Fut> BackendFactory for FnFactory<F>
where
    F: Fn(String) -> Fut + Send + Sync,
    Fut: std::future::Future<Output = Result<Arc<dyn Backend>, String>> + Send,
{
    fn name(&self) -> &str {
        &self.name
    }

    async fn create(&self, check: &str) -> Result<Arc<dyn Backend>, String> {
        (self.make)(check.to_owned()).await
    }
}

/// Panics with the name and message of every failed check, for use in a
/// backend crate's `tests/conformance.rs`; prints the tally either way.
///
/// # Panics
/// When any check failed.
pub fn assert_no_failures(report: &BackendReport) {
    let total = report.total();
    println!(
        "{}: {} passed, {} failed, {} unsupported, {} limitation",
        report.name, total.passed, total.failed, total.unsupported, total.limitation
    );
    for check in report.checks.iter().filter(|c| c.status != Status::Passed) {
        println!(
            "  {:?} {}/{}: {}",
            check.status,
            check.suite,
            check.name,
            check.message.as_deref().unwrap_or("")
        );
    }
    let failures: Vec<String> = report
        .failures()
        .map(|c| {
            format!(
                "{}/{}: {}",
                c.suite,
                c.name,
                c.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
