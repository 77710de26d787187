//! Credentials: the Docker client's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), read and written in Docker's format.
//!
//! The file is kept as a JSON object so keys xrun does not know (`credsStore`, `proxies`, …)
//! survive a rewrite; writes are atomic (temp file + rename) with mode 0600.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value};

use super::error::RegistryError;

/// The key Docker uses for Docker Hub in `auths`.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A username and password for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, ***)", self.username)
    }
}

impl Credentials {
    /// Parses `user:pass` (the password may contain `:`).
    pub fn parse(s: &str) -> Option<Credentials> {
        let (u, p) = s.split_once(':')?;
        if u.is_empty() {
            return None;
        }
        Some(Credentials {
            username: u.to_string(),
            password: p.to_string(),
        })
    }
}

/// The registry a server address names, as xrun's references spell it: scheme and path are
/// dropped, and Docker Hub's aliases become `docker.io`.
pub fn normalize_server(server: &str) -> String {
    let s = server
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

/// The `auths` key Docker writes for a server.
pub fn key_for(server: &str) -> String {
    let n = normalize_server(server);
    if n == "docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        n
    }
}

/// The Docker client configuration file, kept whole.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

impl DockerConfig {
    /// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
            return PathBuf::from(d).join("config.json");
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        home.join(".docker").join("config.json")
    }

    /// Loads the file in force.
    pub fn load() -> Result<DockerConfig, RegistryError> {
        DockerConfig::load_from(&DockerConfig::default_path())
    }

    /// Loads `path`; a missing or empty file is an empty configuration.
    pub fn load_from(path: &Path) -> Result<DockerConfig, RegistryError> {
        let bad = |message: String| RegistryError::AuthFile {
            path: path.to_path_buf(),
            message,
        };
        let doc = match std::fs::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(b) => match serde_json::from_slice::<Value>(&b) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(bad("not a JSON object".into())),
                Err(e) => return Err(bad(format!("invalid JSON: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(bad(e.to_string())),
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The file this configuration is read from and written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn auths(&self) -> Option<&Map<String, Value>> {
        self.doc.get("auths").and_then(Value::as_object)
    }

    /// The `auths` key whose server is `registry` (`host:port`, `https://host`, Docker Hub's
    /// `https://index.docker.io/v1/` for `docker.io`).
    pub fn find_key(&self, registry: &str) -> Option<String> {
        let want = normalize_server(registry);
        let auths = self.auths()?;
        // An exact key wins over a normalized match.
        if auths.contains_key(registry) {
            return Some(registry.to_string());
        }
        auths.keys().find(|k| normalize_server(k) == want).cloned()
    }

    /// The credentials stored for `registry`, if any.
    pub fn credentials(&self, registry: &str) -> Result<Option<Credentials>, RegistryError> {
        let Some(key) = self.find_key(registry) else {
            return Ok(None);
        };
        let entry = &self.auths().expect("key found")[&key];
        let bad = |m: &str| RegistryError::AuthFile {
            path: self.path.clone(),
            message: format!("auths[{key:?}]: {m}"),
        };
        if let Some(auth) = entry.get("auth").and_then(Value::as_str) {
            if auth.is_empty() {
                return Ok(None);
            }
            let raw = B64
                .decode(auth.trim())
                .map_err(|_| bad("`auth` is not base64"))?;
            let s = String::from_utf8(raw).map_err(|_| bad("`auth` is not UTF-8"))?;
            return Credentials::parse(&s)
                .map(Some)
                .ok_or_else(|| bad("`auth` is not user:password"));
        }
        // Older files spell the two halves out.
        match (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials {
                username: u.to_string(),
                password: p.to_string(),
            })),
            _ => Ok(None),
        }
    }

    /// Stores credentials for `server` (replacing any entry for the same registry).
    pub fn set(&mut self, server: &str, creds: &Credentials) {
        if let Some(old) = self.find_key(server) {
            self.auths_mut().remove(&old);
        }
        let auth = B64.encode(format!("{}:{}", creds.username, creds.password));
        let mut entry = Map::new();
        entry.insert("auth".into(), Value::String(auth));
        self.auths_mut()
            .insert(key_for(server), Value::Object(entry));
    }

    /// Removes the entry for `server`; false when there was none.
    pub fn remove(&mut self, server: &str) -> bool {
        match self.find_key(server) {
            Some(k) => self.auths_mut().remove(&k).is_some(),
            None => false,
        }
    }

    fn auths_mut(&mut self) -> &mut Map<String, Value> {
        let v = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !v.is_object() {
            *v = Value::Object(Map::new());
        }
        v.as_object_mut().expect("made an object")
    }

    /// Writes the file atomically (temp file in the same directory, mode 0600, rename),
    /// tab-indented as Docker writes it.
    pub fn save(&self) -> Result<(), RegistryError> {
        let err = |message: String| RegistryError::AuthFile {
            path: self.path.clone(),
            message,
        };
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&self.doc, &mut ser).map_err(|e| err(e.to_string()))?;
        out.push(b'\n');
        let mut tmp = tempfile::Builder::new()
            .prefix(".config.json.")
            .tempfile_in(dir)
            .map_err(|e| err(e.to_string()))?;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(e.to_string()))?;
        tmp.write_all(&out).map_err(|e| err(e.to_string()))?;
        tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
        tmp.persist(&self.path)
            .map_err(|e| err(e.error.to_string()))?;
        Ok(())
    }
}

