//! `xrun load`, `images`, `inspect`, `save`, `rmi`, `image prune` against OCI layouts made
//! by umoci, and `save` checked by skopeo.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xrun::store::{Store, is_whiteout};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `xrun --root ROOT ARGS…`.
fn xrun(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrun"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("XRUN_DEFAULT_PLATFORM")
        .env_remove("DOCKER_DEFAULT_PLATFORM")
        .output()
        .expect("spawn xrun")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A two-layer single-platform layout at `dir` (tag `1.0`) made by umoci: the first layer has
/// `etc/hello`, `etc/gone`, a symlink; the second deletes `etc/gone` (a whiteout) and adds
/// `etc/second`. None when umoci is missing.
fn umoci_layout(dir: &Path) -> Option<()> {
    if !have("umoci") {
        eprintln!("skipping: umoci is not installed");
        return None;
    }
    let image = format!("{}:1.0", dir.display());
    let bundle = dir.with_extension("bundle");
    run(Command::new("umoci").args(["init", "--layout"]).arg(dir));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::write(rootfs.join("etc/hello"), "hello\n").unwrap();
    fs::write(rootfs.join("etc/gone"), "to be deleted\n").unwrap();
    std::os::unix::fs::symlink("etc/hello", rootfs.join("hello-link")).unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    fs::remove_dir_all(&bundle).unwrap();
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    fs::remove_file(rootfs.join("etc/gone")).unwrap();
    fs::write(rootfs.join("etc/second"), "second layer\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
    fs::remove_dir_all(&bundle).unwrap();
    Some(())
}

/// `tar -cf OUT -C DIR .`
fn tar_dir(dir: &Path, out: &Path) {
    run(Command::new("tar")
        .arg("-cf")
        .arg(out)
        .arg("-C")
        .arg(dir)
        .arg("."));
}

/// Everything under the store's content directories, with sizes, plus refs.json.
fn store_state(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let path = e.path();
            let m = fs::symlink_metadata(&path).unwrap();
            out.insert(path.strip_prefix(base).unwrap().to_path_buf(), m.len());
            if m.is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in ["blobs", "snapshots", "ingest", "tmp", "leases"] {
        walk(root, &root.join(d), &mut out);
    }
    if let Ok(refs) = fs::read(root.join("refs.json")) {
        out.insert("refs.json".into(), refs.len() as u64);
    }
    out
}

#[test]
fn load_images_inspect_save_roundtrip() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("demo");
    if umoci_layout(&layout).is_none() {
        return;
    }
    let root = t.path().join("root");
    let out = ok(&xrun(&root, &["load", "-i", layout.to_str().unwrap()]));
    assert!(
        out.contains("Loaded image: localhost/demo:1.0 (linux/amd64)"),
        "{out}"
    );

    let table = ok(&xrun(&root, &["images"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    for col in ["REPOSITORY", "TAG", "PLATFORM", "DIGEST", "SIZE", "CREATED"] {
        assert!(lines[0].contains(col), "{table}");
    }
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..3],
        ["localhost/demo", "1.0", "linux/amd64"],
        "{table}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&ok(&xrun(&root, &["images", "--format", "json"]))).unwrap();
    let rec = &json[0];
    assert_eq!(rec["layers"].as_array().unwrap().len(), 2);
    let manifest_digest = rec["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(row[3], &manifest_digest[7..19]);
    assert_eq!(
        ok(&xrun(&root, &["images", "-q"])).trim(),
        &manifest_digest[7..19]
    );

    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&xrun(&root, &["inspect", "localhost/demo:1.0"]))).unwrap();
    assert_eq!(
        inspect["record"]["manifest_digest"],
        manifest_digest.as_str()
    );
    assert_eq!(inspect["config"]["architecture"], "amd64");
    assert_eq!(inspect["manifest"]["layers"].as_array().unwrap().len(), 2);
    // By image ID too.
    ok(&xrun(&root, &["inspect", &manifest_digest[7..19]]));

    let saved = t.path().join("saved.tar");
    ok(&xrun(
        &root,
        &["save", "localhost/demo:1.0", "-o", saved.to_str().unwrap()],
    ));
    if have("skopeo") {
        let out = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", saved.display())));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Digest"], manifest_digest.as_str());
        assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
        let copy = t.path().join("copy");
        run(Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci-archive:{}", saved.display()))
            .arg(format!("oci:{}:x", copy.display())));
    } else {
        eprintln!("skopeo missing: saved layout not checked by skopeo");
    }

    // The saved tar loads into a fresh store under the same name, same digest.
    let root2 = t.path().join("root2");
    let out = ok(&xrun(&root2, &["load", "-i", saved.to_str().unwrap()]));
    assert!(out.contains("localhost/demo:1.0"), "{out}");
    let json2: serde_json::Value =
        serde_json::from_str(&ok(&xrun(&root2, &["images", "--format", "json"]))).unwrap();
    assert_eq!(json2[0]["manifest_digest"], manifest_digest.as_str());
}

