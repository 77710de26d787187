//! The Docker Engine API service (`xrun serve`): HTTP/1.1 over a unix socket (hyper 1 on
//! tokio), so the `docker` CLI, docker-py and Compose drive xrun.
//!
//! This layer is HTTP and JSON only: every operation is an [`crate::engine::Engine`] call.
//! Layout, one job per file:
//! - `mod.rs`: the server (socket, connections, signals) and [`routes`], the table each
//!   area registers its handlers in;
//! - `router.rs`: patterns, versioned paths, the request a handler gets;
//! - `http.rs`: response bodies; `error.rs`: [`ApiError`] → Docker's JSON error;
//! - `system.rs`: `/_ping`, `/version`, `/info`; `containers.rs`, `exec.rs`: the container
//!   and exec endpoints; `stream.rs`: hijacked connections and Docker's multiplexed frames;
//! - `images.rs`: the image endpoints, `progress.rs`: Docker's JSON progress stream,
//!   `check.rs`: `/xrun/check`.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::StatusCode;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::UnixListener;

use crate::engine::Engine;

pub mod attach;
pub mod build;
pub mod check;
pub mod container_json;
pub mod container_net;
pub mod containers;
pub mod disk_usage;
pub mod error;
pub mod exec;
pub mod http;
pub mod images;
pub mod logs;
pub mod networks;
pub mod procs;
pub mod progress;
pub mod router;
pub mod stats;
pub mod stream;
pub mod system;
pub mod version;

pub use error::ApiError;
pub use router::{Query, Request, Router};

/// Where `xrun serve` listens by default.
pub const DEFAULT_SOCKET: &str = "/run/xrun/xrun.sock";

/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares: the engine over the store root, and the service's own state.
pub struct ApiState {
    /// The engine (same store and state as the CLI's).
    pub engine: Engine,
    /// Exec instances made by `POST /containers/{id}/exec`.
    pub execs: exec::Execs,
    /// When the service started.
    pub started: Instant,
    /// This host's profile, gathered once (see [`ApiState::host`]).
    host: std::sync::OnceLock<Arc<crate::kernelcheck::profile::HostProfile>>,
}

impl ApiState {
    /// The state for an engine.
    pub fn new(engine: Engine) -> ApiState {
        ApiState {
            engine,
            execs: exec::Execs::default(),
            started: Instant::now(),
            host: std::sync::OnceLock::new(),
        }
    }
}

/// Every endpoint: each area adds its own.
pub fn routes() -> Router {
    let mut r = Router::new();
    system::routes(&mut r);
    disk_usage::routes(&mut r);
    containers::routes(&mut r);
    exec::routes(&mut r);
    images::routes(&mut r);
    build::routes(&mut r);
    networks::routes(&mut r);
    r
}

/// Why the service could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Another instance holds the socket.
    #[error("another xrun serve holds {0} (stop it first, or pick another socket with --socket)")]
    Busy(PathBuf),
    /// The socket (or its directory, or its lock) cannot be set up.
    #[error("setting up the socket {path}: {source}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The async runtime or the signal handlers could not start.
    #[error("starting the service: {0}")]
    Runtime(#[source] std::io::Error),
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The socket path (created mode 0660; its directory is created if missing).
    pub socket: PathBuf,
    /// The engine to serve.
    pub engine: Engine,
}

/// Runs the service in the foreground until SIGTERM or SIGINT; running containers keep
/// running (their monitors own them).
pub fn serve(opts: ServeOptions) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(256)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let result = rt.block_on(serve_async(opts));
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

/// A socket that is ours while this lives: the lock file next to it is held, and the socket
/// file is removed on drop (unless it came from socket activation).
struct Claim {
    socket: PathBuf,
    _lock: Option<std::fs::File>,
    owned: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

fn socket_err(path: &Path) -> impl FnOnce(std::io::Error) -> ServeError + '_ {
    move |source| ServeError::Socket {
        path: path.to_path_buf(),
        source,
    }
}

/// systemd's socket activation as this process received it: `Some(n)` when `LISTEN_PID` names
/// this process and `LISTEN_FDS` is `n` ≥ 1. Read once.
static ACTIVATION: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

/// Reads systemd's socket-activation variables (`LISTEN_PID`, `LISTEN_FDS`) once. The CLI calls
/// this first thing, before it removes them from its environment: no child (a monitor, a
/// container) may inherit them, or the runtime would keep that many descriptors open.
pub fn note_socket_activation() {
    ACTIVATION.get_or_init(read_activation);
}

