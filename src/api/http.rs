//! Response bodies and builders: JSON, empty, plain text, and streamed bodies fed from a
//! channel (progress streams, logs, multiplexed output).

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::StatusCode;
use hyper::body::Frame;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use tokio::sync::mpsc;

use super::error::ApiError;

/// Every response body.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// Every response.
pub type Response = hyper::Response<Body>;

/// A body of `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|e| match e {}).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// `status` with `value` as JSON.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(mut v) => {
            v.push(b'\n');
            with_type(status, full(v), "application/json")
        }
        Err(e) => error(&ApiError::internal(format!("encoding the answer: {e}"))),
    }
}

/// `status` with no body (`204 No Content`, `304 Not Modified`).
pub fn no_content(status: StatusCode) -> Response {
    let mut r = Response::new(empty());
    *r.status_mut() = status;
    r
}

/// `status` with a plain text body.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response {
    with_type(status, full(body), "text/plain; charset=utf-8")
}

/// The answer to a failed request: Docker's `{"message": …}`.
pub fn error(e: &ApiError) -> Response {
    with_type(e.status, full(e.body()), "application/json")
}

/// A response with `body` and content type `ctype`.
pub fn with_type(status: StatusCode, body: Body, ctype: &'static str) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// A streamed body and the sender that feeds it; the body ends when every sender is
/// dropped. A send fails once the client is gone (stop producing then).
pub fn channel(depth: usize) -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(depth);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    (tx, StreamBody::new(stream).boxed())
}