#[test]
fn loaded_layers_unpack_with_whiteouts_and_flatten() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("wh");
    if umoci_layout(&layout).is_none() {
        return;
    }
    let tarball = t.path().join("wh.tar");
    tar_dir(&layout, &tarball);
    let root = t.path().join("root");
    ok(&xrun(&root, &["load", "-i", tarball.to_str().unwrap()]));
    let store = Store::open(&root).unwrap();
    let rec = store
        .find_image("localhost/wh", "1.0", None)
        .unwrap()
        .unwrap();
    let img = store.image(&rec).unwrap();
    assert_eq!(img.layer_dirs.len(), 2);
    assert_eq!(
        fs::read_to_string(img.layer_dirs[0].join("etc/hello")).unwrap(),
        "hello\n"
    );
    assert!(img.layer_dirs[0].join("etc/gone").is_file());
    assert!(is_whiteout(&img.layer_dirs[1].join("etc/gone")));
    assert_eq!(
        fs::read_link(img.layer_dirs[0].join("hello-link")).unwrap(),
        Path::new("etc/hello")
    );
    let merged = t.path().join("merged");
    store.flatten(&rec, &merged).unwrap();
    assert!(merged.join("etc/hello").is_file());
    assert!(merged.join("etc/second").is_file());
    assert!(!merged.join("etc/gone").exists());
}

#[test]
fn rmi_and_prune_free_blobs_and_snapshots() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("gc");
    if umoci_layout(&layout).is_none() {
        return;
    }
    let root = t.path().join("root");
    ok(&xrun(&root, &["load", "-i", layout.to_str().unwrap()]));
    let store = Store::open(&root).unwrap();
    let rec = store
        .find_image("localhost/gc", "1.0", None)
        .unwrap()
        .unwrap();
    store.unpack(&rec).unwrap();
    let ids: Vec<_> = rec.layers.iter().map(|l| l.diff_id.clone()).collect();
    store.lease_snapshots("ctr1", &ids).unwrap();

    // In use by a container: refused without -f.
    let out = xrun(&root, &["rmi", "localhost/gc:1.0"]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"));
    assert_eq!(store.list_images().unwrap().len(), 1);

    let out = ok(&xrun(&root, &["rmi", "-f", "localhost/gc:1.0"]));
    assert!(out.contains("Untagged: localhost/gc:1.0"), "{out}");
    assert!(store.list_images().unwrap().is_empty());
    assert!(
        store.list_blobs().unwrap().is_empty(),
        "rmi frees the blobs"
    );
    assert_eq!(
        store.list_snapshots().unwrap().len(),
        2,
        "leased snapshots stay"
    );

    store.release_snapshots("ctr1").unwrap();
    let out = ok(&xrun(&root, &["image", "prune"]));
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert!(out.contains("2 snapshots"), "{out}");
    assert!(store.list_snapshots().unwrap().is_empty());

    let out = ok(&xrun(&root, &["image", "prune"]));
    assert!(out.contains("Total reclaimed space: 0B"), "{out}");
}

#[test]
fn tampered_layout_is_refused_and_the_store_is_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let good = t.path().join("good");
    let bad = t.path().join("bad");
    if umoci_layout(&good).is_none() || umoci_layout(&bad).is_none() {
        return;
    }
    let root = t.path().join("root");
    ok(&xrun(&root, &["load", "-i", good.to_str().unwrap()]));
    let before = store_state(&root);

    // Flip a byte in the biggest blob (a layer) of the second layout; its name stays.
    let blobs = bad.join("blobs/sha256");
    let victim = fs::read_dir(&blobs)
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    let mut bytes = fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&victim, &bytes).unwrap();
    let bad_tar = t.path().join("bad.tar");
    tar_dir(&bad, &bad_tar);

    for input in [&bad, &bad_tar] {
        let out = xrun(&root, &["load", "-i", input.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("xrun: ") && err.contains("digest mismatch"),
            "{err}"
        );
        assert_eq!(store_state(&root), before, "the store changed");
    }
    // A truncated blob: a size mismatch.
    fs::write(&victim, &bytes[..mid]).unwrap();
    let out = xrun(&root, &["load", "-i", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("size mismatch"));
    assert_eq!(store_state(&root), before);
}

#[test]
fn unknown_images_exit_125_with_one_line() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    for args in [
        &["inspect", "nosuch"][..],
        &["rmi", "nosuch:1"],
        &["save", "nosuch", "-o", "/dev/null"],
    ] {
        let out = xrun(&root, args);
        assert_eq!(out.status.code(), Some(125), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("xrun: no such image: nosuch"), "{err}");
    }
    let out = xrun(&root, &["load", "-i", "/nonexistent/layout"]);
    assert_eq!(out.status.code(), Some(125));
}

