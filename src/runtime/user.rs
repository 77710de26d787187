//! `-u USER[:GROUP]` and the image's `User`: names resolved through the container's own
//! `/etc/passwd` and `/etc/group`, as Docker does.
//!
//! Every id that comes out of here is a usable id: `4294967295` (`(uid_t)-1`, which
//! `setresuid`/`setresgid` read as "leave unchanged", so the process would keep root) is
//! refused wherever it comes from (a number given with `-u` or in the image's `User`, a passwd
//! or group entry a name resolves to, a supplementary group), as are negative numbers and
//! numbers above it; each refusal is one line naming the id and where it came from.

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

/// The one id value that cannot be used: `(uid_t)-1` / `(gid_t)-1` means "unchanged" to the
/// kernel's `setres[ug]id`.
pub const RESERVED_ID: u32 = u32::MAX;

/// What an id is, for messages.
#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
    fn id(self) -> &'static str {
        match self {
            Kind::User => "uid",
            Kind::Group => "gid",
        }
    }
}

/// Refuses [`RESERVED_ID`]; `from` says where the id came from.
fn usable(id: u32, kind: Kind, from: &str) -> Result<u32, RuntimeError> {
    if id == RESERVED_ID {
        return Err(RuntimeError::BadInput(format!(
            "{} {id} ({from}) cannot be used: it means \"unchanged\" to the kernel, so the \
             process would keep root's {}; use a {} between 0 and {}",
            kind.id(),
            kind.id(),
            kind.id(),
            RESERVED_ID - 1
        )));
    }
    Ok(id)
}

/// A numeric `-u` part: `Ok(Some(id))` for a number, `Ok(None)` for a name, an error for a
/// number out of range (negative, or above [`RESERVED_ID`]).
fn numeric(s: &str, kind: Kind) -> Result<Option<u32>, RuntimeError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u32>() {
        Ok(id) => usable(id, kind, "given as a number").map(Some),
        Err(_) => Err(RuntimeError::BadInput(format!(
            "invalid {} {s:?}: a {} must be a number between 0 and {}",
            kind.word(),
            kind.id(),
            RESERVED_ID - 1
        ))),
    }
}

/// The most of `/etc/passwd` or `/etc/group` read (the image's files are untrusted input).
pub const MAX_TABLE_BYTES: u64 = 16 << 20;

