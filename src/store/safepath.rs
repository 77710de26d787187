//! Path safety for layer extraction: every tar entry lands inside its root, or is refused.
//!
//! Rules (refusals become [`super::StoreError::PathEscape`]):
//! - an entry path (or hard-link target) that is absolute or has a `..` component is refused,
//!   however harmless it might look after normalization; `.` components are dropped;
//! - parent directories are walked one component at a time with `lstat`, inside the root;
//!   missing ones are created (0755);
//! - a symlink met on the way is followed only *in scope*: a relative target is resolved from
//!   its directory, an absolute one from the root (as it would be inside the container); a
//!   target that climbs above the root is refused, as is a chain of more than 40 links;
//! - the last component is never followed: the extractor replaces what is there.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why a path could not be resolved.
#[derive(Debug)]
pub(crate) enum ResolveError {
    /// It would leave the root.
    Escape(String),
    /// A component that must be a directory is something else.
    NotDir(PathBuf),
    /// A component does not exist (and was not to be created).
    NotFound(PathBuf),
    /// A file-system error.
    Io(PathBuf, io::Error),
}

/// Splits an entry path into its normal components, refusing absolute paths and `..`.
pub(crate) fn clean_components(raw: &[u8]) -> Result<Vec<OsString>, ResolveError> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err(ResolveError::Escape("`..` component".into())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(ResolveError::Escape("absolute path".into()));
            }
        }
    }
    Ok(out)
}

/// Resolves the directory `comps` names inside `root` (see the module doc), creating missing
/// directories when `create`. Returns the real path (under `root`, no symlinks).
pub(crate) fn resolve_dir(
    root: &Path,
    comps: &[OsString],
    create: bool,
) -> Result<PathBuf, ResolveError> {
    let mut pending: VecDeque<OsString> = comps.iter().cloned().collect();
    let mut cur: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == ".." {
            if cur.pop().is_none() {
                return Err(ResolveError::Escape(
                    "a symlink on the way leads outside the root".into(),
                ));
            }
            continue;
        }
        let mut p = root.to_path_buf();
        p.extend(&cur);
        p.push(&c);
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => cur.push(c),
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return Err(ResolveError::Escape("too many levels of symlinks".into()));
                }
                let target = fs::read_link(&p).map_err(|e| ResolveError::Io(p.clone(), e))?;
                if target.is_absolute() {
                    cur.clear();
                }
                let mut front = Vec::new();
                for tc in target.components() {
                    match tc {
                        Component::Normal(n) => front.push(n.to_os_string()),
                        Component::ParentDir => front.push(OsString::from("..")),
                        _ => {}
                    }
                }
                for n in front.into_iter().rev() {
                    pending.push_front(n);
                }
            }
            Ok(_) => return Err(ResolveError::NotDir(p)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !create {
                    return Err(ResolveError::NotFound(p));
                }
                match fs::create_dir(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(ResolveError::Io(p, e)),
                }
                cur.push(c);
            }
            Err(e) => return Err(ResolveError::Io(p, e)),
        }
    }
    let mut p = root.to_path_buf();
    p.extend(&cur);
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_absolute_and_dotdot() {
        assert!(matches!(
            clean_components(b"/etc/passwd"),
            Err(ResolveError::Escape(_))
        ));
        assert!(matches!(
            clean_components(b"a/../../b"),
            Err(ResolveError::Escape(_))
        ));
        assert_eq!(clean_components(b"./a/./b/").unwrap(), vec!["a", "b"]);
        assert!(clean_components(b"./").unwrap().is_empty());
    }

    #[test]
    fn follows_symlinks_in_scope_only() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("/usr", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
        let got = resolve_dir(&root, &["lib".into(), "x".into()], true).unwrap();
        assert_eq!(got, root.join("usr/lib/x"));
        let got = resolve_dir(&root, &["abs".into(), "lib".into()], false).unwrap();
        assert_eq!(got, root.join("usr/lib"));
        assert!(matches!(
            resolve_dir(&root, &["up".into(), "etc".into()], true),
            Err(ResolveError::Escape(_))
        ));
        assert!(!t.path().join("etc").exists());
    }
}
