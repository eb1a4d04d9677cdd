//! The suite catches broken backends: each mutant here is a `MemoryBackend`
//! wrapper that breaks one rule of the contract, and the checks that claim
//! that rule must fail on it, while the plain `MemoryBackend` passes them.
//! One table, [`CAUGHT_BY`], drives both directions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use storage_conformance::{BackendReport, Filter, FnFactory, Status, run, suites};
use storage_core::{
    Backend, Body, Capabilities, ChangeStream, DeleteOptions, ETag, Error, GetOptions, GetResult,
    Key, ListOptions, ListPage, MemoryBackend, Metadata, ObjectMeta, PutMode, PutOptions, Result,
};

/// Which rule the wrapper breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    /// Every put overwrites, whatever its mode.
    IgnoresPreconditions,
    /// A delete ignores its `if_match`.
    IgnoresConditionalDelete,
    /// A get ignores its `if_match`.
    IgnoresGetIfMatch,
    /// ETags are derived from the content, so the same bytes get the same
    /// ETag again (after an overwrite, or a delete and re-create).
    ContentDerivedEtags,
    /// Listings come back in reverse order.
    ReversedListing,
    /// Every page after the first leaves out its first key.
    PagesSkipKeys,
    /// Every page after the first starts again with the previous page's
    /// last key.
    PagesRepeatKeys,
    /// Listings ignore the prefix.
    IgnoresPrefix,
    /// Listings ignore `start_after`.
    IgnoresStartAfter,
    /// Listings ignore the delimiter.
    IgnoresDelimiter,
    /// Ranges are ignored: every get returns the whole object.
    IgnoresRanges,
    /// A missing key is reported as a transient backend error (a 404 taken
    /// for a 503) instead of `NotFound`.
    WrongErrorKind,
    /// An overwrite deletes the old version before it reads the body, so
    /// readers find no object while the body is sent.
    NonAtomicOverwrite,
    /// A copy overwrites its destination, whatever its mode.
    CopyIgnoresMode,
    /// Drops user metadata.
    DropsMetadata,
    /// Cuts every metadata value to 1 KiB (as a header limit would) and
    /// writes, instead of storing it whole or rejecting it.
    TruncatesMetadata,
    /// The change feed drops its second change.
    DropsAChange,
    /// The change feed swaps each pair of changes.
    ReordersChanges,
    /// Writes a prefix of the body before failing, leaving a partial object.
    TornWrites,
    /// A put whose body fails deletes the old version.
    FailedOverwriteDeletes,
    /// `last_modified` is an hour early (a local time read as UTC).
    SkewedLastModified,
    /// `last_modified` stays the key's first version's across overwrites.
    StaleLastModified,
    /// Claims server-side copies, but copies through the client.
    ClaimsServerSideCopy,
}

