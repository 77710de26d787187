//! xrun's configuration file and the store root, shared by every stage.
//!
//! The file is JSON at `$XRUN_CONFIG`, else `/etc/xrun/config.json`; a missing file means
//! defaults. Command-line flags override it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Default store root, like `/var/lib/docker`.
pub const DEFAULT_ROOT: &str = "/var/lib/xrun";

/// Settings read from the configuration file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case", default)]
pub struct Config {
    /// Registries (`host` or `host:port`) reached over plain HTTP, like Docker's
    /// `insecure-registries`. Loopback hosts are always allowed over HTTP.
    pub insecure_registries: Vec<String>,
    /// `vm-kernel`: the guest image (a reference, as `ci/guest-image` builds and `skopeo copy
    /// --all` publishes) the VM route pulls for the image's architecture and boots, instead
    /// of the local guest; `--vm-kernel REF` overrides it.
    pub vm_kernel: Option<String>,
    /// Registry mirrors: `docker.io` → `127.0.0.1:5000`, like `registry-mirrors`.
    pub registry_mirrors: std::collections::BTreeMap<String, String>,
    /// `bridge-subnet`: the default network's subnet (`--network bridge`, device `xrun0`);
    /// default `10.87.0.0/16`.
    pub bridge_subnet: Option<String>,
}

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON of the expected shape.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
}

impl Config {
    /// The path of the configuration file in force.
    pub fn path() -> PathBuf {
        std::env::var_os("XRUN_CONFIG")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/etc/xrun/config.json"))
    }

    /// Loads the configuration from `path`; a missing file gives the defaults.
    pub fn load_from(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Loads the configuration file in force.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(&Config::path())
    }
}
