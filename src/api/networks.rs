//! The network endpoints (`/networks…`): list (filters `name`, `id`, `label`, `driver`),
//! inspect, create, remove, prune, connect and disconnect — each an engine call
//! ([`crate::engine::Engine::create_network`] and its siblings); this file reads the request
//! and shapes Docker's JSON ([`crate::engine::network_json`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engine::{NetworkInfo, network_json};
use crate::network::{CreateNetwork, Subnet};

use super::error::ApiError;
use super::router::{HandlerResult, Request, Router};
use super::{ApiState, blocking, http};

/// Registers the network endpoints.
pub fn routes(r: &mut Router) {
    r.add(Method::GET, "/networks", list);
    r.add(Method::POST, "/networks/create", create);
    r.add(Method::POST, "/networks/prune", prune);
    r.add(Method::GET, "/networks/{id}", inspect);
    r.add(Method::DELETE, "/networks/{id}", remove);
    r.add(Method::POST, "/networks/{id}/connect", connect);
    r.add(Method::POST, "/networks/{id}/disconnect", disconnect);
}

/// A network error as Docker answers it (by kind: 404, 409, 403 for in use).
fn net_error(e: crate::engine::EngineError) -> ApiError {
    ApiError::from(e)
}

/// Docker's network JSON; the implicit default network has no creation time: Docker's zero
/// time then (clients parse it).
fn to_json(info: &NetworkInfo) -> Value {
    let mut v = network_json(info);
    if v["Created"].as_str().is_none_or(str::is_empty) {
        v["Created"] = json!("0001-01-01T00:00:00Z");
    }
    v
}

/// Whether network `info` passes the list `filters` (each key: any of its values).
fn keep(info: &NetworkInfo, filters: &BTreeMap<String, Vec<String>>) -> bool {
    let d = &info.def;
    filters.iter().all(|(k, vals)| {
        vals.iter().any(|v| match k.as_str() {
            "name" => d.name.contains(v.as_str()),
            "id" => d.id.starts_with(v.as_str()),
            "driver" => d.driver == *v,
            "label" => match v.split_once('=') {
                Some((k, want)) => d.labels.get(k).is_some_and(|x| x == want),
                None => d.labels.contains_key(v.as_str()),
            },
            "type" => (v == "builtin") == d.is_default(),
            _ => false,
        })
    })
}

/// The `filters` query as Docker sends it (`{"name": ["x"]}` or `{"name": {"x": true}}`).
fn filters(r: &Request) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
    let Some(raw) = r.query.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filters {raw:?}: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, vals) in v.as_object().into_iter().flatten() {
        if !matches!(k.as_str(), "name" | "id" | "driver" | "label" | "type") {
            return Err(ApiError::bad_request(format!(
                "invalid filter {k:?} (xrun supports name, id, driver, label, type)"
            )));
        }
        let list: Vec<String> = match vals {
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
        };
        out.insert(k.clone(), list);
    }
    Ok(out)
}

async fn list(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let filters = filters(&r)?;
    let engine = s.engine.clone();
    let infos = blocking(move || {
        let mut out = Vec::new();
        for def in engine.list_networks()? {
            out.push(engine.inspect_network(&def.id)?);
        }
        Ok(out)
    })
    .await?;
    let out: Vec<Value> = infos
        .iter()
        .filter(|i| keep(i, &filters))
        .map(to_json)
        .collect();
    Ok(http::json(StatusCode::OK, &out))
}

async fn inspect(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let key = r.param("id").to_string();
    let engine = s.engine.clone();
    let info = blocking(move || engine.inspect_network(&key).map_err(net_error)).await?;
    Ok(http::json(StatusCode::OK, &to_json(&info)))
}

/// `POST /networks/create`'s body (what xrun reads).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    internal: Option<bool>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    labels: Option<BTreeMap<String, String>>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct IpamConfig {
    subnet: Option<String>,
    gateway: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request(m)
}

