//! The suite catches broken backends: each wrapper here breaks one rule of
//! the contract, and the checks for that rule must fail.

use std::sync::Arc;

use async_trait::async_trait;
use futures::TryStreamExt;
use storage_conformance::{BackendReport, Filter, FnFactory, Status, run, suites};
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, GetOptions, GetResult, Key, ListOptions, ListPage,
    MemoryBackend, ObjectMeta, PutMode, PutOptions, Result,
};

/// Which rule the wrapper breaks.
#[derive(Debug, Clone, Copy)]
enum Bug {
    /// Every put overwrites, whatever its mode.
    IgnoresPreconditions,
    /// Listings come back in reverse order.
    ReversedListing,
    /// Ranges are ignored: every get returns the whole object.
    IgnoresRanges,
    /// Drops user metadata.
    DropsMetadata,
    /// Writes a prefix of the body before failing, leaving a partial object.
    TornWrites,
}

#[derive(Debug)]
struct Broken {
    inner: MemoryBackend,
    bug: Bug,
}

#[async_trait]
impl Backend for Broken {
    fn name(&self) -> &str {
        "broken"
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn put(&self, key: &Key, body: Body, mut options: PutOptions) -> Result<ObjectMeta> {
        match self.bug {
            Bug::IgnoresPreconditions => options.mode = PutMode::Overwrite,
            Bug::DropsMetadata => options.metadata.clear(),
            Bug::TornWrites => {
                let mut chunks = body.into_stream();
                let mut written = Vec::new();
                loop {
                    match chunks.try_next().await {
                        Ok(Some(chunk)) => written.extend_from_slice(&chunk),
                        Ok(None) => break,
                        Err(e) => {
                            self.inner.put(key, Body::from(written), options).await?;
                            return Err(e);
                        }
                    }
                }
                return self.inner.put(key, Body::from(written), options).await;
            }
            _ => {}
        }
        self.inner.put(key, body, options).await
    }

    async fn get(&self, key: &Key, mut options: GetOptions) -> Result<GetResult> {
        // Like a real backend, wait between request and answer.
        tokio::task::yield_now().await;
        if let Bug::IgnoresRanges = self.bug {
            options.range = None;
        }
        self.inner.get(key, options).await
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.inner.head(key).await
    }

    async fn delete(&self, key: &Key, options: DeleteOptions) -> Result<()> {
        self.inner.delete(key, options).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let mut page = self.inner.list(options).await?;
        if let Bug::ReversedListing = self.bug {
            page.objects.reverse();
        }
        Ok(page)
    }

    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        storage_core::copy_through_client(self, from, to, mode).await
    }
}

async fn report_for(bug: Bug, suite: &str) -> BackendReport {
    let factory = FnFactory::new("broken", move |_check| async move {
        Ok(Arc::new(Broken {
            inner: MemoryBackend::new(),
            bug,
        }) as Arc<dyn Backend>)
    });
    let filter = Filter {
        suites: vec![suite.to_owned()],
        ..Default::default()
    };
    run(&factory, &suites::all(), &filter).await
}

fn status(report: &BackendReport, name: &str) -> Status {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.status)
        .unwrap_or_else(|| panic!("no check named {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn ignoring_preconditions_fails_the_cas_checks() {
    let report = report_for(Bug::IgnoresPreconditions, "cas").await;
    assert_eq!(
        status(&report, "if_not_exists_has_no_side_effects"),
        Status::Failed
    );
    assert_eq!(
        status(&report, "if_match_with_a_stale_etag_is_precondition_failed"),
        Status::Failed
    );
    assert_eq!(
        status(&report, "if_match_on_a_missing_key_is_precondition_failed"),
        Status::Failed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ignoring_preconditions_fails_the_counter() {
    let report = report_for(Bug::IgnoresPreconditions, "concurrency").await;
    assert_eq!(
        status(&report, "cas_counter_16_tasks_100_increments_ends_at_1600"),
        Status::Failed
    );
    assert_eq!(
        status(&report, "concurrent_if_not_exists_has_exactly_one_winner"),
        Status::Failed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn reversed_listing_fails_the_order_checks() {
    let report = report_for(Bug::ReversedListing, "list").await;
    assert_eq!(
        status(&report, "keys_come_back_in_byte_order"),
        Status::Failed
    );
    assert_eq!(
        status(&report, "pages_of_1_2_and_1000_return_the_same_keys"),
        Status::Failed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ignoring_ranges_fails_the_range_checks() {
    let report = report_for(Bug::IgnoresRanges, "range").await;
    assert_eq!(
        status(&report, "bounded_range_returns_exactly_those_bytes"),
        Status::Failed
    );
    assert_eq!(
        status(&report, "start_past_the_size_is_invalid_range"),
        Status::Failed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_metadata_fails_the_metadata_checks() {
    let report = report_for(Bug::DropsMetadata, "metadata").await;
    assert_eq!(
        status(&report, "user_metadata_round_trips_through_head"),
        Status::Failed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_writes_fail_the_atomicity_check() {
    let report = report_for(Bug::TornWrites, "core").await;
    assert_eq!(
        status(&report, "failed_body_stream_writes_nothing"),
        Status::Failed
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_backend_reports_the_bounded_memory_check_unsupported() {
    let factory = FnFactory::new("memory", |_check| async {
        Ok(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>)
    });
    let filter = Filter {
        names: vec!["bounded_memory".into()],
        ..Default::default()
    };
    let report = run(&factory, &suites::all(), &filter).await;
    assert_eq!(
        status(&report, "large_object_streams_with_bounded_memory"),
        Status::Unsupported
    );
}

#[test]
fn the_suite_has_at_least_40_uniquely_named_checks() {
    let checks = suites::all();
    let mut names: Vec<(&str, &str)> = checks.iter().map(|c| (c.suite, c.name)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), checks.len(), "duplicate check names");
    assert!(checks.len() >= 40, "only {} checks", checks.len());
}
