//! `ps`, `pause` and `resume`: the container's processes (from its cgroup) and the freezer.

use std::path::PathBuf;

use libcontainer::container::ContainerStatus;

use super::state::status_word;
use super::{OciError, StateRoot};

/// The pids in the container's cgroup (host pid namespace), sorted.
pub fn pids(root: &StateRoot, id: &str) -> Result<Vec<i32>, OciError> {
    let c = root.load(id)?;
    let pid = match (c.status(), c.pid()) {
        (ContainerStatus::Stopped, _) | (_, None) => return Ok(Vec::new()),
        (_, Some(p)) => p.as_raw(),
    };
    let procs = cgroup_procs_file(pid)?;
    let text = std::fs::read_to_string(&procs)
        .map_err(|e| OciError::io(format!("reading {}", procs.display()), e))?;
    let mut out: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    out.sort_unstable();
    Ok(out)
}

/// `cgroup.procs` of `pid`'s cgroup: the v1 `pids` (else `freezer`, `memory`) hierarchy,
/// or the unified one.
fn cgroup_procs_file(pid: i32) -> Result<PathBuf, OciError> {
    let path = format!("/proc/{pid}/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|e| OciError::io(path.clone(), e))?;
    let mut unified = None;
    for want in ["pids", "freezer", "memory"] {
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(cg)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if ctrls.is_empty() {
                unified = Some(cg.to_string());
            } else if ctrls.split(',').any(|c| c == want) {
                let dir = format!("/sys/fs/cgroup/{ctrls}{cg}");
                return Ok(PathBuf::from(dir).join("cgroup.procs"));
            }
        }
    }
    let cg = unified.ok_or_else(|| OciError::BadInput(format!("{path}: no cgroup found")))?;
    let base = if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.procs").exists() {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    };
    Ok(PathBuf::from(format!("{base}{cg}")).join("cgroup.procs"))
}

/// Freezes a running container.
pub fn pause(root: &StateRoot, id: &str) -> Result<(), OciError> {
    let mut c = root.load(id)?;
    if c.status() != ContainerStatus::Running {
        return Err(OciError::WrongState(format!(
            "container {id} is not running: {}",
            status_word(c.status())
        )));
    }
    c.pause()
        .map_err(|e| OciError::runtime(format!("pausing container {id}"), e))
}

/// Thaws a paused container.
pub fn resume(root: &StateRoot, id: &str) -> Result<(), OciError> {
    let mut c = root.load(id)?;
    if c.status() != ContainerStatus::Paused {
        return Err(OciError::WrongState(format!(
            "container {id} is not paused: {}",
            status_word(c.status())
        )));
    }
    c.resume()
        .map_err(|e| OciError::runtime(format!("resuming container {id}"), e))
}
