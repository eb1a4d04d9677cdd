//! `FsBackend` housekeeping and hostile directories: orphaned files are
//! swept, an unreadable object file fails only its own key's reads, and an
//! object file of another key (what a case-folding file system produces)
//! is never served or overwritten.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use storage_core::{
    Backend, BackendExt, DeleteOptions, ETag, Error, Key, ListOptions, PutMode, PutOptions,
};
use storage_disk::FsBackend;

const HOUR: Duration = Duration::from_secs(3600);

fn key(name: &str) -> Key {
    Key::new(name).expect("valid key")
}

/// Writes `path` with a modification time `age` ago.
fn aged_file(path: &Path, age: Duration) {
    std::fs::write(path, b"left behind").expect("write");
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(SystemTime::now() - age)
        .expect("set the modification time");
}

fn orphans(objects: &Path) -> [PathBuf; 3] {
    [
        objects.join("k~d/~tmp-0000000000000001"),
        objects.join("k~d/~tmp-a~v0123456789abcdef0123456789abcdef"),
        objects.join("~tmp-00000000000000000000000000000002"),
    ]
}

#[tokio::test]
async fn sweep_removes_old_orphans_and_keeps_objects_and_fresh_files() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsBackend::new(dir.path()).expect("open");
    store.put_bytes("k/a", "current").await.expect("put");
    let objects = dir.path().join("objects");
    for orphan in orphans(&objects) {
        aged_file(&orphan, 2 * HOUR);
    }
    let fresh = objects.join("k~d/~tmp-11111111111111111111111111111111");
    aged_file(&fresh, Duration::ZERO);

    let report = store.sweep(HOUR).await.expect("sweep");
    assert_eq!(report.files_removed, 3, "{report:?}");
    for orphan in orphans(&objects) {
        assert!(!orphan.exists(), "{} is left", orphan.display());
    }
    assert!(
        fresh.exists(),
        "a file younger than the limit may be a put under way"
    );
    assert_eq!(store.get_bytes("k/a").await.expect("get"), "current");
}

#[tokio::test]
async fn opening_a_store_sweeps_old_orphans_in_the_background() {
    let dir = tempfile::tempdir().expect("temporary directory");
    drop(FsBackend::new(dir.path()).expect("create"));
    std::fs::create_dir_all(dir.path().join("objects/k~d")).expect("directory");
    let orphan = &orphans(&dir.path().join("objects"))[0];
    aged_file(orphan, 2 * HOUR);
    let _store = FsBackend::new(dir.path()).expect("open");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while orphan.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!orphan.exists(), "the orphan was not swept");
}

#[tokio::test]
async fn an_unreadable_object_file_fails_its_own_key_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsBackend::new(dir.path()).expect("open");
    for name in ["k/a", "k/b", "k/c"] {
        store.put_bytes(name, name).await.expect("put");
    }
    let damaged = dir.path().join("objects/k~d/b~obj");
    std::fs::write(&damaged, b"{not json").expect("damage the object file");

    let read = store.get_bytes("k/b").await;
    assert!(
        matches!(&read, Err(Error::ChecksumMismatch { key, .. }) if key == "k/b"),
        "{read:?}"
    );
    let page = store
        .list(&ListOptions {
            prefix: "k/".into(),
            ..ListOptions::default()
        })
        .await
        .expect("the neighbours still list");
    let listed: Vec<&str> = page.objects.iter().map(|m| m.key.as_str()).collect();
    assert_eq!(listed, ["k/a", "k/c"]);

    let create = PutOptions {
        mode: PutMode::IfNotExists,
        ..PutOptions::default()
    };
    let created = store.put(&key("k/b"), "new".into(), create).await;
    assert!(
        matches!(created, Err(Error::AlreadyExists { .. })),
        "{created:?}"
    );
    let swap = PutOptions {
        mode: PutMode::IfMatch(ETag::new("00000000000000000000000000000000")),
        ..PutOptions::default()
    };
    let swapped = store.put(&key("k/b"), "new".into(), swap).await;
    assert!(
        matches!(swapped, Err(Error::PreconditionFailed { .. })),
        "{swapped:?}"
    );
    let report = store.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.unreadable_objects, std::slice::from_ref(&damaged));
    assert_eq!(report.files_removed, 0, "an unreadable object is kept");

    store
        .put_bytes("k/b", "replaced")
        .await
        .expect("an overwrite is not wedged");
    assert_eq!(store.get_bytes("k/b").await.expect("get"), "replaced");
    std::fs::write(&damaged, b"{not json").expect("damage the object file again");
    store
        .delete(&key("k/b"), DeleteOptions::default())
        .await
        .expect("a delete is not wedged");
    assert!(matches!(
        store.head(&key("k/b")).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn an_object_file_of_another_key_is_never_served_or_replaced() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsBackend::new(dir.path()).expect("open");
    store.put_bytes("A", "upper").await.expect("put");
    // On a case-folding file system `a~obj` is the file `A~obj`.
    let objects = dir.path().join("objects");
    std::fs::copy(objects.join("A~obj"), objects.join("a~obj")).expect("copy");

    let read = store.get_bytes("a").await;
    assert!(
        matches!(&read, Err(Error::Backend { message, .. }) if message.contains("folds case")),
        "{read:?}"
    );
    assert!(store.put_bytes("a", "lower").await.is_err());
    assert!(
        store
            .delete(&key("a"), DeleteOptions::default())
            .await
            .is_err()
    );
    assert_eq!(store.get_bytes("A").await.expect("A is untouched"), "upper");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_never_takes_the_content_of_a_put_whose_body_pauses() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = FsBackend::new(dir.path()).expect("open");
    let (resume, resumed) = tokio::sync::oneshot::channel::<()>();
    let first = futures::stream::once(async { Ok(bytes::Bytes::from_static(b"first half, ")) });
    let rest = futures::stream::once(async move {
        let _ = resumed.await;
        Ok(bytes::Bytes::from_static(b"second half"))
    });
    let body = storage_core::Body::stream(first.chain(rest).boxed(), None);
    let writer = store.clone();
    let put = tokio::spawn(async move {
        writer
            .put(&key("k/slow"), body, PutOptions::default())
            .await
    });
    // Wait until the put's temporary file exists, then sweep everything,
    // whatever its age.
    let objects = dir.path().join("objects/k~d");
    while !objects.is_dir() || std::fs::read_dir(&objects).expect("list").next().is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let report = store.sweep(Duration::ZERO).await.expect("sweep");
    assert_eq!(report.files_removed, 0, "the paused put's file was swept");
    resume.send(()).expect("resume the body");
    put.await.expect("joined").expect("the put completes");
    assert_eq!(
        store.get_bytes("k/slow").await.expect("get"),
        "first half, second half"
    );
}
