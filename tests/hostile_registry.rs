//! Finding 3 of issue 10: a registry that answers with endless bodies (manifest, token,
//! config, error body) must not make `xrun pull` buffer them. A tiny HTTP server on
//! 127.0.0.1 speaks just enough of the distribution API; each pull must fail with exit 125,
//! one line naming the limit, no store change, and a peak RSS (measured with `wait4`) far
//! below the 512 MiB the server offers.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{TestEnv, sha256_hex};

/// What the server offers when it streams: 512 MiB.
const HUGE: u64 = 512 << 20;
/// The most RSS a refused pull may reach.
const MAX_RSS_KB: i64 = 100 * 1024;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    authorization: Option<String>,
}

type Handler = dyn Fn(&Request, &mut TcpStream, &str) + Send + Sync;

/// A server on 127.0.0.1 that answers each connection's first request with `handler` and
/// closes it. Returns its `host:port` and the requests it saw.
fn serve(handler: Arc<Handler>) -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (seen2, addr2) = (seen.clone(), addr.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let handler = handler.clone();
            let seen = seen2.clone();
            let addr = addr2.clone();
            std::thread::spawn(move || {
                let Some(req) = read_request(&mut conn) else {
                    return;
                };
                seen.lock().unwrap().push(req.clone());
                handler(&req, &mut conn, &addr);
            });
        }
    });
    (addr, seen)
}

fn read_request(conn: &mut TcpStream) -> Option<Request> {
    let mut r = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut authorization = None;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(v.trim().to_string());
        }
    }
    Some(Request {
        path,
        authorization,
    })
}

/// Writes a status line and headers (`Connection: close` added).
fn head(conn: &mut TcpStream, status: &str, headers: &[(&str, String)]) {
    let mut s = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    let _ = conn.write_all(s.as_bytes());
}

fn small(conn: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut h = headers.to_vec();
    h.push(("Content-Length", body.len().to_string()));
    head(conn, status, &h);
    let _ = conn.write_all(body);
}

/// Streams up to [`HUGE`] bytes of JSON-looking filler until the client hangs up.
fn endless(conn: &mut TcpStream) {
    let chunk = vec![b' '; 64 << 10];
    let _ = conn.write_all(b"{\"schemaVersion\":2,\"x\":\"");
    let mut sent = 0;
    while sent < HUGE {
        if conn.write_all(&chunk).is_err() {
            return;
        }
        sent += chunk.len() as u64;
    }
}

/// How an endless body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length: 512 MiB`.
    Length,
    /// No length: the body runs to the end of the connection.
    Eof,
    /// `Transfer-Encoding: chunked`, 64 KiB chunks.
    Chunked,
}

/// [`endless`], in chunked encoding.
fn endless_chunked(conn: &mut TcpStream) {
    let mut chunk = format!("{:x}\r\n", 64 << 10).into_bytes();
    chunk.extend(vec![b' '; 64 << 10]);
    chunk.extend(b"\r\n");
    let mut sent = 0;
    while sent < HUGE {
        if conn.write_all(&chunk).is_err() {
            return;
        }
        sent += 64 << 10;
    }
}

