//! Large bodies as staged blocks: Put Block for each block, several in
//! flight, then one Put Block List that carries the condition, the content
//! type, the metadata and the SHA-256 of the whole body.
//!
//! Memory is bounded by `block_size × (blocks_in_flight + 1)`: the body is
//! read one block at a time and a new block is read only when fewer than
//! `blocks_in_flight` are being sent. Nothing is visible until Put Block
//! List commits, so readers see the old object or the whole new one. Blocks
//! of an upload that fails or is dropped are never committed and Azure
//! discards them after 7 days (Azure: "Put Block", remarks); a dropped
//! upload aborts its in-flight requests.
//!
//! Block ids are 20 bytes, the same length for every block of a blob as
//! Azure requires: 16 random bytes naming the upload, then the block
//! number (big-endian `u32`; at most 50,000 blocks per blob).

use std::time::SystemTime;

use azure_core::http::RequestContent;
use azure_storage_blob::models::{BlockBlobClientCommitBlockListOptions, BlockLookupList};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use storage_core::{Body, ETag, Error, Key, ObjectMeta, PutOptions, Result};
use tokio::task::JoinSet;

use crate::AzureBackend;
use crate::backend::{conditions, context};
use crate::error::{Context, missing};
use crate::metadata;

/// Most blocks in one block blob.
const MAX_BLOCKS: u64 = 50_000;

impl AzureBackend {
    /// Uploads `body` as staged blocks and commits them.
    pub(crate) async fn put_blocks(
        &self,
        key: &Key,
        body: Body,
        options: PutOptions,
    ) -> Result<ObjectMeta> {
        let config = self.config();
        let block_size = usize::try_from(config.block_size)
            .map_err(|_| Error::invalid_argument("the block size does not fit in memory"))?;
        if let Some(len) = body.len()
            && len.div_ceil(config.block_size) > MAX_BLOCKS
        {
            return Err(Error::TooLarge {
                key: Some(key.to_string()),
                size: len,
                limit: config.block_size.saturating_mul(MAX_BLOCKS),
            });
        }
        let mut upload_id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut upload_id)
            .map_err(|_| Error::backend(false, "no system randomness for a block id", "ring"))?;
        let blob = self.blob_client(key).block_blob_client();
        let mut stream = body.into_stream();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut ids: Vec<Vec<u8>> = Vec::new();
        let mut in_flight: JoinSet<Result<()>> = JoinSet::new();
        let mut buffer = BytesMut::with_capacity(block_size);
        let mut finished = false;
        while !finished {
            // Fill one block from the body.
            while buffer.len() < block_size {
                match stream.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        size += chunk.len() as u64;
                        buffer.extend_from_slice(&chunk);
                    }
                    Some(Err(e)) => return Err(e),
                    None => {
                        finished = true;
                        break;
                    }
                }
            }
            while buffer.len() >= block_size || (finished && !buffer.is_empty()) {
                let take = buffer.len().min(block_size);
                let block: Bytes = buffer.split_to(take).freeze();
                if ids.len() as u64 >= MAX_BLOCKS {
                    return Err(Error::TooLarge {
                        key: Some(key.to_string()),
                        size,
                        limit: config.block_size.saturating_mul(MAX_BLOCKS),
                    });
                }
                let mut id = upload_id.to_vec();
                id.extend_from_slice(&(ids.len() as u32).to_be_bytes());
                ids.push(id.clone());
                while in_flight.len() >= config.blocks_in_flight {
                    join_one(&mut in_flight).await?;
                }
                let this = self.clone();
                let (key, key_s) = (key.clone(), key.to_string());
                in_flight.spawn(async move {
                    let blob = this.blob_client(&key).block_blob_client();
                    let len = block.len() as u64;
                    let staged = this
                        .timed("Put Block", blob.stage_block(&id, len, block.into(), None))
                        .await?;
                    match staged {
                        Ok(_) => Ok(()),
                        Err(e) => Err(this.error(e, "Put Block", &key_s, Context::Plain).await),
                    }
                });
            }
            if buffer.capacity() < block_size {
                buffer.reserve(block_size - buffer.len());
            }
        }
        while !in_flight.is_empty() {
            join_one(&mut in_flight).await?;
        }

        let sha256: [u8; 32] = hasher.finalize().into();
        let (if_match, if_none_match) = conditions(&options.mode);
        let commit = BlockBlobClientCommitBlockListOptions {
            blob_content_type: options.content_type.clone(),
            metadata: Some(metadata::to_azure(&options.metadata, Some(&sha256))),
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
        let committed = self
            .timed(
                "Put Block List",
                blob.commit_block_list(content, Some(commit)),
            )
            .await?;
        let response = match committed {
            Ok(response) => response,
            Err(e) => {
                let context = context(&options.mode);
                return Err(self.error(e, "Put Block List", key.as_str(), context).await);
            }
        };
        use azure_storage_blob::models::BlockBlobClientCommitBlockListResultHeaders;
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
            size,
            etag,
            last_modified,
            content_type: options.content_type,
            metadata: options.metadata,
            sha256: Some(sha256),
        })
    }
}

/// Waits for one block upload; its failure fails the put (the rest are
/// aborted when the set drops).
async fn join_one(set: &mut JoinSet<Result<()>>) -> Result<()> {
    match set.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(Error::backend(
            false,
            "Azure Put Block: the upload task failed",
            join,
        )),
        None => Ok(()),
    }
}
