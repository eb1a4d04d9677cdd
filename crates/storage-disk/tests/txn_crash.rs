//! Transactions under SIGKILL: a child process commits three-key
//! transactions from four tasks, printing `BEGIN` before each commit and
//! `ACK` after it; the parent kills it at a random moment, runs `reconcile`
//! itself (a new process), and checks that every begun transaction shows on
//! all three keys or on none, that every acknowledged one shows on all, and
//! that no staged write, lock or decision record is left. 20 rounds on
//! LogStore and 20 on FsBackend. The kill times come from a seed, printed
//! at the start; set `TXN_CRASH_SEED` to replay a schedule.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use rand::{Rng, SeedableRng};
use storage_core::{
    Backend, BackendExt, Body, Error, Key, ListOptions, PutOptions, Txn, reconcile,
};
use storage_disk::{FsBackend, LogStore};

const ROUNDS: u64 = 20;
const TASKS: u64 = 4;
const DIR_VAR: &str = "TXN_CRASH_DIR";
const KIND_VAR: &str = "TXN_CRASH_KIND";
const ROUND_VAR: &str = "TXN_CRASH_ROUND";
const SEED_VAR: &str = "TXN_CRASH_SEED";
const PARTS: [&str; 3] = ["x", "y/1", "y/2"];

async fn open(kind: &str, dir: &Path) -> Arc<dyn Backend> {
    match kind {
        "logstore" => Arc::new(LogStore::open(dir).await.expect("open LogStore")),
        _ => Arc::new(FsBackend::new(dir).expect("open FsBackend")),
    }
}

