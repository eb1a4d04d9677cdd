//! Suite `txn`: multi-key transactions (DESIGN section 2, "Staging and
//! transactions"): a commit happens on every key or on none, even when the
//! process stops between two writes, and of two transactions racing on a
//! key exactly one commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use storage_core::{
    Backend, BackendExt, Body, Capabilities, ChangeStream, DeleteOptions, Error, GetOptions,
    GetResult, Key, ListOptions, ListPage, ObjectMeta, PutMode, PutOptions, Result,
    StagedListOptions, StagedPage, Txn, TxnId, reconcile,
};

use crate::support::key;
use crate::{Check, CheckResult, Failure, check, ensure, ensure_eq};

const SUITE: &str = "txn";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            SUITE,
            commit_applies_every_write_and_leaves_nothing_behind,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            a_failed_condition_aborts_without_a_trace,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            racing_transactions_on_one_key_commit_once,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            a_stop_at_any_step_of_commit_leaves_all_or_nothing_after_reconcile,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            attachments_are_promoted_by_the_commit,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            an_attachment_past_its_limit_is_too_large_and_leaves_nothing
        ),
        check!(SUITE, a_cancelled_attachment_leaves_nothing_after_reconcile),
    ]
}

/// Every stored name, reserved ones included.
async fn everything(b: &dyn Backend) -> std::result::Result<Vec<String>, Failure> {
    let options = ListOptions {
        reserved: true,
        ..ListOptions::default()
    };
    Ok(b.list_all(options)
        .map_ok(|m| m.key.to_string())
        .try_collect()
        .await?)
}

async fn commit_applies_every_write_and_leaves_nothing_behind(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k/2", "old").await?;
    let mut txn = Txn::begin(&*b);
    for (k, v) in [("k/1", "one"), ("k/2", "two"), ("k/3", "three")] {
        txn.stage(&key(k)?, Body::from(v), PutOptions::default())
            .await?;
    }
    let report = txn.commit().await?;
    ensure_eq!(report.promoted.len(), 3, "keys promoted");
    for (k, v) in [("k/1", "one"), ("k/2", "two"), ("k/3", "three")] {
        ensure_eq!(
            &b.get_bytes(k).await?[..],
            v.as_bytes(),
            format!("content of {k}")
        );
    }
    ensure_eq!(
        everything(&*b).await?,
        ["k/1", "k/2", "k/3"],
        "every stored name after the commit"
    );
    Ok(())
}

async fn a_failed_condition_aborts_without_a_trace(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k/2", "old").await?;
    let mut txn = Txn::begin(&*b);
    txn.stage(&key("k/1")?, Body::from("one"), PutOptions::default())
        .await?;
    let create = PutOptions::mode(PutMode::IfNotExists);
    txn.stage(&key("k/2")?, Body::from("two"), create).await?;
    let committed = txn.commit().await;
    ensure!(
        matches!(committed, Err(Error::AlreadyExists { .. })),
        "expected AlreadyExists, got {committed:?}"
    );
    ensure_eq!(
        everything(&*b).await?,
        ["k/2"],
        "every stored name after the aborted commit"
    );
    ensure_eq!(&b.get_bytes("k/2").await?[..], b"old", "content of k/2");
    Ok(())
}

