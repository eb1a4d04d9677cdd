//! `cargo xtask bench --backend crypto`: the cost of `Encrypted` (issue
//! 12), each row against the same backend bare in the same run, and
//! `ring`'s AES-256-GCM alone as the ceiling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use storage_core::{Backend, Body, GetOptions, Key, MemoryBackend, PutOptions};
use storage_crypto::{Encrypted, Keyring, all_state};

use crate::bench::{Args, Store, fmt_rate, median, small_rows};

/// Size of the large object: 64 MiB.
const LARGE: usize = 64 << 20;

fn encrypted(bare: &Arc<dyn Backend>) -> anyhow::Result<Arc<dyn Backend>> {
    let keyring = Keyring::new("bench", &[7; 32])?;
    Ok(Arc::new(Encrypted::new(
        Arc::clone(bare),
        keyring,
        all_state(),
    )))
}

/// MB/s of `LARGE` bytes in `elapsed`.
fn mb_per_s(elapsed: Duration) -> f64 {
    LARGE as f64 / 1e6 / elapsed.as_secs_f64()
}

/// Seals `LARGE` bytes in 64 KiB segments with `ring` alone, in place, on
/// one core: the most the layer could reach.
fn ring_alone(reps: usize) -> anyhow::Result<f64> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &[1; 32]).map_err(|_| anyhow::anyhow!("AES key"))?,
    );
    let mut buffer = vec![0x5a_u8; LARGE];
    let mut rates = Vec::new();
    for _ in 0..reps {
        let started = Instant::now();
        for (i, segment) in buffer.chunks_mut(64 * 1024).enumerate() {
            let mut nonce = [0u8; 12];
            nonce[4..12].copy_from_slice(&(i as u64).to_be_bytes());
            let tag = key
                .seal_in_place_separate_tag(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(b"bench"),
                    segment,
                )
                .map_err(|_| anyhow::anyhow!("seal"))?;
            let _ = std::hint::black_box(tag);
        }
        rates.push(mb_per_s(started.elapsed()));
    }
    Ok(median(&mut rates))
}

/// MB/s of one `LARGE`-byte put and one full get on `store`, the get's
/// body consumed chunk by chunk.
async fn large(store: &Arc<dyn Backend>, data: &Bytes) -> anyhow::Result<(f64, f64)> {
    let key = Key::new("large")?;
    crate::bench::flush_page_cache_writes();
    let started = Instant::now();
    store
        .put(&key, Body::from(data.clone()), PutOptions::default())
        .await?;
    let put = mb_per_s(started.elapsed());
    // The body is consumed as it streams, as a reader of a large object
    // would: collecting it into one buffer would measure that copy (and
    // the page faults of a fresh 64 MiB buffer) on one side only.
    let started = Instant::now();
    let mut body = store.get(&key, GetOptions::default()).await?.body;
    let mut got = 0;
    while let Some(chunk) = body.try_next().await? {
        got += std::hint::black_box(chunk).len();
    }
    let get = mb_per_s(started.elapsed());
    anyhow::ensure!(got == LARGE, "short read");
    Ok((put, get))
}

fn row(name: &str, op: &str, ours: f64, bare: f64, unit: &str) {
    println!(
        "| {name} through Encrypted | {name} bare | {op} | {} {unit} | {} {unit} | {:.2}× ({:+.1} % overhead) |",
        fmt_rate(ours),
        fmt_rate(bare),
        ours / bare,
        (1.0 - ours / bare) * 100.0
    );
}

/// Prints the rows: 64 MiB put and get on memory and on a durable
/// LogStore, 4 KiB puts and gets on memory and on a durable LogStore
/// (sequential and 64 tasks), and `ring` alone.
pub async fn run(dir: &std::path::Path, args: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let reps = args.large_reps.max(3);
    println!(
        "| ring AES-256-GCM alone | — | seal 64 MiB in 64 KiB segments, 1 core | {} MB/s | — | — |",
        fmt_rate(ring_alone(reps)?)
    );
    let data = Bytes::from(
        (0..LARGE as u64)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8)
            .collect::<Vec<u8>>(),
    );
    let memory: Arc<dyn Backend> = Arc::new(MemoryBackend::new());
    let log: Arc<dyn Backend> = Arc::new(storage_disk::LogStore::open(dir).await?);
    for (name, bare) in [("memory", memory), ("logstore", log)] {
        let sealed = encrypted(&bare)?;
        let (mut ours, mut plain) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
        // Alternate sides so that neither gets a warmer machine.
        for _ in 0..reps {
            let (p, g) = large(&sealed, &data).await?;
            ours.0.push(p);
            ours.1.push(g);
            let (p, g) = large(&bare, &data).await?;
            plain.0.push(p);
            plain.1.push(g);
        }
        row(
            name,
            "put 64 MiB",
            median(&mut ours.0),
            median(&mut plain.0),
            "MB/s",
        );
        row(
            name,
            "get 64 MiB",
            median(&mut ours.1),
            median(&mut plain.1),
            "MB/s",
        );
    }
    let budget = Duration::from_secs_f64(args.seconds);
    let memory = || -> Arc<dyn Backend> { Arc::new(MemoryBackend::new()) };
    small("memory", memory(), memory(), budget).await?;
    // Durable LogStore: the per-operation cost of a store that writes to
    // disk, against which the layer's fixed cost per object is measured.
    let below: Arc<dyn Backend> =
        Arc::new(storage_disk::LogStore::open(dir.join("small-below")).await?);
    let bare: Arc<dyn Backend> =
        Arc::new(storage_disk::LogStore::open(dir.join("small-bare")).await?);
    small("logstore", below, bare, budget).await
}

/// The 4 KiB rows: puts and gets, sequential and 64 tasks, through
/// `Encrypted` over `below` against `bare` (two stores of one kind).
async fn small(
    name: &str,
    below: Arc<dyn Backend>,
    bare: Arc<dyn Backend>,
    budget: Duration,
) -> anyhow::Result<()> {
    let stores = [Store::Ours(encrypted(&below)?), Store::Ours(bare)];
    for (label, puts, gets) in small_rows(&stores, budget).await? {
        row(
            name,
            &format!("put 4 KiB, {label}"),
            puts[0],
            puts[1],
            "ops/s",
        );
        row(
            name,
            &format!("get 4 KiB, {label}"),
            gets[0],
            gets[1],
            "ops/s",
        );
    }
    Ok(())
}
