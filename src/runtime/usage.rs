//! What a running container uses, read from its cgroups (`/xrun/<id>`, see [`super::cgroups`])
//! and its network namespace: one [`Usage`] sample per call.
//!
//! cgroup v1 (and hybrid hosts, where the controllers are v1): `cpuacct.usage`,
//! `cpuacct.usage_percpu`, `cpuacct.stat`, `cpu.stat` (throttling), `memory.usage_in_bytes`,
//! `memory.max_usage_in_bytes`, `memory.limit_in_bytes`, `memory.failcnt`, `memory.stat`,
//! `pids.current`, `pids.max`. cgroup v2: `cpu.stat`, `memory.current`, `memory.max`,
//! `memory.stat`, `pids.current`, `pids.max`. A file that is missing leaves its figure at
//! `None`. Network counters come from `/proc/<pid>/net/dev` (the namespace of PID 1).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cgroups::CGROUP_ROOT;

/// Which cgroup version the figures came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CgroupVersion {
    /// Per-controller hierarchies (also hybrid hosts).
    #[default]
    V1,
    /// The unified hierarchy.
    V2,
}

/// CPU time used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuUsage {
    /// Total CPU time (ns).
    pub total_ns: u64,
    /// Per CPU (ns; v1 only).
    pub percpu_ns: Vec<u64>,
    /// In user mode (ns).
    pub user_ns: u64,
    /// In kernel mode (ns).
    pub system_ns: u64,
    /// CFS periods elapsed, throttled, and the time throttled (ns).
    pub periods: u64,
    /// Periods in which the cgroup was throttled.
    pub throttled_periods: u64,
    /// Time throttled (ns).
    pub throttled_ns: u64,
}

/// Memory used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// Bytes in use (page cache included).
    pub usage: Option<u64>,
    /// Highest usage seen (v1 only).
    pub max_usage: Option<u64>,
    /// The limit (`None`: unlimited).
    pub limit: Option<u64>,
    /// Times the limit was hit (v1 only).
    pub failcnt: Option<u64>,
    /// `memory.stat`, key by key.
    pub stat: BTreeMap<String, u64>,
}

/// One interface's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_dropped: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Send errors.
    pub tx_errors: u64,
    /// Sent packets dropped.
    pub tx_dropped: u64,
}

/// One sample of a container's usage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Where the cgroup figures come from.
    pub version: CgroupVersion,
    /// CPU time.
    pub cpu: CpuUsage,
    /// Memory.
    pub memory: MemoryUsage,
    /// Processes (tasks) in the cgroup.
    pub pids_current: Option<u64>,
    /// Their limit (`None`: unlimited).
    pub pids_limit: Option<u64>,
    /// Network interfaces of the container's namespace but `lo` (empty without one).
    pub networks: BTreeMap<String, InterfaceCounters>,
}

/// A sample of container `id`'s cgroups; `pid` (its PID 1 on the host) gives the network
/// counters, `own_netns` says whether the container has a network namespace of its own
/// (otherwise the host's counters would be shown: none are).
pub fn sample(id: &str, pid: Option<i32>, own_netns: bool) -> Usage {
    let mut u = if super::cgroups::is_pure_v2() {
        sample_v2(&Path::new(CGROUP_ROOT).join(format!("xrun/{id}")))
    } else {
        sample_v1(id)
    };
    if let (Some(pid), true) = (pid, own_netns) {
        u.networks = std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
            .map(|t| parse_net_dev(&t))
            .unwrap_or_default();
    }
    u
}

