//! The `docker save` archive format: `xrun save` (default `--format docker`, to a file or
//! stdout) read back by skopeo's `docker-archive:` and by `xrun load`; classic archives written
//! by skopeo (layers as `<hex>.tar`, symlinked `<id>/layer.tar`) and archives without an OCI
//! layout (gzip and zstd layers) loaded by `manifest.json`; tampered and hostile archives
//! refused with the store unchanged; `xrun tag`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestEnv, fixture, fixture_ref};

fn have_skopeo() -> bool {
    Command::new("skopeo")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
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

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().expect("spawn xrun")
}

/// `xrun load` with `input` on stdin.
fn load_stdin(env: &TestEnv, input: &Path) -> Output {
    env.cmd()
        .arg("load")
        .pipe_stdin(input)
        .unwrap()
        .output()
        .expect("spawn xrun")
}

/// Member name → bytes.
type Files = BTreeMap<String, Vec<u8>>;

/// Member name → bytes of a tar.
fn members(tar_path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut a = tar::Archive::new(fs::File::open(tar_path).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        e.read_to_end(&mut bytes).unwrap();
        out.insert(name, bytes);
    }
    out
}

/// Writes a tar of `files` (regular files) at `out`.
fn write_tar(out: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let mut b = tar::Builder::new(fs::File::create(out).unwrap());
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, &bytes[..]).unwrap();
    }
    b.finish().unwrap();
}

