//! `cargo xtask bench --backend logstore`: durable small puts against a
//! write-and-fdatasync-per-put baseline, `FsBackend` and `LocalFileSystem`;
//! small gets against `InMemory`; open time and peak memory of a store of
//! many small objects.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::future::try_join_all;
use serde::{Deserialize, Serialize};
use storage_core::{Backend, BackendExt};
use storage_disk::{Durability, FsBackend, LogStore, LogStoreOptions};

use crate::bench::{Store, alternate_many, fmt_rate};

/// Writer counts of the durable-put table.
const WRITERS: [usize; 4] = [1, 16, 64, 256];

/// One `pwrite` and one `fdatasync` per put, on one file: what a store
/// without group commit does. `serialized` holds a lock across both, so
/// that no two puts share an `fdatasync`; without it, concurrent puts'
/// `fdatasync` calls may be merged by the kernel.
pub struct FsyncPerPut {
    file: File,
    end: AtomicU64,
    serialized: Option<std::sync::Mutex<()>>,
}

impl FsyncPerPut {
    fn open(path: &Path, serialized: bool) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(FsyncPerPut {
            file,
            end: AtomicU64::new(0),
            serialized: serialized.then(|| std::sync::Mutex::new(())),
        })
    }

    /// Appends `data` and waits for `fdatasync`.
    pub async fn put(self: &Arc<Self>, data: Bytes) -> anyhow::Result<()> {
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _turn = this
                .serialized
                .as_ref()
                .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            let at = this.end.fetch_add(data.len() as u64, Ordering::Relaxed);
            this.file.write_all_at(&data, at)?;
            this.file.sync_data()?;
            Ok(())
        })
        .await?
    }
}

#[derive(Serialize, Deserialize)]
struct OpenFigures {
    ms: f64,
    objects: usize,
    from_snapshot: bool,
    peak_rss_mib: f64,
}

/// The hidden `logstore-open` task: opens the store in `dir`, prints the
/// figures as JSON and exits without closing (so no snapshot is written).
pub async fn open_child(dir: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = LogStore::open(dir).await?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let figures = OpenFigures {
        ms,
        objects: store.len(),
        from_snapshot: store.open_report().from_snapshot,
        peak_rss_mib: peak_rss_kib()? as f64 / 1024.0,
    };
    println!("{}", serde_json::to_string(&figures)?);
    std::process::exit(0);
}

fn peak_rss_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")
}

fn measure_open(dir: &Path) -> anyhow::Result<OpenFigures> {
    crate::bench::flush_page_cache_writes();
    let output = Command::new(std::env::current_exe()?)
        .arg("logstore-open")
        .arg(dir)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "logstore-open failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Opens three times in fresh processes; the run with the median time.
fn median_open(dir: &Path) -> anyhow::Result<OpenFigures> {
    let mut runs = (0..3)
        .map(|_| measure_open(dir))
        .collect::<anyhow::Result<Vec<_>>>()?;
    runs.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    Ok(runs.swap_remove(1))
}

async fn fill(dir: &Path, objects: usize) -> anyhow::Result<()> {
    let options = LogStoreOptions {
        durability: Durability::Buffered,
        ..Default::default()
    };
    let store = Arc::new(LogStore::open_with(dir, options).await?);
    let value = Bytes::from(vec![b'v'; 100]);
    let next = Arc::new(AtomicU64::new(0));
    let tasks = (0..256).map(|_| {
        let (store, value, next) = (Arc::clone(&store), value.clone(), Arc::clone(&next));
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= objects as u64 {
                    return Ok::<(), anyhow::Error>(());
                }
                store
                    .put_bytes(format!("objects/{i:08}"), value.clone())
                    .await?;
            }
        })
    });
    for t in try_join_all(tasks).await? {
        t?;
    }
    store.close().await?;
    Ok(())
}

