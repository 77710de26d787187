//! The router: `(method, path pattern) → handler`, Docker's versioned paths (`/v1.44/…`),
//! and the request each handler gets (path parameters, query, bounded body).
//!
//! Patterns are `/`-separated: literals, `{name}` for one segment, and `{name*}` for one or
//! more segments (image names hold slashes: `/images/{name*}/json`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::http::Response;
use super::{ApiState, version};

/// The most a JSON request body may hold.
pub const MAX_JSON_BODY: usize = 4 << 20;

/// How long a client may take to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// What a handler returns.
pub type HandlerResult = Result<Response, ApiError>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'static>>;
type Handler = Box<dyn Fn(Arc<ApiState>, Request) -> BoxFuture + Send + Sync>;

/// One request as a handler sees it.
pub struct Request {
    /// The path parameters of the matched pattern, percent-decoded.
    pub params: HashMap<String, String>,
    /// The query string's parameters, decoded.
    pub query: Query,
    /// The API version the client asked for in the path (`None`: unversioned).
    pub version: Option<version::ApiVersion>,
    /// The request line, headers and extensions.
    pub parts: hyper::http::request::Parts,
    /// The body, until a handler takes it.
    pub body: Option<Incoming>,
}

impl Request {
    /// Path parameter `name` (present whenever the pattern names it).
    pub fn param(&self, name: &str) -> &str {
        self.params.get(name).map(String::as_str).unwrap_or("")
    }

    /// Builds the handler's view of `req`.
    pub fn new(
        req: hyper::Request<Incoming>,
        params: HashMap<String, String>,
        version: Option<version::ApiVersion>,
    ) -> Request {
        let query = Query::parse(req.uri().query());
        let (parts, body) = req.into_parts();
        Request {
            params,
            query,
            version,
            parts,
            body: Some(body),
        }
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    /// The connection's upgrade (for hijacking endpoints), once.
    pub fn upgrade(&mut self) -> Option<hyper::upgrade::OnUpgrade> {
        self.parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    }

    /// The whole body, at most `limit` bytes, sent within [`BODY_TIMEOUT`].
    pub async fn bytes(&mut self, limit: usize) -> Result<Bytes, ApiError> {
        let Some(body) = self.body.take() else {
            return Err(ApiError::internal("the request body was already read"));
        };
        let limited = http_body_util::Limited::new(body, limit);
        match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
            Err(_) => Err(ApiError::new(
                hyper::StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            )),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
                hyper::StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {limit} bytes"),
            )),
            Ok(Err(e)) => Err(ApiError::bad_request(format!(
                "reading the request body: {e}"
            ))),
            Ok(Ok(c)) => Ok(c.to_bytes()),
        }
    }

    /// The body as JSON of type `T` (an empty body reads as `{}`); malformed JSON is a 400.
    pub async fn json<T: DeserializeOwned>(&mut self) -> Result<T, ApiError> {
        let b = self.bytes(MAX_JSON_BODY).await?;
        let text: &[u8] = if b.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &b
        };
        serde_json::from_slice(text)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
    }
}

/// A decoded query string.
#[derive(Debug, Clone, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses `a=1&b=x%20y`.
    pub fn parse(q: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(q.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
        )
    }

    /// The last value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A boolean as Docker reads them: `1`/`true`/`True` are true, absent is `default`;
    /// anything else is a 400.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some("") => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(ApiError::bad_request(format!(
                    "invalid value for {name}: {v:?} (use true or false)"
                ))),
            },
        }
    }

    /// An integer, absent is `None`; not a number is a 400.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {name}: {v:?} (not a number)"))
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Lit(String),
    Param(String),
    Rest(String),
}

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

