//! `cargo xtask conformance`: the contract suite against each backend, as a
//! matrix (backend × suite) and optionally as JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::{Deserialize, Serialize};
use storage_conformance::{BackendReport, Filter, Status, Tally, run, suites};

use crate::backends;

#[derive(clap::Args)]
pub struct Args {
    /// Backends to run (repeatable): memory, fs, logstore, s3 (SeaweedFS),
    /// s3-moto, azure (Azurite), gcs (fake-gcs-server). Default: the
    /// embedded ones (memory, fs, logstore).
    #[arg(long = "backend")]
    backends: Vec<String>,
    /// Run every backend xtask knows.
    #[arg(long)]
    all: bool,
    /// Add the peer rows: object_store's InMemory, LocalFileSystem,
    /// AmazonS3 (SeaweedFS) and MicrosoftAzure (Azurite) through
    /// `ObjectStoreBackend` (os-memory, os-fs, os-s3, os-azure). Their
    /// failures are findings about object_store: printed, not fatal.
    #[arg(long)]
    peers: bool,
    /// Suites to run (repeatable). Default: all.
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Run only checks whose name contains this (repeatable).
    #[arg(long = "check")]
    checks: Vec<String>,
    /// Run the checks declared as server limitations too (to see whether
    /// each still fails).
    #[arg(long)]
    ignore_limitations: bool,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run every backend through `Retry` over a fault injector that faults
    /// 30 % of calls (the contract must still hold), instead of bare.
    #[arg(long)]
    retry: bool,
    /// Run every backend through `Encrypted` (a fixed test KEK, 64 KiB
    /// segments), with the `crypto` suite reading the store below it; with
    /// `--retry`, as `Retry<Encrypted<Faults<B>>>`.
    #[arg(long)]
    encrypt: bool,
    /// With `--encrypt --retry`: the other layer order,
    /// `Encrypted<Retry<Faults<B>>>`.
    #[arg(long, requires_all = ["encrypt", "retry"])]
    crypto_outside: bool,
    /// Run against a real account at this endpoint (with `--backend` s3,
    /// azure or gcs, and `--bucket`): credentials from the environment, the
    /// run skipped without them; empty for the service's default endpoint.
    /// Not run by CI.
    #[arg(long)]
    endpoint: Option<String>,
    /// The existing bucket (or container) of a real-account run (default:
    /// `STORAGE_SMOKE_BUCKET`); each check writes under a prefix of its
    /// own, all deleted at the end.
    #[arg(long)]
    bucket: Option<String>,
    /// How many backends run at once, each in a process of its own (with
    /// several backends). Default 2: the rows wait mostly on servers,
    /// fsyncs and the fault runs' delays, so two at a time take about half
    /// the time of one at a time on a 2-core machine; 1 runs them one by
    /// one.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
    /// Print no matrix (for the per-backend child runs, whose parent prints
    /// one for all).
    #[arg(long, hide = true)]
    quiet: bool,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    backends: &'a [BackendReport],
}

