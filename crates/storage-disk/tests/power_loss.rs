//! Simulated power loss at 1,000 random points of a mixed workload, on
//! LogStore in both durability modes and on FsBackend
//! ([`storage_disk::power_loss`] describes the simulator).
//!
//! One task runs the workload (puts inline and in blobs, creates,
//! compare-and-swaps, deletes, and on LogStore snapshots and compactions,
//! with segments small enough to roll often) while the file operations are
//! recorded. Then, at each crash point, the disk image a power loss would
//! leave is opened and checked:
//!
//! - the store opens;
//! - its content equals the state after some prefix of the workload's
//!   operations, so nothing deleted comes back and no write is half there;
//! - that prefix holds every acknowledged operation (`Fsync` mode and
//!   FsBackend), or every one acknowledged before the last completed
//!   snapshot (`Buffered` mode: only a suffix of recent writes is lost);
//! - each surviving version has the ETag its put was answered with, and a
//!   put after the crash never gets an ETag answered before it.
//!
//! Half of the images keep a random prefix of the writes not yet synced,
//! the last possibly torn.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use storage_core::{
    Backend, BackendExt, DeleteOptions, ETag, Error, Key, ListOptions, PutMode, PutOptions,
};
use storage_disk::power_loss::{CrashMode, Recording};
use storage_disk::{Durability, FsBackend, LogStore, LogStoreOptions};

const KEYS: usize = 12;
const STEPS: usize = 240;
const CRASH_POINTS: usize = 1000;

/// One step of the workload.
#[derive(Debug, Clone)]
enum Step {
    Put {
        key: usize,
        value: Bytes,
        mode: PutMode,
    },
    Delete {
        key: usize,
        if_match: Option<ETag>,
    },
    /// LogStore: a snapshot (every acknowledged write before it is durable
    /// in both modes).
    Snapshot,
    /// LogStore: a compaction.
    Compact,
}

/// What a step did, as the task saw it.
#[derive(Debug, Clone)]
struct Done {
    step: Step,
    /// Journal position when it was invoked and when it was answered.
    invoked: usize,
    answered: usize,
    /// A put's ETag, or `None` for a refused condition or a non-put.
    etag: Option<ETag>,
    refused: bool,
}

fn key(i: usize) -> Key {
    Key::new(format!("k/{i:02}")).expect("valid key")
}

type Maintenance = Box<dyn Fn(Step) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Runs the workload on `store`, returning what each step did.
async fn workload(
    store: &dyn Backend,
    maintenance: Option<&Maintenance>,
    recording: &Recording,
    seed: u64,
) -> Vec<Done> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut etags: Vec<Option<ETag>> = vec![None; KEYS];
    let mut done = Vec::with_capacity(STEPS);
    for n in 0..STEPS {
        let k = rng.random_range(0..KEYS);
        let roll = rng.random_range(0..100);
        let step = match roll {
            0..4 if maintenance.is_some() => Step::Snapshot,
            4..7 if maintenance.is_some() => Step::Compact,
            0..15 => Step::Delete {
                key: k,
                if_match: etags[k].clone().filter(|_| rng.random_bool(0.5)),
            },
            _ => {
                // One value in five goes to a blob on LogStore.
                let len = if rng.random_range(0..5) == 0 {
                    rng.random_range(1024..3000)
                } else {
                    rng.random_range(1..200)
                };
                let mut value = format!("step {n} ").into_bytes();
                value.resize(len.max(value.len()), b'a' + (n % 26) as u8);
                let mode = match (rng.random_range(0..3), etags[k].clone()) {
                    (0, Some(etag)) => PutMode::IfMatch(etag),
                    (1, _) => PutMode::IfNotExists,
                    _ => PutMode::Overwrite,
                };
                Step::Put {
                    key: k,
                    value: value.into(),
                    mode,
                }
            }
        };
        let invoked = recording.position();
        let (etag, refused) = match &step {
            Step::Put {
                key: k,
                value,
                mode,
            } => {
                let options = PutOptions {
                    mode: mode.clone(),
                    ..PutOptions::default()
                };
                match store.put(&key(*k), value.clone().into(), options).await {
                    Ok(meta) => {
                        etags[*k] = Some(meta.etag.clone());
                        (Some(meta.etag), false)
                    }
                    Err(Error::AlreadyExists { .. } | Error::PreconditionFailed { .. }) => {
                        (None, true)
                    }
                    Err(e) => panic!("step {n}: {e}"),
                }
            }
            Step::Delete { key: k, if_match } => {
                let options = DeleteOptions {
                    if_match: if_match.clone(),
                };
                match store.delete(&key(*k), options).await {
                    Ok(()) => {
                        etags[*k] = None;
                        (None, false)
                    }
                    Err(Error::PreconditionFailed { .. }) => (None, true),
                    Err(e) => panic!("step {n}: {e}"),
                }
            }
            Step::Snapshot | Step::Compact => {
                if let Some(run) = maintenance {
                    run(step.clone()).await;
                }
                (None, false)
            }
        };
        done.push(Done {
            step,
            invoked,
            answered: recording.position(),
            etag,
            refused,
        });
    }
    done
}

