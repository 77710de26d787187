//! The exec endpoints: `POST /containers/{id}/exec` (create), `POST /exec/{id}/start`
//! (hijacked, or detached), `POST /exec/{id}/resize`, `GET /exec/{id}/json`.
//!
//! An exec runs as a child process (see [`crate::engine::Engine::exec_command`]) whose
//! streams this service relays: pipes (multiplexed frames), or a terminal whose master it
//! holds (raw stream; resize sets the master's size and the child passes it on).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::engine::ExecSpec;

use super::containers::{find, size};
use super::error::ApiError;
use super::router::{HandlerResult, Request, Router};
use super::stream::{self, FromClient, StreamKind};
use super::{ApiState, http};

/// One exec instance: made by create, run once by start.
#[derive(Debug, Clone)]
pub struct ExecInstance {
    /// Its id (64 hex digits).
    pub id: String,
    /// The container it runs in (full id).
    pub container: String,
    /// What to run.
    pub spec: ExecSpec,
    /// Which streams the client attaches.
    pub attach_stdout: bool,
    /// Which streams the client attaches.
    pub attach_stderr: bool,
    /// Started once already.
    pub started: bool,
    /// Running now.
    pub running: bool,
    /// The exit code once it ended.
    pub exit_code: Option<i32>,
    /// The child's pid while it runs.
    pub pid: Option<u32>,
    /// The terminal master (tty execs), for resize.
    pub master: Option<Arc<OwnedFd>>,
}

/// The exec instances this service made, by id.
#[derive(Debug, Default)]
pub struct Execs {
    instances: Mutex<HashMap<String, ExecInstance>>,
}

impl Execs {
    /// The number of instances known.
    pub fn len(&self) -> usize {
        self.instances.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no instance is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, id: &str) -> Result<ExecInstance, ApiError> {
        let m = self
            .instances
            .lock()
            .map_err(|_| ApiError::internal("exec table poisoned"))?;
        m.get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("No such exec instance: {id}")))
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut ExecInstance)) {
        if let Ok(mut m) = self.instances.lock()
            && let Some(e) = m.get_mut(id)
        {
            f(e);
        }
    }

    fn insert(&self, e: ExecInstance) {
        if let Ok(mut m) = self.instances.lock() {
            // Ended instances of removed containers are forgotten as new ones come.
            if m.len() > 1000 {
                m.retain(|_, v| v.running || !v.started);
            }
            m.insert(e.id.clone(), e);
        }
    }
}

/// Registers the exec endpoints.
pub fn routes(r: &mut Router) {
    r.add(Method::POST, "/containers/{id}/exec", create);
    r.add(Method::POST, "/exec/{id}/start", start);
    r.add(Method::POST, "/exec/{id}/resize", resize);
    r.add(Method::GET, "/exec/{id}/json", inspect);
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    attach_stdin: Option<bool>,
    attach_stdout: Option<bool>,
    attach_stderr: Option<bool>,
    tty: Option<bool>,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    privileged: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: Option<bool>,
    console_size: Option<Vec<u16>>,
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

async fn create(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let b: CreateBody = r.json().await?;
    let rec = find(&s, r.param("id")).await?;
    if b.privileged == Some(true) {
        return Err(ApiError::bad_request("privileged exec is refused by xrun"));
    }
    let command = b.cmd.unwrap_or_default();
    if command.is_empty() {
        return Err(ApiError::bad_request("no exec command specified"));
    }
    if !rec.is_running() {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            rec.id
        )));
    }
    let e = ExecInstance {
        id: new_id(),
        container: rec.id.clone(),
        spec: ExecSpec {
            command,
            env: b.env.unwrap_or_default(),
            interactive: b.attach_stdin.unwrap_or(false),
            user: b.user.filter(|u| !u.is_empty()),
            tty: b.tty.unwrap_or(false),
            workdir: b.working_dir.filter(|w| !w.is_empty()),
        },
        attach_stdout: b.attach_stdout.unwrap_or(true),
        attach_stderr: b.attach_stderr.unwrap_or(true),
        started: false,
        running: false,
        exit_code: None,
        pid: None,
        master: None,
    };
    let id = e.id.clone();
    s.execs.insert(e);
    Ok(http::json(StatusCode::CREATED, &json!({ "Id": id })))
}

