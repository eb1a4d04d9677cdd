//! `FsBackend`: one plain file per object under a root directory.

mod backend;
mod io;
mod layout;
mod sidecar;

pub use backend::FsBackend;