/// Each mutant with the checks (suite, name) that must catch it.
const CAUGHT_BY: &[(Bug, &[(&str, &str)])] = &[
    (
        Bug::IgnoresPreconditions,
        &[
            ("cas", "if_not_exists_has_no_side_effects"),
            ("cas", "if_match_with_a_stale_etag_is_precondition_failed"),
            ("cas", "if_match_on_a_missing_key_is_precondition_failed"),
            (
                "concurrency",
                "cas_counter_16_tasks_100_increments_ends_at_1600",
            ),
            (
                "concurrency",
                "concurrent_if_not_exists_has_exactly_one_winner",
            ),
        ],
    ),
    (
        Bug::IgnoresConditionalDelete,
        &[
            ("cas", "delete_if_match_with_a_stale_etag_keeps_the_object"),
            (
                "cas",
                "delete_if_match_on_a_missing_key_is_precondition_failed",
            ),
        ],
    ),
    (
        Bug::IgnoresGetIfMatch,
        &[(
            "cas",
            "get_if_match_with_a_stale_etag_is_precondition_failed",
        )],
    ),
    (
        Bug::ContentDerivedEtags,
        &[
            ("core", "overwrite_gives_a_new_etag"),
            ("cas", "etag_is_not_reused_after_delete_and_recreate"),
        ],
    ),
    (
        Bug::ReversedListing,
        &[
            ("list", "keys_come_back_in_byte_order"),
            ("list", "pages_of_1_2_and_1000_return_the_same_keys"),
        ],
    ),
    (
        Bug::PagesSkipKeys,
        &[
            ("list", "pages_of_1_2_and_1000_return_the_same_keys"),
            ("list", "delimiter_pages_return_each_prefix_once"),
            ("list", "list_all_streams_every_key"),
        ],
    ),
    (
        Bug::PagesRepeatKeys,
        &[
            ("list", "pages_of_1_2_and_1000_return_the_same_keys"),
            ("list", "delimiter_pages_return_each_prefix_once"),
            ("list", "list_all_streams_every_key"),
        ],
    ),
    (
        Bug::IgnoresPrefix,
        &[
            ("list", "prefix_selects_only_matching_keys"),
            ("list", "prefix_without_matches_is_empty"),
        ],
    ),
    (
        Bug::IgnoresStartAfter,
        &[
            ("list", "start_after_is_exclusive"),
            ("list", "start_after_with_prefix"),
        ],
    ),
    (
        Bug::IgnoresDelimiter,
        &[
            ("list", "delimiter_groups_common_prefixes"),
            ("list", "delimiter_under_a_prefix_groups_the_next_level"),
            ("list", "delimiter_pages_return_each_prefix_once"),
        ],
    ),
    (
        Bug::IgnoresRanges,
        &[
            ("range", "bounded_range_returns_exactly_those_bytes"),
            ("range", "start_past_the_size_is_invalid_range"),
        ],
    ),
    (
        Bug::WrongErrorKind,
        &[
            ("core", "get_of_a_missing_key_is_not_found"),
            ("core", "head_of_a_missing_key_is_not_found"),
            ("core", "copy_of_a_missing_source_is_not_found"),
            ("range", "range_of_a_missing_key_is_not_found"),
        ],
    ),
    (
        Bug::NonAtomicOverwrite,
        &[
            (
                "core",
                "overwrite_in_progress_leaves_the_old_version_readable",
            ),
            ("core", "failed_overwrite_keeps_the_old_version"),
        ],
    ),
    (
        Bug::CopyIgnoresMode,
        &[
            ("core", "copy_if_not_exists_keeps_the_destination"),
            ("cas", "copy_if_match_with_a_stale_destination_etag_fails"),
        ],
    ),
    (
        Bug::DropsMetadata,
        &[
            ("metadata", "user_metadata_round_trips_through_head"),
            ("metadata", "user_metadata_comes_back_with_get"),
        ],
    ),
    (
        Bug::TruncatesMetadata,
        &[
            ("metadata", "metadata_of_exactly_2_kib_is_accepted"),
            (
                "metadata",
                "metadata_over_2_kib_is_rejected_and_nothing_written",
            ),
        ],
    ),
    (
        Bug::DropsAChange,
        &[("watch", "puts_and_deletes_stream_in_commit_order")],
    ),
    (
        Bug::ReordersChanges,
        &[("watch", "puts_and_deletes_stream_in_commit_order")],
    ),
    (
        Bug::TornWrites,
        &[
            ("core", "failed_body_stream_writes_nothing"),
            ("core", "failed_overwrite_keeps_the_old_version"),
        ],
    ),
    (
        Bug::FailedOverwriteDeletes,
        &[("core", "failed_overwrite_keeps_the_old_version")],
    ),
    (
        Bug::SkewedLastModified,
        &[(
            "core",
            "last_modified_is_within_the_put_and_never_goes_backwards",
        )],
    ),
    (
        Bug::StaleLastModified,
        &[(
            "core",
            "last_modified_is_within_the_put_and_never_goes_backwards",
        )],
    ),
    (
        Bug::ClaimsServerSideCopy,
        &[(
            "core",
            "server_side_copy_moves_no_content_through_the_client",
        )],
    ),
];

/// How far [`Bug::SkewedLastModified`] moves `last_modified`.
const HOUR: Duration = Duration::from_secs(3600);

/// What [`Bug::TruncatesMetadata`] keeps of each metadata value, in bytes.
const KEPT_METADATA_BYTES: usize = 1024;

/// Marks the continuation tokens of [`Bug::PagesRepeatKeys`].
const REPEAT: &str = "repeat:";

