//! Shared access signatures (SAS) signed with the account key, and the
//! pipeline policy that adds a SAS to every request.
//!
//! Formats (Azure Storage REST reference, "Create an account SAS" and
//! "Create a service SAS", signed version 2020-12-06 and later): the
//! signature is `base64(HMAC-SHA256(base64-decoded account key,
//! string-to-sign))`, where the string-to-sign is
//!
//! - account SAS: `account \n sp \n ss \n srt \n st \n se \n sip \n spr \n sv \n ses \n`
//! - service SAS for one blob: `sp \n st \n se \n /blob/account/container/blob \n si \n
//!   sip \n spr \n sv \n sr \n snapshot \n ses \n rscc \n rscd \n rsce \n rscl \n rsct`
//!
//! Times are UTC, `YYYY-MM-DDThh:mm:ssZ`. The start time is set 5 minutes in
//! the past to absorb clock skew.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::http::policies::{Policy, PolicyResult};
use azure_core::http::{Context, Request};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use ring::hmac;
use storage_core::{Error, Result};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The signed version (`sv`) of every SAS this crate signs.
pub(crate) const SAS_VERSION: &str = "2022-11-02";

/// Clock skew allowance: a SAS starts this long before it is signed.
const SKEW: Duration = Duration::from_secs(300);

/// Bytes escaped in SAS query values: everything but unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A storage account key, ready to sign.
#[derive(Clone)]
pub(crate) struct AccountKey {
    pub(crate) account: Arc<str>,
    key: hmac::Key,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AccountKey({}, …)", self.account)
    }
}

/// What a service SAS for one blob allows.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BlobPermission {
    /// `r`: Get Blob, Get Blob Properties.
    Read,
    /// `cw`: Put Blob (create or overwrite).
    Write,
}

fn timestamp(t: OffsetDateTime) -> Result<String> {
    t.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or_else(|| Error::invalid_argument("a SAS time is out of range"))
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

impl AccountKey {
    /// The key of `account`, as the portal shows it (base64).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the key is not base64.
    pub(crate) fn new(account: &str, key: &str) -> Result<Self> {
        let bytes = BASE64
            .decode(key.trim())
            .map_err(|_| Error::invalid_argument("the account key is not base64"))?;
        Ok(AccountKey {
            account: account.into(),
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        })
    }

    pub(crate) fn sign(&self, string_to_sign: &str) -> String {
        BASE64.encode(hmac::sign(&self.key, string_to_sign.as_bytes()))
    }

    /// An account SAS token (query string without `?`) for the blob
    /// service, granting read, add, create, write, delete and list on
    /// containers and objects from 5 minutes ago until `now + validity`.
    pub(crate) fn account_sas(&self, now: OffsetDateTime, validity: Duration) -> Result<String> {
        let (sp, ss, srt, spr) = ("racwdl", "b", "co", "https,http");
        let st = timestamp(now - SKEW)?;
        let se = timestamp(now + validity)?;
        let string_to_sign = format!(
            "{}\n{sp}\n{ss}\n{srt}\n{st}\n{se}\n\n{spr}\n{SAS_VERSION}\n\n",
            self.account
        );
        let sig = self.sign(&string_to_sign);
        Ok(format!(
            "sv={SAS_VERSION}&ss={ss}&srt={srt}&sp={sp}&st={}&se={}&spr={}&sig={}",
            encode(&st),
            encode(&se),
            encode(spr),
            encode(&sig)
        ))
    }

    /// A service SAS token for the one blob `container/blob` (the blob name
    /// unencoded), allowing `permission` until `now + validity`, over HTTPS
    /// only unless `allow_http`.
    pub(crate) fn blob_sas(
        &self,
        container: &str,
        blob: &str,
        permission: BlobPermission,
        now: OffsetDateTime,
        validity: Duration,
        allow_http: bool,
    ) -> Result<String> {
        let sp = match permission {
            BlobPermission::Read => "r",
            BlobPermission::Write => "cw",
        };
        let spr = if allow_http { "https,http" } else { "https" };
        let st = timestamp(now - SKEW)?;
        let se = timestamp(now + validity)?;
        let resource = format!("/blob/{}/{container}/{blob}", self.account);
        // sp st se resource si sip spr sv sr snapshot ses rscc rscd rsce rscl rsct
        let string_to_sign =
            format!("{sp}\n{st}\n{se}\n{resource}\n\n\n{spr}\n{SAS_VERSION}\nb\n\n\n\n\n\n\n");
        let sig = self.sign(&string_to_sign);
        Ok(format!(
            "sv={SAS_VERSION}&sr=b&sp={sp}&st={}&se={}&spr={}&sig={}",
            encode(&st),
            encode(&se),
            encode(spr),
            encode(&sig)
        ))
    }
}

/// Where the policy's SAS comes from.
#[derive(Debug)]
enum Source {
    /// A token given by the user, sent as is.
    Fixed(String),
    /// Account SAS tokens signed on demand and cached until a fifth of their
    /// validity is left.
    Signing(Box<Signing>),
}

/// The state of [`Source::Signing`].
#[derive(Debug)]
struct Signing {
    key: AccountKey,
    validity: Duration,
    cached: Mutex<Option<(String, OffsetDateTime)>>,
}

/// A per-try pipeline policy that appends a SAS to the request's query.
#[derive(Debug)]
pub(crate) struct SasPolicy {
    source: Source,
}

impl SasPolicy {
    /// Sends `token` (a SAS query string, or a URL whose query is one).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty token.
    pub(crate) fn fixed(token: &str) -> Result<Self> {
        let query = match token.split_once('?') {
            Some((_, query)) => query,
            None => token,
        };
        if query.is_empty() || !query.contains("sig=") {
            return Err(Error::invalid_argument(
                "the SAS token has no signature (sig=)",
            ));
        }
        Ok(SasPolicy {
            source: Source::Fixed(query.to_owned()),
        })
    }

    /// Signs account SAS tokens with `key`, each valid for `validity`.
    pub(crate) fn signing(key: AccountKey, validity: Duration) -> Self {
        SasPolicy {
            source: Source::Signing(Box::new(Signing {
                key,
                validity,
                cached: Mutex::new(None),
            })),
        }
    }

    /// The token to send now.
    fn token(&self) -> Result<String> {
        match &self.source {
            Source::Fixed(token) => Ok(token.clone()),
            Source::Signing(signing) => {
                let Signing {
                    key,
                    validity,
                    cached,
                } = &**signing;
                let now = OffsetDateTime::now_utc();
                let mut cached = cached.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((token, renew_at)) = cached.as_ref()
                    && now < *renew_at
                {
                    return Ok(token.clone());
                }
                let token = key.account_sas(now, *validity)?;
                let renew_at = now + validity.mul_f64(0.8);
                *cached = Some((token.clone(), renew_at));
                Ok(token)
            }
        }
    }
}

#[allow(elided_lifetimes_in_paths)] // the trait's signature, from async_trait
#[async_trait]
impl Policy for SasPolicy {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let token = self.token().map_err(|e| {
            azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e.to_string())
        })?;
        let url = request.url_mut();
        let query = match url.query() {
            Some(q) if !q.is_empty() => format!("{q}&{token}"),
            _ => token,
        };
        url.set_query(Some(&query));
        send_next(ctx, request, next).await
    }
}

