//! What to retry, how long to wait and when to give up: [`RetryPolicy`],
//! its jittered [`Backoff`], and the [`RetryEvent`] its observer is told of.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rand::Rng;
use storage_core::raw::{PartFailure, PartRetry};
use storage_core::{Error, Result};
use tokio::time::Instant;

/// Attempts of one operation, the first included (object_store's
/// `max_retries` of 10, counted here as attempts).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;

/// Time after an operation's start past which no retry begins: 3 minutes
/// (object_store's `retry_timeout`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);

/// Ceiling of the first retry's delay: 100 ms (object_store's
/// `init_backoff`).
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(100);

/// Largest ceiling of any delay: 15 s (object_store's `max_backoff`).
pub const DEFAULT_CAP_DELAY: Duration = Duration::from_secs(15);

/// Time limit of one attempt without a body: 30 s (object_store's request
/// `timeout`).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// Slowest transfer an attempt with a body of known length is allowed,
/// in bytes per second: 1 MiB/s, so each MiB adds one second to the limit.
pub const DEFAULT_MIN_THROUGHPUT: u64 = 1024 * 1024;

/// Largest read that is buffered whole within its attempt: 1 MiB.
pub const DEFAULT_WHOLE_READ_LIMIT: u64 = 1024 * 1024;

/// The operation a [`RetryEvent`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// [`Backend::put`](storage_core::Backend::put).
    Put,
    /// [`Backend::get`](storage_core::Backend::get), until the result arrives.
    Get,
    /// A read resumed after its body failed mid-way.
    ResumeRead,
    /// [`Backend::head`](storage_core::Backend::head), including the heads
    /// that settle an ambiguous write.
    Head,
    /// [`Backend::delete`](storage_core::Backend::delete).
    Delete,
    /// [`Backend::list`](storage_core::Backend::list).
    List,
    /// [`Backend::copy`](storage_core::Backend::copy).
    Copy,
    /// [`Backend::promote`](storage_core::Backend::promote) on a backend
    /// that promotes in one atomic step.
    Promote,
    /// One call of a chunked upload inside a put (a part, block or chunk,
    /// or the upload's initiation or abort), retried by the upload engine
    /// of the backend below with this policy
    /// ([`storage_core::raw::upload`]).
    UploadPart,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Put => "put",
            Operation::Get => "get",
            Operation::ResumeRead => "resumed read",
            Operation::Head => "head",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::Copy => "copy",
            Operation::Promote => "promote",
            Operation::UploadPart => "upload of a part",
        })
    }
}

/// One retry about to happen, as the observer of a [`RetryPolicy`] sees it:
/// attempt `attempt` of `operation` failed with `error`, and the next
/// attempt starts after `delay`.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryEvent<'a> {
    /// What was being done.
    pub operation: Operation,
    /// The key, or the listing prefix; `None` where there is neither.
    pub key: Option<&'a str>,
    /// The number of the attempt that failed, from 1.
    pub attempt: u32,
    /// The jittered delay before the next attempt.
    pub delay: Duration,
    /// The transient error the attempt failed with.
    pub error: &'a Error,
}

