//! Extracting one layer tar into a directory, with OCI whiteouts.
//!
//! Two modes:
//! - [`Mode::Overlay`] (snapshots): the layer alone goes into an empty directory that later
//!   serves as an overlayfs lowerdir, so whiteouts are converted to what overlayfs reads:
//!   - `.wh.NAME` → a character device 0/0 named `NAME` (overlayfs' native whiteout). `mknod`
//!     of a 0/0 device is allowed without `CAP_MKNOD` since Linux 5.8; if it is still refused,
//!     an empty regular file `NAME` with the xattr `user.overlay.whiteout` (and
//!     `user.overlay.whiteouts` on its directory) is written instead: overlayfs ≥ 6.7 reads
//!     that form when mounted with `userxattr`.
//!   - `.wh..wh..opq` → the xattr `trusted.overlay.opaque=y` on its directory (when not
//!     permitted, i.e. not root: `user.overlay.opaque=y`, for `userxattr` mounts).
//!   - Other `.wh..wh.*` entries (aufs bookkeeping) are skipped.
//! - [`Mode::Apply`] (flatten): layers are applied in order onto one tree; `.wh.NAME` deletes
//!   `NAME`, `.wh..wh..opq` deletes what lower layers put in the directory (entries of the
//!   same layer stay, whatever their order in the tar).
//!
//! Entries keep mode (with setuid/setgid/sticky), owner (when root), symlinks (targets kept
//! verbatim), hard links (only to entries already in this tree), xattrs (`SCHILY.xattr.*`;
//! `trusted.overlay.*` and `user.overlay.*` from the tar are dropped so a layer cannot forge
//! overlay metadata), device nodes (when root; skipped with a warning otherwise), fifos and
//! mtimes (directories' last, deepest first). Paths go through [`super::safepath`]: absolute
//! paths, `..`, writes through symlinks leading out and hard links to outside are refused.
//! The caller owns cleanup: on error the target directory is partial and must be removed.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode as NixMode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;

use super::StoreError;
use super::fsutil::remove_any;
use super::safepath::{ResolveError, clean_components, resolve_dir};
use crate::digest::Digest;

/// What to do with whiteouts (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keep them as overlayfs whiteouts (per-layer snapshots).
    Overlay,
    /// Apply them as deletions (one merged tree).
    Apply,
}

const WH_PREFIX: &str = ".wh.";
const WH_OPAQUE: &str = ".wh..wh..opq";
const WH_META: &str = ".wh..wh.";

