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
//! Stdin: a client's bytes are watched for its detach keys, then go to the container's
//! stdin (`-i`; sent before the container runs, they wait for it). Closing stdin closes a
//! pipe (Docker's stdin-once); a terminal's input is never closed by a client.
//! [`Engine::resize`] resizes a running container's terminal without attaching.
//!
//! Use from a thread (blocking) or from async code through `spawn_blocking`: the
//! [`Attachment`] splits into [`AttachEvents`] (blocking receive of output, exit, detach) and
//! [`AttachInput`] (non-blocking sends of stdin, stdin close, resize, detach; cloneable).

use std::io::{Read, Seek, SeekFrom};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

pub use crate::runtime::attach::keys::{DEFAULT_DETACH_KEYS, DetachKeys};
pub use crate::runtime::log::Stream;

use crate::runtime::attach::keys::DetachScanner;
use crate::runtime::attach::proto::{self, Hello};
use crate::runtime::attach::{self, client};
use crate::runtime::{ContainerRecord, Containers, RuntimeError};

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
    rx: mpsc::Receiver<AttachEvent>,
    /// Set when dropped: a client still waiting for the start gives up.
    gone: Arc<AtomicBool>,
}

impl Drop for AttachEvents {
    fn drop(&mut self) {
        self.gone.store(true, Ordering::SeqCst);
    }
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
enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize(u16, u16),
    Detach,
}

/// The sending side of an [`Attachment`] (cloneable; sends never block). Sends after the
/// attachment ended are dropped.
#[derive(Clone)]
pub struct AttachInput {
    tx: mpsc::Sender<Input>,
}

impl AttachInput {
    /// Sends bytes to the container's stdin (watched for the detach keys first).
    pub fn stdin(&self, data: &[u8]) {
        let _ = self.tx.send(Input::Stdin(data.to_vec()));
    }

    /// Closes the container's stdin (Docker's stdin-once); ignored with a terminal, whose
    /// input is never closed by a client (send the end-of-file character, Ctrl+D, instead).
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
    /// created or exited one at its next start (the client sees that run from its first
    /// byte). Errors: no such container; a container running in the foreground of an
    /// `xrun run` (its streams are that process's, not a monitor's) is
    /// [`crate::runtime::RuntimeError::WrongState`].
    pub fn attach(&self, key: &str, req: AttachRequest) -> Result<Attachment, EngineError> {
        let c = self.containers()?;
        let rec = c.find(key)?;
        let hello = Hello {
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            replay: req.replay,
        };
        let tty = attach::serves_tty(&rec.options);
        // Bounded: a client that reads slowly holds its monitor connection back (and is cut off
        // by the monitor past its limit) instead of growing this process.
        let (ev_tx, ev_rx) = mpsc::sync_channel(EVENTS_QUEUED);
        let (in_tx, in_rx) = mpsc::channel();
        let gone = Arc::new(AtomicBool::new(false));
        let keys = req.detach_keys.clone();
        if rec.is_running() {
            let source = connect_running(&c, &rec, &hello)?;
            std::thread::spawn(move || link(source, &hello, ev_tx, in_rx, keys));
        } else {
            let pending = client::Pending::listen(&attach::socket_dir(&c), &rec.id)
                .map_err(|e| EngineError::context("waiting for the container to start", e))?;
            let g = gone.clone();
            let rec = rec.clone();
            std::thread::spawn(move || {
                if let Some(source) = wait_for_start(&c, &rec, &pending, &hello, &g) {
                    drop(pending);
                    link(source, &hello, ev_tx, in_rx, keys);
                }
            });
        }
        Ok(Attachment {
            id: rec.id,
            tty,
            events: AttachEvents { rx: ev_rx, gone },
            input: AttachInput { tx: in_tx },
        })
    }
}

