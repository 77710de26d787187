//! Normalization of operating systems, architectures and variants to their canonical OCI
//! spellings, so that equal platforms compare equal.
//!
//! Canonical forms chosen by xrun (containerd's equivalences, one spelling each):
//! - os: lowercase, `macos` → `darwin`, empty → `linux`;
//! - `amd64`: `x86_64`/`x86-64` → `amd64`; variant `v1` (the baseline) is written as no variant,
//!   a bare level `3` becomes `v3`;
//! - `arm64`: `aarch64` → `arm64`; no variant, `8` and `v8` are all written `v8`; `8.2` → `v8.2`,
//!   `v9.0` → `v9`;
//! - `arm`: no variant and `7` → `v7`, `5`/`6`/`8` → `v5`/`v6`/`v8`; `armhf` → `arm/v7`,
//!   `armel` → `arm/v6`, uname spellings `armv7l` etc. → `arm/v7`;
//! - `386`: `i386`…`i686` and `x86` → `386`, no variant;
//! - Debian spellings `ppc64el`, `mips64el`, `mipsel` and the kernel's `loongarch64` map to
//!   `ppc64le`, `mips64le`, `mipsle` and `loong64`; every other architecture passes through
//!   lowercased.

/// Operating systems Go (and thus OCI images) know about.
const KNOWN_OS: &[&str] = &[
    "aix",
    "android",
    "darwin",
    "dragonfly",
    "freebsd",
    "hurd",
    "illumos",
    "ios",
    "js",
    "linux",
    "nacl",
    "netbsd",
    "openbsd",
    "plan9",
    "solaris",
    "wasip1",
    "windows",
    "zos",
];

/// Architectures Go (and thus OCI images) know about, in canonical spelling.
const KNOWN_ARCH: &[&str] = &[
    "386",
    "amd64",
    "amd64p32",
    "arm",
    "armbe",
    "arm64",
    "arm64be",
    "loong64",
    "mips",
    "mipsle",
    "mips64",
    "mips64le",
    "mips64p32",
    "mips64p32le",
    "ppc",
    "ppc64",
    "ppc64le",
    "riscv",
    "riscv64",
    "s390",
    "s390x",
    "sparc",
    "sparc64",
    "wasm",
];

/// Whether `os` (already normalized) is an operating system OCI images use.
pub fn is_known_os(os: &str) -> bool {
    KNOWN_OS.contains(&os)
}

/// Whether `arch` (already normalized) is an architecture OCI images use.
pub fn is_known_arch(arch: &str) -> bool {
    KNOWN_ARCH.contains(&arch)
}

/// The canonical spelling of an operating system name.
pub fn normalize_os(os: &str) -> String {
    let os = os.trim().to_ascii_lowercase();
    match os.as_str() {
        "" => "linux".to_string(),
        "macos" => "darwin".to_string(),
        _ => os,
    }
}

/// `8` → `v8`, `v8` → `v8`, `` → ``: adds the `v` prefix to a variant that starts with a digit.
fn with_v(variant: &str) -> String {
    if variant.starts_with(|c: char| c.is_ascii_digit()) {
        format!("v{variant}")
    } else {
        variant.to_string()
    }
}

/// The canonical architecture and variant for an architecture name and optional variant.
pub fn normalize_arch(arch: &str, variant: Option<&str>) -> (String, Option<String>) {
    let arch = arch.trim().to_ascii_lowercase();
    let variant = variant
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let some = |v: &str| Some(v.to_string());
    match arch.as_str() {
        "386" | "i386" | "i486" | "i586" | "i686" | "x86" => ("386".into(), None),
        "amd64" | "x86_64" | "x86-64" => {
            let v = with_v(&variant);
            let v = match v.as_str() {
                "" | "v1" => None,
                _ => Some(v),
            };
            ("amd64".into(), v)
        }
        "arm64" | "aarch64" => {
            let v = with_v(&variant);
            let v = match v.as_str() {
                "" | "v8" | "v8.0" => "v8".to_string(),
                other => other.strip_suffix(".0").unwrap_or(other).to_string(),
            };
            ("arm64".into(), Some(v))
        }
        "armhf" => ("arm".into(), some("v7")),
        "armel" => ("arm".into(), some("v6")),
        "arm" => {
            let v = match variant.as_str() {
                "" => "v7".to_string(),
                other => with_v(other),
            };
            ("arm".into(), Some(v))
        }
        // uname(2) spellings of 32-bit ARM: armv5tel, armv6l, armv7l, armv8l.
        a if variant.is_empty()
            && a.len() >= 5
            && a.starts_with("armv")
            && a.as_bytes()[4].is_ascii_digit() =>
        {
            ("arm".into(), Some(format!("v{}", &a[4..5])))
        }
        "ppc64el" => ("ppc64le".into(), opt(variant)),
        "mips64el" => ("mips64le".into(), opt(variant)),
        "mipsel" => ("mipsle".into(), opt(variant)),
        "loongarch64" => ("loong64".into(), opt(variant)),
        _ => (arch, opt(variant)),
    }
}

