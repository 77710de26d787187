//! A read-only merged view of an image's layers (lowest first), as overlayfs would show them,
//! without mounting anything.
//!
//! Whiteouts are honoured in both forms a snapshot may hold: OCI tar form (`.wh.NAME` files
//! and the `.wh..wh..opq` opaque marker) and overlayfs form (a 0/0 character device, and a
//! directory with the `trusted.overlay.opaque` or `user.overlay.opaque` xattr set to `y`).
//! A plain directory is a one-layer view.
//!
//! Paths inside the view are relative, `/`-separated, without a leading `/` (`usr/bin/sh`);
//! the root is the empty path. Symlinks are resolved inside the view only: an absolute target
//! restarts at the image's root, `..` never climbs above it. The host's files are never read
//! through a link.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How many symlinks one resolution may follow before giving up (as Linux's `ELOOP`).
const MAX_LINKS: usize = 40;

/// Errors building a view.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A layer directory could not be read.
    #[error("{path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// What.
        source: std::io::Error,
    },
}

/// What an entry of the merged view is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A device, FIFO or socket.
    Other,
}

/// One visible entry: which layer it comes from and what it is.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index into the layer list (0 = lowest).
    pub layer: usize,
    /// Its kind.
    pub kind: Kind,
}

/// Why a path could not be resolved inside the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveError {
    /// A component does not exist (the path inside the image that was missing).
    NotFound(String),
    /// A component that must be a directory is not one.
    NotADirectory(String),
    /// Too many symlinks.
    Loop(String),
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResolveError::NotFound(p) => write!(f, "/{p} does not exist in the image"),
            ResolveError::NotADirectory(p) => write!(f, "/{p} is not a directory"),
            ResolveError::Loop(p) => write!(f, "too many symlinks resolving /{p}"),
        }
    }
}

/// The merged view.
#[derive(Debug, Clone)]
pub struct Rootfs {
    layers: Vec<PathBuf>,
    entries: BTreeMap<String, Entry>,
}

impl Rootfs {
    /// Builds the merged view of `layers` (lowest first).
    pub fn open(layers: &[PathBuf]) -> Result<Rootfs, RootfsError> {
        let mut fs = Rootfs {
            layers: layers.to_vec(),
            entries: BTreeMap::new(),
        };
        fs.entries.insert(
            String::new(),
            Entry {
                layer: 0,
                kind: Kind::Dir,
            },
        );
        for (i, dir) in layers.iter().enumerate() {
            fs.add_layer(i, dir, "")?;
        }
        Ok(fs)
    }

    fn add_layer(&mut self, layer: usize, host_dir: &Path, rel: &str) -> Result<(), RootfsError> {
        let io = |source| RootfsError::Io {
            path: host_dir.to_path_buf(),
            source,
        };
        let mut listing: Vec<(String, std::fs::FileType)> = Vec::new();
        for de in std::fs::read_dir(host_dir).map_err(io)? {
            let de = de.map_err(io)?;
            let ft = de.file_type().map_err(io)?;
            let Some(name) = de.file_name().to_str().map(str::to_string) else {
                continue; // Non-UTF-8 names cannot be named by a config; skip them.
            };
            listing.push((name, ft));
        }
        // Opaque directory: hides what lower layers had inside it.
        let opaque = layer > 0
            && (listing.iter().any(|(n, _)| n == ".wh..wh..opq") || has_opaque_xattr(host_dir));
        if opaque {
            self.remove_below(rel, true);
        }
        // Whiteouts first, then entries, so order inside the listing does not matter.
        for (name, ft) in &listing {
            if let Some(hidden) = name.strip_prefix(".wh.") {
                if hidden != ".wh..opq" {
                    self.remove_below(&join(rel, hidden), false);
                }
            } else if ft.is_char_device() && layer > 0 {
                let is_whiteout = std::fs::symlink_metadata(host_dir.join(name))
                    .map(|m| m.rdev() == 0)
                    .unwrap_or(false);
                if is_whiteout {
                    self.remove_below(&join(rel, name), false);
                }
            }
        }
        for (name, ft) in listing {
            if name.starts_with(".wh.") {
                continue;
            }
            let path = join(rel, &name);
            let kind = if ft.is_dir() {
                Kind::Dir
            } else if ft.is_file() {
                Kind::File
            } else if ft.is_symlink() {
                Kind::Symlink
            } else {
                if ft.is_char_device()
                    && layer > 0
                    && !self.entries.contains_key(&path)
                    && std::fs::symlink_metadata(host_dir.join(&name))
                        .map(|m| m.rdev() == 0)
                        .unwrap_or(false)
                {
                    continue; // overlay whiteout, already applied
                }
                Kind::Other
            };
            if kind != Kind::Dir {
                // A non-directory replaces whatever was there, subtree included.
                self.remove_below(&path, false);
            } else if let Some(old) = self.entries.get(&path)
                && old.kind != Kind::Dir
            {
                self.remove_below(&path, false);
            }
            self.entries.insert(path.clone(), Entry { layer, kind });
            if kind == Kind::Dir {
                self.add_layer(layer, &host_dir.join(&name), &path)?;
            }
        }
        Ok(())
    }

