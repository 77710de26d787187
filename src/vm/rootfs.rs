//! The rootfs image: an image's layers flattened (whiteouts applied) into one read-only erofs
//! file system, built once per manifest digest and cached (temp name + rename).
//!
//! Layer directories may carry whiteouts in either form: tar style (`.wh.NAME`,
//! `.wh..wh..opq`) or overlayfs style (a 0/0 character device, `trusted.overlay.opaque` or
//! `user.overlay.opaque` = `y` on a directory).
//!
//! Layer content is untrusted (it comes from the image); what keeps the flattening inside
//! the layer directories and the temporary root:
//! - the layers are walked with `symlink_metadata` and `read_dir` on entries known to be real
//!   directories: a symlink in a layer is copied as a symlink (its target as text), never
//!   followed, so no host file's content can be read into the image;
//! - in the flattened root, every directory a path is built on was made (or checked with
//!   `symlink_metadata`) by this walk, depth first: a later layer that puts a symlink where a
//!   directory was has it removed and replaced by a real directory before anything is written
//!   below it; whiteout names that are not a plain name (`.wh.`, `.wh..`, `.wh...`) are
//!   refused;
//! - hard links are kept within one layer only (a path remembered from an earlier layer could
//!   have had a parent replaced by a symlink since);
//! - `--user` is looked up in `/etc/passwd` and `/etc/group` read inside a layer directory
//!   (links followed in the layer's scope, [`crate::runtime::inroot`]), never through a link
//!   to the host's files; a uid or gid of 4294967295 (`(uid_t)-1`, "unchanged") is refused.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::VmError;
use crate::digest::Digest;

const WH: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTRS: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// Returns the cached erofs image for `key` (the image's manifest digest), building it from
/// `layer_dirs` (lowest first) when absent. The bool says whether it was built now.
///
/// The image is built in a temporary directory inside `cache_dir` and renamed into place
/// when complete: on any error (a full disk is [`VmError::NoSpace`]) nothing is left behind.
pub fn image_for(
    cache_dir: &Path,
    key: &Digest,
    layer_dirs: &[PathBuf],
) -> Result<(PathBuf, bool), VmError> {
    let dest = cache_dir.join(format!("{}.erofs", key.hex()));
    if dest.is_file() {
        return Ok((dest, false));
    }
    match build(cache_dir, &dest, layer_dirs) {
        Ok(()) => Ok((dest, true)),
        Err(e) if is_no_space(&e) => Err(VmError::NoSpace {
            dir: cache_dir.to_path_buf(),
            files_mib: layer_dirs
                .iter()
                .map(|d| files_size(d, 0))
                .sum::<u64>()
                .div_ceil(1 << 20),
        }),
        Err(e) => Err(e),
    }
}

/// Flattens and builds into a temporary directory (removed when dropped, also on errors),
/// then renames the image to `dest`.
fn build(cache_dir: &Path, dest: &Path, layer_dirs: &[PathBuf]) -> Result<(), VmError> {
    fs::create_dir_all(cache_dir).map_err(VmError::io(cache_dir.display().to_string()))?;
    let flat = tempfile::Builder::new()
        .prefix(".flat-")
        .tempdir_in(cache_dir)
        .map_err(VmError::io(cache_dir.display().to_string()))?;
    let root = flat.path().join("root");
    fs::create_dir(&root).map_err(VmError::io(root.display().to_string()))?;
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
        .map_err(VmError::io(root.display().to_string()))?;
    flatten(layer_dirs, &root)?;
    let tmp_img = flat.path().join("image.erofs");
    mkfs_erofs(&root, &tmp_img)?;
    fs::rename(&tmp_img, dest).map_err(VmError::io(dest.display().to_string()))?;
    Ok(())
}

/// Whether `e` says the file system is full (or over quota).
fn is_no_space(e: &VmError) -> bool {
    match e {
        VmError::Io { source, .. } => {
            matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            )
        }
        VmError::Tool { message, .. } => {
            let m = message.to_ascii_lowercase();
            m.contains("no space left") || m.contains("enospc") || m.contains("quota exceeded")
        }
        _ => false,
    }
}