impl CreateBody {
    fn into_request(self) -> Result<CreateNetwork, ApiError> {
        let name = self
            .name
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("no network name given: set Name"))?;
        match self.driver.as_deref().unwrap_or("") {
            "" | "bridge" => {}
            d => {
                return Err(bad(format!(
                    "network driver {d:?} is not supported by xrun: use bridge"
                )));
            }
        }
        if self.enable_ipv6 == Some(true) {
            return Err(bad("IPv6 networks are not supported by xrun (IPv4 only)"));
        }
        let ipam = self.ipam.unwrap_or_default();
        if let Some(d) = ipam
            .driver
            .as_deref()
            .filter(|d| !d.is_empty() && *d != "default")
        {
            return Err(bad(format!(
                "IPAM driver {d:?} is not supported by xrun: use default"
            )));
        }
        let configs = ipam.config.unwrap_or_default();
        if configs.len() > 1 {
            return Err(bad("one IPAM config (one IPv4 subnet) per network"));
        }
        let (mut subnet, mut gateway) = (None, None);
        if let Some(c) = configs.into_iter().next() {
            if c.ip_range.as_deref().is_some_and(|r| !r.is_empty()) {
                return Err(bad(
                    "IPRange is not supported by xrun: give Subnet (and Gateway)",
                ));
            }
            subnet = c
                .subnet
                .filter(|s| !s.is_empty())
                .map(|s| {
                    s.parse::<Subnet>()
                        .map_err(|e| bad(format!("invalid subnet {s:?}: {e}")))
                })
                .transpose()?;
            gateway = c
                .gateway
                .filter(|g| !g.is_empty())
                .map(|g| {
                    g.parse::<std::net::Ipv4Addr>()
                        .map_err(|_| bad(format!("invalid gateway {g:?}: an IPv4 address")))
                })
                .transpose()?;
        }
        Ok(CreateNetwork {
            name,
            subnet,
            gateway,
            internal: self.internal.unwrap_or(false),
            labels: self.labels.unwrap_or_default(),
        })
    }
}

async fn create(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let body: CreateBody = r.json().await?;
    let req = body.into_request()?;
    let engine = s.engine.clone();
    let def = blocking(move || engine.create_network(&req).map_err(net_error)).await?;
    Ok(http::json(
        StatusCode::CREATED,
        &json!({"Id": def.id, "Warning": ""}),
    ))
}

async fn remove(s: Arc<ApiState>, r: Request) -> HandlerResult {
    let key = r.param("id").to_string();
    let engine = s.engine.clone();
    blocking(move || engine.remove_network(&key).map_err(net_error)).await?;
    Ok(http::no_content(StatusCode::NO_CONTENT))
}

async fn prune(s: Arc<ApiState>, _r: Request) -> HandlerResult {
    let engine = s.engine.clone();
    let removed = blocking(move || Ok(engine.prune_networks()?)).await?;
    Ok(http::json(
        StatusCode::OK,
        &json!({"NetworksDeleted": removed}),
    ))
}

/// `connect`/`disconnect` bodies.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectBody {
    container: Option<String>,
    endpoint_config: Option<EndpointConfig>,
    force: Option<bool>,
}

/// `EndpointSettings` (what xrun reads: the address and aliases).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    /// The requested address.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    /// Names on the network besides the container's.
    pub aliases: Option<Vec<String>>,
}

/// `EndpointSettings.IPAMConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointIpam {
    /// The requested IPv4 address.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: Option<String>,
}

impl EndpointConfig {
    /// The requested address (an empty one is none).
    pub fn ip(&self) -> Result<Option<std::net::Ipv4Addr>, ApiError> {
        self.ipam_config
            .as_ref()
            .and_then(|c| c.ipv4_address.as_deref())
            .filter(|a| !a.is_empty())
            .map(|a| {
                a.parse()
                    .map_err(|_| bad(format!("invalid IPv4Address {a:?}")))
            })
            .transpose()
    }
}

async fn connect(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let net = r.param("id").to_string();
    let body: ConnectBody = r.json().await?;
    let container = body
        .container
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("no container given: set Container"))?;
    let ep = body.endpoint_config.unwrap_or_default();
    let ip = ep.ip()?;
    let aliases = ep.aliases.unwrap_or_default();
    let engine = s.engine.clone();
    blocking(move || {
        engine
            .connect(&net, &container, ip, aliases)
            .map_err(net_error)
    })
    .await?;
    Ok(http::no_content(StatusCode::OK))
}

async fn disconnect(s: Arc<ApiState>, mut r: Request) -> HandlerResult {
    let net = r.param("id").to_string();
    let body: ConnectBody = r.json().await?;
    let _ = body.force;
    let container = body
        .container
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("no container given: set Container"))?;
    let engine = s.engine.clone();
    blocking(move || engine.disconnect(&net, &container).map_err(net_error)).await?;
    Ok(http::no_content(StatusCode::OK))
}
