//! [`Engine::stats`]: what a container uses (CPU, memory, processes, network), sampled from
//! its cgroups ([`crate::runtime::usage`]), with the previous sample so rates can be computed
//! the way `docker stats` computes them.
//!
//! A container that is not running has zero figures. The vm route's containers run inside a
//! VM whose cgroups the host does not have: their figures are zero too.

use std::time::Duration;

use crate::runtime::options::ExecRoute;
use crate::runtime::usage::{self, Usage};
use crate::runtime::{ContainerRecord, Network, Status};

use super::{Engine, EngineError};

/// The interval between two samples of a stream (Docker's collector samples once a second),
/// and the wait of a one-time reading that is not `one-shot` (it needs two samples).
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// One sample of a container's usage, with what a rate needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    /// The container's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether it was running when sampled.
    pub running: bool,
    /// When the sample was taken (RFC 3339).
    pub read: String,
    /// The cgroup figures.
    pub usage: Usage,
    /// The host's CPU time when sampled (ns).
    pub system_cpu_ns: u64,
    /// The host's online CPUs.
    pub online_cpus: u32,
    /// The memory limit in force: the cgroup's, or the host's memory without one.
    pub memory_limit: u64,
    /// The sample before this one (its own `previous` dropped), if any.
    pub previous: Option<Box<ContainerStats>>,
}

impl ContainerStats {
    /// CPU use since the previous sample, in percent of one CPU (`docker stats`: 200% is two
    /// CPUs busy); 0 without a previous sample.
    pub fn cpu_percent(&self) -> f64 {
        let Some(p) = &self.previous else {
            return 0.0;
        };
        let cpu = self.usage.cpu.total_ns.saturating_sub(p.usage.cpu.total_ns) as f64;
        let system = self.system_cpu_ns.saturating_sub(p.system_cpu_ns) as f64;
        if cpu > 0.0 && system > 0.0 {
            cpu / system * f64::from(self.online_cpus) * 100.0
        } else {
            0.0
        }
    }

    /// Memory in use without the inactive page cache (what `docker stats` shows).
    pub fn memory_used(&self) -> u64 {
        let m = &self.usage.memory;
        let inactive = ["total_inactive_file", "inactive_file"]
            .iter()
            .find_map(|k| m.stat.get(*k))
            .copied()
            .unwrap_or(0);
        m.usage.unwrap_or(0).saturating_sub(inactive)
    }

    /// Bytes received and sent over all interfaces.
    pub fn network_io(&self) -> (u64, u64) {
        self.usage
            .networks
            .values()
            .fold((0, 0), |(r, t), i| (r + i.rx_bytes, t + i.tx_bytes))
    }
}

impl Engine {
    /// A sample of container `key`'s usage; `previous` (an earlier sample of the same
    /// container) becomes its [`ContainerStats::previous`].
    pub fn stats(
        &self,
        key: &str,
        previous: Option<ContainerStats>,
    ) -> Result<ContainerStats, EngineError> {
        let rec = self.containers()?.find(key)?;
        Ok(sample(&rec, previous))
    }

    /// Two samples of container `key` [`STATS_INTERVAL`] apart (a one-time reading with a
    /// rate: `docker stats --no-stream`); a container that is not running is sampled once.
    pub fn stats_settled(&self, key: &str) -> Result<ContainerStats, EngineError> {
        let first = self.stats(key, None)?;
        if !first.running {
            return Ok(first);
        }
        std::thread::sleep(STATS_INTERVAL);
        let id = first.id.clone();
        self.stats(&id, Some(first))
    }
}

fn sample(rec: &ContainerRecord, previous: Option<ContainerStats>) -> ContainerStats {
    let running = rec.status() == Status::Running && rec.options.route != ExecRoute::Vm;
    let pid = rec.pid.as_ref().map(|p| p.pid);
    let u = if running {
        usage::sample(&rec.id, pid, rec.options.network != Network::Host)
    } else {
        Usage::default()
    };
    let (system_cpu_ns, online_cpus) = usage::host_cpu();
    let host_mem = usage::host_memory().unwrap_or(u64::MAX);
    let memory_limit = u.memory.limit.map_or(host_mem, |l| l.min(host_mem));
    ContainerStats {
        id: rec.id.clone(),
        name: rec.name.clone(),
        running,
        read: crate::runtime::state::now(),
        usage: u,
        system_cpu_ns,
        online_cpus,
        memory_limit,
        previous: previous.map(|mut p| {
            p.previous = None;
            Box::new(p)
        }),
    }
}
