//! A DataFusion-style read through `StorageAdapter`: `get_ranges` of many
//! small ranges of a Parquet-sized object returns the right bytes, from few
//! requests.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use storage_conformance::Spy;
use storage_conformance::spy::Call;
use storage_core::MemoryBackend;
use storage_object_store::StorageAdapter;

/// 24 MiB: a Parquet file of a few row groups.
const SIZE: usize = 24 << 20;

/// Deterministic bytes that differ at every offset that matters.
fn content() -> Bytes {
    (0..SIZE)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3])
        .collect::<Vec<u8>>()
        .into()
}

/// The ranges a Parquet reader asks for: the footer length and footer,
/// then column chunks of three row groups (8 MiB apart), each a few pages
/// of a few KiB.
fn parquet_ranges() -> Vec<std::ops::Range<u64>> {
    let size = SIZE as u64;
    let mut ranges = vec![size - 8..size, size - 64 * 1024..size - 8];
    for group in 0..3u64 {
        for column in 0..40u64 {
            let start = group * (8 << 20) + column * 150_000 + 17;
            ranges.push(start..start + 4096 + column * 131);
        }
    }
    ranges
}

#[tokio::test(flavor = "multi_thread")]
async fn many_small_ranges_of_one_object_come_back_right_from_few_requests() {
    let spy = Arc::new(Spy::new(MemoryBackend::new()));
    let store = StorageAdapter::new(Arc::clone(&spy));
    let path = Path::from("warehouse/t/part-00000.parquet");
    let data = content();
    store.put(&path, data.clone().into()).await.expect("put");

    let ranges = parquet_ranges();
    let before = spy.calls().len();
    let parts = store.get_ranges(&path, &ranges).await.expect("get_ranges");

    assert_eq!(parts.len(), ranges.len());
    for (range, part) in ranges.iter().zip(&parts) {
        assert_eq!(
            part,
            &data.slice(range.start as usize..range.end as usize),
            "bytes of {range:?}"
        );
    }
    let gets = spy.calls()[before..]
        .iter()
        .filter(|c| matches!(c, Call::Get(..)))
        .count();
    // Three row groups and the footer: four coalesced requests, not 122.
    assert_eq!(gets, 4, "{ranges:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ranges_follow_object_stores_rules() {
    let store = StorageAdapter::new(Arc::new(MemoryBackend::new()));
    let path = Path::from("short");
    let data: Bytes = (0..100u8).collect::<Vec<u8>>().into();
    store.put(&path, data.clone().into()).await.expect("put");
    // An end past the size is clamped, as `GetRange::as_range` does.
    let parts = store
        .get_ranges(&path, &[0..10, 90..101])
        .await
        .expect("get_ranges");
    assert_eq!(parts, vec![data.slice(0..10), data.slice(90..100)]);
    // A start at the size and an empty range are errors.
    for bad in [[0..1, 100..101], [0..1, 5..5]] {
        let result = store.get_ranges(&path, &bad).await;
        assert!(result.is_err(), "{bad:?}: {result:?}");
    }
}