/// Extracts the tar stream `reader` into `root` (an existing directory).
pub fn extract<R: Read>(
    reader: R,
    root: &Path,
    layer: &Digest,
    mode: Mode,
) -> Result<R, StoreError> {
    let mut ex = Extractor {
        root: root.to_path_buf(),
        layer: layer.clone(),
        mode,
        is_root: nix::unistd::geteuid().is_root(),
        dirs: Vec::new(),
        written: HashSet::new(),
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| ex.bad(format!("reading tar: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| ex.bad(format!("reading tar: {e}")))?;
        ex.entry(&mut entry)?;
    }
    ex.finish_dirs()?;
    Ok(archive.into_inner())
}

struct DirMeta {
    path: PathBuf,
    mode: u32,
    mtime: Option<(i64, i64)>,
}

struct Extractor {
    root: PathBuf,
    layer: Digest,
    mode: Mode,
    is_root: bool,
    dirs: Vec<DirMeta>,
    /// Apply mode: paths this layer wrote (an opaque marker keeps them).
    written: HashSet<PathBuf>,
}

/// The header fields, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Extractor {
    fn bad(&self, message: String) -> StoreError {
        StoreError::BadLayer {
            layer: self.layer.clone(),
            message,
        }
    }

    fn escape(&self, entry: &[u8], why: String) -> StoreError {
        StoreError::PathEscape {
            layer: self.layer.clone(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            why,
        }
    }

    fn resolve_err(&self, entry: &[u8], e: ResolveError) -> StoreError {
        match e {
            ResolveError::Escape(why) => self.escape(entry, why),
            ResolveError::NotDir(p) => self.bad(format!(
                "entry {:?}: {} is not a directory",
                String::from_utf8_lossy(entry),
                p.display()
            )),
            ResolveError::NotFound(p) => self.bad(format!(
                "entry {:?}: {} does not exist",
                String::from_utf8_lossy(entry),
                p.display()
            )),
            ResolveError::Io(path, source) => StoreError::Io { path, source },
        }
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<R>) -> Result<Meta, StoreError> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode().unwrap_or(0o644),
            uid: h.uid().unwrap_or(0),
            gid: h.gid().unwrap_or(0),
            mtime: h.mtime().ok().map(|s| (s as i64, 0)),
            xattrs: Vec::new(),
        };
        let pax = entry
            .pax_extensions()
            .map_err(|e| self.bad(format!("reading PAX header: {e}")))?;
        if let Some(pax) = pax {
            for ext in pax {
                let ext = ext.map_err(|e| self.bad(format!("reading PAX header: {e}")))?;
                let key = ext.key_bytes();
                let value = ext.value_bytes();
                let text = std::str::from_utf8(value).unwrap_or("");
                match key {
                    b"uid" => meta.uid = text.parse().unwrap_or(meta.uid),
                    b"gid" => meta.gid = text.parse().unwrap_or(meta.gid),
                    b"mtime" => meta.mtime = parse_pax_time(text).or(meta.mtime),
                    _ => {
                        if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                            let forged = name.starts_with(b"trusted.overlay.")
                                || name.starts_with(b"user.overlay.");
                            if !forged {
                                meta.xattrs
                                    .push((OsStr::from_bytes(name).to_os_string(), value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), StoreError> {
        let raw = entry.path_bytes().into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let comps = clean_components(&raw).map_err(|e| self.resolve_err(&raw, e))?;
        let meta = self.meta(entry)?;
        let Some((name, parents)) = comps.split_last() else {
            // The root itself (`./`): only its metadata.
            if kind.is_dir() {
                let root = self.root.clone();
                self.chown(&root, &meta);
                self.dirs.push(DirMeta {
                    path: root,
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();
        if name_bytes.starts_with(WH_PREFIX.as_bytes()) {
            return self.whiteout(&raw, parents, name_bytes);
        }
        let parent =
            resolve_dir(&self.root, parents, true).map_err(|e| self.resolve_err(&raw, e))?;
        let path = parent.join(name);
        match kind {
            tar::EntryType::Directory => {
                let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if !is_dir {
                    remove_any(&path).map_err(Self::io(&path))?;
                    fs::create_dir(&path).map_err(Self::io(&path))?;
                }
                self.chown(&path, &meta);
                self.set_xattrs(&path, &meta);
                self.dirs.push(DirMeta {
                    path: path.clone(),
                    mode: meta.mode,
                    mtime: meta.mtime,
                });
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_any(&path).map_err(Self::io(&path))?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(Self::io(&path))?;
                io::copy(entry, &mut f).map_err(|e| {
                    self.bad(format!("reading {:?}: {e}", String::from_utf8_lossy(&raw)))
                })?;
                drop(f);
                self.finish_node(&path, &meta, true);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        self.bad(format!(
                            "symlink {:?} without target",
                            String::from_utf8_lossy(&raw)
                        ))
                    })?
                    .into_owned();
                remove_any(&path).map_err(Self::io(&path))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(Self::io(&path))?;
                self.finish_node(&path, &meta, false);
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        self.bad(format!(
                            "hard link {:?} without target",
                            String::from_utf8_lossy(&raw)
                        ))
                    })?
                    .into_owned();
                let tcomps = clean_components(&target_raw).map_err(|e| match e {
                    ResolveError::Escape(why) => {
                        self.escape(&raw, format!("hard link target {}", why))
                    }
                    other => self.resolve_err(&raw, other),
                })?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(self.escape(&raw, "hard link to the root".into()));
                };
                let tdir = resolve_dir(&self.root, tparents, false).map_err(|e| match e {
                    ResolveError::Escape(why) => {
                        self.escape(&raw, format!("hard link target: {why}"))
                    }
                    other => self.resolve_err(&raw, other),
                })?;
                let target = tdir.join(tname);
                if target == path {
                    return Ok(());
                }
                if fs::symlink_metadata(&target).is_err() {
                    return Err(self.bad(format!(
                        "hard link {:?} to {:?}, which is not in this layer",
                        String::from_utf8_lossy(&raw),
                        String::from_utf8_lossy(&target_raw)
                    )));
                }
                remove_any(&path).map_err(Self::io(&path))?;
                fs::hard_link(&target, &path).map_err(Self::io(&path))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                remove_any(&path).map_err(Self::io(&path))?;
                let (sflag, dev) = match kind {
                    tar::EntryType::Char => (SFlag::S_IFCHR, self.dev(entry)),
                    tar::EntryType::Block => (SFlag::S_IFBLK, self.dev(entry)),
                    _ => (SFlag::S_IFIFO, 0),
                };
                let perm = NixMode::from_bits_truncate(meta.mode & 0o777);
                match mknod(&path, sflag, perm, dev) {
                    Ok(()) => self.finish_node(&path, &meta, true),
                    Err(nix::errno::Errno::EPERM) if !self.is_root => {
                        tracing::warn!(
                            "layer {}: skipping device node {:?} (needs root)",
                            self.layer,
                            String::from_utf8_lossy(&raw)
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(Self::io(&path)(e.into())),
                }
            }
            other => {
                tracing::warn!(
                    "layer {}: skipping {:?} of unsupported type {other:?}",
                    self.layer,
                    String::from_utf8_lossy(&raw)
                );
                return Ok(());
            }
        }
        if self.mode == Mode::Apply {
            let mut p = path.as_path();
            while p.starts_with(&self.root) && self.written.insert(p.to_path_buf()) {
                match p.parent() {
                    Some(parent) => p = parent,
                    None => break,
                }
            }
        }
        Ok(())
    }

    fn dev<R: Read>(&self, entry: &tar::Entry<R>) -> u64 {
        let h = entry.header();
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        makedev(major.into(), minor.into())
    }

    fn whiteout(
        &mut self,
        raw: &[u8],
        parents: &[OsString],
        name: &[u8],
    ) -> Result<(), StoreError> {
        if name == WH_OPAQUE.as_bytes() {
            let dir =
                resolve_dir(&self.root, parents, true).map_err(|e| self.resolve_err(raw, e))?;
            return match self.mode {
                Mode::Overlay => set_opaque(&dir),
                Mode::Apply => self.clear_lower(&dir),
            };
        }
        if name.starts_with(WH_META.as_bytes()) {
            return Ok(());
        }
        let hidden = &name[WH_PREFIX.len()..];
        if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
            return Err(self.escape(raw, "whiteout of an invalid name".into()));
        }
        let hidden = OsStr::from_bytes(hidden);
        match self.mode {
            Mode::Overlay => {
                let dir =
                    resolve_dir(&self.root, parents, true).map_err(|e| self.resolve_err(raw, e))?;
                make_whiteout(&dir.join(hidden))
            }
            Mode::Apply => match resolve_dir(&self.root, parents, false) {
                Ok(dir) => {
                    let p = dir.join(hidden);
                    remove_any(&p).map_err(Self::io(&p))
                }
                Err(ResolveError::NotFound(_)) | Err(ResolveError::NotDir(_)) => Ok(()),
                Err(e) => Err(self.resolve_err(raw, e)),
            },
        }
    }

    /// Apply mode, opaque directory: removes the children lower layers put there.
    fn clear_lower(&self, dir: &Path) -> Result<(), StoreError> {
        for e in fs::read_dir(dir).map_err(Self::io(dir))? {
            let p = e.map_err(Self::io(dir))?.path();
            if !self.written.contains(&p) {
                remove_any(&p).map_err(Self::io(&p))?;
            }
        }
        Ok(())
    }

    fn chown(&self, path: &Path, meta: &Meta) {
        if !self.is_root {
            return;
        }
        let (Ok(uid), Ok(gid)) = (u32::try_from(meta.uid), u32::try_from(meta.gid)) else {
            tracing::warn!(
                "{}: owner {}:{} out of range",
                path.display(),
                meta.uid,
                meta.gid
            );
            return;
        };
        if let Err(e) = std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
            tracing::warn!("{}: chown {uid}:{gid}: {e}", path.display());
        }
    }

    fn set_xattrs(&self, path: &Path, meta: &Meta) {
        for (name, value) in &meta.xattrs {
            if let Err(e) = xattr::set(path, name, value) {
                tracing::warn!("{}: xattr {:?}: {e}", path.display(), name);
            }
        }
    }

    /// Owner, then mode (chown clears setuid), then xattrs (chown clears capabilities), then
    /// mtime. `chmod` is false for symlinks.
    fn finish_node(&self, path: &Path, meta: &Meta, chmod: bool) {
        self.chown(path, meta);
        if chmod
            && let Err(e) =
                fs::set_permissions(path, fs::Permissions::from_mode(meta.mode & 0o7777))
        {
            tracing::warn!("{}: chmod: {e}", path.display());
        }
        self.set_xattrs(path, meta);
        set_mtime(path, meta.mtime);
    }

    /// Directories' modes and mtimes, deepest first, once nothing more is written in them.
    fn finish_dirs(&mut self) -> Result<(), StoreError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
        for d in dirs {
            fs::set_permissions(&d.path, fs::Permissions::from_mode(d.mode & 0o7777))
                .map_err(Self::io(&d.path))?;
            set_mtime(&d.path, d.mtime);
        }
        Ok(())
    }
}

fn parse_pax_time(text: &str) -> Option<(i64, i64)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac
        .chars()
        .take(9)
        .filter(|c| c.is_ascii_digit())
        .collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().unwrap_or(0)))
}

fn set_mtime(path: &Path, mtime: Option<(i64, i64)>) {
    let Some((s, ns)) = mtime else { return };
    let t = TimeSpec::new(s, ns);
    if let Err(e) = utimensat(None, path, &t, &t, UtimensatFlags::NoFollowSymlink) {
        tracing::warn!("{}: set mtime: {e}", path.display());
    }
}

/// An overlayfs whiteout at `path` (see the module doc).
fn make_whiteout(path: &Path) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    remove_any(path).map_err(io)?;
    match mknod(path, SFlag::S_IFCHR, NixMode::empty(), makedev(0, 0)) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EPERM) => {
            fs::File::create(path).map_err(io)?;
            xattr::set(path, "user.overlay.whiteout", b"").map_err(io)?;
            if let Some(dir) = path.parent() {
                xattr::set(dir, "user.overlay.whiteouts", b"").map_err(io)?;
            }
            Ok(())
        }
        Err(e) => Err(io(e.into())),
    }
}

/// Marks `dir` opaque for overlayfs (see the module doc).
fn set_opaque(dir: &Path) -> Result<(), StoreError> {
    match xattr::set(dir, "trusted.overlay.opaque", b"y") {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            xattr::set(dir, "user.overlay.opaque", b"y").map_err(|source| StoreError::Io {
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(source) => Err(StoreError::Io {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Whether `path` is an overlay whiteout as [`Mode::Overlay`] writes it.
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_char_device() => m.rdev() == 0,
        Ok(m) if m.is_file() && m.len() == 0 => {
            matches!(xattr::get(path, "user.overlay.whiteout"), Ok(Some(_)))
        }
        _ => false,
    }
}

/// Whether `dir` is marked opaque as [`Mode::Overlay`] writes it.
pub fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|n| matches!(xattr::get(dir, n), Ok(Some(v)) if v == b"y"))
}
