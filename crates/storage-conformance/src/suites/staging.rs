//! Suite `staging`: every backend stores the reserved names of the staging
//! and transaction layer (DESIGN section 2, "Staging and transactions") and
//! reads them back, across reopening and compaction, while ordinary
//! listings and change feeds never show them.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use storage_core::{Backend, BackendExt, DeleteOptions, Key, ListOptions, ListPage, TxnId};

use crate::support::key;
use crate::{Check, CheckResult, Failure, Hooks, check, ensure_eq};

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
