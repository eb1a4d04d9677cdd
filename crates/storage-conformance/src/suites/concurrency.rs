//! Suite `concurrency`: compare-and-swap under contention, atomic puts and
//! linearizability (DESIGN section 2, rules 1 to 6 under concurrency).

use std::sync::Arc;

use bytes::Bytes;
use futures::future::try_join_all;
use storage_core::{
    Backend, BackendExt, DeleteOptions, ETag, Error, GetOptions, Key, ListOptions, PutMode,
};

use crate::linearizability::{
    Clock, DEFAULT_STEP_BUDGET, History, Input, Operation, Output, Verdict,
};
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
        check!(SUITE, linearizability, [ConditionalPut]),
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

/// The environment variable that overrides the seed of [`linearizability`]'s
/// random operations, to replay a reported failure.
const SEED_VARIABLE: &str = "STORAGE_LINEARIZABILITY_SEED";

/// The seed used unless [`SEED_VARIABLE`] is set, so that runs repeat.
const DEFAULT_SEED: u64 = 0x5EED_5EED;

/// Four tasks run 50 random operations each (gets, overwrites, creates,
/// compare-and-swaps against their last read ETag, deletes) on three keys,
/// and the history of invocations and responses must be linearizable against
/// a register per key: every operation took effect at one instant between
/// its invocation and its response. Deletes are conditional half of the time
/// where the backend supports it. Errors other than the typed answers are
/// unknown outcomes, which may or may not have taken effect; more than half
/// of them fails the check, since such a history proves little.
///
/// Four tasks, because every backend runs it, through injected faults too:
/// each unknown outcome may take effect at any later instant, and with
/// eight tasks the search outgrows its budget on the fault runs. The disk
/// backends and memory are also checked with eight tasks in
/// `storage-disk`'s `tests/linearizability.rs`.
async fn linearizability(b: Arc<dyn Backend>) -> CheckResult {
    let seed = match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|e| Failure(format!("{SEED_VARIABLE}={text:?} is not a u64: {e}")))?,
        Err(_) => DEFAULT_SEED,
    };
    check_random_history(&[b], 4, 50, 3, seed).await
}

/// Runs `tasks` tasks of `operations` random operations each on `keys` keys
/// (`register/0`…), task *p* through `backends[p % backends.len()]` (so
/// several handles of one store, or several processes' worth of them, can
/// be checked together), and checks that the history is linearizable, as
/// the suite's `concurrency/linearizability` check does with one handle.
/// The same `seed` runs the same operations.
///
/// # Errors
/// A [`Failure`] naming the verdict and the seed, when the history is not
/// linearizable, the search ran out of steps, or more than half of the
/// operations had unknown outcomes; an empty `backends`.
pub async fn check_random_history(
    backends: &[Arc<dyn Backend>],
    tasks: usize,
    operations: usize,
    keys: usize,
    seed: u64,
) -> CheckResult {
    ensure!(!backends.is_empty(), "no backend to run the history on");
    let names = (0..keys)
        .map(|i| key(&format!("register/{i}")))
        .collect::<Result<Arc<[Key]>, Error>>()?;
    let conditional_delete = backends.iter().all(|b| b.capabilities().conditional_delete);
    let clock = Arc::new(Clock::new());
    let runs = (0..tasks).map(|process| {
        let mut task = RandomClient {
            backend: Arc::clone(&backends[process % backends.len()]),
            clock: Arc::clone(&clock),
            keys: Arc::clone(&names),
            process,
            rng: Xorshift::new(seed ^ (process as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407)),
            last_etag: vec![None; keys],
            conditional_delete,
        };
        tokio::spawn(async move {
            let mut ops = Vec::with_capacity(operations);
            for n in 0..operations {
                // Let the other tasks run between operations, so that they
                // interleave even on backends that never wait.
                tokio::task::yield_now().await;
                ops.push(task.next(n).await);
            }
            ops
        })
    });
    let mut history = History::new();
    for ops in try_join_all(runs).await.map_err(join_failure)? {
        history.extend(ops);
    }
    let (total, unknown) = (history.operations().len(), history.unknown_outcomes());
    ensure!(
        unknown * 2 <= total,
        "{unknown} of {total} operations had unknown outcomes (errors other than the typed \
         answers), too many for the history to prove anything (seed {seed})"
    );
    match history.check(DEFAULT_STEP_BUDGET) {
        Verdict::Linearizable => Ok(()),
        verdict => Err(Failure(format!(
            "{total} operations by {tasks} tasks on {keys} keys through {} handle(s): {verdict}\n\
             (seed {seed}; replay with {SEED_VARIABLE}={seed})",
            backends.len()
        ))),
    }
}

