//! `xrun check`'s pure parts: which of an image's pulled platforms a host would use, the
//! `--require` gate, and the report (JSON schema v1, documented in `docs/check.md`, and the
//! table).

use serde::{Deserialize, Serialize};

use super::{Reason, ReasonCode, Route, Severity, Verdict};
use crate::kernelcheck::ImageRequirements;
use crate::kernelcheck::profile::HostProfile;
use crate::platform::{Matcher, Platform};

/// The report's schema version.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The least route every host must get (`--require`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Require {
    /// Native only.
    Native,
    /// Native or emulated.
    Emulated,
    /// Native, emulated or vm.
    Vm,
    /// Anything but unrunnable.
    Any,
}

impl std::str::FromStr for Require {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "native" => Ok(Require::Native),
            "emulated" => Ok(Require::Emulated),
            "vm" => Ok(Require::Vm),
            "any" => Ok(Require::Any),
            _ => Err(format!(
                "unknown requirement {s:?} (expected native, emulated, vm or any)"
            )),
        }
    }
}

impl Require {
    /// Whether `route` is at least as good as required (native > emulated > vm).
    pub fn met_by(self, route: &Route) -> bool {
        let min = match self {
            Require::Native => 3,
            Require::Emulated => 2,
            Require::Vm | Require::Any => 1,
        };
        route.rank() >= min
    }
}

/// Which of `available` (the image's platforms in the store) a host would use: the best
/// match for the host's platform (amd64 levels and arm variants fall back as containerd
/// does; `386`/`arm` on a 64-bit host only when the host lists them in `cpu.compat_arches`);
/// when nothing matches and exactly one platform was pulled, that one (it may still run
/// emulated or in a vm); otherwise a `no-matching-platform` verdict.
pub fn select_platform(host: &HostProfile, available: &[Platform]) -> Result<usize, Verdict> {
    let compat = |a: &str| host.cpu.compat_arches.iter().any(|c| c == a);
    let m = Matcher::new(&host.platform)
        .with_386(compat("386"))
        .with_arm32(compat("arm"));
    if let Some(i) = m.best(available) {
        return Ok(i);
    }
    if available.len() == 1 {
        return Ok(0);
    }
    let list: Vec<String> = available.iter().map(|p| p.to_string()).collect();
    Err(Verdict::refuse(
        ReasonCode::NoMatchingPlatform,
        format!(
            "none of the pulled platforms ({}) suits {} ({}); check one with --platform",
            list.join(", "),
            host.name,
            host.platform
        ),
        vec![format!("host platform {}", host.platform)],
    ))
}

/// One image platform that was examined.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageEntry {
    /// The platform (`linux/arm64/v8`).
    pub platform: String,
    /// The manifest digest (empty for `--rootfs`).
    pub manifest_digest: String,
    /// What it needs.
    pub requirements: ImageRequirements,
}

/// One host's row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostEntry {
    /// The profile's name.
    pub name: String,
    /// `this host`, or the profile file.
    pub source: String,
    /// The host's platform.
    pub host_platform: String,
    /// The image platform selected for it (`null` when none).
    pub platform: Option<String>,
    /// Route and reasons.
    pub verdict: Verdict,
    /// Whether the route meets `--require`.
    pub meets_require: bool,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// [`REPORT_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The image as named on the command line.
    pub image: String,
    /// The gate.
    pub require: Require,
    /// Every host meets the gate (exit 0).
    pub ok: bool,
    /// Each image platform examined.
    pub images: Vec<ImageEntry>,
    /// Each host.
    pub hosts: Vec<HostEntry>,
}

fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Blocking => "blocking",
        Severity::Unknown => "unknown",
        Severity::Warning => "warning",
    }
}

fn route_detail(r: &Route) -> String {
    match r {
        Route::Native | Route::Unrunnable => r.name().to_string(),
        Route::Emulated { handler, .. } => format!("emulated ({handler})"),
        Route::Vm { arch, kvm, .. } => {
            format!("vm ({arch}, {})", if *kvm { "kvm" } else { "tcg" })
        }
    }
}

/// One reason as `xrun check` words it: `[route] severity code: message`.
pub fn reason_line(r: &Reason) -> String {
    let route = r
        .route
        .map(|k| format!("{k:?}").to_lowercase())
        .unwrap_or_else(|| "image".into());
    format!(
        "[{route}] {} {}: {}",
        severity(r.severity),
        r.code,
        r.message
    )
}

