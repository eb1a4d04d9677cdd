//! What the associated data binds besides the key: the context kind.

use std::fmt;
use std::sync::Arc;

use storage_core::Key;

/// The kind of content an object holds, bound into its associated data
/// (DESIGN section 4): ciphertext written as one kind fails with
/// [`Error::Integrity`](storage_core::Error::Integrity) when read as
/// another, so that, for example, a queue payload cannot be passed off as
/// a state document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContextKind {
    /// A state document: `state`.
    State,
    /// An attachment of a key: `attachment`.
    Attachment,
    /// A queue's metadata: `queue-meta`.
    QueueMeta,
    /// A queue's payload: `queue-payload`.
    QueuePayload,
    /// The caller's own kind. Only the string is bound, so
    /// `Custom("state")` is the same kind as [`ContextKind::State`].
    Custom(String),
}

impl ContextKind {
    /// The string bound into the associated data.
    pub fn as_str(&self) -> &str {
        match self {
            ContextKind::State => "state",
            ContextKind::Attachment => "attachment",
            ContextKind::QueueMeta => "queue-meta",
            ContextKind::QueuePayload => "queue-payload",
            ContextKind::Custom(kind) => kind,
        }
    }
}

impl fmt::Display for ContextKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Chooses the context kind of a key; given to
/// [`Encrypted::new`](crate::Encrypted::new). It is called with the key
/// the content is bound to: the key itself, or for a staged write or
/// attachment the key it is promoted to
/// ([`storage_core::raw::promotion_target`]). It must answer the same for
/// a key at every write and read, or reads fail with
/// [`Error::Integrity`](storage_core::Error::Integrity).
pub type Resolver = Arc<dyn Fn(&Key) -> ContextKind + Send + Sync>;

/// The resolver that calls every key [`ContextKind::State`].
pub fn all_state() -> Resolver {
    Arc::new(|_: &Key| ContextKind::State)
}