/// Writes `bytes` as a blob of the layout at `dir`; returns a descriptor JSON.
fn put_layout_blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = xrun::digest::Digest::of(bytes);
    fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
}

/// Turns the umoci layout at `dir` into a two-platform one: its image (amd64) plus an arm64/v8
/// twin (same layers, config saying arm64), both under a nested index tagged `multi`.
fn make_multi_platform(dir: &Path) -> (String, String) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let amd = index["manifests"][0].clone();
    let hex = |d: &serde_json::Value| d["digest"].as_str().unwrap()[7..].to_string();
    let blob = |h: &str| fs::read(dir.join("blobs/sha256").join(h)).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&blob(&hex(&amd))).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_slice(&blob(&hex(&manifest["config"]))).unwrap();
    config["architecture"] = "arm64".into();
    config["variant"] = "v8".into();
    let cfg = put_layout_blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    manifest["config"] = cfg;
    let arm = put_layout_blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    let mut amd_entry = amd.clone();
    amd_entry.as_object_mut().unwrap().remove("annotations");
    amd_entry["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    let mut arm_entry = arm.clone();
    arm_entry["platform"] =
        serde_json::json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let nested = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [amd_entry, arm_entry],
    });
    let mut nested_desc = put_layout_blob(
        dir,
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&nested).unwrap(),
    );
    nested_desc["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": "multi"});
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [nested_desc]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    (
        nested_desc["digest"].as_str().unwrap().to_string(),
        arm["digest"].as_str().unwrap().to_string(),
    )
}

#[test]
fn an_index_in_a_layout_gives_one_record_per_platform() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("multi");
    if umoci_layout(&layout).is_none() {
        return;
    }
    let (index_digest, arm_digest) = make_multi_platform(&layout);
    let root = t.path().join("root");
    let out = ok(&xrun(&root, &["load", "-i", layout.to_str().unwrap()]));
    assert!(out.contains("localhost/multi:multi (linux/amd64)"), "{out}");
    assert!(
        out.contains("localhost/multi:multi (linux/arm64/v8)"),
        "{out}"
    );
    let table = ok(&xrun(&root, &["images", "localhost/multi"]));
    assert_eq!(table.lines().count(), 3, "{table}");

    let inspect = |args: &[&str]| -> serde_json::Value {
        serde_json::from_str(&ok(&xrun(&root, args))).unwrap()
    };
    let arm = inspect(&[
        "inspect",
        "localhost/multi:multi",
        "--platform",
        "linux/arm64/v8",
    ]);
    assert_eq!(arm["record"]["manifest_digest"], arm_digest.as_str());
    assert_eq!(arm["record"]["index_digest"], index_digest.as_str());
    assert_eq!(arm["config"]["architecture"], "arm64");
    // No platform: the host's (this suite runs on amd64 hosts).
    if cfg!(target_arch = "x86_64") {
        let host = inspect(&["inspect", &format!("localhost/multi@{index_digest}")]);
        assert_eq!(host["record"]["platform"]["architecture"], "amd64");
    }

    // Untag one platform only.
    ok(&xrun(
        &root,
        &["rmi", "--platform", "linux/arm64", "localhost/multi:multi"],
    ));
    let left: serde_json::Value =
        serde_json::from_str(&ok(&xrun(&root, &["images", "--format", "json"]))).unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["platform"]["architecture"], "amd64");

    // A platform selects one manifest of the index at load time.
    let root2 = t.path().join("root2");
    let out = ok(&xrun(
        &root2,
        &[
            "load",
            "-i",
            layout.to_str().unwrap(),
            "--platform",
            "linux/arm64",
        ],
    ));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("linux/arm64/v8"), "{out}");
}
