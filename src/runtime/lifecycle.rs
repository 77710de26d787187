//! The container operations behind the CLI: create, run attached, start detached (through
//! the monitor), stop, kill, remove, exec, and the start-up cleanup of stale containers.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::attach::hub::Hub;
use super::executor::{self, Engine, ExecRequest, Running, Stdio};
use super::log::Stream;
use super::machine::{Machine, MachineControl, MachineIo, Machines};
use super::options::ExecRoute;
use super::state::{Phase, ProcRef};
use super::{
    BundleExtras, ContainerRecord, Containers, ImageInput, RunOptions, RuntimeError, signals, tty,
};

/// Where the container's standard streams go.
pub enum Attach {
    /// xrun's own terminal/streams (`run`, `start -a`).
    Foreground,
    /// The monitor's attach hub: the container's log and attached clients (detached; stdin
    /// is a pipe or the terminal with `-i`, else /dev/null).
    Log(Arc<Hub>),
}

/// Validates the options and records a new container (nothing is mounted yet).
pub fn create(
    c: &Containers,
    image: ImageInput,
    opts: RunOptions,
) -> Result<ContainerRecord, RuntimeError> {
    opts.validate()?;
    let cmd = super::spec::command(&image, &opts);
    if cmd.is_empty() {
        return Err(RuntimeError::BadInput(
            "no command specified: the image has no Entrypoint or Cmd; give one after the image"
                .into(),
        ));
    }
    match c.create(image.clone(), opts.clone(), cmd.clone()) {
        Err(RuntimeError::WrongState(_)) if opts.name.is_some() => {
            // The name may be held by a container whose owner died (a `--rm` one goes now).
            cleanup_stale(c);
            c.create(image, opts, cmd)
        }
        other => other,
    }
}

fn dup_fd(fd: i32) -> Result<OwnedFd, RuntimeError> {
    let n = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn dev_null() -> Result<OwnedFd, RuntimeError> {
    Ok(std::fs::File::open("/dev/null")
        .map_err(|e| RuntimeError::io("opening /dev/null", e))?
        .into())
}

/// Everything that must be undone or joined after the container exits.
struct Session {
    /// The OCI executor's container process (`None` for a machine).
    running: Option<Running>,
    /// A machine container's run.
    machine: Option<Box<dyn Machine>>,
    pump: Option<std::thread::JoinHandle<()>>,
    /// The read ends of the container's stdout and stderr pipes (detached), until
    /// [`Session::pump_logs`] copies them into the log.
    log_pipes: Option<(OwnedFd, OwnedFd)>,
    /// Copy the container's stdout and stderr pipes into its log (detached).
    log_pumps: Vec<std::thread::JoinHandle<()>>,
    /// The attach hub of a detached container (its monitor's).
    hub: Option<Arc<Hub>>,
    _raw: Option<tty::RawMode>,
}

impl Session {
    /// Starts copying the container's output pipes into its log (see [`super::log`]) and
    /// to attached clients.
    fn pump_logs(&mut self, c: &Containers, id: &str) -> Result<(), RuntimeError> {
        if let Some((out, err)) = self.log_pipes.take() {
            match &self.hub {
                Some(hub) => {
                    self.log_pumps
                        .push(super::log::pump(out, hub.writer(Stream::Stdout)));
                    self.log_pumps
                        .push(super::log::pump(err, hub.writer(Stream::Stderr)));
                }
                None => {
                    let (lo, le) = super::log::LogWriter::pair(open_log(c, id)?);
                    self.log_pumps.push(super::log::pump(out, lo));
                    self.log_pumps.push(super::log::pump(err, le));
                }
            }
        }
        Ok(())
    }
}

/// A pipe for a detached `-i` container's stdin: the read end for the container, the
/// write end for the attach hub.
fn stdin_pipe(hub: &Hub) -> Result<OwnedFd, RuntimeError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    hub.set_stdin(Box::new(std::fs::File::from(w)));
    Ok(r)
}

