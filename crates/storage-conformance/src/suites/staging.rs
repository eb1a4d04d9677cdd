//! Suite `staging`: every backend stores the reserved names of the staging
//! and transaction layer (DESIGN section 2, "Staging and transactions") and
//! reads them back, across reopening and compaction, while ordinary
//! listings and change feeds never show them.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use storage_core::{
    Backend, BackendExt, Body, DeleteOptions, Error, Key, ListOptions, ListPage, PutMode,
    PutOptions, StagedListOptions, StagedObject, TxnId,
};

use crate::support::key;
use crate::support::metadata;
use crate::{Check, CheckResult, Failure, Hooks, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "staging";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, reserved_keys_are_stored_read_and_deleted),
        check!(SUITE, ordinary_listings_leave_out_reserved_keys),
        check!(
            SUITE,
            reserved_keys_survive_reopening_and_compaction,
            [ReopenHook],
            hooks
        ),
        check!(SUITE, change_feeds_leave_out_reserved_keys, [ChangeFeed]),
        check!(SUITE, promote_makes_the_staged_write_the_object),
        check!(
            SUITE,
            promote_honours_its_condition_and_keeps_the_staged_write,
            [ConditionalPut]
        ),
        check!(SUITE, discard_removes_the_staged_write_and_its_attachments),
        check!(SUITE, list_staged_finds_root_and_nested_forms_only),
        check!(SUITE, list_staged_pages_through_1000_staged_writes),
        check!(SUITE, staging_past_the_key_length_limit_is_an_invalid_key),
    ]
}

fn txn() -> Result<TxnId, Failure> {
    TxnId::new("t-0001").map_err(Failure::from)
}

/// One name of each reserved form, for ordinary key `a`: its staged write,
/// a staged attachment, a namespace's staged state and a decision record.
fn reserved_names() -> Result<[Key; 4], Failure> {
    let (a, t) = (key("a")?, txn()?);
    Ok([
        a.staged(&t)?,
        a.staged_attachment(&t, "attachments-test/0")?,
        Key::root_staged(&t),
        Key::txn_record(&t),
    ])
}

async fn reserved_keys_are_stored_read_and_deleted(b: Arc<dyn Backend>) -> CheckResult {
    for name in reserved_names()? {
        let written = b.put_bytes(&name, name.as_str().to_owned()).await?;
        ensure_eq!(
            b.head(&name).await?.etag,
            written.etag,
            format!("head of {name}")
        );
        let read = b.get_bytes(&name).await?;
        ensure_eq!(
            &read[..],
            name.as_str().as_bytes(),
            format!("content of {name}")
        );
        b.delete(&name, DeleteOptions::default()).await?;
        ensure_eq!(
            b.exists(&name).await?,
            false,
            format!("{name} after delete")
        );
    }
    Ok(())
}

/// Every object key and common prefix of a listing, in order.
async fn listed(b: &dyn Backend, prefix: &str, delimiter: bool) -> Result<Vec<String>, Failure> {
    let mut options = ListOptions::prefix(prefix);
    options.delimiter = delimiter;
    let mut names = Vec::new();
    loop {
        let ListPage {
            objects,
            common_prefixes,
            continuation,
        } = b.list(&options).await?;
        names.extend(objects.into_iter().map(|o| o.key.to_string()));
        names.extend(common_prefixes);
        match continuation {
            Some(next) => options.continuation = Some(next),
            None => break,
        }
    }
    names.sort();
    Ok(names)
}

async fn ordinary_listings_leave_out_reserved_keys(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("a", "1").await?;
    b.put_bytes("a/b", "2").await?;
    for name in reserved_names()? {
        b.put_bytes(&name, "staged").await?;
    }
    let all: Vec<String> = b
        .list_all(ListOptions::prefix(""))
        .map_ok(|m| m.key.to_string())
        .try_collect()
        .await?;
    ensure_eq!(all, ["a", "a/b"], "a listing of everything");
    ensure_eq!(
        listed(&*b, "", true).await?,
        ["a", "a/"],
        "a delimiter listing of the root"
    );
    ensure_eq!(
        listed(&*b, "a/", true).await?,
        ["a/b"],
        "a delimiter listing of a/"
    );
    Ok(())
}

