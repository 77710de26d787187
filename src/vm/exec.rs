//! `exec` into a running VM, from any process on the host (the VM's owner need not help).
//!
//! Every VM offers [`EXEC_SLOTS`](super::runner::EXEC_SLOTS) exec slots, each four virtio
//! serial ports (`org.xrun.xI.ctl`, `.in`, `.out`, `.err`) and a console (`.tty`) whose
//! sockets qemu itself listens on in the VM's run directory ([`super::qemu::exec_socket`]).
//! A VM boots without them (they cost boot time under TCG); an exec takes a free slot (an
//! exclusive `flock` on `exec-I.lock` there, released when the process ends however it
//! ends), plugs it through qemu's monitor if it is the slot's first use ([`plug_up_to`]),
//! connects the slot's sockets, and writes one request line on `ctl`: `R` and the
//! base64 of a small cpio ([`super::runcpio::build_exec`]). The guest init's dispatcher
//! starts the process in the container's root and cgroup and answers `S`, then the exit
//! status once it ended; `K SIGNUM` lines signal it meanwhile. A write on a virtio port
//! returns only once qemu handed the bytes to the socket, so when the status arrives all of
//! the output is already in the host's socket buffers: the output sockets are drained, then
//! every socket is closed (the guest takes that as the end; a process still running then, its
//! client gone, is killed).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::VmError;
use super::qemu::{QMP_SOCKET, exec_socket};
use super::qmp::{Qmp, plug_exec_slot};
use super::runcpio::{ExecConfig, build_exec};
use super::runner::{EXEC_SLOTS, VmIo};

/// How long to wait for a free exec slot.
const SLOT_WAIT: Duration = Duration::from_secs(120);
/// How long the guest may take to start the process (TCG is slow, the guest may be busy).
const START_WAIT: Duration = Duration::from_secs(120);

/// Signals and terminal sizes for a running exec (from any thread); ignored once it ended.
#[derive(Debug, Clone)]
pub struct ExecControl(mpsc::Sender<String>);

impl ExecControl {
    /// Delivers signal `sig` (a number) to the exec'd process.
    pub fn signal(&self, sig: i32) {
        let _ = self.0.send(format!("K {sig}\n"));
    }

    /// Resizes the exec's terminal (with `-t`; the process gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) {
        let _ = self.0.send(format!("W {rows} {cols}\n"));
    }
}

/// Makes sure exec slots `0..=index` are plugged into the VM: each is plugged through qemu's
/// monitor on first use, in slot order (the guest numbers the slots' consoles in the order
/// they come), under `plug.lock` in the run directory, and marked with `exec-I.plugged`. A
/// VM without a monitor socket had its slots from the start (an older xrun started it).
fn plug_up_to(dir: &std::fs::File, run_dir: &Path, index: u32) -> Result<(), VmError> {
    let marker = |i: u32| run_dir.join(format!("exec-{i}.plugged"));
    if marker(index).exists() || !run_dir.join(QMP_SOCKET).exists() {
        return Ok(());
    }
    let _lock = lock_file(&run_dir.join("plug.lock"), true)?
        .ok_or_else(|| VmError::BadSpec("the VM's exec slots could not be locked".into()))?;
    let missing: Vec<u32> = (0..=index).filter(|i| !marker(*i).exists()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut q = Qmp::connect(dir, QMP_SOCKET)?;
    for i in missing {
        plug_exec_slot(&mut q, i)?;
        std::fs::write(marker(i), b"").map_err(VmError::io("marking an exec slot plugged"))?;
    }
    Ok(())
}

/// Opens (creating) lock file `p` and takes an exclusive `flock` on it, waiting for it when
/// `wait`; `None` when it is held elsewhere and `wait` is false. The lock goes with the file.
fn lock_file(p: &Path, wait: bool) -> Result<Option<std::fs::File>, VmError> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(p)
        .map_err(VmError::io(p.display().to_string()))?;
    let op = if wait {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: flock on an open descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(Some(f));
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::WouldBlock if !wait => return Ok(None),
            _ => return Err(VmError::io(format!("locking {}", p.display()))(e)),
        }
    }
}

/// Holds an exec slot: the locked file (the lock goes with it).
struct Slot {
    index: u32,
    _lock: std::fs::File,
}

