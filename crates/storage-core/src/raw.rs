//! Helpers for backend authors and the conformance suite, not for users of a
//! backend.
//!
//! - [`check_put_mode`], [`check_if_match`]: a put mode's or an `If-Match`'s
//!   verdict against the current ETag; [`unsupported`]: the error of a
//!   missing capability; [`copy_through_client`]: the default of
//!   `Backend::copy`, for backends that fall back to it;
//!   [`parse_content_range`]: an HTTP `Content-Range` header;
//! - [`ranges`]: the defaults of `Backend::get_ranges` and
//!   `Backend::delete_many`; [`conditional_read_failure`]: the verdict of
//!   a failed conditional read;
//! - `batch` (feature `batch`): `multipart/mixed` batches of requests and
//!   their answers (Azure Blob Batch, GCS JSON-API batch);
//! - [`integrity`], [`list`], [`timeout`]: verified streams, sorted pages,
//!   request time limits; [`url_options`]: a store URL's options and path
//!   prefix, for the backends' `from_url`;
//! - [`upload`]: the upload engine every chunked upload goes through (S3
//!   multipart uploads, Azure staged blocks, GCS resumable uploads), with
//!   [`ChunkedUpload`] for a service's calls and [`PartRetry`] for the
//!   schedule of part retries;
//! - [`StatusRow`] and [`lookup`]: the rows of a backend's error table;
//! - [`count_client_copies`]: how the suite checks server-side copies;
//! - [`stored_key`] and [`is_reserved_name`]: reading back names a store
//!   holds, the staging layer's reserved ones included;
//! - [`health_failure`]: the error of a failed health check;
//! - [`promote_by_copy`]: the default of `Backend::promote`, for wrappers
//!   that override it; [`promotion_target`]: the key a staged object
//!   becomes.

pub use crate::backend::{copy_through_client, unsupported};
pub use crate::memory::{check_if_match, check_put_mode};
pub use crate::options::parse_content_range;
#[path = "ranges.rs"]
pub mod ranges;
pub use crate::staging::promote as promote_by_copy;
pub use ranges::conditional_read_failure;
#[cfg(feature = "batch")]
#[path = "batch.rs"]
pub mod batch;
#[path = "integrity.rs"]
pub mod integrity;
#[path = "list.rs"]
pub mod list;
#[path = "timeout.rs"]
pub mod timeout;
#[path = "url_options.rs"]
pub mod url_options;
pub use crate::staging::promotion_target;
pub use crate::upload::{
    ChunkedUpload, Part, PartBackoff, PartFailure, PartRetry, UploadPlan, Uploaded, part_retry,
    upload, with_part_retry,
};

use std::cell::Cell;

use crate::{Key, Result};

/// The error of a failed [`Backend::health`](crate::Backend::health): a
/// transient failure (no connection, a timeout, a 5xx) gets a message that
/// names the network and `endpoint`; the definite answers (credentials,
/// a missing bucket) pass unchanged, their variant being the cause.
pub fn health_failure(error: crate::Error, endpoint: impl std::fmt::Display) -> crate::Error {
    match error {
        crate::Error::Backend {
            transient: true,
            message,
            source,
        } => crate::Error::Backend {
            transient: true,
            message: format!(
                "network: {endpoint} did not answer the health check, or answered that it is unavailable ({message})"
            ),
            source,
        },
        other => other,
    }
}

/// Validates a name read back from a store (a listing entry, a sidecar, a
/// log record) as a [`Key`]: every rule of [`Key::new`] but the reserved
/// segments, which the staging and transaction layer writes (DESIGN section
/// 2, "Staging and transactions"). Backends use it wherever they parse a
/// stored name, so that staged objects survive listings, reopening and
/// compaction; ordinary listings then leave out keys for which
/// [`Key::is_reserved`] holds.
///
/// # Errors
/// [`Error::InvalidKey`](crate::Error::InvalidKey) naming the broken rule.
pub fn stored_key(name: &str) -> Result<Key> {
    Key::stored(name)
}

/// Whether a segment of `name` (a stored name or a listing's common prefix)
/// is `.staging` or `.txn`: what an ordinary listing must leave out.
pub fn is_reserved_name(name: &str) -> bool {
    crate::key::is_reserved_name(name)
}
use std::future::Future;

