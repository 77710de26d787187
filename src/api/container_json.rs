//! Docker's container shapes: the create request body (`Config` + `HostConfig`) into an
//! engine [`ContainerSpec`], and a record out as inspect's `ContainerJSON` and list's
//! `ContainerSummary` (plus xrun's platform, route and reasons).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::engine::{ContainerSpec, ImageSource};
use crate::registry::PullPolicy;
use crate::runtime::{ContainerRecord, RunOptions, Status, Volume, state};

use super::container_net::{NetRequest, NetworkingConfig, port_bindings};
use super::error::ApiError;

/// A string or a list of strings (`Cmd` and `Entrypoint` take both).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StrOrList {
    /// `"sh -c x"`: split on white space.
    Str(String),
    /// `["sh", "-c", "x"]`.
    List(Vec<String>),
}

impl StrOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StrOrList::Str(s) => s.split_whitespace().map(String::from).collect(),
            StrOrList::List(l) => l,
        }
    }
}

/// The body of `POST /containers/create`: the container's `Config` with its `HostConfig`.
/// What xrun does not read is ignored (see `docs/api.md`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateBody {
    /// The image reference.
    pub image: Option<String>,
    /// The command (replaces the image's `Cmd`).
    pub cmd: Option<StrOrList>,
    /// The entrypoint (replaces the image's `Entrypoint` and drops its `Cmd`).
    pub entrypoint: Option<StrOrList>,
    /// `KEY=VALUE` entries.
    pub env: Option<Vec<String>>,
    /// The working directory.
    pub working_dir: Option<String>,
    /// `USER[:GROUP]`.
    pub user: Option<String>,
    /// The hostname.
    pub hostname: Option<String>,
    /// Allocate a terminal.
    pub tty: Option<bool>,
    /// Keep stdin open.
    pub open_stdin: Option<bool>,
    /// Close stdin when the first attached client closes its side.
    pub stdin_once: Option<bool>,
    /// Labels.
    pub labels: Option<BTreeMap<String, String>>,
    /// `"80/tcp": {}`: published with `PublishAllPorts`.
    pub exposed_ports: Option<BTreeMap<String, Value>>,
    /// The host side.
    pub host_config: Option<HostConfig>,
    /// The networks' endpoint settings (address, aliases).
    pub networking_config: Option<NetworkingConfig>,
}

/// The part of `HostConfig` xrun reads.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    /// `HOST:CONTAINER[:ro]` bind mounts.
    pub binds: Option<Vec<String>>,
    /// `Mounts` (only `bind` ones).
    pub mounts: Option<Vec<MountSpec>>,
    /// Memory limit in bytes (0: none).
    pub memory: Option<i64>,
    /// CPU quota in units of 1e-9 CPUs (0: none).
    pub nano_cpus: Option<i64>,
    /// CFS period (with `CpuQuota`, another way to say `NanoCpus`).
    pub cpu_period: Option<i64>,
    /// CFS quota.
    pub cpu_quota: Option<i64>,
    /// Process limit (0 or -1: none).
    pub pids_limit: Option<i64>,
    /// Remove the container when it exits.
    pub auto_remove: Option<bool>,
    /// Read-only root file system.
    pub readonly_rootfs: Option<bool>,
    /// Run an init as PID 1.
    pub init: Option<bool>,
    /// `default`/`bridge`, `none`, `host`, a network's name, `container:NAME`.
    pub network_mode: Option<String>,
    /// Refused.
    pub privileged: Option<bool>,
    /// Published ports: `"80/tcp": [{"HostIp", "HostPort"}]`.
    pub port_bindings: Option<BTreeMap<String, Value>>,
    /// Publish every exposed port on a free host port.
    pub publish_all_ports: Option<bool>,
    /// Name servers.
    pub dns: Option<Vec<String>>,
    /// DNS search domains.
    pub dns_search: Option<Vec<String>>,
    /// resolv.conf options.
    pub dns_options: Option<Vec<String>>,
    /// `host:ip` lines for /etc/hosts (`host-gateway` allowed).
    pub extra_hosts: Option<Vec<String>>,
    /// `no` only.
    pub restart_policy: Option<RestartPolicy>,
}

