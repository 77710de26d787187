//! xrun's image labels (config `Labels`, then manifest annotations):
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `org.xrun.kernel.min` | `5.15`, `6.1.0` | the kernel must be at least this version |
//! | `org.xrun.kernel.modules` | `wireguard,ip_vs` | these modules must be loaded, built in or loadable |
//! | `org.xrun.kernel.config` | `CONFIG_BPF,USER_NS` | these options must be `y` or `m` |
//! | `org.xrun.page-size` | `4096` | the largest kernel page size (bytes) the image works with |
//!
//! A config label wins over an annotation of the same key. A value that cannot be parsed is
//! reported as a [`Problem`] with code `bad-label` and otherwise ignored.

use std::collections::HashMap;

use super::requirements::{Fact, Problem, ProblemCode};

/// `org.xrun.kernel.min`.
pub const KERNEL_MIN: &str = "org.xrun.kernel.min";
/// `org.xrun.kernel.modules`.
pub const KERNEL_MODULES: &str = "org.xrun.kernel.modules";
/// `org.xrun.kernel.config`.
pub const KERNEL_CONFIG: &str = "org.xrun.kernel.config";
/// `org.xrun.page-size`.
pub const PAGE_SIZE: &str = "org.xrun.page-size";

/// The requirements the labels state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelFacts {
    /// Minimum kernel.
    pub kernel_min: Option<Fact<[u32; 3]>>,
    /// Modules (names normalized: `-` → `_`).
    pub modules: Vec<Fact<String>>,
    /// Options, always with their `CONFIG_` prefix.
    pub config: Vec<Fact<String>>,
    /// Largest page size supported.
    pub max_page_size: Option<Fact<u64>>,
    /// Unparseable values.
    pub problems: Vec<Problem>,
}

/// Reads xrun's labels from the config labels and the manifest annotations.
pub fn read(labels: &HashMap<String, String>, annotations: &HashMap<String, String>) -> LabelFacts {
    let mut out = LabelFacts::default();
    let get = |key: &str| -> Option<(String, String)> {
        if let Some(v) = labels.get(key) {
            Some((v.clone(), format!("config label {key}={v}")))
        } else {
            annotations
                .get(key)
                .map(|v| (v.clone(), format!("manifest annotation {key}={v}")))
        }
    };
    let bad = |key: &str, v: &str, why: &str, ev: String| Problem {
        code: ProblemCode::BadLabel,
        message: format!("label {key}={v:?} ignored: {why}"),
        evidence: vec![ev],
    };
    if let Some((v, ev)) = get(KERNEL_MIN) {
        match parse_version(&v) {
            Some(ver) => out.kernel_min = Some(Fact::new(ver, ev)),
            None => out.problems.push(bad(
                KERNEL_MIN,
                &v,
                "expected a version like 5.15 or 6.1.0",
                ev,
            )),
        }
    }
    if let Some((v, ev)) = get(KERNEL_MODULES) {
        for item in split_list(&v) {
            if item
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                out.modules
                    .push(Fact::new(item.replace('-', "_"), ev.clone()));
            } else {
                out.problems.push(bad(
                    KERNEL_MODULES,
                    &v,
                    &format!("{item:?} is not a module name"),
                    ev.clone(),
                ));
            }
        }
    }
    if let Some((v, ev)) = get(KERNEL_CONFIG) {
        for item in split_list(&v) {
            let name = if item.starts_with("CONFIG_") {
                item.to_string()
            } else {
                format!("CONFIG_{item}")
            };
            if name.len() > 7
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                out.config.push(Fact::new(name, ev.clone()));
            } else {
                out.problems.push(bad(
                    KERNEL_CONFIG,
                    &v,
                    &format!("{item:?} is not a CONFIG_ option name"),
                    ev.clone(),
                ));
            }
        }
    }
    if let Some((v, ev)) = get(PAGE_SIZE) {
        match v.trim().parse::<u64>() {
            Ok(n) if n >= 1024 && n.is_power_of_two() => out.max_page_size = Some(Fact::new(n, ev)),
            _ => out.problems.push(bad(
                PAGE_SIZE,
                &v,
                "expected a power of two in bytes, e.g. 4096 or 65536",
                ev,
            )),
        }
    }
    out
}

fn split_list(v: &str) -> impl Iterator<Item = &str> {
    v.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty())
}

/// Parses `major.minor[.patch]` (an optional `-suffix` or `+suffix` is ignored).
pub fn parse_version(v: &str) -> Option<[u32; 3]> {
    let core = v.trim().split(['-', '+']).next()?;
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return None;
    }
    let mut out = [0u32; 3];
    for (i, p) in parts.iter().enumerate() {
        out[i] = p.parse().ok()?;
    }
    Some(out)
}

/// A version as `a.b.c`.
pub fn show_version(v: &[u32; 3]) -> String {
    format!("{}.{}.{}", v[0], v[1], v[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(kv: &[(&str, &str)]) -> HashMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn good_values() {
        let l = map(&[
            (KERNEL_MIN, "5.15"),
            (KERNEL_MODULES, "wireguard, ip-vs"),
            (KERNEL_CONFIG, "CONFIG_BPF,USER_NS"),
            (PAGE_SIZE, "65536"),
        ]);
        let f = read(&l, &HashMap::new());
        assert_eq!(f.kernel_min.unwrap().value, [5, 15, 0]);
        let m: Vec<_> = f.modules.iter().map(|m| m.value.as_str()).collect();
        assert_eq!(m, ["wireguard", "ip_vs"]);
        let c: Vec<_> = f.config.iter().map(|m| m.value.as_str()).collect();
        assert_eq!(c, ["CONFIG_BPF", "CONFIG_USER_NS"]);
        assert_eq!(f.max_page_size.unwrap().value, 65536);
        assert!(f.problems.is_empty());
    }

    #[test]
    fn annotations_are_a_fallback() {
        let f = read(
            &map(&[(KERNEL_MIN, "6.1")]),
            &map(&[(KERNEL_MIN, "4.0"), (PAGE_SIZE, "4096")]),
        );
        let k = f.kernel_min.unwrap();
        assert_eq!(k.value, [6, 1, 0]);
        assert!(k.evidence.starts_with("config label"));
        assert!(
            f.max_page_size
                .unwrap()
                .evidence
                .starts_with("manifest annotation")
        );
    }

    #[test]
    fn bad_values_are_problems_not_panics() {
        let f = read(
            &map(&[
                (KERNEL_MIN, "five"),
                (KERNEL_MODULES, "ok,bad/name"),
                (KERNEL_CONFIG, "lower_case"),
                (PAGE_SIZE, "3000"),
            ]),
            &HashMap::new(),
        );
        assert!(f.kernel_min.is_none());
        assert_eq!(f.modules.len(), 1);
        assert!(f.config.is_empty());
        assert!(f.max_page_size.is_none());
        assert_eq!(f.problems.len(), 4);
        assert!(f.problems.iter().all(|p| p.code == ProblemCode::BadLabel));
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("6.1.0-18-cloud-amd64"), Some([6, 1, 0]));
        assert_eq!(parse_version("5.15"), Some([5, 15, 0]));
        assert_eq!(parse_version("5"), None);
        assert_eq!(parse_version("5.x"), None);
    }
}
