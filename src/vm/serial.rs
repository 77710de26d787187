//! The guest's virtio serial ports, seen from the host: qemu connects each named port to a
//! Unix socket xrun listens on; a thread per port accepts and streams into a sink until qemu
//! closes it. The exit port carries `S` (the command started) and then the exit status; the
//! control port carries `K <signal>` and `W <rows> <cols>` lines to the guest.

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::VmError;

/// Listens on a fresh Unix socket at `path` (non-blocking accept).
pub fn listen(path: &Path) -> Result<UnixListener, VmError> {
    let l = UnixListener::bind(path).map_err(VmError::io(path.display().to_string()))?;
    l.set_nonblocking(true)
        .map_err(VmError::io(path.display().to_string()))?;
    Ok(l)
}

/// Accepts one connection on `listener` (giving up once `stop` is set and nothing is
/// pending) and copies everything read into `sink`, flushing after every read so output is
/// live. Returns the number of bytes copied.
pub fn pump(
    listener: UnixListener,
    mut sink: Box<dyn Write + Send>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::SeqCst) {
                        return 0;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return 0,
            }
        };
        let _ = stream.set_nonblocking(false);
        drain(&mut stream, &mut sink)
    })
}

/// Accepts one connection on `listener` (giving up once `stop` is set) and copies `reader`
/// into it; at the reader's end, shuts the socket's write side so the guest reads EOF.
pub fn feed(
    listener: UnixListener,
    mut reader: Box<dyn Read + Send>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = std::io::copy(&mut reader, &mut stream);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Keep the connection open (qemu treats a closed socket as a gone host) until the VM ends.
        let mut sink = [0u8; 64];
        while !stop.load(Ordering::SeqCst) {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
}

/// Accepts one connection on `listener` (giving up once `stop` is set and nothing is
/// pending) and blocks until it is there; `None` when given up.
fn accept(listener: &UnixListener, stop: &AtomicBool) -> Option<std::os::unix::net::UnixStream> {
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                return Some(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return None,
        }
    }
}

/// A terminal port (`-t`): like [`pump`] for its output into `sink`, and, if given, copies
/// `input` into it (a detached thread: a terminal may never end; at its end, a `^D`, as
/// typed on a terminal).
pub fn bridge(
    listener: UnixListener,
    input: Option<Box<dyn Read + Send>>,
    mut sink: Box<dyn Write + Send>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<u64> {
    std::thread::spawn(move || {
        let Some(mut stream) = accept(&listener, &stop) else {
            return 0;
        };
        if let (Some(mut input), Ok(mut w)) = (input, stream.try_clone()) {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) | Err(_) => {
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
        drain(&mut stream, &mut sink)
    })
}

/// The control port: accepts qemu's connection on `listener` and writes every message
/// received on `rx` into it, in order, until `stop` is set (messages sent before the
/// connection wait for it).
pub fn control(listener: UnixListener, rx: Receiver<Vec<u8>>, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let Some(mut stream) = accept(&listener, &stop) else {
            return;
        };
        while !stop.load(Ordering::SeqCst) {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => {
                    if stream.write_all(&m).is_err() {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    });
}

/// What the exit port has said so far.
#[derive(Debug, Default)]
pub struct ExitState {
    /// The guest init started the command.
    pub started: AtomicBool,
    /// The exit status, once reported.
    pub code: Mutex<Option<i32>>,
    line: Mutex<Vec<u8>>,
}

/// A sink for the exit port that parses its lines into an [`ExitState`].
pub struct ExitSink(pub Arc<ExitState>);

impl Write for ExitSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut line = self.0.line.lock().unwrap_or_else(|e| e.into_inner());
        for &b in buf {
            if b != b'\n' {
                line.push(b);
                continue;
            }
            let text = String::from_utf8_lossy(&line).trim().to_string();
            line.clear();
            if text == "S" {
                self.0.started.store(true, Ordering::SeqCst);
            } else if let Ok(c) = text.parse::<i32>() {
                *self.0.code.lock().unwrap_or_else(|e| e.into_inner()) = Some(c);
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies `stream` into `sink` until the guest closes it; returns the bytes read. A sink that
/// went away (a closed pipe) must not stop the guest: the port keeps being drained.
fn drain(stream: &mut impl Read, sink: &mut impl Write) -> u64 {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                let _ = sink.write_all(&buf[..n]).and_then(|_| sink.flush());
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = sink.flush();
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_lines_parse() {
        let st = Arc::new(ExitState::default());
        let mut s = ExitSink(st.clone());
        s.write_all(b"S\n4").unwrap();
        assert!(st.started.load(Ordering::SeqCst));
        assert_eq!(*st.code.lock().unwrap(), None);
        s.write_all(b"2\n").unwrap();
        assert_eq!(*st.code.lock().unwrap(), Some(42));
    }
}
