//! Building oci-client [`Client`]s: protocol (plain HTTP only for loopback and insecure
//! registries), timeouts, mirrors; and the mapping of oci-client's errors to xrun's.

use std::time::Duration;

use oci_client::Client;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};

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

    /// A fresh client for `endpoint` (one per credential set: oci-client keeps the first
    /// credentials it sees for a registry).
    pub fn build(&self, endpoint: &str) -> Result<Client, RegistryError> {
        let protocol = if self.is_plain_http(endpoint) {
            ClientProtocol::HttpsExcept(vec![endpoint.to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            connect_timeout: Some(self.connect_timeout),
            read_timeout: Some(self.read_timeout),
            platform_resolver: None,
            user_agent: concat!("xrun/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        Client::try_from(config).map_err(|e| RegistryError::Protocol {
            registry: endpoint.to_string(),
            message: format!("cannot build HTTP client: {e}"),
        })
    }
}

/// Whether an oci-client error is worth retrying: connect errors, timeouts, 429, 5xx.
pub fn is_transient(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::RequestError(r) => {
            r.is_connect() || r.is_timeout() || r.is_body() || r.is_request()
        }
        OciDistributionError::ServerError { code, .. } => *code == 429 || *code >= 500,
        OciDistributionError::RegistryError { envelope, .. } => envelope
            .errors
            .iter()
            .any(|e| e.code == OciErrorCode::Toomanyrequests),
        OciDistributionError::IoError(io) => is_transient_io(io),
        _ => false,
    }
}

/// Whether an I/O error from a body stream is a network hiccup (not a verification failure).
pub fn is_transient_io(io: &std::io::Error) -> bool {
    use std::error::Error;
    let mut cur: Option<&(dyn Error + 'static)> = io.get_ref().map(|e| e as _);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            return r.is_connect() || r.is_timeout() || r.is_body() || r.is_request();
        }
        if e.downcast_ref::<oci_client::errors::DigestError>()
            .is_some()
        {
            return false;
        }
        cur = e.source();
    }
    matches!(
        io.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::TimedOut
    )
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

/// Maps an oci-client error to xrun's.
pub fn map_error(e: OciDistributionError, cx: Context<'_>) -> RegistryError {
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
    match e {
        OciDistributionError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            RegistryError::Unreachable {
                reason: if r.is_timeout() && !r.is_connect() {
                    "timed out".to_string()
                } else {
                    root_cause(&r)
                },
                registry,
            }
        }
        OciDistributionError::UnauthorizedError { .. } => unauthorized(),
        OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                RegistryError::ManifestUnknown {
                    reference: cx.reference.to_string(),
                }
            } else if codes.iter().any(|c| **c == OciErrorCode::Unauthorized) {
                unauthorized()
            } else if codes.iter().any(|c| **c == OciErrorCode::Denied) {
                if cx.had_credentials {
                    RegistryError::Denied {
                        registry,
                        repository: cx.repository.to_string(),
                    }
                } else {
                    unauthorized()
                }
            } else {
                let msg: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        let code = serde_json::to_value(&e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_string))
                            .unwrap_or_default();
                        format!("{code}: {}", e.message)
                    })
                    .collect();
                RegistryError::Protocol {
                    registry,
                    message: msg.join("; "),
                }
            }
        }
        OciDistributionError::ServerError { code, message, .. } => {
            if code == 404 {
                RegistryError::ManifestUnknown {
                    reference: cx.reference.to_string(),
                }
            } else {
                let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
                let message: String = message.chars().take(200).collect();
                RegistryError::Protocol {
                    registry,
                    message: format!("HTTP {code}: {message}"),
                }
            }
        }
        other => RegistryError::Protocol {
            registry,
            message: one_line(&other),
        },
    }
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
pub async fn with_retry<T, F, Fut>(
    opts: &ClientOptions,
    mut op: F,
) -> Result<T, OciDistributionError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OciDistributionError>>,
{
    let mut delay = opts.backoff;
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < opts.attempts.max(1) && is_transient(&e) => {
                tracing::debug!("attempt {attempt} failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
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

    #[tokio::test]
    async fn retries_only_transient_errors() {
        let o = ClientOptions {
            backoff: Duration::from_millis(1),
            ..Default::default()
        };
        let mut n = 0;
        let r: Result<(), _> = with_retry(&o, || {
            n += 1;
            async {
                Err(OciDistributionError::ServerError {
                    code: 503,
                    url: "u".into(),
                    message: "busy".into(),
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 3);
        let mut n = 0;
        let r: Result<(), _> = with_retry(&o, || {
            n += 1;
            async {
                Err(OciDistributionError::ServerError {
                    code: 404,
                    url: "u".into(),
                    message: "no".into(),
                })
            }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n, 1);
        let mut n = 0;
        let r = with_retry(&o, || {
            n += 1;
            let k = n;
            async move {
                if k < 2 {
                    Err(OciDistributionError::ServerError {
                        code: 429,
                        url: "u".into(),
                        message: "slow down".into(),
                    })
                } else {
                    Ok(k)
                }
            }
        })
        .await;
        assert_eq!(r.unwrap(), 2);
    }
}
