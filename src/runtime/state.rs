//! Container records under `<root>/containers/<id>/container.json`, looking containers up
//! by id, id prefix or name, and what their status really is (a record is checked against
//! the live processes: a dead owner without a recorded exit is `Exited (unknown)`).

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStringExt;
use time::OffsetDateTime;

use super::{Bundle, ImageInput, RunOptions, RuntimeError};

/// What a record says about the container's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Created, never started (or being started).
    Created,
    /// Started; `pid` runs under `owner`.
    Running,
    /// Finished; `exit_code` says how (`None`: unknown).
    Exited,
}

/// A process identified by pid and start time (so a reused pid is not mistaken for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    /// The pid.
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    pub start: u64,
}

impl ProcRef {
    /// The process `pid` as it is now.
    pub fn of(pid: i32) -> Option<ProcRef> {
        proc_start(pid).map(|start| ProcRef { pid, start })
    }

    /// This process.
    pub fn me() -> ProcRef {
        ProcRef::of(std::process::id() as i32).unwrap_or(ProcRef {
            pid: std::process::id() as i32,
            start: 0,
        })
    }

    /// Whether it still runs (a zombie does not count).
    pub fn alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(s) => {
                let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
                    return false;
                };
                let f: Vec<&str> = rest.split(' ').collect();
                f.first() != Some(&"Z")
                    && f.first() != Some(&"X")
                    && f.get(19).and_then(|v| v.parse().ok()) == Some(self.start)
            }
            Err(_) => false,
        }
    }
}

fn proc_start(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The record of one container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image (name, config, layer dirs).
    pub image: ImageInput,
    /// The command line options.
    pub options: RunOptions,
    /// The command as shown by `ps`.
    pub command: Vec<String>,
    /// The route (`native`; other routes record theirs).
    pub route: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Lifecycle phase.
    pub phase: Phase,
    /// The container's PID 1 on the host, while running.
    pub pid: Option<ProcRef>,
    /// The process that waits for it (the foreground xrun or the monitor).
    pub owner: Option<ProcRef>,
    /// Last start (RFC 3339).
    pub started: Option<String>,
    /// Last exit (RFC 3339).
    pub finished: Option<String>,
    /// Last exit code.
    pub exit_code: Option<i32>,
    /// The image platform it runs (`os/arch[/variant]`; `None` for a root file system
    /// directory, or a record from before platforms were recorded).
    #[serde(default)]
    pub platform: Option<String>,
    /// The reasons behind its route, as `xrun check` gives them.
    #[serde(default)]
    pub reasons: Vec<crate::plan::Reason>,
    /// How many runs a monitor has begun (bumped before it looks for waiting attach
    /// clients: see [`super::attach`]).
    #[serde(default)]
    pub runs: u64,
    /// Where the output of the last run begins in the log (bytes; attach's replay).
    #[serde(default)]
    pub log_start: u64,
}

/// What `ps` shows, computed from a record and the live processes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Never started.
    Created,
    /// Running since the given time.
    Running,
    /// Exited with a known code.
    Exited(i32),
    /// Exited, how is not known (its owner died without recording it).
    Unknown,
}

impl ContainerRecord {
    /// The first 12 digits of the id.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    /// The real status (see the module doc).
    pub fn status(&self) -> Status {
        match self.phase {
            Phase::Created => {
                if self.started.is_some() {
                    // Being restarted: shown by its last exit.
                    self.exit_code
                        .map(Status::Exited)
                        .unwrap_or(Status::Created)
                } else {
                    Status::Created
                }
            }
            Phase::Running => {
                if self.pid.is_some_and(|p| p.alive()) {
                    Status::Running
                } else if self.owner.is_some_and(|o| o.alive()) {
                    // The owner is about to record the exit.
                    Status::Running
                } else {
                    Status::Unknown
                }
            }
            Phase::Exited => self
                .exit_code
                .map(Status::Exited)
                .unwrap_or(Status::Unknown),
        }
    }

    /// Whether the container process is alive.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running && self.status() == Status::Running
    }

    /// Whether something still owns the container's runtime state (its rootfs mount,
    /// cgroups, network): its process runs, or an xrun process is starting or watching it.
    /// What a container that is not owned left behind is a leftover.
    pub fn is_owned(&self) -> bool {
        self.phase == Phase::Running && self.pid.is_some_and(|p| p.alive())
            || self.owner.is_some_and(|o| o.alive())
    }

    /// Whether the record says running but nobody is there any more (leftovers to clean).
    pub fn is_stale(&self) -> bool {
        self.phase == Phase::Running
            && !self.pid.is_some_and(|p| p.alive())
            && !self.owner.is_some_and(|o| o.alive())
    }
}

