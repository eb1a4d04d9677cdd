//! The bounded-memory check's bound is tight enough: a backend that keeps
//! its objects in files but buffers half of each body in memory before
//! writing it fails the check. It measures this process's memory, so it runs
//! alone in its own test binary.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt, stream};
use storage_conformance::{Filter, FnFactory, Status, run, suites};
use storage_core::{
    Backend, Body, Capabilities, DeleteOptions, ETag, Error, GetOptions, GetResult, Key,
    ListOptions, ListPage, Locality, ObjectMeta, PutOptions, Result,
};

/// One file per object; `put` holds the first half of every body in memory
/// before writing anything.
#[derive(Debug)]
struct HalfBuffering {
    dir: tempfile::TempDir,
}

impl HalfBuffering {
    fn path(&self, key: &Key) -> PathBuf {
        self.dir.path().join(hex::encode(key.as_str()))
    }

    fn meta(&self, key: &Key) -> Result<ObjectMeta> {
        let size = std::fs::metadata(self.path(key))
            .map_err(|_| Error::NotFound {
                key: key.to_string(),
            })?
            .len();
        Ok(ObjectMeta {
            key: key.clone(),
            size,
            etag: ETag::new(size.to_string()),
            last_modified: SystemTime::now(),
            content_type: None,
            metadata: Default::default(),
            sha256: None,
        })
    }
}

fn io(e: std::io::Error) -> Error {
    Error::io("half-buffering store", e)
}

#[async_trait]
impl Backend for HalfBuffering {
    fn name(&self) -> &str {
        "half-buffering"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::none(Locality::Local)
    }

    async fn put(&self, key: &Key, body: Body, _options: PutOptions) -> Result<ObjectMeta> {
        let half = body.len().unwrap_or(0) / 2;
        let mut file = std::fs::File::create(self.path(key)).map_err(io)?;
        let mut held = BytesMut::new();
        let mut chunks = body.into_stream();
        while let Some(chunk) = chunks.try_next().await? {
            if (held.len() as u64) < half {
                held.extend_from_slice(&chunk);
            } else {
                if !held.is_empty() {
                    file.write_all(&held).map_err(io)?;
                    held = BytesMut::new();
                }
                file.write_all(&chunk).map_err(io)?;
            }
        }
        file.write_all(&held).map_err(io)?;
        self.meta(key)
    }

    async fn get(&self, key: &Key, _options: GetOptions) -> Result<GetResult> {
        let meta = self.meta(key)?;
        let file = std::fs::File::open(self.path(key)).map_err(io)?;
        let body = stream::try_unfold(file, |mut file| async move {
            let mut buf = vec![0; 256 * 1024];
            let n = file.read(&mut buf).map_err(io)?;
            buf.truncate(n);
            Ok((n > 0).then(|| (Bytes::from(buf), file)))
        })
        .boxed();
        Ok(GetResult::new(meta.clone(), 0..meta.size, body))
    }

    async fn head(&self, key: &Key) -> Result<ObjectMeta> {
        self.meta(key)
    }

    async fn delete(&self, key: &Key, _options: DeleteOptions) -> Result<()> {
        let _ = std::fs::remove_file(self.path(key));
        Ok(())
    }

    async fn list(&self, _options: &ListOptions) -> Result<ListPage> {
        Ok(ListPage::default())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn buffering_half_of_each_body_fails_the_bounded_memory_check() {
    let factory = FnFactory::new("half-buffering", |_check| async {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        Ok(Arc::new(HalfBuffering { dir }) as Arc<dyn Backend>)
    });
    let filter = Filter {
        names: vec!["large_object_streams_with_bounded_memory".into()],
        ..Default::default()
    };
    let report = run(&factory, &suites::all(), &filter).await;
    let check = report.checks.first().expect("the check ran");
    assert_eq!(check.status, Status::Failed, "{:?}", check.message);
}