/// The table of endpoints; each area of the API adds its own (see [`super::routes`]).
#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// What [`Router::find`] found for a method and path.
pub enum Found<'a> {
    /// A handler and the path parameters.
    Handler(
        &'a (dyn Fn(Arc<ApiState>, Request) -> BoxFuture + Send + Sync),
        HashMap<String, String>,
    ),
    /// The path exists, not with this method.
    WrongMethod,
    /// No such path.
    Nothing,
}

impl Router {
    /// An empty table.
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds `handler` for `method` on `pattern` (unversioned, e.g. `/containers/{id}/start`).
    pub fn add<F, Fut>(&mut self, method: Method, pattern: &str, handler: F)
    where
        F: Fn(Arc<ApiState>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let pattern = parse_pattern(pattern);
        self.routes.push(Route {
            method,
            pattern,
            handler: Box::new(move |s, r| Box::pin(handler(s, r))),
        });
    }

    /// The handler for `method` on `path` (unversioned).
    pub fn find(&self, method: &Method, path: &str) -> Found<'_> {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8_lossy()
                    .into_owned()
            })
            .collect();
        let mut path_seen = false;
        for r in &self.routes {
            if let Some(params) = match_pattern(&r.pattern, &segs) {
                if r.method == *method {
                    return Found::Handler(r.handler.as_ref(), params);
                }
                path_seen = true;
            }
        }
        if path_seen {
            Found::WrongMethod
        } else {
            Found::Nothing
        }
    }
}

fn parse_pattern(p: &str) -> Vec<Segment> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix("*}")) {
                Segment::Rest(name.to_string())
            } else if let Some(name) = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Segment::Param(name.to_string())
            } else {
                Segment::Lit(s.to_string())
            }
        })
        .collect()
}

fn match_pattern(pattern: &[Segment], segs: &[String]) -> Option<HashMap<String, String>> {
    let mut params = HashMap::new();
    let mut i = 0;
    for (pi, p) in pattern.iter().enumerate() {
        match p {
            Segment::Lit(l) => {
                if segs.get(i)? != l {
                    return None;
                }
                i += 1;
            }
            Segment::Param(name) => {
                params.insert(name.clone(), segs.get(i)?.clone());
                i += 1;
            }
            Segment::Rest(name) => {
                // Leave exactly as many segments as the rest of the pattern needs.
                let after = pattern.len() - pi - 1;
                let take = segs.len().checked_sub(i + after)?;
                if take == 0 {
                    return None;
                }
                params.insert(name.clone(), segs[i..i + take].join("/"));
                i += take;
            }
        }
    }
    (i == segs.len()).then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> Option<HashMap<String, String>> {
        let segs: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        match_pattern(&parse_pattern(p), &segs)
    }

    #[test]
    fn patterns_match_segments() {
        assert!(m("/_ping", "/_ping").is_some());
        assert!(m("/_ping", "/_ping/x").is_none());
        let p = m("/containers/{id}/start", "/containers/abc/start").unwrap();
        assert_eq!(p["id"], "abc");
        assert!(m("/containers/{id}/start", "/containers/abc").is_none());
    }

    #[test]
    fn rest_segments_take_slashes() {
        let p = m("/images/{name*}/json", "/images/127.0.0.1:5000/a/b:1/json").unwrap();
        assert_eq!(p["name"], "127.0.0.1:5000/a/b:1");
        let p = m("/images/{name*}", "/images/busybox").unwrap();
        assert_eq!(p["name"], "busybox");
        assert!(m("/images/{name*}/json", "/images/json").is_none());
    }

    #[test]
    fn queries_decode_and_refuse_bad_values() {
        let q = Query::parse(Some("all=1&filters=%7B%22a%22%7D&t=x&t=y&n=abc"));
        assert!(q.bool("all", false).unwrap());
        assert_eq!(q.get("filters"), Some("{\"a\"}"));
        assert_eq!(q.all("t"), vec!["x", "y"]);
        assert!(q.int("n").is_err());
        assert_eq!(q.int("missing").unwrap(), None);
        assert!(q.bool("t", false).is_err());
    }
}