/// Now, RFC 3339.
pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// "5 seconds", "About a minute", "3 hours" — Docker's human durations.
pub fn human_since(rfc3339: &str) -> String {
    let Ok(t) = OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return "?".into();
    };
    let s = (OffsetDateTime::now_utc() - t).whole_seconds().max(0);
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// The containers under one store root.
#[derive(Debug, Clone)]
pub struct Containers {
    dir: PathBuf,
    /// Where the bundles and the runtime's state live: on tmpfs (see [`Containers::open`]).
    run_dir: PathBuf,
}

/// An exclusive lock, released on drop.
pub struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn lock_file(path: &Path) -> Result<Lock, RuntimeError> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| RuntimeError::io(format!("opening lock {}", path.display()), e))?;
    loop {
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(RuntimeError::io("taking a lock", e));
        }
    }
    Ok(Lock(f))
}

impl Containers {
    /// The containers of the store at `root`.
    ///
    /// What a container keeps lives under `<root>/containers/<id>` (its record, writable
    /// layer, log); what only matters while it runs — the bundle (`config.json`, the `rootfs`
    /// mount point, the `etc` files) and the runtime's state — lives on tmpfs under
    /// [`RUN_BASE`]`/<hash of root>/<id>`, as containerd keeps its bundles under `/run`: it is
    /// rebuilt on every start, means nothing after a reboot, and creating and deleting its
    /// dozen files per run on disk is slow on some file systems (ext4 without a journal
    /// skips recently deleted inodes one by one). Without a usable `/run`, the bundle stays in
    /// the container's directory.
    pub fn open(root: &Path) -> Result<Containers, RuntimeError> {
        let dir = root.join("containers");
        std::fs::create_dir_all(&dir)
            .map_err(|e| RuntimeError::io(format!("creating {}", dir.display()), e))?;
        let run_dir = run_dir_of(&dir).unwrap_or_else(|| dir.clone());
        Ok(Containers { dir, run_dir })
    }

    /// Whether another store root on this host (one whose run directory sits beside this
    /// one's and whose containers directory still exists) has a container `id`: its
    /// host-wide state (cgroups, network) is that root's to judge, not this one's.
    pub fn other_root_holds(&self, id: &str) -> bool {
        let mut bases = vec![PathBuf::from(RUN_BASE)];
        if let Some(b) = std::env::var_os(RUN_BASE_ENV).filter(|v| !v.is_empty()) {
            bases.push(PathBuf::from(b));
        }
        if let Some(parent) = self.run_dir.parent() {
            bases.push(parent.to_path_buf());
        }
        bases.sort();
        bases.dedup();
        bases
            .iter()
            .flat_map(|b| std::fs::read_dir(b).into_iter().flatten().flatten())
            .filter(|e| e.path() != self.run_dir)
            .filter_map(|e| std::fs::read(e.path().join(OWNER_FILE)).ok())
            .map(|owner| PathBuf::from(std::ffi::OsString::from_vec(owner)))
            .filter(|containers| containers != &self.dir)
            .any(|containers| containers.join(id).join("container.json").exists())
    }

    /// `<root>/containers`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the bundles and the runtime's state of these containers live (see
    /// [`Containers::open`]).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// The directory (and bundle) of container `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The bundle of container `id` (see [`Containers::open`]).
    pub fn bundle(&self, id: &str) -> Bundle {
        Bundle::with_layer(&self.run_dir.join(id), &self.container_dir(id))
    }

    /// Where the cgroup directories of container `id`'s current run are recorded (see
    /// [`super::cgroups::record`]).
    pub fn cgroups_record(&self, id: &str) -> PathBuf {
        self.run_dir.join(id).join("cgroups")
    }

    /// The OCI runtime's state root of container `id`.
    pub fn runtime_root(&self, id: &str) -> PathBuf {
        self.run_dir.join(id).join("runtime")
    }

    /// Where compiled seccomp programs are cached (`<root>/cache/seccomp`).
    pub fn seccomp_cache(&self) -> PathBuf {
        self.dir
            .parent()
            .unwrap_or(&self.dir)
            .join("cache")
            .join("seccomp")
    }

