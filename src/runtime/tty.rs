//! `-t`: a pseudo-terminal made by xrun. The container gets the slave side as stdin/stdout/
//! stderr (and as its controlling terminal); xrun puts its own terminal in raw mode (restored
//! on drop), copies bytes both ways, and copies the window size on start and on SIGWINCH.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::thread::JoinHandle;

use nix::sys::termios::{self, SetArg, Termios};

use super::RuntimeError;

/// A pty pair.
pub struct Pty {
    /// xrun's side.
    pub master: OwnedFd,
    /// The container's side.
    pub slave: OwnedFd,
}

/// Opens a pty sized like xrun's own terminal (if any).
pub fn open() -> Result<Pty, RuntimeError> {
    let ws = window_size(libc::STDOUT_FILENO).or_else(|| window_size(libc::STDIN_FILENO));
    let p = nix::pty::openpty(ws.as_ref(), None)?;
    set_cloexec(p.master.as_raw_fd());
    set_cloexec(p.slave.as_raw_fd());
    Ok(Pty {
        master: p.master,
        slave: p.slave,
    })
}

fn set_cloexec(fd: RawFd) {
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

/// The window size of the terminal on `fd`.
pub fn window_size(fd: RawFd) -> Option<nix::pty::Winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0 && ws.ws_row > 0).then_some(
        nix::pty::Winsize {
            ws_row: ws.ws_row,
            ws_col: ws.ws_col,
            ws_xpixel: ws.ws_xpixel,
            ws_ypixel: ws.ws_ypixel,
        },
    )
}

/// Copies xrun's terminal size onto the pty `master` (raw fd, for use from a signal thread).
pub fn copy_window_size(master: RawFd) {
    if let Some(ws) = window_size(libc::STDOUT_FILENO).or_else(|| window_size(libc::STDIN_FILENO)) {
        let ws = libc::winsize {
            ws_row: ws.ws_row,
            ws_col: ws.ws_col,
            ws_xpixel: ws.ws_xpixel,
            ws_ypixel: ws.ws_ypixel,
        };
        unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
    }
}

/// xrun's terminal in raw mode; the previous mode comes back on drop.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin's terminal in raw mode (`None` if stdin is not a terminal).
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Starts copying the pty output to `out` (until the container side closes) and, if
/// `stdin` is set, xrun's stdin to the pty (a detached thread: stdin may never end).
pub fn pump(
    master: &OwnedFd,
    mut out: Box<dyn Write + Send>,
    stdin: bool,
) -> Result<JoinHandle<()>, RuntimeError> {
    let reader = master
        .try_clone()
        .map_err(|e| RuntimeError::io("cloning the pty", e))?;
    if stdin {
        let writer = master
            .try_clone()
            .map_err(|e| RuntimeError::io("cloning the pty", e))?;
        std::thread::spawn(move || {
            let mut w = std::fs::File::from(writer);
            let mut buf = [0u8; 4096];
            let mut input = std::io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        // End of input: send EOF (^D) like a terminal would.
                        let _ = w.write_all(&[4]);
                        return;
                    }
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    Ok(std::thread::spawn(move || {
        let mut r = std::fs::File::from(reader);
        let mut buf = [0u8; 8192];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    let _ = out.flush();
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return, // EIO: every slave fd is closed
            }
        }
    }))
}

/// Makes the terminal on fd 0 the controlling terminal of the calling process (a session
/// leader), for the container init before its command runs.
pub fn take_controlling_terminal(fd: BorrowedFd<'_>) {
    if nix::unistd::isatty(fd.as_raw_fd()).unwrap_or(false) {
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    }
}

/// A listening unix socket on which the runtime sends the master side of the terminal it
/// made inside the container (the console-socket protocol of runc and libcontainer).
pub struct ConsoleSocket {
    path: std::path::PathBuf,
    rx: std::sync::mpsc::Receiver<Result<OwnedFd, String>>,
}

impl ConsoleSocket {
    /// Listens at `path` and waits for the master in a thread.
    pub fn listen(path: &std::path::Path) -> Result<ConsoleSocket, RuntimeError> {
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path)
            .map_err(|e| RuntimeError::io("creating the console socket", e))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = (|| {
                let (conn, _) = listener.accept().map_err(|e| e.to_string())?;
                let mut buf = [0u8; 256];
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let mut space = nix::cmsg_space!([RawFd; 1]);
                let msg = nix::sys::socket::recvmsg::<()>(
                    conn.as_raw_fd(),
                    &mut iov,
                    Some(&mut space),
                    nix::sys::socket::MsgFlags::MSG_CMSG_CLOEXEC,
                )
                .map_err(|e| e.to_string())?;
                for c in msg.cmsgs().map_err(|e| e.to_string())? {
                    if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c
                        && let Some(fd) = fds.first()
                    {
                        return Ok(unsafe {
                            <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(*fd)
                        });
                    }
                }
                Err("no terminal received on the console socket".to_string())
            })();
            let _ = tx.send(r);
        });
        Ok(ConsoleSocket {
            path: path.to_path_buf(),
            rx,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The master side, once the container has sent it.
    pub fn master(&self) -> Result<OwnedFd, RuntimeError> {
        let r = self
            .rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .map_err(|_| RuntimeError::Runtime("no terminal from the container".into()))?;
        r.map_err(RuntimeError::Runtime)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
