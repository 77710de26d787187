//! Kernel modules: loaded (`/proc/modules`), built in (`modules.builtin`, `/sys/module`),
//! available (`/lib/modules/$(uname -r)/modules.dep`). A kernel without module support is a
//! normal case: no `/proc/modules`, everything it has is built in.

use std::collections::{BTreeMap, BTreeSet};

use super::profile::OptionState;
use super::source::HostSource;

/// What the module files say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Modules {
    /// Loadable modules are supported.
    pub supported: bool,
    /// Loaded now.
    pub loaded: Vec<String>,
    /// Built in.
    pub builtin: Vec<String>,
    /// Installed and loadable.
    pub available: Vec<String>,
    /// `builtin` came from `modules.builtin` (complete), not only from `/sys/module`
    /// (positive-only).
    pub builtin_complete: bool,
}

/// A module name from a path or name (`kernel/fs/overlayfs/overlay.ko.xz` → `overlay`,
/// `nf-nat` → `nf_nat`).
pub fn module_name(path_or_name: &str) -> String {
    let base = path_or_name.rsplit('/').next().unwrap_or(path_or_name);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

/// Names in `/proc/modules` (first column).
pub fn parse_proc_modules(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(module_name)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Names in `modules.builtin` (one path per line) or `modules.dep` (`path: deps`).
pub fn parse_module_list(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(module_name)
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Reads the module facts; `config` (when found) settles support if `/proc/modules` is absent.
pub fn gather(
    src: &HostSource,
    release: &str,
    config: Option<&BTreeMap<String, OptionState>>,
) -> Modules {
    let mut m = Modules::default();
    match src.read("/proc/modules") {
        Ok(text) => {
            m.supported = true;
            m.loaded = parse_proc_modules(&text);
        }
        Err(_) => {
            // /proc/modules exists whenever CONFIG_MODULES is set; the config can only confirm.
            m.supported = config.is_some_and(|c| c.contains_key("CONFIG_MODULES"))
                && src.exists("/proc/sys/kernel/modprobe");
        }
    }
    let dir = format!("/lib/modules/{release}");
    let builtin_list = src.read(&format!("{dir}/modules.builtin")).ok();
    m.builtin_complete = builtin_list.is_some();
    let mut builtin: BTreeSet<String> = builtin_list
        .map(|t| parse_module_list(&t))
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Ok(names) = src.list("/sys/module") {
        let loaded: BTreeSet<&String> = m.loaded.iter().collect();
        builtin.extend(names.into_iter().filter(|n| !loaded.contains(n)));
    }
    m.builtin = builtin.into_iter().collect();
    if m.supported {
        m.available = src
            .read(&format!("{dir}/modules.dep"))
            .map(|t| parse_module_list(&t))
            .unwrap_or_default();
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/fs/overlayfs/overlay.ko.xz"), "overlay");
        assert_eq!(module_name("kernel/net/nf-nat.ko"), "nf_nat");
        assert_eq!(
            parse_proc_modules(
                "veth 32768 0 - Live 0x0000000000000000\nbr_netfilter 32768 0 - Live 0x0\n"
            ),
            vec!["br_netfilter", "veth"]
        );
        assert_eq!(
            parse_module_list(
                "kernel/fs/overlayfs/overlay.ko: \nkernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n"
            ),
            vec!["bridge", "overlay"]
        );
    }
}
