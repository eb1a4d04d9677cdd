//! The test-server machinery: each server (SeaweedFS, moto, Azurite,
//! fake-gcs-server) installs, starts on 127.0.0.1,
//! answers, and is gone once its handle is dropped.

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use storage_conformance::servers::{self, Lifetime, RunningServer};

fn port_of(server: &RunningServer) -> u16 {
    server
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("endpoint ends with a port")
}

/// Starts a server, checks it listens on loopback, drops it and checks its
/// process is gone.
fn starts_answers_and_stops(
    start: fn(&Path, Lifetime) -> Result<RunningServer, servers::ServerError>,
) {
    let tools = servers::tools_dir();
    servers::install(&tools).expect("install the test servers");
    let server = start(&tools, Lifetime::TiedToThisProcess).expect("start");
    assert!(
        server.endpoint.starts_with("http://127.0.0.1:"),
        "{}",
        server.endpoint
    );
    let port = port_of(&server);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "{} does not answer on {port}",
        server.name
    );
    let pid = server.pid();
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "process {pid} outlived its handle"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn seaweedfs_starts_answers_and_stops() {
    starts_answers_and_stops(servers::start_seaweedfs);
}

#[test]
fn moto_starts_answers_and_stops() {
    starts_answers_and_stops(servers::start_moto);
}

#[test]
fn azurite_starts_answers_and_stops() {
    starts_answers_and_stops(servers::start_azurite);
}

#[test]
fn ports_are_never_handed_out_twice() {
    let ports: Vec<u16> = (0..50)
        .map(|_| servers::free_port().expect("port"))
        .collect();
    let mut unique = ports.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ports.len());
}

#[test]
fn fake_gcs_server_starts_answers_and_stops() {
    starts_answers_and_stops(servers::start_fake_gcs);
}
