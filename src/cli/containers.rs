//! `xrun start/ps/logs/stop/kill/rm/exec` and the hidden internal commands: the engine's
//! container operations, printed.

use std::io::Write;
use std::time::Duration;

use xrun::engine::{AttachOptions, Engine, ExecSpec};
use xrun::runtime::{self, Status, state};

use super::Global;
use super::run::engine_failure;

/// `xrun start` arguments.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Attach to the container's output and wait for it.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach stdin.
    #[arg(short, long)]
    pub interactive: bool,
    /// For a container with a terminal: the key sequence that detaches and leaves it
    /// running (Docker's syntax; empty: none).
    #[arg(long = "detach-keys", value_name = "KEYS", default_value = xrun::engine::DEFAULT_DETACH_KEYS)]
    pub detach_keys: String,
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
    /// User: numeric uid[:gid] (names too on the vm route).
    #[arg(short, long)]
    pub user: Option<String>,
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

/// `xrun start`.
pub fn start(g: &Global, a: StartArgs) -> anyhow::Result<u8> {
    let keys = match super::attach::detach_keys(&a.detach_keys) {
        Ok(k) => k,
        Err(code) => return Ok(code),
    };
    let engine = Engine::open(&g.root);
    if a.attach
        && let Err(e) = engine.seal()
    {
        return engine_failure(e);
    }
    if let Err(e) = engine.cleanup_stale() {
        return engine_failure(e);
    }
    let mut code = 0;
    for key in &a.containers {
        let rec = match engine.inspect(key) {
            Ok(r) => r,
            Err(e) => {
                code = engine_failure(e)?;
                continue;
            }
        };
        if rec.is_running() {
            println!("{key}");
            continue;
        }
        if (a.interactive || a.attach) && rec.options.tty {
            // Under its monitor, this process attached: the detach keys leave it running.
            let stdin = a.interactive && rec.options.interactive;
            return super::attach::start_attached(&engine, &rec.id, stdin, keys, false);
        }
        if a.interactive || a.attach {
            let how = AttachOptions {
                interactive: a.interactive,
                remove_on_error: false,
            };
            return match engine.run_attached(&rec.id, how) {
                Ok(code) => Ok(code.clamp(0, 255) as u8),
                Err(e) => engine_failure(e),
            };
        }
        match engine.start(&rec.id, false) {
            Ok(()) => println!("{key}"),
            Err(e) => code = engine_failure(e)?,
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
    let engine = Engine::open(&g.root);
    // Containers whose owner died: their leftovers (network included) go now.
    let list = match engine.list_current() {
        Ok(l) => l,
        Err(e) => return engine_failure(e),
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
    for (r, status) in list {
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

/// `xrun logs`: records go back to the stream they came from (see xrun::runtime::log).
pub fn logs(g: &Global, a: LogsArgs) -> anyhow::Result<u8> {
    let mut print = |records: Vec<runtime::log::Record>| -> std::io::Result<()> {
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
        err.flush()
    };
    match Engine::open(&g.root).logs(&a.container, a.follow, &mut print) {
        Ok(()) => Ok(0),
        Err(e) => engine_failure(e),
    }
}

/// `xrun stop`.
pub fn stop(g: &Global, a: StopArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let mut code = 0;
    for key in &a.containers {
        match engine.stop(key, Duration::from_secs(a.time)) {
            Ok(_) => println!("{key}"),
            Err(e) => code = engine_failure(e)?,
        }
    }
    Ok(code)
}

/// `xrun kill`.
pub fn kill(g: &Global, a: KillArgs) -> anyhow::Result<u8> {
    let sig = match Engine::parse_signal(&a.signal) {
        Ok(s) => s,
        Err(e) => return engine_failure(e),
    };
    let engine = Engine::open(&g.root);
    let mut code = 0;
    for key in &a.containers {
        match engine.kill(key, sig) {
            Ok(_) => println!("{key}"),
            Err(e) => code = engine_failure(e)?,
        }
    }
    Ok(code)
}

/// `xrun rm`.
pub fn rm(g: &Global, a: RmArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    let mut code = 0;
    for (key, r) in a
        .containers
        .iter()
        .zip(engine.remove_many(&a.containers, a.force))
    {
        match r {
            Ok(_) => println!("{key}"),
            Err(e) => code = engine_failure(e)?,
        }
    }
    Ok(code)
}

/// `xrun exec`.
pub fn exec(g: &Global, a: ExecArgs) -> anyhow::Result<u8> {
    let engine = Engine::open(&g.root);
    if let Err(e) = engine.seal() {
        return engine_failure(e);
    }
    let spec = ExecSpec {
        command: a.command,
        env: a
            .env
            .iter()
            .filter_map(|e| runtime::options::expand_env(e))
            .collect(),
        interactive: a.interactive,
        tty: a.tty,
        workdir: a.workdir,
        user: a.user,
    };
    match engine.exec(&a.container, spec) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => engine_failure(e),
    }
}

/// `xrun internal …`.
pub fn internal(g: &Global, a: InternalCommand) -> anyhow::Result<u8> {
    match a {
        InternalCommand::Init { command } => Ok(runtime::init::run(&command)),
        InternalCommand::Monitor { id } => match Engine::open(&g.root).monitor(&id) {
            Ok(code) => Ok(code),
            Err(e) => engine_failure(e),
        },
    }
}
