//! `cargo xtask bench`: put and get throughput of our backends against
//! `object_store`'s peers, in the same run, with the ratio ours/peer.

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use object_store::ObjectStore;
use object_store::path::Path as PeerPath;
use storage_core::{Backend, BackendExt, MemoryBackend};
use storage_disk::FsBackend;

#[derive(clap::Args)]
pub struct Args {
    /// Backends to measure (repeatable): memory, fs, logstore, retry
    /// (overhead of `Retry`), crypto (overhead of `Encrypted`), s3 (on a
    /// SeaweedFS started here), azure (on an Azurite started here), gcs (on a
    /// fake-gcs-server started here).
    /// Default: memory, fs, logstore.
    #[arg(long = "backend")]
    backends: Vec<String>,
    /// Seconds each small-object row runs, per side.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Size of the large object in MiB.
    #[arg(long, default_value_t = 256)]
    pub large_mib: usize,
    /// Objects in the store whose open time is measured (logstore).
    #[arg(long, default_value_t = 1_000_000)]
    objects: usize,
    /// Repetitions of each large-object row, per side (the median is kept).
    #[arg(long, default_value_t = 5)]
    pub large_reps: usize,
}

const SMALL: usize = 4 * 1024;
const TASKS: usize = 64;
const READ_SET: u64 = 1000;

/// One side of a comparison.
#[derive(Clone)]
pub enum Store {
    /// One of our backends.
    Ours(Arc<dyn Backend>),
    /// An `object_store` peer.
    Peer(Arc<dyn ObjectStore>),
    /// The write-and-fdatasync-per-put baseline (puts only).
    Baseline(Arc<crate::bench_logstore::FsyncPerPut>),
}

impl Store {
    pub async fn put(&self, key: String, data: Bytes) -> anyhow::Result<()> {
        match self {
            Store::Baseline(b) => b.put(data).await?,
            Store::Ours(b) => {
                b.put_bytes(key, data).await?;
            }
            Store::Peer(s) => {
                s.put(&PeerPath::from(key), data.into()).await?;
            }
        }
        Ok(())
    }

    pub async fn get(&self, key: String) -> anyhow::Result<Bytes> {
        Ok(match self {
            Store::Baseline(_) => anyhow::bail!("the baseline does not read"),
            Store::Ours(b) => b.get_bytes(key).await?,
            Store::Peer(s) => s.get(&PeerPath::from(key)).await?.bytes().await?,
        })
    }
}

