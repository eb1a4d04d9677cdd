//! Suite `conditional`: conditional reads, `get` and `head_if` with
//! `if_none_match`, `if_modified_since` and `if_unmodified_since` (RFC 9110
//! sections 13.1 and 13.2.2), as pollers of state and queues use them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use storage_core::{Backend, BackendExt, ByteRange, ETag, Error, GetOptions, ObjectMeta};

use crate::support::key;
use crate::{Check, CheckResult, check, ensure_eq, expect_err};

const SUITE: &str = "conditional";

/// An hour: far enough from the write that clock skew between client and
/// server does not matter.
const HOUR: Duration = Duration::from_secs(3600);

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, if_none_match_with_the_current_etag_is_not_modified),
        check!(SUITE, if_none_match_with_another_etag_reads_the_object),
        check!(SUITE, if_none_match_after_a_rewrite_reads_the_new_version),
        check!(SUITE, if_modified_since_before_the_write_reads_the_object),
        check!(
            SUITE,
            if_modified_since_the_last_modification_is_not_modified
        ),
        check!(
            SUITE,
            if_unmodified_since_before_the_write_is_modified_since
        ),
        check!(SUITE, if_unmodified_since_after_the_write_reads_the_object),
        check!(SUITE, if_match_overrides_if_unmodified_since),
        check!(SUITE, if_none_match_overrides_if_modified_since),
        check!(
            SUITE,
            a_holding_if_match_with_a_matching_if_none_match_is_not_modified
        ),
        check!(SUITE, conditions_on_a_missing_key_are_not_found),
        check!(SUITE, a_range_read_honours_if_none_match),
        check!(SUITE, a_suffix_range_read_honours_if_none_match),
        check!(SUITE, a_suffix_range_read_honours_if_unmodified_since),
        check!(SUITE, head_if_with_the_current_etag_is_not_modified),
        check!(SUITE, head_if_with_another_etag_returns_the_metadata),
        check!(SUITE, head_if_honours_if_unmodified_since),
    ]
}

const DATA: &str = "state v1";

async fn written(b: &Arc<dyn Backend>) -> Result<ObjectMeta, Error> {
    b.put_bytes("k", DATA).await?;
    // The server's own time of the write, as a reader sees it.
    b.head(&key("k")?).await
}

async fn read(b: &Arc<dyn Backend>, options: GetOptions) -> Result<Bytes, Error> {
    b.get(&key("k")?, options).await?.bytes().await
}

fn none_match(etag: ETag) -> GetOptions {
    GetOptions {
        if_none_match: Some(etag),
        ..GetOptions::default()
    }
}

async fn if_none_match_with_the_current_etag_is_not_modified(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    expect_err!(
        read(&b, none_match(meta.etag)).await,
        Error::NotModified { .. }
    );
    Ok(())
}

async fn if_none_match_with_another_etag_reads_the_object(b: Arc<dyn Backend>) -> CheckResult {
    written(&b).await?;
    let got = read(&b, none_match(ETag::new("not-this-version"))).await?;
    ensure_eq!(
        got,
        Bytes::from(DATA),
        "read with a non-matching If-None-Match"
    );
    Ok(())
}

async fn if_none_match_after_a_rewrite_reads_the_new_version(b: Arc<dyn Backend>) -> CheckResult {
    let old = written(&b).await?;
    b.put_bytes("k", "state v2").await?;
    let got = read(&b, none_match(old.etag)).await?;
    ensure_eq!(got, Bytes::from("state v2"), "poll after a change");
    Ok(())
}

async fn if_modified_since_before_the_write_reads_the_object(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        if_modified_since: Some(meta.last_modified - HOUR),
        ..GetOptions::default()
    };
    ensure_eq!(
        read(&b, options).await?,
        Bytes::from(DATA),
        "modified since an hour before"
    );
    Ok(())
}

async fn if_modified_since_the_last_modification_is_not_modified(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        if_modified_since: Some(meta.last_modified),
        ..GetOptions::default()
    };
    expect_err!(read(&b, options).await, Error::NotModified { .. });
    Ok(())
}

async fn if_unmodified_since_before_the_write_is_modified_since(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        if_unmodified_since: Some(meta.last_modified - HOUR),
        ..GetOptions::default()
    };
    expect_err!(read(&b, options).await, Error::ModifiedSince { .. });
    Ok(())
}

