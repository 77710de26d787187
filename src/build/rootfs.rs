//! Looking things up in an image's file system without mounting it: its layer snapshots
//! (overlay form, lowest first) searched from the top, whiteouts honoured. Used to decide
//! whether a `COPY` destination is a directory, to give new parent directories their
//! existing metadata, and to resolve `--chown` names through `/etc/passwd` and `/etc/group`.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::BuildError;

/// The metadata of `path` (relative, `/`-separated) in the image made of `layers`.
pub fn lookup(layers: &[PathBuf], path: &str) -> Option<(PathBuf, fs::Metadata)> {
    let rel = path.trim_start_matches('/');
    for dir in layers.iter().rev() {
        let full = dir.join(rel);
        if let Ok(md) = fs::symlink_metadata(&full) {
            if md.file_type().is_char_device() && md.rdev() == 0 {
                return None;
            }
            return Some((full, md));
        }
        // An opaque parent hides everything below it.
        if opaque_parent(dir, rel) {
            return None;
        }
    }
    None
}

fn opaque_parent(dir: &Path, rel: &str) -> bool {
    let mut p = Path::new(rel);
    while let Some(parent) = p.parent() {
        if parent.as_os_str().is_empty() {
            break;
        }
        let d = dir.join(parent);
        if xattr::get(&d, "trusted.overlay.opaque")
            .ok()
            .flatten()
            .is_some_and(|v| v == b"y")
        {
            return true;
        }
        p = parent;
    }
    false
}

/// Whether `path` is a directory in the image.
pub fn is_dir(layers: &[PathBuf], path: &str) -> bool {
    lookup(layers, path).is_some_and(|(_, md)| md.is_dir())
}

/// Resolves `USER[:GROUP]` (names or numbers) to ids through the image's `/etc/passwd` and
/// `/etc/group`; a user without a group takes the user's primary group (as `--chown` does).
pub fn owner(layers: &[PathBuf], spec: &str) -> Result<(u32, u32), BuildError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let read = |p: &str| {
        lookup(layers, p)
            .and_then(|(full, _)| fs::read_to_string(full).ok())
            .unwrap_or_default()
    };
    let (uid, primary) = match user.parse::<u32>() {
        Ok(n) => (n, n),
        Err(_) => {
            let passwd = read("etc/passwd");
            let f = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 3 && f[0] == user)
                .ok_or_else(|| {
                    BuildError::Invalid(format!(
                        "--chown {spec}: no user {user:?} in the image's /etc/passwd"
                    ))
                })?;
            (f[2].parse().unwrap_or(0), f[3].parse().unwrap_or(0))
        }
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read("etc/group");
                groups
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() > 2 && f[0] == g)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        BuildError::Invalid(format!(
                            "--chown {spec}: no group {g:?} in the image's /etc/group"
                        ))
                    })?
            }
        },
    };
    Ok((uid, gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_layer_wins_and_names_resolve() {
        let d = tempfile::tempdir().unwrap();
        let low = d.path().join("low");
        let high = d.path().join("high");
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(high.join("etc")).unwrap();
        fs::write(low.join("etc/passwd"), "root:x:0:0::/:/bin/sh\n").unwrap();
        fs::write(high.join("etc/passwd"), "app:x:1000:1001::/:/bin/sh\n").unwrap();
        fs::write(low.join("etc/group"), "staff:x:50:\n").unwrap();
        let layers = vec![low, high];
        assert_eq!(owner(&layers, "app").unwrap(), (1000, 1001));
        assert_eq!(owner(&layers, "app:staff").unwrap(), (1000, 50));
        assert_eq!(owner(&layers, "7:8").unwrap(), (7, 8));
        assert!(owner(&layers, "root").is_err());
        assert!(is_dir(&layers, "/etc"));
        assert!(!is_dir(&layers, "etc/passwd"));
    }
}
