//! Conversions between the two crates' types: paths and keys, metadata and
//! attributes, ranges, conditions and errors, both ways.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{Attribute, AttributeValue, Attributes, GetRange};
use storage_core::{ByteRange, ETag, Error, Key, Metadata, ObjectMeta};

/// The name of [`StorageAdapter`](crate::StorageAdapter) in
/// object_store errors.
pub(crate) const STORE: &str = "StorageAdapter";

/// The key of `path`.
pub(crate) fn key_of(path: &Path) -> object_store::Result<Key> {
    Key::new(path.as_ref()).map_err(|e| object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    })
}

/// The path of `key`: its segments as they are (keys and paths share the
/// `/` delimiter; a key that object_store would encode differently is kept
/// byte for byte).
pub(crate) fn path_of(key: &Key) -> Path {
    Path::parse(key.as_str()).unwrap_or_else(|_| Path::from(key.as_str()))
}

/// object_store's metadata of one of our versions (no `version`: the
/// contract has none).
pub(crate) fn to_object_meta(meta: &ObjectMeta) -> object_store::ObjectMeta {
    object_store::ObjectMeta {
        location: path_of(&meta.key),
        last_modified: DateTime::<Utc>::from(meta.last_modified),
        size: meta.size,
        e_tag: Some(meta.etag.as_str().to_owned()),
        version: None,
    }
}

/// A content type and user metadata as object_store attributes: what
/// object_store shows for one of our versions, and what it is sent for one
/// of our puts.
pub(crate) fn attributes(content_type: Option<&String>, metadata: &Metadata) -> Attributes {
    let mut attributes = Attributes::new();
    if let Some(content_type) = content_type {
        attributes.insert(
            Attribute::ContentType,
            AttributeValue::from(content_type.clone()),
        );
    }
    for (name, value) in metadata {
        attributes.insert(
            Attribute::Metadata(name.clone().into()),
            AttributeValue::from(value.clone()),
        );
    }
    attributes
}

/// Our put options from object_store's attributes: content type and
/// metadata; any other attribute (cache control, content encoding, ...) is
/// `NotImplemented`, since the contract does not store it and dropping it
/// silently would lose what the caller asked for.
pub(crate) fn put_options(
    attributes: &Attributes,
    path: &str,
) -> object_store::Result<storage_core::PutOptions> {
    let mut options = storage_core::PutOptions::default();
    for (attribute, value) in attributes {
        match attribute {
            Attribute::ContentType => options.content_type = Some(value.as_ref().to_owned()),
            Attribute::Metadata(name) => {
                options
                    .metadata
                    .insert(name.as_ref().to_owned(), value.as_ref().to_owned());
            }
            _ => {
                return Err(object_store::Error::NotImplemented {
                    operation: format!("attribute {attribute:?} on {path}"),
                    implementer: STORE.to_owned(),
                });
            }
        }
    }
    Ok(options)
}

/// Content type and user metadata from object_store attributes; others are
/// dropped (the contract has no place for them).
pub(crate) fn from_attributes(attributes: &Attributes, meta: &mut ObjectMeta) {
    for (attribute, value) in attributes {
        match attribute {
            Attribute::ContentType => meta.content_type = Some(value.as_ref().to_owned()),
            Attribute::Metadata(name) => {
                meta.metadata
                    .insert(name.as_ref().to_owned(), value.as_ref().to_owned());
            }
            _ => {}
        }
    }
}

/// Our range for object_store's.
pub(crate) fn to_byte_range(range: &GetRange) -> ByteRange {
    match range {
        GetRange::Bounded(r) => ByteRange::Bounded {
            start: r.start,
            end: r.end,
        },
        GetRange::Offset(start) => ByteRange::From { start: *start },
        GetRange::Suffix(len) => ByteRange::Suffix { len: *len },
    }
}

