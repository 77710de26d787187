//! Platforms in OCI terms (os/architecture/variant), their normalization, containerd's
//! matching rules (plus amd64 v1–v4 levels), and host detection.
//!
//! Owner: the platform stage. Everything above uses [`Platform`] and [`Matcher`] from here.

use serde::{Deserialize, Serialize};

/// An OCI platform, as in an image index entry or an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in OCI terms, e.g. `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for arm, `v8` for arm64, `v3` for amd64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version` (Windows builds; rarely set on Linux).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// `os.features`.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

/// Why a platform string cannot be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {input:?}: {message}")]
pub struct PlatformError {
    /// What was given.
    pub input: String,
    /// What is wrong.
    pub message: String,
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;
    /// Parses `os[/arch[/variant]]` (STUB: the platform stage replaces this with the full
    /// containerd rules and normalization).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError {
                input: s.to_string(),
                message: "expected os/arch[/variant]".into(),
            });
        }
        Ok(Platform {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            ..Default::default()
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// This host's platform, with the best amd64 level / ARM variant the CPU runs
    /// (STUB: the platform stage replaces this with cpuinfo detection).
    pub fn host() -> Platform {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            ..Default::default()
        }
    }
}

/// Picks, among candidate platforms, the best one for a wanted platform, following containerd's
/// ordered fallbacks (STUB: the platform stage replaces the internals; the signatures stay).
#[derive(Debug, Clone)]
pub struct Matcher {
    wanted: Platform,
    strict: bool,
}

impl Matcher {
    /// A matcher with containerd's fallbacks (amd64 v3 also runs v2, v1, …).
    pub fn new(wanted: &Platform) -> Matcher {
        Matcher {
            wanted: wanted.clone(),
            strict: false,
        }
    }

    /// A matcher that accepts only the wanted platform itself (after normalization).
    pub fn strict(wanted: &Platform) -> Matcher {
        Matcher {
            wanted: wanted.clone(),
            strict: true,
        }
    }

    /// The platform asked for.
    pub fn wanted(&self) -> &Platform {
        &self.wanted
    }

    /// Whether `candidate` can be used at all.
    pub fn matches(&self, candidate: &Platform) -> bool {
        let _ = self.strict;
        candidate.os == self.wanted.os && candidate.architecture == self.wanted.architecture
    }

    /// The index of the best candidate (the first among equals), or `None`.
    pub fn best(&self, candidates: &[Platform]) -> Option<usize> {
        candidates.iter().position(|c| self.matches(c))
    }
}

/// The platform to use when the user gives none: `XRUN_DEFAULT_PLATFORM`, then
/// `DOCKER_DEFAULT_PLATFORM`, then the host's.
pub fn default_platform() -> Result<Platform, PlatformError> {
    for var in ["XRUN_DEFAULT_PLATFORM", "DOCKER_DEFAULT_PLATFORM"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v.parse();
            }
        }
    }
    Ok(Platform::host())
}
