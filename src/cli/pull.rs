//! `xrun pull`, `push`, `login`, `logout`, `manifest inspect`: the engine's registry operations;
//! this file reads credentials (flags, terminal, stdin) and prints.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use xrun::engine::{Engine, PullRequest, PushRequest};
use xrun::platform::Platform;
use xrun::reference::ImageRef;
use xrun::registry::auth::Credentials;
use xrun::registry::manifest::ManifestKind;
use xrun::registry::{progress, push_progress};

use super::Global;

/// Options shared by the commands that talk to a registry.
#[derive(Debug, Clone, clap::Args)]
pub struct RemoteArgs {
    /// Reach this registry (`host` or `host:port`) over plain HTTP; loopback ones always are.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Credentials `user:password` (instead of those saved by `xrun login`).
    #[arg(long, value_name = "USER:PASS")]
    pub creds: Option<String>,
}

impl RemoteArgs {
    fn credentials(&self) -> anyhow::Result<Option<Credentials>> {
        self.creds
            .as_deref()
            .map(|c| Credentials::parse(c).context("--creds must be USER:PASSWORD"))
            .transpose()
    }
}

/// `xrun pull` arguments.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image reference, e.g. `busybox`, `127.0.0.1:5000/app:1`, `repo@sha256:…`.
    pub reference: String,
    /// Platform `os/arch[/variant]` (default: this host's, or $XRUN_DEFAULT_PLATFORM).
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        conflicts_with = "all_platforms"
    )]
    pub platform: Option<String>,
    /// Pull every platform of a multi-platform image.
    #[arg(short = 'a', long)]
    pub all_platforms: bool,
    /// Print only the reference.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `xrun push` arguments.
#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Image reference as named in the store, e.g. `127.0.0.1:5000/app:1` (see `xrun tag`).
    pub reference: String,
    /// Push only this platform's manifest under the tag (default: the whole index when the
    /// store holds all its platforms).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Print only the digest pushed.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `xrun login` arguments.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host[:port] (default: Docker Hub).
    pub server: Option<String>,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password (prefer --password-stdin).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Reach this registry over plain HTTP.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

/// `xrun logout` arguments.
#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host[:port] (default: Docker Hub).
    pub server: Option<String>,
}

/// `xrun manifest …`.
#[derive(Debug, clap::Subcommand)]
pub enum ManifestCommand {
    /// The platforms a remote index offers (digests, sizes), without pulling layers.
    Inspect {
        /// Image reference.
        reference: String,
        /// `table` (default) or `json` (the raw manifest as the registry sent it).
        #[arg(long, default_value = "table")]
        format: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

/// `xrun pull`.
pub fn pull(g: &Global, a: PullArgs) -> anyhow::Result<u8> {
    let platform = a
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let req = PullRequest {
        reference: a.reference,
        platform,
        all_platforms: a.all_platforms,
        insecure_registries: a.remote.insecure_registries.clone(),
        credentials: a.remote.credentials()?,
    };
    let progress = progress::for_terminal(a.quiet);
    Engine::open(&g.root).pull(&req, progress.as_ref())?;
    Ok(0)
}

/// `xrun push`.
pub fn push(g: &Global, a: PushArgs) -> anyhow::Result<u8> {
    let platform = a
        .platform
        .as_deref()
        .map(str::parse::<Platform>)
        .transpose()?;
    let req = PushRequest {
        reference: a.reference,
        platform,
        insecure_registries: a.remote.insecure_registries.clone(),
        credentials: a.remote.credentials()?,
        upload: None,
    };
    let progress = push_progress::for_terminal(a.quiet);
    Engine::open(&g.root).push(&req, progress.as_ref())?;
    Ok(0)
}

/// `xrun login`.
pub fn login(g: &Global, a: LoginArgs) -> anyhow::Result<u8> {
    let server = a.server.clone().unwrap_or_else(|| "docker.io".to_string());
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ", true)?,
    };
    if username.is_empty() {
        bail!("a username is required (-u USER)");
    }
    let password = if a.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    } else if let Some(p) = a.password {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else {
        prompt("Password: ", false)?
    };
    if password.is_empty() {
        bail!("a password is required (-p, --password-stdin)");
    }
    let creds = Credentials { username, password };
    Engine::open(&g.root).login(&server, &creds, &a.insecure_registries)?;
    println!("Login Succeeded");
    Ok(0)
}

/// Reads one line from the terminal; `echo` false hides what is typed.
fn prompt(label: &str, echo: bool) -> anyhow::Result<String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("not a terminal: pass -u USER and -p PASSWORD or --password-stdin");
    }
    eprint!("{label}");
    let _ = std::io::stderr().flush();
    let saved = if echo {
        None
    } else {
        let t = tcgetattr(&stdin)?;
        let mut quiet = t.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
        Some(t)
    };
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(t) = saved {
        let _ = tcsetattr(&stdin, SetArg::TCSANOW, &t);
        eprintln!();
    }
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// `xrun logout`.
pub fn logout(g: &Global, a: LogoutArgs) -> anyhow::Result<u8> {
    let server = a.server.unwrap_or_else(|| "docker.io".to_string());
    if Engine::open(&g.root).logout(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(0)
}

/// `xrun manifest inspect`.
pub fn manifest(g: &Global, a: ManifestCommand) -> anyhow::Result<u8> {
    let ManifestCommand::Inspect {
        reference,
        format,
        remote,
    } = a;
    if format != "table" && format != "json" {
        bail!("--format must be table or json, not {format:?}");
    }
    let image = ImageRef::parse(&reference)?;
    let creds = remote.credentials()?;
    let m = Engine::open(&g.root).inspect_remote(
        &image,
        &remote.insecure_registries,
        creds.as_ref(),
    )?;
    let mut out = std::io::stdout().lock();
    if format == "json" {
        out.write_all(&m.raw)?;
        if !m.raw.ends_with(b"\n") {
            writeln!(out)?;
        }
        return Ok(0);
    }
    let kind = match m.kind {
        ManifestKind::Index => "index",
        ManifestKind::Image => "single-platform manifest",
    };
    writeln!(out, "{image} ({kind} {})", m.digest)?;
    writeln!(
        out,
        "{:<18} {:<71} {:>6}  MEDIA TYPE",
        "PLATFORM", "DIGEST", "SIZE"
    )?;
    for e in &m.entries {
        let p = match (&e.platform, e.runnable) {
            (Some(p), true) => p.to_string(),
            (Some(p), false) => format!("({p})"),
            (None, _) => "-".to_string(),
        };
        writeln!(
            out,
            "{:<18} {:<71} {:>6}  {}",
            p,
            e.digest.to_string(),
            e.size,
            e.media_type
        )?;
    }
    Ok(0)
}
