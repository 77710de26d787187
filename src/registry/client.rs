//! How registries are reached: protocol (plain HTTP only for loopback and insecure
//! registries), timeouts, mirrors, retries; and the mapping of HTTP failures to xrun's errors.

use std::time::Duration;

use super::error::RegistryError;
use crate::config::Config;
use crate::reference::{ImageRef, host_of};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Registries (`host` or `host:port`) reached over plain HTTP besides loopback ones.
    pub insecure_registries: Vec<String>,
    /// Registry mirrors: `docker.io` → `mirror.example:5000`.
    pub mirrors: std::collections::BTreeMap<String, String>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Timeout for each read of a response (a stalled registry fails after this).
    pub read_timeout: Duration,
    /// Attempts per request for connect errors, timeouts, 429 and 5xx (at least 1).
    pub attempts: u32,
    /// Delay before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure_registries: Vec::new(),
            mirrors: Default::default(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

impl ClientOptions {
    /// Options from xrun's configuration file plus `--insecure-registry` flags.
    pub fn from_config(config: &Config, extra_insecure: &[String]) -> ClientOptions {
        let mut insecure = config.insecure_registries.clone();
        insecure.extend(extra_insecure.iter().cloned());
        ClientOptions {
            insecure_registries: insecure,
            mirrors: config.registry_mirrors.clone(),
            ..ClientOptions::default()
        }
    }

    /// Whether `registry` (`host[:port]`) is reached over plain HTTP: loopback hosts, and those
    /// listed as insecure (by `host:port` or by bare `host`).
    pub fn is_plain_http(&self, registry: &str) -> bool {
        let host = host_of(registry);
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        loopback
            || self.insecure_registries.iter().any(|i| {
                let i = i
                    .trim()
                    .trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/');
                i == registry || i == host
            })
    }

    /// The registry actually contacted for `r` (its mirror, if one is configured).
    pub fn endpoint(&self, r: &ImageRef) -> String {
        self.mirrors
            .get(&r.registry)
            .map(|m| {
                m.trim_start_matches("http://")
                    .trim_start_matches("https://")
                    .trim_end_matches('/')
                    .to_string()
            })
            .unwrap_or_else(|| match r.registry.as_str() {
                "docker.io" => "index.docker.io".to_string(),
                other => other.to_string(),
            })
    }

    /// The `http` or `https` base URL of `endpoint`.
    pub fn base_url(&self, endpoint: &str) -> String {
        let scheme = if self.is_plain_http(endpoint) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{endpoint}")
    }

    /// An HTTP client with xrun's timeouts and user agent (redirects followed, at most 10;
    /// credentials are not sent on to another host).
    pub fn http(&self, endpoint: &str) -> Result<reqwest::Client, RegistryError> {
        reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.read_timeout)
            .user_agent(concat!("xrun/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Protocol {
                registry: endpoint.to_string(),
                message: format!("cannot build HTTP client: {e}"),
            })
    }
}

/// Whether a transport error is worth retrying: connect errors, timeouts, broken bodies.
pub fn is_transient(r: &reqwest::Error) -> bool {
    r.is_connect() || r.is_timeout() || r.is_body() || r.is_request()
}

/// Whether an HTTP status is worth retrying: 429 and 5xx.
pub fn is_transient_status(code: u16) -> bool {
    code == 429 || code >= 500
}

/// A failed try: worth another one, or final.
#[derive(Debug)]
pub enum Attempt {
    /// Worth another try (network hiccup, 5xx, 429).
    Transient(RegistryError),
    /// Final.
    Fatal(RegistryError),
}

impl Attempt {
    /// The error, whichever kind.
    pub fn into_error(self) -> RegistryError {
        match self {
            Attempt::Transient(e) | Attempt::Fatal(e) => e,
        }
    }
}

impl From<RegistryError> for Attempt {
    fn from(e: RegistryError) -> Self {
        Attempt::Fatal(e)
    }
}

