//! `FsBackend`'s on-disk format: a root of the first format (a content file
//! and a JSON sidecar per object) is converted when opened, whatever power
//! loss interrupts the conversion, and a root of an unknown format is
//! refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use storage_core::{Backend, BackendExt, ETag, Error, Key, ListOptions};
use storage_disk::FsBackend;
use storage_disk::power_loss::{CrashMode, Recording};

/// One object as the first format stored it.
struct Legacy {
    key: &'static str,
    /// The directory and file-name segment it lived under.
    dir: &'static str,
    segment: &'static str,
    etag: &'static str,
    content: &'static [u8],
    content_type: Option<&'static str>,
}

const OBJECTS: [Legacy; 3] = [
    Legacy {
        key: "k/a",
        dir: "k~d",
        segment: "a",
        etag: "0123456789abcdef0123456789abcdef",
        content: b"first object",
        content_type: Some("text/plain"),
    },
    Legacy {
        key: "k/b",
        dir: "k~d",
        segment: "b",
        etag: "11111111111111111111111111111111",
        content: b"",
        content_type: None,
    },
    Legacy {
        key: "top",
        dir: "",
        segment: "top",
        etag: "22222222222222222222222222222222",
        content: b"at the top",
        content_type: None,
    },
];

const MODIFIED_MS: u64 = 1_700_000_000_123;

/// Writes a root of the first format holding [`OBJECTS`], an orphaned
/// content file, and an unreadable sidecar with content beside it.
fn write_legacy_root(root: &Path) {
    let objects = root.join("objects");
    std::fs::create_dir_all(objects.join("k~d")).expect("directories");
    std::fs::create_dir_all(root.join("locks")).expect("locks");
    for object in &OBJECTS {
        let dir = objects.join(object.dir);
        let mut sidecar = serde_json::json!({
            "version": 1,
            "key": object.key,
            "size": object.content.len(),
            "etag": object.etag,
            "sha256": hex::encode(Sha256::digest(object.content)),
            "metadata": {"owner": object.segment},
            "modified_ms": MODIFIED_MS,
        });
        if let Some(content_type) = object.content_type {
            sidecar["content_type"] = content_type.into();
        }
        std::fs::write(
            dir.join(format!("{}~meta", object.segment)),
            sidecar.to_string(),
        )
        .expect("sidecar");
        std::fs::write(
            dir.join(format!("{}~v{}", object.segment, object.etag)),
            object.content,
        )
        .expect("content");
    }
    std::fs::write(objects.join(ORPHAN), b"an older version").expect("orphan");
    std::fs::write(objects.join("k~d/bad~meta"), b"{not json").expect("bad sidecar");
    std::fs::write(objects.join(UNREADABLE_CONTENT), b"kept").expect("bad content");
}

/// A content file no sidecar names.
const ORPHAN: &str = "k~d/a~v99999999999999999999999999999999";
/// The content beside the unreadable sidecar.
const UNREADABLE_CONTENT: &str = "k~d/bad~v33333333333333333333333333333333";

fn key(name: &str) -> Key {
    Key::new(name).expect("valid key")
}

/// Asserts that `store` serves [`OBJECTS`] exactly as the first format held
/// them.
async fn assert_objects(store: &FsBackend, image: &str) {
    for object in &OBJECTS {
        let got = store.get(&key(object.key), Default::default()).await;
        let got = got.unwrap_or_else(|e| panic!("{image}: get {}: {e}", object.key));
        let meta = got.meta.clone();
        let content = got.bytes().await.expect("content");
        assert_eq!(
            content, object.content,
            "{image}: content of {}",
            object.key
        );
        assert_eq!(meta.etag, ETag::new(object.etag), "{image}: {}", object.key);
        assert_eq!(meta.content_type.as_deref(), object.content_type);
        assert_eq!(
            meta.metadata,
            BTreeMap::from([("owner".to_string(), object.segment.to_string())])
        );
        assert_eq!(
            meta.last_modified,
            UNIX_EPOCH + Duration::from_millis(MODIFIED_MS)
        );
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).expect("readable directory") {
            let entry = entry.expect("entry");
            if entry.file_type().expect("type").is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.path().strip_prefix(dir).expect("below").to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn a_first_format_root_is_converted_and_serves_the_same_objects() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_legacy_root(dir.path());
    let store = FsBackend::new(dir.path()).expect("open and convert");
    assert_objects(&store, "converted").await;

    let listed: Vec<String> = store
        .list(&ListOptions::default())
        .await
        .expect("list")
        .objects
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    assert_eq!(
        listed,
        ["k/a", "k/b", "top"],
        "the unreadable key is left out"
    );
    let bad = store.get_bytes("k/bad").await;
    assert!(
        matches!(&bad, Err(Error::ChecksumMismatch { key, .. }) if key == "k/bad"),
        "an unreadable sidecar still fails its key: {bad:?}"
    );

    let files = files_under(&dir.path().join("objects"));
    let mut expected: Vec<PathBuf> = [
        "k~d/a~obj",
        ORPHAN,
        "k~d/b~obj",
        "k~d/bad~obj",
        UNREADABLE_CONTENT,
        "top~obj",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    expected.sort();
    assert_eq!(
        files, expected,
        "sidecars gone, the orphan left to the sweep"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("format")).expect("format file"),
        "storage-disk fs 2\n"
    );

    let report = store.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.files_removed, 1, "{report:?}");
    let objects = dir.path().join("objects");
    assert!(!objects.join(ORPHAN).exists(), "the older version is swept");
    assert!(
        objects.join(UNREADABLE_CONTENT).exists(),
        "the content beside an unreadable object is kept"
    );
}

