//! `xrun system check [--repair] [--format json]`, `system df`, `system prune [-a] [-f]`:
//! parsing and printing only (the work is the engine's).

use std::io::BufRead;

use xrun::engine::Engine;

use super::Global;
use super::images::human_size;
use super::run::engine_failure;

/// `xrun system ...`.
#[derive(Debug, clap::Subcommand)]
pub enum SystemCommand {
    /// Check the store and the runtime state for corruption and leftovers.
    Check(CheckArgs),
    /// Show disk use (images, containers, local volumes, build cache).
    Df(DfArgs),
    /// Remove stopped containers, unused networks, dangling images and the build cache.
    Prune(PruneArgs),
}

/// `system check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Fix what can be fixed (remove leftovers, drop broken records).
    #[arg(long)]
    pub repair: bool,
    /// `json` for a machine-readable report.
    #[arg(long)]
    pub format: Option<String>,
}

/// `system df`.
#[derive(Debug, clap::Args)]
pub struct DfArgs {
    /// `json` for a machine-readable report.
    #[arg(long)]
    pub format: Option<String>,
}

/// `system prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Remove every unused image, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// Runs a `system` subcommand.
pub fn system(g: &Global, cmd: SystemCommand) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    match cmd {
        SystemCommand::Check(a) => {
            let report = match engine.system_check(a.repair) {
                Ok(r) => r,
                Err(e) => return engine_failure(e),
            };
            if a.format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for f in &report.findings {
                    let state = if f.repaired {
                        "repaired"
                    } else if f.corruption {
                        "CORRUPT"
                    } else {
                        "leftover"
                    };
                    println!("{state:<9} {:<21} {}", f.kind, f.subject);
                }
                if report.findings.is_empty() {
                    println!("ok: no corruption, nothing left over");
                }
            }
            Ok(if report.clean() { 0 } else { 1 })
        }
        SystemCommand::Df(a) => {
            let rows = match engine.system_df() {
                Ok(r) => r,
                Err(e) => return engine_failure(e),
            };
            if a.format.as_deref() == Some("json") {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            println!(
                "{:<15} {:<7} {:<8} {:<10} RECLAIMABLE",
                "TYPE", "TOTAL", "ACTIVE", "SIZE"
            );
            for r in rows {
                let pct = (r.reclaimable * 100).checked_div(r.size).unwrap_or(0);
                println!(
                    "{:<15} {:<7} {:<8} {:<10} {} ({pct}%)",
                    r.kind,
                    r.total,
                    r.active,
                    human_size(r.size),
                    human_size(r.reclaimable)
                );
            }
            Ok(0)
        }
        SystemCommand::Prune(a) => {
            if !a.force {
                eprint!(
                    "WARNING! This will remove all stopped containers, networks not used by a container, {} and all build cache.\nAre you sure you want to continue? [y/N] ",
                    if a.all {
                        "all images without a container"
                    } else {
                        "dangling images"
                    }
                );
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                if !line.trim().eq_ignore_ascii_case("y") {
                    return Ok(0);
                }
            }
            let r = match engine.system_prune(a.all) {
                Ok(r) => r,
                Err(e) => return engine_failure(e),
            };
            for id in &r.containers {
                println!("Deleted Container: {id}");
            }
            for n in &r.networks {
                println!("Deleted Network: {n}");
            }
            for i in &r.images {
                println!("Untagged: {i}");
            }
            if r.build_cache > 0 {
                println!("Deleted build cache entries: {}", r.build_cache);
            }
            println!("Total reclaimed space: {}", human_size(r.store.bytes));
            Ok(0)
        }
    }
}
