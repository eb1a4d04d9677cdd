//! object_store's own integration functions (its `integration` feature)
//! against `StorageAdapter` over `MemoryBackend`, `FsBackend` and
//! `LogStore`: every function of the module that applies to a store
//! without versions.

use std::sync::Arc;

use object_store::integration;
use storage_core::{Backend, MemoryBackend};
use storage_object_store::StorageAdapter;

/// A store and what keeps its directory alive.
async fn open(kind: &str) -> (StorageAdapter<dyn Backend>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let backend: Arc<dyn Backend> = match kind {
        "memory" => Arc::new(MemoryBackend::new()),
        "fs" => Arc::new(storage_disk::FsBackend::new(dir.path()).expect("FsBackend")),
        _ => Arc::new(
            storage_disk::LogStore::open(dir.path())
                .await
                .expect("LogStore"),
        ),
    };
    (StorageAdapter::new(backend), dir)
}

macro_rules! on_every_backend {
    ($($name:ident => |$store:ident| $body:expr;)*) => {
        mod memory { use super::*; $( #[tokio::test(flavor = "multi_thread")] async fn $name() { let ($store, _dir) = open("memory").await; $body; } )* }
        mod fs { use super::*; $( #[tokio::test(flavor = "multi_thread")] async fn $name() { let ($store, _dir) = open("fs").await; $body; } )* }
        mod logstore { use super::*; $( #[tokio::test(flavor = "multi_thread")] async fn $name() { let ($store, _dir) = open("logstore").await; $body; } )* }
    };
}

on_every_backend! {
    put_get_delete_list => |store| integration::put_get_delete_list(&store).await;
    put_get_attributes => |store| integration::put_get_attributes(&store).await;
    get_opts => |store| integration::get_opts(&store).await;
    put_opts => |store| integration::put_opts(&store, true).await;
    stream_get => |store| integration::stream_get(&store).await;
    list_uses_directories_correctly => |store| integration::list_uses_directories_correctly(&store).await;
    list_with_delimiter => |store| integration::list_with_delimiter(&store).await;
    get_nonexistent_object => |store| {
        let result = integration::get_nonexistent_object(&store, None).await;
        assert!(matches!(result, Err(object_store::Error::NotFound { .. })), "{result:?}")
    };
    rename_and_copy => |store| integration::rename_and_copy(&store).await;
    copy_if_not_exists => |store| integration::copy_if_not_exists(&store).await;
    copy_rename_nonexistent_object => |store| integration::copy_rename_nonexistent_object(&store).await;
    multipart => |store| integration::multipart(&store, &store).await;
    multipart_with_opts => |store| integration::multipart_with_opts(&store, &store).await;
    multipart_put_part_out_of_order => |store| integration::multipart_put_part_out_of_order(&store, &store).await;
    multipart_race_condition => |store| integration::multipart_race_condition(&store, true).await;
    multipart_out_of_order => |store| integration::multipart_out_of_order(&store).await;
    list_paginated => |store| integration::list_paginated(&store, &store).await;
    list_with_offset_exclusivity => |store| integration::list_with_offset_exclusivity(&store).await;
}
