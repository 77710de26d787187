//! Names on user-defined networks: keeps aardvark-dns (Podman's DNS server, Debian package
//! `aardvark-dns`) in step with the containers attached to those networks.
//!
//! One aardvark-dns process serves every user network. Its config directory (for xrun
//! `/run/xrun/net/aardvark/`) holds one file per network ([`config`]: the gateway it listens
//! on, then one line per container with its addresses and names); the process listens on
//! each network's gateway, port 53, and answers a container's query for a name of a network
//! that container is on; names it does not know are forwarded to the container's upstream
//! servers, or the host's (single-label names never leave: they get NXDOMAIN).
//!
//! [`DnsServer::add`] and [`DnsServer::remove`] rewrite a network's file (temp file beside the
//! directory, then rename: the server reads every file of the directory, so nothing else may
//! ever appear in it), then start the server or make it reload (SIGHUP), and return once it
//! serves the new content (see [`process`]). The first container starts the server, the last
//! one's removal stops it. Callers are serialized by a lock file beside the directory
//! (`aardvark.lock`), so concurrent starts and removals of containers never lose an entry.

mod config;
mod process;

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use config::{Entry, NetworkFile};

/// The port aardvark-dns listens on (on each network's gateway).
pub const DNS_PORT: u16 = 53;

/// What a container answers to on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The container's id (64 hex digits).
    pub container_id: String,
    /// Its addresses on the network.
    pub ipv4: Vec<Ipv4Addr>,
    /// Its names there: container name, network aliases, short id. Letters, digits, `_`,
    /// `-` and `.`; matched without regard to case.
    pub names: Vec<String>,
}

/// Why keeping aardvark-dns in step failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The binary is not installed.
    #[error(
        "aardvark-dns is not installed (looked in {looked_in}): install the Debian package \
         `aardvark-dns` for names on user networks"
    )]
    NotInstalled {
        /// Where xrun looked.
        looked_in: String,
    },
    /// A name, id or network name cannot go into aardvark-dns's files.
    #[error("invalid {what} {value:?} for the DNS server: {why}")]
    Invalid {
        /// What it is (`name`, `container id`, `network name`).
        what: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A record without an address or a name.
    #[error("DNS record of container {0} has no {1}")]
    EmptyRecord(String, &'static str),
    /// Reading or writing the server's files failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The server did not start.
    #[error("aardvark-dns did not start: {detail}")]
    Start {
        /// What went wrong.
        detail: String,
    },
    /// The server runs but does not listen where it should.
    #[error(
        "aardvark-dns does not listen on {addr} for network {network} (is the address up, \
         or is the port taken by another DNS server?)"
    )]
    NotServing {
        /// The network.
        network: String,
        /// The address and port it should listen on.
        addr: SocketAddrV4,
    },
    /// The network's gateway is not an address of this host.
    #[error(
        "network {network}: cannot listen on its gateway {gateway} ({source}): is its bridge up?"
    )]
    NoGateway {
        /// The network.
        network: String,
        /// Its gateway.
        gateway: Ipv4Addr,
        /// Why binding it failed.
        source: std::io::Error,
    },
    /// Signalling the server failed.
    #[error("signalling aardvark-dns (pid {pid}): {source}")]
    Signal {
        /// Its pid.
        pid: i32,
        /// The failure.
        source: std::io::Error,
    },
    /// The server did not exit when told to.
    #[error("aardvark-dns (pid {pid}) did not exit")]
    Stop {
        /// Its pid.
        pid: i32,
    },
}

/// aardvark-dns driven through its config directory.
#[derive(Debug, Clone)]
pub struct DnsServer {
    dir: PathBuf,
    binary: Option<PathBuf>,
    port: u16,
}

impl DnsServer {
    /// The server whose config directory is `config_dir` (e.g. `/run/xrun/net/aardvark`; it
    /// is made when needed, with the lock file beside it).
    pub fn at(config_dir: &Path) -> Self {
        DnsServer {
            dir: config_dir.to_path_buf(),
            binary: None,
            port: DNS_PORT,
        }
    }

