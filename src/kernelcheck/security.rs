//! Seccomp (`/proc/self/status` `Seccomp:`, `actions_avail`, the config), `NoNewPrivs`,
//! AppArmor and SELinux.

use std::collections::BTreeMap;

use super::mountinfo::Mount;
use super::profile::{OptionState, SecurityInfo, UnknownFact};
use super::source::HostSource;

/// A field of `/proc/self/status` (`Seccomp`, `NoNewPrivs`).
pub fn status_field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Seccomp availability (the profile's `seccomp`) and the security details.
pub fn gather(
    src: &HostSource,
    config: Option<&BTreeMap<String, OptionState>>,
    mounts: &[Mount],
    unknowns: &mut Vec<UnknownFact>,
) -> (bool, SecurityInfo) {
    let mut info = SecurityInfo::default();
    let status = src.read("/proc/self/status");
    match &status {
        Ok(text) => {
            info.seccomp_mode = status_field(text, "Seccomp").map(|v| {
                match v {
                    "0" => "disabled",
                    "1" => "strict",
                    "2" => "filter",
                    other => other,
                }
                .to_string()
            });
            info.no_new_privs = status_field(text, "NoNewPrivs").map(|v| v == "1");
        }
        Err(reason) => unknowns.push(UnknownFact {
            fact: "security.seccomp_mode".into(),
            reason: reason.clone(),
        }),
    }
    if let Ok(text) = src.read("/proc/sys/kernel/seccomp/actions_avail") {
        info.seccomp_actions = text.split_whitespace().map(str::to_string).collect();
    }
    let seccomp = if !info.seccomp_actions.is_empty() {
        true
    } else if let Some(c) = config {
        c.get("CONFIG_SECCOMP_FILTER") == Some(&OptionState::Enabled)
    } else if info.seccomp_mode.is_some() {
        // Older kernels have no actions_avail; a Seccomp: field means CONFIG_SECCOMP.
        unknowns.push(UnknownFact {
            fact: "seccomp".into(),
            reason: "no kernel config and no /proc/sys/kernel/seccomp/actions_avail: filter \
                     support assumed from the Seccomp field of /proc/self/status"
                .into(),
        });
        true
    } else {
        // A readable status without a Seccomp: field means a kernel without CONFIG_SECCOMP.
        if status.is_err() {
            unknowns.push(UnknownFact {
                fact: "seccomp".into(),
                reason: "neither /proc/self/status, actions_avail nor a kernel config is readable"
                    .into(),
            });
        }
        false
    };
    info.apparmor = src
        .read("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|t| t.trim() == "Y");
    info.selinux = mounts.iter().any(|m| m.fs_type == "selinuxfs");
    (seccomp, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let s = "Name:\tx\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(status_field(s, "Seccomp"), Some("2"));
        assert_eq!(status_field(s, "NoNewPrivs"), Some("1"));
        assert_eq!(status_field(s, "Missing"), None);
    }
}
