//! Ambiguous writes: telling whether a write whose answer was lost was
//! applied, so that it is reported once, as what happened (DESIGN section 5).
//!
//! A put or delete whose attempt failed with an unknown outcome (a time
//! limit, a connection reset after the request was sent, any transient
//! error: the client cannot tell which) may have been applied. Sent again,
//! a conditional put would be refused by its own object
//! ([`PutMode::IfNotExists`] answering [`Error::AlreadyExists`],
//! [`PutMode::IfMatch`] answering [`Error::PreconditionFailed`]: a write
//! that succeeded reported as lost, object_store issue #464), and an
//! overwrite or delete would take effect twice, which readers, change feeds
//! and competing writers can tell (no longer linearizable). So after such an
//! attempt the layer finds out, before sending anything again, and once
//! more when a retry is refused by a precondition.
//!
//! # Puts: the write id
//!
//! Every put carries a random 128-bit write id in the reserved metadata
//! entry [`WRITE_ID_METADATA`] (48 bytes of the 2 KiB of user metadata; a
//! put whose own metadata leaves no room is sent without one, and is sent
//! again as if unapplied). The layer strips the entry from every result,
//! and while a write to the key is in progress through it, remembers the
//! versions that carried one (at most 1024). After an attempt of unknown
//! outcome it reads the object (one `head`, retried), and:
//!
//! 1. if the current version, or any version a result through this layer
//!    has shown since (a get, head, list or copy, by any task), carries the
//!    call's id, the write was applied: the put succeeds with that version's
//!    metadata. A competitor that replaced the version by compare-and-swap
//!    had to read its ETag first, which shows it — through this layer. A
//!    competitor that took the ETag from elsewhere (another process, the
//!    `actual` ETag of a refusal, a change feed) is not seen: then a
//!    conditional put that was applied can be reported as refused. Callers
//!    that need certainty there re-read the object and compare its content.
//! 2. With no id (the metadata had no room), a refusal after an attempt of
//!    unknown outcome is reported as an unknown outcome, since it may be the
//!    call's own write that refused it (object_store #464).
//! 3. Otherwise the write was not applied, and is sent again (or its
//!    refusal reported), unless another write to the key through this layer
//!    that could hide it overlapped the call: for a conditional put, a blind
//!    write (an overwrite or unconditional delete, which can replace a
//!    version nobody read); for an overwrite, a conditional write (which a
//!    version nobody read can cause to be refused). Then the put fails with
//!    a transient [`Error::Backend`] saying its outcome is unknown, rather
//!    than guess.
//!
//! # Deletes
//!
//! A delete carries no metadata; after an attempt of unknown outcome the
//! layer reads the object (one `head`, retried), and decides by what it
//! finds and whether another write to the key through this layer overlapped
//! the call:
//!
//! | found | no other write overlapped | another write overlapped |
//! |---|---|---|
//! | no object | deleted: success | unconditional: success; conditional: unknown |
//! | the ETag of `if_match` (conditional) | not applied: send again | not applied: send again |
//! | another version | unconditional: send again; conditional: refused (`PreconditionFailed`) | unknown |
//!
//! A conditional delete reads the object first (one more `head`), so that
//! "no object" above means this call's version was there when it began; a
//! missing object or another ETag is refused at once, as the backend would.
//!
//! # Limits
//!
//! Only writes through this [`Retry`](crate::Retry) are seen. A writer in
//! another process that hides a write (replaces a version nobody here read,
//! or empties a key) is taken for no writer at all, and the answer may then
//! be wrong; stores keep no history to tell. Overlaps are counted per
//! stripe of keys (256 stripes), so a write to another key sharing the
//! stripe may turn an answer into "unknown", never into a wrong one. A
//! `delete_many` registers on the stripes of all its keys (of 1,000 keys,
//! nearly every stripe) until each key is settled, typically for one
//! round trip; writes overlapping it may then be answered "unknown" more
//! often.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

#[cfg(doc)]
use storage_core::PutMode;
use storage_core::{Error, Key, ListPage, MAX_METADATA_BYTES, Metadata, ObjectMeta, Result};

/// The reserved metadata name holding a put's write id: 32 lower-case hex
/// digits (128 random bits). The layer adds it and strips it from every
/// result it returns.
pub const WRITE_ID_METADATA: &str = "storage_write_id";