async fn reserved_keys_survive_reopening_and_compaction(
    b: Arc<dyn Backend>,
    hooks: Hooks,
) -> CheckResult {
    let Some(reopen) = hooks.reopen else {
        return Err(Failure("the factory offers no reopen hook".into()));
    };
    b.put_bytes("a", "1").await?;
    for name in reserved_names()? {
        b.put_bytes(&name, name.as_str().to_owned()).await?;
    }
    // Overwritten, so that compaction has something to drop.
    for name in reserved_names()? {
        b.put_bytes(&name, name.as_str().to_owned()).await?;
    }
    drop(b);
    let b = reopen()
        .await
        .map_err(|e| Failure(format!("reopening failed: {e}")))?;
    for name in reserved_names()? {
        let read = b.get_bytes(&name).await?;
        ensure_eq!(
            &read[..],
            name.as_str().as_bytes(),
            format!("{name} after reopening")
        );
    }
    ensure_eq!(
        listed(&*b, "", false).await?,
        ["a"],
        "a listing after reopening"
    );
    Ok(())
}

async fn change_feeds_leave_out_reserved_keys(b: Arc<dyn Backend>) -> CheckResult {
    let mut changes = b.watch("").await?;
    for name in reserved_names()? {
        b.put_bytes(&name, "staged").await?;
    }
    b.put_bytes("a", "1").await?;
    let first = tokio::time::timeout(Duration::from_secs(10), changes.next())
        .await
        .map_err(|_| Failure("no change arrived within 10 s".into()))?
        .ok_or_else(|| Failure("the change feed ended".into()))??;
    ensure_eq!(first.key.as_str(), "a", "the first change streamed");
    Ok(())
}

/// Every staged write `list_staged` finds under `options`, page by page,
/// failing the check if a page repeats an entry.
async fn all_staged(
    b: &dyn Backend,
    mut options: StagedListOptions,
) -> Result<Vec<StagedObject>, Failure> {
    let mut found: Vec<StagedObject> = Vec::new();
    loop {
        let page = b.list_staged(&options).await?;
        found.extend(page.staged);
        match page.continuation {
            Some(next) => options.start_after = Some(next),
            None => break,
        }
    }
    let mut names: Vec<&str> = found.iter().map(|s| s.meta.key.as_str()).collect();
    let listed = names.len();
    names.dedup();
    ensure_eq!(names.len(), listed, "distinct staged writes across pages");
    Ok(found)
}

/// The (key, transaction) pairs of `staged`, in order.
fn pairs(staged: &[StagedObject]) -> Vec<(Option<String>, String)> {
    staged
        .iter()
        .map(|s| (s.key.as_ref().map(Key::to_string), s.txn.to_string()))
        .collect()
}

async fn promote_makes_the_staged_write_the_object(b: Arc<dyn Backend>) -> CheckResult {
    let (k, t) = (key("p")?, txn()?);
    let options = PutOptions {
        content_type: Some("text/csv".into()),
        metadata: metadata(&[("origin", "staged")]),
        ..PutOptions::default()
    };
    b.stage(&k, &t, Body::from("a,b\n"), options).await?;
    ensure_eq!(b.exists(&k).await?, false, "the key before promotion");
    let promoted = b.promote(&k, &t, PutMode::Overwrite).await?;
    let meta = b.head(&k).await?;
    ensure_eq!(meta.etag, promoted.etag, "the promoted version's ETag");
    ensure_eq!(
        &b.get_bytes(&k).await?[..],
        b"a,b\n",
        "the promoted content"
    );
    ensure_eq!(
        (
            meta.content_type.as_deref(),
            meta.metadata.get("origin").map(String::as_str)
        ),
        (Some("text/csv"), Some("staged")),
        "the promoted content type and metadata"
    );
    let left = all_staged(&*b, StagedListOptions::default()).await?;
    ensure_eq!(pairs(&left), [], "staged writes after promotion");
    Ok(())
}

async fn promote_honours_its_condition_and_keeps_the_staged_write(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let (k, t) = (key("c")?, txn()?);
    let current = b.put_bytes(&k, "old").await?;
    b.stage(&k, &t, Body::from("new"), PutOptions::default())
        .await?;
    expect_err!(
        b.promote(&k, &t, PutMode::IfNotExists).await,
        Error::AlreadyExists { .. }
    );
    let stale = storage_core::ETag::new("\"not-the-current-etag\"");
    expect_err!(
        b.promote(&k, &t, PutMode::IfMatch(stale)).await,
        Error::PreconditionFailed { .. }
    );
    ensure_eq!(
        &b.get_bytes(&k).await?[..],
        b"old",
        "the content after refusals"
    );
    b.promote(&k, &t, PutMode::IfMatch(current.etag)).await?;
    ensure_eq!(
        &b.get_bytes(&k).await?[..],
        b"new",
        "the content after a matching promote"
    );
    Ok(())
}

