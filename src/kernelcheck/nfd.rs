//! The host profile as a node-feature-discovery feature file (NFD's `local` source: one
//! `<namespace>/<name>[=<value>]` line per label, `#` comments; nfd-worker reads the files in
//! `/etc/kubernetes/node-feature-discovery/features.d/`), so a scheduler can place images
//! where they run natively. Labels are documented in `docs/host-profile.md`.

use super::profile::{HostProfile, OptionState};

/// The label namespace and prefix: NFD's own namespace (always allowed by nfd-master), names
/// starting with `xrun.`.
pub const PREFIX: &str = "feature.node.kubernetes.io/xrun.";

/// Modules a container image may ask for (`org.xrun.kernel.modules`) that a scheduler cares
/// about; each present one gets a `module.<name>` label.
pub const MODULES_OF_INTEREST: [&str; 14] = [
    "overlay",
    "br_netfilter",
    "bridge",
    "veth",
    "vxlan",
    "nf_tables",
    "nf_nat",
    "ip_tables",
    "ip_vs",
    "wireguard",
    "tun",
    "fuse",
    "sctp",
    "openvswitch",
];

/// How a module is present: `loaded`, `builtin` (in `modules.builtin`, `/sys/module`, or
/// its option `=y`), `module` (loadable: installed, or `=m` with module support); `None`
/// when absent or not known.
pub fn module_state(p: &HostProfile, name: &str) -> Option<&'static str> {
    let k = &p.kernel;
    let norm = |m: &String| m.replace('-', "_") == name;
    if k.modules_loaded.iter().any(norm) {
        return Some("loaded");
    }
    if k.modules_builtin.iter().any(norm) {
        return Some("builtin");
    }
    if k.modules_supported && k.modules_available.iter().any(norm) {
        return Some("module");
    }
    let option = crate::kernelcheck::module_options::config_option(name)?;
    match k.option(option)? {
        OptionState::Enabled => Some("builtin"),
        OptionState::Module if k.modules_supported && k.modules_available.is_empty() => {
            Some("module")
        }
        _ => None,
    }
}

/// Whether `v` is a valid Kubernetes label value (at most 63 characters, alphanumerics and
/// `-_.` inside, alphanumeric at both ends) — and, with `name`, a valid name part.
pub fn valid_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

