//! `cargo xtask` with the `full` feature: the cloud backends and the
//! benchmarks. The light `xtask` runs it through `cargo run --bin
//! xtask-full` for the commands that need it.

fn main() -> std::process::ExitCode {
    xtask::run()
}
