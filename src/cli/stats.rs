//! `xrun stats [--no-stream] [CONTAINER…]`: what containers use, as `docker stats` shows it
//! (the engine's samples, [`Engine::stats`]).

use std::io::{IsTerminal, Write};

use xrun::engine::{ContainerStats, Engine, STATS_INTERVAL};

use super::Global;
use super::run::engine_failure;

/// `xrun stats` arguments.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Print one reading and exit.
    #[arg(long)]
    pub no_stream: bool,
    /// Containers (default: the running ones).
    pub containers: Vec<String>,
}

/// Bytes in binary units, as `docker stats` prints memory (`1.5MiB`).
fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

fn row(s: &ContainerStats) -> String {
    let used = s.memory_used();
    let mem_pct = if s.memory_limit > 0 {
        used as f64 / s.memory_limit as f64 * 100.0
    } else {
        0.0
    };
    let (rx, tx) = s.network_io();
    format!(
        "{:<14} {:<20} {:>7} {:>21} {:>7} {:>19} {:>5}",
        &s.id[..12],
        s.name,
        format!("{:.2}%", s.cpu_percent()),
        format!("{} / {}", binary_size(used), binary_size(s.memory_limit)),
        format!("{mem_pct:.2}%"),
        format!(
            "{} / {}",
            super::images::human_size(rx),
            super::images::human_size(tx)
        ),
        s.usage.pids_current.unwrap_or(0),
    )
}

fn header() -> String {
    format!(
        "{:<14} {:<20} {:>7} {:>21} {:>7} {:>19} {:>5}",
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "PIDS"
    )
}

/// `xrun stats`.
pub fn stats(g: &Global, a: StatsArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let keys: Vec<String> = if a.containers.is_empty() {
        match engine.list() {
            Ok(l) => l
                .into_iter()
                .filter(|r| r.is_running())
                .map(|r| r.id)
                .collect(),
            Err(e) => return engine_failure(e),
        }
    } else {
        a.containers.clone()
    };
    let mut last: Vec<Option<ContainerStats>> = vec![None; keys.len()];
    let tty = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        let mut now = Vec::new();
        for (k, prev) in keys.iter().zip(last.iter_mut()) {
            match engine.stats(k, prev.take()) {
                Ok(s) => now.push(s),
                Err(e) => return engine_failure(e),
            }
        }
        // A reading needs two samples for its CPU figure: the first one waits for a second.
        if first {
            first = false;
            last = now.into_iter().map(Some).collect();
            std::thread::sleep(STATS_INTERVAL);
            continue;
        }
        let mut out = std::io::stdout().lock();
        if tty && !a.no_stream {
            let _ = write!(out, "\x1b[2J\x1b[H");
        }
        let _ = writeln!(out, "{}", header());
        for s in &now {
            let _ = writeln!(out, "{}", row(s));
        }
        let _ = out.flush();
        if a.no_stream {
            return Ok(0);
        }
        last = now.into_iter().map(Some).collect();
        std::thread::sleep(STATS_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_is_shown_in_binary_units() {
        assert_eq!(super::binary_size(512), "512B");
        assert_eq!(super::binary_size(64 << 20), "64.00MiB");
        assert_eq!(super::binary_size(1536), "1.50KiB");
    }
}
