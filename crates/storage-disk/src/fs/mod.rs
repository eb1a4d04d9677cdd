//! `FsBackend`: one plain file per object under a root directory.

mod backend;
mod dir;
mod io;
mod layout;
mod migrate;
mod sweep;
mod trailer;

pub use backend::FsBackend;
pub use sweep::{DEFAULT_SWEEP_AGE, SweepReport};
