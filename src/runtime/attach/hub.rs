//! The monitor's side: a [`Hub`] is where a detached container's output goes (into its log
//! and to every attached client, under one lock, so a client asking for the replay gets
//! the log up to a point and everything after it live: no gap, no duplicate), and where
//! clients' stdin and resizes come from.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::super::RuntimeError;
use super::super::log::{self, Stream};
use super::proto::{self, Hello, Ready};

/// Output queued for one client beyond which it is cut off (a client that does not read
/// must not hold the container up, nor grow the monitor without bound).
const MAX_QUEUED: usize = 64 << 20;

/// How long a connecting client has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// One attached client, as the output side sees it.
struct Client {
    /// Tells it from the others.
    id: u64,
    tx: mpsc::Sender<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    stdout: bool,
    stderr: bool,
}

/// What resizes the terminal.
type Resize = Box<dyn Fn(u16, u16) + Send>;

/// Stdin sent before the container's stdin is there, kept at most.
const MAX_WAITING_STDIN: usize = 1 << 20;

/// The container's stdin, as clients see it.
enum Stdin {
    /// Not there yet (the container is starting): what clients send waits.
    Waiting {
        /// The bytes sent.
        buf: Vec<u8>,
        /// A client closed it.
        close: bool,
    },
    /// The pipe's write end, or the terminal.
    Open(Box<dyn Write + Send>),
    /// None (no `-i`), or closed.
    Closed,
}

struct Output {
    log: File,
    clients: Vec<Client>,
    /// The exit, once known (later clients get it at once).
    exit: Option<Option<i32>>,
}

/// The output, stdin and terminal of one detached container, shared by its clients.
pub struct Hub {
    out: Mutex<Output>,
    stdin: Mutex<Stdin>,
    resize: Mutex<Option<Resize>>,
    log_path: PathBuf,
    log_start: u64,
    tty: bool,
    /// Client writer threads still sending.
    writers: Arc<AtomicUsize>,
    /// The next client's id.
    next_id: AtomicU64,
    socket: Mutex<Option<PathBuf>>,
}

impl Hub {
    /// A hub writing the log `log` (opened for appending; this run starts at `log_start`)
    /// at `log_path`; `tty`: the container has a terminal; `stdin`: it keeps stdin open
    /// (`-i`: what clients send before it is there waits for [`Hub::set_stdin`]).
    pub fn new(log: File, log_path: PathBuf, log_start: u64, tty: bool, stdin: bool) -> Arc<Hub> {
        Arc::new(Hub {
            out: Mutex::new(Output {
                log,
                clients: Vec::new(),
                exit: None,
            }),
            stdin: Mutex::new(if stdin {
                Stdin::Waiting {
                    buf: Vec::new(),
                    close: false,
                }
            } else {
                Stdin::Closed
            }),
            resize: Mutex::new(None),
            log_path,
            log_start,
            tty,
            writers: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(0),
            socket: Mutex::new(None),
        })
    }

    /// A writer of `stream` into the log and to the clients.
    pub fn writer(self: &Arc<Self>, stream: Stream) -> HubWriter {
        HubWriter {
            hub: self.clone(),
            stream,
        }
    }

    /// Where clients' stdin goes: a pipe's write end, or the terminal (never closed by a
    /// client). What they sent before goes first.
    pub fn set_stdin(&self, mut w: Box<dyn Write + Send>) {
        let mut s = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        *s = match std::mem::replace(&mut *s, Stdin::Closed) {
            Stdin::Waiting { buf, close } => {
                if w.write_all(&buf).is_err() || close {
                    Stdin::Closed
                } else {
                    Stdin::Open(w)
                }
            }
            _ => Stdin::Open(w),
        };
    }

    /// What resizes the container's terminal.
    pub fn set_resize(&self, f: Resize) {
        *self.resize.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    }

