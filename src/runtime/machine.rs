//! Containers that run outside the OCI executor: the vm route's VMs. The runtime keeps their
//! record, owner (the foreground xrun or the monitor), log, exit code and signals as for any
//! container; what runs them is a [`Machine`], made by a [`Machines`] the CLI wires in (the
//! runtime does not know the VM stage).
//!
//! Networks: the runtime sets up a machine container's network exactly as any container's
//! ([`super::net::join`], torn down when it ends) and hands it to [`Machine::start`].
//!
//! Signals: a machine's process on the host (qemu) is not the container's command, so
//! `xrun kill`/`stop` ask the container's owner to relay the signal (a queued real-time
//! signal carrying the number, [`super::signals::send_relayed`]); SIGKILL kills the process
//! itself (exit 137).

use std::io::{Read, Write};
use std::sync::Arc;

use super::net::Joined;
use super::{ContainerRecord, Containers, RuntimeError};

/// Where a machine's streams go.
pub struct MachineIo {
    /// `-i`: the command's stdin; `None`: nothing.
    pub stdin: Option<Box<dyn Read + Send>>,
    /// The command's stdout (with `tty`, the terminal's output).
    pub stdout: Box<dyn Write + Send>,
    /// The command's stderr.
    pub stderr: Box<dyn Write + Send>,
    /// `-t`: the command gets a terminal of this size (rows, columns; 0 when unknown).
    pub tty: Option<(u16, u16)>,
}

/// Delivers signals and terminal sizes to a running machine's command (from any thread).
pub trait MachineControl: Send + Sync {
    /// Sends signal number `sig` to the command.
    fn signal(&self, sig: i32);
    /// Resizes the command's terminal.
    fn resize(&self, rows: u16, cols: u16);
}

/// One run of a machine container.
pub trait Machine: Send {
    /// Starts it in `network` (its namespace set up and attached, `None`: no network);
    /// returns once the command runs, with the host process to record as the container's
    /// (while it lives, the container runs) and the control of the command.
    fn start(
        &mut self,
        io: MachineIo,
        network: Option<&Joined>,
    ) -> Result<(i32, Arc<dyn MachineControl>), RuntimeError>;
    /// Waits for the end; returns the exit code (128+N when the machine was killed by N).
    fn wait(&mut self) -> Result<i32, RuntimeError>;
}

/// Makes the [`Machine`] of a container record: `Ok(None)` for a container the OCI executor
/// runs.
pub trait Machines {
    /// The machine for `rec`, if it is one.
    fn machine(
        &self,
        c: &Containers,
        rec: &ContainerRecord,
    ) -> Result<Option<Box<dyn Machine>>, RuntimeError>;
}

/// No machines: every container runs through the OCI executor.
pub struct NoMachines;

impl Machines for NoMachines {
    fn machine(
        &self,
        _: &Containers,
        _: &ContainerRecord,
    ) -> Result<Option<Box<dyn Machine>>, RuntimeError> {
        Ok(None)
    }
}
