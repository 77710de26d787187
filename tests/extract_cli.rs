//! Issue 10, finding 1 through the real binary: an image whose layer replaces directories by
//! symlinks out of the root (and by files) is pulled from a registry and loaded from an OCI
//! layout (then unpacked by `xrun check`); host files next to the store keep their mode,
//! owner, mtime, content and xattrs. Also: a refused unpack leaves no lock files, and a name
//! too long for the file system is refused on one line.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{TestEnv, TestRegistry, is_root, skip};

/// A tar entry header with a raw name (so escapes can be written).
fn header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_600_000_000);
    let n = &mut h.as_old_mut().name;
    n[..name.len()].copy_from_slice(name.as_bytes());
    h
}

#[derive(Default)]
struct Layer {
    b: Option<tar::Builder<Vec<u8>>>,
}

impl Layer {
    fn add(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b
            .get_or_insert_with(|| tar::Builder::new(Vec::new()))
            .append(&h, data)
            .unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.add(header(tar::EntryType::Directory, name, mode, 0), b"")
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.add(
            header(tar::EntryType::Regular, name, 0o644, data.len() as u64),
            data,
        )
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = header(tar::EntryType::Symlink, name, 0o777, 0);
        h.set_link_name_literal(target).unwrap();
        self.add(h, b"")
    }

    /// PAX records for the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = 1 + k.len() + 1 + v.len() + 1;
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            write!(body, "{len} {k}=").unwrap();
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = header(
            tar::EntryType::XHeader,
            "PaxHeader",
            0o644,
            body.len() as u64,
        );
        self.add(h, &body)
    }

    fn finish(&mut self) -> Vec<u8> {
        self.b.take().unwrap().into_inner().unwrap()
    }
}

/// Writes `bytes` as a blob of the layout at `dir`; returns its descriptor.
fn blob(dir: &Path, media_type: &str, bytes: &[u8]) -> serde_json::Value {
    let d = xrun::digest::Digest::of(bytes);
    fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    serde_json::json!({"mediaType": media_type, "digest": d.to_string(), "size": bytes.len()})
}

