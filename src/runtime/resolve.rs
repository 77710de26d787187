//! Finds the command inside the container's root file system before it starts, so a missing
//! command is exit 127 and a non-executable one 126, each with one clear line (as Docker).
//! Symlinks are followed as the container would see them: absolute links are relative to
//! the container root, and nothing resolves outside it.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::RuntimeError;
use super::inroot::{Create, Kind, Policy, Root};

const FIND: Policy = Policy {
    create: Create::Nothing,
    refuse_kernel_mounts: false,
};

/// Resolves `path` (absolute inside the container) to a host path under `root`, following
/// symlinks within `root` ([`super::inroot`]). `None` if a component does not exist.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let r = Root::open(root).ok()?.resolve(path, FIND).ok()?;
    Some(root.join(r.path.trim_start_matches('/')))
}

/// Checks that `cmd` (as `execvp` would find it through `path_var`) exists and is executable
/// inside `root`; returns its path inside the container. Each candidate is resolved in the
/// root on descriptors and its mode read from the descriptor the walk ended on, so a link
/// the container swaps meanwhile cannot make xrun look at a host file.
pub fn check_command(
    root: &Path,
    cmd: &str,
    path_var: &str,
    cwd: &str,
) -> Result<String, RuntimeError> {
    let candidates: Vec<String> = if cmd.contains('/') {
        if cmd.starts_with('/') {
            vec![cmd.to_string()]
        } else {
            vec![format!("{}/{cmd}", cwd.trim_end_matches('/'))]
        }
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{cmd}", d.trim_end_matches('/')))
            .collect()
    };
    let root = Root::open(root)
        .map_err(|e| RuntimeError::Runtime(format!("opening the root file system: {e}")))?;
    let mut found_not_exec = None;
    for c in &candidates {
        let Ok(r) = root.resolve(c, FIND) else {
            continue;
        };
        let Ok(st) = nix::sys::stat::fstat(r.fd.as_raw_fd()) else {
            continue;
        };
        if r.kind == Kind::File && st.st_mode & 0o111 != 0 {
            return Ok(c.clone());
        }
        found_not_exec.get_or_insert(c.clone());
    }
    match found_not_exec {
        Some(p) => Err(RuntimeError::NotExecutable(format!(
            "exec: {p:?}: permission denied (not an executable file)"
        ))),
        None if cmd.contains('/') => Err(RuntimeError::CommandNotFound(format!(
            "exec: {cmd:?}: no such file or directory"
        ))),
        None => Err(RuntimeError::CommandNotFound(format!(
            "exec: {cmd:?}: executable file not found in $PATH"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn follows_links_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::create_dir_all(r.join("usr")).unwrap();
        std::fs::write(r.join("bin/busybox"), b"x").unwrap();
        std::fs::set_permissions(
            r.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        symlink("/bin/busybox", r.join("bin/sh")).unwrap();
        symlink("../bin", r.join("usr/bin")).unwrap();
        symlink("/../../../etc/passwd", r.join("bin/escape")).unwrap();
        std::fs::write(r.join("bin/data"), b"x").unwrap();
        assert_eq!(
            check_command(r, "sh", "/usr/bin", "/").unwrap(),
            "/usr/bin/sh"
        );
        assert_eq!(
            resolve_in_root(r, "/usr/bin/sh").unwrap(),
            r.join("bin/busybox")
        );
        assert_eq!(resolve_in_root(r, "/bin/escape"), None);
        assert!(matches!(
            check_command(r, "nope", "/bin", "/"),
            Err(RuntimeError::CommandNotFound(_))
        ));
        assert!(matches!(
            check_command(r, "data", "/bin", "/"),
            Err(RuntimeError::NotExecutable(_))
        ));
        assert!(matches!(
            check_command(r, "/bin", "/bin", "/"),
            Err(RuntimeError::NotExecutable(_))
        ));
    }
}
