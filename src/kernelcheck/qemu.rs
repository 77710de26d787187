//! qemu binaries on this host: qemu-user (`qemu-<arch>-static`, `qemu-<arch>`, and Debian's
//! `/usr/libexec/qemu-binfmt/<arch>-binfmt-P` wrappers) and qemu-system (`qemu-system-<arch>`).
//! Only directory listings and file modes are read.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

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

/// Whether a host path is a regular file with an execute bit (symlinks followed).
fn is_executable(src: &HostSource, host_path: &str) -> bool {
    std::fs::metadata(src.path(host_path))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

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
