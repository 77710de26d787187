//! [`Engine::list_images_filtered`]: the stored images one entry per manifest (with every
//! name it has), kept by Docker's image-list filters ([`ImageFilters`]: `reference`,
//! `dangling`, `label`, `before`, `since`).

use crate::reference::{ImageRef, familiar_name};
use crate::store::ImageRecord;

use super::{Engine, EngineError};

/// Docker's image-list filters; every filter given must hold (several values of
/// `reference`: any of them; an image is then listed with the names that match only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFilters {
    /// `name`, `name:tag`, with `*` globs that stop at `/`.
    pub references: Vec<String>,
    /// Only untagged images (`true`) or only tagged ones (`false`).
    pub dangling: Option<bool>,
    /// `KEY` (present) or `KEY=VALUE` labels of the image config.
    pub labels: Vec<String>,
    /// Only images created before this image (a reference or an id).
    pub before: Option<String>,
    /// Only images created after this image (a reference or an id).
    pub since: Option<String>,
}

/// One listed image: a manifest, every record (name) it has, and its config.
#[derive(Debug, Clone)]
pub struct ListedImage {
    /// Its records, one per name (at least one).
    pub records: Vec<ImageRecord>,
    /// The image config (JSON).
    pub config: serde_json::Value,
}

impl ListedImage {
    /// When the image was made (the config's `created`, else when it was stored; RFC 3339).
    pub fn created(&self) -> &str {
        self.config["created"]
            .as_str()
            .unwrap_or(&self.records[0].created)
    }
}

/// Seconds since the epoch of an RFC 3339 time (0 when it does not parse).
pub fn unix_time(rfc3339: &str) -> i64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .unwrap_or(0)
}

impl Engine {
    /// The stored images, one entry per manifest, that `filters` keep. An unknown `before`
    /// or `since` image is an error (as Docker's "No such image").
    pub fn list_images_filtered(
        &self,
        filters: &ImageFilters,
    ) -> Result<Vec<ListedImage>, EngineError> {
        let bound = |key: &Option<String>| -> Result<Option<i128>, EngineError> {
            let Some(k) = key else { return Ok(None) };
            let (rec, _) = self.find_image(k, None)?;
            let config = self.image_config(&rec)?;
            let l = ListedImage {
                records: vec![rec],
                config,
            };
            Ok(Some(nanos(l.created())))
        };
        let before = bound(&filters.before)?;
        let since = bound(&filters.since)?;
        let mut groups: Vec<Vec<ImageRecord>> = Vec::new();
        for rec in self.list_images(None)? {
            match groups
                .iter_mut()
                .find(|g| g[0].manifest_digest == rec.manifest_digest)
            {
                Some(g) => g.push(rec),
                None => groups.push(vec![rec]),
            }
        }
        let mut out = Vec::new();
        for mut records in groups {
            let dangling = records.iter().all(|rec| rec.tag.is_none());
            if filters.dangling.is_some_and(|d| d != dangling) {
                continue;
            }
            if !filters.references.is_empty() {
                // As Docker: only the names that match are listed.
                records.retain(|rec| filters.references.iter().any(|p| reference_matches(p, rec)));
                if records.is_empty() {
                    continue;
                }
            }
            let config = self.image_config(&records[0])?;
            let listed = ListedImage { records, config };
            let labels = &listed.config["config"]["Labels"];
            let labels_ok = filters.labels.iter().all(|v| match v.split_once('=') {
                Some((k, want)) => labels[k].as_str() == Some(want),
                None => !labels[v.as_str()].is_null(),
            });
            let t = nanos(listed.created());
            if labels_ok && before.is_none_or(|b| t < b) && since.is_none_or(|s| t > s) {
                out.push(listed);
            }
        }
        Ok(out)
    }
}

/// Nanoseconds since the epoch of an RFC 3339 time (0 when it does not parse).
fn nanos(rfc3339: &str) -> i128 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp_nanos())
        .unwrap_or(0)
}

/// Whether `pattern` (a `reference` filter: `name`, `name:tag`, with `*` globs) matches `r`.
fn reference_matches(pattern: &str, r: &ImageRecord) -> bool {
    let name = familiar_name(&r.name);
    let full = match &r.tag {
        Some(t) => format!("{name}:{t}"),
        None => name.to_string(),
    };
    let target = if pattern.contains(':') { &full } else { name };
    glob(pattern, target)
        || ImageRef::parse(pattern)
            .is_ok_and(|p| p.name() == r.name && (!pattern.contains(':') || p.tag == r.tag))
}

/// `*` matches any run of characters other than `/`; everything else literally.
fn glob(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(tail) = s.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .take_while(|&i| !tail[..i].contains('/'))
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| glob(rest, &tail[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stop_at_slashes() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("busybox:*", "busybox:latest"));
        assert!(!glob("busy*", "busy/box"));
        assert!(glob("*/app:2", "demo/app:2"));
        assert!(!glob("busybox", "busybox2"));
    }

    #[test]
    fn times_compare_to_the_nanosecond() {
        assert!(nanos("2024-01-01T00:00:00.5Z") > nanos("2024-01-01T00:00:00Z"));
        assert_eq!(unix_time("2024-01-01T00:00:01.9Z"), 1_704_067_201);
        assert_eq!(unix_time("garbage"), 0);
    }
}
