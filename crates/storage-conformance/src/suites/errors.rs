//! Suite `errors`: input the backend must refuse, and the classification of
//! its errors (DESIGN section 2, `Key` and rule 11).
//!
//! The key rules themselves are decided by [`Key::new`](storage_core::Key::new)
//! before any backend is called, so they are tested once, in `storage-core`;
//! every check here reaches the backend.

use std::sync::Arc;

use futures::StreamExt;
use storage_core::{
    Backend, BackendExt, DeleteOptions, ETag, Error, ListOptions, MAX_KEY_BYTES, PutMode,
    PutOptions,
};

use crate::support::{key, put};
use crate::{Check, CheckResult, Failure, Hooks, check, ensure, expect_err};

const SUITE: &str = "errors";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, key_of_exactly_1024_bytes_is_stored),
        check!(SUITE, prefix_with_a_leading_slash_is_invalid_argument),
        check!(SUITE, definite_errors_are_not_transient, [ConditionalPut]),
        check!(
            SUITE,
            wrong_credentials_are_refused_as_such,
            [WrongCredentialsHook],
            hooks
        ),
        check!(
            SUITE,
            missing_bucket_is_a_configuration_error,
            [MissingBucketHook],
            hooks
        ),
        check!(
            SUITE,
            watch_without_a_change_feed_is_unsupported,
            [NoChangeFeed]
        ),
        check!(
            SUITE,
            conditional_put_without_the_capability_is_unsupported,
            [NoConditionalPut]
        ),
        check!(
            SUITE,
            conditional_delete_without_the_capability_is_unsupported,
            [NoConditionalDelete]
        ),
    ]
}

/// A key of exactly [`MAX_KEY_BYTES`] bytes whose segments are each at most
/// 250 bytes: S3-compatible servers backed by a file system (SeaweedFS)
/// refuse a segment longer than 255 bytes, which the contract does not
/// require, so the check stays about the key's total length.
fn key_of_1024_bytes() -> String {
    let mut segments = Vec::new();
    let mut len = 0;
    while len < MAX_KEY_BYTES {
        // Each segment after the first costs one more byte for its '/'.
        let room = MAX_KEY_BYTES - len - usize::from(!segments.is_empty());
        let take = room.min(250);
        let letter = char::from(b'a' + segments.len() as u8);
        segments.push(letter.to_string().repeat(take));
        len += take + usize::from(segments.len() > 1);
    }
    segments.join("/")
}

async fn key_of_exactly_1024_bytes_is_stored(b: Arc<dyn Backend>) -> CheckResult {
    let long = key_of_1024_bytes();
    ensure!(
        long.len() == MAX_KEY_BYTES,
        "the test key has {} bytes",
        long.len()
    );
    b.put_bytes(&long, "x").await?;
    ensure!(b.exists(&long).await?, "a 1024-byte key was not stored");
    let page = b.list(&ListOptions::prefix("aaa")).await?;
    ensure!(
        page.objects.iter().any(|m| m.key.as_str() == long),
        "a 1024-byte key was not listed"
    );
    Ok(())
}

async fn prefix_with_a_leading_slash_is_invalid_argument(b: Arc<dyn Backend>) -> CheckResult {
    expect_err!(
        b.list(&ListOptions::prefix("/a")).await,
        Error::InvalidArgument { .. }
    );
    Ok(())
}

async fn definite_errors_are_not_transient(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    put(&*b, &k, "v", PutMode::IfNotExists).await?;
    let errors = [
        b.get_bytes("missing").await.err(),
        put(&*b, &k, "v", PutMode::IfNotExists).await.err(),
        put(&*b, &k, "v", PutMode::IfMatch(ETag::new("stale")))
            .await
            .err(),
        b.get_range(&k, 5..).await.err(),
    ];
    for (i, error) in errors.into_iter().enumerate() {
        let error = error.ok_or_else(|| Failure(format!("operation {i} should have failed")))?;
        ensure!(!error.is_transient(), "{error} is classified as transient");
    }
    Ok(())
}

