//! Forwarding signals to a container: handlers write the signal number into a pipe (the only
//! async-signal-safe thing they do); a thread reads it and sends the signal on. Handlers are
//! reset to the default by `execve` in the container, so the container is not affected.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use super::RuntimeError;

/// The signals `xrun run` forwards to the container.
pub const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

static PIPE_W: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_W.load(Ordering::Relaxed);
    if fd >= 0 {
        let b = sig as u8;
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Where forwarded signals go: a pid (set once the container runs), and what to do on
/// SIGWINCH.
pub struct Forwarder {
    /// The process to signal (0: none yet).
    target: Arc<AtomicI32>,
    pending: Arc<std::sync::Mutex<Vec<Signal>>>,
}

impl Forwarder {
    /// Sets the process to signal, and delivers what arrived before it ran.
    pub fn set_target(&self, pid: i32) {
        let pending = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            self.target.store(pid, Ordering::SeqCst);
            std::mem::take(&mut *p)
        };
        for sig in pending {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        }
    }
}

/// Creates the pipe the handlers write into (replacing an earlier one); returns its read end.
fn handler_pipe() -> Result<OwnedFd, RuntimeError> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let wfd: RawFd = w.as_raw_fd();
    unsafe {
        let fl = libc::fcntl(wfd, libc::F_GETFL);
        libc::fcntl(wfd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    std::mem::forget(w);
    let old = PIPE_W.swap(wfd, Ordering::SeqCst);
    if old >= 0 {
        drop(unsafe { OwnedFd::from_raw_fd(old) });
    }
    Ok(r)
}

/// Installs the handlers for [`FORWARDED`] and starts the forwarding thread. `on_winch` is
/// called for SIGWINCH (resize the pty) instead of forwarding it.
pub fn forward(on_winch: Option<Box<dyn Fn() + Send>>) -> Result<Forwarder, RuntimeError> {
    let r = handler_pipe()?;
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in FORWARDED {
        unsafe { sigaction(*s, &act) }?;
    }
    let target = Arc::new(AtomicI32::new(0));
    let t = target.clone();
    let pending = Arc::new(std::sync::Mutex::new(Vec::new()));
    let pend = pending.clone();
    each_byte(r, move |b| {
        let Ok(sig) = Signal::try_from(b as i32) else {
            return;
        };
        if sig == Signal::SIGWINCH
            && let Some(f) = &on_winch
        {
            f();
            return;
        }
        let mut p = pend.lock().unwrap_or_else(|e| e.into_inner());
        let pid = t.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
        } else {
            p.push(sig);
        }
    });
    Ok(Forwarder { target, pending })
}

/// The real-time signal that carries a signal number to relay (see [`send_relayed`]).
fn relay_signo() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

extern "C" fn on_relayed(_sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let fd = PIPE_W.load(Ordering::Relaxed);
    if fd >= 0 && !info.is_null() {
        let b = unsafe { (*info).si_value().sival_ptr } as usize as u8;
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Asks process `owner` (the owner of a machine container, which runs [`relay`]) to deliver
/// `sig` to the container's command: a queued real-time signal carrying the number, so any
/// signal can be relayed without stopping or killing the owner itself.
pub fn send_relayed(owner: i32, sig: Signal) -> Result<(), RuntimeError> {
    let v = libc::sigval {
        sival_ptr: (sig as i32 as usize) as *mut libc::c_void,
    };
    if unsafe { libc::sigqueue(owner, relay_signo(), v) } != 0 {
        return Err(RuntimeError::io(
            "relaying the signal to the container's owner",
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Calls `deliver` with the number of every signal of `signals` this process receives (all
/// of them, SIGWINCH too), and of every signal [`send_relayed`] to it. Replaces
/// [`forward`]'s handlers.
pub fn relay(signals: &[Signal], deliver: Box<dyn Fn(i32) + Send>) -> Result<(), RuntimeError> {
    let r = handler_pipe()?;
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for s in signals {
        unsafe { sigaction(*s, &act) }?;
    }
    let mut rt: libc::sigaction = unsafe { std::mem::zeroed() };
    rt.sa_sigaction = on_relayed as *const () as usize;
    rt.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    if unsafe { libc::sigaction(relay_signo(), &rt, std::ptr::null_mut()) } != 0 {
        return Err(RuntimeError::io(
            "installing the signal relay",
            std::io::Error::last_os_error(),
        ));
    }
    each_byte(r, move |b| {
        if b > 0 {
            deliver(b as i32);
        }
    });
    Ok(())
}

/// A thread that calls `each` for every byte the signal handlers write into the pipe `r`
/// (one byte per signal), until the pipe closes.
fn each_byte(r: OwnedFd, mut each: impl FnMut(u8) + Send + 'static) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        loop {
            let n = match nix::unistd::read(r.as_raw_fd(), &mut buf) {
                Ok(0) => return,
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            };
            for &b in &buf[..n] {
                each(b);
            }
        }
    });
}

/// Parses a signal name or number (`TERM`, `SIGTERM`, `15`).
pub fn parse_signal(s: &str) -> Result<Signal, RuntimeError> {
    let bad = || RuntimeError::BadInput(format!("invalid signal {s:?}"));
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}
