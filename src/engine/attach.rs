//! [`Engine::attach`]: a connection to a container's standard streams, as `docker attach`
//! and the API's `/containers/{id}/attach` need it.
//!
//! A detached container's monitor keeps its terminal (pty master) or its stdin pipe and
//! output, and serves an attach socket (see [`crate::runtime::attach`]): any number of
//! clients at once, each gets the output live (with [`AttachRequest::replay`], everything
//! this run wrote first, from the log, with no gap and no duplicate), may send stdin and
//! close it, and resize the terminal.
//!
//! Attaching to a container that is not running (created, or exited) waits for its next
//! start, and sees that run from its first byte: `docker run` through the API is create,
//! attach, wait, start.
//!
//! Use from a thread (blocking) or from async code through `spawn_blocking`: the
//! [`Attachment`] splits into [`AttachEvents`] (blocking receive of output, exit, detach) and
//! [`AttachInput`] (non-blocking sends of stdin, stdin close, resize, detach; cloneable).

use std::sync::mpsc;
use std::time::Duration;

pub use crate::runtime::attach::keys::{DEFAULT_DETACH_KEYS, DetachKeys};
pub use crate::runtime::log::Stream;

use super::{Engine, EngineError};

/// What a client attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachRequest {
    /// Send stdin to the container (the container must keep stdin open: `-i`).
    pub stdin: bool,
    /// Receive its stdout (with a terminal: the terminal's output).
    pub stdout: bool,
    /// Receive its stderr (nothing with a terminal).
    pub stderr: bool,
    /// First receive everything this run of the container wrote so far (from its log).
    pub replay: bool,
    /// The stdin sequence that detaches this client (`None`: none).
    pub detach_keys: Option<DetachKeys>,
}

impl Default for AttachRequest {
    /// stdout and stderr, no stdin, no replay, Docker's default detach keys.
    fn default() -> AttachRequest {
        AttachRequest {
            stdin: false,
            stdout: true,
            stderr: true,
            replay: false,
            detach_keys: Some(DetachKeys::default_keys()),
        }
    }
}

/// What an attached client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachEvent {
    /// Bytes the container wrote (with a terminal, all of it is [`Stream::Stdout`]).
    Output(Stream, Vec<u8>),
    /// The container exited with this code (`None`: how is not known); the last event.
    Exited(Option<i32>),
    /// This client typed the detach keys or called [`AttachInput::detach`]; the container
    /// keeps running. The last event.
    Detached,
}

/// An attached client: whether the container has a terminal, its events and its input.
pub struct Attachment {
    /// The container's full id.
    pub id: String,
    /// The container has a terminal: output is one raw stream, stdin goes to the terminal
    /// (Docker's raw stream instead of multiplexed frames).
    pub tty: bool,
    /// What the container sends.
    pub events: AttachEvents,
    /// What the client sends.
    pub input: AttachInput,
}

impl Attachment {
    /// The events and the input, to be used from different threads or tasks.
    pub fn split(self) -> (AttachEvents, AttachInput) {
        (self.events, self.input)
    }
}

/// The receiving side of an [`Attachment`]: output in order, then [`AttachEvent::Exited`]
/// or [`AttachEvent::Detached`]. The end without either means the monitor went away.
pub struct AttachEvents {
    pub(crate) rx: mpsc::Receiver<AttachEvent>,
}

impl AttachEvents {
    /// The next event (blocking); `None` once the attachment ended.
    pub fn recv(&self) -> Option<AttachEvent> {
        self.rx.recv().ok()
    }

    /// The next event, waiting at most `timeout`: `Ok(None)` when the attachment ended,
    /// `Err(())` when nothing came in time.
    #[allow(clippy::result_unit_err)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<AttachEvent>, ()> {
        match self.rx.recv_timeout(timeout) {
            Ok(e) => Ok(Some(e)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Ok(None),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(()),
        }
    }
}

impl Iterator for AttachEvents {
    type Item = AttachEvent;
    fn next(&mut self) -> Option<AttachEvent> {
        self.recv()
    }
}

/// What a client sends to the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(u16, u16),
    Detach,
}

/// The sending side of an [`Attachment`] (cloneable; sends never block). Sends after the
/// attachment ended are dropped.
#[derive(Clone)]
pub struct AttachInput {
    pub(crate) tx: mpsc::Sender<Input>,
}

impl AttachInput {
    /// Sends bytes to the container's stdin (watched for the detach keys first).
    pub fn stdin(&self, data: &[u8]) {
        let _ = self.tx.send(Input::Stdin(data.to_vec()));
    }

    /// Closes the container's stdin (with a terminal: sends the end-of-file character).
    pub fn close_stdin(&self) {
        let _ = self.tx.send(Input::CloseStdin);
    }

    /// Resizes the container's terminal (ignored without one).
    pub fn resize(&self, rows: u16, cols: u16) {
        let _ = self.tx.send(Input::Resize(rows, cols));
    }

    /// Detaches this client; the container keeps running.
    pub fn detach(&self) {
        let _ = self.tx.send(Input::Detach);
    }
}

impl Engine {
    /// Attaches to container `key` (id, id prefix or name): a running container at once; a
    /// created or exited one at its next start. Errors: no such container; a container
    /// running in the foreground of an `xrun run` without `-i` (its streams are that
    /// process's, not a monitor's) is [`crate::runtime::RuntimeError::WrongState`].
    pub fn attach(&self, key: &str, req: AttachRequest) -> Result<Attachment, EngineError> {
        let c = self.containers()?;
        let rec = c.find(key)?;
        let _ = req;
        Err(crate::runtime::RuntimeError::WrongState(format!(
            "attaching to {} is not implemented yet",
            rec.short_id()
        ))
        .into())
    }
}
