//! A snapshot's diff as an OCI layer: a directory in overlay form (a container's `upper/`,
//! or a staging tree for `COPY`) written as an uncompressed tar. Overlay whiteouts
//! (0/0 character devices) become `.wh.NAME` entries and opaque directories
//! (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry; entries are sorted by name; times
//! are clamped to `SOURCE_DATE_EPOCH` when given — so the same tree gives the same bytes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::BuildError;

/// How to write a layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    /// Clamp every entry's mtime to at most this (seconds since the epoch).
    pub epoch: Option<u64>,
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSummary {
    /// Entries written (whiteouts included).
    pub entries: usize,
}

/// Writes the tree at `dir` as a layer tar to `out`.
pub fn write_layer<W: Write>(
    dir: &Path,
    out: W,
    opts: LayerOptions,
) -> Result<LayerSummary, BuildError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut n = 0;
    walk(dir, "", &mut b, opts, &mut n)?;
    b.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(|e| BuildError::io("writing a layer", e))?;
    Ok(LayerSummary { entries: n })
}

/// Whether the tree at `dir` has nothing in it (an empty diff makes no layer).
pub fn is_empty_diff(dir: &Path) -> bool {
    fs::read_dir(dir)
        .map(|mut rd| rd.next().is_none())
        .unwrap_or(true)
}

fn header_for(md: &fs::Metadata, opts: LayerOptions) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(md.mode() & 0o7777);
    h.set_uid(md.uid() as u64);
    h.set_gid(md.gid() as u64);
    let mtime = md.mtime().max(0) as u64;
    h.set_mtime(opts.epoch.map_or(mtime, |e| mtime.min(e)));
    h.set_size(0);
    h
}

fn walk<W: Write>(
    base: &Path,
    rel: &str,
    b: &mut tar::Builder<W>,
    opts: LayerOptions,
    n: &mut usize,
) -> Result<(), BuildError> {
    let dir = base.join(rel);
    // A full disk is the layer's writing failing, whichever file was being added.
    let io = |what: &Path| {
        let what = what.display().to_string();
        move |e: std::io::Error| match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT) => {
                BuildError::io(format!("writing the layer (adding {what})"), e)
            }
            _ => BuildError::io(what, e),
        }
    };
    let mut names: Vec<std::ffi::OsString> = fs::read_dir(&dir)
        .map_err(io(&dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io(&dir))?;
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let path = dir.join(&name);
        let entry = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let md = fs::symlink_metadata(&path).map_err(io(&path))?;
        let ft = md.file_type();
        let mut h = header_for(&md, opts);
        if ft.is_char_device() && md.rdev() == 0 {
            // An overlay whiteout: the file was removed.
            let wh = match entry.rsplit_once('/') {
                Some((parent, leaf)) => format!("{parent}/.wh.{leaf}"),
                None => format!(".wh.{entry}"),
            };
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            b.append_data(&mut h, &wh, std::io::empty())
                .map_err(io(&path))?;
            *n += 1;
        } else if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, format!("{entry}/"), std::io::empty())
                .map_err(io(&path))?;
            *n += 1;
            let opaque = xattr::get(&path, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y");
            if opaque {
                let mut oh = header_for(&md, opts);
                oh.set_entry_type(tar::EntryType::Regular);
                oh.set_mode(0o644);
                b.append_data(&mut oh, format!("{entry}/.wh..wh..opq"), std::io::empty())
                    .map_err(io(&path))?;
                *n += 1;
            }
            walk(base, &entry, b, opts, n)?;
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let target = fs::read_link(&path).map_err(io(&path))?;
            b.append_link(&mut h, &entry, &target).map_err(io(&path))?;
            *n += 1;
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(md.len());
            let f = fs::File::open(&path).map_err(io(&path))?;
            b.append_data(&mut h, &entry, f).map_err(io(&path))?;
            *n += 1;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, &entry, std::io::empty())
                .map_err(io(&path))?;
            *n += 1;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = md.rdev();
            h.set_device_major(libc::major(rdev)).map_err(io(&path))?;
            h.set_device_minor(libc::minor(rdev)).map_err(io(&path))?;
            b.append_data(&mut h, &entry, std::io::empty())
                .map_err(io(&path))?;
            *n += 1;
        }
        // Sockets are not part of images.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(bytes: &[u8]) -> Vec<(String, u64)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn sorted_clamped_and_identical() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir(d.path().join("b")).unwrap();
        fs::write(d.path().join("b/z"), "z").unwrap();
        fs::write(d.path().join("a"), "a").unwrap();
        std::os::unix::fs::symlink("a", d.path().join("c")).unwrap();
        let opts = LayerOptions { epoch: Some(100) };
        let mut one = Vec::new();
        write_layer(d.path(), &mut one, opts).unwrap();
        let mut two = Vec::new();
        write_layer(d.path(), &mut two, opts).unwrap();
        assert_eq!(one, two);
        let e = entries(&one);
        let names: Vec<_> = e.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b/", "b/z", "c"]);
        assert!(e.iter().all(|(_, t)| *t == 100));
    }

    #[test]
    fn overlay_whiteouts_become_wh_entries() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIP: mknod of a whiteout needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        nix::sys::stat::mknod(
            &d.path().join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
        fs::create_dir(d.path().join("op")).unwrap();
        xattr::set(d.path().join("op"), "trusted.overlay.opaque", b"y").unwrap();
        let mut out = Vec::new();
        write_layer(d.path(), &mut out, LayerOptions::default()).unwrap();
        let names: Vec<_> = entries(&out).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, [".wh.gone", "op/", "op/.wh..wh..opq"]);
    }
}