/// The feature file for profile `p`: a comment naming the host, then one label per line,
/// sorted by name. Only facts that are known are labelled.
pub fn feature_file(p: &HostProfile) -> String {
    let mut labels: Vec<(String, String)> = Vec::new();
    let mut put = |name: String, value: String| {
        if valid_label_value(&name) && valid_label_value(&value) {
            labels.push((name, value));
        }
    };
    let arch = p.platform.architecture.clone();
    if !arch.is_empty() {
        put("arch".into(), arch.clone());
        put(format!("native.{arch}"), "true".into());
    }
    for a in &p.cpu.compat_arches {
        put(format!("native.{a}"), "true".into());
    }
    if arch == "amd64" && p.cpu.amd64_level > 0 {
        put("amd64-level".into(), p.cpu.amd64_level.to_string());
    }
    if let Some(v) = &p.platform.variant
        && arch != "amd64"
    {
        put("variant".into(), v.clone());
    }
    if let Some(a) = &p.cpu.aarch32 {
        put("aarch32".into(), a.el0.to_string());
    }
    if p.cpu.page_size > 0 {
        put("page-size".into(), p.cpu.page_size.to_string());
    }
    let [major, minor, patch] = p.kernel.version;
    if p.kernel.version != [0, 0, 0] {
        put("kernel-version".into(), format!("{major}.{minor}.{patch}"));
        put("kernel-version.major".into(), major.to_string());
        put("kernel-version.minor".into(), minor.to_string());
    }
    let em = &p.emulation;
    let mut binfmt: Vec<String> = em
        .handlers
        .iter()
        .filter(|h| h.usable_in_containers && em.binfmt_enabled)
        .filter_map(|h| h.arch.clone())
        .collect();
    binfmt.sort();
    binfmt.dedup();
    for a in binfmt {
        put(format!("binfmt.{a}"), "true".into());
    }
    put("kvm".into(), em.kvm_usable.to_string());
    if let Some(t) = &em.tcg_amd64_level {
        put("tcg-amd64-level".into(), t.level.to_string());
    }
    for a in em.qemu_system.keys() {
        put(format!("qemu-system.{a}"), "true".into());
    }
    for m in MODULES_OF_INTEREST {
        if let Some(state) = module_state(p, m) {
            put(format!("module.{m}"), state.into());
        }
    }
    labels.sort();
    let mut out = format!(
        "# xrun host --format nfd: {} (host profile schema {}.{})\n",
        p.name, p.schema_version, p.schema_minor
    );
    for (name, value) in labels {
        out.push_str(&format!("{PREFIX}{name}={value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(name: &str) -> HostProfile {
        let path = format!(
            "{}/tests/data/profiles/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        HostProfile::load(std::path::Path::new(&path)).unwrap()
    }

    fn labels(p: &HostProfile) -> Vec<(String, String)> {
        feature_file(p)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once('=').expect("key=value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn get<'a>(ls: &'a [(String, String)], name: &str) -> Option<&'a str> {
        ls.iter()
            .find(|(k, _)| k.strip_prefix(PREFIX) == Some(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn every_line_is_a_valid_label() {
        for name in [
            "amd64-v2-noavx",
            "amd64-hybrid-kvm-pvm",
            "arm64-graviton-64k",
            "armv7-no-userns",
        ] {
            let p = profile(name);
            let text = feature_file(&p);
            assert!(text.len() < 64 * 1024, "NFD ignores files over 64 kB");
            for (k, v) in labels(&p) {
                let (ns, n) = k.split_once('/').unwrap();
                assert_eq!(ns, "feature.node.kubernetes.io");
                assert!(valid_label_value(n) && !n.is_empty(), "{name}: {k}");
                assert!(valid_label_value(&v), "{name}: {k}={v}");
            }
        }
    }

    #[test]
    fn recorded_hosts() {
        let v2 = labels(&profile("amd64-v2-noavx"));
        assert_eq!(get(&v2, "amd64-level"), Some("2"));
        assert_eq!(get(&v2, "arch"), Some("amd64"));
        assert_eq!(get(&v2, "kvm"), Some("true"));
        assert_eq!(get(&v2, "kernel-version.major"), Some("5"));
        assert_eq!(get(&v2, "page-size"), Some("4096"));
        // arm64 has F, arm and riscv64 handlers do not (no F / disabled).
        assert_eq!(get(&v2, "binfmt.arm64"), Some("true"));
        assert_eq!(get(&v2, "binfmt.arm"), None);
        assert_eq!(get(&v2, "binfmt.riscv64"), None);

        let g = labels(&profile("arm64-graviton-64k"));
        assert_eq!(get(&g, "page-size"), Some("65536"));
        assert_eq!(get(&g, "amd64-level"), None);
        assert_eq!(get(&g, "aarch32"), Some("false"));
        assert_eq!(get(&g, "native.arm"), None);
        assert_eq!(get(&g, "native.arm64"), Some("true"));
        assert_eq!(get(&g, "kvm"), Some("false"));

        let ci = labels(&profile("amd64-hybrid-kvm-pvm"));
        assert_eq!(get(&ci, "kvm"), Some("false"), "kvm_pvm is not usable");
        assert_eq!(get(&ci, "native.386"), Some("true"));
        assert_eq!(get(&ci, "module.overlay"), Some("builtin"));
    }

    #[test]
    fn label_values() {
        assert!(valid_label_value("6.18.44"));
        assert!(valid_label_value(""));
        assert!(!valid_label_value("-x"));
        assert!(!valid_label_value("a/b"));
        assert!(!valid_label_value(&"x".repeat(64)));
    }
}
