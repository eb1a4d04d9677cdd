//! The GCS reference of `cargo xtask bench`: the fewest lines of `reqwest`
//! that issue the JSON-API requests `storage-gcs` issues, with the same
//! fields, and do no other work: no SHA-256, no retries, no error mapping,
//! no check of what comes back. What it costs is the floor any client pays
//! for the same requests; the work ours does to fill and check them
//! (SHA-256 of every put and full read, CRC32C of every resumable chunk
//! and full read) is ours alone.
//!
//! - A put below 16 MiB is one multipart upload (`uploadType=multipart`: a
//!   JSON part with the name, the content type, the content's CRC32C and a
//!   metadata entry the size of ours, then the content), as `storage-gcs`
//!   sends. The CRC32C is computed (the server checks it, and keeps it for
//!   downloads); ours' SHA-256 is not (a fixed value stands in for it).
//! - A put of 16 MiB or more is a resumable upload (`uploadType=resumable`)
//!   sent in 8 MiB chunks one after the other, `storage-gcs`'s defaults,
//!   then one `PATCH` of the object's metadata with `ifGenerationMatch`, as
//!   ours records the SHA-256 it learns only at the end.
//! - A get is one media download (`alt=media`).
//!
//! Source: Cloud Storage JSON API, "Perform multipart uploads", "Perform
//! resumable uploads", "Objects: get".

use bytes::Bytes;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

/// Bodies of at least this many bytes go as resumable uploads.
const RESUMABLE_FROM: usize = storage_gcs::DEFAULT_RESUMABLE_THRESHOLD as usize;
/// Chunk of a resumable upload.
const CHUNK: usize = storage_gcs::DEFAULT_CHUNK_SIZE as usize;

/// The base64 of the big-endian CRC32C of `data`, as the JSON API writes
/// it ("Objects" resource, `crc32c`).
fn crc32c_base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(crc32c::crc32c(data).to_be_bytes())
}

/// A metadata value the size of the hex SHA-256 ours records.
const DIGEST: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A bare client of one bucket on one endpoint, without authorization (the
/// emulator asks for none).
pub struct MinimalGcs {
    http: reqwest::Client,
    endpoint: String,
    bucket: String,
    prefix: String,
}

impl MinimalGcs {
    pub fn new(endpoint: &str, bucket: &str, prefix: &str) -> anyhow::Result<Self> {
        Ok(MinimalGcs {
            http: reqwest::Client::builder().build()?,
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    fn name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    pub async fn put(&self, key: &str, data: Bytes) -> anyhow::Result<()> {
        if data.len() >= RESUMABLE_FROM {
            return self.put_resumable(key, data).await;
        }
        let json = serde_json::json!({
            "name": self.name(key),
            "contentType": "application/octet-stream",
            "metadata": { "storage_sha256": DIGEST },
            "crc32c": crc32c_base64(&data),
        })
        .to_string();
        let boundary = "minimal-gcs-boundary";
        let head = format!(
            "--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{json}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let mut body = Vec::with_capacity(head.len() + data.len() + tail.len());
        body.extend_from_slice(head.as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(tail.as_bytes());
        let response = self
            .http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o?uploadType=multipart",
                self.endpoint, self.bucket
            ))
            .header(
                "content-type",
                format!("multipart/related; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await?;
        let response = succeeded(response, "upload")?;
        response.bytes().await?;
        Ok(())
    }

    async fn put_resumable(&self, key: &str, data: Bytes) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!(
                "{}/upload/storage/v1/b/{}/o?uploadType=resumable",
                self.endpoint, self.bucket
            ))
            .header("content-type", "application/json; charset=UTF-8")
            .body(
                // What ours' session starts with for a put without
                // options: the name and an empty metadata map.
                serde_json::json!({ "name": self.name(key), "metadata": {} }).to_string(),
            )
            .send()
            .await?;
        let response = succeeded(response, "resumable upload")?;
        let session = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("resumable upload: no Location"))?;
        response.bytes().await?;
        let total = data.len();
        let mut start = 0;
        while start < total {
            let end = (start + CHUNK).min(total);
            let size = if end == total {
                total.to_string()
            } else {
                "*".to_owned()
            };
            let response = self
                .http
                .put(&session)
                .header("content-range", format!("bytes {start}-{}/{size}", end - 1))
                .body(data.slice(start..end))
                .send()
                .await?;
            let status = response.status().as_u16();
            anyhow::ensure!(
                status == 308 || response.status().is_success(),
                "resumable chunk: {status}"
            );
            let answer = response.bytes().await?;
            start = end;
            if start == total {
                let object: serde_json::Value = serde_json::from_slice(&answer)?;
                let generation = object["generation"]
                    .as_str()
                    .ok_or_else(|| anyhow::anyhow!("resumable upload: no generation"))?
                    .to_owned();
                self.patch_metadata(key, &generation).await?;
            }
        }
        Ok(())
    }

    /// Records a metadata entry on generation `generation` of `key`.
    async fn patch_metadata(&self, key: &str, generation: &str) -> anyhow::Result<()> {
        let response = self
            .http
            .patch(format!(
                "{}/storage/v1/b/{}/o/{}?ifGenerationMatch={generation}&fields=generation",
                self.endpoint,
                self.bucket,
                utf8_percent_encode(&self.name(key), NON_ALPHANUMERIC)
            ))
            .header("content-type", "application/json")
            .body(serde_json::json!({ "metadata": { "storage_sha256": DIGEST } }).to_string())
            .send()
            .await?;
        let response = succeeded(response, "metadata patch")?;
        response.bytes().await?;
        Ok(())
    }

    fn media_url(&self, key: &str) -> String {
        format!(
            "{}/storage/v1/b/{}/o/{}?alt=media",
            self.endpoint,
            self.bucket,
            utf8_percent_encode(&self.name(key), NON_ALPHANUMERIC)
        )
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let response = self.http.get(self.media_url(key)).send().await?;
        let response = succeeded(response, "download")?;
        Ok(response.bytes().await?)
    }

    /// Reads the object chunk by chunk, keeping none: the bytes read.
    pub async fn get_streamed(&self, key: &str) -> anyhow::Result<u64> {
        let response = self.http.get(self.media_url(key)).send().await?;
        let mut response = succeeded(response, "download")?;
        let mut got = 0u64;
        while let Some(chunk) = response.chunk().await? {
            got += std::hint::black_box(chunk).len() as u64;
        }
        Ok(got)
    }
}

/// `response` if its status is a success, else an error naming `what`.
fn succeeded(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    anyhow::ensure!(
        response.status().is_success(),
        "{what}: {}",
        response.status()
    );
    Ok(response)
}