/// One entry of `HostConfig.Mounts`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    /// `bind` (others are refused).
    #[serde(rename = "Type")]
    pub kind: Option<String>,
    /// The host path.
    pub source: Option<String>,
    /// The container path.
    pub target: Option<String>,
    /// Read-only.
    pub read_only: Option<bool>,
}

/// `HostConfig.RestartPolicy`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    /// `""` or `no` (others are refused).
    pub name: Option<String>,
}

fn bad(m: impl Into<String>) -> ApiError {
    ApiError::bad_request(m)
}

impl CreateBody {
    /// The engine's request: `name` and `platform` come from the query. The image is never
    /// pulled here (a missing image is a 404, so clients pull it and create again).
    pub fn into_spec(
        self,
        name: Option<String>,
        platform: Option<&str>,
    ) -> Result<ContainerSpec, ApiError> {
        let image = self
            .image
            .filter(|i| !i.trim().is_empty())
            .ok_or_else(|| bad("no image given: set Config.Image"))?;
        let hc = self.host_config.unwrap_or_default();
        if hc.privileged == Some(true) {
            return Err(bad(
                "privileged containers are refused by xrun: give the container only what it needs (binds, devices are not supported either)",
            ));
        }
        if let Some(p) = hc.restart_policy.as_ref().and_then(|r| r.name.as_deref())
            && !p.is_empty()
            && p != "no"
        {
            return Err(bad(format!(
                "restart policy {p:?} is not supported by xrun: use no"
            )));
        }
        let (network, net) = NetRequest {
            mode: hc.network_mode.clone(),
            port_bindings: hc.port_bindings.clone(),
            publish_all: hc.publish_all_ports.unwrap_or(false),
            exposed: self.exposed_ports,
            dns: hc.dns.clone().unwrap_or_default(),
            dns_search: hc.dns_search.clone().unwrap_or_default(),
            dns_options: hc.dns_options.clone().unwrap_or_default(),
            extra_hosts: hc.extra_hosts.clone().unwrap_or_default(),
            networking: self.networking_config,
        }
        .into_settings()?;
        let mut volumes = Vec::new();
        for b in hc.binds.unwrap_or_default() {
            volumes.push(Volume::parse(&b).map_err(|e| bad(e.to_string()))?);
        }
        for m in hc.mounts.unwrap_or_default() {
            match m.kind.as_deref() {
                Some("bind") => {}
                other => {
                    return Err(bad(format!(
                        "mount type {:?} is not supported: use bind mounts",
                        other.unwrap_or("")
                    )));
                }
            }
            let (Some(src), Some(dst)) = (m.source, m.target) else {
                return Err(bad("a bind mount needs Source and Target"));
            };
            let spec = if m.read_only == Some(true) {
                format!("{src}:{dst}:ro")
            } else {
                format!("{src}:{dst}")
            };
            volumes.push(Volume::parse(&spec).map_err(|e| bad(e.to_string()))?);
        }
        let cpus = match (hc.nano_cpus, hc.cpu_quota, hc.cpu_period) {
            (Some(n), _, _) if n > 0 => Some(n as f64 / 1e9),
            (_, Some(q), Some(p)) if q > 0 && p > 0 => Some(q as f64 / p as f64),
            (_, Some(q), _) if q > 0 => Some(q as f64 / 100_000.0),
            _ => None,
        };
        let (entrypoint, mut command) = match self.entrypoint.map(StrOrList::into_vec) {
            Some(ep) if !ep.is_empty() => (Some(ep[0].clone()), ep[1..].to_vec()),
            _ => (None, Vec::new()),
        };
        command.extend(self.cmd.map(StrOrList::into_vec).unwrap_or_default());
        let tty = self.tty.unwrap_or(false);
        let options = RunOptions {
            name: name
                .map(|n| n.trim_start_matches('/').to_string())
                .filter(|n| !n.is_empty()),
            command,
            entrypoint,
            env: self.env.unwrap_or_default(),
            volumes,
            workdir: self.working_dir.filter(|w| !w.is_empty()),
            user: self.user.filter(|u| !u.is_empty()),
            hostname: self.hostname.filter(|h| !h.is_empty()),
            network,
            net,
            memory: hc.memory.filter(|m| *m > 0).map(|m| m as u64),
            cpus,
            pids_limit: hc.pids_limit.filter(|p| *p > 0),
            read_only: hc.readonly_rootfs.unwrap_or(false),
            init: hc.init.unwrap_or(false),
            tty,
            interactive: self.open_stdin.unwrap_or(false),
            stdin_once: self.stdin_once.unwrap_or(false),
            auto_remove: hc.auto_remove.unwrap_or(false),
            labels: self.labels.unwrap_or_default(),
            ..Default::default()
        };
        let mut spec = ContainerSpec::new(ImageSource::Reference(image), options);
        spec.pull = PullPolicy::Never;
        spec.platform = platform
            .filter(|p| !p.is_empty())
            .map(str::parse)
            .transpose()
            .map_err(|e: crate::platform::PlatformError| bad(e.to_string()))?;
        Ok(spec)
    }
}

