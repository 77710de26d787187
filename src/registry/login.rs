//! `xrun login`: checks credentials against a registry the way Docker does (`GET /v2/`, then
//! Basic, or a token from the Bearer challenge's realm) before they are saved.

use reqwest::StatusCode;
use reqwest::header::WWW_AUTHENTICATE;

use super::auth::Credentials;
use super::client::{ClientOptions, root_cause};
use super::error::RegistryError;

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…`.
    Bearer {
        /// Where tokens come from.
        realm: String,
        /// The service name, when given.
        service: Option<String>,
    },
    /// Something else.
    Other(String),
}

/// Parses a `WWW-Authenticate` header value.
pub fn parse_challenge(h: &str) -> Challenge {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = std::collections::BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((k, after)) = s.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap_or(q.len());
            (&q[..end], q.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        params.insert(k, v.to_string());
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Challenge::Basic,
        "bearer" => match params.remove("realm") {
            Some(realm) => Challenge::Bearer {
                realm,
                service: params.remove("service"),
            },
            None => Challenge::Other(h.to_string()),
        },
        _ => Challenge::Other(h.to_string()),
    }
}

/// Checks `creds` against `registry` (`host[:port]`). `Ok` when the registry accepts them
/// (or asks for none); [`RegistryError::WrongCredentials`] on a 401/403.
pub async fn verify_login(
    registry: &str,
    creds: &Credentials,
    opts: &ClientOptions,
) -> Result<(), RegistryError> {
    let http = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .read_timeout(opts.read_timeout)
        .user_agent(concat!("xrun/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| RegistryError::Protocol {
            registry: registry.to_string(),
            message: format!("cannot build HTTP client: {e}"),
        })?;
    let net = |e: reqwest::Error| {
        if e.is_connect() || e.is_timeout() {
            RegistryError::Unreachable {
                registry: registry.to_string(),
                reason: root_cause(&e),
            }
        } else {
            RegistryError::Protocol {
                registry: registry.to_string(),
                message: root_cause(&e),
            }
        }
    };
    let wrong = || RegistryError::WrongCredentials {
        registry: registry.to_string(),
    };
    let base = opts.base_url(registry);
    let url = format!("{base}/v2/");
    let first = http.get(&url).send().await.map_err(net)?;
    if first.status().is_success() {
        return Ok(());
    }
    if first.status() != StatusCode::UNAUTHORIZED {
        return Err(RegistryError::Protocol {
            registry: registry.to_string(),
            message: format!("GET /v2/ answered {}", first.status()),
        });
    }
    let challenge = first
        .headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .map(parse_challenge)
        .unwrap_or(Challenge::Basic);
    let resp = match challenge {
        Challenge::Basic | Challenge::Other(_) => http
            .get(&url)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
            .map_err(net)?,
        Challenge::Bearer { realm, service } => {
            let mut q = vec![("account", creds.username.clone())];
            if let Some(s) = service {
                q.push(("service", s));
            }
            http.get(&realm)
                .query(&q)
                .basic_auth(&creds.username, Some(&creds.password))
                .send()
                .await
                .map_err(net)?
        }
    };
    match resp.status() {
        s if s.is_success() => Ok(()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(wrong()),
        s => Err(RegistryError::Protocol {
            registry: registry.to_string(),
            message: format!("login answered {s}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Challenge::Basic
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a:pull""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into())
            }
        );
        assert_eq!(
            parse_challenge("Bearer realm=http://h/t"),
            Challenge::Bearer {
                realm: "http://h/t".into(),
                service: None
            }
        );
        assert!(matches!(parse_challenge("Negotiate"), Challenge::Other(_)));
    }
}