pub async fn main(args: Args) -> anyhow::Result<ExitCode> {
    for suite in &args.suites {
        anyhow::ensure!(
            suites::SUITES.contains(&suite.as_str()),
            "unknown suite {suite:?}; known: {}",
            suites::SUITES.join(", ")
        );
    }
    let mut names: Vec<String> = if args.all {
        backends::ALL.iter().map(|s| (*s).to_owned()).collect()
    } else if args.backends.is_empty() && !args.peers {
        backends::DEFAULT.iter().map(|s| (*s).to_owned()).collect()
    } else {
        args.backends.clone()
    };
    if args.peers {
        names.extend(backends::PEERS.iter().map(|s| (*s).to_owned()));
    }
    let filter = Filter {
        suites: args.suites.clone(),
        names: args.checks.clone(),
        ignore_limitations: args.ignore_limitations,
    };
    if args.endpoint.is_some() || args.bucket.is_some() {
        return real_account(&names, &filter, &args).await;
    }
    let reports = if names.len() == 1 {
        vec![run_here(&names[0], &filter, &args).await?]
    } else {
        // Every backend in a process of its own: the bounded-memory check
        // measures the process's peak memory, which the checks and backends
        // run before it would otherwise distort.
        if names.iter().any(|n| backends::needs_servers(n)) {
            // Before the children start at once: each would install.
            storage_conformance::servers::install(&storage_conformance::servers::tools_dir())?;
        }
        run_children(&names, &args)?
    };
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&JsonReport { backends: &reports })?,
        )?;
    }
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    print_matrix(&reports);
    if let Some(path) = &args.json {
        println!("\nwrote {}", path.display());
    }
    let failed = reports
        .iter()
        .any(|r| r.total().failed > 0 && !backends::is_peer(&r.name));
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Without the `full` feature (`cargo xtask` re-runs itself with it for
/// `--endpoint`, so this is reached only by a direct build).
#[cfg(not(feature = "full"))]
async fn real_account(_: &[String], _: &Filter, _: &Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("a real-account run needs xtask's `full` feature")
}

/// The opt-in run against a real account (see `crate::real`).
#[cfg(feature = "full")]
async fn real_account(names: &[String], filter: &Filter, args: &Args) -> anyhow::Result<ExitCode> {
    let [name] = names else {
        anyhow::bail!("a real-account run takes exactly one --backend: s3, azure or gcs");
    };
    anyhow::ensure!(
        ["s3", "azure", "gcs"].contains(&name.as_str()),
        "a real-account run is for s3, azure or gcs, not {name:?}"
    );
    anyhow::ensure!(
        !args.retry && !args.encrypt,
        "a real-account run is always through Retry and never through the fault injector or Encrypted"
    );
    let bucket = match args
        .bucket
        .clone()
        .or_else(|| std::env::var("STORAGE_SMOKE_BUCKET").ok())
    {
        Some(bucket) => bucket,
        None => anyhow::bail!("a real-account run needs --bucket (or STORAGE_SMOKE_BUCKET)"),
    };
    let endpoint = args.endpoint.clone().unwrap_or_default();
    let account = match crate::real::RealAccount::new(name, endpoint, bucket) {
        Ok(account) => account,
        Err(reason) => {
            println!("{name} against a real account: skipped: {reason}");
            return Ok(ExitCode::SUCCESS);
        }
    };
    eprintln!("running the contract suite against {name} on a real account ...");
    let report = run(&account, &suites::all(), filter).await;
    match account.clean_up().await {
        Ok(n) => eprintln!("deleted the run's {n} objects"),
        Err(e) => eprintln!("cleaning up the run's objects failed: {e}"),
    }
    let reports = [report];
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&JsonReport { backends: &reports })?,
        )?;
    }
    print_matrix(&reports);
    Ok(if reports[0].total().failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Runs the suite against `name` in this process, through the layers
/// `args` asks for.
async fn run_here(name: &str, filter: &Filter, args: &Args) -> anyhow::Result<BackendReport> {
    let scratch = tempfile::Builder::new()
        .prefix("storage-conformance-")
        .tempdir()?;
    let factory = backends::factory(name, scratch.path().join(name), args.retry)?;
    if !args.retry {
        let factory: Box<dyn storage_conformance::BackendFactory> = if args.encrypt {
            Box::new(crate::encrypted::EncryptedFactory::new(factory))
        } else {
            factory
        };
        eprintln!("running the contract suite against {} ...", factory.name());
        return Ok(run(factory.as_ref(), &suites::all(), filter).await);
    }
    let faulty = if args.encrypt && !args.crypto_outside {
        crate::faulty::Faulty::encrypted(factory)
    } else {
        crate::faulty::Faulty::new(factory)
    };
    let counter = faulty.counter();
    let factory: Box<dyn storage_conformance::BackendFactory> = if args.crypto_outside {
        Box::new(crate::encrypted::EncryptedFactory::new(Box::new(faulty)))
    } else {
        Box::new(faulty)
    };
    eprintln!(
        "running the contract suite against {} with {:.0} % of calls faulted ...",
        factory.name(),
        crate::faulty::FAULT_RATE * 100.0
    );
    let mut report = run(factory.as_ref(), &suites::all(), filter).await;
    report
        .notes
        .push(format!("injected {}", counter.snapshot()));
    Ok(report)
}

#[derive(Deserialize)]
struct OwnedJsonReport {
    backends: Vec<BackendReport>,
}

/// Runs every backend of `names` in a child process, `args.jobs` at a time,
/// and returns their reports in the order of `names`.
fn run_children(names: &[String], args: &Args) -> anyhow::Result<Vec<BackendReport>> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<anyhow::Result<BackendReport>>>> =
        names.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..args.jobs.clamp(1, names.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(name) = names.get(i) else { break };
                    let report = run_in_child(name, args);
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(report);
                    }
                }
            });
        }
    });
    slots
        .into_iter()
        .zip(names)
        .map(|(slot, name)| {
            slot.into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Err(anyhow::anyhow!("{name}: its run left no report")))
        })
        .collect()
}

