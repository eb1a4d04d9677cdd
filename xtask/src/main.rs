//! Project tasks: `cargo xtask conformance`, `cargo xtask bench`,
//! `cargo xtask test`.

mod backends;
mod bench;
mod bench_crypto;
mod bench_logstore;
mod conformance;
mod encrypted;
mod faulty;
mod hooks;
mod real;
mod servers;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Tasks of the storage workspace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the contract suite against backends and print the matrix.
    Conformance(conformance::Args),
    /// Measure put and get throughput against object_store's peers.
    Bench(bench::Args),
    /// Run every test of the workspace and the conformance matrix on every
    /// backend (the README's test command); installs the test servers first.
    Test,
    /// Manage the local test servers (SeaweedFS, moto, Azurite, fake-gcs-server).
    Servers {
        #[command(subcommand)]
        action: servers::Action,
    },
    /// Open a LogStore and print the open time and peak memory (used by
    /// `bench`, in a fresh process).
    #[command(hide = true)]
    LogstoreOpen { dir: std::path::PathBuf },
    /// Compare per-request client and server CPU of our client and
    /// `object_store`'s against one test server (`s3` or `azure`).
    #[command(hide = true)]
    Probe { backend: String, requests: usize },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Conformance(args) => runtime().and_then(|rt| rt.block_on(conformance::main(args))),
        Command::Bench(args) => runtime().and_then(|rt| rt.block_on(bench::main(args))),
        Command::Test => run_tests(),
        Command::Servers { action } => servers::main(action),
        Command::Probe { backend, requests } => runtime()
            .and_then(|rt| rt.block_on(bench::probe(&backend, requests)))
            .map(|()| ExitCode::SUCCESS),
        Command::LogstoreOpen { dir } => runtime()
            .and_then(|rt| rt.block_on(bench_logstore::open_child(&dir)))
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// glibc's setting that fixes the size from which allocations are mapped
/// (and unmapped when freed) at 128 KiB, for the processes that measure
/// their own peak resident memory (the bounded-memory checks). By default
/// glibc raises that threshold after the first large free, after which
/// buffers of several MiB come from per-thread arenas that keep freed
/// memory: measured on `core/large_object_streams_with_bounded_memory`
/// (192 MiB through S3 on moto), growth of 58–82 MiB by default against a
/// steady 41 MiB (the parts in flight) with the threshold fixed, so the
/// check measured the allocator rather than the backend.
pub(crate) const MMAP_THRESHOLD: (&str, &str) = ("MALLOC_MMAP_THRESHOLD_", "131072");

/// `cargo test --workspace` (unit, integration and doc tests), then the
/// conformance matrix on every backend (`cargo xtask conformance --all`,
/// the S3, Azure and GCS test servers included). The per-crate tests that
/// run the whole suite on one backend the matrix also covers are
/// `#[ignore]`d with that reason, so that each suite runs once per backend.
fn run_tests() -> anyhow::Result<ExitCode> {
    storage_conformance::servers::install(&storage_conformance::servers::tools_dir())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    for args in [
        &["test", "--workspace", "--all-targets"][..],
        &["test", "--workspace", "--doc"][..],
        // The facade's tests of its optional backends and layers (a
        // workspace build gives it only its default feature).
        &["test", "-p", "storage", "--all-features", "--all-targets"][..],
        &["test", "-p", "storage", "--all-features", "--doc"][..],
    ] {
        let status = std::process::Command::new(&cargo)
            .args(args)
            .env(MMAP_THRESHOLD.0, MMAP_THRESHOLD.1)
            .status()?;
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut matrix = std::process::Command::new(std::env::current_exe()?);
    matrix.args(["conformance", "--all"]);
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        matrix
            .arg("--json")
            .arg(std::path::Path::new(&dir).join("conformance.json"));
    }
    let status = matrix.env(MMAP_THRESHOLD.0, MMAP_THRESHOLD.1).status()?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
