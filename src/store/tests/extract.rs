use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use super::{TarMaker, gzip, is_root, names_in, put_image, put_layer, store};
use crate::digest::Digest;
use crate::store::{LayerRef, Store, StoreError, is_opaque, is_whiteout};

const GZ: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn unpack(s: &Store, tar: &[u8]) -> (LayerRef, Result<std::path::PathBuf, StoreError>) {
    let l = put_layer(s, &gzip(tar), tar, GZ);
    let r = s.unpack_layer(&l);
    (l, r)
}

/// Nothing of a failed unpack is left: no snapshot, no temp dir.
fn assert_nothing_left(s: &Store) {
    assert!(names_in(&s.root().join("snapshots")).is_empty());
    assert!(names_in(&s.root().join("tmp")).is_empty());
}

#[test]
fn keeps_modes_links_owners_xattrs_mtimes_devices() {
    let (_t, s) = store();
    let tar = TarMaker::new()
        .dir("./", 0o755)
        .dir("bin/", 0o750)
        .file("bin/tool", b"#!/bin/sh\necho hi\n", 0o4755)
        .symlink("bin/link", "tool")
        .symlink("etc-abs", "/etc/passwd")
        .hardlink("bin/hard", "bin/tool")
        .owned_file("data", b"owned", 1234, 5678)
        .pax(&[
            ("SCHILY.xattr.user.note", b"kept"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ])
        .file("xattr-file", b"x", 0o600)
        .file("deep/implicit/parent", b"p", 0o644)
        .fifo("pipe")
        .chardev("null", 1, 3)
        .finish();
    let (_l, r) = unpack(&s, &tar);
    let root = r.unwrap();
    let m = fs::symlink_metadata(root.join("bin/tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::read(root.join("bin/tool")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(m.mtime(), 1_600_000_000);
    assert_eq!(
        fs::symlink_metadata(root.join("bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o750
    );
    assert_eq!(
        fs::symlink_metadata(root.join("bin")).unwrap().mtime(),
        1_600_000_000
    );
    assert_eq!(
        fs::read_link(root.join("bin/link")).unwrap(),
        Path::new("tool")
    );
    assert_eq!(
        fs::read_link(root.join("etc-abs")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::symlink_metadata(root.join("bin/hard")).unwrap().ino(),
        m.ino()
    );
    assert_eq!(fs::read(root.join("deep/implicit/parent")).unwrap(), b"p");
    assert!(
        fs::symlink_metadata(root.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(
        xattr::get(root.join("xattr-file"), "user.note")
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    assert!(
        !is_opaque(&root.join("xattr-file")),
        "overlay xattrs from the tar are dropped"
    );
    let data = fs::symlink_metadata(root.join("data")).unwrap();
    assert_eq!(data.mtime(), 1_234_567_890);
    if is_root() {
        assert_eq!((data.uid(), data.gid()), (1234, 5678));
        let null = fs::symlink_metadata(root.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    } else {
        eprintln!("not root: owners and device nodes not checked");
    }
}

#[test]
fn whiteouts_become_overlay_whiteouts() {
    let (_t, s) = store();
    let tar = TarMaker::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.removed.conf", b"", 0o644)
        .dir("var/cache/", 0o755)
        .file("var/cache/.wh..wh..opq", b"", 0o644)
        .file("var/cache/new", b"n", 0o644)
        .file(".wh..wh.plnk", b"", 0o644)
        .finish();
    let (_l, r) = unpack(&s, &tar);
    let root = r.unwrap();
    let wh = root.join("etc/removed.conf");
    assert!(is_whiteout(&wh));
    if is_root() {
        let m = fs::symlink_metadata(&wh).unwrap();
        assert!(m.file_type().is_char_device());
        assert_eq!(m.rdev(), 0);
        assert_eq!(
            xattr::get(root.join("var/cache"), "trusted.overlay.opaque")
                .unwrap()
                .as_deref(),
            Some(&b"y"[..])
        );
    }
    assert!(is_opaque(&root.join("var/cache")));
    assert_eq!(names_in(&root.join("var/cache")), vec!["new"]);
    assert!(!root.join(".wh..wh.plnk").exists());
    assert!(!root.join("etc/.wh.removed.conf").exists());
}

#[test]
fn every_escape_is_refused_and_nothing_is_left() {
    let outside_name = "xrun-escape-target";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "absolute",
            TarMaker::new().file("/tmp/xrun-abs", b"x", 0o644).finish(),
        ),
        (
            "dotdot",
            TarMaker::new()
                .file("../xrun-escape-target", b"x", 0o644)
                .finish(),
        ),
        (
            "inner dotdot",
            TarMaker::new()
                .file("a/../../xrun-escape-target", b"x", 0o644)
                .finish(),
        ),
        (
            "through symlink",
            TarMaker::new()
                .symlink("evil", "../../../../../../../..")
                .file("evil/tmp/xrun-escape-target", b"x", 0o644)
                .finish(),
        ),
        (
            "through relative symlink to the store",
            TarMaker::new()
                .symlink("up", "..")
                .file("up/xrun-escape-target", b"x", 0o644)
                .finish(),
        ),
        (
            "hardlink absolute",
            TarMaker::new().hardlink("h", "/etc/passwd").finish(),
        ),
        (
            "hardlink dotdot",
            TarMaker::new().hardlink("h", "../../etc/passwd").finish(),
        ),
        (
            "hardlink through symlink",
            TarMaker::new()
                .symlink("evil", "../../../../../../..")
                .hardlink("h", "evil/etc/passwd")
                .finish(),
        ),
        (
            "whiteout dotdot",
            TarMaker::new().file("a/.wh...", b"", 0o644).finish(),
        ),
    ];
    for (what, tar) in cases {
        let (_t, s) = store();
        let (_l, r) = unpack(&s, &tar);
        assert!(
            matches!(r, Err(StoreError::PathEscape { .. })),
            "{what}: expected PathEscape, got {r:?}"
        );
        assert_nothing_left(&s);
        // Nothing landed next to the store, in its parent, or in /tmp.
        assert!(!s.root().join(outside_name).exists(), "{what}");
        assert!(
            !s.root().parent().unwrap().join(outside_name).exists(),
            "{what}"
        );
        assert!(!Path::new("/tmp/xrun-abs").exists(), "{what}");
    }
}

#[test]
fn truncated_gzip_is_an_error_and_leaves_nothing() {
    let (_t, s) = store();
    let tar = TarMaker::new()
        .file("big", &vec![7u8; 200_000], 0o644)
        .finish();
    let gz = gzip(&tar);
    let cut = &gz[..gz.len() / 2];
    let l = put_layer(&s, cut, &tar, GZ);
    let r = s.unpack_layer(&l);
    assert!(matches!(r, Err(StoreError::BadLayer { .. })), "{r:?}");
    assert_nothing_left(&s);
}

#[test]
fn diff_id_mismatch_is_refused() {
    let (_t, s) = store();
    let tar = TarMaker::new().file("f", b"content", 0o644).finish();
    let gz = gzip(&tar);
    let mut l = put_layer(&s, &gz, &tar, GZ);
    l.diff_id = Digest::of(b"something else");
    match s.unpack_layer(&l) {
        Err(StoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, l.diff_id);
            assert_eq!(actual, Digest::of(&tar));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert_nothing_left(&s);
}

#[test]
fn zstd_and_plain_layers_are_sniffed() {
    let (_t, s) = store();
    let tar = TarMaker::new().file("z", b"zstd!", 0o644).finish();
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    let l = put_layer(&s, &z, &tar, "application/octet-stream");
    assert_eq!(
        fs::read(s.unpack_layer(&l).unwrap().join("z")).unwrap(),
        b"zstd!"
    );
    let plain = TarMaker::new().file("p", b"plain", 0o644).finish();
    let l = put_layer(
        &s,
        &plain,
        &plain,
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
    );
    assert_eq!(
        fs::read(s.unpack_layer(&l).unwrap().join("p")).unwrap(),
        b"plain"
    );
    let l = put_layer(
        &s,
        b"xx",
        b"xx",
        "application/vnd.oci.image.layer.v1.tar+encrypted",
    );
    assert!(matches!(
        s.unpack_layer(&l),
        Err(StoreError::BadLayer { .. })
    ));
}

#[test]
fn concurrent_unpacks_of_one_layer_share_it() {
    let (_t, s) = store();
    let tar = TarMaker::new()
        .file("f", &vec![1u8; 1_000_000], 0o644)
        .finish();
    let l = put_layer(&s, &gzip(&tar), &tar, GZ);
    let dirs: Vec<_> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let s = Store::open(s.root()).unwrap();
                let l = l.clone();
                sc.spawn(move || s.unpack_layer(&l).unwrap())
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(dirs.iter().all(|d| d == &dirs[0]));
    assert_eq!(names_in(&s.root().join("snapshots")).len(), 1);
    assert!(names_in(&s.root().join("tmp")).is_empty());
}

#[test]
fn flatten_applies_whiteouts_as_deletions() {
    let (t, s) = store();
    let lower = TarMaker::new()
        .file("keep", b"lower", 0o644)
        .file("gone", b"x", 0o644)
        .file("cache/old1", b"o", 0o644)
        .file("cache/old2", b"o", 0o644)
        .file("replaced", b"old", 0o644)
        .finish();
    let upper = TarMaker::new()
        .file(".wh.gone", b"", 0o644)
        .file("cache/fresh", b"f", 0o644)
        .file("cache/.wh..wh..opq", b"", 0o644)
        .file("replaced", b"new", 0o600)
        .finish();
    let rec = put_image(&s, "localhost/f", "1", "amd64", &[lower, upper]);
    let dest = t.path().join("merged");
    s.flatten(&rec, &dest).unwrap();
    assert_eq!(names_in(&dest), vec!["cache", "keep", "replaced"]);
    assert_eq!(names_in(&dest.join("cache")), vec!["fresh"]);
    assert_eq!(fs::read(dest.join("replaced")).unwrap(), b"new");
    assert_eq!(
        fs::metadata(dest.join("replaced"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // An existing target is refused; nothing of a temp tree is left next to it.
    assert!(s.flatten(&rec, &dest).is_err());
    assert_eq!(names_in(t.path()), vec!["merged", "root"]);
}

#[test]
fn image_parses_config_and_unpacks() {
    let (_t, s) = store();
    let rec = put_image(
        &s,
        "localhost/i",
        "1",
        "amd64",
        &[TarMaker::new().file("x", b"1", 0o644).finish()],
    );
    let img = s.image(&rec).unwrap();
    assert_eq!(img.layer_dirs.len(), 1);
    assert!(img.layer_dirs[0].join("x").is_file());
    assert_eq!(img.config.architecture().to_string(), "amd64");
}

/// What a host file or directory looks like, to prove extraction did not touch it.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    content: Option<Vec<u8>>,
    xattrs: Vec<String>,
}

fn fingerprint(p: &Path) -> Fingerprint {
    let m = fs::symlink_metadata(p).unwrap();
    let mut xattrs: Vec<String> = xattr::list(p)
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    xattrs.sort();
    Fingerprint {
        mode: m.mode(),
        uid: m.uid(),
        gid: m.gid(),
        mtime: (m.mtime(), m.mtime_nsec()),
        content: m.is_file().then(|| fs::read(p).unwrap()),
        xattrs,
    }
}

/// Finding 1 of issue 10: a directory entry later replaced (in the same layer) by a symlink
/// out of the root, a file or a hard link must not have its deferred mode, owner, mtime or
/// xattrs applied to what replaced it. Both modes, both resolvers, victims next to the root
/// reached by relative and absolute links.
#[test]
fn replaced_directory_metadata_never_reaches_outside() {
    use crate::store::extract::{Mode, extract_with};
    use crate::store::safepath::Resolver;
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    let victim_dir = t.path().join("victimdir");
    let abs_victim = victim.to_str().unwrap().to_string();
    let abs_victim_dir = victim_dir.to_str().unwrap().to_string();
    let evil_dir_meta: &[(&str, &[u8])] = &[
        ("uid", b"1234"),
        ("gid", b"5678"),
        ("mtime", b"1000.5"),
        ("SCHILY.xattr.user.evil", b"yes"),
    ];
    let variants: Vec<(&str, Vec<u8>)> = vec![
        (
            "symlink climbing to the victim file through the host root",
            TarMaker::new()
                .dir("evil/", 0o4777)
                .symlink(
                    "evil",
                    &format!("../../../../../../../../../..{abs_victim}"),
                )
                .finish(),
        ),
        (
            "symlink to the victim file, relative",
            TarMaker::new()
                .dir("evil/", 0o4777)
                .symlink("evil", "../victim")
                .finish(),
        ),
        (
            "symlink to the victim file, absolute",
            TarMaker::new()
                .dir("evil/", 0o4777)
                .symlink("evil", &abs_victim)
                .finish(),
        ),
        (
            "symlink to the victim dir, with a subdirectory recorded",
            TarMaker::new()
                .dir("evil/", 0o4777)
                .dir("evil/sub/", 0o4777)
                .symlink("evil", "../victimdir")
                .finish(),
        ),
        (
            "owner, mtime and xattr, then an absolute symlink to the victim dir",
            TarMaker::new()
                .pax(evil_dir_meta)
                .dir("evil/", 0o6777)
                .symlink("evil", &abs_victim_dir)
                .finish(),
        ),
        (
            "owner, mtime and xattr, then a relative symlink to the victim file",
            TarMaker::new()
                .pax(evil_dir_meta)
                .dir("evil/", 0o6777)
                .symlink("evil", "../victim")
                .finish(),
        ),
        (
            "the root entry itself is not re-resolved through a symlink",
            TarMaker::new()
                .dir("./", 0o4777)
                .dir("a/", 0o4777)
                .symlink("a", "..")
                .finish(),
        ),
        (
            "a symlink's own owner, mtime and xattrs stay on the link",
            TarMaker::new()
                .pax(evil_dir_meta)
                .symlink("link", "../victim")
                .pax(evil_dir_meta)
                .symlink("alink", &abs_victim)
                .finish(),
        ),
        (
            "replaced by a regular file",
            TarMaker::new()
                .dir("evil/", 0o4777)
                .file("evil", b"plain", 0o644)
                .finish(),
        ),
        (
            "replaced by a hard link",
            TarMaker::new()
                .file("f", b"plain", 0o644)
                .dir("evil/", 0o4777)
                .hardlink("evil", "f")
                .finish(),
        ),
    ];
    for (what, tar) in &variants {
        for mode in [Mode::Overlay, Mode::Apply] {
            for resolver in [Resolver::Auto, Resolver::Walk] {
                let root = t.path().join("root");
                fs::create_dir(&root).unwrap();
                fs::write(&victim, b"secret").unwrap();
                fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
                fs::create_dir(&victim_dir).unwrap();
                fs::set_permissions(&victim_dir, fs::Permissions::from_mode(0o700)).unwrap();
                let before = (fingerprint(&victim), fingerprint(&victim_dir));
                let r = extract_with(&tar[..], &root, &Digest::of(tar), mode, resolver);
                let ctx = format!("{what} ({mode:?}, {resolver:?})");
                assert!(r.is_ok(), "{ctx}: {:?}", r.err());
                assert_eq!(
                    (fingerprint(&victim), fingerprint(&victim_dir)),
                    before,
                    "{ctx}"
                );
                assert_eq!(
                    names_in(t.path()),
                    vec!["root", "victim", "victimdir"],
                    "{ctx}"
                );
                if what.contains("regular file") || what.contains("hard link") {
                    let m = fs::symlink_metadata(root.join("evil")).unwrap();
                    assert!(m.is_file(), "{ctx}");
                    assert_eq!(m.mode() & 0o7777, 0o644, "{ctx}: the file keeps its mode");
                }
                if what.contains("root entry") {
                    let m = fs::symlink_metadata(&root).unwrap();
                    assert_eq!(m.mode() & 0o7777, 0o4777, "{ctx}: the root got its mode");
                }
                fs::remove_dir_all(&root).unwrap();
                fs::remove_dir_all(&victim_dir).unwrap();
            }
        }
    }
}
