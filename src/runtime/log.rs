//! A detached container's log: its stdout and stderr kept apart, with the time each chunk
//! arrived, so `xrun logs` writes each back to its own stream (as `docker logs` does) and can
//! show timestamps.
//!
//! The file is a sequence of records, binary-safe (the container's output is bytes, not
//! text): a header line `<O|E> <RFC 3339 time, UTC, nanoseconds> <length>\n`, the bytes, and
//! `\n`. Each record is written with one `write` under a lock, so records of the two streams
//! never interleave. A reader meeting a record that is not complete yet (the writer is in the
//! middle of it) stops before it and reads it later.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::RuntimeError;

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    fn tag(self) -> u8 {
        match self {
            Stream::Stdout => b'O',
            Stream::Stderr => b'E',
        }
    }
}

/// Appends records of one stream to a shared log file.
#[derive(Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
    stream: Stream,
}

impl LogWriter {
    /// Writers for stdout and stderr sharing the log `file` (opened for appending).
    pub fn pair(file: File) -> (LogWriter, LogWriter) {
        let file = Arc::new(Mutex::new(file));
        (
            LogWriter {
                file: file.clone(),
                stream: Stream::Stdout,
            },
            LogWriter {
                file,
                stream: Stream::Stderr,
            },
        )
    }
}

/// Now, as the log writes it (RFC 3339, UTC).
pub fn timestamp() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// One encoded record.
pub fn encode(stream: Stream, time: &str, data: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(data.len() + 48);
    rec.push(stream.tag());
    rec.extend_from_slice(format!(" {time} {}\n", data.len()).as_bytes());
    rec.extend_from_slice(data);
    rec.push(b'\n');
    rec
}

impl Write for LogWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        let rec = encode(self.stream, &timestamp(), data);
        let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
        f.write_all(&rec)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Copies everything read from `from` (a pipe's read end) into `to` (a [`LogWriter`], or
/// an attach hub's writer) until end of file.
pub fn pump(from: OwnedFd, mut to: impl Write + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = File::from(from);
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    })
}

/// One decoded record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its stream.
    pub stream: Stream,
    /// When it arrived (RFC 3339).
    pub time: String,
    /// The bytes.
    pub data: Vec<u8>,
}

/// Decodes the complete records at the start of `buf`; returns them and how many bytes they
/// took (the rest is an incomplete record, to be read again once more arrived).
pub fn decode(buf: &[u8]) -> Result<(Vec<Record>, usize), RuntimeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let header = std::str::from_utf8(&buf[pos..pos + nl])
            .map_err(|_| RuntimeError::Corrupt("container log: bad record header".into()))?;
        let mut parts = header.splitn(3, ' ');
        let (tag, time, len) = (parts.next(), parts.next(), parts.next());
        let stream = match tag {
            Some("O") => Stream::Stdout,
            Some("E") => Stream::Stderr,
            _ => {
                return Err(RuntimeError::Corrupt(format!(
                    "container log: bad record header {header:?}"
                )));
            }
        };
        let len: usize = len.and_then(|l| l.parse().ok()).ok_or_else(|| {
            RuntimeError::Corrupt(format!("container log: bad record header {header:?}"))
        })?;
        let start = pos + nl + 1;
        if buf.len() < start + len + 1 {
            break;
        }
        if buf[start + len] != b'\n' {
            return Err(RuntimeError::Corrupt(
                "container log: a record does not end where its length says".into(),
            ));
        }
        out.push(Record {
            stream,
            time: time.unwrap_or_default().to_string(),
            data: buf[start..start + len].to_vec(),
        });
        pos = start + len + 1;
    }
    Ok((out, pos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_binary_data_and_stop_before_an_incomplete_one() {
        let mut buf = encode(Stream::Stdout, "t1", b"hello\n");
        buf.extend(encode(Stream::Stderr, "t2", b"\x00\xff no newline"));
        buf.extend(encode(Stream::Stdout, "t3", b"12\n34\n"));
        let full = buf.len();
        buf.extend(&encode(Stream::Stdout, "t4", b"partial")[..12]);
        let (recs, used) = decode(&buf).unwrap();
        assert_eq!(used, full);
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].data, b"hello\n");
        assert_eq!(recs[1].stream, Stream::Stderr);
        assert_eq!(recs[1].data, b"\x00\xff no newline");
        assert_eq!(recs[2].time, "t3");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode(b"X t 3\nabc\n").is_err());
        assert!(decode(b"O t nope\nabc\n").is_err());
        assert!(decode(b"O t 2\nabc\n").is_err());
        assert_eq!(decode(b"O t 99\nabc\n").unwrap().1, 0);
    }

    #[test]
    fn writers_of_both_streams_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let f = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let (mut o, mut e) = LogWriter::pair(f);
        o.write_all(b"out").unwrap();
        e.write_all(b"err").unwrap();
        let (recs, _) = decode(&std::fs::read(&path).unwrap()).unwrap();
        let got: Vec<_> = recs.iter().map(|r| (r.stream, r.data.clone())).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, b"out".to_vec()),
                (Stream::Stderr, b"err".to_vec())
            ]
        );
    }
}
