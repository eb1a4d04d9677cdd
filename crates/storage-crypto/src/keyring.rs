//! Key-encryption keys (KEKs): identified, one active for new writes, the
//! others kept for reading older objects.

use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use storage_core::{Error, Result};
use zeroize::Zeroizing;

use crate::format::{DEK_BYTES, MAX_KEK_ID_BYTES, WRAPPED_DEK_BYTES};

/// Bytes of a KEK: AES-256.
pub const KEK_BYTES: usize = 32;

/// Whether `id` is a valid KEK id: 1 to 31 bytes of ASCII letters, digits,
/// `.`, `_` and `-`.
pub(crate) fn valid_kek_id(id: &str) -> bool {
    (1..=MAX_KEK_ID_BYTES).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// One KEK: its id, its bytes and `ring`'s key built from them.
struct Kek {
    id: String,
    #[allow(dead_code)] // Kept only to be wiped on drop.
    material: Box<Zeroizing<[u8; KEK_BYTES]>>,
    key: LessSafeKey,
}

/// A set of identified AES-256 key-encryption keys (KEKs), one of them
/// active.
///
/// The active KEK wraps the data key (DEK) of every new object; the others
/// only unwrap the DEKs of objects written before a rotation, until
/// [`Encrypted::rewrap`](crate::Encrypted::rewrap) has moved those objects
/// to the active KEK. The keyring's copies of key material are wiped from
/// memory when it is dropped (`zeroize`); the AES key schedules `ring`
/// derives from them (built once per KEK, kept for the keyring's life, and
/// once per object for its DEK) are not wiped by `ring`. `Debug` shows ids
/// only.
///
/// Text form ([`Keyring::from_text`], [`Keyring::from_file`],
/// [`Keyring::from_env`]): entries `ID=BASE64` separated by newlines or
/// commas, where `BASE64` is the 32-byte key in standard base64 (RFC 4648
/// section 4); blank lines and lines starting with `#` are skipped; the
/// last entry is the active KEK, so a rotation appends a line.
pub struct Keyring {
    /// Boxed, so that growing the list moves pointers, never key bytes;
    /// with `ring`'s key for it, built once.
    keys: Vec<Kek>,
    active: usize,
}

impl Keyring {
    /// A keyring holding one KEK, active.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an id that is not 1 to 31 bytes of
    /// ASCII letters, digits, `.`, `_` and `-`, or a key that is not 32
    /// bytes.
    pub fn new(id: &str, key: &[u8]) -> Result<Self> {
        let mut ring = Keyring {
            keys: Vec::new(),
            active: 0,
        };
        ring.add(id, key)?;
        Ok(ring)
    }

    /// Adds a KEK and makes it the active one: a rotation. Objects under
    /// the earlier KEKs stay readable.
    ///
    /// # Errors
    /// As [`Keyring::new`], and [`Error::InvalidArgument`] for an id
    /// already in the keyring.
    pub fn rotate_to(mut self, id: &str, key: &[u8]) -> Result<Self> {
        self.add(id, key)?;
        Ok(self)
    }

    /// Adds a KEK for reading only; the active KEK stays.
    ///
    /// # Errors
    /// As [`Keyring::rotate_to`].
    pub fn with_reader(mut self, id: &str, key: &[u8]) -> Result<Self> {
        let active = self.active;
        self.add(id, key)?;
        self.active = active;
        Ok(self)
    }

    fn add(&mut self, id: &str, key: &[u8]) -> Result<()> {
        if !valid_kek_id(id) {
            return Err(Error::invalid_argument(format!(
                "KEK id {id:?} must be 1 to {MAX_KEK_ID_BYTES} bytes of ASCII letters, digits, '.', '_' or '-'"
            )));
        }
        if self.keys.iter().any(|k| k.id == id) {
            return Err(Error::invalid_argument(format!(
                "KEK id {id:?} is in the keyring twice"
            )));
        }
        if key.len() != KEK_BYTES {
            return Err(Error::invalid_argument(format!(
                "KEK {id:?} is {} bytes; an AES-256 KEK is {KEK_BYTES} bytes",
                key.len()
            )));
        }
        let mut material = Box::new(Zeroizing::new([0u8; KEK_BYTES]));
        material.copy_from_slice(key);
        let unbound = UnboundKey::new(&AES_256_GCM, material.as_slice())
            .map_err(|_| Error::invalid_argument(format!("KEK {id:?} is not an AES-256 key")))?;
        self.keys.push(Kek {
            id: id.to_owned(),
            material,
            key: LessSafeKey::new(unbound),
        });
        self.active = self.keys.len() - 1;
        Ok(())
    }

    /// A keyring from its text form (see the type's docs).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an entry without `=`, bad base64, a
    /// bad id or key length, a repeated id, or no entry at all; the message
    /// names the entry's id, never key material.
    pub fn from_text(text: &str) -> Result<Self> {
        let mut ring: Option<Keyring> = None;
        for entry in text
            .split(['\n', ','])
            .map(str::trim)
            .filter(|e| !e.is_empty() && !e.starts_with('#'))
        {
            let (id, encoded) = entry.split_once('=').ok_or_else(|| {
                Error::invalid_argument("a keyring entry must be ID=BASE64 (no '=' found)")
            })?;
            let key = Zeroizing::new(STANDARD.decode(encoded.trim()).map_err(|_| {
                Error::invalid_argument(format!("KEK {:?} is not standard base64", id.trim()))
            })?);
            ring = Some(match ring {
                None => Keyring::new(id.trim(), &key)?,
                Some(r) => r.rotate_to(id.trim(), &key)?,
            });
        }
        ring.ok_or_else(|| Error::invalid_argument("the keyring text holds no KEK"))
    }

    /// A keyring from a file holding its text form.
    ///
    /// # Errors
    /// [`Error::Backend`] when the file cannot be read; those of
    /// [`Keyring::from_text`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Error::io(format!("reading keyring file {}", path.display()), e))?,
        );
        Keyring::from_text(&text)
    }

    /// A keyring from the environment variable `name` holding its text form
    /// (entries separated by commas).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the variable is unset or not
    /// Unicode; those of [`Keyring::from_text`].
    pub fn from_env(name: &str) -> Result<Self> {
        let text = Zeroizing::new(
            std::env::var(name)
                .map_err(|e| Error::invalid_argument(format!("keyring variable {name}: {e}")))?,
        );
        Keyring::from_text(&text)
    }

    /// The id of the active KEK.
    pub fn active_id(&self) -> &str {
        &self.keys[self.active].id
    }

    /// The ids of every KEK, in the order they were added.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    fn key(&self, id: &str) -> Option<&LessSafeKey> {
        self.keys.iter().find(|k| k.id == id).map(|k| &k.key)
    }

    /// Wraps `dek` with the active KEK under `nonce` and `aad`.
    pub(crate) fn wrap(
        &self,
        dek: &[u8; DEK_BYTES],
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
    ) -> Result<[u8; WRAPPED_DEK_BYTES]> {
        let kek = self
            .key(self.active_id())
            .ok_or_else(|| internal("the active KEK cannot be loaded"))?;
        let mut out = [0u8; WRAPPED_DEK_BYTES];
        out[..DEK_BYTES].copy_from_slice(dek);
        let tag = kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[..DEK_BYTES],
            )
            .map_err(|_| internal("wrapping a DEK failed"))?;
        out[DEK_BYTES..].copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Unwraps a DEK wrapped with KEK `id`; the reason it cannot otherwise.
    pub(crate) fn unwrap(
        &self,
        id: &str,
        nonce: [u8; NONCE_LEN],
        wrapped: &[u8; WRAPPED_DEK_BYTES],
        aad: &[u8],
    ) -> std::result::Result<Zeroizing<[u8; DEK_BYTES]>, String> {
        let kek = self.key(id).ok_or_else(|| {
            format!(
                "the object's DEK is wrapped with KEK {id:?}, which is not in the keyring (it holds {:?})",
                self.ids().collect::<Vec<_>>()
            )
        })?;
        let mut buffer = Zeroizing::new(*wrapped);
        let plain = kek
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                buffer.as_mut(),
            )
            .map_err(|_| {
                format!("the DEK does not unwrap with KEK {id:?}: the header or the context differs from what was written")
            })?;
        let mut dek = Zeroizing::new([0u8; DEK_BYTES]);
        dek.copy_from_slice(plain);
        Ok(dek)
    }

    /// Encrypts `plain` with the active KEK under a fresh random nonce: `id length (1) ‖ id ‖ nonce (12) ‖ ciphertext ‖
    /// tag (16)`.
    pub(crate) fn seal_small(&self, plain: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let id = self.active_id();
        let kek = self
            .key(id)
            .ok_or_else(|| internal("the active KEK cannot be loaded"))?;
        let nonce: [u8; NONCE_LEN] = crate::random_array()?;
        let mut out = Vec::with_capacity(1 + id.len() + NONCE_LEN + plain.len() + 16);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = kek
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[start..],
            )
            .map_err(|_| internal("sealing metadata failed"))?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens what [`Keyring::seal_small`] sealed; the reason it cannot
    /// otherwise.
    pub(crate) fn open_small(
        &self,
        sealed: &[u8],
        aad: &[u8],
    ) -> std::result::Result<(String, Zeroizing<Vec<u8>>), String> {
        let malformed = || "the encrypted metadata is malformed".to_owned();
        let (&id_len, rest) = sealed.split_first().ok_or_else(malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + 16 {
            return Err(malformed());
        }
        let id = std::str::from_utf8(&rest[..id_len]).map_err(|_| malformed())?;
        let kek = self.key(id).ok_or_else(|| {
            format!("the metadata is sealed with KEK {id:?}, which is not in the keyring")
        })?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&rest[id_len..id_len + NONCE_LEN]);
        let mut buffer = Zeroizing::new(rest[id_len + NONCE_LEN..].to_vec());
        let plain_len = kek
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                buffer.as_mut_slice(),
            )
            .map_err(|_| "the encrypted metadata does not authenticate".to_owned())?
            .len();
        buffer.truncate(plain_len);
        Ok((id.to_owned(), buffer))
    }
}

