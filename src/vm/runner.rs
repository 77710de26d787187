//! One VM run: per-run initrd, qemu, streams, exit status, bounds.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cgroup::{HostLimits, QemuCgroup};
use super::guest::Guest;
use super::net::{self, VmNetwork};
use super::qemu::{self, AccelChoice, QemuPlan};
use super::runcpio::{self, RunConfig};
use super::serial::{self, ExitSink, ExitState};
use super::{VmError, rootfs};
use crate::digest::Digest;

/// What to run in the VM and with what resources. The command and resources serialize (a
/// VM container keeps them in its `vm.json`, [`super::launch::VmLaunch`]); the per-run
/// fields (disk, terminal, run directory, bounds, qemu search path) do not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    /// The command and its arguments (entrypoint + cmd already combined), exact bytes.
    pub argv: Vec<String>,
    /// The whole environment, `KEY=VALUE` (image `Env` plus `-e`); `PATH` is used to find
    /// the program, as execvp would.
    pub env: Vec<String>,
    /// Working directory inside the image (created if missing), `None` for `/`.
    pub workdir: Option<String>,
    /// `--user`. [`run`] wants numeric `uid:gid`; [`run_image`] resolves names first.
    pub user: Option<String>,
    /// The guest's hostname.
    pub hostname: Option<String>,
    /// Extra kernel modules to load (e.g. from the `org.xrun.kernel.modules` label).
    pub modules: Vec<String>,
    /// Guest memory in MiB (`--memory`, default 256).
    pub memory_mib: u64,
    /// vCPUs (`--cpus`, default 1).
    pub cpus: u32,
    /// `--read-only`: the container's root is read-only in the guest.
    #[serde(default)]
    pub read_only: bool,
    /// `--tmpfs`: tmpfs mounts in the guest.
    #[serde(default)]
    pub tmpfs: Vec<VmTmpfs>,
    /// `-v`: host directories shared with the guest over 9p.
    #[serde(default)]
    pub volumes: Vec<VmVolume>,
    /// `--pids-limit`: `pids.max` of the container's cgroup in the guest (≤ 0: no limit).
    #[serde(default)]
    pub pids_limit: Option<i64>,
    /// `--memory`/`--cpus` given: qemu runs in a host cgroup limited to the guest's RAM plus
    /// qemu's overhead and to this CPU quota (see [`super::cgroup`]).
    #[serde(default)]
    pub host_limits: Option<HostLimitsSpec>,
    /// A writable layer disk (see [`super::disk::create`]): the container's changes persist
    /// there. `None`: a tmpfs in the guest.
    #[serde(skip)]
    pub writable_disk: Option<PathBuf>,
    /// Bound on the whole run (boot + command); `None`: no bound once the command started.
    #[serde(skip)]
    pub timeout: Option<Duration>,
    /// Bound on the boot, until the guest init starts the command (a hung or panicked boot
    /// ends here).
    #[serde(skip, default = "default_boot_timeout")]
    pub boot_timeout: Duration,
    /// Where to look for qemu-system (a `PATH`-style list); `None`: `$PATH`.
    #[serde(skip)]
    pub qemu_path: Option<std::ffi::OsString>,
    /// `-t`: the command runs on a terminal in the guest (a virtio console, its controlling
    /// tty) of this size (rows, columns; 0 when unknown); its output (stdout and stderr
    /// together) goes to `VmIo::stdout`, `VmIo::stdin` is typed into it. `None`: pipes.
    #[serde(skip)]
    pub tty: Option<(u16, u16)>,
    /// Where the run's files (initrd, sockets, console log) go: made empty at the start and
    /// removed at the end (a container keeps it in its directory, so nothing is left in
    /// `/tmp` when its owner is killed). `None`: a fresh temporary directory.
    #[serde(skip)]
    pub run_dir: Option<PathBuf>,
    /// The network the guest joins (qemu runs in its namespace, see [`super::net`]); `None`:
    /// the guest has only `lo`.
    #[serde(skip)]
    pub network: Option<VmNetwork>,
}

/// A `--tmpfs` mount in the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmTmpfs {
    /// Absolute path in the container.
    pub path: String,
    /// Mount options (`size=64m,mode=1777`); `None`: `rw,nosuid,nodev,noexec`.
    pub options: Option<String>,
}

