//! The encryption layer's promises, proved against a spy on the store
//! below it.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use storage_conformance::spy::{Call, Spy};
use storage_core::{
    Backend, BackendExt, Body, ByteRange, Error, GetOptions, Key, MemoryBackend, Metadata, PutMode,
    PutOptions, Txn,
};
use storage_crypto::format::HEADER_BYTES;
use storage_crypto::{ContextKind, Encrypted, Keyring, Resolver, all_state};

const SEGMENT: u32 = 32;

fn keyring() -> Keyring {
    Keyring::new("k1", &[1; 32]).expect("valid keyring")
}

fn key(name: &str) -> Key {
    Key::new(name).expect("valid key")
}

/// A layer with 32-byte segments over a spy over memory.
fn layer() -> Encrypted<Spy<MemoryBackend>> {
    Encrypted::new(Spy::new(MemoryBackend::new()), keyring(), all_state())
        .with_segment_bytes(SEGMENT)
        .expect("valid segment size")
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn assert_integrity(result: Result<Bytes, Error>, what: &str) {
    match result {
        Err(Error::Integrity { .. }) => {}
        other => panic!("{what}: expected Error::Integrity, got {other:?}"),
    }
}

async fn read(store: &dyn Backend, key: &Key) -> Result<Bytes, Error> {
    store.get(key, GetOptions::default()).await?.bytes().await
}

#[tokio::test]
async fn the_inner_store_sees_no_sixteen_byte_window_of_any_plaintext() {
    let store = Encrypted::new(Spy::new(MemoryBackend::new()), keyring(), all_state())
        .with_sealed_metadata(true);
    let plaintexts = [
        pattern(200_000, 1),
        vec![0u8; 200_000],
        b"the quick brown fox jumps over the lazy dog ".repeat(4000),
    ];
    let secret = "alice-the-quick-brown-fox-jumps-over";
    for (i, plain) in plaintexts.iter().enumerate() {
        let options = PutOptions {
            metadata: Metadata::from([("owner".to_owned(), secret.to_owned())]),
            ..PutOptions::default()
        };
        store
            .put(&key(&format!("p{i}")), Body::from(plain.clone()), options)
            .await
            .expect("put");
        let windows: HashSet<&[u8]> = plain
            .windows(16)
            .chain(secret.as_bytes().windows(16))
            .collect();
        for call in store.inner().calls() {
            let Call::Put(_, stored, metadata) = call else {
                continue;
            };
            assert!(
                !stored.windows(16).any(|w| windows.contains(w)),
                "plaintext {i} is visible in the stored content"
            );
            for (name, value) in &metadata {
                assert!(
                    !format!("{name}{value}")
                        .as_bytes()
                        .windows(16)
                        .any(|w| windows.contains(w)),
                    "plaintext {i} is visible in the stored metadata"
                );
            }
        }
        let got = store.head(&key(&format!("p{i}"))).await.expect("head");
        assert_eq!(got.metadata["owner"], secret);
        assert_eq!(got.size, plain.len() as u64);
    }
}

#[tokio::test]
async fn flipping_any_stored_byte_fails_every_read_with_integrity() {
    let store = layer();
    let plain = pattern(100, 2); // 4 segments of 32, 32, 32 and 4 bytes
    let k = key("flip");
    store
        .put(&k, Body::from(plain), PutOptions::default())
        .await
        .expect("put");
    let stored = store.inner().get_bytes(&k).await.expect("stored");
    assert_eq!(stored.len(), HEADER_BYTES + 100 + 4 * 16);
    for at in 0..stored.len() {
        let mut tampered = stored.to_vec();
        tampered[at] ^= 0x01;
        store
            .inner()
            .put(&k, Body::from(tampered), PutOptions::default())
            .await
            .expect("tamper");
        assert_integrity(read(&store, &k).await, &format!("byte {at} flipped"));
    }
}

#[tokio::test]
async fn truncation_reordering_duplication_and_extension_fail_with_integrity() {
    let store = layer();
    let plain = pattern(100, 3);
    let k = key("cut");
    store
        .put(&k, Body::from(plain), PutOptions::default())
        .await
        .expect("put");
    let stored = store.inner().get_bytes(&k).await.expect("stored");
    let sealed = SEGMENT as usize + 16;
    let segment = |i: usize| {
        &stored[HEADER_BYTES + i * sealed..(HEADER_BYTES + (i + 1) * sealed).min(stored.len())]
    };
    let mut forms: Vec<(String, Vec<u8>)> = Vec::new();
    for len in [
        HEADER_BYTES,
        HEADER_BYTES + sealed,
        HEADER_BYTES + 2 * sealed,
        HEADER_BYTES + 3 * sealed,
    ] {
        forms.push((
            format!("cut at segment boundary {len}"),
            stored[..len].to_vec(),
        ));
    }
    for len in [
        HEADER_BYTES + 5,
        HEADER_BYTES + sealed + 17,
        stored.len() - 1,
    ] {
        forms.push((format!("cut mid-segment at {len}"), stored[..len].to_vec()));
    }
    let header = &stored[..HEADER_BYTES];
    forms.push((
        "segments 0 and 1 swapped".into(),
        [header, segment(1), segment(0), segment(2), segment(3)].concat(),
    ));
    forms.push((
        "segment 1 twice".into(),
        [
            header,
            segment(0),
            segment(1),
            segment(1),
            segment(2),
            segment(3),
        ]
        .concat(),
    ));
    forms.push((
        "a segment appended".into(),
        [&stored[..], segment(0)].concat(),
    ));
    forms.push((
        "last segment dropped, a middle one last".into(),
        [header, segment(0), segment(1), segment(2)].concat(),
    ));
    for (what, form) in forms {
        store
            .inner()
            .put(&k, Body::from(form), PutOptions::default())
            .await
            .expect("tamper");
        let whole = read(&store, &k).await;
        assert_integrity(whole, &what);
        if let Some(meta) = store.head(&k).await.ok().filter(|m| m.size != 100) {
            // A truncation or an extension to another valid stored size:
            // a range read that reaches the end authenticates the size,
            // and fails too.
            let ranged = async {
                store
                    .get(
                        &k,
                        GetOptions {
                            range: Some(ByteRange::suffix(1)),
                            ..GetOptions::default()
                        },
                    )
                    .await?
                    .bytes()
                    .await
            }
            .await;
            assert_integrity(
                ranged,
                &format!("{what} (range read of the end; head said {} B)", meta.size),
            );
        }
    }
}

#[tokio::test]
async fn ciphertext_moved_to_another_key_fails_with_integrity() {
    let store = layer();
    store
        .put(&key("a"), Body::from("for a only"), PutOptions::default())
        .await
        .expect("put");
    let stored = store.inner().get_bytes(key("a")).await.expect("stored");
    store
        .inner()
        .put(&key("b"), Body::from(stored), PutOptions::default())
        .await
        .expect("move");
    assert_integrity(read(&store, &key("b")).await, "moved to b");
}

#[tokio::test]
async fn ciphertext_read_under_another_context_kind_fails_with_integrity() {
    let memory = Arc::new(MemoryBackend::new());
    let as_payload: Resolver = Arc::new(|_: &Key| ContextKind::QueuePayload);
    let writer = Encrypted::new(Arc::clone(&memory), keyring(), as_payload);
    writer
        .put(&key("q/1"), Body::from("payload"), PutOptions::default())
        .await
        .expect("put");
    let reader = Encrypted::new(memory, keyring(), all_state());
    assert_integrity(read(&reader, &key("q/1")).await, "read as state");
    assert_eq!(
        read(&writer, &key("q/1")).await.expect("same kind"),
        "payload"
    );
}

#[tokio::test]
async fn range_reads_return_the_slice_and_read_only_the_covering_segments() {
    let store = layer();
    let plain = pattern(1000, 4);
    let k = key("ranges");
    store
        .put(&k, Body::from(plain.clone()), PutOptions::default())
        .await
        .expect("put");
    let sealed = u64::from(SEGMENT) + 16;
    let cases: Vec<(ByteRange, std::ops::Range<usize>)> = vec![
        ((0..1).into(), 0..1),
        ((31..33).into(), 31..33),
        ((32..64).into(), 32..64),
        ((100..300).into(), 100..300),
        ((990..5000).into(), 990..1000),
        (ByteRange::From { start: 500 }, 500..1000),
        (ByteRange::suffix(40), 960..1000),
        (ByteRange::suffix(5000), 0..1000),
    ];
    for (range, slice) in cases {
        let calls_before = store.inner().calls().len();
        let got = store
            .get(
                &k,
                GetOptions {
                    range: Some(range),
                    ..GetOptions::default()
                },
            )
            .await
            .expect("range read");
        assert_eq!(got.range, slice.start as u64..slice.end as u64, "{range}");
        assert_eq!(
            got.bytes().await.expect("body"),
            plain[slice.clone()],
            "{range}"
        );
        let first = slice.start as u64 / u64::from(SEGMENT);
        let last = (slice.end as u64 - 1) / u64::from(SEGMENT);
        let covering = HEADER_BYTES as u64 + first * sealed
            ..(HEADER_BYTES as u64 + (last + 1) * sealed).min(HEADER_BYTES as u64 + 1000 + 32 * 16);
        let reads: Vec<Option<ByteRange>> = store.inner().calls()[calls_before..]
            .iter()
            .filter_map(|c| match c {
                Call::Get(_, r) => Some(*r),
                _ => None,
            })
            .collect();
        assert_eq!(
            reads,
            [Some((0..HEADER_BYTES as u64).into()), Some(covering.into())],
            "{range}"
        );
    }
}

#[tokio::test]
async fn objects_survive_rotation_and_read_with_the_new_kek_alone_after_rewrap() {
    let memory = Arc::new(MemoryBackend::new());
    let old =
        Encrypted::new(Arc::clone(&memory), keyring(), all_state()).with_sealed_metadata(true);
    let options = PutOptions {
        metadata: Metadata::from([("team".to_owned(), "storage".to_owned())]),
        ..PutOptions::default()
    };
    old.put(&key("doc"), Body::from(pattern(200_000, 5)), options)
        .await
        .expect("put under k1");
    let rotated_ring = keyring().rotate_to("k2", &[2; 32]).expect("rotation");
    let rotated =
        Encrypted::new(Arc::clone(&memory), rotated_ring, all_state()).with_sealed_metadata(true);
    assert_eq!(
        read(&rotated, &key("doc"))
            .await
            .expect("k1 object after rotation"),
        pattern(200_000, 5)
    );
    let before = memory.head(&key("doc")).await.expect("stored");
    rotated.rewrap(&key("doc")).await.expect("rewrap");
    let after = memory.head(&key("doc")).await.expect("stored");
    assert_ne!(before.etag, after.etag);
    let only_new = Encrypted::new(
        Arc::clone(&memory),
        Keyring::new("k2", &[2; 32]).expect("valid"),
        all_state(),
    )
    .with_sealed_metadata(true);
    assert_eq!(
        read(&only_new, &key("doc")).await.expect("k2 alone"),
        pattern(200_000, 5)
    );
    assert_eq!(
        only_new.head(&key("doc")).await.expect("head").metadata["team"],
        "storage"
    );
    // The old keyring alone no longer reads it, and says which KEK it lacks.
    match read(&old, &key("doc")).await {
        Err(Error::Integrity { message, .. }) => assert!(message.contains("\"k2\""), "{message}"),
        other => panic!("expected Error::Integrity naming k2, got {other:?}"),
    }
}

#[tokio::test]
async fn a_one_shot_body_stays_one_shot_and_streams_through() {
    let store = layer();
    let chunks: Vec<Result<Bytes, Error>> = (0..100)
        .map(|i| Ok(Bytes::from(pattern(1000, i))))
        .collect();
    let expected: Vec<u8> = (0..100).flat_map(|i| pattern(1000, i)).collect();
    let body = Body::stream(stream::iter(chunks).boxed(), Some(100_000));
    let meta = store
        .put(&key("stream"), body, PutOptions::default())
        .await
        .expect("put");
    assert_eq!(meta.size, 100_000);
    assert_eq!(read(&store, &key("stream")).await.expect("read"), expected);
}

#[tokio::test]
async fn identical_plaintexts_get_distinct_etags_and_cas_passes_through() {
    let store = layer();
    let k = key("cas");
    let first = store
        .put(&k, Body::from("same"), PutOptions::default())
        .await
        .expect("put");
    let second = store
        .put(
            &k,
            Body::from("same"),
            PutOptions::mode(PutMode::IfMatch(first.etag.clone())),
        )
        .await
        .expect("cas");
    assert_ne!(first.etag, second.etag);
    let stale = store
        .put(
            &k,
            Body::from("x"),
            PutOptions::mode(PutMode::IfMatch(first.etag)),
        )
        .await;
    assert!(
        matches!(stale, Err(Error::PreconditionFailed { .. })),
        "{stale:?}"
    );
}

#[tokio::test]
async fn a_transaction_commits_through_the_layer_without_reencrypting_on_promote() {
    let store = layer();
    let mut txn = Txn::begin(&store);
    txn.stage(&key("t/a"), Body::from("alpha"), PutOptions::default())
        .await
        .expect("stage");
    txn.attach(&key("t/a"), "logo", Body::from("png bytes"), 1024)
        .await
        .expect("attach");
    txn.commit().await.expect("commit");
    assert_eq!(read(&store, &key("t/a")).await.expect("promoted"), "alpha");
    assert_eq!(
        read(&store, &key("t/a/logo")).await.expect("attachment"),
        "png bytes"
    );
}

fn sealed_layer(memory: &Arc<MemoryBackend>) -> Encrypted<Arc<MemoryBackend>> {
    Encrypted::new(Arc::clone(memory), keyring(), all_state()).with_sealed_metadata(true)
}

fn labelled(value: &str) -> PutOptions {
    PutOptions {
        content_type: Some("application/json".to_owned()),
        metadata: Metadata::from([("label".to_owned(), value.to_owned())]),
        ..PutOptions::default()
    }
}

#[tokio::test]
async fn sealed_metadata_and_content_type_read_back_and_never_show_below() {
    let memory = Arc::new(MemoryBackend::new());
    let store = sealed_layer(&memory);
    let k = key("doc");
    let written = store
        .put(&k, Body::from("{}"), labelled("secret-label"))
        .await
        .expect("put");
    assert_eq!(written.metadata["label"], "secret-label");
    let head = store.head(&k).await.expect("head");
    assert_eq!(head.metadata["label"], "secret-label");
    assert_eq!(head.content_type.as_deref(), Some("application/json"));
    let below = memory.head(&k).await.expect("stored");
    assert_eq!(
        below.metadata.keys().collect::<Vec<_>>(),
        ["sealed-metadata"]
    );
    assert_ne!(below.content_type.as_deref(), Some("application/json"));
}

#[tokio::test]
async fn stripped_injected_or_foreign_sealed_metadata_fails_with_integrity() {
    let memory = Arc::new(MemoryBackend::new());
    let store = sealed_layer(&memory);
    let (a, b) = (key("a"), key("b"));
    store
        .put(&a, Body::from("x"), labelled("a"))
        .await
        .expect("put a");
    store
        .put(&b, Body::from("y"), labelled("b"))
        .await
        .expect("put b");
    let stored_a = memory.get(&a, GetOptions::default()).await.expect("a");
    let sealed_a = stored_a.meta.metadata.clone();
    let content_a = stored_a.bytes().await.expect("a's bytes");
    let sealed_b = memory.head(&b).await.expect("b").metadata;
    let mut injected = sealed_a.clone();
    injected.insert("owner".to_owned(), "mallory".to_owned());
    let forms = [
        ("stripped", Metadata::new()),
        ("a clear entry added", injected),
        ("b's sealed metadata", sealed_b),
    ];
    for (what, metadata) in forms {
        memory
            .put(
                &a,
                Body::from(content_a.clone()),
                PutOptions {
                    metadata,
                    ..PutOptions::default()
                },
            )
            .await
            .expect("tamper");
        let head = store.head(&a).await;
        assert!(
            matches!(head, Err(Error::Integrity { .. })),
            "{what}: {head:?}"
        );
        assert_integrity(read(&store, &a).await, what);
    }
}

#[tokio::test]
async fn the_layer_s_metadata_name_is_reserved() {
    let store = layer();
    let options = PutOptions {
        metadata: Metadata::from([("sealed-metadata".to_owned(), "x".to_owned())]),
        ..PutOptions::default()
    };
    let put = store.put(&key("k"), Body::from("v"), options).await;
    assert!(matches!(put, Err(Error::InvalidArgument { .. })), "{put:?}");
    assert!(
        store.inner().calls().is_empty(),
        "the inner store was called"
    );
}

#[tokio::test]
async fn range_reads_of_empty_objects_and_segment_edges_follow_the_contract() {
    let store = layer();
    store
        .put(&key("empty"), Body::empty(), PutOptions::default())
        .await
        .expect("put");
    let empty = store.get(&key("empty"), GetOptions::range(0..1)).await;
    assert!(
        matches!(empty, Err(Error::InvalidRange { .. })),
        "{empty:?}"
    );
    assert_eq!(read(&store, &key("empty")).await.expect("whole"), "");
    // Exactly two segments: the last byte, the boundary, past the end.
    let plain = pattern(2 * SEGMENT as usize, 6);
    store
        .put(
            &key("two"),
            Body::from(plain.clone()),
            PutOptions::default(),
        )
        .await
        .expect("put");
    for (range, slice) in [(63..64, 63..64), (31..33, 31..33), (60..100, 60..64)] {
        let got = store
            .get(&key("two"), GetOptions::range(range))
            .await
            .expect("range")
            .bytes()
            .await
            .expect("body");
        assert_eq!(got, plain[slice]);
    }
    let past = store.get(&key("two"), GetOptions::range(64..65)).await;
    assert!(matches!(past, Err(Error::InvalidRange { .. })), "{past:?}");
}

#[tokio::test]
async fn a_flipped_byte_in_a_covering_segment_fails_the_range_read() {
    let store = layer();
    let k = key("ranged-flip");
    store
        .put(&k, Body::from(pattern(200, 7)), PutOptions::default())
        .await
        .expect("put");
    let mut stored = store.inner().get_bytes(&k).await.expect("stored").to_vec();
    // Segment 2 covers plaintext 64..96.
    stored[HEADER_BYTES + 2 * (SEGMENT as usize + 16) + 3] ^= 1;
    store
        .inner()
        .put(&k, Body::from(stored), PutOptions::default())
        .await
        .expect("tamper");
    let ranged = async {
        store
            .get(&k, GetOptions::range(70..80))
            .await?
            .bytes()
            .await
    }
    .await;
    assert_integrity(ranged, "range over the flipped segment");
    // A range that does not cover it reads the authentic bytes.
    let clean = store
        .get(&k, GetOptions::range(0..10))
        .await
        .expect("range")
        .bytes()
        .await
        .expect("body");
    assert_eq!(clean, pattern(200, 7)[0..10]);
}

#[tokio::test]
async fn listings_leave_out_objects_that_cannot_be_encrypted_ones() {
    let store = layer();
    store
        .put(&key("d/good"), Body::from("fine"), PutOptions::default())
        .await
        .expect("put");
    store
        .inner()
        .put(
            &key("d/stray"),
            Body::from("not encrypted"),
            PutOptions::default(),
        )
        .await
        .expect("stray");
    let listed = store
        .list(&storage_core::ListOptions::prefix("d/"))
        .await
        .expect("list");
    let names: Vec<&str> = listed.objects.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(names, ["d/good"]);
    assert_integrity(read(&store, &key("d/stray")).await, "stray object");
}

#[test]
fn a_keyring_loads_from_a_file_with_the_last_entry_active() {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode([4u8; 32]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("keyring");
    std::fs::write(&path, format!("# keys\nold={encoded}\nnew={encoded}\n")).expect("write");
    let from_file = Keyring::from_file(&path).expect("file keyring");
    assert_eq!(from_file.ids().collect::<Vec<_>>(), ["old", "new"]);
    assert_eq!(from_file.active_id(), "new");
}

#[test]
fn a_keyring_loads_from_an_environment_variable() {
    const VAR: &str = "STORAGE_CRYPTO_TEST_KEYRING";
    if std::env::var_os(VAR).is_some() {
        let ring = Keyring::from_env(VAR).expect("keyring from the environment");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["env-old", "env-new"]);
        return;
    }
    // Setting a variable in this process is `unsafe` (edition 2024), which
    // the workspace denies: run this test again in a child with it set.
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode([4u8; 32]);
    let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "a_keyring_loads_from_an_environment_variable"])
        .env(VAR, format!("env-old={encoded},env-new={encoded}"))
        .status()
        .expect("child test");
    assert!(status.success(), "the child test failed: {status}");
}