/// Hands `request` to the next policy of the pipeline (the transport is
/// always last, so a policy of this crate is never the end).
pub(crate) async fn send_next(
    ctx: &Context<'_>,
    request: &mut Request,
    next: &[Arc<dyn Policy>],
) -> PolicyResult {
    match next.split_first() {
        Some((first, rest)) => first.send(ctx, request, rest).await,
        None => Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Other,
            "a signing policy is the last policy of the pipeline",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> AccountKey {
        AccountKey::new(crate::EMULATOR_ACCOUNT, crate::EMULATOR_KEY).expect("key")
    }

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).expect("time")
    }

    // Expected signatures computed outside this crate (Python `hmac` over
    // the documented strings-to-sign, with the emulator's public key).
    #[test]
    fn account_sas_signs_the_documented_string() {
        let token = key()
            .account_sas(at(1_800_000_000), Duration::from_secs(3600))
            .expect("sas");
        assert_eq!(
            token,
            "sv=2022-11-02&ss=b&srt=co&sp=racwdl&st=2027-01-15T07%3A55%3A00Z&se=2027-01-15T09%3A00%3A00Z&spr=https%2Chttp&sig=W%2BIQjhc%2FSaH%2Fg1vgoz6tZBghD5NNnQYWH6DCGSH%2FiGc%3D"
        );
    }

    #[test]
    fn blob_sas_signs_the_documented_string() {
        let token = key()
            .blob_sas(
                "box",
                "a/b.txt",
                BlobPermission::Read,
                at(1_800_000_000),
                Duration::from_secs(3600),
                false,
            )
            .expect("sas");
        assert!(
            token.ends_with("&sig=aChihp8nOJsemEL4sM8XXQ%2FziOO9hEjnwv%2Bu7vfDyXA%3D"),
            "{token}"
        );
    }

    #[test]
    fn a_token_is_renewed_once_four_fifths_of_its_validity_passed() {
        let policy = SasPolicy::signing(key(), Duration::from_secs(3600));
        let first = policy.token().expect("token");
        assert_eq!(policy.token().expect("token"), first, "cached");
        let Source::Signing(signing) = &policy.source else {
            panic!("a signing policy");
        };
        let stale = OffsetDateTime::now_utc() - Duration::from_secs(1);
        if let Some((_, renew_at)) = signing.cached.lock().expect("lock").as_mut() {
            *renew_at = stale;
        }
        policy.token().expect("token");
        let renew_at = signing.cached.lock().expect("lock").as_ref().map(|c| c.1);
        assert!(
            renew_at.is_some_and(|r| r > OffsetDateTime::now_utc() + Duration::from_secs(2000)),
            "a fresh token was signed: {renew_at:?}"
        );
    }

    #[test]
    fn a_fixed_token_without_a_signature_is_refused() {
        assert!(SasPolicy::fixed("sv=2022-11-02&sp=r").is_err());
        assert!(SasPolicy::fixed("https://a.blob.core.windows.net/c?sv=1&sig=abc").is_ok());
    }

    #[test]
    fn a_key_that_is_not_base64_is_refused() {
        assert!(AccountKey::new("a", "not base64!").is_err());
    }
}