/// A `-v HOST:CTR[:ro]` volume: a 9p share in the guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VmVolume {
    /// The host directory.
    pub host: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    /// Read-only (enforced by qemu and by the guest's mount).
    pub read_only: bool,
}

/// The host-side limits of qemu's cgroup (serializable [`super::cgroup::HostLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HostLimitsSpec {
    /// Limit memory to the guest's RAM plus qemu's overhead.
    pub memory: bool,
    /// CPU quota.
    pub cpus: Option<f64>,
}

impl Eq for HostLimitsSpec {}

/// Exec slots every VM offers (concurrent `xrun exec`s; more wait for a free one).
pub const EXEC_SLOTS: u32 = 4;

/// A path in the container for the guest's line protocol: absolute, no `..`, no control
/// characters.
fn check_guest_path(what: &str, p: &str) -> Result<(), VmError> {
    if !p.starts_with('/') || p.split('/').any(|c| c == "..") || p.chars().any(char::is_control) {
        return Err(VmError::BadSpec(format!(
            "{what} {p:?}: the path must be absolute, without '..' or control characters"
        )));
    }
    Ok(())
}

/// Checks the mounts of `spec` (paths, options, host directories).
fn check_mounts(spec: &VmSpec) -> Result<(), VmError> {
    for t in &spec.tmpfs {
        check_guest_path("--tmpfs", &t.path)?;
        if let Some(o) = &t.options
            && (o.is_empty() || o.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(VmError::BadSpec(format!(
                "--tmpfs {}: bad options {o:?}",
                t.path
            )));
        }
    }
    for v in &spec.volumes {
        check_guest_path("-v", &v.target)?;
        if !v.host.is_dir() {
            return Err(VmError::BadSpec(format!(
                "-v {}: on the vm route a volume must be a host directory (shared over 9p)",
                v.host.display()
            )));
        }
    }
    Ok(())
}

fn default_boot_timeout() -> Duration {
    Duration::from_secs(180)
}

impl Default for VmSpec {
    fn default() -> Self {
        VmSpec {
            argv: Vec::new(),
            env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()],
            workdir: None,
            user: None,
            hostname: None,
            modules: Vec::new(),
            memory_mib: 256,
            cpus: 1,
            read_only: false,
            tmpfs: Vec::new(),
            volumes: Vec::new(),
            pids_limit: None,
            host_limits: None,
            writable_disk: None,
            timeout: None,
            boot_timeout: default_boot_timeout(),
            qemu_path: None,
            tty: None,
            run_dir: None,
            network: None,
        }
    }
}

/// How a VM run ended (when it did: errors are [`VmError`]).
#[derive(Debug, Clone)]
pub struct VmExit {
    /// The command's exit status (128+N when killed by signal N), or 125 when the guest init
    /// failed (its reason went to stderr).
    pub code: i32,
    /// The accelerator used and why.
    pub accel: AccelChoice,
    /// From qemu's start to the command's start.
    pub boot_time: Option<Duration>,
    /// From qemu's start to its end.
    pub total_time: Duration,
}

/// Where the command's standard streams go.
pub struct VmIo {
    /// `-i`: forwarded to the command's stdin (EOF when the reader ends); `None`: /dev/null.
    pub stdin: Option<Box<dyn Read + Send>>,
    /// Receives the command's stdout, live.
    pub stdout: Box<dyn Write + Send>,
    /// Receives the command's stderr, live.
    pub stderr: Box<dyn Write + Send>,
}

impl VmIo {
    /// stdout and stderr into the sinks, no stdin.
    pub fn new(stdout: Box<dyn Write + Send>, stderr: Box<dyn Write + Send>) -> VmIo {
        VmIo {
            stdin: None,
            stdout,
            stderr,
        }
    }

    /// This process's stdout and stderr (and its stdin when `interactive`).
    pub fn inherit(interactive: bool) -> VmIo {
        VmIo {
            stdin: interactive.then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>),
            stdout: Box::new(std::io::stdout()),
            stderr: Box::new(std::io::stderr()),
        }
    }
}

/// Runs `spec` in a VM of `guest` over the erofs `rootfs` image, streaming the command's
/// stdout and stderr live into `io`'s sinks. Returns when qemu is gone: nothing is left
/// running, also on errors and timeouts (qemu also gets SIGKILL if the calling thread dies).
pub fn run(guest: &Guest, rootfs: &Path, spec: &VmSpec, io: VmIo) -> Result<VmExit, VmError> {
    start(guest, rootfs, spec, io)?.wait()
}

