//! `/xrun/check`: the pre-flight over HTTP, answering the same JSON report as
//! `xrun check --format json` (through [`crate::engine::Engine::check`]).
//!
//! `POST /xrun/check` takes a JSON body; `GET /xrun/check` the same fields as query
//! parameters (`cmd` repeated for the command). Fields: `image` (required), `command`,
//! `entrypoint`, `platform`, `route` (auto, native, emulated, vm), `require` (native,
//! emulated, vm, any), `no_local`, `host_profiles` and `guest_profile` (files on the
//! service's host; a directory stands for its `*.json`), `vm_kernel`, `pull` (pull what is
//! missing, as `xrun check` does by default; false unless given, so a request never pulls
//! unasked). The answer is 200 with the report whether or not every host
//! meets `require` (its `ok` says); unknown fields and bad values are 400.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde::Deserialize;

use crate::engine::{CheckRequest, Unobserved};
use crate::plan::RouteChoice;
use crate::plan::report::Require;
use crate::registry::PullPolicy;

use super::error::ApiError;
use super::router::{HandlerResult, Request, Router};
use super::{ApiState, blocking, http};

/// Registers `/xrun/check`.
pub fn routes(r: &mut Router) {
    r.add(Method::POST, "/xrun/check", check_post);
    r.add(Method::GET, "/xrun/check", check_get);
}

/// The request, as JSON or query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    image: String,
    #[serde(default)]
    command: Vec<String>,
    entrypoint: Option<String>,
    platform: Option<String>,
    route: Option<String>,
    require: Option<String>,
    #[serde(default)]
    no_local: bool,
    #[serde(default)]
    host_profiles: Vec<PathBuf>,
    guest_profile: Option<PathBuf>,
    vm_kernel: Option<String>,
    #[serde(default)]
    pull: bool,
}

fn parse<T: std::str::FromStr>(what: &str, v: Option<&str>, default: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    let v = v.filter(|v| !v.is_empty()).unwrap_or(default);
    v.parse()
        .map_err(|e| ApiError::bad_request(format!("invalid {what} {v:?}: {e}")))
}

impl CheckBody {
    fn into_request(self) -> Result<CheckRequest, ApiError> {
        if self.image.is_empty() {
            return Err(ApiError::bad_request("image is required"));
        }
        let platform = match self.platform.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(
                p.parse()
                    .map_err(|e| ApiError::bad_request(format!("invalid platform {p:?}: {e}")))?,
            ),
            None => None,
        };
        Ok(CheckRequest {
            image: self.image,
            command: self.command,
            entrypoint: self.entrypoint,
            platform,
            host_profiles: self.host_profiles,
            no_local: self.no_local,
            require: parse::<Require>("require", self.require.as_deref(), "native")?,
            route: parse::<RouteChoice>("route", self.route.as_deref(), "auto")?,
            guest_profile: self.guest_profile,
            vm_kernel: self.vm_kernel,
            rootfs: false,
            config: None,
            pull: if self.pull {
                PullPolicy::Missing
            } else {
                PullPolicy::Never
            },
        })
    }
}

async fn run(s: Arc<ApiState>, body: CheckBody) -> HandlerResult {
    let req = body.into_request()?;
    let engine = s.engine.clone();
    let report = blocking(move || Ok(engine.check(&req, &Unobserved)?)).await?;
    Ok(http::json(StatusCode::OK, &report))
}

async fn check_post(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let body: CheckBody = r.json().await?;
    run(s, body).await
}

async fn check_get(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let q = &r.query;
    let known = [
        "image",
        "cmd",
        "entrypoint",
        "platform",
        "route",
        "require",
        "no_local",
        "host_profile",
        "guest_profile",
        "vm_kernel",
        "pull",
    ];
    let raw = r.parts.uri.query().unwrap_or("");
    if let Some((k, _)) =
        form_urlencoded::parse(raw.as_bytes()).find(|(k, _)| !known.contains(&k.as_ref()))
    {
        return Err(ApiError::bad_request(format!(
            "unknown parameter {k:?} (known: {})",
            known.join(", ")
        )));
    }
    let body = CheckBody {
        image: q.get("image").unwrap_or_default().to_string(),
        command: q.all("cmd").into_iter().map(str::to_string).collect(),
        entrypoint: q.get("entrypoint").map(str::to_string),
        platform: q.get("platform").map(str::to_string),
        route: q.get("route").map(str::to_string),
        require: q.get("require").map(str::to_string),
        no_local: q.bool("no_local", false)?,
        host_profiles: q
            .all("host_profile")
            .into_iter()
            .map(PathBuf::from)
            .collect(),
        guest_profile: q.get("guest_profile").map(PathBuf::from),
        vm_kernel: q.get("vm_kernel").map(str::to_string),
        pull: q.bool("pull", false)?,
    };
    run(s, body).await
}