impl Engine {
    /// Resizes the terminal of running container `key` (through its monitor; nothing
    /// happens to a container without one).
    pub fn resize(&self, key: &str, rows: u16, cols: u16) -> Result<(), EngineError> {
        let c = self.containers()?;
        let rec = c.find(key)?;
        let not_running =
            || RuntimeError::WrongState(format!("container {} is not running", rec.short_id()));
        if !rec.is_running() {
            return Err(not_running().into());
        }
        match connect_running(&c, &rec, &Hello::default())? {
            Source::Live(conn) => {
                proto::write_frame(
                    &conn.stream,
                    proto::RESIZE,
                    &proto::resize_payload(rows, cols),
                )
                .map_err(|e| EngineError::context("resizing the terminal", e))?;
                // The monitor reads the resize, then the end, and lets the connection go
                // (waited for, within bounds).
                let _ = conn.stream.shutdown(Shutdown::Write);
                let _ = conn.stream.set_read_timeout(Some(SOCKET_WAIT));
                let _ = proto::read_frame(&conn.stream);
                Ok(())
            }
            Source::Ended { .. } => Err(not_running().into()),
        }
    }
}

/// Where an attachment's events come from.
enum Source {
    /// The monitor of the run.
    Live(client::Conn),
    /// The run ended before the client could connect: its log from `from`, and its exit.
    Ended {
        log: std::path::PathBuf,
        from: u64,
        exit: Option<i32>,
    },
}

/// Output chunks an attachment holds for its client before it stops reading the monitor.
const EVENTS_QUEUED: usize = 256;

/// How long a monitor may take to serve its socket once its run began.
const SOCKET_WAIT: Duration = Duration::from_secs(5);

