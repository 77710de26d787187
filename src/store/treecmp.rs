//! Comparing two unpacked trees (a snapshot against a fresh extraction of its layer): names,
//! types, permission bits, owners, sizes, file contents, link targets, device numbers and
//! overlay opaque marks. Times are not compared (a snapshot's are the layer's, but nothing
//! relies on them). Hard links are compared as the files they are.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The first difference between trees `a` and `b`, as one line naming the path; `None`
/// when they are the same.
pub fn first_difference(a: &Path, b: &Path) -> io::Result<Option<String>> {
    compare_dir(a, b, Path::new(""))
}

fn names(dir: &Path) -> io::Result<BTreeSet<std::ffi::OsString>> {
    fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

fn compare_dir(a: &Path, b: &Path, rel: &Path) -> io::Result<Option<String>> {
    let (na, nb) = (names(a)?, names(b)?);
    if let Some(n) = na.symmetric_difference(&nb).next() {
        let side = if na.contains(n) { "extra" } else { "missing" };
        return Ok(Some(format!("{side} entry {}", rel.join(n).display())));
    }
    for n in &na {
        let (pa, pb, r) = (a.join(n), b.join(n), rel.join(n));
        if let Some(d) = compare_entry(&pa, &pb, &r)? {
            return Ok(Some(d));
        }
    }
    Ok(None)
}

fn compare_entry(a: &Path, b: &Path, rel: &Path) -> io::Result<Option<String>> {
    let (ma, mb) = (fs::symlink_metadata(a)?, fs::symlink_metadata(b)?);
    let shown = rel.display();
    if ma.file_type() != mb.file_type() {
        return Ok(Some(format!("{shown}: a different file type")));
    }
    if ma.mode() & 0o7777 != mb.mode() & 0o7777 {
        return Ok(Some(format!(
            "{shown}: mode {:o}, the layer says {:o}",
            ma.mode() & 0o7777,
            mb.mode() & 0o7777
        )));
    }
    if (ma.uid(), ma.gid()) != (mb.uid(), mb.gid()) {
        return Ok(Some(format!("{shown}: a different owner")));
    }
    let ft = ma.file_type();
    if ft.is_dir() {
        if crate::store::is_opaque(a) != crate::store::is_opaque(b) {
            return Ok(Some(format!("{shown}: a different opaque mark")));
        }
        return compare_dir(a, b, rel);
    }
    if ft.is_symlink() {
        if fs::read_link(a)? != fs::read_link(b)? {
            return Ok(Some(format!("{shown}: a different link target")));
        }
        return Ok(None);
    }
    if ft.is_file() {
        if ma.len() != mb.len() {
            return Ok(Some(format!(
                "{shown}: {} bytes, the layer says {}",
                ma.len(),
                mb.len()
            )));
        }
        if !same_bytes(a, b)? {
            return Ok(Some(format!("{shown}: different content")));
        }
        return Ok(None);
    }
    if ma.rdev() != mb.rdev() {
        return Ok(Some(format!("{shown}: a different device number")));
    }
    Ok(None)
}

fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tree(root: &Path) {
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink("passwd", root.join("etc/link")).unwrap();
    }

    #[test]
    fn finds_each_kind_of_difference() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        tree(&a);
        tree(&b);
        assert_eq!(first_difference(&a, &b).unwrap(), None);

        fs::write(a.join("etc/passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
        let d = first_difference(&a, &b).unwrap().unwrap();
        assert!(d.contains("etc/passwd") && d.contains("bytes"), "{d}");
        fs::write(a.join("etc/passwd"), "root:x:0:0::/root:/bin/zz\n").unwrap();
        assert!(
            first_difference(&a, &b)
                .unwrap()
                .unwrap()
                .contains("content")
        );
        tree_restore(&a);

        fs::set_permissions(a.join("etc/passwd"), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(first_difference(&a, &b).unwrap().unwrap().contains("mode"));
        fs::set_permissions(a.join("etc/passwd"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(b.join("etc/passwd"), fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(first_difference(&a, &b).unwrap(), None);

        fs::remove_file(b.join("etc/link")).unwrap();
        std::os::unix::fs::symlink("other", b.join("etc/link")).unwrap();
        assert!(
            first_difference(&a, &b)
                .unwrap()
                .unwrap()
                .contains("link target")
        );
        fs::remove_file(b.join("etc/link")).unwrap();
        assert!(
            first_difference(&a, &b)
                .unwrap()
                .unwrap()
                .starts_with("extra entry etc/link")
        );
        fs::write(b.join("etc/new"), "").unwrap();
        std::os::unix::fs::symlink("other", a.join("etc/link2")).unwrap();
        let d = first_difference(&a, &b).unwrap().unwrap();
        assert!(d.contains("entry etc/"), "{d}");
    }

    fn tree_restore(root: &Path) {
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
    }
}