#[derive(Debug)]
struct Broken {
    inner: MemoryBackend,
    bug: Bug,
    /// Under [`Bug::ContentDerivedEtags`]: the ETag shown for each inner one.
    shown_etags: Mutex<HashMap<ETag, ETag>>,
    /// Under [`Bug::StaleLastModified`]: the `last_modified` first shown for
    /// each key since it was created.
    first_modified: Mutex<HashMap<Key, SystemTime>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An ETag that depends only on the content, as S3's MD5 does.
fn content_etag(data: &[u8]) -> ETag {
    ETag::new(format!(
        "sha256-{}",
        hex::encode(storage_conformance::support::sha256(data))
    ))
}

fn truncate_values(metadata: &mut Metadata) {
    for value in metadata.values_mut() {
        if value.is_char_boundary(KEPT_METADATA_BYTES) {
            value.truncate(KEPT_METADATA_BYTES);
        }
    }
}

impl Broken {
    fn new(bug: Bug) -> Self {
        Broken {
            inner: MemoryBackend::new(),
            bug,
            shown_etags: Mutex::default(),
            first_modified: Mutex::default(),
        }
    }

    /// The metadata a client of the mutant sees.
    fn shown(&self, mut meta: ObjectMeta) -> ObjectMeta {
        match self.bug {
            Bug::ContentDerivedEtags => {
                if let Some(shown) = lock(&self.shown_etags).get(&meta.etag) {
                    meta.etag = shown.clone();
                }
            }
            Bug::SkewedLastModified => {
                meta.last_modified = meta.last_modified.checked_sub(HOUR).unwrap_or(UNIX_EPOCH);
            }
            Bug::StaleLastModified => {
                meta.last_modified = *lock(&self.first_modified)
                    .entry(meta.key.clone())
                    .or_insert(meta.last_modified);
            }
            _ => {}
        }
        meta
    }

    /// The inner ETag of the current version of `key` if the client's
    /// `shown` ETag names it; otherwise `shown`, which matches no version.
    async fn inner_etag(&self, key: &Key, shown: ETag) -> ETag {
        if self.bug != Bug::ContentDerivedEtags {
            return shown;
        }
        match self.inner.head(key).await {
            Ok(current) if self.shown(current.clone()).etag == shown => current.etag,
            _ => shown,
        }
    }

    fn misreport(&self, error: Error) -> Error {
        match (self.bug, error) {
            (Bug::WrongErrorKind, Error::NotFound { key }) => Error::Backend {
                transient: true,
                message: format!("service unavailable reading {key}"),
                source: None,
            },
            (_, error) => error,
        }
    }

    async fn put_torn(&self, key: &Key, body: Body, options: PutOptions) -> Result<ObjectMeta> {
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
        self.inner.put(key, Body::from(written), options).await
    }

    async fn put_with_content_etag(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let data = body.into_bytes().await?;
        let shown = content_etag(&data);
        let meta = self.inner.put(key, Body::from(data), options).await?;
        lock(&self.shown_etags).insert(meta.etag.clone(), shown);
        Ok(self.shown(meta))
    }
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
        if let PutMode::IfMatch(shown) = options.mode {
            options.mode = PutMode::IfMatch(self.inner_etag(key, shown).await);
        }
        let body = match self.bug {
            Bug::IgnoresPreconditions => {
                options.mode = PutMode::Overwrite;
                body
            }
            Bug::DropsMetadata => {
                options.metadata.clear();
                body
            }
            Bug::TruncatesMetadata => {
                truncate_values(&mut options.metadata);
                body
            }
            Bug::NonAtomicOverwrite if options.mode == PutMode::Overwrite => {
                self.inner.delete(key, DeleteOptions::default()).await?;
                body
            }
            Bug::FailedOverwriteDeletes => match body.into_bytes().await {
                Ok(data) => Body::from(data),
                Err(e) => {
                    self.inner.delete(key, DeleteOptions::default()).await?;
                    return Err(e);
                }
            },
            Bug::TornWrites => return self.put_torn(key, body, options).await,
            Bug::ContentDerivedEtags => {
                return self.put_with_content_etag(key, body, options).await;
            }
            _ => body,
        };
        let meta = self.inner.put(key, body, options).await?;
        Ok(self.shown(meta))
    }

