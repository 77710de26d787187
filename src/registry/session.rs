//! Authenticated GETs against one repository: the distribution spec's token dance, done
//! with every answer bounded.
//!
//! A request goes out with the credential in force (none at first). On a `401`, the
//! `WWW-Authenticate` challenge of that answer (else of `GET /v2/`) says what to do: `Basic`
//! sends the user's credentials; `Bearer realm=…,service=…` asks the realm for a token with
//! `scope=repository:<repo>:pull` (Basic credentials attached when the user has some), read
//! with [`MAX_TOKEN_BYTES`](super::limits::MAX_TOKEN_BYTES). The request is then sent once
//! more; a second `401` is final. Error bodies are read up to
//! [`MAX_ERROR_BODY_BYTES`](super::limits::MAX_ERROR_BODY_BYTES) and no further.

use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, WWW_AUTHENTICATE};

use super::auth::Credentials;
use super::client::{
    Attempt, ClientOptions, Context, is_transient_status, status_error, transport_error,
};
use super::error::RegistryError;
use super::limits::{
    CappedError, MAX_ERROR_BODY_BYTES, MAX_TOKEN_BYTES, human, read_capped, read_prefix,
};
use super::login::{Challenge, parse_challenge};

/// A token endpoint's answer: Docker's `token`, or OAuth2's `access_token`.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// One repository on one registry, with one credential set.
pub struct Session {
    http: reqwest::Client,
    endpoint: String,
    base: String,
    repository: String,
    creds: Option<Credentials>,
    /// The token scopes asked for (`repository:<repo>:pull`, plus push and mount sources
    /// for a push).
    scopes: Vec<String>,
    authorization: Mutex<Option<String>>,
}

impl Session {
    /// A session for `repository` on `endpoint` (`host[:port]`).
    pub fn new(
        opts: &ClientOptions,
        endpoint: &str,
        repository: &str,
        creds: Option<&Credentials>,
    ) -> Result<Session, RegistryError> {
        Ok(Session {
            http: opts.http(endpoint)?,
            endpoint: endpoint.to_string(),
            base: opts.base_url(endpoint),
            repository: repository.to_string(),
            creds: creds.cloned(),
            scopes: vec![format!("repository:{repository}:pull")],
            authorization: Mutex::new(None),
        })
    }

    /// A session that may push to `repository` and mount blobs from `mount_from` (other
    /// repositories of the same registry): tokens are asked for with those scopes.
    pub fn for_push(
        opts: &ClientOptions,
        endpoint: &str,
        repository: &str,
        creds: Option<&Credentials>,
        mount_from: &[String],
    ) -> Result<Session, RegistryError> {
        let mut s = Session::new(opts, endpoint, repository, creds)?;
        s.scopes = std::iter::once(format!("repository:{repository}:pull,push"))
            .chain(
                mount_from
                    .iter()
                    .filter(|r| *r != repository)
                    .map(|r| format!("repository:{r}:pull")),
            )
            .collect();
        Ok(s)
    }