/// Signals and terminal resizes for the command in a running VM, sent over the guest's
/// control port (cheap to clone, usable from any thread). Messages sent before the guest
/// listens are queued; after the VM ended they are dropped.
#[derive(Debug, Clone)]
pub struct VmControl(mpsc::Sender<Vec<u8>>);

impl VmControl {
    /// Delivers signal `sig` (a number) to the command in the guest.
    pub fn signal(&self, sig: i32) {
        let _ = self.0.send(format!("K {sig}\n").into_bytes());
    }

    /// Sets the size of the command's terminal (with `-t`; the guest then gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        let _ = self.0.send(format!("W {rows} {cols}\n").into_bytes());
    }
}

/// A VM that runs: see [`start`]. Dropping it kills qemu and removes the run's files.
pub struct VmRun {
    guard: ChildGuard,
    pid: u32,
    start: Instant,
    boot_time: Option<Duration>,
    boot_timeout: Duration,
    timeout: Option<Duration>,
    stop: Arc<AtomicBool>,
    state: Arc<ExitState>,
    pumps: Vec<JoinHandle<u64>>,
    control: VmControl,
    accel: AccelChoice,
    dir: RunDir,
    /// qemu's exit status, once reaped.
    status: Option<ExitStatus>,
    /// The network's taps and filters, removed once qemu is gone.
    network: NetGuard,
    /// qemu's host cgroup (removed once qemu is gone).
    cgroup: Option<Arc<QemuCgroup>>,
}

/// Removes the VM's taps and filters from its network namespace when dropped (after qemu).
struct NetGuard(Option<VmNetwork>);

impl Drop for NetGuard {
    fn drop(&mut self) {
        if let Some(n) = self.0.take()
            && let Err(e) = net::detach(&n)
        {
            tracing::debug!(error = %e, "removing the VM's taps");
        }
    }
}

/// The run's directory: a temporary one, or the caller's (emptied and removed at the end).
enum RunDir {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl RunDir {
    fn path(&self) -> &Path {
        match self {
            RunDir::Temp(t) => t.path(),
            RunDir::Given(p) => p,
        }
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let RunDir::Given(p) = self {
            let _ = fs::remove_dir_all(p);
        }
    }
}

/// Binds a socket named `name` in `dir`, through `/proc/self/fd` so a long directory path
/// does not hit the 108-byte limit of socket addresses (qemu connects with a relative path
/// from its working directory, `dir`).
fn listen_in(dir: &fs::File, name: &str) -> Result<std::os::unix::net::UnixListener, VmError> {
    use std::os::fd::AsRawFd;
    serial::listen(Path::new(&format!(
        "/proc/self/fd/{}/{name}",
        dir.as_raw_fd()
    )))
}

/// Starts `spec` in a VM (see [`run`]); returns once qemu runs. [`VmRun::wait_started`]
/// waits for the command to start, [`VmRun::wait`] for its end.
pub fn start(guest: &Guest, rootfs: &Path, spec: &VmSpec, io: VmIo) -> Result<VmRun, VmError> {
    let VmIo {
        stdin,
        stdout,
        stderr,
    } = io;
    if spec.argv.is_empty() {
        return Err(VmError::BadSpec("no command given".into()));
    }
    if let Some(u) = &spec.user {
        let ok = u
            .split_once(':')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.parse::<u32>().is_ok());
        if !ok {
            return Err(VmError::BadSpec(format!(
                "user {u:?} must be numeric uid:gid here (run_image resolves names)"
            )));
        }
    }
    if spec.cpus == 0 || spec.memory_mib < 64 {
        return Err(VmError::BadSpec(
            "a VM needs at least 1 CPU and 64 MiB of memory".into(),
        ));
    }
    check_mounts(spec)?;
    if !rootfs.is_file() {
        return Err(VmError::BadSpec(format!(
            "rootfs image {} does not exist",
            rootfs.display()
        )));
    }
    let binary = qemu::find_binary(qemu::binary_name(&guest.arch)?, spec.qemu_path.as_deref())?;
    let accel = qemu::choose_accel(&guest.arch);
    let mut modules = guest.module_load_order(&spec.modules)?;
    if spec.network.as_ref().is_some_and(|n| !n.nics.is_empty()) {
        for m in guest.network_modules()? {
            if !modules.contains(&m) {
                modules.push(m);
            }
        }
    }

