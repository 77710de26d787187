//! Streams to clients: Docker's multiplexed frames (an 8-byte header: stream, 3 zero bytes,
//! big-endian length) and hijacked connections (`101 UPGRADED`, then a raw stream with a
//! terminal or multiplexed frames without; the client may half-close its side to close
//! the container's stdin).

use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::http::{self, Response};
use super::router::Request;

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

impl From<crate::runtime::log::Stream> for StreamKind {
    fn from(s: crate::runtime::log::Stream) -> StreamKind {
        match s {
            crate::runtime::log::Stream::Stdout => StreamKind::Stdout,
            crate::runtime::log::Stream::Stderr => StreamKind::Stderr,
        }
    }
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

/// The bytes a client gets for `data` on `kind`: as is with a terminal, else framed.
pub fn encode(tty: bool, kind: StreamKind, data: &[u8]) -> Bytes {
    if tty {
        Bytes::copy_from_slice(data)
    } else {
        Bytes::from(frame(kind, data))
    }
}

/// Docker's content type for a stream with or without a terminal.
pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Takes the connection's upgrade from a hijacking request (`Connection: Upgrade`,
/// `Upgrade: tcp`); without one it is a 400.
pub fn take_upgrade(r: &mut Request) -> Result<OnUpgrade, ApiError> {
    let asks = r
        .headers()
        .get(UPGRADE)
        .is_some_and(|v| !v.as_bytes().is_empty());
    match r.upgrade() {
        Some(u) if asks => Ok(u),
        _ => Err(ApiError::bad_request(
            "this endpoint hijacks the connection: send Connection: Upgrade and Upgrade: tcp",
        )),
    }
}

/// The `101 UPGRADED` answer of a hijacking endpoint.
pub fn switching(tty: bool) -> Response {
    let mut resp = hyper::Response::new(http::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type(tty)));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    resp
}

/// What a hijacked client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClient {
    /// Bytes for stdin.
    Data(Vec<u8>),
    /// The client closed its side (stdin's end), or went away.
    Closed,
}

/// Relays a hijacked connection: what arrives on `out` (already encoded) goes to the
/// client until `out` ends; what the client sends goes to `input`. Returns once the output
/// ended (then the connection is closed) or the client went away (`false`).
pub async fn relay(
    upgrade: OnUpgrade,
    mut out: mpsc::Receiver<Bytes>,
    input: impl Fn(FromClient) + Send + 'static,
) -> bool {
    let io = match upgrade.await {
        Ok(u) => TokioIo::new(u),
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            input(FromClient::Closed);
            return false;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(io);
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => {
                    input(FromClient::Closed);
                    return;
                }
                Ok(n) => input(FromClient::Data(buf[..n].to_vec())),
            }
        }
    });
    let mut client_alive = true;
    while let Some(chunk) = out.recv().await {
        if wr.write_all(&chunk).await.is_err() || wr.flush().await.is_err() {
            client_alive = false;
            break;
        }
    }
    let _ = wr.shutdown().await;
    reader.abort();
    client_alive
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_dockers_header() {
        let f = frame(StreamKind::Stderr, b"hi");
        assert_eq!(f, vec![2, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        let big = frame(StreamKind::Stdout, &[7u8; 70000]);
        assert_eq!(&big[..8], &[1, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(
            encode(true, StreamKind::Stderr, b"x"),
            Bytes::from_static(b"x")
        );
    }
}
