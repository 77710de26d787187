//! What the user asked for on the command line, independent of how the image was obtained:
//! [`RunOptions`], [`Volume`], [`Network`], and the parsers for their Docker-style spellings.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RuntimeError;

/// The smallest memory limit accepted, as Docker's (below it the kernel and the runtime's own
/// set-up cannot work).
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Network mode (`--network`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// A new network namespace with only loopback (the default of records made before
    /// networks existed; the CLI's default is `bridge`).
    #[default]
    None,
    /// The host's network namespace.
    Host,
    /// A network of xrun's by name (`bridge`, the default one, or a user network): a
    /// namespace of its own joined through the CNI plugins ([`crate::network`]).
    Named(String),
    /// Another container's network namespace (`container:NAME`; the id once created).
    Container(String),
}

impl Network {
    /// Docker's `NetworkMode` spelling.
    pub fn mode(&self) -> String {
        match self {
            Network::None => "none".into(),
            Network::Host => "host".into(),
            Network::Named(n) => n.clone(),
            Network::Container(c) => format!("container:{c}"),
        }
    }
}

impl std::str::FromStr for Network {
    type Err = RuntimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(Network::None),
            "host" => Ok(Network::Host),
            "" | "default" | "bridge" => Ok(Network::Named(crate::network::DEFAULT_NETWORK.into())),
            other => match other.strip_prefix("container:") {
                Some("") => Err(RuntimeError::BadInput(
                    "invalid --network container: name the container (container:NAME)".into(),
                )),
                Some(c) => Ok(Network::Container(c.to_string())),
                None => Ok(Network::Named(other.to_string())),
            },
        }
    }
}

/// How the container's processes run: natively, or (foreign-architecture binaries) through
/// qemu-user via binfmt_misc. Recorded and shown by `ps`; the emulated route always runs xrun's
/// native init as PID 1 (an emulated PID 1 hangs on SIGPIPE and ignores SIGTERM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecRoute {
    /// Host-architecture binaries.
    #[default]
    Native,
    /// Foreign-architecture binaries through a binfmt_misc handler (qemu-user).
    Emulated,
    /// In a VM with its own kernel: a [`super::machine::Machine`], not the OCI executor.
    Vm,
}

impl ExecRoute {
    /// `native` or `emulated`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExecRoute::Native => "native",
            ExecRoute::Emulated => "emulated",
            ExecRoute::Vm => "vm",
        }
    }
}

/// A bind mount (`-v HOST:CTR[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Absolute, existing host path.
    pub host: PathBuf,
    /// Absolute path inside the container.
    pub container: String,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parses `HOST:CTR[:ro|rw]`; the host path must be absolute and exist.
    pub fn parse(spec: &str) -> Result<Volume, RuntimeError> {
        let bad =
            |why: &str| RuntimeError::BadInput(format!("invalid volume spec {spec:?}: {why}"));
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, ctr, mode) = match parts.as_slice() {
            [h, c] => (*h, *c, None),
            [h, c, m] => (*h, *c, Some(*m)),
            _ => return Err(bad("expected HOST:CONTAINER[:ro]")),
        };
        let read_only = match mode {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(m) => return Err(bad(&format!("unknown mode {m:?} (use ro or rw)"))),
        };
        if !host.starts_with('/') {
            return Err(bad("the host path must be absolute"));
        }
        if !ctr.starts_with('/') || ctr.split('/').any(|c| c == "..") {
            return Err(bad("the container path must be absolute, without '..'"));
        }
        let host = PathBuf::from(host);
        if !host.exists() {
            return Err(RuntimeError::BadInput(format!(
                "invalid volume spec {spec:?}: host path {} does not exist",
                host.display()
            )));
        }
        Ok(Volume {
            host,
            container: ctr.to_string(),
            read_only,
        })
    }
}

