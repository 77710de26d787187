//! Runs a bundle: in-process through youki's `libcontainer` (default), or through an external
//! OCI runtime binary (`--runtime PATH`: runc, crun) with its command line.
//!
//! libcontainer: build + start happen under one process-wide lock (they change the working
//! directory of the whole process for a moment), stdio is flushed before (the cloned helpers
//! would flush buffered output again), the container is a direct child of the caller, which
//! reaps it with `waitpid` (xrun installs no global reaper), and every error path deletes
//! what was created.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio as PStdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use super::{Bundle, RuntimeError};

static LOCK: Mutex<()> = Mutex::new(());

/// The standard streams handed to the container.
pub struct Stdio {
    /// stdin.
    pub stdin: OwnedFd,
    /// stdout.
    pub stdout: OwnedFd,
    /// stderr.
    pub stderr: OwnedFd,
}

/// Which OCI runtime runs the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// youki's libcontainer, in-process.
    Libcontainer,
    /// An external runtime binary speaking runc's command line.
    External(PathBuf),
}

impl Engine {
    /// From `--runtime`.
    pub fn from_option(runtime: Option<&PathBuf>) -> Engine {
        runtime
            .map(|p| Engine::External(p.clone()))
            .unwrap_or(Engine::Libcontainer)
    }
}

/// A started container (or exec'd process).
pub struct Running {
    /// The container's process (PID 1 inside), as seen from the host.
    pub pid: Pid,
    /// The external runtime process, which exits with the container's status.
    child: Option<Child>,
}

impl Running {
    /// A container process started by libcontainer that is already this process's child
    /// (the monitor after re-executing itself).
    pub fn adopt(pid: Pid) -> Running {
        Running { pid, child: None }
    }

    /// Whether an external runtime process is attached (it cannot survive an exec).
    pub fn has_runtime_child(&self) -> bool {
        self.child.is_some()
    }
}

/// libcontainer's workload executor, with two additions: under `-t` the pty on stdin becomes
/// the process's controlling terminal (libcontainer has already made it a session leader), and
/// the seccomp program compiled once by [`super::seccomp_bpf`] is loaded right before `execve`.
#[derive(Clone)]
struct XrunExecutor;

impl Executor for XrunExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        // Only stdin, stdout and stderr cross the execve (libcontainer keeps the first
        // `LISTEN_FDS` descriptors of xrun's own environment open for the process).
        cloexec_above_stderr()
            .map_err(|e| ExecutorError::Other(format!("closing inherited descriptors: {e}")))?;
        // The working directory must be inside the container's root (a descriptor of the
        // runtime's as `cwd`, CVE-2024-21626, leaves it unreachable): libcontainer checks it
        // too; this holds whatever the runtime version.
        match nix::unistd::getcwd() {
            Ok(p) if p.is_absolute() => {}
            _ => {
                return Err(ExecutorError::Other(
                    "the working directory is outside the container's root file system".into(),
                ));
            }
        }
        super::tty::take_controlling_terminal(unsafe { std::os::fd::BorrowedFd::borrow_raw(0) });
        // The last step before execve, as runc does: the compiled seccomp program.
        super::seccomp_bpf::load_armed()
            .map_err(|e| ExecutorError::Other(format!("loading the seccomp filter: {e}")))?;
        let args = spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        // The signals blocked since the start (see `start_libcontainer`) stay blocked, and
        // pending, for xrun's init, which waits for them; anything else starts with none.
        if !super::init::is_init(&args) {
            nix::sys::signal::SigSet::all()
                .thread_unblock()
                .map_err(|e| ExecutorError::Other(format!("unblocking signals: {e}")))?;
        }
        DefaultExecutor {}.exec(spec)
    }
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Marks every descriptor above 2 close-on-exec (`close_range(3, ~0, CLOSE_RANGE_CLOEXEC)`,
/// else one `fcntl` per entry of `/proc/self/fd`).
fn cloexec_above_stderr() -> std::io::Result<()> {
    // SAFETY: a plain system call on integers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: setting a flag on a descriptor number; a closed one just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Blocks the forwarded signals in this thread until dropped, then restores its mask.
struct BlockedSignals(Option<nix::sys::signal::SigSet>);

impl BlockedSignals {
    fn block() -> BlockedSignals {
        let mut old = nix::sys::signal::SigSet::empty();
        let set = super::init::forwarded_signals();
        match nix::sys::signal::pthread_sigmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&set),
            Some(&mut old),
        ) {
            Ok(()) => BlockedSignals(Some(old)),
            Err(_) => BlockedSignals(None),
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = nix::sys::signal::pthread_sigmask(
                nix::sys::signal::SigmaskHow::SIG_SETMASK,
                Some(old),
                None,
            );
        }
    }
}