/// Key → (value, ETag) after each prefix of `done`: `states[p]` after the
/// first `p` steps.
fn states(done: &[Done]) -> Vec<BTreeMap<usize, (Bytes, ETag)>> {
    let mut state = BTreeMap::new();
    let mut out = vec![state.clone()];
    for d in done {
        if !d.refused {
            match &d.step {
                Step::Put { key, value, .. } => {
                    let etag = d.etag.clone().expect("an answered put has an ETag");
                    state.insert(*key, (value.clone(), etag));
                }
                Step::Delete { key, .. } => {
                    state.remove(key);
                }
                Step::Snapshot | Step::Compact => {}
            }
        }
        out.push(state.clone());
    }
    out
}

/// What the store holds after opening an image.
async fn contents(store: &dyn Backend) -> BTreeMap<usize, (Bytes, ETag)> {
    let page = store
        .list(&ListOptions {
            prefix: "k/".into(),
            ..ListOptions::default()
        })
        .await
        .expect("list");
    let mut out = BTreeMap::new();
    for meta in page.objects {
        let i: usize = meta.key.as_str()[2..].parse().expect("a workload key");
        let got = store
            .get_bytes(&meta.key)
            .await
            .expect("a listed key reads");
        out.insert(i, (got, meta.etag));
    }
    out
}

/// Whether `found` is `state`, values and ETags.
fn matches(found: &BTreeMap<usize, (Bytes, ETag)>, state: &BTreeMap<usize, (Bytes, ETag)>) -> bool {
    found.len() == state.len()
        && found
            .iter()
            .zip(state)
            .all(|((fk, (fv, fe)), (sk, (sv, se)))| fk == sk && fv == sv && fe == se)
}