/// A function told of every retry, for logs and metrics.
pub type Observer = Arc<dyn Fn(&RetryEvent<'_>) + Send + Sync>;

/// How [`Retry`](crate::Retry) retries: exponential backoff with full
/// jitter, bounded by a number of attempts and a total deadline, with a time
/// limit per attempt.
///
/// The delay before retry `n` (0 for the first retry) is drawn uniformly
/// from `[0, min(cap, base · 2ⁿ)]`: "full jitter" from AWS's
/// *Exponential Backoff and Jitter* (Marc Brooker, 2015), which spreads
/// competing clients out better than a fixed or additive jitter. The
/// exponential ceilings come from `backon`'s [`ExponentialBuilder`].
///
/// The defaults follow object_store's `RetryConfig`:
///
/// | setting | default |
/// |---|---|
/// | attempts, the first included | 10 ([`DEFAULT_MAX_ATTEMPTS`]) |
/// | deadline | 3 min ([`DEFAULT_DEADLINE`]) |
/// | base delay | 100 ms ([`DEFAULT_BASE_DELAY`]) |
/// | cap delay | 15 s ([`DEFAULT_CAP_DELAY`]) |
/// | attempt timeout | 30 s ([`DEFAULT_ATTEMPT_TIMEOUT`]) |
/// | minimum throughput | 1 MiB/s ([`DEFAULT_MIN_THROUGHPUT`]) |
/// | largest read buffered whole | 1 MiB ([`DEFAULT_WHOLE_READ_LIMIT`]) |
///
/// The deadline is measured from the operation's start and bounds when a
/// retry may begin: a retry whose delay would end past it is not made, and
/// the last error is returned. An attempt already running is bounded by its
/// own time limit, not cut by the deadline (as in object_store), so that a
/// large upload is never abandoned half-way by a deadline meant for retries.
///
/// ```
/// use std::time::Duration;
/// use storage_retry::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .with_max_attempts(5)
///     .with_deadline(Duration::from_secs(30))
///     .with_observer(|event| eprintln!("retrying {} of {:?}: {}", event.operation, event.key, event.error));
/// assert_eq!(policy.max_attempts(), 5);
/// // 30 s plus one second per MiB at the default 1 MiB/s.
/// assert_eq!(policy.attempt_timeout_for(Some(8 << 20)), Some(Duration::from_secs(38)));
/// ```
#[derive(Clone)]
pub struct RetryPolicy {
    base_delay: Duration,
    cap_delay: Duration,
    max_attempts: u32,
    deadline: Duration,
    attempt_timeout: Duration,
    min_throughput: u64,
    whole_read_limit: u64,
    observer: Option<Observer>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base_delay: DEFAULT_BASE_DELAY,
            cap_delay: DEFAULT_CAP_DELAY,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline: DEFAULT_DEADLINE,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            min_throughput: DEFAULT_MIN_THROUGHPUT,
            whole_read_limit: DEFAULT_WHOLE_READ_LIMIT,
            observer: None,
        }
    }
}

