//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1, for tests that put a real
//! SDK client in front of a real local server (SeaweedFS, Azurite,
//! fake-gcs-server) and fail a chosen subset of its requests.
//!
//! Each client connection carries one request. The proxy reads its head,
//! asks the `targeted` predicate about it, and either injects a [`Fault`]
//! (with probability `rate`, drawn from a seeded generator, so that a run can
//! be repeated) or forwards it on a new upstream connection:
//!
//! - The request head goes upstream byte for byte, except that `Connection`
//!   becomes `connection: close` (added if absent) and an
//!   `Expect: 100-continue` is answered by the proxy itself and dropped.
//!   `Host` is kept as the client sent it: S3 SigV4 signatures cover it.
//! - The body (by `Content-Length`, or chunked, with its chunk lines and
//!   trailers as received) is streamed, never held whole.
//! - The answer comes back byte for byte until upstream closes, except that
//!   its `Connection` becomes `connection: close` and a `Location` naming the
//!   upstream authority names the proxy instead (fake-gcs-server returns
//!   resumable-session URIs there, and they must come back through the proxy).
//!
//! An I/O error ends the connection's thread; the client sees its connection
//! close. If upstream cannot be reached, the client gets a 502.
//!
//! ```
//! use storage_conformance::fault_proxy::{Fault, FaultProxy};
//! use storage_conformance::scripted_server::{Reply, TestServer};
//!
//! let server = TestServer::start(|_| Reply::status(200));
//! // A fifth of the S3 part uploads fail, half refused, half with the answer lost.
//! let proxy = FaultProxy::start(
//!     &server.url(),
//!     |request| request.method == "PUT" && request.has_query("partNumber"),
//!     0.2,
//!     7,
//!     vec![Fault::Refuse(Reply::status(503)), Fault::LoseAnswer],
//! )?;
//! // Give the SDK client `proxy.url()` as its endpoint.
//! assert_eq!(proxy.injected(), 0);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::faults::SplitMix64;
use crate::scripted_server::{Reply, Seen, write_reply};

/// What the proxy does to a request it fails.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this reply without forwarding (the server never sees the
    /// request); the request body is read and dropped first.
    Refuse(Reply),
    /// Forward the request, read the server's whole answer, then close the
    /// client's connection without answering (the write was applied, its
    /// answer lost).
    LoseAnswer,
}

/// How long the proxy waits for upstream's next bytes before it gives up on
/// the connection.
const UPSTREAM_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest head line or chunk-size line accepted, in bytes.
const MAX_LINE: u64 = 64 * 1024;

/// Buffer size for each direction, in bytes.
const BUFFER: usize = 64 * 1024;

type Targeted = dyn Fn(&Seen) -> bool + Send + Sync;

/// The proxy; it stops accepting when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

