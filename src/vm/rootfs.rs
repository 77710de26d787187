//! The rootfs image: an image's layers flattened (whiteouts applied) into one read-only erofs
//! file system, built once per manifest digest and cached (temp name + rename).
//!
//! Layer directories may carry whiteouts in either form: tar style (`.wh.NAME`,
//! `.wh..wh..opq`) or overlayfs style (a 0/0 character device, `trusted.overlay.opaque` or
//! `user.overlay.opaque` = `y` on a directory).

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
    let mut links = HashMap::new();
    for layer in layer_dirs {
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
    let find = |rel: &str| {
        layer_dirs
            .iter()
            .rev()
            .map(|d| d.join(rel))
            .find(|p| p.is_file())
            .and_then(|p| fs::read_to_string(p).ok())
            .unwrap_or_default()
    };
    let passwd = find("etc/passwd");
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
            Err(_) => lookup(&find("etc/group"), g, false)
                .map(|(id, _)| id)
                .ok_or_else(|| VmError::UnknownUser(user.to_string()))?,
        },
    };
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
}
