//! One VM run: per-run initrd, qemu, streams, exit status, bounds.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::guest::Guest;
use super::qemu::{self, AccelChoice, QemuPlan};
use super::runcpio::{self, RunConfig};
use super::serial::{self, ExitSink, ExitState};
use super::{VmError, rootfs};
use crate::digest::Digest;

/// What to run in the VM and with what resources.
#[derive(Debug, Clone)]
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
    /// A writable layer disk (see [`super::disk::create`]): the container's changes persist
    /// there. `None`: a tmpfs in the guest.
    pub writable_disk: Option<PathBuf>,
    /// Bound on the whole run (boot + command); `None`: no bound once the command started.
    pub timeout: Option<Duration>,
    /// Bound on the boot, until the guest init starts the command (a hung or panicked boot
    /// ends here).
    pub boot_timeout: Duration,
    /// Where to look for qemu-system (a `PATH`-style list); `None`: `$PATH`.
    pub qemu_path: Option<std::ffi::OsString>,
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
            writable_disk: None,
            timeout: None,
            boot_timeout: Duration::from_secs(180),
            qemu_path: None,
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
    if !rootfs.is_file() {
        return Err(VmError::BadSpec(format!(
            "rootfs image {} does not exist",
            rootfs.display()
        )));
    }
    let binary = qemu::find_binary(qemu::binary_name(&guest.arch)?, spec.qemu_path.as_deref())?;
    let accel = qemu::choose_accel(&guest.arch);
    let modules = guest.module_load_order(&spec.modules)?;

    let dir = tempfile::Builder::new()
        .prefix("xrun-vm-")
        .tempdir()
        .map_err(VmError::io("temporary directory"))?;
    let d = dir.path();
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
            stdin: stdin.is_some(),
        },
    )?;
    let socks = [d.join("out.sock"), d.join("err.sock"), d.join("exit.sock")];
    let listeners = [
        serial::listen(&socks[0])?,
        serial::listen(&socks[1])?,
        serial::listen(&socks[2])?,
    ];
    let in_sock = d.join("in.sock");
    let in_listener = match stdin {
        Some(_) => Some(serial::listen(&in_sock)?),
        None => None,
    };
    let console = d.join("console.log");
    let qemu_err = d.join("qemu.err");
    let args = qemu::args(&QemuPlan {
        guest,
        initrd: &initrd,
        rootfs,
        writable_disk: spec.writable_disk.as_deref(),
        memory_mib: spec.memory_mib,
        cpus: spec.cpus,
        accel: accel.accel,
        sockets: [&socks[0], &socks[1], &socks[2]],
        stdin_socket: in_listener.as_ref().map(|_| in_sock.as_path()),
        console_log: &console,
    });
    tracing::debug!(?binary, ?args, reason = %accel.reason, "starting qemu");

    let stop = Arc::new(AtomicBool::new(false));
    let state = Arc::new(ExitState::default());
    let [l_out, l_err, l_exit] = listeners;
    let pumps = [
        serial::pump(l_out, stdout, stop.clone()),
        serial::pump(l_err, stderr, stop.clone()),
        serial::pump(l_exit, Box::new(ExitSink(state.clone())), stop.clone()),
    ];
    // The stdin pump is not joined: its reader may never end (a terminal).
    if let (Some(l), Some(r)) = (in_listener, stdin) {
        serial::feed(l, r, stop.clone());
    }
    let errfile = fs::File::create(&qemu_err).map_err(VmError::io("qemu.err"))?;
    let mut cmd = Command::new(&binary);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errfile);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(VmError::io(format!("starting {}", binary.display())))?;
    let mut guard = ChildGuard(Some(child));

    let mut boot_time = None;
    let outcome = loop {
        let status = guard
            .0
            .as_mut()
            .map(|c| c.try_wait())
            .transpose()
            .map_err(VmError::io("waiting for qemu"))?
            .flatten();
        if let Some(st) = status {
            guard.0 = None;
            break Ok(st);
        }
        let elapsed = start.elapsed();
        if boot_time.is_none() && state.started.load(Ordering::SeqCst) {
            boot_time = Some(elapsed);
        }
        if boot_time.is_none() && elapsed > spec.boot_timeout {
            break Err(("boot", spec.boot_timeout));
        }
        if let Some(t) = spec.timeout
            && elapsed > t
        {
            break Err(("run", t));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let total_time = start.elapsed();
    drop(guard); // kills and reaps qemu if still running
    stop.store(true, Ordering::SeqCst);
    for p in pumps {
        let _ = p.join();
    }
    let tail = || diagnostics(&console, &qemu_err);
    match outcome {
        Err((phase, limit)) => Err(VmError::Timeout {
            phase,
            limit,
            console: tail(),
        }),
        Ok(st) => {
            let code = *state.code.lock().unwrap_or_else(|e| e.into_inner());
            match code {
                Some(code) => Ok(VmExit {
                    code,
                    accel,
                    boot_time,
                    total_time,
                }),
                None => Err(VmError::GuestFailed {
                    qemu_status: st.to_string(),
                    console: tail(),
                }),
            }
        }
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
    let (image, _) = rootfs::image_for(cache_dir, manifest, layer_dirs)?;
    let mut spec = spec.clone();
    if let Some(u) = &spec.user {
        spec.user = Some(rootfs::resolve_user(layer_dirs, u)?);
    }
    run(guest, &image, &spec, io)
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
