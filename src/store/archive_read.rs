//! Unpacking an image archive tar (`xrun load`, `docker load`) into a private directory.
//!
//! Only the entries an OCI image layout or a `docker save` archive can hold are kept:
//! `oci-layout`, `index.json`, `manifest.json`, `repositories`, `blobs/sha256/<hex>`,
//! `<hex>.json` (a config, old `docker save`), `<hex>/layer.tar` (a layer, old `docker save`)
//! and `<hex>.tar` (a layer, skopeo's `docker-archive:`). Every other entry is skipped. A name is accepted only in one of these
//! shapes (hex checked), so the names written under the directory are xrun's own and can never
//! leave it. Symbolic links between accepted names (old `docker save` links repeated
//! layers) become copies once the whole tar has been read; links to anything else are skipped.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::StoreError;
use super::fsutil::io_err;
use crate::limits::{MAX_CONFIG_BYTES, MAX_LAYOUT_JSON_BYTES, MAX_LAYOUT_TAR_ENTRIES, human};

/// The relative path, under an unpacked archive, of an archive member `name` (as a tar entry
/// or as named in `manifest.json`), or `None` when it is not one an image archive holds.
pub(crate) fn member_path(name: &str) -> Option<PathBuf> {
    let name = name.trim_start_matches("./");
    let is_hex =
        |s: &str| s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match name {
        "oci-layout" | "index.json" | "manifest.json" | "repositories" => {
            return Some(PathBuf::from(name));
        }
        _ => {}
    }
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        return is_hex(hex).then(|| Path::new("blobs/sha256").join(hex));
    }
    if let Some(hex) = name.strip_suffix("/layer.tar") {
        return is_hex(hex).then(|| PathBuf::from(name));
    }
    if let Some(hex) = name
        .strip_suffix(".json")
        .or_else(|| name.strip_suffix(".tar"))
    {
        return is_hex(hex).then(|| PathBuf::from(name));
    }
    None
}

/// The member a symbolic link at `name` pointing to `target` designates, when both are members.
fn link_target(name: &str, target: &str) -> Option<PathBuf> {
    if target.starts_with('/') {
        return None;
    }
    let name = name.trim_start_matches("./");
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    member_path(&parts.join("/"))
}

