//! Protection against CVE-2019-5736 (a container overwriting the runtime binary through
//! `/proc/<pid>/exe` of a runtime process that joined it).
//!
//! Container processes are clones of the xrun process that creates or joins them
//! (libcontainer never re-executes), so while a container is being set up (and during
//! `exec`) processes inside it can see an xrun process and open its `/proc/<pid>/exe`. The
//! attack opens that link (`O_PATH`), waits for the runtime to exit (the kernel's
//! "text busy" guard ends then) and writes through it: the next runtime run by root executes
//! the attacker's code. Before creating or joining a container xrun therefore re-executes
//! itself from a file that cannot be written, by anyone, through any path a container can
//! reach:
//!
//! 0. **Persistent read-only overlay view (default).** The same read-only overlay as in 1.
//!    (the binary's directory over an empty directory, `/run/xrun/exe/.empty`), attached once
//!    per binary version at `/run/xrun/exe/<device-inode-size-mtime>/` (tmpfs: gone at
//!    reboot) and reused by every later run: a run then costs one `open` and the `execveat`.
//!    A detached mount (1.) is torn down when its last user goes, and that costs an RCU grace
//!    period (about 3 ms here) on every run, twice with its helper tmpfs. The view is as
//!    read-only as 1. (superblock level, no upper layer); it is only reachable from the host's
//!    mount namespace, where root is trusted anyway (containers pivot away from it). A view
//!    whose binary was replaced on disk is detached lazily when a new one is attached.
//!    `current_protection` accepts an attached overlay only under that directory.
//! 1. **Detached read-only overlay (fallback when `/run/xrun/exe` cannot be used;
//!    `_XRUN_SEAL=detached` forces it).** A new overlayfs superblock is
//!    made with `fsopen("overlay")` whose only layers are two lower ones, the binary's
//!    directory and an empty detached tmpfs (overlayfs wants two lower layers without an
//!    upper one and refuses one directory twice), no upper layer, turned into a mount object with `fsmount` and
//!    `MOUNT_ATTR_RDONLY`, the binary is opened through it, and every mount fd is closed: the
//!    mount was never attached to any mount namespace and lives only as long as the opened
//!    file. xrun then `execveat(fd, "", AT_EMPTY_PATH)`s that file, so `/proc/<pid>/exe` of
//!    every xrun process is a file on that mount. Why it is sound:
//!    - an overlay without an upper layer is read-only at the *superblock* level (not only a
//!      per-mount flag), so every open for writing through it fails with `EROFS`, whatever
//!      the opener's capabilities; it cannot be remounted read-write (there is nowhere to
//!      write to), and the mount is reachable by no path (detached), so it cannot be
//!      remounted at all; the kernel never hands out the lower (real) file from an overlay
//!      file, neither through `/proc/<pid>/exe`, `/proc/<pid>/fd`, nor `/proc/<pid>/map_files`
//!      (`open` through those links reopens the overlay file);
//!    - it costs no copy: the pages are the on-disk binary's page cache, shared by every xrun
//!      process, so a long-lived monitor pins nothing extra.
//!
//!    This is the approach runc ≥ 1.2 takes (facts only; no code carried over).
//! 2. **Sealed memfd copy (fallback, when the kernel lacks `fsopen` or overlayfs, or the
//!    binary's directory cannot be an overlay layer).** The binary is copied into a `memfd`
//!    sealed with `F_SEAL_SEAL|SHRINK|GROW|WRITE`, as youki's binary does: sealed memory cannot
//!    be written by anyone (`EPERM`). It costs a copy of the binary per run (tens of ms for a
//!    release binary) and RAM for as long as the process lives.
//!
//! `_XRUN_SEAL=memfd` forces the fallback (tests, measurements). Whether the current process
//! is protected is checked on the running image itself (`/proc/self/exe`): a write-sealed
//! memfd, or a read-only overlay whose mount is attached nowhere in this mount namespace;
//! the environment variable carrying the on-disk path (`_XRUN_SEALED_EXE`, used to bind the
//! init binary into containers, read-only) is inherited by children and therefore never
//! trusted alone.