    async fn get(&self, key: &Key, mut options: GetOptions) -> Result<GetResult> {
        // Like a real backend, wait between request and answer.
        tokio::task::yield_now().await;
        if let Some(shown) = options.if_match.take() {
            options.if_match = Some(self.inner_etag(key, shown).await);
        }
        match self.bug {
            Bug::IgnoresRanges => options.range = None,
            Bug::IgnoresGetIfMatch => options.if_match = None,
            _ => {}
        }
        let mut got = self
            .inner
            .get(key, options)
            .await
            .map_err(|e| self.misreport(e))?;
        got.meta = self.shown(got.meta);
        Ok(got)
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        match self.inner.head(key).await {
            Ok(meta) => Ok(self.shown(meta)),
            Err(e) => Err(self.misreport(e)),
        }
    }

    async fn delete(&self, key: &Key, mut options: DeleteOptions) -> Result<()> {
        if let Some(shown) = options.if_match.take() {
            options.if_match = Some(self.inner_etag(key, shown).await);
        }
        if self.bug == Bug::IgnoresConditionalDelete {
            options.if_match = None;
        }
        self.inner.delete(key, options).await?;
        lock(&self.first_modified).remove(key);
        Ok(())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let mut options = options.clone();
        let mut repeated = None;
        match self.bug {
            Bug::IgnoresPrefix => options.prefix.clear(),
            Bug::IgnoresStartAfter => options.start_after = None,
            Bug::IgnoresDelimiter => options.delimiter = false,
            Bug::PagesRepeatKeys => {
                let last = options
                    .continuation
                    .as_deref()
                    .and_then(|token| token.strip_prefix(REPEAT))
                    .map(str::to_owned);
                if let Some(last) = last {
                    repeated = Key::new(&last).ok();
                    options.continuation = Some(last);
                }
            }
            _ => {}
        }
        let mut page = self.inner.list(&options).await?;
        match self.bug {
            Bug::ReversedListing => page.objects.reverse(),
            Bug::PagesSkipKeys if options.continuation.is_some() && !page.objects.is_empty() => {
                page.objects.remove(0);
            }
            Bug::PagesRepeatKeys => {
                if let Some(key) = repeated
                    && let Ok(meta) = self.inner.head(&key).await
                {
                    page.objects.insert(0, meta);
                }
                page.continuation = page.continuation.map(|c| format!("{REPEAT}{c}"));
            }
            _ => {}
        }
        page.objects = page.objects.into_iter().map(|m| self.shown(m)).collect();
        Ok(page)
    }

    /// Every mutant copies through the client, as the bugs it carries must
    /// show in copies too; [`Bug::ClaimsServerSideCopy`] is the one whose
    /// only bug that is, since its capabilities (the memory backend's) claim
    /// server-side copies.
    async fn copy(&self, from: &Key, to: &Key, mode: PutMode) -> Result<ObjectMeta> {
        let mode = match self.bug {
            Bug::CopyIgnoresMode => PutMode::Overwrite,
            _ => mode,
        };
        storage_core::raw::copy_through_client(self, from, to, mode).await
    }

    async fn watch(&self, prefix: &str) -> Result<ChangeStream> {
        let changes = self.inner.watch(prefix).await?;
        Ok(match self.bug {
            Bug::DropsAChange => changes
                .enumerate()
                .filter_map(|(i, change)| async move { (i != 1).then_some(change) })
                .boxed(),
            Bug::ReordersChanges => changes
                .chunks(2)
                .flat_map(|mut pair| {
                    pair.reverse();
                    stream::iter(pair)
                })
                .boxed(),
            _ => changes,
        })
    }
}

/// The checks that must catch `bug`, from [`CAUGHT_BY`].
fn catching(bug: Bug) -> &'static [(&'static str, &'static str)] {
    CAUGHT_BY
        .iter()
        .find(|(b, _)| *b == bug)
        .map(|(_, checks)| *checks)
        .unwrap_or_else(|| panic!("{bug:?} has no entry in CAUGHT_BY"))
}