fn v1_dir(controller: &str, id: &str) -> PathBuf {
    Path::new(CGROUP_ROOT)
        .join(controller)
        .join(format!("xrun/{id}"))
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// A limit file: `max` (v2), or v1's "unlimited" (a value near `i64::MAX`), is `None`.
fn read_limit(p: &Path) -> Option<u64> {
    let t = std::fs::read_to_string(p).ok()?;
    let t = t.trim();
    if t == "max" {
        return None;
    }
    t.parse::<u64>().ok().filter(|v| *v < (i64::MAX as u64) / 2)
}

/// `key value` lines.
fn read_keyed(p: &Path) -> BTreeMap<String, u64> {
    std::fs::read_to_string(p)
        .map(|t| parse_keyed(&t))
        .unwrap_or_default()
}

fn parse_keyed(t: &str) -> BTreeMap<String, u64> {
    t.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

/// Nanoseconds per `USER_HZ` tick (`cpuacct.stat` counts ticks).
fn ns_per_tick() -> u64 {
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        1_000_000_000 / hz as u64
    } else {
        10_000_000
    }
}

fn sample_v1(id: &str) -> Usage {
    let acct = v1_dir("cpuacct", id);
    let cpu_dir = v1_dir("cpu", id);
    let mem = v1_dir("memory", id);
    let pids = v1_dir("pids", id);
    let ticks = read_keyed(&acct.join("cpuacct.stat"));
    let tick = ns_per_tick();
    let throttle = read_keyed(&cpu_dir.join("cpu.stat"));
    let cpu = CpuUsage {
        total_ns: read_u64(&acct.join("cpuacct.usage")).unwrap_or(0),
        percpu_ns: std::fs::read_to_string(acct.join("cpuacct.usage_percpu"))
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        user_ns: ticks.get("user").copied().unwrap_or(0) * tick,
        system_ns: ticks.get("system").copied().unwrap_or(0) * tick,
        periods: throttle.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: throttle.get("nr_throttled").copied().unwrap_or(0),
        throttled_ns: throttle.get("throttled_time").copied().unwrap_or(0),
    };
    let memory = MemoryUsage {
        usage: read_u64(&mem.join("memory.usage_in_bytes")),
        max_usage: read_u64(&mem.join("memory.max_usage_in_bytes")),
        limit: read_limit(&mem.join("memory.limit_in_bytes")),
        failcnt: read_u64(&mem.join("memory.failcnt")),
        stat: read_keyed(&mem.join("memory.stat")),
    };
    Usage {
        version: CgroupVersion::V1,
        cpu,
        memory,
        pids_current: read_u64(&pids.join("pids.current")),
        pids_limit: read_limit(&pids.join("pids.max")),
        networks: BTreeMap::new(),
    }
}

fn sample_v2(dir: &Path) -> Usage {
    let stat = read_keyed(&dir.join("cpu.stat"));
    let us = |k: &str| stat.get(k).copied().unwrap_or(0) * 1000;
    let cpu = CpuUsage {
        total_ns: us("usage_usec"),
        percpu_ns: Vec::new(),
        user_ns: us("user_usec"),
        system_ns: us("system_usec"),
        periods: stat.get("nr_periods").copied().unwrap_or(0),
        throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
        throttled_ns: us("throttled_usec"),
    };
    let memory = MemoryUsage {
        usage: read_u64(&dir.join("memory.current")),
        max_usage: None,
        limit: read_limit(&dir.join("memory.max")),
        failcnt: None,
        stat: read_keyed(&dir.join("memory.stat")),
    };
    Usage {
        version: CgroupVersion::V2,
        cpu,
        memory,
        pids_current: read_u64(&dir.join("pids.current")),
        pids_limit: read_limit(&dir.join("pids.max")),
        networks: BTreeMap::new(),
    }
}

/// `/proc/net/dev`'s interfaces, `lo` left out.
fn parse_net_dev(t: &str) -> BTreeMap<String, InterfaceCounters> {
    t.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            let v: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            if name == "lo" || v.len() < 12 {
                return None;
            }
            Some((
                name.to_string(),
                InterfaceCounters {
                    rx_bytes: v[0],
                    rx_packets: v[1],
                    rx_errors: v[2],
                    rx_dropped: v[3],
                    tx_bytes: v[8],
                    tx_packets: v[9],
                    tx_errors: v[10],
                    tx_dropped: v[11],
                },
            ))
        })
        .collect()
}

/// The host's CPU time so far (ns; `/proc/stat`'s `cpu` line: user through steal) and its
/// online CPUs, the base Docker's CPU percentage is computed against.
pub fn host_cpu() -> (u64, u32) {
    let t = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = t
        .lines()
        .find(|l| l.starts_with("cpu "))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|v| v.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    let online = t
        .lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count() as u32;
    (ticks * ns_per_tick(), online.max(1))
}

/// The host's memory (bytes; `/proc/meminfo`'s `MemTotal`).
pub fn host_memory() -> Option<u64> {
    let t = std::fs::read_to_string("/proc/meminfo").ok()?;
    let l = t.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = l.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_lines_are_read_and_lo_left_out() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
                 eth0:    1500      10    1    2    0     0          0         0      700       5    3    4    0     0       0          0\n";
        let m = parse_net_dev(t);
        assert_eq!(m.len(), 1);
        let e = &m["eth0"];
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped),
            (1500, 10, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped),
            (700, 5, 3, 4)
        );
    }

    #[test]
    fn keyed_files_skip_what_is_not_a_number() {
        let m = parse_keyed("cache 4096\nrss 8192\nbogus x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["rss"], 8192);
    }
}
