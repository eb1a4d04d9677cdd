//! A power-loss simulator for the disk backends: a test utility.
//!
//! # Design
//!
//! Every file-system operation of [`LogStore`](crate::LogStore) and
//! [`FsBackend`](crate::FsBackend) that changes what a disk would hold
//! (creating, writing, truncating, `fsync`/`fdatasync` of a file or a
//! directory, renaming, removing, making a directory) runs on the real file
//! system as usual, and is also reported here. While a [`Recording`] of a
//! directory is active, the reports of paths under it are kept in order in
//! a journal, with the bytes written.
//!
//! [`Recording::crash_image`] replays a prefix of that journal against a
//! model of a file system that keeps, for every file, its content as last
//! made durable by `fsync` and the writes since; and for every directory,
//! its entries as last made durable by an `fsync` of the directory and the
//! changes since. A power loss after the prefix keeps only what was
//! durable: un-synced writes, and un-synced creations, renames and
//! removals of directory entries, are lost (the strictest reading of POSIX,
//! as ALICE and LazyFS model it; ext4 and XFS often keep more). In
//! [`CrashMode::KeepPrefix`], each file also keeps a random prefix of its
//! un-synced writes, the last one possibly cut short: a torn write. The
//! image is written to a fresh directory, where the store is opened and
//! checked like any other.
//!
//! This is a thin layer inside the crate rather than a FUSE file system
//! (LazyFS): the real code paths run unchanged, the tests need no kernel
//! module, `/dev/fuse` or privileges (neither this machine nor CI has
//! them), and one recorded run yields a crash image at every point of it.
//! What it cannot see: reads (they change nothing), and failures of the
//! disk itself (the fault tests inject those).
//!
//! Reporting costs one atomic load per operation when nothing is recorded.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rand::{Rng, SeedableRng};

/// A file-system operation that changes what a disk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsOp {
    /// A directory was made.
    Mkdir(PathBuf),
    /// A file was created empty, or truncated to nothing if it existed.
    Create(PathBuf),
    /// Bytes were written at an offset.
    Write {
        /// The file.
        path: PathBuf,
        /// Where, in bytes from the start.
        offset: u64,
        /// What.
        data: Vec<u8>,
    },
    /// A file's length was set.
    SetLen {
        /// The file.
        path: PathBuf,
        /// The new length in bytes.
        len: u64,
    },
    /// A file's content, or a directory's entries, were made durable
    /// (`fsync`, `fdatasync`).
    Sync(PathBuf),
    /// An entry was renamed, replacing any entry at `to`.
    Rename {
        /// The old name.
        from: PathBuf,
        /// The new name.
        to: PathBuf,
    },
    /// An entry was removed.
    Remove(PathBuf),
}

impl FsOp {
    fn path(&self) -> &Path {
        match self {
            FsOp::Mkdir(p) | FsOp::Create(p) | FsOp::Sync(p) | FsOp::Remove(p) => p,
            FsOp::Write { path, .. } | FsOp::SetLen { path, .. } => path,
            FsOp::Rename { from, .. } => from,
        }
    }
}

type Journal = Arc<Mutex<Vec<FsOp>>>;

static ACTIVE: AtomicUsize = AtomicUsize::new(0);
static RECORDINGS: Mutex<Vec<(PathBuf, Journal)>> = Mutex::new(Vec::new());

/// Reports an operation that just succeeded; `op` is built only while a
/// recording is active.
pub(crate) fn note(op: impl FnOnce() -> FsOp) {
    if ACTIVE.load(Ordering::Acquire) == 0 {
        return;
    }
    let op = op();
    let recordings = RECORDINGS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, journal)) = recordings
        .iter()
        .find(|(root, _)| op.path().starts_with(root))
    {
        journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }
}

/// Reports that `path` was created empty (or truncated).
pub(crate) fn created(path: &Path) {
    note(|| FsOp::Create(path.to_path_buf()));
}

/// Reports that `data` was written to `path` at `offset`.
pub(crate) fn wrote(path: &Path, offset: u64, data: &[u8]) {
    note(|| FsOp::Write {
        path: path.to_path_buf(),
        offset,
        data: data.to_vec(),
    });
}

/// Reports that the length of `path` was set to `len`.
pub(crate) fn set_len(path: &Path, len: u64) {
    note(|| FsOp::SetLen {
        path: path.to_path_buf(),
        len,
    });
}

/// Reports an `fsync` or `fdatasync` of the file or directory `path`.
pub(crate) fn synced(path: &Path) {
    note(|| FsOp::Sync(path.to_path_buf()));
}

/// Reports a rename.
pub(crate) fn renamed(from: &Path, to: &Path) {
    note(|| FsOp::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
    });
}

/// Reports that the entry `path` was removed.
pub(crate) fn removed(path: &Path) {
    note(|| FsOp::Remove(path.to_path_buf()));
}

