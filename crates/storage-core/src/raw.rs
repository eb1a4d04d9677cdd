//! Helpers for backend authors and the conformance suite, not for users of a
//! backend.

use std::cell::Cell;
use std::future::Future;

tokio::task_local! {
    static CLIENT_COPIES: Cell<u64>;
}

/// Runs `future` and counts the copies it made through the client
/// ([`copy_through_client`](crate::copy_through_client): the content read
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, BackendExt, Key, MemoryBackend, PutMode};

    #[tokio::test]
    async fn copies_through_the_client_are_counted_and_memory_copies_are_not() {
        let store = MemoryBackend::new();
        store.put_bytes("a", "x").await.expect("put");
        let (from, to) = (Key::new("a").expect("key"), Key::new("b").expect("key"));
        let (copied, count) = count_client_copies(crate::copy_through_client(
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
