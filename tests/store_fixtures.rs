//! The store against the shared fixtures (ci/fixtures): `xrun load` of real layouts, layers
//! unpacked into snapshots, and the flattened view checked against `layers-whiteout`'s
//! `expect.txt`.
mod common;

use std::path::Path;
use std::process::{Command, Output};

use xrun::store::Store;

fn xrun(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xrun"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn load(root: &Path, layout: &Path) -> Vec<xrun::store::ImageRecord> {
    let out = xrun(root, &["load", "-i", layout.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "xrun load {}: {}",
        layout.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Store::open(root).unwrap().list_images().unwrap()
}

#[test]
fn layers_whiteout_flattens_to_the_expected_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let records = load(&root, &common::fixture("layers-whiteout"));
    assert_eq!(records.len(), 1);
    let store = Store::open(&root).unwrap();
    let merged = t.path().join("merged");
    store.flatten(&records[0], &merged).unwrap();
    if let Err(problems) = common::check_expect(&merged) {
        panic!(
            "flattened tree differs from expect.txt:\n{}",
            problems.join("\n")
        );
    }
    // The per-layer snapshots unpack too (overlay whiteouts instead of deletions).
    let dirs = store.unpack(&records[0]).unwrap();
    assert_eq!(dirs.len(), records[0].layers.len());
}

#[test]
fn busybox_unpacks_into_a_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("root");
    let records = load(&root, &common::fixture("busybox-amd64"));
    let store = Store::open(&root).unwrap();
    let img = store.image(&records[0]).unwrap();
    let found = img
        .layer_dirs
        .iter()
        .any(|d| d.join("bin/busybox").is_file());
    assert!(found, "no bin/busybox in {:?}", img.layer_dirs);
    assert_eq!(img.config.architecture().to_string(), "amd64");
}

#[test]
fn zstd_mislabeled_and_multi_platform_fixtures_load_and_unpack() {
    for name in ["busybox-zstd", "mislabeled", "busybox-multi"] {
        let Some(layout) = common::try_fixture(name) else {
            common::skip(&format!("fixture {name} was not built here"));
            continue;
        };
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let records = load(&root, &layout);
        assert!(!records.is_empty(), "{name}");
        let store = Store::open(&root).unwrap();
        for r in &records {
            let dirs = store
                .unpack(r)
                .unwrap_or_else(|e| panic!("{name} {}: {e}", r.platform));
            assert!(
                dirs.iter().any(|d| d.join("bin/busybox").is_file()
                    || d.join("usr/bin/busybox").is_file()),
                "{name} {}: no busybox in {dirs:?}",
                r.platform
            );
        }
    }
}
