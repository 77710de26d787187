//! `xrun binfmt status|install|uninstall`: binfmt_misc handlers for the emulated route.
//! Owner: the emulation stage. Logic lives in `xrun::emulation`.

use std::path::Path;

use anyhow::Context;
use serde::Serialize;
use xrun::emulation::install::{self, ArchResult};
use xrun::emulation::{BINFMT_DIR, BinfmtState, arch, qemu};
use xrun::platform::Platform;

use super::Global;

/// `xrun binfmt …`.
#[derive(Debug, clap::Subcommand)]
pub enum BinfmtCommand {
    /// Show registered handlers and whether containers can use them.
    Status(StatusArgs),
    /// Register qemu-user-static interpreters (flags PF) under xrun's own handler names.
    Install(InstallArgs),
    /// Remove handlers xrun registered (never anyone else's).
    Uninstall(UninstallArgs),
}

/// `xrun binfmt status` arguments.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also list handlers that match no known architecture (python, wine, …).
    #[arg(long, short)]
    pub all: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A table for people.
    Table,
    /// JSON for programs.
    Json,
}

/// `xrun binfmt install` arguments.
#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    /// Architectures (`arm64`, `arm`, `riscv64`, `ppc64le`, `s390x`, `386`, `amd64`,
    /// `mips64le`, platforms like `linux/arm/v7`), or `all` (the default).
    pub archs: Vec<String>,
    /// Register even when someone else's handler holds the architecture (ours goes ahead).
    #[arg(long)]
    pub force: bool,
}

/// `xrun binfmt uninstall` arguments.
#[derive(Debug, clap::Args)]
pub struct UninstallArgs {
    /// Architectures whose xrun handler to remove (default: every xrun handler).
    pub archs: Vec<String>,
}

/// Runs `xrun binfmt …`.
pub fn binfmt(_g: &Global, a: BinfmtCommand) -> anyhow::Result<u8> {
    match a {
        BinfmtCommand::Status(s) => status(s),
        BinfmtCommand::Install(i) => install_cmd(i),
        BinfmtCommand::Uninstall(u) => uninstall_cmd(u),
    }
}

/// One row of the status table / JSON.
#[derive(Debug, Serialize)]
struct Row {
    arch: Option<String>,
    handler: String,
    enabled: bool,
    interpreter: String,
    flags: String,
    usable_in_containers: bool,
    /// The kernel uses this handler for its architecture (the newest enabled match).
    in_use: bool,
    xrun: bool,
    note: String,
    magic: Option<String>,
    mask: Option<String>,
    offset: usize,
}

/// Per-architecture summary.
#[derive(Debug, Serialize)]
struct ArchRow {
    arch: &'static str,
    native: bool,
    handler: Option<String>,
    usable_in_containers: bool,
    qemu: Option<String>,
}

#[derive(Debug, Serialize)]
struct StatusJson {
    dir: String,
    mounted: bool,
    enabled: bool,
    handlers: Vec<Row>,
    arches: Vec<ArchRow>,
}