fn lc_err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Runtime(format!("{what}: {e}"))
}

/// Starts the bundle as container `id`, with the runtime's state under `state_root`.
/// With `console`, the container's terminal is made inside it (its own devpts, bound to
/// `/dev/console`) and its master side is sent over that unix socket (runc's console-socket
/// protocol); `stdio` is then unused.
///
/// `spec` is the bundle's `config.json`; the built-in runtime takes its seccomp profile as a
/// program compiled once (cached in `seccomp_cache`) and runs a copy of the spec without it,
/// kept in `state_root` (see [`super::seccomp_bpf`]).
#[allow(clippy::too_many_arguments)]
pub fn start(
    bundle: &Bundle,
    spec: &Spec,
    state_root: &Path,
    seccomp_cache: &Path,
    id: &str,
    engine: &Engine,
    stdio: Stdio,
    console: Option<&Path>,
) -> Result<Running, RuntimeError> {
    std::fs::create_dir_all(state_root)
        .map_err(|e| RuntimeError::io("creating runtime state dir", e))?;
    match engine {
        Engine::Libcontainer => {
            let dir = libcontainer_bundle(bundle, spec, state_root, seccomp_cache)?;
            start_libcontainer(&dir, state_root, id, stdio, console)
        }
        Engine::External(bin) => start_external(bin, bundle, state_root, id, stdio),
    }
}

/// Arms the compiled seccomp program of `spec` and returns the bundle directory libcontainer
/// runs: the bundle itself without a profile, else a copy of the spec without it (rootfs made
/// absolute) in `state_root`.
fn libcontainer_bundle(
    bundle: &Bundle,
    spec: &Spec,
    state_root: &Path,
    seccomp_cache: &Path,
) -> Result<PathBuf, RuntimeError> {
    let Some(profile) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else {
        super::seccomp_bpf::arm(None);
        return Ok(bundle.dir.clone());
    };
    super::seccomp_bpf::arm(Some(super::seccomp_bpf::cached(&profile, seccomp_cache)?));
    let mut lc = spec.clone();
    if let Some(linux) = lc.linux_mut() {
        linux.set_seccomp(None);
    }
    if let Some(root) = lc.root_mut() {
        let abs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.dir.join(root.path())
        };
        root.set_path(abs);
    }
    let json = serde_json::to_vec(&lc).map_err(|e| RuntimeError::Runtime(e.to_string()))?;
    std::fs::write(state_root.join("config.json"), json)
        .map_err(|e| RuntimeError::io("writing the runtime's config.json", e))?;
    Ok(state_root.to_path_buf())
}

fn start_libcontainer(
    bundle_dir: &Path,
    state_root: &Path,
    id: &str,
    stdio: Stdio,
    console: Option<&Path>,
) -> Result<Running, RuntimeError> {
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // The container's PID 1 drops signals it has no handler for: from its creation until its
    // `execve`, the signals xrun forwards stay blocked (pending), inherited by the cloned
    // processes; this thread's own mask comes back after the start.
    let _mask = BlockedSignals::block();
    let built = ContainerBuilder::new(id.to_string(), SyscallType::default())
        .with_executor(XrunExecutor)
        .with_root_path(state_root)
        .map_err(|e| lc_err("runtime root", e))?
        .with_stdin(stdio.stdin)
        .with_stdout(stdio.stdout)
        .with_stderr(stdio.stderr)
        .with_console_socket(console)
        .validate_id()
        .map_err(|e| lc_err("container id", e))?
        .as_init(bundle_dir)
        .with_systemd(false)
        .with_detach(console.is_some())
        .build();
    let mut container = match built {
        Ok(c) => c,
        Err(e) => {
            drop(guard);
            delete(state_root, id, &Engine::Libcontainer);
            return Err(lc_err("creating the container", e));
        }
    };
    crate::fault::point("run.after-cgroups");
    if let Err(e) = container.start() {
        drop(guard);
        delete(state_root, id, &Engine::Libcontainer);
        return Err(lc_err("starting the container", e));
    }
    drop(guard);
    let pid = container
        .pid()
        .ok_or_else(|| RuntimeError::Runtime("container has no pid".into()))?;
    Ok(Running { pid, child: None })
}

