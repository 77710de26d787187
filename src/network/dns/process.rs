//! The aardvark-dns process: finding the binary, starting it, telling it to reload, stopping
//! it, and knowing when it serves (facts from aardvark-dns 1.4's source).
//!
//! `aardvark-dns --config DIR -p PORT run` forks: the child calls `setsid`, points its stdio
//! at `/dev/null`, writes its pid to `DIR/aardvark.pid`, tells the parent it is ready, and the
//! parent exits 0. The child registers its SIGHUP handler, reads every file of `DIR` and binds
//! one UDP socket per listen address (no TCP). On SIGHUP it closes them all, reads the files
//! again and binds anew; when no file lists an address it removes its pid file and exits.
//!
//! "Serving" is therefore seen in `/proc`: a UDP socket of the server's pid bound to the
//! gateway's port, and after a reload one that is new (its inode was not there before).

use std::collections::HashSet;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::DnsError;

/// The pid file aardvark-dns writes into its config directory (and skips when reading it).
pub(super) const PID_FILE: &str = "aardvark.pid";

/// Where Debian, Fedora and upstream's `make install` put the binary (it is not on `PATH`).
const CANDIDATES: &[&str] = &[
    "/usr/lib/podman/aardvark-dns",
    "/usr/libexec/podman/aardvark-dns",
    "/usr/local/lib/podman/aardvark-dns",
    "/usr/local/libexec/podman/aardvark-dns",
];

/// How long a start, a reload or a stop may take before xrun gives up on it.
const PATIENCE: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);