use std::ffi::{CStr, CString};
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::RuntimeError;

/// Environment variable holding the on-disk path of the binary once sealed.
pub const SEALED_ENV: &str = "_XRUN_SEALED_EXE";

/// Environment variable choosing the method: `memfd` forces the copy.
pub const METHOD_ENV: &str = "_XRUN_SEAL";

// Linux UAPI <linux/mount.h>.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// How the running binary is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// A file on a detached, read-only overlay mount.
    Overlay,
    /// A write-sealed memfd copy.
    Memfd,
}

/// How the file behind `fd` is protected against writes, if it is.
pub fn protection_of(fd: &impl AsRawFd) -> Option<Protection> {
    let raw = fd.as_raw_fd();
    let seals = unsafe { libc::fcntl(raw, libc::F_GET_SEALS) };
    if seals >= 0 && seals & libc::F_SEAL_WRITE != 0 && seals & libc::F_SEAL_SEAL != 0 {
        return Some(Protection::Memfd);
    }
    let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(raw, &mut sfs) } != 0 {
        return None;
    }
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if sfs.f_type as i64 != OVERLAYFS_SUPER_MAGIC
        || unsafe { libc::fstatvfs(raw, &mut vfs) } != 0
        || vfs.f_flag & libc::ST_RDONLY == 0
    {
        return None;
    }
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let empty = c"";
    if unsafe {
        libc::statx(
            raw,
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    } != 0
        || stx.stx_mask & libc::STATX_MNT_ID == 0
    {
        return None;
    }
    let mnt = stx.stx_mnt_id.to_string();
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Detached, or xrun's own persistent view under PERSISTENT_DIR (see `open_persistent`).
    let usable = match info
        .lines()
        .find(|l| l.split(' ').next() == Some(mnt.as_str()))
    {
        None => true,
        Some(l) => l
            .split(' ')
            .nth(4)
            .is_some_and(|m| m.starts_with(&format!("{PERSISTENT_DIR}/"))),
    };
    usable.then_some(Protection::Overlay)
}

/// How this process's own binary is protected, if it is.
pub fn current_protection() -> Option<Protection> {
    let f = std::fs::File::open("/proc/self/exe").ok()?;
    protection_of(&f)
}

/// Whether this process runs from a protected binary.
pub fn is_sealed() -> bool {
    std::env::var_os(SEALED_ENV).is_some() && current_protection().is_some()
}

/// The on-disk xrun binary (also when running sealed).
pub fn original_exe() -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os(SEALED_ENV)
        && is_sealed()
    {
        return Ok(PathBuf::from(p));
    }
    std::fs::read_link("/proc/self/exe").map_err(|e| RuntimeError::io("reading /proc/self/exe", e))
}

fn last_err(what: &str) -> RuntimeError {
    RuntimeError::io(what, std::io::Error::last_os_error())
}

fn cstr(s: &[u8]) -> Result<CString, RuntimeError> {
    CString::new(s).map_err(|_| RuntimeError::BadInput("a path has a NUL byte".into()))
}

fn fsconfig_string(fs: &OwnedFd, key: &CStr, value: &CStr) -> bool {
    unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            key.as_ptr(),
            value.as_ptr(),
            0,
        ) == 0
    }
}

