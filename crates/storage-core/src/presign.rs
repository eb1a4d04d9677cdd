//! Presigned URLs for stores that have no HTTP server of their own
//! (`FsBackend`, `LogStore`): [`LocalPresigner`] signs URLs under a base URL
//! that the application serves, and verifies them when they come back.
//!
//! # Format
//!
//! ```text
//! {base}/{key, each segment percent-encoded}?X-Storage-Method={GET|PUT}&X-Storage-Expires={unix seconds}&X-Storage-Signature={hex}
//! ```
//!
//! The signature is HMAC-SHA256 (RFC 2104) under the presigner's secret of
//! the UTF-8 text `"{base}\n{method}\n{key}\n{expires}"`, lower-case hex.
//! The key is signed, not the URL's spelling of it, so any equivalent
//! percent-encoding verifies; the method is signed, so a GET URL cannot be
//! used to PUT; the base URL is signed, so a URL made for one store does
//! not verify at another base, even with the same secret. Verification
//! compares in constant time (`hmac`'s `verify_slice`). The secret should
//! be 32 random bytes (or more), one per deployment.
//!
//! The server behind the base URL calls [`LocalPresigner::verify`] with the
//! request's method and target (path and query) and, when it succeeds,
//! serves the returned key from the store (`get` for `GET`, `put` of the
//! request body for `PUT`). The store's own ETags and conditions apply as
//! for any other call.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use crate::{Error, Key, PresignMethod, Result};

/// Shortest secret accepted, in bytes: HMAC-SHA256's output size.
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest validity of a URL: 7 days, as S3 and GCS allow.
pub const MAX_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Bytes escaped in a key segment: everything but RFC 3986 unreserved
/// characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Signs and verifies presigned URLs under a base URL (see the
/// [module docs](self) for the format).
#[derive(Clone)]
pub struct LocalPresigner {
    /// The base URL, without a trailing `/`.
    base: String,
    /// The path of the base URL, without a trailing `/` (empty for the
    /// root).
    base_path: String,
    secret: Vec<u8>,
}

