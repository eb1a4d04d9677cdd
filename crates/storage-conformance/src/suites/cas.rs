//! Suite `cas`: conditional puts, deletes and reads (DESIGN section 2, rules
//! 2, 3 and 6; RFC 9110 section 13.1).

use std::sync::Arc;

use bytes::Bytes;
use storage_core::{Backend, BackendExt, DeleteOptions, ETag, Error, GetOptions, PutMode};

use crate::support::{key, put, put_with_metadata};
use crate::{Check, CheckResult, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "cas";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, if_not_exists_creates_an_absent_key, [ConditionalPut]),
        check!(
            SUITE,
            if_not_exists_on_a_present_key_is_already_exists,
            [ConditionalPut]
        ),
        check!(SUITE, if_not_exists_has_no_side_effects, [ConditionalPut]),
        check!(
            SUITE,
            if_match_with_the_current_etag_replaces,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            if_match_with_a_stale_etag_is_precondition_failed,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            if_match_with_a_stale_etag_has_no_side_effects,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            if_match_on_a_missing_key_is_precondition_failed,
            [ConditionalPut]
        ),
        check!(
            SUITE,
            etag_is_not_reused_after_delete_and_recreate,
            [ConditionalPut, UniqueEtags]
        ),
        check!(
            SUITE,
            copy_if_match_with_a_stale_destination_etag_fails,
            [ConditionalPut]
        ),
        check!(SUITE, get_if_match_with_a_stale_etag_is_precondition_failed),
        check!(SUITE, get_if_match_on_a_missing_key_is_not_found),
        check!(SUITE, get_if_match_with_the_current_etag_reads),
        check!(
            SUITE,
            delete_if_match_with_the_current_etag_deletes,
            [ConditionalDelete]
        ),
        check!(
            SUITE,
            delete_if_match_with_a_stale_etag_keeps_the_object,
            [ConditionalDelete]
        ),
        check!(
            SUITE,
            delete_if_match_on_a_missing_key_is_precondition_failed,
            [ConditionalDelete]
        ),
    ]
}

async fn if_not_exists_creates_an_absent_key(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let meta = put(&*b, &k, "created", PutMode::IfNotExists).await?;
    ensure_eq!(
        b.head(&k).await?.etag,
        meta.etag,
        "ETag of the created object"
    );
    ensure_eq!(
        b.get_bytes(&k).await?,
        Bytes::from("created"),
        "content of the created object"
    );
    Ok(())
}

async fn if_not_exists_on_a_present_key_is_already_exists(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    put(&*b, &k, "first", PutMode::IfNotExists).await?;
    expect_err!(
        put(&*b, &k, "second", PutMode::IfNotExists).await,
        Error::AlreadyExists { .. }
    );
    Ok(())
}

async fn if_not_exists_has_no_side_effects(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let before = put_with_metadata(&*b, &k, "original", &[("owner", "first")]).await?;
    let options = storage_core::PutOptions {
        mode: PutMode::IfNotExists,
        content_type: Some("text/plain".into()),
        metadata: crate::support::metadata(&[("owner", "second")]),
    };
    let refused = b.put(&k, "replacement".into(), options).await;
    expect_err!(refused, Error::AlreadyExists { .. });
    let after = b.head(&k).await?;
    ensure_eq!(
        b.get_bytes(&k).await?,
        Bytes::from("original"),
        "content after a refused create"
    );
    ensure_eq!(
        after.metadata,
        before.metadata,
        "metadata after a refused create"
    );
    ensure_eq!(
        after.content_type,
        before.content_type,
        "content type after a refused create"
    );
    ensure_eq!(after.etag, before.etag, "ETag after a refused create");
    Ok(())
}

async fn if_match_with_the_current_etag_replaces(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    let v2 = put(&*b, &k, "v2", PutMode::IfMatch(v1.etag.clone())).await?;
    ensure!(
        v2.etag != v1.etag,
        "compare-and-swap kept the ETag {}",
        v1.etag
    );
    ensure_eq!(
        b.get_bytes(&k).await?,
        Bytes::from("v2"),
        "content after compare-and-swap"
    );
    Ok(())
}

async fn if_match_with_a_stale_etag_is_precondition_failed(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    b.put_bytes(&k, "v2").await?;
    expect_err!(
        put(&*b, &k, "v3", PutMode::IfMatch(v1.etag)).await,
        Error::PreconditionFailed { .. }
    );
    Ok(())
}