fn keys(round: u64, task: u64, n: u64) -> Vec<Key> {
    PARTS
        .iter()
        .map(|p| Key::new(format!("r{round}/t{task}/{n:05}/{p}")).expect("key"))
        .collect()
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Runs in the child process (the parent sets `TXN_CRASH_DIR`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child of transactions_survive_sigkill_*"]
async fn txn_crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let kind = std::env::var(KIND_VAR).unwrap_or_default();
    let round: u64 = std::env::var(ROUND_VAR)
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let store = open(&kind, Path::new(&dir)).await;
    say("READY");
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for n in 0u64.. {
                let mut txn = Txn::begin(&*store);
                for key in keys(round, task, n) {
                    let body = Body::from(format!("{round}-{task}-{n}"));
                    if let Err(e) = txn.stage(&key, body, PutOptions::default()).await {
                        say(&format!("FAILED stage {key}: {e}"));
                        std::process::exit(3);
                    }
                }
                say(&format!("BEGIN {round} {task} {n}"));
                match txn.commit().await {
                    Ok(_) => say(&format!("ACK {round} {task} {n}")),
                    Err(e) => {
                        say(&format!("FAILED commit {round} {task} {n}: {e}"));
                        std::process::exit(3);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Transactions the child began and acknowledged, by (round, task, n).
#[derive(Default)]
struct Seen {
    begun: BTreeSet<(u64, u64, u64)>,
    acked: BTreeSet<(u64, u64, u64)>,
}

fn parse(lines: &[String], seen: &mut Seen) -> Result<(), String> {
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let id = |f: &[&str]| -> Option<(u64, u64, u64)> {
            Some((
                f.get(1)?.parse().ok()?,
                f.get(2)?.parse().ok()?,
                f.get(3)?.parse().ok()?,
            ))
        };
        match fields.first() {
            Some(&"BEGIN") => seen.begun.extend(id(&fields)),
            Some(&"ACK") => seen.acked.extend(id(&fields)),
            Some(&"FAILED") => return Err(line.clone()),
            _ => {}
        }
    }
    Ok(())
}

/// Checks every begun transaction: all three keys or none, all for the
/// acknowledged ones. Returns (applied, not applied).
async fn verify(store: &dyn Backend, seen: &Seen) -> Result<(usize, usize), String> {
    let (mut applied, mut absent) = (0, 0);
    for &(round, task, n) in &seen.begun {
        let mut present = Vec::new();
        for key in keys(round, task, n) {
            match store.get_bytes(&key).await {
                Ok(data) if data == format!("{round}-{task}-{n}").as_bytes() => present.push(true),
                Ok(other) => return Err(format!("{key} holds {other:?}")),
                Err(Error::NotFound { .. }) => present.push(false),
                Err(e) => return Err(format!("reading {key}: {e}")),
            }
        }
        match (present.iter().all(|p| *p), present.iter().any(|p| *p)) {
            (true, _) => applied += 1,
            (false, false) if !seen.acked.contains(&(round, task, n)) => absent += 1,
            _ => {
                return Err(format!(
                    "transaction {round}/{task}/{n} (acknowledged: {}) shows on {present:?}",
                    seen.acked.contains(&(round, task, n))
                ));
            }
        }
    }
    let leftovers: Vec<String> = store
        .list_all(ListOptions {
            reserved: true,
            ..ListOptions::default()
        })
        .map_ok(|m| m.key)
        .try_filter(|k| futures::future::ready(k.is_reserved()))
        .map_ok(|k| k.to_string())
        .try_collect()
        .await
        .map_err(|e| format!("listing: {e}"))?;
    // The `aborted` decisions reconcile writes before discarding undecided
    // transactions stay (`ABORTED_KEEP`); anything else is a leftover.
    let mut left = Vec::new();
    for name in leftovers {
        if name.starts_with(".txn/") {
            let key = storage_core::raw::stored_key(&name).map_err(|e| e.to_string())?;
            let record = store.get_bytes(key).await.map_err(|e| e.to_string())?;
            if record.starts_with(b"storage-txn 1\naborted\n") {
                continue;
            }
        }
        left.push(name);
    }
    if !left.is_empty() {
        return Err(format!("left after reconcile: {left:?}"));
    }
    Ok((applied, absent))
}

/// Reconciles in this process, then [`verify`]s.
async fn reconcile_and_verify(store: &dyn Backend, seen: &Seen) -> Result<(usize, usize), String> {
    let report = reconcile(store, Duration::ZERO)
        .await
        .map_err(|e| format!("reconcile: {e}"))?;
    if !report.failures.is_empty() {
        return Err(format!("reconcile failed: {:?}", report.failures));
    }
    verify(store, seen).await
}

async fn survive_sigkill(kind: &str) {
    let seed: u64 = std::env::var(SEED_VAR)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("{kind}: crash schedule seed {seed} (rerun with {SEED_VAR}={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut seen = Seen::default();
    let (mut applied, mut absent) = (0, 0);
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "txn_crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env(KIND_VAR, kind)
            .env(ROUND_VAR, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.ends_with("READY") {
                    let _ = ready_tx.send(());
                }
                lines.push(line);
            }
            lines
        });
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            panic!("{kind} round {round} (seed {seed}): the child did not open the store");
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..300)));
        let early = child.try_wait().expect("child status");
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        let lines = reader.join().expect("reader");
        assert!(
            early.is_none(),
            "{kind} round {round} (seed {seed}): the child exited with {early:?} before it was killed; tail: {:?}",
            lines.iter().rev().take(3).collect::<Vec<_>>()
        );
        if let Err(failed) = parse(&lines, &mut seen) {
            panic!("{kind} round {round} (seed {seed}): the child reported {failed}");
        }
        let checked = if kind == "logstore" {
            let log = LogStore::open(dir.path()).await.expect("reopen LogStore");
            let checked = reconcile_and_verify(&log, &seen).await;
            log.close().await.expect("close");
            checked
        } else {
            let fs = FsBackend::new(dir.path()).expect("reopen FsBackend");
            reconcile_and_verify(&fs, &seen).await
        };
        match checked {
            Ok(counts) => (applied, absent) = counts,
            Err(e) => panic!("{kind} round {round} (seed {seed}): {e}"),
        }
    }
    println!(
        "{kind}: {ROUNDS} rounds, {} transactions begun, {} acknowledged; after reconcile {applied} applied whole, {absent} not at all",
        seen.begun.len(),
        seen.acked.len()
    );
    assert!(
        !seen.acked.is_empty(),
        "no transaction was acknowledged: the test proves nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_survive_sigkill_on_logstore() {
    survive_sigkill("logstore").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn transactions_survive_sigkill_on_fsbackend() {
    survive_sigkill("fs").await;
}