/// A small xorshift generator: the suite has no `rand` dependency.
#[derive(Debug)]
struct Xorshift(u64);

impl Xorshift {
    fn new(seed: u64) -> Self {
        Xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One task of [`linearizability`]: picks random operations and records them.
#[derive(Debug)]
struct RandomClient {
    backend: Arc<dyn Backend>,
    clock: Arc<Clock>,
    keys: Arc<[Key]>,
    process: usize,
    rng: Xorshift,
    /// Per key, the ETag this task last read or wrote, for compare-and-swap.
    last_etag: Vec<Option<ETag>>,
    conditional_delete: bool,
}

impl RandomClient {
    /// Runs the task's `n`th operation and returns it, with a value unique
    /// to this task and `n` for a put.
    async fn next(&mut self, n: usize) -> Operation {
        let k = self.rng.below(self.keys.len() as u64) as usize;
        let value = Bytes::from(format!("process {} write {n}", self.process));
        let input = match (self.rng.below(100), self.last_etag[k].clone()) {
            (0..15, _) => Input::Put {
                mode: PutMode::Overwrite,
                value,
            },
            (15..30, _) => Input::Put {
                mode: PutMode::IfNotExists,
                value,
            },
            (30..55, Some(etag)) => Input::Put {
                mode: PutMode::IfMatch(etag),
                value,
            },
            (55..65, etag) => Input::Delete {
                if_match: etag.filter(|_| self.conditional_delete && self.rng.below(2) == 0),
            },
            _ => Input::Get,
        };
        let op = record(
            &*self.backend,
            &self.clock,
            self.process,
            &self.keys[k],
            input,
        )
        .await;
        match &op.output {
            Output::Found { etag, .. } | Output::Written { etag } => {
                self.last_etag[k] = Some(etag.clone());
            }
            Output::Unknown { .. } => {}
            // Read again before the next compare-and-swap on this key.
            _ => self.last_etag[k] = None,
        }
        op
    }
}

/// Runs `input` on `k` and records it with its invocation and response
/// instants; errors other than the typed answers become unknown outcomes.
async fn record(
    b: &dyn Backend,
    clock: &Clock,
    process: usize,
    k: &Key,
    input: Input,
) -> Operation {
    let invocation = clock.now();
    let output = match &input {
        Input::Get => match b.get(k, GetOptions::default()).await {
            Ok(got) => {
                let etag = got.meta.etag.clone();
                match got.bytes().await {
                    Ok(value) => Output::Found { value, etag },
                    Err(e) => unknown(e),
                }
            }
            Err(Error::NotFound { .. }) => Output::NotFound,
            Err(e) => unknown(e),
        },
        Input::Put { mode, value } => match put(b, k, value.clone(), mode.clone()).await {
            Ok(meta) => Output::Written { etag: meta.etag },
            Err(Error::AlreadyExists { .. }) => Output::AlreadyExists,
            Err(Error::PreconditionFailed { .. }) => Output::PreconditionFailed,
            Err(e) => unknown(e),
        },
        Input::Delete { if_match } => {
            let options = DeleteOptions {
                if_match: if_match.clone(),
            };
            match b.delete(k, options).await {
                Ok(()) => Output::Deleted,
                Err(Error::PreconditionFailed { .. }) => Output::PreconditionFailed,
                Err(e) => unknown(e),
            }
        }
    };
    let response = clock.now();
    Operation {
        process,
        key: k.to_string(),
        input,
        output,
        invocation,
        response,
    }
}

fn unknown(e: Error) -> Output {
    Output::Unknown {
        error: e.to_string(),
    }
}