/// The prefix of metadata names reserved for the library's own backends and
/// layers (DESIGN section 2, rule 8).
pub const RESERVED_METADATA_PREFIX: &str = "storage_";

/// Versions carrying a write id that one layer remembers, at most.
const REMEMBERED_VERSIONS: usize = 1024;

/// A random 128-bit identifier of one put call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct WriteId(u128);

impl WriteId {
    /// A fresh random id.
    pub(crate) fn random() -> Self {
        WriteId(rand::random())
    }

    fn to_hex(self) -> String {
        format!("{:032x}", self.0)
    }

    fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 32)
            .then(|| u128::from_str_radix(hex, 16).ok())
            .flatten()
            .map(WriteId)
    }
}

/// The write id an outer `Retry` already put in `metadata`, adopted as
/// this call's own so that nested retrying layers agree on one id.
///
/// Other names starting with [`RESERVED_METADATA_PREFIX`] pass through: they
/// belong to the layers above this one (encryption, an outer `Retry`), and a
/// layer cannot tell them from a user's. Refusing users' reserved names is
/// the job of the layer that takes the user's call.
///
/// # Errors
/// [`Error::InvalidArgument`] for a [`WRITE_ID_METADATA`] entry that is not
/// 32 hex digits.
pub(crate) fn adopted_write_id(metadata: &Metadata) -> Result<Option<WriteId>> {
    match metadata.get(WRITE_ID_METADATA) {
        None => Ok(None),
        Some(value) => WriteId::parse(value).map(Some).ok_or_else(|| {
            Error::invalid_argument(format!(
                "metadata {WRITE_ID_METADATA:?} must be 32 hex digits, a write id of storage-retry"
            ))
        }),
    }
}

/// Adds `id` to `metadata` when the entry fits in the metadata limit;
/// returns whether it was added.
pub(crate) fn tag(metadata: &mut Metadata, id: WriteId) -> bool {
    let used: usize = metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
    let value = id.to_hex();
    if used + WRITE_ID_METADATA.len() + value.len() > MAX_METADATA_BYTES {
        return false;
    }
    metadata.insert(WRITE_ID_METADATA.to_owned(), value);
    true
}

/// `meta` without the write id entry.
pub(crate) fn hide_write_id(mut meta: ObjectMeta) -> ObjectMeta {
    meta.metadata.remove(WRITE_ID_METADATA);
    meta
}

/// The versions carrying a write id that results through one layer have
/// shown, newest last, at most [`REMEMBERED_VERSIONS`] of them.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    versions: Mutex<Versions>,
}

#[derive(Debug, Default)]
struct Versions {
    by_write: HashMap<(Key, WriteId), ObjectMeta>,
    order: VecDeque<(Key, WriteId)>,
}

impl Seen {
    /// Strips the write id entry from `meta`; remembers the version it
    /// marks if a write to its key is in progress through this layer (only
    /// such a write can need the evidence). Returns what the user may see.
    pub(crate) fn strip(&self, mut meta: ObjectMeta, writers: &Writers) -> ObjectMeta {
        let Some(value) = meta.metadata.remove(WRITE_ID_METADATA) else {
            return meta;
        };
        if let Some(id) = WriteId::parse(&value)
            && writers.busy(&meta.key)
        {
            self.remember(id, &meta);
        }
        meta
    }

    /// [`Seen::strip`] of every object of a listing page.
    pub(crate) fn strip_page(&self, mut page: ListPage, writers: &Writers) -> ListPage {
        page.objects = page
            .objects
            .into_iter()
            .map(|m| self.strip(m, writers))
            .collect();
        page
    }

    /// The version of `key` written with `id`, if a result has shown it.
    pub(crate) fn written(&self, key: &Key, id: WriteId) -> Option<ObjectMeta> {
        let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        versions.by_write.get(&(key.clone(), id)).cloned()
    }

    fn remember(&self, id: WriteId, meta: &ObjectMeta) {
        let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = (meta.key.clone(), id);
        if versions.by_write.contains_key(&entry) {
            return;
        }
        if versions.order.len() >= REMEMBERED_VERSIONS
            && let Some(oldest) = versions.order.pop_front()
        {
            versions.by_write.remove(&oldest);
        }
        versions.order.push_back(entry.clone());
        versions.by_write.insert(entry, meta.clone());
    }
}