/// Escapes `:`, `,` and `\` for overlayfs' `lowerdir=` list syntax.
fn escape_layer(dir: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len());
    for &b in dir {
        if matches!(b, b':' | b',' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Opens `exe` through a private read-only overlay mount that is attached nowhere (see the
/// module doc). The returned fd is the only thing keeping that mount alive.
pub fn open_protected(exe: &Path) -> Result<OwnedFd, RuntimeError> {
    let (dir, name) = dir_and_name(exe)?;
    // Overlayfs wants two lower layers when there is no upper one, and refuses a directory
    // given twice (overlapping layers): the second is an empty, detached tmpfs.
    let empty = create_and_mount(&fs_context(c"tmpfs")?)?;
    let empty_path = PathBuf::from(format!("/proc/self/fd/{}", empty.as_raw_fd()));
    let fs = overlay_context(dir, &empty_path)?;
    finish_protected(fs, empty, name)
}

fn dir_and_name(exe: &Path) -> Result<(&Path, &std::ffi::OsStr), RuntimeError> {
    let dir = exe
        .parent()
        .ok_or_else(|| RuntimeError::BadInput(format!("{} has no directory", exe.display())))?;
    let name = exe
        .file_name()
        .ok_or_else(|| RuntimeError::BadInput(format!("{} has no file name", exe.display())))?;
    Ok((dir, name))
}

/// An overlay superblock context (not created yet) with the two lower layers `top`, `bottom`.
fn overlay_context(top: &Path, bottom: &Path) -> Result<OwnedFd, RuntimeError> {
    let top_c = cstr(top.as_os_str().as_bytes())?;
    let bottom_c = cstr(bottom.as_os_str().as_bytes())?;
    let fs = fs_context(c"overlay")?;
    // `lowerdir+` (Linux 6.8) takes a path without escaping; older kernels take a list.
    if fsconfig_string(&fs, c"lowerdir+", &top_c) && fsconfig_string(&fs, c"lowerdir+", &bottom_c) {
        return Ok(fs);
    }
    let fs = fs_context(c"overlay")?;
    let mut list = escape_layer(top.as_os_str().as_bytes());
    list.push(b':');
    list.extend_from_slice(&escape_layer(bottom.as_os_str().as_bytes()));
    if !fsconfig_string(&fs, c"lowerdir", &cstr(&list)?) {
        return Err(last_err("configuring the overlay of the xrun binary"));
    }
    Ok(fs)
}

/// Where the persistent protected views of xrun binaries are attached (see the module doc).
pub const PERSISTENT_DIR: &str = "/run/xrun/exe";

/// Opens `exe` through the persistent read-only overlay of its directory under
/// [`PERSISTENT_DIR`]`/<key>` (the key names the binary's identity: device, inode, size,
/// change time), attaching it first when it is not there yet. Costs no mount work once the
/// view exists; a detached overlay costs an RCU grace period when its last user goes.
pub fn open_persistent(exe: &Path) -> Result<OwnedFd, RuntimeError> {
    use std::os::unix::fs::MetadataExt;
    let (dir, name) = dir_and_name(exe)?;
    let meta = std::fs::metadata(exe).map_err(|e| RuntimeError::io("the xrun binary", e))?;
    let key = format!(
        "{:x}-{:x}-{:x}-{:x}.{:x}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let base = Path::new(PERSISTENT_DIR);
    let view = base.join(&key);
    let matches = |m: &std::fs::Metadata| {
        m.size() == meta.size() && m.mtime() == meta.mtime() && m.mtime_nsec() == meta.mtime_nsec()
    };
    let open_view = || -> Option<OwnedFd> {
        let f = std::fs::File::open(view.join(name)).ok()?;
        let fd = OwnedFd::from(f);
        let m = std::fs::File::from(fd.try_clone().ok()?).metadata().ok()?;
        (matches(&m) && protection_of(&fd) == Some(Protection::Overlay)).then_some(fd)
    };
    if let Some(fd) = open_view() {
        return Ok(fd);
    }
    // On tmpfs (mounted first if need be, so nothing of ours ends up under it).
    super::rundir::ensure();
    std::fs::create_dir_all(base).map_err(|e| RuntimeError::io("creating /run/xrun/exe", e))?;
    let lock = std::fs::File::create(base.join(".lock"))
        .map_err(|e| RuntimeError::io("locking /run/xrun/exe", e))?;
    <std::fs::File as fs4::FileExt>::lock(&lock)
        .map_err(|e| RuntimeError::io("locking /run/xrun/exe", e))?;
    if let Some(fd) = open_view() {
        return Ok(fd);
    }
    let empty = base.join(".empty");
    std::fs::create_dir_all(&empty).map_err(|e| RuntimeError::io("creating /run/xrun/exe", e))?;
    if std::fs::read_dir(&empty).map_or(true, |mut d| d.next().is_some()) {
        return Err(RuntimeError::Runtime(format!(
            "{} is not an empty directory",
            empty.display()
        )));
    }
    std::fs::create_dir_all(&view).map_err(|e| RuntimeError::io("creating /run/xrun/exe", e))?;
    std::fs::write(
        base.join(format!("{key}.source")),
        exe.as_os_str().as_bytes(),
    )
    .map_err(|e| RuntimeError::io("creating /run/xrun/exe", e))?;
    let fs = overlay_context(dir, &empty)?;
    let mnt = create_and_mount(&fs)?;
    let target = cstr(view.as_os_str().as_bytes())?;
    // SAFETY: plain syscall on descriptors and a C string this function owns.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            target.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(last_err("attaching the overlay of the xrun binary"));
    }
    drop(mnt);
    drop_stale_views(base, &key);
    open_view().ok_or_else(|| {
        RuntimeError::Runtime("the persistent overlay of the xrun binary is not usable".into())
    })
}

/// Detaches the views whose binary was replaced or removed on disk since (judged from the
/// binary's path, recorded next to the view: an overlay may keep showing a replaced lower
/// file); the views of other binaries in use (debug, release builds) stay.
fn drop_stale_views(base: &Path, keep: &str) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let key = e.file_name().to_string_lossy().into_owned();
        if key.starts_with('.') || key.contains(".source") || key == keep {
            continue;
        }
        let record = base.join(format!("{key}.source"));
        let current = std::fs::read(&record)
            .ok()
            .and_then(|p| std::fs::metadata(std::ffi::OsStr::from_bytes(&p)).ok())
            .map(|m| {
                format!(
                    "{:x}-{:x}-{:x}-{:x}.{:x}",
                    m.dev(),
                    m.ino(),
                    m.size(),
                    m.mtime(),
                    m.mtime_nsec()
                )
            });
        if current.as_deref() == Some(key.as_str()) {
            continue;
        }
        if let Ok(c) = cstr(e.path().as_os_str().as_bytes()) {
            // SAFETY: plain syscalls on a C string; lazy, so running users keep their file.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                libc::rmdir(c.as_ptr());
            }
            let _ = std::fs::remove_file(record);
        }
    }
}