/// `xrun pull <args>` in `env`: (exit code, stderr, peak RSS in KiB).
// The child is reaped with `wait4` (for its rusage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn pull(env: &TestEnv, image: &str) -> (Option<i32>, String, i64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xrun"))
        .args(["pull", image])
        .env("XRUN_ROOT", env.root())
        .env("XRUN_CONFIG", env.config_path())
        .env("DOCKER_CONFIG", env.scratch().join("docker"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid std gave us; std never waits for it after.
    let r = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(r, child.id() as libc::pid_t, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, reader.join().unwrap(), usage.ru_maxrss)
}

/// Asserts a refused pull: exit 125, exactly `want` on one line, RSS bounded, store empty.
fn refused(env: &TestEnv, image: &str, want: &str) {
    let (code, err, rss) = pull(env, image);
    assert_eq!(code, Some(125), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines, [want], "{err:?}");
    assert!(rss < MAX_RSS_KB, "peak RSS {rss} KiB");
    eprintln!("{image}: refused, peak RSS {rss} KiB");
    let store = xrun::store::Store::open(&env.root()).unwrap();
    assert!(store.list_blobs().unwrap().is_empty());
    assert!(store.list_images().unwrap().is_empty());
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[test]
fn endless_manifest_is_refused_at_4_mib() {
    // With an honest Content-Length of 512 MiB, with no length at all (body to EOF), and
    // chunked.
    for framing in [Framing::Length, Framing::Eof, Framing::Chunked] {
        let (addr, _) = serve(Arc::new(
            move |req: &Request, conn: &mut TcpStream, _: &str| {
                if req.path == "/v2/" {
                    return small(conn, "200 OK", &[], b"{}");
                }
                let mut h = vec![("Content-Type", OCI_MANIFEST.to_string())];
                match framing {
                    Framing::Length => h.push(("Content-Length", HUGE.to_string())),
                    Framing::Chunked => h.push(("Transfer-Encoding", "chunked".to_string())),
                    Framing::Eof => {}
                }
                head(conn, "200 OK", &h);
                if framing == Framing::Chunked {
                    endless_chunked(conn);
                } else {
                    endless(conn);
                }
            },
        ));
        let env = TestEnv::new();
        refused(
            &env,
            &format!("{addr}/x:y"),
            &format!(
                "xrun: registry {addr} sent a manifest larger than 4 MiB (the limit): refusing it"
            ),
        );
    }
}

#[test]
fn endless_token_answer_is_refused_at_1_mib() {
    let (addr, seen) = serve(Arc::new(
        |req: &Request, conn: &mut TcpStream, addr: &str| {
            if req.path.starts_with("/token") {
                head(
                    conn,
                    "200 OK",
                    &[("Content-Type", "application/json".into())],
                );
                return endless(conn);
            }
            let challenge = format!(r#"Bearer realm="http://{addr}/token",service="hostile""#);
            small(
                conn,
                "401 Unauthorized",
                &[("WWW-Authenticate", challenge)],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"token please"}]}"#,
            );
        },
    ));
    let env = TestEnv::new();
    refused(
        &env,
        &format!("{addr}/x:y"),
        &format!(
            "xrun: registry {addr} sent a token answer larger than 1 MiB (the limit): refusing it"
        ),
    );
    let seen = seen.lock().unwrap();
    let token = seen.iter().find(|r| r.path.starts_with("/token")).unwrap();
    assert!(
        token.path.contains("scope=repository%3Ax%3Apull"),
        "{token:?}"
    );
    assert!(seen.iter().all(|r| r.authorization.is_none()));
}

/// A manifest whose config descriptor says `size` bytes of `config`'s digest.
fn manifest_with_config(config: &[u8], size: u64) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":{size}}},"layers":[]}}"#,
        sha256_hex(config)
    )
    .into_bytes()
}

#[test]
fn config_longer_than_its_descriptor_is_cut_off() {
    let config =
        br#"{"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let manifest = manifest_with_config(config, config.len() as u64);
    let (addr, _) = serve(Arc::new(
        move |req: &Request, conn: &mut TcpStream, _: &str| {
            if req.path.contains("/manifests/") {
                small(
                    conn,
                    "200 OK",
                    &[("Content-Type", OCI_MANIFEST.into())],
                    &manifest,
                )
            } else if req.path.contains("/blobs/") {
                head(conn, "200 OK", &[]);
                endless(conn);
            } else {
                small(conn, "200 OK", &[], b"{}")
            }
        },
    ));
    let env = TestEnv::new();
    let (code, err, rss) = pull(&env, &format!("{addr}/x:y"));
    assert_eq!(code, Some(125), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err:?}");
    let want = format!(
        "xrun: config sha256:{} from {addr} has ",
        sha256_hex(config)
    );
    assert!(lines[0].starts_with(&want), "{err}");
    assert!(
        lines[0].ends_with(&format!(
            " bytes, its descriptor says {}: truncated or corrupt on the registry",
            config.len()
        )),
        "{err}"
    );
    assert!(rss < MAX_RSS_KB, "peak RSS {rss} KiB");
}

#[test]
fn config_descriptor_above_the_cap_is_not_fetched() {
    let config = b"{}";
    let manifest = manifest_with_config(config, 1 << 30);
    let (addr, seen) = serve(Arc::new(
        move |req: &Request, conn: &mut TcpStream, _: &str| {
            if req.path.contains("/manifests/") {
                small(
                    conn,
                    "200 OK",
                    &[("Content-Type", OCI_MANIFEST.into())],
                    &manifest,
                )
            } else if req.path.contains("/blobs/") {
                head(conn, "200 OK", &[]);
                endless(conn);
            } else {
                small(conn, "200 OK", &[], b"{}")
            }
        },
    ));
    let env = TestEnv::new();
    refused(
        &env,
        &format!("{addr}/x:y"),
        &format!(
            "xrun: {addr}/x:y: invalid config: its descriptor says 1073741824 bytes, more than the 8 MiB limit"
        ),
    );
    assert!(
        !seen
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.path.contains("/blobs/"))
    );
}

#[test]
fn endless_error_body_is_read_only_in_part() {
    let (addr, _) = serve(Arc::new(|_: &Request, conn: &mut TcpStream, _: &str| {
        head(conn, "404 Not Found", &[]);
        endless(conn);
    }));
    let env = TestEnv::new();
    refused(
        &env,
        &format!("{addr}/x:y"),
        &format!("xrun: manifest for {addr}/x:y not found: no such tag or repository"),
    );
}
