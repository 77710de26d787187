//! `state ID`: runc's state JSON (`ociVersion`, `id`, `pid`, `status`, `bundle`, `rootfs`,
//! `created`, `owner`, `annotations`).

use std::collections::HashMap;
use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use super::{OciError, StateRoot};

/// A container's state as runc prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RuncState {
    /// The runtime-spec version.
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The init process's pid on the host (0 once stopped, as runc).
    pub pid: i32,
    /// `creating`, `created`, `running`, `stopped` or `paused`.
    pub status: String,
    /// The bundle directory given to `create`.
    pub bundle: PathBuf,
    /// The root file system (absolute).
    pub rootfs: PathBuf,
    /// Creation time (RFC 3339).
    pub created: String,
    /// The owner (empty for root, as runc).
    pub owner: String,
    /// The spec's annotations.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// runc's word for a status.
pub fn status_word(s: ContainerStatus) -> &'static str {
    match s {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

/// The bundle the caller gave to `create` (an emulated container runs a rewritten copy).
pub fn original_bundle(root: &StateRoot, c: &Container) -> PathBuf {
    std::fs::read_to_string(root.rewritten_bundle(c.id()).join("bundle"))
        .map(|s| PathBuf::from(s.trim_end()))
        .unwrap_or_else(|_| c.bundle().clone())
}

/// The state of container `id`.
pub fn state(root: &StateRoot, id: &str) -> Result<RuncState, OciError> {
    let c = root.load(id)?;
    let bundle = original_bundle(root, &c);
    let spec_root = read_spec_root(c.bundle());
    let rootfs = match spec_root {
        Some(p) if p.is_absolute() => p,
        Some(p) => bundle.join(p),
        None => bundle.join("rootfs"),
    };
    let status = c.status();
    let pid = match status {
        ContainerStatus::Stopped => 0,
        _ => c.pid().map(|p| p.as_raw()).unwrap_or(0),
    };
    let created = c
        .created()
        .and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let owner = match c.state.creator {
        Some(0) | None => String::new(),
        Some(uid) => nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| uid.to_string()),
    };
    Ok(RuncState {
        oci_version: oci_spec::runtime::VERSION.to_string(),
        id: id.to_string(),
        pid,
        status: status_word(status).to_string(),
        bundle,
        rootfs,
        created,
        owner,
        annotations: c.state.annotations.clone().unwrap_or_default(),
    })
}

fn read_spec_root(bundle: &std::path::Path) -> Option<PathBuf> {
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).ok()?;
    spec.root().as_ref().map(|r| r.path().clone())
}

/// The ids under the root (for `list`).
pub fn ids(root: &StateRoot) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(root.dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("state.json").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    out.sort();
    out
}