fn read_activation() -> Option<u32> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    (pid == std::process::id() && fds >= 1).then_some(fds)
}

/// The listener systemd passed (fd 3), if any.
fn activated_listener() -> Option<StdUnixListener> {
    use std::os::fd::FromRawFd;
    ACTIVATION.get_or_init(read_activation).as_ref()?;
    // SAFETY: systemd hands fd 3 to this process as a listening socket; nothing else owns it.
    let listener = unsafe { StdUnixListener::from_raw_fd(3) };
    // Never inherited by monitors or containers.
    let _ = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&listener),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(listener)
}

/// Binds `socket` after taking its lock; refuses when another instance holds it.
fn claim(socket: &Path) -> Result<(StdUnixListener, Claim), ServeError> {
    if let Some(l) = activated_listener() {
        let claim = Claim {
            socket: socket.to_path_buf(),
            _lock: None,
            owned: false,
        };
        return Ok((l, claim));
    }
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(socket_err(socket))?;
    }
    let mut lock_path = socket.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(socket_err(socket))?;
    match fs4::FileExt::try_lock(&lock) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => return Err(ServeError::Busy(socket.to_path_buf())),
        Err(fs4::TryLockError::Error(e)) => return Err(socket_err(socket)(e)),
    }
    // The lock is ours: a socket file left there is from an instance that died.
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(socket_err(socket)(e)),
    }
    let listener = StdUnixListener::bind(socket).map_err(socket_err(socket))?;
    let claim = Claim {
        socket: socket.to_path_buf(),
        _lock: Some(lock),
        owned: true,
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))
        .map_err(socket_err(socket))?;
    Ok((listener, claim))
}

async fn serve_async(opts: ServeOptions) -> Result<(), ServeError> {
    let (std_listener, _claim) = claim(&opts.socket)?;
    std_listener
        .set_nonblocking(true)
        .map_err(socket_err(&opts.socket))?;
    let listener = UnixListener::from_std(std_listener).map_err(socket_err(&opts.socket))?;
    // Detached starts hand the container to a monitor started ahead of need.
    let state = Arc::new(ApiState::new(opts.engine.with_spare_monitors()));
    let router = Arc::new(routes());
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(ServeError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(ServeError::Runtime)?;
    tracing::info!(socket = %opts.socket.display(), root = %state.engine.root().display(), api = %version::CURRENT, "serving");
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let state = state.clone();
                    let router = router.clone();
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            dispatch(state.clone(), router.clone(), req)
                        });
                        let conn = http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(HEADER_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), svc)
                            .with_upgrades();
                        if let Err(e) = conn.await {
                            tracing::debug!("connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    Ok(())
}

/// Answers one request: version prefix, route, handler (a panic is a 500, never the end of
/// the service), error → Docker's JSON, one log line.
pub async fn dispatch(
    state: Arc<ApiState>,
    router: Arc<Router>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<http::Response, std::convert::Infallible> {
    let t0 = Instant::now();
    let method = req.method().clone();
    let full_path = req.uri().path().to_string();
    let answer = route_one(state, &router, req).await;
    let resp = match answer {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!(%method, path = %full_path, status = e.status.as_u16(), error = %e.message, "request failed");
            }
            http::error(&e)
        }
    };
    tracing::info!(%method, path = %full_path, status = resp.status().as_u16(), ms = t0.elapsed().as_millis() as u64, "request");
    let mut resp = resp;
    let h = resp.headers_mut();
    h.insert(
        "Api-Version",
        hyper::header::HeaderValue::from_static(system::API_VERSION),
    );
    h.insert("Server", hyper::header::HeaderValue::from_static("xrun"));
    Ok(resp)
}

async fn route_one(
    state: Arc<ApiState>,
    router: &Router,
    req: hyper::Request<hyper::body::Incoming>,
) -> router::HandlerResult {
    let (version, path) = version::split(req.uri().path())?;
    let path = path.to_string();
    let method = req.method().clone();
    match router.find(&method, &path) {
        router::Found::Handler(h, params) => {
            let request = Request::new(req, params, version);
            match AssertUnwindSafe(h(state, request)).catch_unwind().await {
                Ok(r) => r,
                Err(_) => Err(ApiError::internal(format!(
                    "internal error answering {method} {path} (see the service's log)"
                ))),
            }
        }
        router::Found::WrongMethod => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        )),
        router::Found::Nothing => Err(ApiError::not_found("page not found")),
    }
}

/// Runs blocking engine work off the async threads; a panic in it is a 500.
pub async fn blocking<T, F>(f: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ApiError::internal(format!("internal error: {e}"))),
    }
}