    /// Uses `binary` instead of looking for aardvark-dns in the usual places.
    pub fn with_binary(mut self, binary: &Path) -> Self {
        self.binary = Some(binary.to_path_buf());
        self
    }

    /// The config directory.
    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    /// The running server's pid, if one serves this directory.
    pub fn pid(&self) -> Option<i32> {
        process::running_pid(&self.dir)
    }

    /// Adds or replaces `rec` on `network` (served at `gateway`); starts aardvark-dns when
    /// not running, reloads it otherwise, and returns once it serves the new record. `upstream`
    /// are the servers this container's queries for other names go to (its `--dns`; empty:
    /// the host's). Concurrent callers are serialized (file lock). On failure the network's
    /// file is as it was.
    pub fn add(
        &self,
        network: &str,
        gateway: Ipv4Addr,
        upstream: &[IpAddr],
        rec: &DnsRecord,
    ) -> Result<(), DnsError> {
        check_network(network)?;
        let entry = entry_of(rec, upstream)?;
        let binary = match &self.binary {
            Some(b) if process::is_executable(b) => b.clone(),
            Some(b) => {
                return Err(DnsError::NotInstalled {
                    looked_in: b.display().to_string(),
                });
            }
            None => process::find_binary()?,
        };
        // The server can only listen on an address of this host: say so now, not after a wait.
        if let Err(e) = std::net::UdpSocket::bind((gateway, 0)) {
            return Err(DnsError::NoGateway {
                network: network.to_string(),
                gateway,
                source: e,
            });
        }
        let _lock = self.lock()?;
        let before = self.read(network)?;
        let mut file = before.clone().unwrap_or_default();
        file.listen = vec![gateway];
        file.upsert(entry);
        self.write(network, Some(&file))?;
        let applied = self.apply_add(&binary, network, gateway);
        if applied.is_err() {
            // Put the file back as it was: a server left without networks stops, one that
            // still has some reads it again.
            let _ = self.write(network, before.as_ref());
            match self.pid() {
                Some(pid) if !self.networks()?.is_empty() => {
                    let _ = process::reload(pid);
                }
                _ => {
                    let _ = self.settle(Vec::new());
                }
            }
        }
        applied
    }

    /// Removes the container's entries from `network`; stops the server when no entries are
    /// left on any network. Removing what is not there is not an error.
    pub fn remove(&self, network: &str, container_id: &str) -> Result<(), DnsError> {
        check_network(network)?;
        if !self.dir.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let change = self.drop_entries(network, container_id)?;
        self.settle(change.into_iter().collect())
    }

    /// Removes the container's entries from every network (its teardown, whatever networks
    /// it was on); stops the server when no entries are left.
    pub fn remove_everywhere(&self, container_id: &str) -> Result<(), DnsError> {
        if !self.dir.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let mut changes = Vec::new();
        for network in self.networks()? {
            changes.extend(self.drop_entries(&network, container_id)?);
        }
        self.settle(changes)
    }

    /// Drops a whole network's file (network rm), and stops the server when it was the last.
    pub fn remove_network(&self, network: &str) -> Result<(), DnsError> {
        check_network(network)?;
        if !self.dir.exists() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let listen = self.read(network)?.map(|f| f.listen);
        self.write(network, None)?;
        self.settle(
            listen
                .map(|listen| Change {
                    network: network.to_string(),
                    listen,
                    kept: false,
                })
                .into_iter()
                .collect(),
        )
    }

    /// Drops the container's entry from `network`'s file (the whole file with its last
    /// entry); what changed, if anything. The caller holds the lock.
    fn drop_entries(&self, network: &str, container_id: &str) -> Result<Option<Change>, DnsError> {
        let Some(mut file) = self.read(network)? else {
            return Ok(None);
        };
        if !file.remove(&container_id.to_ascii_lowercase()) {
            return Ok(None);
        }
        let kept = !file.entries.is_empty();
        self.write(network, kept.then_some(&file))?;
        Ok(Some(Change {
            network: network.to_string(),
            listen: file.listen,
            kept,
        }))
    }