fn internal(message: &str) -> Error {
    Error::Backend {
        transient: false,
        message: message.to_owned(),
        source: None,
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .field("active", &self.active_id())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_entry_of_the_text_form_is_active() {
        let text = format!(
            "# rotated 2026-11\nold={}\nnew={}\n",
            STANDARD.encode([1u8; 32]),
            STANDARD.encode([2u8; 32])
        );
        let ring = Keyring::from_text(&text).expect("valid keyring");
        assert_eq!(ring.active_id(), "new");
        assert_eq!(ring.ids().collect::<Vec<_>>(), ["old", "new"]);
    }

    #[test]
    fn a_key_of_the_wrong_length_is_refused_without_showing_it() {
        let err = Keyring::from_text(&format!("k={}", STANDARD.encode([1u8; 16])))
            .expect_err("16 bytes is not AES-256");
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains("16 bytes"), "{err}");
    }

    #[test]
    fn debug_shows_ids_and_no_key_material() {
        let ring = Keyring::new("k1", &[0xAB; 32]).expect("valid");
        let shown = format!("{ring:?}");
        assert!(
            shown.contains("k1") && !shown.contains("171") && !shown.contains("AB"),
            "{shown}"
        );
    }

    #[test]
    fn a_dek_unwraps_only_with_the_same_associated_data() {
        let ring = Keyring::new("k1", &[3; 32]).expect("valid");
        let wrapped = ring.wrap(&[5; 32], [0; 12], b"ctx").expect("wraps");
        assert_eq!(
            *ring.unwrap("k1", [0; 12], &wrapped, b"ctx").expect("opens"),
            [5; 32]
        );
        assert!(ring.unwrap("k1", [0; 12], &wrapped, b"other").is_err());
        let missing = ring
            .unwrap("k9", [0; 12], &wrapped, b"ctx")
            .expect_err("no such KEK");
        assert!(missing.contains("\"k9\""), "{missing}");
    }
}