impl std::fmt::Debug for LocalPresigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalPresigner")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl LocalPresigner {
    /// A presigner for URLs under `base_url` (`http://` or `https://`, no
    /// query or fragment), signing with `secret`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a base URL of another form or a
    /// secret shorter than [`MIN_SECRET_BYTES`].
    pub fn new(base_url: &str, secret: impl Into<Vec<u8>>) -> Result<Self> {
        let secret = secret.into();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(Error::invalid_argument(format!(
                "a presigning secret needs at least {MIN_SECRET_BYTES} bytes, got {}",
                secret.len()
            )));
        }
        let rest = base_url
            .strip_prefix("http://")
            .or_else(|| base_url.strip_prefix("https://"))
            .ok_or_else(|| {
                Error::invalid_argument(format!(
                    "a presigning base URL starts with http:// or https://: {base_url:?}"
                ))
            })?;
        // Only characters a client sends as they are (RFC 3986 unreserved,
        // sub-delimiters, `:`, `@`, `/`), and no dot segments, so that the
        // request target's path starts with the base path byte for byte.
        let plain = |c: char| c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/[]".contains(c);
        let dotted = rest.split('/').skip(1).any(|s| s == "." || s == "..");
        if rest.is_empty() || rest.starts_with('/') || !rest.chars().all(plain) || dotted {
            return Err(Error::invalid_argument(format!(
                "a presigning base URL is a host and an optional path of characters sent unencoded, without dot segments, query or fragment: {base_url:?}"
            )));
        }
        let base = base_url.trim_end_matches('/').to_owned();
        let base_path = match rest.find('/') {
            Some(i) => rest[i..].trim_end_matches('/').to_owned(),
            None => String::new(),
        };
        Ok(LocalPresigner {
            base,
            base_path,
            secret,
        })
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A URL that allows `method` on `key` for `expires_in` from now.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an expiry of zero or over
    /// [`MAX_EXPIRY`].
    pub fn sign(&self, method: PresignMethod, key: &Key, expires_in: Duration) -> Result<String> {
        self.sign_at(method, key, expires_in, SystemTime::now())
    }

    /// [`LocalPresigner::sign`] as if the time were `now`.
    ///
    /// # Errors
    /// As [`LocalPresigner::sign`].
    pub fn sign_at(
        &self,
        method: PresignMethod,
        key: &Key,
        expires_in: Duration,
        now: SystemTime,
    ) -> Result<String> {
        if expires_in.is_zero() || expires_in > MAX_EXPIRY {
            return Err(Error::invalid_argument(
                "a presigned URL expires after 1 second to 7 days",
            ));
        }
        // Rounded up: the URL is good for at least `expires_in`.
        let expires = now
            .checked_add(expires_in)
            .and_then(|end| end.duration_since(UNIX_EPOCH).ok())
            .map_or(u64::MAX, |end| {
                end.as_secs()
                    .saturating_add(u64::from(end.subsec_nanos() > 0))
            });
        let path: Vec<String> = key
            .as_str()
            .split('/')
            .map(|segment| utf8_percent_encode(segment, SEGMENT).to_string())
            .collect();
        Ok(format!(
            "{}/{}?X-Storage-Method={}&X-Storage-Expires={expires}&X-Storage-Signature={}",
            self.base,
            path.join("/"),
            method.as_str(),
            hex::encode(
                self.mac(method.as_str(), key.as_str(), expires)
                    .finalize()
                    .into_bytes()
            )
        ))
    }

    /// Checks a request for a presigned URL: `method` is the request's
    /// (`GET`, `HEAD` for a GET URL, or `PUT`), `target` its path and query
    /// exactly as received, before any percent-decoding
    /// (`/base/path/key?X-Storage-…`), `now` the server's clock. Returns the
    /// key the URL names: the key of the store the presigner was given to,
    /// to be served from that store itself (not from a view over it, such
    /// as `Prefixed`, that would name it differently).
    ///
    /// # Errors
    /// [`Error::PermissionDenied`] when the signature does not match (a
    /// changed key, method, expiry or secret), the URL has expired, or the
    /// request's method is not the signed one; [`Error::InvalidArgument`]
    /// when the target is not a presigned URL of this base (missing
    /// parameters, another path, a key that is not valid).
    pub fn verify(&self, method: &str, target: &str, now: SystemTime) -> Result<Key> {
        let malformed = |what: &str| Error::invalid_argument(format!("presigned URL: {what}"));
        let (path, query) = target
            .split_once('?')
            .ok_or_else(|| malformed("no query"))?;
        let encoded = path
            .strip_prefix(self.base_path.as_str())
            .and_then(|p| p.strip_prefix('/'))
            .ok_or_else(|| malformed("the path is not under the base URL"))?;
        let name = percent_decode_str(encoded)
            .decode_utf8()
            .map_err(|_| malformed("the key is not UTF-8"))?;
        let key = Key::new(name.as_ref()).map_err(|e| malformed(&format!("{e}")))?;
        let (mut signed_method, mut expires, mut signature) = (None, None, None);
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("X-Storage-Method", v)) => signed_method = Some(v),
                Some(("X-Storage-Expires", v)) => expires = Some(v),
                Some(("X-Storage-Signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let signed_method = signed_method.ok_or_else(|| malformed("no X-Storage-Method"))?;
        let expires = expires.ok_or_else(|| malformed("no X-Storage-Expires"))?;
        let expires: u64 = expires
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| expires.parse().ok())
            .flatten()
            .ok_or_else(|| malformed("X-Storage-Expires is not a number of seconds"))?;
        let signature = hex::decode(signature.ok_or_else(|| malformed("no X-Storage-Signature"))?)
            .map_err(|_| malformed("X-Storage-Signature is not hex"))?;
        let denied = |why: &str| Error::PermissionDenied {
            key: Some(key.to_string()),
            message: format!("presigned URL: {why}"),
        };
        self.mac(signed_method, key.as_str(), expires)
            .verify_slice(&signature)
            .map_err(|_| denied("the signature does not match"))?;
        if unix_seconds(now) >= expires {
            return Err(denied("expired"));
        }
        let allowed = method == signed_method || (method == "HEAD" && signed_method == "GET");
        if !allowed {
            return Err(denied(&format!(
                "signed for {signed_method}, used for {method}"
            )));
        }
        Ok(key)
    }

    /// The HMAC of one URL's signed text (see the [module docs](self)).
    fn mac(&self, method: &str, key: &str, expires: u64) -> Hmac<Sha256> {
        // HMAC takes keys of any length: `new_from_slice` cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(format!("{}\n{method}\n{key}\n{expires}", self.base).as_bytes());
        mac
    }
}