/// The bytes of the regular files under `dir` (symlinks not followed).
fn files_size(dir: &Path, depth: usize) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() && depth < 4096 => files_size(&e.path(), depth + 1),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Runs `mkfs.erofs` (uncompressed: reads are cheapest under TCG).
pub fn mkfs_erofs(dir: &Path, image: &Path) -> Result<(), VmError> {
    let out = Command::new("mkfs.erofs")
        .arg("--quiet")
        .arg(image)
        .arg(dir)
        .output()
        .map_err(|e| VmError::Tool {
            tool: "mkfs.erofs".into(),
            message: format!("{e} (install erofs-utils)"),
        })?;
    if !out.status.success() {
        return Err(VmError::Tool {
            tool: "mkfs.erofs".into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Applies `layer_dirs` in order into `root` (an empty directory), honoring whiteouts.
/// Regular files are hard-linked from the layers when possible (same file system), else copied.
pub fn flatten(layer_dirs: &[PathBuf], root: &Path) -> Result<(), VmError> {
    for layer in layer_dirs {
        let mut links = HashMap::new();
        let mut ctx = Ctx {
            layer,
            links: &mut links,
        };
        ctx.apply_dir(layer, root, 0)?;
    }
    Ok(())
}

struct Ctx<'a> {
    layer: &'a Path,
    /// (dev, ino) of a source file → its first copy, to keep hard links within a layer.
    links: &'a mut HashMap<(u64, u64), PathBuf>,
}

impl Ctx<'_> {
    fn io(&self, p: &Path) -> impl FnOnce(std::io::Error) -> VmError {
        VmError::io(p.display().to_string())
    }

    fn apply_dir(&mut self, src: &Path, dst: &Path, depth: usize) -> Result<(), VmError> {
        if depth > 4096 {
            return Err(VmError::PathEscape {
                layer: self.layer.to_path_buf(),
                entry: src.display().to_string(),
            });
        }
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(self.io(src))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(self.io(src))?;
        names.sort();
        if names.iter().any(|n| n == OPAQUE) {
            clear_dir(dst)?;
        }
        for name in names {
            let s = name.to_string_lossy();
            if s == OPAQUE {
                continue;
            }
            if name == OsStr::new(".") || name == OsStr::new("..") || s.contains('/') {
                return Err(VmError::PathEscape {
                    layer: self.layer.to_path_buf(),
                    entry: s.into_owned(),
                });
            }
            let sp = src.join(&name);
            let dp = dst.join(&name);
            if let Some(hidden) = s.strip_prefix(WH) {
                if matches!(hidden, "" | "." | "..") {
                    return Err(VmError::PathEscape {
                        layer: self.layer.to_path_buf(),
                        entry: s.into_owned(),
                    });
                }
                remove_any(&dst.join(hidden))?;
                continue;
            }
            let md = fs::symlink_metadata(&sp).map_err(self.io(&sp))?;
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            if ft.is_char_device() && md.rdev() == 0 {
                remove_any(&dp)?;
                continue;
            }
            let existing = fs::symlink_metadata(&dp).ok();
            if ft.is_dir() {
                match existing {
                    Some(e) if e.is_dir() => {
                        if is_opaque(&sp) {
                            clear_dir(&dp)?;
                        }
                    }
                    Some(_) => {
                        remove_any(&dp)?;
                        fs::create_dir(&dp).map_err(self.io(&dp))?;
                    }
                    None => fs::create_dir(&dp).map_err(self.io(&dp))?,
                }
                self.apply_dir(&sp, &dp, depth + 1)?;
                copy_meta(&sp, &dp, &md, true)?;
                continue;
            }
            if existing.is_some() {
                remove_any(&dp)?;
            }
            if ft.is_symlink() {
                let target = fs::read_link(&sp).map_err(self.io(&sp))?;
                std::os::unix::fs::symlink(&target, &dp).map_err(self.io(&dp))?;
                copy_meta(&sp, &dp, &md, false)?;
            } else if ft.is_file() {
                let key = (md.dev(), md.ino());
                if md.nlink() > 1
                    && let Some(first) = self.links.get(&key)
                    && fs::hard_link(first, &dp).is_ok()
                {
                    continue;
                }
                if fs::hard_link(&sp, &dp).is_err() {
                    fs::copy(&sp, &dp).map_err(self.io(&dp))?;
                    copy_meta(&sp, &dp, &md, true)?;
                }
                if md.nlink() > 1 {
                    self.links.insert(key, dp.clone());
                }
            } else {
                // fifo, socket, device node
                let mode = nix::sys::stat::Mode::from_bits_truncate(md.mode());
                let kind = nix::sys::stat::SFlag::from_bits_truncate(md.mode() & libc::S_IFMT);
                nix::sys::stat::mknod(&dp, kind, mode, md.rdev())
                    .map_err(|e| self.io(&dp)(e.into()))?;
                copy_meta(&sp, &dp, &md, true)?;
            }
        }
        Ok(())
    }
}

fn is_opaque(dir: &Path) -> bool {
    OPAQUE_XATTRS
        .iter()
        .any(|k| matches!(xattr::get(dir, k), Ok(Some(v)) if v == b"y"))
}

fn remove_any(p: &Path) -> Result<(), VmError> {
    match fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p).map_err(VmError::io(p.display().to_string())),
        Ok(_) => fs::remove_file(p).map_err(VmError::io(p.display().to_string())),
    }
}

