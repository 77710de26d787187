//! Paths inside a container's root file system, resolved on directory file descriptors as
//! the container will see them (symlinks followed *in scope*, as if chrooted), never out of it.
//!
//! The bundle uses this for the working directory and every bind-mount destination before
//! it hands `config.json` to the runtime (Docker and runc resolve them the same way), and
//! `exec -w` for its working directory; `user` reads `/etc/passwd` and `/etc/group` through it.
//!
//! What each step guarantees:
//! - The walk starts from a descriptor of the root (`O_PATH|O_DIRECTORY`) and opens one
//!   component at a time with `openat(dir, name, O_PATH|O_NOFOLLOW)`: a name never contains
//!   `/`, so the kernel never follows a symlink or crosses `..` on our behalf.
//! - A symlink is read with `readlinkat` and its target is walked by the same loop: an
//!   absolute target restarts from the root descriptor, `..` pops the stack of directory
//!   descriptors and stops at the root (as `openat2(RESOLVE_IN_ROOT)` does). No magic link of
//!   `/proc` is ever followed: the kernel is never asked to follow any link at all. At most
//!   [`MAX_LINKS`] symlinks are followed (the kernel's own limit), so loops end.
//! - Missing components are made with `mkdirat` (directories) or
//!   `openat(O_CREAT|O_EXCL|O_NOFOLLOW)` (an empty file for a file bind) in the directory
//!   descriptor just walked, then opened again with `O_NOFOLLOW`: nothing is created through
//!   a link, nothing outside the root.
//! - The result carries the resolved path (absolute inside the root, no symlink left in it),
//!   which goes into `config.json`, so the runtime mounts exactly where this walk checked.
//! - Paths strictly below `/proc`, `/sys` or `/dev` are refused when asked
//!   ([`Policy::refuse_kernel_mounts`]): the runtime mounts its own file systems there at
//!   start, so what the image holds under them says nothing about what the process sees
//!   (`/proc/self/fd/N` would be one of the runtime's descriptors: CVE-2024-21626).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

/// The most symlinks one resolution follows (the kernel's `MAXSYMLINKS`).
pub const MAX_LINKS: usize = 40;

/// Mount points of the runtime's own file systems: what lies below them in the image is
/// hidden at start.
pub const KERNEL_MOUNTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Why a path cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    /// A component does not exist (and nothing was to be created).
    #[error("{0} does not exist in the image")]
    NotFound(String),
    /// A component that must be a directory is something else.
    #[error("{0} is not a directory in the image")]
    NotADirectory(String),
    /// The path ends at something of the wrong kind for a file bind.
    #[error("{0} is a directory in the image, not a file")]
    IsADirectory(String),
    /// More than [`MAX_LINKS`] symlinks.
    #[error("{0}: too many levels of symbolic links in the image")]
    TooManyLinks(String),
    /// Below `/proc`, `/sys` or `/dev` (see [`Policy::refuse_kernel_mounts`]).
    #[error("{path} is inside {mount}, which the container's own {mount} replaces at start")]
    KernelMount {
        /// The resolved path.
        path: String,
        /// The mount point.
        mount: &'static str,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// What to make when the path (or a directory on the way) is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// Nothing: a missing component is [`InRootError::NotFound`].
    Nothing,
    /// Missing directories, the last one included.
    Dir,
    /// Missing directories on the way and an empty file (mode 0644) at the end.
    File,
}

/// How a resolution goes.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// What to create.
    pub create: Create,
    /// Refuse a path strictly below one of [`KERNEL_MOUNTS`].
    pub refuse_kernel_mounts: bool,
}

/// The kind of what a path ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A device, fifo or socket.
    Other,
}

/// A resolved path.
#[derive(Debug)]
pub struct Resolved {
    /// Absolute inside the root, without symlinks, `.` or `..`.
    pub path: String,
    /// What it is.
    pub kind: Kind,
    /// An `O_PATH` descriptor of it (not following a final symlink: there is none).
    pub fd: OwnedFd,
}

