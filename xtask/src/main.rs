//! `cargo xtask`: the light build (no cloud SDK, no benchmark peer); see
//! the library's `run`.

fn main() -> std::process::ExitCode {
    xtask::run()
}