/// The table form: a header line per image platform, the matrix, then each host's reasons
/// with evidence.
pub fn render_table(rep: &CheckReport) -> String {
    let mut out = String::new();
    for im in &rep.images {
        let cmd = im.requirements.entrypoint.argv.join(" ");
        out.push_str(&format!(
            "image {} {}{} command: {}\n",
            rep.image,
            im.platform,
            if im.manifest_digest.is_empty() {
                String::new()
            } else {
                format!(" {}", short(&im.manifest_digest))
            },
            if cmd.is_empty() { "-".into() } else { cmd }
        ));
    }
    let rows: Vec<[String; 5]> = rep
        .hosts
        .iter()
        .map(|h| {
            let mut codes: Vec<&str> = h
                .verdict
                .reasons
                .iter()
                .filter(|r| r.severity != Severity::Warning || h.verdict.route == Route::Unrunnable)
                .map(|r| r.code.as_str())
                .collect();
            codes.dedup();
            [
                h.name.clone(),
                h.host_platform.clone(),
                h.platform.clone().unwrap_or_else(|| "-".into()),
                route_detail(&h.verdict.route),
                if codes.is_empty() {
                    "-".into()
                } else {
                    codes.join(",")
                },
            ]
        })
        .collect();
    let head = [
        "HOST",
        "HOST PLATFORM",
        "IMAGE PLATFORM",
        "ROUTE",
        "REASONS",
    ];
    let mut w = head.map(str::len);
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 4 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4]]));
    }
    for h in &rep.hosts {
        if h.verdict.reasons.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{} ({}):\n", h.name, h.source));
        for r in &h.verdict.reasons {
            out.push_str(&format!("  {}\n", reason_line(r)));
            for e in &r.evidence {
                out.push_str(&format!("      evidence: {e}\n"));
            }
        }
    }
    out
}

fn short(d: &str) -> String {
    let hex = d.strip_prefix("sha256:").unwrap_or(d);
    hex.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(p: &str, compat: &[&str]) -> HostProfile {
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "name": "h",
            "platform": p.parse::<Platform>().unwrap(),
            "cpu": {"machine": "x", "count": 1, "page_size": 4096, "endianness": "little",
                    "compat_arches": compat},
            "kernel": {"release": "6.1.0", "version": [6, 1, 0], "config_source": null},
            "emulation": {"binfmt_mounted": false, "binfmt_enabled": false,
                          "kvm_present": false, "kvm_usable": false}
        }))
        .unwrap()
    }

    fn plats(list: &[&str]) -> Vec<Platform> {
        list.iter().map(|p| p.parse().unwrap()).collect()
    }

    #[test]
    fn selection() {
        let avail = plats(&["linux/amd64", "linux/arm64", "linux/amd64/v3"]);
        assert_eq!(select_platform(&host("linux/amd64/v4", &[]), &avail), Ok(2));
        assert_eq!(select_platform(&host("linux/amd64/v2", &[]), &avail), Ok(0));
        assert_eq!(select_platform(&host("linux/arm64", &[]), &avail), Ok(1));
        let v = select_platform(&host("linux/riscv64", &[]), &avail).unwrap_err();
        assert_eq!(v.codes(), [ReasonCode::NoMatchingPlatform]);
        // One platform pulled: every host is checked against it.
        assert_eq!(
            select_platform(&host("linux/riscv64", &[]), &plats(&["linux/arm64"])),
            Ok(0)
        );
        // 386 only with the host's say-so.
        let i386 = plats(&["linux/386", "linux/arm64"]);
        assert!(select_platform(&host("linux/amd64", &[]), &i386).is_err());
        assert_eq!(
            select_platform(&host("linux/amd64", &["386"]), &i386),
            Ok(0)
        );
    }

    #[test]
    fn gate() {
        let em = Route::Emulated {
            handler: "q".into(),
            interpreter: "/q".into(),
        };
        assert!(Require::Native.met_by(&Route::Native));
        assert!(!Require::Native.met_by(&em));
        assert!(Require::Emulated.met_by(&em));
        assert!(Require::Any.met_by(&Route::Vm {
            arch: "arm64".into(),
            qemu: "/q".into(),
            kvm: false
        }));
        assert!(!Require::Any.met_by(&Route::Unrunnable));
    }
}