/// Files and sizes under the store root (what a refused load must leave as it was).
fn store_state(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(base: &Path, p: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            if rel.starts_with("locks") {
                continue;
            }
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.insert(rel, e.metadata().map(|m| m.len()).unwrap_or(0));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The `(name:tag, platform, short digest)` rows of `xrun images --format json`.
fn images(env: &TestEnv) -> Vec<(String, String, String)> {
    let out = ok(&xrun(env, &["images", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let p = &r["platform"];
            (
                format!(
                    "{}:{}",
                    r["name"].as_str().unwrap(),
                    r["tag"].as_str().unwrap_or("")
                ),
                format!(
                    "{}/{}{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap(),
                    p["variant"]
                        .as_str()
                        .map(|v| format!("/{v}"))
                        .unwrap_or_default()
                ),
                r["manifest_digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn docker_save_to_stdout_is_read_by_skopeo_and_loads_back_unchanged() {
    let env = TestEnv::new();
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-multi").to_str().unwrap()],
    ));
    ok(&xrun(
        &env,
        &["tag", "localhost/busybox-multi:multi", "demo/app:2"],
    ));
    let tagged = images(&env);
    assert!(
        tagged
            .iter()
            .filter(|i| i.0 == "docker.io/demo/app:2")
            .count()
            == 4,
        "{tagged:?}"
    );

    // Default format: docker, to stdout; one platform.
    let saved = env.scratch().join("saved.tar");
    let out = xrun(&env, &["save", "--platform", "linux/arm64", "demo/app:2"]);
    ok(&out);
    fs::write(&saved, &out.stdout).unwrap();
    let files = members(&saved);
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let entry = &manifest.as_array().unwrap()[..];
    assert_eq!(entry.len(), 1, "{manifest}");
    assert_eq!(entry[0]["RepoTags"], serde_json::json!(["demo/app:2"]));
    for member in std::iter::once(&entry[0]["Config"]).chain(entry[0]["Layers"].as_array().unwrap())
    {
        assert!(
            files.contains_key(member.as_str().unwrap()),
            "{member} not in the tar"
        );
    }
    assert!(files.contains_key("oci-layout") && files.contains_key("index.json"));

    if have_skopeo() {
        let out = Command::new("skopeo")
            .args(["inspect", &format!("docker-archive:{}", saved.display())])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
        assert_eq!(v["Architecture"], "arm64", "{v}");
    } else {
        common::skip("skopeo missing: the docker archive is not checked by skopeo");
    }

    // Loaded from stdin into a fresh store: same name, platform and manifest digest.
    let env2 = TestEnv::new();
    let out = ok(&load_stdin(&env2, &saved));
    assert!(
        out.contains("Loaded image: docker.io/demo/app:2 (linux/arm64/v8)"),
        "{out}"
    );
    let want: Vec<_> = tagged
        .into_iter()
        .filter(|i| i.0 == "docker.io/demo/app:2" && i.1 == "linux/arm64/v8")
        .collect();
    assert_eq!(images(&env2), want);

    // --format oci: no manifest.json, still a layout.
    let oci = env.scratch().join("oci.tar");
    ok(&xrun(
        &env,
        &[
            "save",
            "--format",
            "oci",
            "demo/app:2",
            "-o",
            oci.to_str().unwrap(),
        ],
    ));
    let files = members(&oci);
    assert!(!files.contains_key("manifest.json") && files.contains_key("index.json"));
}

#[test]
fn classic_docker_archives_from_skopeo_load_and_run() {
    if !have_skopeo() {
        return common::skip("skopeo missing");
    }
    let env = TestEnv::new();
    let classic = env.scratch().join("classic.tar");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", &fixture_ref("busybox-amd64")])
        .arg(format!("docker-archive:{}:foo/bar:v1", classic.display()))
        .output()
        .unwrap();
    ok(&out);
    let names: Vec<String> = members(&classic).into_keys().collect();
    assert!(names.iter().any(|n| n.ends_with(".tar")), "{names:?}");
    assert!(!names.iter().any(|n| n == "oci-layout"), "{names:?}");

    let out = ok(&xrun(&env, &["load", "-i", classic.to_str().unwrap()]));
    assert!(
        out.contains("Loaded image: docker.io/foo/bar:v1 (linux/amd64)"),
        "{out}"
    );
    let first = images(&env);
    // The same archive again gives the same image (xrun's manifest is deterministic).
    ok(&load_stdin(&env, &classic));
    assert_eq!(images(&env), first);
    if common::is_root() {
        let out = ok(&xrun(
            &env,
            &["run", "--rm", "foo/bar:v1", "sh", "-c", "echo loaded-ok"],
        ));
        assert_eq!(out.trim(), "loaded-ok");
    }
}

#[test]
fn manifest_json_archives_with_compressed_layers_load() {
    for fixture_name in ["busybox-amd64", "busybox-zstd"] {
        let env = TestEnv::new();
        ok(&xrun(
            &env,
            &["load", "-i", fixture(fixture_name).to_str().unwrap()],
        ));
        let (name, _, _) = images(&env).remove(0);
        let saved = env.scratch().join("saved.tar");
        ok(&xrun(&env, &["save", &name, "-o", saved.to_str().unwrap()]));
        // Without its OCI layout, only manifest.json describes the archive.
        let mut files = members(&saved);
        files.retain(|n, _| n != "oci-layout" && n != "index.json" && !n.ends_with('/'));
        let docker_only = env.scratch().join("docker-only.tar");
        write_tar(&docker_only, &files);

        let env2 = TestEnv::new();
        let out = ok(&xrun(&env2, &["load", "-i", docker_only.to_str().unwrap()]));
        assert!(
            out.contains(&format!("Loaded image: {name}")),
            "{fixture_name}: {out}"
        );
        let v: serde_json::Value =
            serde_json::from_str(&ok(&xrun(&env2, &["inspect", &name]))).unwrap();
        let layer_type = v["manifest"]["layers"][0]["mediaType"]
            .as_str()
            .unwrap()
            .to_string();
        let want = if fixture_name == "busybox-zstd" {
            "+zstd"
        } else {
            "+gzip"
        };
        assert!(layer_type.ends_with(want), "{fixture_name}: {layer_type}");
    }
}

#[test]
fn tampered_and_hostile_docker_archives_are_refused_and_leave_the_store_unchanged() {
    let env = TestEnv::new();
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-amd64").to_str().unwrap()],
    ));
    let (name, _, _) = images(&env).remove(0);
    let saved = env.scratch().join("saved.tar");
    ok(&xrun(&env, &["save", &name, "-o", saved.to_str().unwrap()]));
    let mut files = members(&saved);
    files.retain(|n, _| n != "oci-layout" && n != "index.json" && !n.ends_with('/'));
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let layer = manifest[0]["Layers"][0].as_str().unwrap().to_string();

    let target = TestEnv::new();
    ok(&xrun(&target, &["images"]));
    let before = store_state(&target.root());
    let mut cases: Vec<(&str, Files, &str)> = Vec::new();

    // A layer whose content does not match the config's diff_id.
    let mut tampered = files.clone();
    let mut bytes = tampered[&layer].clone();
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_end(&mut plain)
        .unwrap();
    plain[600] ^= 0xff;
    bytes.clear();
    let mut gz = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::fast());
    gz.write_all(&plain).unwrap();
    gz.finish().unwrap();
    tampered.insert(layer.clone(), bytes);
    cases.push(("tampered layer", tampered, "does not match the config"));

    // manifest.json naming a path outside the archive.
    let mut hostile = files.clone();
    let mut m = manifest.clone();
    m[0]["Layers"][0] = "../../../../etc/passwd".into();
    hostile.insert("manifest.json".into(), serde_json::to_vec(&m).unwrap());
    cases.push(("escaping layer path", hostile, "not an archive member"));

    // A missing layer.
    let mut missing = files.clone();
    missing.remove(&layer);
    cases.push(("missing layer", missing, "lacks"));

    // Neither format.
    let mut neither = BTreeMap::new();
    neither.insert("hello.txt".to_string(), b"hi".to_vec());
    cases.push(("not an archive", neither, "neither an OCI image layout"));

    for (what, files, message) in cases {
        let bad = target.scratch().join("bad.tar");
        write_tar(&bad, &files);
        for out in [
            xrun(&target, &["load", "-i", bad.to_str().unwrap()]),
            load_stdin(&target, &bad),
        ] {
            assert_eq!(out.status.code(), Some(125), "{what}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(message), "{what}: {err}");
            assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
            assert_eq!(store_state(&target.root()), before, "{what}");
        }
    }
}

#[test]
fn tag_and_save_refuse_bad_input_with_one_line() {
    let env = TestEnv::new();
    ok(&xrun(
        &env,
        &["load", "-i", fixture("busybox-amd64").to_str().unwrap()],
    ));
    let (name, _, _) = images(&env).remove(0);
    let digest_target = format!("x@sha256:{}", "a".repeat(64));
    // (arguments, exit code: 125 for xrun's refusals, 2 for usage errors as every flag,
    // message)
    for (args, code, message) in [
        (vec!["tag", "nosuch:1", "x:1"], 125, "no such image"),
        (
            vec!["tag", name.as_str(), "Bad Name"],
            125,
            "invalid reference",
        ),
        (
            vec!["tag", name.as_str(), &digest_target],
            125,
            "cannot name a digest",
        ),
        (
            vec!["save", "nosuch", "-o", "/dev/null"],
            125,
            "no such image",
        ),
        (
            // A flag clap refuses: exit 125, as Docker for flag errors.
            vec!["save", "--format", "zip", name.as_str(), "-o", "/dev/null"],
            125,
            "unknown archive format",
        ),
    ] {
        let out = xrun(&env, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
    let leftovers: Vec<_> = fs::read_dir(env.scratch())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