    /// Removes `path` and everything under it (or only what is under it, with `children_only`).
    fn remove_below(&mut self, path: &str, children_only: bool) {
        if !children_only {
            self.entries.remove(path);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let doomed: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
    }

    /// The entry at a literal path (no symlink resolution).
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.entries.get(path.trim_matches('/'))
    }

    /// Where the entry at a literal path lives on the host.
    pub fn host_path(&self, path: &str, entry: &Entry) -> PathBuf {
        self.layers[entry.layer].join(path.trim_matches('/'))
    }

    /// Every visible regular file: (path inside the image, path on the host), sorted by path.
    pub fn files(&self) -> Vec<(&str, PathBuf)> {
        self.entries
            .iter()
            .filter(|(_, e)| e.kind == Kind::File)
            .map(|(p, e)| (p.as_str(), self.layers[e.layer].join(p)))
            .collect()
    }

    /// Number of visible entries of every kind (the root included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the view holds nothing but its root.
    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    /// Resolves `path` (absolute, or relative to `cwd`) inside the image, following every
    /// symlink, the last component included. Returns the final literal path.
    pub fn resolve(&self, path: &str, cwd: &str) -> Result<String, ResolveError> {
        let mut links = 0usize;
        let start = if path.starts_with('/') { "" } else { cwd };
        let mut stack: Vec<String> = Vec::new();
        for c in start.split('/').filter(|c| !c.is_empty() && *c != ".") {
            stack.push(c.to_string());
        }
        // Components still to walk, in reverse order (pop from the end).
        let mut todo: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .rev()
            .map(str::to_string)
            .collect();
        while let Some(c) = todo.pop() {
            match c.as_str() {
                "." => continue,
                ".." => {
                    stack.pop();
                    continue;
                }
                _ => {}
            }
            stack.push(c);
            let cur = stack.join("/");
            let Some(e) = self.entries.get(&cur) else {
                return Err(ResolveError::NotFound(cur));
            };
            match e.kind {
                Kind::Symlink => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(ResolveError::Loop(path.trim_start_matches('/').into()));
                    }
                    let host = self.layers[e.layer].join(&cur);
                    let target = std::fs::read_link(&host)
                        .map_err(|_| ResolveError::NotFound(cur.clone()))?;
                    let target = target.to_string_lossy().into_owned();
                    stack.pop();
                    if target.starts_with('/') {
                        stack.clear();
                    }
                    for t in target.split('/').filter(|t| !t.is_empty()).rev() {
                        todo.push(t.to_string());
                    }
                }
                Kind::Dir => {}
                _ => {
                    if !todo.is_empty() {
                        return Err(ResolveError::NotADirectory(cur));
                    }
                }
            }
        }
        Ok(stack.join("/"))
    }
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn has_opaque_xattr(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|k| matches!(xattr::get(dir, k), Ok(Some(v)) if v == b"y"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let d = root.join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn whiteouts_opaque_and_replacement() {
        let t = tempfile::tempdir().unwrap();
        let l0 = layer(t.path(), "l0");
        let l1 = layer(t.path(), "l1");
        std::fs::create_dir_all(l0.join("etc/sub")).unwrap();
        std::fs::write(l0.join("etc/a"), "a").unwrap();
        std::fs::write(l0.join("etc/sub/b"), "b").unwrap();
        std::fs::create_dir_all(l0.join("opq")).unwrap();
        std::fs::write(l0.join("opq/old"), "x").unwrap();
        std::fs::write(l0.join("keep"), "k").unwrap();
        std::fs::create_dir_all(l0.join("dir2file")).unwrap();
        std::fs::write(l0.join("dir2file/inner"), "i").unwrap();
        // Upper layer: whiteout etc/sub, opaque opq, replace dir2file by a file.
        std::fs::create_dir_all(l1.join("etc")).unwrap();
        std::fs::write(l1.join("etc/.wh.sub"), "").unwrap();
        std::fs::create_dir_all(l1.join("opq")).unwrap();
        std::fs::write(l1.join("opq/.wh..wh..opq"), "").unwrap();
        std::fs::write(l1.join("opq/new"), "n").unwrap();
        std::fs::write(l1.join("dir2file"), "f").unwrap();
        let fs = Rootfs::open(&[l0, l1.clone()]).unwrap();
        assert!(fs.entry("etc/a").is_some());
        assert!(fs.entry("etc/sub").is_none());
        assert!(fs.entry("etc/sub/b").is_none());
        assert!(fs.entry("opq/old").is_none());
        assert_eq!(fs.entry("opq/new").unwrap().layer, 1);
        assert_eq!(fs.entry("dir2file").unwrap().kind, Kind::File);
        assert!(fs.entry("dir2file/inner").is_none());
        assert!(fs.entry("keep").is_some());
        let files: Vec<&str> = fs.files().into_iter().map(|(p, _)| p).collect();
        assert_eq!(files, ["dir2file", "etc/a", "keep", "opq/new"]);
        assert_eq!(
            fs.host_path("opq/new", fs.entry("opq/new").unwrap()),
            l1.join("opq/new")
        );
    }

    #[test]
    fn overlay_form_whiteout() {
        // A 0/0 character device hides the lower entry (needs CAP_MKNOD: root here).
        let t = tempfile::tempdir().unwrap();
        let l0 = layer(t.path(), "l0");
        let l1 = layer(t.path(), "l1");
        std::fs::write(l0.join("gone"), "g").unwrap();
        let dev = l1.join("gone");
        let c = std::ffi::CString::new(dev.to_str().unwrap()).unwrap();
        // SAFETY: mknod with a valid NUL-terminated path.
        let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        if rc != 0 {
            eprintln!("skip: cannot mknod a whiteout here (not root?)");
            return;
        }
        let fs = Rootfs::open(&[l0, l1]).unwrap();
        assert!(fs.entry("gone").is_none());
    }

    #[test]
    fn resolve_stays_inside() {
        let t = tempfile::tempdir().unwrap();
        let l0 = layer(t.path(), "l0");
        std::fs::create_dir_all(l0.join("usr/bin")).unwrap();
        std::fs::write(l0.join("usr/bin/busybox"), "x").unwrap();
        symlink("usr/bin", l0.join("bin")).unwrap();
        symlink("/usr/bin/busybox", l0.join("usr/bin/sh")).unwrap();
        symlink("../../../../../usr/bin/busybox", l0.join("usr/bin/up")).unwrap();
        symlink("/etc/passwd", l0.join("usr/bin/host")).unwrap();
        symlink("loop2", l0.join("loop1")).unwrap();
        symlink("loop1", l0.join("loop2")).unwrap();
        let fs = Rootfs::open(&[l0]).unwrap();
        assert_eq!(fs.resolve("/bin/sh", "").unwrap(), "usr/bin/busybox");
        assert_eq!(fs.resolve("sh", "usr/bin").unwrap(), "usr/bin/busybox");
        assert_eq!(fs.resolve("/bin/up", "").unwrap(), "usr/bin/busybox");
        // /etc/passwd exists on the host but not in the image.
        assert_eq!(
            fs.resolve("/bin/host", ""),
            Err(ResolveError::NotFound("etc".into()))
        );
        assert!(matches!(
            fs.resolve("/loop1", ""),
            Err(ResolveError::Loop(_))
        ));
        assert!(matches!(
            fs.resolve("/usr/bin/busybox/x", ""),
            Err(ResolveError::NotADirectory(_))
        ));
    }
}
