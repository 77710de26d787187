//! Tests of the shared integration-test harness (tests/common) against the real tools.
mod common;

use common::{TestEnv, TestRegistry, fixture, fixture_platforms, http_get};
use std::process::Command;

fn skopeo_inspect_raw(reg: &TestRegistry, image: &str, creds: Option<&str>) -> (bool, String) {
    let mut c = Command::new("skopeo");
    c.args(["inspect", "--raw", "--tls-verify=false"]);
    match creds {
        Some(cr) => c.arg("--creds").arg(cr),
        None => c.arg("--no-creds"),
    };
    let out = c
        .arg(format!("docker://{}", reg.image(image)))
        .output()
        .expect("skopeo");
    let text = if out.status.success() {
        String::from_utf8_lossy(&out.stdout).to_string()
    } else {
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    (out.status.success(), text)
}

#[test]
fn fixtures_exist_with_expected_platforms() {
    for name in [
        "busybox-amd64",
        "busybox-arm64",
        "busybox-armv7",
        "busybox-multi",
        "busybox-zstd",
        "layers-whiteout",
        "levels",
        "mislabeled",
    ] {
        assert!(fixture(name).join("oci-layout").is_file(), "{name}");
    }
    let multi: Vec<String> = fixture_platforms("busybox-multi")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        multi[..3],
        ["linux/amd64", "linux/arm64/v8", "linux/arm/v7"]
    );
    let levels: Vec<String> = fixture_platforms("levels")
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(levels, ["linux/amd64", "linux/amd64/v2", "linux/amd64/v3"]);
    assert_eq!(
        fixture_platforms("mislabeled:index")[0].0,
        "linux/amd64",
        "mislabeled says amd64"
    );
    // busybox-zstd really carries zstd layers.
    let (_, digest) = &fixture_platforms("busybox-zstd")[0];
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::fixture_blob("busybox-zstd", digest)).unwrap(),
    )
    .unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
}

#[test]
fn whiteout_fixture_merges_to_expect_txt() {
    // umoci applies whiteouts when unpacking: the merged tree must satisfy expect.txt, and a
    // plain (non-merging) extraction of all layers must not (proves the check can fail).
    let env = TestEnv::new();
    let bundle = env.scratch().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:latest", fixture("layers-whiteout").display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    if let Err(e) = common::check_expect(&bundle.join("rootfs")) {
        panic!("merged tree differs from expect.txt:\n{}", e.join("\n"));
    }
    let naive = env.scratch().join("naive");
    std::fs::create_dir(&naive).unwrap();
    let layout = fixture("layers-whiteout");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mdigest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::fixture_blob("layers-whiteout", mdigest)).unwrap(),
    )
    .unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = common::fixture_blob("layers-whiteout", layer["digest"].as_str().unwrap());
        let st = Command::new("tar")
            .arg("-xzf")
            .arg(&blob)
            .arg("-C")
            .arg(&naive)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let errors = common::check_expect(&naive).expect_err("a naive extraction must not pass");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("absent /data/gone.txt")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("absent /opt/app/lib")),
        "{errors:?}"
    );
}

#[test]
fn registry_answers_and_push_multi_gives_an_index() {
    let reg = TestRegistry::start();
    let r = http_get(reg.addr(), "/v2/", None, &[]).unwrap();
    assert_eq!(r.status, 200);
    let digest = reg.push("busybox-multi", "bb:multi");
    assert!(digest.starts_with("sha256:"), "{digest}");
    let (ok, raw) = skopeo_inspect_raw(&reg, "bb:multi", None);
    assert!(ok, "{raw}");
    let index: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let n = index["manifests"].as_array().unwrap().len();
    assert!((3..=4).contains(&n), "{n} platforms");
    // OCI push keeps the layout's digests.
    let served = reg.manifest("bb", &digest);
    assert_eq!(served, index);
    for (p, d) in fixture_platforms("busybox-multi") {
        assert!(raw.contains(&d), "{p} {d} not in the pushed index");
    }
}

#[test]
fn docker_format_push_gives_a_manifest_list() {
    let reg = TestRegistry::start();
    let digest = reg.push_docker_format("busybox-multi", "bb:docker");
    let list = reg.manifest("bb", "docker");
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    let served = reg.get(
        &format!("bb/manifests/{digest}"),
        &[("Accept", common::ACCEPT_ALL_MANIFESTS)],
    );
    assert_eq!(served.status, 200);
    let child = list["manifests"][0]["digest"].as_str().unwrap();
    let m = reg.manifest("bb", child);
    assert_eq!(
        m["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}

#[test]
fn auth_registry_refuses_anonymous_and_accepts_creds() {
    let reg = TestRegistry::start_with_auth("alice", "s3cret");
    let r = http_get(reg.addr(), "/v2/", None, &[]).unwrap();
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .is_some_and(|h| h.starts_with("Basic")),
        "{r:?}"
    );
    assert_eq!(
        http_get(reg.addr(), "/v2/", Some(("alice", "wrong")), &[])
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        http_get(reg.addr(), "/v2/", Some(("alice", "s3cret")), &[])
            .unwrap()
            .status,
        200
    );
    // Anonymous push is refused.
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false", "--dest-no-creds"])
        .arg(common::fixture_ref("busybox-amd64"))
        .arg(format!("docker://{}", reg.image("bb:anon")))
        .output()
        .unwrap();
    assert!(!out.status.success(), "anonymous push succeeded");
    // The harness pushes with the credentials; anonymous pulls fail, authenticated ones work.
    reg.push("busybox-amd64", "bb:latest");
    let (ok, text) = skopeo_inspect_raw(&reg, "bb:latest", None);
    assert!(!ok, "anonymous pull succeeded: {text}");
    let (ok, text) = skopeo_inspect_raw(&reg, "bb:latest", Some("alice:s3cret"));
    assert!(ok, "{text}");
}

#[test]
fn tampering_changes_what_is_served() {
    let reg = TestRegistry::start();
    reg.push("busybox-amd64", "bb:latest");
    let m = reg.manifest("bb", "latest");
    let layer = m["layers"][0]["digest"].as_str().unwrap().to_string();
    let size = m["layers"][0]["size"].as_u64().unwrap();
    let path = format!("bb/blobs/{layer}");
    let before = reg.get(&path, &[]);
    assert_eq!(before.status, 200);
    assert_eq!(before.body.len() as u64, size);
    assert_eq!(common::sha256_hex(&before.body), layer["sha256:".len()..]);

    reg.tamper_blob(&layer);
    let after = reg.get(&path, &[]);
    assert_eq!(after.status, 200);
    assert_eq!(after.body.len() as u64, size, "tamper keeps the size");
    assert_ne!(common::sha256_hex(&after.body), layer["sha256:".len()..]);

    reg.truncate_blob(&layer);
    let short = reg.get(&path, &[]);
    assert_eq!(short.status, 200);
    assert_eq!(short.body.len() as u64, size / 2);
}

#[test]
fn registry_is_gone_after_drop() {
    let reg = TestRegistry::start();
    let addr = reg.addr().to_string();
    let storage = reg.storage_dir();
    drop(reg);
    assert!(http_get(&addr, "/v2/", None, &[]).is_err(), "still serving");
    assert!(!storage.exists(), "storage left behind");
}

#[test]
fn test_env_runs_the_binary_with_a_private_root() {
    let env = TestEnv::new();
    let out = env.cmd().arg("--help").output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(env.root().is_dir());
    assert!(!env.config_path().exists());
}