    let dir = match &spec.run_dir {
        Some(p) => {
            let _ = fs::remove_dir_all(p);
            fs::create_dir_all(p).map_err(VmError::io(p.display().to_string()))?;
            RunDir::Given(p.clone())
        }
        None => RunDir::Temp(
            tempfile::Builder::new()
                .prefix("xrun-vm-")
                .tempdir()
                .map_err(VmError::io("temporary directory"))?,
        ),
    };
    let d = dir.path().to_path_buf();
    let dfile = fs::File::open(&d).map_err(VmError::io(d.display().to_string()))?;
    // The taps and filters first: the guest's interfaces need the namespace's MTUs.
    let netns = match &spec.network {
        Some(n) => Some((net::open_netns(n)?, net::attach(n)?, n)),
        None => None,
    };
    let attached = NetGuard(netns.as_ref().map(|(_, _, n)| (*n).clone()));
    let initrd = d.join("initrd");
    write_initrd(
        guest,
        &initrd,
        &RunConfig {
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            workdir: spec.workdir.clone(),
            user: spec.user.clone(),
            hostname: spec.hostname.clone(),
            modules,
            writable: spec.writable_disk.is_some(),
            stdin: stdin.is_some() && spec.tty.is_none(),
            tty: spec.tty,
            nics: netns
                .as_ref()
                .map(|(_, a, _)| a.nics.clone())
                .unwrap_or_default(),
            resolv_conf: spec.network.as_ref().and_then(|n| n.resolv_conf.clone()),
            hosts: spec.network.as_ref().and_then(|n| n.hosts.clone()),
            read_only: spec.read_only,
            tmpfs: spec
                .tmpfs
                .iter()
                .map(|t| (t.options.clone(), t.path.clone()))
                .collect(),
            volumes: spec
                .volumes
                .iter()
                .enumerate()
                .map(|(i, v)| (format!("xrunv{i}"), v.read_only, v.target.clone()))
                .collect(),
            pids_limit: spec.pids_limit,
            exec_slots: EXEC_SLOTS,
        },
    )?;
    let shares: Vec<(String, PathBuf, bool)> = spec
        .volumes
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("xrunv{i}"), v.host.clone(), v.read_only))
        .collect();
    let cgroup = match spec.host_limits {
        Some(l) => {
            let name = match &spec.run_dir {
                // A container's run directory is <container dir>/vm-run: its id.
                Some(p) => p
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned()),
                None => d.file_name().map(|n| n.to_string_lossy().into_owned()),
            }
            .unwrap_or_else(|| format!("vm-{}", std::process::id()));
            Some(Arc::new(QemuCgroup::create(
                &name,
                HostLimits {
                    guest_mib: l.memory.then_some(spec.memory_mib),
                    cpus: l.cpus,
                },
            )?))
        }
        None => None,
    };
    let names = ["out.sock", "err.sock", "exit.sock"];
    let listeners = [
        listen_in(&dfile, names[0])?,
        listen_in(&dfile, names[1])?,
        listen_in(&dfile, names[2])?,
    ];
    let ctl_listener = listen_in(&dfile, "ctl.sock")?;
    let in_listener = match (&stdin, spec.tty) {
        (Some(_), None) => Some(listen_in(&dfile, "in.sock")?),
        _ => None,
    };
    let tty_listener = match spec.tty {
        Some(_) => Some(listen_in(&dfile, "tty.sock")?),
        None => None,
    };
    let console = d.join("console.log");
    let qemu_err = d.join("qemu.err");
    let rel = |n: &'static str| Path::new(n);
    let args = qemu::args(&QemuPlan {
        guest,
        initrd: &initrd,
        rootfs,
        writable_disk: spec.writable_disk.as_deref(),
        memory_mib: spec.memory_mib,
        cpus: spec.cpus,
        accel: accel.accel,
        sockets: [rel(names[0]), rel(names[1]), rel(names[2])],
        stdin_socket: in_listener.as_ref().map(|_| rel("in.sock")),
        control_socket: Some(rel("ctl.sock")),
        tty_socket: tty_listener.as_ref().map(|_| rel("tty.sock")),
        console_log: &console,
        network: netns.as_ref().map(|(_, a, _)| a),
        exec_slots: EXEC_SLOTS,
        shares: &shares,
    });
    tracing::debug!(?binary, ?args, reason = %accel.reason, "starting qemu");

    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(ExitState::default());
    let [l_out, l_err, l_exit] = listeners;
    let mut pumps = Vec::new();
    match tty_listener {
        Some(l) => {
            // The terminal carries stdout and stderr together; the pipes stay idle.
            pumps.push(serial::bridge(l, stdin, stdout, stop.clone()));
            pumps.push(serial::pump(l_out, Box::new(std::io::sink()), stop.clone()));
            pumps.push(serial::pump(l_err, stderr, stop.clone()));
        }
        None => {
            pumps.push(serial::pump(l_out, stdout, stop.clone()));
            pumps.push(serial::pump(l_err, stderr, stop.clone()));
            // The stdin pump is not joined: its reader may never end (a terminal).
            if let (Some(l), Some(r)) = (in_listener, stdin) {
                serial::feed(l, r, stop.clone());
            }
        }
    }
    pumps.push(serial::pump(
        l_exit,
        Box::new(ExitSink(state.clone())),
        stop.clone(),
    ));
    let (tx, rx) = mpsc::channel();
    serial::control(ctl_listener, rx, stop.clone());
    let errfile = fs::File::create(&qemu_err).map_err(VmError::io("qemu.err"))?;
    let mut cmd = Command::new(&binary);
    cmd.args(&args)
        .current_dir(&d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errfile);
    let cg = cgroup.clone();
    // SAFETY: prctl(PR_SET_PDEATHSIG) and join_self (open/write/close) are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if let Some(cg) = &cg {
                cg.join_self()?;
            }
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    if let Some((ns, _, _)) = &netns {
        net::enter_netns(&mut cmd, ns);
    }
    let start = Instant::now();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            stop.store(true, Ordering::SeqCst);
            return Err(VmError::io(format!("starting {}", binary.display()))(e));
        }
    };
    let pid = child.id();
    Ok(VmRun {
        guard: ChildGuard(Some(child)),
        pid,
        start,
        boot_time: None,
        boot_timeout: spec.boot_timeout,
        timeout: spec.timeout,
        stop,
        state,
        pumps,
        control: VmControl(tx),
        accel,
        dir,
        status: None,
        network: attached,
        cgroup,
    })
}

