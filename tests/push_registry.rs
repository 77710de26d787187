//! `xrun push` against a real Distribution registry, read back by the real tools: `skopeo
//! inspect --raw` sees the store's exact manifest bytes, `podman pull` + `podman run` runs
//! what xrun pushed (both platforms of an index), and xrun pulls and runs what `podman build`
//! and `podman push` made. Blobs the registry has are not sent again; blobs another
//! repository of the registry has are mounted; a corrupt store blob is refused; auth and an
//! unreachable registry fail with one line and exit 125.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestEnv, TestRegistry, fixture, fixture_tags, free_port, http_get, skip};

/// Loads fixture `name` into the env's store and names it `target` too.
fn load_as(env: &TestEnv, name: &str, target: &str) {
    env.cmd()
        .args(["load", "-i"])
        .arg(fixture(name))
        .assert()
        .success();
    let tag = fixture_tags(name).first().cloned().expect("fixture tag");
    env.cmd()
        .args(["tag", &format!("localhost/{name}:{tag}"), target])
        .assert()
        .success();
}

/// Runs `xrun push ARGS…` and returns its stdout; panics with its stderr on failure.
fn push(env: &TestEnv, args: &[&str]) -> String {
    let out = env.cmd().arg("push").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "push {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `xrun push ARGS…` expecting exit 125 and one error line; returns that line.
fn push_fails(env: &TestEnv, args: &[&str]) -> String {
    let out = env.cmd().arg("push").args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(125),
        "push {args:?} should fail: {out:?}"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {err:?}");
    lines[0].to_string()
}

/// The digest on the final `TAG: digest: sha256:… size: N` line.
fn pushed_digest(out: &str, tag: &str) -> String {
    let last = out.lines().last().unwrap_or_default();
    let rest = last
        .strip_prefix(&format!("{tag}: digest: "))
        .unwrap_or_else(|| panic!("no final digest line in {out:?}"));
    let (digest, size) = rest.split_once(" size: ").unwrap();
    assert!(size.parse::<u64>().unwrap() > 0);
    digest.to_string()
}

/// The store's bytes of blob `digest`.
fn store_blob(env: &TestEnv, digest: &str) -> Vec<u8> {
    fs::read(store_blob_path(env, digest)).unwrap()
}

fn store_blob_path(env: &TestEnv, digest: &str) -> PathBuf {
    env.root()
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// `skopeo inspect --raw` of `image`: the bytes the registry serves.
fn skopeo_raw(image: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{image}"))
        .output()
        .expect("cannot run skopeo");
    assert!(out.status.success(), "skopeo inspect {image}: {out:?}");
    out.stdout
}

/// Request lines for blob uploads (`POST …/uploads/`, `PATCH`, `PUT` of an upload).
fn uploads(requests: &[String]) -> Vec<&String> {
    requests
        .iter()
        .filter(|r| r.contains("/blobs/uploads/"))
        .collect()
}

/// A podman with a store of its own (removed with it), flags as this machine needs them.
struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    fn new() -> Option<Podman> {
        if !Path::new("/usr/bin/podman").exists() {
            skip("podman is not installed (ci/setup installs it)");
            return None;
        }
        Some(Podman {
            dir: tempfile::Builder::new()
                .prefix("xrun-podman-")
                .tempdir()
                .unwrap(),
        })
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.arg("--root")
            .arg(self.dir.path().join("root"))
            .arg("--runroot")
            .arg(self.dir.path().join("run"))
            // Its own libpod tmpdir too: `system reset` in Drop removes the tmpdir, and the
            // shared default (/run/libpod) would vanish under a podman another test is running
            // ("creating runtime status file: open /run/libpod/alive").
            .arg("--tmpdir")
            .arg(self.dir.path().join("tmp"))
            .args([
                "--storage-driver",
                "overlay",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
                "--runtime",
                "runc",
            ]);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `podman run` (not `--rm`: podman 4.3 here sometimes loses a `--rm` container's exit
    /// code — "no such exit code (container in state stopped)"; Drop removes them all).
    fn run(&self, platform: &str, image: &str, cmd: &[&str]) -> String {
        let mut args = vec![
            "run",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=32768:32768",
            "--platform",
            platform,
            image,
        ];
        args.extend_from_slice(cmd);
        self.ok(&args)
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Overlay mounts under the root would keep the temp dir from being removed.
        let _ = self.cmd().args(["rm", "-af"]).output();
        let _ = self.cmd().args(["system", "reset", "-f"]).output();
    }
}

#[test]
fn pushed_image_is_read_by_skopeo_and_run_by_podman_then_skipped_and_mounted() {
    let reg = TestRegistry::start_with_access_log();
    let env = TestEnv::new();
    let image = reg.image("bb:1");
    load_as(&env, "busybox-amd64", &image);

    let out = push(&env, &[&image]);
    assert!(
        out.starts_with(&format!(
            "The push refers to repository [{}/bb]\n",
            reg.addr()
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed\n"), "{out}");
    let digest = pushed_digest(&out, "1");
    assert_eq!(
        skopeo_raw(&image),
        store_blob(&env, &digest),
        "the registry must serve the store's exact manifest bytes"
    );

    if let Some(podman) = Podman::new() {
        podman.ok(&["pull", "-q", "--tls-verify=false", &image]);
        let said = podman.run("linux/amd64", &image, &["echo", "pushed-by-xrun"]);
        assert_eq!(said.trim(), "pushed-by-xrun");
    }

    // Again: every layer is there already, nothing is uploaded.
    let before = reg.requests().len();
    let again = push(&env, &[&image]);
    assert!(!again.contains("Pushed"), "{again}");
    assert!(again.contains(": Layer already exists\n"), "{again}");
    assert_eq!(pushed_digest(&again, "1"), digest);
    let second = reg.requests()[before..].to_vec();
    assert!(
        uploads(&second).is_empty(),
        "second push uploaded: {second:?}"
    );
    assert!(second.iter().any(|r| r.starts_with("HEAD /v2/bb/blobs/")));

    // Another repository of the same registry: mounted, not uploaded.
    let other = reg.image("team/copy:2");
    env.cmd().args(["tag", &image, &other]).assert().success();
    let before = reg.requests().len();
    let mounted = push(&env, &[&other]);
    assert!(mounted.contains(": Mounted from bb\n"), "{mounted}");
    assert!(!mounted.contains("Pushed"), "{mounted}");
    let third = reg.requests()[before..].to_vec();
    let up = uploads(&third);
    assert!(!up.is_empty(), "{third:?}");
    assert!(
        up.iter().all(
            |r| r.starts_with("POST /v2/team/copy/blobs/uploads/?mount=") && r.contains("from=bb")
        ),
        "only mounts expected: {up:?}"
    );
    assert_eq!(skopeo_raw(&other), store_blob(&env, &digest));
}

#[test]
fn a_multi_platform_index_is_pushed_whole_and_pulled_by_podman_for_both_platforms() {
    let reg = TestRegistry::start();
    let env = TestEnv::new();
    let image = reg.image("multi:1");
    load_as(&env, "busybox-multi", &image);

    let out = push(&env, &[&image]);
    let digest = pushed_digest(&out, "1");
    let index = store_blob(&env, &digest);
    assert_eq!(skopeo_raw(&image), index);
    let v: serde_json::Value = serde_json::from_slice(&index).unwrap();
    let entries = v["manifests"].as_array().unwrap();
    assert!(entries.len() >= 2, "{v}");
    for e in entries {
        let d = e["digest"].as_str().unwrap();
        assert_eq!(
            skopeo_raw(&format!("{}/multi@{d}", reg.addr())),
            store_blob(&env, d),
            "child {d}"
        );
    }

    if let Some(podman) = Podman::new() {
        podman.ok(&[
            "pull",
            "-q",
            "--tls-verify=false",
            "--platform",
            "linux/amd64",
            &image,
        ]);
        let m = podman.run("linux/amd64", &image, &["uname", "-m"]);
        assert_eq!(m.trim(), "x86_64");
    }
    if !Path::new("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists() {
        skip("no qemu-aarch64 binfmt handler: the arm64 run is skipped");
    } else if let Some(podman) = Podman::new() {
        podman.ok(&[
            "pull",
            "-q",
            "--tls-verify=false",
            "--platform",
            "linux/arm64",
            &image,
        ]);
        let m = podman.run("linux/arm64", &image, &["uname", "-m"]);
        assert_eq!(m.trim(), "aarch64");
    }

    // One platform under a tag of its own: its manifest, not the index.
    let arm = reg.image("multi:arm64");
    env.cmd().args(["tag", &image, &arm]).assert().success();
    let out = push(&env, &["--platform", "linux/arm64", &arm]);
    let d = pushed_digest(&out, "arm64");
    assert_ne!(d, digest);
    let body = skopeo_raw(&arm);
    assert_eq!(body, store_blob(&env, &d));
    assert!(
        entries
            .iter()
            .any(|e| e["digest"].as_str() == Some(d.as_str())
                && e["platform"]["architecture"] == "arm64"),
        "{d} is not the index's arm64 entry"
    );
}

#[test]
fn a_corrupt_store_blob_is_refused_and_not_pushed() {
    let reg = TestRegistry::start();
    let env = TestEnv::new();
    let image = reg.image("bad:1");
    load_as(&env, "layers-whiteout", &image);
    // The biggest layer of the image: flip bytes, keep the size.
    let refs: serde_json::Value =
        serde_json::from_slice(&fs::read(env.root().join("refs.json")).unwrap()).unwrap();
    let record = refs["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == format!("{}/bad", reg.addr()))
        .unwrap()
        .clone();
    let layer = record["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = store_blob_path(&env, &layer);
    let mut bytes = fs::read(&path).unwrap();
    let original = bytes.clone();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let mut perms = fs::metadata(&path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o644);
    fs::set_permissions(&path, perms).unwrap();
    fs::write(&path, &bytes).unwrap();

    let err = push_fails(&env, &[&image]);
    assert!(
        err.contains(&format!("blob {layer} in the store is corrupt"))
            && err.contains("refusing to push it"),
        "{err}"
    );
    let blob = http_get(reg.addr(), &format!("/v2/bad/blobs/{layer}"), None, &[]).unwrap();
    assert_eq!(
        blob.status, 404,
        "the corrupt layer must not reach the registry"
    );
    let m = http_get(reg.addr(), "/v2/bad/manifests/1", None, &[]).unwrap();
    assert_eq!(m.status, 404, "no manifest may be pushed");

    // A blob of the wrong size is refused before anything is sent.
    fs::write(&path, &original[..original.len() / 2]).unwrap();
    let err = push_fails(&env, &[&image]);
    assert!(err.contains("in the store is corrupt (it has"), "{err}");
}

#[test]
fn push_needs_credentials_and_works_after_login() {
    let reg = TestRegistry::start_with_auth("alice", "s3cret");
    let env = TestEnv::new();
    let docker = env.scratch().join("docker");
    let image = reg.image("private/app:1");
    load_as(&env, "busybox-amd64", &image);
    let xrun = || {
        let mut c = env.cmd();
        c.env("DOCKER_CONFIG", &docker);
        c
    };
    let fails = |args: &[&str]| {
        let out = xrun().arg("push").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(125), "{out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{err}");
        err
    };
    let err = fails(&[&image]);
    assert!(
        err.starts_with("xrun: denied: requested access to the resource is denied"),
        "{err}"
    );
    let err = fails(&["--creds", "alice:wrong", &image]);
    assert!(err.contains("wrong username or password"), "{err}");

    xrun()
        .args(["login", "-u", "alice", "--password-stdin", reg.addr()])
        .write_stdin("s3cret\n")
        .assert()
        .success();
    let out = xrun().args(["push", &image]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let digest = pushed_digest(&String::from_utf8(out.stdout).unwrap(), "1");
    let skopeo = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            "alice:s3cret",
        ])
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(skopeo.status.success(), "{skopeo:?}");
    assert_eq!(skopeo.stdout, store_blob(&env, &digest));
}

#[test]
fn unknown_images_and_unreachable_registries_fail_with_one_line() {
    let env = TestEnv::new();
    let err = push_fails(&env, &["127.0.0.1:5/none:1"]);
    assert_eq!(
        err,
        "xrun: an image does not exist locally with the tag 127.0.0.1:5/none:1: pull, load or tag it first"
    );
    let image = format!("127.0.0.1:{}/gone:1", free_port());
    load_as(&env, "busybox-amd64", &image);
    let err = push_fails(&env, &[&image]);
    assert!(err.contains("cannot reach registry 127.0.0.1:"), "{err}");
    assert!(err.contains("connection refused"), "{err}");
}

#[test]
fn big_blobs_go_up_in_chunks() {
    use xrun::engine::{Engine, PushRequest};
    use xrun::registry::push_progress::SilentPush;
    use xrun::registry::upload::UploadOptions;

    let reg = TestRegistry::start_with_access_log();
    let env = TestEnv::new();
    let image = reg.image("chunks:1");
    load_as(&env, "layers-whiteout", &image);
    let req = PushRequest {
        reference: image.clone(),
        upload: Some(UploadOptions {
            chunked_above: 1024,
            chunk_size: 4096,
        }),
        ..Default::default()
    };
    let outcome = Engine::open(env.root())
        .with_config(Default::default())
        .push(&req, &SilentPush)
        .unwrap();
    assert!(outcome.pushed > 0);
    let patches: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("PATCH /v2/chunks/blobs/uploads/"))
        .collect();
    assert!(patches.len() > outcome.pushed, "{patches:?}");
    assert_eq!(
        skopeo_raw(&image),
        store_blob(&env, &outcome.digest.to_string())
    );

    // What went up in chunks comes back whole: another store pulls and runs it.
    let other = TestEnv::new();
    other.cmd().args(["pull", &image]).assert().success();
    if !common::is_root() {
        return skip("running a container needs root");
    }
    let out = other
        .cmd()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            &image,
            "cat",
            "/data/keep.txt",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "keep\n");
}

#[test]
fn an_image_built_and_pushed_by_podman_is_pulled_and_run_by_xrun() {
    let Some(podman) = Podman::new() else { return };
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "base:1");
    let ctx = tempfile::tempdir().unwrap();
    fs::write(
        ctx.path().join("Containerfile"),
        format!(
            "FROM {}\nRUN echo built-by-podman > /hello\n",
            reg.image("base:1")
        ),
    )
    .unwrap();
    let built = reg.image("built:1");
    podman.ok(&[
        "build",
        "-q",
        "--tls-verify=false",
        "--network",
        "none",
        "--platform",
        "linux/amd64",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=32768:32768",
        "-t",
        &built,
        ctx.path().to_str().unwrap(),
    ]);
    podman.ok(&["push", "-q", "--tls-verify=false", &built]);

    let env = TestEnv::new();
    env.cmd().args(["pull", &built]).assert().success();
    if !common::is_root() {
        return skip("running a container needs root");
    }
    let out = env
        .cmd()
        .args(["run", "--rm", "--network", "none", &built, "cat", "/hello"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "built-by-podman\n");
}