/// A `--tmpfs PATH[:OPTIONS]` mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    /// Absolute path inside the container.
    pub path: String,
    /// Mount options (`size=64m,mode=1777`) on top of `rw,nosuid,nodev,noexec` (Docker's).
    pub options: Option<String>,
}

impl Tmpfs {
    /// The default options, as Docker's.
    pub const DEFAULT_OPTIONS: &'static str = "rw,nosuid,nodev,noexec";

    /// Parses `PATH[:OPTIONS]`.
    pub fn parse(spec: &str) -> Result<Tmpfs, RuntimeError> {
        let (path, options) = match spec.split_once(':') {
            Some((p, o)) => (p, Some(o)),
            None => (spec, None),
        };
        let bad = |why: &str| RuntimeError::BadInput(format!("invalid --tmpfs {spec:?}: {why}"));
        if !path.starts_with('/')
            || path.split('/').any(|c| c == "..")
            || path.chars().any(char::is_control)
        {
            return Err(bad("the path must be absolute, without '..'"));
        }
        if let Some(o) = options
            && (o.is_empty() || o.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return Err(bad("bad options"));
        }
        Ok(Tmpfs {
            path: path.to_string(),
            options: options.map(str::to_string),
        })
    }

    /// The mount options: Docker's defaults, then the given ones (later ones win).
    pub fn option_string(&self) -> String {
        match &self.options {
            Some(o) => format!("{},{o}", Self::DEFAULT_OPTIONS),
            None => Self::DEFAULT_OPTIONS.to_string(),
        }
    }

    /// [`Tmpfs::option_string`] as a list.
    pub fn option_list(&self) -> Vec<String> {
        self.option_string()
            .split(',')
            .map(str::to_string)
            .collect()
    }
}

