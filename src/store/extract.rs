//! Extracting one layer tar into a directory, with OCI whiteouts, on directory descriptors.
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
//! mtimes (directories' last, deepest first). An owner of `u32::MAX` (`(uid_t)-1`, "unchanged"
//! to the kernel) is not applied.
//!
//! # What each step guarantees (the archive cannot steer a write outside the root)
//! 1. The root is opened once, `O_PATH | O_DIRECTORY`; no host path is used after that.
//! 2. The entry's parent directory is resolved by [`super::safepath`] into a descriptor
//!    (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//!    RESOLVE_NO_XDEV`, or an `O_PATH | O_NOFOLLOW` walk one component at a time; symlinks
//!    in parents are followed only inside the root, see there). Escapes are refused.
//! 3. The last component (a single name, never `.`/`..`/`/`) is only touched through `*at`
//!    calls relative to that descriptor that do not follow it: what is there is removed with
//!    `unlinkat` (a directory is emptied through its own `O_NOFOLLOW` descriptor, never by a
//!    path), then the entry is made with `mkdirat`, `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`,
//!    `symlinkat`, `linkat` (without `AT_SYMLINK_FOLLOW`; its target resolved by the same
//!    resolver) or `mknodat`.
//! 4. Metadata is written on a descriptor of the object just made, never by path afterwards:
//!    regular files and directories through a real descriptor (`fchown`, `fchmod`,
//!    `fsetxattr`, `futimens`); symlinks, fifos and device nodes through an `O_PATH |
//!    O_NOFOLLOW` descriptor (`fchownat(AT_EMPTY_PATH)`; mode and xattrs through its
//!    `/proc/self/fd/N` magic link, which names that inode itself, after `fstat` confirmed its
//!    type; a symlink's mode is never changed) and `utimensat(parent, name,
//!    AT_SYMLINK_NOFOLLOW)`. Devices are never opened for I/O.
//! 5. Directory modes and mtimes are deferred (so a read-only directory can still be filled)
//!    and applied deepest first. Each directory is re-opened through the resolver by the real
//!    path it had when made or met (`O_RDONLY | O_DIRECTORY | O_NOFOLLOW` on the last
//!    component) and must still be that directory (`st_dev` + `st_ino` recorded then);
//!    directories removed or replaced since (by a symlink, a file, another directory) are
//!    dropped from the list when removed and, should one slip through, skipped by the check.
//! 6. Apply mode's opaque directories are listed with `getdents` on a descriptor and their
//!    lower entries removed as in 3; whiteouts are made with `mknodat` (or `openat` +
//!    `fsetxattr`).
//!
//! The caller owns cleanup: on error the target directory is partial and must be removed.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{
    AtFlags, CWD, FileType, Gid, Mode as RxMode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
    chmodat, chownat, fchmod, fchown, fsetxattr, fstat, futimens, linkat, mkdirat, mknodat, openat,
    setxattr, symlinkat, utimensat,
};
use rustix::io::Errno;

use super::StoreError;
use super::fsutil::{Removed, list_dir, remove_at};
use super::safepath::{
    ResolveError, Resolved, Resolver, Root, clean_components, open_dir_at, reopen_dir, stat_at,
};
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
    extract_with(reader, root, layer, mode, Resolver::Auto)
}

