//! Attaching to a detached container: its monitor keeps the container's terminal (or its
//! stdin pipe) and output and serves them on an attach socket to any number of clients.
//!
//! - [`keys`]: detach keys (`ctrl-p,ctrl-q`) and the scanner that finds them in stdin;
//! - [`proto`]: the attach socket's frames;
//! - [`hub`]: the monitor's side (output into the log and to the clients, their stdin and
//!   resizes);
//! - [`client`]: the client's side (connect, or wait for the next start).
//!
//! # Sockets
//!
//! `<run dir>/attach/<first 24 digits of the id>.sock` (the run dir of the containers, see
//! [`super::state::Containers::run_dir`]; the directory is 0700, the socket 0600). A client
//! of a container that is not running yet listens on
//! `<run dir>/attach/<24 digits>.pending-<pid>-<n>.sock`; the monitor of its next start
//! connects to every such socket before it starts the container, so the client sees that
//! run from its first byte. The monitor bumps the record's `runs` before it looks, so a
//! client that sees `runs` unchanged after listening knows it will be found.

pub mod client;
pub mod hub;
pub mod keys;
pub mod proto;

use std::path::PathBuf;

use super::options::ExecRoute;
use super::{Containers, RunOptions};

/// The directory of the attach sockets of `c`'s containers.
pub fn socket_dir(c: &Containers) -> PathBuf {
    c.run_dir().join("attach")
}

/// The attach socket of container `id`.
pub fn socket_path(c: &Containers, id: &str) -> PathBuf {
    socket_dir(c).join(format!("{}.sock", &id[..24.min(id.len())]))
}

/// The sockets of the clients waiting for container `id`'s next start.
pub fn pending_sockets(c: &Containers, id: &str) -> Vec<PathBuf> {
    let prefix = format!("{}.pending-", &id[..24.min(id.len())]);
    std::fs::read_dir(socket_dir(c))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Whether a detached container with `opts` has a terminal its monitor keeps (an external
/// runtime's detached container gets none: see [`super::lifecycle`]).
pub fn serves_tty(opts: &RunOptions) -> bool {
    opts.tty && (opts.runtime.is_none() || opts.route == ExecRoute::Vm)
}