/// Everything about a container that comes from the command line (`run`/`create`), kept in
/// the container's record so `start` can rebuild the bundle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    /// `--name`.
    pub name: Option<String>,
    /// The command after the image (replaces the image's `Cmd`).
    pub command: Vec<String>,
    /// `--entrypoint` (replaces the image's `Entrypoint` and drops its `Cmd`).
    pub entrypoint: Option<String>,
    /// `KEY=VALUE` entries in order (env files first, then `-e`); they override the image's.
    pub env: Vec<String>,
    /// `-v`.
    pub volumes: Vec<Volume>,
    /// `-w`.
    pub workdir: Option<String>,
    /// `-u USER[:GROUP]` (names resolved through the image's /etc/passwd and /etc/group).
    pub user: Option<String>,
    /// `--hostname` (default: the short container id).
    pub hostname: Option<String>,
    /// `--network`.
    pub network: Network,
    /// The rest of the network settings (`-p`, `--ip`, `--dns`, rates…).
    pub net: crate::network::NetOptions,
    /// `--memory` in bytes.
    pub memory: Option<u64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
    /// `--read-only` root file system.
    pub read_only: bool,
    /// `--tmpfs`.
    pub tmpfs: Vec<Tmpfs>,
    /// `--init`: xrun's own init as PID 1.
    pub init: bool,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--runtime PATH`: an external OCI runtime (runc, crun) instead of the in-process one.
    pub runtime: Option<PathBuf>,
    /// Docker's default seccomp profile (on unless turned off).
    pub no_seccomp: bool,
    /// The route (the emulated one forces `--init`).
    pub route: ExecRoute,
    /// Close stdin when the first attached client closes its side (Docker's `StdinOnce`,
    /// set by `docker run -i` without `-d`); otherwise a client leaving keeps stdin open.
    pub stdin_once: bool,
    /// `--label KEY=VALUE` (Docker's labels: kept on the record, shown by inspect, used by
    /// list filters).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl RunOptions {
    /// Checks the values that can be checked without the image.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        if let Some(m) = self.memory
            && m < MIN_MEMORY
        {
            return Err(RuntimeError::BadInput(format!(
                "--memory {m} bytes is below the minimum of 6MB the kernel and runtime accept"
            )));
        }
        if let Some(c) = self.cpus
            && !(c > 0.0 && c.is_finite())
        {
            return Err(RuntimeError::BadInput(format!(
                "--cpus {c} must be above 0"
            )));
        }
        if let Some(p) = self.pids_limit
            && p == 0
        {
            return Err(RuntimeError::BadInput("--pids-limit must not be 0".into()));
        }
        if let Some(name) = &self.name {
            valid_name(name)?;
        }
        if let Some(h) = &self.hostname
            && (h.is_empty() || h.len() > 64 || h.contains(['/', ' ']))
        {
            return Err(RuntimeError::BadInput(format!("invalid --hostname {h:?}")));
        }
        for e in &self.env {
            if e.starts_with('=') || e.is_empty() {
                return Err(RuntimeError::BadInput(format!(
                    "invalid environment entry {e:?}"
                )));
            }
        }
        self.net
            .validate()
            .map_err(|e| RuntimeError::BadInput(e.to_string()))?;
        if matches!(
            self.network,
            Network::None | Network::Host | Network::Container(_)
        ) && (!self.net.ports.is_empty()
            || self.net.ip.is_some()
            || !self.net.aliases.is_empty()
            || self.net.egress_rate.is_some()
            || self.net.ingress_rate.is_some())
        {
            return Err(RuntimeError::BadInput(format!(
                "-p, --ip, --network-alias and the rates need a network of xrun's (bridge or a user network), not --network {}",
                self.network.mode()
            )));
        }
        if let Some(w) = &self.workdir
            && !w.starts_with('/')
        {
            return Err(RuntimeError::BadInput(format!(
                "the working directory {w:?} is not absolute"
            )));
        }
        if let Some(rt) = &self.runtime
            && !is_executable(rt)
        {
            return Err(RuntimeError::BadInput(format!(
                "--runtime {} is not an executable file",
                rt.display()
            )));
        }
        Ok(())
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Checks a container name as Docker does: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn valid_name(name: &str) -> Result<(), RuntimeError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::BadInput(format!(
            "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

/// Parses a Docker memory size: `1024`, `512k`, `64m`, `1g` (binary units, optional `b`).
pub fn parse_memory(s: &str) -> Result<u64, RuntimeError> {
    let bad = || RuntimeError::BadInput(format!("invalid size {s:?}: use e.g. 64m or 1g"));
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    if !(n >= 0.0 && n.is_finite()) {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// Reads a Docker env file: `KEY=VALUE` lines, `#` comments and blank lines skipped, a bare
/// `KEY` takes the value from xrun's own environment (dropped when unset).
pub fn read_env_file(path: &Path) -> Result<Vec<String>, RuntimeError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuntimeError::BadInput(format!("cannot read env file {}: {e}", path.display()))
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.contains('=') {
            out.push(line.to_string());
        } else if let Ok(v) = std::env::var(line) {
            out.push(format!("{line}={v}"));
        }
    }
    Ok(out)
}

/// Expands a `-e` entry: `KEY=VALUE` as is, a bare `KEY` from xrun's own environment.
pub fn expand_env(entry: &str) -> Option<String> {
    if entry.contains('=') {
        Some(entry.to_string())
    } else {
        std::env::var(entry).ok().map(|v| format!("{entry}={v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn volumes() {
        let v = Volume::parse("/tmp:/data:ro").unwrap();
        assert!(v.read_only);
        assert_eq!(v.container, "/data");
        assert!(Volume::parse("/tmp").is_err());
        assert!(Volume::parse("rel:/data").is_err());
        assert!(Volume::parse("/tmp:/data:rx").is_err());
        assert!(Volume::parse("/nonexistent-xrun-path:/data").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("web-1.a_b").is_ok());
        assert!(valid_name("-x").is_err());
        assert!(valid_name("a/b").is_err());
    }
}
