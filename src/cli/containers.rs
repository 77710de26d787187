//! `xrun start/ps/logs/stop/kill/rm/exec` and the hidden internal commands. Owner: runtime.

use super::{Global, not_yet};

/// `xrun start` arguments.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// Containers.
    pub containers: Vec<String>,
}
/// `xrun ps` arguments.
#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// Show all containers, not only running ones.
    #[arg(short, long)]
    pub all: bool,
}
/// `xrun logs` arguments.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Container.
    pub container: String,
}
/// `xrun stop` arguments.
#[derive(Debug, clap::Args)]
pub struct StopArgs {
    /// Containers.
    pub containers: Vec<String>,
}
/// `xrun kill` arguments.
#[derive(Debug, clap::Args)]
pub struct KillArgs {
    /// Containers.
    pub containers: Vec<String>,
}
/// `xrun rm` arguments.
#[derive(Debug, clap::Args)]
pub struct RmArgs {
    /// Containers.
    pub containers: Vec<String>,
}
/// `xrun exec` arguments.
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// Container.
    pub container: String,
    /// Command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
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
}

pub fn start(_g: &Global, _a: StartArgs) -> anyhow::Result<u8> {
    not_yet("start")
}
pub fn ps(_g: &Global, _a: PsArgs) -> anyhow::Result<u8> {
    not_yet("ps")
}
pub fn logs(_g: &Global, _a: LogsArgs) -> anyhow::Result<u8> {
    not_yet("logs")
}
pub fn stop(_g: &Global, _a: StopArgs) -> anyhow::Result<u8> {
    not_yet("stop")
}
pub fn kill(_g: &Global, _a: KillArgs) -> anyhow::Result<u8> {
    not_yet("kill")
}
pub fn rm(_g: &Global, _a: RmArgs) -> anyhow::Result<u8> {
    not_yet("rm")
}
pub fn exec(_g: &Global, _a: ExecArgs) -> anyhow::Result<u8> {
    not_yet("exec")
}
pub fn internal(_g: &Global, _a: InternalCommand) -> anyhow::Result<u8> {
    not_yet("internal")
}
