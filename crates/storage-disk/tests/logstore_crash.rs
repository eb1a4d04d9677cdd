//! Crash safety: a child process writes with 64 concurrent tasks and prints
//! every acknowledged write; the parent kills it with SIGKILL at a random
//! moment, reopens the store and checks that every acknowledged write is
//! there with its exact bytes and that nothing is half-visible. 50 rounds.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use rand::Rng;
use storage_core::{BackendExt, Error};
use storage_disk::{LogStore, LogStoreOptions};

const ROUNDS: usize = 50;
const TASKS: usize = 64;
const DIR_VAR: &str = "LOGSTORE_CRASH_DIR";

fn options() -> LogStoreOptions {
    LogStoreOptions {
        segment_bytes: 256 * 1024,
        large_value_bytes: 64 * 1024,
        ..Default::default()
    }
}

/// The content of `key`: derived from the key, so any stored object can be
/// checked. Every 16th write is large enough to go to a blob file.
fn content(key: &str, n: u64) -> Bytes {
    let len = if n % 16 == 15 {
        100_000
    } else {
        100 + (n % 7) as usize * 300
    };
    Bytes::from(
        key.as_bytes()
            .iter()
            .cycle()
            .take(len)
            .copied()
            .collect::<Vec<u8>>(),
    )
}

/// Runs in the child process (the parent sets `LOGSTORE_CRASH_DIR`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child of logstore_survives_sigkill_with_no_acknowledged_write_lost"]
async fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let round: u64 = std::env::var("LOGSTORE_CRASH_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let store = Arc::new(
        LogStore::open_with(dir, options())
            .await
            .expect("child open"),
    );
    println!("READY");
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    let tasks: Vec<_> = (0..TASKS)
        .map(|t| {
            let (store, stdout) = (Arc::clone(&store), Arc::clone(&stdout));
            tokio::spawn(async move {
                for n in 0u64.. {
                    let key = format!("r{round}/t{t:02}/{n:06}");
                    store
                        .put_bytes(key.as_str(), content(&key, n))
                        .await
                        .expect("child put");
                    let mut out = stdout.lock().expect("stdout");
                    use std::io::Write;
                    writeln!(out, "ACK {key} {n}").expect("write ack");
                    out.flush().expect("flush ack");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
}

fn verify_round(
    dir: &Path,
    round: usize,
    acked: &[(String, u64)],
) -> impl std::future::Future<Output = (usize, usize)> {
    let dir = dir.to_path_buf();
    let acked = acked.to_vec();
    async move {
        let store = LogStore::open_with(&dir, options())
            .await
            .expect("reopen after SIGKILL");
        let mut lost = 0;
        for (key, n) in &acked {
            match store.get_bytes(key.as_str()).await {
                Ok(bytes) if bytes == content(key, *n) => {}
                Ok(_) => panic!("{key} holds wrong bytes"),
                Err(Error::NotFound { .. }) => lost += 1,
                Err(e) => panic!("{key}: {e}"),
            }
        }
        // Whatever this round stored, acknowledged or not, is whole.
        let prefix = storage_core::ListOptions::prefix(format!("r{round}/"));
        let all: Vec<_> = store.list_all(prefix).try_collect().await.expect("list");
        for meta in &all {
            let key = meta.key.as_str();
            let n: u64 = key
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("key number");
            let bytes = store.get_bytes(key).await.expect("read a listed object");
            assert_eq!(bytes, content(key, n), "{key} is half-visible or wrong");
        }
        store.close().await.expect("close");
        (lost, all.len())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logstore_survives_sigkill_with_no_acknowledged_write_lost() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rng();
    let mut total_acked = 0;
    let mut total_lost = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, dir.path())
            .env("LOGSTORE_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acked = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.ends_with("READY") {
                    let _ = ready_tx.send(());
                }
                let mut parts = line.split(' ');
                if let (Some("ACK"), Some(key), Some(n)) =
                    (parts.next(), parts.next(), parts.next())
                    && let Ok(n) = n.parse::<u64>()
                {
                    acked.push((key.to_owned(), n));
                }
            }
            acked
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the child opened the store");
        // The store is locked while the child holds it, across processes.
        let locked = LogStore::open_with(dir.path(), options()).await;
        assert!(matches!(locked, Err(Error::Locked { .. })), "{locked:?}");
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        let acked = reader.join().expect("reader");
        let (lost, stored) = verify_round(dir.path(), round, &acked).await;
        assert!(
            stored >= acked.len(),
            "round {round}: {stored} stored < {} acknowledged",
            acked.len()
        );
        total_acked += acked.len();
        total_lost += lost;
    }
    println!("{ROUNDS} rounds, {total_acked} acknowledged writes, {total_lost} lost");
    assert_eq!(total_lost, 0);
    assert!(
        total_acked > ROUNDS * 10,
        "too few writes to prove anything: {total_acked}"
    );
}