/// The image's `file` (read inside the root: an image's `/etc/passwd` symlink cannot make xrun
/// read a host file), empty when missing.
fn read_table(rootfs: &Path, file: &str) -> String {
    super::inroot::Root::open(rootfs)
        .ok()
        .and_then(|r| r.read_file(file, MAX_TABLE_BYTES))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn read_passwd(rootfs: &Path) -> Vec<Passwd> {
    let text = read_table(rootfs, "/etc/passwd");
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
    let text = read_table(rootfs, "/etc/group");
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

/// Resolves `USER[:GROUP]` (names or numbers; empty means root) inside `rootfs`. Refuses
/// [`RESERVED_ID`] and out-of-range numbers (see the module doc).
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, RuntimeError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = read_passwd(rootfs);
    let entry = match numeric(user, Kind::User)? {
        Some(uid) => passwd.iter().find(|p| p.uid == uid),
        None => Some(passwd.iter().find(|p| p.name == user).ok_or_else(|| {
            RuntimeError::BadInput(format!(
                "unable to find user {user}: no matching entries in the image's /etc/passwd"
            ))
        })?),
    };
    let uid = match entry {
        Some(p) => usable(
            p.uid,
            Kind::User,
            &format!("user {} in the image's /etc/passwd", p.name),
        )?,
        None => numeric(user, Kind::User)?.unwrap_or(0),
    };
    let groups = read_group(rootfs);
    let gid = match group {
        Some(g) if !g.is_empty() => match numeric(g, Kind::Group)? {
            Some(gid) => gid,
            None => {
                let found = groups.iter().find(|x| x.name == g).ok_or_else(|| {
                    RuntimeError::BadInput(format!(
                        "unable to find group {g}: no matching entries in the image's /etc/group"
                    ))
                })?;
                usable(
                    found.gid,
                    Kind::Group,
                    &format!("group {g} in the image's /etc/group"),
                )?
            }
        },
        _ => match entry {
            Some(p) => usable(
                p.gid,
                Kind::Group,
                &format!(
                    "primary group of user {} in the image's /etc/passwd",
                    p.name
                ),
            )?,
            None => 0,
        },
    };
    let mut additional_gids = Vec::new();
    if group.is_none()
        && let Some(p) = entry
    {
        for g in &groups {
            if g.members.contains(&p.name) && g.gid != gid {
                additional_gids.push(usable(
                    g.gid,
                    Kind::Group,
                    &format!(
                        "group {} of user {} in the image's /etc/group",
                        g.name, p.name
                    ),
                )?);
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

    fn rootfs(passwd: &str, group: &str) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/passwd"), passwd).unwrap();
        std::fs::write(d.path().join("etc/group"), group).unwrap();
        d
    }

    fn refused(root: &Path, spec: &str) -> String {
        match resolve(root, spec) {
            Err(RuntimeError::BadInput(m)) => m,
            other => panic!("{spec:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn the_reserved_id_is_refused_from_every_source() {
        let d = rootfs(
            "root:x:0:0:root:/root:/bin/sh\n\
             minus:x:4294967295:0::/:/bin/sh\n\
             gminus:x:1000:4294967295::/:/bin/sh\n\
             member:x:1001:1001::/:/bin/sh\n",
            "root:x:0:\nbad:x:4294967295:member\nok:x:1001:\n",
        );
        let r = d.path();
        for spec in [
            "4294967295",
            "0:4294967295",
            "4294967295:0",
            "root:4294967295",
        ] {
            let m = refused(r, spec);
            assert!(m.contains("4294967295") && m.contains("unchanged"), "{m}");
            assert_eq!(m.lines().count(), 1);
        }
        assert!(refused(r, "minus").contains("user minus in the image's /etc/passwd"));
        assert!(refused(r, "gminus").contains("primary group of user gminus"));
        assert!(refused(r, "root:bad").contains("group bad in the image's /etc/group"));
        assert!(refused(r, "member").contains("group bad of user member"));
        // With an explicit group, the supplementary groups are not used.
        assert_eq!(resolve(r, "member:ok").unwrap().gid, 1001);
        // The largest usable ids still work.
        let u = resolve(r, "4294967294:4294967294").unwrap();
        assert_eq!((u.uid, u.gid), (4294967294, 4294967294));
    }

    #[test]
    fn tables_are_read_inside_the_root() {
        let host = rootfs(
            "root:x:0:0:root:/root:/bin/sh\nhostonly:x:4242:4242::/:/bin/sh\n",
            "",
        );
        let d = rootfs("root:x:0:0:root:/root:/bin/sh\n", "");
        std::fs::remove_file(d.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink(host.path().join("etc/passwd"), d.path().join("etc/passwd"))
            .unwrap();
        // The absolute link points at a path that does not exist inside the root.
        assert!(resolve(d.path(), "hostonly").is_err());
    }

    #[test]
    fn out_of_range_numbers_are_refused() {
        let d = rootfs("root:x:0:0:root:/root:/bin/sh\n", "root:x:0:\n");
        let r = d.path();
        for spec in [
            "-1",
            "0:-1",
            "4294967296",
            "0:4294967296",
            "99999999999999999999999",
            "-0",
        ] {
            let m = refused(r, spec);
            assert!(
                m.contains("must be a number between 0 and 4294967294"),
                "{spec}: {m}"
            );
        }
        assert_eq!(resolve(r, "65534").unwrap().uid, 65534);
        assert_eq!(resolve(r, "65534:65534").unwrap().gid, 65534);
    }
}