/// Runs `op` in `tasks` concurrent tasks until `budget` has passed; returns
/// operations per second.
async fn timed<F, Fut>(store: &Store, tasks: usize, budget: Duration, op: F) -> anyhow::Result<f64>
where
    F: Fn(Store, usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + budget;
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

/// Rounds each side runs, alternating, within its budget.
const ROUNDS: u32 = 4;

/// Runs `op` on each store in alternating rounds (ours, peer, ours, …)
/// that add up to `budget` per store; returns each store's mean rate in
/// ops/s.
pub async fn alternate_many<F, Fut>(
    stores: &[Store],
    tasks: usize,
    budget: Duration,
    op: F,
) -> anyhow::Result<Vec<f64>>
where
    F: Fn(Store, usize, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let mut sums = vec![0.0; stores.len()];
    for round in 0..ROUNDS {
        for (slot, store) in stores.iter().enumerate() {
            let offset = u64::from(round) << 40;
            let op = op.clone();
            let shifted = move |s: Store, t: usize, i: u64| op(s, t, i + offset);
            // No side pays for the write-back of another's dirty pages.
            flush_page_cache_writes();
            sums[slot] += timed(store, tasks, budget / ROUNDS, shifted).await?;
        }
    }
    Ok(sums.into_iter().map(|s| s / f64::from(ROUNDS)).collect())
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

struct Row {
    name: String,
    unit: &'static str,
    ours: f64,
    /// `None` where no peer can run against the same server.
    peer: Option<f64>,
}

/// Measures `ours` and, if given, `peer` on the same rows.
async fn measure(ours: &Store, peer: Option<&Store>, args: &Args) -> anyhow::Result<Vec<Row>> {
    let stores: Vec<Store> = std::iter::once(ours.clone()).chain(peer.cloned()).collect();
    let budget = Duration::from_secs_f64(args.seconds);
    let mut rows = Vec::new();
    for (label, puts, gets) in small_rows(&stores, budget).await? {
        for (op, rates) in [("put", puts), ("get", gets)] {
            rows.push(Row {
                name: format!("{op} 4 KiB, {label}"),
                unit: "ops/s",
                ours: rates[0],
                peer: rates.get(1).copied(),
            });
        }
    }
    let large_len = args.large_mib << 20;
    let large = Bytes::from(vec![0xa5; large_len]);
    let mb = large_len as f64 / 1e6;
    // Interleave the sides rep by rep, and flush dirty pages before each
    // timed operation, so that neither side pays for the other's writeback.
    let mut put_secs = vec![Vec::new(); stores.len()];
    let mut get_secs = vec![Vec::new(); stores.len()];
    for _ in 0..args.large_reps.max(1) {
        for (slot, store) in stores.iter().enumerate() {
            flush_page_cache_writes();
            let started = Instant::now();
            store.put("large".into(), large.clone()).await?;
            put_secs[slot].push(started.elapsed().as_secs_f64());
            flush_page_cache_writes();
            let started = Instant::now();
            let got = store.get("large".into()).await?;
            get_secs[slot].push(started.elapsed().as_secs_f64());
            anyhow::ensure!(got.len() == large_len, "short read of the large object");
        }
    }
    let size = format!("{} MiB", args.large_mib);
    rows.push(Row {
        name: format!("put {size}"),
        unit: "MB/s",
        ours: mb / median(&mut put_secs[0]),
        peer: put_secs.get_mut(1).map(|s| mb / median(s)),
    });
    rows.push(Row {
        name: format!("get {size}"),
        unit: "MB/s",
        ours: mb / median(&mut get_secs[0]),
        peer: get_secs.get_mut(1).map(|s| mb / median(s)),
    });
    Ok(rows)
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
    println!(
        "# cargo xtask bench ({} s per small row and side, {} × {} MiB per large row and side)\n",
        args.seconds, args.large_reps, args.large_mib
    );
    println!("| backend | peer | operation | ours | peer | ours/peer |");
    println!("|---|---|---|---:|---:|---:|");
    // Test servers started for the run; each is stopped when dropped.
    let mut started = Vec::new();
    for name in names
        .iter()
        .filter(|n| !matches!(n.as_str(), "logstore" | "retry" | "crypto"))
    {
        let (ours, peer, peer_name) = match name.as_str() {
            "s3" => {
                let (ours, peer, server) = s3_pair().await?;
                started.push(server);
                (ours, Some(peer), "AmazonS3")
            }
            "azure" => {
                let (ours, peer, server) = azure_pair().await?;
                started.push(server);
                (ours, Some(peer), "MicrosoftAzure")
            }
            "gcs" => {
                let (ours, server) = gcs_store().await?;
                started.push(server);
                (ours, None, "GoogleCloudStorage")
            }
            "memory" => (
                Store::Ours(Arc::new(MemoryBackend::new())),
                Some(Store::Peer(Arc::new(object_store::memory::InMemory::new()))),
                "InMemory",
            ),
            "fs" => {
                let ours_dir = scratch.path().join("ours");
                let peer_dir = scratch.path().join("peer");
                std::fs::create_dir_all(&peer_dir)?;
                (
                    Store::Ours(Arc::new(FsBackend::new(&ours_dir)?)),
                    Some(Store::Peer(Arc::new(
                        object_store::local::LocalFileSystem::new_with_prefix(&peer_dir)
                            .context("LocalFileSystem")?,
                    ))),
                    "LocalFileSystem",
                )
            }
            other => {
                anyhow::bail!(
                    "unknown backend {other:?}; known: memory, fs, logstore, retry, crypto, s3, azure, gcs"
                )
            }
        };
        for row in measure(&ours, peer.as_ref(), &args).await? {
            let (peer_rate, ratio) = match row.peer {
                Some(p) => (
                    format!("{} {}", fmt_rate(p), row.unit),
                    format!("{:.2}×", row.ours / p),
                ),
                None => ("—".to_owned(), "—".to_owned()),
            };
            println!(
                "| {name} | {peer_name} | {} | {} {} | {peer_rate} | {ratio} |",
                row.name,
                fmt_rate(row.ours),
                row.unit,
            );
        }
    }
    if names.iter().any(|n| n == "retry") {
        retry_overhead(&scratch.path().join("retry"), &args).await?;
    }
    if names.iter().any(|n| n == "crypto") {
        crate::bench_crypto::run(&scratch.path().join("crypto"), &args).await?;
    }
    if names.iter().any(|n| n == "fs") {
        println!(
            "\nfs: FsBackend fsyncs every put (content file, directory, sidecar, directory) and verifies SHA-256 on full reads; LocalFileSystem does neither."
        );
    }
    if names.iter().any(|n| n == "gcs") {
        println!(
            "\ngcs: object_store's GoogleCloudStorage cannot run against fake-gcs-server: it writes through the XML API (PUT /bucket/object), which the emulator answers with 400 \"invalid uploadType\"; the gcs rows have no peer."
        );
    }
    if names.iter().any(|n| n == "logstore") {
        let dir = scratch.path().join("logstore");
        std::fs::create_dir_all(&dir)?;
        crate::bench_logstore::run(&dir, args.seconds, args.objects).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--backend retry`: 4 KiB puts and gets through `Retry` with no faults
/// against the same backend bare, on memory and on a durable LogStore, in
/// alternating rounds; the overhead is `1 − ours/bare`.
async fn retry_overhead(dir: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    use storage_retry::Retry;
    let budget = Duration::from_secs_f64(args.seconds);
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let log: Arc<dyn Backend> = Arc::new(storage_disk::LogStore::open(dir).await?);
    for (name, bare) in [("memory", memory), ("logstore", log)] {
        let retried: Arc<dyn Backend> = Arc::new(Retry::new(Arc::clone(&bare)));
        let stores = [Store::Ours(retried), Store::Ours(bare)];
        for (label, puts, gets) in small_rows(&stores, budget).await? {
            for (op, rates) in [("put", puts), ("get", gets)] {
                println!(
                    "| {name} through Retry | {name} bare | {op} 4 KiB, {label} | {} ops/s | {} ops/s | {:.2}× ({:+.1} % overhead) |",
                    fmt_rate(rates[0]),
                    fmt_rate(rates[1]),
                    rates[0] / rates[1],
                    (1.0 - rates[0] / rates[1]) * 100.0
                );
            }
        }
    }
    Ok(())
}

/// 4 KiB puts and gets on each of `stores` (after writing the objects the
/// gets read), sequential and with 64 tasks, in alternating rounds: per
/// concurrency, its label and each store's put and get rates in ops/s.
pub async fn small_rows(
    stores: &[Store],
    budget: Duration,
) -> anyhow::Result<Vec<(&'static str, Vec<f64>, Vec<f64>)>> {
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
        let put = move |s: Store, t: usize, i: u64| {
            let data = Bytes::copy_from_slice(&data);
            async move { s.put(format!("write/{t}/{i}"), data).await }
        };
        let puts = alternate_many(stores, tasks, budget, put).await?;
        let get = |s: Store, t: usize, i: u64| async move {
            let got = s
                .get(format!("read/{}", (t as u64 * 7919 + i) % READ_SET))
                .await?;
            anyhow::ensure!(got.len() == SMALL, "short read");
            Ok(())
        };
        let gets = alternate_many(stores, tasks, budget, get).await?;
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

/// Starts SeaweedFS and returns `storage-s3` and `object_store`'s
/// `AmazonS3` on one bucket of it (under the prefixes `ours/` and `peer/`).
async fn s3_pair() -> anyhow::Result<(Store, Store, storage_conformance::servers::RunningServer)> {
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
    Ok((
        Store::Ours(Arc::new(ours)),
        Store::Peer(Arc::new(peer)),
        server,
    ))
}

/// Starts Azurite and returns `storage-azure` and `object_store`'s
/// `MicrosoftAzure` on one container of it (under the prefixes `ours/` and
/// `peer/`), both authenticated with the emulator's account key.
async fn azure_pair() -> anyhow::Result<(Store, Store, storage_conformance::servers::RunningServer)>
{
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
    Ok((
        Store::Ours(Arc::new(ours)),
        Store::Peer(Arc::new(peer)),
        server,
    ))
}

/// Starts fake-gcs-server and returns `storage-gcs` on a bucket of it.
///
/// `object_store`'s `GoogleCloudStorage` cannot be pointed at this server:
/// configured as its docs say (a service account file with `gcs_base_url`
/// and `disable_oauth`), its puts go to the XML API, which fake-gcs-server
/// 1.54 answers with 400 "invalid uploadType".
async fn gcs_store() -> anyhow::Result<(Store, storage_conformance::servers::RunningServer)> {
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
    Ok((Store::Ours(Arc::new(store)), server))
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

/// `cargo xtask probe BACKEND N`: sequential 4 KiB gets with our client and
/// `object_store`'s against one test server (`s3`: SeaweedFS, `azure`:
/// Azurite), with the client's and the server's CPU time per request, to
/// tell client cost from server work.
pub async fn probe(backend: &str, requests: usize) -> anyhow::Result<()> {
    let (ours, peer, server) = match backend {
        "s3" => s3_pair().await?,
        "azure" => azure_pair().await?,
        other => anyhow::bail!("probe knows s3 and azure, not {other:?}"),
    };
    let data = Bytes::from(vec![7u8; 4096]);
    let server_pid = server.pid().to_string();
    let cpu =
        || -> anyhow::Result<(f64, f64)> { Ok((cpu_seconds("self")?, cpu_seconds(&server_pid)?)) };
    for (name, store) in [
        ("ours", &ours),
        ("peer", &peer),
        ("ours", &ours),
        ("peer", &peer),
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
