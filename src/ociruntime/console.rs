//! `process.consoleSize`: libcontainer 0.7 hands the terminal's master side to the console
//! socket without setting its size (runc sets it); here the size is set on the container's
//! terminal, through its init's stdin, once the container is created.

use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use oci_spec::runtime::Spec;

use super::OciError;

/// Sets the window size of the terminal of `pid` (a created container's init) to the
/// spec's `consoleSize`; nothing when the process has no terminal or no size.
pub fn apply_size(pid: i32, spec: &Spec) -> Result<(), OciError> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    let (true, Some(size)) = (process.terminal().unwrap_or(false), process.console_size()) else {
        return Ok(());
    };
    let path = format!("/proc/{pid}/fd/0");
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| OciError::io(format!("opening the container's terminal {path}"), e))?;
    let ws = libc::winsize {
        ws_row: size.height().min(u16::MAX as u64) as u16,
        ws_col: size.width().min(u16::MAX as u64) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which outlives the call.
    if unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(OciError::io(
            "setting the terminal's size",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}