async fn inspect(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let e = s.execs.get(r.param("id"))?;
    let (entry, args) = e
        .spec
        .command
        .split_first()
        .map(|(a, b)| (a.clone(), b.to_vec()))
        .unwrap_or_default();
    Ok(http::json(
        StatusCode::OK,
        &json!({
            "ID": e.id,
            "Running": e.running,
            "ExitCode": e.exit_code,
            "ProcessConfig": {
                "tty": e.spec.tty,
                "entrypoint": entry,
                "arguments": args,
                "privileged": false,
                "user": "",
            },
            "OpenStdin": e.spec.interactive,
            "OpenStderr": e.attach_stderr,
            "OpenStdout": e.attach_stdout,
            "CanRemove": false,
            "ContainerID": e.container,
            "DetachKeys": "",
            "Pid": e.pid.unwrap_or(0),
        }),
    ))
}

fn set_size(fd: &OwnedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ on a terminal master we own, with a valid winsize.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

async fn resize(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let (h, w) = size(&r)?;
    let e = s.execs.get(r.param("id"))?;
    if let Some(m) = &e.master {
        set_size(m, h, w);
    }
    Ok(http::no_content(StatusCode::OK))
}

/// The streams of a started exec child.
struct Child {
    child: std::process::Child,
    /// The terminal master (tty), read for output and written for input.
    master: Option<Arc<OwnedFd>>,
}

fn spawn(
    s: &ApiState,
    e: &ExecInstance,
    attached: bool,
    console: Option<(u16, u16)>,
) -> Result<Child, ApiError> {
    let mut cmd = s
        .engine
        .exec_command(&e.container, &e.spec)
        .map_err(ApiError::from)?;
    cmd.env_remove("XRUN_ROOT");
    let null = || Stdio::null();
    if e.spec.tty {
        let ws = console.map(|(h, w)| nix::pty::Winsize {
            ws_row: h,
            ws_col: w,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = nix::pty::openpty(ws.as_ref(), None)
            .map_err(|e| ApiError::internal(format!("opening a terminal: {e}")))?;
        let dup = |fd: &OwnedFd| {
            fd.try_clone()
                .map(Stdio::from)
                .map_err(|e| ApiError::internal(format!("opening a terminal: {e}")))
        };
        cmd.stdin(dup(&pty.slave)?)
            .stdout(dup(&pty.slave)?)
            .stderr(dup(&pty.slave)?);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| ApiError::internal(format!("starting the exec: {e}")))?;
        drop(cmd);
        drop(pty.slave);
        return Ok(Child {
            child,
            master: Some(Arc::new(pty.master)),
        });
    }
    cmd.stdin(if attached && e.spec.interactive {
        Stdio::piped()
    } else {
        null()
    })
    .stdout(if attached && e.attach_stdout {
        Stdio::piped()
    } else {
        null()
    })
    .stderr(if attached && e.attach_stderr {
        Stdio::piped()
    } else {
        null()
    });
    let child = cmd
        .spawn()
        .map_err(|e| ApiError::internal(format!("starting the exec: {e}")))?;
    Ok(Child {
        child,
        master: None,
    })
}

/// Copies `r` into `tx` (encoded for `kind`) until its end.
fn pump(
    mut r: impl Read + Send + 'static,
    tty: bool,
    kind: StreamKind,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 32 * 1024];
        let mut client = true;
        loop {
            match r.read(&mut buf) {
                Ok(0) => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
                Ok(n) => {
                    // A client gone: keep draining so the command is not blocked.
                    if client
                        && tx
                            .blocking_send(stream::encode(tty, kind, &buf[..n]))
                            .is_err()
                    {
                        client = false;
                    }
                }
            }
        }
    })
}