/// Seconds since the Unix epoch (0 before it).
fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    fn presigner() -> LocalPresigner {
        LocalPresigner::new("http://127.0.0.1:8080/files/", SECRET).expect("presigner")
    }

    fn target(url: &str) -> &str {
        url.strip_prefix("http://127.0.0.1:8080")
            .expect("under the base")
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn a_signed_url_verifies_to_its_key_until_it_expires() {
        let key = Key::new("dir/a b+é.txt").expect("key");
        let url = presigner()
            .sign_at(PresignMethod::Get, &key, Duration::from_secs(60), at(1_000))
            .expect("signed");
        assert!(
            url.starts_with("http://127.0.0.1:8080/files/dir/a%20b%2B%C3%A9.txt?"),
            "{url}"
        );
        assert_eq!(
            presigner().verify("GET", target(&url), at(1_059)).ok(),
            Some(key)
        );
        assert!(matches!(
            presigner().verify("GET", target(&url), at(1_060)),
            Err(Error::PermissionDenied { .. })
        ));
    }

    #[test]
    fn a_get_url_serves_head_but_not_put() {
        let key = Key::new("k").expect("key");
        let url = presigner()
            .sign_at(PresignMethod::Get, &key, Duration::from_secs(60), at(0))
            .expect("signed");
        assert!(presigner().verify("HEAD", target(&url), at(1)).is_ok());
        assert!(matches!(
            presigner().verify("PUT", target(&url), at(1)),
            Err(Error::PermissionDenied { .. })
        ));
    }

    #[test]
    fn changing_the_key_the_expiry_or_the_secret_breaks_the_signature() {
        let key = Key::new("a").expect("key");
        let url = presigner()
            .sign_at(PresignMethod::Put, &key, Duration::from_secs(60), at(0))
            .expect("signed");
        let t = target(&url);
        let other_key = t.replace("/files/a?", "/files/b?");
        let later = t.replace("X-Storage-Expires=60", "X-Storage-Expires=6000");
        let other_secret = LocalPresigner::new("http://127.0.0.1:8080/files", [8; 32]).expect("p");
        for (what, outcome) in [
            ("key", presigner().verify("PUT", &other_key, at(1))),
            ("expiry", presigner().verify("PUT", &later, at(1))),
            ("secret", other_secret.verify("PUT", t, at(1))),
        ] {
            assert!(
                matches!(outcome, Err(Error::PermissionDenied { .. })),
                "{what}: {outcome:?}"
            );
        }
    }

    #[test]
    fn a_url_for_one_base_does_not_verify_at_another_with_the_same_secret() {
        let key = Key::new("k").expect("key");
        let url = presigner()
            .sign_at(PresignMethod::Put, &key, Duration::from_secs(60), at(0))
            .expect("signed");
        let other = LocalPresigner::new("http://127.0.0.1:8080/other", SECRET).expect("p");
        let moved = target(&url).replace("/files/", "/other/");
        assert!(matches!(
            other.verify("PUT", &moved, at(1)),
            Err(Error::PermissionDenied { .. })
        ));
    }

    #[test]
    fn a_url_is_good_for_at_least_its_expiry() {
        let key = Key::new("k").expect("key");
        let half_past = UNIX_EPOCH + Duration::from_millis(1_500);
        let url = presigner()
            .sign_at(PresignMethod::Get, &key, Duration::from_secs(1), half_past)
            .expect("signed");
        let just_before_end = UNIX_EPOCH + Duration::from_millis(2_499);
        assert!(
            presigner()
                .verify("GET", target(&url), just_before_end)
                .is_ok()
        );
    }

    #[test]
    fn malformed_targets_are_invalid_arguments() {
        for target in [
            "/files/a/%2E%2E/b?X-Storage-Method=GET&X-Storage-Expires=9&X-Storage-Signature=00",
            "/files/k?X-Storage-Method=GET&X-Storage-Expires=+9&X-Storage-Signature=00",
            "/files/k",
            "/elsewhere/k?X-Storage-Method=GET&X-Storage-Expires=9&X-Storage-Signature=00",
            "/files/k?X-Storage-Method=GET&X-Storage-Expires=soon&X-Storage-Signature=00",
            "/files/k?X-Storage-Method=GET&X-Storage-Expires=9&X-Storage-Signature=zz",
            "/files/k?X-Storage-Method=GET&X-Storage-Expires=9",
        ] {
            let outcome = presigner().verify("GET", target, at(0));
            assert!(
                matches!(outcome, Err(Error::InvalidArgument { .. })),
                "{target}: {outcome:?}"
            );
        }
    }

    #[test]
    fn short_secrets_bad_bases_and_bad_expiries_are_refused() {
        assert!(LocalPresigner::new("http://h", [0; 31]).is_err());
        for base in [
            "ftp://h",
            "http://",
            "http://h/?q",
            "h/p",
            "http:///p",
            "http://h/a b",
            "http://h/caf\u{e9}",
            "http://h/a/../b",
            "http://h/%7e",
        ] {
            assert!(LocalPresigner::new(base, SECRET).is_err(), "{base}");
        }
        let key = Key::new("k").expect("key");
        for expiry in [Duration::ZERO, MAX_EXPIRY + Duration::from_secs(1)] {
            assert!(matches!(
                presigner().sign(PresignMethod::Get, &key, expiry),
                Err(Error::InvalidArgument { .. })
            ));
        }
    }
}