fn launch(
    c: &Containers,
    rec: &ContainerRecord,
    attach: &Attach,
    extras: &BundleExtras,
) -> Result<Session, RuntimeError> {
    let id = rec.id.as_str();
    let opts = &rec.options;
    let bundle = c.bundle(id);
    let mut extras = extras.clone();
    extras.network = super::net::join(c, rec)?;
    tracing::debug!("phase: network set up");
    // In the monitor: the root file system goes into a mount namespace of its own.
    super::monitor::private_mounts();
    let spec = match bundle.prepare(id, &rec.image, opts, &extras) {
        Ok(s) => s,
        Err(e) => {
            net_leave(c, id);
            return Err(e);
        }
    };
    tracing::debug!("phase: bundle prepared");
    crate::fault::point("run.after-mounts");
    let engine = Engine::from_option(opts.runtime.as_ref());
    let mut log_pipes = None;
    let hub = match attach {
        Attach::Log(h) => Some(h.clone()),
        Attach::Foreground => None,
    };
    let result = (|| {
        let foreground = hub.is_none();
        let mut console = None;
        let stdio = if opts.tty && engine == Engine::Libcontainer {
            // A short path: socket addresses are limited to 108 bytes.
            let dir = super::rundir::ensure()
                .unwrap_or_else(|| std::path::PathBuf::from(super::rundir::RUN_DIR));
            std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io("creating /run/xrun", e))?;
            let sock = dir.join(format!("console-{}-{}.sock", &id[..12], std::process::id()));
            console = Some(tty::ConsoleSocket::listen(&sock)?);
            Stdio {
                stdin: dev_null()?,
                stdout: dev_null()?,
                stderr: dev_null()?,
            }
        } else if foreground {
            // Without a terminal, or an external runtime that makes it from xrun's own.
            Stdio {
                stdin: if opts.interactive || opts.tty {
                    dup_fd(0)?
                } else {
                    dev_null()?
                },
                stdout: dup_fd(1)?,
                stderr: dup_fd(2)?,
            }
        } else {
            if opts.tty {
                // An external runtime would need a terminal of xrun's: log without one.
                let mut spec: oci_spec::runtime::Spec = serde_json::from_slice(
                    &std::fs::read(bundle.config_path())
                        .map_err(|e| RuntimeError::io("reading config.json", e))?,
                )
                .map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
                if let Some(p) = spec.process_mut() {
                    p.set_terminal(Some(false));
                }
                std::fs::write(
                    bundle.config_path(),
                    serde_json::to_vec_pretty(&spec).unwrap_or_default(),
                )
                .map_err(|e| RuntimeError::io("writing config.json", e))?;
            }
            // Pipes, so the log keeps the two streams apart.
            let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
            log_pipes = Some((out_r, err_r));
            Stdio {
                stdin: match &hub {
                    Some(h) if opts.interactive => stdin_pipe(h)?,
                    _ => dev_null()?,
                },
                stdout: out_w,
                stderr: err_w,
            }
        };
        let winch_master = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(-1));
        let fwd = if foreground {
            let m = winch_master.clone();
            Some(signals::forward(Some(Box::new(move || {
                let fd = m.load(Ordering::SeqCst);
                if fd >= 0 {
                    tty::copy_window_size(fd);
                }
            })))?)
        } else {
            None
        };
        let mut running = executor::start(
            &bundle,
            &spec,
            &c.runtime_root(id),
            &c.seccomp_cache(),
            id,
            &engine,
            stdio,
            console.as_ref().map(|s| s.path()),
        )?;
        tracing::debug!("phase: container started");
        super::cgroups::record(id, &c.cgroups_record(id));
        crate::fault::point("run.after-exec");
        let mut pump = None;
        let mut raw = None;
        if let Some(sock) = &console {
            let master = match sock.master() {
                Ok(m) => m,
                Err(e) => {
                    let _ = nix::sys::signal::kill(running.pid, Signal::SIGKILL);
                    let _ = executor::wait(&mut running);
                    executor::delete(&c.runtime_root(id), id, &engine);
                    return Err(e);
                }
            };
            tty::copy_window_size(master.as_raw_fd());
            winch_master.store(master.as_raw_fd(), Ordering::SeqCst);
            let out: Box<dyn Write + Send> = match &hub {
                None => Box::new(std::io::stdout()),
                Some(h) => {
                    // The monitor keeps the terminal: clients' input and sizes go to it.
                    let input = master
                        .try_clone()
                        .map_err(|e| RuntimeError::io("cloning the pty", e))?;
                    if opts.interactive {
                        h.set_stdin(Box::new(std::fs::File::from(input)));
                    }
                    let fd = master.as_raw_fd();
                    h.set_resize(Box::new(move |rows, cols| {
                        let ws = libc::winsize {
                            ws_row: rows,
                            ws_col: cols,
                            ws_xpixel: 0,
                            ws_ypixel: 0,
                        };
                        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) };
                    }));
                    Box::new(h.writer(Stream::Stdout))
                }
            };
            let interactive = opts.interactive && foreground;
            if interactive {
                raw = tty::RawMode::enter();
            }
            pump = Some(tty::pump(&master, out, interactive)?);
            std::mem::forget(master);
        }
        if let Some(f) = fwd {
            f.set_target(running.pid.as_raw());
        }
        Ok(Session {
            running: Some(running),
            machine: None,
            pump,
            log_pipes: log_pipes.take(),
            log_pumps: Vec::new(),
            hub: hub.clone(),
            _raw: raw,
        })
    })();
    match result {
        Ok(s) => {
            record_running(c, id, s.running.as_ref().map_or(0, |r| r.pid.as_raw()))?;
            Ok(s)
        }
        Err(e) => {
            let _ = bundle.unmount_rootfs();
            net_leave(c, id);
            Err(e)
        }
    }
}

/// Tears container `id`'s network down in the host's mount table (its namespace's bind mount
/// is there, see [`super::monitor::in_host_mounts`]).
fn net_leave(c: &Containers, id: &str) {
    super::monitor::in_host_mounts(|| super::net::leave(c, id));
}

