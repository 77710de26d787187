//! The processes of a container for `GET /containers/{id}/top`: every process in the pid
//! namespace of the container's PID 1, from `/proc`.

use std::path::Path;

fn pid_ns(pid: &str) -> Option<std::path::PathBuf> {
    std::fs::read_link(Path::new("/proc").join(pid).join("ns/pid")).ok()
}

/// Rows of `UID`, `PID`, `PPID`, `CMD` (host pids) for the processes sharing `pid`'s pid
/// namespace.
pub fn in_pid_namespace_of(pid: i32) -> Vec<Vec<String>> {
    let Some(ns) = pid_ns(&pid.to_string()) else {
        return Vec::new();
    };
    let mut rows = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return rows;
    };
    let mut pids: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for p in pids {
        let ps = p.to_string();
        if pid_ns(&ps).as_ref() != Some(&ns) {
            continue;
        }
        let base = Path::new("/proc").join(&ps);
        let status = std::fs::read_to_string(base.join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .unwrap_or("")
                .to_string()
        };
        let cmdline = std::fs::read(base.join("cmdline")).unwrap_or_default();
        let mut cmd = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        if cmd.is_empty() {
            cmd = format!("[{}]", field("Name:"));
        }
        rows.push(vec![field("Uid:"), ps, field("PPid:"), cmd]);
    }
    rows
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_is_in_its_own_namespace_list() {
        let me = std::process::id() as i32;
        let rows = super::in_pid_namespace_of(me);
        assert!(rows.iter().any(|r| r[1] == me.to_string()), "{rows:?}");
        assert!(super::in_pid_namespace_of(-5).is_empty());
    }
}
