//! `xrun host`. Owner: the kernelcheck stage (host profile).
//!
//! `--format table` (default) for people, grouped like `docker info` plus moby's
//! `check-config.sh`; `--format json` prints the versioned [`HostProfile`] schema
//! (`docs/host-profile.md`); `--format nfd` a node-feature-discovery feature file.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use xrun::kernelcheck::profile::{CheckState, HostProfile};
use xrun::kernelcheck::{HostSource, checks};

use super::Global;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Grouped sections for people.
    Table,
    /// The versioned host profile (`schema_version`, stable names).
    Json,
    /// A node-feature-discovery feature file (`features.d/`): labels for schedulers.
    Nfd,
}

/// `xrun host` arguments.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Read a recorded host (a directory with `source.json` and the raw files at their
    /// absolute paths) instead of this machine.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// In the table, list every kernel option check (not only the missing ones).
    #[arg(long, short = 'a')]
    pub all: bool,
}

/// Runs `xrun host`.
pub fn host(_g: &Global, a: HostArgs) -> anyhow::Result<u8> {
    let profile = match &a.from {
        Some(dir) => {
            let src = HostSource::recorded(dir).context("--from")?;
            HostProfile::gather_from(&src)
        }
        None => HostProfile::gather(),
    };
    let out = match a.format {
        Format::Json => profile.to_json() + "\n",
        Format::Nfd => xrun::kernelcheck::nfd::feature_file(&profile),
        Format::Table => table(&profile, a.all),
    };
    print!("{out}");
    Ok(0)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// Wraps a word list at ~100 columns with a hanging indent.
fn words(list: &[String], indent: usize) -> String {
    let mut out = String::new();
    let mut col = indent;
    for (i, w) in list.iter().enumerate() {
        if i > 0 {
            if col + 1 + w.len() > 100 {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                col = indent;
            } else {
                out.push(' ');
                col += 1;
            }
        }
        out.push_str(w);
        col += w.len();
    }
    if list.is_empty() {
        out.push('-');
    }
    out
}

/// The table for people.
fn table(p: &HostProfile, all: bool) -> String {
    const W: usize = 20;
    let mut s = String::new();
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, " {:<w$}{v}", format!("{k}:"), w = W - 1);
    };
    line("Name", p.name.clone());
    line("Platform", p.platform.to_string());
    if let Some(os) = &p.os_release {
        line("Operating System", os.clone());
    }
    let c = &p.cpu;
    let level = if c.amd64_level > 0 {
        format!(", amd64 level v{}", c.amd64_level)
    } else {
        String::new()
    };
    line(
        "CPU",
        format!(
            "{} × {} ({}{}){}",
            c.count,
            c.machine,
            if c.model.is_empty() {
                "unknown model"
            } else {
                &c.model
            },
            if c.vendor.is_empty() {
                String::new()
            } else {
                format!(", {}", c.vendor)
            },
            level
        ),
    );
    line(
        "Page size",
        format!("{} bytes, {}-endian", c.page_size, c.endianness),
    );
    let k = &p.kernel;
    line(
        "Kernel",
        format!(
            "{} ({}.{}.{})",
            k.release, k.version[0], k.version[1], k.version[2]
        ),
    );
    line(
        "Kernel config",
        match &k.config_source {
            Some(src) => format!("{src} ({} options set)", k.config.len()),
            None => "not found (option checks are unknown)".into(),
        },
    );
    line(
        "Modules",
        if k.modules_supported {
            format!(
                "supported: {} loaded, {} available, {} built in",
                k.modules_loaded.len(),
                k.modules_available.len(),
                k.modules_builtin.len()
            )
        } else {
            format!(
                "not supported (everything is built in; {} in /sys/module)",
                k.modules_builtin.len()
            )
        },
    );

    let _ = writeln!(s, "\nCgroups:");
    let cg = &p.cgroups;
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "  {:<w$}{v}", format!("{k}:"), w = W - 2);
    };
    line("Mode", cg.mode.clone());
    for m in &cg.mounts {
        let what = if m.version == 2 {
            words(&cg.unified_controllers, 0)
        } else {
            let mut c = m.controllers.clone();
            if let Some(n) = &m.name {
                c.push(format!("name={n}"));
            }
            c.join(",")
        };
        line(&format!("v{}", m.version), format!("{:<28}{what}", m.path));
    }
    let mut unbound: Vec<String> = cg
        .kernel_controllers
        .iter()
        .filter(|c| !cg.controllers.contains_key(*c))
        .cloned()
        .collect();
    unbound.sort();
    if !unbound.is_empty() {
        line("Not mounted", unbound.join(" "));
    }
    if !cg.disabled_controllers.is_empty() {
        line("Disabled", cg.disabled_controllers.join(" "));
    }

    let _ = writeln!(s, "\nIsolation:");
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "  {:<w$}{v}", format!("{k}:"), w = W - 2);
    };
    line("Namespaces", words(&p.namespaces, W + 1));
    let u = &p.user_namespaces;
    let mut userns = if u.supported {
        "supported".to_string()
    } else {
        "not in this kernel".into()
    };
    if let Some(max) = u.max {
        let _ = write!(userns, ", max {max}");
    }
    if let Some(b) = u.unprivileged_clone {
        let _ = write!(userns, ", unprivileged_userns_clone={}", b as u8);
    }
    if let Some(b) = u.apparmor_restricted {
        let _ = write!(
            userns,
            ", apparmor_restrict_unprivileged_userns={}",
            b as u8
        );
    }
    line("User namespaces", userns);
    let sec = &p.security;
    line(
        "Seccomp",
        format!(
            "{}{}",
            yes_no(p.seccomp),
            if sec.seccomp_actions.is_empty() {
                String::new()
            } else {
                format!(" ({})", sec.seccomp_actions.join(" "))
            }
        ),
    );
    line(
        "This process",
        format!(
            "seccomp {}, no_new_privs {}",
            sec.seccomp_mode.as_deref().unwrap_or("unknown"),
            sec.no_new_privs.map_or("unknown", yes_no)
        ),
    );
    line(
        "LSM",
        format!(
            "apparmor {}, selinux {}",
            yes_no(sec.apparmor),
            yes_no(sec.selinux)
        ),
    );
    line("Filesystems", words(&p.filesystems, W + 1));

    let _ = writeln!(s, "\nEmulation and VMs:");
    let e = &p.emulation;
    let mut line = |k: &str, v: String| {
        let _ = writeln!(s, "  {:<w$}{v}", format!("{k}:"), w = W - 2);
    };
    line(
        "binfmt_misc",
        match &e.binfmt_path {
            Some(path) => format!(
                "mounted at {path}, {}",
                if e.binfmt_enabled {
                    "enabled"
                } else {
                    "disabled"
                }
            ),
            None => "not mounted".into(),
        },
    );
    let archs: Vec<String> = e
        .handlers
        .iter()
        .filter(|h| h.usable_in_containers)
        .filter_map(|h| h.arch.clone())
        .collect();
    line("Container archs", words(&archs, W + 1));
    line(
        "qemu-user",
        words(&e.qemu_user.keys().cloned().collect::<Vec<_>>(), W + 1),
    );
    line(
        "qemu-system",
        words(&e.qemu_system.keys().cloned().collect::<Vec<_>>(), W + 1),
    );
    line(
        "KVM",
        format!(
            "{}: {}",
            if e.kvm_usable {
                "usable"
            } else if e.kvm_present {
                "present, not usable"
            } else {
                "absent"
            },
            e.kvm_note
        ),
    );
    if !e.handlers.is_empty() {
        let _ = writeln!(s, "\n  binfmt handlers:");
        let _ = writeln!(
            s,
            "    {:<26}{:<9}{:<7}{:<11}{:<11}INTERPRETER",
            "NAME", "ARCH", "FLAGS", "ENABLED", "CONTAINERS"
        );
        for h in &e.handlers {
            let _ = writeln!(
                s,
                "    {:<26}{:<9}{:<7}{:<11}{:<11}{}",
                h.name,
                h.arch.as_deref().unwrap_or("-"),
                if h.flags.is_empty() { "-" } else { &h.flags },
                yes_no(h.enabled),
                yes_no(h.usable_in_containers),
                h.interpreter
            );
        }
    }

    let _ = writeln!(
        s,
        "\nKernel options{}:",
        if all {
            ""
        } else {
            " (problems only; -a for all)"
        }
    );
    for g in &k.checks {
        let shown: Vec<_> = g
            .options
            .iter()
            .filter(|o| all || !matches!(o.state, CheckState::Enabled | CheckState::Module))
            .collect();
        let ok = g.options.len()
            - g.options
                .iter()
                .filter(|o| !matches!(o.state, CheckState::Enabled | CheckState::Module))
                .count();
        let _ = writeln!(s, "  {} ({}/{} set):", g.title, ok, g.options.len());
        for o in shown {
            let _ = writeln!(s, "    - {}: {}  [{}]", o.option, o.state, o.purpose);
        }
    }
    let missing = checks::missing_necessary(&k.checks);
    if !missing.is_empty() {
        let _ = writeln!(
            s,
            "\n WARNING: generally necessary options are missing: {}",
            missing.join(" ")
        );
    }
    if !p.unknowns.is_empty() {
        let _ = writeln!(s, "\nUnknown:");
        for u in &p.unknowns {
            let _ = writeln!(s, "  {}: {}", u.fact, u.reason);
        }
    }
    s
}
