//! Shared helpers for the API service tests (`tests/api_*.rs` include this file as `support`): a running
//! `xrun serve` on a temporary socket and root, the `docker` CLI pointed at it, and a small
//! raw HTTP client over the socket.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::common;

/// The xrun binary under test.
pub const XRUN: &str = env!("CARGO_BIN_EXE_xrun");

/// The multi-platform busybox image every test loads.
pub const IMAGE: &str = "localhost/busybox-multi:multi";

/// An `xrun serve` on a temporary root and socket; stopped (SIGTERM) on drop.
pub struct Service {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Service {
    /// Starts the service with the busybox-multi fixture loaded into its root.
    pub fn start() -> Service {
        let dir = tempfile::Builder::new()
            .prefix("xrun-api-")
            .tempdir()
            .unwrap();
        let s = Service { dir, child: None };
        let o = s.xrun(&[
            "load",
            "-i",
            common::fixture("busybox-multi").to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut s = s;
        s.spawn();
        s
    }

    /// Starts the serve process (again) and waits until it answers.
    pub fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("serve.log")).unwrap();
        let child = Command::new(XRUN)
            .args(["--log-level", "info", "serve", "--socket"])
            .arg(self.socket())
            .arg("--root")
            .arg(self.root())
            .env_remove("XRUN_ROOT")
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready once it answers a ping (the socket appears before it accepts).
        for _ in 0..500 {
            if UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("xrun serve did not come up: {}", self.log());
    }

    /// Stops the serve process with SIGTERM and waits for it; its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        c.wait().ok()
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("xrun.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// `xrun` on this service's root.
    pub fn xrun(&self, args: &[&str]) -> Output {
        Command::new(XRUN)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("XRUN_ROOT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// The `docker` CLI talking to this service.
    pub fn docker_cmd(&self) -> Command {
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_DEFAULT_PLATFORM")
            .stdin(Stdio::null());
        c
    }

    /// Runs `docker ARGS`.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd().args(args).output().unwrap()
    }

    /// A raw request over the socket (HTTP/1.0: the answer ends with the connection).
    pub fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
        request(&self.socket(), method, path, body)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
        // Whatever a failed test left running.
        let o = self.xrun(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = self.xrun(&["rm", "-f", id]);
        }
    }
}

/// Whether the docker CLI is here (else the test is skipped).
pub fn have_docker() -> bool {
    let ok = Command::new("docker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::skip("no docker CLI (ci/setup installs docker.io)");
    }
    ok && common::is_root()
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends one HTTP/1.0 request to `socket` and reads the whole answer.
pub fn request(socket: &Path, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
    let mut s = UnixStream::connect(socket).unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: xrun\r\n");
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    if let Some(b) = body {
        // A client that stops reading our body is answered; a write error is fine then.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse(&raw)
}

/// A request whose answer's headers are read now and its body later (`wait`).
pub struct Pending {
    stream: UnixStream,
    head: Vec<u8>,
}

impl Pending {
    /// Reads the rest of the answer.
    pub fn finish(mut self) -> Reply {
        let _ = self.stream.read_to_end(&mut self.head);
        parse(&self.head)
    }
}

/// Sends a body-less request and returns once the answer's headers arrived.
pub fn request_headers(socket: &Path, method: &str, path: &str) -> Pending {
    let mut stream = UnixStream::connect(socket).unwrap();
    let head = format!("{method} {path} HTTP/1.0\r\nHost: xrun\r\n\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => break,
        }
    }
    Pending { stream, head: got }
}

fn parse(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

/// Waits for `child`'s output; a child still running after `limit` is killed and the test
/// fails with `what` (a guard against a hung test, not a timing check).
pub fn output_within(child: std::process::Child, limit: Duration, what: &str) -> Output {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what}: still running after {limit:?}");
        }
    }
}

/// stdout of an output, trimmed.
pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// stderr of an output.
pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