/// object_store's range for ours.
pub(crate) fn to_get_range(range: &ByteRange) -> GetRange {
    match *range {
        ByteRange::Bounded { start, end } => GetRange::Bounded(start..end),
        ByteRange::From { start } => GetRange::Offset(start),
        ByteRange::Suffix { len } => GetRange::Suffix(len),
    }
}

/// One ETag of an object_store condition: `*` and lists of ETags (RFC 9110
/// section 13.1.1 allows both) are `Ok(None)` and `NotImplemented`.
pub(crate) fn one_etag(value: &str, header: &str) -> object_store::Result<Option<ETag>> {
    let value = value.trim();
    if value == "*" {
        return Ok(None);
    }
    if value.contains(',') {
        return Err(object_store::Error::NotImplemented {
            operation: format!("{header} with a list of ETags ({value})"),
            implementer: STORE.to_owned(),
        });
    }
    Ok(Some(ETag::new(value)))
}

/// A chrono time as a `SystemTime`.
pub(crate) fn system_time(time: DateTime<Utc>) -> SystemTime {
    SystemTime::from(time)
}

/// Our error as object_store's, for `path`: each variant with an
/// object_store counterpart maps to it (a failed `If-Unmodified-Since` is
/// `Precondition`); the rest are `Generic` with our error as the source.
pub(crate) fn to_store_error(err: Error, path: &str) -> object_store::Error {
    let path = path.to_owned();
    match err {
        Error::NotFound { .. } => object_store::Error::NotFound {
            path,
            source: Box::new(err),
        },
        Error::AlreadyExists { .. } => object_store::Error::AlreadyExists {
            path,
            source: Box::new(err),
        },
        Error::PreconditionFailed { .. } | Error::ModifiedSince { .. } => {
            object_store::Error::Precondition {
                path,
                source: Box::new(err),
            }
        }
        Error::NotModified { .. } => object_store::Error::NotModified {
            path,
            source: Box::new(err),
        },
        Error::Unsupported { .. } => object_store::Error::NotSupported {
            source: Box::new(err),
        },
        Error::PermissionDenied { .. } => object_store::Error::PermissionDenied {
            path,
            source: Box::new(err),
        },
        Error::Unauthenticated { .. } => object_store::Error::Unauthenticated {
            path,
            source: Box::new(err),
        },
        other => object_store::Error::Generic {
            store: STORE,
            source: Box::new(other),
        },
    }
}

/// object_store's error as ours, for `key`: `NotFound`, `AlreadyExists`,
/// `NotModified`, `PermissionDenied` and `Unauthenticated` map to their
/// counterparts; `Precondition` needs the ETag the caller required, so
/// callers map it themselves; everything else, `NotSupported` and
/// `NotImplemented` included (our [`Error::Unsupported`] names a static
/// operation, theirs a message), is a non-transient [`Error::Backend`]
/// with their message (object_store does not say which failures are
/// transient; its own stores retry inside).
pub(crate) fn from_store_error(err: object_store::Error, key: &Key, store: &str) -> Error {
    match err {
        object_store::Error::NotFound { .. } => Error::NotFound {
            key: key.to_string(),
        },
        object_store::Error::AlreadyExists { .. } => Error::AlreadyExists {
            key: key.to_string(),
        },
        object_store::Error::NotModified { .. } => Error::NotModified {
            key: key.to_string(),
            etag: None,
        },
        object_store::Error::PermissionDenied { source, .. } => Error::PermissionDenied {
            key: Some(key.to_string()),
            message: source.to_string(),
        },
        object_store::Error::Unauthenticated { source, .. } => Error::Unauthenticated {
            message: source.to_string(),
        },
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            Error::Backend {
                transient: false,
                message: format!("{store}: {err} (on {key})"),
                source: Some(Box::new(err)),
            }
        }
        other => Error::Backend {
            transient: false,
            message: format!("{store}: {other} (on {key})"),
            source: Some(Box::new(other)),
        },
    }
}
