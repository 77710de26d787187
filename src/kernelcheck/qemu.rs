//! qemu binaries on this host: qemu-user (`qemu-<arch>-static`, `qemu-<arch>`, and Debian's
//! `/usr/libexec/qemu-binfmt/<arch>-binfmt-P` wrappers) and qemu-system (`qemu-system-<arch>`).
//! Only directory listings and file modes are read.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::profile::TcgLevel;
use super::source::HostSource;

/// Extra directories searched after `PATH`.
pub const EXTRA_DIRS: [&str; 2] = ["/usr/bin", "/usr/libexec/qemu-binfmt"];

/// The OCI arch for a qemu target name (`aarch64` → `arm64`); `None` for targets no OCI
/// image uses.
pub fn oci_arch_of_qemu_target(target: &str) -> Option<&'static str> {
    Some(match target {
        "x86_64" => "amd64",
        "i386" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "ppc64le" => "ppc64le",
        "ppc64" => "ppc64",
        "s390x" => "s390x",
        "mips" => "mips",
        "mipsel" => "mipsle",
        "mips64" => "mips64",
        "mips64el" => "mips64le",
        "loongarch64" => "loong64",
        _ => return None,
    })
}

/// The OCI archs a qemu-system target emulates (`ppc64` runs both ppc64 and ppc64le guests).
fn oci_archs_of_system_target(target: &str) -> &'static [&'static str] {
    match target {
        "x86_64" => &["amd64"],
        "i386" => &["386"],
        "aarch64" => &["arm64"],
        "arm" => &["arm"],
        "riscv64" => &["riscv64"],
        "ppc64" => &["ppc64le", "ppc64"],
        "s390x" => &["s390x"],
        "mips" => &["mips"],
        "mipsel" => &["mipsle"],
        "mips64" => &["mips64"],
        "mips64el" => &["mips64le"],
        "loongarch64" => &["loong64"],
        _ => &[],
    }
}

/// The qemu binaries found: `(qemu_user, qemu_system)`, each OCI arch → host path. Directories
/// are searched in order (`PATH`, then [`EXTRA_DIRS`]); the first directory that has one
/// wins, and within a directory `-static` is preferred (it works inside containers).
pub fn gather(src: &HostSource) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let mut dirs: Vec<PathBuf> = src.path_dirs.clone();
    for d in EXTRA_DIRS {
        let d = PathBuf::from(d);
        if !dirs.contains(&d) {
            dirs.push(d);
        }
    }
    let mut user: BTreeMap<String, String> = BTreeMap::new();
    let mut system: BTreeMap<String, String> = BTreeMap::new();
    for dir in dirs {
        let dir_s = dir.to_string_lossy().trim_end_matches('/').to_string();
        let Ok(names) = src.list(&dir_s) else {
            continue;
        };
        // Candidates in this directory: arch → (rank, path); lower rank wins.
        let mut here_user: BTreeMap<&str, (u8, String)> = BTreeMap::new();
        for name in &names {
            let path = format!("{dir_s}/{name}");
            let (arch, rank): (Option<&str>, u8) =
                if let Some(t) = name.strip_prefix("qemu-system-") {
                    let archs = oci_archs_of_system_target(t);
                    if !archs.is_empty() && is_executable(src, &path) {
                        for a in archs {
                            system.entry(a.to_string()).or_insert_with(|| path.clone());
                        }
                    }
                    continue;
                } else if let Some(t) = name
                    .strip_prefix("qemu-")
                    .and_then(|t| t.strip_suffix("-static"))
                {
                    (oci_arch_of_qemu_target(t), 0)
                } else if let Some(t) = name.strip_prefix("qemu-") {
                    (oci_arch_of_qemu_target(t), 1)
                } else if let Some(t) = name.strip_suffix("-binfmt-P") {
                    (oci_arch_of_qemu_target(t), 2)
                } else {
                    continue;
                };
            let Some(a) = arch else { continue };
            if here_user.get(a).is_some_and(|(r, _)| *r <= rank) {
                continue;
            }
            if is_executable(src, &path) {
                here_user.insert(a, (rank, path));
            }
        }
        for (a, (_, path)) in here_user {
            user.entry(a.to_string()).or_insert(path);
        }
    }
    (user, system)
}