/// Reports that the directory `path` was made.
pub(crate) fn made_dir(path: &Path) {
    note(|| FsOp::Mkdir(path.to_path_buf()));
}

/// What survives of the writes that were not made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Nothing.
    DurableOnly,
    /// A random prefix of each file's un-synced writes, the last one
    /// possibly torn.
    KeepPrefix,
}

/// The journal of every reported operation under one directory, from
/// [`Recording::start`] until dropped.
#[derive(Debug)]
pub struct Recording {
    root: PathBuf,
    journal: Journal,
    /// The directory as it was when the recording started.
    start: Model,
}

impl Recording {
    /// Starts recording operations under `root`, an existing directory
    /// taken to be durable, with its current content (usually empty) as the
    /// durable starting point.
    ///
    /// # Errors
    /// The I/O error of reading `root`.
    ///
    /// # Panics
    /// When `root` is already recorded.
    pub fn start(root: &Path) -> std::io::Result<Recording> {
        let start = Model::new(root)?;
        let journal = Journal::default();
        let mut recordings = RECORDINGS.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(
            recordings.iter().all(|(r, _)| r != root),
            "{} is already recorded",
            root.display()
        );
        recordings.push((root.to_path_buf(), Arc::clone(&journal)));
        ACTIVE.fetch_add(1, Ordering::AcqRel);
        Ok(Recording {
            root: root.to_path_buf(),
            journal,
            start,
        })
    }

    /// Operations recorded so far: a crash point.
    pub fn position(&self) -> usize {
        self.journal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A replay of the journal from the starting point, to take crash
    /// images at growing positions without replaying from the start each
    /// time.
    pub fn replay(&self) -> Replay {
        Replay {
            model: self.start.clone(),
            journal: Arc::clone(&self.journal),
            at: 0,
        }
    }

    /// Writes into `into` (an empty directory) what the disk would hold
    /// after a power loss following the first `at` operations, in `mode`;
    /// `seed` picks the surviving prefixes in [`CrashMode::KeepPrefix`].
    ///
    /// # Errors
    /// As [`Replay::advance_to`] and [`Replay::crash_image`].
    pub fn crash_image(
        &self,
        at: usize,
        mode: CrashMode,
        seed: u64,
        into: &Path,
    ) -> std::io::Result<()> {
        let mut replay = self.replay();
        replay.advance_to(at)?;
        replay.crash_image(mode, seed, into)
    }
}

/// The model of the recorded directory after a prefix of the journal.
#[derive(Debug)]
pub struct Replay {
    model: Model,
    journal: Journal,
    at: usize,
}

impl Replay {
    /// Operations replayed so far.
    pub fn position(&self) -> usize {
        self.at
    }

    /// Replays operations up to position `at` (no further than recorded;
    /// never backwards).
    ///
    /// # Errors
    /// `InvalidData` when the journal names a path the model does not hold
    /// (an operation that was not reported).
    pub fn advance_to(&mut self, at: usize) -> std::io::Result<()> {
        let ops: Vec<FsOp> = {
            let journal = self.journal.lock().unwrap_or_else(PoisonError::into_inner);
            let end = at.min(journal.len()).max(self.at);
            journal[self.at..end].to_vec()
        };
        for op in &ops {
            self.model.apply(op)?;
            self.at += 1;
        }
        Ok(())
    }

    /// Writes into `into` (an empty directory) what the disk would hold
    /// after a power loss now, in `mode`; `seed` picks the surviving
    /// prefixes in [`CrashMode::KeepPrefix`].
    ///
    /// # Errors
    /// The I/O error of writing the image.
    pub fn crash_image(&self, mode: CrashMode, seed: u64, into: &Path) -> std::io::Result<()> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        self.model.write_durable(ROOT, into, mode, &mut rng)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let mut recordings = RECORDINGS.lock().unwrap_or_else(PoisonError::into_inner);
        recordings.retain(|(root, _)| root != &self.root);
        ACTIVE.fetch_sub(1, Ordering::AcqRel);
    }
}

const ROOT: usize = 0;

/// One change to a file not yet made durable.
#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

