//! Namespaces the kernel offers (`/proc/self/ns`) and their limits (`user.max_*_namespaces`,
//! distribution switches for unprivileged user namespaces).

use super::profile::{UnknownFact, UserNamespaceInfo};
use super::source::HostSource;

/// Reads a sysctl number (`/proc/sys/…`), `None` when absent or unparsable.
fn sysctl_u64(src: &HostSource, path: &str) -> Option<u64> {
    src.read(path).ok()?.trim().parse().ok()
}

/// The namespace kinds this host can create, and the user-namespace details.
pub fn gather(
    src: &HostSource,
    unknowns: &mut Vec<UnknownFact>,
) -> (Vec<String>, UserNamespaceInfo) {
    let mut kinds: Vec<String> = match src.list("/proc/self/ns") {
        Ok(names) => names
            .into_iter()
            .map(|n| n.trim_end_matches("_for_children").to_string())
            .collect(),
        Err(reason) => {
            unknowns.push(UnknownFact {
                fact: "namespaces".into(),
                reason,
            });
            Vec::new()
        }
    };
    kinds.sort();
    kinds.dedup();
    let supported_user = kinds.iter().any(|k| k == "user");
    // A kind whose max_*_namespaces is 0 cannot be created (by anyone).
    kinds.retain(|k| sysctl_u64(src, &format!("/proc/sys/user/max_{k}_namespaces")) != Some(0));
    let user = UserNamespaceInfo {
        supported: supported_user,
        max: sysctl_u64(src, "/proc/sys/user/max_user_namespaces"),
        unprivileged_clone: sysctl_u64(src, "/proc/sys/kernel/unprivileged_userns_clone")
            .map(|v| v != 0),
        apparmor_restricted: sysctl_u64(
            src,
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        )
        .map(|v| v != 0),
    };
    (kinds, user)
}