/// [`extract`] with a chosen parent resolver (tests force the fallback walk).
pub(crate) fn extract_with<R: Read>(
    reader: R,
    root: &Path,
    layer: &Digest,
    mode: Mode,
    resolver: Resolver,
) -> Result<R, StoreError> {
    let root_fd = Root::open(root, resolver).map_err(|source| StoreError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut ex = Extractor {
        root: root_fd,
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

/// A directory whose mode and mtime wait for the end of the layer.
struct DirMeta {
    /// Real path below the root.
    real: Vec<OsString>,
    dev: u64,
    ino: u64,
    mode: u32,
    mtime: Option<(i64, i64)>,
}

struct Extractor {
    root: Root,
    layer: Digest,
    mode: Mode,
    is_root: bool,
    dirs: Vec<DirMeta>,
    /// Apply mode: real paths this layer wrote (an opaque marker keeps them).
    written: HashSet<Vec<OsString>>,
}

/// The header fields, with PAX overrides applied.
struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

fn join(real: &[OsString], name: &OsStr) -> Vec<OsString> {
    let mut v = real.to_vec();
    v.push(name.to_os_string());
    v
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

    /// Maps an I/O error on `name` in `dir` to a [`StoreError::Io`] with its host path.
    fn io<'a, E: Into<io::Error>>(
        &'a self,
        dir: &'a Resolved,
        name: &'a OsStr,
    ) -> impl FnOnce(E) -> StoreError + 'a {
        move |source| StoreError::Io {
            path: self.root.display(&dir.real, Some(name)),
            source: source.into(),
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

    /// One entry; a name the file system cannot hold becomes one clear [`StoreError::BadLayer`].
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), StoreError> {
        let raw = entry.path_bytes().into_owned();
        self.entry_inner(entry, &raw).map_err(|e| match e {
            StoreError::Io { source, .. } if source.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                self.bad(format!(
                    "entry {:?} (or its link target) has a name longer than 255 bytes, \
                     which Linux file systems cannot hold",
                    String::from_utf8_lossy(&raw)
                ))
            }
            other => other,
        })
    }

    fn entry_inner<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        raw: &[u8],
    ) -> Result<(), StoreError> {
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
        let comps = clean_components(raw).map_err(|e| self.resolve_err(raw, e))?;
        let meta = self.meta(entry)?;
        let Some((name, parents)) = comps.split_last() else {
            // The root itself (`./`): only its metadata.
            if kind.is_dir() {
                self.root_meta(&meta)?;
            }
            return Ok(());
        };
        let name_bytes = name.as_bytes();
        if name_bytes.starts_with(WH_PREFIX.as_bytes()) {
            return self.whiteout(raw, parents, name_bytes);
        }
        let parent = self
            .root
            .resolve_dir(parents, true)
            .map_err(|e| self.resolve_err(raw, e))?;
        let name = name.as_os_str();
        match kind {
            tar::EntryType::Directory => self.directory(&parent, name, &meta)?,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.remove(&parent, name)?;
                let fd = openat(
                    &parent.fd,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    RxMode::from_raw_mode(0o600),
                )
                .map_err(self.io(&parent, name))?;
                let mut f = File::from(fd);
                io::copy(entry, &mut f).map_err(|e| {
                    self.bad(format!("reading {:?}: {e}", String::from_utf8_lossy(raw)))
                })?;
                self.finish_fd(f.as_fd(), &parent, name, &meta);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        self.bad(format!(
                            "symlink {:?} without target",
                            String::from_utf8_lossy(raw)
                        ))
                    })?
                    .into_owned();
                self.remove(&parent, name)?;
                symlinkat(OsStr::from_bytes(&target), &parent.fd, name)
                    .map_err(self.io(&parent, name))?;
                self.finish_node(&parent, name, &meta, FileType::Symlink)?;
            }
            tar::EntryType::Link => {
                if !self.hard_link(entry, raw, &parent, name)? {
                    return Ok(());
                }
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (ftype, dev) = match kind {
                    tar::EntryType::Char => (FileType::CharacterDevice, self.dev(entry)),
                    tar::EntryType::Block => (FileType::BlockDevice, self.dev(entry)),
                    _ => (FileType::Fifo, 0),
                };
                self.remove(&parent, name)?;
                let perm = RxMode::from_raw_mode(meta.mode & 0o777);
                match mknodat(&parent.fd, name, ftype, perm, dev) {
                    Ok(()) => self.finish_node(&parent, name, &meta, ftype)?,
                    Err(Errno::PERM) if !self.is_root => {
                        tracing::warn!(
                            "layer {}: skipping device node {:?} (needs root)",
                            self.layer,
                            String::from_utf8_lossy(raw)
                        );
                        return Ok(());
                    }
                    Err(e) => return Err(self.io(&parent, name)(e)),
                }
            }
            other => {
                tracing::warn!(
                    "layer {}: skipping {:?} of unsupported type {other:?}",
                    self.layer,
                    String::from_utf8_lossy(raw)
                );
                return Ok(());
            }
        }
        if self.mode == Mode::Apply {
            let mut p = join(&parent.real, name);
            while self.written.insert(p.clone()) && p.pop().is_some() {}
        }
        Ok(())
    }

    /// A directory entry: kept if one is there (a lower layer's, or met earlier), else made.
    fn directory(
        &mut self,
        parent: &Resolved,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), StoreError> {
        let is_dir = stat_at(parent.fd.as_fd(), name)
            .map_err(self.io(parent, name))?
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if !is_dir {
            self.remove(parent, name)?;
            mkdirat(&parent.fd, name, RxMode::from_raw_mode(0o755))
                .map_err(self.io(parent, name))?;
        }
        let fd = open_dir_at(parent.fd.as_fd(), name).map_err(self.io(parent, name))?;
        let st = fstat(&fd).map_err(self.io(parent, name))?;
        self.chown_fd(fd.as_fd(), meta, parent, name);
        self.xattrs_fd(fd.as_fd(), meta, parent, name);
        self.dirs.push(DirMeta {
            real: join(&parent.real, name),
            dev: st.st_dev,
            ino: st.st_ino,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    /// `./`: the root's owner now, its mode and mtime with the other directories.
    fn root_meta(&mut self, meta: &Meta) -> Result<(), StoreError> {
        let root = self
            .root
            .resolve_dir(&[], false)
            .map_err(|e| self.resolve_err(b"./", e))?;
        let fd = reopen_dir(root.fd.as_fd()).map_err(self.io(&root, OsStr::new(".")))?;
        let st = fstat(&fd).map_err(self.io(&root, OsStr::new(".")))?;
        self.chown_fd(fd.as_fd(), meta, &root, OsStr::new("."));
        self.dirs.push(DirMeta {
            real: Vec::new(),
            dev: st.st_dev,
            ino: st.st_ino,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        Ok(())
    }

    /// A hard link; `false` when it names itself (nothing to do).
    fn hard_link<R: Read>(
        &mut self,
        entry: &tar::Entry<R>,
        raw: &[u8],
        parent: &Resolved,
        name: &OsStr,
    ) -> Result<bool, StoreError> {
        let target_raw = entry
            .link_name_bytes()
            .ok_or_else(|| {
                self.bad(format!(
                    "hard link {:?} without target",
                    String::from_utf8_lossy(raw)
                ))
            })?
            .into_owned();
        let tcomps = clean_components(&target_raw).map_err(|e| match e {
            ResolveError::Escape(why) => self.escape(raw, format!("hard link target {why}")),
            other => self.resolve_err(raw, other),
        })?;
        let Some((tname, tparents)) = tcomps.split_last() else {
            return Err(self.escape(raw, "hard link to the root".into()));
        };
        let tdir = self
            .root
            .resolve_dir(tparents, false)
            .map_err(|e| match e {
                ResolveError::Escape(why) => self.escape(raw, format!("hard link target: {why}")),
                other => self.resolve_err(raw, other),
            })?;
        if tdir.real == parent.real && tname.as_os_str() == name {
            return Ok(false);
        }
        let exists = stat_at(tdir.fd.as_fd(), tname)
            .map_err(self.io(&tdir, tname))?
            .is_some();
        if !exists {
            return Err(self.bad(format!(
                "hard link {:?} to {:?}, which is not in this layer",
                String::from_utf8_lossy(raw),
                String::from_utf8_lossy(&target_raw)
            )));
        }
        self.remove(parent, name)?;
        linkat(
            &tdir.fd,
            tname.as_os_str(),
            &parent.fd,
            name,
            AtFlags::empty(),
        )
        .map_err(self.io(parent, name))?;
        Ok(true)
    }

    /// Removes `name` in `parent` (see [`remove_at`]) and forgets the deferred metadata of
    /// directories that went with it.
    fn remove(&mut self, parent: &Resolved, name: &OsStr) -> Result<(), StoreError> {
        let removed = remove_at(parent.fd.as_fd(), name).map_err(self.io(parent, name))?;
        if removed == Removed::Dir {
            let gone = join(&parent.real, name);
            self.dirs.retain(|d| !d.real.starts_with(&gone));
        }
        Ok(())
    }

    fn dev<R: Read>(&self, entry: &tar::Entry<R>) -> u64 {
        let h = entry.header();
        let major = h.device_major().ok().flatten().unwrap_or(0);
        let minor = h.device_minor().ok().flatten().unwrap_or(0);
        rustix::fs::makedev(major, minor)
    }

    fn whiteout(
        &mut self,
        raw: &[u8],
        parents: &[OsString],
        name: &[u8],
    ) -> Result<(), StoreError> {
        if name == WH_OPAQUE.as_bytes() {
            let dir = self
                .root
                .resolve_dir(parents, true)
                .map_err(|e| self.resolve_err(raw, e))?;
            return match self.mode {
                Mode::Overlay => self.set_opaque(&dir),
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
                let dir = self
                    .root
                    .resolve_dir(parents, true)
                    .map_err(|e| self.resolve_err(raw, e))?;
                self.remove(&dir, hidden)?;
                self.make_whiteout(&dir, hidden)
            }
            Mode::Apply => match self.root.resolve_dir(parents, false) {
                Ok(dir) => self.remove(&dir, hidden),
                Err(ResolveError::NotFound(_)) | Err(ResolveError::NotDir(_)) => Ok(()),
                Err(e) => Err(self.resolve_err(raw, e)),
            },
        }
    }

    /// Apply mode, opaque directory: removes the children lower layers put there.
    fn clear_lower(&mut self, dir: &Resolved) -> Result<(), StoreError> {
        let names = list_dir(dir.fd.as_fd()).map_err(self.io(dir, OsStr::new(".")))?;
        for n in names {
            if !self.written.contains(&join(&dir.real, &n)) {
                self.remove(dir, &n)?;
            }
        }
        Ok(())
    }

    /// An overlayfs whiteout `name` in `dir` (see the module doc); `name` is already gone.
    fn make_whiteout(&self, dir: &Resolved, name: &OsStr) -> Result<(), StoreError> {
        match mknodat(&dir.fd, name, FileType::CharacterDevice, RxMode::empty(), 0) {
            Ok(()) => Ok(()),
            Err(Errno::PERM) => {
                let fd = openat(
                    &dir.fd,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    RxMode::from_raw_mode(0o644),
                )
                .map_err(self.io(dir, name))?;
                fsetxattr(&fd, "user.overlay.whiteout", b"", XattrFlags::empty())
                    .map_err(self.io(dir, name))?;
                let d = reopen_dir(dir.fd.as_fd()).map_err(self.io(dir, OsStr::new(".")))?;
                fsetxattr(&d, "user.overlay.whiteouts", b"", XattrFlags::empty())
                    .map_err(self.io(dir, OsStr::new(".")))
            }
            Err(e) => Err(self.io(dir, name)(e)),
        }
    }

    /// Marks `dir` opaque for overlayfs (see the module doc).
    fn set_opaque(&self, dir: &Resolved) -> Result<(), StoreError> {
        let here = OsStr::new(".");
        let d = reopen_dir(dir.fd.as_fd()).map_err(self.io(dir, here))?;
        match fsetxattr(&d, "trusted.overlay.opaque", b"y", XattrFlags::empty()) {
            Ok(()) => Ok(()),
            Err(Errno::PERM) => fsetxattr(&d, "user.overlay.opaque", b"y", XattrFlags::empty())
                .map_err(self.io(dir, here)),
            Err(e) => Err(self.io(dir, here)(e)),
        }
    }

    /// The owner to set, when root and representable (not `(uid_t)-1`, which means
    /// "unchanged").
    fn owner(&self, meta: &Meta, parent: &Resolved, name: &OsStr) -> Option<(Uid, Gid)> {
        if !self.is_root {
            return None;
        }
        match (u32::try_from(meta.uid), u32::try_from(meta.gid)) {
            (Ok(uid), Ok(gid)) if uid != u32::MAX && gid != u32::MAX => {
                Some((Uid::from_raw_unchecked(uid), Gid::from_raw_unchecked(gid)))
            }
            _ => {
                tracing::warn!(
                    "{}: owner {}:{} out of range",
                    self.root.display(&parent.real, Some(name)).display(),
                    meta.uid,
                    meta.gid
                );
                None
            }
        }
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, parent: &Resolved, name: &OsStr) {
        if let Some((uid, gid)) = self.owner(meta, parent, name)
            && let Err(e) = fchown(fd, Some(uid), Some(gid))
        {
            self.warn(parent, name, "chown", e);
        }
    }

    fn xattrs_fd(&self, fd: BorrowedFd<'_>, meta: &Meta, parent: &Resolved, name: &OsStr) {
        for (xname, value) in &meta.xattrs {
            if let Err(e) = fsetxattr(fd, xname.as_os_str(), value, XattrFlags::empty()) {
                self.warn(parent, name, &format!("xattr {xname:?}"), e);
            }
        }
    }

    fn warn(&self, parent: &Resolved, name: &OsStr, what: &str, e: Errno) {
        tracing::warn!(
            "{}: {what}: {}",
            self.root.display(&parent.real, Some(name)).display(),
            io::Error::from(e)
        );
    }

    /// A regular file's metadata on its open descriptor: owner, then mode (chown clears
    /// setuid), then xattrs (chown clears capabilities), then mtime.
    fn finish_fd(&self, fd: BorrowedFd<'_>, parent: &Resolved, name: &OsStr, meta: &Meta) {
        self.chown_fd(fd, meta, parent, name);
        if let Err(e) = fchmod(fd, RxMode::from_raw_mode(meta.mode & 0o7777)) {
            self.warn(parent, name, "chmod", e);
        }
        self.xattrs_fd(fd, meta, parent, name);
        if let Some(ts) = timestamps(meta.mtime)
            && let Err(e) = futimens(fd, &ts)
        {
            self.warn(parent, name, "set mtime", e);
        }
    }

    /// Metadata of a symlink, fifo or device node just made as `name` in `parent`, through an
    /// `O_PATH | O_NOFOLLOW` descriptor of it (see the module doc, step 4).
    fn finish_node(
        &self,
        parent: &Resolved,
        name: &OsStr,
        meta: &Meta,
        expect: FileType,
    ) -> Result<(), StoreError> {
        let fd: OwnedFd = openat(
            &parent.fd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            RxMode::empty(),
        )
        .map_err(self.io(parent, name))?;
        let st = fstat(&fd).map_err(self.io(parent, name))?;
        if FileType::from_raw_mode(st.st_mode) != expect {
            return Err(self.io(parent, name)(io::Error::other(
                "changed while being extracted",
            )));
        }
        if let Some((uid, gid)) = self.owner(meta, parent, name)
            && let Err(e) = chownat(
                &fd,
                "",
                Some(uid),
                Some(gid),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )
        {
            self.warn(parent, name, "chown", e);
        }
        let magic = format!("/proc/self/fd/{}", fd.as_raw_fd());
        if expect != FileType::Symlink
            && let Err(e) = chmodat(
                CWD,
                magic.as_str(),
                RxMode::from_raw_mode(meta.mode & 0o7777),
                AtFlags::empty(),
            )
        {
            self.warn(parent, name, "chmod", e);
        }
        for (xname, value) in &meta.xattrs {
            if let Err(e) = setxattr(
                magic.as_str(),
                xname.as_os_str(),
                value,
                XattrFlags::empty(),
            ) {
                self.warn(parent, name, &format!("xattr {xname:?}"), e);
            }
        }
        if let Some(ts) = timestamps(meta.mtime)
            && let Err(e) = utimensat(&parent.fd, name, &ts, AtFlags::SYMLINK_NOFOLLOW)
        {
            self.warn(parent, name, "set mtime", e);
        }
        Ok(())
    }

    /// Directories' modes and mtimes, deepest first, once nothing more is written in them
    /// (see the module doc, step 5).
    fn finish_dirs(&mut self) -> Result<(), StoreError> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.real.len()));
        for d in dirs {
            let Some(fd) = self.reopen_recorded(&d) else {
                continue;
            };
            let path = || self.root.display(&d.real, None);
            fchmod(&fd, RxMode::from_raw_mode(d.mode & 0o7777)).map_err(|e| StoreError::Io {
                path: path(),
                source: e.into(),
            })?;
            if let Some(ts) = timestamps(d.mtime)
                && let Err(e) = futimens(&fd, &ts)
            {
                tracing::warn!("{}: set mtime: {}", path().display(), io::Error::from(e));
            }
        }
        Ok(())
    }

    /// Re-opens a recorded directory if it is still the one recorded.
    fn reopen_recorded(&self, d: &DirMeta) -> Option<OwnedFd> {
        let fd = match d.real.split_last() {
            None => {
                let root = self.root.resolve_dir(&[], false).ok()?;
                reopen_dir(root.fd.as_fd()).ok()
            }
            Some((name, parents)) => {
                let parent = self.root.resolve_dir(parents, false).ok()?;
                open_dir_at(parent.fd.as_fd(), name).ok()
            }
        };
        let same = fd
            .as_ref()
            .and_then(|fd| fstat(fd).ok())
            .is_some_and(|st| st.st_dev == d.dev && st.st_ino == d.ino);
        if !same {
            tracing::debug!(
                "{}: replaced since its entry; its mode and mtime are not applied",
                self.root.display(&d.real, None).display()
            );
            return None;
        }
        fd
    }
}

fn timestamps(mtime: Option<(i64, i64)>) -> Option<Timestamps> {
    let (s, ns) = mtime?;
    let t = Timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    Some(Timestamps {
        last_access: t,
        last_modification: t,
    })
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

/// Whether `path` is an overlay whiteout as [`Mode::Overlay`] writes it.
pub fn is_whiteout(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    match std::fs::symlink_metadata(path) {
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