/// RFC 3339 → Unix seconds (0 when it does not parse).
fn unix(t: &str) -> i64 {
    OffsetDateTime::parse(t, &Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(0)
}

/// Docker's state name: created, running, exited.
pub fn state_name(s: &Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited(_) | Status::Unknown => "exited",
    }
}

/// `ps`'s status line: `Up 5 seconds`, `Exited (0) 3 seconds ago`, `Created`.
pub fn status_line(r: &ContainerRecord, s: &Status) -> String {
    match s {
        Status::Created => "Created".into(),
        Status::Running => format!(
            "Up {}",
            state::human_since(r.started.as_deref().unwrap_or(&r.created))
        ),
        Status::Exited(code) => format!(
            "Exited ({code}) {} ago",
            state::human_since(r.finished.as_deref().unwrap_or(&r.created))
        ),
        Status::Unknown => format!(
            "Exited (-1) {} ago",
            state::human_since(r.finished.as_deref().unwrap_or(&r.created))
        ),
    }
}

fn image_platform(r: &ContainerRecord) -> Value {
    match &r.platform {
        Some(p) => json!(p),
        None => Value::Null,
    }
}

fn mounts(r: &ContainerRecord) -> Value {
    r.options
        .volumes
        .iter()
        .map(|v| {
            json!({
                "Type": "bind",
                "Source": v.host,
                "Destination": v.container,
                "Mode": if v.read_only { "ro" } else { "" },
                "RW": !v.read_only,
                "Propagation": "rprivate",
            })
        })
        .collect()
}

fn network_mode(r: &ContainerRecord) -> String {
    r.options.network.mode()
}

/// xrun's part of inspect and list: the image platform, the route and the reasons.
fn xrun_part(r: &ContainerRecord) -> Value {
    json!({
        "Platform": image_platform(r),
        "Route": r.route,
        "Reasons": r.reasons,
    })
}

