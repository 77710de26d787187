//! Platforms in OCI terms (os/architecture/variant), their normalization, containerd's
//! matching rules (plus amd64 v1–v4 levels), and host detection.
//!
//! Owner: the platform stage. Everything above uses [`Platform`] and [`Matcher`] from here.
//!
//! - [`normalize`]: canonical spellings (`x86_64` → `amd64`, `aarch64` → `arm64/v8`, …);
//! - [`parse`]: `--platform` specifiers (`linux/arm64/v8`, `arm64`, `amd64/v3`, `linux`);
//! - [`matcher`]: the ordered fallback vector and the pick among an index's entries;
//! - [`host`]: the host's platform from `/proc/cpuinfo` and `uname -m`.

pub mod host;
pub mod matcher;
pub mod normalize;
pub mod parse;

pub use matcher::Matcher;

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
    /// Parses a platform specifier the way containerd does (`linux/arm64/v8`, `arm64`,
    /// `amd64/v3`, `linux`, `windows(10.0.17763)/amd64`), case-insensitively, and normalizes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse::parse(s)
    }
}

impl std::fmt::Display for Platform {
    /// `os/arch[/variant]` of the normalized platform (e.g. `linux/arm64/v8`, `linux/amd64`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.normalize();
        write!(f, "{}/{}", n.os, n.architecture)?;
        if let Some(v) = &n.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The canonical form (see [`normalize`]): lowercase os (`macos` → `darwin`), canonical
    /// architecture and variant (`x86_64` → `amd64`, amd64 `v1` → none, `aarch64` → `arm64/v8`,
    /// `armhf` → `arm/v7`, `i686` → `386`, …), empty `os.version` dropped, `os.features`
    /// sorted and deduplicated. Two platforms are the same when their normal forms are equal.
    pub fn normalize(&self) -> Platform {
        let (architecture, variant) =
            normalize::normalize_arch(&self.architecture, self.variant.as_deref());
        let mut os_features = self.os_features.clone();
        os_features.sort();
        os_features.dedup();
        Platform {
            os: normalize::normalize_os(&self.os),
            architecture,
            variant,
            os_version: self.os_version.clone().filter(|v| !v.is_empty()),
            os_features,
        }
    }

    /// Whether `self` and `other` name the same platform (equal normalized forms).
    pub fn is_equivalent(&self, other: &Platform) -> bool {
        self.normalize() == other.normalize()
    }

    /// For amd64, the x86-64 micro-architecture level (1–4; no variant is 1); otherwise `None`.
    pub fn amd64_level(&self) -> Option<u8> {
        let n = self.normalize();
        if n.architecture != "amd64" {
            return None;
        }
        match n.variant.as_deref() {
            None => Some(1),
            Some(v) => v.strip_prefix('v')?.parse().ok(),
        }
    }

    /// This host's platform, with the best amd64 level / ARM variant the CPU runs (e.g.
    /// `linux/amd64/v3`, `linux/arm64/v8`, `linux/arm/v7`), normalized. Detected once from
    /// `/proc/cpuinfo` and `uname(2)` (see [`host::detect`]), then cached.
    pub fn host() -> Platform {
        static HOST: std::sync::OnceLock<Platform> = std::sync::OnceLock::new();
        HOST.get_or_init(host::detect).clone()
    }
}

