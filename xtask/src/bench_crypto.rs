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

/// Size of the small objects' rows (`bench::small_rows`): 4 KiB.
const SMALL: usize = 4096;

/// Objects per second `ring` alone reaches on one core doing the AES-GCM
/// work `Encrypted` must do per small object, and nothing else: for a put,
/// 63 fresh bytes from the system's generator (DEK, nonce prefix, wrap
/// nonce and padding), the DEK's key schedule, sealing 4 KiB and wrapping
/// the DEK under the KEK; for a get, unwrapping the DEK, its key schedule
/// and opening 4 KiB. `(put, get)`.
fn ring_per_object(budget: Duration) -> anyhow::Result<(f64, f64)> {
    use ring::rand::{SecureRandom, SystemRandom};
    let fail = |what: &'static str| move |_| anyhow::anyhow!("ring: {what}");
    let random = SystemRandom::new();
    let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[9; 32]).map_err(fail("KEK"))?);
    let mut plain = vec![0x5a_u8; SMALL];
    let nonce = || Nonce::assume_unique_for_key([3; 12]);
    // A stored object to open: the DEK wrapped, the content sealed.
    let dek = [4u8; 32];
    let mut wrapped = dek.to_vec();
    let tag = kek
        .seal_in_place_separate_tag(nonce(), Aad::from(b"header"), &mut wrapped)
        .map_err(fail("wrap"))?;
    wrapped.extend_from_slice(tag.as_ref());
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek).map_err(fail("DEK"))?);
    let mut sealed = plain.clone();
    let tag = key
        .seal_in_place_separate_tag(nonce(), Aad::from(b"segment"), &mut sealed)
        .map_err(fail("seal"))?;
    sealed.extend_from_slice(tag.as_ref());

    let started = Instant::now();
    let mut puts = 0u64;
    while started.elapsed() < budget {
        let mut fresh = [0u8; 63];
        random.fill(&mut fresh).map_err(fail("random"))?;
        let mut dek = [0u8; 32];
        dek.copy_from_slice(&fresh[..32]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &dek).map_err(fail("DEK"))?);
        let tag = key
            .seal_in_place_separate_tag(nonce(), Aad::from(b"segment"), &mut plain)
            .map_err(fail("seal"))?;
        let mut wrap = dek.to_vec();
        let wrap_tag = kek
            .seal_in_place_separate_tag(nonce(), Aad::from(b"header"), &mut wrap)
            .map_err(fail("wrap"))?;
        let _ = std::hint::black_box((tag, wrap_tag, wrap));
        puts += 1;
    }
    let put_rate = puts as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut gets = 0u64;
    while started.elapsed() < budget {
        let mut dek = wrapped.clone();
        let opened = kek
            .open_in_place(nonce(), Aad::from(b"header"), &mut dek)
            .map_err(fail("unwrap"))?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, opened).map_err(fail("DEK"))?);
        let mut segment = sealed.clone();
        let got = key
            .open_in_place(nonce(), Aad::from(b"segment"), &mut segment)
            .map_err(fail("open"))?;
        std::hint::black_box(got);
        gets += 1;
    }
    let get_rate = gets as f64 / started.elapsed().as_secs_f64();
    Ok((put_rate, get_rate))
}

/// The best ratio to `bare` any layer can reach that adds, to each call of
/// one task, the work `ring` does at `floor` calls per second: the two
/// costs per call add up.
fn ceiling(bare: f64, floor: f64) -> f64 {
    1.0 / (1.0 + bare / floor)
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
    row_with_ceiling(name, op, ours, bare, unit, None);
}

/// A row; `ceiling`, where given, is the best ratio AES-GCM alone allows
/// (see [`ceiling`]).
fn row_with_ceiling(name: &str, op: &str, ours: f64, bare: f64, unit: &str, ceiling: Option<f64>) {
    let ceiling = ceiling.map_or(String::new(), |c| {
        format!("; AES-GCM's own cost allows at most {c:.2}×")
    });
    println!(
        "| {name} through Encrypted | {name} bare | {op} | {} {unit} | {} {unit} | {:.2}× ({:+.1} % overhead{ceiling}) |",
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
    let floor = ring_per_object(budget)?;
    println!(
        "| ring AES-256-GCM alone | — | per 4 KiB object, 1 core: put (fresh DEK, key schedule, seal, wrap) / get (unwrap, key schedule, open) | {} / {} ops/s | — | — |",
        fmt_rate(floor.0),
        fmt_rate(floor.1)
    );
    let memory = || -> Arc<dyn Backend> { Arc::new(MemoryBackend::new()) };
    small("memory", memory(), memory(), budget, floor).await?;
    // Durable LogStore: the per-operation cost of a store that writes to
    // disk, against which the layer's fixed cost per object is measured.
    let below: Arc<dyn Backend> =
        Arc::new(storage_disk::LogStore::open(dir.join("small-below")).await?);
    let bare: Arc<dyn Backend> =
        Arc::new(storage_disk::LogStore::open(dir.join("small-bare")).await?);
    small("logstore", below, bare, budget, floor).await
}

/// The 4 KiB rows: puts and gets, sequential and 64 tasks, through
/// `Encrypted` over `below` against `bare` (two stores of one kind). The
/// sequential rows show the ceiling `floor` (`ring` alone per object:
/// put, get) allows; the 64-task rows share two cores, where it does not
/// apply as such.
async fn small(
    name: &str,
    below: Arc<dyn Backend>,
    bare: Arc<dyn Backend>,
    budget: Duration,
    floor: (f64, f64),
) -> anyhow::Result<()> {
    let stores = [Store::Ours(encrypted(&below)?), Store::Ours(bare)];
    for (label, puts, gets) in small_rows(&stores, budget).await? {
        let sequential = label == "sequential";
        row_with_ceiling(
            name,
            &format!("put 4 KiB, {label}"),
            puts[0],
            puts[1],
            "ops/s",
            sequential.then(|| ceiling(puts[1], floor.0)),
        );
        row_with_ceiling(
            name,
            &format!("get 4 KiB, {label}"),
            gets[0],
            gets[1],
            "ops/s",
            sequential.then(|| ceiling(gets[1], floor.1)),
        );
    }
    Ok(())
}