fn start_external(
    bin: &Path,
    bundle: &Bundle,
    state_root: &Path,
    id: &str,
    stdio: Stdio,
) -> Result<Running, RuntimeError> {
    let pid_file = bundle.dir.join("runtime.pid");
    let _ = std::fs::remove_file(&pid_file);
    let mut child = Command::new(bin)
        .arg("--root")
        .arg(state_root)
        .args(["run", "--bundle"])
        .arg(&bundle.dir)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(id)
        .stdin(PStdio::from(stdio.stdin))
        .stdout(PStdio::from(stdio.stdout))
        .stderr(PStdio::from(stdio.stderr))
        .spawn()
        .map_err(|e| RuntimeError::io(format!("running {}", bin.display()), e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
            return Ok(Running {
                pid: Pid::from_raw(pid),
                child: Some(child),
            });
        }
        if let Ok(Some(status)) = child.try_wait() {
            delete(state_root, id, &Engine::External(bin.to_path_buf()));
            return Err(RuntimeError::Runtime(format!(
                "{} failed to start the container ({status})",
                bin.display()
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            delete(state_root, id, &Engine::External(bin.to_path_buf()));
            return Err(RuntimeError::Runtime(format!(
                "{} did not start the container in 30 s",
                bin.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A wait status as a shell exit code (128+N for signal N).
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Waits for the container to exit; returns its exit code.
pub fn wait(running: &mut Running) -> Result<i32, RuntimeError> {
    if let Some(child) = &mut running.child {
        let st = child
            .wait()
            .map_err(|e| RuntimeError::io("waiting for the runtime", e))?;
        use std::os::unix::process::ExitStatusExt;
        return Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)));
    }
    loop {
        match waitpid(running.pid, None) {
            Ok(st) => {
                if let Some(c) = exit_code(st) {
                    return Ok(c);
                }
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(RuntimeError::io("waiting for the container", e.into())),
        }
    }
}

/// Deletes the runtime's record of container `id` (killing what is left, removing its
/// cgroups); missing is fine.
pub fn delete(state_root: &Path, id: &str, engine: &Engine) {
    match engine {
        Engine::Libcontainer => {
            let dir = state_root.join(id);
            if !dir.exists() {
                return;
            }
            let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
            match Container::load(dir.clone()) {
                Ok(mut c) => {
                    if let Err(e) = c.delete(true) {
                        tracing::warn!("deleting container {id}: {e}");
                    }
                }
                Err(e) => tracing::warn!("loading container {id}: {e}"),
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
        Engine::External(bin) => {
            let _ = Command::new(bin)
                .arg("--root")
                .arg(state_root)
                .args(["delete", "--force", id])
                .stdout(PStdio::null())
                .stderr(PStdio::null())
                .status();
        }
    }
    super::cgroups::remove_leftovers(id);
}

/// Writes the process of an `exec -t` (the container's process with the request's command,
/// environment on top of the container's, working directory, user and a terminal) for
/// libcontainer; returns its path.
fn write_exec_process(
    spec: &Spec,
    state_root: &Path,
    req: &ExecRequest,
) -> Result<PathBuf, RuntimeError> {
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(req.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for e in &req.env {
        let key = e.split('=').next().unwrap_or_default();
        env.retain(|x| x.split('=').next() != Some(key));
        env.push(e.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &req.cwd {
        p.set_cwd(PathBuf::from(cwd));
    }
    if let Some((u, g)) = req.user {
        let mut user = p.user().clone();
        user.set_uid(u);
        user.set_gid(g);
        p.set_user(user);
    }
    p.set_terminal(Some(true));
    let path = state_root.join(format!("exec-{}.json", std::process::id()));
    let json = serde_json::to_vec(&p).map_err(|e| RuntimeError::Runtime(e.to_string()))?;
    std::fs::write(&path, json).map_err(|e| RuntimeError::io("writing the exec process", e))?;
    Ok(path)
}

/// Like [`delete`], for a container whose PID 1 this process has reaped: with the built-in
/// runtime, no process can be left (the kernel ends a PID namespace with its init, and
/// `exec`'d processes join it), so its cgroups are removed directly and its state directory
/// dropped — libcontainer's own delete re-reads the mount table and walks procfs to find
/// them (milliseconds per run). Falls back to [`delete`] when a cgroup stays busy.
pub fn delete_exited(state_root: &Path, id: &str, engine: &Engine) {
    if *engine != Engine::Libcontainer {
        return delete(state_root, id, engine);
    }
    let deadline = Instant::now() + Duration::from_millis(200);
    loop {
        super::cgroups::remove_leftovers(id);
        if super::cgroups::existing_dirs(id).is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return delete(state_root, id, engine);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let dir = state_root.join(id);
    if dir.exists() {
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// What `exec` runs in a running container.
pub struct ExecRequest {
    /// The command.
    pub args: Vec<String>,
    /// Extra `KEY=VALUE` (on top of the container's environment).
    pub env: Vec<String>,
    /// Working directory (default: the container's).
    pub cwd: Option<String>,
    /// User (uid, gid), default: the container's.
    pub user: Option<(u32, u32)>,
}

/// Runs a process in the running container `id` (joining its namespaces and cgroup), under
/// the seccomp profile of the container's `spec` (the bundle's `config.json`).
#[allow(clippy::too_many_arguments)]
pub fn exec(
    spec: &Spec,
    state_root: &Path,
    seccomp_cache: &Path,
    id: &str,
    engine: &Engine,
    req: &ExecRequest,
    stdio: Stdio,
    console: Option<&Path>,
) -> Result<Running, RuntimeError> {
    match engine {
        Engine::Libcontainer => {
            let program = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
                Some(p) => Some(super::seccomp_bpf::cached(p, seccomp_cache)?),
                None => None,
            };
            super::seccomp_bpf::arm(program);
            let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
            let _ = std::io::stdout().flush();
            let _ = std::io::stderr().flush();
            let env = req
                .env
                .iter()
                .filter_map(|e| {
                    e.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
            // With a terminal, the whole process (the container's, with the command, the
            // environment and `terminal`) goes to libcontainer as a process.json, so the
            // terminal is made in the container's own devpts and sent over the console socket.
            let process_file = match console {
                Some(_) => Some(write_exec_process(spec, state_root, req)?),
                None => None,
            };
            let mut b = ContainerBuilder::new(id.to_string(), SyscallType::default())
                .with_executor(XrunExecutor)
                .with_root_path(state_root)
                .map_err(|e| lc_err("runtime root", e))?
                .with_stdin(stdio.stdin)
                .with_stdout(stdio.stdout)
                .with_stderr(stdio.stderr)
                .with_console_socket(console)
                .as_tenant()
                .with_container_args(req.args.clone())
                .with_env(env)
                .with_cwd(req.cwd.as_ref())
                .with_process(process_file.as_ref())
                .with_detach(console.is_some());
            if let Some((u, g)) = req.user {
                b = b.with_user(Some(u)).with_group(Some(g));
            }
            let built = b.build();
            if let Some(f) = &process_file {
                let _ = std::fs::remove_file(f);
            }
            let pid = built.map_err(|e| lc_err("exec", e))?;
            drop(guard);
            Ok(Running { pid, child: None })
        }
        Engine::External(bin) => {
            let mut c = Command::new(bin);
            c.arg("--root").arg(state_root).arg("exec");
            for e in &req.env {
                c.args(["--env", e]);
            }
            if let Some(cwd) = &req.cwd {
                c.args(["--cwd", cwd]);
            }
            if let Some((u, g)) = req.user {
                c.args(["--user", &format!("{u}:{g}")]);
            }
            c.arg(id).args(&req.args);
            let child = c
                .stdin(PStdio::from(stdio.stdin))
                .stdout(PStdio::from(stdio.stdout))
                .stderr(PStdio::from(stdio.stderr))
                .spawn()
                .map_err(|e| RuntimeError::io(format!("running {}", bin.display()), e))?;
            let pid = Pid::from_raw(child.id() as i32);
            Ok(Running {
                pid,
                child: Some(child),
            })
        }
    }
}
