//! Suite `watch`: the change feed (DESIGN section 2, change feed): every
//! put and delete under the watched prefix is streamed once, in commit
//! order, with the new version's ETag, and nothing outside the prefix is.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use storage_core::{Backend, BackendExt, Change, ChangeKind, ChangeStream, DeleteOptions};

use crate::support::key;
use crate::{Check, CheckResult, Failure, check, ensure_eq};

const SUITE: &str = "watch";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, puts_and_deletes_stream_in_commit_order, [ChangeFeed]),
        check!(
            SUITE,
            changes_outside_the_prefix_are_not_streamed,
            [ChangeFeed]
        ),
    ]
}

/// The next change, failing the check after 10 s.
async fn next(changes: &mut ChangeStream) -> Result<Change, Failure> {
    match tokio::time::timeout(Duration::from_secs(10), changes.next()).await {
        Ok(Some(change)) => Ok(change?),
        Ok(None) => Err(Failure("the change feed ended".into())),
        Err(_) => Err(Failure("no change arrived within 10 s".into())),
    }
}

async fn puts_and_deletes_stream_in_commit_order(b: Arc<dyn Backend>) -> CheckResult {
    let mut changes = b.watch("w/").await?;
    let a = b.put_bytes("w/a", "1").await?;
    let b2 = b.put_bytes("w/b", "2").await?;
    b.delete(&key("w/a")?, DeleteOptions::default()).await?;
    let expected = [
        ("w/a", ChangeKind::Put, Some(a.etag)),
        ("w/b", ChangeKind::Put, Some(b2.etag)),
        ("w/a", ChangeKind::Delete, None),
    ];
    for (i, (k, kind, etag)) in expected.into_iter().enumerate() {
        let change = next(&mut changes).await?;
        ensure_eq!(
            (change.key.as_str(), change.kind, change.etag),
            (k, kind, etag),
            format!("change {i}")
        );
    }
    Ok(())
}

async fn changes_outside_the_prefix_are_not_streamed(b: Arc<dyn Backend>) -> CheckResult {
    let mut changes = b.watch("inside/").await?;
    b.put_bytes("outside/x", "1").await?;
    b.put_bytes("inside/y", "2").await?;
    let change = next(&mut changes).await?;
    ensure_eq!(
        change.key.as_str(),
        "inside/y",
        "first change under inside/"
    );
    Ok(())
}