/// Rule 11: a client whose credentials the service refuses gets
/// [`Error::Unauthenticated`] or [`Error::PermissionDenied`] from every
/// operation, never `NotFound`, an empty listing or a transient error that a
/// retrying layer would repeat.
async fn wrong_credentials_are_refused_as_such(b: Arc<dyn Backend>, hooks: Hooks) -> CheckResult {
    let Some(make) = hooks.wrong_credentials else {
        return Err(Failure(
            "the factory offers no wrong-credentials hook".into(),
        ));
    };
    let k = key("k")?;
    b.put_bytes(&k, "x").await?;
    let refused = make()
        .await
        .map_err(|e| Failure(format!("the wrong-credentials hook failed: {e}")))?;
    let outcomes = [
        ("put", refused.put_bytes(&k, "y").await.err()),
        ("get", refused.get_bytes(&k).await.err()),
        ("head", refused.head(&k).await.err()),
        ("list", refused.list(&ListOptions::default()).await.err()),
        (
            "delete",
            refused.delete(&k, DeleteOptions::default()).await.err(),
        ),
    ];
    for (operation, error) in outcomes {
        match error {
            Some(Error::Unauthenticated { .. } | Error::PermissionDenied { .. }) => {}
            Some(other) => {
                return Err(Failure(format!(
                    "{operation} with refused credentials failed with {other} (transient: {}), not Unauthenticated or PermissionDenied",
                    other.is_transient()
                )));
            }
            None => {
                return Err(Failure(format!(
                    "{operation} with refused credentials succeeded"
                )));
            }
        }
    }
    ensure!(
        b.get_bytes(&k).await? == "x",
        "a client with refused credentials changed the object"
    );
    Ok(())
}

/// Rule 11: on a bucket or container that does not exist, every operation
/// fails with [`Error::BucketNotFound`]: never `NotFound` of the key (which
/// would make `exists` answer false for every key of a misconfigured store),
/// an empty listing, or a transient error.
async fn missing_bucket_is_a_configuration_error(
    _b: Arc<dyn Backend>,
    hooks: Hooks,
) -> CheckResult {
    let Some(make) = hooks.missing_bucket else {
        return Err(Failure("the factory offers no missing-bucket hook".into()));
    };
    let missing = make()
        .await
        .map_err(|e| Failure(format!("the missing-bucket hook failed: {e}")))?;
    let k = key("k")?;
    let outcomes = [
        ("exists", missing.exists(&k).await.map(|_| ()).err()),
        ("get", missing.get_bytes(&k).await.map(|_| ()).err()),
        (
            "list",
            missing
                .list(&ListOptions::default())
                .await
                .map(|_| ())
                .err(),
        ),
        ("put", missing.put_bytes(&k, "x").await.map(|_| ()).err()),
        (
            "delete",
            missing.delete(&k, DeleteOptions::default()).await.err(),
        ),
    ];
    for (operation, error) in outcomes {
        match error {
            Some(Error::BucketNotFound { .. }) => {}
            Some(other) => {
                return Err(Failure(format!(
                    "{operation} on a missing bucket failed with {other}, not BucketNotFound"
                )));
            }
            None => {
                return Err(Failure(format!(
                    "{operation} on a missing bucket succeeded"
                )));
            }
        }
    }
    Ok(())
}

async fn watch_without_a_change_feed_is_unsupported(b: Arc<dyn Backend>) -> CheckResult {
    match b.watch("").await {
        Err(Error::Unsupported { .. }) => Ok(()),
        Err(other) => Err(Failure(format!(
            "watch without a change feed failed with {other}, not Unsupported"
        ))),
        Ok(mut changes) => {
            // A feed that answers must not be a silent no-op either.
            b.put_bytes("k", "x").await?;
            let first = tokio::time::timeout(std::time::Duration::from_secs(1), changes.next())
                .await
                .ok()
                .flatten();
            Err(Failure(format!(
                "watch succeeded on a backend without a change feed (first change: {first:?})"
            )))
        }
    }
}

async fn conditional_put_without_the_capability_is_unsupported(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let options = PutOptions::mode(PutMode::IfNotExists);
    expect_err!(
        b.put(&k, "x".into(), options).await,
        Error::Unsupported { .. }
    );
    ensure!(
        !b.exists(&k).await?,
        "a refused conditional put stored an object"
    );
    Ok(())
}

async fn conditional_delete_without_the_capability_is_unsupported(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let k = key("k")?;
    let meta = b.put_bytes(&k, "x").await?;
    let options = DeleteOptions {
        if_match: Some(meta.etag),
    };
    expect_err!(b.delete(&k, options).await, Error::Unsupported { .. });
    ensure!(
        b.exists(&k).await?,
        "a refused conditional delete removed the object"
    );
    Ok(())
}