    /// `<scheme>://<endpoint>`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The repository this session is for.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Sends the request `make` builds (with the credential in force), authenticating and
    /// sending it once more on a `401`. `make` is called again for that second try, so a
    /// request with a body builds a fresh one. Returns the answer whatever its status (a
    /// second `401` included); see [`Session::error_of`].
    pub async fn send_with(
        &self,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Attempt> {
        let send = || async {
            let mut req = make(&self.http);
            if let Some(a) = self.current() {
                req = req.header(AUTHORIZATION, a);
            }
            req.send()
                .await
                .map_err(|e| transport_error(e, &self.endpoint))
        };
        let resp = send().await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = challenge_of(&resp);
        drop(resp);
        self.authenticate(challenge).await?;
        send().await
    }

    /// The error an unsuccessful answer means (its body read up to
    /// [`MAX_ERROR_BODY_BYTES`](super::limits::MAX_ERROR_BODY_BYTES)).
    pub async fn error_of(
        &self,
        resp: reqwest::Response,
        reference: &str,
        blob: Option<&str>,
    ) -> Attempt {
        let status = resp.status().as_u16();
        let body = read_prefix(resp, MAX_ERROR_BODY_BYTES).await;
        status_error(status, &body, self.cx(reference), blob)
    }

    /// `<scheme>://<endpoint>/v2/<repository>/<kind>/<reference>`.
    pub fn url(&self, kind: &str, reference: &str) -> String {
        format!("{}/v2/{}/{kind}/{reference}", self.base, self.repository)
    }

    /// The context errors are reported in.
    pub fn cx<'a>(&'a self, reference: &'a str) -> Context<'a> {
        Context {
            registry: &self.endpoint,
            repository: &self.repository,
            reference,
            had_credentials: self.creds.is_some(),
        }
    }

    fn current(&self) -> Option<String> {
        self.authorization
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn send(&self, url: &str, accept: &str) -> Result<reqwest::Response, Attempt> {
        let mut req = self.http.get(url);
        if !accept.is_empty() {
            req = req.header(ACCEPT, accept);
        }
        if let Some(a) = self.current() {
            req = req.header(AUTHORIZATION, a);
        }
        req.send()
            .await
            .map_err(|e| transport_error(e, &self.endpoint))
    }

    /// GETs `url` (authenticating on a `401`) and returns the successful answer, or the
    /// error its status and (bounded) body mean. `blob` names the blob fetched, for errors.
    pub async fn get(
        &self,
        url: &str,
        accept: &str,
        reference: &str,
        blob: Option<&str>,
    ) -> Result<reqwest::Response, Attempt> {
        let mut resp = self.send(url, accept).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            let challenge = challenge_of(&resp);
            drop(resp);
            self.authenticate(challenge).await?;
            resp = self.send(url, accept).await?;
        }
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = read_prefix(resp, MAX_ERROR_BODY_BYTES).await;
        Err(status_error(
            status.as_u16(),
            &body,
            self.cx(reference),
            blob,
        ))
    }

    fn unauthorized(&self) -> Attempt {
        status_error(401, b"", self.cx(""), None)
    }

    async fn authenticate(&self, challenge: Option<Challenge>) -> Result<(), Attempt> {
        let challenge = match challenge {
            Some(c) => Some(c),
            None => {
                let ping = self.send(&format!("{}/v2/", self.base), "").await?;
                challenge_of(&ping)
            }
        };
        let value = match challenge {
            Some(Challenge::Bearer { realm, service }) => self.token(&realm, service).await?,
            Some(Challenge::Basic) | None => match &self.creds {
                Some(c) => basic(c),
                None => return Err(self.unauthorized()),
            },
            Some(Challenge::Other(h)) => {
                return Err(Attempt::Fatal(RegistryError::Protocol {
                    registry: self.endpoint.clone(),
                    message: format!(
                        "unsupported authentication scheme {:?}",
                        h.split_whitespace().next().unwrap_or("")
                    ),
                }));
            }
        };
        *self.authorization.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    /// A bearer token from `realm`, as an `Authorization` value.
    async fn token(&self, realm: &str, service: Option<String>) -> Result<String, Attempt> {
        let mut query: Vec<(&str, String)> =
            self.scopes.iter().map(|s| ("scope", s.clone())).collect();
        if let Some(s) = service {
            query.push(("service", s));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(c) = &self.creds {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| transport_error(e, &self.endpoint))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.unauthorized());
        }
        if !status.is_success() {
            let err = RegistryError::Protocol {
                registry: self.endpoint.clone(),
                message: format!("token endpoint {realm} answered HTTP {}", status.as_u16()),
            };
            return Err(if is_transient_status(status.as_u16()) {
                Attempt::Transient(err)
            } else {
                Attempt::Fatal(err)
            });
        }
        let body = read_capped(resp, MAX_TOKEN_BYTES)
            .await
            .map_err(|e| match e {
                CappedError::TooLarge => Attempt::Fatal(RegistryError::TooLarge {
                    registry: self.endpoint.clone(),
                    what: "token answer",
                    limit: human(MAX_TOKEN_BYTES),
                }),
                CappedError::Read(e) => transport_error(e, &self.endpoint),
            })?;
        let bad = |m: &str| {
            Attempt::Fatal(RegistryError::Protocol {
                registry: self.endpoint.clone(),
                message: format!("token endpoint {realm}: {m}"),
            })
        };
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| bad("its answer is not a token (JSON)"))?;
        let token = answer
            .token
            .filter(|t| !t.is_empty())
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad("its answer holds no token"))?;
        if token.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("the token holds spaces or control characters"));
        }
        Ok(format!("Bearer {token}"))
    }
}

fn basic(c: &Credentials) -> String {
    format!(
        "Basic {}",
        B64.encode(format!("{}:{}", c.username, c.password))
    )
}

fn challenge_of(resp: &reqwest::Response) -> Option<Challenge> {
    resp.headers()
        .get(WWW_AUTHENTICATE)
        .and_then(|h| h.to_str().ok())
        .map(parse_challenge)
}
