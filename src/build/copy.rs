//! Staging what a `COPY`/`ADD` adds: files and trees copied into a staging directory at
//! their destination (owner and mode set as asked, symlinks kept), local tar archives
//! extracted (`ADD`), new parent directories given the image's existing metadata. The
//! staging tree then becomes the step's layer ([`super::layer`]).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::BuildError;
use super::rootfs;

/// What to apply to everything copied.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    /// `--chown` ids.
    pub owner: Option<(u32, u32)>,
    /// `--chmod` mode bits.
    pub mode: Option<u32>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BuildError + '_ {
    move |e| BuildError::io(path.display().to_string(), e)
}

/// Creates the parents of `rel` (a `/`-separated path in the image) under `staging`, each
/// with the metadata it has in the image (`layers`), or root-owned 0755 when new.
pub fn make_parents(staging: &Path, rel: &str, layers: &[PathBuf]) -> Result<(), BuildError> {
    let mut acc = String::new();
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    for part in parts.iter().take(parts.len().saturating_sub(1)) {
        if !acc.is_empty() {
            acc.push('/');
        }
        acc.push_str(part);
        make_dir(staging, &acc, layers)?;
    }
    Ok(())
}

/// Creates directory `rel` under `staging` as it is in the image (or root 0755 when new).
pub fn make_dir(staging: &Path, rel: &str, layers: &[PathBuf]) -> Result<(), BuildError> {
    let p = staging.join(rel);
    if !replace_unless_dir(&p)? {
        return Ok(());
    }
    fs::create_dir(&p).map_err(io(&p))?;
    match rootfs::lookup(layers, rel).filter(|(_, md)| md.is_dir()) {
        Some((_, md)) => {
            fs::set_permissions(&p, fs::Permissions::from_mode(md.mode() & 0o7777))
                .map_err(io(&p))?;
            std::os::unix::fs::lchown(&p, Some(md.uid()), Some(md.gid())).map_err(io(&p))?;
            let t = filetime(md.mtime());
            set_mtime(&p, t)?;
        }
        None => {
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
        }
    }
    Ok(())
}

fn filetime(secs: i64) -> nix::sys::time::TimeSpec {
    nix::sys::time::TimeSpec::new(secs, 0)
}

fn set_mtime(p: &Path, t: nix::sys::time::TimeSpec) -> Result<(), BuildError> {
    nix::sys::stat::utimensat(
        None,
        p,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| BuildError::io(p.display().to_string(), e.into()))
}

/// Copies `src` (file, symlink or directory; a directory's contents) to `dst`.
pub fn copy_tree(src: &Path, dst: &Path, attrs: Attrs) -> Result<(), BuildError> {
    let md = fs::symlink_metadata(src).map_err(io(src))?;
    if md.is_dir() {
        if replace_unless_dir(dst)? {
            fs::create_dir(dst).map_err(io(dst))?;
            apply(dst, &md, attrs, false)?;
        }
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(io(src))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for n in names {
            copy_tree(&src.join(&n), &dst.join(&n), attrs)?;
        }
        return Ok(());
    }
    copy_one(src, dst, &md, attrs)
}

/// Makes way for a directory at `p`: true when one must be created (nothing there, or a
/// symlink or file that was removed), false when a real directory is there. Never follows a
/// symlink: one that an earlier source of the same step put in staging (`l -> /etc`) must not
/// lead a later source's files out of it.
fn replace_unless_dir(p: &Path) -> Result<bool, BuildError> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(false),
        Ok(_) => {
            fs::remove_file(p).map_err(io(p))?;
            Ok(true)
        }
        Err(_) => Ok(true),
    }
}

/// Copies `src` (not a directory) to `dst`, replacing what is there.
fn copy_one(src: &Path, dst: &Path, md: &fs::Metadata, attrs: Attrs) -> Result<(), BuildError> {
    if fs::symlink_metadata(dst).is_ok_and(|m| !m.is_dir()) {
        fs::remove_file(dst).map_err(io(dst))?;
    }
    if md.file_type().is_symlink() {
        let target = fs::read_link(src).map_err(io(src))?;
        std::os::unix::fs::symlink(&target, dst).map_err(io(dst))?;
        apply(dst, md, attrs, true)
    } else {
        fs::copy(src, dst).map_err(io(dst))?;
        apply(dst, md, attrs, false)
    }
}