/// The x86-64 level qemu's TCG emulates for amd64 code in qemu `version` (`[major, minor,
/// patch]`), with `-cpu max` (qemu-system) and qemu-user's default CPU alike: v3 from 7.2
/// (AVX/AVX2, FMA, F16C, BMI1/2, MOVBE arrived in TCG then), v2 before (SSE4.2, POPCNT,
/// CX16). No release up to 10.x emulates AVX-512, so none offers v4. Checked against the
/// real thing by `tests/isa_emulation.rs` (a probe that asks the CPU, run under qemu-x86_64).
pub fn tcg_amd64_level_of(version: [u32; 3]) -> u8 {
    if version >= [7, 2, 0] { 3 } else { 2 }
}

/// The highest x86-64 level any qemu's TCG emulates ([`tcg_amd64_level_of`]): what the plan
/// assumes when a profile does not record the level.
pub const TCG_AMD64_LEVEL_MAX: u8 = 3;

/// `major.minor.patch` from `qemu-… --version` output (`qemu-x86_64 version 10.0.2 (Debian …)`,
/// `QEMU emulator version 7.2.0`).
pub fn parse_qemu_version(text: &str) -> Option<[u32; 3]> {
    let line = text.lines().next()?;
    let rest = &line[line.find("version ")? + "version ".len()..];
    let word = rest.split_whitespace().next()?;
    let mut parts = word.split('.').map(|p| {
        p.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
            .parse::<u32>()
            .ok()
    });
    Some([
        parts.next()??,
        parts.next().flatten()?,
        parts.next().flatten().unwrap_or(0),
    ])
}

/// The TCG x86-64 level of the qemu found for amd64 here (qemu-user first: usually static,
/// it answers in a few milliseconds where qemu-system loads dozens of libraries; both come
/// from the same qemu source in distributions), from its `--version` (run only on this
/// machine, never for a recorded host; `None` when no qemu for amd64 is found or it does not
/// answer).
pub fn tcg_amd64_level(
    src: &HostSource,
    user: &BTreeMap<String, String>,
    system: &BTreeMap<String, String>,
) -> Option<TcgLevel> {
    if !src.is_live() {
        return None;
    }
    let qemu = user.get("amd64").or_else(|| system.get("amd64"))?;
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let version = parse_qemu_version(&String::from_utf8_lossy(&out.stdout))?;
    let level = tcg_amd64_level_of(version);
    let shown = format!("{}.{}.{}", version[0], version[1], version[2]);
    Some(TcgLevel {
        level,
        evidence: format!("{qemu} --version: {shown} (TCG emulates up to x86-64-v{level})"),
        qemu_version: shown,
    })
}

/// Whether a host path is a regular file with an execute bit (symlinks followed).
fn is_executable(src: &HostSource, host_path: &str) -> bool {
    std::fs::metadata(src.path(host_path))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions_and_tcg_levels() {
        assert_eq!(
            parse_qemu_version("qemu-x86_64 version 10.0.2 (Debian 1:10.0.2+ds-2)\nCopyright"),
            Some([10, 0, 2])
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 7.2.0 (Debian 1:7.2+dfsg-7)"),
            Some([7, 2, 0])
        );
        assert_eq!(
            parse_qemu_version("QEMU emulator version 8.2"),
            Some([8, 2, 0])
        );
        assert_eq!(parse_qemu_version("no version here"), None);
        assert_eq!(tcg_amd64_level_of([6, 2, 0]), 2);
        assert_eq!(tcg_amd64_level_of([7, 1, 9]), 2);
        assert_eq!(tcg_amd64_level_of([7, 2, 0]), 3);
        assert_eq!(tcg_amd64_level_of([10, 0, 2]), 3);
        assert!(tcg_amd64_level_of([99, 0, 0]) <= TCG_AMD64_LEVEL_MAX);
    }

    #[test]
    fn finds_static_first() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("usr/bin");
        std::fs::create_dir_all(&bin).unwrap();
        for n in [
            "qemu-aarch64",
            "qemu-aarch64-static",
            "qemu-arm",
            "qemu-hexagon-static",
            "qemu-system-x86_64",
            "qemu-img",
        ] {
            let p = bin.join(n);
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(bin.join("qemu-riscv64-static"), "").unwrap(); // not executable
        let src = HostSource {
            root: dir.path().into(),
            path_dirs: vec![],
            ..HostSource::live()
        };
        let (user, system) = gather(&src);
        assert_eq!(user["arm64"], "/usr/bin/qemu-aarch64-static");
        assert_eq!(user["arm"], "/usr/bin/qemu-arm");
        assert!(!user.contains_key("riscv64"));
        assert_eq!(user.len(), 2);
        assert_eq!(system["amd64"], "/usr/bin/qemu-system-x86_64");
    }
}