/// Stripes of keys over which [`Writers`] counts write calls.
const STRIPES: usize = 256;

/// What a write call can do to a version it did not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// Replaces or removes whatever is there without reading it: a put or
    /// copy with [`PutMode::Overwrite`], a delete without `if_match`.
    Blind,
    /// Acts only on a version it names or on an empty key, and is refused
    /// otherwise: conditional puts, copies and deletes. A refusal is an
    /// observation of the version that caused it.
    Conditional,
}

/// Counter slots of a stripe: every write, blind writes, conditional writes.
const ANY: usize = 0;

impl WriteKind {
    fn slot(self) -> usize {
        match self {
            WriteKind::Blind => 1,
            WriteKind::Conditional => 2,
        }
    }
}

/// The write calls (put, delete, copy) in progress through one layer,
/// counted per stripe of keys and per [`WriteKind`], so that a call can
/// tell which other writes to its key overlapped it.
///
/// Keys share a stripe by hash, so a write to another key may be taken for
/// an overlap (about one chance in 256 per concurrent writer); that only
/// makes an answer "unknown", never wrong.
#[derive(Debug)]
pub(crate) struct Writers {
    stripes: Box<[Stripe]>,
}

#[derive(Debug, Default)]
struct Stripe {
    /// Held while a write call registers, so that its snapshot of
    /// `started` and `active` is one moment's (two calls registering at
    /// once would otherwise each miss the other).
    registering: Mutex<()>,
    started: [AtomicU64; 3],
    active: [AtomicU64; 3],
}

impl Default for Writers {
    fn default() -> Self {
        Writers {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }
}

impl Writers {
    /// The stripe of `key`.
    fn stripe(&self, key: &Key) -> &Stripe {
        &self.stripes[Self::stripe_index(key)]
    }

    fn stripe_index(key: &Key) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        (hasher.finish() % STRIPES as u64) as usize
    }

    /// Whether a write call to `key` (or its stripe) is in progress.
    pub(crate) fn busy(&self, key: &Key) -> bool {
        self.stripe(key).active[ANY].load(Ordering::SeqCst) > 0
    }

    /// Records the start of a write call of `kind` to `key`; its end is
    /// recorded when the returned guard is dropped.
    pub(crate) fn begin(&self, key: &Key, kind: WriteKind) -> Writing<'_> {
        Self::begin_on(self.stripe(key), kind)
    }

    /// Records the start of one write call of `kind` to every key of
    /// `keys` (a batch): one registration per stripe, so that the keys of
    /// the call do not count as overlapping each other. Returns the
    /// registrations and, for each key, the index of its own.
    pub(crate) fn begin_many(
        &self,
        keys: &[Key],
        kind: WriteKind,
    ) -> (Vec<Writing<'_>>, Vec<usize>) {
        let mut by_stripe = std::collections::HashMap::new();
        let mut writings = Vec::new();
        let mut own = Vec::with_capacity(keys.len());
        for key in keys {
            let stripe = Self::stripe_index(key);
            let index = *by_stripe.entry(stripe).or_insert_with(|| {
                writings.push(Self::begin_on(&self.stripes[stripe], kind));
                writings.len() - 1
            });
            own.push(index);
        }
        (writings, own)
    }

    fn begin_on(stripe: &Stripe, kind: WriteKind) -> Writing<'_> {
        let mine = |slot: usize| u64::from(slot == ANY || slot == kind.slot());
        let mut started = [0; 3];
        let mut alone = [true; 3];
        let _registering = stripe
            .registering
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for slot in 0..3 {
            let active = stripe.active[slot].fetch_add(mine(slot), Ordering::SeqCst) + mine(slot);
            started[slot] =
                stripe.started[slot].fetch_add(mine(slot), Ordering::SeqCst) + mine(slot);
            alone[slot] = active == mine(slot);
        }
        Writing {
            stripe,
            kind,
            started,
            alone,
        }
    }
}

/// One write call in progress; see [`Writers::begin`].
#[derive(Debug)]
pub(crate) struct Writing<'a> {
    stripe: &'a Stripe,
    kind: WriteKind,
    started: [u64; 3],
    alone: [bool; 3],
}