async fn racing_transactions_on_one_key_commit_once(b: Arc<dyn Backend>) -> CheckResult {
    let current = b.put_bytes("shared", "0").await?;
    let mut txns = Vec::new();
    for (i, own) in ["a", "b"].into_iter().enumerate() {
        let mut txn = Txn::begin(&*b);
        let cas = PutOptions::mode(PutMode::IfMatch(current.etag.clone()));
        txn.stage(&key("shared")?, Body::from(format!("{}", i + 1)), cas)
            .await?;
        txn.stage(&key(own)?, Body::from("x"), PutOptions::default())
            .await?;
        txns.push(txn);
    }
    let (first, second) = {
        let mut txns = txns.into_iter();
        match (txns.next(), txns.next()) {
            (Some(a), Some(b)) => (a, b),
            _ => return Err(Failure("two transactions were not made".into())),
        }
    };
    let (a, b_result) = futures::join!(first.commit(), second.commit());
    let committed = [a.is_ok(), b_result.is_ok()];
    ensure_eq!(
        committed.iter().filter(|c| **c).count(),
        1,
        format!("commits that succeeded: {committed:?}")
    );
    let winner = if committed[0] { "a" } else { "b" };
    let loser = if committed[0] { "b" } else { "a" };
    ensure_eq!(
        (b.exists(winner).await?, b.exists(loser).await?),
        (true, false),
        "the winner's other key and the loser's"
    );
    Ok(())
}

/// A backend whose writes stop after a set number: every later put,
/// delete, copy or promote fails, as if the process had died there.
#[derive(Debug)]
struct StopAfter {
    inner: Arc<dyn Backend>,
    writes_left: AtomicUsize,
}

impl StopAfter {
    fn write(&self) -> Result<()> {
        self.writes_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .map(|_| ())
            .map_err(|_| Error::backend(false, "stopped: the process died here", "txn suite"))
    }
}

#[async_trait]
impl Backend for StopAfter {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn put(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
        self.write()?;
        self.inner.put(key, body, options).await
    }
    async fn get(&self, key: &Key, options: GetOptions) -> Result<GetResult> {
        self.inner.get(key, options).await
    }
    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.write()?;
        self.inner.delete(key, options).await
    }
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        self.write()?;
        self.inner.copy(from, to, mode).await
    }
    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        self.inner.watch(prefix).await
    }
    async fn promote(&self, key: &Key, txn: &TxnId, mode: PutMode) -> Result<ObjectMeta> {
        if self.inner.capabilities().atomic_promote {
            self.write()?;
            return self.inner.promote(key, txn, mode).await;
        }
        // Step by step through this wrapper, so that a stop can fall
        // between the copy and the delete.
        storage_core::raw::promote_by_copy(self, key, txn, mode).await
    }
    async fn list_staged(&self, options: &StagedListOptions) -> Result<StagedPage> {
        self.inner.list_staged(options).await
    }
}

async fn a_stop_at_any_step_of_commit_leaves_all_or_nothing_after_reconcile(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let names = ["x", "y/1", "y/2"];
    let mut stop = 0;
    // The decision records of this check's transactions, one per stop.
    let mut own_records = Vec::new();
    loop {
        let base = format!("crash-{stop:02}");
        let keys: Vec<Key> = names
            .iter()
            .map(|n| key(&format!("{base}/{n}")))
            .collect::<Result<_>>()?;
        for k in &keys {
            b.put_bytes(k, "old").await?;
        }
        let stopping = StopAfter {
            inner: Arc::clone(&b),
            writes_left: AtomicUsize::new(usize::MAX),
        };
        let mut txn = Txn::begin(&stopping);
        for k in &keys {
            txn.stage(k, Body::from("new"), PutOptions::default())
                .await?;
        }
        txn.attach(&keys[0], "note", Body::from("new"), 16).await?;
        own_records.push(format!(".txn/{}", txn.id()));
        stopping.writes_left.store(stop, Ordering::SeqCst);
        let committed = txn.commit().await;
        reconcile(&*b, Duration::ZERO).await?;
        let mut contents = Vec::new();
        for k in &keys {
            contents.push(String::from_utf8_lossy(&b.get_bytes(k).await?).into_owned());
        }
        let note = key(&format!("{base}/x/note"))?;
        let attached = b.exists(&note).await?;
        let all_new = contents.iter().all(|c| c == "new") && attached;
        let all_old = contents.iter().all(|c| c == "old") && !attached;
        contents.push(format!("attachment present: {attached}"));
        ensure!(
            all_new || all_old,
            "stopped after {stop} writes of the commit ({committed:?}), then reconciled: {contents:?}"
        );
        ensure!(
            committed.is_err() || all_new,
            "a commit reported done after {stop} writes left {contents:?}"
        );
        let mut left = Vec::new();
        for name in everything(&*b).await? {
            let ours = name.starts_with(&base) || name.starts_with(".txn/");
            if !ours || keys.iter().any(|k| k.as_str() == name) || name == note.as_str() {
                continue;
            }
            // The `aborted` decision reconcile writes before discarding
            // an undecided transaction of this check stays (see
            // `ABORTED_KEEP`), so that a stalled commit cannot decide later.
            if own_records.contains(&name) {
                let record = b.get_bytes(storage_core::raw::stored_key(&name)?).await?;
                if record.starts_with(b"storage-txn 1\naborted\n") {
                    continue;
                }
            }
            left.push(name);
        }
        ensure_eq!(
            left,
            Vec::<String>::new(),
            format!("leftovers after a stop at {stop}")
        );
        if committed.is_ok() {
            return Ok(());
        }
        stop += 1;
        if stop > 64 {
            return Err(Failure("the commit never finished within 64 writes".into()));
        }
    }
}

