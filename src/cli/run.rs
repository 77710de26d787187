//! `xrun run`, `xrun create`. Owner: the runtime stage.

use std::path::PathBuf;

use anyhow::Context as _;
use xrun::runtime::{
    self, BundleExtras, Containers, ImageInput, RunOptions, RuntimeError, Volume, lifecycle,
    options,
};

use super::Global;

/// Flags shared by `run` and `create` (Docker's meanings).
#[derive(Debug, clap::Args)]
pub struct ContainerFlags {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Container name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass xrun's own).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short, long = "volume", value_name = "HOST:CTR[:ro]")]
    pub volume: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP] (names or ids).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container hostname (default: the short id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Network: none (default) or host.
    #[arg(long, default_value = "none")]
    pub network: String,
    /// Memory limit (e.g. 64m, 1g).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// Number of CPUs (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pub pids_limit: Option<i64>,
    /// Mount the root file system read-only.
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Run xrun's init as PID 1 (reaps zombies, forwards signals).
    #[arg(long)]
    pub init: bool,
    /// Image platform (os/arch[/variant]).
    #[arg(long)]
    pub platform: Option<String>,
    /// Pull policy: missing, always, never.
    #[arg(long, default_value = "missing")]
    pub pull: String,
    /// An external OCI runtime (runc, crun) instead of the built-in one.
    #[arg(long, value_name = "PATH")]
    pub runtime: Option<PathBuf>,
    /// Quiet pull output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Use a directory as the root file system instead of an image (Podman's --rootfs);
    /// then every positional argument is the command.
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// The image, then the command and its arguments (everything after the image belongs
    /// to the command).
    #[arg(
        value_name = "IMAGE [COMMAND]...",
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub image_and_command: Vec<String>,
}

/// `xrun run` arguments.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Run in the background and print the container id.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// `xrun create` arguments.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub flags: ContainerFlags,
}

/// Prints a runtime error as one line and gives its exit code (125/126/127).
pub fn fail(e: RuntimeError) -> anyhow::Result<u8> {
    eprintln!("xrun: {}", e.to_string().replace('\n', " "));
    Ok(e.exit_code())
}

fn resolve_image(g: &Global, f: &ContainerFlags) -> anyhow::Result<(ImageInput, Vec<String>)> {
    if let Some(dir) = &f.rootfs {
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("--rootfs {}", dir.display()))?;
        return Ok((ImageInput::from_rootfs(dir), f.image_and_command.clone()));
    }
    let image_name = &f.image_and_command[0];
    let command = f.image_and_command[1..].to_vec();
    if !["missing", "always", "never"].contains(&f.pull.as_str()) {
        anyhow::bail!("invalid --pull {:?}: use missing, always or never", f.pull);
    }
    let r = xrun::reference::ImageRef::parse(image_name)?;
    let wanted: Option<xrun::platform::Platform> =
        f.platform.as_deref().map(str::parse).transpose()?;
    let store = xrun::store::Store::open(&g.root)?;
    let record = store
        .find_image(&r.name(), &r.tag_or_digest(), wanted.as_ref())?
        .ok_or_else(|| match f.pull.as_str() {
            "never" => anyhow::anyhow!(
                "no such image {} in the store (--pull never): run `xrun pull {}` first",
                image_name,
                image_name
            ),
            _ => anyhow::anyhow!(
                "no such image {} in the store: run `xrun pull {}` first",
                image_name,
                image_name
            ),
        })?;
    let host = xrun::platform::Platform::host();
    if record.platform.architecture != host.architecture {
        anyhow::bail!(
            "image {} is for {}/{}, this host is {}/{}: the emulated route is not available yet; use --platform {}/{}",
            image_name,
            record.platform.os,
            record.platform.architecture,
            host.os,
            host.architecture,
            host.os,
            host.architecture
        );
    }
    let image = store.image(&record)?;
    Ok((ImageInput::from_store(image_name, &image), command))
}

fn options(f: &ContainerFlags, command: Vec<String>) -> Result<RunOptions, RuntimeError> {
    let mut env = Vec::new();
    for file in &f.env_file {
        env.extend(options::read_env_file(file)?);
    }
    env.extend(f.env.iter().filter_map(|e| options::expand_env(e)));
    Ok(RunOptions {
        name: f.name.clone(),
        command,
        entrypoint: f.entrypoint.clone(),
        env,
        volumes: f
            .volume
            .iter()
            .map(|v| Volume::parse(v))
            .collect::<Result<_, _>>()?,
        workdir: f.workdir.clone(),
        user: f.user.clone(),
        hostname: f.hostname.clone(),
        network: f.network.parse()?,
        memory: f.memory.as_deref().map(options::parse_memory).transpose()?,
        cpus: f.cpus,
        pids_limit: f.pids_limit,
        read_only: f.read_only,
        init: f.init,
        tty: f.tty,
        interactive: f.interactive,
        auto_remove: f.rm,
        runtime: f.runtime.clone(),
        no_seccomp: false,
    })
}

fn create_record(
    g: &Global,
    f: &ContainerFlags,
) -> anyhow::Result<Result<(Containers, String), RuntimeError>> {
    let (image, command) = resolve_image(g, f)?;
    let opts = match options(f, command) {
        Ok(o) => o,
        Err(e) => return Ok(Err(e)),
    };
    let c = match Containers::open(&g.root) {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    lifecycle::cleanup_stale(&c);
    Ok(lifecycle::create(&c, image, opts).map(|r| (c, r.id)))
}

/// `xrun run`.
pub fn run(g: &Global, a: RunArgs) -> anyhow::Result<u8> {
    if !a.detach
        && let Err(e) = runtime::seal::ensure_sealed()
    {
        return fail(e);
    }
    let (c, id) = match create_record(g, &a.flags)? {
        Ok(x) => x,
        Err(e) => return fail(e),
    };
    if a.detach {
        if let Err(e) = lifecycle::start_detached(&c, &g.root, &id, true) {
            return fail(e);
        }
        println!("{id}");
        return Ok(0);
    }
    match lifecycle::run_attached(&c, &id, &BundleExtras::default(), true) {
        Ok(code) => Ok(code.clamp(0, 255) as u8),
        Err(e) => fail(e),
    }
}

/// `xrun create`.
pub fn create(g: &Global, a: CreateArgs) -> anyhow::Result<u8> {
    match create_record(g, &a.flags)? {
        Ok((_, id)) => {
            println!("{id}");
            Ok(0)
        }
        Err(e) => fail(e),
    }
}
