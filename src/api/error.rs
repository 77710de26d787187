//! [`ApiError`]: a failed request as Docker answers it, a status code and a JSON body
//! `{"message": "…"}` on one line.

use hyper::StatusCode;

use crate::engine::{EngineError, ErrorKind};

/// A failed request: the status Docker gives for it and the message its clients print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The message (`Error response from daemon: <message>` in the `docker` CLI).
    pub message: String,
}

impl ApiError {
    /// An error with `status` and `message` (newlines become spaces: one line).
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into().replace('\n', " "),
        }
    }

    /// 400: the request is wrong (bad parameter, malformed JSON).
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such object (container, image, exec instance, endpoint).
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 409: the object is in the wrong state, or the name is in use.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// 500: the service failed.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// 501: the endpoint or option is known and deliberately not provided.
    pub fn not_implemented(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, message)
    }

    /// The JSON body Docker sends with an error.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.message }).to_string()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        let message = one_line(&e);
        let status = match e.kind() {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::InUse => StatusCode::FORBIDDEN,
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            // Docker answers a start whose command cannot run with 400; its CLI maps the
            // message to 126/127.
            ErrorKind::Command => StatusCode::BAD_REQUEST,
            ErrorKind::Refused | ErrorKind::Failed => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, message)
    }
}

/// An error and its causes on one line (`what: cause: cause`).
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let c_s = c.to_string();
        if !s.ends_with(&c_s) {
            s.push_str(": ");
            s.push_str(&c_s);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeError;

    #[test]
    fn engine_errors_take_dockers_status() {
        let e: ApiError = EngineError::Runtime(RuntimeError::NoSuchContainer("c".into())).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = EngineError::Runtime(RuntimeError::WrongState("running".into())).into();
        assert_eq!(e.status, StatusCode::CONFLICT);
        let e: ApiError = EngineError::Invalid("bad".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let e: ApiError = EngineError::Refused("cannot run".into()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_body_is_one_json_line_with_the_causes() {
        let e: ApiError =
            EngineError::context("opening the store", std::io::Error::other("denied\nnow")).into();
        assert_eq!(e.message, "opening the store: denied now");
        let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
        assert_eq!(v["message"], "opening the store: denied now");
    }
}