/// Maps a transport error (no HTTP answer, or a body that broke off) to xrun's.
pub fn transport_error(e: reqwest::Error, registry: &str) -> Attempt {
    let transient = is_transient(&e);
    let err = if e.is_connect() || e.is_timeout() {
        RegistryError::Unreachable {
            reason: if e.is_timeout() && !e.is_connect() {
                "timed out".to_string()
            } else {
                root_cause(&e)
            },
            registry: registry.to_string(),
        }
    } else {
        RegistryError::Protocol {
            registry: registry.to_string(),
            message: one_line(&e),
        }
    };
    if transient {
        Attempt::Transient(err)
    } else {
        Attempt::Fatal(err)
    }
}

/// The innermost cause of an error, shortened for one line (`connection refused`, …).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut io_kind = None;
    while let Some(next) = cur.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        cur = next;
    }
    match io_kind {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused".into(),
        Some(std::io::ErrorKind::TimedOut) => "timed out".into(),
        _ => {
            let s = cur.to_string();
            if s.to_lowercase().contains("connection refused") {
                "connection refused".into()
            } else {
                s
            }
        }
    }
}

/// What was being fetched when an error happened, to map it to a clear message.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The registry contacted.
    pub registry: &'a str,
    /// The repository.
    pub repository: &'a str,
    /// The reference, as the user named it.
    pub reference: &'a str,
    /// Whether credentials were sent.
    pub had_credentials: bool,
}

/// One error of a registry's JSON error envelope (`{"errors":[{"code":…,"message":…}]}`).
#[derive(Debug, Clone, serde::Deserialize)]
struct EnvelopeError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, serde::Deserialize)]
struct Envelope {
    errors: Vec<EnvelopeError>,
}

/// Maps an HTTP error answer (status and the first bytes of its body) to xrun's. 4xx bodies
/// are read as the distribution spec's error envelope; a blob fetch (`blob` set) reports
/// `BLOB_UNKNOWN` as a missing blob.
pub fn status_error(code: u16, body: &[u8], cx: Context<'_>, blob: Option<&str>) -> Attempt {
    let registry = cx.registry.to_string();
    let unauthorized = || {
        if cx.had_credentials {
            RegistryError::WrongCredentials {
                registry: registry.clone(),
            }
        } else {
            RegistryError::AuthRequired {
                registry: registry.clone(),
            }
        }
    };
    let not_found = || match blob {
        Some(what) => RegistryError::Protocol {
            registry: registry.clone(),
            message: format!("{what} is missing on the registry (blob unknown)"),
        },
        None => RegistryError::ManifestUnknown {
            reference: cx.reference.to_string(),
        },
    };
    if code == 401 {
        return Attempt::Fatal(unauthorized());
    }
    let envelope = (400..500)
        .contains(&code)
        .then(|| serde_json::from_slice::<Envelope>(body).ok())
        .flatten();
    let err = match envelope {
        Some(env) => {
            let has = |c: &str| env.errors.iter().any(|e| e.code == c);
            if [
                "MANIFEST_UNKNOWN",
                "NAME_UNKNOWN",
                "NOT_FOUND",
                "BLOB_UNKNOWN",
            ]
            .iter()
            .any(|c| has(c))
            {
                not_found()
            } else if has("UNAUTHORIZED") {
                unauthorized()
            } else if has("DENIED") {
                if cx.had_credentials {
                    RegistryError::Denied {
                        registry,
                        repository: cx.repository.to_string(),
                    }
                } else {
                    unauthorized()
                }
            } else {
                let msg: Vec<String> = env
                    .errors
                    .iter()
                    .map(|e| format!("{}: {}", e.code, e.message))
                    .collect();
                let message = printable(&msg.join("; "));
                let err = RegistryError::Protocol { registry, message };
                return if has("TOOMANYREQUESTS") || is_transient_status(code) {
                    Attempt::Transient(err)
                } else {
                    Attempt::Fatal(err)
                };
            }
        }
        None if code == 404 => not_found(),
        None => {
            let message = printable(&String::from_utf8_lossy(body));
            RegistryError::Protocol {
                registry,
                message: format!("HTTP {code}: {message}"),
            }
        }
    };
    if is_transient_status(code) {
        Attempt::Transient(err)
    } else {
        Attempt::Fatal(err)
    }
}

