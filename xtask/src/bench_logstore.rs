//! `cargo xtask bench --backend logstore`: durable small puts against the
//! raw append + `fdatasync` loops (the disk's limit, with and without group
//! commit); small gets against `InMemory`; compare-and-swap increments;
//! open time and peak memory of a store of many small objects.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::TryStreamExt;
use futures::future::try_join_all;
use object_store_014 as object_store;
use serde::{Deserialize, Serialize};
use storage_core::{Backend, BackendExt};
use storage_disk::{Durability, LogStore, LogStoreOptions};

use crate::bench::{Args, Report, Row, Store, alternate_many};

/// Writer counts of the durable-put table.
const WRITERS: [usize; 4] = [1, 16, 64, 256];

/// The disk's own limit for durable 4 KiB puts: one thread appending
/// `group` records of 4 KiB to one file with `pwrite`, then one
/// `fdatasync`, over and over. With `group` 1 it is what a store without
/// group commit can do at best; with `group` N, what a store that commits
/// N puts per `fdatasync` can do at best (no index, no checksums, no
/// tasks). The file grows as it is written, as a log segment does.
pub struct RawAppend {
    file: File,
    end: AtomicU64,
    group: usize,
}

impl RawAppend {
    fn open(path: &Path, group: usize) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(RawAppend {
            file,
            end: AtomicU64::new(0),
            group: group.max(1),
        })
    }

    /// Appends groups until `deadline`; returns the records made durable.
    pub fn run(&self, deadline: Instant) -> anyhow::Result<u64> {
        let record = [0x5a_u8; 4096];
        let mut records = 0;
        while Instant::now() < deadline {
            for _ in 0..self.group {
                let at = self.end.fetch_add(record.len() as u64, Ordering::Relaxed);
                self.file.write_all_at(&record, at)?;
            }
            self.file.sync_data()?;
            records += self.group as u64;
        }
        Ok(records)
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

/// Runs the LogStore rows: durable puts against the raw loops, gets
/// against `InMemory`, compare-and-swap increments, open time.
pub async fn run(report: &mut Report, scratch: &Path, args: &Args) -> anyhow::Result<()> {
    let budget = Duration::from_secs_f64(args.seconds);
    let small = Bytes::from(vec![0x5a; 4096]);
    let logstore = Arc::new(LogStore::open(scratch.join("logstore")).await?);
    let ours = Store::Ours(Arc::clone(&logstore) as Arc<dyn Backend>);

    report.section("logstore: durable 4 KiB puts against the raw append + fdatasync loops");
    for writers in WRITERS {
        let raw = Store::Raw(Arc::new(RawAppend::open(
            &scratch.join(format!("raw-{writers}.log")),
            writers,
        )?));
        let data = small.clone();
        let put = move |s: Store, t: usize, i: u64| {
            let data = Bytes::copy_from_slice(&data);
            async move { s.put(format!("w{writers}/{t}/{i}"), data).await }
        };
        let rates = alternate_many(&[ours.clone(), raw], writers, budget, args.rounds, put).await?;
        let (reference, goal) = match writers {
            1 => ("raw loop: 1 append + 1 fdatasync".to_owned(), Some(0.9)),
            16 => ("raw loop: 16 appends + 1 fdatasync".to_owned(), None),
            n => (format!("raw loop: {n} appends + 1 fdatasync"), Some(0.5)),
        };
        report.add(
            Row::new(
                "logstore",
                format!("durable put 4 KiB, {writers} writers"),
                "ops/s",
                rates.mean(0),
            )
            .against(&reference, rates.mean(1))
            .goal(goal)
            .spread(rates.spread(0, 1)),
        );
    }

    report.section("logstore: 4 KiB gets against object_store's InMemory");
    // A fresh store holding the same 1,000 objects as the peer.
    logstore.close().await?;
    let logstore = Arc::new(LogStore::open(scratch.join("logstore-gets")).await?);
    let ours = Store::Ours(Arc::clone(&logstore) as Arc<dyn Backend>);
    let memory = Store::peer(object_store::memory::InMemory::new());
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
        let rates = alternate_many(
            &[ours.clone(), memory.clone()],
            tasks,
            budget,
            args.rounds,
            get,
        )
        .await?;
        report.add(
            Row::new(
                "logstore",
                format!("get 4 KiB, {tasks} tasks"),
                "ops/s",
                rates.mean(0),
            )
            .against("object_store 0.14 InMemory", rates.mean(1))
            .goal(Some(1.0))
            .spread(rates.spread(0, 1))
            .note("read from the page cache"),
        );
    }
    // CAS increments, LogStore against MemoryBackend running the same loop,
    // in rounds that rotate who goes first.
    let memory: Arc<dyn Backend> = Arc::new(storage_core::MemoryBackend::new());
    let sides = [Arc::clone(&logstore) as Arc<dyn Backend>, memory];
    let rounds = args.rounds.max(1);
    let mut rounds_seen = Vec::new();
    for round in 0..rounds as usize {
        let mut rate = vec![0.0; 2];
        for k in 0..2 {
            let slot = (k + round) % 2;
            rate[slot] = cas_increments(&sides[slot], budget / rounds).await?;
        }
        rounds_seen.push(rate);
    }
    let rates = crate::bench::Rates {
        rounds: rounds_seen,
    };
    report.add(
        Row::new(
            "logstore",
            "CAS increments of one counter, 16 tasks",
            "ops/s",
            rates.mean(0),
        )
        .against("MemoryBackend, same loop", rates.mean(1))
        .spread(rates.spread(0, 1))
        .note("each success is a get, a parse and a durable put with If-Match; refusals retried"),
    );
    logstore.close().await?;

    // Large objects: LogStore keeps values of 1 MiB or more in blob files
    // of their own, fsynced before the record that points at them.
    let large = Store::Ours(Arc::new(
        LogStore::open(scratch.join("logstore-large")).await?,
    ));
    std::fs::create_dir_all(scratch.join("lfs-large"))?;
    let lfs = Store::peer(
        object_store::local::LocalFileSystem::new_with_prefix(scratch.join("lfs-large"))?
            .with_fsync(true),
    );
    report
        .section("logstore: large objects against object_store's LocalFileSystem with_fsync(true)");
    crate::bench::large_rows(
        report,
        "logstore",
        [&large, &lfs],
        "LocalFileSystem with_fsync(true)",
        &args.large_sizes(),
        args.large_reps,
        None,
        |_, op| {
            if op == "get" {
                "read from the page cache (written just before)".to_owned()
            } else {
                "both fsync the content and the directory entry that names it".to_owned()
            }
        },
    )
    .await?;

    report.section(&format!(
        "logstore: opening a store of {} live 100-byte objects",
        args.objects
    ));
    let dir = scratch.join("many");
    let started = Instant::now();
    fill(&dir, args.objects).await?;
    let fill_secs = started.elapsed().as_secs_f64();
    let with = median_open(&dir)?;
    std::fs::remove_file(dir.join("index.snap"))?;
    let without = median_open(&dir)?;
    for (label, f) in [
        ("with the index snapshot", &with),
        ("replaying every segment", &without),
    ] {
        anyhow::ensure!(
            f.objects == args.objects,
            "{label}: {} objects, expected {}",
            f.objects,
            args.objects
        );
        report.add(
            Row::new("logstore", format!("open, {label}"), "ms", f.ms).note(format!(
                "median of 3 processes; snapshot used: {}; peak RSS {:.0} MiB",
                f.from_snapshot, f.peak_rss_mib
            )),
        );
    }
    println!("\n(filling it took {fill_secs:.1} s with Durability::Buffered and 256 writers)");
    Ok(())
}

