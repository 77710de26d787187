//! Where the working directory and the bind mounts land inside the container, decided before
//! the bundle goes to the runtime: each is resolved in the root file system with
//! [`super::inroot`] (symlinks followed in scope, never out of it), what is missing is created
//! there (a directory, or an empty file for a file bind), and the *resolved* path is what
//! `config.json` names. What cannot work is refused with one line naming the flag and the
//! path (`-w /etc/passwd: /etc/passwd is not a directory in the image`), instead of the
//! runtime's "failed to unix syscall".
//!
//! Rules (Docker's, plus what the kernel file systems imply):
//! - a working directory or a destination strictly below `/proc`, `/sys` or `/dev` *after*
//!   resolution is refused: the runtime mounts its own file systems there, so the image's
//!   content says nothing (and `/proc/self/fd/N` would be a runtime descriptor,
//!   CVE-2024-21626);
//! - a bind destination given literally below `/dev` is passed through (device binds such as
//!   `-v /dev/snd:/dev/snd`): the runtime creates it inside its own `/dev` tmpfs;
//! - a destination equal to `/`, `/proc` or `/sys` is refused;
//! - a destination below an earlier bind destination is passed through: it lives in that
//!   bind's source, which the user chose (the runtime creates it there, as runc does);
//! - a directory source needs a directory destination, a file source a non-directory one.

use std::path::Path;

use super::RuntimeError;
use super::inroot::{Create, InRootError, Kind, Policy, Root};
use super::spec::ExtraMount;

/// Whether `path` (absolute, `/`-separated) is `base` or below it, component-wise.
fn at_or_below(path: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    path == base || base.is_empty() || path.starts_with(&format!("{base}/"))
}

/// `path` without empty and `.` components (`..` is kept: the resolution handles it).
fn tidy(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn refuse(label: &str, e: InRootError) -> RuntimeError {
    RuntimeError::BadInput(format!("{label}: {e}"))
}

/// Places the working directory `wd` (absolute; `label` names where it came from, e.g.
/// `-w /x`); returns its resolved path. `binds` are the placed bind mounts (resolved
/// destination, host source): a working directory at or below one is inside the user's
/// host directory, which is neither resolved nor written here; it must exist there.
pub fn workdir(
    root: &Root,
    wd: &str,
    label: &str,
    binds: &[(String, &Path)],
) -> Result<String, RuntimeError> {
    if !wd.starts_with('/') {
        return Err(RuntimeError::BadInput(format!(
            "{label}: the working directory must be an absolute path"
        )));
    }
    let lexical = tidy(wd);
    if !lexical.split('/').any(|c| c == "..")
        && let Some((dest, source)) = binds
            .iter()
            .filter(|(d, _)| at_or_below(&lexical, d))
            .max_by_key(|(d, _)| d.len())
    {
        let rest = lexical[dest.len()..].trim_start_matches('/');
        let inside = source.join(rest);
        if !inside.is_dir() {
            return Err(RuntimeError::BadInput(format!(
                "{label}: {lexical} is not a directory in the volume mounted at {dest} ({} \
                 on the host)",
                inside.display()
            )));
        }
        return Ok(lexical);
    }
    let r = root
        .resolve(
            wd,
            Policy {
                create: Create::Dir,
                refuse_kernel_mounts: true,
            },
        )
        .map_err(|e| refuse(label, e))?;
    if r.kind != Kind::Dir {
        return Err(refuse(label, InRootError::NotADirectory(r.path)));
    }
    Ok(r.path)
}

/// Checks the working directory of an `exec` in a running container (nothing is created:
/// the container is running). A path below a bind destination in `binds` is left to the
/// runtime (the host's view of the root does not show the bind); returns the path to use.
pub fn exec_workdir(root: &Root, wd: &str, binds: &[String]) -> Result<String, RuntimeError> {
    let label = format!("-w {wd}");
    if !wd.starts_with('/') {
        return Err(RuntimeError::BadInput(format!(
            "{label}: the working directory must be an absolute path"
        )));
    }
    let in_bind = |p: &str| binds.iter().any(|b| at_or_below(p, b));
    if in_bind(&tidy(wd)) {
        return Ok(wd.to_string());
    }
    // Below a bind (reached through a link), the host's view of the root shows the mount
    // point, not the bind: the runtime decides there.
    let r = match root.resolve(
        wd,
        Policy {
            create: Create::Nothing,
            refuse_kernel_mounts: true,
        },
    ) {
        Ok(r) if in_bind(&r.path) => return Ok(wd.to_string()),
        Err(InRootError::NotFound(p) | InRootError::NotADirectory(p)) if in_bind(&p) => {
            return Ok(wd.to_string());
        }
        Err(InRootError::NotFound(p)) => {
            return Err(RuntimeError::BadInput(format!(
                "{label}: {p} does not exist in the container"
            )));
        }
        Err(e) => return Err(refuse(&label, e)),
        Ok(r) => r,
    };
    if r.kind != Kind::Dir {
        return Err(refuse(&label, InRootError::NotADirectory(r.path)));
    }
    Ok(r.path)
}

/// One bind mount to place: host source, destination, and how to name it in a refusal.
pub struct Bind<'a> {
    /// The host path.
    pub source: &'a Path,
    /// The destination as given.
    pub destination: &'a str,
    /// `-v SPEC` or `mount point /etc/hosts`.
    pub label: String,
}

