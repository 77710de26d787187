//! `xrun build --platform linux/amd64,linux/arm64`: both built here (arm64 RUNs emulated,
//! the same route as `xrun run`), one OCI index under the tag; the pre-flight scan of each
//! result (a foreign ELF warns) and `--check-host-profile` (fails the build with 125, nothing
//! recorded). Skips without root or without a usable arm64 binfmt handler.

mod common;

use std::fs;

use common::{TestEnv, fixture, is_root, repo_root, skip};
use xrun::emulation::route;
use xrun::platform::Platform;

fn setup() -> Option<TestEnv> {
    if !is_root() {
        skip("RUN steps need root");
        return None;
    }
    if let Err(e) = route::prepare(&"linux/arm64".parse::<Platform>().unwrap()) {
        skip(&format!("no usable binfmt handler for linux/arm64: {e}"));
        return None;
    }
    let env = TestEnv::new();
    for f in ["busybox-multi", "busybox-amd64"] {
        env.cmd()
            .args(["load", "-i", fixture(f).to_str().unwrap()])
            .assert()
            .success();
    }
    Some(env)
}

fn out(o: &std::process::Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn two_platforms_one_index_each_runs_its_own() {
    let Some(env) = setup() else { return };
    let ctx = env.scratch().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox-multi:multi\nARG TARGETPLATFORM\nRUN echo \"$TARGETPLATFORM $(uname -m)\" > /built-on\nCMD [\"cat\", \"/built-on\"]\n",
    )
    .unwrap();
    let (code, _, err) = out(&env
        .cmd()
        .args([
            "build",
            "--progress",
            "plain",
            "--platform",
            "linux/amd64,linux/arm64",
            "-t",
            "localhost/two",
        ])
        .arg(&ctx)
        .output()
        .unwrap());
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("[linux/arm64/v8 "), "{err}");
    // One index under the tag: both records name it.
    let images =
        String::from_utf8_lossy(&env.cmd().args(["images"]).output().unwrap().stdout).into_owned();
    assert!(
        images.contains("linux/amd64") && images.contains("linux/arm64"),
        "{images}"
    );
    let index = err
        .lines()
        .find_map(|l| l.strip_prefix("writing image "))
        .and_then(|l| l.strip_suffix(" done"))
        .unwrap()
        .to_string();
    let refs: serde_json::Value =
        serde_json::from_slice(&fs::read(env.root().join("refs.json")).unwrap()).unwrap();
    let ours: Vec<_> = refs
        .as_array()
        .or_else(|| refs["images"].as_array())
        .unwrap()
        .iter()
        .filter(|r| r["name"] == "localhost/two")
        .collect();
    assert_eq!(ours.len(), 2);
    assert!(
        ours.iter().all(|r| r["index_digest"] == index.as_str()),
        "{ours:?}"
    );
    let blob = env
        .root()
        .join("blobs/sha256")
        .join(index.trim_start_matches("sha256:"));
    let idx: serde_json::Value = serde_json::from_slice(&fs::read(blob).unwrap()).unwrap();
    assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);

    let run = |p: &str, cmd: &[&str]| {
        let o = env
            .cmd()
            .args(["run", "--rm", "--platform", p, "localhost/two"])
            .args(cmd)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    assert_eq!(run("linux/arm64", &["uname", "-m"]), "aarch64");
    assert_eq!(run("linux/arm64", &[]), "linux/arm64 aarch64");
    assert_eq!(run("linux/amd64", &[]), "linux/amd64 x86_64");
}

#[test]
fn the_preflight_warns_and_host_profiles_gate() {
    let Some(env) = setup() else { return };
    let ctx = env.scratch().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    // An amd64 executable: this machine's /bin/true (the test needs an amd64 host anyway).
    let bb = std::path::PathBuf::from("/bin/true");
    if !fs::read(&bb).is_ok_and(|b| b.len() > 20 && b[18] == 0x3e && b[19] == 0) {
        return skip("/bin/true is not an x86-64 executable here");
    }
    fs::copy(&bb, ctx.join("bb-amd64")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox-multi:multi\nCOPY bb-amd64 /usr/local/bin/\n",
    )
    .unwrap();
    let (code, _, err) = out(&env
        .cmd()
        .args([
            "build",
            "--platform",
            "linux/arm64",
            "-t",
            "localhost/mixed",
        ])
        .arg(&ctx)
        .output()
        .unwrap());
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("are for amd64 (e.g. /usr/local/bin/bb-amd64)")
            && err.contains("not run natively on arm64"),
        "{err}"
    );

    // Host profiles: an arm64 host cannot run the amd64 result natively; an amd64 one can.
    let profile = |name: &str| {
        let o = env
            .cmd()
            .args(["host", "--from"])
            .arg(repo_root().join("tests/data/hosts").join(name))
            .args(["--format", "json"])
            .output()
            .unwrap();
        assert!(o.status.success());
        let p = env.scratch().join(format!("{name}.json"));
        fs::write(&p, o.stdout).unwrap();
        p
    };
    let arm = profile("arm64-graviton-64k");
    let amd = profile("amd64-v2-noavx");
    fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/busybox-amd64\nRUN echo hi > /hi\n",
    )
    .unwrap();
    let (code, _, err) = out(&env
        .cmd()
        .args(["build", "--check-host-profile"])
        .arg(&arm)
        .args(["-t", "localhost/gated"])
        .arg(&ctx)
        .output()
        .unwrap());
    assert_eq!(code, 125, "{err}");
    let last = err.lines().last().unwrap();
    assert!(
        last.contains("--check-host-profile") && last.contains("would not run natively"),
        "{last}"
    );
    let images =
        String::from_utf8_lossy(&env.cmd().args(["images"]).output().unwrap().stdout).into_owned();
    assert!(!images.contains("localhost/gated"), "{images}");
    let (code, _, err) = out(&env
        .cmd()
        .args(["build", "--check-host-profile"])
        .arg(&amd)
        .args(["-t", "localhost/gated"])
        .arg(&ctx)
        .output()
        .unwrap());
    assert_eq!(code, 0, "{err}");
}