/// Runs the suite against `name` in a child process (this program, with the
/// same selection), and reads its JSON report back.
fn run_in_child(name: &str, args: &Args) -> anyhow::Result<BackendReport> {
    let report = tempfile::NamedTempFile::new()?;
    let mut command = std::process::Command::new(std::env::current_exe()?);
    command
        .args(["conformance", "--quiet", "--backend", name, "--json"])
        .arg(report.path());
    for suite in &args.suites {
        command.args(["--suite", suite]);
    }
    for check in &args.checks {
        command.args(["--check", check]);
    }
    if args.ignore_limitations {
        command.arg("--ignore-limitations");
    }
    if args.retry {
        command.arg("--retry");
    }
    if args.encrypt {
        command.arg("--encrypt");
    }
    if args.crypto_outside {
        command.arg("--crypto-outside");
    }
    command.env(crate::MMAP_THRESHOLD.0, crate::MMAP_THRESHOLD.1);
    let status = command.status();
    let parsed: Option<OwnedJsonReport> = std::fs::read(report.path())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let failure = match (&status, parsed.and_then(|mut r| r.backends.pop())) {
        (Ok(status), Some(report)) if status.success() => return Ok(report),
        (Ok(status), Some(_)) => format!("the run wrote its report, then ended with {status}"),
        (Ok(status), None) => format!("the run ended with {status} and wrote no report"),
        (Err(e), _) => format!("the run could not start: {e}"),
    };
    // A run that broke down is a failure of that backend's row; the other
    // backends still run.
    Ok(BackendReport {
        name: name.to_owned(),
        server: None,
        notes: Vec::new(),
        checks: vec![storage_conformance::CheckReport {
            suite: "harness".to_owned(),
            name: "the_suite_ran_to_its_end".to_owned(),
            status: Status::Failed,
            ms: 0,
            message: Some(failure),
        }],
    })
}

fn cell(t: &Tally) -> String {
    let mut s = format!("{}/{}", t.passed, t.failed);
    if t.unsupported > 0 || t.limitation > 0 {
        s.push_str(&format!("/{}", t.unsupported + t.limitation));
    }
    s
}

fn print_matrix(reports: &[BackendReport]) {
    let suites: Vec<&str> = suites::SUITES
        .iter()
        .copied()
        .filter(|s| {
            reports
                .iter()
                .any(|r| r.checks.iter().any(|c| c.suite == *s))
        })
        .collect();
    let checks = reports.first().map_or(0, |r| r.checks.len());
    println!(
        "\ncontract suite: {checks} checks; cells are passed/failed[/not run: unsupported or server limitation]\n"
    );
    let label = |r: &BackendReport| match &r.server {
        Some(server) => format!("{} ({server})", r.name),
        None => r.name.clone(),
    };
    let width = reports
        .iter()
        .map(|r| label(r).len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut header = format!("{:<width$}", "backend");
    for s in &suites {
        header.push_str(&format!(" {s:>12}"));
    }
    header.push_str(&format!(" {:>12}  result", "total"));
    println!("{header}");
    for report in reports {
        let by_suite = report.by_suite();
        let mut line = format!("{:<width$}", label(report));
        for s in &suites {
            line.push_str(&format!(
                " {:>12}",
                cell(&by_suite.get(s).copied().unwrap_or_default())
            ));
        }
        let total = report.total();
        let verdict = match (total.failed, backends::is_peer(&report.name)) {
            (0, _) => "PASS",
            (_, true) => "differs (peer: not fatal)",
            (_, false) => "FAIL",
        };
        line.push_str(&format!(" {:>12}  {verdict}", cell(&total)));
        println!("{line}");
    }
    for report in reports {
        for note in &report.notes {
            println!("  {}: {note}", report.name);
        }
        for check in report.checks.iter().filter(|c| c.status != Status::Passed) {
            let label = match check.status {
                Status::Failed => "FAILED",
                Status::Unsupported => "not supported",
                Status::Limitation => "server limitation",
                Status::Passed => continue,
            };
            println!(
                "  {} {}/{}: {label}: {}",
                report.name,
                check.suite,
                check.name,
                check.message.as_deref().unwrap_or("")
            );
        }
    }
}
