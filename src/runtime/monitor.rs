//! The per-container monitor of a detached container (`xrun internal monitor ID`): started
//! by [`crate::runtime::lifecycle::start_detached`] double-forked and `setsid`, it starts the
//! container with its output going to `log`, reports readiness on fd 3 (`OK`, or
//! `ERR <code> <message>`), keeps the container's terminal or stdin and serves its attach
//! socket ([`crate::runtime::attach`]), reaps the container, records the exit status and
//! cleans up.
//! The body is [`crate::runtime::lifecycle::monitor`].
//!
//! # Spare monitors
//!
//! A long-lived front end (the API service) keeps one monitor started ahead of need
//! ([`SpareMonitors`]): `xrun internal monitor -` starts, protects its binary (the seal's
//! re-execution), then waits for the id of the container it is to start on fd 4 (one line).
//! A start hands the id to the spare and reads its readiness as usual, so the fork, the two
//! executions and the start-up of the monitor are out of the start's way; a new spare is made
//! in the background. The spare is double-forked and `setsid` like any monitor, so the
//! container it then owns survives the service; a spare whose fd 4 reaches its end (the
//! service went) exits without doing anything.
//!
//! # Its own mount namespace
//!
//! The monitor moves into a mount namespace of its own ([`private_mounts`], a slave of the
//! host's: host mounts still reach it, its mounts do not reach the host) before it mounts the
//! container's root file system. The host's mount table then does not grow by one overlay per
//! running container (each new container's namespace is a copy of its monitor's, and the
//! runtime reads it many times per start: a host table growing with the number of containers
//! made every start slower), and the mount goes with the namespace when the monitor ends,
//! killed or not. From the host, the container's root is `/proc/<pid>/root`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::RuntimeError;

/// The id argument of a spare monitor (it reads the real id from fd 4).
pub const SPARE_ID: &str = "-";

/// Set by the monitor: its container's root goes into a mount namespace of its own.
static WANT_PRIVATE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The mount namespace this process started in, once the calling thread left it.
static HOST_MOUNTS: std::sync::OnceLock<OwnedFd> = std::sync::OnceLock::new();

/// In the monitor: asks for [`private_mounts`] at the start of the native route's launch
/// (after the network namespace is made and mounted in the host's table, before the root
/// file system is mounted).
pub fn want_private_mounts() {
    WANT_PRIVATE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// If [`want_private_mounts`] was called: moves the calling thread (the monitor's main
/// thread, which starts the container and cleans up after it) into a new mount namespace in
/// which every mount is a slave of the host's (see the module doc). `false` when it did not
/// (not wanted, or no `CAP_SYS_ADMIN`: the mounts then go to the host's table).
pub fn private_mounts() -> bool {
    use nix::mount::MsFlags;
    if !WANT_PRIVATE.load(std::sync::atomic::Ordering::Relaxed) || HOST_MOUNTS.get().is_some() {
        return false;
    }
    let host = match std::fs::File::open("/proc/thread-self/ns/mnt") {
        Ok(f) => OwnedFd::from(f),
        Err(e) => {
            tracing::debug!("monitor: no mount namespace of its own: {e}");
            return false;
        }
    };
    if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
        tracing::debug!("monitor: no mount namespace of its own: {e}");
        return false;
    }
    let _ = HOST_MOUNTS.set(host);
    match nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    ) {
        Ok(()) => true,
        Err(e) => {
            // Shared mounts would stay peers of the host's: mounts would propagate back.
            tracing::warn!("monitor: making its mounts slaves of the host's: {e}");
            false
        }
    }
}

/// Runs `f` in the host's mount namespace (on a short-lived thread of its own) when the
/// caller left it through [`private_mounts`], else right here: the network namespace's bind
/// mount is made and removed in the host's table, where the other xrun commands find it.
pub fn in_host_mounts<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let Some(host) = HOST_MOUNTS.get() else {
        return f();
    };
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            // A thread may only change its mount namespace with its own file system state.
            let entered = nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
                .and_then(|()| nix::sched::setns(host, nix::sched::CloneFlags::CLONE_NEWNS));
            if let Err(e) = entered {
                tracing::warn!("monitor: entering the host's mount namespace: {e}");
            }
            f()
        });
        match t.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    })
}

/// One malloc arena for the whole monitor (its threads only copy output and serve the attach
/// socket: a per-thread arena would keep its own pages for nothing). Call it first.
pub fn lean_allocator() {
    // SAFETY: a plain setting of the C allocator.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
}

/// Gives back the memory the start needed and the idle monitor does not: freed heap pages
/// (`malloc_trim`) and the main thread's stack pages below what it uses now (the runtime's
/// deep calls touched them once). Call it once the container runs, from the main thread.
pub fn shrink() {
    // SAFETY: returns free heap memory to the kernel; no pointer is involved.
    unsafe { libc::malloc_trim(0) };
    trim_main_stack();
}

