//! The build context: a directory, the `.dockerignore` patterns that hide parts of it,
//! resolving `COPY` sources (paths and globs, never outside the context), and the content
//! digest of a set of sources (the cache key's part that changes when a file does).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::BuildError;
use super::glob::{has_magic, path_matches};

/// One `.dockerignore` rule.
#[derive(Debug, Clone)]
struct Rule {
    components: Vec<String>,
    exclude: bool,
}

/// The most a `.dockerignore` may hold.
pub const MAX_IGNORE_BYTES: u64 = 4 << 20;

/// The `.dockerignore` at `path` (`None` when there is none), at most [`MAX_IGNORE_BYTES`].
fn read_ignore(path: &Path) -> Result<Option<String>, BuildError> {
    use std::io::Read;
    let Ok(f) = fs::File::open(path) else {
        return Ok(None);
    };
    let mut bytes = Vec::new();
    f.take(MAX_IGNORE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| BuildError::io(".dockerignore", e))?;
    if bytes.len() as u64 > MAX_IGNORE_BYTES {
        return Err(BuildError::Context(format!(
            ".dockerignore is larger than {} MiB",
            MAX_IGNORE_BYTES >> 20
        )));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// A build context directory and its ignore rules.
#[derive(Debug, Clone)]
pub struct Context {
    dir: PathBuf,
    rules: Vec<Rule>,
}

impl Context {
    /// The context at `dir`, reading its `.dockerignore` if there is one.
    pub fn open(dir: &Path) -> Result<Context, BuildError> {
        let dir = fs::canonicalize(dir)
            .map_err(|e| BuildError::Context(format!("build context {}: {e}", dir.display())))?;
        if !dir.is_dir() {
            return Err(BuildError::Context(format!(
                "build context {} is not a directory",
                dir.display()
            )));
        }
        let rules = match read_ignore(&dir.join(".dockerignore"))? {
            Some(text) => parse_ignore(&text),
            None => Vec::new(),
        };
        Ok(Context { dir, rules })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the relative path `rel` is hidden by `.dockerignore` (the last matching rule
    /// wins; a rule matching a directory hides what is under it).
    pub fn is_ignored(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
        let mut ignored = false;
        for rule in &self.rules {
            let pat: Vec<&str> = rule.components.iter().map(String::as_str).collect();
            let hit = (1..=parts.len()).any(|k| path_matches(&pat, &parts[..k]));
            if hit {
                ignored = rule.exclude;
            }
        }
        ignored
    }

    /// The context paths (relative, `/`-separated) a `COPY` source names: itself, or what
    /// its glob matches. Errors when it leaves the context or names nothing.
    pub fn resolve(&self, source: &str) -> Result<Vec<String>, BuildError> {
        let rel = clean(source).ok_or_else(|| {
            BuildError::Context(format!(
                "COPY source {source:?} is outside the build context: sources are paths inside the context directory"
            ))
        })?;
        if rel.is_empty() {
            return Ok(vec![String::new()]);
        }
        let found = if has_magic(&rel) {
            let pat: Vec<&str> = rel.split('/').collect();
            let mut hits = Vec::new();
            self.walk_matching(&pat, String::new(), &mut hits);
            hits.sort();
            hits
        } else if fs::symlink_metadata(self.dir.join(&rel)).is_ok() && !self.is_ignored(&rel) {
            vec![rel.clone()]
        } else {
            Vec::new()
        };
        if found.is_empty() {
            return Err(BuildError::Context(format!(
                "COPY source {source:?} not found in the build context {} (or excluded by .dockerignore)",
                self.dir.display()
            )));
        }
        Ok(found)
    }

    fn walk_matching(&self, pat: &[&str], prefix: String, hits: &mut Vec<String>) {
        let Some((first, rest)) = pat.split_first() else {
            return;
        };
        let dir = self.dir.join(&prefix);
        let Ok(rd) = fs::read_dir(&dir) else { return };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            if !super::glob::component_matches(first, &name) {
                continue;
            }
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            if self.is_ignored(&rel) {
                continue;
            }
            if rest.is_empty() {
                hits.push(rel);
            } else {
                self.walk_matching(rest, rel, hits);
            }
        }
    }

    /// The content digest of context paths `rels` (names, types, modes, contents, link
    /// targets, recursively; not times), ignored entries left out.
    pub fn digest(&self, rels: &[String]) -> Result<String, BuildError> {
        let mut h = Sha256::new();
        for rel in rels {
            self.hash_entry(rel, &mut h)?;
        }
        Ok(hex::encode(h.finalize()))
    }

    fn hash_entry(&self, rel: &str, h: &mut Sha256) -> Result<(), BuildError> {
        let path = self.dir.join(rel);
        let io = |e: std::io::Error| BuildError::Context(format!("{}: {e}", path.display()));
        let md = fs::symlink_metadata(&path).map_err(io)?;
        h.update(rel.as_bytes());
        h.update([0]);
        h.update(format!("{:o}:{}:{}", md.permissions().mode(), md.uid(), md.gid()).as_bytes());
        if md.file_type().is_symlink() {
            h.update(
                fs::read_link(&path)
                    .map_err(io)?
                    .as_os_str()
                    .as_encoded_bytes(),
            );
        } else if md.is_dir() {
            let mut names: Vec<String> = fs::read_dir(&path)
                .map_err(io)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let child = if rel.is_empty() {
                    n
                } else {
                    format!("{rel}/{n}")
                };
                if !self.is_ignored(&child) {
                    self.hash_entry(&child, h)?;
                }
            }
        } else if md.is_file() {
            use std::io::Read;
            let mut f = fs::File::open(&path).map_err(io)?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
        }
        h.update([1]);
        Ok(())
    }
}

/// `source` as a clean relative path inside the context (`None` when it climbs out).
fn clean(source: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(source.trim_start_matches('/')).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.join("/"))
}

fn parse_ignore(text: &str) -> Vec<Rule> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (exclude, pat) = match l.strip_prefix('!') {
                Some(p) => (false, p.trim()),
                None => (true, l),
            };
            let cleaned = clean(pat)?;
            (!cleaned.is_empty()).then(|| Rule {
                components: cleaned.split('/').map(str::to_string).collect(),
                exclude,
            })
        })
        .collect()
}

