//! Presigned URLs of `AzureBackend`: service SAS tokens signed with the
//! account key (see [`crate::sas`]).

use std::time::Duration;

use storage_core::{Backend, Error, Key, PresignMethod, Result};
use time::OffsetDateTime;

use crate::backend::AzureBackend;
use crate::sas::BlobPermission;

impl AzureBackend {
    /// The SAS URL of [`Backend::presign`]: a service SAS for this one
    /// blob, signed with the account key ("Create a service SAS"); a `PUT`
    /// through it must send `x-ms-blob-type: BlockBlob` (Put Blob).
    pub(crate) fn sas_url(
        &self,
        key: &Key,
        method: PresignMethod,
        expires_in: Duration,
    ) -> Result<String> {
        self.check_name(key)?;
        let permission = match method {
            PresignMethod::Get => BlobPermission::Read,
            PresignMethod::Put => BlobPermission::Write,
        };
        let Some(account_key) = &self.inner.account_key else {
            return Err(Error::Unsupported {
                operation: "SAS URLs without an account key",
                backend: self.name().to_owned(),
            });
        };
        if expires_in.is_zero() {
            return Err(Error::invalid_argument("a SAS URL needs a non-zero expiry"));
        }
        let mut url = self.blob_url(key);
        let token = account_key.blob_sas(
            self.container(),
            &self.full_name(key),
            permission,
            OffsetDateTime::now_utc(),
            expires_in,
            url.scheme() == "http",
        )?;
        url.set_query(Some(&token));
        Ok(url.into())
    }
}
