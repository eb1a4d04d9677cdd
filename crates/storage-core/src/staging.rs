//! Names of staged state and transaction records (DESIGN section 2,
//! "Staging and transactions"): the layout every backend stores.
//!
//! | what | key |
//! |---|---|
//! | `K` staged in transaction `T` | `K/.staging/T` |
//! | attachment `NAME` of `K` staged in `T` | `K/.staging/T/attachments/NAME` |
//! | a namespace's own state staged in `T` | `.staging/T` |
//! | the decision record of `T` | `.txn/T` |
//!
//! These keys have a reserved segment, so [`Key::new`] refuses them and
//! ordinary listings and change feeds leave them out; only the constructors
//! here build them.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{
    Backend, Body, DeleteOptions, Error, Key, ListOptions, MAX_KEY_BYTES, MAX_PAGE_SIZE,
    ObjectMeta, PutMode, PutOptions, Result,
};

/// Longest transaction id, in bytes.
pub const MAX_TXN_ID_BYTES: usize = 64;

/// A transaction id: one key segment of 1 to [`MAX_TXN_ID_BYTES`] ASCII
/// letters, digits, `-` and `_`.
///
/// Staged state and transaction records live under reserved names (DESIGN
/// section 2, "Staging and transactions"), which [`Key::new`] refuses and
/// ordinary listings and change feeds leave out:
///
/// | what | key | built by |
/// |---|---|---|
/// | `K` staged in transaction `T` | `K/.staging/T` | [`Key::staged`] |
/// | attachment `NAME` of `K` staged in `T` | `K/.staging/T/attachments/NAME` | [`Key::staged_attachment`] |
/// | a namespace's own state staged in `T` | `.staging/T` | [`Key::root_staged`] |
/// | the decision record of `T` | `.txn/T` | [`Key::txn_record`] |
///
/// [`TxnId::generate`] makes ids that sort by creation time, so that
/// `reconcile` can tell old transactions from young ones by name.
///
/// ```
/// use storage_core::{Key, TxnId};
/// let txn = TxnId::new("t-0001")?;
/// let staged = Key::new("orders/42")?.staged(&txn)?;
/// assert_eq!(staged.as_str(), "orders/42/.staging/t-0001");
/// assert!(staged.is_reserved());
/// # Ok::<(), storage_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TxnId(String);

impl TxnId {
    /// Validates `id`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `id` is empty, longer than
    /// [`MAX_TXN_ID_BYTES`] or holds another character than ASCII letters,
    /// digits, `-` and `_`.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let valid = !id.is_empty()
            && id.len() <= MAX_TXN_ID_BYTES
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(Error::invalid_argument(format!(
                "transaction id {id:?}: 1 to {MAX_TXN_ID_BYTES} ASCII letters, digits, '-' or '_'"
            )));
        }
        Ok(TxnId(id))
    }

    /// A fresh id: the creation time in milliseconds since the Unix epoch
    /// (13 hex digits, so ids sort by time), `-`, and 16 random hex digits.
    pub fn generate() -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        // The hasher's random keys are the randomness: unique ids, not
        // secrets, are what is needed.
        let random = RandomState::new().hash_one(millis);
        TxnId(format!("{millis:013x}-{random:016x}"))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TxnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxnId({:?})", self.0)
    }
}

/// The reserved key `name`, or `InvalidKey` when it is over the length
/// limit.
fn reserved(name: String) -> Result<Key> {
    if name.len() > MAX_KEY_BYTES {
        return Err(Error::InvalidKey {
            key: name,
            reason: "the key and its staging suffix must fit in 1024 bytes",
        });
    }
    Key::stored(&name)
}

impl Key {
    /// Where this key's write in transaction `txn` is staged:
    /// `K/.staging/T`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the result exceeds 1024 bytes, before any
    /// I/O.
    pub fn staged(&self, txn: &TxnId) -> Result<Key> {
        reserved(format!("{self}/.staging/{txn}"))
    }

    /// Where attachment `name` (one or more valid key segments) of this key
    /// is staged in `txn`: `K/.staging/T/attachments/NAME`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an invalid `name` or a result over 1024
    /// bytes, before any I/O.
    pub fn staged_attachment(&self, txn: &TxnId, name: &str) -> Result<Key> {
        Key::new(name)?;
        reserved(format!("{self}/.staging/{txn}/attachments/{name}"))
    }

    /// Where a namespace's own state is staged in `txn`: `.staging/T`.
    pub fn root_staged(txn: &TxnId) -> Key {
        Key::stored(&format!(".staging/{txn}"))
            .expect("a transaction id is one short segment of allowed characters")
    }

    /// The decision record of `txn`: `.txn/T`.
    pub fn txn_record(txn: &TxnId) -> Key {
        Key::stored(&format!(".txn/{txn}"))
            .expect("a transaction id is one short segment of allowed characters")
    }
}

/// One staged write, as [`Backend::list_staged`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedObject {
    /// The key the write is staged for; `None` for a namespace's own staged
    /// state (the root form `.staging/T`).
    pub key: Option<Key>,
    /// The transaction it belongs to.
    pub txn: TxnId,
    /// The staged object itself (its key is the reserved name).
    pub meta: ObjectMeta,
}

