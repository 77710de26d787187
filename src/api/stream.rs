//! Streams to clients: Docker's multiplexed frames (an 8-byte header: stream, 3 zero bytes,
//! big-endian length) and hijacked connections (`101 UPGRADED`, raw stream).

/// Which stream a multiplexed frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// stdin (written back by some clients).
    Stdin = 0,
    /// stdout.
    Stdout = 1,
    /// stderr.
    Stderr = 2,
}

/// One multiplexed frame: the header and `data`.
pub fn frame(kind: StreamKind, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_dockers_header() {
        let f = frame(StreamKind::Stderr, b"hi");
        assert_eq!(f, vec![2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
    }
}