/// What every connection thread reads and counts in.
struct Shared {
    /// Upstream's `host:port`.
    upstream: String,
    /// The proxy's `host:port`.
    authority: String,
    targeted: Box<Targeted>,
    rate: f64,
    faults: Vec<Fault>,
    rng: Mutex<SplitMix64>,
    targeted_count: AtomicU64,
    injected: AtomicU64,
    forwarded: AtomicU64,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://host:port`, a path is ignored).
    /// Requests for which `targeted` returns true fail with probability
    /// `rate` (0.0..=1.0), drawn from a generator seeded with `seed`, with a
    /// fault chosen uniformly among `faults`; other requests are forwarded
    /// untouched. The same seed and the same order of targeted requests give
    /// the same faults.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `upstream` is not an `http://` URL, `rate` is
    /// outside 0.0..=1.0, or `rate` is above 0 with no `faults`; the error of
    /// binding a loopback port.
    pub fn start(
        upstream: &str,
        targeted: impl Fn(&Seen) -> bool + Send + Sync + 'static,
        rate: f64,
        seed: u64,
        faults: Vec<Fault>,
    ) -> io::Result<FaultProxy> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_owned());
        let upstream = upstream
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .filter(|authority| !authority.is_empty())
            .ok_or_else(|| invalid("the upstream must be an http:// URL"))?;
        if !(0.0..=1.0).contains(&rate) {
            return Err(invalid("the fault rate must be within 0.0..=1.0"));
        }
        if rate > 0.0 && faults.is_empty() {
            return Err(invalid("a fault rate above 0 needs at least one fault"));
        }
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: upstream.to_owned(),
            authority: addr.to_string(),
            targeted: Box::new(targeted),
            rate,
            faults,
            rng: Mutex::new(SplitMix64(seed)),
            targeted_count: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let (shared_c, stop_c) = (Arc::clone(&shared), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_c.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let shared = Arc::clone(&shared_c);
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Ok(FaultProxy { addr, shared, stop })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The faults injected so far.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::SeqCst)
    }

    /// The targeted requests seen so far, failed or not.
    pub fn targeted(&self) -> u64 {
        self.shared.targeted_count.load(Ordering::SeqCst)
    }

    /// The requests forwarded whole to upstream so far, including those
    /// whose answer was then lost.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("rate", &self.shared.rate)
            .field("faults", &self.shared.faults)
            .field("targeted", &self.targeted())
            .field("injected", &self.injected())
            .field("forwarded", &self.forwarded())
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Shared {
    /// The fault to inject into `request`, if any, counted.
    fn draw(&self, request: &Seen) -> Option<&Fault> {
        if !(self.targeted)(request) {
            return None;
        }
        self.targeted_count.fetch_add(1, Ordering::SeqCst);
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        if rng.unit() >= self.rate {
            return None;
        }
        let pick = rng.next_u64() % self.faults.len() as u64;
        drop(rng);
        let fault = self.faults.get(usize::try_from(pick).ok()?)?;
        self.injected.fetch_add(1, Ordering::SeqCst);
        Some(fault)
    }
}

/// Serves one client connection: one request, then close.
fn serve(client: TcpStream, shared: &Shared) {
    let Ok(mut to_client) = client.try_clone() else {
        return;
    };
    let mut from_client = BufReader::with_capacity(BUFFER, client);
    let Ok(head) = Head::read(&mut from_client) else {
        return;
    };
    let Some(request) = head.request() else {
        return;
    };
    let Ok(body) = Body::of(&request) else {
        return;
    };
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && to_client
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .is_err()
    {
        return;
    }
    let lose_answer = match shared.draw(&request) {
        Some(Fault::Refuse(reply)) => {
            let _ = answer_here(&mut from_client, &mut to_client, body, reply, &request);
            return;
        }
        Some(Fault::LoseAnswer) => true,
        None => false,
    };
    let Ok(upstream) = TcpStream::connect(&shared.upstream) else {
        let reply = Reply::status(502).body(format!("proxy: {} unreachable", shared.upstream));
        let _ = answer_here(&mut from_client, &mut to_client, body, &reply, &request);
        return;
    };
    let Ok(mut from_upstream) = send(&head, body, &mut from_client, upstream) else {
        return;
    };
    shared.forwarded.fetch_add(1, Ordering::SeqCst);
    if lose_answer {
        let _ = io::copy(&mut from_upstream, &mut io::sink());
    } else {
        let _ = relay(&mut from_upstream, &mut to_client, shared);
    }
}

/// Reads and drops the request body, then answers `reply`.
fn answer_here(
    from_client: &mut impl BufRead,
    to_client: &mut TcpStream,
    body: Body,
    reply: &Reply,
    request: &Seen,
) -> io::Result<()> {
    body.copy(from_client, &mut io::sink())?;
    write_reply(to_client, reply, &request.method)
}