/// Successful compare-and-swap increments per second of one counter by 16
/// tasks: each reads the counter, adds one and writes it back with
/// `If-Match` on the ETag it read, again on a refusal.
async fn cas_increments(store: &Arc<dyn Backend>, budget: Duration) -> anyhow::Result<f64> {
    use storage_core::{PutMode, PutOptions};
    let key = storage_core::Key::new("counter")?;
    store.put_bytes(key.clone(), "0").await?;
    let deadline = Instant::now() + budget;
    let started = Instant::now();
    let tasks = (0..16).map(|_| {
        let (store, key) = (Arc::clone(store), key.clone());
        tokio::spawn(async move {
            let mut won = 0u64;
            while Instant::now() < deadline {
                let found = store.get(&key, storage_core::GetOptions::default()).await?;
                let etag = found.meta.etag.clone();
                let bytes: Vec<Bytes> = found.body.try_collect().await?;
                let value: u64 = std::str::from_utf8(&bytes.concat())?.parse()?;
                let next = Bytes::from((value + 1).to_string());
                match store
                    .put(&key, next.into(), PutOptions::mode(PutMode::IfMatch(etag)))
                    .await
                {
                    Ok(_) => won += 1,
                    Err(storage_core::Error::PreconditionFailed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok::<u64, anyhow::Error>(won)
        })
    });
    let mut total = 0;
    for t in try_join_all(tasks).await? {
        total += t?;
    }
    let rate = total as f64 / started.elapsed().as_secs_f64();
    let end: u64 = std::str::from_utf8(&store.get_bytes(key).await?)?.parse()?;
    anyhow::ensure!(
        end == total,
        "the counter reads {end} after {total} increments"
    );
    Ok(rate)
}