/// Large objects are opened in batches on the blocking pool: the plaintext
/// comes back whole and in order, and tampering anywhere still fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_opened_in_parallel_batches_read_back_exactly_or_fail_with_integrity() {
    let store = Encrypted::new(Spy::new(MemoryBackend::new()), keyring(), all_state());
    let plain = Bytes::from(pattern((5 << 20) + 12_345, 9));
    let k = key("large");
    store
        .put(&k, Body::from(plain.clone()), PutOptions::default())
        .await
        .expect("put");
    assert_eq!(read(&store, &k).await.expect("read"), plain);
    let range = ByteRange::Bounded {
        start: 1_000_000,
        end: 4_500_000,
    };
    let slice = store
        .get(&k, GetOptions::range(range))
        .await
        .expect("range")
        .bytes()
        .await
        .expect("body");
    assert_eq!(slice, plain.slice(1_000_000..4_500_000));
    let stored = store.inner().get_bytes(&k).await.expect("stored");
    for at in [HEADER_BYTES + 10, stored.len() / 2, stored.len() - 1] {
        let mut tampered = stored.to_vec();
        tampered[at] ^= 0x80;
        store
            .inner()
            .put(&k, Body::from(tampered), PutOptions::default())
            .await
            .expect("tamper");
        assert_integrity(read(&store, &k).await, &format!("byte {at} flipped"));
    }
    store
        .inner()
        .put(
            &k,
            Body::from(stored.slice(..stored.len() - 70_000)),
            PutOptions::default(),
        )
        .await
        .expect("truncate");
    assert_integrity(read(&store, &k).await, "cut short");
}