/// Writes the request upstream (head rewritten, body as received) and
/// returns the reader of its answer.
fn send(
    head: &Head,
    body: Body,
    from_client: &mut impl BufRead,
    upstream: TcpStream,
) -> io::Result<BufReader<TcpStream>> {
    upstream.set_read_timeout(Some(UPSTREAM_READ_TIMEOUT))?;
    let mut to_upstream = BufWriter::with_capacity(BUFFER, upstream.try_clone()?);
    let forwarded = head.closing(|name, value| {
        if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue") {
            Edit::Drop
        } else {
            Edit::Keep
        }
    });
    to_upstream.write_all(&forwarded)?;
    body.copy(from_client, &mut to_upstream)?;
    to_upstream.flush()?;
    Ok(BufReader::with_capacity(BUFFER, upstream))
}

/// Copies upstream's answer to the client until upstream closes: interim
/// (1xx) heads as they are, the final head rewritten, then the rest.
fn relay(
    from_upstream: &mut BufReader<TcpStream>,
    to_client: &mut TcpStream,
    shared: &Shared,
) -> io::Result<()> {
    loop {
        let head = Head::read(from_upstream)?;
        let status = head.status();
        if (100..200).contains(&status) && status != 101 {
            to_client.write_all(&head.bytes())?;
            continue;
        }
        let rewritten = head.closing(|name, value| {
            if name.eq_ignore_ascii_case("location") && value.contains(&shared.upstream) {
                let value = value.replace(&shared.upstream, &shared.authority);
                Edit::Replace(format!("{name}: {value}"))
            } else {
                Edit::Keep
            }
        });
        to_client.write_all(&rewritten)?;
        break;
    }
    io::copy(from_upstream, to_client)?;
    to_client.flush()
}

/// A message head as received: the start line and each header line, with
/// their line endings (the empty line that ends the head is not kept).
struct Head {
    start: Vec<u8>,
    fields: Vec<Vec<u8>>,
}

/// What [`Head::closing`] does to one header line.
enum Edit {
    Keep,
    Drop,
    /// Replace the line with this text (without line ending).
    Replace(String),
}

impl Head {
    /// Reads a head up to and including its empty line.
    fn read(reader: &mut impl BufRead) -> io::Result<Head> {
        let start = read_line(reader)?;
        let mut fields = Vec::new();
        loop {
            let line = read_line(reader)?;
            if line.trim_ascii().is_empty() {
                return Ok(Head { start, fields });
            }
            fields.push(line);
        }
    }

    /// The head as a request, if its start line is one.
    fn request(&self) -> Option<Seen> {
        let start = String::from_utf8_lossy(&self.start);
        let mut parts = start.split_whitespace();
        let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
        let headers = self
            .fields
            .iter()
            .filter_map(|line| field(line))
            .map(|(name, value)| (name.to_ascii_lowercase(), value))
            .collect();
        Some(Seen {
            method,
            target,
            headers,
            body: Vec::new(),
        })
    }

    /// The status code of a response head, 0 if it has none.
    fn status(&self) -> u16 {
        String::from_utf8_lossy(&self.start)
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }

    /// The head as received.
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.start.clone();
        self.fields
            .iter()
            .for_each(|line| out.extend_from_slice(line));
        out.extend_from_slice(b"\r\n");
        out
    }

    /// The head with its first `Connection` header replaced by
    /// `connection: close` (added at the end if absent, later ones dropped)
    /// and every other header line as `edit` says, given its name and value.
    fn closing(&self, edit: impl Fn(&str, &str) -> Edit) -> Vec<u8> {
        let mut out = self.start.clone();
        let mut closed = false;
        for line in &self.fields {
            let (name, value) = field(line).unwrap_or_default();
            let edit = if name.eq_ignore_ascii_case("connection") {
                if closed {
                    Edit::Drop
                } else {
                    closed = true;
                    Edit::Replace("connection: close".to_owned())
                }
            } else {
                edit(&name, &value)
            };
            match edit {
                Edit::Keep => out.extend_from_slice(line),
                Edit::Drop => {}
                Edit::Replace(text) => {
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
        if !closed {
            out.extend_from_slice(b"connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

/// A header line's name and value, trimmed.
fn field(line: &[u8]) -> Option<(String, String)> {
    let line = String::from_utf8_lossy(line);
    let (name, value) = line.split_once(':')?;
    Some((name.trim().to_owned(), value.trim().to_owned()))
}

/// One line with its ending; an error at end of input or past [`MAX_LINE`].
fn read_line(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    reader.take(MAX_LINE).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "a line ended early or ran too long",
        ));
    }
    Ok(line)
}

/// How a request's body is framed (RFC 9112 section 6).
#[derive(Debug, Clone, Copy)]
enum Body {
    None,
    Length(u64),
    Chunked,
}

impl Body {
    /// The framing `request` declares; chunked wins over `Content-Length`.
    fn of(request: &Seen) -> io::Result<Body> {
        if request
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            return Ok(Body::Chunked);
        }
        match request.header("content-length") {
            None => Ok(Body::None),
            Some(len) => len
                .parse()
                .map(Body::Length)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a bad content-length")),
        }
    }

    /// Copies the body from `from` to `to` as received, chunk lines and
    /// trailers included.
    fn copy(self, from: &mut impl BufRead, to: &mut impl Write) -> io::Result<()> {
        match self {
            Body::None => Ok(()),
            Body::Length(len) => copy_exactly(from, to, len),
            Body::Chunked => loop {
                let line = read_line(from)?;
                to.write_all(&line)?;
                let size = String::from_utf8_lossy(&line);
                let size = size.split(';').next().unwrap_or("").trim();
                let size = u64::from_str_radix(size, 16)
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "a bad chunk size"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    loop {
                        let line = read_line(from)?;
                        to.write_all(&line)?;
                        if line.trim_ascii().is_empty() {
                            return Ok(());
                        }
                    }
                }
                copy_exactly(from, to, size)?;
                // The line ending after the chunk's data.
                to.write_all(&read_line(from)?)?;
            },
        }
    }
}

/// Copies exactly `len` bytes; an error if `from` ends first.
fn copy_exactly(from: &mut impl BufRead, to: &mut impl Write, len: u64) -> io::Result<()> {
    if io::copy(&mut from.take(len), to)? < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the body ended early",
        ));
    }
    Ok(())
}

/// Puts a one-shot body of `len` pseudo-random bytes (from `seed`) to
/// `key` through `through_proxy`, a client of the proxied server, and
/// reads it back through `direct`, a client of the same server that
/// bypasses the proxy.
///
/// # Panics
/// When the put fails, when the proxy injected no fault (the run would
/// prove nothing), or when the stored bytes differ from the body: this is a
/// test's assertion.
pub async fn assert_stored_whole(
    proxy: &FaultProxy,
    through_proxy: &dyn storage_core::Backend,
    direct: &dyn storage_core::Backend,
    key: &str,
    len: usize,
    seed: u64,
) {
    use sha2::{Digest, Sha256};
    use storage_core::{BackendExt, Key, PutOptions};
    let key = Key::new(key).expect("a valid test key");
    let (body, sha256) = one_shot_body(len, seed);
    let put = through_proxy.put(&key, body, PutOptions::default()).await;
    let (injected, targeted) = (proxy.injected(), proxy.targeted());
    eprintln!("{injected} of {targeted} targeted requests failed");
    assert!(put.is_ok(), "the put failed: {put:?}");
    assert!(injected > 0, "no request failed: the run proves nothing");
    let stored = direct.get_bytes(key.as_str()).await.expect("get");
    let stored_sha256: [u8; 32] = Sha256::digest(&stored).into();
    assert_eq!(
        stored_sha256, sha256,
        "the stored bytes differ from the body"
    );
}

