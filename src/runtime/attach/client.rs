//! The client's side of the attach socket: connect to a running container's monitor, or
//! wait (listening on a pending socket) for the monitor of its next start to connect.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::proto::{self, Hello, Ready};

/// An attached connection: the stream and the monitor's answer.
pub struct Conn {
    /// The socket (frames both ways, see [`super::proto`]).
    pub stream: UnixStream,
    /// The monitor's answer.
    pub ready: Ready,
}

/// Says hello on `stream` and reads the answer.
pub fn handshake(stream: UnixStream, hello: &Hello) -> std::io::Result<Conn> {
    let body = serde_json::to_vec(hello).map_err(std::io::Error::other)?;
    proto::write_frame(&stream, proto::HELLO, &body)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let ready = match proto::read_frame(&stream)? {
        Some((proto::READY, p)) => serde_json::from_slice(&p)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the container's monitor did not answer",
            ));
        }
    };
    stream.set_read_timeout(None)?;
    Ok(Conn { stream, ready })
}

/// Connects to the attach socket at `path`.
pub fn connect(path: &Path, hello: &Hello) -> std::io::Result<Conn> {
    handshake(UnixStream::connect(path)?, hello)
}

/// A client waiting for the next start: the monitor connects to its socket.
pub struct Pending {
    listener: UnixListener,
    path: PathBuf,
}

impl Pending {
    /// Listens on a new pending socket for container `id` in `dir`.
    pub fn listen(dir: &Path, id: &str) -> std::io::Result<Pending> {
        static N: AtomicU64 = AtomicU64::new(0);
        std::fs::create_dir_all(dir)?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        let path = dir.join(format!(
            "{}.pending-{}-{}.sock",
            &id[..24.min(id.len())],
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        Ok(Pending { listener, path })
    }

    /// Stops being found by later monitors (the socket file goes; a connection already
    /// made stays acceptable).
    pub fn unlink(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// A connection the monitor made, waiting at most `timeout` (`None`: none yet).
    pub fn accept(&self, timeout: Duration) -> std::io::Result<Option<UnixStream>> {
        use std::os::fd::AsFd;
        let mut fds = [nix::poll::PollFd::new(
            self.listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let n = match nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
        ) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(None);
        }
        let (s, _) = self.listener.accept()?;
        s.set_nonblocking(false)?;
        Ok(Some(s))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