async fn if_unmodified_since_after_the_write_reads_the_object(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        if_unmodified_since: Some(meta.last_modified + HOUR),
        ..GetOptions::default()
    };
    ensure_eq!(
        read(&b, options).await?,
        Bytes::from(DATA),
        "unmodified since an hour after"
    );
    Ok(())
}

async fn if_match_overrides_if_unmodified_since(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    // RFC 9110 section 13.2.2: If-Unmodified-Since is ignored with If-Match.
    let options = GetOptions {
        if_match: Some(meta.etag),
        if_unmodified_since: Some(meta.last_modified - HOUR),
        ..GetOptions::default()
    };
    ensure_eq!(
        read(&b, options).await?,
        Bytes::from(DATA),
        "If-Match holds"
    );
    Ok(())
}

async fn if_none_match_overrides_if_modified_since(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    // RFC 9110 section 13.2.2: If-Modified-Since is ignored with
    // If-None-Match.
    let options = GetOptions {
        if_none_match: Some(ETag::new("not-this-version")),
        if_modified_since: Some(meta.last_modified + HOUR),
        ..GetOptions::default()
    };
    ensure_eq!(
        read(&b, options).await?,
        Bytes::from(DATA),
        "If-None-Match holds"
    );
    Ok(())
}

async fn a_holding_if_match_with_a_matching_if_none_match_is_not_modified(
    b: Arc<dyn Backend>,
) -> CheckResult {
    let meta = written(&b).await?;
    // RFC 9110 section 13.2.2: If-Match holds, then If-None-Match decides.
    let options = GetOptions {
        if_match: Some(meta.etag.clone()),
        ..none_match(meta.etag)
    };
    expect_err!(read(&b, options).await, Error::NotModified { .. });
    Ok(())
}

async fn conditions_on_a_missing_key_are_not_found(b: Arc<dyn Backend>) -> CheckResult {
    let options = GetOptions {
        if_none_match: Some(ETag::new("any")),
        if_unmodified_since: Some(SystemTime::now()),
        ..GetOptions::default()
    };
    expect_err!(read(&b, options.clone()).await, Error::NotFound { .. });
    expect_err!(
        b.head_if(&key("k")?, &options).await,
        Error::NotFound { .. }
    );
    Ok(())
}

async fn a_range_read_honours_if_none_match(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        range: Some(ByteRange::from(0..5)),
        ..none_match(meta.etag)
    };
    expect_err!(read(&b, options).await, Error::NotModified { .. });
    Ok(())
}

/// A suffix range with conditions: Azure, without suffix ranges, reads the
/// size first and pins the read, so the conditions must still be applied.
async fn a_suffix_range_read_honours_if_none_match(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        range: Some(ByteRange::suffix(3)),
        ..none_match(meta.etag)
    };
    expect_err!(read(&b, options).await, Error::NotModified { .. });
    Ok(())
}

async fn a_suffix_range_read_honours_if_unmodified_since(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let failing = GetOptions {
        range: Some(ByteRange::suffix(3)),
        if_unmodified_since: Some(meta.last_modified - HOUR),
        ..GetOptions::default()
    };
    expect_err!(read(&b, failing).await, Error::ModifiedSince { .. });
    let holding = GetOptions {
        range: Some(ByteRange::suffix(3)),
        if_unmodified_since: Some(meta.last_modified + HOUR),
        ..GetOptions::default()
    };
    ensure_eq!(
        read(&b, holding).await?,
        Bytes::from(&DATA[DATA.len() - 3..]),
        "the last 3 bytes under a holding If-Unmodified-Since"
    );
    Ok(())
}

async fn head_if_with_the_current_etag_is_not_modified(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    expect_err!(
        b.head_if(&key("k")?, &none_match(meta.etag)).await,
        Error::NotModified { .. }
    );
    Ok(())
}

async fn head_if_with_another_etag_returns_the_metadata(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let got = b
        .head_if(&key("k")?, &none_match(ETag::new("not-this-version")))
        .await?;
    ensure_eq!(got.etag, meta.etag, "ETag from a conditional head");
    ensure_eq!(got.size, DATA.len() as u64, "size from a conditional head");
    Ok(())
}

async fn head_if_honours_if_unmodified_since(b: Arc<dyn Backend>) -> CheckResult {
    let meta = written(&b).await?;
    let options = GetOptions {
        if_unmodified_since: Some(meta.last_modified - HOUR),
        ..GetOptions::default()
    };
    expect_err!(
        b.head_if(&key("k")?, &options).await,
        Error::ModifiedSince { .. }
    );
    Ok(())
}
