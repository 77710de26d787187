//! `xrun check`: how would an image run here (and on other hosts), and why.
//! Owner: the kernelcheck stage (requirements) and the plan.
//!
//! The image comes from the store (pulled when missing unless `--no-pull`, as `xrun run`
//! does), or, with `--rootfs DIR`, from an unpacked directory. Each host (this one, unless `--no-local`,
//! plus every `--host-profile`) gets the platform it would select among the image's pulled
//! platforms, a route and reasons. Exit 0 when every host meets `--require`, 1 when one does
//! not, 125 on errors.

use anyhow::{Context, bail};
use std::path::PathBuf;
use xrun::engine::{CheckRequest, Engine};
use xrun::plan::RouteChoice;
use xrun::plan::report::Require;
use xrun::platform::Platform;
use xrun::registry::PullPolicy;

use super::Global;
use super::run::StderrObserver;

/// `xrun check` arguments.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Check this platform of the image for every host (default: each host's own choice).
    #[arg(long)]
    pub platform: Option<String>,
    /// A host profile (`xrun host --format json`) to check against, or a directory of them
    /// (every `*.json`, sorted: a fleet); repeatable.
    #[arg(long = "host-profile", value_name = "FILE|DIR")]
    pub host_profiles: Vec<PathBuf>,
    /// Do not pull: fail when the image (or a platform the hosts need) is not in the store
    /// (default: pull what is missing, as `xrun run --pull missing`).
    #[arg(long)]
    pub no_pull: bool,
    /// Leave this host out (only the `--host-profile`s).
    #[arg(long)]
    pub no_local: bool,
    /// The least route every host must get: native, emulated, vm or any.
    #[arg(long, default_value = "native")]
    pub require: Require,
    /// Force a route (auto, native, emulated, vm) as `xrun run --route` would.
    #[arg(long, default_value = "auto")]
    pub route: RouteChoice,
    /// Profile of the guest kernel the vm route boots (default for this host: its local
    /// guest's description, when one exists for the image's architecture).
    #[arg(long = "guest-profile", value_name = "FILE")]
    pub guest_profile: Option<PathBuf>,
    /// Check the vm route against this guest image (pulled when not in the store, as `xrun
    /// run --vm-kernel` would boot it; default: the config's `vm-kernel`, else the local
    /// guest).
    #[arg(
        long = "vm-kernel",
        value_name = "REF",
        conflicts_with = "guest_profile"
    )]
    pub vm_kernel: Option<String>,
    /// Output format: table or json.
    #[arg(long, default_value = "table")]
    pub format: String,
    /// Override the image's entrypoint (as `xrun run --entrypoint`).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Check an unpacked root file system directory instead of a stored image (IMAGE is then
    /// the directory; `--platform` gives its declared platform, default the host's).
    #[arg(long)]
    pub rootfs: bool,
    /// With `--rootfs`: the OCI image config (JSON) giving platform, labels and command.
    #[arg(long, value_name = "FILE", requires = "rootfs")]
    pub config: Option<PathBuf>,
    /// Image reference (or directory with `--rootfs`), then the command and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "IMAGE [CMD]..."
    )]
    pub args: Vec<String>,
}

/// `xrun check`.
pub fn check(g: &Global, a: CheckArgs) -> anyhow::Result<u8> {
    if a.format != "table" && a.format != "json" {
        bail!("unknown --format {:?} (expected table or json)", a.format);
    }
    let platform: Option<Platform> = a
        .platform
        .as_deref()
        .map(str::parse)
        .transpose()
        .context("--platform")?;
    let req = CheckRequest {
        image: a.args[0].clone(),
        command: a.args[1..].to_vec(),
        entrypoint: a.entrypoint,
        platform,
        host_profiles: a.host_profiles,
        no_local: a.no_local,
        require: a.require,
        route: a.route,
        guest_profile: a.guest_profile,
        vm_kernel: a.vm_kernel,
        rootfs: a.rootfs,
        config: a.config,
        pull: if a.no_pull {
            PullPolicy::Never
        } else {
            PullPolicy::Missing
        },
    };
    let report = Engine::open(&g.root).check(&req, &StderrObserver { quiet: false })?;
    if a.format == "json" {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", xrun::plan::report::render_table(&report));
    }
    Ok(if report.ok { 0 } else { 1 })
}
