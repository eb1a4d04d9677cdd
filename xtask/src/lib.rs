//! Project tasks: `cargo xtask conformance`, `cargo xtask bench`,
//! `cargo xtask test`.

mod backends;
#[cfg(feature = "full")]
mod bench;
#[cfg(feature = "full")]
mod bench_crypto;
#[cfg(feature = "full")]
mod bench_logstore;
#[cfg(feature = "full")]
mod cloud;
mod conformance;
mod encrypted;
mod faulty;
#[cfg(feature = "full")]
mod gcs_minimal;
#[cfg(feature = "full")]
mod peers;
#[cfg(feature = "full")]
mod public_api;
#[cfg(feature = "full")]
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
    /// Measure put and get throughput against object_store 0.14's stores and
    /// the disk's and HTTP's floors, in the same run.
    #[cfg(feature = "full")]
    Bench(bench::Args),
    /// Run every test of the workspace and the conformance matrix on every
    /// backend (the README's test command); installs the test servers first.
    Test,
    /// Write every library crate's public API to `crates/<name>/public-api.txt`
    /// (nightly rustdoc JSON); with `--check`, fail if a listing changed.
    #[cfg(feature = "full")]
    PublicApi {
        #[arg(long)]
        check: bool,
    },
    /// Manage the local test servers (SeaweedFS, moto, Azurite, fake-gcs-server).
    Servers {
        #[command(subcommand)]
        action: servers::Action,
    },
    /// Open a LogStore and print the open time and peak memory (used by
    /// `bench`, in a fresh process).
    #[cfg(feature = "full")]
    #[command(hide = true)]
    LogstoreOpen { dir: std::path::PathBuf },
    /// Compare per-request client and server CPU of our client and the
    /// bench's reference against one test server (`s3`, `azure` or `gcs`).
    #[cfg(feature = "full")]
    #[command(hide = true)]
    Probe { backend: String, requests: usize },
}

