//! Protection against CVE-2019-5736 (a container overwriting the runtime binary through
//! `/proc/<pid>/exe` of a runtime process that joined it).
//!
//! Container processes are clones of the xrun process that creates them (libcontainer never
//! re-executes), so before creating or joining a container xrun re-executes itself from a
//! sealed `memfd` copy of its binary (`F_SEAL_SEAL|SHRINK|GROW|WRITE`), as youki's binary
//! does: `/proc/<pid>/exe` of every xrun process a container can see is then an anonymous,
//! immutable file, and the binary on disk is never reachable from inside. The on-disk path
//! is kept in `_XRUN_SEALED_EXE` (used to bind the init binary in, read-only).

use std::ffi::CString;
use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::RuntimeError;

/// Environment variable holding the on-disk path of the binary once sealed.
pub const SEALED_ENV: &str = "_XRUN_SEALED_EXE";

/// Whether this process runs from the sealed copy.
pub fn is_sealed() -> bool {
    std::env::var_os(SEALED_ENV).is_some()
        && std::fs::read_link("/proc/self/exe")
            .is_ok_and(|p| p.to_string_lossy().starts_with("/memfd:"))
}

/// The on-disk xrun binary (also when running sealed).
pub fn original_exe() -> Result<PathBuf, RuntimeError> {
    if let Some(p) = std::env::var_os(SEALED_ENV) {
        return Ok(PathBuf::from(p));
    }
    std::fs::read_link("/proc/self/exe").map_err(|e| RuntimeError::io("reading /proc/self/exe", e))
}

/// Re-executes the current command line from a sealed memfd copy of the binary, unless
/// already sealed. Returns only when already sealed (or on error).
pub fn ensure_sealed() -> Result<(), RuntimeError> {
    if is_sealed() {
        return Ok(());
    }
    let exe = original_exe()?;
    let name = CString::new("xrun").expect("static");
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(RuntimeError::io(
            "memfd_create",
            std::io::Error::last_os_error(),
        ));
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut out = std::fs::File::from(fd);
    let mut input = std::fs::File::open("/proc/self/exe")
        .map_err(|e| RuntimeError::io("opening /proc/self/exe", e))?;
    std::io::copy(&mut input, &mut out)
        .map_err(|e| RuntimeError::io("copying the xrun binary", e))?;
    out.flush().ok();
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    if unsafe { libc::fcntl(out.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
        return Err(RuntimeError::io(
            "sealing the xrun copy",
            std::io::Error::last_os_error(),
        ));
    }
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
    env.push(
        CString::new(sealed).map_err(|_| RuntimeError::BadInput("binary path has a NUL".into()))?,
    );
    let err = nix::unistd::fexecve(out.as_raw_fd(), &args, &env).unwrap_err();
    Err(RuntimeError::io(
        "re-executing from the sealed copy",
        err.into(),
    ))
}