impl VmRun {
    /// qemu's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The handle that signals the command or resizes its terminal.
    pub fn control(&self) -> VmControl {
        self.control.clone()
    }

    /// Waits until the guest started the command (`Ok(true)`) or qemu ended first
    /// (`Ok(false)`; [`VmRun::wait`] then says why). A boot over the bound is an error (qemu
    /// is killed).
    pub fn wait_started(&mut self) -> Result<bool, VmError> {
        match self.poll(true) {
            Ok(None) => Ok(true),
            Ok(Some(_)) => Ok(false),
            Err(VmError::Timeout { phase, limit, .. }) => {
                let d = self.dir.path();
                Err(VmError::Timeout {
                    phase,
                    limit,
                    console: diagnostics(&d.join("console.log"), &d.join("qemu.err")),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Waits for the end of the VM; returns the command's exit status (128+N when qemu was
    /// killed by signal N). Nothing is left running.
    pub fn wait(mut self) -> Result<VmExit, VmError> {
        let outcome = self.poll(false);
        let total_time = self.start.elapsed();
        self.finish();
        let d = self.dir.path();
        let tail = || diagnostics(&d.join("console.log"), &d.join("qemu.err"));
        let st = match outcome {
            Err(VmError::Timeout { phase, limit, .. }) => {
                return Err(VmError::Timeout {
                    phase,
                    limit,
                    console: tail(),
                });
            }
            Err(e) => return Err(e),
            Ok(st) => st.expect("poll(false) ends with qemu"),
        };
        let code = *self.state.code.lock().unwrap_or_else(|e| e.into_inner());
        match code {
            Some(code) => Ok(VmExit {
                code,
                accel: self.accel.clone(),
                boot_time: self.boot_time,
                total_time,
            }),
            None => match st.signal() {
                // Killed (SIGKILL from `xrun kill`/`rm -f`): like a killed process.
                Some(sig) => Ok(VmExit {
                    code: 128 + sig,
                    accel: self.accel.clone(),
                    boot_time: self.boot_time,
                    total_time,
                }),
                None => Err(VmError::GuestFailed {
                    qemu_status: st.to_string(),
                    console: tail(),
                }),
            },
        }
    }

    /// Kills and reaps qemu if still running, then joins the stream threads.
    fn finish(&mut self) {
        if let Some(mut c) = self.guard.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // qemu is gone (reaped here or by poll): its taps and cgroup can go.
        drop(std::mem::replace(&mut self.network, NetGuard(None)));
        self.cgroup = None;
        self.stop.store(true, Ordering::SeqCst);
        for p in self.pumps.drain(..) {
            let _ = p.join();
        }
    }

    /// Polls qemu until it ends (`Some(status)`) or, with `until_started`, the command
    /// starts (`None`). Bounds: the boot, the whole run.
    fn poll(&mut self, until_started: bool) -> Result<Option<ExitStatus>, VmError> {
        loop {
            let status = match self.guard.0.as_mut() {
                Some(c) => c.try_wait().map_err(VmError::io("waiting for qemu"))?,
                None => match self.status {
                    Some(st) => return Ok(Some(st)),
                    None => return Err(VmError::BadSpec("qemu is gone".into())),
                },
            };
            if let Some(st) = status {
                self.guard.0 = None;
                self.status = Some(st);
                return Ok(Some(st));
            }
            let elapsed = self.start.elapsed();
            if self.boot_time.is_none() && self.state.started.load(Ordering::SeqCst) {
                self.boot_time = Some(elapsed);
            }
            if self.boot_time.is_some() && until_started {
                return Ok(None);
            }
            let over = if self.boot_time.is_none() && elapsed > self.boot_timeout {
                Some(("boot", self.boot_timeout))
            } else {
                self.timeout.filter(|t| elapsed > *t).map(|t| ("run", t))
            };
            if let Some((phase, limit)) = over {
                self.finish();
                return Err(VmError::Timeout {
                    phase,
                    limit,
                    console: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for VmRun {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Builds (or reuses) the rootfs image of an image's layers under `cache_dir`, keyed by its
/// manifest digest, resolves `spec.user` against the image, and [`run`]s.
pub fn run_image(
    guest: &Guest,
    cache_dir: &Path,
    manifest: &Digest,
    layer_dirs: &[PathBuf],
    spec: &VmSpec,
    io: VmIo,
) -> Result<VmExit, VmError> {
    start_image(guest, cache_dir, manifest, layer_dirs, spec, io)?.wait()
}

/// Like [`run_image`], but returns once qemu runs (see [`start`]).
pub fn start_image(
    guest: &Guest,
    cache_dir: &Path,
    manifest: &Digest,
    layer_dirs: &[PathBuf],
    spec: &VmSpec,
    io: VmIo,
) -> Result<VmRun, VmError> {
    let (image, _) = rootfs::image_for(cache_dir, manifest, layer_dirs)?;
    let mut spec = spec.clone();
    if let Some(u) = &spec.user {
        spec.user = Some(rootfs::resolve_user(layer_dirs, u)?);
    }
    start(guest, &image, &spec, io)
}

/// The base initrd, zero-padded to 4 bytes, then the per-run cpio.
fn write_initrd(guest: &Guest, dest: &Path, cfg: &RunConfig) -> Result<(), VmError> {
    let mut base =
        fs::File::open(&guest.initrd).map_err(VmError::io(guest.initrd.display().to_string()))?;
    let mut out = fs::File::create(dest).map_err(VmError::io(dest.display().to_string()))?;
    let n = std::io::copy(&mut base, &mut out).map_err(VmError::io("initrd"))?;
    let pad = (4 - n % 4) % 4;
    out.write_all(&vec![0u8; pad as usize])
        .and_then(|_| out.write_all(&runcpio::build(cfg)))
        .map_err(VmError::io("initrd"))
}

/// The last lines of the guest console and qemu's stderr, for error messages.
fn diagnostics(console: &Path, qemu_err: &Path) -> String {
    let tail = |p: &Path, n: usize| {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(p) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };
    let mut out = String::new();
    for (label, p) in [("guest console", console), ("qemu", qemu_err)] {
        let t = tail(p, 8);
        if !t.is_empty() {
            out.push_str(&format!("\n--- {label} ---\n{t}"));
        }
    }
    out
}

/// Kills (SIGKILL) and reaps qemu when dropped with it still running.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