    fn output(&self, stream: Stream, data: &[u8]) -> std::io::Result<()> {
        let rec = log::encode(stream, &log::timestamp(), data);
        let kind = match stream {
            Stream::Stdout => proto::STDOUT,
            Stream::Stderr => proto::STDERR,
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        out.log.write_all(&rec)?;
        let frame = proto::frame(kind, data);
        out.clients.retain(|c| {
            let wanted = match stream {
                Stream::Stdout => c.stdout,
                Stream::Stderr => c.stderr,
            };
            if !wanted {
                return true;
            }
            if c.queued.fetch_add(frame.len(), Ordering::SeqCst) > MAX_QUEUED {
                tracing::warn!("an attached client does not read: cut off");
                return false;
            }
            c.tx.send(frame.clone()).is_ok()
        });
        Ok(())
    }

    /// Serves the attach socket `listener` (bound at `path`) from a thread.
    pub fn serve_socket(self: &Arc<Self>, listener: UnixListener, path: &Path) {
        *self.socket.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
        let hub = self.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let hub = hub.clone();
                std::thread::spawn(move || {
                    let _ = hub.serve(conn);
                });
            }
        });
    }

    /// Whether no client is attached and no stdin is kept.
    pub fn idle(&self) -> bool {
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clients
            .is_empty()
            && matches!(
                *self.stdin.lock().unwrap_or_else(|e| e.into_inner()),
                Stdin::Closed
            )
    }

    /// Connects the clients waiting for this start (their sockets are `pending`), before
    /// the container writes anything.
    pub fn adopt(self: &Arc<Self>, pending: Vec<PathBuf>) {
        for p in pending {
            match UnixStream::connect(&p) {
                Ok(conn) => {
                    let hub = self.clone();
                    let input = conn.try_clone();
                    match (hub.clone().register(conn), input) {
                        (Ok(client), Ok(input)) => {
                            std::thread::spawn(move || hub.read_input(input, &client));
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            tracing::debug!("a waiting attach client: {e}");
                        }
                    }
                }
                Err(_) => {
                    // Its client is gone.
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
    }

    /// Serves one client connection until it goes.
    fn serve(self: Arc<Self>, conn: UnixStream) -> std::io::Result<()> {
        let client = self.clone().register(conn.try_clone()?)?;
        self.read_input(conn, &client);
        Ok(())
    }

    /// Reads the client's hello and registers it for output: its writer thread sends the
    /// answer, the replay, then the live output.
    fn register(self: Arc<Self>, conn: UnixStream) -> std::io::Result<Registered> {
        conn.set_read_timeout(Some(HELLO_TIMEOUT))?;
        let hello: Hello = match proto::read_frame(&conn)? {
            Some((proto::HELLO, p)) => serde_json::from_slice(&p)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "no hello",
                ));
            }
        };
        conn.set_read_timeout(None)?;
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let replay_end;
        let exit;
        {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            replay_end = out.log.metadata().map(|m| m.len()).unwrap_or(0);
            exit = out.exit;
            if exit.is_none() {
                out.clients.push(Client {
                    id,
                    tx,
                    queued: queued.clone(),
                    stdout: hello.stdout,
                    stderr: hello.stderr,
                });
            }
        }
        let ready = serde_json::to_vec(&Ready { tty: self.tty }).unwrap_or_default();
        let mut w = conn.try_clone()?;
        let hub = self.clone();
        let h = hello.clone();
        self.writers.fetch_add(1, Ordering::SeqCst);
        let writers = self.writers.clone();
        std::thread::spawn(move || {
            let r = (|| -> std::io::Result<()> {
                proto::write_frame(&mut w, proto::READY, &ready)?;
                if h.replay {
                    hub.replay(&mut w, &h, replay_end)?;
                }
                if let Some(code) = exit {
                    return proto::write_frame(&mut w, proto::EXIT, &proto::exit_payload(code));
                }
                for f in rx {
                    queued.fetch_sub(f.len(), Ordering::SeqCst);
                    w.write_all(&f)?;
                    if f.first() == Some(&proto::EXIT) {
                        break;
                    }
                }
                Ok(())
            })();
            let _ = r;
            let _ = w.shutdown(std::net::Shutdown::Both);
            writers.fetch_sub(1, Ordering::SeqCst);
        });
        Ok(Registered { hello, id })
    }

    /// Sends the log records of this run up to `end` as frames.
    fn replay(&self, w: &mut UnixStream, hello: &Hello, end: u64) -> std::io::Result<()> {
        let mut f = File::open(&self.log_path)?;
        f.seek(SeekFrom::Start(self.log_start))?;
        let mut left = end.saturating_sub(self.log_start);
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while left > 0 {
            let n = f.read(&mut buf[..(left.min(65536) as usize)])?;
            if n == 0 {
                break;
            }
            left -= n as u64;
            pending.extend_from_slice(&buf[..n]);
            let (records, used) = log::decode(&pending)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            for r in records {
                let (kind, wanted) = match r.stream {
                    Stream::Stdout => (proto::STDOUT, hello.stdout),
                    Stream::Stderr => (proto::STDERR, hello.stderr),
                };
                if wanted {
                    proto::write_frame(&mut *w, kind, &r.data)?;
                }
            }
            pending.drain(..used);
        }
        Ok(())
    }

    /// A client's input: stdin, stdin close, resizes; until it goes (then its output
    /// stops too).
    fn read_input(&self, conn: UnixStream, client: &Registered) {
        let hello = &client.hello;
        while let Ok(Some((kind, payload))) = proto::read_frame(&conn) {
            match kind {
                proto::STDIN if hello.stdin => {
                    let mut s = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
                    match &mut *s {
                        Stdin::Waiting { buf, .. } => {
                            if buf.len() + payload.len() <= MAX_WAITING_STDIN {
                                buf.extend_from_slice(&payload);
                            }
                        }
                        Stdin::Open(w) => {
                            if w.write_all(&payload).is_err() {
                                *s = Stdin::Closed;
                            }
                        }
                        Stdin::Closed => {}
                    }
                }
                // A terminal's input is never closed (as Docker: a client that ends or
                // detaches leaves the shell running); a pipe's is.
                proto::CLOSE if hello.stdin && !self.tty => {
                    let mut s = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
                    match &mut *s {
                        Stdin::Waiting { close, .. } => *close = true,
                        _ => *s = Stdin::Closed,
                    }
                }
                proto::RESIZE => {
                    if let Some((rows, cols)) = proto::parse_resize(&payload)
                        && let Some(f) = self
                            .resize
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .as_ref()
                    {
                        f(rows, cols);
                    }
                }
                _ => {}
            }
        }
        // Gone: its writer ends with its queue.
        self.out
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clients
            .retain(|c| c.id != client.id);
    }

    /// Removes the attach socket: no new client.
    pub fn close_socket(&self) {
        if let Some(p) = self.socket.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = std::fs::remove_file(p);
        }
    }

    /// The container exited: every client gets the code and its output is flushed (at most
    /// a few seconds); the socket goes.
    pub fn finish(&self, code: Option<i32>) {
        self.close_socket();
        {
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            out.exit = Some(code);
            let exit = proto::frame(proto::EXIT, &proto::exit_payload(code));
            for c in out.clients.drain(..) {
                let _ = c.tx.send(exit.clone());
            }
        }
        let end = Instant::now() + Duration::from_secs(3);
        while self.writers.load(Ordering::SeqCst) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Binds the attach socket at `path` (mode 0600, in a 0700 directory); connections wait
/// in its backlog until [`Hub::serve_socket`].
pub fn bind(path: &Path) -> Result<UnixListener, RuntimeError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| RuntimeError::io("creating the attach socket directory", e))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)
        .map_err(|e| RuntimeError::io(format!("binding {}", path.display()), e))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(listener)
}

/// A registered client: what it asked for, and its id.
struct Registered {
    hello: Hello,
    id: u64,
}

/// Writes one stream of the container's output into its [`Hub`].
pub struct HubWriter {
    hub: Arc<Hub>,
    stream: Stream,
}

impl Write for HubWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        self.hub.output(self.stream, data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