async fn start(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let id = r.param("id").to_string();
    let b: StartBody = r.json().await?;
    let e = s.execs.get(&id)?;
    if e.started {
        return Err(ApiError::conflict(format!(
            "exec instance {id} has already been started"
        )));
    }
    let rec = find(&s, &e.container).await?;
    if !rec.is_running() {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            rec.id
        )));
    }
    let detach = b.detach.unwrap_or(false);
    let upgrade = if detach {
        None
    } else {
        Some(stream::take_upgrade(&mut r)?)
    };
    let console = b
        .console_size
        .as_deref()
        .and_then(|c| (c.len() == 2).then(|| (c[0], c[1])));
    s.execs.update(&id, |x| x.started = true);
    let mut child = match spawn(&s, &e, !detach, console) {
        Ok(c) => c,
        Err(err) => {
            s.execs.update(&id, |x| x.exit_code = Some(126));
            return Err(err);
        }
    };
    let pid = child.child.id();
    let master = child.master.clone();
    s.execs.update(&id, |x| {
        x.running = true;
        x.pid = Some(pid);
        x.master = master;
    });
    let tty = e.spec.tty;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let mut pumps = Vec::new();
    let mut stdin_w: Option<Box<dyn Write + Send>> = None;
    if let Some(m) = &child.master {
        let rd = std::fs::File::from(
            m.try_clone()
                .map_err(|e| ApiError::internal(format!("terminal: {e}")))?,
        );
        pumps.push(pump(rd, true, StreamKind::Stdout, tx.clone()));
        if e.spec.interactive {
            stdin_w = Some(Box::new(std::fs::File::from(
                m.try_clone()
                    .map_err(|e| ApiError::internal(format!("terminal: {e}")))?,
            )));
        }
    } else {
        if let Some(o) = child.child.stdout.take() {
            pumps.push(pump(o, false, StreamKind::Stdout, tx.clone()));
        }
        if let Some(o) = child.child.stderr.take() {
            pumps.push(pump(o, false, StreamKind::Stderr, tx.clone()));
        }
        if let Some(i) = child.child.stdin.take() {
            stdin_w = Some(Box::new(i));
        }
    }
    drop(tx);
    // The waiter records the exit code before the output ends, so a client that inspects
    // the exec once its stream closes sees it.
    let (done_tx, done_rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let st = s.clone();
    let exec_id = id.clone();
    let mut rx = rx;
    tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if done_tx.send(b).await.is_err() {
                break;
            }
        }
        // Output ended (or the client left): wait for the child, record, then close.
        let code = tokio::task::spawn_blocking(move || {
            let status = child.child.wait();
            for p in pumps {
                let _ = p.join();
            }
            status
                .ok()
                .and_then(|s| {
                    s.code().or_else(|| {
                        std::os::unix::process::ExitStatusExt::signal(&s).map(|n| 128 + n)
                    })
                })
                .unwrap_or(-1)
        })
        .await
        .unwrap_or(-1);
        st.execs.update(&exec_id, |x| {
            x.running = false;
            x.exit_code = Some(code);
            x.master = None;
        });
        drop(done_tx);
    });
    let Some(upgrade) = upgrade else {
        // Detached: nothing to relay; the output drains into the void.
        tokio::spawn(async move {
            let mut rx = done_rx;
            while rx.recv().await.is_some() {}
        });
        return Ok(http::no_content(StatusCode::OK));
    };
    // stdin is written by a thread of its own: a full pipe never holds up the service.
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
    if let Some(mut w) = stdin_w {
        std::thread::spawn(move || {
            while let Ok(Some(d)) = in_rx.recv() {
                if w.write_all(&d).and_then(|_| w.flush()).is_err() {
                    return;
                }
            }
            // `None` (stdin's end) or the client gone: the pipe closes here.
        });
    }
    tokio::spawn(async move {
        stream::relay(upgrade, done_rx, move |m| match m {
            FromClient::Data(d) => {
                let _ = in_tx.send(Some(d));
            }
            // stdin's end: without a terminal the pipe closes; with one, the terminal
            // stays (the command ends on its own).
            FromClient::Closed if !tty => {
                let _ = in_tx.send(None);
            }
            FromClient::Closed => {}
        })
        .await;
    });
    Ok(stream::switching(tty))
}