/// Runs the three LogStore tables.
pub async fn run(scratch: &Path, seconds: f64, objects: usize) -> anyhow::Result<()> {
    let budget = Duration::from_secs_f64(seconds);
    let small = Bytes::from(vec![0x5a; 4096]);
    let logstore = Arc::new(LogStore::open(scratch.join("logstore")).await?);
    let ours = Store::Ours(Arc::clone(&logstore) as Arc<dyn Backend>);
    let serial = Store::Baseline(Arc::new(FsyncPerPut::open(
        &scratch.join("serial.log"),
        true,
    )?));
    let baseline = Store::Baseline(Arc::new(FsyncPerPut::open(
        &scratch.join("baseline.log"),
        false,
    )?));
    let fs = Store::Ours(Arc::new(FsBackend::new(scratch.join("fs"))?));
    std::fs::create_dir_all(scratch.join("lfs"))?;
    let lfs = Store::Peer(Arc::new(
        object_store::local::LocalFileSystem::new_with_prefix(scratch.join("lfs"))?,
    ));

    println!("\n## LogStore: durable 4 KiB puts (ops/s)\n");
    println!(
        "| writers | LogStore (fdatasync per batch) | write + fdatasync per put, serialized | write + fdatasync per put, concurrent | FsBackend (4 fsyncs per put) | LocalFileSystem (no fsync) | LogStore/serialized | LogStore/concurrent | LogStore/LocalFileSystem |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for writers in WRITERS {
        let data = small.clone();
        let put = move |s: Store, t: usize, i: u64| {
            let data = data.clone();
            async move { s.put(format!("w{writers}/{t}/{i}"), data).await }
        };
        let stores = [
            ours.clone(),
            serial.clone(),
            baseline.clone(),
            fs.clone(),
            lfs.clone(),
        ];
        let r = alternate_many(&stores, writers, budget, put).await?;
        println!(
            "| {writers} | {} | {} | {} | {} | {} | {:.1}× | {:.1}× | {:.2}× |",
            fmt_rate(r[0]),
            fmt_rate(r[1]),
            fmt_rate(r[2]),
            fmt_rate(r[3]),
            fmt_rate(r[4]),
            r[0] / r[1],
            r[0] / r[2],
            r[0] / r[4]
        );
    }

    println!("\n## LogStore: 4 KiB gets (ops/s)\n");
    println!("| tasks | LogStore | InMemory | LogStore/InMemory |");
    println!("|---:|---:|---:|---:|");
    // A fresh store holding the same 1,000 objects as the peer.
    logstore.close().await?;
    let logstore = Arc::new(LogStore::open(scratch.join("logstore-gets")).await?);
    let ours = Store::Ours(Arc::clone(&logstore) as Arc<dyn Backend>);
    let memory = Store::Peer(Arc::new(object_store::memory::InMemory::new()));
    for store in [&ours, &memory] {
        for i in 0..1000 {
            store.put(format!("read/{i}"), small.clone()).await?;
        }
    }
    for tasks in [1, 64] {
        let get = |s: Store, t: usize, i: u64| async move {
            let got = s
                .get(format!("read/{}", (t as u64 * 7919 + i) % 1000))
                .await?;
            anyhow::ensure!(got.len() == 4096, "short read");
            Ok(())
        };
        let rates = alternate_many(&[ours.clone(), memory.clone()], tasks, budget, get).await?;
        println!(
            "| {tasks} | {} | {} | {:.2}× |",
            fmt_rate(rates[0]),
            fmt_rate(rates[1]),
            rates[0] / rates[1]
        );
    }
    logstore.close().await?;

    println!("\n## LogStore: opening a store of {objects} live 100-byte objects\n");
    let dir = scratch.join("many");
    let started = Instant::now();
    fill(&dir, objects).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let with = median_open(&dir)?;
    std::fs::remove_file(dir.join("index.snap"))?;
    let without = median_open(&dir)?;
    println!("| open | objects | time (median of 3 processes) | peak RSS of the process |");
    println!("|---|---:|---:|---:|");
    for (label, f) in [
        ("with the index snapshot", &with),
        ("replaying every segment", &without),
    ] {
        anyhow::ensure!(
            f.objects == objects,
            "{label}: {} objects, expected {objects}",
            f.objects
        );
        println!(
            "| {label} (snapshot used: {}) | {} | {:.0} ms | {:.0} MiB |",
            f.from_snapshot, f.objects, f.ms, f.peak_rss_mib
        );
    }
    println!("\n(filling it took {fill_secs:.1} s with Durability::Buffered and 256 writers)");
    Ok(())
}