/// `""` → `None`, anything else → `Some`.
fn opt(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_table() {
        // (arch, variant) -> (arch, variant)
        let table: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            ("x86_64", None, "amd64", None),
            ("X86_64", None, "amd64", None),
            ("x86-64", None, "amd64", None),
            ("amd64", Some("v1"), "amd64", None),
            ("amd64", Some(""), "amd64", None),
            ("amd64", Some("1"), "amd64", None),
            ("amd64", Some("V3"), "amd64", Some("v3")),
            ("amd64", Some("4"), "amd64", Some("v4")),
            ("aarch64", None, "arm64", Some("v8")),
            ("AArch64", None, "arm64", Some("v8")),
            ("arm64", Some("8"), "arm64", Some("v8")),
            ("arm64", Some("v8"), "arm64", Some("v8")),
            ("arm64", Some("v8.0"), "arm64", Some("v8")),
            ("arm64", Some("8.2"), "arm64", Some("v8.2")),
            ("arm64", Some("v8.2"), "arm64", Some("v8.2")),
            ("arm64", Some("v9"), "arm64", Some("v9")),
            ("arm64", Some("v9.0"), "arm64", Some("v9")),
            ("armhf", None, "arm", Some("v7")),
            ("armhf", Some("v6"), "arm", Some("v7")),
            ("armel", None, "arm", Some("v6")),
            ("arm", None, "arm", Some("v7")),
            ("arm", Some("7"), "arm", Some("v7")),
            ("arm", Some("5"), "arm", Some("v5")),
            ("arm", Some("6"), "arm", Some("v6")),
            ("arm", Some("8"), "arm", Some("v8")),
            ("arm", Some("v6"), "arm", Some("v6")),
            ("armv7l", None, "arm", Some("v7")),
            ("armv6l", None, "arm", Some("v6")),
            ("armv5tel", None, "arm", Some("v5")),
            ("armv8l", None, "arm", Some("v8")),
            ("i386", None, "386", None),
            ("i486", None, "386", None),
            ("i586", None, "386", None),
            ("i686", None, "386", None),
            ("x86", None, "386", None),
            ("386", None, "386", None),
            ("ppc64le", None, "ppc64le", None),
            ("ppc64el", None, "ppc64le", None),
            ("s390x", None, "s390x", None),
            ("riscv64", None, "riscv64", None),
            ("mips64le", None, "mips64le", None),
            ("mips64el", None, "mips64le", None),
            ("loong64", None, "loong64", None),
            ("loongarch64", None, "loong64", None),
        ];
        for (arch, variant, want_arch, want_variant) in table {
            let got = normalize_arch(arch, *variant);
            assert_eq!(
                got,
                (want_arch.to_string(), want_variant.map(str::to_string)),
                "normalize_arch({arch:?}, {variant:?})"
            );
        }
    }

    #[test]
    fn os_table() {
        for (os, want) in [
            ("linux", "linux"),
            ("Linux", "linux"),
            ("WINDOWS", "windows"),
            ("macos", "darwin"),
            ("MacOS", "darwin"),
            ("darwin", "darwin"),
            ("", "linux"),
        ] {
            assert_eq!(normalize_os(os), want, "normalize_os({os:?})");
        }
    }

    #[test]
    fn known_lists() {
        assert!(is_known_os("linux") && is_known_os("windows") && is_known_os("darwin"));
        assert!(!is_known_os("amd64") && !is_known_os("linx"));
        for a in [
            "amd64", "arm64", "arm", "386", "ppc64le", "s390x", "riscv64", "loong64",
        ] {
            assert!(is_known_arch(a), "{a}");
        }
        assert!(!is_known_arch("linux") && !is_known_arch("amd46"));
    }
}