    /// After an add was written: starts the server, or reloads it and waits for it to bind
    /// the gateway anew.
    fn apply_add(&self, binary: &Path, network: &str, gateway: Ipv4Addr) -> Result<(), DnsError> {
        let addr = SocketAddrV4::new(gateway, self.port);
        let served = match self.pid() {
            Some(pid) => {
                let old = inodes(pid);
                process::reload(pid)?;
                process::wait_bound(pid, addr, &old)
            }
            None => {
                process::remove_pid_file(&self.dir)?;
                let pid = process::start(binary, &self.dir, self.port)?;
                process::wait_bound(pid, addr, &HashSet::new())
            }
        };
        if served {
            return Ok(());
        }
        Err(DnsError::NotServing {
            network: network.to_string(),
            addr,
        })
    }

    /// After removals were written: stops the server when no network is left, else makes it
    /// reload and waits until each changed network is served as written. With nothing
    /// changed, only a server left without networks is stopped (and a stale pid file removed).
    fn settle(&self, changes: Vec<Change>) -> Result<(), DnsError> {
        let pid = self.pid();
        if self.networks()?.is_empty() {
            return match pid {
                Some(pid) => process::stop(pid, &self.dir),
                None => process::remove_pid_file(&self.dir),
            };
        }
        let Some(pid) = pid.filter(|_| !changes.is_empty()) else {
            return Ok(());
        };
        let old = inodes(pid);
        process::reload(pid)?;
        for change in changes {
            for gateway in change.listen {
                let addr = SocketAddrV4::new(gateway, self.port);
                let served = if change.kept {
                    process::wait_bound(pid, addr, &old)
                } else {
                    self.listened_elsewhere(gateway)? || process::wait_unbound(pid, addr)
                };
                if !served {
                    return Err(DnsError::NotServing {
                        network: change.network,
                        addr,
                    });
                }
            }
        }
        Ok(())
    }