impl fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryPolicy")
            .field("base_delay", &self.base_delay)
            .field("cap_delay", &self.cap_delay)
            .field("max_attempts", &self.max_attempts)
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("min_throughput", &self.min_throughput)
            .field("whole_read_limit", &self.whole_read_limit)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl RetryPolicy {
    /// The default policy (see the table in the type's docs).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the ceiling of the first retry's delay; later ceilings double.
    /// A base above the cap is lowered to the cap.
    pub fn with_base_delay(mut self, base: Duration) -> Self {
        self.base_delay = base;
        self
    }

    /// Sets the largest ceiling any delay is drawn under.
    pub fn with_cap_delay(mut self, cap: Duration) -> Self {
        self.cap_delay = cap;
        self
    }

    /// Sets the number of attempts per operation, the first included; 1
    /// means no retries, and 0 is taken as 1.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets the time from an operation's start after which no retry begins.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets the time limit of one attempt that sends no body (get until its
    /// result arrives, head, delete, list), and the fixed part of the limit
    /// of a put; see [`RetryPolicy::attempt_timeout_for`].
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets the slowest transfer a put of known length may make, in bytes
    /// per second; 0 is taken as 1.
    pub fn with_min_throughput(mut self, bytes_per_second: u64) -> Self {
        self.min_throughput = bytes_per_second.max(1);
        self
    }

    /// Sets the largest read, in bytes, that is read into memory within its
    /// attempt: a failure of its body then fails the attempt, and the get is
    /// retried whole (and may serve a newer version, with its own metadata).
    /// Longer reads are streamed, and resume from the next byte of the same
    /// version when their body fails (see [`read`](crate::read)). 0 streams
    /// every read but empty ones.
    pub fn with_whole_read_limit(mut self, bytes: u64) -> Self {
        self.whole_read_limit = bytes;
        self
    }

    /// Sets the function told of every retry (not of first attempts, nor of
    /// failures that end the operation), for logs and metrics. It runs on
    /// the operation's task before the delay: keep it short.
    pub fn with_observer(
        mut self,
        observer: impl Fn(&RetryEvent<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }

    /// The ceiling of the first retry's delay.
    pub fn base_delay(&self) -> Duration {
        self.base_delay.min(self.cap_delay)
    }

    /// The largest ceiling of any delay.
    pub fn cap_delay(&self) -> Duration {
        self.cap_delay
    }

    /// Attempts per operation, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Time from an operation's start after which no retry begins.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Time limit of one attempt that sends no body.
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout
    }

    /// Slowest allowed transfer of a put, in bytes per second.
    pub fn min_throughput(&self) -> u64 {
        self.min_throughput
    }

    /// Largest read buffered whole within its attempt, in bytes.
    pub fn whole_read_limit(&self) -> u64 {
        self.whole_read_limit
    }

    /// The time limit of one put attempt sending `len` bytes: the attempt
    /// timeout plus the time `len` bytes take at the minimum throughput,
    /// `attempt_timeout + len / min_throughput` (so 30 s + 1 s per MiB by
    /// default). `None` (no limit) for a body of unknown length, which may
    /// legitimately take any time; the backend's own request timeouts still
    /// apply.
    pub fn attempt_timeout_for(&self, len: Option<u64>) -> Option<Duration> {
        let len = len?;
        let transfer = Duration::from_secs_f64(len as f64 / self.min_throughput as f64);
        Some(self.attempt_timeout.saturating_add(transfer))
    }

    /// The exact ceiling of retry `n`'s delay (0 for the first retry):
    /// `min(cap, base · 2ⁿ)`.
    pub fn delay_ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base_delay()
            .checked_mul(factor)
            .map_or(self.cap_delay, |d| d.min(self.cap_delay))
    }

    /// The jittered delays of one operation's retries, in order: at most
    /// `max_attempts - 1` of them, retry `n`'s drawn uniformly from
    /// `[0, `[`delay_ceiling(n)`](RetryPolicy::delay_ceiling)`]`. The
    /// deadline is not applied here; the retrying layer applies it.
    pub fn backoff(&self) -> Backoff {
        let exponential = ExponentialBuilder::new()
            .with_min_delay(self.base_delay())
            .with_max_delay(self.cap_delay)
            .with_factor(2.0)
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build();
        Backoff {
            policy: self.clone(),
            exponential,
            retry: 0,
        }
    }

    fn notify(&self, event: &RetryEvent<'_>) {
        if let Some(observer) = &self.observer {
            observer(event);
        }
    }
}

/// Parts, blocks and chunks of the uploads made under a [`Retry`] layer are
/// retried with its policy: the same attempts, deadline (from the call's
/// first attempt), delays, time limit per attempt (by the part's size) and
/// observer ([`Operation::UploadPart`]).
///
/// [`Retry`]: crate::Retry
impl PartRetry for RetryPolicy {
    fn delay(&self, failure: &PartFailure<'_>) -> Option<Duration> {
        if failure.retry.saturating_add(1) >= self.max_attempts {
            return None;
        }
        let delay = full_jitter(self.delay_ceiling(failure.retry));
        if failure.elapsed.saturating_add(delay) > self.deadline {
            return None;
        }
        self.notify(&RetryEvent {
            operation: Operation::UploadPart,
            key: Some(failure.key),
            attempt: failure.retry.saturating_add(1),
            delay,
            error: failure.error,
        });
        Some(delay)
    }

    fn attempt_timeout(&self, len: u64) -> Option<Duration> {
        self.attempt_timeout_for(Some(len))
    }
}

/// The jittered delays of one operation's retries; see
/// [`RetryPolicy::backoff`].
#[derive(Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    exponential: ExponentialBackoff,
    retry: u32,
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        // backon computes the doubling in f32; the exact ceiling keeps the
        // documented bound exact to the nanosecond.
        let ceiling = self
            .exponential
            .next()?
            .min(self.policy.delay_ceiling(self.retry));
        self.retry = self.retry.saturating_add(1);
        Some(full_jitter(ceiling))
    }
}

/// A delay drawn uniformly from `[0, ceiling]`, to the nanosecond.
fn full_jitter(ceiling: Duration) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// The retries of one operation: counts attempts, applies the deadline,
/// tells the observer and sleeps. Cheap to start: the backoff is built at
/// the first retry.
#[derive(Debug)]
pub(crate) struct Attempts {
    operation: Operation,
    started: Instant,
    backoff: Option<Backoff>,
    attempt: u32,
}