#[tokio::test]
async fn a_sidecar_naming_content_through_a_link_or_a_slash_writes_nothing_outside() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let outside = tempfile::tempdir().expect("outside directory");
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"must stay as it is").expect("victim");
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).expect("objects");
    let sidecar = |etag: &str| {
        serde_json::json!({
            "version": 1,
            "key": "x",
            "size": 4,
            "etag": etag,
            "sha256": hex::encode(Sha256::digest(b"four")),
            "modified_ms": MODIFIED_MS,
        })
        .to_string()
    };
    // A valid ETag whose content file is a link out of the root.
    let etag = "44444444444444444444444444444444";
    std::fs::write(objects.join("x~meta"), sidecar(etag)).expect("sidecar");
    std::os::unix::fs::symlink(&victim, objects.join(format!("x~v{etag}"))).expect("link");
    // An ETag that is a path.
    let escape = format!("0/../../../{}", victim.display());
    std::fs::write(objects.join("y~meta"), sidecar(&escape)).expect("sidecar");

    let store = FsBackend::new(dir.path()).expect("open and convert");
    assert_eq!(
        std::fs::read(&victim).expect("victim"),
        b"must stay as it is"
    );
    for name in ["x", "y"] {
        let read = store.get_bytes(name).await;
        assert!(
            matches!(&read, Err(Error::ChecksumMismatch { .. })),
            "{name}: {read:?}"
        );
    }
}

#[tokio::test]
async fn a_converted_root_is_not_converted_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_legacy_root(dir.path());
    drop(FsBackend::new(dir.path()).expect("convert"));
    // A file that looks like a sidecar of the first format, written after
    // the conversion, is not the store's: it is left alone.
    std::fs::write(dir.path().join("objects/new~meta"), b"{}").expect("write");
    let store = FsBackend::new(dir.path()).expect("reopen");
    assert!(dir.path().join("objects/new~meta").exists());
    assert_objects(&store, "reopened").await;
}

#[tokio::test]
async fn a_root_of_an_unknown_format_is_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(FsBackend::new(dir.path()).expect("create"));
    std::fs::write(dir.path().join("format"), "storage-disk fs 9\n").expect("write");
    let opened = FsBackend::new(dir.path());
    assert!(
        matches!(&opened, Err(Error::Backend { message, .. }) if message.contains("format")),
        "{opened:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conversion_survives_a_power_loss_at_every_point() {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_legacy_root(dir.path());
    let recording = Recording::start(dir.path()).expect("start recording");
    drop(FsBackend::new(dir.path()).expect("convert"));
    let end = recording.position();
    assert!(
        end > 10,
        "the conversion was not recorded: {end} operations"
    );
    let mut replay = recording.replay();
    for point in 0..=end {
        replay.advance_to(point).expect("replay");
        for (mode, seed) in [
            (CrashMode::DurableOnly, 0),
            (CrashMode::KeepPrefix, point as u64),
        ] {
            let image = tempfile::tempdir().expect("image directory");
            replay
                .crash_image(mode, seed, image.path())
                .expect("crash image");
            let store = FsBackend::new(image.path())
                .unwrap_or_else(|e| panic!("the image at {point} ({mode:?}) must open: {e}"));
            assert_objects(&store, &format!("image at {point} ({mode:?})")).await;
            let sidecars: Vec<PathBuf> = files_under(&image.path().join("objects"))
                .into_iter()
                .filter(|p| p.to_string_lossy().ends_with("~meta"))
                .collect();
            assert!(
                sidecars.is_empty(),
                "image at {point}: the second conversion left {sidecars:?}"
            );
            let bad = store.get_bytes("k/bad").await;
            assert!(
                matches!(bad, Err(Error::ChecksumMismatch { .. })),
                "image at {point}: {bad:?}"
            );
        }
    }
}
