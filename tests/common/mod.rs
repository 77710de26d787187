//! Shared harness for xrun's integration tests. Every test file starts with `mod common;`.
//!
//! - [`TestEnv`]: a fresh xrun store per test and [`TestEnv::cmd`], the real binary.
//! - [`fixture`]: the OCI layouts built by `ci/fixtures` (run once per test process).
//! - [`TestRegistry`]: a real `docker-registry` on 127.0.0.1 (optionally with htpasswd auth),
//!   filled with `skopeo copy`, with helpers to corrupt what it serves.
//! - [`check_expect`]: compare an unpacked `layers-whiteout` tree against its `expect.txt`.
//! - Small helpers: [`skip`], [`is_root`], [`free_port`], [`http_get`], [`sha256_hex`].
//!
//! ```ignore
//! mod common;
//! use common::{TestEnv, TestRegistry, fixture_platforms};
//!
//! #[test]
//! fn pulls_arm64() {
//!     let reg = TestRegistry::start();
//!     let index_digest = reg.push("busybox-multi", "bb:multi");
//!     let env = TestEnv::new();
//!     env.cmd()
//!         .args(["pull", "--platform", "linux/arm64", &reg.image("bb:multi")])
//!         .assert()
//!         .success();
//!     let (_, arm64) = fixture_platforms("busybox-multi")
//!         .into_iter()
//!         .find(|(p, _)| p == "linux/arm64/v8")
//!         .unwrap();
//!     // ... look for `arm64` (the manifest digest) in env.root() ...
//! }
//! ```
#![allow(dead_code)]

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Root of the xrun source tree (where `ci/` lives).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Prints `SKIP: reason` to stderr. Use as `return skip("no binfmt_misc");`.
pub fn skip(reason: &str) {
    eprintln!("SKIP: {reason}");
}

/// True when the test runs as uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to :0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind 127.0.0.1:0")
        .port()
}

/// Lower-case hex sha256 of `bytes` (compare with a digest's part after `sha256:`).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

// ------------------------------------------------------------------------------------------
// xrun under test

/// One test's private xrun world: a temporary store root and a config path that does not
/// exist (so the defaults apply) until the test writes it. Dropping it removes everything.
pub struct TestEnv {
    dir: TempDir,
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl TestEnv {
    /// A fresh, empty environment under the system temp dir.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("xrun-test-")
            .tempdir()
            .expect("cannot create a temp dir");
        fs::create_dir(dir.path().join("root")).expect("cannot create the store root");
        TestEnv { dir }
    }

    /// The store root given to xrun as `XRUN_ROOT`.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Where `XRUN_CONFIG` points; absent unless the test writes it (see [`Self::write_config`]).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.json")
    }

    /// Writes `json` as this environment's xrun config file.
    pub fn write_config(&self, json: &str) {
        fs::write(self.config_path(), json).expect("cannot write the test config");
    }

    /// A scratch directory for the test's own files (inside the env, removed with it).
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        fs::create_dir_all(&p).expect("cannot create the scratch dir");
        p
    }

    /// The built `xrun` binary with `XRUN_ROOT`/`XRUN_CONFIG` set to this environment and the
    /// default-platform variables cleared, so tests do not depend on the caller's shell.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::from_std(self.std_cmd());
        c.timeout(Duration::from_secs(300));
        c
    }

    /// The real binary on this environment's store as a plain `std::process::Command` (for
    /// a test that sets its stdio or spawns it itself); [`TestEnv::cmd`] is this plus a
    /// timeout.
    pub fn std_cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xrun"));
        c.env("XRUN_ROOT", self.root())
            .env("XRUN_CONFIG", self.config_path())
            .env_remove("XRUN_DEFAULT_PLATFORM")
            .env_remove("DOCKER_DEFAULT_PLATFORM");
        c
    }
}

// ------------------------------------------------------------------------------------------
// Fixtures

