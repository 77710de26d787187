use super::{TarMaker, names_in, put_image, store};
use crate::store::StoreError;

#[test]
fn prune_frees_what_no_record_uses_and_keeps_leases() {
    let (_t, s) = store();
    let shared = TarMaker::new().file("base", b"base layer", 0o644).finish();
    let a = put_image(
        &s,
        "localhost/a",
        "1",
        "amd64",
        &[
            shared.clone(),
            TarMaker::new().file("a", b"a", 0o644).finish(),
        ],
    );
    let b = put_image(
        &s,
        "localhost/b",
        "1",
        "amd64",
        &[shared, TarMaker::new().file("b", b"b", 0o644).finish()],
    );
    s.record_image(&a).unwrap();
    s.record_image(&b).unwrap();
    let a_dirs = s.unpack(&a).unwrap();
    let b_dirs = s.unpack(&b).unwrap();
    assert_eq!(a_dirs[0], b_dirs[0], "the shared layer is unpacked once");
    assert_eq!(names_in(&s.root().join("snapshots")).len(), 3);

    // Nothing unreferenced yet.
    assert_eq!(s.prune().unwrap(), Default::default());

    // A container leases b's snapshots, then b is untagged.
    let leased: Vec<_> = b.layers.iter().map(|l| l.diff_id.clone()).collect();
    s.lease_snapshots("ctr-1", &leased).unwrap();
    s.remove_image("localhost/b", "1", None).unwrap();
    let report = s.prune().unwrap();
    // b's manifest, config and own layer blob go; the shared layer blob stays (a uses it).
    assert_eq!(report.blobs.len(), 3);
    assert!(report.snapshots.is_empty(), "leased snapshots stay");
    assert!(report.bytes > 0);
    assert!(b_dirs[1].is_dir());
    assert!(s.has_blob(&a.layers[0].digest));
    assert!(!s.has_blob(&b.layers[1].digest));

    s.release_snapshots("ctr-1").unwrap();
    let report = s.prune().unwrap();
    assert_eq!(report.snapshots, vec![b.layers[1].diff_id.clone()]);
    assert!(!b_dirs[1].exists());
    assert!(b_dirs[0].is_dir(), "a still uses the shared snapshot");

    s.remove_image("localhost/a", "1", None).unwrap();
    s.prune().unwrap();
    assert!(names_in(&s.root().join("blobs/sha256")).is_empty());
    assert!(names_in(&s.root().join("snapshots")).is_empty());
}

#[test]
fn prune_waits_for_no_writer() {
    let (_t, s) = store();
    let lease = s.lease().unwrap();
    assert!(matches!(s.prune(), Err(StoreError::Busy(_))));
    drop(lease);
    s.prune().unwrap();
}

#[test]
fn lease_holder_names_are_checked() {
    let (_t, s) = store();
    assert!(s.lease_snapshots("../escape", &[]).is_err());
    assert!(s.lease_snapshots("", &[]).is_err());
    s.lease_snapshots("abc-123", &[]).unwrap();
    assert_eq!(s.snapshot_leases().unwrap().len(), 1);
}

#[test]
fn open_removes_what_killed_processes_left_in_tmp() {
    let (_t, s) = store();
    let tmp = s.root().join("tmp");
    let hex = "ab".repeat(32);
    // A snapshot build and a layout import whose processes died, and a live import.
    std::fs::create_dir_all(tmp.join(format!("snap-{hex}-1-2/etc"))).unwrap();
    std::fs::create_dir_all(tmp.join("load-1-dead/blobs")).unwrap();
    std::fs::create_dir_all(tmp.join("load-2-live/blobs")).unwrap();
    let live = crate::store::locks::exclusive(&s.tmp_lock("load-2-live")).unwrap();
    let s2 = crate::store::Store::open(s.root()).unwrap();
    assert_eq!(names_in(&s2.root().join("tmp")), vec!["load-2-live"]);
    drop(live);
    crate::store::Store::open(s.root()).unwrap();
    assert!(names_in(&tmp).is_empty());
    assert!(names_in(&s.root().join("snapshots")).is_empty());
}