fn record_running(c: &Containers, id: &str, pid: i32) -> Result<(), RuntimeError> {
    let pid = ProcRef::of(pid);
    c.update(id, |r| {
        r.phase = Phase::Running;
        r.pid = pid;
        r.owner = Some(ProcRef::me());
        r.started = Some(super::state::now());
        r.finished = None;
        r.exit_code = None;
    })?;
    Ok(())
}

/// xrun's terminal size (rows, columns), 0 when unknown.
fn terminal_size() -> (u16, u16) {
    tty::window_size(libc::STDOUT_FILENO)
        .or_else(|| tty::window_size(libc::STDIN_FILENO))
        .map_or((0, 0), |w| (w.ws_row, w.ws_col))
}

/// A machine's control, once it started; signals that arrive before wait for it.
#[derive(Default)]
struct ControlSlot {
    control: Option<Arc<dyn MachineControl>>,
    pending: Vec<i32>,
}

/// Starts machine container `rec` (see [`super::machine`]): its streams go to xrun's own
/// (with `-t`, xrun's terminal in raw mode) or to the log; signals xrun receives (in the
/// foreground) and those relayed to it by `xrun kill`/`stop` go to the command.
fn launch_machine(
    c: &Containers,
    rec: &ContainerRecord,
    attach: &Attach,
    mut m: Box<dyn Machine>,
) -> Result<Session, RuntimeError> {
    let id = rec.id.as_str();
    let opts = &rec.options;
    let hub = match attach {
        Attach::Log(h) => Some(h.clone()),
        Attach::Foreground => None,
    };
    let foreground = hub.is_none();
    let io = if let Some(h) = &hub {
        let stdin = if opts.interactive {
            Some(Box::new(std::fs::File::from(stdin_pipe(h)?)) as Box<dyn Read + Send>)
        } else {
            None
        };
        MachineIo {
            stdin,
            stdout: Box::new(h.writer(Stream::Stdout)),
            stderr: Box::new(h.writer(Stream::Stderr)),
            tty: opts.tty.then_some((0, 0)),
        }
    } else {
        MachineIo {
            stdin: opts
                .interactive
                .then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>),
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
            tty: opts.tty.then(terminal_size),
        }
    };
    let slot = Arc::new(Mutex::new(ControlSlot::default()));
    let s2 = slot.clone();
    let resize = foreground && opts.tty;
    signals::relay(
        if foreground { signals::FORWARDED } else { &[] },
        Box::new(move |sig| {
            let mut s = s2.lock().unwrap_or_else(|e| e.into_inner());
            if sig == libc::SIGWINCH && resize {
                if let Some(c) = &s.control {
                    let (rows, cols) = terminal_size();
                    c.resize(rows, cols);
                }
                return;
            }
            match &s.control {
                Some(c) => c.signal(sig),
                None => s.pending.push(sig),
            }
        }),
    )?;
    let joined = super::net::join(c, rec)?;
    tracing::debug!("phase: network set up");
    let (pid, control) = match m.start(io, joined.as_ref()) {
        Ok(started) => started,
        Err(e) => {
            super::net::leave(c, id);
            return Err(e);
        }
    };
    {
        let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
        for sig in std::mem::take(&mut s.pending) {
            control.signal(sig);
        }
        s.control = Some(control.clone());
    }
    if let Some(h) = &hub {
        h.set_resize(Box::new(move |rows, cols| control.resize(rows, cols)));
    }
    let raw = if foreground && opts.tty && opts.interactive {
        tty::RawMode::enter()
    } else {
        None
    };
    if let Err(e) = record_running(c, id, pid) {
        drop(m);
        super::net::leave(c, id);
        return Err(e);
    }
    Ok(Session {
        running: None,
        machine: Some(m),
        pump: None,
        log_pipes: None,
        log_pumps: Vec::new(),
        hub,
        _raw: raw,
    })
}

/// Starts the container `rec`: a machine when `machines` makes one, else the OCI executor.
fn launch_any(
    c: &Containers,
    rec: &ContainerRecord,
    attach: &Attach,
    extras: &BundleExtras,
    machines: &dyn Machines,
) -> Result<Session, RuntimeError> {
    wait_previous_owner(rec);
    match machines.machine(c, rec)? {
        Some(m) => launch_machine(c, rec, attach, m),
        None => launch(c, rec, attach, extras),
    }
}

/// A restart right after an exit: the previous owner records the exit before it unmounts
/// the root file system and tears the network down (so waiters learn of the exit at once);
/// a new start waits until that owner is gone, else its cleanup would undo the new run's
/// mounts. Bounded: an owner stuck for 10 s is left behind, as before.
fn wait_previous_owner(rec: &ContainerRecord) {
    if let Some(owner) = rec.owner
        && owner != ProcRef::me()
        && owner.alive()
    {
        tracing::debug!("waiting for the previous owner {} to finish", owner.pid);
        wait_until(Duration::from_secs(10), || !owner.alive());
    }
}