impl Attempts {
    /// The retries of an operation starting now.
    pub(crate) fn start(operation: Operation) -> Self {
        Attempts {
            operation,
            started: Instant::now(),
            backoff: None,
            attempt: 1,
        }
    }

    /// After an attempt failed with the transient `error`: waits the next
    /// delay of `policy` and returns, or returns the error when no attempt
    /// is left or the delay would end past the deadline.
    pub(crate) async fn wait(
        &mut self,
        policy: &RetryPolicy,
        key: Option<&str>,
        error: Error,
    ) -> Result<()> {
        let backoff = self.backoff.get_or_insert_with(|| policy.backoff());
        let Some(delay) = backoff.next() else {
            return Err(error);
        };
        if self.started.elapsed().saturating_add(delay) > policy.deadline {
            return Err(error);
        }
        policy.notify(&RetryEvent {
            operation: self.operation,
            key,
            attempt: self.attempt,
            delay,
            error: &error,
        });
        drop(error);
        self.attempt += 1;
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Runs one attempt under `limit` (none when `None`); past it, the attempt
/// is dropped and the result is a transient [`Error::Backend`] whose outcome
/// is unknown.
pub(crate) async fn within<T>(
    limit: Option<Duration>,
    attempt: impl Future<Output = Result<T>>,
    operation: Operation,
    key: Option<&str>,
) -> Result<T> {
    let Some(limit) = limit else {
        return attempt.await;
    };
    let mut attempt = std::pin::pin!(attempt);
    // An answer ready at the first poll (memory, cached reads) needs no
    // timer, nor a clock reading: the limit runs from the first poll's end.
    if let std::task::Poll::Ready(out) = futures::poll!(attempt.as_mut()) {
        return out;
    }
    storage_core::raw::timeout::within(limit, attempt, || match key {
        Some(key) => format!("{operation} of {key}"),
        None => operation.to_string(),
    })
    .await?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy::default()
            .with_base_delay(Duration::from_millis(100))
            .with_cap_delay(Duration::from_secs(15))
    }

    #[test]
    fn ceilings_double_from_the_base_up_to_the_cap() {
        let p = policy();
        let ceilings: Vec<u64> = (0..10)
            .map(|n| p.delay_ceiling(n).as_millis() as u64)
            .collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 3200, 6400, 12_800, 15_000, 15_000]
        );
        assert_eq!(p.delay_ceiling(200), Duration::from_secs(15));
    }

    #[test]
    fn every_delay_lies_within_zero_and_its_ceiling() {
        let p = policy();
        for _ in 0..2000 {
            for (n, delay) in p.backoff().enumerate() {
                let ceiling = p.delay_ceiling(n as u32);
                assert!(delay <= ceiling, "retry {n}: {delay:?} > {ceiling:?}");
            }
        }
    }

    #[test]
    fn backoff_yields_one_delay_per_retry() {
        assert_eq!(
            policy().backoff().count(),
            DEFAULT_MAX_ATTEMPTS as usize - 1
        );
        assert_eq!(policy().with_max_attempts(1).backoff().count(), 0);
    }

    #[test]
    fn attempt_timeout_grows_one_second_per_mib_by_default() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.attempt_timeout_for(Some(0)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            p.attempt_timeout_for(Some(64 << 20)),
            Some(Duration::from_secs(94))
        );
        assert_eq!(p.attempt_timeout_for(None), None);
    }

    #[test]
    fn part_retries_follow_the_policy_and_tell_the_observer() {
        let told = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&told);
        let policy = policy().with_max_attempts(3).with_observer(move |event| {
            assert_eq!(event.operation, Operation::UploadPart);
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let error = Error::backend(true, "503", "test");
        let failure = |retry| PartFailure::new("k", Some(4), retry, Duration::ZERO, &error);
        let delays: Vec<_> = (0..3).map(|retry| policy.delay(&failure(retry))).collect();
        assert!(delays[0].is_some_and(|d| d <= policy.delay_ceiling(0)));
        assert!(delays[1].is_some_and(|d| d <= policy.delay_ceiling(1)));
        assert_eq!(delays[2], None);
        assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
