//! A build context sent as a tar archive (the API's `POST /build`, as the `docker` CLI and
//! docker-py send it): plain, gzip or zstd compressed, unpacked into a scratch directory of
//! the store, bounded and refusing anything that would land outside it.
//!
//! Entries must be relative paths without `..` (an absolute or escaping name refuses the
//! whole context); symbolic links are kept as links (their targets are data: the build
//! resolves `COPY` sources inside the context); nothing is ever written through a link an
//! earlier entry made; hard links must point at a regular file the archive already holds;
//! devices and FIFOs are skipped. The uncompressed size and the entry count are capped.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::EngineError;

/// The most a context may hold once uncompressed (bytes, headers included).
pub const MAX_CONTEXT_BYTES: u64 = 8 << 30;

/// The most entries a context may hold.
pub const MAX_CONTEXT_ENTRIES: u64 = 1_000_000;

/// Limits for [`unpack_context`].
#[derive(Debug, Clone, Copy)]
pub struct ContextLimits {
    /// Uncompressed bytes.
    pub bytes: u64,
    /// Entries.
    pub entries: u64,
}

impl Default for ContextLimits {
    fn default() -> ContextLimits {
        ContextLimits {
            bytes: MAX_CONTEXT_BYTES,
            entries: MAX_CONTEXT_ENTRIES,
        }
    }
}

fn invalid(m: impl Into<String>) -> EngineError {
    EngineError::Invalid(m.into())
}

/// A reader that fails once more than `left` bytes went through it.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!(
                    "the build context is larger than {} bytes uncompressed",
                    self.limit
                ),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The archive's compression, from its first bytes.
fn decompress<'a>(r: impl Read + 'a) -> Result<Box<dyn Read + 'a>, EngineError> {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let head = r
        .fill_buf()
        .map_err(|e| invalid(format!("reading the build context: {e}")))?
        .to_vec();
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(
            zstd::stream::read::Decoder::with_buffer(r)
                .map_err(|e| invalid(format!("reading the zstd build context: {e}")))?,
        )
    } else if head.starts_with(b"BZh") {
        return Err(invalid(
            "the build context is bzip2-compressed: xrun reads plain, gzip or zstd tar contexts",
        ));
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(invalid(
            "the build context is xz-compressed: xrun reads plain, gzip or zstd tar contexts",
        ));
    } else {
        Box::new(r)
    })
}

/// `name` as a relative path inside the context (`.` components dropped); `None` when it
/// is absolute or has a `..`.
pub fn clean_relative(name: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => return None,
        }
    }
    Some(out)
}

/// Creates `rel`'s parent directories under `root`, refusing to pass through anything that
/// is not a real directory (a link an earlier entry made).
fn make_parents(root: &Path, rel: &Path) -> Result<(), EngineError> {
    let mut cur = root.to_path_buf();
    let parent = rel.parent().unwrap_or(Path::new(""));
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(invalid(format!(
                    "build context entry {}: {} is not a directory (entries never go through links)",
                    rel.display(),
                    cur.strip_prefix(root).unwrap_or(&cur).display()
                )));
            }
            Err(_) => fs::create_dir(&cur)
                .map_err(|e| EngineError::context(format!("creating {}", cur.display()), e))?,
        }
    }
    Ok(())
}

/// Removes what `path` holds (a later entry replaces an earlier one); a directory stays
/// when the new entry is a directory too.
fn clear(path: &Path, keep_dir: bool) -> Result<(), EngineError> {
    match fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path)
            .map_err(|e| EngineError::context(format!("replacing {}", path.display()), e)),
        Ok(_) => fs::remove_file(path)
            .map_err(|e| EngineError::context(format!("replacing {}", path.display()), e)),
    }
}

