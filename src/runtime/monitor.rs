//! The per-container monitor of a detached container (`xrun internal monitor ID`): started
//! by [`crate::runtime::lifecycle::start_detached`] double-forked and `setsid`, it starts the
//! container with its output going to `log`, reports readiness on fd 3 (`OK`, or
//! `ERR <code> <message>`), keeps the container's terminal or stdin and serves its attach
//! socket ([`crate::runtime::attach`]), reaps the container, records the exit status and
//! cleans up.
//! The body is [`crate::runtime::lifecycle::monitor`].

use std::os::fd::{FromRawFd, OwnedFd};

/// The readiness pipe inherited as fd 3, if open.
pub fn ready_fd() -> Option<OwnedFd> {
    (unsafe { libc::fcntl(3, libc::F_GETFD) } >= 0).then(|| unsafe { OwnedFd::from_raw_fd(3) })
}