/// Places binds in order; `placed` holds the resolved destinations of the earlier ones (it
/// grows). Returns the destination to write into `config.json`.
pub fn bind(root: &Root, b: &Bind<'_>, placed: &mut Vec<String>) -> Result<String, RuntimeError> {
    let label = &b.label;
    let dest = tidy(b.destination);
    if !b.destination.starts_with('/') {
        return Err(RuntimeError::BadInput(format!(
            "{label}: the destination must be an absolute path"
        )));
    }
    for m in ["/", "/proc", "/sys"] {
        if dest == m || (m != "/" && at_or_below(&dest, m)) {
            return Err(RuntimeError::BadInput(format!(
                "{label}: cannot mount over {dest}: the container's own {m} is there"
            )));
        }
    }
    let source_is_dir = match std::fs::metadata(b.source) {
        Ok(m) => m.is_dir(),
        Err(_) => {
            return Err(RuntimeError::BadInput(format!(
                "{label}: invalid mount config for type \"bind\": bind source path does not \
                 exist: {}",
                b.source.display()
            )));
        }
    };
    if at_or_below(&dest, "/dev") || placed.iter().any(|p| at_or_below(&dest, p)) {
        placed.push(dest.clone());
        return Ok(dest);
    }
    let r = root
        .resolve(
            &dest,
            Policy {
                create: if source_is_dir {
                    Create::Dir
                } else {
                    Create::File
                },
                refuse_kernel_mounts: true,
            },
        )
        .map_err(|e| refuse(label, e))?;
    if r.path == "/" {
        return Err(RuntimeError::BadInput(format!(
            "{label}: {dest} resolves to / in the image: cannot mount over the root"
        )));
    }
    match (source_is_dir, r.kind) {
        (true, Kind::Dir) | (false, Kind::File | Kind::Other) => {}
        (true, _) => {
            return Err(RuntimeError::BadInput(format!(
                "{label}: {} is not a directory in the image (the source is a directory)",
                r.path
            )));
        }
        (false, _) => {
            return Err(RuntimeError::BadInput(format!(
                "{label}: {} is a directory in the image (the source is a file)",
                r.path
            )));
        }
    }
    placed.push(r.path.clone());
    Ok(r.path)
}

