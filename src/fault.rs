//! Fault injection for the crash tests: with `XRUN_FAULT=<point>` in its environment, xrun
//! kills itself with SIGKILL when it reaches the named point, as a power cut or `kill -9`
//! would. Compiled in always, inert without the variable (one environment look-up, cached).
//!
//! The points (see `tests/faults.rs` and docs/scale.md): `pull.after-download`,
//! `pull.after-verify`, `pull.mid-unpack`, `pull.before-record`, `run.after-mounts`,
//! `run.after-cgroups`, `run.after-exec`, `run.monitor`, `stop`, `rm`, `rm.before-release`, `rmi`,
//! `load`, `prune`.

use std::sync::OnceLock;

/// The variable naming the point.
pub const ENV: &str = "XRUN_FAULT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Kills this process with SIGKILL if `XRUN_FAULT` names `name`; otherwise does nothing.
pub fn point(name: &str) {
    if armed() == Some(name) {
        // SAFETY: plain syscalls; nothing after them runs.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
            libc::_exit(137);
        }
    }
}