fn clear_dir(p: &Path) -> Result<(), VmError> {
    let Ok(rd) = fs::read_dir(p) else {
        return Ok(());
    };
    for e in rd {
        let e = e.map_err(VmError::io(p.display().to_string()))?;
        remove_any(&e.path())?;
    }
    Ok(())
}

/// Owner, mode, times and xattrs (overlay's own excepted) from `src` onto `dst`.
fn copy_meta(src: &Path, dst: &Path, md: &fs::Metadata, follow: bool) -> Result<(), VmError> {
    let io = |e: std::io::Error| VmError::io(dst.display().to_string())(e);
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid())).map_err(io)?;
    if follow {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777)).map_err(io)?;
        if let Ok(names) = xattr::list(src) {
            for n in names {
                let s = n.to_string_lossy();
                if s.starts_with("trusted.overlay.") || s.starts_with("user.overlay.") {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(src, &n) {
                    let _ = xattr::set(dst, &n, &v);
                }
            }
        }
    }
    let ts = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::utimensat(
        None,
        dst,
        &ts(md.atime(), md.atime_nsec()),
        &ts(md.mtime(), md.mtime_nsec()),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io(e.into()))?;
    Ok(())
}

/// Resolves a Docker `--user` (`name`, `uid`, `name:group`, `uid:gid`) against the image's
/// `/etc/passwd` and `/etc/group` (from the topmost layer that has them) to numeric `uid:gid`.
pub fn resolve_user(layer_dirs: &[PathBuf], user: &str) -> Result<String, VmError> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    // Inside each layer only: a layer's `etc/passwd -> /etc/shadow` must not read the host's.
    let find = |rel: &str| {
        layer_dirs
            .iter()
            .rev()
            .find_map(|d| {
                crate::runtime::inroot::Root::open(d)
                    .ok()?
                    .read_file(rel, crate::runtime::user::MAX_TABLE_BYTES)
            })
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let passwd = find("/etc/passwd");
    let lookup = |table: &str, key: &str, by_id: bool| -> Option<(u32, Option<u32>)> {
        table.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            let hit = if by_id { f[2] == key } else { f[0] == key };
            hit.then(|| (f[2].parse().ok(), f.get(3).and_then(|g| g.parse().ok())))
                .and_then(|(id, gid)| id.map(|id| (id, gid)))
        })
    };
    let (uid, pgid) = if let Ok(n) = u.parse::<u32>() {
        (n, lookup(&passwd, u, true).and_then(|(_, g)| g))
    } else {
        match lookup(&passwd, u, false) {
            Some((id, g)) => (id, g),
            None => return Err(VmError::UnknownUser(user.to_string())),
        }
    };
    let gid = match g {
        None => pgid.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(&find("/etc/group"), g, false)
                .map(|(id, _)| id)
                .ok_or_else(|| VmError::UnknownUser(user.to_string()))?,
        },
    };
    for (what, id) in [("uid", uid), ("gid", gid)] {
        if id == crate::runtime::user::RESERVED_ID {
            return Err(VmError::BadSpec(format!(
                "user {user:?}: {what} {id} cannot be used (it means \"unchanged\" to the kernel)"
            )));
        }
    }
    Ok(format!("{uid}:{gid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_and_opaque_dirs_apply() {
        let t = tempfile::tempdir().unwrap();
        let (l1, l2, root) = (t.path().join("l1"), t.path().join("l2"), t.path().join("r"));
        for d in [&l1, &l2, &root] {
            fs::create_dir_all(d).unwrap();
        }
        fs::create_dir_all(l1.join("etc/sub")).unwrap();
        fs::write(l1.join("etc/a"), "1").unwrap();
        fs::write(l1.join("etc/b"), "1").unwrap();
        fs::write(l1.join("etc/sub/x"), "1").unwrap();
        fs::create_dir_all(l1.join("opq")).unwrap();
        fs::write(l1.join("opq/old"), "1").unwrap();
        fs::create_dir_all(l2.join("etc")).unwrap();
        fs::write(l2.join("etc/.wh.a"), "").unwrap();
        fs::write(l2.join("etc/b"), "2").unwrap();
        fs::write(l2.join("etc/sub"), "now a file").unwrap();
        fs::create_dir_all(l2.join("opq")).unwrap();
        fs::write(l2.join("opq/.wh..wh..opq"), "").unwrap();
        fs::write(l2.join("opq/new"), "2").unwrap();
        flatten(&[l1.clone(), l2.clone()], &root).unwrap();
        assert!(!root.join("etc/a").exists());
        assert_eq!(fs::read_to_string(root.join("etc/b")).unwrap(), "2");
        assert_eq!(
            fs::read_to_string(root.join("etc/sub")).unwrap(),
            "now a file"
        );
        assert!(!root.join("opq/old").exists());
        assert!(root.join("opq/new").exists());
        assert!(!root.join("opq/.wh..wh..opq").exists());
        // The lower layer is untouched.
        assert!(l1.join("etc/a").exists());
    }

    #[test]
    fn a_full_disk_is_recognized_from_io_and_mkfs_errors() {
        let io = |errno| VmError::io("x")(std::io::Error::from_raw_os_error(errno));
        assert!(is_no_space(&io(libc::ENOSPC)));
        assert!(is_no_space(&io(libc::EDQUOT)));
        assert!(!is_no_space(&io(libc::EACCES)));
        let tool = |m: &str| VmError::Tool {
            tool: "mkfs.erofs".into(),
            message: m.into(),
        };
        assert!(is_no_space(&tool(
            "<E> erofs: \tCould not format the device : [Error 28] No space left on device"
        )));
        assert!(!is_no_space(&tool("<E> erofs: invalid option")));
    }

    #[test]
    fn users_resolve_from_the_image() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nnobody:x:65534:65533::/:/bin/false\n",
        )
        .unwrap();
        fs::write(t.path().join("etc/group"), "staff:x:50:\n").unwrap();
        let l = [t.path().to_path_buf()];
        assert_eq!(resolve_user(&l, "nobody").unwrap(), "65534:65533");
        assert_eq!(resolve_user(&l, "nobody:staff").unwrap(), "65534:50");
        assert_eq!(resolve_user(&l, "1000").unwrap(), "1000:0");
        assert_eq!(resolve_user(&l, "1000:7").unwrap(), "1000:7");
        assert!(resolve_user(&l, "ghost").is_err());
    }

    /// A sandbox directory holding a host-side sentinel (a secret file and an empty directory)
    /// next to the layers, as an attacker's image would point at them.
    struct Sandbox {
        t: tempfile::TempDir,
        secret: PathBuf,
        hostdir: PathBuf,
    }

    const SECRET: &str = "host-secret-4242:x:4242:4242::/:/bin/sh";

    fn sandbox() -> Sandbox {
        let t = tempfile::tempdir().unwrap();
        let secret = t.path().join("host/secret");
        let hostdir = t.path().join("host/dir");
        fs::create_dir_all(&hostdir).unwrap();
        fs::write(&secret, format!("{SECRET}\n")).unwrap();
        Sandbox { t, secret, hostdir }
    }

    fn host_unchanged(s: &Sandbox) {
        assert_eq!(
            fs::read_to_string(&s.secret).unwrap(),
            format!("{SECRET}\n")
        );
        assert_eq!(fs::read_dir(&s.hostdir).unwrap().count(), 0);
        assert_eq!(fs::read_dir(s.t.path().join("host")).unwrap().count(), 2);
    }

    /// Every regular file's content under `dir` (symlinks not followed).
    fn contents(dir: &Path, out: &mut Vec<u8>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let t = e.file_type().unwrap();
            if t.is_dir() {
                contents(&e.path(), out);
            } else if t.is_file() {
                out.extend(fs::read(e.path()).unwrap());
            }
        }
    }

    #[test]
    fn layer_symlinks_never_reach_host_files() {
        let s = sandbox();
        let base = s.t.path();
        let (l1, l2, root) = (base.join("l1"), base.join("l2"), base.join("r"));
        for d in [&l1, &l2, &root] {
            fs::create_dir_all(d).unwrap();
        }
        // Layer 1: links to the host's secret and directory, by absolute path and by `..`.
        fs::create_dir_all(l1.join("etc")).unwrap();
        std::os::unix::fs::symlink(&s.secret, l1.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../host/secret", l1.join("etc/group")).unwrap();
        std::os::unix::fs::symlink(&s.hostdir, l1.join("data")).unwrap();
        std::os::unix::fs::symlink("../host/dir", l1.join("rel")).unwrap();
        std::os::unix::fs::symlink("../host", l1.join("up")).unwrap();
        std::os::unix::fs::symlink(base.join("host"), l1.join("abs")).unwrap();
        // Layer 2 writes below the links as if they were directories, and whiteouts through them.
        for d in ["data", "rel", "up", "abs"] {
            fs::create_dir_all(l2.join(d)).unwrap();
            fs::write(l2.join(d).join("planted"), "x").unwrap();
            fs::write(l2.join(d).join(".wh.secret"), "").unwrap();
        }
        flatten(&[l1.clone(), l2.clone()], &root).unwrap();
        host_unchanged(&s);
        assert!(root.join("data").is_dir() && !root.join("data").is_symlink());
        assert!(root.join("etc/passwd").is_symlink());
        let mut all = Vec::new();
        contents(&root, &mut all);
        assert!(!String::from_utf8_lossy(&all).contains(SECRET));
        // The user lookup does not read the host's file through the layer's links.
        assert!(resolve_user(std::slice::from_ref(&l1), "host-secret-4242").is_err());
        assert!(resolve_user(std::slice::from_ref(&l1), "root:host-secret-4242").is_err());
        // The built image holds none of the secret either.
        let cache = base.join("cache");
        let key: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        let (img, built) = image_for(&cache, &key, &[l1, l2]).unwrap();
        assert!(built);
        let bytes = fs::read(img).unwrap();
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
        host_unchanged(&s);
    }

    #[test]
    fn odd_whiteout_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        for name in [".wh.", ".wh..", ".wh..."] {
            let (l, root) = (
                t.path().join(format!("l{name}")),
                t.path().join(format!("r{name}")),
            );
            fs::create_dir_all(l.join("d")).unwrap();
            fs::create_dir_all(&root).unwrap();
            fs::write(l.join("d").join(name), "").unwrap();
            assert!(
                matches!(flatten(&[l], &root), Err(VmError::PathEscape { .. })),
                "{name}"
            );
        }
    }

    #[test]
    fn the_reserved_id_is_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("etc")).unwrap();
        fs::write(t.path().join("etc/passwd"), "m:x:4294967295:0::/:/bin/sh\n").unwrap();
        let l = [t.path().to_path_buf()];
        for u in ["4294967295", "0:4294967295", "m"] {
            assert!(
                matches!(resolve_user(&l, u), Err(VmError::BadSpec(_))),
                "{u}"
            );
        }
        assert_eq!(resolve_user(&l, "4294967294:0").unwrap(), "4294967294:0");
    }
}