/// Places every bind of `mounts` (changing their destinations to the resolved ones).
pub fn binds(
    root: &Root,
    mounts: &mut [ExtraMount],
    placed: &mut Vec<String>,
) -> Result<(), RuntimeError> {
    for m in mounts {
        let label = format!("mount point {}", m.destination);
        m.destination = bind(
            root,
            &Bind {
                source: &m.source,
                destination: &m.destination,
                label,
            },
            placed,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let host = t.path().join("host");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(host.join("dir")).unwrap();
        std::fs::write(host.join("file"), "x").unwrap();
        std::fs::write(root.join("etc/passwd"), "").unwrap();
        symlink(&host, root.join("out")).unwrap();
        symlink("/proc/self/fd/7", root.join("fd7")).unwrap();
        (t, root, host)
    }

    fn msg(r: Result<String, RuntimeError>) -> String {
        match r {
            Err(RuntimeError::BadInput(m)) => m,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn workdirs() {
        let (_t, root, host) = setup();
        let r = Root::open(&root).unwrap();
        let workdir = |w: &str, l: &str| super::workdir(&r, w, l, &[]);
        assert_eq!(
            msg(workdir("/etc/passwd", "-w /etc/passwd")),
            "-w /etc/passwd: /etc/passwd is not a directory in the image"
        );
        assert!(msg(workdir("/proc/self/fd/5", "-w /proc/self/fd/5")).contains("inside /proc"));
        assert!(msg(workdir("/fd7", "-w /fd7")).contains("inside /proc"));
        assert!(msg(workdir("rel", "-w rel")).contains("absolute"));
        // Through an absolute link to a host directory: created inside the root only.
        let p = workdir("/out/new", "-w /out/new").unwrap();
        assert_eq!(p, format!("{}/new", host.display()));
        assert!(!host.join("new").exists());
        assert_eq!(workdir("/", "-w /").unwrap(), "/");
        // In a volume: checked in its host source, nothing made in the root or the source.
        let binds = [("/data".to_string(), host.as_path())];
        assert_eq!(
            super::workdir(&r, "/data/./dir", "-w /data/dir", &binds).unwrap(),
            "/data/dir"
        );
        let m = msg(super::workdir(&r, "/data/nope", "-w /data/nope", &binds));
        assert!(
            m.contains("not a directory in the volume mounted at /data"),
            "{m}"
        );
        assert!(!root.join("data").exists() && !host.join("nope").exists());
    }

    #[test]
    fn exec_workdirs() {
        let (_t, root, _host) = setup();
        let r = Root::open(&root).unwrap();
        std::fs::create_dir_all(root.join("data")).unwrap();
        symlink("/data", root.join("d")).unwrap();
        let binds = ["/data".to_string()];
        assert_eq!(exec_workdir(&r, "/etc", &binds).unwrap(), "/etc");
        assert!(msg(exec_workdir(&r, "/nope", &binds)).contains("does not exist"));
        assert!(msg(exec_workdir(&r, "/fd7", &binds)).contains("inside /proc"));
        // In a bind, directly or through a link: the runtime decides.
        assert_eq!(exec_workdir(&r, "/data/x", &binds).unwrap(), "/data/x");
        assert_eq!(exec_workdir(&r, "/d/x/y", &binds).unwrap(), "/d/x/y");
    }

    #[test]
    fn binds_resolve_and_refuse() {
        let (_t, root, host) = setup();
        let r = Root::open(&root).unwrap();
        let mut placed = Vec::new();
        let dir = host.join("dir");
        let file = host.join("file");
        let mk = |src: &Path, dest: &str, placed: &mut Vec<String>| {
            bind(
                &r,
                &Bind {
                    source: src,
                    destination: dest,
                    label: format!("-v {}:{dest}", src.display()),
                },
                placed,
            )
        };
        assert!(
            msg(mk(&dir, "/etc/passwd/y", &mut placed))
                .ends_with("/etc/passwd is not a directory in the image")
        );
        assert!(msg(mk(&dir, "/etc/passwd", &mut placed)).contains("not a directory"));
        assert!(msg(mk(&file, "/etc", &mut placed)).contains("is a directory"));
        assert!(msg(mk(&dir, "/proc/x", &mut placed)).contains("cannot mount over"));
        assert!(msg(mk(&dir, "/fd7/x", &mut placed)).contains("inside /proc"));
        assert!(msg(mk(&dir, "/", &mut placed)).contains("cannot mount over"));
        assert!(
            msg(mk(&host.join("gone"), "/x", &mut placed))
                .contains("bind source path does not exist")
        );
        let d = mk(&dir, "/out/data", &mut placed).unwrap();
        assert_eq!(d, format!("{}/data", host.display()));
        assert!(!host.join("data").exists());
        let f = mk(&file, "/etc/new.conf", &mut placed).unwrap();
        assert_eq!(f, "/etc/new.conf");
        assert!(root.join("etc/new.conf").is_file());
        // Below an earlier bind, or in /dev: passed through, nothing made in the root.
        assert_eq!(
            mk(&dir, &format!("{d}/sub"), &mut placed).unwrap(),
            format!("{d}/sub")
        );
        assert_eq!(mk(&dir, "/dev/snd", &mut placed).unwrap(), "/dev/snd");
        assert!(!root.join("dev").exists());
    }
}