async fn attachments_are_promoted_by_the_commit(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("doc")?;
    let mut txn = Txn::begin(&*b);
    txn.stage(&k, Body::from("state"), PutOptions::default())
        .await?;
    let chunks = ["blob ", "in ", "chunks"].map(|c| Ok(bytes::Bytes::from(c)));
    let stream = Body::stream(futures::stream::iter(chunks).boxed(), None);
    txn.attach(&k, "files/blob", stream, 1024).await?;
    ensure_eq!(
        b.exists("doc/files/blob").await?,
        false,
        "the attachment before the commit"
    );
    txn.commit().await?;
    ensure_eq!(
        &b.get_bytes("doc/files/blob").await?[..],
        b"blob in chunks",
        "the attachment after the commit"
    );
    ensure_eq!(
        everything(&*b).await?,
        ["doc", "doc/files/blob"],
        "every stored name after the commit"
    );
    Ok(())
}

async fn an_attachment_past_its_limit_is_too_large_and_leaves_nothing(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let k = key("doc")?;
    let mut txn = Txn::begin(&*b);
    let chunks = (0..3).map(|_| Ok(bytes::Bytes::from(vec![7u8; 40])));
    let stream = Body::stream(futures::stream::iter(chunks).boxed(), None);
    let attached = txn.attach(&k, "big", stream, 100).await;
    ensure!(
        matches!(
            attached,
            Err(Error::TooLarge {
                size: 120,
                limit: 100,
                ..
            })
        ),
        "expected TooLarge after 120 of 100 bytes, got {attached:?}"
    );
    let declared = Body::from(vec![7u8; 101]);
    let refused = txn.attach(&k, "big", declared, 100).await;
    ensure!(
        matches!(refused, Err(Error::TooLarge { size: 101, .. })),
        "expected TooLarge for a declared 101 bytes, got {refused:?}"
    );
    ensure_eq!(
        everything(&*b).await?,
        Vec::<String>::new(),
        "every stored name"
    );
    Ok(())
}

async fn a_cancelled_attachment_leaves_nothing_after_reconcile(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("doc")?;
    let mut txn = Txn::begin(&*b);
    let first = futures::stream::iter([Ok(bytes::Bytes::from(vec![7u8; 4096]))]);
    let stream = Body::stream(first.chain(futures::stream::pending()).boxed(), None);
    let attaching = txn.attach(&k, "stalled", stream, 1 << 20);
    let dropped = tokio::time::timeout(Duration::from_millis(200), attaching).await;
    ensure!(
        dropped.is_err(),
        "the stalled attachment finished: {dropped:?}"
    );
    drop(txn);
    reconcile(&*b, Duration::ZERO).await?;
    ensure_eq!(
        everything(&*b).await?,
        Vec::<String>::new(),
        "every stored name after reconcile"
    );
    Ok(())
}
