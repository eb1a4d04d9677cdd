//! Suite `errors`: invalid input is rejected with a typed error before any
//! I/O, and errors are classified (DESIGN section 2, `Key` and rule 11).

use std::sync::Arc;

use storage_core::{Backend, BackendExt, ETag, Error, ListOptions, MAX_KEY_BYTES, PutMode};

use crate::spy::Spy;
use crate::support::{key, put};
use crate::{Check, CheckResult, Failure, check, ensure, expect_err};

const SUITE: &str = "errors";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, empty_key_is_rejected_before_io),
        check!(SUITE, key_over_1024_bytes_is_rejected_before_io),
        check!(SUITE, key_with_control_characters_is_rejected_before_io),
        check!(SUITE, key_with_a_leading_slash_is_rejected_before_io),
        check!(SUITE, key_with_an_empty_segment_is_rejected_before_io),
        check!(SUITE, key_with_dot_segments_is_rejected_before_io),
        check!(SUITE, key_with_reserved_segments_is_rejected_before_io),
        check!(SUITE, key_of_exactly_1024_bytes_is_stored),
        check!(SUITE, prefix_with_a_leading_slash_is_invalid_argument),
        check!(SUITE, definite_errors_are_not_transient, [ConditionalPut]),
    ]
}

/// Tries every operation with each invalid key and asserts
/// [`Error::InvalidKey`] with no call reaching the backend and nothing stored.
async fn rejected_before_io(b: Arc<dyn Backend>, keys: &[&str]) -> CheckResult {
    let spy = Spy::new(Arc::clone(&b));
    for k in keys {
        expect_err!(spy.put_bytes(*k, "x").await, Error::InvalidKey { .. });
        expect_err!(spy.get_bytes(*k).await, Error::InvalidKey { .. });
        expect_err!(spy.exists(*k).await, Error::InvalidKey { .. });
    }
    let calls = spy.calls();
    ensure!(
        calls.is_empty(),
        "invalid keys reached the backend: {calls:?}"
    );
    let page = b.list(&ListOptions::default()).await?;
    ensure!(
        page.objects.is_empty(),
        "invalid keys stored objects: {:?}",
        page.objects
    );
    Ok(())
}

async fn empty_key_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    rejected_before_io(b, &[""]).await
}

async fn key_over_1024_bytes_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    let ascii = "k".repeat(MAX_KEY_BYTES + 1);
    let multibyte = "é".repeat(MAX_KEY_BYTES / 2 + 1);
    rejected_before_io(b, &[&ascii, &multibyte]).await
}

async fn key_with_control_characters_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    rejected_before_io(
        b,
        &["a\0b", "line\nbreak", "tab\there", "del\u{7f}", "c1\u{85}"],
    )
    .await
}

async fn key_with_a_leading_slash_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    rejected_before_io(b, &["/a", "/"]).await
}

async fn key_with_an_empty_segment_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    rejected_before_io(b, &["a//b", "a/", "a/b/"]).await
}

async fn key_with_dot_segments_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    rejected_before_io(b, &[".", "..", "a/./b", "a/../../etc/passwd", "../escape"]).await
}

async fn key_with_reserved_segments_is_rejected_before_io(b: Arc<dyn Backend>) -> CheckResult {
    rejected_before_io(b, &[".staging", "a/.staging/t", ".txn/t1", "a/.txn"]).await
}

async fn key_of_exactly_1024_bytes_is_stored(b: Arc<dyn Backend>) -> CheckResult {
    let long = format!("{}/{}", "d".repeat(500), "f".repeat(MAX_KEY_BYTES - 501));
    b.put_bytes(&long, "x").await?;
    ensure!(b.exists(&long).await?, "a 1024-byte key was not stored");
    let page = b.list(&ListOptions::prefix("ddd")).await?;
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
