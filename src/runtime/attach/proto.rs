//! The attach socket's wire format: frames of a kind byte, a 4-byte big-endian length and
//! the payload. A client opens with [`HELLO`] (a JSON [`Hello`]); the monitor answers
//! [`READY`] (a JSON [`Ready`]), then output frames ([`STDOUT`], [`STDERR`]) and, when the
//! container exits, [`EXIT`] (a 4-byte big-endian code, empty when unknown). The client
//! sends [`STDIN`], [`CLOSE`] (close the container's stdin) and [`RESIZE`] (rows, columns as
//! two big-endian u16).

use std::io::{Read, Write};

/// Client → monitor: the [`Hello`].
pub const HELLO: u8 = b'H';
/// Client → monitor: bytes for the container's stdin.
pub const STDIN: u8 = b'I';
/// Client → monitor: close the container's stdin.
pub const CLOSE: u8 = b'C';
/// Client → monitor: resize the terminal.
pub const RESIZE: u8 = b'R';
/// Monitor → client: the [`Ready`] answer.
pub const READY: u8 = b'A';
/// Monitor → client: stdout bytes (or the terminal's output).
pub const STDOUT: u8 = b'O';
/// Monitor → client: stderr bytes.
pub const STDERR: u8 = b'E';
/// Monitor → client: the container exited.
pub const EXIT: u8 = b'X';

/// The largest payload accepted (a peer sending more is cut off).
pub const MAX_FRAME: usize = 1 << 20;

/// What a client asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// It will send stdin.
    pub stdin: bool,
    /// It wants stdout.
    pub stdout: bool,
    /// It wants stderr.
    pub stderr: bool,
    /// It wants this run's output so far first.
    pub replay: bool,
}

/// The monitor's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ready {
    /// The container has a terminal.
    pub tty: bool,
}

/// Encodes one frame.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(kind);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Writes one frame with a single write.
pub fn write_frame(mut w: impl Write, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&frame(kind, payload))
}

/// Reads one frame; `None` at a clean end of stream.
pub fn read_frame(mut r: impl Read) -> std::io::Result<Option<(u8, Vec<u8>)>> {
    let mut head = [0u8; 5];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("attach frame of {len} bytes"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((head[0], payload)))
}

/// The payload of a [`RESIZE`] frame.
pub fn resize_payload(rows: u16, cols: u16) -> [u8; 4] {
    let (r, c) = (rows.to_be_bytes(), cols.to_be_bytes());
    [r[0], r[1], c[0], c[1]]
}

/// Decodes a [`RESIZE`] payload.
pub fn parse_resize(p: &[u8]) -> Option<(u16, u16)> {
    (p.len() == 4).then(|| {
        (
            u16::from_be_bytes([p[0], p[1]]),
            u16::from_be_bytes([p[2], p[3]]),
        )
    })
}

/// The payload of an [`EXIT`] frame.
pub fn exit_payload(code: Option<i32>) -> Vec<u8> {
    code.map(|c| c.to_be_bytes().to_vec()).unwrap_or_default()
}

/// Decodes an [`EXIT`] payload.
pub fn parse_exit(p: &[u8]) -> Option<i32> {
    <[u8; 4]>::try_from(p).ok().map(i32::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut buf = frame(STDOUT, b"hello");
        buf.extend(frame(EXIT, &exit_payload(Some(-3))));
        buf.extend(frame(RESIZE, &resize_payload(40, 120)));
        let mut r = &buf[..];
        assert_eq!(
            read_frame(&mut r).unwrap(),
            Some((STDOUT, b"hello".to_vec()))
        );
        let (k, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((k, parse_exit(&p)), (EXIT, Some(-3)));
        let (_, p) = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(parse_resize(&p), Some((40, 120)));
        assert_eq!(read_frame(&mut r).unwrap(), None);
        assert_eq!(parse_exit(&[]), None);
        let mut big = vec![STDIN];
        big.extend(((MAX_FRAME + 1) as u32).to_be_bytes());
        assert!(read_frame(&big[..]).is_err());
        assert!(read_frame(&[STDIN, 0, 0][..]).is_err());
    }
}