/// The aardvark-dns binary: the first of the usual places, then `PATH`.
pub(super) fn find_binary() -> Result<PathBuf, DnsError> {
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("aardvark-dns"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .find(|p| is_executable(p))
        .ok_or_else(|| DnsError::NotInstalled {
            looked_in: CANDIDATES.join(", ") + " and PATH",
        })
}

/// True when `path` is a file someone may execute.
pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The pid of the aardvark-dns serving `dir`, if one runs: the pid file names a live
/// process (not a zombie) whose command line is aardvark-dns with this config directory.
/// A pid file naming anything else is stale (the server died, the pid was reused).
pub(super) fn running_pid(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid <= 0 || !is_alive(pid) {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_aardvark = args.first().is_some_and(|a0| a0.ends_with(b"aardvark-dns"));
    let dir = dir.as_os_str().as_encoded_bytes();
    let same_dir = args.windows(2).any(|w| w[0] == b"--config" && w[1] == dir);
    (is_aardvark && same_dir).then_some(pid)
}

/// True while `pid` exists and is not a zombie (nothing may reap a daemon here soon: pid 1
/// is not always an init that reaps).
fn is_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S ...`: the state follows the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .is_some_and(|state| state != 'Z' && state != 'X')
}

/// Starts aardvark-dns on `dir` and returns its pid once its pid file is written.
pub(super) fn start(binary: &Path, dir: &Path, port: u16) -> Result<i32, DnsError> {
    let mut cmd = Command::new(binary);
    cmd.arg("--config")
        .arg(dir)
        .arg("-p")
        .arg(port.to_string())
        .arg("run")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: signal(2) and close_range(2) are async-signal-safe; the closure touches
    // nothing else. The daemon must die on SIGTERM even when its starter ignores it (a
    // monitor may), and must not keep any descriptor of its starter's open for ever (a pipe
    // someone waits on, a lock): all but stdio close at exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            );
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| DnsError::Start {
        detail: format!("cannot run {}: {e}", binary.display()),
    })?;
    // The parent waits for its child's "ready"; a child that dies first leaves it waiting
    // for ever, so it gets a deadline.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DnsError::Start {
                    detail: format!("{} did not report ready", binary.display()),
                });
            }
        }
    };
    if !status.success() {
        let mut said = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut said);
        }
        return Err(DnsError::Start {
            detail: format!("{status}: {}", one_line(&said)),
        });
    }
    running_pid(dir).ok_or_else(|| DnsError::Start {
        detail: format!("no live server behind {}", dir.join(PID_FILE).display()),
    })
}

/// Asks the server to read its files again.
pub(super) fn reload(pid: i32) -> Result<(), DnsError> {
    signal(pid, libc::SIGHUP)
}

/// Stops the server and waits until it is gone; removes its pid file.
pub(super) fn stop(pid: i32, dir: &Path) -> Result<(), DnsError> {
    signal(pid, libc::SIGTERM)?;
    if !wait_until(|| !is_alive(pid)) {
        signal(pid, libc::SIGKILL)?;
        if !wait_until(|| !is_alive(pid)) {
            return Err(DnsError::Stop { pid });
        }
    }
    remove_pid_file(dir)
}

/// Removes a pid file that names no server (any more).
pub(super) fn remove_pid_file(dir: &Path) -> Result<(), DnsError> {
    let path = dir.join(PID_FILE);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(DnsError::Io { path, source: e }),
        _ => Ok(()),
    }
}

fn signal(pid: i32, sig: libc::c_int) -> Result<(), DnsError> {
    // SAFETY: kill(2) with a pid checked to be aardvark-dns's; no memory is involved.
    if unsafe { libc::kill(pid, sig) } == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        return Ok(());
    }
    Err(DnsError::Signal { pid, source: err })
}

/// The UDP sockets `pid` has bound: (address, socket inode).
pub(super) fn udp_sockets(pid: i32) -> Vec<(SocketAddrV4, u64)> {
    let owned: HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/udp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(parse_udp_line)
        .filter(|(_, inode)| owned.contains(inode))
        .collect()
}

/// One line of `/proc/net/udp`: `sl local rem st tx:rx tr:when retr uid timeout inode …`,
/// the local address as `%08X:%04X` of the raw (network order) address and the host-order port.
fn parse_udp_line(line: &str) -> Option<(SocketAddrV4, u64)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr, port) = fields.get(1)?.split_once(':')?;
    let raw = u32::from_str_radix(addr, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some((
        SocketAddrV4::new(Ipv4Addr::from(raw.to_ne_bytes()), port),
        inode,
    ))
}

/// Waits until `pid` has a UDP socket on `addr` that is not one of `old` (its inodes).
pub(super) fn wait_bound(pid: i32, addr: SocketAddrV4, old: &HashSet<u64>) -> bool {
    wait_until(|| {
        udp_sockets(pid)
            .iter()
            .any(|(a, inode)| *a == addr && !old.contains(inode))
    })
}

/// Waits until `pid` has no UDP socket on `addr` (or is gone).
pub(super) fn wait_unbound(pid: i32, addr: SocketAddrV4) -> bool {
    wait_until(|| !is_alive(pid) || udp_sockets(pid).iter().all(|(a, _)| *a != addr))
}

fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() { "no output".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_udp_lines() {
        // 10.99.71.1:53 as the kernel prints it on a little-endian host.
        let raw = u32::from_ne_bytes([10, 99, 71, 1]);
        let line = format!(
            "  12: {raw:08X}:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0"
        );
        assert_eq!(
            parse_udp_line(&line),
            Some((SocketAddrV4::new(Ipv4Addr::new(10, 99, 71, 1), 53), 4242))
        );
        assert_eq!(parse_udp_line("  sl  local_address rem_address"), None);
    }

    #[test]
    fn a_pid_file_naming_another_process_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        // Our own pid is alive but is not aardvark-dns serving this directory.
        std::fs::write(dir.path().join(PID_FILE), std::process::id().to_string()).unwrap();
        assert_eq!(running_pid(dir.path()), None);
        std::fs::write(dir.path().join(PID_FILE), "garbage").unwrap();
        assert_eq!(running_pid(dir.path()), None);
    }
}
