//! Argument parsing (clap derive), dispatch, and the error → exit-code edge.
//!
//! Each command group lives in its own file with its `Args` and its `run`; this file only
//! lists them. Exit codes follow Docker: the container's own, 125 for xrun's errors,
//! 126 not executable, 127 not found; `xrun check` uses 1 for a failed gate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod attach;
mod binfmt;
mod build;
mod check;
mod containers;
mod hints;
mod host;
mod images;
mod network;
mod pull;
mod run;
mod runc;
mod serve;
mod stats;
mod system;

/// Exit code for xrun's own failures, as Docker's 125.
pub const EXIT_XRUN_ERROR: u8 = 125;

/// Options every command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// Store root (images, containers, state).
    #[arg(long, global = true, env = "XRUN_ROOT", default_value = xrun::config::DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "XRUN_LOG", default_value = "warn")]
    pub log_level: String,
}

/// A container runner that knows about architectures and kernels.
#[derive(Debug, Parser)]
#[command(name = "xrun", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pull an image from a registry.
    Pull(pull::PullArgs),
    /// Push an image (one manifest, or a whole multi-platform index) to a registry.
    Push(pull::PushArgs),
    /// Log in to a registry (writes ~/.docker/config.json).
    Login(pull::LoginArgs),
    /// Log out from a registry.
    Logout(pull::LogoutArgs),
    /// Remote manifests.
    #[command(subcommand)]
    Manifest(pull::ManifestCommand),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images.
    Rmi(images::RmiArgs),
    /// Image housekeeping.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Show an image's manifest and config as JSON.
    Inspect(images::InspectArgs),
    /// Load an image archive (OCI layout or `docker save` tar; file, directory or stdin).
    Load(images::LoadArgs),
    /// Save images as a tar (`docker save` format, or `--format oci`).
    Save(images::SaveArgs),
    /// Give an image another name: `xrun tag SOURCE TARGET`.
    Tag(images::TagArgs),
    /// Show this host's profile.
    Host(host::HostArgs),
    /// Pre-flight: how would an image run here (and on other hosts), and why.
    Check(check::CheckArgs),
    Build(build::BuildArgs),
    Commit(build::CommitArgs),
    /// Build cache housekeeping.
    #[command(subcommand)]
    Builder(build::BuilderCommand),
    /// Run a command in a new container.
    Run(run::RunArgs),
    /// Create a container without starting it.
    Create(run::CreateArgs),
    /// Start a created or stopped container.
    Start(containers::StartArgs),
    /// List containers.
    Ps(containers::PsArgs),
    /// Show a container's logs.
    Logs(containers::LogsArgs),
    /// Stop containers (SIGTERM, then SIGKILL).
    Stop(containers::StopArgs),
    /// Send a signal to containers.
    Kill(containers::KillArgs),
    /// Remove containers.
    Rm(containers::RmArgs),
    /// Run a command in a running container.
    Exec(containers::ExecArgs),
    /// Serve the Docker Engine API on a unix socket (DOCKER_HOST=unix://PATH).
    Serve(serve::ServeArgs),
    /// Attach to a running container's terminal or streams (detach: Ctrl+P Ctrl+Q).
    Attach(attach::AttachArgs),
    /// Networks (bridge networks of xrun's, through the CNI plugins).
    #[command(subcommand)]
    Network(network::NetworkCommand),
    /// Show a container's published ports.
    Port(network::PortArgs),
    /// Show what containers use (CPU, memory, network, processes).
    Stats(stats::StatsArgs),
    /// Consistency check, disk use and pruning (`check [--repair]`, `df`, `prune`).
    #[command(subcommand)]
    System(system::SystemCommand),
    /// binfmt_misc handlers for the emulated route.
    #[command(subcommand)]
    Binfmt(binfmt::BinfmtCommand),
    /// An OCI runtime with runc's command line (`xrun runtime --help`; also as `xrun-runc`).
    Runtime {
        /// runc's arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Internal: the per-container monitor and the container init.
    #[command(hide = true, subcommand)]
    Internal(containers::InternalCommand),
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // Socket activation is not something xrun passes on: with `LISTEN_FDS` in its environment
    // the runtime would keep that many of xrun's own descriptors open in the container. `serve`
    // takes its activated socket from what was noted here.
    xrun::api::note_socket_activation();
    for v in ["LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"] {
        // SAFETY: the first thing the process does, before any thread exists.
        unsafe { std::env::remove_var(v) };
    }
    if let Some(args) = runc::runtime_args() {
        return runc::main(args);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return parse_error(e),
    };
    init_logging(&cli.global.log_level);
    if !drives_a_container(&cli.command) {
        // Listing commands end quietly when their reader goes away (`xrun images | head`),
        // like other Unix tools; commands that drive a container handle EPIPE themselves.
        // SAFETY: setting a signal disposition to the default before any thread is started.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Pull(a) => pull::pull(&cli.global, a),
        Command::Push(a) => pull::push(&cli.global, a),
        Command::Login(a) => pull::login(&cli.global, a),
        Command::Logout(a) => pull::logout(&cli.global, a),
        Command::Manifest(a) => pull::manifest(&cli.global, a),
        Command::Images(a) => images::images(&cli.global, a),
        Command::Rmi(a) => images::rmi(&cli.global, a),
        Command::Image(a) => images::image(&cli.global, a),
        Command::Inspect(a) => images::inspect(&cli.global, a),
        Command::Load(a) => images::load(&cli.global, a),
        Command::Save(a) => images::save(&cli.global, a),
        Command::Tag(a) => images::tag(&cli.global, a),
        Command::Host(a) => host::host(&cli.global, a),
        Command::Check(a) => check::check(&cli.global, a),
        Command::Build(a) => build::build(&cli.global, a),
        Command::Commit(a) => build::commit(&cli.global, a),
        Command::Builder(a) => build::builder(&cli.global, a),
        Command::Run(a) => run::run(&cli.global, a),
        Command::Create(a) => run::create(&cli.global, a),
        Command::Start(a) => containers::start(&cli.global, a),
        Command::Ps(a) => containers::ps(&cli.global, a),
        Command::Logs(a) => containers::logs(&cli.global, a),
        Command::Stop(a) => containers::stop(&cli.global, a),
        Command::Kill(a) => containers::kill(&cli.global, a),
        Command::Rm(a) => containers::rm(&cli.global, a),
        Command::Exec(a) => containers::exec(&cli.global, a),
        Command::Serve(a) => serve::serve(&cli.global, a),
        Command::Attach(a) => attach::attach(&cli.global, a),
        Command::Binfmt(a) => binfmt::binfmt(&cli.global, a),
        Command::Network(a) => network::network(&cli.global, a),
        Command::System(a) => system::system(&cli.global, a),
        Command::Port(a) => network::port(&cli.global, a),
        Command::Stats(a) => stats::stats(&cli.global, a),
        Command::Internal(a) => containers::internal(&cli.global, a),
        // Dispatched before parsing (see `runc::runtime_args`).
        Command::Runtime { .. } => unreachable!("xrun runtime is dispatched before parsing"),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xrun: {}", hints::with_hint(one_line(&e)));
            ExitCode::from(EXIT_XRUN_ERROR)
        }
    }
}

/// A command line clap refused: its own message; help and version as usual (exit 0), any
/// other refusal exits 125 as Docker does for flag errors (clap's default is 2).
fn parse_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let _ = e.print();
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            ExitCode::from(e.exit_code() as u8)
        }
        _ => ExitCode::from(EXIT_XRUN_ERROR),
    }
}

/// Commands that start, attach to or supervise a container process.
fn drives_a_container(c: &Command) -> bool {
    matches!(
        c,
        Command::Run(_)
            | Command::Build(_)
            | Command::Start(_)
            | Command::Exec(_)
            | Command::Internal(_)
            | Command::Serve(_)
            | Command::Attach(_)
    )
}

/// An error and its causes on one line, as `docker` prints them (`a: b: c`). A cause whose
/// text the message before it already ends with (an error that prints its own source, like
/// `path: reason` over `reason`) is not repeated.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(format!("xrun={level}"))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("xrun=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