async fn discard_removes_the_staged_write_and_its_attachments(b: Arc<dyn Backend>) -> CheckResult {
    let (k, t) = (key("d")?, txn()?);
    b.stage(&k, &t, Body::from("staged"), PutOptions::default())
        .await?;
    for name in ["log/0", "log/1", "blob"] {
        b.put_bytes(&k.staged_attachment(&t, name)?, "attached")
            .await?;
    }
    b.discard(&k, &t).await?;
    let mut options = ListOptions::prefix("d/");
    options.reserved = true;
    let left: Vec<String> = b
        .list_all(options)
        .map_ok(|m| m.key.to_string())
        .try_collect()
        .await?;
    ensure_eq!(left, Vec::<String>::new(), "names under d/ after discard");
    Ok(())
}

async fn list_staged_finds_root_and_nested_forms_only(b: Arc<dyn Backend>) -> CheckResult {
    let (t1, t2) = (TxnId::new("t1-a")?, TxnId::new("t2-b")?);
    for (k, t) in [("x", &t1), ("x", &t2), ("x/y", &t1), ("z", &t2)] {
        b.stage(&key(k)?, t, Body::from("s"), PutOptions::default())
            .await?;
    }
    b.put_bytes(Key::root_staged(&t1), "root").await?;
    b.put_bytes(&key("x")?.staged_attachment(&t1, "a")?, "attached")
        .await?;
    b.put_bytes(Key::txn_record(&t1), "decision").await?;
    b.put_bytes("x", "ordinary").await?;
    let expected = [
        (None, "t1-a"),
        (Some("x"), "t1-a"),
        (Some("x"), "t2-b"),
        (Some("x/y"), "t1-a"),
        (Some("z"), "t2-b"),
    ];
    let expected: Vec<(Option<String>, String)> = expected
        .iter()
        .map(|(k, t)| (k.map(str::to_owned), (*t).to_owned()))
        .collect();
    let paged = StagedListOptions {
        page_size: Some(2),
        ..StagedListOptions::default()
    };
    ensure_eq!(
        pairs(&all_staged(&*b, paged).await?),
        expected,
        "every staged write, in pages of 2"
    );
    let only_t2 = StagedListOptions {
        txn_prefix: "t2".into(),
        ..StagedListOptions::default()
    };
    ensure_eq!(
        pairs(&all_staged(&*b, only_t2).await?),
        [
            (Some("x".to_owned()), "t2-b".to_owned()),
            (Some("z".to_owned()), "t2-b".to_owned())
        ],
        "staged writes of transactions t2*"
    );
    let under_x = StagedListOptions {
        prefix: "x/".into(),
        ..StagedListOptions::default()
    };
    ensure_eq!(
        pairs(&all_staged(&*b, under_x).await?),
        [(Some("x/y".to_owned()), "t1-a".to_owned())],
        "staged writes under x/"
    );
    Ok(())
}

async fn list_staged_pages_through_1000_staged_writes(b: Arc<dyn Backend>) -> CheckResult {
    stage_many_and_list(b, 1000, 100).await
}

/// Stages `count` writes (16 at a time) under `many/`, half of them with an
/// attachment, and checks that [`Backend::list_staged`] in pages of `page`
/// finds each exactly once and no attachment: the suite runs it with 1,000
/// on every backend, the disk crates' tests with 10,000.
///
/// # Errors
/// A [`Failure`] naming what was missing, repeated or extra.
pub async fn stage_many_and_list(b: Arc<dyn Backend>, count: usize, page: usize) -> CheckResult {
    let t = txn()?;
    futures::stream::iter(0..count)
        .map(|i| {
            let (b, t) = (Arc::clone(&b), t.clone());
            async move {
                let k = Key::new(format!("many/{i:06}"))?;
                b.stage(&k, &t, Body::from("s"), PutOptions::default())
                    .await?;
                if i % 2 == 0 {
                    b.put_bytes(&k.staged_attachment(&t, "a")?, "attached")
                        .await?;
                }
                Ok::<_, Error>(())
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    let options = StagedListOptions {
        page_size: Some(page),
        ..StagedListOptions::default()
    };
    let found = all_staged(&*b, options).await?;
    let keys: Vec<String> = found
        .iter()
        .filter_map(|s| s.key.as_ref().map(Key::to_string))
        .collect();
    let expected: Vec<String> = (0..count).map(|i| format!("many/{i:06}")).collect();
    ensure!(
        keys == expected,
        "{} staged writes found in pages of {page}, {count} expected (first: {:?})",
        keys.len(),
        keys.first()
    );
    Ok(())
}

async fn staging_past_the_key_length_limit_is_an_invalid_key(b: Arc<dyn Backend>) -> CheckResult {
    let k = key(&"k".repeat(1020))?;
    let staged = b
        .stage(&k, &txn()?, Body::from("s"), PutOptions::default())
        .await;
    let error = expect_err!(staged, Error::InvalidKey { .. });
    ensure!(
        error.to_string().contains(".staging"),
        "the error names the staged key: {error}"
    );
    Ok(())
}