fn fs_context(fstype: &CStr) -> Result<OwnedFd, RuntimeError> {
    let raw = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) };
    if raw < 0 {
        return Err(last_err(&format!("fsopen({})", fstype.to_string_lossy())));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

/// Makes the configured superblock and a read-only mount of it, attached nowhere.
fn create_and_mount(fs: &OwnedFd) -> Result<OwnedFd, RuntimeError> {
    if unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    } != 0
    {
        return Err(last_err("creating a private mount"));
    }
    let raw = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fs.as_raw_fd(),
            FSMOUNT_CLOEXEC,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        )
    };
    if raw < 0 {
        return Err(last_err("fsmount"));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(raw as i32) })
}

fn finish_protected(
    fs: OwnedFd,
    empty: OwnedFd,
    name: &std::ffi::OsStr,
) -> Result<OwnedFd, RuntimeError> {
    let mnt = create_and_mount(&fs)?;
    drop(fs);
    drop(empty);
    let name_c = cstr(name.as_bytes())?;
    let raw = unsafe {
        libc::openat(
            mnt.as_raw_fd(),
            name_c.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if raw < 0 {
        return Err(last_err("opening the xrun binary through its overlay"));
    }
    drop(mnt);
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    match protection_of(&fd) {
        Some(Protection::Overlay) => Ok(fd),
        _ => Err(RuntimeError::Runtime(
            "the overlay of the xrun binary is not read-only and detached".into(),
        )),
    }
}

/// A write-sealed memfd copy of the running binary (the fallback).
pub fn sealed_copy() -> Result<OwnedFd, RuntimeError> {
    let name = c"xrun";
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(last_err("memfd_create"));
    }
    let mut out = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    let mut input = std::fs::File::open("/proc/self/exe")
        .map_err(|e| RuntimeError::io("opening /proc/self/exe", e))?;
    std::io::copy(&mut input, &mut out)
        .map_err(|e| RuntimeError::io("copying the xrun binary", e))?;
    out.flush().ok();
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    if unsafe { libc::fcntl(out.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(last_err("sealing the xrun copy"));
    }
    Ok(out.into())
}

/// Environment variable telling a re-executed monitor which container process to wait for.
const RESUME_ENV: &str = "_XRUN_MONITOR_WAIT";

fn is_monitor_resume() -> bool {
    let args: Vec<_> = std::env::args_os().collect();
    std::env::var_os(RESUME_ENV).is_some()
        && args.len() >= 3
        && args[args.len() - 3] == "internal"
        && args[args.len() - 2] == "monitor"
}

/// What a monitor re-executed from disk ([`resume_monitor_from_disk`]) takes over.
pub struct MonitorResume {
    /// The container process to keep waiting for.
    pub pid: i32,
    /// The read ends of its output pipes, when it has them.
    pub pipes: Option<(OwnedFd, OwnedFd)>,
    /// The attach socket's listener, when it is served (connections made meanwhile wait
    /// in its backlog).
    pub listener: Option<std::os::unix::net::UnixListener>,
}

/// In a monitor that re-executed itself from disk ([`resume_monitor_from_disk`]): what it
/// takes over (removed from the environment; the descriptors become close-on-exec again).
pub fn take_monitor_resume() -> Option<MonitorResume> {
    if !is_monitor_resume() {
        return None;
    }
    let value = std::env::var(RESUME_ENV).ok()?;
    // SAFETY: the monitor is single-threaded at this point (nothing started yet).
    unsafe { std::env::remove_var(RESUME_ENV) };
    let (value, listener) = match value.split_once('/') {
        Some((v, l)) => (v.to_string(), l.parse::<i32>().ok().filter(|fd| *fd > 2)),
        None => (value, None),
    };
    let listener = listener.map(|fd| {
        // SAFETY: a descriptor this process inherited for exactly this purpose.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        // SAFETY: as above; nothing else owns it.
        std::os::unix::net::UnixListener::from(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    let mut parts = value.split(':');
    let pid = parts.next()?.parse().ok()?;
    let fds: Vec<i32> = parts.filter_map(|p| p.parse().ok()).collect();
    let pipes = match fds[..] {
        [out, err] if out > 2 && err > 2 && out != err => {
            for fd in [out, err] {
                // SAFETY: descriptors this process inherited for exactly this purpose.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
            // SAFETY: as above; nothing else owns them.
            Some(unsafe { (OwnedFd::from_raw_fd(out), OwnedFd::from_raw_fd(err)) })
        }
        _ => None,
    };
    Some(MonitorResume {
        pid,
        pipes,
        listener,
    })
}

/// Re-executes this monitor (`xrun internal monitor ID`, with container `id`) from the on-disk binary, told to
/// wait for container process `pid` (its child, which stays its child across exec) and to
/// copy its output `pipes` (kept open across the exec) into its log, and to serve the attach
/// socket `listener`. Used once the container runs: no xrun process is inside it any more,
/// so the protection is no longer needed and the memfd copy is dropped. Returns only on
/// error.
pub fn resume_monitor_from_disk(
    id: &str,
    pid: i32,
    pipes: Option<&(OwnedFd, OwnedFd)>,
    listener: Option<&std::os::unix::net::UnixListener>,
) -> RuntimeError {
    let exe = match original_exe() {
        Ok(e) => e,
        Err(e) => return e,
    };
    let file = match std::fs::File::open(&exe) {
        Ok(f) => f,
        Err(e) => return RuntimeError::io("opening the xrun binary", e),
    };
    // The same command line, with the container's id last (a spare monitor got it later).
    let mut args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    if let (Some(last), Ok(id)) = (args.last_mut(), CString::new(id)) {
        *last = id;
    }
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_ENV && k != RESUME_ENV)
        .filter_map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).ok()
        })
        .collect();
    let mut value = pid.to_string();
    if let Some((out, err)) = pipes {
        for fd in [out, err] {
            // SAFETY: clearing close-on-exec on descriptors this process owns.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) };
        }
        value = format!("{pid}:{}:{}", out.as_raw_fd(), err.as_raw_fd());
    }
    if let Some(l) = listener {
        // SAFETY: clearing close-on-exec on a descriptor this process owns.
        unsafe { libc::fcntl(l.as_raw_fd(), libc::F_SETFD, 0) };
        value = format!("{value}/{}", l.as_raw_fd());
    }
    if let Ok(v) = CString::new(format!("{RESUME_ENV}={value}")) {
        env.push(v);
    }
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let err = nix::unistd::fexecve(file.as_raw_fd(), &args, &env).unwrap_err();
    let fds = pipes
        .into_iter()
        .flat_map(|(o, e)| [o.as_raw_fd(), e.as_raw_fd()])
        .chain(listener.map(|l| l.as_raw_fd()));
    for fd in fds {
        // SAFETY: as above, undone after the failed exec.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    RuntimeError::io("re-executing the monitor", err.into())
}

/// Re-executes the current command line from a protected binary (see the module doc),
/// unless already protected. Returns only when already protected (or on error).
pub fn ensure_sealed() -> Result<(), RuntimeError> {
    // A monitor resumed from disk creates and joins no container any more.
    if is_sealed() || is_monitor_resume() {
        return Ok(());
    }
    let exe = original_exe()?;
    let want_memfd = std::env::var_os(METHOD_ENV).is_some_and(|m| m == "memfd");
    let fd = if want_memfd {
        sealed_copy()?
    } else {
        let persistent = if std::env::var_os(METHOD_ENV).is_some_and(|m| m == "detached") {
            Err(RuntimeError::Runtime("_XRUN_SEAL=detached".into()))
        } else {
            open_persistent(&exe)
        };
        match persistent.or_else(|e| {
            tracing::debug!("persistent overlay of the binary: {e}; a detached one instead");
            open_protected(&exe)
        }) {
            Ok(fd) => fd,
            Err(e) => {
                tracing::debug!("read-only overlay of the binary: {e}; copying it instead");
                sealed_copy()?
            }
        }
    };
    reexec(&fd, &exe)
}

/// Executes `fd` (a protected xrun binary) with this process's arguments and environment,
/// recording `exe` as the on-disk path. Returns only on error.
fn reexec(fd: &OwnedFd, exe: &Path) -> Result<(), RuntimeError> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != SEALED_ENV)
        .map(|(k, v)| {
            let mut b = k.as_bytes().to_vec();
            b.push(b'=');
            b.extend_from_slice(v.as_bytes());
            CString::new(b).unwrap_or_default()
        })
        .collect();
    let mut sealed = format!("{SEALED_ENV}=").into_bytes();
    sealed.extend_from_slice(exe.as_os_str().as_bytes());
    env.push(cstr(&sealed)?);
    let err = nix::unistd::fexecve(fd.as_raw_fd(), &args, &env).unwrap_err();
    Err(RuntimeError::io(
        "re-executing from the protected binary",
        err.into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn overlay_copy_is_read_only_and_detached() {
        if !is_root() {
            eprintln!("skipping: needs root (fsopen)");
            return;
        }
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let before = std::fs::read(&exe).unwrap();
        let fd = match open_protected(&exe) {
            Ok(fd) => fd,
            Err(e) => {
                eprintln!("skipping: no overlay here ({e})");
                return;
            }
        };
        assert_eq!(protection_of(&fd), Some(Protection::Overlay));
        // Reopening for writing, as an attacker holding the fd (or /proc/<pid>/exe) would.
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let e = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        let e = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
        // Same content as the binary, and the binary is untouched.
        let mut via = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut via).unwrap();
        assert!(via == before);
        assert!(std::fs::read(&exe).unwrap() == before);
        // A plain file (the on-disk binary) is not mistaken for a protected one.
        let plain = std::fs::File::open(&exe).unwrap();
        assert_eq!(protection_of(&plain), None);
    }

    #[test]
    fn memfd_copy_is_sealed() {
        let fd = sealed_copy().unwrap();
        assert_eq!(protection_of(&fd), Some(Protection::Memfd));
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let e = f.write_all(b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
    }

    #[test]
    fn layer_paths_are_escaped() {
        assert_eq!(escape_layer(b"/a:b,c\\d"), b"/a\\:b\\,c\\\\d".to_vec());
    }
}