/// The credentials to use for `registry`: the explicit ones, else the Docker config file's.
pub fn resolve_credentials(
    registry: &str,
    explicit: Option<&Credentials>,
) -> Result<Option<Credentials>, RegistryError> {
    if let Some(c) = explicit {
        return Ok(Some(c.clone()));
    }
    DockerConfig::load()?.credentials(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn round_trip_keeps_other_keys_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            r#"{"credsStore":"desktop","proxies":{"default":{"httpProxy":"x"}},
               "auths":{"quay.io":{"auth":"dTpw"}}}"#,
        )
        .unwrap();
        let mut c = DockerConfig::load_from(&path).unwrap();
        c.set("127.0.0.1:5000", &creds("alice", "s3:cret"));
        c.save().unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["credsStore"], "desktop");
        assert_eq!(v["proxies"]["default"]["httpProxy"], "x");
        assert_eq!(v["auths"]["quay.io"]["auth"], "dTpw");
        assert_eq!(
            v["auths"]["127.0.0.1:5000"]["auth"],
            B64.encode("alice:s3:cret")
        );
        let c = DockerConfig::load_from(&path).unwrap();
        assert_eq!(
            c.credentials("127.0.0.1:5000").unwrap(),
            Some(creds("alice", "s3:cret"))
        );
        assert_eq!(c.credentials("quay.io").unwrap(), Some(creds("u", "p")));
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("config.json")]);
    }

    #[test]
    fn remove_only_touches_its_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut c = DockerConfig::load_from(&path).unwrap();
        c.set("a:1", &creds("a", "1"));
        c.set("b:2", &creds("b", "2"));
        c.save().unwrap();
        let mut c = DockerConfig::load_from(&path).unwrap();
        assert!(c.remove("https://a:1"));
        assert!(!c.remove("a:1"));
        c.save().unwrap();
        let c = DockerConfig::load_from(&path).unwrap();
        assert_eq!(c.credentials("a:1").unwrap(), None);
        assert_eq!(c.credentials("b:2").unwrap(), Some(creds("b", "2")));
    }

    #[test]
    fn key_matching() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let hub = B64.encode("hub:pw");
        let loc = B64.encode("loc:pw");
        let q = B64.encode("q:pw");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{hub}"}},
                   "https://localhost:5000":{{"auth":"{loc}"}},
                   "quay.io":{{"auth":"{q}"}},
                   "old.example:1":{{"username":"o","password":"pw"}}}}}}"#
            ),
        )
        .unwrap();
        let c = DockerConfig::load_from(&path).unwrap();
        let user = |r: &str| c.credentials(r).unwrap().map(|c| c.username);
        assert_eq!(user("docker.io").as_deref(), Some("hub"));
        assert_eq!(user("index.docker.io").as_deref(), Some("hub"));
        assert_eq!(user("localhost:5000").as_deref(), Some("loc"));
        assert_eq!(user("localhost:5001"), None);
        assert_eq!(user("localhost"), None);
        assert_eq!(user("quay.io").as_deref(), Some("q"));
        assert_eq!(user("old.example:1").as_deref(), Some("o"));
        assert_eq!(user("127.0.0.1:5000"), None);
        assert_eq!(key_for("docker.io"), DOCKER_HUB_KEY);
        assert_eq!(key_for("https://127.0.0.1:5000/"), "127.0.0.1:5000");
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").unwrap();
        assert!(
            DockerConfig::load_from(&path)
                .unwrap_err()
                .to_string()
                .contains("invalid JSON")
        );
        std::fs::write(&path, r#"{"auths":{"h:1":{"auth":"!!!"}}}"#).unwrap();
        let c = DockerConfig::load_from(&path).unwrap();
        assert!(
            c.credentials("h:1")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
        assert!(DockerConfig::load_from(&dir.path().join("missing")).is_ok());
    }

    #[test]
    fn parse_creds() {
        assert_eq!(Credentials::parse("u:p:q"), Some(creds("u", "p:q")));
        assert_eq!(Credentials::parse("nocolon"), None);
        assert_eq!(Credentials::parse(":p"), None);
        assert!(!format!("{:?}", creds("u", "secret")).contains("secret"));
    }
}
