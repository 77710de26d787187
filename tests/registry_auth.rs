//! Credentials against a real htpasswd registry: `xrun login`/`logout` writing Docker's
//! config.json, pulls with saved and explicit credentials, and the auth errors; plus
//! `xrun manifest inspect`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use base64::Engine;
use common::{TestEnv, TestRegistry, fixture_platforms};

struct Ctx {
    env: TestEnv,
    docker: PathBuf,
}

impl Ctx {
    fn new() -> Ctx {
        let env = TestEnv::new();
        let docker = env.scratch().join("docker");
        Ctx { env, docker }
    }
    fn xrun(&self) -> assert_cmd::Command {
        let mut c = self.env.cmd();
        c.env("DOCKER_CONFIG", &self.docker);
        c
    }
    fn config(&self) -> PathBuf {
        self.docker.join("config.json")
    }
    fn records(&self) -> usize {
        xrun::store::Store::open(&self.env.root())
            .unwrap()
            .list_images()
            .unwrap()
            .len()
    }
}

fn one_error_line(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(125),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("WARNING! Using --password"))
        .collect();
    assert_eq!(lines.len(), 1, "{err:?}");
    lines[0].to_string()
}

#[test]
fn pull_needs_credentials_and_refuses_wrong_ones() {
    let reg = TestRegistry::start_with_auth("alice", "s3cret");
    reg.push("busybox-amd64", "bb:latest");
    let cx = Ctx::new();
    let image = reg.image("bb:latest");
    let out = cx.xrun().args(["pull", &image]).output().unwrap();
    assert_eq!(
        one_error_line(&out),
        format!(
            "xrun: {}: authentication required; run `xrun login {}` or pass --creds",
            reg.addr(),
            reg.addr()
        )
    );
    let out = cx
        .xrun()
        .args(["pull", "--creds", "alice:nope", &image])
        .output()
        .unwrap();
    assert_eq!(
        one_error_line(&out),
        format!("xrun: {}: wrong username or password", reg.addr())
    );
    assert_eq!(cx.records(), 0);
    cx.xrun()
        .args(["pull", "-q", "--creds", "alice:s3cret", &image])
        .assert()
        .success();
    assert_eq!(cx.records(), 1);
}

#[test]
fn login_pull_logout_round_trip() {
    let reg = TestRegistry::start_with_auth("bob", "pa:ss");
    reg.push("busybox-multi", "bb:multi");
    let cx = Ctx::new();
    std::fs::create_dir_all(&cx.docker).unwrap();
    std::fs::write(
        cx.config(),
        r#"{"auths":{"quay.io":{"auth":"eDp5"}},"psFormat":"table {{.ID}}"}"#,
    )
    .unwrap();

    // Wrong password: refused, nothing written.
    let out = cx
        .xrun()
        .args(["login", "-u", "bob", "-p", "wrong", reg.addr()])
        .output()
        .unwrap();
    assert_eq!(
        one_error_line(&out),
        format!("xrun: {}: wrong username or password", reg.addr())
    );
    let before: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cx.config()).unwrap()).unwrap();
    assert!(before["auths"].get(reg.addr()).is_none());

    cx.xrun()
        .args(["login", "-u", "bob", "--password-stdin", reg.addr()])
        .write_stdin("pa:ss\n")
        .assert()
        .success()
        .stdout("Login Succeeded\n");
    let meta = std::fs::metadata(cx.config()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cx.config()).unwrap()).unwrap();
    assert_eq!(
        v["auths"][reg.addr()]["auth"],
        base64::engine::general_purpose::STANDARD.encode("bob:pa:ss")
    );
    assert_eq!(v["auths"]["quay.io"]["auth"], "eDp5");
    assert_eq!(v["psFormat"], "table {{.ID}}");

    // The saved credentials are used.
    cx.xrun()
        .args([
            "pull",
            "-q",
            "--platform",
            "linux/arm64",
            &reg.image("bb:multi"),
        ])
        .assert()
        .success();
    assert_eq!(cx.records(), 1);
    let out = cx
        .xrun()
        .args(["manifest", "inspect", &reg.image("bb:multi")])
        .output()
        .unwrap();
    assert!(out.status.success());

    cx.xrun()
        .args(["logout", reg.addr()])
        .assert()
        .success()
        .stdout(format!("Removing login credentials for {}\n", reg.addr()));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cx.config()).unwrap()).unwrap();
    assert!(v["auths"].get(reg.addr()).is_none());
    assert_eq!(v["auths"]["quay.io"]["auth"], "eDp5");
    let out = cx
        .xrun()
        .args(["pull", "--platform", "linux/arm/v7", &reg.image("bb:multi")])
        .output()
        .unwrap();
    assert!(one_error_line(&out).contains("authentication required"));
    assert_eq!(cx.records(), 1);
}

#[test]
fn login_to_an_unreachable_registry() {
    let cx = Ctx::new();
    let addr = format!("127.0.0.1:{}", common::free_port());
    let out = cx
        .xrun()
        .args(["login", "-u", "u", "--password-stdin", &addr])
        .write_stdin("p\n")
        .output()
        .unwrap();
    assert!(
        one_error_line(&out).starts_with(&format!("xrun: cannot reach registry {addr}")),
        "{out:?}"
    );
    assert!(!cx.config().exists());
}

#[test]
fn manifest_inspect_lists_platforms() {
    let reg = TestRegistry::start();
    reg.push("busybox-multi", "bb:multi");
    let cx = Ctx::new();
    let out = cx
        .xrun()
        .args(["manifest", "inspect", &reg.image("bb:multi")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    for (platform, digest) in fixture_platforms("busybox-multi") {
        let line = text
            .lines()
            .find(|l| l.contains(&digest))
            .unwrap_or_else(|| panic!("{digest} missing from {text}"));
        assert!(line.starts_with(&format!("{platform} ")), "{line}");
    }
    // The raw index, byte for byte as the registry serves it.
    let out = cx
        .xrun()
        .args([
            "manifest",
            "inspect",
            "--format",
            "json",
            &reg.image("bb:multi"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let served = reg.get(
        "bb/manifests/multi",
        &[("Accept", common::ACCEPT_ALL_MANIFESTS)],
    );
    let mut want = served.body.clone();
    if !want.ends_with(b"\n") {
        want.push(b'\n');
    }
    assert_eq!(out.stdout, want);
    // Nothing was pulled.
    assert_eq!(cx.records(), 0);
    let out = cx
        .xrun()
        .args(["manifest", "inspect", &reg.image("bb:none")])
        .output()
        .unwrap();
    assert!(one_error_line(&out).contains("not found"));
}