/// Runs `checks` on a fresh mutant with `bug` per check, or on a plain
/// `MemoryBackend` for `None`.
async fn report_for(bug: Option<Bug>, checks: &[(&str, &str)]) -> BackendReport {
    let factory = FnFactory::new("broken", move |_check| async move {
        Ok(match bug {
            Some(bug) => Arc::new(Broken::new(bug)) as Arc<dyn Backend>,
            None => Arc::new(MemoryBackend::new()) as Arc<dyn Backend>,
        })
    });
    let filter = Filter {
        suites: checks
            .iter()
            .map(|(suite, _)| (*suite).to_owned())
            .collect(),
        names: checks.iter().map(|(_, name)| (*name).to_owned()).collect(),
        ..Default::default()
    };
    run(&factory, &suites::all(), &filter).await
}

fn status(report: &BackendReport, suite: &str, name: &str) -> (Status, String) {
    report
        .checks
        .iter()
        .find(|c| c.suite == suite && c.name == name)
        .map(|c| (c.status, c.message.clone().unwrap_or_default()))
        .unwrap_or_else(|| panic!("no check named {suite}/{name}"))
}

/// Asserts that every check listed for `bug` fails on the mutant.
async fn assert_caught(bug: Bug) {
    let checks = catching(bug);
    let report = report_for(Some(bug), checks).await;
    for (suite, name) in checks {
        let (status, message) = status(&report, suite, name);
        assert_eq!(
            status,
            Status::Failed,
            "{suite}/{name} did not catch {bug:?}: {message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_false_server_side_copy_claim_is_caught() {
    assert_caught(Bug::ClaimsServerSideCopy).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_preconditions_are_caught() {
    assert_caught(Bug::IgnoresPreconditions).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_conditional_delete_is_caught() {
    assert_caught(Bug::IgnoresConditionalDelete).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_if_match_on_get_is_caught() {
    assert_caught(Bug::IgnoresGetIfMatch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn content_derived_etags_are_caught() {
    assert_caught(Bug::ContentDerivedEtags).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reversed_listing_is_caught() {
    assert_caught(Bug::ReversedListing).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_that_skip_keys_are_caught() {
    assert_caught(Bug::PagesSkipKeys).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_that_repeat_keys_are_caught() {
    assert_caught(Bug::PagesRepeatKeys).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_prefix_is_caught() {
    assert_caught(Bug::IgnoresPrefix).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_start_after_is_caught() {
    assert_caught(Bug::IgnoresStartAfter).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_delimiter_is_caught() {
    assert_caught(Bug::IgnoresDelimiter).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ignored_ranges_are_caught() {
    assert_caught(Bug::IgnoresRanges).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_error_kind_is_caught() {
    assert_caught(Bug::WrongErrorKind).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_atomic_overwrite_is_caught() {
    assert_caught(Bug::NonAtomicOverwrite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_ignoring_its_mode_is_caught() {
    assert_caught(Bug::CopyIgnoresMode).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_metadata_is_caught() {
    assert_caught(Bug::DropsMetadata).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_metadata_is_caught() {
    assert_caught(Bug::TruncatesMetadata).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_change_is_caught() {
    assert_caught(Bug::DropsAChange).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reordered_changes_are_caught() {
    assert_caught(Bug::ReordersChanges).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn torn_writes_are_caught() {
    assert_caught(Bug::TornWrites).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_overwrite_destroying_the_old_version_is_caught() {
    assert_caught(Bug::FailedOverwriteDeletes).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn skewed_last_modified_is_caught() {
    assert_caught(Bug::SkewedLastModified).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_last_modified_is_caught() {
    assert_caught(Bug::StaleLastModified).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_backend_passes_every_check_that_catches_a_mutant() {
    for (bug, checks) in CAUGHT_BY {
        let report = report_for(None, checks).await;
        for (suite, name) in *checks {
            let (status, message) = status(&report, suite, name);
            assert_eq!(
                status,
                Status::Passed,
                "{suite}/{name}, which catches {bug:?}, fails on MemoryBackend: {message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_backend_reports_the_bounded_memory_check_unsupported() {
    let report = report_for(
        None,
        &[("core", "large_object_streams_with_bounded_memory")],
    )
    .await;
    assert_eq!(
        status(&report, "core", "large_object_streams_with_bounded_memory").0,
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