/// Connects to running container `rec`'s monitor.
fn connect_running(
    c: &Containers,
    rec: &ContainerRecord,
    hello: &Hello,
) -> Result<Source, EngineError> {
    let path = attach::socket_path(c, &rec.id);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match client::connect(&path, hello) {
            Ok(conn) => return Ok(Source::Live(conn)),
            Err(e) if Instant::now() >= deadline => {
                let now = c.load(&rec.id)?;
                if !now.is_running() {
                    return Ok(ended(c, &now));
                }
                return Err(RuntimeError::WrongState(format!(
                    "container {} cannot be attached to: it runs in the foreground of another \
                     xrun process, not under a monitor (start it detached to attach to it): {e}",
                    rec.short_id()
                ))
                .into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The log and exit of `rec`'s last run.
fn ended(c: &Containers, rec: &ContainerRecord) -> Source {
    Source::Ended {
        log: c.log_path(&rec.id),
        from: rec.log_start,
        exit: rec.exit_code,
    }
}

/// Waits for container `rec`'s next start (listening on `pending`); `None` when the
/// container went or the client did.
fn wait_for_start(
    c: &Containers,
    rec: &ContainerRecord,
    pending: &client::Pending,
    hello: &Hello,
    gone: &AtomicBool,
) -> Option<Source> {
    loop {
        let now = c.load(&rec.id).ok()?;
        // A run began since this client looked — or was beginning as it looked: its monitor
        // bumps `runs` before the container is recorded running, so a client that read the
        // record in between sees the same `runs` and must notice the run itself (it is
        // running now, or it ended: `finished` changed).
        if now.runs != rec.runs || now.is_running() || now.finished != rec.finished {
            // Its monitor may have connected, or may have looked for waiting clients before
            // this one listened.
            pending.unlink();
            if let Ok(Some(s)) = pending.accept(Duration::ZERO) {
                return client::handshake(s, hello).ok().map(Source::Live);
            }
            let replay = Hello {
                replay: true,
                ..hello.clone()
            };
            return connect_started(c, rec, &replay);
        }
        // `runs` unchanged after listening: the next monitor will find this client.
        match pending.accept(Duration::from_millis(250)) {
            Ok(Some(s)) => return client::handshake(s, hello).ok().map(Source::Live),
            Ok(None) => {}
            Err(_) => return None,
        }
        if gone.load(Ordering::SeqCst) {
            return None;
        }
    }
}

/// Connects to the monitor of a run that began after `before` was read (or takes its log and
/// exit, if it already ended).
fn connect_started(c: &Containers, before: &ContainerRecord, hello: &Hello) -> Option<Source> {
    let path = attach::socket_path(c, &before.id);
    let deadline = Instant::now() + SOCKET_WAIT;
    loop {
        if let Ok(conn) = client::connect(&path, hello) {
            return Some(Source::Live(conn));
        }
        let now = c.load(&before.id).ok()?;
        if !now.is_running() && now.finished.is_some() && now.finished != before.finished {
            return Some(ended(c, &now));
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The sender of an attachment's events; the last event closes it.
struct Events(Mutex<Option<mpsc::SyncSender<AttachEvent>>>);

impl Events {
    /// Sends `e`; false once the client is gone or the attachment ended.
    fn send(&self, e: AttachEvent) -> bool {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.as_ref().is_some_and(|tx| tx.send(e).is_ok())
    }
    /// Sends the last event.
    fn last(&self, e: AttachEvent) {
        if let Some(tx) = self.0.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = tx.send(e);
        }
    }
    /// Ends without a last event.
    fn close(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Relays between the client's channels and `source` until the attachment ends.
fn link(
    source: Source,
    hello: &Hello,
    ev_tx: mpsc::SyncSender<AttachEvent>,
    input: mpsc::Receiver<Input>,
    keys: Option<DetachKeys>,
) {
    let events = Arc::new(Events(Mutex::new(Some(ev_tx))));
    let conn = match source {
        Source::Live(conn) => conn,
        Source::Ended { log, from, exit } => {
            if hello.replay {
                replay_log(&log, from, hello, &events);
            }
            events.last(AttachEvent::Exited(exit));
            return;
        }
    };
    let stream = Arc::new(conn.stream);
    let (w, ev) = (stream.clone(), events.clone());
    std::thread::spawn(move || {
        let mut scanner = keys.as_ref().map(DetachScanner::new);
        let send = |kind: u8, payload: &[u8]| proto::write_frame(&*w, kind, payload).is_ok();
        for msg in input {
            let ok = match msg {
                Input::Stdin(data) => {
                    let (pass, detach) = match scanner.as_mut() {
                        Some(s) => {
                            let r = s.feed(&data);
                            (r.pass, r.detach)
                        }
                        None => (data, false),
                    };
                    let ok = pass.is_empty() || send(proto::STDIN, &pass);
                    if detach {
                        ev.last(AttachEvent::Detached);
                        let _ = w.shutdown(Shutdown::Both);
                        return;
                    }
                    ok
                }
                Input::CloseStdin => send(proto::CLOSE, &[]),
                Input::Resize(rows, cols) => {
                    send(proto::RESIZE, &proto::resize_payload(rows, cols))
                }
                Input::Detach => {
                    ev.last(AttachEvent::Detached);
                    let _ = w.shutdown(Shutdown::Both);
                    return;
                }
            };
            if !ok {
                return;
            }
        }
    });
    loop {
        match proto::read_frame(&*stream) {
            Ok(Some((proto::STDOUT, data))) => {
                if !events.send(AttachEvent::Output(Stream::Stdout, data)) {
                    break;
                }
            }
            Ok(Some((proto::STDERR, data))) => {
                if !events.send(AttachEvent::Output(Stream::Stderr, data)) {
                    break;
                }
            }
            Ok(Some((proto::EXIT, code))) => {
                events.last(AttachEvent::Exited(proto::parse_exit(&code)));
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    events.close();
    let _ = stream.shutdown(Shutdown::Both);
}

/// Sends the log records of `log` from `from` on as output events.
fn replay_log(log: &std::path::Path, from: u64, hello: &Hello, events: &Events) {
    let Ok(mut f) = std::fs::File::open(log) else {
        return;
    };
    if f.seek(SeekFrom::Start(from)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    if f.read_to_end(&mut buf).is_err() {
        return;
    }
    let Ok((records, _)) = crate::runtime::log::decode(&buf) else {
        return;
    };
    for r in records {
        let wanted = match r.stream {
            Stream::Stdout => hello.stdout,
            Stream::Stderr => hello.stderr,
        };
        if wanted && !events.send(AttachEvent::Output(r.stream, r.data)) {
            return;
        }
    }
}