/// What [`Backend::list_staged`] lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedListOptions {
    /// Only staged writes for keys starting with this string, byte-wise, as
    /// in an ordinary listing; root forms (no key) only with `""`.
    pub prefix: String,
    /// Only transactions whose id starts with this string.
    pub txn_prefix: String,
    /// Only stored names greater than this, byte-wise: the
    /// [`StagedPage::continuation`] of the previous page.
    pub start_after: Option<String>,
    /// Most staged writes per page: 1 to [`MAX_PAGE_SIZE`]; `None` means
    /// [`MAX_PAGE_SIZE`].
    pub page_size: Option<usize>,
}

/// One page of [`Backend::list_staged`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StagedPage {
    /// Staged writes in ascending order of stored name.
    pub staged: Vec<StagedObject>,
    /// Where the next page starts ([`StagedListOptions::start_after`]), or
    /// `None` when this was the last.
    pub continuation: Option<String>,
}

/// The target and transaction of a stored name of a staged write
/// (`K/.staging/T` or `.staging/T`); `None` for any other name, attachments
/// included.
pub(crate) fn parse_staged(name: &str) -> Option<(Option<Key>, TxnId)> {
    const SEGMENT: &str = "/.staging/";
    let (target, txn) = match name.strip_prefix(".staging/") {
        Some(txn) => (None, txn),
        None => {
            let at = name.find(SEGMENT)?;
            (
                Some(Key::new(&name[..at]).ok()?),
                &name[at + SEGMENT.len()..],
            )
        }
    };
    Some((target, TxnId::new(txn).ok()?))
}

/// [`Backend::stage`]'s default: a put of `body` at `K/.staging/T`.
pub(crate) async fn stage<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    txn: &TxnId,
    body: Body,
    options: PutOptions,
) -> Result<ObjectMeta> {
    let staged = key.staged(txn)?;
    let options = PutOptions {
        mode: PutMode::Overwrite,
        ..options
    };
    backend.put(&staged, body, options).await
}

/// [`Backend::promote`]'s default: a copy of the staged object to `key`
/// under `mode`, then a delete of the staged object, conditional on the
/// version copied where the backend has conditional deletes. Public (as
/// `storage_core::raw::promote_by_copy`) for wrappers that override
/// `promote` and fall back to it.
///
/// # Errors
/// As [`Backend::promote`].
pub async fn promote<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    txn: &TxnId,
    mode: PutMode,
) -> Result<ObjectMeta> {
    promote_name(backend, &key.staged(txn)?, key, mode).await
}

/// Copies the staged object `staged` to `target` under `mode`, then
/// deletes it, conditional on the version copied where the backend has
/// conditional deletes; a failed delete is logged, not returned.
pub(crate) async fn promote_name<B: Backend + ?Sized>(
    backend: &B,
    staged: &Key,
    target: &Key,
    mode: PutMode,
) -> Result<ObjectMeta> {
    let source = backend.head(staged).await?;
    let promoted = backend.copy(staged, target, mode).await?;
    let if_match = backend
        .capabilities()
        .conditional_delete
        .then_some(source.etag);
    if let Err(e) = backend.delete(staged, DeleteOptions { if_match }).await {
        tracing::warn!(
            target: "storage_core::staging",
            staged = %staged,
            target_key = %target,
            error = %e,
            "promoted, but the staged object could not be removed; discard or reconcile removes it"
        );
    }
    Ok(promoted)
}

/// The key a stored object becomes when promoted: `K` for a staged write
/// `K/.staging/T`, `K/NAME` for a staged attachment
/// `K/.staging/T/attachments/NAME`, and `None` for any other key (the root
/// form `.staging/T` included, which no promotion renames). A layer that
/// binds content to its key (DESIGN section 4) binds staged content to this
/// key, so that promotion, a copy of the stored bytes, needs no
/// re-encryption. Public as `storage_core::raw::promotion_target`.
pub fn promotion_target(key: &Key) -> Option<Key> {
    let name = key.as_str();
    if let Some((target, _, attachment)) = parse_attachment(name) {
        return Key::new(format!("{target}/{attachment}")).ok();
    }
    match parse_staged(name) {
        Some((Some(target), _)) => Some(target),
        _ => None,
    }
}

/// The key, transaction and name of a staged attachment's stored name
/// (`K/.staging/T/attachments/NAME`); `None` for any other name.
pub(crate) fn parse_attachment(name: &str) -> Option<(Key, TxnId, &str)> {
    const SEGMENT: &str = "/.staging/";
    let at = name.find(SEGMENT)?;
    let key = Key::new(&name[..at]).ok()?;
    let (txn, attachment) = name[at + SEGMENT.len()..].split_once("/attachments/")?;
    Some((key, TxnId::new(txn).ok()?, attachment))
}