tokio::task_local! {
    static CLIENT_COPIES: Cell<u64>;
}

/// Runs `future` and counts the copies it made through the client
/// ([`copy_through_client`]: the content read
/// and written back by this process) while it ran in this task: how the
/// conformance suite checks a backend's claim of
/// [`Capabilities::server_side_copy`](crate::Capabilities::server_side_copy).
/// Copies made by tasks that `future` spawns are not counted.
pub async fn count_client_copies<F: Future>(future: F) -> (F::Output, u64) {
    CLIENT_COPIES
        .scope(Cell::new(0), async move {
            let output = future.await;
            (output, CLIENT_COPIES.with(Cell::get))
        })
        .await
}

/// Notes one copy through the client, for [`count_client_copies`].
pub(crate) fn note_client_copy() {
    // Outside a counting scope there is nothing to note.
    let _ = CLIENT_COPIES.try_with(|count| count.set(count.get() + 1));
}

/// One row of a backend's error table (the `TABLE` of each cloud crate's
/// `error.rs`): an answer's HTTP status and service error code (`None`:
/// any), and what the answer means, in the backend's own classes `C`. A
/// table is read top-down: the first matching row wins ([`lookup`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRow<C> {
    /// The HTTP status, or `None` for any.
    pub status: Option<u16>,
    /// The service's error code (S3 `<Code>`, Azure `x-ms-error-code`, GCS
    /// `errors[0].reason`), or `None` for any (or none).
    pub code: Option<&'static str>,
    /// What the answer means.
    pub class: C,
}

impl<C> StatusRow<C> {
    /// A row for this status and code.
    pub const fn exact(status: u16, code: &'static str, class: C) -> Self {
        StatusRow {
            status: Some(status),
            code: Some(code),
            class,
        }
    }

    /// A row for this status, whatever the code.
    pub const fn status(status: u16, class: C) -> Self {
        StatusRow {
            status: Some(status),
            code: None,
            class,
        }
    }

    /// A row for this code, whatever the status.
    pub const fn code(code: &'static str, class: C) -> Self {
        StatusRow {
            status: None,
            code: Some(code),
            class,
        }
    }

    /// Whether an answer with `status` and `code` matches this row.
    pub fn matches(&self, status: u16, code: Option<&str>) -> bool {
        self.status.is_none_or(|s| s == status) && self.code.is_none_or(|c| code == Some(c))
    }
}

/// The first row of `table` that an answer with `status` and `code`
/// matches, if any.
pub fn lookup<C>(
    table: &'static [StatusRow<C>],
    status: u16,
    code: Option<&str>,
) -> Option<&'static StatusRow<C>> {
    table.iter().find(|row| row.matches(status, code))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, BackendExt, Key, MemoryBackend, PutMode};

    #[test]
    fn the_first_matching_row_wins() {
        const TABLE: &[StatusRow<u8>] = &[
            StatusRow::exact(404, "NoSuchBucket", 1),
            StatusRow::code("SlowDown", 2),
            StatusRow::status(404, 3),
        ];
        assert_eq!(
            lookup(TABLE, 404, Some("NoSuchBucket")).map(|r| r.class),
            Some(1)
        );
        assert_eq!(
            lookup(TABLE, 503, Some("SlowDown")).map(|r| r.class),
            Some(2)
        );
        assert_eq!(lookup(TABLE, 404, None).map(|r| r.class), Some(3));
        assert_eq!(lookup(TABLE, 500, None), None);
    }

    #[tokio::test]
    async fn copies_through_the_client_are_counted_and_memory_copies_are_not() {
        let store = MemoryBackend::new();
        store.put_bytes("a", "x").await.expect("put");
        let (from, to) = (Key::new("a").expect("key"), Key::new("b").expect("key"));
        let (copied, count) = count_client_copies(crate::raw::copy_through_client(
            &store,
            &from,
            &to,
            PutMode::Overwrite,
        ))
        .await;
        assert!(copied.is_ok());
        assert_eq!(count, 1);
        let (copied, count) = count_client_copies(store.copy(&from, &to, PutMode::Overwrite)).await;
        assert!(copied.is_ok());
        assert_eq!(count, 0);
    }
}