/// A one-shot body of `len` pseudo-random bytes drawn from `seed`, in
/// chunks of uneven sizes (up to 1 MiB), and the SHA-256 of those bytes:
/// what an upload through the proxy must store.
pub fn one_shot_body(len: usize, seed: u64) -> (storage_core::Body, [u8; 32]) {
    use futures::StreamExt;
    use sha2::{Digest, Sha256};
    let mut rng = SplitMix64(seed);
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        data.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    data.truncate(len);
    let sha256: [u8; 32] = Sha256::digest(&data).into();
    let data = bytes::Bytes::from(data);
    let mut chunks = Vec::new();
    let mut offset = 0;
    while offset < len {
        let size = (rng.next_u64() % (1 << 20)) as usize + 1;
        let end = (offset + size).min(len);
        chunks.push(Ok(data.slice(offset..end)));
        offset = end;
    }
    let body = storage_core::Body::stream(futures::stream::iter(chunks).boxed(), None);
    (body, sha256)
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::sync::mpsc;

    use super::*;
    use crate::scripted_server::TestServer;

    /// Sends `request` to `url` and reads until the proxy closes.
    fn exchange(url: &str, request: &[u8]) -> Vec<u8> {
        let addr = url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        stream.write_all(request).expect("send the request");
        let mut answer = Vec::new();
        // A lost answer may end in a reset: what was read is the answer.
        let _ = stream.read_to_end(&mut answer);
        answer
    }

    /// A PUT of `body` with `Content-Length`.
    fn put(target: &str, body: &[u8]) -> Vec<u8> {
        let mut request = format!(
            "PUT {target} HTTP/1.1\r\nHost: bucket.s3.test:9000\r\nConnection: keep-alive\r\n\
             x-amz-date: 20240101T000000Z\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        request
    }

    /// The status line of an answer, if it has one.
    fn status_line(answer: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(answer);
        text.split("\r\n")
            .next()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
    }

    /// The body of an answer (after its head).
    fn body_of(answer: &[u8]) -> &[u8] {
        answer
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&[][..], |at| &answer[at + 4..])
    }

    /// An upstream that records each request's raw bytes (head and body as
    /// received) and answers 200.
    fn recording_upstream() -> (String, mpsc::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the bound address")
        );
        let (sent, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let stream = stream.expect("accept");
                let mut writer = stream.try_clone().expect("clone the stream");
                let mut reader = BufReader::new(stream);
                let head = Head::read(&mut reader).expect("a request head");
                let body = Body::of(&head.request().expect("a request")).expect("framing");
                let mut raw = head.bytes();
                body.copy(&mut reader, &mut raw).expect("the body");
                writer
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .expect("answer");
                let _ = sent.send(raw);
            }
        });
        (url, received)
    }

    fn untargeted(upstream: &str) -> FaultProxy {
        FaultProxy::start(upstream, |_| false, 0.0, 0, Vec::new()).expect("start the proxy")
    }

    fn every_request(upstream: &str, fault: Fault) -> FaultProxy {
        FaultProxy::start(upstream, |_| true, 1.0, 0, vec![fault]).expect("start the proxy")
    }

    #[test]
    fn forwarded_headers_are_unchanged_but_connection() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = untargeted(&server.url());
        exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        let expected = [
            ("host", "bucket.s3.test:9000"),
            ("connection", "close"),
            ("x-amz-date", "20240101T000000Z"),
            ("content-length", "5"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
        assert_eq!(server.seen()[0].headers, expected);
    }

    #[test]
    fn the_answer_is_relayed() {
        let server = TestServer::start(|_| Reply::status(201).body("stored"));
        let proxy = untargeted(&server.url());
        let answer = exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        assert_eq!(
            (status_line(&answer), body_of(&answer)),
            (Some("HTTP/1.1 201 Scripted".to_owned()), &b"stored"[..])
        );
    }

    #[test]
    fn a_large_body_is_forwarded_byte_for_byte() {
        let (upstream, received) = recording_upstream();
        let proxy = untargeted(&upstream);
        let body: Vec<u8> = (0..9 * 1024 * 1024).map(|i: u32| (i % 251) as u8).collect();
        exchange(&proxy.url(), &put("/bucket/key?partNumber=1", &body));
        let raw = received.recv().expect("a request upstream");
        assert!(raw.ends_with(&body) && raw.len() < body.len() + 1024);
    }

    #[test]
    fn a_chunked_body_is_forwarded_as_received() {
        let (upstream, received) = recording_upstream();
        let proxy = untargeted(&upstream);
        let request = b"PUT /o HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n";
        exchange(&proxy.url(), request);
        let expected = b"PUT /o HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
            connection: close\r\n\r\n5;ext=1\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n";
        assert_eq!(received.recv().expect("a request upstream"), expected);
    }

    #[test]
    fn expect_continue_is_answered_by_the_proxy() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = untargeted(&server.url());
        let addr = proxy.url().trim_start_matches("http://").to_owned();
        let mut stream = TcpStream::connect(addr).expect("connect to the proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set a read timeout");
        stream
            .write_all(
                b"PUT /o HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            )
            .expect("send the head");
        let mut interim = [0u8; 25];
        stream.read_exact(&mut interim).expect("an interim answer");
        stream.write_all(b"ok").expect("send the body");
        let mut answer = interim.to_vec();
        let _ = stream.read_to_end(&mut answer);
        assert!(answer.starts_with(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 "));
    }

    #[test]
    fn a_refusal_answers_the_client() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = every_request(&server.url(), Fault::Refuse(Reply::status(503)));
        let answer = exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        assert_eq!(
            status_line(&answer),
            Some("HTTP/1.1 503 Scripted".to_owned())
        );
    }

    #[test]
    fn a_refused_request_never_reaches_upstream() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = every_request(&server.url(), Fault::Refuse(Reply::status(503)));
        exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        assert!(server.seen().is_empty());
    }

    #[test]
    fn a_refusal_is_counted() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = every_request(&server.url(), Fault::Refuse(Reply::status(503)));
        exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        assert_eq!(
            (proxy.targeted(), proxy.injected(), proxy.forwarded()),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_lost_answer_reaches_upstream() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = every_request(&server.url(), Fault::LoseAnswer);
        exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        assert_eq!(server.seen().len(), 1);
    }

    #[test]
    fn a_lost_answer_leaves_the_client_without_a_status_line() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = every_request(&server.url(), Fault::LoseAnswer);
        let answer = exchange(&proxy.url(), &put("/bucket/key", b"hello"));
        assert_eq!(status_line(&answer), None);
    }

    #[test]
    fn a_location_naming_upstream_names_the_proxy() {
        let own_url: Arc<OnceLock<String>> = Arc::default();
        let url = Arc::clone(&own_url);
        let server = TestServer::start(move |_| {
            let upstream = url.get().cloned().unwrap_or_default();
            Reply::status(200).header("Location", &format!("{upstream}/upload?upload_id=1"))
        });
        let _ = own_url.set(server.url());
        let proxy = untargeted(&server.url());
        let answer = exchange(&proxy.url(), b"POST /upload HTTP/1.1\r\nHost: h\r\n\r\n");
        let expected = format!("\r\nLocation: {}/upload?upload_id=1\r\n", proxy.url());
        assert!(String::from_utf8_lossy(&answer).contains(&expected));
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let server = TestServer::start(|_| Reply::status(200));
        let decisions = || {
            let proxy = FaultProxy::start(
                &server.url(),
                |request| request.has_query("partNumber"),
                0.5,
                42,
                vec![
                    Fault::Refuse(Reply::status(500)),
                    Fault::Refuse(Reply::status(503)),
                ],
            )
            .expect("start the proxy");
            (1..=24)
                .map(|part| {
                    let target = format!("/bucket/key?partNumber={part}&uploadId=u");
                    status_line(&exchange(&proxy.url(), &put(&target, b"part")))
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(decisions(), decisions());
    }

    #[test]
    fn concurrent_requests_are_all_forwarded() {
        let server = TestServer::start(|_| Reply::status(200));
        let proxy = untargeted(&server.url());
        let body = vec![7u8; 1024 * 1024];
        std::thread::scope(|scope| {
            for part in 0..8 {
                let (url, body) = (proxy.url(), &body);
                scope.spawn(move || exchange(&url, &put(&format!("/k?partNumber={part}"), body)));
            }
        });
        assert_eq!(proxy.forwarded(), 8);
    }
}
