//! Large bodies as staged blocks: Put Block for each block, several in
//! flight, then one Put Block List that carries the condition, the content
//! type, the metadata and the SHA-256 of the whole body.
//!
//! The blocks go through the upload engine of `storage_core::raw`, so
//! memory is bounded by `block_size × (blocks_in_flight + 2)`, a failed
//! Put Block is sent again with the policy in force, and a body that turns
//! out to fit in one block goes as one Put Blob. Nothing is visible until
//! Put Block List commits, so readers see the old object or the whole new one. Blocks
//! of an upload that fails or is dropped are never committed and Azure
//! discards them after 7 days (Azure: "Put Block", remarks), so aborting
//! an upload needs no request; a dropped upload cancels its in-flight
//! requests.
//!
//! Each Put Block carries the block's MD5 (`Content-MD5`), which the
//! service verifies, so a block corrupted on the way is refused at write
//! time (`Md5Mismatch`, read as `ChecksumMismatch`). The block size grows
//! with a known length so that the body fits in 50,000 blocks.
//!
//! Block ids are 20 bytes, the same length for every block of a blob as
//! Azure requires: 16 random bytes naming the upload, then the block
//! number (big-endian `u32`; at most 50,000 blocks per blob).

use std::time::SystemTime;

use azure_core::http::RequestContent;
use azure_storage_blob::models::{
    BlockBlobClientCommitBlockListOptions, BlockBlobClientCommitBlockListResultHeaders,
    BlockBlobClientStageBlockOptions, BlockLookupList,
};
use bytes::Bytes;
use md5::{Digest, Md5};
use ring::rand::{SecureRandom, SystemRandom};
use storage_core::raw::{self, ChunkedUpload, Part, UploadPlan, Uploaded};
use storage_core::{Body, ETag, Error, Key, ObjectMeta, PutOptions, Result};

use crate::AzureBackend;
use crate::config::{MAX_BLOCK_SIZE, MAX_BLOCKS};
use crate::core::{conditions, context};
use crate::error::{Context, missing};
use crate::metadata;

const MIB: u64 = 1024 * 1024;

/// The configured block size, lowered (in whole MiB, to at least 1 MiB) to
/// what one request carries within the request timeout at the minimum
/// upload rate ([`AzureConfig::min_upload_rate`](crate::AzureConfig::min_upload_rate)).
fn capped(config: &crate::AzureConfig) -> u64 {
    match config.single_put_limit() {
        None => config.block_size,
        Some(limit) => config.block_size.min((limit / MIB * MIB).max(MIB)),
    }
}

/// The block size for a body of `len` bytes (unknown: `None`): the
/// configured size, or the smallest whole number of MiB that fits the body
/// in [`MAX_BLOCKS`] blocks when that is larger.
pub(crate) fn block_size_for(configured: u64, len: Option<u64>) -> u64 {
    let needed = len.map_or(0, |len| len.div_ceil(MAX_BLOCKS).div_ceil(MIB) * MIB);
    configured.max(needed)
}

impl AzureBackend {
    /// Uploads `body` as staged blocks and commits them.
    pub(crate) async fn put_blocks(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let config = self.config();
        let block_size = block_size_for(capped(config), body.len());
        if block_size > MAX_BLOCK_SIZE {
            return Err(Error::TooLarge {
                key: Some(key.to_string()),
                size: body.len().unwrap_or(0),
                limit: MAX_BLOCKS * MAX_BLOCK_SIZE,
            });
        }
        let plan = UploadPlan {
            part_size: block_size,
            parts_in_flight: config.blocks_in_flight,
            max_parts: MAX_BLOCKS,
        };
        let upload = BlockUpload {
            backend: self.clone(),
            key: key.clone(),
            options,
        };
        raw::upload(upload, key, body, plan).await
    }
}

/// One block upload's calls.
#[derive(Clone)]
struct BlockUpload {
    backend: AzureBackend,
    key: Key,
    options: PutOptions,
}

impl BlockUpload {
    /// Block `index`'s id: the upload's 16 random bytes, then the index.
    fn block_id(upload_id: &[u8; 16], index: u32) -> Vec<u8> {
        let mut id = upload_id.to_vec();
        id.extend_from_slice(&index.to_be_bytes());
        id
    }
}

#[async_trait::async_trait]
impl ChunkedUpload for BlockUpload {
    type Session = [u8; 16];
    type Receipt = Vec<u8>;