/// The directory holding this build's fixtures: runs `ci/fixtures` once per test process
/// (a no-op within a second when they are cached) and reads its `XRUN_FIXTURES_DIR=` line.
pub fn fixtures_dir() -> &'static Path {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = DIR.get_or_init(|| {
        let script = repo_root().join("ci/fixtures");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} failed ({}); run it by hand to see why (it needs ci/setup's tools):\n{}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("XRUN_FIXTURES_DIR="))
            .map(PathBuf::from)
            .ok_or_else(|| "ci/fixtures printed no XRUN_FIXTURES_DIR= line".to_string())
    });
    match r {
        Ok(p) => p,
        Err(e) => panic!("fixtures unavailable: {e}"),
    }
}

/// The directory of `ci/fixtures-check`'s images (built or found cached: the script prints
/// it on its last line).
pub fn fixtures_check_dir() -> PathBuf {
    let out = Command::new(repo_root().join("ci/fixtures-check"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap()
            .trim(),
    )
}

/// The OCI layout directory of fixture `name` (e.g. `busybox-multi`); panics if ci/fixtures
/// could not build it. See `ci/fixtures` for the list and what each contains.
pub fn fixture(name: &str) -> PathBuf {
    try_fixture(name).unwrap_or_else(|| {
        panic!(
            "fixture {name:?} is missing from {} (input .deb absent?)",
            fixtures_dir().display()
        )
    })
}

/// Like [`fixture`], but `None` when this machine could not build it (e.g. `busybox-riscv64`
/// without its .deb): callers then [`skip`].
pub fn try_fixture(name: &str) -> Option<PathBuf> {
    let p = fixtures_dir().join(name);
    p.join("index.json").is_file().then_some(p)
}

/// The tag names in a fixture layout's `index.json`, in order.
pub fn fixture_tags(name: &str) -> Vec<String> {
    let index = read_json(&fixture(name).join("index.json"));
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

/// A skopeo source reference `oci:DIR:TAG` (umoci wants `DIR:TAG`) for `name` or `name:tag`; without a tag, the
/// layout's first tag (each fixture has one, `mislabeled` also has `index`).
pub fn fixture_ref(name_tag: &str) -> String {
    let (name, tag) = match name_tag.split_once(':') {
        Some((n, t)) => (n, t.to_string()),
        None => {
            let tags = fixture_tags(name_tag);
            let t = tags
                .first()
                .unwrap_or_else(|| panic!("fixture {name_tag} has no tag"))
                .clone();
            (name_tag, t)
        }
    };
    format!("oci:{}:{tag}", fixture(name).display())
}

/// The path of blob `digest` (`sha256:HEX`) inside fixture layout `name`.
pub fn fixture_blob(name: &str, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .expect("digest must be sha256:HEX");
    fixture(name).join("blobs/sha256").join(hex)
}

/// The platform entries of an index fixture (`busybox-multi`, `busybox-zstd`, `levels`,
/// `mislabeled:index`): `("os/arch[/variant]", manifest digest)` in index order. Digests
/// differ between machines: always look them up here (or in the registry), never hard-code.
pub fn fixture_platforms(name_tag: &str) -> Vec<(String, String)> {
    let (name, tag) = match name_tag.split_once(':') {
        Some((n, t)) => (n, t.to_string()),
        None => (name_tag, fixture_tags(name_tag)[0].clone()),
    };
    let index = read_json(&fixture(name).join("index.json"));
    let top = index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag.as_str())
        .unwrap_or_else(|| panic!("fixture {name} has no tag {tag}"));
    let nested = read_json(&fixture_blob(name, top["digest"].as_str().unwrap()));
    nested["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}:{tag} is not an image index"))
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut s = format!(
                "{}/{}",
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or("")
            );
            if let Some(v) = p["variant"].as_str() {
                s.push('/');
                s.push_str(v);
            }
            (s, m["digest"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Checks an unpacked root filesystem of `layers-whiteout` against the fixture's `expect.txt`
/// (files, absences, symlinks, modes/owners, hardlinks, xattrs). Returns every mismatch.
pub fn check_expect(rootfs: &Path) -> Result<(), Vec<String>> {
    let text = fs::read_to_string(fixture("layers-whiteout").join("expect.txt"))
        .expect("layers-whiteout has no expect.txt");
    let mut errors = Vec::new();
    let at = |p: &str| rootfs.join(p.trim_start_matches('/'));
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        let problem = match f.as_slice() {
            ["file", p, content] => match fs::read(at(p)) {
                Ok(b) if b == format!("{content}\n").as_bytes() => None,
                Ok(b) => Some(format!("content {:?}", String::from_utf8_lossy(&b))),
                Err(e) => Some(e.to_string()),
            },
            ["absent", p] => {
                let wh = at(p).with_file_name(format!(
                    ".wh.{}",
                    Path::new(p).file_name().unwrap().to_string_lossy()
                ));
                if fs::symlink_metadata(at(p)).is_ok() {
                    Some("exists".into())
                } else if fs::symlink_metadata(wh).is_ok() {
                    Some("its .wh. marker exists".into())
                } else {
                    None
                }
            }
            ["dir", p] => match fs::symlink_metadata(at(p)) {
                Ok(m) if m.is_dir() => None,
                Ok(_) => Some("not a directory".into()),
                Err(e) => Some(e.to_string()),
            },
            ["symlink", p, target] => match fs::read_link(at(p)) {
                Ok(t) if t == Path::new(target) => None,
                Ok(t) => Some(format!("points to {}", t.display())),
                Err(e) => Some(e.to_string()),
            },
            ["mode", p, mode, uid, gid] => match fs::symlink_metadata(at(p)) {
                Ok(m) => {
                    let got = format!(
                        "{:04o} {} {}",
                        m.permissions().mode() & 0o7777,
                        m.uid(),
                        m.gid()
                    );
                    let want = format!("{mode} {uid} {gid}");
                    (got != want).then(|| format!("is {got}"))
                }
                Err(e) => Some(e.to_string()),
            },
            ["hardlink", a, b] => match (fs::metadata(at(a)), fs::metadata(at(b))) {
                (Ok(x), Ok(y)) if x.ino() == y.ino() && x.dev() == y.dev() => None,
                (Ok(_), Ok(_)) => Some("different inodes".into()),
                _ => Some("missing".into()),
            },
            ["xattr", p, name, value] => match xattr::get(at(p), name) {
                Ok(Some(v)) if v == value.as_bytes() => None,
                Ok(v) => Some(format!("xattr is {v:?}")),
                Err(e) => Some(e.to_string()),
            },
            _ => Some("unknown expect.txt line".into()),
        };
        if let Some(p) = problem {
            errors.push(format!("{line}: {p}"));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

// ------------------------------------------------------------------------------------------
// HTTP (minimal, for probing the registry without xrun's own client)

/// A plain HTTP/1.1 response: status code, headers (lower-cased names) and body.
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code, e.g. 200 or 401.
    pub status: u16,
    /// Header lines as `(lower-case name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET http://addr/path` with optional basic credentials and extra headers (e.g. `Accept`).
/// Sends `Connection: close` and reads to EOF; 10 s timeouts. Chunked bodies are not decoded
/// (Distribution sends Content-Length for manifests and blobs).
pub fn http_get(
    addr: &str,
    path: &str,
    creds: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    use base64::Engine as _;
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some((u, p)) = creds {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        req.push_str(&format!("Authorization: Basic {token}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad HTTP status line"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// The `Accept` value listing the four manifest media types (index, list, manifest, v2s2).
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json";

// ------------------------------------------------------------------------------------------
// Registry

/// A real Distribution registry (`/usr/bin/docker-registry`) on `127.0.0.1:PORT`, storing in
/// a temp dir, optionally behind htpasswd basic auth. Dropping it kills and reaps the
/// process and removes the storage. If the test process dies without dropping it, a small
/// watchdog (`sh`, reading a pipe only this process holds) kills the registry.
pub struct TestRegistry {
    dir: TempDir,
    addr: String,
    creds: Option<(String, String)>,
    registry: Child,
    watchdog: Option<(Child, ChildStdin)>,
}

impl TestRegistry {
    /// Starts an anonymous registry and waits until `GET /v2/` answers 200.
    pub fn start() -> TestRegistry {
        Self::launch(None)
    }

    /// Starts a registry that requires basic auth for `user`/`pass` (bcrypt htpasswd).
    pub fn start_with_auth(user: &str, pass: &str) -> TestRegistry {
        Self::launch(Some((user.to_string(), pass.to_string())))
    }

    /// Starts an anonymous registry that logs every request (see [`Self::requests`]).
    pub fn start_with_access_log() -> TestRegistry {
        Self::launch_with(None, true)
    }

    /// The request lines (`METHOD /path?query`) the registry logged so far, oldest first;
    /// empty unless started with [`Self::start_with_access_log`].
    pub fn requests(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let start = l.find("\"")? + 1;
                let rest = &l[start..];
                let line = &rest[..rest.find(" HTTP/")?];
                let method = line.split(' ').next()?;
                ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
                    .contains(&method)
                    .then(|| line.to_string())
            })
            .collect()
    }

    fn launch(creds: Option<(String, String)>) -> TestRegistry {
        Self::launch_with(creds, false)
    }

    fn launch_with(creds: Option<(String, String)>, access_log: bool) -> TestRegistry {
        let bin = Path::new(REGISTRY_BIN);
        assert!(
            bin.exists(),
            "{REGISTRY_BIN} is missing: run ci/setup (package docker-registry)"
        );
        let dir = tempfile::Builder::new()
            .prefix("xrun-registry-")
            .tempdir()
            .expect("cannot create a temp dir");
        fs::create_dir(dir.path().join("storage")).unwrap();
        let mut auth = String::new();
        if let Some((u, p)) = &creds {
            let out = Command::new("htpasswd")
                .args(["-Bbn", u, p])
                .output()
                .expect("cannot run htpasswd (apache2-utils): run ci/setup");
            assert!(out.status.success(), "htpasswd failed: {out:?}");
            let htpasswd = dir.path().join("htpasswd");
            fs::write(&htpasswd, &out.stdout).unwrap();
            auth = format!(
                "auth:\n  htpasswd:\n    realm: xrun-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let mut last_err = String::new();
        // The port is free when chosen but may be taken before the registry binds: retry.
        for _ in 0..5 {
            match try_launch(dir.path(), &auth, access_log) {
                Ok((addr, registry, watchdog)) => {
                    return TestRegistry {
                        dir,
                        addr,
                        creds,
                        registry,
                        watchdog: Some(watchdog),
                    };
                }
                Err(e) => last_err = e,
            }
        }
        panic!("docker-registry did not start: {last_err}");
    }

    /// `127.0.0.1:PORT`, the registry part of image references.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `ADDR/repo:tag`: an image reference for xrun.
    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// The credentials given to [`Self::start_with_auth`], if any.
    pub fn creds(&self) -> Option<(&str, &str)> {
        self.creds.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's storage root (`storage.filesystem.rootdirectory`).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's own log (errors only), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes fixture `name` (or `name:tag`, see [`fixture_ref`]) as `repo:tag` with
    /// `skopeo copy --all`, keeping its format (OCI). Returns the pushed top-level digest.
    pub fn push(&self, fixture_name: &str, repo_tag: &str) -> String {
        self.skopeo_push(fixture_name, repo_tag, &[])
    }

    /// Like [`Self::push`] but converted to Docker schema 2 (`--format v2s2`): an index becomes
    /// a Docker manifest list. Returns the new top-level digest (it differs from the OCI one).
    pub fn push_docker_format(&self, fixture_name: &str, repo_tag: &str) -> String {
        self.skopeo_push(fixture_name, repo_tag, &["--format", "v2s2"])
    }

    /// Pushes every image of the OCI layout at `layout` (its whole index, e.g. the guest
    /// layout `ci/guest-image` writes) as `repo:tag` with `skopeo copy --all`, keeping its
    /// format. Returns the pushed top-level digest.
    pub fn push_layout(&self, layout: &Path, repo_tag: &str) -> String {
        self.skopeo_copy(format!("oci:{}", layout.display()), repo_tag, &[])
    }

    fn skopeo_push(&self, fixture_name: &str, repo_tag: &str, extra: &[&str]) -> String {
        self.skopeo_copy(fixture_ref(fixture_name), repo_tag, extra)
    }

    fn skopeo_copy(&self, src: String, repo_tag: &str, extra: &[&str]) -> String {
        let digest_file = tempfile::NamedTempFile::new().unwrap();
        let mut cmd = Command::new("skopeo");
        cmd.args([
            "copy",
            "-q",
            "--all",
            "--dest-tls-verify=false",
            "--digestfile",
        ])
        .arg(digest_file.path())
        .args(extra);
        if let Some((u, p)) = self.creds() {
            cmd.arg("--dest-creds").arg(format!("{u}:{p}"));
        }
        cmd.arg(&src)
            .arg(format!("docker://{}/{repo_tag}", self.addr));
        let out = cmd.output().expect("cannot run skopeo (run ci/setup)");
        assert!(
            out.status.success(),
            "skopeo copy {src} -> {repo_tag} failed: {}\nregistry log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        fs::read_to_string(digest_file.path())
            .expect("skopeo wrote no digest file")
            .trim()
            .to_string()
    }

    /// `GET /v2/{path}` against this registry, with its credentials when it has some.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        http_get(&self.addr, &format!("/v2/{path}"), self.creds(), headers)
            .unwrap_or_else(|e| panic!("GET /v2/{path} on {}: {e}", self.addr))
    }

    /// The manifest or index `repo@reference` (tag or digest) as served, parsed as JSON;
    /// all four manifest media types are accepted. Panics unless the answer is 200.
    pub fn manifest(&self, repo: &str, reference: &str) -> serde_json::Value {
        let r = self.get(
            &format!("{repo}/manifests/{reference}"),
            &[("Accept", ACCEPT_ALL_MANIFESTS)],
        );
        assert_eq!(r.status, 200, "manifest {repo}:{reference}: {r:?}");
        serde_json::from_slice(&r.body).expect("manifest is not JSON")
    }

    /// Path of the stored bytes of blob `digest` (`sha256:HEX`), which must exist.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest
            .strip_prefix("sha256:")
            .expect("digest must be sha256:HEX");
        assert!(hex.len() == 64, "bad digest {digest}");
        let p = self
            .storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        assert!(p.is_file(), "blob {digest} is not in the registry");
        p
    }

    /// Corrupts blob `digest` in place, keeping its size (every byte inverted in the first
    /// 64 bytes): the registry still serves it, with the old length, but the digest is wrong.
    pub fn tamper_blob(&self, digest: &str) {
        let p = self.blob_path(digest);
        let mut bytes = fs::read(&p).unwrap();
        let n = bytes.len().min(64);
        assert!(n > 0, "blob {digest} is empty");
        bytes[..n].iter_mut().for_each(|b| *b = !*b);
        fs::write(&p, bytes).unwrap();
    }

    /// Cuts blob `digest` to half its size (at least one byte shorter): a short body.
    pub fn truncate_blob(&self, digest: &str) {
        let p = self.blob_path(digest);
        let len = fs::metadata(&p).unwrap().len();
        assert!(len > 0, "blob {digest} is empty");
        let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.set_len(len / 2).unwrap();
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // The watchdog first, so it can never signal a recycled pid; then the registry.
        if let Some((mut w, stdin)) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
            drop(stdin);
        }
        let _ = self.registry.kill();
        let _ = self.registry.wait();
        // TempDir removes the storage.
    }
}

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// One attempt: write the config for a fresh port, spawn the registry and its watchdog, wait
/// for `/v2/`. On failure everything spawned is stopped again.
fn try_launch(
    dir: &Path,
    auth: &str,
    access_log: bool,
) -> Result<(String, Child, (Child, ChildStdin)), String> {
    let addr = format!("127.0.0.1:{}", free_port());
    let config = dir.join("config.yml");
    fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: {}\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n  secret: xrun-test-secret\n{auth}",
            !access_log,
            dir.join("storage").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = fs::File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
    let mut registry = Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot spawn {REGISTRY_BIN}: {e}"))?;
    // The watchdog blocks reading a pipe whose only writer is this process (Rust pipes are
    // close-on-exec); EOF means we are gone: it kills the registry and removes its temp dir.
    let mut watchdog = match Command::new("sh")
        .arg("-c")
        .arg("read _ignored; kill -9 \"$1\" 2>/dev/null; sleep 0.2; rm -rf -- \"$2\"")
        .arg("xrun-registry-watchdog")
        .arg(registry.id().to_string())
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(w) => w,
        Err(e) => {
            let _ = registry.kill();
            let _ = registry.wait();
            return Err(format!("cannot spawn the watchdog: {e}"));
        }
    };
    let stdin = watchdog.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let outcome = loop {
        if let Ok(Some(status)) = registry.try_wait() {
            break Err(format!("registry exited ({status})"));
        }
        // 200 when anonymous, 401 when auth is on: both mean it is serving.
        if let Ok(r) = http_get(&addr, "/v2/", None, &[])
            && (r.status == 200 || r.status == 401)
        {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err("no answer on /v2/ within 15 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    match outcome {
        Ok(()) => Ok((addr, registry, (watchdog, stdin))),
        Err(e) => {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            let _ = registry.kill();
            let _ = registry.wait();
            let log = fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
            Err(format!("{e} on {addr}; log:\n{log}"))
        }
    }
}

/// A test environment for the VM route (amd64 guest) with the fixture `fixture` loaded, or
/// `None` (the reason printed) when the route cannot work here: not root, or no
/// qemu-system-x86_64. Builds (or finds cached) the guest with `ci/guest-image`.
pub fn vm_env(fixture_name: &str) -> Option<TestEnv> {
    vm_env_for("amd64", fixture_name)
}

/// Like [`vm_env`] for guests of `arch` (`amd64`, `arm64`): its qemu-system binary, its guest
/// built (or found cached) by `ci/guest-image --arch ARCH`.
pub fn vm_env_for(arch: &str, fixture_name: &str) -> Option<TestEnv> {
    if !is_root() {
        skip("the VM route needs root");
        return None;
    }
    let qemu = match arch {
        "arm64" => "qemu-system-aarch64",
        _ => "qemu-system-x86_64",
    };
    if xrun::vm::qemu::find_binary(qemu, None).is_err() {
        skip(&format!("{qemu} is not installed"));
        return None;
    }
    let st = Command::new(repo_root().join("ci/guest-image"))
        .args(["--arch", arch])
        .status()
        .expect("run ci/guest-image");
    assert!(st.success(), "ci/guest-image --arch {arch} failed");
    let env = TestEnv::new();
    let layout = fixture(fixture_name);
    env.cmd()
        .args(["load", "-i", layout.to_str().unwrap()])
        .assert()
        .success();
    Some(env)
}

/// The guest `ci/guest-image` built for `arch`: xrun's own kernel where it is built (see
/// `XRUN_GUEST_KERNEL_ARCHES`), else the Debian guest — the one `xrun run` picks.
pub fn ci_guest(arch: &str) -> xrun::vm::Guest {
    let ci = xrun::vm::guest::ci_guest_dir();
    let own = ci.join(arch);
    let dir = if own.join("guest.json").is_file() {
        own
    } else {
        ci.join("debian").join(arch)
    };
    xrun::vm::Guest::from_dir(&dir).unwrap()
}