impl Writing<'_> {
    /// The kind of this call.
    pub(crate) fn kind(&self) -> WriteKind {
        self.kind
    }

    /// Whether another write call to the key (or its stripe) was in
    /// progress at any time since this one began.
    pub(crate) fn overlapped(&self) -> bool {
        self.overlapped_slot(ANY)
    }

    /// Whether another write call of `kind` overlapped this one.
    pub(crate) fn overlapped_by(&self, kind: WriteKind) -> bool {
        self.overlapped_slot(kind.slot())
    }

    fn overlapped_slot(&self, slot: usize) -> bool {
        !self.alone[slot] || self.stripe.started[slot].load(Ordering::SeqCst) != self.started[slot]
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.stripe.active[ANY].fetch_sub(1, Ordering::SeqCst);
        self.stripe.active[self.kind.slot()].fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;
    use storage_core::ETag;

    fn meta(key: &Key, id: Option<WriteId>) -> ObjectMeta {
        let mut metadata = Metadata::from([("owner".to_owned(), "a".to_owned())]);
        if let Some(id) = id {
            assert!(tag(&mut metadata, id));
        }
        ObjectMeta {
            key: key.clone(),
            size: 1,
            etag: ETag::new("e1"),
            last_modified: SystemTime::UNIX_EPOCH,
            content_type: None,
            metadata,
            sha256: None,
        }
    }

    #[test]
    fn stripping_hides_the_entry_and_remembers_the_version() {
        let key = Key::new("k").expect("valid key");
        let id = WriteId::random();
        let (seen, writers) = (Seen::default(), Writers::default());
        let _writing = writers.begin(&key, WriteKind::Conditional);
        let shown = seen.strip(meta(&key, Some(id)), &writers);
        assert_eq!(shown, meta(&key, None));
        assert_eq!(seen.written(&key, id), Some(shown));
        assert_eq!(seen.written(&key, WriteId::random()), None);
    }

    #[test]
    fn versions_are_not_remembered_while_no_write_is_in_progress() {
        let key = Key::new("k").expect("valid key");
        let id = WriteId::random();
        let seen = Seen::default();
        seen.strip(meta(&key, Some(id)), &Writers::default());
        assert_eq!(seen.written(&key, id), None);
    }

    #[test]
    fn an_outer_write_id_is_adopted_and_a_malformed_one_refused() {
        let id = WriteId::random();
        let outer = Metadata::from([(WRITE_ID_METADATA.to_owned(), id.to_hex())]);
        assert_eq!(adopted_write_id(&outer).ok(), Some(Some(id)));
        let malformed = Metadata::from([(WRITE_ID_METADATA.to_owned(), "x".to_owned())]);
        assert!(matches!(
            adopted_write_id(&malformed),
            Err(Error::InvalidArgument { .. })
        ));
        let other = Metadata::from([("storage_sha256".to_owned(), "x".to_owned())]);
        assert_eq!(adopted_write_id(&other).ok(), Some(None));
    }

    #[test]
    fn no_id_is_added_past_the_metadata_limit() {
        let mut full = Metadata::from([("blob".to_owned(), "v".repeat(MAX_METADATA_BYTES - 4))]);
        assert!(!tag(&mut full, WriteId::random()));
        assert!(!full.contains_key(WRITE_ID_METADATA));
    }

    #[test]
    fn a_write_alone_is_not_overlapped_and_a_concurrent_one_is() {
        let writers = Writers::default();
        let key = Key::new("k").expect("valid key");
        let alone = writers.begin(&key, WriteKind::Blind);
        assert!(!alone.overlapped());
        let second = writers.begin(&key, WriteKind::Conditional);
        assert!(alone.overlapped());
        assert!(second.overlapped());
        drop((alone, second));
        assert!(!writers.begin(&key, WriteKind::Blind).overlapped());
    }

    #[test]
    fn overlaps_are_told_apart_by_kind() {
        let writers = Writers::default();
        let key = Key::new("k").expect("valid key");
        let conditional = writers.begin(&key, WriteKind::Conditional);
        let _blind = writers.begin(&key, WriteKind::Blind);
        assert!(conditional.overlapped_by(WriteKind::Blind));
        assert!(!conditional.overlapped_by(WriteKind::Conditional));
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let id = WriteId::random();
        assert_eq!(WriteId::parse(&id.to_hex()), Some(id));
        assert_eq!(WriteId::parse("xyz"), None);
    }
}
