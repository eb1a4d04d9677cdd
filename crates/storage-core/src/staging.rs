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

use crate::{Error, Key, MAX_KEY_BYTES, Result};

/// Longest transaction id, in bytes.
pub const MAX_TXN_ID_BYTES: usize = 64;

/// A transaction id: one key segment of 1 to [`MAX_TXN_ID_BYTES`] ASCII
/// letters, digits, `-` and `_`.
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
    fn only_the_store_side_constructor_accepts_reserved_segments() {
        assert!(Key::new("a/.staging/t").is_err());
        assert!(crate::raw::stored_key("a/.staging/t").is_ok_and(|k| k.is_reserved()));
    }
}