/// Copies the image-archive members of the tar at `input` into `dest` (see the module doc).
/// `bad` turns a message into the caller's error for a malformed tar.
pub(crate) fn unpack_archive(
    input: &mut dyn Read,
    dest: &Path,
    bad: &dyn Fn(String) -> StoreError,
) -> Result<(), StoreError> {
    let blobs = dest.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(io_err(&blobs))?;
    let mut archive = tar::Archive::new(io::BufReader::new(input));
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar: {e}")))?;
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (count, entry) in entries.enumerate() {
        if count as u64 >= MAX_LAYOUT_TAR_ENTRIES {
            return Err(bad(format!(
                "the tar has more than {MAX_LAYOUT_TAR_ENTRIES} entries (the limit): refusing it"
            )));
        }
        let mut entry = entry.map_err(|e| bad(format!("reading the tar: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let Some(rel) = member_path(&name) else {
            continue;
        };
        // Members read into memory later are refused by their header, before any copy.
        let limit = if rel.extension().is_some_and(|e| e == "json")
            && rel != Path::new("index.json")
            && rel != Path::new("manifest.json")
        {
            Some(MAX_CONFIG_BYTES)
        } else if rel.starts_with("blobs") || rel.extension().is_some_and(|e| e == "tar") {
            None
        } else {
            Some(MAX_LAYOUT_JSON_BYTES)
        };
        if let Some(limit) = limit.filter(|l| entry.size() > *l) {
            return Err(bad(format!(
                "its {} is larger than {} (the limit): refusing it",
                name.trim_start_matches("./"),
                human(limit)
            )));
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let target = dest.join(&rel);
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(io_err(parent))?;
                }
                let mut out = File::create(&target).map_err(io_err(&target))?;
                io::copy(&mut entry, &mut out).map_err(|e| bad(format!("reading {name}: {e}")))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                // Hard links name their target from the archive root.
                let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                    member_path(&target)
                } else {
                    link_target(&name, &target)
                };
                if let Some(to) = resolved {
                    links.push((rel, to));
                }
            }
            _ => {}
        }
    }
    for (rel, to) in links {
        let (from, target) = (dest.join(&to), dest.join(&rel));
        if !from.is_file() || target.exists() {
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::copy(&from, &target).map_err(io_err(&target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_archive_shapes_are_members() {
        assert_eq!(member_path("./manifest.json"), Some("manifest.json".into()));
        assert!(member_path(&format!("blobs/sha256/{HEX}")).is_some());
        assert!(member_path(&format!("{HEX}/layer.tar")).is_some());
        assert!(member_path(&format!("{HEX}.json")).is_some());
        assert!(member_path(&format!("{HEX}.tar")).is_some());
        for bad in [
            "../manifest.json",
            "/etc/passwd",
            "blobs/sha256/../../x",
            "blobs/sha256/ABCDEF",
            &format!("../{HEX}/layer.tar"),
            &format!("{HEX}/../layer.tar"),
            &format!("blobs/sha256/{HEX}/x"),
            "x.json",
        ] {
            assert_eq!(member_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn links_resolve_only_to_members() {
        let name = format!("{HEX}/layer.tar");
        let other = HEX.replace('0', "1");
        assert_eq!(
            link_target(&name, &format!("../{other}/layer.tar")),
            Some(PathBuf::from(format!("{other}/layer.tar")))
        );
        assert_eq!(link_target(&name, "/etc/passwd"), None);
        assert_eq!(link_target(&name, "../../../etc/passwd"), None);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

        /// Entry names: archive shapes, near misses and hostile paths.
        fn arb_name() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "manifest.json".to_string(),
                    "./index.json".to_string(),
                    "oci-layout".to_string(),
                    "repositories".to_string(),
                    format!("blobs/sha256/{HEX}"),
                    format!("{HEX}/layer.tar"),
                    format!("{HEX}.json"),
                    format!("{HEX}.tar"),
                    format!("../{HEX}.tar"),
                    format!("/{HEX}.json"),
                    format!("blobs/sha256/../../{HEX}"),
                    format!("{HEX}/../../outside"),
                    "../outside/victim".to_string(),
                    "/tmp/victim".to_string(),
                ]),
                "[./a-f0-9]{0,80}",
                "\\PC{0,40}",
            ]
        }

        #[derive(Debug, Clone)]
        enum Kind {
            File(Vec<u8>),
            Dir,
            Symlink(String),
            HardLink(String),
        }

        fn arb_entry() -> impl Strategy<Value = (String, Kind)> {
            let kind = prop_oneof![
                4 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
                1 => Just(Kind::Dir),
                2 => prop_oneof![arb_name(), Just("../../outside/victim".to_string())]
                    .prop_map(Kind::Symlink),
                2 => arb_name().prop_map(Kind::HardLink),
            ];
            (arb_name(), kind)
        }

        /// A tar with the names written verbatim into the headers (no checks by the writer).
        fn tar_of(entries: &[(String, Kind)]) -> Vec<u8> {
            let mut out = Vec::new();
            for (name, kind) in entries {
                let mut h = tar::Header::new_old();
                let raw = name.as_bytes();
                let n = raw.len().min(99);
                h.as_old_mut().name[..n].copy_from_slice(&raw[..n]);
                let data: &[u8] = match kind {
                    Kind::File(d) => {
                        h.set_entry_type(tar::EntryType::Regular);
                        d
                    }
                    Kind::Dir => {
                        h.set_entry_type(tar::EntryType::Directory);
                        &[]
                    }
                    Kind::Symlink(t) | Kind::HardLink(t) => {
                        h.set_entry_type(if matches!(kind, Kind::Symlink(_)) {
                            tar::EntryType::Symlink
                        } else {
                            tar::EntryType::Link
                        });
                        let t = t.as_bytes();
                        let m = t.len().min(99);
                        h.as_old_mut().linkname[..m].copy_from_slice(&t[..m]);
                        &[]
                    }
                };
                h.set_size(data.len() as u64);
                h.set_mode(0o644);
                h.set_cksum();
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(data);
                out.resize(out.len().div_ceil(512) * 512, 0);
            }
            out.resize(out.len() + 1024, 0);
            out
        }

        /// Every path under `dir`, relative, with whether it is a regular file.
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(PathBuf, fs::FileType)>) {
            for e in fs::read_dir(dir).unwrap().flatten() {
                let ft = e.file_type().unwrap();
                out.push((e.path().strip_prefix(base).unwrap().to_path_buf(), ft));
                if ft.is_dir() {
                    walk(&e.path(), base, out);
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig {
                cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(300),
                failure_persistence: None,
                ..ProptestConfig::default()
            })]

            /// Whatever the archive holds, only member-shaped regular files appear under the
            /// destination, never a link, and nothing beside it changes.
            #[test]
            fn random_archives_only_yield_members(entries in prop::collection::vec(arb_entry(), 0..12)) {
                let sandbox = tempfile::tempdir().unwrap();
                let outside = sandbox.path().join("outside");
                fs::create_dir(&outside).unwrap();
                fs::write(outside.join("victim"), b"secret").unwrap();
                let dest = sandbox.path().join("a").join("b");
                fs::create_dir_all(&dest).unwrap();
                let tar = tar_of(&entries);
                let bad = |m: String| StoreError::InvalidInput(m);
                let _ = unpack_archive(&mut &tar[..], &dest, &bad);
                let mut found = Vec::new();
                walk(&dest, &dest, &mut found);
                for (rel, ft) in &found {
                    prop_assert!(!ft.is_symlink(), "a link was made: {}", rel.display());
                    if ft.is_file() {
                        let name = rel.to_str().unwrap();
                        prop_assert_eq!(member_path(name), Some(rel.clone()), "not a member: {}", name);
                    }
                }
                let mut beside = Vec::new();
                walk(sandbox.path(), sandbox.path(), &mut beside);
                beside.retain(|(p, _)| !p.starts_with("a/b"));
                beside.sort_by(|x, y| x.0.cmp(&y.0));
                let names: Vec<_> = beside.iter().map(|(p, _)| p.to_str().unwrap().to_string()).collect();
                prop_assert_eq!(names, vec!["a", "outside", "outside/victim"]);
                prop_assert_eq!(fs::read(outside.join("victim")).unwrap(), b"secret".to_vec());
            }
        }
    }
}