    /// The log of container `id`.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("log")
    }

    /// The lock held while containers are created or removed.
    pub fn global_lock(&self) -> Result<Lock, RuntimeError> {
        lock_file(&self.dir.join(".lock"))
    }

    /// The lock of one container's record.
    pub fn lock(&self, id: &str) -> Result<Lock, RuntimeError> {
        lock_file(&self.container_dir(id).join("lock"))
    }

    /// Reads a record.
    pub fn load(&self, id: &str) -> Result<ContainerRecord, RuntimeError> {
        let p = self.container_dir(id).join("container.json");
        let bytes = std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RuntimeError::NoSuchContainer(id.to_string())
            } else {
                RuntimeError::io(format!("reading {}", p.display()), e)
            }
        })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| RuntimeError::Corrupt(format!("{}: {e}", p.display())))
    }

    /// Writes a record atomically.
    pub fn save(&self, rec: &ContainerRecord) -> Result<(), RuntimeError> {
        let dir = self.container_dir(&rec.id);
        let tmp = dir.join("container.json.tmp");
        let json =
            serde_json::to_vec_pretty(rec).map_err(|e| RuntimeError::Corrupt(e.to_string()))?;
        std::fs::write(&tmp, json)
            .map_err(|e| RuntimeError::io("writing the container record", e))?;
        std::fs::rename(&tmp, dir.join("container.json"))
            .map_err(|e| RuntimeError::io("writing the container record", e))
    }

    /// Applies `f` to the record under its lock.
    pub fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, RuntimeError> {
        let _l = self.lock(id)?;
        let mut rec = self.load(id)?;
        f(&mut rec);
        self.save(&rec)?;
        Ok(rec)
    }

    /// Every record (unreadable ones skipped), newest first.
    pub fn list(&self) -> Vec<ContainerRecord> {
        let ids: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().len() == 64)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // Many records: read and parse them on every core (`ps` of 1,000 containers).
        let threads = crate::par::threads_for(ids.len(), LIST_CHUNK);
        let mut out: Vec<ContainerRecord> = crate::par::map(&ids, threads, |id| self.load(id).ok())
            .into_iter()
            .flatten()
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created));
        out
    }

    /// Finds a container by full id, name, or unique id prefix — without reading every
    /// record: a full id is loaded directly, a name through the names index (see
    /// [`Containers::claim_name`]), a prefix by the directory names only.
    pub fn find(&self, key: &str) -> Result<ContainerRecord, RuntimeError> {
        if key.is_empty() {
            return Err(RuntimeError::NoSuchContainer(key.to_string()));
        }
        let hex = key.bytes().all(|b| b.is_ascii_hexdigit());
        if hex && key.len() == 64 {
            match self.load(key) {
                Err(RuntimeError::NoSuchContainer(_)) => {}
                other => return other,
            }
        }
        if let Some(id) = self.name_target(key)
            && let Ok(rec) = self.load(&id)
            && rec.name == key
        {
            return Ok(rec);
        }
        if !hex || key.len() > 64 {
            return Err(RuntimeError::NoSuchContainer(key.to_string()));
        }
        let matches: Vec<String> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n.len() == 64 && n.starts_with(key))
            .collect();
        let mut found: Vec<ContainerRecord> =
            matches.iter().filter_map(|id| self.load(id).ok()).collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(RuntimeError::NoSuchContainer(key.to_string())),
            _ => Err(RuntimeError::BadInput(format!(
                "{key:?} matches several containers: give more of the id"
            ))),
        }
    }

    /// `<root>/containers/.names`: one symlink per name, pointing at the container's id.
    fn names_dir(&self) -> PathBuf {
        self.dir.join(".names")
    }

    /// The id the names index gives for `name`, if any (possibly stale: check the record).
    fn name_target(&self, name: &str) -> Option<String> {
        if !valid_index_name(name) {
            return None;
        }
        let t = std::fs::read_link(self.names_dir().join(name)).ok()?;
        let t = t.to_str()?;
        (t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit())).then(|| t.to_string())
    }

    /// Builds the names index of a store written before it existed (once: built aside,
    /// then renamed into place). Called under the global lock.
    fn ensure_names_index(&self) -> Result<(), RuntimeError> {
        let dir = self.names_dir();
        if dir.is_dir() {
            return Ok(());
        }
        let tmp = self.dir.join(format!(".names.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)
            .map_err(|e| RuntimeError::io(format!("creating {}", tmp.display()), e))?;
        for r in self.list() {
            if valid_index_name(&r.name) {
                let _ = std::os::unix::fs::symlink(&r.id, tmp.join(&r.name));
            }
        }
        if let Err(e) = std::fs::rename(&tmp, &dir) {
            let _ = std::fs::remove_dir_all(&tmp);
            if !dir.is_dir() {
                return Err(RuntimeError::io("creating the names index", e));
            }
        }
        Ok(())
    }

    /// Claims `name` for container `id` in the names index: an atomic `symlink` that fails
    /// when the name is taken, so two creators never get the same name. An entry whose
    /// container has no record any more (a crash between claim and record, or during a
    /// removal) is taken over. Called under the global lock. `Ok(Some(other))`: taken by
    /// container `other`.
    fn claim_name(&self, name: &str, id: &str) -> Result<Option<String>, RuntimeError> {
        if !valid_index_name(name) {
            return Err(RuntimeError::BadInput(format!(
                "invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let link = self.names_dir().join(name);
        for _ in 0..2 {
            match std::os::unix::fs::symlink(id, &link) {
                Ok(()) => return Ok(None),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match self.name_target(name) {
                        Some(other) if self.load(&other).is_ok_and(|r| r.name == name) => {
                            return Ok(Some(other));
                        }
                        _ => {
                            let _ = std::fs::remove_file(&link);
                        }
                    }
                }
                Err(e) => return Err(RuntimeError::io("claiming the container name", e)),
            }
        }
        Err(RuntimeError::WrongState(format!(
            "could not claim the container name {name:?}"
        )))
    }

    /// Drops `name` from the names index if it points at `id`.
    fn release_name(&self, name: &str, id: &str) {
        if self.name_target(name).as_deref() == Some(id) {
            let _ = std::fs::remove_file(self.names_dir().join(name));
        }
    }

    /// Names index entries whose container is gone or named otherwise (for `system check`):
    /// `(name, id)`.
    pub fn stale_names(&self) -> Vec<(String, String)> {
        std::fs::read_dir(self.names_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| {
                let id = self.name_target(&n).unwrap_or_default();
                match self.load(&id) {
                    Ok(r) if r.name == n => None,
                    _ => Some((n, id)),
                }
            })
            .collect()
    }

    /// Removes a stale names index entry (see [`Containers::stale_names`]).
    pub fn remove_stale_name(&self, name: &str) -> Result<(), RuntimeError> {
        let _g = self.global_lock()?;
        if self.stale_names().iter().any(|(n, _)| n == name) {
            std::fs::remove_file(self.names_dir().join(name))
                .map_err(|e| RuntimeError::io("removing a names index entry", e))?;
        }
        Ok(())
    }

    /// Creates a record for a new container (unique name; a free one is generated when
    /// `options.name` is `None`).
    pub fn create(
        &self,
        image: ImageInput,
        options: RunOptions,
        command: Vec<String>,
    ) -> Result<ContainerRecord, RuntimeError> {
        let _g = self.global_lock()?;
        self.ensure_names_index()?;
        let id = new_id();
        let name = match &options.name {
            Some(n) => {
                if let Some(other) = self.claim_name(n, &id)? {
                    return Err(RuntimeError::WrongState(format!(
                        "the container name {n:?} is already in use by container {}: remove it or pick another name",
                        &other[..12]
                    )));
                }
                n.clone()
            }
            None => {
                let base = generate_name(&id);
                match self.claim_name(&base, &id)? {
                    None => base,
                    Some(_) => {
                        let n = format!("{base}_{}", &id[..6]);
                        if self.claim_name(&n, &id)?.is_some() {
                            return Err(RuntimeError::WrongState(format!(
                                "the generated name {n:?} is in use"
                            )));
                        }
                        n
                    }
                }
            }
        };
        let route = options.route.as_str().to_string();
        let rec = ContainerRecord {
            id: id.clone(),
            name,
            image,
            options,
            command,
            route,
            created: now(),
            phase: Phase::Created,
            pid: None,
            owner: None,
            started: None,
            finished: None,
            exit_code: None,
            platform: None,
            reasons: Vec::new(),
            runs: 0,
            log_start: 0,
        };
        let dir = self.container_dir(&id);
        if let Err(e) = std::fs::create_dir(&dir) {
            self.release_name(&rec.name, &id);
            return Err(RuntimeError::io(format!("creating {}", dir.display()), e));
        }
        if let Err(e) = self.save(&rec) {
            let _ = std::fs::remove_dir_all(&dir);
            self.release_name(&rec.name, &id);
            return Err(e);
        }
        Ok(rec)
    }

    /// Removes the container's directory (the caller has stopped it and unmounted its root).
    ///
    /// Under the global lock the directory is only renamed out of the way (`.removing-<id>`,
    /// which no listing takes for a container); the files go after the lock is released, so
    /// removals of many containers do not queue behind each other's deletions.
    pub fn remove_dir(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.container_dir(id);
        let run = self.run_dir.join(id);
        let trash = self.dir.join(format!(".removing-{id}"));
        {
            let _g = self.global_lock()?;
            if self.bundle(id).is_mounted() {
                return Err(RuntimeError::WrongState(format!(
                    "container {id} still has its root file system mounted"
                )));
            }
            let name = self.load(id).map(|r| r.name).ok();
            std::fs::rename(&dir, &trash)
                .map_err(|e| RuntimeError::io(format!("removing {}", dir.display()), e))?;
            // After the record: a crash in between leaves a stale entry, taken over by the
            // next claim of the name, never a record without its entry.
            if let Some(n) = name {
                self.release_name(&n, id);
            }
        }
        if run != dir && run.exists() {
            std::fs::remove_dir_all(&run)
                .map_err(|e| RuntimeError::io(format!("removing {}", run.display()), e))?;
        }
        std::fs::remove_dir_all(&trash)
            .map_err(|e| RuntimeError::io(format!("removing {}", trash.display()), e))
    }
}

/// Whether `name` can be a file name in the names index (Docker's name rule:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`).
fn valid_index_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 255
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Records per thread below which [`Containers::list`] reads them on one thread.
const LIST_CHUNK: usize = 64;

/// Where bundles live on tmpfs: `/run/xrun/roots` (see [`super::rundir`]).
pub const RUN_BASE: &str = "/run/xrun/roots";

/// Overrides [`RUN_BASE`]: a directory (an existing one; a tmpfs of a size of one's choice)
/// for the bundles and runtime state of running containers.
pub const RUN_BASE_ENV: &str = "XRUN_RUNTIME_DIR";

/// `RUN_BASE/<16 hex digits of sha256(canonical containers dir)>` (or under
/// [`RUN_BASE_ENV`]), created; `None` when `/run/xrun` is not (and cannot be made) a tmpfs.
fn run_dir_of(containers: &Path) -> Option<PathBuf> {
    use sha2::Digest as _;
    let canon = std::fs::canonicalize(containers).ok()?;
    let base = match std::env::var_os(RUN_BASE_ENV).filter(|v| !v.is_empty()) {
        Some(b) if Path::new(&b).is_dir() => PathBuf::from(b),
        _ => {
            super::rundir::ensure()?;
            PathBuf::from(RUN_BASE)
        }
    };
    let hash = hex::encode(sha2::Sha256::digest(canon.as_os_str().as_encoded_bytes()));
    let dir = base.join(&hash[..16]);
    std::fs::create_dir_all(&dir).ok()?;
    note_owner(&dir, &canon);
    Some(dir)
}

/// The file in a root's run directory naming the containers directory it belongs to, so a
/// check in one root can tell another root's containers from leftovers (see
/// [`Containers::other_root_holds`]).
const OWNER_FILE: &str = "root";

fn note_owner(run_dir: &Path, containers: &Path) {
    let file = run_dir.join(OWNER_FILE);
    let want = containers.as_os_str().as_encoded_bytes();
    if std::fs::read(&file).is_ok_and(|have| have == want) {
        return;
    }
    let tmp = run_dir.join(format!(".{OWNER_FILE}.{}", std::process::id()));
    if std::fs::write(&tmp, want).is_ok() && std::fs::rename(&tmp, &file).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quick", "sharp", "tender", "vivid", "witty", "zealous",
];
const NOUNS: &[&str] = &[
    "turing",
    "hopper",
    "lovelace",
    "ritchie",
    "thompson",
    "torvalds",
    "knuth",
    "dijkstra",
    "hamilton",
    "liskov",
    "perlman",
    "kernighan",
    "wirth",
    "backus",
    "allen",
    "cerf",
];

/// A name from the id: `adjective_noun` (the caller adds a suffix when it is taken).
fn generate_name(id: &str) -> String {
    let b = hex::decode(&id[..8]).unwrap_or_default();
    format!(
        "{}_{}",
        ADJECTIVES[b[0] as usize % ADJECTIVES.len()],
        NOUNS[b[1] as usize % NOUNS.len()]
    )
}
