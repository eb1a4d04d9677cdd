//! Reads broken mid-way resume from the next byte of the same version.

mod common;

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};
use storage_conformance::support::pattern;
use storage_core::{
    Backend, BackendExt, Body, ByteRange, Capabilities, DeleteOptions, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, MemoryBackend, ObjectMeta, PutOptions, Result,
};
use storage_retry::Retry;

use common::{BreakReads, fast_policy};

const MIB: usize = 1024 * 1024;

/// `n` distinct offsets in `1..len`, drawn from a fixed seed.
fn random_offsets(n: usize, len: u64) -> Vec<u64> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut offsets = Vec::new();
    while offsets.len() < n {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let offset = 1 + state % (len - 1);
        if !offsets.contains(&offset) {
            offsets.push(offset);
        }
    }
    offsets
}

async fn broken_store(data: Bytes, offsets: Vec<u64>) -> Retry<BreakReads<MemoryBackend>> {
    let memory = MemoryBackend::new();
    memory.put_bytes("big", data).await.expect("put");
    Retry::with_policy(BreakReads::new(memory, offsets), fast_policy())
}

#[tokio::test]
async fn a_read_broken_at_10_random_offsets_returns_the_exact_bytes() {
    let data = pattern(32 * MIB, 5);
    let store = broken_store(data.clone(), random_offsets(10, data.len() as u64)).await;
    let read = store.get_bytes("big").await.expect("the read resumes");
    assert!(read == data, "the stitched read differs from the object");
    assert_eq!(
        store.inner().gets.load(Ordering::Relaxed),
        11,
        "one read and 10 resumptions"
    );
}

#[tokio::test]
async fn a_read_overwritten_between_two_pieces_fails_with_precondition_failed() {
    let store = broken_store(pattern(32 * MIB, 5), vec![16 * MIB as u64]).await;
    let got = store
        .get(&Key::new("big").expect("key"), GetOptions::default())
        .await
        .expect("get");
    let mut body = got.body;
    let first = body.try_next().await.expect("first piece").expect("bytes");
    assert_eq!(first.len(), 16 * MIB);
    store
        .inner()
        .inner
        .put_bytes("big", "replaced")
        .await
        .expect("overwrite");
    let rest = body.try_next().await;
    assert!(
        matches!(rest, Err(Error::PreconditionFailed { .. })),
        "{rest:?}"
    );
}

#[tokio::test]
async fn a_resumed_range_read_keeps_to_the_callers_range() {
    let data = pattern(8 * MIB, 9);
    let (start, end) = (MIB as u64 + 5, 7 * MIB as u64 - 3);
    let store = broken_store(data.clone(), vec![2 * MIB as u64, 5 * MIB as u64]).await;
    let read = store
        .get_range("big", start..end)
        .await
        .expect("range read");
    assert!(
        read == data.slice(start as usize..end as usize),
        "the range read differs"
    );
}

#[tokio::test]
async fn a_resumed_suffix_read_keeps_to_the_callers_suffix() {
    let data = pattern(4 * MIB, 3);
    let store = broken_store(data.clone(), vec![3 * MIB as u64]).await;
    let read = store
        .get_range("big", ByteRange::suffix(2 * MIB as u64))
        .await
        .expect("suffix read");
    assert!(read == data.slice(2 * MIB..), "the suffix read differs");
}

#[tokio::test]
async fn a_small_read_broken_mid_way_is_read_again_whole() {
    let data = pattern(4096, 1);
    let store = broken_store(data.clone(), vec![1000]).await;
    assert_eq!(store.get_bytes("big").await.expect("read"), data);
    assert_eq!(
        store.inner().gets.load(Ordering::Relaxed),
        2,
        "a whole second read"
    );
}

/// Reports the SHA-256 of the content it was given as the recorded one,
/// and corrupts the first byte of every read that starts past byte 0.
#[derive(Debug)]
struct CorruptResumes {
    inner: BreakReads<MemoryBackend>,
    sha256: [u8; 32],
}

#[async_trait]
impl Backend for CorruptResumes {
    fn name(&self) -> &str {
        "corrupt-resumes"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.inner.put(key, body, options).await
    }

    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        let got = self.inner.get(key, options).await?;
        let GetResult {
            mut meta,
            range,
            body,
            ..
        } = got;
        meta.sha256 = Some(self.sha256);
        let body = if range.start > 0 {
            let mut first = true;
            body.map_ok(move |chunk| {
                if !std::mem::take(&mut first) {
                    return chunk;
                }
                let mut bad = chunk.to_vec();
                bad[0] ^= 0xff;
                Bytes::from(bad)
            })
            .boxed()
        } else {
            body
        };
        Ok(GetResult::new(meta, range, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.inner.delete(key, options).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
}

#[tokio::test]
async fn a_stitched_full_read_is_checked_against_the_recorded_sha256() {
    let data = pattern(4 * MIB, 2);
    let memory = MemoryBackend::new();
    memory.put_bytes("big", data.clone()).await.expect("put");
    let corrupt = CorruptResumes {
        inner: BreakReads::new(memory, vec![2 * MIB as u64]),
        sha256: Sha256::digest(&data).into(),
    };
    let store = Retry::with_policy(corrupt, fast_policy());
    let read = store.get_bytes("big").await;
    assert!(
        matches!(read, Err(Error::ChecksumMismatch { .. })),
        "{:?}",
        read.map(|b| b.len())
    );
}