fn open_log(c: &Containers, id: &str) -> Result<std::fs::File, RuntimeError> {
    std::fs::File::options()
        .create(true)
        .append(true)
        .open(c.log_path(id))
        .map_err(|e| RuntimeError::io("opening the container log", e))
}

fn finish(c: &Containers, id: &str, mut session: Session) -> Result<i32, RuntimeError> {
    let code = match (session.machine.as_mut(), session.running.as_mut()) {
        (Some(m), _) => m.wait(),
        (None, Some(r)) => executor::wait(r),
        (None, None) => Err(RuntimeError::Runtime("nothing was started".into())),
    };
    tracing::debug!("phase: container exited");
    let pumps: Vec<_> = session
        .pump
        .take()
        .into_iter()
        .chain(std::mem::take(&mut session.log_pumps))
        .collect();
    if !pumps.is_empty() {
        // What the container wrote last is in the pipes: drain it (bounded: a process that
        // escaped the container could hold a pipe open).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for p in pumps {
                let _ = p.join();
            }
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(2));
    }
    let hub = session.hub.take();
    if let Some(h) = &hub {
        // Before the exit is recorded (a next start binds the socket anew): later clients
        // take the log and the recorded exit.
        h.close_socket();
    }
    drop(session);
    // Its PID 1 is reaped: the network goes before the exit is recorded, so whoever waits
    // for the exit (`stop`, `rm -f`) finds it gone.
    net_leave(c, id);
    let exited = |r: &mut ContainerRecord| {
        r.phase = Phase::Exited;
        r.exit_code = code.as_ref().ok().copied();
        r.finished = Some(super::state::now());
        r.pid = None;
    };
    // A `--rm` container's record is about to go: no need to write its exit first (should
    // this process die in between, the stale record is cleaned up and removed all the same).
    let rec = match c.load(id) {
        Ok(mut r) if r.options.auto_remove => {
            exited(&mut r);
            r
        }
        _ => c.update(id, exited)?,
    };
    tracing::debug!("phase: exit recorded");
    let cleaned = (|| {
        // Its PID 1 is reaped: nothing of it runs any more.
        executor::delete_exited(
            &c.runtime_root(&rec.id),
            &rec.id,
            &Engine::from_option(rec.options.runtime.as_ref()),
        );
        super::cgroups::remove_recorded(&rec.id, &c.cgroups_record(&rec.id));
        c.bundle(&rec.id).unmount_rootfs()?;
        tracing::debug!("phase: cleaned up");
        if rec.options.auto_remove {
            remove_dir(c, id)?;
            tracing::debug!("phase: removed");
        }
        Ok::<(), RuntimeError>(())
    })();
    if let Some(hub) = hub {
        // Attached clients get the exit and the last of the output.
        hub.finish(code.as_ref().ok().copied());
    }
    cleaned?;
    code
}

/// Removes a stopped container's directory, then releases its snapshot lease in the store
/// (taken by `xrun create`/`run`; a missing lease is fine), so `xrun image prune` may free
/// the layers it no longer needs.
fn remove_dir(c: &Containers, id: &str) -> Result<(), RuntimeError> {
    c.remove_dir(id)?;
    crate::fault::point("rm.before-release");
    if let Some(root) = c.dir().parent()
        && let Ok(store) = crate::store::Store::open(root)
        && let Err(e) = store.release_snapshots(id)
    {
        tracing::warn!("releasing the snapshot lease of {id}: {e}");
    }
    Ok(())
}

/// Removes what a stopped container leaves behind: the runtime's state and cgroups, the
/// root file system mount.
fn cleanup(c: &Containers, rec: &ContainerRecord) -> Result<(), RuntimeError> {
    let engine = Engine::from_option(rec.options.runtime.as_ref());
    executor::delete(&c.runtime_root(&rec.id), &rec.id, &engine);
    super::cgroups::remove_recorded(&rec.id, &c.cgroups_record(&rec.id));
    super::net::leave(c, &rec.id);
    c.bundle(&rec.id).unmount_rootfs()
}

/// Runs container `id` attached to xrun's terminal until it exits; returns its exit code.
/// `remove_on_error`: drop the container if it cannot be started (`run`, not `start`).
/// `machines` makes the machine of a machine container (the vm route).
pub fn run_attached(
    c: &Containers,
    id: &str,
    extras: &BundleExtras,
    remove_on_error: bool,
    machines: &dyn Machines,
) -> Result<i32, RuntimeError> {
    let rec = c.load(id)?;
    let session = match launch_any(c, &rec, &Attach::Foreground, extras, machines) {
        Ok(s) => s,
        Err(e) => {
            if remove_on_error || rec.options.auto_remove {
                let _ = cleanup(c, &rec);
                let _ = remove_dir(c, id);
            }
            return Err(e);
        }
    };
    finish(c, id, session)
}

