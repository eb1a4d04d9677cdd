//! `cargo xtask bench`: put and get throughput of our backends against a
//! reference measured in the same run (object_store 0.14's stores, raw
//! file loops, a minimal HTTP client), with the ratio ours/reference, the
//! spread of that ratio over the run's rounds, and the goal issue 17 sets
//! for the row.
//!
//! Every row goes to one [`Report`], printed as it is measured and, with
//! `--json FILE`, written as a JSON array (see [`Row`]).

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as PeerPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use object_store_014 as object_store;
use serde::{Deserialize, Serialize};
use storage_core::{Backend, BackendExt, GetOptions, Key, MemoryBackend};
use storage_disk::FsBackend;

use crate::bench_logstore::RawAppend;
use crate::gcs_minimal::MinimalGcs;

#[derive(clap::Args)]
pub struct Args {
    /// Backends to measure (repeatable): memory, fs, logstore, retry
    /// (overhead of `Retry`), crypto (overhead of `Encrypted`), s3 (on a
    /// SeaweedFS started here), azure (on an Azurite started here), gcs (on a
    /// fake-gcs-server started here).
    /// Default: memory, fs, logstore.
    #[arg(long = "backend")]
    backends: Vec<String>,
    /// Seconds each small-object row runs, per side (split over the rounds).
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Rounds of each small-object row; the sides alternate within a round
    /// and who goes first rotates from round to round.
    #[arg(long, default_value_t = 6)]
    pub rounds: u32,
    /// Sizes of the large objects in MiB (repeatable). Default: 64 and 1024.
    #[arg(long = "large-mib")]
    pub large_mib: Vec<usize>,
    /// Objects in the store whose open time is measured (logstore).
    #[arg(long, default_value_t = 1_000_000)]
    pub objects: usize,
    /// Repetitions of each large-object row, per side (the median is
    /// kept); rounded up to an even number, so that each side goes first
    /// as often as the other.
    #[arg(long, default_value_t = 4)]
    pub large_reps: usize,
    /// Write every row to this file as a JSON array.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Compare this run's ratios with an earlier run's `--json` file and
    /// list the rows whose ratio moved by more than 10 %.
    #[arg(long)]
    compare: Option<PathBuf>,
}

impl Args {
    pub fn large_sizes(&self) -> Vec<usize> {
        if self.large_mib.is_empty() {
            vec![64, 1024]
        } else {
            self.large_mib.clone()
        }
    }
}

const SMALL: usize = 4 * 1024;
const TASKS: usize = 64;
const READ_SET: u64 = 1000;

/// How `object_store` uploads a large object so that it does the same
/// requests as ours: at and above `threshold` bytes, a multipart upload of
/// `part`-byte parts with `in_flight` parts sent at once.
#[derive(Clone, Copy)]
pub struct Multipart {
    pub threshold: usize,
    pub part: usize,
    pub in_flight: usize,
}

/// One side of a comparison.
#[derive(Clone)]
pub enum Store {
    /// One of our backends.
    Ours(Arc<dyn Backend>),
    /// An `object_store` peer, and how it uploads large objects (`None`:
    /// one `put` whatever the size).
    Peer(Arc<dyn ObjectStore>, Option<Multipart>),
    /// A raw append loop (puts only): see [`RawAppend`].
    Raw(Arc<RawAppend>),
    /// The minimal JSON-API client, the GCS reference.
    Gcs(Arc<MinimalGcs>),
}

impl Store {
    /// An `object_store` peer that puts every object in one request.
    pub fn peer(store: impl ObjectStore) -> Store {
        Store::Peer(Arc::new(store), None)
    }

    pub async fn put(&self, key: String, data: Bytes) -> anyhow::Result<()> {
        match self {
            Store::Raw(_) => anyhow::bail!("a raw loop runs on its own thread"),
            Store::Ours(b) => {
                b.put_bytes(key, data).await?;
            }
            Store::Peer(s, multipart) => match multipart {
                Some(m) if data.len() >= m.threshold => {
                    let upload = s.put_multipart(&PeerPath::from(key)).await?;
                    let mut writer = WriteMultipart::new_with_chunk_size(upload, m.part);
                    for part in data.chunks(m.part) {
                        writer.wait_for_capacity(m.in_flight).await?;
                        writer.put(data.slice_ref(part));
                    }
                    writer.finish().await?;
                }
                _ => {
                    s.put(&PeerPath::from(key), data.into()).await?;
                }
            },
            Store::Gcs(c) => c.put(&key, data).await?,
        }
        Ok(())
    }

    /// Reads `key` whole into one buffer.
    pub async fn get(&self, key: String) -> anyhow::Result<Bytes> {
        Ok(match self {
            Store::Raw(_) => anyhow::bail!("a raw loop does not read"),
            Store::Ours(b) => b.get_bytes(key).await?,
            Store::Peer(s, _) => s.get(&PeerPath::from(key)).await?.bytes().await?,
            Store::Gcs(c) => c.get(&key).await?,
        })
    }

