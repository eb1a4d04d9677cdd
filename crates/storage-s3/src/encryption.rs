//! Server-side encryption: SSE-S3, SSE-KMS and SSE-C, sent on every request
//! that needs it (Amazon S3 User Guide, "Protecting data with server-side
//! encryption"; API Reference, PutObject, CreateMultipartUpload,
//! UploadPart, GetObject, HeadObject, CopyObject).
//!
//! | encryption | PutObject, CreateMultipartUpload, CopyObject (destination) | UploadPart, CompleteMultipartUpload | GetObject, HeadObject | CopyObject (source) |
//! |---|---|---|---|---|
//! | SSE-S3 | `x-amz-server-side-encryption: AES256` | — | — | — |
//! | SSE-KMS | `x-amz-server-side-encryption: aws:kms`, `…-aws-kms-key-id`, `…-bucket-key-enabled` | — | — | — |
//! | SSE-C | `x-amz-server-side-encryption-customer-algorithm: AES256`, `…-customer-key`, `…-customer-key-MD5` | the same three (CompleteMultipartUpload needs them for uploads created with a checksum algorithm, as every upload here is) | the same three | `x-amz-copy-source-server-side-encryption-customer-*` |
//!
//! Under SSE-C every object of the backend is written and read with the one
//! configured key; a presigned URL of such an object needs the three
//! customer headers on the request that uses it. The ETag of an SSE-KMS or
//! SSE-C object is not the MD5 of its content (S3: "Common Response
//! Headers"), which this crate never assumes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};

/// How S3 encrypts the objects this backend writes; see
/// [`S3Config::server_side_encryption`](crate::S3Config::server_side_encryption).
#[derive(Clone, PartialEq, Eq)]
pub enum S3Encryption {
    /// SSE-S3: keys managed by S3 (`AES256`).
    S3Managed,
    /// SSE-KMS: keys in AWS KMS.
    Kms {
        /// The KMS key's id, ARN or alias; `None` uses the account's
        /// default `aws/s3` key.
        key_id: Option<String>,
        /// Whether to use an S3 Bucket Key, which cuts KMS requests.
        bucket_key: bool,
    },
    /// SSE-C: a 256-bit key of the caller's, sent with every request and
    /// never stored by S3. Losing it loses the objects.
    Customer(CustomerKey),
}

impl fmt::Debug for S3Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Encryption::S3Managed => f.write_str("S3Managed"),
            S3Encryption::Kms { key_id, bucket_key } => f
                .debug_struct("Kms")
                .field("key_id", key_id)
                .field("bucket_key", bucket_key)
                .finish(),
            S3Encryption::Customer(_) => f.write_str("Customer(…)"),
        }
    }
}

/// An SSE-C key: 32 bytes, kept with its base64 form and the base64 of its
/// MD5, which S3 uses to check that the key arrived intact; wiped from
/// memory when dropped, and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct CustomerKey {
    key: String,
    md5: String,
}

impl CustomerKey {
    /// The key from its 32 bytes.
    pub fn new(mut key: [u8; 32]) -> Self {
        let made = CustomerKey {
            key: BASE64.encode(key),
            md5: BASE64.encode(Md5::digest(key)),
        };
        zeroize::Zeroize::zeroize(&mut key);
        made
    }
}

impl Drop for CustomerKey {
    /// The key's base64 form is wiped from memory.
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

impl fmt::Debug for CustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerKey(md5 {})", self.md5)
    }
}

/// The SSE-C algorithm name S3 accepts.
const AES256: &str = "AES256";

/// Adds the encryption headers of a request that writes an object
/// (PutObject, CreateMultipartUpload, the destination of CopyObject) to
/// `$request`, per `$encryption: Option<&S3Encryption>`.
macro_rules! on_write {
    ($request:expr, $encryption:expr) => {{
        use aws_sdk_s3::types::ServerSideEncryption as Sse;
        let request = $request;
        match $encryption {
            None => request,
            Some($crate::encryption::S3Encryption::S3Managed) => {
                request.server_side_encryption(Sse::Aes256)
            }
            Some($crate::encryption::S3Encryption::Kms { key_id, bucket_key }) => request
                .server_side_encryption(Sse::AwsKms)
                .set_ssekms_key_id(key_id.clone())
                .bucket_key_enabled(*bucket_key),
            Some($crate::encryption::S3Encryption::Customer(key)) => {
                $crate::encryption::customer!(request, key)
            }
        }
    }};
}

/// Adds the SSE-C headers, if SSE-C is configured, to a request that sends
/// or reads an object's bytes (UploadPart, UploadPartCopy,
/// CompleteMultipartUpload, GetObject, HeadObject).
macro_rules! on_read {
    ($request:expr, $encryption:expr) => {{
        let request = $request;
        match $encryption {
            Some($crate::encryption::S3Encryption::Customer(key)) => {
                $crate::encryption::customer!(request, key)
            }
            _ => request,
        }
    }};
}

/// Adds the SSE-C headers of a CopyObject's source, if SSE-C is configured.
macro_rules! on_copy_source {
    ($request:expr, $encryption:expr) => {{
        let request = $request;
        match $encryption {
            Some($crate::encryption::S3Encryption::Customer(key)) => {
                let (algorithm, key, md5) = key.headers();
                request
                    .copy_source_sse_customer_algorithm(algorithm)
                    .copy_source_sse_customer_key(key)
                    .copy_source_sse_customer_key_md5(md5)
            }
            _ => request,
        }
    }};
}

/// The three SSE-C headers on `$request`.
macro_rules! customer {
    ($request:expr, $key:expr) => {{
        let (algorithm, key, md5) = $key.headers();
        $request
            .sse_customer_algorithm(algorithm)
            .sse_customer_key(key)
            .sse_customer_key_md5(md5)
    }};
}

pub(crate) use {customer, on_copy_source, on_read, on_write};

impl CustomerKey {
    /// The algorithm, the base64 key and the base64 MD5 of the key.
    pub(crate) fn headers(&self) -> (&'static str, &str, &str) {
        (AES256, &self.key, &self.md5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_key_carries_its_base64_and_md5_and_hides_both_in_debug() {
        let key = CustomerKey::new([7; 32]);
        let (algorithm, b64, md5) = key.headers();
        assert_eq!(algorithm, "AES256");
        assert_eq!(BASE64.decode(b64).expect("base64"), [7; 32]);
        assert_eq!(
            BASE64.decode(md5).expect("base64"),
            Md5::digest([7u8; 32]).to_vec()
        );
        let b64 = b64.to_owned();
        let shown = format!("{:?}", S3Encryption::Customer(key));
        assert!(!shown.contains(&b64), "{shown}");
    }
}
