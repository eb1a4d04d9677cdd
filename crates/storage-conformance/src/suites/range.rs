//! Suite `range`: byte ranges and their errors (DESIGN section 2, rule 5;
//! RFC 9110 section 14).

use std::sync::Arc;

use bytes::Bytes;
use storage_core::{Backend, BackendExt, ByteRange, Error, GetOptions};

use crate::support::{key, pattern};
use crate::{Check, CheckResult, check, ensure_eq, expect_err};

const SUITE: &str = "range";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, bounded_range_returns_exactly_those_bytes),
        check!(SUITE, open_range_reads_to_the_end),
        check!(SUITE, suffix_range_returns_the_last_bytes),
        check!(SUITE, end_past_the_size_is_clamped),
        check!(SUITE, suffix_longer_than_the_object_returns_it_whole),
        check!(SUITE, start_at_the_size_is_invalid_range),
        check!(SUITE, start_past_the_size_is_invalid_range),
        check!(SUITE, every_range_on_an_empty_object_is_invalid),
        check!(SUITE, empty_bounded_range_is_invalid),
        check!(SUITE, zero_length_suffix_is_invalid),
        check!(SUITE, result_reports_the_served_range_and_full_size),
        check!(SUITE, range_of_a_missing_key_is_not_found),
        check!(SUITE, range_inside_a_large_object_is_exact),
    ]
}

const DATA: &str = "0123456789";

async fn bounded_range_returns_exactly_those_bytes(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    ensure_eq!(
        b.get_range("k", 2..5).await?,
        Bytes::from("234"),
        "bytes 2..5"
    );
    Ok(())
}

async fn open_range_reads_to_the_end(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    ensure_eq!(
        b.get_range("k", 7..).await?,
        Bytes::from("789"),
        "bytes 7.."
    );
    Ok(())
}

async fn suffix_range_returns_the_last_bytes(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    ensure_eq!(
        b.get_range("k", ByteRange::suffix(3)).await?,
        Bytes::from("789"),
        "last 3 bytes"
    );
    Ok(())
}

async fn end_past_the_size_is_clamped(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    ensure_eq!(
        b.get_range("k", 8..100).await?,
        Bytes::from("89"),
        "bytes 8..100 of 10"
    );
    Ok(())
}

async fn suffix_longer_than_the_object_returns_it_whole(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    ensure_eq!(
        b.get_range("k", ByteRange::suffix(50)).await?,
        Bytes::from(DATA),
        "last 50 bytes of 10"
    );
    Ok(())
}

async fn start_at_the_size_is_invalid_range(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    expect_err!(
        b.get_range("k", 10..12).await,
        Error::InvalidRange { size: 10, .. }
    );
    Ok(())
}

async fn start_past_the_size_is_invalid_range(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    expect_err!(b.get_range("k", 20..).await, Error::InvalidRange { .. });
    Ok(())
}

async fn every_range_on_an_empty_object_is_invalid(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", Bytes::new()).await?;
    expect_err!(b.get_range("k", 0..1).await, Error::InvalidRange { .. });
    expect_err!(b.get_range("k", 0..).await, Error::InvalidRange { .. });
    expect_err!(
        b.get_range("k", ByteRange::suffix(1)).await,
        Error::InvalidRange { .. }
    );
    Ok(())
}

async fn empty_bounded_range_is_invalid(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    expect_err!(b.get_range("k", 5..5).await, Error::InvalidRange { .. });
    Ok(())
}

async fn zero_length_suffix_is_invalid(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    expect_err!(
        b.get_range("k", ByteRange::suffix(0)).await,
        Error::InvalidRange { .. }
    );
    Ok(())
}

async fn result_reports_the_served_range_and_full_size(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    let got = b
        .get(&key("k")?, GetOptions::range(ByteRange::suffix(4)))
        .await?;
    ensure_eq!(got.range, 6..10, "served range of the last 4 bytes");
    ensure_eq!(got.meta.size, 10, "full size reported with a range");
    Ok(())
}

async fn range_of_a_missing_key_is_not_found(b: Arc<dyn Backend>) -> CheckResult {
    expect_err!(b.get_range("missing", 0..1).await, Error::NotFound { .. });
    Ok(())
}

async fn range_inside_a_large_object_is_exact(b: Arc<dyn Backend>) -> CheckResult {
    let data = pattern(3 * 1024 * 1024 + 17, 11);
    b.put_bytes("big", data.clone()).await?;
    let start = 1024 * 1024 - 5;
    let end = 3 * 1024 * 1024 + 3;
    let got = b.get_range("big", start as u64..end as u64).await?;
    ensure_eq!(got.len(), end - start, "length of a range spanning chunks");
    crate::ensure!(
        got == data.slice(start..end),
        "a range spanning chunks returned other bytes"
    );
    Ok(())
}