/// Checks the image at each crash point: see the module docs. `lowest`
/// gives the first prefix that must survive at a point.
async fn check_crash_points(
    name: &str,
    recording: &Recording,
    done: &[Done],
    open: impl AsyncFn(&std::path::Path) -> (Arc<dyn Backend>, Option<LogStore>),
    lowest: impl Fn(usize) -> usize,
) {
    let states = states(done);
    let answered_etags: HashSet<ETag> = done.iter().filter_map(|d| d.etag.clone()).collect();
    let end = recording.position();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    let mut points: Vec<usize> = (0..CRASH_POINTS)
        .map(|_| rng.random_range(0..=end))
        .collect();
    points.sort_unstable();
    let mut replay = recording.replay();
    let mut reopened_from_keep_prefix = 0;
    for (n, &point) in points.iter().enumerate() {
        replay.advance_to(point).expect("advance");
        let mode = if n % 2 == 0 {
            CrashMode::DurableOnly
        } else {
            CrashMode::KeepPrefix
        };
        let image = tempfile::tempdir().expect("temporary directory");
        replay
            .crash_image(mode, n as u64, image.path())
            .expect("image");
        let (store, logstore) = open(image.path()).await;
        let found = contents(&*store).await;
        let lo = lowest(point);
        // Steps invoked before the crash point may have taken effect.
        let hi = done.iter().filter(|d| d.invoked < point).count();
        // A step in flight at the crash that took effect has the ETag it
        // was answered with later.
        let fits = (lo..=hi.max(lo)).any(|p| matches(&found, &states[p]));
        assert!(
            fits,
            "{name}: crash after operation {point} of {end} ({mode:?}): the store holds {:?}, no state between steps {lo} and {hi}",
            found
                .iter()
                .map(|(k, (v, e))| (
                    k,
                    String::from_utf8_lossy(&v[..v.len().min(12)]).into_owned(),
                    e.as_str().to_string()
                ))
                .collect::<Vec<_>>()
        );
        for k in 0..KEYS {
            let meta = store
                .put_bytes(key(k), Bytes::from(format!("after crash {n}")))
                .await
                .expect("a put after the crash");
            assert!(
                !answered_etags.contains(&meta.etag),
                "{name}: crash after operation {point}: ETag {} reissued",
                meta.etag
            );
        }
        if let Some(logstore) = logstore {
            logstore.close().await.expect("close");
        }
        if mode == CrashMode::KeepPrefix {
            reopened_from_keep_prefix += 1;
        }
    }
    eprintln!(
        "{name}: {CRASH_POINTS} crash points over {end} file operations and {} steps ({reopened_from_keep_prefix} keeping a prefix of unsynced writes): 0 acknowledged writes lost, 0 deleted keys back, 0 ETags reissued",
        done.len()
    );
}

fn logstore_options(durability: Durability) -> LogStoreOptions {
    LogStoreOptions {
        segment_bytes: 8 * 1024,
        large_value_bytes: 1024,
        durability,
        snapshot_every_segments: Some(3),
        ..LogStoreOptions::default()
    }
}

async fn logstore_power_loss(durability: Durability, seed: u64) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let recording = Recording::start(dir.path()).expect("start recording");
    let store = LogStore::open_with(dir.path(), logstore_options(durability))
        .await
        .expect("open");
    let handle = store.clone();
    let maintenance: Maintenance = Box::new(move |step| {
        let store = handle.clone();
        Box::pin(async move {
            match step {
                Step::Snapshot => store.snapshot().await.expect("snapshot"),
                _ => {
                    store.compact().await.expect("compact");
                }
            }
        })
    });
    let done = workload(&store, Some(&maintenance), &recording, seed).await;
    store.close().await.expect("close");
    drop(maintenance);
    drop(store);
    let lowest = |point: usize| match durability {
        Durability::Fsync => done.iter().filter(|d| d.answered <= point).count(),
        Durability::Buffered => done
            .iter()
            .enumerate()
            .filter(|(_, d)| matches!(d.step, Step::Snapshot) && d.answered <= point)
            .map(|(i, _)| i + 1)
            .max()
            .unwrap_or(0),
    };
    let name = format!("LogStore {durability:?}");
    check_crash_points(
        &name,
        &recording,
        &done,
        async |path| {
            let store = LogStore::open_with(path, logstore_options(durability))
                .await
                .unwrap_or_else(|e| panic!("the image must open: {e}"));
            (Arc::new(store.clone()) as Arc<dyn Backend>, Some(store))
        },
        lowest,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logstore_fsync_loses_no_acknowledged_write_at_1000_crash_points() {
    logstore_power_loss(Durability::Fsync, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logstore_buffered_loses_only_recent_writes_at_1000_crash_points() {
    logstore_power_loss(Durability::Buffered, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fs_backend_loses_no_acknowledged_write_at_1000_crash_points() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let recording = Recording::start(dir.path()).expect("start recording");
    let store = FsBackend::new(dir.path()).expect("open");
    let done = workload(&store, None, &recording, 3).await;
    drop(store);
    check_crash_points(
        "FsBackend",
        &recording,
        &done,
        async |path| {
            let store = FsBackend::new(path).unwrap_or_else(|e| panic!("the image must open: {e}"));
            (Arc::new(store) as Arc<dyn Backend>, None)
        },
        |point| done.iter().filter(|d| d.answered <= point).count(),
    )
    .await;
}
