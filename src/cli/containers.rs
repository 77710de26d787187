//! `xrun start/ps/logs/stop/kill/rm/exec` and the hidden internal commands. Owner: runtime.

use std::io::{Read, Write};
use std::time::Duration;

use xrun::runtime::{self, BundleExtras, Containers, Status, lifecycle, signals, state};

use super::Global;
use super::run::fail;

/// `xrun start` arguments.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    pub interactive: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}
/// `xrun ps` arguments.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Only print ids.
    #[arg(short, long)]
    pub quiet: bool,
}
/// `xrun logs` arguments.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Follow the log until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Show when each piece of output arrived (RFC 3339, UTC).
    #[arg(short, long)]
    pub timestamps: bool,
    /// Container.
    pub container: String,
}
/// `xrun stop` arguments.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10)]
    pub time: u64,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}
/// `xrun kill` arguments.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Signal to send.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}
/// `xrun rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    pub force: bool,
    /// Containers.
    #[arg(required = true)]
    pub containers: Vec<String>,
}
/// `xrun exec` arguments.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable.
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Container.
    pub container: String,
    /// Command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}
/// Hidden commands xrun runs itself.
#[derive(Debug, clap::Subcommand)]
pub enum InternalCommand {
    /// The container init (PID 1 for `--init` and the emulated route).
    Init {
        /// The command.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// The per-container monitor of a detached container.
    Monitor {
        /// Container id.
        id: String,
    },
}

fn open(g: &Global) -> Result<Containers, runtime::RuntimeError> {
    Containers::open(&g.root)
}

/// `xrun start`.
pub fn start(g: &Global, a: StartArgs) -> anyhow::Result<u8> {
    if a.attach
        && let Err(e) = runtime::seal::ensure_sealed()
    {
        return fail(e);
    }
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    lifecycle::cleanup_stale(&c);
    let mut code = 0;
    for key in &a.containers {
        let rec = match c.find(key) {
            Ok(r) => r,
            Err(e) => {
                code = fail(e)?;
                continue;
            }
        };
        if rec.is_running() {
            println!("{key}");
            continue;
        }
        if a.interactive || a.attach {
            if a.interactive {
                let _ = c.update(&rec.id, |r| r.options.interactive = true);
            }
            return match lifecycle::run_attached(
                &c,
                &rec.id,
                &BundleExtras::default(),
                false,
                &super::route::VmMachines,
            ) {
                Ok(code) => Ok(code.clamp(0, 255) as u8),
                Err(e) => fail(e),
            };
        }
        match lifecycle::start_detached(&c, &g.root, &rec.id, false) {
            Ok(()) => println!("{key}"),
            Err(e) => code = fail(e)?,
        }
    }
    Ok(code)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// `xrun ps`.
pub fn ps(g: &Global, a: PsArgs) -> anyhow::Result<u8> {
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut rows = vec![[
        "CONTAINER ID".to_string(),
        "IMAGE".into(),
        "COMMAND".into(),
        "CREATED".into(),
        "STATUS".into(),
        "ROUTE".into(),
        "NAMES".into(),
    ]];
    for r in c.list() {
        let status = r.status();
        if !a.all && status != Status::Running {
            continue;
        }
        if a.quiet {
            println!("{}", r.short_id());
            continue;
        }
        let st = match status {
            Status::Created => "Created".to_string(),
            Status::Running => format!(
                "Up {}",
                state::human_since(r.started.as_deref().unwrap_or(&r.created))
            ),
            Status::Exited(code) => format!(
                "Exited ({code}) {} ago",
                state::human_since(r.finished.as_deref().unwrap_or(&r.created))
            ),
            Status::Unknown => "Exited (unknown)".to_string(),
        };
        rows.push([
            r.short_id().to_string(),
            r.image.name.clone(),
            format!("\"{}\"", truncate(&r.command.join(" "), 20)),
            format!("{} ago", state::human_since(&r.created)),
            st,
            r.route.clone(),
            r.name.clone(),
        ]);
    }
    if a.quiet {
        return Ok(0);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = std::io::stdout().lock();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 6 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}   ", w = widths[i]));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(0)
}

/// `xrun logs`.
pub fn logs(g: &Global, a: LogsArgs) -> anyhow::Result<u8> {
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let rec = match c.find(&a.container) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let path = c.log_path(&rec.id);
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !a.follow => return Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Not started yet: wait for the file.
            loop {
                std::thread::sleep(Duration::from_millis(50));
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
                if !c.container_dir(&rec.id).exists() {
                    return Ok(0);
                }
            }
        }
        Err(e) => return fail(runtime::RuntimeError::io("reading the log", e)),
    };
    // Records go back to the stream they came from (see xrun::runtime::log).
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let emit = |pending: &mut Vec<u8>| -> anyhow::Result<()> {
        let (records, used) = runtime::log::decode(pending)?;
        let mut out = std::io::stdout().lock();
        let mut err = std::io::stderr().lock();
        for r in records {
            let w: &mut dyn Write = match r.stream {
                runtime::log::Stream::Stdout => &mut out,
                runtime::log::Stream::Stderr => &mut err,
            };
            if a.timestamps {
                write!(w, "{} ", r.time)?;
            }
            w.write_all(&r.data)?;
        }
        out.flush()?;
        err.flush()?;
        pending.drain(..used);
        Ok(())
    };
    loop {
        let n = f.read(&mut buf).unwrap_or(0);
        if n > 0 {
            pending.extend_from_slice(&buf[..n]);
            if pending.len() > (1 << 20) {
                emit(&mut pending)?;
            }
            continue;
        }
        emit(&mut pending)?;
        if !a.follow {
            return Ok(0);
        }
        let running = c.load(&rec.id).map(|r| r.is_running()).unwrap_or(false);
        if !running {
            // One last read for what was written just before the exit.
            let mut rest = Vec::new();
            let _ = f.read_to_end(&mut rest);
            pending.extend_from_slice(&rest);
            emit(&mut pending)?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `xrun stop`.
pub fn stop(g: &Global, a: StopArgs) -> anyhow::Result<u8> {
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut code = 0;
    for key in &a.containers {
        match lifecycle::stop(&c, key, Duration::from_secs(a.time)) {
            Ok(_) => println!("{key}"),
            Err(e) => code = fail(e)?,
        }
    }
    Ok(code)
}

/// `xrun kill`.
pub fn kill(g: &Global, a: KillArgs) -> anyhow::Result<u8> {
    let sig = match signals::parse_signal(&a.signal) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut code = 0;
    for key in &a.containers {
        match lifecycle::kill(&c, key, sig) {
            Ok(_) => println!("{key}"),
            Err(e) => code = fail(e)?,
        }
    }
    Ok(code)
}

/// `xrun rm`.
pub fn rm(g: &Global, a: RmArgs) -> anyhow::Result<u8> {
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut code = 0;
    for key in &a.containers {
        match lifecycle::remove(&c, key, a.force) {
            Ok(_) => println!("{key}"),
            Err(e) => code = fail(e)?,
        }
    }
    Ok(code)
}

/// `xrun exec`.
pub fn exec(g: &Global, a: ExecArgs) -> anyhow::Result<u8> {
    if let Err(e) = runtime::seal::ensure_sealed() {
        return fail(e);
    }
    let c = match open(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let env = a
        .env
        .iter()
        .filter_map(|e| runtime::options::expand_env(e))
        .collect();
    match lifecycle::exec(
        &c,
        &a.container,
        a.command,
        env,
        a.interactive,
        a.tty,
        a.workdir,
    ) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => fail(e),
    }
}

/// `xrun internal …`.
pub fn internal(g: &Global, a: InternalCommand) -> anyhow::Result<u8> {
    match a {
        InternalCommand::Init { command } => Ok(runtime::init::run(&command)),
        InternalCommand::Monitor { id } => {
            let ready = runtime::monitor::ready_fd();
            if let Err(e) = runtime::seal::ensure_sealed() {
                return fail(e);
            }
            let c = match open(g) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match lifecycle::monitor(&c, &id, ready, &super::route::VmMachines) {
                Ok(code) => Ok(code),
                Err(e) => fail(e),
            }
        }
    }
}
