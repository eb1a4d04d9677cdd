//! A time limit on one request, for backends that build their own requests.

use std::future::Future;
use std::time::Duration;

use crate::{Error, Result};

/// Runs `future` for at most `limit`; past it, the future is dropped and
/// the result is a transient [`Error::Backend`] whose message is `what()`
/// (called only then) with the limit in milliseconds (a retrying layer may
/// try again).
///
/// # Errors
/// The transient [`Error::Backend`] above when the limit passes.
pub async fn within<T>(
    limit: Duration,
    future: impl Future<Output = T>,
    what: impl FnOnce() -> String,
) -> Result<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|elapsed| {
            Error::backend(
                true,
                format!("{}: no answer within {} ms", what(), limit.as_millis()),
                elapsed,
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_late_answer_is_a_transient_error_and_a_prompt_one_passes() {
        let pending = std::future::pending::<()>();
        let late = within(Duration::from_millis(10), pending, || "probe".into()).await;
        assert!(late.as_ref().is_err_and(Error::is_transient), "{late:?}");
        let prompt = within(Duration::from_secs(1), async { 7 }, || "probe".into()).await;
        assert_eq!(prompt.ok(), Some(7));
    }
}
