//! What to do when a system limit that bites at scale stops a container operation: one
//! sentence appended to the error line (see `docs/scale.md`, "Limits that bite at scale").
//! The error itself stays as the system call reported it; the hint names the limit and the
//! way out.

/// The hint for an OS error number, `""` when the error is not a limit.
pub fn for_errno(errno: i32) -> &'static str {
    match errno {
        libc::ENOSPC => {
            "; the file system is full: the run directory (/run/xrun, a 64 MiB tmpfs when xrun \
             mounts it) holds each running container's bundle — remove containers or enlarge it \
             (mount -o remount,size=256m /run/xrun); the store root holds layers and logs — free \
             space there"
        }
        libc::EMFILE => {
            "; this process has too many open files: raise its limit (ulimit -n, up to the hard \
             limit) or run fewer containers at once"
        }
        libc::ENFILE => {
            "; the system's open file table is full: raise fs.file-max (sysctl) or stop \
             containers"
        }
        libc::EAGAIN => {
            "; no more processes: kernel.pid_max, the pids cgroup or ulimit -u is reached \
             (each detached container is at least its monitor and its PID 1) — stop containers \
             or raise kernel.pid_max (sysctl)"
        }
        _ => "",
    }
}

/// The hint for an error as text (a runtime's message that carries the errno by name or
/// its description), `""` when none applies or the text has one already.
pub fn for_text(text: &str) -> &'static str {
    if text.contains("; the file system is full")
        || text.contains("; this process has too many")
        || text.contains("; the system's open file")
        || text.contains("; no more processes")
    {
        return "";
    }
    if text.contains("ENOSPC") || text.contains("No space left on device") {
        for_errno(libc::ENOSPC)
    } else if text.contains("ENFILE") || text.contains("Too many open files in system") {
        for_errno(libc::ENFILE)
    } else if text.contains("EMFILE") || text.contains("Too many open files") {
        for_errno(libc::EMFILE)
    } else if (text.contains("EAGAIN") || text.contains("Resource temporarily unavailable"))
        && (text.contains("clone") || text.contains("fork"))
    {
        for_errno(libc::EAGAIN)
    } else {
        ""
    }
}

/// The hint for an I/O error (see [`for_errno`]).
pub fn for_io(e: &std::io::Error) -> &'static str {
    e.raw_os_error().map_or("", for_errno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_get_a_hint_and_other_errors_none() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(for_io(&full).contains("/run/xrun"));
        assert!(for_io(&std::io::Error::from_raw_os_error(libc::ENOENT)).is_empty());
        assert!(for_text("clone: EAGAIN: Resource temporarily unavailable").contains("pid_max"));
        // EAGAIN elsewhere (a non-blocking read) is not a process limit.
        assert!(for_text("read: EAGAIN").is_empty());
        assert!(for_text("open: Too many open files in system").contains("fs.file-max"));
        assert!(for_text("open: Too many open files (os error 24)").contains("ulimit -n"));
        // Once is enough (a monitor's message relayed by the front end).
        let once = format!("x: No space left on device{}", for_errno(libc::ENOSPC));
        assert!(for_text(&once).is_empty());
    }
}
