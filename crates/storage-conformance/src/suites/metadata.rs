//! Suite `metadata`: content type and user metadata (DESIGN section 2, rule 8).

use std::sync::Arc;

use storage_core::{Backend, BackendExt, Body, Error, GetOptions, MAX_METADATA_BYTES, PutOptions};

use crate::support::{key, metadata, put_with_metadata};
use crate::{Check, CheckResult, check, ensure, ensure_eq, expect_err};

const SUITE: &str = "metadata";

/// The checks of this suite.
pub fn checks() -> Vec<Check> {
    vec![
        check!(SUITE, user_metadata_round_trips_through_head),
        check!(SUITE, user_metadata_comes_back_with_get),
        check!(SUITE, content_type_round_trips),
        check!(SUITE, metadata_of_exactly_2_kib_is_accepted),
        check!(SUITE, metadata_over_2_kib_is_rejected_and_nothing_written),
        check!(SUITE, upper_case_metadata_name_is_rejected),
        check!(SUITE, non_ascii_metadata_value_is_rejected),
        check!(SUITE, overwrite_replaces_metadata_entirely),
    ]
}

const PAIRS: [(&str, &str); 3] = [
    ("owner", "team-storage"),
    ("schema_version", "7"),
    ("x-trace", "a b=c;d"),
];

async fn user_metadata_round_trips_through_head(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    put_with_metadata(&*b, &k, "x", &PAIRS).await?;
    ensure_eq!(
        b.head(&k).await?.metadata,
        metadata(&PAIRS),
        "metadata from head"
    );
    Ok(())
}

async fn user_metadata_comes_back_with_get(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    put_with_metadata(&*b, &k, "x", &PAIRS).await?;
    let got = b.get(&k, GetOptions::default()).await?;
    ensure_eq!(got.meta.metadata, metadata(&PAIRS), "metadata from get");
    Ok(())
}

async fn content_type_round_trips(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let options = PutOptions {
        content_type: Some("application/vnd.apache.parquet".into()),
        ..Default::default()
    };
    b.put(&k, Body::from("PAR1"), options).await?;
    ensure_eq!(
        b.head(&k).await?.content_type.as_deref(),
        Some("application/vnd.apache.parquet"),
        "content type from head"
    );
    Ok(())
}

fn sized_metadata(total: usize) -> storage_core::Metadata {
    let name = "blob";
    storage_core::Metadata::from([(name.to_owned(), "v".repeat(total - name.len()))])
}

async fn metadata_of_exactly_2_kib_is_accepted(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let options = PutOptions {
        metadata: sized_metadata(MAX_METADATA_BYTES),
        ..Default::default()
    };
    b.put(&k, Body::from("x"), options.clone()).await?;
    ensure_eq!(
        b.head(&k).await?.metadata,
        options.metadata,
        "2 KiB of metadata from head"
    );
    Ok(())
}

async fn metadata_over_2_kib_is_rejected_and_nothing_written(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    let options = PutOptions {
        metadata: sized_metadata(MAX_METADATA_BYTES + 1),
        ..Default::default()
    };
    expect_err!(
        b.put(&k, Body::from("x"), options).await,
        Error::InvalidArgument { .. }
    );
    ensure!(
        !b.exists(&k).await?,
        "a put with too much metadata wrote an object"
    );
    Ok(())
}

async fn upper_case_metadata_name_is_rejected(b: Arc<dyn Backend>) -> CheckResult {
    let options = PutOptions {
        metadata: metadata(&[("Owner", "x")]),
        ..Default::default()
    };
    expect_err!(
        b.put(&key("k")?, Body::from("x"), options).await,
        Error::InvalidArgument { .. }
    );
    Ok(())
}

async fn non_ascii_metadata_value_is_rejected(b: Arc<dyn Backend>) -> CheckResult {
    let options = PutOptions {
        metadata: metadata(&[("city", "Zürich")]),
        ..Default::default()
    };
    expect_err!(
        b.put(&key("k")?, Body::from("x"), options).await,
        Error::InvalidArgument { .. }
    );
    Ok(())
}

async fn overwrite_replaces_metadata_entirely(b: Arc<dyn Backend>) -> CheckResult {
    let k = key("k")?;
    put_with_metadata(&*b, &k, "v1", &[("a", "1"), ("b", "2")]).await?;
    put_with_metadata(&*b, &k, "v2", &[("c", "3")]).await?;
    ensure_eq!(
        b.head(&k).await?.metadata,
        metadata(&[("c", "3")]),
        "metadata after overwrite"
    );
    Ok(())
}
