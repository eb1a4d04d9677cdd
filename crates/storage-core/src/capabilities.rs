//! What a backend can do, so that callers and the conformance suite branch on
//! facts rather than backend names.

/// Where a backend keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// In this process's memory; gone when the process ends.
    Memory,
    /// On a local file system.
    Local,
    /// On a remote service reached over the network.
    Remote,
}

/// The operations and guarantees a backend supports.
///
/// An operation a backend lacks returns [`Error::Unsupported`](crate::Error::Unsupported),
/// never a silent no-op.
///
/// Build it with struct update syntax over [`Capabilities::none`], so that a
/// field added later defaults to unsupported:
/// `Capabilities { conditional_put: true, ..Capabilities::none(Locality::Local) }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `PutMode::IfNotExists` and `PutMode::IfMatch` are honoured.
    pub conditional_put: bool,
    /// `DeleteOptions::if_match` is honoured.
    pub conditional_delete: bool,
    /// Promoting a staged object is one atomic step.
    pub atomic_promote: bool,
    /// `watch(prefix)` streams changes.
    pub change_feed: bool,
    /// [`Backend::presign`](crate::Backend::presign) issues presigned or
    /// SAS URLs.
    pub presigned_urls: bool,
    /// `copy` runs inside the store, without the data passing the client.
    pub server_side_copy: bool,
    /// The SHA-256 of the content is recorded at put and verified on full reads.
    pub checksums: bool,
    /// Every put gets an ETag never issued before for this key, even for the
    /// same content (DESIGN section 2, rule 1). False where the service's
    /// ETag depends only on the content (S3's MD5): there a compare-and-swap
    /// cannot tell a rewrite of the same bytes from no change (the ABA
    /// hazard), so version a key's content yourself if that matters.
    pub unique_etags: bool,
    /// Where the data lives.
    pub locality: Locality,
}

impl Capabilities {
    /// A backend that supports nothing optional, at the given locality; set
    /// the fields it does support.
    pub const fn none(locality: Locality) -> Self {
        Capabilities {
            conditional_put: false,
            conditional_delete: false,
            atomic_promote: false,
            change_feed: false,
            presigned_urls: false,
            server_side_copy: false,
            checksums: false,
            unique_etags: false,
            locality,
        }
    }
}
