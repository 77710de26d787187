//! `-u USER[:GROUP]` and the image's `User`: names resolved through the container's own
//! `/etc/passwd` and `/etc/group`, as Docker does.

use std::path::Path;

use super::RuntimeError;

/// A resolved user: ids, supplementary groups, and the home directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    /// The user id.
    pub uid: u32,
    /// The primary group id.
    pub gid: u32,
    /// Supplementary groups (from /etc/group membership).
    pub additional_gids: Vec<u32>,
    /// The home directory, when the user has a passwd entry.
    pub home: Option<String>,
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_passwd(rootfs: &Path) -> Vec<Passwd> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 7 {
                return None;
            }
            Some(Passwd {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f[5].to_string(),
            })
        })
        .collect()
}

fn read_group(rootfs: &Path) -> Vec<Group> {
    let text = std::fs::read_to_string(rootfs.join("etc/group")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(Group {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Resolves `USER[:GROUP]` (names or numbers; empty means root) inside `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, RuntimeError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = read_passwd(rootfs);
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => Some(passwd.iter().find(|p| p.name == user).ok_or_else(|| {
            RuntimeError::BadInput(format!(
                "unable to find user {user}: no matching entries in the image's /etc/passwd"
            ))
        })?),
    };
    let uid = match entry {
        Some(p) => p.uid,
        None => user.parse().unwrap_or(0),
    };
    let groups = read_group(rootfs);
    let gid = match group {
        Some(g) if !g.is_empty() => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|x| x.name == g)
                .ok_or_else(|| {
                    RuntimeError::BadInput(format!(
                        "unable to find group {g}: no matching entries in the image's /etc/group"
                    ))
                })?
                .gid,
        },
        _ => entry.map(|p| p.gid).unwrap_or(0),
    };
    let mut additional_gids = Vec::new();
    if group.is_none()
        && let Some(p) = entry
    {
        for g in &groups {
            if g.members.contains(&p.name) && g.gid != gid {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|p| p.home.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_and_numbers() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:w:/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nweb:x:1001:\nwheel:x:10:web,root\n",
        )
        .unwrap();
        let u = resolve(d.path(), "web").unwrap();
        assert_eq!(
            (u.uid, u.gid, u.additional_gids.clone()),
            (1000, 1001, vec![10])
        );
        assert_eq!(u.home.as_deref(), Some("/home/web"));
        let u = resolve(d.path(), "web:wheel").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 10));
        let u = resolve(d.path(), "4242:7").unwrap();
        assert_eq!((u.uid, u.gid, u.home), (4242, 7, None));
        assert!(resolve(d.path(), "nobody").is_err());
        assert!(resolve(d.path(), "web:nogroup").is_err());
        assert_eq!(resolve(d.path(), "").unwrap().uid, 0);
    }
}