fn take_slot(run_dir: &Path) -> Result<Slot, VmError> {
    let end = Instant::now() + SLOT_WAIT;
    loop {
        for index in 0..EXEC_SLOTS {
            if let Some(f) = lock_file(&run_dir.join(format!("exec-{index}.lock")), false)? {
                return Ok(Slot { index, _lock: f });
            }
        }
        if Instant::now() > end {
            return Err(VmError::BadSpec(format!(
                "all {EXEC_SLOTS} exec slots of the VM stayed busy for {}s",
                SLOT_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects to qemu's socket `name` in the directory open as `dir` (through `/proc/self/fd`:
/// a long path would not fit a socket address), retrying briefly (a VM that just started).
fn connect(dir: &std::fs::File, name: &str) -> Result<UnixStream, VmError> {
    let p = format!("/proc/self/fd/{}/{name}", dir.as_raw_fd());
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match UnixStream::connect(&p) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > end => {
                return Err(VmError::io(format!(
                    "connecting to the VM's exec port {name} (is the container running?)"
                ))(e));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Copies `from` into `to` until EOF (flushing after each read, so output is live).
fn pump(mut from: UnixStream, mut to: Box<dyn Write + Send>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let _ = to.write_all(&buf[..n]).and_then(|_| to.flush());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = to.flush();
    })
}

/// Runs `cfg` in the VM whose run directory is `run_dir` (its qemu's working directory),
/// with `io` as its standard streams; `on_start` receives the signal handle once the process
/// runs. Returns its exit status (127/126 when the command is missing or not executable,
/// 125 when the guest could not start it).
pub fn exec(
    run_dir: &Path,
    cfg: &ExecConfig,
    io: VmIo,
    on_start: impl FnOnce(ExecControl),
) -> Result<i32, VmError> {
    let dir = std::fs::File::open(run_dir).map_err(VmError::io(format!(
        "{} (is the container running?)",
        run_dir.display()
    )))?;
    let slot = take_slot(run_dir)?;
    plug_up_to(&dir, run_dir, slot.index)?;
    let sock = |s: &str| connect(&dir, &exec_socket(slot.index, s));
    let cfg = ExecConfig {
        stdin: cfg.stdin && io.stdin.is_some(),
        ..cfg.clone()
    };
    // With a terminal, its console carries both directions; the other ports stay idle.
    let (out, err, input) = match cfg.tty {
        Some(_) => {
            let t = sock("tty")?;
            let i = t.try_clone().map_err(VmError::io("exec socket"))?;
            let idle = sock("err")?;
            (t, idle, cfg.stdin.then_some(i))
        }
        None => (
            sock("out")?,
            sock("err")?,
            if cfg.stdin { Some(sock("in")?) } else { None },
        ),
    };
    let tty = cfg.tty.is_some();
    let mut ctl = sock("ctl")?;
    let request = base64::engine::general_purpose::STANDARD.encode(build_exec(&cfg));
    ctl.write_all(format!("R {request}\n").as_bytes())
        .map_err(VmError::io("writing the exec request"))?;

    let out_end = out.try_clone().map_err(VmError::io("exec socket"))?;
    let err_end = err.try_clone().map_err(VmError::io("exec socket"))?;
    let pumps = [pump(out, io.stdout), pump(err, io.stderr)];
    let (started_tx, started_rx) = mpsc::channel::<()>();
    if let (Some(mut s), Some(mut r)) = (input, io.stdin) {
        // Not joined: its reader may never end (a terminal).
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut r, &mut s);
            if tty {
                // The end of a terminal's input is a ^D typed on it.
                let _ = started_rx.recv();
                let _ = s.write_all(&[4]);
                return;
            }
            // qemu takes EOF as the end of the connection, and the guest reads EOF then,
            // once it opened the port (before its "S"): data before an earlier EOF is lost.
            let _ = started_rx.recv();
            let _ = s.shutdown(std::net::Shutdown::Write);
        });
    }

    let reader = ctl.try_clone().map_err(VmError::io("exec socket"))?;
    let (lines_tx, lines_rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = lines_tx.send(None);
                    return;
                }
                Ok(_) => {
                    if lines_tx.send(Some(line.trim().to_string())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let start = Instant::now();
    let mut started = false;
    let (sig_tx, sig_rx) = mpsc::channel::<String>();
    let mut on_start = Some(on_start);
    let mut sig_tx = Some(sig_tx);
    let code = loop {
        if started {
            while let Ok(line) = sig_rx.try_recv() {
                let _ = ctl.write_all(line.as_bytes());
            }
        }
        match lines_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(Some(l)) if l == "S" && !started => {
                started = true;
                let _ = started_tx.send(());
                if let (Some(f), Some(tx)) = (on_start.take(), sig_tx.take()) {
                    f(ExecControl(tx));
                }
            }
            // A status before our "S" is a stale one of the slot's previous exec.
            Ok(Some(l)) if started => {
                if let Ok(c) = l.parse::<i32>() {
                    break c;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(VmError::BadSpec(
                    "the VM went away during exec (the container stopped?)".into(),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !started && start.elapsed() > START_WAIT {
                    return Err(VmError::BadSpec(format!(
                        "the guest did not start the exec within {}s",
                        START_WAIT.as_secs()
                    )));
                }
            }
        }
    };
    // The guest stops reading the slot ("E"), so our disconnect cannot race the next exec.
    let _ = ctl.write_all(b"D\n");
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        match lines_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(l)) if l == "E" => break,
            Ok(Some(_)) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Everything is in the sockets already: read what is queued, then end.
    let _ = out_end.shutdown(std::net::Shutdown::Read);
    let _ = err_end.shutdown(std::net::Shutdown::Read);
    for p in pumps {
        let _ = p.join();
    }
    for s in [&ctl, &out_end, &err_end] {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    drop(slot);
    Ok(code)
}