/// The command line's entry point, shared by the `xtask` binary (the light
/// build) and `xtask-full` (built with the `full` feature, which the light
/// build runs for the commands that need it: the two are separate files, so
/// neither build replaces the other's binary while it runs).
pub fn run() -> ExitCode {
    #[cfg(not(feature = "full"))]
    if let Some(code) = full::rerun_if_needed() {
        return code;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Conformance(args) => runtime().and_then(|rt| rt.block_on(conformance::main(args))),
        #[cfg(feature = "full")]
        Command::Bench(args) => bench::rerun_with_fixed_mmap_threshold()
            .unwrap_or_else(|| runtime().and_then(|rt| rt.block_on(bench::main(args)))),
        Command::Test => run_tests(),
        Command::Servers { action } => servers::main(action),
        #[cfg(feature = "full")]
        Command::PublicApi { check } => public_api::main(check),
        #[cfg(feature = "full")]
        Command::Probe { backend, requests } => runtime()
            .and_then(|rt| rt.block_on(bench::probe(&backend, requests)))
            .map(|()| ExitCode::SUCCESS),
        #[cfg(feature = "full")]
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

/// The light build of xtask (the default) and the step to the full one.
#[cfg(not(feature = "full"))]
mod full {
    use std::ffi::OsString;
    use std::process::ExitCode;

    /// Whether a command line needs the `full` feature: benchmarks (and
    /// their hidden helpers), and conformance runs on a cloud backend
    /// (`--all`, a cloud `--backend`, a real account's `--endpoint`).
    pub fn needs_full(args: &[OsString]) -> bool {
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let Some(command) = args.first() else {
            return false;
        };
        const CLOUD: [&str; 4] = ["s3", "s3-moto", "azure", "gcs"];
        match command.as_str() {
            "bench" | "probe" | "logstore-open" | "public-api" => true,
            "conformance" => args.iter().enumerate().any(|(i, arg)| {
                arg == "--all"
                    || arg == "--peers"
                    || arg.starts_with("--backend=os-")
                    || (arg == "--backend" && args.get(i + 1).is_some_and(|b| b.starts_with("os-")))
                    || arg == "--endpoint"
                    || arg.starts_with("--endpoint=")
                    || arg
                        .strip_prefix("--backend=")
                        .is_some_and(|b| CLOUD.contains(&b))
                    || (arg == "--backend"
                        && args.get(i + 1).is_some_and(|b| CLOUD.contains(&b.as_str())))
            }),
            _ => false,
        }
    }

    /// The manifest of the xtask package to build the full binary from: the
    /// one `cargo run` names in `CARGO_MANIFEST_DIR` when it starts this
    /// process (`runtime_dir`), so that a binary built from another checkout
    /// sharing the target directory still builds this checkout's; the
    /// directory compiled in when started some other way.
    fn xtask_manifest(runtime_dir: Option<OsString>) -> std::path::PathBuf {
        runtime_dir
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
            .join("Cargo.toml")
    }

    /// Runs this command line again through `cargo run` with the `full`
    /// feature when it needs it, returning its exit code; `None` when this
    /// build can run it. Only then do the cloud SDKs and the benchmark
    /// peers get compiled: `cargo xtask conformance` on the embedded
    /// backends never builds them.
    pub fn rerun_if_needed() -> Option<ExitCode> {
        let args: Vec<OsString> = std::env::args_os().skip(1).collect();
        if !needs_full(&args) {
            return None;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let manifest = xtask_manifest(std::env::var_os("CARGO_MANIFEST_DIR"));
        eprintln!(
            "cargo xtask: this command needs the cloud backends; building xtask with `--features full` ..."
        );
        let status = std::process::Command::new(cargo)
            .args(["run", "--quiet", "--release", "--manifest-path"])
            .arg(&manifest)
            .args(["--features", "full", "--bin", "xtask-full", "--"])
            .args(&args)
            .status();
        Some(match status {
            Ok(status) if status.success() => ExitCode::SUCCESS,
            Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
            Err(e) => {
                eprintln!("error: running cargo: {e}");
                ExitCode::FAILURE
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::{needs_full, xtask_manifest};

        #[test]
        fn the_manifest_is_the_checkout_cargo_ran_from() {
            assert_eq!(
                xtask_manifest(Some("/elsewhere/xtask".into())),
                std::path::Path::new("/elsewhere/xtask/Cargo.toml")
            );
            assert_eq!(
                xtask_manifest(None),
                std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            );
        }

        fn line(args: &str) -> Vec<std::ffi::OsString> {
            args.split_whitespace().map(Into::into).collect()
        }

        #[test]
        fn embedded_runs_stay_light() {
            assert!(!needs_full(&line("conformance")));
            assert!(!needs_full(&line("conformance --backend logstore --retry")));
            assert!(!needs_full(&line("servers start")));
        }

        #[test]
        fn cloud_runs_and_benchmarks_need_full() {
            assert!(needs_full(&line("conformance --all")));
            assert!(needs_full(&line(
                "conformance --backend memory --backend s3"
            )));
            assert!(needs_full(&line("conformance --backend=gcs")));
            assert!(needs_full(&line("bench")));
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
    let started = std::time::Instant::now();
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
        eprintln!(
            "cargo xtask test: `cargo {}` ended at {} s",
            args.join(" "),
            started.elapsed().as_secs()
        );
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    let mut matrix = std::process::Command::new(std::env::current_exe()?);
    matrix.args(["conformance", "--all", "--peers"]);
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        matrix
            .arg("--json")
            .arg(std::path::Path::new(&dir).join("conformance.json"));
    }
    let status = matrix.env(MMAP_THRESHOLD.0, MMAP_THRESHOLD.1).status()?;
    eprintln!(
        "cargo xtask test: the conformance matrix ended at {} s",
        started.elapsed().as_secs()
    );
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
