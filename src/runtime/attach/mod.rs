//! Attaching to a detached container: its monitor keeps the container's terminal (or its
//! stdin pipe) and output and serves them on an attach socket to any number of clients.
//!
//! - [`keys`]: detach keys (`ctrl-p,ctrl-q`) and the scanner that finds them in stdin.

pub mod keys;
