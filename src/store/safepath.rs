//! Path safety for layer extraction: every tar entry lands inside its root, or is refused.
//!
//! Rules (refusals become [`super::StoreError::PathEscape`]):
//! - an entry path (or hard-link target) that is absolute or has a `..` component is refused,
//!   however harmless it might look after normalization; `.` components are dropped
//!   ([`clean_components`]);
//! - the root is opened once ([`Root::open`], `O_PATH | O_DIRECTORY`) and every later lookup is
//!   relative to that descriptor: no path string naming a host location is used again;
//! - parent directories are resolved by [`Root::resolve_dir`] into a *directory descriptor*:
//!   - fast path: one `openat2(root, parents, O_PATH | O_DIRECTORY | O_NOFOLLOW,
//!     RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`. The
//!     kernel refuses any symlink, any `..` leaving the root and any mount crossing, so a
//!     success is a plain directory under the root. Any failure (a missing directory, a
//!     symlink, ENOSYS on kernels before 5.6) falls through to the walk, which gives the exact
//!     answer;
//!   - walk: one component at a time, `openat(cur, name, O_PATH | O_NOFOLLOW)` + `fstat`, on a
//!     stack of descriptors. A name is a single component (no `/`), and `..` is never given to
//!     the kernel: it pops the stack, and popping past the root is refused. Each step is
//!     therefore a child of the previous descriptor and cannot leave the root, whatever the
//!     tree holds or how it changes;
//!   - a symlink met on the way is followed only *in scope*: its target (read with
//!     `readlinkat` on the very descriptor that was `fstat`ed) is pushed back onto the
//!     pending components, a relative one from its directory, an absolute one from the root
//!     (as it would be inside the container); a target that climbs above the root is refused,
//!     as is a chain of more than 40 links;
//!   - missing directories are created with `mkdirat(cur, name, 0755)` (only when asked);
//! - the last component is never resolved here: the extractor operates on it relative to the
//!   returned descriptor, with `*at` calls that do not follow it.
//!
//! [`Resolved::real`] is the directory's real path below the root (no symlinks in it), which
//! the extractor uses as the directory's identity for bookkeeping.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{
    AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags, fstat, mkdirat, openat, openat2, readlinkat,
};
use rustix::io::Errno;

/// Maximum number of symlinks followed while resolving one path (as the kernel's `ELOOP`).
const MAX_LINKS: usize = 40;

/// Set once `openat2` answered `ENOSYS`: the walk is used from then on.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// It would leave the root.
    Escape(String),
    /// A component that must be a directory is something else.
    NotDir(PathBuf),
    /// A component does not exist (and was not to be created).
    NotFound(PathBuf),
    /// A file-system error.
    Io(PathBuf, io::Error),
}

/// How [`Root::resolve_dir`] resolves parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolver {
    /// `openat2` when the kernel has it, the walk otherwise (and for symlinks, creation).
    Auto,
    /// Always the component-by-component walk (the fallback, forced in tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Walk,
}

/// A directory resolved under the root.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// An `O_PATH` descriptor of the directory: the base of every `*at` call on its entries.
    pub fd: OwnedFd,
    /// Its real path below the root, one name per component (empty for the root).
    pub real: Vec<OsString>,
}

/// The extraction root, held open.
#[derive(Debug)]
pub(crate) struct Root {
    fd: OwnedFd,
    path: PathBuf,
    resolver: Resolver,
}

/// Splits an entry path into its normal components, refusing absolute paths and `..`.
pub(crate) fn clean_components(raw: &[u8]) -> Result<Vec<OsString>, ResolveError> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(ResolveError::Escape("`..` component".into())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ResolveError::Escape("absolute path".into()));
            }
        }
    }
    Ok(out)
}