    /// Draws the upload's id; Azure needs no request to start staging.
    async fn initiate(&self) -> Result<[u8; 16]> {
        let mut upload_id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut upload_id)
            .map_err(|_| Error::backend(false, "no system randomness for a block id", "ring"))?;
        Ok(upload_id)
    }

    async fn upload_part(&self, upload_id: &[u8; 16], part: &Part) -> Result<Vec<u8>> {
        let b = &self.backend;
        let id = Self::block_id(upload_id, part.index);
        let blob = b.blob_client(&self.key).block_blob_client();
        let len = part.bytes.len() as u64;
        // The service checks each block against its MD5 and refuses a
        // corrupt one (`Md5Mismatch`) before it can be committed.
        let (encryption_key, encryption_key_sha256, encryption_algorithm, encryption_scope) =
            crate::encryption::sdk_options(b.config().encryption.as_ref());
        let options = BlockBlobClientStageBlockOptions {
            transactional_content_md5: Some(Md5::digest(&part.bytes).to_vec()),
            encryption_key,
            encryption_key_sha256,
            encryption_algorithm,
            encryption_scope,
            ..Default::default()
        };
        let staged = b
            .timed(
                "Put Block",
                blob.stage_block(&id, len, part.bytes.clone().into(), Some(options)),
            )
            .await?;
        match staged {
            Ok(_) => Ok(id),
            Err(e) => Err(b
                .error(e, "Put Block", self.key.as_str(), Context::Plain)
                .await),
        }
    }

    async fn complete(
        &self,
        _upload_id: &[u8; 16],
        ids: Vec<Vec<u8>>,
        whole: &Uploaded,
    ) -> Result<ObjectMeta> {
        let (b, key, options) = (&self.backend, &self.key, &self.options);
        let (if_match, if_none_match) = conditions(&options.mode);
        let (encryption_key, encryption_key_sha256, encryption_algorithm, encryption_scope) =
            crate::encryption::sdk_options(b.config().encryption.as_ref());
        let commit = BlockBlobClientCommitBlockListOptions {
            encryption_key,
            encryption_key_sha256,
            encryption_algorithm,
            encryption_scope,
            blob_content_type: options.content_type.clone(),
            metadata: Some(metadata::to_azure(&options.metadata, Some(&whole.sha256))),
            if_match,
            if_none_match,
            ..Default::default()
        };
        let list = BlockLookupList {
            committed: None,
            latest: Some(ids),
            uncommitted: None,
        };
        let content: RequestContent<BlockLookupList, _> = list.try_into().map_err(|e| {
            Error::backend(false, format!("Azure Put Block List of {key}: encoding"), e)
        })?;
        let blob = b.blob_client(key).block_blob_client();
        let committed = b
            .timed(
                "Put Block List",
                blob.commit_block_list(content, Some(commit)),
            )
            .await?;
        let response = match committed {
            Ok(response) => response,
            Err(e) => {
                let context = context(&options.mode);
                return Err(b.error(e, "Put Block List", key.as_str(), context).await);
            }
        };
        let etag = response
            .etag()
            .ok()
            .flatten()
            .map(|e| ETag::new(&e))
            .ok_or_else(|| missing("Put Block List", key.as_str(), "ETag"))?;
        let last_modified = response
            .last_modified()
            .ok()
            .flatten()
            .map(SystemTime::from)
            .unwrap_or_else(SystemTime::now);
        Ok(ObjectMeta {
            key: key.clone(),
            size: whole.size,
            etag,
            last_modified,
            content_type: options.content_type.clone(),
            metadata: options.metadata.clone(),
            sha256: Some(whole.sha256),
        })
    }

    /// Nothing to do: uncommitted blocks are discarded by Azure.
    async fn abort(&self, _upload_id: &[u8; 16]) -> Result<()> {
        Ok(())
    }

    async fn put_whole(&self, bytes: Bytes, whole: &Uploaded) -> Result<ObjectMeta> {
        self.backend
            .put_single(&self.key, bytes, Some(whole.sha256), self.options.clone())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_block_size_grows_to_fit_fifty_thousand_blocks_in_whole_mib() {
        let configured = 4 * MIB;
        assert_eq!(block_size_for(configured, None), configured);
        assert_eq!(block_size_for(configured, Some(200_000 * MIB)), configured);
        let len = 200_000 * MIB + 1;
        let size = block_size_for(configured, Some(len));
        assert_eq!((size, size % MIB), (5 * MIB, 0));
        assert!(len.div_ceil(size) <= MAX_BLOCKS);
        assert!(block_size_for(configured, Some(MAX_BLOCKS * MAX_BLOCK_SIZE)) <= MAX_BLOCK_SIZE);
        assert!(block_size_for(configured, Some(MAX_BLOCKS * MAX_BLOCK_SIZE + 1)) > MAX_BLOCK_SIZE);
    }
}