    /// Reads `key` chunk by chunk as it arrives, keeping none: the bytes
    /// read.
    pub async fn get_streamed(&self, key: String) -> anyhow::Result<u64> {
        let mut got = 0u64;
        match self {
            Store::Raw(_) => anyhow::bail!("a raw loop does not read"),
            Store::Ours(b) => {
                let mut body = b.get(&Key::new(key)?, GetOptions::default()).await?.body;
                while let Some(chunk) = body.try_next().await? {
                    got += std::hint::black_box(chunk).len() as u64;
                }
            }
            Store::Peer(s, _) => {
                let mut body = s.get(&PeerPath::from(key)).await?.into_stream();
                while let Some(chunk) = body.try_next().await? {
                    got += std::hint::black_box(chunk).len() as u64;
                }
            }
            Store::Gcs(c) => got = c.get_streamed(&key).await?,
        }
        Ok(got)
    }
}

/// Runs `op` in `tasks` concurrent tasks until `budget` has passed; returns
/// operations per second. A raw loop runs alone on a blocking thread.
async fn timed<F, Fut>(store: &Store, tasks: usize, budget: Duration, op: F) -> anyhow::Result<f64>
where
    F: Fn(Store, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let started = Instant::now();
    let deadline = started + budget;
    if let Store::Raw(raw) = store {
        let raw = Arc::clone(raw);
        let records = tokio::task::spawn_blocking(move || raw.run(deadline)).await??;
        return Ok(records as f64 / started.elapsed().as_secs_f64());
    }
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (op, done, store) = (Arc::clone(&op), Arc::clone(&done), store.clone());
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < deadline {
                    op(store.clone(), t, i).await?;
                    i += 1;
                }
                done.fetch_add(i, Ordering::Relaxed);
                Ok::<(), anyhow::Error>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Each store's rate per round (ops/s).
pub struct Rates {
    /// `rounds[r][slot]`: store `slot`'s rate in round `r`.
    pub rounds: Vec<Vec<f64>>,
}

impl Rates {
    /// Store `slot`'s mean rate over the rounds.
    pub fn mean(&self, slot: usize) -> f64 {
        self.rounds.iter().map(|r| r[slot]).sum::<f64>() / self.rounds.len().max(1) as f64
    }

    /// The lowest and highest ratio of store `a`'s rate to store `b`'s in
    /// one round.
    pub fn spread(&self, a: usize, b: usize) -> [f64; 2] {
        spread(self.rounds.iter().map(|r| r[a] / r[b]))
    }
}

/// The lowest and highest of `ratios`.
pub fn spread(ratios: impl Iterator<Item = f64>) -> [f64; 2] {
    ratios.fold([f64::INFINITY, f64::NEG_INFINITY], |[lo, hi], r| {
        [lo.min(r), hi.max(r)]
    })
}

/// Runs `op` on each store in `rounds` rounds that add up to `budget` per
/// store. Within a round the stores run one after the other, and who goes
/// first rotates from round to round, so that no side always runs on a
/// machine warmed (or tired) by the other.
pub async fn alternate_many<F, Fut>(
    stores: &[Store],
    tasks: usize,
    budget: Duration,
    rounds: u32,
    op: F,
) -> anyhow::Result<Rates>
where
    F: Fn(Store, usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let rounds = rounds.max(1);
    let mut all = Vec::new();
    for round in 0..rounds {
        let mut rates = vec![0.0; stores.len()];
        for k in 0..stores.len() {
            let slot = (k + round as usize) % stores.len();
            let offset = u64::from(round) << 40;
            let op = op.clone();
            let shifted = move |s: Store, t: usize, i: u64| op(s, t, i + offset);
            // No side pays for the write-back of another's dirty pages.
            flush_page_cache_writes();
            rates[slot] = timed(&stores[slot], tasks, budget / rounds, shifted).await?;
        }
        all.push(rates);
    }
    Ok(Rates { rounds: all })
}

/// The median of `values`.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Writes every dirty page back (`sync(1)`), outside the timed region.
pub fn flush_page_cache_writes() {
    let _ = std::process::Command::new("sync").status();
}

/// One row of the bench: what `--json` writes for it.
#[derive(Clone, Serialize, Deserialize)]
pub struct Row {
    /// The backend measured (`memory`, `fs`, `logstore`, `s3`, …).
    pub backend: String,
    /// What was measured, for example `put 4 KiB, 64 tasks`.
    pub operation: String,
    /// Our rate, in `unit`.
    pub ours: f64,
    /// The reference's rate in the same run, in `unit` (`None`: no
    /// reference).
    pub reference: Option<f64>,
    /// What the reference is.
    pub reference_name: String,
    /// `ops/s`, `MB/s` (10^6 bytes per second) or `ms`.
    pub unit: String,
    /// `ours / reference`.
    pub ratio: Option<f64>,
    /// The ratio issue 17 (or 12) asks for.
    pub goal: Option<f64>,
    /// Whether `ratio >= goal` (`None` without a goal).
    pub met: Option<bool>,
    /// The lowest and highest ratio of one round (or repetition).
    pub spread: Option<[f64; 2]>,
    /// Anything the figures need to be read right (page cache, peak RSS,
    /// the requests each side made).
    pub note: String,
}

impl Row {
    pub fn new(backend: &str, operation: impl Into<String>, unit: &str, ours: f64) -> Row {
        Row {
            backend: backend.to_owned(),
            operation: operation.into(),
            ours,
            reference: None,
            reference_name: String::new(),
            unit: unit.to_owned(),
            ratio: None,
            goal: None,
            met: None,
            spread: None,
            note: String::new(),
        }
    }

    pub fn against(mut self, name: &str, reference: f64) -> Row {
        self.reference_name = name.to_owned();
        self.reference = Some(reference);
        self.ratio = Some(self.ours / reference);
        self.met = self.goal.map(|g| self.ours / reference >= g);
        self
    }

    pub fn goal(mut self, goal: Option<f64>) -> Row {
        self.goal = goal;
        self.met = match (goal, self.ratio) {
            (Some(g), Some(r)) => Some(r >= g),
            _ => None,
        };
        self
    }

    pub fn spread(mut self, spread: [f64; 2]) -> Row {
        self.spread = Some(spread);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// Every row of a run, printed as it is added.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Prints a section title and the table's header.
    pub fn section(&self, title: &str) {
        println!("\n## {title}\n");
        println!(
            "| backend | operation | ours | reference | reference is | ratio | spread | goal | met | note |"
        );
        println!("|---|---|---:|---:|---|---:|---|---:|---|---|");
    }

    pub fn add(&mut self, row: Row) {
        let reference = row.reference.map_or("—".to_owned(), |r| {
            format!("{} {}", fmt_rate(r), row.unit)
        });
        let ratio = row.ratio.map_or("—".to_owned(), |r| format!("{r:.2}×"));
        let spread = row
            .spread
            .map_or("—".to_owned(), |[lo, hi]| format!("{lo:.2}–{hi:.2}"));
        let goal = row.goal.map_or("—".to_owned(), |g| format!("≥ {g:.2}×"));
        let met = match row.met {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "—",
        };
        println!(
            "| {} | {} | {} {} | {reference} | {} | {ratio} | {spread} | {goal} | {met} | {} |",
            row.backend,
            row.operation,
            fmt_rate(row.ours),
            row.unit,
            row.reference_name,
            row.note
        );
        self.rows.push(row);
    }
}

/// Adds, for each of `rows` (per concurrency: its label and the put and
/// get rates of the stores), a put and a get row of store 0 against store
/// `reference`. `get_note` says where the gets read from (for example the
/// page cache); `None` adds no get rows.
#[allow(clippy::too_many_arguments)]
pub fn small_report(
    report: &mut Report,
    backend: &str,
    rows: &[(&'static str, Rates, Rates)],
    reference: usize,
    reference_name: &str,
    put_goal: Option<f64>,
    get_goal: Option<f64>,
    get_note: Option<&str>,
) {
    for (label, puts, got) in rows {
        let mut sides = vec![("put", puts, put_goal, "")];
        if let Some(note) = get_note {
            sides.push(("get", got, get_goal, note));
        }
        for (op, rates, goal, note) in sides {
            report.add(
                Row::new(
                    backend,
                    format!("{op} 4 KiB, {label}"),
                    "ops/s",
                    rates.mean(0),
                )
                .against(reference_name, rates.mean(reference))
                .goal(goal)
                .spread(rates.spread(0, reference))
                .note(note),
            );
        }
    }
}

/// The note of small gets from a test server.
const SERVER_GETS: &str =
    "the same 1,000 objects read over and over: from the server's memory or its page cache";

/// Peak resident memory of this process since the last
/// [`reset_peak_rss`], and its resident memory now, in KiB
/// (`/proc/self/status`: `VmHWM`, `VmRSS`).
fn rss_kib() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .with_context(|| format!("no {name} in /proc/self/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}

/// Resets the peak resident memory to the current (`clear_refs` value 5,
/// proc(5)).
fn reset_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting VmHWM")
}

/// Runs `op` and returns its seconds and the peak resident memory it added
/// above the memory resident when it started, in MiB.
async fn with_peak<Fut: Future<Output = anyhow::Result<()>>>(
    op: Fut,
) -> anyhow::Result<(f64, f64)> {
    flush_page_cache_writes();
    reset_peak_rss()?;
    let (_, before) = rss_kib()?;
    let started = Instant::now();
    op.await?;
    let secs = started.elapsed().as_secs_f64();
    let (peak, _) = rss_kib()?;
    Ok((secs, peak.saturating_sub(before) as f64 / 1024.0))
}

/// A large put and a full streamed get of `stores[0]` (ours) against
/// `stores[1]` (the reference), for each size, `reps` times with who goes
/// first alternating: rows in MB/s with each side's added peak RSS.
#[allow(clippy::too_many_arguments)]
pub async fn large_rows(
    report: &mut Report,
    backend: &str,
    stores: [&Store; 2],
    reference_name: &str,
    sizes: &[usize],
    reps: usize,
    goal: Option<f64>,
    notes: impl Fn(usize, &str) -> String,
) -> anyhow::Result<()> {
    for &mib in sizes {
        let len = mib << 20;
        let data = Bytes::from(
            (0..len as u64)
                .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8)
                .collect::<Vec<u8>>(),
        );
        let mb = len as f64 / 1e6;
        // [side][put|get]: (seconds, peak MiB) per repetition.
        let mut runs = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
        for rep in 0..reps.max(1).next_multiple_of(2) {
            for k in 0..2 {
                let slot = (k + rep) % 2;
                let store = stores[slot];
                let key = format!("large-{mib}");
                let put = with_peak(store.put(key.clone(), data.clone())).await?;
                let get = with_peak(async {
                    let got = store.get_streamed(key.clone()).await?;
                    anyhow::ensure!(got == len as u64, "read {got} of {len} bytes");
                    Ok(())
                })
                .await?;
                runs[slot][0].push(put);
                runs[slot][1].push(get);
            }
        }
        for (i, op) in ["put", "get"].into_iter().enumerate() {
            let rate = |slot: usize| {
                let mut secs: Vec<f64> = runs[slot][i].iter().map(|r| r.0).collect();
                mb / median(&mut secs)
            };
            let peak = |slot: usize| runs[slot][i].iter().map(|r| r.1).fold(0.0_f64, f64::max);
            let per_rep = runs[0][i].iter().zip(&runs[1][i]).map(|(o, r)| r.0 / o.0);
            let extra = notes(mib, op);
            report.add(
                Row::new(backend, format!("{op} {mib} MiB"), "MB/s", rate(0))
                    .against(reference_name, rate(1))
                    .goal(goal)
                    .spread(spread(per_rep))
                    .note(format!(
                        "peak RSS +{:.0} MiB ours, +{:.0} MiB reference{}{extra}",
                        peak(0),
                        peak(1),
                        if extra.is_empty() { "" } else { "; " }
                    )),
            );
        }
    }
    Ok(())
}

/// Runs the bench again in a child process with glibc's mapping threshold
/// fixed ([`crate::MMAP_THRESHOLD`]), as the bounded-memory checks of the
/// suite run, unless this process already has it: `None` in the child.
pub fn rerun_with_fixed_mmap_threshold() -> Option<anyhow::Result<ExitCode>> {
    let (name, value) = crate::MMAP_THRESHOLD;
    if std::env::var(name).is_ok_and(|v| v == value) {
        return None;
    }
    let status = std::env::current_exe().and_then(|exe| {
        std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(name, value)
            .status()
    });
    Some(match status {
        Ok(status) if status.success() => Ok(ExitCode::SUCCESS),
        Ok(status) => Err(anyhow::anyhow!("the bench failed: {status}")),
        Err(e) => Err(e.into()),
    })
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    let names = if args.backends.is_empty() {
        vec!["memory".to_owned(), "fs".to_owned(), "logstore".to_owned()]
    } else {
        args.backends.clone()
    };
    let scratch = tempfile::Builder::new()
        .prefix("storage-bench-")
        .tempdir()?;
    let backtraces = ["RUST_BACKTRACE", "RUST_LIB_BACKTRACE"]
        .into_iter()
        .filter_map(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .map(|v| format!("{name}={v}"))
        })
        .collect::<Vec<_>>();
    let on = backtraces.iter().any(|b| !b.ends_with("=0"));
    println!(
        "# cargo xtask bench: {} s per small row and side in {} rounds; {} repetitions per large row and side; {}; {}={} (glibc: allocations from 128 KiB are mapped and unmapped, so that peak RSS shows what each operation holds, not what the allocator kept from the one before)",
        args.seconds,
        args.rounds,
        args.large_reps.max(1).next_multiple_of(2),
        match (backtraces.is_empty(), on) {
            (true, _) => "RUST_BACKTRACE unset".to_owned(),
            (false, false) => format!("{} (backtraces off)", backtraces.join(", ")),
            (false, true) => format!(
                "{} (errors capture backtraces: figures not comparable with runs without)",
                backtraces.join(", ")
            ),
        },
        crate::MMAP_THRESHOLD.0,
        crate::MMAP_THRESHOLD.1,
    );
    println!(
        "\nratio = ours / reference; spread = the lowest and highest ratio of one round (small rows) or one repetition (large rows); large gets are read as streams, chunk by chunk, and the note's peak RSS is what each side added above the process's resident memory when it started."
    );
    let mut report = Report::default();
    let budget = Duration::from_secs_f64(args.seconds);
    for name in &names {
        match name.as_str() {
            "memory" => memory_rows(&mut report, &args, budget).await?,
            "fs" => fs_rows(&mut report, &args, budget, &scratch.path().join("fs")).await?,
            "logstore" => {
                let dir = scratch.path().join("logstore");
                std::fs::create_dir_all(&dir)?;
                crate::bench_logstore::run(&mut report, &dir, &args).await?;
            }
            "retry" => retry_overhead(&mut report, &scratch.path().join("retry"), &args).await?,
            "crypto" => {
                crate::bench_crypto::run(&mut report, &scratch.path().join("crypto"), &args).await?
            }
            "s3" | "azure" | "gcs" => {
                let (ours, reference, reference_name, goal, server) = match name.as_str() {
                    "s3" => s3_pair().await?,
                    "azure" => azure_pair().await?,
                    _ => gcs_pair().await?,
                };
                cloud_rows(
                    &mut report,
                    name,
                    [&ours, &reference],
                    reference_name,
                    goal,
                    &args,
                    budget,
                )
                .await?;
                // Stopped before the next section, whose figures it would
                // otherwise share the two cores with (SeaweedFS keeps
                // working for a while after its last request).
                drop(server);
            }
            other => anyhow::bail!(
                "unknown backend {other:?}; known: memory, fs, logstore, retry, crypto, s3, azure, gcs"
            ),
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report.rows)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("\n{} rows written to {}", report.rows.len(), path.display());
    }
    if let Some(path) = &args.compare {
        compare(&report.rows, path)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints how each ratio moved against an earlier run's `--json` file.
fn compare(rows: &[Row], path: &std::path::Path) -> anyhow::Result<()> {
    let earlier: Vec<Row> = serde_json::from_slice(
        &std::fs::read(path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    println!("\n## Against {}\n", path.display());
    println!("| backend | operation | reference is | ratio then | ratio now | change |");
    println!("|---|---|---|---:|---:|---:|");
    let (mut compared, mut moved) = (0, 0);
    for row in rows {
        let Some(now) = row.ratio else { continue };
        let Some(then) = earlier
            .iter()
            .find(|e| {
                e.backend == row.backend
                    && e.operation == row.operation
                    && e.reference_name == row.reference_name
            })
            .and_then(|e| e.ratio)
        else {
            continue;
        };
        compared += 1;
        let change = now / then - 1.0;
        if change.abs() > 0.10 {
            moved += 1;
        }
        println!(
            "| {} | {} | {} | {then:.2}× | {now:.2}× | {}{:+.1} %{} |",
            row.backend,
            row.operation,
            row.reference_name,
            if change.abs() > 0.10 { "**" } else { "" },
            change * 100.0,
            if change.abs() > 0.10 { "**" } else { "" },
        );
    }
    println!("\n{moved} of {compared} ratios moved by more than 10 %.");
    Ok(())
}

/// Small rows of `stores[0]` against `stores[1]`, then the large rows.
async fn cloud_rows(
    report: &mut Report,
    backend: &str,
    stores: [&Store; 2],
    reference_name: &str,
    goal: f64,
    args: &Args,
    budget: Duration,
) -> anyhow::Result<()> {
    report.section(&format!("{backend}: ours against {reference_name}"));
    let both = [stores[0].clone(), stores[1].clone()];
    let rows = small_rows(&both, budget, args.rounds).await?;
    small_report(
        report,
        backend,
        &rows,
        1,
        reference_name,
        Some(goal),
        Some(goal),
        Some(SERVER_GETS),
    );
    let how = |mib: usize, op: &str| -> String {
        let bytes = (mib as u64) << 20;
        let multipart = match backend {
            "s3" => bytes >= storage_s3::DEFAULT_MULTIPART_THRESHOLD,
            "azure" => bytes > AZURE_SINGLE_PUT,
            _ => bytes >= storage_gcs::DEFAULT_RESUMABLE_THRESHOLD,
        };
        match (op, multipart) {
            ("get", _) => {
                "one GET each, of what the server had just written (its page cache)".to_owned()
            }
            (_, false) => "one request each".to_owned(),
            (_, true) => match backend {
                "s3" => "both multipart: 8 MiB parts, 3 in flight".to_owned(),
                "azure" => "both staged blocks: 4 MiB blocks, 4 in flight".to_owned(),
                _ => {
                    "both resumable uploads in 8 MiB chunks, one at a time, then one metadata PATCH"
                        .to_owned()
                }
            },
        }
    };
    let mut sizes = args.large_sizes();
    if backend == "gcs" && sizes.iter().any(|&mib| mib > GCS_LARGEST_MIB) {
        sizes.retain(|&mib| mib <= GCS_LARGEST_MIB);
        sizes.push(GCS_LARGEST_MIB);
        sizes.dedup();
        println!(
            "\ngcs: large rows stop at {GCS_LARGEST_MIB} MiB. fake-gcs-server 1.54 keeps every object in its memory and, in a measured run, had not finished the 1 GiB rows after 10 minutes (8.6 GB resident, one core busy): that row would measure the emulator."
        );
    }
    large_rows(
        report,
        backend,
        stores,
        reference_name,
        &sizes,
        args.large_reps,
        Some(goal),
        how,
    )
    .await
}

/// The largest object of the GCS rows, in MiB (see `cloud_rows`).
const GCS_LARGEST_MIB: usize = 256;

/// `--backend memory`: `MemoryBackend` against `InMemory`, small rows only.
async fn memory_rows(report: &mut Report, args: &Args, budget: Duration) -> anyhow::Result<()> {
    report.section("memory: MemoryBackend against object_store's InMemory");
    let stores = [
        Store::Ours(Arc::new(MemoryBackend::new())),
        Store::peer(object_store::memory::InMemory::new()),
    ];
    let rows = small_rows(&stores, budget, args.rounds).await?;
    small_report(
        report,
        "memory",
        &rows,
        1,
        "InMemory",
        None,
        None,
        Some("in memory"),
    );
    println!(
        "\nmemory: no large rows. Both stores keep the caller's buffer and hand it back, so a large put or get moves no bytes and its MB/s measures nothing."
    );
    Ok(())
}

/// `--backend fs`: `FsBackend` against `LocalFileSystem` with and without
/// `with_fsync(true)`, small and large rows.
async fn fs_rows(
    report: &mut Report,
    args: &Args,
    budget: Duration,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    report.section("fs: FsBackend against object_store's LocalFileSystem");
    for sub in ["synced", "unsynced"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let ours = Store::Ours(Arc::new(FsBackend::new(dir.join("ours"))?));
    let synced = Store::peer(
        object_store::local::LocalFileSystem::new_with_prefix(dir.join("synced"))
            .context("LocalFileSystem")?
            .with_fsync(true),
    );
    let unsynced = Store::peer(
        object_store::local::LocalFileSystem::new_with_prefix(dir.join("unsynced"))
            .context("LocalFileSystem")?,
    );
    let stores = [ours.clone(), synced.clone(), unsynced];
    let rows = small_rows(&stores, budget, args.rounds).await?;
    small_report(
        report,
        "fs",
        &rows,
        1,
        "LocalFileSystem with_fsync(true)",
        Some(1.0),
        None,
        Some("read from the page cache"),
    );
    small_report(
        report,
        "fs",
        &rows,
        2,
        "LocalFileSystem (no fsync)",
        None,
        None,
        None,
    );
    large_rows(
        report,
        "fs",
        [&ours, &synced],
        "LocalFileSystem with_fsync(true)",
        &args.large_sizes(),
        args.large_reps,
        None,
        |_, op| {
            if op == "get" {
                "read from the page cache (written just before); FsBackend verifies SHA-256"
                    .to_owned()
            } else {
                "both fsync the file and its directory".to_owned()
            }
        },
    )
    .await?;
    println!(
        "\nfs: FsBackend fsyncs every put twice (its one file, content then trailer, and the directory after the rename) and verifies SHA-256 on full reads; LocalFileSystem with_fsync(true) fsyncs the file and the directory (File::sync_all), and verifies nothing."
    );
    Ok(())
}

/// `--backend retry`: 4 KiB puts and gets through `Retry` with no faults
/// against the same backend bare, on memory and on a durable LogStore.
async fn retry_overhead(
    report: &mut Report,
    dir: &std::path::Path,
    args: &Args,
) -> anyhow::Result<()> {
    use storage_retry::Retry;
    report.section("retry: the same backend through Retry (no faults) against bare");
    let budget = Duration::from_secs_f64(args.seconds);
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let log: Arc<dyn Backend> = Arc::new(storage_disk::LogStore::open(dir).await?);
    for (name, bare) in [("memory", memory), ("logstore", log)] {
        let retried: Arc<dyn Backend> = Arc::new(Retry::new(Arc::clone(&bare)));
        let stores = [Store::Ours(retried), Store::Ours(bare)];
        let rows = small_rows(&stores, budget, args.rounds).await?;
        small_report(
            report,
            &format!("{name} through Retry"),
            &rows,
            1,
            &format!("{name} bare"),
            None,
            None,
            Some("in memory or the page cache"),
        );
    }
    Ok(())
}

/// 4 KiB puts and gets on each of `stores` (after writing the objects the
/// gets read), sequential and with 64 tasks, in alternating rounds: per
/// concurrency, its label and the put and get rates.
pub async fn small_rows(
    stores: &[Store],
    budget: Duration,
    rounds: u32,
) -> anyhow::Result<Vec<(&'static str, Rates, Rates)>> {
    let small = Bytes::from(vec![0x5a; SMALL]);
    for store in stores {
        for i in 0..READ_SET {
            store.put(format!("read/{i}"), small.clone()).await?;
        }
    }
    let mut rows = Vec::new();
    for (label, tasks) in [("sequential", 1), ("64 tasks", TASKS)] {
        let data = small.clone();
        // Each put sends bytes of its own, as a writer of new content does:
        // with one shared buffer, an in-memory store would keep no bytes
        // at all per put while a layer that transforms the body keeps 4 KiB.
        // Each task overwrites its own 1,024 keys, so that an in-memory
        // store stays the same size from round to round (and within 256 MiB
        // at 64 tasks) instead of growing with the rate it measures.
        let put = move |s: Store, t: usize, i: u64| {
            let data = Bytes::copy_from_slice(&data);
            async move { s.put(format!("write/{t}/{}", i % 1024), data).await }
        };
        let puts = alternate_many(stores, tasks, budget, rounds, put).await?;
        let get = |s: Store, t: usize, i: u64| async move {
            let got = s
                .get(format!("read/{}", (t as u64 * 7919 + i) % READ_SET))
                .await?;
            anyhow::ensure!(got.len() == SMALL, "short read");
            Ok(())
        };
        let gets = alternate_many(stores, tasks, budget, rounds, get).await?;
        rows.push((label, puts, gets));
    }
    Ok(rows)
}

/// A rate with no decimals above 100, one below.
pub fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A pair to measure: ours, the reference, its name, the goal ratio and
/// the server both use.
type Pair = (
    Store,
    Store,
    &'static str,
    f64,
    storage_conformance::servers::RunningServer,
);

/// Starts SeaweedFS and returns `storage-s3` and `object_store`'s
/// `AmazonS3` on one bucket of it (under the prefixes `ours/` and `peer/`).
async fn s3_pair() -> anyhow::Result<Pair> {
    use storage_conformance::servers::{self, Lifetime, S3_ACCESS_KEY, S3_SECRET_KEY};
    let tools = servers::tools_dir();
    servers::install(&tools)?;
    let server = servers::start_seaweedfs(&tools, Lifetime::TiedToThisProcess)?;
    let config = |prefix: &str| {
        storage_s3::S3Config::new("bench")
            .endpoint(server.endpoint.clone())
            .path_style(true)
            .region("us-east-1")
            .credentials(S3_ACCESS_KEY, S3_SECRET_KEY, None)
            .prefix(prefix)
    };
    let admin = config("").build()?;
    crate::cloud::when_ready(&server, "the bench bucket", || admin.create_bucket())
        .await
        .map_err(anyhow::Error::msg)?;
    let ours = config("ours/").build()?;
    let peer = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(server.endpoint.clone())
        .with_bucket_name("bench")
        .with_access_key_id(S3_ACCESS_KEY)
        .with_secret_access_key(S3_SECRET_KEY)
        .with_region("us-east-1")
        .with_allow_http(true)
        .build()?;
    let peer = object_store::prefix::PrefixStore::new(peer, "peer");
    // storage-s3's defaults: multipart from 16 MiB, 8 MiB parts, 3 in flight.
    let multipart = Multipart {
        threshold: storage_s3::DEFAULT_MULTIPART_THRESHOLD as usize,
        part: storage_s3::DEFAULT_PART_SIZE as usize,
        in_flight: 3,
    };
    Ok((
        Store::Ours(Arc::new(ours)),
        Store::Peer(Arc::new(peer), Some(multipart)),
        "object_store 0.14 AmazonS3",
        1.0,
        server,
    ))
}

/// The largest body in memory `storage-azure` sends as one Put Blob with
/// its defaults: `DEFAULT_SINGLE_PUT_IN_MEMORY` (256 MiB), lowered to what
/// its default request timeout (60 s) allows at `DEFAULT_MIN_UPLOAD_RATE`
/// (4 MiB/s): 240 MiB (see `AzureConfig::min_upload_rate`).
const AZURE_SINGLE_PUT: u64 = {
    let by_rate = 60 * storage_azure::DEFAULT_MIN_UPLOAD_RATE;
    if by_rate < storage_azure::DEFAULT_SINGLE_PUT_IN_MEMORY {
        by_rate
    } else {
        storage_azure::DEFAULT_SINGLE_PUT_IN_MEMORY
    }
};

/// Starts Azurite and returns `storage-azure` and `object_store`'s
/// `MicrosoftAzure` on one container of it (under the prefixes `ours/` and
/// `peer/`), both authenticated with the emulator's account key.
async fn azure_pair() -> anyhow::Result<Pair> {
    use storage_azure::{AzureConfig, EMULATOR_ACCOUNT, EMULATOR_KEY};
    use storage_conformance::servers::{self, Lifetime};
    let tools = servers::tools_dir();
    servers::install(&tools)?;
    let server = servers::start_azurite(&tools, Lifetime::TiedToThisProcess)?;
    let endpoint = format!("{}/{EMULATOR_ACCOUNT}", server.endpoint);
    let config = |prefix: &str| AzureConfig::emulator(&endpoint, "bench").prefix(prefix);
    let admin = config("").build()?;
    crate::cloud::when_ready(&server, "the bench container", || admin.create_container())
        .await
        .map_err(anyhow::Error::msg)?;
    let ours = config("ours/").build()?;
    let peer = object_store::azure::MicrosoftAzureBuilder::new()
        .with_account(EMULATOR_ACCOUNT)
        .with_access_key(EMULATOR_KEY)
        .with_container_name("bench")
        .with_endpoint(endpoint.clone())
        .with_allow_http(true)
        .build()?;
    let peer = object_store::prefix::PrefixStore::new(peer, "peer");
    // storage-azure's defaults for a body in memory: one Put Blob up to
    // AZURE_SINGLE_PUT, staged 4 MiB blocks (4 in flight) above.
    let multipart = Multipart {
        threshold: AZURE_SINGLE_PUT as usize + 1,
        part: storage_azure::DEFAULT_BLOCK_SIZE as usize,
        in_flight: 4,
    };
    Ok((
        Store::Ours(Arc::new(ours)),
        Store::Peer(Arc::new(peer), Some(multipart)),
        "object_store 0.14 MicrosoftAzure",
        1.0,
        server,
    ))
}

/// Starts fake-gcs-server and returns `storage-gcs` and the minimal
/// JSON-API client on one bucket of it.
///
/// `object_store`'s `GoogleCloudStorage` cannot be pointed at this server:
/// configured as its docs say (a service account file with `gcs_base_url`
/// and `disable_oauth`), its puts go to the XML API, which fake-gcs-server
/// 1.54 answers with 400 "invalid uploadType".
async fn gcs_pair() -> anyhow::Result<Pair> {
    use storage_conformance::servers::{self, Lifetime};
    use storage_gcs::GcsConfig;
    let tools = servers::tools_dir();
    servers::install(&tools)?;
    let server = servers::start_fake_gcs(&tools, Lifetime::TiedToThisProcess)?;
    let store = GcsConfig::emulator(server.endpoint.clone(), "bench")
        .prefix("ours/")
        .build()?;
    crate::cloud::when_ready(&server, "the bench bucket", || {
        store.create_bucket("bench-project")
    })
    .await
    .map_err(anyhow::Error::msg)?;
    let minimal = MinimalGcs::new(&server.endpoint, "bench", "ref/")?;
    Ok((
        Store::Ours(Arc::new(store)),
        Store::Gcs(Arc::new(minimal)),
        "minimal reqwest JSON-API client",
        0.9,
        server,
    ))
}

/// CPU seconds (user + system) of process `pid` so far, from
/// `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|u| u.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((ticks(11) + ticks(12)) / 100.0)
}

/// `cargo xtask probe BACKEND N`: sequential 4 KiB puts and gets with our
/// client and the reference against one test server (`s3`: SeaweedFS,
/// `azure`: Azurite, `gcs`: fake-gcs-server), with the client's and the
/// server's CPU time per request, to tell client cost from server work.
pub async fn probe(backend: &str, requests: usize) -> anyhow::Result<()> {
    let (ours, peer, _, _, server) = match backend {
        "s3" => s3_pair().await?,
        "azure" => azure_pair().await?,
        "gcs" => gcs_pair().await?,
        other => anyhow::bail!("probe knows s3, azure and gcs, not {other:?}"),
    };
    let data = Bytes::from(vec![7u8; 4096]);
    let server_pid = server.pid().to_string();
    let cpu =
        || -> anyhow::Result<(f64, f64)> { Ok((cpu_seconds("self")?, cpu_seconds(&server_pid)?)) };
    for (name, store) in [
        ("ours", &ours),
        ("reference", &peer),
        ("ours", &ours),
        ("reference", &peer),
    ] {
        for op in ["put", "get"] {
            store.put("probe".into(), data.clone()).await?;
            let ((client0, server0), t0) = (cpu()?, Instant::now());
            for _ in 0..requests {
                if op == "put" {
                    store.put("probe".into(), data.clone()).await?;
                } else {
                    store.get("probe".into()).await?;
                }
            }
            let secs = t0.elapsed().as_secs_f64();
            let (client1, server1) = cpu()?;
            let per = |a: f64, b: f64| (b - a) * 1e3 / requests as f64;
            println!(
                "{name}: {op} {:.0}/s, wall {:.3} ms, client CPU {:.3} ms, server CPU {:.3} ms per request",
                requests as f64 / secs,
                secs * 1e3 / requests as f64,
                per(client0, client1),
                per(server0, server1),
            );
        }
    }
    Ok(())
}