/// Runs container `id` until it exits with its output going to its log (no terminal, no
/// stdin; read it with [`super::log::decode`] while it runs), for callers that relay the
/// output themselves (the build's `RUN` steps). Returns its exit code.
pub fn run_logged(
    c: &Containers,
    id: &str,
    extras: &BundleExtras,
    machines: &dyn Machines,
) -> Result<i32, RuntimeError> {
    let rec = c.load(id)?;
    let hub = Hub::new(open_log(c, id)?, c.log_path(id), 0, false, false);
    let mut session = match launch_any(c, &rec, &Attach::Log(hub.clone()), extras, machines) {
        Ok(s) => s,
        Err(e) => {
            hub.finish(None);
            let _ = cleanup(c, &rec);
            let _ = remove_dir(c, id);
            return Err(e);
        }
    };
    session.pump_logs(c, id)?;
    finish(c, id, session)
}

/// The monitor's answer on the readiness pipe (`OK` or `ERR CODE MESSAGE`; empty when it
/// ended without one). The monitor first sends `PID n`: if it dies (killed) while a process
/// it made still holds the pipe (a container init waiting to be started), the end of the
/// monitor, not of the pipe, ends the wait.
fn read_answer(ready: std::fs::File) -> String {
    let fd = ready.as_raw_fd();
    let mut buf: Vec<u8> = Vec::new();
    let mut monitor: Option<ProcRef> = None;
    loop {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 200) };
        if n == 0 {
            if monitor.is_some_and(|m| !m.alive()) {
                break;
            }
            continue;
        }
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        let mut chunk = [0u8; 1024];
        match (&ready).read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            if let Some(p) = line.strip_prefix("PID ") {
                monitor = p.trim().parse().ok().and_then(ProcRef::of);
            } else if line.starts_with("OK") || line.starts_with("ERR") {
                return line;
            }
        }
        if buf.len() > 64 * 1024 {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Starts container `id` detached under its monitor; returns once it runs (or failed).
/// `spares`: hand it to a spare monitor when one is ready (see [`super::monitor`]).
pub fn start_detached(
    c: &Containers,
    root: &std::path::Path,
    id: &str,
    remove_on_error: bool,
    spares: Option<&Arc<super::monitor::SpareMonitors>>,
) -> Result<(), RuntimeError> {
    let spared = spares.and_then(|s| s.take()).and_then(|s| s.assign(id));
    let ready = match spared {
        Some(r) => r,
        None => super::monitor::spawn(&super::seal::original_exe()?, root, id, None)?,
    };
    let answer = read_answer(ready);
    if answer.starts_with("OK") {
        return Ok(());
    }
    let err = match answer.strip_prefix("ERR ").and_then(|a| a.split_once(' ')) {
        Some(("127", m)) => RuntimeError::CommandNotFound(m.trim().into()),
        Some(("126", m)) => RuntimeError::NotExecutable(m.trim().into()),
        Some((_, m)) => RuntimeError::Runtime(m.trim().into()),
        None => RuntimeError::Runtime(
            "the container monitor exited before starting the container".into(),
        ),
    };
    if remove_on_error && let Ok(rec) = c.load(id) {
        let _ = cleanup(c, &rec);
        let _ = remove_dir(c, id);
    }
    Err(err)
}

/// The monitor's body (`xrun internal monitor ID`, fd 3 = readiness pipe); `machines` makes
/// the machine of a machine container (the vm route).
pub fn monitor(
    c: &Containers,
    id: &str,
    ready: Option<OwnedFd>,
    machines: &dyn Machines,
) -> Result<u8, RuntimeError> {
    super::monitor::lean_allocator();
    for s in [Signal::SIGHUP, Signal::SIGINT, Signal::SIGPIPE] {
        unsafe { nix::sys::signal::signal(s, nix::sys::signal::SigHandler::SigIgn) }?;
    }
    if let Some(resume) = super::seal::take_monitor_resume() {
        drop(ready);
        let rec = c.load(id)?;
        let log = open_log(c, id)?;
        let hub = Hub::new(
            log,
            c.log_path(id),
            rec.log_start,
            super::attach::serves_tty(&rec.options),
            false,
        );
        if let Some(l) = resume.listener {
            hub.serve_socket(l, &super::attach::socket_path(c, id));
        }
        let mut session = Session {
            running: Some(executor::Running::adopt(Pid::from_raw(resume.pid))),
            machine: None,
            pump: None,
            log_pipes: resume.pipes,
            log_pumps: Vec::new(),
            hub: Some(hub),
            _raw: None,
        };
        session.pump_logs(c, id)?;
        super::monitor::shrink();
        return finish(c, id, session).map(|_| 0);
    }
    // Not inherited by what the monitor starts (a VM's qemu): `start_detached` reads the
    // pipe to its end. (Only now: the seal's re-execution above needs it inherited.)
    if let Some(fd) = &ready {
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let mut ready = ready.map(std::fs::File::from);
    super::monitor::want_private_mounts();
    let rec = c.load(id)?;
    let (hub, listener) = attach_hub(c, &rec)?;
    let attach = Attach::Log(hub.clone());
    let mut session = match launch_any(c, &rec, &attach, &BundleExtras::default(), machines) {
        Ok(s) => s,
        Err(e) => {
            if let Some((_, path)) = &listener {
                let _ = std::fs::remove_file(path);
            }
            hub.finish(None);
            if let Some(r) = &mut ready {
                let _ = writeln!(
                    r,
                    "ERR {} {}",
                    e.exit_code(),
                    e.to_string().replace('\n', " ")
                );
            }
            return Ok(e.exit_code());
        }
    };
    if let Some(mut r) = ready.take() {
        let _ = r.write_all(b"OK\n");
    }
    crate::fault::point("run.monitor");
    // Running from a memfd copy (the fallback protection), the monitor would keep the whole
    // copy in memory for the container's lifetime: once the container runs (no xrun process
    // is in it any more), re-execute the on-disk binary to keep waiting: the container stays
    // this process's child across exec. Not with a terminal pump or an external runtime
    // process, which do not survive an exec.
    // The output pipes and the attach socket go along (the pipes hold what the container
    // writes meanwhile, the socket's backlog the clients that connect). Not with clients
    // attached already or a stdin kept: they stay here.
    if let Some(running) = &session.running
        && super::seal::current_protection() == Some(super::seal::Protection::Memfd)
        && session.pump.is_none()
        && hub.idle()
        && !running.has_runtime_child()
    {
        let e = super::seal::resume_monitor_from_disk(
            id,
            running.pid.as_raw(),
            session.log_pipes.as_ref(),
            listener.as_ref().map(|(l, _)| l),
        );
        tracing::warn!("monitor of {id}: keeps the binary copy: {e}");
    }
    if let Some((l, path)) = listener {
        hub.serve_socket(l, &path);
    }
    session.pump_logs(c, id)?;
    super::monitor::shrink();
    finish(c, id, session).map(|_| 0)
}

/// An attach socket, bound, not served yet, and its path.
type AttachSocket = (std::os::unix::net::UnixListener, std::path::PathBuf);

/// The attach hub of a run under the monitor: the log (this run's output starts at its
/// current end), the clients that were waiting for this start (after `runs` is bumped: see
/// [`super::attach`]), and the attach socket.
fn attach_hub(
    c: &Containers,
    rec: &ContainerRecord,
) -> Result<(Arc<Hub>, Option<AttachSocket>), RuntimeError> {
    let log = open_log(c, &rec.id)?;
    let start = log
        .metadata()
        .map_err(|e| RuntimeError::io("reading the container log", e))?
        .len();
    c.update(&rec.id, |r| {
        r.runs += 1;
        r.log_start = start;
    })?;
    let hub = Hub::new(
        log,
        c.log_path(&rec.id),
        start,
        super::attach::serves_tty(&rec.options),
        rec.options.interactive,
    );
    let path = super::attach::socket_path(c, &rec.id);
    let listener = match super::attach::hub::bind(&path) {
        Ok(l) => Some((l, path)),
        Err(e) => {
            tracing::warn!("container {}: no attach socket: {e}", rec.short_id());
            None
        }
    };
    hub.adopt(super::attach::pending_sockets(c, &rec.id));
    Ok((hub, listener))
}

/// Removes the runtime leftovers of container `id` if nothing owns it (it does not run and
/// no xrun process is starting or watching it): the runtime's state (deleting a container
/// init left waiting for its start), cgroups and the root file system mount. For
/// `system check --repair`, after a crash between the runtime's create and the record of
/// the run. Returns whether it cleaned up.
pub fn clean_up_unowned(c: &Containers, id: &str) -> bool {
    let Ok(rec) = c.load(id) else {
        return false;
    };
    if rec.is_owned() {
        return false;
    }
    let _ = cleanup(c, &rec);
    true
}

/// Cleans up containers whose owner died without recording an exit: the runtime state,
/// cgroups and mount go; the record stays as `Exited (unknown)` (or goes, for `--rm`).
pub fn cleanup_stale(c: &Containers) {
    cleanup_stale_of(c, c.list());
}

/// Every container (newest first) with its status, after [`cleanup_stale`]: `ps` at scale
/// reads each record once and checks each process once when none is stale (a record whose
/// status is `Unknown` while it says running is exactly a stale one). The checks run on
/// every core.
pub fn list_current(c: &Containers) -> Vec<(ContainerRecord, super::state::Status)> {
    let with_status = |list: Vec<ContainerRecord>| {
        let threads = crate::par::threads_for(list.len(), 64);
        let statuses = crate::par::map(&list, threads, |r| r.status());
        list.into_iter().zip(statuses).collect::<Vec<_>>()
    };
    let listed = with_status(c.list());
    let stale: Vec<ContainerRecord> = listed
        .iter()
        .filter(|(r, st)| r.phase == Phase::Running && *st == super::state::Status::Unknown)
        .map(|(r, _)| r.clone())
        .collect();
    if stale.is_empty() {
        return listed;
    }
    cleanup_stale_of(c, stale);
    with_status(c.list())
}

fn cleanup_stale_of(c: &Containers, recs: Vec<ContainerRecord>) {
    for rec in recs {
        if !rec.is_stale() {
            continue;
        }
        let _ = cleanup(c, &rec);
        let updated = c.update(&rec.id, |r| {
            if r.is_stale() {
                r.phase = Phase::Exited;
                r.exit_code = None;
                r.finished = Some(super::state::now());
                r.pid = None;
            }
        });
        if rec.options.auto_remove && updated.is_ok() {
            let _ = remove_dir(c, &rec.id);
        }
    }
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the owner has recorded the exit (or is gone), then cleans up if stale.
fn wait_settled(c: &Containers, id: &str) {
    wait_until(Duration::from_secs(10), || match c.load(id) {
        Ok(r) => r.phase != Phase::Running || r.is_stale(),
        Err(_) => true,
    });
    if let Ok(r) = c.load(id)
        && r.is_stale()
    {
        cleanup_stale_of(c, vec![r]);
    }
}

/// Sends `sig` to running container `rec`: to its process, or for a machine container
/// (whose process is the machine, e.g. qemu) relayed by its owner to the command, except
/// SIGKILL, which kills the machine.
fn signal_container(rec: &ContainerRecord, sig: Signal) -> Result<(), RuntimeError> {
    let pid = rec.pid.ok_or_else(|| {
        RuntimeError::WrongState(format!("container {} has no process", rec.short_id()))
    })?;
    if rec.options.route == ExecRoute::Vm
        && sig != Signal::SIGKILL
        && let Some(owner) = rec.owner
        && owner.alive()
    {
        return signals::send_relayed(owner.pid, sig);
    }
    nix::sys::signal::kill(Pid::from_raw(pid.pid), sig)?;
    Ok(())
}

/// Sends `sig` to a running container.
pub fn kill(c: &Containers, key: &str, sig: Signal) -> Result<ContainerRecord, RuntimeError> {
    let rec = c.find(key)?;
    if !rec.is_running() {
        return Err(RuntimeError::WrongState(format!(
            "container {key} is not running"
        )));
    }
    signal_container(&rec, sig)?;
    if sig == Signal::SIGKILL {
        wait_settled(c, &rec.id);
    }
    Ok(rec)
}

/// SIGTERM, then SIGKILL after `timeout`; returns once the exit is recorded.
pub fn stop(c: &Containers, key: &str, timeout: Duration) -> Result<ContainerRecord, RuntimeError> {
    let rec = c.find(key)?;
    if !rec.is_running() {
        if rec.is_stale() {
            cleanup_stale_of(c, vec![rec.clone()]);
        }
        return Ok(rec);
    }
    let pid = rec.pid.expect("running has a pid");
    let _ = signal_container(&rec, Signal::SIGTERM);
    crate::fault::point("stop");
    if !wait_until(timeout, || !pid.alive()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid.pid), Signal::SIGKILL);
    }
    wait_settled(c, &rec.id);
    Ok(rec)
}

/// Removes a container (its upper layer, state and log); a running one only with `force`.
pub fn remove(c: &Containers, key: &str, force: bool) -> Result<ContainerRecord, RuntimeError> {
    let rec = c.find(key)?;
    if rec.is_running() {
        if !force {
            return Err(RuntimeError::WrongState(format!(
                "cannot remove running container {key}: stop it first or use rm -f"
            )));
        }
        if let Some(pid) = rec.pid {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid.pid), Signal::SIGKILL);
        }
        wait_settled(c, &rec.id);
    }
    // The monitor records the exit, then cleans up (runtime state, cgroups, mount): let it
    // finish rather than race it (bounded, as for a restart).
    if let Ok(r) = c.load(&rec.id) {
        wait_previous_owner(&r);
    }
    if !c.container_dir(&rec.id).exists() {
        return Ok(rec);
    }
    let _l = c.lock(&rec.id)?;
    let rec2 = c.load(&rec.id).unwrap_or(rec.clone());
    if rec2.is_running() {
        return Err(RuntimeError::WrongState(format!(
            "container {key} is still running"
        )));
    }
    cleanup(c, &rec2)?;
    crate::fault::point("rm");
    remove_dir(c, &rec.id)?;
    Ok(rec)
}

