//! Shared fixtures for the runtime tests (`tests/run_*.rs` include this file): a busybox
//! root file system made from the cached Debian package, and a per-test xrun root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The xrun binary under test.
pub const XRUN: &str = env!("CARGO_BIN_EXE_xrun");

/// Whether the tests can run here (root, namespaces); prints why not.
pub fn capable() -> bool {
    if !nix_is_root() {
        eprintln!("skipping: needs root for namespaces, mounts and cgroups");
        return false;
    }
    true
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// A busybox root file system (built once per test run), with /etc/passwd and /etc/group.
pub fn busybox_rootfs() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join("busybox-rootfs");
        if dir.join("etc/group").exists() {
            return dir;
        }
        let tmp = base.join(format!("busybox-rootfs.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        let deb = std::fs::read_dir("/var/cache/xrun-ci/debs")
            .expect("/var/cache/xrun-ci/debs (ci/fetch-debs)")
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with("busybox-static_") && n.ends_with("_amd64.deb")
            })
            .expect("busybox-static amd64 .deb");
        assert!(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp).status().unwrap().success());
        for d in ["sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "home/web"] {
            std::fs::create_dir_all(tmp.join(d)).unwrap();
        }
        let list = Command::new(tmp.join("bin/busybox")).arg("--list-full").output().unwrap();
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            let p = tmp.join(applet);
            if !p.exists() {
                let _ = std::os::unix::fs::symlink("/bin/busybox", p);
            }
        }
        std::fs::write(
            tmp.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000:web:/home/web:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(tmp.join("etc/group"), "root:x:0:\nweb:x:1000:\nstaff:x:50:web\nnogroup:x:65534:\n").unwrap();
        std::fs::write(tmp.join("etc/notexec"), "data\n").unwrap();
        if std::fs::rename(&tmp, &dir).is_err() {
            // Another test process made it first.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        dir
    })
    .clone()
}

/// A private xrun root for one test.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Default for Root {
    fn default() -> Self {
        Root::new()
    }
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::Builder::new()
                .prefix("xrun-rt-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `xrun ARGS` with this root.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(XRUN);
        c.env("XRUN_ROOT", self.path()).args(args);
        c
    }

    /// Runs `xrun ARGS` with stdin closed, collecting output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// `xrun run --rm --rootfs BUSYBOX ARGS…`.
    pub fn bb(&self, flags: &[&str], cmd: &[&str]) -> Output {
        let rootfs = busybox_rootfs();
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["--rootfs", rootfs.to_str().unwrap()]);
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    /// The containers' directories in the store and their bundles on tmpfs (by id).
    pub fn container_dirs(&self) -> Vec<String> {
        let mut ids: Vec<String> = [self.path().join("containers"), self.run_dir()]
            .iter()
            .flat_map(|d| {
                std::fs::read_dir(d)
                    .map(|rd| {
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().into_owned())
                            .filter(|n| n.len() == 64)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default()
            })
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Where this root's bundles live (`/run/xrun/roots/<hash>`, or the store).
    pub fn run_dir(&self) -> PathBuf {
        xrun::runtime::Containers::open(self.path())
            .unwrap()
            .run_dir()
            .to_path_buf()
    }

    /// Mount points of this root: in the store and where its bundles are.
    pub fn mounts(&self) -> Vec<String> {
        let mut m = mounts_under(self.path());
        m.extend(mounts_under(&self.run_dir()));
        m
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // Kill whatever a failed test left running, then unmount.
        for id in self.container_dirs() {
            let _ = Command::new(XRUN)
                .env("XRUN_ROOT", self.path())
                .args(["rm", "-f", &id])
                .output();
        }
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Mount points under `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&d))
        .collect()
}

/// Every cgroup directory of container `id`.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    xrun::runtime::cgroups::existing_dirs(id)
}

/// All `xrun/<id>` cgroup dirs currently present (ids of any container).
pub fn all_xrun_cgroups() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        if let Ok(rd) = std::fs::read_dir(e.path().join("xrun")) {
            for c in rd.flatten() {
                if c.path().is_dir() {
                    out.push(c.path().display().to_string());
                }
            }
        }
    }
    out.sort();
    out
}

/// Waits until `f` is true (polling), up to `secs`.
pub fn wait_for(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    f()
}

/// Tests that compare global state (mount table, cgroup tree) take this exclusively; every
/// other test that runs containers takes it shared.
pub static GLOBAL: std::sync::RwLock<()> = std::sync::RwLock::new(());

pub fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    GLOBAL.read().unwrap_or_else(|p| p.into_inner())
}

pub fn exclusive() -> std::sync::RwLockWriteGuard<'static, ()> {
    GLOBAL.write().unwrap_or_else(|p| p.into_inner())
}
