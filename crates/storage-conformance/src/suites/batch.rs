//! Suite `batch`: `get_ranges` (several ranges of one version, coalesced)
//! and `delete_many` (per-key results; S3 `DeleteObjects` batches).

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use storage_core::{Backend, BackendExt, Error, Key};

use crate::support::{key, pattern};
use crate::{Check, CheckResult, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "batch";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, get_ranges_returns_each_range_in_the_order_asked),
        check!(SUITE, get_ranges_far_apart_in_a_large_object_are_exact),
        check!(SUITE, get_ranges_gives_empty_bytes_for_an_empty_range),
        check!(SUITE, get_ranges_past_the_end_is_invalid_range),
        check!(SUITE, get_ranges_of_a_missing_key_is_not_found),
        check!(SUITE, delete_many_deletes_each_key_and_reports_each),
        check!(SUITE, delete_many_of_a_missing_key_succeeds),
        check!(SUITE, delete_many_leaves_other_keys),
        check!(
            SUITE,
            delete_many_of_more_than_a_thousand_keys_deletes_them_all
        ),
    ]
}

const DATA: &str = "0123456789abcdefghij";

async fn get_ranges_returns_each_range_in_the_order_asked(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    let ranges = [12..15, 0..3, 2..8, 19..20];
    let got = b.get_ranges(&key("k")?, &ranges).await?;
    let expected: Vec<Bytes> = ranges
        .iter()
        .map(|r| Bytes::from(&DATA[r.start as usize..r.end as usize]))
        .collect();
    ensure_eq!(got, expected, "unordered, overlapping ranges");
    Ok(())
}

async fn get_ranges_far_apart_in_a_large_object_are_exact(b: Arc<dyn Backend>) -> CheckResult {
    // More than the 1 MiB coalescing gap between ranges: several requests.
    let data = pattern(5 * 1024 * 1024 + 3, 21);
    b.put_bytes("big", data.clone()).await?;
    let ranges = [
        5 * 1024 * 1024 - 100..5 * 1024 * 1024 + 3,
        17..4113,
        2 * 1024 * 1024..2 * 1024 * 1024 + 70_000,
        4113..4200,
    ];
    let got = b.get_ranges(&key("big")?, &ranges).await?;
    ensure_eq!(got.len(), ranges.len(), "number of ranges returned");
    for (range, bytes) in ranges.iter().zip(&got) {
        ensure!(
            *bytes == data.slice(range.start as usize..range.end as usize),
            "range {range:?} returned other bytes"
        );
    }
    Ok(())
}

async fn get_ranges_gives_empty_bytes_for_an_empty_range(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    let got = b.get_ranges(&key("k")?, &[3..3, 0..2]).await?;
    ensure_eq!(
        got,
        vec![Bytes::new(), Bytes::from("01")],
        "an empty range and another"
    );
    Ok(())
}

async fn get_ranges_past_the_end_is_invalid_range(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("k", DATA).await?;
    expect_err!(
        b.get_ranges(&key("k")?, &[0..2, 18..21]).await,
        Error::InvalidRange { size: 20, .. }
    );
    Ok(())
}

async fn get_ranges_of_a_missing_key_is_not_found(b: Arc<dyn Backend>) -> CheckResult {
    expect_err!(
        b.get_ranges(&key("missing")?, &[0..1, 2..3]).await,
        Error::NotFound { .. }
    );
    Ok(())
}

/// Writes `names`, 16 at a time.
async fn put_all(b: &Arc<dyn Backend>, names: &[String]) -> CheckResult {
    stream::iter(names.to_vec())
        .map(|name| {
            let b = Arc::clone(b);
            async move { b.put_bytes(name.as_str(), "x").await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

fn keys(names: &[String]) -> Result<Vec<Key>, Error> {
    names.iter().map(|n| key(n)).collect()
}

async fn delete_many_deletes_each_key_and_reports_each(b: Arc<dyn Backend>) -> CheckResult {
    let names: Vec<String> = (0..5).map(|i| format!("d/{i}")).collect();
    put_all(&b, &names).await?;
    let results = b.delete_many(&keys(&names)?).await?;
    ensure_eq!(results.len(), names.len(), "one result per key");
    for (name, result) in names.iter().zip(results) {
        ensure!(result.is_ok(), "deleting {name}: {result:?}");
        expect_err!(b.head(&key(name)?).await, Error::NotFound { .. });
    }
    Ok(())
}

async fn delete_many_of_a_missing_key_succeeds(b: Arc<dyn Backend>) -> CheckResult {
    b.put_bytes("present", "x").await?;
    let results = b.delete_many(&[key("missing")?, key("present")?]).await?;
    ensure!(
        results.iter().all(Result::is_ok),
        "a missing key among others: {results:?}"
    );
    expect_err!(b.head(&key("present")?).await, Error::NotFound { .. });
    Ok(())
}

async fn delete_many_leaves_other_keys(b: Arc<dyn Backend>) -> CheckResult {
    let names: Vec<String> = ["a/1", "a/2", "a/3", "b/1"].map(String::from).to_vec();
    put_all(&b, &names).await?;
    let results = b.delete_many(&[key("a/1")?, key("a/3")?]).await?;
    ensure!(results.iter().all(Result::is_ok), "{results:?}");
    for gone in ["a/1", "a/3"] {
        expect_err!(b.head(&key(gone)?).await, Error::NotFound { .. });
    }
    for kept in ["a/2", "b/1"] {
        b.head(&key(kept)?).await?;
    }
    Ok(())
}

async fn delete_many_of_more_than_a_thousand_keys_deletes_them_all(
    b: Arc<dyn Backend>,
) -> CheckResult {
    // One more than S3's DeleteObjects ceiling: two requests.
    let names: Vec<String> = (0..1001).map(|i| format!("many/{i:04}")).collect();
    put_all(&b, &names).await?;
    let results = b.delete_many(&keys(&names)?).await?;
    ensure_eq!(results.len(), 1001, "one result per key");
    // Each key's own answer: success means gone. Only a transient failure
    // (a fault a retrying layer could not settle) may leave a key behind.
    let mut failed = Vec::new();
    for (name, result) in names.iter().zip(&results) {
        match result {
            Ok(()) => {}
            Err(e) if e.is_transient() => failed.push(name.clone()),
            Err(e) => return Err(crate::Failure(format!("deleting {name}: {e}"))),
        }
    }
    let left: Vec<String> = b
        .list(&storage_core::ListOptions::prefix("many/"))
        .await?
        .objects
        .into_iter()
        .map(|m| m.key.to_string())
        .collect();
    ensure!(
        left.iter().all(|k| failed.contains(k)),
        "keys reported deleted are still listed: {:?}",
        left.iter()
            .filter(|k| !failed.contains(k))
            .collect::<Vec<_>>()
    );
    // A retrying layer settles all but a rare few (1 % would mean it does
    // not work).
    ensure!(
        failed.len() < 10,
        "{} of 1001 keys failed transiently",
        failed.len()
    );
    Ok(())
}