fn apply_pending(content: &mut Vec<u8>, change: &Pending) {
    match change {
        Pending::Write { offset, data } => {
            let start = *offset as usize;
            let end = start + data.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[start..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => content.resize(*len as usize, 0),
    }
}

#[derive(Debug, Clone)]
enum Node {
    File {
        durable: Vec<u8>,
        pending: Vec<Pending>,
    },
    Dir {
        durable: BTreeMap<String, usize>,
        current: BTreeMap<String, usize>,
    },
}

/// The file-system model: nodes by number, the root first.
#[derive(Debug, Clone)]
struct Model {
    root: PathBuf,
    nodes: Vec<Node>,
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

impl Model {
    /// The model of `root` as it is on disk now, all of it durable.
    fn new(root: &Path) -> std::io::Result<Self> {
        let mut model = Model {
            root: root.to_path_buf(),
            nodes: vec![Node::Dir {
                durable: BTreeMap::new(),
                current: BTreeMap::new(),
            }],
        };
        model.load(ROOT, root)?;
        Ok(model)
    }

    fn load(&mut self, dir: usize, path: &Path) -> std::io::Result<()> {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let node = if entry.file_type()?.is_dir() {
                self.nodes.push(Node::Dir {
                    durable: BTreeMap::new(),
                    current: BTreeMap::new(),
                });
                let n = self.nodes.len() - 1;
                self.load(n, &entry.path())?;
                n
            } else {
                self.nodes.push(Node::File {
                    durable: std::fs::read(entry.path())?,
                    pending: Vec::new(),
                });
                self.nodes.len() - 1
            };
            if let Node::Dir { durable, current } = &mut self.nodes[dir] {
                durable.insert(name.clone(), node);
                current.insert(name, node);
            }
        }
        Ok(())
    }

    /// The directory node and entry name of `path` (in the current view).
    fn parent_of(&self, path: &Path) -> std::io::Result<(usize, String)> {
        let relative = path
            .strip_prefix(&self.root)
            .map_err(|_| invalid(format!("{} is outside the recording", path.display())))?;
        let mut components: Vec<String> = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let name = components
            .pop()
            .ok_or_else(|| invalid("the recorded root itself".into()))?;
        let mut dir = ROOT;
        for component in components {
            dir = match &self.nodes[dir] {
                Node::Dir { current, .. } => *current
                    .get(&component)
                    .ok_or_else(|| invalid(format!("{} is not in the model", path.display())))?,
                Node::File { .. } => {
                    return Err(invalid(format!("a file on the path {}", path.display())));
                }
            };
        }
        Ok((dir, name))
    }

    fn node_of(&self, path: &Path) -> std::io::Result<usize> {
        if path == self.root {
            return Ok(ROOT);
        }
        let (dir, name) = self.parent_of(path)?;
        match &self.nodes[dir] {
            Node::Dir { current, .. } => current
                .get(&name)
                .copied()
                .ok_or_else(|| invalid(format!("{} is not in the model", path.display()))),
            Node::File { .. } => Err(invalid(format!("{} is under a file", path.display()))),
        }
    }

    fn entries(&mut self, dir: usize) -> std::io::Result<&mut BTreeMap<String, usize>> {
        match &mut self.nodes[dir] {
            Node::Dir { current, .. } => Ok(current),
            Node::File { .. } => Err(invalid("a file used as a directory".into())),
        }
    }

    fn pending(&mut self, path: &Path, change: Pending) -> std::io::Result<()> {
        let node = self.node_of(path)?;
        match &mut self.nodes[node] {
            Node::File { pending, .. } => {
                pending.push(change);
                Ok(())
            }
            Node::Dir { .. } => Err(invalid(format!("{} is a directory", path.display()))),
        }
    }

    fn apply(&mut self, op: &FsOp) -> std::io::Result<()> {
        match op {
            FsOp::Mkdir(path) => {
                let (dir, name) = self.parent_of(path)?;
                if !self.entries(dir)?.contains_key(&name) {
                    self.nodes.push(Node::Dir {
                        durable: BTreeMap::new(),
                        current: BTreeMap::new(),
                    });
                    let node = self.nodes.len() - 1;
                    self.entries(dir)?.insert(name, node);
                }
            }
            FsOp::Create(path) => {
                let (dir, name) = self.parent_of(path)?;
                match self.entries(dir)?.get(&name).copied() {
                    Some(_) => self.pending(path, Pending::SetLen(0))?,
                    None => {
                        self.nodes.push(Node::File {
                            durable: Vec::new(),
                            pending: Vec::new(),
                        });
                        let node = self.nodes.len() - 1;
                        self.entries(dir)?.insert(name, node);
                    }
                }
            }
            FsOp::Write { path, offset, data } => self.pending(
                path,
                Pending::Write {
                    offset: *offset,
                    data: data.clone(),
                },
            )?,
            FsOp::SetLen { path, len } => self.pending(path, Pending::SetLen(*len))?,
            FsOp::Sync(path) => {
                let node = self.node_of(path)?;
                match &mut self.nodes[node] {
                    Node::File { durable, pending } => {
                        for change in pending.drain(..) {
                            apply_pending(durable, &change);
                        }
                    }
                    Node::Dir { durable, current } => *durable = current.clone(),
                }
            }
            FsOp::Rename { from, to } => {
                let (from_dir, from_name) = self.parent_of(from)?;
                let node = self.entries(from_dir)?.remove(&from_name).ok_or_else(|| {
                    invalid(format!("renaming {}, not in the model", from.display()))
                })?;
                let (to_dir, to_name) = self.parent_of(to)?;
                self.entries(to_dir)?.insert(to_name, node);
            }
            FsOp::Remove(path) => {
                let (dir, name) = self.parent_of(path)?;
                self.entries(dir)?.remove(&name);
            }
        }
        Ok(())
    }

    /// Writes the durable state of directory `dir` into `into`.
    fn write_durable(
        &self,
        dir: usize,
        into: &Path,
        mode: CrashMode,
        rng: &mut rand::rngs::StdRng,
    ) -> std::io::Result<()> {
        let Node::Dir { durable, .. } = &self.nodes[dir] else {
            return Err(invalid("a file used as a directory".into()));
        };
        // A node reachable under two durable names (a rename made durable
        // in one directory only) is written under each.
        let mut written: HashMap<usize, PathBuf> = HashMap::new();
        for (name, &node) in durable {
            let path = into.join(name);
            match &self.nodes[node] {
                Node::Dir { .. } => {
                    std::fs::create_dir(&path)?;
                    self.write_durable(node, &path, mode, rng)?;
                }
                Node::File { durable, pending } => {
                    if let Some(first) = written.get(&node) {
                        std::fs::copy(first, &path)?;
                        continue;
                    }
                    let mut content = durable.clone();
                    if mode == CrashMode::KeepPrefix && !pending.is_empty() {
                        let kept = rng.random_range(0..=pending.len());
                        for (i, change) in pending[..kept].iter().enumerate() {
                            match change {
                                // The last kept write may be torn.
                                Pending::Write { offset, data }
                                    if i + 1 == kept && rng.random_bool(0.5) =>
                                {
                                    let cut = rng.random_range(0..=data.len());
                                    apply_pending(
                                        &mut content,
                                        &Pending::Write {
                                            offset: *offset,
                                            data: data[..cut].to_vec(),
                                        },
                                    );
                                }
                                change => apply_pending(&mut content, change),
                            }
                        }
                    }
                    std::fs::write(&path, content)?;
                    written.insert(node, path);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(recording: &Recording, mode: CrashMode) -> tempfile::TempDir {
        let into = tempfile::tempdir().expect("temporary directory");
        recording
            .crash_image(recording.position(), mode, 7, into.path())
            .expect("image");
        into
    }

    #[test]
    fn only_synced_content_and_entries_survive() {
        let root = tempfile::tempdir().expect("temporary directory");
        let recording = Recording::start(root.path()).expect("start");
        let file = root.path().join("f");
        let apply = |op: FsOp| note(|| op);
        apply(FsOp::Create(file.clone()));
        apply(FsOp::Write {
            path: file.clone(),
            offset: 0,
            data: b"durable".to_vec(),
        });
        apply(FsOp::Sync(file.clone()));
        // The entry of `f` is not durable yet: nothing survives.
        let lost = image(&recording, CrashMode::DurableOnly);
        assert!(!lost.path().join("f").exists());
        apply(FsOp::Sync(root.path().to_path_buf()));
        apply(FsOp::Write {
            path: file.clone(),
            offset: 7,
            data: b" and lost".to_vec(),
        });
        let kept = image(&recording, CrashMode::DurableOnly);
        assert_eq!(
            std::fs::read(kept.path().join("f")).expect("read"),
            b"durable"
        );
        // A rename not made durable leaves the old name.
        apply(FsOp::Rename {
            from: file.clone(),
            to: root.path().join("g"),
        });
        let renamed = image(&recording, CrashMode::DurableOnly);
        assert!(renamed.path().join("f").exists());
        assert!(!renamed.path().join("g").exists());
    }

    #[test]
    fn keep_prefix_keeps_a_prefix_of_unsynced_writes() {
        let root = tempfile::tempdir().expect("temporary directory");
        let recording = Recording::start(root.path()).expect("start");
        let file = root.path().join("f");
        note(|| FsOp::Create(file.clone()));
        note(|| FsOp::Sync(root.path().to_path_buf()));
        for (i, chunk) in [b"aaaa", b"bbbb", b"cccc"].iter().enumerate() {
            note(|| FsOp::Write {
                path: file.clone(),
                offset: 4 * i as u64,
                data: chunk.to_vec(),
            });
        }
        let whole = b"aaaabbbbcccc";
        for seed in 0..32 {
            let into = tempfile::tempdir().expect("temporary directory");
            recording
                .crash_image(
                    recording.position(),
                    CrashMode::KeepPrefix,
                    seed,
                    into.path(),
                )
                .expect("image");
            let content = std::fs::read(into.path().join("f")).expect("read");
            assert!(whole.starts_with(&content), "{content:?}");
        }
    }
}