fn status(a: StatusArgs) -> anyhow::Result<u8> {
    let state = BinfmtState::read_host().context("reading binfmt_misc")?;
    let host = Platform::host().architecture;
    let mut rows = Vec::new();
    for h in &state.handlers {
        let spec = h.arch();
        if spec.is_none() && !a.all && matches!(a.format, Format::Table) {
            continue;
        }
        let in_use = spec
            .and_then(|s| state.effective(s))
            .is_some_and(|e| e.name == h.name);
        let mut note = h.unusable_reason().unwrap_or_default();
        if let Some(s) = spec
            && h.enabled
            && !in_use
            && let Some(e) = state.effective(s)
        {
            note = join(&note, &format!("shadowed by {}", e.name));
        }
        if spec.is_some_and(|s| s.is_native_on(&host)) {
            note = join(&note, "native on this host");
        }
        rows.push(Row {
            arch: spec.map(|s| s.arch.to_string()),
            handler: h.name.clone(),
            enabled: h.enabled,
            interpreter: h.interpreter.clone(),
            flags: h.flags.clone(),
            usable_in_containers: h.usable_in_containers() && (in_use || spec.is_none()),
            in_use,
            xrun: h.is_xrun(),
            note,
            magic: h.magic.as_ref().map(hex::encode),
            mask: h.mask.as_ref().map(hex::encode),
            offset: h.offset,
        });
    }
    // Table order of architectures, non-ELF handlers last; kernel order within one architecture.
    rows.sort_by_key(|r| {
        r.arch
            .as_deref()
            .and_then(|a| arch::ARCHES.iter().position(|s| s.arch == a))
            .unwrap_or(usize::MAX)
    });
    let arches: Vec<ArchRow> = arch::ARCHES
        .iter()
        .map(|s| {
            let eff = state.effective(s);
            ArchRow {
                arch: s.arch,
                native: s.is_native_on(&host),
                handler: eff.map(|h| h.name.clone()),
                usable_in_containers: eff.is_some_and(|h| h.usable_in_containers()),
                qemu: qemu::find(s).ok().map(|p| p.display().to_string()),
            }
        })
        .collect();
    match a.format {
        Format::Json => {
            let out = StatusJson {
                dir: state.dir.display().to_string(),
                mounted: state.mounted,
                enabled: state.enabled,
                handlers: rows,
                arches,
            };
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Format::Table => print_table(&state, &rows, &arches),
    }
    Ok(0)
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}; {b}")
    }
}

fn print_table(state: &BinfmtState, rows: &[Row], arches: &[ArchRow]) {
    let dir = state.dir.display();
    if !state.mounted {
        println!(
            "binfmt_misc: not mounted at {dir} (run as root, or: mount -t binfmt_misc binfmt_misc {dir})"
        );
        return;
    }
    println!(
        "binfmt_misc: mounted at {dir}, {}",
        if state.enabled { "enabled" } else { "disabled" }
    );
    let mut table: Vec<[String; 6]> = vec![[
        "ARCH".into(),
        "HANDLER".into(),
        "INTERPRETER".into(),
        "FLAGS".into(),
        "CONTAINERS".into(),
        "NOTE".into(),
    ]];
    for r in rows {
        table.push([
            r.arch.clone().unwrap_or_else(|| "-".into()),
            r.handler.clone(),
            r.interpreter.clone(),
            if r.flags.is_empty() {
                "-".into()
            } else {
                r.flags.clone()
            },
            if r.usable_in_containers { "yes" } else { "no" }.into(),
            r.note.clone(),
        ]);
    }
    for a in arches.iter().filter(|a| a.handler.is_none() && !a.native) {
        let fix = match &a.qemu {
            Some(_) => format!("no handler: xrun binfmt install {}", a.arch),
            None => "no handler, no qemu-user-static".to_string(),
        };
        table.push([
            a.arch.into(),
            "-".into(),
            a.qemu.clone().unwrap_or_else(|| "-".into()),
            "-".into(),
            "no".into(),
            fix,
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in &table {
        let line: Vec<String> = (0..6)
            .map(|i| format!("{:<w$}", r[i], w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn install_cmd(a: InstallArgs) -> anyhow::Result<u8> {
    let all: Vec<_> = arch::ARCHES.iter().collect();
    let specs = install::resolve(&a.archs, &all)?;
    let host = Platform::host().architecture;
    let results = install::install(Path::new(BINFMT_DIR), &specs, &host, a.force)?;
    report(&results)
}

fn uninstall_cmd(a: UninstallArgs) -> anyhow::Result<u8> {
    let specs = if a.archs.is_empty() {
        None
    } else {
        Some(install::resolve(&a.archs, &[])?)
    };
    let results = install::uninstall(Path::new(BINFMT_DIR), specs.as_deref())?;
    if results.is_empty() {
        println!("no xrun handlers registered; nothing to do");
    }
    report(&results)
}

/// Prints one line per architecture; failures go to stderr as `xrun: …` and make it exit 125.
fn report(results: &[ArchResult]) -> anyhow::Result<u8> {
    let mut failed = false;
    for r in results {
        match &r.result {
            Ok(o) => println!("{}", o.describe(r.spec.arch)),
            Err(e) => {
                failed = true;
                eprintln!("xrun: {}: {e}", r.spec.arch);
            }
        }
    }
    Ok(if failed { super::EXIT_XRUN_ERROR } else { 0 })
}