/// [`Backend::discard`]'s default: deletes the staged write and every
/// staged attachment of `key` in `txn`.
pub(crate) async fn discard<B: Backend + ?Sized>(
    backend: &B,
    key: &Key,
    txn: &TxnId,
) -> Result<()> {
    let staged = key.staged(txn)?;
    let mut options = ListOptions {
        prefix: format!("{staged}/attachments/"),
        reserved: true,
        ..ListOptions::default()
    };
    loop {
        let page = backend.list(&options).await?;
        for attachment in &page.objects {
            backend
                .delete(&attachment.key, DeleteOptions::default())
                .await?;
        }
        match page.continuation {
            Some(next) => options.continuation = Some(next),
            None => break,
        }
    }
    backend.delete(&staged, DeleteOptions::default()).await
}

/// [`Backend::list_staged`]'s default: scans the listing of every stored
/// name under the prefix, reserved ones included, and keeps the staged
/// writes.
pub(crate) async fn list_staged<B: Backend + ?Sized>(
    backend: &B,
    options: &StagedListOptions,
) -> Result<StagedPage> {
    let page_size = ListOptions {
        page_size: options.page_size,
        ..ListOptions::default()
    }
    .effective_page_size()?;
    // Pages of the underlying listing: twice the staged page (attachments
    // and ordinary keys lie between staged writes), at least 100, so that a
    // small page is a small request.
    let mut listing = ListOptions {
        prefix: options.prefix.clone(),
        start_after: options.start_after.clone(),
        reserved: true,
        page_size: Some(page_size.saturating_mul(2).clamp(100, MAX_PAGE_SIZE)),
        ..ListOptions::default()
    };
    let mut page = StagedPage::default();
    loop {
        let listed = backend.list(&listing).await?;
        let mut objects = listed.objects.into_iter();
        for meta in objects.by_ref() {
            let Some((key, txn)) = parse_staged(meta.key.as_str()) else {
                continue;
            };
            let in_prefix = match &key {
                Some(key) => key.as_str().starts_with(&options.prefix),
                None => options.prefix.is_empty(),
            };
            if !in_prefix || !txn.as_str().starts_with(&options.txn_prefix) {
                continue;
            }
            page.staged.push(StagedObject { key, txn, meta });
            if page.staged.len() == page_size {
                break;
            }
        }
        let more = objects.len() > 0 || listed.continuation.is_some();
        if page.staged.len() == page_size {
            page.continuation = more
                .then(|| page.staged.last().map(|s| s.meta.key.to_string()))
                .flatten();
            return Ok(page);
        }
        match listed.continuation {
            Some(next) => listing.continuation = Some(next),
            None => return Ok(page),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn() -> TxnId {
        TxnId::new("t1").expect("id")
    }

    #[test]
    fn staged_names_follow_the_layout() {
        let key = Key::new("a/b").expect("key");
        let names = [
            key.staged(&txn()).expect("staged"),
            key.staged_attachment(&txn(), "log/0").expect("attachment"),
            Key::root_staged(&txn()),
            Key::txn_record(&txn()),
        ];
        let names: Vec<&str> = names.iter().map(Key::as_str).collect();
        assert_eq!(
            names,
            [
                "a/b/.staging/t1",
                "a/b/.staging/t1/attachments/log/0",
                ".staging/t1",
                ".txn/t1"
            ]
        );
    }

    #[test]
    fn a_staged_name_over_the_limit_is_an_invalid_key() {
        let key = Key::new("k".repeat(MAX_KEY_BYTES - 5)).expect("key");
        assert!(matches!(key.staged(&txn()), Err(Error::InvalidKey { .. })));
    }

    #[test]
    fn transaction_ids_are_one_safe_segment() {
        for bad in ["", "a/b", ".", "a b", &"x".repeat(MAX_TXN_ID_BYTES + 1)] {
            assert!(TxnId::new(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (TxnId::generate(), TxnId::generate());
        assert!(TxnId::new(a.as_str()).is_ok() && a != b, "{a} {b}");
    }

    #[test]
    fn staged_names_parse_back_and_attachments_do_not() {
        let key = Key::new("a/b").expect("key");
        let staged = key.staged(&txn()).expect("staged");
        assert_eq!(
            parse_staged(staged.as_str()),
            Some((Some(key.clone()), txn()))
        );
        assert_eq!(parse_staged(".staging/t1"), Some((None, txn())));
        let attachment = key.staged_attachment(&txn(), "x").expect("attachment");
        assert_eq!(parse_staged(attachment.as_str()), None);
        assert_eq!(parse_staged(".txn/t1"), None);
    }

    #[test]
    fn attachment_names_parse_back() {
        let key = Key::new("a/b").expect("key");
        let attachment = key.staged_attachment(&txn(), "log/0").expect("attachment");
        assert_eq!(
            parse_attachment(attachment.as_str()),
            Some((key.clone(), txn(), "log/0"))
        );
        let staged = key.staged(&txn()).expect("staged");
        assert_eq!(parse_attachment(staged.as_str()), None);
    }

    #[test]
    fn only_the_store_side_constructor_accepts_reserved_segments() {
        assert!(Key::new("a/.staging/t").is_err());
        assert!(crate::raw::stored_key("a/.staging/t").is_ok_and(|k| k.is_reserved()));
    }
}
