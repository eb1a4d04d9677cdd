//! The contract suite against a real S3 server, a fresh bucket per check.
//! What a server cannot honour is declared, with the reason, and reported as
//! a limitation, never as a pass. Shared by the SeaweedFS and moto test
//! binaries (each runs alone, since one check measures this process's
//! memory).

use std::sync::Arc;

use async_trait::async_trait;

use super as common;
use storage_conformance::servers::RunningServer;
use storage_conformance::{BackendFactory, Check, Filter, assert_no_failures, run, suites};
use storage_core::Backend;

/// A fresh bucket per check (no prefix, so 1,024-byte keys fit).
pub struct S3Factory {
    server: RunningServer,
    buckets: std::sync::atomic::AtomicUsize,
    limitations: fn(&Check) -> Option<&'static str>,
}

#[async_trait]
impl BackendFactory for S3Factory {
    fn name(&self) -> &str {
        "s3"
    }

    fn server(&self) -> Option<String> {
        Some(format!("{} {}", self.server.name, self.server.version))
    }

    async fn create(&self, _check: &str) -> Result<Arc<dyn Backend>, String> {
        let n = self
            .buckets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bucket = format!("check-{n:03}");
        Ok(Arc::new(common::create_bucket(&self.server, &bucket).await))
    }

    fn limitation(&self, check: &Check) -> Option<String> {
        (self.limitations)(check).map(|r| format!("{}: {r}", self.server.name))
    }
}

/// S3 itself (AWS and every compatible server): the ETag of a single-part
/// upload is the MD5 of its content, so the same bytes written again get
/// the same ETag.
fn s3_limitations(check: &Check) -> Option<&'static str> {
    match (check.suite, check.name) {
        ("core", "overwrite_gives_a_new_etag")
        | ("cas", "etag_is_not_reused_after_delete_and_recreate") => Some(
            "S3 ETags are the MD5 of the content, so writing the same bytes again gives the same ETag",
        ),
        _ => None,
    }
}

/// SeaweedFS lists keys below a `/` before keys with a byte below `/` at the
/// same position (`a/b` before `a-c`): byte order across `/` is wrong.
pub fn seaweedfs_limitations(check: &Check) -> Option<&'static str> {
    if let Some(reason) = s3_limitations(check) {
        return Some(reason);
    }
    match (check.suite, check.name) {
        ("errors", "key_of_exactly_1024_bytes_is_stored") => {
            Some("rejects a name with a segment longer than 255 bytes (KeyTooLongError)")
        }
        (
            "list",
            "keys_come_back_in_byte_order"
            | "pages_of_1_2_and_1000_return_the_same_keys"
            | "prefix_selects_only_matching_keys"
            | "start_after_is_exclusive"
            | "start_after_with_prefix"
            | "delimiter_groups_common_prefixes",
        ) => Some(
            "lists keys below '/' before keys with a smaller byte at the same position (directories first), so byte order across '/' is wrong",
        ),
        _ => None,
    }
}

/// moto: `If-Match` on a missing key answers 404 (mapped, no limitation);
/// conditions on CopyObject and CompleteMultipartUpload are ignored.
pub fn moto_limitations(check: &Check) -> Option<&'static str> {
    if let Some(reason) = s3_limitations(check) {
        return Some(reason);
    }
    match (check.suite, check.name) {
        ("core", "copy_if_not_exists_keeps_the_destination")
        | ("cas", "copy_if_match_with_a_stale_destination_etag_fails") => {
            Some("ignores If-None-Match and If-Match on CopyObject (answers 200)")
        }
        ("core", "sha256_of_the_content_is_recorded") => {
            Some("does not store x-amz-checksum-sha256, so HEAD cannot return it")
        }
        (
            "concurrency",
            "cas_counter_16_tasks_100_increments_ends_at_1600"
            | "concurrent_overwrites_leave_one_whole_version",
        ) => Some("answers HTTP 500 to concurrent writes of one key"),
        _ => None,
    }
}

/// Runs the suite on SeaweedFS.
#[allow(dead_code)]
pub async fn on_seaweedfs() {
    let server = common::start(common::Server::SeaweedFs);
    let factory = S3Factory {
        server,
        buckets: Default::default(),
        limitations: seaweedfs_limitations,
    };
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}

/// Runs the suite on moto.
#[allow(dead_code)]
pub async fn on_moto() {
    let server = common::start(common::Server::Moto);
    let factory = S3Factory {
        server,
        buckets: Default::default(),
        limitations: moto_limitations,
    };
    assert_no_failures(&run(&factory, &suites::all(), &Filter::default()).await);
}