/// `GET /containers/{id}/json`: Docker's `ContainerJSON`, plus `Xrun`.
/// `network_settings`: the engine's [`crate::engine::Engine::network_settings`] of `r`.
pub fn inspect(r: &ContainerRecord, network_settings: Value) -> Value {
    let status = r.status();
    let running = status == Status::Running;
    let exit_code = match status {
        Status::Exited(c) => c,
        Status::Unknown => -1,
        _ => 0,
    };
    let pid = if running {
        r.pid.map(|p| p.pid).unwrap_or(0)
    } else {
        0
    };
    let cfg = r.image.config.config().as_ref();
    let image_env = cfg.and_then(|c| c.env().clone()).unwrap_or_default();
    let mut env = image_env;
    env.extend(r.options.env.iter().cloned());
    let (path, args) = match r.command.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (String::new(), Vec::new()),
    };
    let entrypoint: Value = match &r.options.entrypoint {
        Some(e) => json!([e]),
        None => json!(cfg.and_then(|c| c.entrypoint().clone())),
    };
    let cmd: Value = if r.options.command.is_empty() {
        json!(cfg.and_then(|c| c.cmd().clone()))
    } else {
        json!(r.options.command)
    };
    let never = "0001-01-01T00:00:00Z";
    let mut v = json!({
        "Id": r.id,
        "Created": r.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": state_name(&status),
            "Running": running,
            "Paused": false,
            "Restarting": false,
            "OOMKilled": false,
            "Dead": false,
            "Pid": pid,
            "ExitCode": exit_code,
            "Error": "",
            "StartedAt": r.started.as_deref().unwrap_or(never),
            "FinishedAt": r.finished.as_deref().unwrap_or(never),
        },
        "Image": r.image.name,
        "LogPath": "",
        "Name": format!("/{}", r.name),
        "RestartCount": 0,
        "Driver": "overlay",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "Mounts": mounts(r),
    });
    let rest = json!({
        "HostConfig": {
            "Binds": r.options.volumes.iter().map(|v| format!("{}:{}{}", v.host.display(), v.container, if v.read_only { ":ro" } else { "" })).collect::<Vec<_>>(),
            "NetworkMode": network_mode(r),
            "AutoRemove": r.options.auto_remove,
            "ReadonlyRootfs": r.options.read_only,
            "Init": r.options.init,
            "Memory": r.options.memory.unwrap_or(0),
            "NanoCpus": r.options.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
            "PidsLimit": r.options.pids_limit,
            "Privileged": false,
            "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {}},
            "PortBindings": port_bindings(r),
            "PublishAllPorts": false,
            "Dns": r.options.net.dns,
            "DnsSearch": r.options.net.dns_search,
            "DnsOptions": r.options.net.dns_options,
            "ExtraHosts": r.options.net.add_hosts,
        },
        "Config": {
            "Hostname": r.options.hostname.clone().unwrap_or_else(|| r.short_id().to_string()),
            "Domainname": "",
            "User": r.options.user.clone().unwrap_or_default(),
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": r.options.tty,
            "OpenStdin": r.options.interactive,
            "StdinOnce": r.options.stdin_once,
            "Env": env,
            "Cmd": cmd,
            "Image": r.image.name,
            "WorkingDir": r.options.workdir.clone().unwrap_or_default(),
            "Entrypoint": entrypoint,
            "Labels": r.options.labels,
        },
        "NetworkSettings": network_settings,
        "GraphDriver": {"Name": "overlay", "Data": null},
        "Xrun": xrun_part(r),
    });
    if let (Some(m), Value::Object(rest)) = (v.as_object_mut(), rest) {
        m.extend(rest);
    }
    v
}

/// One entry of `GET /containers/json`: Docker's `ContainerSummary`, plus `Xrun`.
/// `network_settings`: as for [`inspect`].
pub fn summary(r: &ContainerRecord, network_settings: &Value) -> Value {
    let status = r.status();
    json!({
        "Id": r.id,
        "Names": [format!("/{}", r.name)],
        "Image": r.image.name,
        "ImageID": "",
        "Command": r.command.join(" "),
        "Created": unix(&r.created),
        "Ports": super::container_net::summary_ports(network_settings),
        "Labels": r.options.labels,
        "State": state_name(&status),
        "Status": status_line(r, &status),
        "HostConfig": {"NetworkMode": network_mode(r)},
        "NetworkSettings": {"Networks": network_settings["Networks"]},
        "Mounts": mounts(r),
        "Xrun": xrun_part(r),
    })
}

/// The `filters` of `GET /containers/json`: `{"name": ["x"]}` (or the older
/// `{"name": {"x": true}}`).
#[derive(Debug, Default)]
pub struct Filters(BTreeMap<String, Vec<String>>);

/// The filters `GET /containers/json` understands.
const FILTERS: &[&str] = &["id", "name", "label", "status", "ancestor", "exited"];