async fn if_match_with_a_stale_etag_has_no_side_effects(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    let v2 = put_with_metadata(&*b, &k, "v2", &[("rev", "2")]).await?;
    let _ = put(&*b, &k, "v3", PutMode::IfMatch(v1.etag)).await;
    let after = b.head(&k).await?;
    ensure_eq!(
        b.get_bytes(&k).await?,
        Bytes::from("v2"),
        "content after a refused swap"
    );
    ensure_eq!(after.etag, v2.etag, "ETag after a refused swap");
    ensure_eq!(after.metadata, v2.metadata, "metadata after a refused swap");
    Ok(())
}

async fn if_match_on_a_missing_key_is_precondition_failed(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    expect_err!(
        put(&*b, &k, "v", PutMode::IfMatch(ETag::new("no-such-version"))).await,
        Error::PreconditionFailed { .. }
    );
    ensure!(
        !b.exists(&k).await?,
        "a refused swap on a missing key created it"
    );
    Ok(())
}

async fn etag_is_not_reused_after_delete_and_recreate(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let first = put(&*b, &k, "same", PutMode::IfNotExists).await?;
    b.delete(&k, DeleteOptions::default()).await?;
    let second = put(&*b, &k, "same", PutMode::IfNotExists).await?;
    ensure!(
        first.etag != second.etag,
        "the re-created object reused ETag {}",
        first.etag
    );
    expect_err!(
        put(&*b, &k, "late", PutMode::IfMatch(first.etag)).await,
        Error::PreconditionFailed { .. }
    );
    Ok(())
}

async fn copy_if_match_with_a_stale_destination_etag_fails(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("src", "new").await?;
    let old = b.put_bytes("dst", "v1").await?;
    b.put_bytes("dst", "v2").await?;
    expect_err!(
        b.copy(&key("src")?, &key("dst")?, PutMode::IfMatch(old.etag))
            .await,
        Error::PreconditionFailed { .. }
    );
    ensure_eq!(
        b.get_bytes("dst").await?,
        Bytes::from("v2"),
        "destination after a refused copy"
    );
    Ok(())
}

async fn get_if_match_with_a_stale_etag_is_precondition_failed(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    b.put_bytes(&k, "v2").await?;
    let options = GetOptions {
        if_match: Some(v1.etag),
        ..Default::default()
    };
    expect_err!(b.get(&k, options).await, Error::PreconditionFailed { .. });
    Ok(())
}

/// A conditional read of a key that holds nothing is `NotFound`, as an
/// unconditional one is (RFC 9110 section 13.2.2 evaluates preconditions
/// only for a resource that exists; S3 answers 404), whatever ETag it names:
/// one the key once had, or one it never had.
async fn get_if_match_on_a_missing_key_is_not_found(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let gone = b.put_bytes(&k, "v1").await?;
    b.delete(&k, DeleteOptions::default()).await?;
    for etag in [gone.etag, ETag::new("0123456789abcdef")] {
        let options = GetOptions {
            if_match: Some(etag),
            ..Default::default()
        };
        expect_err!(b.get(&k, options).await, Error::NotFound { .. });
    }
    Ok(())
}

async fn get_if_match_with_the_current_etag_reads(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    let options = GetOptions {
        if_match: Some(v1.etag),
        ..Default::default()
    };
    ensure_eq!(
        b.get(&k, options).await?.bytes().await?,
        Bytes::from("v1"),
        "content read with If-Match"
    );
    Ok(())
}

async fn delete_if_match_with_the_current_etag_deletes(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    b.delete(
        &k,
        DeleteOptions {
            if_match: Some(v1.etag),
        },
    )
    .await?;
    ensure!(
        !b.exists(&k).await?,
        "the object survived a matching conditional delete"
    );
    Ok(())
}

async fn delete_if_match_with_a_stale_etag_keeps_the_object(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let v1 = b.put_bytes(&k, "v1").await?;
    b.put_bytes(&k, "v2").await?;
    expect_err!(
        b.delete(
            &k,
            DeleteOptions {
                if_match: Some(v1.etag)
            }
        )
        .await,
        Error::PreconditionFailed { .. }
    );
    ensure_eq!(
        b.get_bytes(&k).await?,
        Bytes::from("v2"),
        "content after a refused delete"
    );
    Ok(())
}

async fn delete_if_match_on_a_missing_key_is_precondition_failed(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let k = key("k")?;
    expect_err!(
        b.delete(
            &k,
            DeleteOptions {
                if_match: Some(ETag::new("v1"))
            }
        )
        .await,
        Error::PreconditionFailed { .. }
    );
    Ok(())
}