/// `MADV_DONTNEED` on the main thread's stack below the current frame (less a margin for the
/// calls still to come from here and for signal frames): those pages are free, and the kernel
/// hands out zeroed ones again if the stack grows back.
fn trim_main_stack() {
    const MARGIN: usize = 64 * 1024;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(line) = maps.lines().find(|l| l.ends_with("[stack]")) else {
        return;
    };
    let Some((lo, hi)) = line
        .split(' ')
        .next()
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| {
            Some((
                usize::from_str_radix(a, 16).ok()?,
                usize::from_str_radix(b, 16).ok()?,
            ))
        })
    else {
        return;
    };
    let here = 0u8;
    let sp = std::ptr::addr_of!(here) as usize;
    if sp < lo || sp >= hi {
        return; // Not on the main thread's stack.
    }
    let page = 4096;
    let end = sp.saturating_sub(MARGIN) & !(page - 1);
    if end > lo {
        // SAFETY: [lo, end) is the unused part of this thread's own stack mapping, below the
        // current frame and its margin: nothing lives there.
        unsafe { libc::madvise(lo as *mut libc::c_void, end - lo, libc::MADV_DONTNEED) };
    }
}

/// The readiness pipe inherited as fd 3, if open.
pub fn ready_fd() -> Option<OwnedFd> {
    (unsafe { libc::fcntl(3, libc::F_GETFD) } >= 0).then(|| unsafe { OwnedFd::from_raw_fd(3) })
}

/// In a spare monitor: waits for the id of the container to start (a line on fd 4); `None`
/// when the line never comes (the front end went) or is not a container id.
pub fn wait_for_assignment() -> Option<String> {
    if unsafe { libc::fcntl(4, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: fd 4 is the assignment pipe this process inherited for this purpose.
    let mut f = File::from(unsafe { OwnedFd::from_raw_fd(4) });
    let mut line = Vec::new();
    let mut b = [0u8; 80];
    while line.len() <= 80 {
        match f.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => line.extend_from_slice(&b[..n]),
        }
        if line.contains(&b'\n') {
            break;
        }
    }
    let id = String::from_utf8(line).ok()?;
    let id = id.trim_end_matches('\n');
    (id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

/// Starts a monitor process for container `id` (or a spare, [`SPARE_ID`], reading its id
/// from `assignment`) over store root `root`, double-forked and `setsid`; returns the read
/// end of its readiness pipe.
pub fn spawn(
    exe: &Path,
    root: &Path,
    id: &str,
    assignment: Option<OwnedFd>,
) -> Result<File, RuntimeError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let wfd = w.as_raw_fd();
    let afd: RawFd = assignment.as_ref().map_or(-1, |a| a.as_raw_fd());
    let mut cmd = Command::new(exe);
    cmd.args(["internal", "monitor", id])
        .env("XRUN_ROOT", root)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            match libc::fork() {
                -1 => return Err(std::io::Error::last_os_error()),
                0 => {}
                _ => libc::_exit(0),
            }
            // Out of the way of 3 and 4 first (either may be one of them).
            let ready = libc::fcntl(wfd, libc::F_DUPFD, 10);
            let assign = if afd >= 0 {
                libc::fcntl(afd, libc::F_DUPFD, 10)
            } else {
                -1
            };
            if ready < 0 || libc::dup2(ready, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(ready);
            if assign >= 0 {
                if libc::dup2(assign, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(assign);
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| RuntimeError::io("starting the monitor", e))?;
    let _ = child.wait();
    drop(w);
    drop(assignment);
    Ok(File::from(r))
}

/// A spare monitor: where its container id goes, and its readiness pipe.
#[derive(Debug)]
pub struct Spare {
    assign: File,
    ready: File,
}

impl Spare {
    /// Hands container `id` to the spare; its readiness pipe then, or `None` when the spare
    /// is gone (start another monitor instead).
    pub fn assign(mut self, id: &str) -> Option<File> {
        self.assign.write_all(format!("{id}\n").as_bytes()).ok()?;
        Some(self.ready)
    }
}

/// One spare monitor kept ready for the next start over a store root (see the module doc).
#[derive(Debug)]
pub struct SpareMonitors {
    root: PathBuf,
    slot: Mutex<Option<Spare>>,
}

impl SpareMonitors {
    /// Spare monitors over store root `root`; the first is made at once (in the background).
    pub fn new(root: &Path) -> Arc<SpareMonitors> {
        let s = Arc::new(SpareMonitors {
            root: root.to_path_buf(),
            slot: Mutex::new(None),
        });
        s.refill();
        s
    }

    /// The spare, if one is ready; another is made in the background.
    pub fn take(self: &Arc<SpareMonitors>) -> Option<Spare> {
        let spare = self.slot.lock().ok()?.take();
        self.refill();
        spare
    }

    /// Makes a spare in the background unless one is there.
    fn refill(self: &Arc<SpareMonitors>) {
        let me = self.clone();
        std::thread::spawn(move || {
            if me.slot.lock().map(|s| s.is_some()).unwrap_or(true) {
                return;
            }
            match make_spare(&me.root) {
                Ok(spare) => {
                    if let Ok(mut slot) = me.slot.lock()
                        && slot.is_none()
                    {
                        *slot = Some(spare);
                    }
                    // Otherwise a concurrent refill won: this one ends with its pipe.
                }
                Err(e) => tracing::warn!("starting a spare container monitor: {e}"),
            }
        });
    }
}

fn make_spare(root: &Path) -> Result<Spare, RuntimeError> {
    let exe = super::seal::original_exe()?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let ready = spawn(&exe, root, SPARE_ID, Some(r))?;
    Ok(Spare {
        assign: File::from(w),
        ready,
    })
}