impl Filters {
    /// Parses the query's `filters` value; an unknown filter is a 400.
    pub fn parse(q: Option<&str>) -> Result<Filters, ApiError> {
        let Some(q) = q.filter(|q| !q.trim().is_empty()) else {
            return Ok(Filters::default());
        };
        let v: BTreeMap<String, Value> =
            serde_json::from_str(q).map_err(|e| bad(format!("invalid filters {q:?}: {e}")))?;
        let mut out = BTreeMap::new();
        for (k, v) in v {
            if !FILTERS.contains(&k.as_str()) {
                return Err(bad(format!(
                    "invalid filter {k:?}: xrun filters containers by {}",
                    FILTERS.join(", ")
                )));
            }
            let values: Vec<String> = match v {
                Value::Array(a) => a
                    .into_iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect(),
                Value::Object(o) => o
                    .into_iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(k, _)| k)
                    .collect(),
                Value::String(s) => vec![s],
                _ => return Err(bad(format!("invalid value for filter {k:?}"))),
            };
            out.insert(k, values);
        }
        Ok(Filters(out))
    }

    /// Whether `r` passes every filter (values of one filter are alternatives, but every
    /// `label` must hold, as Docker).
    pub fn matches(&self, r: &ContainerRecord) -> bool {
        let status = r.status();
        self.0.iter().all(|(k, values)| {
            let label = |v: &String| match v.split_once('=') {
                Some((k, want)) => r.options.labels.get(k).is_some_and(|x| x == want),
                None => r.options.labels.contains_key(v),
            };
            if k == "label" {
                return values.iter().all(label);
            }
            values.is_empty()
                || values.iter().any(|v| match k.as_str() {
                    "id" => r.id.starts_with(v.as_str()),
                    "name" => r.name.contains(v.trim_start_matches('/')),
                    "status" => state_name(&status) == v,
                    "ancestor" => {
                        r.image.name == *v
                            || r.image.name.strip_suffix(":latest") == Some(v.as_str())
                            || v.strip_suffix(":latest") == Some(r.image.name.as_str())
                    }
                    "exited" => matches!(status, Status::Exited(c) if c.to_string() == *v),
                    _ => false,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::options::Network;

    fn body(v: Value) -> Result<ContainerSpec, ApiError> {
        serde_json::from_value::<CreateBody>(v)
            .unwrap()
            .into_spec(Some("/web".into()), Some("linux/arm64"))
    }

    #[test]
    fn a_create_body_becomes_a_spec() {
        let s = body(json!({
            "Image": "busybox", "Cmd": ["sh", "-c", "true"], "Env": ["A=1"], "Tty": true,
            "OpenStdin": true, "Labels": {"a": "b"}, "Entrypoint": null,
            "HostConfig": {"Memory": 67108864, "NanoCpus": 500000000, "PidsLimit": 0,
                           "AutoRemove": true, "ReadonlyRootfs": true, "Init": null,
                           "NetworkMode": "default", "Privileged": false, "PortBindings": {}}
        }))
        .unwrap();
        let o = &s.options;
        assert_eq!(o.name.as_deref(), Some("web"));
        assert_eq!(o.command, ["sh", "-c", "true"]);
        assert_eq!(o.memory, Some(64 << 20));
        assert_eq!(o.cpus, Some(0.5));
        assert_eq!(o.pids_limit, None);
        assert!(o.auto_remove && o.read_only && o.tty && o.interactive && !o.init);
        assert_eq!(o.network, Network::Named("bridge".into()));
        assert_eq!(o.labels["a"], "b");
        assert_eq!(s.pull, PullPolicy::Never);
        assert_eq!(s.platform.unwrap().architecture, "arm64");
    }

    #[test]
    fn entrypoint_lists_split_into_entrypoint_and_command() {
        let s =
            body(json!({"Image": "b", "Entrypoint": ["sh", "-c"], "Cmd": ["echo hi"]})).unwrap();
        assert_eq!(s.options.entrypoint.as_deref(), Some("sh"));
        assert_eq!(s.options.command, ["-c", "echo hi"]);
    }

    #[test]
    fn refusals_are_clear() {
        let e = body(json!({"Image": "b", "HostConfig": {"Privileged": true}})).unwrap_err();
        assert!(e.message.contains("privileged"), "{}", e.message);
        let e = body(json!({"HostConfig": {}})).unwrap_err();
        assert!(e.message.contains("no image"), "{}", e.message);
        let e =
            body(json!({"Image": "b", "HostConfig": {"NetworkMode": "container:"}})).unwrap_err();
        assert!(e.message.contains("container:NAME"), "{}", e.message);
        let e = body(
            json!({"Image": "b", "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": "x"}]}}}),
        )
        .unwrap_err();
        assert!(e.message.contains("HostPort"));
        let e = body(
            json!({"Image": "b", "HostConfig": {"Mounts": [{"Type": "volume", "Target": "/x"}]}}),
        )
        .unwrap_err();
        assert!(e.message.contains("volume"));
    }

    #[test]
    fn filters_read_both_shapes_and_refuse_unknown_ones() {
        let f = Filters::parse(Some(r#"{"label":["a=b"],"status":{"running":true}}"#)).unwrap();
        assert_eq!(f.0["label"], ["a=b"]);
        assert_eq!(f.0["status"], ["running"]);
        assert!(Filters::parse(Some(r#"{"volume":["x"]}"#)).is_err());
        assert!(Filters::parse(Some("{not json")).is_err());
        assert!(Filters::parse(None).unwrap().0.is_empty());
    }
}
