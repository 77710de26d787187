//! `xrun load` and `xrun save` against hostile layouts and a tampered store (issue 10,
//! finding 3 and the layout half of the extraction discipline): huge `index.json` (file and
//! tar entry), symlinks where blobs or metadata should be, and a store blob swapped for a
//! symlink or altered. Each is refused with one clear line, nothing enters the store, and
//! `save` leaves no output behind.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestEnv, fixture};
use xrun::store::Store;

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    env.cmd().args(args).output().unwrap()
}

/// A private copy of the `busybox-amd64` fixture layout.
fn layout_copy(env: &TestEnv) -> PathBuf {
    let dest = env.scratch().join("layout");
    let st = Command::new("cp")
        .arg("-a")
        .arg(fixture("busybox-amd64"))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(st.success());
    dest
}

/// Exit 125, exactly one stderr line, returned.
fn one_line(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(125), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{err:?}");
    lines[0].to_string()
}

fn assert_store_empty(env: &TestEnv) {
    let store = Store::open(&env.root()).unwrap();
    assert!(store.list_blobs().unwrap().is_empty());
    assert!(store.list_images().unwrap().is_empty());
}

/// The layout's manifest's first layer digest hex.
fn first_layer_hex(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&m[7..])).unwrap())
            .unwrap();
    manifest["layers"][0]["digest"].as_str().unwrap()[7..].to_string()
}

#[test]
fn huge_index_json_is_refused() {
    let env = TestEnv::new();
    let layout = layout_copy(&env);
    // 512 MiB, sparse: no disk used, but a whole-file read would take 512 MiB of memory.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(layout.join("index.json"))
        .unwrap();
    f.set_len(512 << 20).unwrap();
    drop(f);
    let err = one_line(&xrun(&env, &["load", "-i", layout.to_str().unwrap()]));
    assert_eq!(
        err,
        format!(
            "xrun: {}: its index.json is larger than 4 MiB (the limit): refusing it",
            layout.display()
        )
    );
    assert_store_empty(&env);
}

#[test]
fn huge_index_json_in_a_tar_is_refused_before_it_is_copied() {
    let env = TestEnv::new();
    let layout = layout_copy(&env);
    fs::write(layout.join("index.json"), vec![b' '; 5 << 20]).unwrap();
    let tar = env.scratch().join("huge.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let err = one_line(&xrun(&env, &["load", "-i", tar.to_str().unwrap()]));
    assert_eq!(
        err,
        format!(
            "xrun: {}: its index.json is larger than 4 MiB (the limit): refusing it",
            tar.display()
        )
    );
    assert_store_empty(&env);
    // Nothing left in the store's temp directory.
    let tmp: Vec<_> = fs::read_dir(env.root().join("tmp"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn symlinked_metadata_is_refused() {
    let env = TestEnv::new();
    let layout = layout_copy(&env);
    fs::remove_file(layout.join("index.json")).unwrap();
    symlink("/dev/zero", layout.join("index.json")).unwrap();
    let err = one_line(&xrun(&env, &["load", "-i", layout.to_str().unwrap()]));
    assert_eq!(
        err,
        format!(
            "xrun: {}: its index.json is a symlink; refusing to follow it",
            layout.display()
        )
    );
    assert_store_empty(&env);
}

#[test]
fn symlinked_blob_is_refused_even_with_the_right_content() {
    let env = TestEnv::new();
    let layout = layout_copy(&env);
    let hex = first_layer_hex(&layout);
    // The same bytes outside the layout: a symlink could make load copy any host file.
    let blob = layout.join("blobs/sha256").join(&hex);
    let outside = env.scratch().join("outside");
    fs::rename(&blob, &outside).unwrap();
    symlink(&outside, &blob).unwrap();
    let err = one_line(&xrun(&env, &["load", "-i", layout.to_str().unwrap()]));
    assert_eq!(
        err,
        format!(
            "xrun: {}: its blobs/sha256/{hex} is a symlink; refusing to follow it",
            layout.display()
        )
    );
    assert_store_empty(&env);
}

#[test]
fn save_refuses_a_store_blob_that_is_a_symlink_or_altered() {
    let env = TestEnv::new();
    let layout = layout_copy(&env);
    let out = xrun(&env, &["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let name = Store::open(&env.root()).unwrap().list_images().unwrap()[0]
        .name
        .clone();
    let hex = first_layer_hex(&layout);
    let blob = env.root().join("blobs/sha256").join(&hex);
    let saved = env.scratch().join("saved.tar");

    // A symlink in the store (to a file with the same bytes): refused, no output.
    let outside = env.scratch().join("outside");
    fs::copy(&blob, &outside).unwrap();
    fs::remove_file(&blob).unwrap();
    symlink(&outside, &blob).unwrap();
    let err = one_line(&xrun(&env, &["save", &name, "-o", saved.to_str().unwrap()]));
    assert!(
        err.contains(&format!("blob sha256:{hex} is a symlink")),
        "{err}"
    );
    assert!(!saved.exists());

    // Same size, one byte changed: the digest check while writing stops it.
    fs::remove_file(&blob).unwrap();
    let mut bytes = fs::read(&outside).unwrap();
    bytes[100] ^= 0xff;
    fs::write(&blob, &bytes).unwrap();
    let err = one_line(&xrun(&env, &["save", &name, "-o", saved.to_str().unwrap()]));
    assert!(err.contains(&format!("sha256:{hex}")), "{err}");
    assert!(!saved.exists());
    let leftovers: Vec<_> = fs::read_dir(env.scratch())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".xrun-save"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