/// A container root file system, held open.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

fn io(what: String) -> impl FnOnce(Errno) -> InRootError {
    move |e| InRootError::Io {
        what,
        source: e.into(),
    }
}

fn open_path(dir: &OwnedFd, name: &OsString) -> Result<OwnedFd, Errno> {
    let fd = openat(
        Some(dir.as_raw_fd()),
        name.as_os_str(),
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn kind_of(fd: &OwnedFd) -> Result<SFlag, Errno> {
    let st = fstat(fd.as_raw_fd())?;
    Ok(SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT))
}

fn join(stack: &[(OsString, OwnedFd)], last: Option<&OsString>) -> String {
    let mut s = String::new();
    for n in stack.iter().map(|(n, _)| n).chain(last) {
        s.push('/');
        s.push_str(&n.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

impl Root {
    /// Opens `dir` (a path of the host's, trusted) as the root.
    pub fn open(dir: &Path) -> Result<Root, InRootError> {
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io(format!("opening {}", dir.display())))?;
        // SAFETY: `open` returned a new descriptor that nothing else owns.
        Ok(Root {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Resolves `path` (taken as absolute inside the root; `..` never leaves it) per `policy`.
    pub fn resolve(&self, path: &str, policy: Policy) -> Result<Resolved, InRootError> {
        let mut todo: Vec<OsString> = components(path.as_bytes());
        let mut stack: Vec<(OsString, OwnedFd)> = Vec::new();
        let mut links = 0;
        while let Some(name) = todo.pop() {
            match name.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            if policy.refuse_kernel_mounts
                && stack.len() == 1
                && let Some(m) = KERNEL_MOUNTS
                    .iter()
                    .find(|m| m.as_bytes()[1..] == *stack[0].0.as_bytes())
            {
                return Err(InRootError::KernelMount {
                    path: join(&stack, Some(&name)),
                    mount: m,
                });
            }
            let last = todo.iter().all(|c| c.is_empty() || c == ".");
            // Going below a kernel mount point that the image lacks: refused before anything
            // is looked up or made there.
            if policy.refuse_kernel_mounts
                && stack.is_empty()
                && let Some(m) = KERNEL_MOUNTS
                    .iter()
                    .find(|m| m.as_bytes()[1..] == *name.as_bytes())
                && let Some(next) = todo.iter().rev().find(|c| !c.is_empty() && *c != ".")
                && next != ".."
            {
                return Err(InRootError::KernelMount {
                    path: format!("{m}/{}", next.to_string_lossy()),
                    mount: m,
                });
            }
            let dir = stack.last().map(|(_, fd)| fd).unwrap_or(&self.fd);
            let fd = match open_path(dir, &name) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) if policy.create != Create::Nothing => {
                    let at = join(&stack, Some(&name));
                    if last && policy.create == Create::File {
                        match openat(
                            Some(dir.as_raw_fd()),
                            name.as_os_str(),
                            OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_WRONLY
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        ) {
                            // SAFETY: a new descriptor, closed right away.
                            Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
                            Err(Errno::EEXIST) => {}
                            Err(e) => return Err(io(format!("creating {at}"))(e)),
                        }
                    } else {
                        match mkdirat(
                            Some(dir.as_raw_fd()),
                            name.as_os_str(),
                            Mode::from_bits_truncate(0o755),
                        ) {
                            Ok(()) | Err(Errno::EEXIST) => {}
                            Err(e) => return Err(io(format!("creating {at}"))(e)),
                        }
                    }
                    // Walk it again: whatever is there now is checked like anything else.
                    todo.push(name);
                    continue;
                }
                Err(Errno::ENOENT) => {
                    return Err(InRootError::NotFound(join(&stack, Some(&name))));
                }
                Err(Errno::ENOTDIR) => {
                    return Err(InRootError::NotADirectory(join(&stack, None)));
                }
                Err(e) => return Err(io(format!("opening {}", join(&stack, Some(&name))))(e)),
            };
            let at = || join(&stack, Some(&name));
            let kind = kind_of(&fd).map_err(io(format!("inspecting {}", at())))?;
            if kind == SFlag::S_IFLNK {
                links += 1;
                if links > MAX_LINKS {
                    return Err(InRootError::TooManyLinks(path.to_string()));
                }
                let target = readlinkat(Some(dir.as_raw_fd()), name.as_os_str())
                    .map_err(io(format!("reading the link {}", at())))?;
                if target.as_bytes().starts_with(b"/") {
                    stack.clear();
                }
                todo.extend(components(target.as_bytes()));
                continue;
            }
            if kind == SFlag::S_IFDIR {
                stack.push((name, fd));
                continue;
            }
            if !last {
                return Err(InRootError::NotADirectory(at()));
            }
            let path = at();
            return Ok(Resolved {
                path,
                kind: if kind == SFlag::S_IFREG {
                    Kind::File
                } else {
                    Kind::Other
                },
                fd,
            });
        }
        let path = join(&stack, None);
        let fd = match stack.pop() {
            Some((_, fd)) => fd,
            None => self.fd.try_clone().map_err(|e| InRootError::Io {
                what: "duplicating the root descriptor".into(),
                source: e,
            })?,
        };
        Ok(Resolved {
            path,
            kind: Kind::Dir,
            fd,
        })
    }

    /// Reads the regular file at `path` inside the root (symlinks in scope), at most `limit`
    /// bytes; `None` when it is missing or not a regular file.
    pub fn read_file(&self, path: &str, limit: u64) -> Option<Vec<u8>> {
        use std::io::Read;
        let r = self
            .resolve(
                path,
                Policy {
                    create: Create::Nothing,
                    refuse_kernel_mounts: false,
                },
            )
            .ok()?;
        if r.kind != Kind::File {
            return None;
        }
        // Re-open the O_PATH descriptor for reading through /proc/self/fd: it names the very
        // inode the walk checked (a regular file, so no magic link is involved).
        let file = std::fs::File::open(format!("/proc/self/fd/{}", r.fd.as_raw_fd())).ok()?;
        let mut out = Vec::new();
        file.take(limit).read_to_end(&mut out).ok()?;
        Some(out)
    }
}

/// `path`'s components, in reverse (the next one last).
fn components(path: &[u8]) -> Vec<OsString> {
    path.split(|b| *b == b'/')
        .rev()
        .map(|c| OsString::from(std::ffi::OsStr::from_bytes(c)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    const FIND: Policy = Policy {
        create: Create::Nothing,
        refuse_kernel_mounts: false,
    };
    const DIR: Policy = Policy {
        create: Create::Dir,
        refuse_kernel_mounts: true,
    };
    const FIND_REFUSING: Policy = Policy {
        create: Create::Nothing,
        refuse_kernel_mounts: true,
    };
    const FILE: Policy = Policy {
        create: Create::File,
        refuse_kernel_mounts: false,
    };

    /// A sandbox: `outside/` (a sentinel directory with a file) next to `root/`.
    fn sandbox() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host\n").unwrap();
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../../..", root.join("usr/up")).unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        symlink("/proc/self/fd/3", root.join("fd")).unwrap();
        (t, root, outside)
    }

    fn listing(d: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn links_resolve_in_scope() {
        let (_t, root, outside) = sandbox();
        let r = Root::open(&root).unwrap();
        assert_eq!(r.resolve("/bin", FIND).unwrap().path, "/usr/bin");
        // `..` after a link is the link target's parent, as the kernel does it.
        assert!(matches!(
            r.resolve("/bin/../etc", FIND),
            Err(InRootError::NotFound(p)) if p == "/usr/etc"
        ));
        assert_eq!(r.resolve("/../../etc/./", FIND).unwrap().path, "/etc");
        assert_eq!(r.resolve("/usr/up/etc", FIND).unwrap().path, "/etc");
        assert_eq!(r.resolve("", FIND).unwrap().path, "/");
        let passwd = r.resolve("/usr/up/bin/../../etc/passwd", FIND).unwrap();
        assert_eq!(
            (passwd.path.as_str(), passwd.kind),
            ("/etc/passwd", Kind::File)
        );
        // An absolute link pointing at a host directory stays in the root.
        assert!(matches!(
            r.resolve("/abs/secret", FIND),
            Err(InRootError::NotFound(_))
        ));
        assert!(matches!(
            r.resolve("/loop1", FIND),
            Err(InRootError::TooManyLinks(_))
        ));
        assert!(matches!(
            r.resolve("/etc/passwd/x", FIND),
            Err(InRootError::NotADirectory(p)) if p == "/etc/passwd"
        ));
        assert_eq!(listing(&outside), ["secret"]);
    }

    #[test]
    fn creation_happens_inside_and_follows_in_scope() {
        let (_t, root, outside) = sandbox();
        let r = Root::open(&root).unwrap();
        // Through an absolute link to a host directory: made inside the root, where the link
        // points in the container's view.
        let made = r.resolve("/abs/new/deeper", DIR).unwrap();
        let expect = format!("{}/new/deeper", outside.display());
        assert_eq!(made.path, expect);
        assert!(root.join(expect.trim_start_matches('/')).is_dir());
        assert_eq!(listing(&outside), ["secret"]);
        let f = r.resolve("/bin/mnt-file", FILE).unwrap();
        assert_eq!((f.path.as_str(), f.kind), ("/usr/bin/mnt-file", Kind::File));
        assert!(root.join("usr/bin/mnt-file").is_file());
        // An existing file stays (and is what a file bind lands on).
        assert_eq!(r.resolve("/etc/passwd", FILE).unwrap().kind, Kind::File);
        assert!(matches!(
            r.resolve("/etc/passwd/y", DIR),
            Err(InRootError::NotADirectory(p)) if p == "/etc/passwd"
        ));
        assert!(r.resolve("/loop1/x", DIR).is_err());
    }

    #[test]
    fn kernel_mounts_are_refused_when_asked() {
        let (_t, root, _outside) = sandbox();
        let r = Root::open(&root).unwrap();
        for p in [
            "/proc/self/fd/5",
            "/fd",
            "/sys/fs",
            "/dev/fd/7",
            "/usr/up/proc/1",
        ] {
            assert!(
                matches!(r.resolve(p, DIR), Err(InRootError::KernelMount { .. })),
                "{p}"
            );
        }
        assert!(!root.join("proc").exists());
        assert!(!root.join("dev").exists());
        assert!(!root.join("sys").exists());
        assert!(matches!(
            r.resolve("/proc/self", FIND_REFUSING),
            Err(InRootError::KernelMount { .. })
        ));
        // `..` right after it is not below it (and, as in the kernel, needs it to exist).
        assert!(matches!(
            r.resolve("/proc/../etc", FIND_REFUSING),
            Err(InRootError::NotFound(p)) if p == "/proc"
        ));
        // The mount points themselves are fine.
        assert_eq!(r.resolve("/proc", DIR).unwrap().path, "/proc");
    }

    #[test]
    fn read_file_stays_inside() {
        let (_t, root, outside) = sandbox();
        symlink(outside.join("secret"), root.join("etc/group")).unwrap();
        let r = Root::open(&root).unwrap();
        assert_eq!(
            r.read_file("/etc/passwd", 1 << 20).unwrap(),
            b"root:x:0:0::/root:/bin/sh\n"
        );
        assert_eq!(r.read_file("/etc/passwd", 4).unwrap(), b"root");
        assert!(r.read_file("/etc/group", 1 << 20).is_none());
        assert!(r.read_file("/etc", 1 << 20).is_none());
    }
}
