//! Container start hardening, driven through the real binary as an attacker would: user ids
//! the kernel reads as "unchanged", image symlinks that steer the working directory or a
//! mount point out of the root, `/proc/self/fd/N` as a working directory (CVE-2024-21626),
//! descriptors leaking into the container, and flags mistaken for an image name.

mod common;
#[path = "run_support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use support::{Root, busybox_rootfs, capable, exclusive, stderr, stdout};

const AMD64: &str = "localhost/busybox-amd64:latest";
const ARM64: &str = "localhost/busybox-arm64:latest";

/// A root with the busybox fixture image(s) loaded.
fn loaded(fixtures: &[&str]) -> Root {
    let root = Root::new();
    for f in fixtures {
        let o = root.run(&["load", "-i", common::fixture(f).to_str().unwrap()]);
        assert!(o.status.success(), "load {f}: {}", stderr(&o));
    }
    root
}

/// `xrun run --rm -q FLAGS IMAGE CMD…`.
fn run_image(root: &Root, flags: &[&str], image: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["run", "--rm", "-q"];
    args.extend_from_slice(flags);
    args.push(image);
    args.extend_from_slice(cmd);
    root.run(&args)
}

/// Exactly one line on stderr, `xrun: …` containing every one of `parts`; exit 125.
fn refused(o: &Output, parts: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(125), "stderr: {e}");
    assert_eq!(e.lines().count(), 1, "one line expected: {e}");
    assert!(e.starts_with("xrun: "), "{e}");
    for p in parts {
        assert!(e.contains(p), "{p:?} not in {e}");
    }
}

#[test]
fn uid_and_gid_4294967295_are_refused() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = loaded(&["busybox-amd64"]);
    // (uid_t)-1 is "unchanged" to setresuid: on main this ran as uid 0 with full caps.
    let o = run_image(&root, &["-u", "4294967295"], AMD64, &["id"]);
    refused(&o, &["uid 4294967295", "unchanged"]);
    assert!(stdout(&o).is_empty());
    let o = run_image(&root, &["-u", "0:4294967295"], AMD64, &["id"]);
    refused(&o, &["gid 4294967295", "unchanged"]);
    for u in ["-1", "4294967296", "0:-5"] {
        let o = run_image(&root, &["-u", u], AMD64, &["id"]);
        refused(&o, &["between 0 and 4294967294"]);
    }
    // `create` then `start` refuses it too (the bundle is built at start).
    let o = root.run(&["create", "-u", "4294967295", AMD64, "id"]);
    if o.status.success() {
        let id = stdout(&o).trim().to_string();
        let s = root.run(&["start", "-a", &id]);
        refused(&s, &["uid 4294967295"]);
    } else {
        refused(&o, &["uid 4294967295"]);
    }
    // Ordinary ids still work.
    let o = run_image(&root, &["-u", "65534"], AMD64, &["id", "-u"]);
    assert_eq!(stdout(&o), "65534\n", "{}", stderr(&o));
    let o = run_image(&root, &["-u", "4294967294:4294967294"], AMD64, &["id"]);
    assert_eq!(
        stdout(&o),
        "uid=4294967294 gid=4294967294\n",
        "{}",
        stderr(&o)
    );
}

