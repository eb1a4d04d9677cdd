//! Where each object's files live under the root directory.
//!
//! A key's segments become nested directories; every name we write carries a
//! `~` suffix that an encoded segment can never contain, so objects,
//! directories and temporary files cannot collide, whatever the keys:
//!
//! | file | name |
//! |---|---|
//! | directory for a segment | `<segment>~d` |
//! | object: content, then metadata (see [`trailer`](super::trailer)) | `<segment>~obj` |
//! | temporary file (a put's object before its commit) | `~tmp-<random>` |
//!
//! A segment is encoded by escaping `%` as `%25` and `~` as `%7E`; one whose
//! encoding is longer than [`MAX_ENCODED_SEGMENT`] bytes is named
//! `~h<sha256 of the segment, hex>` instead, so that every file name stays
//! under the 255-byte limit of Linux file systems. Keys are never decoded from
//! names: the trailer holds the key.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use storage_core::Key;

/// Longest encoded segment used as a name; longer ones are hashed.
pub const MAX_ENCODED_SEGMENT: usize = 200;

/// Suffix of a segment's directory.
pub const DIR_SUFFIX: &str = "~d";
/// Suffix of an object file.
pub const OBJECT_SUFFIX: &str = "~obj";
/// Prefix of temporary files.
pub const TEMP_PREFIX: &str = "~tmp-";

/// The files of one key.
#[derive(Debug, Clone)]
pub struct Location {
    /// The directory holding the key's files.
    pub dir: PathBuf,
    /// The same directory, relative to the object directory.
    pub rel_dir: PathBuf,
    /// The encoded last segment.
    pub name: String,
}

impl Location {
    /// The files of `key` under `objects`, the root's object directory.
    pub fn of(objects: &Path, key: &Key) -> Self {
        let segments: Vec<&str> = key.segments().collect();
        let (last, parents) = segments
            .split_last()
            .expect("a valid key has at least one segment");
        let rel_dir = directory(Path::new(""), parents.iter().copied());
        Location {
            dir: objects.join(&rel_dir),
            rel_dir,
            name: encode_segment(last),
        }
    }

    /// The object file's path relative to the object directory.
    pub fn rel_object(&self) -> PathBuf {
        self.rel_dir.join(self.object_name())
    }

    /// The object file's name.
    pub fn object_name(&self) -> String {
        format!("{}{OBJECT_SUFFIX}", self.name)
    }

    /// A fresh temporary file name.
    pub fn temp_name(&self) -> String {
        format!("{TEMP_PREFIX}{:032x}", rand::random::<u128>())
    }
}

/// The directory for the given segments under `objects`.
pub fn directory<'a>(objects: &Path, segments: impl IntoIterator<Item = &'a str>) -> PathBuf {
    let mut dir = objects.to_path_buf();
    for segment in segments {
        dir.push(format!("{}{DIR_SUFFIX}", encode_segment(segment)));
    }
    dir
}

/// The name a segment takes on disk (see the module docs).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for c in segment.chars() {
        match c {
            '%' => out.push_str("%25"),
            '~' => out.push_str("%7E"),
            c => out.push(c),
        }
    }
    if out.len() > MAX_ENCODED_SEGMENT {
        format!("~h{}", hex::encode(Sha256::digest(segment.as_bytes())))
    } else {
        out
    }
}

/// The lock stripe of a key: a byte of its SHA-256, the same in every process.
pub fn stripe(key: &Key) -> u8 {
    Sha256::digest(key.as_str().as_bytes())[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_collide_with_our_suffixes() {
        assert_eq!(encode_segment("a~obj"), "a%7Eobj");
        assert_eq!(encode_segment("100%"), "100%25");
        assert_eq!(encode_segment("plain.txt"), "plain.txt");
    }

    #[test]
    fn long_segments_are_hashed_under_the_name_limit() {
        let key = Key::new("x".repeat(1024)).expect("valid key");
        let location = Location::of(Path::new("/r"), &key);
        assert!(location.name.starts_with("~h"));
        assert!(location.object_name().len() < 255);
    }

    #[test]
    fn parents_become_directories() {
        let key = Key::new("a/b~/c").expect("valid key");
        let location = Location::of(Path::new("/r"), &key);
        assert_eq!(location.dir, Path::new("/r/a~d/b%7E~d"));
        assert_eq!(location.object_name(), "c~obj");
    }
}