impl Context {
    /// A directory read as a source without `.dockerignore` (a `COPY --from` stage).
    pub fn plain(dir: &Path) -> Context {
        Context {
            dir: dir.to_path_buf(),
            rules: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_and_globs() {
        let d = tempfile::tempdir().unwrap();
        fs::write(
            d.path().join(".dockerignore"),
            "# c\n*.log\nbuild\n!keep.log\n",
        )
        .unwrap();
        fs::write(d.path().join("a.txt"), "a").unwrap();
        fs::write(d.path().join("b.txt"), "b").unwrap();
        fs::write(d.path().join("x.log"), "x").unwrap();
        fs::write(d.path().join("keep.log"), "k").unwrap();
        fs::create_dir(d.path().join("build")).unwrap();
        fs::write(d.path().join("build/out"), "o").unwrap();
        let c = Context::open(d.path()).unwrap();
        assert!(c.is_ignored("x.log"));
        assert!(!c.is_ignored("keep.log"));
        assert!(c.is_ignored("build/out"));
        assert_eq!(c.resolve("*.txt").unwrap(), vec!["a.txt", "b.txt"]);
        assert_eq!(c.resolve("*.log").unwrap(), vec!["keep.log"]);
        assert!(c.resolve("x.log").is_err());
        assert!(
            c.resolve("../etc/passwd")
                .unwrap_err()
                .to_string()
                .contains("outside")
        );
        assert!(
            c.resolve("missing")
                .unwrap_err()
                .to_string()
                .contains("not found")
        );
        let before = c.digest(&["a.txt".into()]).unwrap();
        fs::write(d.path().join("a.txt"), "changed").unwrap();
        assert_ne!(before, c.digest(&["a.txt".into()]).unwrap());
        // Ignored files do not change the digest of the whole context.
        let all = c.digest(&[String::new()]).unwrap();
        fs::write(d.path().join("x.log"), "changed").unwrap();
        assert_eq!(all, c.digest(&[String::new()]).unwrap());
    }
}