impl Root {
    /// Opens `path` (a directory, trusted: it is ours) as the root of an extraction.
    pub(crate) fn open(path: &Path, resolver: Resolver) -> io::Result<Root> {
        let fd = openat(
            CWD,
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            resolver,
        })
    }

    /// The host path of `real` (for messages only).
    pub(crate) fn display(&self, real: &[OsString], name: Option<&OsStr>) -> PathBuf {
        let mut p = self.path.clone();
        p.extend(real);
        if let Some(n) = name {
            p.push(n);
        }
        p
    }

    /// Resolves the directory `comps` names inside the root (see the module doc), creating
    /// missing directories when `create`.
    pub(crate) fn resolve_dir(
        &self,
        comps: &[OsString],
        create: bool,
    ) -> Result<Resolved, ResolveError> {
        if self.resolver == Resolver::Auto
            && !comps.is_empty()
            && !OPENAT2_MISSING.load(Ordering::Relaxed)
        {
            let joined: PathBuf = comps.iter().collect();
            match openat2(
                &self.fd,
                &joined,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::BENEATH
                    | ResolveFlags::NO_SYMLINKS
                    | ResolveFlags::NO_MAGICLINKS
                    | ResolveFlags::NO_XDEV,
            ) {
                Ok(fd) => {
                    return Ok(Resolved {
                        fd,
                        real: comps.to_vec(),
                    });
                }
                Err(Errno::NOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
                Err(_) => {}
            }
        }
        self.walk(comps, create)
    }

    fn walk(&self, comps: &[OsString], create: bool) -> Result<Resolved, ResolveError> {
        let mut pending: VecDeque<OsString> = comps.iter().cloned().collect();
        let mut stack: Vec<(OsString, OwnedFd)> = Vec::new();
        let mut links = 0;
        let io_at = |stack: &[(OsString, OwnedFd)], c: &OsStr, e: Errno| {
            let real: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
            ResolveError::Io(self.display(&real, Some(c)), e.into())
        };
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                if stack.pop().is_none() {
                    return Err(ResolveError::Escape(
                        "a symlink on the way leads outside the root".into(),
                    ));
                }
                continue;
            }
            let cur = stack.last().map_or(self.fd.as_fd(), |(_, fd)| fd.as_fd());
            let opened = openat(
                cur,
                c.as_os_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            let fd = match opened {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    if !create {
                        let real: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
                        return Err(ResolveError::NotFound(self.display(&real, Some(&c))));
                    }
                    match mkdirat(cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_at(&stack, &c, e)),
                    }
                    let fd = openat(
                        cur,
                        c.as_os_str(),
                        OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_at(&stack, &c, e))?;
                    stack.push((c, fd));
                    continue;
                }
                Err(e) => return Err(io_at(&stack, &c, e)),
            };
            let st = fstat(&fd).map_err(|e| io_at(&stack, &c, e))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => stack.push((c, fd)),
                FileType::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(ResolveError::Escape("too many levels of symlinks".into()));
                    }
                    let target = readlinkat(&fd, "", Vec::new())
                        .map_err(|e| io_at(&stack, &c, e))?
                        .into_bytes();
                    let target = Path::new(OsStr::from_bytes(&target));
                    if target.is_absolute() {
                        stack.clear();
                    }
                    let front: Vec<OsString> = target
                        .components()
                        .filter_map(|tc| match tc {
                            Component::Normal(n) => Some(n.to_os_string()),
                            Component::ParentDir => Some(OsString::from("..")),
                            _ => None,
                        })
                        .collect();
                    for n in front.into_iter().rev() {
                        pending.push_front(n);
                    }
                }
                _ => {
                    let real: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
                    return Err(ResolveError::NotDir(self.display(&real, Some(&c))));
                }
            }
        }
        let real: Vec<OsString> = stack.iter().map(|(n, _)| n.clone()).collect();
        let fd = match stack.pop() {
            Some((_, fd)) => fd,
            None => self
                .reopen_root()
                .map_err(|e| ResolveError::Io(self.path.clone(), e))?,
        };
        Ok(Resolved { fd, real })
    }

    /// A new `O_PATH` descriptor of the root.
    fn reopen_root(&self) -> io::Result<OwnedFd> {
        Ok(openat(
            &self.fd,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }
}

/// Opens the directory `name` in `dir` for reading (so `fchmod`, `fsetxattr`, `futimens` and
/// `getdents` work on it) without following a symlink there: `ELOOP`/`ENOTDIR` otherwise.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Re-opens the directory a (possibly `O_PATH`) descriptor refers to for reading.
pub(crate) fn reopen_dir(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `lstat` of `name` in `dir` (never follows it); `None` when absent.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn refuses_absolute_and_dotdot() {
        assert!(matches!(
            clean_components(b"/etc/passwd"),
            Err(ResolveError::Escape(_))
        ));
        assert!(matches!(
            clean_components(b"a/../../b"),
            Err(ResolveError::Escape(_))
        ));
        assert_eq!(clean_components(b"./a/./b/").unwrap(), vec!["a", "b"]);
        assert!(clean_components(b"./").unwrap().is_empty());
    }

    fn ino_of(fd: &OwnedFd) -> u64 {
        fstat(fd).unwrap().st_ino
    }

    #[test]
    fn follows_symlinks_in_scope_only() {
        for resolver in [Resolver::Auto, Resolver::Walk] {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().join("root");
            fs::create_dir_all(root.join("usr/lib")).unwrap();
            std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
            std::os::unix::fs::symlink("/usr", root.join("abs")).unwrap();
            std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
            std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
            let r = Root::open(&root, resolver).unwrap();
            let lib_ino = fs::metadata(root.join("usr/lib")).unwrap().ino();
            let got = r.resolve_dir(&["lib".into(), "x".into()], true).unwrap();
            assert_eq!(got.real, vec!["usr", "lib", "x"]);
            assert_eq!(
                ino_of(&got.fd),
                fs::metadata(root.join("usr/lib/x")).unwrap().ino()
            );
            let got = r.resolve_dir(&["abs".into(), "lib".into()], false).unwrap();
            assert_eq!(got.real, vec!["usr", "lib"]);
            assert_eq!(ino_of(&got.fd), lib_ino);
            let got = r.resolve_dir(&["usr".into(), "lib".into()], false).unwrap();
            assert_eq!(ino_of(&got.fd), lib_ino);
            assert!(matches!(
                r.resolve_dir(&["up".into(), "etc".into()], true),
                Err(ResolveError::Escape(_))
            ));
            assert!(matches!(
                r.resolve_dir(&["loop".into()], true),
                Err(ResolveError::Escape(_))
            ));
            assert!(matches!(
                r.resolve_dir(&["nope".into(), "x".into()], false),
                Err(ResolveError::NotFound(_))
            ));
            assert!(!t.path().join("etc").exists());
            let got = r.resolve_dir(&[], false).unwrap();
            assert!(got.real.is_empty());
            assert_eq!(ino_of(&got.fd), fs::metadata(&root).unwrap().ino());
        }
    }
}