/// The busybox-amd64 fixture layout copied to `dir/NAME` with its config's `User` set to
/// `user` (new config and manifest blobs, digests recomputed); `xrun load` names it
/// `localhost/NAME:latest`.
fn layout_with_user(dir: &Path, name: &str, user: &str) -> PathBuf {
    let dst = dir.join(name);
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::fixture("busybox-amd64"))
        .arg(&dst)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let blob = |d: &str| {
        dst.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let write = |bytes: &[u8]| {
        let hex = common::sha256_hex(bytes);
        std::fs::write(dst.join("blobs/sha256").join(&hex), bytes).unwrap();
        (format!("sha256:{hex}"), bytes.len())
    };
    let read = |p: PathBuf| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let mut index = read(dst.join("index.json"));
    let mut manifest = read(blob(index["manifests"][0]["digest"].as_str().unwrap()));
    let mut config = read(blob(manifest["config"]["digest"].as_str().unwrap()));
    config["config"]["User"] = user.into();
    let (d, n) = write(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = d.into();
    manifest["config"]["size"] = n.into();
    let (d, n) = write(&serde_json::to_vec(&manifest).unwrap());
    index["manifests"][0]["digest"] = d.into();
    index["manifests"][0]["size"] = n.into();
    std::fs::write(dst.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    dst
}

#[test]
fn an_image_user_of_4294967295_is_refused() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = Root::new();
    let t = tempfile::tempdir().unwrap();
    for (name, user) in [("uidmax", "4294967295"), ("gidmax", "0:4294967295")] {
        let layout = layout_with_user(t.path(), name, user);
        let o = root.run(&["load", "-i", layout.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let image = format!("localhost/{name}:latest");
        let o = run_image(&root, &[], &image, &["id"]);
        refused(
            &o,
            &[
                &format!("the image's User \"{user}\""),
                "4294967295",
                "unchanged",
            ],
        );
        assert!(stdout(&o).is_empty());
        // `-u` overrides the image's User, as in Docker.
        let o = run_image(&root, &["-u", "65534"], &image, &["id", "-u"]);
        assert_eq!(stdout(&o), "65534\n", "{}", stderr(&o));
    }
}

#[test]
fn unknown_flags_before_the_image_are_errors_and_the_rest_is_the_command() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = loaded(&["busybox-amd64"]);
    for cmd in [
        vec!["run", "--privileged", AMD64, "true"],
        vec!["create", "--privileged", AMD64, "true"],
        vec!["exec", "--privileged", "somecontainer", "true"],
        vec!["run", "--rm", "--bogus=1", AMD64],
    ] {
        let o = root.run(&cmd);
        assert_eq!(o.status.code(), Some(125), "{cmd:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("unexpected argument"),
            "{cmd:?}: {}",
            stderr(&o)
        );
    }
    // After the image, flags belong to the command.
    let o = run_image(
        &root,
        &[],
        AMD64,
        &["echo", "--help", "-la", "--privileged"],
    );
    assert_eq!(stdout(&o), "--help -la --privileged\n", "{}", stderr(&o));
    let o = run_image(&root, &[], AMD64, &["ls", "-d", "/etc"]);
    assert_eq!(stdout(&o), "/etc\n", "{}", stderr(&o));
    // And for exec, after the container.
    let o = root.run(&["run", "-d", AMD64, "sleep", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = root.run(&["exec", &id, "echo", "-n", "--x"]);
    assert_eq!(stdout(&o), "--x", "{}", stderr(&o));
    root.run(&["rm", "-f", &id]);
}

/// A copy of the busybox root file system with the given symlinks added.
fn rootfs_with_links(dir: &Path, links: &[(&str, &Path)]) -> PathBuf {
    let r = dir.join("rootfs");
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(busybox_rootfs())
        .arg(&r)
        .status()
        .unwrap()
        .success();
    assert!(ok);
    for (name, target) in links {
        std::os::unix::fs::symlink(target, r.join(name)).unwrap();
    }
    r
}

/// Every entry under `dir`, relative, sorted (symlinks not followed).
fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            out.push(e.path().strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                todo.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn image_symlinks_cannot_steer_the_workdir_or_mount_points_to_the_host() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = Root::new();
    let t = tempfile::tempdir().unwrap();
    // The host side an attacker aims at: a directory with a file in it.
    let victim = t.path().join("victim");
    std::fs::create_dir_all(&victim).unwrap();
    std::fs::write(victim.join("keep"), "host\n").unwrap();
    let depth = "../".repeat(12);
    let rel = PathBuf::from(format!("{depth}{}", victim.display()));
    let rootfs = rootfs_with_links(
        t.path(),
        &[
            ("abs", &victim),
            ("rel", &rel),
            ("hostfile", &victim.join("keep")),
        ],
    );
    let src = t.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("marker"), "from the volume\n").unwrap();
    let before = tree(&victim);
    let run = |flags: &[&str], cmd: &[&str]| {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["--rootfs", rootfs.to_str().unwrap()]);
        args.extend_from_slice(cmd);
        root.run(&args)
    };
    let v = victim.display().to_string();
    for link in ["abs", "rel"] {
        // On main, `-w /abs/new` made `victim/new` on the host.
        let o = run(&["-w", &format!("/{link}/new/deeper")], &["pwd"]);
        assert_eq!(stdout(&o), format!("{v}/new/deeper\n"), "{}", stderr(&o));
        let o = run(
            &[
                "-v",
                &format!("{}:/{link}/mnt", src.display()),
                "-v",
                &format!("{}:/{link}/one-file", src.join("marker").display()),
            ],
            &[
                "sh",
                "-c",
                &format!("cat /{link}/mnt/marker /{link}/one-file"),
            ],
        );
        assert_eq!(
            stdout(&o),
            "from the volume\nfrom the volume\n",
            "{}",
            stderr(&o)
        );
        assert_eq!(tree(&victim), before, "the host directory changed");
    }
    // A file bind onto a link to a host file lands on the in-root path, not the host file.
    let o = run(
        &["-v", &format!("{}:/hostfile", src.join("marker").display())],
        &["cat", "/hostfile"],
    );
    assert_eq!(stdout(&o), "from the volume\n", "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(victim.join("keep")).unwrap(),
        "host\n"
    );
    assert_eq!(tree(&victim), before);
}

#[test]
fn bad_workdirs_and_mount_targets_are_one_clear_line() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = loaded(&["busybox-amd64"]);
    let t = tempfile::tempdir().unwrap();
    let file = t.path().join("f");
    std::fs::write(&file, "x").unwrap();
    let dir = t.path().display().to_string();
    let o = run_image(&root, &["-w", "/etc/passwd"], AMD64, &["pwd"]);
    refused(
        &o,
        &["-w /etc/passwd: /etc/passwd is not a directory in the image"],
    );
    let o = run_image(
        &root,
        &["-v", &format!("{dir}:/etc/passwd/y")],
        AMD64,
        &["true"],
    );
    refused(
        &o,
        &[&format!(
            "-v {dir}:/etc/passwd/y: /etc/passwd is not a directory in the image"
        )],
    );
    let o = run_image(&root, &["-v", &format!("{dir}:/bin/sh")], AMD64, &["true"]);
    refused(
        &o,
        &["is not a directory in the image (the source is a directory)"],
    );
    let o = run_image(
        &root,
        &["-v", &format!("{}:/etc", file.display())],
        AMD64,
        &["true"],
    );
    refused(
        &o,
        &["/etc is a directory in the image (the source is a file)"],
    );
    let o = run_image(
        &root,
        &["-v", &format!("{dir}:/proc/sys")],
        AMD64,
        &["true"],
    );
    refused(&o, &["cannot mount over /proc/sys"]);
    let o = run_image(&root, &["-v", "/nonexistent-xrun:/x"], AMD64, &["true"]);
    refused(&o, &["does not exist"]);
    let o = run_image(
        &root,
        &["-v", &format!("{dir}:/data"), "-w", "/data/nope"],
        AMD64,
        &["pwd"],
    );
    refused(
        &o,
        &["-w /data/nope: /data/nope is not a directory in the volume mounted at /data"],
    );
    assert!(!t.path().join("nope").exists());
    // Missing ones are created, as Docker does (in the image's root, never in a volume).
    let o = run_image(&root, &["-w", "/new/dir"], AMD64, &["pwd"]);
    assert_eq!(stdout(&o), "/new/dir\n", "{}", stderr(&o));
    let o = run_image(
        &root,
        &["-v", &format!("{}:/new/file", file.display())],
        AMD64,
        &["cat", "/new/file"],
    );
    assert_eq!(stdout(&o), "x", "{}", stderr(&o));
}

/// The names in `/proc/<pid>/fd` of the shell, listed by a child (`true` keeps busybox from
/// exec'ing `ls` in place of the shell).
const LIST_FDS: &str = "ls /proc/$$/fd; true";

#[test]
fn no_descriptor_leaks_and_proc_fd_workdirs_never_reach_the_host() {
    if !capable() {
        return;
    }
    let _g = exclusive();
    let root = loaded(&["busybox-amd64", "busybox-arm64"]);
    let fds = "0\n1\n2\n";
    let o = run_image(&root, &[], AMD64, &["sh", "-c", LIST_FDS]);
    assert_eq!(stdout(&o), fds, "{}", stderr(&o));
    let o = run_image(&root, &["--init"], AMD64, &["sh", "-c", LIST_FDS]);
    assert_eq!(stdout(&o), fds, "{}", stderr(&o));
    // xrun's init (PID 1) holds nothing that names a file or directory: stdio (/dev/null and
    // the test's pipes) and, for a moment after spawning, its own spawn channel.
    let o = run_image(
        &root,
        &["--init"],
        AMD64,
        &["sh", "-c", "for f in /proc/1/fd/*; do readlink $f; done"],
    );
    let links = stdout(&o);
    assert!(links.lines().count() >= 3, "{links} {}", stderr(&o));
    for l in links.lines() {
        assert!(
            l == "/dev/null"
                || ["pipe:", "socket:", "anon_inode:"]
                    .iter()
                    .any(|p| l.starts_with(p)),
            "init holds {l}"
        );
    }
    // Socket activation variables in xrun's environment do not open a door either.
    let o = root
        .cmd(&[
            "run",
            "--rm",
            "-q",
            AMD64,
            "sh",
            "-c",
            "ls /proc/$$/fd; echo ${LISTEN_FDS:-unset}; true",
        ])
        .env("LISTEN_FDS", "20")
        .env("LISTEN_PID", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(stdout(&o), format!("{fds}unset\n"), "{}", stderr(&o));
    // The emulated route (qemu-user through binfmt_misc), when this host has it.
    if xrun::emulation::route::prepare(&"linux/arm64".parse().unwrap()).is_ok() {
        let o = run_image(&root, &[], ARM64, &["sh", "-c", LIST_FDS]);
        assert_eq!(stdout(&o), fds, "emulated: {}", stderr(&o));
    }
    // Detached (started by the monitor) and exec'd processes.
    let o = root.run(&["run", "-d", AMD64, "sleep", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    let o = root.run(&["exec", &id, "ls", "/proc/1/fd"]);
    assert_eq!(stdout(&o), fds, "{}", stderr(&o));
    let o = root.run(&["exec", &id, "sh", "-c", LIST_FDS]);
    assert_eq!(stdout(&o), fds, "{}", stderr(&o));
    // `/proc/self/fd/N` as the working directory would be one of the runtime's descriptors
    // at chdir time (runc's CVE-2024-21626): refused, for run and exec alike.
    for n in 3..10 {
        let w = format!("/proc/self/fd/{n}");
        let o = run_image(&root, &["-w", &w], AMD64, &["pwd"]);
        refused(&o, &[&format!("-w {w}"), "inside /proc"]);
        let o = root.run(&["exec", "-w", &w, &id, "pwd"]);
        refused(&o, &[&format!("-w {w}"), "inside /proc"]);
        let o = run_image(&root, &["-w", &format!("/dev/fd/{n}")], AMD64, &["pwd"]);
        refused(&o, &["inside /dev"]);
    }
    // A working directory the container itself can reach is fine for exec.
    let o = root.run(&["exec", "-w", "/proc", &id, "pwd"]);
    assert_eq!(stdout(&o), "/proc\n", "{}", stderr(&o));
    let o = root.run(&["exec", "-w", "/etc/passwd", &id, "pwd"]);
    refused(&o, &["/etc/passwd is not a directory in the image"]);
    root.run(&["rm", "-f", &id]);
}
