//! The change feed: what `watch(prefix)` streams (DESIGN section 2, change feed).

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

use crate::{ETag, Error, Key, Result};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A put (or copy) committed a new version.
    Put,
    /// A delete removed the object.
    Delete,
}

/// One committed change, streamed by [`Backend::watch`](crate::Backend::watch)
/// after the change is durable and visible to readers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key that changed.
    pub key: Key,
    /// Put or delete.
    pub kind: ChangeKind,
    /// The new version's ETag for a put; `None` for a delete.
    pub etag: Option<ETag>,
}

/// A stream of changes; see [`Backend::watch`](crate::Backend::watch).
pub type ChangeStream = BoxStream<'static, Result<Change>>;

/// Changes a [`ChangeFeed`] buffers per subscriber before the subscriber is
/// told it lagged.
pub const CHANGE_FEED_CAPACITY: usize = 4096;

/// The sending side of a change feed, for backends that implement
/// [`Backend::watch`](crate::Backend::watch).
///
/// Subscribers that fall more than [`CHANGE_FEED_CAPACITY`] changes behind get
/// one non-transient [`Error::Backend`] saying how many changes they missed,
/// then the stream goes on with the newest changes: a consumer that must not
/// miss a change re-lists after that error.
#[derive(Debug, Clone)]
pub struct ChangeFeed {
    sender: broadcast::Sender<Change>,
}

impl Default for ChangeFeed {
    fn default() -> Self {
        ChangeFeed {
            sender: broadcast::channel(CHANGE_FEED_CAPACITY).0,
        }
    }
}

impl ChangeFeed {
    /// Whether anyone is subscribed; publishers may skip building changes
    /// nobody will read.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    /// Announces a committed change to every subscriber; changes of
    /// reserved keys ([`Key::is_reserved`](crate::Key::is_reserved): staged
    /// state, transaction records) are never streamed.
    pub fn publish(&self, change: Change) {
        if change.key.is_reserved() {
            return;
        }
        // No subscriber is not an error.
        let _ = self.sender.send(change);
    }

    /// A stream of the changes under `prefix` published from now on.
    pub fn subscribe(&self, prefix: &str) -> ChangeStream {
        let prefix = prefix.to_owned();
        stream::unfold(self.sender.subscribe(), move |mut receiver| {
            let prefix = prefix.clone();
            async move {
                loop {
                    match receiver.recv().await {
                        Ok(change) if change.key.as_str().starts_with(&prefix) => {
                            return Some((Ok(change), receiver));
                        }
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            let error = Error::Backend {
                                transient: false,
                                message: format!(
                                    "the change feed lagged: {missed} changes were missed"
                                ),
                                source: None,
                            };
                            return Some((Err(error), receiver));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }
}
