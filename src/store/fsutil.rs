//! Small file-system helpers shared by the store modules: error mapping, unique temp names,
//! durable atomic writes (temp file, fsync, rename, fsync of the directory), and removal
//! relative to a directory descriptor that never follows a symlink ([`remove_at`], used by
//! layer extraction).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::StoreError;

/// Wraps an I/O error with the path it happened on.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A name no other writer uses: `<prefix>-<pid>-<random>`.
pub(crate) fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    )
}

/// Whether the process that made temp name `name` (see [`unique_name`]) has exited: a file
/// only a killed writer can have left, whatever its age.
pub(crate) fn writer_gone(name: &str) -> bool {
    let mut parts = name.rsplit('-');
    let _rand = parts.next();
    let Some(pid) = parts.next().and_then(|p| p.parse::<i32>().ok()) else {
        return false;
    };
    pid > 0
        && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
            == Err(nix::errno::Errno::ESRCH)
}

/// Creates `dir` and its parents.
pub(crate) fn mkdir_all(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir).map_err(io_err(dir))
}

/// Fsyncs a directory so that a rename inside it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `bytes` to `path` atomically: a temp file in `tmp_dir` (same file system), fsync,
/// rename, fsync of the target directory. Readers see the old or the new content, never a mix.
pub(crate) fn write_atomic(tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    write_replace(tmp_dir, path, bytes, true)
}

/// Like [`write_atomic`], atomic for readers, but durable only when `durable` (fsync of the
/// file and its directory): for records that live no longer than something else that is not
/// synced either (a container's lease, next to its record).
pub(crate) fn write_replace(
    tmp_dir: &Path,
    path: &Path,
    bytes: &[u8],
    durable: bool,
) -> Result<(), StoreError> {
    let tmp = tmp_dir.join(unique_name("write"));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        if durable {
            f.sync_all().map_err(io_err(&tmp))?;
        }
        fs::rename(&tmp, path).map_err(io_err(path))?;
        if durable && let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Total size in bytes of the regular files under `path` (not following symlinks); 0 when absent.
pub fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return if meta.is_file() { meta.len() } else { 0 };
    }
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            total += tree_size(&e.path());
        }
    }
    total
}

/// Removes a file or a whole tree; absent is fine.
pub(crate) fn remove_any(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What [`remove_at`] found and removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removed {
    /// Nothing was there.
    Nothing,
    /// A non-directory (file, symlink, device, ...).
    Entry,
    /// A directory, with everything in it.
    Dir,
}

/// Removes `name` in the directory `dir` (a file, or a whole tree) without following any
/// symlink: each entry is `lstat`ed through its directory's descriptor, a directory is opened
/// with `O_NOFOLLOW`, emptied through that descriptor (`getdents` + `unlinkat`), then removed
/// with `unlinkat(AT_REMOVEDIR)`. Iterative (depth costs heap and one descriptor per level,
/// never stack: a hostile tree cannot overflow it). `name` must be a single component.
/// Absent is fine.
pub(crate) fn remove_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
) -> std::io::Result<Removed> {
    use rustix::fs::{AtFlags, FileType, unlinkat};
    use std::os::fd::AsFd;
    let is_dir = |st: &rustix::fs::Stat| FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    let Some(st) = super::safepath::stat_at(dir, name)? else {
        return Ok(Removed::Nothing);
    };
    if !is_dir(&st) {
        unlinkat(dir, name, AtFlags::empty())?;
        return Ok(Removed::Entry);
    }
    // Each level: its descriptor, the names still to remove in it, its name in the level above.
    let top = super::safepath::open_dir_at(dir, name)?;
    let names = list_dir(top.as_fd())?;
    let mut stack = vec![(top, names, name.to_os_string())];
    while let Some((fd, names, _)) = stack.last_mut() {
        if let Some(n) = names.pop() {
            match super::safepath::stat_at(fd.as_fd(), &n)? {
                None => {}
                Some(st) if is_dir(&st) => {
                    let child = super::safepath::open_dir_at(fd.as_fd(), &n)?;
                    let names = list_dir(child.as_fd())?;
                    stack.push((child, names, n));
                }
                Some(_) => unlinkat(fd.as_fd(), &n, AtFlags::empty())?,
            }
            continue;
        }
        let (done, _, done_name) = stack.pop().expect("a level is on the stack");
        drop(done);
        match stack.last() {
            Some((parent, _, _)) => unlinkat(parent.as_fd(), &done_name, AtFlags::REMOVEDIR)?,
            None => unlinkat(dir, &done_name, AtFlags::REMOVEDIR)?,
        }
    }
    Ok(Removed::Dir)
}

/// The names in the directory `dir` (without `.` and `..`), read through the descriptor.
pub(crate) fn list_dir(
    dir: std::os::fd::BorrowedFd<'_>,
) -> std::io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    // A fresh `O_RDONLY` descriptor: `dir` may be `O_PATH`, which `getdents` refuses.
    let fd = super::safepath::reopen_dir(dir)?;
    for e in rustix::fs::Dir::new(fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(std::ffi::OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::fd::AsFd;

    /// `remove_at` removes a tree deeper than `PATH_MAX` allows to name, on a small stack, and
    /// never follows the symlinks in it (to a directory outside, and climbing out).
    #[test]
    fn remove_at_is_iterative_and_never_follows_symlinks() {
        use rustix::fs::{Mode, mkdirat, symlinkat};
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        fs::create_dir_all(outside.join("keep")).unwrap();
        fs::write(outside.join("keep/file"), b"x").unwrap();
        let root = t.path().join("root");
        fs::create_dir(&root).unwrap();
        let mut cur = File::open(&root).unwrap();
        for level in 0..3000 {
            let name = if level == 0 { "tree" } else { "d" };
            mkdirat(cur.as_fd(), name, Mode::from_raw_mode(0o755)).unwrap();
            let next = super::super::safepath::open_dir_at(cur.as_fd(), OsStr::new(name)).unwrap();
            cur = File::from(next);
            if level % 1000 == 0 {
                symlinkat(&outside, cur.as_fd(), "link").unwrap();
                symlinkat("../../../../..", cur.as_fd(), "up").unwrap();
                fs::write(
                    format!("/proc/self/fd/{}/f", std::os::fd::AsRawFd::as_raw_fd(&cur)),
                    b"f",
                )
                .unwrap();
            }
        }
        drop(cur);
        let rootfd = File::open(&root).unwrap();
        let removed = std::thread::Builder::new()
            .stack_size(128 << 10)
            .spawn(move || remove_at(rootfd.as_fd(), OsStr::new("tree")).unwrap())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(removed, Removed::Dir);
        assert!(!root.join("tree").exists());
        assert_eq!(fs::read(outside.join("keep/file")).unwrap(), b"x");
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        assert_eq!(
            remove_at(File::open(&root).unwrap().as_fd(), OsStr::new("tree")).unwrap(),
            Removed::Nothing
        );
    }
}