/// What a registry said, made safe to print on one line: control characters (newlines,
/// escape sequences) become spaces, runs of blanks one space, at most 200 characters.
fn printable(s: &str) -> String {
    let spaced: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    spaced
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

/// An error and its sources on one line.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let cs = c.to_string();
        if !s.contains(&cs) {
            s.push_str(": ");
            s.push_str(&cs);
        }
        cur = c.source();
    }
    s.replace('\n', " ")
}

/// Runs `op` up to `opts.attempts` times, backing off between tries, while it fails with a
/// transient error.
pub async fn with_retry<T, F, Fut>(opts: &ClientOptions, mut op: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Attempt>>,
{
    let mut delay = opts.backoff;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(Attempt::Transient(e)) if attempt < opts.attempts.max(1) => {
                tracing::debug!("attempt {attempt} failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e.into_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_and_listed() {
        let o = ClientOptions {
            insecure_registries: vec!["reg.lan:5000".into(), "other.lan".into()],
            ..Default::default()
        };
        assert!(o.is_plain_http("127.0.0.1:5000"));
        assert!(o.is_plain_http("localhost:1"));
        assert!(o.is_plain_http("[::1]:5000"));
        assert!(o.is_plain_http("reg.lan:5000"));
        assert!(!o.is_plain_http("reg.lan:5001"));
        assert!(o.is_plain_http("other.lan:443"));
        assert!(!o.is_plain_http("quay.io"));
        assert_eq!(o.base_url("quay.io"), "https://quay.io");
        assert_eq!(o.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
    }

    #[test]
    fn endpoints_and_mirrors() {
        let mut o = ClientOptions::default();
        let hub = ImageRef::parse("busybox").unwrap();
        assert_eq!(o.endpoint(&hub), "index.docker.io");
        o.mirrors
            .insert("docker.io".into(), "http://127.0.0.1:5000/".into());
        assert_eq!(o.endpoint(&hub), "127.0.0.1:5000");
        let q = ImageRef::parse("quay.io/a/b").unwrap();
        assert_eq!(o.endpoint(&q), "quay.io");
    }

    fn busy(code: u16) -> Attempt {
        status_error(
            code,
            b"",
            Context {
                registry: "r:1",
                repository: "x",
                reference: "r:1/x:y",
                had_credentials: false,
            },
            None,
        )
    }

    #[tokio::test]
    async fn retries_only_transient_errors() {
        let o = ClientOptions {
            backoff: Duration::from_millis(1),
            ..Default::default()
        };
        let mut n = 0;
        let r: Result<(), _> = with_retry(&o, || {
            n += 1;
            async { Err(busy(503)) }
        })
        .await;
        assert_eq!(r.unwrap_err().to_string(), "registry r:1: HTTP 503: ");
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<(), _> = with_retry(&o, || {
            n += 1;
            async { Err(busy(404)) }
        })
        .await;
        assert!(matches!(r, Err(RegistryError::ManifestUnknown { .. })));
        assert_eq!(n, 1);
        let mut n = 0;
        let r = with_retry(&o, || {
            n += 1;
            let k = n;
            async move { if k < 2 { Err(busy(429)) } else { Ok(k) } }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }

    #[test]
    fn error_envelopes() {
        let cx = Context {
            registry: "r:1",
            repository: "x",
            reference: "r:1/x:y",
            had_credentials: true,
        };
        let e = |code, body: &str, blob| status_error(code, body.as_bytes(), cx, blob);
        let m = e(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"m"}]}"#,
            None,
        );
        assert!(matches!(
            m,
            Attempt::Fatal(RegistryError::ManifestUnknown { .. })
        ));
        let b = e(
            404,
            r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#,
            Some("layer sha256:a"),
        );
        assert_eq!(
            b.into_error().to_string(),
            "registry r:1: layer sha256:a is missing on the registry (blob unknown)"
        );
        let d = e(
            403,
            r#"{"errors":[{"code":"DENIED","message":"no"}]}"#,
            None,
        );
        assert!(matches!(d, Attempt::Fatal(RegistryError::Denied { .. })));
        let t = e(
            429,
            r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"slow"}]}"#,
            None,
        );
        assert!(matches!(t, Attempt::Transient(_)));
        let u = e(401, "", None);
        assert!(matches!(
            u,
            Attempt::Fatal(RegistryError::WrongCredentials { .. })
        ));
    }
}