/// Writes `body` as file `dst` (a heredoc source).
pub fn write_inline(dst: &Path, body: &str, attrs: Attrs) -> Result<(), BuildError> {
    fs::write(dst, body).map_err(io(dst))?;
    let mode = attrs.mode.unwrap_or(0o644);
    fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io(dst))?;
    if let Some((u, g)) = attrs.owner {
        std::os::unix::fs::lchown(dst, Some(u), Some(g)).map_err(io(dst))?;
    }
    Ok(())
}

fn apply(dst: &Path, md: &fs::Metadata, attrs: Attrs, link: bool) -> Result<(), BuildError> {
    let (u, g) = attrs.owner.unwrap_or((md.uid(), md.gid()));
    std::os::unix::fs::lchown(dst, Some(u), Some(g)).map_err(io(dst))?;
    if !link {
        let mode = attrs.mode.unwrap_or(md.mode() & 0o7777);
        fs::set_permissions(dst, fs::Permissions::from_mode(mode)).map_err(io(dst))?;
    }
    set_mtime(dst, filetime(md.mtime()))
}

/// Whether `path` is a tar archive `ADD` extracts (plain or gzip-compressed).
pub fn is_archive(path: &Path) -> bool {
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 512];
    let Ok(n) = read_full(&mut f, &mut head) else {
        return false;
    };
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return true;
    }
    n >= 262 && &head[257..262] == b"ustar"
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// Extracts archive `path` into directory `dst` (`ADD`), entries never leaving it.
pub fn extract_archive(path: &Path, dst: &Path) -> Result<(), BuildError> {
    let f = fs::File::open(path).map_err(io(path))?;
    let mut head = [0u8; 2];
    let gz = {
        let mut g = fs::File::open(path).map_err(io(path))?;
        read_full(&mut g, &mut head).map_err(io(path))? == 2 && head == [0x1f, 0x8b]
    };
    let reader: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut a = tar::Archive::new(reader);
    a.set_preserve_permissions(true);
    a.set_preserve_ownerships(true);
    a.set_preserve_mtime(true);
    a.set_overwrite(true);
    a.unpack(dst)
        .map_err(|e| BuildError::Context(format!("ADD {}: cannot extract: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_source_never_writes_through_a_copied_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        fs::create_dir(&outside).unwrap();
        // Source a: x -> <outside>; source b: x/evil. Copied one after the other.
        let a = d.path().join("a");
        fs::create_dir(&a).unwrap();
        std::os::unix::fs::symlink(&outside, a.join("x")).unwrap();
        let b = d.path().join("b");
        fs::create_dir_all(b.join("x")).unwrap();
        fs::write(b.join("x/evil"), "e").unwrap();
        let dst = d.path().join("staging");
        fs::create_dir(&dst).unwrap();
        let attrs = Attrs {
            owner: None,
            mode: None,
        };
        copy_tree(&a, &dst, attrs).unwrap();
        copy_tree(&b, &dst, attrs).unwrap();
        assert!(
            !outside.join("evil").exists(),
            "written through the symlink"
        );
        assert_eq!(fs::read(dst.join("x/evil")).unwrap(), b"e");
        // make_dir (parents of a file source) does not follow one either.
        std::os::unix::fs::symlink(&outside, dst.join("y")).unwrap();
        make_dir(&dst, "y", &[]).unwrap();
        assert!(fs::symlink_metadata(dst.join("y")).unwrap().is_dir());
    }

    #[test]
    fn copies_with_mode_and_keeps_links() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("sub/f"), "x").unwrap();
        std::os::unix::fs::symlink("f", src.join("sub/l")).unwrap();
        let dst = d.path().join("dst");
        copy_tree(
            &src,
            &dst,
            Attrs {
                owner: None,
                mode: Some(0o600),
            },
        )
        .unwrap();
        assert_eq!(fs::read(dst.join("sub/f")).unwrap(), b"x");
        assert_eq!(
            fs::metadata(dst.join("sub/f"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(fs::read_link(dst.join("sub/l")).unwrap(), Path::new("f"));
    }
}