/// The running container's root file system as this process can read it: its PID 1's root
/// (`/proc/PID/root`: the overlay is mounted in its monitor's namespace, not the host's; see
/// [`super::monitor::private_mounts`]), else the bundle's mount point.
fn container_root(rec: &ContainerRecord, bundle: &super::Bundle) -> std::path::PathBuf {
    match rec.pid {
        Some(p) if p.alive() => std::path::PathBuf::from(format!("/proc/{}/root", p.pid)),
        _ => bundle.rootfs(),
    }
}

/// `exec`: runs `args` in the running container; returns its exit code.
#[allow(clippy::too_many_arguments)]
pub fn exec(
    c: &Containers,
    key: &str,
    args: Vec<String>,
    env: Vec<String>,
    interactive: bool,
    use_tty: bool,
    cwd: Option<String>,
    user: Option<(u32, u32)>,
) -> Result<i32, RuntimeError> {
    let rec = c.find(key)?;
    if !rec.is_running() {
        return Err(RuntimeError::WrongState(format!(
            "container {key} is not running"
        )));
    }
    if args.is_empty() {
        return Err(RuntimeError::BadInput("exec needs a command".into()));
    }
    if rec.options.route == ExecRoute::Vm {
        return Err(RuntimeError::BadInput(format!(
            "exec is not supported on the vm route (container {key} runs in a VM)"
        )));
    }
    let bundle = c.bundle(&rec.id);
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(
        &std::fs::read(bundle.config_path())
            .map_err(|e| RuntimeError::io("reading config.json", e))?,
    )
    .map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
    let process = spec.process().clone().unwrap_or_default();
    let penv = process.env().clone().unwrap_or_default();
    let path = penv
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::spec::DEFAULT_PATH);
    // `-w` checked in the container's root as the host sees it (binds aside): a file, a path
    // through /proc (the runtime's own descriptors, CVE-2024-21626) or a missing one is one
    // clear line here, not the runtime's "failed to unix syscall".
    let cwd = match cwd {
        Some(w) => {
            let root = super::inroot::Root::open(&container_root(&rec, &bundle))
                .map_err(|e| RuntimeError::Runtime(format!("opening the root file system: {e}")))?;
            let binds: Vec<String> = spec
                .mounts()
                .iter()
                .flatten()
                .filter(|m| m.typ().as_deref() == Some("bind"))
                .map(|m| m.destination().display().to_string())
                .collect();
            Some(super::placement::exec_workdir(&root, &w, &binds)?)
        }
        None => None,
    };
    let wd = cwd
        .clone()
        .unwrap_or_else(|| process.cwd().display().to_string());
    super::resolve::check_command(&container_root(&rec, &bundle), &args[0], path, &wd)?;
    let engine = Engine::from_option(rec.options.runtime.as_ref());
    let mut pump = None;
    let mut raw = None;
    let winch_master = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(-1));
    // libcontainer makes the terminal inside the container (its own devpts, so `tty` names
    // it) and sends the master over a console socket; an external runtime gets one of xrun's.
    let console = if use_tty && engine == Engine::Libcontainer {
        let dir = super::rundir::ensure()
            .unwrap_or_else(|| std::path::PathBuf::from(super::rundir::RUN_DIR));
        std::fs::create_dir_all(&dir).map_err(|e| RuntimeError::io("creating /run/xrun", e))?;
        let sock = dir.join(format!(
            "exec-{}-{}.sock",
            &rec.id[..12],
            std::process::id()
        ));
        Some(tty::ConsoleSocket::listen(&sock)?)
    } else {
        None
    };
    let mut host_master = None;
    let stdio = if console.is_some() {
        Stdio {
            stdin: dev_null()?,
            stdout: dev_null()?,
            stderr: dev_null()?,
        }
    } else if use_tty {
        let pty = tty::open()?;
        let s = Stdio {
            stdin: pty
                .slave
                .try_clone()
                .map_err(|e| RuntimeError::io("pty", e))?,
            stdout: pty
                .slave
                .try_clone()
                .map_err(|e| RuntimeError::io("pty", e))?,
            stderr: pty
                .slave
                .try_clone()
                .map_err(|e| RuntimeError::io("pty", e))?,
        };
        host_master = Some(pty.master);
        s
    } else {
        Stdio {
            stdin: if interactive { dup_fd(0)? } else { dev_null()? },
            stdout: dup_fd(1)?,
            stderr: dup_fd(2)?,
        }
    };
    let m = winch_master.clone();
    let fwd = signals::forward(Some(Box::new(move || {
        let fd = m.load(Ordering::SeqCst);
        if fd >= 0 {
            tty::copy_window_size(fd);
        }
    })))?;
    let mut env_all = env;
    if use_tty && !env_all.iter().any(|e| e.starts_with("TERM=")) {
        env_all.push("TERM=xterm".into());
    }
    let req = ExecRequest {
        args,
        env: env_all,
        cwd,
        user,
    };
    let mut running = executor::exec(
        &spec,
        &c.runtime_root(&rec.id),
        &c.seccomp_cache(),
        &rec.id,
        &engine,
        &req,
        stdio,
        console.as_ref().map(|s| s.path()),
    )?;
    let master = match &console {
        Some(sock) => match sock.master() {
            Ok(m) => Some(m),
            Err(e) => {
                let _ = nix::sys::signal::kill(running.pid, Signal::SIGKILL);
                let _ = executor::wait(&mut running);
                return Err(e);
            }
        },
        None => host_master,
    };
    if let Some(master) = master {
        tty::copy_window_size(master.as_raw_fd());
        winch_master.store(master.as_raw_fd(), Ordering::SeqCst);
        if interactive {
            raw = tty::RawMode::enter();
        }
        pump = Some(tty::pump(
            &master,
            Box::new(std::io::stdout()),
            interactive,
        )?);
        std::mem::forget(master);
    }
    fwd.set_target(running.pid.as_raw());
    let code = executor::wait(&mut running);
    if let Some(p) = pump {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = p.join();
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(2));
    }
    drop(raw);
    code
}