    /// True when another network's file listens on `gateway` too.
    fn listened_elsewhere(&self, gateway: Ipv4Addr) -> Result<bool, DnsError> {
        for n in self.networks()? {
            if self.read(&n)?.is_some_and(|f| f.listen.contains(&gateway)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The networks that have a file.
    fn networks(&self) -> Result<Vec<String>, DnsError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io_err(&self.dir, e)),
        };
        let mut names = Vec::new();
        for e in entries {
            let e = e.map_err(|err| self.io_err(&self.dir, err))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name != process::PID_FILE {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, network: &str) -> Result<Option<NetworkFile>, DnsError> {
        let path = self.dir.join(network);
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(NetworkFile::parse(&text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_err(&path, e)),
        }
    }

    /// Writes (temp file beside the directory, then rename) or removes a network's file.
    fn write(&self, network: &str, file: Option<&NetworkFile>) -> Result<(), DnsError> {
        let path = self.dir.join(network);
        let Some(file) = file else {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(self.io_err(&path, e)),
                _ => Ok(()),
            };
        };
        let tmp = self.beside(&format!(".{network}.tmp"));
        let mut out = File::create(&tmp).map_err(|e| self.io_err(&tmp, e))?;
        out.write_all(file.render().as_bytes())
            .and_then(|()| out.sync_all())
            .map_err(|e| self.io_err(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.io_err(&path, e)
        })
    }

    /// Makes the directory and takes the lock beside it (released when dropped).
    fn lock(&self) -> Result<File, DnsError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io_err(&self.dir, e))?;
        let path = self.beside(".lock");
        let lock = File::create(&path).map_err(|e| self.io_err(&path, e))?;
        fs4::FileExt::lock(&lock).map_err(|e| self.io_err(&path, e))?;
        Ok(lock)
    }

    /// A path next to the config directory: `<dir><suffix>` (same file system, not inside).
    fn beside(&self, suffix: &str) -> PathBuf {
        let mut name = self.dir.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.dir.with_file_name(name)
    }

    fn io_err(&self, path: &Path, source: std::io::Error) -> DnsError {
        DnsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A network file a removal changed.
struct Change {
    network: String,
    /// The addresses it listened on.
    listen: Vec<Ipv4Addr>,
    /// Whether the file is still there (else the server must stop listening for it).
    kept: bool,
}

fn inodes(pid: i32) -> HashSet<u64> {
    process::udp_sockets(pid)
        .into_iter()
        .map(|(_, i)| i)
        .collect()
}

/// A network name is a file name in the directory: no `/`, not hidden, not the pid file.
fn check_network(network: &str) -> Result<(), DnsError> {
    let why = if network.is_empty() {
        Some("it is empty")
    } else if network.contains('/') || network.starts_with('.') {
        Some("it cannot be a file name")
    } else if network == process::PID_FILE {
        Some("aardvark-dns reserves it")
    } else if network.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains spaces")
    } else {
        None
    };
    match why {
        Some(why) => Err(DnsError::Invalid {
            what: "network name",
            value: network.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

/// The file entry for `rec`: names checked and deduplicated (aardvark-dns ignores case).
fn entry_of(rec: &DnsRecord, upstream: &[IpAddr]) -> Result<Entry, DnsError> {
    let id = &rec.container_id;
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(DnsError::Invalid {
            what: "container id",
            value: id.clone(),
            why: "it must be letters and digits",
        });
    }
    if rec.ipv4.is_empty() {
        return Err(DnsError::EmptyRecord(id.clone(), "address"));
    }
    let mut names: Vec<String> = Vec::new();
    for name in &rec.names {
        check_name(name)?;
        if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.clone());
        }
    }
    if names.is_empty() {
        return Err(DnsError::EmptyRecord(id.clone(), "name"));
    }
    Ok(Entry {
        id: id.to_ascii_lowercase(),
        ipv4: rec.ipv4.clone(),
        names,
        upstream: upstream.to_vec(),
    })
}

/// A DNS name as containers and aliases are named: letters, digits, `_`, `-`, `.`, not
/// starting or ending with a dot, at most 253 characters.
pub fn check_name(name: &str) -> Result<(), DnsError> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 253 {
        Some("it is longer than 253 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Some("only letters, digits, '_', '-' and '.' are allowed")
    } else if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        Some("dots only between labels")
    } else {
        None
    };
    match why {
        Some(why) => Err(DnsError::Invalid {
            what: "name",
            value: name.to_string(),
            why,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(names: &[&str]) -> DnsRecord {
        DnsRecord {
            container_id: "ABC123".into(),
            ipv4: vec![Ipv4Addr::new(10, 90, 1, 2)],
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn entries_dedupe_names_and_lowercase_ids() {
        let e = entry_of(&rec(&["web", "WEB", "www", "abc123"]), &[]).unwrap();
        assert_eq!(e.id, "abc123");
        assert_eq!(e.names, ["web", "www", "abc123"]);
    }

    #[test]
    fn bad_records_are_refused() {
        for bad in [
            &["has space"][..],
            &["a,b"],
            &[""],
            &[".web"],
            &["web."],
            &["a..b"],
        ] {
            assert!(
                matches!(entry_of(&rec(bad), &[]), Err(DnsError::Invalid { .. })),
                "{bad:?}"
            );
        }
        assert!(matches!(
            entry_of(&rec(&[]), &[]),
            Err(DnsError::EmptyRecord(..))
        ));
        let mut no_ip = rec(&["web"]);
        no_ip.ipv4.clear();
        assert!(matches!(
            entry_of(&no_ip, &[]),
            Err(DnsError::EmptyRecord(..))
        ));
        for bad in ["", "a/b", ".hidden", "aardvark.pid", "a b"] {
            assert!(check_network(bad).is_err(), "{bad:?}");
        }
        assert!(check_network("my-net_1.x").is_ok());
    }

    #[test]
    fn missing_binary_names_the_package_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("aardvark");
        let server = DnsServer::at(&conf).with_binary(Path::new("/nonexistent/aardvark-dns"));
        let err = server
            .add("net", Ipv4Addr::new(10, 99, 0, 1), &[], &rec(&["web"]))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("package `aardvark-dns`"), "{msg}");
        assert!(!msg.contains('\n'));
        assert!(!conf.exists());
    }
}