/// Unpacks the tar `archive` (plain, gzip or zstd) into the empty directory `dest` (see the
/// module doc). Any refused entry fails the whole context.
pub fn unpack_context(
    archive: impl Read,
    dest: &Path,
    limits: ContextLimits,
) -> Result<(), EngineError> {
    let capped = Capped {
        inner: decompress(archive)?,
        left: limits.bytes,
        limit: limits.bytes,
    };
    let mut tar = tar::Archive::new(capped);
    let read_err = |e: io::Error| {
        if e.kind() == io::ErrorKind::FileTooLarge {
            invalid(e.to_string())
        } else {
            invalid(format!("the build context is not a valid tar archive: {e}"))
        }
    };
    let mut count = 0u64;
    for entry in tar.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        count += 1;
        if count > limits.entries {
            return Err(invalid(format!(
                "the build context has more than {} entries",
                limits.entries
            )));
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = clean_relative(&raw).ok_or_else(|| {
            invalid(format!(
                "build context entry {raw:?} leaves the context (absolute or '..' paths are refused)"
            ))
        })?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let path = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644) & 0o7777;
        let kind = entry.header().entry_type();
        make_parents(dest, &rel)?;
        let io = |e: io::Error| EngineError::context(format!("unpacking {}", rel.display()), e);
        match kind {
            tar::EntryType::Directory => {
                clear(&path, true)?;
                if !path.is_dir() {
                    fs::create_dir(&path).map_err(io)?;
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700)).map_err(io)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(&path, false)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io)?;
                io::copy(&mut entry, &mut f).map_err(read_err)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(io)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(read_err)?
                    .ok_or_else(|| invalid(format!("symbolic link {raw:?} has no target")))?
                    .into_owned();
                clear(&path, false)?;
                std::os::unix::fs::symlink(&target, &path).map_err(io)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let trel = clean_relative(&target)
                    .filter(|t| !t.as_os_str().is_empty())
                    .ok_or_else(|| {
                        invalid(format!(
                            "hard link {raw:?} points outside the context ({target:?})"
                        ))
                    })?;
                // The target: a regular file an earlier entry made, reached without links.
                make_parents(dest, &trel)?;
                let tpath = dest.join(&trel);
                match fs::symlink_metadata(&tpath) {
                    Ok(m) if m.is_file() => {}
                    _ => {
                        return Err(invalid(format!(
                            "hard link {raw:?}: its target {target:?} is not a file earlier in the context"
                        )));
                    }
                }
                clear(&path, false)?;
                fs::hard_link(&tpath, &path).map_err(io)?;
            }
            // Devices, FIFOs, PAX/GNU metadata entries: nothing a build context needs.
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // Raw names: the builder's own checks would refuse the hostile ones.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn plain_and_gzip_contexts_unpack() {
        let t = tar_with(&[
            ("d/", tar::EntryType::Directory, b"", None),
            ("d/f", tar::EntryType::Regular, b"hello", None),
            ("l", tar::EntryType::Symlink, b"", Some("d/f")),
            ("h", tar::EntryType::Link, b"", Some("d/f")),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &t).unwrap();
        for bytes in [t.clone(), gz.finish().unwrap()] {
            let dir = tempfile::tempdir().unwrap();
            unpack_context(&bytes[..], dir.path(), ContextLimits::default()).unwrap();
            assert_eq!(fs::read(dir.path().join("d/f")).unwrap(), b"hello");
            assert_eq!(
                fs::read_link(dir.path().join("l")).unwrap(),
                Path::new("d/f")
            );
            assert_eq!(fs::read(dir.path().join("h")).unwrap(), b"hello");
        }
    }

    #[test]
    fn escapes_links_and_sizes_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        let cases: Vec<Vec<u8>> = vec![
            tar_with(&[("../escape", tar::EntryType::Regular, b"x", None)]),
            tar_with(&[("/abs", tar::EntryType::Regular, b"x", None)]),
            tar_with(&[
                (
                    "l",
                    tar::EntryType::Symlink,
                    b"",
                    Some(outside.path().to_str().unwrap()),
                ),
                ("l/victim", tar::EntryType::Regular, b"x", None),
            ]),
            tar_with(&[(
                "h",
                tar::EntryType::Link,
                b"",
                Some("../../../../etc/passwd"),
            )]),
        ];
        for t in cases {
            let dir = tempfile::tempdir().unwrap();
            let e = unpack_context(&t[..], dir.path(), ContextLimits::default()).unwrap_err();
            assert!(matches!(e, EngineError::Invalid(_)), "{e}");
            assert!(!victim.exists());
        }
        let big = tar_with(&[("f", tar::EntryType::Regular, &[7u8; 4096], None)]);
        let dir = tempfile::tempdir().unwrap();
        let e = unpack_context(
            &big[..],
            dir.path(),
            ContextLimits {
                bytes: 2048,
                entries: 10,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("larger than 2048 bytes"), "{e}");
        let e = unpack_context(&b"BZh91AY"[..], dir.path(), ContextLimits::default()).unwrap_err();
        assert!(e.to_string().contains("bzip2"), "{e}");
    }
}