/// An OCI layout at `dir` holding one linux/amd64 image, `localhost/<name>:1`, of one
/// uncompressed layer.
fn layout(dir: &Path, name: &str, layer: &[u8]) {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let layer_desc = blob(dir, "application/vnd.oci.image.layer.v1.tar", layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
    });
    let config = blob(
        dir,
        "application/vnd.oci.image.config.v1+json",
        &serde_json::to_vec(&config).unwrap(),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer_desc],
    });
    let mut m = blob(
        dir,
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    m["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": format!("localhost/{name}:1")});
    m["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [m]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

fn xrun(env: &TestEnv, args: &[&str]) -> Output {
    let mut c = env.cmd();
    c.env("DOCKER_CONFIG", env.scratch().join("docker"));
    c.args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Mode, uid, gid, mtime (s, ns), content and xattr names of a host file or directory.
type Fingerprint = (u32, u32, u32, i64, i64, Option<Vec<u8>>, Vec<String>);

/// The [`Fingerprint`] of `p`.
fn fingerprint(p: &Path) -> Fingerprint {
    let m = fs::symlink_metadata(p).unwrap();
    let mut x: Vec<String> = xattr::list(p)
        .unwrap()
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    x.sort();
    (
        m.mode(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
        m.is_file().then(|| fs::read(p).unwrap()),
        x,
    )
}

/// A victim file (0600) and directory (0700) in a fresh directory under /tmp.
fn victims() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::Builder::new()
        .prefix("xrun-victim-")
        .tempdir_in("/tmp")
        .unwrap();
    let file = t.path().join("victim");
    fs::write(&file, b"do not touch").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    let dir = t.path().join("victimdir");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    (t, file, dir)
}

/// The evil layer: directories with setuid modes, owners, mtimes and xattrs, each replaced
/// in the same layer by a symlink to a victim (relative, climbing; and absolute) or a file.
fn evil_layer(file: &Path, dir: &Path) -> Vec<u8> {
    let up = "../".repeat(20);
    let rel_file = format!("{up}{}", file.display());
    let rel_dir = format!("{up}{}", dir.display());
    let meta: &[(&str, &[u8])] = &[
        ("uid", b"1234"),
        ("gid", b"1234"),
        ("mtime", b"1000"),
        ("SCHILY.xattr.user.evil", b"1"),
    ];
    Layer::default()
        .dir("evil/", 0o4777)
        .symlink("evil", &rel_file)
        .pax(meta)
        .dir("evil2/", 0o6777)
        .symlink("evil2", &file.display().to_string())
        .dir("evil3/", 0o4777)
        .symlink("evil3", &rel_dir)
        .pax(meta)
        .dir("evil4/", 0o6777)
        .symlink("evil4", &dir.display().to_string())
        .dir("evil5/", 0o4777)
        .file("evil5", b"plain")
        .finish()
}

fn snapshot_dirs(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect()
}

/// After an unpack of the evil layer: the victims are as they were, and the snapshot holds
/// the symlinks and the file the layer ends with.
fn assert_untouched_and_unpacked(env: &TestEnv, victims: &[(&Path, &Fingerprint)]) {
    for (p, before) in victims {
        assert_eq!(&&fingerprint(p), before, "{} changed", p.display());
    }
    let snaps = snapshot_dirs(&env.root());
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let s = &snaps[0];
    for l in ["evil", "evil2", "evil3", "evil4"] {
        assert!(
            fs::symlink_metadata(s.join(l))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{l}"
        );
    }
    let f = fs::symlink_metadata(s.join("evil5")).unwrap();
    assert!(f.is_file());
    assert_eq!(f.mode() & 0o7777, 0o644, "the file keeps its own mode");
}

#[test]
fn evil_layer_pulled_or_loaded_leaves_host_files_alone() {
    if !is_root() {
        return skip("needs root (owners in layers)");
    }
    let (_t, file, dir) = victims();
    let before_file = fingerprint(&file);
    let before_dir = fingerprint(&dir);
    let work = tempfile::tempdir().unwrap();
    let lay = work.path().join("evil");
    layout(&lay, "evil", &evil_layer(&file, &dir));

    // xrun load, then an unpack (xrun check reads the unpacked image).
    let env = TestEnv::new();
    let out = xrun(&env, &["load", "-i", lay.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    let out = xrun(&env, &["check", "localhost/evil:1"]);
    assert_eq!(fingerprint(&file), before_file, "{}", stderr(&out));
    assert_eq!(fingerprint(&dir), before_dir, "{}", stderr(&out));
    assert!(
        snapshot_dirs(&env.root()).len() == 1,
        "check did not unpack: {}",
        stderr(&out)
    );
    assert_untouched_and_unpacked(&env, &[(&file, &before_file), (&dir, &before_dir)]);

    // xrun pull from a registry.
    let reg = TestRegistry::start();
    reg.push_layout(&lay, "evil:1");
    let env = TestEnv::new();
    let out = xrun(&env, &["pull", &reg.image("evil:1")]);
    assert!(out.status.success(), "pull: {}", stderr(&out));
    assert_untouched_and_unpacked(&env, &[(&file, &before_file), (&dir, &before_dir)]);
}

fn lock_files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("locks"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("snap-") || n.starts_with("tmp-"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Pulls (and loads + checks) `layer`, which must be refused: exit 125, one line on stderr
/// containing `want`, no snapshot and no per-operation lock file left.
fn refused(layer: Vec<u8>, want: &str) {
    let work = tempfile::tempdir().unwrap();
    let lay = work.path().join("bad");
    layout(&lay, "bad", &layer);

    let reg = TestRegistry::start();
    reg.push_layout(&lay, "bad:1");
    let env = TestEnv::new();
    let out = xrun(&env, &["pull", &reg.image("bad:1")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "pull: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(want), "{err}");
    assert!(snapshot_dirs(&env.root()).is_empty());
    assert_eq!(lock_files(&env.root()), Vec::<String>::new(), "pull");

    let env = TestEnv::new();
    let out = xrun(&env, &["load", "-i", lay.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    let out = xrun(&env, &["check", "localhost/bad:1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(125), "check: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(want), "{err}");
    assert!(snapshot_dirs(&env.root()).is_empty());
    assert_eq!(
        lock_files(&env.root()),
        Vec::<String>::new(),
        "load + check"
    );
}

#[test]
fn refused_unpack_leaves_no_lock_files() {
    refused(
        Layer::default()
            .symlink("up", "..")
            .file("up/escaped", b"x")
            .finish(),
        "escapes the root",
    );
}

#[test]
fn too_long_a_name_is_one_clear_line() {
    let long = "n".repeat(300);
    let layer = Layer::default()
        .pax(&[("path", format!("dir/{long}").as_bytes())])
        .file("placeholder", b"x")
        .finish();
    refused(layer, "longer than 255 bytes");
    // The reason is given once, not once per error in the chain.
}