/// Describes a list of platforms for messages, e.g. `linux/amd64, linux/arm64/v8, linux/arm/v7`
/// (`none` for an empty list).
pub fn describe(list: &[Platform]) -> String {
    if list.is_empty() {
        return "none".to_string();
    }
    list.iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The platform to use when the user gives none: `XRUN_DEFAULT_PLATFORM`, then
/// `DOCKER_DEFAULT_PLATFORM`, then the host's.
pub fn default_platform() -> Result<Platform, PlatformError> {
    default_platform_from(|var| std::env::var(var).ok())
}

/// [`default_platform`] over any variable lookup (`env` returns a variable's value): the first
/// non-empty of `XRUN_DEFAULT_PLATFORM` and `DOCKER_DEFAULT_PLATFORM`, parsed; else the host's.
pub fn default_platform_from(
    env: impl Fn(&str) -> Option<String>,
) -> Result<Platform, PlatformError> {
    for var in ["XRUN_DEFAULT_PLATFORM", "DOCKER_DEFAULT_PLATFORM"] {
        if let Some(v) = env(var).filter(|v| !v.trim().is_empty()) {
            return v.parse();
        }
    }
    Ok(Platform::host())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap()
    }

    #[test]
    fn display_is_normalized() {
        let raw = |os: &str, arch: &str, v: Option<&str>| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: v.map(str::to_string),
            ..Default::default()
        };
        let table = [
            (raw("Linux", "x86_64", None), "linux/amd64"),
            (raw("linux", "amd64", Some("v1")), "linux/amd64"),
            (raw("linux", "amd64", Some("v4")), "linux/amd64/v4"),
            (raw("linux", "aarch64", None), "linux/arm64/v8"),
            (raw("linux", "arm64", Some("8")), "linux/arm64/v8"),
            (raw("linux", "armhf", None), "linux/arm/v7"),
            (raw("linux", "armel", None), "linux/arm/v6"),
            (raw("linux", "arm", None), "linux/arm/v7"),
            (raw("linux", "i386", None), "linux/386"),
            (raw("macos", "arm64", None), "darwin/arm64/v8"),
            (raw("windows", "amd64", None), "windows/amd64"),
        ];
        for (platform, want) in table {
            assert_eq!(platform.to_string(), want, "{platform:?}");
            // Display output parses back to the same platform.
            assert_eq!(p(want), platform.normalize(), "{want}");
        }
    }

    #[test]
    fn equivalence_and_levels() {
        assert!(p("linux/amd64").is_equivalent(&p("linux/x86_64/v1")));
        assert!(p("linux/arm64").is_equivalent(&p("linux/aarch64/v8")));
        assert!(p("linux/arm").is_equivalent(&p("linux/armhf")));
        assert!(!p("linux/arm/v6").is_equivalent(&p("linux/arm/v7")));
        assert!(!p("linux/amd64/v2").is_equivalent(&p("linux/amd64")));
        assert_eq!(p("linux/amd64").amd64_level(), Some(1));
        assert_eq!(p("linux/amd64/v3").amd64_level(), Some(3));
        assert_eq!(p("linux/arm64").amd64_level(), None);
    }

    #[test]
    fn describe_lists() {
        let list = [p("linux/x86_64"), p("linux/aarch64"), p("linux/armhf")];
        assert_eq!(describe(&list), "linux/amd64, linux/arm64/v8, linux/arm/v7");
        assert_eq!(describe(&[]), "none");
    }

    #[test]
    fn default_platform_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = env(&[
            ("XRUN_DEFAULT_PLATFORM", "linux/arm64"),
            ("DOCKER_DEFAULT_PLATFORM", "linux/arm/v6"),
        ]);
        assert_eq!(default_platform_from(both).unwrap(), p("linux/arm64/v8"));
        let docker = env(&[("DOCKER_DEFAULT_PLATFORM", "linux/arm/v6")]);
        assert_eq!(default_platform_from(docker).unwrap(), p("linux/arm/v6"));
        let empty = env(&[
            ("XRUN_DEFAULT_PLATFORM", ""),
            ("DOCKER_DEFAULT_PLATFORM", "riscv64"),
        ]);
        assert_eq!(default_platform_from(empty).unwrap(), p("linux/riscv64"));
        assert_eq!(default_platform_from(env(&[])).unwrap(), Platform::host());
        let bad = env(&[("XRUN_DEFAULT_PLATFORM", "linux/amd46")]);
        assert_eq!(default_platform_from(bad).unwrap_err().input, "linux/amd46");
    }

    #[test]
    fn serde_names() {
        let json = r#"{"architecture":"arm64","os":"linux","variant":"v8",
            "os.version":"1","os.features":["a"]}"#;
        let got: Platform = serde_json::from_str(json).unwrap();
        assert_eq!(got.os_version.as_deref(), Some("1"));
        assert_eq!(got.os_features, ["a"]);
        let out = serde_json::to_string(&p("linux/amd64")).unwrap();
        assert_eq!(out, r#"{"os":"linux","architecture":"amd64"}"#);
    }
}
