//! Checking a streamed read against the SHA-256 recorded at put (DESIGN
//! section 2, rule 9), shared by the backends that stream from a server.

use futures::StreamExt;
use futures::stream;
use sha2::{Digest, Sha256};

use crate::{ByteStream, Error, Key};

/// Passes `body` through and, once it ends, compares the SHA-256 of every
/// byte with `expected`; a difference ends the stream with
/// [`Error::ChecksumMismatch`] instead of its normal end. With `expected`
/// `None` the body is passed through unchanged.
///
/// A reader that stops early never sees the verdict: only full reads are
/// checked, as the contract says.
pub fn verify_sha256(body: ByteStream, key: Key, expected: Option<[u8; 32]>) -> ByteStream {
    let Some(expected) = expected else {
        return body;
    };
    let state = (body, Some(Sha256::new()), key);
    stream::try_unfold(state, move |(mut body, mut hasher, key)| async move {
        match body.next().await {
            Some(Ok(chunk)) => {
                if let Some(h) = hasher.as_mut() {
                    h.update(&chunk);
                }
                Ok(Some((chunk, (body, hasher, key))))
            }
            Some(Err(e)) => Err(e),
            None => {
                if let Some(h) = hasher.take() {
                    let actual: [u8; 32] = h.finalize().into();
                    if actual != expected {
                        return Err(Error::ChecksumMismatch {
                            key: key.to_string(),
                            expected: hex::encode(expected),
                            actual: hex::encode(actual),
                        });
                    }
                }
                Ok(None)
            }
        }
    })
    .boxed()
}

/// A SHA-256 written as 64 hex digits (how backends store it as object
/// metadata), or `None` when `hex` is not one.
pub fn sha256_from_hex(hex: &str) -> Option<[u8; 32]> {
    hex::decode(hex).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures::TryStreamExt;

    fn body(parts: &[&'static str]) -> ByteStream {
        let parts: Vec<crate::Result<Bytes>> = parts
            .iter()
            .map(|p| Ok(Bytes::from_static(p.as_bytes())))
            .collect();
        stream::iter(parts).boxed()
    }

    #[test]
    fn hex_sha256_parses_only_at_full_length() {
        assert_eq!(sha256_from_hex(&"ab".repeat(32)), Some([0xab; 32]));
        assert_eq!(sha256_from_hex("abcd"), None);
        assert_eq!(sha256_from_hex(&"zz".repeat(32)), None);
    }

    #[tokio::test]
    async fn matching_content_ends_normally_and_changed_content_does_not() {
        let key = Key::new("k").expect("key");
        let sha: [u8; 32] = Sha256::digest(b"hello world").into();
        let good: Vec<Bytes> = verify_sha256(body(&["hello ", "world"]), key.clone(), Some(sha))
            .try_collect()
            .await
            .expect("verified");
        assert_eq!(good.concat(), b"hello world");
        let bad: Result<Vec<Bytes>, _> = verify_sha256(body(&["hello ", "w0rld"]), key, Some(sha))
            .try_collect()
            .await;
        assert!(
            matches!(bad, Err(Error::ChecksumMismatch { .. })),
            "{bad:?}"
        );
    }
}
